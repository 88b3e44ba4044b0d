//! Nystromformer attention (Xiong et al. 2021), mirroring `NystromAttention` of the reference
//! (and of the `nystrom-attention` package, with one difference the reference documents: the
//! pseudo-inverse is scaled per (sample, head) matrix, not by a batch-wide maximum, so one
//! sample's output never depends on the rest of its batch).
//!
//! The sequence is zero-padded at the front to a multiple of the landmark count; landmarks are
//! means of consecutive token groups; the output keeps the last `n` tokens.

use candle_core::{Tensor, D};

use super::{merge_heads, split_heads, NystromConfig};
use crate::linear::Linear;
use crate::ops::softmax_last_dim;
use crate::precision::wide_dtype;
use crate::vb::{Init, VarBuilder};
use crate::Result;

/// Nystrom attention with names `to_qkv` (no bias), `to_out`, and `res_conv.weight`
/// `[heads, 1, kernel, 1]` when the residual convolution is enabled.
#[derive(Debug, Clone)]
pub struct NystromAttention {
    to_qkv: Linear,
    to_out: Linear,
    res_conv: Option<Tensor>,
    heads: usize,
    landmarks: usize,
    iters: usize,
}

/// The iterative Moore-Penrose pseudo-inverse (Razavi et al. 2014) of every matrix of a batch.
///
/// The initial scale is `1 / (max row sum * max column sum)` of each matrix's absolute values.
///
/// # Shapes
/// - `x`: `[..., m, m]`, returns `[..., m, m]`
pub fn pinv_iterative(x: &Tensor, iters: usize) -> Result<Tensor> {
    let a = x.abs()?;
    let col = amax_keepdim(&a.sum_keepdim(D::Minus1)?, D::Minus2)?; // [.., 1, 1]: max row sum
    let row = amax_keepdim(&a.sum_keepdim(D::Minus2)?, D::Minus1)?; // [.., 1, 1]: max column sum
    let mut z = x.t()?.contiguous()?.broadcast_div(&(col * row)?)?;
    let m = x.dim(D::Minus1)?;
    let eye = Tensor::eye(m, x.dtype(), x.device())?;
    for _ in 0..iters {
        let xz = x.matmul(&z)?;
        let inner = (&eye * 7.0)?.broadcast_sub(&xz)?; // 7I - xz
        let inner = (&eye * 15.0)?.broadcast_sub(&xz.matmul(&inner)?)?; // 15I - xz(7I - xz)
        let inner = (&eye * 13.0)?.broadcast_sub(&xz.matmul(&inner)?)?; // 13I - xz(...)
        z = (z.matmul(&inner)? * 0.25)?;
    }
    Ok(z)
}

/// The maximum over `dim` (kept) with PyTorch's `amax` gradient: split evenly between tied
/// maxima. candle's `max` gives the whole gradient to every tied element, which differs as
/// soon as two rows of the landmark matrix coincide (landmarks made only of padding).
///
/// The value is exactly the maximum; the gradient flows through the mean of the tied elements.
fn amax_keepdim(x: &Tensor, dim: D) -> Result<Tensor> {
    let m = x.max_keepdim(dim)?.detach();
    let tied = x.broadcast_eq(&m)?.to_dtype(x.dtype())?;
    let mean_tied = (x * &tied)?
        .sum_keepdim(dim)?
        .div(&tied.sum_keepdim(dim)?)?;
    // m + (t - t): the value of the maximum, the gradient of the tied mean.
    Ok(m.add(&(mean_tied.clone() - mean_tied.detach())?)?)
}

impl NystromAttention {
    /// The attention of `config` for `dim` channels and `heads` heads; a
    /// `residual_conv_kernel` of 0 disables the residual convolution, otherwise it must be odd.
    pub fn new(dim: usize, heads: usize, config: &NystromConfig, vb: VarBuilder) -> Result<Self> {
        let NystromConfig {
            landmarks,
            pinv_iterations,
            residual_conv_kernel,
        } = *config;
        let to_qkv = Linear::no_bias(dim, 3 * dim, vb.pp("to_qkv"))?;
        let to_out = Linear::new(dim, dim, vb.pp("to_out"))?;
        let res_conv = if residual_conv_kernel > 0 {
            // PyTorch's default Conv2d init: fan_in = in_channels / groups * kh * kw.
            let init = Init::torch_default(residual_conv_kernel);
            Some(
                vb.pp("res_conv")
                    .param(&[heads, 1, residual_conv_kernel, 1], "weight", init)?,
            )
        } else {
            None
        };
        Ok(Self {
            to_qkv,
            to_out,
            res_conv,
            heads,
            landmarks,
            iters: pinv_iterations,
        })
    }

    /// Depth-wise convolution over the sequence of `v` (`Conv2d(h, h, (K, 1), padding (K/2, 0),
    /// groups = h)`), as a sum of shifted copies.
    fn residual(&self, v: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (_b, h, n, _dh) = v.dims4()?;
        let k = w.dim(2)?;
        let half = k / 2;
        let vp = v.pad_with_zeros(2, half, half)?; // [b, h, n + k - 1, dh]
        let w = w.to_dtype(v.dtype())?.reshape((h, k))?; // the activations' dtype
        let mut out: Option<Tensor> = None;
        for j in 0..k {
            let wj = w.narrow(1, j, 1)?.reshape((1, h, 1, 1))?;
            let term = vp.narrow(2, j, n)?.broadcast_mul(&wj)?;
            out = Some(match out {
                None => term,
                Some(o) => (o + term)?,
            });
        }
        match out {
            Some(o) => Ok(o),
            None => Ok(v.zeros_like()?),
        }
    }

    /// # Shapes
    /// - `x`: `[N, n, dim]`, returns `[N, n, dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let (h, m) = (self.heads, self.landmarks);
        let dh = c / h;
        let pad = (m - n % m) % m;
        let np = n + pad;
        let x = x.pad_with_zeros(1, pad, 0)?; // [b, np, c]
        let qkv = self.to_qkv.forward(&x)?; // [b, np, 3c]
        let q = split_heads(&qkv.narrow(2, 0, c)?, h)?; // [b, h, np, dh]
        let k = split_heads(&qkv.narrow(2, c, c)?, h)?;
        let v = split_heads(&qkv.narrow(2, 2 * c, c)?, h)?;
        let q = (q * (dh as f64).powf(-0.5))?;
        let l = np / m;
        // The landmarks, their attention and its pseudo-inverse in f32 for bf16 activations
        // (the iteration amplifies rounding); every cast below is a no-op at f32 and f64.
        let (dt, wide) = (x.dtype(), wide_dtype(x.dtype()));
        let landmarks = |t: &Tensor| t.to_dtype(wide)?.reshape((b, h, m, l, dh))?.mean(3);
        let ql = landmarks(&q)?; // [b, h, m, dh]
        let kl = landmarks(&k)?; // [b, h, m, dh]
        let klt = kl.t()?.contiguous()?; // [b, h, dh, m]
        let a2 = softmax_last_dim(&ql.matmul(&klt)?)?; // [b, h, m, m]
        let a2_inv = pinv_iterative(&a2, self.iters)?.to_dtype(dt)?;
        let (ql, klt) = (ql.to_dtype(dt)?, klt.to_dtype(dt)?);
        let a1 = softmax_last_dim(&q.matmul(&klt)?)?; // [b, h, np, m]
        let a3 = softmax_last_dim(&ql.matmul(&k.t()?)?)?; // [b, h, m, np]
        let mut out = a1.matmul(&a2_inv)?.matmul(&a3.matmul(&v)?)?; // [b, h, np, dh]
        if let Some(w) = &self.res_conv {
            out = (out + self.residual(&v, w)?)?;
        }
        let out = self.to_out.forward(&merge_heads(&out)?)?; // [b, np, c]
        Ok(out.narrow(1, pad, n)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn amax_splits_the_gradient_between_ties_as_pytorch() -> Result<()> {
        let x = Var::from_tensor(&Tensor::new(&[[1.0f64, 3.0, 3.0, 2.0]], &Device::Cpu)?)?;
        let y = amax_keepdim(&x, D::Minus1)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, vec![3.0]);
        let g = y.sum_all()?.backward()?;
        let gx = g.get(&x).expect("grad").flatten_all()?.to_vec1::<f64>()?;
        assert_eq!(gx, vec![0.0, 0.5, 0.5, 0.0]);
        Ok(())
    }

    #[test]
    fn pinv_inverts_a_well_conditioned_matrix() -> Result<()> {
        let a = Tensor::new(
            &[[[0.7f64, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]],
            &Device::Cpu,
        )?;
        let z = pinv_iterative(&a, 20)?;
        let i = a.matmul(&z)?.flatten_all()?.to_vec1::<f64>()?;
        for (k, v) in i.iter().enumerate() {
            let want = if k % 4 == 0 { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-9, "{k}: {v}");
        }
        Ok(())
    }
}
