//! The binary metrics take `ndarray` inputs as well as slices: the same scores as a slice,
//! an `Array1`, its view and a strided (non-contiguous) view of a longer array give
//! identical results, bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use miram_metrics::{
    average_precision, binary_report, delong, delong_ci, delong_test, precision_recall_curve,
    roc_auc, roc_curve, CurvePoints, ReportConfig,
};
use ndarray::{s, Array1};

const Y: [u8; 10] = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0];
const A: [f64; 10] = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.5, 0.9, 0.45, 0.3];
const B: [f64; 10] = [0.3, 0.2, 0.4, 0.6, 0.5, 0.55, 0.45, 0.7, 0.65, 0.1];

/// `v` at the even positions of a twice-as-long array, 99 at the odd ones.
fn interleaved(v: &[f64]) -> Array1<f64> {
    v.iter().flat_map(|&x| [x, 99.0]).collect()
}

#[test]
fn slices_arrays_views_and_strided_views_agree() {
    let (a_arr, b_arr) = (Array1::from(A.to_vec()), Array1::from(B.to_vec()));
    let y_arr = Array1::from(Y.to_vec());
    let (a_long, b_long) = (interleaved(&A), interleaved(&B));
    let (a_strided, b_strided) = (a_long.slice(s![..;2]), b_long.slice(s![..;2]));
    assert!(
        a_strided.as_slice().is_none(),
        "the view must be non-contiguous"
    );

    let want = roc_auc(&Y, &A).unwrap();
    for got in [
        roc_auc(&y_arr, &a_arr).unwrap(),
        roc_auc(&y_arr.view(), &a_arr.view()).unwrap(),
        roc_auc(&Y, &a_strided).unwrap(),
        roc_auc(&Y[..], &a_arr).unwrap(),
    ] {
        assert_eq!(got.to_bits(), want.to_bits());
    }
    let ap = average_precision(&Y, &A).unwrap();
    assert_eq!(
        average_precision(&y_arr.view(), &a_strided)
            .unwrap()
            .to_bits(),
        ap.to_bits()
    );

    for points in [CurvePoints::All, CurvePoints::DropIntermediate] {
        assert_eq!(
            roc_curve(&Y, &A, points).unwrap(),
            roc_curve(&y_arr, &a_strided, points).unwrap()
        );
        assert_eq!(
            precision_recall_curve(&Y, &A, points).unwrap(),
            precision_recall_curve(&y_arr.view(), &a_strided, points).unwrap()
        );
    }

    let d = delong(&Y, &A).unwrap();
    let d_view = delong(&y_arr, &a_strided).unwrap();
    assert_eq!(
        (d.auc.to_bits(), d.variance.to_bits()),
        (d_view.auc.to_bits(), d_view.variance.to_bits())
    );
    let ci = delong_ci(&Y, &A, 0.95).unwrap();
    let ci_view = delong_ci(&y_arr.view(), &a_arr.view(), 0.95).unwrap();
    assert_eq!(
        (ci.lower.to_bits(), ci.upper.to_bits()),
        (ci_view.lower.to_bits(), ci_view.upper.to_bits())
    );
    let t = delong_test(&Y, &A, &B).unwrap();
    let t_view = delong_test(&y_arr, &a_strided, &b_strided).unwrap();
    assert_eq!(t.p_value.to_bits(), t_view.p_value.to_bits());
    assert_eq!(t.z.to_bits(), t_view.z.to_bits());
    let t_arr = delong_test(&y_arr, &a_arr, &b_arr).unwrap();
    assert_eq!(t.p_value.to_bits(), t_arr.p_value.to_bits());

    let cfg = ReportConfig::default();
    let r = serde_json::to_string(&binary_report(&Y, &A, &cfg).unwrap()).unwrap();
    let r_view =
        serde_json::to_string(&binary_report(&y_arr.view(), &a_strided, &cfg).unwrap()).unwrap();
    assert_eq!(r, r_view);
}

/// The strided view's errors are the slice's: a length mismatch names both lengths.
#[test]
fn strided_inputs_keep_the_errors() {
    let long = interleaved(&A);
    let short = long.slice(s![..10;2]); // 5 values
    let e_view = roc_auc(&Y, &short).unwrap_err().to_string();
    let e_slice = roc_auc(&Y, &A[..5]).unwrap_err().to_string();
    assert_eq!(e_view, e_slice);
}
