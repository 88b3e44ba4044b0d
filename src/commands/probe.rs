//! `miram probe`: how good a frozen encoder's features are for a task, in seconds: a
//! k-nearest-neighbour classifier and a linear probe (standardised features, L2 logistic
//! regression with `C` chosen on the validation split) on the pooled features of the task's
//! training crops, scored on the official test split with AP and AUC and bootstrap
//! intervals, as `evaluate` scores a fine-tuned run.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::checkpoint::read_checkpoint;
use miram_core::metrics::KnnMetric;
use miram_core::train::finetune::load_classifier;
use miram_core::train::probe::{probe_task, FeatureSource, ProbeConfig, ProbeOutcome};
use miram_core::train::DataConfig;
use miram_core::{Device, Miram};
use serde::{Deserialize, Serialize};

use crate::config;
use crate::report::with_ci;
use crate::runs::{self, RunKind};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// The resolved configuration of `miram probe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCommand {
    /// The encoder: a pre-training run (or its `model.safetensors`) or a fine-tuning run (or
    /// its `best.safetensors`).
    pub model: PathBuf,
    /// The dataset.
    pub data: DataConfig,
    /// The task (`pathology`, `pathology4`, `margins`, `column:<name>`).
    pub task: String,
    /// The probes.
    pub probe: ProbeConfig,
    /// Where `probe.json` and the test predictions go (none: only printed).
    pub out: Option<PathBuf>,
    /// Seed of the validation split and the bootstrap.
    pub seed: u64,
}

/// Arguments of `miram probe`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Extracts the pooled features of every crop of the task's training, validation and test splits
with the frozen encoder (the mean of the patch tokens after the final norm for a pre-trained
model; the pooled fc_norm features for a fine-tuned classifier), then:
  kNN      the share of the k nearest training crops (cosine distance by default) in each class
  linear   standardised features, L2 logistic regression (one-vs-rest), C chosen on the
           validation AUC among --c-grid
and prints the test AP and AUC of both with 95% bootstrap intervals. With --out, writes
probe.json (every figure) and knn_predictions.csv / linear_predictions.csv (the
predictions.csv format `miram metrics` reads).

Example:
  miram probe --model quickstart-out/runs/pretrain-miram --data quickstart-out/data --task pathology")]
pub struct ProbeArgs {
    /// The encoder: a pre-training or fine-tuning run folder, or its checkpoint file.
    #[arg(long, value_name = "RUN")]
    pub model: Option<PathBuf>,
    /// The dataset root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The task: pathology, pathology4, margins or column:<CSV column> [default: pathology].
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Neighbours of the kNN classifier [default: 20].
    #[arg(long, value_name = "N")]
    pub k: Option<usize>,
    /// Distance of the kNN classifier: cosine or euclidean [default: cosine].
    #[arg(long, value_name = "METRIC")]
    pub metric: Option<String>,
    /// The C values the linear probe tries, comma-separated [default: 0.001,0.01,0.1,1,10].
    #[arg(long, value_name = "C,C,...", value_delimiter = ',')]
    pub c_grid: Option<Vec<f64>>,
    /// Bootstrap resamples of the intervals [default: 1000].
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// Where probe.json and the predictions go.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The encoder of `--model`: what it is and the loaded model.
///
/// Both models are boxed: in the CUDA build, whose devices are larger, a `Miram` takes about
/// 270 bytes more than a `VitClassifier` (clippy's `large_enum_variant`), and boxing only the
/// larger would leave the other that much larger than the box.
pub enum Encoder {
    /// A pre-trained MIRAM or MAE model.
    Pretrained(Box<Miram>),
    /// A fine-tuned classifier.
    Classifier(Box<miram_core::encoder::VitClassifier>),
}

impl Encoder {
    /// Loads a pre-training or fine-tuning run (or checkpoint), checking its weights.
    pub fn load(model: &std::path::Path, device: &Device) -> Result<(Self, PathBuf)> {
        let ck = study::resolve_checkpoint(model, "--model")?;
        let weights = read_checkpoint(&ck, &Device::Cpu)?;
        runs::check_finite_weights(&weights)?;
        Ok(match runs::checkpoint_kind(&weights) {
            Some(RunKind::Finetune) => (
                Self::Classifier(Box::new(load_classifier(&ck, device)?.0)),
                ck,
            ),
            _ => (Self::Pretrained(Box::new(Miram::load(&ck, device)?)), ck),
        })
    }

    /// The features it gives.
    pub fn source(&self) -> FeatureSource<'_> {
        match self {
            Self::Pretrained(m) => FeatureSource::Encoder(m.encoder()),
            Self::Classifier(c) => FeatureSource::Classifier(c),
        }
    }

    /// The crop size it takes.
    pub fn img_size(&self) -> usize {
        match self {
            Self::Pretrained(m) => m.config().img_size,
            Self::Classifier(c) => c.config().encoder.img_size,
        }
    }
}

/// The table of a probe outcome.
pub fn outcome_table(o: &ProbeOutcome) -> String {
    let row = |name: String, m: &miram_core::train::TaskMetrics| {
        format!(
            "{name:<34} {:>5}  {:<24} {:<24}\n",
            m.n_cases,
            with_ci(m.auc, m.auc_ci.map(|c| (c.lower, c.upper))),
            with_ci(m.ap, m.ap_ci.map(|c| (c.lower, c.upper)))
        )
    };
    let mut s = format!(
        "{:<34} {:>5}  {:<24} {:<24}\n",
        "probe (test split)", "cases", "AUC [95% CI]", "AP [95% CI]"
    );
    s.push_str(&row(
        format!(
            "kNN (validation AUC {})",
            with_ci(o.knn.validation.auc, None)
        ),
        &o.knn.test,
    ));
    s.push_str(&row(
        format!(
            "linear, C={} (val AUC {})",
            o.linear.c,
            with_ci(o.linear.evaluation.validation.auc, None)
        ),
        &o.linear.evaluation.test,
    ));
    s
}

/// Runs `miram probe`.
pub fn run(a: &ProbeArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let base = ProbeCommand {
        model: PathBuf::new(),
        data: DataConfig::new(""),
        task: "pathology".into(),
        probe: ProbeConfig::default(),
        out: None,
        seed: 0,
    };
    if let Some(m) = &a.metric {
        m.parse::<KnnMetric>()
            .map_err(|e| anyhow::anyhow!("--metric {m}: {e}"))?;
    }
    let mut cfg: ProbeCommand = config::resolve(
        &base,
        a.config.as_deref(),
        &[
            ("model", config::flag(&a.model)),
            ("data.root", config::flag(&a.data)),
            ("task", config::flag(&a.task)),
            ("probe.knn.k", config::flag(&a.k)),
            ("probe.knn.metric", config::flag(&a.metric)),
            ("probe.c_grid", config::flag(&a.c_grid)),
            ("probe.bootstrap_resamples", config::flag(&a.bootstrap)),
            ("out", config::flag(&a.out)),
            ("seed", config::flag(&g.seed)),
        ],
    )?;
    cfg.probe.seed = cfg.seed;
    if cfg.model.as_os_str().is_empty() {
        bail!("no model: give --model RUN (a pre-training or fine-tuning run folder, or its checkpoint)");
    }
    cfg.probe.validate()?;
    let task = study::parse_task(&cfg.task)?;
    study::check_data(&cfg.data)?;
    let dev = study::device(g.device.as_deref())?;
    let (encoder, ck) = Encoder::load(&cfg.model, &dev)?;
    ui.config("probe", &cfg);
    let data = study::prepare(ui, &cfg.data, encoder.img_size(), None, cfg.seed)?;
    let td = data.task(
        &task,
        &SplitConfig {
            seed: cfg.seed,
            ..Default::default()
        },
    )?;
    study::warn_dropped_test(ui, &task, &td);
    let outcome = probe_task(encoder.source(), &td, &cfg.probe, &dev)?;
    if let Some(out) = &cfg.out {
        std::fs::create_dir_all(out)
            .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
        std::fs::write(
            out.join("probe.json"),
            serde_json::to_string_pretty(&outcome)?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.join("probe.json").display()))?;
        outcome
            .knn
            .test_predictions
            .write_csv(&out.join("knn_predictions.csv"))?;
        outcome
            .linear
            .evaluation
            .test_predictions
            .write_csv(&out.join("linear_predictions.csv"))?;
    }
    ui.result_text(format!(
        "{}: {} features of {} training, {} validation, {} test crops ({})\n{}",
        ck.display(),
        outcome.dim,
        outcome.rows.0,
        outcome.rows.1,
        outcome.rows.2,
        study::describe_task(&task),
        outcome_table(&outcome)
    ));
    ui.event("result", serde_json::to_value(&outcome)?);
    Ok(())
}
