//! The decoder crate's own contract on tiny configurations: prediction shapes per scale, the
//! unshuffle (kept tokens back at their grid positions, `mask_token` everywhere else) on a
//! constructed input, the token interpolation on a constructed grid, nothing masked, and
//! the structured errors of wrong configurations and inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor};
use miram_decoder::{DecoderConfig, DecoderScale, Error, MultiScaleDecoder, ScaleDecoder};
use miram_nn::{AttentionConfig, NystromConfig, ParamStore};

fn cfg(encoder_dim: usize, d: usize, grid: usize, scales: &[usize]) -> DecoderConfig {
    DecoderConfig {
        encoder_dim,
        decoder_embed_dim: d,
        decoder_depth: 1,
        decoder_num_heads: 2,
        mlp_ratio: 2.0,
        grid,
        patch_size: 2,
        in_chans: 1,
        scales: scales
            .iter()
            .map(|&scale| DecoderScale {
                scale,
                attention: AttentionConfig::Softmax,
            })
            .collect(),
    }
}

fn ids(v: &[u32]) -> Tensor {
    Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap()
}

#[test]
fn one_prediction_per_scale() {
    let c = cfg(8, 8, 3, &[1, 2, 3]); // 9 tokens
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let dec = MultiScaleDecoder::new(&c, store.root()).unwrap();
    let latent = Tensor::ones((2, 1 + 2, 8), DType::F32, &Device::Cpu).unwrap();
    let restore = Tensor::arange(0u32, 9, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .repeat((2, 1))
        .unwrap();
    let preds = dec.forward(&latent, &restore).unwrap();
    let dims: Vec<_> = preds.iter().map(|p| p.dims().to_vec()).collect();
    // [N, 9 s^2, p * p * C] with p = 2, C = 1.
    assert_eq!(dims, [vec![2, 9, 4], vec![2, 36, 4], vec![2, 81, 4]]);
}

/// A decoder whose `decoder_embed` is the identity and whose `mask_token` is all 9, so that
/// the tokens it puts back are the latent's rows themselves.
fn identity_decoder() -> MultiScaleDecoder {
    let c = cfg(4, 4, 2, &[1]);
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let dec = MultiScaleDecoder::new(&c, store.root()).unwrap();
    let eye = Tensor::eye(4, DType::F32, &Device::Cpu).unwrap();
    store.set("decoder_embed.weight", &eye).unwrap();
    store
        .set(
            "decoder_embed.bias",
            &Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    let nine = Tensor::full(9f32, (1, 1, 4), &Device::Cpu).unwrap();
    store.set("mask_token", &nine).unwrap();
    dec
}

/// Noise ranks the 4 grid tokens as `ids_shuffle = [2, 0, 3, 1]`; the first two (tokens 2
/// and 0) are kept, so `ids_restore = argsort(ids_shuffle) = [1, 3, 0, 2]`. Grid token 0 is
/// the second kept row, token 2 the first, tokens 1 and 3 are mask tokens.
#[test]
fn unshuffle_puts_kept_tokens_back_at_their_positions() {
    let dec = identity_decoder();
    let latent = Tensor::from_slice(
        &[0f32, 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.],
        (1, 3, 4),
        &Device::Cpu,
    )
    .unwrap();
    let (tokens, cls) = dec.tokens(&latent, &ids(&[1, 3, 0, 2])).unwrap();
    let rows: Vec<f32> = tokens
        .to_vec3::<f32>()
        .unwrap()
        .remove(0)
        .iter()
        .map(|r| {
            assert!(r.iter().all(|v| *v == r[0]), "{r:?}");
            r[0]
        })
        .collect();
    assert_eq!(rows, [2.0, 9.0, 1.0, 9.0]);
    assert_eq!(cls.to_vec3::<f32>().unwrap(), [[[0f32; 4]]]);
}

/// With nothing masked the tokens are the latent's rows in the order `ids_restore` names.
#[test]
fn nothing_masked_has_no_mask_tokens() {
    let dec = identity_decoder();
    let v: Vec<f32> = (0..5).flat_map(|r| [r as f32; 4]).collect();
    let latent = Tensor::from_vec(v, (1, 5, 4), &Device::Cpu).unwrap();
    // ids_shuffle = [3, 1, 0, 2] -> ids_restore = [2, 1, 3, 0].
    let (tokens, _) = dec.tokens(&latent, &ids(&[2, 1, 3, 0])).unwrap();
    let first: Vec<f32> = tokens.to_vec3::<f32>().unwrap()[0]
        .iter()
        .map(|r| r[0])
        .collect();
    // Grid token i is shuffled row ids_restore[i], i.e. latent row 1 + ids_restore[i].
    assert_eq!(first, [3.0, 2.0, 4.0, 1.0]);
}

#[test]
fn interpolation_repeats_every_token_s_by_s() {
    // A 2x2 grid of tokens a=1, b=2, c=3, d=4 (width 1), scale 2 -> the 4x4 grid
    // a a b b / a a b b / c c d d / c c d d.
    let t = Tensor::from_slice(&[1f32, 2., 3., 4.], (1, 4, 1), &Device::Cpu).unwrap();
    let out = ScaleDecoder::interpolate_tokens(&t, 2, 2).unwrap();
    let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(
        got,
        [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
    );
    assert!(matches!(
        ScaleDecoder::interpolate_tokens(&t, 3, 2),
        Err(Error::NotAGrid {
            tokens: 4,
            rows: 3,
            cols: 3,
            ..
        })
    ));
}

#[test]
fn wrong_configurations_name_the_field() {
    assert!(matches!(
        cfg(8, 6, 2, &[1]).validate(),
        Err(Error::NotDivisible {
            what: "decoder_embed_dim",
            value: 6,
            by: 4,
            ..
        })
    ));
    assert!(matches!(
        cfg(8, 8, 2, &[]).validate(),
        Err(Error::InvalidConfig {
            field: "scales",
            ..
        })
    ));
    match cfg(8, 8, 2, &[1, 0]).validate() {
        Err(Error::InScale { index: 1, source }) => {
            assert!(matches!(
                *source,
                Error::InvalidConfig { field: "scale", .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let mut c = cfg(8, 8, 2, &[1, 2]);
    c.scales[0].attention = AttentionConfig::Nystrom(NystromConfig {
        residual_conv_kernel: 4,
        ..NystromConfig::new(4)
    });
    let err = c.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "scales[0]: invalid configuration: nystrom residual_conv_kernel = 4, must be odd (or 0 for none)"
    );
}

#[test]
fn more_kept_tokens_than_the_grid_is_an_error() {
    let dec = identity_decoder();
    let latent = Tensor::zeros((1, 6, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        dec.tokens(&latent, &ids(&[0, 1, 2, 3])),
        Err(Error::TooManyKept { keep: 5, tokens: 4 })
    ));
}
