//! The multi-scale decoders of MIRAM (Vo et al., arXiv 2503.07157; the
//! same decoders in PyTorch are `ScaleDecoder` of `benches/torch/miram_torch.py`).
//!
//! One shared `decoder_embed` maps the encoder's latent to the decoder width, `mask_token`
//! copies fill the removed positions and the tokens are put back in grid order. Each scale
//! `s` then repeats every token `s x s` times (nearest-neighbour token interpolation),
//! prepends the decoder-side cls token, adds its own sin-cos table for the `(g s) x (g s)`
//! grid, runs its blocks with its own attention kind, normalises and predicts `p * p * C`
//! values per token: the image at `s` times the input resolution, patch by patch.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use miram_decoder::{DecoderConfig, DecoderScale, MultiScaleDecoder};
//! use miram_nn::{AttentionConfig, ParamStore, PerformerConfig};
//!
//! # fn main() -> miram_decoder::Result<()> {
//! let cfg = DecoderConfig {
//!     encoder_dim: 32, decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2,
//!     mlp_ratio: 4.0, grid: 4, patch_size: 8, in_chans: 1,
//!     scales: vec![DecoderScale { scale: 1, attention: AttentionConfig::Softmax },
//!                  DecoderScale { scale: 2, attention: AttentionConfig::Performer(PerformerConfig { nb_features: Some(8) }) }],
//! };
//! let store = ParamStore::new(0, DType::F32, &Device::Cpu);
//! let dec = MultiScaleDecoder::new(&cfg, store.root())?;
//! let latent = Tensor::zeros((2, 1 + 4, 32), DType::F32, &Device::Cpu)?;
//! let ids_restore = Tensor::arange(0u32, 16, &Device::Cpu)?.unsqueeze(0)?.repeat((2, 1))?;
//! let preds = dec.forward(&latent, &ids_restore)?;
//! assert_eq!(preds[0].dims(), &[2, 16, 64]);
//! assert_eq!(preds[1].dims(), &[2, 64, 64]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod decoder;

pub use decoder::{DecoderConfig, DecoderScale, MultiScaleDecoder, ScaleDecoder};

/// The error type shared by the model crates ([`miram_nn::Error`]), and `Result` with it.
pub use miram_nn::{Error, Result};
