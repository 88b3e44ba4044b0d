//! `miram inspect FILE [--json]`: a DICOM file's header fields and statistics of its stored
//! pixel values (before any rescale or window, as pydicom's `pixel_array` returns them), with
//! the key names of the pydicom fixtures (`fixtures/dicom/expected.json`, see
//! `fixtures/README.md`) so the output can be compared with pydicom's directly.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use miram_core::cbis_ddsm::dicom::{inspect_with, DecodeLimits};

use crate::ui::Ui;

/// Arguments of `miram inspect`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Fields: transfer_syntax_uid, rows, columns, frames, samples_per_pixel, bits_allocated,
bits_stored, pixel_representation, photometric_interpretation, then of the stored values:
shape, min, max, sum, sha256_i32le (SHA-256 of the values as little-endian i32) and
first_values (the first eight). A header pydicom refuses to decode (Rows, Columns or Samples
per Pixel 0, Bits Allocated 0 or not 1 / a multiple of 8, Bits Stored 0 or above Bits
Allocated, Pixel Representation not 0/1, an unknown Photometric
Interpretation) is an error naming the file, the field and its value.

Example:
  miram inspect 1-1.dcm --json
  python -c \"import pydicom; a = pydicom.dcmread('1-1.dcm').pixel_array; print(a.shape, a.min(), a.max(), a.sum())\"")]
pub struct InspectArgs {
    /// The DICOM file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refuse files whose header declares more samples than this (rows x columns x frames x
    /// samples per pixel), before decoding.
    #[arg(long, value_name = "N", default_value_t = DecodeLimits::default().max_pixels)]
    pub max_pixels: u64,
}

/// Runs `miram inspect`.
pub fn run(a: &InspectArgs, ui: &Ui) -> Result<()> {
    if !a.file.exists() {
        bail!("{}: no such file", a.file.display());
    }
    if a.file.is_dir() {
        bail!("{}: is a folder; give one DICOM file", a.file.display());
    }
    let limits = DecodeLimits {
        max_pixels: a.max_pixels,
        ..DecodeLimits::default()
    };
    let r = inspect_with(&a.file, &limits)?;
    let value = serde_json::to_value(&r)?;
    if a.json {
        ui.result_text(format!("{}\n", serde_json::to_string_pretty(&value)?));
        ui.event(
            "result",
            serde_json::json!({ "file": a.file, "inspect": value }),
        );
        return Ok(());
    }
    let mut out = format!("{}\n", a.file.display());
    let rows: [(&str, String); 15] = [
        ("transfer syntax", r.transfer_syntax_uid.clone()),
        ("rows", r.rows.to_string()),
        ("columns", r.columns.to_string()),
        ("frames", r.frames.to_string()),
        ("samples per pixel", r.samples_per_pixel.to_string()),
        ("bits allocated", r.bits_allocated.to_string()),
        ("bits stored", r.bits_stored.to_string()),
        (
            "pixel representation",
            format!(
                "{} ({})",
                r.pixel_representation,
                if r.pixel_representation == 0 {
                    "unsigned"
                } else {
                    "signed"
                }
            ),
        ),
        ("photometric", r.photometric_interpretation.clone()),
        ("shape", format!("{:?}", r.shape)),
        ("min", r.min.to_string()),
        ("max", r.max.to_string()),
        ("sum", r.sum.to_string()),
        ("sha256 (i32 LE)", r.sha256_i32le.clone()),
        ("first values", format!("{:?}", r.first_values)),
    ];
    for (k, v) in rows {
        out.push_str(&format!("  {k:<22}{v}\n"));
    }
    ui.result_text(out);
    ui.event(
        "result",
        serde_json::json!({ "file": a.file, "inspect": value }),
    );
    Ok(())
}
