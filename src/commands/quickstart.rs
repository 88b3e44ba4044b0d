//! `miram quickstart`: the comparison of `crate::plan` on one generated CBIS-DDSM-shaped
//! dataset, on this machine, in minutes: generate the data, pre-train the `micro` preset with
//! MIRAM (1x + 2x) and, for comparison, single-scale MAE (tracking the validation kNN AUC);
//! fine-tune both and a randomly initialised encoder for pathology and for mass margins;
//! probe the frozen encoders; print AP and AUC with 95% bootstrap intervals and DeLong
//! p-values against the randomly initialised encoder; write `report.json`, `report.md` and
//! the plots. `miram study` runs the same comparison over several seeds.
//!
//! The numbers are whatever the run gives: nothing is tuned to the generated data or fixed.
//! Every size of the run is in [`QuickstartConfig`], with the reason for its value.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use miram_core::cbis_ddsm::synth::SynthConfig;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::train::probe::ProbeConfig;
use miram_core::train::{DataConfig, PreparedData, RunOptions};
use miram_core::MiramConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config;
use crate::plan::{self, PlanConfig, PlanOutcome, Start};
use crate::report::{results_table, Figure, Report, TaskResult};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Every size of the quick start in one place. The budget is 10 minutes end to end on 2 CPU
/// cores (build excluded); see `docs/study.md` for how each setting was chosen (on the
/// validation split or by the pre-training loss, never on the test split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickstartConfig {
    /// Where the data, the runs and the report go.
    pub out: PathBuf,
    /// The generated dataset. 140 patients give about 320 abnormalities (about 60 in the
    /// official test split, 25 of them masses) and about 690 pre-training crops: few
    /// enough to write in about half a minute and to fine-tune for dozens of epochs within
    /// the budget. Images stay at the `small` preset's 512 x 832 px, enough for 64 px lesion
    /// crops (and their 128 px native high-resolution versions) with their border detail.
    pub synth: SynthConfig,
    /// The comparison: starting points, tasks, pre-training and fine-tuning budgets, probes.
    pub plan: PlanConfig,
    /// Test crops shown reconstructed by each pre-trained model.
    pub reconstructions: usize,
    /// Seed of everything (data, weights, masks, order, augmentation, bootstrap).
    pub seed: u64,
}

impl Default for QuickstartConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("quickstart-out"),
            synth: SynthConfig {
                patients: 140,
                ..SynthConfig::small()
            },
            plan: quickstart_plan(),
            reconstructions: 2,
            seed: 0,
        }
    }
}

/// The quick start's comparison (`docs/study.md` says how each number was chosen).
pub fn quickstart_plan() -> PlanConfig {
    PlanConfig {
        preset: "micro".into(),
        starts: vec![Start::Miram, Start::Mae, Start::Random],
        baseline: Start::Random,
        tasks: vec!["pathology".into(), "margins".into()],
        pretrain_epochs: QUICKSTART_PRETRAIN_EPOCHS,
        pretrain_warmup_epochs: 4.0,
        pretrain_batch: 32,
        pretrain_lr: 1.5e-3,
        finetune_epochs: QUICKSTART_FINETUNE_EPOCHS,
        finetune_warmup_epochs: 3.0,
        finetune_batch: 16,
        finetune_lr: 5e-4,
        probe_every_steps: 100,
        probe: ProbeConfig::default(),
        bootstrap: 500,
        workers: 1,
    }
}

/// Pre-training epochs of the quick start (21 steps each at batch 32).
const QUICKSTART_PRETRAIN_EPOCHS: usize = 40;
/// Fine-tuning epochs of the quick start.
const QUICKSTART_FINETUNE_EPOCHS: usize = 30;

/// Arguments of `miram quickstart`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Writes into --out (default quickstart-out): data/ (the generated dataset), runs/ (one folder
per pre-training and fine-tuning run: config, log, checkpoints, predictions), report.md,
report.json, loss.png (loss per scale over steps), roc_<task>.png, pr_<task>.png and
reconstructions/*.png. Running it again reuses the data and resumes or reuses finished runs.

The configuration file (TOML or JSON) may set any key of the resolved configuration printed
at the start (out, seed, reconstructions, [synth], [plan] with preset, starts,
tasks, pretrain_epochs, finetune_epochs, ..., [plan.probe]).

Example:
  cargo run --release -- quickstart
  miram quickstart --out /tmp/qs --json-lines > qs.jsonl")]
pub struct QuickstartArgs {
    /// The output folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The quick start's configuration: defaults, then the file, then the flags; checked.
fn resolve_config(a: &QuickstartArgs, g: &GlobalArgs) -> Result<QuickstartConfig> {
    let mut cfg: QuickstartConfig = config::resolve(
        &QuickstartConfig::default(),
        a.config.as_deref(),
        &[
            ("out", config::flag(&a.out)),
            ("seed", config::flag(&g.seed)),
        ],
    )?;
    if g.seed.is_some() {
        cfg.synth.seed = cfg.seed;
    }
    cfg.synth.validate()?;
    cfg.plan.validate()?;
    Ok(cfg)
}

/// The loss curves per scale and the learning curve of the probe, saved beside the report.
fn training_figures(
    cfg: &QuickstartConfig,
    model: &MiramConfig,
    outcome: &PlanOutcome,
) -> Result<Vec<Figure>> {
    let pre: Vec<_> = outcome.pretraining.iter().map(|(_, r)| r.clone()).collect();
    let models: Vec<MiramConfig> = outcome
        .pretraining
        .iter()
        .filter_map(|(s, _)| s.model(model))
        .collect();
    study::loss_figure(&pre, &models, &cfg.out.join("loss.png"))?;
    let tracked = outcome
        .tasks
        .first()
        .map_or_else(String::new, |t| t.task.clone());
    let curves: Vec<(String, Vec<(u64, f64)>)> = outcome
        .curves
        .iter()
        .map(|(s, c)| (s.name().to_string(), c.clone()))
        .collect();
    plan::curve_chart("Feature quality during pre-training", &tracked, &curves).save(
        &cfg.out.join("probe_curve.png"),
        study::CHART_SIZE.0,
        study::CHART_SIZE.1,
    )?;
    Ok(vec![
        Figure {
            title: "Pre-training loss per scale".into(),
            path: "loss.png".into(),
        },
        Figure {
            title: format!("kNN AUC of the validation split ({tracked}) during pre-training"),
            path: "probe_curve.png".into(),
        },
    ])
}

/// Reconstructions of a few test crops by each pre-trained model.
fn reconstruction_figures(
    cfg: &QuickstartConfig,
    data: &PreparedData,
    outcome: &PlanOutcome,
    device: &miram_core::Device,
) -> Result<Vec<Figure>> {
    let recon_dir = cfg.out.join("reconstructions");
    let test = data.task(&Task::PathologyBinary, &Default::default())?.test;
    let n = cfg
        .reconstructions
        .min(miram_core::cbis_ddsm::loader::CropDataset::len(
            test.as_ref(),
        ));
    let idx: Vec<usize> = (0..n).collect();
    let mut figures = Vec::new();
    for (start, r) in &outcome.pretraining {
        if let Some(p) = &r.model {
            let loaded = miram_core::Miram::load(p, device)?;
            for f in study::reconstruction_grids(
                &loaded,
                start.name(),
                test.as_ref(),
                &idx,
                cfg.seed,
                &recon_dir,
                start.slug(),
            )? {
                let rel = f.strip_prefix(&cfg.out).unwrap_or(&f).to_path_buf();
                figures.push(Figure {
                    title: format!("{} reconstruction ({})", start.name(), rel.display()),
                    path: rel,
                });
            }
        }
    }
    Ok(figures)
}

/// The notes of the report: the verdict on pre-training first, then every run's notes.
fn report_notes(outcome: &PlanOutcome, verdict: Option<&String>) -> Vec<String> {
    let mut notes: Vec<String> = verdict.into_iter().cloned().collect();
    for t in &outcome.tasks {
        for r in &t.runs {
            for n in &r.metrics.notes {
                notes.push(format!("{} / {}: {n}", t.task, r.run));
            }
        }
    }
    notes
}

/// Runs `miram quickstart`.
pub fn run(a: &QuickstartArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let started = Instant::now();
    let cfg = resolve_config(a, g)?;
    let model = MiramConfig::preset(&cfg.plan.preset)?;
    let mut opts = RunOptions::new(study::device(g.device.as_deref())?);
    ui.config("quickstart", &cfg);
    opts.resume = true;

    let data_dir = cfg.out.join("data");
    let runs_dir = cfg.out.join("runs");
    let manifest = study::generated_dataset(&cfg.synth, &data_dir, ui)?;
    let data_cfg = DataConfig {
        cache_dir: Some(cfg.out.join("cache")),
        ..DataConfig::new(&data_dir)
    };
    let hires = cfg.plan.needs_hires().then_some(2);
    let data = study::prepare(ui, &data_cfg, model.img_size, hires, cfg.seed)?;
    let outcome = plan::run_plan(ui, &cfg.plan, cfg.seed, &data, &data_cfg, &runs_dir, &opts)?;

    let mut figures = training_figures(&cfg, &model, &outcome)?;
    for t in &outcome.tasks {
        figures.extend(study::curve_figures(t, &cfg.out, Path::new(""))?);
    }
    figures.extend(reconstruction_figures(&cfg, &data, &outcome, &opts.device)?);
    let verdict = pretraining_verdict(&outcome.tasks, cfg.plan.baseline);
    let notes = report_notes(&outcome, verdict.as_ref());
    let (_, summary) = crate::commands::synth::summary(&manifest);
    let report = Report {
        title: "MIRAM quick start: MIRAM vs MAE vs random initialisation on generated CBIS-DDSM-shaped data".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        version: env!("CARGO_PKG_VERSION").into(),
        config: serde_json::to_value(&cfg)?,
        dataset: json!({ "root": data_dir, "generated": summary, "indexed_rows": data.index.len(),
                         "skipped_rows": data.index.unresolved.len(), "crops": data.cache.len() }),
        pretraining: outcome.pretraining.iter().map(|(_, r)| r.clone()).collect(),
        tasks: outcome.tasks,
        probes: outcome.probes,
        figures,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    let (js, md) = report.write(&cfg.out)?;
    ui.result_text(format!(
        "\nTest set of the generated data; 95% bootstrap intervals ({} resamples); p: DeLong's paired test of the AUC against {}.\n{}\nFrozen encoders, test split (kNN k={}; linear probe with C chosen on the validation split):\n{}\n{}report: {} (figures beside it), {}\ntime: {}\n",
        cfg.plan.bootstrap,
        cfg.plan.baseline.name(),
        results_table(&report.tasks),
        cfg.plan.probe.knn.k,
        crate::report::probes_table(&report.probes),
        verdict.map_or(String::new(), |n| format!("{n}\n\n")),
        md.display(),
        js.display(),
        crate::ui::fmt_duration(started.elapsed())
    ));
    ui.event("result", serde_json::to_value(&report)?);
    Ok(())
}

/// What the first task's numbers say about pre-training: whether a pre-trained start's test
/// AUC is above the baseline's, and how far, in words built from the figures alone.
pub fn pretraining_verdict(tasks: &[TaskResult], baseline: Start) -> Option<String> {
    let t = tasks.first()?;
    let base = t.runs.iter().find(|r| r.run == baseline.name())?;
    let base_auc = base.metrics.auc?;
    let others: Vec<_> = t
        .runs
        .iter()
        .filter(|r| r.run != baseline.name())
        .filter_map(|r| r.metrics.auc.map(|a| (r, a)))
        .collect();
    let best = others.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let width = base
        .metrics
        .auc_ci
        .map(|c| {
            format!(
                "; the 95% interval of the {} AUC is {:.2} wide",
                baseline.name(),
                c.upper - c.lower
            )
        })
        .unwrap_or_default();
    let p = best
        .0
        .vs_baseline
        .as_ref()
        .and_then(|c| c.p_value)
        .map_or("-".to_string(), |p| format!("{p:.3}"));
    Some(if best.1 > base_auc {
        format!(
            "{}: {} gives the highest test AUC, {:.3} against {:.3} for {} (DeLong p = {p}, {} test cases{width}).",
            t.task, best.0.run, best.1, base_auc, baseline.name(), base.metrics.n_cases
        )
    } else {
        format!(
            "{}: no pre-trained start is above {} here: the best, {}, gives {:.3} against {:.3} (DeLong p = {p}, {} test cases{width}); at this size one seed cannot tell them apart, and `miram study` runs the powered comparison.",
            t.task, baseline.name(), best.0.run, best.1, base_auc, base.metrics.n_cases
        )
    })
}
