//! The error type of the crate: every undefined metric and every malformed input is an
//! error that names the values at fault, never a number (scikit-learn answers some of these
//! cases with a warning and `nan` or `0.0`; this crate refuses them).

use std::fmt;

use crate::probe::ProbeModel;

/// Where a value sits in the input: a position in a 1-D slice, or a cell of a row-major
/// `[n_samples, n_columns]` matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Position in a 1-D slice.
    Index(usize),
    /// Cell of a row-major matrix.
    Cell {
        /// Row (sample).
        row: usize,
        /// Column (class or label).
        column: usize,
    },
}

impl Location {
    /// The location of flat index `index` in a row-major matrix with `n_columns` columns.
    pub(crate) fn cell(index: usize, n_columns: usize) -> Self {
        Self::Cell {
            row: index / n_columns,
            column: index % n_columns,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(i) => write!(f, "index {i}"),
            Self::Cell { row, column } => write!(f, "row {row}, column {column}"),
        }
    }
}

/// Everything that can make a metric undefined or an input invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// An input slice has no elements.
    #[error("empty input: `{what}` has no elements")]
    Empty {
        /// The argument (`y_true`, `y_score`, ...).
        what: &'static str,
    },
    /// Two inputs that must agree in length do not.
    #[error("length mismatch: `{what}` has {got} elements, expected {expected}")]
    LengthMismatch {
        /// The argument whose length is wrong.
        what: &'static str,
        /// The length implied by the other arguments.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A score is NaN or infinite.
    #[error("non-finite score {value} in `{what}` at {at}")]
    NonFinite {
        /// The argument holding the value.
        what: &'static str,
        /// Where the value is.
        at: Location,
        /// The value (NaN or infinite).
        value: f64,
    },
    /// A label is outside the allowed set (`0`/`1` for binary, `0..n_classes` for multiclass).
    #[error("invalid label {value} in `{what}` at {at}: expected {expected}")]
    InvalidLabel {
        /// The argument holding the label.
        what: &'static str,
        /// Where the label is.
        at: Location,
        /// The label as written.
        value: String,
        /// What was allowed.
        expected: String,
    },
    /// `y_true` holds one class only, which leaves the metric undefined.
    #[error(
        "only one class present in y_true (all {n_samples} samples are {class_present}): \
         {metric} is undefined"
    )]
    OneClass {
        /// The metric that cannot be computed.
        metric: &'static str,
        /// The class every sample has (`0` or `1`).
        class_present: u8,
        /// Number of samples.
        n_samples: usize,
    },
    /// A class of a multiclass problem has no sample in `y_true`.
    #[error(
        "class {class} has no samples in y_true (y_prob has {n_classes} columns): \
         {metric} is undefined"
    )]
    MissingClass {
        /// The metric that cannot be computed.
        metric: &'static str,
        /// The absent class.
        class: usize,
        /// Number of classes (columns of the score matrix).
        n_classes: usize,
    },
    /// A row of a multiclass score matrix does not sum to one.
    #[error(
        "row {row} of y_prob sums to {sum}, not 1: {metric} needs probabilities \
         (scikit-learn's check, |1 - sum| <= 1e-8 + 1e-5 * |sum|)"
    )]
    NotProbabilities {
        /// The metric that needs probabilities.
        metric: &'static str,
        /// The offending row.
        row: usize,
        /// Its sum.
        sum: f64,
    },
    /// Too few samples of a kind for the statistic.
    #[error("{metric} needs at least {needed} {what}, got {got}")]
    TooFewSamples {
        /// The statistic.
        metric: &'static str,
        /// What is counted (`positive samples`, ...).
        what: &'static str,
        /// The minimum.
        needed: usize,
        /// The count given.
        got: usize,
    },
    /// A variance the statistic divides by is zero (identical score sets, ...).
    #[error("{metric}: {what} is {value}, so the statistic is undefined")]
    DegenerateVariance {
        /// The statistic.
        metric: &'static str,
        /// Which variance.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// A parameter (threshold, confidence level, number of classes...) is out of range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A per-column metric of a multiclass or multilabel problem failed on one column.
    #[error("column {column}: {source}")]
    Column {
        /// The class or label column.
        column: usize,
        /// What went wrong in that column.
        #[source]
        source: Box<MetricsError>,
    },
    /// A row-major matrix argument whose length is not a whole number of rows.
    #[error(
        "`{what}` has {len} values, not a multiple of its row length {dim}: \
         it must hold whole rows of {dim} values"
    )]
    NotRows {
        /// The argument (`train`, `query`, `x`, `y`).
        what: &'static str,
        /// Its number of values.
        len: usize,
        /// The row length (features per row, or labels per row).
        dim: usize,
    },
    /// A feature is NaN or infinite.
    #[error(
        "non-finite feature {value} in `{what}` at row {row}, column {column}: \
         features must be finite numbers"
    )]
    NonFiniteFeature {
        /// The argument holding the value.
        what: &'static str,
        /// Its row (sample).
        row: usize,
        /// Its column (feature).
        column: usize,
        /// The value (NaN or infinite).
        value: f64,
    },
    /// A parameter outside a range that depends on the input.
    #[error("invalid parameter `{name}` = {value}: allowed {allowed}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// The allowed range, with what sets it.
        allowed: String,
    },
    /// A binary model of a probe whose training labels are all one value.
    #[error(
        "logistic probe: the binary model of {model} has {positives} positive of \
         {n_samples} training rows; it needs both values (scikit-learn refuses a single \
         class too): give training rows with and without {model}"
    )]
    SingleClassModel {
        /// The class or label the model predicts.
        model: ProbeModel,
        /// Training rows with the class or label.
        positives: usize,
        /// Training rows.
        n_samples: usize,
    },
    /// Newton's method of a logistic probe did not reach the gradient tolerance.
    #[error(
        "logistic probe: Newton's method for the model of {model} stopped after \
         {iterations} of max_iter = {max_iter} steps with gradient max-norm {gradient:e} > \
         tol = {tol:e}: raise max_iter or tol"
    )]
    NotConverged {
        /// The class or label the model predicts.
        model: ProbeModel,
        /// Newton steps taken.
        iterations: usize,
        /// The allowed number of steps.
        max_iter: usize,
        /// The gradient's max-norm reached.
        gradient: f64,
        /// The tolerance asked for.
        tol: f64,
    },
    /// An intermediate value overflowed although every input is finite.
    #[error(
        "{what} is {value}: the features are too large for f64 arithmetic; \
         rescale them (for example to unit variance)"
    )]
    Overflow {
        /// What overflowed, with its row or column.
        what: String,
        /// The value reached (infinite or NaN).
        value: f64,
    },
    /// A bootstrap found the metric undefined on every resample.
    #[error("bootstrap: the metric is undefined on all {n_resamples} resamples (first: {first})")]
    NoValidReplicates {
        /// Number of resamples drawn.
        n_resamples: usize,
        /// The error of the first resample.
        first: Box<MetricsError>,
    },
}

impl MetricsError {
    /// Wraps `self` as the error of class or label column `column`.
    pub(crate) fn in_column(self, column: usize) -> Self {
        Self::Column {
            column,
            source: Box::new(self),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, MetricsError>;
