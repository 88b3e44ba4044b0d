//! The steps shared by `pretrain`, `finetune`, `evaluate`, `reconstruct` and `quickstart`:
//! preparing a dataset (index and crop cache) with progress bars, one pre-training run, one
//! fine-tuning run, the curves of a task, and reconstruction grids. Each step calls the
//! training engine (`miram_core::train`) and records what it did for the reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use miram_core::candle_core::{IndexOp, D};
use miram_core::cbis_ddsm::loader::CropDataset;
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::losses::reconstruction_target;
use miram_core::nn::unpatchify;
use miram_core::train::{
    finetune, prepare_data, pretrain, DataConfig, FinetuneConfig, PreparedData, PretrainConfig,
    RunDir, RunOptions, TaskData, TaskMetrics,
};
use miram_core::{Device, Miram, MiramConfig, Tensor};

use crate::plot::{image_grid, save_panels, LineChart, Series, Tile};
use crate::report::{Figure, PretrainResult, RunResult, TaskResult};
use crate::runs::{loss_chart, read_steps, scale_names, UiObserver};
use crate::ui::Ui;

/// Pixel sizes of the PNG charts.
pub const CHART_SIZE: (u32, u32) = (900, 600);

/// A task from its command-line name: `pathology` (malignant vs benign), `pathology4`
/// (mass/calcification x benign/malignant), `margins` (the five mass margins, multi-label),
/// or `column:<CSV column>` (any categorical column, multi-label).
pub fn parse_task(name: &str) -> Result<Task> {
    Ok(match name {
        "pathology" | "pathology_binary" => Task::PathologyBinary,
        "pathology4" | "pathology_4" => Task::Pathology4,
        "margins" | "mass_margins" => Task::MassMargins,
        s => match s.strip_prefix("column:") {
            Some(c) if !c.is_empty() => Task::Categorical {
                column: c.to_string(),
            },
            _ => bail!(
                "unknown task `{s}`; use pathology, pathology4, margins or column:<CSV column>"
            ),
        },
    })
}

/// A readable description of a task.
pub fn describe_task(task: &Task) -> String {
    match task {
        Task::PathologyBinary => {
            "pathology, malignant vs benign (BENIGN_WITHOUT_CALLBACK is benign)".into()
        }
        Task::Pathology4 => {
            "pathology, 4 classes (mass/calcification x benign/malignant), macro one-vs-rest".into()
        }
        Task::MassMargins => "mass margins, 5 classes multi-label, macro one-vs-rest".into(),
        Task::Categorical { column } => format!("`{column}`, multi-label, macro one-vs-rest"),
    }
}

/// The warm-up of a recipe whose epochs changed from `epochs` to `new_epochs` without a
/// warm-up given: the same share of the epochs (the paper's 40 of 500 becomes 0.8 of 10).
pub fn keep_warmup_share(warmup: &f64, epochs: usize, new_epochs: usize) -> f64 {
    if epochs == new_epochs || epochs == 0 {
        *warmup
    } else {
        warmup * new_epochs as f64 / epochs as f64
    }
}

/// The device named by `--device` (default cpu).
pub fn device(name: Option<&str>) -> Result<Device> {
    crate::commands::device::parse(name.unwrap_or("cpu"))
}

/// A generated dataset in `dir`: reused when `dir` holds one written with `synth` (said on
/// the progress output), written anew otherwise (an older one with other settings is
/// removed first).
pub fn generated_dataset(
    synth: &miram_core::cbis_ddsm::synth::SynthConfig,
    dir: &Path,
    ui: &Ui,
) -> Result<miram_core::cbis_ddsm::synth::SynthManifest> {
    use miram_core::cbis_ddsm::synth::SynthManifest;
    if let Ok(m) = SynthManifest::load(dir) {
        if &m.config == synth {
            ui.info(format!(
                "{:>12} reusing the dataset in {}",
                "synth",
                dir.display()
            ));
            return Ok(m);
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    crate::commands::synth::write(dir, synth, ui)
}

/// Checks a dataset root before any work.
pub fn check_data(cfg: &DataConfig) -> Result<()> {
    if cfg.root.as_os_str().is_empty() {
        bail!("no dataset: give --data DIR (or data.root in the configuration file)");
    }
    crate::commands::index::check_root(&cfg.root, "--data")
}

/// Indexes the dataset and builds (or reuses) its crop cache, with progress bars.
pub fn prepare(
    ui: &Ui,
    cfg: &DataConfig,
    size: usize,
    hires_scale: Option<u32>,
    seed: u64,
) -> Result<PreparedData> {
    check_data(cfg)?;
    let t = Instant::now();
    let mut obs = UiObserver::new(ui, "data", Vec::new());
    let prepared = prepare_data(cfg, size as u32, hires_scale, seed, &mut obs)
        .map_err(|e| with_cache_dir_hint(e, cfg))?;
    obs.close();
    crate::commands::index::warn_missing_csvs(ui, &prepared.index);
    let (undecodable, missing): (Vec<_>, Vec<_>) = prepared
        .index
        .unresolved
        .iter()
        .partition(|u| u.is_undecodable());
    if !missing.is_empty() {
        ui.warn(format!(
            "{} CSV rows of {} have no image files and are left out; `miram index {}` lists them with the paths tried",
            missing.len(),
            cfg.root.display(),
            cfg.root.display()
        ));
    }
    if !undecodable.is_empty() {
        let list: Vec<String> = undecodable
            .iter()
            .take(SHOWN)
            .map(|u| format!("  {}: {}", u.source, u.undecodable[0]))
            .collect();
        ui.warn(format!(
            "{} CSV rows of {} have image files that cannot be decoded and are left out:\n{}{}",
            undecodable.len(),
            cfg.root.display(),
            list.join("\n"),
            more(undecodable.len())
        ));
    }
    let skipped = prepared.cache.skipped();
    let lesions: Vec<_> = skipped.iter().filter(|s| s.job.is_some()).collect();
    if !lesions.is_empty() {
        let list: Vec<String> = lesions
            .iter()
            .take(SHOWN)
            .map(|s| {
                let row = s
                    .job
                    .and_then(|j| prepared.index.entries.get(j))
                    .map_or_else(String::new, |e| format!("{}: ", e.record.source));
                format!(
                    "  {row}{}",
                    miram_core::cbis_ddsm::error::file_and_error(&s.path, &s.message)
                )
            })
            .collect();
        ui.warn(format!(
            "{} lesions could not be cropped and are left out:\n{}{}",
            lesions.len(),
            list.join("\n"),
            more(lesions.len())
        ));
    }
    ui.info(format!(
        "{:>12} {} rows indexed, {} crops of {size} px in {} ({})",
        "data",
        prepared.index.len(),
        prepared.cache.len(),
        prepared.cache.path().display(),
        crate::ui::fmt_duration(t.elapsed())
    ));
    Ok(prepared)
}

/// How many dropped rows a warning lists.
const SHOWN: usize = 10;

fn more(n: usize) -> String {
    if n > SHOWN {
        format!("\n  ... and {} more", n - SHOWN)
    } else {
        String::new()
    }
}

/// An error of preparing the data, with the setting to change when the cause is a folder
/// that cannot be written (a read-only dataset).
fn with_cache_dir_hint(e: miram_core::Error, cfg: &DataConfig) -> anyhow::Error {
    use miram_core::cbis_ddsm::DdsmError;
    let cache_dir = cfg.cache_dir();
    // Every I/O error on the cache folder is one of writing there (the crop cache files are
    // written before they are read).
    let in_cache = |path: &Path| path.starts_with(&cache_dir);
    let unwritable = match &e {
        miram_core::Error::Io { path, .. } => in_cache(path),
        miram_core::Error::Dataset(DdsmError::IndexNotWritable { .. }) => true,
        miram_core::Error::Dataset(DdsmError::Io { path, .. }) => in_cache(path),
        _ => false,
    };
    if unwritable {
        anyhow!(
            "{e}\nthe index and crop cache are kept in {}; set data.cache_dir (in the --config file) to a writable folder",
            cache_dir.display()
        )
    } else {
        e.into()
    }
}

/// "N test cases", with how many official test cases of the task were dropped and why.
pub fn test_case_count(n: usize, td: &TaskData) -> String {
    let dropped = td.dropped_test();
    if dropped.is_empty() {
        return format!("{n} test cases");
    }
    let list: Vec<String> = dropped.iter().take(SHOWN).map(|d| d.to_string()).collect();
    format!(
        "{n} test cases ({} dropped: {}{})",
        dropped.len(),
        list.join("; "),
        if dropped.len() > SHOWN { "; ..." } else { "" }
    )
}

/// Warns, naming each one, about the official test cases of a task left out of its test
/// set (`data.require_all_test_cases` / `--strict-test` make this an error).
pub fn warn_dropped_test(ui: &Ui, task: &Task, td: &TaskData) {
    let dropped = td.dropped_test();
    if dropped.is_empty() {
        return;
    }
    let list: Vec<String> = dropped
        .iter()
        .take(SHOWN)
        .map(|d| format!("  {d}"))
        .collect();
    ui.warn(format!(
        "{} official test cases of the task {} are missing from the test set (the metrics leave them out; --strict-test or data.require_all_test_cases = true makes this an error):\n{}{}",
        dropped.len(),
        task.name(),
        list.join("\n"),
        more(dropped.len())
    ));
}

/// The model configuration stored in a safetensors checkpoint's metadata (MIRAM checkpoints
/// record it), read from the file's header only; `None` for other files (an MAE `.pth`).
pub fn checkpoint_model_config(path: &Path) -> Result<Option<MiramConfig>> {
    use std::io::Read;
    if path.extension().is_none_or(|e| e != "safetensors") {
        return Ok(None);
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let len = u64::from_le_bytes(len);
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > size.saturating_sub(8) {
        bail!(
            "{}: not a safetensors file (header of {len} bytes in a file of {size})",
            path.display()
        );
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{}", path.display()))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow!("{}: not a safetensors header: {e}", path.display()))?;
    Ok(header["__metadata__"]["config"]
        .as_str()
        .and_then(|c| MiramConfig::from_json(c).ok()))
}

/// A checkpoint path from `--init` / `--model`: a file, or a run folder holding
/// `model.safetensors` (pre-training) or `checkpoints/best.safetensors` (fine-tuning).
pub fn resolve_checkpoint(path: &Path, what: &str) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_dir() {
        for c in [
            path.join("model.safetensors"),
            path.join("checkpoints").join("best.safetensors"),
        ] {
            if c.is_file() {
                return Ok(c);
            }
        }
        bail!(
            "{what} {}: the folder has no model.safetensors (a finished pre-training run) nor checkpoints/best.safetensors (a fine-tuning run)",
            path.display()
        );
    }
    bail!("{what} {}: no such file or folder", path.display())
}

/// The processes training together on `device`: NCCL's on a CUDA device under a launcher
/// (a build with the `nccl` feature), MPI's under `mpirun` (the `mpi` feature), else this
/// one alone (refused when the launcher asks for more).
pub fn processes(device: &Device) -> Result<Arc<dyn miram_core::train::AllReduce>> {
    Ok(Arc::from(miram_core::train::distributed::for_device(
        device,
    )?))
}

/// A training command's run folder and data on every process: rank 0 opens (and locks) the
/// folder and prepares the data (index, crop cache) first; the other ranks then join the
/// folder without locking it and read the prepared data.
pub fn open_shared_run(
    ui: &Ui,
    procs: &dyn miram_core::train::AllReduce,
    dir: &Path,
    restart: bool,
    prepare: &dyn Fn() -> Result<PreparedData>,
) -> Result<(RunDir, PreparedData)> {
    if procs.rank() == 0 {
        let opened = open_run(ui, dir, restart).and_then(|run| Ok((run, prepare()?)));
        procs.barrier()?;
        opened
    } else {
        procs.barrier()?;
        Ok((RunDir::attach(dir)?, prepare()?))
    }
}

/// Opens (and locks) the run folder `dir`; with `restart`, an earlier run's files move into
/// `previous-<UTC time>/`, which is reported.
pub fn open_run(ui: &Ui, dir: &Path, restart: bool) -> Result<RunDir> {
    let run = RunDir::create(dir)?;
    if restart {
        if let Some(p) = run.start_over()? {
            ui.warn(format!(
                "--restart: the previous run in {} was moved to {}",
                dir.display(),
                p.display()
            ));
        }
    }
    Ok(run)
}

/// Runs one pre-training in the run folder `run` and summarises it.
pub fn pretrain_run(
    ui: &Ui,
    name: &str,
    preset: &str,
    cfg: &PretrainConfig,
    data: &PreparedData,
    run: &RunDir,
    opts: &RunOptions,
) -> Result<PretrainResult> {
    let t = Instant::now();
    let run_dir = run.path();
    let mut opts = opts.clone();
    opts.data = Some(data.identity());
    let scales = scale_names(&cfg.model);
    let mut obs = UiObserver::new(ui, name, scales.clone());
    let dataset = Arc::new(data.pretraining_set());
    if dataset.is_empty() {
        let skipped = data.cache.skipped();
        if let Some(first) = skipped.first() {
            let images: std::collections::BTreeSet<&Path> =
                skipped.iter().map(|s| s.path.as_path()).collect();
            bail!(
                "no pre-training crops in {}: {} images failed to decode or crop; first: {}",
                data.config.root.display(),
                images.len(),
                miram_core::cbis_ddsm::error::file_and_error(&first.path, &first.message)
            );
        }
        bail!(
            "no pre-training crops in {}: the official training split has no indexed rows",
            data.config.root.display()
        );
    }
    let out = pretrain(cfg, dataset, run, &opts, &mut obs)
        .with_context(|| format!("pre-training {name}"))?;
    obs.close();
    let steps = read_steps(run_dir).unwrap_or_default();
    let last = steps.last();
    Ok(PretrainResult {
        name: name.to_string(),
        preset: preset.to_string(),
        run_dir: run_dir.to_path_buf(),
        model: out.model_path,
        steps: out.steps,
        // A resumed finished run from before train states recorded their loss: the log's.
        final_loss: if out.final_loss.is_finite() {
            out.final_loss
        } else {
            last.map_or(f64::NAN, |s| s.loss)
        },
        final_losses: scales
            .iter()
            .cloned()
            .zip(last.map(|s| s.losses.clone()).unwrap_or_default())
            .collect(),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Draws the loss curves of pre-training runs into `path`.
pub fn loss_figure(runs: &[PretrainResult], models: &[MiramConfig], path: &Path) -> Result<()> {
    let mut data = Vec::new();
    for (r, m) in runs.iter().zip(models) {
        data.push((r.name.clone(), scale_names(m), read_steps(&r.run_dir)?));
    }
    loss_chart(&data).save(path, CHART_SIZE.0, CHART_SIZE.1)
}

/// Runs one fine-tuning (with test evaluation of the best weights) in the run folder `run`
/// on `data` (a task of `prepared`, whose identity the run records).
pub fn finetune_run(
    ui: &Ui,
    name: &str,
    cfg: &FinetuneConfig,
    prepared: &PreparedData,
    data: &TaskData,
    run: &RunDir,
    opts: &RunOptions,
) -> Result<RunResult> {
    let run_dir = run.path();
    let mut opts = opts.clone();
    opts.data = Some(prepared.identity());
    let mut obs = UiObserver::new(ui, name, Vec::new());
    let out =
        finetune(cfg, data, run, &opts, &mut obs).with_context(|| format!("fine-tuning {name}"))?;
    obs.close();
    let m = &out.test_metrics;
    ui.info(format!(
        "{:>12} test: AUC {}, AP {} ({}; best epoch {})",
        name,
        crate::report::with_ci(m.auc, m.auc_ci.map(|c| (c.lower, c.upper))),
        crate::report::with_ci(m.ap, m.ap_ci.map(|c| (c.lower, c.upper))),
        test_case_count(m.n_cases, data),
        out.best_epoch + 1
    ));
    Ok(RunResult {
        run: name.to_string(),
        init: cfg.init.clone(),
        run_dir: run_dir.to_path_buf(),
        metrics: out.test_metrics,
        vs_baseline: None,
        predictions: Some(out.test_predictions),
    })
}

/// ROC and precision-recall charts of every run of a task: one chart with a line per run
/// for a binary task; one panel per run with a line per class otherwise.
pub fn curve_figures(t: &TaskResult, dir: &Path, rel: &Path) -> Result<Vec<Figure>> {
    type Pick = fn(&TaskMetrics) -> &Vec<miram_core::train::evaluate::Curve>;
    let series_of = |r: &RunResult, pick: Pick, auc: bool, with_run: bool| -> Vec<Series> {
        pick(&r.metrics)
            .iter()
            .map(|c| {
                let class = r.metrics.per_class.iter().find(|p| p.name == c.class);
                let fig = class.and_then(|p| if auc { p.auc } else { p.ap });
                let name = if with_run {
                    r.run.clone()
                } else {
                    c.class.clone()
                };
                let name = match fig {
                    Some(v) => format!("{name} ({} {v:.3})", if auc { "AUC" } else { "AP" }),
                    None => name,
                };
                Series {
                    name,
                    points: c.x.iter().copied().zip(c.y.iter().copied()).collect(),
                }
            })
            .collect()
    };
    let binary = t.runs.iter().all(|r| r.metrics.roc_curves.len() <= 1);
    let mut figures = Vec::new();
    for (kind, auc, pick) in [
        ("roc", true, (|m: &TaskMetrics| &m.roc_curves) as Pick),
        ("pr", false, |m: &TaskMetrics| &m.pr_curves),
    ] {
        let make = |title: &str, series: Vec<Series>| {
            if auc {
                LineChart::roc(title, series)
            } else {
                LineChart::precision_recall(title, series)
            }
        };
        let what = if auc { "ROC" } else { "Precision-recall" };
        let charts: Vec<LineChart> = if binary {
            let series = t
                .runs
                .iter()
                .flat_map(|r| series_of(r, pick, auc, true))
                .collect();
            vec![make(&format!("{what}, test set: {}", t.task), series)]
        } else {
            t.runs
                .iter()
                .map(|r| {
                    make(
                        &format!("{what}: {}, {}", t.task, r.run),
                        series_of(r, pick, auc, false),
                    )
                })
                .collect()
        };
        let name = format!("{kind}_{}.png", t.task);
        let (w, h) = if binary { CHART_SIZE } else { (640, 560) };
        save_panels(&dir.join(&name), &charts, w, h)?;
        figures.push(Figure {
            title: format!("{what} curves, {} (test set)", t.task),
            path: rel.join(name),
        });
    }
    Ok(figures)
}

/// Undoes the per-patch normalisation of `norm_pix_loss` on predicted patches with the
/// statistics of the target patches (the inverse of `miram_losses::norm_pix`), as MAE's
/// visualisation does.
///
/// # Shapes
/// - `pred`, `target`: `[N, L, p * p * C]`
pub fn denormalize(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let d = target.dim(D::Minus1)?;
    let mean = target.mean_keepdim(D::Minus1)?;
    let var =
        (target.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (d.max(2) - 1) as f64)?;
    Ok(pred
        .broadcast_mul(&(var + 1e-6)?.sqrt()?)?
        .broadcast_add(&mean)?)
}

/// One PNG per image `indices` of `dataset`: the original, the masked input (removed patches
/// grey) and the reconstruction at each scale of `model`.
/// Returns the files written, named `<prefix>_<k>.png` in `dir`.
pub fn reconstruction_grids<D: CropDataset>(
    model: &Miram,
    label: &str,
    dataset: &D,
    indices: &[usize],
    seed: u64,
    dir: &Path,
    prefix: &str,
) -> Result<Vec<PathBuf>> {
    let cfg = model.config();
    let (side, p, c) = (cfg.img_size, cfg.patch_size, cfg.in_chans);
    if dataset.size() != side {
        bail!(
            "the dataset's crops are {} px, the model takes {side} px",
            dataset.size()
        );
    }
    let mut written = Vec::new();
    for &i in indices {
        let s = dataset.get(i)?;
        // One channel in the dataset; the model may take 3 (repeated, as the loader does).
        let mut img = Vec::with_capacity(c * side * side);
        for _ in 0..c {
            img.extend_from_slice(&s.image);
        }
        let x = Tensor::from_vec(img.clone(), (1, c, side, side), model.device())?;
        let mut rng = miram_core::rand::Rng::keyed(seed, &[0x7265_636f, i as u64]);
        let noise = model.random_noise(1, &mut rng)?;
        let out = model.forward(&x, &noise)?;
        let mask: Vec<f32> = out.masking.mask.flatten_all()?.to_vec1::<f32>()?;
        let (lo, hi) = s
            .image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let first = |v: &[f32], sd: usize| Tile::normalized(sd, sd, &v[..sd * sd], lo, hi);
        let mut tiles = vec![first(&img, side)];
        let g = side / p;
        let mut masked = Tile::normalized(side, side, &img[..side * side], lo, hi);
        for (t, &m) in mask.iter().enumerate() {
            if m > 0.5 {
                let (gy, gx) = (t / g, t % g);
                for y in 0..p {
                    for x in 0..p {
                        masked.pixels[(gy * p + y) * side + gx * p + x] = 0.5;
                    }
                }
            }
        }
        tiles.push(masked);
        let mut columns = vec!["original".to_string(), "masked input".to_string()];
        for (k, sc) in cfg.scales.iter().enumerate() {
            let big = side * sc.scale;
            let target = reconstruction_target(&x, None, p, sc.scale, false)?; // [1, L s^2, p p C]
            let pred = if cfg.norm_pix_loss {
                denormalize(&out.preds[k], &target)?
            } else {
                out.preds[k].clone()
            };
            let rec = unpatchify(&pred, p, c, g * sc.scale, g * sc.scale)?; // [1, C, H s, W s]
            let rec: Vec<f32> = rec.i((0, 0))?.flatten_all()?.to_vec1::<f32>()?;
            if let Some(at) = rec.iter().position(|v| !v.is_finite()) {
                bail!(
                    "{label}: the {}x reconstruction of test crop {i} ({} {}) holds a non-finite value ({} at pixel {at}); the model's outputs overflow, so no image is written",
                    sc.scale,
                    s.meta.patient_id,
                    s.meta.image_folder,
                    rec[at]
                );
            }
            tiles.push(Tile::normalized(big, big, &rec, lo, hi));
            columns.push(format!("reconstruction {}x ({big} px)", sc.scale));
        }
        let path = dir.join(format!("{prefix}_{i:03}.png"));
        let title = format!(
            "{label}: {} {} abnormality {} ({})",
            s.meta.patient_id, s.meta.image_folder, s.meta.abnormality_id, s.meta.label
        );
        image_grid(
            &path,
            &title,
            &columns,
            &[(format!("mask {:.0}%", cfg.mask_ratio * 100.0), tiles)],
            192,
        )?;
        written.push(path);
    }
    if written.is_empty() {
        return Err(anyhow!("no images to reconstruct"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_by_name_and_unknown_names_say_what_works() {
        assert_eq!(parse_task("pathology").ok(), Some(Task::PathologyBinary));
        assert_eq!(parse_task("margins").ok(), Some(Task::MassMargins));
        assert_eq!(
            parse_task("column:calc type").ok(),
            Some(Task::Categorical {
                column: "calc type".into()
            })
        );
        let e = parse_task("birads").unwrap_err().to_string();
        assert!(
            e.contains("unknown task `birads`") && e.contains("margins"),
            "{e}"
        );
    }

    #[test]
    fn the_model_configuration_is_read_from_the_checkpoint_header() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.safetensors");
        let cfg = MiramConfig::micro();
        Miram::init(&cfg, 0, &Device::Cpu)?.save(&path, &Default::default())?;
        assert_eq!(checkpoint_model_config(&path)?, Some(cfg));
        assert_eq!(checkpoint_model_config(&dir.path().join("mae.pth"))?, None);
        std::fs::write(dir.path().join("bad.safetensors"), [255u8; 16])?;
        assert!(checkpoint_model_config(&dir.path().join("bad.safetensors")).is_err());
        Ok(())
    }

    #[test]
    fn warmup_keeps_its_share_of_shortened_recipes() {
        assert_eq!(keep_warmup_share(&40.0, 500, 500), 40.0);
        assert_eq!(keep_warmup_share(&40.0, 500, 10), 0.8);
        assert_eq!(keep_warmup_share(&2.0, 100, 1), 0.02);
    }

    #[test]
    fn denormalize_inverts_the_norm_pix_target() -> Result<()> {
        use miram_core::losses::norm_pix;
        let mut rng = miram_core::rand::Rng::new(5);
        let target = Tensor::from_vec(
            rng.normal_vec(2 * 3 * 16, 0.3, 2.0),
            (2, 3, 16),
            &Device::Cpu,
        )?;
        let normed = norm_pix(&target)?;
        let back = denormalize(&normed, &target)?;
        let diff = (back - &target)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }
}
