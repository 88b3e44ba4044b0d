//! `miram selftest` on the CPU through the composed kernels (the path a GPU takes), with
//! bf16: every check passes on the fixtures of `$MIRAM_MODEL_FIXTURES` and
//! `$MIRAM_FINETUNE_FIXTURES`, one line per fixture and precision, the device steps, the resumed run and the timing rows with the
//! FLOPs of `miram_core::flops`, all in `selftest.json`; a fixture whose expected loss is
//! wrong fails the command naming it; a folder without fixtures is refused naming it.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use miram_core::bench::BenchMode;
use miram_core::checkpoint::{read_checkpoint, write_safetensors};
use miram_test_support::{fixture_dir, fixture_files};

mod support;
use support::*;

/// A fixtures folder whose `model/` and `finetune/` are the fixture sets under test.
fn fixtures(root: &Path) {
    for (sub, var) in [
        ("model", "MIRAM_MODEL_FIXTURES"),
        ("finetune", "MIRAM_FINETUNE_FIXTURES"),
    ] {
        let from = fixture_dir(var, sub);
        std::fs::create_dir_all(root.join(sub)).unwrap_or_else(|e| panic!("{e}"));
        for f in fixture_files(&from, "safetensors") {
            let name = f.file_name().unwrap_or_else(|| panic!("{}", f.display()));
            std::fs::copy(&f, root.join(sub).join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_check_passes_through_the_composed_kernels() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fx = dir.path().join("fixtures");
    fixtures(&fx);
    let out = dir.path().join("out");
    let run = miram(&[
        "selftest",
        "--composed",
        "--bf16",
        "--fixtures",
        &s(&fx),
        "--out",
        &s(&out),
        "--time-presets",
        "micro",
        "--time-batch",
        "2",
        "--time-steps",
        "1",
    ]);
    ok(&run);
    let stdout = text(&run.stdout);
    let report = json(&out.join("selftest.json"));
    assert_eq!(report["passed"], true, "{stdout}");
    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    let cases = fixture_files(&fx.join("model"), "safetensors").len()
        + fixture_files(&fx.join("finetune"), "safetensors").len();
    // One per fixture in f32 and in bf16, the masking, two steps, the resume.
    assert_eq!(checks.len(), 2 * cases + 4, "{stdout}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{stdout}");
    let ok_lines = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(ok_lines, 2 * cases + 4, "{stdout}");
    let bf16 = checks.iter().filter(|c| c["section"] == "bf16").count();
    assert_eq!(bf16, cases, "{stdout}");
    let timings = report["timings"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(timings.len(), 4, "{report}");
    let cfg = miram_core::MiramConfig::micro();
    let rows = [BenchMode::Pretrain, BenchMode::Finetune]
        .into_iter()
        .flat_map(|m| [(m, "f32"), (m, "bf16")]);
    for (t, (mode, precision)) in timings.iter().zip(rows) {
        assert_eq!(t["precision"], precision);
        assert_eq!(t["mode"], mode.name());
        let want = miram_core::flops::step_flops(&cfg, mode, 2).training_step() * 1e-12;
        let got = t["tflop_per_step"]
            .as_f64()
            .unwrap_or_else(|| panic!("{t}"));
        assert!(
            (got - want).abs() <= 1e-12 * want.max(1.0),
            "{got} vs {want}"
        );
        let ms = t["step_ms"].as_f64().unwrap_or_else(|| panic!("{t}"));
        let tflops = t["tflops"].as_f64().unwrap_or_else(|| panic!("{t}"));
        assert!(
            ms > 0.0 && (tflops - want / (ms * 1e-3)).abs() <= 1e-9 * tflops,
            "{t}"
        );
    }
}

#[test]
fn a_wrong_reference_fails_the_command_naming_the_fixture() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fx = dir.path().join("fixtures");
    fixtures(&fx);
    // One model fixture whose expected total loss is off by 1.
    let victim = fixture_files(&fx.join("model"), "safetensors")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no model fixture"));
    let ck = read_checkpoint(&victim, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut tensors: BTreeMap<_, _> = ck.tensors.into_iter().collect();
    let loss = &tensors["fixture.output.loss"];
    let wrong = (loss + 1.0).unwrap_or_else(|e| panic!("{e}"));
    tensors.insert("fixture.output.loss".into(), wrong);
    write_safetensors(&victim, &tensors, &ck.metadata).unwrap_or_else(|e| panic!("{e}"));
    let name = victim
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run = miram(&[
        "selftest",
        "--fixtures",
        &s(&fx),
        "--out",
        &s(&dir.path().join("out")),
        "--time-presets",
        "none",
        "--no-resume",
    ]);
    assert_error_line(&run, &["1 checks failed", &format!("parity model/{name}")]);
    let stdout = text(&run.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains(&name) && l.contains("loss")),
        "{stdout}"
    );
}

#[test]
fn a_folder_without_fixtures_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = miram(&[
        "selftest",
        "--fixtures",
        &s(dir.path()),
        "--out",
        &s(&dir.path().join("out")),
    ]);
    assert_error_line(&run, &["--fixtures", &s(dir.path())]);
}
