//! Evaluation metrics of MIRAM, computed exactly as scikit-learn computes them, with the
//! statistics medical-imaging papers report: bootstrap confidence intervals and DeLong's
//! variance and paired test of AUCs.
//!
//! The crate is pure Rust and knows nothing of tensors: slices in, numbers out. The binary
//! metrics also take `ndarray` 1-D arrays and views ([`Values`]; a strided view is copied
//! once into a contiguous slice). Matrices are row-major flat slices with their column count
//! (`y_prob: &[f64]` of `n * n_classes` values), documented in each function's `# Shapes`
//! section.
//!
//! | task | functions | scikit-learn |
//! |---|---|---|
//! | binary | [`roc_auc`], [`average_precision`], [`roc_curve`], [`precision_recall_curve`] | `roc_auc_score`, `average_precision_score`, `roc_curve`, `precision_recall_curve` |
//! | decisions | [`BinaryConfusion`], [`sensitivity_specificity`], [`youden_point`], [`confusion_matrix`], [`accuracy`], [`balanced_accuracy`], [`argmax_rows`] | `confusion_matrix`, `accuracy_score`, `balanced_accuracy_score` |
//! | multiclass | [`roc_auc_ovr`], [`average_precision_ovr`] and their `_per_class` forms | `roc_auc_score(multi_class="ovr")`, `average_precision_score(label_binarize(y))` |
//! | multilabel | [`multilabel_roc_auc`], [`multilabel_average_precision`] and `_per_label`; [`multilabel_average_precision_sklearn`] (absent columns count 0, named) | `roc_auc_score(Y, S)`, `average_precision_score(Y, S)` |
//! | uncertainty | [`delong`], [`delong_ci`], [`delong_test`], [`stratified_bootstrap`], [`bootstrap_binary`], [`bootstrap_multiclass`], [`bootstrap_multilabel`] | the DeLong reference implementation the fixtures were computed with (`fixtures/README.md`) |
//! | probes | [`knn_predict_proba`] ([`KnnConfig`]), [`LogisticProbe`] ([`LogisticConfig`]) on frozen features with [`ProbeLabels`] | `KNeighborsClassifier(algorithm="brute").predict_proba`, `make_pipeline(StandardScaler(), LogisticRegression(C))` (with `OneVsRestClassifier` for more classes or labels) |
//! | reports | [`binary_report`], [`multiclass_report`], [`multilabel_report`] (serde `Serialize`) | key names of scikit-learn |
//!
//! Undefined metrics are errors ([`MetricsError`]), never numbers: one class only, NaN or
//! infinite scores, length mismatches, empty input. Where scikit-learn returns a number with
//! a warning, this crate refuses: a macro average over a class without positives (sklearn
//! counts its AP as 0), an AUC with one class (sklearn raises too). The AP of a problem with
//! positives only is 1, as in scikit-learn, since it is defined.
//!
//! Ranking metrics sort once (O(n log n)); the DeLong statistics use the midrank algorithm
//! of Sun and Xu (2014), also O(n log n).
//!
//! # Choices, where scikit-learn leaves room
//! - A binary prediction at threshold `t` is `score >= t` (the convention of `roc_curve`).
//! - [`roc_curve`] returns scikit-learn 1.3+'s layout (first threshold `+inf`, point
//!   `(0, 0)`); [`CurvePoints::DropIntermediate`] is its `drop_intermediate=True`.
//!   [`precision_recall_curve`] returns all thresholds by default, as scikit-learn does.
//! - The AP needs a positive sample (with none, scikit-learn warns and gives 0); a macro AP
//!   over classes or labels refuses a column without positives, naming it, while the
//!   prevalence-weighted average gives it weight 0 (scikit-learn's value).
//!   [`multilabel_average_precision_sklearn`] gives scikit-learn's macro value (such a
//!   column counts 0) together with the list of those columns, for callers that must
//!   report scikit-learn's number and say which columns it zeroed.
//! - The multiclass one-vs-rest AUC keeps scikit-learn's checks: rows must sum to 1 and
//!   every class must occur in `y_true`.
//! - The Youden point is searched over the distinct scores; ties go to the highest threshold.
//! - DeLong intervals are Wald intervals on the AUC scale, not clipped to [0, 1] (as the
//!   reference); [`DelongInterval::clamped`] clips them.
//! - Bootstrap intervals are percentile intervals with `numpy.percentile`'s interpolation.
//! - The kNN probe breaks ties in distance by the lower training index (scikit-learn's
//!   `argpartition` is not stable). The linear probe is fitted by Newton's method to the
//!   exact optimum of scikit-learn's objective; scikit-learn's default lbfgs stops on a
//!   relative-objective test and can end up to ~1e-5 from it (see [`LogisticProbe`]).
//!
//! ```
//! use miram_metrics::{average_precision, delong_test, roc_auc, Average, roc_auc_ovr};
//!
//! let y = [0u8, 0, 1, 1, 0, 1, 0, 1];
//! let model_a = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.5, 0.9];
//! let model_b = [0.3, 0.2, 0.4, 0.6, 0.5, 0.55, 0.45, 0.7];
//! assert_eq!(roc_auc(&y, &model_a)?, 0.875);
//! assert!(average_precision(&y, &model_a)? > 0.8);
//!
//! // Paired DeLong test of the two models on the same cases.
//! let t = delong_test(&y, &model_a, &model_b)?;
//! assert!((0.0..=1.0).contains(&t.p_value));
//!
//! // Undefined metrics are errors.
//! assert!(roc_auc(&[1u8, 1], &[0.2, 0.3]).is_err());
//! assert!(roc_auc(&[0u8, 1], &[0.2, f64::NAN]).is_err());
//!
//! // Multiclass one-vs-rest: rows of probabilities, row-major.
//! let y = [0, 1, 2, 1];
//! let p = [0.7, 0.2, 0.1, 0.2, 0.5, 0.3, 0.1, 0.3, 0.6, 0.3, 0.4, 0.3];
//! assert_eq!(roc_auc_ovr(&y, &p, 3, Average::Macro)?, 1.0);
//! # Ok::<(), miram_metrics::MetricsError>(())
//! ```
#![warn(missing_docs)]

mod binary;
mod bootstrap;
mod columns;
mod delong;
mod error;
mod labels;
mod multiclass;
mod multilabel;
mod probe;
mod ranking;
mod report;
mod special;
mod threshold;
mod values;

pub use binary::{
    average_precision, precision_recall_curve, roc_auc, roc_curve, CurvePoints,
    PrecisionRecallCurve, RocCurve,
};
pub use bootstrap::{
    bootstrap_binary, bootstrap_multiclass, bootstrap_multilabel, stratified_bootstrap,
    BootstrapConfig, BootstrapInterval,
};
pub use columns::Average;
pub use delong::{delong, delong_ci, delong_test, DelongAuc, DelongInterval, DelongTest};
pub use error::{Location, MetricsError, Result};
pub use labels::BinaryLabel;
pub use multiclass::{
    average_precision_ovr, average_precision_ovr_per_class, flatten_rows, roc_auc_ovr,
    roc_auc_ovr_per_class,
};
pub use multilabel::{
    multilabel_average_precision, multilabel_average_precision_per_label,
    multilabel_average_precision_sklearn, multilabel_roc_auc, multilabel_roc_auc_per_label,
    SklearnMacroAveragePrecision,
};
pub use probe::{
    knn_predict_proba, KnnConfig, KnnMetric, LogisticConfig, LogisticProbe, ProbeKind, ProbeLabels,
    ProbeModel,
};
pub use report::{
    binary_report, multiclass_report, multilabel_report, BinaryReport, BootstrapIntervals,
    MulticlassReport, MultilabelReport, ReportConfig,
};
pub use special::{erfc, normal_cdf, normal_quantile, two_sided_p_value};
pub use threshold::{
    accuracy, argmax_rows, balanced_accuracy, confusion_matrix, sensitivity_specificity,
    youden_point, BinaryConfusion, OperatingPoint,
};
pub use values::Values;
