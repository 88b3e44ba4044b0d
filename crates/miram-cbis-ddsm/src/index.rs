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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::csv::{locate_case_csvs, read_case_csv, CaseCsvs};
use crate::dicom::{check_gray, read_gray, read_header, DecodeLimits, DicomHeader, GrayImage};
use crate::error::{DdsmError, Result};
use crate::kaggle::{jpeg_size, read_dicom_info, read_jpeg, KaggleImage};
use crate::layout::{
    check_inside, csv_path_uids, detect_layout, kaggle_dicom_info, kaggle_jpeg_dir, list_files,
    literal_bases, resolve_within, tcia_base, Layout,
};
use crate::records::{CaseRecord, RecordSource};

/// The format tag of saved index files.
const FORMAT: &str = "miram-cbis-ddsm-index-v2";

/// How deep the files of a TCIA case folder are looked for (study / series / file).
const TCIA_DEPTH: usize = 4;

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

/// The size and modification time of a file when the index was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    /// The path, relative to the root when inside it.
    path: String,
    /// Size in bytes; `None` if the path did not exist.
    size: Option<u64>,
    /// Modification time (seconds, nanoseconds since the Unix epoch).
    modified: Option<(u64, u32)>,
}

/// The fingerprint of a folder the files of rows were looked for in (a TCIA case folder, a
/// Kaggle series folder): a file added, removed or changed anywhere in it changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FolderListing {
    /// The folder, relative to the root when inside it.
    dir: String,
    /// The file extensions listed.
    extensions: Vec<String>,
    /// How deep the folder was listed.
    depth: usize,
    /// SHA-256 (hex) of the sorted (path, size, modification time) of its files; `missing`
    /// when the folder does not exist.
    fingerprint: String,
}

impl FolderListing {
    fn of(root: &Path, dir: &Path, extensions: &[&str], depth: usize) -> Self {
        FolderListing {
            dir: relative(root, dir),
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            depth,
            fingerprint: listing_fingerprint(root, dir, extensions, depth),
        }
    }

    fn is_current(&self, root: &Path) -> bool {
        let p = Path::new(&self.dir);
        let dir = if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        };
        let ext: Vec<&str> = self.extensions.iter().map(String::as_str).collect();
        listing_fingerprint(root, &dir, &ext, self.depth) == self.fingerprint
    }
}

fn listing_fingerprint(root: &Path, dir: &Path, extensions: &[&str], depth: usize) -> String {
    use sha2::{Digest, Sha256};
    if !dir.is_dir() {
        return "missing".into();
    }
    let mut files = match list_files(root, dir, extensions, depth) {
        Ok(f) => f,
        Err(e) => return format!("unreadable: {e}"),
    };
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let s = stamp(root, f);
        h.update(s.path.as_bytes());
        h.update(format!("|{:?}|{:?}\n", s.size, s.modified).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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

    /// Saves the index as JSON at `path` (written to a temporary file, then renamed). Paths
    /// inside the root are stored relative to it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let saved = SavedIndex::from_index(self);
        let json = serde_json::to_vec(&saved).map_err(|e| DdsmError::Index {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) {
            let stem = stem.to_string_lossy().into_owned();
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            crate::stale::remove_stale_temps(dir, &|head| head == stem);
        }
        let tmp = crate::stale::temp_name(path, false);
        let not_writable = |e: std::io::Error| DdsmError::IndexNotWritable {
            path: path.to_path_buf(),
            source: e,
        };
        std::fs::write(&tmp, json).map_err(not_writable)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            not_writable(e)
        })
    }
}

/// The saved form of an index: paths relative to the root.
#[derive(Debug, Serialize, Deserialize)]
struct SavedIndex {
    format: String,
    layout: Layout,
    content_check: ContentCheck,
    limits: DecodeLimits,
    csv_files: Vec<PathBuf>,
    missing_csvs: Vec<String>,
    stamps: Vec<FileStamp>,
    listings: Vec<FolderListing>,
    entries: Vec<SavedCase>,
    unresolved: Vec<Unresolved>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedCase {
    record: CaseRecord,
    kind: ImageKind,
    full_image: String,
    crop: String,
    roi_mask: String,
    full_size: (u32, u32),
    crop_size: (u32, u32),
    mask_size: (u32, u32),
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

impl SavedIndex {
    fn from_index(index: &DatasetIndex) -> Self {
        let rel = |p: &Path| relative(&index.root, p);
        SavedIndex {
            format: FORMAT.to_string(),
            layout: index.layout,
            content_check: index.content_check,
            limits: index.limits,
            csv_files: index.csv_files.clone(),
            missing_csvs: index.missing_csvs.clone(),
            stamps: index.stamps.clone(),
            listings: index.listings.clone(),
            entries: index
                .entries
                .iter()
                .map(|e| SavedCase {
                    record: e.record.clone(),
                    kind: e.kind,
                    full_image: rel(&e.full_image),
                    crop: rel(&e.crop),
                    roi_mask: rel(&e.roi_mask),
                    full_size: e.full_size,
                    crop_size: e.crop_size,
                    mask_size: e.mask_size,
                })
                .collect(),
            unresolved: index.unresolved.clone(),
        }
    }

    fn into_index(self, root: &Path) -> Result<DatasetIndex> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for e in self.entries {
            entries.push(IndexedCase {
                full_image: resolve_within(root, &e.full_image)?,
                crop: resolve_within(root, &e.crop)?,
                roi_mask: resolve_within(root, &e.roi_mask)?,
                record: e.record,
                kind: e.kind,
                full_size: e.full_size,
                crop_size: e.crop_size,
                mask_size: e.mask_size,
            });
        }
        Ok(DatasetIndex {
            root: root.to_path_buf(),
            layout: self.layout,
            csv_files: self.csv_files,
            missing_csvs: self.missing_csvs,
            entries,
            unresolved: self.unresolved,
            loaded_from_cache: true,
            content_check: self.content_check,
            limits: self.limits,
            stamps: self.stamps,
            listings: self.listings,
        })
    }
}

fn stamp(root: &Path, path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok();
    FileStamp {
        path: relative(root, path),
        size: meta.as_ref().map(|m| if m.is_dir() { 0 } else { m.len() }),
        modified: meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| (d.as_secs(), d.subsec_nanos())),
    }
}

fn stamp_path(root: &Path, s: &FileStamp) -> PathBuf {
    let p = Path::new(&s.path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// The file an index of `root` is saved to with these options.
pub fn index_path(root: &Path, opts: &IndexOptions) -> PathBuf {
    opts.cache_path
        .clone()
        .unwrap_or_else(|| root.join(INDEX_FILE_NAME))
}

fn canonical_root(root: &Path) -> Result<PathBuf> {
    let real = root.canonicalize().map_err(|e| DdsmError::io(root, e))?;
    if !real.is_dir() {
        return Err(DdsmError::Layout {
            root: root.to_path_buf(),
            message: "the dataset root is not a folder".into(),
        });
    }
    Ok(real)
}

fn csv_files_of(root: &Path, opts: &IndexOptions) -> Result<CaseCsvs> {
    match &opts.csv_files {
        Some(files) if !files.is_empty() => Ok(CaseCsvs {
            found: files.clone(),
            missing: Vec::new(),
        }),
        _ => {
            let mut found = locate_case_csvs(root);
            // A root that is the `CBIS-DDSM` folder of a download: the CSVs may sit beside it.
            if matches!(found, Err(DdsmError::NoImages { .. }))
                && root.file_name().is_some_and(|n| n == "CBIS-DDSM")
            {
                if let Some(parent) = root.parent() {
                    found = locate_case_csvs(parent).or(found);
                }
            }
            found
        }
    }
}

/// Loads the saved index of `root` if it exists and is current: same layout request, same
/// content check and decoding limits, same CSV files (and the same ones missing), every file
/// it recorded (CSVs, images, and the paths tried for unresolved rows) with the same size and
/// modification time, and the same files in every case folder it looked in. `Ok(None)` when
/// there is no saved index or it is stale; an error when it cannot be read or names a path
/// outside the root.
pub fn load_index(root: &Path, opts: &IndexOptions) -> Result<Option<DatasetIndex>> {
    let real_root = canonical_root(root)?;
    let path = index_path(root, opts);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        // No saved index there (a folder in the path that is a file: nothing saved either;
        // saving then says why it cannot).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(DdsmError::io(&path, e)),
    };
    let saved: SavedIndex = serde_json::from_slice(&text).map_err(|e| DdsmError::Index {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if saved.format != FORMAT {
        return Ok(None);
    }
    if (opts.layout != Layout::Auto && opts.layout != saved.layout)
        || opts.content_check != saved.content_check
        || opts.limits != saved.limits
    {
        return Ok(None);
    }
    let Ok(csvs) = csv_files_of(&real_root, opts) else {
        return Ok(None);
    };
    if csvs.found != saved.csv_files || csvs.missing != saved.missing_csvs {
        return Ok(None);
    }
    let unchanged = saved
        .stamps
        .par_iter()
        .all(|s| stamp(&real_root, &stamp_path(&real_root, s)) == *s);
    if !unchanged || !saved.listings.par_iter().all(|l| l.is_current(&real_root)) {
        return Ok(None);
    }
    saved.into_index(&real_root).map(Some)
}

/// Loads the saved index of `root` if it is current (see [`load_index`]); otherwise builds it
/// ([`build_index`]) and saves it to [`index_path`]. A saved index that cannot be parsed is
/// rebuilt; one naming a path outside the root is refused.
pub fn load_or_build_index(
    root: &Path,
    opts: &IndexOptions,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<DatasetIndex> {
    match load_index(root, opts) {
        Ok(Some(index)) => return Ok(index),
        Ok(None) | Err(DdsmError::Index { .. }) => {}
        Err(e) => return Err(e),
    }
    let index = build_index(root, opts, progress)?;
    index.save(&index_path(root, opts))?;
    Ok(index)
}

/// Decodes an image of the dataset as grayscale: JPEG (Kaggle) by extension or content,
/// DICOM otherwise.
///
/// # Shapes
/// The result is `[height, width]`, row-major.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    if image_kind_of(path)? == ImageKind::Jpeg {
        read_jpeg(path, limits)
    } else {
        read_gray(path, limits)
    }
}

/// Whether a file is JPEG or DICOM: by extension, or by its first bytes (`FF D8` is JPEG).
pub fn image_kind_of(path: &Path) -> Result<ImageKind> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => Ok(ImageKind::Jpeg),
        "dcm" | "dicom" => Ok(ImageKind::Dicom),
        _ => {
            use std::io::Read;
            let mut head = [0u8; 2];
            let mut f = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
            let n = f.read(&mut head).map_err(|e| DdsmError::io(path, e))?;
            Ok(if n == 2 && head == [0xFF, 0xD8] {
                ImageKind::Jpeg
            } else {
                ImageKind::Dicom
            })
        }
    }
}

/// A file that may be the crop or the mask of a row.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    size: (u32, u32),
}

/// What a row resolved to, or why not.
type RowResult = std::result::Result<IndexedCase, Unresolved>;

struct Resolver<'a> {
    root: &'a Path,
    opts: &'a IndexOptions,
    kind: ImageKind,
}

impl Resolver<'_> {
    fn unresolved(
        &self,
        r: &CaseRecord,
        tried: Vec<PathBuf>,
        reason: String,
        undecodable: Vec<BadFile>,
    ) -> Unresolved {
        Unresolved {
            source: r.source.clone(),
            record: Box::new(r.clone()),
            tried,
            reason,
            undecodable,
        }
    }

    /// Checks that an image the crops are made from (full image, ROI mask) decodes, as far
    /// as [`check_gray`] can tell cheaply (DICOM only; JPEG sizes were read already).
    fn check_decodable(&self, c: &Candidate, what: &str) -> std::result::Result<(), BadFile> {
        if self.kind != ImageKind::Dicom {
            return Ok(());
        }
        check_gray(&c.path, &self.opts.limits)
            .map(|_| ())
            .map_err(|e| BadFile {
                path: c.path.clone(),
                error: format!("{what} cannot be decoded: {e}"),
            })
    }

    fn is_mask_like(&self, img: &GrayImage) -> bool {
        match self.kind {
            ImageKind::Dicom => img.is_binary(),
            // JPEG copies of masks carry compression noise at the edges.
            ImageKind::Jpeg => img.is_nearly_binary(img.max_value / 8, 0.02),
        }
    }

    /// Tells crop from mask; returns (crop, mask).
    fn classify(
        &self,
        full: (u32, u32),
        a: Candidate,
        b: Candidate,
    ) -> std::result::Result<(Candidate, Candidate), (String, Vec<BadFile>)> {
        if self.opts.content_check == ContentCheck::WhenAmbiguous {
            match (a.size == full, b.size == full) {
                (true, false) => return Ok((b, a)),
                (false, true) => return Ok((a, b)),
                _ => {}
            }
        }
        let load = |c: &Candidate| read_image(&c.path, &self.opts.limits);
        let (ia, ib) = match (load(&a), load(&b)) {
            (Ok(x), Ok(y)) => (x, y),
            (ra, rb) => {
                let bad: Vec<BadFile> = [(&a, ra.err()), (&b, rb.err())]
                    .into_iter()
                    .filter_map(|(c, e)| {
                        e.map(|e| BadFile {
                            path: c.path.clone(),
                            error: format!(
                                "cannot be decoded to tell the crop from the ROI mask: {e}"
                            ),
                        })
                    })
                    .collect();
                let reason = bad
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err((reason, bad));
            }
        };
        match (self.is_mask_like(&ia), self.is_mask_like(&ib)) {
            (true, false) => Ok((b, a)),
            (false, true) => Ok((a, b)),
            (x, _) => Err((
                format!(
                    "cannot tell the crop from the ROI mask: {} ({} x {}) and {} ({} x {}) are {} \
                 binary; the full image is {} x {}",
                    a.path.display(),
                    a.size.0,
                    a.size.1,
                    b.path.display(),
                    b.size.0,
                    b.size.1,
                    if x { "both" } else { "neither" },
                    full.0,
                    full.1
                ),
                Vec::new(),
            )),
        }
    }

    fn finish(
        &self,
        r: &CaseRecord,
        full: Candidate,
        a: Candidate,
        b: Candidate,
        tried: Vec<PathBuf>,
    ) -> RowResult {
        if a.path == b.path {
            return Err(self.unresolved(
                r,
                tried,
                format!("crop and ROI mask are one file: {}", a.path.display()),
                Vec::new(),
            ));
        }
        let undecodable = |bad: BadFile| {
            let reason = bad.to_string();
            self.unresolved(r, tried.clone(), reason, vec![bad])
        };
        if let Err(bad) = self.check_decodable(&full, "the full image") {
            return Err(undecodable(bad));
        }
        let classified = self.classify(full.size, a, b).and_then(|(crop, mask)| {
            self.check_decodable(&mask, "the ROI mask")
                .map(|()| (crop, mask))
                .map_err(|bad| (bad.to_string(), vec![bad]))
        });
        match classified {
            Ok((crop, mask)) => Ok(IndexedCase {
                record: r.clone(),
                kind: self.kind,
                full_image: full.path,
                crop: crop.path,
                roi_mask: mask.path,
                full_size: full.size,
                crop_size: crop.size,
                mask_size: mask.size,
            }),
            Err((reason, bad)) => Err(self.unresolved(r, tried, reason, bad)),
        }
    }

    fn resolve_literal(&self, r: &CaseRecord) -> RowResult {
        let bases = literal_bases(self.root);
        let mut tried = Vec::new();
        type Found = std::result::Result<Candidate, (String, Option<BadFile>)>;
        let mut find = |rel: &str, what: &str| -> Found {
            let mut last_err = format!("{what} not found");
            for base in &bases {
                match resolve_within(base, rel) {
                    Ok(p) => {
                        tried.push(p.clone());
                        if p.is_file() {
                            return read_header(&p)
                                .map(|h| Candidate {
                                    path: p.clone(),
                                    size: (h.columns, h.rows),
                                })
                                .map_err(|e| {
                                    let bad = BadFile {
                                        path: p.clone(),
                                        error: e.to_string(),
                                    };
                                    (format!("{what}: {e}"), Some(bad))
                                });
                        }
                    }
                    Err(e) => {
                        last_err = format!("{what}: {e}");
                        break;
                    }
                }
            }
            Err((last_err, None))
        };
        let full = find(&r.image_file_path, "full image");
        let a = find(&r.cropped_image_file_path, "cropped image file path");
        let b = find(&r.roi_mask_file_path, "ROI mask file path");
        match (full, a, b) {
            (Ok(full), Ok(a), Ok(b)) => self.finish(r, full, a, b, tried),
            (full, a, b) => {
                let errors: Vec<(String, Option<BadFile>)> = [full.err(), a.err(), b.err()]
                    .into_iter()
                    .flatten()
                    .collect();
                let reason = errors
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                let bad = errors.into_iter().filter_map(|(_, b)| b).collect();
                Err(self.unresolved(r, tried, reason, bad))
            }
        }
    }
}

/// What a folder of a TCIA download holds.
enum Folder {
    Missing(String),
    Files(Vec<PathBuf>),
}

fn resolve_tcia(
    root: &Path,
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Vec<RowResult> {
    let base = tcia_base(root);
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in records {
        names.insert(r.image_folder());
        names.insert(r.abnormality_folder());
    }
    let names: Vec<String> = names.into_iter().collect();
    let done = AtomicUsize::new(0);
    let total = names.len();
    let folders: HashMap<String, (PathBuf, Folder)> = names
        .par_iter()
        .map(|name| {
            let result = match resolve_within(&base, name) {
                Err(e) => (base.join("?"), Folder::Missing(e.to_string())),
                Ok(dir) if !dir.is_dir() => (
                    dir.clone(),
                    Folder::Missing(format!("folder {} does not exist", dir.display())),
                ),
                Ok(dir) => match list_files(root, &dir, &["dcm"], TCIA_DEPTH) {
                    Ok(files) => (dir, Folder::Files(files)),
                    Err(e) => (dir, Folder::Missing(e.to_string())),
                },
            };
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::Scanning,
                done: d,
                total,
            });
            (name.clone(), result)
        })
        .collect();
    let files: Vec<&PathBuf> = folders
        .values()
        .filter_map(|(_, f)| match f {
            Folder::Files(v) => Some(v),
            Folder::Missing(_) => None,
        })
        .flatten()
        .collect();
    let done = AtomicUsize::new(0);
    let total = files.len();
    let headers: HashMap<&Path, std::result::Result<DicomHeader, String>> = files
        .par_iter()
        .map(|p| {
            let h = read_header(p).map_err(|e| e.to_string());
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::ReadingHeaders,
                done: d,
                total,
            });
            (p.as_path(), h)
        })
        .collect();
    let done = AtomicUsize::new(0);
    let total = records.len();
    records
        .par_iter()
        .map(|r| {
            let out = resolve_tcia_row(r, &folders, &headers, resolver);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::Resolving,
                done: d,
                total,
            });
            out
        })
        .collect()
}

fn resolve_tcia_row(
    r: &CaseRecord,
    folders: &HashMap<String, (PathBuf, Folder)>,
    headers: &HashMap<&Path, std::result::Result<DicomHeader, String>>,
    resolver: &Resolver<'_>,
) -> RowResult {
    let mut tried = Vec::new();
    let mut problems = Vec::new();
    let mut bad = Vec::new();
    let mut readable = |name: &str| -> Vec<(PathBuf, DicomHeader)> {
        let Some((dir, folder)) = folders.get(name) else {
            return Vec::new();
        };
        tried.push(dir.clone());
        match folder {
            Folder::Missing(why) => {
                problems.push(why.clone());
                Vec::new()
            }
            Folder::Files(files) => {
                if files.is_empty() {
                    problems.push(format!("no .dcm file under {}", dir.display()));
                }
                files
                    .iter()
                    .filter_map(|p| match headers.get(p.as_path()) {
                        Some(Ok(h)) => Some((p.clone(), h.clone())),
                        Some(Err(e)) => {
                            problems.push(e.clone());
                            bad.push(BadFile {
                                path: p.clone(),
                                error: e.clone(),
                            });
                            None
                        }
                        None => None,
                    })
                    .collect()
            }
        }
    };
    let image_files = readable(&r.image_folder());
    let abnormality_files = readable(&r.abnormality_folder());
    let fail = |tried: Vec<PathBuf>, problems: Vec<String>, what: String| {
        let mut reason = what;
        if !problems.is_empty() {
            reason.push_str(": ");
            reason.push_str(&problems.join("; "));
        }
        Err(resolver.unresolved(r, tried, reason, bad.clone()))
    };
    // The full image: the file of the CSV's series, else of its study, else the only one.
    let (study, series) = csv_path_uids(&r.image_file_path);
    let pick = |pred: &dyn Fn(&DicomHeader) -> bool| -> Vec<&(PathBuf, DicomHeader)> {
        image_files.iter().filter(|(_, h)| pred(h)).collect()
    };
    let mut full = series
        .as_ref()
        .map(|s| pick(&|h| h.series_instance_uid == *s))
        .unwrap_or_default();
    if full.is_empty() {
        full = study
            .as_ref()
            .map(|s| pick(&|h| h.study_instance_uid == *s))
            .unwrap_or_default();
    }
    if full.is_empty() && image_files.len() == 1 {
        full = image_files.iter().collect();
    }
    let full = match full.as_slice() {
        [one] => Candidate {
            path: one.0.clone(),
            size: (one.1.columns, one.1.rows),
        },
        many => {
            let what = format!(
                "{} DICOM files in the case folder {} match the full image (series {}), expected 1",
                many.len(),
                r.image_folder(),
                series.as_deref().unwrap_or("?")
            );
            return fail(tried, problems, what);
        }
    };
    // Crop and mask: the files of the CSV's crop and mask series, else the folder's two files.
    let wanted: BTreeSet<String> = [&r.cropped_image_file_path, &r.roi_mask_file_path]
        .iter()
        .filter_map(|p| csv_path_uids(p).1)
        .collect();
    let matching: Vec<&(PathBuf, DicomHeader)> = abnormality_files
        .iter()
        .filter(|(_, h)| wanted.contains(&h.series_instance_uid))
        .collect();
    let pair: Vec<&(PathBuf, DicomHeader)> = if matching.len() == 2 {
        matching
    } else if abnormality_files.len() == 2 {
        abnormality_files.iter().collect()
    } else {
        let what = format!(
            "{} DICOM files in the abnormality folder {} ({} with the CSV's series UIDs), \
             expected a crop and a mask",
            abnormality_files.len(),
            r.abnormality_folder(),
            matching.len()
        );
        return fail(tried, problems, what);
    };
    let cand = |x: &(PathBuf, DicomHeader)| Candidate {
        path: x.0.clone(),
        size: (x.1.columns, x.1.rows),
    };
    tried.extend(pair.iter().map(|x| x.0.clone()));
    resolver.finish(r, full, cand(pair[0]), cand(pair[1]), tried)
}

fn resolve_kaggle(
    root: &Path,
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Vec<RowResult>> {
    let info_path = kaggle_dicom_info(root).ok_or_else(|| DdsmError::Layout {
        root: root.to_path_buf(),
        message: "no csv/dicom_info.csv: not the Kaggle layout".into(),
    })?;
    let jpeg_dir = kaggle_jpeg_dir(root).ok_or_else(|| DdsmError::Layout {
        root: root.to_path_buf(),
        message: "no jpeg/ folder: not the Kaggle layout".into(),
    })?;
    let info = read_dicom_info(root, &info_path)?;
    let mut by_series: BTreeMap<String, Vec<&KaggleImage>> = BTreeMap::new();
    for image in &info {
        by_series
            .entry(image.series_instance_uid.clone())
            .or_default()
            .push(image);
    }
    // Every series a row names, with its files: from dicom_info, else its jpeg/<uid>/ folder.
    let mut series: BTreeSet<String> = BTreeSet::new();
    for r in records {
        for p in [
            &r.image_file_path,
            &r.cropped_image_file_path,
            &r.roi_mask_file_path,
        ] {
            if let Some(s) = csv_path_uids(p).1 {
                series.insert(s);
            }
        }
    }
    let series: Vec<String> = series.into_iter().collect();
    let done = AtomicUsize::new(0);
    let total = series.len();
    let files: HashMap<String, (PathBuf, Vec<PathBuf>)> = series
        .par_iter()
        .map(|s| {
            let dir = resolve_within(&jpeg_dir, s).unwrap_or_else(|_| jpeg_dir.join("?"));
            let mut list: Vec<PathBuf> = by_series
                .get(s)
                .map(|v| v.iter().filter_map(|i| i.path.clone()).collect())
                .unwrap_or_default();
            if list.is_empty() && dir.is_dir() {
                list = list_files(root, &dir, &["jpg", "jpeg"], 0).unwrap_or_default();
            }
            list.sort();
            list.dedup();
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::Scanning,
                done: d,
                total,
            });
            (s.clone(), (dir, list))
        })
        .collect();
    let all: Vec<&PathBuf> = files.values().flat_map(|(_, v)| v).collect();
    let done = AtomicUsize::new(0);
    let total = all.len();
    let sizes: HashMap<&Path, std::result::Result<(u32, u32), String>> = all
        .par_iter()
        .map(|p| {
            let s = jpeg_size(p).map_err(|e| e.to_string());
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::ReadingHeaders,
                done: d,
                total,
            });
            (p.as_path(), s)
        })
        .collect();
    let done = AtomicUsize::new(0);
    let total = records.len();
    Ok(records
        .par_iter()
        .map(|r| {
            let out = resolve_kaggle_row(r, &files, &sizes, &by_series, resolver);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage: IndexStage::Resolving,
                done: d,
                total,
            });
            out
        })
        .collect())
}

fn resolve_kaggle_row(
    r: &CaseRecord,
    files: &HashMap<String, (PathBuf, Vec<PathBuf>)>,
    sizes: &HashMap<&Path, std::result::Result<(u32, u32), String>>,
    by_series: &BTreeMap<String, Vec<&KaggleImage>>,
    resolver: &Resolver<'_>,
) -> RowResult {
    let mut tried = Vec::new();
    let mut problems = Vec::new();
    let mut bad = Vec::new();
    let mut of_path = |p: &str| -> Vec<Candidate> {
        let Some(s) = csv_path_uids(p).1 else {
            problems.push(format!("no series UID in the CSV path {p:?}"));
            return Vec::new();
        };
        let Some((dir, list)) = files.get(&s) else {
            return Vec::new();
        };
        tried.push(dir.clone());
        if list.is_empty() {
            problems.push(format!(
                "series {s}: not in dicom_info.csv and no JPEG under {}",
                dir.display()
            ));
        }
        list.iter()
            .filter_map(|f| match sizes.get(f.as_path()) {
                Some(Ok(size)) => Some(Candidate {
                    path: f.clone(),
                    size: *size,
                }),
                Some(Err(e)) => {
                    problems.push(e.clone());
                    bad.push(BadFile {
                        path: f.clone(),
                        error: e.clone(),
                    });
                    None
                }
                None => None,
            })
            .collect()
    };
    let full = of_path(&r.image_file_path);
    let mut pair = of_path(&r.cropped_image_file_path);
    for c in of_path(&r.roi_mask_file_path) {
        if !pair.iter().any(|x| x.path == c.path) {
            pair.push(c);
        }
    }
    let fail = |tried: Vec<PathBuf>, problems: Vec<String>, what: String| {
        let mut reason = what;
        if !problems.is_empty() {
            reason.push_str(": ");
            reason.push_str(&problems.join("; "));
        }
        Err(resolver.unresolved(r, tried, reason, bad.clone()))
    };
    // Several files in the full image's series: keep the one described as the full image.
    let full = if full.len() > 1 {
        let described: Vec<Candidate> = full
            .iter()
            .filter(|c| {
                by_series.values().flatten().any(|i| {
                    i.path.as_deref() == Some(c.path.as_path())
                        && i.series_description
                            .as_deref()
                            .is_some_and(|d| d.contains("full"))
                })
            })
            .cloned()
            .collect();
        described
    } else {
        full
    };
    let full = match <[Candidate; 1]>::try_from(full) {
        Ok([one]) => one,
        Err(v) => {
            let what = format!("{} JPEG files for the full image, expected 1", v.len());
            return fail(tried, problems, what);
        }
    };
    let [a, b] = match <[Candidate; 2]>::try_from(pair) {
        Ok(x) => x,
        Err(v) => {
            let what = format!(
                "{} JPEG files for the crop and ROI mask, expected 2",
                v.len()
            );
            return fail(tried, problems, what);
        }
    };
    resolver.finish(r, full, a, b, tried)
}

/// Builds the index of a dataset root: reads the CSVs, detects or uses the layout, resolves
/// every row (in parallel, reporting progress), and records the size and modification time of
/// every file used. Does not save it (see [`load_or_build_index`]). Fails with
/// [`DdsmError::NoImages`] when not a single row resolves.
pub fn build_index(
    root: &Path,
    opts: &IndexOptions,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<DatasetIndex> {
    let real_root = canonical_root(root)?;
    let CaseCsvs {
        found: csv_files,
        missing: missing_csvs,
    } = csv_files_of(&real_root, opts)?;
    let mut records = Vec::new();
    for (i, file) in csv_files.iter().enumerate() {
        records.extend(read_case_csv(file)?);
        progress(IndexProgress {
            stage: IndexStage::ReadingCsv,
            done: i + 1,
            total: csv_files.len(),
        });
    }
    let layout = match opts.layout {
        Layout::Auto => detect_layout(&real_root, &records)?,
        other => other,
    };
    let kind = if layout == Layout::Kaggle {
        ImageKind::Jpeg
    } else {
        ImageKind::Dicom
    };
    let resolver = Resolver {
        root: &real_root,
        opts,
        kind,
    };
    let results: Vec<RowResult> = match layout {
        Layout::Literal => {
            let done = AtomicUsize::new(0);
            records
                .par_iter()
                .map(|r| {
                    let out = resolver.resolve_literal(r);
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(IndexProgress {
                        stage: IndexStage::Resolving,
                        done: d,
                        total: records.len(),
                    });
                    out
                })
                .collect()
        }
        Layout::Tcia => resolve_tcia(&real_root, &records, &resolver, progress),
        Layout::Kaggle => resolve_kaggle(&real_root, &records, &resolver, progress)?,
        Layout::Auto => unreachable_layout(&real_root)?,
    };
    let mut entries = Vec::new();
    let mut unresolved = Vec::new();
    for r in results {
        match r {
            Ok(e) => entries.push(e),
            Err(u) => unresolved.push(u),
        }
    }
    if entries.is_empty() {
        let mut failed: Vec<&BadFile> = Vec::new();
        for b in unresolved.iter().flat_map(|u| &u.undecodable) {
            if !failed.iter().any(|f| f.path == b.path) {
                failed.push(b);
            }
        }
        if let Some(first) = failed.first() {
            let missing: Vec<&Unresolved> =
                unresolved.iter().filter(|u| !u.is_undecodable()).collect();
            return Err(DdsmError::Undecodable {
                root: root.to_path_buf(),
                failed: failed.len(),
                first_file: first.path.clone(),
                first_error: first.error.clone(),
                rows_missing: missing.len(),
                first_missing: missing
                    .first()
                    .map(|u| format!("{}: {}", u.source, u.reason)),
            });
        }
        let mut tried = vec![format!("layout: {layout}")];
        tried.extend(unresolved.iter().take(3).map(|u| {
            format!(
                "{}: {} (tried {})",
                u.source,
                u.reason,
                u.tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }));
        if records.is_empty() {
            tried.push("the CSVs have no rows".into());
        }
        return Err(DdsmError::NoImages {
            root: root.to_path_buf(),
            tried,
        });
    }
    // Stamps: the CSVs, every file used, and every path tried for an unresolved row.
    let mut paths: BTreeSet<PathBuf> = csv_files.iter().cloned().collect();
    if layout == Layout::Kaggle {
        if let Some(p) = kaggle_dicom_info(&real_root) {
            paths.insert(p);
        }
    }
    for e in &entries {
        paths.insert(e.full_image.clone());
        paths.insert(e.crop.clone());
        paths.insert(e.roi_mask.clone());
    }
    for u in &unresolved {
        for p in &u.tried {
            paths.insert(p.clone());
            // A file added deep inside a tried folder changes only its own folder's time.
            if p.is_dir() {
                if let Ok(dirs) = list_dirs(p, 4) {
                    paths.extend(dirs);
                }
            }
        }
    }
    let paths: Vec<PathBuf> = paths.into_iter().collect();
    let stamps = paths.par_iter().map(|p| stamp(&real_root, p)).collect();
    // The folders files were looked for in: a file added to one (a second full image, a
    // re-download) changes what the rows resolve to.
    let mut folders: BTreeSet<PathBuf> = BTreeSet::new();
    let (extensions, depth): (&[&str], usize) = match layout {
        Layout::Tcia => {
            let base = tcia_base(&real_root);
            for r in &records {
                for name in [r.image_folder(), r.abnormality_folder()] {
                    if let Ok(dir) = resolve_within(&base, &name) {
                        folders.insert(dir);
                    }
                }
            }
            (&["dcm"], TCIA_DEPTH)
        }
        Layout::Kaggle => {
            if let Some(jpeg_dir) = kaggle_jpeg_dir(&real_root) {
                for r in &records {
                    for p in [
                        &r.image_file_path,
                        &r.cropped_image_file_path,
                        &r.roi_mask_file_path,
                    ] {
                        if let Some(dir) = csv_path_uids(p)
                            .1
                            .and_then(|s| resolve_within(&jpeg_dir, &s).ok())
                        {
                            folders.insert(dir);
                        }
                    }
                }
            }
            (&["jpg", "jpeg"], 0)
        }
        _ => (&[], 0),
    };
    let folders: Vec<PathBuf> = folders.into_iter().collect();
    let listings = folders
        .par_iter()
        .map(|d| FolderListing::of(&real_root, d, extensions, depth))
        .collect();
    for e in &entries {
        for p in [&e.full_image, &e.crop, &e.roi_mask] {
            check_inside(&real_root, p)?;
        }
    }
    Ok(DatasetIndex {
        root: real_root,
        layout,
        csv_files,
        missing_csvs,
        entries,
        unresolved,
        loaded_from_cache: false,
        content_check: opts.content_check,
        limits: opts.limits,
        stamps,
        listings,
    })
}

/// The folders under `dir` (to `max_depth` levels), symbolic links not followed.
fn list_dirs(dir: &Path, max_depth: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) && depth < max_depth {
                out.push(entry.path());
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(out)
}

fn unreachable_layout(root: &Path) -> Result<Vec<RowResult>> {
    Err(DdsmError::Layout {
        root: root.to_path_buf(),
        message: "the layout was not detected".into(),
    })
}
