//! The dataset index: every CSV row resolved to its full image, lesion crop and ROI mask on
//! disk, built once (in parallel), saved as JSON, and reused while the files are unchanged.
//!
//! Resolution follows docs/dataset.md: literal CSV paths when they exist, otherwise the
//! case folder plus the UIDs in the DICOM headers (a TCIA download), or `dicom_info.csv` and
//! the series folders of the Kaggle JPEG copy. The CSVs swap crop and mask file names (mass
//! files name the crop `000000.dcm`, calc files the mask, with exceptions), so the two are
//! told apart by content: a mask is as large as the full image and binary; a crop is small.
//! The full image and ROI mask of every row are checked to decode as far as that is cheap
//! ([`crate::dicom::check_gray`]). Rows that cannot be resolved are listed in
//! [`DatasetIndex::unresolved`] with the paths tried and the reason, and the files that exist
//! but do not decode ([`Unresolved::undecodable`]); an index with no row at all is an error
//! ([`DdsmError::Undecodable`] when images were found that do not decode).
//!
//! # Files
//! - `mod.rs` (this file): the public types of an index.
//! - `build.rs`: [`build_index`], in named steps: read the CSVs, resolve the rows in the
//!   layout's file, refuse an index without rows, stamp the files and folders used.
//! - `saved.rs`: the saved-index format (JSON, paths relative to the root), [`load_index`],
//!   [`load_or_build_index`] and [`index_path`].
//! - `resolve.rs`: what every layout shares: the `Resolver` that tells crop from mask and
//!   checks that images decode, and the `Resolution` a layout returns.
//! - `literal.rs`, `tcia.rs`, `kaggle.rs`: one file per layout ([`Layout`]): literal CSV
//!   paths, a TCIA download (case folders and DICOM UIDs), the Kaggle JPEG copy.
//! - `image.rs`: [`read_image`] and [`image_kind_of`] (JPEG or DICOM).
//!
//! # Adding a layout
//! A new layout is a variant of [`Layout`] (with its detection in `crate::layout`), one new
//! file here with a `resolve(records, resolver, progress) -> Result<Resolution>` (one
//! `RowResult` per row, in order, and the files and folders the saved index must
//! watch), and one match arm in `build.rs`'s `resolve_rows`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dicom::DecodeLimits;
use crate::layout::Layout;
use crate::records::{CaseRecord, RecordSource};

mod build;
mod image;
mod kaggle;
mod literal;
mod resolve;
mod saved;
mod tcia;

pub use build::build_index;
pub use image::{image_kind_of, is_png, read_image, read_png};
pub use saved::{index_path, load_index, load_or_build_index};
use saved::{FileStamp, FolderListing};

/// The default file name of a saved index, in the dataset root.
pub const INDEX_FILE_NAME: &str = ".miram-index.json";

/// The file format of the images of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageKind {
    /// DICOM (TCIA downloads, literal paths).
    Dicom,
    /// JPEG (the Kaggle copy).
    Jpeg,
}

/// When crop and ROI mask are told apart by decoding their pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ContentCheck {
    /// Only when the header sizes do not decide: exactly one of the two files has the size of
    /// the full image, that one is the mask. Otherwise the binary one is the mask.
    #[default]
    WhenAmbiguous,
    /// Always decode both and take the binary one as the mask.
    Always,
}

/// How an index is built and where it is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexOptions {
    /// The layout to resolve files with; [`Layout::Auto`] detects it.
    pub layout: Layout,
    /// The case-description CSVs; `None` finds them under the root
    /// ([`find_case_csvs`]).
    pub csv_files: Option<Vec<PathBuf>>,
    /// Where the index is saved; `None` is `<root>/.miram-index.json`.
    pub cache_path: Option<PathBuf>,
    /// Bounds on decoded images (content checks).
    pub limits: DecodeLimits,
    /// When crop and mask are told apart by content.
    pub content_check: ContentCheck,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            layout: Layout::Auto,
            csv_files: None,
            cache_path: None,
            limits: DecodeLimits::default(),
            content_check: ContentCheck::WhenAmbiguous,
        }
    }
}

impl IndexOptions {
    /// Options for a given layout, the rest default.
    pub fn with_layout(layout: Layout) -> Self {
        IndexOptions {
            layout,
            ..Self::default()
        }
    }
}

/// The stage an index build is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexStage {
    /// Reading the case-description CSVs (`done`/`total` count files).
    ReadingCsv,
    /// Listing the case folders (`done`/`total` count folders).
    Scanning,
    /// Reading image headers (`done`/`total` count files).
    ReadingHeaders,
    /// Resolving rows, decoding images where crop and mask must be told apart by content
    /// (`done`/`total` count rows).
    Resolving,
}

/// Progress of an index build, reported through the callback of [`build_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexProgress {
    /// The stage.
    pub stage: IndexStage,
    /// Items done in this stage.
    pub done: usize,
    /// Items in this stage.
    pub total: usize,
}

/// A progress callback that ignores the reports.
pub fn no_progress(_: IndexProgress) {}

/// One CSV row resolved to its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedCase {
    /// The CSV row.
    pub record: CaseRecord,
    /// DICOM or JPEG.
    pub kind: ImageKind,
    /// The full mammogram (absolute path inside the root).
    pub full_image: PathBuf,
    /// The lesion crop made by the dataset's authors.
    pub crop: PathBuf,
    /// The ROI mask (binary, the size of the full image).
    pub roi_mask: PathBuf,
    /// (width, height) of the full image.
    pub full_size: (u32, u32),
    /// (width, height) of the crop.
    pub crop_size: (u32, u32),
    /// (width, height) of the mask.
    pub mask_size: (u32, u32),
}

/// A file that exists but cannot be read or decoded, with the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadFile {
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be used (the decoder's error, naming the field or value at fault).
    pub error: String,
}

impl std::fmt::Display for BadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::error::file_and_error(&self.path, &self.error))
    }
}

/// A CSV row that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    /// The CSV file and row.
    pub source: RecordSource,
    /// The row itself (its split, labels and paths).
    pub record: Box<CaseRecord>,
    /// The paths (files or folders) that were tried.
    pub tried: Vec<PathBuf>,
    /// Why the row could not be resolved.
    pub reason: String,
    /// The files of the row that exist but cannot be read or decoded (a corrupt full image,
    /// a header the decoder refuses, pixel data over the limits); empty when the row's files
    /// are missing or ambiguous.
    pub undecodable: Vec<BadFile>,
}

impl Unresolved {
    /// Whether the row was left out because a file of it exists but does not decode (rather
    /// than because its files are missing).
    pub fn is_undecodable(&self) -> bool {
        !self.undecodable.is_empty()
    }
}

/// Every CSV row of a dataset resolved to files, or listed as unresolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetIndex {
    /// The dataset root (canonical).
    pub root: PathBuf,
    /// The layout the files were found in.
    pub layout: Layout,
    /// The case-description CSVs read.
    pub csv_files: Vec<PathBuf>,
    /// The names of the four expected case-description CSVs that were not found (when the
    /// CSVs were looked for under the root rather than given).
    pub missing_csvs: Vec<String>,
    /// The resolved rows, in CSV order (files as listed in `csv_files`).
    pub entries: Vec<IndexedCase>,
    /// The rows that could not be resolved, with the paths tried.
    pub unresolved: Vec<Unresolved>,
    /// Whether this index was loaded from a saved file rather than built.
    #[serde(skip)]
    pub loaded_from_cache: bool,
    content_check: ContentCheck,
    limits: DecodeLimits,
    stamps: Vec<FileStamp>,
    listings: Vec<FolderListing>,
}

impl DatasetIndex {
    /// The number of resolved rows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no row was resolved (never the case for a built index).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
