//! `miram predict` and `miram export` end to end on a generated dataset: the scores of a
//! dataset folder equal the fine-tuning run's own predictions.csv, crop files and full
//! images with their ROI masks or boxes give the same scores, bad inputs get one clear
//! error each, and exports read back to the model's tensors.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use miram_core::cbis_ddsm::crop::{extract_square, mask_bbox, square_box};
use miram_core::cbis_ddsm::index::{build_index, no_progress, IndexOptions};
use miram_core::cbis_ddsm::records::OfficialSplit;
use miram_core::cbis_ddsm::{read_image, write_gray_u16, DecodeLimits, DicomUids, GrayImage};
use miram_core::checkpoint::{
    is_computed_table, read_checkpoint, reference_name, round_f32_to, SaveDtype,
};
use miram_core::encoder::ClassifierConfig;
use miram_core::export::timm_pos_embed;
use miram_core::nn::pos_embed::sincos_2d;
use miram_core::MiramConfig;
use miram_core::{Device, Tensor};
use support::{assert_error_line, assert_one_line_error, miram, ok, pipeline, s};

/// The rows of a predictions CSV as maps from column to value.
fn read_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r
        .headers()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(str::to_string)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("{e}"));
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// The score of the malignant class of each row, by (image folder, abnormality id).
fn scores_by_case(rows: &[HashMap<String, String>]) -> HashMap<(String, String), f64> {
    rows.iter()
        .map(|r| {
            (
                (r["image_folder"].clone(), r["abnormality_id"].clone()),
                r["score_MALIGNANT"]
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect()
}

fn score(rows: &[HashMap<String, String>], i: usize) -> f64 {
    rows[i]["score_MALIGNANT"]
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A `.npy` file of little-endian `f32` (what `--save-inputs` writes): its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + len]).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let (_, rest) = header
        .split_once("'shape': (")
        .unwrap_or_else(|| panic!("{header}"));
    let (dims, _) = rest.split_once(')').unwrap_or_else(|| panic!("{header}"));
    let shape: Vec<usize> = dims
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let values: Vec<f32> = b[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-6, "{what}: {a} vs {b}");
}

/// One official test lesion: its full image, ROI mask, the mask's box, the training square
/// written as a DICOM and as a 16-bit PNG crop, and its case key.
struct Lesion {
    full: PathBuf,
    mask: PathBuf,
    bbox: (u32, u32, u32, u32),
    crop_files: [PathBuf; 2],
    key: (String, String),
}

fn write_png16(path: &Path, img: &GrayImage) {
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut enc = png::Encoder::new(f, img.width(), img.height());
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Sixteen);
    let mut w = enc.write_header().unwrap_or_else(|e| panic!("{e}"));
    let bytes: Vec<u8> = img
        .as_slice()
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    w.write_image_data(&bytes).unwrap_or_else(|e| panic!("{e}"));
}

/// The official test lesions of `data`, with their training squares written under `dir`.
fn test_lesions(data: &Path, dir: &Path) -> Vec<Lesion> {
    let index =
        build_index(data, &IndexOptions::default(), &no_progress).unwrap_or_else(|e| panic!("{e}"));
    let limits = DecodeLimits::mammogram();
    let mut out = Vec::new();
    for (i, e) in index.entries.iter().enumerate() {
        if e.record.split != OfficialSplit::Test {
            continue;
        }
        let full = read_image(&e.full_image, &limits).unwrap_or_else(|e| panic!("{e}"));
        let mask = read_image(&e.roi_mask, &limits).unwrap_or_else(|e| panic!("{e}"));
        let b = mask_bbox(&mask).unwrap_or_else(|| panic!("empty mask"));
        let square = GrayImage::new(extract_square(&full, &square_box(&b, 0.0)), full.max_value);
        let dcm = dir.join(format!("crop{i}.dcm"));
        let ids = DicomUids {
            study_instance_uid: format!("2.25.{}", 100 + i),
            series_instance_uid: format!("2.25.{}", 200 + i),
            sop_instance_uid: format!("2.25.{}", 300 + i),
            patient_id: e.record.image_folder(),
            series_description: "cropped images".into(),
            series_number: 1,
            instance_number: 1,
            ..DicomUids::default()
        };
        write_gray_u16(&dcm, &square, &ids).unwrap_or_else(|e| panic!("{e}"));
        let png = dir.join(format!("crop{i}.png"));
        write_png16(&png, &square);
        out.push(Lesion {
            full: e.full_image.clone(),
            mask: e.roi_mask.clone(),
            bbox: (b.x0, b.y0, b.width(), b.height()),
            crop_files: [dcm, png],
            key: (e.record.image_folder(), e.record.abnormality_id.to_string()),
        });
    }
    out
}

#[test]
fn predict_reproduces_the_runs_scores_from_folders_crops_masks_and_boxes() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    pipeline(root);
    let (data, ft) = (root.join("data"), root.join("ft"));
    assert!(ft.join("preprocessing.json").is_file());

    // The dataset folder: the run's own test scores.
    let (folder_csv, folder_npy) = (root.join("folder.csv"), root.join("folder.npy"));
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "predict", "--model", &s(&ft), &s(&data), "--out", &s(&folder_csv),
        "--save-inputs", &s(&folder_npy)]));
    let want = scores_by_case(&read_rows(&ft.join("predictions.csv")));
    let folder = read_rows(&folder_csv);
    let got = scores_by_case(&folder);
    // --save-inputs: one model input per row, in the rows' order.
    let (shape, folder_inputs) = read_npy(&folder_npy);
    assert_eq!(shape[0], folder.len());
    let per = shape[1..].iter().product::<usize>();
    let input_of: HashMap<(String, String), &[f32]> = folder
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = (r["image_folder"].clone(), r["abnormality_id"].clone());
            (key, &folder_inputs[i * per..(i + 1) * per])
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_close(got[k], *v, &format!("{k:?}"));
    }
    // `miram metrics` reads the file (its file column is ignored).
    ok(&miram(&[
        "--quiet",
        "metrics",
        "--task",
        "binary",
        "--input",
        &s(&folder_csv),
    ]));

    // The training squares as crop files (DICOM and PNG), a folder of them, and the full
    // images with their ROI masks or boxes.
    let crops = root.join("crops");
    std::fs::create_dir_all(&crops).unwrap_or_else(|e| panic!("{e}"));
    let lesions = test_lesions(&data, &crops);
    assert_eq!(lesions.len(), want.len());
    let crops_csv = root.join("crops.csv");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "predict", "--model", &s(&ft), &s(&crops), "--batch-size", "3",
        "--out", &s(&crops_csv)]));
    let by_file: HashMap<String, f64> = read_rows(&crops_csv)
        .iter()
        .map(|r| {
            (
                r["file"].clone(),
                r["score_MALIGNANT"].parse().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(by_file.len(), 2 * lesions.len());
    for (i, l) in lesions.iter().enumerate() {
        for f in &l.crop_files {
            assert_close(by_file[&s(f)], want[&l.key], &s(f));
        }
        let one = root.join(format!("one{i}.csv"));
        let one_npy = root.join(format!("one{i}.npy"));
        #[rustfmt::skip]
        ok(&miram(&["--quiet", "predict", "--model", &s(&ft), &s(&l.full), "--roi", &s(&l.mask),
            "--out", &s(&one), "--save-inputs", &s(&one_npy)]));
        assert_close(score(&read_rows(&one), 0), want[&l.key], "--roi");
        // The same model input as the dataset folder's row of that lesion.
        let (one_shape, one_input) = read_npy(&one_npy);
        assert_eq!(one_shape, [&[1], &shape[1..]].concat());
        assert_eq!(
            one_input.as_slice(),
            input_of[&l.key],
            "--save-inputs {:?}",
            l.key
        );
        let (x, y, w, h) = l.bbox;
        #[rustfmt::skip]
        ok(&miram(&["--quiet", "predict", "--model", &s(&ft), &s(&l.full), "--box",
            &format!("{x},{y},{w},{h}"), "--out", &s(&one)]));
        assert_close(score(&read_rows(&one), 0), want[&l.key], "--box");
    }
}

#[test]
fn bad_inputs_get_one_clear_error_each_and_exports_read_back() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    pipeline(root);
    let (data, pre, ft) = (root.join("data"), root.join("pre"), root.join("ft"));
    let crops = root.join("crops");
    std::fs::create_dir_all(&crops).unwrap_or_else(|e| panic!("{e}"));
    let lesions = test_lesions(&data, &crops);
    let l = &lesions[0];
    let out = s(&root.join("bad.csv"));

    // An unreadable file is named with its cause and skipped: an error unless --keep-going.
    let junk = root.join("junk.dcm");
    std::fs::write(&junk, b"not a DICOM file").unwrap_or_else(|e| panic!("{e}"));
    let good = s(&l.crop_files[1]);
    let r = miram(&[
        "predict",
        "--model",
        &s(&ft),
        &good,
        &s(&junk),
        "--out",
        &out,
    ]);
    assert_error_line(&r, &["1 inputs could not be read", "--keep-going"]);
    let err = support::text(&r.stderr);
    assert!(err.contains(&format!("skipped {}", s(&junk))), "{err}");
    ok(&miram(&[
        "--quiet",
        "predict",
        "--model",
        &s(&ft),
        &good,
        &s(&junk),
        "--out",
        &out,
        "--keep-going",
    ]));
    assert_eq!(read_rows(Path::new(&out)).len(), 1);

    // A mask of another shape, a box outside the image, a run of the wrong kind.
    let small = root.join("small-mask.png");
    write_png16(
        &small,
        &GrayImage::from_vec(10, 10, vec![255; 100], 255).unwrap_or_else(|e| panic!("{e}")),
    );
    let r = miram(&[
        "--quiet",
        "predict",
        "--model",
        &s(&ft),
        &s(&l.full),
        "--roi",
        &s(&small),
        "--out",
        &out,
    ]);
    assert_one_line_error(&r, &[&s(&small), "10 x 10", "the image", "x 416"]);
    let r = miram(&[
        "--quiet",
        "predict",
        "--model",
        &s(&ft),
        &s(&l.full),
        "--box",
        "200,400,100,100",
        "--out",
        &out,
    ]);
    assert_one_line_error(&r, &["--box 200,400,100,100", "inside the", "x 416 image"]);
    let r = miram(&[
        "--quiet",
        "predict",
        "--model",
        &s(&pre),
        &s(&data),
        "--out",
        &out,
    ]);
    assert_one_line_error(
        &r,
        &["is a pre-training run", "predict takes fine-tuning runs"],
    );

    // timm: the classifier's tensors under the same names, with the position table; bf16
    // rounds as SaveDtype does.
    let best = read_checkpoint(
        &ft.join("checkpoints").join("best.safetensors"),
        &Device::Cpu,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg: ClassifierConfig =
        serde_json::from_str(&best.metadata["config"]).unwrap_or_else(|e| panic!("{e}"));
    let values = |t: &Tensor| -> Vec<f32> {
        t.flatten_all()
            .and_then(|t| t.to_dtype(miram_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for dtype in ["f32", "bf16"] {
        let file = root.join(format!("timm-{dtype}.safetensors"));
        #[rustfmt::skip]
        ok(&miram(&["--quiet", "export", "--model", &s(&ft), "--format", "timm", "--dtype", dtype,
            "--out", &s(&file)]));
        let back = read_checkpoint(&file, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.tensors.len(), best.tensors.len() + 1);
        let d: SaveDtype = dtype.parse().unwrap_or_else(|e| panic!("{e}"));
        for (name, t) in &best.tensors {
            let want = values(&round_f32_to(t, d).unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(values(&back.tensors[name]), want, "{name} ({dtype})");
        }
        let pe = timm_pos_embed(&cfg).unwrap_or_else(|e| panic!("{e}"));
        let pe = values(&round_f32_to(&pe, d).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(values(&back.tensors["pos_embed"]), pe);
    }
    // MAE: the pre-trained tensors under MAE's names, mapped back by reference_name.
    let file = root.join("mae.safetensors");
    ok(&miram(&[
        "--quiet",
        "export",
        "--model",
        &s(&pre),
        "--format",
        "mae",
        "--out",
        &s(&file),
    ]));
    let model = read_checkpoint(&pre.join("model.safetensors"), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}"));
    let back = read_checkpoint(&file, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    assert!(back
        .tensors
        .contains_key("decoder_blocks.0.attn.qkv.weight"));
    // Every tensor of the model, plus the sin-cos tables MAE's state_dict holds (computed
    // here, so not in the model's file): the encoder's and one per decoder.
    let pre_cfg =
        MiramConfig::from_json(&model.metadata["config"]).unwrap_or_else(|e| panic!("{e}"));
    let tables = 1 + pre_cfg.scales.len();
    let stored = model
        .tensors
        .keys()
        .filter(|k| is_computed_table(k))
        .count();
    assert_eq!(back.tensors.len(), model.tensors.len() + tables - stored);
    let g = pre_cfg.img_size / pre_cfg.patch_size;
    for (name, t) in &back.tensors {
        let ours = reference_name(name);
        let want = match model.tensors.get(&ours) {
            Some(t) => values(t),
            None => {
                assert!(is_computed_table(&ours), "{name} is not the model's");
                let dim = if name == "pos_embed" {
                    pre_cfg.embed_dim
                } else {
                    pre_cfg.decoder_embed_dim
                };
                assert_eq!(t.dims(), &[1, 1 + g * g, dim], "{name}");
                values(&sincos_2d(dim, g, g, true, &Device::Cpu).unwrap_or_else(|e| panic!("{e}")))
            }
        };
        assert_eq!(values(t), want, "{name}");
    }
    for name in [
        "pos_embed",
        "decoder_pos_embed",
        "mask_token",
        "decoder_embed.weight",
    ] {
        assert!(back.tensors.contains_key(name), "MAE's `{name}`");
    }
    // Each format takes its kind of run.
    let r = miram(&[
        "--quiet",
        "export",
        "--model",
        &s(&pre),
        "--format",
        "timm",
        "--out",
        &s(&file),
    ]);
    assert_one_line_error(
        &r,
        &[
            "is a pre-training run",
            "export --format timm takes fine-tuning runs",
        ],
    );
}
