//! Data parallelism: every gradient passes through one all-reduce point between the backward
//! passes (and gradient accumulation) and the optimiser step, and the sampler shards each
//! epoch by rank. [`SingleProcess`] is the identity; with the `mpi` feature, [`Mpi`] runs the
//! collectives over MPI (`mpirun -np N miram pretrain ...`). See `docs/distributed.md`.

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
    /// Waits until every process has reached this point (the run folder is ready before the
    /// other ranks read it).
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
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

/// The all-reduce for the environment: [`Mpi`] when MPI is initialised (a build with the
/// `mpi` feature started by `mpirun`; the binary initialises MPI); else [`SingleProcess`]
/// when `WORLD_SIZE` is 1 or unset, and an error for more processes without MPI.
pub fn from_env() -> Result<Box<dyn AllReduce>> {
    #[cfg(feature = "mpi")]
    if mpi::environment::is_initialized() {
        return Ok(Box::new(Mpi::world()));
    }
    let (_, world) = rank_from_env()?;
    if let Some(n) = launcher_world_size().filter(|&n| n > 1) {
        return Err(Error::Train(format!(
            "an MPI launcher started {n} processes, but this binary has no MPI: build it with `--features mpi` (each process would otherwise train a model of its own)"
        )));
    }
    if world == 1 {
        Ok(Box::new(SingleProcess))
    } else {
        Err(Error::Train(format!(
            "WORLD_SIZE={world}: several processes train one model through MPI: build with `--features mpi` and start with `mpirun -np {world} miram ...`"
        )))
    }
}

/// The number of processes an MPI launcher (OpenMPI's `mpirun`, PMI or PMIx ones such as
/// Slurm's `srun`) says it started, if one started this process.
fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// The positions, in the global micro-batch of every process together, of this process's
/// `n` samples: the sampler gives rank `r` of `world` the epoch's samples `r, r + world, ...`
/// (PyTorch's `DistributedSampler`), so its `k`-th sample of a micro-batch is the
/// `r + k * world`-th of the micro-batch one process with `world` times the batch would see.
/// Every per-sample random draw is keyed by this position, so that the same seed and global
/// batch train the same model whatever the number of processes.
pub fn global_positions(rank: usize, world: usize, n: usize) -> Vec<usize> {
    (0..n).map(|k| rank + k * world.max(1)).collect()
}

#[cfg(feature = "mpi")]
pub use self::mpi_backend::{Mpi, BUCKET_BYTES};

#[cfg(feature = "mpi")]
#[path = "mpi.rs"]
mod mpi_backend;

#[cfg(test)]
mod tests {
    use super::global_positions;

    #[test]
    fn global_positions_interleave_the_ranks_as_the_sampler_does() {
        assert_eq!(global_positions(0, 1, 3), [0, 1, 2]);
        assert_eq!(global_positions(0, 2, 3), [0, 2, 4]);
        assert_eq!(global_positions(1, 2, 3), [1, 3, 5]);
        // Every position of the global batch belongs to exactly one rank.
        let mut all: Vec<usize> = (0..4).flat_map(|r| global_positions(r, 4, 5)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
    }
}
