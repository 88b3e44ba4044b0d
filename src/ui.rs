//! What the command line shows while it works: progress bars (indicatif) with loss, learning
//! rate, images per second and ETA; messages; resolved configurations; and the same as JSON
//! lines for scripts (`--json-lines`), or nothing but results (`--quiet`).
//!
//! Conventions: results go to standard output, progress and messages to standard error. In
//! JSON-lines mode everything is one JSON object per line on standard output, each with an
//! `event` field (`config`, `info`, `warning`, `progress`, `step`, `done`, `result`,
//! `error`); progress events are sent at most every half second per bar, and always at the
//! end of a stage.

use std::fmt::Display;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// How much is printed, and in which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars and messages on standard error, results on standard output.
    Human,
    /// Only results.
    Quiet,
    /// One JSON object per line on standard output.
    JsonLines,
}

impl Mode {
    /// The mode the global flags ask for.
    pub fn from_flags(quiet: bool, json_lines: bool) -> Self {
        match (quiet, json_lines) {
            (_, true) => Mode::JsonLines,
            (true, false) => Mode::Quiet,
            (false, false) => Mode::Human,
        }
    }
}

/// The output of one invocation.
#[derive(Debug)]
pub struct Ui {
    mode: Mode,
    multi: MultiProgress,
    stdout: Mutex<()>,
}

impl Ui {
    /// An output in `mode`.
    pub fn new(mode: Mode) -> Self {
        let target = match mode {
            Mode::Human => ProgressDrawTarget::stderr_with_hz(8),
            Mode::Quiet | Mode::JsonLines => ProgressDrawTarget::hidden(),
        };
        Self {
            mode,
            multi: MultiProgress::with_draw_target(target),
            stdout: Mutex::new(()),
        }
    }

    /// The mode of this output.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Writes one JSON object with `"event": name` and the fields of `fields` (an object).
    pub fn event(&self, name: &str, fields: Value) {
        if self.mode != Mode::JsonLines {
            return;
        }
        let mut obj = Map::new();
        obj.insert("event".into(), Value::String(name.into()));
        match fields {
            Value::Object(m) => obj.extend(m),
            Value::Null => {}
            other => {
                obj.insert("value".into(), other);
            }
        }
        let _guard = self.stdout.lock();
        let mut out = std::io::stdout().lock();
        // A closed pipe (`miram ... | head`) is not an error worth a panic.
        let _ = writeln!(out, "{}", Value::Object(obj));
        let _ = out.flush();
    }

    /// A message for a person (standard error), or an `info` event.
    pub fn info(&self, msg: impl Display) {
        match self.mode {
            Mode::Human => self.multi.suspend(|| eprintln!("{msg}")),
            Mode::Quiet => {}
            Mode::JsonLines => self.event("info", json!({ "message": msg.to_string() })),
        }
    }

    /// A warning: shown even in quiet mode.
    pub fn warn(&self, msg: impl Display) {
        match self.mode {
            Mode::Human | Mode::Quiet => self.multi.suspend(|| eprintln!("warning: {msg}")),
            Mode::JsonLines => self.event("warning", json!({ "message": msg.to_string() })),
        }
    }

    /// The one line of a failed command, on standard error in every mode (and as an `error`
    /// event in JSON-lines mode).
    pub fn error(&self, msg: &str) {
        self.event("error", json!({ "message": msg }));
        eprintln!("error: {msg}");
    }

    /// Prints a resolved configuration: as TOML for a person (standard error), as a `config`
    /// event for scripts.
    pub fn config<T: Serialize>(&self, command: &str, cfg: &T) {
        match self.mode {
            Mode::Human => {
                let text = toml::to_string_pretty(cfg)
                    .unwrap_or_else(|e| format!("(not representable as TOML: {e})\n"));
                self.multi.suspend(|| {
                    eprintln!("# resolved configuration of `miram {command}`");
                    eprint!("{text}");
                    eprintln!();
                });
            }
            Mode::Quiet => {}
            Mode::JsonLines => self.event(
                "config",
                json!({ "command": command, "config": serde_json::to_value(cfg).unwrap_or(Value::Null) }),
            ),
        }
    }

    /// Prints a result for a person (standard output; also in quiet mode). In JSON-lines mode
    /// nothing is printed: the caller sends a `result` event instead.
    pub fn result_text(&self, text: impl Display) {
        if self.mode != Mode::JsonLines {
            let _guard = self.stdout.lock();
            self.multi.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "{text}");
                let _ = out.flush();
            });
        }
    }

    /// A progress bar for a stage of `total` items (`unit`: "images", "rows", "steps").
    pub fn progress(&self, stage: &str, total: u64, unit: &str) -> Progress<'_> {
        let bar = match self.mode {
            Mode::Human => {
                let style = ProgressStyle::with_template(&format!(
                    "{{prefix:>12.bold}} [{{bar:28.cyan/blue}}] {{pos}}/{{len}} {unit} {{msg}} {{elapsed_precise}} ETA {{eta}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = self.multi.add(ProgressBar::new(total).with_style(style));
                bar.set_prefix(stage.to_string());
                Some(bar)
            }
            Mode::Quiet | Mode::JsonLines => None,
        };
        Progress {
            ui: self,
            bar,
            stage: stage.to_string(),
            total: Mutex::new(total),
            start: Instant::now(),
            last_event: Mutex::new(None),
        }
    }

    /// Removes every progress bar from the terminal.
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

/// The figures of one training step, for the bar's message and the `step` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepFigures {
    /// The total loss.
    pub loss: f64,
    /// Each scale's loss (`("1x", 0.21)`), empty for fine-tuning.
    pub losses: Vec<(String, f64)>,
    /// The learning rate of the step.
    pub lr: f64,
    /// Images per second over the recent steps.
    pub images_per_sec: f64,
    /// The epoch.
    pub epoch: u64,
    /// The latest evaluation, shown after the figures (`val macro_auc 0.61`).
    pub note: Option<String>,
}

impl StepFigures {
    fn message(&self) -> String {
        let mut s = format!("loss {:.4}", self.loss);
        if self.losses.len() > 1 {
            let parts: Vec<String> = self
                .losses
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        s.push_str(&format!(
            " lr {:.2e} {:.0} img/s ep {}",
            self.lr, self.images_per_sec, self.epoch
        ));
        if let Some(n) = &self.note {
            s.push_str(&format!(" | {n}"));
        }
        s
    }
}

/// One stage's progress: a bar for a person, throttled `progress` events for scripts.
#[derive(Debug)]
pub struct Progress<'a> {
    ui: &'a Ui,
    bar: Option<ProgressBar>,
    stage: String,
    total: Mutex<u64>,
    start: Instant,
    last_event: Mutex<Option<Instant>>,
}

impl Progress<'_> {
    /// Whether an event is due (at most one every half second, always at the end).
    fn due(&self, done: u64) -> bool {
        let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = self.last_event.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = done >= total
            || last.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500));
        if due {
            *last = Some(now);
        }
        due
    }

    /// Seconds left at the average rate so far.
    fn eta_s(&self, done: u64) -> Option<f64> {
        let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
        let el = self.start.elapsed().as_secs_f64();
        (done > 0).then(|| el / done as f64 * total.saturating_sub(done) as f64)
    }

    /// Changes the number of items (a stage whose size is known late).
    pub fn set_total(&self, total: u64) {
        *self.total.lock().unwrap_or_else(|e| e.into_inner()) = total;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// `done` items of the total are finished.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
        if self.ui.mode == Mode::JsonLines && self.due(done) {
            let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
            self.ui.event(
                "progress",
                json!({ "stage": self.stage, "done": done, "total": total,
                        "elapsed_s": self.start.elapsed().as_secs_f64(), "eta_s": self.eta_s(done) }),
            );
        }
    }

    /// A training step `done` of the total finished with these figures.
    pub fn step(&self, done: u64, f: &StepFigures) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(f.message());
        }
        if self.ui.mode == Mode::JsonLines && self.due(done) {
            let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
            let losses: Map<String, Value> = f
                .losses
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            self.ui.event(
                "step",
                json!({ "stage": self.stage, "step": done, "total": total, "epoch": f.epoch,
                        "loss": f.loss, "losses": losses, "lr": f.lr,
                        "images_per_sec": f.images_per_sec,
                        "elapsed_s": self.start.elapsed().as_secs_f64(), "eta_s": self.eta_s(done) }),
            );
        }
    }

    /// Ends the stage without a summary line.
    pub fn finish_quietly(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            self.ui.multi.remove(b);
        }
    }

    /// Ends the stage with a one-line summary (shown in human mode, a `done` event in
    /// JSON-lines mode).
    pub fn finish(&self, summary: impl Display) {
        let elapsed = self.start.elapsed();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            self.ui.multi.remove(b);
        }
        let summary = summary.to_string();
        match self.ui.mode {
            Mode::Human => self.ui.info(format!(
                "{:>12} {summary} ({})",
                self.stage,
                fmt_duration(elapsed)
            )),
            Mode::Quiet => {}
            Mode::JsonLines => self.ui.event(
                "done",
                json!({ "stage": self.stage, "summary": summary, "elapsed_s": elapsed.as_secs_f64() }),
            ),
        }
    }
}

/// `1h02m03s`, `2m05s`, `4.2s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!(
            "{}h{:02}m{:02}s",
            (s / 3600.0) as u64,
            ((s as u64) % 3600) / 60,
            (s as u64) % 60
        )
    }
}

/// An error and its causes on one line: `outer: inner: root`, each cause once (a cause whose
/// text its parent already contains is not repeated), line breaks replaced by spaces.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn one_line_joins_causes_and_drops_repeats() {
        let e = Err::<(), _>(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such\nfile",
        ))
        .context("reading x.csv")
        .unwrap_err();
        assert_eq!(one_line(&e), "reading x.csv: no such file");
        let e = anyhow::anyhow!("x.csv: no such file").context("x.csv: no such file");
        assert_eq!(one_line(&e), "x.csv: no such file");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(fmt_duration(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn step_message_names_every_scale() {
        let f = StepFigures {
            loss: 0.5,
            losses: vec![("1x".into(), 0.2), ("2x".into(), 0.3)],
            lr: 1.5e-4,
            images_per_sec: 42.0,
            epoch: 3,
            note: None,
        };
        assert_eq!(
            f.message(),
            "loss 0.5000 (1x 0.2000, 2x 0.3000) lr 1.50e-4 42 img/s ep 3"
        );
    }
}
