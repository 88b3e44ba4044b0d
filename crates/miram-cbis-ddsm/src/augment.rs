//! Seeded data augmentation of lesion crops: the fine-tuning recipe of the MIRAM authors
//! (random flips, rotation up to 25 degrees, scale 0.8-1.2, intensity shift) and MAE's
//! pre-training crop (`RandomResizedCrop`, scale 0.2-1.0, aspect 3/4-4/3, as torchvision's
//! `transforms.RandomResizedCrop`).
//!
//! Every geometric operation is folded into one affine map from output to source
//! coordinates, expressed in normalised coordinates (`[-1, 1]` across the image), and the
//! crop is resampled once, bilinearly, with zeros outside. Because the map is in normalised
//! coordinates, a paired high-resolution target (the same crop at `s` times the size) gets
//! exactly the same transform.
//!
//! The parameters are drawn from the project's [`Rng`]; the loader keys it by
//! `(seed, epoch, sample)` so augmentation does not depend on worker scheduling.

use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DdsmError, Result};

/// torchvision's `RandomResizedCrop` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f32, f32),
}

impl Default for RandomResizedCrop {
    /// MAE's pre-training setting: scale 0.2-1.0, ratio 3/4-4/3.
    fn default() -> Self {
        Self {
            scale: (0.2, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

/// What augmentation does, with presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub hflip: f32,
    /// Probability of a vertical flip.
    pub vflip: f32,
    /// Rotation drawn uniformly in `[-max, max]` degrees, about the centre.
    pub max_rotation_deg: f32,
    /// Zoom factor drawn uniformly in this range (>1 enlarges the content).
    pub scale: (f32, f32),
    /// Additive intensity shift drawn uniformly in `[-s, s]` (units of the normalised image).
    pub intensity_shift: f32,
    /// A random resized crop before the other operations (pre-training).
    pub random_resized_crop: Option<RandomResizedCrop>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl AugmentConfig {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        Self {
            hflip: 0.0,
            vflip: 0.0,
            max_rotation_deg: 0.0,
            scale: (1.0, 1.0),
            intensity_shift: 0.0,
            random_resized_crop: None,
        }
    }

    /// The authors' fine-tuning augmentation: flips, rotation up to 25 degrees, scale
    /// 0.8-1.2, intensity shift of up to 0.1.
    pub fn finetune() -> Self {
        Self {
            hflip: 0.5,
            vflip: 0.5,
            max_rotation_deg: 25.0,
            scale: (0.8, 1.2),
            intensity_shift: 0.1,
            random_resized_crop: None,
        }
    }

    /// MAE's pre-training augmentation: random resized crop (0.2-1.0) and horizontal flip.
    pub fn pretrain() -> Self {
        Self {
            hflip: 0.5,
            random_resized_crop: Some(RandomResizedCrop::default()),
            ..Self::none()
        }
    }

    /// Checks the values, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| {
            Err(DdsmError::Invalid {
                what: format!("AugmentConfig.{what}"),
                message,
            })
        };
        for (name, p) in [("hflip", self.hflip), ("vflip", self.vflip)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(name, format!("probability {p} is not in [0, 1]"));
            }
        }
        if !(0.0..=180.0).contains(&self.max_rotation_deg) {
            return bad(
                "max_rotation_deg",
                format!("{} is not in [0, 180]", self.max_rotation_deg),
            );
        }
        let (a, b) = self.scale;
        if !(a > 0.0 && a <= b && b.is_finite()) {
            return bad(
                "scale",
                format!("({a}, {b}) is not an increasing positive range"),
            );
        }
        if !(self.intensity_shift >= 0.0 && self.intensity_shift.is_finite()) {
            return bad(
                "intensity_shift",
                format!(
                    "{} is not a finite non-negative value",
                    self.intensity_shift
                ),
            );
        }
        if let Some(r) = self.random_resized_crop {
            let ok_scale = r.scale.0 > 0.0 && r.scale.0 <= r.scale.1 && r.scale.1 <= 1.0;
            let ok_ratio = r.ratio.0 > 0.0 && r.ratio.0 <= r.ratio.1 && r.ratio.1.is_finite();
            if !ok_scale || !ok_ratio {
                return bad(
                    "random_resized_crop",
                    format!(
                        "scale {:?} must lie in (0, 1] and ratio {:?} be positive and increasing",
                        r.scale, r.ratio
                    ),
                );
            }
        }
        Ok(())
    }

    /// Draws the parameters of one sample.
    pub fn draw(&self, rng: &mut Rng) -> AugmentParams {
        // Always draw every value, so that the stream does not depend on the configuration's
        // zeros (a config change then changes only what it touches).
        let hflip = rng.uniform_f32() < self.hflip;
        let vflip = rng.uniform_f32() < self.vflip;
        let angle = (rng.uniform_f32() * 2.0 - 1.0) * self.max_rotation_deg.to_radians();
        let zoom = self.scale.0 + (self.scale.1 - self.scale.0) * rng.uniform_f32();
        let shift = (rng.uniform_f32() * 2.0 - 1.0) * self.intensity_shift;
        let crop = match self.random_resized_crop {
            Some(r) => random_resized_crop(&r, rng),
            None => CropRect::FULL,
        };
        AugmentParams {
            hflip,
            vflip,
            angle,
            zoom,
            shift,
            crop,
        }
    }
}

/// A sub-rectangle of the source in normalised coordinates: centre and half extents
/// (`[-1, 1]` is the whole image).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropRect {
    /// Centre, x.
    pub cx: f32,
    /// Centre, y.
    pub cy: f32,
    /// Half width (1 = full width).
    pub hw: f32,
    /// Half height.
    pub hh: f32,
}

impl CropRect {
    /// The whole image.
    pub const FULL: CropRect = CropRect {
        cx: 0.0,
        cy: 0.0,
        hw: 1.0,
        hh: 1.0,
    };
}

/// torchvision's `RandomResizedCrop.get_params` on a square image: up to ten tries of area
/// and log-uniform aspect, then the whole image (the fallback for a square source).
fn random_resized_crop(r: &RandomResizedCrop, rng: &mut Rng) -> CropRect {
    let (lr0, lr1) = (r.ratio.0.ln(), r.ratio.1.ln());
    for _ in 0..10 {
        let area = r.scale.0 + (r.scale.1 - r.scale.0) * rng.uniform_f32();
        let ratio = (lr0 + (lr1 - lr0) * rng.uniform_f32()).exp();
        let w = (area * ratio).sqrt();
        let h = (area / ratio).sqrt();
        if w <= 1.0 && h <= 1.0 {
            let x0 = (1.0 - w) * rng.uniform_f32();
            let y0 = (1.0 - h) * rng.uniform_f32();
            return CropRect {
                cx: 2.0 * (x0 + w / 2.0) - 1.0,
                cy: 2.0 * (y0 + h / 2.0) - 1.0,
                hw: w,
                hh: h,
            };
        }
    }
    CropRect::FULL
}

/// The drawn parameters of one sample's augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentParams {
    /// Mirror left-right.
    pub hflip: bool,
    /// Mirror top-bottom.
    pub vflip: bool,
    /// Rotation in radians (counter-clockwise on the displayed image).
    pub angle: f32,
    /// Zoom factor.
    pub zoom: f32,
    /// Additive intensity shift.
    pub shift: f32,
    /// The source rectangle (random resized crop).
    pub crop: CropRect,
}

impl AugmentParams {
    /// The identity.
    pub const IDENTITY: AugmentParams = AugmentParams {
        hflip: false,
        vflip: false,
        angle: 0.0,
        zoom: 1.0,
        shift: 0.0,
        crop: CropRect::FULL,
    };

    /// Maps a normalised output coordinate to the normalised source coordinate.
    #[inline]
    fn source(&self, u: f32, v: f32, cos: f32, sin: f32) -> (f32, f32) {
        // Undo zoom and rotation about the centre.
        let (mut x, mut y) = (
            (cos * u + sin * v) / self.zoom,
            (-sin * u + cos * v) / self.zoom,
        );
        if self.hflip {
            x = -x;
        }
        if self.vflip {
            y = -y;
        }
        (
            self.crop.cx + x * self.crop.hw,
            self.crop.cy + y * self.crop.hh,
        )
    }

    /// Applies the augmentation to a square single-channel image.
    ///
    /// # Shapes
    /// `src` and `out` are `[side, side]`, row-major.
    pub fn apply(&self, src: &[f32], side: usize, out: &mut [f32]) -> Result<()> {
        if src.len() != side * side || out.len() != side * side {
            return Err(DdsmError::Invalid {
                what: "augmentation input".into(),
                message: format!(
                    "{} and {} values for a {side} x {side} image",
                    src.len(),
                    out.len()
                ),
            });
        }
        if *self == Self::IDENTITY {
            out.copy_from_slice(src);
            return Ok(());
        }
        let s = side as f32;
        let (sin, cos) = self.angle.sin_cos();
        for i in 0..side {
            let v = 2.0 * (i as f32 + 0.5) / s - 1.0;
            for j in 0..side {
                let u = 2.0 * (j as f32 + 0.5) / s - 1.0;
                let (x, y) = self.source(u, v, cos, sin);
                // Back to pixel coordinates (pixel centres at k + 0.5).
                let px = (x + 1.0) * 0.5 * s - 0.5;
                let py = (y + 1.0) * 0.5 * s - 0.5;
                out[i * side + j] = bilinear(src, side, px, py) + self.shift;
            }
        }
        Ok(())
    }
}

/// Bilinear sample at pixel coordinates `(x, y)`, zero outside the image.
#[inline]
fn bilinear(src: &[f32], side: usize, x: f32, y: f32) -> f32 {
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let (x0, y0) = (x0 as i64, y0 as i64);
    let n = side as i64;
    let at = |xx: i64, yy: i64| -> f32 {
        if xx < 0 || yy < 0 || xx >= n || yy >= n {
            0.0
        } else {
            src[yy as usize * side + xx as usize]
        }
    };
    let a = at(x0, y0);
    let b = at(x0 + 1, y0);
    let c = at(x0, y0 + 1);
    let d = at(x0 + 1, y0 + 1);
    (a * (1.0 - fx) + b * fx) * (1.0 - fy) + (c * (1.0 - fx) + d * fx) * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(side: usize) -> Vec<f32> {
        (0..side * side)
            .map(|i| ((i % side) * 10 + i / side) as f32)
            .collect()
    }

    #[test]
    fn identity_and_flips_are_exact() {
        let side = 8;
        let src = ramp(side);
        let mut out = vec![0.0; side * side];
        AugmentParams::IDENTITY
            .apply(&src, side, &mut out)
            .expect("apply");
        assert_eq!(out, src);
        let h = AugmentParams {
            hflip: true,
            ..AugmentParams::IDENTITY
        };
        h.apply(&src, side, &mut out).expect("apply");
        for i in 0..side {
            for j in 0..side {
                assert!((out[i * side + j] - src[i * side + side - 1 - j]).abs() < 1e-4);
            }
        }
        let v = AugmentParams {
            vflip: true,
            shift: 0.5,
            ..AugmentParams::IDENTITY
        };
        v.apply(&src, side, &mut out).expect("apply");
        assert!((out[0] - (src[(side - 1) * side] + 0.5)).abs() < 1e-4);
    }

    #[test]
    fn rotation_by_90_degrees_permutes_pixels() {
        let side = 6;
        let src = ramp(side);
        let mut out = vec![0.0; side * side];
        let r = AugmentParams {
            angle: std::f32::consts::FRAC_PI_2,
            ..AugmentParams::IDENTITY
        };
        r.apply(&src, side, &mut out).expect("apply");
        // out(u, v) = src(R^-1 (u, v)): for +90 degrees src x = v, src y = -u.
        for i in 0..side {
            for j in 0..side {
                let expected = src[(side - 1 - j) * side + i];
                assert!((out[i * side + j] - expected).abs() < 1e-3, "{i},{j}");
            }
        }
    }

    /// A smooth test image sampled at pixel centres of a `side` x `side` grid.
    fn smooth(side: usize) -> Vec<f32> {
        let mut v = vec![0f32; side * side];
        for (k, x) in v.iter_mut().enumerate() {
            let (i, j) = (k / side, k % side);
            let u = 2.0 * (j as f32 + 0.5) / side as f32 - 1.0;
            let w = 2.0 * (i as f32 + 0.5) / side as f32 - 1.0;
            *x = (3.0 * u).sin() + (2.0 * w).cos();
        }
        v
    }

    #[test]
    fn hires_gets_the_same_transform() {
        // The same transform at 2x resolution, averaged 2 x 2, matches the 1x result.
        let p = AugmentConfig::finetune().draw(&mut Rng::new(3));
        let p = AugmentParams { shift: 0.0, ..p };
        let (lo, hi) = (smooth(32), smooth(64));
        let mut out_lo = vec![0.0; 32 * 32];
        let mut out_hi = vec![0.0; 64 * 64];
        p.apply(&lo, 32, &mut out_lo).expect("apply");
        p.apply(&hi, 64, &mut out_hi).expect("apply");
        // Compare away from the zero-padded border.
        let mut worst: f32 = 0.0;
        for k in 0..16 * 16 {
            let (i, j) = (8 + k / 16, 8 + k % 16);
            let (a, b) = (2 * i * 64 + 2 * j, (2 * i + 1) * 64 + 2 * j);
            let h = 0.25 * (out_hi[a] + out_hi[a + 1] + out_hi[b] + out_hi[b + 1]);
            worst = worst.max((h - out_lo[i * 32 + j]).abs());
        }
        assert!(worst < 0.05, "{worst}");
    }

    #[test]
    fn draws_respect_the_ranges_and_seed() {
        let cfg = AugmentConfig::finetune();
        let mut rng = Rng::new(9);
        for _ in 0..500 {
            let p = cfg.draw(&mut rng);
            assert!(p.angle.abs() <= 25f32.to_radians() + 1e-6);
            assert!((0.8..=1.2).contains(&p.zoom));
            assert!(p.shift.abs() <= 0.1);
            assert_eq!(p.crop, CropRect::FULL);
        }
        assert_eq!(cfg.draw(&mut Rng::new(1)), cfg.draw(&mut Rng::new(1)));
        let pre = AugmentConfig::pretrain();
        let mut areas = Vec::new();
        for _ in 0..2000 {
            let p = pre.draw(&mut rng);
            let c = p.crop;
            assert!(c.cx - c.hw >= -1.0 - 1e-5 && c.cx + c.hw <= 1.0 + 1e-5);
            assert!(c.cy - c.hh >= -1.0 - 1e-5 && c.cy + c.hh <= 1.0 + 1e-5);
            areas.push(c.hw * c.hh);
            let ratio = c.hw / c.hh;
            assert!((0.75 - 1e-4..=4.0 / 3.0 + 1e-4).contains(&ratio));
        }
        let mean = areas.iter().sum::<f32>() / areas.len() as f32;
        // Areas uniform in [0.2, 1], except that draws whose side would exceed the image are
        // redrawn (torchvision does the same), which favours smaller areas: the mean is a
        // little below 0.6.
        assert!(areas
            .iter()
            .all(|&a| (0.2 - 1e-4..=1.0 + 1e-4).contains(&a)));
        assert!(mean > 0.48 && mean < 0.6, "{mean}");
        assert!(AugmentConfig {
            hflip: 2.0,
            ..AugmentConfig::none()
        }
        .validate()
        .is_err());
        assert!(AugmentConfig::finetune().validate().is_ok());
    }
}
