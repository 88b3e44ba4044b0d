//! The encoder's part of the MIRAM configuration schema, with timm's ViT presets.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sizes of a ViT encoder (timm / MAE names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Square input side in pixels.
    pub img_size: usize,
    /// Patch side in pixels (`img_size % patch_size == 0`).
    pub patch_size: usize,
    /// Input channels (1 for mammograms, 3 for ImageNet weights).
    pub in_chans: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// MLP hidden width over `embed_dim`.
    pub mlp_ratio: f64,
}

impl EncoderConfig {
    fn vit(
        img_size: usize,
        patch_size: usize,
        in_chans: usize,
        embed_dim: usize,
        depth: usize,
        num_heads: usize,
    ) -> Self {
        Self {
            img_size,
            patch_size,
            in_chans,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
        }
    }

    /// ViT-B/16 (MAE's `vit_base_patch16`, 86M parameters at 224 px).
    pub fn vit_base_patch16(img_size: usize, in_chans: usize) -> Self {
        Self::vit(img_size, 16, in_chans, 768, 12, 12)
    }

    /// ViT-S/16.
    pub fn vit_small_patch16(img_size: usize, in_chans: usize) -> Self {
        Self::vit(img_size, 16, in_chans, 384, 12, 6)
    }

    /// ViT-Ti/16.
    pub fn vit_tiny_patch16(img_size: usize, in_chans: usize) -> Self {
        Self::vit(img_size, 16, in_chans, 192, 12, 3)
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size.max(1)
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Checks that the sizes can build a model; the message names the values at fault.
    pub fn validate(&self) -> Result<()> {
        let not_divisible = |what, value, by, reason| {
            Err(Error::NotDivisible {
                what,
                value,
                by,
                reason,
            })
        };
        if self.patch_size == 0 || self.img_size == 0 || self.img_size % self.patch_size != 0 {
            return not_divisible("img_size", self.img_size, self.patch_size, "patch_size");
        }
        if self.in_chans == 0 {
            return Err(Error::invalid_config("in_chans", 0, "at least 1"));
        }
        if self.embed_dim == 0 || self.embed_dim % 4 != 0 {
            return not_divisible("embed_dim", self.embed_dim, 4, "2-D sin-cos table");
        }
        if self.num_heads == 0 || self.embed_dim % self.num_heads != 0 {
            return not_divisible("embed_dim", self.embed_dim, self.num_heads, "num_heads");
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) {
            return Err(Error::invalid_config(
                "mlp_ratio",
                self.mlp_ratio,
                "positive and finite",
            ));
        }
        Ok(())
    }
}
