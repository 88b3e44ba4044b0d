//! The transformer MLP (timm's `Mlp`): `fc1 -> exact (erf) GELU -> fc2`.

use candle_core::Tensor;

use crate::linear::Linear;
use crate::vb::VarBuilder;
use crate::Result;

/// Hidden width of an MLP as Python's `int(dim * mlp_ratio)`.
pub fn mlp_hidden(dim: usize, mlp_ratio: f64) -> usize {
    (dim as f64 * mlp_ratio) as usize
}

/// `fc2(gelu(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// An MLP `dim -> hidden -> dim` (weights `fc1.*`, `fc2.*`).
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(dim, hidden, vb.pp("fc1"))?,
            fc2: Linear::new(hidden, dim, vb.pp("fc2"))?,
        })
    }

    /// The first layer, `dim -> hidden`.
    pub fn fc1(&self) -> &Linear {
        &self.fc1
    }

    /// The second layer, `hidden -> dim`.
    pub fn fc2(&self) -> &Linear {
        &self.fc2
    }

    /// # Shapes
    /// - `x`: `[..., dim]`, returns `[..., dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = crate::ops::gelu(&self.fc1.forward(x)?)?;
        self.fc2.forward(&h)
    }
}
