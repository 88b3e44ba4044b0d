//! Glue between the training engine (`miram_core::train`) and the command line: an
//! [`Observer`] that turns the engine's events into progress bars and JSON lines, the steps
//! of a run read back from its `log.jsonl`, and the plots made from them.

use std::path::Path;

use anyhow::{Context, Result};
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

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Data => "data",
        Phase::Pretrain => "pretrain",
        Phase::Finetune => "finetune",
        Phase::Evaluate => "evaluate",
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
            } => {
                let key = phase_name(*phase);
                let b = self.bar(key, *total_steps, "steps");
                b.set(*start_step);
                if *start_step > 0 {
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
            Event::Progress {
                what, done, total, ..
            } => {
                let unit = if what == "index" { "rows" } else { "images" };
                let b = self.bar(what, *total, unit);
                b.set_total(*total);
                b.set(*done);
            }
            Event::Step(s) => {
                let key = phase_name(s.phase);
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
            } => {
                let key = phase_name(*phase);
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
