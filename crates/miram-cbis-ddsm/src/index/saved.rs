//! The saved index: its JSON format (paths relative to the root, the stamps of every file
//! used and the fingerprints of every folder looked in), saving it, and loading it back only
//! while it is current.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::build::{build_index, canonical_root, csv_files_of};
use super::{
    ContentCheck, DatasetIndex, ImageKind, IndexOptions, IndexProgress, IndexedCase, Unresolved,
    INDEX_FILE_NAME,
};
use crate::dicom::DecodeLimits;
use crate::error::{DdsmError, Result};
use crate::layout::{list_files, resolve_within, Layout};
use crate::records::CaseRecord;

/// The format tag of saved index files.
const FORMAT: &str = "miram-cbis-ddsm-index-v2";

/// The size and modification time of a file when the index was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileStamp {
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
pub(super) struct FolderListing {
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
    /// The listing of `dir` as it is now.
    pub(super) fn of(root: &Path, dir: &Path, extensions: &[&str], depth: usize) -> Self {
        FolderListing {
            dir: relative(root, dir),
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            depth,
            fingerprint: listing_fingerprint(root, dir, extensions, depth),
        }
    }

    /// Whether `dir` still lists as recorded.
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

/// SHA-256 (hex) of the sorted (path, size, modification time) of the files under `dir`;
/// `missing` or `unreadable: ...` when it cannot be listed.
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

impl DatasetIndex {
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

/// The saved form of an [`IndexedCase`]: paths relative to the root.
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

/// `path` relative to `root` when inside it, as text.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

impl SavedIndex {
    /// The saved form of `index`.
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

    /// The index again, its paths resolved under `root` (refused when outside it).
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

/// The stamp of `path` as it is now.
pub(super) fn stamp(root: &Path, path: &Path) -> FileStamp {
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

/// The path a stamp names (relative ones under `root`).
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
