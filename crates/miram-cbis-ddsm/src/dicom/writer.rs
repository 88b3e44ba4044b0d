//! [`write_gray_u16`]: a 16-bit MONOCHROME2 image written as a CBIS-DDSM-like DICOM
//! Part-10 file, and the [`DicomUids`] it carries.

use std::path::Path;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use serde::{Deserialize, Serialize};

use super::open::error_chain;
use super::GrayImage;
use crate::error::{DdsmError, Result};

/// UIDs and identifying fields of a file written by [`write_gray_u16`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DicomUids {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Patient ID (CBIS-DDSM puts the case folder name here, e.g.
    /// `Mass-Training_P_00001_LEFT_CC`).
    pub patient_id: String,
    /// Series Description (`full mammogram images`, `cropped images`, `ROI mask images`).
    pub series_description: String,
    /// Study Date as `YYYYMMDD`; empty to leave it out.
    pub study_date: String,
    /// Series Number.
    pub series_number: u32,
    /// Instance Number.
    pub instance_number: u32,
}

/// The SOP class of CBIS-DDSM files: Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";

/// Writes a 16-bit MONOCHROME2 image as a DICOM Part-10 file (explicit VR little endian,
/// Bits Allocated/Stored 16, High Bit 15, unsigned, one sample per pixel, Modality MG,
/// Secondary Capture SOP class as CBIS-DDSM's files), with the given UIDs. Parent folders
/// are created.
///
/// # Shapes
/// `img` is `[height, width]` ([`GrayImage::view`]), neither of them 0.
pub fn write_gray_u16(path: &Path, img: &GrayImage, ids: &DicomUids) -> Result<()> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DdsmError::Invalid {
            what: "image".into(),
            message: format!(
                "{} pixels for {} x {} (width x height)",
                img.as_slice().len(),
                img.width(),
                img.height()
            ),
        });
    }
    let (rows, columns) = match (u16::try_from(img.height()), u16::try_from(img.width())) {
        (Ok(r), Ok(c)) => (r, c),
        _ => {
            return Err(DdsmError::Invalid {
                what: "image".into(),
                message: format!(
                    "{} x {} does not fit DICOM's 16-bit Rows/Columns",
                    img.width(),
                    img.height()
                ),
            })
        }
    };
    for (name, uid) in [
        ("study", &ids.study_instance_uid),
        ("series", &ids.series_instance_uid),
        ("SOP instance", &ids.sop_instance_uid),
    ] {
        let valid = !uid.is_empty()
            && uid.len() <= 64
            && uid.chars().all(|c| c.is_ascii_digit() || c == '.');
        if !valid {
            return Err(DdsmError::Invalid {
                what: format!("{name} UID"),
                message: format!("{uid:?} is not a DICOM UID"),
            });
        }
    }
    let mut obj = InMemDicomObject::new_empty();
    let mut put_str = |tag: Tag, vr: VR, value: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put_str(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE_SOP_CLASS);
    put_str(tags::SOP_INSTANCE_UID, VR::UI, &ids.sop_instance_uid);
    if !ids.study_date.is_empty() {
        put_str(tags::STUDY_DATE, VR::DA, &ids.study_date);
    }
    put_str(tags::MODALITY, VR::CS, "MG");
    put_str(tags::SERIES_DESCRIPTION, VR::LO, &ids.series_description);
    put_str(tags::PATIENT_NAME, VR::PN, &ids.patient_id);
    put_str(tags::PATIENT_ID, VR::LO, &ids.patient_id);
    put_str(tags::STUDY_INSTANCE_UID, VR::UI, &ids.study_instance_uid);
    put_str(tags::SERIES_INSTANCE_UID, VR::UI, &ids.series_instance_uid);
    put_str(tags::SERIES_NUMBER, VR::IS, &ids.series_number.to_string());
    put_str(
        tags::INSTANCE_NUMBER,
        VR::IS,
        &ids.instance_number.to_string(),
    );
    put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    let mut put_us = |tag: Tag, value: u16| {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    };
    put_us(tags::SAMPLES_PER_PIXEL, 1);
    put_us(tags::ROWS, rows);
    put_us(tags::COLUMNS, columns);
    put_us(tags::BITS_ALLOCATED, 16);
    put_us(tags::BITS_STORED, 16);
    put_us(tags::HIGH_BIT, 15);
    put_us(tags::PIXEL_REPRESENTATION, 0);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(img.as_slice().iter().copied().collect()),
    ));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(SECONDARY_CAPTURE_SOP_CLASS)
        .media_storage_sop_instance_uid(ids.sop_instance_uid.as_str());
    let file = obj
        .with_meta(meta)
        .map_err(|e| DdsmError::dicom(path, error_chain(&e)))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DdsmError::io(parent, e))?;
    }
    // `write_all` adds the 128-byte preamble, "DICM" and the meta group (Part 10).
    let out = std::fs::File::create(path).map_err(|e| DdsmError::io(path, e))?;
    file.write_all(out)
        .map_err(|e| DdsmError::dicom(path, error_chain(&e)))?;
    Ok(())
}
