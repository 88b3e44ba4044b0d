//! `miram explain`: where a model looks. For each input crop, a PNG of the crop beside its
//! attention maps (attention rollout over the encoder's blocks, and the last block's
//! cls-token attention per head; [`miram_core::encoder::attention_maps`]) overlaid in
//! viridis with a colour bar, and the raw maps as `.npy` (or 16-bit PNG) files, for a
//! fine-tuned classifier or a pre-trained encoder.
//!
//! Inputs are crop files (DICOM, 8/16-bit PNG, JPEG: each file one lesion crop, made into
//! the model's input as `miram predict` makes it) or folders of them, and/or the lesion
//! crops of a dataset (`--data`, the crops training made). Both are normalised as the run
//! normalised its crops: its `preprocessing.json`, else the `data` settings of its
//! `command.json`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use miram_core::cbis_ddsm::crop::CropConfig;
use miram_core::cbis_ddsm::loader::CropDataset;
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::cbis_ddsm::DecodeLimits;
use miram_core::encoder::{attention_maps, AttentionMaps, EncoderConfig};
use miram_core::train::inference::{input_pixels, read_preprocessing, Input};
use miram_core::train::DataConfig;
use miram_core::{Device, Tensor};
use serde_json::{json, Value};

use crate::commands::probe::Encoder;
use crate::heatmap::{overlay, write_npy, write_png16, RgbTile};
use crate::plot::{heat_grid, HeatRow, Tile};
use crate::runs::{self, RunKind};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Which crops of `--data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitChoice {
    /// The official test split.
    Test,
    /// The official training split (training and validation parts).
    Train,
    /// Every crop.
    All,
}

/// How the raw maps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapFormat {
    /// NumPy `.npy` files of `f32` (`<name>_rollout.npy` `[grid, grid]`, `<name>_heads.npy`
    /// `[heads, grid, grid]`).
    Npy,
    /// 16-bit grayscale PNG files, white = the map's maximum (given in explain.json).
    Png16,
}

/// Arguments of `miram explain`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
For each input: <out>/<k>_<name>.png shows the crop, its attention rollout (Abnar & Zuidema
2020: per block the heads averaged, the identity added for the residual, rows renormalised,
multiplied over the blocks; the cls token's row over the patches) and the last block's
cls-token attention per head, overlaid in viridis with a colour bar (each row from its
minimum to its maximum).
The raw maps go to <k>_<name>_rollout.npy [grid, grid] and <k>_<name>_heads.npy
[heads, grid, grid] (--maps png16: 16-bit PNG files, white = the maximum), and
<out>/explain.json lists every file with each map's maximum and peak patch.

Crop files are made into model inputs as `miram predict` makes them: squared (centred,
zero-padded) and enlarged by the run's crop margin, resized with the crop filter and
normalised as training normalised its crops (preprocessing.json, else command.json). An
input that cannot be read is named with its cause; the command stops before writing anything
unless --keep-going, which skips it. See docs/explain.md.

Examples:
  miram explain --model runs/ft-miram-pathology crops/*.dcm --out runs/explain
  miram explain --model runs/pretrain-miram --data ~/CBIS-DDSM --split test --count 8 --out runs/explain")]
pub struct ExplainArgs {
    /// The model: a pre-training or fine-tuning run folder, or its checkpoint file.
    #[arg(long, value_name = "RUN")]
    pub model: PathBuf,
    /// Crop files (DICOM, 8/16-bit PNG, JPEG) or folders of them; each file is one crop.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// A dataset root (any layout `miram index` reads): its lesion crops as training made them.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Which crops of --data.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitChoice,
    /// How many crops of --data (the first of the split) [default: every one].
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Where the pictures and maps go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How the raw maps are written.
    #[arg(long, value_enum, default_value = "npy")]
    pub maps: MapFormat,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch_size: usize,
    /// Skip inputs that cannot be read (each is named) instead of stopping.
    #[arg(long)]
    pub keep_going: bool,
}

/// One crop to explain.
struct Item {
    /// The start of its output files' names.
    stem: String,
    /// Where it came from (a file, or a dataset row).
    source: String,
    /// The crop, normalised, one channel, `[size, size]` row-major.
    pixels: Vec<f32>,
}

/// What the run recorded of how its crops were made and which task it learned.
struct RunRecord {
    data: DataConfig,
    task: Task,
    split: SplitConfig,
    /// The `command.json` it was read from (none: the defaults).
    file: Option<PathBuf>,
    /// The fine-tuning run's `preprocessing.json`, where it has one.
    recorded: Option<CropConfig>,
}

impl RunRecord {
    /// How the run made its model inputs of side `size`: its `preprocessing.json`, else
    /// what its data settings give.
    fn preprocessing(&self, size: u32) -> CropConfig {
        self.recorded
            .clone()
            .unwrap_or_else(|| self.data.preprocessing(size))
    }
}

/// Refuses a `--model` folder that is not a pre-training or fine-tuning run.
fn check_model_folder(model: &Path) -> Result<()> {
    if !model.exists() {
        bail!("--model {}: no such file or folder", model.display());
    }
    if !model.is_dir() {
        return Ok(());
    }
    match runs::run_kind(model)? {
        Some(RunKind::Pretrain | RunKind::Finetune) => Ok(()),
        Some(k) => bail!(
            "--model {} is {}; explain takes a pre-training or fine-tuning run, or its checkpoint file",
            model.display(),
            k.describe()
        ),
        None => bail!(
            "--model {} is not a run folder (it has no command.json, config.json, model.safetensors or checkpoints/best.safetensors); explain takes a pre-training run (made by `miram pretrain`) or a fine-tuning run (made by `miram finetune`), or its checkpoint file",
            model.display()
        ),
    }
}

/// The run's `command.json`: in the run folder, or beside (or above) its checkpoint file.
fn command_file(model: &Path) -> Option<PathBuf> {
    let dirs: Vec<&Path> = if model.is_dir() {
        vec![model]
    } else {
        model.ancestors().skip(1).take(2).collect()
    };
    dirs.into_iter()
        .map(|d| d.join("command.json"))
        .find(|p| p.is_file())
}

/// The run's recorded data settings, task and split (defaults without a `command.json`).
fn run_record(model: &Path, classifier: bool) -> Result<RunRecord> {
    let mut rec = RunRecord {
        data: DataConfig::new(""),
        task: Task::PathologyBinary,
        split: SplitConfig::default(),
        file: None,
        recorded: None,
    };
    let Some(file) = command_file(model) else {
        return Ok(rec);
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let field = |v: &Value, name: &str| -> Result<Value> {
        v.get(name)
            .cloned()
            .ok_or_else(|| anyhow!("{}: no `{name}`", file.display()))
    };
    rec.data = serde_json::from_value(field(&v, "data")?)
        .with_context(|| format!("{}: data", file.display()))?;
    if classifier {
        let ft = field(&v, "finetune")?;
        rec.task = serde_json::from_value(field(&ft, "task")?)
            .with_context(|| format!("{}: finetune.task", file.display()))?;
        rec.split = serde_json::from_value(field(&ft, "split")?)
            .with_context(|| format!("{}: finetune.split", file.display()))?;
    }
    if let Some(dir) = file.parent() {
        rec.recorded = read_preprocessing(dir)?;
    }
    rec.file = Some(file);
    Ok(rec)
}

/// A crop file as the model's input, made as `miram predict` makes it
/// ([`input_pixels`]: the file's extent as the lesion box, squared and enlarged by the run's
/// margin, resized and normalised as `pre` records).
///
/// # Shapes
/// Returns `size * size` values, row-major.
fn read_crop_file(path: &Path, pre: &CropConfig) -> Result<Vec<f32>> {
    let input = Input::Crop(path.to_path_buf());
    Ok(input_pixels(&input, pre, &DecodeLimits::mammogram())?)
}

/// Whether a file is one of the crop formats, by its extension.
fn is_crop_file(p: &Path) -> bool {
    let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase());
    matches!(
        ext.as_deref(),
        Some("dcm" | "dicom" | "png" | "jpg" | "jpeg")
    )
}

/// The crop files of the inputs: files as given, folders as their crop files (sorted).
fn crop_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_crop_file(f))
                .collect();
            if found.is_empty() {
                bail!(
                    "{}: the folder holds no crop images (.dcm, .png, .jpg)",
                    p.display()
                );
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// A file-name-safe version of `s`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The items of the crop files; those that cannot be read are returned apart, with the cause.
fn file_items(files: &[PathBuf], pre: &CropConfig) -> (Vec<Item>, Vec<String>) {
    let (mut items, mut failed) = (Vec::new(), Vec::new());
    for f in files {
        match read_crop_file(f, pre) {
            Ok(pixels) => {
                let stem = f
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                items.push(Item {
                    stem: slug(&stem),
                    source: f.display().to_string(),
                    pixels,
                });
            }
            Err(e) => failed.push(format!("{}: {}", f.display(), crate::ui::one_line(&e))),
        }
    }
    (items, failed)
}

/// The first `count` lesion crops of `split` of the dataset at `root`, made and normalised
/// as the run's training made them.
fn dataset_items(
    ui: &Ui,
    root: &Path,
    rec: &RunRecord,
    split: SplitChoice,
    count: Option<usize>,
    size: usize,
    seed: u64,
) -> Result<Vec<Item>> {
    let cfg = DataConfig {
        root: root.to_path_buf(),
        ..rec.data.clone()
    };
    let data = study::prepare(ui, &cfg, size, None, seed)?;
    let td = data.task(&rec.task, &rec.split)?;
    let parts = match split {
        SplitChoice::Test => vec![("test", &td.test)],
        SplitChoice::Train => vec![("train", &td.train), ("validation", &td.validation)],
        SplitChoice::All => vec![
            ("train", &td.train),
            ("validation", &td.validation),
            ("test", &td.test),
        ],
    };
    let limit = count.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    for (name, ds) in parts {
        for i in 0..ds.len() {
            if items.len() >= limit {
                return Ok(items);
            }
            let s = ds.get(i)?;
            let m = &s.meta;
            items.push(Item {
                stem: slug(&format!(
                    "{}_{}_{}",
                    m.patient_id, m.image_folder, m.abnormality_id
                )),
                source: format!(
                    "{}: {name} crop {i}, {} {} abnormality {} ({})",
                    root.display(),
                    m.patient_id,
                    m.image_folder,
                    m.abnormality_id,
                    m.label
                ),
                pixels: s.image,
            });
        }
    }
    Ok(items)
}

/// The attention maps of a batch of items (each crop repeated over the model's channels, as
/// the loader does).
fn batch_maps(
    model: &Encoder,
    cfg: &EncoderConfig,
    items: &[Item],
    dev: &Device,
) -> Result<AttentionMaps> {
    let (c, s) = (cfg.in_chans, cfg.img_size);
    let mut x = Vec::with_capacity(items.len() * c * s * s);
    for it in items {
        for _ in 0..c {
            x.extend_from_slice(&it.pixels);
        }
    }
    let x = Tensor::from_vec(x, (items.len(), c, s, s), dev)?;
    Ok(match model {
        Encoder::Pretrained(m) => attention_maps(m.encoder(), &x)?,
        Encoder::Classifier(m) => attention_maps(m.as_ref(), &x)?,
    })
}

/// The largest value of a map and the (row, column) of its first occurrence.
fn peak(map: &[f32], grid: usize) -> (f32, [usize; 2]) {
    let (i, v) =
        map.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        );
    (v, [i / grid.max(1), i % grid.max(1)])
}

/// The maps of one item: rollout `[grid * grid]` and the last block's heads, one each.
struct ItemMaps {
    rollout: Vec<f32>,
    heads: Vec<Vec<f32>>,
}

/// Writes the figure and the raw maps of item `k`; returns its explain.json entry.
fn write_item(
    out: &Path,
    k: usize,
    item: &Item,
    maps: &ItemMaps,
    cfg: &EncoderConfig,
    format: MapFormat,
) -> Result<Value> {
    let (g, s) = (cfg.grid(), cfg.img_size);
    let name = format!("{k:03}_{}", item.stem);
    let (lo, hi) = item
        .pixels
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let crop = Tile::normalized(s, s, &item.pixels, lo, hi);
    let (r_max, r_peak) = peak(&maps.rollout, g);
    let r_min = maps.rollout.iter().copied().fold(f32::INFINITY, f32::min);
    let all_heads = maps.heads.iter().flatten().copied();
    let (h_min, h_max) = all_heads.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    // Each row's colours span its own range (the colour bar gives it): the rollout of a
    // deep model is nearly flat, and 0-to-maximum would show it as one colour.
    let alpha = 0.55;
    let rows = [
        HeatRow {
            label: format!("rollout ({} blocks)", cfg.depth),
            tiles: vec![
                ("crop".into(), RgbTile::gray(&crop)),
                (
                    "rollout".into(),
                    overlay(&crop, &maps.rollout, g, r_min, r_max, alpha),
                ),
            ],
            bar: Some((r_min, r_max)),
        },
        HeatRow {
            label: format!("last block ({})", cfg.depth),
            tiles: maps
                .heads
                .iter()
                .enumerate()
                .map(|(h, m)| {
                    (
                        format!("head {h}: cls token"),
                        overlay(&crop, m, g, h_min, h_max, alpha),
                    )
                })
                .collect(),
            bar: Some((h_min, h_max)),
        },
    ];
    let figure = out.join(format!("{name}.png"));
    heat_grid(&figure, &item.source, &rows, 160)?;
    let heads_flat: Vec<f32> = maps.heads.concat();
    let files: Vec<PathBuf> = match format {
        MapFormat::Npy => {
            let (r, h) = (
                out.join(format!("{name}_rollout.npy")),
                out.join(format!("{name}_heads.npy")),
            );
            write_npy(&r, &[g, g], &maps.rollout)?;
            write_npy(&h, &[maps.heads.len(), g, g], &heads_flat)?;
            vec![r, h]
        }
        MapFormat::Png16 => {
            let r = out.join(format!("{name}_rollout.png"));
            write_png16(&r, &maps.rollout, g as u32, g as u32, r_max)?;
            let mut v = vec![r];
            for (h, m) in maps.heads.iter().enumerate() {
                let p = out.join(format!("{name}_head{h}.png"));
                write_png16(&p, m, g as u32, g as u32, h_max)?;
                v.push(p);
            }
            v
        }
    };
    Ok(json!({
        "input": item.source,
        "figure": figure,
        "maps": files,
        "rollout_min": r_min,
        "rollout_max": r_max,
        "rollout_peak": r_peak,
        "heads_min": h_min,
        "heads_max": h_max,
        "head_peaks": maps.heads.iter().map(|h| peak(h, g).1).collect::<Vec<_>>(),
    }))
}

/// Splits a batch's maps into one [`ItemMaps`] per image.
fn split_maps(maps: &AttentionMaps) -> Result<Vec<ItemMaps>> {
    let rollout = maps.rollout.flatten_from(1)?.to_vec2::<f32>()?;
    let heads = maps.last_block_heads.flatten_from(2)?.to_vec3::<f32>()?;
    Ok(rollout
        .into_iter()
        .zip(heads)
        .map(|(rollout, heads)| ItemMaps { rollout, heads })
        .collect())
}

/// The crop files' items, stopping at the first unreadable file unless `keep_going` (then
/// each is named in a warning); also the causes of the skipped files.
fn readable_file_items(
    a: &ExplainArgs,
    files: &[PathBuf],
    size: usize,
    rec: &RunRecord,
    ui: &Ui,
) -> Result<(Vec<Item>, Vec<String>)> {
    let (items, failed) = file_items(files, &rec.preprocessing(size as u32));
    if !failed.is_empty() {
        if !a.keep_going {
            bail!(
                "{} of {} inputs cannot be read (--keep-going skips them): {}",
                failed.len(),
                files.len(),
                failed.join("; ")
            );
        }
        for f in &failed {
            ui.warn(format!("skipped {f}"));
        }
    }
    Ok((items, failed))
}

/// Runs `miram explain`.
pub fn run(a: &ExplainArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    if a.inputs.is_empty() && a.data.is_none() {
        bail!("nothing to explain: give crop files or folders (INPUT...) and/or --data DIR");
    }
    if a.batch_size == 0 || a.count == Some(0) {
        bail!("--batch-size and --count must be at least 1");
    }
    check_model_folder(&a.model)?;
    let files = crop_files(&a.inputs)?;
    let dev = study::device(g.device.as_deref())?;
    let (model, ck) = Encoder::load(&a.model, &dev)?;
    let cfg = match &model {
        Encoder::Pretrained(m) => m.encoder().config().clone(),
        Encoder::Classifier(m) => m.config().encoder.clone(),
    };
    let classifier = matches!(model, Encoder::Classifier(_));
    let rec = run_record(&a.model, classifier)?;
    let (mut items, failed) = readable_file_items(a, &files, cfg.img_size, &rec, ui)?;
    match &rec.file {
        Some(f) => ui.info(format!(
            "{:>12} crops made as {} records",
            "explain",
            f.display()
        )),
        None => ui.warn(format!(
            "no command.json beside {}: crops are normalised with the default ({:?})",
            ck.display(),
            rec.data.normalization
        )),
    }
    if let Some(root) = &a.data {
        let seed = g.seed.unwrap_or(0);
        let size = cfg.img_size;
        items.extend(dataset_items(ui, root, &rec, a.split, a.count, size, seed)?);
    }
    if items.is_empty() {
        bail!("nothing to explain: no input could be read");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    ui.config(
        "explain",
        &json!({ "model": ck, "inputs": items.len(), "out": a.out }),
    );
    let bar = ui.progress("explain", items.len() as u64, "crops");
    let mut entries = Vec::new();
    for (b, chunk) in items.chunks(a.batch_size).enumerate() {
        let maps = split_maps(&batch_maps(&model, &cfg, chunk, &dev)?)?;
        for (j, (item, m)) in chunk.iter().zip(&maps).enumerate() {
            let k = b * a.batch_size + j;
            entries.push(write_item(&a.out, k, item, m, &cfg, a.maps)?);
        }
        bar.set(entries.len() as u64);
    }
    bar.finish_quietly();
    let summary = json!({
        "model": ck,
        "model_kind": if classifier { "fine-tuned classifier" } else { "pre-trained encoder" },
        "grid": cfg.grid(),
        "heads": cfg.num_heads,
        "blocks": cfg.depth,
        "preprocessing": { "size": cfg.img_size, "data": rec.data, "from": rec.file },
        "skipped": failed,
        "items": entries,
    });
    let path = a.out.join("explain.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("{}", path.display()))?;
    ui.result_text(format!(
        "{} attention figures by {} in {} (maps: {})\n",
        entries.len(),
        ck.display(),
        a.out.display(),
        path.display()
    ));
    ui.event("result", summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_files_are_squared_resized_and_normalised_as_the_run_did() -> Result<()> {
        use miram_core::cbis_ddsm::{write_gray_u16, DicomUids, GrayImage};
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.dcm");
        // A 4 x 2 picture: the square of side 4 around it pads a zero row above and below.
        let img = GrayImage::from_vec(4, 2, vec![65535; 8], 65535)?;
        let ids = DicomUids {
            study_instance_uid: "2.25.1".into(),
            series_instance_uid: "2.25.2".into(),
            sop_instance_uid: "2.25.3".into(),
            ..DicomUids::default()
        };
        write_gray_u16(&p, &img, &ids)?;
        let unit = DataConfig {
            normalization: miram_core::cbis_ddsm::crop::Normalization::UnitRange,
            crop_margin: 0.0,
            ..DataConfig::new("")
        };
        let px = read_crop_file(&p, &unit.preprocessing(4))?;
        let rows: Vec<f32> = px.chunks(4).map(|r| r.iter().sum::<f32>() / 4.0).collect();
        assert_eq!(rows, vec![0.0, 1.0, 1.0, 0.0]);
        // The default (per-crop) normalisation: zero mean, unit variance.
        let px = read_crop_file(&p, &DataConfig::new("").preprocessing(4))?;
        let mean = px.iter().sum::<f32>() / 16.0;
        let var = px.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
        Ok(())
    }

    #[test]
    fn the_run_record_is_found_beside_or_above_a_checkpoint() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let run = dir.path();
        std::fs::create_dir_all(run.join("checkpoints"))?;
        let ck = run.join("checkpoints").join("best.safetensors");
        std::fs::write(&ck, "")?;
        assert_eq!(command_file(&ck), None);
        std::fs::write(run.join("command.json"), "{}")?;
        assert_eq!(command_file(&ck), Some(run.join("command.json")));
        assert_eq!(command_file(run), Some(run.join("command.json")));
        // A command.json without `data` is named.
        let e = run_record(run, false).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("no `data`")));
        assert_eq!(slug("P_1 a/b.c"), "P_1_a_b_c");
        Ok(())
    }
}
