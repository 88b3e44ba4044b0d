//! The fused CPU block (`Block::forward_drop` in f32: the attention branch as one op for
//! softmax attention, the MLP branch as one op for every kind) against the same block run
//! layer by layer by candle's own ops in f64 (no fused path runs in f64), for every attention
//! kind, with drop path dropping one sample, at odd sizes: the output and the gradient of the
//! input and of every parameter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor, Var};
use miram_nn::{
    AttentionConfig, Block, DropPathMasks, LinformerConfig, NystromConfig, ParamStore,
    PerformerConfig,
};

fn kinds() -> Vec<AttentionConfig> {
    vec![
        AttentionConfig::Softmax,
        AttentionConfig::Linformer(LinformerConfig {
            k: 5,
            one_kv_head: true,
            share_kv: true,
        }),
        AttentionConfig::Linformer(LinformerConfig {
            k: 4,
            one_kv_head: false,
            share_kv: false,
        }),
        AttentionConfig::Nystrom(NystromConfig {
            landmarks: 3,
            pinv_iterations: 6,
            residual_conv_kernel: 5,
        }),
        AttentionConfig::Performer(PerformerConfig {
            nb_features: Some(7),
        }),
    ]
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let d = (&a - &b).unwrap().abs().unwrap().flatten_all().unwrap();
    let d = d.max(0).unwrap().to_scalar::<f64>().unwrap();
    let s = b.abs().unwrap().flatten_all().unwrap();
    let s = s.max(0).unwrap().to_scalar::<f64>().unwrap();
    d / s.max(1e-12)
}

#[test]
fn fused_block_equals_the_composed_f64_block_for_every_attention_kind() {
    let (bsz, n, d, heads) = (3, 9, 12, 3);
    let mut rng = miram_rand::Rng::new(7);
    let x0 = rng.normal_vec(bsz * n * d, 0.0, 1.0);
    let up = rng.normal_vec(bsz * n * d, 0.0, 1.0);
    // Samples 0 and 2 keep both branches (scaled by 1 / 0.8); sample 1 drops the attention
    // branch, sample 0 the MLP branch.
    let keep = 1.0 / 0.8f32;
    let attn_mask = vec![keep, 0.0, keep];
    let mlp_mask = vec![0.0, keep, keep];
    for cfg in kinds() {
        let mut results = Vec::new();
        for dtype in [DType::F32, DType::F64] {
            let dev = Device::Cpu;
            let store = ParamStore::new(3, dtype, &dev);
            let block = Block::new(d, heads, 2.5, &cfg, n, store.root().pp("b")).unwrap();
            let x = Var::from_tensor(
                &Tensor::from_vec(x0.clone(), (bsz, n, d), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let mask = |m: &[f32]| {
                Tensor::from_vec(m.to_vec(), (bsz, 1, 1), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            let drop = DropPathMasks {
                attn: mask(&attn_mask),
                mlp: mask(&mlp_mask),
            };
            let y = block.forward_drop(&x, Some(&drop)).unwrap();
            let upt = Tensor::from_vec(up.clone(), (bsz, n, d), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let g = (&y * &upt).unwrap().sum_all().unwrap().backward().unwrap();
            let mut grads = vec![("input".to_string(), g.get(&x).expect("input grad").clone())];
            for (name, v) in store.trainable() {
                let gv = g
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{}: no gradient for {name}", cfg.kind()));
                grads.push((name, gv.clone()));
            }
            results.push((y, grads));
        }
        let (y32, g32) = &results[0];
        let (y64, g64) = &results[1];
        let e = max_rel(y32, y64);
        assert!(e < 1e-5, "{}: output off by {e}", cfg.kind());
        assert_eq!(g32.len(), g64.len());
        for ((n32, a), (n64, b)) in g32.iter().zip(g64) {
            assert_eq!(n32, n64);
            let e = max_rel(a, b);
            assert!(e < 5e-4, "{}: gradient of {n32} off by {e}", cfg.kind());
        }
    }
}

#[test]
fn fused_and_composed_f32_paths_agree_without_drop_path() {
    let (bsz, n, d, heads) = (2, 17, 16, 4);
    let dev = Device::Cpu;
    let store = ParamStore::new(5, DType::F32, &dev);
    let block = Block::new(d, heads, 4.0, &AttentionConfig::Softmax, n, store.root()).unwrap();
    let mut rng = miram_rand::Rng::new(1);
    let x = Tensor::from_vec(rng.normal_vec(bsz * n * d, 0.0, 1.0), (bsz, n, d), &dev).unwrap();
    let a = block.forward(&x).unwrap();
    let b = block.forward_drop_composed(&x, None).unwrap();
    assert!(max_rel(&a, &b) < 1e-5);
}
