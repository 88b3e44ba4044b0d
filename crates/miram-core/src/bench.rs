//! Timing of pre-training steps, the figures of the PyTorch comparison script
//! `benches/torch/bench_step.py`: the median
//! of a step (forward, backward, AdamW) and of a masked-encoder forward after two warm-up
//! iterations, the parameter count and the peak resident memory. `miram bench` prints it as
//! one JSON line so the two can be run back to back and divided.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::optim::{AdamW, AdamWConfig, Grads};
use crate::rand::Rng;
use crate::{Miram, MiramConfig, Result};

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
    })
}
