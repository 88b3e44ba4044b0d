//! Reading an image of a dataset whatever its format: [`read_image`] decodes JPEG (the Kaggle
//! copy) or DICOM, told apart by [`image_kind_of`], and PNG (8 or 16 bits; lesion crops and
//! masks given to `miram predict`), told apart by [`is_png`].

use std::path::Path;

use super::ImageKind;
use crate::dicom::{read_gray, DecodeLimits, GrayImage};
use crate::error::{DdsmError, Result};
use crate::kaggle::read_jpeg;

/// Decodes an image of the dataset as grayscale: PNG by extension or signature ([`is_png`]),
/// JPEG (Kaggle) by extension or content, DICOM otherwise.
///
/// # Shapes
/// The result is `[height, width]`, row-major.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    if is_png(path)? {
        read_png(path, limits)
    } else if image_kind_of(path)? == ImageKind::Jpeg {
        read_jpeg(path, limits)
    } else {
        read_gray(path, limits)
    }
}

/// Whether a file is JPEG or DICOM: by extension, or by its first bytes (`FF D8` is JPEG).
pub fn image_kind_of(path: &Path) -> Result<ImageKind> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => Ok(ImageKind::Jpeg),
        "dcm" | "dicom" => Ok(ImageKind::Dicom),
        _ => {
            use std::io::Read;
            let mut head = [0u8; 2];
            let mut f = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
            let n = f.read(&mut head).map_err(|e| DdsmError::io(path, e))?;
            Ok(if n == 2 && head == [0xFF, 0xD8] {
                ImageKind::Jpeg
            } else {
                ImageKind::Dicom
            })
        }
    }
}

/// The first bytes of every PNG file.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Whether a file is PNG: by extension (`.png`), or by its signature for a file without a
/// known image extension.
pub fn is_png(path: &Path) -> Result<bool> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Ok(true),
        "jpg" | "jpeg" | "dcm" | "dicom" => Ok(false),
        _ => {
            use std::io::Read;
            let mut head = [0u8; 8];
            let mut f = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
            let n = f.read(&mut head).map_err(|e| DdsmError::io(path, e))?;
            Ok(n == 8 && head == PNG_SIGNATURE)
        }
    }
}

/// Decodes a PNG file as grayscale: 8-bit values keep a white level of 255, 16-bit ones of
/// 65535; palette and low bit depths are expanded to 8 bits; colour is turned into luma
/// (ITU-R BT.601, as the JPEG reader does) and an alpha channel is ignored.
///
/// # Shapes
/// The result is `[height, width]`, row-major.
pub fn read_png(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    let bad = |m: String| DdsmError::Png {
        path: path.to_path_buf(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let (w, h) = {
        let info = reader.info();
        (u64::from(info.width), u64::from(info.height))
    };
    limits.check_picture(path, w, h)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad(format!("{w} x {h} pixels do not fit in memory")))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    let channels = frame.color_type.samples();
    let sixteen = frame.bit_depth == png::BitDepth::Sixteen;
    let n = (w * h) as usize;
    let bytes = if sixteen { 2 } else { 1 };
    let stride = frame.line_size;
    let mut pixels = Vec::with_capacity(n);
    for y in 0..h as usize {
        let row = buf
            .get(y * stride..y * stride + w as usize * channels * bytes)
            .ok_or_else(|| bad(format!("row {y} is short")))?;
        for x in 0..w as usize {
            let sample = |c: usize| -> f32 {
                let i = (x * channels + c) * bytes;
                if sixteen {
                    f32::from(u16::from_be_bytes([row[i], row[i + 1]]))
                } else {
                    f32::from(row[i])
                }
            };
            let v = if channels >= 3 {
                (0.299 * sample(0) + 0.587 * sample(1) + 0.114 * sample(2)).round()
            } else {
                sample(0)
            };
            pixels.push(v as u16);
        }
    }
    let max_value = if sixteen { u16::MAX } else { 255 };
    GrayImage::from_vec(w as u32, h as u32, pixels, max_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use png::{BitDepth, ColorType};

    fn png_file(path: &Path, color: ColorType, depth: BitDepth, data: &[u8], w: u32) {
        let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
        let h = data.len() as u32 / w / color.samples() as u32 / (depth as u32 / 8);
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut wr = enc.write_header().unwrap_or_else(|e| panic!("{e}"));
        wr.write_image_data(data).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn pngs_keep_their_bit_depth_and_colour_becomes_luma() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| DdsmError::io(Path::new("tmp"), e))?;
        let p = dir.path().join("a.png");
        let limits = DecodeLimits::mammogram();
        png_file(
            &p,
            ColorType::Grayscale,
            BitDepth::Eight,
            &[0, 10, 200, 255],
            2,
        );
        let g = read_png(&p, &limits)?;
        assert_eq!((g.width(), g.height(), g.max_value), (2, 2, 255));
        assert_eq!(g.as_slice(), &[0, 10, 200, 255]);
        // 16-bit samples are big-endian in the file: 0x0102 = 258, 0xffff.
        png_file(
            &p,
            ColorType::Grayscale,
            BitDepth::Sixteen,
            &[1, 2, 255, 255],
            2,
        );
        let g = read_png(&p, &limits)?;
        assert_eq!((g.as_slice(), g.max_value), (&[258u16, 65535][..], 65535));
        // Colour: BT.601 luma, rounded (0.299 * 30 + 0.587 * 60 + 0.114 * 91 = 54.56); alpha
        // is ignored.
        let rgba = [30, 60, 91, 7, 0, 0, 0, 255];
        png_file(&p, ColorType::Rgba, BitDepth::Eight, &rgba, 2);
        assert_eq!(read_png(&p, &limits)?.as_slice(), &[55, 0]);
        png_file(
            &p,
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            &[9, 1, 8, 2],
            2,
        );
        assert_eq!(read_png(&p, &limits)?.as_slice(), &[9, 8]);
        // Not a PNG, and one over the pixel limit, are errors naming the file.
        let small = DecodeLimits {
            max_pixels: 1,
            ..DecodeLimits::mammogram()
        };
        assert!(
            read_png(&p, &small).is_err_and(|e| e.to_string().contains(&p.display().to_string()))
        );
        std::fs::write(&p, "text").map_err(|e| DdsmError::io(&p, e))?;
        assert!(
            read_png(&p, &limits).is_err_and(|e| e.to_string().contains(&p.display().to_string()))
        );
        Ok(())
    }
}
