//! Fine-tuning (mirrors `main_finetune.py`, `engine_finetune.py` and `util/lr_decay.py` of
//! facebookresearch/mae, with the authors' CBIS-DDSM protocol): the encoder with global
//! pooling, `fc_norm` and a linear `head`, initialised from a MIRAM or MAE checkpoint (the
//! exact missing-key set is asserted) or at random; full fine-tuning with optional layer-wise
//! learning-rate decay, or linear probing (frozen encoder); stochastic depth; cross-entropy
//! with inverse-frequency class weights or BCE for multi-label targets; model selection on
//! validation macro AUC; test evaluation with the best weights.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::loader::{Batch, BatchTargets, CachedCrops, CropDataset, Loader};
use miram_cbis_ddsm::split::SplitConfig;
use miram_cbis_ddsm::tasks::{TargetKind, Task};
use miram_encoder::{ClassifierConfig, EncoderConfig, VitClassifier};
use miram_losses::{bce_with_logits, cross_entropy};
use miram_nn::{LoadReport, ParamStore, Precision};
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{prepare_for_model, read_checkpoint};
use crate::optim::{AdamW, AdamWConfig, ParamSpec};
use crate::settings::{Checks, RecipeValues};
use crate::train::data::TaskData;
use crate::train::distributed::{global_positions, AllReduce};
use crate::train::evaluate::{evaluate, predict, EvalConfig, Predictions, TaskMetrics};
use crate::train::events::{EvalEvent, Event, Observer, Phase};
use crate::train::pretrain::MAX_WORKERS;
use crate::train::run_dir::RunDir;
use crate::train::run_loop::{
    base_metadata, begin_run, open_run, run_steps, scalar, to_json, train_loader_config,
    CheckpointPolicy, LoopSpec, MicroLoss, RunIo, TrainStep,
};
use crate::train::schedule::{scaled_lr, LrSchedule};
use crate::train::{RunOptions, DROP_STREAM};
use crate::{Error, Result};

/// Which parameters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneMode {
    /// Every parameter (the authors' protocol).
    Full,
    /// Only `fc_norm` and `head`; the encoder is frozen.
    LinearProbe,
}

/// How the classes of a single-label task are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// Equal weights.
    None,
    /// `n / (k n_c)` over the training set (the authors').
    InverseFrequency,
}

/// The fine-tuning recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The encoder (the pre-trained model's).
    pub encoder: EncoderConfig,
    /// The task.
    pub task: Task,
    /// The checkpoint to start from (MIRAM, MAE `.pth`, a pre-training run's
    /// `model.safetensors` or train state); none for a random initialisation.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Full fine-tuning or linear probing.
    pub mode: FinetuneMode,
    /// Epochs.
    pub epochs: usize,
    /// Warm-up epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Images per batch.
    pub batch_size: usize,
    /// Base learning rate (`blr * batch / 256`), unless `lr` is set.
    pub blr: f64,
    /// Absolute learning rate (the authors: 1e-5).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Floor of the cosine schedule.
    pub min_lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Layer-wise learning-rate decay (MAE: 0.75 for ViT-B); none for a single rate.
    #[serde(default)]
    pub layer_decay: Option<f64>,
    /// Stochastic depth rate of the last block.
    pub drop_path: f64,
    /// Class weights of the cross-entropy.
    pub class_weighting: ClassWeighting,
    /// Global-norm gradient clipping.
    #[serde(default)]
    pub clip_grad: Option<f64>,
    /// Training augmentation.
    pub augment: AugmentConfig,
    /// The validation split.
    pub split: SplitConfig,
    /// Seed of the head, the order, the augmentation and drop path.
    pub seed: u64,
    /// Loader worker threads.
    pub workers: usize,
    /// Bootstrap resamples of the test intervals.
    pub bootstrap_resamples: usize,
    /// Epoch checkpoints kept (for resuming).
    pub keep_last: usize,
    /// Precision of the forward and backward passes (`f32`, or `bf16` mixed precision:
    /// master weights, AdamW moments and the loss stay `f32`). Absent from the
    /// configurations of earlier runs, which read as `f32` (and resume as such).
    #[serde(default)]
    pub precision: Precision,
}

impl FinetuneConfig {
    /// The authors' protocol for `task`: full fine-tuning, lr 1e-5, weight decay 0.01, 100
    /// epochs with 2 warm-up, batch 32, drop path 0.1, inverse-frequency class weights,
    /// flips / rotation / scale / intensity augmentation, 30% validation.
    pub fn paper(encoder: EncoderConfig, task: Task) -> Self {
        Self {
            encoder,
            task,
            init: None,
            mode: FinetuneMode::Full,
            epochs: 100,
            warmup_epochs: 2.0,
            batch_size: 32,
            blr: 1e-3,
            lr: Some(1e-5),
            min_lr: 1e-7,
            weight_decay: 0.01,
            layer_decay: None,
            drop_path: 0.1,
            class_weighting: ClassWeighting::InverseFrequency,
            clip_grad: None,
            augment: AugmentConfig::finetune(),
            split: SplitConfig::default(),
            seed: 0,
            workers: 2,
            bootstrap_resamples: 2000,
            keep_last: 2,
            precision: Precision::F32,
        }
    }

    /// Checks every value; the error ([`Error::InvalidSettings`]) names each key at fault
    /// (`lr = -1: must be > 0`).
    pub fn validate(&self) -> Result<()> {
        let mut c = Checks::new();
        c.other("encoder", self.encoder.validate());
        c.recipe(&RecipeValues {
            epochs: self.epochs,
            batch_size: self.batch_size,
            warmup_epochs: self.warmup_epochs,
            blr: self.blr,
            lr: self.lr,
            min_lr: self.min_lr,
            peak_lr: self
                .lr
                .unwrap_or_else(|| scaled_lr(self.blr, self.batch_size)),
            peak_rule: "lr, or blr x batch_size / 256",
            weight_decay: self.weight_decay,
        });
        if let Some(d) = self.layer_decay {
            c.real("layer_decay", d, Some((0.0, false)), Some((1.0, true)));
        }
        c.unit_open("drop_path", self.drop_path);
        if let Some(g) = self.clip_grad {
            c.positive("clip_grad", g);
        }
        c.other("augment", self.augment.validate());
        c.unit_open("split.val_fraction", self.split.val_fraction);
        c.count("workers", self.workers as u64, 0, MAX_WORKERS);
        c.count(
            "bootstrap_resamples",
            self.bootstrap_resamples as u64,
            0,
            1_000_000,
        );
        c.count("keep_last", self.keep_last as u64, 1, 1_000_000);
        c.finish()
    }
}

/// The encoder names of MAE's fine-tuning model are the checkpoint's; these are not part of
/// it (the decoders, and the final norm that global pooling replaces by `fc_norm`).
fn is_pretraining_only(name: &str) -> bool {
    name.starts_with("decoder_embed.")
        || name == "mask_token"
        || name.starts_with("decoders.")
        || name.starts_with("norm.")
}

/// The names a pre-trained checkpoint lacks in the fine-tuning model (MAE's assertion with
/// global pooling).
pub const FINETUNE_MISSING: [&str; 4] =
    ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"];

/// Builds the fine-tuning model, from a checkpoint when `init` is given. A pre-trained
/// checkpoint must leave exactly [`FINETUNE_MISSING`] missing; a fine-tuned one (with a
/// head) must match exactly. Returns the model, its store and the load report.
pub fn build_classifier(
    cfg: &ClassifierConfig,
    init: Option<&Path>,
    mode: FinetuneMode,
    seed: u64,
    device: &Device,
) -> Result<(VitClassifier, ParamStore, LoadReport)> {
    let store = match init {
        None => ParamStore::new(seed, DType::F32, device),
        Some(p) => {
            let ck = read_checkpoint(p, device)?;
            if let Some(tensor) = crate::checkpoint::first_non_finite(ck.tensors.iter())? {
                return Err(Error::NonFiniteTensor {
                    path: p.to_path_buf(),
                    tensor,
                });
            }
            let tensors = prepare_for_model(ck.tensors, cfg.encoder.in_chans)?
                .into_iter()
                .filter(|(k, _)| !is_pretraining_only(k))
                .collect();
            ParamStore::from_tensors(tensors, seed, DType::F32, device)
        }
    };
    if mode == FinetuneMode::LinearProbe {
        store.freeze_prefixes(&["patch_embed.", "cls_token", "blocks."]);
    }
    let model = VitClassifier::new(cfg, store.root())?;
    let report = store.load_report();
    if let Some(p) = init {
        let missing: BTreeSet<&str> = report.missing_names().into_iter().collect();
        let pretrained: BTreeSet<&str> = FINETUNE_MISSING.into_iter().collect();
        let ok = report.unexpected.is_empty()
            && report.mismatched.is_empty()
            && (missing.is_empty() || missing == pretrained);
        if !ok {
            return Err(Error::CheckpointMismatch {
                path: p.to_path_buf(),
                details: format!(
                    "{report} (a pre-trained encoder may lack exactly {})",
                    FINETUNE_MISSING.join(", ")
                ),
            });
        }
    }
    Ok((model, store, report))
}

/// MAE's layer id of a parameter (`util/lr_decay.py`): the embeddings 0, block `i` `i + 1`,
/// the rest `depth + 1`.
pub fn layer_id(name: &str, depth: usize) -> usize {
    if name == "cls_token" || name == "pos_embed" || name.starts_with("patch_embed.") {
        0
    } else if let Some(rest) = name.strip_prefix("blocks.") {
        rest.split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .map_or(depth + 1, |i| i + 1)
    } else {
        depth + 1
    }
}

/// MAE fine-tuning's parameter groups: no weight decay on 1-D parameters, biases, `cls_token`
/// and `pos_embed`; learning-rate scale `layer_decay^(depth + 1 - layer_id)`.
pub fn finetune_param_specs(
    store: &ParamStore,
    depth: usize,
    weight_decay: f64,
    layer_decay: Option<f64>,
) -> Vec<ParamSpec> {
    store
        .trainable()
        .into_iter()
        .map(|(name, var)| {
            let no_decay = var.rank() <= 1
                || name.ends_with(".bias")
                || name == "cls_token"
                || name == "pos_embed";
            let lr_scale =
                layer_decay.map_or(1.0, |d| d.powi((depth + 1 - layer_id(&name, depth)) as i32));
            ParamSpec {
                name,
                var,
                weight_decay: if no_decay { 0.0 } else { weight_decay },
                lr_scale,
            }
        })
        .collect()
}

/// The loss of a batch.
fn batch_loss(logits: &Tensor, targets: &BatchTargets, weights: Option<&[f32]>) -> Result<Tensor> {
    Ok(match targets {
        BatchTargets::Classes(y) => cross_entropy(logits, y, weights)?,
        BatchTargets::MultiHot(y) => bce_with_logits(logits, y)?,
        BatchTargets::None => {
            return Err(Error::Train("a fine-tuning batch without targets".into()))
        }
    })
}

/// What a fine-tuning run produced.
#[derive(Debug, Clone)]
pub struct FinetuneOutcome {
    /// The epoch of the best validation macro AUC (0-based).
    pub best_epoch: usize,
    /// That AUC (NaN when it was never defined; the last epoch is then kept).
    pub best_val_auc: f64,
    /// The best weights (`checkpoints/best.safetensors`).
    pub best_checkpoint: PathBuf,
    /// Test predictions of the best weights (also `predictions.csv`).
    pub test_predictions: Predictions,
    /// Test figures (also `metrics.json`).
    pub test_metrics: TaskMetrics,
}

/// Fine-tunes and evaluates on `data` in the run folder `run`.
pub fn finetune(
    cfg: &FinetuneConfig,
    data: &TaskData,
    run: &RunDir,
    opts: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<FinetuneOutcome> {
    cfg.validate()?;
    let dev = opts.device.clone();
    let k = data.labels.num_outputs();
    let ccfg = ClassifierConfig {
        encoder: cfg.encoder.clone(),
        num_classes: k,
        drop_path: cfg.drop_path,
    };
    let (model, store, _) = build_classifier(&ccfg, cfg.init.as_deref(), cfg.mode, cfg.seed, &dev)?;
    let model = model.with_precision(cfg.precision);
    let mut opt = finetune_optimizer(cfg, &store)?;
    let world = opts.all_reduce.world_size();
    // Fewer training cases than a batch: one smaller batch per epoch instead of none.
    let drop_last = data.train.len() / world >= cfg.batch_size;
    let lc = train_loader_config(
        opts,
        cfg.batch_size,
        drop_last,
        cfg.seed,
        cfg.workers,
        cfg.encoder.in_chans,
    );
    let loader = Loader::new(data.train.clone(), cfg.augment.clone(), lc, dev.clone())?;
    let spec = loop_spec(cfg, loader.batches_per_epoch() as u64, world, data)?;
    let mut identity = opts.data.clone().unwrap_or_default();
    identity.samples = data.train.len();
    let mut meta = base_metadata("finetune", to_json(&ccfg)?, cfg, &identity)?;
    meta.insert(
        "class_names".to_string(),
        serde_json::to_string(&data.labels.class_names).unwrap_or_default(),
    );

    // The run folder: a new run starts clean; a resume takes the newest intact checkpoint.
    let mut io = RunIo {
        run,
        opts,
        observer,
    };
    let resume = open_run(&mut io, &spec, cfg, &identity)?;
    if opts.all_reduce.rank() == 0 {
        // How the inputs are made, for using the model on new ones (`train::inference`).
        run.write_json(
            crate::train::inference::PREPROCESSING_FILE,
            &data.test.preprocessing(),
        )?;
    }
    let mut step = 0;
    let mut best = BestEpoch::None;
    if let Some(st) = &resume {
        restore(&store, &st.model)?;
        opt.load_state(&st.optimizer, &st.metadata)?;
        step = st.step;
        best = BestEpoch::from_metadata(&st.metadata);
    }
    begin_run(run, opts, cfg, &identity, resume.as_ref().map(|st| st.step))?;
    let started = Instant::now();
    io.report(&Event::Start {
        phase: Phase::Finetune,
        total_steps: spec.total_steps,
        start_step: step,
        description: format!(
            "fine-tuning for {} ({} classes, {} training cases), {} steps",
            data.labels.task.name(),
            k,
            data.train.len(),
            spec.total_steps
        ),
    });
    let mut trainer = FinetuneStep {
        params: store.trainable(),
        model,
        store,
        cfg,
        data,
        weights: class_weights(cfg, data),
        all_reduce: opts.all_reduce.clone(),
        meta,
        best,
    };
    let end = run_steps(&spec, &mut trainer, &mut opt, &loader, step, &mut io)?;
    if end.step < spec.total_steps {
        return Err(Error::Train(format!(
            "stopped at step {} of {} (stop_after); resume to finish",
            end.step, spec.total_steps
        )));
    }
    let best_epoch = trainer.best.epoch().ok_or_else(|| {
        Error::Train("no epoch of fine-tuning ended: there are no best weights to test".into())
    })?;
    let (test, tm) = test_best(&trainer, end.step, best_epoch, &mut io)?;
    io.report(&Event::Done {
        phase: Phase::Finetune,
        step: end.step,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(FinetuneOutcome {
        best_epoch,
        best_val_auc: trainer.best.auc().unwrap_or(f64::NAN),
        best_checkpoint: run.best_checkpoint(),
        test_predictions: test,
        test_metrics: tm,
    })
}

/// AdamW over MAE fine-tuning's parameter groups (see [`finetune_param_specs`]).
fn finetune_optimizer(cfg: &FinetuneConfig, store: &ParamStore) -> Result<AdamW> {
    AdamW::with_params(
        finetune_param_specs(store, cfg.encoder.depth, cfg.weight_decay, cfg.layer_decay),
        AdamWConfig::mae_finetune(0.0, cfg.weight_decay),
    )
}

/// The class weights of the cross-entropy: inverse frequency over the training split for a
/// single-label task when asked for, else none.
fn class_weights(cfg: &FinetuneConfig, data: &TaskData) -> Option<Vec<f32>> {
    match (cfg.class_weighting, data.labels.kind) {
        (ClassWeighting::InverseFrequency, TargetKind::Classes(_)) => {
            Some(data.labels.class_weights(Some(&data.split.train)))
        }
        _ => None,
    }
}

/// The run's shape: one optimiser step per batch, the schedule at the batch of all
/// processes, a checkpoint at the end of every epoch.
fn loop_spec(
    cfg: &FinetuneConfig,
    batches: u64,
    world: usize,
    data: &TaskData,
) -> Result<LoopSpec> {
    if batches == 0 {
        return Err(Error::Train(format!(
            "no training cases for {}",
            data.labels.task.name()
        )));
    }
    Ok(LoopSpec {
        phase: Phase::Finetune,
        batches_per_epoch: batches,
        accum: 1,
        total_steps: batches * cfg.epochs as u64,
        schedule: LrSchedule {
            lr: cfg
                .lr
                .unwrap_or_else(|| scaled_lr(cfg.blr, cfg.batch_size * world)),
            min_lr: cfg.min_lr,
            warmup_epochs: cfg.warmup_epochs,
            epochs: cfg.epochs as f64,
        },
        clip_grad: cfg.clip_grad,
        checkpoints: CheckpointPolicy::EveryEpoch,
        keep_last: cfg.keep_last,
    })
}

/// Model selection on the validation macro AUC: the best epoch so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BestEpoch {
    /// No epoch has ended yet.
    None,
    /// The epoch (0-based) of the highest validation AUC so far.
    Scored {
        /// The epoch.
        epoch: usize,
        /// Its validation macro AUC (finite).
        auc: f64,
    },
    /// No epoch so far had a defined AUC (e.g. one class in the validation split): the
    /// latest epoch is kept.
    Unscored {
        /// The epoch.
        epoch: usize,
    },
}

impl BestEpoch {
    /// The train-state metadata key of the best epoch.
    pub const EPOCH_KEY: &'static str = "best_epoch";
    /// The train-state metadata key of its AUC.
    pub const AUC_KEY: &'static str = "best_val_auc";

    /// The best epoch, if one has ended.
    pub fn epoch(&self) -> Option<usize> {
        match *self {
            Self::None => None,
            Self::Scored { epoch, .. } | Self::Unscored { epoch } => Some(epoch),
        }
    }

    /// The best validation AUC, if one was defined.
    pub fn auc(&self) -> Option<f64> {
        match *self {
            Self::Scored { auc, .. } => Some(auc),
            _ => None,
        }
    }

    /// Offers the end of `epoch` with validation AUC `auc` (NaN when undefined); returns
    /// whether its weights become the best: a higher defined AUC always wins, and while no
    /// AUC was ever defined the latest epoch is kept.
    pub fn offer(&mut self, epoch: usize, auc: f64) -> bool {
        let next = match *self {
            _ if auc.is_finite() && self.auc().is_none_or(|best| auc > best) => {
                Self::Scored { epoch, auc }
            }
            Self::None | Self::Unscored { .. } if !auc.is_finite() => Self::Unscored { epoch },
            _ => return false,
        };
        *self = next;
        true
    }

    /// Records the best epoch in a train state's metadata (the format every version wrote:
    /// `usize::MAX` for no epoch, `-inf` for no AUC).
    pub fn write_metadata(&self, meta: &mut BTreeMap<String, String>) {
        let epoch = self.epoch().map_or(usize::MAX, |e| e);
        let auc = self.auc().unwrap_or(f64::NEG_INFINITY);
        meta.insert(Self::EPOCH_KEY.into(), epoch.to_string());
        meta.insert(Self::AUC_KEY.into(), auc.to_string());
    }

    /// Reads what [`Self::write_metadata`] wrote; anything else is no epoch.
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Self {
        let epoch = meta
            .get(Self::EPOCH_KEY)
            .and_then(|e| e.parse::<usize>().ok())
            .filter(|&e| e != usize::MAX);
        let auc = meta
            .get(Self::AUC_KEY)
            .and_then(|a| a.parse::<f64>().ok())
            .filter(|a| a.is_finite());
        match (epoch, auc) {
            (Some(epoch), Some(auc)) => Self::Scored { epoch, auc },
            (Some(epoch), None) => Self::Unscored { epoch },
            (None, _) => Self::None,
        }
    }
}

/// Fine-tuning's part of the loop: the classifier's forward pass with drop path and the
/// task's loss, and at the end of every epoch validation and model selection.
struct FinetuneStep<'a> {
    model: VitClassifier,
    store: ParamStore,
    params: Vec<(String, Var)>,
    cfg: &'a FinetuneConfig,
    data: &'a TaskData,
    /// Class weights of the cross-entropy.
    weights: Option<Vec<f32>>,
    all_reduce: Arc<dyn AllReduce>,
    meta: BTreeMap<String, String>,
    best: BestEpoch,
}

impl FinetuneStep<'_> {
    /// The metadata of the best weights and of train states.
    fn metadata_with_best(&self) -> BTreeMap<String, String> {
        let mut m = self.meta.clone();
        self.best.write_metadata(&mut m);
        m
    }

    /// Predictions of the current weights on `cases`.
    fn predict(&self, cases: Arc<CachedCrops>) -> Result<Predictions> {
        predict(
            &self.model,
            cases,
            &self.data.labels.task.name(),
            &self.data.labels.class_names,
            self.cfg.batch_size,
            self.store.device(),
        )
    }
}

impl TrainStep for FinetuneStep<'_> {
    fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    fn micro_batch(&mut self, batch: Batch, step: u64, _micro: u64) -> Result<MicroLoss> {
        // One drop-path stream per step of all processes together, each sample's masks by
        // its position in the global batch: the same whatever the number of processes.
        let mut rng = Rng::keyed(self.cfg.seed, &[DROP_STREAM, step, 0]);
        let n = batch.images.dim(0)?;
        let world = self.all_reduce.world_size();
        let rows = global_positions(self.all_reduce.rank(), world, n);
        let logits = self
            .model
            .forward_train_rows(&batch.images, &rows, n * world, &mut rng)?;
        let mut loss = batch_loss(&logits, &batch.targets, self.weights.as_deref())?;
        if let (Some(w), BatchTargets::Classes(y), true) =
            (&self.weights, &batch.targets, world > 1)
        {
            // The weighted cross-entropy of the global batch divides by the weights of all
            // its samples: rescale this process's mean by its share of them, so that the
            // mean over processes is the global batch's loss.
            let here: f64 = y
                .to_vec1::<u32>()?
                .iter()
                .map(|&c| f64::from(w.get(c as usize).copied().unwrap_or(0.0)))
                .sum();
            let mean = self.all_reduce.mean_scalar(here)?;
            if mean > 0.0 {
                loss = (loss * (here / mean))?;
            }
        }
        Ok(MicroLoss {
            total: scalar(&loss)?,
            parts: vec![],
            loss,
            images: batch.images.dim(0)?,
        })
    }

    fn end_of_epoch(
        &mut self,
        epoch: u64,
        step: u64,
        losses: &[f64],
        io: &mut RunIo<'_>,
    ) -> Result<()> {
        let val = self.predict(self.data.validation.clone())?;
        let vm = evaluate(
            &val,
            &EvalConfig {
                bootstrap_resamples: 0,
                ..EvalConfig::default()
            },
        )?;
        let auc = vm.auc.unwrap_or(f64::NAN);
        let mut metrics = BTreeMap::new();
        metrics.insert("macro_auc".to_string(), auc);
        metrics.insert("macro_ap".to_string(), vm.ap.unwrap_or(f64::NAN));
        metrics.insert(
            "train_loss".to_string(),
            losses.iter().sum::<f64>() / losses.len().max(1) as f64,
        );
        io.emit(&Event::Eval(EvalEvent {
            phase: Phase::Finetune,
            step,
            epoch,
            subset: "validation".into(),
            metrics,
        }))?;
        if self.best.offer(epoch as usize, auc) && io.opts.all_reduce.rank() == 0 {
            let mut m = self.metadata_with_best();
            m.insert("format".into(), crate::checkpoint::FORMAT.into());
            let path = io.run.save_best(&self.store.state_dict(), &m)?;
            io.report(&Event::Checkpoint {
                phase: Phase::Finetune,
                step,
                path,
                best: true,
            });
        }
        Ok(())
    }

    fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.store.state_dict()
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.metadata_with_best()
    }
}

/// The test evaluation with the best weights: `predictions.csv`, `metrics.json` and the
/// test `eval` event.
fn test_best(
    trainer: &FinetuneStep<'_>,
    step: u64,
    best_epoch: usize,
    io: &mut RunIo<'_>,
) -> Result<(Predictions, TaskMetrics)> {
    let run = io.run;
    let ck = read_checkpoint(&run.best_checkpoint(), trainer.store.device())?;
    restore(&trainer.store, &ck.tensors)?;
    let test = trainer.predict(trainer.data.test.clone())?;
    let tm = evaluate(
        &test,
        &EvalConfig {
            bootstrap_resamples: trainer.cfg.bootstrap_resamples,
            level: 0.95,
            seed: trainer.cfg.seed,
        },
    )?;
    if io.opts.all_reduce.rank() == 0 {
        test.write_csv(&run.path().join("predictions.csv"))?;
        let js = serde_json::to_string_pretty(&tm).map_err(|e| Error::Train(e.to_string()))?;
        crate::checkpoint::write_atomic(&run.path().join("metrics.json"), js.as_bytes())?;
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("macro_auc".to_string(), tm.auc.unwrap_or(f64::NAN));
    metrics.insert("macro_ap".to_string(), tm.ap.unwrap_or(f64::NAN));
    let ev = Event::Eval(EvalEvent {
        phase: Phase::Evaluate,
        step,
        epoch: best_epoch as u64,
        subset: "test".into(),
        metrics,
    });
    io.emit(&ev)?;
    Ok((test, tm))
}

/// Sets the trained values (parameters and buffers) of `store` from `tensors`; frozen
/// parameters never change and are left as they are.
fn restore(store: &ParamStore, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
    for (name, _) in store.trainable().into_iter().chain(store.buffers()) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| Error::Train(format!("the checkpoint lacks {name}")))?;
        store.set(&name, t)?;
    }
    Ok(())
}

/// Loads a fine-tuned classifier written by [`finetune`] (`best.safetensors`): its
/// configuration and class names come from the metadata.
pub fn load_classifier(
    path: &Path,
    device: &Device,
) -> Result<(VitClassifier, ClassifierConfig, Vec<String>)> {
    let ck = read_checkpoint(path, device)?;
    let bad = |m: &str| Error::Checkpoint {
        path: path.to_path_buf(),
        message: m.to_string(),
    };
    let cfg: ClassifierConfig = serde_json::from_str(
        ck.metadata
            .get("config")
            .ok_or_else(|| bad("no config in the metadata"))?,
    )
    .map_err(|e| bad(&format!("config: {e}")))?;
    let names: Vec<String> = ck
        .metadata
        .get("class_names")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| (0..cfg.num_classes).map(|i| i.to_string()).collect());
    let (model, _, report) = build_classifier(&cfg, Some(path), FinetuneMode::Full, 0, device)?;
    if !report.is_exact() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            details: report.to_string(),
        });
    }
    Ok((model, cfg, names))
}

/// Trains nothing: the figures of a fine-tuned classifier on `data`'s test set.
pub fn evaluate_checkpoint(
    path: &Path,
    data: &TaskData,
    eval: &EvalConfig,
    batch_size: usize,
    device: &Device,
) -> Result<(Predictions, TaskMetrics)> {
    let (model, _, _) = load_classifier(path, device)?;
    let preds = predict(
        &model,
        data.test.clone(),
        &data.labels.task.name(),
        &data.labels.class_names,
        batch_size,
        device,
    )?;
    let m = evaluate(&preds, eval)?;
    Ok((preds, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            encoder: EncoderConfig {
                img_size: 16,
                patch_size: 8,
                in_chans: 1,
                embed_dim: 16,
                depth: 2,
                num_heads: 2,
                mlp_ratio: 2.0,
            },
            num_classes: 3,
            drop_path: 0.1,
        }
    }

    #[test]
    fn a_configuration_without_precision_is_f32() {
        let paper = FinetuneConfig::paper(cfg().encoder, Task::PathologyBinary);
        let mut v = serde_json::to_value(&paper).expect("serialise");
        assert_eq!(v.get("precision"), Some(&serde_json::json!("f32")));
        if let Some(m) = v.as_object_mut() {
            m.insert("precision".into(), "bf16".into());
        }
        let bf16: FinetuneConfig = serde_json::from_value(v.clone()).expect("bf16");
        assert_eq!(bf16.precision, Precision::Bf16);
        if let Some(m) = v.as_object_mut() {
            m.remove("precision");
        }
        let old: FinetuneConfig = serde_json::from_value(v).expect("old");
        assert_eq!(old.precision, Precision::F32);
        assert_eq!(old, paper);
    }

    #[test]
    fn best_epoch_keeps_the_highest_defined_auc() {
        let mut best = BestEpoch::None;
        // No AUC defined yet: the latest epoch is kept.
        assert!(best.offer(0, f64::NAN));
        assert_eq!(best, BestEpoch::Unscored { epoch: 0 });
        assert!(best.offer(1, f64::NAN));
        assert_eq!(best, BestEpoch::Unscored { epoch: 1 });
        // A defined AUC beats none; a higher one beats it; ties and undefined ones do not.
        assert!(best.offer(2, 0.6));
        assert!(!best.offer(3, 0.6));
        assert!(!best.offer(4, f64::NAN));
        assert!(!best.offer(5, 0.5));
        assert!(best.offer(6, 0.7));
        assert_eq!(best, BestEpoch::Scored { epoch: 6, auc: 0.7 });
        assert_eq!((best.epoch(), best.auc()), (Some(6), Some(0.7)));
    }

    #[test]
    fn best_epoch_metadata_round_trips_in_the_written_format() {
        for best in [
            BestEpoch::None,
            BestEpoch::Unscored { epoch: 3 },
            BestEpoch::Scored {
                epoch: 2,
                auc: 0.625,
            },
        ] {
            let mut m = BTreeMap::new();
            best.write_metadata(&mut m);
            assert_eq!(BestEpoch::from_metadata(&m), best);
        }
        // The strings train states have always carried for "no epoch yet".
        let mut m = BTreeMap::new();
        BestEpoch::None.write_metadata(&mut m);
        assert_eq!(m["best_epoch"], usize::MAX.to_string());
        assert_eq!(m["best_val_auc"], "-inf");
        assert_eq!(BestEpoch::from_metadata(&BTreeMap::new()), BestEpoch::None);
    }

    #[test]
    fn layer_ids_follow_mae() {
        assert_eq!(layer_id("cls_token", 12), 0);
        assert_eq!(layer_id("patch_embed.proj.weight", 12), 0);
        assert_eq!(layer_id("blocks.0.attn.qkv.weight", 12), 1);
        assert_eq!(layer_id("blocks.11.mlp.fc2.bias", 12), 12);
        assert_eq!(layer_id("fc_norm.weight", 12), 13);
        assert_eq!(layer_id("head.weight", 12), 13);
    }

    #[test]
    fn parameter_groups_decay_and_scale_as_mae() -> Result<()> {
        let (_, store, _) = build_classifier(&cfg(), None, FinetuneMode::Full, 0, &Device::Cpu)?;
        let specs = finetune_param_specs(&store, 2, 0.05, Some(0.5));
        let get = |n: &str| specs.iter().find(|s| s.name == n).expect(n);
        assert_eq!(get("cls_token").weight_decay, 0.0);
        assert_eq!(get("cls_token").lr_scale, 0.125); // 0.5^(3 - 0)
        assert_eq!(get("blocks.1.attn.qkv.weight").weight_decay, 0.05);
        assert_eq!(get("blocks.1.attn.qkv.weight").lr_scale, 0.5); // 0.5^(3 - 2)
        assert_eq!(get("blocks.1.attn.qkv.bias").weight_decay, 0.0);
        assert_eq!(get("head.weight").lr_scale, 1.0);
        assert_eq!(get("fc_norm.weight").weight_decay, 0.0);
        Ok(())
    }

    #[test]
    fn linear_probe_trains_only_the_head() -> Result<()> {
        let (model, store, _) =
            build_classifier(&cfg(), None, FinetuneMode::LinearProbe, 0, &Device::Cpu)?;
        let names: Vec<String> = store.trainable().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
        );
        // The frozen encoder still computes, and is saved with the weights.
        let x = Tensor::zeros((2, 1, 16, 16), DType::F32, &Device::Cpu)?;
        assert_eq!(model.forward(&x)?.dims(), &[2, 3]);
        assert!(store.state_dict().contains_key("blocks.0.attn.qkv.weight"));
        Ok(())
    }
}
