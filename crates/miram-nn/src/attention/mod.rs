//! The four attention kinds of MIRAM's decoders: softmax (timm), Linformer, Nystromformer and
//! Performer, behind one configuration enum whose JSON form is the `attention` object of the
//! MIRAM configuration schema (`{"kind": "softmax"}`, `{"kind": "linformer", "k": 128, ...}`).
//! Parameter names follow the PyTorch reference, which follows the
//! libraries the authors used (timm, linformer, nystrom-attention, performer-pytorch).

mod linformer;
mod nystrom;
mod performer;
mod softmax;

pub use linformer::LinformerAttention;
pub use nystrom::{pinv_iterative, NystromAttention};
pub use performer::PerformerAttention;
pub use softmax::SoftmaxAttention;

use candle_core::Tensor;
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::vb::VarBuilder;
use crate::{Error, Result};

fn default_true() -> bool {
    true
}
fn default_pinv_iterations() -> usize {
    6
}
fn default_residual_conv_kernel() -> usize {
    33
}

/// Which attention a block uses, with its settings (the defaults are the reference's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AttentionConfig {
    /// Full softmax attention, quadratic in the tokens.
    Softmax,
    /// Linformer (Wang et al. 2020): keys and values projected along the sequence to `k`.
    Linformer {
        /// Projected sequence length.
        k: usize,
        /// One key/value head shared by every query head.
        #[serde(default = "default_true")]
        one_kv_head: bool,
        /// Values reuse the keys' projections (`to_k`, `proj_k`).
        #[serde(default = "default_true")]
        share_kv: bool,
    },
    /// Nystromformer (Xiong et al. 2021).
    Nystrom {
        /// Number of landmarks.
        landmarks: usize,
        /// Iterations of the Moore-Penrose pseudo-inverse.
        #[serde(default = "default_pinv_iterations")]
        pinv_iterations: usize,
        /// Kernel of the depth-wise residual convolution over the values; 0 for none.
        #[serde(default = "default_residual_conv_kernel")]
        residual_conv_kernel: usize,
    },
    /// Performer FAVOR+ (Choromanski et al. 2020) with positive softmax random features.
    Performer {
        /// Number of random features; `None` means `int(head_dim * ln(head_dim))`.
        #[serde(default)]
        nb_features: Option<usize>,
    },
}

impl AttentionConfig {
    /// The short name of the kind (`softmax`, `linformer`, `nystrom`, `performer`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::Linformer { .. } => "linformer",
            Self::Nystrom { .. } => "nystrom",
            Self::Performer { .. } => "performer",
        }
    }

    /// Checks the settings against the block's width and heads.
    pub fn validate(&self, dim: usize, heads: usize) -> Result<()> {
        if heads == 0 || dim % heads != 0 {
            return Err(Error::NotDivisible {
                what: "width",
                value: dim,
                by: heads,
                reason: "the number of heads",
            });
        }
        match *self {
            Self::Softmax => Ok(()),
            Self::Linformer { k: 0, .. } => {
                Err(Error::invalid_config("linformer k", 0, "at least 1"))
            }
            Self::Linformer { .. } => Ok(()),
            Self::Nystrom { landmarks: 0, .. } => {
                Err(Error::invalid_config("nystrom landmarks", 0, "at least 1"))
            }
            Self::Nystrom {
                residual_conv_kernel: k,
                ..
            } if k != 0 && k % 2 == 0 => Err(Error::invalid_config(
                "nystrom residual_conv_kernel",
                k,
                "odd (or 0 for none)",
            )),
            Self::Nystrom { .. } => Ok(()),
            Self::Performer {
                nb_features: Some(0),
            } => Err(Error::invalid_config(
                "performer nb_features",
                0,
                "at least 1",
            )),
            Self::Performer { .. } => Ok(()),
        }
    }
}

/// One attention module of any kind.
#[derive(Debug, Clone)]
pub enum Attention {
    /// See [`SoftmaxAttention`].
    Softmax(SoftmaxAttention),
    /// See [`LinformerAttention`].
    Linformer(LinformerAttention),
    /// See [`NystromAttention`].
    Nystrom(NystromAttention),
    /// See [`PerformerAttention`].
    Performer(PerformerAttention),
}

impl Attention {
    /// Builds the attention of `config` for `dim` channels, `heads` heads and sequences of
    /// `seq_len` tokens (cls included; Linformer's projections are sized by it).
    pub fn new(
        config: &AttentionConfig,
        dim: usize,
        heads: usize,
        seq_len: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        config.validate(dim, heads)?;
        Ok(match *config {
            AttentionConfig::Softmax => Self::Softmax(SoftmaxAttention::new(dim, heads, vb)?),
            AttentionConfig::Linformer {
                k,
                one_kv_head,
                share_kv,
            } => Self::Linformer(LinformerAttention::new(
                dim,
                heads,
                seq_len,
                k,
                one_kv_head,
                share_kv,
                vb,
            )?),
            AttentionConfig::Nystrom {
                landmarks,
                pinv_iterations,
                residual_conv_kernel,
            } => Self::Nystrom(NystromAttention::new(
                dim,
                heads,
                landmarks,
                pinv_iterations,
                residual_conv_kernel,
                vb,
            )?),
            AttentionConfig::Performer { nb_features } => {
                Self::Performer(PerformerAttention::new(dim, heads, nb_features, vb)?)
            }
        })
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Softmax(a) => a.forward(x),
            Self::Linformer(a) => a.forward(x),
            Self::Nystrom(a) => a.forward(x),
            Self::Performer(a) => a.forward(x),
        }
    }

    /// Redraws Performer's random features in place (a no-op for the other kinds).
    pub fn redraw_features(&self, rng: &mut Rng) -> Result<()> {
        match self {
            Self::Performer(a) => a.redraw(rng),
            _ => Ok(()),
        }
    }
}

/// `[N, n, h * dh] -> [N, h, n, dh]`, contiguous.
pub(crate) fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    Ok(x.reshape((b, n, heads, c / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// `[N, h, n, dh] -> [N, n, h * dh]`.
pub(crate) fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, n, dh) = x.dims4()?;
    Ok(x.transpose(1, 2)?.contiguous()?.reshape((b, n, h * dh))?)
}
