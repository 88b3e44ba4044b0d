//! Full softmax attention with timm's names (`qkv` with bias, `proj`); mirrors timm's
//! `Attention` and `SoftmaxAttention` of the reference.

use candle_core::Tensor;

use super::merge_heads;
use crate::linear::Linear;
use crate::ops::softmax_last_dim;
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

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let h = self.heads;
        let dh = c / h;
        let qkv = self.qkv.forward(x)?.reshape(vec![b, n, 3, h, dh])?; // [b, n, 3, h, dh]
        let qkv = qkv.permute(vec![2, 0, 3, 1, 4])?; // [3, b, h, n, dh]
        let q = (qkv.get(0)?.contiguous()? * (dh as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax_last_dim(&q.matmul(&k.t()?)?)?; // [b, h, n, n]
        let out = attn.matmul(&v)?; // [b, h, n, dh]
        self.proj.forward(&merge_heads(&out)?)
    }
}
