//! The run folder: `config.json` (the resolved configuration), `log.jsonl` (one JSON object
//! per step and per evaluation) and `checkpoints/` (written atomically, the last K kept,
//! plus `best.safetensors`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;

use crate::checkpoint::write_safetensors;
use crate::train::events::Event;
use crate::{Error, Result};

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens `root` as a run folder, creating it and its `checkpoints/` when needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let ck = root.join("checkpoints");
        std::fs::create_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
        Ok(Self { root })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The checkpoint folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }

    /// Writes the resolved configuration as `config.json` (atomically).
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<()> {
        let s = serde_json::to_string_pretty(config)
            .map_err(|e| Error::Train(format!("config: {e}")))?;
        crate::checkpoint::write_atomic(&self.root.join("config.json"), s.as_bytes())
    }

    /// Appends one event to `log.jsonl`.
    pub fn log(&self, event: &Event) -> Result<()> {
        let p = self.log_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        let mut line =
            serde_json::to_string(event).map_err(|e| Error::Train(format!("log: {e}")))?;
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&p, e))
    }

    /// Drops the logged steps after `step` (a resumed run logs them again).
    pub fn truncate_log_after(&self, step: u64) -> Result<()> {
        let p = self.log_path();
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Ok(());
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                v.get("step")
                    .and_then(|s| s.as_u64())
                    .is_none_or(|s| s <= step)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        crate::checkpoint::write_atomic(&p, out.as_bytes())
    }

    /// The checkpoint file of `step`.
    pub fn step_checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints()
            .join(format!("step-{step:08}.safetensors"))
    }

    /// The best checkpoint.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("best.safetensors")
    }

    /// Step checkpoints on disk, oldest first.
    pub fn step_checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(self.checkpoints())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name
                    .strip_prefix("step-")?
                    .strip_suffix(".safetensors")?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// The newest step checkpoint.
    pub fn latest_checkpoint(&self) -> Option<(u64, PathBuf)> {
        self.step_checkpoints().pop()
    }

    /// Writes the checkpoint of `step` atomically and keeps only the newest `keep_last`.
    pub fn save_step(
        &self,
        step: u64,
        tensors: &BTreeMap<String, Tensor>,
        metadata: &BTreeMap<String, String>,
        keep_last: usize,
    ) -> Result<PathBuf> {
        let path = self.step_checkpoint(step);
        write_safetensors(&path, tensors, metadata)?;
        let all = self.step_checkpoints();
        let excess = all.len().saturating_sub(keep_last.max(1));
        for (_, p) in all.into_iter().take(excess) {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        Ok(path)
    }

    /// Writes `best.safetensors` atomically.
    pub fn save_best(
        &self,
        tensors: &BTreeMap<String, Tensor>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<PathBuf> {
        let path = self.best_checkpoint();
        write_safetensors(&path, tensors, metadata)?;
        Ok(path)
    }
}
