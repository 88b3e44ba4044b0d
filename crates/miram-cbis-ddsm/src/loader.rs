//! Datasets of lesion crops and a batch loader that prefetches on worker threads and yields
//! candle tensors `[N, C, H, W]`.
//!
//! The order of an epoch is fixed by `(seed, epoch)` alone: the permutation is drawn from
//! `Rng::keyed(seed ^ ORDER_SALT, &[epoch])` and every sample is augmented with
//! `Rng::keyed(seed, &[epoch, index])`, so one worker and many give the same batches. With
//! `shard = Some((rank, world))` each rank takes every `world`-th sample of the epoch's
//! permutation after it is cut to a multiple of `world` (PyTorch's `DistributedSampler`
//! with `drop_last`), so ranks see disjoint samples and the same number of batches, as data
//! parallelism needs.
//!
//! Workers are `std` threads; worker `w` builds batches `w, w + W, ...` and hands them over
//! a bounded channel, so at most `prefetch` batches wait and the consumer receives them in
//! order. Tensors are made on the consumer's thread, on the loader's device.
//!
//! The whole pipeline on a generated dataset (the same code runs on a TCIA download):
//!
//! ```
//! use std::path::PathBuf;
//! use std::sync::Arc;
//!
//! use miram_cbis_ddsm::augment::AugmentConfig;
//! use miram_cbis_ddsm::crop::{CacheConfig, CropCache, CropConfig};
//! use miram_cbis_ddsm::index::{build_index, no_progress, IndexOptions};
//! use miram_cbis_ddsm::loader::{BatchTargets, CachedCrops, Loader, LoaderConfig};
//! use miram_cbis_ddsm::split::{split, SplitConfig};
//! use miram_cbis_ddsm::synth::{synthesize, SynthConfig};
//! use miram_cbis_ddsm::tasks::Task;
//!
//! let dir = std::env::temp_dir().join(format!("miram-loader-doc-{}", std::process::id()));
//! let data = SynthConfig { patients: 6, image_width: 256, image_height: 416, ..SynthConfig::small() };
//! synthesize(&dir, &data, &|_| {})?;
//! let index = build_index(&dir, &IndexOptions::default(), &no_progress)?;
//! let crops = CacheConfig::new(dir.join("cache")).with_crop(CropConfig { size: 64, ..CropConfig::paper() });
//! let cache = Arc::new(CropCache::for_index(&index, &crops, &|_| {})?);
//! // Label the index's records, split them as the authors did, load the training crops.
//! let records: Vec<_> = index.entries.iter().map(|e| e.record.clone()).collect();
//! let labels = Task::PathologyBinary.label(&records)?;
//! let parts = split(&records, &labels, &SplitConfig::default())?;
//! let train = CachedCrops::for_task(cache, &index, &labels, Some(&parts.train))?;
//! let cfg = LoaderConfig { channels: 3, drop_last: false, ..LoaderConfig::train(4) };
//! let loader = Loader::new(Arc::new(train), AugmentConfig::finetune(), cfg, candle_core::Device::Cpu)?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     let n = batch.items.len();
//!     assert_eq!(batch.images.dims(), [n, 3, 64, 64]);
//!     assert!(matches!(batch.targets, BatchTargets::Classes(ref t) if t.dims() == [n]));
//! }
//! std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), miram_cbis_ddsm::DdsmError>(())
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{AugmentConfig, AugmentParams};
use crate::crop::{CacheEntryKind, CropCache, Normalization};
use crate::error::{DdsmError, Result};
use crate::index::DatasetIndex;
use crate::records::{OfficialSplit, RecordSource};
use crate::tasks::{Target, TargetKind, Task, TaskLabels};

/// Salt of the epoch permutation's stream (keeps it apart from the augmentation streams).
const ORDER_SALT: u64 = 0x6f72_6465_7200_0000;

/// What identifies a sample, carried through to the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMeta {
    /// The sample's index in its dataset.
    pub index: usize,
    /// The patient (empty for arrays without one).
    pub patient_id: String,
    /// The case folder of the full image.
    pub image_folder: String,
    /// The abnormality id (0 for background patches).
    pub abnormality_id: u32,
    /// A readable label (`MALIGNANT`, `ILL_DEFINED-SPICULATED`, `background`).
    pub label: String,
}

/// When a lesion was left out of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DropStage {
    /// When indexing: its files are missing, ambiguous or do not decode.
    Index,
    /// When cropping: its full image or ROI mask could not be decoded or cropped.
    Cache,
}

/// A lesion (CSV row) a task would use but that is left out of its dataset: the row, the
/// file at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedCase {
    /// The CSV file and row.
    pub source: RecordSource,
    /// The official split of the row.
    pub split: OfficialSplit,
    /// When it was left out.
    pub stage: DropStage,
    /// The file at fault (the undecodable image, else the first path tried).
    pub file: PathBuf,
    /// Why.
    pub cause: String,
}

impl std::fmt::Display for DroppedCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.source,
            crate::error::file_and_error(&self.file, &self.cause)
        )
    }
}

/// The rows of `index` that `task` would label but that could not be indexed
/// ([`DatasetIndex::unresolved`]), as dropped cases naming the file at fault and the cause.
pub fn unresolved_cases(index: &DatasetIndex, task: &Task) -> Result<Vec<DroppedCase>> {
    let records: Vec<_> = index
        .entries
        .iter()
        .map(|e| e.record.clone())
        .chain(index.unresolved.iter().map(|u| (*u.record).clone()))
        .collect();
    let class_names = task.class_names(&records);
    let mut out = Vec::new();
    for u in &index.unresolved {
        if task.target(&u.record, &class_names)?.is_none() {
            continue;
        }
        let (file, cause) = match u.undecodable.first() {
            Some(b) => (b.path.clone(), b.error.clone()),
            None => (
                u.tried
                    .first()
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(&u.record.image_file_path)),
                u.reason.clone(),
            ),
        };
        out.push(DroppedCase {
            source: u.source.clone(),
            split: u.record.split,
            stage: DropStage::Index,
            file,
            cause,
        });
    }
    Ok(out)
}

/// One sample before augmentation.
///
/// # Shapes
/// `image` is `[size, size]` and `hires` `[hires_size, hires_size]`, row-major, one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The crop, normalised.
    pub image: Vec<f32>,
    /// The high-resolution crop, if the dataset has one.
    pub hires: Option<Vec<f32>>,
    /// The target (none for pre-training).
    pub target: Option<Target>,
    /// Identification.
    pub meta: ItemMeta,
}

/// A dataset of square single-channel crops.
pub trait CropDataset: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The side of the crops.
    fn size(&self) -> usize;

    /// The side of the high-resolution crops, if any.
    fn hires_size(&self) -> Option<usize>;

    /// The kind of targets.
    fn target_kind(&self) -> TargetKind;

    /// Sample `index`, not augmented.
    fn get(&self, index: usize) -> Result<Sample>;
}

/// One item of a [`CachedCrops`] dataset.
#[derive(Debug, Clone, PartialEq)]
struct CachedItem {
    entry: usize,
    target: Option<Target>,
    meta: ItemMeta,
}

/// A dataset over a [`CropCache`]: lesion crops with task targets, or lesion crops and
/// background patches without targets for pre-training.
#[derive(Debug, Clone)]
pub struct CachedCrops {
    cache: Arc<CropCache>,
    items: Vec<CachedItem>,
    dropped: Vec<DroppedCase>,
    kind: TargetKind,
    normalization: Normalization,
    with_hires: bool,
}

impl CachedCrops {
    /// The lesion crops of `subset` (indices into `labels.items`; all items when `None`) with
    /// their targets. `labels` must have been computed on the records of `index`'s entries in
    /// order (`Task::label(&records)` with `records[i] = index.entries[i].record`) and the
    /// cache built from the same index ([`CropCache::for_index`]). Items whose crop was
    /// skipped are left out and listed, with the file and the cause, in
    /// [`CachedCrops::dropped`].
    pub fn for_task(
        cache: Arc<CropCache>,
        index: &DatasetIndex,
        labels: &TaskLabels,
        subset: Option<&[usize]>,
    ) -> Result<Self> {
        let all: Vec<usize>;
        let subset = match subset {
            Some(s) => s,
            None => {
                all = (0..labels.items.len()).collect();
                &all
            }
        };
        let mut items = Vec::with_capacity(subset.len());
        let mut dropped = Vec::new();
        for &i in subset {
            let item = labels.items.get(i).ok_or_else(|| DdsmError::Invalid {
                what: "subset".into(),
                message: format!("item {i} of {} labelled items", labels.items.len()),
            })?;
            let entry = index
                .entries
                .get(item.record)
                .ok_or_else(|| DdsmError::Invalid {
                    what: "labels".into(),
                    message: format!(
                        "record {} of an index with {} entries: label the index's records",
                        item.record,
                        index.entries.len()
                    ),
                })?;
            let Some(cache_entry) = cache.lesion_entry(item.record) else {
                let skip = cache.skipped().iter().find(|s| s.job == Some(item.record));
                dropped.push(DroppedCase {
                    source: entry.record.source.clone(),
                    split: entry.record.split,
                    stage: DropStage::Cache,
                    file: skip.map_or_else(|| entry.full_image.clone(), |s| s.path.clone()),
                    cause: skip.map_or_else(
                        || format!("no crop in the cache {}", cache.path().display()),
                        |s| s.message.clone(),
                    ),
                });
                continue;
            };
            items.push(CachedItem {
                entry: cache_entry,
                target: Some(item.target.clone()),
                meta: ItemMeta {
                    index: items.len(),
                    patient_id: entry.record.patient_id.clone(),
                    image_folder: entry.record.image_folder(),
                    abnormality_id: entry.record.abnormality_id,
                    label: labels.describe(&item.target),
                },
            });
        }
        let normalization = cache.crop_config().normalization;
        let with_hires = cache.hires_size().is_some();
        Ok(Self {
            cache,
            items,
            dropped,
            kind: labels.kind,
            normalization,
            with_hires,
        })
    }

    /// Every crop of the cache without targets (pre-training): the lesions of `records`
    /// (indices into the index's entries; all when `None`) and, when `background` is set,
    /// the background patches of their full images (so that restricting `records` to the
    /// official training split keeps every test image out of pre-training).
    pub fn pretraining(
        cache: Arc<CropCache>,
        index: &DatasetIndex,
        records: Option<&[usize]>,
        background: bool,
    ) -> Self {
        let mut items = Vec::new();
        let wanted: Option<std::collections::HashSet<usize>> =
            records.map(|r| r.iter().copied().collect());
        // The patient and case folder of each full image, for background patches.
        let mut by_image: std::collections::HashMap<&std::path::Path, (String, String)> =
            std::collections::HashMap::new();
        let mut wanted_images: std::collections::HashSet<&std::path::Path> =
            std::collections::HashSet::new();
        for (i, x) in index.entries.iter().enumerate() {
            by_image
                .entry(x.full_image.as_path())
                .or_insert_with(|| (x.record.patient_id.clone(), x.record.image_folder()));
            if wanted.as_ref().is_none_or(|w| w.contains(&i)) {
                wanted_images.insert(x.full_image.as_path());
            }
        }
        for (e, entry) in cache.entries().iter().enumerate() {
            let meta = match entry.kind {
                CacheEntryKind::Lesion { job } => {
                    if wanted.as_ref().is_some_and(|w| !w.contains(&job)) {
                        continue;
                    }
                    let Some(rec) = index.entries.get(job) else {
                        continue;
                    };
                    ItemMeta {
                        index: 0,
                        patient_id: rec.record.patient_id.clone(),
                        image_folder: rec.record.image_folder(),
                        abnormality_id: rec.record.abnormality_id,
                        label: "lesion".into(),
                    }
                }
                CacheEntryKind::Background { image } => {
                    let path = cache.images().get(image).map(PathBuf::as_path);
                    if !background || !path.is_some_and(|p| wanted_images.contains(p)) {
                        continue;
                    }
                    let folder = path
                        .and_then(|p| by_image.get(p).cloned())
                        .unwrap_or_default();
                    ItemMeta {
                        index: 0,
                        patient_id: folder.0,
                        image_folder: folder.1,
                        abnormality_id: 0,
                        label: "background".into(),
                    }
                }
            };
            items.push(CachedItem {
                entry: e,
                target: None,
                meta: ItemMeta {
                    index: items.len(),
                    ..meta
                },
            });
        }
        let normalization = cache.crop_config().normalization;
        let with_hires = cache.hires_size().is_some();
        Self {
            cache,
            items,
            dropped: Vec::new(),
            kind: TargetKind::None,
            normalization,
            with_hires,
        }
    }

    /// The items of the subset that are left out because their crop could not be made
    /// (cache time), with the file and the cause; empty for pre-training sets.
    pub fn dropped(&self) -> &[DroppedCase] {
        &self.dropped
    }

    /// The same dataset without its high-resolution crops.
    pub fn without_hires(mut self) -> Self {
        self.with_hires = false;
        self
    }

    /// The same dataset with another intensity normalisation.
    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// How the samples are made: the cache's crop settings with this dataset's
    /// normalisation, and the high-resolution crop only when the samples carry it. This is
    /// what a model trained on these samples needs of any other input
    /// (`miram_core::train::inference`).
    pub fn preprocessing(&self) -> crate::crop::CropConfig {
        let mut c = self.cache.crop_config().clone();
        c.normalization = self.normalization;
        if !self.with_hires {
            c.hires_scale = None;
        }
        c
    }

    /// The cache entry of sample `index`.
    pub fn cache_entry(&self, index: usize) -> Option<usize> {
        self.items.get(index).map(|i| i.entry)
    }
}

impl CropDataset for CachedCrops {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn size(&self) -> usize {
        self.cache.size() as usize
    }

    fn hires_size(&self) -> Option<usize> {
        if self.with_hires {
            self.cache.hires_size().map(|s| s as usize)
        } else {
            None
        }
    }

    fn target_kind(&self) -> TargetKind {
        self.kind
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let item = self.items.get(index).ok_or_else(|| DdsmError::Invalid {
            what: "sample".into(),
            message: format!("{index} of {}", self.items.len()),
        })?;
        let s = self.size();
        let mut image = vec![0f32; s * s];
        self.cache
            .read_f32(item.entry, false, &self.normalization, &mut image)?;
        let hires = match self.hires_size() {
            Some(h) => {
                let mut v = vec![0f32; h * h];
                self.cache
                    .read_f32(item.entry, true, &self.normalization, &mut v)?;
                Some(v)
            }
            None => None,
        };
        Ok(Sample {
            image,
            hires,
            target: item.target.clone(),
            meta: item.meta.clone(),
        })
    }
}

/// A dataset held in memory, built from arrays (for tests and for other crates).
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryCrops {
    size: usize,
    hires_size: Option<usize>,
    images: Vec<f32>,
    hires: Option<Vec<f32>>,
    targets: Option<Vec<Target>>,
    kind: TargetKind,
}

impl InMemoryCrops {
    /// `n` square crops of side `size`, without targets.
    ///
    /// # Shapes
    /// `images` is `[n, size, size]`, row-major.
    pub fn from_arrays(images: Vec<f32>, size: usize) -> Result<Self> {
        if size == 0 || images.len() % (size * size) != 0 {
            return Err(DdsmError::Invalid {
                what: "images".into(),
                message: format!(
                    "{} values are not a whole number of {size} x {size} crops",
                    images.len()
                ),
            });
        }
        Ok(Self {
            size,
            hires_size: None,
            images,
            hires: None,
            targets: None,
            kind: TargetKind::None,
        })
    }

    /// The same crops with class targets (`classes` classes).
    pub fn with_classes(mut self, classes: Vec<u32>, num_classes: usize) -> Result<Self> {
        if classes.len() != self.len() {
            return Err(DdsmError::Invalid {
                what: "targets".into(),
                message: format!("{} targets for {} crops", classes.len(), self.len()),
            });
        }
        if let Some(c) = classes.iter().find(|&&c| c as usize >= num_classes) {
            return Err(DdsmError::Invalid {
                what: "targets".into(),
                message: format!("class {c} with {num_classes} classes"),
            });
        }
        self.targets = Some(classes.into_iter().map(Target::Class).collect());
        self.kind = TargetKind::Classes(num_classes);
        Ok(self)
    }

    /// The same crops with multi-hot targets.
    ///
    /// # Shapes
    /// `targets` is `[n, k]`, row-major.
    pub fn with_multi_hot(mut self, targets: Vec<f32>, k: usize) -> Result<Self> {
        if k == 0 || targets.len() != self.len() * k {
            return Err(DdsmError::Invalid {
                what: "targets".into(),
                message: format!(
                    "{} values for {} crops x {k} classes",
                    targets.len(),
                    self.len()
                ),
            });
        }
        self.targets = Some(
            targets
                .chunks(k)
                .map(|c| Target::MultiHot(c.to_vec()))
                .collect(),
        );
        self.kind = TargetKind::MultiHot(k);
        Ok(self)
    }

    /// The same crops with high-resolution versions.
    ///
    /// # Shapes
    /// `hires` is `[n, hires_size, hires_size]`, row-major.
    pub fn with_hires(mut self, hires: Vec<f32>, hires_size: usize) -> Result<Self> {
        if hires.len() != self.len() * hires_size * hires_size {
            return Err(DdsmError::Invalid {
                what: "hires".into(),
                message: format!(
                    "{} values for {} crops of {hires_size} x {hires_size}",
                    hires.len(),
                    self.len()
                ),
            });
        }
        self.hires = Some(hires);
        self.hires_size = Some(hires_size);
        Ok(self)
    }
}

impl CropDataset for InMemoryCrops {
    fn len(&self) -> usize {
        self.images.len() / (self.size * self.size)
    }

    fn size(&self) -> usize {
        self.size
    }

    fn hires_size(&self) -> Option<usize> {
        self.hires_size
    }

    fn target_kind(&self) -> TargetKind {
        self.kind
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(DdsmError::Invalid {
                what: "sample".into(),
                message: format!("{index} of {}", self.len()),
            });
        }
        let n = self.size * self.size;
        let hires = match (&self.hires, self.hires_size) {
            (Some(h), Some(s)) => Some(h[index * s * s..(index + 1) * s * s].to_vec()),
            _ => None,
        };
        let target = self.targets.as_ref().map(|t| t[index].clone());
        Ok(Sample {
            image: self.images[index * n..(index + 1) * n].to_vec(),
            hires,
            meta: ItemMeta {
                index,
                patient_id: String::new(),
                image_folder: String::new(),
                abnormality_id: 0,
                label: match &target {
                    Some(Target::Class(c)) => c.to_string(),
                    Some(Target::MultiHot(v)) => format!("{v:?}"),
                    None => String::new(),
                },
            },
            target,
        })
    }
}

/// How batches are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle each epoch (by `(seed, epoch)`).
    pub shuffle: bool,
    /// Drop a last incomplete batch.
    pub drop_last: bool,
    /// Seed of the order and of the augmentation.
    pub seed: u64,
    /// Worker threads (0: batches are made on the consumer's thread).
    pub workers: usize,
    /// Batches prepared ahead (at least one per worker).
    pub prefetch: usize,
    /// Channels of the image tensors (the gray crop is replicated).
    pub channels: usize,
    /// `(rank, world)`: this process's share of every epoch.
    pub shard: Option<(usize, usize)>,
}

impl LoaderConfig {
    /// Training: shuffled, last incomplete batch dropped, 2 workers, 4 batches ahead.
    pub fn train(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed: 0,
            workers: 2,
            prefetch: 4,
            channels: 1,
            shard: None,
        }
    }

    /// Evaluation: in order, every sample, 2 workers.
    pub fn eval(batch_size: usize) -> Self {
        Self {
            shuffle: false,
            drop_last: false,
            ..Self::train(batch_size)
        }
    }

    /// Checks the values, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| {
            Err(DdsmError::Invalid {
                what: format!("LoaderConfig.{what}"),
                message,
            })
        };
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.channels == 0 {
            return bad("channels", "must be at least 1".into());
        }
        if let Some((rank, world)) = self.shard {
            if world == 0 || rank >= world {
                return bad("shard", format!("rank {rank} of world {world}"));
            }
        }
        Ok(())
    }
}

/// The targets of a batch.
#[derive(Debug, Clone)]
pub enum BatchTargets {
    /// Pre-training: none.
    None,
    /// Class indices, `u32` `[N]`.
    Classes(Tensor),
    /// Multi-hot vectors, `f32` `[N, K]`.
    MultiHot(Tensor),
}

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The crops, `f32` `[N, C, H, W]`.
    pub images: Tensor,
    /// The high-resolution crops, `f32` `[N, C, sH, sW]`, if the dataset has them.
    pub hires: Option<Tensor>,
    /// The targets.
    pub targets: BatchTargets,
    /// What each sample is.
    pub items: Vec<ItemMeta>,
}

/// A batch on the host, before it becomes tensors.
#[derive(Debug)]
struct HostBatch {
    n: usize,
    images: Vec<f32>,
    hires: Option<Vec<f32>>,
    classes: Vec<u32>,
    multi_hot: Vec<f32>,
    items: Vec<ItemMeta>,
}

/// A batch loader over a dataset.
#[derive(Debug)]
pub struct Loader<D: CropDataset + 'static> {
    dataset: Arc<D>,
    augment: AugmentConfig,
    cfg: LoaderConfig,
    device: Device,
}

impl<D: CropDataset + 'static> Loader<D> {
    /// A loader yielding tensors on `device`.
    pub fn new(
        dataset: Arc<D>,
        augment: AugmentConfig,
        cfg: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        cfg.validate()?;
        augment.validate()?;
        Ok(Self {
            dataset,
            augment,
            cfg,
            device,
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The dataset indices this rank visits in `epoch`, in order.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.len();
        let mut order: Vec<usize> = if self.cfg.shuffle {
            Rng::keyed(self.cfg.seed ^ ORDER_SALT, &[epoch]).permutation(n)
        } else {
            (0..n).collect()
        };
        if let Some((rank, world)) = self.cfg.shard {
            order.truncate(n / world * world);
            order = order.into_iter().skip(rank).step_by(world).collect();
        }
        order
    }

    /// The number of batches of an epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.epoch_indices(0).len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// The batches of `epoch`, in an order fixed by `(seed, epoch)`.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on: the same batches as the end of
    /// [`Loader::epoch`], without making the skipped ones (a resumed run starts mid-epoch).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter {
        let indices = self.epoch_indices(epoch);
        let mut batches: Vec<Vec<usize>> = indices
            .chunks(self.cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.cfg.drop_last
            && batches
                .last()
                .is_some_and(|b| b.len() < self.cfg.batch_size)
        {
            batches.pop();
        }
        batches.drain(..first.min(batches.len()));
        let maker = Arc::new(BatchMaker {
            dataset: self.dataset.clone() as Arc<dyn CropDataset>,
            augment: self.augment.clone(),
            seed: self.cfg.seed,
            epoch,
            channels: self.cfg.channels,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let workers = self.cfg.workers.min(batches.len());
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let per_worker = self.cfg.prefetch.div_ceil(workers.max(1)).max(1);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<HostBatch>>(per_worker);
            let mine: Vec<Vec<usize>> = batches.iter().skip(w).step_by(workers).cloned().collect();
            let maker = maker.clone();
            let stop = stop.clone();
            handles.push(std::thread::spawn(move || {
                for b in mine {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if tx.send(maker.make(&b)).is_err() {
                        break;
                    }
                }
            }));
            receivers.push(rx);
        }
        EpochIter {
            batches,
            next: 0,
            maker,
            receivers,
            handles,
            stop,
            device: self.device.clone(),
        }
    }
}

/// Makes host batches (shared by the workers).
struct BatchMaker {
    dataset: Arc<dyn CropDataset>,
    augment: AugmentConfig,
    seed: u64,
    epoch: u64,
    channels: usize,
}

impl BatchMaker {
    fn make(&self, indices: &[usize]) -> Result<HostBatch> {
        let size = self.dataset.size();
        let hsize = self.dataset.hires_size();
        let c = self.channels;
        let n = indices.len();
        let mut images = Vec::with_capacity(n * c * size * size);
        let mut hires = hsize.map(|h| Vec::with_capacity(n * c * h * h));
        let mut classes = Vec::new();
        let mut multi_hot = Vec::new();
        let mut items = Vec::with_capacity(n);
        let mut buf = vec![0f32; size * size];
        let mut hbuf = vec![0f32; hsize.map_or(0, |h| h * h)];
        let identity = self.augment == AugmentConfig::none();
        for &i in indices {
            let s = self.dataset.get(i)?;
            let params = if identity {
                AugmentParams::IDENTITY
            } else {
                self.augment
                    .draw(&mut Rng::keyed(self.seed, &[self.epoch, i as u64]))
            };
            params.apply(&s.image, size, &mut buf)?;
            for _ in 0..c {
                images.extend_from_slice(&buf);
            }
            if let (Some(h), Some(out)) = (hsize, hires.as_mut()) {
                let src = s.hires.as_ref().ok_or_else(|| DdsmError::Invalid {
                    what: "sample".into(),
                    message: format!("sample {i} has no high-resolution crop"),
                })?;
                params.apply(src, h, &mut hbuf)?;
                for _ in 0..c {
                    out.extend_from_slice(&hbuf);
                }
            }
            match (self.dataset.target_kind(), &s.target) {
                (TargetKind::Classes(_), Some(Target::Class(k))) => classes.push(*k),
                (TargetKind::MultiHot(k), Some(t)) => multi_hot.extend(t.as_vector(k)),
                (TargetKind::None, _) => {}
                (kind, t) => {
                    return Err(DdsmError::Invalid {
                        what: "target".into(),
                        message: format!("sample {i} has target {t:?} in a dataset of {kind:?}"),
                    })
                }
            }
            items.push(s.meta);
        }
        Ok(HostBatch {
            n,
            images,
            hires,
            classes,
            multi_hot,
            items,
        })
    }

    fn to_tensors(&self, b: HostBatch, device: &Device) -> Result<Batch> {
        let size = self.dataset.size();
        let c = self.channels;
        let images = Tensor::from_vec(b.images, (b.n, c, size, size), device)?;
        let hires = match (b.hires, self.dataset.hires_size()) {
            (Some(h), Some(s)) => Some(Tensor::from_vec(h, (b.n, c, s, s), device)?),
            _ => None,
        };
        let targets = match self.dataset.target_kind() {
            TargetKind::None => BatchTargets::None,
            TargetKind::Classes(_) => {
                BatchTargets::Classes(Tensor::from_vec(b.classes, b.n, device)?)
            }
            TargetKind::MultiHot(k) => {
                BatchTargets::MultiHot(Tensor::from_vec(b.multi_hot, (b.n, k), device)?)
            }
        };
        Ok(Batch {
            images,
            hires,
            targets,
            items: b.items,
        })
    }
}

/// The batches of one epoch; dropping it stops the workers.
pub struct EpochIter {
    batches: Vec<Vec<usize>>,
    next: usize,
    maker: Arc<BatchMaker>,
    receivers: Vec<Receiver<Result<HostBatch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    device: Device,
}

impl std::fmt::Debug for EpochIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochIter")
            .field("batches", &self.batches.len())
            .field("next", &self.next)
            .field("workers", &self.handles.len())
            .finish()
    }
}

impl EpochIter {
    /// The number of batches of the epoch.
    pub fn num_batches(&self) -> usize {
        self.batches.len()
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches.len() {
            return None;
        }
        let b = self.next;
        self.next += 1;
        let host = if self.receivers.is_empty() {
            self.maker.make(&self.batches[b])
        } else {
            match self.receivers[b % self.receivers.len()].recv() {
                Ok(r) => r,
                Err(_) => Err(DdsmError::Invalid {
                    what: "loader".into(),
                    message: format!(
                        "worker {} stopped before batch {b}",
                        b % self.receivers.len()
                    ),
                }),
            }
        };
        Some(host.and_then(|h| self.maker.to_tensors(h, &self.device)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochIter {}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting to send.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize, size: usize) -> Arc<InMemoryCrops> {
        let images: Vec<f32> = (0..n * size * size)
            .map(|i| (i % 97) as f32 / 97.0)
            .collect();
        let classes: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        Arc::new(
            InMemoryCrops::from_arrays(images, size)
                .and_then(|d| d.with_classes(classes, 3))
                .expect("dataset"),
        )
    }

    fn collect(
        loader: &Loader<InMemoryCrops>,
        epoch: u64,
    ) -> Vec<(Vec<f32>, Vec<u32>, Vec<usize>)> {
        loader
            .epoch(epoch)
            .map(|b| {
                let b = b.expect("batch");
                let img = b
                    .images
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("images");
                let cls = match b.targets {
                    BatchTargets::Classes(t) => t.to_vec1::<u32>().expect("classes"),
                    _ => Vec::new(),
                };
                (img, cls, b.items.iter().map(|m| m.index).collect())
            })
            .collect()
    }

    #[test]
    fn order_and_augmentation_do_not_depend_on_workers() {
        let ds = dataset(23, 8);
        let cfg = |workers| LoaderConfig {
            workers,
            seed: 5,
            channels: 3,
            ..LoaderConfig::train(4)
        };
        let one = Loader::new(ds.clone(), AugmentConfig::finetune(), cfg(1), Device::Cpu)
            .expect("loader");
        let three = Loader::new(ds.clone(), AugmentConfig::finetune(), cfg(3), Device::Cpu)
            .expect("loader");
        let inline = Loader::new(ds.clone(), AugmentConfig::finetune(), cfg(0), Device::Cpu)
            .expect("loader");
        let a = collect(&one, 2);
        assert_eq!(a.len(), 5); // 23 samples, batches of 4, last dropped
        assert_eq!(a, collect(&three, 2));
        assert_eq!(a, collect(&inline, 2));
        // Another epoch has another order; the same epoch again the same.
        assert_ne!(a, collect(&one, 3));
        assert_eq!(a, collect(&one, 2));
        // Shapes and targets.
        let b = one.epoch(0).next().expect("a batch").expect("ok");
        assert_eq!(b.images.dims(), [4, 3, 8, 8]);
        match b.targets {
            BatchTargets::Classes(t) => {
                let got = t.to_vec1::<u32>().expect("u32");
                let want: Vec<u32> = b.items.iter().map(|m| m.index as u32 % 3).collect();
                assert_eq!(got, want);
            }
            other => panic!("expected classes, got {other:?}"),
        }
    }

    #[test]
    fn epoch_from_equals_the_end_of_the_epoch() {
        let l = Loader::new(
            dataset(10, 8),
            AugmentConfig::finetune(),
            LoaderConfig {
                seed: 3,
                ..LoaderConfig::train(3)
            },
            Device::Cpu,
        )
        .unwrap();
        let all: Vec<Batch> = l.epoch(2).map(|b| b.unwrap()).collect();
        let tail: Vec<Batch> = l.epoch_from(2, 1).map(|b| b.unwrap()).collect();
        assert_eq!(tail.len(), all.len() - 1);
        for (a, b) in all[1..].iter().zip(&tail) {
            assert_eq!(a.items, b.items);
            let d = (&a.images - &b.images)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        }
        assert_eq!(l.epoch_from(2, 99).count(), 0);
    }

    #[test]
    fn shards_are_disjoint_and_equal() {
        let ds = dataset(50, 4);
        let mut seen = Vec::new();
        let mut counts = Vec::new();
        for rank in 0..3 {
            let cfg = LoaderConfig {
                shard: Some((rank, 3)),
                seed: 9,
                ..LoaderConfig::train(5)
            };
            let l =
                Loader::new(ds.clone(), AugmentConfig::none(), cfg, Device::Cpu).expect("loader");
            let idx = l.epoch_indices(1);
            counts.push(idx.len());
            seen.extend(idx);
        }
        assert_eq!(counts, vec![16, 16, 16]);
        let mut s = seen.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), seen.len(), "a sample on two ranks");
    }

    #[test]
    fn eval_visits_everything_in_order_without_augmentation() {
        let ds = dataset(10, 4);
        let l = Loader::new(
            ds.clone(),
            AugmentConfig::none(),
            LoaderConfig::eval(4),
            Device::Cpu,
        )
        .expect("loader");
        let batches = collect(&l, 0);
        assert_eq!(batches.len(), 3);
        let order: Vec<usize> = batches.iter().flat_map(|b| b.2.clone()).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        let first = ds.get(0).expect("sample").image;
        assert_eq!(&batches[0].0[..16], &first[..]);
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        let ds = dataset(200, 16);
        let l = Loader::new(
            ds,
            AugmentConfig::finetune(),
            LoaderConfig::train(2),
            Device::Cpu,
        )
        .expect("loader");
        let mut it = l.epoch(0);
        assert!(it.next().is_some());
        drop(it); // must not hang
        assert!(LoaderConfig {
            batch_size: 0,
            ..LoaderConfig::train(1)
        }
        .validate()
        .is_err());
        assert!(LoaderConfig {
            shard: Some((3, 3)),
            ..LoaderConfig::train(1)
        }
        .validate()
        .is_err());
    }
}
