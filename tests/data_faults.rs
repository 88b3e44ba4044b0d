//! Faults of a dataset as the command line reports them: a DICOM header with no pixels
//! refused by `inspect`, an undecodable official test image named in a warning and in the
//! test-case count of `finetune` (an error with `--strict-test`), every image undecodable
//! said so, missing case-description CSVs named, a folder in their place refused, and an
//! index or cache that cannot be saved naming the flag or setting that moves it.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::*;

/// A small generated dataset (literal layout) and its manifest.
fn synth(dir: &Path) -> (PathBuf, Value) {
    let root = dir.join("data");
    let cfg = dir.join("synth.toml");
    std::fs::write(
        &cfg,
        "patients = 8\nimage_width = 256\nimage_height = 416\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&[
        "--quiet",
        "synth",
        "--out",
        &s(&root),
        "--config",
        &s(&cfg),
        "--seed",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("synth_manifest.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (root, manifest)
}

/// Cuts the last bytes of a file: its pixel data is then shorter than the header says.
fn cut_tail(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::write(path, &bytes[..bytes.len() - 100]).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn inspect_refuses_a_header_without_pixels() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, manifest) = synth(tmp.path());
    let first = manifest["abnormalities"][0]["full_image"]
        .as_str()
        .unwrap_or_else(|| panic!("no full_image"));
    let path = root.join(first);
    // Rows (0028,0010), US, explicit VR little endian: set it to 0.
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let tag = [0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0];
    let at = bytes
        .windows(8)
        .position(|w| w == tag)
        .unwrap_or_else(|| panic!("no Rows element"))
        + 8;
    bytes[at..at + 2].copy_from_slice(&[0, 0]);
    let bad = tmp.path().join("rows0.dcm");
    std::fs::write(&bad, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&["inspect", &s(&bad)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(err.contains("rows0.dcm"), "{err}");
    assert!(err.contains("Rows (0028,0010) is 0"), "{err}");
}

#[test]
fn a_test_image_that_does_not_decode_is_counted_and_named() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, manifest) = synth(tmp.path());
    let rows = manifest["abnormalities"]
        .as_array()
        .unwrap_or_else(|| panic!("no abnormalities"));
    let test_row = rows
        .iter()
        .find(|a| a["split"] == "Test")
        .unwrap_or_else(|| panic!("no official test row: {rows:?}"));
    let full = test_row["full_image"]
        .as_str()
        .unwrap_or_else(|| panic!("no full_image"));
    let sharing = rows.iter().filter(|a| a["full_image"] == full).count();
    let tests = rows.iter().filter(|a| a["split"] == "Test").count();
    cut_tail(&root.join(full));
    let name = Path::new(full)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    // `index` lists the row with the file and the cause, not as missing files.
    let out = miram(&["index", &s(&root)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("cannot be decoded"), "{report}");
    assert!(report.contains("pixel data has"), "{report}");

    let run = tmp.path().join("run");
    let args = [
        "finetune",
        "--data",
        &s(&root),
        "--preset",
        "micro",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--bootstrap",
        "10",
        "--out",
        &s(&run),
    ];
    // Strict: refused before training, naming the file and the cause.
    let mut strict: Vec<&str> = args.to_vec();
    strict.push("--strict-test");
    let out = miram(&strict);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    assert!(
        last.contains(&name) && last.contains("pixel data has"),
        "{err}"
    );
    assert!(last.contains("official test cases"), "{err}");

    // Default: a warning naming the case, and the count says how many were dropped.
    let out = miram(&args);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("official test cases of the task pathology_binary are missing"),
        "{err}"
    );
    assert!(err.contains("cannot be decoded"), "{err}");
    assert!(!err.contains("have no image files"), "{err}");
    let result = text(&out.stdout);
    let dropped_tests = rows
        .iter()
        .filter(|a| a["full_image"] == full && a["split"] == "Test")
        .count();
    assert!(dropped_tests >= 1 && sharing >= dropped_tests);
    let expected = format!(
        "{} test cases ({dropped_tests} dropped: ",
        tests - dropped_tests
    );
    assert!(result.contains(&expected), "`{expected}` not in: {result}");
    assert!(result.contains(&name), "{result}");
}

#[test]
fn every_image_undecodable_is_said_so() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, manifest) = synth(tmp.path());
    let mut fulls: Vec<&str> = manifest["abnormalities"]
        .as_array()
        .unwrap_or_else(|| panic!("no abnormalities"))
        .iter()
        .filter_map(|a| a["full_image"].as_str())
        .collect();
    fulls.sort();
    fulls.dedup();
    for f in &fulls {
        cut_tail(&root.join(f));
    }
    let out = miram(&["index", &s(&root)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "all {} images failed to decode; first: ",
            fulls.len()
        )),
        "{err}"
    );
    assert!(!err.contains("no images found"), "{err}");
}

#[test]
fn missing_csvs_are_named_and_a_folder_in_their_place_refused() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, _) = synth(tmp.path());
    let calc_test = "calc_case_description_test_set.csv";
    let found = |name: &str| {
        [root.join(name), root.join("csv").join(name)]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} not written by synth"))
    };
    let calc_path = found(calc_test);
    std::fs::remove_file(&calc_path).unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&["index", &s(&root)]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: 1 of the 4 case-description CSVs"),
        "{err}"
    );
    assert!(err.contains(calc_test), "{err}");
    // A folder where the CSV should be: an error naming it.
    std::fs::create_dir(&calc_path).unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&["index", &s(&root)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(calc_test) && err.contains("is a folder"),
        "{err}"
    );
}

#[test]
fn an_index_that_cannot_be_saved_names_the_flag() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, _) = synth(tmp.path());
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&[
        "index",
        &s(&root),
        "--index-file",
        &s(&blocker.join("index.json")),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--index-file"), "{err}");
    assert!(!err.contains("IndexOptions"), "{err}");
}

#[test]
fn a_cache_folder_that_cannot_be_written_names_the_setting() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (root, _) = synth(tmp.path());
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap_or_else(|e| panic!("{e}"));
    let cfg = tmp.path().join("ft.toml");
    std::fs::write(
        &cfg,
        format!("[data]\ncache_dir = {:?}\n", s(&blocker.join("cache"))),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = miram(&[
        "finetune",
        "--data",
        &s(&root),
        "--preset",
        "micro",
        "--epochs",
        "1",
        "--config",
        &s(&cfg),
        "--out",
        &s(&tmp.path().join("run")),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("data.cache_dir"), "{err}");
    assert!(!err.contains("IndexOptions"), "{err}");
}
