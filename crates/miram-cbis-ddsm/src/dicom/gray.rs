//! [`GrayImage`] and the grayscale readers: [`read_gray`], [`read_gray_rows`] (a band of rows,
//! read straight from disk for native files) and [`check_gray`] (what indexing runs).

use std::path::Path;

use ndarray::{s, Array2, ArrayView2};

use super::header::header_from;
use super::open::{load, open_object, Loaded, OpenedHeader};
use super::samples::{decode_samples, Correction};
use super::{DecodeLimits, DicomHeader};
use crate::error::{DdsmError, Result};

/// A grayscale image as lesion cropping uses it: an `ndarray` array of `u16` and its white
/// level.
///
/// # Shapes
/// [`GrayImage::view`] is `[height, width]` (rows, columns), row-major and contiguous (so
/// [`GrayImage::as_slice`] always has every pixel). Values run from 0 (black) to
/// `max_value` (white): MONOCHROME1 data are already inverted and signed data shifted to
/// unsigned.
///
/// ```
/// use miram_cbis_ddsm::GrayImage;
/// use ndarray::array;
///
/// let img = GrayImage::new(array![[0u16, 1, 2], [3, 4, 65535]], 65535);
/// assert_eq!((img.width(), img.height()), (3, 2));
/// assert_eq!(img.view().dim(), (2, 3));
/// assert_eq!(img.view()[[1, 2]], 65535);
/// assert_eq!(img.get(2, 1), Some(65535));
/// assert_eq!(img.as_slice(), &[0, 1, 2, 3, 4, 65535]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    /// The pixels, `[height, width]`, in standard (row-major, contiguous) layout.
    pixels: Array2<u16>,
    /// The white level: 2^bits_stored - 1 for DICOM, 255 for 8-bit JPEG.
    pub max_value: u16,
}

impl GrayImage {
    /// An image of the pixels `[height, width]` with white level `max_value`. An array in
    /// another memory order (a transposed or sliced view made owned) is copied to row-major
    /// order; a row-major one is taken as it is.
    pub fn new(pixels: Array2<u16>, max_value: u16) -> Self {
        let pixels = if pixels.is_standard_layout() {
            pixels
        } else {
            pixels.as_standard_layout().into_owned()
        };
        GrayImage { pixels, max_value }
    }

    /// An image of `width` x `height` row-major pixels; [`DdsmError::Invalid`] when
    /// `pixels.len()` is not `width * height`.
    pub fn from_vec(width: u32, height: u32, pixels: Vec<u16>, max_value: u16) -> Result<Self> {
        let len = pixels.len();
        let pixels =
            Array2::from_shape_vec((height as usize, width as usize), pixels).map_err(|_| {
                DdsmError::Invalid {
                    what: "image".into(),
                    message: format!("{len} pixels for {width} x {height} (width x height)"),
                }
            })?;
        Ok(GrayImage { pixels, max_value })
    }

    /// Width (columns).
    pub fn width(&self) -> u32 {
        self.pixels.ncols() as u32
    }

    /// Height (rows).
    pub fn height(&self) -> u32 {
        self.pixels.nrows() as u32
    }

    /// The pixels as an array view, `[height, width]`.
    pub fn view(&self) -> ArrayView2<'_, u16> {
        self.pixels.view()
    }

    /// The pixels, row-major: `height * width` values.
    pub fn as_slice(&self) -> &[u16] {
        // Every constructor keeps the array in standard layout.
        self.pixels
            .as_slice()
            .expect("GrayImage pixels are kept in standard layout")
    }

    /// The pixel array, `[height, width]`.
    pub fn into_array(self) -> Array2<u16> {
        self.pixels
    }

    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<u16> {
        self.pixels.get((y as usize, x as usize)).copied()
    }

    /// Whether the image is binary: at most two distinct values (an ROI mask).
    pub fn is_binary(&self) -> bool {
        let mut first: Option<u16> = None;
        let mut second: Option<u16> = None;
        for &v in self.as_slice() {
            match (first, second) {
                (None, _) => first = Some(v),
                (Some(a), _) if a == v => {}
                (Some(_), None) => second = Some(v),
                (Some(_), Some(b)) if b == v => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether the image is nearly binary: at least `1 - outlier_fraction` of the pixels lie
    /// within `tolerance` of the image's minimum or maximum. For lossy copies (JPEG) of ROI
    /// masks, whose edges carry compression noise.
    pub fn is_nearly_binary(&self, tolerance: u16, outlier_fraction: f64) -> bool {
        let pixels = self.as_slice();
        let (Some(&lo), Some(&hi)) = (pixels.iter().min(), pixels.iter().max()) else {
            return true;
        };
        let outliers = pixels
            .iter()
            .filter(|&&v| v > lo.saturating_add(tolerance) && v < hi.saturating_sub(tolerance))
            .count();
        (outliers as f64) <= outlier_fraction * pixels.len() as f64
    }
}

/// Reads a single-frame grayscale DICOM image as `u16`: MONOCHROME1 inverted
/// (`max_value - v`), signed data shifted by 2^(bits_stored - 1), `max_value` =
/// 2^bits_stored - 1.
///
/// # Shapes
/// The result is `[height, width]` = `[rows, columns]`.
pub fn read_gray(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    read_gray_impl(path, limits, None)
}

/// Reads the band of rows `rows` (a range of row indices) of a single-frame grayscale image,
/// as [`read_gray`] would give them. For native little-endian files (CBIS-DDSM's) only those
/// rows are read from disk, so a lesion crop does not read a whole mammogram.
///
/// # Shapes
/// The result is `[rows.len(), columns]`: `width` = columns, `height` = `rows.len()`.
pub fn read_gray_rows(
    path: &Path,
    limits: &DecodeLimits,
    rows: std::ops::Range<u32>,
) -> Result<GrayImage> {
    read_gray_impl(path, limits, Some(rows))
}

/// Opens `path` and reads its header, refused when it is outside `limits`.
fn open_within(path: &Path, limits: &DecodeLimits) -> Result<(OpenedHeader, DicomHeader)> {
    let opened = open_object(path)?;
    let header = header_from(path, &opened.obj)?;
    limits.check(path, &header)?;
    Ok((opened, header))
}

pub(super) fn read_gray_impl(
    path: &Path,
    limits: &DecodeLimits,
    rows: Option<std::ops::Range<u32>>,
) -> Result<GrayImage> {
    let (
        OpenedHeader {
            obj: _,
            location,
            total,
        },
        header,
    ) = open_within(path, limits)?;
    let band = rows.clone().unwrap_or(0..header.rows);
    if band.start > band.end || band.end > header.rows {
        return Err(DdsmError::Invalid {
            what: "rows".into(),
            message: format!(
                "{}..{} of an image of {} rows ({})",
                band.start,
                band.end,
                header.rows,
                path.display()
            ),
        });
    }
    if let Some((offset, len)) = location {
        if let Some(img) = gray_native_u16(path, &header, offset, len, total, band.clone())? {
            return Ok(img);
        }
    }
    let loaded = load(path)?;
    let header = header_from(path, &loaded.obj)?;
    let img = gray_from(path, &loaded, &header, limits)?;
    if band == (0..header.rows) {
        return Ok(img);
    }
    let rows = img
        .view()
        .slice(s![band.start as usize..band.end as usize, ..])
        .to_owned();
    Ok(GrayImage::new(rows, img.max_value))
}

/// The fast path of [`read_gray`] for native little-endian 16-bit grayscale files: the rows
/// are read from disk straight into the output buffer. `None` when the file is of another
/// kind (the general path handles it).
pub(super) fn gray_native_u16(
    path: &Path,
    header: &DicomHeader,
    offset: u64,
    len: u64,
    total: u64,
    band: std::ops::Range<u32>,
) -> Result<Option<GrayImage>> {
    use std::io::{Read, Seek, SeekFrom};
    let invert = match header.photometric_interpretation.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        _ => return Ok(None),
    };
    if header.samples_per_pixel != 1
        || header.frames != 1
        || header.bits_allocated != 16
        || header.bits_stored == 0
        || header.bits_stored > 16
    {
        return Ok(None);
    }
    let columns = u64::from(header.columns);
    let needed = u64::from(header.rows) * columns * 2;
    let available = len.min(total.saturating_sub(offset));
    if available < needed {
        return Err(DdsmError::Truncated {
            path: path.to_path_buf(),
            expected: needed,
            found: available,
        });
    }
    let count = (u64::from(band.end - band.start) * columns) as usize;
    let mut pixels = vec![0u16; count];
    let mut file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
    file.seek(SeekFrom::Start(
        offset + u64::from(band.start) * columns * 2,
    ))
    .and_then(|_| file.read_exact(bytemuck::cast_slice_mut(&mut pixels)))
    .map_err(|e| DdsmError::io(path, e))?;
    if cfg!(target_endian = "big") {
        pixels.iter_mut().for_each(|v| *v = u16::from_le(*v));
    }
    let bits = u32::from(header.bits_stored);
    let max = ((1u32 << bits) - 1) as i32;
    let signed = header.pixel_representation == 1;
    if !signed && bits == 16 {
        if invert {
            pixels.iter_mut().for_each(|v| *v = u16::MAX - *v);
        }
    } else {
        // Drop unused high bits, sign-extend signed data, shift it to unsigned (pydicom's
        // `_correct_unused_bits`, then the GrayImage convention).
        let shift = 32 - bits;
        let offset_value = if signed { 1i32 << (bits - 1) } else { 0 };
        for v in pixels.iter_mut() {
            let raw = u32::from(*v);
            let s = if signed {
                ((raw << shift) as i32) >> shift
            } else {
                (raw & ((1u32 << bits) - 1)) as i32
            };
            let g = (s + offset_value).clamp(0, max);
            *v = (if invert { max - g } else { g }) as u16;
        }
    }
    GrayImage::from_vec(header.columns, band.end - band.start, pixels, max as u16).map(Some)
}

/// What [`read_gray`] needs of a header: one sample, one frame, MONOCHROME1 or 2, at most
/// 16 bits stored. Returns whether the values are inverted (MONOCHROME1).
pub(super) fn gray_requirements(path: &Path, header: &DicomHeader) -> Result<bool> {
    let unsupported = |what: String| DdsmError::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    if header.samples_per_pixel != 1 {
        return Err(unsupported(format!(
            "{} samples per pixel for a grayscale image",
            header.samples_per_pixel
        )));
    }
    if header.frames != 1 {
        return Err(unsupported(format!(
            "{} frames for a single grayscale image",
            header.frames
        )));
    }
    let pi = header.photometric_interpretation.as_str();
    let invert = match pi {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => return Err(unsupported(format!("photometric interpretation {other:?}"))),
    };
    if header.bits_stored > 16 {
        return Err(unsupported(format!(
            "Bits Stored {} for a 16-bit grayscale image",
            header.bits_stored
        )));
    }
    Ok(invert)
}

/// Checks that a grayscale image can be decoded by [`read_gray`], as far as it can be told
/// without decoding native data: a valid header ([`DicomHeader::validate`]) within `limits`,
/// one sample, one frame, MONOCHROME1/2, a supported bit depth, and native little-endian
/// pixel data as long as the header needs. Other files (encapsulated, big endian, deflated)
/// are decoded. Used when indexing, so that an undecodable image is reported then, naming
/// the file and the cause, rather than vanishing later.
pub fn check_gray(path: &Path, limits: &DecodeLimits) -> Result<DicomHeader> {
    let (
        OpenedHeader {
            obj: _,
            location,
            total,
        },
        header,
    ) = open_within(path, limits)?;
    gray_requirements(path, &header)?;
    let ba = header.bits_allocated;
    if !matches!(ba, 1 | 8 | 16 | 32) {
        return Err(DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("Bits Allocated {ba}"),
        });
    }
    match location {
        Some((offset, len)) => {
            let needed = (header.sample_count() * u64::from(ba)).div_ceil(8);
            let available = len.min(total.saturating_sub(offset));
            if available < needed {
                return Err(DdsmError::Truncated {
                    path: path.to_path_buf(),
                    expected: needed,
                    found: available,
                });
            }
        }
        None => {
            read_gray(path, limits)?;
        }
    }
    Ok(header)
}

pub(super) fn gray_from(
    path: &Path,
    loaded: &Loaded,
    header: &DicomHeader,
    limits: &DecodeLimits,
) -> Result<GrayImage> {
    limits.check(path, header)?;
    let invert = gray_requirements(path, header)?;
    let samples = decode_samples(path, loaded, header, limits)?;
    let bits = u32::from(header.bits_stored.max(1));
    let max = ((1u32 << bits) - 1) as i32;
    let offset = if header.pixel_representation == 1 {
        1i32 << (bits - 1)
    } else {
        0
    };
    let pixels: Vec<u16> = match (samples.bits_allocated, samples.correction, samples.signed) {
        // The common CBIS-DDSM case, without per-sample branching.
        (16, Correction::LowBits(16), false) => samples
            .bytes
            .chunks_exact(2)
            .take(samples.count)
            .map(|c| {
                let v = u16::from_le_bytes([c[0], c[1]]);
                if invert {
                    u16::MAX - v
                } else {
                    v
                }
            })
            .collect(),
        _ => (0..samples.count)
            .map(|i| {
                let v = (samples.get(i) + offset).clamp(0, max);
                (if invert { max - v } else { v }) as u16
            })
            .collect(),
    };
    GrayImage::from_vec(header.columns, header.rows, pixels, max as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::{write_gray_u16, DicomUids};
    use ndarray::array;

    /// The DICOM UIDs of a test file.
    fn ids() -> DicomUids {
        DicomUids {
            study_instance_uid: "1.2.3".into(),
            series_instance_uid: "1.2.3.4".into(),
            sop_instance_uid: "1.2.3.4.5".into(),
            ..DicomUids::default()
        }
    }

    #[test]
    fn a_written_dicom_reads_back_as_a_height_by_width_view() {
        // 5 columns, 3 rows; pixel (x, y) = 1000 y + x.
        let (w, h) = (5u32, 3u32);
        let written = GrayImage::new(
            Array2::from_shape_fn((h as usize, w as usize), |(y, x)| (1000 * y + x) as u16),
            u16::MAX,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1-1.dcm");
        write_gray_u16(&path, &written, &ids()).expect("write");
        let img = read_gray(&path, &DecodeLimits::default()).expect("read");
        let view = img.view();
        assert_eq!(view.dim(), (3, 5));
        assert_eq!((img.width(), img.height()), (5, 3));
        assert_eq!(view[[2, 4]], 2004);
        assert_eq!(img.get(4, 2), Some(2004));
        assert_eq!(img.get(5, 0), None);
        for ((y, x), &v) in view.indexed_iter() {
            assert_eq!(img.get(x as u32, y as u32), Some(v));
            assert_eq!(img.as_slice()[y * 5 + x], v);
        }
        assert_eq!(img, written);
        // A band of rows is the same rows of the view.
        let band = read_gray_rows(&path, &DecodeLimits::default(), 1..3).expect("band");
        assert_eq!(band.view(), view.slice(s![1..3, ..]));
    }

    #[test]
    fn images_are_kept_row_major_whatever_the_array_layout() {
        // A transposed array is column-major in memory; the image holds it row-major.
        let t = array![[1u16, 2, 3], [4, 5, 6]].reversed_axes();
        assert!(!t.is_standard_layout());
        let img = GrayImage::new(t, 6);
        assert_eq!((img.width(), img.height()), (2, 3));
        assert_eq!(img.as_slice(), &[1, 4, 2, 5, 3, 6]);
        assert_eq!(img.get(1, 0), Some(4));
        assert!(GrayImage::from_vec(3, 2, vec![0; 5], 1).is_err());
        assert!(GrayImage::from_vec(3, 2, vec![0; 6], 1).is_ok());
    }
}
