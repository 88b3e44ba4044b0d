//! Where CBIS-DDSM files lie: the three layouts users have, their detection, and paths that
//! must stay inside the dataset root.
//!
//! - [`Layout::Literal`]: the paths of the CSVs, relative to the root
//!   (`Mass-Training_P_00001_LEFT_CC/<study UID>/<series UID>/000000.dcm`).
//! - [`Layout::Tcia`]: what the NBIA Data Retriever writes (docs/dataset.md):
//!   `CBIS-DDSM/<case folder>/<MM-DD-YYYY>-DDSM-NA-<nnnnn>/<n>.000000-<description>-<nnnnn>/1-1.dcm`;
//!   only the case folder and the UIDs inside the DICOM headers can be trusted.
//! - [`Layout::Kaggle`]: the JPEG re-distribution, `csv/dicom_info.csv` and
//!   `jpeg/<SeriesInstanceUID>/<n>.jpg`.
//!
//! Every path built from data (a CSV path, a folder name, a saved index) goes through
//! [`resolve_within`], which refuses `..`, absolute paths and symbolic links that leave the
//! root.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DdsmError, Result};
use crate::records::CaseRecord;

/// The layout of a dataset root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Layout {
    /// The CSV paths taken literally, under the root (or `root/CBIS-DDSM`).
    Literal,
    /// A TCIA download: case folders, date-named study folders, description-named series
    /// folders, `1-1.dcm`; matched through the DICOM headers.
    Tcia,
    /// The Kaggle JPEG copy: `csv/dicom_info.csv` and `jpeg/<SeriesInstanceUID>/*.jpg`.
    Kaggle,
    /// Detect the layout from what is on disk.
    #[default]
    Auto,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Layout::Literal => "literal CSV paths",
            Layout::Tcia => "TCIA download (case/study/series folders)",
            Layout::Kaggle => "Kaggle JPEG copy (csv/dicom_info.csv, jpeg/<series UID>/)",
            Layout::Auto => "automatic detection",
        };
        f.write_str(name)
    }
}

/// The root of the image tree of a TCIA download: `root/CBIS-DDSM` if it exists, else the
/// root itself (the user pointed at the `CBIS-DDSM` folder).
pub fn tcia_base(root: &Path) -> PathBuf {
    let inner = root.join("CBIS-DDSM");
    if inner.is_dir() {
        inner
    } else {
        root.to_path_buf()
    }
}

/// The folders under which literal CSV paths are looked up: the root and `root/CBIS-DDSM`.
pub fn literal_bases(root: &Path) -> Vec<PathBuf> {
    let mut bases = vec![root.to_path_buf()];
    let inner = root.join("CBIS-DDSM");
    if inner.is_dir() {
        bases.push(inner);
    }
    bases
}

/// The `dicom_info.csv` of a Kaggle copy, if there is one (`root/csv/` or `root/`).
pub fn kaggle_dicom_info(root: &Path) -> Option<PathBuf> {
    [
        root.join("csv").join("dicom_info.csv"),
        root.join("dicom_info.csv"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The `jpeg` folder of a Kaggle copy (`root/jpeg` or `root/CBIS-DDSM/jpeg`).
pub fn kaggle_jpeg_dir(root: &Path) -> Option<PathBuf> {
    [root.join("jpeg"), root.join("CBIS-DDSM").join("jpeg")]
        .into_iter()
        .find(|p| p.is_dir())
}

/// Detects the layout of `root` for these records: Kaggle if `dicom_info.csv` and a `jpeg`
/// folder exist; Literal if the full-image path of any of the first records exists as
/// written; TCIA if the case folder of any of them exists; otherwise
/// [`DdsmError::NoImages`] naming what was tried.
pub fn detect_layout(root: &Path, records: &[CaseRecord]) -> Result<Layout> {
    let mut tried = Vec::new();
    match (kaggle_dicom_info(root), kaggle_jpeg_dir(root)) {
        (Some(_), Some(_)) => return Ok(Layout::Kaggle),
        _ => tried.push(format!(
            "Kaggle: {} with {}",
            root.join("csv/dicom_info.csv").display(),
            root.join("jpeg").display()
        )),
    }
    let sample: Vec<&CaseRecord> = records.iter().take(50).collect();
    for r in &sample {
        for base in literal_bases(root) {
            if let Ok(p) = resolve_within(&base, &r.image_file_path) {
                if p.is_file() {
                    return Ok(Layout::Literal);
                }
            }
        }
    }
    if let Some(r) = sample.first() {
        tried.push(format!(
            "literal: {}",
            root.join(&r.image_file_path).display()
        ));
    }
    let base = tcia_base(root);
    for r in &sample {
        if let Ok(p) = resolve_within(&base, &r.image_folder()) {
            if p.is_dir() {
                return Ok(Layout::Tcia);
            }
        }
    }
    if let Some(r) = sample.first() {
        tried.push(format!("TCIA: {}", base.join(r.image_folder()).display()));
    }
    Err(DdsmError::NoImages {
        root: root.to_path_buf(),
        tried,
    })
}

/// Joins a relative path from data (a CSV path, a folder name, a saved index entry) to
/// `root`, refusing anything that would leave it: absolute paths, `..` components, and (for
/// paths that exist) symbolic links whose target lies outside the canonical root.
/// Backslashes count as separators, as in Windows-written CSVs.
pub fn resolve_within(root: &Path, relative: &str) -> Result<PathBuf> {
    let outside = || DdsmError::OutsideRoot {
        path: PathBuf::from(relative),
        root: root.to_path_buf(),
    };
    let cleaned = relative.trim().replace('\\', "/");
    let rel = Path::new(&cleaned);
    // A drive prefix such as `C:` is absolute on Windows and suspicious everywhere.
    let drive = cleaned.len() >= 2 && cleaned.as_bytes()[1] == b':';
    if cleaned.is_empty() || rel.is_absolute() || cleaned.starts_with('/') || drive {
        return Err(outside());
    }
    let mut joined = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside())
            }
        }
    }
    check_inside(root, &joined).map_err(|_| outside())?;
    Ok(joined)
}

/// Checks that an existing path, with symbolic links followed, lies inside `root`; a path
/// that does not exist passes (there is nothing to read).
pub fn check_inside(root: &Path, path: &Path) -> Result<()> {
    let Ok(real) = path.canonicalize() else {
        return Ok(());
    };
    let real_root = root.canonicalize().map_err(|e| DdsmError::io(root, e))?;
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err(DdsmError::OutsideRoot {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        })
    }
}

/// The files under `dir` (to `max_depth` levels) whose extension is one of `extensions`
/// (lower case, compared case-insensitively), sorted. Symbolic links to folders are not
/// followed; linked files are kept only if they resolve inside `root`.
pub fn list_files(
    root: &Path,
    dir: &Path,
    extensions: &[&str],
    max_depth: usize,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d == dir => return Err(DdsmError::io(&d, e)),
            Err(_) => continue,
        };
        for entry in entries {
            let entry = entry.map_err(|e| DdsmError::io(&d, e))?;
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if depth < max_depth {
                    stack.push((path, depth + 1));
                }
            } else if ft.is_file() || ft.is_symlink() {
                let ext_ok = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .is_some_and(|e| extensions.contains(&e.as_str()));
                if !ext_ok {
                    continue;
                }
                if ft.is_symlink() && (check_inside(root, &path).is_err() || !path.is_file()) {
                    continue;
                }
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The UID components of a CSV path `<folder>/<study UID>/<series UID>/<file>`:
/// (study, series), when the path has that shape.
pub fn csv_path_uids(path: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = path
        .trim()
        .split(['/', '\\'])
        .filter(|p| !p.is_empty())
        .collect();
    let uid = |s: &&str| -> Option<String> {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| s.to_string())
    };
    match parts.len() {
        n if n >= 4 => (
            parts.get(n - 3).and_then(uid),
            parts.get(n - 2).and_then(uid),
        ),
        3 => (parts.get(1).and_then(uid), None),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for bad in [
            "../x.dcm",
            "a/../../x",
            "/etc/passwd",
            "C:\\x",
            "a\\..\\..\\b",
            "",
        ] {
            assert!(
                matches!(
                    resolve_within(root, bad),
                    Err(DdsmError::OutsideRoot { .. })
                ),
                "{bad}"
            );
        }
        let ok = resolve_within(root, "Mass-Training_P_1/1.2/3.4/000000.dcm\n").expect("ok");
        assert_eq!(ok, root.join("Mass-Training_P_1/1.2/3.4/000000.dcm"));
    }

    #[test]
    fn uids_from_csv_paths() {
        let (s, r) = csv_path_uids("Mass-Training_P_00001_LEFT_CC/1.3.6.1/1.3.6.2/000000.dcm\n");
        assert_eq!(s.as_deref(), Some("1.3.6.1"));
        assert_eq!(r.as_deref(), Some("1.3.6.2"));
        assert_eq!(csv_path_uids("x.dcm"), (None, None));
    }
}
