//! Timing of pre-training steps, the figures of the PyTorch comparison script
//! `benches/torch/bench_step.py`: the median
//! of a step (forward, backward, AdamW) and of a masked-encoder forward after two warm-up
//! iterations, the parameter count and the peak resident memory. `miram bench` prints it as
//! one JSON line so the two can be run back to back and divided.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use miram_nn::AttentionConfig;

use crate::optim::{AdamW, AdamWConfig, Grads};
use crate::rand::Rng;
use crate::{Error, Miram, MiramConfig, Result};

/// What one benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The implementation (`miram-rs <version> (candle 0.11)`).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The preset name, or `custom`.
    pub preset: String,
    /// Images per step.
    pub batch: usize,
    /// Worker threads of the pool.
    pub threads: usize,
    /// Median step time (forward + backward + AdamW) in milliseconds.
    pub step_ms_median: f64,
    /// Median masked-encoder forward in milliseconds.
    pub masked_encoder_ms_median: f64,
    /// Trainable parameters.
    pub params: usize,
    /// Peak resident memory of the process in MiB (Linux), if known.
    pub peak_rss_mib: Option<f64>,
    /// The model configuration that was timed (what `benches/torch/bench_step.py` builds).
    pub config: MiramConfig,
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (m * 1e5).round() / 100.0
}

/// Peak resident memory of this process in MiB (`VmHWM` on Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// The memory one pre-training step needs, estimated from the configuration's shapes (f32).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepMemory {
    /// The input images of the batch.
    pub inputs: u64,
    /// Weights, gradients and the two AdamW moments (4 copies of the parameters).
    pub parameters: u64,
    /// The tensors the forward pass keeps for the backward pass, over every block of the
    /// encoder and of each decoder, with the attention maps and the losses.
    pub activations: u64,
    /// The estimate: inputs + parameters + [`STEP_MEMORY_SAFETY`] x activations (bytes).
    pub total: u64,
}

/// The safety factor on the activations in [`StepMemory::total`], for the gradients the
/// backward pass holds while activations are still alive and the temporaries the count does
/// not name one by one. Without it, the estimate came within 20% of the peak resident memory
/// measured by `miram bench` on the CPU at the micro, tiny and small presets (batches 8 and
/// 32).
pub const STEP_MEMORY_SAFETY: f64 = 1.25;

/// Floats a transformer block of `n` tokens, width `d`, `heads` heads and MLP ratio `mlp`
/// keeps for the backward pass (per image): two layer norms (about 4 `n d` each), q, k, v and
/// their head-major copies (6 `n d`), the attention output and its copy, projection and
/// residuals (4 `n d`), the MLP hidden layer before and after the GELU (about 4 `mlp n d`),
/// plus the attention maps of its kind.
fn block_floats(n: u64, d: u64, heads: u64, mlp: f64, attention: &AttentionConfig) -> u64 {
    let hidden = (mlp * d as f64).ceil() as u64;
    let dense = 18 * n * d + 4 * n * hidden;
    let head_dim = (d / heads.max(1)).max(1);
    let maps = match attention {
        // Scores, scaled scores and probabilities.
        AttentionConfig::Softmax => 3 * heads * n * n,
        // Projected keys and values, scores and probabilities against the k projections.
        AttentionConfig::Linformer { k, .. } => 4 * heads * n * (*k as u64) + 2 * (*k as u64) * d,
        // The three kernels with m landmarks, the pseudo-inverse iterations and the residual
        // depth-wise convolution.
        AttentionConfig::Nystrom {
            landmarks,
            pinv_iterations,
            ..
        } => {
            let m = *landmarks as u64;
            heads * (6 * n * m + (4 * *pinv_iterations as u64 + 4) * m * m) + 2 * n * d
        }
        // Random features of q and k (with their exponentials) and the k^T v products.
        AttentionConfig::Performer { nb_features } => {
            let f = nb_features.map_or_else(
                || (head_dim as f64 * (head_dim as f64).ln()).max(1.0) as u64,
                |f| f as u64,
            );
            heads * (6 * n * f + 2 * f * head_dim)
        }
    };
    dense + maps
}

/// Estimates the memory of one pre-training step of `cfg` at `batch` images (f32), from the
/// shapes of the configuration: an estimate, not a measurement (see [`StepMemory`]).
pub fn step_memory(cfg: &MiramConfig, batch: usize) -> StepMemory {
    let f = 4u64; // bytes per f32
    let b = batch as u64;
    let (c, p) = (cfg.in_chans as u64, cfg.patch_size as u64);
    let grid = (cfg.img_size / cfg.patch_size.max(1)) as u64;
    let l = grid * grid;
    let kept = ((l as f64) * (1.0 - cfg.mask_ratio)) as u64 + 1;
    let (d, dd) = (cfg.embed_dim as u64, cfg.decoder_embed_dim as u64);
    let inputs = b.saturating_mul(c * (cfg.img_size as u64).pow(2) * f);
    // Parameters: patch embedding, encoder blocks, decoder embedding and blocks, heads.
    let hidden = |w: u64| (cfg.mlp_ratio * w as f64).ceil() as u64;
    let block_params = |w: u64| 4 * w * w + 2 * w * hidden(w) + 9 * w + hidden(w);
    let mut params = p * p * c * d + 2 * d + cfg.depth as u64 * block_params(d) + d * dd + 2 * dd;
    // Encoder: patchified input, embedding, blocks over the kept tokens.
    let mut act = 3 * l * p * p * c + 2 * l * d;
    act += cfg.depth as u64
        * block_floats(
            kept,
            d,
            cfg.num_heads as u64,
            cfg.mlp_ratio,
            &AttentionConfig::Softmax,
        );
    // The shared decoder embedding, with the mask tokens and the unshuffled sequence.
    act += 3 * (l + 1) * dd;
    for sc in &cfg.scales {
        let s = sc.scale as u64;
        let n = l * s * s + 1;
        params += cfg.decoder_depth as u64 * block_params(dd) + dd * p * p * c + p * p * c;
        act += 2 * n * dd;
        act += cfg.decoder_depth as u64
            * block_floats(
                n,
                dd,
                cfg.decoder_num_heads as u64,
                cfg.mlp_ratio,
                &sc.attention,
            );
        // Prediction, target patches, their normalised form, the difference and its square.
        act += 5 * (n - 1) * p * p * c;
    }
    let parameters = 4 * params * f;
    let activations = b.saturating_mul(act * f);
    StepMemory {
        inputs,
        parameters,
        activations,
        total: inputs
            .saturating_add(parameters)
            .saturating_add((activations as f64 * STEP_MEMORY_SAFETY) as u64),
    }
}

/// The memory this process may still allocate, in bytes: `MemAvailable` of `/proc/meminfo`,
/// lowered to what the cgroup (v2) still allows when it sets a limit; `None` where neither
/// can be read (not Linux).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let mut avail = kb * 1024;
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    if let (Some(max), Some(cur)) = (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        avail = avail.min(max.saturating_sub(cur));
    }
    Some(avail)
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses a batch whose estimated step memory ([`step_memory`]) exceeds `available` bytes,
/// before anything is allocated; the error says both figures and the largest batch that fits.
pub fn check_step_memory(
    preset: &str,
    cfg: &MiramConfig,
    batch: usize,
    available: u64,
) -> Result<StepMemory> {
    let need = step_memory(cfg, batch);
    if need.total <= available {
        return Ok(need);
    }
    let one = step_memory(cfg, 1);
    let per_image = one.total - one.parameters;
    let fits = available.saturating_sub(one.parameters) / per_image.max(1);
    Err(Error::InsufficientMemory {
        what: format!("one step of preset {preset} at batch {batch}"),
        needed: need.total,
        available,
        detail: format!(
            "estimated from the configuration's shapes: {} of input images, {} of weights, gradients and AdamW moments, {} of activations x{STEP_MEMORY_SAFETY} for the backward pass",
            gib(need.inputs),
            gib(need.parameters),
            gib(need.activations)
        ),
        hint: if fits == 0 {
            "not even one image fits".to_string()
        } else {
            format!("a batch of at most {fits} images fits")
        },
    })
}

/// Times `steps` pre-training steps and masked-encoder forwards of `cfg` at `batch` images
/// on `device`, after two warm-up iterations of each.
pub fn pretrain_step(
    preset: &str,
    cfg: &MiramConfig,
    batch: usize,
    steps: usize,
    seed: u64,
    device: &Device,
) -> Result<BenchReport> {
    let model = Miram::init(cfg, seed, device)?;
    let params = model.store().trainable();
    let mut opt = AdamW::new(params.clone(), AdamWConfig::mae_pretrain(1e-4))?;
    let mut rng = Rng::new(seed);
    let (c, s) = (cfg.in_chans, cfg.img_size);
    let imgs = Tensor::from_vec(
        rng.normal_vec(batch * c * s * s, 0.0, 1.0),
        (batch, c, s, s),
        device,
    )?;
    let mut step = Vec::with_capacity(steps);
    for i in 0..steps + 2 {
        let t = Instant::now();
        let noise = model.random_noise(batch, &mut rng)?;
        let out = model.forward(&imgs, &noise)?;
        let grads = Grads::from_backward(&out.loss.backward()?, &params);
        opt.step(&grads)?;
        device.synchronize()?;
        if i >= 2 {
            step.push(t.elapsed().as_secs_f64());
        }
    }
    let mut enc = Vec::with_capacity(steps);
    for i in 0..steps + 2 {
        let t = Instant::now();
        let noise = model.random_noise(batch, &mut rng)?;
        let (latent, _) = model
            .encoder()
            .forward_masked(&imgs, &noise, cfg.mask_ratio)?;
        drop(latent);
        device.synchronize()?;
        if i >= 2 {
            enc.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(BenchReport {
        implementation: format!("miram-rs {} (candle 0.11)", env!("CARGO_PKG_VERSION")),
        preset: preset.to_string(),
        batch,
        threads: rayon::current_num_threads(),
        step_ms_median: median_ms(step),
        masked_encoder_ms_median: median_ms(enc),
        params: model.num_parameters(),
        peak_rss_mib: peak_rss_mib(),
        config: cfg.clone(),
    })
}
