//! Performer FAVOR+ attention (Choromanski et al. 2020) with positive softmax random
//! features, mirroring `FastAttention` of performer-pytorch and `PerformerAttention` of the
//! reference. The projection matrix is a buffer (`projection_matrix` `[nb_features,
//! head_dim]`): saved with the weights, never trained, redrawn on a schedule during
//! pre-training from the project's seeded generator.

use candle_core::{Tensor, Var, D};
use miram_rand::Rng;

use super::{merge_heads, split_heads, PerformerConfig};
use crate::init::gaussian_orthogonal;
use crate::linear::Linear;
use crate::precision::wide_dtype;
use crate::vb::VarBuilder;
use crate::Result;

const KERNEL_EPS: f64 = 1e-4;

/// Performer attention with names `to_q`, `to_k`, `to_v` (no bias), `to_out` and the buffer
/// `projection_matrix`.
#[derive(Debug, Clone)]
pub struct PerformerAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    projection: Var,
    heads: usize,
    nb_features: usize,
    head_dim: usize,
}

/// Positive random features of `data` (performer-pytorch's `softmax_kernel`).
///
/// The stabiliser is the maximum over the features for queries, and over the tokens and the
/// features for keys; it is detached, as in the reference. For bf16 data the exponential
/// is computed in `f32` and the features returned in bf16.
///
/// # Shapes
/// - `data`: `[N, h, n, dh]`, `proj`: `[nb, dh]`, returns `[N, h, n, nb]`
pub fn softmax_kernel(data: &Tensor, proj: &Tensor, is_query: bool) -> Result<Tensor> {
    let (b, h, n, dh) = data.dims4()?;
    let nb = proj.dim(0)?;
    let dn = (dh as f64).powf(-0.25);
    let ratio = (nb as f64).powf(-0.5);
    let scaled = (data * dn)?;
    let dash = scaled
        .reshape((b * h * n, dh))?
        .matmul(&proj.to_dtype(data.dtype())?.t()?)? // the projection in the data's dtype
        .reshape((b, h, n, nb))?; // [b, h, n, nb]

    // The exponential's argument and the exponential in f32 for bf16 data (no cast at f32).
    let (dt, wide) = (data.dtype(), wide_dtype(data.dtype()));
    let dash = dash.to_dtype(wide)?;
    let diag = (data.to_dtype(wide)?.sqr()?.sum_keepdim(D::Minus1)? * (0.5 * dn * dn))?; // [b, h, n, 1]
    let stab = if is_query {
        dash.max_keepdim(D::Minus1)?.detach() // [b, h, n, 1]
    } else {
        dash.max_keepdim(D::Minus1)?
            .max_keepdim(D::Minus2)?
            .detach() // [b, h, 1, 1]
    };
    let e = dash.broadcast_sub(&diag)?.broadcast_sub(&stab)?.exp()?;
    Ok(((e + KERNEL_EPS)? * ratio)?.to_dtype(dt)?)
}

impl PerformerAttention {
    /// The attention of `config` for `dim` channels and `heads` heads; `nb_features` `None`
    /// means `int(head_dim * ln(head_dim))`, performer-pytorch's default.
    pub fn new(dim: usize, heads: usize, config: &PerformerConfig, vb: VarBuilder) -> Result<Self> {
        let dh = dim / heads;
        let nb = config
            .nb_features
            .unwrap_or_else(|| ((dh as f64) * (dh as f64).ln()) as usize)
            .max(1);
        let projection = vb.buffer(&[nb, dh], "projection_matrix", |rng| {
            gaussian_orthogonal(nb, dh, rng)
        })?;
        Ok(Self {
            to_q: Linear::no_bias(dim, dim, vb.pp("to_q"))?,
            to_k: Linear::no_bias(dim, dim, vb.pp("to_k"))?,
            to_v: Linear::no_bias(dim, dim, vb.pp("to_v"))?,
            to_out: Linear::new(dim, dim, vb.pp("to_out"))?,
            projection,
            heads,
            nb_features: nb,
            head_dim: dh,
        })
    }

    /// The current projection matrix, `[nb_features, head_dim]`.
    pub fn projection_matrix(&self) -> Tensor {
        self.projection.as_tensor().detach()
    }

    /// Draws a new orthogonal Gaussian projection matrix in place.
    pub fn redraw(&self, rng: &mut Rng) -> Result<()> {
        let m = gaussian_orthogonal(self.nb_features, self.head_dim, rng);
        let t = Tensor::from_vec(
            m,
            (self.nb_features, self.head_dim),
            self.projection.device(),
        )?
        .to_dtype(self.projection.dtype())?;
        self.projection.set(&t)?;
        Ok(())
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.heads;
        let proj = self.projection.as_tensor().detach();
        let q = split_heads(&self.to_q.forward(x)?, h)?; // [b, h, n, dh]
        let k = split_heads(&self.to_k.forward(x)?, h)?;
        let v = split_heads(&self.to_v.forward(x)?, h)?;
        let q = softmax_kernel(&q, &proj, true)?; // [b, h, n, nb]
        let k = softmax_kernel(&k, &proj, false)?; // [b, h, n, nb]
        let k_sum = k.sum_keepdim(D::Minus2)?; // [b, h, 1, nb]
        let d_inv = q.matmul(&k_sum.t()?.contiguous()?)?.recip()?; // [b, h, n, 1]
        let ctx = k.t()?.contiguous()?.matmul(&v)?; // [b, h, nb, dh]
        let out = q.matmul(&ctx)?.broadcast_mul(&d_inv)?; // [b, h, n, dh]
        self.to_out.forward(&merge_heads(&out)?)
    }
}
