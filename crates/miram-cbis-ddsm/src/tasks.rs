//! The classification tasks of CBIS-DDSM as the MIRAM authors set them up, and any other
//! categorical column as a multi-label task.
//!
//! - Pathology, binary: malignant (1) against benign (0); `BENIGN_WITHOUT_CALLBACK` is
//!   benign, as in the authors' code.
//! - Pathology, four classes: mass/calcification x benign/malignant.
//! - Mass margins: the five BI-RADS margins of [`MASS_MARGINS`], mass rows only; a
//!   combination (`ILL_DEFINED-SPICULATED`) is a multi-hot target (sigmoid + BCE), `NA` rows
//!   are dropped.
//! - Any other column (`mass shape`, `calc type`, `calc distribution`, breast density,
//!   assessment, subtlety, side, view, abnormality type): multi-hot over the column's values;
//!   rows without a value are dropped.
//!
//! Class frequencies give the inverse-frequency class weights of the authors' fine-tuning
//! (`n / (k * n_c)`, scikit-learn's "balanced").

use serde::{Deserialize, Serialize};

use crate::error::{DdsmError, Result};
use crate::records::{
    category_vocabulary, AbnormalityType, CaseRecord, MASS_MARGINS, MASS_MARGINS_COLUMN,
};

/// A classification task over case records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// Malignant (class 1) against benign (class 0).
    PathologyBinary,
    /// Mass benign, mass malignant, calcification benign, calcification malignant.
    Pathology4,
    /// The five mass margins, multi-hot; mass rows with a margin only.
    MassMargins,
    /// A categorical column as a multi-label task. `column` is a header name as in the mass
    /// files (`mass shape`, `calc type`, `calc distribution`, `mass margins`) or one of
    /// `breast_density` (also `breast density`), `assessment`, `subtlety`,
    /// `left or right breast`, `image view`, `abnormality type`.
    Categorical {
        /// The column.
        column: String,
    },
}

/// The target of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// A class index (single-label tasks).
    Class(u32),
    /// One value per class, 1 for present (multi-label tasks).
    MultiHot(Vec<f32>),
}

impl Target {
    /// The target as a count vector over `k` classes (one-hot for a class).
    pub fn as_vector(&self, k: usize) -> Vec<f32> {
        match self {
            Target::Class(c) => {
                let mut v = vec![0.0; k];
                if let Some(x) = v.get_mut(*c as usize) {
                    *x = 1.0;
                }
                v
            }
            Target::MultiHot(v) => v.clone(),
        }
    }
}

/// Whether a task has one class per record or a multi-hot vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetKind {
    /// Pre-training: no target.
    None,
    /// One class of `k` (softmax + cross-entropy).
    Classes(usize),
    /// A multi-hot vector of `k` (sigmoid + BCE).
    MultiHot(usize),
}

impl TargetKind {
    /// The number of model outputs (0 for none).
    pub fn num_outputs(&self) -> usize {
        match *self {
            TargetKind::None => 0,
            TargetKind::Classes(k) | TargetKind::MultiHot(k) => k,
        }
    }
}

/// One labelled record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledRecord {
    /// Index into the records the task was applied to.
    pub record: usize,
    /// Its target.
    pub target: Target,
}

/// The labels of a task over a list of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskLabels {
    /// The task.
    pub task: Task,
    /// The class names, in output order.
    pub class_names: Vec<String>,
    /// Single- or multi-label.
    pub kind: TargetKind,
    /// Every included record with its target, in record order.
    pub items: Vec<LabeledRecord>,
    /// Records left out (other abnormality type, `NA`).
    pub dropped: usize,
}

/// The numeric and fixed columns accepted by [`Task::Categorical`], with their values.
fn fixed_column(column: &str) -> Option<(&'static str, Vec<String>)> {
    let nums = |lo: u8, hi: u8| (lo..=hi).map(|v| v.to_string()).collect::<Vec<_>>();
    match column {
        "breast_density" | "breast density" => Some(("breast_density", nums(0, 4))),
        "assessment" => Some(("assessment", nums(0, 5))),
        "subtlety" => Some(("subtlety", nums(0, 5))),
        "left or right breast" => {
            Some(("left or right breast", vec!["LEFT".into(), "RIGHT".into()]))
        }
        "image view" => Some(("image view", vec!["CC".into(), "MLO".into()])),
        "abnormality type" => Some((
            "abnormality type",
            vec!["mass".into(), "calcification".into()],
        )),
        _ => None,
    }
}

/// The values of `column` in a record (empty when absent or `NA`).
fn column_values(record: &CaseRecord, column: &str) -> Vec<String> {
    let opt = |v: Option<u8>| v.map(|v| vec![v.to_string()]).unwrap_or_default();
    match fixed_column(column).map(|(c, _)| c) {
        Some("breast_density") => opt(record.breast_density),
        Some("assessment") => opt(record.assessment),
        Some("subtlety") => opt(record.subtlety),
        Some("left or right breast") => vec![record.side.as_csv().to_string()],
        Some("image view") => vec![record.view.as_csv().to_string()],
        Some("abnormality type") => vec![record.abnormality_type.as_csv().to_string()],
        _ => record.category(column).to_vec(),
    }
}

/// The columns of `records` a categorical task can use, quoted: the fixed columns and the
/// categorical columns of the loaded CSVs.
fn task_columns(records: &[CaseRecord]) -> Vec<String> {
    let mut cols: Vec<String> = [
        "breast_density",
        "assessment",
        "subtlety",
        "left or right breast",
        "image view",
        "abnormality type",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let mut cats: Vec<&String> = records.iter().flat_map(|r| r.categories.keys()).collect();
    cats.sort();
    cats.dedup();
    cols.extend(cats.into_iter().cloned());
    cols.iter().map(|c| format!("{c:?}")).collect()
}

/// Checks that the categorical column exists in the records' CSVs and has a value.
fn check_task_column(column: &str, records: &[CaseRecord]) -> Result<()> {
    let err = |problem: String| DdsmError::TaskColumn {
        column: column.to_string(),
        problem,
        available: task_columns(records),
    };
    if fixed_column(column).is_none() && !records.iter().any(|r| r.categories.contains_key(column))
    {
        return Err(err(format!(
            "no such column in the case-description CSVs ({} records read)",
            records.len()
        )));
    }
    if fixed_column(column).is_none() && records.iter().all(|r| column_values(r, column).is_empty())
    {
        return Err(err(format!(
            "the column has no value (all NA or empty) in the {} records read",
            records.len()
        )));
    }
    Ok(())
}

impl Task {
    /// A short name, e.g. `pathology_binary` or `categorical:calc type`.
    pub fn name(&self) -> String {
        match self {
            Task::PathologyBinary => "pathology_binary".into(),
            Task::Pathology4 => "pathology_4".into(),
            Task::MassMargins => "mass_margins".into(),
            Task::Categorical { column } => format!("categorical:{column}"),
        }
    }

    /// The class names of the task, for the columns whose vocabulary is known; a categorical
    /// column of unknown vocabulary gets its values from the records.
    pub fn class_names(&self, records: &[CaseRecord]) -> Vec<String> {
        match self {
            Task::PathologyBinary => vec!["BENIGN".into(), "MALIGNANT".into()],
            Task::Pathology4 => vec![
                "MASS_BENIGN".into(),
                "MASS_MALIGNANT".into(),
                "CALC_BENIGN".into(),
                "CALC_MALIGNANT".into(),
            ],
            Task::MassMargins => MASS_MARGINS.iter().map(|s| s.to_string()).collect(),
            Task::Categorical { column } => {
                if let Some((_, values)) = fixed_column(column) {
                    values
                } else if let Some(v) = category_vocabulary(column) {
                    v.iter().map(|s| s.to_string()).collect()
                } else {
                    let mut v: Vec<String> = records
                        .iter()
                        .flat_map(|r| column_values(r, column))
                        .collect();
                    v.sort();
                    v.dedup();
                    v
                }
            }
        }
    }

    /// The target kind of the task with `k` classes (one class of `k`, or multi-hot).
    pub fn kind(&self, k: usize) -> TargetKind {
        match self {
            Task::PathologyBinary | Task::Pathology4 => TargetKind::Classes(k),
            Task::MassMargins | Task::Categorical { .. } => TargetKind::MultiHot(k),
        }
    }

    /// The target of one record, `None` when the task leaves it out; an error for a value
    /// outside the class names.
    pub fn target(&self, record: &CaseRecord, class_names: &[String]) -> Result<Option<Target>> {
        let malignant = record.pathology.is_malignant();
        Ok(match self {
            Task::PathologyBinary => Some(Target::Class(malignant as u32)),
            Task::Pathology4 => {
                let base = match record.abnormality_type {
                    AbnormalityType::Mass => 0,
                    AbnormalityType::Calcification => 2,
                };
                Some(Target::Class(base + malignant as u32))
            }
            Task::MassMargins | Task::Categorical { .. } => {
                let column = match self {
                    Task::Categorical { column } => column.as_str(),
                    _ => MASS_MARGINS_COLUMN,
                };
                if matches!(self, Task::MassMargins)
                    && record.abnormality_type != AbnormalityType::Mass
                {
                    return Ok(None);
                }
                let values = column_values(record, column);
                if values.is_empty() {
                    return Ok(None);
                }
                let mut v = vec![0f32; class_names.len()];
                for value in &values {
                    let i = class_names.iter().position(|c| c == value).ok_or_else(|| {
                        DdsmError::UnknownValue {
                            file: record.source.file.as_ref().clone(),
                            row: record.source.row,
                            column: column.to_string(),
                            value: value.clone(),
                        }
                    })?;
                    v[i] = 1.0;
                }
                Some(Target::MultiHot(v))
            }
        })
    }

    /// Labels `records`: the included ones with their targets, in order.
    ///
    /// # Errors
    /// [`DdsmError::TaskColumn`] for a categorical column that no record's CSV has, or
    /// whose values are all empty (`NA`), listing the columns a task can use;
    /// [`DdsmError::UnknownValue`] for a value outside the column's vocabulary.
    pub fn label(&self, records: &[CaseRecord]) -> Result<TaskLabels> {
        if let Task::Categorical { column } = self {
            check_task_column(column, records)?;
        }
        let class_names = self.class_names(records);
        let mut items = Vec::new();
        let mut dropped = 0;
        for (i, r) in records.iter().enumerate() {
            match self.target(r, &class_names)? {
                Some(target) => items.push(LabeledRecord { record: i, target }),
                None => dropped += 1,
            }
        }
        Ok(TaskLabels {
            task: self.clone(),
            kind: self.kind(class_names.len()),
            class_names,
            items,
            dropped,
        })
    }
}

impl TaskLabels {
    /// The number of model outputs.
    pub fn num_outputs(&self) -> usize {
        self.class_names.len()
    }

    /// Per class: the number of records of that class (single-label) or with that class
    /// present (multi-label).
    pub fn class_counts(&self) -> Vec<usize> {
        self.class_counts_of(&(0..self.items.len()).collect::<Vec<_>>())
    }

    /// [`TaskLabels::class_counts`] over the items at `subset` (indices into `items`).
    pub fn class_counts_of(&self, subset: &[usize]) -> Vec<usize> {
        let k = self.class_names.len();
        let mut counts = vec![0usize; k];
        for &i in subset {
            if let Some(item) = self.items.get(i) {
                for (c, v) in item.target.as_vector(k).iter().enumerate() {
                    if *v > 0.0 {
                        counts[c] += 1;
                    }
                }
            }
        }
        counts
    }

    /// Inverse-frequency class weights `n / (k * n_c)` over the items at `subset` (all
    /// items when `None`), `n` being the number of items; a class absent from the subset gets
    /// weight 0.
    pub fn class_weights(&self, subset: Option<&[usize]>) -> Vec<f32> {
        let all: Vec<usize>;
        let subset = match subset {
            Some(s) => s,
            None => {
                all = (0..self.items.len()).collect();
                &all
            }
        };
        let counts = self.class_counts_of(subset);
        let k = counts.len().max(1) as f32;
        let n = subset.len() as f32;
        counts
            .iter()
            .map(|&c| if c == 0 { 0.0 } else { n / (k * c as f32) })
            .collect()
    }

    /// A readable label of an item's target: the class name, or the present classes joined
    /// by `-`.
    pub fn describe(&self, target: &Target) -> String {
        match target {
            Target::Class(c) => self
                .class_names
                .get(*c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string()),
            Target::MultiHot(v) => v
                .iter()
                .zip(&self.class_names)
                .filter(|(x, _)| **x > 0.0)
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::records::{
        OfficialSplit, Pathology, RecordSource, Side, View, CALC_TYPE, MASS_SHAPE,
    };

    fn rec(kind: AbnormalityType, p: Pathology, cats: &[(&str, &[&str])]) -> CaseRecord {
        CaseRecord {
            source: RecordSource {
                file: Arc::new(PathBuf::from("x.csv")),
                row: 7,
            },
            split: OfficialSplit::Train,
            abnormality_type: kind,
            patient_id: "P_00001".into(),
            breast_density: Some(2),
            side: Side::Left,
            view: View::Cc,
            abnormality_id: 1,
            assessment: Some(4),
            pathology: p,
            subtlety: None,
            categories: cats
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
            image_file_path: String::new(),
            cropped_image_file_path: String::new(),
            roi_mask_file_path: String::new(),
        }
    }

    #[test]
    fn pathology_tasks() {
        use AbnormalityType::*;
        let rs = vec![
            rec(Mass, Pathology::Malignant, &[]),
            rec(Mass, Pathology::BenignWithoutCallback, &[]),
            rec(Calcification, Pathology::Benign, &[]),
            rec(Calcification, Pathology::Malignant, &[]),
        ];
        let b = Task::PathologyBinary.label(&rs).expect("labels");
        let t: Vec<_> = b.items.iter().map(|i| i.target.clone()).collect();
        assert_eq!(
            t,
            [
                Target::Class(1),
                Target::Class(0),
                Target::Class(0),
                Target::Class(1)
            ]
        );
        let f = Task::Pathology4.label(&rs).expect("labels");
        let t: Vec<_> = f.items.iter().map(|i| i.target.clone()).collect();
        assert_eq!(
            t,
            [
                Target::Class(1),
                Target::Class(0),
                Target::Class(2),
                Target::Class(3)
            ]
        );
        assert_eq!(f.kind, TargetKind::Classes(4));
        // Balanced weights: 2 benign and 2 malignant -> both 1.
        assert_eq!(b.class_weights(None), vec![1.0, 1.0]);
    }

    #[test]
    fn margins_are_multi_hot_and_drop_na_and_calcs() {
        use AbnormalityType::*;
        let rs = vec![
            rec(
                Mass,
                Pathology::Malignant,
                &[(MASS_MARGINS_COLUMN, &["ILL_DEFINED", "SPICULATED"])],
            ),
            rec(Mass, Pathology::Benign, &[(MASS_MARGINS_COLUMN, &[])]),
            rec(
                Calcification,
                Pathology::Benign,
                &[(CALC_TYPE, &["PUNCTATE"])],
            ),
            rec(
                Mass,
                Pathology::Benign,
                &[(MASS_MARGINS_COLUMN, &["CIRCUMSCRIBED"])],
            ),
        ];
        let m = Task::MassMargins.label(&rs).expect("labels");
        assert_eq!(m.items.len(), 2);
        assert_eq!(m.dropped, 2);
        assert_eq!(
            m.items[0].target,
            Target::MultiHot(vec![0.0, 1.0, 0.0, 0.0, 1.0])
        );
        assert_eq!(m.describe(&m.items[0].target), "ILL_DEFINED-SPICULATED");
        assert_eq!(m.class_counts(), vec![1, 1, 0, 0, 1]);
        // An unknown margin is reported with file, row, column and value.
        let bad = vec![rec(
            Mass,
            Pathology::Benign,
            &[(MASS_MARGINS_COLUMN, &["WAVY"])],
        )];
        match Task::MassMargins.label(&bad) {
            Err(DdsmError::UnknownValue {
                row, column, value, ..
            }) => {
                assert_eq!(
                    (row, column.as_str(), value.as_str()),
                    (7, MASS_MARGINS_COLUMN, "WAVY")
                );
            }
            other => panic!("expected UnknownValue, got {other:?}"),
        }
    }

    #[test]
    fn categorical_columns() {
        use AbnormalityType::*;
        let rs = vec![
            rec(
                Mass,
                Pathology::Malignant,
                &[(MASS_SHAPE, &["IRREGULAR", "ARCHITECTURAL_DISTORTION"])],
            ),
            rec(
                Calcification,
                Pathology::Benign,
                &[(CALC_TYPE, &["PUNCTATE"])],
            ),
        ];
        let t = Task::Categorical {
            column: MASS_SHAPE.into(),
        }
        .label(&rs)
        .expect("labels");
        assert_eq!(t.items.len(), 1);
        assert_eq!(t.num_outputs(), 8);
        let d = Task::Categorical {
            column: "breast density".into(),
        }
        .label(&rs)
        .expect("labels");
        assert_eq!(d.items.len(), 2);
        assert_eq!(
            d.items[0].target,
            Target::MultiHot(vec![0.0, 0.0, 1.0, 0.0, 0.0])
        );
        // Subtlety is NA in both: everything dropped.
        let s = Task::Categorical {
            column: "subtlety".into(),
        }
        .label(&rs)
        .expect("labels");
        assert_eq!((s.items.len(), s.dropped), (0, 2));
    }
}
