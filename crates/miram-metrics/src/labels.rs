//! Label types and input validation shared by every metric: binary labels given as `bool`
//! or integers `0`/`1`, finite scores, matching lengths (scikit-learn's `check_consistent_length`,
//! `assert_all_finite` and `type_of_target` checks, as errors that name the value at fault).

use std::fmt::Display;

use crate::error::{Location, MetricsError, Result};

/// A binary ground-truth label: `true`/`1` is the positive class, `false`/`0` the negative
/// one; any other integer is refused with [`MetricsError::InvalidLabel`].
///
/// Implemented for `bool` and the primitive integers, so `&[u8]`, `&[i64]` and `&[bool]`
/// can all be passed as `y_true`.
pub trait BinaryLabel: Copy + Display + Send + Sync {
    /// `Some(true)` for the positive class, `Some(false)` for the negative one, `None` for a
    /// value that is not a binary label.
    fn as_binary(self) -> Option<bool>;
}

impl BinaryLabel for bool {
    #[inline]
    fn as_binary(self) -> Option<bool> {
        Some(self)
    }
}

macro_rules! int_label {
    ($($t:ty),*) => {$(
        impl BinaryLabel for $t {
            #[inline]
            fn as_binary(self) -> Option<bool> {
                match self {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                }
            }
        }
    )*};
}
int_label!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// Fails with [`MetricsError::Empty`] when `len` is zero.
pub(crate) fn check_nonempty(what: &'static str, len: usize) -> Result<()> {
    if len == 0 {
        Err(MetricsError::Empty { what })
    } else {
        Ok(())
    }
}

/// Fails with [`MetricsError::LengthMismatch`] when `got != expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        Err(MetricsError::LengthMismatch {
            what,
            expected,
            got,
        })
    } else {
        Ok(())
    }
}

/// Fails with [`MetricsError::NonFinite`] at the first NaN or infinite score; `n_columns`
/// is `Some` for a row-major matrix, so that the error names the row and column.
pub(crate) fn check_finite(
    what: &'static str,
    scores: &[f64],
    n_columns: Option<usize>,
) -> Result<()> {
    match scores.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(MetricsError::NonFinite {
            what,
            at: match n_columns {
                Some(k) => Location::cell(i, k),
                None => Location::Index(i),
            },
            value: scores[i],
        }),
    }
}

/// Converts binary labels to `bool`, failing at the first value that is not `0`/`1`.
pub(crate) fn to_bools<L: BinaryLabel>(
    what: &'static str,
    y: &[L],
    n_columns: Option<usize>,
) -> Result<Vec<bool>> {
    y.iter()
        .enumerate()
        .map(|(i, &v)| {
            v.as_binary().ok_or_else(|| MetricsError::InvalidLabel {
                what,
                at: match n_columns {
                    Some(k) => Location::cell(i, k),
                    None => Location::Index(i),
                },
                value: v.to_string(),
                expected: "0 or 1 (or a bool)".to_string(),
            })
        })
        .collect()
}

/// Checks multiclass labels against `0..n_classes`.
pub(crate) fn check_classes(what: &'static str, y: &[usize], n_classes: usize) -> Result<()> {
    match y.iter().position(|&c| c >= n_classes) {
        None => Ok(()),
        Some(i) => Err(MetricsError::InvalidLabel {
            what,
            at: Location::Index(i),
            value: y[i].to_string(),
            expected: format!("a class index in 0..{n_classes}"),
        }),
    }
}

/// Checks `n_classes >= 2` (a multiclass or multilabel problem has two columns at least).
pub(crate) fn check_n_columns(name: &'static str, n: usize) -> Result<()> {
    if n < 2 {
        Err(MetricsError::InvalidParameter {
            name,
            value: n.to_string(),
            reason: "needs at least 2 columns (use the binary functions for one)",
        })
    } else {
        Ok(())
    }
}

/// Checks that a threshold is a number (it may be infinite: `inf` predicts no positive).
pub(crate) fn check_threshold(threshold: f64) -> Result<()> {
    if threshold.is_nan() {
        Err(MetricsError::InvalidParameter {
            name: "threshold",
            value: threshold.to_string(),
            reason: "must not be NaN",
        })
    } else {
        Ok(())
    }
}

/// Checks a confidence level lies strictly between 0 and 1.
pub(crate) fn check_level(level: f64) -> Result<()> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(MetricsError::InvalidParameter {
            name: "level",
            value: level.to_string(),
            reason: "a confidence level must lie strictly between 0 and 1",
        })
    }
}

/// Validates a binary problem (`y_true`, `y_score` of one length, finite scores, labels in
/// {0, 1}) and returns the labels as `bool`.
pub(crate) fn binary_inputs<L: BinaryLabel>(y_true: &[L], y_score: &[f64]) -> Result<Vec<bool>> {
    check_nonempty("y_true", y_true.len())?;
    check_len("y_score", y_true.len(), y_score.len())?;
    check_finite("y_score", y_score, None)?;
    to_bools("y_true", y_true, None)
}

/// Validates a multilabel problem: `y_true` and `y_score` both `[n_samples, n_labels]`
/// row-major, finite scores, labels in {0, 1}. Returns the labels as `bool` and `n_samples`.
pub(crate) fn multilabel_inputs<L: BinaryLabel>(
    y_true: &[L],
    y_score: &[f64],
    n_labels: usize,
) -> Result<(Vec<bool>, usize)> {
    check_n_columns("n_labels", n_labels)?;
    check_nonempty("y_true", y_true.len())?;
    if y_true.len() % n_labels != 0 {
        return Err(MetricsError::LengthMismatch {
            what: "y_true",
            expected: y_true.len().div_ceil(n_labels) * n_labels,
            got: y_true.len(),
        });
    }
    check_len("y_score", y_true.len(), y_score.len())?;
    check_finite("y_score", y_score, Some(n_labels))?;
    let labels = to_bools("y_true", y_true, Some(n_labels))?;
    Ok((labels, y_true.len() / n_labels))
}

/// Validates a multiclass problem: `y_true` `[n_samples]` in `0..n_classes`, `y_prob`
/// `[n_samples, n_classes]` row-major and finite.
pub(crate) fn multiclass_inputs(y_true: &[usize], y_prob: &[f64], n_classes: usize) -> Result<()> {
    check_n_columns("n_classes", n_classes)?;
    check_nonempty("y_true", y_true.len())?;
    check_len("y_prob", y_true.len() * n_classes, y_prob.len())?;
    check_finite("y_prob", y_prob, Some(n_classes))?;
    check_classes("y_true", y_true, n_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_bool_labels() {
        assert_eq!(1u8.as_binary(), Some(true));
        assert_eq!(0i64.as_binary(), Some(false));
        assert_eq!(2u32.as_binary(), None);
        assert_eq!((-1i32).as_binary(), None);
        assert_eq!(true.as_binary(), Some(true));
    }

    #[test]
    fn invalid_label_names_value_and_place() {
        let e = to_bools("y_true", &[0u8, 1, 3], None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("invalid label 3") && msg.contains("index 2"),
            "{msg}"
        );
        let e = to_bools("y_true", &[0i32, 1, 1, -1], Some(2)).unwrap_err();
        assert!(e.to_string().contains("row 1, column 1"), "{e}");
    }

    #[test]
    fn non_finite_names_value_and_place() {
        let e = check_finite("y_prob", &[0.5, 0.5, f64::INFINITY, 0.0], Some(2)).unwrap_err();
        assert_eq!(
            e,
            MetricsError::NonFinite {
                what: "y_prob",
                at: Location::Cell { row: 1, column: 0 },
                value: f64::INFINITY
            }
        );
        assert!(e.to_string().contains("inf"), "{e}");
    }
}
