//! Parity with scikit-learn and the DeLong reference: computes every key of `expected` of
//! every case of every `*.json` fixture in `$MIRAM_METRICS_FIXTURES` (default
//! the repository's `fixtures/metrics`, computed with scikit-learn 1.9.1 and a DeLong
//! reference) and compares it within the tolerances of
//! `fixtures/README.md`: 1e-9 for AUC, AP and accuracies, 1e-7 for DeLong figures,
//! exact counts for confusion matrices. `"error"` means the metric must fail. A key this test
//! does not know fails the test, so new fixture keys are noticed, never skipped.
//!
//! Each key is computed through the public functions and, where the report carries it,
//! through the task's report as well, so both paths are held to the reference.

use std::path::PathBuf;

use miram_metrics::{
    average_precision, average_precision_ovr, binary_report, delong, delong_test, flatten_rows,
    multiclass_report, multilabel_average_precision, multilabel_report, multilabel_roc_auc,
    roc_auc, roc_auc_ovr, Average, BinaryConfusion, MetricsError, ReportConfig,
};
use miram_test_support::fixture_files;
use serde_json::Value;

const AUC_TOL: f64 = 1e-9;
const DELONG_TOL: f64 = 1e-7;

fn fixture_dir() -> PathBuf {
    miram_test_support::fixture_dir("MIRAM_METRICS_FIXTURES", "metrics")
}

/// A computed value, or the error the metric returned.
#[derive(Debug)]
enum Got {
    Scalar(f64),
    Pair(f64, f64),
    Counts(Vec<Vec<u64>>),
}

type Computed = Result<Got, MetricsError>;

/// One case's inputs, parsed from JSON (`null` scores are NaN).
struct Case<'a> {
    raw: &'a Value,
}

impl Case<'_> {
    fn field(&self, key: &str) -> Result<&Value, String> {
        self.raw
            .get(key)
            .ok_or_else(|| format!("case has no `{key}`"))
    }

    fn scores(&self, key: &str) -> Result<Vec<f64>, String> {
        self.field(key)?
            .as_array()
            .ok_or_else(|| format!("`{key}` is not an array"))?
            .iter()
            .map(score)
            .collect()
    }

    fn score_rows(&self, key: &str) -> Result<Vec<Vec<f64>>, String> {
        self.field(key)?
            .as_array()
            .ok_or_else(|| format!("`{key}` is not an array"))?
            .iter()
            .map(|row| {
                row.as_array()
                    .ok_or_else(|| format!("a row of `{key}` is not an array"))?
                    .iter()
                    .map(score)
                    .collect()
            })
            .collect()
    }

    fn labels(&self) -> Result<Vec<i64>, String> {
        self.field("y_true")?
            .as_array()
            .ok_or("`y_true` is not an array")?
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| format!("label {v} is not an integer"))
            })
            .collect()
    }

    fn label_rows(&self) -> Result<Vec<Vec<i64>>, String> {
        self.field("y_true")?
            .as_array()
            .ok_or("`y_true` is not an array")?
            .iter()
            .map(|row| {
                row.as_array()
                    .ok_or("a row of `y_true` is not an array")?
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .ok_or_else(|| format!("label {v} is not an integer"))
                    })
                    .collect()
            })
            .collect()
    }

    fn n_classes(&self) -> Result<usize, String> {
        self.field("n_classes")?
            .as_u64()
            .map(|k| k as usize)
            .ok_or_else(|| "`n_classes` is not an integer".to_string())
    }
}

fn score(v: &Value) -> Result<f64, String> {
    match v {
        Value::Null => Ok(f64::NAN),
        _ => v
            .as_f64()
            .ok_or_else(|| format!("score {v} is not a number")),
    }
}

/// Splits `name_at_T` into `(name, T)`.
fn at_threshold(key: &str) -> Option<(&str, f64)> {
    let (name, t) = key.rsplit_once("_at_")?;
    Some((name, t.parse().ok()?))
}

/// Splits `ciNN_x` into `(level, x)`: `ci95_a` is the 95% interval of scoring `a`.
fn ci_key(key: &str) -> Option<(f64, &str)> {
    let rest = key.strip_prefix("ci")?;
    let (level, which) = rest.split_once('_')?;
    let level: f64 = level.parse().ok()?;
    Some((level / 100.0, which))
}

fn average_of(name: &str) -> Option<Average> {
    match name {
        "macro" => Some(Average::Macro),
        "weighted" => Some(Average::Weighted),
        "micro" => Some(Average::Micro),
        _ => None,
    }
}

fn scalar(r: miram_metrics::Result<f64>) -> Computed {
    r.map(Got::Scalar)
}

/// Computes `key` of a binary case through the metric functions, and through the report
/// when the report carries it (`None` otherwise).
fn binary_key(case: &Case<'_>, key: &str) -> Result<(Computed, Option<Computed>), String> {
    let y = case.labels()?;
    let s = case.scores("y_score")?;
    let report = |t: f64| {
        binary_report(
            &y,
            &s,
            &ReportConfig {
                threshold: t,
                ..ReportConfig::default()
            },
        )
    };
    Ok(match key {
        "roc_auc" => (
            scalar(roc_auc(&y, &s)),
            Some(report(0.5).map(|r| Got::Scalar(r.roc_auc))),
        ),
        "average_precision" => (scalar(average_precision(&y, &s)), None),
        _ => {
            let (name, t) =
                at_threshold(key).ok_or_else(|| format!("unknown binary key `{key}`"))?;
            let c = BinaryConfusion::at_threshold(&y, &s, t);
            let direct = match name {
                "accuracy" => c.map(|c| Got::Scalar(c.accuracy())),
                "balanced_accuracy" => c.map(|c| Got::Scalar(c.balanced_accuracy())),
                "confusion_matrix" => {
                    c.map(|c| Got::Counts(c.matrix().iter().map(|r| r.to_vec()).collect()))
                }
                "sensitivity" => c.and_then(|c| c.sensitivity()).map(Got::Scalar),
                "specificity" => c.and_then(|c| c.specificity()).map(Got::Scalar),
                _ => return Err(format!("unknown binary key `{key}`")),
            };
            // The report also needs both classes; compare it only where it is defined.
            let via_report = report(t).ok().map(|r| {
                Ok(match name {
                    "accuracy" => Got::Scalar(r.accuracy),
                    "balanced_accuracy" => Got::Scalar(r.balanced_accuracy),
                    "confusion_matrix" => {
                        Got::Counts(r.confusion_matrix.iter().map(|r| r.to_vec()).collect())
                    }
                    "sensitivity" => Got::Scalar(r.sensitivity),
                    _ => Got::Scalar(r.specificity),
                })
            });
            (direct, via_report)
        }
    })
}

fn multiclass_key(case: &Case<'_>, key: &str) -> Result<(Computed, Option<Computed>), String> {
    let k = case.n_classes()?;
    let y: Vec<usize> = case
        .labels()?
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| format!("negative class {v}")))
        .collect::<Result<_, _>>()?;
    let (p, kp) = flatten_rows(&case.score_rows("y_prob")?).map_err(|e| e.to_string())?;
    if kp != k {
        return Err(format!("y_prob rows have {kp} columns, n_classes is {k}"));
    }
    let report = || multiclass_report(&y, &p, k, &ReportConfig::default());
    let from_report =
        |f: fn(&miram_metrics::MulticlassReport) -> Got| Some(report().map(|r| f(&r)));
    Ok(if let Some(avg) = key.strip_prefix("roc_auc_ovr_") {
        let a = average_of(avg).ok_or_else(|| format!("unknown multiclass key `{key}`"))?;
        let via = match a {
            Average::Macro => from_report(|r| Got::Scalar(r.roc_auc_ovr_macro)),
            Average::Weighted => from_report(|r| Got::Scalar(r.roc_auc_ovr_weighted)),
            Average::Micro => None,
        };
        (scalar(roc_auc_ovr(&y, &p, k, a)), via)
    } else if let Some(avg) = key.strip_prefix("average_precision_") {
        let a = average_of(avg).ok_or_else(|| format!("unknown multiclass key `{key}`"))?;
        let via = match a {
            Average::Macro => from_report(|r| Got::Scalar(r.average_precision_macro)),
            Average::Micro => from_report(|r| Got::Scalar(r.average_precision_micro)),
            Average::Weighted => None,
        };
        (scalar(average_precision_ovr(&y, &p, k, a)), via)
    } else {
        let pred = miram_metrics::argmax_rows(&p, k);
        match key {
            "accuracy" => (
                pred.and_then(|pr| miram_metrics::accuracy(&y, &pr))
                    .map(Got::Scalar),
                from_report(|r| Got::Scalar(r.accuracy)),
            ),
            "balanced_accuracy" => (
                pred.and_then(|pr| miram_metrics::balanced_accuracy(&y, &pr, k))
                    .map(Got::Scalar),
                from_report(|r| Got::Scalar(r.balanced_accuracy)),
            ),
            "confusion_matrix" => (
                pred.and_then(|pr| miram_metrics::confusion_matrix(&y, &pr, k))
                    .map(Got::Counts),
                from_report(|r| Got::Counts(r.confusion_matrix.clone())),
            ),
            _ => return Err(format!("unknown multiclass key `{key}`")),
        }
    })
}

fn multilabel_key(case: &Case<'_>, key: &str) -> Result<(Computed, Option<Computed>), String> {
    let k = case.n_classes()?;
    let (y, ky) = flatten_rows(&case.label_rows()?).map_err(|e| e.to_string())?;
    let (s, ks) = flatten_rows(&case.score_rows("y_score")?).map_err(|e| e.to_string())?;
    if ky != k || ks != k {
        return Err(format!("rows have {ky} and {ks} columns, n_classes is {k}"));
    }
    let report = || multilabel_report(&y, &s, k, &ReportConfig::default());
    let from_report =
        |f: fn(&miram_metrics::MultilabelReport) -> f64| Some(report().map(|r| Got::Scalar(f(&r))));
    Ok(if let Some(avg) = key.strip_prefix("roc_auc_") {
        let a = average_of(avg).ok_or_else(|| format!("unknown multilabel key `{key}`"))?;
        let via = match a {
            Average::Macro => from_report(|r| r.roc_auc_macro),
            Average::Micro => from_report(|r| r.roc_auc_micro),
            Average::Weighted => None,
        };
        (scalar(multilabel_roc_auc(&y, &s, k, a)), via)
    } else if let Some(avg) = key.strip_prefix("average_precision_") {
        let a = average_of(avg).ok_or_else(|| format!("unknown multilabel key `{key}`"))?;
        let via = match a {
            Average::Macro => from_report(|r| r.average_precision_macro),
            Average::Micro => from_report(|r| r.average_precision_micro),
            Average::Weighted => None,
        };
        (scalar(multilabel_average_precision(&y, &s, k, a)), via)
    } else {
        return Err(format!("unknown multilabel key `{key}`"));
    })
}

fn delong_key(case: &Case<'_>, key: &str) -> Result<(Computed, Option<Computed>), String> {
    let y = case.labels()?;
    let a = case.scores("y_score_a")?;
    let b = case.scores("y_score_b")?;
    let test = delong_test(&y, &a, &b);
    let field = |f: fn(&miram_metrics::DelongTest) -> f64| {
        test.as_ref()
            .map(|t| Got::Scalar(f(t)))
            .map_err(Clone::clone)
    };
    let direct = match key {
        "auc_a" => field(|t| t.auc_a),
        "auc_b" => field(|t| t.auc_b),
        "var_a" => field(|t| t.var_a),
        "var_b" => field(|t| t.var_b),
        "cov_ab" => field(|t| t.cov_ab),
        "z" => field(|t| t.z),
        "p_value" => field(|t| t.p_value),
        _ => {
            let (level, which) =
                ci_key(key).ok_or_else(|| format!("unknown delong key `{key}`"))?;
            let scores = match which {
                "a" => &a,
                "b" => &b,
                _ => return Err(format!("unknown delong key `{key}`")),
            };
            delong(&y, scores)
                .and_then(|d| d.confidence_interval(level))
                .map(|ci| Got::Pair(ci.lower, ci.upper))
        }
    };
    Ok((direct, None))
}

/// Compares a computed value with the expected JSON value; `Err` describes a mismatch.
fn compare(got: &Computed, want: &Value, tol: f64) -> Result<(), String> {
    if want.as_str() == Some("error") {
        return match got {
            Err(_) => Ok(()),
            Ok(v) => Err(format!("expected an error, got {v:?}")),
        };
    }
    let got = got
        .as_ref()
        .map_err(|e| format!("expected {want}, got error: {e}"))?;
    let close = |g: f64, w: f64| (g - w).abs() <= tol * w.abs().max(1.0);
    match got {
        Got::Scalar(g) => {
            let w = want
                .as_f64()
                .ok_or_else(|| format!("expected value {want} is not a number"))?;
            if close(*g, w) {
                Ok(())
            } else {
                Err(format!("got {g:.17}, expected {w:.17} (diff {:e})", g - w))
            }
        }
        Got::Pair(g0, g1) => {
            let w: Vec<f64> = want
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect())
                .ok_or_else(|| format!("expected value {want} is not a pair of numbers"))?;
            if w.len() == 2 && close(*g0, w[0]) && close(*g1, w[1]) {
                Ok(())
            } else {
                Err(format!("got [{g0:.17}, {g1:.17}], expected {want}"))
            }
        }
        Got::Counts(g) => {
            let w: Vec<Vec<u64>> = serde_json::from_value(want.clone())
                .map_err(|e| format!("expected value {want} is not a count matrix: {e}"))?;
            if *g == w {
                Ok(())
            } else {
                Err(format!("got {g:?}, expected {w:?}"))
            }
        }
    }
}

#[test]
fn every_fixture_key_matches_the_reference() {
    let dir = fixture_dir();
    let files = fixture_files(&dir, "json");

    let mut failures = Vec::new();
    let mut checked = 0usize;
    for file in &files {
        let name = file.display();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if doc.get("format").and_then(Value::as_str) != Some("miram-metrics-fixture-v1") {
            failures.push(format!("{name}: unknown format {:?}", doc.get("format")));
            continue;
        }
        let Some(cases) = doc.get("cases").and_then(Value::as_array) else {
            failures.push(format!("{name}: no `cases` array"));
            continue;
        };
        for (ci, raw) in cases.iter().enumerate() {
            let case = Case { raw };
            let task = raw.get("task").and_then(Value::as_str).unwrap_or("<none>");
            let Some(expected) = raw.get("expected").and_then(Value::as_object) else {
                failures.push(format!("{name} case {ci}: no `expected` object"));
                continue;
            };
            for (key, want) in expected {
                let (computed, tol) = match task {
                    "binary" => (binary_key(&case, key), AUC_TOL),
                    "multiclass" => (multiclass_key(&case, key), AUC_TOL),
                    "multilabel" => (multilabel_key(&case, key), AUC_TOL),
                    "delong" => (delong_key(&case, key), DELONG_TOL),
                    _ => (Err(format!("unknown task `{task}`")), 0.0),
                };
                let here = format!("{name} case {ci} ({task}) `{key}`");
                match computed {
                    Err(e) => failures.push(format!("{here}: {e}")),
                    Ok((direct, via_report)) => {
                        let mut results = vec![(compare(&direct, want, tol), "")];
                        if let Some(r) = via_report {
                            results.push((compare(&r, want, tol), " via report"));
                        }
                        for (result, path) in results {
                            if let Err(e) = result {
                                failures.push(format!("{here}{path}: {e}"));
                            }
                        }
                        checked += 1;
                    }
                }
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
}
