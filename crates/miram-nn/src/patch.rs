//! Patch embedding and `patchify` / `unpatchify` for any channel count.
//!
//! MAE's `patchify` is `[N, C, H, W] -> [N, h*w, p*p*C]` with the channel last inside a patch
//! (`nchpwq -> nhwpqc`); MAE hard-codes C = 3, here any C works. The patch embedding is
//! timm's `PatchEmbed` (a convolution with kernel = stride = p, weight
//! `patch_embed.proj.weight` `[D, C, p, p]`), computed as one matrix product over the
//! unfolded patches: the same numbers, and a backward pass that never convolves the image.

use candle_core::Tensor;

use crate::vb::{Init, VarBuilder};
use crate::{Error, Result};

fn check_image(
    imgs: &Tensor,
    p: usize,
    what: &'static str,
) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = imgs.dims4()?;
    if p == 0 || h % p != 0 || w % p != 0 {
        return Err(Error::NotPatchGrid {
            what,
            height: h,
            width: w,
            patch: p,
        });
    }
    Ok((n, c, h, w))
}

/// Cuts images into patches, channel last inside a patch.
///
/// # Shapes
/// - `imgs`: `[N, C, H, W]` with `H % p == 0` and `W % p == 0`
/// - returns `[N, (H/p) * (W/p), p * p * C]`
pub fn patchify(imgs: &Tensor, p: usize) -> Result<Tensor> {
    let (n, c, h, w) = check_image(imgs, p, "patchify")?;
    let (gh, gw) = (h / p, w / p);
    let x = imgs.reshape(vec![n, c, gh, p, gw, p])?; // [n, c, gh, p, gw, p]
    let x = x.permute(vec![0, 2, 4, 3, 5, 1])?; // [n, gh, gw, p, p, c]
    Ok(x.contiguous()?.reshape((n, gh * gw, p * p * c))?)
}

/// The inverse of [`patchify`] for a `grid_h x grid_w` grid.
///
/// # Shapes
/// - `x`: `[N, grid_h * grid_w, p * p * C]`
/// - returns `[N, C, grid_h * p, grid_w * p]`
pub fn unpatchify(x: &Tensor, p: usize, c: usize, grid_h: usize, grid_w: usize) -> Result<Tensor> {
    let (n, l, d) = x.dims3()?;
    if l != grid_h * grid_w || d != p * p * c {
        return Err(Error::shape_mismatch(
            "unpatchify input",
            &[n, grid_h * grid_w, p * p * c],
            &[n, l, d],
        ));
    }
    let x = x.reshape(vec![n, grid_h, grid_w, p, p, c])?; // [n, gh, gw, p, q, c]
    let x = x.permute(vec![0, 5, 1, 3, 2, 4])?; // [n, c, gh, p, gw, q]
    Ok(x.contiguous()?.reshape((n, c, grid_h * p, grid_w * p))?)
}

/// timm's `PatchEmbed`: non-overlapping `p x p` patches projected to `embed_dim`.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    img_size: usize,
    patch_size: usize,
    in_chans: usize,
    embed_dim: usize,
}

impl PatchEmbed {
    /// Weights `proj.weight` `[embed_dim, in_chans, p, p]` (xavier-uniform over the weight
    /// viewed as `[embed_dim, in_chans * p * p]`, as MAE) and `proj.bias`.
    pub fn new(
        img_size: usize,
        patch_size: usize,
        in_chans: usize,
        embed_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if patch_size == 0 || img_size % patch_size != 0 {
            return Err(Error::NotDivisible {
                what: "img_size",
                value: img_size,
                by: patch_size,
                reason: "patch_size",
            });
        }
        let vb = vb.pp("proj");
        let weight = vb.param(
            &[embed_dim, in_chans, patch_size, patch_size],
            "weight",
            Init::XavierUniform,
        )?;
        let bias = vb.param(&[embed_dim], "bias", Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias,
            img_size,
            patch_size,
            in_chans,
            embed_dim,
        })
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Embeds the patches in row-major grid order, in the images' dtype.
    ///
    /// # Shapes
    /// - `imgs`: `[N, in_chans, img_size, img_size]`
    /// - returns `[N, num_patches, embed_dim]`
    pub fn forward(&self, imgs: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = imgs.dims4()?;
        if c != self.in_chans {
            return Err(Error::CountMismatch {
                what: "input channels (the model's in_chans)",
                expected: self.in_chans,
                got: c,
            });
        }
        if h != self.img_size || w != self.img_size {
            return Err(Error::shape_mismatch(
                "input image size (the model's img_size)",
                &[self.img_size, self.img_size],
                &[h, w],
            ));
        }
        let p = self.patch_size;
        let g = self.grid();
        let x = imgs.reshape(vec![n, c, g, p, g, p])?; // [n, c, gh, p, gw, q]
        let x = x.permute(vec![0, 2, 4, 1, 3, 5])?; // [n, gh, gw, c, p, q]
        let x = x.contiguous()?.reshape((n * g * g, c * p * p))?; // [n l, c p q]
                                                                  // The parameters in the images' dtype (bf16 mixed precision; no cast at f32).
        let dt = imgs.dtype();
        let w = self
            .weight
            .to_dtype(dt)?
            .reshape((self.embed_dim, c * p * p))?; // [d, c p q]
        let y = x.matmul(&w.t()?)?.broadcast_add(&self.bias.to_dtype(dt)?)?; // [n l, d]
        Ok(y.reshape((n, g * g, self.embed_dim))?)
    }
}
