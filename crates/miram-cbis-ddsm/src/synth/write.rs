//! Writing a synthetic dataset to disk: DICOM files in the literal or the TCIA layout, the
//! four case-description CSVs, and a manifest of what was written.
//!
//! File conventions mirror the real collection: the full image is `000000.dcm` of its own
//! study and series; each abnormality's crop and ROI mask share another study and series,
//! the crop being `000000.dcm` and the mask `000001.dcm` in the mass CSVs and the other way
//! round in the calc CSVs. DICOM PatientID is the case folder name, as in CBIS-DDSM. In the
//! TCIA layout the study folder is `<MM-DD-YYYY>-DDSM-NA-<last 5 digits of the study UID>`
//! and the series folder `1.000000-<SeriesDescription>-<last 5 digits of the series UID>`
//! with `1-1.dcm` and `1-2.dcm`; crop and mask sit in one `ROI mask images` folder or in
//! one folder each (`ROI mask images` and `cropped images`), as both occur in real
//! downloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ndarray::s;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::mass::LesionMask;
use super::{plan, render, FileUids, PlannedImage, PlannedLesion, SynthConfig, SynthLayout};
use crate::csv::{case_csv_name, write_case_csv_with, CsvStyle};
use crate::dicom::{write_gray_u16, DicomUids, GrayImage};
use crate::error::{DdsmError, Result};
use crate::records::{
    AbnormalityType, CaseRecord, OfficialSplit, Pathology, RecordSource, Side, View,
};

/// Progress of [`synthesize`]: images written so far out of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthProgress {
    /// Full images written (with their crops and masks).
    pub done: usize,
    /// All full images.
    pub total: usize,
}

/// One written full image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthImage {
    /// The case folder, e.g. `Mass-Training_P_00001_LEFT_CC`.
    pub folder: String,
    /// The patient.
    pub patient_id: String,
    /// The official split.
    pub split: OfficialSplit,
    /// Mass or calcification.
    pub abnormality_type: AbnormalityType,
    /// The breast.
    pub side: Side,
    /// The view.
    pub view: View,
    /// BI-RADS density.
    pub breast_density: u8,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The file, relative to the dataset root.
    pub file: PathBuf,
    /// Its DICOM identifiers.
    pub uids: FileUids,
}

/// One written abnormality: a CSV row and its files, with the truth a test checks against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthAbnormality {
    /// The CSV file name (in the dataset root).
    pub csv_file: String,
    /// The 1-based record number in that file.
    pub csv_row: usize,
    /// The patient.
    pub patient_id: String,
    /// The official split.
    pub split: OfficialSplit,
    /// Mass or calcification.
    pub abnormality_type: AbnormalityType,
    /// The breast.
    pub side: Side,
    /// The view.
    pub view: View,
    /// The abnormality id within the image.
    pub abnormality_id: u32,
    /// The pathology.
    pub pathology: Pathology,
    /// The categorical columns (mass-file header names) split into parts; empty for `NA`.
    pub categories: std::collections::BTreeMap<String, Vec<String>>,
    /// BI-RADS density.
    pub breast_density: u8,
    /// BI-RADS assessment.
    pub assessment: u8,
    /// Subtlety.
    pub subtlety: u8,
    /// The case folder of the full image.
    pub image_folder: String,
    /// The folder of the crop and mask.
    pub abnormality_folder: String,
    /// The full image, relative to the root.
    pub full_image: PathBuf,
    /// The crop, relative to the root.
    pub crop: PathBuf,
    /// The ROI mask, relative to the root.
    pub roi_mask: PathBuf,
    /// Identifiers of the crop.
    pub crop_uids: FileUids,
    /// Identifiers of the mask.
    pub mask_uids: FileUids,
    /// Full-image width.
    pub image_width: u32,
    /// Full-image height.
    pub image_height: u32,
    /// The bounding box of the ROI mask, `[x0, y0, x1, y1]` with exclusive ends.
    pub roi_bbox: [u32; 4],
    /// The number of mask pixels.
    pub roi_area: u64,
}

/// What [`synthesize`] wrote; saved as [`SynthManifest::FILE_NAME`] in the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthManifest {
    /// Format tag.
    pub format: String,
    /// The configuration that wrote the dataset.
    pub config: SynthConfig,
    /// The CSV file names written (mass train, mass test, calc train, calc test; a type and
    /// split without rows has none).
    pub csv_files: Vec<String>,
    /// Every full image.
    pub images: Vec<SynthImage>,
    /// Every abnormality, in CSV order (file, then row).
    pub abnormalities: Vec<SynthAbnormality>,
}

impl SynthManifest {
    /// The manifest's file name in the dataset root.
    pub const FILE_NAME: &'static str = "synth_manifest.json";
    /// The format tag.
    pub const FORMAT: &'static str = "miram-synth-v1";

    /// Reads the manifest of a generated dataset.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(Self::FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| DdsmError::io(&path, e))?;
        let m: Self = serde_json::from_str(&text).map_err(|e| DdsmError::Index {
            path: path.clone(),
            message: format!("not a synthetic-dataset manifest: {e}"),
        })?;
        if m.format != Self::FORMAT {
            return Err(DdsmError::Index {
                path,
                message: format!("format {:?}, expected {:?}", m.format, Self::FORMAT),
            });
        }
        Ok(m)
    }

    /// Writes the manifest into `root`.
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = root.join(Self::FILE_NAME);
        let text = serde_json::to_string_pretty(self).map_err(|e| DdsmError::Index {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| DdsmError::io(&path, e))
    }
}

/// The last five digits of a UID (TCIA folder names end with them).
fn last5(uid: &str) -> &str {
    let digits = uid.trim_end_matches(|c: char| !c.is_ascii_digit());
    &digits[digits.len().saturating_sub(5)..]
}

/// `MM-DD-YYYY` -> `YYYYMMDD`.
fn dicom_date(date: &str) -> String {
    let p: Vec<&str> = date.split('-').collect();
    match p.as_slice() {
        [m, d, y] => format!("{y}{m}{d}"),
        _ => String::new(),
    }
}

/// Where the files of one image and its abnormalities go, relative to the root, and the
/// paths the CSV gives for them.
struct Placement {
    full_rel: PathBuf,
    full_csv: String,
    /// Per lesion: (crop file, mask file, crop CSV path, mask CSV path).
    lesions: Vec<(PathBuf, PathBuf, String, String)>,
}

fn placement(im: &PlannedImage, layout: SynthLayout) -> Placement {
    let full_csv = format!(
        "{}/{}/{}/000000.dcm",
        im.folder, im.uids.study, im.uids.series
    );
    let full_rel = match layout {
        SynthLayout::Literal => PathBuf::from(&full_csv),
        SynthLayout::Tcia => [
            "CBIS-DDSM".to_string(),
            im.folder.clone(),
            format!("{}-DDSM-NA-{}", im.date, last5(&im.uids.study)),
            format!("1.000000-full mammogram images-{}", last5(&im.uids.series)),
            "1-1.dcm".to_string(),
        ]
        .iter()
        .collect(),
    };
    let lesions = im
        .lesions
        .iter()
        .map(|l| {
            let base = format!("{}/{}/{}", l.folder, l.study_uid, l.series_uid);
            // The mass CSVs number the crop 000000 and the mask 000001, the calc CSVs the
            // other way round.
            let (crop_no, mask_no) = match im.kind {
                AbnormalityType::Mass => (0, 1),
                AbnormalityType::Calcification => (1, 0),
            };
            let crop_csv = format!("{base}/00000{crop_no}.dcm");
            let mask_csv = format!("{base}/00000{mask_no}.dcm");
            let (crop_rel, mask_rel) = match layout {
                SynthLayout::Literal => (PathBuf::from(&crop_csv), PathBuf::from(&mask_csv)),
                SynthLayout::Tcia => {
                    let study = format!("{}-DDSM-NA-{}", l.date, last5(&l.study_uid));
                    let s5 = last5(&l.series_uid);
                    let dir: PathBuf = ["CBIS-DDSM", &l.folder, &study].iter().collect();
                    if l.tcia_shared_folder {
                        let series = dir.join(format!("1.000000-ROI mask images-{s5}"));
                        (
                            series.join(format!("1-{}.dcm", crop_no + 1)),
                            series.join(format!("1-{}.dcm", mask_no + 1)),
                        )
                    } else {
                        (
                            dir.join(format!("1.000000-cropped images-{s5}"))
                                .join("1-1.dcm"),
                            dir.join(format!("1.000000-ROI mask images-{s5}"))
                                .join("1-1.dcm"),
                        )
                    }
                }
            };
            (crop_rel, mask_rel, crop_csv, mask_csv)
        })
        .collect();
    Placement {
        full_rel,
        full_csv,
        lesions,
    }
}

/// The rows and manifest entries of one image, before CSV row numbers are known.
struct WrittenImage {
    image: SynthImage,
    rows: Vec<(CaseRecord, SynthAbnormality)>,
}

/// Renders one planned image and writes its full image, crops and masks; returns its
/// manifest entry and one CSV row (with its manifest entry) per lesion.
fn write_image(root: &Path, cfg: &SynthConfig, im: &PlannedImage) -> Result<WrittenImage> {
    let rendered = render(&im.image_spec(cfg));
    let place = placement(im, cfg.layout);
    let full = rendered.image;
    let (w, h) = (full.width(), full.height());
    write_gray_u16(
        &root.join(&place.full_rel),
        &full,
        &DicomUids {
            study_instance_uid: im.uids.study.clone(),
            series_instance_uid: im.uids.series.clone(),
            sop_instance_uid: im.uids.sop.clone(),
            patient_id: im.folder.clone(),
            series_description: "full mammogram images".into(),
            study_date: dicom_date(&im.date),
            series_number: 1,
            instance_number: 1,
        },
    )?;
    let csv_name = case_csv_name(im.kind, im.split);
    let csv_path = Arc::new(root.join(&csv_name));
    let mut rows = Vec::with_capacity(im.lesions.len());
    for ((lesion, mask), files) in im.lesions.iter().zip(&rendered.masks).zip(&place.lesions) {
        let (crop_rel, mask_rel, _, _) = files;
        let (bbox, area) = write_lesion(root, im, lesion, mask, &full, crop_rel, mask_rel)?;
        let record = case_record(im, lesion, &csv_path, &place.full_csv, files);
        let roi = (bbox, area);
        let entry = manifest_entry(im, lesion, &csv_name, &place.full_rel, files, (w, h), roi);
        rows.push((record, entry));
    }
    Ok(WrittenImage {
        image: SynthImage {
            folder: im.folder.clone(),
            patient_id: im.patient_id.clone(),
            split: im.split,
            abnormality_type: im.kind,
            side: im.side,
            view: im.view,
            breast_density: im.density,
            width: w,
            height: h,
            file: place.full_rel,
            uids: im.uids.clone(),
        },
        rows,
    })
}

/// The CSV row of one lesion (its row number is set when the CSV is written).
fn case_record(
    im: &PlannedImage,
    lesion: &PlannedLesion,
    csv_path: &Arc<PathBuf>,
    full_csv: &str,
    (_, _, crop_csv, mask_csv): &(PathBuf, PathBuf, String, String),
) -> CaseRecord {
    CaseRecord {
        source: RecordSource {
            file: csv_path.clone(),
            row: 0,
        },
        split: im.split,
        abnormality_type: im.kind,
        patient_id: im.patient_id.clone(),
        breast_density: Some(im.density),
        side: im.side,
        view: im.view,
        abnormality_id: lesion.abnormality_id,
        assessment: Some(lesion.labels.assessment),
        pathology: lesion.labels.pathology,
        subtlety: Some(lesion.labels.subtlety),
        categories: lesion.labels.categories.clone(),
        image_file_path: full_csv.to_string(),
        cropped_image_file_path: crop_csv.clone(),
        roi_mask_file_path: mask_csv.clone(),
    }
}

/// The manifest entry of one lesion in an image of `(width, height)`, with its ROI's bounding
/// box and area (its CSV row number is set when the CSV is written).
fn manifest_entry(
    im: &PlannedImage,
    lesion: &PlannedLesion,
    csv_name: &str,
    full_rel: &Path,
    (crop_rel, mask_rel, _, _): &(PathBuf, PathBuf, String, String),
    (image_width, image_height): (u32, u32),
    (roi_bbox, roi_area): ([u32; 4], u64),
) -> SynthAbnormality {
    SynthAbnormality {
        csv_file: csv_name.to_string(),
        csv_row: 0,
        patient_id: im.patient_id.clone(),
        split: im.split,
        abnormality_type: im.kind,
        side: im.side,
        view: im.view,
        abnormality_id: lesion.abnormality_id,
        pathology: lesion.labels.pathology,
        categories: lesion.labels.categories.clone(),
        breast_density: im.density,
        assessment: lesion.labels.assessment,
        subtlety: lesion.labels.subtlety,
        image_folder: im.folder.clone(),
        abnormality_folder: lesion.folder.clone(),
        full_image: full_rel.to_path_buf(),
        crop: crop_rel.clone(),
        roi_mask: mask_rel.clone(),
        crop_uids: FileUids {
            study: lesion.study_uid.clone(),
            series: lesion.series_uid.clone(),
            sop: lesion.crop_sop.clone(),
        },
        mask_uids: FileUids {
            study: lesion.study_uid.clone(),
            series: lesion.series_uid.clone(),
            sop: lesion.mask_sop.clone(),
        },
        image_width,
        image_height,
        roi_bbox,
        roi_area,
    }
}

/// Writes the crop and the ROI mask of one lesion; returns the mask's bounding box and area.
fn write_lesion(
    root: &Path,
    im: &PlannedImage,
    lesion: &PlannedLesion,
    mask: &LesionMask,
    full: &GrayImage,
    crop_rel: &Path,
    mask_rel: &Path,
) -> Result<([u32; 4], u64)> {
    let (w, h) = (full.width() as usize, full.height() as usize);
    // The full-size binary mask (0 and 255, as the real 8-bit masks) and its bounding box.
    let mut pixels = vec![0u16; w * h];
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    let mut area = 0u64;
    for y in 0..mask.h {
        for x in 0..mask.w {
            if mask.mask[y * mask.w + x] {
                let (gx, gy) = (mask.x0 + x, mask.y0 + y);
                if gx < w && gy < h {
                    pixels[gy * w + gx] = 255;
                    area += 1;
                    x0 = x0.min(gx);
                    y0 = y0.min(gy);
                    x1 = x1.max(gx + 1);
                    y1 = y1.max(gy + 1);
                }
            }
        }
    }
    if area == 0 {
        return Err(DdsmError::Invalid {
            what: "synthetic lesion".into(),
            message: format!("{} has an empty ROI mask", lesion.folder),
        });
    }
    let crop = full.view().slice(s![y0..y1, x0..x1]).to_owned();
    let (crop_no, mask_no) = match im.kind {
        AbnormalityType::Mass => (1, 2),
        AbnormalityType::Calcification => (2, 1),
    };
    let ids = |sop: &str, description: &str, instance: u32| DicomUids {
        study_instance_uid: lesion.study_uid.clone(),
        series_instance_uid: lesion.series_uid.clone(),
        sop_instance_uid: sop.to_string(),
        patient_id: lesion.folder.clone(),
        series_description: description.to_string(),
        study_date: dicom_date(&lesion.date),
        series_number: 1,
        instance_number: instance,
    };
    write_gray_u16(
        &root.join(crop_rel),
        &GrayImage::new(crop, u16::MAX),
        &ids(&lesion.crop_sop, "cropped images", crop_no),
    )?;
    write_gray_u16(
        &root.join(mask_rel),
        &GrayImage::from_vec(w as u32, h as u32, pixels, 255)?,
        &ids(&lesion.mask_sop, "ROI mask images", mask_no),
    )?;
    Ok(([x0 as u32, y0 as u32, x1 as u32, y1 as u32], area))
}

/// Writes a synthetic CBIS-DDSM dataset under `root` (created if needed): DICOM files in
/// `cfg.layout`, the four case-description CSVs in `root`, and [`SynthManifest::FILE_NAME`].
/// Images are rendered and written in parallel (rayon); `progress` is called after each.
///
/// The same configuration writes byte-identical files.
pub fn synthesize(
    root: &Path,
    cfg: &SynthConfig,
    progress: &(dyn Fn(SynthProgress) + Sync),
) -> Result<SynthManifest> {
    let planned = plan(cfg)?;
    std::fs::create_dir_all(root).map_err(|e| DdsmError::io(root, e))?;
    let total = planned.len();
    let done = AtomicUsize::new(0);
    let written: Vec<WrittenImage> = planned
        .par_iter()
        .map(|im| {
            let w = write_image(root, cfg, im)?;
            let d = done.fetch_add(1, Ordering::SeqCst) + 1;
            progress(SynthProgress { done: d, total });
            Ok(w)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut images = Vec::with_capacity(total);
    let mut rows = Vec::new();
    for w in written {
        images.push(w.image);
        rows.extend(w.rows);
    }
    // CSV order of the real files: patient, side, view, abnormality id.
    rows.sort_by(|a, b| {
        (&a.0.patient_id, a.0.side, a.0.view, a.0.abnormality_id).cmp(&(
            &b.0.patient_id,
            b.0.side,
            b.0.view,
            b.0.abnormality_id,
        ))
    });
    let mut csv_files = Vec::new();
    let mut abnormalities = Vec::new();
    for kind in [AbnormalityType::Mass, AbnormalityType::Calcification] {
        for split in [OfficialSplit::Train, OfficialSplit::Test] {
            let name = case_csv_name(kind, split);
            let mut records = Vec::new();
            for (rec, entry) in rows
                .iter()
                .filter(|(r, _)| r.abnormality_type == kind && r.split == split)
            {
                let mut rec = rec.clone();
                let mut entry = entry.clone();
                rec.source.row = records.len() + 1;
                entry.csv_row = records.len() + 1;
                records.push(rec);
                abnormalities.push(entry);
            }
            // A type and split without rows gets no file (the real collection has all four).
            if !records.is_empty() {
                // The real files' quoting: the second image path ends with a newline.
                write_case_csv_with(&root.join(&name), &records, CsvStyle::Tcia)?;
                csv_files.push(name);
            }
        }
    }
    let manifest = SynthManifest {
        format: SynthManifest::FORMAT.to_string(),
        config: cfg.clone(),
        csv_files,
        images,
        abnormalities,
    };
    manifest.save(root)?;
    Ok(manifest)
}
