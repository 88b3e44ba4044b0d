//! The Kaggle re-distribution of CBIS-DDSM ("cbis-ddsm-breast-cancer-image-dataset"): the
//! same case-description CSVs plus `csv/dicom_info.csv` describing JPEG copies of every image
//! under `jpeg/<SeriesInstanceUID>/<n>.jpg` (docs/dataset.md).
//!
//! `dicom_info.csv` has one row per image with, among others, `image_path`
//! (`CBIS-DDSM/jpeg/<series UID>/1-249.jpg`), `PatientID` (the case folder),
//! `SeriesDescription` (`full mammogram images`, `cropped images`, `ROI mask images`),
//! `SeriesInstanceUID`, `StudyInstanceUID`, `Rows` and `Columns`. JPEGs are decoded with
//! jpeg-decoder into the same [`GrayImage`] as DICOM files (8-bit, `max_value` 255).

use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dicom::{DecodeLimits, GrayImage};
use crate::error::{DdsmError, Result};
use crate::layout::resolve_within;

/// One row of `dicom_info.csv`, the fields this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KaggleImage {
    /// The JPEG file, resolved inside the dataset root (`None` if it could not be found).
    pub path: Option<PathBuf>,
    /// `image_path` as written.
    pub image_path: String,
    /// `SeriesInstanceUID`.
    pub series_instance_uid: String,
    /// `StudyInstanceUID`, if the column exists.
    pub study_instance_uid: Option<String>,
    /// `SeriesDescription`, if given.
    pub series_description: Option<String>,
    /// `PatientID` (the case folder), if given.
    pub patient_id: Option<String>,
    /// `Rows`, if given.
    pub rows: Option<u32>,
    /// `Columns`, if given.
    pub columns: Option<u32>,
}

/// Reads `dicom_info.csv`, resolving each `image_path` inside `root`: as written, then
/// without a leading `CBIS-DDSM/`, then as `jpeg/<series UID>/<file name>`.
pub fn read_dicom_info(root: &Path, file: &Path) -> Result<Vec<KaggleImage>> {
    let data = std::fs::read(file).map_err(|e| DdsmError::io(file, e))?;
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let csv_err = |row: usize, e: ::csv::Error| DdsmError::Csv {
        file: file.to_path_buf(),
        row,
        column: String::new(),
        message: e.to_string(),
    };
    let header = reader.headers().map_err(|e| csv_err(0, e))?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(i_path), Some(i_series)) = (col("image_path"), col("SeriesInstanceUID")) else {
        let missing = ["image_path", "SeriesInstanceUID"]
            .into_iter()
            .filter(|c| col(c).is_none())
            .map(String::from)
            .collect();
        return Err(DdsmError::Columns {
            file: file.to_path_buf(),
            missing,
            unknown: Vec::new(),
        });
    };
    let (i_study, i_desc, i_patient, i_rows, i_cols) = (
        col("StudyInstanceUID"),
        col("SeriesDescription"),
        col("PatientID"),
        col("Rows"),
        col("Columns"),
    );
    let jpeg_dir = crate::layout::kaggle_jpeg_dir(root);
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| csv_err(row, e))?;
        let get = |k: Option<usize>| {
            k.and_then(|k| rec.get(k))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s != "NA")
        };
        let number = |k: Option<usize>, name: &str| -> Result<Option<u32>> {
            match get(k) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= f64::from(u32::MAX))
                    .map(|v| Some(v as u32))
                    .ok_or_else(|| DdsmError::UnknownValue {
                        file: file.to_path_buf(),
                        row,
                        column: name.to_string(),
                        value: s,
                    }),
            }
        };
        let image_path = get(Some(i_path)).unwrap_or_default();
        let series = get(Some(i_series)).unwrap_or_default();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if !image_path.is_empty() {
            if let Ok(p) = resolve_within(root, &image_path) {
                candidates.push(p);
            }
            if let Some(rest) = image_path
                .replace('\\', "/")
                .strip_prefix("CBIS-DDSM/")
                .map(str::to_string)
            {
                if let Ok(p) = resolve_within(root, &rest) {
                    candidates.push(p);
                }
            }
            if let (Some(dir), Some(name)) = (
                &jpeg_dir,
                Path::new(&image_path.replace('\\', "/")).file_name(),
            ) {
                if !series.is_empty() {
                    if let Ok(p) = resolve_within(dir, &series) {
                        candidates.push(p.join(name));
                    }
                }
            }
        }
        out.push(KaggleImage {
            path: candidates.into_iter().find(|p| p.is_file()),
            image_path,
            series_instance_uid: series,
            study_instance_uid: get(i_study),
            series_description: get(i_desc),
            patient_id: get(i_patient),
            rows: number(i_rows, "Rows")?,
            columns: number(i_cols, "Columns")?,
        });
    }
    Ok(out)
}

/// Reads the size of a JPEG file (width, height) from its header, without decoding it.
pub fn jpeg_size(path: &Path) -> Result<(u32, u32)> {
    let file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
    let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(file));
    let jpeg_err = |m: String| DdsmError::Jpeg {
        path: path.to_path_buf(),
        message: m,
    };
    guard(path, || {
        decoder.read_info().map_err(|e| jpeg_err(e.to_string()))?;
        let info = decoder
            .info()
            .ok_or_else(|| jpeg_err("no frame header".into()))?;
        Ok((u32::from(info.width), u32::from(info.height)))
    })
}

fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(DdsmError::Jpeg {
            path: path.to_path_buf(),
            message: "the JPEG decoder failed on malformed data".into(),
        })
    })
}

/// Decodes a JPEG file as a grayscale image: 8-bit luminance as is (`max_value` 255), 16-bit
/// (lossless) as is (`max_value` 65535), RGB converted to luminance with the BT.601 weights
/// (0.299, 0.587, 0.114). The size in the JPEG header is checked against `limits` first.
///
/// # Shapes
/// The result is `[height, width]`, row-major.
pub fn read_jpeg(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    let file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
    let jpeg_err = |m: String| DdsmError::Jpeg {
        path: path.to_path_buf(),
        message: m,
    };
    guard(path, || {
        let mut decoder = jpeg_decoder::Decoder::new(BufReader::new(file));
        decoder.read_info().map_err(|e| jpeg_err(e.to_string()))?;
        let info = decoder
            .info()
            .ok_or_else(|| jpeg_err("no frame header".into()))?;
        let (w, h) = (u64::from(info.width), u64::from(info.height));
        limits.check_picture(path, w, h)?;
        let data = decoder.decode().map_err(|e| jpeg_err(e.to_string()))?;
        let n = (w * h) as usize;
        let short = |got: usize| jpeg_err(format!("decoded {got} bytes for {w} x {h} pixels"));
        let (pixels, max_value) = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => {
                if data.len() < n {
                    return Err(short(data.len()));
                }
                (data[..n].iter().map(|&v| u16::from(v)).collect(), 255)
            }
            jpeg_decoder::PixelFormat::L16 => {
                if data.len() < 2 * n {
                    return Err(short(data.len()));
                }
                (
                    data.chunks_exact(2)
                        .take(n)
                        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                        .collect(),
                    u16::MAX,
                )
            }
            jpeg_decoder::PixelFormat::RGB24 => {
                if data.len() < 3 * n {
                    return Err(short(data.len()));
                }
                (
                    data.chunks_exact(3)
                        .take(n)
                        .map(|c| {
                            let y = 0.299 * f32::from(c[0])
                                + 0.587 * f32::from(c[1])
                                + 0.114 * f32::from(c[2]);
                            y.round().clamp(0.0, 255.0) as u16
                        })
                        .collect(),
                    255,
                )
            }
            other => {
                return Err(DdsmError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("JPEG pixel format {other:?}"),
                })
            }
        };
        GrayImage::from_vec(info.width.into(), info.height.into(), pixels, max_value)
    })
}
