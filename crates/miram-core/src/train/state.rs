//! Train-state checkpoints: the model's tensors under their reference names, the optimiser
//! moments under `optimizer.exp_avg.{name}` / `optimizer.exp_avg_sq.{name}`, and metadata
//! (`format`, `config`, `train_config`, `step`, `kind`, ...). One file, written atomically,
//! so a crash leaves the previous checkpoint loadable. Every random stream of a run is keyed
//! by `(seed, step)` (see `miram_rand::Rng::keyed`), so the step restores the generator state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::checkpoint::read_checkpoint;
use crate::optim::AdamW;
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
