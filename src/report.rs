//! The reports people look at: the results table printed at the end of `quickstart` and
//! `evaluate` (AP and AUC with 95% bootstrap intervals, DeLong p-values against the baseline
//! run), and `report.json` (every figure, machine-readable) and `report.md` (the same as
//! tables, with the PNG plots) in the output folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use miram_core::train::{Comparison, Predictions, TaskMetrics};
use serde::Serialize;
use serde_json::Value;

/// One fine-tuned run on one task.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The run's name in the tables (`MIRAM`, `MAE`, `random init`).
    pub run: String,
    /// The checkpoint it started from (none: random initialisation).
    pub init: Option<PathBuf>,
    /// Its run folder (config.json, log.jsonl, checkpoints, predictions.csv).
    pub run_dir: PathBuf,
    /// Its test figures.
    pub metrics: TaskMetrics,
    /// DeLong's paired test against the baseline run (none for the baseline itself).
    pub vs_baseline: Option<Comparison>,
    /// Its test predictions (also `predictions.csv` in the run folder).
    #[serde(skip)]
    pub predictions: Option<Predictions>,
}

/// Every run on one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    /// The task's name (`pathology_binary`, `mass_margins`).
    pub task: String,
    /// A readable description.
    pub description: String,
    /// The run the p-values compare against.
    pub baseline: Option<String>,
    /// The runs.
    pub runs: Vec<RunResult>,
}

/// One pre-training run.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainResult {
    /// The run's name (`MIRAM`, `MAE`).
    pub name: String,
    /// The model preset.
    pub preset: String,
    /// Its run folder.
    pub run_dir: PathBuf,
    /// The trained model.
    pub model: Option<PathBuf>,
    /// Optimiser steps.
    pub steps: u64,
    /// The total loss of the last step.
    pub final_loss: f64,
    /// Each scale's loss at the last step.
    pub final_losses: Vec<(String, f64)>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// A picture of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What it shows.
    pub title: String,
    /// The PNG, relative to the report's folder.
    pub path: PathBuf,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The title.
    pub title: String,
    /// The command line that made it.
    pub command: String,
    /// The version of miram.
    pub version: String,
    /// The resolved configuration.
    pub config: Value,
    /// What the data was.
    pub dataset: Value,
    /// Pre-training runs.
    pub pretraining: Vec<PretrainResult>,
    /// Fine-tuning results per task.
    pub tasks: Vec<TaskResult>,
    /// The kNN and linear probes of the frozen encoders (test split), when run.
    pub probes: Vec<crate::plan::ProbeRow>,
    /// The pictures.
    pub figures: Vec<Figure>,
    /// Notes (undefined figures, small test sets).
    pub notes: Vec<String>,
    /// Wall-clock seconds of the whole command.
    pub seconds: f64,
}

/// `0.712 [0.601, 0.815]`, or `n/a` for an undefined figure.
pub fn with_ci(v: Option<f64>, ci: Option<(f64, f64)>) -> String {
    match (v, ci) {
        (Some(v), Some((lo, hi))) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
        (Some(v), None) => format!("{v:.3}"),
        (None, _) => "n/a".to_string(),
    }
}

/// `0.041`, `<0.001`, or `-`.
pub fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "<0.001".to_string(),
        Some(p) => format!("{p:.3}"),
        None => "-".to_string(),
    }
}

/// The cells of one run's row: AUC, AP, p-value.
fn cells(r: &RunResult) -> [String; 3] {
    let m = &r.metrics;
    [
        with_ci(m.auc, m.auc_ci.map(|c| (c.lower, c.upper))),
        with_ci(m.ap, m.ap_ci.map(|c| (c.lower, c.upper))),
        p_value(r.vs_baseline.as_ref().and_then(|c| c.p_value)),
    ]
}

/// The results table for a terminal: one row per task and run.
pub fn results_table(tasks: &[TaskResult]) -> String {
    let baseline = tasks
        .iter()
        .find_map(|t| t.baseline.clone())
        .unwrap_or_else(|| "baseline".into());
    let p_head = format!("p vs {baseline} (DeLong)");
    let tw = tasks
        .iter()
        .map(|t| t.task.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let rw = tasks
        .iter()
        .flat_map(|t| t.runs.iter().map(|r| r.run.len()))
        .chain([3])
        .max()
        .unwrap_or(3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<tw$}  {:<rw$}  {:>5}  {:<22}  {:<22}  {}",
        "task", "run", "cases", "AUC [95% CI]", "AP [95% CI]", p_head
    );
    for t in tasks {
        for r in &t.runs {
            let [auc, ap, p] = cells(r);
            let _ = writeln!(
                out,
                "{:<tw$}  {:<rw$}  {:>5}  {auc:<22}  {ap:<22}  {p}",
                t.task, r.run, r.metrics.n_cases
            );
        }
    }
    out
}

/// The cells of one probe row: task, encoder, kNN AUC and AP, linear AUC and AP, C.
fn probe_cells(r: &crate::plan::ProbeRow) -> [String; 7] {
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    [
        r.task.clone(),
        r.start.name().to_string(),
        f(r.knn_auc),
        f(r.knn_ap),
        f(r.linear_auc),
        f(r.linear_ap),
        r.linear_c.to_string(),
    ]
}

/// The probes table for a terminal: one row per task and starting point.
pub fn probes_table(rows: &[crate::plan::ProbeRow]) -> String {
    let mut out = format!(
        "{:<18}  {:<16}  {:>7}  {:>6}  {:>10}  {:>9}  {:>8}\n",
        "task", "encoder (frozen)", "kNN AUC", "kNN AP", "linear AUC", "linear AP", "linear C"
    );
    for r in rows {
        let [t, e, ka, kp, la, lp, c] = probe_cells(r);
        let _ = writeln!(
            out,
            "{t:<18}  {e:<16}  {ka:>7}  {kp:>6}  {la:>10}  {lp:>9}  {c:>8}"
        );
    }
    out
}

impl Report {
    /// Writes `report.json` and `report.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let json_path = dir.join("report.json");
        std::fs::write(&json_path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("{}", json_path.display()))?;
        let md_path = dir.join("report.md");
        std::fs::write(&md_path, self.markdown())
            .with_context(|| format!("{}", md_path.display()))?;
        Ok((json_path, md_path))
    }

    /// The Markdown form.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {}\n", self.title);
        let _ = writeln!(
            md,
            "Made by `{}` (miram {}) in {:.0} s.\n",
            self.command, self.version, self.seconds
        );
        let _ = writeln!(
            md,
            "## Data\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&self.dataset).unwrap_or_default()
        );
        self.pretraining_section(&mut md);
        for t in &self.tasks {
            task_section(&mut md, t);
        }
        self.probes_section(&mut md);
        if !self.figures.is_empty() {
            let _ = writeln!(md, "## Figures\n");
            for f in &self.figures {
                let _ = writeln!(
                    md,
                    "### {}\n\n![{}]({})\n",
                    f.title,
                    f.title,
                    f.path.display()
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "## Configuration\n\n```json\n{}\n```",
            serde_json::to_string_pretty(&self.config).unwrap_or_default()
        );
        md
    }

    /// The table of the pre-training runs.
    fn pretraining_section(&self, md: &mut String) {
        if self.pretraining.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Pre-training\n");
        let _ = writeln!(md, "| run | preset | steps | final loss | per scale | time | folder |\n|---|---|---|---|---|---|---|");
        for p in &self.pretraining {
            let scales: Vec<String> = p
                .final_losses
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {} | {:.0} s | `{}` |",
                p.name,
                p.preset,
                p.steps,
                p.final_loss,
                scales.join(", "),
                p.seconds,
                p.run_dir.display()
            );
        }
        md.push('\n');
    }

    /// The table of the probes of the frozen encoders.
    fn probes_section(&self, md: &mut String) {
        if self.probes.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "## Probes of the frozen encoders (test split)\n\nkNN and linear probe (C chosen on the validation AUC) on the pooled features of each encoder after pre-training, without fine-tuning.\n\n| task | encoder | kNN AUC | kNN AP | linear AUC | linear AP | linear C |\n|---|---|---|---|---|---|---|"
        );
        for r in &self.probes {
            let _ = writeln!(md, "| {} |", probe_cells(r).join(" | "));
        }
        md.push('\n');
    }
}

/// One task's section: the runs' test figures, the per-class figures of a task of more than
/// two classes, and the runs' notes.
fn task_section(md: &mut String, t: &TaskResult) {
    let _ = writeln!(md, "## {}: {}\n", t.task, t.description);
    let p_head = t
        .baseline
        .as_ref()
        .map_or("p".to_string(), |b| format!("p vs {b} (DeLong)"));
    let _ = writeln!(md, "| run | test cases | AUC [95% CI] | AP [95% CI] | {p_head} | accuracy |\n|---|---|---|---|---|---|");
    for r in &t.runs {
        let [auc, ap, p] = cells(r);
        let acc = r
            .metrics
            .accuracy
            .map_or("-".to_string(), |a| format!("{a:.3}"));
        let _ = writeln!(
            md,
            "| {} | {} | {auc} | {ap} | {p} | {acc} |",
            r.run, r.metrics.n_cases
        );
    }
    md.push('\n');
    per_class_table(md, t);
    for r in &t.runs {
        for n in &r.metrics.notes {
            let _ = writeln!(md, "- {}: {n}", r.run);
        }
    }
    md.push('\n');
}

/// AUC / AP per class of every run, for tasks of more than two classes.
fn per_class_table(md: &mut String, t: &TaskResult) {
    let classes: Vec<&str> = t
        .runs
        .first()
        .map(|r| {
            r.metrics
                .per_class
                .iter()
                .map(|c| c.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    if classes.len() <= 2 {
        return;
    }
    let _ = writeln!(
        md,
        "Per class (AUC / AP):\n\n| run | {} |\n|---|{}",
        classes.join(" | "),
        "---|".repeat(classes.len())
    );
    for r in &t.runs {
        let v: Vec<String> = r
            .metrics
            .per_class
            .iter()
            .map(|c| {
                let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.3}"));
                format!("{} / {} (n={})", f(c.auc), f(c.ap), c.positives)
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", r.run, v.join(" | "));
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_p_values_read_as_papers_print_them() {
        assert_eq!(
            with_ci(Some(0.71234), Some((0.6011, 0.8149))),
            "0.712 [0.601, 0.815]"
        );
        assert_eq!(with_ci(None, None), "n/a");
        assert_eq!(p_value(Some(0.0004)), "<0.001");
        assert_eq!(p_value(Some(0.0412)), "0.041");
        assert_eq!(p_value(None), "-");
    }
}
