//! The floating-point work of a training step, counted from the configuration: the matrix
//! products of every layer (2 m n k each), forward and backward, so that a timed step can be
//! turned into achieved TFLOP/s on any device (the CPU's counted figures of
//! [`miram_nn::ops::gemm::MatmulStats`] exist only for the fused kernels).
//!
//! The backward pass of a product computes two products of the same size (the input's and
//! the weight's gradients), so a training step is three times the forward. Element-wise
//! work (LayerNorm, GELU, softmax, the loss, AdamW) is not counted: it is memory-bound and
//! well under 1% of the products at every preset.
//!
//! ```
//! use miram_core::{bench::BenchMode, flops::step_flops, MiramConfig};
//! let f = step_flops(&MiramConfig::paper(), BenchMode::Pretrain, 64);
//! assert!(f.training_step() > 1e12); // ViT-B/16 MIRAM at 64 images: TFLOPs per step
//! ```

use miram_nn::{mlp_hidden, AttentionConfig};

use crate::bench::BenchMode;
use crate::MiramConfig;

/// The FLOPs of one forward pass, by kind of product.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepFlops {
    /// Linear layers (attention projections, MLPs, `decoder_embed`, the prediction heads,
    /// the classifier's head).
    pub linear: f64,
    /// Products inside the attention (scores and values, or their linear-attention forms).
    pub attention: f64,
    /// The patch embedding (a convolution: one product per patch).
    pub patch_embed: f64,
}

impl StepFlops {
    /// The forward pass.
    pub fn forward(&self) -> f64 {
        self.linear + self.attention + self.patch_embed
    }

    /// Forward and backward (the optimiser's element-wise work is not counted).
    pub fn training_step(&self) -> f64 {
        3.0 * self.forward()
    }
}

/// The FLOPs of the forward pass of `mode` for `cfg` at `batch` images: the pre-training
/// forward (encoder on the kept tokens, every decoder of the mode on its
/// `1 + L s^2` tokens) or the fine-tuning classifier's (encoder on all `1 + L` tokens, a
/// head of [`crate::bench::FINETUNE_CLASSES`] classes).
pub fn step_flops(cfg: &MiramConfig, mode: BenchMode, batch: usize) -> StepFlops {
    let cfg = mode.model_config(cfg);
    let n = batch as f64;
    let l = cfg.num_patches();
    let patch_dim = (cfg.patch_size * cfg.patch_size * cfg.in_chans) as f64;
    let d = cfg.embed_dim;
    let mut f = StepFlops {
        patch_embed: 2.0 * n * l as f64 * patch_dim * d as f64,
        ..StepFlops::default()
    };
    let enc_tokens = match mode {
        BenchMode::Finetune => 1 + l,
        BenchMode::Pretrain | BenchMode::SingleScale => {
            1 + miram_masking::num_keep(l, cfg.mask_ratio)
        }
    };
    let enc = Transformer {
        dim: d,
        heads: cfg.num_heads,
        mlp_ratio: cfg.mlp_ratio,
        tokens: enc_tokens,
    };
    let (lin, att) = enc.block(&AttentionConfig::Softmax);
    f.linear += n * cfg.depth as f64 * lin;
    f.attention += n * cfg.depth as f64 * att;
    if mode == BenchMode::Finetune {
        f.linear += 2.0 * n * (d * crate::bench::FINETUNE_CLASSES) as f64;
        return f;
    }
    let dd = cfg.decoder_embed_dim;
    f.linear += 2.0 * n * (enc_tokens * d * dd) as f64; // decoder_embed
    for scale in &cfg.scales {
        let tokens = 1 + l * scale.scale * scale.scale;
        let dec = Transformer {
            dim: dd,
            heads: cfg.decoder_num_heads,
            mlp_ratio: cfg.mlp_ratio,
            tokens,
        };
        let (lin, att) = dec.block(&scale.attention);
        f.linear += n * cfg.decoder_depth as f64 * lin;
        f.attention += n * cfg.decoder_depth as f64 * att;
        f.linear += 2.0 * n * tokens as f64 * dd as f64 * patch_dim; // decoder_pred
    }
    f
}

/// One pre-norm block's shape.
struct Transformer {
    dim: usize,
    heads: usize,
    mlp_ratio: f64,
    tokens: usize,
}

impl Transformer {
    /// The FLOPs of one block on one sample: (linear layers, attention products).
    fn block(&self, attention: &AttentionConfig) -> (f64, f64) {
        let (t, d) = (self.tokens as f64, self.dim as f64);
        let h = self.heads.max(1) as f64;
        let head_dim = d / h;
        let mlp = 2.0 * t * 2.0 * d * mlp_hidden(self.dim, self.mlp_ratio) as f64;
        let (proj, att) = match attention {
            // qkv and proj; Q K^T and A V.
            AttentionConfig::Softmax => (2.0 * t * 4.0 * d * d, 4.0 * t * t * d),
            AttentionConfig::Linformer(c) => {
                let kv = if c.one_kv_head { head_dim } else { d };
                let kv_proj = if c.share_kv { 1.0 } else { 2.0 };
                let k = c.k as f64;
                // to_q, to_out, to_k (and to_v); E K and F V along the sequence; Q K'^T, A V'.
                let proj = 2.0 * t * (2.0 * d * d + kv_proj * d * kv);
                (proj, 2.0 * 2.0 * k * t * kv + 4.0 * t * k * d)
            }
            AttentionConfig::Nystrom(c) => {
                let m = c.landmarks as f64;
                let iters = c.pinv_iterations as f64;
                // Q K~^T, K~ ... : kernel_1 (t m), kernel_3 V (m t), kernel_1 pinv (t m m per
                // head), (..)(kernel_3 V) (t m); kernel_2 (m m); the iterative pseudo-inverse
                // (4 products of m^3 per head and iteration); the residual depth-wise conv.
                let att = 2.0 * t * m * d * 4.0
                    + 2.0 * m * m * d
                    + 2.0 * t * m * m * h
                    + iters * 4.0 * 2.0 * m * m * m * h
                    + 2.0 * t * c.residual_conv_kernel as f64 * d;
                (2.0 * t * 4.0 * d * d, att)
            }
            AttentionConfig::Performer(c) => {
                let feats = c
                    .nb_features
                    .map_or_else(|| (head_dim * head_dim.ln()).floor(), |f| f as f64);
                // Q and K through the features, K'^T V and Q' (K'^T V).
                (2.0 * t * 4.0 * d * d, 4.0 * 2.0 * t * feats * d)
            }
        };
        (proj + mlp, att)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_softmax_block_by_hand() {
        // 2 tokens, width 4, MLP ratio 2 (hidden 8): qkv 2*2*4*12 = 192, proj 2*2*4*4 = 64,
        // fc1 2*2*4*8 = 128, fc2 128: 512; Q K^T and A V: 2 * 2*2*2*4 = 64.
        let t = Transformer {
            dim: 4,
            heads: 2,
            mlp_ratio: 2.0,
            tokens: 2,
        };
        assert_eq!(t.block(&AttentionConfig::Softmax), (512.0, 64.0));
    }

    #[test]
    fn the_step_is_three_forwards_and_grows_with_the_batch() {
        let cfg = MiramConfig::tiny();
        let one = step_flops(&cfg, BenchMode::Pretrain, 1);
        let eight = step_flops(&cfg, BenchMode::Pretrain, 8);
        assert!((eight.forward() - 8.0 * one.forward()).abs() <= 1e-6 * eight.forward());
        assert_eq!(one.training_step(), 3.0 * one.forward());
        // MAE's step has fewer decoder tokens than MIRAM's.
        assert!(step_flops(&cfg, BenchMode::SingleScale, 1).forward() < one.forward());
    }
}
