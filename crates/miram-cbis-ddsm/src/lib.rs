//! CBIS-DDSM for MIRAM: the case-description CSVs, DICOM images, file resolution over the
//! layouts users really have, lesion crops, tasks, splits, augmentation, a batch loader and a
//! generator of CBIS-DDSM-shaped data.
//!
//! The dataset is the Curated Breast Imaging Subset of DDSM (TCIA, DOI
//! 10.7937/K9/TCIA.2016.7O02S9CY; Lee et al. 2017); `design/cbis-ddsm.md` describes it.
#![warn(missing_docs)]

pub mod crop;
pub mod csv;
pub mod dicom;
pub mod error;
pub mod index;
pub mod kaggle;
pub mod layout;
pub mod records;
pub mod split;
pub mod synth;
pub mod tasks;

pub use csv::{read_case_csv, read_case_csvs, write_case_csv};
pub use dicom::{
    read_gray, read_header, read_stored, write_gray_u16, DecodeLimits, DicomHeader, DicomUids,
    GrayImage, StoredPixels,
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
