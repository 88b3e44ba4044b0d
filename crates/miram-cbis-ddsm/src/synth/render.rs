//! One synthetic mammogram: the breast, its lesions and their ROI masks, as 16-bit pixels.
//!
//! The image is composed in the canonical frame (chest wall left), lesions are drawn into
//! it (masses into the tissue composition, so that dense tissue can hide them;
//! calcifications onto the exposed image, as they are far more attenuating than tissue),
//! film grain is added, and right breasts are mirrored.

use miram_rand::Rng;

use super::anatomy::{expose, tissue_composition, Breast};
use super::calc::{draw_calcs, CalcSpec};
use super::canvas::Canvas;
use super::mass::{draw_mass, LesionMask, MassSpec};
use super::texture::PowerLawTexture;
use crate::dicom::GrayImage;
use crate::records::{Side, View};

/// What to draw for one lesion.
#[derive(Debug, Clone)]
pub enum LesionSpec {
    /// A mass.
    Mass(MassSpec),
    /// A calcification cluster.
    Calc(CalcSpec),
}

impl LesionSpec {
    /// The radius (mm) to keep clear around the lesion's centre when placing it.
    fn clearance_mm(&self) -> f32 {
        match self {
            LesionSpec::Mass(m) => m.radius_mm * 1.3,
            LesionSpec::Calc(_) => 8.0,
        }
    }
}

/// What to draw for one image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels per millimetre (the scale of every anatomical size).
    pub px_per_mm: f32,
    /// The breast.
    pub side: Side,
    /// The view.
    pub view: View,
    /// BI-RADS density 0..=4.
    pub density: u8,
    /// Exponent of the tissue's power spectrum.
    pub beta: f32,
    /// The lesions.
    pub lesions: Vec<LesionSpec>,
    /// The image's random stream key.
    pub seed: u64,
    /// The key of this image among the views (for view-specific lesion detail).
    pub key: u64,
}

/// A rendered mammogram.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// The 16-bit image, `[height, width]` (MONOCHROME2: bright is dense; white level
    /// 65535).
    pub image: GrayImage,
    /// The ROI mask of each lesion, in the order of [`ImageSpec::lesions`], in image
    /// coordinates (after mirroring).
    pub masks: Vec<LesionMask>,
    /// The centre of each lesion in image coordinates.
    pub centres: Vec<(f32, f32)>,
}

/// Renders one image. Deterministic in `spec` alone.
pub fn render(spec: &ImageSpec) -> RenderedImage {
    let mut rng = Rng::keyed(spec.seed, &[spec.key]);
    let (w, h) = (spec.width, spec.height);
    let breast = Breast::random(spec.view, w, h, &mut rng);
    let tex = PowerLawTexture::new(w, h, spec.beta, &mut rng);
    let rho_map = breast.rho_map();
    let mut comp = tissue_composition(
        &breast,
        &rho_map,
        spec.density,
        &tex,
        spec.px_per_mm,
        &mut rng,
    );
    let centres = place_lesions(spec, &breast, &mut rng);
    let mut lesion_masks = draw_masses(spec, &mut comp, &tex, &centres, &mut rng);
    let mut bright = expose(&comp, &breast, &rho_map, &tex, spec.px_per_mm);
    drop(comp);
    lesion_masks.extend(draw_all_calcs(
        spec,
        &mut bright,
        &breast,
        &centres,
        &mut rng,
    ));
    let mut masks = in_lesion_order(spec.lesions.len(), &lesion_masks);
    let mut pixels = with_grain(spec, &bright);
    let mut centres: Vec<(f32, f32)> = centres.into_iter().map(|(p, _)| p).collect();
    if spec.side == Side::Right {
        mirror(w, &mut pixels, &mut masks, &mut centres);
    }
    // The canvases are `w x h` by construction, so the shape always fits.
    let image = GrayImage::from_vec(w, h, pixels, u16::MAX)
        .expect("the rendered canvas holds width x height pixels");
    RenderedImage {
        image,
        masks,
        centres,
    }
}

/// Places the lesions apart from each other inside the breast: the centre of each and the
/// radius (pixels) kept clear around it.
fn place_lesions(spec: &ImageSpec, breast: &Breast, rng: &mut Rng) -> Vec<((f32, f32), f32)> {
    let w = spec.width;
    let mut centres: Vec<((f32, f32), f32)> = Vec::new();
    for lesion in &spec.lesions {
        let clear = lesion.clearance_mm() * spec.px_per_mm;
        let mut chosen = None;
        for attempt in 0..200 {
            let max_rho = if attempt < 100 { 0.72 } else { 0.85 };
            let border = if attempt < 150 {
                clear.min(w as f32 * 0.2)
            } else {
                2.0
            };
            let Some(p) = breast.sample_point(max_rho, border, rng) else {
                continue;
            };
            let apart = centres
                .iter()
                .all(|&((x, y), r)| ((x - p.0).powi(2) + (y - p.1).powi(2)).sqrt() > r + clear);
            if apart || attempt >= 190 {
                chosen = Some(p);
                break;
            }
        }
        let p = chosen.unwrap_or((breast.rx * 0.45, breast.cy));
        centres.push((p, clear));
    }
    centres
}

/// Draws the masses into the tissue composition (so that dense tissue can hide them); their
/// masks with the lesion's index.
fn draw_masses(
    spec: &ImageSpec,
    comp: &mut Canvas,
    tex: &PowerLawTexture,
    centres: &[((f32, f32), f32)],
    rng: &mut Rng,
) -> Vec<(usize, LesionMask)> {
    let mut mass_masks: Vec<(usize, LesionMask)> = Vec::new();
    for (i, lesion) in spec.lesions.iter().enumerate() {
        if let LesionSpec::Mass(m) = lesion {
            let rotation = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
            let mm = draw_mass(
                comp,
                tex,
                m,
                centres[i].0,
                rotation,
                spec.px_per_mm,
                spec.seed ^ spec.key.rotate_left(17) ^ i as u64,
            );
            mass_masks.push((i, mm));
        }
    }
    mass_masks
}

/// Draws the calcification clusters onto the exposed image (they are far more attenuating
/// than tissue), inside the breast and off the pectoral muscle; their masks with the
/// lesion's index.
fn draw_all_calcs(
    spec: &ImageSpec,
    bright: &mut Canvas,
    breast: &Breast,
    centres: &[((f32, f32), f32)],
    rng: &mut Rng,
) -> Vec<(usize, LesionMask)> {
    let mut calc_masks: Vec<(usize, LesionMask)> = Vec::new();
    for (i, lesion) in spec.lesions.iter().enumerate() {
        if let LesionSpec::Calc(c) = lesion {
            let rotation = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
            let inside = |x: f32, y: f32| {
                breast.rho(x, y) < 0.97 && breast.pectoral_depth(x, y).is_none_or(|d| d < 0.0)
            };
            let cm = draw_calcs(bright, c, centres[i].0, rotation, spec.px_per_mm, &inside);
            calc_masks.push((i, cm));
        }
    }
    calc_masks
}

/// The mask of each of `n` lesions in order (masses first in `drawn`, then calcifications);
/// an empty mask for a lesion that has none.
fn in_lesion_order(n: usize, drawn: &[(usize, LesionMask)]) -> Vec<LesionMask> {
    (0..n)
        .map(|i| {
            let m = drawn.iter().find(|(j, _)| *j == i).map(|(_, m)| m.clone());
            m.unwrap_or(LesionMask {
                x0: 0,
                y0: 0,
                w: 0,
                h: 0,
                mask: Vec::new(),
            })
        })
        .collect()
}

/// Film grain added to the exposed image, then 16 bits.
fn with_grain(spec: &ImageSpec, bright: &Canvas) -> Vec<u16> {
    let grain = 0.006f32;
    let mut grain_rng = Rng::keyed(spec.seed, &[spec.key, 0x0067_7261_696e]);
    bright
        .data
        .iter()
        .map(|&v| {
            // Irwin-Hall: the sum of four uniforms, centred and scaled to unit variance, is
            // close enough to Gaussian for film grain and much cheaper.
            let u: f32 = (0..4).map(|_| grain_rng.uniform_f32()).sum::<f32>() - 2.0;
            let n = grain * 3f32.sqrt() * u;
            ((v + n).clamp(0.0, 1.0) * 65535.0).round() as u16
        })
        .collect()
}

/// Mirrors an image `w` pixels wide left to right (a right breast), with its masks and
/// lesion centres.
fn mirror(w: u32, pixels: &mut [u16], masks: &mut [LesionMask], centres: &mut [(f32, f32)]) {
    let wu = w as usize;
    for row in pixels.chunks_mut(wu) {
        row.reverse();
    }
    for m in masks {
        if m.w == 0 {
            continue;
        }
        for row in m.mask.chunks_mut(m.w) {
            row.reverse();
        }
        m.x0 = wu - (m.x0 + m.w);
    }
    for c in centres {
        c.0 = w as f32 - c.0;
    }
}
