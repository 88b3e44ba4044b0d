//! CBIS-DDSM for MIRAM: the case-description CSVs, DICOM images, file resolution over the
//! layouts users really have, lesion crops, tasks, splits, augmentation, a batch loader and a
//! generator of CBIS-DDSM-shaped data.
//!
//! The dataset is the Curated Breast Imaging Subset of DDSM (TCIA, DOI
//! 10.7937/K9/TCIA.2016.7O02S9CY; Lee et al. 2017); `design/cbis-ddsm.md` describes it.
#![warn(missing_docs)]

pub mod crop;
pub mod csv;
pub mod error;
pub mod records;
pub mod synth;

pub use error::{DdsmError, Result};
pub use records::{
    AbnormalityType, CaseRecord, OfficialSplit, Pathology, RecordSource, Side, View, MASS_MARGINS,
};
pub mod dicom;
