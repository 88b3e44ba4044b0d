//! Checkpoints: an official-MAE `.pth` reproduces its model fixture, MIRAM files round-trip,
//! a mismatched or truncated file is refused with every name and shape listed, the 3-to-1
//! channel adaptation is timm's, the optimiser state restores exactly, and a trained model
//! saved in bf16 or f16 holds its f32 weights rounded by `half` and reads back widened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::{read_checkpoint, resave_as, SaveDtype};
use miram_core::optim::{AdamW, AdamWConfig, Grads};
use miram_core::{Miram, MiramConfig};
use miram_rand::Rng;
use miram_test_support::{max_abs_diff, workspace_root};

fn shared() -> PathBuf {
    workspace_root().join("fixtures")
}

fn images(cfg: &MiramConfig, n: usize, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let s = cfg.img_size;
    Tensor::from_vec(
        r.normal_vec(n * cfg.in_chans * s * s, 0.0, 1.0),
        (n, cfg.in_chans, s, s),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn official_mae_pth_reproduces_its_fixture() {
    let dev = Device::Cpu;
    let fixture = read_checkpoint(&shared().join("model/mae_rgb.safetensors"), &dev).unwrap();
    let cfg = MiramConfig::from_json(&fixture.metadata["config"]).unwrap();
    let (model, report) = Miram::from_checkpoint(
        &shared().join("checkpoints/mae_rgb.pth"),
        &cfg,
        0,
        &dev,
        &|_| false,
    )
    .unwrap();
    assert!(report.is_exact(), "{report}");
    let out = model
        .forward(
            &fixture.tensors["fixture.input.imgs"],
            &fixture.tensors["fixture.input.noise"],
        )
        .unwrap();
    assert!(max_abs_diff(&out.latent, &fixture.tensors["fixture.output.latent"]) < 1e-4);
    assert!(max_abs_diff(&out.preds[0], &fixture.tensors["fixture.output.pred.0"]) < 1e-4);
    let loss = out.loss.to_scalar::<f32>().unwrap();
    let want = fixture.tensors["fixture.output.loss"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    assert!(
        (loss - want).abs() < 1e-4 + 1e-4 * want.abs(),
        "{loss} vs {want}"
    );
}

#[test]
fn three_channel_weights_load_into_a_gray_model_by_summing_channels() {
    let dev = Device::Cpu;
    let fixture = read_checkpoint(&shared().join("model/mae_rgb.safetensors"), &dev).unwrap();
    let rgb_cfg = MiramConfig::from_json(&fixture.metadata["config"]).unwrap();
    let mut gray_cfg = rgb_cfg.clone();
    gray_cfg.in_chans = 1;
    let pth = shared().join("checkpoints/mae_rgb.pth");
    // The decoder predicts 3-channel patches in the file: only the encoder is taken here.
    let (rgb, _) = Miram::from_checkpoint(&pth, &rgb_cfg, 0, &dev, &|_| false).unwrap();
    let err = Miram::from_checkpoint(&pth, &gray_cfg, 0, &dev, &|_| false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("decoders.0.pred.weight"), "{err}");
    let gray_sd = {
        let st = miram_nn::ParamStore::from_tensors(
            miram_core::checkpoint::prepare_for_model(
                read_checkpoint(&pth, &dev).unwrap().tensors,
                1,
            )
            .unwrap(),
            0,
            DType::F32,
            &dev,
        );
        let enc = miram_encoder::VitEncoder::new(&gray_cfg.encoder(), st.root()).unwrap();
        (st, enc)
    };
    let w3 = &rgb.store().state_dict()["patch_embed.proj.weight"];
    let w1 = &gray_sd.0.state_dict()["patch_embed.proj.weight"];
    assert_eq!(
        w1.dims(),
        &[
            w3.dim(0).unwrap(),
            1,
            w3.dim(2).unwrap(),
            w3.dim(3).unwrap()
        ]
    );
    assert!(max_abs_diff(w1, &w3.sum_keepdim(1).unwrap()) < 1e-6);
    // A gray image through the summed weights equals it replicated into three channels.
    let g = images(&gray_cfg, 2, 3);
    let g3 = Tensor::cat(&[&g, &g, &g], 1).unwrap();
    let a = gray_sd.1.forward_features(&g).unwrap();
    let b = rgb.encoder().forward_features(&g3).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4);
}

#[test]
fn miram_checkpoint_round_trips_and_mismatches_are_listed() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let cfg = MiramConfig::micro();
    let model = Miram::init(&cfg, 5, &dev).unwrap();
    let path = dir.path().join("micro.safetensors");
    model.save(&path, &BTreeMap::new()).unwrap();
    let back = Miram::load(&path, &dev).unwrap();
    let imgs = images(&cfg, 2, 1);
    let noise = model.random_noise(2, &mut Rng::new(9)).unwrap();
    let a = model.forward(&imgs, &noise).unwrap();
    let b = back.forward(&imgs, &noise).unwrap();
    assert_eq!(
        a.loss.to_scalar::<f32>().unwrap(),
        b.loss.to_scalar::<f32>().unwrap()
    );

    // Another configuration: every differing name is listed with both shapes.
    let mut other = cfg.clone();
    other.decoder_embed_dim = 32;
    let err = Miram::from_checkpoint(&path, &other, 0, &dev, &|_| false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder_embed.weight (model [32, 128], file [64, 128])"),
        "{err}"
    );
    assert!(err.contains("mask_token"), "{err}");
    // A third scale is missing from the file: an error unless allowed.
    let mut three = cfg.clone();
    three.scales.push(miram_core::ScaleConfig::softmax(
        3,
        miram_losses::LossOn::All,
    ));
    let err = Miram::from_checkpoint(&path, &three, 0, &dev, &|_| false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing: decoders.2."), "{err}");
    let (_, report) =
        Miram::from_checkpoint(&path, &three, 0, &dev, &|n| n.starts_with("decoders.2.")).unwrap();
    assert!(report
        .missing
        .iter()
        .all(|(n, _)| n.starts_with("decoders.2.")));

    // A truncated file is refused with its path.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = Miram::load(&cut, &dev).unwrap_err().to_string();
    assert!(err.contains("cut.safetensors"), "{err}");
}

#[test]
fn optimizer_state_restores_exactly() {
    let dev = Device::Cpu;
    let cfg = MiramConfig::micro();
    let run = |split: Option<usize>| -> Vec<f32> {
        let model = Miram::init(&cfg, 1, &dev).unwrap();
        let mut opt =
            AdamW::new(model.store().trainable(), AdamWConfig::mae_pretrain(1e-3)).unwrap();
        let mut rng = Rng::new(4);
        let mut losses = Vec::new();
        for step in 0..4 {
            if Some(step) == split {
                // Save everything, rebuild from the files, continue.
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("m.safetensors");
                model.save(&p, &BTreeMap::new()).unwrap();
                let (t, m) = opt.state();
                let o = dir.path().join("o.safetensors");
                miram_core::checkpoint::write_safetensors(&o, &t, &m).unwrap();
                let fresh = Miram::load(&p, &dev).unwrap();
                for (n, v) in fresh.store().trainable() {
                    model.store().set(&n, v.as_tensor()).unwrap();
                }
                let ck = read_checkpoint(&o, &dev).unwrap();
                let mut o2 =
                    AdamW::new(model.store().trainable(), AdamWConfig::mae_pretrain(0.0)).unwrap();
                o2.load_state(&ck.tensors, &ck.metadata).unwrap();
                opt = o2;
            }
            let imgs = images(&cfg, 2, 100 + step as u64);
            let out = model
                .forward(&imgs, &model.random_noise(2, &mut rng).unwrap())
                .unwrap();
            losses.push(out.loss.to_scalar::<f32>().unwrap());
            let params = model.store().trainable();
            let g = Grads::from_backward(&out.loss.backward().unwrap(), &params);
            opt.step(&g).unwrap();
        }
        losses
    };
    assert_eq!(run(None), run(Some(2)));
}

#[test]
fn optimizer_state_with_a_wrong_shape_is_refused() {
    let dev = Device::Cpu;
    let model = Miram::init(&MiramConfig::micro(), 0, &dev).unwrap();
    let opt = AdamW::new(model.store().trainable(), AdamWConfig::mae_pretrain(1e-3)).unwrap();
    let (mut t, m) = opt.state();
    t.insert(
        "exp_avg.mask_token".into(),
        Tensor::zeros(3, DType::F32, &dev).unwrap(),
    );
    let mut o2 = AdamW::new(model.store().trainable(), AdamWConfig::mae_pretrain(1e-3)).unwrap();
    let map = t.into_iter().collect();
    let err = o2.load_state(&map, &m).unwrap_err().to_string();
    assert!(err.contains("exp_avg.mask_token [3]"), "{err}");
}

/// `micro` after two AdamW steps (so no weight is at its initial value by construction).
fn trained_micro(dev: &Device) -> Miram {
    let cfg = MiramConfig::micro();
    let model = Miram::init(&cfg, 11, dev).unwrap();
    let mut opt = AdamW::new(model.store().trainable(), AdamWConfig::mae_pretrain(1e-3)).unwrap();
    let mut rng = Rng::new(12);
    for step in 0..2 {
        let imgs = images(&cfg, 2, 200 + step);
        let out = model
            .forward(&imgs, &model.random_noise(2, &mut rng).unwrap())
            .unwrap();
        let params = model.store().trainable();
        opt.step(&Grads::from_backward(
            &out.loss.backward().unwrap(),
            &params,
        ))
        .unwrap();
    }
    model
}

#[test]
fn a_model_saved_in_bf16_or_f16_is_its_f32_weights_rounded_by_half() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = trained_micro(&dev);
    let f32_path = dir.path().join("f32.safetensors");
    model.save(&f32_path, &BTreeMap::new()).unwrap();
    let f32_bytes = std::fs::read(&f32_path).unwrap();
    // f32 leaves the file as written.
    resave_as(&f32_path, SaveDtype::F32).unwrap();
    assert_eq!(std::fs::read(&f32_path).unwrap(), f32_bytes);
    let exact = read_checkpoint(&f32_path, &dev).unwrap();

    type Round = fn(f32) -> (u16, f32);
    let cases: [(SaveDtype, safetensors::Dtype, Round); 2] = [
        (SaveDtype::Bf16, safetensors::Dtype::BF16, |v| {
            let h = half::bf16::from_f32(v);
            (h.to_bits(), h.to_f32())
        }),
        (SaveDtype::F16, safetensors::Dtype::F16, |v| {
            let h = half::f16::from_f32(v);
            (h.to_bits(), h.to_f32())
        }),
    ];
    for (save, tag, round) in cases {
        let path = dir.path().join(format!("{save}.safetensors"));
        std::fs::write(&path, &f32_bytes).unwrap();
        resave_as(&path, save).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The stored tensors: every one tagged with the half type, its bits half's rounding of
        // the f32 weights.
        let raw = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(raw.len(), exact.tensors.len(), "{save}");
        for (name, view) in raw.tensors() {
            assert_eq!(view.dtype(), tag, "{save} {name}");
            let want: Vec<f32> = exact.tensors[&name]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let got: Vec<u16> = view
                .data()
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            let want_bits: Vec<u16> = want.iter().map(|&v| round(v).0).collect();
            assert_eq!(got, want_bits, "{save} {name}");
        }
        // Read back: the f32 file's metadata (format, config), f32 tensors holding exactly the
        // rounded values.
        let back = read_checkpoint(&path, &dev).unwrap();
        assert_eq!(back.metadata, exact.metadata, "{save}");
        for (name, t) in &back.tensors {
            assert_eq!(t.dtype(), DType::F32, "{save} {name}");
            let want: Vec<f32> = exact.tensors[name]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(|v| round(v).1)
                .collect();
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want,
                "{save} {name}"
            );
        }
        // And the model loads from it.
        let loaded = Miram::load(&path, &dev).unwrap();
        let imgs = images(loaded.config(), 2, 7);
        let out = loaded
            .forward(&imgs, &loaded.random_noise(2, &mut Rng::new(8)).unwrap())
            .unwrap();
        assert!(out.loss.to_scalar::<f32>().unwrap().is_finite(), "{save}");
    }
}
