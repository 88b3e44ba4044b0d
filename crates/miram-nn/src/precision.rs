//! The arithmetic precision of a forward pass ([`Precision`]: `f32`, or bf16 mixed
//! precision) and the two rules of the layers' autocast (as `torch.autocast` does).
//!
//! - Parameters stay `f32` `Var`s (the master weights); where one meets an activation it is
//!   cast to the activation's dtype (`to_dtype`, differentiable: the gradient reaches the
//!   `Var` in `f32`). An `f32` activation meets an `f32` parameter and nothing is cast:
//!   candle's `to_dtype` to the same dtype is the same tensor, no op in the graph.
//! - Numerically sensitive steps (LayerNorm statistics, softmax, Nystrom's landmarks and
//!   pseudo-inverse, Performer's feature-map exponential) run in `f32` whatever the
//!   activation's dtype and return that dtype ([`widened`]).

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The precision of the matrix products and activations of a forward pass.
///
/// Serialised in lowercase (`"f32"`, `"bf16"`); `f32` is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in the parameters' dtype (`f32`): nothing is cast.
    #[default]
    F32,
    /// bf16 mixed precision (`half::bf16`): activations and matrix products in bf16; master
    /// weights, optimiser moments, the sensitive reductions and the loss in `f32`.
    Bf16,
}

impl Precision {
    /// Every precision, `f32` first.
    pub const ALL: [Self; 2] = [Self::F32, Self::Bf16];

    /// The name, as `--precision` and the configuration files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// What the precision computes in, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Self::F32 => "everything in f32",
            Self::Bf16 => {
                "bf16 mixed precision: activations and matrix products in bf16; weights, AdamW moments and the loss in f32"
            }
        }
    }

    /// The dtype of the activations and matrix products.
    pub fn compute_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    /// The model's input in the compute dtype: at `f32` the tensor itself (whatever its
    /// dtype, so an `f64` model stays `f64`), at `bf16` cast to bf16.
    ///
    /// # Shapes
    /// - `x`: any, returns the same shape
    pub fn autocast(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::F32 => x.clone(),
            Self::Bf16 => x.to_dtype(DType::BF16)?,
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::invalid_config("precision", s, "f32 or bf16"))
    }
}

/// The dtype a sensitive step computes in for activations of `dtype`: `f32` for the 16-bit
/// types, the dtype itself otherwise (`f32`, `f64`).
pub(crate) fn wide_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// `f(x)` computed in [`wide_dtype`] and returned in `x`'s dtype; for `f32` and `f64`
/// inputs exactly `f(x)`, with no cast.
///
/// # Shapes
/// - `x`: any; `f` decides the result's shape
pub(crate) fn widened(
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let dt = x.dtype();
    let wide = wide_dtype(dt);
    if wide == dt {
        f(x)
    } else {
        f(&x.to_dtype(wide)?)?.to_dtype(dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_parse_and_serialise_both_ways() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().ok(), Some(p));
            assert_eq!(p.to_string(), p.name());
            let json = serde_json::to_string(&p).expect("serialise");
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Precision>(&json).ok(), Some(p));
        }
        assert_eq!(Precision::default(), Precision::F32);
        assert_eq!(Precision::Bf16.compute_dtype(), DType::BF16);
        assert_eq!(Precision::F32.compute_dtype(), DType::F32);
        let e = "fp16"
            .parse::<Precision>()
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("fp16") && e.contains("f32 or bf16"), "{e}");
        assert!(serde_json::from_str::<Precision>("\"BF16\"").is_err());
    }

    #[test]
    fn autocast_keeps_the_dtype_at_f32_and_rounds_to_bf16() -> Result<()> {
        // 1 + 2^-10 is not a bf16 (7-bit mantissa): it rounds to 1.
        let x = Tensor::new(&[1.0f64 + 1.0 / 1024.0, 3.0], &Device::Cpu)?;
        let same = Precision::F32.autocast(&x)?;
        assert_eq!(same.dtype(), DType::F64);
        assert_eq!(same.to_vec1::<f64>()?, x.to_vec1::<f64>()?);
        let b = Precision::Bf16.autocast(&x)?;
        assert_eq!(b.dtype(), DType::BF16);
        assert_eq!(b.to_dtype(DType::F64)?.to_vec1::<f64>()?, vec![1.0, 3.0]);
        Ok(())
    }

    #[test]
    fn widened_computes_in_f32_and_returns_the_input_dtype() -> candle_core::Result<()> {
        // 256 + 1 in bf16 is 256 (8 significant bits); in f32 it is 257, which rounds to 256
        // only at the end: (256 + 1) - 256 = 1 in f32, 0 in bf16.
        let x = Tensor::new(&[256.0f32], &Device::Cpu)?.to_dtype(DType::BF16)?;
        let f = |t: &Tensor| (t + 1.0)? - 256.0;
        assert_eq!(f(&x)?.to_dtype(DType::F32)?.to_vec1::<f32>()?, vec![0.0]);
        let y = widened(&x, f)?;
        assert_eq!(y.dtype(), DType::BF16);
        assert_eq!(y.to_dtype(DType::F32)?.to_vec1::<f32>()?, vec![1.0]);
        let x64 = Tensor::new(&[2.0f64], &Device::Cpu)?;
        let y64 = widened(&x64, |t| {
            assert_eq!(t.dtype(), DType::F64);
            t * 2.0
        })?;
        assert_eq!(y64.to_vec1::<f64>()?, vec![4.0]);
        Ok(())
    }
}
