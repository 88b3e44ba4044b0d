//! What the benchmarks and `examples/decoder_memory.rs` share: the attention kinds they
//! compare, the process set-up of the `miram` command line, and the one-block decoder of
//! the decoder benchmarks (width 512, 16 heads, batch 1, a 14 x 14 grid decoded at a scale).
//!
//! Included with `mod common;` by the benches and `#[path]` by the example; not every
//! includer uses every item.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use miram_core::decoder::{DecoderConfig, DecoderScale, MultiScaleDecoder};
use miram_core::nn::{
    AttentionConfig, LinformerConfig, NystromConfig, ParamStore, PerformerConfig,
};
use miram_core::rand::Rng;

/// The allocator of the `miram` command line (see `src/main.rs`), so that times and memory
/// are those of training.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The thread set-up of the `miram` command line: `CANDLE_NUM_THREADS=1` when unset (candle's
/// own pool spins against rayon's, which the fused kernels and the matrix products use).
/// Call before any candle op.
pub fn cli_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// `MIRAM_BENCH_QUICK=1`: only the smallest sizes (smoke runs).
pub fn quick() -> bool {
    std::env::var("MIRAM_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// The attention kinds compared: softmax, Linformer (k 128, one shared key/value
/// projection), Nystromformer (64 landmarks, 6 pseudo-inverse iterations, residual
/// convolution 33) and Performer (110 random features).
pub fn kinds() -> Vec<(&'static str, AttentionConfig)> {
    vec![
        ("softmax", AttentionConfig::Softmax),
        (
            "linformer",
            AttentionConfig::Linformer(LinformerConfig {
                k: 128,
                one_kv_head: true,
                share_kv: true,
            }),
        ),
        (
            "nystrom",
            AttentionConfig::Nystrom(NystromConfig {
                landmarks: 64,
                pinv_iterations: 6,
                residual_conv_kernel: 33,
            }),
        ),
        (
            "performer",
            AttentionConfig::Performer(PerformerConfig {
                nb_features: Some(110),
            }),
        ),
    ]
}

/// The kind called `name` in [`kinds`].
pub fn kind(name: &str) -> Option<AttentionConfig> {
    kinds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| a)
}

/// Side of the encoder grid the decoders upsample.
pub const DECODER_GRID: usize = 14;
/// Width of the decoder (the paper's).
pub const DECODER_DIM: usize = 512;
/// Heads of the decoder (the paper's).
pub const DECODER_HEADS: usize = 16;

/// Tokens of the decoder at scale `s`: the `(14 s)^2` grid and the cls token.
pub fn decoder_tokens(s: usize) -> usize {
    DECODER_GRID * DECODER_GRID * s * s + 1
}

/// One-block decoder at scale `s` with its inputs (grid tokens `[1, 196, 512]` and cls
/// `[1, 1, 512]`), weights and inputs from fixed seeds.
pub fn decoder(
    attention: &AttentionConfig,
    s: usize,
    dev: &Device,
) -> anyhow::Result<(MultiScaleDecoder, Tensor, Tensor)> {
    let (grid, dim) = (DECODER_GRID, DECODER_DIM);
    let cfg = DecoderConfig {
        encoder_dim: dim,
        decoder_embed_dim: dim,
        decoder_depth: 1,
        decoder_num_heads: DECODER_HEADS,
        mlp_ratio: 4.0,
        grid,
        patch_size: 8,
        in_chans: 1,
        scales: vec![DecoderScale {
            scale: s,
            attention: attention.clone(),
        }],
    };
    let store = ParamStore::new(0, DType::F32, dev);
    let dec = MultiScaleDecoder::new(&cfg, store.root())?;
    let mut rng = Rng::new(1);
    let tokens = Tensor::from_vec(
        rng.normal_vec(grid * grid * dim, 0.0, 1.0),
        (1, grid * grid, dim),
        dev,
    )?;
    let cls = Tensor::from_vec(rng.normal_vec(dim, 0.0, 1.0), (1, 1, dim), dev)?;
    Ok((dec, tokens, cls))
}

/// One forward and backward pass of the decoder (loss: mean of the squared prediction).
pub fn decoder_fwd_bwd(
    dec: &MultiScaleDecoder,
    tokens: &Tensor,
    cls: &Tensor,
) -> anyhow::Result<candle_core::backprop::GradStore> {
    let pred = dec.decoders()[0].forward(tokens, cls)?;
    let grads = pred.sqr()?.mean_all()?.backward()?;
    tokens.device().synchronize()?;
    Ok(grads)
}
