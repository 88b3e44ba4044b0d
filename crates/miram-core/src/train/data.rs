//! From a dataset root to what training needs: the index (built once, saved, reused), the
//! crop cache (every full mammogram decoded once) and the datasets of pre-training and of
//! each task, split the way the papers split (official test; 30% of train for validation,
//! stratified and grouped by patient).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use miram_cbis_ddsm::crop::{
    BackgroundConfig, CacheConfig, CropCache, CropConfig, CropProgress, Normalization,
};
use miram_cbis_ddsm::index::{load_or_build_index, DatasetIndex, IndexOptions, IndexProgress};
use miram_cbis_ddsm::loader::{unresolved_cases, CachedCrops, DroppedCase};
use miram_cbis_ddsm::records::{CaseRecord, OfficialSplit};
use miram_cbis_ddsm::split::{split, DatasetSplit, SplitConfig};
use miram_cbis_ddsm::tasks::{Task, TaskLabels};
use miram_cbis_ddsm::Layout;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::settings::Checks;
use crate::train::events::{Event, Observer, Phase};
use crate::train::run_dir::DataIdentity;
use crate::Result;

fn default_background() -> usize {
    2
}

fn default_normalization() -> Normalization {
    Normalization::PerCrop
}

/// Where the data is and how crops are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset root (a TCIA download, the Kaggle copy, or a generated dataset).
    pub root: PathBuf,
    /// How files are laid out (`Auto` detects it).
    #[serde(default)]
    pub layout: Layout,
    /// Where the index and the crop cache go (`<root>/.miram-cache` when unset).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Fraction added to the side of every lesion box (0: the authors' tight box).
    #[serde(default)]
    pub crop_margin: f32,
    /// Background patches per full image, for pre-training.
    #[serde(default = "default_background")]
    pub background_per_image: usize,
    /// How crops become model inputs. The default standardises each crop to zero mean and
    /// unit variance: scanned films differ widely in exposure and a lesion crop spans a
    /// narrow band of grey levels (a standard deviation of a few percent of the range), so
    /// the model sees the lesion's structure rather than the film's density. The
    /// normalisation is applied when crops are read, so changing it never rebuilds the cache.
    #[serde(default = "default_normalization")]
    pub normalization: Normalization,
    /// Refuse to fine-tune or evaluate when an official test case of the task cannot be used
    /// (its files missing or undecodable). By default such cases are left out with a warning
    /// naming each one, and the test-case count says how many were dropped.
    #[serde(default)]
    pub require_all_test_cases: bool,
}

impl DataConfig {
    /// The defaults for a dataset root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            layout: Layout::Auto,
            cache_dir: None,
            crop_margin: 0.0,
            background_per_image: default_background(),
            normalization: default_normalization(),
            require_all_test_cases: false,
        }
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.root.join(".miram-cache"))
    }

    /// The settings of the crop cache for crops of `size` pixels (and `hires_scale` times
    /// that): the authors' crops with this margin. The cache stores 16-bit pixels; the
    /// normalisation is applied when they are read (see [`DataConfig::preprocessing`]).
    pub fn cache_crop(&self, size: u32, hires_scale: Option<u32>) -> CropConfig {
        CropConfig {
            size,
            hires_scale,
            margin: self.crop_margin,
            ..CropConfig::paper()
        }
    }

    /// How model inputs of `size` pixels are made from this data: the cache's crops with
    /// this normalisation, no high-resolution crop (what a task's datasets give,
    /// `CachedCrops::preprocessing`).
    pub fn preprocessing(&self, size: u32) -> CropConfig {
        CropConfig {
            normalization: self.normalization,
            ..self.cache_crop(size, None)
        }
    }

    /// Checks the numeric settings; the error ([`crate::Error::InvalidSettings`]) names each
    /// key at fault with its allowed range.
    pub fn validate(&self) -> Result<()> {
        let mut c = Checks::new();
        c.real(
            "crop_margin",
            f64::from(self.crop_margin),
            Some((0.0, true)),
            Some((MAX_CROP_MARGIN, true)),
        );
        c.count(
            "background_per_image",
            self.background_per_image as u64,
            0,
            MAX_BACKGROUND_PER_IMAGE,
        );
        c.finish()
    }
}

/// The largest `crop_margin` (the box side grows by at most this fraction on each side).
pub const MAX_CROP_MARGIN: f64 = 4.0;

/// The most background patches drawn per full image.
pub const MAX_BACKGROUND_PER_IMAGE: u64 = 64;

/// A dataset ready for training: its index, records and crop cache.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// The configuration it was prepared with.
    pub config: DataConfig,
    /// Every resolved row and the unresolved ones.
    pub index: Arc<DatasetIndex>,
    /// The records of the index entries, in order.
    pub records: Vec<CaseRecord>,
    /// The crops.
    pub cache: Arc<CropCache>,
}

/// One task's labels, split and datasets.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// The labelled records.
    pub labels: TaskLabels,
    /// Train / validation / test (indices into `labels.items`).
    pub split: DatasetSplit,
    /// Training crops.
    pub train: Arc<CachedCrops>,
    /// Validation crops.
    pub validation: Arc<CachedCrops>,
    /// Test crops.
    pub test: Arc<CachedCrops>,
    /// The rows the task would use that are left out (files missing or undecodable when
    /// indexing, crops that could not be made), with the file and the cause.
    pub dropped: Vec<DroppedCase>,
}

impl TaskData {
    /// The official test cases of the task that are left out of `test`.
    pub fn dropped_test(&self) -> Vec<&DroppedCase> {
        self.dropped
            .iter()
            .filter(|d| d.split == OfficialSplit::Test)
            .collect()
    }
}

/// Indexes `cfg.root` (or reuses its saved index) and builds (or opens) the crop cache for
/// crops of `size` pixels, with high-resolution crops at `hires_scale` times when given.
pub fn prepare_data(
    cfg: &DataConfig,
    size: u32,
    hires_scale: Option<u32>,
    seed: u64,
    observer: &mut dyn Observer,
) -> Result<PreparedData> {
    let cache_dir = cfg.cache_dir();
    std::fs::create_dir_all(&cache_dir).map_err(|e| crate::Error::io(&cache_dir, e))?;
    let opts = IndexOptions {
        layout: cfg.layout,
        cache_path: Some(cache_dir.join("index.json")),
        // The crop cache's limits, so that an image it would refuse is reported when indexing.
        limits: miram_cbis_ddsm::DecodeLimits::mammogram(),
        ..IndexOptions::default()
    };
    let obs = Mutex::new(observer);
    let report = |what: &str, done: usize, total: usize| {
        if let Ok(mut o) = obs.lock() {
            o.event(&Event::Progress {
                phase: Phase::Data,
                what: what.to_string(),
                done: done as u64,
                total: total as u64,
            });
        }
    };
    let index = load_or_build_index(&cfg.root, &opts, &|p: IndexProgress| {
        report("index", p.done, p.total)
    })?;
    let mut cache_cfg = CacheConfig::new(&cache_dir).with_crop(cfg.cache_crop(size, hires_scale));
    cache_cfg.seed = seed;
    if cfg.background_per_image > 0 {
        cache_cfg = cache_cfg.with_background(BackgroundConfig {
            per_image: cfg.background_per_image,
            ..BackgroundConfig::default()
        });
    }
    let cache = CropCache::for_index(&index, &cache_cfg, &|p: CropProgress| {
        report("crops", p.done, p.total)
    })?;
    let records = index.entries.iter().map(|e| e.record.clone()).collect();
    Ok(PreparedData {
        config: cfg.clone(),
        index: Arc::new(index),
        records,
        cache: Arc::new(cache),
    })
}

impl PreparedData {
    /// What this data is, for the run folders trained on it: the dataset folder, the number
    /// of records, and a SHA-256 of the records and of the settings that make samples of
    /// them (crop margin, background patches, normalisation). A resume on data with
    /// another identity is refused.
    pub fn identity(&self) -> DataIdentity {
        let mut h = Sha256::new();
        // Records and plain settings serialise without failure.
        h.update(serde_json::to_vec(&self.records).unwrap_or_default());
        h.update(
            serde_json::to_vec(&(
                self.config.crop_margin,
                self.config.background_per_image,
                self.config.normalization,
            ))
            .unwrap_or_default(),
        );
        let digest = h.finalize();
        DataIdentity {
            root: Some(self.index.root.clone()),
            records: Some(self.records.len()),
            samples: 0,
            fingerprint: Some(digest.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// Pre-training crops: the lesions of the official training split and the background
    /// patches (the official test lesions are never seen before evaluation).
    pub fn pretraining_set(&self) -> CachedCrops {
        let train: Vec<usize> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.split == OfficialSplit::Train)
            .map(|(i, _)| i)
            .collect();
        CachedCrops::pretraining(
            self.cache.clone(),
            &self.index,
            Some(&train),
            self.config.background_per_image > 0,
        )
        .with_normalization(self.config.normalization)
    }

    /// The labels, split and datasets of `task`.
    pub fn task(&self, task: &Task, split_cfg: &SplitConfig) -> Result<TaskData> {
        let labels = task.label(&self.records)?;
        let sp = split(&self.records, &labels, split_cfg)?;
        let make = |subset: &[usize]| -> Result<Arc<CachedCrops>> {
            Ok(Arc::new(
                CachedCrops::for_task(self.cache.clone(), &self.index, &labels, Some(subset))?
                    .without_hires()
                    .with_normalization(self.config.normalization),
            ))
        };
        let train = make(&sp.train)?;
        let validation = make(&sp.validation)?;
        let test = make(&sp.test)?;
        let mut dropped = unresolved_cases(&self.index, task)?;
        for d in [&train, &validation, &test] {
            dropped.extend(d.dropped().iter().cloned());
        }
        let data = TaskData {
            labels,
            split: sp,
            train,
            validation,
            test,
            dropped,
        };
        let missing = data.dropped_test();
        if self.config.require_all_test_cases && !missing.is_empty() {
            return Err(miram_cbis_ddsm::DdsmError::MissingTestCases {
                task: task.name(),
                cases: missing.iter().map(|d| d.to_string()).collect(),
            }
            .into());
        }
        Ok(data)
    }
}
