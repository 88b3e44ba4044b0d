//! What every layout's resolver shares: the [`Resolver`] (crop told from mask, images
//! checked to decode, a row finished or left unresolved), the [`Attempt`] a row's search
//! gathers, the [`Resolution`] a layout hands the build, and progress-counted parallel maps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{
    read_image, BadFile, ContentCheck, ImageKind, IndexOptions, IndexProgress, IndexStage,
    IndexedCase, Unresolved,
};
use crate::dicom::{check_gray, GrayImage};
use crate::records::CaseRecord;

/// A file that may be the crop or the mask of a row.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) path: PathBuf,
    pub(super) size: (u32, u32),
}

/// What a row resolved to, or why not.
pub(super) type RowResult = Result<IndexedCase, Unresolved>;

/// Resolves rows to files: the dataset root, the options and the kind of image files.
pub(super) struct Resolver<'a> {
    pub(super) root: &'a Path,
    pub(super) opts: &'a IndexOptions,
    pub(super) kind: ImageKind,
}

impl Resolver<'_> {
    pub(super) fn unresolved(
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
    fn check_decodable(&self, c: &Candidate, what: &str) -> Result<(), BadFile> {
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
    ) -> Result<(Candidate, Candidate), (String, Vec<BadFile>)> {
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

    pub(super) fn finish(
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
}

/// What the search for a row's files has gathered: the paths tried, the problems met, and the
/// files that exist but cannot be read.
#[derive(Debug, Default)]
pub(super) struct Attempt {
    /// Files and folders tried.
    pub(super) tried: Vec<PathBuf>,
    /// Why files were missing or unreadable.
    pub(super) problems: Vec<String>,
    /// The files that exist but cannot be read.
    pub(super) bad: Vec<BadFile>,
}

impl Attempt {
    /// Records a file that exists but cannot be read, and why.
    pub(super) fn unreadable(&mut self, path: &Path, error: &str) {
        self.problems.push(error.to_string());
        self.bad.push(BadFile {
            path: path.to_path_buf(),
            error: error.to_string(),
        });
    }

    /// The row left unresolved: `what`, then the problems met.
    pub(super) fn fail(self, resolver: &Resolver<'_>, r: &CaseRecord, what: String) -> RowResult {
        let mut reason = what;
        if !self.problems.is_empty() {
            reason.push_str(": ");
            reason.push_str(&self.problems.join("; "));
        }
        Err(resolver.unresolved(r, self.tried, reason, self.bad))
    }
}

/// What a layout's resolver hands the build: one result per row, in CSV order, and what the
/// saved index must watch besides the CSVs and the rows' files.
pub(super) struct Resolution {
    /// One result per row, in the order of the records.
    pub(super) rows: Vec<RowResult>,
    /// Further files whose changes make the index stale (Kaggle's `dicom_info.csv`).
    pub(super) files: Vec<PathBuf>,
    /// The folders looked in, fingerprinted so that a file added to one is noticed.
    pub(super) folders: WatchedFolders,
}

/// Folders whose listings (files with the extensions, to the depth) a saved index records.
#[derive(Debug, Default)]
pub(super) struct WatchedFolders {
    /// The folders.
    pub(super) dirs: BTreeSet<PathBuf>,
    /// The file extensions listed.
    pub(super) extensions: &'static [&'static str],
    /// How deep each folder is listed.
    pub(super) depth: usize,
}

/// Maps `f` over `items` in parallel, reporting each item done as progress of `stage`.
pub(super) fn par_map_counted<I: Sync, T: Send>(
    items: &[I],
    stage: IndexStage,
    progress: &(dyn Fn(IndexProgress) + Sync),
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let done = AtomicUsize::new(0);
    let total = items.len();
    items
        .par_iter()
        .map(|item| {
            let out = f(item);
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(IndexProgress {
                stage,
                done: d,
                total,
            });
            out
        })
        .collect()
}
