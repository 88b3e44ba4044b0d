//! The command line against inputs of the wrong kind: a predictions file with a column twice
//! or a binary row with two (or no) targets, a run folder of the other kind (or no run at
//! all), a task column that does not exist, a model with NaN weights, and a benchmark batch
//! that cannot fit in memory. Each is refused with one line that names what is wrong, before
//! anything is written or allocated.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use miram_core::checkpoint::{read_checkpoint, write_safetensors};

mod support;
use support::*;

#[test]
fn metrics_refuses_duplicate_columns_and_binary_rows_without_one_target() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let metrics = |task: &str, csv: &str| {
        let f = tmp.path().join("p.csv");
        std::fs::write(&f, csv).unwrap_or_else(|e| panic!("{e}"));
        miram(&["metrics", "--task", task, "--input", &s(&f)])
    };
    // A `score` column twice (the second one, with spaces, is the same name once trimmed).
    let out = metrics("binary", "label,score, score \n0,0.1,0.9\n1,0.8,0.2\n");
    assert_one_line_error(
        &out,
        &["line 1", "column `score` appears 2 times (columns 2, 3)"],
    );
    let out = metrics("binary", "label,score,label\n0,0.1,1\n1,0.8,0\n");
    assert_one_line_error(
        &out,
        &["line 1", "column `label` appears 2 times (columns 1, 3)"],
    );
    // `p1` and `p01` are the same class column.
    let out = metrics(
        "multiclass",
        "label,p0,p1,p01\n0,0.6,0.4,0.4\n1,0.3,0.7,0.7\n",
    );
    assert_one_line_error(
        &out,
        &["line 1", "columns 3 and 4 (`p1`, `p01`) both give `p1`"],
    );
    let out = metrics(
        "multilabel",
        "y0,y1,s0,s1,y1\n1,0,0.9,0.1,0\n0,1,0.2,0.6,1\n",
    );
    assert_one_line_error(&out, &["columns 2 and 5 (`y1`, `y1`) both give `y1`"]);
    // The predictions.csv format: a class's score or target column twice.
    let head = "patient_id,target_BENIGN,target_MALIGNANT,score_BENIGN,score_MALIGNANT";
    let out = metrics(
        "binary",
        &format!("{head},score_MALIGNANT\nP1,0,1,0.2,0.8,0.8\nP2,1,0,0.6,0.4,0.4\n"),
    );
    assert_one_line_error(
        &out,
        &["column `score_MALIGNANT` appears 2 times (columns 5, 6)"],
    );
    let out = metrics(
        "multilabel",
        &format!("{head},target_BENIGN\nP1,0,1,0.2,0.8,0\nP2,1,0,0.6,0.4,1\n"),
    );
    assert_one_line_error(
        &out,
        &["column `target_BENIGN` appears 2 times (columns 2, 6)"],
    );
    // Two-hot and zero-hot binary rows name the line and both columns.
    for (row, value) in [("P2,1,1,0.6,0.4", "1"), ("P2,0,0,0.6,0.4", "0")] {
        let out = metrics(
            "binary",
            &format!("{head}\nP1,0,1,0.2,0.8\n{row}\nP3,1,0,0.7,0.3\n"),
        );
        assert_one_line_error(
            &out,
            &[
                "line 3, columns `target_BENIGN` and `target_MALIGNANT`",
                &format!("both are {value}"),
                "exactly one target 1",
            ],
        );
    }
    // Multiclass: the target columns concerned are named.
    let out = metrics("multiclass", &format!("{head}\nP1,1,1,0.2,0.8\n"));
    assert_one_line_error(&out, &["line 2", "(`target_BENIGN`, `target_MALIGNANT`)"]);
    // A multiclass row that is not a probability vector is named by its file line.
    let out = metrics("multiclass", "label,p0,p1\n0,0.6,0.4\n1,0.3,0.9\n");
    assert_one_line_error(&out, &["line 3", "sums to"]);
    // The formats that were valid still are.
    ok(&metrics(
        "binary",
        &format!("{head}\nP1,0,1,0.2,0.8\nP2,1,0,0.6,0.4\n"),
    ));
}

/// Copies checkpoint `from` to `to` with its first floating-point tensor (by name) set to
/// NaN; returns that tensor's name.
fn poison(from: &Path, to: &Path) -> String {
    let ck = read_checkpoint(from, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut tensors: BTreeMap<String, Tensor> = ck.tensors.into_iter().collect();
    let name = tensors
        .iter()
        .find(|(_, t)| t.dtype().is_float())
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| panic!("no float tensor"));
    let t = &tensors[&name];
    let nan = Tensor::full(f32::NAN, t.dims(), &Device::Cpu)
        .and_then(|x| x.to_dtype(t.dtype()))
        .unwrap_or_else(|e| panic!("{e}"));
    tensors.insert(name.clone(), nan);
    write_safetensors(to, &tensors, &ck.metadata).unwrap_or_else(|e| panic!("{e}"));
    name
}

#[test]
fn runs_of_the_wrong_kind_bad_task_columns_and_nan_weights_are_named() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    pipeline(root);
    let (data, pre, ft) = (root.join("data"), root.join("pre"), root.join("ft"));
    let out_dir = s(&root.join("out"));

    // evaluate takes fine-tuning runs only.
    let out = miram(&["evaluate", &s(&pre), "--out", &out_dir]);
    assert_one_line_error(
        &out,
        &[
            &s(&pre),
            "is a pre-training run",
            "evaluate takes fine-tuning runs (made by `miram finetune`)",
        ],
    );
    let out = miram(&["evaluate", &s(&data), "--out", &out_dir]);
    assert_one_line_error(
        &out,
        &[
            &s(&data),
            "is not a run folder",
            "evaluate takes fine-tuning runs",
        ],
    );

    // reconstruct takes pre-trained models only, as a folder or as a file.
    let recon = |model: &Path| {
        miram(&[
            "reconstruct",
            "--model",
            &s(model),
            "--data",
            &s(&data),
            "--out",
            &out_dir,
        ])
    };
    assert_one_line_error(
        &recon(&ft),
        &[
            &s(&ft),
            "is a fine-tuning run",
            "reconstruct takes pre-training runs",
        ],
    );
    let best = ft.join("checkpoints").join("best.safetensors");
    assert_one_line_error(
        &recon(&best),
        &[
            &s(&best),
            "written by a fine-tuning run",
            "reconstruct takes a pre-trained model",
        ],
    );
    assert_one_line_error(&recon(&data), &["is not a run folder"]);
    ok(&recon(&pre));

    // NaN weights: refused naming the checkpoint and the tensor, and no PNG is written.
    let bad = root.join("nan.safetensors");
    let name = poison(&pre.join("model.safetensors"), &bad);
    let nan_out = root.join("nan-out");
    let out = miram(&[
        "reconstruct",
        "--model",
        &s(&bad),
        "--data",
        &s(&data),
        "--out",
        &s(&nan_out),
    ]);
    assert_one_line_error(&out, &[&s(&bad), &format!("tensor `{name}`"), "non-finite"]);
    assert!(!nan_out.exists(), "reconstruct wrote {}", nan_out.display());
    // The same for a fine-tuned classifier given to evaluate.
    poison(&best.clone(), &best);
    let out = miram(&["evaluate", &s(&ft), "--out", &out_dir]);
    assert_one_line_error(&out, &[&s(&best), "tensor `", "non-finite"]);

    // A task column that the CSVs do not have is named, with the columns that exist.
    #[rustfmt::skip]
    let out = miram(&["--quiet", "finetune", "--data", &s(&data), "--task", "column:nonexistent",
        "--epochs", "1", "--out", &s(&root.join("ft-bad"))]);
    assert_one_line_error(
        &out,
        &[
            "task column \"nonexistent\"",
            "no such column",
            "\"mass shape\"",
            "\"calc type\"",
            "\"breast_density\"",
        ],
    );
}

#[test]
fn bench_refuses_a_batch_that_does_not_fit_and_out_of_range_arguments() {
    // Ten million images of the paper preset: petabytes, on any machine.
    let out = miram(&[
        "bench", "--preset", "paper", "--batch", "10000000", "--steps", "1",
    ]);
    assert_one_line_error(
        &out,
        &[
            "batch 10000000",
            "needs about",
            "GiB",
            "is available",
            "a batch of at most",
        ],
    );
    assert_one_line_error(
        &miram(&["bench", "--batch", "0"]),
        &["--batch 0", "at least 1"],
    );
    assert_one_line_error(
        &miram(&["bench", "--steps", "0"]),
        &["--steps 0", "1 to 100000"],
    );
    assert_one_line_error(&miram(&["bench", "--steps", "100001"]), &["--steps 100001"]);
    assert_one_line_error(
        &miram(&["bench", "--threads", "0"]),
        &["--threads 0", "give 1 to"],
    );
    assert_one_line_error(
        &miram(&["bench", "--threads", "100000"]),
        &["--threads 100000", "cores"],
    );
}

#[test]
fn bench_times_each_mode_with_its_matrix_product_figures() {
    for (flag, mode) in [
        (None, "pretrain"),
        (Some("--single-scale"), "single-scale"),
        (Some("--finetune"), "finetune"),
    ] {
        let mut args = vec!["bench", "--preset", "micro", "--batch", "2", "--steps", "1"];
        args.extend(flag);
        // The default output: one JSON line on standard output, the table on standard error.
        let out = miram(&args);
        let err = ok(&out);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let plain: serde_json::Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        for needle in ["mode", "matrix products / step", "GFLOP/s", mode] {
            assert!(err.contains(needle), "`{needle}` not in the table: {err}");
        }
        // --json-lines: one `result` event with the same fields.
        args.push("--json-lines");
        let out = miram(&args);
        ok(&out);
        let stdout = text(&out.stdout);
        let result: serde_json::Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "result")
            .unwrap_or_else(|| panic!("no result event: {stdout}"));
        for r in [&plain, &result] {
            assert_eq!(r["mode"], mode, "{r}");
            assert_eq!(r["preset"], "micro");
            assert_eq!(r["batch"], 2);
            let share = r["matmul_share"].as_f64().unwrap_or(f64::NAN);
            assert!(share > 0.0 && share <= 1.0, "{mode}: share {share}");
            for key in [
                "matmul_gflops",
                "step_gflops",
                "gflop_per_step",
                "step_ms_median",
            ] {
                let v = r[key].as_f64().unwrap_or(f64::NAN);
                assert!(v > 0.0, "{mode}: {key} = {}", r[key]);
            }
            // The peak is measured on every CPU that has AVX2 and FMA, and only there.
            let peak = &r["fma_peak_gflops"];
            if miram_test_support::cpu_has_avx2_fma() {
                assert!(peak.as_f64().unwrap_or(0.0) > 0.0, "{mode}: peak {peak}");
            } else {
                assert!(peak.is_null(), "{mode}: peak {peak}");
            }
            let scales = r["config"]["scales"].as_array().map_or(0, Vec::len);
            match mode {
                "finetune" => {
                    assert!(r["masked_encoder_ms_median"].is_null(), "{r}");
                    assert_eq!(r["classes"], 2);
                }
                _ => {
                    assert!(r["masked_encoder_ms_median"].as_f64().unwrap_or(0.0) > 0.0);
                    assert_eq!(scales, if mode == "single-scale" { 1 } else { 2 }, "{r}");
                }
            }
        }
    }
    // The two modes exclude each other.
    let out = miram(&["bench", "--single-scale", "--finetune"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
