//! The saved index (reused while the files are unchanged, rebuilt when one changes or goes
//! missing), rows that cannot be resolved (listed with the paths tried), paths that leave the
//! dataset root (refused), and a dataset without images (an error naming the root).

mod index_support;

use std::path::Path;

use index_support::{cases, checked_progress, write_csvs, write_literal, write_tcia};
use miram_cbis_ddsm::dicom::write_gray_u16;
use miram_cbis_ddsm::index::{
    build_index, index_path, load_index, load_or_build_index, IndexOptions, INDEX_FILE_NAME,
};
use miram_cbis_ddsm::layout::resolve_within;
use miram_cbis_ddsm::{DdsmError, DicomUids, GrayImage, Layout};

fn opts() -> IndexOptions {
    IndexOptions::default()
}

#[test]
fn saved_index_is_reused_until_a_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let expected = write_tcia(root, &cases());
    let first = load_or_build_index(root, &opts(), &checked_progress).expect("build");
    assert!(!first.loaded_from_cache);
    assert!(root.join(INDEX_FILE_NAME).is_file());
    assert_eq!(index_path(root, &opts()), root.join(INDEX_FILE_NAME));
    let second = load_or_build_index(root, &opts(), &checked_progress).expect("load");
    assert!(second.loaded_from_cache);
    assert_eq!(second.entries, first.entries);
    assert_eq!(second.unresolved, first.unresolved);
    assert_eq!(second.layout, Layout::Tcia);
    // A different layout request does not reuse it.
    let literal = IndexOptions {
        layout: Layout::Literal,
        ..opts()
    };
    assert!(load_index(root, &literal).expect("load").is_none());

    // A changed image (other size): rebuilt, then reused again.
    let crop = root.join(&expected[0].1);
    let img = GrayImage::from_vec(30, 22, (0..660).map(|v| v as u16 * 7).collect(), u16::MAX)
        .expect("width x height pixels");
    let head = miram_cbis_ddsm::read_header(&crop).expect("header");
    let ids = DicomUids {
        study_instance_uid: head.study_instance_uid,
        series_instance_uid: head.series_instance_uid,
        sop_instance_uid: head.sop_instance_uid,
        patient_id: head.patient_id.unwrap_or_default(),
        series_description: "cropped images".into(),
        ..DicomUids::default()
    };
    write_gray_u16(&crop, &img, &ids).expect("rewrite");
    let third = load_or_build_index(root, &opts(), &checked_progress).expect("rebuild");
    assert!(!third.loaded_from_cache);
    assert_eq!(third.entries[0].crop_size, (30, 22));
    assert!(
        load_or_build_index(root, &opts(), &checked_progress)
            .expect("load")
            .loaded_from_cache
    );

    // A missing image: rebuilt, and the row is listed as unresolved.
    std::fs::remove_file(root.join(&expected[2].0)).expect("remove");
    let fourth = load_or_build_index(root, &opts(), &checked_progress).expect("rebuild");
    assert!(!fourth.loaded_from_cache);
    assert_eq!(fourth.entries.len(), 4);
    assert_eq!(fourth.unresolved.len(), 1);
    assert!(fourth.unresolved[0]
        .source
        .file
        .ends_with("mass_case_description_test_set.csv"));
    // Putting the file back makes the saved index stale again (a tried path appeared).
    let c = &cases()[2];
    let full_ids = DicomUids {
        study_instance_uid: c.study.clone(),
        series_instance_uid: c.full_series.clone(),
        sop_instance_uid: format!("{}.1", c.full_series),
        patient_id: c.record.image_folder(),
        series_description: "full mammogram images".into(),
        ..DicomUids::default()
    };
    assert!(
        load_or_build_index(root, &opts(), &checked_progress)
            .expect("load")
            .loaded_from_cache
    );
    write_gray_u16(&root.join(&expected[2].0), &c.full, &full_ids).expect("restore");
    let fifth = load_or_build_index(root, &opts(), &checked_progress).expect("rebuild");
    assert!(!fifth.loaded_from_cache);
    assert!(fifth.unresolved.is_empty(), "{:?}", fifth.unresolved);

    // A changed CSV: rebuilt.
    let csv = root.join("calc_case_description_test_set.csv");
    let text = std::fs::read_to_string(&csv).expect("csv");
    std::fs::write(&csv, text.replace(",BENIGN,", ",MALIGNANT,")).expect("edit");
    let sixth = load_or_build_index(root, &opts(), &checked_progress).expect("rebuild");
    assert!(!sixth.loaded_from_cache);
    assert!(sixth.entries[4].record.pathology.is_malignant());
}

#[test]
fn cache_path_and_corrupt_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache dir");
    let root = dir.path();
    write_literal(root, &cases());
    let o = IndexOptions {
        cache_path: Some(cache.path().join("idx.json")),
        ..opts()
    };
    assert!(
        !load_or_build_index(root, &o, &checked_progress)
            .expect("build")
            .loaded_from_cache
    );
    assert!(cache.path().join("idx.json").is_file());
    assert!(!root.join(INDEX_FILE_NAME).exists());
    assert!(
        load_or_build_index(root, &o, &checked_progress)
            .expect("load")
            .loaded_from_cache
    );
    // A corrupt saved index is an error for load_index and rebuilt by load_or_build_index.
    std::fs::write(cache.path().join("idx.json"), b"{ not json").expect("corrupt");
    assert!(matches!(load_index(root, &o), Err(DdsmError::Index { .. })));
    assert!(
        !load_or_build_index(root, &o, &checked_progress)
            .expect("rebuild")
            .loaded_from_cache
    );
}

#[test]
fn unresolved_rows_list_the_paths_tried() {
    for tcia in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let expected = if tcia {
            write_tcia(root, &cases())
        } else {
            write_literal(root, &cases())
        };
        // Row 3 (mass test) loses its mask, row 5 (calc test) its whole abnormality folder.
        std::fs::remove_file(root.join(&expected[2].2)).expect("remove mask");
        let abn = root.join(&expected[4].1);
        let abn_folder = if tcia {
            abn.parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .expect("folder")
                .to_path_buf()
        } else {
            root.join(cases()[4].record.abnormality_folder())
        };
        std::fs::remove_dir_all(&abn_folder).expect("remove folder");
        let index = build_index(root, &opts(), &checked_progress).expect("index");
        assert_eq!(index.entries.len(), 3, "tcia={tcia}");
        assert_eq!(index.unresolved.len(), 2, "tcia={tcia}");
        let u3 = &index.unresolved[0];
        assert!(u3
            .source
            .file
            .ends_with("mass_case_description_test_set.csv"));
        assert_eq!(u3.source.row, 1);
        assert!(!u3.tried.is_empty());
        let u5 = &index.unresolved[1];
        assert!(u5
            .source
            .file
            .ends_with("calc_case_description_test_set.csv"));
        let real_folder = root
            .canonicalize()
            .expect("root")
            .join(abn_folder.strip_prefix(root).expect("inside"));
        assert!(
            u5.tried.iter().any(|p| p.starts_with(&real_folder)),
            "tcia={tcia}: {:?} not in {:?}",
            real_folder,
            u5.tried
        );
        assert!(!u5.reason.is_empty());
        if tcia {
            assert!(u5.reason.contains("does not exist"), "{}", u5.reason);
        } else {
            assert!(u5.reason.contains("not found"), "{}", u5.reason);
        }
    }
}

#[test]
fn paths_leaving_the_root_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let root = dir.path();
    let mut cs = cases();
    write_literal(root, &cs);
    // A file outside the root, reachable by `..`, by an absolute path and by a symlink.
    let target = outside.path().join("secret.dcm");
    std::fs::copy(root.join(&cs[0].record.image_file_path), &target).expect("copy");
    let depth = root.components().count();
    let dotdot = format!(
        "{}{}",
        "../".repeat(depth + 2),
        target.display().to_string().trim_start_matches('/')
    );
    cs[0].record.image_file_path = dotdot.clone();
    cs[1].record.image_file_path = target.display().to_string();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&target, root.join("link.dcm")).expect("symlink");
        cs[3].record.image_file_path = "link.dcm".into();
    }
    write_csvs(root, &cs);
    let index = build_index(
        root,
        &IndexOptions {
            layout: Layout::Literal,
            ..opts()
        },
        &checked_progress,
    )
    .expect("index");
    let escaped = if cfg!(unix) { 3 } else { 2 };
    assert_eq!(index.unresolved.len(), escaped, "{:#?}", index.unresolved);
    for u in &index.unresolved {
        assert!(u.reason.contains("leaves the dataset root"), "{}", u.reason);
    }
    for e in &index.entries {
        assert!(e.full_image.starts_with(&index.root));
    }
    assert!(matches!(
        resolve_within(root, &dotdot),
        Err(DdsmError::OutsideRoot { .. })
    ));
    #[cfg(unix)]
    assert!(matches!(
        resolve_within(root, "link.dcm"),
        Err(DdsmError::OutsideRoot { .. })
    ));

    // A saved index edited to point outside the root is refused on load.
    let dir2 = tempfile::tempdir().expect("tempdir");
    write_literal(dir2.path(), &cases());
    load_or_build_index(dir2.path(), &opts(), &checked_progress).expect("build");
    let saved = dir2.path().join(INDEX_FILE_NAME);
    let text = std::fs::read_to_string(&saved).expect("saved");
    let first = format!("\"full_image\":\"{}\"", cases()[0].record.image_file_path);
    assert!(text.contains(&first), "{text}");
    let tampered = text.replacen(&first, "\"full_image\":\"../../../etc/passwd\"", 1);
    std::fs::write(&saved, tampered).expect("tamper");
    assert!(matches!(
        load_index(dir2.path(), &opts()),
        Err(DdsmError::OutsideRoot { .. })
    ));
    assert!(matches!(
        load_or_build_index(dir2.path(), &opts(), &checked_progress),
        Err(DdsmError::OutsideRoot { .. })
    ));
}

#[test]
fn no_images_is_an_error_naming_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_csvs(dir.path(), &cases());
    for layout in [Layout::Auto, Layout::Literal, Layout::Tcia] {
        match build_index(
            dir.path(),
            &IndexOptions { layout, ..opts() },
            &checked_progress,
        ) {
            Err(DdsmError::NoImages { root, tried }) => {
                assert_eq!(root, dir.path());
                assert!(!tried.is_empty());
                let msg = DdsmError::NoImages { root, tried }.to_string();
                assert!(msg.contains(&*dir.path().to_string_lossy()), "{msg}");
            }
            other => panic!("{layout:?}: expected NoImages, got {other:?}"),
        }
    }
    // No CSV at all.
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        build_index(empty.path(), &opts(), &checked_progress),
        Err(DdsmError::NoImages { .. })
    ));
    // A root that does not exist.
    assert!(matches!(
        build_index(&empty.path().join("nope"), &opts(), &checked_progress),
        Err(DdsmError::Io { .. })
    ));
}
