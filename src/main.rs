//! `miram`: the command line of MIRAM in Rust (multi-scale masked image modelling for
//! mammography; Vo et al., arXiv 2503.07157).

mod commands;

use clap::{Parser, Subcommand};

/// MIRAM: multi-scale masked image modelling for mammography.
#[derive(Debug, Parser)]
#[command(name = "miram", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time pre-training steps of a preset and print one JSON line (the fields of
    /// shared/reference/bench_torch.py, plus peak memory).
    Bench(commands::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(a) => commands::bench::run(&a),
    }
}
