//! [`build_index`]: reading the CSVs, resolving every row in its layout's file (the one match
//! on [`Layout`] is [`resolve_rows`]), refusing an index without rows, and recording the
//! stamps and folder listings that keep a saved index honest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::resolve::{Resolution, Resolver};
use super::saved::{stamp, FileStamp, FolderListing};
use super::{
    kaggle, literal, tcia, BadFile, DatasetIndex, ImageKind, IndexOptions, IndexProgress,
    IndexStage, IndexedCase, Unresolved,
};
use crate::csv::{locate_case_csvs, read_case_csv, CaseCsvs};
use crate::error::{DdsmError, Result};
use crate::layout::{check_inside, detect_layout, Layout};
use crate::records::CaseRecord;

/// Builds the index of a dataset root: reads the CSVs, detects or uses the layout, resolves
/// every row (in parallel, reporting progress), and records the size and modification time of
/// every file used. Does not save it (see [`load_or_build_index`](super::load_or_build_index)).
/// Fails with [`DdsmError::NoImages`] when not a single row resolves.
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
    let records = read_records(&csv_files, progress)?;
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
    let resolution = resolve_rows(layout, &records, &resolver, progress)?;
    let mut entries = Vec::new();
    let mut unresolved = Vec::new();
    for r in resolution.rows {
        match r {
            Ok(e) => entries.push(e),
            Err(u) => unresolved.push(u),
        }
    }
    if entries.is_empty() {
        return Err(no_rows_error(root, layout, &records, &unresolved));
    }
    let paths = stamped_paths(&csv_files, &resolution.files, &entries, &unresolved);
    let stamps: Vec<FileStamp> = paths.par_iter().map(|p| stamp(&real_root, p)).collect();
    // The folders files were looked for in: a file added to one (a second full image, a
    // re-download) changes what the rows resolve to.
    let watched = resolution.folders;
    let folders: Vec<PathBuf> = watched.dirs.into_iter().collect();
    let listings = folders
        .par_iter()
        .map(|d| FolderListing::of(&real_root, d, watched.extensions, watched.depth))
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

/// Reads the rows of every CSV, in order, reporting each file read.
fn read_records(
    csv_files: &[PathBuf],
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Vec<CaseRecord>> {
    let mut records = Vec::new();
    for (i, file) in csv_files.iter().enumerate() {
        records.extend(read_case_csv(file)?);
        progress(IndexProgress {
            stage: IndexStage::ReadingCsv,
            done: i + 1,
            total: csv_files.len(),
        });
    }
    Ok(records)
}

/// Resolves every row with the resolver of `layout`'s file: the one place a new layout adds
/// a match arm.
fn resolve_rows(
    layout: Layout,
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Resolution> {
    match layout {
        Layout::Literal => literal::resolve(records, resolver, progress),
        Layout::Tcia => tcia::resolve(records, resolver, progress),
        Layout::Kaggle => kaggle::resolve(records, resolver, progress),
        Layout::Auto => unreachable_layout(resolver.root),
    }
}

/// The error for an index without a single row: [`DdsmError::Undecodable`] when files were
/// found that do not decode, else [`DdsmError::NoImages`] with the first reasons.
fn no_rows_error(
    root: &Path,
    layout: Layout,
    records: &[CaseRecord],
    unresolved: &[Unresolved],
) -> DdsmError {
    let mut failed: Vec<&BadFile> = Vec::new();
    for b in unresolved.iter().flat_map(|u| &u.undecodable) {
        if !failed.iter().any(|f| f.path == b.path) {
            failed.push(b);
        }
    }
    if let Some(first) = failed.first() {
        let missing: Vec<&Unresolved> = unresolved.iter().filter(|u| !u.is_undecodable()).collect();
        return DdsmError::Undecodable {
            root: root.to_path_buf(),
            failed: failed.len(),
            first_file: first.path.clone(),
            first_error: first.error.clone(),
            rows_missing: missing.len(),
            first_missing: missing
                .first()
                .map(|u| format!("{}: {}", u.source, u.reason)),
        };
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
    DdsmError::NoImages {
        root: root.to_path_buf(),
        tried,
    }
}

/// The paths a saved index stamps, sorted: the CSVs, the layout's further files, every file
/// used, and every path tried for an unresolved row (with the folders inside tried folders).
fn stamped_paths(
    csv_files: &[PathBuf],
    layout_files: &[PathBuf],
    entries: &[IndexedCase],
    unresolved: &[Unresolved],
) -> Vec<PathBuf> {
    let mut paths: BTreeSet<PathBuf> = csv_files.iter().cloned().collect();
    paths.extend(layout_files.iter().cloned());
    for e in entries {
        paths.insert(e.full_image.clone());
        paths.insert(e.crop.clone());
        paths.insert(e.roi_mask.clone());
    }
    for u in unresolved {
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
    paths.into_iter().collect()
}

/// The canonical dataset root; an error when it is not a folder.
pub(super) fn canonical_root(root: &Path) -> Result<PathBuf> {
    let real = root.canonicalize().map_err(|e| DdsmError::io(root, e))?;
    if !real.is_dir() {
        return Err(DdsmError::Layout {
            root: root.to_path_buf(),
            message: "the dataset root is not a folder".into(),
        });
    }
    Ok(real)
}

/// The case-description CSVs of an index: those the options give, else those found under
/// the root (or beside it, for a `CBIS-DDSM` download folder).
pub(super) fn csv_files_of(root: &Path, opts: &IndexOptions) -> Result<CaseCsvs> {
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

/// The error for [`Layout::Auto`] left after detection (detection always decides).
fn unreachable_layout(root: &Path) -> Result<Resolution> {
    Err(DdsmError::Layout {
        root: root.to_path_buf(),
        message: "the layout was not detected".into(),
    })
}
