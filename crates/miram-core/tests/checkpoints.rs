//! Checkpoints: an official-MAE `.pth` reproduces its model fixture, MIRAM files round-trip,
//! a mismatched or truncated file is refused with every name and shape listed, the 3-to-1
//! channel adaptation is timm's, and the optimiser state restores exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::read_checkpoint;
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
