//! One report per task, with scikit-learn's key names, for the command line
//! (`miram metrics --task binary|multiclass|multilabel --input FILE.csv` prints it as JSON)
//! and for papers: the headline metrics, their DeLong and bootstrap intervals, and the
//! threshold metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::binary::{average_precision, roc_auc};
use crate::bootstrap::{
    bootstrap_binary, bootstrap_multiclass, bootstrap_multilabel, BootstrapConfig,
    BootstrapInterval,
};
use crate::columns::Average;
use crate::delong::{delong_ci, DelongInterval};
use crate::error::{MetricsError, Result};
use crate::labels::{
    binary_inputs, check_level, check_threshold, multiclass_inputs, multilabel_inputs, BinaryLabel,
};
use crate::multiclass::{
    average_precision_ovr, average_precision_ovr_per_class, roc_auc_ovr, roc_auc_ovr_per_class,
};
use crate::multilabel::{
    multilabel_average_precision, multilabel_average_precision_per_label, multilabel_roc_auc,
    multilabel_roc_auc_per_label,
};
use crate::threshold::{
    argmax_rows, balanced_accuracy_of, confusion_matrix, youden_point, BinaryConfusion,
    OperatingPoint,
};
use crate::values::Values;

/// Settings of the reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportConfig {
    /// Decision threshold of the binary and multilabel threshold metrics: `score >= threshold`
    /// is positive.
    pub threshold: f64,
    /// Confidence level of the DeLong interval of the binary AUC.
    pub delong_level: f64,
    /// Bootstrap intervals of the headline metrics, when set.
    pub bootstrap: Option<BootstrapConfig>,
}

impl Default for ReportConfig {
    /// Threshold 0.5, 95% DeLong interval, no bootstrap.
    fn default() -> Self {
        Self {
            threshold: 0.5,
            delong_level: 0.95,
            bootstrap: None,
        }
    }
}

impl ReportConfig {
    /// The default plus bootstrap intervals with 2000 resamples at 95%, seed 0: what a paper
    /// reports.
    pub fn paper() -> Self {
        Self {
            bootstrap: Some(BootstrapConfig::default()),
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        check_threshold(self.threshold)?;
        check_level(self.delong_level)
    }
}

/// A metric of resampled multiclass data, as the report bootstraps it.
type MulticlassMetric<'a> = dyn Fn(&[usize], &[f64]) -> Result<f64> + Sync + 'a;

/// A metric of resampled multilabel data, as the report bootstraps it.
type MultilabelMetric<'a, L> = dyn Fn(&[L], &[f64]) -> Result<f64> + Sync + 'a;

/// Bootstrap intervals by metric name.
pub type BootstrapIntervals = BTreeMap<&'static str, BootstrapInterval>;

/// The report of a binary task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinaryReport {
    /// `"binary"`.
    pub task: &'static str,
    /// Number of samples.
    pub n_samples: usize,
    /// Number of positives.
    pub n_positive: usize,
    /// Number of negatives.
    pub n_negative: usize,
    /// ROC AUC (ties as half).
    pub roc_auc: f64,
    /// Average precision (step-wise).
    pub average_precision: f64,
    /// DeLong interval of the AUC; `None` (JSON `null`) with fewer than two samples of a
    /// class, where the DeLong variance is undefined.
    pub roc_auc_delong: Option<DelongInterval>,
    /// Decision threshold of the following metrics (`score >= threshold` is positive).
    pub threshold: f64,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// Balanced accuracy at the threshold.
    pub balanced_accuracy: f64,
    /// `[[tn, fp], [fn, tp]]` at the threshold.
    pub confusion_matrix: [[u64; 2]; 2],
    /// True-positive rate at the threshold.
    pub sensitivity: f64,
    /// True-negative rate at the threshold.
    pub specificity: f64,
    /// The operating point that maximises Youden's J.
    pub youden: OperatingPoint,
    /// Bootstrap intervals (`roc_auc`, `average_precision`, `accuracy`, `balanced_accuracy`,
    /// `sensitivity`, `specificity`), when asked for; omitted from JSON otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bootstrap: BootstrapIntervals,
}

/// The report of a binary task.
///
/// # Shapes
/// `y_true`: `[n]`, labels `0`/`1`; `y_score`: `[n]`.
///
/// # Errors
/// Invalid inputs, a one-class `y_true`, an invalid config, and the bootstrap's errors.
///
/// ```
/// use miram_metrics::{binary_report, ReportConfig};
/// let y = [0u8, 0, 1, 1, 0, 1];
/// let s = [0.1, 0.6, 0.35, 0.8, 0.2, 0.7];
/// let r = binary_report(&y, &s, &ReportConfig::default())?;
/// assert_eq!(r.confusion_matrix, [[2, 1], [1, 2]]);
/// assert_eq!(r.youden.threshold, 0.7);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub fn binary_report<L: BinaryLabel>(
    y_true: &(impl Values<L> + ?Sized),
    y_score: &(impl Values<f64> + ?Sized),
    config: &ReportConfig,
) -> Result<BinaryReport> {
    let (y_true, y_score) = (y_true.values(), y_score.values());
    let (y_true, y_score) = (&*y_true, &*y_score);
    config.validate()?;
    let labels = binary_inputs(y_true, y_score)?;
    let roc_auc_value = roc_auc(y_true, y_score)?;
    let c = BinaryConfusion::at_threshold(y_true, y_score, config.threshold)?;
    let roc_auc_delong = match delong_ci(y_true, y_score, config.delong_level) {
        Ok(ci) => Some(ci),
        Err(MetricsError::TooFewSamples { .. }) => None,
        Err(e) => return Err(e),
    };
    let threshold = config.threshold;
    let mut bootstrap = BTreeMap::new();
    if let Some(b) = &config.bootstrap {
        bootstrap.insert("roc_auc", bootstrap_binary(y_true, y_score, b, roc_auc)?);
        bootstrap.insert(
            "average_precision",
            bootstrap_binary(y_true, y_score, b, average_precision)?,
        );
        let at = |f: fn(&BinaryConfusion) -> Result<f64>| {
            bootstrap_binary(y_true, y_score, b, move |y, s| {
                f(&BinaryConfusion::at_threshold(y, s, threshold)?)
            })
        };
        bootstrap.insert("accuracy", at(|c| Ok(c.accuracy()))?);
        bootstrap.insert("balanced_accuracy", at(|c| Ok(c.balanced_accuracy()))?);
        bootstrap.insert("sensitivity", at(BinaryConfusion::sensitivity)?);
        bootstrap.insert("specificity", at(BinaryConfusion::specificity)?);
    }
    let n_positive = labels.iter().filter(|&&y| y).count();
    Ok(BinaryReport {
        task: "binary",
        n_samples: labels.len(),
        n_positive,
        n_negative: labels.len() - n_positive,
        roc_auc: roc_auc_value,
        average_precision: average_precision(y_true, y_score)?,
        roc_auc_delong,
        threshold,
        accuracy: c.accuracy(),
        balanced_accuracy: c.balanced_accuracy(),
        confusion_matrix: c.matrix(),
        sensitivity: c.sensitivity()?,
        specificity: c.specificity()?,
        youden: youden_point(y_true, y_score)?,
        bootstrap,
    })
}

/// The report of a multiclass task (predictions are the row-wise argmax).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MulticlassReport {
    /// `"multiclass"`.
    pub task: &'static str,
    /// Number of samples.
    pub n_samples: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Samples per class.
    pub support: Vec<u64>,
    /// One-vs-rest ROC AUC, macro average.
    pub roc_auc_ovr_macro: f64,
    /// One-vs-rest ROC AUC, prevalence-weighted average.
    pub roc_auc_ovr_weighted: f64,
    /// Average precision over the binarised labels, macro average.
    pub average_precision_macro: f64,
    /// Average precision over the binarised labels, micro average.
    pub average_precision_micro: f64,
    /// One-vs-rest ROC AUC of each class.
    pub roc_auc_per_class: Vec<f64>,
    /// Average precision of each class.
    pub average_precision_per_class: Vec<f64>,
    /// Accuracy of the argmax predictions.
    pub accuracy: f64,
    /// Balanced accuracy of the argmax predictions.
    pub balanced_accuracy: f64,
    /// Confusion matrix, rows = true class, columns = predicted class.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Bootstrap intervals (`roc_auc_ovr_macro`, `roc_auc_ovr_weighted`,
    /// `average_precision_macro`, `average_precision_micro`, `accuracy`,
    /// `balanced_accuracy`), when asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bootstrap: BootstrapIntervals,
}

/// Accuracy and balanced accuracy of the argmax of `y_prob`.
fn argmax_accuracies(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
) -> Result<(f64, f64, Vec<Vec<u64>>)> {
    let pred = argmax_rows(y_prob, n_classes)?;
    let cm = confusion_matrix(y_true, &pred, n_classes)?;
    let correct: u64 = (0..n_classes).map(|k| cm[k][k]).sum();
    let accuracy = correct as f64 / y_true.len() as f64;
    let balanced = balanced_accuracy_of(&cm);
    Ok((accuracy, balanced, cm))
}

/// The report of a multiclass task.
///
/// # Shapes
/// `y_true`: `[n]` in `0..n_classes`; `y_prob`: `[n, n_classes]` row-major probabilities.
///
/// # Errors
/// As [`roc_auc_ovr`] (every class must be present and rows must sum to 1), an invalid
/// config, and the bootstrap's errors.
pub fn multiclass_report(
    y_true: &[usize],
    y_prob: &[f64],
    n_classes: usize,
    config: &ReportConfig,
) -> Result<MulticlassReport> {
    config.validate()?;
    multiclass_inputs(y_true, y_prob, n_classes)?;
    let roc_auc_per_class = roc_auc_ovr_per_class(y_true, y_prob, n_classes)?;
    let (accuracy, balanced_accuracy, confusion_matrix) =
        argmax_accuracies(y_true, y_prob, n_classes)?;
    let support = confusion_matrix.iter().map(|r| r.iter().sum()).collect();
    let mut bootstrap = BTreeMap::new();
    if let Some(b) = &config.bootstrap {
        let boot = |f: &MulticlassMetric<'_>| bootstrap_multiclass(y_true, y_prob, n_classes, b, f);
        bootstrap.insert(
            "roc_auc_ovr_macro",
            boot(&|y, p| roc_auc_ovr(y, p, n_classes, Average::Macro))?,
        );
        bootstrap.insert(
            "roc_auc_ovr_weighted",
            boot(&|y, p| roc_auc_ovr(y, p, n_classes, Average::Weighted))?,
        );
        bootstrap.insert(
            "average_precision_macro",
            boot(&|y, p| average_precision_ovr(y, p, n_classes, Average::Macro))?,
        );
        bootstrap.insert(
            "average_precision_micro",
            boot(&|y, p| average_precision_ovr(y, p, n_classes, Average::Micro))?,
        );
        bootstrap.insert(
            "accuracy",
            boot(&|y, p| Ok(argmax_accuracies(y, p, n_classes)?.0))?,
        );
        bootstrap.insert(
            "balanced_accuracy",
            boot(&|y, p| Ok(argmax_accuracies(y, p, n_classes)?.1))?,
        );
    }
    Ok(MulticlassReport {
        task: "multiclass",
        n_samples: y_true.len(),
        n_classes,
        support,
        roc_auc_ovr_macro: roc_auc_ovr(y_true, y_prob, n_classes, Average::Macro)?,
        roc_auc_ovr_weighted: roc_auc_ovr(y_true, y_prob, n_classes, Average::Weighted)?,
        average_precision_macro: average_precision_ovr(y_true, y_prob, n_classes, Average::Macro)?,
        average_precision_micro: average_precision_ovr(y_true, y_prob, n_classes, Average::Micro)?,
        roc_auc_per_class,
        average_precision_per_class: average_precision_ovr_per_class(y_true, y_prob, n_classes)?,
        accuracy,
        balanced_accuracy,
        confusion_matrix,
        bootstrap,
    })
}

/// The report of a multilabel task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultilabelReport {
    /// `"multilabel"`.
    pub task: &'static str,
    /// Number of samples.
    pub n_samples: usize,
    /// Number of labels.
    pub n_labels: usize,
    /// Positives per label.
    pub support: Vec<u64>,
    /// ROC AUC, macro average over labels.
    pub roc_auc_macro: f64,
    /// ROC AUC of the flattened matrix.
    pub roc_auc_micro: f64,
    /// Average precision, macro average over labels.
    pub average_precision_macro: f64,
    /// Average precision of the flattened matrix.
    pub average_precision_micro: f64,
    /// ROC AUC of each label.
    pub roc_auc_per_label: Vec<f64>,
    /// Average precision of each label.
    pub average_precision_per_label: Vec<f64>,
    /// Decision threshold of the per-label rates.
    pub threshold: f64,
    /// True-positive rate of each label at the threshold.
    pub sensitivity_per_label: Vec<f64>,
    /// True-negative rate of each label at the threshold.
    pub specificity_per_label: Vec<f64>,
    /// Bootstrap intervals (`roc_auc_macro`, `roc_auc_micro`, `average_precision_macro`,
    /// `average_precision_micro`), when asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bootstrap: BootstrapIntervals,
}

/// The report of a multilabel task (multi-hot targets).
///
/// # Shapes
/// `y_true`: `[n, n_labels]` row-major multi-hot; `y_score`: `[n, n_labels]` row-major.
///
/// # Errors
/// As [`multilabel_roc_auc`] with `Macro` (every label needs both classes), an invalid
/// config, and the bootstrap's errors.
pub fn multilabel_report<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
    config: &ReportConfig,
) -> Result<MultilabelReport> {
    config.validate()?;
    let (labels, n_samples) = multilabel_inputs(y_true, y_score, n_labels)?;
    let roc_auc_per_label = multilabel_roc_auc_per_label(y_true, y_score, n_labels)?;
    let mut support = vec![0u64; n_labels];
    let (mut tp, mut tn) = (vec![0u64; n_labels], vec![0u64; n_labels]);
    for (i, (&y, &s)) in labels.iter().zip(y_score).enumerate() {
        let k = i % n_labels;
        support[k] += u64::from(y);
        let predicted = s >= config.threshold;
        tp[k] += u64::from(y && predicted);
        tn[k] += u64::from(!y && !predicted);
    }
    let n = n_samples as u64;
    let sensitivity_per_label = (0..n_labels)
        .map(|k| tp[k] as f64 / support[k] as f64)
        .collect();
    let specificity_per_label = (0..n_labels)
        .map(|k| tn[k] as f64 / (n - support[k]) as f64)
        .collect();
    let mut bootstrap = BTreeMap::new();
    if let Some(b) = &config.bootstrap {
        let boot =
            |f: &MultilabelMetric<'_, L>| bootstrap_multilabel(y_true, y_score, n_labels, b, f);
        bootstrap.insert(
            "roc_auc_macro",
            boot(&|y, s| multilabel_roc_auc(y, s, n_labels, Average::Macro))?,
        );
        bootstrap.insert(
            "roc_auc_micro",
            boot(&|y, s| multilabel_roc_auc(y, s, n_labels, Average::Micro))?,
        );
        bootstrap.insert(
            "average_precision_macro",
            boot(&|y, s| multilabel_average_precision(y, s, n_labels, Average::Macro))?,
        );
        bootstrap.insert(
            "average_precision_micro",
            boot(&|y, s| multilabel_average_precision(y, s, n_labels, Average::Micro))?,
        );
    }
    Ok(MultilabelReport {
        task: "multilabel",
        n_samples,
        n_labels,
        support,
        roc_auc_macro: multilabel_roc_auc(y_true, y_score, n_labels, Average::Macro)?,
        roc_auc_micro: multilabel_roc_auc(y_true, y_score, n_labels, Average::Micro)?,
        average_precision_macro: multilabel_average_precision(
            y_true,
            y_score,
            n_labels,
            Average::Macro,
        )?,
        average_precision_micro: multilabel_average_precision(
            y_true,
            y_score,
            n_labels,
            Average::Micro,
        )?,
        roc_auc_per_label,
        average_precision_per_label: multilabel_average_precision_per_label(
            y_true, y_score, n_labels,
        )?,
        threshold: config.threshold,
        sensitivity_per_label,
        specificity_per_label,
        bootstrap,
    })
}
