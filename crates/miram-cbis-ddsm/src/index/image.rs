//! Reading an image of a dataset whatever its format: [`read_image`] decodes JPEG (the Kaggle
//! copy) or DICOM, told apart by [`image_kind_of`].

use std::path::Path;

use super::ImageKind;
use crate::dicom::{read_gray, DecodeLimits, GrayImage};
use crate::error::{DdsmError, Result};
use crate::kaggle::read_jpeg;

/// Decodes an image of the dataset as grayscale: JPEG (Kaggle) by extension or content,
/// DICOM otherwise.
///
/// # Shapes
/// The result is `[height, width]`, row-major.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    if image_kind_of(path)? == ImageKind::Jpeg {
        read_jpeg(path, limits)
    } else {
        read_gray(path, limits)
    }
}

/// Whether a file is JPEG or DICOM: by extension, or by its first bytes (`FF D8` is JPEG).
pub fn image_kind_of(path: &Path) -> Result<ImageKind> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => Ok(ImageKind::Jpeg),
        "dcm" | "dicom" => Ok(ImageKind::Dicom),
        _ => {
            use std::io::Read;
            let mut head = [0u8; 2];
            let mut f = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
            let n = f.read(&mut head).map_err(|e| DdsmError::io(path, e))?;
            Ok(if n == 2 && head == [0xFF, 0xD8] {
                ImageKind::Jpeg
            } else {
                ImageKind::Dicom
            })
        }
    }
}
