//! The optimiser's CPU fast paths against the composed candle ops and independent references:
//! the one-pass in-place AdamW step is bit-identical to `AdamW::step_composed`, the global
//! norm equals an `f64` sum computed here (and is the same on any number of threads), the
//! in-place accumulation and scaling equal fresh sums, and nothing a caller holds (a state
//! snapshot, the tensors given to `load_state`, backward's gradients, a clone) is changed by a
//! later in-place update.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor, Var};
use miram_core::optim::{AdamW, AdamWConfig, Grads, ParamSpec};
use miram_core::rand::Rng;
use miram_core::Error;

/// Shapes of odd sizes, one larger than a kernel chunk (several rayon tasks).
const SHAPES: [&[usize]; 5] = [&[7], &[33, 5], &[1000], &[3, 4, 5], &[70_001]];

fn normal(rng: &mut Rng, dims: &[usize], std: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(rng.normal_vec(n, 0.0, std), dims, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Parameter specs over fresh variables with the given initial values (with and without
/// weight decay, with and without a learning-rate scale), and the variables.
fn specs(init: &[Tensor]) -> (Vec<ParamSpec>, Vec<Var>) {
    let specs: Vec<ParamSpec> = init
        .iter()
        .enumerate()
        .map(|(i, t)| ParamSpec {
            name: format!("p{i}"),
            var: Var::from_tensor(&t.copy().unwrap()).unwrap(),
            weight_decay: if i % 2 == 0 { 0.05 } else { 0.0 },
            lr_scale: if i % 3 == 1 { 0.37 } else { 1.0 },
        })
        .collect();
    let vars = specs.iter().map(|s| s.var.clone()).collect();
    (specs, vars)
}

/// Random gradients for `SHAPES`: some tiny (the moments fall towards eps), some `f64`, one
/// strided (the last two are converted before the kernel); `p3` has none every other step.
fn grads_at(rng: &mut Rng, step: usize) -> Grads {
    let mut grads = Grads::new();
    for (i, d) in SHAPES.iter().enumerate() {
        if i == 3 && step % 2 == 1 {
            continue;
        }
        let std = if step == 3 { 1e-20 } else { 1.0 };
        let g = match (i, step % 2) {
            (1, 0) => normal(rng, &[5, 33], std).t().unwrap(),
            (2, 1) => normal(rng, d, std).to_dtype(DType::F64).unwrap(),
            _ => normal(rng, d, std),
        };
        grads.insert(format!("p{i}"), g);
    }
    grads
}

/// Tolerance: none. The kernel rounds every operation as the composed ops do, so parameters
/// and moments agree bit for bit after several steps.
#[test]
fn the_in_place_step_is_bit_identical_to_the_composed_step() {
    let mut rng = Rng::new(7);
    let init: Vec<Tensor> = SHAPES.iter().map(|d| normal(&mut rng, d, 0.5)).collect();
    let cfg = AdamWConfig::mae_pretrain(1e-2);
    let (fs, fused_vars) = specs(&init);
    let (cs, composed_vars) = specs(&init);
    let mut fused = AdamW::with_params(fs, cfg).unwrap();
    let mut composed = AdamW::with_params(cs, cfg).unwrap();
    for step in 0..6 {
        let grads = grads_at(&mut rng, step);
        let lr = 1e-2 * (1.0 + step as f64) / 6.0;
        fused.set_lr(lr);
        composed.set_lr(lr);
        fused.step(&grads).unwrap();
        composed.step_composed(&grads).unwrap();
    }
    for (i, (f, c)) in fused_vars.iter().zip(&composed_vars).enumerate() {
        assert_eq!(bits(f.as_tensor()), bits(c.as_tensor()), "parameter p{i}");
        assert_ne!(
            bits(f.as_tensor()),
            bits(&init[i]),
            "parameter p{i} did not move"
        );
    }
    let (fs, _) = fused.state();
    let (cs, _) = composed.state();
    assert_eq!(fs.len(), 2 * SHAPES.len());
    for (k, t) in &fs {
        assert_eq!(bits(t), bits(&cs[k]), "{k}");
    }
}

/// The AdamW update as PyTorch writes it (`torch.optim.AdamW`, foreach=False), in `f64`,
/// for one parameter: the in-place step follows it to `f32` rounding.
#[test]
fn the_in_place_step_follows_pytorchs_formula() {
    let mut rng = Rng::new(11);
    let p0 = rng.normal_vec(1000, 0.0, 1.0);
    let var = Var::from_vec(p0.clone(), 1000, &Device::Cpu).unwrap();
    let cfg = AdamWConfig::mae_pretrain(1e-3);
    let mut opt = AdamW::new(vec![("w.weight".into(), var.clone())], cfg).unwrap();
    // A rank-1 weight: not decayed by MAE's rule.
    let (mut p, mut m, mut v) = (
        p0.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        vec![0f64; 1000],
        vec![0f64; 1000],
    );
    for t in 1..=4 {
        let g = rng.normal_vec(1000, 0.0, 1.0);
        let mut grads = Grads::new();
        grads.insert("w.weight", Tensor::new(g.as_slice(), &Device::Cpu).unwrap());
        opt.step(&grads).unwrap();
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for i in 0..1000 {
            let g = f64::from(g[i]);
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            p[i] -= cfg.lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + cfg.eps);
        }
    }
    let got = values(var.as_tensor());
    for (i, (&a, &b)) in got.iter().zip(&p).enumerate() {
        assert!(
            (f64::from(a) - b).abs() <= 1e-6 * (1.0 + b.abs()),
            "element {i}: {a} vs {b}"
        );
    }
}

/// The global norm against an `f64` sum of squares computed here, over CPU f32 gradients
/// (read in place, several chunks for the largest), an f64 one and a strided one (composed
/// path): relative tolerance 1e-12 (only the order of the additions differs). The value is the
/// same, bit for bit, on one thread and on four.
#[test]
fn the_global_norm_equals_an_f64_reference_on_any_number_of_threads() {
    let mut rng = Rng::new(3);
    let mut grads = Grads::new();
    let mut reference = 0f64;
    for (i, d) in SHAPES.iter().enumerate() {
        let g = normal(&mut rng, d, 1.0 + i as f32);
        reference += values(&g)
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
        grads.insert(format!("p{i}"), g);
    }
    let g64 = normal(&mut rng, &[9], 2.0).to_dtype(DType::F64).unwrap();
    reference += g64
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .map(|x| x * x)
        .sum::<f64>();
    grads.insert("f64", g64);
    let strided = normal(&mut rng, &[4, 6], 1.0).t().unwrap();
    reference += values(&strided.contiguous().unwrap())
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>();
    grads.insert("strided", strided);
    let reference = reference.sqrt();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| grads.global_norm().unwrap())
    };
    let (one, four) = (on(1), on(4));
    assert_eq!(one.to_bits(), four.to_bits(), "{one} vs {four}");
    assert!(
        (one - reference).abs() <= 1e-12 * reference,
        "{one} vs {reference}"
    );
    // Clipping scales by max_norm / (norm + 1e-6) and returns the norm before clipping.
    let mut clipped = grads.clone();
    let before = clipped.clip_global_norm(1.0).unwrap();
    assert_eq!(before.to_bits(), one.to_bits());
    let after = clipped.global_norm().unwrap();
    assert!(
        (after - reference / (reference + 1e-6)).abs() < 1e-6,
        "{after}"
    );
    // Under the limit nothing changes.
    let mut unclipped = grads.clone();
    unclipped.clip_global_norm(2.0 * reference).unwrap();
    for (k, g) in grads.iter().filter(|(_, g)| g.dtype() == DType::F32) {
        assert_eq!(
            bits(&g.contiguous().unwrap()),
            bits(&unclipped.get(k).unwrap().contiguous().unwrap()),
            "{k}"
        );
    }
}

/// Accumulating three micro-batches and scaling by 1/3 (a new tensor for the first sum, in
/// place from then on) equals `(a + b + c) * (1/3)` computed with candle's ops, bit for bit,
/// and never writes into a micro-batch's gradients, into backward's, or into a clone.
#[test]
fn accumulation_and_scaling_in_place_equal_fresh_sums_and_write_nothing_shared() {
    let mut rng = Rng::new(5);
    let micro: Vec<Grads> = (0..3)
        .map(|_| {
            let mut g = Grads::new();
            for (i, d) in SHAPES.iter().enumerate() {
                g.insert(format!("p{i}"), normal(&mut rng, d, 1.0));
            }
            g
        })
        .collect();
    let kept: Vec<BTreeMap<String, Vec<u32>>> = micro
        .iter()
        .map(|g| g.iter().map(|(k, t)| (k.clone(), bits(t))).collect())
        .collect();
    let mut acc = Grads::new();
    let mut snapshot = None;
    for (i, g) in micro.iter().enumerate() {
        acc.accumulate(g).unwrap();
        if i == 1 {
            snapshot = Some(acc.clone());
        }
    }
    let snapshot = snapshot.unwrap();
    acc.scale(1.0 / 3.0).unwrap();
    for (k, t) in acc.iter() {
        let a = micro[0].get(k).unwrap();
        let b = micro[1].get(k).unwrap();
        let c = micro[2].get(k).unwrap();
        let expected = (((a + b).unwrap() + c).unwrap() * (1.0 / 3.0)).unwrap();
        assert_eq!(bits(t), bits(&expected), "{k}");
        let two = (a + b).unwrap();
        assert_eq!(bits(snapshot.get(k).unwrap()), bits(&two), "clone of {k}");
    }
    for (g, kept) in micro.iter().zip(&kept) {
        for (k, t) in g.iter() {
            assert_eq!(&bits(t), &kept[k], "micro-batch gradient {k} was written");
        }
    }
    // A set accumulated with a clone of itself doubles.
    let mut twice = snapshot.clone();
    twice.accumulate(&snapshot).unwrap();
    twice.accumulate(&Grads::new()).unwrap();
    for (k, t) in twice.iter() {
        let s = snapshot.get(k).unwrap();
        assert_eq!(bits(t), bits(&(s + s).unwrap()), "{k}");
    }

    // Backward's gradients are the caller's too: scaling a set made from them leaves them.
    let x = Var::from_vec(rng.normal_vec(40, 0.0, 1.0), 40, &Device::Cpu).unwrap();
    let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
    let store = loss.backward().unwrap();
    let params = vec![("x".to_string(), x.clone())];
    let from_store = bits(store.get(x.as_tensor()).unwrap());
    let mut g = Grads::from_backward(&store, &params);
    g.scale(0.5).unwrap();
    g.scale(0.5).unwrap();
    g.clip_global_norm(1e-3).unwrap();
    assert_eq!(bits(store.get(x.as_tensor()).unwrap()), from_store);
}

/// A shape mismatch is refused, naming the parameter and both shapes, before anything
/// changes: the step (no parameter updated, no step counted) and the accumulation (no
/// gradient added or lost).
#[test]
fn a_gradient_of_the_wrong_shape_changes_nothing() {
    let dev = Device::Cpu;
    let a = Var::new(&[1f32, 2.0], &dev).unwrap();
    let b = Var::new(&[3f32, 4.0, 5.0], &dev).unwrap();
    let mut opt = AdamW::new(
        vec![("a".into(), a.clone()), ("b".into(), b.clone())],
        AdamWConfig::mae_pretrain(0.1),
    )
    .unwrap();
    let mut bad = Grads::new();
    bad.insert("a", Tensor::new(&[0.5f32, 0.5], &dev).unwrap());
    bad.insert("b", Tensor::new(&[0.5f32, 0.5], &dev).unwrap());
    let err = opt.step(&bad).unwrap_err();
    match &err {
        Error::GradientShape {
            parameter,
            gradient,
            expected,
        } => {
            assert_eq!(parameter, "b");
            assert_eq!(gradient, &[2]);
            assert_eq!(expected, &[3]);
        }
        e => panic!("expected a gradient shape error, got {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains('b') && msg.contains("[2]") && msg.contains("[3]"),
        "{msg}"
    );
    assert_eq!(values(a.as_tensor()), [1.0, 2.0]);
    assert_eq!(opt.step_count(), 0);
    let (state, _) = opt.state();
    assert!(state.values().all(|t| values(t).iter().all(|&x| x == 0.0)));

    let mut acc = Grads::new();
    acc.insert("a", Tensor::new(&[1f32, 1.0], &dev).unwrap());
    acc.insert("b", Tensor::new(&[1f32, 1.0, 1.0], &dev).unwrap());
    let err = acc.accumulate(&bad).unwrap_err();
    assert!(
        matches!(&err, Error::GradientShape { parameter, .. } if parameter == "b"),
        "{err}"
    );
    assert_eq!(values(acc.get("a").unwrap()), [1.0, 1.0]);
    assert_eq!(values(acc.get("b").unwrap()), [1.0, 1.0, 1.0]);
}

/// The moments are updated in place on the CPU, so what `state` returns must be a copy: a
/// snapshot taken for a checkpoint keeps its values after later steps. So must the tensors
/// given to `load_state` (the caller's, possibly a checkpoint's buffer), and a clone of the
/// optimiser must keep its own moments.
#[test]
fn state_snapshots_loaded_tensors_and_clones_are_not_changed_by_later_steps() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(9);
    let w = Var::from_vec(rng.normal_vec(12, 0.0, 1.0), (3, 4), &dev).unwrap();
    let mut opt = AdamW::new(
        vec![("w.weight".into(), w.clone())],
        AdamWConfig::mae_pretrain(1e-2),
    )
    .unwrap();
    let grads = |rng: &mut Rng| {
        let mut g = Grads::new();
        g.insert("w.weight", normal(rng, &[3, 4], 1.0));
        g
    };
    opt.step(&grads(&mut rng)).unwrap();
    let (state, meta) = opt.state();
    let kept: BTreeMap<String, Vec<u32>> =
        state.iter().map(|(k, t)| (k.clone(), bits(t))).collect();
    opt.step(&grads(&mut rng)).unwrap();
    for (k, t) in &state {
        assert_eq!(bits(t), kept[k], "state snapshot {k} changed");
    }
    let (now, _) = opt.state();
    assert_ne!(bits(&now["exp_avg.w.weight"]), kept["exp_avg.w.weight"]);
    // A clone keeps the moments it was cloned with while the original steps on.
    let clone = opt.clone();
    let kept: BTreeMap<String, Vec<u32>> = now.iter().map(|(k, t)| (k.clone(), bits(t))).collect();
    opt.step(&grads(&mut rng)).unwrap();
    let (cloned, _) = clone.state();
    for (k, t) in &cloned {
        assert_eq!(bits(t), kept[k], "the clone's {k} changed");
    }

    // load_state copies: stepping after it leaves the given tensors as they were, views too.
    let big = normal(&mut rng, &[2, 12], 1.0).abs().unwrap();
    let given: HashMap<String, Tensor> = [
        (
            "exp_avg.w.weight".to_string(),
            big.get(0).unwrap().reshape((3, 4)).unwrap(),
        ),
        (
            "exp_avg_sq.w.weight".to_string(),
            big.get(1).unwrap().reshape((3, 4)).unwrap(),
        ),
    ]
    .into();
    let big_bits = bits(&big);
    let mut loaded = AdamW::new(
        vec![("w.weight".into(), w.clone())],
        AdamWConfig::mae_pretrain(1e-2),
    )
    .unwrap();
    loaded.load_state(&given, &meta).unwrap();
    assert_eq!(loaded.step_count(), 1);
    loaded.step(&grads(&mut rng)).unwrap();
    assert_eq!(bits(&big), big_bits, "load_state's tensors were written");
}

/// The in-place step writes the variable's own storage: the graph built before the step is
/// not extended, a forward after it reads the new values, and backward still works.
#[test]
fn the_next_forward_sees_the_in_place_update() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(13);
    let w = Var::from_vec(rng.normal_vec(6, 0.0, 1.0), (2, 3), &dev).unwrap();
    let x = Tensor::from_vec(rng.normal_vec(3, 0.0, 1.0), (3, 1), &dev).unwrap();
    let params = vec![("w.weight".to_string(), w.clone())];
    let mut opt = AdamW::new(params.clone(), AdamWConfig::mae_pretrain(0.1)).unwrap();
    let before = values(w.as_tensor());
    for _ in 0..2 {
        let y = w.as_tensor().matmul(&x).unwrap().sum_all().unwrap();
        let grads = Grads::from_backward(&y.backward().unwrap(), &params);
        assert_eq!(grads.len(), 1);
        opt.step(&grads).unwrap();
        assert!(w.as_tensor().is_variable());
        let now = values(w.as_tensor());
        let y2 = w.as_tensor().matmul(&x).unwrap().sum_all().unwrap();
        let xs = values(&x);
        let expected: f32 = (0..2)
            .map(|r| (0..3).map(|c| now[r * 3 + c] * xs[c]).sum::<f32>())
            .sum();
        let got = y2.to_scalar::<f32>().unwrap();
        assert!(
            (got - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
            "{got} vs {expected}"
        );
    }
    assert_ne!(values(w.as_tensor()), before);
}
