//! Peak memory of one decoder forward and backward pass per attention kind at 785, 3137 and
//! 12545 tokens: the decoder of `benches/decoder.rs` (one block, width 512, 16 heads, batch 1,
//! a 14 x 14 grid decoded at 2x, 4x and 8x).
//!
//! ```sh
//! cargo run --release --example decoder_memory                 # the whole table
//! MIRAM_BENCH_QUICK=1 cargo run --release --example decoder_memory   # 785 tokens only
//! cargo run --release --example decoder_memory -- --one softmax 3137 # one point, one line
//! ```
//!
//! Peak resident memory (`VmHWM`) belongs to a process, so the table runs this program once per
//! point with `--one KIND TOKENS`. Such a child builds the decoder and its inputs, reads its
//! peak, runs one forward and backward pass, reads its peak again and prints one line
//! `POINT {json}`: the peak before the pass, the peak after it, their difference (what the
//! pass needs) and the pass's time. The parent prints a markdown table. Before each point it
//! bounds the point's memory from the previous, smaller point of the same kind (memory grows
//! at most quadratically with the tokens: `total x (tokens / previous tokens)^2`) and skips
//! it, saying so, when that bound exceeds the memory available; a child that fails anyway
//! (killed when memory runs out, an error) is reported in its row. The process is set up as
//! the `miram` command line (mimalloc, `CANDLE_NUM_THREADS=1` when unset).

#[path = "../benches/common/mod.rs"]
mod common;

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use candle_core::Device;
use miram_core::bench::{available_memory, peak_rss_mib};
use serde::{Deserialize, Serialize};

/// The decoder scales measured (785, 3137 and 12545 tokens).
const SCALES: [usize; 3] = [2, 4, 8];

/// Prefix of the child's result line.
const MARK: &str = "POINT ";

/// What one child measured.
#[derive(Debug, Serialize, Deserialize)]
struct Point {
    kind: String,
    tokens: usize,
    /// Peak resident memory before the pass (weights, inputs, the runtime), MiB.
    before_mib: f64,
    /// Peak resident memory after the pass, MiB.
    peak_mib: f64,
    /// `peak_mib - before_mib`: what the pass added at its peak, MiB.
    pass_mib: f64,
    /// Wall time of the forward and backward pass, seconds.
    seconds: f64,
    /// Worker threads of the rayon pool.
    threads: usize,
}

fn main() -> ExitCode {
    common::cli_threads();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => table(),
        [flag, kind, tokens] if flag == "--one" => one(kind, tokens),
        _ => Err(anyhow!(
            "unexpected arguments {args:?}: run without arguments for the table, or \
             `--one KIND TOKENS` for one point"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The kinds' names, for messages.
fn kind_names() -> String {
    common::kinds()
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scale whose decoder has `tokens` tokens.
fn scale_of(tokens: usize) -> Option<usize> {
    (1..=64).find(|&s| common::decoder_tokens(s) == tokens)
}

/// The child: one forward and backward pass, one `POINT` line.
fn one(kind: &str, tokens: &str) -> anyhow::Result<()> {
    let attention = common::kind(kind)
        .ok_or_else(|| anyhow!("unknown attention kind {kind:?}: one of {}", kind_names()))?;
    let allowed = || {
        (1..=8)
            .map(|s| common::decoder_tokens(s).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let n: usize = tokens.parse().map_err(|_| {
        anyhow!(
            "TOKENS {tokens:?} is not a whole number: (14 s)^2 + 1 for a scale s, e.g. {}",
            allowed()
        )
    })?;
    let s = scale_of(n).ok_or_else(|| {
        anyhow!(
            "TOKENS {n} is not (14 s)^2 + 1 for a scale s from 1 to 64: e.g. {}",
            allowed()
        )
    })?;
    let dev = Device::Cpu;
    let (dec, x, cls) = common::decoder(&attention, s, &dev)?;
    let before = peak_rss_mib().context("VmHWM of /proc/self/status is not readable")?;
    let start = Instant::now();
    let grads = common::decoder_fwd_bwd(&dec, &x, &cls)?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_mib().context("VmHWM of /proc/self/status is not readable")?;
    drop(grads);
    let point = Point {
        kind: kind.to_string(),
        tokens: n,
        before_mib: before,
        peak_mib: peak,
        pass_mib: ((peak - before) * 10.0).round() / 10.0,
        seconds: (seconds * 100.0).round() / 100.0,
        threads: rayon::current_num_threads(),
    };
    println!("{MARK}{}", serde_json::to_string(&point)?);
    Ok(())
}

/// One row of the table: measured, or why not.
enum Row {
    Measured(Point),
    Skipped(String),
}

/// The parent: every point in its own process, then the table.
fn table() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("the path of this program is not known")?;
    let scales: &[usize] = if common::quick() {
        &SCALES[..1]
    } else {
        &SCALES
    };
    let mut rows: Vec<(&'static str, usize, Row)> = Vec::new();
    for (kind, _) in common::kinds() {
        // The previous point of this kind: its tokens and total peak (MiB), if it ran.
        let mut previous: Option<(usize, f64)> = None;
        let mut earlier_failed = false;
        for &s in scales {
            let n = common::decoder_tokens(s);
            let row = if earlier_failed {
                Row::Skipped("not run: a smaller point of this kind was not measured".into())
            } else if let Some(why) = too_large(previous, n) {
                Row::Skipped(why)
            } else {
                eprintln!("measuring {kind} at {n} tokens");
                match child(&exe, kind, n) {
                    Ok(p) => Row::Measured(p),
                    Err(e) => Row::Skipped(format!("failed: {e:#}")),
                }
            };
            match &row {
                Row::Measured(p) => previous = Some((n, p.peak_mib)),
                Row::Skipped(_) => earlier_failed = true,
            }
            rows.push((kind, n, row));
        }
    }
    let threads = rows.iter().find_map(|(_, _, r)| match r {
        Row::Measured(p) => Some(p.threads),
        Row::Skipped(_) => None,
    });
    println!(
        "One decoder block, width {}, {} heads, batch 1, forward + backward{}:",
        common::DECODER_DIM,
        common::DECODER_HEADS,
        threads.map_or(String::new(), |t| format!(", {t} threads"))
    );
    println!();
    println!("| attention | tokens | peak of the pass | peak of the process | time |");
    println!("|---|---|---|---|---|");
    for (kind, n, row) in &rows {
        match row {
            Row::Measured(p) => println!(
                "| {kind} | {n} | {:.1} MiB | {:.1} MiB | {:.2} s |",
                p.pass_mib, p.peak_mib, p.seconds
            ),
            Row::Skipped(why) => println!("| {kind} | {n} | {} | | |", why.replace('|', "/")),
        }
    }
    Ok(())
}

/// Why the point of `n` tokens is not run, when its memory bound from the previous point
/// exceeds what is available.
fn too_large(previous: Option<(usize, f64)>, n: usize) -> Option<String> {
    let (m, peak_mib) = previous?;
    let available = available_memory()?;
    let ratio = n as f64 / m as f64;
    let bound = peak_mib * ratio * ratio * (1u64 << 20) as f64;
    (bound > available as f64).then(|| {
        format!(
            "not run: may need up to {:.1} GiB ({m} tokens took {peak_mib:.0} MiB; x {:.1} for \
             quadratic growth), {:.1} GiB available",
            bound / (1u64 << 30) as f64,
            ratio * ratio,
            available as f64 / (1u64 << 30) as f64
        )
    })
}

/// Runs `--one kind n` in a child process and reads its `POINT` line.
fn child(exe: &std::path::Path, kind: &str, n: usize) -> anyhow::Result<Point> {
    let out = Command::new(exe)
        .args(["--one", kind, &n.to_string()])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The first line of what it said: the error, the failed allocation or the panic (with
    // its message, on the next line), not the backtrace after it.
    let mut said = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let last = match said.next() {
        Some(l) if l.contains("panicked at") => {
            format!(": {l} {}", said.next().unwrap_or_default())
        }
        Some(l) => format!(": {l}"),
        None => String::new(),
    };
    if !out.status.success() {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = out.status.signal() {
                bail!(
                    "killed by signal {sig}{}{last}",
                    if sig == 9 {
                        " (likely out of memory)"
                    } else {
                        ""
                    }
                );
            }
        }
        bail!("{}{last}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .ok_or_else(|| anyhow!("the child printed no `{}` line", MARK.trim()))?;
    serde_json::from_str(line).with_context(|| format!("unreadable result line {line:?}"))
}
