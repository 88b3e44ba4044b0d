//! The fully connected layer as one op: `y = x W^T + b` forward, and `dx = dy W`,
//! `dW = dy^T x`, `db = sum(dy)` in one backward node, with the products of [`super::gemm`]
//! reading the weight transposed in place (candle's composed form copies it, and adds the
//! three gradients to fresh zero tensors).
//!
//! The slice kernels ([`forward`], [`backward`]) are shared with the fused transformer
//! branches of [`super::block`].

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, MatMut, MatRef, Par};
use super::{cpu_fast_path, slice};

/// Columns summed by one rayon task of [`column_sums`].
const COL_CHUNK: usize = 64;

/// The sizes of one fully connected product: `rows` inputs of `din` values each mapped to
/// `dout` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinearDims {
    /// Input rows (tokens over the batch).
    pub(crate) rows: usize,
    /// Values per input row.
    pub(crate) din: usize,
    /// Values per output row.
    pub(crate) dout: usize,
}

/// `y = x W^T (+ b)`, a new `[rows, dout]` buffer. With a bias the buffer is built from
/// copies of the bias, which the product then adds to (no pass that zeroes it first).
///
/// # Shapes
/// - `x`: `[rows, din]`, `w`: `[dout, din]`, `b`: `[dout]`; returns `[rows, dout]`
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    dims: LinearDims,
) -> candle_core::Result<Vec<f32>> {
    let LinearDims { rows, din, dout } = dims;
    let (mut y, accumulate) = match b {
        Some(b) => {
            if b.len() != dout {
                candle_core::bail!("linear: bias of {} for {dout} outputs", b.len());
            }
            let mut y = Vec::with_capacity(rows * dout);
            for _ in 0..rows {
                y.extend_from_slice(b);
            }
            (y, true)
        }
        None => (vec![0f32; rows * dout], false),
    };
    matmul(
        MatMut::rows(&mut y, rows, dout)?,
        MatRef::rows(x, rows, din)?,
        MatRef::rows(w, dout, din)?.t(),
        1.0,
        accumulate,
        Par::Pool,
    )?;
    Ok(y)
}

/// The gradients of [`forward`]: `dx (+)= dy W`, `dw = dy^T x`, `db = sum over rows of dy`.
///
/// # Shapes
/// - `x`: `[rows, din]`, `w`, `dw`: `[dout, din]`, `dy`: `[rows, dout]`, `dx`: `[rows, din]`,
///   `db`: `[dout]`
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dims: LinearDims,
    dx: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> candle_core::Result<()> {
    let LinearDims { rows, din, dout } = dims;
    if let Some((dx, accumulate)) = dx {
        matmul(
            MatMut::rows(dx, rows, din)?,
            MatRef::rows(dy, rows, dout)?,
            MatRef::rows(w, dout, din)?,
            1.0,
            accumulate,
            Par::Pool,
        )?;
    }
    matmul(
        MatMut::rows(dw, dout, din)?,
        MatRef::rows(dy, rows, dout)?.t(),
        MatRef::rows(x, rows, din)?,
        1.0,
        false,
        Par::Pool,
    )?;
    if let Some(db) = db {
        column_sums(dy, rows, dout, db)?;
    }
    Ok(())
}

/// `out[j] = sum_i m[i, j]`, each column summed in row order (reproducible whatever the
/// thread count).
pub(crate) fn column_sums(
    m: &[f32],
    rows: usize,
    cols: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    if out.len() != cols || m.len() < rows * cols {
        candle_core::bail!(
            "column sums of {rows}x{cols} ({} values) into {}",
            m.len(),
            out.len()
        );
    }
    out.par_chunks_mut(COL_CHUNK)
        .enumerate()
        .for_each(|(ci, o)| {
            let c0 = ci * COL_CHUNK;
            o.fill(0.0);
            for r in 0..rows {
                let row = &m[r * cols + c0..r * cols + c0 + o.len()];
                for (a, &v) in o.iter_mut().zip(row) {
                    *a += v;
                }
            }
        });
    Ok(())
}

/// `x W^T (+ b)` over the last dimension (PyTorch's `nn.Linear`): with a bias, one
/// differentiable op on the CPU for `f32` whose backward writes `dx`, `dW` and `db` together;
/// candle's composed ops otherwise, in `x`'s dtype (an `f32` weight meeting a bf16 `x` is
/// cast to bf16; its gradient arrives in `f32`).
///
/// # Shapes
/// - `x`: `[..., din]`, `w`: `[dout, din]`, `b`: `[dout]`; returns `[..., dout]`
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let din = dims.last().copied().unwrap_or(1);
    let rows = x.elem_count() / din.max(1);
    let x2 = x.contiguous()?.reshape((rows, din))?;
    let y = match b {
        Some(b) if cpu_fast_path(&[x, w, b]) => {
            x2.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)?
        }
        // Composed: the parameters in the activation's dtype (no cast when they already are).
        Some(b) => x2
            .matmul(&w.to_dtype(x.dtype())?.t()?)?
            .broadcast_add(&b.to_dtype(x.dtype())?)?,
        None => x2.matmul(&w.to_dtype(x.dtype())?.t()?)?,
    };
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = w.dim(0)?;
    }
    y.reshape(out)
}

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "miram-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, din) = l1.shape().dims2()?;
        let (dout, win) = l2.shape().dims2()?;
        if win != din {
            candle_core::bail!("linear: weight [{dout}, {win}] for inputs of {din}");
        }
        let x = slice(s1, l1, "linear x")?;
        let w = slice(s2, l2, "linear weight")?;
        let b = slice(s3, l3, "linear bias")?;
        let y = forward(x, w, Some(b), LinearDims { rows, din, dout })?;
        Ok((CpuStorage::F32(y), Shape::from((rows, dout))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let all = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LinearBwdOp)?;
        let (rows, din) = x.dims2()?;
        let dout = w.dim(0)?;
        let dx = all.narrow(0, 0, rows * din)?.reshape((rows, din))?;
        let dw = all
            .narrow(0, rows * din, dout * din)?
            .reshape((dout, din))?;
        let db = all.narrow(0, rows * din + dout * din, dout)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `[dx; dw; db]` flattened into one buffer (one allocation for the three gradients).
struct LinearBwdOp;

impl CustomOp3 for LinearBwdOp {
    fn name(&self) -> &'static str {
        "miram-linear-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, din) = l1.shape().dims2()?;
        let dout = l2.shape().dims2()?.0;
        let x = slice(s1, l1, "linear_bwd x")?;
        let w = slice(s2, l2, "linear_bwd weight")?;
        let g = slice(s3, l3, "linear_bwd grad")?;
        let mut out = vec![0f32; rows * din + dout * din + dout];
        let (dx, rest) = out.split_at_mut(rows * din);
        let (dw, db) = rest.split_at_mut(dout * din);
        let dims = LinearDims { rows, din, dout };
        backward(x, w, g, dims, Some((dx, false)), dw, Some(db))?;
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    use crate::ops::test_util::{max_rel, normal};

    fn rand(shape: &[usize], seed: u64) -> candle_core::Result<Tensor> {
        normal(shape, seed, 1.0)
    }

    #[test]
    fn fused_linear_equals_the_f64_composed_form_forward_and_backward() -> candle_core::Result<()> {
        for &(rows, din, dout) in &[(1, 1, 1), (7, 5, 3), (131, 33, 70)] {
            let x = Var::from_tensor(&rand(&[rows, din], 1)?)?;
            let w = Var::from_tensor(&rand(&[dout, din], 2)?)?;
            let b = Var::from_tensor(&rand(&[dout], 3)?)?;
            let up = rand(&[rows, dout], 4)?;
            let y = linear(&x, &w, Some(&b))?;
            let g = (&y * &up)?.sum_all()?.backward()?;
            // The reference: candle's composed ops in f64 (no fused path).
            let x64 = Var::from_tensor(&x.to_dtype(DType::F64)?)?;
            let w64 = Var::from_tensor(&w.to_dtype(DType::F64)?)?;
            let b64 = Var::from_tensor(&b.to_dtype(DType::F64)?)?;
            let y64 = linear(&x64, &w64, Some(&b64))?;
            let g64 = (&y64 * up.to_dtype(DType::F64)?)?.sum_all()?.backward()?;
            assert!(max_rel(&y, &y64)? < 1e-5);
            for (v, v64) in [(&x, &x64), (&w, &w64), (&b, &b64)] {
                let a = g.get(v).expect("gradient");
                let r = g64.get(v64).expect("gradient");
                assert!(max_rel(a, r)? < 1e-5, "{rows}x{din}x{dout}");
            }
        }
        Ok(())
    }

    #[test]
    fn column_sums_refuse_mismatched_buffers() {
        let m = vec![1f32; 12];
        let mut out = vec![0f32; 4];
        assert!(column_sums(&m, 3, 4, &mut out).is_ok());
        assert_eq!(out, vec![3.0; 4]);
        assert!(column_sums(&m, 4, 4, &mut out).is_err());
        assert!(column_sums(&m, 3, 3, &mut out).is_err());
    }
}
