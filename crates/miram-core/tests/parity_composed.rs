//! The parity checks of `model_parity.rs` and `finetune_parity.rs` through the composed
//! candle forms: the path that every device other than the CPU takes (a GPU runs exactly
//! these ops), checked here on the CPU with the fused kernels turned off for this test
//! process ([`miram_core::nn::ops::set_fused_cpu_kernels`]). Every file of
//! `$MIRAM_MODEL_FIXTURES` and `$MIRAM_FINETUNE_FIXTURES` is a case, within the same
//! tolerances.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use candle_core::Device;
use miram_core::parity::{check_finetune_fixture, check_model_fixture, ParityReport};
use miram_test_support::{fixture_dir, fixture_files};

fn every_case(
    var: &str,
    default: &str,
    check: fn(&Path, &Device) -> miram_core::Result<ParityReport>,
) {
    miram_core::nn::ops::set_fused_cpu_kernels(false);
    let dir = fixture_dir(var, default);
    let files = fixture_files(&dir, "safetensors");
    let mut failures = Vec::new();
    for f in files {
        let report = check(&f, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        println!("composed {report}");
        if !report.passed() {
            failures.push((f.display().to_string(), report.failures()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn model_fixtures_match_through_the_composed_path() {
    every_case("MIRAM_MODEL_FIXTURES", "model", check_model_fixture);
}

#[test]
fn finetune_fixtures_match_through_the_composed_path() {
    every_case(
        "MIRAM_FINETUNE_FIXTURES",
        "finetune",
        check_finetune_fixture,
    );
}
