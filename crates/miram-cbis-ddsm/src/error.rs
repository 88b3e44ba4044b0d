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
    /// A DICOM header whose image fields describe no decodable pixel data (Rows or Columns
    /// 0, Samples per Pixel 0, Bits Stored above Bits Allocated, ...): refused as pydicom
    /// refuses it when decoding.
    #[error("DICOM file {}: {field} is {value}; {allowed}", path.display())]
    BadHeader {
        /// The DICOM file.
        path: PathBuf,
        /// The header field, e.g. `Rows (0028,0010)`.
        field: String,
        /// The value found.
        value: String,
        /// What the value must be.
        allowed: String,
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
    /// A PNG file (a lesion crop or ROI mask given to `miram predict`) that cannot be
    /// decoded.
    #[error("PNG file {}: {message}", path.display())]
    Png {
        /// The PNG file.
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
    /// Not a single row could be indexed, and image files were found that do not decode:
    /// says how many, and the first with its cause (not "no images").
    #[error(
        "{}: no row could be indexed: {}{}",
        root.display(),
        if *rows_missing == 0 {
            format!("all {failed} images failed to decode; first: {}", file_and_error(first_file, first_error))
        } else {
            format!("{failed} images failed to decode (first: {})", file_and_error(first_file, first_error))
        },
        match (rows_missing, first_missing) {
            (0, _) => String::new(),
            (n, Some(m)) => format!("; {n} other rows have missing files (first: {m})"),
            (n, None) => format!("; {n} other rows have missing files"),
        }
    )]
    Undecodable {
        /// The dataset root.
        root: PathBuf,
        /// The number of distinct image files that failed to decode.
        failed: usize,
        /// The first of them.
        first_file: PathBuf,
        /// Why it failed.
        first_error: String,
        /// Rows left out for another reason (missing files).
        rows_missing: usize,
        /// The first of those rows and its reason.
        first_missing: Option<String>,
    },
    /// Official test cases of a task are left out of its test set while the configuration
    /// requires every one of them.
    #[error(
        "{} official test cases of the task {task} cannot be used, and all are required: {}; \
         fix or remove those files, or allow missing test cases (unset data.require_all_test_cases / --strict-test)",
        cases.len(),
        cases.join("; ")
    )]
    MissingTestCases {
        /// The task.
        task: String,
        /// Each missing case: `<CSV>:<row>: <file>: <cause>`.
        cases: Vec<String>,
    },
    /// A folder (or other non-file) where a file is expected.
    #[error("{} is a folder, not a file: {expected} is expected there; rename or remove the folder", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What file is expected there.
        expected: String,
    },
    /// A saved index that cannot be written where it is to be saved (a read-only dataset).
    #[error("cannot save the index to {}: {source}; choose a writable place for the index file", path.display())]
    IndexNotWritable {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
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

/// `<file>: <error>`, the file named once: errors of this crate name their file already.
pub fn file_and_error(file: &std::path::Path, error: &str) -> String {
    let shown = file.display().to_string();
    if error.contains(&shown) {
        error.to_string()
    } else {
        format!("{shown}: {error}")
    }
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
