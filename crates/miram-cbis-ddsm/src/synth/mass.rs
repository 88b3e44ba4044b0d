//! Masses drawn as their labels say: the shape (round, oval, lobulated, irregular, and the
//! rarer architectural distortion, lymph node, focal asymmetric density, asymmetric breast
//! tissue) sets the outline; the margin (circumscribed, obscured, microlobulated,
//! ill-defined, spiculated, and their combinations, one per sector of the border) sets how
//! the border looks; the pathology adds fine detail at the border.
//!
//! The descriptors follow the BI-RADS mammography lexicon (ACR BI-RADS Atlas, 5th ed.,
//! 2013). Malignancy is decided by detail at the scale of a few tenths of a millimetre:
//! malignant masses get a jagged high-frequency border and short fine spicules, benign ones
//! a smooth border, so that a model sees it in a high-resolution crop more easily than at
//! 112 px (what MIRAM's multi-scale reconstruction is meant to exploit).

use miram_rand::Rng;

use super::canvas::{draw_curve, draw_tapered_line, soft_edge, Canvas, Stroke};
use super::texture::PowerLawTexture;

/// Angular resolution of the border tables.
const ANGLES: usize = 1024;

/// The body outline family of a mass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Round.
    Round,
    /// Oval.
    Oval,
    /// A few large undulations.
    Lobulated,
    /// Random low-order outline.
    Irregular,
    /// Oval with a fatty hilum (kidney shape).
    LymphNode,
    /// A faint, soft, textured density.
    FocalAsymmetry,
    /// A large faint region of tissue.
    AsymmetricTissue,
    /// No central mass: radiating lines only.
    Distortion,
}

/// The five BI-RADS margins, in the order of [`crate::records::MASS_MARGINS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Margin {
    /// Sharp edge.
    Circumscribed,
    /// Blurred edge.
    IllDefined,
    /// Small scallops.
    Microlobulated,
    /// Partly hidden by overlying tissue.
    Obscured,
    /// Thin lines radiating from the border.
    Spiculated,
}

impl Margin {
    /// Parses one part of a `mass margins` value.
    pub fn from_part(part: &str) -> Option<Self> {
        match part {
            "CIRCUMSCRIBED" => Some(Margin::Circumscribed),
            "ILL_DEFINED" => Some(Margin::IllDefined),
            "MICROLOBULATED" => Some(Margin::Microlobulated),
            "OBSCURED" => Some(Margin::Obscured),
            "SPICULATED" => Some(Margin::Spiculated),
            _ => None,
        }
    }
}

/// Everything that decides how one mass looks, drawn once per lesion and shared by its CC
/// and MLO views.
#[derive(Debug, Clone)]
pub struct MassSpec {
    /// The outline family.
    pub body: Body,
    /// Architectural distortion in addition to the body (`IRREGULAR-ARCHITECTURAL_DISTORTION`).
    pub distortion: bool,
    /// The margins, one sector of the border each; empty for `NA`.
    pub margins: Vec<Margin>,
    /// Malignant: jagged fine border and fine spicules.
    pub malignant: bool,
    /// Mean radius in millimetres.
    pub radius_mm: f32,
    /// Peak added attenuation (from the subtlety rating).
    pub amplitude: f32,
    /// Seed of the lesion's own random stream (outline, spicules), shared by its views.
    pub seed: u64,
}

/// Per-angle border tables of one drawn mass, in pixels.
struct Border {
    /// Radius of the drawn body.
    body: Vec<f32>,
    /// Radius of the hand-drawn ROI outline (smooth).
    outline: Vec<f32>,
    /// 10-90% edge width.
    edge: Vec<f32>,
    /// Weight of each margin per angle.
    weights: Vec<[f32; 5]>,
}

/// The result of drawing a lesion: its ROI mask in canvas coordinates.
#[derive(Debug, Clone)]
pub struct LesionMask {
    /// First column of the mask box.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// Width of the box.
    pub w: usize,
    /// Height of the box.
    pub h: usize,
    /// `h` rows of `w` flags.
    pub mask: Vec<bool>,
}

impl LesionMask {
    /// The number of mask pixels.
    pub fn area(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

#[inline]
fn angle_bin(theta: f32) -> (usize, usize, f32) {
    let t = theta.rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU * ANGLES as f32;
    let i0 = (t.floor() as usize) % ANGLES;
    (i0, (i0 + 1) % ANGLES, t - t.floor())
}

#[inline]
fn lookup(table: &[f32], theta: f32) -> f32 {
    let (a, b, f) = angle_bin(theta);
    table[a] * (1.0 - f) + table[b] * f
}

/// Smooth sector weights: `k` margins share the circle in equal sectors starting at `offset`,
/// blended over `blend` radians at the sector boundaries.
fn sector_weights(margins: &[Margin], offset: f32) -> Vec<[f32; 5]> {
    let k = margins.len();
    let mut out = vec![[0f32; 5]; ANGLES];
    if k == 0 {
        return out;
    }
    let sector = std::f32::consts::TAU / k as f32;
    let blend = 0.35f32.min(sector / 2.0);
    for (i, w) in out.iter_mut().enumerate() {
        let theta = (i as f32 / ANGLES as f32) * std::f32::consts::TAU;
        let mut total = 0.0;
        for (s, &m) in margins.iter().enumerate() {
            // Circular distance from the sector's centre.
            let centre = offset + (s as f32 + 0.5) * sector;
            let mut d = (theta - centre).rem_euclid(std::f32::consts::TAU);
            if d > std::f32::consts::PI {
                d = std::f32::consts::TAU - d;
            }
            let inside = (sector / 2.0 + blend / 2.0 - d) / blend;
            let v = inside.clamp(0.0, 1.0);
            w[m as usize] += v;
            total += v;
        }
        if total > 0.0 {
            for v in w.iter_mut() {
                *v /= total;
            }
        }
    }
    out
}

/// A random function of the angle: the sum of harmonics `k_lo..=k_hi` with random phases
/// and amplitudes ~ k^-decay, scaled to standard deviation `sd`.
fn harmonic_noise(rng: &mut Rng, k_lo: usize, k_hi: usize, decay: f32, sd: f32) -> Vec<f32> {
    let terms: Vec<(f32, f32, f32)> = (k_lo..=k_hi)
        .map(|k| {
            (
                k as f32,
                rng.normal_f32(0.0, 1.0) * (k as f32).powf(-decay),
                rng.uniform_range(0.0, std::f64::consts::TAU) as f32,
            )
        })
        .collect();
    let mut v: Vec<f32> = (0..ANGLES)
        .map(|i| {
            let th = i as f32 / ANGLES as f32 * std::f32::consts::TAU;
            terms.iter().map(|&(k, a, p)| a * (k * th + p).cos()).sum()
        })
        .collect();
    let var = v.iter().map(|x| x * x).sum::<f32>() / ANGLES as f32;
    let scale = if var > 0.0 { sd / var.sqrt() } else { 0.0 };
    for x in &mut v {
        *x *= scale;
    }
    v
}

impl MassSpec {
    /// The outline, margin and detail tables of the mass at radius `r_px`, rotated by
    /// `rotation` (a view-specific angle).
    fn border(&self, r_px: f32, px_per_mm: f32, rotation: f32, rng: &mut Rng) -> Border {
        let tau = std::f32::consts::TAU;
        // Base outline (relative radius per angle).
        let mut base = vec![1f32; ANGLES];
        let q = rng.uniform_range(0.55, 0.8) as f32;
        // Lobulated: two or three large undulations (harmonics 2 and 3).
        let mut lobe = |lo: f64, hi: f64| {
            (
                rng.uniform_range(lo, hi) as f32,
                rng.uniform_range(0.0, std::f64::consts::TAU) as f32,
            )
        };
        let lobes = [(2.0f32, lobe(0.05, 0.12)), (3.0f32, lobe(0.06, 0.13))];
        let irregular = harmonic_noise(rng, 2, 6, 1.2, 0.14);
        let gentle = harmonic_noise(rng, 2, 3, 1.0, 0.03);
        let hilum = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
        for (i, b) in base.iter_mut().enumerate() {
            let th = i as f32 / ANGLES as f32 * tau;
            let ellipse = |q: f32| {
                1.0 / (((th - rotation).cos()).powi(2) + ((th - rotation).sin() / q).powi(2)).sqrt()
            };
            *b = match self.body {
                Body::Round => 1.0 + gentle[i],
                Body::Oval => ellipse(q) * (1.0 + gentle[i]),
                Body::Lobulated => {
                    let undulation: f32 = lobes
                        .iter()
                        .map(|&(k, (a, p))| a * (k * th + p).cos())
                        .sum();
                    ellipse(q.max(0.7)) * (1.0 + undulation)
                }
                Body::Irregular | Body::FocalAsymmetry | Body::Distortion => 1.0 + irregular[i],
                Body::AsymmetricTissue => 1.0 + 1.5 * irregular[i],
                Body::LymphNode => {
                    let mut d = (th - hilum).rem_euclid(tau);
                    if d > std::f32::consts::PI {
                        d = tau - d;
                    }
                    ellipse(q.min(0.65)) * (1.0 - 0.25 * (-(d / 0.35).powi(2)).exp())
                }
            };
        }
        // Normalise the mean radius to 1.
        let mean = base.iter().sum::<f32>() / ANGLES as f32;
        for b in &mut base {
            *b /= mean;
        }
        let offset = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
        let weights = sector_weights(&self.margins, offset);
        // Microlobulation: small scallops, regular when benign, irregular when malignant.
        let scallop_k = (14 + rng.index(10)) as f32;
        let scallop_noise = harmonic_noise(rng, 14, 30, 0.0, 0.045);
        // Malignant fine detail: a jagged border at a few tenths of a millimetre.
        let jag_sd = if self.malignant {
            (rng.uniform_range(0.25, 0.4) as f32 * px_per_mm / r_px).clamp(0.015, 0.06)
        } else {
            0.0
        };
        let jag = harmonic_noise(rng, 12, 48, 1.0, 1.0);
        let mut body = vec![0f32; ANGLES];
        let mut outline = vec![0f32; ANGLES];
        let mut edge = vec![0f32; ANGLES];
        let sharp = (0.12 * px_per_mm).max(0.7);
        for i in 0..ANGLES {
            let th = i as f32 / ANGLES as f32 * tau;
            let w = weights[i];
            let scallop = if self.malignant {
                scallop_noise[i]
            } else {
                0.04 * (scallop_k * th).cos()
            };
            let rel = base[i] * (1.0 + w[Margin::Microlobulated as usize] * scallop);
            outline[i] = r_px * rel * 1.04;
            body[i] = r_px * rel * (1.0 + jag_sd * jag[i]);
            let mut e = 0.0;
            e += w[Margin::Circumscribed as usize] * sharp;
            e += w[Margin::Obscured as usize] * sharp * 1.3;
            e += w[Margin::Microlobulated as usize] * sharp * 1.2;
            e += w[Margin::IllDefined as usize] * r_px * 0.22;
            e += w[Margin::Spiculated as usize] * r_px * 0.07;
            if self.margins.is_empty() {
                e = r_px * 0.1;
            }
            e = match self.body {
                Body::FocalAsymmetry => e.max(r_px * 0.3),
                Body::AsymmetricTissue => e.max(r_px * 0.4),
                _ => e,
            };
            edge[i] = e.max(0.7);
        }
        Border {
            body,
            outline,
            edge,
            weights,
        }
    }
}

/// Draws the mass centred at `centre` into the composition `comp` (added attenuation) and
/// returns its ROI mask. `rotation` and `view_seed` vary between the views of one lesion.
pub fn draw_mass(
    comp: &mut Canvas,
    tex: &PowerLawTexture,
    spec: &MassSpec,
    centre: (f32, f32),
    rotation: f32,
    px_per_mm: f32,
    view_seed: u64,
) -> LesionMask {
    let mut rng = Rng::keyed(spec.seed, &[0]);
    let mut view_rng = Rng::keyed(view_seed, &[1]);
    let r_px = (spec.radius_mm * px_per_mm).max(3.0);
    let border = spec.border(r_px, px_per_mm, rotation, &mut rng);
    let m = MassGeometry {
        spec,
        border: &border,
        centre,
        r_px,
        px_per_mm,
    };
    let spiculated = spec.margins.contains(&Margin::Spiculated) || spec.distortion;
    let mut layer = m.body_layer(tex, spiculated);
    // Lymph-node hilum: lower the attenuation of an eccentric fatty core.
    if spec.body == Body::LymphNode {
        m.carve_hilum(&mut layer);
    }
    if spiculated {
        m.draw_spicules(&mut layer, &mut rng, &mut view_rng);
    }
    if spec.malignant {
        m.draw_fine_spicules(&mut layer, &mut view_rng);
    }
    layer.add_to(comp);
    // Obscured sectors: overlying fibroglandular tissue hides part of the border.
    if spec.margins.contains(&Margin::Obscured) {
        m.obscure(comp, tex, &mut view_rng);
    }
    m.roi_mask(comp.width, comp.height)
}

/// A mass being drawn: its spec, its border tables, where it lies and its size in pixels.
struct MassGeometry<'a> {
    spec: &'a MassSpec,
    border: &'a Border,
    centre: (f32, f32),
    r_px: f32,
    px_per_mm: f32,
}

/// The local layer of a lesion (body and spicules combined by maximum) and where its
/// top-left corner lies in the composition.
struct LocalLayer {
    canvas: Canvas,
    x0: i64,
    y0: i64,
}

impl LocalLayer {
    /// The composition's point `p` in layer coordinates.
    fn to_local(&self, p: (f32, f32)) -> (f32, f32) {
        (p.0 - self.x0 as f32, p.1 - self.y0 as f32)
    }

    /// The centre of layer pixel (`lx`, `ly`) in composition coordinates.
    fn pixel_centre(&self, lx: usize, ly: usize) -> (f32, f32) {
        (
            (self.x0 + lx as i64) as f32 + 0.5,
            (self.y0 + ly as i64) as f32 + 0.5,
        )
    }

    /// Adds the layer to the composition, only inside the breast (the composition is 0
    /// outside).
    fn add_to(&self, comp: &mut Canvas) {
        let side = self.canvas.width;
        for ly in 0..side {
            let y = self.y0 + ly as i64;
            if y < 0 || y >= comp.height as i64 {
                continue;
            }
            for lx in 0..side {
                let x = self.x0 + lx as i64;
                if x < 0 || x >= comp.width as i64 {
                    continue;
                }
                let v = self.canvas.data[ly * side + lx];
                if v > 0.0 {
                    let i = y as usize * comp.width + x as usize;
                    if comp.data[i] > 0.0 {
                        comp.data[i] += v;
                    }
                }
            }
        }
    }
}

impl MassGeometry<'_> {
    /// The local layer, large enough for body, margin and spicules, with the body painted:
    /// a slightly domed interior with its own texture inside the soft border.
    fn body_layer(&self, tex: &PowerLawTexture, spiculated: bool) -> LocalLayer {
        let (spec, border, r_px) = (self.spec, self.border, self.r_px);
        let body_max = border.body.iter().cloned().fold(0.0, f32::max);
        let edge_max = border.edge.iter().cloned().fold(0.0, f32::max);
        let reach =
            body_max + edge_max * 1.5 + if spiculated { 1.8 * r_px } else { 0.5 * r_px } + 4.0;
        let (cx, cy) = self.centre;
        let side = (2.0 * reach).ceil() as usize + 2;
        let mut layer = LocalLayer {
            canvas: Canvas::new(side, side, 0.0),
            x0: (cx - reach).floor() as i64,
            y0: (cy - reach).floor() as i64,
        };
        let body_gain = match spec.body {
            Body::FocalAsymmetry => 0.5,
            Body::AsymmetricTissue => 0.4,
            Body::Distortion => 0.25,
            _ => 1.0,
        };
        let amp = spec.amplitude;
        for ly in 0..side {
            for lx in 0..side {
                let (x, y) = layer.pixel_centre(lx, ly);
                let (dx, dy) = (x - cx, y - cy);
                let r = (dx * dx + dy * dy).sqrt();
                let th = dy.atan2(dx);
                let b = lookup(&border.body, th);
                let e = lookup(&border.edge, th);
                let inside = soft_edge(r - b, e);
                if inside < 1e-4 {
                    continue;
                }
                // Slightly domed interior with its own texture.
                let rr = (r / b).min(1.0);
                let dome = 0.55 + 0.45 * (1.0 - rr * rr).sqrt();
                let t = 1.0 + 0.15 * tex.a(x * 1.5 + 97.0, y * 1.5 + 31.0).clamp(-2.5, 2.5);
                let mut v = amp * body_gain * inside * dome * t;
                if matches!(spec.body, Body::FocalAsymmetry | Body::AsymmetricTissue) {
                    v *= (0.7 + 0.3 * tex.a(x * 0.5, y * 0.5)).clamp(0.2, 1.3);
                }
                layer.canvas.data[ly * side + lx] = v;
            }
        }
        layer
    }

    /// Lowers the attenuation of an eccentric fatty core (a lymph node's hilum), on the side
    /// where the border is closest to the centre.
    fn carve_hilum(&self, layer: &mut LocalLayer) {
        let (cx, cy) = self.centre;
        let (mut best, mut best_r) = (0usize, f32::INFINITY);
        for (i, &b) in self.border.body.iter().enumerate() {
            if b < best_r {
                best_r = b;
                best = i;
            }
        }
        let th = best as f32 / ANGLES as f32 * std::f32::consts::TAU;
        let (hx, hy) = (cx + 0.45 * best_r * th.cos(), cy + 0.45 * best_r * th.sin());
        let hr = 0.4 * self.r_px;
        let side = layer.canvas.width;
        for ly in 0..side {
            for lx in 0..side {
                let (x, y) = layer.pixel_centre(lx, ly);
                let d = ((x - hx).powi(2) + (y - hy).powi(2)).sqrt();
                let f = soft_edge(d - hr, 0.3 * hr);
                layer.canvas.data[ly * side + lx] *= 1.0 - 0.6 * f;
            }
        }
    }

    /// Spicules: thin radiating lines from the spiculated sectors (or all around for an
    /// architectural distortion); benign spiculated lesions get fewer, shorter, smoother ones.
    fn draw_spicules(&self, layer: &mut LocalLayer, rng: &mut Rng, view_rng: &mut Rng) {
        let (spec, border, r_px) = (self.spec, self.border, self.r_px);
        let (cx, cy) = self.centre;
        let amp = spec.amplitude;
        let mut n = if spec.distortion {
            20 + rng.index(20)
        } else {
            10 + rng.index(16)
        };
        if !spec.malignant {
            n = n * 2 / 3;
        }
        let spic_weight = |th: f32| -> f32 {
            if spec.distortion {
                1.0
            } else {
                let (a, b, f) = angle_bin(th);
                let i = if f < 0.5 { a } else { b };
                border.weights[i][Margin::Spiculated as usize]
            }
        };
        let mut placed = 0;
        let mut tries = 0;
        while placed < n && tries < 20 * n {
            tries += 1;
            let th = view_rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
            if view_rng.uniform_f32() > spic_weight(th) {
                continue;
            }
            placed += 1;
            let b = lookup(&border.body, th);
            let len_scale = if spec.malignant { 1.0 } else { 0.6 };
            let len = r_px * view_rng.uniform_range(0.6, 1.6) as f32 * len_scale;
            let bend = view_rng.normal_f32(0.0, 0.12);
            let w0 = (r_px * 0.06).max(0.12 * self.px_per_mm).max(0.8);
            let start = (cx + 0.75 * b * th.cos(), cy + 0.75 * b * th.sin());
            let mid_r = b + 0.5 * len;
            let ctrl = (
                cx + mid_r * (th + bend).cos(),
                cy + mid_r * (th + bend).sin(),
            );
            let end_r = b + len;
            let end = (
                cx + end_r * (th + 2.0 * bend).cos(),
                cy + end_r * (th + 2.0 * bend).sin(),
            );
            let a = amp * 0.75 * if spec.malignant { 1.0 } else { 0.7 };
            let (start, ctrl, end) = (
                layer.to_local(start),
                layer.to_local(ctrl),
                layer.to_local(end),
            );
            draw_curve(
                &mut layer.canvas,
                start,
                ctrl,
                end,
                &Stroke {
                    w0,
                    w1: 0.0,
                    amp: a,
                    max_mode: true,
                },
            );
        }
    }

    /// Malignant fine detail: short fine spicules all around the border, a few tenths of a
    /// millimetre wide.
    fn draw_fine_spicules(&self, layer: &mut LocalLayer, view_rng: &mut Rng) {
        let (cx, cy) = self.centre;
        let px_per_mm = self.px_per_mm;
        let n = 8 + view_rng.index(10);
        for _ in 0..n {
            let th = view_rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
            let b = lookup(&self.border.body, th);
            let len = self.r_px * view_rng.uniform_range(0.15, 0.4) as f32 + px_per_mm * 0.5;
            let w0 = (0.25 * px_per_mm).max(0.5);
            let start = (cx + 0.92 * b * th.cos(), cy + 0.92 * b * th.sin());
            let end = (cx + (b + len) * th.cos(), cy + (b + len) * th.sin());
            let (start, end) = (layer.to_local(start), layer.to_local(end));
            let amp = self.spec.amplitude * 0.6;
            draw_tapered_line(&mut layer.canvas, start, end, w0, 0.0, amp, true);
        }
    }

    /// Obscured sectors: one or two blobs of overlying fibroglandular tissue added to the
    /// composition over the obscured part of the border.
    fn obscure(&self, comp: &mut Canvas, tex: &PowerLawTexture, view_rng: &mut Rng) {
        let (cx, cy) = self.centre;
        let amp = self.spec.amplitude;
        let blobs = 1 + view_rng.index(2);
        for _ in 0..blobs {
            let mut th = 0.0;
            for _ in 0..64 {
                th = view_rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
                let (a, _, _) = angle_bin(th);
                if self.border.weights[a][Margin::Obscured as usize] > 0.5 {
                    break;
                }
            }
            let b = lookup(&self.border.body, th);
            let d = b * view_rng.uniform_range(0.85, 1.1) as f32;
            let (ox, oy) = (cx + d * th.cos(), cy + d * th.sin());
            let orad = self.r_px * view_rng.uniform_range(0.55, 0.85) as f32;
            let oamp = amp * view_rng.uniform_range(0.8, 1.1) as f32;
            if let Some(bx) = comp.clip_box(
                ox - 2.0 * orad,
                oy - 2.0 * orad,
                ox + 2.0 * orad,
                oy + 2.0 * orad,
            ) {
                for y in bx.y0..bx.y1 {
                    for x in bx.x0..bx.x1 {
                        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                        let dd = ((fx - ox).powi(2) + (fy - oy).powi(2)).sqrt() / orad;
                        let f = (-dd.powi(4)).exp()
                            * (0.75 + 0.25 * tex.a(fx * 1.3, fy * 1.3)).clamp(0.3, 1.3);
                        let i = y * comp.width + x;
                        if comp.data[i] > 0.0 {
                            comp.data[i] += oamp * f;
                        }
                    }
                }
            }
        }
    }

    /// The ROI mask in a composition of `width` x `height`: the smooth hand-drawn outline (a
    /// distortion's ROI is a circle around the centre of the radiating lines).
    fn roi_mask(&self, width: usize, height: usize) -> LesionMask {
        let (cx, cy) = self.centre;
        let mreach = self.border.outline.iter().cloned().fold(0.0, f32::max) + 2.0;
        let mx0 = (cx - mreach).floor().max(0.0) as usize;
        let my0 = (cy - mreach).floor().max(0.0) as usize;
        let mx1 = ((cx + mreach).ceil() as usize + 1).min(width);
        let my1 = ((cy + mreach).ceil() as usize + 1).min(height);
        let (w, h) = (mx1.saturating_sub(mx0), my1.saturating_sub(my0));
        let mut mask = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                let fx = (mx0 + x) as f32 + 0.5 - cx;
                let fy = (my0 + y) as f32 + 0.5 - cy;
                let r = (fx * fx + fy * fy).sqrt();
                let lim = if self.spec.body == Body::Distortion {
                    self.r_px * 1.1
                } else {
                    lookup(&self.border.outline, fy.atan2(fx))
                };
                mask[y * w + x] = r <= lim;
            }
        }
        LesionMask {
            x0: mx0,
            y0: my0,
            w,
            h,
            mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(margins: Vec<Margin>, malignant: bool) -> MassSpec {
        MassSpec {
            body: Body::Oval,
            distortion: false,
            margins,
            malignant,
            radius_mm: 8.0,
            amplitude: 0.2,
            seed: 11,
        }
    }

    fn draw(s: &MassSpec) -> (Canvas, LesionMask) {
        let mut comp = Canvas::new(200, 200, 0.3);
        let tex = PowerLawTexture::new(200, 200, 3.0, &mut Rng::new(1));
        let m = draw_mass(&mut comp, &tex, s, (100.0, 100.0), 0.3, 4.0, 5);
        (comp, m)
    }

    /// Edge sharpness: the largest jump between neighbouring pixels on a horizontal line
    /// through the centre.
    fn max_gradient(c: &Canvas) -> f32 {
        (1..c.width)
            .map(|x| (c.get(x, 100) - c.get(x - 1, 100)).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn margins_change_the_border() {
        let (sharp, mask) = draw(&spec(vec![Margin::Circumscribed], false));
        let (blurred, _) = draw(&spec(vec![Margin::IllDefined], false));
        assert!(max_gradient(&sharp) > 2.0 * max_gradient(&blurred));
        // The mask covers about the area of the mass (radius 32 px, oval).
        let area = mask.area() as f32;
        let disc = std::f32::consts::PI * 32.0 * 32.0;
        assert!(area > 0.6 * disc && area < 1.4 * disc, "{area} vs {disc}");
        // Spicules reach beyond the body; a circumscribed mass leaves that ring untouched.
        let (spic, _) = draw(&spec(vec![Margin::Spiculated], true));
        let ring = |c: &Canvas| -> f32 {
            let mut s = 0.0;
            for y in 0..200 {
                for x in 0..200 {
                    let r = ((x as f32 - 100.0).powi(2) + (y as f32 - 100.0).powi(2)).sqrt();
                    if (55.0..75.0).contains(&r) {
                        s += c.get(x, y) - 0.3;
                    }
                }
            }
            s
        };
        assert!(ring(&spic) > 10.0 * ring(&sharp).max(0.01));
    }

    #[test]
    fn malignancy_roughens_the_border() {
        // The same outline with and without the malignant fine detail: the border length
        // (sum of gradient magnitudes) grows.
        let (benign, _) = draw(&spec(vec![Margin::Circumscribed], false));
        let (malignant, _) = draw(&spec(vec![Margin::Circumscribed], true));
        let tv = |c: &Canvas| -> f32 {
            let mut s = 0.0;
            for y in 1..200 {
                for x in 1..200 {
                    s += (c.get(x, y) - c.get(x - 1, y)).abs()
                        + (c.get(x, y) - c.get(x, y - 1)).abs();
                }
            }
            s
        };
        assert!(
            tv(&malignant) > 1.1 * tv(&benign),
            "{} vs {}",
            tv(&malignant),
            tv(&benign)
        );
    }
}
