//! Branch-free `f32` approximations of `exp` and `erf` that the compiler vectorises, for the
//! fused CPU kernels. `exp` is Cephes' `expf` (range reduction by `ln 2`, degree-5
//! polynomial, about 2 ulp); `erf` is the rational approximation of Eigen's
//! `generic_fast_erf_float` (absolute error below 1e-7 after clamping to `[-4, 4]`).
//! Both are tested against `f64` references over their whole useful range.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it rounds an `f32` of magnitude below `2^22` to an integer, with
/// the integer in the low mantissa bits (SSE2 has no vector rounding instruction).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` for `f32`: 0 below -87.3, saturating at `e^88` above 88 (the kernels only use
/// arguments at or below 0 after max subtraction, or `-x^2 / 2`).
#[inline(always)]
pub fn exp(x0: f32) -> f32 {
    let x = x0.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * r2 + r + 1.0;
    // n is in [-126, 127] after the clamp: 2^n is a normal number built from its exponent bits.
    let v = y * f32::from_bits(((ni + 127) as u32) << 23);
    if x0 < -87.0 {
        0.0
    } else {
        v
    }
}

/// Sum of a slice with eight independent accumulators, so that the compiler vectorises it
/// (the result differs from a sequential sum only by rounding).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s += v;
    }
    s
}

/// `sum_j f(j)` over `0..n` in `f64` (the LayerNorm statistics; [`sum`] is the `f32` sum of
/// a slice), in eight partial sums (term `j` into sum `j % 8`) that are then added pairwise:
/// eight independent chains of additions where one chain would wait for each addition before
/// the next, in a fixed order for a given `n` whatever the caller's thread, so results stay
/// reproducible.
#[inline(always)]
pub(crate) fn sum_lanes(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let full = n - n % acc.len();
    for j0 in (0..full).step_by(acc.len()) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(j0 + l);
        }
    }
    for (a, j) in acc.iter_mut().zip(full..n) {
        *a += f(j);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Dot product of two slices of equal length, vectorised like [`sum`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Maximum of a slice (`-inf` when empty; NaN-free inputs assumed).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in rest {
        m = m.max(v);
    }
    m
}

/// The error function for `f32`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_4e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_lanes_adds_every_term_once() {
        // Integers sum exactly in f64: any term missed or added twice (a full group of eight
        // or the tail) changes the result.
        for n in 0..40usize {
            let got = sum_lanes(n, |j| (j + 1) as f64);
            assert_eq!(got, (n * (n + 1) / 2) as f64, "n = {n}");
        }
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -86.9f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "{worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    fn erf64(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.26 is too coarse for a reference; integrate exactly instead.
        let n = 20_000;
        let h = x / n as f64;
        let mut s = 0.0;
        for i in 0..=n {
            let t = i as f64 * h;
            let w = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            s += w * (-t * t).exp();
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) as f64 - erf64(x as f64)).abs());
            x += 0.0371;
        }
        assert!(worst < 3e-7, "{worst}");
    }
}
