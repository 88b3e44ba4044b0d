//! DICOM decoding against pydicom: every file of `$MIRAM_DICOM_FIXTURES` (default
//! the repository's `fixtures/dicom`, the values computed with pydicom 3.0)
//! must give the header fields, shape, min, max, sum, first values and SHA-256 of the stored
//! values that pydicom's `pixel_array` gave; an `error` entry must give an error. Bad input
//! (truncated files, absurd sizes) must give errors naming the file, never a panic or a huge
//! allocation.
#![allow(unsafe_code)] // The counting allocator below; nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use miram_cbis_ddsm::dicom::{
    inspect, read_gray, read_gray_rows, read_header, read_stored, write_gray_u16, DecodeLimits,
    DicomUids, GrayImage,
};
use miram_cbis_ddsm::DdsmError;
use serde_json::Value;

/// A global allocator that records the largest single request while tracking is on.
struct Counting;

static TRACKING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn fixture_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_DICOM_FIXTURES", "dicom")
}

fn expected() -> (PathBuf, serde_json::Map<String, Value>) {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join("expected.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("expected.json").display()));
    let json: Value = serde_json::from_str(&text).expect("expected.json is JSON");
    assert_eq!(json["format"], "miram-dicom-fixture-v1");
    let files = json["files"].as_object().expect("files").clone();
    assert!(!files.is_empty(), "no fixture files listed");
    (dir, files)
}

const HEADER_KEYS: [&str; 9] = [
    "transfer_syntax_uid",
    "rows",
    "columns",
    "frames",
    "samples_per_pixel",
    "bits_allocated",
    "bits_stored",
    "pixel_representation",
    "photometric_interpretation",
];

/// Checks one fixture entry; returns the mismatches found.
fn check(path: &Path, want: &serde_json::Map<String, Value>) -> Vec<String> {
    let name = path.display();
    let mut problems = Vec::new();
    // The header alone (without pixel data) gives the same fields.
    match read_header(path) {
        Ok(h) => {
            let got = serde_json::to_value(&h).expect("header serialises");
            for key in HEADER_KEYS {
                if got[key] != want[key] {
                    problems.push(format!(
                        "{name}: header {key}: {} != {}",
                        got[key], want[key]
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("{name}: read_header failed: {e}")),
    }
    let result = inspect(path);
    if want.contains_key("error") {
        match result {
            Ok(_) => problems.push(format!("{name}: decoded, pydicom raised {}", want["error"])),
            Err(e) => {
                if !e.to_string().contains(&*path.to_string_lossy()) {
                    problems.push(format!("{name}: error does not name the file: {e}"));
                }
            }
        }
        return problems;
    }
    match result {
        Ok(report) => {
            let got = serde_json::to_value(&report).expect("report serialises");
            for (key, value) in want {
                if got.get(key) != Some(value) {
                    problems.push(format!(
                        "{name}: {key}: got {:?}, pydicom {value}",
                        got.get(key)
                    ));
                }
            }
            for key in got.as_object().expect("object").keys() {
                if !want.contains_key(key) {
                    problems.push(format!("{name}: key {key} missing from expected.json"));
                }
            }
        }
        Err(e) => problems.push(format!("{name}: decoding failed: {e}")),
    }
    problems
}

#[test]
fn every_fixture_matches_pydicom() {
    let (dir, files) = expected();
    let mut problems = Vec::new();
    for (file, want) in &files {
        let want = want.as_object().expect("entry is an object");
        problems.extend(check(&dir.join(file), want));
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn gray_images_follow_the_stored_values() {
    // read_gray on every single-frame grayscale fixture of at most 16 bits: signed data shifted
    // by 2^(bits_stored-1), MONOCHROME1 inverted, against read_stored.
    let (dir, files) = expected();
    let mut checked = 0;
    for (file, want) in &files {
        let path = dir.join(file);
        if want.get("error").is_some()
            || want["frames"] != 1
            || want["samples_per_pixel"] != 1
            || want["bits_stored"].as_u64().unwrap_or(99) > 16
            || !want["photometric_interpretation"]
                .as_str()
                .is_some_and(|p| p.starts_with("MONOCHROME"))
        {
            continue;
        }
        let Ok((h, stored)) = read_stored(&path, &DecodeLimits::default()) else {
            continue; // reported by every_fixture_matches_pydicom
        };
        let img = read_gray(&path, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("read_gray({}) failed: {e}", path.display()));
        let max = (1i64 << h.bits_stored) - 1;
        assert_eq!(i64::from(img.max_value), max, "{}", path.display());
        assert_eq!((img.width(), img.height()), (h.columns, h.rows));
        let offset = if h.pixel_representation == 1 {
            1i64 << (h.bits_stored - 1)
        } else {
            0
        };
        for (i, (&g, &s)) in img.as_slice().iter().zip(&stored.values).enumerate() {
            let v = (i64::from(s) + offset).clamp(0, max);
            let v = if h.photometric_interpretation == "MONOCHROME1" {
                max - v
            } else {
                v
            };
            assert_eq!(i64::from(g), v, "{} pixel {i}", path.display());
        }
        // A band of rows reads the same pixels as the whole image.
        let (a, b) = (h.rows / 3, h.rows - h.rows / 4);
        let band = read_gray_rows(&path, &DecodeLimits::default(), a..b)
            .unwrap_or_else(|e| panic!("read_gray_rows({}) failed: {e}", path.display()));
        assert_eq!((band.width(), band.height()), (img.width(), b - a));
        let w = img.width() as usize;
        assert_eq!(
            band.as_slice(),
            &img.as_slice()[a as usize * w..b as usize * w],
            "{}",
            path.display()
        );
        assert!(read_gray_rows(&path, &DecodeLimits::default(), 0..h.rows + 1).is_err());
        checked += 1;
    }
    assert!(checked > 0, "no grayscale fixture was checked");
}

/// Writes a small valid file, then patches its header fields to the given values.
fn write_with_header(path: &Path, rows: u16, columns: u16, frames: Option<&str>) {
    let img =
        GrayImage::from_vec(4, 3, (0..12).collect(), u16::MAX).expect("width x height pixels");
    let ids = DicomUids {
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.4".into(),
        sop_instance_uid: "1.2.3.4.5".into(),
        patient_id: "Mass-Training_P_00001_LEFT_CC".into(),
        series_description: "full mammogram images".into(),
        ..DicomUids::default()
    };
    write_gray_u16(path, &img, &ids).expect("write");
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::open_file(path).expect("reopen");
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(columns),
    ));
    if let Some(f) = frames {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(f),
        ));
    }
    obj.write_to_file(path).expect("rewrite");
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("huge.dcm", 65535u16, 65535u16, None),
        ("frames.dcm", 512, 512, Some("2000000000")),
    ];
    for (name, rows, columns, frames) in cases {
        let path = dir.path().join(name);
        write_with_header(&path, rows, columns, frames);
        LARGEST.store(0, Ordering::SeqCst);
        TRACKING.store(true, Ordering::SeqCst);
        let stored = read_stored(&path, &DecodeLimits::default());
        let gray = read_gray(&path, &DecodeLimits::default());
        TRACKING.store(false, Ordering::SeqCst);
        let largest = LARGEST.load(Ordering::SeqCst);
        for result in [stored.map(|_| ()), gray.map(|_| ())] {
            match result {
                Err(DdsmError::TooLarge { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{name}: expected TooLarge, got {other:?}"),
            }
        }
        assert!(
            largest < 1 << 20,
            "{name}: an allocation of {largest} bytes was made"
        );
    }
    // A Pixel Data element declaring 2 GB in a file of a few hundred bytes.
    let path = dir.path().join("length.dcm");
    write_with_header(&path, 3, 4, None);
    let mut bytes = std::fs::read(&path).expect("read");
    let tag = [0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    let at = bytes
        .windows(8)
        .position(|w| w == tag)
        .expect("pixel data element")
        + 8;
    bytes[at..at + 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    LARGEST.store(0, Ordering::SeqCst);
    TRACKING.store(true, Ordering::SeqCst);
    let stored = read_stored(&path, &DecodeLimits::default());
    let gray = read_gray(&path, &DecodeLimits::default());
    TRACKING.store(false, Ordering::SeqCst);
    let largest = LARGEST.load(Ordering::SeqCst);
    assert!(stored.is_err() && gray.is_err(), "{stored:?} {gray:?}");
    assert!(
        largest < 1 << 20,
        "length.dcm: an allocation of {largest} bytes was made"
    );

    // Within the limits but with far less pixel data than declared: a truncation error.
    let path = dir.path().join("short.dcm");
    write_with_header(&path, 300, 200, None);
    match read_stored(&path, &DecodeLimits::default()) {
        Err(DdsmError::Truncated {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (300 * 200 * 2, 24));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn truncated_copies_give_errors_not_panics() {
    let (dir, files) = expected();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut truncations = 0;
    for file in files.keys() {
        let bytes = std::fs::read(dir.join(file)).expect("fixture readable");
        let n = bytes.len();
        let mut cuts = vec![
            0,
            1,
            64,
            128,
            131,
            132,
            200,
            n / 4,
            n / 2,
            3 * n / 4,
            n - 2,
            n - 1,
        ];
        // A few pseudo-random cuts, fixed by the file size.
        let mut x = n as u64 | 1;
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cuts.push((x % n as u64) as usize);
        }
        for cut in cuts.into_iter().filter(|&c| c < n) {
            let path = tmp.path().join(format!("{file}.cut{cut}"));
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let outcome = std::panic::catch_unwind(|| {
                let limits = DecodeLimits::default();
                let a = read_stored(&path, &limits).map(|_| ());
                let b = read_gray(&path, &limits).map(|_| ());
                let c = read_header(&path).map(|_| ());
                [a, b, c]
            });
            let results = outcome.unwrap_or_else(|_| panic!("{} panicked", path.display()));
            for r in results {
                if let Err(e) = r {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&*path.to_string_lossy()),
                        "error does not name the file: {msg}"
                    );
                }
            }
            truncations += 1;
        }
    }
    assert!(truncations > 50);
}

#[test]
fn written_files_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/1-1.dcm");
    let (w, h) = (37u32, 23u32);
    let pixels: Vec<u16> = (0..w * h).map(|i| (i * 2711 % 65536) as u16).collect();
    let img = GrayImage::from_vec(w, h, pixels, u16::MAX).expect("width x height pixels");
    let ids = DicomUids {
        study_instance_uid: "1.3.6.1.4.1.9590.100.1.2.1".into(),
        series_instance_uid: "1.3.6.1.4.1.9590.100.1.2.2".into(),
        sop_instance_uid: "1.3.6.1.4.1.9590.100.1.2.3".into(),
        patient_id: "Calc-Test_P_00038_LEFT_CC_1".into(),
        series_description: "ROI mask images".into(),
        study_date: "20160720".into(),
        series_number: 1,
        instance_number: 2,
    };
    write_gray_u16(&path, &img, &ids).expect("write");
    let back = read_gray(&path, &DecodeLimits::default()).expect("read");
    assert_eq!(back, img);
    let head = read_header(&path).expect("header");
    assert_eq!(head.study_instance_uid, ids.study_instance_uid);
    assert_eq!(head.series_instance_uid, ids.series_instance_uid);
    assert_eq!(head.sop_instance_uid, ids.sop_instance_uid);
    assert_eq!(head.series_description.as_deref(), Some("ROI mask images"));
    assert_eq!(
        head.patient_id.as_deref(),
        Some("Calc-Test_P_00038_LEFT_CC_1")
    );
    assert_eq!(head.modality.as_deref(), Some("MG"));
    assert_eq!(head.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    assert_eq!(
        (head.bits_allocated, head.bits_stored, head.high_bit),
        (16, 16, 15)
    );
    assert_eq!(head.photometric_interpretation, "MONOCHROME2");
    // Bad arguments are errors.
    // Pixels that do not fill width x height make no image; an empty image is not written.
    assert!(GrayImage::from_vec(3, 3, vec![0; 8], 1).is_err());
    let bad = GrayImage::from_vec(0, 3, Vec::new(), 1).expect("an empty image");
    assert!(write_gray_u16(&dir.path().join("bad.dcm"), &bad, &ids).is_err());
    let bad_uid = DicomUids {
        study_instance_uid: "not a uid".into(),
        ..ids
    };
    assert!(write_gray_u16(&dir.path().join("bad2.dcm"), &img, &bad_uid).is_err());
}

#[test]
fn missing_and_non_dicom_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.dcm");
    assert!(matches!(
        read_gray(&missing, &DecodeLimits::default()),
        Err(DdsmError::Io { .. })
    ));
    let text = dir.path().join("text.dcm");
    std::fs::write(&text, b"this is not DICOM at all, just some text bytes").expect("write");
    let err = read_stored(&text, &DecodeLimits::default()).expect_err("not DICOM");
    assert!(err.to_string().contains("text.dcm"), "{err}");
}

#[test]
fn degenerate_headers_are_refused_naming_the_field() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().expect("tempdir");
    // (file, element, VR, value, the field the error must name)
    let cases: [(&str, dicom_core::Tag, VR, &str, &str); 9] = [
        ("rows0.dcm", tags::ROWS, VR::US, "0", "Rows"),
        ("columns0.dcm", tags::COLUMNS, VR::US, "0", "Columns"),
        (
            "spp0.dcm",
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            "0",
            "Samples per Pixel",
        ),
        (
            "spp2.dcm",
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            "2",
            "Samples per Pixel",
        ),
        (
            "ba0.dcm",
            tags::BITS_ALLOCATED,
            VR::US,
            "0",
            "Bits Allocated",
        ),
        (
            "ba12.dcm",
            tags::BITS_ALLOCATED,
            VR::US,
            "12",
            "Bits Allocated",
        ),
        ("bs17.dcm", tags::BITS_STORED, VR::US, "17", "Bits Stored"),
        (
            "pr2.dcm",
            tags::PIXEL_REPRESENTATION,
            VR::US,
            "2",
            "Pixel Representation",
        ),
        (
            "pi.dcm",
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "GRAYISH",
            "Photometric Interpretation",
        ),
    ];
    for (name, tag, vr, value, field) in cases {
        let path = dir.path().join(name);
        write_with_header(&path, 3, 4, None);
        let mut obj = dicom_object::open_file(&path).expect("reopen");
        let v = match vr {
            VR::US => PrimitiveValue::from(value.parse::<u16>().expect("number")),
            _ => PrimitiveValue::from(value),
        };
        obj.put(DataElement::new(tag, vr, v));
        obj.write_to_file(&path).expect("rewrite");
        let limits = DecodeLimits::default();
        let results = [
            read_header(&path).map(|_| ()),
            read_stored(&path, &limits).map(|_| ()),
            read_gray(&path, &limits).map(|_| ()),
            miram_cbis_ddsm::dicom::check_gray(&path, &limits).map(|_| ()),
            inspect(&path).map(|_| ()),
        ];
        for r in results {
            match r {
                Err(DdsmError::BadHeader {
                    path: p,
                    field: f,
                    value: v,
                    ..
                }) => {
                    assert_eq!(p, path, "{name}");
                    assert!(f.contains(field), "{name}: field {f}");
                    assert!(v.contains(value), "{name}: value {v}");
                }
                other => panic!("{name}: expected BadHeader naming {field}, got {other:?}"),
            }
        }
    }
    // The limits of the valid range are accepted: 1 row, 1 bit stored of 8, 3 samples.
    let path = dir.path().join("ok.dcm");
    write_with_header(&path, 1, 12, None);
    assert!(read_header(&path).is_ok());
    assert!(read_gray(&path, &DecodeLimits::default()).is_ok());
    // An explicit Number of Frames 0 is one frame, as pydicom reads it (with a warning).
    let path = dir.path().join("frames0.dcm");
    write_with_header(&path, 3, 4, Some("0"));
    assert_eq!(read_header(&path).expect("frames 0 reads").frames, 1);
    assert!(read_gray(&path, &DecodeLimits::default()).is_ok());
}
