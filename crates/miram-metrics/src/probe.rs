//! Classifiers of frozen features, as scikit-learn fits them: the k-nearest-neighbour vote
//! ([`knn_predict_proba`]) and the linear probe ([`LogisticProbe`]: standardisation, then
//! L2-regularised logistic regression, one binary model per class or label).
//!
//! Features are row-major `[n, dim]` slices of `f64`; labels are [`ProbeLabels`].
//!
//! ```
//! use miram_metrics::{knn_predict_proba, KnnConfig, KnnMetric, LogisticConfig, LogisticProbe, ProbeLabels};
//!
//! // Six training rows of two features, two classes, row-major.
//! let train = [0.0, 1.0, 0.2, 0.9, 0.1, 1.1, 1.0, 0.0, 0.9, 0.2, 1.1, 0.1];
//! let y = [0, 0, 0, 1, 1, 1];
//! let labels = ProbeLabels::Classes { y: &y, n_classes: 2 };
//! let query = [0.1, 0.95, 0.95, 0.1];
//!
//! // kNN: the share of the 3 nearest training rows in each class.
//! let cfg = KnnConfig { k: 3, metric: KnnMetric::Euclidean };
//! let p = knn_predict_proba(&train, 2, labels, &query, &cfg)?;
//! assert_eq!(p, [1.0, 0.0, 0.0, 1.0]);
//!
//! // Linear probe: [1 - p, p] per row for two classes.
//! let probe = LogisticProbe::fit(&train, 2, labels, &LogisticConfig::default())?;
//! let p = probe.predict_proba(&query)?;
//! assert!(p[1] < 0.5 && p[3] > 0.5);
//! assert!((p[0] + p[1] - 1.0).abs() < 1e-15);
//!
//! // Bad input is an error that names it: k larger than the training set.
//! let cfg = KnnConfig { k: 7, ..KnnConfig::default() };
//! assert!(knn_predict_proba(&train, 2, labels, &query, &cfg).is_err());
//! # Ok::<(), miram_metrics::MetricsError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Location, MetricsError, Result};

/// The labels a probe learns from.
#[derive(Debug, Clone, Copy)]
pub enum ProbeLabels<'a> {
    /// One class per sample, `0..n_classes` (binary is `n_classes == 2`).
    Classes {
        /// The class of each sample.
        y: &'a [usize],
        /// Number of classes, at least 2.
        n_classes: usize,
    },
    /// Several independent 0/1 labels per sample: `y` is `n * n_labels`, row-major.
    MultiLabel {
        /// The labels, row-major `[n, n_labels]`.
        y: &'a [u8],
        /// Labels per sample, at least 1.
        n_labels: usize,
    },
}

impl ProbeLabels<'_> {
    /// Number of samples (whole rows of `y` for [`ProbeLabels::MultiLabel`]).
    pub fn len(&self) -> usize {
        match *self {
            Self::Classes { y, .. } => y.len(),
            Self::MultiLabel { y, n_labels } => y.len().checked_div(n_labels).unwrap_or(0),
        }
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of probability columns a probe gives: `n_classes` or `n_labels`.
    pub fn outputs(&self) -> usize {
        match *self {
            Self::Classes { n_classes, .. } => n_classes,
            Self::MultiLabel { n_labels, .. } => n_labels,
        }
    }

    /// Checks the labels and that there are `n_rows` samples.
    fn validate(&self, n_rows: usize) -> Result<()> {
        match *self {
            Self::Classes { y, n_classes } => {
                if n_classes < 2 {
                    return Err(MetricsError::InvalidParameter {
                        name: "n_classes",
                        value: n_classes.to_string(),
                        reason:
                            "a probe needs at least 2 classes (use MultiLabel for one 0/1 label)",
                    });
                }
                if y.len() != n_rows {
                    return Err(MetricsError::LengthMismatch {
                        what: "y",
                        expected: n_rows,
                        got: y.len(),
                    });
                }
                if let Some((i, &c)) = y.iter().enumerate().find(|(_, &c)| c >= n_classes) {
                    return Err(MetricsError::InvalidLabel {
                        what: "y",
                        at: Location::Index(i),
                        value: c.to_string(),
                        expected: format!("a class in 0..{n_classes}"),
                    });
                }
            }
            Self::MultiLabel { y, n_labels } => {
                if n_labels == 0 {
                    return Err(MetricsError::InvalidParameter {
                        name: "n_labels",
                        value: "0".into(),
                        reason: "a multi-label probe needs at least 1 label",
                    });
                }
                if y.len() % n_labels != 0 {
                    return Err(MetricsError::NotRows {
                        what: "y",
                        len: y.len(),
                        dim: n_labels,
                    });
                }
                if y.len() != n_rows * n_labels {
                    return Err(MetricsError::LengthMismatch {
                        what: "y",
                        expected: n_rows * n_labels,
                        got: y.len(),
                    });
                }
                if let Some((i, &v)) = y.iter().enumerate().find(|(_, &v)| v > 1) {
                    return Err(MetricsError::InvalidLabel {
                        what: "y",
                        at: Location::cell(i, n_labels),
                        value: v.to_string(),
                        expected: "0 or 1".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The 0/1 target of binary model `m` (class `m`, or label `m`) for every sample.
    fn binary_target(&self, m: usize) -> Vec<f64> {
        match *self {
            Self::Classes { y, .. } => y.iter().map(|&c| f64::from(u8::from(c == m))).collect(),
            Self::MultiLabel { y, n_labels } => y
                .iter()
                .skip(m)
                .step_by(n_labels)
                .map(|&v| f64::from(v))
                .collect(),
        }
    }
}

/// The rows of a row-major feature matrix, checked: `dim >= 1`, not empty, whole rows,
/// finite values.
fn feature_rows(what: &'static str, x: &[f64], dim: usize) -> Result<usize> {
    if dim == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "dim",
            value: "0".into(),
            reason: "must be at least 1 (the number of features per row)",
        });
    }
    if x.is_empty() {
        return Err(MetricsError::Empty { what });
    }
    if x.len() % dim != 0 {
        return Err(MetricsError::NotRows {
            what,
            len: x.len(),
            dim,
        });
    }
    if let Some((i, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricsError::NonFiniteFeature {
            what,
            row: i / dim,
            column: i % dim,
            value,
        });
    }
    Ok(x.len() / dim)
}

/// The distance of a kNN probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnnMetric {
    /// `1 - cos(a, b)`, clipped to `[0, 2]` (scikit-learn's `cosine_distances`); a row of
    /// zeros is at distance 1 from every row, as scikit-learn's `normalize` leaves it zero.
    Cosine,
    /// `||a - b||`.
    Euclidean,
}

impl KnnMetric {
    /// scikit-learn's name: `"cosine"` or `"euclidean"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Euclidean => "euclidean",
        }
    }
}

impl fmt::Display for KnnMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KnnMetric {
    type Err = MetricsError;

    /// Parses scikit-learn's name (`cosine`, `euclidean`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Self::Cosine),
            "euclidean" => Ok(Self::Euclidean),
            _ => Err(MetricsError::InvalidParameter {
                name: "metric",
                value: s.to_string(),
                reason: "expected `cosine` or `euclidean`",
            }),
        }
    }
}

/// Settings of [`knn_predict_proba`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    /// Number of neighbours, `1..=n_train`.
    pub k: usize,
    /// The distance.
    pub metric: KnnMetric,
}

impl Default for KnnConfig {
    /// `k = 20`, cosine distance.
    fn default() -> Self {
        Self {
            k: 20,
            metric: KnnMetric::Cosine,
        }
    }
}

/// A row scaled to unit Euclidean norm (zero rows stay zero), computed without overflow.
fn unit_row(row: &[f64]) -> Vec<f64> {
    let m = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if m == 0.0 {
        return row.to_vec();
    }
    let norm = m * row.iter().map(|v| (v / m) * (v / m)).sum::<f64>().sqrt();
    row.iter().map(|v| v / norm).collect()
}

/// scikit-learn's `KNeighborsClassifier(n_neighbors=k, weights="uniform",
/// algorithm="brute", metric="cosine"|"euclidean").predict_proba`: per query row, per
/// output, the share of the `k` nearest training rows in that class
/// ([`ProbeLabels::Classes`]: `n_classes` columns summing to 1) or with that label
/// ([`ProbeLabels::MultiLabel`]: `n_labels` columns, each the share of neighbours with label
/// 1, the second column of scikit-learn's `[1 - p, p]` for that label).
///
/// Ties in distance go to the lower training index (a stable order). scikit-learn breaks
/// them by `argpartition`, which is not stable, and computes distances with other rounding
/// (the Euclidean distance through `||a||^2 - 2 a.b + ||b||^2`): the two agree exactly unless
/// the k-th and (k+1)-th distances of a query are equal or within rounding of each other.
///
/// Errors: empty `train` or `query`, `dim == 0`, a length that is not whole rows or does
/// not match the labels, non-finite features (named by row and column), a label out of
/// range, `k == 0` or `k > n_train` (scikit-learn refuses too), and Euclidean distances that
/// overflow f64.
///
/// # Shapes
/// `train` `[n_train, dim]`, `labels` of `n_train` samples, `query` `[n_query, dim]` ->
/// `[n_query, labels.outputs()]`.
pub fn knn_predict_proba(
    train: &[f64],
    dim: usize,
    labels: ProbeLabels<'_>,
    query: &[f64],
    cfg: &KnnConfig,
) -> Result<Vec<f64>> {
    let n_train = feature_rows("train", train, dim)?;
    labels.validate(n_train)?;
    feature_rows("query", query, dim)?;
    if cfg.k == 0 || cfg.k > n_train {
        return Err(MetricsError::OutOfRange {
            name: "k",
            value: cfg.k.to_string(),
            allowed: format!("1..={n_train} (the number of training rows)"),
        });
    }
    let k = cfg.k;
    let outputs = labels.outputs();
    let train_rows: Vec<Vec<f64>> = match cfg.metric {
        KnnMetric::Cosine => train.chunks_exact(dim).map(unit_row).collect(),
        KnnMetric::Euclidean => train.chunks_exact(dim).map(<[f64]>::to_vec).collect(),
    };
    let mut out = vec![0.0; query.len() / dim * outputs];
    out.par_chunks_mut(outputs)
        .zip(query.par_chunks_exact(dim))
        .enumerate()
        .try_for_each(|(qi, (out_row, q))| -> Result<()> {
            let q = match cfg.metric {
                KnnMetric::Cosine => unit_row(q),
                KnnMetric::Euclidean => q.to_vec(),
            };
            let mut dist: Vec<(f64, usize)> = Vec::with_capacity(n_train);
            for (j, t) in train_rows.iter().enumerate() {
                let d = match cfg.metric {
                    KnnMetric::Cosine => {
                        let s: f64 = q.iter().zip(t).map(|(a, b)| a * b).sum();
                        (1.0 - s).clamp(0.0, 2.0)
                    }
                    KnnMetric::Euclidean => {
                        let d2: f64 = q.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum();
                        if !d2.is_finite() {
                            return Err(MetricsError::Overflow {
                                what: format!(
                                    "the squared distance of query row {qi} to training row {j}"
                                ),
                                value: d2,
                            });
                        }
                        d2
                    }
                };
                dist.push((d, j));
            }
            let by_distance =
                |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if k < n_train {
                dist.select_nth_unstable_by(k - 1, by_distance);
            }
            for &(_, j) in &dist[..k] {
                match labels {
                    ProbeLabels::Classes { y, .. } => out_row[y[j]] += 1.0,
                    ProbeLabels::MultiLabel { y, n_labels } => {
                        for (o, &v) in out_row.iter_mut().zip(&y[j * n_labels..(j + 1) * n_labels])
                        {
                            *o += f64::from(v);
                        }
                    }
                }
            }
            for o in out_row.iter_mut() {
                *o /= k as f64;
            }
            Ok(())
        })?;
    Ok(out)
}

/// Settings of [`LogisticProbe::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticConfig {
    /// Inverse regularisation strength (scikit-learn's `C`), finite and `> 0`.
    pub c: f64,
    /// The most Newton steps per binary model, at least 1.
    pub max_iter: usize,
    /// Convergence: Newton stops when the max-norm of the gradient of the objective
    /// `C * sum(log-loss) + ||w||^2 / 2` is at most `tol` (finite and `> 0`). The objective's
    /// curvature is at least 1 along every weight, so the weights then lie about `tol` or
    /// less from the optimum, whatever `C` and the number of rows (the intercept's curvature
    /// is `C * sum(p (1 - p))`, large unless `C * n` is small). The rounding error of the gradient grows with `C * n`: a `tol` below it cannot
    /// be met, and [`LogisticProbe::fit`] says so.
    pub tol: f64,
}

impl Default for LogisticConfig {
    /// `c = 1.0` (scikit-learn's default), `max_iter = 100`, `tol = 1e-8`.
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 100,
            tol: 1e-8,
        }
    }
}

impl LogisticConfig {
    fn validate(&self) -> Result<()> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(MetricsError::InvalidParameter {
                name: "c",
                value: self.c.to_string(),
                reason: "must be a finite number > 0 (the inverse regularisation strength)",
            });
        }
        if self.max_iter == 0 {
            return Err(MetricsError::InvalidParameter {
                name: "max_iter",
                value: "0".into(),
                reason: "must be at least 1 (Newton steps per binary model)",
            });
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(MetricsError::InvalidParameter {
                name: "tol",
                value: self.tol.to_string(),
                reason: "must be a finite number > 0 (the gradient max-norm to reach)",
            });
        }
        Ok(())
    }
}

/// The class or label a binary model of a probe predicts (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeModel {
    /// Class `c` against the rest.
    Class(usize),
    /// Label `l`.
    Label(usize),
}

impl fmt::Display for ProbeModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(c) => write!(f, "class {c}"),
            Self::Label(l) => write!(f, "label {l}"),
        }
    }
}

/// How the binary models of a [`LogisticProbe`] make its probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeKind {
    /// Two classes: one model of class 1, probabilities `[1 - p, p]`.
    Binary,
    /// More classes: one model per class, probabilities normalised to sum 1 per row.
    OneVsRest {
        /// Number of classes.
        n_classes: usize,
    },
    /// One independent model per label, probabilities as they are.
    MultiLabel {
        /// Number of labels.
        n_labels: usize,
    },
}

impl ProbeKind {
    fn of(labels: &ProbeLabels<'_>) -> Self {
        match *labels {
            ProbeLabels::Classes { n_classes: 2, .. } => Self::Binary,
            ProbeLabels::Classes { n_classes, .. } => Self::OneVsRest { n_classes },
            ProbeLabels::MultiLabel { n_labels, .. } => Self::MultiLabel { n_labels },
        }
    }

    /// The classes or labels of its binary models, in order.
    fn models(self) -> Vec<ProbeModel> {
        match self {
            Self::Binary => vec![ProbeModel::Class(1)],
            Self::OneVsRest { n_classes } => (0..n_classes).map(ProbeModel::Class).collect(),
            Self::MultiLabel { n_labels } => (0..n_labels).map(ProbeModel::Label).collect(),
        }
    }

    /// Probability columns.
    fn outputs(self) -> usize {
        match self {
            Self::Binary => 2,
            Self::OneVsRest { n_classes } => n_classes,
            Self::MultiLabel { n_labels } => n_labels,
        }
    }
}

/// A linear probe: standardisation (scikit-learn's `StandardScaler` fitted on the training
/// rows: mean, population standard deviation, and scale 1 for a feature scikit-learn deems
/// constant, i.e. variance `<= n eps var + (n mean eps)^2`) then L2-regularised logistic
/// regression minimising `C * sum(log-loss) + 0.5 * ||w||^2` (intercept not penalised),
/// i.e. `make_pipeline(StandardScaler(), LogisticRegression(C=c))`:
/// - [`ProbeLabels::Classes`] with `n_classes == 2`: one binary model of class 1;
///   `predict_proba` gives `[1 - p, p]`.
/// - `n_classes > 2`: one-vs-rest (scikit-learn's `OneVsRestClassifier` over that
///   pipeline): one binary model per class, probabilities normalised to sum 1 per row.
/// - [`ProbeLabels::MultiLabel`]: one independent binary model per label
///   (`OneVsRestClassifier` on a label matrix), probabilities not normalised.
///
/// Each model is fitted by Newton's method from zero (the Hessian is `(dim+1)^2`, solved by
/// Cholesky, the step halved while the objective rises) until the gradient's max-norm is
/// at most [`LogisticConfig::tol`]: it reaches the optimum scikit-learn's solvers approach
/// (its `newton-cholesky` solver to ~1e-13; its default lbfgs stops up to ~1e-5 short on
/// ill-conditioned problems, whatever its `tol`). The models are fitted in parallel and the
/// result does not depend on the number of threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticProbe {
    dim: usize,
    kind: ProbeKind,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// `[n_models, dim]`, in the standardised space.
    coef: Vec<f64>,
    intercept: Vec<f64>,
}

/// `1 / (1 + exp(-z))` without overflow (scipy's `expit`).
fn expit(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// scikit-learn's `StandardScaler`: the mean and scale of every column of `x` `[n, dim]`.
fn standard_scaler(x: &[f64], dim: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = x.len() / dim;
    let nf = n as f64;
    let mut mean = vec![0.0; dim];
    let mut scale = vec![1.0; dim];
    for j in 0..dim {
        let column = || x.iter().skip(j).step_by(dim);
        let m = column().sum::<f64>() / nf;
        // Two passes with the correction term, as `_incremental_mean_and_var`.
        let (sq, corr) = column().fold((0.0, 0.0), |(s, c), &v| {
            (s + (v - m) * (v - m), c + (v - m))
        });
        let var = (sq - corr * corr / nf) / nf;
        if !m.is_finite() || !var.is_finite() {
            let (what, value) = if m.is_finite() {
                ("variance", var)
            } else {
                ("mean", m)
            };
            return Err(MetricsError::Overflow {
                what: format!("the {what} of feature column {j} of `x`"),
                value,
            });
        }
        let eps = f64::EPSILON;
        let constant = var <= nf * eps * var + (nf * m * eps).powi(2);
        mean[j] = m;
        if !constant {
            scale[j] = var.sqrt();
        }
    }
    Ok((mean, scale))
}

/// The Cholesky solve of `h x = b` for a symmetric positive definite `h` `[n, n]` (lower
/// triangle read); `None` if `h` is not positive definite in floating point.
fn cholesky_solve(h: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = h[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = b.to_vec();
    for i in 0..n {
        let mut s = y[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    Some(y)
}

/// One binary L2-regularised logistic regression on standardised rows.
struct BinaryFit<'a> {
    z: &'a [f64],
    dim: usize,
    y: &'a [f64],
    /// `1 / (C n)`: the weight of `||w||^2 / 2` in the scaled objective.
    l2: f64,
}

impl BinaryFit<'_> {
    fn n(&self) -> usize {
        self.y.len()
    }

    /// Decision values `z w + b` of every training row; `theta` is `[w, b]`.
    fn decision(&self, theta: &[f64]) -> Vec<f64> {
        let (w, b) = theta.split_at(self.dim);
        self.z
            .chunks_exact(self.dim)
            .map(|row| row.iter().zip(w).map(|(a, c)| a * c).sum::<f64>() + b[0])
            .collect()
    }

    /// The scaled objective `(1/n) sum(log-loss) + l2 ||w||^2 / 2`.
    fn objective(&self, theta: &[f64]) -> f64 {
        let loss: f64 = self
            .decision(theta)
            .iter()
            .zip(self.y)
            .map(|(&d, &y)| softplus(d) - y * d)
            .sum();
        let w2: f64 = theta[..self.dim].iter().map(|w| w * w).sum();
        loss / self.n() as f64 + 0.5 * self.l2 * w2
    }

    /// Gradient and Hessian (lower triangle) of the scaled objective.
    fn derivatives(&self, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (d, n) = (self.dim, self.n() as f64);
        let m = d + 1;
        let mut g = vec![0.0; m];
        let mut h = vec![0.0; m * m];
        for ((row, &dec), &y) in self
            .z
            .chunks_exact(d)
            .zip(&self.decision(theta))
            .zip(self.y)
        {
            let p = expit(dec);
            // `p - y` to full relative precision: `-(1 - p)` for a positive row.
            let r = if y == 1.0 { -expit(-dec) } else { p };
            let s = p * (1.0 - p);
            for i in 0..m {
                let ai = if i < d { row[i] } else { 1.0 };
                g[i] += r * ai;
                let sai = s * ai;
                let hrow = &mut h[i * m..i * m + i + 1];
                for (j, hj) in hrow.iter_mut().enumerate() {
                    let aj = if j < d { row[j] } else { 1.0 };
                    *hj += sai * aj;
                }
            }
        }
        for v in g.iter_mut().chain(h.iter_mut()) {
            *v /= n;
        }
        for i in 0..d {
            g[i] += self.l2 * theta[i];
            h[i * m + i] += self.l2;
        }
        (g, h)
    }

    /// Newton's method from zero; `[w, b]` or the error naming `model`.
    fn solve(&self, cfg: &LogisticConfig, model: ProbeModel) -> Result<Vec<f64>> {
        let m = self.dim + 1;
        let mut theta = vec![0.0; m];
        let mut f = self.objective(&theta);
        let mut iterations = 0;
        loop {
            let (g, h) = self.derivatives(&theta);
            // The gradient of `C sum(log-loss) + ||w||^2 / 2` is `C n` times that of the
            // scaled objective.
            let gnorm = g.iter().fold(0.0f64, |a, v| a.max(v.abs())) / self.l2;
            if gnorm <= cfg.tol {
                return Ok(theta);
            }
            let not_converged = |iterations| MetricsError::NotConverged {
                model,
                iterations,
                max_iter: cfg.max_iter,
                gradient: gnorm,
                tol: cfg.tol,
            };
            if iterations == cfg.max_iter || !gnorm.is_finite() {
                return Err(not_converged(iterations));
            }
            // A Hessian that rounding makes indefinite gets a growing ridge.
            let max_diag = (0..m).fold(0.0f64, |a, i| a.max(h[i * m + i]));
            let mut ridge = 0.0;
            let step = loop {
                let mut hr = h.clone();
                for i in 0..m {
                    hr[i * m + i] += ridge;
                }
                if let Some(s) = cholesky_solve(&hr, &g, m) {
                    break s;
                }
                ridge = if ridge == 0.0 {
                    1e-12 * max_diag.max(f64::MIN_POSITIVE)
                } else {
                    ridge * 10.0
                };
                if !ridge.is_finite() {
                    return Err(not_converged(iterations));
                }
            };
            // Step halving: accept the first step that does not raise the objective beyond
            // its rounding error.
            let slack = 16.0 * f64::EPSILON * f.abs();
            let mut t = 1.0;
            let mut accepted = None;
            for _ in 0..60 {
                let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
                let fc = self.objective(&cand);
                if fc <= f + slack {
                    accepted = Some((cand, fc));
                    break;
                }
                t *= 0.5;
            }
            let Some((cand, fc)) = accepted else {
                return Err(not_converged(iterations));
            };
            theta = cand;
            f = fc;
            iterations += 1;
        }
    }
}

impl LogisticProbe {
    /// Fits the probe on `x` `[n, dim]` with `labels` of `n` samples.
    ///
    /// Errors: empty `x`, `dim == 0`, a length that is not whole rows or does not match the
    /// labels, non-finite features (row and column), a label out of range, invalid `cfg`
    /// (`c` not finite and `> 0`, `max_iter == 0`, `tol` not finite and `> 0`), a binary model
    /// whose training labels are all one value (naming its class or label), Newton not
    /// reaching `tol` within `max_iter` steps (with the gradient norm reached), and features
    /// so large that their mean or variance overflows.
    pub fn fit(
        x: &[f64],
        dim: usize,
        labels: ProbeLabels<'_>,
        cfg: &LogisticConfig,
    ) -> Result<Self> {
        let n = feature_rows("x", x, dim)?;
        labels.validate(n)?;
        cfg.validate()?;
        let kind = ProbeKind::of(&labels);
        let models = kind.models();
        let targets: Vec<Vec<f64>> = models
            .iter()
            .map(|&m| {
                let (ProbeModel::Class(i) | ProbeModel::Label(i)) = m;
                labels.binary_target(i)
            })
            .collect();
        for (&model, y) in models.iter().zip(&targets) {
            let positives = y.iter().filter(|&&v| v == 1.0).count();
            if positives == 0 || positives == n {
                return Err(MetricsError::SingleClassModel {
                    model,
                    positives,
                    n_samples: n,
                });
            }
        }
        let (mean, scale) = standard_scaler(x, dim)?;
        let z = standardise(x, dim, &mean, &scale, "x")?;
        let l2 = 1.0 / (cfg.c * n as f64);
        let thetas: Vec<Vec<f64>> = models
            .par_iter()
            .zip(&targets)
            .map(|(&model, y)| BinaryFit { z: &z, dim, y, l2 }.solve(cfg, model))
            .collect::<Result<_>>()?;
        let mut coef = Vec::with_capacity(models.len() * dim);
        let mut intercept = Vec::with_capacity(models.len());
        for theta in &thetas {
            coef.extend_from_slice(&theta[..dim]);
            intercept.push(theta[dim]);
        }
        Ok(Self {
            dim,
            kind,
            mean,
            scale,
            coef,
            intercept,
        })
    }

    /// The probabilities of `x` `[n, dim]`: `[n, outputs()]` (see the type's docs for each
    /// kind).
    ///
    /// Errors: empty `x`, a length that is not whole rows of [`Self::dim`], non-finite
    /// features, and features so large that a decision value overflows to NaN.
    pub fn predict_proba(&self, x: &[f64]) -> Result<Vec<f64>> {
        feature_rows("x", x, self.dim)?;
        let z = standardise(x, self.dim, &self.mean, &self.scale, "x")?;
        let models = self.kind.models();
        let outputs = self.kind.outputs();
        let mut out = vec![0.0; z.len() / self.dim * outputs];
        for (r, (row, out_row)) in z
            .chunks_exact(self.dim)
            .zip(out.chunks_exact_mut(outputs))
            .enumerate()
        {
            let mut decision = Vec::with_capacity(models.len());
            for (m, w) in self.coef.chunks_exact(self.dim).enumerate() {
                let d = row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + self.intercept[m];
                if d.is_nan() {
                    return Err(MetricsError::Overflow {
                        what: format!(
                            "the decision value of the model of {} for row {r} of `x`",
                            models[m]
                        ),
                        value: d,
                    });
                }
                decision.push(d);
            }
            match self.kind {
                ProbeKind::Binary => {
                    let p = expit(decision[0]);
                    out_row[0] = 1.0 - p;
                    out_row[1] = p;
                }
                ProbeKind::MultiLabel { .. } => {
                    for (o, &d) in out_row.iter_mut().zip(&decision) {
                        *o = expit(d);
                    }
                }
                ProbeKind::OneVsRest { .. } => {
                    for (o, &d) in out_row.iter_mut().zip(&decision) {
                        *o = expit(d);
                    }
                    let sum: f64 = out_row.iter().sum();
                    if sum >= f64::MIN_POSITIVE {
                        for o in out_row.iter_mut() {
                            *o /= sum;
                        }
                    } else {
                        // Every probability underflowed: normalise in log space,
                        // log expit(d) = -softplus(-d).
                        let logs: Vec<f64> = decision.iter().map(|&d| -softplus(-d)).collect();
                        let top = logs.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
                        let total: f64 = logs.iter().map(|&v| (v - top).exp()).sum();
                        for (o, &v) in out_row.iter_mut().zip(&logs) {
                            *o = (v - top).exp() / total;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Probability columns: 2 for two classes, `n_classes` or `n_labels` otherwise.
    pub fn outputs(&self) -> usize {
        self.kind.outputs()
    }

    /// How the binary models make the probabilities.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The standardisation: per feature, the training mean and the scale divided by.
    pub fn standardisation(&self) -> (&[f64], &[f64]) {
        (&self.mean, &self.scale)
    }

    /// Weights and intercepts in the standardised space (scikit-learn's `coef_` and
    /// `intercept_` of the `LogisticRegression` step), one row per binary model: weights
    /// `[n_models, dim]`, intercepts `[n_models]`. Two classes have one model (of class 1).
    pub fn coefficients(&self) -> (&[f64], &[f64]) {
        (&self.coef, &self.intercept)
    }
}

/// `(x - mean) / scale` per column, refusing an overflow.
fn standardise(x: &[f64], dim: usize, mean: &[f64], scale: &[f64], what: &str) -> Result<Vec<f64>> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let j = i % dim;
            let s = (v - mean[j]) / scale[j];
            if s.is_finite() {
                Ok(s)
            } else {
                Err(MetricsError::Overflow {
                    what: format!(
                        "the standardised feature at row {}, column {j} of `{what}`",
                        i / dim
                    ),
                    value: s,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use miram_rand::Rng;

    /// `n` rows of `dim` features whose mean depends on the class; classes cycle so every
    /// class occurs.
    fn classes_data(seed: u64, n: usize, dim: usize, n_classes: usize) -> (Vec<f64>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let centres: Vec<f64> = (0..n_classes * dim).map(|_| rng.normal_f64()).collect();
        let y: Vec<usize> = (0..n).map(|i| i % n_classes).collect();
        let x = y
            .iter()
            .flat_map(|&c| (0..dim).map(move |j| (c, j)))
            .map(|(c, j)| centres[c * dim + j] + rng.normal_f64())
            .collect();
        (x, y)
    }

    fn multilabel_data(seed: u64, n: usize, dim: usize, n_labels: usize) -> (Vec<f64>, Vec<u8>) {
        let mut rng = Rng::new(seed);
        // Row 0 has no label and row 1 every label, so each label has both values.
        let y: Vec<u8> = (0..n * n_labels)
            .map(|i| u8::from(i / n_labels < 2 || rng.bernoulli(0.4)) ^ u8::from(i / n_labels == 0))
            .collect();
        let x = (0..n * dim)
            .map(|i| {
                let (r, j) = (i / dim, i % dim);
                f64::from(y[r * n_labels + j % n_labels]) + rng.normal_f64()
            })
            .collect();
        (x, y)
    }

    #[test]
    fn knn_rows_of_classes_sum_to_one() {
        let (x, y) = classes_data(1, 40, 5, 3);
        let (q, _) = classes_data(2, 17, 5, 3);
        let labels = ProbeLabels::Classes {
            y: &y,
            n_classes: 3,
        };
        for metric in [KnnMetric::Cosine, KnnMetric::Euclidean] {
            for k in [1, 4, 7, 40] {
                let p = knn_predict_proba(&x, 5, labels, &q, &KnnConfig { k, metric }).unwrap();
                assert_eq!(p.len(), 17 * 3);
                for row in p.chunks_exact(3) {
                    let s: f64 = row.iter().sum();
                    assert!(
                        (s - 1.0).abs() < 1e-12,
                        "{metric} k={k}: row {row:?} sums to {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn knn_with_every_training_row_gives_the_frequencies() {
        let (x, y) = classes_data(3, 31, 4, 4);
        let (q, _) = classes_data(4, 9, 4, 4);
        let mut freq = [0.0; 4];
        for &c in &y {
            freq[c] += 1.0 / 31.0;
        }
        let labels = ProbeLabels::Classes {
            y: &y,
            n_classes: 4,
        };
        let (xm, ym) = multilabel_data(5, 31, 4, 3);
        let mut share = [0.0; 3];
        for (i, &v) in ym.iter().enumerate() {
            share[i % 3] += f64::from(v) / 31.0;
        }
        let ml = ProbeLabels::MultiLabel {
            y: &ym,
            n_labels: 3,
        };
        for metric in [KnnMetric::Cosine, KnnMetric::Euclidean] {
            let cfg = KnnConfig { k: 31, metric };
            let p = knn_predict_proba(&x, 4, labels, &q, &cfg).unwrap();
            for row in p.chunks_exact(4) {
                for (a, b) in row.iter().zip(&freq) {
                    assert!((a - b).abs() < 1e-12, "{metric}: {row:?} vs {freq:?}");
                }
            }
            let p = knn_predict_proba(&xm, 4, ml, &q, &cfg).unwrap();
            for row in p.chunks_exact(3) {
                for (a, b) in row.iter().zip(&share) {
                    assert!((a - b).abs() < 1e-12, "{metric}: {row:?} vs {share:?}");
                }
            }
        }
    }

    #[test]
    fn knn_ties_go_to_the_lower_training_index() {
        // Rows 0 and 1 are identical (class 1 then class 0); row 2 is far away.
        let x = [1.0, 2.0, 1.0, 2.0, -5.0, 7.0];
        let q = [1.0, 2.0, 2.0, 4.0];
        for (y, want) in [([1, 0, 0], 1), ([0, 1, 1], 0)] {
            let labels = ProbeLabels::Classes {
                y: &y,
                n_classes: 2,
            };
            for metric in [KnnMetric::Cosine, KnnMetric::Euclidean] {
                let p = knn_predict_proba(&x, 2, labels, &q, &KnnConfig { k: 1, metric }).unwrap();
                // The second query is at cosine distance 0 from both too.
                let rows = if metric == KnnMetric::Cosine { 2 } else { 1 };
                for row in p.chunks_exact(2).take(rows) {
                    assert_eq!(row[want], 1.0, "{metric}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn cosine_distance_of_a_zero_row_is_one() {
        // The zero query is at distance 1 from every row: ties, so the lowest indices win.
        let x = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        let y = [0, 1, 1];
        let labels = ProbeLabels::Classes {
            y: &y,
            n_classes: 2,
        };
        let cfg = KnnConfig {
            k: 2,
            metric: KnnMetric::Cosine,
        };
        let p = knn_predict_proba(&x, 2, labels, &[0.0, 0.0], &cfg).unwrap();
        assert_eq!(p, [0.5, 0.5]);
    }

    fn fit(x: &[f64], dim: usize, labels: ProbeLabels<'_>, c: f64) -> LogisticProbe {
        let cfg = LogisticConfig {
            c,
            ..LogisticConfig::default()
        };
        LogisticProbe::fit(x, dim, labels, &cfg).unwrap()
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn logistic_is_invariant_to_shifting_a_feature() {
        let (x, y) = classes_data(6, 60, 4, 3);
        let (q, _) = classes_data(7, 10, 4, 3);
        let (xm, ym) = multilabel_data(8, 60, 4, 2);
        let shift = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .enumerate()
                .map(|(i, &a)| if i % 4 == 2 { a + 1000.0 } else { a })
                .collect()
        };
        let cases = [
            (
                ProbeLabels::Classes {
                    y: &y[..],
                    n_classes: 3,
                },
                &x,
            ),
            (
                ProbeLabels::Classes {
                    y: &y.iter().map(|&c| c % 2).collect::<Vec<_>>(),
                    n_classes: 2,
                },
                &x,
            ),
            (
                ProbeLabels::MultiLabel {
                    y: &ym,
                    n_labels: 2,
                },
                &xm,
            ),
        ];
        for (labels, x) in cases {
            let a = fit(x, 4, labels, 1.0);
            let b = fit(&shift(x), 4, labels, 1.0);
            let pa = a.predict_proba(&q).unwrap();
            let pb = b.predict_proba(&shift(&q)).unwrap();
            assert!(
                max_abs_diff(&pa, &pb) < 1e-9,
                "{labels:?}: {pa:?} vs {pb:?}"
            );
            assert!(max_abs_diff(a.coefficients().0, b.coefficients().0) < 1e-9);
            assert!(max_abs_diff(a.coefficients().1, b.coefficients().1) < 1e-9);
        }
    }

    /// Mean training log-loss of every binary model (the data-fit term of the objective).
    fn training_log_loss(probe: &LogisticProbe, x: &[f64], targets: &[Vec<f64>]) -> Vec<f64> {
        let z = standardise(x, probe.dim, &probe.mean, &probe.scale, "x").unwrap();
        let (coef, intercept) = probe.coefficients();
        targets
            .iter()
            .enumerate()
            .map(|(m, y)| {
                let mut theta = coef[m * probe.dim..(m + 1) * probe.dim].to_vec();
                theta.push(intercept[m]);
                let fit = BinaryFit {
                    z: &z,
                    dim: probe.dim,
                    y,
                    l2: 0.0,
                };
                fit.objective(&theta)
            })
            .collect()
    }

    #[test]
    fn larger_c_fits_the_training_data_at_least_as_well() {
        let (x, y) = classes_data(9, 50, 6, 4);
        let (xm, ym) = multilabel_data(10, 50, 6, 3);
        let cases = [
            (
                ProbeLabels::Classes {
                    y: &y[..],
                    n_classes: 4,
                },
                &x,
            ),
            (
                ProbeLabels::MultiLabel {
                    y: &ym,
                    n_labels: 3,
                },
                &xm,
            ),
        ];
        for (labels, x) in cases {
            let kind = ProbeKind::of(&labels);
            let targets: Vec<Vec<f64>> = kind
                .models()
                .iter()
                .map(|&m| {
                    let (ProbeModel::Class(i) | ProbeModel::Label(i)) = m;
                    labels.binary_target(i)
                })
                .collect();
            let mut previous: Option<Vec<f64>> = None;
            for c in [0.001, 0.01, 0.1, 1.0, 10.0, 100.0] {
                let loss = training_log_loss(&fit(x, 6, labels, c), x, &targets);
                if let Some(prev) = &previous {
                    for (m, (now, before)) in loss.iter().zip(prev).enumerate() {
                        assert!(
                            now <= &(before + 1e-12),
                            "C={c}, model {m}: {now} > {before}"
                        );
                    }
                }
                previous = Some(loss);
            }
        }
    }

    #[test]
    fn constant_feature_gets_scale_one_and_weight_zero() {
        let (mut x, y) = classes_data(11, 30, 3, 2);
        for row in x.chunks_exact_mut(3) {
            row[1] = 2.5;
        }
        let probe = fit(
            &x,
            3,
            ProbeLabels::Classes {
                y: &y,
                n_classes: 2,
            },
            1.0,
        );
        let (mean, scale) = probe.standardisation();
        assert_eq!((mean[1], scale[1]), (2.5, 1.0));
        assert_eq!(probe.coefficients().0[1], 0.0);
    }

    #[test]
    fn a_decision_value_that_overflows_to_nan_is_an_error() {
        let probe = LogisticProbe {
            dim: 2,
            kind: ProbeKind::MultiLabel { n_labels: 2 },
            mean: vec![0.0, 0.0],
            scale: vec![1.0, 1.0],
            coef: vec![1.0, 1.0, 1e300, 1e300],
            intercept: vec![0.0, 0.0],
        };
        let e = probe.predict_proba(&[1e10, -1e10]).unwrap_err();
        assert!(matches!(e, MetricsError::Overflow { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("decision value of the model of label 1 for row 0"),
            "{msg}"
        );
        // +-inf decision values are probabilities 1 and 0.
        let p = probe.predict_proba(&[1e10, 0.0]).unwrap();
        assert_eq!(p[1], 1.0);
    }

    #[test]
    fn one_vs_rest_normalises_underflowing_probabilities_in_log_space() {
        // Decision values -800 and -801: both expit values underflow to 0.
        let probe = LogisticProbe {
            dim: 1,
            kind: ProbeKind::OneVsRest { n_classes: 3 },
            mean: vec![0.0],
            scale: vec![1.0],
            coef: vec![0.0, 0.0, 0.0],
            intercept: vec![-800.0, -801.0, -801.0],
        };
        let p = probe.predict_proba(&[0.0]).unwrap();
        let e = (-1.0f64).exp();
        let want = [
            1.0 / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
        ];
        assert!(max_abs_diff(&p, &want) < 1e-12, "{p:?}");
    }
}
