//! scikit-learn's macro average precision with columns that have no positives:
//! `average_precision_score(Y, S, average="macro")` scores such a column 0 and averages over
//! every column; `multilabel_average_precision_sklearn` gives that value and names them.

#![allow(clippy::unwrap_used)]

use miram_metrics::{
    average_precision, multilabel_average_precision, multilabel_average_precision_sklearn, Average,
    MetricsError,
};

#[test]
fn a_column_without_positives_counts_zero_over_all_columns() {
    // 5 columns, only column 0 has positives and is ranked perfectly: sklearn gives 0.2
    // (not 1.0, the mean over the defined column only).
    let n = 6;
    let mut y = vec![0u8; n * 5];
    let mut s = vec![0.0; n * 5];
    for i in 0..n {
        y[i * 5] = u8::from(i < 2);
        s[i * 5] = if i < 2 { 0.9 } else { 0.1 };
        for c in 1..5 {
            s[i * 5 + c] = (i * c) as f64 / 30.0;
        }
    }
    let m = multilabel_average_precision_sklearn(&y, &s, 5).unwrap();
    assert!((m.value - 0.2).abs() < 1e-15, "{}", m.value);
    assert_eq!(m.columns_without_positives, vec![1, 2, 3, 4]);
    assert_eq!(m.per_column, vec![Some(1.0), None, None, None, None]);
    // The strict macro average refuses the same input, naming the first such column.
    assert!(matches!(
        multilabel_average_precision(&y, &s, 5, Average::Macro),
        Err(MetricsError::Column { column: 1, .. })
    ));
}

#[test]
fn without_absent_columns_it_is_the_macro_average() {
    let y = [1u8, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1];
    let s = [0.9, 0.2, 0.4, 0.3, 0.7, 0.6, 0.1, 0.4, 0.8, 0.5, 0.35, 0.45];
    let m = multilabel_average_precision_sklearn(&y, &s, 3).unwrap();
    let strict = multilabel_average_precision(&y, &s, 3, Average::Macro).unwrap();
    assert_eq!(m.value, strict);
    assert!(m.columns_without_positives.is_empty());
    let col0: Vec<u8> = y.iter().step_by(3).copied().collect();
    let s0: Vec<f64> = s.iter().step_by(3).copied().collect();
    assert_eq!(
        m.per_column[0],
        Some(average_precision(&col0, &s0).unwrap())
    );
}

#[test]
fn no_positive_anywhere_is_an_error() {
    let e = multilabel_average_precision_sklearn(&[0u8, 0, 0, 0], &[0.1, 0.2, 0.3, 0.4], 2)
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OneClass {
                class_present: 0,
                ..
            }
        ),
        "{e}"
    );
    let e = multilabel_average_precision_sklearn(&[0u8, 1], &[0.1, f64::NAN], 2).unwrap_err();
    assert!(matches!(e, MetricsError::NonFinite { .. }), "{e}");
}
