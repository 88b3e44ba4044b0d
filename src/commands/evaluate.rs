//! `miram evaluate`: scores fine-tuned runs on the official test set of their task (AP and
//! AUC with bootstrap 95% intervals, accuracy, per-class figures), tests each against a
//! baseline run with DeLong's paired test, and writes predictions, ROC and PR plots, and
//! `report.json` / `report.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use miram_core::checkpoint::read_checkpoint;
use miram_core::train::compare;
use miram_core::train::evaluate::EvalConfig;
use miram_core::train::finetune::evaluate_checkpoint;
use serde_json::json;

use crate::commands::finetune::{task_slug, FinetuneCommand};
use crate::report::{results_table, Report, RunResult, TaskResult};
use crate::runs::{self, RunKind};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Arguments of `miram evaluate`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Each RUN is a folder written by `miram finetune` (it holds command.json and
checkpoints/best.safetensors). Runs are grouped by task; within a task every run is compared
with the baseline (--baseline, else the first run of the task) by DeLong's paired test of the
AUC on the same test cases (several classes: the smallest Holm-adjusted p over the classes).

Example:
  miram evaluate runs/ft-mae-pathology runs/ft-miram-pathology runs/ft-random-pathology --out runs/eval")]
pub struct EvaluateArgs {
    /// Fine-tuning run folders.
    #[arg(value_name = "RUN", required = true)]
    pub runs: Vec<PathBuf>,
    /// The baseline run (default: the first run of each task).
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<PathBuf>,
    /// The dataset root (default: each run's own).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where the report, predictions and plots go.
    #[arg(long, value_name = "DIR", default_value = "runs/evaluation")]
    pub out: PathBuf,
    /// Bootstrap resamples of the intervals.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub bootstrap: usize,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch_size: usize,
}

/// Reads the command configuration of a fine-tuning run folder; any other folder (a
/// pre-training run, an evaluation's output, a folder that is no run) is refused by name.
pub fn read_run(dir: &Path) -> Result<FinetuneCommand> {
    read_finetune_run(dir, "run", "evaluate")
}

/// [`read_run`] for `command`, naming the folder as `what` (`run`, `--model`).
pub fn read_finetune_run(dir: &Path, what: &str, command: &str) -> Result<FinetuneCommand> {
    runs::require_run_kind(dir, what, RunKind::Finetune, command)?;
    let p = dir.join("command.json");
    if !p.is_file() {
        bail!(
            "{what} {}: no command.json; give folders written by `miram finetune` or `miram quickstart` (runs/finetune-*)",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}", p.display()))
}

/// The best weights of the fine-tuning run `dir`, checked to be a fine-tuned classifier's
/// (`command` takes them) and finite.
pub fn best_checkpoint(dir: &Path, command: &str) -> Result<PathBuf> {
    let ck = dir.join("checkpoints").join("best.safetensors");
    if !ck.is_file() {
        bail!(
            "run {}: no checkpoints/best.safetensors; has its fine-tuning finished?",
            dir.display()
        );
    }
    let weights = read_checkpoint(&ck, &candle_core::Device::Cpu)?;
    if let Some(k) = runs::checkpoint_kind(&weights).filter(|&k| k != RunKind::Finetune) {
        bail!(
            "{} was written by {}; {command} takes fine-tuned classifiers",
            ck.display(),
            k.describe()
        );
    }
    runs::check_finite_weights(&weights)?;
    Ok(ck)
}

/// A run to evaluate: its folder, its recorded command and its best weights.
type RunToEvaluate = (PathBuf, FinetuneCommand, PathBuf);

/// Reads and checks every run before any work: its command, and best weights that are a
/// fine-tuned classifier's and finite.
fn collect_runs(a: &EvaluateArgs) -> Result<Vec<RunToEvaluate>> {
    let mut runs = Vec::new();
    for dir in &a.runs {
        let mut cmd = read_run(dir)?;
        if let Some(d) = &a.data {
            cmd.data.root = d.clone();
        }
        let ck = best_checkpoint(dir, "evaluate")?;
        runs.push((dir.clone(), cmd, ck));
    }
    Ok(runs)
}

/// Evaluates one run on its task's test split, writing its predictions into `--out`.
fn evaluate_run(
    a: &EvaluateArgs,
    run: &RunToEvaluate,
    eval: &EvalConfig,
    dev: &candle_core::Device,
    ui: &Ui,
) -> Result<RunResult> {
    let (dir, cmd, ck) = run;
    let data = study::prepare(
        ui,
        &cmd.data,
        cmd.finetune.encoder.img_size,
        None,
        cmd.finetune.seed,
    )?;
    let td = data.task(&cmd.finetune.task, &cmd.finetune.split)?;
    study::warn_dropped_test(ui, &cmd.finetune.task, &td);
    let t0 = Instant::now();
    let (preds, metrics) = evaluate_checkpoint(ck, &td, eval, a.batch_size, dev)?;
    ui.info(format!(
        "{:>12} {} evaluated on {} ({})",
        "evaluate",
        cmd.name,
        study::test_case_count(preds.len(), &td),
        crate::ui::fmt_duration(t0.elapsed())
    ));
    let slug = task_slug(&cmd.finetune.task);
    std::fs::create_dir_all(&a.out)?;
    let run_name = dir
        .file_name()
        .map_or_else(|| cmd.name.clone(), |n| n.to_string_lossy().into_owned());
    preds.write_csv(&a.out.join(format!("predictions_{slug}_{run_name}.csv")))?;
    Ok(RunResult {
        run: cmd.name.clone(),
        init: cmd.finetune.init.clone(),
        run_dir: dir.clone(),
        metrics,
        vs_baseline: None,
        predictions: Some(preds),
    })
}

/// DeLong's test of every run of `t` against its baseline (`--baseline`, else the first).
fn compare_to_baseline(t: &mut TaskResult, baseline: Option<&PathBuf>) -> Result<()> {
    let base_idx = baseline
        .and_then(|b| t.runs.iter().position(|r| r.run_dir == *b))
        .unwrap_or(0);
    t.baseline = Some(t.runs[base_idx].run.clone());
    let base = t.runs[base_idx].predictions.clone();
    for (i, r) in t.runs.iter_mut().enumerate() {
        if i != base_idx {
            if let (Some(b), Some(p)) = (&base, &r.predictions) {
                r.vs_baseline = Some(compare(p, b)?);
            }
        }
    }
    Ok(())
}

/// Runs `miram evaluate`.
pub fn run(a: &EvaluateArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let started = Instant::now();
    let dev = study::device(g.device.as_deref())?;
    let eval = EvalConfig {
        bootstrap_resamples: a.bootstrap,
        level: 0.95,
        seed: g.seed.unwrap_or(0),
    };
    let runs = collect_runs(a)?;
    ui.config(
        "evaluate",
        &json!({ "runs": a.runs, "baseline": a.baseline, "out": a.out, "evaluation": eval }),
    );
    let mut by_task: BTreeMap<String, TaskResult> = BTreeMap::new();
    for run in &runs {
        let result = evaluate_run(a, run, &eval, &dev, ui)?;
        let task = &run.1.finetune.task;
        let slug = task_slug(task);
        by_task
            .entry(slug.clone())
            .or_insert_with(|| TaskResult {
                task: slug,
                description: study::describe_task(task),
                baseline: None,
                runs: Vec::new(),
            })
            .runs
            .push(result);
    }
    let mut figures = Vec::new();
    for t in by_task.values_mut() {
        compare_to_baseline(t, a.baseline.as_ref())?;
        figures.extend(study::curve_figures(t, &a.out, Path::new(""))?);
    }
    let tasks: Vec<TaskResult> = by_task.into_values().collect();
    let report = Report {
        title: "MIRAM evaluation".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        version: env!("CARGO_PKG_VERSION").into(),
        config: json!({ "runs": a.runs, "evaluation": eval }),
        dataset: json!({ "roots": runs.iter().map(|r| r.1.data.root.clone()).collect::<Vec<_>>() }),
        pretraining: Vec::new(),
        tasks,
        probes: Vec::new(),
        figures,
        notes: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let (js, md) = report.write(&a.out)?;
    ui.result_text(format!(
        "{}\nreport: {} and {}\n",
        results_table(&report.tasks),
        md.display(),
        js.display()
    ));
    ui.event("result", serde_json::to_value(&report)?);
    Ok(())
}
