//! Native (uncompressed) pixel data as little-endian bytes: byte order, value types and the
//! YBR_FULL_422 chroma upsampling pydicom applies.

use std::borrow::Cow;

use dicom_core::value::{DicomValueType, PrimitiveValue};

/// The bytes of native pixel data, little endian at the width of `bits_allocated`.
pub(super) fn native_le_bytes<'a>(
    prim: &'a PrimitiveValue,
    bits_allocated: u16,
    big_endian: bool,
) -> Result<Cow<'a, [u8]>, String> {
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
pub(super) fn le_of(prim: &PrimitiveValue) -> Cow<'_, [u8]> {
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

/// Expands native YBR_FULL_422 data (`Y1 Y2 Cb Cr` per pair of pixels) to one `Y Cb Cr`
/// triple per pixel, as pydicom does before its colour conversion.
pub(super) fn upsample_ybr_422(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    for q in data.chunks_exact(4) {
        out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
    }
    out
}
