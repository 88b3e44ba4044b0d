//! Resolving CSV rows to files in the three layouts users have (literal CSV paths, a TCIA
//! download, the Kaggle JPEG copy): every row to the right full image, crop and ROI mask,
//! crop and mask told apart by content whatever the file order, and detection of the layout.

mod index_support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use index_support::{
    cases, checked_progress, write_kaggle, write_literal, write_tcia, Expected, FULL,
};
use miram_cbis_ddsm::index::{
    build_index, ContentCheck, ImageKind, IndexOptions, IndexProgress, IndexStage,
};
use miram_cbis_ddsm::{read_image, DatasetIndex, DecodeLimits, Layout};

/// Checks that every row resolved to the expected files, in CSV order.
fn check(index: &DatasetIndex, root: &Path, expected: &Expected, kind: ImageKind) {
    assert!(
        index.unresolved.is_empty(),
        "unresolved: {:#?}",
        index.unresolved
    );
    let cases = cases();
    assert_eq!(index.entries.len(), expected.len());
    // The CSVs are read mass train, mass test, calc train, calc test: the order of `cases`.
    let root = root.canonicalize().expect("root");
    for ((e, (full, crop, mask)), c) in index.entries.iter().zip(expected).zip(&cases) {
        let name = &e.record.abnormality_folder();
        assert_eq!(*name, c.record.abnormality_folder());
        assert_eq!(e.record.pathology, c.record.pathology);
        assert_eq!(e.kind, kind);
        assert_eq!(e.full_image, root.join(full), "{name}: full image");
        assert_eq!(e.crop, root.join(crop), "{name}: crop");
        assert_eq!(e.roi_mask, root.join(mask), "{name}: mask");
        assert_eq!(e.full_size, FULL);
        assert_eq!(e.mask_size, FULL);
        assert_eq!(e.crop_size, (c.crop.width(), c.crop.height()));
        // What the index calls the mask is the binary image.
        let m = read_image(&e.roi_mask, &DecodeLimits::default()).expect("mask decodes");
        assert!(m.is_nearly_binary(m.max_value / 8, 0.02), "{name}");
    }
}

#[test]
fn literal_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = write_literal(dir.path(), &cases());
    for check_mode in [ContentCheck::WhenAmbiguous, ContentCheck::Always] {
        let opts = IndexOptions {
            layout: Layout::Literal,
            content_check: check_mode,
            ..IndexOptions::default()
        };
        let index = build_index(dir.path(), &opts, &checked_progress).expect("index");
        assert_eq!(index.layout, Layout::Literal);
        check(&index, dir.path(), &expected, ImageKind::Dicom);
    }
}

#[test]
fn tcia_download() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = write_tcia(dir.path(), &cases());
    for check_mode in [ContentCheck::WhenAmbiguous, ContentCheck::Always] {
        let opts = IndexOptions {
            layout: Layout::Tcia,
            content_check: check_mode,
            ..IndexOptions::default()
        };
        let index = build_index(dir.path(), &opts, &checked_progress).expect("index");
        check(&index, dir.path(), &expected, ImageKind::Dicom);
    }
}

#[test]
fn tcia_root_is_the_cbis_ddsm_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = write_tcia(dir.path(), &cases());
    // The user points at `<download>/CBIS-DDSM`; the CSVs sit beside it.
    let inner = dir.path().join("CBIS-DDSM");
    let index = build_index(&inner, &IndexOptions::default(), &checked_progress).expect("index");
    assert_eq!(index.layout, Layout::Tcia);
    let stripped: Expected = expected
        .into_iter()
        .map(|(a, b, c)| {
            let s =
                |p: std::path::PathBuf| p.strip_prefix("CBIS-DDSM").expect("prefix").to_path_buf();
            (s(a), s(b), s(c))
        })
        .collect();
    check(&index, &inner, &stripped, ImageKind::Dicom);
}

#[test]
fn kaggle_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = write_kaggle(dir.path(), &cases());
    for check_mode in [ContentCheck::WhenAmbiguous, ContentCheck::Always] {
        let opts = IndexOptions {
            layout: Layout::Kaggle,
            content_check: check_mode,
            ..IndexOptions::default()
        };
        let index = build_index(dir.path(), &opts, &checked_progress).expect("index");
        check(&index, dir.path(), &expected, ImageKind::Jpeg);
    }
    let full =
        read_image(&dir.path().join(&expected[0].0), &DecodeLimits::default()).expect("jpeg");
    assert_eq!(
        (full.width(), full.height(), full.max_value),
        (FULL.0, FULL.1, 255)
    );
}

#[test]
fn layouts_are_detected() {
    type Writer = fn(&Path, &[index_support::Case]) -> Expected;
    let writers: [(Layout, Writer); 3] = [
        (Layout::Literal, write_literal),
        (Layout::Tcia, write_tcia),
        (Layout::Kaggle, write_kaggle),
    ];
    for (layout, write) in writers {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected = write(dir.path(), &cases());
        let stages = Mutex::new(Vec::new());
        let calls = AtomicUsize::new(0);
        let progress = |p: IndexProgress| {
            assert!(p.done <= p.total);
            calls.fetch_add(1, Ordering::Relaxed);
            if p.done == p.total {
                stages.lock().expect("lock").push(p.stage);
            }
        };
        let index = build_index(dir.path(), &IndexOptions::default(), &progress).expect("index");
        assert_eq!(index.layout, layout);
        let kind = if layout == Layout::Kaggle {
            ImageKind::Jpeg
        } else {
            ImageKind::Dicom
        };
        check(&index, dir.path(), &expected, kind);
        let stages = stages.into_inner().expect("lock");
        assert!(
            stages.contains(&IndexStage::ReadingCsv),
            "{layout:?}: {stages:?}"
        );
        assert!(
            stages.contains(&IndexStage::Resolving),
            "{layout:?}: {stages:?}"
        );
        if layout != Layout::Literal {
            assert!(
                stages.contains(&IndexStage::ReadingHeaders),
                "{layout:?}: {stages:?}"
            );
        }
        assert!(calls.load(Ordering::Relaxed) >= 5);
    }
}

#[test]
fn both_files_binary_is_reported_not_guessed() {
    // A crop replaced by a second mask-like image of the full size: nothing tells them apart.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cs = cases();
    cs[4].crop = cs[4].mask.clone();
    write_literal(dir.path(), &cs);
    let index =
        build_index(dir.path(), &IndexOptions::default(), &checked_progress).expect("index");
    assert_eq!(index.entries.len(), 4);
    assert_eq!(index.unresolved.len(), 1);
    let u = &index.unresolved[0];
    assert!(u
        .source
        .file
        .ends_with("calc_case_description_test_set.csv"));
    assert_eq!(u.source.row, 1);
    assert!(u.reason.contains("both binary"), "{}", u.reason);
}
