//! The literal layout: the CSVs' paths exist as written, under the root or one of its bases
//! ([`literal_bases`]).

use super::resolve::{par_map_counted, Candidate, Resolution, Resolver, RowResult};
use super::{BadFile, IndexProgress, IndexStage};
use crate::dicom::read_header;
use crate::error::Result;
use crate::layout::{literal_bases, resolve_within};
use crate::records::CaseRecord;

/// Resolves every row by its literal paths; nothing to watch beyond the rows' files.
pub(super) fn resolve(
    records: &[CaseRecord],
    resolver: &Resolver<'_>,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Resolution> {
    let rows = par_map_counted(records, IndexStage::Resolving, progress, |r| {
        resolve_row(resolver, r)
    });
    Ok(Resolution {
        rows,
        files: Vec::new(),
        folders: Default::default(),
    })
}

/// Resolves one row: its three CSV paths under each literal base, sizes from the headers.
fn resolve_row(resolver: &Resolver<'_>, r: &CaseRecord) -> RowResult {
    let bases = literal_bases(resolver.root);
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
        (Ok(full), Ok(a), Ok(b)) => resolver.finish(r, full, a, b, tried),
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
            Err(resolver.unresolved(r, tried, reason, bad))
        }
    }
}
