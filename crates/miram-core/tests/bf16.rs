//! bf16 mixed precision against the f32 references: every `*.safetensors` in
//! `$MIRAM_MODEL_FIXTURES` (default `fixtures/model`) and `$MIRAM_FINETUNE_FIXTURES` (default
//! `fixtures/finetune`) is one case, run at [`Precision::Bf16`] on the CPU (the composed
//! candle path in bf16; the library allows it there, the CLI does not). The losses and
//! logits must stay within 1e-2 relative of the fixture's f32 values, every gradient must
//! arrive in `f32` at the master weights, finite, pointing the reference's way
//! ([`miram_core::parity::check_model_fixture_at`] and `check_finetune_fixture_at` hold the
//! checks, which `miram selftest` also runs on a GPU); and at [`Precision::F32`] nothing
//! changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::{read_checkpoint, Checkpoint};
use miram_core::optim::Grads;
use miram_core::parity::{self, ParityReport};
use miram_core::Precision;
use miram_test_support::{f32s, fixture_files};

fn fixture(path: &Path) -> Checkpoint {
    read_checkpoint(path, &Device::Cpu).expect("readable fixture")
}

fn tensor(ck: &Checkpoint, k: &str) -> Tensor {
    ck.tensors
        .get(k)
        .unwrap_or_else(|| panic!("{}: no tensor {k}", ck.path.display()))
        .clone()
}

fn run_all(
    var: &str,
    default: &str,
    check: fn(&Path, &Device, Precision) -> miram_core::Result<ParityReport>,
) {
    let dir = miram_test_support::fixture_dir(var, default);
    let mut failures = BTreeMap::new();
    for f in fixture_files(&dir, "safetensors") {
        let report = check(&f, &Device::Cpu, Precision::Bf16)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        println!("bf16 {report}");
        if !report.passed() {
            failures.insert(f.display().to_string(), report.failures());
        }
    }
    assert!(
        failures.is_empty(),
        "bf16 beyond its bounds:\n{failures:#?}"
    );
}

/// Every model fixture at bf16: total and per-scale losses within
/// [`parity::BF16_RTOL`] relative of the f32 reference, gradients f32, finite, cosine >=
/// [`parity::BF16_GRAD_COSINE`] with the reference.
#[test]
fn bf16_pretraining_stays_within_its_bounds_of_the_f32_reference() {
    run_all(
        "MIRAM_MODEL_FIXTURES",
        "model",
        parity::check_model_fixture_at,
    );
}

/// Every fine-tuning fixture at bf16: logits (largest deviation over the largest logit) and
/// loss within [`parity::BF16_RTOL`] relative of the f32 reference, gradients f32, finite,
/// cosine >= [`parity::BF16_GRAD_COSINE`].
#[test]
fn bf16_finetuning_stays_within_its_bounds_of_the_f32_reference() {
    run_all(
        "MIRAM_FINETUNE_FIXTURES",
        "finetune",
        parity::check_finetune_fixture_at,
    );
}

/// Bits of every value of a tensor (exact comparison, NaN included).
fn bits(t: &Tensor) -> Vec<u32> {
    f32s(t).into_iter().map(f32::to_bits).collect()
}

/// At [`Precision::F32`] the forward and backward are those of the default model, bit for
/// bit (nothing is cast), while bf16 computes other numbers (so the precision takes effect).
#[test]
fn f32_precision_is_the_default_model_bit_for_bit() {
    let dir = miram_test_support::fixture_dir("MIRAM_MODEL_FIXTURES", "model");
    for f in fixture_files(&dir, "safetensors") {
        let ck = fixture(&f);
        let (imgs, noise) = (
            tensor(&ck, "fixture.input.imgs"),
            tensor(&ck, "fixture.input.noise"),
        );
        let run = |p: Option<Precision>| {
            let (model, store) = parity::fixture_model(&ck, &Device::Cpu).expect("model builds");
            let model = match p {
                Some(p) => model.with_precision(p),
                None => model,
            };
            let out = model.forward(&imgs, &noise).expect("forward");
            let params = store.trainable();
            let grads = Grads::from_backward(&out.loss.backward().expect("backward"), &params);
            let g: Vec<Vec<u32>> = params
                .iter()
                .map(|(n, _)| bits(grads.get(n).expect("gradient")))
                .collect();
            (bits(&out.loss), bits(&out.latent), g, out.latent.dtype())
        };
        let default = run(None);
        let f32 = run(Some(Precision::F32));
        let bf16 = run(Some(Precision::Bf16));
        assert_eq!(
            f32,
            default,
            "{}: f32 differs from the default",
            f.display()
        );
        assert_eq!(bf16.3, DType::F32, "{}: bf16 latent", f.display());
        assert_ne!(bf16.0, default.0, "{}: bf16 gave the f32 loss", f.display());
    }
}
