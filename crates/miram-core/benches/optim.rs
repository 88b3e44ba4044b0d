//! Criterion benchmarks of the optimiser over the parameters of preset `tiny`: one AdamW step
//! on the CPU fast path (one in-place pass per parameter) against the composed candle ops
//! (`AdamW::step_composed`), and the global norm with clipping against the composed form the
//! code used before (an f64 copy and its square per gradient, then a scaled copy).
//!
//! `cargo bench -p miram-core --bench optim`. Like the command line, the benchmark uses
//! mimalloc and sets `CANDLE_NUM_THREADS=1` when it is unset.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use miram_core::optim::{AdamW, AdamWConfig, Grads};
use miram_core::rand::Rng;
use miram_core::{Miram, MiramConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Preset `tiny`'s trainable parameters and random gradients of their shapes.
fn tiny() -> (Vec<(String, candle_core::Var)>, Grads) {
    let model = Miram::init(&MiramConfig::tiny(), 0, &Device::Cpu).expect("model");
    let params = model.store().trainable();
    let mut rng = Rng::new(1);
    let mut grads = Grads::new();
    for (name, var) in &params {
        let n = var.elem_count();
        let g = Tensor::from_vec(rng.normal_vec(n, 0.0, 1e-2), var.shape(), &Device::Cpu)
            .expect("gradient");
        grads.insert(name.clone(), g);
    }
    (params, grads)
}

/// The global norm as composed candle ops (the code before the CPU fast path).
fn norm_composed(grads: &Grads) -> f64 {
    let mut total = 0f64;
    for (_, g) in grads.iter() {
        total += g
            .to_dtype(DType::F64)
            .and_then(|g| g.sqr())
            .and_then(|g| g.sum_all())
            .and_then(|g| g.to_scalar::<f64>())
            .expect("norm");
    }
    total.sqrt()
}

/// The global norm and clipping as composed candle ops (the code before the CPU fast path).
fn clip_composed(grads: &Grads, max_norm: f64) -> Vec<Tensor> {
    let coef = max_norm / (norm_composed(grads) + 1e-6);
    grads
        .iter()
        .map(|(_, g)| (g * coef).expect("scale"))
        .collect()
}

fn bench(c: &mut Criterion) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let (params, grads) = tiny();
    let count: usize = params.iter().map(|(_, v)| v.elem_count()).sum();
    let mut group = c.benchmark_group(format!(
        "tiny ({} tensors, {count} parameters)",
        params.len()
    ));
    group.sample_size(20);
    let mut fused = AdamW::new(params.clone(), AdamWConfig::mae_pretrain(1e-6)).expect("adamw");
    group.bench_function("adamw_step_in_place", |b| {
        b.iter(|| fused.step(black_box(&grads)).expect("step"))
    });
    let mut composed = AdamW::new(params.clone(), AdamWConfig::mae_pretrain(1e-6)).expect("adamw");
    group.bench_function("adamw_step_composed", |b| {
        b.iter(|| composed.step_composed(black_box(&grads)).expect("step"))
    });
    group.bench_function("global_norm", |b| {
        b.iter(|| black_box(&grads).global_norm().expect("norm"))
    });
    group.bench_function("global_norm_composed", |b| {
        b.iter(|| norm_composed(black_box(&grads)))
    });
    // max_norm below the gradients' norm: every gradient is scaled.
    group.bench_function("global_norm_and_clip", |b| {
        b.iter(|| {
            let mut g = grads.clone();
            g.clip_global_norm(black_box(1e-3)).expect("clip");
            g
        })
    });
    group.bench_function("global_norm_and_clip_composed", |b| {
        b.iter(|| clip_composed(black_box(&grads), 1e-3))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
