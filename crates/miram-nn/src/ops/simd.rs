//! The element-wise loops of the fused kernels (softmax rows, LayerNorm, GELU, the optimiser)
//! compiled a second time for the wider vectors of the CPU they run on.
//!
//! The workspace builds for the baseline x86-64 target (SSE2: four lanes), so that one binary
//! runs on every x86-64 machine. A function defined with [`wide_fn!`](crate::wide_fn) has its
//! body compiled a second time, inside a function with AVX2 and FMA enabled, which it calls
//! when the CPU has them (detected once); there the compiler vectorises the loops eight lanes
//! wide. The arithmetic is the same: Rust never fuses a multiply and an add unless the code asks
//! for it (`mul_add`, which rounds once either way), and the loops keep their order of
//! operations, so the results are bit-identical with and without the wider vectors (tested
//! below). Other CPUs, and every CPU after [`set_wide_kernels`]`(false)`, run the baseline
//! body.

use std::sync::atomic::{AtomicBool, Ordering};

static WIDE: AtomicBool = AtomicBool::new(true);

/// Turns the wider compilations of [`wide_fn!`](crate::wide_fn) off (`false`: the baseline
/// body everywhere) or back on, process-wide, for comparisons; results do not change.
pub fn set_wide_kernels(on: bool) {
    WIDE.store(on, Ordering::Relaxed);
}

/// Whether [`wide_fn!`](crate::wide_fn) functions run their wide body: this CPU has AVX2 and
/// FMA (detected once) and [`set_wide_kernels`] did not turn them off.
pub fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        WIDE.load(Ordering::Relaxed) && super::sgemm::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a function whose body is compiled twice, for the baseline target and for AVX2 and
/// FMA, and runs the second where the CPU has them
/// ([`wide_available`](crate::ops::wide_available)). Same results either way; no generics, plain arguments.
///
/// ```
/// miram_nn::wide_fn! {
///     /// Doubles every value.
///     fn double(xs: &mut [f32]) {
///         for v in xs.iter_mut() {
///             *v *= 2.0;
///         }
///     }
/// }
/// let mut xs = vec![1.5f32; 100];
/// double(&mut xs);
/// assert!(xs.iter().all(|&v| v == 3.0));
/// ```
#[macro_export]
macro_rules! wide_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(unsafe_code)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::ops::wide_available() {
                    // SAFETY: `wide_available` detected AVX2 and FMA on this CPU, the
                    // features that `wide` is compiled for.
                    #[allow(unsafe_code)]
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{
        gelu_backward_in_place, gelu_values, ln_backward_rows, ln_forward_rows,
        softmax_backward_rows, softmax_rows,
    };

    /// Every wide kernel's outputs, as bits, on odd-sized rows (vector bodies and tails).
    fn outputs(x: &[f32], g: &[f32], w: &[f32], b: &[f32]) -> Vec<u32> {
        let n = w.len();
        let rows = x.len() / n;
        let mut all = Vec::new();
        let mut p = x.to_vec();
        softmax_rows(&mut p, n);
        let mut dp = g.to_vec();
        softmax_backward_rows(&p, &mut dp, n);
        let mut act = vec![0f32; x.len()];
        gelu_values(&mut act, x);
        let mut da = g.to_vec();
        gelu_backward_in_place(&mut da, x);
        let (mut normed, mut mean, mut rstd) =
            (vec![0f32; x.len()], vec![0f32; rows], vec![0f32; rows]);
        ln_forward_rows(&mut normed, x, (&mut mean, &mut rstd), (w, b), 1e-6);
        let mut dx = g.to_vec();
        let (dw, db) = ln_backward_rows(&mut dx, x, g, (&mean, &rstd), w, true);
        for v in [p, dp, act, da, normed, mean, rstd, dx, dw, db] {
            all.extend(v.iter().map(|v| v.to_bits()));
        }
        all
    }

    #[test]
    fn wide_kernels_are_bit_identical_to_the_baseline() {
        let mut r = miram_rand::Rng::new(11);
        let n = 197;
        let x = r.normal_vec(23 * n, 0.0, 3.0);
        let g = r.normal_vec(23 * n, 0.0, 1.0);
        let w = r.normal_vec(n, 1.0, 0.5);
        let b = r.normal_vec(n, 0.0, 0.5);
        set_wide_kernels(false);
        let base = outputs(&x, &g, &w, &b);
        set_wide_kernels(true);
        let widened = outputs(&x, &g, &w, &b);
        assert_eq!(base.len(), widened.len());
        let differ = base.iter().zip(&widened).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{differ} of {} values differ", base.len());
        // And they are the kernels' values: each softmax row sums to one.
        let mut p = x.clone();
        softmax_rows(&mut p, n);
        for row in p.chunks(n) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((s - 1.0).abs() < 1e-5, "{s}");
        }
    }
}
