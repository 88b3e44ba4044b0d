//! The all-reduce over MPI (rsmpi over the system's MPI library, e.g. Debian's OpenMPI):
//! gradients are flattened into a few large `f32` buckets, each summed with one
//! `MPI_Allreduce` over `MPI_COMM_WORLD` and divided by the number of processes.
//!
//! The binary initialises MPI (`mpi::initialize`) and keeps its `Universe` for the whole
//! run; this type only names the world communicator. A process that dies makes MPI's runtime
//! (OpenMPI's `mpirun`) stop the others with an error instead of leaving them waiting in a
//! collective; the run then resumes from its last checkpoint.

use candle_core::Tensor;
use mpi::collective::{CommunicatorCollectives, SystemOperation};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::AllReduce;
use crate::optim::Grads;
use crate::Result;

/// Bytes per all-reduce bucket (as PyTorch's DDP, 25 MB): few collectives, bounded buffers.
pub const BUCKET_BYTES: usize = 25 << 20;

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
        // The same order on every process: the set's (sorted) names.
        let names: Vec<String> = grads.iter().map(|(n, _)| n.clone()).collect();
        let per_bucket = (BUCKET_BYTES / size_of::<f32>()).max(1);
        let inv = 1.0 / self.world as f32;
        let mut start = 0;
        while start < names.len() {
            // One bucket: whole tensors up to the bucket size (at least one tensor).
            let mut buf: Vec<f32> = Vec::new();
            let mut end = start;
            while end < names.len() {
                let g = grads.get(&names[end]).map_or(0, Tensor::elem_count);
                if end > start && buf.len() + g > per_bucket {
                    break;
                }
                if let Some(t) = grads.get(&names[end]) {
                    let flat = t.flatten_all()?.to_dtype(candle_core::DType::F32)?;
                    buf.extend(flat.to_vec1::<f32>()?);
                }
                end += 1;
            }
            sum_in_place(&mut buf);
            let mut offset = 0;
            // `iter_mut` walks the same sorted names: this bucket's are `start..end`.
            for (_, g) in grads.iter_mut().skip(start).take(end - start) {
                let n = g.elem_count();
                let mean: Vec<f32> = buf[offset..offset + n].iter().map(|v| v * inv).collect();
                *g = Tensor::from_vec(mean, g.dims(), g.device())?.to_dtype(g.dtype())?;
                offset += n;
            }
            start = end;
        }
        Ok(())
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
