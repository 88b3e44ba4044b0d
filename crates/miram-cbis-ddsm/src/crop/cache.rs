//! The crop cache: every lesion crop (and background patch) of a dataset decoded once and
//! kept in one compact file, so that an epoch never decodes a full mammogram again.
//!
//! One file per (dataset, crop settings): `crops-<key>.bin`, where the key hashes the crop
//! and background settings and the identity of every source file (path, size, modification
//! time). A changed setting or file gives another key, hence a rebuild. The file holds the
//! 16-bit crops back to back (little endian) followed by a JSON footer describing them:
//!
//! ```text
//! "MIRAMCC1" | 8 reserved bytes | crop 0 | crop 0 hires | crop 1 | ... | footer JSON | footer length (u64 LE) | "MIRAMCC1"
//! ```
//!
//! It is written to a temporary name and renamed, so a reader never sees a partial file, and
//! memory-mapped (memmap2) or read into memory when opened. Building runs over full images in
//! parallel (rayon) in chunks written in order, so memory stays bounded and the file is the
//! same whatever the thread count. A source that cannot be decoded is listed in
//! [`CropCache::skipped`] with the error, never a panic.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fast_image_resize as fir;
use miram_rand::Rng;
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    crop_file_with_mask, crop_square, lesion_crop, mask_bbox, normalize, sample_background, BBox,
    BackgroundConfig, CropConfig, Normalization, SquareBox,
};
use crate::dicom::{DecodeLimits, GrayImage};
use crate::error::{DdsmError, Result};
use crate::index::DatasetIndex;

const MAGIC: &[u8; 8] = b"MIRAMCC1";
const FORMAT: &str = "miram-crop-cache-v1";

/// One lesion to crop: a full image and its ROI mask.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CropJob {
    /// The full mammogram (DICOM, or JPEG in the Kaggle layout).
    pub full_image: PathBuf,
    /// The ROI mask of the lesion.
    pub roi_mask: PathBuf,
}

/// How an opened cache keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheAccess {
    /// Memory-mapped: the operating system pages crops in as they are read.
    Mmap,
    /// Read into memory at once.
    InMemory,
}

/// How a crop cache is built and opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The crops.
    pub crop: CropConfig,
    /// Background patches for pre-training (none when `None`).
    pub background: Option<BackgroundConfig>,
    /// The folder of the cache files.
    pub dir: PathBuf,
    /// How the data is held once opened.
    pub access: CacheAccess,
    /// Bounds on decoded images.
    pub limits: DecodeLimits,
    /// Seed of the background positions.
    pub seed: u64,
}

impl CacheConfig {
    /// The authors' crops, no background patches, memory-mapped, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            crop: CropConfig::paper(),
            background: None,
            dir: dir.into(),
            access: CacheAccess::Mmap,
            limits: DecodeLimits::mammogram(),
            seed: 0,
        }
    }

    /// The same configuration with other crops.
    pub fn with_crop(mut self, crop: CropConfig) -> Self {
        self.crop = crop;
        self
    }

    /// The same configuration with background patches.
    pub fn with_background(mut self, background: BackgroundConfig) -> Self {
        self.background = Some(background);
        self
    }
}

/// What a cache entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheEntryKind {
    /// The crop of job `job`.
    Lesion {
        /// Index into the jobs the cache was built from.
        job: usize,
    },
    /// A background patch of source image `image` (index into [`CropCache::images`]).
    Background {
        /// The source image.
        image: usize,
    },
}

/// One crop in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Lesion or background.
    pub kind: CacheEntryKind,
    /// Index of the full image in [`CropCache::images`].
    pub image: usize,
    /// The ROI bounding box (lesions only), full-image coordinates.
    pub bbox: Option<BBox>,
    /// The square that was cropped, full-image coordinates.
    pub square: SquareBox,
    /// White level of the source image.
    pub max_value: u16,
    /// Byte offset of the crop in the file.
    pub offset: u64,
}

/// A source that could not be cropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSkipped {
    /// The job (lesion), or `None` when a whole image failed for its background patches.
    pub job: Option<usize>,
    /// The file at fault.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Progress of a cache build: full images processed out of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropProgress {
    /// Full images done.
    pub done: usize,
    /// All full images.
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Footer {
    format: String,
    key: String,
    crop: CropConfig,
    background: Option<BackgroundConfig>,
    seed: u64,
    size: u32,
    hires_size: Option<u32>,
    images: Vec<PathBuf>,
    entries: Vec<CacheEntry>,
    lesion_entry: Vec<Option<usize>>,
    skipped: Vec<CacheSkipped>,
    data_end: u64,
}

#[derive(Debug)]
enum Data {
    Mapped(memmap2::Mmap),
    Memory(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Memory(v) => v,
        }
    }
}

/// A built crop cache, opened for reading.
#[derive(Debug)]
pub struct CropCache {
    path: PathBuf,
    footer: Footer,
    data: Data,
}

/// FNV-1a, 64 bits: a stable hash for cache keys (not for security).
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn file_identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}|{}|{}", path.display(), m.len(), mtime)
        }
        Err(_) => format!("{}|missing", path.display()),
    }
}

/// The cache key of `jobs` under `cfg`: 16 hex digits.
pub fn cache_key(jobs: &[CropJob], cfg: &CacheConfig) -> String {
    let settings = serde_json::json!({
        "format": FORMAT,
        "crop": cfg.crop,
        "background": cfg.background,
        "seed": cfg.seed,
        "limits": cfg.limits,
    });
    let mut h = fnv1a(settings.to_string().as_bytes(), 0xCBF2_9CE4_8422_2325);
    let mut seen: HashMap<&Path, String> = HashMap::new();
    for j in jobs {
        for p in [&j.full_image, &j.roi_mask] {
            let id = seen.entry(p.as_path()).or_insert_with(|| file_identity(p));
            h = fnv1a(id.as_bytes(), h);
            h = fnv1a(b"\n", h);
        }
    }
    format!("{h:016x}")
}

/// Decodes an image of the dataset (DICOM, or JPEG in the Kaggle layout).
fn read_source(path: &Path, limits: &DecodeLimits) -> Result<GrayImage> {
    crate::index::read_image(path, limits)
}

/// One crop job per entry of a dataset index, in index order (job `i` is entry `i`).
pub fn crop_jobs(index: &DatasetIndex) -> Vec<CropJob> {
    index
        .entries
        .iter()
        .map(|e| CropJob {
            full_image: e.full_image.clone(),
            roi_mask: e.roi_mask.clone(),
        })
        .collect()
}

/// A lesion cropped during a build: its box, square and pixels.
type Cropped = (BBox, SquareBox, Array2<u16>, Option<Array2<u16>>);

/// The crops of one full image.
struct GroupResult {
    image: usize,
    lesions: Vec<(usize, std::result::Result<Cropped, CacheSkipped>)>,
    backgrounds: Vec<(SquareBox, Array2<u16>, Option<Array2<u16>>)>,
    max_value: u16,
    image_error: Option<CacheSkipped>,
}

fn process_group(
    image: usize,
    path: &Path,
    jobs: &[(usize, &CropJob)],
    cfg: &CacheConfig,
    resizer: &mut fir::Resizer,
) -> GroupResult {
    let skip = |job: Option<usize>, p: &Path, e: &DdsmError| CacheSkipped {
        job,
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    if cfg.background.is_none() {
        // Only the lesions: read each mask, then just the rows of its square.
        let mut lesions = Vec::with_capacity(jobs.len());
        let mut max_value = 0;
        for &(j, job) in jobs {
            let r = match read_source(&job.roi_mask, &cfg.limits) {
                Err(e) => Err(skip(Some(j), &job.roi_mask, &e)),
                Ok(mask) if mask_bbox(&mask).is_none() => {
                    let e = DdsmError::Invalid {
                        what: "ROI mask".into(),
                        message: format!(
                            "no non-zero pixel in a {} x {} mask",
                            mask.width(),
                            mask.height()
                        ),
                    };
                    Err(skip(Some(j), &job.roi_mask, &e))
                }
                Ok(mask) => crop_file_with_mask(path, &mask, &cfg.crop, &cfg.limits, resizer)
                    .map(|c| {
                        max_value = c.max_value;
                        (c.bbox, c.square, c.image, c.hires)
                    })
                    .map_err(|e| skip(Some(j), path, &e)),
            };
            lesions.push((j, r));
        }
        return GroupResult {
            image,
            lesions,
            backgrounds: Vec::new(),
            max_value,
            image_error: None,
        };
    }
    let full = match read_source(path, &cfg.limits) {
        Ok(f) => f,
        Err(e) => {
            return GroupResult {
                image,
                lesions: jobs
                    .iter()
                    .map(|&(j, _)| (j, Err(skip(Some(j), path, &e))))
                    .collect(),
                backgrounds: Vec::new(),
                max_value: 0,
                image_error: Some(skip(None, path, &e)),
            }
        }
    };
    let mut lesions = Vec::with_capacity(jobs.len());
    let mut boxes = Vec::new();
    for &(j, job) in jobs {
        let r = read_source(&job.roi_mask, &cfg.limits)
            .and_then(|mask| lesion_crop(&full, &mask, &cfg.crop, resizer))
            .map(|c| {
                boxes.push(c.bbox);
                (c.bbox, c.square, c.image, c.hires)
            })
            .map_err(|e| skip(Some(j), &job.roi_mask, &e));
        lesions.push((j, r));
    }
    let mut backgrounds = Vec::new();
    if let Some(bg) = &cfg.background {
        let mut rng = Rng::keyed(cfg.seed, &[image as u64]);
        for square in sample_background(&full, &boxes, bg, &mut rng) {
            if let Ok((lo, hi)) = crop_square(
                &full,
                &square,
                cfg.crop.size,
                cfg.crop.hires_size(),
                cfg.crop.filter,
                resizer,
            ) {
                backgrounds.push((square, lo, hi));
            }
        }
    }
    GroupResult {
        image,
        lesions,
        backgrounds,
        max_value: full.max_value,
        image_error: None,
    }
}

fn write_u16s(out: &mut impl Write, v: &Array2<u16>, path: &Path) -> Result<()> {
    let mut bytes = Vec::with_capacity(v.len() * 2);
    // Row-major order whatever the array's memory order.
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    out.write_all(&bytes).map_err(|e| DdsmError::io(path, e))
}

/// The jobs (with their indices) cropped from one full image.
type JobGroup<'j> = Vec<(usize, &'j CropJob)>;

/// The jobs grouped by full image, in order of first appearance: the images, and for each
/// the jobs cropped from it.
fn group_by_image(jobs: &[CropJob]) -> (Vec<PathBuf>, Vec<JobGroup<'_>>) {
    let mut images: Vec<PathBuf> = Vec::new();
    let mut by_image: HashMap<&Path, usize> = HashMap::new();
    let mut groups: Vec<JobGroup<'_>> = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        let g = *by_image.entry(job.full_image.as_path()).or_insert_with(|| {
            images.push(job.full_image.clone());
            groups.push(Vec::new());
            images.len() - 1
        });
        groups[g].push((j, job));
    }
    (images, groups)
}

/// A cache file being written: the magic and a reserved word, then each entry's squares
/// (`size`² then `hires`² little-endian `u16`), then the JSON footer, its length and the
/// magic again.
struct CacheWriter<'p> {
    out: std::io::BufWriter<std::fs::File>,
    /// The file written (for errors).
    path: &'p Path,
    /// Where the next entry's data starts.
    offset: u64,
    /// The bytes of one entry.
    entry_bytes: u64,
    entries: Vec<CacheEntry>,
    lesion_entry: Vec<Option<usize>>,
    skipped: Vec<CacheSkipped>,
}

impl<'p> CacheWriter<'p> {
    /// Writes the header of a cache of `jobs` jobs under `cfg` to `file` (at `path`).
    fn start(file: std::fs::File, path: &'p Path, cfg: &CacheConfig, jobs: usize) -> Result<Self> {
        let mut out = std::io::BufWriter::new(file);
        out.write_all(MAGIC).map_err(|e| DdsmError::io(path, e))?;
        out.write_all(&[0u8; 8])
            .map_err(|e| DdsmError::io(path, e))?;
        let size = cfg.crop.size;
        let hires = cfg.crop.hires_size();
        Ok(CacheWriter {
            out,
            path,
            offset: 16,
            entry_bytes: 2 * (size as u64).pow(2) + hires.map_or(0, |h| 2 * (h as u64).pow(2)),
            entries: Vec::new(),
            lesion_entry: vec![None; jobs],
            skipped: Vec::new(),
        })
    }

    /// Appends one entry's squares and records the entry (whose `offset` is set here).
    fn push(
        &mut self,
        mut entry: CacheEntry,
        lo: &Array2<u16>,
        hi: Option<&Array2<u16>>,
    ) -> Result<()> {
        write_u16s(&mut self.out, lo, self.path)?;
        if let Some(hi) = hi {
            write_u16s(&mut self.out, hi, self.path)?;
        }
        entry.offset = self.offset;
        self.entries.push(entry);
        self.offset += self.entry_bytes;
        Ok(())
    }

    /// Appends the crops of one full image: its lesions (or why each was skipped), then its
    /// background squares.
    fn append(&mut self, g: GroupResult) -> Result<()> {
        if let Some(e) = g.image_error {
            self.skipped.push(e);
        }
        for (j, r) in g.lesions {
            match r {
                Ok((bbox, square, lo, hi)) => {
                    self.lesion_entry[j] = Some(self.entries.len());
                    let entry = CacheEntry {
                        kind: CacheEntryKind::Lesion { job: j },
                        image: g.image,
                        bbox: Some(bbox),
                        square,
                        max_value: g.max_value,
                        offset: 0,
                    };
                    self.push(entry, &lo, hi.as_ref())?;
                }
                Err(s) => self.skipped.push(s),
            }
        }
        for (square, lo, hi) in g.backgrounds {
            let entry = CacheEntry {
                kind: CacheEntryKind::Background { image: g.image },
                image: g.image,
                bbox: None,
                square,
                max_value: g.max_value,
                offset: 0,
            };
            self.push(entry, &lo, hi.as_ref())?;
        }
        Ok(())
    }

    /// Writes the footer (key, configuration, images, entries, skipped jobs), its length and
    /// the closing magic, and syncs the file.
    fn finish(mut self, key: String, cfg: &CacheConfig, images: Vec<PathBuf>) -> Result<()> {
        let path = self.path;
        let footer = Footer {
            format: FORMAT.to_string(),
            key,
            crop: cfg.crop.clone(),
            background: cfg.background.clone(),
            seed: cfg.seed,
            size: cfg.crop.size,
            hires_size: cfg.crop.hires_size(),
            images,
            entries: std::mem::take(&mut self.entries),
            lesion_entry: std::mem::take(&mut self.lesion_entry),
            skipped: std::mem::take(&mut self.skipped),
            data_end: self.offset,
        };
        let json = serde_json::to_vec(&footer).map_err(|e| DdsmError::Index {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let out = &mut self.out;
        out.write_all(&json).map_err(|e| DdsmError::io(path, e))?;
        out.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(|e| DdsmError::io(path, e))?;
        out.write_all(MAGIC).map_err(|e| DdsmError::io(path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| DdsmError::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| DdsmError::io(path, e))
    }
}

impl CropCache {
    /// The cache file for `jobs` under `cfg`.
    pub fn path_for(jobs: &[CropJob], cfg: &CacheConfig) -> PathBuf {
        cfg.dir.join(format!("crops-{}.bin", cache_key(jobs, cfg)))
    }

    /// Opens the cache of `jobs` if it exists and matches, else builds it.
    pub fn open_or_build(
        jobs: &[CropJob],
        cfg: &CacheConfig,
        progress: &(dyn Fn(CropProgress) + Sync),
    ) -> Result<Self> {
        let key = cache_key(jobs, cfg);
        let path = cfg.dir.join(format!("crops-{key}.bin"));
        Self::remove_stale_temp_files(&cfg.dir);
        if path.exists() {
            if let Ok(c) = Self::open(&path, cfg.access) {
                if c.footer.key == key && c.footer.lesion_entry.len() == jobs.len() {
                    return Ok(c);
                }
            }
        }
        Self::build(jobs, cfg, progress)
    }

    /// Removes the temporary files (`crops-<key>.bin.tmp<pid>`) that builds killed midway
    /// left in a cache folder, only those whose process is gone (`/proc/<pid>`; without
    /// `/proc`, those older than a day); returns the files removed. Done whenever a cache is
    /// opened or built.
    pub fn remove_stale_temp_files(dir: &Path) -> Vec<PathBuf> {
        crate::stale::remove_stale_temps(dir, &|head| {
            head.strip_prefix("crops-")
                .and_then(|h| h.strip_suffix(".bin"))
                .is_some_and(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    }

    /// Opens or builds the cache of every entry of `index` (job `i` is entry `i`).
    pub fn for_index(
        index: &DatasetIndex,
        cfg: &CacheConfig,
        progress: &(dyn Fn(CropProgress) + Sync),
    ) -> Result<Self> {
        Self::open_or_build(&crop_jobs(index), cfg, progress)
    }

    /// Builds the cache of `jobs` (overwriting a previous one with the same key) and opens it.
    pub fn build(
        jobs: &[CropJob],
        cfg: &CacheConfig,
        progress: &(dyn Fn(CropProgress) + Sync),
    ) -> Result<Self> {
        cfg.crop.validate()?;
        let key = cache_key(jobs, cfg);
        std::fs::create_dir_all(&cfg.dir).map_err(|e| DdsmError::io(&cfg.dir, e))?;
        let path = cfg.dir.join(format!("crops-{key}.bin"));
        Self::remove_stale_temp_files(&cfg.dir);
        let tmp = crate::stale::temp_name(&path, true);
        let (images, groups) = group_by_image(jobs);
        let file = std::fs::File::create(&tmp).map_err(|e| DdsmError::io(&tmp, e))?;
        let result = (|| -> Result<()> {
            let mut writer = CacheWriter::start(file, &tmp, cfg, jobs.len())?;
            let total = groups.len();
            let done = AtomicUsize::new(0);
            let chunk = (rayon::current_num_threads() * 4).max(4);
            for (c, chunk_groups) in groups.chunks(chunk).enumerate() {
                let results: Vec<GroupResult> = chunk_groups
                    .par_iter()
                    .enumerate()
                    .map_init(fir::Resizer::new, |resizer, (k, g)| {
                        let image = c * chunk + k;
                        let r = process_group(image, &images[image], g, cfg, resizer);
                        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                        progress(CropProgress { done: d, total });
                        r
                    })
                    .collect();
                for g in results {
                    writer.append(g)?;
                }
            }
            writer.finish(key, cfg, images.clone())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(|e| DdsmError::io(&path, e))?;
        Self::open(&path, cfg.access)
    }

    /// Opens a cache file.
    pub fn open(path: &Path, access: CacheAccess) -> Result<Self> {
        let bad = |message: String| DdsmError::Index {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| DdsmError::io(path, e))?;
        let data = match access {
            CacheAccess::Mmap => Data::Mapped(map_file(&file).map_err(|e| DdsmError::io(path, e))?),
            CacheAccess::InMemory => {
                Data::Memory(std::fs::read(path).map_err(|e| DdsmError::io(path, e))?)
            }
        };
        let bytes = data.bytes();
        let n = bytes.len();
        if n < 32 || &bytes[..8] != MAGIC || &bytes[n - 8..] != MAGIC {
            return Err(bad(format!("not a crop cache ({n} bytes, bad magic)")));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&bytes[n - 16..n - 8]);
        let footer_len = u64::from_le_bytes(len8) as usize;
        if footer_len > n - 32 {
            return Err(bad(format!(
                "footer of {footer_len} bytes in a {n}-byte file"
            )));
        }
        let footer: Footer = serde_json::from_slice(&bytes[n - 16 - footer_len..n - 16])
            .map_err(|e| bad(format!("unreadable footer: {e}")))?;
        if footer.format != FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {FORMAT:?}",
                footer.format
            )));
        }
        if footer.data_end as usize != n - 16 - footer_len {
            return Err(bad(format!(
                "data ends at {} but the footer starts at {}",
                footer.data_end,
                n - 16 - footer_len
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            footer,
            data,
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache key (hash of the settings and source files).
    pub fn key(&self) -> &str {
        &self.footer.key
    }

    /// The crop settings the cache was built with.
    pub fn crop_config(&self) -> &CropConfig {
        &self.footer.crop
    }

    /// Side of the crops.
    pub fn size(&self) -> u32 {
        self.footer.size
    }

    /// Side of the high-resolution crops, if any.
    pub fn hires_size(&self) -> Option<u32> {
        self.footer.hires_size
    }

    /// The full images, in the order entries refer to them.
    pub fn images(&self) -> &[PathBuf] {
        &self.footer.images
    }

    /// Every entry (lesions and background patches).
    pub fn entries(&self) -> &[CacheEntry] {
        &self.footer.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.footer.entries.len()
    }

    /// Whether the cache has no entry.
    pub fn is_empty(&self) -> bool {
        self.footer.entries.is_empty()
    }

    /// The entry of job `job`, `None` if it was skipped.
    pub fn lesion_entry(&self, job: usize) -> Option<usize> {
        self.footer.lesion_entry.get(job).copied().flatten()
    }

    /// The indices of the background entries.
    pub fn background_entries(&self) -> Vec<usize> {
        self.footer
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.kind, CacheEntryKind::Background { .. }))
            .map(|(i, _)| i)
            .collect()
    }

    /// Sources that could not be cropped, with the reason.
    pub fn skipped(&self) -> &[CacheSkipped] {
        &self.footer.skipped
    }

    fn slice(&self, entry: usize, hires: bool) -> Result<(&[u8], u16)> {
        let e = self
            .footer
            .entries
            .get(entry)
            .ok_or_else(|| DdsmError::Invalid {
                what: "cache entry".into(),
                message: format!("{entry} is out of range (0..{})", self.footer.entries.len()),
            })?;
        let lo = 2 * (self.footer.size as usize).pow(2);
        let (start, len) = if hires {
            let h = self.footer.hires_size.ok_or_else(|| DdsmError::Invalid {
                what: "cache entry".into(),
                message: format!("{} holds no high-resolution crops", self.path.display()),
            })?;
            (e.offset as usize + lo, 2 * (h as usize).pow(2))
        } else {
            (e.offset as usize, lo)
        };
        let bytes = self.data.bytes();
        let b = bytes
            .get(start..start + len)
            .ok_or_else(|| DdsmError::Index {
                path: self.path.clone(),
                message: format!("entry {entry} lies beyond the end of the file"),
            })?;
        Ok((b, e.max_value))
    }

    /// The 16-bit pixels of an entry at the model size (`hires = false`) or the high
    /// resolution.
    ///
    /// # Shapes
    /// `[size, size]` or `[hires_size, hires_size]`.
    pub fn pixels(&self, entry: usize, hires: bool) -> Result<Array2<u16>> {
        let (b, _) = self.slice(entry, hires)?;
        let values: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let side = if hires {
            self.hires_size().unwrap_or(0)
        } else {
            self.size()
        } as usize;
        Array2::from_shape_vec((side, side), values).map_err(|e| DdsmError::Index {
            path: self.path().to_path_buf(),
            message: format!("entry {entry} is not {side} x {side}: {e}"),
        })
    }

    /// The normalised pixels of an entry, written to `out`.
    ///
    /// # Shapes
    /// `out` must hold `size * size` (or `hires_size^2`) values, row-major.
    pub fn read_f32(
        &self,
        entry: usize,
        hires: bool,
        norm: &Normalization,
        out: &mut [f32],
    ) -> Result<()> {
        let (b, max_value) = self.slice(entry, hires)?;
        if out.len() != b.len() / 2 {
            return Err(DdsmError::Invalid {
                what: "output buffer".into(),
                message: format!("{} values for a crop of {}", out.len(), b.len() / 2),
            });
        }
        let px: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        normalize(&px, max_value, norm, out);
        Ok(())
    }
}

/// Memory-maps a cache file read-only.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and cache files are never modified in place: they are
    // written under a temporary name and renamed, and a rebuild writes a new file (renaming
    // over the old one leaves an existing mapping on the old inode). Truncating the file from
    // outside while it is mapped is the one remaining hazard, as with any memory map.
    unsafe { memmap2::Mmap::map(file) }
}
