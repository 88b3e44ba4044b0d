//! The pre-norm transformer block (timm's `Block`): `x + attn(norm1(x))`, then
//! `x + mlp(norm2(x))`, LayerNorm eps 1e-6, with optional stochastic depth (drop path) whose
//! masks come from the project's seeded generator.

use candle_core::{Device, Tensor};
use miram_rand::Rng;

use crate::attention::{Attention, AttentionConfig};
use crate::linear::LayerNorm;
use crate::mlp::{mlp_hidden, Mlp};
use crate::ops::{self, BranchParams};
use crate::vb::VarBuilder;
use crate::Result;

/// LayerNorm epsilon of every MIRAM block and final norm.
pub const LN_EPS: f64 = 1e-6;

/// Per-sample drop-path masks for one block: `[N, 1, 1]` tensors holding `0` or
/// `1 / keep_prob`, one for the attention branch and one for the MLP branch.
#[derive(Debug, Clone)]
pub struct DropPathMasks {
    /// Mask of the attention branch.
    pub attn: Tensor,
    /// Mask of the MLP branch.
    pub mlp: Tensor,
}

impl DropPathMasks {
    /// Draws masks for a batch of `n` samples with drop probability `p` (timm's `drop_path`:
    /// kept samples are scaled by `1 / (1 - p)`).
    pub fn draw(n: usize, p: f64, rng: &mut Rng, device: &Device) -> Result<Self> {
        let rows: Vec<usize> = (0..n).collect();
        Self::draw_rows(&rows, n, p, rng, device)
    }

    /// The rows `rows` of [`Self::draw`]`(total, ..)`: the masks of the samples at those
    /// positions of a batch of `total` (a process's share of a global batch), so that a
    /// sample is dropped alike whatever the number of processes. Rows at or beyond `total`
    /// are refused.
    pub fn draw_rows(
        rows: &[usize],
        total: usize,
        p: f64,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= total) {
            return Err(crate::Error::invalid_config(
                "drop-path row",
                bad,
                "below the number of samples of the whole batch",
            ));
        }
        let keep = 1.0 - p;
        let mut one = || -> Result<Tensor> {
            let all: Vec<f32> = (0..total)
                .map(|_| {
                    if rng.bernoulli(keep) {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let v: Vec<f32> = rows.iter().map(|&r| all[r]).collect();
            Ok(Tensor::from_vec(v, (rows.len(), 1, 1), device)?)
        };
        Ok(Self {
            attn: one()?,
            mlp: one()?,
        })
    }
}

/// A pre-norm transformer block with any attention kind.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    /// Weights `norm1.*`, `attn.*`, `norm2.*`, `mlp.fc1.*`, `mlp.fc2.*`.
    pub fn new(
        dim: usize,
        heads: usize,
        mlp_ratio: f64,
        attention: &AttentionConfig,
        seq_len: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(dim, LN_EPS, vb.pp("norm1"))?,
            attn: Attention::new(attention, dim, heads, seq_len, vb.pp("attn"))?,
            norm2: LayerNorm::new(dim, LN_EPS, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, mlp_hidden(dim, mlp_ratio), vb.pp("mlp"))?,
        })
    }

    /// The attention module.
    pub fn attention(&self) -> &Attention {
        &self.attn
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_drop(x, None)
    }

    /// The forward pass with drop-path masks (training) or without (`None`).
    ///
    /// # Shapes
    /// - `x`: `[N, n, dim]`, masks `[N, 1, 1]`, returns `[N, n, dim]`
    ///
    /// Each residual branch is one op with an analytic backward pass on the CPU for `f32`
    /// ([`ops::attention_branch`] for softmax attention, [`ops::mlp_branch`] for every block);
    /// the linear-attention kinds run their attention composed.
    pub fn forward_drop(&self, x: &Tensor, drop: Option<&DropPathMasks>) -> Result<Tensor> {
        let drop_attn = drop.map(|d| &d.attn);
        let x = match (&self.attn, self.attention_params()) {
            (Attention::Softmax(a), Some(p)) => {
                ops::attention_branch(x, &p, a.heads(), self.norm1.eps(), drop_attn)?
            }
            _ => {
                let a = self.attn.forward(&self.norm1.forward(x)?)?;
                let a = match drop_attn {
                    Some(m) => a.broadcast_mul(&m.to_dtype(a.dtype())?)?,
                    None => a,
                };
                (x + a)?
            }
        };
        let (fc1, fc2) = (self.mlp.fc1(), self.mlp.fc2());
        match (fc1.bias(), fc2.bias()) {
            (Some(b1), Some(b2)) => {
                let p = BranchParams {
                    norm_weight: self.norm2.weight(),
                    norm_bias: self.norm2.bias(),
                    in_weight: fc1.weight(),
                    in_bias: b1,
                    out_weight: fc2.weight(),
                    out_bias: b2,
                };
                Ok(ops::mlp_branch(
                    &x,
                    &p,
                    self.norm2.eps(),
                    drop.map(|d| &d.mlp),
                )?)
            }
            _ => {
                let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
                let m = match drop {
                    Some(d) => m.broadcast_mul(&d.mlp.to_dtype(m.dtype())?)?,
                    None => m,
                };
                Ok((x + m)?)
            }
        }
    }

    /// The composed form of [`Block::forward_drop`]: the layers one by one as candle ops (what
    /// every device other than the CPU runs, and the reference of the fused branches).
    pub fn forward_drop_composed(
        &self,
        x: &Tensor,
        drop: Option<&DropPathMasks>,
    ) -> Result<Tensor> {
        let a = self.attn.forward(&self.norm1.forward(x)?)?;
        let a = match drop {
            Some(d) => a.broadcast_mul(&d.attn.to_dtype(a.dtype())?)?,
            None => a,
        };
        let x = (x + a)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
        let m = match drop {
            Some(d) => m.broadcast_mul(&d.mlp.to_dtype(m.dtype())?)?,
            None => m,
        };
        Ok((x + m)?)
    }

    /// The forward pass that also returns the block's softmax attention probabilities, for
    /// inference (attention maps): the layers composed as candle ops from the same weights
    /// (as [`Block::forward_drop_composed`] without drop path), since the fused branches of
    /// [`Block::forward`] never keep the probabilities. The linear-attention kinds form no
    /// `n x n` attention matrix and are refused.
    ///
    /// # Shapes
    /// - `x`: `[N, n, dim]`; returns the output `[N, n, dim]` and the probabilities
    ///   `[N, heads, n, n]`
    pub fn forward_with_attention(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let Attention::Softmax(attn) = &self.attn else {
            return Err(crate::Error::invalid_config(
                "attention kind of the block",
                self.attention_kind(),
                "softmax (the linear-attention kinds form no attention matrix)",
            ));
        };
        let (a, probs) = attn.forward_with_probs(&self.norm1.forward(x)?)?;
        let x = (x + a)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
        Ok(((x + m)?, probs))
    }

    /// The short name of the block's attention kind.
    fn attention_kind(&self) -> &'static str {
        match &self.attn {
            Attention::Softmax(_) => "softmax",
            Attention::Linformer(_) => "linformer",
            Attention::Nystrom(_) => "nystrom",
            Attention::Performer(_) => "performer",
        }
    }

    /// The first LayerNorm (before the attention).
    pub fn norm1(&self) -> &LayerNorm {
        &self.norm1
    }

    /// The second LayerNorm (before the MLP).
    pub fn norm2(&self) -> &LayerNorm {
        &self.norm2
    }

    /// The MLP.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The parameters of the softmax attention branch, when it has both biases.
    fn attention_params(&self) -> Option<BranchParams<'_>> {
        let Attention::Softmax(a) = &self.attn else {
            return None;
        };
        Some(BranchParams {
            norm_weight: self.norm1.weight(),
            norm_bias: self.norm1.bias(),
            in_weight: a.qkv().weight(),
            in_bias: a.qkv().bias()?,
            out_weight: a.proj().weight(),
            out_bias: a.proj().bias()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_default()
    }

    #[test]
    fn drop_path_rows_are_the_rows_of_the_whole_batch() -> Result<()> {
        let whole = DropPathMasks::draw(8, 0.5, &mut Rng::new(3), &Device::Cpu)?;
        let (wa, wm) = (values(&whole.attn), values(&whole.mlp));
        // Both values occur, so the comparison below can fail.
        assert!(wa.contains(&0.0) && wa.contains(&2.0), "{wa:?}");
        for rank in 0..4 {
            let rows: Vec<usize> = (0..2).map(|k| rank + 4 * k).collect();
            let part = DropPathMasks::draw_rows(&rows, 8, 0.5, &mut Rng::new(3), &Device::Cpu)?;
            let (pa, pm) = (values(&part.attn), values(&part.mlp));
            for (k, &r) in rows.iter().enumerate() {
                assert_eq!((pa[k], pm[k]), (wa[r], wm[r]), "rank {rank}, row {r}");
            }
        }
        assert!(DropPathMasks::draw_rows(&[8], 8, 0.5, &mut Rng::new(3), &Device::Cpu).is_err());
        Ok(())
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[test]
    fn returned_probabilities_reproduce_the_fused_block() -> Result<()> {
        use crate::vb::ParamStore;
        let (dim, heads, n) = (16, 4, 9);
        let store = ParamStore::new(11, candle_core::DType::F32, &Device::Cpu);
        let blk = Block::new(dim, heads, 2.0, &AttentionConfig::Softmax, n, store.root())?;
        // Biases are zero at initialisation: give every parameter non-trivial values.
        let mut rng = Rng::new(5);
        for (name, var) in store.trainable() {
            let v = rng.normal_vec(var.elem_count(), 0.0, 0.3);
            let v = if name.ends_with("norm1.weight") || name.ends_with("norm2.weight") {
                v.into_iter().map(|x| x + 1.0).collect()
            } else {
                v
            };
            store.set(&name, &Tensor::from_vec(v, var.dims(), &Device::Cpu)?)?;
        }
        let x = Tensor::from_vec(
            rng.normal_vec(2 * n * dim, 0.0, 1.0),
            (2, n, dim),
            &Device::Cpu,
        )?;
        let (y, probs) = blk.forward_with_attention(&x)?;
        assert_eq!(probs.dims(), &[2, heads, n, n]);
        // Each row is a distribution.
        let rows = probs.sum(3)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-5), "{rows:?}");
        assert!(probs.flatten_all()?.min(0)?.to_scalar::<f32>()? >= 0.0);
        // The block's normal (fused, on the CPU at f32) forward.
        let fused = blk.forward(&x)?;
        let d = max_abs_diff(&y, &fused)?;
        assert!(d < 1e-5, "composed vs fused block: {d}");
        // probs @ v, then the rest of the block by hand, from the returned probabilities.
        let Attention::Softmax(a) = blk.attention() else {
            panic!("a softmax block");
        };
        let (_, _, v) = a.split_qkv(&blk.norm1().forward(&x)?)?;
        let attn = crate::attention::merge_heads(&probs.matmul(&v)?)?;
        let h = (&x + a.proj().forward(&attn)?)?;
        let by_hand = (&h + blk.mlp().forward(&blk.norm2().forward(&h)?)?)?;
        let d = max_abs_diff(&by_hand, &fused)?;
        assert!(
            d < 1e-5,
            "probs @ v and the rest of the block vs the block: {d}"
        );
        // A wrong set of probabilities (uniform attention) would not reproduce it.
        let uniform = (probs.ones_like()? / n as f64)?;
        let attn = crate::attention::merge_heads(&uniform.matmul(&v)?)?;
        let h = (&x + a.proj().forward(&attn)?)?;
        let other = (&h + blk.mlp().forward(&blk.norm2().forward(&h)?)?)?;
        assert!(max_abs_diff(&other, &fused)? > 1e-3);
        Ok(())
    }

    #[test]
    fn linear_attention_blocks_have_no_attention_matrix() -> Result<()> {
        use crate::vb::ParamStore;
        let store = ParamStore::new(1, candle_core::DType::F32, &Device::Cpu);
        let cfg = AttentionConfig::Performer(crate::attention::PerformerConfig::default());
        let blk = Block::new(8, 2, 2.0, &cfg, 5, store.root())?;
        let x = Tensor::zeros((1, 5, 8), candle_core::DType::F32, &Device::Cpu)?;
        let e = blk.forward_with_attention(&x).expect_err("performer");
        assert!(e.to_string().contains("performer"), "{e}");
        Ok(())
    }
}
