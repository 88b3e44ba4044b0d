//! Opening a DICOM file safely: the header alone ([`open_object`]) or the whole file for its
//! pixels ([`load`]), each after its declared lengths are checked, with every parser call
//! guarded so that a panic on malformed data becomes an error naming the file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::lengths::check_declared_lengths;
use crate::error::{DdsmError, Result};

/// Runs `f`, turning a panic inside dicom-rs (`what` names the part) into an error naming
/// the file.
pub(super) fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
pub(super) fn open_object(path: &Path) -> Result<OpenedHeader> {
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
pub(super) struct OpenedHeader {
    pub(super) obj: DefaultDicomObject,
    pub(super) location: Option<(u64, u64)>,
    pub(super) total: u64,
}

/// A file read for its pixels: its bytes, the parsed object (without Pixel Data when the
/// raw bytes can be used directly) and where native little-endian Pixel Data lies.
pub(super) struct Loaded {
    pub(super) bytes: Vec<u8>,
    pub(super) obj: DefaultDicomObject,
    pub(super) native: Option<std::ops::Range<usize>>,
}

impl Loaded {
    /// The native little-endian pixel bytes, when the file has them.
    pub(super) fn native_bytes(&self) -> Option<&[u8]> {
        self.native.clone().and_then(|r| self.bytes.get(r))
    }
}

/// Reads a whole file for its pixels, its declared lengths checked first (see [`Loaded`]).
pub(super) fn load(path: &Path) -> Result<Loaded> {
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

/// The message of an error and of its sources, joined.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
