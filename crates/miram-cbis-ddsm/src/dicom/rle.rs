//! RLE Lossless (DICOM PS3.5 annex G) decoding for every sample width: frames from fragments
//! and PackBits segments to interleaved little-endian samples.

use std::borrow::Cow;

/// The RLE Lossless transfer syntax.
pub(super) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The encoded bytes of each frame of encapsulated pixel data: one fragment per frame, all
/// fragments for a single frame, or the fragments the Basic Offset Table assigns to each.
pub(super) fn rle_frames<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u32],
    frames: usize,
) -> Result<Vec<Cow<'a, [u8]>>, String> {
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
pub(super) fn decode_rle_frame(
    data: &[u8],
    pixels: usize,
    samples: usize,
    bytes_per_sample: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let word = |i: usize| -> Result<usize, String> {
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
