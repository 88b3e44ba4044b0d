//! DeLong, DeLong and Clarke-Pearson (1988): the variance of an ROC AUC, its Wald
//! confidence interval, and the paired test of two AUCs measured on the same cases.
//!
//! Computed with the midrank algorithm of Sun and Xu (2014, "Fast implementation of DeLong's
//! algorithm for comparing the areas under correlated receiver operating characteristic
//! curves", IEEE Signal Processing Letters 21(11)) in O(n log n): the structural components
//! `V10(x_i) = mean_j psi(x_i, y_j)` over the negatives and `V01(y_j) = mean_i psi(x_i, y_j)`
//! over the positives (`psi` = 1, 1/2, 0 for >, =, <) come from the ranks of each score among
//! the negatives and the positives, found in one sorted pass. The O(m n) DeLong reference
//! implementation (NumPy) that the fixtures were computed with (`fixtures/README.md`) and this
//! one agree to rounding, ties included.
//!
//! Variances use the unbiased sample covariance (`ddof = 1`) of the components, as that
//! reference and pROC do: `var = S10 / m + S01 / n`.

use serde::Serialize;

use crate::error::{MetricsError, Result};
use crate::labels::{check_finite, check_len, check_level, check_nonempty, to_bools, BinaryLabel};
use crate::special::{normal_quantile, two_sided_p_value};
use crate::values::Values;

/// An ROC AUC with its DeLong variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongAuc {
    /// The ROC AUC (ties as half), identical to [`crate::roc_auc`].
    pub auc: f64,
    /// DeLong's variance estimate of the AUC.
    pub variance: f64,
    /// Number of positive samples `m`.
    pub n_positive: usize,
    /// Number of negative samples `n`.
    pub n_negative: usize,
}

impl DelongAuc {
    /// Standard error, the square root of the variance.
    pub fn std_error(&self) -> f64 {
        self.variance.sqrt()
    }

    /// The Wald interval `auc -/+ z_{(1+level)/2} * se` at confidence `level` (0.95 for the
    /// usual 95% interval). It is not clipped to [0, 1], as in the reference; see
    /// [`DelongInterval::clamped`].
    ///
    /// # Errors
    /// [`MetricsError::InvalidParameter`] unless `0 < level < 1`.
    pub fn confidence_interval(&self, level: f64) -> Result<DelongInterval> {
        check_level(level)?;
        let half = normal_quantile(0.5 + level / 2.0) * self.std_error();
        Ok(DelongInterval {
            auc: self.auc,
            variance: self.variance,
            lower: self.auc - half,
            upper: self.auc + half,
            level,
        })
    }
}

/// A DeLong confidence interval of an AUC.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongInterval {
    /// The AUC.
    pub auc: f64,
    /// Its DeLong variance.
    pub variance: f64,
    /// Lower end, `auc - z se` (may fall below 0 for tiny samples).
    pub lower: f64,
    /// Upper end, `auc + z se` (may exceed 1 for tiny samples).
    pub upper: f64,
    /// The confidence level.
    pub level: f64,
}

impl DelongInterval {
    /// The interval clipped to [0, 1], the range of an AUC.
    pub fn clamped(&self) -> (f64, f64) {
        (self.lower.clamp(0.0, 1.0), self.upper.clamp(0.0, 1.0))
    }
}

/// DeLong's paired comparison of two AUCs on the same cases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongTest {
    /// AUC of the first scores.
    pub auc_a: f64,
    /// AUC of the second scores.
    pub auc_b: f64,
    /// Variance of `auc_a`.
    pub var_a: f64,
    /// Variance of `auc_b`.
    pub var_b: f64,
    /// Covariance of the two AUCs.
    pub cov_ab: f64,
    /// `(auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)`.
    pub z: f64,
    /// Two-sided p-value `erfc(|z| / sqrt 2)`.
    pub p_value: f64,
    /// Number of positive samples.
    pub n_positive: usize,
    /// Number of negative samples.
    pub n_negative: usize,
}

impl DelongTest {
    /// `auc_a - auc_b`.
    pub fn difference(&self) -> f64 {
        self.auc_a - self.auc_b
    }

    /// Variance of the difference, `var_a + var_b - 2 cov_ab`.
    pub fn difference_variance(&self) -> f64 {
        self.var_a + self.var_b - 2.0 * self.cov_ab
    }

    /// Wald interval of `auc_a - auc_b` at confidence `level`.
    ///
    /// # Errors
    /// [`MetricsError::InvalidParameter`] unless `0 < level < 1`.
    pub fn difference_ci(&self, level: f64) -> Result<(f64, f64)> {
        check_level(level)?;
        let half = normal_quantile(0.5 + level / 2.0) * self.difference_variance().sqrt();
        Ok((self.difference() - half, self.difference() + half))
    }
}

/// The structural components of one score vector.
struct Components {
    auc: f64,
    /// `V10` of each positive, in input order.
    v10: Vec<f64>,
    /// `V01` of each negative, in input order.
    v01: Vec<f64>,
}

/// Midrank pass of Sun and Xu: sort once, and for each group of tied scores read off how
/// many negatives (positives) lie below (above) it.
fn components(labels: &[bool], scores: &[f64], n_pos: usize, n_neg: usize) -> Components {
    // slot[i]: position of sample i among the samples of its class, in input order.
    let mut slot = Vec::with_capacity(labels.len());
    let (mut ip, mut ineg) = (0usize, 0usize);
    for &y in labels {
        if y {
            slot.push(ip);
            ip += 1;
        } else {
            slot.push(ineg);
            ineg += 1;
        }
    }
    // -0.0 + 0.0 = +0.0, so that `total_cmp` groups the two zeros like `==` does.
    let mut order: Vec<(f64, usize)> = scores.iter().map(|&s| s + 0.0).zip(0..).collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (m, n) = (n_pos as f64, n_neg as f64);
    let mut v10 = vec![0.0; n_pos];
    let mut v01 = vec![0.0; n_neg];
    let (mut pos_below, mut neg_below) = (0usize, 0usize);
    let mut auc2: u128 = 0;
    let mut start = 0;
    while start < order.len() {
        let value = order[start].0;
        let mut end = start;
        let (mut p_g, mut n_g) = (0usize, 0usize);
        while end < order.len() && order[end].0 == value {
            if labels[order[end].1] {
                p_g += 1;
            } else {
                n_g += 1;
            }
            end += 1;
        }
        // A positive here beats `neg_below` negatives and ties `n_g`; a negative here is
        // beaten by the positives above the group and ties `p_g`.
        let v_pos = (neg_below as f64 + 0.5 * n_g as f64) / n;
        let pos_above = n_pos - pos_below - p_g;
        let v_neg = (pos_above as f64 + 0.5 * p_g as f64) / m;
        for &(_, i) in &order[start..end] {
            if labels[i] {
                v10[slot[i]] = v_pos;
            } else {
                v01[slot[i]] = v_neg;
            }
        }
        auc2 += p_g as u128 * (2 * neg_below + n_g) as u128;
        pos_below += p_g;
        neg_below += n_g;
        start = end;
    }
    let auc = auc2 as f64 / (2 * n_pos as u128 * n_neg as u128) as f64;
    Components { auc, v10, v01 }
}

/// Unbiased sample covariance (`ddof = 1`), two-pass like `numpy.cov`.
fn covariance(x: &[f64], y: &[f64]) -> f64 {
    let k = x.len() as f64;
    let mx = x.iter().sum::<f64>() / k;
    let my = y.iter().sum::<f64>() / k;
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / (k - 1.0)
}

/// Validates labels and every score vector; returns the labels and the class counts.
fn delong_inputs<L: BinaryLabel>(
    metric: &'static str,
    y_true: &[L],
    scores: &[(&'static str, &[f64])],
) -> Result<(Vec<bool>, usize, usize)> {
    check_nonempty("y_true", y_true.len())?;
    for &(what, s) in scores {
        check_len(what, y_true.len(), s.len())?;
    }
    for &(what, s) in scores {
        check_finite(what, s, None)?;
    }
    let labels = to_bools("y_true", y_true, None)?;
    let n_pos = labels.iter().filter(|&&y| y).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(MetricsError::OneClass {
            metric,
            class_present: u8::from(n_pos > 0),
            n_samples: labels.len(),
        });
    }
    for (what, count) in [("positive samples", n_pos), ("negative samples", n_neg)] {
        if count < 2 {
            return Err(MetricsError::TooFewSamples {
                metric,
                what,
                needed: 2,
                got: count,
            });
        }
    }
    Ok((labels, n_pos, n_neg))
}

/// The AUC and its DeLong variance.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// Empty or mismatched inputs, non-finite scores, invalid labels,
/// [`MetricsError::OneClass`], and [`MetricsError::TooFewSamples`] with fewer than two
/// positives or two negatives (the sample variance needs two).
pub fn delong<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
) -> Result<DelongAuc> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    let (labels, n_pos, n_neg) = delong_inputs("DeLong variance", y_true, &[("y_score", y_score)])?;
    let c = components(&labels, y_score, n_pos, n_neg);
    let variance =
        covariance(&c.v10, &c.v10) / n_pos as f64 + covariance(&c.v01, &c.v01) / n_neg as f64;
    Ok(DelongAuc {
        auc: c.auc,
        variance,
        n_positive: n_pos,
        n_negative: n_neg,
    })
}

/// The DeLong confidence interval of the AUC at confidence `level` (e.g. 0.95).
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// As [`delong`], and an invalid `level`.
pub fn delong_ci<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
    level: f64,
) -> Result<DelongInterval> {
    check_level(level)?;
    delong(y_true, y_score)?.confidence_interval(level)
}

/// DeLong's paired test of `H0: AUC_a = AUC_b` for two scorings of the same cases.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score_a`, `y_score_b`: `[n]`, sample `i` of each
/// scoring the same case.
///
/// # Errors
/// As [`delong`], and [`MetricsError::DegenerateVariance`] when the variance of the
/// difference is zero (identical rankings, or two perfect separations), which leaves `z`
/// undefined.
///
/// ```
/// use miram_metrics::delong_test;
/// let y = [0u8, 0, 0, 1, 1, 1, 0, 1];
/// let a = [0.1, 0.3, 0.2, 0.8, 0.7, 0.4, 0.5, 0.9];
/// let b = [0.2, 0.1, 0.6, 0.5, 0.4, 0.3, 0.7, 0.8];
/// let t = delong_test(&y, &a, &b)?;
/// assert!(t.auc_a > t.auc_b && (0.0..=1.0).contains(&t.p_value));
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn delong_test<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score_a: &(impl Values<f64> + ?Sized),
    y_score_b: &(impl Values<f64> + ?Sized),
) -> Result<DelongTest> {
    let (y_true, y_score_a, y_score_b) = (y_true.values(), y_score_a.values(), y_score_b.values());
    let (y_true, y_score_a, y_score_b) = (&*y_true, &*y_score_a, &*y_score_b);
    const METRIC: &str = "DeLong paired test";
    let (labels, n_pos, n_neg) = delong_inputs(
        METRIC,
        y_true,
        &[("y_score_a", y_score_a), ("y_score_b", y_score_b)],
    )?;
    let a = components(&labels, y_score_a, n_pos, n_neg);
    let b = components(&labels, y_score_b, n_pos, n_neg);
    let (m, n) = (n_pos as f64, n_neg as f64);
    let var_a = covariance(&a.v10, &a.v10) / m + covariance(&a.v01, &a.v01) / n;
    let var_b = covariance(&b.v10, &b.v10) / m + covariance(&b.v01, &b.v01) / n;
    let cov_ab = covariance(&a.v10, &b.v10) / m + covariance(&a.v01, &b.v01) / n;
    let var = var_a + var_b - 2.0 * cov_ab;
    if var.is_nan() || var <= 0.0 {
        return Err(MetricsError::DegenerateVariance {
            metric: METRIC,
            what: "the variance of the AUC difference",
            value: var,
        });
    }
    let z = (a.auc - b.auc) / var.sqrt();
    Ok(DelongTest {
        auc_a: a.auc,
        auc_b: b.auc,
        var_a,
        var_b,
        cov_ab,
        z,
        p_value: two_sided_p_value(z),
        n_positive: n_pos,
        n_negative: n_neg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_two_of_each_class() {
        let e = delong(&[0u8, 1, 0], &[0.1, 0.9, 0.3]).unwrap_err();
        assert!(
            matches!(
                e,
                MetricsError::TooFewSamples {
                    needed: 2,
                    got: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("positive samples"), "{e}");
    }

    #[test]
    fn identical_scorings_have_no_test() {
        let y = [0u8, 0, 1, 1, 0, 1];
        let s = [0.1, 0.5, 0.4, 0.9, 0.3, 0.2];
        let e = delong_test(&y, &s, &s).unwrap_err();
        assert!(matches!(e, MetricsError::DegenerateVariance { .. }), "{e}");
    }

    #[test]
    fn ci_uses_the_reference_quantile() {
        let y = [0u8, 0, 1, 1, 0, 1, 1, 0];
        let s = [0.1, 0.5, 0.4, 0.9, 0.3, 0.2, 0.8, 0.6];
        let d = delong(&y, &s).unwrap();
        let ci = d.confidence_interval(0.95).unwrap();
        let half = 1.959963984540054 * d.variance.sqrt();
        assert!((ci.lower - (d.auc - half)).abs() < 1e-15);
        assert!((ci.upper - (d.auc + half)).abs() < 1e-15);
        assert!(d.confidence_interval(1.0).is_err());
    }
}
