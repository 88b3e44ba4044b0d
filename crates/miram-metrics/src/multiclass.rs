//! Multiclass ranking metrics, one-vs-rest: scikit-learn's
//! `roc_auc_score(y_true, y_prob, multi_class="ovr", average=...)` and
//! `average_precision_score(label_binarize(y_true, classes=range(k)), y_prob, average=...)`.
//!
//! Class `c`'s column is scored as a binary problem "class `c` against the rest" and the
//! column scores are averaged ([`Average`]); `Weighted` uses each class's prevalence.

use crate::columns::{averaged, per_column, Average, ColumnMetric};
use crate::error::{MetricsError, Result};
use crate::labels::multiclass_inputs;

/// One-vs-rest indicator matrix of `y_true`, row-major `[n, n_classes]`
/// (`label_binarize(y_true, classes=range(n_classes))`).
pub(crate) fn binarize(y_true: &[usize], n_classes: usize) -> Vec<bool> {
    let mut out = vec![false; y_true.len() * n_classes];
    for (i, &c) in y_true.iter().enumerate() {
        out[i * n_classes + c] = true;
    }
    out
}

/// Checks scikit-learn's preconditions of the multiclass ROC AUC: rows that sum to one
/// (`np.allclose(1, y_prob.sum(axis=1))`) and every class present in `y_true`.
fn check_ovr_auc(y_true: &[usize], y_prob: &[f64], n_classes: usize) -> Result<()> {
    const METRIC: &str = "multiclass one-vs-rest ROC AUC";
    for (row, r) in y_prob.chunks_exact(n_classes).enumerate() {
        let sum: f64 = r.iter().sum();
        if (1.0 - sum).abs() > 1e-8 + 1e-5 * sum.abs() {
            return Err(MetricsError::NotProbabilities {
                metric: METRIC,
                row,
                sum,
            });
        }
    }
    let mut present = vec![false; n_classes];
    for &c in y_true {
        present[c] = true;
    }
    match present.iter().position(|p| !p) {
        Some(class) => Err(MetricsError::MissingClass {
            metric: METRIC,
            class,
            n_classes,
        }),
        None => Ok(()),
    }
}

/// One-vs-rest ROC AUC averaged over classes; `roc_auc_score(multi_class="ovr")`.
///
/// # Shapes
/// `y_true`: `[n_samples]`, class indices in `0..n_classes`; `y_prob`:
/// `[n_samples, n_classes]` row-major, each row a probability vector (summing to 1).
///
/// # Errors
/// Empty or mismatched inputs, non-finite scores, labels out of range, `n_classes < 2`;
/// [`MetricsError::NotProbabilities`] for a row that does not sum to 1 and
/// [`MetricsError::MissingClass`] for a class absent from `y_true`, as scikit-learn.
///
/// ```
/// use miram_metrics::{roc_auc_ovr, Average};
/// let y = [0, 1, 2, 2];
/// let p = [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.1, 0.2, 0.7, 0.3, 0.3, 0.4];
/// assert_eq!(roc_auc_ovr(&y, &p, 3, Average::Macro)?, 1.0);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn roc_auc_ovr(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
    average: Average,
) -> Result<f64> {
    multiclass_inputs(y_true, y_prob, n_classes)?;
    check_ovr_auc(y_true, y_prob, n_classes)?;
    averaged(
        &binarize(y_true, n_classes),
        y_prob,
        n_classes,
        ColumnMetric::RocAuc,
        average,
    )
}

/// The one-vs-rest ROC AUC of every class (`average=None`).
///
/// # Shapes
/// As [`roc_auc_ovr`]; returns `[n_classes]`.
///
/// # Errors
/// As [`roc_auc_ovr`].
pub fn roc_auc_ovr_per_class(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
) -> Result<Vec<f64>> {
    multiclass_inputs(y_true, y_prob, n_classes)?;
    check_ovr_auc(y_true, y_prob, n_classes)?;
    per_column(
        &binarize(y_true, n_classes),
        y_prob,
        n_classes,
        ColumnMetric::RocAuc,
    )
}

/// Average precision over the one-vs-rest binarised labels;
/// `average_precision_score(label_binarize(y_true, classes=range(k)), y_prob, average=...)`.
///
/// # Shapes
/// `y_true`: `[n_samples]` in `0..n_classes`; `y_prob`: `[n_samples, n_classes]` row-major
/// (any scores; unlike the AUC, no probability check, as in scikit-learn).
///
/// # Errors
/// Empty or mismatched inputs, non-finite scores, labels out of range, `n_classes < 2`.
/// A class absent from `y_true` is an error for `Macro` (its AP is undefined; scikit-learn
/// warns and counts it as 0, which silently lowers the mean) and is left out by `Weighted`
/// (weight 0, the same value as scikit-learn).
pub fn average_precision_ovr(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
    average: Average,
) -> Result<f64> {
    multiclass_inputs(y_true, y_prob, n_classes)?;
    averaged(
        &binarize(y_true, n_classes),
        y_prob,
        n_classes,
        ColumnMetric::AveragePrecision,
        average,
    )
}

/// The one-vs-rest average precision of every class (`average=None`).
///
/// # Shapes
/// As [`average_precision_ovr`]; returns `[n_classes]`.
///
/// # Errors
/// As [`average_precision_ovr`] with `Macro`.
pub fn average_precision_ovr_per_class(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
) -> Result<Vec<f64>> {
    multiclass_inputs(y_true, y_prob, n_classes)?;
    per_column(
        &binarize(y_true, n_classes),
        y_prob,
        n_classes,
        ColumnMetric::AveragePrecision,
    )
}

/// Flattens rows of equal length into a row-major matrix, returning it and the row length:
/// the bridge from `Vec<Vec<f64>>` (as JSON or CSV readers produce) to this crate's
/// `(&[f64], n_columns)` convention.
///
/// # Shapes
/// `rows`: `[n_samples][n_columns]`; returns `[n_samples * n_columns]` and `n_columns`.
///
/// # Errors
/// [`MetricsError::Empty`] for no rows or empty rows, [`MetricsError::LengthMismatch`] for
/// a row whose length differs from the first one's.
pub fn flatten_rows<T: Copy>(rows: &[Vec<T>]) -> Result<(Vec<T>, usize)> {
    let first = rows.first().ok_or(MetricsError::Empty { what: "rows" })?;
    let k = first.len();
    if k == 0 {
        return Err(MetricsError::Empty { what: "row 0" });
    }
    let mut out = Vec::with_capacity(rows.len() * k);
    for r in rows {
        if r.len() != k {
            return Err(MetricsError::LengthMismatch {
                what: "row",
                expected: k,
                got: r.len(),
            });
        }
        out.extend_from_slice(r);
    }
    Ok((out, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_probabilities_and_missing_classes() {
        let e = roc_auc_ovr(&[0, 1], &[0.5, 0.6, 0.5, 0.5], 2, Average::Macro).unwrap_err();
        assert!(
            matches!(e, MetricsError::NotProbabilities { row: 0, .. }),
            "{e}"
        );
        let e = roc_auc_ovr(
            &[0, 0, 1],
            &[0.5, 0.3, 0.2, 0.5, 0.3, 0.2, 0.1, 0.8, 0.1],
            3,
            Average::Macro,
        )
        .unwrap_err();
        assert!(
            matches!(e, MetricsError::MissingClass { class: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("class 2"), "{e}");
    }

    #[test]
    fn macro_ap_refuses_a_class_without_samples() {
        let p = [0.5, 0.3, 0.2, 0.5, 0.3, 0.2, 0.1, 0.8, 0.1];
        let e = average_precision_ovr(&[0, 0, 1], &p, 3, Average::Macro).unwrap_err();
        assert!(matches!(e, MetricsError::Column { column: 2, .. }), "{e}");
        // The weighted mean gives the absent class weight 0 and is defined.
        assert!(average_precision_ovr(&[0, 0, 1], &p, 3, Average::Weighted).is_ok());
    }

    #[test]
    fn flatten_rows_checks_lengths() {
        let (m, k) = flatten_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert_eq!((m, k), (vec![1.0, 2.0, 3.0, 4.0], 2));
        assert!(matches!(
            flatten_rows(&[vec![1.0, 2.0], vec![3.0]]),
            Err(MetricsError::LengthMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
    }
}
