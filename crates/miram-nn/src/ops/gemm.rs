//! Matrix products of the fused CPU kernels behind bounds-checked, strided matrix views, so
//! that a kernel can multiply a head's columns of a packed `qkv` buffer, or accumulate a
//! weight gradient into its slot of a packed gradient, without copies and without `unsafe`
//! of its own.
//!
//! The product itself is the project's own AVX2/FMA kernel (`sgemm.rs`: packed operands, a
//! 6 x 16 register tile) on x86-64 CPUs that have AVX2 and FMA, and the `gemm` crate (the
//! one candle's CPU backend calls) elsewhere; [`set_own_kernel`] chooses for benchmarks, and
//! [`kernel_name`] says which runs.
//!
//! Every product can be counted (FLOPs and wall time, process-wide) for `miram bench`'s
//! "share of the step in matrix products" and achieved GFLOP/s: see [`MatmulStats`].
//!
//! Results do not depend on the thread count: both kernels split the output into blocks and
//! never split the inner (`k`) dimension across threads, so every output element is
//! accumulated in the same order whatever the parallelism.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use candle_core::{bail, Result};

/// A read-only `rows x cols` matrix inside a slice: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// A writable `rows x cols` matrix inside a slice, whose elements are distinct positions of
/// the slice (checked when it is made).
#[derive(Debug)]
pub struct MatMut<'a> {
    pub(super) data: &'a mut [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// The last index a view touches (`None` for an empty view).
fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return None;
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .or(Some(usize::MAX))
}

fn check_bounds(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<()> {
    match last_index(rows, cols, rs, cs) {
        Some(last) if last >= len => bail!(
            "matrix view {rows}x{cols} (strides {rs}, {cs}) reaches index {last} of a slice of {len}"
        ),
        _ => Ok(()),
    }
}

fn check_columns(width: usize, start: usize, cols: usize) -> Result<()> {
    if start.saturating_add(cols) > width {
        bail!(
            "columns {start}..{} of a {width}-column matrix",
            start.saturating_add(cols)
        );
    }
    Ok(())
}

impl<'a> MatRef<'a> {
    /// A strided view; fails when it would read past the end of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        check_bounds(data.len(), rows, cols, rs, cs)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A row-major `rows x cols` view of the start of `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Columns `start..start + cols` of every row of a row-major buffer of `width` columns.
    pub fn cols_of(
        data: &'a [f32],
        rows: usize,
        width: usize,
        start: usize,
        cols: usize,
    ) -> Result<Self> {
        check_columns(width, start, cols)?;
        Self::new(data.get(start..).unwrap_or(&[]), rows, cols, width, 1)
    }

    /// The position of element `(row, col)` in the slice.
    pub(super) fn offset(&self, row: usize, col: usize) -> usize {
        row * self.rs + col * self.cs
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows of the view.
    pub fn nrows(&self) -> usize {
        self.rows
    }

    /// Columns of the view.
    pub fn ncols(&self) -> usize {
        self.cols
    }
}

impl<'a> MatMut<'a> {
    /// A strided writable view; fails when it would write past the end of `data` or when
    /// two of its elements would share a position (a row stride that overlaps the columns).
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self> {
        check_bounds(data.len(), rows, cols, rs, cs)?;
        let distinct = rows <= 1 && (cols <= 1 || cs >= 1)
            || cols <= 1 && rs >= 1
            || (cs >= 1 && rs >= cs.saturating_mul(cols))
            || (rs >= 1 && cs >= rs.saturating_mul(rows));
        if !distinct {
            bail!("matrix view {rows}x{cols} with strides {rs}, {cs} writes one position twice");
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A row-major `rows x cols` view of the start of `data`.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Columns `start..start + cols` of every row of a row-major buffer of `width` columns.
    pub fn cols_of(
        data: &'a mut [f32],
        rows: usize,
        width: usize,
        start: usize,
        cols: usize,
    ) -> Result<Self> {
        check_columns(width, start, cols)?;
        let tail = match data.get_mut(start..) {
            Some(t) => t,
            None => &mut [],
        };
        Self::new(tail, rows, cols, width, 1)
    }
}

/// How a product is parallelised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread (inside a kernel that is already parallel over heads or rows).
    Seq,
    /// Over the rayon pool, when the product is large enough to gain from it.
    Pool,
}

/// Whether products take the project's own kernel where the CPU has one ([`set_own_kernel`]).
static OWN_KERNEL: AtomicBool = AtomicBool::new(true);

/// Chooses, for the whole process, between the project's own AVX2/FMA product (`true`, the
/// default, where the CPU has AVX2 and FMA) and the `gemm` crate's (`false`): for
/// benchmarks and for tests of both.
pub fn set_own_kernel(on: bool) {
    OWN_KERNEL.store(on, Ordering::Relaxed);
}

/// The kernel that CPU products take now: `"miram avx2+fma"` (the project's own, for every
/// product of at least 16384 multiply-adds) or `"gemm crate"`.
pub fn kernel_name() -> &'static str {
    if own_kernel_on() {
        "miram avx2+fma"
    } else {
        "gemm crate"
    }
}

/// Whether the own kernel is chosen ([`set_own_kernel`]) and this CPU runs it.
fn own_kernel_on() -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::sgemm::available() {
        return OWN_KERNEL.load(Ordering::Relaxed);
    }
    false
}

/// Products smaller than this many multiply-adds take the `gemm` crate's kernels even where
/// the own kernel runs: its unpacked small-matrix paths are faster there (`cargo bench
/// --bench matmul`, the encoder's 13-token attention scores, 13 x 64 x 13: 0.57-0.67 us
/// against 0.74-0.96 us for the own kernel, whose 6-row tiles and packing dominate at that
/// size).
const OWN_MIN_MACS: usize = 1 << 14;

/// Products smaller than this many multiply-adds run on the calling thread.
const PAR_MIN_MACS: usize = 1 << 16;

/// `dst = (accumulate ? dst : 0) + alpha * a b`.
///
/// # Shapes
/// - `a`: `[m, k]`, `b`: `[k, n]`, `dst`: `[m, n]`
pub fn matmul(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    accumulate: bool,
    par: Par,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.rows != m || dst.cols != n {
        bail!(
            "matmul of {}x{} by {}x{} into {}x{}",
            a.rows,
            a.cols,
            b.rows,
            b.cols,
            dst.rows,
            dst.cols
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return Ok(());
    }
    let macs = m.saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads();
    let threads = if par == Par::Pool && threads > 1 && macs >= PAR_MIN_MACS {
        threads
    } else {
        1
    };
    let clock = STATS_ON.load(Ordering::Relaxed).then(Instant::now);
    #[cfg(target_arch = "x86_64")]
    if macs >= OWN_MIN_MACS && own_kernel_on() {
        super::sgemm::gemm(dst, a, b, alpha, accumulate, threads);
    } else {
        crate_gemm(dst, a, b, alpha, accumulate, threads);
    }
    #[cfg(not(target_arch = "x86_64"))]
    crate_gemm(dst, a, b, alpha, accumulate, threads);
    if let Some(t) = clock {
        // The wall time of products run inside a parallel kernel overlaps across threads;
        // only products on the pool (or outside any kernel) measure the step's wall time.
        if par == Par::Pool {
            STATS_NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        STATS_FLOPS.fetch_add(2 * macs as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// The product of views whose shapes agree (checked by [`matmul`]) through the `gemm` crate:
/// small products, CPUs without AVX2 and FMA, other architectures.
fn crate_gemm(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views were bounds-checked when they were made: every index
    // `i * rs + j * cs` for `i < rows`, `j < cols` lies inside its slice, and `dst`'s indices
    // are pairwise distinct (`MatMut::new`). `dst` is borrowed mutably, so it cannot alias
    // `a` or `b` (shared borrows). The shapes agree (`a` is m x k, `b` k x n, `dst` m x n),
    // checked by `matmul`, and all strides fit in `isize` because they index live slices.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

static STATS_ON: AtomicBool = AtomicBool::new(false);
static STATS_FLOPS: AtomicU64 = AtomicU64::new(0);
static STATS_NANOS: AtomicU64 = AtomicU64::new(0);
static STATS_PAR_NANOS: AtomicU64 = AtomicU64::new(0);

/// The matrix products of the fused kernels since [`MatmulStats::start`], process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MatmulStats {
    /// Floating-point operations (2 per multiply-add).
    pub flops: u64,
    /// Wall time spent in products, in seconds (kernels that run products on several
    /// threads at once count the wall time of the parallel region).
    pub seconds: f64,
}

impl MatmulStats {
    /// Resets the counters and starts counting.
    pub fn start() {
        STATS_FLOPS.store(0, Ordering::Relaxed);
        STATS_NANOS.store(0, Ordering::Relaxed);
        STATS_PAR_NANOS.store(0, Ordering::Relaxed);
        STATS_ON.store(true, Ordering::Relaxed);
    }

    /// Stops counting and returns what was counted.
    pub fn stop() -> Self {
        STATS_ON.store(false, Ordering::Relaxed);
        Self::read()
    }

    /// What was counted so far (counting continues).
    pub fn read() -> Self {
        let nanos = STATS_NANOS.load(Ordering::Relaxed) + STATS_PAR_NANOS.load(Ordering::Relaxed);
        Self {
            flops: STATS_FLOPS.load(Ordering::Relaxed),
            seconds: nanos as f64 * 1e-9,
        }
    }
}

/// Times a parallel region of sequential products (per-head attention products run on
/// several threads at once) as wall time, for [`MatmulStats`].
pub(crate) fn timed_region<T>(f: impl FnOnce() -> T) -> T {
    if !STATS_ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let out = f();
    STATS_PAR_NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Rounds of the probe loop per thread in one measurement of [`fma_peak_gflops`]: about
/// 8 ms at two 8-lane fused multiply-adds per cycle and 3 GHz.
#[cfg(target_arch = "x86_64")]
const PEAK_ITERS: usize = 1 << 22;

/// The machine's peak rate of fused multiply-adds on the threads of the current rayon pool,
/// in GFLOP/s (2 FLOPs per multiply-add and lane): the yardstick of `matmul_gflops` and
/// `step_gflops` in `miram bench`, measured rather than read from a data sheet, since a
/// virtual machine's clock and its share of the cores are what the products actually get.
///
/// Every thread of the pool runs the own kernel's register-only loop at once (twelve
/// independent 8-lane accumulators, no memory traffic: an upper bound for any product on
/// this machine), and the rate is the sum of the threads' rates; the best of three such
/// rounds (about 25 ms in all). `None` where the own kernel cannot run (other
/// architectures, or no AVX2 and FMA), whether or not [`set_own_kernel`] chose it.
pub fn fma_peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::sgemm::available() {
        let per_iter = (super::sgemm::PROBE_CHAINS * 8 * 2) as f64;
        let round = || -> f64 {
            rayon::broadcast(|_| {
                let t = Instant::now();
                let r = super::sgemm::fma_probe(
                    std::hint::black_box(PEAK_ITERS),
                    std::hint::black_box(1.0),
                    std::hint::black_box(0.5),
                );
                std::hint::black_box(r);
                per_iter * PEAK_ITERS as f64 / t.elapsed().as_secs_f64().max(1e-9) * 1e-9
            })
            .iter()
            .sum()
        };
        return Some((0..3).map(|_| round()).fold(0.0, f64::max));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        miram_rand::Rng::new(seed).normal_vec(n, 0.0, 1.0)
    }

    #[test]
    fn products_equal_a_naive_reference_for_every_layout() -> Result<()> {
        for &(m, k, n) in &[(1, 1, 1), (7, 5, 3), (33, 17, 65), (130, 64, 40)] {
            let a = data(m * k, 1);
            let b = data(k * n, 2);
            let want = naive(&a, &b, m, k, n);
            // Row-major operands; the transposed storage of each read through `t()`.
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta {
                    MatRef::rows(&at, k, m)?.t()
                } else {
                    MatRef::rows(&a, m, k)?
                };
                let bv = if tb {
                    MatRef::rows(&bt, n, k)?.t()
                } else {
                    MatRef::rows(&b, k, n)?
                };
                for par in [Par::Seq, Par::Pool] {
                    let mut c = vec![1f32; m * n];
                    matmul(MatMut::rows(&mut c, m, n)?, av, bv, 1.0, false, par)?;
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                    }
                    // Accumulation with a scale: c = c + 0.5 a b.
                    matmul(MatMut::rows(&mut c, m, n)?, av, bv, 0.5, true, par)?;
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 1.5 * y).abs() < 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn column_views_read_and_write_only_their_columns() -> Result<()> {
        // a = columns 2..5 of a 4 x 9 buffer; dst = columns 1..3 of a 4 x 6 buffer.
        let buf = data(36, 3);
        let b = data(3 * 2, 4);
        let mut out = vec![7f32; 24];
        let av = MatRef::cols_of(&buf, 4, 9, 2, 3)?;
        matmul(
            MatMut::cols_of(&mut out, 4, 6, 1, 2)?,
            av,
            MatRef::rows(&b, 3, 2)?,
            1.0,
            false,
            Par::Seq,
        )?;
        for i in 0..4 {
            for j in 0..6 {
                let v = out[i * 6 + j];
                if j == 1 || j == 2 {
                    let want: f32 = (0..3).map(|p| buf[i * 9 + 2 + p] * b[p * 2 + j - 1]).sum();
                    assert!((v - want).abs() < 1e-5);
                } else {
                    assert_eq!(v, 7.0, "column {j} of row {i} was written");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn views_past_the_end_or_overlapping_are_refused() {
        let a = vec![0f32; 12];
        let mut w = vec![0f32; 12];
        assert!(MatRef::new(&a, 3, 4, 4, 1).is_ok());
        assert!(MatRef::new(&a, 4, 4, 4, 1).is_err());
        assert!(MatRef::new(&a, 3, 5, 4, 1).is_err());
        assert!(MatRef::new(&a, 2, 2, usize::MAX / 2, 1).is_err());
        assert!(MatRef::cols_of(&a, 3, 4, 2, 3).is_err());
        assert!(MatRef::cols_of(&a, 3, 4, 4, 0).is_ok());
        assert!(MatMut::new(&mut w, 3, 4, 4, 1).is_ok());
        assert!(MatMut::new(&mut w, 3, 4, 2, 1).is_err(), "rows overlap");
        assert!(
            MatMut::new(&mut w, 3, 4, 0, 1).is_err(),
            "every row the same"
        );
        assert!(MatMut::new(&mut w, 4, 3, 1, 4).is_ok(), "column-major");
        assert!(MatMut::cols_of(&mut w, 4, 3, 1, 3).is_err());
        // Shapes that disagree.
        let b = vec![0f32; 12];
        let r = matmul(
            MatMut::rows(&mut w, 3, 4).expect("view"),
            MatRef::rows(&a, 3, 4).expect("view"),
            MatRef::rows(&b, 3, 4).expect("view"),
            1.0,
            false,
            Par::Seq,
        );
        assert!(r.is_err());
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() -> Result<()> {
        let (m, k, n) = (96, 200, 80);
        let a = data(m * k, 5);
        let b = data(k * n, 6);
        let run = |threads: usize| -> Result<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle_core::Error::wrap)?;
            pool.install(|| {
                let mut c = vec![0f32; m * n];
                matmul(
                    MatMut::rows(&mut c, m, n)?,
                    MatRef::rows(&a, m, k)?,
                    MatRef::rows(&b, k, n)?,
                    1.0,
                    false,
                    Par::Pool,
                )?;
                Ok(c)
            })
        };
        let one = run(1)?;
        for t in [2, 3, 4] {
            assert_eq!(one, run(t)?, "{t} threads");
        }
        Ok(())
    }
}
