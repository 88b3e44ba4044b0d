//! Stratified bootstrap confidence intervals (percentile method) for any metric.
//!
//! Each replicate draws, within every stratum (a class, or a label combination), as many
//! samples as the stratum holds, uniformly with replacement, so every replicate keeps the
//! class counts of the data (Efron and Tibshirani, "An Introduction to the Bootstrap", 1993,
//! ch. 13; the stratified form keeps a rare class from vanishing from a resample). The
//! interval is the `(1 - level) / 2` and `(1 + level) / 2` percentiles of the replicate
//! values, linearly interpolated as `numpy.percentile` does by default.
//!
//! Replicate `r` draws from `Rng::keyed(seed, &[r])`, so the result depends on the seed
//! only, not on the number of threads: replicates run in parallel with rayon. Replicates on
//! which the metric is undefined are skipped and counted.

use std::collections::HashMap;

use miram_rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Location, MetricsError, Result};
use crate::labels::{
    binary_inputs, check_level, check_nonempty, multiclass_inputs, multilabel_inputs, BinaryLabel,
};

/// Settings of a bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    /// Number of resamples (replicates).
    pub n_resamples: usize,
    /// Confidence level of the interval, strictly between 0 and 1.
    pub level: f64,
    /// Seed of [`miram_rand::Rng::keyed`].
    pub seed: u64,
}

impl Default for BootstrapConfig {
    /// 2000 resamples, 95% level, seed 0: the usual setting of medical-imaging papers.
    fn default() -> Self {
        Self {
            n_resamples: 2000,
            level: 0.95,
            seed: 0,
        }
    }
}

impl BootstrapConfig {
    /// 200 resamples at 95%: a quick look while developing (too few for a paper's 2.5%
    /// percentiles).
    pub fn quick() -> Self {
        Self {
            n_resamples: 200,
            ..Self::default()
        }
    }

    /// The default with another seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        check_level(self.level)?;
        if self.n_resamples == 0 {
            return Err(MetricsError::InvalidParameter {
                name: "n_resamples",
                value: "0".to_string(),
                reason: "a bootstrap needs at least one resample",
            });
        }
        Ok(())
    }
}

/// A bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapInterval {
    /// The metric on the full data.
    pub estimate: f64,
    /// Lower percentile of the replicates.
    pub lower: f64,
    /// Upper percentile of the replicates.
    pub upper: f64,
    /// Confidence level.
    pub level: f64,
    /// Standard deviation of the replicates (`ddof = 1`; 0 with one replicate).
    pub std_error: f64,
    /// Resamples drawn.
    pub n_resamples: usize,
    /// Resamples on which the metric was defined (the interval is computed from these).
    pub n_valid: usize,
    /// Resamples skipped because the metric was undefined on them.
    pub n_skipped: usize,
    /// The seed.
    pub seed: u64,
}

/// `numpy.percentile(v, 100 q)` with linear interpolation; `sorted` is non-empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Groups sample indices by stratum, strata in order of first appearance.
fn group_strata(strata: &[usize]) -> Vec<Vec<usize>> {
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, &s) in strata.iter().enumerate() {
        let g = *index.entry(s).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// The bootstrap engine: `state` is per-thread scratch space for `metric`.
fn run<S, I, F>(
    strata: &[usize],
    config: &BootstrapConfig,
    init: I,
    metric: F,
) -> Result<BootstrapInterval>
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, &[usize]) -> Result<f64> + Sync + Send,
{
    config.validate()?;
    check_nonempty("strata", strata.len())?;
    let identity: Vec<usize> = (0..strata.len()).collect();
    let estimate = metric(&mut init(), &identity)?;
    let groups = group_strata(strata);
    let n = strata.len();
    let replicates: Vec<Result<f64>> = (0..config.n_resamples)
        .into_par_iter()
        .map_init(
            || (init(), Vec::with_capacity(n)),
            |(state, idx), r| {
                let mut rng = Rng::keyed(config.seed, &[r as u64]);
                idx.clear();
                for g in &groups {
                    idx.extend((0..g.len()).map(|_| g[rng.index(g.len())]));
                }
                metric(state, idx)
            },
        )
        .collect();
    let mut values = Vec::with_capacity(replicates.len());
    let mut first_error = None;
    for (r, result) in replicates.into_iter().enumerate() {
        match result {
            Ok(v) if v.is_finite() => values.push(v),
            Ok(v) => {
                first_error.get_or_insert(MetricsError::NonFinite {
                    what: "metric value of resample",
                    at: Location::Index(r),
                    value: v,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if values.is_empty() {
        return Err(MetricsError::NoValidReplicates {
            n_resamples: config.n_resamples,
            first: Box::new(first_error.unwrap_or(MetricsError::Empty { what: "replicates" })),
        });
    }
    let k = values.len() as f64;
    let mean = values.iter().sum::<f64>() / k;
    let std_error = if values.len() > 1 {
        (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (k - 1.0)).sqrt()
    } else {
        0.0
    };
    values.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - config.level;
    Ok(BootstrapInterval {
        estimate,
        lower: percentile(&values, alpha / 2.0),
        upper: percentile(&values, 1.0 - alpha / 2.0),
        level: config.level,
        std_error,
        n_resamples: config.n_resamples,
        n_valid: values.len(),
        n_skipped: config.n_resamples - values.len(),
        seed: config.seed,
    })
}

/// Stratified bootstrap of any metric: the generic form.
///
/// `strata[i]` is the stratum of sample `i` (its class, say); `metric` receives the sample
/// indices of one resample (with repetitions; on the full data, `0..n`) and computes the
/// metric on them. The full-data estimate must be defined; resamples where `metric` fails
/// or returns a non-finite value are skipped and counted in
/// [`BootstrapInterval::n_skipped`].
///
/// # Shapes
/// `strata`: `[n]`; the index slices given to `metric` have length `n`.
///
/// # Errors
/// An invalid config, empty `strata`, the metric's error on the full data, and
/// [`MetricsError::NoValidReplicates`] when it fails on every resample.
///
/// ```
/// use miram_metrics::{roc_auc, stratified_bootstrap, BootstrapConfig};
/// let y = [0u8, 0, 1, 1, 0, 1, 0, 1];
/// let s = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.5, 0.6];
/// let strata: Vec<usize> = y.iter().map(|&v| v as usize).collect();
/// let ci = stratified_bootstrap(&strata, &BootstrapConfig::quick(), |idx| {
///     let yy: Vec<u8> = idx.iter().map(|&i| y[i]).collect();
///     let ss: Vec<f64> = idx.iter().map(|&i| s[i]).collect();
///     roc_auc(&yy, &ss)
/// })?;
/// assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
/// assert_eq!(ci.n_valid + ci.n_skipped, 200);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn stratified_bootstrap<F>(
    strata: &[usize],
    config: &BootstrapConfig,
    metric: F,
) -> Result<BootstrapInterval>
where
    F: Fn(&[usize]) -> Result<f64> + Sync + Send,
{
    run(strata, config, || (), |_, idx| metric(idx))
}

/// Bootstrap of a binary metric, stratified on the label: `metric(y, s)` is called on the
/// resampled labels and scores.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// Invalid inputs (as [`crate::roc_auc`]) and the errors of [`stratified_bootstrap`].
///
/// ```
/// use miram_metrics::{bootstrap_binary, roc_auc, BootstrapConfig};
/// let y = [0u8, 0, 1, 1, 0, 1, 0, 1];
/// let s = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.5, 0.6];
/// let ci = bootstrap_binary(&y, &s, &BootstrapConfig::quick(), roc_auc)?;
/// assert_eq!(ci.estimate, roc_auc(&y, &s)?);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn bootstrap_binary<L, F>(
    y_true: &[L],
    y_score: &[f64],
    config: &BootstrapConfig,
    metric: F,
) -> Result<BootstrapInterval>
where
    L: BinaryLabel,
    F: Fn(&[L], &[f64]) -> Result<f64> + Sync + Send,
{
    let labels = binary_inputs(y_true, y_score)?;
    let strata: Vec<usize> = labels.iter().map(|&b| usize::from(b)).collect();
    run(
        &strata,
        config,
        || {
            (
                Vec::with_capacity(y_true.len()),
                Vec::with_capacity(y_true.len()),
            )
        },
        |(yy, ss): &mut (Vec<L>, Vec<f64>), idx| {
            yy.clear();
            ss.clear();
            yy.extend(idx.iter().map(|&i| y_true[i]));
            ss.extend(idx.iter().map(|&i| y_score[i]));
            metric(yy, ss)
        },
    )
}

/// Bootstrap of a multiclass metric, stratified on the class: `metric(y, p)` is called on
/// the resampled labels and the matching rows of `y_prob`.
///
/// # Shapes
/// `y_true`: `[n]` in `0..n_classes`; `y_prob`: `[n, n_classes]` row-major.
///
/// # Errors
/// Invalid inputs (as [`crate::roc_auc_ovr`], without its probability check) and the
/// errors of [`stratified_bootstrap`].
pub fn bootstrap_multiclass<F>(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
    config: &BootstrapConfig,
    metric: F,
) -> Result<BootstrapInterval>
where
    F: Fn(&[usize], &[f64]) -> Result<f64> + Sync + Send,
{
    multiclass_inputs(y_true, y_prob, n_classes)?;
    run(
        y_true,
        config,
        || {
            (
                Vec::with_capacity(y_true.len()),
                Vec::with_capacity(y_prob.len()),
            )
        },
        |(yy, pp): &mut (Vec<usize>, Vec<f64>), idx| {
            yy.clear();
            pp.clear();
            for &i in idx {
                yy.push(y_true[i]);
                pp.extend_from_slice(&y_prob[i * n_classes..(i + 1) * n_classes]);
            }
            metric(yy, pp)
        },
    )
}

/// Bootstrap of a multilabel metric, stratified on the label combination (each distinct
/// multi-hot row is a stratum): `metric(y, s)` is called on the resampled rows.
///
/// # Shapes
/// `y_true`, `y_score`: `[n, n_labels]` row-major.
///
/// # Errors
/// Invalid inputs (as [`crate::multilabel_roc_auc`]) and the errors of
/// [`stratified_bootstrap`].
pub fn bootstrap_multilabel<L, F>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
    config: &BootstrapConfig,
    metric: F,
) -> Result<BootstrapInterval>
where
    L: BinaryLabel,
    F: Fn(&[L], &[f64]) -> Result<f64> + Sync + Send,
{
    let (labels, n) = multilabel_inputs(y_true, y_score, n_labels)?;
    let mut ids: HashMap<&[bool], usize> = HashMap::new();
    let strata: Vec<usize> = labels
        .chunks_exact(n_labels)
        .map(|row| {
            let next = ids.len();
            *ids.entry(row).or_insert(next)
        })
        .collect();
    debug_assert_eq!(strata.len(), n);
    run(
        &strata,
        config,
        || {
            (
                Vec::with_capacity(y_true.len()),
                Vec::with_capacity(y_score.len()),
            )
        },
        |(yy, ss): &mut (Vec<L>, Vec<f64>), idx| {
            yy.clear();
            ss.clear();
            for &i in idx {
                yy.extend_from_slice(&y_true[i * n_labels..(i + 1) * n_labels]);
                ss.extend_from_slice(&y_score[i * n_labels..(i + 1) * n_labels]);
            }
            metric(yy, ss)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 97.5]) == [1.075, 3.925]
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((percentile(&v, 0.975) - 3.925).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 0.5), 5.0);
    }

    #[test]
    fn strata_keep_first_appearance_order() {
        assert_eq!(
            group_strata(&[7, 3, 7, 1]),
            vec![vec![0, 2], vec![1], vec![3]]
        );
    }

    #[test]
    fn resamples_keep_stratum_counts() {
        let strata = [0, 0, 0, 1, 1, 2, 0, 1];
        let cfg = BootstrapConfig {
            n_resamples: 50,
            level: 0.9,
            seed: 3,
        };
        let ci = stratified_bootstrap(&strata, &cfg, |idx| {
            let mut counts = [0usize; 3];
            for &i in idx {
                counts[strata[i]] += 1;
            }
            if counts == [4, 3, 1] {
                Ok(1.0)
            } else {
                Err(MetricsError::Empty {
                    what: "wrong counts",
                })
            }
        })
        .unwrap();
        assert_eq!((ci.n_valid, ci.n_skipped), (50, 0));
    }

    #[test]
    fn undefined_replicates_are_counted() {
        // The metric is undefined whenever sample 0 is drawn into the resample.
        let strata = [0usize; 6];
        let cfg = BootstrapConfig {
            n_resamples: 300,
            level: 0.95,
            seed: 1,
        };
        let ci = stratified_bootstrap(&strata, &cfg, |idx| {
            if idx.len() == 6 && idx.iter().zip(0..).all(|(&a, b)| a == b) {
                Ok(0.5) // the full data
            } else if idx.contains(&0) {
                Err(MetricsError::Empty { what: "sample 0" })
            } else {
                Ok(idx.iter().sum::<usize>() as f64)
            }
        })
        .unwrap();
        // P(sample 0 absent from 6 draws) = (5/6)^6 = 0.33.
        assert!(ci.n_skipped > 150 && ci.n_skipped < 250, "{ci:?}");
        assert_eq!(ci.n_valid + ci.n_skipped, 300);
        let all_fail = stratified_bootstrap(&strata, &cfg, |idx| {
            if idx.iter().zip(0..).all(|(&a, b)| a == b) {
                Ok(0.5)
            } else {
                Err(MetricsError::Empty { what: "always" })
            }
        });
        assert!(matches!(
            all_fail,
            Err(MetricsError::NoValidReplicates {
                n_resamples: 300,
                ..
            })
        ));
    }
}
