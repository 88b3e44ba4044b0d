//! `miram study`, `miram probe` and `miram quickstart` end to end at a tiny budget: the
//! study's report holds every seed's figures, the pairwise tests and the learning curves;
//! the probe's reported AUC is the one `miram metrics` computes from the predictions it
//! wrote; the quick start reports its probes and kNN curve; bad settings are refused.

use std::path::Path;

use serde_json::Value;

mod support;
use support::*;

const TINY_SYNTH: &str = "[synth]\npatients = 30\nimage_width = 256\nimage_height = 416\n";

const TINY_PLAN: &str = "[plan]
tasks = [\"pathology\"]
pretrain_epochs = 1
pretrain_batch = 8
finetune_epochs = 1
finetune_batch = 8
probe_every_steps = 4
bootstrap = 0
";

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn knn_steps(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "eval" && v["metrics"]["knn_roc_auc"].is_number())
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

#[test]
fn study_and_probe_run_end_to_end_at_a_tiny_budget() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    let cfg = root.join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            "seeds = [0, 1]\n{TINY_SYNTH}{TINY_PLAN}starts = [\"miram-native\", \"mae\", \"random\"]\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = root.join("study");
    let stdout = miram(&["--quiet", "study", "--out", &s(&out), "--config", &s(&cfg)]);
    ok(&stdout);
    let report = json(&out.join("report.json"));
    let task = &report["tasks"][0];
    assert_eq!(task["task"], "pathology_binary");
    let starts = task["starts"]
        .as_array()
        .unwrap_or_else(|| panic!("{task}"));
    assert_eq!(starts.len(), 3);
    for s in starts {
        assert_eq!(s["auc"].as_array().map(Vec::len), Some(2), "{s}");
    }
    // Three starts give three pairs, each tested on both seeds.
    let pairs = task["pairs"].as_array().unwrap_or_else(|| panic!("{task}"));
    assert_eq!(pairs.len(), 3);
    for p in pairs {
        assert_eq!(p["p_per_seed"].as_array().map(Vec::len), Some(2), "{p}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap_or_else(|e| panic!("{e}"));
    for needle in ["MIRAM native 2x vs MAE", "combined p", "probe_curves.png"] {
        assert!(md.contains(needle), "{needle} is not in report.md:\n{md}");
    }
    assert!(std::fs::metadata(out.join("probe_curves.png")).is_ok_and(|m| m.len() > 1000));
    for seed in ["seed-0", "seed-1"] {
        assert!(out.join(seed).join("report.md").is_file());
        for start in ["miram-native", "mae"] {
            let steps = knn_steps(
                &out.join(seed)
                    .join("runs")
                    .join(format!("pretrain-{start}"))
                    .join("log.jsonl"),
            );
            assert_eq!(steps.first(), Some(&0), "{seed} {start}: {steps:?}");
            assert!(steps.len() >= 2, "{seed} {start}: {steps:?}");
        }
    }

    // The probe of a pre-trained encoder: its kNN AUC is what `miram metrics` gives for the
    // predictions it wrote.
    let data = out.join("data").join("seed-0");
    let probe_out = root.join("probe");
    let run = out.join("seed-0").join("runs").join("pretrain-mae");
    #[rustfmt::skip]
    let printed = miram(&["--quiet", "probe", "--model", &s(&run), "--data", &s(&data),
        "--task", "pathology", "--k", "5", "--bootstrap", "0", "--out", &s(&probe_out)]);
    ok(&printed);
    let table = text(&printed.stdout);
    assert!(
        table.contains("kNN") && table.contains("linear, C="),
        "{table}"
    );
    let probe = json(&probe_out.join("probe.json"));
    for csv in ["knn_predictions.csv", "linear_predictions.csv"] {
        let scored = miram(&[
            "metrics",
            "--task",
            "binary",
            "--input",
            &s(&probe_out.join(csv)),
        ]);
        ok(&scored);
        let m: Value = serde_json::from_slice(&scored.stdout).unwrap_or_else(|e| panic!("{e}"));
        let reported = if csv.starts_with("knn") {
            &probe["knn"]["test"]["auc"]
        } else {
            &probe["linear"]["evaluation"]["test"]["auc"]
        };
        let (a, b) = (m["roc_auc"].as_f64(), reported.as_f64());
        assert!(
            matches!((a, b), (Some(a), Some(b)) if (a - b).abs() < 1e-12),
            "{csv}: metrics {a:?}, probe {b:?}"
        );
    }
    // A fine-tuned classifier is probed through its pooled features.
    let ft = out
        .join("seed-0")
        .join("runs")
        .join("finetune-pathology_binary-mae");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "probe", "--model", &s(&ft), "--data", &s(&data),
        "--task", "pathology", "--bootstrap", "0"]));

    // Bad settings are named.
    #[rustfmt::skip]
    assert_one_line_error(&miram(&["probe", "--model", &s(&run), "--data", &s(&data),
        "--c-grid", "0.1,0"]), &["c_grid", "0", "> 0"]);
    #[rustfmt::skip]
    assert_one_line_error(&miram(&["probe", "--model", &s(&root.join("nothing")), "--data", &s(&data)]),
        &["--model", "nothing"]);
    #[rustfmt::skip]
    assert_one_line_error(&miram(&["study", "--out", &s(&out), "--seeds", "1,1"]), &["repeat"]);
    #[rustfmt::skip]
    assert_one_line_error(&miram(&["study", "--out", &s(&out), "--starts", "mae,beit"]),
        &["beit", "miram-native"]);
}

#[test]
fn quickstart_reports_probes_and_the_knn_curve() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = tmp.path().join("qs.toml");
    std::fs::write(
        &cfg,
        format!("reconstructions = 1\n{TINY_SYNTH}{TINY_PLAN}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = tmp.path().join("qs");
    let run = miram(&["quickstart", "--out", &s(&out), "--config", &s(&cfg)]);
    ok(&run);
    let stdout = text(&run.stdout);
    assert!(stdout.contains("Frozen encoders"), "{stdout}");
    let report = json(&out.join("report.json"));
    // Probes of MIRAM, MAE and the random encoder on the one task.
    assert_eq!(
        report["probes"].as_array().map(Vec::len),
        Some(3),
        "{}",
        report["probes"]
    );
    assert!(out.join("probe_curve.png").is_file());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap_or_else(|e| panic!("{e}"));
    assert!(md.contains("Probes of the frozen encoders"), "{md}");
    // The first note says, from the run's own numbers, how pre-training compares.
    let first = report["notes"][0].as_str().unwrap_or_default();
    assert!(first.starts_with("pathology_binary: "), "{first}");
}
