//! The label tables embedded in the generator are those of the real CSVs: every table is
//! recomputed from the four case-description files in `$MIRAM_CBIS_DDSM_CSV` (default the
//! repository's `fixtures/cbis-ddsm`) through the crate's own CSV reader.

use std::collections::BTreeMap;
use std::path::PathBuf;

use miram_cbis_ddsm::csv::read_case_csvs;
use miram_cbis_ddsm::synth::tables::{
    self, category_key, joint_counts, number_key, table_map, JointTable,
};
use miram_cbis_ddsm::{AbnormalityType, CaseRecord};

/// Rows by value and pathology, as the embedded tables hold them.
type Counts = BTreeMap<String, [u32; 3]>;

fn csv_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_CBIS_DDSM_CSV", "cbis-ddsm")
}

fn per_image(records: &[&CaseRecord]) -> BTreeMap<u32, u32> {
    let mut images: BTreeMap<(String, &str, &str), u32> = BTreeMap::new();
    for r in records {
        *images
            .entry((r.patient_id.clone(), r.side.as_csv(), r.view.as_csv()))
            .or_insert(0) += 1;
    }
    let mut out = BTreeMap::new();
    for n in images.values() {
        *out.entry(*n).or_insert(0) += 1;
    }
    out
}

#[test]
fn tables_match_the_real_csvs() {
    let records = read_case_csvs(&csv_dir()).expect("the four CSVs");
    assert_eq!(records.len(), 1318 + 378 + 1546 + 326);
    for kind in [AbnormalityType::Mass, AbnormalityType::Calcification] {
        let rs: Vec<CaseRecord> = records
            .iter()
            .filter(|r| r.abnormality_type == kind)
            .cloned()
            .collect();
        let (c1, c2, t1, t2, density, assessment, subtlety, count) = match kind {
            AbnormalityType::Mass => (
                "mass margins",
                "mass shape",
                tables::MASS_MARGINS,
                tables::MASS_SHAPE,
                tables::MASS_DENSITY,
                tables::MASS_ASSESSMENT,
                tables::MASS_SUBTLETY,
                tables::MASS_ABNORMALITIES_PER_IMAGE,
            ),
            AbnormalityType::Calcification => (
                "calc type",
                "calc distribution",
                tables::CALC_TYPE,
                tables::CALC_DISTRIBUTION,
                tables::CALC_DENSITY,
                tables::CALC_ASSESSMENT,
                tables::CALC_SUBTLETY,
                tables::CALC_ABNORMALITIES_PER_IMAGE,
            ),
        };
        let checks: [(&str, JointTable, Counts); 5] = [
            (c1, t1, joint_counts(&rs, |r| category_key(r.category(c1)))),
            (c2, t2, joint_counts(&rs, |r| category_key(r.category(c2)))),
            (
                "density",
                density,
                joint_counts(&rs, |r| number_key(r.breast_density)),
            ),
            (
                "assessment",
                assessment,
                joint_counts(&rs, |r| number_key(r.assessment)),
            ),
            (
                "subtlety",
                subtlety,
                joint_counts(&rs, |r| number_key(r.subtlety)),
            ),
        ];
        for (name, embedded, computed) in checks {
            assert_eq!(table_map(embedded), computed, "{kind:?} {name}");
        }
        let refs: Vec<&CaseRecord> = rs.iter().collect();
        let embedded: BTreeMap<u32, u32> = count.iter().copied().collect();
        assert_eq!(
            embedded,
            per_image(&refs),
            "{kind:?} abnormalities per image"
        );
    }
}
