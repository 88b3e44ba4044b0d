//! Glue between the training engine (`miram_core::train`) and the command line: an
//! [`Observer`] that turns the engine's events into progress bars and JSON lines, the steps
//! of a run read back from its `log.jsonl`, the plots made from them, and the checks of a
//! run folder or checkpoint given on the command line (its kind, finite weights).

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::DType;
use miram_core::checkpoint::Checkpoint;
use miram_core::train::events::{Event, Observer, Phase, StepEvent};
use miram_core::MiramConfig;
use serde_json::json;

use crate::plot::{LineChart, Series};
use crate::ui::{Progress, StepFigures, Ui};

/// Names the scales of a model's decoders: `1x`, `2x`, ...
pub fn scale_names(cfg: &MiramConfig) -> Vec<String> {
    cfg.scales.iter().map(|s| format!("{}x", s.scale)).collect()
}

/// Renders the events of one run (`label` prefixes the bars, e.g. `MIRAM`).
pub struct UiObserver<'a> {
    ui: &'a Ui,
    label: String,
    scales: Vec<String>,
    bar: Option<(String, Progress<'a>)>,
    last_eval: Option<String>,
}

impl std::fmt::Debug for UiObserver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiObserver")
            .field("label", &self.label)
            .finish()
    }
}

impl<'a> UiObserver<'a> {
    /// An observer of a run called `label`, whose per-scale losses are named `scales`.
    pub fn new(ui: &'a Ui, label: &str, scales: Vec<String>) -> Self {
        Self {
            ui,
            label: label.to_string(),
            scales,
            bar: None,
            last_eval: None,
        }
    }

    fn bar(&mut self, key: &str, total: u64, unit: &str) -> &Progress<'a> {
        if self.bar.as_ref().is_none_or(|(k, _)| k != key) {
            if let Some((_, b)) = self.bar.take() {
                b.finish_quietly();
            }
            let stage = format!("{} {key}", self.label);
            self.bar = Some((key.to_string(), self.ui.progress(stage.trim(), total, unit)));
        }
        let (_, b) = self.bar.as_ref().expect("set above");
        b
    }

    /// Ends any open bar without a summary line.
    pub fn close(&mut self) {
        if let Some((_, b)) = self.bar.take() {
            b.finish_quietly();
        }
    }
}

impl UiObserver<'_> {
    /// A run starts (or resumes): its progress bar, and the `start` event.
    fn on_start(&mut self, phase: Phase, total_steps: u64, start_step: u64, description: &str) {
        let key = phase.name();
        let b = self.bar(key, total_steps, "steps");
        b.set(start_step);
        if start_step > 0 {
            self.ui.info(format!(
                "{} {key}: resuming at step {start_step} of {total_steps}",
                self.label
            ));
        }
        self.ui.event(
            "start",
            json!({ "run": self.label, "phase": key, "total_steps": total_steps,
            "start_step": start_step, "description": description }),
        );
    }

    /// An optimiser step: the bar moves, with the loss per scale and the last evaluation.
    fn on_step(&mut self, s: &StepEvent) {
        let key = s.phase.name();
        let scales = self.scales.clone();
        let losses = if s.losses.len() > 1 {
            s.losses
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        scales
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| format!("scale {i}")),
                        *v,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let note = self.last_eval.clone();
        let b = self.bar(key, s.total_steps, "steps");
        b.step(
            s.step,
            &StepFigures {
                loss: s.loss,
                losses,
                lr: s.lr,
                images_per_sec: s.images_per_sec,
                epoch: s.epoch,
                note,
            },
        );
    }

    /// A run ends: its bar finishes, and the `phase_done` event.
    fn on_done(&mut self, phase: Phase, step: u64, seconds: f64) {
        let key = phase.name();
        if let Some((k, b)) = self.bar.take() {
            if k == key {
                b.finish(format!("{step} steps"));
            } else {
                b.finish_quietly();
            }
        }
        self.ui.event(
            "phase_done",
            json!({ "run": self.label, "phase": key, "step": step, "seconds": seconds }),
        );
    }
}

impl Observer for UiObserver<'_> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Start {
                phase,
                total_steps,
                start_step,
                description,
            } => self.on_start(*phase, *total_steps, *start_step, description),
            Event::Progress {
                what, done, total, ..
            } => {
                let unit = if what == "index" { "rows" } else { "images" };
                let b = self.bar(what, *total, unit);
                b.set_total(*total);
                b.set(*done);
            }
            Event::Step(s) => self.on_step(s),
            Event::Eval(e) => {
                let figures: Vec<String> = e
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.3}"))
                    .collect();
                self.last_eval = Some(format!("{} {}", e.subset, figures.join(" ")));
                self.ui.event(
                    "eval",
                    json!({ "run": self.label, "step": e.step, "epoch": e.epoch,
                    "subset": e.subset, "metrics": e.metrics }),
                );
            }
            Event::Checkpoint {
                step, path, best, ..
            } => {
                self.ui.event(
                    "checkpoint",
                    json!({ "run": self.label, "step": step, "path": path, "best": best }),
                );
            }
            Event::Warning { message, .. } => {
                self.ui.warn(format!("{}: {message}", self.label));
            }
            Event::Done {
                phase,
                step,
                seconds,
            } => self.on_done(*phase, *step, *seconds),
        }
    }
}

/// The optimiser steps logged in a run folder's `log.jsonl` (the last record of each step:
/// a resumed run logs its steps again).
pub fn read_steps(run: &Path) -> Result<Vec<StepEvent>> {
    let path = run.join("log.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut steps: Vec<StepEvent> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(Event::Step(s)) = serde_json::from_str::<Event>(line) {
            steps.retain(|x| x.step != s.step);
            steps.push(s);
        }
    }
    steps.sort_by_key(|s| s.step);
    Ok(steps)
}

/// Loss curves of pre-training runs: the total and each scale's loss per step, for every run
/// (`(name, scale names, steps)`).
pub fn loss_chart(runs: &[(String, Vec<String>, Vec<StepEvent>)]) -> LineChart {
    let mut series = Vec::new();
    for (name, scales, steps) in runs {
        if scales.len() > 1 {
            series.push(Series {
                name: format!("{name} total"),
                points: steps.iter().map(|s| (s.step as f64, s.loss)).collect(),
            });
        }
        for (i, sc) in scales.iter().enumerate() {
            series.push(Series {
                name: format!("{name} {sc}"),
                points: steps
                    .iter()
                    .filter_map(|s| s.losses.get(i).map(|l| (s.step as f64, *l)))
                    .collect(),
            });
        }
    }
    let mut chart = LineChart::new(
        "Pre-training loss per scale",
        "optimiser step",
        "reconstruction loss (MSE; per-patch normalised pixels)",
        series,
    );
    chart.x_integer = true;
    chart
}

/// What a folder given where a run is expected holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A pre-training run (`miram pretrain`, or a quickstart's `runs/pretrain-*`).
    Pretrain,
    /// A fine-tuning run (`miram finetune`, or a quickstart's `runs/finetune-*`).
    Finetune,
    /// The output folder of `miram evaluate` or `miram quickstart` (`report.json`).
    Report,
}

impl RunKind {
    /// How a message names it: "a pre-training run", ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pretrain => "a pre-training run (made by `miram pretrain`)",
            Self::Finetune => "a fine-tuning run (made by `miram finetune`)",
            Self::Report => {
                "the output folder of `miram evaluate` or `miram quickstart` (it holds report.json), not a run; give the run folders themselves (a quickstart's are under its runs/)"
            }
        }
    }
}

/// The top-level keys of a JSON object file, `None` when the file is absent; an error naming
/// the file when it is not a JSON object.
fn json_keys(path: &Path) -> Result<Option<Vec<String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    match v {
        serde_json::Value::Object(m) => Ok(Some(m.keys().cloned().collect())),
        _ => anyhow::bail!("{}: not a JSON object", path.display()),
    }
}

/// Which kind of run `dir` is, from its `command.json` (the command that made it), else its
/// `config.json` (the engine's configuration), else the files it holds; `None` for a folder
/// that is not a run.
pub fn run_kind(dir: &Path) -> Result<Option<RunKind>> {
    let has = |keys: &[String], k: &str| keys.iter().any(|x| x == k);
    if let Some(keys) = json_keys(&dir.join("command.json"))? {
        if has(&keys, "finetune") {
            return Ok(Some(RunKind::Finetune));
        }
        if has(&keys, "pretrain") {
            return Ok(Some(RunKind::Pretrain));
        }
    }
    if let Some(keys) = json_keys(&dir.join("config.json"))? {
        if has(&keys, "task") {
            return Ok(Some(RunKind::Finetune));
        }
        if has(&keys, "model") {
            return Ok(Some(RunKind::Pretrain));
        }
    }
    if dir.join("checkpoints").join("best.safetensors").is_file() {
        return Ok(Some(RunKind::Finetune));
    }
    if dir.join("model.safetensors").is_file() {
        return Ok(Some(RunKind::Pretrain));
    }
    if dir.join("report.json").is_file() {
        return Ok(Some(RunKind::Report));
    }
    Ok(None)
}

/// Checks that `dir` (given as `what`, e.g. `run runs/x` or `--model runs/x`) is a run of
/// kind `want`, taken by `command`; the error says what the folder is instead.
pub fn require_run_kind(dir: &Path, what: &str, want: RunKind, command: &str) -> Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{what} {}: no such folder", dir.display());
    }
    let takes = match want {
        RunKind::Pretrain => {
            "pre-training runs (made by `miram pretrain`) or their model.safetensors"
        }
        RunKind::Finetune => "fine-tuning runs (made by `miram finetune`)",
        RunKind::Report => "the output folders of `miram evaluate` or `miram quickstart`",
    };
    match run_kind(dir)? {
        Some(k) if k == want => Ok(()),
        Some(k) => anyhow::bail!(
            "{what} {} is {}; {command} takes {takes}",
            dir.display(),
            k.describe()
        ),
        None => anyhow::bail!(
            "{what} {} is not a run folder (it has no command.json, config.json, model.safetensors or checkpoints/best.safetensors); {command} takes {takes}",
            dir.display()
        ),
    }
}

/// Which kind of run wrote the checkpoint, from its `kind` metadata (`pretrain` or
/// `finetune`; `None` for other checkpoints, such as MAE's released `.pth` files).
pub fn checkpoint_kind(ck: &Checkpoint) -> Option<RunKind> {
    match ck.metadata.get("kind").map(String::as_str) {
        Some("pretrain") => Some(RunKind::Pretrain),
        Some("finetune") => Some(RunKind::Finetune),
        _ => None,
    }
}

/// Fails, naming the checkpoint file and the tensor, when a floating-point tensor of `ck`
/// holds a NaN or an infinity (a diverged run: a model with such weights predicts NaN).
pub fn check_finite_weights(ck: &Checkpoint) -> Result<()> {
    let mut names: Vec<&String> = ck.tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &ck.tensors[name];
        if !t.dtype().is_float() {
            continue;
        }
        let v: Vec<f64> = t
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.to_vec1::<f64>())
            .with_context(|| format!("{}: tensor `{name}`", ck.path.display()))?;
        let bad: Vec<f64> = v.iter().copied().filter(|x| !x.is_finite()).collect();
        if let Some(first) = bad.first() {
            let at = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
            anyhow::bail!(
                "{}: tensor `{name}` {:?} holds {} non-finite values of {} (first: {first} at flat index {at}); the run that wrote it diverged; use an earlier checkpoint or train again (e.g. with a lower learning rate)",
                ck.path.display(),
                t.dims(),
                bad.len(),
                v.len()
            );
        }
    }
    Ok(())
}
