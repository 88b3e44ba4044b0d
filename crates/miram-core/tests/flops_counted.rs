//! The FLOPs that `miram_core::flops` counts from the configuration are the FLOPs that the
//! fused CPU kernels run: one training step of softmax-attention models, counted by
//! [`MatmulStats`] (every Linear layer and every softmax attention, forward and backward),
//! equals three times the analytic forward of the linear layers and of the attention (at
//! these sizes the fused attention keeps its probabilities for the backward pass; above
//! `KEEP_PROBS_BYTES` it recomputes each head's scores `Q K^T`, one product more, which the
//! model's FLOPs do not count, as utilisation figures do not).
//! The patch embedding is a candle convolution, which the kernels
//! do not count. Process-wide counters: this file holds one test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{Device, Tensor};
use miram_core::bench::BenchMode;
use miram_core::flops::step_flops;
use miram_core::nn::ops::gemm::MatmulStats;
use miram_core::optim::Grads;
use miram_core::rand::Rng;
use miram_core::{Miram, MiramConfig};

#[test]
fn counted_products_equal_the_analytic_count() {
    for (name, cfg, batch) in [
        ("micro", MiramConfig::micro(), 3),
        ("micro single-scale", MiramConfig::micro().single_scale(), 2),
    ] {
        let model = Miram::init(&cfg, 0, &Device::Cpu).unwrap();
        let mut rng = Rng::new(1);
        let s = cfg.img_size;
        let imgs = Tensor::from_vec(
            rng.normal_vec(batch * cfg.in_chans * s * s, 0.0, 1.0),
            (batch, cfg.in_chans, s, s),
            &Device::Cpu,
        )
        .unwrap();
        let noise = model.random_noise(batch, &mut rng).unwrap();
        let params = model.store().trainable();
        MatmulStats::start();
        let out = model.forward(&imgs, &noise).unwrap();
        let _ = Grads::from_backward(&out.loss.backward().unwrap(), &params);
        let counted = MatmulStats::stop().flops as f64;
        let f = step_flops(&cfg, BenchMode::Pretrain, batch);
        let analytic = 3.0 * (f.linear + f.attention);
        assert!(
            (counted - analytic).abs() <= 1e-9 * analytic,
            "{name}: counted {counted}, analytic {analytic}"
        );
    }
}
