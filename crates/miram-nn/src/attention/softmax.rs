//! Full softmax attention with timm's names (`qkv` with bias, `proj`); mirrors timm's
//! `Attention` and `SoftmaxAttention` of the reference.

use candle_core::Tensor;

use super::merge_heads;
use crate::linear::Linear;
use crate::ops::{attention_packed, softmax_last_dim};
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

    /// The forward pass that also returns the attention probabilities
    /// `softmax(q k^T / sqrt(dh))` of every head, composed from candle ops with the same
    /// weights (the fused kernels of [`Self::forward`] never keep the probabilities); for
    /// inference (attention maps), any device and dtype.
    ///
    /// # Shapes
    /// - `x`: `[N, n, dim]`; returns the output `[N, n, dim]` and the probabilities
    ///   `[N, heads, n, n]` (row `i` is query token `i`, each row sums to 1)
    pub fn forward_with_probs(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (q, k, v) = self.split_qkv(x)?; // [b, h, n, dh] each
        let dh = q.dim(3)?;
        let q = (q * (dh as f64).powf(-0.5))?;
        let p = softmax_last_dim(&q.matmul(&k.t()?.contiguous()?)?)?; // [b, h, n, n]
        let out = merge_heads(&p.matmul(&v)?)?; // [b, n, c]
        Ok((self.proj.forward(&out)?, p))
    }

    /// The queries, keys and values of `x` (timm's packed layout split, heads apart).
    ///
    /// # Shapes
    /// - `x`: `[N, n, dim]`; returns three contiguous `[N, heads, n, dim / heads]` tensors
    pub fn split_qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let qkv = self.qkv.forward(x)?; // [b, n, 3 c]
        let (b, n, c3) = qkv.dims3()?;
        let dh = c3 / (3 * self.heads);
        let parts = qkv
            .reshape((b, n, 3, self.heads, dh))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, h, n, dh]
        let get = |i: usize| -> Result<Tensor> { Ok(parts.get(i)?.contiguous()?) };
        Ok((get(0)?, get(1)?, get(2)?))
    }
}
