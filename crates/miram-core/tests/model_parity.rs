//! Parity with the PyTorch reference: every `*.safetensors` in `$MIRAM_MODEL_FIXTURES`
//! (default the repository's `fixtures/model`, written with PyTorch 2.15) is one case. The model is built from the file's
//! `config` metadata and weights, run on its inputs, and compared with its outputs, losses,
//! gradients and one AdamW step, within the tolerances of `fixtures/README.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::{prepare_for_model, read_checkpoint};
use miram_core::optim::{AdamW, AdamWConfig, Grads};
use miram_core::{Miram, MiramConfig};
use miram_nn::ParamStore;
use miram_test_support::{f32s, fixture_files};

fn fixtures() -> Vec<PathBuf> {
    let dir = miram_test_support::fixture_dir("MIRAM_MODEL_FIXTURES", "model");
    fixture_files(&dir, "safetensors")
}

/// Element-wise `|a - b| <= atol + rtol |b|`.
fn check_close(
    what: &str,
    got: &Tensor,
    want: &Tensor,
    atol: f32,
    rtol: f32,
    errs: &mut Vec<String>,
) {
    if got.dims() != want.dims() {
        errs.push(format!(
            "{what}: shape {:?}, expected {:?}",
            got.dims(),
            want.dims()
        ));
        return;
    }
    let (g, w) = (f32s(got), f32s(want));
    let mut worst = (0.0f32, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        let excess = if excess.is_nan() || !a.is_finite() {
            f32::INFINITY
        } else {
            excess
        };
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    if worst.0 > 0.0 {
        let i = worst.1;
        errs.push(format!(
            "{what}: element {i} is {} expected {} (beyond {atol} + {rtol} rel)",
            g[i], w[i]
        ));
    }
}

/// `max |a - b| <= tol * max |b|`.
fn check_rel_max(what: &str, got: &Tensor, want: &Tensor, tol: f32, errs: &mut Vec<String>) {
    if got.dims() != want.dims() {
        errs.push(format!(
            "{what}: shape {:?}, expected {:?}",
            got.dims(),
            want.dims()
        ));
        return;
    }
    let (g, w) = (f32s(got), f32s(want));
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = g.iter().zip(&w).fold(0f32, |m, (a, b)| {
        let d = (a - b).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    });
    if diff > tol * scale {
        errs.push(format!(
            "{what}: max deviation {diff:.3e} > {tol:.0e} x {scale:.3e}"
        ));
    }
}

fn run_case(path: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    let dev = Device::Cpu;
    let ckpt = read_checkpoint(path, &dev).expect("readable fixture");
    let meta = &ckpt.metadata;
    let cfg = MiramConfig::from_json(&meta["config"]).expect("config metadata");
    let adamw: HashMap<String, f64> = serde_json::from_str(&meta["adamw"]).expect("adamw metadata");
    let mut trainable: Vec<String> =
        serde_json::from_str(&meta["trainable"]).expect("trainable metadata");
    trainable.sort();
    let fx = |k: &str| -> Tensor {
        ckpt.tensors
            .get(k)
            .unwrap_or_else(|| panic!("{}: no tensor {k}", path.display()))
            .clone()
    };
    let weights: HashMap<String, Tensor> = ckpt
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("fixture."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    // Build from the stored weights; the sin-cos tables are computed, and compared.
    let store = ParamStore::from_tensors(
        prepare_for_model(weights.clone(), cfg.in_chans).unwrap(),
        0,
        DType::F32,
        &dev,
    );
    let model = Miram::new(&cfg, store.root()).expect("model builds");
    let report = store.load_report();
    if !report.is_exact() {
        errs.push(format!("load: {report}"));
    }
    check_close(
        "pos_embed",
        model.encoder().pos_embed(),
        &fx("pos_embed"),
        1e-6,
        0.0,
        &mut errs,
    );
    for (i, d) in model.decoder().decoders().iter().enumerate() {
        check_close(
            &format!("decoders.{i}.pos_embed"),
            d.pos_embed(),
            &fx(&format!("decoders.{i}.pos_embed")),
            1e-6,
            0.0,
            &mut errs,
        );
    }
    let ours: Vec<String> = store.trainable().into_iter().map(|(n, _)| n).collect();
    if ours != trainable {
        errs.push(format!(
            "trainable parameters differ: ours {ours:?}, reference {trainable:?}"
        ));
    }
    for (name, _) in store.buffers() {
        if !weights.contains_key(&name) {
            errs.push(format!("buffer {name} is not in the reference"));
        }
    }

    // Forward.
    let out = model
        .forward(&fx("fixture.input.imgs"), &fx("fixture.input.noise"))
        .expect("forward");
    check_close(
        "latent",
        &out.latent,
        &fx("fixture.output.latent"),
        1e-4,
        1e-4,
        &mut errs,
    );
    check_close(
        "mask",
        &out.masking.mask,
        &fx("fixture.output.mask"),
        0.0,
        0.0,
        &mut errs,
    );
    let ids: Vec<i64> = out
        .masking
        .ids_restore
        .to_dtype(DType::I64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want_ids: Vec<i64> = fx("fixture.output.ids_restore")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    if ids != want_ids {
        errs.push(format!("ids_restore: {ids:?}, expected {want_ids:?}"));
    }
    for (i, (p, l)) in out.preds.iter().zip(&out.losses).enumerate() {
        check_close(
            &format!("pred.{i}"),
            p,
            &fx(&format!("fixture.output.pred.{i}")),
            1e-4,
            1e-4,
            &mut errs,
        );
        check_close(
            &format!("loss.{i}"),
            &l.reshape(1).unwrap(),
            &fx(&format!("fixture.output.loss.{i}")),
            1e-4,
            1e-4,
            &mut errs,
        );
    }
    check_close(
        "loss",
        &out.loss.reshape(1).unwrap(),
        &fx("fixture.output.loss"),
        1e-4,
        1e-4,
        &mut errs,
    );

    // Backward: every trainable parameter's gradient.
    let params = store.trainable();
    let grads = Grads::from_backward(&out.loss.backward().expect("backward"), &params);
    for (name, _) in &params {
        match grads.get(name) {
            Some(g) => check_rel_max(
                &format!("grad {name}"),
                g,
                &fx(&format!("fixture.grad.{name}")),
                5e-4,
                &mut errs,
            ),
            None => errs.push(format!("grad {name}: no gradient")),
        }
    }

    // One AdamW step from the stored weights on the stored gradients.
    let mut stored = Grads::new();
    for (name, _) in &params {
        stored.insert(name.clone(), fx(&format!("fixture.grad.{name}")));
    }
    let cfg_opt = AdamWConfig {
        lr: adamw["lr"],
        beta1: adamw["beta1"],
        beta2: adamw["beta2"],
        eps: adamw["eps"],
        weight_decay: adamw["weight_decay"],
    };
    let mut opt = AdamW::new(params.clone(), cfg_opt).expect("optimizer");
    opt.step(&stored).expect("step");
    for (name, var) in &params {
        check_rel_max(
            &format!("adamw {name}"),
            var.as_tensor(),
            &fx(&format!("fixture.adamw.{name}")),
            1e-5,
            &mut errs,
        );
    }
    errs
}

#[test]
fn every_fixture_matches_the_reference() {
    let mut failures = BTreeMap::new();
    for f in fixtures() {
        let errs = run_case(&f);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name}: {}",
            if errs.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problems", errs.len())
            }
        );
        if !errs.is_empty() {
            failures.insert(name, errs);
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures differ from the reference:\n{failures:#?}"
    );
}
