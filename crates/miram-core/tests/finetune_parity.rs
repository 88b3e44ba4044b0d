//! Parity of the fine-tuning model with MAE's `models_vit` (global pooling, `fc_norm`,
//! `head`) computed with PyTorch 2.15: every `*.safetensors` in `$MIRAM_FINETUNE_FIXTURES`
//! (default the repository's `fixtures/finetune`) gives the logits, the
//! loss (class-weighted cross-entropy, or BCE with logits for multi-label) and every gradient,
//! within the tolerances of `fixtures/README.md`; and an official MAE checkpoint loads
//! into the fine-tuning model with exactly `fc_norm.*` and `head.*` missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::read_checkpoint;
use miram_core::encoder::{ClassifierConfig, EncoderConfig};
use miram_core::losses::{bce_with_logits, cross_entropy};
use miram_core::nn::ParamStore;
use miram_core::optim::Grads;
use miram_core::train::finetune::{build_classifier, FinetuneMode};
use miram_test_support::{f32s, fixture_files};

fn fixture_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_FINETUNE_FIXTURES", "finetune")
}

fn rel_max(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let (g, w) = (f32s(got), f32s(want));
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    g.iter().zip(&w).fold(0f32, |m, (a, b)| {
        if (a - b).is_nan() {
            f32::INFINITY
        } else {
            m.max((a - b).abs())
        }
    }) / scale
}

fn close(got: &Tensor, want: &Tensor) -> bool {
    f32s(got)
        .iter()
        .zip(f32s(want))
        .all(|(a, b)| (a - b).abs() <= 1e-4 + 1e-4 * b.abs())
}

#[derive(serde::Deserialize)]
struct FixtureConfig {
    img_size: usize,
    patch_size: usize,
    in_chans: usize,
    embed_dim: usize,
    depth: usize,
    num_heads: usize,
    mlp_ratio: f64,
    num_classes: usize,
    task: String,
    class_weights: Option<Vec<f32>>,
}

fn run_case(path: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    let dev = Device::Cpu;
    let ck = read_checkpoint(path, &dev).unwrap();
    let fc: FixtureConfig = serde_json::from_str(&ck.metadata["config"]).unwrap();
    let cfg = ClassifierConfig {
        encoder: EncoderConfig {
            img_size: fc.img_size,
            patch_size: fc.patch_size,
            in_chans: fc.in_chans,
            embed_dim: fc.embed_dim,
            depth: fc.depth,
            num_heads: fc.num_heads,
            mlp_ratio: fc.mlp_ratio,
        },
        num_classes: fc.num_classes,
        drop_path: 0.0,
    };
    let weights = ck
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("fixture.") && k.as_str() != "pos_embed")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let store = ParamStore::from_tensors(weights, 0, DType::F32, &dev);
    let model = miram_core::encoder::VitClassifier::new(&cfg, store.root()).unwrap();
    let report = store.load_report();
    if !report.is_exact() {
        errs.push(format!("load: {report}"));
    }
    let fx = |k: &str| {
        ck.tensors
            .get(k)
            .unwrap_or_else(|| panic!("{}: no {k}", path.display()))
            .clone()
    };
    let logits = model.forward(&fx("fixture.input.imgs")).unwrap();
    if !close(&logits, &fx("fixture.output.logits")) {
        errs.push(format!(
            "logits differ: {:?} vs {:?}",
            f32s(&logits),
            f32s(&fx("fixture.output.logits"))
        ));
    }
    let labels = fx("fixture.input.labels");
    let loss = match fc.task.as_str() {
        "multiclass" => cross_entropy(
            &logits,
            &labels.to_dtype(DType::U32).unwrap(),
            fc.class_weights.as_deref(),
        )
        .unwrap(),
        "multilabel" => bce_with_logits(&logits, &labels).unwrap(),
        t => panic!("{}: unknown task {t}", path.display()),
    };
    if !close(&loss.reshape(1).unwrap(), &fx("fixture.output.loss")) {
        errs.push(format!(
            "loss {} vs {:?}",
            loss.to_scalar::<f32>().unwrap(),
            f32s(&fx("fixture.output.loss"))
        ));
    }
    let params = store.trainable();
    let grads = Grads::from_backward(&loss.backward().unwrap(), &params);
    let names: Vec<String> = ck
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("fixture.grad.").map(str::to_string))
        .collect();
    let ours: std::collections::BTreeSet<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let theirs: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    if ours != theirs {
        errs.push(format!(
            "trainable parameters differ: ours {ours:?}, reference {theirs:?}"
        ));
    }
    for n in &names {
        match grads.get(n) {
            Some(g) => {
                let r = rel_max(g, &fx(&format!("fixture.grad.{n}")));
                if r > 5e-4 {
                    errs.push(format!("grad {n}: relative deviation {r:.2e}"));
                }
            }
            None => errs.push(format!("grad {n}: none")),
        }
    }
    errs
}

#[test]
fn every_finetune_fixture_matches_the_reference() {
    let dir = fixture_dir();
    let files = fixture_files(&dir, "safetensors");
    let mut failures = BTreeMap::new();
    for f in files {
        let errs = run_case(&f);
        println!(
            "{}: {}",
            f.display(),
            if errs.is_empty() { "ok" } else { "FAILED" }
        );
        if !errs.is_empty() {
            failures.insert(f.display().to_string(), errs);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn mae_checkpoint_leaves_exactly_the_head_missing() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let fixture = read_checkpoint(&shared.join("model/mae_rgb.safetensors"), &Device::Cpu).unwrap();
    let mc = miram_core::MiramConfig::from_json(&fixture.metadata["config"]).unwrap();
    let cfg = ClassifierConfig {
        encoder: mc.encoder(),
        num_classes: 2,
        drop_path: 0.1,
    };
    let (_, _, report) = build_classifier(
        &cfg,
        Some(&shared.join("checkpoints/mae_rgb.pth")),
        FinetuneMode::Full,
        0,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        report.missing_names(),
        vec!["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    );
    assert!(
        report.unexpected.is_empty() && report.mismatched.is_empty(),
        "{report}"
    );
    // Another encoder size is refused with the names and shapes.
    let mut other = cfg.clone();
    other.encoder.embed_dim = 32;
    other.encoder.num_heads = 2;
    let err = build_classifier(
        &other,
        Some(&shared.join("checkpoints/mae_rgb.pth")),
        FinetuneMode::Full,
        0,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cls_token (model [1, 1, 32], file [1, 1, 48])"),
        "{err}"
    );
}
