//! The generator writes what it says: files and CSVs that the crate's own readers take back
//! with the same labels and sizes, the real crop/mask file order, and byte-identical files
//! for the same seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miram_cbis_ddsm::csv::read_case_csv;
use miram_cbis_ddsm::dicom::{read_gray, read_header, DecodeLimits};
use miram_cbis_ddsm::synth::{synthesize, SynthConfig, SynthLayout, SynthManifest};
use miram_cbis_ddsm::AbnormalityType;

/// A small configuration that still has both types and both splits.
fn tiny(seed: u64, layout: SynthLayout) -> SynthConfig {
    SynthConfig {
        patients: 6,
        image_width: 224,
        image_height: 368,
        ..SynthConfig::small()
    }
    .with_seed(seed)
    .with_layout(layout)
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn same_seed_writes_identical_files_and_another_seed_does_not() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let c = tempfile::tempdir().expect("tempdir");
    synthesize(a.path(), &tiny(3, SynthLayout::Literal), &|_| {}).expect("synthesize a");
    // Another thread count must not change a byte.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| synthesize(b.path(), &tiny(3, SynthLayout::Literal), &|_| {}))
        .expect("synthesize b");
    synthesize(c.path(), &tiny(4, SynthLayout::Literal), &|_| {}).expect("synthesize c");
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert!(fa.len() > 10);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(fb[k] == *v, "{} differs between runs", k.display());
    }
    assert_ne!(fa, fc);
}

#[test]
fn csvs_and_dicoms_read_back_as_the_manifest_says() {
    for layout in [SynthLayout::Literal, SynthLayout::Tcia] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let progress = std::sync::Mutex::new(Vec::new());
        let m = synthesize(root, &tiny(11, layout), &|p| {
            progress.lock().expect("lock").push((p.done, p.total))
        })
        .expect("synthesize");
        let progress = progress.into_inner().expect("lock");
        assert_eq!(progress.len(), m.images.len());
        assert!(progress.iter().any(|&(d, t)| d == t));
        assert_eq!(SynthManifest::load(root).expect("manifest"), m);
        // Both types and both splits.
        assert_eq!(m.csv_files.len(), 4, "{:?}", m.csv_files);
        let limits = DecodeLimits::default();
        for name in &m.csv_files {
            let records = read_case_csv(&root.join(name)).expect("csv");
            let expected: Vec<_> = m
                .abnormalities
                .iter()
                .filter(|a| &a.csv_file == name)
                .collect();
            assert_eq!(records.len(), expected.len(), "{name}");
            // The real files' quirk: the second image path ends with a newline inside quotes.
            let text = std::fs::read_to_string(root.join(name)).expect("text");
            assert!(
                text.contains(".dcm\n\""),
                "{name} lacks the embedded newline"
            );
            for (r, a) in records.iter().zip(expected) {
                assert_eq!(r.patient_id, a.patient_id);
                assert_eq!(r.abnormality_id, a.abnormality_id);
                assert_eq!(r.pathology, a.pathology);
                assert_eq!(r.categories, a.categories);
                assert_eq!(r.breast_density, Some(a.breast_density));
                assert_eq!(r.image_folder(), a.image_folder);
                assert_eq!(r.abnormality_folder(), a.abnormality_folder);
                // The crop/mask numbering of the real CSVs.
                let (crop_no, mask_no) = match a.abnormality_type {
                    AbnormalityType::Mass => ("000000.dcm", "000001.dcm"),
                    AbnormalityType::Calcification => ("000001.dcm", "000000.dcm"),
                };
                assert!(r.cropped_image_file_path.ends_with(crop_no));
                assert!(r.roi_mask_file_path.ends_with(mask_no));
                // The files: a full image, a small crop and a binary full-size mask whose
                // box is the manifest's.
                let full = read_header(&root.join(&a.full_image)).expect("full header");
                assert_eq!((full.columns, full.rows), (a.image_width, a.image_height));
                assert_eq!(full.photometric_interpretation, "MONOCHROME2");
                assert_eq!(full.bits_stored, 16);
                assert_eq!(
                    full.series_description.as_deref(),
                    Some("full mammogram images")
                );
                if layout == SynthLayout::Literal {
                    assert_eq!(
                        root.join(&a.full_image),
                        root.join(r.image_file_path.trim())
                    );
                    assert_eq!(
                        root.join(&a.crop),
                        root.join(r.cropped_image_file_path.trim())
                    );
                } else {
                    assert!(a.full_image.starts_with("CBIS-DDSM"));
                    assert!(a.full_image.ends_with("1-1.dcm"));
                }
                let crop = read_header(&root.join(&a.crop)).expect("crop header");
                assert_eq!(crop.study_instance_uid, a.crop_uids.study);
                assert_eq!(crop.series_description.as_deref(), Some("cropped images"));
                let [x0, y0, x1, y1] = a.roi_bbox;
                assert_eq!((crop.columns, crop.rows), (x1 - x0, y1 - y0));
                let mask = read_gray(&root.join(&a.roi_mask), &limits).expect("mask");
                assert!(mask.is_binary());
                assert_eq!(
                    (mask.width(), mask.height()),
                    (a.image_width, a.image_height)
                );
                let area = mask.as_slice().iter().filter(|&&v| v > 0).count() as u64;
                assert_eq!(area, a.roi_area);
            }
        }
    }
}
