//! `miram reconstruct`: for lesion crops of a dataset's official test split, one PNG each with
//! the original, the masked input and the pre-trained model's reconstruction at every scale
//! (per-patch normalisation undone with the target patches' statistics, as MAE's
//! visualisation does).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use miram_core::cbis_ddsm::loader::CropDataset;
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::checkpoint::read_checkpoint;
use miram_core::train::DataConfig;
use miram_core::Miram;
use serde_json::json;

use crate::config;
use crate::runs::{self, RunKind};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// The resolved configuration of `miram reconstruct`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconstructCommand {
    /// The pre-trained model (`model.safetensors` or a pre-training run folder).
    pub model: PathBuf,
    /// The dataset.
    pub data: DataConfig,
    /// How many test crops.
    pub count: usize,
    /// Where the PNG files go.
    pub out: PathBuf,
    /// Seed of the masks.
    pub seed: u64,
}

/// Arguments of `miram reconstruct`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Writes <out>/reconstruction_<k>.png for the first --count lesion crops of the official test
split: columns original, masked input (removed patches grey), reconstruction at 1x, 2x, ...

Example:
  miram reconstruct --model runs/miram-paper --data ~/CBIS-DDSM --count 8 --out runs/recon")]
pub struct ReconstructArgs {
    /// The pre-trained model: a pre-training run folder or its model.safetensors.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// The dataset root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// How many test crops [default: 4].
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Where the PNG files go [default: runs/reconstructions].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The pre-trained model file of `--model` (a pre-training run folder or a checkpoint file),
/// checked to be a MIRAM/MAE model (not a fine-tuned classifier) with finite weights.
fn pretrained_model(model: &Path) -> Result<PathBuf> {
    let ck = if model.is_dir() {
        runs::require_run_kind(model, "--model", RunKind::Pretrain, "reconstruct")?;
        let ck = model.join("model.safetensors");
        if !ck.is_file() {
            bail!(
                "--model {}: the pre-training run has no model.safetensors yet (it has not finished); run its `miram pretrain` command again to resume it",
                model.display()
            );
        }
        ck
    } else if model.is_file() {
        model.to_path_buf()
    } else {
        bail!("--model {}: no such file or folder", model.display());
    };
    let weights = read_checkpoint(&ck, &Device::Cpu)?;
    if let Some(k) = runs::checkpoint_kind(&weights).filter(|&k| k != RunKind::Pretrain) {
        bail!(
            "--model {}: the checkpoint was written by {}, a classifier without decoders; reconstruct takes a pre-trained model (a pre-training run folder made by `miram pretrain`, or its model.safetensors)",
            ck.display(),
            k.describe()
        );
    }
    runs::check_finite_weights(&weights)?;
    Ok(ck)
}

/// Runs `miram reconstruct`.
pub fn run(a: &ReconstructArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let base = ReconstructCommand {
        model: PathBuf::new(),
        data: DataConfig::new(""),
        count: 4,
        out: PathBuf::from("runs/reconstructions"),
        seed: 0,
    };
    let cfg: ReconstructCommand = config::resolve(
        &base,
        a.config.as_deref(),
        &[
            ("model", config::flag(&a.model)),
            ("data.root", config::flag(&a.data)),
            ("count", config::flag(&a.count)),
            ("out", config::flag(&a.out)),
            ("seed", config::flag(&g.seed)),
        ],
    )?;
    if cfg.model.as_os_str().is_empty() {
        bail!("no model: give --model PATH (a pre-training run folder or its model.safetensors)");
    }
    if cfg.count == 0 {
        bail!("--count 0: nothing to reconstruct; give at least 1");
    }
    let ck = pretrained_model(&cfg.model)?;
    study::check_data(&cfg.data)?;
    let dev = study::device(g.device.as_deref())?;
    ui.config("reconstruct", &cfg);
    let model = Miram::load(&ck, &dev)?;
    let data = study::prepare(ui, &cfg.data, model.config().img_size, None, cfg.seed)?;
    let test = data
        .task(&Task::PathologyBinary, &SplitConfig::default())?
        .test;
    let n = cfg.count.min(test.len());
    if n == 0 {
        bail!(
            "{}: the official test split has no lesion crops",
            cfg.data.root.display()
        );
    }
    let idx: Vec<usize> = (0..n).collect();
    let files = study::reconstruction_grids(
        &model,
        "reconstruction",
        test.as_ref(),
        &idx,
        cfg.seed,
        &cfg.out,
        "reconstruction",
    )?;
    let mut text = format!("{} reconstructions by {}:\n", files.len(), ck.display());
    for f in &files {
        text.push_str(&format!("  {}\n", f.display()));
    }
    ui.result_text(text);
    ui.event("result", json!({ "model": ck, "files": files }));
    Ok(())
}
