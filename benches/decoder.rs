//! Criterion benchmark of one decoder forward and backward per attention kind at 197, 785 and
//! 3137 tokens (a 14 x 14 grid decoded at 1x, 2x and 4x; the paper's decoder width 512 and
//! 16 heads, one block, batch 1). Linear-attention kinds should grow about linearly with the
//! tokens, softmax quadratically.
//!
//! `cargo bench --bench decoder` (set `MIRAM_BENCH_QUICK=1` to stop at 785 tokens, and
//! `MIRAM_BENCH_LARGE=1` to add 12545 tokens, 8x: softmax takes about a minute per
//! iteration there). The process is set up as the `miram` command line (mimalloc,
//! `CANDLE_NUM_THREADS=1` when unset).

mod common;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    common::cli_threads();
    let dev = Device::Cpu;
    let large = std::env::var("MIRAM_BENCH_LARGE").is_ok_and(|v| v == "1");
    let scales: &[usize] = if common::quick() {
        &[1, 2]
    } else if large {
        &[1, 2, 4, 8]
    } else {
        &[1, 2, 4]
    };
    let mut group = c.benchmark_group("decoder_fwd_bwd");
    group.sample_size(10);
    for (name, attention) in common::kinds() {
        for &s in scales {
            let tokens_n = common::decoder_tokens(s);
            let (dec, tokens, cls) = common::decoder(&attention, s, &dev).expect("decoder");
            group.bench_with_input(BenchmarkId::new(name, tokens_n), &tokens_n, |b, _| {
                b.iter(|| common::decoder_fwd_bwd(&dec, &tokens, &cls).expect("fwd + bwd"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
