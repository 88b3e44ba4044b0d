//! `--device cpu|cuda|cuda:N`.

use anyhow::{bail, Context};
use candle_core::Device;

/// The GPU of this process among those of its machine: the launcher's local rank
/// (`LOCAL_RANK` of torchrun-style launchers, `OMPI_COMM_WORLD_LOCAL_RANK` of OpenMPI's
/// `mpirun`, `SLURM_LOCALID`), 0 for a process started alone.
fn local_rank() -> usize {
    ["LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Opens CUDA device `n`, with a message that says what is missing: the `cuda` feature in
/// this build, or (in a CUDA build) a GPU and its driver. candle's error is cut to its first
/// line (it carries a backtrace).
fn cuda(n: usize) -> anyhow::Result<Device> {
    Device::new_cuda(n).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or_default().trim().to_string();
        if cfg!(feature = "cuda") {
            anyhow::anyhow!(
                "cuda:{n}: no usable GPU ({first}); a CUDA build needs an NVIDIA GPU and its driver library libcuda.so.1, with the CUDA runtime, cuBLAS and cuRAND libraries on LD_LIBRARY_PATH (see docs/gpu.md)"
            )
        } else {
            anyhow::anyhow!("cuda:{n}: this miram was built without CUDA; build it with `cargo build --release --features cuda` (see docs/gpu.md)")
        }
    })
}

/// Parses a device name: `cpu`, `cuda` (the process's GPU: its local rank under a launcher,
/// else GPU 0) or `cuda:N`.
pub fn parse(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(local_rank()),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().with_context(|| {
                format!("invalid device `{s}`: expected cuda:N with N a number")
            })?;
            cuda(n)
        }
        s => bail!("unknown device `{s}`; use cpu, cuda or cuda:N"),
    }
}
