//! The MAE encoder: patch embedding, fixed sin-cos table, masking, cls token, blocks, norm.

use candle_core::{Device, Tensor};
use miram_masking::{gather_tokens, masking_from_noise, num_keep, Masking};
use miram_nn::{
    attention::AttentionConfig, pos_embed::sincos_2d, Block, DropPathMasks, Init, LayerNorm,
    PatchEmbed, VarBuilder, LN_EPS,
};

use crate::config::EncoderConfig;
use crate::{Error, Result};

/// MAE's ViT encoder. Weights: `patch_embed.proj.*`, `cls_token`, `blocks.{i}.*`, `norm.*`;
/// `pos_embed` is computed, never loaded (it is recomputed for any grid).
#[derive(Debug, Clone)]
pub struct VitEncoder {
    cfg: EncoderConfig,
    patch_embed: PatchEmbed,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: Option<LayerNorm>,
}

impl VitEncoder {
    /// The pre-training encoder, with its final `norm`.
    pub fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, true, vb)
    }

    /// The encoder without the final `norm` (MAE fine-tuning with global pooling).
    pub fn without_norm(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, false, vb)
    }

    fn build(cfg: &EncoderConfig, with_norm: bool, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.embed_dim;
        let patch_embed = PatchEmbed::new(
            cfg.img_size,
            cfg.patch_size,
            cfg.in_chans,
            d,
            vb.pp("patch_embed"),
        )?;
        let cls_token = vb.param(
            &[1, 1, d],
            "cls_token",
            Init::Normal {
                mean: 0.0,
                std: 0.02,
            },
        )?;
        let g = cfg.grid();
        let pos_embed = sincos_2d(d, g, g, true, vb.device())?.to_dtype(vb.dtype())?;
        let attn = AttentionConfig::Softmax;
        let blocks = (0..cfg.depth)
            .map(|i| {
                Block::new(
                    d,
                    cfg.num_heads,
                    cfg.mlp_ratio,
                    &attn,
                    g * g + 1,
                    vb.pp("blocks").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = if with_norm {
            Some(LayerNorm::new(d, LN_EPS, vb.pp("norm"))?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// The fixed position table, `[1, 1 + L, D]` (row 0 is the cls token's zeros).
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// The blocks.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.cls_token.device()
    }

    /// Patch tokens with their position: `patch_embed(imgs) + pos_embed[:, 1:]`, in the
    /// images' dtype (the encoder computes in its input's dtype: bf16 images run the blocks
    /// in bf16 mixed precision, see [`miram_nn::Precision`]).
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns `[N, L, D]`
    pub fn embed(&self, imgs: &Tensor) -> Result<Tensor> {
        let x = self.patch_embed.forward(imgs)?; // [n, l, d]
        let l = x.dim(1)?;
        let pos = self.pos_embed.narrow(1, 1, l)?.to_dtype(x.dtype())?; // no cast at f32
        Ok(x.broadcast_add(&pos)?)
    }

    fn with_cls(&self, x: &Tensor) -> Result<Tensor> {
        let (n, _, d) = x.dims3()?;
        let cls = (&self.cls_token + self.pos_embed.narrow(1, 0, 1)?)?
            .to_dtype(x.dtype())? // the tokens' dtype (no cast at f32)
            .broadcast_as((n, 1, d))?; // [n, 1, d]
        Ok(Tensor::cat(&[&cls, x], 1)?)
    }

    fn run_blocks(&self, mut x: Tensor, drop: Option<&[DropPathMasks]>) -> Result<Tensor> {
        if let Some(d) = drop {
            if d.len() != self.blocks.len() {
                return Err(Error::CountMismatch {
                    what: "drop-path masks (one per block)",
                    expected: self.blocks.len(),
                    got: d.len(),
                });
            }
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            x = blk.forward_drop(&x, drop.map(|d| &d[i]))?;
        }
        match &self.norm {
            Some(norm) => Ok(norm.forward(&x)?),
            None => Ok(x),
        }
    }

    /// Pre-training forward of the kept tokens, given an existing masking.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`; returns `latent` `[N, 1 + keep, D]`
    pub fn forward_with_masking(&self, imgs: &Tensor, masking: &Masking) -> Result<Tensor> {
        let x = self.embed(imgs)?;
        let x = gather_tokens(&x, &masking.ids_keep)?; // [n, keep, d]
        self.run_blocks(self.with_cls(&x)?, None)
    }

    /// Pre-training forward: masks `mask_ratio` of the patches by `noise` and encodes the rest.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, `noise`: `[N, L]`
    /// - returns `latent` `[N, 1 + keep, D]` and the [`Masking`]
    pub fn forward_masked(
        &self,
        imgs: &Tensor,
        noise: &Tensor,
        mask_ratio: f64,
    ) -> Result<(Tensor, Masking)> {
        let l = self.cfg.num_patches();
        let want = [imgs.dim(0)?, l];
        if noise.dims() != want {
            return Err(Error::shape_mismatch(
                "noise (one value per image and patch)",
                &want,
                noise.dims(),
            ));
        }
        let masking = masking_from_noise(noise, num_keep(l, mask_ratio))?;
        let latent = self.forward_with_masking(imgs, &masking)?;
        Ok((latent, masking))
    }

    /// Every token, through the blocks and the final norm if the encoder has one.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns `[N, 1 + L, D]`
    pub fn forward_features(&self, imgs: &Tensor) -> Result<Tensor> {
        self.forward_features_drop(imgs, None)
    }

    /// [`VitEncoder::forward_features`] that also returns every block's softmax attention
    /// probabilities, for inference (attention maps): the blocks run composed
    /// ([`Block::forward_with_attention`]) from the same weights, so the tokens equal those
    /// of [`VitEncoder::forward_features`] up to rounding.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`; returns the tokens `[N, 1 + L, D]` and one
    ///   `[N, heads, 1 + L, 1 + L]` tensor per block (token 0 is the cls token)
    pub fn forward_with_attention(&self, imgs: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut x = self.with_cls(&self.embed(imgs)?)?;
        let mut probs = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let (y, p) = blk.forward_with_attention(&x)?;
            x = y;
            probs.push(p);
        }
        let x = match &self.norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        Ok((x, probs))
    }

    /// [`VitEncoder::forward_features`] with drop-path masks, one per block (training).
    pub fn forward_features_drop(
        &self,
        imgs: &Tensor,
        drop: Option<&[DropPathMasks]>,
    ) -> Result<Tensor> {
        let x = self.embed(imgs)?;
        self.run_blocks(self.with_cls(&x)?, drop)
    }
}
