//! The losses crate's own contract, on inputs small enough to compute by hand: `norm_pix`
//! of one patch, the masked and the all-patch MSE with `norm_pix_loss` on a 2-patch image,
//! the upsampled target of scale 2, weighted cross-entropy, BCE with logits, a single-patch
//! image, and the structured errors of wrong inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor};
use miram_losses::{
    bce_with_logits, cross_entropy, norm_pix, per_patch_mse, reconstruction_target, Error, LossOn,
    MultiScaleLoss, ScaleLoss,
};

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn one_scale(scale: usize, loss_on: LossOn) -> Vec<ScaleLoss> {
    vec![ScaleLoss {
        scale,
        loss_on,
        weight: 1.0,
    }]
}

/// `[1, 2, 3, 4]`: mean 2.5, deviations `[-1.5, -0.5, 0.5, 1.5]`, unbiased variance
/// `(2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3`.
#[test]
fn norm_pix_of_one_patch() {
    let t = Tensor::from_slice(&[1f32, 2., 3., 4.], (1, 1, 4), &Device::Cpu).unwrap();
    let got: Vec<f32> = norm_pix(&t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let s = (5.0f64 / 3.0 + 1e-6).sqrt();
    for (g, c) in got.iter().zip([-1.5, -0.5, 0.5, 1.5]) {
        assert!((*g as f64 - c / s).abs() < 1e-6, "{g} vs {}", c / s);
    }
}

/// The 1x2x4 image `[[1, 2, 5, 5], [3, 4, 5, 7]]` with 2x2 patches is patch 0 = `[1, 2, 3, 4]`
/// (mean 2.5, deviations summing to 5 when squared, unbiased variance 5/3) and patch 1 =
/// `[5, 5, 5, 7]` (mean 5.5, deviations `[-0.5, -0.5, -0.5, 1.5]`, squares summing to 3,
/// unbiased variance 1). Against a zero prediction the normalised patches' MSEs are
/// `(5/4) / (5/3 + 1e-6)` and `(3/4) / (1 + 1e-6)`.
#[test]
fn masked_mse_with_norm_pix_on_two_patches() {
    let imgs = Tensor::from_slice(
        &[1f32, 2., 5., 5., 3., 4., 5., 7.],
        (1, 1, 2, 4),
        &Device::Cpu,
    )
    .unwrap();
    let pred = Tensor::zeros((1, 2, 4), DType::F32, &Device::Cpu).unwrap();
    let mse0 = 1.25 / (5.0 / 3.0 + 1e-6);
    let mse1 = 0.75 / (1.0 + 1e-6);

    let masked = MultiScaleLoss::new(2, true, one_scale(1, LossOn::Masked));
    for (mask, want) in [
        ([1f32, 0.], mse0),
        ([0., 1.], mse1),
        ([1., 1.], (mse0 + mse1) / 2.0),
    ] {
        let m = Tensor::from_slice(&mask, (1, 2), &Device::Cpu).unwrap();
        let (total, per_scale) = masked
            .compute(&imgs, std::slice::from_ref(&pred), &m, None)
            .unwrap();
        assert!(
            (scalar(&total) - want).abs() < 1e-6,
            "{mask:?}: {}",
            scalar(&total)
        );
        assert_eq!(per_scale.len(), 1);
    }
    // `all` ignores the mask.
    let all = MultiScaleLoss::new(2, true, one_scale(1, LossOn::All));
    let m = Tensor::from_slice(&[0f32, 1.], (1, 2), &Device::Cpu).unwrap();
    let (total, _) = all.compute(&imgs, &[pred], &m, None).unwrap();
    assert!((scalar(&total) - (mse0 + mse1) / 2.0).abs() < 1e-6);
}

/// Scale 2 of `[[1, 2], [3, 4]]` with 2x2 patches: the 4x4 nearest upsampling cut into four
/// patches, each one pixel repeated; the 1x mask of the single patch covers all four.
#[test]
fn scale_two_target_is_the_nearest_upsampling() {
    let imgs = Tensor::from_slice(&[1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let t = reconstruction_target(&imgs, None, 2, 2, false).unwrap();
    assert_eq!(
        t.to_vec3::<f32>().unwrap(),
        [[[1f32; 4], [2.; 4], [3.; 4], [4.; 4]]]
    );
    // A prediction of 2 everywhere: squared errors 1, 0, 1, 4 per patch, mean 1.5.
    let loss = MultiScaleLoss::new(2, false, one_scale(2, LossOn::Masked));
    let pred = Tensor::full(2f32, (1, 4, 4), &Device::Cpu).unwrap();
    let mask = Tensor::ones((1, 1), DType::F32, &Device::Cpu).unwrap();
    let got = loss.scale_loss(0, &imgs, &pred, &mask, None).unwrap();
    assert!((scalar(&got) - 1.5).abs() < 1e-6);
}

/// A single-patch image is its own patch; `norm_pix` of a constant patch is 0 (deviations 0).
#[test]
fn single_patch_image() {
    let imgs = Tensor::full(3f32, (2, 1, 2, 2), &Device::Cpu).unwrap();
    let t = reconstruction_target(&imgs, None, 2, 1, true).unwrap();
    assert_eq!(t.dims(), &[2, 1, 4]);
    assert_eq!(scalar(&t.abs().unwrap().sum_all().unwrap()), 0.0);
    let pred = Tensor::ones((2, 1, 4), DType::F32, &Device::Cpu).unwrap();
    let mse = per_patch_mse(&pred, &t).unwrap();
    assert_eq!(mse.to_vec2::<f32>().unwrap(), [[1f32], [1.]]);
}

/// Logits `[0, ln 3]` give probabilities `[1/4, 3/4]`, logits `[0, 0]` give `[1/2, 1/2]`.
/// Labels `[1, 0]`: losses `-ln(3/4)` and `ln 2`; with class weights `[2, 1]` the weights of
/// the samples are `[1, 2]` and the loss is `(-ln(3/4) + 2 ln 2) / 3`.
#[test]
fn cross_entropy_by_hand() {
    let ln3 = 3f32.ln();
    let logits = Tensor::from_slice(&[0f32, ln3, 0., 0.], (2, 2), &Device::Cpu).unwrap();
    let labels = Tensor::from_slice(&[1u32, 0], 2, &Device::Cpu).unwrap();
    let a = -(0.75f64.ln());
    let b = 2f64.ln();
    let plain = scalar(&cross_entropy(&logits, &labels, None).unwrap());
    assert!((plain - (a + b) / 2.0).abs() < 1e-6, "{plain}");
    let weighted = scalar(&cross_entropy(&logits, &labels, Some(&[2.0, 1.0])).unwrap());
    assert!((weighted - (a + 2.0 * b) / 3.0).abs() < 1e-6, "{weighted}");
}

/// Logit 0 with target 1 costs `ln 2`; logit `ln 3` with target 0 costs `-ln(1 - 3/4) = ln 4`.
#[test]
fn bce_with_logits_by_hand() {
    let logits = Tensor::from_slice(&[0f32, 3f32.ln()], (1, 2), &Device::Cpu).unwrap();
    let targets = Tensor::from_slice(&[1f32, 0.], (1, 2), &Device::Cpu).unwrap();
    let got = scalar(&bce_with_logits(&logits, &targets).unwrap());
    assert!((got - 1.5 * 2f64.ln()).abs() < 1e-6, "{got}");
}

#[test]
fn wrong_inputs_give_structured_errors() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
    let labels = Tensor::from_slice(&[0u32, 2], 2, &dev).unwrap();
    assert!(matches!(
        cross_entropy(&logits, &labels, None),
        Err(Error::LabelOutOfRange {
            label: 2,
            classes: 2
        })
    ));
    let labels = Tensor::from_slice(&[0u32, 1], 2, &dev).unwrap();
    assert!(matches!(
        cross_entropy(&logits, &labels, Some(&[1.0])),
        Err(Error::CountMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    let three = Tensor::zeros((1, 3), DType::F32, &dev).unwrap();
    match bce_with_logits(&logits, &three) {
        Err(Error::ShapeMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (vec![2, 2], vec![1, 3]));
        }
        other => panic!("{other:?}"),
    }
    let one_value = Tensor::zeros((1, 2, 1), DType::F32, &dev).unwrap();
    assert!(matches!(
        norm_pix(&one_value),
        Err(Error::InvalidConfig {
            field: "values per patch (norm_pix)",
            ..
        })
    ));

    let imgs = Tensor::zeros((1, 1, 2, 2), DType::F32, &dev).unwrap();
    let loss = MultiScaleLoss::new(2, false, one_scale(2, LossOn::All));
    let mask = Tensor::ones((1, 1), DType::F32, &dev).unwrap();
    let pred = Tensor::zeros((1, 4, 4), DType::F32, &dev).unwrap();
    assert!(matches!(
        loss.compute(&imgs, &[pred.clone(), pred.clone()], &mask, None),
        Err(Error::CountMismatch {
            expected: 1,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        loss.scale_loss(1, &imgs, &pred, &mask, None),
        Err(Error::UnknownScale {
            index: 1,
            scales: 1
        })
    ));
    let hires = Tensor::zeros((1, 1, 2, 2), DType::F32, &dev).unwrap();
    match loss.scale_loss(0, &imgs, &pred, &mask, Some(&hires)) {
        Err(Error::ShapeMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (vec![1, 1, 4, 4], vec![1, 1, 2, 2]));
        }
        other => panic!("{other:?}"),
    }
    let short = Tensor::zeros((1, 3, 4), DType::F32, &dev).unwrap();
    assert!(matches!(
        loss.scale_loss(0, &imgs, &short, &mask, None),
        Err(Error::ShapeMismatch { .. })
    ));
}
