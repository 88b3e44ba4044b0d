//! The error type of the crate: every failure names the file, row, column or value at fault.
//!
//! Reading a dataset a user downloaded meets many kinds of bad input (a CSV with an unknown
//! label, a truncated DICOM, a path that leaves the dataset root); each gets its own variant
//! so that callers can match on it and the message tells the user exactly what to fix.

use std::path::PathBuf;

/// Everything that can go wrong while reading, indexing or writing CBIS-DDSM data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DdsmError {
    /// An operating-system error on a file or folder.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file that cannot be parsed (bad quoting, wrong number of fields, a bad number).
    #[error("{}: row {row}, column {column:?}: {message}", file.display())]
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// The 1-based record number (the header excluded); 0 for the header itself.
        row: usize,
        /// The column (header name), or empty when the error concerns the whole row.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A CSV file whose header is not one of the known CBIS-DDSM column sets.
    #[error(
        "{}: not a CBIS-DDSM case-description header: missing columns {missing:?}, unknown columns {unknown:?}",
        file.display()
    )]
    Columns {
        /// The CSV file.
        file: PathBuf,
        /// Columns the file should have and does not.
        missing: Vec<String>,
        /// Columns the file has that no CBIS-DDSM file has.
        unknown: Vec<String>,
    },
    /// A categorical value outside the known vocabulary of its column.
    #[error("{}: row {row}, column {column:?}: unknown value {value:?}", file.display())]
    UnknownValue {
        /// The CSV file.
        file: PathBuf,
        /// The 1-based record number (the header excluded).
        row: usize,
        /// The column (header name).
        column: String,
        /// The value found.
        value: String,
    },
    /// A `column:` task whose column the case-description CSVs do not have, or have without
    /// any value.
    #[error("task column {column:?}: {problem}; the columns a task can use: {}", available.join(", "))]
    TaskColumn {
        /// The column as given.
        column: String,
        /// What is wrong with it.
        problem: String,
        /// The columns of the loaded CSVs a categorical task can use, quoted.
        available: Vec<String>,
    },
    /// A DICOM file that cannot be read or decoded.
    #[error("DICOM file {}: {message}", path.display())]
    Dicom {
        /// The DICOM file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image whose header declares more pixels than the configured decoding limits.
    #[error(
        "{}: header declares {rows} x {columns} pixels x {frames} frames x {samples} samples, over the limit of {limit}",
        path.display()
    )]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Declared rows.
        rows: u64,
        /// Declared columns.
        columns: u64,
        /// Declared frames.
        frames: u64,
        /// Declared samples per pixel.
        samples: u64,
        /// The limit that was exceeded (pixels or frames).
        limit: u64,
    },
    /// Pixel data shorter than the header says (a truncated file).
    #[error("{}: pixel data has {found} bytes, the header needs {expected}", path.display())]
    Truncated {
        /// The image file.
        path: PathBuf,
        /// Bytes the header needs.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// A feature of a file that this crate does not handle (a transfer syntax, a photometric
    /// interpretation, a bit depth).
    #[error("{}: unsupported {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported, with its value.
        what: String,
    },
    /// A JPEG file (Kaggle layout) that cannot be decoded.
    #[error("JPEG file {}: {message}", path.display())]
    Jpeg {
        /// The JPEG file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A path (from a CSV or an index) that resolves outside the dataset root.
    #[error("path {} leaves the dataset root {}", path.display(), root.display())]
    OutsideRoot {
        /// The offending path.
        path: PathBuf,
        /// The dataset root.
        root: PathBuf,
    },
    /// No image at all could be found under a dataset root.
    #[error("no images found under {}; tried: {}", root.display(), tried.join("; "))]
    NoImages {
        /// The dataset root.
        root: PathBuf,
        /// What was tried (layouts, example paths).
        tried: Vec<String>,
    },
    /// A dataset root whose layout cannot be recognised, or is not the one requested.
    #[error("{}: {message}", root.display())]
    Layout {
        /// The dataset root.
        root: PathBuf,
        /// What was expected and found.
        message: String,
    },
    /// A saved index that cannot be read or written.
    #[error("index file {}: {message}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor could not be made (candle).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// An argument or configuration value out of range.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The argument or setting.
        what: String,
        /// What is wrong, with the value.
        message: String,
    },
}

/// The result type of the crate.
pub type Result<T> = std::result::Result<T, DdsmError>;

impl DdsmError {
    /// An [`DdsmError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DdsmError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`DdsmError::Dicom`] for `path`.
    pub fn dicom(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        DdsmError::Dicom {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
