//! `miram`: the command line of MIRAM in Rust (multi-scale masked image modelling for
//! mammography; Vo et al., arXiv 2503.07157).
//!
//! `miram quickstart` runs the whole study on a generated CBIS-DDSM-shaped dataset; the other
//! subcommands are its steps on real data (`synth`, `index`, `pretrain`, `finetune`,
//! `evaluate`, `reconstruct`) and tools (`inspect` a DICOM file, score predictions with
//! `metrics`, time a step with `bench`). Every subcommand has `--help`.
//!
//! Output conventions: results (tables, JSON) go to standard output; progress bars and
//! messages to standard error; `--json-lines` turns both into one JSON object per line on
//! standard output; `--quiet` keeps only the results. An error is one line on standard
//! error, `error: ...`, naming the value at fault, and the exit code is 1 (2 for a command
//! line that does not parse).

mod args;
mod commands;
mod config;
mod heatmap;
mod plan;
mod plot;
mod report;
mod runs;
mod study;
mod ui;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The allocator: every candle op allocates its output, and glibc's allocator returns large
/// blocks to the system and page-faults them back on the next step (measured: a micro
/// pre-training step goes from 500+ ms to about 165 ms with mimalloc and
/// `CANDLE_NUM_THREADS=1`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: index 15 of mimalloc's `mi_option_t` in mimalloc 2 and 3 (the
/// enum is part of its stable ABI; `libmimalloc-sys` names its neighbours,
/// `mi_option_eager_commit_delay` = 14 and `mi_option_use_numa_nodes` = 16).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of returning it to the system 10 ms after it is freed
/// (mimalloc's default): a training step frees and reallocates the same buffers every few
/// hundred milliseconds, and each returned page came back as a page fault and a kernel
/// zeroing (`perf stat`, `miram bench --preset tiny --batch 8 --steps 10`: 28,214 page
/// faults by default, 457 without purging). Peak memory is unchanged. The variable
/// `MIMALLOC_PURGE_DELAY` still overrides it.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores one integer in mimalloc's option table; it takes no
        // pointer and is safe to call at any time from any thread (mimalloc reads the option
        // on each purge). -1 is the documented "never purge" value of this option.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// MIRAM: multi-scale masked image modelling for mammography (Vo et al., arXiv 2503.07157).
///
/// Start with `miram quickstart`: it generates a small CBIS-DDSM-shaped dataset, pre-trains
/// MIRAM and MAE, fine-tunes them and a randomly initialised encoder, and prints AP and AUC
/// with 95% intervals. The other subcommands run the same steps on the real CBIS-DDSM.
#[derive(Debug, Parser)]
#[command(name = "miram", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options of every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Device to compute on: cpu, cuda (GPU 0; under a launcher, the GPU of the local rank) or
    /// cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Seed of everything drawn (weights, masks, data order, augmentation, bootstrap);
    /// overrides the `seed` of a configuration file. The same seed gives the same results.
    #[arg(long, global = true, value_name = "N")]
    pub seed: Option<u64>,
    /// Print only the results: no progress bars, no messages.
    #[arg(long, short, global = true, conflicts_with = "json_lines")]
    pub quiet: bool,
    /// Print progress, messages and results as JSON objects, one per line, on standard
    /// output (for scripts); each has an `event` field.
    #[arg(long, global = true)]
    pub json_lines: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole study on generated data: pre-train MIRAM and MAE, fine-tune them and a
    /// random encoder on pathology and mass margins, print AP/AUC with 95% intervals.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Write a synthetic CBIS-DDSM-shaped dataset (DICOM files and the four CSVs).
    Synth(commands::synth::SynthArgs),
    /// Index a CBIS-DDSM download (TCIA, literal CSV paths or the Kaggle JPEG copy) and
    /// report the rows whose files could not be found.
    Index(commands::index::IndexArgs),
    /// Pre-train MIRAM (or single-scale MAE) on lesion crops and background patches.
    Pretrain(commands::pretrain::PretrainArgs),
    /// Fine-tune an encoder (pre-trained or random) for pathology or mass margins.
    Finetune(commands::finetune::FinetuneArgs),
    /// Evaluate fine-tuned runs on the test set: AP, AUC, intervals, DeLong tests, plots.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Save a PNG grid per image: original, masked input, reconstruction at each scale.
    Reconstruct(commands::reconstruct::ReconstructArgs),
    /// Show where a model looks: per crop, its attention rollout and last-block attention
    /// per head over the crop (PNG), and the raw maps (.npy or 16-bit PNG).
    Explain(commands::explain::ExplainArgs),
    /// Time training steps of a preset (pre-training, `--single-scale` or `--finetune`) and
    /// print one JSON line (the fields of the comparison script `benches/torch/bench_step.py`,
    /// plus peak memory and the share and rate of the matrix products).
    Bench(commands::bench::BenchArgs),
    /// Print a DICOM file's header fields and statistics of its stored pixel values.
    Inspect(commands::inspect::InspectArgs),
    /// Score predictions from a CSV file (labels and scores) with scikit-learn's metrics.
    Metrics(commands::metrics::MetricsArgs),
    /// Score a frozen encoder's features for a task: kNN and a linear probe, AP and AUC.
    Probe(commands::probe::ProbeArgs),
    /// Check a device in one command: parity with PyTorch on the fixtures, masking and
    /// training steps against the CPU, a resumed pre-training run, timed steps (TFLOP/s).
    Selftest(commands::selftest::SelftestArgs),
    /// MIRAM vs MAE vs from-scratch over several seeds on generated data: means, spreads,
    /// per-seed and combined DeLong tests, learning curves of the probe.
    Study(commands::study::StudyArgs),
    /// Score new inputs with a fine-tuned run: a dataset folder, crop files, or a full
    /// mammogram with its ROI mask or box, preprocessed as the run's training crops were.
    Predict(commands::predict::PredictArgs),
    /// Write a trained model for PyTorch: timm's VisionTransformer names (fine-tuned) or
    /// MAE's (pre-trained), in f32, f16 or bf16.
    Export(commands::export::ExportArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    // candle 0.11's own thread pool spins against rayon's on small machines; the fused
    // kernels and the matrix products use rayon. Set before any candle call.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let cli = Cli::parse();
    // Under `mpirun` (a build with the `mpi` feature), MPI lives as long as the command:
    // every rank trains, rank 0 alone prints and writes (ranks from MPI, or from a
    // torchrun-style launcher's variables).
    #[cfg(feature = "mpi")]
    let _mpi = launched_by_mpi().then(mpi::initialize).flatten();
    let rank = miram_core::train::distributed::rank();
    let ui = ui::Ui::new(ui::Mode::from_flags(
        cli.global.quiet || rank != 0,
        cli.global.json_lines,
    ));
    // `miram bench --threads N` sizes the pool before the command runs on it.
    // A count outside 1..=cores is left to the command, which refuses it with its message.
    if let Command::Bench(a) = &cli.command {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if let Some(t) = a.threads.filter(|t| (1..=cores).contains(t)) {
            std::env::set_var("RAYON_NUM_THREADS", t.to_string());
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build_global()
                .ok();
        }
    }
    // The command runs on a worker of the pool: see `miram_core::nn::ops::on_pool`.
    let result = miram_core::nn::ops::on_pool(|| run(cli, &ui));
    ui.clear();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui.error(&ui::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Whether an MPI launcher (OpenMPI's `mpirun`, or a PMI/PMIx one such as Slurm's `srun`)
/// started this process.
#[cfg(feature = "mpi")]
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|k| std::env::var_os(k).is_some())
}

fn run(cli: Cli, ui: &ui::Ui) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Quickstart(a) => commands::quickstart::run(&a, g, ui),
        Command::Synth(a) => commands::synth::run(&a, g, ui),
        Command::Index(a) => commands::index::run(&a, g, ui),
        Command::Pretrain(a) => commands::pretrain::run(&a, g, ui),
        Command::Finetune(a) => commands::finetune::run(&a, g, ui),
        Command::Evaluate(a) => commands::evaluate::run(&a, g, ui),
        Command::Reconstruct(a) => commands::reconstruct::run(&a, g, ui),
        Command::Explain(a) => commands::explain::run(&a, g, ui),
        Command::Bench(a) => commands::bench::run(&a, g, ui),
        Command::Inspect(a) => commands::inspect::run(&a, ui),
        Command::Metrics(a) => commands::metrics::run(&a, g, ui),
        Command::Probe(a) => commands::probe::run(&a, g, ui),
        Command::Selftest(a) => commands::selftest::run(&a, g, ui),
        Command::Study(a) => commands::study::run(&a, g, ui),
        Command::Predict(a) => commands::predict::run(&a, g, ui),
        Command::Export(a) => commands::export::run(&a, g, ui),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
