//! Parity with the PyTorch reference, on any device: the checks that the golden fixtures
//! (`fixtures/model`, `fixtures/finetune`; their format and tolerances are in
//! `fixtures/README.md`) ask of the model, as library functions.
//!
//! The parity tests run them on the CPU (`tests/model_parity.rs`, `tests/finetune_parity.rs`,
//! and through the composed kernels in `tests/parity_composed.rs`); `miram selftest` runs
//! them on a GPU. Each function builds the model of one fixture file on the device, runs it,
//! and compares every output, gradient and optimiser result with the stored one, copying
//! both to the CPU in `f32` for the comparison.
//!
//! ```no_run
//! use miram_core::{parity, Device};
//! # fn main() -> miram_core::Result<()> {
//! for file in parity::fixture_files("fixtures/model".as_ref(), "safetensors")? {
//!     let report = parity::check_model_fixture(&file, &Device::Cpu)?;
//!     println!("{report}");
//!     assert!(report.passed());
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::checkpoint::{prepare_for_model, read_checkpoint, Checkpoint};
use crate::encoder::{ClassifierConfig, EncoderConfig, VitClassifier};
use crate::losses::{bce_with_logits, cross_entropy};
use crate::nn::ParamStore;
use crate::optim::{AdamW, AdamWConfig, Grads};
use crate::{Error, Miram, MiramConfig, Precision, Result};

/// Outputs and losses: `|a - b| <= atol + rtol |b|` element-wise (fixtures/README.md).
pub const OUTPUT_ATOL: f32 = 1e-4;
/// See [`OUTPUT_ATOL`].
pub const OUTPUT_RTOL: f32 = 1e-4;
/// Gradients: `max |a - b| <= 5e-4 max |b|`.
pub const GRAD_TOL: f32 = 5e-4;
/// Parameters after one AdamW step: `max |a - b| <= 1e-5 max |b|`.
pub const ADAMW_TOL: f32 = 1e-5;
/// The computed sin-cos tables against the stored ones (absolute).
pub const TABLE_ATOL: f32 = 1e-6;
/// bf16 mixed precision: every loss (and the fine-tuning logits, as the largest deviation
/// over the largest logit) within 1e-2 relative of the f32 reference.
///
/// Measured on the CPU (candle 0.11.1, composed path in bf16): model fixtures' losses within
/// 9.3e-4 (`miram_nystrom`), fine-tuning losses within 8.4e-4 (`ft_margins`), logits within
/// 7.8e-3 (`ft_pathology`).
pub const BF16_RTOL: f64 = 1e-2;
/// bf16 mixed precision: the lowest cosine similarity of a gradient (f32, at the master
/// weights) with the f32 reference gradient. Measured worst: 0.99903 (`miram_3scale`); the
/// bound leaves five times that distance from 1.
pub const BF16_GRAD_COSINE: f64 = 0.995;

/// Which group a comparison belongs to, for summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckKind {
    /// Forward outputs, masks, losses and tables.
    Output,
    /// Gradients of the trainable parameters.
    Gradient,
    /// Parameters after one AdamW step.
    AdamW,
}

impl CheckKind {
    /// The group's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Output => "outputs",
            Self::Gradient => "gradients",
            Self::AdamW => "adamw",
        }
    }
}

/// One comparison of a computed tensor with the reference.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The tensor (`pred.1`, `grad blocks.0.attn.qkv.weight`).
    pub what: String,
    /// Its group.
    pub kind: CheckKind,
    /// The largest deviation as a fraction of what the tolerance allows there: at most 1
    /// passes; infinite for a non-finite value or another shape.
    pub used: f64,
    /// What went wrong, when `used > 1`.
    pub detail: Option<String>,
}

/// The outcome of one fixture file.
#[derive(Debug, Clone)]
pub struct ParityReport {
    /// The fixture file.
    pub case: PathBuf,
    /// Every comparison made.
    pub comparisons: Vec<Comparison>,
    /// Problems that are not a tolerance (a load report that is not exact, different
    /// parameter names).
    pub problems: Vec<String>,
}

impl ParityReport {
    fn new(case: &Path) -> Self {
        Self {
            case: case.to_path_buf(),
            comparisons: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// True when every comparison is within its tolerance and nothing else went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.comparisons.iter().all(|c| c.used <= 1.0)
    }

    /// Every failure, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        out.extend(
            self.comparisons
                .iter()
                .filter(|c| c.used > 1.0)
                .map(|c| c.detail.clone().unwrap_or_else(|| c.what.clone())),
        );
        out
    }

    /// The largest fraction of its tolerance that a comparison of `kind` used, with its name;
    /// `None` when the group is empty.
    pub fn worst(&self, kind: CheckKind) -> Option<(&str, f64)> {
        self.comparisons
            .iter()
            .filter(|c| c.kind == kind)
            .max_by(|a, b| a.used.total_cmp(&b.used))
            .map(|c| (c.what.as_str(), c.used))
    }

    fn close(&mut self, what: &str, got: &Tensor, want: &Tensor, tol: (f32, f32)) -> Result<()> {
        let c = compare_close(what, got, want, tol)?;
        self.comparisons.push(c);
        Ok(())
    }

    fn rel_max(
        &mut self,
        kind: CheckKind,
        what: &str,
        got: &Tensor,
        want: &Tensor,
        tol: f32,
    ) -> Result<()> {
        let c = compare_rel_max(kind, what, got, want, tol)?;
        self.comparisons.push(c);
        Ok(())
    }
}

impl ParityReport {
    /// A bf16 scalar (a loss) within [`BF16_RTOL`] relative of the f32 reference, and f32.
    fn bf16_scalar(&mut self, what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
        if got.dtype() != DType::F32 {
            self.problems
                .push(format!("{what}: {:?}, not f32", got.dtype()));
        }
        let (g, w) = (host_f32(got)?, host_f32(want)?);
        let (g, w) = (
            g.first().copied().unwrap_or(f32::NAN),
            w.first().copied().unwrap_or(f32::NAN),
        );
        let rel = f64::from((g - w).abs()) / f64::from(w.abs()).max(1e-12);
        let used = if rel.is_finite() {
            rel / BF16_RTOL
        } else {
            f64::INFINITY
        };
        self.comparisons.push(Comparison {
            what: what.to_string(),
            kind: CheckKind::Output,
            used,
            detail: (used > 1.0).then(|| {
                format!(
                    "{what}: {g} against {w} in f32, relative error {rel:.2e} > {BF16_RTOL:.0e}"
                )
            }),
        });
        Ok(())
    }

    /// A bf16 tensor within [`BF16_RTOL`] of the f32 reference, as the largest deviation
    /// over the largest reference value.
    fn bf16_tensor(&mut self, what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
        let c = compare_rel_max(CheckKind::Output, what, got, want, BF16_RTOL as f32)?;
        self.comparisons.push(c);
        Ok(())
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write!(f, "{name}: {}", if self.passed() { "ok" } else { "FAILED" })?;
        for kind in [CheckKind::Output, CheckKind::Gradient, CheckKind::AdamW] {
            if let Some((what, used)) = self.worst(kind) {
                write!(f, "; {} worst {used:.3} of tolerance ({what})", kind.name())?;
            }
        }
        for line in self.failures() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// The files of `dir` whose name ends in `.ext`, sorted: every one is a case.
pub fn fixture_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn shape_problem(what: &str, kind: CheckKind, got: &Tensor, want: &Tensor) -> Option<Comparison> {
    (got.dims() != want.dims()).then(|| Comparison {
        what: what.to_string(),
        kind,
        used: f64::INFINITY,
        detail: Some(format!(
            "{what}: shape {:?}, expected {:?}",
            got.dims(),
            want.dims()
        )),
    })
}

/// Element-wise `|a - b| <= atol + rtol |b|`; an exact comparison when both are 0.
fn compare_close(
    what: &str,
    got: &Tensor,
    want: &Tensor,
    (atol, rtol): (f32, f32),
) -> Result<Comparison> {
    if let Some(c) = shape_problem(what, CheckKind::Output, got, want) {
        return Ok(c);
    }
    let (g, w) = (host_f32(got)?, host_f32(want)?);
    let mut worst = (0f64, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let dev = f64::from((a - b).abs());
        let bound = f64::from(atol + rtol * b.abs());
        let used = if !a.is_finite() || dev.is_nan() {
            f64::INFINITY
        } else if bound == 0.0 {
            if dev == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            dev / bound
        };
        if used > worst.0 {
            worst = (used, i);
        }
    }
    let i = worst.1;
    Ok(Comparison {
        what: what.to_string(),
        kind: CheckKind::Output,
        used: worst.0,
        detail: (worst.0 > 1.0).then(|| {
            format!(
                "{what}: element {i} is {} expected {} (beyond {atol} + {rtol} rel)",
                g[i], w[i]
            )
        }),
    })
}

/// `max |a - b| <= tol max |b|`.
fn compare_rel_max(
    kind: CheckKind,
    what: &str,
    got: &Tensor,
    want: &Tensor,
    tol: f32,
) -> Result<Comparison> {
    if let Some(c) = shape_problem(what, kind, got, want) {
        return Ok(c);
    }
    let (g, w) = (host_f32(got)?, host_f32(want)?);
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = g.iter().zip(&w).fold(0f32, |m, (a, b)| {
        let d = (a - b).abs();
        if d.is_nan() || !a.is_finite() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    });
    let used = f64::from(diff) / f64::from(tol * scale);
    Ok(Comparison {
        what: what.to_string(),
        kind,
        used,
        detail: (used > 1.0)
            .then(|| format!("{what}: max deviation {diff:.3e} > {tol:.0e} x {scale:.3e}")),
    })
}

fn bad_fixture(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn tensor(ck: &Checkpoint, name: &str) -> Result<Tensor> {
    ck.tensors
        .get(name)
        .cloned()
        .ok_or_else(|| bad_fixture(&ck.path, format!("no tensor `{name}` in the fixture")))
}

fn metadata<'a>(ck: &'a Checkpoint, key: &str) -> Result<&'a str> {
    ck.metadata
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| bad_fixture(&ck.path, format!("no `{key}` in the fixture's metadata")))
}

fn json<T: for<'de> Deserialize<'de>>(ck: &Checkpoint, key: &str) -> Result<T> {
    serde_json::from_str(metadata(ck, key)?)
        .map_err(|e| bad_fixture(&ck.path, format!("metadata `{key}`: {e}")))
}

/// The stored weights of a fixture: every tensor not under `fixture.`.
fn weights(ck: &Checkpoint) -> HashMap<String, Tensor> {
    ck.tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("fixture."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The model of a `fixtures/model` file on `device`, from its `config` metadata and its
/// weights (the sin-cos tables computed), with its parameter store.
pub fn fixture_model(ck: &Checkpoint, device: &Device) -> Result<(Miram, ParamStore)> {
    let cfg = MiramConfig::from_json(metadata(ck, "config")?)?;
    let store = ParamStore::from_tensors(
        prepare_for_model(weights(ck), cfg.in_chans)?,
        0,
        DType::F32,
        device,
    );
    let model = Miram::new(&cfg, store.root())?;
    Ok((model, store))
}

/// Checks one `fixtures/model` file (`miram-fixture-v1`) on `device` in `f32`: the model
/// built from its `config` and weights (the sin-cos tables computed, and compared with the
/// stored ones), the trainable parameter names, the forward on its inputs (latent, mask,
/// `ids_restore`, every scale's prediction and loss, the total loss), every gradient, and
/// one AdamW step from the stored weights on the stored gradients.
///
/// An unreadable or incomplete fixture is an error; a deviation is a failed
/// [`ParityReport`].
pub fn check_model_fixture(path: &Path, device: &Device) -> Result<ParityReport> {
    check_model_fixture_at(path, device, Precision::F32)
}

/// [`check_model_fixture`] at `precision`. In bf16 mixed precision the bounds are those of
/// a bf16 run against the f32 reference: every loss within [`BF16_RTOL`] relative, every
/// gradient `f32`, finite and with a cosine of at least [`BF16_GRAD_COSINE`] with the
/// reference's; the masks are still exact, and no AdamW step is compared (the optimiser
/// runs on the f32 master weights either way).
pub fn check_model_fixture_at(
    path: &Path,
    device: &Device,
    precision: Precision,
) -> Result<ParityReport> {
    let mut r = ParityReport::new(path);
    let ck = read_checkpoint(path, device)?;
    let (model, store) = fixture_model(&ck, device)?;
    let model = model.with_precision(precision);
    let report = store.load_report();
    if !report.is_exact() {
        r.problems.push(format!("load: {report}"));
    }
    structure(&mut r, &ck, &model, &store)?;
    let out = model.forward(
        &tensor(&ck, "fixture.input.imgs")?,
        &tensor(&ck, "fixture.input.noise")?,
    )?;
    let params = store.trainable();
    let grads = Grads::from_backward(&out.loss.backward()?, &params);
    if precision == Precision::F32 {
        model_outputs(&mut r, &ck, &out)?;
        for (name, _) in &params {
            let want = tensor(&ck, &format!("fixture.grad.{name}"))?;
            match grads.get(name) {
                Some(g) => r.rel_max(
                    CheckKind::Gradient,
                    &format!("grad {name}"),
                    g,
                    &want,
                    GRAD_TOL,
                )?,
                None => r.problems.push(format!("grad {name}: no gradient")),
            }
        }
        return adamw_step(r, &ck, &params);
    }
    r.close(
        "mask",
        &out.masking.mask,
        &tensor(&ck, "fixture.output.mask")?,
        (0.0, 0.0),
    )?;
    for (i, l) in out.losses.iter().enumerate() {
        r.bf16_scalar(
            &format!("loss.{i}"),
            l,
            &tensor(&ck, &format!("fixture.output.loss.{i}"))?,
        )?;
    }
    r.bf16_scalar("loss", &out.loss, &tensor(&ck, "fixture.output.loss")?)?;
    bf16_gradients(&mut r, &ck, &params, &grads)?;
    Ok(r)
}

/// The sin-cos tables, the trainable names and the buffers of a model fixture.
fn structure(
    r: &mut ParityReport,
    ck: &Checkpoint,
    model: &Miram,
    store: &ParamStore,
) -> Result<()> {
    r.close(
        "pos_embed",
        model.encoder().pos_embed(),
        &tensor(ck, "pos_embed")?,
        (TABLE_ATOL, 0.0),
    )?;
    for (i, d) in model.decoder().decoders().iter().enumerate() {
        let name = format!("decoders.{i}.pos_embed");
        r.close(&name, d.pos_embed(), &tensor(ck, &name)?, (TABLE_ATOL, 0.0))?;
    }
    let mut trainable: Vec<String> = json(ck, "trainable")?;
    trainable.sort();
    let ours: Vec<String> = store.trainable().into_iter().map(|(n, _)| n).collect();
    if ours != trainable {
        r.problems.push(format!(
            "trainable parameters differ: ours {ours:?}, reference {trainable:?}"
        ));
    }
    for (name, _) in store.buffers() {
        if !ck.tensors.contains_key(&name) {
            r.problems
                .push(format!("buffer {name} is not in the reference"));
        }
    }
    Ok(())
}

/// bf16 gradients: present, `f32`, finite, and pointing the reference's way.
fn bf16_gradients(
    r: &mut ParityReport,
    ck: &Checkpoint,
    params: &[(String, candle_core::Var)],
    grads: &Grads,
) -> Result<()> {
    for (name, _) in params {
        let Some(g) = grads.get(name) else {
            r.problems.push(format!("grad {name}: no gradient"));
            continue;
        };
        if g.dtype() != DType::F32 {
            r.problems
                .push(format!("grad {name}: {:?}, not f32", g.dtype()));
        }
        let want = tensor(ck, &format!("fixture.grad.{name}"))?;
        let c = cosine(&host_f32(g)?, &host_f32(&want)?);
        let used = if c.is_finite() {
            (1.0 - c).max(0.0) / (1.0 - BF16_GRAD_COSINE)
        } else {
            f64::INFINITY
        };
        r.comparisons.push(Comparison {
            what: format!("grad {name}"),
            kind: CheckKind::Gradient,
            used,
            detail: (used > 1.0)
                .then(|| format!("grad {name}: cosine {c:.5} < {BF16_GRAD_COSINE}")),
        });
    }
    Ok(())
}

/// The cosine similarity of two vectors (1 when both are zero; NaN for a non-finite value).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if !(ab.is_finite() && aa.is_finite() && bb.is_finite()) || a.len() != b.len() {
        return f64::NAN;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else {
        ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
    }
}

/// The forward's outputs against the fixture's.
fn model_outputs(r: &mut ParityReport, ck: &Checkpoint, out: &crate::MiramOutput) -> Result<()> {
    let tol = (OUTPUT_ATOL, OUTPUT_RTOL);
    r.close(
        "latent",
        &out.latent,
        &tensor(ck, "fixture.output.latent")?,
        tol,
    )?;
    r.close(
        "mask",
        &out.masking.mask,
        &tensor(ck, "fixture.output.mask")?,
        (0.0, 0.0),
    )?;
    let ids = out.masking.ids_restore.to_dtype(DType::F32)?;
    let want_ids = tensor(ck, "fixture.output.ids_restore")?.to_dtype(DType::F32)?;
    r.close("ids_restore", &ids, &want_ids, (0.0, 0.0))?;
    for (i, (p, l)) in out.preds.iter().zip(&out.losses).enumerate() {
        r.close(
            &format!("pred.{i}"),
            p,
            &tensor(ck, &format!("fixture.output.pred.{i}"))?,
            tol,
        )?;
        let want = tensor(ck, &format!("fixture.output.loss.{i}"))?;
        r.close(&format!("loss.{i}"), &l.reshape(1)?, &want, tol)?;
    }
    r.close(
        "loss",
        &out.loss.reshape(1)?,
        &tensor(ck, "fixture.output.loss")?,
        tol,
    )
}

/// One AdamW step from the stored weights on the stored gradients (not recomputed ones: on
/// a first step the update is about `lr sign(g)`, so rounding-level differences in the
/// gradient would flip it).
fn adamw_step(
    mut r: ParityReport,
    ck: &Checkpoint,
    params: &[(String, candle_core::Var)],
) -> Result<ParityReport> {
    #[derive(Deserialize)]
    struct Hyper {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    }
    let h: Hyper = json(ck, "adamw")?;
    let mut stored = Grads::new();
    for (name, _) in params {
        stored.insert(name.clone(), tensor(ck, &format!("fixture.grad.{name}"))?);
    }
    let cfg = AdamWConfig {
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        weight_decay: h.weight_decay,
    };
    let mut opt = AdamW::new(params.to_vec(), cfg)?;
    opt.step(&stored)?;
    for (name, var) in params {
        let want = tensor(ck, &format!("fixture.adamw.{name}"))?;
        r.rel_max(
            CheckKind::AdamW,
            &format!("adamw {name}"),
            var.as_tensor(),
            &want,
            ADAMW_TOL,
        )?;
    }
    Ok(r)
}

/// The `config` metadata of a `fixtures/finetune` file: the encoder's fields, the head's
/// classes, the task and the class weights.
#[derive(Deserialize)]
struct FinetuneFixtureConfig {
    #[serde(flatten)]
    encoder: EncoderConfig,
    num_classes: usize,
    task: String,
    class_weights: Option<Vec<f32>>,
}

/// Checks one `fixtures/finetune` file on `device` in `f32`: MAE's fine-tuning ViT (global
/// pool, `fc_norm`, `head`; eval mode, no drop path) built from its `config` and weights,
/// its logits, the loss (class-weighted cross-entropy, or BCE with logits for `multilabel`)
/// and every gradient.
pub fn check_finetune_fixture(path: &Path, device: &Device) -> Result<ParityReport> {
    check_finetune_fixture_at(path, device, Precision::F32)
}

/// [`check_finetune_fixture`] at `precision`; in bf16 with the bounds of
/// [`check_model_fixture_at`] (the logits as the largest deviation over the largest logit).
pub fn check_finetune_fixture_at(
    path: &Path,
    device: &Device,
    precision: Precision,
) -> Result<ParityReport> {
    let mut r = ParityReport::new(path);
    let ck = read_checkpoint(path, device)?;
    let fc: FinetuneFixtureConfig = json(&ck, "config")?;
    let cfg = ClassifierConfig {
        encoder: fc.encoder.clone(),
        num_classes: fc.num_classes,
        drop_path: 0.0,
    };
    let mut stored = weights(&ck);
    stored.remove("pos_embed");
    let store = ParamStore::from_tensors(stored, 0, DType::F32, device);
    let model = VitClassifier::new(&cfg, store.root())?.with_precision(precision);
    let report = store.load_report();
    if !report.is_exact() {
        r.problems.push(format!("load: {report}"));
    }
    let tol = (OUTPUT_ATOL, OUTPUT_RTOL);
    let logits = model.forward(&tensor(&ck, "fixture.input.imgs")?)?;
    let want_logits = tensor(&ck, "fixture.output.logits")?;
    let labels = tensor(&ck, "fixture.input.labels")?;
    let loss = match fc.task.as_str() {
        "multiclass" => cross_entropy(
            &logits,
            &labels.to_dtype(DType::U32)?,
            fc.class_weights.as_deref(),
        )?,
        "multilabel" => bce_with_logits(&logits, &labels)?,
        t => {
            return Err(bad_fixture(
                path,
                format!("unknown task `{t}` (multiclass or multilabel)"),
            ))
        }
    };
    let want_loss = tensor(&ck, "fixture.output.loss")?;
    if precision == Precision::F32 {
        r.close("logits", &logits, &want_logits, tol)?;
        r.close("loss", &loss.reshape(1)?, &want_loss, tol)?;
    } else {
        r.bf16_tensor("logits", &logits, &want_logits)?;
        r.bf16_scalar("loss", &loss, &want_loss)?;
    }
    let params = store.trainable();
    let grads = Grads::from_backward(&loss.backward()?, &params);
    let names: BTreeSet<String> = ck
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("fixture.grad.").map(str::to_string))
        .collect();
    let ours: BTreeSet<String> = params.iter().map(|(n, _)| n.clone()).collect();
    if ours != names {
        r.problems.push(format!(
            "trainable parameters differ: ours {ours:?}, reference {names:?}"
        ));
    }
    if precision != Precision::F32 {
        bf16_gradients(&mut r, &ck, &params, &grads)?;
        return Ok(r);
    }
    for n in &names {
        let want = tensor(&ck, &format!("fixture.grad.{n}"))?;
        match grads.get(n) {
            Some(g) => r.rel_max(
                CheckKind::Gradient,
                &format!("grad {n}"),
                g,
                &want,
                GRAD_TOL,
            )?,
            None => r.problems.push(format!("grad {n}: no gradient")),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn close_uses_the_fraction_of_the_bound() -> Result<()> {
        // |1.0001 - 1| = 1e-4 against 1e-4 + 1e-4 x 1 = 2e-4: half the bound.
        let c = compare_close("x", &t(&[1.0001, 0.0]), &t(&[1.0, 0.0]), (1e-4, 1e-4))?;
        assert!((c.used - 0.5).abs() < 1e-3, "{}", c.used);
        assert!(c.detail.is_none());
        // A zero bound is an exact comparison.
        let c = compare_close("m", &t(&[1.0]), &t(&[0.0]), (0.0, 0.0))?;
        assert!(c.used.is_infinite() && c.detail.is_some());
        let c = compare_close("m", &t(&[f32::NAN]), &t(&[0.0]), (1.0, 1.0))?;
        assert!(c.used.is_infinite());
        Ok(())
    }

    #[test]
    fn rel_max_scales_by_the_largest_reference_value() -> Result<()> {
        // max |diff| 1e-3 against 5e-4 x max |b| = 5e-4 x 4 = 2e-3: half the bound.
        let c = compare_rel_max(
            CheckKind::Gradient,
            "g",
            &t(&[4.0, 0.001]),
            &t(&[4.0, 0.0]),
            5e-4,
        )?;
        assert!((c.used - 0.5).abs() < 1e-3, "{}", c.used);
        let c = compare_rel_max(CheckKind::Gradient, "g", &t(&[1.0]), &t(&[1.0, 2.0]), 5e-4)?;
        assert!(c.used.is_infinite() && c.detail.unwrap_or_default().contains("shape"));
        Ok(())
    }

    #[test]
    fn a_report_fails_on_a_problem_or_a_deviation() {
        let mut r = ParityReport::new(Path::new("case.safetensors"));
        r.comparisons.push(Comparison {
            what: "a".into(),
            kind: CheckKind::Output,
            used: 0.9,
            detail: None,
        });
        assert!(r.passed());
        assert_eq!(r.worst(CheckKind::Output), Some(("a", 0.9)));
        assert_eq!(r.worst(CheckKind::AdamW), None);
        r.problems.push("load: missing x".into());
        assert!(!r.passed());
        assert_eq!(r.failures(), vec!["load: missing x".to_string()]);
    }
}
