//! Shared layers of MIRAM (Vo et al., arXiv 2503.07157), defined once for the encoder, the
//! decoders and the fine-tuning model.
//!
//! - [`vb`]: the parameter store and path-based [`VarBuilder`] with seeded, name-keyed
//!   initialisation (MAE's initialisers) and checkpoint-load reports.
//! - [`ops`]: custom ops with analytic backward passes: LayerNorm, softmax and GELU
//!   (candle's lack backward passes), the fused Linear and the fused transformer-block
//!   branches of the CPU (`f32`) path over bounds-checked matrix views ([`ops::gemm`]: the
//!   project's own AVX2/FMA product where the CPU has it, else the `gemm` crate's), their
//!   element-wise loops compiled a second time for AVX2 and FMA ([`wide_fn!`], chosen at run
//!   time, same results), and [`ops::on_pool`].
//! - [`Linear`], [`LayerNorm`], [`Mlp`], [`Block`] (pre-norm, drop path), the four
//!   [`attention`] kinds, [`PatchEmbed`], [`patchify`] / [`unpatchify`] for any channel
//!   count, and the 2-D sin-cos tables of [`pos_embed`].
//! - [`Precision`]: `f32` or bf16 mixed precision. The layers follow their input's dtype:
//!   `f32` parameters are cast to a bf16 activation where they meet it, and LayerNorm,
//!   softmax and the other sensitive steps compute in `f32` (nothing is cast at `f32`).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use miram_nn::{attention::AttentionConfig, Block, ParamStore};
//!
//! # fn main() -> miram_nn::Result<()> {
//! let store = ParamStore::new(0, DType::F32, &Device::Cpu);
//! let cfg: AttentionConfig = serde_json::from_str(r#"{"kind": "nystrom", "landmarks": 4}"#).unwrap();
//! let block = Block::new(32, 4, 4.0, &cfg, 17, store.root().pp("blocks").pp(0))?;
//! let x = Tensor::zeros((2, 17, 32), DType::F32, &Device::Cpu)?;
//! assert_eq!(block.forward(&x)?.dims(), &[2, 17, 32]);
//! assert!(store.var("blocks.0.attn.res_conv.weight").is_some());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod attention;
mod block;
mod error;
pub mod init;
mod linear;
mod mlp;
pub mod ops;
mod patch;
pub mod pos_embed;
mod precision;
pub mod vb;

pub use attention::{Attention, AttentionConfig, LinformerConfig, NystromConfig, PerformerConfig};
pub use block::{Block, DropPathMasks, LN_EPS};
pub use error::{Error, Result};
pub use linear::{LayerNorm, Linear};
pub use mlp::{mlp_hidden, Mlp};
pub use patch::{patchify, unpatchify, PatchEmbed};
pub use precision::Precision;
pub use vb::{Init, LoadReport, ParamStore, VarBuilder};
