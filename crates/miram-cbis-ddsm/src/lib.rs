//! CBIS-DDSM for MIRAM: the case-description CSVs, DICOM images, file resolution over the
//! layouts users really have, lesion crops, tasks, splits, augmentation, a batch loader and a
//! generator of CBIS-DDSM-shaped data.
//!
//! The dataset is the Curated Breast Imaging Subset of DDSM (TCIA, DOI
//! 10.7937/K9/TCIA.2016.7O02S9CY; Lee et al. 2017); `docs/dataset.md` describes it.
//!
//! # Reading a dataset
//! - [`csv`]: the four case-description CSVs as they are ([`read_case_csv`],
//!   [`read_case_csvs`], [`write_case_csv`]), one typed [`CaseRecord`] per abnormality.
//! - [`dicom`]: DICOM through dicom-rs: [`read_header`], [`read_stored`] (stored values exactly
//!   as pydicom's `pixel_array`), [`read_gray`] (16-bit grayscale, MONOCHROME1 inverted),
//!   [`write_gray_u16`]; sizes checked against [`DecodeLimits`] before decoding. Images and
//!   crops are `ndarray` arrays of `u16`, `[height, width]` ([`GrayImage::view`]).
//! - [`index`] and [`layout`]: every row resolved to its full image, crop and ROI mask in the
//!   literal, TCIA or Kaggle layout ([`build_index`], [`load_or_build_index`]), crop and mask
//!   told apart by content, saved and reused while the files are unchanged.
//!
//! ```
//! use miram_cbis_ddsm::csv::parse_case_csv;
//! use miram_cbis_ddsm::{read_gray, write_gray_u16, DecodeLimits, DicomUids, GrayImage, Pathology};
//! use std::path::Path;
//!
//! // A row as in mass_case_description_train_set.csv: combined margins, a quoted path
//! // ending with an embedded newline.
//! let text = "patient_id,breast_density,left or right breast,image view,abnormality id,\
//! abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,\
//! cropped image file path,ROI mask file path\n\
//! P_00001,3,LEFT,CC,1,mass,IRREGULAR,ILL_DEFINED-SPICULATED,4,BENIGN_WITHOUT_CALLBACK,4,\
//! Mass-Training_P_00001_LEFT_CC/1.2/1.3/000000.dcm,Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000000.dcm,\
//! \"Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000001.dcm\n\"\n";
//! let rows = parse_case_csv(text.as_bytes(), Path::new("mass_case_description_train_set.csv"))?;
//! assert_eq!(rows[0].margins(), ["ILL_DEFINED", "SPICULATED"]);
//! assert_eq!(rows[0].pathology, Pathology::BenignWithoutCallback);
//! assert!(!rows[0].pathology.is_malignant());
//! assert!(rows[0].roi_mask_file_path.ends_with("000001.dcm"));
//!
//! // A 16-bit MONOCHROME2 DICOM file written and read back.
//! let dir = std::env::temp_dir().join(format!("miram-doc-{}", std::process::id()));
//! let path = dir.join("1-1.dcm");
//! // Images are `ndarray` arrays `[height, width]` (rows, columns).
//! let img = GrayImage::new(ndarray::array![[0, 1, 2], [3, 4, 65535]], 65535);
//! let ids = DicomUids {
//!     study_instance_uid: "1.2.3".into(),
//!     series_instance_uid: "1.2.3.4".into(),
//!     sop_instance_uid: "1.2.3.4.5".into(),
//!     ..DicomUids::default()
//! };
//! write_gray_u16(&path, &img, &ids)?;
//! let back = read_gray(&path, &DecodeLimits::default())?;
//! assert_eq!(back, img);
//! assert_eq!(back.view().dim(), (2, 3));
//! assert_eq!(back.view()[[1, 2]], back.get(2, 1).unwrap_or(0));
//! std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), miram_cbis_ddsm::DdsmError>(())
//! ```
#![warn(missing_docs)]

pub mod augment;
pub mod crop;
pub mod csv;
pub mod dicom;
pub mod error;
pub mod index;
pub mod kaggle;
pub mod layout;
pub mod loader;
pub mod records;
pub mod split;
mod stale;
pub mod synth;
pub mod tasks;

pub use csv::{read_case_csv, read_case_csvs, write_case_csv};
pub use dicom::{
    read_gray, read_gray_rows, read_header, read_stored, write_gray_u16, DecodeLimits, DicomHeader,
    DicomUids, GrayImage, StoredPixels,
};
pub use error::{DdsmError, Result};
pub use index::{
    build_index, load_or_build_index, read_image, DatasetIndex, ImageKind, IndexOptions,
    IndexProgress, IndexedCase, Unresolved,
};
pub use layout::Layout;
pub use records::{
    AbnormalityType, CaseRecord, OfficialSplit, Pathology, RecordSource, Side, View, MASS_MARGINS,
};
