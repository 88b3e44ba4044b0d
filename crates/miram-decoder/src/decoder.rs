//! The shared decoder head and the per-scale decoders.

use candle_core::Tensor;
use miram_masking::gather_tokens;
use miram_nn::{
    pos_embed::sincos_2d, AttentionConfig, Block, Init, LayerNorm, Linear, VarBuilder, LN_EPS,
};
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One decoder of the set: its scale factor and attention kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecoderScale {
    /// Output resolution over the input resolution (1, 2, 3, 4, ...).
    pub scale: usize,
    /// The attention of its blocks.
    pub attention: AttentionConfig,
}

/// Sizes of the decoders (every scale has the same width, depth and heads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Width of the encoder's latent.
    pub encoder_dim: usize,
    /// Decoder width.
    pub decoder_embed_dim: usize,
    /// Blocks per decoder.
    pub decoder_depth: usize,
    /// Heads per decoder block.
    pub decoder_num_heads: usize,
    /// MLP hidden width over the decoder width.
    pub mlp_ratio: f64,
    /// Patches per side of the input grid.
    pub grid: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Image channels.
    pub in_chans: usize,
    /// The decoders, in order (`decoders.0`, `decoders.1`, ...).
    pub scales: Vec<DecoderScale>,
}

impl DecoderConfig {
    /// Checks the sizes; the message names the values at fault.
    pub fn validate(&self) -> Result<()> {
        let d = self.decoder_embed_dim;
        if d == 0 || d % 4 != 0 {
            return Err(Error::NotDivisible {
                what: "decoder_embed_dim",
                value: d,
                by: 4,
                reason: "2-D sin-cos table",
            });
        }
        if self.scales.is_empty() {
            return Err(Error::invalid_config("scales", "[]", "at least one scale"));
        }
        for (i, s) in self.scales.iter().enumerate() {
            let in_scale = |e: Error| Error::InScale {
                index: i,
                source: Box::new(e),
            };
            if s.scale == 0 {
                return Err(in_scale(Error::invalid_config("scale", 0, "at least 1")));
            }
            s.attention
                .validate(d, self.decoder_num_heads)
                .map_err(in_scale)?;
        }
        Ok(())
    }
}

/// The decoder of one scale: weights `pos_embed` (computed), `blocks.{j}.*`, `norm.*`, `pred.*`.
#[derive(Debug, Clone)]
pub struct ScaleDecoder {
    scale: usize,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pred: Linear,
}

impl ScaleDecoder {
    /// The decoder for `scale` over a `grid x grid` input grid.
    pub fn new(cfg: &DecoderConfig, scale: &DecoderScale, vb: VarBuilder) -> Result<Self> {
        let d = cfg.decoder_embed_dim;
        let g = cfg.grid * scale.scale;
        let pos_embed = sincos_2d(d, g, g, true, vb.device())?.to_dtype(vb.dtype())?;
        let blocks = (0..cfg.decoder_depth)
            .map(|j| {
                Block::new(
                    d,
                    cfg.decoder_num_heads,
                    cfg.mlp_ratio,
                    &scale.attention,
                    g * g + 1,
                    vb.pp("blocks").pp(j),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::new(d, LN_EPS, vb.pp("norm"))?;
        let pred = Linear::new(
            d,
            cfg.patch_size * cfg.patch_size * cfg.in_chans,
            vb.pp("pred"),
        )?;
        Ok(Self {
            scale: scale.scale,
            pos_embed,
            blocks,
            norm,
            pred,
        })
    }

    /// The scale factor.
    pub fn scale(&self) -> usize {
        self.scale
    }

    /// The fixed position table, `[1, 1 + (g s)^2, D]`.
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// The blocks.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Repeats every token of the `g x g` grid `s x s` times (row-major `(g s) x (g s)`).
    ///
    /// # Shapes
    /// - `tokens`: `[N, g * g, D]`, returns `[N, (g s)^2, D]`
    pub fn interpolate_tokens(tokens: &Tensor, grid: usize, s: usize) -> Result<Tensor> {
        let (n, l, d) = tokens.dims3()?;
        if l != grid * grid {
            return Err(Error::NotAGrid {
                what: "decoder tokens",
                tokens: l,
                rows: grid,
                cols: grid,
            });
        }
        if s == 1 {
            return Ok(tokens.clone());
        }
        let x = tokens
            .reshape(vec![n, grid, 1, grid, 1, d])?
            .broadcast_as(vec![n, grid, s, grid, s, d])?; // [n, g, s, g, s, d]
        Ok(x.contiguous()?.reshape((n, grid * s * grid * s, d))?)
    }

    /// The prediction of this scale (cls dropped).
    ///
    /// # Shapes
    /// - `tokens`: `[N, g * g, D]` in grid order, `cls`: `[N, 1, D]`
    /// - returns `[N, (g s)^2, p * p * C]`
    pub fn forward(&self, tokens: &Tensor, cls: &Tensor) -> Result<Tensor> {
        let l = tokens.dim(1)?;
        let grid = (l as f64).sqrt().round() as usize;
        let x = Self::interpolate_tokens(tokens, grid, self.scale)?;
        let pos = self.pos_embed.to_dtype(x.dtype())?; // the tokens' dtype (no cast at f32)
        let mut x = Tensor::cat(&[cls, &x], 1)?.broadcast_add(&pos)?; // [n, 1 + (g s)^2, d]
        for blk in &self.blocks {
            x = blk.forward(&x)?;
        }
        let x = self.pred.forward(&self.norm.forward(&x)?)?;
        let m = x.dim(1)? - 1;
        Ok(x.narrow(1, 1, m)?)
    }

    /// Redraws Performer features of every block (no-op for other kinds).
    pub fn redraw_features(&self, rng: &mut Rng) -> Result<()> {
        for b in &self.blocks {
            b.attention().redraw_features(rng)?;
        }
        Ok(())
    }
}

/// The shared `decoder_embed` and `mask_token`, and one [`ScaleDecoder`] per scale
/// (`decoders.{i}`).
#[derive(Debug, Clone)]
pub struct MultiScaleDecoder {
    decoder_embed: Linear,
    mask_token: Tensor,
    decoders: Vec<ScaleDecoder>,
    cfg: DecoderConfig,
}

impl MultiScaleDecoder {
    /// Builds every decoder of `cfg`.
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let decoder_embed = Linear::new(
            cfg.encoder_dim,
            cfg.decoder_embed_dim,
            vb.pp("decoder_embed"),
        )?;
        let mask_token = vb.param(
            &[1, 1, cfg.decoder_embed_dim],
            "mask_token",
            Init::Normal {
                mean: 0.0,
                std: 0.02,
            },
        )?;
        let decoders = cfg
            .scales
            .iter()
            .enumerate()
            .map(|(i, s)| ScaleDecoder::new(cfg, s, vb.pp("decoders").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decoder_embed,
            mask_token,
            decoders,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The per-scale decoders.
    pub fn decoders(&self) -> &[ScaleDecoder] {
        &self.decoders
    }

    /// The shared part: embeds the latent, fills the removed positions with `mask_token` and
    /// puts the tokens back in grid order. Returns `(tokens, cls)`.
    ///
    /// # Shapes
    /// - `latent`: `[N, 1 + keep, D_enc]`, `ids_restore`: `[N, L]` `u32`
    /// - returns `[N, L, D]` and `[N, 1, D]`
    pub fn tokens(&self, latent: &Tensor, ids_restore: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.decoder_embed.forward(latent)?; // [n, 1 + keep, d]
        let (n, t, d) = x.dims3()?;
        let l = ids_restore.dim(1)?;
        if l + 1 < t {
            return Err(Error::TooManyKept {
                keep: t - 1,
                tokens: l,
            });
        }
        let kept = x.narrow(1, 1, t - 1)?;
        let fill = self
            .mask_token
            .to_dtype(x.dtype())? // the tokens' dtype (no cast at f32)
            .broadcast_as((n, l + 1 - t, d))?;
        let all = Tensor::cat(&[&kept, &fill.contiguous()?], 1)?; // [n, l, d] in shuffle order
        let tokens = gather_tokens(&all, &ids_restore.to_dtype(candle_core::DType::U32)?)?; // [n, l, d]
        Ok((tokens, x.narrow(1, 0, 1)?))
    }

    /// Every scale's prediction.
    ///
    /// # Shapes
    /// - `latent`: `[N, 1 + keep, D_enc]`, `ids_restore`: `[N, L]`
    /// - returns one `[N, L s^2, p * p * C]` per scale
    pub fn forward(&self, latent: &Tensor, ids_restore: &Tensor) -> Result<Vec<Tensor>> {
        let (tokens, cls) = self.tokens(latent, ids_restore)?;
        self.decoders
            .iter()
            .map(|dec| dec.forward(&tokens, &cls))
            .collect()
    }

    /// Redraws the Performer features of every decoder from `rng`.
    pub fn redraw_features(&self, rng: &mut Rng) -> Result<()> {
        for d in &self.decoders {
            d.redraw_features(rng)?;
        }
        Ok(())
    }
}
