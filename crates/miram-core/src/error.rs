//! The error type of `miram-core`.

use std::path::PathBuf;

/// Errors of the facade: configuration, model, checkpoints, optimisation and training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from a shared layer.
    #[error(transparent)]
    Nn(#[from] miram_nn::Error),
    /// An error from the masking.
    #[error(transparent)]
    Masking(#[from] miram_masking::Error),
    /// An error from the encoder.
    #[error(transparent)]
    Encoder(#[from] miram_encoder::Error),
    /// An error from the decoders.
    #[error(transparent)]
    Decoder(#[from] miram_decoder::Error),
    /// An error from the losses.
    #[error(transparent)]
    Losses(#[from] miram_losses::Error),
    /// An invalid configuration, with the field and value at fault.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An unknown preset name, with the known ones.
    #[error("unknown preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint that does not fit the model, with every name and shape at fault.
    #[error("checkpoint {path} does not fit the model: {details}")]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Missing, unexpected and mismatched names with their shapes.
        details: String,
    },
    /// A checkpoint that cannot be parsed.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An optimiser misuse (unknown parameter, shape change, bad state).
    #[error("optimizer: {0}")]
    Optimizer(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
