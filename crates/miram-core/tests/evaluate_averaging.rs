//! The headline averages of `evaluate` are scikit-learn's: the macro AP over every class
//! (a class without positives counts 0, and the report names it), and a macro AUC that says
//! over which classes it was taken when some class has one label only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use miram_core::cbis_ddsm::loader::ItemMeta;
use miram_core::metrics::{
    average_precision, average_precision_ovr, roc_auc, roc_auc_ovr, Average,
};
use miram_core::train::evaluate::PredictionRow;
use miram_core::train::{evaluate, EvalConfig, Predictions};

fn preds(multilabel: bool, names: &[&str], rows: &[(Vec<f32>, Vec<f64>)]) -> Predictions {
    Predictions {
        task: "test".into(),
        multilabel,
        class_names: names.iter().map(|s| s.to_string()).collect(),
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, (t, s))| PredictionRow {
                item: ItemMeta {
                    index: i,
                    patient_id: format!("P_{i:05}"),
                    image_folder: format!("case_{i}"),
                    abnormality_id: 1,
                    label: String::new(),
                },
                target: t.clone(),
                scores: s.clone(),
            })
            .collect(),
    }
}

fn cfg(resamples: usize) -> EvalConfig {
    EvalConfig {
        bootstrap_resamples: resamples,
        level: 0.95,
        seed: 7,
    }
}

#[test]
fn macro_ap_counts_classes_without_positives_as_zero_and_names_them() {
    // Five margin-like labels; only A occurs (ranked perfectly). scikit-learn's
    // average_precision_score(Y, S, average="macro") is (1 + 0 + 0 + 0 + 0) / 5 = 0.2.
    let names = ["A", "B", "C", "D", "E"];
    let rows: Vec<(Vec<f32>, Vec<f64>)> = (0..8)
        .map(|i| {
            let pos = i < 3;
            let t = vec![f32::from(u8::from(pos)), 0.0, 0.0, 0.0, 0.0];
            let a = if pos {
                0.9 - 0.01 * i as f64
            } else {
                0.1 + 0.01 * i as f64
            };
            (t, vec![a, 0.3, 0.2 + 0.01 * i as f64, 0.5, 0.4])
        })
        .collect();
    let m = evaluate(&preds(true, &names, &rows), &cfg(50)).unwrap();
    assert!((m.ap.unwrap() - 0.2).abs() < 1e-12, "{:?}", m.ap);
    assert_eq!(m.ap_zero_classes, ["B", "C", "D", "E"]);
    assert_eq!(m.auc, Some(1.0));
    assert_eq!(m.auc_classes, ["A"]);
    assert!(
        m.averaging.contains("AP macro over 5 classes")
            && m.averaging.contains("[B, C, D, E]")
            && m.averaging
                .contains("AUC macro over the 1 of 5 classes with both labels: [A]"),
        "{}",
        m.averaging
    );
    let ap_note = m.notes.iter().find(|n| n.starts_with("macro AP")).unwrap();
    assert!(
        ap_note.contains("B, C, D, E") && ap_note.contains("count 0"),
        "{ap_note}"
    );
    let auc_note = m.notes.iter().find(|n| n.starts_with("macro AUC")).unwrap();
    assert!(auc_note.contains("B, C, D, E"), "{auc_note}");
    // The intervals average the same way: the AP replicates stay at 0.2 (A is always
    // ranked perfectly), the AUC replicates are A's.
    let ci = m.ap_ci.unwrap();
    assert!(
        (ci.lower - 0.2).abs() < 1e-12 && (ci.upper - 0.2).abs() < 1e-12,
        "{ci:?}"
    );
    assert_eq!(m.auc_ci.unwrap().n_valid, 50);
    // Per class the undefined stay undefined.
    assert_eq!(m.per_class[1].ap, None);
    assert_eq!(m.per_class[1].auc, None);
}

/// Prediction rows of three classes: the one-hot target of each label and its probabilities.
fn one_hot_rows(labels: &[usize], probs: &[[f64; 3]]) -> Vec<(Vec<f32>, Vec<f64>)> {
    labels
        .iter()
        .zip(probs)
        .map(|(&l, p)| {
            let mut t = vec![0.0; 3];
            t[l] = 1.0;
            (t, p.to_vec())
        })
        .collect()
}

#[test]
fn multiclass_with_an_absent_class_says_which_classes_the_auc_averages() {
    let names = ["X", "Y", "Z"];
    let probs = [
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.5, 0.3],
        [0.5, 0.4, 0.1],
        [0.4, 0.3, 0.3],
    ];
    let labels = [0usize, 0, 1, 1, 1, 0];
    let rows = one_hot_rows(&labels, &probs);
    let m = evaluate(&preds(false, &names, &rows), &cfg(0)).unwrap();
    let col = |c: usize| -> (Vec<u8>, Vec<f64>) {
        (
            labels.iter().map(|&l| u8::from(l == c)).collect(),
            probs.iter().map(|p| p[c]).collect(),
        )
    };
    let (y0, s0) = col(0);
    let (y1, s1) = col(1);
    let ap = (average_precision(&y0, &s0).unwrap() + average_precision(&y1, &s1).unwrap()) / 3.0;
    assert!((m.ap.unwrap() - ap).abs() < 1e-12, "{:?} vs {ap}", m.ap);
    let auc = (roc_auc(&y0, &s0).unwrap() + roc_auc(&y1, &s1).unwrap()) / 2.0;
    assert!((m.auc.unwrap() - auc).abs() < 1e-12);
    assert_eq!(m.auc_classes, ["X", "Y"]);
    assert_eq!(m.ap_zero_classes, ["Z"]);
    assert!(
        m.averaging
            .contains("AUC macro over the 2 of 3 classes with both labels: [X, Y]"),
        "{}",
        m.averaging
    );
    assert!(
        !m.averaging.starts_with("macro over 3 classes"),
        "{}",
        m.averaging
    );
}

#[test]
fn all_classes_defined_is_the_plain_macro_average() {
    let names = ["X", "Y", "Z"];
    let probs = [
        [0.7, 0.2, 0.1],
        [0.2, 0.6, 0.2],
        [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3],
        [0.5, 0.1, 0.4],
        [0.2, 0.2, 0.6],
    ];
    let labels = [0usize, 1, 2, 1, 0, 1];
    let rows = one_hot_rows(&labels, &probs);
    let m = evaluate(&preds(false, &names, &rows), &cfg(0)).unwrap();
    let flat: Vec<f64> = probs.iter().flatten().copied().collect();
    let ap = average_precision_ovr(&labels, &flat, 3, Average::Macro).unwrap();
    let auc = roc_auc_ovr(&labels, &flat, 3, Average::Macro).unwrap();
    assert!((m.ap.unwrap() - ap).abs() < 1e-12);
    assert!((m.auc.unwrap() - auc).abs() < 1e-12);
    assert_eq!(m.averaging, "macro over 3 classes");
    assert!(m.ap_zero_classes.is_empty());
    assert_eq!(m.auc_classes, names);
    assert!(
        m.notes.iter().all(|n| !n.starts_with("macro")),
        "{:?}",
        m.notes
    );
}
