//! [`StoredPixels`] and [`read_stored`]: a file's stored values exactly as pydicom's
//! `pixel_array` gives them.

use std::path::Path;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::header::header_from;
use super::open::load;
use super::samples::decode_samples;
use super::{DecodeLimits, DicomHeader};
use crate::error::Result;

/// Stored pixel values before any rescale or VOI transform, as pydicom's `pixel_array`.
///
/// # Shapes
/// `values` is row-major in [`StoredPixels::shape`]: `[rows, columns]` for one frame of one
/// sample, `[frames, rows, columns]`, `[rows, columns, samples]` or
/// `[frames, rows, columns, samples]` (samples interleaved whatever the planar configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPixels {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Frames.
    pub frames: u32,
    /// Samples per pixel.
    pub samples_per_pixel: u16,
    /// The values, sign-extended when the data are signed. Unsigned 32-bit samples above
    /// `i32::MAX` keep their bit pattern (read them back with `v as u32`).
    pub values: Vec<i32>,
}

impl StoredPixels {
    /// The shape of `values`, as pydicom gives it.
    pub fn shape(&self) -> Vec<usize> {
        super::header::pixel_array_shape(
            self.frames,
            self.rows,
            self.columns,
            self.samples_per_pixel,
        )
    }
}

/// The YBR_FULL to RGB conversion of pydicom (`convert_color_space`), for 8-bit data.
pub(super) fn ybr_full_to_rgb(values: &mut [i32]) {
    for px in values.chunks_exact_mut(3) {
        let (y, cb, cr) = (px[0] as f32, px[1] as f32 - 128.0, px[2] as f32 - 128.0);
        let r = y + 1.402 * cr;
        let g = y + (-0.114 * 1.772 / 0.587) * cb + (-0.299 * 1.402 / 0.587) * cr;
        let b = y + 1.772 * cb;
        for (dst, v) in px.iter_mut().zip([r, g, b]) {
            *dst = (v + 0.5).floor().clamp(0.0, 255.0) as i32;
        }
    }
}

/// Reads a DICOM file's stored values, exactly as pydicom's `pixel_array` returns them
/// (before rescale or VOI; YBR_FULL 8-bit data converted to RGB as pydicom does).
///
/// # Shapes
/// See [`StoredPixels`]: `values.len()` is rows x columns x frames x samples.
pub fn read_stored(path: &Path, limits: &DecodeLimits) -> Result<(DicomHeader, StoredPixels)> {
    let loaded = load(path)?;
    let header = header_from(path, &loaded.obj)?;
    let samples = decode_samples(path, &loaded, &header, limits)?;
    let spp = header.samples_per_pixel as usize;
    let mut values: Vec<i32> = if samples.planar {
        let plane = header.rows as usize * header.columns as usize;
        let frame_len = plane * spp;
        let mut out = Vec::with_capacity(samples.count);
        for f in 0..header.frames as usize {
            for p in 0..plane {
                for s in 0..spp {
                    out.push(samples.get(f * frame_len + s * plane + p));
                }
            }
        }
        out
    } else {
        (0..samples.count).map(|i| samples.get(i)).collect()
    };
    let pi = header.photometric_interpretation.as_str();
    let converted_by_codec = TransferSyntaxRegistry
        .get(&header.transfer_syntax_uid)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data());
    if spp == 3
        && header.bits_allocated == 8
        && (pi == "YBR_FULL" || pi == "YBR_FULL_422")
        && !converted_by_codec
    {
        ybr_full_to_rgb(&mut values);
    }
    let stored = StoredPixels {
        rows: header.rows,
        columns: header.columns,
        frames: header.frames,
        samples_per_pixel: header.samples_per_pixel,
        values,
    };
    Ok((header, stored))
}
