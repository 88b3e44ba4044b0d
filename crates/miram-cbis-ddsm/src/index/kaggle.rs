//! The Kaggle layout: the JPEG copy of CBIS-DDSM, `jpeg/<series UID>/*.jpg` described by
//! `csv/dicom_info.csv`; files are matched to rows by the series UIDs of the CSV paths.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::resolve::{
    par_map_counted, Attempt, Candidate, Resolution, Resolver, RowResult, WatchedFolders,
};
use super::{IndexProgress, IndexStage};
use crate::error::{DdsmError, Result};
use crate::kaggle::{jpeg_size, read_dicom_info, KaggleImage};
use crate::layout::{
    csv_path_uids, kaggle_dicom_info, kaggle_jpeg_dir, list_files, resolve_within,
};
use crate::records::CaseRecord;

/// The JPEG files of each series: its folder and the files (from `dicom_info.csv`, else the
/// folder's listing).
type SeriesFiles = HashMap<String, (PathBuf, Vec<PathBuf>)>;

/// The (width, height) of every JPEG file found, or why it cannot be read.
type Sizes<'f> = HashMap<&'f Path, std::result::Result<(u32, u32), String>>;

/// Resolves every row of the Kaggle copy: reads `dicom_info.csv`, lists each series the rows
/// name, reads the JPEG sizes, then matches each row's files. `dicom_info.csv` and the series
/// folders are watched.
pub(super) fn resolve(
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Resolution> {
    let root = resolver.root;
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
        for p in row_paths(r) {
            if let Some(s) = csv_path_uids(p).1 {
                series.insert(s);
            }
        }
    }
    let series: Vec<String> = series.into_iter().collect();
    let files: SeriesFiles = par_map_counted(&series, IndexStage::Scanning, progress, |s| {
        (s.clone(), list_series(root, &jpeg_dir, s, &by_series))
    })
    .into_iter()
    .collect();
    let all: Vec<&PathBuf> = files.values().flat_map(|(_, v)| v).collect();
    let sizes: Sizes<'_> = par_map_counted(&all, IndexStage::ReadingHeaders, progress, |p| {
        (p.as_path(), jpeg_size(p).map_err(|e| e.to_string()))
    })
    .into_iter()
    .collect();
    let rows = par_map_counted(records, IndexStage::Resolving, progress, |r| {
        resolve_row(r, &files, &sizes, &by_series, resolver)
    });
    let dirs = series
        .iter()
        .filter_map(|s| resolve_within(&jpeg_dir, s).ok())
        .collect();
    Ok(Resolution {
        rows,
        files: vec![info_path],
        folders: WatchedFolders {
            dirs,
            extensions: &["jpg", "jpeg"],
            depth: 0,
        },
    })
}

/// The three CSV paths of a row: full image, crop, ROI mask.
fn row_paths(r: &CaseRecord) -> [&String; 3] {
    [
        &r.image_file_path,
        &r.cropped_image_file_path,
        &r.roi_mask_file_path,
    ]
}

/// The folder of series `s` and its JPEG files: those `dicom_info.csv` lists, else the
/// folder's, sorted.
fn list_series(
    root: &Path,
    jpeg_dir: &Path,
    s: &str,
    by_series: &BTreeMap<String, Vec<&KaggleImage>>,
) -> (PathBuf, Vec<PathBuf>) {
    let dir = resolve_within(jpeg_dir, s).unwrap_or_else(|_| jpeg_dir.join("?"));
    let mut list: Vec<PathBuf> = by_series
        .get(s)
        .map(|v| v.iter().filter_map(|i| i.path.clone()).collect())
        .unwrap_or_default();
    if list.is_empty() && dir.is_dir() {
        list = list_files(root, &dir, &["jpg", "jpeg"], 0).unwrap_or_default();
    }
    list.sort();
    list.dedup();
    (dir, list)
}

/// Resolves one row: the full image in its series (the one described as the full image when
/// there are several), crop and mask in theirs.
fn resolve_row(
    r: &CaseRecord,
    files: &SeriesFiles,
    sizes: &Sizes<'_>,
    by_series: &BTreeMap<String, Vec<&KaggleImage>>,
    resolver: &Resolver<'_>,
) -> RowResult {
    let mut attempt = Attempt::default();
    let full = of_path(&mut attempt, &r.image_file_path, files, sizes);
    let mut pair = of_path(&mut attempt, &r.cropped_image_file_path, files, sizes);
    for c in of_path(&mut attempt, &r.roi_mask_file_path, files, sizes) {
        if !pair.iter().any(|x| x.path == c.path) {
            pair.push(c);
        }
    }
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
            return attempt.fail(resolver, r, what);
        }
    };
    let [a, b] = match <[Candidate; 2]>::try_from(pair) {
        Ok(x) => x,
        Err(v) => {
            let what = format!(
                "{} JPEG files for the crop and ROI mask, expected 2",
                v.len()
            );
            return attempt.fail(resolver, r, what);
        }
    };
    resolver.finish(r, full, a, b, attempt.tried)
}

/// The readable JPEG files of the series a CSV path names, with their sizes; the series
/// folder is recorded as tried, and what is missing or unreadable in `attempt`.
fn of_path(
    attempt: &mut Attempt,
    p: &str,
    files: &SeriesFiles,
    sizes: &Sizes<'_>,
) -> Vec<Candidate> {
    let Some(s) = csv_path_uids(p).1 else {
        attempt
            .problems
            .push(format!("no series UID in the CSV path {p:?}"));
        return Vec::new();
    };
    let Some((dir, list)) = files.get(&s) else {
        return Vec::new();
    };
    attempt.tried.push(dir.clone());
    if list.is_empty() {
        attempt.problems.push(format!(
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
                attempt.unreadable(f, e);
                None
            }
            None => None,
        })
        .collect()
}
