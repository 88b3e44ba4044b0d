//! The check of declared lengths that runs before dicom-rs parses a file: no element,
//! sequence or item may claim more bytes than the file holds.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntax, TransferSyntaxIndex};
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::StatefulDecode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::open::error_chain;
use crate::error::{DdsmError, Result};

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
pub(super) fn check_declared_lengths<R: Read + Seek>(
    path: &Path,
    source: &mut R,
    total: u64,
    stop_at_pixel_data: bool,
) -> Result<Option<(u64, u64)>> {
    let start = skip_preamble(path, source)?;
    let (pos, ts_uid) = walk_meta_group(path, source, start, total)?;
    source
        .seek(SeekFrom::Start(pos))
        .map_err(|e| DdsmError::io(path, e))?;
    let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
        // Reported by the parser that follows, with its own words.
        return Ok(None);
    };
    if !ts.is_codec_free() && !ts.is_encapsulated_pixel_data() {
        // A deflated data set: the lazy reader cannot walk it.
        return Ok(None);
    }
    walk_data_set(path, source, ts, total, stop_at_pixel_data)
}

/// The error for an element that declares more bytes than the file holds.
fn too_long(path: &Path, tag: Tag, len: u64, total: u64) -> DdsmError {
    DdsmError::dicom(
        path,
        format!("element {tag} declares {len} bytes in a file of {total} bytes"),
    )
}

/// Reads the preamble and magic code; returns where the meta group starts (132, or 4 for a
/// file without preamble) and leaves `source` there.
fn skip_preamble<R: Read + Seek>(path: &Path, source: &mut R) -> Result<u64> {
    let io = |e: std::io::Error| DdsmError::io(path, e);
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
        return Err(DdsmError::dicom(
            path,
            "no DICM magic code at byte 128 or 0: not a DICOM Part-10 file",
        ));
    };
    source.seek(SeekFrom::Start(start)).map_err(io)?;
    Ok(start)
}

/// Walks the meta group (explicit VR little endian, group 0002) from `start`, checking each
/// declared length; returns where the data set starts and the transfer syntax UID.
fn walk_meta_group<R: Read + Seek>(
    path: &Path,
    source: &mut R,
    start: u64,
    total: u64,
) -> Result<(u64, String)> {
    let io = |e: std::io::Error| DdsmError::io(path, e);
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
            return Err(too_long(path, Tag(group, element), len, total));
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
    Ok((pos, ts_uid))
}

/// Walks the data set with dicom-parser's lazy reader, values skipped, checking each
/// declared length; returns where native little-endian Pixel Data lies (see
/// [`check_declared_lengths`]).
fn walk_data_set<R: Read + Seek>(
    path: &Path,
    source: &mut R,
    ts: &TransferSyntax,
    total: u64,
    stop_at_pixel_data: bool,
) -> Result<Option<(u64, u64)>> {
    let bad = |m: String| DdsmError::dicom(path, m);
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
                return Err(too_long(path, tag, u64::from(len), total));
            }
        }
        token.skip().map_err(|e| bad(error_chain(&e)))?;
    }
    Ok(pixel)
}
