//! `miram index DIR`: resolves every row of the case-description CSVs of a CBIS-DDSM download
//! to its full image, crop and ROI mask (literal CSV paths, a TCIA download, or the Kaggle
//! JPEG copy), saves the index for the next commands, and reports the rows it skipped with
//! the paths it tried (`miram-cbis-ddsm`'s `index` module).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use miram_core::cbis_ddsm::index::{
    build_index, index_path, load_or_build_index, IndexOptions, IndexProgress, IndexStage,
};
use miram_core::cbis_ddsm::DatasetIndex;
use serde_json::{json, Value};

use crate::config;
use crate::ui::{Progress, Ui};
use crate::GlobalArgs;

/// Layouts `index` can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexLayout {
    /// Detect from what is on disk.
    Auto,
    /// The CSV paths, literally, under DIR (or DIR/CBIS-DDSM).
    Literal,
    /// A TCIA download (case / date-named study / description-named series folders).
    Tcia,
    /// The Kaggle JPEG copy (csv/dicom_info.csv, jpeg/<series UID>/).
    Kaggle,
}

/// Arguments of `miram index`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The index is saved (by default DIR/.miram-index.json) and reused while the CSVs and image
files are unchanged. The case-description CSVs are found in DIR, DIR/csv or DIR/CBIS-DDSM
unless given with --csv; those of the four that are missing are named in a warning (a folder
standing where a CSV is expected is an error). Rows whose files are missing are listed with
the paths tried; rows whose full image or ROI mask exists but cannot be decoded (corrupt
pixel data, a header the decoder refuses, over the size limits) with the file and the cause.
The saved index is rebuilt when a file it used changes or a file is added to or removed from
a case folder it looked in.

The configuration file (TOML or JSON) may set: layout (\"Auto\", \"Literal\", \"Tcia\",
\"Kaggle\"), csv_files, cache_path, limits ({ max_pixels, max_frames }), content_check
(\"WhenAmbiguous\" or \"Always\").

Example:
  miram index ~/data/manifest-ZkhPvrLo5216730872708713142   # a TCIA download
  miram index data/synth --show-skipped 100")]
pub struct IndexArgs {
    /// The dataset root: the folder with the CSVs and the images.
    #[arg(value_name = "DIR")]
    pub root: PathBuf,
    /// File layout.
    #[arg(long, value_enum)]
    pub layout: Option<IndexLayout>,
    /// A case-description CSV (repeat for several); default: found under DIR.
    #[arg(long = "csv", value_name = "FILE")]
    pub csv: Vec<PathBuf>,
    /// Where the index is saved (default DIR/.miram-index.json).
    #[arg(long, value_name = "FILE")]
    pub index_file: Option<PathBuf>,
    /// Build the index even if a current one is saved.
    #[arg(long)]
    pub rebuild: bool,
    /// Decode crop and mask to tell them apart even when the image sizes decide.
    #[arg(long)]
    pub always_check_content: bool,
    /// How many skipped rows to print (all are in the saved index).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub show_skipped: usize,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Checks that a dataset root is an existing folder, naming the flag and value otherwise.
pub fn check_root(root: &Path, what: &str) -> Result<()> {
    if !root.exists() {
        bail!("{what} {}: no such folder", root.display());
    }
    if !root.is_dir() {
        bail!("{what} {}: not a folder", root.display());
    }
    Ok(())
}

/// Resolves the index options: defaults, file, flags.
pub fn resolve(a: &IndexArgs) -> Result<IndexOptions> {
    let layout = a.layout.map(|l| {
        json!(match l {
            IndexLayout::Auto => "Auto",
            IndexLayout::Literal => "Literal",
            IndexLayout::Tcia => "Tcia",
            IndexLayout::Kaggle => "Kaggle",
        })
    });
    let csv = (!a.csv.is_empty()).then(|| json!(a.csv));
    let opts: IndexOptions = config::resolve(
        &IndexOptions::default(),
        a.config.as_deref(),
        &[
            ("layout", layout),
            ("csv_files", csv),
            ("cache_path", config::flag(&a.index_file)),
            (
                "content_check",
                a.always_check_content.then(|| json!("Always")),
            ),
        ],
    )?;
    for f in opts.csv_files.iter().flatten() {
        if !f.is_file() {
            bail!("--csv {}: no such file", f.display());
        }
    }
    Ok(opts)
}

/// Checks that the case-description CSVs can be found, with a clear line if not (and the
/// folder named when one stands where a CSV is expected).
pub fn check_csvs(root: &Path, opts: &IndexOptions) -> Result<()> {
    use miram_core::cbis_ddsm::csv::locate_case_csvs;
    use miram_core::cbis_ddsm::DdsmError;
    if opts.csv_files.as_ref().is_some_and(|f| !f.is_empty()) {
        return Ok(());
    }
    let found = match locate_case_csvs(root) {
        Err(e @ DdsmError::NotAFile { .. }) => return Err(e.into()),
        other => other.is_ok(),
    };
    let in_parent = || match root.parent() {
        Some(p) if root.file_name().is_some_and(|n| n == "CBIS-DDSM") => {
            match locate_case_csvs(p) {
                Err(e @ DdsmError::NotAFile { .. }) => Err(e),
                other => Ok(other.is_ok()),
            }
        }
        _ => Ok(false),
    };
    if !found && !in_parent()? {
        bail!(
            "{}: no case-description CSV (mass_case_description_train_set.csv, ...) in the folder, its csv/ or CBIS-DDSM/ subfolder; download them from TCIA or pass them with --csv",
            root.display()
        );
    }
    Ok(())
}

/// Warns about the case-description CSVs of the four that were not found (a dataset with the
/// mass CSVs only is legitimate, but a missing file should not go unnoticed).
pub fn warn_missing_csvs(ui: &Ui, index: &DatasetIndex) {
    if !index.missing_csvs.is_empty() {
        ui.warn(format!(
            "{} of the 4 case-description CSVs not found under {} (looked in the folder, csv/ and CBIS-DDSM/): {}; their rows are not indexed",
            index.missing_csvs.len(),
            index.root.display(),
            index.missing_csvs.join(", ")
        ));
    }
}

/// The error of saving an index where it cannot be written, with the flag that moves it.
fn with_index_file_hint(e: miram_core::cbis_ddsm::DdsmError) -> anyhow::Error {
    match e {
        e @ miram_core::cbis_ddsm::DdsmError::IndexNotWritable { .. } => anyhow::anyhow!(
            "{e}: give --index-file FILE (or cache_path in the --config file) to save it in a writable place"
        ),
        e => e.into(),
    }
}

/// Builds (or reuses) the index of `root` with a progress bar per stage.
pub fn index_dataset(
    root: &Path,
    opts: &IndexOptions,
    rebuild: bool,
    ui: &Ui,
) -> Result<DatasetIndex> {
    check_root(root, "dataset root")?;
    check_csvs(root, opts)?;
    let stages: std::sync::Mutex<Option<(IndexStage, Progress<'_>)>> = std::sync::Mutex::new(None);
    let on_progress = |p: IndexProgress| {
        let mut cur = stages.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_none_or(|(s, _)| *s != p.stage) {
            if let Some((_, bar)) = cur.take() {
                bar.finish_quietly();
            }
            let (name, unit) = match p.stage {
                IndexStage::ReadingCsv => ("csv", "files"),
                IndexStage::Scanning => ("scan", "folders"),
                IndexStage::ReadingHeaders => ("headers", "files"),
                IndexStage::Resolving => ("resolve", "rows"),
            };
            *cur = Some((p.stage, ui.progress(name, p.total as u64, unit)));
        }
        if let Some((_, bar)) = cur.as_ref() {
            bar.set(p.done as u64);
        }
    };
    let index = if rebuild {
        let index = build_index(root, opts, &on_progress)?;
        index
            .save(&index_path(root, opts))
            .map_err(with_index_file_hint)?;
        index
    } else {
        load_or_build_index(root, opts, &on_progress).map_err(with_index_file_hint)?
    };
    if let Some((_, bar)) = stages.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bar.finish_quietly();
    }
    Ok(index)
}

/// The report of an index: rows per CSV file, skipped rows (the first `show` of them).
pub fn summary(index: &DatasetIndex, saved_to: &Path, show: usize) -> (String, Value) {
    let mut text = format!(
        "dataset     {}\nlayout      {}\nindex       {}{}\n",
        index.root.display(),
        index.layout,
        saved_to.display(),
        if index.loaded_from_cache {
            " (reused: files unchanged)"
        } else {
            ""
        }
    );
    text.push_str(&format!(
        "\n{:<40} {:>8} {:>8} {:>8}\n",
        "CSV file", "rows", "indexed", "skipped"
    ));
    let mut files = Vec::new();
    for f in &index.csv_files {
        let ok = index
            .entries
            .iter()
            .filter(|e| e.record.source.file.as_path() == f)
            .count();
        let bad = index
            .unresolved
            .iter()
            .filter(|u| u.source.file.as_path() == f)
            .count();
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        text.push_str(&format!("{name:<40} {:>8} {ok:>8} {bad:>8}\n", ok + bad));
        files.push(json!({ "file": f, "rows": ok + bad, "indexed": ok, "skipped": bad }));
    }
    text.push_str(&format!(
        "{:<40} {:>8} {:>8} {:>8}\n",
        "total",
        index.entries.len() + index.unresolved.len(),
        index.entries.len(),
        index.unresolved.len()
    ));
    if !index.unresolved.is_empty() {
        text.push_str(&format!("\nskipped rows ({}):\n", index.unresolved.len()));
        for u in index.unresolved.iter().take(show) {
            let tried: Vec<String> = u.tried.iter().map(|p| p.display().to_string()).collect();
            text.push_str(&format!(
                "  {}: {}; tried: {}\n",
                u.source,
                u.reason,
                tried.join(", ")
            ));
        }
        if index.unresolved.len() > show {
            text.push_str(&format!(
                "  ... and {} more (all are listed under `unresolved` in {})\n",
                index.unresolved.len() - show,
                saved_to.display()
            ));
        }
    }
    let undecodable = index
        .unresolved
        .iter()
        .filter(|u| u.is_undecodable())
        .count();
    if undecodable > 0 {
        text.push_str(&format!(
            "\n{undecodable} of the skipped rows have image files that exist but cannot be decoded (listed with the file and the cause above)\n"
        ));
    }
    if !index.missing_csvs.is_empty() {
        text.push_str(&format!("\nnot found: {}\n", index.missing_csvs.join(", ")));
    }
    let skipped: Vec<Value> = index
        .unresolved
        .iter()
        .map(|u| json!({ "file": u.source.file.as_ref(), "row": u.source.row, "reason": u.reason, "tried": u.tried, "undecodable": u.undecodable }))
        .collect();
    let value = json!({
        "root": index.root, "layout": format!("{:?}", index.layout), "index_file": saved_to,
        "reused": index.loaded_from_cache, "indexed": index.entries.len(),
        "skipped": index.unresolved.len(), "undecodable": undecodable,
        "missing_csvs": index.missing_csvs, "files": files, "skipped_rows": skipped,
    });
    (text, value)
}

/// Runs `miram index`.
pub fn run(a: &IndexArgs, _g: &GlobalArgs, ui: &Ui) -> Result<()> {
    check_root(&a.root, "dataset root")?;
    let opts = resolve(a)?;
    check_csvs(&a.root, &opts)?;
    ui.config("index", &opts);
    let index = index_dataset(&a.root, &opts, a.rebuild, ui)?;
    warn_missing_csvs(ui, &index);
    let saved = index_path(&a.root, &opts);
    let (text, value) = summary(&index, &saved, a.show_skipped);
    ui.result_text(text);
    ui.event("result", value);
    Ok(())
}
