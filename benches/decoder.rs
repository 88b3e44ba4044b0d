//! Criterion benchmark of one decoder forward and backward per attention kind at 197, 785 and
//! 3137 tokens (a 14 x 14 grid decoded at 1x, 2x and 4x; the paper's decoder width 512 and
//! 16 heads, one block, batch 1). Linear-attention kinds should grow about linearly with the
//! tokens, softmax quadratically.
//!
//! `cargo bench --bench decoder` (set `MIRAM_BENCH_QUICK=1` to stop at 785 tokens).

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use miram_core::decoder::{DecoderConfig, DecoderScale, MultiScaleDecoder};
use miram_core::nn::{AttentionConfig, ParamStore};
use miram_core::rand::Rng;

fn kinds() -> Vec<(&'static str, AttentionConfig)> {
    vec![
        ("softmax", AttentionConfig::Softmax),
        (
            "linformer",
            AttentionConfig::Linformer {
                k: 128,
                one_kv_head: true,
                share_kv: true,
            },
        ),
        (
            "nystrom",
            AttentionConfig::Nystrom {
                landmarks: 64,
                pinv_iterations: 6,
                residual_conv_kernel: 33,
            },
        ),
        (
            "performer",
            AttentionConfig::Performer {
                nb_features: Some(110),
            },
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (grid, dim) = (14usize, 512usize);
    let quick = std::env::var("MIRAM_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scales: &[usize] = if quick { &[1, 2] } else { &[1, 2, 4] };
    let mut group = c.benchmark_group("decoder_fwd_bwd");
    group.sample_size(10);
    for (name, attention) in kinds() {
        for &s in scales {
            let tokens_n = grid * grid * s * s + 1;
            let cfg = DecoderConfig {
                encoder_dim: dim,
                decoder_embed_dim: dim,
                decoder_depth: 1,
                decoder_num_heads: 16,
                mlp_ratio: 4.0,
                grid,
                patch_size: 8,
                in_chans: 1,
                scales: vec![DecoderScale {
                    scale: s,
                    attention: attention.clone(),
                }],
            };
            let store = ParamStore::new(0, DType::F32, &dev);
            let dec = MultiScaleDecoder::new(&cfg, store.root()).expect("decoder");
            let mut rng = Rng::new(1);
            let tokens = Tensor::from_vec(
                rng.normal_vec(grid * grid * dim, 0.0, 1.0),
                (1, grid * grid, dim),
                &dev,
            )
            .expect("tokens");
            let cls =
                Tensor::from_vec(rng.normal_vec(dim, 0.0, 1.0), (1, 1, dim), &dev).expect("cls");
            group.bench_with_input(BenchmarkId::new(name, tokens_n), &tokens_n, |b, _| {
                b.iter(|| {
                    let pred = dec.decoders()[0].forward(&tokens, &cls).expect("forward");
                    let grads = pred
                        .sqr()
                        .expect("sqr")
                        .mean_all()
                        .expect("mean")
                        .backward()
                        .expect("backward");
                    dev.synchronize().expect("sync");
                    grads
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
