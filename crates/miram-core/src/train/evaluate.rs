//! Evaluation: per-case predictions (saved as CSV), AP and AUC (macro over classes when there
//! are several) with stratified bootstrap 95% intervals, accuracy, the confusion matrix, ROC
//! and precision-recall curve points, the full scikit-learn-named report of
//! `miram-metrics`, and DeLong's paired test between two runs on the same cases.
//!
//! Small test sets can leave a class without positives (or negatives); its AUC and AP are
//! then undefined, reported per class as such (`null`). The averages say what they are, and
//! a note names the classes concerned:
//! - the macro AP is scikit-learn's `average_precision_score(average="macro")`: the mean
//!   over **every** class, a class without positives counting 0 (as scikit-learn does, with
//!   a warning), computed by `miram_metrics::multilabel_average_precision_sklearn`;
//! - the macro AUC: scikit-learn refuses it when a class has one label only; here it is then
//!   the macro over the classes with both labels, and `averaging` says so and names them
//!   ("AUC macro over the 3 classes with both labels: [A, B, C]"); with no such class it is
//!   `null`. Its bootstrap replicates average over the same classes, and a replicate where
//!   one of them is undefined is skipped and counted (`n_valid`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use miram_cbis_ddsm::loader::{CropDataset, ItemMeta};
use miram_cbis_ddsm::tasks::{Target, TargetKind};
use miram_encoder::VitClassifier;
use miram_metrics::{
    accuracy, argmax_rows, average_precision, binary_report, confusion_matrix, delong_test,
    multiclass_report, multilabel_average_precision_sklearn, multilabel_report,
    precision_recall_curve, roc_auc, roc_curve, stratified_bootstrap, BinaryReport,
    BootstrapConfig, BootstrapInterval, CurvePoints, MulticlassReport, MultilabelReport,
    ReportConfig,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One case's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    /// Which case.
    pub item: ItemMeta,
    /// The target as a vector over the classes (one-hot or multi-hot).
    pub target: Vec<f32>,
    /// Probabilities (softmax for classes, sigmoid for multi-label).
    pub scores: Vec<f64>,
}

/// The predictions of a model on a set of cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// The task name.
    pub task: String,
    /// Multi-label (sigmoid) rather than one class (softmax).
    pub multilabel: bool,
    /// The class names.
    pub class_names: Vec<String>,
    /// One row per case, in dataset order.
    pub rows: Vec<PredictionRow>,
}

/// Runs `model` over every sample of `dataset` (in order, no augmentation).
pub fn predict<D: CropDataset + 'static>(
    model: &VitClassifier,
    dataset: Arc<D>,
    task: &str,
    class_names: &[String],
    batch_size: usize,
    device: &Device,
) -> Result<Predictions> {
    let kind = dataset.target_kind();
    let multilabel = match kind {
        TargetKind::MultiHot(_) => true,
        TargetKind::Classes(_) => false,
        TargetKind::None => {
            return Err(Error::Train(
                "cannot evaluate a dataset without targets".into(),
            ))
        }
    };
    let k = kind.num_outputs();
    let mut rows = Vec::new();
    crate::train::inference::for_each_batch(model, dataset, batch_size, device, |batch, probs| {
        let targets: Vec<Vec<f32>> = match &batch.targets {
            miram_cbis_ddsm::loader::BatchTargets::Classes(t) => t
                .to_vec1::<u32>()?
                .into_iter()
                .map(|c| Target::Class(c).as_vector(k))
                .collect(),
            miram_cbis_ddsm::loader::BatchTargets::MultiHot(t) => t.to_vec2::<f32>()?,
            miram_cbis_ddsm::loader::BatchTargets::None => {
                return Err(Error::Train("the evaluation batch has no targets".into()))
            }
        };
        for ((item, target), scores) in batch.items.into_iter().zip(targets).zip(probs) {
            rows.push(PredictionRow {
                item,
                target,
                scores,
            });
        }
        Ok(())
    })?;
    Ok(Predictions {
        task: task.to_string(),
        multilabel,
        class_names: class_names.to_vec(),
        rows,
    })
}

/// The scores of a batch of images: probabilities, a softmax over the classes or, for a
/// multi-label task, a sigmoid per label.
///
/// # Shapes
/// `images` is `[N, C, H, W]`; returns `N` rows of `K` scores.
pub fn probabilities(
    model: &VitClassifier,
    images: &candle_core::Tensor,
    multilabel: bool,
) -> Result<Vec<Vec<f64>>> {
    let logits = model.forward(images)?;
    let probs = if multilabel {
        candle_nn::ops::sigmoid(&logits)?
    } else {
        candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?
    };
    Ok(probs.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// One row of a predictions CSV: the input file (only in files with a `file` column), the
/// case when known, its target when known, and the scores.
#[derive(Debug, Clone, Copy)]
pub struct CsvRow<'a> {
    /// The input file (`miram predict`).
    pub file: Option<&'a str>,
    /// The case (patient, image folder, abnormality, label), when known.
    pub item: Option<&'a ItemMeta>,
    /// The target over the classes, when known.
    pub target: Option<&'a [f32]>,
    /// One score per class.
    pub scores: &'a [f64],
}

/// The text of a predictions CSV: `file` first when `with_file`, then `patient_id,
/// image_folder, abnormality_id, label`, `target_{class}` and `score_{class}` per class;
/// what a row does not know is left empty.
pub fn predictions_csv<'a>(
    class_names: &[String],
    with_file: bool,
    rows: impl IntoIterator<Item = CsvRow<'a>>,
) -> String {
    let mut out = String::from(if with_file { "file," } else { "" });
    out.push_str("patient_id,image_folder,abnormality_id,label");
    for c in class_names {
        out.push_str(&format!(",{}", csv_field(&format!("target_{c}"))));
    }
    for c in class_names {
        out.push_str(&format!(",{}", csv_field(&format!("score_{c}"))));
    }
    out.push('\n');
    for r in rows {
        if with_file {
            out.push_str(&csv_field(r.file.unwrap_or("")));
            out.push(',');
        }
        match r.item {
            Some(item) => out.push_str(&format!(
                "{},{},{},{}",
                csv_field(&item.patient_id),
                csv_field(&item.image_folder),
                item.abnormality_id,
                csv_field(&item.label)
            )),
            None => out.push_str(",,,"),
        }
        match r.target {
            Some(t) => t.iter().for_each(|t| out.push_str(&format!(",{t}"))),
            None => class_names.iter().for_each(|_| out.push(',')),
        }
        for s in r.scores {
            out.push_str(&format!(",{s}"));
        }
        out.push('\n');
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Predictions {
    /// Number of cases.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without cases.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// True for a two-class single-label task (scored on the second class).
    pub fn is_binary(&self) -> bool {
        !self.multilabel && self.class_names.len() == 2
    }

    /// Writes one row per case: `patient_id, image_folder, abnormality_id, label`, then
    /// `target_{class}` and `score_{class}` per class.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let out = predictions_csv(
            &self.class_names,
            false,
            self.rows.iter().map(|r| CsvRow {
                file: None,
                item: Some(&r.item),
                target: Some(&r.target),
                scores: &r.scores,
            }),
        );
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        f.write_all(out.as_bytes()).map_err(|e| Error::io(path, e))
    }

    /// Column `k` of the targets as 0/1 labels.
    pub fn labels_of(&self, k: usize) -> Vec<u8> {
        self.rows
            .iter()
            .map(|r| u8::from(r.target.get(k).copied().unwrap_or(0.0) > 0.5))
            .collect()
    }

    /// Column `k` of the scores.
    pub fn scores_of(&self, k: usize) -> Vec<f64> {
        self.rows
            .iter()
            .map(|r| r.scores.get(k).copied().unwrap_or(f64::NAN))
            .collect()
    }

    /// The classes evaluated one against the rest: the positive class only for a binary task.
    pub fn scored_classes(&self) -> Vec<usize> {
        if self.is_binary() {
            vec![1]
        } else {
            (0..self.class_names.len()).collect()
        }
    }
}

/// How evaluation is done.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Bootstrap resamples of the intervals (0: none).
    pub bootstrap_resamples: usize,
    /// Confidence level.
    pub level: f64,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            bootstrap_resamples: 2000,
            level: 0.95,
            seed: 0,
        }
    }
}

/// One class's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class.
    pub name: String,
    /// Cases of the class (positives).
    pub positives: usize,
    /// ROC AUC of this class against the rest (`None`: undefined, one label only).
    pub auc: Option<f64>,
    /// Average precision (`None`: no positives).
    pub ap: Option<f64>,
}

/// Points of a curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The class it belongs to.
    pub class: String,
    /// x values (false-positive rate, or recall).
    pub x: Vec<f64>,
    /// y values (true-positive rate, or precision).
    pub y: Vec<f64>,
}

/// The full report of `miram-metrics` (scikit-learn's names) of the task's kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FullReport {
    /// A two-class task.
    Binary(BinaryReport),
    /// A single-label task of more classes.
    Multiclass(MulticlassReport),
    /// A multi-label task.
    Multilabel(MultilabelReport),
}

/// The figures of one task on one set of cases (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMetrics {
    /// The task.
    pub task: String,
    /// Cases.
    pub n_cases: usize,
    /// How AUC and AP are averaged: `binary: <class>`, `macro over N classes`, or, when a
    /// class has no positives or one label only, both averages spelled out with the classes.
    pub averaging: String,
    /// ROC AUC (binary, or macro over the classes of `auc_classes`).
    pub auc: Option<f64>,
    /// Its bootstrap interval.
    pub auc_ci: Option<BootstrapInterval>,
    /// The classes the macro AUC averages over (those with both labels among the cases).
    #[serde(default)]
    pub auc_classes: Vec<String>,
    /// Average precision (binary, or scikit-learn's macro over every class).
    pub ap: Option<f64>,
    /// Its bootstrap interval.
    pub ap_ci: Option<BootstrapInterval>,
    /// Classes without positives, counted 0 by the macro AP (scikit-learn's definition).
    #[serde(default)]
    pub ap_zero_classes: Vec<String>,
    /// Accuracy of the arg-max class (single-label tasks).
    pub accuracy: Option<f64>,
    /// Confusion matrix of the arg-max class, rows = true class (single-label tasks).
    pub confusion_matrix: Option<Vec<Vec<u64>>>,
    /// Per-class figures.
    pub per_class: Vec<ClassMetrics>,
    /// ROC curves of the scored classes.
    pub roc_curves: Vec<Curve>,
    /// Precision-recall curves of the scored classes.
    pub pr_curves: Vec<Curve>,
    /// The full report of `miram-metrics` (scikit-learn's names), when every class is defined.
    pub report: Option<FullReport>,
    /// What could not be computed, and why.
    pub notes: Vec<String>,
}

/// The labels and scores of one scored class, column by column.
struct ClassColumn {
    labels: Vec<u8>,
    scores: Vec<f64>,
}

impl ClassColumn {
    /// The column on every case (`idx` `None`) or on the resampled cases `idx`.
    fn on(&self, idx: Option<&[usize]>) -> (Vec<u8>, Vec<f64>) {
        match idx {
            None => (self.labels.clone(), self.scores.clone()),
            Some(ix) => (
                ix.iter().map(|&i| self.labels[i]).collect(),
                ix.iter().map(|&i| self.scores[i]).collect(),
            ),
        }
    }
}

/// The headline AUC: the binary AUC of the one scored column, or the mean of the columns'
/// AUCs over the fixed set `auc_columns`; an error when one of them is undefined.
fn headline_auc(
    columns: &[ClassColumn],
    auc_columns: &[usize],
    idx: Option<&[usize]>,
) -> miram_metrics::Result<f64> {
    if auc_columns.is_empty() {
        return Err(miram_metrics::MetricsError::Empty {
            what: "classes with both labels",
        });
    }
    let mut sum = 0.0;
    for &c in auc_columns {
        let (y, s) = columns[c].on(idx);
        sum += roc_auc(&y, &s)?;
    }
    Ok(sum / auc_columns.len() as f64)
}

/// The headline AP: the binary AP of a single scored column, or scikit-learn's macro AP over
/// every column (a column without positives counts 0), with those columns.
fn headline_ap(
    columns: &[ClassColumn],
    idx: Option<&[usize]>,
) -> miram_metrics::Result<(f64, Vec<usize>)> {
    if let [col] = columns {
        let (y, s) = col.on(idx);
        return average_precision(&y, &s).map(|v| (v, Vec::new()));
    }
    let k = columns.len();
    let n = idx.map_or(columns[0].labels.len(), <[usize]>::len);
    let (mut y, mut s) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    for r in 0..n {
        let i = idx.map_or(r, |ix| ix[r]);
        for col in columns {
            y.push(col.labels[i]);
            s.push(col.scores[i]);
        }
    }
    multilabel_average_precision_sklearn(&y, &s, k).map(|m| (m.value, m.columns_without_positives))
}

/// Class names of `columns` (indices into `classes`, which index `names`).
fn names_of(names: &[String], classes: &[usize], columns: &[usize]) -> Vec<String> {
    columns.iter().map(|&c| names[classes[c]].clone()).collect()
}

/// The per-class figures and the curves of the scored classes.
struct ClassFigures {
    per_class: Vec<ClassMetrics>,
    roc_curves: Vec<Curve>,
    pr_curves: Vec<Curve>,
}

/// AUC and AP of every class against the rest, and the ROC and PR curves of the scored
/// classes; a scored class whose AUC is undefined gets a note.
fn class_figures(preds: &Predictions, classes: &[usize], notes: &mut Vec<String>) -> ClassFigures {
    let mut out = ClassFigures {
        per_class: Vec::new(),
        roc_curves: Vec::new(),
        pr_curves: Vec::new(),
    };
    for (c, name) in preds.class_names.iter().enumerate() {
        let y = preds.labels_of(c);
        let s = preds.scores_of(c);
        let positives = y.iter().filter(|&&v| v == 1).count();
        let auc = roc_auc(&y, &s).ok();
        let ap = average_precision(&y, &s).ok();
        if classes.contains(&c) {
            if auc.is_none() {
                notes.push(format!(
                    "class {name}: AUC undefined ({positives} positives of {} cases)",
                    y.len()
                ));
            }
            if let Ok(r) = roc_curve(&y, &s, CurvePoints::DropIntermediate) {
                out.roc_curves.push(Curve {
                    class: name.clone(),
                    x: r.fpr,
                    y: r.tpr,
                });
            }
            if let Ok(r) = precision_recall_curve(&y, &s, CurvePoints::DropIntermediate) {
                out.pr_curves.push(Curve {
                    class: name.clone(),
                    x: r.recall,
                    y: r.precision,
                });
            }
        }
        out.per_class.push(ClassMetrics {
            name: name.clone(),
            positives,
            auc,
            ap,
        });
    }
    out
}

/// The headline AUC and AP, the classes they average over and the notes on what they leave
/// out or count 0.
struct Headline {
    auc: Option<f64>,
    /// Columns (indices into the scored classes) of the AUC average.
    auc_columns: Vec<usize>,
    auc_classes: Vec<String>,
    ap: Option<f64>,
    ap_zero_classes: Vec<String>,
}

fn headline(
    preds: &Predictions,
    classes: &[usize],
    columns: &[ClassColumn],
    notes: &mut Vec<String>,
) -> Headline {
    let n = preds.len();
    // The classes of the AUC average: those with both labels (scikit-learn refuses a macro
    // AUC otherwise; here the average is taken over them and says so).
    let auc_columns: Vec<usize> = (0..columns.len())
        .filter(|&c| roc_auc(&columns[c].labels, &columns[c].scores).is_ok())
        .collect();
    let auc_classes = names_of(&preds.class_names, classes, &auc_columns);
    let auc = headline_auc(columns, &auc_columns, None).ok();
    let (ap, ap_zero_classes) = match headline_ap(columns, None) {
        Ok((v, zero)) => (Some(v), names_of(&preds.class_names, classes, &zero)),
        Err(e) => {
            notes.push(format!("AP undefined: {e}"));
            (None, Vec::new())
        }
    };
    let several = classes.len() > 1;
    if several && !ap_zero_classes.is_empty() && ap.is_some() {
        notes.push(format!(
            "macro AP: {} of {} classes have no positives among the {n} cases and count 0, as in scikit-learn's average_precision_score(average=\"macro\"): {}",
            ap_zero_classes.len(),
            classes.len(),
            ap_zero_classes.join(", ")
        ));
    }
    if several && auc_columns.len() < classes.len() {
        let undefined: Vec<String> = (0..classes.len())
            .filter(|c| !auc_columns.contains(c))
            .map(|c| preds.class_names[classes[c]].clone())
            .collect();
        notes.push(if auc_columns.is_empty() {
            format!(
                "macro AUC undefined: no class has both labels among the {n} cases (scikit-learn's roc_auc_score raises here)"
            )
        } else {
            format!(
                "macro AUC over the {} classes with both labels only ({}); left out, with one label only among the {n} cases: {} (scikit-learn's roc_auc_score raises here)",
                auc_columns.len(),
                auc_classes.join(", "),
                undefined.join(", ")
            )
        });
    }
    Headline {
        auc,
        auc_columns,
        auc_classes,
        ap,
        ap_zero_classes,
    }
}

/// Bootstrap intervals of the headline AUC and AP, stratified on the (first) positive class
/// of each case.
fn intervals(
    preds: &Predictions,
    cfg: &EvalConfig,
    columns: &[ClassColumn],
    h: &Headline,
) -> (Option<BootstrapInterval>, Option<BootstrapInterval>) {
    if cfg.bootstrap_resamples == 0 {
        return (None, None);
    }
    let k = preds.class_names.len();
    let strata: Vec<usize> = preds
        .rows
        .iter()
        .map(|r| {
            if preds.is_binary() {
                usize::from(r.target[1] > 0.5)
            } else {
                r.target.iter().position(|&t| t > 0.5).map_or(k, |c| c)
            }
        })
        .collect();
    let bc = BootstrapConfig {
        n_resamples: cfg.bootstrap_resamples,
        level: cfg.level,
        seed: cfg.seed,
    };
    let ci = |f: &(dyn Fn(&[usize]) -> miram_metrics::Result<f64> + Sync)| {
        stratified_bootstrap(&strata, &bc, f).ok()
    };
    let auc_ci = h
        .auc
        .and_then(|_| ci(&|idx| headline_auc(columns, &h.auc_columns, Some(idx))));
    let ap_ci =
        h.ap.and_then(|_| ci(&|idx| headline_ap(columns, Some(idx)).map(|(v, _)| v)));
    (auc_ci, ap_ci)
}

/// The true class of each case of a single-label task (the first set target).
fn true_classes(preds: &Predictions) -> Vec<usize> {
    preds
        .rows
        .iter()
        .map(|r| r.target.iter().position(|&t| t > 0.5).unwrap_or(0))
        .collect()
}

/// The scores, row-major `[n_cases, n_classes]`.
fn score_matrix(preds: &Predictions) -> Vec<f64> {
    preds
        .rows
        .iter()
        .flat_map(|r| r.scores.iter().copied())
        .collect()
}

/// Accuracy and confusion matrix (rows = true class) of the arg-max class.
type ArgmaxFigures = (f64, Vec<Vec<u64>>);

/// The [`ArgmaxFigures`] of a single-label task through `miram-metrics` (none for a
/// multi-label one).
fn argmax_figures(preds: &Predictions) -> miram_metrics::Result<Option<ArgmaxFigures>> {
    if preds.multilabel {
        return Ok(None);
    }
    let k = preds.class_names.len();
    let y = true_classes(preds);
    let p = argmax_rows(&score_matrix(preds), k)?;
    Ok(Some((accuracy(&y, &p)?, confusion_matrix(&y, &p, k)?)))
}

/// The full report of `miram-metrics` for the task's kind (no intervals).
fn full_report(preds: &Predictions) -> miram_metrics::Result<FullReport> {
    let rc = ReportConfig {
        bootstrap: None,
        ..ReportConfig::default()
    };
    let k = preds.class_names.len();
    Ok(if preds.is_binary() {
        FullReport::Binary(binary_report(
            &preds.labels_of(1),
            &preds.scores_of(1),
            &rc,
        )?)
    } else if preds.multilabel {
        let y: Vec<u8> = preds
            .rows
            .iter()
            .flat_map(|r| r.target.iter().map(|&t| u8::from(t > 0.5)))
            .collect();
        FullReport::Multilabel(multilabel_report(&y, &score_matrix(preds), k, &rc)?)
    } else {
        FullReport::Multiclass(multiclass_report(
            &true_classes(preds),
            &score_matrix(preds),
            k,
            &rc,
        )?)
    })
}

/// How AUC and AP are averaged, in words (see [`TaskMetrics::averaging`]).
fn averaging(preds: &Predictions, k_scored: usize, h: &Headline) -> String {
    if preds.is_binary() {
        return format!("binary: {}", preds.class_names[1]);
    }
    if h.ap_zero_classes.is_empty() && h.auc_columns.len() == k_scored {
        return format!("macro over {k_scored} classes");
    }
    let ap_part = if h.ap_zero_classes.is_empty() {
        format!("AP macro over {k_scored} classes")
    } else {
        format!(
            "AP macro over {k_scored} classes, {} without positives counted 0 as in scikit-learn: [{}]",
            h.ap_zero_classes.len(),
            h.ap_zero_classes.join(", ")
        )
    };
    let auc_part = match h.auc_columns.len() {
        0 => "AUC undefined (no class has both labels)".to_string(),
        m if m == k_scored => format!("AUC macro over {k_scored} classes"),
        m => format!(
            "AUC macro over the {m} of {k_scored} classes with both labels: [{}]",
            h.auc_classes.join(", ")
        ),
    };
    format!("{ap_part}; {auc_part}")
}

/// Computes every figure of `preds`.
pub fn evaluate(preds: &Predictions, cfg: &EvalConfig) -> Result<TaskMetrics> {
    if preds.is_empty() {
        return Err(Error::Train(format!(
            "no cases to evaluate for {}",
            preds.task
        )));
    }
    let classes = preds.scored_classes();
    let mut notes = Vec::new();
    let figures = class_figures(preds, &classes, &mut notes);
    let columns: Vec<ClassColumn> = classes
        .iter()
        .map(|&c| ClassColumn {
            labels: preds.labels_of(c),
            scores: preds.scores_of(c),
        })
        .collect();
    let h = headline(preds, &classes, &columns, &mut notes);
    let (auc_ci, ap_ci) = intervals(preds, cfg, &columns, &h);
    let (accuracy, confusion_matrix) = match argmax_figures(preds) {
        Ok(f) => f.unzip(),
        Err(e) => {
            notes.push(format!("accuracy and confusion matrix unavailable: {e}"));
            (None, None)
        }
    };
    let report = full_report(preds)
        .map_err(|e| notes.push(format!("full report unavailable: {e}")))
        .ok();
    Ok(TaskMetrics {
        task: preds.task.clone(),
        n_cases: preds.len(),
        averaging: averaging(preds, classes.len(), &h),
        auc: h.auc,
        auc_ci,
        auc_classes: h.auc_classes,
        ap: h.ap,
        ap_ci,
        ap_zero_classes: h.ap_zero_classes,
        accuracy,
        confusion_matrix,
        per_class: figures.per_class,
        roc_curves: figures.roc_curves,
        pr_curves: figures.pr_curves,
        report,
        notes,
    })
}

/// DeLong's paired test of one class between two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassComparison {
    /// The class.
    pub class: String,
    /// AUC of run A.
    pub auc_a: f64,
    /// AUC of run B.
    pub auc_b: f64,
    /// DeLong's z.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// DeLong's paired test between two runs on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The task.
    pub task: String,
    /// One test per scored class where both labels occur.
    pub per_class: Vec<ClassComparison>,
    /// The headline p-value: the class's for a binary task; for several classes the smallest
    /// Holm-adjusted p-value (a test that any class differs).
    pub p_value: Option<f64>,
    /// How `p_value` was obtained.
    pub method: String,
    /// Classes that could not be tested, and why.
    pub notes: Vec<String>,
}

/// Compares run `a` with run `b` (the same cases in the same order).
pub fn compare(a: &Predictions, b: &Predictions) -> Result<Comparison> {
    if a.len() != b.len() || a.class_names != b.class_names {
        return Err(Error::Train(format!(
            "cannot compare {} cases of {:?} with {} cases of {:?}",
            a.len(),
            a.class_names,
            b.len(),
            b.class_names
        )));
    }
    for (i, (ra, rb)) in a.rows.iter().zip(&b.rows).enumerate() {
        if ra.item.patient_id != rb.item.patient_id
            || ra.item.image_folder != rb.item.image_folder
            || ra.item.abnormality_id != rb.item.abnormality_id
            || ra.target != rb.target
        {
            return Err(Error::Train(format!(
                "case {i} differs between the two runs ({:?} vs {:?})",
                ra.item, rb.item
            )));
        }
    }
    let mut per_class = Vec::new();
    let mut notes = Vec::new();
    for c in a.scored_classes() {
        let y = a.labels_of(c);
        match delong_test(&y, &a.scores_of(c), &b.scores_of(c)) {
            Ok(t) => per_class.push(ClassComparison {
                class: a.class_names[c].clone(),
                auc_a: t.auc_a,
                auc_b: t.auc_b,
                z: t.z,
                p_value: t.p_value,
            }),
            Err(e) => notes.push(format!("class {}: {e}", a.class_names[c])),
        }
    }
    let (p_value, method) = if a.is_binary() {
        (
            per_class.first().map(|c| c.p_value),
            "DeLong paired test".to_string(),
        )
    } else {
        let mut ps: Vec<f64> = per_class.iter().map(|c| c.p_value).collect();
        ps.sort_by(f64::total_cmp);
        let m = ps.len();
        // Holm: the smallest adjusted p-value is m * p_(1), capped at 1.
        (
            ps.first().map(|p| (p * m as f64).min(1.0)),
            format!("min Holm-adjusted DeLong p over {m} classes"),
        )
    };
    Ok(Comparison {
        task: a.task.clone(),
        per_class,
        p_value,
        method,
        notes,
    })
}
