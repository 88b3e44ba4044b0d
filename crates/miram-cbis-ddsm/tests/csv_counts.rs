//! The four real case-description CSVs (`$MIRAM_CBIS_DDSM_CSV`, default
//! the repository's `fixtures/cbis-ddsm`) read as they are: the published counts per file, the
//! mass-margin counts, and a write/read round trip.
//!
//! Every number below was computed independently with Python's csv module; the one-liners are
//! beside them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use miram_cbis_ddsm::csv::{
    case_csv_name, read_case_csv, read_case_csvs, write_case_csv, write_case_csv_with, CsvStyle,
};
use miram_cbis_ddsm::records::{CALC_TYPE, MASS_MARGINS_COLUMN};
use miram_cbis_ddsm::{AbnormalityType, CaseRecord, OfficialSplit, Pathology, MASS_MARGINS};

fn csv_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_CBIS_DDSM_CSV", "cbis-ddsm")
}

fn read(name: &str) -> Vec<CaseRecord> {
    let path = csv_dir().join(name);
    read_case_csv(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The row counts of each file, computed with Python's csv module:
/// python3 -c "import csv,collections as c; [print(f, len(r), len({x['patient_id'] for x in r}),
///   c.Counter(x['pathology'] for x in r)) for f in FILES for r in [list(csv.DictReader(open(f, newline='')))]]"
const TABLE: [(&str, usize, usize, usize, usize, usize); 4] = [
    // file, rows, patients, MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK
    (
        "mass_case_description_train_set.csv",
        1318,
        691,
        637,
        577,
        104,
    ),
    ("mass_case_description_test_set.csv", 378, 201, 147, 194, 37),
    (
        "calc_case_description_train_set.csv",
        1546,
        602,
        544,
        528,
        474,
    ),
    ("calc_case_description_test_set.csv", 326, 151, 129, 130, 67),
];

#[test]
fn rows_patients_and_pathologies_per_file() {
    for (name, rows, patients, malignant, benign, bwc) in TABLE {
        let records = read(name);
        assert_eq!(records.len(), rows, "{name}: rows");
        let ids: BTreeSet<&str> = records.iter().map(|r| r.patient_id.as_str()).collect();
        assert_eq!(ids.len(), patients, "{name}: patients");
        let count = |p: Pathology| records.iter().filter(|r| r.pathology == p).count();
        assert_eq!(count(Pathology::Malignant), malignant, "{name}");
        assert_eq!(count(Pathology::Benign), benign, "{name}");
        assert_eq!(count(Pathology::BenignWithoutCallback), bwc, "{name}");
        let kind = if name.starts_with("mass") {
            AbnormalityType::Mass
        } else {
            AbnormalityType::Calcification
        };
        let split = if name.contains("train") {
            OfficialSplit::Train
        } else {
            OfficialSplit::Test
        };
        assert_eq!(case_csv_name(kind, split), name);
        for (i, r) in records.iter().enumerate() {
            assert_eq!((r.abnormality_type, r.split), (kind, split), "{name}");
            assert_eq!(r.source.row, i + 1);
            // Paths are trimmed of the embedded newlines of the real files.
            for p in [
                &r.image_file_path,
                &r.cropped_image_file_path,
                &r.roi_mask_file_path,
            ] {
                assert!(
                    p.ends_with(".dcm") && !p.contains('\n'),
                    "{name} row {}: {p:?}",
                    i + 1
                );
            }
            assert!(r.image_folder().ends_with(&format!("_{}", r.view.as_csv())));
            assert_eq!(
                r.abnormality_folder(),
                format!("{}_{}", r.image_folder(), r.abnormality_id)
            );
        }
    }
}

#[test]
fn mass_margin_counts() {
    // python3 -c "import csv; M=['CIRCUMSCRIBED','ILL_DEFINED','MICROLOBULATED','OBSCURED','SPICULATED'];
    //   v=[x['mass margins'] for f in ['mass_case_description_train_set.csv','mass_case_description_test_set.csv']
    //      for x in csv.DictReader(open(f, newline=''))];
    //   print({m: sum(m in s.split('-') for s in v) for m in M}, sum('-' in s for s in v),
    //         len({s for s in v if '-' in s}), sum(s in ('NA', '') for s in v))"
    // -> {'CIRCUMSCRIBED': 455, 'ILL_DEFINED': 472, 'MICROLOBULATED': 143, 'OBSCURED': 308,
    //     'SPICULATED': 407} 135 14 60
    let expected_hot = [455usize, 472, 143, 308, 407];
    let (combined_rows, distinct_combinations, na_rows) = (135usize, 14usize, 60usize);
    let mut records = read("mass_case_description_train_set.csv");
    records.extend(read("mass_case_description_test_set.csv"));
    let mut hot = [0usize; 5];
    let mut combos = BTreeSet::new();
    let mut combined = 0;
    let mut na = 0;
    for r in &records {
        let m = r.margins();
        for (k, name) in MASS_MARGINS.iter().enumerate() {
            hot[k] += usize::from(m.iter().any(|x| x == name));
        }
        match m.len() {
            0 => na += 1,
            1 => {}
            _ => {
                combined += 1;
                combos.insert(m.join("-"));
            }
        }
    }
    assert_eq!(hot, expected_hot);
    assert_eq!(combined, combined_rows);
    assert_eq!(combos.len(), distinct_combinations);
    assert_eq!(na, na_rows);
    // Per file (same one-liner on each file): train 352/358/116/243/318, 106 combined, 43 NA.
    let train = read("mass_case_description_train_set.csv");
    let hot_train: Vec<usize> = MASS_MARGINS
        .iter()
        .map(|name| {
            train
                .iter()
                .filter(|r| r.margins().iter().any(|x| x == name))
                .count()
        })
        .collect();
    assert_eq!(hot_train, [352, 358, 116, 243, 318]);
    assert_eq!(train.iter().filter(|r| r.margins().len() > 1).count(), 106);
    assert_eq!(train.iter().filter(|r| r.margins().is_empty()).count(), 43);
}

#[test]
fn quirks_of_the_real_files() {
    let all = read_case_csvs(&csv_dir()).expect("the four files");
    assert_eq!(all.len(), 1318 + 378 + 1546 + 326);
    // python3 -c "...; print(sum(x.get('breast_density', x.get('breast density')) == '0' for x in rows),
    //   sum(x['subtlety'] == '0' for x in rows))" -> 2 2
    assert_eq!(
        all.iter().filter(|r| r.breast_density == Some(0)).count(),
        2
    );
    assert_eq!(all.iter().filter(|r| r.subtlety == Some(0)).count(), 2);
    // LUCENT_CENTER (196 parts) and LUCENT_CENTERED (44 parts) are one value: 240.
    let lucent = all
        .iter()
        .filter(|r| r.category(CALC_TYPE).iter().any(|p| p == "LUCENT_CENTERED"))
        .count();
    assert_eq!(lucent, 196 + 44);
    assert!(all
        .iter()
        .all(|r| r.category(CALC_TYPE).iter().all(|p| p != "LUCENT_CENTER")));
    // NA: calc type 24, calc distribution 439, mass shape 4 (same one-liner style).
    let na = |col: &str, kind| {
        all.iter()
            .filter(|r| r.abnormality_type == kind && r.category(col).is_empty())
            .count()
    };
    assert_eq!(na(CALC_TYPE, AbnormalityType::Calcification), 24);
    assert_eq!(na("calc distribution", AbnormalityType::Calcification), 439);
    assert_eq!(na("mass shape", AbnormalityType::Mass), 4);
    assert_eq!(all.iter().map(|r| r.abnormality_id).max(), Some(7));
    // Mass margins are only on masses.
    assert!(all
        .iter()
        .filter(|r| r.abnormality_type == AbnormalityType::Calcification)
        .all(|r| !r.categories.contains_key(MASS_MARGINS_COLUMN)));
}

#[test]
fn write_then_read_gives_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, ..) in TABLE {
        let records = read(name);
        for style in [CsvStyle::Clean, CsvStyle::Tcia] {
            let out = dir.path().join(format!("{style:?}")).join(name);
            write_case_csv_with(&out, &records, style).expect("write");
            let back = read_case_csv(&out).expect("read back");
            assert_eq!(back.len(), records.len());
            for (a, b) in records.iter().zip(&back) {
                let mut b = b.clone();
                assert_eq!(*b.source.file, out);
                b.source = a.source.clone();
                assert_eq!(*a, b, "{name} row {}", a.source.row);
            }
        }
    }
    // The Tcia style puts the embedded newline where the real files have it.
    let mass = read("mass_case_description_test_set.csv");
    let out = dir
        .path()
        .join("t")
        .join("mass_case_description_test_set.csv");
    write_case_csv_with(&out, &mass[..1], CsvStyle::Tcia).expect("write");
    let text = std::fs::read_to_string(&out).expect("text");
    assert!(text.starts_with("patient_id,breast_density,"));
    assert!(
        text.contains("000001.dcm\n\"\n") || text.contains(".dcm\n\"\n"),
        "{text}"
    );
    // Mixed types are refused.
    let mut mixed = mass[..1].to_vec();
    mixed.extend(
        read("calc_case_description_test_set.csv")
            .into_iter()
            .take(1),
    );
    assert!(write_case_csv(&dir.path().join("mixed.csv"), &mixed).is_err());
}
