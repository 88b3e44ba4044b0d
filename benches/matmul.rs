//! Criterion benchmark of the CPU matrix products of the fused kernels
//! (`miram_nn::ops::gemm::matmul`): the project's own AVX2/FMA kernel beside the `gemm`
//! crate's, at the shapes and layouts that take most of a `tiny` pre-training step at batch 8
//! (`miram bench` counted them): the 2x decoder's per-head attention (197 tokens, 32-wide
//! heads; on one thread, as inside the attention kernels), the encoder's 13-token attention,
//! the encoder's Linear layers on 104 rows (forward, input gradient, weight gradient) and the
//! decoders' on 1576 rows, on the pool; three Linear products of the `small` encoder on
//! 104 rows; and two of `tiny`'s fine-tuning step at batch 16 (800 rows).
//!
//! `cargo bench --bench matmul` (`MIRAM_BENCH_QUICK=1`: the first two shapes only; with `--
//! --test` every function runs once). Throughput is reported in elements of the output; the
//! GFLOP/s of a point are `2 m k n` over its time. The process is set up as the `miram` command
//! line (mimalloc, `CANDLE_NUM_THREADS=1` when unset).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use miram_core::nn::ops::gemm::{matmul, set_own_kernel, MatMut, MatRef, Par};
use miram_core::rand::Rng;

/// `(name, m, k, n, a read transposed, b read transposed, on the pool)`.
type Shape = (&'static str, usize, usize, usize, bool, bool, bool);

const SHAPES: [Shape; 14] = [
    ("attn_scores_197", 197, 32, 197, false, true, false),
    ("attn_values_197", 197, 197, 32, false, false, false),
    ("attn_grad_t_197", 197, 197, 32, true, false, false),
    ("attn_scores_13", 13, 64, 13, false, true, false),
    ("enc_fc1_fwd", 104, 192, 768, false, true, true),
    ("enc_fc2_fwd", 104, 768, 192, false, true, true),
    ("enc_fc1_dw", 768, 104, 192, true, false, true),
    ("dec_fc1_fwd", 1576, 128, 512, false, true, true),
    ("dec_fc1_dw", 512, 1576, 128, true, false, true),
    ("small_enc_qkv_fwd", 104, 384, 1152, false, true, true),
    ("small_enc_fc2_fwd", 104, 1536, 384, false, true, true),
    ("small_enc_fc1_dx", 104, 1536, 384, false, false, true),
    ("ft_fc1_fwd", 800, 192, 768, false, true, true),
    ("ft_fc2_fwd", 800, 768, 192, false, true, true),
];

fn bench(c: &mut Criterion) {
    common::cli_threads();
    let shapes = if common::quick() {
        &SHAPES[..2]
    } else {
        &SHAPES[..]
    };
    let mut rng = Rng::new(0);
    for &(name, m, k, n, ta, tb, pool) in shapes {
        let a = rng.normal_vec(m * k, 0.0, 1.0);
        let b = rng.normal_vec(k * n, 0.0, 1.0);
        let mut out = vec![0f32; m * n];
        let par = if pool { Par::Pool } else { Par::Seq };
        let mut group = c.benchmark_group(format!("matmul/{name}_{m}x{k}x{n}"));
        group.throughput(criterion::Throughput::Elements((m * n) as u64));
        for (kernel, own) in [("own", true), ("gemm_crate", false)] {
            group.bench_with_input(BenchmarkId::from_parameter(kernel), &own, |bch, &own| {
                set_own_kernel(own);
                bch.iter(|| {
                    let av = if ta {
                        MatRef::rows(&a, k, m).map(MatRef::t)
                    } else {
                        MatRef::rows(&a, m, k)
                    };
                    let bv = if tb {
                        MatRef::rows(&b, n, k).map(MatRef::t)
                    } else {
                        MatRef::rows(&b, k, n)
                    };
                    let dst = MatMut::rows(&mut out, m, n);
                    match (dst, av, bv) {
                        (Ok(d), Ok(av), Ok(bv)) => matmul(d, av, bv, 1.0, false, par),
                        _ => Err(candle_core::Error::Msg("bad view".into())),
                    }
                    .expect("product");
                });
            });
        }
        set_own_kernel(true);
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
