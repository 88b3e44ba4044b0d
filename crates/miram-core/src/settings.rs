//! Range checks of numeric settings, collected into one [`Error::InvalidSettings`] that names
//! every key at fault with its value and allowed range (`blr = -1: must be > 0`).

use std::fmt::Display;

use crate::{Error, InvalidSetting, Result};

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
