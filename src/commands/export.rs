//! `miram export --model RUN --format timm|mae --out model.safetensors [--dtype ...]`: a
//! trained model as a safetensors file that PyTorch code loads with
//! `load_state_dict(strict=True)`: a fine-tuned classifier under timm's `VisionTransformer`
//! names (`--format timm`), a pre-trained model under the official MAE names (`--format
//! mae`). See docs/export.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use miram_core::checkpoint::{read_checkpoint, stored_as, write_safetensors, SaveDtype};
use miram_core::encoder::ClassifierConfig;
use miram_core::export::{mae_tensors, timm_kwargs, timm_tensors};
use miram_core::MiramConfig;
use serde_json::json;

use crate::commands::evaluate::best_checkpoint;
use crate::runs::{self, RunKind};
use crate::ui::Ui;
use crate::GlobalArgs;

/// The names an export is written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// timm's `VisionTransformer` (global_pool='avg'): a fine-tuned classifier.
    Timm,
    /// The official MAE code's `MaskedAutoencoderViT`: a pre-trained model.
    Mae,
}

/// Arguments of `miram export`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
--format timm takes a fine-tuning run (made by `miram finetune`) and writes its encoder and
head under timm's VisionTransformer names, with the position table timm loads (pos_embed
[1, 1 + L, D]); it loads with
  timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=K, global_pool='avg',
                    in_chans=1, img_size=S, patch_size=P, embed_dim=D, depth=N, num_heads=H)
  model.load_state_dict(safetensors.torch.load_file(FILE), strict=True)
(the file's metadata `timm_kwargs` holds these arguments). --format mae takes a pre-training
run and writes every tensor under the official MAE names (the 1x decoder as decoder_*; the
decoders of other scales keep their names decoders.<i>.*). See docs/export.md.

Example:
  miram export --model runs/ft-miram-pathology --format timm --out miram-pathology.safetensors")]
pub struct ExportArgs {
    /// The run folder: a fine-tuning run (--format timm) or a pre-training run (--format mae).
    #[arg(long, value_name = "RUN")]
    pub model: PathBuf,
    /// The names to write the tensors under.
    #[arg(long, value_enum, default_value_t = ExportFormat::Timm)]
    pub format: ExportFormat,
    /// The exported file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The type of the exported tensors.
    #[arg(long, value_name = "DTYPE", default_value = "f32",
          value_parser = crate::args::save_dtype_parser())]
    pub dtype: SaveDtype,
}

/// Runs `miram export`.
pub fn run(a: &ExportArgs, _g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let cpu = miram_core::Device::Cpu;
    let mut meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let tensors = match a.format {
        ExportFormat::Timm => {
            runs::require_run_kind(
                &a.model,
                "--model",
                RunKind::Finetune,
                "export --format timm",
            )?;
            let path = best_checkpoint(&a.model, "export --format timm")?;
            let ck = read_checkpoint(&path, &cpu)?;
            let Some(cfg) = ck.metadata.get("config") else {
                bail!("{}: no model configuration in its metadata", path.display());
            };
            let cfg: ClassifierConfig = serde_json::from_str(cfg)?;
            meta.insert("timm_kwargs".into(), timm_kwargs(&cfg).to_string());
            if let Some(names) = ck.metadata.get("class_names") {
                meta.insert("class_names".into(), names.clone());
            }
            timm_tensors(&ck, &cfg)?
        }
        ExportFormat::Mae => {
            runs::require_run_kind(
                &a.model,
                "--model",
                RunKind::Pretrain,
                "export --format mae",
            )?;
            let path = a.model.join("model.safetensors");
            if !path.is_file() {
                bail!(
                    "--model {}: no model.safetensors; has its pre-training finished?",
                    a.model.display()
                );
            }
            let ck = read_checkpoint(&path, &cpu)?;
            runs::check_finite_weights(&ck)?;
            let Some(cfg_text) = ck.metadata.get("config") else {
                bail!("{}: no model configuration in its metadata", path.display());
            };
            let cfg = MiramConfig::from_json(cfg_text)
                .with_context(|| format!("{}: its model configuration", path.display()))?;
            meta.insert("miram_config".into(), cfg_text.clone());
            mae_tensors(&ck, &cfg)?
        }
    };
    meta.insert(
        "miram_export".into(),
        format!("{:?}", a.format).to_lowercase(),
    );
    let n = tensors.len();
    write_safetensors(&a.out, &stored_as(tensors, a.dtype)?, &meta)?;
    ui.result_text(format!(
        "{n} tensors ({}) written to {}\n",
        a.dtype,
        a.out.display()
    ));
    ui.event(
        "result",
        json!({ "out": a.out, "tensors": n, "dtype": a.dtype.name(), "format": meta["miram_export"] }),
    );
    Ok(())
}
