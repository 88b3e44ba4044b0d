//! Differentiable kernels that candle 0.11 lacks or runs without a backward pass.
//!
//! `candle_nn::ops::layer_norm` and `softmax_last_dim` have no backward: gradients through
//! them silently vanish. Here LayerNorm and the last-dimension softmax are candle custom ops
//! with analytic backward passes: fused CPU kernels (rayon over rows, fixed chunking so the
//! results are bit-for-bit reproducible) for contiguous `f32` on the CPU, and the composed,
//! differentiable candle forms on every other device or dtype (bf16 included: its LayerNorm
//! and softmax compute in `f32`, its parameters are cast to the activation's dtype). Tests check both paths against
//! each other and against finite differences.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::precision::widened;

mod attention;
mod block;
pub mod gemm;
mod linear;
pub mod math;
mod sgemm;
mod simd;

pub use attention::{attention_packed, attention_packed_composed};
pub use block::{attention_branch, mlp_branch, BranchParams};
pub use linear::linear;
pub use simd::{set_wide_kernels, wide_available};

/// Runs `f` on a worker thread of rayon's global pool (directly when already on one) and
/// returns its result.
///
/// The fused kernels, the matrix products and candle's CPU ops split their loops over the
/// pool. Called from a thread outside the pool, every such loop is handed to the pool and
/// the caller sleeps until it is done: a wake-up and a hand-off per op, hundreds per
/// training step. Called from a worker, the loop starts on the calling thread and the other
/// workers steal from it. `miram`'s commands run inside this; a program that trains from its
/// own `main` should too (measured with `miram bench --preset tiny --batch 8`: 136-150 ms per
/// step without, 126-153 ms with; the masked-encoder forward 17-24 ms without, 12-18 ms
/// with). `f` must not block on work that only the pool can do (with one worker it would
/// wait for itself).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Rows handled by one rayon task; fixed so that reductions are reproducible.
const ROW_CHUNK: usize = 32;

/// Whether the fused CPU kernels are used for `f32` tensors on the CPU (the default).
static FUSED_CPU_KERNELS: AtomicBool = AtomicBool::new(true);

/// Chooses, for the whole process, between the fused CPU kernels (`true`, the default) and
/// the composed candle forms that every other device and dtype runs (`false`).
///
/// Both give the same results within float tolerance (the tests compare them). The composed
/// forms on the CPU are slower; they are there so that the path a GPU takes can be checked
/// on a machine without one (`miram selftest --composed`).
pub fn set_fused_cpu_kernels(on: bool) {
    FUSED_CPU_KERNELS.store(on, Ordering::Relaxed);
}

/// Whether [`set_fused_cpu_kernels`] left the fused CPU kernels on.
pub fn fused_cpu_kernels() -> bool {
    FUSED_CPU_KERNELS.load(Ordering::Relaxed)
}

fn cpu_fast_path(ts: &[&Tensor]) -> bool {
    fused_cpu_kernels()
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

// ---------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------

/// LayerNorm over the last dimension with an affine weight and bias (PyTorch's `nn.LayerNorm`,
/// biased variance), differentiable with respect to the input, the weight and the bias.
///
/// # Shapes
/// - `x`: `[..., d]`
/// - `weight`, `bias`: `[d]`
/// - returns `[..., d]`
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if cpu_fast_path(&[x, weight, bias]) {
        let x = x.contiguous()?;
        x.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            LayerNormOp { eps },
        )
    } else {
        layer_norm_composed(x, weight, bias, eps)
    }
}

/// The composed, differentiable LayerNorm (any device and dtype); the reference of the
/// fused kernel. A bf16 (or f16) input is normalised in `f32` and the result returned in
/// the input's dtype.
pub fn layer_norm_composed(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    widened(x, |x| {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        // The parameters in the normalisation's dtype (no cast when they already are).
        xhat.broadcast_mul(&weight.to_dtype(x.dtype())?)?
            .broadcast_add(&bias.to_dtype(x.dtype())?)
    })
}

struct LayerNormOp {
    eps: f64,
}

#[inline(always)]
fn ln_row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let d = row.len() as f64;
    let mean = math::sum_lanes(row.len(), |j| row[j] as f64) / d;
    let var = math::sum_lanes(row.len(), |j| {
        let c = row[j] as f64 - mean;
        c * c
    }) / d;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// Each row's mean and `1 / std` from a LayerNorm's forward pass, for its backward pass.
///
/// # Shapes
/// - `mean`, `rstd`: `[rows]`
#[derive(Debug, Clone)]
pub(crate) struct RowStats {
    /// The rows' means.
    pub(crate) mean: Vec<f32>,
    /// The rows' `1 / sqrt(var + eps)`.
    pub(crate) rstd: Vec<f32>,
}

impl RowStats {
    /// Zeroed statistics of `rows` rows, for [`ln_forward`] to write.
    pub(crate) fn zeros(rows: usize) -> Self {
        Self {
            mean: vec![0f32; rows],
            rstd: vec![0f32; rows],
        }
    }
}

/// Where [`ln_backward`] writes: `dx` (written, or added to when `accumulate`), `dw` and
/// `db` (written).
///
/// # Shapes
/// - `dx`: `[rows, d]`; `dw`, `db`: `[d]`
#[derive(Debug)]
pub(crate) struct LnGrads<'a> {
    /// The input's gradient.
    pub(crate) dx: &'a mut [f32],
    /// Add to `dx` instead of writing it.
    pub(crate) accumulate: bool,
    /// The weight's gradient.
    pub(crate) dw: &'a mut [f32],
    /// The bias's gradient.
    pub(crate) db: &'a mut [f32],
}

/// LayerNorm of the rows of `x` (width `d`) into `out`, with each row's mean and `1 / std`
/// written to `stats` (kept by the fused blocks for the backward pass).
///
/// # Shapes
/// - `x`, `out`: `[rows, d]`; `w`, `b`: `[d]`; `stats`: `[rows]`
pub(crate) fn ln_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    d: usize,
    eps: f64,
    out: &mut [f32],
    stats: &mut RowStats,
) -> candle_core::Result<()> {
    let rows = x.len() / d.max(1);
    let RowStats { mean, rstd } = stats;
    if w.len() != d
        || b.len() != d
        || out.len() != x.len()
        || mean.len() != rows
        || rstd.len() != rows
    {
        candle_core::bail!(
            "layer_norm: weight {} / bias {} / output {} / stats {} for {rows} rows of {d}",
            w.len(),
            b.len(),
            out.len(),
            mean.len()
        );
    }
    out.par_chunks_mut(d * ROW_CHUNK)
        .zip(x.par_chunks(d * ROW_CHUNK))
        .zip(
            mean.par_chunks_mut(ROW_CHUNK)
                .zip(rstd.par_chunks_mut(ROW_CHUNK)),
        )
        .for_each(|((o, xi), stats)| ln_forward_rows(o, xi, stats, (w, b), eps));
    Ok(())
}

crate::wide_fn! {
    /// [`ln_forward`] of the rows of `x` (width `w.len()`): normalised rows to `out`, each
    /// row's mean and `1 / std` to `stats`.
    pub(crate) fn ln_forward_rows(
        out: &mut [f32],
        x: &[f32],
        stats: (&mut [f32], &mut [f32]),
        affine: (&[f32], &[f32]),
        eps: f64,
    ) {
        let (w, b) = affine;
        let d = w.len().max(1);
        for (((orow, xrow), m), r) in out
            .chunks_mut(d)
            .zip(x.chunks(d))
            .zip(stats.0.iter_mut())
            .zip(stats.1.iter_mut())
        {
            let (mu, rs) = ln_row_stats(xrow, eps);
            for j in 0..w.len() {
                orow[j] = (xrow[j] - mu) * rs * w[j] + b[j];
            }
            *m = mu;
            *r = rs;
        }
    }
}

/// The gradients of [`ln_forward`] from the upstream gradient `g` into `grads`. Rows are
/// reduced in fixed chunks, so the weight gradients do not depend on the thread count.
///
/// # Shapes
/// - `x`, `g`, `grads.dx`: `[rows, d]`; `stats`: `[rows]`; `w`, `grads.dw`, `grads.db`: `[d]`
pub(crate) fn ln_backward(
    x: &[f32],
    stats: &RowStats,
    w: &[f32],
    g: &[f32],
    d: usize,
    grads: LnGrads<'_>,
) -> candle_core::Result<()> {
    let rows = x.len() / d.max(1);
    let RowStats { mean, rstd } = stats;
    let LnGrads {
        dx,
        accumulate,
        dw,
        db,
    } = grads;
    if g.len() != x.len()
        || dx.len() != x.len()
        || mean.len() != rows
        || rstd.len() != rows
        || w.len() != d
        || dw.len() != d
        || db.len() != d
    {
        candle_core::bail!("layer_norm_bwd: buffers do not match {rows} rows of {d}");
    }
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(d * ROW_CHUNK)
        .zip(x.par_chunks(d * ROW_CHUNK))
        .zip(g.par_chunks(d * ROW_CHUNK))
        .zip(mean.par_chunks(ROW_CHUNK).zip(rstd.par_chunks(ROW_CHUNK)))
        .map(|(((dxc, xc), gc), stats)| ln_backward_rows(dxc, xc, gc, stats, w, accumulate))
        .collect();
    dw.fill(0.0);
    db.fill(0.0);
    for (pw, pb) in partials {
        for j in 0..d {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
    }
    Ok(())
}

crate::wide_fn! {
    /// [`ln_backward`] of a chunk of rows (width `w.len()`): their input gradients to `dx`
    /// (written, or added to when `accumulate`), and their partial weight and bias gradients
    /// returned.
    pub(crate) fn ln_backward_rows(
        dx: &mut [f32],
        x: &[f32],
        g: &[f32],
        stats: (&[f32], &[f32]),
        w: &[f32],
        accumulate: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = w.len();
        let mut pw = vec![0f32; d];
        let mut pb = vec![0f32; d];
        let mut xhat = vec![0f32; d];
        let mut gy = vec![0f32; d];
        for ((((dxr, xr), gr), &mu), &rs) in dx
            .chunks_mut(d.max(1))
            .zip(x.chunks(d.max(1)))
            .zip(g.chunks(d.max(1)))
            .zip(stats.0)
            .zip(stats.1)
        {
            for j in 0..d {
                xhat[j] = (xr[j] - mu) * rs;
                gy[j] = gr[j] * w[j];
                pw[j] += gr[j] * xhat[j];
                pb[j] += gr[j];
            }
            let s_gy = math::sum_lanes(d, |j| gy[j] as f64);
            let s_gyx = math::sum_lanes(d, |j| (gy[j] * xhat[j]) as f64);
            let m_gy = (s_gy / d as f64) as f32;
            let m_gyx = (s_gyx / d as f64) as f32;
            for j in 0..d {
                let v = rs * (gy[j] - m_gy - xhat[j] * m_gyx);
                if accumulate {
                    dxr[j] += v;
                } else {
                    dxr[j] = v;
                }
            }
        }
        (pw, pb)
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "miram-layer-norm"
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
        let x = slice(s1, l1, "layer_norm x")?;
        let w = slice(s2, l2, "layer_norm weight")?;
        let b = slice(s3, l3, "layer_norm bias")?;
        let d = l1.dims().last().copied().unwrap_or(1);
        let rows = x.len() / d.max(1);
        let mut out = vec![0f32; x.len()];
        let mut stats = RowStats::zeros(rows);
        ln_forward(x, w, b, d, self.eps, &mut out, &mut stats)?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(D::Minus1)?;
        let rows = x.elem_count() / d.max(1);
        let grad = grad.contiguous()?;
        let all = x.apply_op3_no_bwd(w, &grad, &LayerNormBwdOp { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = all.narrow(0, rows, 1)?.reshape(d)?;
        let db = all.narrow(0, rows + 1, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// One pass over the rows computing `[dx; dw; db]` stacked as `[rows + 2, d]`.
struct LayerNormBwdOp {
    eps: f64,
}

impl CustomOp3 for LayerNormBwdOp {
    fn name(&self) -> &'static str {
        "miram-layer-norm-bwd"
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
        let x = slice(s1, l1, "layer_norm_bwd x")?;
        let w = slice(s2, l2, "layer_norm_bwd weight")?;
        let g = slice(s3, l3, "layer_norm_bwd grad")?;
        let d = l1.dims().last().copied().unwrap_or(1);
        let rows = x.len() / d.max(1);
        let (mean, rstd): (Vec<f32>, Vec<f32>) = x
            .chunks(d.max(1))
            .map(|r| ln_row_stats(r, self.eps))
            .unzip();
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, tail) = out.split_at_mut(rows * d);
        let (dw, db) = tail.split_at_mut(d);
        let stats = RowStats { mean, rstd };
        let grads = LnGrads {
            dx,
            accumulate: false,
            dw,
            db,
        };
        ln_backward(x, &stats, w, g, d, grads)?;
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

// ---------------------------------------------------------------------------------------
// GELU (exact, erf form)
// ---------------------------------------------------------------------------------------

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// Elements handled by one rayon task of the element-wise kernels.
const ELEM_CHUNK: usize = 16 * 1024;

/// The exact (erf) GELU, `x * (1 + erf(x / sqrt 2)) / 2`, differentiable (fused on the CPU
/// for `f32`, candle's `gelu_erf` elsewhere).
///
/// # Shapes
/// - `x`: any, returns the same shape
pub fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_fast_path(&[x]) {
        x.contiguous()?.apply_op1(GeluOp)
    } else {
        x.gelu_erf()
    }
}

/// The exact GELU of one value.
#[inline(always)]
pub(crate) fn gelu_value(x: f32) -> f32 {
    0.5 * x * (1.0 + math::erf(x * FRAC_1_SQRT_2))
}

/// The derivative of [`gelu_value`]: `(1 + erf(x / sqrt 2)) / 2 + x phi(x)`.
#[inline(always)]
pub(crate) fn gelu_slope(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + math::erf(x * FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * math::exp(-0.5 * x * x);
    cdf + x * pdf
}

crate::wide_fn! {
    /// `out[i] = gelu(x[i])`.
    pub(crate) fn gelu_values(out: &mut [f32], x: &[f32]) {
        for (ov, &xv) in out.iter_mut().zip(x) {
            *ov = gelu_value(xv);
        }
    }
}

crate::wide_fn! {
    /// `g[i] *= gelu'(x[i])`: a gradient through the GELU, in place.
    pub(crate) fn gelu_backward_in_place(g: &mut [f32], x: &[f32]) {
        for (gv, &xv) in g.iter_mut().zip(x) {
            *gv *= gelu_slope(xv);
        }
    }
}

struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "miram-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "gelu")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ELEM_CHUNK)
            .zip(x.par_chunks(ELEM_CHUNK))
            .for_each(|(o, xi)| gelu_values(o, xi));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwdOp)?))
    }
}

/// `dx = g * ((1 + erf(x / sqrt 2)) / 2 + x phi(x))`.
struct GeluBwdOp;

impl CustomOp2 for GeluBwdOp {
    fn name(&self) -> &'static str {
        "miram-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gelu_bwd x")?;
        let g = slice(s2, l2, "gelu_bwd grad")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ELEM_CHUNK)
            .zip(x.par_chunks(ELEM_CHUNK))
            .zip(g.par_chunks(ELEM_CHUNK))
            .for_each(|((o, xi), gi)| {
                o.copy_from_slice(gi);
                gelu_backward_in_place(o, xi);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------
// Softmax over the last dimension
// ---------------------------------------------------------------------------------------

/// Softmax over the last dimension, differentiable (fused on the CPU for `f32`; a bf16 or
/// f16 input is computed in `f32` and returned in its dtype).
///
/// # Shapes
/// - `x`: `[..., n]`, returns `[..., n]`
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_fast_path(&[x]) {
        x.contiguous()?.apply_op1(SoftmaxOp)
    } else {
        widened(x, |x| candle_nn::ops::softmax(x, D::Minus1))
    }
}

/// The backward pass of a last-dimension softmax: `y * (g - sum(g * y))` row by row, from its
/// output `y` and the gradient `g` of that output (fused on the CPU for `f32`).
///
/// # Shapes
/// - `y`, `g`: `[..., n]`, returns `[..., n]`
pub fn softmax_backward(y: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_fast_path(&[y, g]) {
        y.contiguous()?
            .apply_op2_no_bwd(&g.contiguous()?, &SoftmaxBwdOp)
    } else {
        let row = (g * y)?.sum_keepdim(D::Minus1)?;
        y * g.broadcast_sub(&row)?
    }
}

/// Softmax of one row in place.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let m = math::max(row);
    for v in row.iter_mut() {
        *v = math::exp(*v - m);
    }
    let inv = 1.0 / math::sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The softmax backward of one row in place: `g <- y * (g - sum(g * y))`.
#[inline(always)]
pub(crate) fn softmax_backward_row(y: &[f32], g: &mut [f32]) {
    let dot = math::dot(y, g);
    for (gv, &yv) in g.iter_mut().zip(y) {
        *gv = yv * (*gv - dot);
    }
}

crate::wide_fn! {
    /// [`softmax_row`] of each row (of `n` values) of `rows`, in place.
    pub(crate) fn softmax_rows(rows: &mut [f32], n: usize) {
        for row in rows.chunks_mut(n.max(1)) {
            softmax_row(row);
        }
    }
}

crate::wide_fn! {
    /// [`softmax_backward_row`] of each row (of `n` values) of `g`, in place, from the
    /// softmax output `y`.
    pub(crate) fn softmax_backward_rows(y: &[f32], g: &mut [f32], n: usize) {
        for (yr, gr) in y.chunks(n.max(1)).zip(g.chunks_mut(n.max(1))) {
            softmax_backward_row(yr, gr);
        }
    }
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "miram-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "softmax")?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n * ROW_CHUNK)
            .zip(x.par_chunks(n * ROW_CHUNK))
            .for_each(|(o, xi)| {
                o.copy_from_slice(xi);
                softmax_rows(o, n);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(softmax_backward(y, grad)?))
    }
}

/// `dx = y * (g - sum(g * y))` row by row.
struct SoftmaxBwdOp;

impl CustomOp2 for SoftmaxBwdOp {
    fn name(&self) -> &'static str {
        "miram-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, "softmax_bwd y")?;
        let g = slice(s2, l2, "softmax_bwd grad")?;
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; y.len()];
        out.par_chunks_mut(n * ROW_CHUNK)
            .zip(y.par_chunks(n * ROW_CHUNK))
            .zip(g.par_chunks(n * ROW_CHUNK))
            .for_each(|((o, yc), gc)| {
                o.copy_from_slice(gc);
                softmax_backward_rows(yc, o, n);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Helpers of the kernels' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{DType, Device, Tensor};

    /// A CPU `f32` tensor of normal values (mean 0, standard deviation `std`).
    pub(crate) fn normal(shape: &[usize], seed: u64, std: f32) -> candle_core::Result<Tensor> {
        let mut r = miram_rand::Rng::new(seed);
        let n = shape.iter().product();
        Tensor::from_vec(r.normal_vec(n, 0.0, std), shape, &Device::Cpu)
    }

    /// The largest absolute difference relative to the largest magnitude of `b`.
    pub(crate) fn max_rel(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
        let a = a.to_dtype(DType::F64)?;
        let b = b.to_dtype(DType::F64)?;
        let d = (&a - &b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        let s = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        Ok(d / s.max(1e-12))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> candle_core::Result<Tensor> {
        let mut r = miram_rand::Rng::new(seed);
        let n = shape.iter().product();
        Tensor::from_vec(r.normal_vec(n, 0.0, 1.0), shape, &Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn on_pool_runs_on_a_worker_and_returns_the_result() {
        assert!(on_pool(rayon::current_thread_index).is_some());
        assert_eq!(on_pool(|| on_pool(|| 41) + 1), 42);
    }

    #[test]
    fn layer_norm_fused_equals_composed_forward_and_backward() -> candle_core::Result<()> {
        let x = Var::from_tensor(&rand(&[3, 5, 70], 1)?)?;
        let w = Var::from_tensor(&(rand(&[70], 2)? + 1.0)?)?;
        let b = Var::from_tensor(&rand(&[70], 3)?)?;
        let up = rand(&[3, 5, 70], 4)?;
        let y1 = layer_norm(&x, &w, &b, 1e-6)?;
        let y2 = layer_norm_composed(&x, &w, &b, 1e-6)?;
        assert!(max_diff(&y1, &y2) < 1e-5);
        let g1 = (y1 * &up)?.sum_all()?.backward()?;
        let g2 = (y2 * &up)?.sum_all()?.backward()?;
        for v in [&x, &w, &b] {
            let a = g1.get(v).expect("grad");
            let c = g2.get(v).expect("grad");
            assert!(max_diff(a, c) < 1e-4, "{}", max_diff(a, c));
        }
        Ok(())
    }

    #[test]
    fn softmax_fused_equals_composed_forward_and_backward() -> candle_core::Result<()> {
        let x = Var::from_tensor(&(rand(&[2, 3, 4, 33], 5)? * 3.0)?)?;
        let up = rand(&[2, 3, 4, 33], 6)?;
        let y1 = softmax_last_dim(&x)?;
        let y2 = candle_nn::ops::softmax(&x, D::Minus1)?;
        assert!(max_diff(&y1, &y2) < 1e-6);
        let g1 = (y1 * &up)?.sum_all()?.backward()?;
        let g2 = (y2 * &up)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-5);
        Ok(())
    }

    #[test]
    fn gelu_fused_equals_candle_forward_and_backward() -> candle_core::Result<()> {
        let x = Var::from_tensor(&(rand(&[4, 1000], 11)? * 3.0)?)?;
        let up = rand(&[4, 1000], 12)?;
        let y1 = gelu(&x)?;
        let y2 = x.gelu_erf()?;
        assert!(max_diff(&y1, &y2) < 1e-6);
        let g1 = (y1 * &up)?.sum_all()?.backward()?;
        let g2 = (y2 * &up)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).expect("grad"), g2.get(&x).expect("grad")) < 1e-5);
        Ok(())
    }

    #[test]
    fn layer_norm_gradient_matches_finite_differences() -> candle_core::Result<()> {
        let x0 = rand(&[2, 9], 7)?;
        let w = (rand(&[9], 8)? + 1.0)?;
        let b = rand(&[9], 9)?;
        let up = rand(&[2, 9], 10)?;
        let x = Var::from_tensor(&x0)?;
        let g = (layer_norm(&x, &w, &b, 1e-6)? * &up)?
            .sum_all()?
            .backward()?;
        let gx = g.get(&x).expect("grad").flatten_all()?.to_vec1::<f32>()?;
        let base = x0.flatten_all()?.to_vec1::<f32>()?;
        let f = |v: &[f32]| -> f64 {
            let t = Tensor::from_slice(v, (2, 9), &Device::Cpu).unwrap();
            let t = t.to_dtype(DType::F64).unwrap();
            let y = layer_norm_composed(
                &t,
                &w.to_dtype(DType::F64).unwrap(),
                &b.to_dtype(DType::F64).unwrap(),
                1e-6,
            )
            .unwrap();
            (y * up.to_dtype(DType::F64).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        for i in 0..base.len() {
            let mut p = base.clone();
            let mut m = base.clone();
            p[i] += 1e-2;
            m[i] -= 1e-2;
            let fd = (f(&p) - f(&m)) / 2e-2;
            assert!((fd - gx[i] as f64).abs() < 2e-3, "{i}: {fd} vs {}", gx[i]);
        }
        Ok(())
    }
}
