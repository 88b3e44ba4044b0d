//! The validation split on the real CBIS-DDSM rows (`$MIRAM_CBIS_DDSM_CSV`, default the
//! repository's `fixtures/cbis-ddsm`): over many seeds no patient is on both sides,
//! every class gets close to 30% of its training rows, the official test rows stay in test.

use std::collections::HashSet;
use std::path::PathBuf;

use miram_cbis_ddsm::csv::read_case_csvs;
use miram_cbis_ddsm::split::{split, SplitConfig};
use miram_cbis_ddsm::tasks::Task;
use miram_cbis_ddsm::OfficialSplit;

fn csv_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_CBIS_DDSM_CSV", "cbis-ddsm")
}

#[test]
fn grouped_stratified_validation_on_the_real_rows() {
    let records = read_case_csvs(&csv_dir()).expect("the four CSVs");
    for task in [Task::PathologyBinary, Task::Pathology4, Task::MassMargins] {
        let labels = task.label(&records).expect("labels");
        let k = labels.num_outputs();
        for seed in 0..40 {
            let s = split(
                &records,
                &labels,
                &SplitConfig {
                    val_fraction: 0.3,
                    seed,
                },
            )
            .expect("split");
            let patients = |idx: &[usize]| -> HashSet<&str> {
                idx.iter()
                    .map(|&i| records[labels.items[i].record].patient_id.as_str())
                    .collect()
            };
            let (train_p, val_p) = (patients(&s.train), patients(&s.validation));
            assert!(
                train_p.is_disjoint(&val_p),
                "{} seed {seed}: a patient on both sides",
                task.name()
            );
            assert!(s
                .test
                .iter()
                .all(|&i| records[labels.items[i].record].split == OfficialSplit::Test));
            let train_counts = labels.class_counts_of(&s.train);
            let val_counts = labels.class_counts_of(&s.validation);
            for c in 0..k {
                let total = train_counts[c] + val_counts[c];
                if total < 30 {
                    continue; // too few rows (a rare margin) for a tight bound
                }
                let f = val_counts[c] as f64 / total as f64;
                assert!(
                    (f - 0.3).abs() < 0.03,
                    "{} seed {seed}: class {} has {f:.3} of {total} in validation",
                    task.name(),
                    labels.class_names[c]
                );
            }
        }
        // Different seeds give different validation sets.
        let a = split(
            &records,
            &labels,
            &SplitConfig {
                val_fraction: 0.3,
                seed: 1,
            },
        )
        .expect("split");
        let b = split(
            &records,
            &labels,
            &SplitConfig {
                val_fraction: 0.3,
                seed: 2,
            },
        )
        .expect("split");
        assert_ne!(a.validation, b.validation);
    }
}
