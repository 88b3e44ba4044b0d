//! Decode + crop + resize on full-size generated mammograms: the work of building the crop
//! cache, per lesion (read the 3000 x 5000 16-bit full image and its ROI mask, find the box,
//! crop the square, resize to 112 px with Catmull-Rom), reported in images per second.
//! `benches/pipeline_pydicom.py` does the same with pydicom + Pillow on the same files.
//!
//! ```text
//! cargo bench -p miram-cbis-ddsm --bench pipeline
//! python3 crates/miram-cbis-ddsm/benches/pipeline_pydicom.py target/tmp/miram-pipeline-bench
//! ```
//!
//! The dataset (`SynthConfig::medium()` with 4 patients) is generated once into
//! `$MIRAM_BENCH_DATA` (default `target/tmp/miram-pipeline-bench`) and reused.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fast_image_resize::Resizer;
use miram_cbis_ddsm::crop::{
    crop_from_files, lesion_crop, CacheConfig, CropCache, CropConfig, CropJob, Normalization,
};
use miram_cbis_ddsm::synth::{synthesize, SynthConfig, SynthManifest};
use miram_cbis_ddsm::{read_image, DecodeLimits};

fn data_dir() -> PathBuf {
    std::env::var_os("MIRAM_BENCH_DATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_TARGET_TMPDIR"),
                "/miram-pipeline-bench"
            ))
        },
        PathBuf::from,
    )
}

fn dataset(root: &Path) -> SynthManifest {
    let cfg = SynthConfig {
        patients: 4,
        ..SynthConfig::medium()
    };
    match SynthManifest::load(root) {
        Ok(m) if m.config == cfg => m,
        _ => {
            eprintln!(
                "generating {} (medium preset, 4 patients)...",
                root.display()
            );
            synthesize(root, &cfg, &|_| {}).expect("generate the benchmark dataset")
        }
    }
}

fn bench(c: &mut Criterion) {
    let root = data_dir();
    let m = dataset(&root);
    let jobs: Vec<CropJob> = m
        .abnormalities
        .iter()
        .map(|a| CropJob {
            full_image: root.join(&a.full_image),
            roi_mask: root.join(&a.roi_mask),
        })
        .collect();
    let limits = DecodeLimits::mammogram();
    let crop = CropConfig::paper();
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(jobs.len() as u64));
    // One thread: decode the whole full image and mask, crop, resize (what the pydicom +
    // Pillow script does).
    group.bench_function("decode_crop_resize_1_thread", |b| {
        let mut resizer = Resizer::new();
        b.iter(|| {
            for j in &jobs {
                let img = read_image(&j.full_image, &limits).expect("image");
                let mask = read_image(&j.roi_mask, &limits).expect("mask");
                black_box(lesion_crop(&img, &mask, &crop, &mut resizer).expect("crop"));
            }
        })
    });
    // The crate's path: the mask whole, then only the rows of the crop's square.
    group.bench_function("crop_from_files_1_thread", |b| {
        let mut resizer = Resizer::new();
        b.iter(|| {
            for j in &jobs {
                black_box(
                    crop_from_files(&j.full_image, &j.roi_mask, &crop, &limits, &mut resizer)
                        .expect("crop"),
                );
            }
        })
    });
    // The decoding alone, to see where the time goes.
    group.bench_function("decode_only_1_thread", |b| {
        b.iter(|| {
            for j in &jobs {
                black_box(read_image(&j.full_image, &limits).expect("image"));
                black_box(read_image(&j.roi_mask, &limits).expect("mask"));
            }
        })
    });
    // The cache build, parallel over images (rayon, all cores), as a user runs it.
    let cache_dir = root.join("bench-cache");
    group.bench_function("cache_build_parallel", |b| {
        let cfg = CacheConfig::new(&cache_dir);
        b.iter(|| black_box(CropCache::build(&jobs, &cfg, &|_| {}).expect("cache")))
    });
    // An epoch's reads once the cache exists: normalised f32 crops from the memory map.
    let cache =
        CropCache::open_or_build(&jobs, &CacheConfig::new(&cache_dir), &|_| {}).expect("cache");
    group.bench_function("cached_read_f32", |b| {
        let mut out = vec![0f32; 112 * 112];
        b.iter(|| {
            for e in 0..cache.len() {
                cache
                    .read_f32(e, false, &Normalization::UnitRange, &mut out)
                    .expect("read");
                black_box(&out);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
