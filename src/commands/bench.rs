//! `miram bench`: one pre-training step (forward, backward, AdamW) timed like the PyTorch
//! comparison script `benches/torch/bench_step.py`, printed as one JSON line with the same
//! fields (plus peak memory), so the two can be run back to back and divided.

use clap::Args;
use miram_core::MiramConfig;

use crate::commands::device;
use crate::GlobalArgs;

/// Arguments of `miram bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Preset to time (paper, paper-nystrom, paper-linformer, paper-performer, paper-3scale,
    /// small, tiny, micro).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the benchmark and prints its JSON line (`--seed` seeds the weights, images and
/// masks; `--device` picks the device).
pub fn run(a: &BenchArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    if let Some(t) = a.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .ok();
    }
    anyhow::ensure!(
        a.batch > 0 && a.steps > 0,
        "--batch and --steps must be at least 1"
    );
    let cfg = MiramConfig::preset(&a.preset)?;
    let dev = device::parse(g.device.as_deref().unwrap_or("cpu"))?;
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
