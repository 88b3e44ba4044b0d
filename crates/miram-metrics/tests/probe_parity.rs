//! Parity of the probes with scikit-learn: reads every `*.json` fixture in
//! `$MIRAM_PROBE_FIXTURES` (default the repository's `fixtures/probe`, written by
//! `fixtures/generators/probe.py`), fits both probes on its training rows and compares every
//! key of `expected` within the tolerances of `fixtures/README.md`:
//! - `knn_proba`: 1e-12 (the shares of neighbours are exact);
//! - `logistic_proba`, `logistic_coef`, `logistic_intercept`: fitted twice, with
//!   [`LogisticConfig::default`] (`tol = 1e-8`) within 1e-8 absolute (largest difference
//!   measured 3.8e-9), and with `tol = 1e-11` within 1e-10 (measured 4.6e-11; the rest is
//!   the fixture's own convergence and the intercept's small curvature at `C = 0.01`).
//!
//! A case or `expected` key this test does not know fails the test, so new fixture keys are
//! noticed, never skipped.

use std::path::PathBuf;

use miram_metrics::{
    knn_predict_proba, KnnConfig, KnnMetric, LogisticConfig, LogisticProbe, ProbeLabels,
};
use miram_test_support::fixture_files;
use serde_json::Value;

const KNN_TOL: f64 = 1e-12;
/// The linear probe is fitted twice: (name, `LogisticConfig::tol`, allowed difference).
const LOGISTIC_SETTINGS: [(&str, f64, f64); 2] =
    [("default tol", 1e-8, 1e-8), ("tol 1e-11", 1e-11, 1e-10)];

const CASE_KEYS: [&str; 12] = [
    "name",
    "task",
    "n_classes",
    "n_labels",
    "dim",
    "k",
    "metric",
    "c",
    "train_x",
    "train_y",
    "query_x",
    "expected",
];

fn fixture_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_PROBE_FIXTURES", "probe")
}

fn field<'a>(case: &'a Value, key: &str) -> Result<&'a Value, String> {
    case.get(key).ok_or_else(|| format!("case has no `{key}`"))
}

fn uint(case: &Value, key: &str) -> Result<usize, String> {
    field(case, key)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| format!("`{key}` is not a non-negative integer"))
}

fn number(v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("{v} is not a number"))
}

/// A `[[..], ..]` matrix flattened row-major, with its column count.
fn matrix(v: &Value, what: &str) -> Result<(Vec<f64>, usize), String> {
    let rows = v
        .as_array()
        .ok_or_else(|| format!("`{what}` is not an array of rows"))?;
    let mut flat = Vec::new();
    let mut width = None;
    for row in rows {
        let row = row
            .as_array()
            .ok_or_else(|| format!("a row of `{what}` is not an array"))?;
        if *width.get_or_insert(row.len()) != row.len() {
            return Err(format!("`{what}` has rows of different lengths"));
        }
        for x in row {
            flat.push(number(x)?);
        }
    }
    Ok((flat, width.unwrap_or(0)))
}

fn vector(v: &Value, what: &str) -> Result<Vec<f64>, String> {
    v.as_array()
        .ok_or_else(|| format!("`{what}` is not an array"))?
        .iter()
        .map(number)
        .collect()
}

/// Labels as the probe takes them, owned.
enum Labels {
    Classes(Vec<usize>, usize),
    MultiLabel(Vec<u8>, usize),
}

impl Labels {
    fn view(&self) -> ProbeLabels<'_> {
        match self {
            Self::Classes(y, n_classes) => ProbeLabels::Classes {
                y,
                n_classes: *n_classes,
            },
            Self::MultiLabel(y, n_labels) => ProbeLabels::MultiLabel {
                y,
                n_labels: *n_labels,
            },
        }
    }
}

fn labels(case: &Value) -> Result<Labels, String> {
    let y = field(case, "train_y")?;
    match field(case, "task")?.as_str() {
        Some("classes") => {
            let y = y
                .as_array()
                .ok_or("`train_y` is not an array")?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|c| c as usize)
                        .ok_or(format!("class {v} is not an integer"))
                })
                .collect::<Result<_, _>>()?;
            Ok(Labels::Classes(y, uint(case, "n_classes")?))
        }
        Some("multilabel") => {
            let (y, width) = matrix(y, "train_y")?;
            let n_labels = uint(case, "n_labels")?;
            if width != n_labels {
                return Err(format!(
                    "`train_y` has {width} columns, n_labels is {n_labels}"
                ));
            }
            let y = y
                .iter()
                .map(|&v| u8::try_from(v as i64).map_err(|_| format!("label {v} is not 0/1")))
                .collect::<Result<_, _>>()?;
            Ok(Labels::MultiLabel(y, n_labels))
        }
        other => Err(format!("unknown task {other:?}")),
    }
}

/// The largest absolute difference of `got` and `want`, or the shape mismatch.
fn max_diff(got: &[f64], want: &[f64], what: &str) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: got {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    Ok(got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs())))
}

/// Checks one case; returns the checks done and the largest logistic difference seen per
/// entry of [`LOGISTIC_SETTINGS`].
fn check_case(
    case: &Value,
    failures: &mut Vec<String>,
    here: &str,
) -> Result<(usize, [f64; LOGISTIC_SETTINGS.len()]), String> {
    let keys = case.as_object().ok_or("a case is not an object")?;
    for key in keys.keys() {
        if !CASE_KEYS.contains(&key.as_str()) {
            return Err(format!("unknown case key `{key}`"));
        }
    }
    let dim = uint(case, "dim")?;
    let k = uint(case, "k")?;
    let metric: KnnMetric = field(case, "metric")?
        .as_str()
        .ok_or("`metric` is not a string")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let c = number(field(case, "c")?)?;
    let (train, tw) = matrix(field(case, "train_x")?, "train_x")?;
    let (query, qw) = matrix(field(case, "query_x")?, "query_x")?;
    if tw != dim || qw != dim {
        return Err(format!(
            "feature rows have {tw} and {qw} columns, dim is {dim}"
        ));
    }
    let labels = labels(case)?;
    let expected = field(case, "expected")?
        .as_object()
        .ok_or("`expected` is not an object")?;

    let knn = knn_predict_proba(&train, dim, labels.view(), &query, &KnnConfig { k, metric })
        .map_err(|e| format!("knn: {e}"))?;
    let mut fits = Vec::new();
    for (name, newton_tol, tol) in LOGISTIC_SETTINGS {
        let cfg = LogisticConfig {
            c,
            tol: newton_tol,
            ..LogisticConfig::default()
        };
        let probe = LogisticProbe::fit(&train, dim, labels.view(), &cfg)
            .map_err(|e| format!("logistic fit ({name}): {e}"))?;
        let proba = probe
            .predict_proba(&query)
            .map_err(|e| format!("logistic ({name}): {e}"))?;
        fits.push((name, tol, probe, proba));
    }

    let mut checked = 0;
    let mut worst = [0.0f64; LOGISTIC_SETTINGS.len()];
    for (key, want) in expected {
        let mut compare =
            |got: &[f64], want: &[f64], tol: f64, what: &str| -> Result<f64, String> {
                let d = max_diff(got, want, key)?;
                if d > tol {
                    failures.push(format!(
                        "{here} `{key}`{what}: max difference {d:e} > {tol:e}"
                    ));
                }
                checked += 1;
                Ok(d)
            };
        if key == "knn_proba" {
            compare(&knn, &matrix(want, key)?.0, KNN_TOL, "")?;
            continue;
        }
        let want = match key.as_str() {
            "logistic_proba" | "logistic_coef" => matrix(want, key)?.0,
            "logistic_intercept" => vector(want, key)?,
            _ => return Err(format!("unknown expected key `{key}`")),
        };
        for (i, (name, tol, probe, proba)) in fits.iter().enumerate() {
            let (coef, intercept) = probe.coefficients();
            let got: &[f64] = match key.as_str() {
                "logistic_proba" => proba,
                "logistic_coef" => coef,
                _ => intercept,
            };
            let d = compare(got, &want, *tol, &format!(" ({name})"))?;
            worst[i] = worst[i].max(d);
        }
    }
    Ok((checked, worst))
}

#[test]
fn every_fixture_key_matches_scikit_learn() {
    let dir = fixture_dir();
    let files = fixture_files(&dir, "json");

    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut worst = [0.0f64; LOGISTIC_SETTINGS.len()];
    for file in &files {
        let name = file.display();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if doc.get("format").and_then(Value::as_str) != Some("miram-probe-fixture-v1") {
            failures.push(format!("{name}: unknown format {:?}", doc.get("format")));
            continue;
        }
        let Some(cases) = doc.get("cases").and_then(Value::as_array) else {
            failures.push(format!("{name}: no `cases` array"));
            continue;
        };
        for (ci, case) in cases.iter().enumerate() {
            let here = format!("{name} case {ci}");
            match check_case(case, &mut failures, &here) {
                Ok((n, w)) => {
                    checked += n;
                    for (a, b) in worst.iter_mut().zip(w) {
                        *a = a.max(b);
                    }
                }
                Err(e) => failures.push(format!("{here}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the fixture checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "no expected value in {}", dir.display());
    println!("{checked} expected values checked in {} files", files.len());
    for ((name, _, _), w) in LOGISTIC_SETTINGS.iter().zip(worst) {
        println!("largest logistic difference with {name}: {w:e}");
    }
}
