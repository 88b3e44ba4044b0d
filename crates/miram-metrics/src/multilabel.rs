//! Multilabel ranking metrics (multi-hot targets, such as the mass-margin labels of
//! CBIS-DDSM): scikit-learn's `roc_auc_score(Y, S, average=...)` and
//! `average_precision_score(Y, S, average=...)` with `Y` a `[n, n_labels]` indicator matrix.

use serde::Serialize;

use crate::columns::{averaged, per_column, Average, ColumnMetric};
use crate::error::{MetricsError, Result};
use crate::labels::{multilabel_inputs, BinaryLabel};
use crate::ranking::Ranking;

/// Multilabel ROC AUC averaged over labels.
///
/// # Shapes
/// `y_true`: `[n_samples, n_labels]` row-major multi-hot (`0`/`1` or `bool`); `y_score`:
/// `[n_samples, n_labels]` row-major.
///
/// # Errors
/// Empty or mismatched inputs, non-finite scores, invalid labels, `n_labels < 2`; for
/// `Macro` and `Weighted`, a label column with one class only
/// ([`crate::MetricsError::Column`] naming it), for `Micro` a flattened matrix with one class.
///
/// ```
/// use miram_metrics::{multilabel_roc_auc, Average};
/// let y = [1u8, 0, 0, 1, 1, 1, 0, 0];
/// let s = [0.9, 0.2, 0.3, 0.8, 0.7, 0.6, 0.1, 0.4];
/// assert_eq!(multilabel_roc_auc(&y, &s, 2, Average::Macro)?, 1.0);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn multilabel_roc_auc<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
    average: Average,
) -> Result<f64> {
    let (labels, _) = multilabel_inputs(y_true, y_score, n_labels)?;
    averaged(&labels, y_score, n_labels, ColumnMetric::RocAuc, average)
}

/// Multilabel average precision averaged over labels.
///
/// # Shapes
/// As [`multilabel_roc_auc`].
///
/// # Errors
/// As [`multilabel_roc_auc`], except that a column needs only a positive: a label without
/// positives is an error for `Macro` (scikit-learn warns and counts 0) and left out by
/// `Weighted` (weight 0, scikit-learn's value); a label with positives only has AP 1.
pub fn multilabel_average_precision<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
    average: Average,
) -> Result<f64> {
    let (labels, _) = multilabel_inputs(y_true, y_score, n_labels)?;
    averaged(
        &labels,
        y_score,
        n_labels,
        ColumnMetric::AveragePrecision,
        average,
    )
}

/// scikit-learn's macro average precision of an indicator matrix, with the columns it
/// scored 0: what [`multilabel_average_precision_sklearn`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SklearnMacroAveragePrecision {
    /// The mean over **all** columns, a column without positives counting 0:
    /// `average_precision_score(Y, S, average="macro")`.
    pub value: f64,
    /// The AP of every column; `None` for a column without positives (counted 0 in `value`).
    pub per_column: Vec<Option<f64>>,
    /// The columns without positives, in order (scikit-learn warns about them; empty when
    /// `value` is the plain macro average of [`multilabel_average_precision`]).
    pub columns_without_positives: Vec<usize>,
}

/// Macro average precision exactly as scikit-learn computes it,
/// `average_precision_score(Y, S, average="macro")`: the unweighted mean over every column,
/// where a column without positives (AP undefined: recall is 0/0) counts as 0. The columns
/// scored 0 are returned, so that a caller can say which; with none, `value` equals
/// [`multilabel_average_precision`] with [`Average::Macro`]. For a one-vs-rest multiclass
/// problem, pass the one-hot matrix of `y_true`
/// (`average_precision_score(label_binarize(y_true, classes=range(k)), y_prob)`).
///
/// # Shapes
/// As [`multilabel_roc_auc`].
///
/// # Errors
/// Empty or mismatched inputs, non-finite scores, invalid labels, `n_labels < 2`; a matrix
/// without any positive ([`MetricsError::OneClass`]: every column would be 0, there is
/// nothing to average).
///
/// ```
/// use miram_metrics::multilabel_average_precision_sklearn;
/// // Column 0 ranked perfectly; columns 1 and 2 have no positives.
/// let y = [1u8, 0, 0, 0, 0, 0];
/// let s = [0.9, 0.2, 0.3, 0.1, 0.5, 0.4];
/// let m = multilabel_average_precision_sklearn(&y, &s, 3)?;
/// assert_eq!(m.value, 1.0 / 3.0);
/// assert_eq!(m.columns_without_positives, vec![1, 2]);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn multilabel_average_precision_sklearn<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
) -> Result<SklearnMacroAveragePrecision> {
    let (labels, n_samples) = multilabel_inputs(y_true, y_score, n_labels)?;
    let mut per = Vec::with_capacity(n_labels);
    let mut without = Vec::new();
    for c in 0..n_labels {
        let ranking = Ranking::from_column(&labels, y_score, n_labels, c);
        if ranking.n_pos() == 0 {
            without.push(c);
            per.push(None);
        } else {
            per.push(Some(
                ColumnMetric::AveragePrecision
                    .of(&ranking)
                    .map_err(|e| e.in_column(c))?,
            ));
        }
    }
    if without.len() == n_labels {
        return Err(MetricsError::OneClass {
            metric: "macro average precision",
            class_present: 0,
            n_samples,
        });
    }
    let value = per.iter().map(|v| v.unwrap_or(0.0)).sum::<f64>() / n_labels as f64;
    Ok(SklearnMacroAveragePrecision {
        value,
        per_column: per,
        columns_without_positives: without,
    })
}

/// The ROC AUC of every label (`average=None`).
///
/// # Shapes
/// As [`multilabel_roc_auc`]; returns `[n_labels]`.
///
/// # Errors
/// As [`multilabel_roc_auc`] with `Macro`.
pub fn multilabel_roc_auc_per_label<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
) -> Result<Vec<f64>> {
    let (labels, _) = multilabel_inputs(y_true, y_score, n_labels)?;
    per_column(&labels, y_score, n_labels, ColumnMetric::RocAuc)
}

/// The average precision of every label (`average=None`).
///
/// # Shapes
/// As [`multilabel_roc_auc`]; returns `[n_labels]`.
///
/// # Errors
/// As [`multilabel_average_precision`] with `Macro`.
pub fn multilabel_average_precision_per_label<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
) -> Result<Vec<f64>> {
    let (labels, _) = multilabel_inputs(y_true, y_score, n_labels)?;
    per_column(&labels, y_score, n_labels, ColumnMetric::AveragePrecision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MetricsError;

    #[test]
    fn one_class_column_is_named() {
        // Label 1 is positive in every sample.
        let y = [1u8, 1, 0, 1, 1, 1];
        let s = [0.9, 0.2, 0.3, 0.8, 0.7, 0.6];
        let e = multilabel_roc_auc(&y, &s, 2, Average::Macro).unwrap_err();
        assert!(
            matches!(&e, MetricsError::Column { column: 1, source } if matches!(**source, MetricsError::OneClass { class_present: 1, .. })),
            "{e}"
        );
        assert!(e.to_string().starts_with("column 1: only one class"), "{e}");
        // Micro flattens the matrix, which holds both classes.
        assert!(multilabel_roc_auc(&y, &s, 2, Average::Micro).is_ok());
    }

    #[test]
    fn ragged_matrix_is_a_length_error() {
        let e = multilabel_roc_auc(&[1u8, 0, 1], &[0.1, 0.2, 0.3], 2, Average::Macro).unwrap_err();
        assert!(
            matches!(
                e,
                MetricsError::LengthMismatch {
                    what: "y_true",
                    got: 3,
                    ..
                }
            ),
            "{e}"
        );
    }
}
