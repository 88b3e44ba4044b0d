//! The encoder crate's own contract on tiny configurations: output shapes of the masked and
//! full forwards and of the classifier, the masked forward with nothing masked equal to the
//! full forward gathered in shuffle order, the classifier's pooling (LayerNorm of the mean
//! of the patch tokens, computed here by hand), a single-patch image, and the structured
//! errors of wrong configurations and inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor};
use miram_encoder::{ClassifierConfig, EncoderConfig, Error, VitClassifier, VitEncoder};
use miram_masking::{gather_tokens, masking_from_noise, num_keep, random_noise};
use miram_nn::ParamStore;
use miram_rand::Rng;
use miram_test_support::max_abs_diff;

fn tiny(img_size: usize, patch_size: usize) -> EncoderConfig {
    EncoderConfig {
        img_size,
        patch_size,
        in_chans: 1,
        embed_dim: 16,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
    }
}

fn images(n: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let v: Vec<f32> = (0..n * size * size)
        .map(|_| rng.uniform_f32() - 0.5)
        .collect();
    Tensor::from_vec(v, (n, 1, size, size), &Device::Cpu).unwrap()
}

#[test]
fn shapes_of_every_forward() {
    let cfg = tiny(16, 4); // 4x4 grid, 16 patches
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let enc = VitEncoder::new(&cfg, store.root()).unwrap();
    let imgs = images(3, 16, 2);
    let noise = random_noise(3, 16, &mut Rng::new(3), &Device::Cpu).unwrap();
    let (latent, masking) = enc.forward_masked(&imgs, &noise, 0.75).unwrap();
    assert_eq!(latent.dims(), &[3, 1 + 4, 16]);
    assert_eq!(masking.ids_restore.dims(), &[3, 16]);
    assert_eq!(
        enc.forward_features(&imgs).unwrap().dims(),
        &[3, 1 + 16, 16]
    );

    let ccfg = ClassifierConfig {
        encoder: cfg,
        num_classes: 5,
        drop_path: 0.1,
    };
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let clf = VitClassifier::new(&ccfg, store.root()).unwrap();
    assert_eq!(clf.forward(&imgs).unwrap().dims(), &[3, 5]);
    let train = clf.forward_train(&imgs, &mut Rng::new(4)).unwrap();
    assert_eq!(train.dims(), &[3, 5]);
}

/// With mask ratio 0 every token is kept in shuffle order; attention does not care about
/// order (the positions are in the tokens), so the latent is the full forward's patch
/// tokens gathered by `ids_keep`, behind the same cls token.
#[test]
fn nothing_masked_is_the_full_forward_in_shuffle_order() {
    let cfg = tiny(16, 4);
    let store = ParamStore::new(5, DType::F32, &Device::Cpu);
    let enc = VitEncoder::new(&cfg, store.root()).unwrap();
    let imgs = images(2, 16, 6);
    let noise = random_noise(2, 16, &mut Rng::new(7), &Device::Cpu).unwrap();
    let (latent, masking) = enc.forward_masked(&imgs, &noise, 0.0).unwrap();
    assert_eq!(masking.keep, 16);
    assert_eq!(
        masking.mask.sum_all().unwrap().to_scalar::<f32>().unwrap(),
        0.0
    );
    let full = enc.forward_features(&imgs).unwrap(); // [2, 17, 16]
    let patches = full.narrow(1, 1, 16).unwrap();
    let shuffled = gather_tokens(&patches, &masking.ids_keep).unwrap();
    assert!(max_abs_diff(&latent.narrow(1, 1, 16).unwrap(), &shuffled) < 1e-5);
    let cls_diff = max_abs_diff(
        &latent.narrow(1, 0, 1).unwrap(),
        &full.narrow(1, 0, 1).unwrap(),
    );
    assert!(cls_diff < 1e-5, "{cls_diff}");
}

/// `features` is `fc_norm(mean of the patch tokens)` (the cls token left out); `fc_norm` is
/// initialised to weight 1 and bias 0, so it is `(x - mean) / sqrt(var + 1e-6)` with the
/// biased variance, computed here by hand from the encoder's tokens.
#[test]
fn classifier_pools_the_mean_of_the_patch_tokens() {
    let ccfg = ClassifierConfig {
        encoder: tiny(8, 4), // 2x2 grid
        num_classes: 2,
        drop_path: 0.0,
    };
    let store = ParamStore::new(8, DType::F32, &Device::Cpu);
    let clf = VitClassifier::new(&ccfg, store.root()).unwrap();
    let imgs = images(2, 8, 9);
    let tokens = clf.encoder().forward_features(&imgs).unwrap(); // [2, 5, 16]
    let tokens = tokens.to_vec3::<f32>().unwrap();
    let got = clf.features(&imgs, None).unwrap().to_vec2::<f32>().unwrap();
    for (sample, row) in tokens.iter().zip(&got) {
        let d = row.len();
        let pooled: Vec<f64> = (0..d)
            .map(|j| sample[1..].iter().map(|t| t[j] as f64).sum::<f64>() / 4.0)
            .collect();
        let mean = pooled.iter().sum::<f64>() / d as f64;
        let var = pooled.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for (g, p) in row.iter().zip(&pooled) {
            let want = (p - mean) / (var + 1e-6).sqrt();
            assert!((*g as f64 - want).abs() < 1e-4, "{g} vs {want}");
        }
    }
}

#[test]
fn single_patch_image() {
    let cfg = tiny(4, 4); // one patch
    let store = ParamStore::new(10, DType::F32, &Device::Cpu);
    let enc = VitEncoder::new(&cfg, store.root()).unwrap();
    let imgs = images(2, 4, 11);
    let noise = random_noise(2, 1, &mut Rng::new(12), &Device::Cpu).unwrap();
    let (latent, _) = enc.forward_masked(&imgs, &noise, 0.0).unwrap();
    assert_eq!(latent.dims(), &[2, 2, 16]);
    // int(1 * (1 - 0.75)) = 0: only the cls token is encoded.
    assert_eq!(num_keep(1, 0.75), 0);
    let masking = masking_from_noise(&noise, 0).unwrap();
    let latent = enc.forward_with_masking(&imgs, &masking).unwrap();
    assert_eq!(latent.dims(), &[2, 1, 16]);
}

#[test]
fn wrong_configurations_name_the_field() {
    let mut cfg = tiny(16, 4);
    cfg.embed_dim = 18;
    match cfg.validate() {
        Err(Error::NotDivisible {
            what: "embed_dim",
            value: 18,
            by: 4,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut cfg = tiny(16, 4);
    cfg.num_heads = 3;
    match cfg.validate() {
        Err(Error::NotDivisible {
            what: "embed_dim",
            value: 16,
            by: 3,
            reason: "num_heads",
        }) => {}
        other => panic!("{other:?}"),
    }
    let cfg = tiny(18, 4);
    assert!(matches!(
        cfg.validate(),
        Err(Error::NotDivisible {
            what: "img_size",
            value: 18,
            by: 4,
            ..
        })
    ));
    let ccfg = ClassifierConfig {
        encoder: tiny(8, 4),
        num_classes: 2,
        drop_path: 1.0,
    };
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let err = VitClassifier::new(&ccfg, store.root()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { field: "drop_path", value, .. } if value == "1"),
        "{err}"
    );
}

#[test]
fn wrong_inputs_give_shape_errors() {
    let cfg = tiny(16, 4);
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let enc = VitEncoder::new(&cfg, store.root()).unwrap();
    let imgs = images(2, 16, 2);
    let noise = random_noise(2, 15, &mut Rng::new(3), &Device::Cpu).unwrap();
    match enc.forward_masked(&imgs, &noise, 0.5) {
        Err(Error::ShapeMismatch { expected, got, .. }) => {
            assert_eq!(expected, [2, 16]);
            assert_eq!(got, [2, 15]);
        }
        other => panic!("{other:?}"),
    }
    match enc.forward_features(&images(2, 8, 4)) {
        Err(Error::ShapeMismatch { expected, got, .. }) => {
            assert_eq!(expected, [16, 16]);
            assert_eq!(got, [8, 8]);
        }
        other => panic!("{other:?}"),
    }
    let two_channels = Tensor::zeros((1, 2, 16, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        enc.forward_features(&two_channels),
        Err(Error::CountMismatch {
            expected: 1,
            got: 2,
            ..
        })
    ));
}
