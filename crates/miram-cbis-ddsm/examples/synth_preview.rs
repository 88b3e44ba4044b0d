//! Renders a few synthetic mammograms of the generator to PNG files, to look at them.
//!
//! ```text
//! cargo run --release -p miram-cbis-ddsm --example synth_preview -- /tmp/preview [count] [seed]
//! ```
//!
//! writes `image_NN.png` (8-bit, the full mammogram with the ROI outlines drawn in; large
//! images also as `small_NN.png`, about 600 px wide) and
//! `lesion_NN_K.png` (the lesion region at full resolution) for the first `count` planned
//! images of `SynthConfig::small()`, and prints one line per image with its labels.

use std::path::{Path, PathBuf};

use miram_cbis_ddsm::synth::{plan, render, SynthConfig};

fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    gray: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::fs::File::create(path)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(gray)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map_or("synth_preview", String::as_str));
    let count: usize = args.get(2).map_or(Ok(6), |s| s.parse())?;
    let seed: u64 = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let preset = std::env::var("SYNTH_PRESET").unwrap_or_default();
    let cfg = match preset.as_str() {
        "medium" => SynthConfig::medium(),
        _ => SynthConfig::small(),
    }
    .with_seed(seed);
    std::fs::create_dir_all(&out)?;
    let images = plan(&cfg)?;
    for im in images.iter().take(count) {
        let r = render(&im.image_spec(&cfg));
        let (width, height) = (r.image.width(), r.image.height());
        let pixels = r.image.as_slice();
        let mut gray: Vec<u8> = pixels.iter().map(|&v| (v >> 8) as u8).collect();
        let w = width as usize;
        // Outline every ROI mask in white.
        for m in &r.masks {
            for y in 0..m.h {
                for x in 0..m.w {
                    let on = m.mask[y * m.w + x];
                    let edge = on
                        && (x == 0
                            || y == 0
                            || x + 1 == m.w
                            || y + 1 == m.h
                            || !m.mask[y * m.w + x - 1]
                            || !m.mask[y * m.w + x + 1]
                            || !m.mask[(y - 1) * m.w + x]
                            || !m.mask[(y + 1) * m.w + x]);
                    if edge {
                        gray[(m.y0 + y) * w + m.x0 + x] = 255;
                    }
                }
            }
        }
        // Large images also as a box-filtered copy about 600 px wide, easier to view.
        let f = (width as usize).div_ceil(600);
        if f > 1 {
            let (sw, sh) = (w / f, height as usize / f);
            let mut small = vec![0u8; sw * sh];
            for y in 0..sh {
                for x in 0..sw {
                    let mut acc = 0u32;
                    for dy in 0..f {
                        for dx in 0..f {
                            acc += gray[(y * f + dy) * w + x * f + dx] as u32;
                        }
                    }
                    small[y * sw + x] = (acc / (f * f) as u32) as u8;
                }
            }
            write_png(
                &out.join(format!("small_{:02}.png", im.index)),
                sw as u32,
                sh as u32,
                &small,
            )?;
        }
        write_png(
            &out.join(format!("image_{:02}.png", im.index)),
            width,
            height,
            &gray,
        )?;
        for (k, (m, l)) in r.masks.iter().zip(&im.lesions).enumerate() {
            // The lesion region with a margin, without outline.
            let pad = m.w.max(m.h) / 2;
            let x0 = m.x0.saturating_sub(pad);
            let y0 = m.y0.saturating_sub(pad);
            let x1 = (m.x0 + m.w + pad).min(w);
            let y1 = (m.y0 + m.h + pad).min(height as usize);
            let mut crop = Vec::new();
            for y in y0..y1 {
                for x in x0..x1 {
                    crop.push((pixels[y * w + x] >> 8) as u8);
                }
            }
            write_png(
                &out.join(format!("lesion_{:02}_{}.png", im.index, k + 1)),
                (x1 - x0) as u32,
                (y1 - y0) as u32,
                &crop,
            )?;
            println!(
                "image {:2} {} {:?} {:?} density {}: lesion {} {:?} {:?}",
                im.index,
                im.folder,
                im.side,
                im.view,
                im.density,
                k + 1,
                l.labels.pathology,
                l.labels.categories
            );
        }
    }
    Ok(())
}
