//! `--device cpu|cuda:N`.

use anyhow::{bail, Context};
use candle_core::Device;

/// Parses a device name: `cpu`, `cuda` (GPU 0) or `cuda:N`.
pub fn parse(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).context("cuda:0 (build with --features cuda)"),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().with_context(|| {
                format!("invalid device `{s}`: expected cuda:N with N a number")
            })?;
            Device::new_cuda(n).with_context(|| format!("{s} (build with --features cuda)"))
        }
        s => bail!("unknown device `{s}`; use cpu, cuda or cuda:N"),
    }
}
