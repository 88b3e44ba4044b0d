//! The error type of `miram-core`.

use std::path::PathBuf;

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

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
    /// A step would need more memory than is available (checked before allocating).
    #[error(
        "{what} needs about {:.2} GiB ({detail}), but {:.2} GiB is available; {hint}",
        *needed as f64 / GIB,
        *available as f64 / GIB
    )]
    InsufficientMemory {
        /// What needs it (`batch 100000 of preset paper`).
        what: String,
        /// Bytes needed (an estimate).
        needed: u64,
        /// Bytes available.
        available: u64,
        /// How the estimate is made up.
        detail: String,
        /// What to do instead.
        hint: String,
    },
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
    /// An error from the dataset crate.
    #[cfg(feature = "dataset")]
    #[error(transparent)]
    Dataset(#[from] miram_cbis_ddsm::DdsmError),
    /// An error from the metrics crate.
    #[cfg(feature = "metrics")]
    #[error(transparent)]
    Metrics(#[from] miram_metrics::MetricsError),
    /// A NaN or infinite loss: training stopped, the last checkpoint is intact.
    #[error("non-finite loss {value} at step {step} (scale losses {losses:?}); training stopped, the last good checkpoint is {last_checkpoint}")]
    NonFiniteLoss {
        /// The optimiser step being computed.
        step: u64,
        /// The total loss.
        value: f64,
        /// Each scale's (or the task's) loss.
        losses: Vec<f64>,
        /// The last checkpoint written, or `none`.
        last_checkpoint: String,
    },
    /// A training or evaluation setting that cannot work, with the value at fault.
    #[error("training: {0}")]
    Train(String),
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
