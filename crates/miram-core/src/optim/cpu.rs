//! The CPU `f32` kernels of the optimiser and of the gradient bookkeeping: one pass over each
//! tensor, in place where the tensor is the optimiser's (or the gradient set's) own, rayon
//! over fixed-size chunks so that no result depends on the number of threads. Every other
//! device or dtype takes the composed candle ops of [`super`].
//!
//! The element-wise kernels round exactly as the composed candle ops do (`x * c` is candle's
//! `affine(c, 0)`, i.e. `x * c + 0`, with `c` rounded to `f32`), so the fused AdamW step and
//! the in-place scaling and accumulation are bit-identical to the composed path.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Storage, Tensor};
use rayon::prelude::*;

/// Elements per rayon task. Fixed, so that the global norm's partial sums (and their order)
/// are the same on any number of threads.
pub(crate) const CHUNK: usize = 1 << 15;

/// True for a contiguous `f32` tensor on the CPU while the fused CPU kernels are on
/// ([`miram_nn::ops::fused_cpu_kernels`]): what the kernels here take.
pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    miram_nn::ops::fused_cpu_kernels()
        && t.device().is_cpu()
        && t.dtype() == DType::F32
        && t.is_contiguous()
}

/// Runs `f` on the elements of a contiguous `f32` CPU tensor, read in place (under the
/// storage's read lock: `f` must not write to the same tensor); none for any other tensor.
pub(crate) fn read_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let (start, end) = layout.contiguous_offsets()?;
            Some(f(v.get(start..end)?))
        }
        _ => None,
    }
}

/// Whether two tensors share their storage (a view, a clone, a `Var` and its tensor).
pub(crate) fn same_storage(a: &Tensor, b: &Tensor) -> bool {
    let addr = |t: &Tensor| {
        let (s, _) = t.storage_and_layout();
        std::ptr::from_ref::<Storage>(&s).addr()
    };
    addr(a) == addr(b)
}

/// A fresh, compact copy of a contiguous-or-not `f32` CPU tensor (no storage shared with
/// anything); other tensors are returned as they are.
pub(crate) fn fresh_f32(t: &Tensor) -> candle_core::Result<Tensor> {
    if !(t.device().is_cpu() && t.dtype() == DType::F32) {
        return Ok(t.clone());
    }
    let data = t.flatten_all()?.to_vec1::<f32>()?;
    Tensor::from_vec(data, t.shape(), t.device())
}

/// In-place access to a tensor's elements through candle's in-place op (which holds the
/// storage's write lock while `f` runs).
struct WithSlice<F, R> {
    f: RefCell<Option<F>>,
    out: RefCell<Option<R>>,
}

impl<F: FnOnce(&mut [f32]) -> R, R> InplaceOp1 for WithSlice<F, R> {
    fn name(&self) -> &'static str {
        "miram-f32-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        if let (CpuStorage::F32(v), Some((start, end))) = (storage, layout.contiguous_offsets()) {
            let f = self.f.borrow_mut().take();
            if let (Some(s), Some(f)) = (v.get_mut(start..end), f) {
                *self.out.borrow_mut() = Some(f(s));
            }
        }
        Ok(())
    }
}

/// Runs `f` on the elements of a contiguous `f32` CPU tensor, writable in place; none (and
/// `f` not run) for any other tensor. `f` must not lock the same tensor again.
pub(crate) fn write_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&mut [f32]) -> R,
) -> candle_core::Result<Option<R>> {
    if !is_cpu_f32(t) {
        return Ok(None);
    }
    let op = WithSlice {
        f: RefCell::new(Some(f)),
        out: RefCell::new(None),
    };
    t.inplace_op1(&op)?;
    Ok(op.out.into_inner())
}

/// `x = x * s` (as candle's `affine(s, 0)` rounds it) over a contiguous `f32` CPU tensor in
/// place; false (nothing done) for any other tensor.
pub(crate) fn scale_in_place(t: &Tensor, s: f64) -> candle_core::Result<bool> {
    let s = s as f32;
    let scale = |c: &mut [f32]| {
        for v in c {
            *v = *v * s + 0.0;
        }
    };
    let done = write_f32(t, |x| {
        if x.len() <= CHUNK {
            scale(x);
        } else {
            x.par_chunks_mut(CHUNK).for_each(scale);
        }
    })?;
    Ok(done.is_some())
}

/// `a += g` element-wise (`a` written in place, `g` read).
struct AddAssign;

impl InplaceOp2 for AddAssign {
    fn name(&self) -> &'static str {
        "miram-add-assign"
    }

    fn cpu_fwd(
        &self,
        a: &mut CpuStorage,
        al: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (a, g) = f32_pair(self.name(), a, al, g, gl)?;
        let add = |(a, g): (&mut [f32], &[f32])| {
            for (a, g) in a.iter_mut().zip(g) {
                *a += *g;
            }
        };
        if a.len() <= CHUNK {
            add((a, g));
        } else {
            a.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .for_each(add);
        }
        Ok(())
    }
}

/// The elements of a written and a read contiguous `f32` CPU tensor of equal length.
fn f32_pair<'a>(
    op: &str,
    a: &'a mut CpuStorage,
    al: &Layout,
    b: &'a CpuStorage,
    bl: &Layout,
) -> candle_core::Result<(&'a mut [f32], &'a [f32])> {
    let (CpuStorage::F32(a), CpuStorage::F32(b)) = (a, b) else {
        candle_core::bail!("{op}: f32 tensors only");
    };
    let (Some((a0, a1)), Some((b0, b1))) = (al.contiguous_offsets(), bl.contiguous_offsets())
    else {
        candle_core::bail!("{op}: contiguous tensors only");
    };
    match (a.get_mut(a0..a1), b.get(b0..b1)) {
        (Some(a), Some(b)) if a.len() == b.len() => Ok((a, b)),
        _ => candle_core::bail!("{op}: {} elements written from {} read", a1 - a0, b1 - b0),
    }
}

/// `a += g` in place over two contiguous `f32` CPU tensors of one shape in distinct storage;
/// false (nothing done) otherwise.
pub(crate) fn add_in_place(a: &Tensor, g: &Tensor) -> candle_core::Result<bool> {
    if !(is_cpu_f32(a) && is_cpu_f32(g)) || a.dims() != g.dims() || same_storage(a, g) {
        return Ok(false);
    }
    a.inplace_op2(g, &AddAssign)?;
    Ok(true)
}

/// Partial sums per chunk in the sum of squares (independent additions vectorise).
const LANES: usize = 8;

/// The sum of squares of `x` in `f64`: per chunk of [`CHUNK`], [`LANES`] running sums over
/// the elements in turn, added in order; then the chunks' sums in order (the same on any
/// number of threads).
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    let chunk = |c: &[f32]| -> f64 {
        let mut acc = [0f64; LANES];
        let mut groups = c.chunks_exact(LANES);
        for g in &mut groups {
            for (a, &v) in acc.iter_mut().zip(g) {
                let v = f64::from(v);
                *a += v * v;
            }
        }
        for (a, &v) in acc.iter_mut().zip(groups.remainder()) {
            let v = f64::from(v);
            *a += v * v;
        }
        acc.iter().sum()
    };
    if x.len() <= CHUNK {
        // One chunk: the same sum as the parallel form below, without a rayon task.
        return chunk(x);
    }
    let partial: Vec<f64> = x.par_chunks(CHUNK).map(chunk).collect();
    partial.iter().sum()
}

/// The coefficients of one AdamW update of one parameter, rounded to `f32` as the composed
/// path's scalar ops round them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWCoefs {
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    /// `1 - lr * weight_decay`, none without weight decay.
    decay: Option<f32>,
    /// `1 / sqrt(1 - b2^t)`.
    inv_bc2_sqrt: f32,
    eps: f32,
    /// `lr / (1 - b1^t)`.
    step_size: f32,
}

impl AdamWCoefs {
    /// The coefficients with the `f64` values the composed path computes (`bc1 = 1 - b1^t`,
    /// `bc2_sqrt = sqrt(1 - b2^t)`, `lr` already multiplied by the parameter's scale).
    pub(crate) fn new(
        beta1: f64,
        beta2: f64,
        eps: f64,
        lr: f64,
        weight_decay: f64,
        bc1: f64,
        bc2_sqrt: f64,
    ) -> Self {
        Self {
            b1: beta1 as f32,
            one_minus_b1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            one_minus_b2: (1.0 - beta2) as f32,
            decay: (weight_decay != 0.0).then_some((1.0 - lr * weight_decay) as f32),
            inv_bc2_sqrt: (1.0 / bc2_sqrt) as f32,
            eps: eps as f32,
            step_size: (lr / bc1) as f32,
        }
    }
}

miram_nn::wide_fn! {
    /// One AdamW update over one chunk, in the composed path's order of operations:
    /// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = p (1 - lr wd);
    /// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)`.
    fn adamw_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamWCoefs) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let mi = (*m * c.b1 + 0.0) + (g * c.one_minus_b1 + 0.0);
            let vi = (*v * c.b2 + 0.0) + ((g * g) * c.one_minus_b2 + 0.0);
            *m = mi;
            *v = vi;
            let pi = match c.decay {
                Some(d) => *p * d + 0.0,
                None => *p,
            };
            let denom = (vi.sqrt() * c.inv_bc2_sqrt + 0.0) + c.eps;
            let upd = (mi / denom) * c.step_size + 0.0;
            *p = pi - upd;
        }
    }
}

/// The AdamW update of a parameter (written in place) from its gradient (read), with the two
/// moments handed in as slices already locked for writing.
struct AdamWUpdate<'a> {
    moments: RefCell<Option<(&'a mut [f32], &'a mut [f32])>>,
    coefs: AdamWCoefs,
}

impl InplaceOp2 for AdamWUpdate<'_> {
    fn name(&self) -> &'static str {
        "miram-adamw"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        pl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (p, g) = f32_pair(self.name(), p, pl, g, gl)?;
        let Some((m, v)) = self.moments.borrow_mut().take() else {
            candle_core::bail!("{}: the moments were already used", self.name());
        };
        if m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!(
                "{}: moments of {} and {} elements for a parameter of {}",
                self.name(),
                m.len(),
                v.len(),
                p.len()
            );
        }
        let c = &self.coefs;
        if p.len() <= CHUNK {
            adamw_chunk(p, g, m, v, c);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| adamw_chunk(p, g, m, v, c));
        }
        Ok(())
    }
}

/// One AdamW update of parameter `p` and its moments `m`, `v`, all in place, from gradient
/// `g`: one pass. False (nothing changed) unless the four are contiguous `f32` CPU tensors of
/// one shape in four distinct storages.
pub(crate) fn adamw_in_place(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    coefs: AdamWCoefs,
) -> candle_core::Result<bool> {
    let all = [p, g, m, v];
    if !all.iter().all(|t| is_cpu_f32(t) && t.dims() == p.dims()) {
        return Ok(false);
    }
    for (i, a) in all.iter().enumerate() {
        if all[i + 1..].iter().any(|b| same_storage(a, b)) {
            return Ok(false);
        }
    }
    let r = write_f32(m, |m| {
        write_f32(v, |v| {
            let op = AdamWUpdate {
                moments: RefCell::new(Some((m, v))),
                coefs,
            };
            p.inplace_op2(g, &op)
        })
    })?;
    match r {
        Some(r) => match r? {
            Some(r) => {
                r?;
                Ok(true)
            }
            None => Ok(false),
        },
        None => Ok(false),
    }
}
