//! `miram synth`: writes a synthetic CBIS-DDSM-shaped dataset (the four case-description CSVs
//! with the real columns, 16-bit DICOM full images, lesion crops and ROI masks) in the
//! literal or the TCIA layout, with the generator of `miram-cbis-ddsm` (`synth` module).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use miram_core::cbis_ddsm::synth::{synthesize, SynthConfig, SynthManifest};
use miram_core::cbis_ddsm::Pathology;
use serde_json::{json, Value};

use crate::config;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Sizes of generated datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthPreset {
    /// 30 patients, images about 512 x 832 (seconds; tests and the quick start).
    Small,
    /// 12 patients at the real size, 3000 x 5000 (benchmarks of decoding and cropping).
    Medium,
    /// 1566 patients at 3000 x 5000, the size of the real collection (about 100 GB).
    Full,
}

impl SynthPreset {
    /// The generator's configuration of this preset.
    pub fn config(self) -> SynthConfig {
        match self {
            SynthPreset::Small => SynthConfig::small(),
            SynthPreset::Medium => SynthConfig::medium(),
            SynthPreset::Full => SynthConfig::full(),
        }
    }
}

/// File layouts the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Files where the CSV paths say.
    Literal,
    /// As a TCIA download lays them out (the CSV paths then do not match the files).
    Tcia,
}

/// Arguments of `miram synth`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The configuration file (TOML or JSON) may set any field of the generator's configuration:
seed, patients, mass_fraction, test_fraction, image_width, image_height, size_jitter,
field_width_mm, both_views, both_breasts, max_abnormalities_per_image, texture_beta,
layout (\"Literal\" or \"Tcia\"), and `preset`. Flags override the file.

Example:
  miram synth --out data/synth --patients 60 --layout tcia
  miram index data/synth")]
pub struct SynthArgs {
    /// The folder to write (created; an existing folder must be empty or a dataset written
    /// by `miram synth`).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Size preset.
    #[arg(long, value_enum)]
    pub preset: Option<SynthPreset>,
    /// Number of patients.
    #[arg(long, value_name = "N")]
    pub patients: Option<usize>,
    /// File layout.
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Refuses to write into a non-empty folder that is not a generated dataset.
pub fn check_out_dir(out: &Path) -> Result<()> {
    if out.is_file() {
        bail!("--out {}: is a file, not a folder", out.display());
    }
    if out.is_dir() && !out.join(SynthManifest::FILE_NAME).is_file() {
        let non_empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty {
            bail!(
                "--out {}: the folder is not empty and holds no {}; choose a new or empty folder",
                out.display(),
                SynthManifest::FILE_NAME
            );
        }
    }
    Ok(())
}

/// Resolves the generator's configuration: preset, file, flags, seed.
pub fn resolve(a: &SynthArgs, g: &GlobalArgs) -> Result<SynthConfig> {
    let mut preset = a.preset;
    if preset.is_none() {
        if let Some(f) = &a.config {
            if let Some(name) = config::read_file(f)?.get("preset").and_then(Value::as_str) {
                preset = Some(SynthPreset::from_str(name, true).map_err(|_| {
                    anyhow::anyhow!(
                        "{}: unknown preset `{name}`; known presets: small, medium, full",
                        f.display()
                    )
                })?);
            }
        }
    }
    let base = preset.unwrap_or(SynthPreset::Small).config();
    // `preset` is a key of the file, not of the generator's configuration.
    let mut with_preset = serde_json::to_value(&base)?;
    if let Value::Object(m) = &mut with_preset {
        m.insert("preset".into(), Value::Null);
    }
    let layout = a.layout.map(|l| match l {
        LayoutArg::Literal => json!("Literal"),
        LayoutArg::Tcia => json!("Tcia"),
    });
    let mut v: Value = config::resolve(
        &with_preset,
        a.config.as_deref(),
        &[
            ("patients", config::flag(&a.patients)),
            ("layout", layout),
            ("seed", config::flag(&g.seed)),
        ],
    )?;
    if let Value::Object(m) = &mut v {
        m.remove("preset");
    }
    let source = a
        .config
        .as_ref()
        .map_or("configuration".to_string(), |f| f.display().to_string());
    let cfg: SynthConfig = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{source}: key `{path}`: {}", e.into_inner())
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Writes the dataset with a progress bar and returns its manifest.
pub fn write(out: &Path, cfg: &SynthConfig, ui: &Ui) -> Result<SynthManifest> {
    check_out_dir(out)?;
    let bar = ui.progress("synth", 0, "images");
    let manifest = synthesize(out, cfg, &|p| {
        if p.done == 1 {
            bar.set_total(p.total as u64);
        }
        bar.set(p.done as u64);
    })?;
    bar.finish(format!(
        "{} images, {} abnormalities written to {}",
        manifest.images.len(),
        manifest.abnormalities.len(),
        out.display()
    ));
    Ok(manifest)
}

/// The table of rows per CSV file and pathology.
pub fn summary(m: &SynthManifest) -> (String, Value) {
    let mut text = format!(
        "{:<40} {:>6} {:>10} {:>8} {:>24}\n",
        "file", "rows", "MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"
    );
    let mut files = Vec::new();
    for f in &m.csv_files {
        let rows: Vec<_> = m
            .abnormalities
            .iter()
            .filter(|a| &a.csv_file == f)
            .collect();
        let count = |p: Pathology| rows.iter().filter(|a| a.pathology == p).count();
        let (mal, ben, bwc) = (
            count(Pathology::Malignant),
            count(Pathology::Benign),
            count(Pathology::BenignWithoutCallback),
        );
        text.push_str(&format!(
            "{f:<40} {:>6} {mal:>10} {ben:>8} {bwc:>24}\n",
            rows.len()
        ));
        files.push(
            json!({ "file": f, "rows": rows.len(), "MALIGNANT": mal, "BENIGN": ben,
                           "BENIGN_WITHOUT_CALLBACK": bwc }),
        );
    }
    (
        text,
        json!({ "images": m.images.len(), "abnormalities": m.abnormalities.len(), "files": files }),
    )
}

/// Runs `miram synth`.
pub fn run(a: &SynthArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let cfg = resolve(a, g)?;
    ui.config("synth", &cfg);
    let manifest = write(&a.out, &cfg, ui)?;
    let (text, value) = summary(&manifest);
    ui.result_text(text);
    ui.info(format!("next: miram index {}", a.out.display()));
    ui.event("result", json!({ "out": a.out, "dataset": value }));
    Ok(())
}
