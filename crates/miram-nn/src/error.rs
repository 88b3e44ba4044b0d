//! The error type of `miram-nn`.

/// Errors of the shared layers: candle errors, and configurations that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle (shapes, devices, dtypes).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A layer configuration that cannot work, with the values at fault.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
