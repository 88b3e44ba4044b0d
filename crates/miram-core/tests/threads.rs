//! Determinism across thread counts: a pre-training step (forward, backward) of a small
//! MIRAM with a softmax and a linear-attention decoder, run in rayon pools of 1, 2 and 3
//! threads, gives bit-identical losses and gradients. The fused kernels reduce in fixed
//! chunks and the matrix products never split their inner dimension, so the thread count
//! changes only who computes what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{Device, Tensor};
use miram_core::losses::LossOn;
use miram_core::nn::{AttentionConfig, LinformerConfig};
use miram_core::optim::Grads;
use miram_core::rand::Rng;
use miram_core::{Miram, MiramConfig, ScaleConfig};

fn model() -> MiramConfig {
    MiramConfig {
        img_size: 32,
        patch_size: 4,
        in_chans: 1,
        embed_dim: 48,
        depth: 2,
        num_heads: 3,
        mlp_ratio: 4.0,
        decoder_embed_dim: 32,
        decoder_depth: 1,
        decoder_num_heads: 4,
        mask_ratio: 0.75,
        norm_pix_loss: true,
        scales: vec![
            ScaleConfig::softmax(1, LossOn::Masked),
            ScaleConfig {
                scale: 2,
                attention: AttentionConfig::Linformer(LinformerConfig {
                    k: 16,
                    one_kv_head: true,
                    share_kv: true,
                }),
                loss_on: LossOn::All,
                weight: 1.0,
            },
        ],
    }
}

/// The loss and every gradient (by name) of one step in a pool of `threads` threads.
fn step(threads: usize) -> (u32, Vec<(String, Vec<u32>)>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| {
        let cfg = model();
        let dev = Device::Cpu;
        let m = Miram::init(&cfg, 11, &dev).unwrap();
        let mut rng = Rng::new(5);
        let imgs =
            Tensor::from_vec(rng.normal_vec(6 * 32 * 32, 0.0, 1.0), (6, 1, 32, 32), &dev).unwrap();
        let noise = m.random_noise(6, &mut rng).unwrap();
        let out = m.forward(&imgs, &noise).unwrap();
        let params = m.store().trainable();
        let grads = Grads::from_backward(&out.loss.backward().unwrap(), &params);
        let loss = out.loss.to_scalar::<f32>().unwrap().to_bits();
        let g = grads
            .iter()
            .map(|(k, t)| {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (k.clone(), v.into_iter().map(f32::to_bits).collect())
            })
            .collect();
        (loss, g)
    })
}

#[test]
fn a_step_is_bit_identical_for_one_two_and_three_threads() {
    let (loss1, g1) = step(1);
    assert!(!g1.is_empty());
    for threads in [2, 3] {
        let (loss, g) = step(threads);
        assert_eq!(loss, loss1, "loss with {threads} threads");
        assert_eq!(g.len(), g1.len());
        for ((k, a), (_, b)) in g1.iter().zip(&g) {
            assert!(a == b, "gradient of {k} differs with {threads} threads");
        }
    }
}
