//! Parity of the fine-tuning model with MAE's `models_vit` (global pooling, `fc_norm`,
//! `head`) computed with PyTorch 2.15: every `*.safetensors` in `$MIRAM_FINETUNE_FIXTURES`
//! (default the repository's `fixtures/finetune`) gives the logits, the
//! loss (class-weighted cross-entropy, or BCE with logits for multi-label) and every gradient,
//! within the tolerances of `fixtures/README.md` ([`miram_core::parity::check_finetune_fixture`]
//! holds the checks); and an official MAE checkpoint loads
//! into the fine-tuning model with exactly `fc_norm.*` and `head.*` missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use miram_core::checkpoint::read_checkpoint;
use miram_core::encoder::ClassifierConfig;
use miram_core::parity::check_finetune_fixture;
use miram_core::train::finetune::{build_classifier, FinetuneMode};
use miram_test_support::fixture_files;

fn fixture_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_FINETUNE_FIXTURES", "finetune")
}

#[test]
fn every_finetune_fixture_matches_the_reference() {
    let dir = fixture_dir();
    let files = fixture_files(&dir, "safetensors");
    let mut failures = BTreeMap::new();
    for f in files {
        let report = check_finetune_fixture(&f, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        println!("{report}");
        if !report.passed() {
            failures.insert(f.display().to_string(), report.failures());
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
