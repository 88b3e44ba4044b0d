//! `miram bench`: one pre-training step (forward, backward, AdamW) timed like the PyTorch
//! comparison script `benches/torch/bench_step.py`, printed as one JSON line with the same
//! fields (plus peak memory), so the two can be run back to back and divided.

use clap::Args;
use miram_core::MiramConfig;

use crate::commands::device;
use crate::GlobalArgs;

/// The most timed steps one run takes.
const MAX_STEPS: usize = 100_000;

/// Arguments of `miram bench`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Before anything is allocated, the memory of one step (input images, weights with their
gradients and AdamW moments, and the activations the backward pass keeps, times a safety
factor of 1.25) is estimated from the preset's shapes and compared with the memory available
(MemAvailable of /proc/meminfo, or the cgroup's limit if lower): a batch that does not fit is
refused with both figures. On a CUDA device only the input images (held on the host first)
are checked this way.

Example:
  miram bench --preset tiny --batch 8 --steps 10 --threads 2")]
pub struct BenchArgs {
    /// Preset to time (paper, paper-nystrom, paper-linformer, paper-performer, paper-3scale,
    /// small, tiny, micro).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Images per step (at least 1; a batch whose step does not fit in memory is refused).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed steps after two warm-up steps (1 to 100000).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Worker threads, 1 to the number of cores (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the benchmark and prints its JSON line (`--seed` seeds the weights, images and
/// masks; `--device` picks the device).
pub fn run(a: &BenchArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch > 0, "--batch 0: give at least 1 image per step");
    anyhow::ensure!(
        (1..=MAX_STEPS).contains(&a.steps),
        "--steps {}: give 1 to {MAX_STEPS} timed steps",
        a.steps
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if let Some(t) = a.threads {
        anyhow::ensure!(
            (1..=cores).contains(&t),
            "--threads {t}: give 1 to {cores} (the cores of this machine); more threads than cores time the scheduler, not the step"
        );
    }
    let cfg = MiramConfig::preset(&a.preset)?;
    let dev = device::parse(g.device.as_deref().unwrap_or("cpu"))?;
    match miram_core::bench::available_memory() {
        Some(avail) if dev.is_cpu() => {
            miram_core::bench::check_step_memory(&a.preset, &cfg, a.batch, avail)?;
        }
        Some(avail) => {
            // The images are drawn on the host before they are copied to the device.
            let host = miram_core::bench::step_memory(&cfg, a.batch).inputs;
            anyhow::ensure!(
                host <= avail,
                "--batch {}: the input images alone need {:.2} GiB of host memory, but {:.2} GiB is available",
                a.batch,
                host as f64 / f64::from(1u32 << 30),
                avail as f64 / f64::from(1u32 << 30)
            );
        }
        None => {}
    }
    if let Some(t) = a.threads {
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .ok();
    }
    let report = miram_core::bench::pretrain_step(
        &a.preset,
        &cfg,
        a.batch,
        a.steps,
        g.seed.unwrap_or(0),
        &dev,
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
