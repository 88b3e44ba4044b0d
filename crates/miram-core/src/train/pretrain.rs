//! MIRAM pre-training (mirrors `main_pretrain.py` and `engine_pretrain.py` of
//! facebookresearch/mae with the multi-scale model): AdamW with MAE's groups, the learning
//! rate scaled by the effective batch and scheduled per step, gradient accumulation,
//! optional clipping, Performer feature redraws on a schedule, native high-resolution
//! targets as an option; checkpoints every N steps and at the end, exact resume, a clear stop
//! on a non-finite loss.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::loader::{CropDataset, Loader, LoaderConfig};
use miram_nn::ParamStore;
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::prepare_for_model;
use crate::optim::{AdamW, AdamWConfig, Grads};
use crate::settings::{Checks, RecipeValues};
use crate::train::events::{EvalEvent, Event, Observer, Phase, StepEvent};
use crate::train::probe::{knn_validation, FeatureSource};
use crate::train::run_dir::{refuse_non_finite, DataIdentity, RunDir};
use crate::train::schedule::{scaled_lr, LrSchedule};
use crate::train::state::{config_differences, resume_state, train_state};
use crate::train::{RunOptions, NOISE_STREAM, REDRAW_STREAM};
use crate::{Error, Miram, MiramConfig, Result};

/// The pre-training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The model.
    pub model: MiramConfig,
    /// Epochs over the pre-training crops.
    pub epochs: usize,
    /// Warm-up epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Images per micro-batch (per process).
    pub batch_size: usize,
    /// Micro-batches accumulated per optimiser step.
    pub accum_iter: usize,
    /// Base learning rate; the absolute rate is `blr * effective batch / 256`.
    pub blr: f64,
    /// Absolute learning rate (overrides `blr`).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Floor of the cosine schedule.
    pub min_lr: f64,
    /// Decoupled weight decay (on parameters of rank >= 2 that are not biases).
    pub weight_decay: f64,
    /// AdamW betas.
    pub betas: (f64, f64),
    /// Global-norm gradient clipping.
    #[serde(default)]
    pub clip_grad: Option<f64>,
    /// Optimiser steps between Performer feature redraws (none: never).
    #[serde(default)]
    pub performer_redraw_interval: Option<u64>,
    /// Use the dataset's real high-resolution crops as the target of the scale they match.
    #[serde(default)]
    pub native_hires_targets: bool,
    /// Augmentation of the crops.
    pub augment: AugmentConfig,
    /// Seed of the data order, augmentation, masking and redraws.
    pub seed: u64,
    /// Loader worker threads.
    pub workers: usize,
    /// Optimiser steps between checkpoints (a checkpoint is also written at the end).
    pub checkpoint_every: u64,
    /// Step checkpoints kept.
    pub keep_last: usize,
}

impl PretrainConfig {
    /// The authors' recipe for `model`: 500 epochs, 40 warm-up, effective batch 1024 (here
    /// 64 x 16 accumulated), blr 1.5e-4, weight decay 0.05, betas (0.9, 0.95), random resized
    /// crops.
    pub fn paper(model: MiramConfig) -> Self {
        Self {
            model,
            epochs: 500,
            warmup_epochs: 40.0,
            batch_size: 64,
            accum_iter: 16,
            blr: 1.5e-4,
            lr: None,
            min_lr: 0.0,
            weight_decay: 0.05,
            betas: (0.9, 0.95),
            clip_grad: None,
            performer_redraw_interval: Some(1000),
            native_hires_targets: false,
            augment: AugmentConfig::pretrain(),
            seed: 0,
            workers: 2,
            checkpoint_every: 1000,
            keep_last: 3,
        }
    }

    /// The peak learning rate at an effective batch of `world` processes.
    pub fn peak_lr(&self, world: usize) -> f64 {
        self.lr.unwrap_or_else(|| {
            scaled_lr(self.blr, self.batch_size * self.accum_iter * world.max(1))
        })
    }

    /// Checks every value; the error ([`Error::InvalidSettings`]) names each key at fault
    /// (`blr = -1: must be > 0`), with the model's keys under `model.`.
    pub fn validate(&self) -> Result<()> {
        let mut c = Checks::new();
        c.nested("model", self.model.validate());
        c.recipe(&RecipeValues {
            epochs: self.epochs,
            batch_size: self.batch_size,
            warmup_epochs: self.warmup_epochs,
            blr: self.blr,
            lr: self.lr,
            min_lr: self.min_lr,
            peak_lr: self.peak_lr(1),
            peak_rule: "lr, or blr x batch_size x accum_iter / 256",
            weight_decay: self.weight_decay,
        });
        c.count("accum_iter", self.accum_iter as u64, 1, 1 << 20);
        c.unit_open("betas.0", self.betas.0);
        c.unit_open("betas.1", self.betas.1);
        if let Some(g) = self.clip_grad {
            c.positive("clip_grad", g);
        }
        if let Some(k) = self.performer_redraw_interval {
            c.require(
                k >= 1,
                "performer_redraw_interval",
                k,
                "must be at least 1 (leave it out to never redraw)",
            );
        }
        c.other("augment", self.augment.validate());
        c.count("workers", self.workers as u64, 0, MAX_WORKERS);
        c.at_least("checkpoint_every", self.checkpoint_every, 1);
        c.count("keep_last", self.keep_last as u64, 1, 1_000_000);
        c.finish()
    }
}

/// The most loader worker threads a configuration may ask for.
pub const MAX_WORKERS: u64 = 256;

/// The keys of a training configuration that do not change what is computed (how many
/// loader threads, how often and how many checkpoints are kept, how many bootstrap
/// resamples the final test intervals draw): a resume may change them.
pub const RESUME_FREE_KEYS: [&str; 4] = [
    "workers",
    "keep_last",
    "checkpoint_every",
    "bootstrap_resamples",
];

/// What a pre-training run produced.
#[derive(Debug, Clone)]
pub struct PretrainOutcome {
    /// Optimiser steps done.
    pub steps: u64,
    /// The loss of the last step.
    pub final_loss: f64,
    /// The last train-state checkpoint.
    pub checkpoint: PathBuf,
    /// The trained model (`model.safetensors` in the run folder; written at the end only).
    pub model_path: Option<PathBuf>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Pre-trains `cfg.model` on `dataset` in the run folder `run`.
pub fn pretrain<D: CropDataset + 'static>(
    cfg: &PretrainConfig,
    dataset: Arc<D>,
    run: &RunDir,
    opts: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<PretrainOutcome> {
    cfg.validate()?;
    if let Some(p) = &opts.probe {
        if p.every_steps == 0 {
            return Err(Error::Config(
                "probe tracking: every_steps must be at least 1".into(),
            ));
        }
        p.config.validate()?;
    }
    let dev = opts.device.clone();
    let mc = &cfg.model;
    if dataset.size() != mc.img_size {
        return Err(Error::Train(format!(
            "the dataset's crops are {} px, the model takes {} px",
            dataset.size(),
            mc.img_size
        )));
    }
    let world = opts.all_reduce.world_size();
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        shuffle: true,
        drop_last: true,
        seed: cfg.seed,
        workers: cfg.workers,
        prefetch: 2 * cfg.workers.max(1),
        channels: mc.in_chans,
        shard: (world > 1).then(|| (opts.all_reduce.rank(), world)),
    };
    let loader = Loader::new(dataset, cfg.augment.clone(), loader_cfg, dev.clone())?;
    let batches = loader.batches_per_epoch() as u64;
    let accum = cfg.accum_iter as u64;
    let steps_per_epoch = batches / accum;
    if steps_per_epoch == 0 {
        return Err(Error::Train(format!(
            "an epoch has {batches} batches of {}, fewer than accum_iter {}: use a smaller batch or more data",
            cfg.batch_size, cfg.accum_iter
        )));
    }
    let total_steps = steps_per_epoch * cfg.epochs as u64;
    let eff_batch = cfg.batch_size * cfg.accum_iter * world;
    let sched = LrSchedule {
        lr: cfg.lr.unwrap_or_else(|| scaled_lr(cfg.blr, eff_batch)),
        min_lr: cfg.min_lr,
        warmup_epochs: cfg.warmup_epochs,
        epochs: cfg.epochs as f64,
    };
    let hires_index = cfg
        .native_hires_targets
        .then(|| loader.dataset().hires_size())
        .flatten()
        .map(|h| h / mc.img_size)
        .and_then(|s| mc.scales.iter().position(|sc| sc.scale == s));
    if cfg.native_hires_targets && hires_index.is_none() {
        return Err(Error::Train(
            "native_hires_targets: the dataset has no high-resolution crops at any scale of the model".into(),
        ));
    }

    // The run folder: a new run starts clean; a resume takes the newest intact checkpoint.
    let mut identity = opts.data.clone().unwrap_or_default();
    identity.samples = loader.dataset().len();
    let phase = Phase::Pretrain;
    prepare_run_folder(run, opts, phase, observer)?;
    let resume = if opts.resume {
        resume_state(run, "pretrain", &dev, &mut |message| {
            observer.event(&Event::Warning { phase, message })
        })?
    } else {
        None
    };
    let opt_cfg = |lr: f64| AdamWConfig {
        lr,
        beta1: cfg.betas.0,
        beta2: cfg.betas.1,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    };
    let mut final_loss = f64::NAN;
    let (model, mut opt, mut step) = match resume {
        Some(st) => {
            let path = st.path.clone();
            check_resume(run, &path, &st.metadata, cfg, &identity, phase, observer)?;
            if st.step > total_steps {
                return Err(beyond_schedule(
                    &path,
                    st.step,
                    total_steps,
                    steps_per_epoch,
                ));
            }
            let store = ParamStore::from_tensors(
                prepare_for_model(st.model, mc.in_chans)?,
                cfg.seed,
                DType::F32,
                &dev,
            );
            let model = Miram::new(mc, store.root())?;
            crate::checkpoint::ensure_loaded(&store.load_report(), &path, &|_| false)?;
            let mut opt = AdamW::new(model.store().trainable(), opt_cfg(0.0))?;
            opt.load_state(&st.optimizer, &st.metadata)?;
            if let Some(l) = st.metadata.get("loss").and_then(|l| l.parse().ok()) {
                final_loss = l;
            }
            run.truncate_log_after(st.step)?;
            (model, opt, st.step)
        }
        None => {
            set_aside_leftovers(run, opts, phase, observer)?;
            let model = Miram::init(mc, cfg.seed, &dev)?;
            let opt = AdamW::new(model.store().trainable(), opt_cfg(0.0))?;
            (model, opt, 0)
        }
    };
    run.write_config(cfg)?;
    run.write_json(DATA_FILE, &identity)?;
    let params = model.store().trainable();
    let mut meta = BTreeMap::new();
    meta.insert("kind".to_string(), "pretrain".to_string());
    meta.insert("config".to_string(), mc.to_json());
    meta.insert(
        "train_config".to_string(),
        serde_json::to_string(cfg).map_err(|e| Error::Train(e.to_string()))?,
    );
    meta.insert(
        DATA_KEY.to_string(),
        serde_json::to_string(&identity).map_err(|e| Error::Train(e.to_string()))?,
    );
    let mut last_checkpoint: Option<PathBuf> = run.latest_checkpoint().map(|(_, p)| p);

    let started = Instant::now();
    let start_step = step;
    let start = Event::Start {
        phase: Phase::Pretrain,
        total_steps,
        start_step,
        description: format!(
            "pre-training {} parameters, {} scales, {total_steps} steps of {eff_batch} images",
            model.num_parameters(),
            mc.scales.len()
        ),
    };
    observer.event(&start);
    if start_step == 0 {
        track_features(&model, opts, run, 0, 0, observer)?;
    }
    let stop_at = opts.stop_after.map_or(total_steps, |s| s.min(total_steps));
    let last_good = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or("none".into(), |p| p.display().to_string())
    };
    while step < stop_at {
        let epoch = step / steps_per_epoch;
        let first_batch = ((step % steps_per_epoch) * accum) as usize;
        let mut it = loader.epoch_from(epoch, first_batch);
        while step < stop_at && step / steps_per_epoch == epoch {
            let t0 = Instant::now();
            let lr = sched.lr_at_step(step, steps_per_epoch, accum, batches);
            let mut grads = Grads::new();
            let mut losses_acc = vec![Vec::new(); mc.scales.len()];
            let mut total_acc = Vec::new();
            for a in 0..accum {
                let batch = match it.next() {
                    Some(b) => b?,
                    None => {
                        return Err(Error::Train(format!(
                            "epoch {epoch} ended before step {} was complete",
                            step + 1
                        )))
                    }
                };
                let n = batch.images.dim(0)?;
                let micro = step * accum + a;
                let mut rng = Rng::keyed(
                    cfg.seed,
                    &[NOISE_STREAM, micro, opts.all_reduce.rank() as u64],
                );
                let noise = model.random_noise(n, &mut rng)?;
                let hires: Option<Vec<Option<Tensor>>> = hires_index.map(|hi| {
                    (0..mc.scales.len())
                        .map(|i| if i == hi { batch.hires.clone() } else { None })
                        .collect()
                });
                let out = model.forward_with_targets(&batch.images, &noise, hires.as_deref())?;
                let total = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                let per: Vec<f64> = out
                    .losses
                    .iter()
                    .map(|l| l.to_dtype(DType::F64)?.to_scalar::<f64>())
                    .collect::<candle_core::Result<_>>()?;
                if !total.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        step: step + 1,
                        value: total,
                        losses: per,
                        last_checkpoint: last_checkpoint
                            .as_ref()
                            .map_or("none".into(), |p| p.display().to_string()),
                    });
                }
                total_acc.push(total);
                for (acc, l) in losses_acc.iter_mut().zip(per) {
                    acc.push(l);
                }
                let loss = (out.loss / accum as f64)?;
                grads.accumulate(&Grads::from_backward(&loss.backward()?, &params))?;
            }
            opts.all_reduce.all_reduce_mean(&mut grads)?;
            let grad_norm = match cfg.clip_grad {
                Some(c) => grads.clip_global_norm(c)?,
                None => grads.global_norm()?,
            };
            if !grad_norm.is_finite() {
                return Err(Error::NonFiniteGradient {
                    step: step + 1,
                    parameter: grads
                        .first_non_finite()?
                        .unwrap_or_else(|| format!("the global norm ({grad_norm})")),
                    last_checkpoint: last_good(&last_checkpoint),
                });
            }
            opt.set_lr(lr);
            opt.step(&grads)?;
            if let Some(tensor) = opt.first_non_finite()? {
                return Err(Error::NonFiniteState {
                    step: step + 1,
                    tensor,
                    last_checkpoint: last_good(&last_checkpoint),
                });
            }
            step += 1;
            if let Some(k) = cfg.performer_redraw_interval {
                if k > 0 && step % k == 0 {
                    model.redraw_features(&mut Rng::keyed(cfg.seed, &[REDRAW_STREAM, step]))?;
                }
            }
            final_loss = opts.all_reduce.mean_scalar(mean(&total_acc))?;
            let secs = t0.elapsed().as_secs_f64();
            let done_here = (step - start_step) as f64;
            let eta = started.elapsed().as_secs_f64() / done_here * (total_steps - step) as f64;
            let ev = Event::Step(StepEvent {
                phase: Phase::Pretrain,
                step,
                total_steps,
                epoch,
                loss: final_loss,
                losses: losses_acc.iter().map(|v| mean(v)).collect(),
                lr,
                grad_norm,
                images_per_sec: eff_batch as f64 / secs.max(1e-9),
                eta_secs: eta,
            });
            if opts.all_reduce.rank() == 0 {
                run.log(&ev)?;
            }
            observer.event(&ev);
            if opts
                .probe
                .as_ref()
                .is_some_and(|p| step % p.every_steps == 0 || step == total_steps)
            {
                track_features(&model, opts, run, step, epoch, observer)?;
            }
            if step % cfg.checkpoint_every == 0 || step == stop_at {
                let mut m = meta.clone();
                m.insert("loss".to_string(), final_loss.to_string());
                let (t, m) = train_state(model.state_dict(), &opt, m, step);
                if opts.all_reduce.rank() == 0 {
                    let p = run.save_step(step, &t, &m, cfg.keep_last)?;
                    observer.event(&Event::Checkpoint {
                        phase: Phase::Pretrain,
                        step,
                        path: p.clone(),
                        best: false,
                    });
                    last_checkpoint = Some(p);
                }
            }
        }
    }
    let model_path = if step == total_steps && opts.all_reduce.rank() == 0 {
        let p = run.path().join("model.safetensors");
        refuse_non_finite(&p, &model.state_dict())?;
        let mut m = BTreeMap::new();
        m.insert("kind".to_string(), "pretrain".to_string());
        m.insert("steps".to_string(), step.to_string());
        model.save(&p, &m)?;
        Some(p)
    } else {
        None
    };
    observer.event(&Event::Done {
        phase: Phase::Pretrain,
        step,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(PretrainOutcome {
        steps: step,
        final_loss,
        checkpoint: last_checkpoint.unwrap_or_else(|| run.step_checkpoint(step)),
        model_path,
    })
}

/// The run folder's file recording what the run was trained on ([`DataIdentity`]).
pub const DATA_FILE: &str = "data.json";

/// The train-state metadata key of the [`DataIdentity`].
pub const DATA_KEY: &str = "data";

/// Before a run: a new run (`opts.resume` false) moves an earlier run's files aside, and the
/// temporary files of interrupted writes removed on opening are reported.
pub(crate) fn prepare_run_folder(
    run: &RunDir,
    opts: &RunOptions,
    phase: Phase,
    observer: &mut dyn Observer,
) -> Result<()> {
    if let Some(s) = opts.stop_after {
        let mut c = Checks::new();
        c.at_least("stop_after", s, 1);
        c.finish()?;
    }
    for p in run.removed_temp_files() {
        observer.event(&Event::Warning {
            phase,
            message: format!(
                "removed {}, a temporary file left by an interrupted write",
                p.display()
            ),
        });
    }
    if !opts.resume && opts.all_reduce.rank() == 0 {
        if let Some(p) = run.start_over()? {
            observer.event(&Event::Warning {
                phase,
                message: format!(
                    "starting a new run in {}: the previous run's files were moved to {}",
                    run.path().display(),
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
pub(crate) fn set_aside_leftovers(
    run: &RunDir,
    opts: &RunOptions,
    phase: Phase,
    observer: &mut dyn Observer,
) -> Result<()> {
    if opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    if let Some(p) = run.set_aside_leftovers()? {
        observer.event(&Event::Warning {
            phase,
            message: format!(
                "no checkpoint to resume in {}: the earlier run's log and outputs were moved to {}",
                run.path().display(),
                p.display()
            ),
        });
    }
    Ok(())
}

/// Refuses to resume a train state saved with a configuration (other than the keys of
/// [`RESUME_FREE_KEYS`]) or data other than now's, listing every difference.
pub(crate) fn check_resume<T: Serialize + serde::de::DeserializeOwned>(
    run: &RunDir,
    path: &std::path::Path,
    metadata: &BTreeMap<String, String>,
    cfg: &T,
    identity: &DataIdentity,
    phase: Phase,
    observer: &mut dyn Observer,
) -> Result<()> {
    if let Some(saved) = metadata.get("train_config") {
        let diff =
            config_differences(saved, cfg, &RESUME_FREE_KEYS).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("train_config: {e}"),
            })?;
        if !diff.is_empty() {
            return Err(Error::ResumeMismatch {
                path: run.path().to_path_buf(),
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
                path: run.path().to_path_buf(),
                what: "other data".into(),
                differences: diff,
            });
        }
        if let (Some(a), Some(b)) = (&saved.root, &identity.root) {
            if a != b {
                observer.event(&Event::Warning {
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

/// The error of a train state beyond the end of this run's schedule.
pub(crate) fn beyond_schedule(
    path: &std::path::Path,
    step: u64,
    total: u64,
    per_epoch: u64,
) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!(
            "the checkpoint is at step {step}, beyond the {total} steps of this run ({per_epoch} per epoch): the data or the schedule changed since it was written; start a new run with --restart (RunOptions::resume = false)"
        ),
    }
}

/// The kNN figures of the feature-tracking task's validation split ([`RunOptions::probe`])
/// at `step`, logged and reported as an `eval` event (rank 0 only).
fn track_features(
    model: &Miram,
    opts: &RunOptions,
    run: &RunDir,
    step: u64,
    epoch: u64,
    observer: &mut dyn Observer,
) -> Result<()> {
    let Some(p) = &opts.probe else {
        return Ok(());
    };
    if opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    let m = knn_validation(
        FeatureSource::Encoder(model.encoder()),
        &p.data,
        &p.config,
        &opts.device,
    )?;
    let mut metrics = BTreeMap::new();
    if let Some(a) = m.auc {
        metrics.insert("knn_roc_auc".to_string(), a);
    }
    if let Some(a) = m.ap {
        metrics.insert("knn_average_precision".to_string(), a);
    }
    let ev = Event::Eval(EvalEvent {
        phase: Phase::Pretrain,
        step,
        epoch,
        subset: "validation".into(),
        metrics,
    });
    run.log(&ev)?;
    observer.event(&ev);
    Ok(())
}
