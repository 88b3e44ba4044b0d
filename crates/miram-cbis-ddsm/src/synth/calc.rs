//! Calcification clusters drawn as their labels say: the morphology of each particle (calc
//! type: punctate, amorphous, pleomorphic, fine linear branching, round and regular, lucent
//! centred, eggshell, coarse, vascular, large rod-like, dystrophic, milk of calcium, skin)
//! and their arrangement (calc distribution: clustered, linear, segmental, regional,
//! diffusely scattered), after the BI-RADS lexicon (ACR BI-RADS Atlas, 5th ed., 2013).
//!
//! Malignancy is again decided by fine detail: the particles of a malignant cluster vary in
//! size and have jagged, elongated outlines (the pleomorphism radiologists look for);
//! benign particles are smooth and uniform. Particles are a few tenths of a millimetre, so
//! this detail lives at the finest scale of the image.

use miram_rand::Rng;

use super::canvas::{convex_hull, draw_tapered_line, hull_distance, Canvas};
use super::mass::LesionMask;

/// The morphology of calcification particles (`calc type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Morph {
    /// Tiny round dots.
    Punctate,
    /// Tiny hazy dots.
    Amorphous,
    /// Varying size and shape.
    Pleomorphic,
    /// Thin short branching lines.
    FineLinearBranching,
    /// Rings with a lucent centre.
    LucentCentered,
    /// Round smooth dots.
    RoundAndRegular,
    /// Thin large rings.
    Eggshell,
    /// Large lumpy particles.
    Coarse,
    /// Parallel tracks along a vessel.
    Vascular,
    /// Thick rods.
    LargeRodlike,
    /// Irregular coarse with lucent parts.
    Dystrophic,
    /// Soft smudges.
    MilkOfCalcium,
    /// Lucent-centred, near the skin.
    Skin,
}

impl Morph {
    /// Parses one part of a `calc type` value.
    pub fn from_part(part: &str) -> Option<Self> {
        Some(match part {
            "PUNCTATE" => Morph::Punctate,
            "AMORPHOUS" => Morph::Amorphous,
            "PLEOMORPHIC" => Morph::Pleomorphic,
            "FINE_LINEAR_BRANCHING" => Morph::FineLinearBranching,
            "LUCENT_CENTERED" | "LUCENT_CENTER" => Morph::LucentCentered,
            "ROUND_AND_REGULAR" => Morph::RoundAndRegular,
            "EGGSHELL" => Morph::Eggshell,
            "COARSE" => Morph::Coarse,
            "VASCULAR" => Morph::Vascular,
            "LARGE_RODLIKE" => Morph::LargeRodlike,
            "DYSTROPHIC" => Morph::Dystrophic,
            "MILK_OF_CALCIUM" => Morph::MilkOfCalcium,
            "SKIN" => Morph::Skin,
            _ => return None,
        })
    }

    /// Whether one particle of this type is large (fewer of them are drawn).
    fn is_large(self) -> bool {
        matches!(
            self,
            Morph::Vascular
                | Morph::LargeRodlike
                | Morph::Coarse
                | Morph::Eggshell
                | Morph::Dystrophic
        )
    }
}

/// The arrangement of the particles (`calc distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// A tight group.
    Clustered,
    /// Along a line.
    Linear,
    /// Along branching ducts of a segment.
    Segmental,
    /// Scattered over a larger region.
    Regional,
    /// Scattered widely.
    Diffuse,
    /// `NA`: a small loose group.
    Unspecified,
}

impl Distribution {
    /// Parses one part of a `calc distribution` value.
    pub fn from_part(part: &str) -> Option<Self> {
        Some(match part {
            "CLUSTERED" => Distribution::Clustered,
            "LINEAR" => Distribution::Linear,
            "SEGMENTAL" => Distribution::Segmental,
            "REGIONAL" => Distribution::Regional,
            "DIFFUSELY_SCATTERED" => Distribution::Diffuse,
            _ => return None,
        })
    }

    /// The extent of the arrangement in millimetres (radius or half length).
    fn extent_mm(self, rng: &mut Rng) -> f32 {
        let (lo, hi) = match self {
            Distribution::Clustered => (2.5, 6.0),
            Distribution::Linear => (6.0, 12.0),
            Distribution::Segmental => (8.0, 16.0),
            Distribution::Regional => (8.0, 14.0),
            Distribution::Diffuse => (12.0, 20.0),
            Distribution::Unspecified => (3.0, 7.0),
        };
        rng.uniform_range(lo, hi) as f32
    }

    /// The number of particles.
    fn count(self, rng: &mut Rng) -> usize {
        let (lo, hi) = match self {
            Distribution::Clustered => (6, 20),
            Distribution::Linear => (6, 14),
            Distribution::Segmental => (12, 28),
            Distribution::Regional => (14, 30),
            Distribution::Diffuse => (18, 36),
            Distribution::Unspecified => (3, 9),
        };
        lo + rng.index(hi - lo + 1)
    }
}

/// Everything that decides how one calcification cluster looks, shared by its views.
#[derive(Debug, Clone)]
pub struct CalcSpec {
    /// The particle types (parts of `calc type`); empty for `NA` (punctate is drawn).
    pub morphs: Vec<Morph>,
    /// The arrangements (parts of `calc distribution`); empty for `NA`.
    pub distributions: Vec<Distribution>,
    /// Malignant: pleomorphic, jagged particles of varying size.
    pub malignant: bool,
    /// Peak added brightness (from the subtlety rating).
    pub amplitude: f32,
    /// Seed of the lesion's own random stream, shared by its views.
    pub seed: u64,
}

/// One particle, in millimetres relative to the cluster centre.
#[derive(Debug, Clone)]
struct Particle {
    pos: (f32, f32),
    morph: Morph,
    radius: f32,
    elongation: f32,
    orientation: f32,
    /// Harmonics (k, amplitude, phase) of the outline.
    outline: Vec<(f32, f32, f32)>,
    brightness: f32,
}

fn particle(rng: &mut Rng, morph: Morph, pos: (f32, f32), malignant: bool) -> Particle {
    let (lo, hi, bright) = match morph {
        Morph::Punctate => (0.12, 0.25, 1.0),
        Morph::Amorphous => (0.08, 0.18, 0.5),
        Morph::Pleomorphic => (0.12, 0.4, 1.0),
        Morph::FineLinearBranching => (0.05, 0.1, 0.95),
        Morph::LucentCentered | Morph::Skin => (0.4, 0.9, 0.9),
        Morph::RoundAndRegular => (0.25, 0.5, 1.0),
        Morph::Eggshell => (0.8, 1.5, 0.8),
        Morph::Coarse => (0.6, 1.3, 1.1),
        Morph::Vascular => (0.1, 0.15, 0.8),
        Morph::LargeRodlike => (0.25, 0.5, 1.0),
        Morph::Dystrophic => (0.5, 1.1, 1.0),
        Morph::MilkOfCalcium => (0.3, 0.6, 0.6),
    };
    let mut radius = rng.uniform_range(lo, hi) as f32;
    let mut outline = Vec::new();
    let mut elongation = 1.0;
    let type_irregularity = match morph {
        Morph::Pleomorphic => 0.18,
        Morph::Coarse | Morph::Dystrophic => 0.25,
        _ => 0.0,
    };
    for k in 3..=5 {
        outline.push((
            k as f32,
            type_irregularity * rng.normal_f32(0.0, 1.0) / k as f32 * 2.0,
            rng.uniform_range(0.0, std::f64::consts::TAU) as f32,
        ));
    }
    if malignant {
        // Pleomorphism: size heterogeneity, elongation and a jagged outline.
        radius *= (rng.normal_f32(0.0, 0.45)).exp();
        elongation = rng.uniform_range(1.0, 2.4) as f32;
        for k in 6..=10 {
            outline.push((
                k as f32,
                rng.normal_f32(0.0, 0.12),
                rng.uniform_range(0.0, std::f64::consts::TAU) as f32,
            ));
        }
    } else {
        radius *= (rng.normal_f32(0.0, 0.12)).exp();
    }
    Particle {
        pos,
        morph,
        radius,
        elongation,
        orientation: rng.uniform_range(0.0, std::f64::consts::PI) as f32,
        outline,
        brightness: bright
            * rng.uniform_range(0.8, 1.1) as f32
            * if malignant {
                rng.uniform_range(0.7, 1.15) as f32
            } else {
                1.0
            },
    }
}

/// Positions (mm, relative to the centre) of `n` particles arranged as `dist`.
fn arrange(rng: &mut Rng, dist: Distribution, n: usize) -> Vec<(f32, f32)> {
    let ext = dist.extent_mm(rng);
    let mut out = Vec::with_capacity(n);
    match dist {
        Distribution::Clustered | Distribution::Unspecified => {
            for _ in 0..n {
                let r = ext * rng.uniform_f32().sqrt();
                let a = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
                out.push((r * a.cos(), r * a.sin() * 0.8));
            }
        }
        Distribution::Linear => {
            let a = rng.normal_f32(0.0, 0.4);
            for _ in 0..n {
                let t = rng.uniform_range(-1.0, 1.0) as f32 * ext;
                let off = rng.normal_f32(0.0, 0.25);
                out.push((t * a.cos() - off * a.sin(), t * a.sin() + off * a.cos()));
            }
        }
        Distribution::Segmental => {
            // A duct tree: a trunk and two to three branches, pointing towards the nipple.
            let trunk = rng.normal_f32(0.0, 0.3);
            let branches: Vec<(f32, f32, f32)> = (0..3 + rng.index(2))
                .map(|b| {
                    let start = if b == 0 {
                        -ext
                    } else {
                        rng.uniform_range(-0.6, 0.4) as f32 * ext
                    };
                    let ang = if b == 0 {
                        trunk
                    } else {
                        trunk + rng.normal_f32(0.0, 0.5)
                    };
                    (start, ang, ext * rng.uniform_range(0.5, 1.0) as f32)
                })
                .collect();
            for _ in 0..n {
                let &(start, ang, len) = &branches[rng.index(branches.len())];
                let base = (start * trunk.cos(), start * trunk.sin());
                let t = rng.uniform_f32() * len;
                let off = rng.normal_f32(0.0, 0.3);
                out.push((
                    base.0 + t * ang.cos() - off * ang.sin(),
                    base.1 + t * ang.sin() + off * ang.cos(),
                ));
            }
        }
        Distribution::Regional | Distribution::Diffuse => {
            for _ in 0..n {
                let r = rng.uniform_f32().sqrt();
                let a = rng.uniform_range(0.0, std::f64::consts::TAU) as f32;
                out.push((ext * r * a.cos(), 0.7 * ext * r * a.sin()));
            }
        }
    }
    out
}

/// Draws the cluster centred at `centre` (pixels) onto the exposed image `bright`, only where
/// `inside(x, y)` (the breast), and returns its ROI mask: the convex hull of the particles,
/// dilated by about a millimetre.
pub fn draw_calcs(
    bright: &mut Canvas,
    spec: &CalcSpec,
    centre: (f32, f32),
    rotation: f32,
    px_per_mm: f32,
    inside: &dyn Fn(f32, f32) -> bool,
) -> LesionMask {
    let mut rng = Rng::keyed(spec.seed, &[0]);
    let dists = if spec.distributions.is_empty() {
        vec![Distribution::Unspecified]
    } else {
        spec.distributions.clone()
    };
    let morphs = if spec.morphs.is_empty() {
        vec![Morph::Punctate]
    } else {
        spec.morphs.clone()
    };
    let large = morphs.iter().all(|m| m.is_large());
    let mut particles = Vec::new();
    for &d in &dists {
        let mut n = d.count(&mut rng).div_ceil(dists.len());
        if large {
            n = n.div_ceil(3);
        }
        for pos in arrange(&mut rng, d, n.max(2)) {
            let m = morphs[rng.index(morphs.len())];
            particles.push(particle(&mut rng, m, pos, spec.malignant));
        }
    }
    let (c, s) = (rotation.cos(), rotation.sin());
    let to_px = |p: (f32, f32)| {
        (
            centre.0 + px_per_mm * (p.0 * c - p.1 * s),
            centre.1 + px_per_mm * (p.0 * s + p.1 * c),
        )
    };
    let mut drawn: Vec<(f32, f32)> = Vec::new();
    let mut max_r: f32 = 0.0;
    let mut layer_pts = Vec::new();
    for p in &particles {
        let (px, py) = to_px(p.pos);
        if !inside(px, py) {
            continue;
        }
        drawn.push((px, py));
        layer_pts.push((px, py, p));
        max_r = max_r.max(p.radius * p.elongation * px_per_mm);
    }
    if drawn.is_empty() {
        // Always keep the centre particle so that the lesion exists.
        let p = &particles[0];
        drawn.push(centre);
        layer_pts.push((centre.0, centre.1, p));
    }
    let amp = spec.amplitude;
    for &(px, py, p) in &layer_pts {
        draw_particle(bright, p, (px, py), rotation, px_per_mm, amp);
    }
    // ROI: hull of the particle centres, dilated.
    let hull = convex_hull(&drawn);
    let pad = (1.0 * px_per_mm).max(3.0) + max_r;
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for &(x, y) in &drawn {
        x0 = x0.min(x - pad);
        y0 = y0.min(y - pad);
        x1 = x1.max(x + pad);
        y1 = y1.max(y + pad);
    }
    let bx = bright.clip_box(x0, y0, x1, y1);
    match bx {
        Some(bx) => {
            let (w, h) = (bx.x1 - bx.x0, bx.y1 - bx.y0);
            let mut mask = vec![false; w * h];
            for y in 0..h {
                for x in 0..w {
                    let p = ((bx.x0 + x) as f32 + 0.5, (bx.y0 + y) as f32 + 0.5);
                    mask[y * w + x] = hull_distance(p, &hull) <= pad;
                }
            }
            LesionMask {
                x0: bx.x0,
                y0: bx.y0,
                w,
                h,
                mask,
            }
        }
        None => LesionMask {
            x0: 0,
            y0: 0,
            w: 0,
            h: 0,
            mask: Vec::new(),
        },
    }
}

/// Draws one particle (supersampled 4 x 4 per pixel, or as lines for the linear types).
fn draw_particle(
    bright: &mut Canvas,
    p: &Particle,
    at: (f32, f32),
    rotation: f32,
    px_per_mm: f32,
    amp: f32,
) {
    let a = amp * p.brightness;
    let r = p.radius * px_per_mm;
    let ori = p.orientation + rotation;
    match p.morph {
        Morph::FineLinearBranching => draw_casting(bright, at, r, ori, a),
        Morph::Vascular => draw_tram_tracks(bright, at, r, ori, a, px_per_mm),
        Morph::LargeRodlike => {
            let len = r * 8.0;
            let w = 2.0 * r;
            let s0 = (at.0 - 0.5 * len * ori.cos(), at.1 - 0.5 * len * ori.sin());
            let s1 = (at.0 + 0.5 * len * ori.cos(), at.1 + 0.5 * len * ori.sin());
            draw_tapered_line(bright, s0, s1, w, w * 0.8, a, false);
        }
        _ => draw_blob(bright, p, at, r, ori, a),
    }
}

/// A fine linear branching particle: a short casting with one or two branches.
fn draw_casting(bright: &mut Canvas, at: (f32, f32), r: f32, ori: f32, a: f32) {
    let len = (r * 12.0).max(2.0);
    let w = (2.0 * r).max(0.3);
    let end = (at.0 + len * ori.cos(), at.1 + len * ori.sin());
    draw_tapered_line(bright, at, end, w, w * 0.7, a, false);
    let b_at = (at.0 + 0.5 * len * ori.cos(), at.1 + 0.5 * len * ori.sin());
    let bo = ori + 0.6;
    draw_tapered_line(
        bright,
        b_at,
        (b_at.0 + 0.5 * len * bo.cos(), b_at.1 + 0.5 * len * bo.sin()),
        w * 0.8,
        w * 0.5,
        a,
        false,
    );
}

/// A vascular particle: tram tracks, two parallel lines about a millimetre apart.
fn draw_tram_tracks(bright: &mut Canvas, at: (f32, f32), r: f32, ori: f32, a: f32, px_per_mm: f32) {
    let len = 8.0 * px_per_mm;
    let gap = 0.45 * px_per_mm;
    let w = (2.0 * r).max(0.3);
    let (nx, ny) = (-ori.sin(), ori.cos());
    for sgn in [-1.0f32, 1.0] {
        let s0 = (
            at.0 + sgn * gap * nx - 0.5 * len * ori.cos(),
            at.1 + sgn * gap * ny - 0.5 * len * ori.sin(),
        );
        let s1 = (s0.0 + len * ori.cos(), s0.1 + len * ori.sin());
        draw_tapered_line(bright, s0, s1, w, w, a * 0.8, false);
    }
}

/// A rounded particle, supersampled 4 x 4 per pixel: an elongated, irregular outline, solid,
/// ringed (lucent-centred, eggshell, dystrophic) or soft (amorphous, milk of calcium).
fn draw_blob(bright: &mut Canvas, p: &Particle, at: (f32, f32), r: f32, ori: f32, a: f32) {
    // Ring structure: (inner radius fraction, interior level).
    let (ring_in, interior, soft) = match p.morph {
        Morph::LucentCentered | Morph::Skin => (0.6, 0.25, false),
        Morph::Eggshell => (0.82, 0.1, false),
        Morph::Dystrophic => (0.5, 0.5, false),
        Morph::Amorphous | Morph::MilkOfCalcium => (0.0, 1.0, true),
        _ => (0.0, 1.0, false),
    };
    let reach = r * p.elongation * 1.6 + 1.5;
    let Some(bx) = bright.clip_box(at.0 - reach, at.1 - reach, at.0 + reach, at.1 + reach) else {
        return;
    };
    let (co, si) = (ori.cos(), ori.sin());
    let boundary = |dx: f32, dy: f32| -> f32 {
        // Rotate into the particle frame and undo the elongation.
        let u = dx * co + dy * si;
        let v = (-dx * si + dy * co) * p.elongation;
        let rr = (u * u + v * v).sqrt();
        let th = v.atan2(u);
        let mut k = 1.0;
        for &(h, am, ph) in &p.outline {
            k += am * (h * th + ph).cos();
        }
        rr / (r * k.max(0.3))
    };
    const SS: usize = 4;
    for y in bx.y0..bx.y1 {
        for x in bx.x0..bx.x1 {
            let mut acc = 0.0;
            for sy in 0..SS {
                for sx in 0..SS {
                    let dx = x as f32 + (sx as f32 + 0.5) / SS as f32 - at.0;
                    let dy = y as f32 + (sy as f32 + 0.5) / SS as f32 - at.1;
                    let q = boundary(dx, dy);
                    let v = if soft {
                        (-1.5 * q * q).exp()
                    } else if q >= 1.0 {
                        0.0
                    } else if q >= ring_in {
                        1.0
                    } else {
                        interior
                    };
                    acc += v;
                }
            }
            let cover = acc / (SS * SS) as f32;
            if cover > 0.0 {
                bright.add(x, y, a * cover);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(morphs: Vec<Morph>, malignant: bool) -> CalcSpec {
        CalcSpec {
            morphs,
            distributions: vec![Distribution::Clustered],
            malignant,
            amplitude: 0.4,
            seed: 7,
        }
    }

    #[test]
    fn cluster_is_inside_its_mask_and_bright() {
        let mut c = Canvas::new(300, 300, 0.4);
        let m = draw_calcs(
            &mut c,
            &spec(vec![Morph::Punctate], false),
            (150.0, 150.0),
            0.0,
            10.0,
            &|_, _| true,
        );
        assert!(m.area() > 100);
        // Every brightened pixel lies in the mask box.
        for y in 0..300 {
            for x in 0..300 {
                if c.get(x, y) > 0.41 {
                    assert!(
                        x >= m.x0 && x < m.x0 + m.w && y >= m.y0 && y < m.y0 + m.h,
                        "{x},{y}"
                    );
                }
            }
        }
    }

    #[test]
    fn malignant_particles_are_more_varied() {
        // Size heterogeneity: the coefficient of variation of particle area.
        let cv = |malignant: bool| {
            let mut rng = Rng::new(3);
            let areas: Vec<f32> = (0..400)
                .map(|_| {
                    let p = particle(&mut rng, Morph::Pleomorphic, (0.0, 0.0), malignant);
                    p.radius * p.radius * p.elongation
                })
                .collect();
            let m = areas.iter().sum::<f32>() / 400.0;
            let sd = (areas.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 400.0).sqrt();
            sd / m
        };
        assert!(cv(true) > 1.5 * cv(false), "{} vs {}", cv(true), cv(false));
    }
}
