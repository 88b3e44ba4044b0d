//! The contract of every preset (timm's `test_models.py` for MIRAM): the trainable parameter
//! count equals the PyTorch reference's (the same configuration built in PyTorch), a forward
//! pass at a small batch gives the documented shapes and finite values, and every trainable
//! parameter receives a non-zero gradient. The `paper*` presets (137M parameters) run their
//! forward and backward only when `MIRAM_SLOW_TESTS=1`; their parameter counts always.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor};
use miram_core::optim::Grads;
use miram_core::{Miram, MiramConfig, PRESETS};
use miram_rand::Rng;

/// Trainable parameters of each preset in the PyTorch reference.
const REFERENCE_COUNTS: [(&str, usize); 4] = [
    ("paper", 137_269_760),
    ("small", 27_942_912),
    ("tiny", 6_272_768),
    ("micro", 1_018_624),
];

#[test]
fn parameter_counts_equal_the_reference() {
    for (name, want) in REFERENCE_COUNTS {
        let cfg = MiramConfig::preset(name).unwrap();
        let model = Miram::init(&cfg, 0, &Device::Cpu).unwrap();
        assert_eq!(model.num_parameters(), want, "{name}");
    }
}

fn contract(name: &str, batch: usize) {
    let cfg = MiramConfig::preset(name).unwrap();
    let dev = Device::Cpu;
    let model = Miram::init(&cfg, 1, &dev).unwrap();
    let mut rng = Rng::new(2);
    let (c, s) = (cfg.in_chans, cfg.img_size);
    let imgs = Tensor::from_vec(
        rng.normal_vec(batch * c * s * s, 0.0, 1.0),
        (batch, c, s, s),
        &dev,
    )
    .unwrap();
    let out = model
        .forward(&imgs, &model.random_noise(batch, &mut rng).unwrap())
        .unwrap();
    let l = cfg.num_patches();
    let keep = miram_masking::num_keep(l, cfg.mask_ratio);
    assert_eq!(
        out.latent.dims(),
        &[batch, 1 + keep, cfg.embed_dim],
        "{name} latent"
    );
    assert_eq!(out.masking.mask.dims(), &[batch, l]);
    for (sc, p) in cfg.scales.iter().zip(&out.preds) {
        let want = [
            batch,
            l * sc.scale * sc.scale,
            cfg.patch_size * cfg.patch_size * c,
        ];
        assert_eq!(p.dims(), &want, "{name} pred at scale {}", sc.scale);
        let v = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite prediction"
        );
    }
    let loss = out.loss.to_scalar::<f32>().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{name}: loss {loss}");
    let params = model.store().trainable();
    let grads = Grads::from_backward(&out.loss.backward().unwrap(), &params);
    let mut dead = Vec::new();
    for (n, _) in &params {
        let ok = grads
            .get(n)
            .map(|g| {
                g.to_dtype(DType::F64)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            })
            .is_some_and(|s| s > 0.0 && s.is_finite());
        if !ok {
            dead.push(n.clone());
        }
    }
    assert!(
        dead.is_empty(),
        "{name}: parameters without a gradient: {dead:?}"
    );
}

#[test]
fn micro_tiny_small_contract() {
    for name in ["micro", "tiny", "small"] {
        contract(name, 2);
    }
}

#[test]
fn paper_presets_contract() {
    for name in PRESETS
        .iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("paper"))
    {
        let cfg = MiramConfig::preset(name).unwrap();
        let model = Miram::init(&cfg, 0, &Device::Cpu).unwrap();
        assert!(model.num_parameters() > 100_000_000, "{name}");
        if std::env::var("MIRAM_SLOW_TESTS").is_ok_and(|v| v == "1") {
            contract(name, 1);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let cfg = MiramConfig::micro();
    let a = Miram::init(&cfg, 3, &Device::Cpu)
        .unwrap()
        .store()
        .state_dict();
    let b = Miram::init(&cfg, 3, &Device::Cpu)
        .unwrap()
        .store()
        .state_dict();
    let c = Miram::init(&cfg, 4, &Device::Cpu)
        .unwrap()
        .store()
        .state_dict();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert_eq!(flat(v), flat(&b[k]), "{k}");
    }
    assert_ne!(
        flat(&a["blocks.0.attn.qkv.weight"]),
        flat(&c["blocks.0.attn.qkv.weight"])
    );
    // MAE's initialisation: LayerNorm 1 / 0, biases 0, tokens with std about 0.02.
    assert!(flat(&a["norm.weight"]).iter().all(|&v| v == 1.0));
    assert!(flat(&a["blocks.0.attn.qkv.bias"]).iter().all(|&v| v == 0.0));
    let m = flat(&a["mask_token"]);
    let sd = (m.iter().map(|v| v * v).sum::<f32>() / m.len() as f32).sqrt();
    assert!((0.01..0.03).contains(&sd), "{sd}");
}

#[test]
fn the_model_is_generic_over_the_dtype() {
    // The same weights in f64 (composed candle ops everywhere) and f32 (fused CPU kernels).
    let cfg = MiramConfig::micro();
    let a = Miram::init(&cfg, 5, &Device::Cpu).unwrap();
    let store64 = miram_core::nn::ParamStore::from_tensors(
        a.store().state_dict().into_iter().collect(),
        5,
        DType::F64,
        &Device::Cpu,
    );
    let b = Miram::new(&cfg, store64.root()).unwrap();
    let mut rng = Rng::new(6);
    let imgs = Tensor::from_vec(
        rng.normal_vec(2 * 64 * 64, 0.0, 1.0),
        (2, 1, 64, 64),
        &Device::Cpu,
    )
    .unwrap();
    let noise = a.random_noise(2, &mut rng).unwrap();
    let la = a
        .forward(&imgs, &noise)
        .unwrap()
        .loss
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let out = b
        .forward(&imgs.to_dtype(DType::F64).unwrap(), &noise)
        .unwrap();
    assert_eq!(out.loss.dtype(), DType::F64);
    let lb = out.loss.to_scalar::<f64>().unwrap();
    assert!((la - lb).abs() < 1e-4 * lb.abs(), "{la} vs {lb}");
    out.loss.backward().unwrap();
}

/// The rows of the README's preset table (`| preset | what it is |`): `(name, description)`.
fn readme_preset_rows() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let mut lines = readme.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| *l == "| preset | what it is |")
        .expect("README.md has no `| preset | what it is |` table");
    lines
        .skip(1) // the |---|---| separator
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 2, "README preset row `{l}`");
            (cells[0].trim_matches('`').to_string(), cells[1].to_string())
        })
        .collect()
}

#[test]
fn the_readme_preset_table_is_the_code_table() {
    let code: Vec<(String, String)> = PRESETS
        .iter()
        .map(|p| (p.name.to_string(), p.description.to_string()))
        .collect();
    assert_eq!(readme_preset_rows(), code);
}
