//! Property tests (proptest) of the metrics: symmetries and invariances that must hold for
//! any input (AUC of reversed scores is 1 - AUC, invariance to strictly increasing
//! transforms, AP of a perfect ranking is 1), and agreement with the brute-force definitions
//! (Mann-Whitney pairs for the AUC, precision at each positive for the AP, and the O(m n)
//! DeLong reference implementation the fixtures were computed with, ported below).

use miram_metrics::{
    average_precision, bootstrap_binary, delong, delong_test, multilabel_roc_auc,
    multilabel_roc_auc_per_label, precision_recall_curve, roc_auc, roc_auc_ovr, roc_curve,
    sensitivity_specificity, youden_point, Average, BootstrapConfig, CurvePoints, MetricsError,
};
use proptest::prelude::*;

/// Labels with both classes and scores on a grid of 1/1000 (so that the transforms below
/// stay strictly increasing in floating point) with many ties when `levels` is small.
fn problem(max_n: usize) -> impl Strategy<Value = (Vec<u8>, Vec<f64>)> {
    (2usize..max_n, 1i32..2000).prop_flat_map(|(n, levels)| {
        (
            proptest::collection::vec(0u8..2, n),
            proptest::collection::vec(-levels..=levels, n),
        )
            .prop_map(|(mut y, k)| {
                y[0] = 0;
                y[1] = 1;
                (y, k.into_iter().map(|v| f64::from(v) / 1000.0).collect())
            })
    })
}

/// Like [`problem`] with at least two samples of each class (DeLong needs them).
fn delong_problem(max_n: usize) -> impl Strategy<Value = (Vec<u8>, Vec<f64>, Vec<f64>)> {
    (4usize..max_n, 1i32..50).prop_flat_map(|(n, levels)| {
        (
            proptest::collection::vec(0u8..2, n),
            proptest::collection::vec(-levels..=levels, n),
            proptest::collection::vec(-levels..=levels, n),
        )
            .prop_map(|(mut y, a, b)| {
                y[..4].copy_from_slice(&[0, 1, 0, 1]);
                let f = |v: Vec<i32>| v.into_iter().map(|x| f64::from(x) / 10.0).collect();
                (y, f(a), f(b))
            })
    })
}

/// psi of DeLong: 1, 1/2, 0 for >, =, <.
fn psi(x: f64, y: f64) -> f64 {
    if x > y {
        1.0
    } else if x == y {
        0.5
    } else {
        0.0
    }
}

fn split(y: &[u8], s: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let pos = y
        .iter()
        .zip(s)
        .filter(|(&l, _)| l == 1)
        .map(|(_, &v)| v)
        .collect();
    let neg = y
        .iter()
        .zip(s)
        .filter(|(&l, _)| l == 0)
        .map(|(_, &v)| v)
        .collect();
    (pos, neg)
}

/// The Mann-Whitney form of the AUC, O(m n).
fn brute_auc(y: &[u8], s: &[f64]) -> f64 {
    let (pos, neg) = split(y, s);
    let sum: f64 = pos
        .iter()
        .map(|&x| neg.iter().map(|&v| psi(x, v)).sum::<f64>())
        .sum();
    sum / (pos.len() * neg.len()) as f64
}

/// Step-wise AP by its definition: the mean over positives of the precision at the threshold
/// equal to that positive's score.
fn brute_ap(y: &[u8], s: &[f64]) -> f64 {
    let (pos, _) = split(y, s);
    let precision_at = |t: f64| {
        let predicted = s.iter().filter(|&&v| v >= t).count();
        let tp = pos.iter().filter(|&&v| v >= t).count();
        tp as f64 / predicted as f64
    };
    pos.iter().map(|&t| precision_at(t)).sum::<f64>() / pos.len() as f64
}

/// `delong_ref.py::components` and the covariance with `ddof = 1`.
fn ref_components(y: &[u8], s: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (pos, neg) = split(y, s);
    let v10 = pos
        .iter()
        .map(|&x| neg.iter().map(|&v| psi(x, v)).sum::<f64>() / neg.len() as f64)
        .collect();
    let v01 = neg
        .iter()
        .map(|&v| pos.iter().map(|&x| psi(x, v)).sum::<f64>() / pos.len() as f64)
        .collect();
    (v10, v01)
}

fn ref_cov(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / k, b.iter().sum::<f64>() / k);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (k - 1.0)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn auc_of_reversed_scores_is_one_minus_auc((y, s) in problem(80)) {
        let neg: Vec<f64> = s.iter().map(|v| -v).collect();
        let a = roc_auc(&y, &s).unwrap();
        let b = roc_auc(&y, &neg).unwrap();
        prop_assert!((a + b - 1.0).abs() < 1e-12, "{a} + {b} != 1");
    }

    #[test]
    fn metrics_are_invariant_to_increasing_transforms((y, s) in problem(80)) {
        let transforms: [fn(f64) -> f64; 3] = [|x| x.exp(), |x| x * x * x + x, |x| 3.0 * x.atan() - 7.0];
        let auc = roc_auc(&y, &s).unwrap();
        let ap = average_precision(&y, &s).unwrap();
        let youden = youden_point(&y, &s).unwrap();
        for f in transforms {
            let t: Vec<f64> = s.iter().map(|&v| f(v)).collect();
            prop_assert_eq!(roc_auc(&y, &t).unwrap(), auc);
            prop_assert_eq!(average_precision(&y, &t).unwrap(), ap);
            let yt = youden_point(&y, &t).unwrap();
            prop_assert_eq!((yt.sensitivity, yt.specificity), (youden.sensitivity, youden.specificity));
            prop_assert_eq!(yt.threshold, f(youden.threshold));
        }
    }

    #[test]
    fn perfect_ranking_has_ap_and_auc_one((y, s) in problem(80)) {
        // Positives score above every negative, ties among them allowed.
        let perfect: Vec<f64> = y.iter().zip(&s).map(|(&l, &v)| if l == 1 { 10.0 + v.abs() } else { -v.abs() }).collect();
        prop_assert_eq!(average_precision(&y, &perfect).unwrap(), 1.0);
        prop_assert_eq!(roc_auc(&y, &perfect).unwrap(), 1.0);
    }

    #[test]
    fn auc_and_ap_match_their_definitions((y, s) in problem(60)) {
        let (auc, ap) = (roc_auc(&y, &s).unwrap(), average_precision(&y, &s).unwrap());
        prop_assert!(close(auc, brute_auc(&y, &s), 1e-12), "auc {auc} vs {}", brute_auc(&y, &s));
        prop_assert!(close(ap, brute_ap(&y, &s), 1e-12), "ap {ap} vs {}", brute_ap(&y, &s));
    }

    #[test]
    fn curves_integrate_to_the_metrics((y, s) in problem(60)) {
        let auc = roc_auc(&y, &s).unwrap();
        for points in [CurvePoints::All, CurvePoints::DropIntermediate] {
            let c = roc_curve(&y, &s, points).unwrap();
            let area: f64 = c.fpr.windows(2).zip(c.tpr.windows(2))
                .map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0).sum();
            prop_assert!(close(area, auc, 1e-12));
            prop_assert_eq!(c.fpr.first().copied(), Some(0.0));
            prop_assert_eq!(c.tpr.last().copied(), Some(1.0));
        }
        let ap = average_precision(&y, &s).unwrap();
        let pr = precision_recall_curve(&y, &s, CurvePoints::All).unwrap();
        let step: f64 = -pr.recall.windows(2).zip(&pr.precision).map(|(r, p)| (r[1] - r[0]) * p).sum::<f64>();
        prop_assert!(close(step, ap, 1e-12));
        prop_assert_eq!(pr.precision.len(), pr.thresholds.len() + 1);
    }

    #[test]
    fn youden_point_maximises_j((y, s) in problem(50)) {
        let best = youden_point(&y, &s).unwrap();
        for &t in &s {
            let p = sensitivity_specificity(&y, &s, t).unwrap();
            prop_assert!(p.youden_j <= best.youden_j + 1e-12, "J({t}) = {} > {}", p.youden_j, best.youden_j);
        }
        let at = sensitivity_specificity(&y, &s, best.threshold).unwrap();
        prop_assert_eq!((at.sensitivity, at.specificity), (best.sensitivity, best.specificity));
    }

    #[test]
    fn fast_delong_matches_the_reference((y, a, b) in delong_problem(60)) {
        let (a10, a01) = ref_components(&y, &a);
        let (b10, b01) = ref_components(&y, &b);
        let (m, n) = (a10.len() as f64, a01.len() as f64);
        let var_a = ref_cov(&a10, &a10) / m + ref_cov(&a01, &a01) / n;
        let var_b = ref_cov(&b10, &b10) / m + ref_cov(&b01, &b01) / n;
        let cov_ab = ref_cov(&a10, &b10) / m + ref_cov(&a01, &b01) / n;
        let d = delong(&y, &a).unwrap();
        prop_assert!(close(d.auc, brute_auc(&y, &a), 1e-12));
        prop_assert!(close(d.variance, var_a, 1e-10), "var {} vs {var_a}", d.variance);
        match delong_test(&y, &a, &b) {
            Ok(t) => {
                prop_assert!(close(t.var_a, var_a, 1e-10) && close(t.var_b, var_b, 1e-10));
                prop_assert!(close(t.cov_ab, cov_ab, 1e-10), "cov {} vs {cov_ab}", t.cov_ab);
                // The variance of the difference cancels: compare it on the scale of its
                // terms, and z only where it is not dominated by that cancellation.
                let var_d = var_a + var_b - 2.0 * cov_ab;
                let scale = var_a + var_b;
                prop_assert!((t.difference_variance() - var_d).abs() <= 1e-12 * scale);
                if var_d > 1e-6 * scale {
                    let z = (brute_auc(&y, &a) - brute_auc(&y, &b)) / var_d.sqrt();
                    prop_assert!(close(t.z, z, 1e-8), "z {} vs {z}", t.z);
                }
            }
            Err(MetricsError::DegenerateVariance { value, .. }) => {
                prop_assert!((var_a + var_b - 2.0 * cov_ab).abs() < 1e-12, "refused a variance of {value}");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn two_class_ovr_equals_binary_auc((y, s) in problem(60)) {
        // Column 1 holds p = (s + 5) / 10 in [0, 1], column 0 its complement.
        let p1: Vec<f64> = s.iter().map(|v| (v + 5.0) / 10.0).collect();
        let probs: Vec<f64> = p1.iter().flat_map(|&p| [1.0 - p, p]).collect();
        let labels: Vec<usize> = y.iter().map(|&v| usize::from(v)).collect();
        let binary = roc_auc(&y, &p1).unwrap();
        for avg in [Average::Macro, Average::Weighted] {
            prop_assert!(close(roc_auc_ovr(&labels, &probs, 2, avg).unwrap(), binary, 1e-12));
        }
    }

    #[test]
    fn multilabel_averages_are_built_from_binary_aucs((y, s) in problem(60)) {
        // Two labels: the problem and the problem with labels flipped.
        let yy: Vec<u8> = y.iter().flat_map(|&v| [v, 1 - v]).collect();
        let ss: Vec<f64> = s.iter().flat_map(|&v| [v, v * 0.5 + 0.1]).collect();
        let flipped: Vec<u8> = y.iter().map(|&v| 1 - v).collect();
        let half: Vec<f64> = s.iter().map(|&v| v * 0.5 + 0.1).collect();
        let per = multilabel_roc_auc_per_label(&yy, &ss, 2).unwrap();
        prop_assert_eq!(per[0], roc_auc(&y, &s).unwrap());
        prop_assert_eq!(per[1], roc_auc(&flipped, &half).unwrap());
        let macro_ = multilabel_roc_auc(&yy, &ss, 2, Average::Macro).unwrap();
        prop_assert!(close(macro_, (per[0] + per[1]) / 2.0, 1e-15));
        prop_assert_eq!(multilabel_roc_auc(&yy, &ss, 2, Average::Micro).unwrap(), roc_auc(&yy, &ss).unwrap());
    }

    #[test]
    fn a_non_finite_score_is_always_an_error((y, s) in problem(40), at in any::<prop::sample::Index>(), kind in 0usize..3) {
        let mut s = s;
        let i = at.index(s.len());
        s[i] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][kind];
        for r in [roc_auc(&y, &s), average_precision(&y, &s)] {
            match r {
                Err(MetricsError::NonFinite { at: miram_metrics::Location::Index(j), .. }) => prop_assert_eq!(j, i),
                other => prop_assert!(false, "expected NonFinite at {i}, got {other:?}"),
            }
        }
    }
}

#[test]
fn bootstrap_is_deterministic_and_independent_of_threads() {
    let n = 300;
    let mut rng = miram_rand::Rng::new(5);
    let y: Vec<u8> = (0..n).map(|_| u8::from(rng.bernoulli(0.3))).collect();
    let s: Vec<f64> = y.iter().map(|&v| rng.normal_f64() + f64::from(v)).collect();
    let cfg = BootstrapConfig {
        n_resamples: 400,
        level: 0.9,
        seed: 11,
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| bootstrap_binary(&y, &s, &cfg, roc_auc).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    assert_eq!(one.estimate, roc_auc(&y, &s).unwrap());
    assert!(
        one.lower < one.estimate && one.estimate < one.upper,
        "{one:?}"
    );
    assert_eq!((one.n_valid, one.n_skipped), (400, 0));
    // Another seed draws other resamples.
    let other = bootstrap_binary(&y, &s, &BootstrapConfig { seed: 12, ..cfg }, |y, s| {
        roc_auc(y, s)
    })
    .unwrap();
    assert_ne!(one.lower, other.lower);
    // The bootstrap standard error agrees with DeLong's to within sampling error.
    let d = delong(&y, &s).unwrap();
    let ratio = one.std_error / d.std_error();
    assert!(
        (0.8..1.25).contains(&ratio),
        "bootstrap se {} vs DeLong {}",
        one.std_error,
        d.std_error()
    );
}
