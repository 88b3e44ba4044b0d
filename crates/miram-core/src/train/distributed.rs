//! Data parallelism, designed in: every gradient passes through one all-reduce point between
//! the backward passes (and gradient accumulation) and the optimiser step, and the sampler
//! shards each epoch by rank. This process-local implementation is the identity; an NCCL
//! implementation (candle's `nccl` feature, one process per GPU, ranks from `RANK`,
//! `WORLD_SIZE` and `LOCAL_RANK`) plugs in behind the same trait. See
//! `docs/distributed.md`.

use crate::optim::Grads;
use crate::{Error, Result};

/// The collective operations training needs.
pub trait AllReduce: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Replaces every gradient by its mean over the processes.
    fn all_reduce_mean(&self, grads: &mut Grads) -> Result<()>;
    /// The mean of a scalar over the processes (losses and metrics for logging).
    fn mean_scalar(&self, value: f64) -> Result<f64>;
}

/// One process: the all-reduce is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl AllReduce for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&self, _grads: &mut Grads) -> Result<()> {
        Ok(())
    }
    fn mean_scalar(&self, value: f64) -> Result<f64> {
        Ok(value)
    }
}

/// The rank and world size the launcher set (`RANK`, `WORLD_SIZE`), `(0, 1)` when unset.
pub fn rank_from_env() -> Result<(usize, usize)> {
    let get = |k: &str| -> Result<Option<usize>> {
        match std::env::var(k) {
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::Train(format!("{k}={v} is not a number"))),
            Err(_) => Ok(None),
        }
    };
    let rank = get("RANK")?.unwrap_or(0);
    let world = get("WORLD_SIZE")?.unwrap_or(1);
    if world == 0 || rank >= world {
        return Err(Error::Train(format!(
            "RANK={rank} is not below WORLD_SIZE={world}"
        )));
    }
    Ok((rank, world))
}

/// The all-reduce for the environment: [`SingleProcess`] when `WORLD_SIZE` is 1 or unset;
/// more processes need the NCCL backend, which this build does not include.
pub fn from_env() -> Result<Box<dyn AllReduce>> {
    let (_, world) = rank_from_env()?;
    if world == 1 {
        Ok(Box::new(SingleProcess))
    } else {
        Err(Error::Train(format!(
            "WORLD_SIZE={world}: multi-process training needs the NCCL all-reduce (the `nccl` feature), not built in this binary"
        )))
    }
}
