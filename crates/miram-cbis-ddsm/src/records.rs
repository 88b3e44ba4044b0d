//! One row of a CBIS-DDSM case-description CSV, typed.
//!
//! Mirrors the four files `mass_case_description_{train,test}_set.csv` and
//! `calc_case_description_{train,test}_set.csv` of TCIA's CBIS-DDSM (Lee et al. 2017,
//! Scientific Data 4:170177); `docs/dataset.md` describes their quirks. One record is one
//! abnormality; the categorical columns keep their header names as written in the files, and
//! combined values (`ILL_DEFINED-SPICULATED`) are split into their parts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The header name of the mass-shape column.
pub const MASS_SHAPE: &str = "mass shape";
/// The header name of the mass-margins column.
pub const MASS_MARGINS_COLUMN: &str = "mass margins";
/// The header name of the calcification-type column.
pub const CALC_TYPE: &str = "calc type";
/// The header name of the calcification-distribution column.
pub const CALC_DISTRIBUTION: &str = "calc distribution";

/// The five mass-margin classes, in the order of the multi-hot margin target.
pub const MASS_MARGINS: [&str; 5] = [
    "CIRCUMSCRIBED",
    "ILL_DEFINED",
    "MICROLOBULATED",
    "OBSCURED",
    "SPICULATED",
];

/// Every part of a `mass shape` value that occurs in the real files.
pub const MASS_SHAPES: [&str; 8] = [
    "ARCHITECTURAL_DISTORTION",
    "ASYMMETRIC_BREAST_TISSUE",
    "FOCAL_ASYMMETRIC_DENSITY",
    "IRREGULAR",
    "LOBULATED",
    "LYMPH_NODE",
    "OVAL",
    "ROUND",
];

/// Every part of a `calc type` value that occurs in the real files, after normalisation
/// (`LUCENT_CENTER` is read as `LUCENT_CENTERED`).
pub const CALC_TYPES: [&str; 13] = [
    "AMORPHOUS",
    "COARSE",
    "DYSTROPHIC",
    "EGGSHELL",
    "FINE_LINEAR_BRANCHING",
    "LARGE_RODLIKE",
    "LUCENT_CENTERED",
    "MILK_OF_CALCIUM",
    "PLEOMORPHIC",
    "PUNCTATE",
    "ROUND_AND_REGULAR",
    "SKIN",
    "VASCULAR",
];

/// Every part of a `calc distribution` value that occurs in the real files.
pub const CALC_DISTRIBUTIONS: [&str; 5] = [
    "CLUSTERED",
    "DIFFUSELY_SCATTERED",
    "LINEAR",
    "REGIONAL",
    "SEGMENTAL",
];

/// The known parts of the categorical column `column` (a header name as in the mass files:
/// [`MASS_SHAPE`], [`MASS_MARGINS_COLUMN`], [`CALC_TYPE`], [`CALC_DISTRIBUTION`]); `None` for
/// any other column.
pub fn category_vocabulary(column: &str) -> Option<&'static [&'static str]> {
    match column {
        MASS_SHAPE => Some(&MASS_SHAPES),
        MASS_MARGINS_COLUMN => Some(&MASS_MARGINS),
        CALC_TYPE => Some(&CALC_TYPES),
        CALC_DISTRIBUTION => Some(&CALC_DISTRIBUTIONS),
        _ => None,
    }
}

/// The categorical columns of an abnormality type, in file order.
pub fn category_columns(kind: AbnormalityType) -> [&'static str; 2] {
    match kind {
        AbnormalityType::Mass => [MASS_SHAPE, MASS_MARGINS_COLUMN],
        AbnormalityType::Calcification => [CALC_TYPE, CALC_DISTRIBUTION],
    }
}

/// Normalises one part of a categorical value: spelling variants of the real files are mapped
/// to one name (`LUCENT_CENTER` -> `LUCENT_CENTERED`).
pub fn normalise_category_part(part: &str) -> &str {
    match part {
        "LUCENT_CENTER" => "LUCENT_CENTERED",
        other => other,
    }
}

/// The kind of abnormality a CSV describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AbnormalityType {
    /// A mass (`mass` in the `abnormality type` column).
    Mass,
    /// A calcification cluster (`calcification`).
    Calcification,
}

impl AbnormalityType {
    /// The value of the `abnormality type` column.
    pub fn as_csv(self) -> &'static str {
        match self {
            AbnormalityType::Mass => "mass",
            AbnormalityType::Calcification => "calcification",
        }
    }

    /// Parses the `abnormality type` column.
    pub fn from_csv(value: &str) -> Option<Self> {
        match value {
            "mass" => Some(AbnormalityType::Mass),
            "calcification" => Some(AbnormalityType::Calcification),
            _ => None,
        }
    }

    /// The prefix of the case folders: `Mass` or `Calc`.
    pub fn folder_prefix(self) -> &'static str {
        match self {
            AbnormalityType::Mass => "Mass",
            AbnormalityType::Calcification => "Calc",
        }
    }

    /// The file-name stem: `mass` or `calc`.
    pub fn file_stem(self) -> &'static str {
        match self {
            AbnormalityType::Mass => "mass",
            AbnormalityType::Calcification => "calc",
        }
    }
}

/// The official split a CSV belongs to (`..._train_set.csv` or `..._test_set.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OfficialSplit {
    /// The official training set.
    Train,
    /// The official test set.
    Test,
}

impl OfficialSplit {
    /// The split word in case-folder names: `Training` or `Test`.
    pub fn folder_word(self) -> &'static str {
        match self {
            OfficialSplit::Train => "Training",
            OfficialSplit::Test => "Test",
        }
    }

    /// The split word in CSV file names: `train` or `test`.
    pub fn file_word(self) -> &'static str {
        match self {
            OfficialSplit::Train => "train",
            OfficialSplit::Test => "test",
        }
    }
}

/// The verified pathology of an abnormality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pathology {
    /// `MALIGNANT`.
    Malignant,
    /// `BENIGN`.
    Benign,
    /// `BENIGN_WITHOUT_CALLBACK`: benign, no follow-up needed.
    BenignWithoutCallback,
}

impl Pathology {
    /// Whether the abnormality is malignant; `BENIGN_WITHOUT_CALLBACK` is benign, as in the
    /// authors' code.
    pub fn is_malignant(&self) -> bool {
        matches!(self, Pathology::Malignant)
    }

    /// The value of the `pathology` column.
    pub fn as_csv(self) -> &'static str {
        match self {
            Pathology::Malignant => "MALIGNANT",
            Pathology::Benign => "BENIGN",
            Pathology::BenignWithoutCallback => "BENIGN_WITHOUT_CALLBACK",
        }
    }

    /// Parses the `pathology` column.
    pub fn from_csv(value: &str) -> Option<Self> {
        match value {
            "MALIGNANT" => Some(Pathology::Malignant),
            "BENIGN" => Some(Pathology::Benign),
            "BENIGN_WITHOUT_CALLBACK" => Some(Pathology::BenignWithoutCallback),
            _ => None,
        }
    }
}

/// The breast imaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    /// `LEFT`.
    Left,
    /// `RIGHT`.
    Right,
}

impl Side {
    /// The value of the `left or right breast` column.
    pub fn as_csv(self) -> &'static str {
        match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        }
    }

    /// Parses the `left or right breast` column.
    pub fn from_csv(value: &str) -> Option<Self> {
        match value {
            "LEFT" => Some(Side::Left),
            "RIGHT" => Some(Side::Right),
            _ => None,
        }
    }
}

/// The mammographic view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum View {
    /// Cranio-caudal, `CC`.
    Cc,
    /// Medio-lateral oblique, `MLO`.
    Mlo,
}

impl View {
    /// The value of the `image view` column.
    pub fn as_csv(self) -> &'static str {
        match self {
            View::Cc => "CC",
            View::Mlo => "MLO",
        }
    }

    /// Parses the `image view` column.
    pub fn from_csv(value: &str) -> Option<Self> {
        match value {
            "CC" => Some(View::Cc),
            "MLO" => Some(View::Mlo),
            _ => None,
        }
    }
}

/// Where a record came from: the CSV file and the record number, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordSource {
    /// The CSV file.
    pub file: Arc<PathBuf>,
    /// The 1-based record number, the header excluded (a record spanning two lines because of
    /// an embedded newline counts once).
    pub row: usize,
}

impl std::fmt::Display for RecordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row {}", self.file.display(), self.row)
    }
}

/// One abnormality: one row of a case-description CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The CSV file and row.
    pub source: RecordSource,
    /// The official split (from the file name or the case folder).
    pub split: OfficialSplit,
    /// Mass or calcification.
    pub abnormality_type: AbnormalityType,
    /// The patient, e.g. `P_00001`.
    pub patient_id: String,
    /// Breast density 0..=4 as written in the file (0 occurs a few times); `None` for `NA`.
    pub breast_density: Option<u8>,
    /// The breast.
    pub side: Side,
    /// The view.
    pub view: View,
    /// The number of the abnormality in its image (1..=7 in the real files).
    pub abnormality_id: u32,
    /// BI-RADS assessment 0..=5; `None` for `NA`.
    pub assessment: Option<u8>,
    /// The verified pathology.
    pub pathology: Pathology,
    /// Subtlety rating 0..=5; `None` for `NA`.
    pub subtlety: Option<u8>,
    /// Categorical columns by their header name as written in the mass files (`mass shape`,
    /// `mass margins`, `calc type`, `calc distribution`): the value split on `-` into
    /// normalised parts (`LUCENT_CENTER` -> `LUCENT_CENTERED`); `NA` or empty -> empty vec.
    pub categories: BTreeMap<String, Vec<String>>,
    /// The full-image path as in the CSV, trimmed of whitespace and newlines.
    pub image_file_path: String,
    /// The `cropped image file path` as in the CSV (trimmed). In the real files this is the
    /// ROI mask for some rows; decide by content.
    pub cropped_image_file_path: String,
    /// The `ROI mask file path` as in the CSV (trimmed); see above.
    pub roi_mask_file_path: String,
}

impl CaseRecord {
    /// The case folder of the full image, e.g. `Mass-Training_P_00001_LEFT_CC`: the first
    /// component of the image path, or, if the path is empty, the name built from the fields.
    pub fn image_folder(&self) -> String {
        match first_component(&self.image_file_path) {
            Some(c) => c.to_string(),
            None => format!(
                "{}-{}_{}_{}_{}",
                self.abnormality_type.folder_prefix(),
                self.split.folder_word(),
                self.patient_id,
                self.side.as_csv(),
                self.view.as_csv()
            ),
        }
    }

    /// The folder of this abnormality's crop and mask, e.g. `Mass-Training_P_00001_LEFT_CC_1`:
    /// the first component of the crop path (or of the mask path), or, if both are empty, the
    /// name built from the fields.
    pub fn abnormality_folder(&self) -> String {
        match first_component(&self.cropped_image_file_path)
            .or_else(|| first_component(&self.roi_mask_file_path))
        {
            Some(c) => c.to_string(),
            None => format!("{}_{}", self.image_folder(), self.abnormality_id),
        }
    }

    /// The mass-margin parts (`categories["mass margins"]`), empty for calcifications and `NA`.
    pub fn margins(&self) -> &[String] {
        self.category(MASS_MARGINS_COLUMN)
    }

    /// The parts of the categorical column `column` (header name as in the mass files), empty
    /// when the column is absent or `NA`.
    pub fn category(&self, column: &str) -> &[String] {
        self.categories
            .get(column)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// An identifier of the image (case folder) this abnormality is on; several records
    /// share it when an image has several abnormalities.
    pub fn image_key(&self) -> String {
        self.image_folder()
    }
}

/// The first `/`- or `\`-separated component of a CSV path, `None` when empty.
fn first_component(path: &str) -> Option<&str> {
    path.trim().split(['/', '\\']).find(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CaseRecord {
        CaseRecord {
            source: RecordSource {
                file: Arc::new(PathBuf::from("mass_case_description_train_set.csv")),
                row: 1,
            },
            split: OfficialSplit::Train,
            abnormality_type: AbnormalityType::Mass,
            patient_id: "P_00001".into(),
            breast_density: Some(3),
            side: Side::Left,
            view: View::Cc,
            abnormality_id: 1,
            assessment: Some(4),
            pathology: Pathology::Malignant,
            subtlety: Some(4),
            categories: BTreeMap::from([
                (MASS_SHAPE.to_string(), vec!["IRREGULAR".to_string()]),
                (
                    MASS_MARGINS_COLUMN.to_string(),
                    vec!["ILL_DEFINED".to_string(), "SPICULATED".to_string()],
                ),
            ]),
            image_file_path: "Mass-Training_P_00001_LEFT_CC/1.2/1.3/000000.dcm".into(),
            cropped_image_file_path: "Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000000.dcm".into(),
            roi_mask_file_path: "Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000001.dcm".into(),
        }
    }

    #[test]
    fn folders_come_from_paths_or_fields() {
        let mut r = record();
        assert_eq!(r.image_folder(), "Mass-Training_P_00001_LEFT_CC");
        assert_eq!(r.abnormality_folder(), "Mass-Training_P_00001_LEFT_CC_1");
        r.image_file_path.clear();
        r.cropped_image_file_path.clear();
        r.roi_mask_file_path.clear();
        r.abnormality_id = 2;
        assert_eq!(r.image_folder(), "Mass-Training_P_00001_LEFT_CC");
        assert_eq!(r.abnormality_folder(), "Mass-Training_P_00001_LEFT_CC_2");
    }

    #[test]
    fn margins_and_pathology() {
        let r = record();
        assert_eq!(r.margins(), ["ILL_DEFINED", "SPICULATED"]);
        assert!(r.category(CALC_TYPE).is_empty());
        assert!(Pathology::Malignant.is_malignant());
        assert!(!Pathology::BenignWithoutCallback.is_malignant());
        assert_eq!(normalise_category_part("LUCENT_CENTER"), "LUCENT_CENTERED");
    }
}
