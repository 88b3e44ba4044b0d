//! Drawing primitives of the generator: a float canvas, anti-aliased tapered lines and
//! polygons, convex hulls and the distance to them.
//!
//! Every primitive touches only the pixels of its own bounding box, so drawing a lesion costs
//! in proportion to its size, not to the size of the mammogram.

/// A row-major single-channel float image.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height` rows of `width` values.
    pub data: Vec<f32>,
}

impl Canvas {
    /// A canvas filled with `value`.
    pub fn new(width: usize, height: usize, value: f32) -> Self {
        Self {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    /// The pixel rectangle `[x0, x1) x [y0, y1)` covering the real box, clipped to the canvas.
    pub fn clip_box(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<PixelBox> {
        let bx0 = x0.floor().max(0.0) as usize;
        let by0 = y0.floor().max(0.0) as usize;
        let bx1 = (x1.ceil().max(0.0) as usize + 1).min(self.width);
        let by1 = (y1.ceil().max(0.0) as usize + 1).min(self.height);
        (bx0 < bx1 && by0 < by1).then_some(PixelBox {
            x0: bx0,
            y0: by0,
            x1: bx1,
            y1: by1,
        })
    }

    /// Adds `value` at `(x, y)` (no bounds check beyond the slice's).
    #[inline]
    pub fn add(&mut self, x: usize, y: usize, value: f32) {
        self.data[y * self.width + x] += value;
    }

    /// The value at `(x, y)`.
    #[inline]
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Mirrors the canvas left to right.
    pub fn flip_horizontal(&mut self) {
        for row in self.data.chunks_mut(self.width) {
            row.reverse();
        }
    }
}

/// A half-open pixel rectangle `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    /// First column.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// One past the last column.
    pub x1: usize,
    /// One past the last row.
    pub y1: usize,
}

/// Smooth step from 0 (at `x <= 0`) to 1 (at `x >= 1`).
#[inline]
pub fn smoothstep(x: f32) -> f32 {
    let t = x.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Logistic edge: 1 well inside (`d` very negative), 0 well outside, 0.5 at `d = 0`; `width`
/// is the 10-90% distance.
#[inline]
pub fn soft_edge(d: f32, width: f32) -> f32 {
    let s = (width / 4.4).max(1e-3);
    1.0 / (1.0 + (d / s).exp())
}

/// The distance from `p` to the segment `a`-`b` and the position `t` in `[0, 1]` of the
/// closest point along it.
#[inline]
pub fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    (((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt(), t)
}

/// A tapered line from `a` (full width `w0`) to `b` (width `w1`) with a Gaussian cross
/// profile of peak `amp`, combined into `canvas` by maximum with what is there (`max_mode`) or
/// by addition. Widths below a pixel keep the line's integrated intensity (the profile is
/// widened to half a pixel and its peak lowered), so fine structures stay anti-aliased.
pub fn draw_tapered_line(
    canvas: &mut Canvas,
    a: (f32, f32),
    b: (f32, f32),
    w0: f32,
    w1: f32,
    amp: f32,
    max_mode: bool,
) {
    let wmax = w0.max(w1);
    let reach = wmax * 1.5 + 2.0;
    let Some(bx) = canvas.clip_box(
        a.0.min(b.0) - reach,
        a.1.min(b.1) - reach,
        a.0.max(b.0) + reach,
        a.1.max(b.1) + reach,
    ) else {
        return;
    };
    for y in bx.y0..bx.y1 {
        for x in bx.x0..bx.x1 {
            let p = (x as f32 + 0.5, y as f32 + 0.5);
            let (d, t) = segment_distance(p, a, b);
            let w = w0 + (w1 - w0) * t;
            if w <= 0.0 {
                continue;
            }
            let sigma = w / 2.355;
            let sigma_eff = sigma.max(0.45);
            let peak = amp * (sigma / sigma_eff);
            let v = peak * (-0.5 * (d / sigma_eff).powi(2)).exp();
            if v < 1e-4 * amp.abs() {
                continue;
            }
            let i = y * canvas.width + x;
            if max_mode {
                if v > canvas.data[i] {
                    canvas.data[i] = v;
                }
            } else {
                canvas.data[i] += v;
            }
        }
    }
}

/// How a curve is drawn: its width at the start and at the end, its amplitude, and whether
/// it keeps the maximum with what is under it (`max_mode`) or adds to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stroke {
    /// Width at the start.
    pub w0: f32,
    /// Width at the end.
    pub w1: f32,
    /// Amplitude.
    pub amp: f32,
    /// Keep the maximum instead of adding.
    pub max_mode: bool,
}

/// A quadratic Bezier curve from `p0` through control `c` to `p1`, drawn as `segments` tapered
/// lines from width `stroke.w0` to `stroke.w1`.
pub fn draw_curve(
    canvas: &mut Canvas,
    p0: (f32, f32),
    c: (f32, f32),
    p1: (f32, f32),
    stroke: &Stroke,
) {
    let Stroke {
        w0,
        w1,
        amp,
        max_mode,
    } = *stroke;
    let len = ((p1.0 - p0.0).powi(2) + (p1.1 - p0.1).powi(2)).sqrt();
    let segments = ((len / 6.0).ceil() as usize).clamp(2, 64);
    let point = |t: f32| {
        let u = 1.0 - t;
        (
            u * u * p0.0 + 2.0 * u * t * c.0 + t * t * p1.0,
            u * u * p0.1 + 2.0 * u * t * c.1 + t * t * p1.1,
        )
    };
    for s in 0..segments {
        let t0 = s as f32 / segments as f32;
        let t1 = (s + 1) as f32 / segments as f32;
        draw_tapered_line(
            canvas,
            point(t0),
            point(t1),
            w0 + (w1 - w0) * t0,
            w0 + (w1 - w0) * t1,
            amp,
            max_mode,
        );
    }
}

/// The convex hull of `points` (Andrew's monotone chain), counter-clockwise, without
/// repeated end point. Fewer than three distinct points are returned as they are.
pub fn convex_hull(points: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut pts: Vec<(f32, f32)> = points.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut lower: Vec<(f32, f32)> = Vec::new();
    for &p in &pts {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0.0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<(f32, f32)> = Vec::new();
    for &p in pts.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0.0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// The distance from `p` to the convex polygon `hull` (counter-clockwise); 0 inside. A hull of
/// one or two points is a point or a segment.
pub fn hull_distance(p: (f32, f32), hull: &[(f32, f32)]) -> f32 {
    match hull.len() {
        0 => f32::INFINITY,
        1 => ((p.0 - hull[0].0).powi(2) + (p.1 - hull[0].1).powi(2)).sqrt(),
        2 => segment_distance(p, hull[0], hull[1]).0,
        n => {
            let mut inside = true;
            let mut best = f32::INFINITY;
            for i in 0..n {
                let a = hull[i];
                let b = hull[(i + 1) % n];
                let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
                if cross < 0.0 {
                    inside = false;
                }
                best = best.min(segment_distance(p, a, b).0);
            }
            if inside {
                0.0
            } else {
                best
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_and_distance() {
        let pts = [
            (0.0, 0.0),
            (4.0, 0.0),
            (4.0, 4.0),
            (0.0, 4.0),
            (2.0, 2.0),
            (1.0, 3.0),
        ];
        let hull = convex_hull(&pts);
        assert_eq!(hull.len(), 4);
        assert_eq!(hull_distance((2.0, 2.0), &hull), 0.0);
        assert!((hull_distance((7.0, 2.0), &hull) - 3.0).abs() < 1e-6);
        assert!((hull_distance((7.0, 8.0), &hull) - 5.0).abs() < 1e-6);
    }

    #[test]
    fn thin_lines_keep_their_integrated_intensity() {
        // A vertical line across the canvas: the row sum is about amp * sigma * sqrt(2 pi),
        // also when the line is thinner than a pixel.
        for &w in &[0.5f32, 3.0] {
            let mut c = Canvas::new(40, 10, 0.0);
            draw_tapered_line(&mut c, (20.0, -5.0), (20.0, 15.0), w, w, 1.0, false);
            let row: f32 = (0..40).map(|x| c.get(x, 5)).sum();
            let expected = w / 2.355 * (std::f32::consts::TAU).sqrt();
            assert!(
                (row - expected).abs() < 0.05 * expected + 0.02,
                "w {w}: {row} vs {expected}"
            );
        }
    }
}
