//! Data parallelism over MPI (a build with `--features mpi`, OpenMPI's `mpirun` on the
//! path): two processes at batch 2 train the model one process trains at batch 4 (same seed,
//! same global batch), and a run whose rank is killed stops with an error and resumes from
//! its last checkpoint to the weights of an uninterrupted run.
#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Relative tolerance of the step losses between 1 and 2 processes (measured: 3e-8; the sums
/// of the all-reduce and of one process's batch run in another order).
const LOSS_RTOL: f64 = 1e-5;
/// Absolute tolerance of the weights after the run (measured: 1.1e-6 after 9 AdamW steps on
/// weights up to 1).
const WEIGHT_ATOL: f32 = 1e-4;

/// `mpirun -np <np>` of the test's `miram` with `args`; `--allow-run-as-root` where the
/// tests run as root (CI), `--oversubscribe` for machines with fewer cores than ranks.
fn mpirun(np: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    if is_root() {
        c.arg("--allow-run-as-root");
    }
    c.args(["--oversubscribe", "-np", &np.to_string()])
        .arg(env!("CARGO_BIN_EXE_miram"))
        .args(args);
    c
}

/// Whether the tests run as root (OpenMPI refuses root without `--allow-run-as-root`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(mut c: Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("mpirun: {e} (is OpenMPI installed?)"))
}

/// The step losses of a run folder's log, by step (the last record of each step).
fn losses(run: &Path) -> BTreeMap<u64, f64> {
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "step")
        .map(|v| {
            (
                v["step"].as_u64().unwrap_or(0),
                v["loss"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// The tensors of a model file as `f32` values.
fn weights(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{e}"));
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let f: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, f)
        })
        .collect()
}

fn max_weight_diff(a: &Path, b: &Path) -> f32 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    wa.iter()
        .flat_map(|(k, va)| va.iter().zip(&wb[k]).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

/// Borrowed arguments.
fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A small generated dataset.
fn dataset(root: &Path) -> String {
    let data = root.join("data");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "--seed", "3", "synth", "--out", &s(&data), "--patients", "40"]));
    s(&data)
}

/// The arguments of a `micro` pre-training at `batch` per process into `out`.
fn pretrain_args<'a>(data: &'a str, out: &'a str, batch: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--quiet",
        "--seed",
        "5",
        "pretrain",
        "--data",
        data,
        "--preset",
        "micro",
        "--out",
        out,
        "--epochs",
        epochs,
        "--warmup-epochs",
        "1",
        "--batch-size",
        batch,
        "--workers",
        "1",
    ]
}

#[test]
fn two_processes_train_the_model_of_one_with_the_same_global_batch() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dataset(tmp.path());
    let (one, two) = (s(&tmp.path().join("one")), s(&tmp.path().join("two")));
    ok(&miram(&pretrain_args(&data, &one, "4", "3")));
    ok(&run(mpirun(2, &pretrain_args(&data, &two, "2", "3"))));
    let (a, b) = (losses(Path::new(&one)), losses(Path::new(&two)));
    assert!(a.len() >= 6, "only {} steps", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (step, la) in &a {
        let lb = b[step];
        assert!(
            ((la - lb) / la).abs() < LOSS_RTOL,
            "step {step}: one process {la}, two {lb}"
        );
    }
    let d = max_weight_diff(
        &Path::new(&one).join("model.safetensors"),
        &Path::new(&two).join("model.safetensors"),
    );
    assert!(d < WEIGHT_ATOL, "weights differ by {d}");
    // Rank 0 alone writes: one log record per step.
    let log = std::fs::read_to_string(Path::new(&two).join("log.jsonl")).unwrap_or_default();
    assert_eq!(
        log.lines().filter(|l| l.contains("\"step\"")).count(),
        b.len()
    );
}

/// The processes of the job started by `child` (mpirun): the `miram` processes whose
/// environment has `OMPI_COMM_WORLD_RANK`, by rank.
fn ranks_of(child: &Child) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(child.id()) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        for var in env.split(|&b| b == 0) {
            if let Some(r) = var.strip_prefix(b"OMPI_COMM_WORLD_RANK=") {
                if let Ok(r) = String::from_utf8_lossy(r).parse() {
                    out.insert(r, pid);
                }
            }
        }
    }
    out
}

#[test]
fn a_killed_rank_stops_the_others_and_the_run_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dataset(tmp.path());
    let cfg = tmp.path().join("every-step.toml");
    std::fs::write(&cfg, "[pretrain]\ncheckpoint_every = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = s(&cfg);
    let (whole, killed) = (s(&tmp.path().join("whole")), s(&tmp.path().join("killed")));
    let with_cfg = |out: &str| -> Vec<String> {
        let mut a: Vec<String> = pretrain_args(&data, out, "2", "12")
            .into_iter()
            .map(String::from)
            .collect();
        a.extend(["--config".to_string(), cfg.clone()]);
        a
    };
    let (w, k) = (with_cfg(&whole), with_cfg(&killed));
    ok(&run(mpirun(2, &as_refs(&w))));

    // The same run, rank 1 killed once a few steps are checkpointed.
    let mut child = mpirun(2, &as_refs(&k))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("mpirun: {e}"));
    let started = Instant::now();
    let ckpt_dir = Path::new(&killed).join("checkpoints");
    loop {
        let n = std::fs::read_dir(&ckpt_dir).map_or(0, |d| d.count());
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint in 2 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks = ranks_of(&child);
    let victim = ranks
        .get(&1)
        .copied()
        .unwrap_or_else(|| panic!("no rank 1 among {ranks:?}"));
    let _ = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    // The others stop, with an error, within a bounded time.
    let killed_at = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break st;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "the surviving rank still runs 60 s after rank 1 was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "mpirun succeeded although rank 1 was killed"
    );
    let done_before = losses(Path::new(&killed)).len();

    // Resuming finishes the run, with the weights of the uninterrupted one.
    ok(&run(mpirun(2, &as_refs(&k))));
    let (lw, lk) = (losses(Path::new(&whole)), losses(Path::new(&killed)));
    assert!(done_before < lw.len(), "the kill came after the last step");
    assert_eq!(lw, lk, "the resumed run logged other losses");
    let d = max_weight_diff(
        &Path::new(&whole).join("model.safetensors"),
        &Path::new(&killed).join("model.safetensors"),
    );
    assert_eq!(d, 0.0, "a resumed run must end on the same weights");
}
