//! The all-reduce over NCCL (feature `nccl`: candle's `nccl` feature, cudarc's bindings), one
//! process per GPU: the gradients are flattened into `f32` buckets on the device
//! ([`super::all_reduce_in_buckets`], the buckets MPI uses), each summed with one
//! `ncclAllReduce` and scaled by `1 / world` on the device. Losses and the barrier go through
//! the same communicator.
//!
//! NCCL's communicator is not thread-safe, and cudarc's `Comm` is neither `Send` nor `Sync`:
//! it lives on a thread of its own (`miram-nccl`), which creates it, runs every collective
//! in the order they are asked for, and drops it when [`Nccl`] is dropped. The collectives
//! are queued on the candle device's own stream, so they run after the kernels that computed
//! the gradients and before those that read the result, without waiting on the host.
//!
//! The ranks come from MPI under `mpirun` in a build with the `mpi` feature (rank 0's unique
//! id broadcast over MPI), else from the launcher's variables ([`super::Launch`]), the id then
//! passing through the file `MIRAM_NCCL_ID_FILE` names ([`super::write_id_file`]).

use std::path::PathBuf;
use std::sync::mpsc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::cudarc::nccl::NcclType;
use candle_core::cuda_backend::CudaDType;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::{
    all_reduce_in_buckets, read_id_file, write_id_file, AllReduce, Launch, Launcher, BUCKET_BYTES,
    ID_FILE_TIMEOUT, ID_FILE_VAR,
};
use crate::optim::Grads;
use crate::{Error, Result};

/// Bytes of NCCL's unique id (`ncclUniqueId`).
const ID_BYTES: usize = 128;

/// One collective for the communicator's thread: the sum of a tensor over the processes.
struct Job {
    /// A contiguous `f32` or `f64` tensor on the communicator's device.
    tensor: Tensor,
    /// Where the sum goes.
    reply: mpsc::Sender<Result<Tensor>>,
}

/// The processes of one NCCL communicator, one CUDA device each.
#[derive(Debug)]
pub struct Nccl {
    rank: usize,
    world: usize,
    device: Device,
    jobs: mpsc::Sender<Job>,
}

/// The NCCL all-reduce for training on `device`, if this launch wants one: a launcher
/// (`mpirun`, or `RANK`/`WORLD_SIZE`) and a CUDA device. One rank (`WORLD_SIZE=1`) runs its
/// collectives through NCCL too (so that one GPU checks the backend); a process started
/// alone gets none. Several processes on the CPU with no MPI to run them are refused; with
/// MPI (under `mpirun`), a CPU device is left to [`super::Mpi`].
pub(super) fn select(device: &Device) -> Result<Option<Box<dyn AllReduce>>> {
    #[cfg(feature = "mpi")]
    if mpi::environment::is_initialized() {
        if !device.is_cuda() {
            return Ok(None);
        }
        let world = super::Mpi::world();
        let (rank, world) = (world.rank(), world.world_size());
        let id = IdExchange::Mpi.exchange(rank, world)?;
        return Ok(Some(Box::new(Nccl::new(device, rank, world, id)?)));
    }
    let launch = Launch::from_env()?;
    if launch.launcher == Launcher::Alone {
        return Ok(None);
    }
    if !device.is_cuda() {
        if launch.world == 1 {
            return Ok(None);
        }
        return Err(Error::Train(format!(
            "{} processes on the CPU: NCCL all-reduces CUDA tensors; train with `--device cuda` (one GPU per process), or run CPU processes over MPI (build with `--features mpi`, start with `mpirun`)",
            launch.world
        )));
    }
    if launch.world == 1 {
        let id = IdExchange::Alone.exchange(0, 1)?;
        return Ok(Some(Box::new(Nccl::new(device, 0, 1, id)?)));
    }
    let path = std::env::var_os(ID_FILE_VAR).map(PathBuf::from).ok_or_else(|| {
        Error::Train(format!(
            "{} processes over NCCL without MPI: rank 0 hands its NCCL id to the others through a file; set {ID_FILE_VAR} to the same path, on a folder every process sees, for every rank (or start with `mpirun` in a build with `--features mpi`)",
            launch.world
        ))
    })?;
    let id = IdExchange::File(path.clone()).exchange(launch.rank, launch.world)?;
    let nccl = Nccl::new(device, launch.rank, launch.world, id)?;
    if launch.rank == 0 {
        // Every rank has joined the communicator, so has read the id: a later launch must
        // not find this one's.
        std::fs::remove_file(&path).map_err(|e| Error::Io { path, source: e })?;
    }
    Ok(Some(Box::new(nccl)))
}

/// How rank 0's unique id reaches the other ranks.
enum IdExchange {
    /// One rank: nobody to hand it to.
    Alone,
    /// `MPI_Bcast` (MPI initialised).
    #[cfg(feature = "mpi")]
    Mpi,
    /// A file on a shared folder (`MIRAM_NCCL_ID_FILE`).
    File(PathBuf),
}

impl IdExchange {
    /// Rank 0 creates the id and hands it over; the others receive it.
    fn exchange(&self, rank: usize, world: usize) -> Result<Id> {
        let mut bytes = [0u8; ID_BYTES];
        if rank == 0 {
            let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
            for (b, c) in bytes.iter_mut().zip(id.internal()) {
                *b = *c as u8;
            }
        }
        match self {
            IdExchange::Alone => {}
            #[cfg(feature = "mpi")]
            IdExchange::Mpi => super::mpi_backend::broadcast_from_root(&mut bytes),
            IdExchange::File(path) if rank == 0 => write_id_file(path, world, &bytes)?,
            IdExchange::File(path) => {
                let read = read_id_file(path, world, ID_BYTES, ID_FILE_TIMEOUT)?;
                bytes.copy_from_slice(&read);
            }
        }
        let mut internal = [0 as std::ffi::c_char; ID_BYTES];
        for (c, b) in internal.iter_mut().zip(bytes) {
            *c = b as std::ffi::c_char;
        }
        Ok(Id::uninit(internal))
    }
}

/// An NCCL error of `what` as this crate's error.
fn nccl_error(what: &str, e: candle_core::cuda_backend::cudarc::nccl::result::NcclError) -> Error {
    Error::Train(format!("NCCL: {what} failed: {:?}", e.0))
}

impl Nccl {
    /// Joins the communicator of `world` processes with unique id `id` as `rank`, on the CUDA
    /// device `device` (blocks until every rank has joined).
    pub fn new(device: &Device, rank: usize, world: usize, id: Id) -> Result<Self> {
        let stream = device.as_cuda_device()?.cuda_stream();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, joined) = mpsc::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("miram-nccl".into())
            .spawn(move || {
                // NCCL takes the device from the thread's current context.
                let comm = stream
                    .context()
                    .bind_to_thread()
                    .map_err(|e| Error::Train(format!("NCCL: binding the CUDA context: {e}")))
                    .and_then(|()| {
                        Comm::from_rank(stream, rank, world, id)
                            .map_err(|e| nccl_error("ncclCommInitRank", e))
                    });
                let comm = match comm {
                    Ok(c) => c,
                    Err(e) => {
                        ready.send(Err(e)).ok();
                        return;
                    }
                };
                ready.send(Ok(())).ok();
                for job in queue {
                    let sum = job.tensor.apply_op1_no_bwd(&Sum(&comm));
                    job.reply.send(sum.map_err(Error::from)).ok();
                }
            })
            .map_err(|e| Error::Train(format!("NCCL: starting its thread: {e}")))?;
        joined
            .recv()
            .map_err(|_| Error::Train("NCCL: its thread stopped while joining".into()))??;
        Ok(Self {
            rank,
            world,
            device: device.clone(),
            jobs,
        })
    }

    /// The sum over the processes of `t` (`f32` or `f64`, on this device).
    fn sum(&self, t: Tensor) -> Result<Tensor> {
        let (reply, answer) = mpsc::channel();
        let gone = || Error::Train("NCCL: the communicator's thread has stopped".into());
        self.jobs
            .send(Job {
                tensor: t.contiguous()?,
                reply,
            })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl AllReduce for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    // One rank runs its collectives through NCCL too (a sum over one rank is the value, the
    // scale 1): a single GPU checks the backend.
    fn all_reduce_mean(&self, grads: &mut Grads) -> Result<()> {
        let inv = 1.0 / self.world as f64;
        all_reduce_in_buckets(grads, BUCKET_BYTES, |bucket| {
            Ok(self.sum(bucket)?.affine(inv, 0.0)?)
        })
    }

    fn mean_scalar(&self, value: f64) -> Result<f64> {
        let sum = self.sum(Tensor::new(&[value], &self.device)?)?;
        Ok(sum.to_vec1::<f64>()?[0] / self.world as f64)
    }

    fn barrier(&self) -> Result<()> {
        // A tiny all-reduce, read back: every rank has reached it once the value arrives.
        let one = Tensor::ones(1, DType::F32, &self.device)?;
        let n = self.sum(one)?.to_vec1::<f32>()?[0];
        if n as usize != self.world {
            return Err(Error::Train(format!(
                "NCCL barrier: {n} processes answered, not {}",
                self.world
            )));
        }
        Ok(())
    }
}

/// `ncclAllReduce` (sum) of a contiguous tensor as candle's custom op: a new device buffer
/// with the sum over the processes, on the communicator's stream (the device's).
struct Sum<'a>(&'a Comm);

impl CustomOp1 for Sum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL all-reduces CUDA tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("NCCL all-reduce of a non-contiguous tensor")
        };
        let out = match s.dtype() {
            DType::F32 => sum_slice::<f32>(self.0, s, start, end)?,
            DType::F64 => sum_slice::<f64>(self.0, s, start, end)?,
            dt => candle_core::bail!("NCCL all-reduce of {dt:?}: f32 and f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
}

/// The sum over the processes of `s[start..end]`, in a new buffer.
fn sum_slice<T>(
    comm: &Comm,
    s: &CudaStorage,
    start: usize,
    end: usize,
) -> candle_core::Result<CudaStorage>
where
    T: CudaDType
        + NcclType
        + candle_core::cuda_backend::cudarc::driver::DeviceRepr
        + candle_core::cuda_backend::cudarc::driver::ValidAsZeroBits,
{
    let src = s.as_cuda_slice::<T>()?.slice(start..end);
    let mut dst = comm
        .stream()
        .alloc_zeros::<T>(end - start)
        .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce buffer: {e}")))?;
    comm.all_reduce(&src, &mut dst, &ReduceOp::Sum)
        .map_err(|e| candle_core::Error::Msg(format!("ncclAllReduce failed: {:?}", e.0)))?;
    Ok(CudaStorage::wrap_cuda_slice(dst, s.device.clone()))
}

/// One rank on `device` with every collective through NCCL, checked against what one
/// process must give (the sum over one rank is the identity): an all-reduce of an `f32`
/// gradient, a `bf16` one and one of 28 MiB (a bucket of its own beyond the 25 MiB of the
/// others), `mean_scalar` and `barrier`. What `miram selftest` runs in a `nccl` build on a
/// GPU; returns what it checked.
pub fn single_rank_check(device: &Device) -> Result<String> {
    let nccl = Nccl::new(device, 0, 1, IdExchange::Alone.exchange(0, 1)?)?;
    let mut problems = Vec::new();
    if (nccl.rank(), nccl.world_size()) != (0, 1) {
        problems.push(format!("rank {} of {}", nccl.rank(), nccl.world_size()));
    }
    let a = [1.0f32, -2.0, 3.5];
    let b = [[0.5f32, -1.5], [2.0, 4.0]];
    let n = 7 << 20;
    let c: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.25).collect();
    let mut grads = Grads::new();
    grads.insert("a", Tensor::new(&a, device)?);
    grads.insert("b", Tensor::new(&b, device)?.to_dtype(DType::BF16)?);
    grads.insert("c", Tensor::from_vec(c.clone(), (n / 4, 4), device)?);
    nccl.all_reduce_mean(&mut grads)?;
    let get = |k: &str| {
        grads
            .get(k)
            .cloned()
            .ok_or_else(|| Error::Train(format!("NCCL check: gradient `{k}` is gone")))
    };
    if get("a")?.to_vec1::<f32>()? != a {
        problems.push("the f32 gradient changed".to_string());
    }
    let gb = get("b")?;
    if gb.dtype() != DType::BF16 || gb.to_dtype(DType::F32)?.to_vec2::<f32>()? != b {
        problems.push(format!(
            "the bf16 gradient came back as {:?}, changed",
            gb.dtype()
        ));
    }
    let gc = get("c")?;
    if gc.dims() != [n / 4, 4] || gc.flatten_all()?.to_vec1::<f32>()? != c {
        problems.push("the 28 MiB gradient changed".to_string());
    }
    let mean = nccl.mean_scalar(2.75)?;
    if mean != 2.75 {
        problems.push(format!("mean_scalar(2.75) = {mean}"));
    }
    nccl.barrier()?;
    if !problems.is_empty() {
        return Err(Error::Train(format!(
            "NCCL one-rank check: {}",
            problems.join("; ")
        )));
    }
    Ok(format!(
        "one rank: all-reduce of f32, bf16 and 28 MiB gradients unchanged (buckets of {} MiB), mean_scalar, barrier",
        BUCKET_BYTES >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test --release --features nccl -p miram-core --lib nccl -- --ignored` on a
    /// machine with a GPU.
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn one_rank_all_reduces_through_nccl_to_the_same_values() -> Result<()> {
        single_rank_check(&Device::new_cuda(0)?)?;
        Ok(())
    }
}
