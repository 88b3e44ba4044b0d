//! bf16 mixed precision against the f32 references: every `*.safetensors` in
//! `$MIRAM_MODEL_FIXTURES` (default `fixtures/model`) and `$MIRAM_FINETUNE_FIXTURES` (default
//! `fixtures/finetune`) is one case, run at [`Precision::Bf16`] on the CPU (the composed
//! candle path in bf16; the library allows it there, the CLI does not). The losses and
//! logits must stay within 1e-2 relative of the fixture's f32 values, every gradient must
//! arrive in `f32` at the master weights, finite, pointing the reference's way; and at
//! [`Precision::F32`] nothing changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use miram_core::checkpoint::{prepare_for_model, read_checkpoint, Checkpoint};
use miram_core::encoder::{ClassifierConfig, EncoderConfig, VitClassifier};
use miram_core::losses::{bce_with_logits, cross_entropy};
use miram_core::nn::ParamStore;
use miram_core::optim::Grads;
use miram_core::{Miram, MiramConfig, Precision};
use miram_test_support::{f32s, fixture_files};

/// The bound on the losses (and here the logits) at bf16, relative to f32.
///
/// Measured on the CPU (candle 0.11.1): the losses of the model fixtures within 9.3e-4
/// (`miram_nystrom`; `mae_rgb` 7.4e-5), those of the fine-tuning fixtures within 8.4e-4
/// (`ft_margins`); the logits' largest deviation over the largest logit 7.8e-3
/// (`ft_pathology`; `ft_margins` 2.9e-3, `ft_pathology4` 4.3e-3).
const LOSS_REL: f64 = 1e-2;

/// The lowest cosine similarity of a bf16 gradient with the f32 reference gradient.
///
/// Measured: worst 0.99903 (`miram_3scale`, model fixtures), 0.99945 (`ft_margins`,
/// fine-tuning fixtures); the bound leaves five times that distance from 1.
const GRAD_COSINE: f64 = 0.995;

fn fixture(path: &Path) -> Checkpoint {
    read_checkpoint(path, &Device::Cpu).expect("readable fixture")
}

fn tensor(ck: &Checkpoint, k: &str) -> Tensor {
    ck.tensors
        .get(k)
        .unwrap_or_else(|| panic!("{}: no tensor {k}", ck.path.display()))
        .clone()
}

/// `|got - want| / |want|` of two scalars (one-element tensors).
fn rel_scalar(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (f32s(got)[0] as f64, f32s(want)[0] as f64);
    if g.is_finite() {
        (g - w).abs() / w.abs().max(1e-12)
    } else {
        f64::INFINITY
    }
}

/// `max |got - want| / max |want|`.
fn rel_max(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (f32s(got), f32s(want));
    assert_eq!(g.len(), w.len());
    let scale = w
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
        .max(1e-12);
    g.iter().zip(&w).fold(0f64, |m, (&a, &b)| {
        let d = (a as f64 - b as f64).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    }) / scale
}

/// The cosine similarity of two tensors as flat vectors (1 when both are zero).
fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (f32s(a), f32s(b));
    assert_eq!(a.len(), b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(&b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else {
        ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
    }
}

/// The pre-training model of a model fixture, from its configuration and weights.
fn pretraining_model(ck: &Checkpoint) -> (Miram, ParamStore) {
    let cfg = MiramConfig::from_json(&ck.metadata["config"]).expect("config metadata");
    let weights: HashMap<String, Tensor> = ck
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("fixture."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let store = ParamStore::from_tensors(
        prepare_for_model(weights, cfg.in_chans).unwrap(),
        0,
        DType::F32,
        &Device::Cpu,
    );
    let model = Miram::new(&cfg, store.root()).expect("model builds");
    (model, store)
}

/// What one bf16 case measured: the worst relative loss error, the logits' relative
/// deviation (fine-tuning), the worst gradient cosine, and the problems found.
#[derive(Debug, Default)]
struct Measured {
    loss_rel: f64,
    logits_rel: Option<f64>,
    worst_cosine: f64,
    errs: Vec<String>,
}

/// Checks the gradients of `loss` for the trainable parameters of `store` against the
/// fixture's `fixture.grad.{name}`: present, `f32`, finite and with a cosine of at least
/// [`GRAD_COSINE`].
fn check_grads(ck: &Checkpoint, store: &ParamStore, loss: &Tensor, m: &mut Measured) {
    let params = store.trainable();
    let grads = Grads::from_backward(&loss.backward().expect("backward"), &params);
    m.worst_cosine = 1.0;
    for (name, _) in &params {
        let Some(g) = grads.get(name) else {
            m.errs.push(format!("grad {name}: none"));
            continue;
        };
        if g.dtype() != DType::F32 {
            m.errs
                .push(format!("grad {name}: {:?}, not f32", g.dtype()));
        }
        if f32s(g).iter().any(|v| !v.is_finite()) {
            m.errs.push(format!("grad {name}: not finite"));
        }
        let c = cosine(g, &tensor(ck, &format!("fixture.grad.{name}")));
        m.worst_cosine = m.worst_cosine.min(c);
        if c.is_nan() || c < GRAD_COSINE {
            m.errs
                .push(format!("grad {name}: cosine {c:.5} < {GRAD_COSINE}"));
        }
    }
}

fn pretraining_case(path: &Path) -> Measured {
    let ck = fixture(path);
    let (model, store) = pretraining_model(&ck);
    let model = model.with_precision(Precision::Bf16);
    let out = model
        .forward(
            &tensor(&ck, "fixture.input.imgs"),
            &tensor(&ck, "fixture.input.noise"),
        )
        .expect("bf16 forward");
    let mut m = Measured::default();
    for (i, (p, l)) in out.preds.iter().zip(&out.losses).enumerate() {
        if p.dtype() != DType::F32 || l.dtype() != DType::F32 {
            m.errs
                .push(format!("scale {i}: prediction or loss not f32"));
        }
        let r = rel_scalar(l, &tensor(&ck, &format!("fixture.output.loss.{i}")));
        m.loss_rel = m.loss_rel.max(r);
        if r > LOSS_REL {
            m.errs.push(format!("loss.{i}: relative error {r:.2e}"));
        }
    }
    let r = rel_scalar(&out.loss, &tensor(&ck, "fixture.output.loss"));
    m.loss_rel = m.loss_rel.max(r);
    if r > LOSS_REL {
        m.errs.push(format!("loss: relative error {r:.2e}"));
    }
    check_grads(&ck, &store, &out.loss, &mut m);
    m
}

#[derive(serde::Deserialize)]
struct ClassifierFixture {
    img_size: usize,
    patch_size: usize,
    in_chans: usize,
    embed_dim: usize,
    depth: usize,
    num_heads: usize,
    mlp_ratio: f64,
    num_classes: usize,
    task: String,
    class_weights: Option<Vec<f32>>,
}

fn finetune_case(path: &Path) -> Measured {
    let ck = fixture(path);
    let fc: ClassifierFixture = serde_json::from_str(&ck.metadata["config"]).unwrap();
    let cfg = ClassifierConfig {
        encoder: EncoderConfig {
            img_size: fc.img_size,
            patch_size: fc.patch_size,
            in_chans: fc.in_chans,
            embed_dim: fc.embed_dim,
            depth: fc.depth,
            num_heads: fc.num_heads,
            mlp_ratio: fc.mlp_ratio,
        },
        num_classes: fc.num_classes,
        drop_path: 0.0,
    };
    let weights = ck
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("fixture.") && k.as_str() != "pos_embed")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let store = ParamStore::from_tensors(weights, 0, DType::F32, &Device::Cpu);
    let model = VitClassifier::new(&cfg, store.root())
        .unwrap()
        .with_precision(Precision::Bf16);
    let mut m = Measured::default();
    let logits = model.forward(&tensor(&ck, "fixture.input.imgs")).unwrap();
    if logits.dtype() != DType::F32 {
        m.errs
            .push(format!("logits: {:?}, not f32", logits.dtype()));
    }
    let r = rel_max(&logits, &tensor(&ck, "fixture.output.logits"));
    m.logits_rel = Some(r);
    if r > LOSS_REL {
        m.errs.push(format!("logits: relative deviation {r:.2e}"));
    }
    let labels = tensor(&ck, "fixture.input.labels");
    let loss = match fc.task.as_str() {
        "multiclass" => cross_entropy(
            &logits,
            &labels.to_dtype(DType::U32).unwrap(),
            fc.class_weights.as_deref(),
        )
        .unwrap(),
        "multilabel" => bce_with_logits(&logits, &labels).unwrap(),
        t => panic!("{}: unknown task {t}", path.display()),
    };
    let r = rel_scalar(&loss, &tensor(&ck, "fixture.output.loss"));
    m.loss_rel = m.loss_rel.max(r);
    if r > LOSS_REL {
        m.errs.push(format!("loss: relative error {r:.2e}"));
    }
    check_grads(&ck, &store, &loss, &mut m);
    m
}

fn run_all(dir: PathBuf, case: fn(&Path) -> Measured) {
    let mut failures = BTreeMap::new();
    for f in fixture_files(&dir, "safetensors") {
        let m = case(&f);
        let logits = m
            .logits_rel
            .map_or(String::new(), |r| format!(", logits rel {r:.3e}"));
        println!(
            "{}: loss rel {:.3e}{logits}, worst grad cosine {:.6}",
            f.display(),
            m.loss_rel,
            m.worst_cosine
        );
        if !m.errs.is_empty() {
            failures.insert(f.display().to_string(), m.errs);
        }
    }
    assert!(
        failures.is_empty(),
        "bf16 beyond its bounds:\n{failures:#?}"
    );
}

/// Every model fixture at bf16: total and per-scale losses within 1e-2 relative of the f32
/// reference, gradients f32, finite, cosine >= [`GRAD_COSINE`] with the reference.
#[test]
fn bf16_pretraining_stays_within_its_bounds_of_the_f32_reference() {
    run_all(
        miram_test_support::fixture_dir("MIRAM_MODEL_FIXTURES", "model"),
        pretraining_case,
    );
}

/// Every fine-tuning fixture at bf16: logits (largest deviation over the largest logit) and
/// loss within 1e-2 relative of the f32 reference, gradients f32, finite, cosine >=
/// [`GRAD_COSINE`].
#[test]
fn bf16_finetuning_stays_within_its_bounds_of_the_f32_reference() {
    run_all(
        miram_test_support::fixture_dir("MIRAM_FINETUNE_FIXTURES", "finetune"),
        finetune_case,
    );
}

/// Bits of every value of a tensor (exact comparison, NaN included).
fn bits(t: &Tensor) -> Vec<u32> {
    f32s(t).into_iter().map(f32::to_bits).collect()
}

/// At [`Precision::F32`] the forward and backward are those of the default model, bit for
/// bit (nothing is cast), while bf16 computes other numbers (so the precision takes effect).
#[test]
fn f32_precision_is_the_default_model_bit_for_bit() {
    let dir = miram_test_support::fixture_dir("MIRAM_MODEL_FIXTURES", "model");
    for f in fixture_files(&dir, "safetensors") {
        let ck = fixture(&f);
        let (imgs, noise) = (
            tensor(&ck, "fixture.input.imgs"),
            tensor(&ck, "fixture.input.noise"),
        );
        let run = |p: Option<Precision>| {
            let (model, store) = pretraining_model(&ck);
            let model = match p {
                Some(p) => model.with_precision(p),
                None => model,
            };
            let out = model.forward(&imgs, &noise).expect("forward");
            let params = store.trainable();
            let grads = Grads::from_backward(&out.loss.backward().expect("backward"), &params);
            let g: Vec<Vec<u32>> = params
                .iter()
                .map(|(n, _)| bits(grads.get(n).expect("gradient")))
                .collect();
            (bits(&out.loss), bits(&out.latent), g, out.latent.dtype())
        };
        let default = run(None);
        let f32 = run(Some(Precision::F32));
        let bf16 = run(Some(Precision::Bf16));
        assert_eq!(
            f32,
            default,
            "{}: f32 differs from the default",
            f.display()
        );
        assert_eq!(bf16.3, DType::F32, "{}: bf16 latent", f.display());
        assert_ne!(bf16.0, default.0, "{}: bf16 gave the f32 loss", f.display());
    }
}
