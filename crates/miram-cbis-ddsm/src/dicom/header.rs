//! [`DicomHeader`]: the header fields this crate uses, read from a parsed object
//! ([`read_header`]) and validated as pydicom validates them before decoding.

use std::path::Path;

use dicom_core::header::HasLength;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use serde::{Deserialize, Serialize};

use super::open::open_object;
use crate::error::{DdsmError, Result};

/// The header fields of a DICOM image that this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DicomHeader {
    /// Rows (0028,0010).
    pub rows: u32,
    /// Columns (0028,0011).
    pub columns: u32,
    /// Number of Frames (0028,0008); 1 when absent or 0 (as pydicom reads it).
    pub frames: u32,
    /// Samples per Pixel (0028,0002); 1 when absent.
    pub samples_per_pixel: u16,
    /// Bits Allocated (0028,0100).
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101); Bits Allocated when absent.
    pub bits_stored: u16,
    /// High Bit (0028,0102); Bits Stored - 1 when absent.
    pub high_bit: u16,
    /// Pixel Representation (0028,0103): 0 unsigned, 1 two's complement.
    pub pixel_representation: u16,
    /// Planar Configuration (0028,0006): 0 interleaved, 1 by plane; 0 when absent.
    pub planar_configuration: u16,
    /// Photometric Interpretation (0028,0004), e.g. `MONOCHROME2`.
    pub photometric_interpretation: String,
    /// The transfer syntax of the data set (from the file meta group).
    pub transfer_syntax_uid: String,
    /// Study Instance UID (0020,000D); empty when absent.
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E); empty when absent.
    pub series_instance_uid: String,
    /// SOP Instance UID (0008,0018); empty when absent.
    pub sop_instance_uid: String,
    /// Series Description (0008,103E).
    pub series_description: Option<String>,
    /// Patient ID (0010,0020); in CBIS-DDSM the case folder name.
    pub patient_id: Option<String>,
    /// Modality (0008,0060).
    pub modality: Option<String>,
}

/// The photometric interpretations of DICOM PS3.3 C.7.6.3.1.2 (pydicom's list).
const PHOTOMETRIC_INTERPRETATIONS: [&str; 14] = [
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
    "RGB",
    "ARGB",
    "CMYK",
    "HSV",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
    "XYB",
];

impl DicomHeader {
    /// Checks the image fields as pydicom does before decoding pixel data
    /// (`RunnerBase.validate_options`): Rows and Columns 1 to 65535, Samples per Pixel 1 or 3, Bits Allocated 1 or a
    /// multiple of 8 up to 64, Bits Stored 1 to Bits Allocated, Pixel Representation 0 or 1,
    /// Planar Configuration 0 or 1 (colour data), a known Photometric Interpretation.
    /// [`DdsmError::BadHeader`] names the file, the field and its value otherwise.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, value: String, allowed: String| DdsmError::BadHeader {
            path: path.to_path_buf(),
            field: field.to_string(),
            value,
            allowed,
        };
        for (field, v) in [
            ("Rows (0028,0010)", self.rows),
            ("Columns (0028,0011)", self.columns),
        ] {
            if !(1..=65535).contains(&v) {
                return Err(bad(
                    field,
                    v.to_string(),
                    "it must be 1 to 65535: the image has no pixels".into(),
                ));
            }
        }
        if !matches!(self.samples_per_pixel, 1 | 3) {
            return Err(bad(
                "Samples per Pixel (0028,0002)",
                self.samples_per_pixel.to_string(),
                "it must be 1 (grayscale) or 3 (colour)".into(),
            ));
        }
        let ba = self.bits_allocated;
        if ba == 0 || ba > 64 || (ba != 1 && ba % 8 != 0) {
            return Err(bad(
                "Bits Allocated (0028,0100)",
                ba.to_string(),
                "it must be 1 or a multiple of 8 up to 64".into(),
            ));
        }
        if self.bits_stored == 0 || self.bits_stored > ba {
            return Err(bad(
                "Bits Stored (0028,0101)",
                self.bits_stored.to_string(),
                format!("it must be 1 to Bits Allocated ({ba})"),
            ));
        }
        if self.pixel_representation > 1 {
            return Err(bad(
                "Pixel Representation (0028,0103)",
                self.pixel_representation.to_string(),
                "it must be 0 (unsigned) or 1 (signed)".into(),
            ));
        }
        if self.samples_per_pixel == 3 && self.planar_configuration > 1 {
            return Err(bad(
                "Planar Configuration (0028,0006)",
                self.planar_configuration.to_string(),
                "it must be 0 (interleaved) or 1 (by plane)".into(),
            ));
        }
        if !PHOTOMETRIC_INTERPRETATIONS.contains(&self.photometric_interpretation.as_str()) {
            return Err(bad(
                "Photometric Interpretation (0028,0004)",
                format!("{:?}", self.photometric_interpretation),
                format!(
                    "it must be one of {}",
                    PHOTOMETRIC_INTERPRETATIONS.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The number of stored samples the header declares (rows x columns x frames x samples).
    pub fn sample_count(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.frames)
            * u64::from(self.samples_per_pixel)
    }

    /// The shape of the stored values as pydicom's `pixel_array` gives it: `[rows, columns]`,
    /// `[frames, rows, columns]`, `[rows, columns, samples]` or
    /// `[frames, rows, columns, samples]`.
    pub fn shape(&self) -> Vec<usize> {
        pixel_array_shape(self.frames, self.rows, self.columns, self.samples_per_pixel)
    }
}

/// pydicom's `pixel_array` shape of `frames` frames of `rows x columns` pixels of `samples`
/// samples: the frame and sample axes only when there are several.
pub(crate) fn pixel_array_shape(frames: u32, rows: u32, columns: u32, samples: u16) -> Vec<usize> {
    let mut shape = Vec::with_capacity(4);
    if frames > 1 {
        shape.push(frames as usize);
    }
    shape.push(rows as usize);
    shape.push(columns as usize);
    if samples > 1 {
        shape.push(samples as usize);
    }
    shape
}

/// A text value without the NUL and white-space padding DICOM allows.
fn trim_value(s: &str) -> String {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// A text element of `obj`, trimmed; `None` when absent or empty.
fn opt_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok().flatten()?;
    let s = elem.to_str().ok()?;
    let s = trim_value(&s);
    (!s.is_empty()).then_some(s)
}

/// A count element of `obj` (binary or text); `None` when absent or empty, an error naming
/// `name` when it is not a count.
fn opt_uint(path: &Path, obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<Option<u32>> {
    let Some(elem) = obj.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    if elem.is_empty() {
        return Ok(None);
    }
    // Numbers may be binary (US) or text (IS, e.g. Number of Frames).
    if let Ok(v) = elem.to_int::<i64>() {
        return u32::try_from(v)
            .map(Some)
            .map_err(|_| DdsmError::dicom(path, format!("{name} is {v}, not a count")));
    }
    let text = elem.to_str().map(|s| trim_value(&s)).unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u32>()
        .map(Some)
        .map_err(|_| DdsmError::dicom(path, format!("{name} is {text:?}, not a count")))
}

/// The [`DicomHeader`] of a parsed object, validated ([`DicomHeader::validate`]).
pub(super) fn header_from(path: &Path, obj: &DefaultDicomObject) -> Result<DicomHeader> {
    let transfer_syntax_uid = trim_value(obj.meta().transfer_syntax());
    let required = |tag, name: &str| -> Result<u32> {
        opt_uint(path, obj, tag, name)?
            .ok_or_else(|| DdsmError::dicom(path, format!("missing {name}")))
    };
    let small = |v: u32, name: &str| -> Result<u16> {
        u16::try_from(v).map_err(|_| DdsmError::dicom(path, format!("{name} is {v}")))
    };
    let rows = required(tags::ROWS, "Rows")?;
    let columns = required(tags::COLUMNS, "Columns")?;
    let bits_allocated = small(
        required(tags::BITS_ALLOCATED, "Bits Allocated")?,
        "Bits Allocated",
    )?;
    let bits_stored = match opt_uint(path, obj, tags::BITS_STORED, "Bits Stored")? {
        Some(v) => small(v, "Bits Stored")?,
        None => bits_allocated,
    };
    let high_bit = match opt_uint(path, obj, tags::HIGH_BIT, "High Bit")? {
        Some(v) => small(v, "High Bit")?,
        None => bits_stored.saturating_sub(1),
    };
    // An explicit 0 is kept so that `validate` refuses it; an absent or empty value is 1.
    // pydicom reads an explicit 0 as one frame (with a warning), as it reads an absent value.
    let frames = match opt_uint(path, obj, tags::NUMBER_OF_FRAMES, "Number of Frames")? {
        None | Some(0) => 1,
        Some(n) => n,
    };
    let samples_per_pixel = match opt_uint(path, obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?
    {
        Some(v) => small(v, "Samples per Pixel")?,
        None => 1,
    };
    let pixel_representation = match opt_uint(
        path,
        obj,
        tags::PIXEL_REPRESENTATION,
        "Pixel Representation",
    )? {
        Some(v) => small(v, "Pixel Representation")?,
        None => 0,
    };
    let planar_configuration = match opt_uint(
        path,
        obj,
        tags::PLANAR_CONFIGURATION,
        "Planar Configuration",
    )? {
        Some(v) => small(v, "Planar Configuration")?,
        None => 0,
    };
    let header = DicomHeader {
        rows,
        columns,
        frames,
        samples_per_pixel,
        bits_allocated,
        bits_stored,
        high_bit,
        pixel_representation,
        planar_configuration,
        photometric_interpretation: opt_str(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_default(),
        transfer_syntax_uid,
        study_instance_uid: opt_str(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        series_instance_uid: opt_str(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        sop_instance_uid: opt_str(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        series_description: opt_str(obj, tags::SERIES_DESCRIPTION),
        patient_id: opt_str(obj, tags::PATIENT_ID),
        modality: opt_str(obj, tags::MODALITY),
    };
    header.validate(path)?;
    Ok(header)
}

/// Reads the header of a DICOM file without reading its pixel data.
pub fn read_header(path: &Path) -> Result<DicomHeader> {
    let opened = open_object(path)?;
    header_from(path, &opened.obj)
}
