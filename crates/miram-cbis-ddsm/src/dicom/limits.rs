//! [`DecodeLimits`]: the bounds on what a DICOM header may declare, checked before any
//! pixel data is decoded.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DicomHeader;
use crate::error::{DdsmError, Result};

/// Bounds on what a header may declare before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// The largest number of samples (rows x columns x frames x samples per pixel).
    pub max_pixels: u64,
    /// The largest number of frames.
    pub max_frames: u32,
}

impl Default for DecodeLimits {
    /// 2^28 samples (a 16384 x 16384 image; CBIS-DDSM's largest are about 7000 x 5500) and
    /// 4096 frames.
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 1 << 28,
            max_frames: 4096,
        }
    }
}

impl DecodeLimits {
    /// Limits for single mammograms: 2^27 samples (11585 x 11585) and one frame.
    pub fn mammogram() -> Self {
        DecodeLimits {
            max_pixels: 1 << 27,
            max_frames: 1,
        }
    }

    /// Checks a one-frame grayscale picture of `width x height` (a PNG or JPEG file's
    /// header) against the limits: [`DdsmError::TooLarge`] if it has more pixels.
    pub fn check_picture(&self, path: &Path, width: u64, height: u64) -> Result<()> {
        if width.saturating_mul(height) > self.max_pixels {
            return Err(DdsmError::TooLarge {
                path: path.to_path_buf(),
                rows: height,
                columns: width,
                frames: 1,
                samples: 1,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }

    /// Checks a header against the limits: [`DdsmError::TooLarge`] if it declares more.
    pub fn check(&self, path: &Path, header: &DicomHeader) -> Result<()> {
        let (rows, columns, frames, samples) = (
            u64::from(header.rows),
            u64::from(header.columns),
            u64::from(header.frames),
            u64::from(header.samples_per_pixel),
        );
        let too_large = |limit| DdsmError::TooLarge {
            path: path.to_path_buf(),
            rows,
            columns,
            frames,
            samples,
            limit,
        };
        if header.frames > self.max_frames {
            return Err(too_large(u64::from(self.max_frames)));
        }
        let total = rows
            .checked_mul(columns)
            .and_then(|x| x.checked_mul(frames))
            .and_then(|x| x.checked_mul(samples));
        match total {
            Some(t) if t <= self.max_pixels => Ok(()),
            _ => Err(too_large(self.max_pixels)),
        }
    }
}
