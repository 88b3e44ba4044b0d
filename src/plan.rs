//! The comparison that `quickstart` (one seed) and `study` (several) run on one dataset:
//! pre-train each starting point (MAE, MIRAM as the authors train it, MIRAM with native
//! high-resolution targets), tracking the kNN AUC of the validation split during
//! pre-training; fine-tune every starting point (and a randomly initialised encoder) on every
//! task; test DeLong's paired AUC difference of each against the baseline; and score every
//! frozen encoder with the kNN and linear probes. Every size of it is a [`PlanConfig`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::train::probe::{probe_task, FeatureSource, ProbeConfig};
use miram_core::train::{
    compare, DataConfig, Event, FinetuneConfig, PreparedData, PretrainConfig, ProbeTracking,
    RunOptions, TaskData,
};
use miram_core::{Miram, MiramConfig};
use serde::{Deserialize, Serialize};

use crate::commands::finetune::{task_slug, FinetuneCommand};
use crate::report::{PretrainResult, TaskResult};
use crate::study;
use crate::ui::Ui;

/// A starting point of fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// A randomly initialised encoder (no pre-training).
    Random,
    /// MAE: the encoder pre-trained with the 1x decoder only.
    Mae,
    /// MIRAM as the authors train it: 1x and 2x decoders, the 2x target the input upsampled.
    Miram,
    /// MIRAM with native high-resolution targets: the 2x target is the real crop at twice the
    /// resolution (this project's step beyond the paper).
    MiramNative,
}

impl Start {
    /// Every starting point, in table order.
    pub const ALL: [Start; 4] = [Start::Miram, Start::MiramNative, Start::Mae, Start::Random];

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random init",
            Self::Mae => "MAE",
            Self::Miram => "MIRAM",
            Self::MiramNative => "MIRAM native 2x",
        }
    }

    /// Its name in file names.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Mae => "mae",
            Self::Miram => "miram",
            Self::MiramNative => "miram-native",
        }
    }

    /// The model it pre-trains (`None`: no pre-training).
    pub fn model(self, base: &MiramConfig) -> Option<MiramConfig> {
        match self {
            Self::Random => None,
            Self::Mae => Some(base.single_scale()),
            Self::Miram | Self::MiramNative => Some(base.clone()),
        }
    }
}

/// Every size of one comparison, with the reasons for the defaults in `quickstart` and
/// `study`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The model preset.
    pub preset: String,
    /// The starting points compared (`random`, `mae`, `miram`, `miram-native`).
    pub starts: Vec<Start>,
    /// The starting point the DeLong tests compare against.
    pub baseline: Start,
    /// The tasks (`pathology`, `margins`, `pathology4`, `column:<name>`); the first is the
    /// one whose validation kNN AUC is tracked during pre-training.
    pub tasks: Vec<String>,
    /// Pre-training epochs over the training crops.
    pub pretrain_epochs: usize,
    /// Warm-up epochs of the pre-training schedule.
    pub pretrain_warmup_epochs: f64,
    /// Pre-training batch.
    pub pretrain_batch: usize,
    /// Pre-training peak learning rate.
    pub pretrain_lr: f64,
    /// Fine-tuning epochs per run (the best validation epoch is tested).
    pub finetune_epochs: usize,
    /// Warm-up epochs of fine-tuning.
    pub finetune_warmup_epochs: f64,
    /// Fine-tuning batch.
    pub finetune_batch: usize,
    /// Fine-tuning peak learning rate.
    pub finetune_lr: f64,
    /// Pre-training steps between two kNN evaluations of the validation split (also at step
    /// 0 and at the last step).
    pub probe_every_steps: u64,
    /// The probes (kNN, linear) of the frozen encoders after pre-training.
    pub probe: ProbeConfig,
    /// Bootstrap resamples of the 95% intervals.
    pub bootstrap: usize,
    /// Loader worker threads.
    pub workers: usize,
}

impl PlanConfig {
    /// Checks the settings before any work, naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        MiramConfig::preset(&self.preset)?;
        if self.starts.is_empty() {
            anyhow::bail!("starts is empty: give at least one of random, mae, miram, miram-native");
        }
        if !self.starts.contains(&self.baseline) {
            anyhow::bail!(
                "baseline {} is not one of the starts {:?}",
                self.baseline.slug(),
                self.starts.iter().map(|s| s.slug()).collect::<Vec<_>>()
            );
        }
        if self.tasks.is_empty() {
            anyhow::bail!("tasks is empty: give at least one task (pathology, margins, ...)");
        }
        for t in &self.tasks {
            study::parse_task(t)?;
        }
        for (what, v) in [
            ("pretrain_epochs", self.pretrain_epochs),
            ("pretrain_batch", self.pretrain_batch),
            ("finetune_epochs", self.finetune_epochs),
            ("finetune_batch", self.finetune_batch),
        ] {
            if v == 0 {
                anyhow::bail!("{what} is 0; it must be at least 1");
            }
        }
        if self.probe_every_steps == 0 {
            anyhow::bail!("probe_every_steps is 0; it must be at least 1");
        }
        self.probe.validate()?;
        Ok(())
    }

    /// True when a starting point needs the dataset's high-resolution crops.
    pub fn needs_hires(&self) -> bool {
        self.starts.contains(&Start::MiramNative)
    }

    /// The pre-training recipe of `start`'s model.
    pub fn pretrain(&self, model: MiramConfig, start: Start, seed: u64) -> PretrainConfig {
        let mut p = PretrainConfig::paper(model);
        p.epochs = self.pretrain_epochs;
        p.warmup_epochs = self.pretrain_warmup_epochs.min(self.pretrain_epochs as f64);
        p.batch_size = self.pretrain_batch;
        p.accum_iter = 1;
        p.lr = Some(self.pretrain_lr);
        p.seed = seed;
        p.workers = self.workers;
        p.native_hires_targets = start == Start::MiramNative;
        p.checkpoint_every = 1_000_000;
        p.keep_last = 1;
        p
    }

    /// The fine-tuning recipe of one run.
    pub fn finetune(
        &self,
        model: &MiramConfig,
        task: Task,
        init: Option<PathBuf>,
        seed: u64,
    ) -> FinetuneConfig {
        let mut f = FinetuneConfig::paper(model.encoder(), task);
        f.init = init;
        f.epochs = self.finetune_epochs;
        f.warmup_epochs = self.finetune_warmup_epochs.min(self.finetune_epochs as f64);
        f.batch_size = self.finetune_batch;
        f.lr = Some(self.finetune_lr);
        f.min_lr = self.finetune_lr / 100.0;
        f.seed = seed;
        f.workers = self.workers;
        f.bootstrap_resamples = self.bootstrap;
        f.keep_last = 1;
        f
    }
}

/// The probes of one frozen encoder on one task (test split).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRow {
    /// The starting point.
    pub start: Start,
    /// The task.
    pub task: String,
    /// kNN test AUC and AP.
    pub knn_auc: Option<f64>,
    /// kNN test AP.
    pub knn_ap: Option<f64>,
    /// Linear-probe test AUC.
    pub linear_auc: Option<f64>,
    /// Linear-probe test AP.
    pub linear_ap: Option<f64>,
    /// The C the validation split chose.
    pub linear_c: f64,
}

/// What one comparison gave.
#[derive(Debug, Clone, Serialize)]
pub struct PlanOutcome {
    /// The pre-training runs, by starting point.
    pub pretraining: Vec<(Start, PretrainResult)>,
    /// Fine-tuning results per task (runs named by [`Start::name`]).
    pub tasks: Vec<TaskResult>,
    /// The probes of every frozen encoder (the random one included) per task.
    pub probes: Vec<ProbeRow>,
    /// The validation kNN AUC of the tracked task against pre-training steps, per start.
    pub curves: Curves,
}

/// The kNN validation AUCs a pre-training run logged, by step.
pub fn probe_curve(run_dir: &Path) -> Result<Vec<(u64, f64)>> {
    let path = run_dir.join("log.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut points: Vec<(u64, f64)> = Vec::new();
    for line in text.lines() {
        if let Ok(Event::Eval(e)) = serde_json::from_str::<Event>(line) {
            if let Some(a) = e.metrics.get("knn_roc_auc") {
                points.retain(|p| p.0 != e.step);
                points.push((e.step, *a));
            }
        }
    }
    points.sort_by_key(|p| p.0);
    Ok(points)
}

/// What every part of one plan run reads.
struct PlanRun<'a> {
    ui: &'a Ui,
    plan: &'a PlanConfig,
    seed: u64,
    data: &'a PreparedData,
    data_cfg: &'a DataConfig,
    runs_dir: &'a Path,
    opts: &'a RunOptions,
    model: MiramConfig,
    tasks: Vec<Task>,
    task_data: Vec<TaskData>,
}

/// The pre-training runs of a plan, by starting point.
type Pretrainings = Vec<(Start, PretrainResult)>;

/// The learning curves of the probe (step, validation kNN AUC), by starting point.
type Curves = Vec<(Start, Vec<(u64, f64)>)>;

impl PlanRun<'_> {
    /// Pre-trains every pre-trained start, tracking the kNN AUC of the first task's
    /// validation split; returns the runs and their learning curves.
    fn pretrain_all(&self) -> Result<(Pretrainings, Curves)> {
        let plan = self.plan;
        let mut track = self.opts.clone();
        track.probe = Some(ProbeTracking {
            data: self.task_data[0].clone(),
            every_steps: plan.probe_every_steps,
            config: ProbeConfig {
                bootstrap_resamples: 0,
                ..plan.probe.clone()
            },
        });
        let mut pretraining = Vec::new();
        let mut curves = Vec::new();
        for &start in &plan.starts {
            let Some(m) = start.model(&self.model) else {
                continue;
            };
            let r = study::pretrain_run(
                self.ui,
                start.name(),
                &plan.preset,
                &plan.pretrain(m, start, self.seed),
                self.data,
                &study::open_run(
                    self.ui,
                    &self.runs_dir.join(format!("pretrain-{}", start.slug())),
                    false,
                )?,
                &track,
            )?;
            curves.push((start, probe_curve(&r.run_dir)?));
            pretraining.push((start, r));
        }
        Ok((pretraining, curves))
    }

    /// Fine-tunes every start on `task`, each tested against the baseline.
    fn finetune_task(
        &self,
        task: &Task,
        td: &TaskData,
        init_of: &dyn Fn(Start) -> Option<PathBuf>,
    ) -> Result<TaskResult> {
        let plan = self.plan;
        let slug = task_slug(task);
        let mut t = TaskResult {
            task: slug.clone(),
            description: study::describe_task(task),
            baseline: Some(plan.baseline.name().into()),
            runs: Vec::new(),
        };
        for &start in &plan.starts {
            let dir = self
                .runs_dir
                .join(format!("finetune-{slug}-{}", start.slug()));
            let ft = plan.finetune(&self.model, task.clone(), init_of(start), self.seed);
            // The record `miram evaluate` reads to evaluate the run again.
            let cmd = FinetuneCommand {
                preset: plan.preset.clone(),
                name: start.name().to_string(),
                out: dir.clone(),
                data: self.data_cfg.clone(),
                finetune: ft.clone(),
            };
            let run = study::open_run(self.ui, &dir, false)?;
            run.write_json("command.json", &cmd)?;
            t.runs.push(study::finetune_run(
                self.ui,
                start.name(),
                &ft,
                self.data,
                td,
                &run,
                self.opts,
            )?);
        }
        let base = t
            .runs
            .iter()
            .find(|r| r.run == plan.baseline.name())
            .and_then(|r| r.predictions.clone());
        for r in t.runs.iter_mut().filter(|r| r.run != plan.baseline.name()) {
            if let (Some(b), Some(p)) = (&base, &r.predictions) {
                r.vs_baseline = Some(compare(p, b)?);
            }
        }
        Ok(t)
    }

    /// The kNN and linear probes of every start's frozen encoder on every task.
    fn probe_all(&self, init_of: &dyn Fn(Start) -> Option<PathBuf>) -> Result<Vec<ProbeRow>> {
        let opts = self.opts;
        let mut probes = Vec::new();
        let probe_cfg = ProbeConfig {
            bootstrap_resamples: 0,
            seed: self.seed,
            ..self.plan.probe.clone()
        };
        for &start in &self.plan.starts {
            let encoder = match init_of(start) {
                Some(p) => Miram::load(&p, &opts.device)?,
                None => Miram::init(&self.model, self.seed, &opts.device)?,
            };
            for (task, td) in self.tasks.iter().zip(&self.task_data) {
                let o = probe_task(
                    FeatureSource::Encoder(encoder.encoder()),
                    td,
                    &probe_cfg,
                    &opts.device,
                )
                .with_context(|| format!("probing {} on {}", start.name(), task.name()))?;
                self.ui.info(format!(
                    "{:>12} probes on {}: kNN test AUC {}, linear (C={}) test AUC {}",
                    start.name(),
                    task_slug(task),
                    crate::report::with_ci(o.knn.test.auc, None),
                    o.linear.c,
                    crate::report::with_ci(o.linear.evaluation.test.auc, None)
                ));
                probes.push(ProbeRow {
                    start,
                    task: task_slug(task),
                    knn_auc: o.knn.test.auc,
                    knn_ap: o.knn.test.ap,
                    linear_auc: o.linear.evaluation.test.auc,
                    linear_ap: o.linear.evaluation.test.ap,
                    linear_c: o.linear.c,
                });
            }
        }
        Ok(probes)
    }
}

/// Runs the comparison of `plan` on `data` with `seed` (weights, masks, order, split),
/// with run folders under `runs_dir` (resumed or reused when they exist).
pub fn run_plan(
    ui: &Ui,
    plan: &PlanConfig,
    seed: u64,
    data: &PreparedData,
    data_cfg: &DataConfig,
    runs_dir: &Path,
    opts: &RunOptions,
) -> Result<PlanOutcome> {
    plan.validate()?;
    let tasks: Vec<Task> = plan
        .tasks
        .iter()
        .map(|t| study::parse_task(t))
        .collect::<Result<_>>()?;
    let split = SplitConfig {
        seed,
        ..Default::default()
    };
    let task_data: Vec<_> = tasks
        .iter()
        .map(|t| data.task(t, &split))
        .collect::<miram_core::Result<_>>()?;
    let run = PlanRun {
        ui,
        plan,
        seed,
        data,
        data_cfg,
        runs_dir,
        opts,
        model: MiramConfig::preset(&plan.preset)?,
        tasks,
        task_data,
    };
    let (pretraining, curves) = run.pretrain_all()?;
    let init_of = |s: Start| -> Option<PathBuf> {
        pretraining
            .iter()
            .find(|(p, _)| *p == s)
            .and_then(|(_, r)| r.model.clone())
    };
    let results = run
        .tasks
        .iter()
        .zip(&run.task_data)
        .map(|(task, td)| run.finetune_task(task, td, &init_of))
        .collect::<Result<Vec<_>>>()?;
    let probes = run.probe_all(&init_of)?;
    Ok(PlanOutcome {
        pretraining,
        tasks: results,
        probes,
        curves,
    })
}

/// A chart of the kNN validation AUC against pre-training steps, one line per run
/// (`(name, points)`).
pub fn curve_chart(
    title: &str,
    task: &str,
    runs: &[(String, Vec<(u64, f64)>)],
) -> crate::plot::LineChart {
    crate::plot::LineChart::new(
        title,
        "pre-training step",
        &format!("kNN AUC, validation split ({task})"),
        runs.iter()
            .map(|(name, pts)| crate::plot::Series {
                name: name.clone(),
                points: pts.iter().map(|&(s, a)| (s as f64, a)).collect(),
            })
            .collect(),
    )
}
