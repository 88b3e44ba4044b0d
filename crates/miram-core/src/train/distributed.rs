//! Data parallelism: every gradient passes through one all-reduce point between the backward
//! passes (and gradient accumulation) and the optimiser step, and the sampler shards each
//! epoch by rank. [`SingleProcess`] is the identity; with the `mpi` feature, [`Mpi`] runs the
//! collectives over MPI (`mpirun -np N miram pretrain ...`); with the `nccl` feature,
//! [`Nccl`] runs them on the GPUs (one process per GPU). [`for_device`] picks one for a
//! training device. The gradients of both travel in the same `f32` buckets
//! ([`BUCKET_BYTES`]). See `docs/distributed.md`.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use crate::optim::Grads;
use crate::{Error, Result};

pub use self::launch::{
    read_id_file, write_id_file, Launch, Launcher, ID_FILE_TIMEOUT, ID_FILE_VAR,
};

#[path = "launch.rs"]
mod launch;

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

/// The all-reduce for the environment: [`Mpi`] when MPI is initialised (a build with the
/// `mpi` feature started by `mpirun`; the binary initialises MPI); else [`SingleProcess`]
/// when the launcher started one process ([`Launch::from_env`]), and an error for more
/// processes without MPI. For training, [`for_device`] also considers NCCL.
pub fn from_env() -> Result<Box<dyn AllReduce>> {
    #[cfg(feature = "mpi")]
    if mpi::environment::is_initialized() {
        return Ok(Box::new(Mpi::world()));
    }
    let launch = Launch::from_env()?;
    if let Some(n) = launcher_world_size().filter(|&n| n > 1) {
        return Err(Error::Train(format!(
            "an MPI launcher started {n} processes, but this binary has no MPI: build it with `--features mpi` (each process would otherwise train a model of its own)"
        )));
    }
    if launch.world == 1 {
        Ok(Box::new(SingleProcess))
    } else {
        Err(Error::Train(format!(
            "WORLD_SIZE={}: several processes train one model through MPI (build with `--features mpi` and start with `mpirun -np {} miram ...`) or, on GPUs, through NCCL (build with `--features nccl` and train with `--device cuda`)",
            launch.world, launch.world
        )))
    }
}

/// The all-reduce for training on `device`: with the `nccl` feature, [`Nccl`] on a CUDA device
/// under a launcher (ranks from MPI under `mpirun` in a build with the `mpi` feature, else
/// from [`Launch::from_env`]; one rank too); several processes on the CPU without MPI are
/// refused there. Everything else as [`from_env`].
pub fn for_device(device: &Device) -> Result<Box<dyn AllReduce>> {
    #[cfg(feature = "nccl")]
    if let Some(nccl) = nccl_backend::select(device)? {
        return Ok(nccl);
    }
    #[cfg(not(feature = "nccl"))]
    let _ = device;
    from_env()
}

/// This process's rank, for deciding who prints and writes: MPI's when MPI is initialised,
/// else the launcher's ([`Launch::from_env`]); 0 for a process started alone or with invalid
/// launcher variables (the training command then refuses them with their message).
pub fn rank() -> usize {
    #[cfg(feature = "mpi")]
    if mpi::environment::is_initialized() {
        return Mpi::world().rank();
    }
    Launch::from_env().map_or(0, |l| l.rank)
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

/// Bytes per all-reduce bucket (as PyTorch's DDP, 25 MB): few collectives, bounded buffers.
pub const BUCKET_BYTES: usize = 25 << 20;

/// The buckets of an all-reduce: consecutive ranges of the tensors (of `sizes` elements, in
/// order), each of whole tensors up to `per_bucket` elements in all; a larger tensor is a
/// bucket of its own. Every tensor is in exactly one bucket.
pub fn buckets(sizes: &[usize], per_bucket: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut total = sizes[start];
        let mut end = start + 1;
        while end < sizes.len() && total + sizes[end] <= per_bucket {
            total += sizes[end];
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Replaces every gradient by `mean` of its bucket: the gradients, in name order (the same on
/// every process), are flattened to `f32` (a `bf16` or `f16` gradient is converted) and
/// concatenated on their device into buckets of at most `bucket_bytes` ([`buckets`]); `mean`
/// turns each bucket into its mean over the processes (one collective per bucket), and the
/// result is cut back into the gradients, in their own shapes and dtypes.
///
/// # Shapes
/// `mean` takes and returns a 1-D `f32` tensor of the bucket's length `n`: `(n,) -> (n,)`.
#[cfg_attr(not(any(feature = "mpi", feature = "nccl")), allow(dead_code))]
pub(crate) fn all_reduce_in_buckets(
    grads: &mut Grads,
    bucket_bytes: usize,
    mut mean: impl FnMut(Tensor) -> Result<Tensor>,
) -> Result<()> {
    let sizes: Vec<usize> = grads.iter().map(|(_, g)| g.elem_count()).collect();
    let per_bucket = (bucket_bytes / size_of::<f32>()).max(1);
    let ranges = buckets(&sizes, per_bucket);
    let mut reduced: Vec<Tensor> = Vec::with_capacity(sizes.len());
    for range in &ranges {
        let flat = grads
            .iter()
            .skip(range.start)
            .take(range.len())
            .map(|(_, g)| g.flatten_all()?.to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let n: usize = sizes[range.clone()].iter().sum();
        let bucket = mean(Tensor::cat(&flat, 0)?)?;
        if bucket.dims() != [n] {
            return Err(Error::Train(format!(
                "an all-reduce bucket of {n} values came back with shape {:?}",
                bucket.dims()
            )));
        }
        let mut offset = 0;
        for &k in &sizes[range.clone()] {
            reduced.push(bucket.narrow(0, offset, k)?);
            offset += k;
        }
    }
    // `iter_mut` walks the same sorted names as `iter` above.
    for ((_, g), r) in grads.iter_mut().zip(reduced) {
        *g = r.reshape(g.dims())?.to_dtype(g.dtype())?;
    }
    Ok(())
}

#[cfg(feature = "mpi")]
pub use self::mpi_backend::Mpi;

#[cfg(feature = "mpi")]
#[path = "mpi.rs"]
mod mpi_backend;

#[cfg(feature = "nccl")]
pub use self::nccl_backend::{single_rank_check as nccl_single_rank_check, Nccl};

#[cfg(feature = "nccl")]
#[path = "nccl.rs"]
mod nccl_backend;

#[cfg(test)]
mod tests {
    use super::{all_reduce_in_buckets, buckets, global_positions, Grads};
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn buckets_hold_whole_tensors_up_to_the_bucket_size() {
        // 10 elements a bucket: 4 + 6 fill one, 3 + 7 the next; 12 is alone; 1 does not fit
        // beside 12.
        assert_eq!(buckets(&[4, 6, 3, 7, 12, 1], 10), [0..2, 2..4, 4..5, 5..6]);
        assert_eq!(buckets(&[4, 6, 3, 8], 10), [0..2, 2..3, 3..4]);
        // 9 elements fit one bucket exactly.
        let one = buckets(&[3, 3, 3], 9);
        assert_eq!((one.len(), one.first()), (1, Some(&(0..3))));
        assert!(buckets(&[], 9).is_empty());
        // Every tensor in exactly one bucket, in order, whatever the sizes.
        let sizes = [5, 1, 9, 2, 2, 8, 3, 0, 4];
        for per in 1..20 {
            let b = buckets(&sizes, per);
            assert_eq!(b.first().map(|r| r.start), Some(0));
            assert_eq!(b.last().map(|r| r.end), Some(sizes.len()));
            for w in b.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for r in &b {
                let total: usize = sizes[r.clone()].iter().sum();
                assert!(r.len() == 1 || total <= per, "{r:?} of {per}");
            }
        }
    }

    #[test]
    fn all_reduce_in_buckets_maps_every_gradient_through_its_bucket() {
        let dev = Device::Cpu;
        let mut grads = Grads::new();
        // Names sort as a, b, c: 6 + 2 values (32 bytes: one bucket), then 12 alone.
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect();
        grads.insert("a", Tensor::from_vec(a, (2, 3), &dev).expect("a"));
        let b = Tensor::from_vec(vec![0.5f32, -1.5], 2, &dev).expect("b");
        grads.insert("b", b.to_dtype(DType::BF16).expect("bf16"));
        let c: Vec<f32> = (0..12).map(|i| 10.0 + i as f32).collect();
        grads.insert("c", Tensor::from_vec(c, (3, 2, 2), &dev).expect("c"));
        let mut seen = Vec::new();
        // A stand-in for the mean over processes: each value times 2, plus its bucket's index.
        all_reduce_in_buckets(&mut grads, 32, |bucket| {
            assert_eq!(bucket.dtype(), DType::F32);
            seen.push(bucket.to_vec1::<f32>()?);
            Ok(bucket.affine(2.0, (seen.len() - 1) as f64)?)
        })
        .expect("all-reduce");
        assert_eq!(
            seen,
            [
                vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5, -1.5],
                (0..12).map(|i| 10.0 + i as f32).collect::<Vec<_>>()
            ]
        );
        let get = |n: &str| grads.get(n).expect("gradient").clone();
        assert_eq!(get("a").dims(), [2, 3]);
        assert_eq!(
            get("a")
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("a"),
            [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        // The bf16 gradient comes back in bf16 (1.0 and -3.0 are exact in bf16).
        assert_eq!(get("b").dtype(), DType::BF16);
        assert_eq!(
            get("b")
                .to_dtype(DType::F32)
                .and_then(|t| t.to_vec1::<f32>())
                .expect("b"),
            [1.0, -3.0]
        );
        assert_eq!(get("c").dims(), [3, 2, 2]);
        let c: Vec<f32> = (0..12).map(|i| 2.0 * (10.0 + i as f32) + 1.0).collect();
        assert_eq!(
            get("c")
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("c"),
            c
        );
    }

    #[test]
    fn all_reduce_in_buckets_refuses_a_bucket_of_another_length() {
        let mut grads = Grads::new();
        grads.insert("a", Tensor::zeros(4, DType::F32, &Device::Cpu).expect("a"));
        let e = all_reduce_in_buckets(&mut grads, 1 << 20, |b| Ok(b.narrow(0, 0, 3)?))
            .expect_err("short bucket")
            .to_string();
        assert!(
            e.contains("bucket of 4 values came back with shape [3]"),
            "{e}"
        );
    }

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
