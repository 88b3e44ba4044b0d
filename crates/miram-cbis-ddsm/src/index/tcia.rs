//! The TCIA layout: a download from The Cancer Imaging Archive, one folder per case
//! (`Mass-Training_P_00001_LEFT_CC`, `..._1` for each abnormality) holding study and series
//! folders of DICOM files; files are matched to rows by the UIDs in their headers.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::resolve::WatchedFolders;
use super::resolve::{par_map_counted, Attempt, Candidate, Resolution, Resolver, RowResult};
use super::{IndexProgress, IndexStage};
use crate::dicom::{read_header, DicomHeader};
use crate::error::Result;
use crate::layout::{csv_path_uids, list_files, resolve_within, tcia_base};
use crate::records::CaseRecord;

/// How deep the files of a TCIA case folder are looked for (study / series / file).
const TCIA_DEPTH: usize = 4;

/// What a folder of a TCIA download holds.
enum Folder {
    Missing(String),
    Files(Vec<PathBuf>),
}

/// The case folders by name: where each is and what it holds.
type Folders = HashMap<String, (PathBuf, Folder)>;

/// The header of every DICOM file found, or why it cannot be read.
type Headers<'f> = HashMap<&'f Path, std::result::Result<DicomHeader, String>>;

/// Resolves every row of a TCIA download: lists the case folders, reads the headers of
/// their files, then matches each row's files by UID. The case folders are watched.
pub(super) fn resolve(
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Resolution> {
    let root = resolver.root;
    let base = tcia_base(root);
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in records {
        names.insert(r.image_folder());
        names.insert(r.abnormality_folder());
    }
    let names: Vec<String> = names.into_iter().collect();
    let folders: Folders = par_map_counted(&names, IndexStage::Scanning, progress, |name| {
        (name.clone(), list_case_folder(root, &base, name))
    })
    .into_iter()
    .collect();
    let files: Vec<&PathBuf> = folders
        .values()
        .filter_map(|(_, f)| match f {
            Folder::Files(v) => Some(v),
            Folder::Missing(_) => None,
        })
        .flatten()
        .collect();
    let headers: Headers<'_> = par_map_counted(&files, IndexStage::ReadingHeaders, progress, |p| {
        (p.as_path(), read_header(p).map_err(|e| e.to_string()))
    })
    .into_iter()
    .collect();
    let rows = par_map_counted(records, IndexStage::Resolving, progress, |r| {
        resolve_row(r, &folders, &headers, resolver)
    });
    let mut dirs = BTreeSet::new();
    for name in &names {
        if let Ok(dir) = resolve_within(&base, name) {
            dirs.insert(dir);
        }
    }
    Ok(Resolution {
        rows,
        files: Vec::new(),
        folders: WatchedFolders {
            dirs,
            extensions: &["dcm"],
            depth: TCIA_DEPTH,
        },
    })
}

/// Lists the DICOM files of the case folder `name` under `base` (missing, with why, when it
/// is outside the root, absent or unreadable).
fn list_case_folder(root: &Path, base: &Path, name: &str) -> (PathBuf, Folder) {
    match resolve_within(base, name) {
        Err(e) => (base.join("?"), Folder::Missing(e.to_string())),
        Ok(dir) if !dir.is_dir() => (
            dir.clone(),
            Folder::Missing(format!("folder {} does not exist", dir.display())),
        ),
        Ok(dir) => match list_files(root, &dir, &["dcm"], TCIA_DEPTH) {
            Ok(files) => (dir, Folder::Files(files)),
            Err(e) => (dir, Folder::Missing(e.to_string())),
        },
    }
}

/// Resolves one row: the full image in its case folder, crop and mask in its abnormality
/// folder.
fn resolve_row(
    r: &CaseRecord,
    folders: &Folders,
    headers: &Headers<'_>,
    resolver: &Resolver<'_>,
) -> RowResult {
    let mut attempt = Attempt::default();
    let image_files = readable(&mut attempt, &r.image_folder(), folders, headers);
    let abnormality_files = readable(&mut attempt, &r.abnormality_folder(), folders, headers);
    let full = match full_image(r, &image_files) {
        Ok(full) => full,
        Err(what) => return attempt.fail(resolver, r, what),
    };
    let pair = match crop_and_mask(r, &abnormality_files) {
        Ok(pair) => pair,
        Err(what) => return attempt.fail(resolver, r, what),
    };
    let cand = |x: &(PathBuf, DicomHeader)| Candidate {
        path: x.0.clone(),
        size: (x.1.columns, x.1.rows),
    };
    let mut tried = attempt.tried;
    tried.extend(pair.iter().map(|x| x.0.clone()));
    resolver.finish(r, full, cand(pair[0]), cand(pair[1]), tried)
}

/// The files of the case folder `name` whose headers read, with their headers; the folder is
/// recorded as tried, and what is missing or unreadable in `attempt`.
fn readable(
    attempt: &mut Attempt,
    name: &str,
    folders: &Folders,
    headers: &Headers<'_>,
) -> Vec<(PathBuf, DicomHeader)> {
    let Some((dir, folder)) = folders.get(name) else {
        return Vec::new();
    };
    attempt.tried.push(dir.clone());
    match folder {
        Folder::Missing(why) => {
            attempt.problems.push(why.clone());
            Vec::new()
        }
        Folder::Files(files) => {
            if files.is_empty() {
                attempt
                    .problems
                    .push(format!("no .dcm file under {}", dir.display()));
            }
            files
                .iter()
                .filter_map(|p| match headers.get(p.as_path()) {
                    Some(Ok(h)) => Some((p.clone(), h.clone())),
                    Some(Err(e)) => {
                        attempt.unreadable(p, e);
                        None
                    }
                    None => None,
                })
                .collect()
        }
    }
}

/// The full image: the file of the CSV's series, else of its study, else the only one;
/// `Err` says why there is not exactly one.
fn full_image(
    r: &CaseRecord,
    image_files: &[(PathBuf, DicomHeader)],
) -> std::result::Result<Candidate, String> {
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
    match full.as_slice() {
        [one] => Ok(Candidate {
            path: one.0.clone(),
            size: (one.1.columns, one.1.rows),
        }),
        many => Err(format!(
            "{} DICOM files in the case folder {} match the full image (series {}), expected 1",
            many.len(),
            r.image_folder(),
            series.as_deref().unwrap_or("?")
        )),
    }
}

/// Crop and mask (in either order): the files of the CSV's crop and mask series, else the
/// abnormality folder's two files; `Err` says why there is no such pair.
fn crop_and_mask<'f>(
    r: &CaseRecord,
    abnormality_files: &'f [(PathBuf, DicomHeader)],
) -> std::result::Result<Vec<&'f (PathBuf, DicomHeader)>, String> {
    let wanted: BTreeSet<String> = [&r.cropped_image_file_path, &r.roi_mask_file_path]
        .iter()
        .filter_map(|p| csv_path_uids(p).1)
        .collect();
    let matching: Vec<&(PathBuf, DicomHeader)> = abnormality_files
        .iter()
        .filter(|(_, h)| wanted.contains(&h.series_instance_uid))
        .collect();
    if matching.len() == 2 {
        Ok(matching)
    } else if abnormality_files.len() == 2 {
        Ok(abnormality_files.iter().collect())
    } else {
        Err(format!(
            "{} DICOM files in the abnormality folder {} ({} with the CSV's series UIDs), \
             expected a crop and a mask",
            abnormality_files.len(),
            r.abnormality_folder(),
            matching.len()
        ))
    }
}
