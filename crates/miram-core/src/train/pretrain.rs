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
use crate::train::events::{Event, Observer, Phase, StepEvent};
use crate::train::run_dir::RunDir;
use crate::train::schedule::{scaled_lr, LrSchedule};
use crate::train::state::{read_train_state, train_state};
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

    /// Checks the values, naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 || self.batch_size == 0 || self.accum_iter == 0 {
            return bad(format!(
                "epochs ({}), batch_size ({}) and accum_iter ({}) must be at least 1",
                self.epochs, self.batch_size, self.accum_iter
            ));
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs <= self.epochs as f64) {
            return bad(format!(
                "warmup_epochs {} must be in [0, epochs]",
                self.warmup_epochs
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1".into());
        }
        if self.clip_grad.is_some_and(|c| c <= 0.0) {
            return bad("clip_grad must be positive".into());
        }
        Ok(())
    }
}

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

    // The model and optimiser, fresh or resumed.
    let resume = if opts.resume {
        run.latest_checkpoint()
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
    let (model, mut opt, mut step) = match resume {
        Some((_, path)) => {
            let st = read_train_state(&path, "pretrain", &dev)?;
            if let Some(saved) = st.metadata.get("train_config") {
                let saved: PretrainConfig =
                    serde_json::from_str(saved).map_err(|e| Error::Checkpoint {
                        path: path.clone(),
                        message: format!("train_config: {e}"),
                    })?;
                if &saved != cfg {
                    return Err(Error::Checkpoint {
                        path,
                        message: "the run was started with another configuration; resume with the configuration in its config.json".into(),
                    });
                }
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
            run.truncate_log_after(st.step)?;
            (model, opt, st.step)
        }
        None => {
            let model = Miram::init(mc, cfg.seed, &dev)?;
            let opt = AdamW::new(model.store().trainable(), opt_cfg(0.0))?;
            (model, opt, 0)
        }
    };
    run.write_config(cfg)?;
    let params = model.store().trainable();
    let mut meta = BTreeMap::new();
    meta.insert("kind".to_string(), "pretrain".to_string());
    meta.insert("config".to_string(), mc.to_json());
    meta.insert(
        "train_config".to_string(),
        serde_json::to_string(cfg).map_err(|e| Error::Train(e.to_string()))?,
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
    let stop_at = opts.stop_after.map_or(total_steps, |s| s.min(total_steps));
    let mut final_loss = f64::NAN;
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
                return Err(Error::NonFiniteLoss {
                    step: step + 1,
                    value: grad_norm,
                    losses: vec![],
                    last_checkpoint: last_checkpoint
                        .as_ref()
                        .map_or("none".into(), |p| p.display().to_string()),
                });
            }
            opt.set_lr(lr);
            opt.step(&grads)?;
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
            if step % cfg.checkpoint_every == 0 || step == stop_at {
                let (t, m) = train_state(model.state_dict(), &opt, meta.clone(), step);
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
