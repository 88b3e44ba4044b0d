//! `miram bench`: one training step (forward, backward, AdamW) timed like the PyTorch
//! comparison script `benches/torch/bench_step.py` in one of its modes (pre-training, MAE's
//! single-scale step, fine-tuning), printed as one JSON line with the same fields (plus peak
//! memory and the matrix-product figures), so the two can be run back to back and divided.

use clap::Args;
use miram_core::bench::{BenchMode, BenchReport, BenchSpec};
use miram_core::{MiramConfig, Precision};

use crate::commands::device;
use crate::ui::{Mode, Ui};
use crate::GlobalArgs;

/// The most timed steps one run takes.
const MAX_STEPS: usize = 100_000;

/// Arguments of `miram bench`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Modes (the --mode of benches/torch/bench_step.py):
  (default)       pretrain: the preset's multi-scale model with every decoder
  --single-scale  the same preset with only its 1x decoder: MAE's step
  --finetune      the fine-tuning classifier on the preset's encoder (mean pool of the patch
                  tokens, fc_norm, a 2-class head) on unmasked images: forward, cross-entropy
                  with class weights 1, backward, AdamW (betas 0.9, 0.999; weight decay 0.05)
The pre-training modes also time the masked-encoder forward; in finetune mode
masked_encoder_ms_median is null.

Output: one JSON line on standard output (impl, mode, preset, precision, batch, threads, step_ms_median,
masked_encoder_ms_median, classes, params, peak_rss_mib, matmul_share, matmul_gflops,
step_gflops, gflop_per_step, matmul_kernel, fma_peak_gflops, config), and a table of the figures on standard error (not with
--quiet); with --json-lines, one `result` event with the same fields instead.

Matrix products: over the timed steps, matmul_share is the time spent in matrix products over
the step time, matmul_gflops their FLOPs over their own time (the rate of the products),
step_gflops the same FLOPs over the step time (the rate achieved over the whole step), and
gflop_per_step their FLOPs per step; fma_peak_gflops is the machine's fused multiply-add peak
on the pool's threads, measured after the timed steps (a register-only loop on every thread
at once, best of three rounds of about 8 ms), the limit the two rates are read against (null
on a CPU without AVX2 and FMA, where the probe cannot run; measured with --matmul gemm too). Counted are the products of the project's fused CPU
kernels (every Linear layer and the softmax attention blocks, forward and backward); candle's
own products (e.g. inside the Linformer, Nystrom and Performer attention kinds) are not, and
on a GPU nothing is counted: there the four fields and the peak are null.

Before anything is allocated, the memory of one step of the mode (input images, weights with
their gradients and AdamW moments, and the activations the backward pass keeps, times a
safety factor of 1.25) is estimated from the preset's shapes and compared with the memory
available (MemAvailable of /proc/meminfo, or the cgroup's limit if lower): a batch that does
not fit is refused with both figures. On a CUDA device only the input images (held on the
host first) are checked this way.

Examples:
  miram bench --preset tiny --batch 8 --steps 10 --threads 2
  miram bench --preset tiny --batch 8 --single-scale
  miram bench --preset tiny --batch 16 --finetune")]
pub struct BenchArgs {
    /// Preset to time.
    #[arg(long, default_value = "tiny", value_parser = crate::args::PresetParser)]
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
    /// Time MAE's step: the preset with only its first (1x) decoder.
    #[arg(long, conflicts_with = "finetune")]
    pub single_scale: bool,
    /// Time the fine-tuning classifier's step (full forward on unmasked images, loss,
    /// backward, AdamW) instead of pre-training.
    #[arg(long)]
    pub finetune: bool,
    /// The CPU matrix-product kernel: `own` (the project's AVX2/FMA kernel, where the CPU
    /// has AVX2 and FMA; otherwise the gemm crate's) or `gemm` (the gemm crate's), to compare
    /// the two.
    #[arg(long, value_name = "KERNEL", default_value = "own", value_parser = ["own", "gemm"])]
    pub matmul: String,
    /// The training precision: f32, or bf16 mixed precision (a GPU only).
    #[arg(long, value_name = "PRECISION", default_value = "f32", value_parser = crate::args::precision_parser())]
    pub precision: Precision,
}

impl BenchArgs {
    /// The mode the flags ask for.
    pub fn mode(&self) -> BenchMode {
        match (self.single_scale, self.finetune) {
            (true, _) => BenchMode::SingleScale,
            (false, true) => BenchMode::Finetune,
            (false, false) => BenchMode::Pretrain,
        }
    }
}

/// Runs the benchmark and prints its JSON line and table (`--seed` seeds the weights, images
/// and masks; `--device` picks the device).
pub fn run(a: &BenchArgs, g: &GlobalArgs, ui: &Ui) -> anyhow::Result<()> {
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
    let mode = a.mode();
    let cfg = MiramConfig::preset(&a.preset)?;
    let dev = device::parse(g.device.as_deref().unwrap_or("cpu"))?;
    match miram_core::bench::available_memory() {
        Some(avail) if dev.is_cpu() => {
            miram_core::bench::check_step_memory(&a.preset, &cfg, mode, a.batch, avail)?;
        }
        Some(avail) => {
            // The images are drawn on the host before they are copied to the device.
            let host = mode.step_memory(&cfg, a.batch).inputs;
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
    // `--threads` sized the pool in `main`, before the command started on it.
    crate::args::check_precision(a.precision, &dev)?;
    miram_core::nn::ops::gemm::set_own_kernel(a.matmul == "own");
    let spec = BenchSpec {
        seed: g.seed.unwrap_or(0),
        precision: a.precision,
        ..BenchSpec::new(&a.preset, &cfg, a.batch, a.steps)
    };
    let report = miram_core::bench::bench_step(&spec, mode, &dev)?;
    ui.result_text(format!("{}\n", serde_json::to_string(&report)?));
    if ui.mode() == Mode::Human {
        ui.info(table(&report));
    }
    ui.event("result", serde_json::to_value(&report)?);
    Ok(())
}

/// The machine's FMA peak of `r`, with the share of it that the products and the whole step
/// reached.
fn peak(r: &BenchReport) -> String {
    let Some(p) = r.fma_peak_gflops.filter(|p| *p > 0.0) else {
        return "- (not measured on this device or CPU)".to_string();
    };
    let of =
        |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.0}%", 100.0 * v / p));
    format!(
        "{p:.1} GFLOP/s (the products ran at {} of it, the step at {})",
        of(r.matmul_gflops),
        of(r.step_gflops)
    )
}

/// The figures of `r` as a short table for a person.
fn table(r: &BenchReport) -> String {
    let ms =
        |v: Option<f64>, none: &str| v.map_or_else(|| none.to_string(), |v| format!("{v:.2} ms"));
    let num = |v: Option<f64>, digits: usize, unit: &str| {
        v.map_or_else(
            || "- (not counted on this device)".to_string(),
            |v| format!("{v:.digits$}{unit}"),
        )
    };
    let rows = [
        ("mode", r.mode.to_string()),
        (
            "model",
            format!(
                "preset {}, batch {}, {} threads",
                r.preset, r.batch, r.threads
            ),
        ),
        ("step (median)", ms(Some(r.step_ms_median), "-")),
        (
            "masked encoder (median)",
            ms(r.masked_encoder_ms_median, "- (no masking in this mode)"),
        ),
        (
            "matrix products / step",
            num(r.matmul_share.map(|s| s * 100.0), 1, " % of the time"),
        ),
        ("matrix products rate", num(r.matmul_gflops, 1, " GFLOP/s")),
        ("rate over the step", num(r.step_gflops, 1, " GFLOP/s")),
        ("product FLOPs / step", num(r.gflop_per_step, 3, " GFLOP")),
        ("machine FMA peak", peak(r)),
        (
            "product kernel",
            r.matmul_kernel
                .clone()
                .unwrap_or_else(|| "- (not counted on this device)".to_string()),
        ),
        ("parameters", r.params.to_string()),
        (
            "peak resident memory",
            r.peak_rss_mib
                .map_or_else(|| "-".to_string(), |m| format!("{m:.1} MiB")),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
