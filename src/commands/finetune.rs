//! `miram finetune`: fine-tunes an encoder (from a MIRAM or MAE checkpoint, or at random)
//! for a CBIS-DDSM task with the authors' protocol as the default
//! (`FinetuneConfig::paper`), selects the epoch of best validation macro AUC, and evaluates
//! it on the official test set (AP and AUC with bootstrap intervals, ROC and PR curves,
//! predictions CSV).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::checkpoint::{resave_as, SaveDtype};
use miram_core::train::{DataConfig, FinetuneConfig, RunOptions};
use miram_core::{MiramConfig, Precision};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config;
use crate::report::{with_ci, TaskResult};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// The resolved configuration of `miram finetune` (also the format of its `--config` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneCommand {
    /// The model preset the encoder comes from when the initial checkpoint does not say.
    pub preset: String,
    /// The run's name in reports.
    pub name: String,
    /// The run folder.
    pub out: PathBuf,
    /// The dataset.
    pub data: DataConfig,
    /// The recipe (task, initial checkpoint, encoder, schedule, augmentation, split).
    pub finetune: FinetuneConfig,
}

/// Arguments of `miram finetune`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Tasks: pathology (malignant vs benign; BENIGN_WITHOUT_CALLBACK is benign), pathology4
(mass/calcification x benign/malignant), margins (the five mass margins, multi-label; NA rows
dropped), column:<CSV column> (any categorical column, multi-label).

Defaults: the authors' protocol (full fine-tuning, lr 1e-5, weight decay 0.01, 100 epochs with
2 warm-up, batch 32, drop path 0.1, inverse-frequency class weights, flips / rotation 25 deg /
scale 0.8-1.2 / intensity shift, validation = 30% of train grouped by patient). The epoch of
best validation macro AUC is evaluated on the official test set. Official test cases that
cannot be used (files missing or undecodable) are left out with a warning naming each one, and
the result says how many were dropped (`3 test cases (1 dropped: <row>: <file>: <cause>)`);
--strict-test (data.require_all_test_cases = true) makes that an error. The run folder gets
config.json, data.json, log.jsonl, checkpoints/best.safetensors (f32, or f16 / bf16 with
--save-dtype), predictions.csv (score any way you like with `miram metrics`), metrics.json,
roc.png and pr.png. The run resumes from its newest intact checkpoint with the same recipe
and data (the differences are listed otherwise);
--restart moves the previous run into <out>/previous-<UTC time>/. One process at a time holds
a run folder. Initial weights holding NaN or inf are refused, naming the tensor; a non-finite
gradient, weight or optimiser moment stops the run before anything of that step is saved.

The configuration file (TOML or JSON) has the keys of the resolved configuration printed at
the start: preset, name, out, [data] and [finetune] (task, init, mode, epochs, warmup_epochs,
batch_size, blr, lr, min_lr, weight_decay, layer_decay, drop_path, class_weighting, clip_grad,
augment, split, seed, workers, bootstrap_resamples, keep_last, precision, encoder).
--precision bf16 (a GPU only) trains in bf16 mixed precision (master weights, AdamW moments
and the loss in f32); a run resumes only with the precision it was started with.

Examples:
  miram finetune --data ~/CBIS-DDSM --init runs/miram-paper --task pathology --out runs/ft-miram-pathology
  miram finetune --data ~/CBIS-DDSM --preset paper --task margins     # random initialisation
  miram finetune --data ~/CBIS-DDSM --init mae_pretrain_vit_base.pth --preset paper --task pathology")]
pub struct FinetuneArgs {
    /// The dataset root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The task: pathology, pathology4, margins or column:<CSV column> [default: pathology].
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// The checkpoint to start from: a pre-training run folder, a MIRAM .safetensors, an MAE
    /// .pth or timm .safetensors file. Without it, the encoder starts at random.
    #[arg(long, value_name = "PATH")]
    pub init: Option<PathBuf>,
    /// Model preset of the encoder when the checkpoint does not record one [default: paper].
    #[arg(long, value_name = "NAME", value_parser = crate::args::PresetParser)]
    pub preset: Option<String>,
    /// The run folder (default runs/finetune-<task>-<init>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The run's name in reports (default: the initial checkpoint's folder, or `random init`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Epochs (without --warmup-epochs, the warm-up keeps the recipe's share of them).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Warm-up epochs.
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<f64>,
    /// Images per batch.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Absolute learning rate.
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Bootstrap resamples of the test intervals.
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// The type of the final model's tensors (checkpoints/best.safetensors, written once the
    /// test set is scored); the resume checkpoints stay f32.
    #[arg(long, value_name = "DTYPE", default_value = "f32",
          value_parser = crate::args::save_dtype_parser())]
    pub save_dtype: SaveDtype,
    /// Precision of training: f32, or bf16 mixed precision (master weights, AdamW moments and
    /// the loss in f32; needs a GPU) [default: f32].
    #[arg(long, value_name = "PRECISION", value_parser = crate::args::precision_parser())]
    pub precision: Option<Precision>,
    /// Start a new run instead of resuming: the previous run's files move into
    /// <out>/previous-<UTC time>/.
    #[arg(long)]
    pub restart: bool,
    /// Refuse to run when an official test case of the task cannot be used (its files
    /// missing or undecodable) instead of leaving it out with a warning
    /// (data.require_all_test_cases = true in the configuration file).
    #[arg(long)]
    pub strict_test: bool,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The encoder a fine-tuning starts from: the checkpoint's own configuration when it records
/// one (MIRAM checkpoints do), else the preset's.
pub fn encoder_model(init: Option<&std::path::Path>, preset: &str) -> Result<MiramConfig> {
    if let Some(p) = init {
        if let Some(c) = study::checkpoint_model_config(p)? {
            return Ok(c);
        }
    }
    Ok(MiramConfig::preset(preset)?)
}

/// A short name of a task for folder names.
pub fn task_slug(t: &Task) -> String {
    t.name().replace([':', ' '], "_")
}

/// Resolves the configuration: defaults (encoder from the checkpoint or preset), file, flags.
pub fn resolve(a: &FinetuneArgs, g: &GlobalArgs) -> Result<FinetuneCommand> {
    let file = a.config.as_deref();
    let preset = match &a.preset {
        Some(p) => p.clone(),
        None => config::peek(file, "preset")?
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "paper".into()),
    };
    let file_ft = config::peek(file, "finetune")?;
    let init = match &a.init {
        Some(p) => Some(study::resolve_checkpoint(p, "--init")?),
        None => match file_ft
            .as_ref()
            .and_then(|f| f.get("init"))
            .and_then(|v| v.as_str())
        {
            Some(p) => Some(study::resolve_checkpoint(
                std::path::Path::new(p),
                "finetune.init",
            )?),
            None => None,
        },
    };
    let task = match &a.task {
        Some(t) => study::parse_task(t)?,
        None => match file_ft.as_ref().and_then(|f| f.get("task")) {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("finetune.task: {e}"))?,
            None => Task::PathologyBinary,
        },
    };
    let model = encoder_model(init.as_deref(), &preset)?;
    let init_name = init
        .as_ref()
        .and_then(|p| {
            let p = if p.file_name().is_some_and(|n| n == "model.safetensors") {
                p.parent()?
            } else {
                p.as_path()
            };
            p.file_stem().map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "random".into());
    let mut ft = FinetuneConfig::paper(model.encoder(), task.clone());
    ft.init = init.clone();
    let base = FinetuneCommand {
        preset,
        name: if init.is_some() {
            init_name.clone()
        } else {
            "random init".into()
        },
        out: PathBuf::from(format!("runs/finetune-{}-{init_name}", task_slug(&task))),
        data: DataConfig::new(""),
        finetune: ft,
    };
    let mut cfg: FinetuneCommand = config::resolve(
        &base,
        file,
        &[
            ("out", config::flag(&a.out)),
            ("name", config::flag(&a.name)),
            ("data.root", config::flag(&a.data)),
            (
                "data.require_all_test_cases",
                a.strict_test.then_some(json!(true)),
            ),
            ("finetune.init", init.as_ref().map(|p| json!(p))),
            ("finetune.task", Some(serde_json::to_value(&task)?)),
            ("finetune.epochs", config::flag(&a.epochs)),
            ("finetune.warmup_epochs", config::flag(&a.warmup_epochs)),
            ("finetune.batch_size", config::flag(&a.batch_size)),
            ("finetune.lr", config::flag(&a.lr)),
            ("finetune.bootstrap_resamples", config::flag(&a.bootstrap)),
            ("finetune.seed", config::flag(&g.seed)),
            ("finetune.precision", config::flag(&a.precision)),
        ],
    )?;
    let warmup_given = a.warmup_epochs.is_some()
        || file_ft
            .as_ref()
            .is_some_and(|f| f.get("warmup_epochs").is_some());
    if !warmup_given {
        cfg.finetune.warmup_epochs = study::keep_warmup_share(
            &base.finetune.warmup_epochs,
            base.finetune.epochs,
            cfg.finetune.epochs,
        );
    }
    miram_core::settings::merge([
        cfg.finetune.validate().map_err(|e| e.under("finetune")),
        cfg.data.validate().map_err(|e| e.under("data")),
    ])?;
    study::check_data(&cfg.data)?;
    Ok(cfg)
}

/// Runs `miram finetune`.
pub fn run(a: &FinetuneArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let cfg = resolve(a, g)?;
    let mut opts = RunOptions::new(study::device(g.device.as_deref())?);
    crate::args::check_precision(cfg.finetune.precision, &opts.device)?;
    opts.all_reduce = study::processes(&opts.device)?;
    ui.config("finetune", &cfg);
    opts.resume = !a.restart;
    let (run, data) = study::open_shared_run(ui, &*opts.all_reduce, &cfg.out, a.restart, &|| {
        study::prepare(
            ui,
            &cfg.data,
            cfg.finetune.encoder.img_size,
            None,
            cfg.finetune.seed,
        )
    })?;
    let task_data = data.task(&cfg.finetune.task, &cfg.finetune.split)?;
    study::warn_dropped_test(ui, &cfg.finetune.task, &task_data);
    let rank0 = opts.all_reduce.rank() == 0;
    if rank0 {
        run.write_json("command.json", &cfg)?;
    }
    let r = study::finetune_run(ui, &cfg.name, &cfg.finetune, &data, &task_data, &run, &opts)?;
    if !rank0 {
        // The other ranks trained; rank 0 writes and reports.
        return Ok(());
    }
    resave_as(&run.best_checkpoint(), a.save_dtype)?;
    let t = TaskResult {
        task: task_slug(&cfg.finetune.task),
        description: study::describe_task(&cfg.finetune.task),
        baseline: None,
        runs: vec![r],
    };
    let figures = study::curve_figures(&t, &cfg.out, std::path::Path::new(""))?;
    let m = &t.runs[0].metrics;
    let mut text = format!(
        "{} on {} ({}, {}):\n  AUC {}\n  AP  {}\n",
        cfg.name,
        t.task,
        study::test_case_count(m.n_cases, &task_data),
        m.averaging,
        with_ci(m.auc, m.auc_ci.map(|c| (c.lower, c.upper))),
        with_ci(m.ap, m.ap_ci.map(|c| (c.lower, c.upper)))
    );
    for n in &m.notes {
        text.push_str(&format!("  note: {n}\n"));
    }
    text.push_str(&format!(
        "predictions: {}\nplots: {}\n",
        cfg.out.join("predictions.csv").display(),
        figures
            .iter()
            .map(|f| cfg.out.join(&f.path).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ui.result_text(text);
    let dropped: Vec<&miram_core::cbis_ddsm::loader::DroppedCase> = task_data.dropped_test();
    ui.event(
        "result",
        json!({ "run_dir": cfg.out, "task": t.task, "metrics": m, "dropped_test_cases": dropped }),
    );
    Ok(())
}
