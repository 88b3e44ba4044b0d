//! Label frequencies of the real CBIS-DDSM case-description CSVs, embedded so that the
//! generator draws labels as the real data has them.
//!
//! Each table counts the rows of the four official files (train and test together) by the
//! value of one column (combined values kept whole, normalised as the crate's CSV reader
//! does: `LUCENT_CENTER` read as `LUCENT_CENTERED`, a repeated part kept once, so
//! `PLEOMORPHIC-PLEOMORPHIC` counts as `PLEOMORPHIC`; `NA` kept as a value) and by pathology, in the order
//! `[MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK]`. They were computed once from
//! `fixtures/cbis-ddsm/*.csv` with Python's `csv` module:
//!
//! ```text
//! rows = csv.DictReader(open(f, newline=""))   # for the two mass or the two calc files
//! t[norm(r[col])][PATHOLOGIES.index(r["pathology"])] += 1
//! # norm: strip, LUCENT_CENTER -> LUCENT_CENTERED, repeated parts dropped, "" -> NA
//! ```
//!
//! and the test `tables_match_the_real_csvs` (tests/synth_tables.rs) recomputes every table
//! from `$MIRAM_CBIS_DDSM_CSV` through the crate's own CSV reader and compares.
//!
//! The generator draws the pathology jointly with the mass margins (or the calc type) from
//! the first table, then every other column conditionally on the pathology, so the
//! correlations that matter for the tasks (spiculated masses are mostly malignant, lucent
//! centred calcifications benign) are those of the real data.

use std::collections::BTreeMap;

use miram_rand::Rng;

use crate::records::{CaseRecord, Pathology};

/// A column's values counted by pathology `[MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK]`.
pub type JointTable = &'static [(&'static str, [u32; 3])];

/// `mass margins` x pathology over the mass rows of both files (train + test).
pub const MASS_MARGINS: JointTable = &[
    ("CIRCUMSCRIBED", [43, 295, 54]),
    ("CIRCUMSCRIBED-ILL_DEFINED", [14, 15, 0]),
    ("CIRCUMSCRIBED-MICROLOBULATED", [0, 2, 0]),
    ("CIRCUMSCRIBED-MICROLOBULATED-ILL_DEFINED", [2, 1, 0]),
    ("CIRCUMSCRIBED-OBSCURED", [1, 21, 0]),
    ("CIRCUMSCRIBED-OBSCURED-ILL_DEFINED", [1, 3, 0]),
    ("CIRCUMSCRIBED-SPICULATED", [1, 0, 0]),
    ("ILL_DEFINED", [221, 135, 14]),
    ("ILL_DEFINED-SPICULATED", [26, 4, 0]),
    ("MICROLOBULATED", [78, 42, 9]),
    ("MICROLOBULATED-ILL_DEFINED", [3, 2, 0]),
    ("MICROLOBULATED-ILL_DEFINED-SPICULATED", [2, 0, 0]),
    ("MICROLOBULATED-SPICULATED", [2, 0, 0]),
    ("NA", [11, 8, 41]),
    ("OBSCURED", [29, 211, 7]),
    ("OBSCURED-CIRCUMSCRIBED", [0, 2, 0]),
    ("OBSCURED-ILL_DEFINED", [21, 3, 0]),
    ("OBSCURED-ILL_DEFINED-SPICULATED", [5, 0, 0]),
    ("OBSCURED-SPICULATED", [4, 0, 0]),
    ("SPICULATED", [320, 27, 16]),
];
/// `mass shape` x pathology over the mass rows of both files (train + test).
pub const MASS_SHAPE: JointTable = &[
    ("ARCHITECTURAL_DISTORTION", [61, 28, 14]),
    ("ASYMMETRIC_BREAST_TISSUE", [8, 2, 15]),
    ("FOCAL_ASYMMETRIC_DENSITY", [7, 7, 11]),
    ("IRREGULAR", [371, 81, 12]),
    ("IRREGULAR-ARCHITECTURAL_DISTORTION", [49, 3, 0]),
    ("IRREGULAR-ASYMMETRIC_BREAST_TISSUE", [0, 1, 0]),
    ("IRREGULAR-FOCAL_ASYMMETRIC_DENSITY", [0, 2, 0]),
    ("LOBULATED", [126, 246, 12]),
    ("LOBULATED-ARCHITECTURAL_DISTORTION", [2, 0, 0]),
    ("LOBULATED-IRREGULAR", [4, 2, 0]),
    ("LOBULATED-LYMPH_NODE", [0, 0, 4]),
    ("LOBULATED-OVAL", [0, 1, 0]),
    ("LYMPH_NODE", [0, 1, 34]),
    ("NA", [2, 2, 0]),
    ("OVAL", [104, 286, 22]),
    ("OVAL-LOBULATED", [0, 1, 0]),
    ("OVAL-LYMPH_NODE", [0, 0, 6]),
    ("ROUND", [49, 104, 11]),
    ("ROUND-IRREGULAR-ARCHITECTURAL_DISTORTION", [1, 0, 0]),
    ("ROUND-LOBULATED", [0, 1, 0]),
    ("ROUND-OVAL", [0, 3, 0]),
];
/// `breast_density` x pathology over the mass rows of both files (train + test).
pub const MASS_DENSITY: JointTable = &[
    ("1", [159, 127, 51]),
    ("2", [358, 339, 60]),
    ("3", [205, 220, 24]),
    ("4", [62, 85, 6]),
];
/// `assessment` x pathology over the mass rows of both files (train + test).
pub const MASS_ASSESSMENT: JointTable = &[
    ("0", [22, 140, 0]),
    ("1", [3, 0, 0]),
    ("2", [1, 31, 59]),
    ("3", [49, 247, 68]),
    ("4", [346, 344, 12]),
    ("5", [363, 9, 2]),
];
/// `subtlety` x pathology over the mass rows of both files (train + test).
pub const MASS_SUBTLETY: JointTable = &[
    ("0", [0, 2, 0]),
    ("1", [34, 20, 1]),
    ("2", [77, 58, 6]),
    ("3", [129, 197, 32]),
    ("4", [177, 228, 48]),
    ("5", [367, 266, 54]),
];
/// Images by number of mass abnormalities on them (train + test).
pub const MASS_ABNORMALITIES_PER_IMAGE: &[(u32, u32)] =
    &[(1, 1521), (2, 48), (3, 17), (4, 3), (5, 2), (6, 1)];
/// `calc type` x pathology over the calcification rows of both files (train + test).
pub const CALC_TYPE: JointTable = &[
    ("AMORPHOUS", [65, 116, 0]),
    ("AMORPHOUS-PLEOMORPHIC", [10, 6, 0]),
    ("AMORPHOUS-ROUND_AND_REGULAR", [3, 0, 0]),
    ("COARSE", [0, 3, 36]),
    ("COARSE-LUCENT_CENTERED", [0, 0, 6]),
    ("COARSE-PLEOMORPHIC", [0, 2, 2]),
    ("COARSE-ROUND_AND_REGULAR", [0, 0, 4]),
    ("COARSE-ROUND_AND_REGULAR-LUCENT_CENTERED", [0, 0, 14]),
    ("DYSTROPHIC", [0, 12, 8]),
    ("EGGSHELL", [0, 0, 13]),
    ("FINE_LINEAR_BRANCHING", [79, 18, 5]),
    ("LARGE_RODLIKE", [0, 0, 4]),
    ("LARGE_RODLIKE-ROUND_AND_REGULAR", [0, 0, 11]),
    ("LUCENT_CENTERED", [0, 1, 127]),
    ("LUCENT_CENTERED-PUNCTATE", [0, 0, 8]),
    ("MILK_OF_CALCIUM", [0, 2, 0]),
    ("NA", [3, 1, 20]),
    ("PLEOMORPHIC", [427, 379, 8]),
    ("PLEOMORPHIC-AMORPHOUS", [0, 1, 0]),
    ("PLEOMORPHIC-FINE_LINEAR_BRANCHING", [28, 3, 0]),
    ("PUNCTATE", [31, 67, 34]),
    ("PUNCTATE-AMORPHOUS", [0, 12, 0]),
    ("PUNCTATE-AMORPHOUS-PLEOMORPHIC", [4, 0, 0]),
    ("PUNCTATE-FINE_LINEAR_BRANCHING", [6, 0, 0]),
    ("PUNCTATE-LUCENT_CENTERED", [0, 0, 3]),
    ("PUNCTATE-PLEOMORPHIC", [13, 17, 0]),
    ("PUNCTATE-ROUND_AND_REGULAR", [0, 0, 4]),
    ("ROUND_AND_REGULAR", [3, 7, 17]),
    ("ROUND_AND_REGULAR-AMORPHOUS", [0, 1, 0]),
    ("ROUND_AND_REGULAR-EGGSHELL", [0, 0, 23]),
    ("ROUND_AND_REGULAR-LUCENT_CENTERED", [0, 0, 45]),
    ("ROUND_AND_REGULAR-LUCENT_CENTERED-DYSTROPHIC", [0, 0, 2]),
    ("ROUND_AND_REGULAR-LUCENT_CENTERED-PUNCTATE", [0, 0, 24]),
    ("ROUND_AND_REGULAR-PLEOMORPHIC", [0, 8, 0]),
    ("ROUND_AND_REGULAR-PUNCTATE", [1, 0, 4]),
    ("ROUND_AND_REGULAR-PUNCTATE-AMORPHOUS", [0, 2, 0]),
    ("SKIN", [0, 0, 4]),
    ("SKIN-COARSE-ROUND_AND_REGULAR", [0, 0, 1]),
    ("SKIN-PUNCTATE", [0, 0, 4]),
    ("SKIN-PUNCTATE-ROUND_AND_REGULAR", [0, 0, 4]),
    ("VASCULAR", [0, 0, 90]),
    ("VASCULAR-COARSE", [0, 0, 6]),
    ("VASCULAR-COARSE-LUCENT_CENTERED", [0, 0, 8]),
    (
        "VASCULAR-COARSE-LUCENT_CENTERED-ROUND_AND_REGULAR-PUNCTATE",
        [0, 0, 2],
    ),
];
/// `calc distribution` x pathology over the calcification rows of both files (train + test).
pub const CALC_DISTRIBUTION: JointTable = &[
    ("CLUSTERED", [401, 515, 19]),
    ("CLUSTERED-LINEAR", [21, 8, 0]),
    ("CLUSTERED-SEGMENTAL", [0, 5, 0]),
    ("DIFFUSELY_SCATTERED", [5, 9, 26]),
    ("LINEAR", [77, 24, 11]),
    ("LINEAR-SEGMENTAL", [7, 0, 0]),
    ("NA", [0, 5, 434]),
    ("REGIONAL", [44, 17, 42]),
    ("SEGMENTAL", [118, 75, 9]),
];
/// `breast density` x pathology over the calcification rows of both files (train + test).
pub const CALC_DENSITY: JointTable = &[
    ("0", [2, 0, 0]),
    ("1", [45, 48, 106]),
    ("2", [211, 210, 195]),
    ("3", [254, 205, 195]),
    ("4", [161, 195, 45]),
];
/// `assessment` x pathology over the calcification rows of both files (train + test).
pub const CALC_ASSESSMENT: JointTable = &[
    ("0", [37, 39, 0]),
    ("2", [1, 18, 534]),
    ("3", [53, 56, 4]),
    ("4", [385, 543, 3]),
    ("5", [197, 2, 0]),
];
/// `subtlety` x pathology over the calcification rows of both files (train + test).
pub const CALC_SUBTLETY: JointTable = &[
    ("1", [62, 57, 0]),
    ("2", [130, 168, 0]),
    ("3", [208, 207, 191]),
    ("4", [139, 138, 145]),
    ("5", [134, 88, 205]),
];
/// Images by number of calcification abnormalities on them (train + test).
pub const CALC_ABNORMALITIES_PER_IMAGE: &[(u32, u32)] = &[
    (1, 1289),
    (2, 143),
    (3, 49),
    (4, 12),
    (5, 8),
    (6, 8),
    (7, 2),
];

/// The pathologies in the column order of the tables.
pub const PATHOLOGIES: [Pathology; 3] = [
    Pathology::Malignant,
    Pathology::Benign,
    Pathology::BenignWithoutCallback,
];

/// Draws a (value, pathology) pair with probability proportional to its count.
pub fn sample_joint(table: JointTable, rng: &mut Rng) -> (&'static str, Pathology) {
    let total: u64 = table
        .iter()
        .map(|(_, c)| c.iter().map(|&v| v as u64).sum::<u64>())
        .sum();
    let mut r = rng.below(total.max(1));
    for &(value, counts) in table {
        for (p, &c) in counts.iter().enumerate() {
            if r < c as u64 {
                return (value, PATHOLOGIES[p]);
            }
            r -= c as u64;
        }
    }
    (table[0].0, PATHOLOGIES[0])
}

/// Draws a value given the pathology, with probability proportional to its count in that
/// pathology's column (uniform over the values if the column is empty).
pub fn sample_given(table: JointTable, pathology: Pathology, rng: &mut Rng) -> &'static str {
    let col = PATHOLOGIES
        .iter()
        .position(|&p| p == pathology)
        .unwrap_or(0);
    let total: u64 = table.iter().map(|(_, c)| c[col] as u64).sum();
    if total == 0 {
        return table[rng.index(table.len())].0;
    }
    let mut r = rng.below(total);
    for &(value, counts) in table {
        if r < counts[col] as u64 {
            return value;
        }
        r -= counts[col] as u64;
    }
    table[0].0
}

/// Draws a count from a `(count, frequency)` table.
pub fn sample_count(table: &[(u32, u32)], rng: &mut Rng) -> u32 {
    let total: u64 = table.iter().map(|&(_, f)| f as u64).sum();
    let mut r = rng.below(total.max(1));
    for &(n, f) in table {
        if r < f as u64 {
            return n;
        }
        r -= f as u64;
    }
    1
}

/// The key of a categorical value in the tables: its normalised parts joined by `-`, or
/// `NA` when there are none.
pub fn category_key(parts: &[String]) -> String {
    if parts.is_empty() {
        "NA".to_string()
    } else {
        parts.join("-")
    }
}

/// The key of an optional number: its decimal form, or `NA`.
pub fn number_key(v: Option<u8>) -> String {
    v.map_or_else(|| "NA".to_string(), |v| v.to_string())
}

/// Counts `records` by `key(record)` and pathology, as the embedded tables do.
pub fn joint_counts(
    records: &[CaseRecord],
    key: impl Fn(&CaseRecord) -> String,
) -> BTreeMap<String, [u32; 3]> {
    let mut out: BTreeMap<String, [u32; 3]> = BTreeMap::new();
    for r in records {
        let col = PATHOLOGIES
            .iter()
            .position(|&p| p == r.pathology)
            .unwrap_or(0);
        out.entry(key(r)).or_default()[col] += 1;
    }
    out
}

/// An embedded table as a map, for comparisons.
pub fn table_map(table: JointTable) -> BTreeMap<String, [u32; 3]> {
    table.iter().map(|&(k, c)| (k.to_string(), c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_table() {
        let mut rng = Rng::new(1);
        let n = 20_000;
        let mut spic_malignant = 0;
        let mut spic = 0;
        for _ in 0..n {
            let (v, p) = sample_joint(MASS_MARGINS, &mut rng);
            if v == "SPICULATED" {
                spic += 1;
                if p == Pathology::Malignant {
                    spic_malignant += 1;
                }
            }
        }
        // 363 of 1696 mass rows are spiculated, 320 of them malignant.
        let f = spic as f64 / n as f64;
        assert!((f - 363.0 / 1696.0).abs() < 0.015, "{f}");
        let m = spic_malignant as f64 / spic as f64;
        assert!((m - 320.0 / 363.0).abs() < 0.03, "{m}");
        // Conditional draws never give a value that has no count for the pathology.
        for _ in 0..2000 {
            let v = sample_given(CALC_TYPE, Pathology::BenignWithoutCallback, &mut rng);
            let c = CALC_TYPE.iter().find(|(k, _)| *k == v).map(|(_, c)| c[2]);
            assert!(c.is_some_and(|c| c > 0), "{v}");
        }
    }
}
