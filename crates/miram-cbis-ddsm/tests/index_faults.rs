//! Faults of a downloaded dataset that must be reported, never lost in silence: full images
//! that exist but do not decode (reported when indexing, with the file and the cause), every
//! image undecodable (said so, not "no images"), lesions whose crop cannot be made (listed by
//! the datasets), missing case-description CSVs or a folder in their place, files added to a
//! case folder after indexing (the saved index is rebuilt), and an index that cannot be saved.

mod index_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use index_support::{
    cases, checked_progress, cut_tail, garble_as_jpeg2000, patch_us, write_literal, write_tcia,
    Expected, FULL,
};
use miram_cbis_ddsm::crop::{CacheConfig, CropCache, CropConfig};
use miram_cbis_ddsm::csv::case_csv_name;
use miram_cbis_ddsm::index::{build_index, load_index, load_or_build_index, IndexOptions};
use miram_cbis_ddsm::loader::{unresolved_cases, CachedCrops, DropStage};
use miram_cbis_ddsm::tasks::Task;
use miram_cbis_ddsm::{
    write_gray_u16, AbnormalityType, DdsmError, DicomUids, GrayImage, OfficialSplit,
};

fn canonical(root: &Path, rel: &Path) -> PathBuf {
    root.join(rel).canonicalize().expect("canonical path")
}

type Writer = fn(&Path, &[index_support::Case]) -> Expected;

#[test]
fn undecodable_full_images_are_reported_when_indexing() {
    let layouts: [(&str, Writer); 2] = [("literal", write_literal), ("tcia", write_tcia)];
    for (name, write) in layouts {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let expected = write(root, &cases());
        // Rows 2 (mass test), 3 (calc train) and 4 (calc test) have a full image of their
        // own: a header pydicom refuses, pixel data cut short, JPEG 2000 garbage.
        let sick = [
            (2, "Samples per Pixel"),
            (3, "pixel data has"),
            (4, "JPEG 2000"),
        ];
        let full = |row: usize| canonical(root, &expected[row].0);
        patch_us(&full(2), tags::SAMPLES_PER_PIXEL, 0);
        cut_tail(&full(3), 100);
        garble_as_jpeg2000(&full(4));
        let index = build_index(root, &IndexOptions::default(), &checked_progress)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(index.entries.len(), 2, "{name}: {:?}", index.unresolved);
        assert_eq!(index.unresolved.len(), 3, "{name}");
        for (row, cause) in sick {
            let u = index
                .unresolved
                .iter()
                .find(|u| u.record.image_file_path == cases()[row].record.image_file_path)
                .unwrap_or_else(|| panic!("{name}: row {row} is not listed as unresolved"));
            assert!(u.is_undecodable(), "{name}: row {row}: {u:?}");
            assert_eq!(u.undecodable[0].path, full(row), "{name}: row {row}");
            let shown = u.undecodable[0].to_string();
            assert!(
                shown.contains(&*full(row).to_string_lossy()),
                "{name}: row {row}: the file is not named: {shown}"
            );
            let text = if cause == "JPEG 2000" {
                // The decoder's own words vary; the transfer syntax does not.
                shown.to_lowercase().contains("decod")
            } else {
                shown.contains(cause)
            };
            assert!(text, "{name}: row {row}: the cause is not given: {shown}");
        }
        // The test cases of the task are among the dropped ones, named with file and cause.
        let dropped = unresolved_cases(&index, &Task::PathologyBinary).expect("dropped");
        let test: Vec<_> = dropped
            .iter()
            .filter(|d| d.split == OfficialSplit::Test)
            .collect();
        assert_eq!(test.len(), 2, "{name}: {dropped:?}");
        assert!(test.iter().all(|d| d.stage == DropStage::Index));
        assert!(test.iter().any(|d| d.file == full(2)));
        // Mass margins leave calcifications out: only the mass test row is its.
        let margins = unresolved_cases(&index, &Task::MassMargins).expect("dropped");
        assert_eq!(margins.len(), 1, "{name}: {margins:?}");
        assert_eq!(margins[0].file, full(2));
    }
}

#[test]
fn every_image_undecodable_is_said_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let expected = write_tcia(root, &cases());
    let mut fulls: Vec<PathBuf> = expected.iter().map(|e| canonical(root, &e.0)).collect();
    fulls.sort();
    fulls.dedup();
    assert_eq!(fulls.len(), 4);
    for f in &fulls {
        cut_tail(f, 64);
    }
    let err = build_index(root, &IndexOptions::default(), &checked_progress)
        .expect_err("nothing decodes");
    let msg = err.to_string();
    match &err {
        DdsmError::Undecodable {
            failed,
            first_file,
            rows_missing,
            ..
        } => {
            assert_eq!(*failed, 4, "{msg}");
            assert_eq!(*rows_missing, 0, "{msg}");
            assert!(fulls.contains(first_file), "{msg}");
        }
        other => panic!("expected Undecodable, got {other:?}"),
    }
    assert!(
        msg.contains("all 4 images failed to decode; first: "),
        "{msg}"
    );
    assert!(msg.contains("pixel data has"), "{msg}");
    assert!(!msg.contains("no images"), "{msg}");
}

#[test]
fn lesions_that_cannot_be_cropped_are_listed_with_file_and_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let expected = write_tcia(root, &cases());
    let index = build_index(root, &IndexOptions::default(), &checked_progress).expect("index");
    assert_eq!(index.entries.len(), 5);
    // The mask of the mass test row (2) becomes empty after indexing: its crop cannot be made.
    let mask = canonical(root, &expected[2].2);
    let head = miram_cbis_ddsm::read_header(&mask).expect("header");
    let empty = GrayImage::from_vec(
        FULL.0,
        FULL.1,
        vec![0; (FULL.0 * FULL.1) as usize],
        u16::MAX,
    )
    .expect("width x height pixels");
    let ids = DicomUids {
        study_instance_uid: head.study_instance_uid,
        series_instance_uid: head.series_instance_uid,
        sop_instance_uid: head.sop_instance_uid,
        ..DicomUids::default()
    };
    write_gray_u16(&mask, &empty, &ids).expect("rewrite");
    let cfg = CacheConfig::new(root.join("cache")).with_crop(CropConfig {
        size: 16,
        ..CropConfig::paper()
    });
    let cache = Arc::new(CropCache::for_index(&index, &cfg, &|_| {}).expect("cache"));
    let records: Vec<_> = index.entries.iter().map(|e| e.record.clone()).collect();
    let labels = Task::PathologyBinary.label(&records).expect("labels");
    let test: Vec<usize> = labels
        .items
        .iter()
        .enumerate()
        .filter(|(_, it)| records[it.record].split == OfficialSplit::Test)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(test.len(), 2);
    let set = CachedCrops::for_task(cache, &index, &labels, Some(&test)).expect("test set");
    use miram_cbis_ddsm::loader::CropDataset;
    assert_eq!(set.len(), 1);
    let dropped = set.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].stage, DropStage::Cache);
    assert_eq!(dropped[0].split, OfficialSplit::Test);
    assert_eq!(dropped[0].file, mask);
    let shown = dropped[0].to_string();
    assert!(shown.contains("no non-zero pixel"), "{shown}");
    assert!(shown.contains(&*mask.to_string_lossy()), "{shown}");
}

#[test]
fn missing_case_csvs_are_named_and_a_folder_in_place_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_tcia(root, &cases());
    let calc_test = case_csv_name(AbnormalityType::Calcification, OfficialSplit::Test);
    let calc_train = case_csv_name(AbnormalityType::Calcification, OfficialSplit::Train);
    std::fs::remove_file(root.join(&calc_test)).expect("remove");
    std::fs::remove_file(root.join(&calc_train)).expect("remove");
    let index = build_index(root, &IndexOptions::default(), &checked_progress).expect("index");
    assert_eq!(
        index.missing_csvs,
        vec![calc_train.clone(), calc_test.clone()]
    );
    assert_eq!(index.entries.len(), 3);
    // Saved and reused, the missing ones are still known.
    let saved = load_or_build_index(root, &IndexOptions::default(), &checked_progress)
        .expect("build and save");
    let loaded = load_index(root, &IndexOptions::default())
        .expect("load")
        .expect("current");
    assert_eq!(loaded.missing_csvs, saved.missing_csvs);
    // A folder where a CSV is expected is an error naming it, whatever else is there.
    std::fs::create_dir(root.join(&calc_test)).expect("mkdir");
    let err = build_index(root, &IndexOptions::default(), &checked_progress)
        .expect_err("a folder in place of a CSV");
    match &err {
        DdsmError::NotAFile { path, .. } => assert_eq!(path, &root.join(&calc_test)),
        other => panic!("expected NotAFile, got {other:?}"),
    }
    assert!(err.to_string().contains(&calc_test), "{err}");
    // A folder in place of the one CSV of a split is refused too.
    std::fs::remove_dir(root.join(&calc_test)).expect("rmdir");
    let mass_test = case_csv_name(AbnormalityType::Mass, OfficialSplit::Test);
    std::fs::remove_file(root.join(&mass_test)).expect("remove");
    std::fs::create_dir(root.join(&mass_test)).expect("mkdir");
    assert!(matches!(
        build_index(root, &IndexOptions::default(), &checked_progress),
        Err(DdsmError::NotAFile { .. })
    ));
}

#[test]
fn a_file_added_to_a_case_folder_rebuilds_the_saved_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let expected = write_tcia(root, &cases());
    let first =
        load_or_build_index(root, &IndexOptions::default(), &checked_progress).expect("build");
    assert_eq!(first.entries.len(), 5);
    assert!(load_index(root, &IndexOptions::default())
        .expect("load")
        .is_some());
    // A second full image appears in the case folder of row 3 (a re-download into another
    // series folder): the row no longer resolves to one full image, the index must notice.
    let full = canonical(root, &expected[3].0);
    let series_dir = full.parent().and_then(Path::parent).expect("study folder");
    let extra = series_dir
        .join("1.000000-full mammogram images-99999")
        .join("1-1.dcm");
    std::fs::create_dir_all(extra.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&full, &extra).expect("copy");
    assert!(
        load_index(root, &IndexOptions::default())
            .expect("load")
            .is_none(),
        "a file added to a case folder left the saved index current"
    );
    let second =
        load_or_build_index(root, &IndexOptions::default(), &checked_progress).expect("rebuild");
    assert!(!second.loaded_from_cache);
    assert_eq!(second.entries.len(), 4, "{:?}", second.unresolved);
    // Removed again: rebuilt again, and the row is back.
    std::fs::remove_file(&extra).expect("remove");
    assert!(load_index(root, &IndexOptions::default())
        .expect("load")
        .is_none());
    let third =
        load_or_build_index(root, &IndexOptions::default(), &checked_progress).expect("rebuild");
    assert_eq!(third.entries.len(), 5);
}

#[test]
fn an_index_that_cannot_be_saved_names_no_library_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_tcia(root, &cases());
    let blocker = root.join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("write");
    let opts = IndexOptions {
        cache_path: Some(blocker.join("index.json")),
        ..IndexOptions::default()
    };
    let err = load_or_build_index(root, &opts, &checked_progress).expect_err("unwritable");
    assert!(matches!(err, DdsmError::IndexNotWritable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("index.json"), "{msg}");
    assert!(!msg.contains("IndexOptions"), "{msg}");
}
