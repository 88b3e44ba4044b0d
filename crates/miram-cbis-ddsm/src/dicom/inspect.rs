//! [`inspect`]: the summary of a file's header and stored values that `miram inspect --json`
//! prints, with the keys of the DICOM fixtures' `expected.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{read_stored, DecodeLimits};
use crate::error::Result;

/// What `miram inspect --json` prints for a DICOM file: the keys of the fixtures'
/// `expected.json` (the repository's `fixtures/dicom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    /// The transfer syntax UID.
    pub transfer_syntax_uid: String,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Frames.
    pub frames: u32,
    /// Samples per pixel.
    pub samples_per_pixel: u16,
    /// Bits allocated.
    pub bits_allocated: u16,
    /// Bits stored.
    pub bits_stored: u16,
    /// Pixel representation.
    pub pixel_representation: u16,
    /// Photometric interpretation.
    pub photometric_interpretation: String,
    /// The shape of the stored values.
    pub shape: Vec<usize>,
    /// The smallest stored value.
    pub min: i64,
    /// The largest stored value.
    pub max: i64,
    /// The sum of the stored values.
    pub sum: i64,
    /// SHA-256 (hex) of the stored values as little-endian `i32`.
    pub sha256_i32le: String,
    /// The first eight stored values.
    pub first_values: Vec<i64>,
}

/// SHA-256 (lower-case hex) of values as little-endian `i32`, as the fixtures record it.
pub fn sha256_i32le(values: &[i32]) -> String {
    let mut hasher = Sha256::new();
    for chunk in values.chunks(4096) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a file (with the default [`DecodeLimits`]) and summarises its header and stored
/// values with the keys of the DICOM fixtures' `expected.json`.
pub fn inspect(path: &Path) -> Result<InspectReport> {
    inspect_with(path, &DecodeLimits::default())
}

/// [`inspect`] with the given decoding limits.
pub fn inspect_with(path: &Path, limits: &DecodeLimits) -> Result<InspectReport> {
    let (h, px) = read_stored(path, limits)?;
    let values = &px.values;
    // Unsigned 32-bit samples are held as i32 bit patterns; their true values for the sums.
    let unsigned32 = h.pixel_representation == 0 && h.bits_stored == 32;
    let wide = |v: i32| {
        if unsigned32 {
            i64::from(v as u32)
        } else {
            i64::from(v)
        }
    };
    Ok(InspectReport {
        shape: px.shape(),
        min: values.iter().map(|&v| wide(v)).min().unwrap_or(0),
        max: values.iter().map(|&v| wide(v)).max().unwrap_or(0),
        sum: values.iter().map(|&v| wide(v)).sum(),
        sha256_i32le: sha256_i32le(values),
        first_values: values.iter().take(8).map(|&v| wide(v)).collect(),
        transfer_syntax_uid: h.transfer_syntax_uid,
        rows: h.rows,
        columns: h.columns,
        frames: h.frames,
        samples_per_pixel: h.samples_per_pixel,
        bits_allocated: h.bits_allocated,
        bits_stored: h.bits_stored,
        pixel_representation: h.pixel_representation,
        photometric_interpretation: h.photometric_interpretation,
    })
}
