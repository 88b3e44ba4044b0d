//! DICOM images through dicom-rs: headers, stored values exactly as pydicom's `pixel_array`
//! returns them, 16-bit grayscale images for cropping, and a writer of CBIS-DDSM-like files.
//!
//! Reading mirrors pydicom 3's decoder (`pydicom/pixels/decoders/base.py`): native data is
//! checked against the length the header needs (a short file is an error, as pydicom's
//! `ValueError`), unused high bits are dropped and signed values sign-extended from
//! `BitsStored` (`_correct_unused_bits`), and JPEG 2000 codestreams whose signedness disagrees
//! with `PixelRepresentation` are corrected (`_apply_sign_correction`). Sizes declared by the
//! header are checked against [`DecodeLimits`] before anything is decoded, and every decoder
//! call is guarded so that a corrupt file gives an error naming it, never a panic.
//!
//! CBIS-DDSM images are 16-bit MONOCHROME2 (some MONOCHROME1) grayscale; [`read_gray`] gives
//! them as `u16` with MONOCHROME1 inverted, which is what lesion cropping needs.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_core::header::HasLength;
use dicom_core::value::DicomValueType;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntaxIndex};
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
        let mut shape = Vec::with_capacity(4);
        if self.frames > 1 {
            shape.push(self.frames as usize);
        }
        shape.push(self.rows as usize);
        shape.push(self.columns as usize);
        if self.samples_per_pixel > 1 {
            shape.push(self.samples_per_pixel as usize);
        }
        shape
    }
}

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
        let mut shape = Vec::with_capacity(4);
        if self.frames > 1 {
            shape.push(self.frames as usize);
        }
        shape.push(self.rows as usize);
        shape.push(self.columns as usize);
        if self.samples_per_pixel > 1 {
            shape.push(self.samples_per_pixel as usize);
        }
        shape
    }
}

/// A grayscale image as lesion cropping uses it.
///
/// # Shapes
/// `pixels` is row-major `[height, width]`. Values run from 0 (black) to `max_value` (white):
/// MONOCHROME1 data are already inverted and signed data shifted to unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    /// Width (columns).
    pub width: u32,
    /// Height (rows).
    pub height: u32,
    /// The pixels, row-major.
    pub pixels: Vec<u16>,
    /// The white level: 2^bits_stored - 1 for DICOM, 255 for 8-bit JPEG.
    pub max_value: u16,
}

impl GrayImage {
    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<u16> {
        if x < self.width && y < self.height {
            self.pixels
                .get(y as usize * self.width as usize + x as usize)
                .copied()
        } else {
            None
        }
    }

    /// Whether the image is binary: at most two distinct values (an ROI mask).
    pub fn is_binary(&self) -> bool {
        let mut first: Option<u16> = None;
        let mut second: Option<u16> = None;
        for &v in &self.pixels {
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
        let (Some(&lo), Some(&hi)) = (self.pixels.iter().min(), self.pixels.iter().max()) else {
            return true;
        };
        let outliers = self
            .pixels
            .iter()
            .filter(|&&v| v > lo.saturating_add(tolerance) && v < hi.saturating_sub(tolerance))
            .count();
        (outliers as f64) <= outlier_fraction * self.pixels.len() as f64
    }
}

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

fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(DdsmError::dicom(
                path,
                format!("the {what} failed on malformed data: {msg}"),
            ))
        }
    }
}

/// Opens a file's header (everything before Pixel Data) after checking its declared lengths;
/// also returns where native little-endian Pixel Data lies (offset, length) and the file
/// size.
fn open_object(path: &Path) -> Result<OpenedHeader> {
    // Report a missing or unreadable file as an I/O error naming it, not as a parse error.
    let total = std::fs::metadata(path)
        .map_err(|e| DdsmError::io(path, e))?
        .len();
    let file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
    let mut source = std::io::BufReader::new(file);
    let location = guarded(path, "DICOM parser", || {
        check_declared_lengths(path, &mut source, total, true)
    })?;
    let obj = guarded(path, "DICOM parser", || {
        OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| DdsmError::dicom(path, error_chain(&e)))
    })?;
    Ok(OpenedHeader {
        obj,
        location,
        total,
    })
}

/// What [`open_object`] gives: the header object, where native little-endian Pixel Data lies
/// (offset, length) and the file size.
struct OpenedHeader {
    obj: DefaultDicomObject,
    location: Option<(u64, u64)>,
    total: u64,
}

/// A file read for its pixels: its bytes, the parsed object (without Pixel Data when the
/// raw bytes can be used directly) and where native little-endian Pixel Data lies.
struct Loaded {
    bytes: Vec<u8>,
    obj: DefaultDicomObject,
    native: Option<std::ops::Range<usize>>,
}

impl Loaded {
    fn native_bytes(&self) -> Option<&[u8]> {
        self.native.clone().and_then(|r| self.bytes.get(r))
    }
}

fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| DdsmError::io(path, e))?;
    let total = bytes.len() as u64;
    let native = guarded(path, "DICOM parser", || {
        check_declared_lengths(path, &mut std::io::Cursor::new(&bytes[..]), total, false)
    })?;
    let native = native.map(|(offset, len)| offset as usize..(offset + len) as usize);
    let obj = guarded(path, "DICOM parser", || {
        let mut options = OpenFileOptions::new();
        if native.is_some() {
            // The pixels are taken from `bytes` directly; parse the header only.
            options = options.read_until(tags::PIXEL_DATA);
        }
        options
            .from_reader(&bytes[..])
            .map_err(|e| DdsmError::dicom(path, error_chain(&e)))
    })?;
    Ok(Loaded { bytes, obj, native })
}

/// The tag of sequence and pixel-data items, (FFFE,E000).
const ITEM_TAG: Tag = Tag(0xFFFE, 0xE000);

/// Value representations whose explicit-VR header has a 4-byte length.
const LONG_VRS: [&[u8; 2]; 11] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
];

/// Walks the element headers of a Part-10 file (the meta group by hand, the data set with
/// dicom-parser's lazy reader, values skipped) and refuses any element, sequence or item
/// that declares more bytes than the whole file holds, so that the parser never reserves
/// memory for a length a tiny file merely claims. With `stop_at_pixel_data`, stops at the
/// Pixel Data element. Deflated data sets are checked up to the meta group only.
///
/// Returns the offset and length of the top-level Pixel Data value when it is native, little
/// endian and of defined length (its bytes are then the samples, little endian).
fn check_declared_lengths<R: std::io::Read + std::io::Seek>(
    path: &Path,
    source: &mut R,
    total: u64,
    stop_at_pixel_data: bool,
) -> Result<Option<(u64, u64)>> {
    use dicom_parser::dataset::lazy_read::LazyDataSetReader;
    use dicom_parser::dataset::LazyDataToken;
    use dicom_parser::StatefulDecode;
    use std::io::SeekFrom;

    let bad = |m: String| DdsmError::dicom(path, m);
    let io = |e: std::io::Error| DdsmError::io(path, e);
    let too_long = |tag: Tag, len: u64| {
        bad(format!(
            "element {tag} declares {len} bytes in a file of {total} bytes"
        ))
    };
    // The preamble and magic code.
    let mut head = [0u8; 132];
    let n = source.read(&mut head).map_err(io)?;
    let mut got = n;
    while got < head.len() {
        let m = source.read(&mut head[got..]).map_err(io)?;
        if m == 0 {
            break;
        }
        got += m;
    }
    let start: u64 = if got >= 132 && &head[128..132] == b"DICM" {
        132
    } else if got >= 4 && &head[0..4] == b"DICM" {
        4
    } else {
        return Err(bad(
            "no DICM magic code at byte 128 or 0: not a DICOM Part-10 file".into(),
        ));
    };
    source.seek(SeekFrom::Start(start)).map_err(io)?;
    // The meta group: explicit VR little endian, group 0002.
    let mut pos = start;
    let mut ts_uid = String::new();
    loop {
        let mut h = [0u8; 8];
        if source.read_exact(&mut h).is_err() {
            break;
        }
        let group = u16::from_le_bytes([h[0], h[1]]);
        let element = u16::from_le_bytes([h[2], h[3]]);
        if group != 0x0002 {
            break;
        }
        let vr = [h[4], h[5]];
        let (len, header_len) = if LONG_VRS.contains(&&vr) {
            let mut l = [0u8; 4];
            source.read_exact(&mut l).map_err(io)?;
            (u64::from(u32::from_le_bytes(l)), 12)
        } else {
            (u64::from(u16::from_le_bytes([h[6], h[7]])), 8)
        };
        if len > total {
            return Err(too_long(Tag(group, element), len));
        }
        if element == 0x0010 && len <= 1024 {
            let mut v = vec![0u8; len as usize];
            source.read_exact(&mut v).map_err(io)?;
            ts_uid = String::from_utf8_lossy(&v)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string();
        } else {
            source.seek(SeekFrom::Current(len as i64)).map_err(io)?;
        }
        pos += header_len + len;
    }
    source.seek(SeekFrom::Start(pos)).map_err(io)?;
    let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
        // Reported by the parser that follows, with its own words.
        return Ok(None);
    };
    if !ts.is_codec_free() && !ts.is_encapsulated_pixel_data() {
        // A deflated data set: the lazy reader cannot walk it.
        return Ok(None);
    }
    let native_le = ts.is_codec_free() && ts.endianness() == Endianness::Little;
    let mut pixel = None;
    let mut depth = 0usize;
    let mut reader =
        LazyDataSetReader::new_with_ts(source, ts).map_err(|e| bad(error_chain(&e)))?;
    while let Some(token) = reader.advance() {
        let mut token = token.map_err(|e| bad(error_chain(&e)))?;
        let (tag, len) = match &mut token {
            LazyDataToken::ElementHeader(h) => (h.tag, h.len.get()),
            LazyDataToken::LazyValue { header, decoder } => {
                if header.tag == tags::PIXEL_DATA && depth == 0 {
                    if let (true, Some(len)) = (native_le, header.len.get()) {
                        pixel = Some((decoder.position(), u64::from(len)));
                    }
                    if stop_at_pixel_data {
                        // What follows Pixel Data is never parsed in this mode.
                        return Ok(pixel);
                    }
                }
                (header.tag, header.len.get())
            }
            LazyDataToken::SequenceStart { tag, len } => {
                depth += 1;
                (*tag, len.get())
            }
            LazyDataToken::PixelSequenceStart => {
                if stop_at_pixel_data && depth == 0 {
                    return Ok(None);
                }
                depth += 1;
                (tags::PIXEL_DATA, None)
            }
            LazyDataToken::SequenceEnd => {
                depth = depth.saturating_sub(1);
                (ITEM_TAG, None)
            }
            LazyDataToken::ItemStart { len } => (ITEM_TAG, len.get()),
            LazyDataToken::LazyItemValue { len, .. } => (ITEM_TAG, Some(*len)),
            _ => (ITEM_TAG, None),
        };
        if let Some(len) = len {
            if u64::from(len) > total {
                return Err(too_long(tag, u64::from(len)));
            }
        }
        token.skip().map_err(|e| bad(error_chain(&e)))?;
    }
    Ok(pixel)
}

/// The message of an error and of its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

fn trim_value(s: &str) -> String {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

fn opt_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok().flatten()?;
    let s = elem.to_str().ok()?;
    let s = trim_value(&s);
    (!s.is_empty()).then_some(s)
}

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

fn header_from(path: &Path, obj: &DefaultDicomObject) -> Result<DicomHeader> {
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

/// How decoded samples must be corrected to match pydicom.
#[derive(Debug, Clone, Copy)]
enum Correction {
    /// Interpret the allocated width as signed or unsigned, nothing else.
    None,
    /// Keep the low `bits` bits, sign-extend if the data are signed.
    LowBits(u16),
}

/// Decoded samples as little-endian bytes of `bits_allocated` width (or packed bits).
struct Samples<'a> {
    bytes: Cow<'a, [u8]>,
    bits_allocated: u16,
    signed: bool,
    correction: Correction,
    count: usize,
    /// For native multi-sample data stored plane by plane.
    planar: bool,
}

impl Samples<'_> {
    /// The raw sample `i` (in storage order), corrected as pydicom does.
    #[inline]
    fn get(&self, i: usize) -> i32 {
        let b = &self.bytes;
        let (raw, width): (u32, u16) = match self.bits_allocated {
            1 => (u32::from((b[i / 8] >> (i % 8)) & 1), 1),
            8 => (u32::from(b[i]), 8),
            16 => (u32::from(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])), 16),
            _ => (
                u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]),
                32,
            ),
        };
        let bits = match self.correction {
            Correction::LowBits(bits) if bits < width && bits > 0 => bits,
            _ => width,
        };
        let shift = 32 - u32::from(bits);
        if self.signed {
            ((raw << shift) as i32) >> shift
        } else if bits == 32 {
            raw as i32
        } else {
            (raw & ((1u32 << bits) - 1)) as i32
        }
    }
}

/// JPEG 2000 transfer syntaxes (Part 1, Part 2 and High-Throughput).
const JPEG2000_UIDS: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// Signedness and precision of the first component of a JPEG 2000 codestream (SIZ marker).
fn j2k_signedness(data: &[u8]) -> Option<(bool, u16)> {
    let pos = data
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // SOC, SIZ marker, Lsiz, Rsiz, 8 x 4 bytes of sizes, Csiz, then Ssiz of component 0.
    let ssiz = *data.get(pos + 4 + 2 + 2 + 32 + 2)?;
    Some((ssiz & 0x80 != 0, u16::from(ssiz & 0x7F) + 1))
}

/// The bytes of native pixel data, little endian at the width of `bits_allocated`.
fn native_le_bytes<'a>(
    prim: &'a PrimitiveValue,
    bits_allocated: u16,
    big_endian: bool,
) -> std::result::Result<Cow<'a, [u8]>, String> {
    let swap = |bytes: &[u8], width: usize| -> Vec<u8> {
        let mut out = bytes.to_vec();
        for chunk in out.chunks_exact_mut(width) {
            chunk.reverse();
        }
        out
    };
    match prim {
        PrimitiveValue::U8(_) => {
            let bytes = prim.to_bytes();
            match (big_endian, bits_allocated) {
                (true, 16) => Ok(Cow::Owned(swap(&bytes, 2))),
                (true, 32) => Ok(Cow::Owned(swap(&bytes, 4))),
                _ => Ok(bytes),
            }
        }
        PrimitiveValue::U16(words) => {
            if big_endian && bits_allocated == 32 {
                // Words were read big endian; the high word comes first.
                let mut out = Vec::with_capacity(words.len() * 2);
                for pair in words.chunks(2) {
                    let hi = u32::from(pair[0]);
                    let lo = pair.get(1).map_or(0, |&w| u32::from(w));
                    out.extend_from_slice(&((hi << 16) | lo).to_le_bytes());
                }
                Ok(Cow::Owned(out))
            } else {
                Ok(le_of(prim))
            }
        }
        PrimitiveValue::I16(_)
        | PrimitiveValue::U32(_)
        | PrimitiveValue::I32(_)
        | PrimitiveValue::U64(_)
        | PrimitiveValue::I64(_) => Ok(le_of(prim)),
        other => Err(format!(
            "pixel data held as {:?} values",
            other.value_type()
        )),
    }
}

/// The little-endian bytes of a binary primitive value.
fn le_of(prim: &PrimitiveValue) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        prim.to_bytes()
    } else {
        let mut out = Vec::new();
        match prim {
            PrimitiveValue::U16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PrimitiveValue::I16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PrimitiveValue::U32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PrimitiveValue::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PrimitiveValue::U64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PrimitiveValue::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            _ => return prim.to_bytes(),
        }
        Cow::Owned(out)
    }
}

/// Decodes the pixel data of `obj` into corrected samples, after checking the limits.
fn decode_samples<'a>(
    path: &Path,
    loaded: &'a Loaded,
    header: &DicomHeader,
    limits: &DecodeLimits,
) -> Result<Samples<'a>> {
    let obj = &loaded.obj;
    limits.check(path, header)?;
    let ba = header.bits_allocated;
    if !matches!(ba, 1 | 8 | 16 | 32) {
        return Err(DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("Bits Allocated {ba}"),
        });
    }
    if header.bits_stored == 0 || header.bits_stored > ba {
        return Err(DdsmError::dicom(
            path,
            format!(
                "Bits Stored {} with Bits Allocated {ba}",
                header.bits_stored
            ),
        ));
    }
    let count = usize::try_from(header.sample_count())
        .map_err(|_| DdsmError::dicom(path, "sample count does not fit in memory"))?;
    let needed = (count as u64 * u64::from(ba)).div_ceil(8);
    let signed = header.pixel_representation == 1;
    let ts_uid = header.transfer_syntax_uid.as_str();
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("transfer syntax {ts_uid}"),
        })?;
    let subsampled = header.photometric_interpretation == "YBR_FULL_422"
        && header.samples_per_pixel == 3
        && ba == 8;
    let element = match loaded.native_bytes() {
        Some(raw) => Ok(raw),
        None => {
            let pixel = obj
                .element_opt(tags::PIXEL_DATA)
                .ok()
                .flatten()
                .ok_or_else(|| DdsmError::dicom(path, "no Pixel Data element"))?;
            Err(pixel.value())
        }
    };
    let native: Option<Cow<'a, [u8]>> = match element {
        Ok(raw) => Some(Cow::Borrowed(raw)),
        Err(Value::Primitive(prim)) => {
            let big_endian = ts.endianness() == Endianness::Big;
            Some(
                native_le_bytes(prim, ba, big_endian).map_err(|what| DdsmError::Unsupported {
                    path: path.to_path_buf(),
                    what,
                })?,
            )
        }
        Err(_) => None,
    };
    match (native, element) {
        (Some(bytes), _) => {
            // Two luminance samples share one pair of chrominance samples.
            let needed = if subsampled { needed / 3 * 2 } else { needed };
            if (bytes.len() as u64) < needed {
                return Err(DdsmError::Truncated {
                    path: path.to_path_buf(),
                    expected: needed,
                    found: bytes.len() as u64,
                });
            }
            let bytes = if subsampled {
                Cow::Owned(upsample_ybr_422(&bytes[..needed as usize]))
            } else {
                bytes
            };
            Ok(Samples {
                bytes,
                bits_allocated: ba,
                signed,
                correction: Correction::LowBits(header.bits_stored),
                count,
                planar: !subsampled
                    && header.samples_per_pixel > 1
                    && header.planar_configuration == 1,
            })
        }
        (None, Err(Value::PixelSequence(seq))) => {
            if !ts.can_decode_all() {
                return Err(DdsmError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("transfer syntax {ts_uid} ({})", ts.name()),
                });
            }
            if ts_uid == RLE_LOSSLESS && ba != 1 {
                // Decoded here for every sample width (dicom-rs stops at 16 bits).
                let frames = header.frames as usize;
                let pixels = header.rows as usize * header.columns as usize;
                let mut data = Vec::with_capacity(needed as usize);
                let parts = rle_frames(seq.fragments(), seq.offset_table(), frames)
                    .map_err(|m| DdsmError::dicom(path, m))?;
                for (f, part) in parts.iter().enumerate() {
                    decode_rle_frame(
                        part,
                        pixels,
                        usize::from(header.samples_per_pixel),
                        usize::from(ba / 8),
                        &mut data,
                    )
                    .map_err(|m| DdsmError::dicom(path, format!("RLE frame {f}: {m}")))?;
                }
                return Ok(Samples {
                    bytes: Cow::Owned(data),
                    bits_allocated: ba,
                    signed,
                    correction: Correction::LowBits(header.bits_stored),
                    count,
                    planar: false,
                });
            }
            if ba == 1 || ba == 32 {
                return Err(DdsmError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("Bits Allocated {ba} in encapsulated pixel data"),
                });
            }
            let j2k = JPEG2000_UIDS.contains(&ts_uid);
            let correction = if j2k {
                let first = seq.fragments().first().map(|f| f.as_slice()).unwrap_or(&[]);
                match j2k_signedness(first) {
                    Some((j2k_signed, precision))
                        if j2k_signed != signed
                            && header.photometric_interpretation.starts_with("MONOCHROME") =>
                    {
                        Correction::LowBits(precision)
                    }
                    _ => Correction::None,
                }
            } else {
                Correction::LowBits(header.bits_stored)
            };
            let data = guarded(path, "pixel data decoder", || {
                use dicom_pixeldata::PixelDecoder;
                obj.decode_pixel_data()
                    .map(|d| d.into_data())
                    .map_err(|e| DdsmError::dicom(path, error_chain(&e)))
            })?;
            if (data.len() as u64) < needed {
                return Err(DdsmError::dicom(
                    path,
                    format!(
                        "decoded pixel data has {} bytes, the header needs {needed}",
                        data.len()
                    ),
                ));
            }
            Ok(Samples {
                bytes: Cow::Owned(data),
                bits_allocated: ba,
                signed,
                correction,
                count,
                planar: false,
            })
        }
        _ => Err(DdsmError::dicom(path, "Pixel Data is a sequence")),
    }
}

/// The RLE Lossless transfer syntax.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The encoded bytes of each frame of encapsulated pixel data: one fragment per frame, all
/// fragments for a single frame, or the fragments the Basic Offset Table assigns to each.
fn rle_frames<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u32],
    frames: usize,
) -> std::result::Result<Vec<Cow<'a, [u8]>>, String> {
    if fragments.len() == frames {
        return Ok(fragments
            .iter()
            .map(|f| Cow::Borrowed(f.as_slice()))
            .collect());
    }
    if frames == 1 {
        return Ok(vec![Cow::Owned(fragments.concat())]);
    }
    if offsets.len() != frames {
        return Err(format!(
            "{} fragments and {} offsets for {frames} frames",
            fragments.len(),
            offsets.len()
        ));
    }
    // Each fragment item has an 8-byte header; offsets count from the first item.
    let mut starts = Vec::with_capacity(fragments.len());
    let mut at = 0u64;
    for f in fragments {
        starts.push(at);
        at += f.len() as u64 + 8;
    }
    Ok((0..frames)
        .map(|i| {
            let lo = u64::from(offsets[i]);
            let hi = offsets.get(i + 1).map_or(u64::MAX, |&o| u64::from(o));
            let parts: Vec<u8> = fragments
                .iter()
                .zip(&starts)
                .filter(|(_, &s)| s >= lo && s < hi)
                .flat_map(|(f, _)| f.iter().copied())
                .collect();
            Cow::Owned(parts)
        })
        .collect())
}

/// Decodes one RLE Lossless frame (DICOM PS3.5 annex G: a 64-byte header of segment offsets,
/// one PackBits segment per sample byte, most significant byte first) and appends its
/// samples, interleaved and little endian, to `out`.
fn decode_rle_frame(
    data: &[u8],
    pixels: usize,
    samples: usize,
    bytes_per_sample: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let word = |i: usize| -> std::result::Result<usize, String> {
        data.get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "shorter than its 64-byte header".to_string())
    };
    let segments = word(0)?;
    if segments != samples * bytes_per_sample || segments > 15 {
        return Err(format!(
            "{segments} segments, expected {} ({samples} samples x {bytes_per_sample} bytes)",
            samples * bytes_per_sample
        ));
    }
    let mut planes: Vec<Vec<u8>> = Vec::with_capacity(segments);
    for k in 0..segments {
        let start = word(k + 1)?;
        let end = if k + 1 < segments {
            word(k + 2)?
        } else {
            data.len()
        };
        let seg = data
            .get(start..end.max(start).min(data.len()))
            .ok_or_else(|| format!("segment {k} starts at {start}, past the end"))?;
        let mut plane = Vec::with_capacity(pixels);
        let mut i = 0;
        while i < seg.len() && plane.len() < pixels {
            let h = seg[i] as i8;
            i += 1;
            if h >= 0 {
                let n = h as usize + 1;
                let lit = seg
                    .get(i..i + n)
                    .ok_or_else(|| format!("segment {k}: literal run past the end"))?;
                plane.extend_from_slice(lit);
                i += n;
            } else if h != -128 {
                let n = 1 - h as isize;
                let v = *seg
                    .get(i)
                    .ok_or_else(|| format!("segment {k}: repeat run past the end"))?;
                plane.extend(std::iter::repeat_n(v, n as usize));
                i += 1;
            }
        }
        if plane.len() < pixels {
            return Err(format!(
                "segment {k} decodes to {} bytes, expected {pixels}",
                plane.len()
            ));
        }
        plane.truncate(pixels);
        planes.push(plane);
    }
    out.reserve(pixels * segments);
    for p in 0..pixels {
        for s in 0..samples {
            // Little endian: least significant byte (the last segment of the sample) first.
            for b in (0..bytes_per_sample).rev() {
                out.push(planes[s * bytes_per_sample + b][p]);
            }
        }
    }
    Ok(())
}

/// Expands native YBR_FULL_422 data (`Y1 Y2 Cb Cr` per pair of pixels) to one `Y Cb Cr`
/// triple per pixel, as pydicom does before its colour conversion.
fn upsample_ybr_422(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    for q in data.chunks_exact(4) {
        out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
    }
    out
}

/// The YBR_FULL to RGB conversion of pydicom (`convert_color_space`), for 8-bit data.
fn ybr_full_to_rgb(values: &mut [i32]) {
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

fn read_gray_impl(
    path: &Path,
    limits: &DecodeLimits,
    rows: Option<std::ops::Range<u32>>,
) -> Result<GrayImage> {
    let OpenedHeader {
        obj,
        location,
        total,
    } = open_object(path)?;
    let header = header_from(path, &obj)?;
    limits.check(path, &header)?;
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
    let w = img.width as usize;
    Ok(GrayImage {
        width: img.width,
        height: band.end - band.start,
        pixels: img.pixels[band.start as usize * w..band.end as usize * w].to_vec(),
        max_value: img.max_value,
    })
}

/// The fast path of [`read_gray`] for native little-endian 16-bit grayscale files: the rows
/// are read from disk straight into the output buffer. `None` when the file is of another
/// kind (the general path handles it).
fn gray_native_u16(
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
    Ok(Some(GrayImage {
        width: header.columns,
        height: band.end - band.start,
        pixels,
        max_value: max as u16,
    }))
}

/// What [`read_gray`] needs of a header: one sample, one frame, MONOCHROME1 or 2, at most
/// 16 bits stored. Returns whether the values are inverted (MONOCHROME1).
fn gray_requirements(path: &Path, header: &DicomHeader) -> Result<bool> {
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
    let OpenedHeader {
        obj,
        location,
        total,
    } = open_object(path)?;
    let header = header_from(path, &obj)?;
    limits.check(path, &header)?;
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

fn gray_from(
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
    Ok(GrayImage {
        width: header.columns,
        height: header.rows,
        pixels,
        max_value: max as u16,
    })
}

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

/// Writes a 16-bit MONOCHROME2 image as a DICOM Part-10 file (explicit VR little endian,
/// Bits Allocated/Stored 16, High Bit 15, unsigned, one sample per pixel, Modality MG,
/// Secondary Capture SOP class as CBIS-DDSM's files), with the given UIDs. Parent folders
/// are created.
///
/// # Shapes
/// `img.pixels` must hold `img.height x img.width` values, row-major.
pub fn write_gray_u16(path: &Path, img: &GrayImage, ids: &DicomUids) -> Result<()> {
    let expected = img.width as usize * img.height as usize;
    if img.pixels.len() != expected || img.width == 0 || img.height == 0 {
        return Err(DdsmError::Invalid {
            what: "image".into(),
            message: format!(
                "{} pixels for {} x {} (width x height)",
                img.pixels.len(),
                img.width,
                img.height
            ),
        });
    }
    let (rows, columns) = match (u16::try_from(img.height), u16::try_from(img.width)) {
        (Ok(r), Ok(c)) => (r, c),
        _ => {
            return Err(DdsmError::Invalid {
                what: "image".into(),
                message: format!(
                    "{} x {} does not fit DICOM's 16-bit Rows/Columns",
                    img.width, img.height
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
        PrimitiveValue::U16(img.pixels.iter().copied().collect()),
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
