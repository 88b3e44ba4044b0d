//! The all-reduce over MPI (rsmpi over the system's MPI library, e.g. Debian's OpenMPI):
//! gradients are flattened into a few large `f32` buckets
//! ([`super::all_reduce_in_buckets`]), each summed with one `MPI_Allreduce` over
//! `MPI_COMM_WORLD` and divided by the number of processes. Also the broadcast of NCCL's
//! unique id under `mpirun` ([`broadcast_from_root`]).
//!
//! The binary initialises MPI (`mpi::initialize`) and keeps its `Universe` for the whole
//! run; this type only names the world communicator. A process that dies makes MPI's runtime
//! (OpenMPI's `mpirun`) stop the others with an error instead of leaving them waiting in a
//! collective; the run then resumes from its last checkpoint.

use candle_core::Tensor;
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::{all_reduce_in_buckets, AllReduce, BUCKET_BYTES};
use crate::optim::Grads;
use crate::Result;

/// The processes of `MPI_COMM_WORLD`.
#[derive(Debug, Clone, Copy)]
pub struct Mpi {
    rank: usize,
    world: usize,
}

impl Mpi {
    /// The world communicator. MPI must be initialised (`mpi::environment::is_initialized`,
    /// which [`super::from_env`] checks); MPI itself aborts otherwise.
    pub fn world() -> Self {
        let c = SimpleCommunicator::world();
        Self {
            rank: c.rank() as usize,
            world: c.size() as usize,
        }
    }
}

/// Sums `buf` over the processes in place.
fn sum_in_place(buf: &mut Vec<f32>) {
    let mut out = vec![0f32; buf.len()];
    SimpleCommunicator::world().all_reduce_into(&buf[..], &mut out[..], SystemOperation::sum());
    *buf = out;
}

/// Gives every process rank 0's `buf` (`MPI_Bcast` over `MPI_COMM_WORLD`). MPI must be
/// initialised.
#[cfg_attr(not(feature = "nccl"), allow(dead_code))]
pub(super) fn broadcast_from_root(buf: &mut [u8]) {
    SimpleCommunicator::world()
        .process_at_rank(0)
        .broadcast_into(buf);
}

impl AllReduce for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_mean(&self, grads: &mut Grads) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        let inv = 1.0 / self.world as f32;
        // Through host memory: no CUDA-aware MPI is assumed.
        all_reduce_in_buckets(grads, BUCKET_BYTES, |bucket| {
            let mut buf = bucket.to_vec1::<f32>()?;
            sum_in_place(&mut buf);
            let mean: Vec<f32> = buf.iter().map(|v| v * inv).collect();
            Ok(Tensor::from_vec(mean, bucket.dims(), bucket.device())?)
        })
    }

    fn mean_scalar(&self, value: f64) -> Result<f64> {
        if self.world == 1 {
            return Ok(value);
        }
        let mut sum = 0f64;
        SimpleCommunicator::world().all_reduce_into(&value, &mut sum, SystemOperation::sum());
        Ok(sum / self.world as f64)
    }

    fn barrier(&self) -> Result<()> {
        SimpleCommunicator::world().barrier();
        Ok(())
    }
}
