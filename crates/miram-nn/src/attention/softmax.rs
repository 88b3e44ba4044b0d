//! Full softmax attention with timm's names (`qkv` with bias, `proj`); mirrors timm's
//! `Attention` and `SoftmaxAttention` of the reference.

use candle_core::Tensor;

use crate::linear::Linear;
use crate::ops::attention_packed;
use crate::vb::VarBuilder;
use crate::Result;

/// `proj(softmax(q k^T / sqrt(dh)) v)`.
#[derive(Debug, Clone)]
pub struct SoftmaxAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl SoftmaxAttention {
    /// Weights `qkv.{weight,bias}` `[3 dim, dim]`, `proj.{weight,bias}`.
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: Linear::new(dim, 3 * dim, vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, vb.pp("proj"))?,
            heads,
        })
    }

    /// The packed query-key-value projection, `dim -> 3 dim`.
    pub fn qkv(&self) -> &Linear {
        &self.qkv
    }

    /// The output projection.
    pub fn proj(&self) -> &Linear {
        &self.proj
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = attention_packed(&self.qkv.forward(x)?, self.heads)?; // [b, n, c]
        self.proj.forward(&out)
    }
}
