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

/// Parses a device name: `cpu`, `cuda` (the process's GPU: its local rank under a launcher,
/// else GPU 0) or `cuda:N`.
pub fn parse(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            let n = local_rank();
            Device::new_cuda(n).with_context(|| format!("cuda:{n} (build with --features cuda)"))
        }
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().with_context(|| {
                format!("invalid device `{s}`: expected cuda:N with N a number")
            })?;
            Device::new_cuda(n).with_context(|| format!("{s} (build with --features cuda)"))
        }
        s => bail!("unknown device `{s}`; use cpu, cuda or cuda:N"),
    }
}
