//! The project's own `f32` matrix product for x86-64 CPUs with AVX2 and FMA: a packed,
//! cache-blocked product around a 6 x 16 register micro-kernel (twelve 8-lane accumulators),
//! the layout of BLIS and of the fastest CPU trainers.
//!
//! Why not the `gemm` crate alone: on the development machine (AMD EPYC, 2 cores) `gemm`
//! reaches about 80 GFLOP/s per core on the shapes of a `tiny` step and about 145 on two,
//! while MKL (PyTorch's) reaches about 90 and 165; inside a step, where many products are
//! small (a 13-token encoder attention, 32-wide heads, 104-row activations), `gemm`'s
//! per-call dispatch and its split over threads cost more still. This kernel packs both
//! operands into thread-local buffers that live across calls (no allocation, no page
//! zeroing after the first call), splits a product between threads along the output
//! dimension that packs less twice (the columns when `a` is read in place, then into four
//! parts per thread, so that a worker that wakes late still takes its share), and runs each
//! part sequentially. Measured figures: `docs/performance.md`.
//!
//! Determinism: every output element is `sum_k a_ik b_kj` accumulated in `k` order in
//! blocks of [`KC`] (fused multiply-adds in one lane), then merged into the destination with
//! one fused multiply-add per block. Neither the blocking nor the tile an element falls in
//! depends on the thread count (parts are split at multiples of the tile size), so results
//! are bit-identical on any number of threads.
//!
//! Machines without AVX2 and FMA (and other architectures) take the `gemm` crate
//! ([`super::gemm::matmul`] chooses).

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{available, fma_probe, gemm, PROBE_CHAINS};

use super::gemm::MatRef;

/// Rows of the micro-kernel's tile (the packed `a` panels' height).
pub(crate) const MR: usize = 6;
/// Columns of the micro-kernel's tile (the packed `b` panels' width).
pub(crate) const NR: usize = 16;
/// Depth of one packed block: `KC x NR` floats of `b` (16 KiB) stay in L1.
pub(crate) const KC: usize = 256;
/// Rows of `a` packed at once: `MC x KC` floats (144 KiB) stay in L2.
pub(crate) const MC: usize = 144;
/// Columns of `b` packed at once: `KC x NC` floats (2 MiB) stay in L3.
pub(crate) const NC: usize = 2048;
/// Parts per pool thread of a product whose columns are split and whose `a` is read in place
/// (see `gemm`).
const PARTS_PER_THREAD: usize = 4;

/// Packs depths (rows) `d0..d0 + depth` and columns `w0..w0 + width` of `x` into panels of
/// `W` columns: panel `q`, depth `kk`, column `j` at `out[q * depth * W + kk * W + j]`, zeros
/// past `width`. `b` is packed as it is (`W` = [`NR`]), `a` through its transpose (`W` =
/// [`MR`]: panel rows of `a` become columns).
fn pack<const W: usize>(
    out: &mut [f32],
    x: MatRef<'_>,
    d0: usize,
    w0: usize,
    depth: usize,
    width: usize,
) {
    for (q, panel) in out
        .chunks_exact_mut(depth * W)
        .take(width.div_ceil(W))
        .enumerate()
    {
        let cols = (width - q * W).min(W);
        if x.cs == 1 {
            // Rows contiguous: each depth's `cols` values are one run (a fixed-length copy
            // when the panel is full: no call per depth).
            for (kk, dst) in panel.chunks_exact_mut(W).enumerate() {
                let start = x.offset(d0 + kk, w0 + q * W);
                if cols == W {
                    dst.copy_from_slice(&x.data[start..start + W]);
                } else {
                    dst[..cols].copy_from_slice(&x.data[start..start + cols]);
                    dst[cols..].fill(0.0);
                }
            }
        } else {
            // Column by column (each a run when `x.rs == 1`), written depth by depth so that
            // the panel is written in order and the `cols` source columns stay in L1.
            let runs: [&[f32]; W] = std::array::from_fn(|j| {
                if j < cols {
                    let start = x.offset(d0, w0 + q * W + j);
                    &x.data[start..start + (depth - 1) * x.rs + 1]
                } else {
                    &[]
                }
            });
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if W == NR && x.rs == 1 && cols == NR && available() {
                done = x86::transpose_runs(panel, &runs, depth);
            }
            for (kk, dst) in panel.chunks_exact_mut(W).enumerate().skip(done) {
                let at = kk * x.rs;
                for (d, run) in dst.iter_mut().zip(&runs) {
                    *d = run.get(at).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::gemm::{MatMut, MatRef};
    use super::{pack, KC, MC, MR, NC, NR, PARTS_PER_THREAD};
    use rayon::prelude::*;
    use std::arch::x86_64::*;
    use std::cell::RefCell;
    use std::sync::OnceLock;

    /// Whether this CPU runs the kernel (AVX2 and FMA), detected once.
    pub(crate) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }

    thread_local! {
        /// Packed panels of `a` and `b`, reused by every product on this thread.
        static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// The destination, written through a pointer because the parts that threads write are
    /// interleaved in memory (a column range of a row-major matrix), though disjoint.
    #[derive(Clone, Copy)]
    struct Dst {
        ptr: *mut f32,
        rs: usize,
        cs: usize,
    }
    // SAFETY: a `Dst` is shared between the threads of one product only, each writing a
    // disjoint set of its elements (see `gemm`), while the product borrows the destination
    // slice mutably.
    #[allow(unsafe_code)]
    unsafe impl Send for Dst {}
    #[allow(unsafe_code)]
    unsafe impl Sync for Dst {}

    /// What every part of one product shares: its depth, destination, operands and scale.
    #[derive(Clone, Copy)]
    struct Job<'a> {
        k: usize,
        d: Dst,
        accumulate: bool,
        a: MatRef<'a>,
        b: MatRef<'a>,
        alpha: f32,
    }

    /// `dst = (accumulate ? dst : 0) + alpha * a b` for views whose shapes agree (`a` `m x
    /// k`, `b` `k x n`, `dst` `m x n`: checked by [`super::gemm::matmul`]), on up to `threads`
    /// threads of the current rayon pool. The views' bounds were checked when they were made.
    ///
    /// # Panics
    /// When [`available`] is false.
    pub(crate) fn gemm(
        dst: MatMut<'_>,
        a: MatRef<'_>,
        b: MatRef<'_>,
        alpha: f32,
        accumulate: bool,
        threads: usize,
    ) {
        assert!(available(), "sgemm without AVX2 and FMA");
        let (m, k, n) = (a.rows, a.cols, b.cols);
        debug_assert!(b.rows == k && dst.rows == m && dst.cols == n);
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        let d = Dst {
            ptr: dst.data.as_mut_ptr(),
            rs: dst.rs,
            cs: dst.cs,
        };
        // Every part packs its share of `b`, and all of `b` when the rows are split; and, when
        // `a` is packed at all (see `seq`), its share of `a`, all of it when the columns
        // are split. Split where less is packed twice (the columns when `a` is read in
        // place), the rows when there are too few column tiles to share. Parts start at
        // multiples of the tile so that tiles are the same as on one thread.
        let packs_a = packs_a(&a, n);
        let repeated_a = if packs_a { m * k } else { 0 };
        let split_rows = repeated_a >= k * n || n.div_ceil(NR) < 2 * threads.max(1);
        let (tiles, tile) = if split_rows {
            (m.div_ceil(MR), MR)
        } else {
            (n.div_ceil(NR), NR)
        };
        // With the columns split and `a` read in place, a part packs only its own columns of
        // `b`, so more parts cost nothing: `PARTS_PER_THREAD` per thread then, so that a
        // worker that wakes late (a sleeping thread takes tens of microseconds to start on
        // this kind of machine) still takes its share of the parts left, instead of the
        // calling thread running the other half alone.
        let per_thread = if split_rows || packs_a {
            1
        } else {
            PARTS_PER_THREAD
        };
        let parts = (threads * per_thread).clamp(1, tiles);
        let job = Job {
            k,
            d,
            accumulate,
            a,
            b,
            alpha,
        };
        if parts == 1 {
            seq(0..m, 0..n, job);
            return;
        }
        let extent = if split_rows { m } else { n };
        (0..parts).into_par_iter().for_each(|p| {
            let lo = (tiles * p / parts * tile).min(extent);
            let hi = (tiles * (p + 1) / parts * tile).min(extent);
            if split_rows {
                seq(lo..hi, 0..n, job);
            } else {
                seq(0..m, lo..hi, job);
            }
        });
    }

    /// Whether a part `width` columns wide packs `a` (see `seq`): unless its rows are
    /// contiguous, or its columns are and there are few column panels to reuse a copy.
    fn packs_a(a: &MatRef<'_>, width: usize) -> bool {
        a.cs != 1 && !(a.rs == 1 && width < 4 * NR)
    }

    /// One part of a product, on the calling thread: rows `rows` and columns `cols` of the
    /// destination.
    ///
    /// `b` is always packed (a contiguous copy when its rows are contiguous; the kernel then
    /// loads 16 columns with two vector loads). `a` is read in place when its rows are
    /// contiguous (the kernel broadcasts one element at a time, so any layout serves), and
    /// when its columns are and the product has few column panels to reuse a packed copy;
    /// otherwise it is packed.
    fn seq(rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, job: Job<'_>) {
        let Job {
            k,
            d,
            accumulate,
            a,
            b,
            alpha,
        } = job;
        let pack_a_too = packs_a(&a, cols.len());
        PACKS.with(|packs| {
            let mut packs = packs.borrow_mut();
            let (pa, pb) = &mut *packs;
            let kc_max = k.min(KC);
            let mc_max = rows.len().min(MC).div_ceil(MR) * MR;
            let nc_max = cols.len().min(NC).div_ceil(NR) * NR;
            if pack_a_too && pa.len() < mc_max * kc_max {
                pa.resize(mc_max * kc_max, 0.0);
            }
            if pb.len() < nc_max * kc_max {
                pb.resize(nc_max * kc_max, 0.0);
            }
            let mut tile = [0f32; MR * NR];
            for j0 in cols.clone().step_by(NC) {
                let nc = (cols.end - j0).min(NC);
                for p0 in (0..k).step_by(KC) {
                    let kc = (k - p0).min(KC);
                    let add = accumulate || p0 > 0;
                    pack::<NR>(pb, b, p0, j0, kc, nc);
                    for i0 in rows.clone().step_by(MC) {
                        let mc = (rows.end - i0).min(MC);
                        if pack_a_too {
                            pack::<MR>(pa, a.t(), p0, i0, kc, mc);
                        }
                        for q in 0..nc.div_ceil(NR) {
                            let nr = (nc - q * NR).min(NR);
                            let bp = &pb[q * kc * NR..(q + 1) * kc * NR];
                            for p in 0..mc.div_ceil(MR) {
                                let mr = (mc - p * MR).min(MR);
                                // The tile's rows of `a`: a packed panel, or the rows in
                                // place (rows past the matrix repeat its last row, whose
                                // results are not stored).
                                let (ap, off, acs): (&[f32], [usize; MR], usize) = if pack_a_too {
                                    (&pa[p * kc * MR..(p + 1) * kc * MR], [0, 1, 2, 3, 4, 5], MR)
                                } else {
                                    let first = a.offset(i0 + p * MR, p0);
                                    let off = std::array::from_fn(|r| r.min(mr - 1) * a.rs);
                                    (&a.data[first..], off, a.cs)
                                };
                                // The kernel's reads of `ap`, checked once per tile.
                                assert!(
                                    off[MR - 1] + (kc - 1) * acs < ap.len(),
                                    "a tile of `a` past its slice"
                                );
                                let (i, j) = (i0 + p * MR, j0 + q * NR);
                                // SAFETY: AVX2 and FMA are present (asserted in `gemm`). The
                                // kernel reads `ap[off[r] + kk * acs]` for `r < MR`, `kk <
                                // kc`: a packed panel holds `kc * MR` floats; in place, these
                                // are elements `(i + min(r, mr - 1), p0 + kk)` of `a`, inside
                                // its slice (`MatRef::new` checked the view's bounds, and the
                                // `assert!` above checks the tile's reads). `bp`
                                // holds `kc * NR` floats. A full tile of a row-contiguous
                                // destination is written in place: its elements `(i + r, j +
                                // c)`, `r < MR`, `c < NR`, lie inside the destination slice
                                // (`MatMut::new` checked the view's bounds and that its
                                // elements are distinct) and belong to this part only (parts are disjoint
                                // ranges of rows or columns). Other tiles go through `tile`,
                                // a local `MR x NR` array.
                                #[allow(unsafe_code)]
                                unsafe {
                                    if mr == MR && nr == NR && d.cs == 1 {
                                        kernel(
                                            kc,
                                            ap,
                                            off,
                                            acs,
                                            bp,
                                            d.ptr.add(i * d.rs + j),
                                            d.rs,
                                            alpha,
                                            add,
                                        );
                                    } else {
                                        kernel(
                                            kc,
                                            ap,
                                            off,
                                            acs,
                                            bp,
                                            tile.as_mut_ptr(),
                                            NR,
                                            1.0,
                                            false,
                                        );
                                        merge(
                                            &tile,
                                            mr,
                                            nr,
                                            d.ptr.add(i * d.rs + j * d.cs),
                                            d.rs,
                                            d.cs,
                                            alpha,
                                            add,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// Packs the first `kc / 8 * 8` depths of a full panel of `b` from its [`NR`] columns,
    /// each a contiguous run of at least `kc` floats, with 8 x 8 register transposes; returns
    /// the depths packed (the caller packs the rest).
    ///
    /// # Panics
    /// When a run is shorter than `kc` or `panel` than `kc * NR` (the caller's slices are
    /// exact, so neither happens).
    pub(crate) fn transpose_runs(panel: &mut [f32], runs: &[&[f32]], kc: usize) -> usize {
        assert!(available(), "transpose_runs without AVX2");
        let depth = kc / 8 * 8;
        assert!(
            panel.len() >= kc * NR && runs.iter().all(|r| r.len() >= kc),
            "short runs"
        );
        for k0 in (0..depth).step_by(8) {
            for half in 0..NR / 8 {
                // SAFETY: AVX is present (asserted above). Every load reads `runs[j][k0..k0 +
                // 8]` with `k0 + 8 <= depth <= kc <= runs[j].len()`, every store writes
                // `panel[(k0 + u) * NR + 8 * half..][..8]`, inside `kc * NR <= panel.len()`.
                #[allow(unsafe_code)]
                unsafe {
                    transpose8(panel, runs, k0, half);
                }
            }
        }
        depth
    }

    /// One 8 x 8 block of [`transpose_runs`]: depths `k0..k0 + 8` of columns `8 * half..8 *
    /// half + 8`.
    ///
    /// # Safety
    /// AVX is present; `runs[8 * half + t]` holds `k0 + 8` floats for `t < 8`; `panel` holds
    /// `(k0 + 8) * NR` floats.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    unsafe fn transpose8(panel: &mut [f32], runs: &[&[f32]], k0: usize, half: usize) {
        let j0 = 8 * half;
        // SAFETY: in bounds by this function's contract.
        unsafe {
            let r: [__m256; 8] =
                std::array::from_fn(|t| _mm256_loadu_ps(runs[j0 + t].as_ptr().add(k0)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            let dst = panel.as_mut_ptr();
            for (u, v) in out.iter().enumerate() {
                _mm256_storeu_ps(dst.add((k0 + u) * NR + j0), *v);
            }
        }
    }

    /// Independent 8-lane accumulators of [`fma_probe`]: the micro-kernel's twelve.
    pub(crate) const PROBE_CHAINS: usize = 2 * MR;

    /// `iters` rounds of `acc = acc * x + y` (one fused multiply-add) on [`PROBE_CHAINS`]
    /// independent 8-lane accumulators, lane values starting at the chain's index, all in
    /// registers: the machine's fused multiply-add throughput with no memory traffic, as
    /// the micro-kernel's inner loop would run if its loads were free. Returns the sum of
    /// the chains' first lanes (in chain order), so that the loop is not removed and its
    /// result can be checked against scalar `mul_add`s.
    ///
    /// # Panics
    /// When [`available`] is false.
    pub(crate) fn fma_probe(iters: usize, x: f32, y: f32) -> f32 {
        assert!(available(), "fma_probe without AVX2 and FMA");
        // SAFETY: AVX2 and FMA are present (asserted above); the probe touches no memory.
        #[allow(unsafe_code)]
        unsafe {
            probe(iters, x, y)
        }
    }

    /// The loop of [`fma_probe`].
    ///
    /// # Safety
    /// AVX2 and FMA are present.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn probe(iters: usize, x: f32, y: f32) -> f32 {
        let (xv, yv) = (_mm256_set1_ps(x), _mm256_set1_ps(y));
        let mut acc: [__m256; PROBE_CHAINS] = std::array::from_fn(|c| _mm256_set1_ps(c as f32));
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, xv, yv);
            }
        }
        acc.iter().map(|a| _mm256_cvtss_f32(*a)).sum()
    }

    /// `c[r, col] = (add ? c[r, col] : 0) + alpha * tile[r, col]` for `r < mr`, `col < nr`,
    /// with the kernel's rounding (one fused multiply-add, or one multiply).
    ///
    /// # Safety
    /// FMA is present; `c + r * rs + col * cs` is writable for `r < mr`, `col < nr`.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[target_feature(enable = "fma")]
    unsafe fn merge(
        tile: &[f32; MR * NR],
        mr: usize,
        nr: usize,
        c: *mut f32,
        rs: usize,
        cs: usize,
        alpha: f32,
        add: bool,
    ) {
        for r in 0..mr {
            for col in 0..nr {
                let t = tile[r * NR + col];
                // SAFETY: in bounds by this function's contract.
                unsafe {
                    let p = c.add(r * rs + col * cs);
                    *p = if add { alpha.mul_add(t, *p) } else { alpha * t };
                }
            }
        }
    }

    /// The micro-kernel: the `MR x NR` tile `sum_kk a[., kk] b[kk, .]` over `kc` depths,
    /// merged into `c` (row stride `rs`, contiguous rows) as `c = (add ? c : 0) + alpha *
    /// tile`. Row `r` of `a` at depth `kk` is `a[off[r] + kk * acs]`; `b` is a packed panel.
    ///
    /// # Safety
    /// AVX2 and FMA are present; `off[r] + (kc - 1) * acs < a.len()` for every `r`; `b`
    /// holds `kc * NR` floats; `c + r * rs + col` is writable for `r < MR`, `col < NR`.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel(
        kc: usize,
        a: &[f32],
        off: [usize; MR],
        acs: usize,
        b: &[f32],
        c: *mut f32,
        rs: usize,
        alpha: f32,
        add: bool,
    ) {
        debug_assert!(b.len() >= kc * NR);
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        for kk in 0..kc {
            // SAFETY: `kk < kc`, so the reads stay inside `a` and `b` (the contract).
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(kk * NR));
                let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
                let a_k = ap.add(kk * acs);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a_k.add(off[r]));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
            }
        }
        let al = _mm256_set1_ps(alpha);
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: the tile's row `r` is writable (the contract).
            unsafe {
                let p = c.add(r * rs);
                if add {
                    _mm256_storeu_ps(p, _mm256_fmadd_ps(al, row[0], _mm256_loadu_ps(p)));
                    _mm256_storeu_ps(
                        p.add(8),
                        _mm256_fmadd_ps(al, row[1], _mm256_loadu_ps(p.add(8))),
                    );
                } else {
                    _mm256_storeu_ps(p, _mm256_mul_ps(al, row[0]));
                    _mm256_storeu_ps(p.add(8), _mm256_mul_ps(al, row[1]));
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::ops::gemm::MatMut;
    use miram_rand::Rng;

    /// A matrix stored in one of four layouts inside a slice of exactly the length it
    /// needs (so that a read past the view would fall outside the slice).
    struct Stored {
        data: Vec<f32>,
        rs: usize,
        cs: usize,
    }

    /// `layout`: 0 row-major, 1 column-major, 2 rows padded, 3 both strides above one.
    fn store(x: &[f32], rows: usize, cols: usize, layout: usize) -> Stored {
        let (rs, cs) = match layout {
            0 => (cols, 1),
            1 => (1, rows),
            2 => (cols + 3, 1),
            _ => (2, 2 * rows + 1),
        };
        let len = (rows - 1) * rs + (cols - 1) * cs + 1;
        let mut data = vec![f32::NAN; len];
        for i in 0..rows {
            for j in 0..cols {
                data[i * rs + j * cs] = x[i * cols + j];
            }
        }
        Stored { data, rs, cs }
    }

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                let av = f64::from(a[i * k + p]);
                for j in 0..n {
                    c[i * n + j] += av * f64::from(b[p * n + j]);
                }
            }
        }
        c
    }

    #[allow(clippy::too_many_arguments)]
    fn product(
        m: usize,
        k: usize,
        n: usize,
        a: &Stored,
        b: &Stored,
        c: &mut Stored,
        alpha: f32,
        accumulate: bool,
        threads: usize,
    ) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            gemm(
                MatMut::new(&mut c.data, m, n, c.rs, c.cs).expect("destination view"),
                MatRef::new(&a.data, m, k, a.rs, a.cs).expect("a view"),
                MatRef::new(&b.data, k, n, b.rs, b.cs).expect("b view"),
                alpha,
                accumulate,
                threads,
            )
        });
    }

    fn read(c: &Stored, m: usize, n: usize) -> Vec<f32> {
        (0..m * n)
            .map(|e| c.data[(e / n) * c.rs + (e % n) * c.cs])
            .collect()
    }

    /// Shapes on both sides of every blocking size: the tile (6 x 16), `KC`, `MC` and `NC`.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (5, 3, 17),
        (6, 16, 16),
        (7, 33, 15),
        (13, 64, 13),
        (MC + 1, 5, 40),
        (19, KC + 3, 33),
        (3, 2 * KC + 1, 1),
        (7, 5, NC + 17),
    ];

    #[test]
    fn products_equal_a_naive_product_in_every_layout_across_the_blocking_sizes() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(11);
        for &(m, k, n) in &SHAPES {
            let a = rng.normal_vec(m * k, 0.0, 1.0);
            let b = rng.normal_vec(k * n, 0.0, 1.0);
            let c0 = rng.normal_vec(m * n, 0.0, 1.0);
            let want = naive(&a, &b, m, k, n);
            let tol = 1e-5 * (k as f64).sqrt() * 4.0;
            for (la, lb, lc) in [
                (0, 0, 0),
                (1, 0, 2),
                (0, 1, 1),
                (2, 3, 0),
                (3, 1, 3),
                (1, 1, 0),
            ] {
                let (sa, sb) = (store(&a, m, k, la), store(&b, k, n, lb));
                for (alpha, accumulate, threads) in
                    [(1.0, false, 1), (0.5, true, 2), (-2.0, false, 3)]
                {
                    let mut sc = store(&c0, m, n, lc);
                    product(m, k, n, &sa, &sb, &mut sc, alpha, accumulate, threads);
                    let got = read(&sc, m, n);
                    for e in 0..m * n {
                        let base = if accumulate { f64::from(c0[e]) } else { 0.0 };
                        let w = base + f64::from(alpha) * want[e];
                        let g = f64::from(got[e]);
                        assert!(
                            (g - w).abs() <= tol * (1.0 + w.abs()),
                            "{m}x{k}x{n} layouts {la}{lb}{lc} alpha {alpha} accumulate {accumulate} \
                             threads {threads}: element {e} is {g}, want {w}"
                        );
                    }
                    // Positions of the destination's slice outside the view are untouched.
                    if lc == 2 || lc == 3 {
                        let inside: std::collections::HashSet<usize> = (0..m * n)
                            .map(|e| (e / n) * sc.rs + (e % n) * sc.cs)
                            .collect();
                        for (pos, v) in sc.data.iter().enumerate() {
                            if !inside.contains(&pos) {
                                assert!(v.is_nan(), "position {pos} outside the view was written");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_peak_probe_runs_every_multiply_add_it_counts() {
        if !available() {
            return;
        }
        // x, y chosen so that every round changes the value (no fixed point is reached),
        // and one round more or less, or a chain left out, gives another sum.
        let (x, y) = (1.0001f32, 0.37f32);
        for iters in [0, 1, 2, 7, 1000] {
            let want: f32 = (0..PROBE_CHAINS)
                .map(|c| (0..iters).fold(c as f32, |a, _| a.mul_add(x, y)))
                .sum();
            assert_eq!(
                fma_probe(iters, x, y).to_bits(),
                want.to_bits(),
                "{iters} rounds"
            );
        }
        assert_ne!(fma_probe(1000, x, y), fma_probe(999, x, y));
    }

    #[test]
    fn results_are_bit_identical_on_any_number_of_threads() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(12);
        for &(m, k, n) in &[
            (200, 300, 70),
            (40, 129, 500),
            (MC + 7, 2 * KC + 5, 2 * NR + 3),
        ] {
            let a = store(&rng.normal_vec(m * k, 0.0, 1.0), m, k, 0);
            let b = store(&rng.normal_vec(k * n, 0.0, 1.0), k, n, 1);
            let c0 = rng.normal_vec(m * n, 0.0, 1.0);
            let run = |threads| {
                let mut c = store(&c0, m, n, 0);
                product(m, k, n, &a, &b, &mut c, 0.75, true, threads);
                c.data
            };
            let one = run(1);
            for t in [2, 3, 4] {
                assert_eq!(one, run(t), "{m}x{k}x{n} on {t} threads");
            }
        }
    }

    /// Random shapes and strides, every operand in a slice of exactly its length: a read or
    /// write past a view would either panic (the checked paths) or change the result.
    #[test]
    fn random_shapes_and_strides_stay_inside_their_slices() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(13);
        for case in 0..300 {
            let m = 1 + rng.index(40);
            let k = 1 + rng.index(if case % 10 == 0 { 600 } else { 70 });
            let n = 1 + rng.index(60);
            let (la, lb, lc) = (rng.index(4), rng.index(4), rng.index(4));
            let a = rng.normal_vec(m * k, 0.0, 1.0);
            let b = rng.normal_vec(k * n, 0.0, 1.0);
            let want = naive(&a, &b, m, k, n);
            let (sa, sb) = (store(&a, m, k, la), store(&b, k, n, lb));
            let mut sc = store(&vec![0.0; m * n], m, n, lc);
            product(m, k, n, &sa, &sb, &mut sc, 1.0, false, 1 + case % 3);
            let got = read(&sc, m, n);
            for e in 0..m * n {
                assert!(
                    (f64::from(got[e]) - want[e]).abs() <= 1e-4 * (1.0 + want[e].abs()),
                    "case {case}: {m}x{k}x{n} layouts {la}{lb}{lc}, element {e}"
                );
            }
        }
    }
}
