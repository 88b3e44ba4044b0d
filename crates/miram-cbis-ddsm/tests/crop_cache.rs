//! The crop cache: crops equal to direct cropping, rebuilt when a setting or a source file
//! changes, memory-mapped and in-memory access alike, and a corrupt source listed as skipped
//! rather than failing the build.

use std::path::Path;

use fast_image_resize::Resizer;
use miram_cbis_ddsm::crop::{
    lesion_crop, CacheAccess, CacheConfig, CropCache, CropConfig, CropJob, Normalization,
};
use miram_cbis_ddsm::{read_gray, write_gray_u16, DecodeLimits, DicomUids, GrayImage};

fn ids(n: u32) -> DicomUids {
    DicomUids {
        study_instance_uid: format!("1.2.3.{n}"),
        series_instance_uid: format!("1.2.3.{n}.1"),
        sop_instance_uid: format!("1.2.3.{n}.1.1"),
        ..DicomUids::default()
    }
}

/// A 200 x 300 image with a ramp and a mask with a rectangle at `(x, y)`.
fn write_case(dir: &Path, n: u32, x: u32, y: u32, bias: u16) -> CropJob {
    let (w, h) = (200u32, 300u32);
    let img = GrayImage::from_vec(
        w,
        h,
        (0..w * h)
            .map(|i| ((i % w) * 150 + (i / w) * 40) as u16 + bias)
            .collect(),
        u16::MAX,
    )
    .expect("width x height pixels");
    let mask = GrayImage::from_vec(
        w,
        h,
        (0..w * h)
            .map(|i| {
                let (px, py) = (i % w, i / w);
                if (x..x + 30).contains(&px) && (y..y + 50).contains(&py) {
                    255
                } else {
                    0
                }
            })
            .collect(),
        255,
    )
    .expect("width x height pixels");
    let full_image = dir.join(format!("full{n}.dcm"));
    let roi_mask = dir.join(format!("mask{n}.dcm"));
    write_gray_u16(&full_image, &img, &ids(n)).expect("write image");
    write_gray_u16(&roi_mask, &mask, &ids(100 + n)).expect("write mask");
    CropJob {
        full_image,
        roi_mask,
    }
}

#[test]
fn cache_holds_the_direct_crops_and_follows_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = vec![
        write_case(dir.path(), 1, 20, 30, 0),
        write_case(dir.path(), 2, 150, 260, 0), // near the corner: zero padding
    ];
    let crop = CropConfig {
        size: 24,
        ..CropConfig::multiscale(2)
    };
    let cfg = CacheConfig::new(dir.path().join("cache")).with_crop(crop.clone());
    let cache = CropCache::open_or_build(&jobs, &cfg, &|_| {}).expect("build");
    assert_eq!(cache.len(), 2);
    let limits = DecodeLimits::default();
    let mut resizer = Resizer::new();
    for (j, job) in jobs.iter().enumerate() {
        let img = read_gray(&job.full_image, &limits).expect("image");
        let mask = read_gray(&job.roi_mask, &limits).expect("mask");
        let direct = lesion_crop(&img, &mask, &crop, &mut resizer).expect("crop");
        let e = cache.lesion_entry(j).expect("entry");
        assert_eq!(cache.pixels(e, false).expect("pixels"), direct.image);
        assert_eq!(Some(cache.pixels(e, true).expect("hires")), direct.hires);
        assert_eq!(cache.entries()[e].bbox, Some(direct.bbox));
        // Normalised reads divide by the white level.
        let mut f = vec![0f32; 24 * 24];
        cache
            .read_f32(e, false, &Normalization::UnitRange, &mut f)
            .expect("f32");
        assert_eq!(f[5], direct.image[[0, 5]] as f32 / 65535.0);
    }
    // The same file in memory reads the same.
    let mem = CropCache::open(cache.path(), CacheAccess::InMemory).expect("in memory");
    assert_eq!(
        mem.pixels(1, true).expect("hires"),
        cache.pixels(1, true).expect("hires")
    );

    // Another setting: another key and file.
    let other = CacheConfig::new(dir.path().join("cache")).with_crop(CropConfig {
        margin: 0.2,
        ..crop.clone()
    });
    assert_ne!(CropCache::path_for(&jobs, &other), cache.path());

    // A changed source file: another key, a rebuild with the new pixels.
    let old_path = cache.path().to_path_buf();
    let old = cache.pixels(0, false).expect("pixels");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let changed = write_case(dir.path(), 1, 20, 30, 500);
    assert_eq!(changed, jobs[0]);
    let rebuilt = CropCache::open_or_build(&jobs, &cfg, &|_| {}).expect("rebuild");
    assert_ne!(rebuilt.path(), old_path);
    assert_ne!(rebuilt.pixels(0, false).expect("pixels"), old);
}

#[test]
fn corrupt_sources_are_skipped_with_their_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_case(dir.path(), 1, 20, 30, 0);
    let bad = write_case(dir.path(), 2, 40, 40, 0);
    // Truncate the second image in its pixel data.
    let bytes = std::fs::read(&bad.full_image).expect("read");
    std::fs::write(&bad.full_image, &bytes[..bytes.len() / 2]).expect("truncate");
    let missing_mask = CropJob {
        full_image: good.full_image.clone(),
        roi_mask: dir.path().join("nowhere.dcm"),
    };
    let jobs = vec![good, bad.clone(), missing_mask];
    let cfg = CacheConfig::new(dir.path().join("cache"));
    let cache = CropCache::open_or_build(&jobs, &cfg, &|_| {}).expect("build despite bad files");
    assert!(cache.lesion_entry(0).is_some());
    assert!(cache.lesion_entry(1).is_none());
    assert!(cache.lesion_entry(2).is_none());
    let skipped: Vec<_> = cache
        .skipped()
        .iter()
        .map(|s| (s.job, s.path.clone()))
        .collect();
    assert!(
        skipped.contains(&(Some(1), bad.full_image.clone())),
        "{skipped:?}"
    );
    assert!(
        skipped.contains(&(Some(2), dir.path().join("nowhere.dcm"))),
        "{skipped:?}"
    );
    assert!(cache.skipped().iter().all(|s| !s.message.is_empty()));
    // A file that is not a cache is an error, not a panic.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"MIRAMCC1 not really").expect("write");
    assert!(CropCache::open(&junk, CacheAccess::Mmap).is_err());
}

#[test]
fn temp_files_of_killed_builds_are_removed_when_the_cache_is_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = vec![write_case(dir.path(), 1, 20, 30, 0)];
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).expect("mkdir");
    // A writer that is gone (a child process that has exited and been reaped) and one that
    // is still running.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    let mut alive = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn");
    let stale = cache_dir.join(format!("crops-00112233aabbccdd.bin.tmp{gone_pid}"));
    let live = cache_dir.join(format!("crops-00112233aabbccdd.bin.tmp{}", alive.id()));
    let other = cache_dir.join(format!("notes.bin.tmp{gone_pid}"));
    for p in [&stale, &live, &other] {
        std::fs::write(p, b"partial").expect("write");
    }
    let cfg = CacheConfig::new(&cache_dir).with_crop(CropConfig {
        size: 16,
        ..CropConfig::paper()
    });
    let cache = CropCache::open_or_build(&jobs, &cfg, &|_| {}).expect("build");
    assert_eq!(cache.len(), 1);
    assert!(
        !stale.exists(),
        "the temp file of a finished process was kept"
    );
    assert!(
        live.exists(),
        "the temp file of a running process was removed"
    );
    assert!(other.exists(), "a file not of the cache was removed");
    // Opening an existing cache cleans up as well.
    std::fs::write(&stale, b"partial").expect("write");
    let again = CropCache::open_or_build(&jobs, &cfg, &|_| {}).expect("open");
    assert_eq!(again.path(), cache.path());
    assert!(!stale.exists());
    let _ = alive.kill();
    let _ = alive.wait();
}
