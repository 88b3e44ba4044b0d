//! The ranking every threshold-free metric is built on: scores sorted in decreasing order
//! and grouped by distinct value, giving at each distinct threshold the cumulative counts of
//! true and false positives. Mirrors scikit-learn's `_binary_clf_curve`
//! (`sklearn/metrics/_ranking.py`): one point per distinct score, ties share a point.
//!
//! Sorting is O(n log n); everything after it is one pass. Areas are accumulated in
//! integers, so the ROC AUC is the exact rational `area / (2 P N)` rounded once.

use crate::error::{MetricsError, Result};

/// Scores sorted in decreasing order with their labels.
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    /// `(score, is_positive)`, scores decreasing; `-0.0` is stored as `0.0`.
    pairs: Vec<(f64, bool)>,
    n_pos: u64,
}

/// One point of the ranking: every sample with a score `>= threshold` is predicted positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// The distinct score.
    pub threshold: f64,
    /// Positives with a score `>= threshold`.
    pub tp: u64,
    /// Negatives with a score `>= threshold`.
    pub fp: u64,
}

impl Ranking {
    /// Sorts `(score, label)` pairs; the scores must be finite (validated by the caller).
    pub fn new(mut pairs: Vec<(f64, bool)>) -> Self {
        let mut n_pos = 0u64;
        for p in &mut pairs {
            // Adding +0.0 maps -0.0 to +0.0, so that `total_cmp` and `==` agree on ties.
            p.0 += 0.0;
            n_pos += u64::from(p.1);
        }
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        Self { pairs, n_pos }
    }

    /// A ranking of `labels` and `scores` of equal length.
    pub fn from_slices(labels: &[bool], scores: &[f64]) -> Self {
        Self::new(scores.iter().copied().zip(labels.iter().copied()).collect())
    }

    /// A ranking of column `column` of row-major `[n, n_columns]` labels and scores.
    pub fn from_column(labels: &[bool], scores: &[f64], n_columns: usize, column: usize) -> Self {
        Self::new(
            scores
                .iter()
                .skip(column)
                .step_by(n_columns)
                .copied()
                .zip(labels.iter().skip(column).step_by(n_columns).copied())
                .collect(),
        )
    }

    /// Number of positive samples.
    pub fn n_pos(&self) -> u64 {
        self.n_pos
    }

    /// Number of negative samples.
    pub fn n_neg(&self) -> u64 {
        self.pairs.len() as u64 - self.n_pos
    }

    /// The points, one per distinct score, from the highest score down.
    pub fn points(&self) -> Points<'_> {
        Points {
            pairs: &self.pairs,
            i: 0,
            tp: 0,
            fp: 0,
        }
    }

    /// Fails with [`MetricsError::OneClass`] unless both classes are present.
    pub fn require_both(&self, metric: &'static str) -> Result<()> {
        let n = self.pairs.len();
        if self.n_pos == 0 {
            Err(MetricsError::OneClass {
                metric,
                class_present: 0,
                n_samples: n,
            })
        } else if self.n_neg() == 0 {
            Err(MetricsError::OneClass {
                metric,
                class_present: 1,
                n_samples: n,
            })
        } else {
            Ok(())
        }
    }

    /// ROC AUC, ties counted as half: the trapezoidal area under the ROC curve (equal to the
    /// Mann-Whitney statistic), accumulated exactly in integers.
    pub fn roc_auc(&self) -> Result<f64> {
        self.require_both("ROC AUC")?;
        let (mut prev_tp, mut prev_fp) = (0u64, 0u64);
        let mut area2: u128 = 0;
        for p in self.points() {
            area2 += u128::from(p.fp - prev_fp) * u128::from(p.tp + prev_tp);
            prev_tp = p.tp;
            prev_fp = p.fp;
        }
        let denom = 2 * u128::from(self.n_pos) * u128::from(self.n_neg());
        Ok(area2 as f64 / denom as f64)
    }

    /// Average precision, scikit-learn's step-wise sum `sum_k (R_k - R_{k-1}) P_k` over the
    /// distinct thresholds (not interpolated). Needs a positive; with no negatives it is 1.
    pub fn average_precision(&self) -> Result<f64> {
        if self.n_pos == 0 {
            return Err(MetricsError::OneClass {
                metric: "average precision",
                class_present: 0,
                n_samples: self.pairs.len(),
            });
        }
        // Sum the positives gained times the precision, and divide by P once at the end:
        // fewer roundings than summing recall steps, and a perfect ranking gives exactly 1.
        let mut prev_tp = 0u64;
        let mut sum = 0.0;
        for p in self.points() {
            if p.tp > prev_tp {
                sum += (p.tp - prev_tp) as f64 * (p.tp as f64 / (p.tp + p.fp) as f64);
                prev_tp = p.tp;
            }
        }
        Ok(sum / self.n_pos as f64)
    }
}

/// Iterator over the [`Point`]s of a [`Ranking`].
#[derive(Debug)]
pub(crate) struct Points<'a> {
    pairs: &'a [(f64, bool)],
    i: usize,
    tp: u64,
    fp: u64,
}

impl Iterator for Points<'_> {
    type Item = Point;

    fn next(&mut self) -> Option<Point> {
        let threshold = self.pairs.get(self.i)?.0;
        while let Some(&(s, positive)) = self.pairs.get(self.i) {
            if s != threshold {
                break;
            }
            if positive {
                self.tp += 1;
            } else {
                self.fp += 1;
            }
            self.i += 1;
        }
        Some(Point {
            threshold,
            tp: self.tp,
            fp: self.fp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_group_ties_and_count() {
        let r = Ranking::from_slices(
            &[true, false, true, false, true],
            &[0.9, 0.5, 0.5, -0.0, 0.0],
        );
        let pts: Vec<_> = r.points().collect();
        assert_eq!(
            pts,
            vec![
                Point {
                    threshold: 0.9,
                    tp: 1,
                    fp: 0
                },
                Point {
                    threshold: 0.5,
                    tp: 2,
                    fp: 1
                },
                Point {
                    threshold: 0.0,
                    tp: 3,
                    fp: 2
                },
            ]
        );
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // One positive tied with one negative: AUC 0.5.
        let r = Ranking::from_slices(&[true, false], &[0.3, 0.3]);
        assert_eq!(r.roc_auc().unwrap(), 0.5);
        // P = {0.8, 0.4}, N = {0.4, 0.1}: pairs 1 + 1 + 0.5 + 1 = 3.5 of 4.
        let r = Ranking::from_slices(&[true, true, false, false], &[0.8, 0.4, 0.4, 0.1]);
        assert_eq!(r.roc_auc().unwrap(), 3.5 / 4.0);
    }
}
