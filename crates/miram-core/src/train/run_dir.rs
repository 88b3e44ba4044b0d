//! The run folder: `config.json` (the resolved configuration), `log.jsonl` (one JSON object
//! per step and per evaluation) and `checkpoints/` (written atomically, the last K kept,
//! plus `best.safetensors`).

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{first_non_finite, write_safetensors};
use crate::train::events::Event;
use crate::{Error, Result};

/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".lock";

/// The prefix of the folders a restart moves an earlier run into.
pub const PREVIOUS_PREFIX: &str = "previous-";

/// What a run was trained on, recorded in its train states (metadata `data`) and in
/// `data.json`; a resume on data with another identity is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// The dataset folder, when the data comes from one.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// The dataset records (CSV rows) the samples come from, when known.
    #[serde(default)]
    pub records: Option<usize>,
    /// The training samples (the engine sets it: the training dataset's length).
    pub samples: usize,
    /// A SHA-256 of what the samples are made of (see `PreparedData::identity`), when known.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl DataIdentity {
    /// What differs from `now` in ways that change the samples, as `what: was -> now`
    /// (fields one side does not know are not compared; the folder alone is not a
    /// difference: the same records moved elsewhere are the same data).
    pub fn differences(&self, now: &Self) -> Vec<String> {
        let mut d = Vec::new();
        if self.samples != now.samples {
            d.push(format!(
                "training samples: {} -> {}",
                self.samples, now.samples
            ));
        }
        if let (Some(a), Some(b)) = (self.records, now.records) {
            if a != b {
                d.push(format!("dataset records: {a} -> {b}"));
            }
        }
        if let (Some(a), Some(b)) = (&self.fingerprint, &now.fingerprint) {
            if a != b {
                d.push(format!(
                    "records and crop settings (SHA-256): {} -> {}",
                    &a[..a.len().min(12)],
                    &b[..b.len().min(12)]
                ));
            }
        }
        if !d.is_empty() {
            if let (Some(a), Some(b)) = (&self.root, &now.root) {
                if a != b {
                    d.push(format!("data folder: {} -> {}", a.display(), b.display()));
                }
            }
        }
        d
    }
}

/// A run folder, held by this process for as long as any clone of it lives: an exclusive
/// OS lock on `.lock` (which holds the pid) keeps a second process out; a killed process's
/// lock goes with it.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    _lock: Option<Arc<std::fs::File>>,
    started_over: Arc<AtomicBool>,
    removed: Arc<Vec<PathBuf>>,
}

fn not_a_folder(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "is a file, not a folder; give a folder (new or a run folder) for the run",
        ),
    )
}

/// True for the temporary files of [`crate::checkpoint::write_atomic`]: `.{name}.tmp-{pid}`.
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(head, pid)| {
            head.len() > 1 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// `YYYYMMDDTHHMMSSZ` of a time (UTC).
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl RunDir {
    /// Opens `root` as a run folder, creating it and its `checkpoints/` when needed, and
    /// takes its lock: another process holding it is an [`Error::RunLocked`] naming its pid.
    /// Temporary files left by a killed write (`.{name}.tmp-{pid}`) are removed
    /// ([`RunDir::removed_temp_files`]).
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.exists() && !root.is_dir() {
            return Err(not_a_folder(&root));
        }
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let ck = root.join("checkpoints");
        if ck.exists() && !ck.is_dir() {
            return Err(not_a_folder(&ck));
        }
        std::fs::create_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
        let lock_path = root.join(LOCK_FILE);
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".into());
                return Err(Error::RunLocked {
                    path: root,
                    lock: lock_path,
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        lock.set_len(0).map_err(|e| Error::io(&lock_path, e))?;
        lock.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io(&lock_path, e))?;
        writeln!(lock, "{}", std::process::id()).map_err(|e| Error::io(&lock_path, e))?;
        let mut removed = Vec::new();
        for dir in [&root, &ck] {
            for e in std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|e| e.ok())
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_temp_file(&name) && e.path().is_file() {
                    std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
                    removed.push(e.path());
                }
            }
        }
        Ok(Self {
            root,
            _lock: Some(Arc::new(lock)),
            started_over: Arc::new(AtomicBool::new(false)),
            removed: Arc::new(removed),
        })
    }

    /// Joins a run folder that another process of the same run holds (data parallelism: rank
    /// 0 creates and locks it, the other ranks read its checkpoints and write nothing). No
    /// lock is taken and [`RunDir::start_over`] does nothing.
    pub fn attach(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(not_a_folder(&root));
        }
        Ok(Self {
            root,
            _lock: None,
            started_over: Arc::new(AtomicBool::new(true)),
            removed: Arc::new(Vec::new()),
        })
    }

    /// The temporary files of interrupted writes removed when the folder was opened.
    pub fn removed_temp_files(&self) -> &[PathBuf] {
        &self.removed
    }

    /// Makes the folder clean for a new run: every file and folder of an earlier run (all but
    /// the lock and earlier `previous-*` folders) moves into `previous-<UTC time>/`, whose
    /// path is returned (none when there was nothing to move). Once per opening: later calls
    /// on this folder (or its clones) do nothing, so what the new run wrote stays.
    pub fn start_over(&self) -> Result<Option<PathBuf>> {
        if self.started_over.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        let ck = self.checkpoints();
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(&self.root, e))?
            .filter_map(|e| e.ok())
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == LOCK_FILE || name.starts_with(PREVIOUS_PREFIX) {
                continue;
            }
            let p = e.path();
            if p == ck
                && std::fs::read_dir(&ck)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false)
            {
                continue;
            }
            entries.push(p);
        }
        let moved = self.move_aside(&entries)?;
        std::fs::create_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
        Ok(moved)
    }

    /// The outputs of an earlier run found where a new run starts without a checkpoint to
    /// resume (a log with steps, final or best weights, test results), moved into
    /// `previous-<UTC time>/` so that the new run neither mixes with them nor overwrites
    /// them. Returns that folder, none when there was nothing.
    pub fn set_aside_leftovers(&self) -> Result<Option<PathBuf>> {
        let log = self.log_path();
        let has_steps = std::fs::read_to_string(&log).is_ok_and(|t| {
            t.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some()
            })
        });
        let mut found = Vec::new();
        if has_steps {
            found.push(log);
        }
        for rel in [
            "model.safetensors",
            "metrics.json",
            "predictions.csv",
            "checkpoints/best.safetensors",
        ] {
            let p = self.root.join(rel);
            if p.is_file() {
                found.push(p);
            }
        }
        self.move_aside(&found)
    }

    /// Moves `paths` (inside the folder) into a new `previous-<UTC time>/`, keeping their
    /// places relative to the folder.
    fn move_aside(&self, paths: &[PathBuf]) -> Result<Option<PathBuf>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let stamp = utc_stamp(std::time::SystemTime::now());
        let mut dest = self.root.join(format!("{PREVIOUS_PREFIX}{stamp}"));
        let mut n = 2;
        while dest.exists() {
            dest = self.root.join(format!("{PREVIOUS_PREFIX}{stamp}-{n}"));
            n += 1;
        }
        std::fs::create_dir(&dest).map_err(|e| Error::io(&dest, e))?;
        for p in paths {
            let rel = p.strip_prefix(&self.root).unwrap_or(p);
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::rename(p, &to).map_err(|e| Error::io(p, e))?;
        }
        Ok(Some(dest))
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

    /// Writes `value` as `name` (JSON, atomically) in the folder.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let s = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Train(format!("{name}: {e}")))?;
        let p = self.root.join(name);
        crate::checkpoint::write_atomic(&p, s.as_bytes())?;
        Ok(p)
    }

    /// Drops the logged steps after `step` (a resumed run logs them again), and any line
    /// that is not a JSON object (the partial last line of a killed write).
    pub fn truncate_log_after(&self, step: u64) -> Result<()> {
        let p = self.log_path();
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Ok(());
        };
        // A line cut by a kill mid-write (or anything else that is not a JSON object) goes.
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(serde_json::Value::Object(v)) => v
                    .get("step")
                    .and_then(|s| s.as_u64())
                    .is_none_or(|s| s <= step),
                _ => false,
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
        refuse_non_finite(&path, tensors)?;
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
        refuse_non_finite(&path, tensors)?;
        write_safetensors(&path, tensors, metadata)?;
        Ok(path)
    }
}

/// An [`Error::NonFiniteTensor`] when a tensor about to be written as `path` holds NaN or
/// infinite values: no checkpoint with one is ever written.
pub fn refuse_non_finite(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    match first_non_finite(tensors.iter())? {
        Some(tensor) => Err(Error::NonFiniteTensor {
            path: path.to_path_buf(),
            tensor,
        }),
        None => Ok(()),
    }
}
