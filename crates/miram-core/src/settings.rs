//! Range checks of numeric settings, collected into one [`Error::InvalidSettings`] that names
//! every key at fault with its value and allowed range (`blr = -1: must be > 0`).

use std::fmt::Display;

use crate::{Error, InvalidSetting, Result};

/// The settings that pre-training and fine-tuning recipes share, for [`Checks::recipe`].
#[derive(Debug, Clone, Copy)]
pub struct RecipeValues<'a> {
    /// Epochs.
    pub epochs: usize,
    /// Images per micro-batch.
    pub batch_size: usize,
    /// Warm-up epochs.
    pub warmup_epochs: f64,
    /// Base learning rate.
    pub blr: f64,
    /// Absolute learning rate, when set.
    pub lr: Option<f64>,
    /// Floor of the schedule.
    pub min_lr: f64,
    /// The peak learning rate the recipe reaches.
    pub peak_lr: f64,
    /// How the peak is derived, for the message (`lr, or blr x batch_size / 256`).
    pub peak_rule: &'a str,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Collects the settings at fault.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<InvalidSetting>,
}

impl Checks {
    /// No problem yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `key = value` as at fault with `allowed`.
    pub fn fail(&mut self, key: &str, value: impl Display, allowed: impl Into<String>) {
        self.problems.push(InvalidSetting {
            key: key.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        });
    }

    /// Records `key` unless `ok`.
    pub fn require(&mut self, ok: bool, key: &str, value: impl Display, allowed: &str) {
        if !ok {
            self.fail(key, value, allowed);
        }
    }

    /// A finite number in the interval from `lo` to `hi` (each bound inclusive or not; `None`
    /// for unbounded).
    pub fn real(&mut self, key: &str, v: f64, lo: Option<(f64, bool)>, hi: Option<(f64, bool)>) {
        let lo_ok = lo.is_none_or(|(l, inc)| if inc { v >= l } else { v > l });
        let hi_ok = hi.is_none_or(|(h, inc)| if inc { v <= h } else { v < h });
        if v.is_finite() && lo_ok && hi_ok {
            return;
        }
        let allowed = match (lo, hi) {
            (None, None) => "must be a finite number".to_string(),
            (Some((l, inc)), None) => format!("must be {} {l}", if inc { ">=" } else { ">" }),
            (None, Some((h, inc))) => format!("must be {} {h}", if inc { "<=" } else { "<" }),
            (Some((l, li)), Some((h, hi))) => format!(
                "must be in {}{l}, {h}{}",
                if li { '[' } else { '(' },
                if hi { ']' } else { ')' }
            ),
        };
        self.fail(key, v, allowed);
    }

    /// A finite number > 0.
    pub fn positive(&mut self, key: &str, v: f64) {
        self.real(key, v, Some((0.0, false)), None);
    }

    /// A finite number >= 0.
    pub fn non_negative(&mut self, key: &str, v: f64) {
        self.real(key, v, Some((0.0, true)), None);
    }

    /// A probability-like value in `[0, 1)`.
    pub fn unit_open(&mut self, key: &str, v: f64) {
        self.real(key, v, Some((0.0, true)), Some((1.0, false)));
    }

    /// An integer in `[lo, hi]`.
    pub fn count(&mut self, key: &str, v: u64, lo: u64, hi: u64) {
        if !(lo..=hi).contains(&v) {
            self.fail(key, v, format!("must be in [{lo}, {hi}]"));
        }
    }

    /// An integer >= `lo`.
    pub fn at_least(&mut self, key: &str, v: u64, lo: u64) {
        if v < lo {
            self.fail(key, v, format!("must be at least {lo}"));
        }
    }

    /// Adds the problems of a nested check under `prefix`.
    pub fn nested(&mut self, prefix: &str, r: Result<()>) {
        match r {
            Ok(()) => {}
            Err(Error::InvalidSettings { problems }) => {
                for p in problems {
                    self.problems.push(InvalidSetting {
                        key: format!("{prefix}.{}", p.key),
                        ..p
                    });
                }
            }
            Err(e) => self.fail(prefix, "", e.to_string()),
        }
    }

    /// Adds a failed check of another crate (its message names the field) under `key`.
    pub fn other<E: Display>(&mut self, key: &str, r: std::result::Result<(), E>) {
        if let Err(e) = r {
            self.fail(key, "", e.to_string());
        }
    }

    /// The checks every training recipe shares: epochs, batch size, warm-up within the
    /// epochs, positive rates, a schedule floor at most the peak rate, weight decay in [0, 1].
    pub fn recipe(&mut self, r: &RecipeValues<'_>) {
        self.count("epochs", r.epochs as u64, 1, 1_000_000);
        self.count("batch_size", r.batch_size as u64, 1, 1 << 20);
        self.real(
            "warmup_epochs",
            r.warmup_epochs,
            Some((0.0, true)),
            Some((r.epochs as f64, true)),
        );
        self.positive("blr", r.blr);
        if let Some(lr) = r.lr {
            self.positive("lr", lr);
        }
        self.non_negative("min_lr", r.min_lr);
        let peak = r.peak_lr;
        if r.min_lr.is_finite() && peak.is_finite() && peak > 0.0 && r.min_lr > peak {
            self.fail(
                "min_lr",
                r.min_lr,
                format!("must be <= the peak learning rate {peak} ({})", r.peak_rule),
            );
        }
        self.real(
            "weight_decay",
            r.weight_decay,
            Some((0.0, true)),
            Some((1.0, true)),
        );
    }

    /// Ok when nothing failed, else every problem.
    pub fn finish(self) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSettings {
                problems: self.problems,
            })
        }
    }
}

/// The problems of several checks as one error (a check failing otherwise is returned as it
/// is): the command line validates the recipe and the data settings at once.
pub fn merge(results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(()) => {}
            Err(Error::InvalidSettings { problems: p }) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidSettings { problems })
    }
}
