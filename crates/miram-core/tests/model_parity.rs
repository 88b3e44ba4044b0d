//! Parity with the PyTorch reference: every `*.safetensors` in `$MIRAM_MODEL_FIXTURES`
//! (default the repository's `fixtures/model`, written with PyTorch 2.15) is one case. The
//! model is built from the file's `config` metadata and weights, run on its inputs, and
//! compared with its outputs, losses, gradients and one AdamW step, within the tolerances of
//! `fixtures/README.md` ([`miram_core::parity::check_model_fixture`] holds the checks; the
//! GPU check of `miram selftest` runs the same function on `cuda:0`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use candle_core::Device;
use miram_core::parity::check_model_fixture;
use miram_test_support::fixture_files;

#[test]
fn every_fixture_matches_the_reference() {
    let dir = miram_test_support::fixture_dir("MIRAM_MODEL_FIXTURES", "model");
    let files = fixture_files(&dir, "safetensors");
    let mut failures = BTreeMap::new();
    for f in files {
        let report = check_model_fixture(&f, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        println!("{report}");
        if !report.passed() {
            failures.insert(f.display().to_string(), report.failures());
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures differ from the reference:\n{failures:#?}"
    );
}
