//! Train-state checkpoints: the model's tensors under their reference names, the optimiser
//! moments under `optimizer.exp_avg.{name}` / `optimizer.exp_avg_sq.{name}`, and metadata
//! (`format`, `config`, `train_config`, `step`, `kind`, ...). One file, written atomically,
//! so a crash leaves the previous checkpoint loadable. Every random stream of a run is keyed
//! by `(seed, step)` (see `miram_rand::Rng::keyed`), so the step restores the generator state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::checkpoint::{first_non_finite, read_checkpoint};
use crate::optim::AdamW;
use crate::train::run_dir::RunDir;
use crate::{Error, Result};

/// The `format` metadata of train-state checkpoints.
pub const TRAIN_STATE_FORMAT: &str = "miram-train-state-v1";

/// The prefix of optimiser tensors.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// A train state read back.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// The file.
    pub path: PathBuf,
    /// Steps done.
    pub step: u64,
    /// The model's tensors (optimiser tensors removed).
    pub model: HashMap<String, Tensor>,
    /// The optimiser's tensors without the prefix (`exp_avg.{name}`, ...).
    pub optimizer: HashMap<String, Tensor>,
    /// The metadata.
    pub metadata: BTreeMap<String, String>,
}

/// The tensors and metadata of a train state.
pub fn train_state(
    model: BTreeMap<String, Tensor>,
    opt: &AdamW,
    mut metadata: BTreeMap<String, String>,
    step: u64,
) -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
    let mut tensors = model;
    let (ot, om) = opt.state();
    for (k, v) in ot {
        tensors.insert(format!("{OPTIMIZER_PREFIX}{k}"), v);
    }
    metadata.extend(om);
    metadata.insert("format".into(), TRAIN_STATE_FORMAT.into());
    metadata.insert("step".into(), step.to_string());
    (tensors, metadata)
}

/// Reads a train state, checking its format and `kind`.
pub fn read_train_state(path: &Path, kind: &str, device: &Device) -> Result<TrainState> {
    let ck = read_checkpoint(path, device)?;
    let bad = |m: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message: m,
    };
    if ck.metadata.get("format").map(String::as_str) != Some(TRAIN_STATE_FORMAT) {
        return Err(bad(format!(
            "not a train state (format {:?}, expected {TRAIN_STATE_FORMAT})",
            ck.metadata.get("format")
        )));
    }
    if ck.metadata.get("kind").map(String::as_str) != Some(kind) {
        return Err(bad(format!(
            "a {:?} state, expected {kind}",
            ck.metadata.get("kind")
        )));
    }
    let step = ck
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no step in the metadata".into()))?;
    let mut model = HashMap::new();
    let mut optimizer = HashMap::new();
    for (k, v) in ck.tensors {
        match k.strip_prefix(OPTIMIZER_PREFIX) {
            Some(rest) => {
                optimizer.insert(rest.to_string(), v);
            }
            None => {
                model.insert(k, v);
            }
        }
    }
    Ok(TrainState {
        path: path.to_path_buf(),
        step,
        model,
        optimizer,
        metadata: ck.metadata,
    })
}

/// The train state a run resumes from: the newest step checkpoint of `run` that reads back
/// whole (a `kind` state, every tensor finite). Newer ones that do not (truncated by a crash,
/// corrupt, holding NaN) are renamed `*.corrupt`, each with a `warn`ing naming it. None when
/// the folder has no step checkpoint; an error listing every file when none is intact.
pub fn resume_state(
    run: &RunDir,
    kind: &str,
    device: &Device,
    warn: &mut dyn FnMut(String),
) -> Result<Option<TrainState>> {
    let all = run.step_checkpoints();
    let mut bad: Vec<(PathBuf, String)> = Vec::new();
    for (_, path) in all.iter().rev() {
        let read = read_train_state(path, kind, device).and_then(|st| {
            let tensors = st.model.iter().chain(st.optimizer.iter());
            match first_non_finite(tensors)? {
                Some(t) => Err(Error::NonFiniteTensor {
                    path: path.clone(),
                    tensor: t,
                }),
                None => Ok(st),
            }
        });
        match read {
            Ok(st) => {
                for (p, why) in bad {
                    let mut aside = p.clone().into_os_string();
                    aside.push(".corrupt");
                    let aside = PathBuf::from(aside);
                    std::fs::rename(&p, &aside).map_err(|e| Error::io(&p, e))?;
                    warn(format!(
                        "checkpoint {} is unreadable ({why}); it was renamed {} and the run resumes from {}",
                        p.display(),
                        aside.display(),
                        path.display()
                    ));
                }
                return Ok(Some(st));
            }
            Err(e) => bad.push((path.clone(), e.to_string())),
        }
    }
    if bad.is_empty() {
        return Ok(None);
    }
    Err(Error::Checkpoint {
        path: run.checkpoints(),
        message: format!(
            "no intact checkpoint to resume from: {}; start a new run with --restart (RunOptions::resume = false), which moves these aside",
            bad.iter()
                .map(|(p, why)| format!("{}: {why}", p.display()))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// The keys (dotted paths) whose values differ between a run's saved configuration (JSON)
/// and `now`, as `key: was -> now`, leaving out top-level `free` keys (settings that change
/// nothing a resume reproduces).
pub fn config_differences<T: serde::Serialize + serde::de::DeserializeOwned>(
    saved: &str,
    now: &T,
    free: &[&str],
) -> std::result::Result<Vec<String>, String> {
    // Both sides typed and written by the same serialiser, so equal values read the same
    // (an f32 written as text and read back as an f64 would not); a saved configuration of
    // another shape is compared as it is.
    let text = |v: &T| serde_json::to_string(v).map_err(|e| e.to_string());
    let saved = match serde_json::from_str::<T>(saved) {
        Ok(t) => text(&t)?,
        Err(_) => saved.to_string(),
    };
    let saved: serde_json::Value = serde_json::from_str(&saved).map_err(|e| e.to_string())?;
    let now: serde_json::Value = serde_json::from_str(&text(now)?).map_err(|e| e.to_string())?;
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", &saved, &mut a);
    flatten("", &now, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let top = k.split(['.', '[']).next().unwrap_or(k);
        if free.contains(&top) {
            continue;
        }
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
            out.push(format!("{k}: {} -> {}", show(x), show(y)));
        }
    }
    Ok(out)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (i, x) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}
