//! Criterion benchmark of the masking kernel: per-sample argsort of the noise, inverse
//! permutation and gather of the kept tokens, at N = 256, D = 768 and L = 196 (112 px / 8)
//! and 784 (224 px / 8), on the fused CPU path and on the generic candle path.
//!
//! `cargo bench --bench masking`; compare with PyTorch's
//! `ids = torch.argsort(noise, 1); torch.argsort(ids, 1); torch.gather(x, 1, ...)`.

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use miram_core::masking::{
    gather_tokens, gather_tokens_generic, masking_cpu, masking_generic, num_keep, random_noise,
};
use miram_core::rand::Rng;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (n, d) = (256, 768);
    let mut group = c.benchmark_group("masking");
    group.sample_size(20);
    for l in [196usize, 784] {
        let mut rng = Rng::new(0);
        let x = Tensor::from_vec(rng.normal_vec(n * l * d, 0.0, 1.0), (n, l, d), &dev).expect("x");
        let noise = random_noise(n, l, &mut rng, &dev).expect("noise");
        let keep = num_keep(l, 0.75);
        group.bench_with_input(BenchmarkId::new("fused_cpu", l), &l, |b, _| {
            b.iter(|| {
                let m = masking_cpu(&noise, keep).expect("masking");
                gather_tokens(&x, &m.ids_keep).expect("gather")
            })
        });
        group.bench_with_input(BenchmarkId::new("generic", l), &l, |b, _| {
            b.iter(|| {
                let m = masking_generic(&noise, keep).expect("masking");
                gather_tokens_generic(&x, &m.ids_keep).expect("gather")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
