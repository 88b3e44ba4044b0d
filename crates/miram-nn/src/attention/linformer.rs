//! Linformer self-attention (Wang et al. 2020), mirroring `LinformerSelfAttention` of the
//! `linformer` package and `LinformerAttention` of the reference: keys and values are
//! projected along the sequence, `[N, n, d] x proj[:n] -> [N, k, d]`, with one shared
//! key/value head or one per query head, and shared or separate key/value projections.

use candle_core::Tensor;

use super::{merge_heads, split_heads, LinformerConfig};
use crate::linear::Linear;
use crate::ops::softmax_last_dim;
use crate::vb::{Init, VarBuilder};
use crate::Result;

/// Linformer attention with names `to_q`, `to_k`, `proj_k` (and `to_v`, `proj_v` unless the
/// key/value projections are shared), `to_out`.
#[derive(Debug, Clone)]
pub struct LinformerAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Option<Linear>,
    proj_k: Tensor,
    proj_v: Option<Tensor>,
    to_out: Linear,
    heads: usize,
    k: usize,
}

impl LinformerAttention {
    /// The attention of `config` for `dim` channels and `heads` heads; `seq_len` is the longest sequence (cls included) the projections cover.
    pub fn new(
        dim: usize,
        heads: usize,
        seq_len: usize,
        config: &LinformerConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let LinformerConfig {
            k,
            one_kv_head,
            share_kv,
        } = *config;
        let dh = dim / heads;
        let kv_dim = if one_kv_head { dh } else { dim };
        let b = 1.0 / (k as f64).sqrt();
        let proj_init = Init::Uniform { lo: -b, hi: b };
        let to_q = Linear::no_bias(dim, dim, vb.pp("to_q"))?;
        let to_k = Linear::no_bias(dim, kv_dim, vb.pp("to_k"))?;
        let proj_k = vb.param(&[seq_len, k], "proj_k", proj_init)?;
        let (to_v, proj_v) = if share_kv {
            (None, None)
        } else {
            (
                Some(Linear::no_bias(dim, kv_dim, vb.pp("to_v"))?),
                Some(vb.param(&[seq_len, k], "proj_v", proj_init)?),
            )
        };
        let to_out = Linear::new(dim, dim, vb.pp("to_out"))?;
        Ok(Self {
            to_q,
            to_k,
            to_v,
            proj_k,
            proj_v,
            to_out,
            heads,
            k,
        })
    }

    /// `[N, n, d] -> [N, k, d]` with the first `n` rows of `proj` (`[seq_len, k]`).
    fn project(x: &Tensor, proj: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        // The projection in the activations' dtype (no cast at f32).
        let p = proj
            .to_dtype(x.dtype())?
            .narrow(0, 0, n)?
            .t()?
            .contiguous()?; // [k, n]
        let k = p.dim(0)?;
        let p = p.unsqueeze(0)?.broadcast_as((b, k, n))?.contiguous()?; // [b, k, n]
        Ok(p.matmul(&x.contiguous()?)?.reshape((b, k, d))?) // [b, k, d]
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]` with `n <= seq_len`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _n, c) = x.dims3()?;
        let (h, k) = (self.heads, self.k);
        let dh = c / h;
        let q = split_heads(&self.to_q.forward(x)?, h)?; // [b, h, n, dh]
        let keys = self.to_k.forward(x)?; // [b, n, kv]
        let values = match &self.to_v {
            Some(to_v) => to_v.forward(x)?,
            None => keys.clone(),
        };
        let pv = self.proj_v.as_ref().unwrap_or(&self.proj_k);
        let keys = Self::project(&keys, &self.proj_k)?; // [b, k, kv]
        let values = Self::project(&values, pv)?; // [b, k, kv]
        let kvh = keys.dim(2)? / dh;
        let expand = |t: Tensor| -> Result<Tensor> {
            let t = t.reshape((b, k, kvh, dh))?.transpose(1, 2)?; // [b, kvh, k, dh]
            Ok(t.broadcast_as((b, h, k, dh))?.contiguous()?) // [b, h, k, dh]
        };
        let keys = expand(keys)?;
        let values = expand(values)?;
        let scores = (q.matmul(&keys.t()?)? * (dh as f64).powf(-0.5))?; // [b, h, n, k]
        let out = softmax_last_dim(&scores)?.matmul(&values)?; // [b, h, n, dh]
        self.to_out.forward(&merge_heads(&out)?)
    }
}
