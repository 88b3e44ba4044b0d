//! PNG pictures of the reports: line charts (loss per scale over steps, ROC and
//! precision-recall curves) drawn with plotters, grids of images (original, masked input,
//! reconstruction at each scale) with captions, and rows of colour maps with a colour bar
//! each (attention maps, `miram explain`).
//!
//! Text is drawn with the bundled DejaVu Sans (`assets/fonts/`, Bitstream Vera licence)
//! through plotters' `ab_glyph` backend, so no system font library is needed. Pictures are
//! drawn into an RGB buffer and written with the `png` crate.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The bundled font.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font as plotters' `sans-serif` (once per process).
fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, FONT).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the bundled font assets/fonts/DejaVuSans.ttf could not be read"))
}

/// Series colours (colour-blind-safe, Okabe and Ito).
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// The title.
    pub title: String,
    /// The x-axis label.
    pub x_label: String,
    /// The y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed axis ranges (`None`: fitted to the data).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range.
    pub y_range: Option<(f64, f64)>,
    /// Draw the chance diagonal y = x (ROC curves).
    pub diagonal: bool,
    /// Logarithmic y axis (losses spanning decades).
    pub log_y: bool,
    /// Label the x axis with whole numbers (steps, epochs).
    pub x_integer: bool,
}

impl LineChart {
    /// A chart with fitted ranges, no diagonal, linear axes.
    pub fn new(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series,
            x_range: None,
            y_range: None,
            diagonal: false,
            log_y: false,
            x_integer: false,
        }
    }

    /// A ROC chart (false-positive rate against true-positive rate, unit square, diagonal).
    pub fn roc(title: &str, series: Vec<Series>) -> Self {
        Self {
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.02)),
            diagonal: true,
            ..Self::new(
                title,
                "false-positive rate (1 - specificity)",
                "true-positive rate (sensitivity)",
                series,
            )
        }
    }

    /// A precision-recall chart (unit square).
    pub fn precision_recall(title: &str, series: Vec<Series>) -> Self {
        Self {
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.02)),
            ..Self::new(title, "recall (sensitivity)", "precision (PPV)", series)
        }
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.0.is_finite() && p.1.is_finite())
        };
        let fit = |vals: Vec<f64>, log: bool| {
            let vals: Vec<f64> = vals.into_iter().filter(|v| !log || *v > 0.0).collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() || !hi.is_finite() {
                return if log { (0.1, 1.0) } else { (0.0, 1.0) };
            }
            if log {
                (lo / 1.2, hi * 1.2)
            } else if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = (hi - lo) * 0.05;
                (lo - pad, hi + pad)
            }
        };
        let x = self
            .x_range
            .unwrap_or_else(|| fit(pts().map(|p| p.0).collect(), false));
        let y = self
            .y_range
            .unwrap_or_else(|| fit(pts().map(|p| p.1).collect(), self.log_y));
        (x, y)
    }

    /// Draws the chart into a `width x height` PNG at `path`.
    pub fn save(&self, path: &Path, width: u32, height: u32) -> Result<()> {
        save_panels(path, std::slice::from_ref(self), width, height)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 22))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(64);
        let style = |i: usize| COLORS[i % COLORS.len()].stroke_width(2);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                let int_fmt = |x: &f64| format!("{x:.0}");
                let mut mesh = chart.configure_mesh();
                if self.x_integer {
                    mesh.x_label_formatter(&int_fmt);
                }
                mesh.x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 16))
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()?;
                if self.diagonal {
                    chart.draw_series(LineSeries::new(
                        [(0.0, 0.0), (1.0, 1.0)],
                        ShapeStyle::from(&RGBColor(170, 170, 170)).stroke_width(1),
                    ))?;
                }
                for (i, s) in self.series.iter().enumerate() {
                    let pts: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| {
                            p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0)
                        })
                        .collect();
                    chart
                        .draw_series(LineSeries::new(pts, style(i)))?
                        .label(s.name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 22, y)], style(i))
                        });
                }
                if !self.series.is_empty() {
                    chart
                        .configure_series_labels()
                        .label_font(("sans-serif", 14))
                        .background_style(WHITE.mix(0.85))
                        .border_style(RGBColor(200, 200, 200))
                        .position(if self.diagonal {
                            SeriesLabelPosition::LowerRight
                        } else {
                            SeriesLabelPosition::UpperRight
                        })
                        .draw()?;
                }
            }};
        }
        if self.log_y {
            body!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
        } else {
            body!(builder.build_cartesian_2d(x0..x1, y0..y1)?);
        }
        Ok(())
    }
}

/// Draws charts side by side, each `width x height`, into one PNG at `path`.
pub fn save_panels(path: &Path, charts: &[LineChart], width: u32, height: u32) -> Result<()> {
    register_font()?;
    let n = charts.len().max(1) as u32;
    let total_w = width * n;
    let mut buf = vec![255u8; (total_w * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (total_w, height)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        let panels = root.split_evenly((1, n as usize));
        for (c, area) in charts.iter().zip(panels.iter()) {
            c.draw(area).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_png(path, &buf, total_w, height)
}

/// A grayscale picture, values in `[0, 1]` (clamped when drawn), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height x width` values.
    pub pixels: Vec<f32>,
}

impl Tile {
    /// The tile with its values mapped linearly from `[lo, hi]` to `[0, 1]`.
    pub fn normalized(width: usize, height: usize, pixels: &[f32], lo: f32, hi: f32) -> Self {
        let span = if hi > lo { hi - lo } else { 1.0 };
        Self {
            width,
            height,
            pixels: pixels.iter().map(|v| (v - lo) / span).collect(),
        }
    }
}

/// Draws rows of tiles with a caption per column and per row into a PNG. Every tile is shown
/// in a `cell x cell` square (nearest-neighbour scaling, so a 2x reconstruction shows its
/// finer detail beside the 1x one).
pub fn image_grid(
    path: &Path,
    title: &str,
    columns: &[String],
    rows: &[(String, Vec<Tile>)],
    cell: usize,
) -> Result<()> {
    register_font()?;
    let ncols = rows
        .iter()
        .map(|r| r.1.len())
        .max()
        .unwrap_or(0)
        .max(columns.len());
    let (left, top, gap) = (150usize, 64usize, 8usize);
    let width = left + ncols * (cell + gap) + gap;
    let height = top + rows.len() * (cell + gap) + gap;
    let mut buf = vec![255u8; width * height * 3];
    for (r, (_, tiles)) in rows.iter().enumerate() {
        for (c, t) in tiles.iter().enumerate() {
            let (ox, oy) = (left + c * (cell + gap), top + r * (cell + gap));
            for y in 0..cell {
                for x in 0..cell {
                    let sx = x * t.width / cell;
                    let sy = y * t.height / cell;
                    let v = t.pixels.get(sy * t.width + sx).copied().unwrap_or(0.0);
                    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    let i = ((oy + y) * width + ox + x) * 3;
                    buf[i..i + 3].copy_from_slice(&[g, g, g]);
                }
            }
        }
    }
    {
        let (w, h) = (width as u32, height as u32);
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        root.draw_text(
            title,
            &("sans-serif", 20).into_font().color(&BLACK),
            (10, 8),
        )
        .map_err(err)?;
        for (c, name) in columns.iter().enumerate() {
            let x = (left + c * (cell + gap)) as i32;
            root.draw_text(
                name,
                &("sans-serif", 15).into_font().color(&BLACK),
                (x, top as i32 - 24),
            )
            .map_err(err)?;
        }
        for (r, (name, _)) in rows.iter().enumerate() {
            let y = (top + r * (cell + gap) + cell / 2) as i32 - 8;
            root.draw_text(name, &("sans-serif", 15).into_font().color(&BLACK), (10, y))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    write_png(path, &buf, width as u32, height as u32)
}

/// One row of [`heat_grid`]: its label, captioned colour tiles, and the range its colour bar
/// spans (none: no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct HeatRow {
    /// The row's label, left of its tiles.
    pub label: String,
    /// The tiles, each with the caption drawn above it.
    pub tiles: Vec<(String, crate::heatmap::RgbTile)>,
    /// The values of the bottom and top of the colour bar drawn after the tiles.
    pub bar: Option<(f32, f32)>,
}

/// A colour bar's value as its label: three decimals, or two significant digits below 0.001.
fn bar_label(v: f32) -> String {
    if v == 0.0 || v.abs() >= 1e-3 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// Draws rows of colour tiles into a PNG: a title, per row a label, the tiles in `cell x
/// cell` squares (nearest-neighbour scaling) with their captions, and a colour bar
/// ([`crate::heatmap::RgbTile::colour_bar`]) labelled with its top and bottom values.
pub fn heat_grid(path: &Path, title: &str, rows: &[HeatRow], cell: usize) -> Result<()> {
    register_font()?;
    let ncols = rows.iter().map(|r| r.tiles.len()).max().unwrap_or(0);
    let (left, top, caption, gap, bar_w, bar_text) = (170usize, 40, 22, 8, 14, 76);
    let width = left + ncols * (cell + gap) + gap + bar_w + bar_text;
    let row_h = caption + cell + gap;
    let height = top + rows.len() * row_h + gap;
    let mut buf = vec![255u8; width * height * 3];
    let mut paint = |ox: usize, oy: usize, t: &crate::heatmap::RgbTile, w: usize, h: usize| {
        for y in 0..h {
            for x in 0..w {
                let c = t.pixels[(y * t.height / h) * t.width + x * t.width / w];
                let i = ((oy + y) * width + ox + x) * 3;
                buf[i..i + 3].copy_from_slice(&c);
            }
        }
    };
    let bar = crate::heatmap::RgbTile::colour_bar(1, cell);
    for (r, row) in rows.iter().enumerate() {
        let oy = top + r * row_h + caption;
        for (c, (_, t)) in row.tiles.iter().enumerate() {
            paint(left + c * (cell + gap), oy, t, cell, cell);
        }
        if row.bar.is_some() {
            paint(left + row.tiles.len() * (cell + gap), oy, &bar, bar_w, cell);
        }
    }
    {
        let (w, h) = (width as u32, height as u32);
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        let font = |size| ("sans-serif", size).into_font().color(&BLACK);
        root.draw_text(title, &font(18), (10, 8)).map_err(err)?;
        for (r, row) in rows.iter().enumerate() {
            let oy = (top + r * row_h) as i32;
            root.draw_text(
                &row.label,
                &font(14),
                (10, oy + (caption + cell / 2) as i32 - 8),
            )
            .map_err(err)?;
            for (c, (name, _)) in row.tiles.iter().enumerate() {
                let x = (left + c * (cell + gap)) as i32;
                root.draw_text(name, &font(13), (x, oy + 4)).map_err(err)?;
            }
            if let Some((lo, hi)) = row.bar {
                let x = (left + row.tiles.len() * (cell + gap) + bar_w + 4) as i32;
                let y = oy + caption as i32;
                root.draw_text(&bar_label(hi), &font(12), (x, y))
                    .map_err(err)?;
                root.draw_text(&bar_label(lo), &font(12), (x, y + cell as i32 - 12))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    write_png(path, &buf, width as u32, height as u32)
}

/// Writes an RGB8 buffer as a PNG file.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .with_context(|| format!("{}", path.display()))?;
    w.write_image_data(rgb)
        .with_context(|| format!("{}", path.display()))?;
    w.finish().with_context(|| format!("{}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG written by this module into (width, height, RGB bytes).
    fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(path).unwrap_or_else(|e| panic!("{e}")),
        ));
        let mut r = dec.read_info().unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
        let info = r.next_frame(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn charts_render_lines_and_text() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("roc.png");
        let chart = LineChart::roc(
            "ROC",
            vec![Series {
                name: "MIRAM (AUC 0.80)".into(),
                points: vec![(0.0, 0.0), (0.2, 0.7), (1.0, 1.0)],
            }],
        );
        chart.save(&p, 400, 300)?;
        let (w, h, px) = read_png(&p);
        assert_eq!((w, h), (400, 300));
        // The series colour is drawn, and dark (text) pixels exist in the caption band.
        let blue = px.chunks(3).filter(|c| c == &[0, 114, 178]).count();
        assert!(blue > 50, "{blue} pixels of the series colour");
        let caption_dark = px[..(40 * w as usize * 3)]
            .chunks(3)
            .filter(|c| c[0] < 100 && c[1] < 100 && c[2] < 100)
            .count();
        assert!(
            caption_dark > 20,
            "{caption_dark} dark pixels in the caption band: no text drawn"
        );
        Ok(())
    }

    #[test]
    fn grids_place_tiles_and_captions() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("grid.png");
        let white = Tile {
            width: 2,
            height: 2,
            pixels: vec![1.0; 4],
        };
        let black = Tile {
            width: 4,
            height: 4,
            pixels: vec![0.0; 16],
        };
        image_grid(
            &p,
            "t",
            &["a".into(), "b".into()],
            &[("row".into(), vec![black, white])],
            32,
        )?;
        let (w, h, px) = read_png(&p);
        assert_eq!((w as usize, h as usize), (150 + 2 * 40 + 8, 64 + 40 + 8));
        let at = |x: usize, y: usize| &px[(y * w as usize + x) * 3..(y * w as usize + x) * 3 + 3];
        assert_eq!(at(150 + 5, 64 + 5), &[0, 0, 0]);
        assert_eq!(at(150 + 40 + 5, 64 + 5), &[255, 255, 255]);
        Ok(())
    }

    #[test]
    fn heat_rows_place_tiles_bars_and_labels() -> Result<()> {
        use crate::heatmap::{viridis, RgbTile};
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("heat.png");
        let red = RgbTile {
            width: 2,
            height: 2,
            pixels: vec![[200, 0, 0]; 4],
        };
        let rows = [HeatRow {
            label: "rollout".into(),
            tiles: vec![("crop".into(), red.clone()), ("map".into(), red)],
            bar: Some((0.0, 0.25)),
        }];
        heat_grid(&p, "title", &rows, 32)?;
        let (w, h, px) = read_png(&p);
        // left 170, two tiles of 32 + 8, gap 8, bar 14, bar labels 76; title 40, caption 22.
        assert_eq!(
            (w as usize, h as usize),
            (170 + 2 * 40 + 8 + 14 + 76, 40 + 22 + 40 + 8)
        );
        let at = |x: usize, y: usize| &px[(y * w as usize + x) * 3..(y * w as usize + x) * 3 + 3];
        assert_eq!(at(170 + 5, 40 + 22 + 5), &[200, 0, 0]);
        assert_eq!(at(170 + 40 + 5, 40 + 22 + 5), &[200, 0, 0]);
        // The bar: its top is the top colour, its bottom the bottom one.
        let bx = 170 + 2 * 40 + 3;
        assert_eq!(at(bx, 40 + 22), &viridis(1.0));
        assert_eq!(at(bx, 40 + 22 + 31), &viridis(0.0));
        // Text (dark pixels) right of the bar, where its labels go.
        let dark = (40 + 22..40 + 22 + 32)
            .flat_map(|y| (bx + 16..w as usize).map(move |x| (x, y)))
            .filter(|&(x, y)| at(x, y).iter().all(|&c| c < 100))
            .count();
        assert!(dark > 10, "{dark} dark pixels: no bar labels");
        assert_eq!(bar_label(0.25), "0.250");
        assert_eq!(bar_label(0.00012), "1.2e-4");
        Ok(())
    }
}
