//! The training engine: pre-training, fine-tuning and evaluation as resumable, deterministic
//! runs, from a dataset root to reported AP and AUC.
//!
//! - [`data`]: index, crop cache, pre-training and task datasets, splits.
//! - [`pretrain()`] and [`finetune()`]: the runs, with a [`RunDir`] (resolved
//!   `config.json`, `log.jsonl` of every step and evaluation, atomic checkpoints keeping the
//!   last K and the best) and an [`Observer`] receiving progress [`Event`]s.
//! - [`evaluate()`], [`compare()`]: figures with bootstrap intervals, DeLong's test,
//!   predictions as CSV.
//! - [`inference`]: a fine-tuned classifier on new inputs (crop files, full images with
//!   an ROI mask or box), made as its training crops were.
//! - [`distributed`]: the all-reduce point of data parallelism.
//! - [`placement`]: the device audit of a run's first step.
//!
//! Every random stream is keyed by `(seed, stream, step)`, so a resumed run draws exactly
//! the numbers an uninterrupted one would.

pub mod data;
pub mod distributed;
pub mod evaluate;
pub mod events;
pub mod finetune;
pub mod inference;
pub mod placement;
pub mod pretrain;
pub mod probe;
pub mod run_dir;
mod run_loop;
pub mod schedule;
pub mod state;

use std::sync::Arc;

use candle_core::Device;

pub use data::{prepare_data, DataConfig, PreparedData, TaskData};
pub use distributed::{AllReduce, SingleProcess};
pub use evaluate::{compare, evaluate, predict, Comparison, EvalConfig, Predictions, TaskMetrics};
pub use events::{Event, Observer, Phase, Silent, StepEvent};
pub use finetune::{finetune, ClassWeighting, FinetuneConfig, FinetuneMode, FinetuneOutcome};
pub use pretrain::{pretrain, PretrainConfig, PretrainOutcome};
pub use probe::{probe_task, FeatureSource, ProbeConfig, ProbeOutcome};
pub use run_dir::{DataIdentity, RunDir};
pub use schedule::LrSchedule;

/// Stream of the masking noise (`Rng::keyed(seed, &[NOISE_STREAM, micro_batch, 0])`): one
/// stream per micro-batch of all processes together, a sample's row by its position in it
/// (`distributed::global_positions`), so that the masks do not depend on the world size.
pub const NOISE_STREAM: u64 = 0x006e_6f69_7365;
/// Stream of the Performer redraws (`Rng::keyed(seed, &[REDRAW_STREAM, step])`).
pub const REDRAW_STREAM: u64 = 0x7265_6472_6177;
/// Stream of drop path (`Rng::keyed(seed, &[DROP_STREAM, step, 0])`, each sample's masks by its
/// position in the global batch).
pub const DROP_STREAM: u64 = 0x6472_6f70;

/// How a run is executed (not part of its configuration).
#[derive(Clone)]
pub struct RunOptions {
    /// Where tensors live.
    pub device: Device,
    /// Continue from the run folder's newest intact checkpoint when there is one; when false,
    /// start a new run, moving an earlier run's files into `previous-<UTC time>/`.
    pub resume: bool,
    /// Stop after this many optimiser steps (a time-boxed or interrupted run).
    pub stop_after: Option<u64>,
    /// The all-reduce of data parallelism.
    pub all_reduce: Arc<dyn AllReduce>,
    /// What the data is (see [`PreparedData::identity`]): recorded in the run folder and
    /// checked on resume. The engine sets `samples` itself; without it, only the number of
    /// samples is checked.
    pub data: Option<DataIdentity>,
    /// Track the quality of the encoder's features during pre-training (see
    /// [`ProbeTracking`]); `None` tracks nothing. It never changes the training.
    pub probe: Option<ProbeTracking>,
    /// Where the device audit of the first step of a run looks a tensor up
    /// ([`placement`]): [`placement::TensorDevice`], the tensor's own device, unless a test
    /// mocks it.
    pub device_of: Arc<dyn placement::DeviceOf>,
}

/// The kNN figures of a task's validation split, computed by pre-training from the frozen
/// encoder at step 0 (a new run), every `every_steps` steps and at the last step, and
/// written to the run's log as `eval` events of the pre-training phase (`subset`
/// `validation`, metrics `knn_roc_auc` and `knn_average_precision`), so the log holds the
/// learning curve of the features. Only rank 0 computes them.
#[derive(Debug, Clone)]
pub struct ProbeTracking {
    /// The task whose training split is the neighbours and validation split the queries.
    pub data: TaskData,
    /// Steps between two evaluations (at least 1).
    pub every_steps: u64,
    /// The kNN settings (`knn`, `batch_size`).
    pub config: ProbeConfig,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("device", &self.device)
            .field("resume", &self.resume)
            .field("stop_after", &self.stop_after)
            .field("world_size", &self.all_reduce.world_size())
            .field("data", &self.data)
            .field(
                "probe",
                &self
                    .probe
                    .as_ref()
                    .map(|p| (p.data.labels.task.name(), p.every_steps)),
            )
            .finish()
    }
}

impl RunOptions {
    /// One process on `device`, resuming when a checkpoint exists.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            resume: true,
            stop_after: None,
            all_reduce: Arc::new(SingleProcess),
            data: None,
            probe: None,
            device_of: Arc::new(placement::TensorDevice),
        }
    }
}
