//! Feature evaluations of a frozen encoder, as self-supervised learning libraries offer them:
//! pooled features of every crop of a task's splits, then a k-nearest-neighbour classifier
//! and a linear probe (standardisation + L2 logistic regression, closed-form by Newton's
//! method), both from `miram_metrics::probe` and exact to scikit-learn's. Both are scored
//! like a fine-tuned run ([`evaluate`]): AP and AUC with bootstrap intervals on the test
//! split; the probe's regularisation is chosen on the validation split.
//!
//! Features: a pre-trained encoder (MIRAM or MAE) gives the mean of its patch tokens after
//! its final norm; a fine-tuned classifier its pooled `fc_norm` features (the input of its
//! head). Crops are read in order, without augmentation.
//!
//! Cost: one forward pass over the task's crops, then milliseconds (kNN is a brute-force
//! search; the probe's Newton steps solve systems of the feature width), so the kNN score of
//! the validation split can be tracked during pre-training (`RunOptions::probe`).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::loader::{BatchTargets, CropDataset, ItemMeta, Loader, LoaderConfig};
use miram_cbis_ddsm::tasks::{Target, TargetKind};
use miram_encoder::{VitClassifier, VitEncoder};
use miram_metrics::{knn_predict_proba, KnnConfig, LogisticConfig, LogisticProbe, ProbeLabels};
use serde::{Deserialize, Serialize};

use super::data::TaskData;
use super::evaluate::{evaluate, EvalConfig, PredictionRow, Predictions, TaskMetrics};
use crate::{Error, Result};

/// Where features come from.
#[derive(Debug, Clone, Copy)]
pub enum FeatureSource<'a> {
    /// A pre-trained encoder: the mean of the patch tokens after the final norm.
    Encoder(&'a VitEncoder),
    /// A fine-tuned classifier: its pooled `fc_norm` features, the input of its head.
    Classifier(&'a VitClassifier),
}

impl FeatureSource<'_> {
    fn in_chans(&self) -> usize {
        match self {
            Self::Encoder(e) => e.config().in_chans,
            Self::Classifier(c) => c.config().encoder.in_chans,
        }
    }

    /// The pooled features of a batch.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns `[N, D]`
    pub fn features(&self, imgs: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Encoder(e) => {
                let x = e.forward_features(imgs)?; // [n, 1 + l, d]
                let l = x.dim(1)? - 1;
                x.narrow(1, 1, l)?.mean(1)?
            }
            Self::Classifier(c) => c.features(imgs, None)?,
        }
        .detach())
    }
}

/// The features of one split, with what each row is.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Feature width.
    pub dim: usize,
    /// `[n, dim]`, row-major.
    pub values: Vec<f64>,
    /// The case of each row.
    pub items: Vec<ItemMeta>,
    /// The target of each row as a vector over the classes (one-hot or multi-hot).
    pub targets: Vec<Vec<f32>>,
}

impl Features {
    /// Rows.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The features of every crop of `dataset`, in order, without augmentation.
pub fn extract_features<D: CropDataset + 'static>(
    source: FeatureSource<'_>,
    dataset: Arc<D>,
    batch_size: usize,
    device: &Device,
) -> Result<Features> {
    let k = dataset.target_kind().num_outputs();
    let mut lc = LoaderConfig::eval(batch_size.max(1));
    lc.channels = source.in_chans();
    lc.workers = 1;
    let loader = Loader::new(dataset, AugmentConfig::none(), lc, device.clone())?;
    let mut out = Features {
        dim: 0,
        values: Vec::new(),
        items: Vec::new(),
        targets: Vec::new(),
    };
    for batch in loader.epoch(0) {
        let batch = batch?;
        let f = source.features(&batch.images)?;
        out.dim = f.dim(1)?;
        out.values
            .extend(f.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
        let targets: Vec<Vec<f32>> = match &batch.targets {
            BatchTargets::Classes(t) => t
                .to_vec1::<u32>()?
                .into_iter()
                .map(|c| Target::Class(c).as_vector(k))
                .collect(),
            BatchTargets::MultiHot(t) => t.to_vec2::<f32>()?,
            BatchTargets::None => Vec::new(),
        };
        out.targets.extend(targets);
        out.items.extend(batch.items);
    }
    Ok(out)
}

/// The labels of features for the probes: a class index per row, or the 0/1 label matrix.
enum OwnedLabels {
    Classes(Vec<usize>, usize),
    MultiLabel(Vec<u8>, usize),
}

impl OwnedLabels {
    fn of(f: &Features, kind: &TargetKind, split: &str) -> Result<Self> {
        let k = kind.num_outputs();
        if f.targets.len() != f.len() {
            return Err(Error::Train(format!(
                "the {split} split has no targets to probe with"
            )));
        }
        Ok(match kind {
            TargetKind::Classes(_) => Self::Classes(
                f.targets
                    .iter()
                    .map(|t| {
                        t.iter().position(|&v| v > 0.5).ok_or_else(|| {
                            Error::Train(format!("a {split} target without a class"))
                        })
                    })
                    .collect::<Result<_>>()?,
                k,
            ),
            TargetKind::MultiHot(_) => Self::MultiLabel(
                f.targets
                    .iter()
                    .flat_map(|t| t.iter().map(|&v| u8::from(v > 0.5)))
                    .collect(),
                k,
            ),
            TargetKind::None => {
                return Err(Error::Train(format!(
                    "the {split} split has no targets to probe with"
                )))
            }
        })
    }

    fn view(&self) -> ProbeLabels<'_> {
        match self {
            Self::Classes(y, n) => ProbeLabels::Classes { y, n_classes: *n },
            Self::MultiLabel(y, n) => ProbeLabels::MultiLabel { y, n_labels: *n },
        }
    }
}

/// How the probes are run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The k-nearest-neighbour classifier (k, metric); a training split of fewer than `k`
    /// crops uses all of them.
    pub knn: KnnConfig,
    /// The inverse regularisation strengths `C` of the linear probe that are tried; the one
    /// with the best validation AUC (ties: the smaller `C`) is scored on the test split.
    pub c_grid: Vec<f64>,
    /// The linear probe's solver (its `c` is replaced by each of `c_grid`).
    pub logistic: LogisticConfig,
    /// Images per forward pass of the feature extraction.
    pub batch_size: usize,
    /// Bootstrap resamples of the 95% intervals (0: none).
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            knn: KnnConfig::default(),
            c_grid: vec![0.001, 0.01, 0.1, 1.0, 10.0],
            logistic: LogisticConfig::default(),
            batch_size: 64,
            bootstrap_resamples: 1000,
            seed: 0,
        }
    }
}

impl ProbeConfig {
    /// Checks the settings, naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        if self.knn.k == 0 {
            return Err(Error::Config("probe: knn.k must be at least 1".into()));
        }
        if self.c_grid.is_empty() {
            return Err(Error::Config(
                "probe: c_grid is empty; give at least one C > 0".into(),
            ));
        }
        if let Some(c) = self.c_grid.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
            return Err(Error::Config(format!(
                "probe: c_grid holds {c}; every C must be finite and > 0"
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("probe: batch_size must be at least 1".into()));
        }
        Ok(())
    }

    fn eval(&self, bootstrap: bool) -> EvalConfig {
        EvalConfig {
            bootstrap_resamples: if bootstrap {
                self.bootstrap_resamples
            } else {
                0
            },
            seed: self.seed,
            ..EvalConfig::default()
        }
    }
}

/// A probe's figures on the validation and test splits, and its test predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeEvaluation {
    /// Validation figures (no intervals).
    pub validation: TaskMetrics,
    /// Test figures, with intervals.
    pub test: TaskMetrics,
    /// Test predictions (the `predictions.csv` format).
    pub test_predictions: Predictions,
}

/// The linear probe's choice of `C` and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinearProbeEvaluation {
    /// The `C` kept.
    pub c: f64,
    /// Every `C` tried with its validation AUC (`None`: undefined on this split).
    pub validation_auc_by_c: Vec<(f64, Option<f64>)>,
    /// The figures of the kept `C`.
    pub evaluation: ProbeEvaluation,
}

/// Both probes of one encoder on one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeOutcome {
    /// The task.
    pub task: String,
    /// Feature width.
    pub dim: usize,
    /// Rows of each split: train, validation, test.
    pub rows: (usize, usize, usize),
    /// The k-nearest-neighbour classifier.
    pub knn: ProbeEvaluation,
    /// The linear probe.
    pub linear: LinearProbeEvaluation,
}

/// Probability rows as predictions of `f`'s cases.
fn predictions(
    f: &Features,
    probs: Vec<f64>,
    task: &str,
    multilabel: bool,
    class_names: &[String],
) -> Predictions {
    let k = class_names.len().max(1);
    Predictions {
        task: task.to_string(),
        multilabel,
        class_names: class_names.to_vec(),
        rows: f
            .items
            .iter()
            .zip(&f.targets)
            .zip(probs.chunks(k))
            .map(|((item, target), scores)| PredictionRow {
                item: item.clone(),
                target: target.clone(),
                scores: scores.to_vec(),
            })
            .collect(),
    }
}

/// The k-nearest-neighbour figures of `query` against `train` (no intervals when
/// `bootstrap` is false); `k` is at most the number of training rows.
pub fn knn_metrics(
    train: &Features,
    query: &Features,
    data: &TaskData,
    cfg: &ProbeConfig,
    bootstrap: bool,
) -> Result<(TaskMetrics, Predictions)> {
    let kind = &data.labels.kind;
    let labels = OwnedLabels::of(train, kind, "training")?;
    // A training split smaller than k gives every query all of it as neighbours.
    let knn = KnnConfig {
        k: cfg.knn.k.min(train.len()).max(1),
        ..cfg.knn
    };
    let probs = knn_predict_proba(&train.values, train.dim, labels.view(), &query.values, &knn)?;
    let preds = predictions(
        query,
        probs,
        &data.labels.task.name(),
        matches!(kind, TargetKind::MultiHot(_)),
        &data.labels.class_names,
    );
    Ok((evaluate(&preds, &cfg.eval(bootstrap))?, preds))
}

/// Both probes on features already extracted from the three splits of `data`.
pub fn probe_features(
    train: &Features,
    validation: &Features,
    test: &Features,
    data: &TaskData,
    cfg: &ProbeConfig,
) -> Result<ProbeOutcome> {
    cfg.validate()?;
    let task = data.labels.task.name();
    let kind = &data.labels.kind;
    let multilabel = matches!(kind, TargetKind::MultiHot(_));
    let names = &data.labels.class_names;

    let (knn_val, _) = knn_metrics(train, validation, data, cfg, false)?;
    let (knn_test, knn_preds) = knn_metrics(train, test, data, cfg, true)?;

    let labels = OwnedLabels::of(train, kind, "training")?;
    let mut tried = Vec::new();
    let mut best: Option<(f64, f64, LogisticProbe, TaskMetrics)> = None;
    for &c in &cfg.c_grid {
        let lc = LogisticConfig { c, ..cfg.logistic };
        let probe = LogisticProbe::fit(&train.values, train.dim, labels.view(), &lc)?;
        let preds = predictions(
            validation,
            probe.predict_proba(&validation.values)?,
            &task,
            multilabel,
            names,
        );
        let m = evaluate(&preds, &cfg.eval(false))?;
        tried.push((c, m.auc));
        let score = m.auc.unwrap_or(f64::NEG_INFINITY);
        if best.as_ref().is_none_or(|b| score > b.1) {
            best = Some((c, score, probe, m));
        }
    }
    let (c, _, probe, lin_val) =
        best.ok_or_else(|| Error::Config("probe: c_grid is empty".into()))?;
    let lin_preds = predictions(
        test,
        probe.predict_proba(&test.values)?,
        &task,
        multilabel,
        names,
    );
    let lin_test = evaluate(&lin_preds, &cfg.eval(true))?;
    Ok(ProbeOutcome {
        task,
        dim: train.dim,
        rows: (train.len(), validation.len(), test.len()),
        knn: ProbeEvaluation {
            validation: knn_val,
            test: knn_test,
            test_predictions: knn_preds,
        },
        linear: LinearProbeEvaluation {
            c,
            validation_auc_by_c: tried,
            evaluation: ProbeEvaluation {
                validation: lin_val,
                test: lin_test,
                test_predictions: lin_preds,
            },
        },
    })
}

/// Extracts the features of `data`'s three splits with `source` and runs both probes.
pub fn probe_task(
    source: FeatureSource<'_>,
    data: &TaskData,
    cfg: &ProbeConfig,
    device: &Device,
) -> Result<ProbeOutcome> {
    cfg.validate()?;
    let f = |d: &Arc<miram_cbis_ddsm::loader::CachedCrops>| {
        extract_features(source, d.clone(), cfg.batch_size, device)
    };
    let (train, validation, test) = (f(&data.train)?, f(&data.validation)?, f(&data.test)?);
    probe_features(&train, &validation, &test, data, cfg)
}

/// The kNN figures of the validation split (no intervals): what pre-training records in its
/// log at the steps `RunOptions::probe` names.
pub fn knn_validation(
    source: FeatureSource<'_>,
    data: &TaskData,
    cfg: &ProbeConfig,
    device: &Device,
) -> Result<TaskMetrics> {
    let train = extract_features(source, data.train.clone(), cfg.batch_size, device)?;
    let val = extract_features(source, data.validation.clone(), cfg.batch_size, device)?;
    Ok(knn_metrics(&train, &val, data, cfg, false)?.0)
}
