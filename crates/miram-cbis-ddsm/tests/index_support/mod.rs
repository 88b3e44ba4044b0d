//! Tiny CBIS-DDSM trees for the index tests, in the three layouts users have: five rows with
//! the quirks of the real files (two abnormalities on one image, crop and mask swapped in the
//! CSV, crop and mask in separate series, a crop as large as the full image).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miram_cbis_ddsm::csv::{case_csv_name, write_case_csv_with, CsvStyle};
use miram_cbis_ddsm::dicom::{write_gray_u16, DicomUids, GrayImage};
use miram_cbis_ddsm::records::{CALC_DISTRIBUTION, CALC_TYPE, MASS_MARGINS_COLUMN, MASS_SHAPE};
use miram_cbis_ddsm::{
    AbnormalityType, CaseRecord, OfficialSplit, Pathology, RecordSource, Side, View,
};

pub const FULL: (u32, u32) = (96, 64);

/// One abnormality and its images.
pub struct Case {
    pub record: CaseRecord,
    pub full: GrayImage,
    pub crop: GrayImage,
    pub mask: GrayImage,
    pub study: String,
    pub full_series: String,
    pub abn_study: String,
    pub crop_series: String,
    pub mask_series: String,
    /// The CSV's "cropped image file path" names the mask (and vice versa).
    pub swapped: bool,
}

/// Where the index must find each row: (full image, crop, mask), relative to the root.
pub type Expected = Vec<(PathBuf, PathBuf, PathBuf)>;

fn uid(n: u32) -> String {
    format!("1.3.6.1.4.1.9590.100.1.2.{}", 100_000 + n * 7919)
}

fn texture(w: u32, h: u32, seed: u32) -> GrayImage {
    let pixels = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            (((x * 131 + y * 71 + seed * 977) % 4093) * 13 + 1000) as u16
        })
        .collect();
    GrayImage::from_vec(w, h, pixels, u16::MAX).expect("width x height pixels")
}

fn mask(w: u32, h: u32, x0: u32, y0: u32, side: u32) -> GrayImage {
    let pixels = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y) {
                255
            } else {
                0
            }
        })
        .collect();
    GrayImage::from_vec(w, h, pixels, u16::MAX).expect("width x height pixels")
}

/// Five rows: mass train x2 (same image, the second swapped), mass test (crop and mask in
/// separate series), calc train, calc test (crop as large as the full image, swapped).
pub fn cases() -> Vec<Case> {
    struct Spec {
        kind: AbnormalityType,
        split: OfficialSplit,
        patient: &'static str,
        side: Side,
        view: View,
        id: u32,
        image: u32,
        separate_series: bool,
        swapped: bool,
        big_crop: bool,
        pathology: Pathology,
    }
    use AbnormalityType::*;
    use OfficialSplit::*;
    let specs = [
        Spec {
            kind: Mass,
            split: Train,
            patient: "P_00001",
            side: Side::Left,
            view: View::Cc,
            id: 1,
            image: 1,
            separate_series: false,
            swapped: false,
            big_crop: false,
            pathology: Pathology::Malignant,
        },
        Spec {
            kind: Mass,
            split: Train,
            patient: "P_00001",
            side: Side::Left,
            view: View::Cc,
            id: 2,
            image: 1,
            separate_series: false,
            swapped: true,
            big_crop: false,
            pathology: Pathology::Benign,
        },
        Spec {
            kind: Mass,
            split: Test,
            patient: "P_00016",
            side: Side::Right,
            view: View::Mlo,
            id: 1,
            image: 2,
            separate_series: true,
            swapped: false,
            big_crop: false,
            pathology: Pathology::BenignWithoutCallback,
        },
        Spec {
            kind: Calcification,
            split: Train,
            patient: "P_00005",
            side: Side::Right,
            view: View::Cc,
            id: 1,
            image: 3,
            separate_series: false,
            swapped: false,
            big_crop: false,
            pathology: Pathology::Malignant,
        },
        Spec {
            kind: Calcification,
            split: Test,
            patient: "P_00038",
            side: Side::Left,
            view: View::Mlo,
            id: 1,
            image: 4,
            separate_series: false,
            swapped: true,
            big_crop: true,
            pathology: Pathology::Benign,
        },
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let i = i as u32;
            let folder = format!(
                "{}-{}_{}_{}_{}",
                s.kind.folder_prefix(),
                s.split.folder_word(),
                s.patient,
                s.side.as_csv(),
                s.view.as_csv()
            );
            let abn_folder = format!("{folder}_{}", s.id);
            let (study, full_series) = (uid(s.image * 10), uid(s.image * 10 + 1));
            let (abn_study, crop_series) = (uid(100 + i * 10), uid(100 + i * 10 + 1));
            let mask_series = if s.separate_series {
                uid(100 + i * 10 + 2)
            } else {
                crop_series.clone()
            };
            let full_path = format!("{folder}/{study}/{full_series}/000000.dcm");
            // Mass CSVs name the crop 000000.dcm, calc CSVs the mask; "swapped" flips that.
            let (crop_name, mask_name) = match (s.kind, s.separate_series) {
                (_, true) => ("000000.dcm", "000000.dcm"),
                (Mass, false) => ("000000.dcm", "000001.dcm"),
                (Calcification, false) => ("000001.dcm", "000000.dcm"),
            };
            let crop_path = format!("{abn_folder}/{abn_study}/{crop_series}/{crop_name}");
            let mask_path = format!("{abn_folder}/{abn_study}/{mask_series}/{mask_name}");
            let (csv_crop, csv_mask) = if s.swapped {
                (mask_path.clone(), crop_path.clone())
            } else {
                (crop_path, mask_path)
            };
            let mut categories = BTreeMap::new();
            match s.kind {
                Mass => {
                    categories.insert(MASS_SHAPE.to_string(), vec!["IRREGULAR".to_string()]);
                    categories.insert(
                        MASS_MARGINS_COLUMN.to_string(),
                        vec!["ILL_DEFINED".to_string(), "SPICULATED".to_string()],
                    );
                }
                Calcification => {
                    categories.insert(CALC_TYPE.to_string(), vec!["PLEOMORPHIC".to_string()]);
                    categories.insert(CALC_DISTRIBUTION.to_string(), vec![]);
                }
            }
            let record = CaseRecord {
                source: RecordSource {
                    file: Arc::new(PathBuf::new()),
                    row: 0,
                },
                split: s.split,
                abnormality_type: s.kind,
                patient_id: s.patient.to_string(),
                breast_density: Some(2),
                side: s.side,
                view: s.view,
                abnormality_id: s.id,
                assessment: Some(4),
                pathology: s.pathology,
                subtlety: Some(3),
                categories,
                image_file_path: full_path,
                cropped_image_file_path: csv_crop,
                roi_mask_file_path: csv_mask,
            };
            let crop = if s.big_crop {
                texture(FULL.0, FULL.1, 50 + i)
            } else {
                texture(24, 20, 50 + i)
            };
            Case {
                record,
                full: texture(FULL.0, FULL.1, s.image),
                crop,
                mask: mask(FULL.0, FULL.1, 10 + 5 * i, 8 + 3 * i, 20),
                study,
                full_series,
                abn_study,
                crop_series,
                mask_series,
                swapped: s.swapped,
            }
        })
        .collect()
}

fn ids(
    study: &str,
    series: &str,
    sop: &str,
    patient: &str,
    desc: &str,
    instance: u32,
) -> DicomUids {
    DicomUids {
        study_instance_uid: study.into(),
        series_instance_uid: series.into(),
        sop_instance_uid: sop.into(),
        patient_id: patient.into(),
        series_description: desc.into(),
        study_date: "20160720".into(),
        series_number: 1,
        instance_number: instance,
    }
}

/// Writes the four CSVs into `dir` (TCIA style, embedded newlines included).
pub fn write_csvs(dir: &Path, cases: &[Case]) {
    for kind in [AbnormalityType::Mass, AbnormalityType::Calcification] {
        for split in [OfficialSplit::Train, OfficialSplit::Test] {
            let rows: Vec<CaseRecord> = cases
                .iter()
                .filter(|c| c.record.abnormality_type == kind && c.record.split == split)
                .map(|c| c.record.clone())
                .collect();
            write_case_csv_with(&dir.join(case_csv_name(kind, split)), &rows, CsvStyle::Tcia)
                .expect("write CSV");
        }
    }
}

fn crop_and_mask_csv_paths(c: &Case) -> (&str, &str) {
    // The CSV paths at which the true crop and the true mask were written.
    if c.swapped {
        (
            &c.record.roi_mask_file_path,
            &c.record.cropped_image_file_path,
        )
    } else {
        (
            &c.record.cropped_image_file_path,
            &c.record.roi_mask_file_path,
        )
    }
}

/// The literal layout: every file at its CSV path.
pub fn write_literal(root: &Path, cases: &[Case]) -> Expected {
    write_csvs(root, cases);
    let mut expected = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let r = &c.record;
        let full = PathBuf::from(&r.image_file_path);
        if !root.join(&full).exists() {
            write_gray_u16(
                &root.join(&full),
                &c.full,
                &ids(
                    &c.study,
                    &c.full_series,
                    &format!("{}.1", c.full_series),
                    &r.image_folder(),
                    "full mammogram images",
                    1,
                ),
            )
            .expect("full");
        }
        let (crop_rel, mask_rel) = crop_and_mask_csv_paths(c);
        let abn = r.abnormality_folder();
        write_gray_u16(
            &root.join(crop_rel),
            &c.crop,
            &ids(
                &c.abn_study,
                &c.crop_series,
                &format!("{}.{}1", c.crop_series, i),
                &abn,
                "cropped images",
                1,
            ),
        )
        .expect("crop");
        write_gray_u16(
            &root.join(mask_rel),
            &c.mask,
            &ids(
                &c.abn_study,
                &c.mask_series,
                &format!("{}.{}2", c.mask_series, i),
                &abn,
                "ROI mask images",
                2,
            ),
        )
        .expect("mask");
        expected.push((full, PathBuf::from(crop_rel), PathBuf::from(mask_rel)));
    }
    expected
}

fn last5(uid: &str) -> &str {
    &uid[uid.len() - 5..]
}

/// The layout a TCIA download writes: `CBIS-DDSM/<case>/<date>-DDSM-NA-<n>/<k>.000000-<desc>-<n>/1-<i>.dcm`.
pub fn write_tcia(root: &Path, cases: &[Case]) -> Expected {
    write_csvs(root, cases);
    let base = root.join("CBIS-DDSM");
    let mut expected = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let r = &c.record;
        let full_dir = PathBuf::from("CBIS-DDSM")
            .join(r.image_folder())
            .join(format!("07-20-2016-DDSM-NA-{}", last5(&c.study)))
            .join(format!(
                "1.000000-full mammogram images-{}",
                last5(&c.full_series)
            ));
        let full = full_dir.join("1-1.dcm");
        if !root.join(&full).exists() {
            write_gray_u16(
                &root.join(&full),
                &c.full,
                &ids(
                    &c.study,
                    &c.full_series,
                    &format!("{}.1", c.full_series),
                    &r.image_folder(),
                    "full mammogram images",
                    1,
                ),
            )
            .expect("full");
        }
        let study_dir = PathBuf::from("CBIS-DDSM")
            .join(r.abnormality_folder())
            .join(format!("08-29-2017-DDSM-NA-{}", last5(&c.abn_study)));
        let (crop, mask) = if c.crop_series == c.mask_series {
            let dir = study_dir.join(format!(
                "1.000000-ROI mask images-{}",
                last5(&c.crop_series)
            ));
            // The download numbers the two files in either order.
            if c.swapped {
                (dir.join("1-2.dcm"), dir.join("1-1.dcm"))
            } else {
                (dir.join("1-1.dcm"), dir.join("1-2.dcm"))
            }
        } else {
            (
                study_dir
                    .join(format!("1.000000-cropped images-{}", last5(&c.crop_series)))
                    .join("1-1.dcm"),
                study_dir
                    .join(format!(
                        "2.000000-ROI mask images-{}",
                        last5(&c.mask_series)
                    ))
                    .join("1-1.dcm"),
            )
        };
        let abn = r.abnormality_folder();
        write_gray_u16(
            &root.join(&crop),
            &c.crop,
            &ids(
                &c.abn_study,
                &c.crop_series,
                &format!("{}.{}1", c.crop_series, i),
                &abn,
                "cropped images",
                1,
            ),
        )
        .expect("crop");
        write_gray_u16(
            &root.join(&mask),
            &c.mask,
            &ids(
                &c.abn_study,
                &c.mask_series,
                &format!("{}.{}2", c.mask_series, i),
                &abn,
                "ROI mask images",
                2,
            ),
        )
        .expect("mask");
        expected.push((full, crop, mask));
    }
    assert!(base.is_dir());
    expected
}

fn write_jpeg(path: &Path, img: &GrayImage) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let bytes: Vec<u8> = img
        .as_slice()
        .iter()
        .map(|&v| (u32::from(v) * 255 / u32::from(img.max_value.max(1))) as u8)
        .collect();
    let bytes: Vec<u8> = if img.as_slice().iter().all(|&v| v == 0 || v == 255) {
        img.as_slice().iter().map(|&v| v as u8).collect()
    } else {
        bytes
    };
    let encoder = jpeg_encoder::Encoder::new_file(path, 90).expect("jpeg file");
    encoder
        .encode(
            &bytes,
            img.width() as u16,
            img.height() as u16,
            jpeg_encoder::ColorType::Luma,
        )
        .expect("encode");
}

/// The Kaggle copy: `csv/` with the four CSVs and `dicom_info.csv`, `jpeg/<series UID>/1-<n>.jpg`.
pub fn write_kaggle(root: &Path, cases: &[Case]) -> Expected {
    write_csvs(&root.join("csv"), cases);
    let mut info = String::from("file_path,image_path,AccessionNumber,BitsAllocated,Columns,PatientID,Rows,SeriesDescription,SeriesInstanceUID,StudyInstanceUID\n");
    let mut expected = Vec::new();
    let mut n = 100;
    let mut add = |info: &mut String,
                   series: &str,
                   study: &str,
                   patient: &str,
                   desc: &str,
                   img: &GrayImage|
     -> PathBuf {
        n += 7;
        let rel = PathBuf::from("jpeg")
            .join(series)
            .join(format!("1-{n}.jpg"));
        write_jpeg(&root.join(&rel), img);
        info.push_str(&format!(
            "CBIS-DDSM/dicom/{series}/1-{n}.dcm,CBIS-DDSM/{},NA,16,{},{patient},{},{desc},{series},{study}\n",
            rel.display(), img.width(), img.height()
        ));
        rel
    };
    let mut fulls: BTreeMap<String, PathBuf> = BTreeMap::new();
    for c in cases {
        let r = &c.record;
        let full = match fulls.get(&c.full_series) {
            Some(p) => p.clone(),
            None => {
                let p = add(
                    &mut info,
                    &c.full_series,
                    &c.study,
                    &r.image_folder(),
                    "full mammogram images",
                    &c.full,
                );
                fulls.insert(c.full_series.clone(), p.clone());
                p
            }
        };
        let abn = r.abnormality_folder();
        // The file numbers decide the listing order: swapped rows list the mask first.
        let (crop, mask) = if c.swapped {
            let mask = add(
                &mut info,
                &c.mask_series,
                &c.abn_study,
                &abn,
                "ROI mask images",
                &c.mask,
            );
            let crop = add(
                &mut info,
                &c.crop_series,
                &c.abn_study,
                &abn,
                "cropped images",
                &c.crop,
            );
            (crop, mask)
        } else {
            let crop = add(
                &mut info,
                &c.crop_series,
                &c.abn_study,
                &abn,
                "cropped images",
                &c.crop,
            );
            let mask = add(
                &mut info,
                &c.mask_series,
                &c.abn_study,
                &abn,
                "ROI mask images",
                &c.mask,
            );
            (crop, mask)
        };
        expected.push((full, crop, mask));
    }
    std::fs::write(root.join("csv").join("dicom_info.csv"), info).expect("dicom_info");
    expected
}

/// A progress callback that checks the counts it is given.
pub fn checked_progress(p: miram_cbis_ddsm::IndexProgress) {
    assert!(p.done <= p.total, "{p:?}");
}

/// Rewrites a DICOM file with one header element replaced (an unsigned short, e.g.
/// Samples per Pixel, or a string for IS/CS elements).
pub fn patch_us(path: &Path, tag: dicom_core::Tag, value: u16) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut obj = dicom_object::open_file(path).expect("reopen");
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    obj.write_to_file(path).expect("rewrite");
}

/// Rewrites a DICOM file with a string element replaced (IS, CS).
pub fn patch_str(path: &Path, tag: dicom_core::Tag, vr: dicom_core::VR, value: &str) {
    use dicom_core::{DataElement, PrimitiveValue};
    let mut obj = dicom_object::open_file(path).expect("reopen");
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    obj.write_to_file(path).expect("rewrite");
}

/// Rewrites a DICOM file as JPEG 2000 (lossless) whose one fragment is garbage: the header
/// reads, the pixel data does not decode.
pub fn garble_as_jpeg2000(path: &Path) {
    use dicom_core::value::Value;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let mut obj = dicom_object::open_file(path).expect("reopen");
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get("1.2.840.10008.1.2.4.90")
        .expect("JPEG 2000 transfer syntax");
    obj.update_meta(|m| m.set_transfer_syntax(ts));
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 37 % 251) as u8).collect();
    let value: Value<dicom_object::InMemDicomObject> =
        Value::from(dicom_core::value::PixelFragmentSequence::new(
            dicom_core::smallvec::SmallVec::<[u32; 2]>::new(),
            vec![garbage],
        ));
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, value));
    obj.write_to_file(path).expect("rewrite");
}

/// Cuts a file's last `n` bytes (its pixel data then shorter than the header needs).
pub fn cut_tail(path: &Path, n: usize) {
    let bytes = std::fs::read(path).expect("read");
    std::fs::write(path, &bytes[..bytes.len() - n]).expect("write");
}
