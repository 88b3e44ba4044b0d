//! `miram metrics --task binary|multiclass|multilabel --input FILE.csv`: labels and scores in,
//! the report of `miram-metrics` out as JSON with scikit-learn's key names, so any model's
//! predictions can be scored the way the project scores its own.
//!
//! The CSV format is header-driven (other columns, such as an image id, are ignored):
//! - binary: `label` (0 or 1) and `score` (the positive class's score or probability);
//! - multiclass: `label` (the class, 0..K-1) and `p0,...,p{K-1}` (probabilities summing to 1);
//! - multilabel: `y0,...,y{K-1}` (0 or 1) and `s0,...,s{K-1}` (scores);
//! - or, for any task, the per-class columns of the `predictions.csv` that `miram finetune`
//!   and `miram evaluate` write: `target_<class>` (0/1) and `score_<class>` for every class
//!   (binary: the second class is the positive one).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use miram_core::metrics::{
    binary_report, multiclass_report, multilabel_report, BootstrapConfig, MetricsError,
    ReportConfig,
};

use crate::ui::Ui;
use crate::GlobalArgs;

/// The kind of prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsTask {
    /// One score per sample; columns `label`, `score`.
    Binary,
    /// One probability per class; columns `label`, `p0..p{K-1}`.
    Multiclass,
    /// One score per label (multi-hot targets); columns `y0..y{K-1}`, `s0..s{K-1}`.
    Multilabel,
}

/// Arguments of `miram metrics`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Input formats (CSV with a header; other columns are ignored):
  binary      label,score             label 0 or 1; score any real number
  multiclass  label,p0,p1,...,pK-1    label 0..K-1; probabilities of each class, rows sum to 1
  multilabel  y0,...,yK-1,s0,...,sK-1 multi-hot labels 0/1 and one score per label
  any task    target_<class>,...,score_<class>,...  as in the predictions.csv of `miram
              finetune` / `miram evaluate` (binary: the second class is the positive one)

Output (JSON, scikit-learn's names): binary: roc_auc, average_precision, roc_auc_delong
(DeLong 95% interval), accuracy, balanced_accuracy, confusion_matrix [[tn, fp], [fn, tp]],
sensitivity, specificity at --threshold, youden; multiclass: roc_auc_ovr_macro,
roc_auc_ovr_weighted, average_precision_macro, average_precision_micro, per-class values,
accuracy, balanced_accuracy, confusion_matrix; multilabel: roc_auc_macro, roc_auc_micro,
average_precision_macro, average_precision_micro, per-label values. With --bootstrap N,
percentile intervals of the headline metrics (stratified resampling, seeded by --seed).
Undefined metrics (one class only, NaN scores) are errors, never numbers, and so is a file
that does not say one thing: a column read twice (`score` and ` score`, `p1` and `p01`), or,
in the target_<class> format, a binary or multiclass row whose targets are not exactly one 1.

Example:
  printf 'label,score\\n0,0.1\\n1,0.8\\n0,0.4\\n1,0.35\\n' > p.csv
  miram metrics --task binary --input p.csv      # roc_auc 0.75, as sklearn.metrics.roc_auc_score")]
pub struct MetricsArgs {
    /// The kind of prediction.
    #[arg(long, value_enum)]
    pub task: MetricsTask,
    /// The CSV file of labels and scores.
    #[arg(long, value_name = "FILE.csv")]
    pub input: PathBuf,
    /// Decision threshold of the threshold metrics (`score >= threshold` is positive).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Bootstrap resamples for percentile intervals (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
}

/// Labels and scores read from a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The labels: `[n]` (binary, multiclass) or `[n, k]` row-major (multilabel).
    pub labels: Vec<usize>,
    /// The scores: `[n]` (binary) or `[n, k]` row-major.
    pub scores: Vec<f64>,
    /// Columns of the score matrix (1 for binary).
    pub k: usize,
    /// The file line of each sample, to name it in errors.
    pub lines: Vec<u64>,
}

/// Indexed columns `{prefix}0..{prefix}{K-1}` of a header; an error if they are not
/// contiguous from 0.
fn numbered(header: &csv::StringRecord, prefix: &str, file: &Path) -> Result<Vec<usize>> {
    let mut found: Vec<(usize, usize)> = header
        .iter()
        .enumerate()
        .filter_map(|(col, name)| {
            let rest = name.trim().strip_prefix(prefix)?;
            rest.parse::<usize>().ok().map(|i| (i, col))
        })
        .collect();
    found.sort();
    for w in found.windows(2) {
        if w[0].0 == w[1].0 {
            bail!(
                "{}: line 1 (header), columns {} and {} (`{}`, `{}`) both give `{prefix}{}`; each column may appear once",
                file.display(),
                w[0].1 + 1,
                w[1].1 + 1,
                header.get(w[0].1).unwrap_or("").trim(),
                header.get(w[1].1).unwrap_or("").trim(),
                w[0].0
            );
        }
    }
    if found.is_empty() {
        bail!(
            "{}: no columns `{prefix}0`, `{prefix}1`, ... (header: {})",
            file.display(),
            header.iter().collect::<Vec<_>>().join(",")
        );
    }
    for (want, (i, _)) in found.iter().enumerate() {
        if *i != want {
            bail!(
                "{}: column `{prefix}{want}` is missing (columns `{prefix}N` must run from 0 without gaps)",
                file.display()
            );
        }
    }
    Ok(found.into_iter().map(|(_, c)| c).collect())
}

/// The position of column `name`; an error if it is absent or appears more than once.
fn column(header: &csv::StringRecord, name: &str, file: &Path) -> Result<usize> {
    let found: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.trim() == name)
        .map(|(c, _)| c)
        .collect();
    match found.as_slice() {
        [c] => Ok(*c),
        [] => bail!(
            "{}: no column `{name}` (header: {})",
            file.display(),
            header.iter().collect::<Vec<_>>().join(",")
        ),
        many => bail!(
            "{}: line 1 (header): column `{name}` appears {} times (columns {}); each column may appear once",
            file.display(),
            many.len(),
            many.iter()
                .map(|c| (c + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A field as a label in `0..bound`, naming the line and column when it is not.
fn label(
    rec: &csv::StringRecord,
    col: usize,
    name: &str,
    bound: usize,
    where_: &str,
) -> Result<usize> {
    let text = rec.get(col).unwrap_or("").trim();
    let v: f64 = text.parse().map_err(|_| {
        anyhow!(
            "{where_}, column `{name}`: `{text}` is not a label (expected 0..{})",
            bound - 1
        )
    })?;
    if v.fract() != 0.0 || v < 0.0 || v >= bound as f64 {
        bail!(
            "{where_}, column `{name}`: `{text}` is not a label (expected 0..{})",
            bound - 1
        );
    }
    Ok(v as usize)
}

/// A field as a finite number, naming the line and column when it is not.
fn score(rec: &csv::StringRecord, col: usize, name: &str, where_: &str) -> Result<f64> {
    let text = rec.get(col).unwrap_or("").trim();
    let v: f64 = text
        .parse()
        .map_err(|_| anyhow!("{where_}, column `{name}`: `{text}` is not a number"))?;
    if !v.is_finite() {
        bail!("{where_}, column `{name}`: `{text}` is not a finite number");
    }
    Ok(v)
}

/// Reads the predictions of `task` from a CSV file (see the module documentation).
pub fn read_predictions(file: &Path, task: MetricsTask) -> Result<Predictions> {
    if !file.is_file() {
        bail!("--input {}: no such file", file.display());
    }
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("{}", file.display()))?;
    let header = rdr
        .headers()
        .map_err(|e| anyhow!("{}: {e}", file.display()))?
        .clone();
    if header.iter().any(|h| h.trim().starts_with("score_")) {
        return read_per_class(rdr, &header, file, task);
    }
    let (label_cols, score_cols): (Vec<usize>, Vec<usize>) = match task {
        MetricsTask::Binary => (
            vec![column(&header, "label", file)?],
            vec![column(&header, "score", file)?],
        ),
        MetricsTask::Multiclass => (
            vec![column(&header, "label", file)?],
            numbered(&header, "p", file)?,
        ),
        MetricsTask::Multilabel => {
            let y = numbered(&header, "y", file)?;
            let s = numbered(&header, "s", file)?;
            if y.len() != s.len() {
                bail!(
                    "{}: {} label columns (y0..) but {} score columns (s0..)",
                    file.display(),
                    y.len(),
                    s.len()
                );
            }
            (y, s)
        }
    };
    let k = score_cols.len();
    let name = |c: usize| header.get(c).unwrap_or("").trim().to_string();
    let (mut labels, mut scores, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = rec.map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        lines.push(line);
        let where_ = format!("{}: line {line}", file.display());
        let label_bound = match task {
            MetricsTask::Multiclass => k,
            _ => 2,
        };
        for &c in &label_cols {
            labels.push(label(&rec, c, &name(c), label_bound, &where_)?);
        }
        for &c in &score_cols {
            scores.push(score(&rec, c, &name(c), &where_)?);
        }
    }
    if labels.is_empty() {
        bail!("{}: no rows after the header", file.display());
    }
    Ok(Predictions {
        labels,
        scores,
        k,
        lines,
    })
}

/// Reads `target_<class>` / `score_<class>` columns (the predictions files of the project).
fn read_per_class(
    mut rdr: csv::Reader<std::fs::File>,
    header: &csv::StringRecord,
    file: &Path,
    task: MetricsTask,
) -> Result<Predictions> {
    let score_cols: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(c, h)| h.trim().strip_prefix("score_").map(|n| (c, n.to_string())))
        .collect();
    for (i, (_, n)) in score_cols.iter().enumerate() {
        // `column` refuses a name that appears more than once.
        if score_cols[..i].iter().any(|(_, m)| m == n) {
            column(header, &format!("score_{n}"), file)?;
        }
    }
    let target_cols: Vec<usize> = score_cols
        .iter()
        .map(|(_, n)| column(header, &format!("target_{n}"), file))
        .collect::<Result<_>>()?;
    let k = score_cols.len();
    if task == MetricsTask::Binary && k != 2 {
        bail!(
            "{}: {k} classes (score_<class> columns); a binary task has 2",
            file.display()
        );
    }
    let name = |c: usize| header.get(c).unwrap_or("").trim().to_string();
    let (mut labels, mut scores, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = rec.map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        lines.push(line);
        let where_ = format!("{}: line {line}", file.display());
        let t: Vec<usize> = target_cols
            .iter()
            .map(|&c| label(&rec, c, &name(c), 2, &where_))
            .collect::<Result<_>>()?;
        let sc: Vec<f64> = score_cols
            .iter()
            .map(|(c, _)| score(&rec, *c, &name(*c), &where_))
            .collect::<Result<_>>()?;
        match task {
            MetricsTask::Binary => {
                if t[0] == t[1] {
                    bail!(
                        "{where_}, columns `{}` and `{}`: both are {}; a binary row has exactly one target 1",
                        name(target_cols[0]),
                        name(target_cols[1]),
                        t[0]
                    );
                }
                labels.push(t[1]);
                scores.push(sc[1]);
            }
            MetricsTask::Multiclass => {
                let ones: Vec<usize> = (0..k).filter(|&i| t[i] == 1).collect();
                if ones.len() != 1 {
                    let named: Vec<String> = ones
                        .iter()
                        .map(|&i| format!("`{}`", name(target_cols[i])))
                        .collect();
                    bail!(
                        "{where_}: {} target_ columns are 1{}; a multiclass row has exactly one",
                        ones.len(),
                        if named.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", named.join(", "))
                        }
                    );
                }
                labels.push(ones[0]);
                scores.extend(sc);
            }
            MetricsTask::Multilabel => {
                labels.extend(t);
                scores.extend(sc);
            }
        }
    }
    if labels.is_empty() {
        bail!("{}: no rows after the header", file.display());
    }
    let k = if task == MetricsTask::Binary { 1 } else { k };
    Ok(Predictions {
        labels,
        scores,
        k,
        lines,
    })
}

/// Runs `miram metrics`.
pub fn run(a: &MetricsArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let p = read_predictions(&a.input, a.task)?;
    let config = ReportConfig {
        threshold: a.threshold,
        delong_level: a.level,
        bootstrap: (a.bootstrap > 0).then_some(BootstrapConfig {
            n_resamples: a.bootstrap,
            level: a.level,
            seed: g.seed.unwrap_or(0),
        }),
    };
    let file = a.input.display();
    // The metrics name a sample by its row; the file line is what the user can find.
    let located = |e: MetricsError| match &e {
        MetricsError::NotProbabilities { row, .. } => match p.lines.get(*row) {
            Some(line) => anyhow!("{file}: line {line}: {e}"),
            None => anyhow!("{file}: {e}"),
        },
        _ => anyhow!("{file}: {e}"),
    };
    let value = match a.task {
        MetricsTask::Binary => {
            let y: Vec<u8> = p.labels.iter().map(|&l| l as u8).collect();
            serde_json::to_value(binary_report(&y, &p.scores, &config).map_err(located)?)?
        }
        MetricsTask::Multiclass => serde_json::to_value(
            multiclass_report(&p.labels, &p.scores, p.k, &config).map_err(located)?,
        )?,
        MetricsTask::Multilabel => {
            let y: Vec<u8> = p.labels.iter().map(|&l| l as u8).collect();
            serde_json::to_value(multilabel_report(&y, &p.scores, p.k, &config).map_err(located)?)?
        }
    };
    ui.result_text(format!("{}\n", serde_json::to_string_pretty(&value)?));
    ui.event(
        "result",
        serde_json::json!({ "input": a.input, "metrics": value }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, task: MetricsTask) -> Result<Predictions> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("p.csv");
        std::fs::write(&f, text)?;
        read_predictions(&f, task)
    }

    #[test]
    fn reads_each_format_by_header() -> Result<()> {
        let p = read("id,score,label\na,0.5,1\nb,0.25,0\n", MetricsTask::Binary)?;
        assert_eq!((p.labels, p.scores, p.k), (vec![1, 0], vec![0.5, 0.25], 1));
        let p = read(
            "p1,label,p0\n0.7,1,0.3\n0.2,0,0.8\n",
            MetricsTask::Multiclass,
        )?;
        assert_eq!(
            (p.labels, p.scores, p.k),
            (vec![1, 0], vec![0.3, 0.7, 0.8, 0.2], 2)
        );
        let p = read(
            "y0,y1,s0,s1\n1,0,0.9,0.1\n0,1,0.2,0.6\n",
            MetricsTask::Multilabel,
        )?;
        assert_eq!(p.labels, vec![1, 0, 0, 1]);
        assert_eq!(p.k, 2);
        Ok(())
    }

    #[test]
    fn reads_the_project_predictions_files() -> Result<()> {
        let text = "patient_id,label,target_BENIGN,target_MALIGNANT,score_BENIGN,score_MALIGNANT\n\
                    P1,MALIGNANT,0,1,0.2,0.8\nP2,BENIGN,1,0,0.6,0.4\n";
        let p = read(text, MetricsTask::Binary)?;
        assert_eq!((p.labels, p.scores, p.k), (vec![1, 0], vec![0.8, 0.4], 1));
        let p = read(text, MetricsTask::Multiclass)?;
        assert_eq!(
            (p.labels, p.scores, p.k),
            (vec![1, 0], vec![0.2, 0.8, 0.6, 0.4], 2)
        );
        let p = read(text, MetricsTask::Multilabel)?;
        assert_eq!(p.labels, vec![0, 1, 1, 0]);
        Ok(())
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let e = read("label,score\n1,0.5\n0,abc\n", MetricsTask::Binary)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("line 3, column `score`: `abc` is not a number"),
            "{e}"
        );
        let e = read("label,score\n2,0.5\n", MetricsTask::Binary)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, column `label`: `2` is not a label (expected 0..1)"),
            "{e}"
        );
        let e = read("label,score\n1,nan\n", MetricsTask::Binary)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nan` is not a finite number"), "{e}");
        let e = read("label,prob\n1,0.5\n", MetricsTask::Binary)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column `score` (header: label,prob)"), "{e}");
        let e = read("label,p0,p2\n1,0.5,0.5\n", MetricsTask::Multiclass)
            .unwrap_err()
            .to_string();
        assert!(e.contains("column `p1` is missing"), "{e}");
        let e = read("label,p0,p1\n2,0.5,0.5\n", MetricsTask::Multiclass)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`2` is not a label (expected 0..1)"), "{e}");
    }
}
