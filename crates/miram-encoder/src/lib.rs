//! The ViT encoder of MIRAM: MAE's encoder with timm's weight names (mirrors
//! `MaskedAutoencoderViT.forward_encoder` of facebookresearch/mae and `Miram.encode_masked`
//! of `benches/torch/miram_torch.py`), for any image size, patch size and channel count.
//!
//! - [`VitEncoder::forward_masked`]: pre-training; patch embedding, the fixed 2-D sin-cos
//!   table, random masking, cls token, blocks, final norm -> `latent`.
//! - [`VitEncoder::forward_features`]: every token, for feature extraction.
//! - [`VitClassifier`]: MAE's fine-tuning model (`models_vit.VisionTransformer` with global
//!   pooling): the encoder without its final norm, mean of the patch tokens, `fc_norm`,
//!   `head`, with stochastic depth during training.
//! - [`attention_maps`]: where either model looks (attention rollout over the blocks and
//!   the last block's cls-token attention per head).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use miram_encoder::{EncoderConfig, VitEncoder};
//! use miram_nn::ParamStore;
//!
//! # fn main() -> miram_encoder::Result<()> {
//! let cfg = EncoderConfig { img_size: 32, patch_size: 8, in_chans: 1, embed_dim: 32, depth: 1, num_heads: 2, mlp_ratio: 4.0 };
//! let store = ParamStore::new(0, DType::F32, &Device::Cpu);
//! let enc = VitEncoder::new(&cfg, store.root())?;
//! let imgs = Tensor::zeros((2, 1, 32, 32), DType::F32, &Device::Cpu)?;
//! let noise = miram_masking::random_noise(2, 16, &mut miram_rand::Rng::new(0), &Device::Cpu)?;
//! let (latent, masking) = enc.forward_masked(&imgs, &noise, 0.75)?;
//! assert_eq!(latent.dims(), &[2, 1 + 4, 32]);
//! assert_eq!(masking.mask.dims(), &[2, 16]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod attention_maps;
mod classifier;
mod config;
mod encoder;

pub use attention_maps::{attention_maps, attention_rollout, AttentionMaps, AttentionSource};
pub use classifier::{ClassifierConfig, VitClassifier};
pub use config::EncoderConfig;
pub use encoder::VitEncoder;

/// The error type shared by the model crates ([`miram_nn::Error`]), and `Result` with it.
pub use miram_nn::{Error, Result};
