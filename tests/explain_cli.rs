//! `miram explain` on generated data: a tiny pre-training and fine-tuning run, crops as
//! DICOM, 8-bit and 16-bit PNG files and as dataset rows; one figure and one set of raw maps
//! per input, maps that read back as distributions over the patches; and one clear error
//! for an unreadable input, a folder that is not a run, and no input at all.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::*;

/// Writes a grayscale PNG of `side x side` pixels: a dark field with a bright disc.
fn write_png(path: &Path, side: u32, sixteen: bool) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side, side);
    enc.set_color(png::ColorType::Grayscale);
    let max = if sixteen { 65535.0 } else { 255.0 };
    let mut data = Vec::new();
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f64 - side as f64 / 2.0, y as f64 - side as f64 / 3.0);
            let v = if dx * dx + dy * dy < (side as f64 / 5.0).powi(2) {
                0.9
            } else {
                0.2
            };
            let v = v * max + (x % 7) as f64; // some texture
            if sixteen {
                data.extend_from_slice(&(v as u16).to_be_bytes());
            } else {
                data.push(v.min(255.0) as u8);
            }
        }
    }
    enc.set_depth(if sixteen {
        png::BitDepth::Sixteen
    } else {
        png::BitDepth::Eight
    });
    let mut w = enc.write_header().unwrap_or_else(|e| panic!("{e}"));
    w.write_image_data(&data).unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// One cropped-image DICOM of the generated dataset (its test cases' `_1` folders hold the
/// crop and the ROI mask).
fn a_dicom_crop(data: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{e}")) {
            let p = e.unwrap_or_else(|e| panic!("{e}")).path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "dcm") && s(&p).contains("Test_") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no DICOM in {}", data.display()))
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A `.npy` file of f32 (the format 1.0 header and little-endian data): shape and values.
fn read_npy(p: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00", "{}", p.display());
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + hlen]).into_owned();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let inner = header
        .split("'shape': (")
        .nth(1)
        .and_then(|t| t.split(')').next());
    let shape: Vec<usize> = inner
        .unwrap_or_else(|| panic!("{header}"))
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| s(p).ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn explain_writes_one_figure_and_maps_per_input_and_names_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    pipeline(root);
    let (data, pre, ft) = (root.join("data"), root.join("pre"), root.join("ft"));
    let crops = root.join("crops");
    std::fs::create_dir_all(&crops).unwrap_or_else(|e| panic!("{e}"));
    write_png(&crops.join("a8.png"), 90, false);
    write_png(&crops.join("b16.png"), 70, true);
    let dicom = a_dicom_crop(&data);

    // A fine-tuned classifier: three crop files and two dataset rows.
    let out = root.join("ex-ft");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "explain", "--model", &s(&ft), &s(&dicom), &s(&crops.join("a8.png")),
        &s(&crops.join("b16.png")), "--data", &s(&data), "--split", "test", "--count", "2",
        "--out", &s(&out)]));
    let figures: Vec<PathBuf> = files_with(&out, ".png");
    assert_eq!(figures.len(), 5, "{figures:?}");
    assert_eq!(files_with(&out, "_rollout.npy").len(), 5);
    assert_eq!(files_with(&out, "_heads.npy").len(), 5);
    let summary = read_json(&out.join("explain.json"));
    assert_eq!(summary["model_kind"], "fine-tuned classifier");
    let (grid, heads) = (summary["grid"].as_u64(), summary["heads"].as_u64());
    let (grid, heads) = (grid.unwrap_or(0) as usize, heads.unwrap_or(0) as usize);
    assert!(grid > 1 && heads > 0, "{summary}");
    let items = summary["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 5);
    assert!(items[3]["input"]
        .as_str()
        .unwrap_or("")
        .contains("test crop 0"));
    for it in &items {
        let figure = PathBuf::from(it["figure"].as_str().unwrap_or(""));
        let dec = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&figure).unwrap_or_else(|e| panic!("{e}")),
        ));
        let info = dec.read_info().unwrap_or_else(|e| panic!("{e}"));
        assert!(info.info().width > 300 && info.info().height > 300);
        let maps: Vec<PathBuf> = it["maps"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|p| PathBuf::from(p.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let (shape, rollout) = read_npy(&maps[0]);
        assert_eq!(shape, vec![grid, grid]);
        // The cls row of the rollout over the patches: non-negative, below 1 in total.
        let total: f32 = rollout.iter().sum();
        assert!(
            rollout.iter().all(|&v| v >= 0.0) && total > 0.0 && total < 1.0,
            "{total}"
        );
        let max = rollout.iter().copied().fold(f32::MIN, f32::max);
        let recorded = it["rollout_max"].as_f64().unwrap_or(f64::NAN) as f32;
        assert!((max - recorded).abs() < 1e-6, "{max} vs {recorded}");
        let (shape, per_head) = read_npy(&maps[1]);
        assert_eq!(shape, vec![heads, grid, grid]);
        for h in per_head.chunks(grid * grid) {
            let t: f32 = h.iter().sum();
            assert!(t > 0.0 && t <= 1.0 + 1e-5, "{t}");
        }
    }

    // A pre-trained encoder, a folder of crops, maps as 16-bit PNG files.
    let out = root.join("ex-pre");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "explain", "--model", &s(&pre), &s(&crops), "--maps", "png16",
        "--out", &s(&out)]));
    let summary = read_json(&out.join("explain.json"));
    assert_eq!(summary["model_kind"], "pre-trained encoder");
    let items = summary["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(files_with(&out, "_rollout.png").len(), 2);
    assert_eq!(files_with(&out, "_head0.png").len(), 2);
    let figures: Vec<PathBuf> = files_with(&out, ".png")
        .into_iter()
        .filter(|p| !s(p).contains("_rollout") && !s(p).contains("_head"))
        .collect();
    assert_eq!(figures.len(), 2, "{figures:?}");

    // An unreadable input is named; --keep-going skips it.
    let bad = crops.join("c-broken.png");
    std::fs::write(&bad, "not a picture").unwrap_or_else(|e| panic!("{e}"));
    let out = root.join("ex-bad");
    let (ft_s, crops_s, out_s) = (s(&ft), s(&crops), s(&out));
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "--model", &ft_s, &crops_s, "--out", &out_s];
        args.extend_from_slice(extra);
        miram(&args)
    };
    assert_one_line_error(
        &run(&[]),
        &[
            "1 of 3 inputs cannot be read",
            "c-broken.png",
            "--keep-going",
        ],
    );
    assert!(
        !out.exists(),
        "nothing is written before the inputs are read"
    );
    let err = ok(&run(&["--keep-going"]));
    assert!(
        err.contains("skipped") && err.contains("c-broken.png"),
        "{err}"
    );
    assert_eq!(
        read_json(&out.join("explain.json"))["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // A folder that is not a run, a missing input, no input.
    let explain = |model: &Path, input: &Path| {
        miram(&[
            "explain",
            "--model",
            &s(model),
            &s(input),
            "--out",
            &s(&root.join("x")),
        ])
    };
    assert_one_line_error(
        &explain(&data, &crops),
        &[
            &s(&data),
            "is not a run folder",
            "explain takes a pre-training run",
        ],
    );
    assert_one_line_error(
        &explain(&ft, &root.join("none.dcm")),
        &["none.dcm", "cannot be read"],
    );
    let out = miram(&["explain", "--model", &s(&ft), "--out", &s(&root.join("x"))]);
    assert_one_line_error(&out, &["nothing to explain"]);
}
