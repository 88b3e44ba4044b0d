//! The error type of the model crates: `miram-nn`, and through re-exports `miram-masking`,
//! `miram-encoder`, `miram-decoder` and `miram-losses`.
//!
//! One enum with structured variants: each carries the names, values and shapes at fault, so
//! that a caller can match on what went wrong and the message says it in full.

/// Errors of the shared layers, the masking, the encoder, the decoders and the losses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle (shapes, devices, dtypes).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value out of its allowed range.
    #[error("invalid configuration: {field} = {value}, must be {allowed}")]
    InvalidConfig {
        /// The setting (`num_classes`, `drop_path`, `linformer k`).
        field: &'static str,
        /// The value given, as written.
        value: String,
        /// What is allowed (`at least 1`, `in [0, 1)`).
        allowed: &'static str,
    },
    /// A size that must be a positive multiple of another.
    #[error("{what} = {value} must be a positive multiple of {by} ({reason})")]
    NotDivisible {
        /// The size at fault (`img_size`, `embed_dim`).
        what: &'static str,
        /// Its value.
        value: usize,
        /// The divisor.
        by: usize,
        /// What the divisor is (`patch_size`, `num_heads`, `2-D sin-cos table`).
        reason: &'static str,
    },
    /// A tensor (or image size) whose shape is not the one expected.
    #[error("{what}: got shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor at fault (`noise`, `labels`, a parameter's name).
        what: String,
        /// The shape expected.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A number of items (masks, weights, predictions) that is not the one expected.
    #[error("{what}: got {got}, expected {expected}")]
    CountMismatch {
        /// What is counted, and what it should match (`class weights (one per class)`).
        what: &'static str,
        /// The count expected.
        expected: usize,
        /// The count given.
        got: usize,
    },
    /// Images that are not a whole number of patches.
    #[error("{what}: image {height}x{width} is not a whole number of {patch}x{patch} patches")]
    NotPatchGrid {
        /// The operation (`patchify`).
        what: &'static str,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Patch side.
        patch: usize,
    },
    /// A token sequence whose length is not that of the grid it should fill.
    #[error("{what}: {tokens} tokens are not a {rows}x{cols} grid")]
    NotAGrid {
        /// The tokens at fault (`mask`, `decoder tokens`).
        what: &'static str,
        /// The sequence length.
        tokens: usize,
        /// Grid rows.
        rows: usize,
        /// Grid columns.
        cols: usize,
    },
    /// More kept tokens than the sequence has.
    #[error("cannot keep {keep} of {tokens} tokens")]
    TooManyKept {
        /// The tokens to keep.
        keep: usize,
        /// The sequence length.
        tokens: usize,
    },
    /// A class label outside `0..classes`.
    #[error("label {label} for {classes} classes")]
    LabelOutOfRange {
        /// The largest label given.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// A scale index the model does not have.
    #[error("no scale {index} (the model has {scales})")]
    UnknownScale {
        /// The index asked for.
        index: usize,
        /// The number of scales.
        scales: usize,
    },
    /// An error in the configuration of one decoder scale.
    #[error("scales[{index}]: {source}")]
    InScale {
        /// The scale's index in the configuration.
        index: usize,
        /// What is wrong with it.
        source: Box<Error>,
    },
    /// A parameter or buffer name the store does not hold.
    #[error("no parameter or buffer named {name}")]
    UnknownParameter {
        /// The name asked for.
        name: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidConfig`] for `field` with the value shown by `Display`.
    pub fn invalid_config(
        field: &'static str,
        value: impl std::fmt::Display,
        allowed: &'static str,
    ) -> Self {
        Self::InvalidConfig {
            field,
            value: value.to_string(),
            allowed,
        }
    }

    /// An [`Error::ShapeMismatch`] for `what`.
    pub fn shape_mismatch(what: impl Into<String>, expected: &[usize], got: &[usize]) -> Self {
        Self::ShapeMismatch {
            what: what.into(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values_at_fault() {
        let e = Error::NotDivisible {
            what: "embed_dim",
            value: 30,
            by: 4,
            reason: "2-D sin-cos table",
        };
        assert_eq!(
            e.to_string(),
            "embed_dim = 30 must be a positive multiple of 4 (2-D sin-cos table)"
        );
        let e = Error::shape_mismatch("noise", &[2, 16], &[2, 15]);
        assert_eq!(e.to_string(), "noise: got shape [2, 15], expected [2, 16]");
        let e = Error::InScale {
            index: 1,
            source: Box::new(Error::invalid_config("linformer k", 0, "at least 1")),
        };
        assert_eq!(
            e.to_string(),
            "scales[1]: invalid configuration: linformer k = 0, must be at least 1"
        );
    }
}
