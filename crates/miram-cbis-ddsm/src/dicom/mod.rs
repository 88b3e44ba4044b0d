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
//!
//! # Files
//! - `limits.rs`: [`DecodeLimits`]; `header.rs`: [`DicomHeader`] and [`read_header`].
//! - `lengths.rs` and `open.rs`: the declared-length check and the guarded opening of a file.
//! - `samples.rs`: decoding pixel data to corrected samples, with `native.rs` (uncompressed
//!   data), `encapsulated.rs` (JPEG 2000 signedness) and `rle.rs` (RLE Lossless).
//! - `stored.rs`: [`StoredPixels`] and [`read_stored`]; `gray.rs`: [`GrayImage`],
//!   [`read_gray`], [`read_gray_rows`] and [`check_gray`].
//! - `inspect.rs`: [`inspect`]; `writer.rs`: [`write_gray_u16`] and [`DicomUids`].

mod encapsulated;
mod gray;
mod header;
mod inspect;
mod lengths;
mod limits;
mod native;
mod open;
mod rle;
mod samples;
mod stored;
mod writer;

pub use gray::{check_gray, read_gray, read_gray_rows, GrayImage};
pub use header::{read_header, DicomHeader};
pub use inspect::{inspect, inspect_with, sha256_i32le, InspectReport};
pub use limits::DecodeLimits;
pub use stored::{read_stored, StoredPixels};
pub use writer::{write_gray_u16, DicomUids, SECONDARY_CAPTURE_SOP_CLASS};
