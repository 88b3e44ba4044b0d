//! A `column:` task must name a column of the case-description CSVs: an unknown column, or
//! one without any value, is an error naming it and listing the columns that exist (it used
//! to surface as "num_classes must be at least 1" from the classifier).

use std::path::PathBuf;

use miram_cbis_ddsm::csv::read_case_csv;
use miram_cbis_ddsm::records::{CALC_TYPE, MASS_SHAPE};
use miram_cbis_ddsm::tasks::Task;
use miram_cbis_ddsm::{CaseRecord, DdsmError};

fn read(name: &str) -> Vec<CaseRecord> {
    let dir = std::env::var_os("MIRAM_CBIS_DDSM_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/cbis-ddsm"
            ))
        });
    let path = dir.join(name);
    read_case_csv(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn categorical(column: &str) -> Task {
    Task::Categorical {
        column: column.into(),
    }
}

#[test]
fn an_unknown_column_is_named_with_the_columns_that_exist() {
    let records = read("mass_case_description_test_set.csv");
    let e = categorical("nonexistent").label(&records).unwrap_err();
    match &e {
        DdsmError::TaskColumn {
            column, available, ..
        } => {
            assert_eq!(column, "nonexistent");
            assert!(
                available.contains(&format!("{MASS_SHAPE:?}")),
                "{available:?}"
            );
            assert!(
                available.contains(&"\"subtlety\"".to_string()),
                "{available:?}"
            );
            // Only the mass file was read: the calcification columns do not exist here.
            assert!(
                !available.contains(&format!("{CALC_TYPE:?}")),
                "{available:?}"
            );
        }
        other => panic!("expected TaskColumn, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("\"nonexistent\"")
            && msg.contains("no such column")
            && msg.contains("\"mass margins\""),
        "{msg}"
    );
    // A calcification column on mass files only does not exist either.
    assert!(matches!(
        categorical(CALC_TYPE).label(&records),
        Err(DdsmError::TaskColumn { .. })
    ));
}

#[test]
fn existing_columns_still_label() {
    let mut records = read("mass_case_description_test_set.csv");
    records.extend(read("calc_case_description_test_set.csv"));
    for column in [MASS_SHAPE, CALC_TYPE, "breast_density", "image view"] {
        let t = categorical(column)
            .label(&records)
            .unwrap_or_else(|e| panic!("{column}: {e}"));
        assert!(t.num_outputs() > 0 && !t.items.is_empty(), "{column}");
    }
}
