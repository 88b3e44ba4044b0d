//! Averaging a binary metric over the columns of a `[n_samples, n_columns]` indicator matrix,
//! as scikit-learn's `_average_binary_score` (`sklearn/metrics/_base.py`) does for multilabel
//! targets and for one-vs-rest binarised multiclass targets.

use crate::error::{MetricsError, Result};
use crate::ranking::Ranking;

/// How per-column scores are combined (scikit-learn's `average=` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Average {
    /// Unweighted mean of the per-column scores.
    Macro,
    /// Mean weighted by each column's number of positives (its prevalence), scikit-learn's
    /// `"weighted"`.
    Weighted,
    /// The binary metric of all cells flattened into one ranking.
    Micro,
}

impl Average {
    /// scikit-learn's name for it: `"macro"`, `"weighted"` or `"micro"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Macro => "macro",
            Self::Weighted => "weighted",
            Self::Micro => "micro",
        }
    }
}

/// The ranking metrics that can be averaged over columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnMetric {
    RocAuc,
    AveragePrecision,
}

impl ColumnMetric {
    pub(crate) fn of(self, ranking: &Ranking) -> Result<f64> {
        match self {
            Self::RocAuc => ranking.roc_auc(),
            Self::AveragePrecision => ranking.average_precision(),
        }
    }
}

/// The metric of every column; an undefined column is an error naming it.
///
/// `labels` and `scores` are row-major `[n, n_columns]` and already validated.
pub(crate) fn per_column(
    labels: &[bool],
    scores: &[f64],
    n_columns: usize,
    metric: ColumnMetric,
) -> Result<Vec<f64>> {
    (0..n_columns)
        .map(|c| {
            metric
                .of(&Ranking::from_column(labels, scores, n_columns, c))
                .map_err(|e| e.in_column(c))
        })
        .collect()
}

/// The averaged metric.
///
/// Undefined columns are errors for `Macro`; for `Weighted`, a column without positives has
/// weight 0 and is left out (scikit-learn forces its score to 0 before weighting, which
/// gives the same value), while a column without negatives still makes the AUC an error.
pub(crate) fn averaged(
    labels: &[bool],
    scores: &[f64],
    n_columns: usize,
    metric: ColumnMetric,
    average: Average,
) -> Result<f64> {
    match average {
        Average::Micro => metric.of(&Ranking::from_slices(labels, scores)),
        Average::Macro => {
            let per = per_column(labels, scores, n_columns, metric)?;
            Ok(per.iter().sum::<f64>() / per.len() as f64)
        }
        Average::Weighted => {
            let (mut num, mut den) = (0.0, 0u64);
            for c in 0..n_columns {
                let ranking = Ranking::from_column(labels, scores, n_columns, c);
                let w = ranking.n_pos();
                if w == 0 && metric == ColumnMetric::AveragePrecision {
                    continue;
                }
                num += w as f64 * metric.of(&ranking).map_err(|e| e.in_column(c))?;
                den += w;
            }
            if den == 0 {
                return Err(MetricsError::OneClass {
                    metric: "prevalence-weighted average",
                    class_present: 0,
                    n_samples: labels.len() / n_columns,
                });
            }
            Ok(num / den as f64)
        }
    }
}
