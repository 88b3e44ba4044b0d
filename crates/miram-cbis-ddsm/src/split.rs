//! Train / validation / test splits as papers on CBIS-DDSM make them: the official train and
//! test files, and a validation set of 30% of the official training rows, stratified on the
//! label and grouped by patient, so that no patient is on both sides (docs/dataset.md).
//!
//! The grouped stratification is a greedy assignment in the spirit of scikit-learn's
//! `StratifiedGroupKFold`: patients are taken largest first (ties in a seeded random order)
//! and each goes to the side whose per-class quota it helps most, so every class ends close
//! to the requested fraction. Multi-hot targets are stratified on each class's positives.

use std::collections::BTreeMap;

use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DdsmError, Result};
use crate::records::{CaseRecord, OfficialSplit};
use crate::tasks::TaskLabels;

/// Which part of a split an item is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subset {
    /// Training (official train minus validation).
    Train,
    /// Validation (a patient-grouped, stratified part of official train).
    Validation,
    /// The official test set.
    Test,
}

/// How the validation set is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Fraction of the official training items (per class) that go to validation.
    pub val_fraction: f64,
    /// Seed of the tie-breaking order.
    pub seed: u64,
}

impl Default for SplitConfig {
    /// The authors' protocol: 30% of train for validation.
    fn default() -> Self {
        Self {
            val_fraction: 0.3,
            seed: 0,
        }
    }
}

/// A split of a task's items: indices into [`TaskLabels::items`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSplit {
    /// Training items.
    pub train: Vec<usize>,
    /// Validation items.
    pub validation: Vec<usize>,
    /// Test items.
    pub test: Vec<usize>,
}

impl DatasetSplit {
    /// The items of a subset.
    pub fn subset(&self, s: Subset) -> &[usize] {
        match s {
            Subset::Train => &self.train,
            Subset::Validation => &self.validation,
            Subset::Test => &self.test,
        }
    }
}

/// Assigns groups to validation: `groups[i]` is the group (patient) of item `i`, `labels[i]`
/// its class-count vector (one-hot or multi-hot, all of length `k`). Returns for every item
/// whether it is in validation; all items of a group share the answer. About `fraction` of
/// each class's count goes to validation.
pub fn stratified_group_assign(
    groups: &[&str],
    labels: &[Vec<f32>],
    fraction: f64,
    seed: u64,
) -> Result<Vec<bool>> {
    if groups.len() != labels.len() {
        return Err(DdsmError::Invalid {
            what: "split".into(),
            message: format!("{} groups for {} label vectors", groups.len(), labels.len()),
        });
    }
    if !(0.0..1.0).contains(&fraction) {
        return Err(DdsmError::Invalid {
            what: "SplitConfig.val_fraction".into(),
            message: format!("{fraction} is not in [0, 1)"),
        });
    }
    let k = labels.first().map_or(0, Vec::len);
    if let Some((i, v)) = labels.iter().enumerate().find(|(_, v)| v.len() != k) {
        return Err(DdsmError::Invalid {
            what: "split".into(),
            message: format!(
                "label vector {i} has {} classes, the first has {k}",
                v.len()
            ),
        });
    }
    // Per group: members and class counts (plus one "items" column so that rows without a
    // positive class are spread too).
    let mut by_group: BTreeMap<&str, (Vec<usize>, Vec<f64>)> = BTreeMap::new();
    for (i, (&g, l)) in groups.iter().zip(labels).enumerate() {
        let e = by_group
            .entry(g)
            .or_insert_with(|| (Vec::new(), vec![0.0; k + 1]));
        e.0.push(i);
        for (c, &v) in l.iter().enumerate() {
            e.1[c] += v as f64;
        }
        e.1[k] += 1.0;
    }
    let mut order: Vec<(&str, Vec<usize>, Vec<f64>)> =
        by_group.into_iter().map(|(g, (m, c))| (g, m, c)).collect();
    Rng::keyed(seed, &[0x0073_706c_6974]).shuffle(&mut order);
    // Largest groups first (stable, so ties keep the seeded order).
    order.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    let mut totals = vec![0f64; k + 1];
    for (_, _, c) in &order {
        for (t, v) in totals.iter_mut().zip(c) {
            *t += v;
        }
    }
    let mut val = vec![0f64; k + 1];
    let mut train = vec![0f64; k + 1];
    let mut in_val = vec![false; groups.len()];
    let mut tie_rng = Rng::keyed(seed, &[0x7469_6573]);
    for (_, members, counts) in &order {
        // Relative remaining need of each side, weighted by the group's composition.
        let mut need_val = 0.0;
        let mut need_train = 0.0;
        for c in 0..=k {
            if counts[c] == 0.0 || totals[c] == 0.0 {
                continue;
            }
            let tv = fraction * totals[c];
            let tt = (1.0 - fraction) * totals[c];
            let w = counts[c] / totals[c];
            if tv > 0.0 {
                need_val += w * (tv - val[c]) / tv;
            } else {
                need_val -= w;
            }
            if tt > 0.0 {
                need_train += w * (tt - train[c]) / tt;
            }
        }
        let to_val = if (need_val - need_train).abs() < 1e-12 {
            tie_rng.bernoulli(fraction)
        } else {
            need_val > need_train
        };
        let side = if to_val { &mut val } else { &mut train };
        for (s, v) in side.iter_mut().zip(counts) {
            *s += v;
        }
        if to_val {
            for &m in members {
                in_val[m] = true;
            }
        }
    }
    Ok(in_val)
}

/// Splits the items of `labels` (labelled from `records`): official test items to test, the
/// official training items to train and validation by [`stratified_group_assign`] grouped
/// by patient.
pub fn split(
    records: &[CaseRecord],
    labels: &TaskLabels,
    cfg: &SplitConfig,
) -> Result<DatasetSplit> {
    let k = labels.num_outputs();
    let mut train_items = Vec::new();
    let mut test = Vec::new();
    for (i, item) in labels.items.iter().enumerate() {
        let r = records.get(item.record).ok_or_else(|| DdsmError::Invalid {
            what: "split".into(),
            message: format!(
                "item {i} refers to record {} of {} records",
                item.record,
                records.len()
            ),
        })?;
        match r.split {
            OfficialSplit::Train => train_items.push(i),
            OfficialSplit::Test => test.push(i),
        }
    }
    let groups: Vec<&str> = train_items
        .iter()
        .map(|&i| records[labels.items[i].record].patient_id.as_str())
        .collect();
    let vectors: Vec<Vec<f32>> = train_items
        .iter()
        .map(|&i| labels.items[i].target.as_vector(k))
        .collect();
    let in_val = stratified_group_assign(&groups, &vectors, cfg.val_fraction, cfg.seed)?;
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for (j, &i) in train_items.iter().enumerate() {
        if in_val[j] {
            validation.push(i);
        } else {
            train.push(i);
        }
    }
    Ok(DatasetSplit {
        train,
        validation,
        test,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Random grouped data: patients with 1-4 items, class probabilities skewed.
    fn random_data(seed: u64, k: usize) -> (Vec<String>, Vec<Vec<f32>>) {
        let mut rng = Rng::new(seed);
        let mut groups = Vec::new();
        let mut labels = Vec::new();
        for p in 0..300 {
            let n = 1 + rng.index(4);
            let base = rng.index(k);
            for _ in 0..n {
                let c = if rng.bernoulli(0.7) {
                    base
                } else {
                    rng.index(k)
                };
                let mut v = vec![0.0; k];
                v[c] = 1.0;
                groups.push(format!("P_{p:05}"));
                labels.push(v);
            }
        }
        (groups, labels)
    }

    /// Property over many seeds: no patient crosses, every class is close to 30%.
    #[test]
    fn groups_never_cross_and_classes_are_stratified() {
        for seed in 0..60 {
            let (groups, labels) = random_data(seed, 3);
            let g: Vec<&str> = groups.iter().map(String::as_str).collect();
            let in_val = stratified_group_assign(&g, &labels, 0.3, seed).expect("split");
            let val_p: HashSet<&str> = g
                .iter()
                .zip(&in_val)
                .filter(|(_, v)| **v)
                .map(|(p, _)| *p)
                .collect();
            let train_p: HashSet<&str> = g
                .iter()
                .zip(&in_val)
                .filter(|(_, v)| !**v)
                .map(|(p, _)| *p)
                .collect();
            assert!(
                val_p.is_disjoint(&train_p),
                "seed {seed}: a patient is on both sides"
            );
            for c in 0..3 {
                let total = labels.iter().filter(|l| l[c] > 0.0).count() as f64;
                let val = labels
                    .iter()
                    .zip(&in_val)
                    .filter(|(l, v)| l[c] > 0.0 && **v)
                    .count() as f64;
                let f = val / total;
                assert!((f - 0.3).abs() < 0.04, "seed {seed}, class {c}: {f}");
            }
        }
    }

    #[test]
    fn seeds_change_the_split_and_repeat_it() {
        let (groups, labels) = random_data(1, 2);
        let g: Vec<&str> = groups.iter().map(String::as_str).collect();
        let a = stratified_group_assign(&g, &labels, 0.3, 1).expect("split");
        let b = stratified_group_assign(&g, &labels, 0.3, 1).expect("split");
        let c = stratified_group_assign(&g, &labels, 0.3, 2).expect("split");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(stratified_group_assign(&["a"], &[vec![1.0], vec![0.0]], 0.3, 0).is_err());
        assert!(stratified_group_assign(&["a"], &[vec![1.0]], 1.5, 0).is_err());
        assert!(
            stratified_group_assign(&["a", "b"], &[vec![1.0], vec![0.0, 1.0]], 0.3, 0).is_err()
        );
    }
}
