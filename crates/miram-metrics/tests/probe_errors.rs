//! The probes refuse bad input with an error that names it, and never panic: each case
//! checks the error variant and that the message names the value at fault and what is
//! allowed; a property test throws arbitrary shapes, values and settings at both probes.

use miram_metrics::{
    knn_predict_proba, KnnConfig, KnnMetric, LogisticConfig, LogisticProbe, MetricsError,
    ProbeLabels, Result,
};
use proptest::prelude::*;

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

// Four training rows of two features, two classes.
const X: [f64; 8] = [0.0, 1.0, 0.5, 0.7, 1.0, 0.0, 0.8, 0.1];
const Y: [usize; 4] = [0, 0, 1, 1];
const Q: [f64; 2] = [0.2, 0.9];

fn classes() -> ProbeLabels<'static> {
    ProbeLabels::Classes {
        y: &Y,
        n_classes: 2,
    }
}

fn knn(
    train: &[f64],
    dim: usize,
    labels: ProbeLabels<'_>,
    query: &[f64],
    k: usize,
) -> Result<Vec<f64>> {
    knn_predict_proba(
        train,
        dim,
        labels,
        query,
        &KnnConfig {
            k,
            metric: KnnMetric::Euclidean,
        },
    )
}

fn logistic(x: &[f64], dim: usize, labels: ProbeLabels<'_>, query: &[f64]) -> Result<Vec<f64>> {
    LogisticProbe::fit(x, dim, labels, &LogisticConfig::default())?.predict_proba(query)
}

/// A probe run: `(train, dim, labels, query)` -> probabilities.
type Probe = fn(&[f64], usize, ProbeLabels<'_>, &[f64]) -> Result<Vec<f64>>;

/// The checks both probes share: `run(train, dim, labels, query)`.
fn shared_refusals(name: &str, run: Probe) {
    println!("{name}");
    check(
        run(&[], 2, classes(), &Q),
        |e| matches!(e, MetricsError::Empty { .. }),
        &["empty"],
    );
    check(
        run(&X, 0, classes(), &Q),
        |e| matches!(e, MetricsError::InvalidParameter { name: "dim", .. }),
        &["`dim` = 0", "at least 1"],
    );
    check(
        run(&X[..7], 2, classes(), &Q),
        |e| matches!(e, MetricsError::NotRows { len: 7, dim: 2, .. }),
        &["7 values", "multiple of its row length 2"],
    );
    let mut bad = X;
    bad[5] = f64::NAN;
    check(
        run(&bad, 2, classes(), &Q),
        |e| {
            matches!(
                e,
                MetricsError::NonFiniteFeature {
                    row: 2,
                    column: 1,
                    ..
                }
            )
        },
        &["NaN", "row 2, column 1"],
    );
    check(
        run(&X, 2, classes(), &[0.1, f64::NEG_INFINITY]),
        |e| {
            matches!(
                e,
                MetricsError::NonFiniteFeature {
                    row: 0,
                    column: 1,
                    ..
                }
            )
        },
        &["-inf", "row 0, column 1"],
    );
    check(
        run(&X, 2, classes(), &[0.1, 0.2, 0.3]),
        |e| matches!(e, MetricsError::NotRows { len: 3, .. }),
        &["3 values"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::Classes {
                y: &Y[..3],
                n_classes: 2,
            },
            &Q,
        ),
        |e| {
            matches!(
                e,
                MetricsError::LengthMismatch {
                    expected: 4,
                    got: 3,
                    ..
                }
            )
        },
        &["`y` has 3", "expected 4"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::Classes {
                y: &[0, 1, 3, 1],
                n_classes: 3,
            },
            &Q,
        ),
        |e| matches!(e, MetricsError::InvalidLabel { .. }),
        &["invalid label 3", "index 2", "0..3"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::Classes {
                y: &[0, 0, 0, 0],
                n_classes: 1,
            },
            &Q,
        ),
        |e| {
            matches!(
                e,
                MetricsError::InvalidParameter {
                    name: "n_classes",
                    ..
                }
            )
        },
        &["`n_classes` = 1", "at least 2"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::MultiLabel {
                y: &[0, 1, 1, 0, 2, 1, 0, 1],
                n_labels: 2,
            },
            &Q,
        ),
        |e| matches!(e, MetricsError::InvalidLabel { .. }),
        &["invalid label 2", "row 2, column 0", "0 or 1"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::MultiLabel {
                y: &[0, 1, 1, 0, 1],
                n_labels: 2,
            },
            &Q,
        ),
        |e| matches!(e, MetricsError::NotRows { len: 5, dim: 2, .. }),
        &["`y` has 5 values"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::MultiLabel {
                y: &[0, 1, 1, 0, 1, 1],
                n_labels: 2,
            },
            &Q,
        ),
        |e| {
            matches!(
                e,
                MetricsError::LengthMismatch {
                    expected: 8,
                    got: 6,
                    ..
                }
            )
        },
        &["`y` has 6", "expected 8"],
    );
    check(
        run(
            &X,
            2,
            ProbeLabels::MultiLabel {
                y: &[],
                n_labels: 0,
            },
            &Q,
        ),
        |e| {
            matches!(
                e,
                MetricsError::InvalidParameter {
                    name: "n_labels",
                    ..
                }
            )
        },
        &["`n_labels` = 0"],
    );
}

#[test]
fn knn_refuses_bad_input() {
    shared_refusals("knn", |x, d, l, q| knn(x, d, l, q, 3));
    check(
        knn(&X, 2, classes(), &[], 3),
        |e| matches!(e, MetricsError::Empty { what: "query" }),
        &["`query`"],
    );
    for k in [0, 5, usize::MAX] {
        check(
            knn(&X, 2, classes(), &Q, k),
            |e| matches!(e, MetricsError::OutOfRange { name: "k", .. }),
            &[&format!("`k` = {k}"), "1..=4", "training rows"],
        );
    }
    // Finite features whose squared distances overflow.
    check(
        knn(
            &[1e200, 0.0, -1e200, 0.0],
            2,
            ProbeLabels::Classes {
                y: &[0, 1],
                n_classes: 2,
            },
            &[0.0, 1e200],
            1,
        ),
        |e| matches!(e, MetricsError::Overflow { .. }),
        &[
            "squared distance of query row 0 to training row 0",
            "rescale",
        ],
    );
    check(
        "manhattan".parse::<KnnMetric>(),
        |e| matches!(e, MetricsError::InvalidParameter { name: "metric", .. }),
        &["manhattan", "cosine", "euclidean"],
    );
}

#[test]
fn logistic_refuses_bad_input() {
    shared_refusals("logistic", logistic);
    let probe = LogisticProbe::fit(&X, 2, classes(), &LogisticConfig::default()).unwrap();
    check(
        probe.predict_proba(&[]),
        |e| matches!(e, MetricsError::Empty { what: "x" }),
        &["`x`"],
    );
    check(
        probe.predict_proba(&[1.0, 2.0, 3.0]),
        |e| matches!(e, MetricsError::NotRows { len: 3, dim: 2, .. }),
        &["3 values", "row length 2"],
    );
    check(
        probe.predict_proba(&[0.0, 0.0, 1e308, -1e308]),
        |e| matches!(e, MetricsError::Overflow { .. }),
        &["standardised feature at row 1, column 0", "rescale"],
    );
    let bad_configs = [
        (
            LogisticConfig {
                c: 0.0,
                ..LogisticConfig::default()
            },
            ["`c` = 0", "> 0"],
        ),
        (
            LogisticConfig {
                c: -1.0,
                ..LogisticConfig::default()
            },
            ["`c` = -1", "> 0"],
        ),
        (
            LogisticConfig {
                c: f64::NAN,
                ..LogisticConfig::default()
            },
            ["`c` = NaN", "finite"],
        ),
        (
            LogisticConfig {
                c: f64::INFINITY,
                ..LogisticConfig::default()
            },
            ["`c` = inf", "finite"],
        ),
        (
            LogisticConfig {
                max_iter: 0,
                ..LogisticConfig::default()
            },
            ["`max_iter` = 0", "at least 1"],
        ),
        (
            LogisticConfig {
                tol: 0.0,
                ..LogisticConfig::default()
            },
            ["`tol` = 0", "> 0"],
        ),
        (
            LogisticConfig {
                tol: f64::NAN,
                ..LogisticConfig::default()
            },
            ["`tol` = NaN", "finite"],
        ),
    ];
    for (cfg, words) in bad_configs {
        check(
            LogisticProbe::fit(&X, 2, classes(), &cfg),
            |e| matches!(e, MetricsError::InvalidParameter { .. }),
            &words,
        );
    }
    // A binary model whose labels are all one value, for each kind of probe.
    check(
        LogisticProbe::fit(
            &X,
            2,
            ProbeLabels::Classes {
                y: &[0, 0, 0, 0],
                n_classes: 2,
            },
            &LogisticConfig::default(),
        ),
        |e| {
            matches!(
                e,
                MetricsError::SingleClassModel {
                    positives: 0,
                    n_samples: 4,
                    ..
                }
            )
        },
        &["class 1", "0 positive of 4", "both values"],
    );
    check(
        LogisticProbe::fit(
            &X,
            2,
            ProbeLabels::Classes {
                y: &[0, 2, 0, 2],
                n_classes: 3,
            },
            &LogisticConfig::default(),
        ),
        |e| matches!(e, MetricsError::SingleClassModel { positives: 0, .. }),
        &["class 1"],
    );
    check(
        LogisticProbe::fit(
            &X,
            2,
            ProbeLabels::MultiLabel {
                y: &[0, 1, 1, 1, 0, 1, 1, 1],
                n_labels: 2,
            },
            &LogisticConfig::default(),
        ),
        |e| {
            matches!(
                e,
                MetricsError::SingleClassModel {
                    positives: 4,
                    n_samples: 4,
                    ..
                }
            )
        },
        &["label 1", "4 positive of 4"],
    );
    // One Newton step is not enough to reach the tolerance.
    check(
        LogisticProbe::fit(
            &X,
            2,
            classes(),
            &LogisticConfig {
                max_iter: 1,
                tol: 1e-14,
                c: 100.0,
            },
        ),
        |e| {
            matches!(
                e,
                MetricsError::NotConverged {
                    iterations: 1,
                    max_iter: 1,
                    ..
                }
            )
        },
        &[
            "class 1",
            "max_iter = 1",
            "gradient max-norm",
            "tol = 1e-14",
            "raise max_iter or tol",
        ],
    );
    // Features so large that their mean overflows.
    check(
        LogisticProbe::fit(
            &[1.7e308, 0.0, 1.7e308, 1.0, 0.0, 0.0, 0.0, 1.0],
            2,
            classes(),
            &LogisticConfig::default(),
        ),
        |e| matches!(e, MetricsError::Overflow { .. }),
        &["mean of feature column 0", "rescale"],
    );
}

fn arb_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        120 => -3.0f64..3.0,
        1 => Just(0.0),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -f64::INFINITY, 1e300, -1e300, 1e-300]),
    ]
}

/// Mostly well-formed probe inputs (`n` rows of `dim` features, labels of `n` rows, some out
/// of range), then with a few values dropped from `train` or `y` now and then.
#[derive(Debug)]
struct Inputs {
    dim: usize,
    train: Vec<f64>,
    query: Vec<f64>,
    classes: bool,
    yc: Vec<usize>,
    ym: Vec<u8>,
    outputs: usize,
}

fn arb_inputs() -> impl Strategy<Value = Inputs> {
    (0usize..4, 0usize..12, 0usize..4, 0usize..5, any::<bool>()).prop_flat_map(
        |(dim, n, nq, outputs, classes)| {
            (
                prop::collection::vec(arb_value(), n * dim),
                prop::collection::vec(arb_value(), nq * dim),
                prop::collection::vec(prop_oneof![12 => 0..outputs.max(1), 1 => 0usize..6], n),
                prop::collection::vec(prop_oneof![12 => 0u8..2, 1 => Just(2u8)], n * outputs),
                0usize..8,
                0usize..8,
            )
                .prop_map(move |(mut train, query, mut yc, mut ym, cut_x, cut_y)| {
                    train.truncate(train.len().saturating_sub(cut_x / 7));
                    yc.truncate(yc.len().saturating_sub(cut_y / 7));
                    ym.truncate(ym.len().saturating_sub(cut_y / 7));
                    Inputs {
                        dim,
                        train,
                        query,
                        classes,
                        yc,
                        ym,
                        outputs,
                    }
                })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn probes_never_panic(
        inp in arb_inputs(),
        k in 0usize..14,
        cosine in any::<bool>(),
        c in prop::sample::select(vec![1e-6, 0.01, 1.0, 100.0, 1e6]),
        max_iter in 1usize..30,
    ) {
        let (dim, outputs) = (inp.dim, inp.outputs);
        let labels = if inp.classes {
            ProbeLabels::Classes { y: &inp.yc, n_classes: outputs }
        } else {
            ProbeLabels::MultiLabel { y: &inp.ym, n_labels: outputs }
        };
        let metric = if cosine { KnnMetric::Cosine } else { KnnMetric::Euclidean };
        let query = &inp.query;
        if let Ok(p) = knn_predict_proba(&inp.train, dim, labels, query, &KnnConfig { k, metric }) {
            prop_assert_eq!(p.len(), query.len() / dim * outputs);
            prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            if inp.classes {
                for row in p.chunks_exact(outputs) {
                    prop_assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                }
            }
        }
        let cfg = LogisticConfig { c, max_iter, ..LogisticConfig::default() };
        if let Ok(probe) = LogisticProbe::fit(&inp.train, dim, labels, &cfg) {
            prop_assert_eq!(probe.outputs(), outputs);
            if let Ok(p) = probe.predict_proba(query) {
                prop_assert_eq!(p.len(), query.len() / dim * outputs);
                prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{:?}", p);
                if inp.classes {
                    for row in p.chunks_exact(outputs) {
                        prop_assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{:?}", row);
                    }
                }
            }
        }
    }
}
