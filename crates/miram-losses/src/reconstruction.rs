//! Multi-scale reconstruction targets and losses.

use candle_core::{Tensor, D};
use miram_masking::scale_mask;
use miram_nn::patchify;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which patches a scale's loss averages over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// The removed patches only (MAE's loss).
    Masked,
    /// Every patch.
    All,
}

/// The loss settings of one scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleLoss {
    /// Output resolution over the input resolution.
    pub scale: usize,
    /// Which patches are averaged.
    pub loss_on: LossOn,
    /// Weight of this scale in the total.
    pub weight: f64,
}

/// Normalises every patch by its mean and unbiased variance: `(t - mean) / sqrt(var + 1e-6)`.
///
/// # Shapes
/// - `t`: `[N, L, P]`, returns `[N, L, P]`
pub fn norm_pix(t: &Tensor) -> Result<Tensor> {
    let p = t.dim(D::Minus1)?;
    if p < 2 {
        return Err(Error::invalid_config(
            "values per patch (norm_pix)",
            p,
            "at least 2",
        ));
    }
    let mean = t.mean_keepdim(D::Minus1)?;
    let c = t.broadcast_sub(&mean)?;
    let var = (c.sqr()?.sum_keepdim(D::Minus1)? / (p - 1) as f64)?;
    Ok(c.broadcast_div(&(var + 1e-6)?.sqrt()?)?)
}

/// The target of scale `s`: `imgs` upsampled `s x` (nearest) or the given high-resolution
/// image, patchified with `patch_size`, normalised per patch when `norm_pix_loss`.
///
/// # Shapes
/// - `imgs`: `[N, C, H, W]`; `hires` (optional): `[N, C, H s, W s]`
/// - returns `[N, (H s / p) (W s / p), p * p * C]`
pub fn reconstruction_target(
    imgs: &Tensor,
    hires: Option<&Tensor>,
    patch_size: usize,
    scale: usize,
    norm_pix_loss: bool,
) -> Result<Tensor> {
    let (n, c, h, w) = imgs.dims4()?;
    let src = match hires {
        Some(t) => {
            let want = [n, c, h * scale, w * scale];
            if t.dims() != want {
                return Err(Error::shape_mismatch(
                    format!("the high-resolution target of scale {scale}"),
                    &want,
                    t.dims(),
                ));
            }
            t.clone()
        }
        None if scale > 1 => imgs.upsample_nearest2d(h * scale, w * scale)?,
        None => imgs.clone(),
    };
    let t = patchify(&src.detach(), patch_size)?;
    if norm_pix_loss {
        norm_pix(&t)
    } else {
        Ok(t)
    }
}

/// Mean squared error of every patch.
///
/// # Shapes
/// - `pred`, `target`: `[N, L, P]`, returns `[N, L]`
pub fn per_patch_mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.dims() != target.dims() {
        return Err(Error::shape_mismatch(
            "prediction (its target's shape)",
            target.dims(),
            pred.dims(),
        ));
    }
    Ok((pred - target)?.sqr()?.mean(D::Minus1)?)
}

/// The multi-scale reconstruction loss of a MIRAM configuration.
#[derive(Debug, Clone)]
pub struct MultiScaleLoss {
    patch_size: usize,
    norm_pix_loss: bool,
    scales: Vec<ScaleLoss>,
}

impl MultiScaleLoss {
    /// The loss for `scales` (in the decoders' order).
    pub fn new(patch_size: usize, norm_pix_loss: bool, scales: Vec<ScaleLoss>) -> Self {
        Self {
            patch_size,
            norm_pix_loss,
            scales,
        }
    }

    /// The scales.
    pub fn scales(&self) -> &[ScaleLoss] {
        &self.scales
    }

    /// The loss of one scale.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, `pred`: `[N, L s^2, P]`, `mask`: `[N, L]` (1 = removed),
    ///   `hires`: `[N, C, H s, W s]`; returns a scalar
    pub fn scale_loss(
        &self,
        i: usize,
        imgs: &Tensor,
        pred: &Tensor,
        mask: &Tensor,
        hires: Option<&Tensor>,
    ) -> Result<Tensor> {
        let sc = self.scales.get(i).ok_or(Error::UnknownScale {
            index: i,
            scales: self.scales.len(),
        })?;
        let target =
            reconstruction_target(imgs, hires, self.patch_size, sc.scale, self.norm_pix_loss)?;
        let per_patch = per_patch_mse(pred, &target)?; // [n, l s^2]
        match sc.loss_on {
            LossOn::All => Ok(per_patch.mean_all()?),
            LossOn::Masked => {
                let (_, _, h, w) = imgs.dims4()?;
                let m = scale_mask(mask, h / self.patch_size, w / self.patch_size, sc.scale)?
                    .to_dtype(per_patch.dtype())?;
                Ok((per_patch * &m)?.sum_all()?.div(&m.sum_all()?)?)
            }
        }
    }

    /// The weighted total and every scale's loss.
    ///
    /// `hires[i]`, when given, is the real high-resolution target of scale `i`.
    pub fn compute(
        &self,
        imgs: &Tensor,
        preds: &[Tensor],
        mask: &Tensor,
        hires: Option<&[Option<Tensor>]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if preds.len() != self.scales.len() {
            return Err(Error::CountMismatch {
                what: "predictions (one per scale)",
                expected: self.scales.len(),
                got: preds.len(),
            });
        }
        let mut losses = Vec::with_capacity(preds.len());
        let mut total: Option<Tensor> = None;
        for (i, (sc, pred)) in self.scales.iter().zip(preds).enumerate() {
            let h = hires.and_then(|v| v.get(i)).and_then(|t| t.as_ref());
            let l = self.scale_loss(i, imgs, pred, mask, h)?;
            let wl = (&l * sc.weight)?;
            total = Some(match total {
                None => wl,
                Some(t) => (t + wl)?,
            });
            losses.push(l);
        }
        let total =
            total.ok_or_else(|| Error::invalid_config("scales", "[]", "at least one scale"))?;
        Ok((total, losses))
    }
}
