//! `miram pretrain`: MIRAM (or single-scale MAE) pre-training on the lesion crops and
//! background patches of a dataset's official training split, with the authors' recipe as
//! the default (`PretrainConfig::paper`), in a resumable run folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use miram_core::checkpoint::{resave_as, SaveDtype};
use miram_core::train::{DataConfig, PretrainConfig, RunOptions};
use miram_core::{MiramConfig, Precision};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config;
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// The resolved configuration of `miram pretrain` (also the format of its `--config` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainCommand {
    /// The model preset the defaults come from.
    pub preset: String,
    /// Pre-train the single-scale MAE (the 1x decoder only) instead of MIRAM.
    pub single_scale: bool,
    /// The run folder.
    pub out: PathBuf,
    /// The dataset.
    pub data: DataConfig,
    /// The recipe, with the model under `pretrain.model`.
    pub pretrain: PretrainConfig,
}

/// Arguments of `miram pretrain`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Defaults: the authors' recipe for the preset (500 epochs, 40 warm-up, effective batch 1024 as
64 x 16 accumulated, base lr 1.5e-4 scaled by batch/256, weight decay 0.05, betas 0.9/0.95,
random resized crops). The run folder gets config.json (the resolved recipe), data.json (what
it is trained on), log.jsonl (one line per step), checkpoints/ (resumable, f32; the run resumes
from the newest intact one unless --restart), model.safetensors at the end (f32, or f16 /
bf16 with --save-dtype), and loss.png (loss per scale over steps).

Run folders: one process at a time (a second one is refused, naming the holder's pid). A
resume must use the same recipe and the same data (the differences are listed; --workers may
change); a truncated newest checkpoint is skipped for the previous one, with a warning.
--restart moves the previous run's files into <out>/previous-<UTC time>/ and starts clean.
A non-finite gradient, weight or optimiser moment stops the run before anything of that step
is saved. Every setting out of its range is refused before any work, naming its key.

The configuration file (TOML or JSON) has the keys of the resolved configuration printed at
the start: preset, single_scale, out, [data] (root, layout, cache_dir, crop_margin,
background_per_image) and [pretrain] (epochs, warmup_epochs, batch_size, accum_iter, blr, lr,
min_lr, weight_decay, betas, clip_grad, augment, seed, workers, checkpoint_every, keep_last,
precision, and [pretrain.model] with the model's fields). Flags override the file.

--precision bf16 (a GPU only) trains in bf16 mixed precision: matrix products and activations
in bf16; master weights, AdamW moments, LayerNorm, softmax and the loss in f32. A run resumes
only with the precision it was started with.

Examples:
  miram pretrain --data ~/CBIS-DDSM --preset paper --out runs/miram-paper
  miram pretrain --data ~/CBIS-DDSM --preset paper --single-scale --out runs/mae-paper
  miram pretrain --config pretrain.toml --device cuda:0
  miram pretrain --data ~/CBIS-DDSM --preset paper --device cuda --precision bf16")]
pub struct PretrainArgs {
    /// The dataset root (a TCIA download, the Kaggle copy or `miram synth` output).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The run folder (default runs/pretrain-<preset>, or runs/pretrain-<preset>-mae).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Model preset [default: paper].
    #[arg(long, value_name = "NAME", value_parser = crate::args::PresetParser)]
    pub preset: Option<String>,
    /// Pre-train single-scale MAE (the baseline) instead of MIRAM.
    #[arg(long)]
    pub single_scale: bool,
    /// The type of the final model's tensors (model.safetensors); the resume checkpoints stay
    /// f32.
    #[arg(long, value_name = "DTYPE", default_value = "f32",
          value_parser = crate::args::save_dtype_parser())]
    pub save_dtype: SaveDtype,
    /// Precision of training: f32, or bf16 mixed precision (master weights, AdamW moments and
    /// the loss in f32; needs a GPU) [default: f32].
    #[arg(long, value_name = "PRECISION", value_parser = crate::args::precision_parser())]
    pub precision: Option<Precision>,
    /// Epochs (without --warmup-epochs, the warm-up keeps the recipe's share of them).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Warm-up epochs.
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<f64>,
    /// Images per micro-batch.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Micro-batches accumulated per optimiser step.
    #[arg(long, value_name = "N")]
    pub accum_iter: Option<usize>,
    /// Base learning rate (scaled by effective batch / 256).
    #[arg(long, value_name = "LR")]
    pub blr: Option<f64>,
    /// Loader worker threads.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Start a new run instead of resuming: the previous run's files move into
    /// <out>/previous-<UTC time>/.
    #[arg(long)]
    pub restart: bool,
    /// Stop after this many optimiser steps (resume later).
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<u64>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The defaults of `preset` (MAE when `single_scale`).
pub fn defaults(preset: &str, single_scale: bool) -> Result<PretrainCommand> {
    let mut model = MiramConfig::preset(preset)?;
    if single_scale {
        model = model.single_scale();
    }
    let suffix = if single_scale { "-mae" } else { "" };
    Ok(PretrainCommand {
        preset: preset.to_string(),
        single_scale,
        out: PathBuf::from(format!("runs/pretrain-{preset}{suffix}")),
        data: DataConfig::new(""),
        pretrain: PretrainConfig::paper(model),
    })
}

/// Resolves the configuration: preset defaults, file, flags.
pub fn resolve(a: &PretrainArgs, g: &GlobalArgs) -> Result<PretrainCommand> {
    let file = a.config.as_deref();
    let preset = match &a.preset {
        Some(p) => p.clone(),
        None => config::peek(file, "preset")?
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "paper".to_string()),
    };
    let single = a.single_scale
        || config::peek(file, "single_scale")?
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    let base = defaults(&preset, single)?;
    let mut cfg: PretrainCommand = config::resolve(
        &base,
        file,
        &[
            ("out", config::flag(&a.out)),
            ("data.root", config::flag(&a.data)),
            ("pretrain.epochs", config::flag(&a.epochs)),
            ("pretrain.warmup_epochs", config::flag(&a.warmup_epochs)),
            ("pretrain.batch_size", config::flag(&a.batch_size)),
            ("pretrain.accum_iter", config::flag(&a.accum_iter)),
            ("pretrain.blr", config::flag(&a.blr)),
            ("pretrain.workers", config::flag(&a.workers)),
            ("pretrain.precision", config::flag(&a.precision)),
            ("pretrain.seed", config::flag(&g.seed)),
        ],
    )?;
    let warmup_given = a.warmup_epochs.is_some()
        || config::peek(file, "pretrain")?.is_some_and(|p| p.get("warmup_epochs").is_some());
    if !warmup_given {
        cfg.pretrain.warmup_epochs = study::keep_warmup_share(
            &base.pretrain.warmup_epochs,
            base.pretrain.epochs,
            cfg.pretrain.epochs,
        );
    }
    miram_core::settings::merge([
        cfg.pretrain.validate().map_err(|e| e.under("pretrain")),
        cfg.data.validate().map_err(|e| e.under("data")),
    ])?;
    study::check_data(&cfg.data)?;
    Ok(cfg)
}

/// Runs `miram pretrain`.
pub fn run(a: &PretrainArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let cfg = resolve(a, g)?;
    let mut opts = RunOptions::new(study::device(g.device.as_deref())?);
    crate::args::check_precision(cfg.pretrain.precision, &opts.device)?;
    opts.all_reduce = study::processes(&opts.device)?;
    ui.config("pretrain", &cfg);
    opts.resume = !a.restart;
    opts.stop_after = a.stop_after;
    let model = &cfg.pretrain.model;
    let hires = cfg
        .pretrain
        .native_hires_targets
        .then(|| model.scales.iter().map(|s| s.scale as u32).max())
        .flatten()
        .filter(|&s| s > 1);
    let (run, data) = study::open_shared_run(ui, &*opts.all_reduce, &cfg.out, a.restart, &|| {
        study::prepare(ui, &cfg.data, model.img_size, hires, cfg.pretrain.seed)
    })?;
    let name = if cfg.single_scale { "MAE" } else { "MIRAM" };
    let rank0 = opts.all_reduce.rank() == 0;
    if rank0 {
        run.write_json("command.json", &cfg)?;
    }
    let r = study::pretrain_run(ui, name, &cfg.preset, &cfg.pretrain, &data, &run, &opts)?;
    if !rank0 {
        // The other ranks trained; rank 0 writes and reports.
        return Ok(());
    }
    if let Some(m) = &r.model {
        resave_as(m, a.save_dtype)?;
    }
    let loss_png = cfg.out.join("loss.png");
    study::loss_figure(
        std::slice::from_ref(&r),
        std::slice::from_ref(model),
        &loss_png,
    )?;
    let scales: Vec<String> = r
        .final_losses
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    let mut text = format!(
        "{name} ({}) pre-trained for {} steps in {}: final loss {:.4} ({})\n",
        cfg.preset,
        r.steps,
        crate::ui::fmt_duration(std::time::Duration::from_secs_f64(r.seconds)),
        r.final_loss,
        scales.join(", ")
    );
    match &r.model {
        Some(m) => text.push_str(&format!(
            "model: {}\nloss curves: {}\nnext: miram finetune --data {} --init {} --task pathology\n",
            m.display(),
            loss_png.display(),
            cfg.data.root.display(),
            cfg.out.display()
        )),
        None => text.push_str(&format!(
            "stopped before the end; run the same command again to resume from {}\n",
            cfg.out.join("checkpoints").display()
        )),
    }
    ui.result_text(text);
    ui.event(
        "result",
        json!({ "run_dir": cfg.out, "model": r.model, "steps": r.steps, "final_loss": r.final_loss,
                "final_losses": r.final_losses.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<String, Value>>(),
                "loss_plot": loss_png }),
    );
    Ok(())
}
