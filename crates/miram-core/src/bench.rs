//! Timing of training steps, the figures of the PyTorch comparison script
//! `benches/torch/bench_step.py`, in its three modes ([`BenchMode`]): the median of a step
//! (forward, backward, AdamW) and, for the pre-training modes, of a masked-encoder forward,
//! after two warm-up iterations; the parameter count; the peak resident memory; and, on the
//! CPU, how much of the step the matrix products of the fused kernels took and how fast they
//! ran ([`miram_nn::ops::gemm::MatmulStats`]). `miram bench` prints it as one JSON line so the
//! two can be run back to back and divided.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use miram_encoder::{ClassifierConfig, VitClassifier};
use miram_nn::ops::gemm::MatmulStats;
use miram_nn::{AttentionConfig, ParamStore};

use crate::optim::{AdamW, AdamWConfig, Grads};
use crate::rand::Rng;
use crate::{Error, Miram, MiramConfig, Precision, Result};

/// Which step is timed: the three `--mode`s of `benches/torch/bench_step.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    /// The multi-scale model with every decoder of the configuration: MIRAM's step.
    Pretrain,
    /// The same configuration with only its first (1x) decoder: MAE's step.
    SingleScale,
    /// The fine-tuning classifier (encoder without its final norm, mean pool of the patch
    /// tokens, `fc_norm`, a head of [`FINETUNE_CLASSES`] classes) on unmasked images:
    /// forward, class-weighted cross-entropy (weights 1), backward, AdamW.
    Finetune,
}

impl BenchMode {
    /// Every mode.
    pub const ALL: [BenchMode; 3] = [Self::Pretrain, Self::SingleScale, Self::Finetune];

    /// The name in the JSON line and in `bench_step.py --mode`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pretrain => "pretrain",
            Self::SingleScale => "single-scale",
            Self::Finetune => "finetune",
        }
    }

    /// The configuration the mode builds from `cfg`: `cfg` itself, or its first scale only
    /// for [`BenchMode::SingleScale`] (the classifier of [`BenchMode::Finetune`] takes the
    /// encoder part of `cfg` and ignores the decoders).
    pub fn model_config(self, cfg: &MiramConfig) -> MiramConfig {
        match self {
            Self::SingleScale => cfg.single_scale(),
            Self::Pretrain | Self::Finetune => cfg.clone(),
        }
    }

    /// The memory estimate of one step of this mode (see [`step_memory`] and
    /// [`finetune_step_memory`]).
    pub fn step_memory(self, cfg: &MiramConfig, batch: usize) -> StepMemory {
        match self {
            Self::Pretrain | Self::SingleScale => step_memory(&self.model_config(cfg), batch),
            Self::Finetune => finetune_step_memory(cfg, batch, FINETUNE_CLASSES),
        }
    }
}

impl std::fmt::Display for BenchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Classes of the head in [`BenchMode::Finetune`] (`bench_step.py --classes`, default 2:
/// benign / malignant).
pub const FINETUNE_CLASSES: usize = 2;

/// Learning rate of every timed AdamW step (`bench_step.py`'s 1e-4; the value does not
/// change the time).
const BENCH_LR: f64 = 1e-4;

/// Weight decay of the fine-tuning optimiser in `bench_step.py`.
const FINETUNE_WEIGHT_DECAY: f64 = 0.05;

/// What one benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The implementation (`miram-rs <version> (candle 0.11)`).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The step that was timed.
    pub mode: BenchMode,
    /// The preset name, or `custom`.
    pub preset: String,
    /// The training precision (`f32`, or `bf16` mixed precision).
    pub precision: Precision,
    /// Images per step.
    pub batch: usize,
    /// Worker threads of the pool.
    pub threads: usize,
    /// Median step time (forward + backward + AdamW) in milliseconds.
    pub step_ms_median: f64,
    /// Median masked-encoder forward in milliseconds; `None` (null) for
    /// [`BenchMode::Finetune`], whose step has no masking (as in `bench_step.py`).
    pub masked_encoder_ms_median: Option<f64>,
    /// Classes of the head ([`BenchMode::Finetune`] only).
    pub classes: Option<usize>,
    /// Trainable parameters of the timed model.
    pub params: usize,
    /// Peak resident memory of the process in MiB (Linux), if known.
    pub peak_rss_mib: Option<f64>,
    /// The share of the timed steps spent in the matrix products of the fused CPU kernels
    /// (product seconds / step seconds); `None` off the CPU (see [`MatmulFigures`]).
    pub matmul_share: Option<f64>,
    /// The rate of those products themselves: FLOPs / product seconds, in GFLOP/s.
    pub matmul_gflops: Option<f64>,
    /// The rate achieved over the whole step: FLOPs / step seconds, in GFLOP/s.
    pub step_gflops: Option<f64>,
    /// FLOPs of those products per step, in GFLOP.
    pub gflop_per_step: Option<f64>,
    /// The CPU matrix-product kernel of those products (`miram avx2+fma` or `gemm crate`,
    /// [`miram_nn::ops::gemm::kernel_name`]); `None` off the CPU.
    pub matmul_kernel: Option<String>,
    /// The machine's fused multiply-add peak on the pool's threads, in GFLOP/s, measured
    /// after the timed steps ([`miram_nn::ops::gemm::fma_peak_gflops`]): the limit that
    /// `matmul_gflops` and `step_gflops` are to be read against (whichever kernel ran the
    /// products). `None` off the CPU and on CPUs without AVX2 and FMA.
    pub fma_peak_gflops: Option<f64>,
    /// The model configuration that was timed (what `benches/torch/bench_step.py` builds;
    /// for [`BenchMode::SingleScale`] the one-scale configuration, for
    /// [`BenchMode::Finetune`] the configuration whose encoder the classifier uses).
    pub config: MiramConfig,
}

/// The matrix-product figures of [`BenchReport`], from [`MatmulStats`] over the timed steps.
///
/// What is counted: the products of the project's fused CPU kernels (every Linear layer and
/// the softmax attention blocks, forward and backward). candle's own products (inside the
/// Linformer, Nystrom and Performer attention kinds, for example) are not counted, nor is
/// any GPU product: off the CPU the figures are not reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulFigures {
    /// Product seconds / step seconds.
    pub share: f64,
    /// FLOPs / product seconds, in GFLOP/s (`None` when no product ran).
    pub matmul_gflops: Option<f64>,
    /// FLOPs / step seconds, in GFLOP/s.
    pub step_gflops: f64,
    /// FLOPs per step, in GFLOP.
    pub gflop_per_step: f64,
}

impl MatmulFigures {
    /// The figures of `stats`, counted over `steps` steps that took `step_seconds` in all;
    /// `None` when nothing was timed.
    pub fn new(stats: MatmulStats, steps: usize, step_seconds: f64) -> Option<Self> {
        if steps == 0 || step_seconds.is_nan() || step_seconds <= 0.0 {
            return None;
        }
        let flops = stats.flops as f64;
        Some(Self {
            share: stats.seconds / step_seconds,
            matmul_gflops: (stats.seconds > 0.0).then(|| flops / stats.seconds * 1e-9),
            step_gflops: flops / step_seconds * 1e-9,
            gflop_per_step: flops / steps as f64 * 1e-9,
        })
    }
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
        AttentionConfig::Linformer(c) => 4 * heads * n * (c.k as u64) + 2 * (c.k as u64) * d,
        // The three kernels with m landmarks, the pseudo-inverse iterations and the residual
        // depth-wise convolution.
        AttentionConfig::Nystrom(c) => {
            let m = c.landmarks as u64;
            heads * (6 * n * m + (4 * c.pinv_iterations as u64 + 4) * m * m) + 2 * n * d
        }
        // Random features of q and k (with their exponentials) and the k^T v products.
        AttentionConfig::Performer(c) => {
            let f = c.nb_features.map_or_else(
                || (head_dim as f64 * (head_dim as f64).ln()).max(1.0) as u64,
                |f| f as u64,
            );
            heads * (6 * n * f + 2 * f * head_dim)
        }
    };
    dense + maps
}

/// Parameters of one transformer block of width `w` (LayerNorms, qkv, proj, MLP).
fn block_params(w: u64, mlp_ratio: f64) -> u64 {
    let hidden = (mlp_ratio * w as f64).ceil() as u64;
    4 * w * w + 2 * w * hidden + 9 * w + hidden
}

impl StepMemory {
    /// The estimate from its parts (byte counts; [`STEP_MEMORY_SAFETY`] on the activations).
    fn from_parts(inputs: u64, parameters: u64, activations: u64) -> Self {
        Self {
            inputs,
            parameters,
            activations,
            total: inputs
                .saturating_add(parameters)
                .saturating_add((activations as f64 * STEP_MEMORY_SAFETY) as u64),
        }
    }
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
    let mut params =
        p * p * c * d + 2 * d + cfg.depth as u64 * block_params(d, cfg.mlp_ratio) + d * dd + 2 * dd;
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
        params +=
            cfg.decoder_depth as u64 * block_params(dd, cfg.mlp_ratio) + dd * p * p * c + p * p * c;
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
    StepMemory::from_parts(inputs, 4 * params * f, b.saturating_mul(act * f))
}

/// Estimates the memory of one fine-tuning step ([`BenchMode::Finetune`]) of the encoder of
/// `cfg` with a head of `classes` outputs at `batch` images (f32): the encoder runs on every
/// patch (no masking), without decoders; an estimate, not a measurement (see
/// [`StepMemory`]).
pub fn finetune_step_memory(cfg: &MiramConfig, batch: usize, classes: usize) -> StepMemory {
    let f = 4u64; // bytes per f32
    let b = batch as u64;
    let (c, p) = (cfg.in_chans as u64, cfg.patch_size as u64);
    let grid = (cfg.img_size / cfg.patch_size.max(1)) as u64;
    let l = grid * grid;
    let (d, k) = (cfg.embed_dim as u64, classes as u64);
    let inputs = b.saturating_mul(c * (cfg.img_size as u64).pow(2) * f);
    // Patch embedding, encoder blocks, fc_norm and the head.
    let params = p * p * c * d
        + 2 * d
        + cfg.depth as u64 * block_params(d, cfg.mlp_ratio)
        + 2 * d
        + d * k
        + k;
    // Patchified input and embedding, the blocks over every token with the class token, the
    // pooled features, their norm and the logits.
    let mut act = 3 * l * p * p * c + 2 * l * d;
    act += cfg.depth as u64
        * block_floats(
            l + 1,
            d,
            cfg.num_heads as u64,
            cfg.mlp_ratio,
            &AttentionConfig::Softmax,
        );
    act += 4 * d + 3 * k;
    StepMemory::from_parts(inputs, 4 * params * f, b.saturating_mul(act * f))
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

/// Refuses a batch whose estimated step memory in `mode` ([`BenchMode::step_memory`])
/// exceeds `available` bytes, before anything is allocated; the error says both figures and
/// the largest batch that fits.
pub fn check_step_memory(
    preset: &str,
    cfg: &MiramConfig,
    mode: BenchMode,
    batch: usize,
    available: u64,
) -> Result<StepMemory> {
    let need = mode.step_memory(cfg, batch);
    if need.total <= available {
        return Ok(need);
    }
    let one = mode.step_memory(cfg, 1);
    let per_image = one.total - one.parameters;
    let fits = available.saturating_sub(one.parameters) / per_image.max(1);
    Err(Error::InsufficientMemory {
        what: format!("one {mode} step of preset {preset} at batch {batch}"),
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

/// Runs `f` for two warm-up iterations and then `steps` timed ones (each ended by a device
/// synchronisation); returns the timed durations in seconds and, on the CPU, the matrix
/// products counted over the timed iterations only.
fn timed<F: FnMut() -> Result<()>>(
    steps: usize,
    device: &Device,
    mut f: F,
) -> Result<(Vec<f64>, Option<MatmulStats>)> {
    for _ in 0..2 {
        f()?;
        device.synchronize()?;
    }
    let mut out = Vec::with_capacity(steps);
    MatmulStats::start();
    let run = (|| -> Result<()> {
        for _ in 0..steps {
            let t = Instant::now();
            f()?;
            device.synchronize()?;
            out.push(t.elapsed().as_secs_f64());
        }
        Ok(())
    })();
    let stats = MatmulStats::stop();
    run?;
    Ok((out, device.is_cpu().then_some(stats)))
}

/// What a run timed: the fields of its [`BenchReport`] that are not measurements.
struct BenchSubject<'a> {
    mode: BenchMode,
    preset: &'a str,
    precision: Precision,
    cfg: MiramConfig,
    batch: usize,
    classes: Option<usize>,
    params: usize,
}

/// The report of a run of `subject`: the step times with the matrix-product figures of the
/// timed steps, and the masked-encoder times if there are any.
fn report(
    subject: BenchSubject<'_>,
    step: (Vec<f64>, Option<MatmulStats>),
    masked_encoder: Option<Vec<f64>>,
) -> BenchReport {
    let BenchSubject {
        mode,
        preset,
        precision,
        cfg,
        batch,
        classes,
        params,
    } = subject;
    let (step, stats) = step;
    let figures = stats.and_then(|s| MatmulFigures::new(s, step.len(), step.iter().sum::<f64>()));
    BenchReport {
        implementation: format!("miram-rs {} (candle 0.11)", env!("CARGO_PKG_VERSION")),
        mode,
        preset: preset.to_string(),
        precision,
        batch,
        threads: rayon::current_num_threads(),
        step_ms_median: median_ms(step),
        masked_encoder_ms_median: masked_encoder.map(median_ms),
        classes,
        params,
        peak_rss_mib: peak_rss_mib(),
        matmul_share: figures.map(|f| f.share),
        matmul_gflops: figures.and_then(|f| f.matmul_gflops),
        step_gflops: figures.map(|f| f.step_gflops),
        gflop_per_step: figures.map(|f| f.gflop_per_step),
        matmul_kernel: figures.map(|_| miram_nn::ops::gemm::kernel_name().to_string()),
        fma_peak_gflops: figures.and_then(|_| miram_nn::ops::gemm::fma_peak_gflops()),
        config: cfg,
    }
}

/// What a benchmark times: a configuration at a batch size, a number of timed steps, the
/// seed of the weights, images and masks, and the training precision.
#[derive(Debug, Clone, Copy)]
pub struct BenchSpec<'a> {
    /// The preset name (or `custom`), for the report.
    pub preset: &'a str,
    /// The model configuration.
    pub cfg: &'a MiramConfig,
    /// Images per step.
    pub batch: usize,
    /// Timed steps, after two warm-up steps.
    pub steps: usize,
    /// Seed of the weights, the images and the masks.
    pub seed: u64,
    /// `f32`, or `bf16` mixed precision (f32 master weights and optimiser).
    pub precision: Precision,
}

impl<'a> BenchSpec<'a> {
    /// `steps` steps of `cfg` at `batch` images in `f32`, seed 0.
    pub fn new(preset: &'a str, cfg: &'a MiramConfig, batch: usize, steps: usize) -> Self {
        Self {
            preset,
            cfg,
            batch,
            steps,
            seed: 0,
            precision: Precision::F32,
        }
    }
}

/// Times the steps of `spec` in `mode` on `device`, after two warm-up steps, as
/// `benches/torch/bench_step.py --mode` does: [`pretrain_step`] of the configuration or of
/// its 1x scale alone, or [`finetune_step`].
pub fn bench_step(spec: &BenchSpec<'_>, mode: BenchMode, device: &Device) -> Result<BenchReport> {
    match mode {
        BenchMode::Pretrain | BenchMode::SingleScale => {
            let cfg = mode.model_config(spec.cfg);
            let mut r = pretrain_step(&BenchSpec { cfg: &cfg, ..*spec }, device)?;
            r.mode = mode;
            Ok(r)
        }
        BenchMode::Finetune => finetune_step(spec, FINETUNE_CLASSES, device),
    }
}

fn check_batch(batch: usize, steps: usize) -> Result<()> {
    if batch == 0 || steps == 0 {
        return Err(Error::Config(format!(
            "a benchmark needs at least 1 image and 1 timed step (got batch {batch}, steps {steps})"
        )));
    }
    Ok(())
}

/// Times the steps of `spec` in pre-training (masking, forward of every decoder of the
/// configuration, loss, backward, AdamW with MAE's pre-training settings) and masked-encoder
/// forwards on `device`, after two warm-up iterations of each. The report's mode is
/// [`BenchMode::Pretrain`]; give [`MiramConfig::single_scale`] for MAE's step (or call
/// [`bench_step`]).
pub fn pretrain_step(spec: &BenchSpec<'_>, device: &Device) -> Result<BenchReport> {
    let BenchSpec {
        preset,
        cfg,
        batch,
        steps,
        seed,
        precision,
    } = *spec;
    check_batch(batch, steps)?;
    let model = Miram::init(cfg, seed, device)?.with_precision(precision);
    let params = model.store().trainable();
    let mut opt = AdamW::new(params.clone(), AdamWConfig::mae_pretrain(BENCH_LR))?;
    let mut rng = Rng::new(seed);
    let (c, s) = (cfg.in_chans, cfg.img_size);
    let imgs = Tensor::from_vec(
        rng.normal_vec(batch * c * s * s, 0.0, 1.0),
        (batch, c, s, s),
        device,
    )?;
    let step = timed(steps, device, || {
        let noise = model.random_noise(batch, &mut rng)?;
        let out = model.forward(&imgs, &noise)?;
        let grads = Grads::from_backward(&out.loss.backward()?, &params);
        opt.step(&grads)
    })?;
    let (enc, _) = timed(steps, device, || {
        let noise = model.random_noise(batch, &mut rng)?;
        let (latent, _) = model
            .encoder()
            .forward_masked(&imgs, &noise, cfg.mask_ratio)?;
        drop(latent);
        Ok(())
    })?;
    let subject = BenchSubject {
        mode: BenchMode::Pretrain,
        preset,
        precision,
        cfg: cfg.clone(),
        batch,
        classes: None,
        params: model.num_parameters(),
    };
    Ok(report(subject, step, Some(enc)))
}

/// Times the steps of `spec` in fine-tuning: the classifier built on the encoder of the
/// configuration with a head of `classes` outputs, at unmasked images on `device`, after two
/// warm-up steps: the forward (no drop path), the cross-entropy with class weights 1 against the
/// labels `i % classes`, the backward and AdamW (MAE's fine-tuning betas (0.9, 0.999), weight
/// decay 0.05 on MAE's decayed parameters), as `bench_step.py --mode finetune`. There is no
/// masked-encoder figure (null).
pub fn finetune_step(spec: &BenchSpec<'_>, classes: usize, device: &Device) -> Result<BenchReport> {
    let BenchSpec {
        preset,
        cfg,
        batch,
        steps,
        seed,
        precision,
    } = *spec;
    check_batch(batch, steps)?;
    if classes == 0 {
        return Err(Error::Config(
            "a fine-tuning benchmark needs at least 1 class".into(),
        ));
    }
    let ccfg = ClassifierConfig {
        encoder: cfg.encoder(),
        num_classes: classes,
        drop_path: 0.0,
    };
    let store = ParamStore::new(seed, DType::F32, device);
    let model = VitClassifier::new(&ccfg, store.root())?.with_precision(precision);
    let params = store.trainable();
    let mut opt = AdamW::new(
        params.clone(),
        AdamWConfig::mae_finetune(BENCH_LR, FINETUNE_WEIGHT_DECAY),
    )?;
    let mut rng = Rng::new(seed);
    let (c, s) = (cfg.in_chans, cfg.img_size);
    let imgs = Tensor::from_vec(
        rng.normal_vec(batch * c * s * s, 0.0, 1.0),
        (batch, c, s, s),
        device,
    )?;
    let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, device)?;
    let weights = vec![1.0f32; classes];
    let step = timed(steps, device, || {
        let logits = model.forward(&imgs)?;
        let loss = miram_losses::cross_entropy(&logits, &labels, Some(&weights))?;
        let grads = Grads::from_backward(&loss.backward()?, &params);
        opt.step(&grads)
    })?;
    let subject = BenchSubject {
        mode: BenchMode::Finetune,
        preset,
        precision,
        cfg: cfg.clone(),
        batch,
        classes: Some(classes),
        params: store.trainable_count(),
    };
    Ok(report(subject, step, None))
}
