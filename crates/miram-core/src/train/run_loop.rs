//! The one training loop that pre-training and fine-tuning share (MAE keeps the same split:
//! `main_*.py` sets a run up, `engine_*.py` runs its epochs).
//!
//! A run is: [`open_run`] (the run folder made ready, the newest intact train state found
//! and checked against the configuration and the data), the kind's own model and optimiser,
//! restored from that state or new, [`begin_run`] (configuration, data identity, log cut
//! back to the resumed step), then [`run_steps`]: epochs of optimiser steps, each from
//! `accum` micro-batches, with the all-reduce point, clipping, the checks that stop on a
//! non-finite loss, gradient or optimiser state, the step events and the checkpoints.
//!
//! What differs between the kinds plugs in through [`TrainStep`]: the forward pass and loss
//! of a micro-batch, what happens after each optimiser step (Performer redraws, feature
//! tracking) and at the end of each epoch (validation and model selection), and the
//! metadata a train state carries.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use miram_cbis_ddsm::loader::{Batch, BatchTargets, CropDataset, Loader, LoaderConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::optim::{AdamW, Grads};
use crate::settings::Checks;
use crate::train::events::{Event, Observer, Phase, StepEvent};
use crate::train::placement::Audit;
use crate::train::run_dir::{DataIdentity, RunDir};
use crate::train::schedule::LrSchedule;
use crate::train::state::{config_differences, resume_state, train_state, TrainState};
use crate::train::RunOptions;
use crate::{Error, Result};

/// The keys of a training configuration that do not change what is computed (how many
/// loader threads, how often and how many checkpoints are kept, how many bootstrap
/// resamples the final test intervals draw): a resume may change them.
pub const RESUME_FREE_KEYS: [&str; 4] = [
    "workers",
    "keep_last",
    "checkpoint_every",
    "bootstrap_resamples",
];

/// The run folder's file recording what the run was trained on ([`DataIdentity`]).
pub const DATA_FILE: &str = "data.json";

/// The train-state metadata key of the [`DataIdentity`].
pub const DATA_KEY: &str = "data";

/// Where a run's train states are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointPolicy {
    /// Every this many optimiser steps, and at the step the run stops at.
    EverySteps(u64),
    /// At the end of every epoch (after its [`TrainStep::end_of_epoch`]), and where the run
    /// stops inside an epoch.
    EveryEpoch,
}

/// The shape of a run: its phase, epochs, schedule and checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct LoopSpec {
    /// The phase of the run's events.
    pub phase: Phase,
    /// Loader batches per epoch.
    pub batches_per_epoch: u64,
    /// Micro-batches per optimiser step.
    pub accum: u64,
    /// Optimiser steps of the whole run.
    pub total_steps: u64,
    /// The learning rate per step.
    pub schedule: LrSchedule,
    /// Global-norm gradient clipping.
    pub clip_grad: Option<f64>,
    /// When train states are written.
    pub checkpoints: CheckpointPolicy,
    /// Step train states kept.
    pub keep_last: usize,
}

impl LoopSpec {
    /// Optimiser steps per epoch (`batches / accum`, the rest of an epoch's batches unused).
    pub fn steps_per_epoch(&self) -> u64 {
        self.batches_per_epoch / self.accum.max(1)
    }
}

/// The loss of one micro-batch.
#[derive(Debug)]
pub(crate) struct MicroLoss {
    /// The scalar loss to differentiate (before the division by `accum`).
    pub loss: Tensor,
    /// Its value.
    pub total: f64,
    /// The values of its parts (the loss per decoder scale; empty when it has none).
    pub parts: Vec<f64>,
    /// Images in the micro-batch.
    pub images: usize,
}

/// What the loop hands a [`TrainStep`] hook: the run folder, the options, the observer.
pub(crate) struct RunIo<'a> {
    /// The run folder.
    pub run: &'a RunDir,
    /// How the run is executed.
    pub opts: &'a RunOptions,
    /// Where progress goes.
    pub observer: &'a mut dyn Observer,
}

impl RunIo<'_> {
    /// Logs (rank 0) and reports `event`.
    pub fn emit(&mut self, event: &Event) -> Result<()> {
        if self.opts.all_reduce.rank() == 0 {
            self.run.log(event)?;
        }
        self.observer.event(event);
        Ok(())
    }

    /// Reports `event` without logging it.
    pub fn report(&mut self, event: &Event) {
        self.observer.event(event);
    }
}

/// What a kind of training plugs into [`run_steps`].
pub(crate) trait TrainStep {
    /// The trained parameters, by name (the order of the gradients).
    fn params(&self) -> &[(String, Var)];

    /// The forward pass and loss of micro-batch `micro` (0-based over the run) of optimiser
    /// step `step` (0-based).
    fn micro_batch(&mut self, batch: Batch, step: u64, micro: u64) -> Result<MicroLoss>;

    /// After optimiser step `step` (1-based: steps done) of `epoch`, its event logged.
    fn after_step(&mut self, _step: u64, _epoch: u64, _io: &mut RunIo<'_>) -> Result<()> {
        Ok(())
    }

    /// At the end of a complete epoch, before its checkpoint; `losses` are the epoch's step
    /// losses of this process.
    fn end_of_epoch(
        &mut self,
        _epoch: u64,
        _step: u64,
        _losses: &[f64],
        _io: &mut RunIo<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// The tensors of a train state (parameters and buffers).
    fn state_dict(&self) -> BTreeMap<String, Tensor>;

    /// The metadata of a train state (the loop adds the step, the loss and the optimiser's).
    fn metadata(&self) -> BTreeMap<String, String>;
}

/// The loader settings of a training run: shuffled, sharded over the processes.
pub(crate) fn train_loader_config(
    opts: &RunOptions,
    batch_size: usize,
    drop_last: bool,
    seed: u64,
    workers: usize,
    channels: usize,
) -> LoaderConfig {
    let world = opts.all_reduce.world_size();
    LoaderConfig {
        batch_size,
        shuffle: true,
        drop_last,
        seed,
        workers,
        prefetch: 2 * workers.max(1),
        channels,
        shard: (world > 1).then(|| (opts.all_reduce.rank(), world)),
    }
}

/// The metadata every train state of a run carries: its kind, the model's configuration
/// (JSON), the training configuration and the data identity.
pub(crate) fn base_metadata<T: Serialize>(
    kind: &str,
    model_config: String,
    cfg: &T,
    identity: &DataIdentity,
) -> Result<BTreeMap<String, String>> {
    let mut meta = BTreeMap::new();
    meta.insert("kind".to_string(), kind.to_string());
    meta.insert("config".to_string(), model_config);
    meta.insert("train_config".to_string(), to_json(cfg)?);
    meta.insert(DATA_KEY.to_string(), to_json(identity)?);
    Ok(meta)
}

/// JSON of a value for a train state's metadata.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Train(e.to_string()))
}

/// Makes the run folder ready and finds what to resume: a new run (`opts.resume` false)
/// moves an earlier run's files aside; a resume takes the newest intact train state of the
/// run's phase (its `kind`), refused when it was written with another configuration (other than
/// [`RESUME_FREE_KEYS`]) or other data, or beyond the `total_steps` of this run; with no
/// state to resume, what an earlier run left moves aside.
pub(crate) fn open_run<T: Serialize + DeserializeOwned>(
    io: &mut RunIo<'_>,
    spec: &LoopSpec,
    cfg: &T,
    identity: &DataIdentity,
) -> Result<Option<TrainState>> {
    let (phase, total_steps) = (spec.phase, spec.total_steps);
    let steps_per_epoch = spec.steps_per_epoch();
    prepare_run_folder(io, phase)?;
    // The other processes read the folder only once rank 0 has made it ready.
    io.opts.all_reduce.barrier()?;
    let resume = if io.opts.resume {
        let observer = &mut *io.observer;
        resume_state(io.run, phase.name(), &io.opts.device, &mut |message| {
            observer.event(&Event::Warning { phase, message })
        })?
    } else {
        None
    };
    match &resume {
        Some(st) => {
            check_resume(io, &st.path, &st.metadata, cfg, identity, phase)?;
            if st.step > total_steps {
                return Err(Error::Checkpoint {
                    path: st.path.clone(),
                    message: format!(
                        "the checkpoint is at step {}, beyond the {total_steps} steps of this run ({steps_per_epoch} per epoch): the data or the schedule changed since it was written; start a new run with --restart (RunOptions::resume = false)",
                        st.step
                    ),
                });
            }
        }
        None => set_aside_leftovers(io, phase)?,
    }
    Ok(resume)
}

/// After the model is built or restored: the resolved configuration and the data identity
/// written, and on a resume from `resumed_step` the log cut back to it (rank 0 only).
pub(crate) fn begin_run<T: Serialize>(
    run: &RunDir,
    opts: &RunOptions,
    cfg: &T,
    identity: &DataIdentity,
    resumed_step: Option<u64>,
) -> Result<()> {
    if opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    if let Some(step) = resumed_step {
        run.truncate_log_after(step)?;
    }
    run.write_config(cfg)?;
    run.write_json(DATA_FILE, identity)?;
    Ok(())
}

/// Where the loop ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopEnd {
    /// Optimiser steps done (of the whole run, resumed ones included).
    pub step: u64,
    /// The loss of the last step, averaged over the processes (`None` when no step ran).
    pub last_loss: Option<f64>,
}

/// Runs optimiser steps from `step` to the run's end or to `opts.stop_after`.
pub(crate) fn run_steps<D: CropDataset + 'static>(
    spec: &LoopSpec,
    trainer: &mut dyn TrainStep,
    opt: &mut AdamW,
    loader: &Loader<D>,
    mut step: u64,
    io: &mut RunIo<'_>,
) -> Result<LoopEnd> {
    let spe = spec.steps_per_epoch();
    let stop_at = io
        .opts
        .stop_after
        .map_or(spec.total_steps, |s| s.min(spec.total_steps));
    let started = Instant::now();
    let start_step = step;
    let mut last_loss = None;
    while step < stop_at {
        let epoch = step / spe;
        let first_batch = ((step % spe) * spec.accum) as usize;
        let mut batches = loader.epoch_from(epoch, first_batch);
        let mut losses = Vec::new();
        while step < stop_at && step / spe == epoch {
            let t0 = Instant::now();
            let audit = step == start_step;
            let done = one_step(spec, trainer, opt, &mut batches, (step, audit), io)?;
            step += 1;
            losses.push(done.loss);
            let loss = io.opts.all_reduce.mean_scalar(done.loss)?;
            last_loss = Some(loss);
            let secs = t0.elapsed().as_secs_f64();
            let eta = started.elapsed().as_secs_f64() / (step - start_step) as f64
                * (spec.total_steps - step) as f64;
            io.emit(&Event::Step(StepEvent {
                phase: spec.phase,
                step,
                total_steps: spec.total_steps,
                epoch,
                loss,
                losses: done.parts,
                lr: done.lr,
                grad_norm: done.grad_norm,
                images_per_sec: (done.images * io.opts.all_reduce.world_size()) as f64
                    / secs.max(1e-9),
                eta_secs: eta,
            }))?;
            trainer.after_step(step, epoch, io)?;
            if let CheckpointPolicy::EverySteps(k) = spec.checkpoints {
                if step.is_multiple_of(k) || step == stop_at {
                    save_state(spec, trainer, opt, step, last_loss, io)?;
                }
            }
        }
        if !step.is_multiple_of(spe) {
            // Stopped inside an epoch (stop_after).
            if spec.checkpoints == CheckpointPolicy::EveryEpoch {
                save_state(spec, trainer, opt, step, last_loss, io)?;
            }
            break;
        }
        trainer.end_of_epoch(epoch, step, &losses, io)?;
        if spec.checkpoints == CheckpointPolicy::EveryEpoch {
            save_state(spec, trainer, opt, step, last_loss, io)?;
        }
    }
    Ok(LoopEnd { step, last_loss })
}

/// The tensors of a batch on the run's device.
fn audit_batch(p: &mut Audit<'_>, batch: &Batch) -> Result<()> {
    p.tensor("the batch's images", &batch.images)?;
    if let Some(h) = &batch.hires {
        p.tensor("the batch's high-resolution targets", h)?;
    }
    match &batch.targets {
        BatchTargets::Classes(t) | BatchTargets::MultiHot(t) => p.tensor("the batch's labels", t),
        BatchTargets::None => Ok(()),
    }
}

/// What one optimiser step did.
struct StepDone {
    /// The mean loss of its micro-batches (this process).
    loss: f64,
    /// The mean of each loss part over its micro-batches.
    parts: Vec<f64>,
    lr: f64,
    grad_norm: f64,
    images: usize,
}

/// One optimiser step (0-based `step`): `accum` micro-batches, their gradients all-reduced,
/// clipped and applied, with a clear stop on anything non-finite. With `audit`, the first
/// micro-batch's tensors, the parameters and the loss's graph are checked to be on the
/// run's device ([`placement`](super::placement)).
fn one_step(
    spec: &LoopSpec,
    trainer: &mut dyn TrainStep,
    opt: &mut AdamW,
    batches: &mut dyn Iterator<Item = miram_cbis_ddsm::Result<Batch>>,
    (step, audit): (u64, bool),
    io: &mut RunIo<'_>,
) -> Result<StepDone> {
    let mut placement =
        audit.then(|| Audit::new(io.opts.device_of.as_ref(), io.opts.device.location()));
    let spe = spec.steps_per_epoch();
    let lr = spec
        .schedule
        .lr_at_step(step, spe, spec.accum, spec.batches_per_epoch);
    let mut grads = Grads::new();
    let mut parts: Vec<Vec<f64>> = Vec::new();
    let mut totals = Vec::new();
    let mut images = 0;
    for a in 0..spec.accum {
        let batch = batches.next().ok_or_else(|| {
            Error::Train(format!(
                "epoch {} ended before step {} was complete",
                step / spe,
                step + 1
            ))
        })??;
        if let Some(p) = placement.as_mut() {
            audit_batch(p, &batch)?;
        }
        let micro = trainer.micro_batch(batch, step, step * spec.accum + a)?;
        if let Some(mut p) = placement.take() {
            for (name, var) in trainer.params() {
                p.tensor(&format!("parameter {name}"), var.as_tensor())?;
            }
            p.graph("the loss", &micro.loss)?;
        }
        if !micro.total.is_finite() {
            return Err(Error::NonFiniteLoss {
                step: step + 1,
                value: micro.total,
                losses: micro.parts,
                last_checkpoint: last_good(io.run),
            });
        }
        totals.push(micro.total);
        parts.resize_with(micro.parts.len(), Vec::new);
        for (acc, l) in parts.iter_mut().zip(micro.parts) {
            acc.push(l);
        }
        images += micro.images;
        let loss = (micro.loss / spec.accum as f64)?;
        grads.accumulate(&Grads::from_backward(&loss.backward()?, trainer.params()))?;
    }
    io.opts.all_reduce.all_reduce_mean(&mut grads)?;
    let grad_norm = match spec.clip_grad {
        Some(c) => grads.clip_global_norm(c)?,
        None => grads.global_norm()?,
    };
    if !grad_norm.is_finite() {
        return Err(Error::NonFiniteGradient {
            step: step + 1,
            parameter: grads
                .first_non_finite()?
                .unwrap_or_else(|| format!("the global norm ({grad_norm})")),
            last_checkpoint: last_good(io.run),
        });
    }
    opt.set_lr(lr);
    opt.step(&grads)?;
    if let Some(tensor) = opt.first_non_finite()? {
        return Err(Error::NonFiniteState {
            step: step + 1,
            tensor,
            last_checkpoint: last_good(io.run),
        });
    }
    Ok(StepDone {
        loss: mean(&totals),
        parts: parts.iter().map(|v| mean(v)).collect(),
        lr,
        grad_norm,
        images,
    })
}

/// Writes the train state at `step` (rank 0) and reports it.
fn save_state(
    spec: &LoopSpec,
    trainer: &dyn TrainStep,
    opt: &AdamW,
    step: u64,
    loss: Option<f64>,
    io: &mut RunIo<'_>,
) -> Result<()> {
    if io.opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    let mut meta = trainer.metadata();
    if let Some(l) = loss {
        meta.insert("loss".to_string(), l.to_string());
    }
    let (tensors, meta) = train_state(trainer.state_dict(), opt, meta, step);
    let path = io.run.save_step(step, &tensors, &meta, spec.keep_last)?;
    io.report(&Event::Checkpoint {
        phase: spec.phase,
        step,
        path,
        best: false,
    });
    Ok(())
}

/// The newest step checkpoint, for the errors that stop a run.
fn last_good(run: &RunDir) -> String {
    run.latest_checkpoint()
        .map_or("none".into(), |(_, p)| p.display().to_string())
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Before a run: the temporary files of interrupted writes removed on opening are reported,
/// and a new run (`opts.resume` false) moves an earlier run's files aside.
fn prepare_run_folder(io: &mut RunIo<'_>, phase: Phase) -> Result<()> {
    if let Some(s) = io.opts.stop_after {
        let mut c = Checks::new();
        c.at_least("stop_after", s, 1);
        c.finish()?;
    }
    for p in io.run.removed_temp_files() {
        io.observer.event(&Event::Warning {
            phase,
            message: format!(
                "removed {}, a temporary file left by an interrupted write",
                p.display()
            ),
        });
    }
    if !io.opts.resume && io.opts.all_reduce.rank() == 0 {
        if let Some(p) = io.run.start_over()? {
            io.observer.event(&Event::Warning {
                phase,
                message: format!(
                    "starting a new run in {}: the previous run's files were moved to {}",
                    io.run.path().display(),
                    p.display()
                ),
            });
        }
    }
    Ok(())
}

/// A new run without a checkpoint to resume: what an earlier run left (steps logged by a run
/// killed before its first checkpoint, or outputs whose checkpoints were deleted) moves aside,
/// with a warning.
fn set_aside_leftovers(io: &mut RunIo<'_>, phase: Phase) -> Result<()> {
    if io.opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    if let Some(p) = io.run.set_aside_leftovers()? {
        io.observer.event(&Event::Warning {
            phase,
            message: format!(
                "no checkpoint to resume in {}: the earlier run's log and outputs were moved to {}",
                io.run.path().display(),
                p.display()
            ),
        });
    }
    Ok(())
}

/// Refuses to resume a train state saved with a configuration (other than the keys of
/// [`RESUME_FREE_KEYS`]) or data other than now's, listing every difference.
fn check_resume<T: Serialize + DeserializeOwned>(
    io: &mut RunIo<'_>,
    path: &std::path::Path,
    metadata: &BTreeMap<String, String>,
    cfg: &T,
    identity: &DataIdentity,
    phase: Phase,
) -> Result<()> {
    if let Some(saved) = metadata.get("train_config") {
        let diff =
            config_differences(saved, cfg, &RESUME_FREE_KEYS).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("train_config: {e}"),
            })?;
        if !diff.is_empty() {
            return Err(Error::ResumeMismatch {
                path: io.run.path().to_path_buf(),
                what: "another configuration".into(),
                differences: diff,
            });
        }
    }
    if let Some(saved) = metadata.get(DATA_KEY) {
        let saved: DataIdentity = serde_json::from_str(saved).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("{DATA_KEY}: {e}"),
        })?;
        let diff = saved.differences(identity);
        if !diff.is_empty() {
            return Err(Error::ResumeMismatch {
                path: io.run.path().to_path_buf(),
                what: "other data".into(),
                differences: diff,
            });
        }
        if let (Some(a), Some(b)) = (&saved.root, &identity.root) {
            if a != b {
                io.observer.event(&Event::Warning {
                    phase,
                    message: format!(
                        "the data folder moved from {} to {}; its records are the same, so the run resumes",
                        a.display(),
                        b.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The scalar value of a loss tensor.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
