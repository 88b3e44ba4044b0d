//! The task reports: their JSON uses scikit-learn's key names (the command line prints them),
//! their values are those of the individual metric functions, and their bootstrap intervals
//! are deterministic in the seed.

use miram_metrics::{
    average_precision, average_precision_ovr, binary_report, delong_ci, multiclass_report,
    multilabel_average_precision, multilabel_report, multilabel_roc_auc, roc_auc, roc_auc_ovr,
    youden_point, Average, BinaryConfusion, BootstrapConfig, ReportConfig,
};
use miram_rand::Rng;
use serde_json::Value;

fn binary_data(n: usize, seed: u64) -> (Vec<u8>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let y: Vec<u8> = (0..n).map(|_| u8::from(rng.bernoulli(0.35))).collect();
    let s = y
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(rng.normal_f64() + 1.2 * f64::from(v))).exp()))
        .collect();
    (y, s)
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn binary_report_matches_the_functions_and_serialises_with_sklearn_names() {
    let (y, s) = binary_data(400, 1);
    let cfg = ReportConfig {
        threshold: 0.6,
        bootstrap: Some(BootstrapConfig {
            n_resamples: 300,
            ..BootstrapConfig::default()
        }),
        ..ReportConfig::default()
    };
    let r = binary_report(&y, &s, &cfg).unwrap();
    assert_eq!(r.roc_auc, roc_auc(&y, &s).unwrap());
    assert_eq!(r.average_precision, average_precision(&y, &s).unwrap());
    let c = BinaryConfusion::at_threshold(&y, &s, 0.6).unwrap();
    assert_eq!(r.confusion_matrix, c.matrix());
    assert_eq!(
        (r.accuracy, r.balanced_accuracy),
        (c.accuracy(), c.balanced_accuracy())
    );
    assert_eq!(
        (r.sensitivity, r.specificity),
        (c.sensitivity().unwrap(), c.specificity().unwrap())
    );
    assert_eq!(r.youden, youden_point(&y, &s).unwrap());
    assert_eq!(r.roc_auc_delong, Some(delong_ci(&y, &s, 0.95).unwrap()));
    assert_eq!(r.n_positive + r.n_negative, 400);

    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "task",
        "n_samples",
        "roc_auc",
        "average_precision",
        "roc_auc_delong",
        "threshold",
        "accuracy",
        "balanced_accuracy",
        "confusion_matrix",
        "sensitivity",
        "specificity",
        "youden",
        "bootstrap",
    ] {
        assert!(json.get(key).is_some(), "no `{key}` in {:?}", keys(&json));
    }
    assert_eq!(json["task"], "binary");
    assert_eq!(json["confusion_matrix"][1][1].as_u64(), Some(c.tp));
    let boot = &json["bootstrap"];
    for key in [
        "roc_auc",
        "average_precision",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
    ] {
        let ci = &boot[key];
        let (lo, est, hi) = (
            ci["lower"].as_f64().unwrap(),
            ci["estimate"].as_f64().unwrap(),
            ci["upper"].as_f64().unwrap(),
        );
        assert!(lo <= est && est <= hi, "{key}: {ci}");
        assert_eq!(ci["n_resamples"], 300);
    }
    // Without a bootstrap the key is left out.
    let plain =
        serde_json::to_value(binary_report(&y, &s, &ReportConfig::default()).unwrap()).unwrap();
    assert!(plain.get("bootstrap").is_none());
    // The same seed gives the same report.
    assert_eq!(binary_report(&y, &s, &cfg).unwrap(), r);
}

#[test]
fn binary_report_without_delong_variance_says_null() {
    // One positive: the AUC is defined, its DeLong variance is not.
    let r = binary_report(
        &[0u8, 1, 0, 0],
        &[0.1, 0.9, 0.3, 0.2],
        &ReportConfig::default(),
    )
    .unwrap();
    assert_eq!(r.roc_auc, 1.0);
    assert!(r.roc_auc_delong.is_none());
    assert!(serde_json::to_value(&r).unwrap()["roc_auc_delong"].is_null());
}

#[test]
fn multiclass_report_matches_the_functions() {
    let (n, k) = (240, 4);
    let mut rng = Rng::new(3);
    let y: Vec<usize> = (0..n)
        .map(|i| if i < k { i } else { rng.index(k) })
        .collect();
    let mut p = Vec::with_capacity(n * k);
    for &c in &y {
        let logits: Vec<f64> = (0..k)
            .map(|j| rng.normal_f64() + if j == c { 1.5 } else { 0.0 })
            .collect();
        let z: f64 = logits.iter().map(|l| l.exp()).sum();
        p.extend(logits.iter().map(|l| l.exp() / z));
    }
    let cfg = ReportConfig {
        bootstrap: Some(BootstrapConfig {
            n_resamples: 100,
            ..BootstrapConfig::default()
        }),
        ..ReportConfig::default()
    };
    let r = multiclass_report(&y, &p, k, &cfg).unwrap();
    assert_eq!(
        r.roc_auc_ovr_macro,
        roc_auc_ovr(&y, &p, k, Average::Macro).unwrap()
    );
    assert_eq!(
        r.roc_auc_ovr_weighted,
        roc_auc_ovr(&y, &p, k, Average::Weighted).unwrap()
    );
    assert_eq!(
        r.average_precision_macro,
        average_precision_ovr(&y, &p, k, Average::Macro).unwrap()
    );
    assert_eq!(
        r.average_precision_micro,
        average_precision_ovr(&y, &p, k, Average::Micro).unwrap()
    );
    let mean = r.roc_auc_per_class.iter().sum::<f64>() / k as f64;
    assert!((mean - r.roc_auc_ovr_macro).abs() < 1e-15);
    assert_eq!(r.support.iter().sum::<u64>(), n as u64);
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "roc_auc_ovr_macro",
        "roc_auc_ovr_weighted",
        "average_precision_macro",
        "average_precision_micro",
        "accuracy",
        "balanced_accuracy",
        "confusion_matrix",
    ] {
        assert!(json.get(key).is_some(), "no `{key}` in {:?}", keys(&json));
        if key != "confusion_matrix" {
            assert!(json["bootstrap"].get(key).is_some(), "no bootstrap `{key}`");
        }
    }
    assert_eq!(json["task"], "multiclass");
}

#[test]
fn multilabel_report_matches_the_functions() {
    let (n, k) = (150, 5);
    let mut rng = Rng::new(4);
    let mut y = vec![0u8; n * k];
    let mut s = vec![0.0; n * k];
    for i in 0..n {
        for j in 0..k {
            let v = u8::from(if i < 2 * k {
                (i % k == j) == (i < k)
            } else {
                rng.bernoulli(0.3)
            });
            y[i * k + j] = v;
            s[i * k + j] = rng.uniform_f64() * 0.7 + f64::from(v) * rng.uniform_f64() * 0.4;
        }
    }
    let r = multilabel_report(&y, &s, k, &ReportConfig::default()).unwrap();
    assert_eq!(
        r.roc_auc_macro,
        multilabel_roc_auc(&y, &s, k, Average::Macro).unwrap()
    );
    assert_eq!(
        r.roc_auc_micro,
        multilabel_roc_auc(&y, &s, k, Average::Micro).unwrap()
    );
    assert_eq!(
        r.average_precision_macro,
        multilabel_average_precision(&y, &s, k, Average::Macro).unwrap()
    );
    assert_eq!(
        r.average_precision_micro,
        multilabel_average_precision(&y, &s, k, Average::Micro).unwrap()
    );
    for j in 0..k {
        let yj: Vec<u8> = y.iter().skip(j).step_by(k).copied().collect();
        let sj: Vec<f64> = s.iter().skip(j).step_by(k).copied().collect();
        assert_eq!(r.roc_auc_per_label[j], roc_auc(&yj, &sj).unwrap());
        let c = BinaryConfusion::at_threshold(&yj, &sj, 0.5).unwrap();
        assert_eq!(r.sensitivity_per_label[j], c.sensitivity().unwrap());
        assert_eq!(r.specificity_per_label[j], c.specificity().unwrap());
        assert_eq!(r.support[j], c.tp + c.fn_);
    }
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "roc_auc_macro",
        "roc_auc_micro",
        "average_precision_macro",
        "average_precision_micro",
    ] {
        assert!(json.get(key).is_some(), "no `{key}` in {:?}", keys(&json));
    }
    assert_eq!(json["task"], "multilabel");
}
