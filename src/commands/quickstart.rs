//! `miram quickstart`: the whole study on a generated CBIS-DDSM-shaped dataset, on this
//! machine, in minutes: generate the data, pre-train the `micro` preset with MIRAM (1x + 2x)
//! and, for comparison, single-scale MAE; fine-tune both and a randomly initialised encoder
//! for pathology and for mass margins; print AP and AUC with 95% bootstrap intervals and
//! DeLong p-values against MAE; write `report.json`, `report.md` and the plots.
//!
//! The numbers are whatever the run gives: nothing is tuned to the generated data or fixed.
//! Every size of the run is in [`QuickstartConfig`], with the reason for its value.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use miram_core::cbis_ddsm::synth::{SynthConfig, SynthManifest};
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::train::{compare, DataConfig, FinetuneConfig, PretrainConfig, RunOptions};
use miram_core::MiramConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commands::finetune::{task_slug, FinetuneCommand};
use crate::config;
use crate::report::{results_table, Figure, Report, TaskResult};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Every size of the quick start in one place. The budget is 10 minutes end to end on 2 CPU
/// cores; the defaults aim at about half of it so that a slower machine still fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickstartConfig {
    /// Where the data, the runs and the report go.
    pub out: PathBuf,
    /// The generated dataset. 140 patients give about 320 abnormalities (about 60 in the
    /// official test split, 25 of them masses; 160 patients gave 370 and 70 / 26): few
    /// enough to write in about half a minute, enough for test AUC intervals narrower than
    /// the whole [0, 1] range and test cases for most mass-margin classes. Images stay at
    /// the `small` preset's 512 x 832 px, enough for 64 px lesion crops with their border
    /// detail.
    pub synth: SynthConfig,
    /// The model preset: `micro` (64 px, patch 8, a 4-block encoder) is the only one whose
    /// pre-training fits minutes on 2 cores.
    pub preset: String,
    /// Pre-training epochs over the training crops (the official training split's lesions
    /// and 2 background patches per image, about 680 crops, 21 steps an epoch at batch 32).
    /// MIRAM's 2x decoder makes its step about 4 times as long as MAE's (measured on the
    /// 2-core machine: 126 steps in 79 s against 19.5 s); 6 epochs keep MIRAM's
    /// pre-training between 1.5 and 2.5 minutes, depending on what else the machine runs.
    /// The whole quick start took 3 min 09 s (5 min 05 s while other builds ran).
    pub pretrain_epochs: usize,
    /// Pre-training batch.
    pub pretrain_batch: usize,
    /// Pre-training learning rate. The paper's 1.5e-4 x batch / 256 is meant for hundreds
    /// of epochs; a few hundred steps need a larger rate to get past the mean image.
    pub pretrain_lr: f64,
    /// Fine-tuning epochs per run (6 runs: 3 initialisations x 2 tasks; an epoch of the
    /// pathology task takes about 3 s at batch 32 with its validation pass).
    pub finetune_epochs: usize,
    /// Fine-tuning batch.
    pub finetune_batch: usize,
    /// Fine-tuning learning rate (the authors' 1e-5 is for 100 epochs of ViT-B).
    pub finetune_lr: f64,
    /// Bootstrap resamples of the 95% intervals (500 keeps the percentile interval within
    /// about 0.01 of its limit for these test sizes and costs seconds).
    pub bootstrap: usize,
    /// Test crops shown reconstructed by each pre-trained model.
    pub reconstructions: usize,
    /// Loader worker threads (the machine has 2 cores; the model uses both).
    pub workers: usize,
    /// Seed of everything (data, weights, masks, order, augmentation, bootstrap).
    pub seed: u64,
}

impl Default for QuickstartConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("quickstart-out"),
            synth: SynthConfig {
                patients: 140,
                ..SynthConfig::small()
            },
            preset: "micro".into(),
            pretrain_epochs: 6,
            pretrain_batch: 32,
            pretrain_lr: 1.5e-3,
            finetune_epochs: 10,
            finetune_batch: 16,
            finetune_lr: 5e-4,
            bootstrap: 500,
            reconstructions: 2,
            workers: 1,
            seed: 0,
        }
    }
}

impl QuickstartConfig {
    /// The pre-training recipe of MIRAM (or of MAE with `single_scale`).
    pub fn pretrain(&self, model: MiramConfig) -> PretrainConfig {
        let mut p = PretrainConfig::paper(model);
        p.epochs = self.pretrain_epochs;
        p.warmup_epochs = (self.pretrain_epochs as f64 / 6.0)
            .max(1.0)
            .min(self.pretrain_epochs as f64);
        p.batch_size = self.pretrain_batch;
        p.accum_iter = 1;
        p.lr = Some(self.pretrain_lr);
        p.seed = self.seed;
        p.workers = self.workers;
        p.checkpoint_every = 1_000_000;
        p.keep_last = 1;
        p
    }

    /// The fine-tuning recipe of one run.
    pub fn finetune(
        &self,
        model: &MiramConfig,
        task: Task,
        init: Option<PathBuf>,
    ) -> FinetuneConfig {
        let mut f = FinetuneConfig::paper(model.encoder(), task);
        f.init = init;
        f.epochs = self.finetune_epochs;
        f.warmup_epochs = 1.0_f64.min(self.finetune_epochs as f64);
        f.batch_size = self.finetune_batch;
        f.lr = Some(self.finetune_lr);
        f.min_lr = self.finetune_lr / 100.0;
        f.seed = self.seed;
        f.workers = self.workers;
        f.bootstrap_resamples = self.bootstrap;
        f.keep_last = 1;
        f
    }
}

/// Arguments of `miram quickstart`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Writes into --out (default quickstart-out): data/ (the generated dataset), runs/ (one folder
per pre-training and fine-tuning run: config, log, checkpoints, predictions), report.md,
report.json, loss.png (loss per scale over steps), roc_<task>.png, pr_<task>.png and
reconstructions/*.png. Running it again reuses the data and resumes or reuses finished runs.

The configuration file (TOML or JSON) may set any key of the resolved configuration printed
at the start (out, preset, pretrain_epochs, finetune_epochs, ..., [synth]).

Example:
  cargo run --release -- quickstart
  miram quickstart --out /tmp/qs --json-lines > qs.jsonl")]
pub struct QuickstartArgs {
    /// The output folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The dataset of the quick start: reused when `data/` holds one generated with the same
/// configuration, generated otherwise.
fn dataset(cfg: &QuickstartConfig, dir: &Path, ui: &Ui) -> Result<SynthManifest> {
    if let Ok(m) = SynthManifest::load(dir) {
        if m.config == cfg.synth {
            ui.info(format!(
                "{:>12} reusing the dataset in {}",
                "synth",
                dir.display()
            ));
            return Ok(m);
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    crate::commands::synth::write(dir, &cfg.synth, ui)
}

/// Runs `miram quickstart`.
pub fn run(a: &QuickstartArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let started = Instant::now();
    let mut cfg: QuickstartConfig = config::resolve(
        &QuickstartConfig::default(),
        a.config.as_deref(),
        &[
            ("out", config::flag(&a.out)),
            ("seed", config::flag(&g.seed)),
        ],
    )?;
    if g.seed.is_some() {
        cfg.synth.seed = cfg.seed;
    }
    cfg.synth.validate()?;
    let model = MiramConfig::preset(&cfg.preset)?;
    let mut opts = RunOptions::new(study::device(g.device.as_deref())?);
    ui.config("quickstart", &cfg);
    opts.resume = true;

    let data_dir = cfg.out.join("data");
    let runs_dir = cfg.out.join("runs");
    let manifest = dataset(&cfg, &data_dir, ui)?;
    let data_cfg = DataConfig {
        cache_dir: Some(cfg.out.join("cache")),
        ..DataConfig::new(&data_dir)
    };
    let data = study::prepare(ui, &data_cfg, model.img_size, None, cfg.seed)?;

    // Pre-training: MIRAM (1x + 2x) and MAE (1x) on the same crops, order and masks.
    let mae_model = model.single_scale();
    let miram = study::pretrain_run(
        ui,
        "MIRAM",
        &cfg.preset,
        &cfg.pretrain(model.clone()),
        &data,
        &study::open_run(ui, &runs_dir.join("pretrain-miram"), false)?,
        &opts,
    )?;
    let mae = study::pretrain_run(
        ui,
        "MAE",
        &cfg.preset,
        &cfg.pretrain(mae_model.clone()),
        &data,
        &study::open_run(ui, &runs_dir.join("pretrain-mae"), false)?,
        &opts,
    )?;
    let mut figures = Vec::new();
    study::loss_figure(
        &[miram.clone(), mae.clone()],
        &[model.clone(), mae_model.clone()],
        &cfg.out.join("loss.png"),
    )?;
    figures.push(Figure {
        title: "Pre-training loss per scale".into(),
        path: "loss.png".into(),
    });

    // Fine-tuning: three initialisations per task, compared with MAE.
    let inits = [
        ("MIRAM", miram.model.clone()),
        ("MAE", mae.model.clone()),
        ("random init", None),
    ];
    let mut tasks = Vec::new();
    for task in [Task::PathologyBinary, Task::MassMargins] {
        let slug = task_slug(&task);
        let td = data.task(
            &task,
            &miram_core::cbis_ddsm::split::SplitConfig {
                seed: cfg.seed,
                ..Default::default()
            },
        )?;
        let mut t = TaskResult {
            task: slug.clone(),
            description: study::describe_task(&task),
            baseline: Some("MAE".into()),
            runs: Vec::new(),
        };
        for (name, init) in &inits {
            let dir = runs_dir.join(format!(
                "finetune-{slug}-{}",
                name.replace(' ', "-").to_lowercase()
            ));
            let ft = cfg.finetune(&model, task.clone(), init.clone());
            // The record `miram evaluate` reads to evaluate the run again.
            let cmd = FinetuneCommand {
                preset: cfg.preset.clone(),
                name: name.to_string(),
                out: dir.clone(),
                data: data_cfg.clone(),
                finetune: ft.clone(),
            };
            let run = study::open_run(ui, &dir, false)?;
            run.write_json("command.json", &cmd)?;
            t.runs
                .push(study::finetune_run(ui, name, &ft, &data, &td, &run, &opts)?);
        }
        let base = t
            .runs
            .iter()
            .find(|r| r.run == "MAE")
            .and_then(|r| r.predictions.clone());
        for r in t.runs.iter_mut().filter(|r| r.run != "MAE") {
            if let (Some(b), Some(p)) = (&base, &r.predictions) {
                r.vs_baseline = Some(compare(p, b)?);
            }
        }
        figures.extend(study::curve_figures(&t, &cfg.out, Path::new(""))?);
        tasks.push(t);
    }

    // Reconstructions of a few test crops by both pre-trained models.
    let recon_dir = cfg.out.join("reconstructions");
    let test = data.task(&Task::PathologyBinary, &Default::default())?.test;
    let idx: Vec<usize> =
        (0..cfg
            .reconstructions
            .min(miram_core::cbis_ddsm::loader::CropDataset::len(
                test.as_ref(),
            )))
            .collect();
    for (name, r) in [("MIRAM", &miram), ("MAE", &mae)] {
        if let Some(p) = &r.model {
            let loaded = miram_core::Miram::load(p, &opts.device)?;
            for f in study::reconstruction_grids(
                &loaded,
                name,
                test.as_ref(),
                &idx,
                cfg.seed,
                &recon_dir,
                &name.to_lowercase(),
            )? {
                let rel = f.strip_prefix(&cfg.out).unwrap_or(&f).to_path_buf();
                figures.push(Figure {
                    title: format!("{name} reconstruction ({})", rel.display()),
                    path: rel,
                });
            }
        }
    }

    let mut notes = Vec::new();
    for t in &tasks {
        for r in &t.runs {
            for n in &r.metrics.notes {
                notes.push(format!("{} / {}: {n}", t.task, r.run));
            }
        }
    }
    let (_, summary) = crate::commands::synth::summary(&manifest);
    let report = Report {
        title: "MIRAM quick start: MIRAM vs MAE vs random initialisation on generated CBIS-DDSM-shaped data".into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        version: env!("CARGO_PKG_VERSION").into(),
        config: serde_json::to_value(&cfg)?,
        dataset: json!({ "root": data_dir, "generated": summary, "indexed_rows": data.index.len(),
                         "skipped_rows": data.index.unresolved.len(), "crops": data.cache.len() }),
        pretraining: vec![miram, mae],
        tasks,
        figures,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    let (js, md) = report.write(&cfg.out)?;
    ui.result_text(format!(
        "\nTest set of the generated data; 95% bootstrap intervals ({} resamples); p: DeLong's paired test of the AUC against MAE.\n{}\nreport: {} (figures beside it), {}\ntime: {}\n",
        cfg.bootstrap,
        results_table(&report.tasks),
        md.display(),
        js.display(),
        crate::ui::fmt_duration(started.elapsed())
    ));
    ui.event("result", serde_json::to_value(&report)?);
    Ok(())
}
