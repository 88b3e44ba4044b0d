//! Metrics of hard decisions: confusion matrices, accuracy, balanced accuracy, sensitivity and
//! specificity at a threshold and at the Youden point. Mirrors scikit-learn's
//! `confusion_matrix`, `accuracy_score` and `balanced_accuracy_score`
//! (`sklearn/metrics/_classification.py`); a binary decision is `score >= threshold`, the
//! convention of `roc_curve`'s thresholds.

use serde::Serialize;

use crate::error::{MetricsError, Result};
use crate::labels::{
    binary_inputs, check_classes, check_len, check_n_columns, check_nonempty, check_threshold,
    BinaryLabel,
};
use crate::ranking::Ranking;

/// Counts of a binary decision rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BinaryConfusion {
    /// True negatives.
    pub tn: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    /// True positives.
    pub tp: u64,
}

impl BinaryConfusion {
    /// The counts when every `score >= threshold` is predicted positive.
    ///
    /// # Shapes
    /// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
    ///
    /// # Errors
    /// Empty or mismatched inputs, non-finite scores, invalid labels, a NaN threshold.
    pub fn at_threshold<L: BinaryLabel>(
        y_true: &[L],
        y_score: &[f64],
        threshold: f64,
    ) -> Result<Self> {
        check_threshold(threshold)?;
        let labels = binary_inputs(y_true, y_score)?;
        let mut c = Self {
            tn: 0,
            fp: 0,
            fn_: 0,
            tp: 0,
        };
        for (&y, &s) in labels.iter().zip(y_score) {
            match (y, s >= threshold) {
                (true, true) => c.tp += 1,
                (true, false) => c.fn_ += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
            }
        }
        Ok(c)
    }

    /// scikit-learn's layout `[[tn, fp], [fn, tp]]` (rows = true class).
    pub fn matrix(&self) -> [[u64; 2]; 2] {
        [[self.tn, self.fp], [self.fn_, self.tp]]
    }

    /// Number of samples.
    pub fn n_samples(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }

    /// Fraction of correct decisions; `accuracy_score`.
    pub fn accuracy(&self) -> f64 {
        (self.tp + self.tn) as f64 / self.n_samples() as f64
    }

    /// Sensitivity (recall of the positive class, true-positive rate) `tp / (tp + fn)`.
    ///
    /// # Errors
    /// [`MetricsError::OneClass`] when there is no positive sample.
    pub fn sensitivity(&self) -> Result<f64> {
        let p = self.tp + self.fn_;
        if p == 0 {
            return Err(MetricsError::OneClass {
                metric: "sensitivity",
                class_present: 0,
                n_samples: self.n_samples() as usize,
            });
        }
        Ok(self.tp as f64 / p as f64)
    }

    /// Specificity (recall of the negative class, true-negative rate) `tn / (tn + fp)`.
    ///
    /// # Errors
    /// [`MetricsError::OneClass`] when there is no negative sample.
    pub fn specificity(&self) -> Result<f64> {
        let n = self.tn + self.fp;
        if n == 0 {
            return Err(MetricsError::OneClass {
                metric: "specificity",
                class_present: 1,
                n_samples: self.n_samples() as usize,
            });
        }
        Ok(self.tn as f64 / n as f64)
    }

    /// Balanced accuracy as `balanced_accuracy_score`: the mean recall over the classes
    /// present in `y_true` (scikit-learn drops an absent class with a warning; with both
    /// present this is `(sensitivity + specificity) / 2`).
    pub fn balanced_accuracy(&self) -> f64 {
        match (self.sensitivity(), self.specificity()) {
            (Ok(a), Ok(b)) => (a + b) / 2.0,
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            // Unreachable for a non-empty input: one of the classes is present.
            (Err(_), Err(_)) => f64::NAN,
        }
    }
}

/// Sensitivity and specificity of one decision threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// The threshold: `score >= threshold` is positive.
    pub threshold: f64,
    /// True-positive rate.
    pub sensitivity: f64,
    /// True-negative rate.
    pub specificity: f64,
    /// Youden's J, `sensitivity + specificity - 1`.
    pub youden_j: f64,
}

/// Sensitivity and specificity when `score >= threshold` is predicted positive.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// As [`BinaryConfusion::at_threshold`], and [`MetricsError::OneClass`] unless both classes
/// are present.
pub fn sensitivity_specificity<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    threshold: f64,
) -> Result<OperatingPoint> {
    let c = BinaryConfusion::at_threshold(y_true, y_score, threshold)?;
    let (sensitivity, specificity) = (c.sensitivity()?, c.specificity()?);
    Ok(OperatingPoint {
        threshold,
        sensitivity,
        specificity,
        youden_j: sensitivity + specificity - 1.0,
    })
}

/// The Youden point: the threshold maximising `J = tpr - fpr` over the ROC points.
///
/// Candidate thresholds are the distinct scores (the finite thresholds of `roc_curve`);
/// among equal maxima the highest threshold wins, as `argmax` over `roc_curve`'s output
/// does. The starting point `(0, 0)` with threshold `+inf` is not a candidate: `J` there
/// is 0, and the lowest score (everything positive) also gives 0, so a finite maximiser
/// always exists.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// As [`crate::roc_auc`]: both classes are needed.
pub fn youden_point<L: BinaryLabel>(y_true: &[L], y_score: &[f64]) -> Result<OperatingPoint> {
    let labels = binary_inputs(y_true, y_score)?;
    let ranking = Ranking::from_slices(&labels, y_score);
    ranking.require_both("Youden point")?;
    let (n_pos, n_neg) = (ranking.n_pos(), ranking.n_neg());
    // Compare J exactly in integers: J = tp/P - fp/N, so compare tp*N - fp*P.
    let mut best: Option<(i128, f64, u64, u64)> = None;
    for p in ranking.points() {
        let j = i128::from(p.tp) * i128::from(n_neg) - i128::from(p.fp) * i128::from(n_pos);
        if best.is_none_or(|(bj, ..)| j > bj) {
            best = Some((j, p.threshold, p.tp, p.fp));
        }
    }
    let (_, threshold, tp, fp) = best.ok_or(MetricsError::Empty { what: "y_true" })?;
    let sensitivity = tp as f64 / n_pos as f64;
    let specificity = (n_neg - fp) as f64 / n_neg as f64;
    Ok(OperatingPoint {
        threshold,
        sensitivity,
        specificity,
        youden_j: sensitivity + specificity - 1.0,
    })
}

/// Multiclass predictions from scores: the index of each row's largest value, the first
/// one on ties (`numpy.argmax`).
///
/// # Shapes
/// `y_prob`: `[n_samples, n_classes]` row-major; returns `[n_samples]`.
///
/// # Errors
/// Empty input, a length that is not a multiple of `n_classes`, non-finite values,
/// `n_classes < 2`.
pub fn argmax_rows(y_prob: &[f64], n_classes: usize) -> Result<Vec<usize>> {
    check_n_columns("n_classes", n_classes)?;
    check_nonempty("y_prob", y_prob.len())?;
    if y_prob.len() % n_classes != 0 {
        return Err(MetricsError::LengthMismatch {
            what: "y_prob",
            expected: y_prob.len().div_ceil(n_classes) * n_classes,
            got: y_prob.len(),
        });
    }
    crate::labels::check_finite("y_prob", y_prob, Some(n_classes))?;
    Ok(y_prob
        .chunks_exact(n_classes)
        .map(|row| {
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect())
}

fn check_predictions(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<()> {
    check_n_columns("n_classes", n_classes)?;
    check_nonempty("y_true", y_true.len())?;
    check_len("y_pred", y_true.len(), y_pred.len())?;
    check_classes("y_true", y_true, n_classes)?;
    check_classes("y_pred", y_pred, n_classes)
}

/// Multiclass confusion matrix, rows = true class, columns = predicted class;
/// `confusion_matrix(y_true, y_pred, labels=range(n_classes))`.
///
/// # Shapes
/// `y_true`, `y_pred`: `[n]` with values in `0..n_classes`; returns `[n_classes][n_classes]`.
///
/// # Errors
/// Empty or mismatched inputs, labels out of range, `n_classes < 2`.
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<Vec<Vec<u64>>> {
    check_predictions(y_true, y_pred, n_classes)?;
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[t][p] += 1;
    }
    Ok(m)
}

/// Fraction of correct predictions; `accuracy_score`.
///
/// # Shapes
/// `y_true`, `y_pred`: `[n]` class indices.
///
/// # Errors
/// Empty or mismatched inputs.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    check_nonempty("y_true", y_true.len())?;
    check_len("y_pred", y_true.len(), y_pred.len())?;
    let correct = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    Ok(correct as f64 / y_true.len() as f64)
}

/// Mean per-class recall over the classes present in `y_true`;
/// `balanced_accuracy_score(y_true, y_pred)` (classes absent from `y_true` are dropped, as
/// scikit-learn does after its warning).
///
/// # Shapes
/// `y_true`, `y_pred`: `[n]` with values in `0..n_classes`.
///
/// # Errors
/// As [`confusion_matrix`].
pub fn balanced_accuracy(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<f64> {
    let m = confusion_matrix(y_true, y_pred, n_classes)?;
    Ok(balanced_accuracy_of(&m))
}

/// Balanced accuracy of a confusion matrix (rows = true class).
pub(crate) fn balanced_accuracy_of(m: &[Vec<u64>]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for (k, row) in m.iter().enumerate() {
        let support: u64 = row.iter().sum();
        if support > 0 {
            sum += row[k] as f64 / support as f64;
            count += 1;
        }
    }
    sum / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_counts_at_threshold_use_ge() {
        let c = BinaryConfusion::at_threshold(&[0u8, 1, 1, 0], &[0.5, 0.5, 0.2, 0.1], 0.5).unwrap();
        assert_eq!(c.matrix(), [[1, 1], [1, 1]]);
        assert_eq!(c.accuracy(), 0.5);
        assert_eq!(c.balanced_accuracy(), 0.5);
    }

    #[test]
    fn youden_picks_the_best_threshold() {
        // Positives 0.9, 0.7, 0.4; negatives 0.8, 0.3, 0.2, 0.1. At 0.4: tpr 1, fpr 1/4.
        let y = [1u8, 1, 1, 0, 0, 0, 0];
        let s = [0.9, 0.7, 0.4, 0.8, 0.3, 0.2, 0.1];
        let p = youden_point(&y, &s).unwrap();
        assert_eq!(p.threshold, 0.4);
        assert_eq!(p.sensitivity, 1.0);
        assert_eq!(p.specificity, 0.75);
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(
            argmax_rows(&[0.2, 0.4, 0.4, 0.5, 0.25, 0.25], 3).unwrap(),
            vec![1, 0]
        );
    }

    #[test]
    fn balanced_accuracy_skips_absent_classes() {
        // Class 2 is predicted but never true: sklearn averages the recalls of 0 and 1 only.
        let b = balanced_accuracy(&[0, 0, 1, 1], &[0, 2, 1, 1], 3).unwrap();
        assert_eq!(b, 0.75);
    }
}
