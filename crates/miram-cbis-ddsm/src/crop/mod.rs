//! Lesion crops as the MIRAM authors made them, background patches for pre-training, and a
//! compact cache of both.
//!
//! A lesion crop is a square box centred on the bounding box of the ROI mask, of side
//! `max(w, h)` (optionally enlarged by a margin), zero-padded where it leaves the image, and
//! resized to the model input (112 px in the authors' runs) with a proper convolution filter
//! (fast_image_resize; Catmull-Rom by default). The same box resized to `s` times the size
//! gives a real high-resolution target for MIRAM's scale-`s` decoder (the native
//! high-resolution targets, a step beyond the paper's upsampled copy). Background patches are squares
//! entirely inside breast tissue that touch no lesion of their image.
//!
//! Intensities stay 16-bit through resizing; [`normalize`] turns them into `f32`: first
//! divided by the image's white level (`max_value`, 65535 for 16-bit DICOM), giving `[0, 1]`,
//! then optionally standardised with a fixed mean and standard deviation or per crop.

pub mod cache;

use fast_image_resize as fir;
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dicom::GrayImage;
use crate::error::{DdsmError, Result};
use ndarray::{s, Array2, ArrayView2};

/// The resizer the crop functions take (one per thread; it keeps its buffers).
pub use fir::Resizer as CropResizer;

pub use cache::{
    CacheAccess, CacheConfig, CacheEntry, CacheEntryKind, CacheSkipped, CropCache, CropJob,
    CropProgress,
};

/// An axis-aligned box of pixels `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BBox {
    /// First column.
    pub x0: u32,
    /// First row.
    pub y0: u32,
    /// One past the last column.
    pub x1: u32,
    /// One past the last row.
    pub y1: u32,
}

impl BBox {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    /// Whether the two boxes share a pixel.
    pub fn intersects(&self, other: &BBox) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    /// The box in the coordinates of an image of another size (ROI masks of a few real
    /// cases are not the size of their mammogram).
    pub fn rescaled(&self, from: (u32, u32), to: (u32, u32)) -> BBox {
        if from == to || from.0 == 0 || from.1 == 0 {
            return *self;
        }
        let sx = to.0 as f64 / from.0 as f64;
        let sy = to.1 as f64 / from.1 as f64;
        BBox {
            x0: (self.x0 as f64 * sx).floor() as u32,
            y0: (self.y0 as f64 * sy).floor() as u32,
            x1: ((self.x1 as f64 * sx).ceil() as u32).min(to.0),
            y1: ((self.y1 as f64 * sy).ceil() as u32).min(to.1),
        }
    }
}

/// A square box that may extend beyond the image (the outside is zero-padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SquareBox {
    /// Left column (may be negative).
    pub x0: i64,
    /// Top row (may be negative).
    pub y0: i64,
    /// Side in pixels (at least 1).
    pub side: u32,
}

impl SquareBox {
    /// The part of the square inside a `width` x `height` image, as a [`BBox`]; `None` if
    /// they do not overlap.
    pub fn clipped(&self, width: u32, height: u32) -> Option<BBox> {
        let x0 = self.x0.max(0);
        let y0 = self.y0.max(0);
        let x1 = (self.x0 + self.side as i64).min(width as i64);
        let y1 = (self.y0 + self.side as i64).min(height as i64);
        (x0 < x1 && y0 < y1).then_some(BBox {
            x0: x0 as u32,
            y0: y0 as u32,
            x1: x1 as u32,
            y1: y1 as u32,
        })
    }
}

/// The bounding box of the non-zero pixels of a mask; `None` for an empty mask.
pub fn mask_bbox(mask: &GrayImage) -> Option<BBox> {
    let w = mask.width() as usize;
    let pixels = mask.as_slice();
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (y, row) in pixels.chunks_exact(w.max(1)).enumerate() {
        // An OR over the row vectorises; most rows of a mask are empty.
        if row.iter().fold(0u16, |a, &v| a | v) == 0 {
            continue;
        }
        let Some(first) = row.iter().position(|&v| v != 0) else {
            continue;
        };
        let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
        x0 = x0.min(first);
        x1 = x1.max(last + 1);
        y0 = y0.min(y);
        y1 = y + 1;
    }
    (x1 > 0).then_some(BBox {
        x0: x0 as u32,
        y0: y0 as u32,
        x1: x1 as u32,
        y1: y1 as u32,
    })
}

/// The authors' crop box: a square centred on `bbox` with side `max(w, h)`, enlarged by
/// `margin` (a fraction of the side: 0.1 adds 5% on each side).
pub fn square_box(bbox: &BBox, margin: f32) -> SquareBox {
    let side = (bbox.width().max(bbox.height()) as f64 * (1.0 + margin.max(0.0) as f64))
        .round()
        .max(1.0) as u32;
    // Centre on the box (half-pixel centres: the box's centre is (x0 + x1) / 2).
    let cx2 = bbox.x0 as i64 + bbox.x1 as i64;
    let cy2 = bbox.y0 as i64 + bbox.y1 as i64;
    SquareBox {
        x0: (cx2 - side as i64).div_euclid(2),
        y0: (cy2 - side as i64).div_euclid(2),
        side,
    }
}

/// The pixels of `square` in `img`, zero where it leaves the image.
///
/// # Shapes
/// Returns `[side, side]`.
pub fn extract_square(img: &GrayImage, square: &SquareBox) -> Array2<u16> {
    extract_square_from_band(img, 0, img.height(), square)
}

/// [`extract_square`] from a band of rows: `band` holds rows `band_y0..band_y0 +
/// band.height()` of an image `full_height` rows high (as [`crate::dicom::read_gray_rows`]
/// reads them); rows of the square outside the band are zero.
///
/// # Shapes
/// `band` is `[band.height(), width]`; returns `[side, side]`.
pub fn extract_square_from_band(
    band: &GrayImage,
    band_y0: u32,
    full_height: u32,
    square: &SquareBox,
) -> Array2<u16> {
    let side = square.side as usize;
    let mut out = Array2::<u16>::zeros((side, side));
    if let Some(b) = square.clipped(band.width(), full_height) {
        let (bx0, bx1) = (b.x0 as usize, b.x1 as usize);
        let dx = (b.x0 as i64 - square.x0) as usize;
        let n = b.width() as usize;
        let rows = b.y0.max(band_y0)..b.y1.min(band_y0 + band.height());
        if !rows.is_empty() {
            let dy0 = (rows.start as i64 - square.y0) as usize;
            let dy1 = dy0 + rows.len();
            let (sy0, sy1) = (
                (rows.start - band_y0) as usize,
                (rows.end - band_y0) as usize,
            );
            out.slice_mut(s![dy0..dy1, dx..dx + n])
                .assign(&band.view().slice(s![sy0..sy1, bx0..bx1]));
        }
    }
    out
}

/// The resampling filter of crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResizeFilter {
    /// Area average (box).
    Box,
    /// Bilinear (triangle).
    Bilinear,
    /// Catmull-Rom bicubic (PIL's `BICUBIC` is a = -0.5, the same kernel).
    CatmullRom,
    /// Mitchell-Netravali bicubic.
    Mitchell,
    /// Lanczos with three lobes (PIL's `LANCZOS`).
    Lanczos3,
}

impl ResizeFilter {
    fn fir(self) -> fir::FilterType {
        match self {
            ResizeFilter::Box => fir::FilterType::Box,
            ResizeFilter::Bilinear => fir::FilterType::Bilinear,
            ResizeFilter::CatmullRom => fir::FilterType::CatmullRom,
            ResizeFilter::Mitchell => fir::FilterType::Mitchell,
            ResizeFilter::Lanczos3 => fir::FilterType::Lanczos3,
        }
    }
}

/// Resizes a square 16-bit image with a convolution filter (antialiased when shrinking).
///
/// # Shapes
/// `src` is `[src_side, src_side]`, the result `[dst_side, dst_side]`.
pub fn resize_square(
    src: ArrayView2<'_, u16>,
    dst_side: u32,
    filter: ResizeFilter,
    resizer: &mut fir::Resizer,
) -> Result<Array2<u16>> {
    let invalid = |message: String| DdsmError::Invalid {
        what: "resize".into(),
        message,
    };
    let (rows, cols) = src.dim();
    let src_side = rows as u32;
    if rows == 0 || dst_side == 0 || rows != cols {
        return Err(invalid(format!(
            "a {cols} x {rows} source (it must be square, not empty), {dst_side} x {dst_side} target"
        )));
    }
    // Row-major order whatever the view's memory order.
    let pixels: Vec<fir::pixels::U16> = src.iter().map(|&v| fir::pixels::U16::new(v)).collect();
    let src_img = fir::images::TypedImageRef::new(src_side, src_side, &pixels)
        .map_err(|e| invalid(format!("source image: {e}")))?;
    let mut dst = fir::images::TypedImage::<fir::pixels::U16>::new(dst_side, dst_side);
    let opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter.fir()));
    resizer
        .resize_typed(&src_img, &mut dst, &opts)
        .map_err(|e| invalid(format!("{src_side} -> {dst_side}: {e}")))?;
    let side = dst_side as usize;
    let out: Vec<u16> = dst.pixels().iter().map(|p| p.0).collect();
    Array2::from_shape_vec((side, side), out).map_err(|e| invalid(format!("result: {e}")))
}

/// How 16-bit crops become `f32` model inputs. Every scheme first divides by the image's
/// white level (`max_value`), giving values in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Normalization {
    /// `v / max_value`, in `[0, 1]`.
    UnitRange,
    /// `(v / max_value - mean) / std`, with fixed statistics (e.g. those of the training crops).
    Standardize {
        /// Mean of the `[0, 1]` values.
        mean: f32,
        /// Standard deviation of the `[0, 1]` values.
        std: f32,
    },
    /// Each crop to zero mean and unit variance (a constant crop to zeros).
    PerCrop,
}

/// Turns 16-bit pixels into normalised `f32` values written to `out`.
///
/// # Shapes
/// `pixels` and `out` have the same length (any image shape).
pub fn normalize(pixels: &[u16], max_value: u16, norm: &Normalization, out: &mut [f32]) {
    let scale = 1.0 / max_value.max(1) as f32;
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = p as f32 * scale;
    }
    let n = out.len().min(pixels.len());
    match *norm {
        Normalization::UnitRange => {}
        Normalization::Standardize { mean, std } => {
            let inv = if std > 0.0 { 1.0 / std } else { 1.0 };
            for o in &mut out[..n] {
                *o = (*o - mean) * inv;
            }
        }
        Normalization::PerCrop => {
            if n == 0 {
                return;
            }
            let mean = out[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = out[..n]
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            let inv = if var > 1e-20 { 1.0 / var.sqrt() } else { 0.0 };
            for o in &mut out[..n] {
                *o = ((*o as f64 - mean) * inv) as f32;
            }
        }
    }
}

/// How lesion crops are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropConfig {
    /// Side of the model input in pixels.
    pub size: u32,
    /// Also keep the same box at `s` times the size (a real high-resolution target).
    pub hires_scale: Option<u32>,
    /// Fraction added to the box side (0 = the authors' tight box).
    pub margin: f32,
    /// The resampling filter.
    pub filter: ResizeFilter,
    /// How pixels become `f32` (applied when reading, so a cache serves every scheme).
    pub normalization: Normalization,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self::paper()
    }
}

impl CropConfig {
    /// The authors' crops: 112 px, tight box, no high-resolution target, Catmull-Rom, `[0, 1]`.
    pub fn paper() -> Self {
        Self {
            size: 112,
            hires_scale: None,
            margin: 0.0,
            filter: ResizeFilter::CatmullRom,
            normalization: Normalization::UnitRange,
        }
    }

    /// The authors' crops plus the same box at `scale` times the resolution.
    pub fn multiscale(scale: u32) -> Self {
        Self {
            hires_scale: Some(scale),
            ..Self::paper()
        }
    }

    /// The side of the high-resolution crop, if any.
    pub fn hires_size(&self) -> Option<u32> {
        self.hires_scale.map(|s| s * self.size)
    }

    /// Checks the values, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| {
            Err(DdsmError::Invalid {
                what: format!("CropConfig.{what}"),
                message,
            })
        };
        if self.size == 0 || self.size > 4096 {
            return bad("size", format!("{} is not in 1..=4096", self.size));
        }
        if let Some(s) = self.hires_scale {
            if s < 2 || s * self.size > 8192 {
                return bad(
                    "hires_scale",
                    format!("{s} (x {} px) is not in 2..=8192/size", self.size),
                );
            }
        }
        if !(0.0..=4.0).contains(&self.margin) {
            return bad("margin", format!("{} is not in [0, 4]", self.margin));
        }
        if let Normalization::Standardize { std, .. } = self.normalization {
            if std.is_nan() || std <= 0.0 {
                return bad("normalization", format!("std {std} must be positive"));
            }
        }
        Ok(())
    }
}

/// A lesion crop in 16 bits.
#[derive(Debug, Clone, PartialEq)]
pub struct LesionCrop {
    /// The ROI bounding box in full-image coordinates.
    pub bbox: BBox,
    /// The square that was cropped.
    pub square: SquareBox,
    /// The crop at the model size, `[size, size]`.
    pub image: Array2<u16>,
    /// The crop at `hires_scale` times the size, `[hires, hires]`, if configured.
    pub hires: Option<Array2<u16>>,
    /// The white level of the source image.
    pub max_value: u16,
}

/// Crops `square` from `image` at `size` (and at `hires` size if given).
///
/// # Shapes
/// The crops are `[size, size]` and `[hires, hires]`.
pub fn crop_square(
    image: &GrayImage,
    square: &SquareBox,
    size: u32,
    hires: Option<u32>,
    filter: ResizeFilter,
    resizer: &mut fir::Resizer,
) -> Result<(Array2<u16>, Option<Array2<u16>>)> {
    let patch = extract_square(image, square);
    let low = resize_square(patch.view(), size, filter, resizer)?;
    let high = match hires {
        Some(s) => Some(resize_square(patch.view(), s, filter, resizer)?),
        None => None,
    };
    Ok((low, high))
}

/// The lesion crop of `image` for the ROI `mask` (the mask may have another size than the
/// image; its box is rescaled). An empty mask is an error.
pub fn lesion_crop(
    image: &GrayImage,
    mask: &GrayImage,
    cfg: &CropConfig,
    resizer: &mut fir::Resizer,
) -> Result<LesionCrop> {
    let bbox = nonempty_mask_bbox(mask)?;
    lesion_crop_at(image, bbox, (mask.width(), mask.height()), cfg, resizer)
}

/// The bounding box of a mask's non-zero pixels; an empty mask is an error.
fn nonempty_mask_bbox(mask: &GrayImage) -> Result<BBox> {
    mask_bbox(mask).ok_or_else(|| DdsmError::Invalid {
        what: "ROI mask".into(),
        message: format!(
            "no non-zero pixel in a {} x {} mask",
            mask.width(),
            mask.height()
        ),
    })
}

/// The lesion crop of `image` for the lesion box `bbox`, given in the coordinates of an
/// image of size `frame` (a mask's: rescaled to `image`'s when they differ; `image`'s own
/// size for a box in its coordinates). The rule of every lesion crop: [`square_box`] with
/// the margin, zero-padded, resized.
pub fn lesion_crop_at(
    image: &GrayImage,
    bbox: BBox,
    frame: (u32, u32),
    cfg: &CropConfig,
    resizer: &mut fir::Resizer,
) -> Result<LesionCrop> {
    let bbox = bbox.rescaled(frame, (image.width(), image.height()));
    let square = square_box(&bbox, cfg.margin);
    let (image_px, hires) = crop_square(
        image,
        &square,
        cfg.size,
        cfg.hires_size(),
        cfg.filter,
        resizer,
    )?;
    Ok(LesionCrop {
        bbox,
        square,
        image: image_px,
        hires,
        max_value: image.max_value,
    })
}

/// The lesion crop of a full image and its ROI mask on disk, reading as little as possible:
/// the mask whole (for its box), then, for DICOM full images, only the rows of the crop's
/// square (see [`crop_file_with_mask`]).
pub fn crop_from_files(
    full_image: &std::path::Path,
    roi_mask: &std::path::Path,
    cfg: &CropConfig,
    limits: &crate::dicom::DecodeLimits,
    resizer: &mut fir::Resizer,
) -> Result<LesionCrop> {
    let mask = crate::index::read_image(roi_mask, limits)?;
    crop_file_with_mask(full_image, &mask, cfg, limits, resizer)
}

/// The lesion crop of the full image at `full_image` for a decoded ROI `mask`. A DICOM full
/// image is read only over the rows of the crop's square
/// ([`crate::dicom::read_gray_rows`]), which is most of the speed of cropping real
/// mammograms; a JPEG one (Kaggle) is read whole.
pub fn crop_file_with_mask(
    full_image: &std::path::Path,
    mask: &GrayImage,
    cfg: &CropConfig,
    limits: &crate::dicom::DecodeLimits,
    resizer: &mut fir::Resizer,
) -> Result<LesionCrop> {
    let mask_box = nonempty_mask_bbox(mask)?;
    crop_file_at(
        full_image,
        mask_box,
        (mask.width(), mask.height()),
        cfg,
        limits,
        resizer,
    )
}

/// The lesion crop of the full image at `full_image` for the lesion box `bbox`, given in
/// the coordinates of an image of size `frame` (see [`lesion_crop_at`]; a mask's size, or
/// the image's own). A DICOM full image is read only over the rows of the crop's square; a
/// JPEG or PNG one is read whole.
pub fn crop_file_at(
    full_image: &std::path::Path,
    bbox: BBox,
    frame: (u32, u32),
    cfg: &CropConfig,
    limits: &crate::dicom::DecodeLimits,
    resizer: &mut fir::Resizer,
) -> Result<LesionCrop> {
    if crate::index::image_kind_of(full_image)? != crate::index::ImageKind::Dicom
        || crate::index::is_png(full_image)?
    {
        let image = crate::index::read_image(full_image, limits)?;
        return lesion_crop_at(&image, bbox, frame, cfg, resizer);
    }
    let header = crate::dicom::read_header(full_image)?;
    let bbox = bbox.rescaled(frame, (header.columns, header.rows));
    let square = square_box(&bbox, cfg.margin);
    let Some(rows) = square.clipped(header.columns, header.rows) else {
        return Err(DdsmError::Invalid {
            what: "ROI mask".into(),
            message: format!("its box {bbox:?} lies outside {}", full_image.display()),
        });
    };
    let band = crate::dicom::read_gray_rows(full_image, limits, rows.y0..rows.y1)?;
    let patch = extract_square_from_band(&band, rows.y0, header.rows, &square);
    let image = resize_square(patch.view(), cfg.size, cfg.filter, resizer)?;
    let hires = match cfg.hires_size() {
        Some(h) => Some(resize_square(patch.view(), h, cfg.filter, resizer)?),
        None => None,
    };
    Ok(LesionCrop {
        bbox,
        square,
        image,
        hires,
        max_value: band.max_value,
    })
}

/// How background patches are sampled for pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundConfig {
    /// Patches per full image.
    pub per_image: usize,
    /// Side of a patch as a fraction of the image width (the median lesion box of
    /// CBIS-DDSM is about 0.06 of the width).
    pub side_fraction: f32,
    /// The least fraction of a patch's pixels that must be breast tissue.
    pub min_tissue: f32,
    /// Gap kept from every lesion box, as a fraction of the patch side.
    pub lesion_gap: f32,
    /// Random positions tried per patch.
    pub max_tries: usize,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            per_image: 2,
            side_fraction: 0.08,
            min_tissue: 0.98,
            lesion_gap: 0.25,
            max_tries: 200,
        }
    }
}

/// The tissue threshold of a mammogram: Otsu's threshold over a 256-bin histogram
/// (film background against breast).
pub fn tissue_threshold(image: &GrayImage) -> u16 {
    let mut hist = [0u64; 256];
    // Bin by the top 8 significant bits of the white level.
    let bits = 16 - image.max_value.leading_zeros();
    let down = bits.saturating_sub(8);
    for &p in image.as_slice().iter().step_by(3) {
        hist[((p >> down) as usize).min(255)] += 1;
    }
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0f64, 0f64, -1f64, 0usize);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += t as f64 * c as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (sum_all - sum0) / w1;
        let between = w0 * w1 * (m0 - m1).powi(2);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    (((best_t + 1) as u32) << down).min(u16::MAX as u32) as u16
}

/// Samples up to `cfg.per_image` background squares in `image`: each entirely inside the
/// image, with at least `cfg.min_tissue` of its pixels above the tissue threshold, and
/// apart from every box of `lesions` (enlarged by `cfg.lesion_gap` of the patch side) and
/// from the squares already chosen. Fewer are returned when the image has no room.
pub fn sample_background(
    image: &GrayImage,
    lesions: &[BBox],
    cfg: &BackgroundConfig,
    rng: &mut Rng,
) -> Vec<SquareBox> {
    let (width, height) = (image.width(), image.height());
    let side = ((width as f32 * cfg.side_fraction).round() as u32).max(8);
    if side >= width || side >= height {
        return Vec::new();
    }
    let thr = tissue_threshold(image);
    let gap = (side as f32 * cfg.lesion_gap).round() as u32;
    let avoid: Vec<BBox> = lesions
        .iter()
        .map(|b| BBox {
            x0: b.x0.saturating_sub(gap),
            y0: b.y0.saturating_sub(gap),
            x1: b.x1.saturating_add(gap),
            y1: b.y1.saturating_add(gap),
        })
        .collect();
    let mut chosen: Vec<SquareBox> = Vec::new();
    let w = width as usize;
    let pixels = image.as_slice();
    for _ in 0..cfg.per_image {
        for _ in 0..cfg.max_tries {
            let x0 = rng.below((width - side) as u64 + 1) as u32;
            let y0 = rng.below((height - side) as u64 + 1) as u32;
            let b = BBox {
                x0,
                y0,
                x1: x0 + side,
                y1: y0 + side,
            };
            if avoid.iter().any(|a| a.intersects(&b)) {
                continue;
            }
            if chosen
                .iter()
                .any(|c| c.clipped(width, height).is_some_and(|cb| cb.intersects(&b)))
            {
                continue;
            }
            // Tissue fraction on a sparse grid (every 4th pixel each way).
            let step = (side / 32).max(1) as usize;
            let (mut n, mut tissue) = (0usize, 0usize);
            for y in (y0 as usize..(y0 + side) as usize).step_by(step) {
                for x in (x0 as usize..(x0 + side) as usize).step_by(step) {
                    n += 1;
                    if pixels[y * w + x] >= thr {
                        tissue += 1;
                    }
                }
            }
            if (tissue as f32) >= cfg.min_tissue * n as f32 {
                chosen.push(SquareBox {
                    x0: x0 as i64,
                    y0: y0 as i64,
                    side,
                });
                break;
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> GrayImage {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.push(f(x, y));
            }
        }
        GrayImage::from_vec(w, h, pixels, u16::MAX).expect("w x h pixels")
    }

    #[test]
    fn square_box_is_centred_with_side_max_w_h() {
        let b = BBox {
            x0: 10,
            y0: 20,
            x1: 30,
            y1: 60,
        }; // 20 x 40
        let s = square_box(&b, 0.0);
        assert_eq!(
            s,
            SquareBox {
                x0: 0,
                y0: 20,
                side: 40
            }
        );
        let s = square_box(&b, 0.5);
        assert_eq!(s.side, 60);
        assert_eq!((s.x0, s.y0), (-10, 10));
    }

    #[test]
    fn extract_pads_with_zeros_at_borders() {
        let img = image(4, 3, |x, y| (1 + x + 10 * y) as u16);
        let s = SquareBox {
            x0: -1,
            y0: -1,
            side: 3,
        };
        assert_eq!(
            extract_square(&img, &s),
            ndarray::array![[0, 0, 0], [0, 1, 2], [0, 11, 12]]
        );
        // Entirely outside: zeros.
        let s = SquareBox {
            x0: 10,
            y0: 10,
            side: 2,
        };
        assert_eq!(extract_square(&img, &s), Array2::<u16>::zeros((2, 2)));
    }

    #[test]
    fn band_extraction_equals_full_extraction() {
        let img = image(7, 9, |x, y| (1 + x + 10 * y) as u16);
        let s = SquareBox {
            x0: -2,
            y0: 3,
            side: 5,
        };
        let band = GrayImage::new(img.view().slice(s![3..8, ..]).to_owned(), img.max_value);
        assert_eq!(
            extract_square_from_band(&band, 3, 9, &s),
            extract_square(&img, &s)
        );
    }

    #[test]
    fn mask_bbox_and_rescale() {
        let m = image(10, 8, |x, y| {
            if (3..6).contains(&x) && (2..7).contains(&y) {
                255
            } else {
                0
            }
        });
        let b = mask_bbox(&m).expect("non-empty");
        assert_eq!(
            b,
            BBox {
                x0: 3,
                y0: 2,
                x1: 6,
                y1: 7
            }
        );
        assert_eq!(
            b.rescaled((10, 8), (20, 16)),
            BBox {
                x0: 6,
                y0: 4,
                x1: 12,
                y1: 14
            }
        );
        assert!(mask_bbox(&image(5, 5, |_, _| 0)).is_none());
    }

    #[test]
    fn resize_keeps_a_constant_and_averages_when_shrinking() {
        let mut r = fir::Resizer::new();
        let src = Array2::from_elem((64, 64), 1000u16);
        let out = resize_square(src.view(), 16, ResizeFilter::CatmullRom, &mut r).expect("resize");
        assert_eq!(out.dim(), (16, 16));
        assert!(out.iter().all(|&v| v == 1000));
        // A checkerboard shrunk by 4 with a box filter is its mean.
        let src = Array2::from_shape_fn((64, 64), |(y, x)| if (x + y) % 2 == 0 { 0 } else { 2000 });
        let out = resize_square(src.view(), 16, ResizeFilter::Box, &mut r).expect("resize");
        assert!(
            out.iter().all(|&v| v.abs_diff(1000) <= 1),
            "{:?}",
            out.row(0)
        );
        // A source that is not square is refused.
        let not_square = src.slice(s![..63, ..]);
        assert!(resize_square(not_square, 16, ResizeFilter::Box, &mut r).is_err());
    }

    #[test]
    fn lesion_crop_matches_a_direct_computation() {
        // A bright 20 x 10 rectangle in a ramp image; the crop at the box's own size is the
        // box itself (no resampling), the hires one twice as large.
        let img = image(100, 80, |x, y| (x * 100 + y) as u16);
        let mask = image(100, 80, |x, y| {
            if (40..60).contains(&x) && (30..40).contains(&y) {
                1
            } else {
                0
            }
        });
        let cfg = CropConfig {
            size: 20,
            hires_scale: Some(2),
            ..CropConfig::paper()
        };
        let mut r = fir::Resizer::new();
        let c = lesion_crop(&img, &mask, &cfg, &mut r).expect("crop");
        assert_eq!(
            c.square,
            SquareBox {
                x0: 40,
                y0: 25,
                side: 20
            }
        );
        assert_eq!(c.image[[0, 0]], 40 * 100 + 25);
        assert_eq!(c.image[[19, 19]], 59 * 100 + 44);
        assert_eq!(c.hires.as_ref().map(|h| h.dim()), Some((40, 40)));
        let empty = image(100, 80, |_, _| 0);
        assert!(lesion_crop(&img, &empty, &cfg, &mut r).is_err());
    }

    #[test]
    fn normalization_schemes() {
        let px = [0u16, 65535, 32768];
        let mut out = [0f32; 3];
        normalize(&px, u16::MAX, &Normalization::UnitRange, &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 1.0);
        normalize(
            &px,
            u16::MAX,
            &Normalization::Standardize {
                mean: 0.5,
                std: 0.25,
            },
            &mut out,
        );
        assert_eq!(out[0], -2.0);
        normalize(&px, u16::MAX, &Normalization::PerCrop, &mut out);
        let m: f32 = out.iter().sum::<f32>() / 3.0;
        let v: f32 = out.iter().map(|x| (x - m).powi(2)).sum::<f32>() / 3.0;
        assert!(m.abs() < 1e-6 && (v - 1.0).abs() < 1e-5);
    }

    #[test]
    fn background_patches_avoid_lesions_and_background() {
        // Tissue on the left half, black film on the right; a lesion box in the tissue.
        let img = image(400, 400, |x, _| if x < 200 { 30000 } else { 500 });
        let lesion = BBox {
            x0: 50,
            y0: 50,
            x1: 150,
            y1: 150,
        };
        let cfg = BackgroundConfig {
            per_image: 4,
            side_fraction: 0.1,
            ..BackgroundConfig::default()
        };
        let mut rng = Rng::new(1);
        let patches = sample_background(&img, &[lesion], &cfg, &mut rng);
        assert_eq!(patches.len(), 4);
        for p in &patches {
            let b = p.clipped(400, 400).expect("inside");
            assert_eq!(b.width(), 40);
            assert!(b.x1 <= 200, "{p:?} leaves the tissue");
            assert!(!b.intersects(&lesion), "{p:?} touches the lesion");
        }
    }
}
