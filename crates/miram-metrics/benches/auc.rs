//! Criterion benchmarks of the O(n log n) metrics: ROC AUC and average precision on one
//! million scores, the DeLong paired test on 100 000, and a 2000-resample stratified
//! bootstrap of the AUC of 1000 cases (a typical test split), which runs on every core.
//!
//! `cargo bench -p miram-metrics --bench auc`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use miram_metrics::{average_precision, bootstrap_binary, delong_test, roc_auc, BootstrapConfig};
use miram_rand::Rng;

/// `n` labels (30% positive) and two noisy scorings that rank positives higher.
fn data(n: usize, seed: u64) -> (Vec<u8>, Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let y: Vec<u8> = (0..n).map(|_| u8::from(rng.bernoulli(0.3))).collect();
    let a = y.iter().map(|&v| rng.normal_f64() + f64::from(v)).collect();
    let b = y
        .iter()
        .map(|&v| rng.normal_f64() + 0.8 * f64::from(v))
        .collect();
    (y, a, b)
}

fn bench(c: &mut Criterion) {
    let (y, a, _) = data(1_000_000, 1);
    let mut g = c.benchmark_group("1e6 scores");
    g.sample_size(20);
    g.bench_function("roc_auc", |bch| {
        bch.iter(|| roc_auc(black_box(&y), black_box(&a)))
    });
    g.bench_function("average_precision", |bch| {
        bch.iter(|| average_precision(black_box(&y), black_box(&a)))
    });
    g.finish();
    let (y, a, b) = data(100_000, 2);
    let mut g = c.benchmark_group("1e5 scores");
    g.sample_size(20);
    g.bench_function("delong_test", |bch| {
        bch.iter(|| delong_test(black_box(&y), black_box(&a), black_box(&b)))
    });
    g.finish();
    let (y, a, _) = data(1000, 3);
    let mut g = c.benchmark_group("1e3 scores");
    g.sample_size(10);
    g.bench_function("bootstrap_auc_2000", |bch| {
        bch.iter(|| {
            bootstrap_binary(
                black_box(&y),
                black_box(&a),
                &BootstrapConfig::default(),
                roc_auc,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
