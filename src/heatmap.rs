//! Maps as pictures and as data: the viridis colour map, a map overlaid on its grayscale
//! crop, and the raw maps written as NumPy `.npy` files (format 1.0, little-endian `f32`) or
//! 16-bit grayscale PNG files, for analysis outside MIRAM.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::plot::Tile;

/// Viridis (van der Walt and Smith, matplotlib's default colour map: perceptually uniform,
/// readable in grey and by colour-blind readers) at 9 evenly spaced stops, as R's
/// `viridisLite::viridis(9)` lists them; values between the stops are interpolated
/// linearly.
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x90, 0x8c],
    [0x27, 0xad, 0x81],
    [0x5d, 0xc8, 0x63],
    [0xaa, 0xdc, 0x32],
    [0xfd, 0xe7, 0x25],
];

/// The colour of `t` in `[0, 1]` (clamped; NaN is the lowest colour).
pub fn viridis(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|k| (a[k] as f32 + f * (b[k] as f32 - a[k] as f32)).round() as u8)
}

/// An RGB picture, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbTile {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height x width` colours.
    pub pixels: Vec<[u8; 3]>,
}

impl RgbTile {
    /// A grayscale tile in colour (values in `[0, 1]`, clamped).
    pub fn gray(t: &Tile) -> Self {
        Self {
            width: t.width,
            height: t.height,
            pixels: t
                .pixels
                .iter()
                .map(|v| {
                    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    [g, g, g]
                })
                .collect(),
        }
    }

    /// The colour bar of [`overlay`]: `height` rows from the top colour (1) to the bottom (0).
    pub fn colour_bar(width: usize, height: usize) -> Self {
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let c = viridis(1.0 - y as f32 / (height.max(2) - 1) as f32);
            pixels.extend(std::iter::repeat_n(c, width));
        }
        Self {
            width,
            height,
            pixels,
        }
    }
}

/// The `grid x grid` map (row-major) over the crop `base`: each pixel takes the map value of
/// its patch (nearest, so the patch grid stays visible), mapped from `[lo, hi]` to viridis
/// and blended over the gray crop with weight `alpha`.
///
/// # Shapes
/// - `map`: `grid * grid` values; `base`: any size (the result has its size)
pub fn overlay(base: &Tile, map: &[f32], grid: usize, lo: f32, hi: f32, alpha: f32) -> RgbTile {
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (w, h) = (base.width, base.height);
    let mut pixels = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (gy, gx) = (y * grid / h.max(1), x * grid / w.max(1));
            let m = map.get(gy * grid + gx).copied().unwrap_or(lo);
            let c = viridis((m - lo) / span);
            let g = base.pixels[y * w + x].clamp(0.0, 1.0) * 255.0;
            pixels.push(std::array::from_fn(|k| {
                ((1.0 - alpha) * g + alpha * c[k] as f32).round() as u8
            }));
        }
    }
    RgbTile {
        width: w,
        height: h,
        pixels,
    }
}

/// The bytes of a NumPy `.npy` file (format version 1.0) holding `values` as little-endian
/// `f32` of `shape`, in C order. The header is the dictionary NumPy writes, padded with
/// spaces and a newline so that the data start at a multiple of 64 bytes.
pub fn npy_bytes(shape: &[usize], values: &[f32]) -> Result<Vec<u8>> {
    let count: usize = shape.iter().product();
    if count != values.len() {
        bail!(
            "npy: {} values for shape {shape:?} ({count} values)",
            values.len()
        );
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + header length (2) + header, newline-terminated.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let len = u16::try_from(header.len()).context("npy: the header is longer than 65535 bytes")?;
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes [`npy_bytes`] to `path`.
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let bytes = npy_bytes(shape, values)?;
    std::fs::write(path, bytes).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
/// Reads a `.npy` file of little-endian `f32` in C order (what [`write_npy`] writes, and
/// NumPy's `np.save` of a `float32` array): its shape and values.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let b = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let bad = |m: &str| anyhow::anyhow!("{}: {m}", path.display());
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" || b[6] != 1 {
        return Err(bad("not a version 1 .npy file"));
    }
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(b.get(10..10 + hlen).ok_or_else(|| bad("short header"))?)
        .map_err(|_| bad("the header is not text"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(&format!("not little-endian f32 in C order: {header}")));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in the header"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("a dimension is not a number"))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = &b[10 + hlen..];
    let count: usize = shape.iter().product();
    if data.len() != 4 * count {
        return Err(bad(&format!(
            "{} data bytes for shape {shape:?}",
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// Writes a `width x height` map as a 16-bit grayscale PNG: `value / hi * 65535`, rounded
/// and clamped (`hi`, the value of white, is what a reader multiplies back by).
pub fn write_png16(path: &Path, values: &[f32], width: u32, height: u32, hi: f32) -> Result<()> {
    if values.len() != (width * height) as usize {
        bail!(
            "{}: {} values for a {width} x {height} picture",
            path.display(),
            values.len()
        );
    }
    let scale = if hi > 0.0 { 65535.0 / hi } else { 0.0 };
    let mut data = Vec::with_capacity(values.len() * 2);
    for v in values {
        let q = (v * scale).round().clamp(0.0, 65535.0) as u16;
        data.extend_from_slice(&q.to_be_bytes()); // PNG stores 16-bit samples big-endian
    }
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Sixteen);
    let mut w = enc
        .write_header()
        .with_context(|| format!("{}", path.display()))?;
    w.write_image_data(&data)
        .with_context(|| format!("{}", path.display()))?;
    w.finish().with_context(|| format!("{}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_files_read_back_with_their_shape() -> Result<()> {
        let dir = tempfile::tempdir()?;
        for shape in [vec![3usize], vec![2, 3], vec![2, 2, 2]] {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.25).collect();
            let p = dir.path().join("m.npy");
            write_npy(&p, &shape, &values)?;
            let bytes = std::fs::read(&p)?;
            // The data start on a 64-byte boundary, after a newline-terminated header.
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(bytes[10 + hlen - 1], b'\n');
            assert_eq!(bytes.len(), 10 + hlen + 4 * n);
            assert_eq!(read_npy(&p)?, (shape, values));
        }
        // 1.0 as little-endian f32 is 00 00 80 3f.
        let b = npy_bytes(&[1], &[1.0])?;
        assert_eq!(&b[b.len() - 4..], &[0, 0, 0x80, 0x3f]);
        assert!(std::str::from_utf8(&b[10..b.len() - 4])?.contains("'shape': (1,)"));
        assert!(npy_bytes(&[2, 2], &[1.0]).is_err());
        Ok(())
    }

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(viridis(1.0), [0xfd, 0xe7, 0x25]);
        assert_eq!(viridis(0.5), [0x21, 0x90, 0x8c]);
        assert_eq!(viridis(2.0), viridis(1.0));
        // Halfway between the first two stops.
        assert_eq!(viridis(1.0 / 16.0), [0x46, 0x17, 0x68]);
        let bar = RgbTile::colour_bar(2, 5);
        assert_eq!(bar.pixels[0], viridis(1.0));
        assert_eq!(bar.pixels[9], viridis(0.0));
    }

    #[test]
    fn overlays_colour_each_patch_by_its_value() {
        let base = Tile {
            width: 4,
            height: 4,
            pixels: vec![0.0; 16],
        };
        // A 2 x 2 map: only the bottom-left patch is hot.
        let t = overlay(&base, &[0.0, 0.0, 1.0, 0.0], 2, 0.0, 1.0, 1.0);
        assert_eq!(t.pixels[0], viridis(0.0));
        assert_eq!(t.pixels[2 * 4 + 1], viridis(1.0));
        assert_eq!(t.pixels[3 * 4 + 3], viridis(0.0));
        // Half blended over black.
        let half = overlay(&base, &[1.0; 4], 2, 0.0, 1.0, 0.5);
        assert_eq!(half.pixels[0], [0x7f, 0x74, 0x13]);
    }

    #[test]
    fn sixteen_bit_maps_scale_to_white_at_hi() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("m.png");
        write_png16(&p, &[0.0, 0.25, 0.5, 1.0], 2, 2, 0.5)?;
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p)?));
        let mut r = dec.read_info()?;
        let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
        let info = r.next_frame(&mut buf)?;
        assert_eq!(
            (info.bit_depth, info.color_type),
            (png::BitDepth::Sixteen, png::ColorType::Grayscale)
        );
        let px: Vec<u16> = buf[..info.buffer_size()]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(px, vec![0, 32768, 65535, 65535]);
        Ok(())
    }
}
