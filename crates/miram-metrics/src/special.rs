//! Special functions for the DeLong test and the confidence intervals: the complementary
//! error function `erfc` to full double precision, the standard normal distribution function
//! and its inverse.
//!
//! `erfc` is a port of FreeBSD msun's `s_erf.c` (fdlibm), the algorithm behind glibc's and
//! musl's `erfc` and therefore behind Python's `math.erfc`, which the DeLong reference
//! implementation the fixtures were computed with (`fixtures/README.md`) uses for its
//! p-values. Its notice:
//!
//! > Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//! > Developed at SunPro, a Sun Microsystems, Inc. business. Permission to use, copy,
//! > modify, and distribute this software is freely granted, provided that this notice is
//! > preserved.
//!
//! The normal quantile starts from Acklam's rational approximation (relative error below
//! 1.2e-9) and takes one Halley step on `erfc`, which brings it to full double precision.

// fdlibm's coefficients and the mpmath reference values are kept with all their printed
// digits, verbatim, so that they can be checked against their sources.
#![allow(clippy::excessive_precision)]

use std::f64::consts::{FRAC_1_SQRT_2, SQRT_2};

// Coefficients of fdlibm's s_erf.c, by interval.
const ERX: f64 = 8.45062911510467529297e-01;
// erf on [0, 0.84375].
const PP0: f64 = 1.28379167095512558561e-01;
const PP1: f64 = -3.25042107247001499370e-01;
const PP2: f64 = -2.84817495755985104766e-02;
const PP3: f64 = -5.77027029648944159157e-03;
const PP4: f64 = -2.37630166566501626084e-05;
const QQ1: f64 = 3.97917223959155352819e-01;
const QQ2: f64 = 6.50222499887672944485e-02;
const QQ3: f64 = 5.08130628187576562776e-03;
const QQ4: f64 = 1.32494738004321644526e-04;
const QQ5: f64 = -3.96022827877536812320e-06;
// erf on [0.84375, 1.25].
const PA0: f64 = -2.36211856075265944077e-03;
const PA1: f64 = 4.14856118683748331666e-01;
const PA2: f64 = -3.72207876035701323847e-01;
const PA3: f64 = 3.18346619901161753674e-01;
const PA4: f64 = -1.10894694282396677476e-01;
const PA5: f64 = 3.54783043256182359371e-02;
const PA6: f64 = -2.16637559486879084300e-03;
const QA1: f64 = 1.06420880400844228286e-01;
const QA2: f64 = 5.40397917702171048937e-01;
const QA3: f64 = 7.18286544141962662868e-02;
const QA4: f64 = 1.26171219808761642112e-01;
const QA5: f64 = 1.36370839120290507362e-02;
const QA6: f64 = 1.19844998467991074170e-02;
// erfc on [1.25, 1/0.35].
const RA0: f64 = -9.86494403484714822705e-03;
const RA1: f64 = -6.93858572707181764372e-01;
const RA2: f64 = -1.05586262253232909814e+01;
const RA3: f64 = -6.23753324503260060396e+01;
const RA4: f64 = -1.62396669462573470355e+02;
const RA5: f64 = -1.84605092906711035994e+02;
const RA6: f64 = -8.12874355063065934246e+01;
const RA7: f64 = -9.81432934416914548592e+00;
const SA1: f64 = 1.96512716674392571292e+01;
const SA2: f64 = 1.37657754143519042600e+02;
const SA3: f64 = 4.34565877475229228821e+02;
const SA4: f64 = 6.45387271733267880336e+02;
const SA5: f64 = 4.29008140027567833386e+02;
const SA6: f64 = 1.08635005541779435134e+02;
const SA7: f64 = 6.57024977031928170135e+00;
const SA8: f64 = -6.04244152148580987438e-02;
// erfc on [1/0.35, 28].
const RB0: f64 = -9.86494292470009928597e-03;
const RB1: f64 = -7.99283237680523006574e-01;
const RB2: f64 = -1.77579549177547519889e+01;
const RB3: f64 = -1.60636384855821916062e+02;
const RB4: f64 = -6.37566443368389627722e+02;
const RB5: f64 = -1.02509513161107724954e+03;
const RB6: f64 = -4.83519191608651397019e+02;
const SB1: f64 = 3.03380607434824582924e+01;
const SB2: f64 = 3.25792512996573918826e+02;
const SB3: f64 = 1.53672958608443695994e+03;
const SB4: f64 = 3.19985821950859553908e+03;
const SB5: f64 = 2.55305040643316442583e+03;
const SB6: f64 = 4.74528541206955367215e+02;
const SB7: f64 = -2.24409524465858183362e+01;

/// The complementary error function `erfc(x) = 1 - erf(x)`, computed directly (no
/// cancellation for large `x`), accurate to about one unit in the last place.
///
/// `erfc(-inf) = 2`, `erfc(inf) = 0`, `erfc(NaN) = NaN`.
///
/// ```
/// let p = miram_metrics::erfc(1.959963984540054 / std::f64::consts::SQRT_2);
/// assert!((p - 0.05).abs() < 1e-16);
/// ```
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let negative = x.is_sign_negative();
    if ax.is_infinite() {
        return if negative { 2.0 } else { 0.0 };
    }
    if ax < 0.84375 {
        if ax < f64::powi(2.0, -56) {
            return 1.0 - x;
        }
        let z = x * x;
        let r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
        let s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
        let y = r / s;
        return if x < 0.25 {
            1.0 - (x + x * y)
        } else {
            0.5 - (x - 0.5 + x * y)
        };
    }
    if ax < 1.25 {
        let s = ax - 1.0;
        let p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
        let q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
        return if negative {
            1.0 + (ERX + p / q)
        } else {
            1.0 - ERX - p / q
        };
    }
    if ax < 28.0 {
        let s = 1.0 / (ax * ax);
        // fdlibm compares the high word with 0x4006db6d, i.e. |x| < 2.8571414947509766.
        let (r, big_s) = if ax < f64::from_bits(0x4006_db6d_0000_0000) {
            (
                RA0 + s
                    * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7)))))),
                1.0 + s
                    * (SA1
                        + s * (SA2
                            + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8))))))),
            )
        } else {
            if negative && ax >= 6.0 {
                return 2.0;
            }
            (
                RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6))))),
                1.0 + s
                    * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7)))))),
            )
        };
        // z is ax with its low 32 bits cleared, so that z * z is exact.
        let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
        let r = (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / big_s).exp() / ax;
        return if negative { 2.0 - r } else { r };
    }
    if negative {
        2.0
    } else {
        0.0
    }
}

/// The standard normal distribution function `Phi(x) = erfc(-x / sqrt 2) / 2`, accurate in
/// both tails.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * FRAC_1_SQRT_2)
}

/// Two-sided p-value of a standard normal statistic, `erfc(|z| / sqrt 2)`.
pub fn two_sided_p_value(z: f64) -> f64 {
    erfc(z.abs() / SQRT_2)
}

/// The standard normal quantile `Phi^-1(p)` for `0 < p < 1` (NaN outside; `-inf`/`inf` at
/// 0 and 1). `normal_quantile(0.975)` is 1.959963984540054.
///
/// ```
/// let z = miram_metrics::normal_quantile(0.975);
/// assert!((z - 1.959963984540054).abs() < 1e-15);
/// ```
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    // Acklam's algorithm.
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383577518672690e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let mut x = if p < P_LOW {
        tail(p)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail(1.0 - p)
    };
    // One Halley step on f(x) = Phi(x) - p. In the upper half the error is taken on the
    // upper tail, 1 - Phi(x) = Phi(-x), so that no precision is lost near p = 1.
    let e = if p < 0.5 {
        normal_cdf(x) - p
    } else {
        (1.0 - p) - normal_cdf(-x)
    };
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x -= u / (1.0 + 0.5 * x * u);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error, or absolute error below 1e-300.
    fn rel(a: f64, b: f64) -> f64 {
        if b.abs() < 1e-300 {
            (a - b).abs()
        } else {
            ((a - b) / b).abs()
        }
    }

    // Reference values computed with mpmath at 50 significant digits from the exact binary
    // value of each input (`mpmath.mp.dps = 50; mpmath.erfc(mpmath.mpf(x))`, x a float),
    // rounded to 20 digits.
    #[test]
    fn erfc_matches_high_precision_values() {
        let cases = [
            (0.0, 1.0),
            (1e-10, 0.99999999988716208329),
            (0.1, 0.8875370839817151016),
            (0.25, 0.72367360983176306701),
            (0.5, 0.47950012218695346232),
            (0.84375, 0.23277433876765836654),
            (1.0, 0.15729920705028513066),
            (1.2, 0.089686021770364631634),
            (1.25, 0.077099871743541769863),
            (2.0, 0.0046777349810472658379),
            (2.5, 0.00040695201744495893956),
            (2.8571414947509766, 0.000053312749412134173312),
            (2.857142857142857, 0.000053312311388322794271),
            (3.0, 0.000022090496998585441373),
            (4.0, 1.5417257900280018852e-8),
            (5.0, 1.5374597944280348502e-12),
            (6.0, 2.1519736712498913117e-17),
            (10.0, 2.088487583762544757e-45),
            (20.0, 5.3958656116079009289e-176),
            (26.5, 2.2109076642637342759e-307),
            (-0.3, 1.3286267594591274162),
            (-1.0, 1.8427007929497148693),
            (-2.0, 1.9953222650189527342),
            (-5.0, 1.9999999999984625402),
            (-7.0, 2.0),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                rel(got, want) < 4.0 * f64::EPSILON,
                "erfc({x}) = {got:e}, want {want:e}"
            );
        }
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert_eq!(erfc(30.0), 0.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    // mpmath at 50 digits from the exact binary p: `sqrt(2) * erfinv(2 p - 1)`, or for
    // p < 1e-5 the root of `log(ncdf(x)) = log(p)`.
    #[test]
    fn normal_quantile_matches_high_precision_values() {
        let cases = [
            (1e-300, -37.047096299361199237),
            (1e-100, -21.273453560965324294),
            (1e-20, -9.2623400897984075796),
            (1e-10, -6.3613409024040561991),
            (1e-05, -4.2648907939228246102),
            (0.001, -3.0902323061678135354),
            (0.02, -2.0537489106318230443),
            (0.025, -1.9599639845400542118),
            (0.1, -1.2815515655446004353),
            (0.3, -0.52440051270804081597),
            (0.7, 0.52440051270804065631),
            (0.9, 1.2815515655446005935),
            (0.95, 1.6448536269514722843),
            (0.975, 1.9599639845400538556),
            (0.99, 2.3263478740408407676),
            (0.999, 3.0902323061678132778),
            (0.9999999, 5.1993375822906610937),
        ];
        for (p, want) in cases {
            let got = normal_quantile(p);
            assert!(rel(got, want) < 1e-14, "quantile({p}) = {got}, want {want}");
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(1.5).is_nan() && normal_quantile(f64::NAN).is_nan());
        // The constant of the DeLong reference (delong_ref / gen_metrics_fixtures.py).
        assert!((normal_quantile(0.975) - 1.959963984540054).abs() <= f64::EPSILON * 2.0);
    }

    #[test]
    fn two_sided_p_value_is_symmetric() {
        assert!((two_sided_p_value(1.959963984540054) - 0.05).abs() < 1e-16);
        assert_eq!(two_sided_p_value(-2.5), two_sided_p_value(2.5));
        assert_eq!(two_sided_p_value(0.0), 1.0);
    }
}
