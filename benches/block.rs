//! Criterion benchmark of one transformer block, forward and backward, fused
//! (`Block::forward_drop`: each residual branch one op on the CPU) beside composed
//! (`Block::forward_drop_composed`: the layers one by one as candle ops), per attention kind.
//!
//! Points: the decoder's width 512 with 16 heads for every kind, and the encoder-like width 192
//! with 3 heads of the `tiny` preset for softmax, at 65, 197 and 785 tokens (8 x 8, 14 x 14 and
//! 28 x 28 grids with the cls token), batch 8, 8 and 2; drop path 0.1 with fixed masks. The
//! loss is the sum of the output times a fixed random tensor; the input is a variable, so the
//! backward pass computes its gradient as inside a network.
//!
//! `cargo bench --bench block` (`MIRAM_BENCH_QUICK=1`: 65 tokens only; with `-- --test`
//! every function runs once). The process is set up as the `miram` command line (mimalloc,
//! `CANDLE_NUM_THREADS=1` when unset).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use miram_core::nn::{AttentionConfig, Block, DropPathMasks, ParamStore};
use miram_core::rand::Rng;

/// Drop-path probability of the benchmarked blocks.
const DROP_PATH: f64 = 0.1;

/// Tokens and batch of each point.
fn sizes() -> &'static [(usize, usize)] {
    if common::quick() {
        &[(65, 8)]
    } else {
        &[(65, 8), (197, 8), (785, 2)]
    }
}

/// A block and its inputs: weights from seed 0, input, output weighting and drop-path masks
/// from seed 1.
struct Point {
    block: Block,
    x: Var,
    weight: Tensor,
    drop: DropPathMasks,
}

impl Point {
    fn new(
        attention: &AttentionConfig,
        dim: usize,
        heads: usize,
        tokens: usize,
        batch: usize,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let store = ParamStore::new(0, DType::F32, dev);
        let block = Block::new(dim, heads, 4.0, attention, tokens, store.root())?;
        let mut rng = Rng::new(1);
        let n = batch * tokens * dim;
        let x = Var::from_tensor(&Tensor::from_vec(
            rng.normal_vec(n, 0.0, 1.0),
            (batch, tokens, dim),
            dev,
        )?)?;
        let weight = Tensor::from_vec(rng.normal_vec(n, 0.0, 1.0), (batch, tokens, dim), dev)?;
        let drop = DropPathMasks::draw(batch, DROP_PATH, &mut rng, dev)?;
        Ok(Self {
            block,
            x,
            weight,
            drop,
        })
    }

    /// Forward (fused or composed) and backward.
    fn run(&self, fused: bool) -> anyhow::Result<candle_core::backprop::GradStore> {
        let x = self.x.as_tensor();
        let y = if fused {
            self.block.forward_drop(x, Some(&self.drop))?
        } else {
            self.block.forward_drop_composed(x, Some(&self.drop))?
        };
        let grads = (y * &self.weight)?.sum_all()?.backward()?;
        x.device().synchronize()?;
        Ok(grads)
    }
}

fn bench(c: &mut Criterion) {
    common::cli_threads();
    let dev = Device::Cpu;
    let mut configs: Vec<(String, AttentionConfig, usize, usize)> = common::kinds()
        .into_iter()
        .map(|(name, a)| (format!("{name}-d512"), a, 512, 16))
        .collect();
    configs.push(("softmax-d192".to_string(), AttentionConfig::Softmax, 192, 3));
    for (label, attention, dim, heads) in &configs {
        let mut group = c.benchmark_group(format!("block_fwd_bwd/{label}"));
        group.sample_size(10);
        for &(tokens, batch) in sizes() {
            let point = Point::new(attention, *dim, *heads, tokens, batch, &dev).expect("block");
            for (form, fused) in [("fused", true), ("composed", false)] {
                group.bench_with_input(BenchmarkId::new(form, tokens), &tokens, |b, _| {
                    b.iter(|| point.run(fused).expect("forward + backward"))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
