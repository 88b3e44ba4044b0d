//! `miram predict --model RUN INPUT... --out scores.csv`: a fine-tuned classifier's scores
//! on new inputs (a dataset folder, crop files or folders of them, or one full mammogram
//! with `--roi` / `--box`), each made as the run's training crops were, from the
//! preprocessing the run folder records (`preprocessing.json`; `command.json` for older
//! runs). The scores go to a CSV in the `predictions.csv` format, with a `file` column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use miram_core::cbis_ddsm::crop::{BBox, CropConfig};
use miram_core::cbis_ddsm::dicom::DecodeLimits;
use miram_core::cbis_ddsm::loader::{BatchTargets, CachedCrops, CropDataset, ItemMeta};
use miram_core::cbis_ddsm::records::OfficialSplit;
use miram_core::cbis_ddsm::tasks::Target;
use miram_core::train::evaluate::{predictions_csv, CsvRow};
use miram_core::train::inference::{
    for_each_batch, input_pixels, read_preprocessing, Input, LesionRegion, TrainedClassifier,
};
use miram_core::train::{DataConfig, PreparedData};
use serde_json::json;

use crate::commands::evaluate::{best_checkpoint, read_finetune_run};
use crate::commands::finetune::FinetuneCommand;
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Which rows of a dataset folder are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PredictSplit {
    /// The official test split.
    Test,
    /// The official training split (training and validation cases).
    Train,
    /// Every row.
    All,
}

/// Arguments of `miram predict`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Each INPUT is one of:
  a dataset folder   any layout `miram index` reads (it holds the case-description CSVs); the
                     rows of --split (default test) with the task's label are scored
  a crop file        DICOM, 8/16-bit PNG or JPEG, taken as one lesion crop: its whole extent
                     is the lesion box (made square, enlarged by the run's margin, zero-padded)
  a folder of crops  every .dcm/.dicom/.png/.jpg/.jpeg below it, in path order
  a full mammogram   with --roi MASK (its bounding box) or --box x,y,w,h (pixels): cropped
                     exactly as training cropped; one INPUT
The crop rule, size, normalisation and photometric handling are the run's own, read from its
preprocessing.json (command.json for runs written before it). The CSV has the columns of the
run's predictions.csv (patient_id, image_folder, abnormality_id, label, target_<class>,
score_<class>) after a `file` column; what an input does not know is empty. An input that
cannot be read is reported with its cause and skipped; the command then ends with an error
after writing the others' scores, unless --keep-going.

Examples:
  miram predict --model runs/ft-miram-pathology ~/next-hospital --out scores.csv
  miram predict --model runs/ft-miram-pathology crops/ --out scores.csv
  miram predict --model runs/ft-miram-pathology mammogram.dcm --roi mask.dcm --out one.csv")]
pub struct PredictArgs {
    /// The fine-tuning run folder (made by `miram finetune`).
    #[arg(long, value_name = "RUN")]
    pub model: PathBuf,
    /// Dataset folders, crop files or folders of crops, or one full mammogram (with --roi or
    /// --box).
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<PathBuf>,
    /// The scores CSV.
    #[arg(long, value_name = "FILE", default_value = "scores.csv")]
    pub out: PathBuf,
    /// The rows of a dataset folder to score.
    #[arg(long, value_enum, default_value_t = PredictSplit::Test)]
    pub split: PredictSplit,
    /// The ROI mask of the full mammogram INPUT (DICOM, PNG or JPEG; the image's size).
    #[arg(long, value_name = "MASK", conflicts_with = "lesion_box")]
    pub roi: Option<PathBuf>,
    /// The lesion box of the full mammogram INPUT: x,y,w,h in pixels.
    #[arg(long = "box", id = "lesion_box", value_name = "X,Y,W,H")]
    pub lesion_box: Option<String>,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch_size: usize,
    /// Succeed even when inputs were skipped (they are still reported).
    #[arg(long)]
    pub keep_going: bool,
    /// Also writes the model's inputs, as preprocessed, to FILE (NumPy `.npy`, `f32`
    /// `[N, C, S, S]` in the order of the CSV's rows): what another framework needs to
    /// score the same inputs (benches/torch/check_timm_export.py feeds them to timm).
    #[arg(long, value_name = "FILE.npy")]
    pub save_inputs: Option<PathBuf>,
}

/// One scored row of the output.
struct Scored {
    /// The model's input (normalised crop, `C x S x S` values), kept for `--save-inputs`.
    input: Option<Vec<f32>>,
    file: String,
    item: Option<ItemMeta>,
    target: Option<Vec<f32>>,
    scores: Vec<f64>,
}

/// A box `x,y,w,h` from the command line.
fn parse_box(s: &str) -> Result<BBox> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--box {s}: give x,y,w,h as four whole numbers of pixels"))?;
    let [x, y, w, h] = v[..] else {
        bail!("--box {s}: give x,y,w,h as four whole numbers of pixels");
    };
    let (Some(x1), Some(y1)) = (x.checked_add(w), y.checked_add(h)) else {
        bail!("--box {s}: the box is beyond any image");
    };
    Ok(BBox {
        x0: x,
        y0: y,
        x1,
        y1,
    })
}

/// The preprocessing of the run: its record, else (a run written before it) the one its
/// command's data settings give.
fn preprocessing(dir: &Path, cmd: &FinetuneCommand, ui: &Ui) -> Result<CropConfig> {
    if let Some(p) = read_preprocessing(dir)? {
        return Ok(p);
    }
    ui.info(format!(
        "{:>12} {} records no preprocessing.json (an older run): using the data settings of its command.json",
        "predict",
        dir.display()
    ));
    Ok(cmd.data.preprocessing(cmd.finetune.encoder.img_size as u32))
}

/// Whether a folder is a dataset (it holds case-description CSVs).
fn is_dataset(dir: &Path) -> bool {
    miram_core::cbis_ddsm::csv::find_case_csvs(dir).is_ok_and(|c| !c.is_empty())
}

/// The image files below `dir`, in path order (hidden folders, such as a crop cache, left
/// out).
fn image_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            image_files(&p, out)?;
        } else if p.extension().is_some_and(|e| {
            matches!(
                e.to_string_lossy().to_lowercase().as_str(),
                "dcm" | "dicom" | "png" | "jpg" | "jpeg"
            )
        }) {
            out.push(p);
        }
    }
    Ok(())
}

/// The dataset settings of a dataset folder scored by the run: the run's own (its cache
/// settings, so a cache it built is reused), at `root`, with the recorded preprocessing.
fn dataset_config(cmd: &FinetuneCommand, root: &Path, pre: &CropConfig) -> Result<DataConfig> {
    let mut dc = cmd.data.clone();
    if dc.root != root {
        dc.root = root.to_path_buf();
        dc.cache_dir = None;
    }
    dc.crop_margin = pre.margin;
    dc.normalization = pre.normalization;
    if dc.preprocessing(pre.size) != *pre {
        bail!(
            "the run's recorded preprocessing {} cannot be made by the dataset pipeline ({}); score crop files instead",
            serde_json::to_string(pre)?,
            serde_json::to_string(&dc.preprocessing(pre.size))?
        );
    }
    Ok(dc)
}

/// The rows of `split` of a prepared dataset with the task's labels, as a dataset.
fn split_rows(
    data: &PreparedData,
    clf: &TrainedClassifier,
    split: PredictSplit,
) -> Result<CachedCrops> {
    let labels = clf.task.label(&data.records)?;
    let subset: Vec<usize> = (0..labels.items.len())
        .filter(|&i| {
            let s = data.records[labels.items[i].record].split;
            match split {
                PredictSplit::All => true,
                PredictSplit::Test => s == OfficialSplit::Test,
                PredictSplit::Train => s == OfficialSplit::Train,
            }
        })
        .collect();
    Ok(
        CachedCrops::for_task(data.cache.clone(), &data.index, &labels, Some(&subset))?
            .without_hires()
            .with_normalization(clf.preprocessing.normalization),
    )
}

/// Scores the rows of a dataset folder; returns the rows and how many were skipped.
fn score_dataset(
    a: &PredictArgs,
    cmd: &FinetuneCommand,
    clf: &TrainedClassifier,
    root: &Path,
    dev: &miram_core::Device,
    ui: &Ui,
) -> Result<(Vec<Scored>, usize)> {
    let dc = dataset_config(cmd, root, &clf.preprocessing)?;
    let data = study::prepare(ui, &dc, clf.preprocessing.size as usize, None, 0)?;
    let rows = std::sync::Arc::new(split_rows(&data, clf, a.split)?);
    for d in rows.dropped() {
        ui.warn(format!("skipped {d}"));
    }
    let files: HashMap<(String, u32), String> = data
        .index
        .entries
        .iter()
        .map(|e| {
            (
                (e.record.image_folder(), e.record.abnormality_id),
                e.full_image.display().to_string(),
            )
        })
        .collect();
    let k = clf.config.num_classes;
    let bar = ui.progress("predict", rows.len() as u64, "images");
    let mut out = Vec::new();
    for_each_batch(
        &clf.model,
        rows.clone(),
        a.batch_size,
        dev,
        |batch, probs| {
            let n = batch.items.len();
            let inputs: Vec<Option<Vec<f32>>> = if a.save_inputs.is_some() {
                let flat = batch.images.flatten_all()?.to_vec1::<f32>()?;
                let per = flat.len() / n.max(1);
                flat.chunks(per.max(1)).map(|c| Some(c.to_vec())).collect()
            } else {
                vec![None; n]
            };
            let targets: Vec<Option<Vec<f32>>> = match &batch.targets {
                BatchTargets::Classes(t) => t
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|c| Some(Target::Class(c).as_vector(k)))
                    .collect(),
                BatchTargets::MultiHot(t) => t.to_vec2::<f32>()?.into_iter().map(Some).collect(),
                BatchTargets::None => vec![None; batch.items.len()],
            };
            let rows = batch.items.into_iter().zip(targets).zip(probs).zip(inputs);
            for (((item, target), scores), input) in rows {
                let key = (item.image_folder.clone(), item.abnormality_id);
                out.push(Scored {
                    input,
                    file: files.get(&key).cloned().unwrap_or_default(),
                    item: Some(item),
                    target,
                    scores,
                });
            }
            bar.set(out.len() as u64);
            Ok(())
        },
    )?;
    bar.finish(format!("{} rows of {}", out.len(), root.display()));
    Ok((out, rows.dropped().len()))
}

/// Scores image inputs (crops, or a full image with its region); returns the rows and how
/// many were skipped.
fn score_images(
    a: &PredictArgs,
    clf: &TrainedClassifier,
    inputs: &[Input],
    dev: &miram_core::Device,
    ui: &Ui,
) -> Result<(Vec<Scored>, usize)> {
    let limits = DecodeLimits::mammogram();
    let mut pixels = Vec::new();
    let mut files = Vec::new();
    let mut skipped = 0;
    for input in inputs {
        if let Input::FullImage { .. } = input {
            // One full mammogram (--roi / --box): its error is the command's.
            pixels.extend(input_pixels(input, &clf.preprocessing, &limits)?);
            files.push(input.file().display().to_string());
            continue;
        }
        match input_pixels(input, &clf.preprocessing, &limits) {
            Ok(px) => {
                pixels.extend(px);
                files.push(input.file().display().to_string());
            }
            Err(e) => {
                skipped += 1;
                ui.warn(format!(
                    "skipped {}: {}",
                    input.file().display(),
                    crate::ui::one_line(&anyhow::Error::from(e))
                ));
            }
        }
    }
    let bar = ui.progress("predict", files.len() as u64, "images");
    let kept = a.save_inputs.as_ref().map(|_| pixels.clone());
    let scores = clf.score(pixels, a.batch_size, dev, &mut |n| bar.set(n as u64))?;
    bar.finish(format!("{} images", files.len()));
    let per = kept.as_ref().map_or(0, |k| k.len() / files.len().max(1));
    let rows = files
        .into_iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (file, scores))| Scored {
            input: kept.as_ref().map(|k| k[i * per..(i + 1) * per].to_vec()),
            file,
            item: None,
            target: None,
            scores,
        })
        .collect();
    Ok((rows, skipped))
}

/// Writes the rows' model inputs to `path` as one `.npy` array `[N, C, S, S]`.
fn save_inputs(path: &Path, rows: &[Scored], channels: usize, size: u32) -> Result<()> {
    let size = size as usize;
    let mut values = Vec::with_capacity(rows.len() * channels * size * size);
    for r in rows {
        let input = r
            .input
            .as_deref()
            .context("--save-inputs: an input was not kept")?;
        if input.len() != channels * size * size {
            bail!(
                "--save-inputs: an input of {} values, not {channels} x {size} x {size}",
                input.len()
            );
        }
        values.extend_from_slice(input);
    }
    crate::heatmap::write_npy(path, &[rows.len(), channels, size, size], &values)
        .with_context(|| format!("--save-inputs {}", path.display()))
}

/// The image inputs of the command line (dataset folders aside).
fn image_inputs(a: &PredictArgs, paths: &[&PathBuf]) -> Result<Vec<Input>> {
    let region = match (&a.roi, &a.lesion_box) {
        (Some(m), _) => Some(LesionRegion::Mask(m.clone())),
        (None, Some(b)) => Some(LesionRegion::Box(parse_box(b)?)),
        (None, None) => None,
    };
    if let Some(region) = region {
        let [image] = paths else {
            bail!(
                "--roi and --box take one full mammogram INPUT; {} were given",
                paths.len()
            );
        };
        if !image.is_file() {
            bail!(
                "INPUT {}: no such file (--roi and --box take a full mammogram file)",
                image.display()
            );
        }
        return Ok(vec![Input::FullImage {
            image: image.to_path_buf(),
            region,
        }]);
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = files.len();
            image_files(p, &mut files)?;
            if files.len() == before {
                bail!(
                    "INPUT {}: the folder holds no case-description CSVs (a dataset) nor image files (.dcm, .dicom, .png, .jpg, .jpeg)",
                    p.display()
                );
            }
        } else {
            // A missing file is skipped and reported with the unreadable ones.
            files.push(p.to_path_buf());
        }
    }
    Ok(files.into_iter().map(Input::Crop).collect())
}

/// Runs `miram predict`.
pub fn run(a: &PredictArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let dev = study::device(g.device.as_deref())?;
    if a.batch_size == 0 {
        bail!("--batch-size 0: give at least 1");
    }
    let cmd = read_finetune_run(&a.model, "--model", "predict")?;
    let ck = best_checkpoint(&a.model, "predict")?;
    let pre = preprocessing(&a.model, &cmd, ui)?;
    let clf = TrainedClassifier::load(&ck, cmd.finetune.task.clone(), pre, &dev)?;
    ui.config(
        "predict",
        &json!({ "model": a.model, "inputs": a.inputs, "out": a.out, "split": format!("{:?}", a.split).to_lowercase(),
                 "preprocessing": { "size": clf.preprocessing.size, "margin": clf.preprocessing.margin,
                     "filter": clf.preprocessing.filter, "normalization": clf.preprocessing.normalization }, "task": clf.task.name(), "classes": clf.class_names }),
    );
    let with_region = a.roi.is_some() || a.lesion_box.is_some();
    let (datasets, others): (Vec<&PathBuf>, Vec<&PathBuf>) = a
        .inputs
        .iter()
        .partition(|p| !with_region && p.is_dir() && is_dataset(p));
    let mut rows = Vec::new();
    let mut skipped = 0;
    for root in datasets {
        let (r, s) = score_dataset(a, &cmd, &clf, root, &dev, ui)?;
        rows.extend(r);
        skipped += s;
    }
    if !others.is_empty() {
        let inputs = image_inputs(a, &others)?;
        let (r, s) = score_images(a, &clf, &inputs, &dev, ui)?;
        rows.extend(r);
        skipped += s;
    }
    let text = predictions_csv(
        &clf.class_names,
        true,
        rows.iter().map(|r| CsvRow {
            file: Some(&r.file),
            item: r.item.as_ref(),
            target: r.target.as_deref(),
            scores: &r.scores,
        }),
    );
    std::fs::write(&a.out, text).with_context(|| format!("{}", a.out.display()))?;
    if let Some(path) = &a.save_inputs {
        save_inputs(
            path,
            &rows,
            clf.config.encoder.in_chans,
            clf.preprocessing.size,
        )?;
    }
    ui.result_text(format!(
        "{} inputs scored{}: {}\n",
        rows.len(),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        },
        a.out.display()
    ));
    ui.event(
        "result",
        json!({ "out": a.out, "scored": rows.len(), "skipped": skipped }),
    );
    if skipped > 0 && !a.keep_going {
        bail!(
            "{skipped} inputs could not be read (each is named above) and were skipped; the others' scores are in {}; --keep-going accepts this",
            a.out.display()
        );
    }
    Ok(())
}
