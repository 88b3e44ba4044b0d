//! MIRAM in Rust: multi-scale masked image modelling for mammography (Vo et al.,
//! arXiv 2503.07157), on candle.
//!
//! This facade is the one crate a downstream project adds (`cargo add miram-core`). It holds
//! the [`MiramConfig`] with its presets, the [`Miram`] model, checkpoints and the optimiser,
//! and re-exports the parts: [`nn`] (shared layers), [`masking`], [`encoder`], [`decoder`],
//! [`losses`], `metrics` and `cbis_ddsm` (features `metrics` and `dataset`, on by default)
//! and [`rand`].
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use miram_core::{Miram, MiramConfig, optim::{AdamW, AdamWConfig, Grads}};
//! use miram_core::rand::Rng;
//!
//! # fn main() -> miram_core::Result<()> {
//! let cfg = MiramConfig::micro();
//! let model = Miram::init(&cfg, 0, &Device::Cpu)?;
//! let mut rng = Rng::new(0);
//! let imgs = Tensor::from_vec(rng.normal_vec(2 * 64 * 64, 0.0, 1.0), (2, 1, 64, 64), &Device::Cpu)?;
//! let out = model.forward(&imgs, &model.random_noise(2, &mut rng)?)?;
//! assert_eq!(out.preds[1].dims(), &[2, 256, 64]); // the 2x decoder: (8 * 2)^2 patches of 8 x 8
//! let params = model.store().trainable();
//! let grads = Grads::from_backward(&out.loss.backward()?, &params);
//! let mut opt = AdamW::new(params, AdamWConfig::mae_pretrain(1.5e-4))?;
//! opt.step(&grads)?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod config;
mod error;
pub mod export;
pub mod flops;
mod model;
pub mod optim;
pub mod parity;
pub mod settings;
#[cfg(all(feature = "dataset", feature = "metrics"))]
pub mod train;

pub use config::{MiramConfig, Preset, ScaleConfig, PRESETS};
pub use error::{Error, InvalidSetting, Result};
pub use miram_nn::Precision;
pub use model::{Miram, MiramOutput};

#[cfg(feature = "dataset")]
pub use miram_cbis_ddsm as cbis_ddsm;
pub use miram_decoder as decoder;
pub use miram_encoder as encoder;
pub use miram_losses as losses;
pub use miram_masking as masking;
#[cfg(feature = "metrics")]
pub use miram_metrics as metrics;
pub use miram_nn as nn;
pub use miram_rand as rand;

pub use candle_core;
pub use candle_core::{DType, Device, Tensor};
