//! Threshold-free binary metrics, as scikit-learn computes them: `roc_auc_score`,
//! `average_precision_score`, `roc_curve` and `precision_recall_curve`
//! (`sklearn/metrics/_ranking.py`, version 1.9).
//!
//! The ROC AUC counts ties as half (the trapezoidal rule over sklearn's ROC points, which
//! equals the Mann-Whitney U statistic divided by `P N`). Average precision is sklearn's
//! step-wise `AP = sum_k (R_k - R_{k-1}) P_k`, not the interpolated area.

use serde::Serialize;

use crate::error::{MetricsError, Result};
use crate::labels::{binary_inputs, BinaryLabel};
use crate::ranking::{Point, Ranking};
use crate::values::Values;

/// Binary ROC AUC, ties counted as half; `sklearn.metrics.roc_auc_score(y_true, y_score)`.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1` (or `bool`); `y_score`: `[n]`, higher means more
/// likely positive (probability, logit, any monotone score).
///
/// # Errors
/// [`MetricsError::Empty`], [`MetricsError::LengthMismatch`], [`MetricsError::NonFinite`],
/// [`MetricsError::InvalidLabel`], and [`MetricsError::OneClass`] when `y_true` holds one
/// class only (the AUC is undefined).
///
/// ```
/// let auc = miram_metrics::roc_auc(&[0u8, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8])?;
/// assert_eq!(auc, 0.75);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn roc_auc<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
) -> Result<f64> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    let labels = binary_inputs(y_true, y_score)?;
    Ranking::from_slices(&labels, y_score).roc_auc()
}

/// Average precision; `sklearn.metrics.average_precision_score(y_true, y_score)`.
///
/// The step-wise sum over the distinct thresholds (highest first) of the recall gained at
/// that threshold times the precision there; tied scores form one step.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// As [`roc_auc`], except that the one-class error is raised only when there is no positive
/// sample (recall is then 0/0; scikit-learn warns and returns 0). With positives only the
/// precision is 1 at every threshold and the AP is 1, as in scikit-learn.
///
/// ```
/// let ap = miram_metrics::average_precision(&[0u8, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8])?;
/// assert!((ap - 0.8333333333333333).abs() < 1e-15);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn average_precision<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
) -> Result<f64> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    let labels = binary_inputs(y_true, y_score)?;
    Ranking::from_slices(&labels, y_score).average_precision()
}

/// Which points a curve keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CurvePoints {
    /// One point per distinct score (`drop_intermediate=False`).
    #[default]
    All,
    /// scikit-learn's `drop_intermediate=True`: drop points that lie on a straight segment
    /// of the ROC curve (collinear in `(fpr, tpr)`), or that leave the recall unchanged on
    /// both sides for the precision-recall curve. The area is unchanged.
    DropIntermediate,
}

/// A ROC curve: `fpr[i]`, `tpr[i]` are the rates when every score `>= thresholds[i]` is
/// predicted positive. Thresholds decrease; the first is `+inf` (the point `(0, 0)`), as in
/// scikit-learn 1.3 and later (serialised as `null` in JSON, which has no infinity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    /// False-positive rates, increasing from 0 to 1.
    pub fpr: Vec<f64>,
    /// True-positive rates, increasing from 0 to 1.
    pub tpr: Vec<f64>,
    /// Decreasing thresholds, the first `+inf`.
    pub thresholds: Vec<f64>,
}

/// `sklearn.metrics.roc_curve(y_true, y_score, drop_intermediate=...)`.
///
/// `CurvePoints::DropIntermediate` is scikit-learn's default.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`. The three returned vectors have one
/// entry per kept distinct score plus one (the starting point).
///
/// # Errors
/// As [`roc_auc`]: both classes are needed (scikit-learn returns NaN rates with a warning).
pub fn roc_curve<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
    points: CurvePoints,
) -> Result<RocCurve> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    let labels = binary_inputs(y_true, y_score)?;
    let ranking = Ranking::from_slices(&labels, y_score);
    ranking.require_both("ROC curve")?;
    let mut pts: Vec<Point> = ranking.points().collect();
    if points == CurvePoints::DropIntermediate && pts.len() > 2 {
        let second_diff = |a: u64, b: u64, c: u64| a + c != 2 * b;
        let mut kept = Vec::with_capacity(pts.len());
        kept.push(pts[0]);
        for i in 1..pts.len() - 1 {
            let (a, b, c) = (pts[i - 1], pts[i], pts[i + 1]);
            if second_diff(a.fp, b.fp, c.fp) || second_diff(a.tp, b.tp, c.tp) {
                kept.push(b);
            }
        }
        kept.push(pts[pts.len() - 1]);
        pts = kept;
    }
    let (n_pos, n_neg) = (ranking.n_pos() as f64, ranking.n_neg() as f64);
    let mut curve = RocCurve {
        fpr: Vec::with_capacity(pts.len() + 1),
        tpr: Vec::with_capacity(pts.len() + 1),
        thresholds: Vec::with_capacity(pts.len() + 1),
    };
    curve.fpr.push(0.0);
    curve.tpr.push(0.0);
    curve.thresholds.push(f64::INFINITY);
    for p in pts {
        curve.fpr.push(p.fp as f64 / n_neg);
        curve.tpr.push(p.tp as f64 / n_pos);
        curve.thresholds.push(p.threshold);
    }
    Ok(curve)
}

/// A precision-recall curve in scikit-learn's layout: `precision[i]`, `recall[i]` when every
/// score `>= thresholds[i]` is predicted positive, thresholds increasing; `precision` and
/// `recall` carry one more entry, the end point `(recall 0, precision 1)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrecisionRecallCurve {
    /// Precision at each threshold, then 1.
    pub precision: Vec<f64>,
    /// Recall at each threshold (decreasing), then 0.
    pub recall: Vec<f64>,
    /// Increasing distinct scores.
    pub thresholds: Vec<f64>,
}

/// `sklearn.metrics.precision_recall_curve(y_true, y_score, drop_intermediate=...)`.
///
/// `CurvePoints::All` is scikit-learn's default here.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`. `thresholds` has one entry per kept
/// distinct score, `precision` and `recall` one more.
///
/// # Errors
/// As [`average_precision`]: a positive sample is needed.
pub fn precision_recall_curve<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
    points: CurvePoints,
) -> Result<PrecisionRecallCurve> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    let labels = binary_inputs(y_true, y_score)?;
    let ranking = Ranking::from_slices(&labels, y_score);
    if ranking.n_pos() == 0 {
        return Err(MetricsError::OneClass {
            metric: "precision-recall curve",
            class_present: 0,
            n_samples: labels.len(),
        });
    }
    let mut pts: Vec<Point> = ranking.points().collect();
    if points == CurvePoints::DropIntermediate && pts.len() > 2 {
        let mut kept = Vec::with_capacity(pts.len());
        kept.push(pts[0]);
        for i in 1..pts.len() - 1 {
            if pts[i].tp != pts[i - 1].tp || pts[i + 1].tp != pts[i].tp {
                kept.push(pts[i]);
            }
        }
        kept.push(pts[pts.len() - 1]);
        pts = kept;
    }
    let n_pos = ranking.n_pos() as f64;
    let mut curve = PrecisionRecallCurve {
        precision: Vec::with_capacity(pts.len() + 1),
        recall: Vec::with_capacity(pts.len() + 1),
        thresholds: Vec::with_capacity(pts.len()),
    };
    for p in pts.iter().rev() {
        curve.precision.push(p.tp as f64 / (p.tp + p.fp) as f64);
        curve.recall.push(p.tp as f64 / n_pos);
        curve.thresholds.push(p.threshold);
    }
    curve.precision.push(1.0);
    curve.recall.push(0.0);
    Ok(curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from scikit-learn 1.9.1's docstring examples:
    // roc_curve([1, 1, 2, 2] -> pos_label 2, [0.1, 0.4, 0.35, 0.8]) and
    // precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]).
    #[test]
    fn sklearn_docstring_curves() {
        let y = [0u8, 0, 1, 1];
        let s = [0.1, 0.4, 0.35, 0.8];
        let roc = roc_curve(&y, &s, CurvePoints::DropIntermediate).unwrap();
        assert_eq!(roc.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(roc.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(roc.thresholds, vec![f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        let pr = precision_recall_curve(&y, &s, CurvePoints::All).unwrap();
        let expect_p = [0.5, 2.0 / 3.0, 0.5, 1.0, 1.0];
        for (a, b) in pr.precision.iter().zip(expect_p) {
            assert!((a - b).abs() < 1e-15);
        }
        assert_eq!(pr.recall, vec![1.0, 1.0, 0.5, 0.5, 0.0]);
        assert_eq!(pr.thresholds, vec![0.1, 0.35, 0.4, 0.8]);
    }

    #[test]
    fn drop_intermediate_removes_collinear_points() {
        // Three negatives in a row after the positives: the middle ROC points are collinear.
        let y = [1u8, 1, 0, 0, 0];
        let s = [0.9, 0.8, 0.7, 0.6, 0.5];
        let all = roc_curve(&y, &s, CurvePoints::All).unwrap();
        assert_eq!(all.fpr.len(), 6);
        let dropped = roc_curve(&y, &s, CurvePoints::DropIntermediate).unwrap();
        assert_eq!(dropped.tpr, vec![0.0, 0.5, 1.0, 1.0]);
        assert_eq!(dropped.fpr, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(dropped.thresholds, vec![f64::INFINITY, 0.9, 0.8, 0.5]);
    }

    #[test]
    fn average_precision_with_positives_only_is_one() {
        assert_eq!(average_precision(&[1u8, 1], &[0.2, 0.7]).unwrap(), 1.0);
        assert!(matches!(
            average_precision(&[0u8, 0], &[0.2, 0.7]),
            Err(MetricsError::OneClass {
                class_present: 0,
                ..
            })
        ));
    }
}
