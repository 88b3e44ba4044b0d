//! Run folders as a user of `miram pretrain` / `miram finetune` meets them, on a small
//! generated dataset: `--restart` moves the previous run aside and never mixes with it, a
//! second process on the same folder is refused naming the holder, a resume may change the
//! loader threads, settings out of range name their key and range, an `--out` that is a file
//! is named, and an optimiser state that overflows stops the run before anything is saved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;
use support::*;

/// A small generated dataset.
fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    let cfg = dir.join("synth.toml");
    std::fs::write(
        &cfg,
        "patients = 6\nimage_width = 256\nimage_height = 416\n",
    )
    .unwrap();
    ok(&miram(&[
        "--quiet",
        "synth",
        "--out",
        &root.to_string_lossy(),
        "--config",
        &cfg.to_string_lossy(),
        "--seed",
        "3",
    ]));
    root
}

fn pretrain(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let (d, o) = (s(data), s(out));
    let mut args = vec![
        "pretrain",
        "--data",
        &d,
        "--preset",
        "micro",
        "--batch-size",
        "4",
        "--accum-iter",
        "1",
        "--out",
        &o,
    ];
    args.extend_from_slice(extra);
    miram(&args)
}

fn logged_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["event"] == "step").then(|| v["step"].as_u64().unwrap())
        })
        .collect()
}

fn checkpoint_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn previous_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("previous-"))
        .map(|e| e.path())
        .collect()
}

#[test]
fn restart_moves_the_previous_run_aside_and_resume_continues_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    ok(&pretrain(&data, &run, &["--epochs", "3"]));
    let long = logged_steps(&run);
    assert!(long.len() >= 6, "{long:?}");
    assert!(run.join("model.safetensors").exists());

    // A shorter restart, stopped after one step.
    let err = ok(&pretrain(
        &data,
        &run,
        &["--epochs", "1", "--restart", "--stop-after", "1"],
    ));
    let prev = previous_folders(&run);
    assert_eq!(prev.len(), 1, "{prev:?}");
    assert!(
        err.contains("--restart") && err.contains(&s(&prev[0])),
        "{err}"
    );
    assert_eq!(checkpoint_names(&run), ["step-00000001.safetensors"]);
    assert_eq!(logged_steps(&run), [1]);
    assert!(!run.join("model.safetensors").exists());
    assert!(prev[0].join("model.safetensors").exists());
    assert_eq!(logged_steps(&prev[0]), long);

    // Resuming continues the restarted run to its own end.
    ok(&pretrain(&data, &run, &["--epochs", "1"]));
    let steps = logged_steps(&run);
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    assert!(steps.len() < long.len());
    assert!(run.join("model.safetensors").exists());
}

#[test]
fn a_resume_may_change_the_loader_threads_but_not_the_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    ok(&pretrain(
        &data,
        &run,
        &["--epochs", "2", "--stop-after", "2"],
    ));
    assert_error_line(
        &pretrain(&data, &run, &["--epochs", "2", "--blr", "0.001"]),
        &[
            "another configuration",
            "blr: 0.00015 -> 0.001",
            "--restart",
        ],
    );
    ok(&pretrain(&data, &run, &["--epochs", "2", "--workers", "0"]));
    assert!(run.join("model.safetensors").exists());
}

#[test]
fn a_second_process_on_a_run_folder_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    // A long run holds the folder.
    let mut first = Command::new(env!("CARGO_BIN_EXE_miram"))
        .args([
            "--quiet",
            "pretrain",
            "--data",
            &s(&data),
            "--preset",
            "micro",
            "--batch-size",
            "4",
            "--accum-iter",
            "1",
            "--epochs",
            "100000",
            "--out",
            &s(&run),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    // Wait until it has taken the lock (it writes its pid there) and started training.
    loop {
        let held = std::fs::read_to_string(run.join(".lock")).unwrap_or_default();
        if held.trim() == pid && run.join("log.jsonl").exists() {
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the first run ended early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = pretrain(&data, &run, &["--epochs", "100000"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_error_line(&second, &["in use by process", &pid, &s(&run)]);
    // A killed holder's lock does not block: the folder resumes, and the log keeps no line
    // cut by the kill.
    ok(&pretrain(
        &data,
        &run,
        &["--epochs", "100000", "--stop-after", "1"],
    ));
    let lines = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    for l in lines.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn settings_out_of_range_and_a_file_as_out_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    assert_error_line(
        &pretrain(&data, &run, &["--blr=-1"]),
        &["pretrain.blr = -1: must be > 0"],
    );
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[pretrain]\nbetas = [1.5, 0.95]\n[pretrain.model]\nmask_ratio = 0.0\n[data]\nbackground_per_image = 1000000\n",
    )
    .unwrap();
    assert_error_line(
        &pretrain(&data, &run, &["--config", &s(&cfg)]),
        &[
            "pretrain.betas.0 = 1.5: must be in [0, 1)",
            "pretrain.model.mask_ratio = 0: must be in (0, 1)",
            "data.background_per_image = 1000000: must be in [0, 64]",
        ],
    );
    assert_error_line(
        &miram(&[
            "finetune",
            "--data",
            &s(&data),
            "--preset",
            "micro",
            "--lr=-1",
            "--out",
            &s(&run),
        ]),
        &["finetune.lr = -1: must be > 0"],
    );
    assert!(!run.exists(), "nothing is written for a refused setting");
    let file = tmp.path().join("out.txt");
    std::fs::write(&file, "keep me").unwrap();
    assert_error_line(
        &pretrain(&data, &file, &["--epochs", "1"]),
        &[&s(&file), "not a folder"],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn an_overflowing_optimiser_state_stops_the_run_and_is_never_saved() {
    // A loss weight so large that squared gradients overflow f32: the loss stays finite,
    // the AdamW second moments would hold inf.
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("run");
    let cfg = tmp.path().join("heavy.toml");
    std::fs::write(
        &cfg,
        "[pretrain]\ncheckpoint_every = 1\n\n[[pretrain.model.scales]]\nscale = 1\nloss_on = \"masked\"\nweight = 1.0\nattention = { kind = \"softmax\" }\n\n[[pretrain.model.scales]]\nscale = 2\nloss_on = \"all\"\nweight = 1e30\nattention = { kind = \"softmax\" }\n",
    )
    .unwrap();
    let out = pretrain(&data, &run, &["--epochs", "2", "--config", &s(&cfg)]);
    assert_error_line(&out, &["non-finite value in exp_avg_sq.", "after step 1"]);
    assert!(checkpoint_names(&run).is_empty());
    assert!(!run.join("model.safetensors").exists());
}

#[test]
fn finetune_restart_moves_the_previous_run_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = tmp.path().join("ft");
    let finetune = |extra: &[&str]| {
        let (d, o) = (s(&data), s(&run));
        let mut args = vec![
            "finetune",
            "--data",
            &d,
            "--preset",
            "micro",
            "--batch-size",
            "4",
            "--bootstrap",
            "10",
            "--out",
            &o,
        ];
        args.extend_from_slice(extra);
        miram(&args)
    };
    ok(&finetune(&["--epochs", "2"]));
    let first = logged_steps(&run);
    assert!(run.join("metrics.json").exists());
    let err = ok(&finetune(&["--epochs", "1", "--restart"]));
    let prev = previous_folders(&run);
    assert_eq!(prev.len(), 1, "{prev:?}");
    assert!(err.contains(&s(&prev[0])), "{err}");
    assert!(prev[0].join("metrics.json").exists());
    assert!(prev[0].join("checkpoints/best.safetensors").exists());
    assert_eq!(logged_steps(&prev[0]), first);
    let now = logged_steps(&run);
    assert!(now.len() < first.len(), "{now:?} vs {first:?}");
    assert_eq!(now, (1..=now.len() as u64).collect::<Vec<_>>());
}
