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

use candle_core::{DType, Tensor, Var};
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::loader::{Batch, CropDataset, Loader};
use miram_nn::{ParamStore, Precision};
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::prepare_for_model;
use crate::optim::{AdamW, AdamWConfig};
use crate::settings::{Checks, RecipeValues};
use crate::train::distributed::global_positions;
use crate::train::events::{EvalEvent, Event, Observer, Phase};
use crate::train::probe::{knn_validation, FeatureSource};
use crate::train::run_dir::{refuse_non_finite, RunDir};
use crate::train::run_loop::{
    base_metadata, begin_run, open_run, run_steps, scalar, train_loader_config, CheckpointPolicy,
    LoopSpec, MicroLoss, RunIo, TrainStep,
};
pub use crate::train::run_loop::{DATA_FILE, DATA_KEY, RESUME_FREE_KEYS};
use crate::train::schedule::{scaled_lr, LrSchedule};
use crate::train::state::TrainState;
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
    /// Precision of the forward and backward passes (`f32`, or `bf16` mixed precision:
    /// master weights, AdamW moments and the loss stay `f32`). Absent from the
    /// configurations of earlier runs, which read as `f32` (and resume as such).
    #[serde(default)]
    pub precision: Precision,
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
            precision: Precision::F32,
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

/// Pre-trains `cfg.model` on `dataset` in the run folder `run`.
pub fn pretrain<D: CropDataset + 'static>(
    cfg: &PretrainConfig,
    dataset: Arc<D>,
    run: &RunDir,
    opts: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<PretrainOutcome> {
    check_inputs(cfg, opts, dataset.size())?;
    let dev = opts.device.clone();
    let mc = &cfg.model;
    let loader_cfg = train_loader_config(
        opts,
        cfg.batch_size,
        true,
        cfg.seed,
        cfg.workers,
        mc.in_chans,
    );
    let loader = Loader::new(dataset, cfg.augment.clone(), loader_cfg, dev.clone())?;
    let spec = loop_spec(cfg, loader.batches_per_epoch() as u64, opts)?;
    let hires_index = hires_scale(cfg, loader.dataset().hires_size())?;

    // The run folder: a new run starts clean; a resume takes the newest intact checkpoint.
    let mut identity = opts.data.clone().unwrap_or_default();
    identity.samples = loader.dataset().len();
    let mut io = RunIo {
        run,
        opts,
        observer,
    };
    let resume = open_run(&mut io, &spec, cfg, &identity)?;
    let start = start_or_resume(cfg, resume, &dev)?;
    begin_run(
        run,
        opts,
        cfg,
        &identity,
        start.resumed.then_some(start.step),
    )?;
    let meta = base_metadata("pretrain", mc.to_json(), cfg, &identity)?;
    let eff_batch = cfg.batch_size * cfg.accum_iter * opts.all_reduce.world_size();
    io.report(&Event::Start {
        phase: Phase::Pretrain,
        total_steps: spec.total_steps,
        start_step: start.step,
        description: format!(
            "pre-training {} parameters, {} scales, {} steps of {eff_batch} images",
            start.model.num_parameters(),
            mc.scales.len(),
            spec.total_steps
        ),
    });
    if start.step == 0 {
        track_features(&start.model, 0, 0, &mut io)?;
    }
    let started = Instant::now();
    let mut opt = start.opt;
    let mut trainer = PretrainStep {
        params: start.model.store().trainable(),
        model: start.model,
        cfg,
        hires_index,
        rank: opts.all_reduce.rank(),
        world: opts.all_reduce.world_size(),
        total_steps: spec.total_steps,
        meta,
    };
    let end = run_steps(&spec, &mut trainer, &mut opt, &loader, start.step, &mut io)?;
    let step = end.step;
    let model_path = if step == spec.total_steps && opts.all_reduce.rank() == 0 {
        Some(save_model(run, &trainer.model, step)?)
    } else {
        None
    };
    io.report(&Event::Done {
        phase: Phase::Pretrain,
        step,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(PretrainOutcome {
        steps: step,
        final_loss: end.last_loss.unwrap_or(start.loss),
        checkpoint: run
            .latest_checkpoint()
            .map_or_else(|| run.step_checkpoint(step), |(_, p)| p),
        model_path,
    })
}

/// Refuses settings that cannot run before any work: the recipe's, the feature tracking's,
/// and crops of another size than the model's.
fn check_inputs(cfg: &PretrainConfig, opts: &RunOptions, crop_size: usize) -> Result<()> {
    cfg.validate()?;
    if let Some(p) = &opts.probe {
        if p.every_steps == 0 {
            return Err(Error::Config(
                "probe tracking: every_steps must be at least 1".into(),
            ));
        }
        p.config.validate()?;
    }
    if crop_size != cfg.model.img_size {
        return Err(Error::Train(format!(
            "the dataset's crops are {crop_size} px, the model takes {} px",
            cfg.model.img_size
        )));
    }
    Ok(())
}

/// Writes the trained model to `model.safetensors` in the run folder (refused when a tensor
/// is not finite).
fn save_model(run: &RunDir, model: &Miram, steps: u64) -> Result<PathBuf> {
    let p = run.path().join("model.safetensors");
    refuse_non_finite(&p, &model.state_dict())?;
    let mut m = BTreeMap::new();
    m.insert("kind".to_string(), "pretrain".to_string());
    m.insert("steps".to_string(), steps.to_string());
    model.save(&p, &m)?;
    Ok(p)
}

/// The run's shape: optimiser steps of `accum_iter` batches, the schedule at the effective
/// batch, checkpoints every `checkpoint_every` steps.
fn loop_spec(cfg: &PretrainConfig, batches: u64, opts: &RunOptions) -> Result<LoopSpec> {
    let accum = cfg.accum_iter as u64;
    let steps_per_epoch = batches / accum;
    if steps_per_epoch == 0 {
        return Err(Error::Train(format!(
            "an epoch has {batches} batches of {}, fewer than accum_iter {}: use a smaller batch or more data",
            cfg.batch_size, cfg.accum_iter
        )));
    }
    Ok(LoopSpec {
        phase: Phase::Pretrain,
        batches_per_epoch: batches,
        accum,
        total_steps: steps_per_epoch * cfg.epochs as u64,
        schedule: LrSchedule {
            lr: cfg.peak_lr(opts.all_reduce.world_size()),
            min_lr: cfg.min_lr,
            warmup_epochs: cfg.warmup_epochs,
            epochs: cfg.epochs as f64,
        },
        clip_grad: cfg.clip_grad,
        checkpoints: CheckpointPolicy::EverySteps(cfg.checkpoint_every),
        keep_last: cfg.keep_last,
    })
}

/// The index of the decoder scale whose target is the dataset's real high-resolution crop
/// (`native_hires_targets`), refused when no scale matches the crops' size.
fn hires_scale(cfg: &PretrainConfig, hires_size: Option<usize>) -> Result<Option<usize>> {
    if !cfg.native_hires_targets {
        return Ok(None);
    }
    let mc = &cfg.model;
    hires_size
        .map(|h| h / mc.img_size)
        .and_then(|s| mc.scales.iter().position(|sc| sc.scale == s))
        .map(Some)
        .ok_or_else(|| {
            Error::Train(
                "native_hires_targets: the dataset has no high-resolution crops at any scale of the model".into(),
            )
        })
}

/// The model and optimiser a run starts from.
struct Start {
    model: Miram,
    opt: AdamW,
    /// Steps already done.
    step: u64,
    /// Whether they come from a train state.
    resumed: bool,
    /// The loss of the last step done (NaN for none).
    loss: f64,
}

/// A new model and optimiser, or both restored from the train state to resume.
fn start_or_resume(
    cfg: &PretrainConfig,
    resume: Option<TrainState>,
    dev: &candle_core::Device,
) -> Result<Start> {
    let mc = &cfg.model;
    let opt_cfg = AdamWConfig {
        lr: 0.0,
        beta1: cfg.betas.0,
        beta2: cfg.betas.1,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    };
    let Some(st) = resume else {
        let model = Miram::init(mc, cfg.seed, dev)?.with_precision(cfg.precision);
        let opt = AdamW::new(model.store().trainable(), opt_cfg)?;
        return Ok(Start {
            model,
            opt,
            step: 0,
            resumed: false,
            loss: f64::NAN,
        });
    };
    let store = ParamStore::from_tensors(
        prepare_for_model(st.model, mc.in_chans)?,
        cfg.seed,
        DType::F32,
        dev,
    );
    let model = Miram::new(mc, store.root())?.with_precision(cfg.precision);
    crate::checkpoint::ensure_loaded(&store.load_report(), &st.path, &|_| false)?;
    let mut opt = AdamW::new(model.store().trainable(), opt_cfg)?;
    opt.load_state(&st.optimizer, &st.metadata)?;
    Ok(Start {
        model,
        opt,
        step: st.step,
        resumed: true,
        loss: st
            .metadata
            .get("loss")
            .and_then(|l| l.parse().ok())
            .unwrap_or(f64::NAN),
    })
}

/// Pre-training's part of the loop: the masked forward pass of every scale, the Performer
/// redraws and the feature tracking.
struct PretrainStep<'a> {
    model: Miram,
    params: Vec<(String, Var)>,
    cfg: &'a PretrainConfig,
    hires_index: Option<usize>,
    rank: usize,
    world: usize,
    total_steps: u64,
    meta: BTreeMap<String, String>,
}

impl TrainStep for PretrainStep<'_> {
    fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    fn micro_batch(&mut self, batch: Batch, _step: u64, micro: u64) -> Result<MicroLoss> {
        let n = batch.images.dim(0)?;
        // One stream per micro-batch of all processes together, each sample's row by its
        // position in it: the same masks whatever the number of processes.
        let mut rng = Rng::keyed(self.cfg.seed, &[NOISE_STREAM, micro, 0]);
        let rows = global_positions(self.rank, self.world, n);
        let noise = self
            .model
            .random_noise_rows(&rows, n * self.world, &mut rng)?;
        let scales = self.cfg.model.scales.len();
        let hires: Option<Vec<Option<Tensor>>> = self.hires_index.map(|hi| {
            (0..scales)
                .map(|i| if i == hi { batch.hires.clone() } else { None })
                .collect()
        });
        let out = self
            .model
            .forward_with_targets(&batch.images, &noise, hires.as_deref())?;
        Ok(MicroLoss {
            total: scalar(&out.loss)?,
            parts: out.losses.iter().map(scalar).collect::<Result<_>>()?,
            loss: out.loss,
            images: n,
        })
    }

    fn after_step(&mut self, step: u64, epoch: u64, io: &mut RunIo<'_>) -> Result<()> {
        if let Some(k) = self.cfg.performer_redraw_interval {
            if k > 0 && step.is_multiple_of(k) {
                self.model
                    .redraw_features(&mut Rng::keyed(self.cfg.seed, &[REDRAW_STREAM, step]))?;
            }
        }
        if io
            .opts
            .probe
            .as_ref()
            .is_some_and(|p| step.is_multiple_of(p.every_steps) || step == self.total_steps)
        {
            track_features(&self.model, step, epoch, io)?;
        }
        Ok(())
    }

    fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.model.state_dict()
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.meta.clone()
    }
}

/// The kNN figures of the feature-tracking task's validation split ([`RunOptions::probe`])
/// at `step`, logged and reported as an `eval` event (rank 0 only).
fn track_features(model: &Miram, step: u64, epoch: u64, io: &mut RunIo<'_>) -> Result<()> {
    let Some(p) = &io.opts.probe else {
        return Ok(());
    };
    if io.opts.all_reduce.rank() != 0 {
        return Ok(());
    }
    let m = knn_validation(
        FeatureSource::Encoder(model.encoder()),
        &p.data,
        &p.config,
        &io.opts.device,
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
    io.emit(&ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::state::config_differences;

    /// The recipe as a JSON object without its `precision` key (a run folder written before
    /// the setting existed).
    fn without_precision(cfg: &PretrainConfig) -> String {
        let mut v = serde_json::to_value(cfg).expect("serialise");
        if let Some(m) = v.as_object_mut() {
            m.remove("precision");
        }
        v.to_string()
    }

    #[test]
    fn a_configuration_without_precision_is_f32_and_bf16_round_trips() {
        let f32 = PretrainConfig::paper(MiramConfig::micro());
        let json = serde_json::to_string(&f32).expect("serialise");
        assert!(json.contains(r#""precision":"f32""#), "{json}");
        let old: PretrainConfig = serde_json::from_str(&without_precision(&f32)).expect("old");
        assert_eq!(old.precision, Precision::F32);
        assert_eq!(old, f32);
        let bf16 = PretrainConfig {
            precision: Precision::Bf16,
            ..f32
        };
        let json = serde_json::to_string(&bf16).expect("serialise");
        assert!(json.contains(r#""precision":"bf16""#), "{json}");
        let back: PretrainConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, bf16);
    }

    #[test]
    fn an_old_run_resumes_at_f32_and_refuses_bf16() {
        let f32 = PretrainConfig::paper(MiramConfig::micro());
        let saved = without_precision(&f32);
        let same = config_differences(&saved, &f32, &RESUME_FREE_KEYS).expect("compare");
        assert!(same.is_empty(), "{same:?}");
        let bf16 = PretrainConfig {
            precision: Precision::Bf16,
            ..f32
        };
        let diff = config_differences(&saved, &bf16, &RESUME_FREE_KEYS).expect("compare");
        assert_eq!(diff, vec![r#"precision: "f32" -> "bf16""#.to_string()]);
    }
}
