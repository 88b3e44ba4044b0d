//! MIRAM's losses (mirrors `Miram.target` and `Miram.forward` of
//! `benches/torch/miram_torch.py`, and the fine-tuning losses of MAE's `main_finetune.py`).
//!
//! - Reconstruction: the target of scale `s` is the input upsampled `s x` by nearest
//!   neighbour (PyTorch `F.interpolate(mode="nearest")`) or a real `s x` image given by the
//!   caller, patchified with the same patch size; with `norm_pix_loss` every target patch is
//!   normalised by its own mean and unbiased variance (+1e-6). The per-patch MSE is averaged
//!   over the removed patches (`masked`, the 1x mask repeated `s x s`) or over every patch
//!   (`all`); the total is the weighted sum over scales.
//! - Classification: cross-entropy with optional class weights (PyTorch's weighted mean),
//!   and binary cross-entropy with logits for multi-label targets.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use miram_losses::{LossOn, MultiScaleLoss, ScaleLoss};
//!
//! # fn main() -> miram_losses::Result<()> {
//! let imgs = Tensor::ones((1, 1, 8, 8), DType::F32, &Device::Cpu)?;
//! let loss = MultiScaleLoss::new(4, false, vec![ScaleLoss { scale: 1, loss_on: LossOn::All, weight: 1.0 }]);
//! let pred = Tensor::zeros((1, 4, 16), DType::F32, &Device::Cpu)?;
//! let mask = Tensor::ones((1, 4), DType::F32, &Device::Cpu)?;
//! let (total, per_scale) = loss.compute(&imgs, &[pred], &mask, None)?;
//! assert_eq!(total.to_scalar::<f32>()?, 1.0);
//! assert_eq!(per_scale.len(), 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod classification;
mod reconstruction;

pub use classification::{bce_with_logits, cross_entropy};
pub use reconstruction::{
    norm_pix, per_patch_mse, reconstruction_target, LossOn, MultiScaleLoss, ScaleLoss,
};

/// The error type shared by the model crates ([`miram_nn::Error`]), and `Result` with it.
pub use miram_nn::{Error, Result};
