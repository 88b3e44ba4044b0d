//! What every command-line test file uses: running the `miram` binary and reading what it
//! said. Each test file includes it with `mod support;` (files under `tests/support/` are not
//! test binaries of their own).
#![allow(dead_code)] // Every test binary uses a different part.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `miram` binary built for these tests with `args`.
pub fn miram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_miram"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running miram {args:?}: {e}"))
}

/// Bytes of an output stream as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The command succeeded; its standard error (progress, warnings).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// The command failed (exit 1) with exactly one line on standard error, `error: ...`,
/// containing every one of `needles`.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` is not in: {err}");
    }
}

/// The command failed (exit 1) with one `error: ...` line, warnings allowed beside it,
/// containing every one of `needles`.
pub fn assert_error_line(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` is not in: {err}");
    }
}

/// Generates the small dataset of the command-line tests at `root/data` (6 patients,
/// 256 x 416 images, seed 3); returns its folder.
pub fn synth_small(root: &Path) -> std::path::PathBuf {
    let cfg = root.join("synth.toml");
    std::fs::write(
        &cfg,
        "patients = 6\nimage_width = 256\nimage_height = 416\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let data = root.join("data");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "synth", "--out", &s(&data), "--config", &s(&cfg), "--seed", "3"]));
    data
}

/// [`synth_small`], then one epoch of `micro` pre-training (`root/pre`) and one epoch of
/// pathology fine-tuning from it (`root/ft`).
pub fn pipeline(root: &Path) {
    let data = synth_small(root);
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "pretrain", "--data", &s(&data), "--preset", "micro", "--epochs", "1",
        "--batch-size", "8", "--accum-iter", "1", "--out", &s(&root.join("pre"))]));
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "finetune", "--data", &s(&data), "--init", &s(&root.join("pre")),
        "--task", "pathology", "--epochs", "1", "--batch-size", "8", "--bootstrap", "0",
        "--out", &s(&root.join("ft"))]));
}
