//! `bench::bench_step` in its three modes (`benches/torch/bench_step.py --mode`) on a tiny
//! configuration: each report names its mode and times the model of that mode (every decoder,
//! the 1x decoder alone, or the classifier without masking), and its matrix-product figures
//! are consistent: a share of the step in (0, 1], positive rates, the rate over the step no
//! higher than the products' own, and FLOPs that depend on the shapes only (exactly
//! proportional to the batch, never below the Linear layers' products).
//!
//! One test function: the product counters are process-wide, so the timed runs must not
//! overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::Device;
use miram_core::bench::{bench_step, BenchMode, BenchReport, BenchSpec, FINETUNE_CLASSES};
use miram_core::losses::LossOn;
use miram_core::{MiramConfig, ScaleConfig};

/// 16 px, patch 4 (16 patches), encoder 32 x 2 blocks, two softmax decoders (1x, 2x).
fn cfg() -> MiramConfig {
    MiramConfig {
        img_size: 16,
        patch_size: 4,
        in_chans: 1,
        embed_dim: 32,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        decoder_embed_dim: 16,
        decoder_depth: 1,
        decoder_num_heads: 2,
        mask_ratio: 0.75,
        norm_pix_loss: true,
        scales: vec![
            ScaleConfig::softmax(1, LossOn::Masked),
            ScaleConfig::softmax(2, LossOn::All),
        ],
    }
}

fn run(mode: BenchMode, batch: usize) -> BenchReport {
    let cfg = cfg();
    let spec = BenchSpec {
        seed: 7,
        ..BenchSpec::new("custom", &cfg, batch, 2)
    };
    bench_step(&spec, mode, &Device::Cpu).unwrap_or_else(|e| panic!("{mode} at batch {batch}: {e}"))
}

/// The figures every CPU report must have, consistent with each other.
fn check_figures(r: &BenchReport) {
    let what = format!("{} batch {}", r.mode, r.batch);
    let share = r.matmul_share.unwrap_or_else(|| panic!("{what}: no share"));
    assert!(share > 0.0 && share <= 1.0, "{what}: share {share}");
    let mm = r.matmul_gflops.unwrap_or_else(|| panic!("{what}: no rate"));
    let step = r
        .step_gflops
        .unwrap_or_else(|| panic!("{what}: no step rate"));
    let per = r
        .gflop_per_step
        .unwrap_or_else(|| panic!("{what}: no FLOPs"));
    assert!(mm > 0.0 && step > 0.0 && per > 0.0, "{what}: {r:?}");
    assert!(
        step <= mm * (1.0 + 1e-9),
        "{what}: step {step} > products {mm}"
    );
    // share = step rate / product rate (both are the same FLOPs).
    assert!((share - step / mm).abs() <= 1e-9 * share.max(1.0), "{what}");
    assert!(r.step_ms_median > 0.0, "{what}");
    // The yardstick is measured on every CPU that has AVX2 and FMA (the probe's).
    let probe = miram_test_support::cpu_has_avx2_fma();
    assert_eq!(r.fma_peak_gflops.is_some(), probe, "{what}: {r:?}");
    assert!(r.fma_peak_gflops.is_none_or(|p| p > 0.0), "{what}");
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["mode"], r.mode.name(), "{what}");
}

/// FLOPs of the Linear layers of the encoder blocks (qkv, proj, fc1, fc2) over `tokens`
/// tokens: forward, input gradient and weight gradient, 2 FLOPs per multiply-add.
fn encoder_linear_flops(c: &MiramConfig, tokens: usize) -> f64 {
    let d = c.embed_dim as f64;
    let h = (c.mlp_ratio * d).ceil();
    3.0 * 2.0 * tokens as f64 * c.depth as f64 * (4.0 * d * d + 2.0 * d * h)
}

#[test]
fn every_mode_times_its_model_with_consistent_matrix_product_figures() {
    let c = cfg();
    let l = c.num_patches();
    let mut per_step = Vec::new();
    for mode in BenchMode::ALL {
        let one = run(mode, 1);
        let two = run(mode, 2);
        for r in [&one, &two] {
            assert_eq!(r.mode, mode);
            check_figures(r);
        }
        // The products depend on the shapes only: twice the images, twice the FLOPs.
        let (f1, f2) = (
            one.gflop_per_step.unwrap_or_default(),
            two.gflop_per_step.unwrap_or_default(),
        );
        assert!((f2 - 2.0 * f1).abs() <= 1e-9 * f2, "{mode}: {f1} then {f2}");
        match mode {
            BenchMode::Pretrain => {
                assert_eq!(one.config, c);
                assert!(one.masked_encoder_ms_median.is_some_and(|m| m > 0.0));
                assert_eq!(one.classes, None);
                // The encoder alone runs on the kept quarter of the patches (+ class token).
                let kept = (l as f64 * (1.0 - c.mask_ratio)) as usize + 1;
                assert!(f1 * 1e9 >= encoder_linear_flops(&c, kept));
            }
            BenchMode::SingleScale => {
                assert_eq!(one.config.scales, c.scales[..1].to_vec());
                assert!(one.masked_encoder_ms_median.is_some_and(|m| m > 0.0));
                assert_eq!(one.classes, None);
            }
            BenchMode::Finetune => {
                // No masking: the masked-encoder figure is null, as in bench_step.py.
                assert_eq!(one.masked_encoder_ms_median, None);
                let json = serde_json::to_value(&one).unwrap();
                assert!(json["masked_encoder_ms_median"].is_null());
                assert_eq!(one.classes, Some(FINETUNE_CLASSES));
                // Every patch and the class token go through the encoder.
                assert!(f1 * 1e9 >= encoder_linear_flops(&c, l + 1));
            }
        }
        per_step.push((mode, f1, one.params));
    }
    let (_, pre, pre_params) = per_step[0];
    let (_, single, single_params) = per_step[1];
    let (_, fine, fine_params) = per_step[2];
    // The 2x decoder adds products and parameters; the classifier has no decoder at all.
    assert!(
        pre > single,
        "pretrain {pre} GFLOP <= single-scale {single}"
    );
    assert!(pre_params > single_params && single_params > fine_params);
    assert!(fine > 0.0 && single > 0.0);
}
