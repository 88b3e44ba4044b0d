//! Decoding pixel data into [`Samples`]: the stored bytes at their allocated width and the
//! correction pydicom applies to them, for native and encapsulated transfer syntaxes alike.

use std::borrow::Cow;
use std::path::Path;

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntax, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::encapsulated::{j2k_signedness, JPEG2000_UIDS};
use super::native::{native_le_bytes, upsample_ybr_422};
use super::open::{error_chain, guarded, Loaded};
use super::rle::{decode_rle_frame, rle_frames, RLE_LOSSLESS};
use super::{DecodeLimits, DicomHeader};
use crate::error::{DdsmError, Result};

/// How decoded samples must be corrected to match pydicom.
#[derive(Debug, Clone, Copy)]
pub(super) enum Correction {
    /// Interpret the allocated width as signed or unsigned, nothing else.
    None,
    /// Keep the low `bits` bits, sign-extend if the data are signed.
    LowBits(u16),
}

/// Decoded samples as little-endian bytes of `bits_allocated` width (or packed bits).
pub(super) struct Samples<'a> {
    pub(super) bytes: Cow<'a, [u8]>,
    pub(super) bits_allocated: u16,
    pub(super) signed: bool,
    pub(super) correction: Correction,
    pub(super) count: usize,
    /// For native multi-sample data stored plane by plane.
    pub(super) planar: bool,
}

impl Samples<'_> {
    /// The raw sample `i` (in storage order), corrected as pydicom does.
    #[inline]
    pub(super) fn get(&self, i: usize) -> i32 {
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

/// Decodes the pixel data of `obj` into corrected samples, after checking the limits.
pub(super) fn decode_samples<'a>(
    path: &Path,
    loaded: &'a Loaded,
    header: &DicomHeader,
    limits: &DecodeLimits,
) -> Result<Samples<'a>> {
    limits.check(path, header)?;
    let geometry = SampleGeometry::of(path, header)?;
    let ts_uid = header.transfer_syntax_uid.as_str();
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("transfer syntax {ts_uid}"),
        })?;
    let element = match loaded.native_bytes() {
        Some(raw) => Ok(raw),
        None => {
            let pixel = loaded
                .obj
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
                native_le_bytes(prim, geometry.bits_allocated, big_endian).map_err(|what| {
                    DdsmError::Unsupported {
                        path: path.to_path_buf(),
                        what,
                    }
                })?,
            )
        }
        Err(_) => None,
    };
    match (native, element) {
        (Some(bytes), _) => native_samples(path, bytes, header, &geometry),
        (None, Err(Value::PixelSequence(seq))) => {
            let fragments = Fragments {
                fragments: seq.fragments(),
                offsets: seq.offset_table(),
            };
            encapsulated_samples(path, loaded, fragments, ts, header, &geometry)
        }
        _ => Err(DdsmError::dicom(path, "Pixel Data is a sequence")),
    }
}

/// What every decoding path needs of a header's sample layout, checked once.
struct SampleGeometry {
    /// Bits Allocated: 1, 8, 16 or 32.
    bits_allocated: u16,
    /// The number of samples (rows x columns x frames x samples per pixel).
    count: usize,
    /// The bytes those samples fill at `bits_allocated` width.
    needed: u64,
    /// Whether the samples are two's complement.
    signed: bool,
}

impl SampleGeometry {
    /// Checks Bits Allocated (a width this crate decodes) and Bits Stored (1 to Bits
    /// Allocated) and counts the samples.
    fn of(path: &Path, header: &DicomHeader) -> Result<SampleGeometry> {
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
        Ok(SampleGeometry {
            bits_allocated: ba,
            count,
            needed: (count as u64 * u64::from(ba)).div_ceil(8),
            signed: header.pixel_representation == 1,
        })
    }
}

/// The fragments of encapsulated pixel data and its Basic Offset Table.
struct Fragments<'s> {
    /// The fragment items' bytes, in order.
    fragments: &'s [Vec<u8>],
    /// The Basic Offset Table (empty when absent).
    offsets: &'s [u32],
}

/// Samples of native pixel data: checked against the length the header needs, YBR_FULL_422
/// upsampled to one triple per pixel.
fn native_samples<'a>(
    path: &Path,
    bytes: Cow<'a, [u8]>,
    header: &DicomHeader,
    geometry: &SampleGeometry,
) -> Result<Samples<'a>> {
    let subsampled = header.photometric_interpretation == "YBR_FULL_422"
        && header.samples_per_pixel == 3
        && geometry.bits_allocated == 8;
    // Two luminance samples share one pair of chrominance samples.
    let needed = if subsampled {
        geometry.needed / 3 * 2
    } else {
        geometry.needed
    };
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
        bits_allocated: geometry.bits_allocated,
        signed: geometry.signed,
        correction: Correction::LowBits(header.bits_stored),
        count: geometry.count,
        planar: !subsampled && header.samples_per_pixel > 1 && header.planar_configuration == 1,
    })
}

/// Samples of encapsulated pixel data: RLE Lossless decoded here, everything else by
/// dicom-pixeldata's codecs (guarded), with JPEG 2000's signedness corrected as pydicom does.
fn encapsulated_samples<'a>(
    path: &Path,
    loaded: &Loaded,
    fragments: Fragments<'_>,
    ts: &TransferSyntax,
    header: &DicomHeader,
    geometry: &SampleGeometry,
) -> Result<Samples<'a>> {
    let ts_uid = header.transfer_syntax_uid.as_str();
    let ba = geometry.bits_allocated;
    if !ts.can_decode_all() {
        return Err(DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("transfer syntax {ts_uid} ({})", ts.name()),
        });
    }
    if ts_uid == RLE_LOSSLESS && ba != 1 {
        // Decoded here for every sample width (dicom-rs stops at 16 bits).
        return rle_samples(path, fragments, header, geometry);
    }
    if ba == 1 || ba == 32 {
        return Err(DdsmError::Unsupported {
            path: path.to_path_buf(),
            what: format!("Bits Allocated {ba} in encapsulated pixel data"),
        });
    }
    let correction = if JPEG2000_UIDS.contains(&ts_uid) {
        let first = fragments
            .fragments
            .first()
            .map(|f| f.as_slice())
            .unwrap_or(&[]);
        match j2k_signedness(first) {
            Some((j2k_signed, precision))
                if j2k_signed != geometry.signed
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
        loaded
            .obj
            .decode_pixel_data()
            .map(|d| d.into_data())
            .map_err(|e| DdsmError::dicom(path, error_chain(&e)))
    })?;
    if (data.len() as u64) < geometry.needed {
        return Err(DdsmError::dicom(
            path,
            format!(
                "decoded pixel data has {} bytes, the header needs {}",
                data.len(),
                geometry.needed
            ),
        ));
    }
    Ok(Samples {
        bytes: Cow::Owned(data),
        bits_allocated: ba,
        signed: geometry.signed,
        correction,
        count: geometry.count,
        planar: false,
    })
}

/// Samples of RLE Lossless pixel data, every frame decoded by [`decode_rle_frame`].
fn rle_samples<'a>(
    path: &Path,
    fragments: Fragments<'_>,
    header: &DicomHeader,
    geometry: &SampleGeometry,
) -> Result<Samples<'a>> {
    let ba = geometry.bits_allocated;
    let frames = header.frames as usize;
    let pixels = header.rows as usize * header.columns as usize;
    let mut data = Vec::with_capacity(geometry.needed as usize);
    let parts = rle_frames(fragments.fragments, fragments.offsets, frames)
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
    Ok(Samples {
        bytes: Cow::Owned(data),
        bits_allocated: ba,
        signed: geometry.signed,
        correction: Correction::LowBits(header.bits_stored),
        count: geometry.count,
        planar: false,
    })
}
