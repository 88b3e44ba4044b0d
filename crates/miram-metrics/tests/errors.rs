//! Undefined metrics are errors that say which, never numbers (issue item 4 and the
//! project's reliability targets): one class only, NaN or infinite
//! scores, length mismatches and empty input, for every family of functions. Each case
//! checks the error variant and that the message names the values at fault.

use miram_metrics::{
    average_precision, average_precision_ovr, binary_report, bootstrap_binary, delong, delong_ci,
    delong_test, multiclass_report, multilabel_average_precision, multilabel_report,
    multilabel_roc_auc, precision_recall_curve, roc_auc, roc_auc_ovr, roc_curve,
    sensitivity_specificity, youden_point, Average, BinaryConfusion, BootstrapConfig, CurvePoints,
    Location, MetricsError, ReportConfig, Result,
};

/// Checks `r` is an error matching `pred` whose message contains every string of `words`.
#[track_caller]
fn check<T: std::fmt::Debug>(r: Result<T>, pred: fn(&MetricsError) -> bool, words: &[&str]) {
    let e = r.expect_err("expected an error");
    assert!(pred(&e), "unexpected variant: {e:?}");
    let msg = e.to_string();
    for w in words {
        assert!(msg.contains(w), "message {msg:?} does not mention {w:?}");
    }
}

fn is_one_class(e: &MetricsError) -> bool {
    matches!(e, MetricsError::OneClass { .. })
}
fn is_non_finite(e: &MetricsError) -> bool {
    matches!(e, MetricsError::NonFinite { .. })
}
fn is_length(e: &MetricsError) -> bool {
    matches!(e, MetricsError::LengthMismatch { .. })
}
fn is_empty(e: &MetricsError) -> bool {
    matches!(e, MetricsError::Empty { .. })
}
fn is_label(e: &MetricsError) -> bool {
    matches!(e, MetricsError::InvalidLabel { .. })
}

#[test]
fn binary_functions_refuse_undefined_inputs() {
    type Binary = fn(&[u8], &[f64]) -> Result<f64>;
    let functions: [(&str, Binary); 6] = [
        ("roc_auc", roc_auc::<u8>),
        ("average_precision", average_precision::<u8>),
        ("roc_curve", |y, s| {
            roc_curve(y, s, CurvePoints::All).map(|c| c.fpr[0])
        }),
        ("pr_curve", |y, s| {
            precision_recall_curve(y, s, CurvePoints::All).map(|c| c.recall[0])
        }),
        ("youden", |y, s| youden_point(y, s).map(|p| p.threshold)),
        ("delong", |y, s| delong(y, s).map(|d| d.variance)),
    ];
    for (name, f) in functions {
        println!("{name}");
        check(
            f(&[0, 1, 1], &[0.1, f64::NAN, 0.3]),
            is_non_finite,
            &["NaN", "index 1"],
        );
        check(
            f(&[0, 1, 1], &[0.1, 0.2, f64::INFINITY]),
            is_non_finite,
            &["inf", "index 2"],
        );
        check(
            f(&[0, 1, 1], &[0.1, 0.2]),
            is_length,
            &["y_score", "2", "3"],
        );
        check(f(&[], &[]), is_empty, &["y_true"]);
        check(
            f(&[0, 2], &[0.1, 0.2]),
            is_label,
            &["invalid label 2", "index 1"],
        );
        check(
            f(&[0, 0, 0], &[0.1, 0.2, 0.3]),
            is_one_class,
            &["only one class", "0"],
        );
    }
    // One class of positives: the AUC, the ROC curve, Youden and DeLong are undefined; the AP
    // and the PR curve are defined (precision 1 everywhere), as in scikit-learn.
    check(
        roc_auc(&[1u8, 1, 1], &[0.2, 0.5, 0.9]),
        is_one_class,
        &["all 3 samples are 1", "ROC AUC"],
    );
    assert_eq!(
        average_precision(&[1u8, 1, 1], &[0.2, 0.5, 0.9]).unwrap(),
        1.0
    );
}

#[test]
fn threshold_metrics_refuse_undefined_inputs() {
    check(
        sensitivity_specificity(&[0u8, 0], &[0.1, 0.9], 0.5),
        is_one_class,
        &["sensitivity"],
    );
    check(
        sensitivity_specificity(&[1u8, 1], &[0.1, 0.9], 0.5),
        is_one_class,
        &["specificity"],
    );
    check(
        BinaryConfusion::at_threshold(&[0u8, 1], &[0.1, 0.9], f64::NAN),
        |e| {
            matches!(
                e,
                MetricsError::InvalidParameter {
                    name: "threshold",
                    ..
                }
            )
        },
        &["threshold", "NaN"],
    );
    // Accuracy needs no second class.
    let c = BinaryConfusion::at_threshold(&[1u8, 1], &[0.1, 0.9], 0.5).unwrap();
    assert_eq!(c.accuracy(), 0.5);
}

#[test]
fn multiclass_functions_refuse_undefined_inputs() {
    let y = [0usize, 1, 2];
    let p = [0.6, 0.3, 0.1, 0.2, 0.5, 0.3, 0.1, 0.2, 0.7];
    for avg in [Average::Macro, Average::Weighted, Average::Micro] {
        let mut bad = p;
        bad[4] = f64::NAN;
        check(
            roc_auc_ovr(&y, &bad, 3, avg),
            is_non_finite,
            &["row 1, column 1"],
        );
        check(
            average_precision_ovr(&y, &bad, 3, avg),
            is_non_finite,
            &["row 1, column 1"],
        );
        check(
            roc_auc_ovr(&y, &p[..8], 3, avg),
            is_length,
            &["y_prob", "9", "8"],
        );
        check(roc_auc_ovr(&[], &[], 3, avg), is_empty, &["y_true"]);
        check(
            roc_auc_ovr(&[0, 3, 1], &p, 3, avg),
            is_label,
            &["invalid label 3", "0..3"],
        );
        check(
            roc_auc_ovr(&y, &p, 1, avg),
            |e| {
                matches!(
                    e,
                    MetricsError::InvalidParameter {
                        name: "n_classes",
                        ..
                    }
                )
            },
            &["n_classes", "1"],
        );
        check(
            roc_auc_ovr(&[0, 0, 1], &p, 3, avg),
            |e| matches!(e, MetricsError::MissingClass { class: 2, .. }),
            &["class 2"],
        );
    }
    check(
        multiclass_report(&[0, 0, 1], &p, 3, &ReportConfig::default()),
        |e| matches!(e, MetricsError::MissingClass { class: 2, .. }),
        &["class 2"],
    );
}

#[test]
fn multilabel_functions_refuse_undefined_inputs() {
    let y = [1u8, 0, 0, 1, 1, 1];
    let s = [0.9, 0.2, 0.3, 0.8, 0.7, 0.6];
    let mut bad = s;
    bad[3] = f64::NEG_INFINITY;
    check(
        multilabel_roc_auc(&y, &bad, 2, Average::Macro),
        is_non_finite,
        &["-inf", "row 1, column 1"],
    );
    check(
        multilabel_roc_auc(&y, &s[..4], 2, Average::Macro),
        is_length,
        &["y_score"],
    );
    check(
        multilabel_roc_auc::<u8>(&[], &[], 2, Average::Micro),
        is_empty,
        &["y_true"],
    );
    check(
        multilabel_roc_auc(&[1u8, 0, 0, 5, 1, 1], &s, 2, Average::Macro),
        is_label,
        &["row 1, column 1"],
    );
    // Label 1 has no negative: its AUC is undefined, the error names the column.
    let y1 = [1u8, 1, 0, 1, 1, 1];
    check(
        multilabel_roc_auc(&y1, &s, 2, Average::Macro),
        |e| matches!(e, MetricsError::Column { column: 1, .. }),
        &["column 1", "only one class"],
    );
    check(
        multilabel_report(&y1, &s, 2, &ReportConfig::default()),
        |e| matches!(e, MetricsError::Column { column: 1, .. }),
        &["column 1"],
    );
    // Label 0 has no positive: the macro AP refuses (scikit-learn would count 0 and warn).
    let y0 = [0u8, 1, 0, 0, 0, 1];
    check(
        multilabel_average_precision(&y0, &s, 2, Average::Macro),
        |e| matches!(e, MetricsError::Column { column: 0, .. }),
        &["column 0", "all 3 samples are 0"],
    );
}

#[test]
fn delong_refuses_undefined_inputs() {
    let y = [0u8, 1, 0, 1];
    check(
        delong_test(&y, &[0.1, 0.2, 0.3, 0.4], &[0.1, 0.2]),
        is_length,
        &["y_score_b"],
    );
    check(
        delong_test(&y, &[0.1, 0.2, 0.3, 0.4], &[0.1, 0.2, f64::NAN, 0.4]),
        is_non_finite,
        &["y_score_b", "index 2"],
    );
    check(
        delong_test(&[1u8, 1, 1], &[0.1, 0.2, 0.3], &[0.3, 0.2, 0.1]),
        is_one_class,
        &["DeLong"],
    );
    check(
        delong_ci(&y, &[0.1, 0.2, 0.3, 0.4], 1.5),
        |e| matches!(e, MetricsError::InvalidParameter { name: "level", .. }),
        &["1.5"],
    );
    let nan_at = delong(&[0u8, 1, 0, 1], &[0.1, 0.2, f64::NAN, 0.4]).unwrap_err();
    assert!(matches!(
        nan_at,
        MetricsError::NonFinite {
            at: Location::Index(2),
            ..
        }
    ));
}

#[test]
fn reports_and_bootstraps_refuse_undefined_inputs() {
    check(
        binary_report(&[1u8, 1], &[0.1, 0.2], &ReportConfig::default()),
        is_one_class,
        &["ROC AUC"],
    );
    check(
        binary_report(&[0u8, 1], &[0.1, f64::NAN], &ReportConfig::default()),
        is_non_finite,
        &["index 1"],
    );
    let cfg = BootstrapConfig {
        n_resamples: 0,
        ..BootstrapConfig::default()
    };
    check(
        bootstrap_binary(&[0u8, 1], &[0.1, 0.2], &cfg, roc_auc),
        |e| {
            matches!(
                e,
                MetricsError::InvalidParameter {
                    name: "n_resamples",
                    ..
                }
            )
        },
        &["n_resamples"],
    );
    // The estimate on the full data must be defined.
    check(
        bootstrap_binary(&[1u8, 1], &[0.1, 0.2], &BootstrapConfig::quick(), roc_auc),
        is_one_class,
        &["ROC AUC"],
    );
}
