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

/// Linformer's settings (Wang et al. 2020): keys and values projected along the sequence to
/// `k`. The JSON form is the `attention` object without its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinformerConfig {
    /// Projected sequence length.
    pub k: usize,
    /// One key/value head shared by every query head.
    #[serde(default = "default_true")]
    pub one_kv_head: bool,
    /// Values reuse the keys' projections (`to_k`, `proj_k`).
    #[serde(default = "default_true")]
    pub share_kv: bool,
}

impl LinformerConfig {
    /// Projection to `k` with the reference's defaults: one key/value head, shared
    /// key/value projections.
    pub const fn new(k: usize) -> Self {
        Self {
            k,
            one_kv_head: true,
            share_kv: true,
        }
    }

    /// Checks the settings: `k` at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::invalid_config("linformer k", 0, "at least 1"));
        }
        Ok(())
    }
}

/// Nystromformer's settings (Xiong et al. 2021). The JSON form is the `attention` object
/// without its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NystromConfig {
    /// Number of landmarks.
    pub landmarks: usize,
    /// Iterations of the Moore-Penrose pseudo-inverse.
    #[serde(default = "default_pinv_iterations")]
    pub pinv_iterations: usize,
    /// Kernel of the depth-wise residual convolution over the values; 0 for none.
    #[serde(default = "default_residual_conv_kernel")]
    pub residual_conv_kernel: usize,
}

impl NystromConfig {
    /// `landmarks` landmarks with the reference's defaults: 6 pseudo-inverse iterations, a
    /// residual convolution of kernel 33.
    pub const fn new(landmarks: usize) -> Self {
        Self {
            landmarks,
            pinv_iterations: 6,
            residual_conv_kernel: 33,
        }
    }

    /// Checks the settings: at least one landmark, an odd residual kernel (or 0).
    pub fn validate(&self) -> Result<()> {
        if self.landmarks == 0 {
            return Err(Error::invalid_config("nystrom landmarks", 0, "at least 1"));
        }
        let k = self.residual_conv_kernel;
        if k != 0 && k % 2 == 0 {
            return Err(Error::invalid_config(
                "nystrom residual_conv_kernel",
                k,
                "odd (or 0 for none)",
            ));
        }
        Ok(())
    }
}

/// Performer FAVOR+'s settings (Choromanski et al. 2020). The JSON form is the `attention`
/// object without its `kind`; the default is performer-pytorch's feature count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformerConfig {
    /// Number of random features; `None` means `int(head_dim * ln(head_dim))`.
    #[serde(default)]
    pub nb_features: Option<usize>,
}

impl PerformerConfig {
    /// Checks the settings: `nb_features`, when given, at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.nb_features == Some(0) {
            return Err(Error::invalid_config(
                "performer nb_features",
                0,
                "at least 1",
            ));
        }
        Ok(())
    }
}

/// Which attention a block uses, with its settings (the defaults are the reference's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AttentionConfig {
    /// Full softmax attention, quadratic in the tokens.
    Softmax,
    /// Linformer (Wang et al. 2020), see [`LinformerConfig`].
    Linformer(LinformerConfig),
    /// Nystromformer (Xiong et al. 2021), see [`NystromConfig`].
    Nystrom(NystromConfig),
    /// Performer FAVOR+ (Choromanski et al. 2020) with positive softmax random features, see
    /// [`PerformerConfig`].
    Performer(PerformerConfig),
}

impl AttentionConfig {
    /// The short name of the kind (`softmax`, `linformer`, `nystrom`, `performer`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::Linformer(_) => "linformer",
            Self::Nystrom(_) => "nystrom",
            Self::Performer(_) => "performer",
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
        match self {
            Self::Softmax => Ok(()),
            Self::Linformer(c) => c.validate(),
            Self::Nystrom(c) => c.validate(),
            Self::Performer(c) => c.validate(),
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
        Ok(match config {
            AttentionConfig::Softmax => Self::Softmax(SoftmaxAttention::new(dim, heads, vb)?),
            AttentionConfig::Linformer(c) => {
                Self::Linformer(LinformerAttention::new(dim, heads, seq_len, c, vb)?)
            }
            AttentionConfig::Nystrom(c) => Self::Nystrom(NystromAttention::new(dim, heads, c, vb)?),
            AttentionConfig::Performer(c) => {
                Self::Performer(PerformerAttention::new(dim, heads, c, vb)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::result::Result<AttentionConfig, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn each_kind_has_its_json_form_with_the_references_defaults() {
        let cases = [
            (r#"{"kind":"softmax"}"#, AttentionConfig::Softmax),
            (
                r#"{"kind":"linformer","k":128,"one_kv_head":true,"share_kv":true}"#,
                AttentionConfig::Linformer(LinformerConfig::new(128)),
            ),
            (
                r#"{"kind":"linformer","k":4,"one_kv_head":false,"share_kv":false}"#,
                AttentionConfig::Linformer(LinformerConfig {
                    k: 4,
                    one_kv_head: false,
                    share_kv: false,
                }),
            ),
            (
                r#"{"kind":"nystrom","landmarks":64,"pinv_iterations":6,"residual_conv_kernel":33}"#,
                AttentionConfig::Nystrom(NystromConfig::new(64)),
            ),
            (
                r#"{"kind":"performer","nb_features":null}"#,
                AttentionConfig::Performer(PerformerConfig::default()),
            ),
            (
                r#"{"kind":"performer","nb_features":110}"#,
                AttentionConfig::Performer(PerformerConfig {
                    nb_features: Some(110),
                }),
            ),
        ];
        for (json, cfg) in cases {
            assert_eq!(serde_json::to_string(&cfg).expect("serialise"), json);
            assert_eq!(parse(json).expect(json), cfg);
        }
        // Omitted settings take the reference's defaults.
        let short = [
            (
                r#"{"kind":"linformer","k":128}"#,
                AttentionConfig::Linformer(LinformerConfig::new(128)),
            ),
            (
                r#"{"kind":"nystrom","landmarks":64}"#,
                AttentionConfig::Nystrom(NystromConfig::new(64)),
            ),
            (
                r#"{"kind":"performer"}"#,
                AttentionConfig::Performer(PerformerConfig { nb_features: None }),
            ),
        ];
        for (json, cfg) in short {
            assert_eq!(parse(json).expect(json), cfg);
        }
    }

    #[test]
    fn an_unknown_setting_of_a_kind_is_named() {
        for json in [
            r#"{"kind":"linformer","k":8,"heads":2}"#,
            r#"{"kind":"nystrom","landmarks":8,"heads":2}"#,
            r#"{"kind":"performer","heads":2}"#,
        ] {
            let e = parse(json).expect_err(json).to_string();
            assert!(e.contains("heads"), "{json}: {e}");
        }
    }

    #[test]
    fn validation_is_each_kinds_own() {
        let bad = [
            AttentionConfig::Linformer(LinformerConfig::new(0)),
            AttentionConfig::Nystrom(NystromConfig::new(0)),
            AttentionConfig::Nystrom(NystromConfig {
                residual_conv_kernel: 4,
                ..NystromConfig::new(8)
            }),
            AttentionConfig::Performer(PerformerConfig {
                nb_features: Some(0),
            }),
        ];
        for cfg in bad {
            assert!(cfg.validate(8, 2).is_err(), "{cfg:?}");
        }
        let good = AttentionConfig::Nystrom(NystromConfig {
            residual_conv_kernel: 0,
            ..NystromConfig::new(8)
        });
        good.validate(8, 2).expect("kernel 0 means no convolution");
        assert!(AttentionConfig::Softmax.validate(8, 3).is_err());
    }
}
