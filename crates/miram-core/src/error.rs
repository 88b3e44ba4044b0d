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
    /// An error from the model crates (shared layers, masking, encoder, decoders, losses):
    /// their one error type, [`miram_nn::Error`], with the names and shapes at fault.
    #[error(transparent)]
    Model(#[from] miram_nn::Error),
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
    /// A gradient whose shape is not its parameter's (or not that of the gradient it is
    /// accumulated into); nothing was changed.
    #[error("optimizer: the gradient of {parameter} has shape {gradient:?}, expected {expected:?} (the parameter's shape); nothing was changed")]
    GradientShape {
        /// The parameter's name.
        parameter: String,
        /// The gradient's shape.
        gradient: Vec<usize>,
        /// The shape expected.
        expected: Vec<usize>,
    },
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
    /// A tensor of a training step that is not on the run's device (the device audit of
    /// `train::placement`).
    #[error("{what} (shape {shape:?}) is on {found}, but the run's model is on {expected}: every tensor of a step must be on the run's device")]
    WrongDevice {
        /// The tensor.
        what: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The run's device.
        expected: String,
        /// Where the tensor is.
        found: String,
    },
    /// Settings out of their allowed range: every one at fault, with its key, value and range.
    #[error("{}", InvalidSetting::join(problems))]
    InvalidSettings {
        /// The settings at fault.
        problems: Vec<InvalidSetting>,
    },
    /// Another process holds the run folder.
    #[error("run folder {path} is in use by process {pid} (lock file {lock}); wait for that run to end or stop it, or use another --out")]
    RunLocked {
        /// The run folder.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id, as written in the lock file (`unknown` when unreadable).
        pid: String,
    },
    /// A run folder that cannot be resumed with this configuration or data.
    #[error("cannot resume the run in {path}: it was started with {what} ({}); run it with what it was started with, or start a new run with --restart (RunOptions::resume = false), which moves the old run aside", differences.join("; "))]
    ResumeMismatch {
        /// The run folder.
        path: PathBuf,
        /// `another configuration` or `other data`.
        what: String,
        /// Each difference, `key: was -> now`.
        differences: Vec<String>,
    },
    /// A gradient with a NaN or infinite value: the step was not applied.
    #[error("non-finite gradient of {parameter} at step {step}: the step was not applied and training stopped; the last good checkpoint is {last_checkpoint}")]
    NonFiniteGradient {
        /// The optimiser step being computed.
        step: u64,
        /// The first parameter whose gradient is not finite.
        parameter: String,
        /// The last checkpoint written, or `none`.
        last_checkpoint: String,
    },
    /// A weight or optimiser moment became NaN or infinite after a step.
    #[error("non-finite value in {tensor} after step {step}: training stopped, nothing of this step was saved; the last good checkpoint is {last_checkpoint}")]
    NonFiniteState {
        /// The optimiser step just applied.
        step: u64,
        /// The first tensor (parameter or `exp_avg.*` / `exp_avg_sq.*` moment) at fault.
        tensor: String,
        /// The last checkpoint written, or `none`.
        last_checkpoint: String,
    },
    /// A checkpoint file (read or about to be written) holding a NaN or infinite value.
    #[error("{path}: tensor {tensor} holds NaN or infinite values")]
    NonFiniteTensor {
        /// The file.
        path: PathBuf,
        /// The first tensor at fault.
        tensor: String,
    },
}

/// One setting out of its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The key, dotted (`blr`, `model.mask_ratio`, `pretrain.betas.1`).
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is allowed (`must be > 0`, `must be in [0, 1)`).
    pub allowed: String,
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.key, self.allowed)
        } else {
            write!(f, "{} = {}: {}", self.key, self.value, self.allowed)
        }
    }
}

impl InvalidSetting {
    fn join(problems: &[InvalidSetting]) -> String {
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The same error with setting keys under `prefix` (`blr` becomes `pretrain.blr`);
    /// other errors are returned as they are.
    pub fn under(self, prefix: &str) -> Self {
        match self {
            Self::InvalidSettings { problems } => Self::InvalidSettings {
                problems: problems
                    .into_iter()
                    .map(|p| InvalidSetting {
                        key: format!("{prefix}.{}", p.key),
                        ..p
                    })
                    .collect(),
            },
            e => e,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
