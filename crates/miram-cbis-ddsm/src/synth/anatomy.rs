//! The breast of a synthetic mammogram: outline against the background, compressed-breast
//! thickness fall-off towards the skin, fibroglandular tissue whose area follows the BI-RADS
//! breast density 1-4, curvilinear structures (ducts, ligaments, vessels) and, in the MLO
//! view, the pectoral muscle.
//!
//! Everything is drawn in a canonical frame with the chest wall on the left edge (`x = 0`);
//! right breasts are mirrored at the end. The tissue model follows the usual two-material
//! phantom of mammography simulation (fat and fibroglandular tissue, with power-law
//! texture; Bakic et al. 2002, Med. Phys. 29:2131, in a much simplified form): the value
//! of a pixel is the thickness-weighted mix of the two, so dense breasts hide lesions as in
//! real images.

use miram_rand::Rng;

use super::canvas::{draw_curve, smoothstep, soft_edge, Canvas, Stroke};
use super::texture::PowerLawTexture;
use crate::records::View;

/// Attenuation-like level of fatty tissue.
pub const FAT_LEVEL: f32 = 0.30;
/// Additional level of fibroglandular tissue.
pub const GLAND_LEVEL: f32 = 0.34;
/// The background (unexposed film after scanning, with a little fog).
pub const BACKGROUND: f32 = 0.035;

/// The geometry of one breast in the canonical frame (chest wall at `x = 0`).
#[derive(Debug, Clone)]
pub struct Breast {
    /// Image width and height.
    pub width: f32,
    /// Image height.
    pub height: f32,
    /// The row of the breast's axis (the nipple's height).
    pub cy: f32,
    /// Half extent of the breast above the axis, at the chest wall.
    pub ry_top: f32,
    /// Half extent below the axis.
    pub ry_bottom: f32,
    /// Depth from the chest wall to the nipple.
    pub rx: f32,
    /// Superellipse exponent of the outline.
    pub p: f32,
    /// Low-order outline perturbation: (amplitude, phase) of harmonics 2..=5.
    pub wobble: [(f32, f32); 4],
    /// The pectoral muscle (MLO only): its width at the top edge, its height at the chest
    /// wall and the bowing of its edge.
    pub pectoral: Option<(f32, f32, f32)>,
}

impl Breast {
    /// A random breast outline for `view` on a `width` x `height` image.
    pub fn random(view: View, width: u32, height: u32, rng: &mut Rng) -> Self {
        let (w, h) = (width as f32, height as f32);
        let wobble = [
            (
                rng.uniform_range(0.0, 0.025) as f32,
                rng.uniform_range(0.0, 6.3) as f32,
            ),
            (
                rng.uniform_range(0.0, 0.015) as f32,
                rng.uniform_range(0.0, 6.3) as f32,
            ),
            (
                rng.uniform_range(0.0, 0.01) as f32,
                rng.uniform_range(0.0, 6.3) as f32,
            ),
            (
                rng.uniform_range(0.0, 0.006) as f32,
                rng.uniform_range(0.0, 6.3) as f32,
            ),
        ];
        match view {
            View::Cc => Self {
                width: w,
                height: h,
                cy: h * rng.uniform_range(0.45, 0.55) as f32,
                ry_top: h * rng.uniform_range(0.36, 0.45) as f32,
                ry_bottom: h * rng.uniform_range(0.36, 0.45) as f32,
                rx: w * rng.uniform_range(0.62, 0.86) as f32,
                p: rng.uniform_range(1.9, 2.5) as f32,
                wobble,
                pectoral: None,
            },
            View::Mlo => Self {
                width: w,
                height: h,
                cy: h * rng.uniform_range(0.52, 0.60) as f32,
                ry_top: h * rng.uniform_range(0.72, 0.85) as f32,
                ry_bottom: h * rng.uniform_range(0.34, 0.42) as f32,
                rx: w * rng.uniform_range(0.66, 0.88) as f32,
                p: rng.uniform_range(1.9, 2.4) as f32,
                wobble,
                pectoral: Some((
                    w * rng.uniform_range(0.24, 0.40) as f32,
                    h * rng.uniform_range(0.38, 0.58) as f32,
                    rng.uniform_range(0.75, 1.1) as f32,
                )),
            },
        }
    }

    /// The normalised radius of `(x, y)`: below 1 inside the breast, 1 on the skin line.
    #[inline]
    pub fn rho(&self, x: f32, y: f32) -> f32 {
        let ry = if y < self.cy {
            self.ry_top
        } else {
            self.ry_bottom
        };
        let u = (x / self.rx).max(0.0);
        let t = ((y - self.cy) / ry).abs();
        let r = (u.powf(self.p) + t.powf(self.p)).powf(1.0 / self.p);
        let phi = (y - self.cy).atan2(x.max(0.0) + 1e-3);
        r / self.wobble_at(phi)
    }

    /// [`Breast::rho`] at every pixel centre, row-major (the same values, computed with
    /// per-row and per-column tables and a table of the outline perturbation).
    pub fn rho_map(&self) -> Vec<f32> {
        let (w, h) = (self.width as usize, self.height as usize);
        let cols: Vec<f32> = (0..w)
            .map(|x| ((x as f32 + 0.5) / self.rx).max(0.0).powf(self.p))
            .collect();
        const N: usize = 2048;
        let wobble: Vec<f32> = (0..=N)
            .map(|i| {
                let phi = -std::f32::consts::PI + std::f32::consts::TAU * i as f32 / N as f32;
                self.wobble_at(phi)
            })
            .collect();
        let inv_p = 1.0 / self.p;
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let fy = y as f32 + 0.5;
            let ry = if fy < self.cy {
                self.ry_top
            } else {
                self.ry_bottom
            };
            let tp = ((fy - self.cy) / ry).abs().powf(self.p);
            for (x, &up) in cols.iter().enumerate() {
                let phi = (fy - self.cy).atan2(x as f32 + 0.5 + 1e-3);
                let t = (phi + std::f32::consts::PI) / std::f32::consts::TAU * N as f32;
                let i = (t as usize).min(N - 1);
                let f = t - i as f32;
                let k = wobble[i] * (1.0 - f) + wobble[i + 1] * f;
                out.push((up + tp).powf(inv_p) / k);
            }
        }
        out
    }

    fn wobble_at(&self, phi: f32) -> f32 {
        let mut k = 1.0;
        for (i, &(a, ph)) in self.wobble.iter().enumerate() {
            k += a * ((i as f32 + 2.0) * phi + ph).cos();
        }
        k
    }

    /// The compressed-breast thickness at normalised radius `rho`: flat inside, falling to 0
    /// at the skin line.
    #[inline]
    pub fn thickness(rho: f32) -> f32 {
        if rho >= 1.0 {
            0.0
        } else {
            (1.0 - rho.powi(6)).sqrt()
        }
    }

    /// Signed distance-like coordinate of the pectoral edge at `(x, y)`: positive inside the
    /// muscle, in pixels; `None` in the CC view.
    #[inline]
    pub fn pectoral_depth(&self, x: f32, y: f32) -> Option<f32> {
        let (pw, ph, kappa) = self.pectoral?;
        if y >= ph {
            return Some(-(y - ph) - x);
        }
        let edge = pw * (1.0 - y / ph).powf(kappa);
        Some(edge - x)
    }

    /// A random point inside the breast with normalised radius below `max_rho`, at least
    /// `clearance` pixels from the pectoral muscle and from the image border; `None` after
    /// 500 failed draws.
    pub fn sample_point(&self, max_rho: f32, clearance: f32, rng: &mut Rng) -> Option<(f32, f32)> {
        for _ in 0..500 {
            let x = rng.uniform_range(0.0, self.width as f64) as f32;
            let y = rng.uniform_range(0.0, self.height as f64) as f32;
            if x < clearance
                || y < clearance
                || x > self.width - clearance
                || y > self.height - clearance
            {
                continue;
            }
            if self.rho(x, y) >= max_rho {
                continue;
            }
            if let Some(d) = self.pectoral_depth(x, y) {
                if d > -clearance {
                    continue;
                }
            }
            return Some((x, y));
        }
        None
    }

    /// The nipple position (the outline's extreme point on the axis).
    pub fn nipple(&self) -> (f32, f32) {
        (self.rx * 0.98, self.cy)
    }
}

/// The fibroglandular area fraction for a BI-RADS density (1 almost entirely fatty ... 4
/// extremely dense); density 0 (it occurs in the CSVs) is read as 1.
pub fn gland_fraction(density: u8) -> f32 {
    match density {
        0 | 1 => 0.10,
        2 => 0.30,
        3 => 0.55,
        _ => 0.80,
    }
}

/// The tissue composition of the breast: a canvas holding, inside the breast, fat plus
/// fibroglandular tissue (power-law texture thresholded at the density's area fraction,
/// concentrated behind the nipple) and curvilinear structures; 0 outside.
pub fn tissue_composition(
    breast: &Breast,
    rho_map: &[f32],
    density: u8,
    tex: &PowerLawTexture,
    px_per_mm: f32,
    rng: &mut Rng,
) -> Canvas {
    let (w, h) = (breast.width as usize, breast.height as usize);
    let mut comp = Canvas::new(w, h, 0.0);
    // The spatial prior of glandular tissue: centred on the axis, 40% of the way from the
    // chest wall to the nipple, fading towards the skin and the chest wall.
    let prior = |x: f32, y: f32| -> f32 {
        let u = x / breast.rx;
        let ry = if y < breast.cy {
            breast.ry_top
        } else {
            breast.ry_bottom
        };
        let t = (y - breast.cy) / ry;
        (-(u - 0.42).powi(2) / (2.0 * 0.24f32.powi(2)) - t * t / (2.0 * 0.38f32.powi(2))).exp()
    };
    let prior_gain = 1.6f32;
    // Tissue structure converges on the nipple: the texture is sampled in polar coordinates
    // around the nipple, stretched along the radius, and mixed with an isotropic part.
    let (nx, ny) = breast.nipple();
    let structure = |x: f32, y: f32| -> f32 {
        let (dx, dy) = (x - nx, y - ny);
        let r = (dx * dx + dy * dy).sqrt();
        let phi = dy.atan2(-dx);
        // Fade the polar part out near the nipple, where its angular coordinate converges.
        let wp = smoothstep(r / (0.35 * breast.rx));
        wp * 0.8 * tex.a(0.45 * r, phi * 0.55 * breast.rx + 0.3 * breast.height)
            + (0.45 + 0.5 * (1.0 - wp)) * tex.b(x + 0.5 * breast.width, y)
    };
    // Threshold at the quantile that gives the density's area fraction.
    let mut samples = Vec::new();
    let stride = ((w * h) as f32 / 40_000.0).sqrt().max(1.0) as usize;
    for y in (0..h).step_by(stride) {
        for x in (0..w).step_by(stride) {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            if rho_map[y * w + x] < 0.97 && breast.pectoral_depth(fx, fy).is_none_or(|d| d < 0.0) {
                samples.push(structure(fx, fy) + prior_gain * prior(fx, fy));
            }
        }
    }
    samples.sort_by(f32::total_cmp);
    let frac = gland_fraction(density);
    let thr = if samples.is_empty() {
        0.0
    } else {
        let q = ((1.0 - frac) * (samples.len() - 1) as f32).round() as usize;
        samples[q.min(samples.len() - 1)]
    };
    let softness = 0.45f32;
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            if rho_map[y * w + x] >= 1.0 {
                continue;
            }
            let s = structure(fx, fy) + prior_gain * prior(fx, fy);
            let g = 1.0 / (1.0 + (-(s - thr) / softness).exp());
            let modulation = 0.85 + 0.15 * tex.a(fx, fy).clamp(-2.5, 2.5);
            comp.data[y * w + x] = FAT_LEVEL + GLAND_LEVEL * g * modulation;
        }
    }
    draw_curvilinear(&mut comp, breast, rho_map, px_per_mm, rng);
    comp
}

/// Ducts and suspensory ligaments converging on the nipple, and a few vessels.
fn draw_curvilinear(
    comp: &mut Canvas,
    breast: &Breast,
    rho_map: &[f32],
    px_per_mm: f32,
    rng: &mut Rng,
) {
    let (nx, ny) = breast.nipple();
    let n_ducts = 4 + rng.index(6);
    for _ in 0..n_ducts {
        // From behind the nipple towards the chest wall, fanning out.
        let spread = rng.uniform_range(-0.9, 0.9) as f32;
        let ry = if spread < 0.0 {
            breast.ry_top
        } else {
            breast.ry_bottom
        };
        let end = (
            breast.rx * rng.uniform_range(0.05, 0.45) as f32,
            breast.cy + spread * ry * rng.uniform_range(0.5, 0.9) as f32,
        );
        let start = (
            nx - breast.rx * rng.uniform_range(0.02, 0.15) as f32,
            ny + spread * breast.ry_bottom * 0.08,
        );
        let ctrl = (
            (start.0 + end.0) / 2.0 + rng.normal_f32(0.0, 0.05) * breast.rx,
            (start.1 + end.1) / 2.0 + rng.normal_f32(0.0, 0.06) * breast.ry_bottom,
        );
        let wd = px_per_mm * rng.uniform_range(0.6, 1.5) as f32;
        let amp = rng.uniform_range(0.008, 0.02) as f32;
        add_curve(comp, start, ctrl, end, wd, wd * 0.4, amp);
    }
    let n_vessels = 1 + rng.index(3);
    for _ in 0..n_vessels {
        let y0 =
            breast.cy + rng.uniform_range(-0.7, 0.7) as f32 * breast.ry_top.min(breast.ry_bottom);
        let start = (0.0, y0);
        let end = (
            breast.rx * rng.uniform_range(0.5, 0.9) as f32,
            breast.cy + rng.uniform_range(-0.5, 0.5) as f32 * breast.ry_bottom,
        );
        let ctrl = (
            (start.0 + end.0) / 2.0,
            (start.1 + end.1) / 2.0 + rng.normal_f32(0.0, 0.15) * breast.ry_bottom,
        );
        let wd = px_per_mm * rng.uniform_range(1.0, 2.2) as f32;
        add_curve(comp, start, ctrl, end, wd, wd * 0.6, 0.03);
    }
    // Nothing outside the breast.
    for (v, &rho) in comp.data.iter_mut().zip(rho_map) {
        if rho >= 1.0 {
            *v = 0.0;
        }
    }
}

/// Adds a curve to `comp` without beading where its segments meet: the curve is drawn by
/// maximum into a layer covering its bounding box, and the layer is added.
fn add_curve(
    comp: &mut Canvas,
    p0: (f32, f32),
    c: (f32, f32),
    p1: (f32, f32),
    w0: f32,
    w1: f32,
    amp: f32,
) {
    let reach = w0.max(w1) * 1.5 + 2.0;
    let Some(bx) = comp.clip_box(
        p0.0.min(c.0).min(p1.0) - reach,
        p0.1.min(c.1).min(p1.1) - reach,
        p0.0.max(c.0).max(p1.0) + reach,
        p0.1.max(c.1).max(p1.1) + reach,
    ) else {
        return;
    };
    let (lw, lh) = (bx.x1 - bx.x0, bx.y1 - bx.y0);
    let mut layer = Canvas::new(lw, lh, 0.0);
    let off = |p: (f32, f32)| (p.0 - bx.x0 as f32, p.1 - bx.y0 as f32);
    draw_curve(
        &mut layer,
        off(p0),
        off(c),
        off(p1),
        &Stroke {
            w0,
            w1,
            amp,
            max_mode: true,
        },
    );
    for y in 0..lh {
        let row = &layer.data[y * lw..(y + 1) * lw];
        let dst = &mut comp.data[(bx.y0 + y) * comp.width + bx.x0..][..lw];
        for (d, v) in dst.iter_mut().zip(row) {
            *d += v;
        }
    }
}

/// Turns the composition into displayed brightness in `[0, 1]`: thickness fall-off, the
/// skin line, the pectoral muscle and the background.
pub fn expose(
    comp: &Canvas,
    breast: &Breast,
    rho_map: &[f32],
    tex: &PowerLawTexture,
    px_per_mm: f32,
) -> Canvas {
    let (w, h) = (comp.width, comp.height);
    let mut out = Canvas::new(w, h, BACKGROUND);
    let skin_px = (0.8 * px_per_mm).max(1.0);
    let scale = breast.rx.min(breast.ry_bottom);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let i = y * w + x;
            let rho = rho_map[i];
            let bg = BACKGROUND + 0.008 * tex.b(fx * 0.3, fy * 0.3);
            let mut v = bg;
            if rho < 1.0 {
                let t = Breast::thickness(rho);
                let edge_px = (1.0 - rho) * scale;
                let skin = 0.05 * (-(edge_px / skin_px).powi(2)).exp();
                v = bg + t * comp.data[i] * 1.05 + skin * t.max(0.3);
            }
            if let Some(d) = breast.pectoral_depth(fx, fy) {
                let wgt = 1.0 - soft_edge(d, 3.0 * skin_px);
                if wgt > 1e-3 {
                    let muscle =
                        0.60 + 0.05 * tex.a(fx, fy).clamp(-2.0, 2.0) - 0.06 * (fy / breast.height);
                    v = v * (1.0 - wgt) + muscle.max(v) * wgt;
                }
            }
            out.data[i] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_and_density() {
        let mut rng = Rng::new(3);
        let b = Breast::random(View::Cc, 256, 416, &mut rng);
        // Inside near the chest wall on the axis, outside at the far corner.
        assert!(b.rho(5.0, b.cy) < 0.5);
        assert!(b.rho(255.0, 2.0) > 1.0);
        let tex = PowerLawTexture::new(256, 416, 3.0, &mut rng);
        let mean_at = |d: u8| {
            let c = tissue_composition(&b, &b.rho_map(), d, &tex, 1.6, &mut Rng::new(9));
            let inside: Vec<f32> = c.data.iter().copied().filter(|&v| v > 0.0).collect();
            inside.iter().sum::<f32>() / inside.len() as f32
        };
        // Denser breasts are brighter on average.
        let m: Vec<f32> = (1..=4).map(mean_at).collect();
        assert!(m.windows(2).all(|p| p[0] < p[1]), "{m:?}");
    }

    #[test]
    fn rho_map_matches_rho() {
        let b = Breast::random(View::Mlo, 120, 200, &mut Rng::new(8));
        let m = b.rho_map();
        for (y, x) in [(0usize, 0usize), (50, 60), (199, 119), (100, 3)] {
            let r = b.rho(x as f32 + 0.5, y as f32 + 0.5);
            assert!((m[y * 120 + x] - r).abs() < 1e-3 * r.max(1.0), "{x},{y}");
        }
    }

    #[test]
    fn mlo_has_a_pectoral_muscle() {
        let b = Breast::random(View::Mlo, 256, 416, &mut Rng::new(5));
        assert!(b.pectoral_depth(1.0, 1.0).is_some_and(|d| d > 0.0));
        assert!(b.pectoral_depth(200.0, 400.0).is_some_and(|d| d < 0.0));
        let p = b.sample_point(0.8, 5.0, &mut Rng::new(1));
        let (x, y) = p.expect("a point inside the breast");
        assert!(b.rho(x, y) < 0.8 && b.pectoral_depth(x, y).is_some_and(|d| d < -5.0));
    }
}
