//! The run folder's guarantees on tiny configurations: a restart never mixes with the run it
//! replaces, one process at a time, a resume on other data or another configuration is
//! refused with what changed (settings that change nothing may differ), no checkpoint ever
//! holds NaN or inf, nonsensical settings are refused with their key and range, and what a
//! kill leaves behind (temporary files, a truncated newest checkpoint, a cut log line) is
//! cleaned up or skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use miram_core::cbis_ddsm::augment::AugmentConfig;
use miram_core::cbis_ddsm::loader::InMemoryCrops;
use miram_core::checkpoint::{read_checkpoint, write_safetensors};
use miram_core::encoder::ClassifierConfig;
use miram_core::losses::LossOn;
use miram_core::optim::Grads;
use miram_core::rand::Rng;
use miram_core::train::finetune::{build_classifier, FinetuneMode};
use miram_core::train::{
    pretrain, AllReduce, DataConfig, DataIdentity, Event, FinetuneConfig, PretrainConfig, RunDir,
    RunOptions, Silent, StepEvent,
};
use miram_core::{Error, Miram, MiramConfig, ScaleConfig, Tensor};

fn tiny_model() -> MiramConfig {
    MiramConfig {
        img_size: 16,
        patch_size: 4,
        in_chans: 1,
        embed_dim: 16,
        depth: 1,
        num_heads: 2,
        mlp_ratio: 2.0,
        decoder_embed_dim: 8,
        decoder_depth: 1,
        decoder_num_heads: 2,
        mask_ratio: 0.75,
        norm_pix_loss: true,
        scales: vec![
            ScaleConfig::softmax(1, LossOn::Masked),
            ScaleConfig::softmax(2, LossOn::All),
        ],
    }
}

/// 24 images, batch 4 x 2 accumulated: 3 steps per epoch.
fn config(epochs: usize) -> PretrainConfig {
    PretrainConfig {
        epochs,
        warmup_epochs: 1.0,
        batch_size: 4,
        accum_iter: 2,
        min_lr: 0.0,
        augment: AugmentConfig::none(),
        seed: 5,
        workers: 2,
        checkpoint_every: 2,
        keep_last: 3,
        performer_redraw_interval: None,
        ..PretrainConfig::paper(tiny_model())
    }
}

fn images(n: usize, seed: u64) -> Arc<InMemoryCrops> {
    let mut rng = Rng::new(seed);
    Arc::new(InMemoryCrops::from_arrays(rng.uniform_vec(n * 16 * 16, 0.0, 1.0), 16).unwrap())
}

fn opts(resume: bool, stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        resume,
        stop_after,
        ..RunOptions::new(Device::Cpu)
    }
}

fn steps(events: &[Event]) -> Vec<StepEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn logged_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["event"] == "step").then(|| v["step"].as_u64().unwrap())
        })
        .collect()
}

fn checkpoint_steps(run: &RunDir) -> Vec<u64> {
    run.step_checkpoints().into_iter().map(|(s, _)| s).collect()
}

fn all_finite(path: &Path) -> Result<(), String> {
    let ck = read_checkpoint(path, &Device::Cpu).unwrap();
    for (k, t) in &ck.tensors {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(format!("{}: {k} is not finite", path.display()));
        }
    }
    Ok(())
}

#[test]
fn restart_moves_the_previous_run_aside_and_never_mixes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = images(24, 1);
    // A longer finished run: 9 steps, checkpoints 4, 6, 8, 9 (the last 3 kept), a model.
    {
        let run = RunDir::create(dir.path()).unwrap();
        pretrain(
            &config(3),
            data.clone(),
            &run,
            &opts(true, None),
            &mut Silent,
        )
        .unwrap();
        assert_eq!(checkpoint_steps(&run), [6, 8, 9]);
    }
    // A restart with a shorter recipe, interrupted after 2 steps.
    let mut events = Vec::new();
    {
        let run = RunDir::create(dir.path()).unwrap();
        pretrain(
            &config(1),
            data.clone(),
            &run,
            &opts(false, Some(2)),
            &mut |e: &Event| events.push(e.clone()),
        )
        .unwrap();
        assert_eq!(
            checkpoint_steps(&run),
            [2],
            "only the new run's checkpoints"
        );
    }
    assert_eq!(logged_steps(dir.path()), [1, 2], "only the new run's steps");
    assert!(!dir.path().join("model.safetensors").exists());
    let previous: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("previous-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(previous.len(), 1, "{previous:?}");
    let old = &previous[0];
    assert!(old.join("model.safetensors").exists());
    assert!(old.join("checkpoints/step-00000009.safetensors").exists());
    assert_eq!(logged_steps(old), (1..=9).collect::<Vec<_>>());
    let w = warnings(&events);
    assert!(
        w.iter().any(|m| m.contains(&old.display().to_string())),
        "{w:?}"
    );
    // Resuming the interrupted restart continues it (step 3 of 3), not the old run.
    let run = RunDir::create(dir.path()).unwrap();
    let out = pretrain(&config(1), data, &run, &opts(true, None), &mut Silent).unwrap();
    assert_eq!(out.steps, 3);
    assert!(out.model_path.is_some());
    assert_eq!(logged_steps(dir.path()), [1, 2, 3]);
}

#[test]
fn a_run_folder_is_held_by_one_opening_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = RunDir::create(dir.path()).unwrap();
    let err = RunDir::create(dir.path()).unwrap_err();
    match &err {
        Error::RunLocked { pid, .. } => assert_eq!(pid, &std::process::id().to_string()),
        e => panic!("expected a lock error, got {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("in use by process"),
        "{msg}"
    );
    // Another rank of the same run joins without the lock, and never moves the run aside.
    std::fs::write(dir.path().join("log.jsonl"), "{}\n").unwrap();
    let rank1 = RunDir::attach(dir.path()).unwrap();
    assert_eq!(rank1.start_over().unwrap(), None);
    assert!(dir.path().join("log.jsonl").exists());
    drop(rank1);
    // A clone shares the lock; the lock goes with the last of them.
    let clone = first.clone();
    drop(first);
    assert!(RunDir::create(dir.path()).is_err());
    drop(clone);
    // A stale lock file (a killed process's pid) does not block.
    std::fs::write(dir.path().join(".lock"), "999999999\n").unwrap();
    let again = RunDir::create(dir.path()).unwrap();
    let pid = std::fs::read_to_string(dir.path().join(".lock")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    drop(again);
}

#[test]
fn a_run_folder_that_is_a_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("out.txt");
    std::fs::write(&f, "x").unwrap();
    let err = RunDir::create(&f).unwrap_err().to_string();
    assert!(
        err.contains(&f.display().to_string()) && err.contains("not a folder"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "x");
}

#[test]
fn a_resume_on_other_data_is_refused_saying_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let id = |records: usize, fp: &str| DataIdentity {
        root: Some("/data/cbis".into()),
        records: Some(records),
        samples: 0,
        fingerprint: Some(fp.repeat(64)),
    };
    let with = |d: DataIdentity, resume: bool, stop: Option<u64>| RunOptions {
        data: Some(d),
        ..opts(resume, stop)
    };
    pretrain(
        &config(3),
        images(24, 2),
        &run,
        &with(id(10, "a"), true, Some(2)),
        &mut Silent,
    )
    .unwrap();
    let recorded: DataIdentity =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("data.json")).unwrap())
            .unwrap();
    assert_eq!(recorded.samples, 24);
    assert_eq!(recorded.records, Some(10));

    // A resume that must be refused, with its message.
    let refused = |n: usize, identity: DataIdentity| -> String {
        pretrain(
            &config(3),
            images(n, 2),
            &run,
            &with(identity, true, None),
            &mut Silent,
        )
        .unwrap_err()
        .to_string()
    };
    // Fewer images.
    let err = refused(16, id(10, "a"));
    assert!(
        err.contains("other data") && err.contains("training samples: 24 -> 16"),
        "{err}"
    );
    assert!(err.contains("--restart"), "{err}");
    // Other records behind the same number of samples.
    let err = refused(24, id(11, "b"));
    assert!(
        err.contains("dataset records: 10 -> 11") && err.contains("aaaaaaaaaaaa -> bbbbbbbbbbbb"),
        "{err}"
    );
    // The same data moved to another folder resumes, with a warning.
    let mut moved = id(10, "a");
    moved.root = Some("/elsewhere".into());
    let mut events = Vec::new();
    let out = pretrain(
        &config(3),
        images(24, 2),
        &run,
        &with(moved, true, None),
        &mut |e: &Event| events.push(e.clone()),
    )
    .unwrap();
    assert_eq!(out.steps, 9);
    assert!(
        warnings(&events).iter().any(|w| w.contains("/elsewhere")),
        "{events:?}"
    );
}

#[test]
fn a_checkpoint_beyond_the_schedule_is_an_error_not_a_silent_success() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    pretrain(
        &config(3),
        images(24, 3),
        &run,
        &opts(true, Some(8)),
        &mut Silent,
    )
    .unwrap();
    // A checkpoint written before runs recorded their data (no `data` metadata).
    let (_, path) = run.latest_checkpoint().unwrap();
    let ck = read_checkpoint(&path, &Device::Cpu).unwrap();
    let mut meta = ck.metadata.clone();
    meta.remove("data");
    let tensors: BTreeMap<String, Tensor> = ck.tensors.into_iter().collect();
    write_safetensors(&path, &tensors, &meta).unwrap();
    // 16 images: 2 steps per epoch, 6 in all; the checkpoint is at step 8.
    let err = pretrain(
        &config(3),
        images(16, 3),
        &run,
        &opts(true, None),
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("step 8") && err.contains("beyond the 6 steps") && err.contains("--restart"),
        "{err}"
    );
}

#[test]
fn a_resume_lists_the_changed_keys_and_ignores_settings_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let data = images(24, 4);
    let cfg = config(3);
    pretrain(&cfg, data.clone(), &run, &opts(true, Some(2)), &mut Silent).unwrap();
    let mut other = cfg.clone();
    other.blr = 1e-3;
    other.model.mask_ratio = 0.5;
    let err = pretrain(&other, data.clone(), &run, &opts(true, None), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another configuration")
            && err.contains("blr: 0.00015 -> 0.001")
            && err.contains("model.mask_ratio: 0.75 -> 0.5"),
        "{err}"
    );
    // Loader threads, checkpoint interval and how many are kept change no loss.
    let mut free = cfg.clone();
    free.workers = 0;
    free.keep_last = 5;
    free.checkpoint_every = 3;
    let out = pretrain(&free, data, &run, &opts(true, Some(4)), &mut Silent).unwrap();
    assert_eq!(out.steps, 4);
}

#[test]
fn no_checkpoint_ever_holds_a_non_finite_value() {
    // A loss weight so large that the squared gradients overflow f32: the loss stays
    // finite, the second moments would become inf.
    let mut cfg = config(3);
    cfg.model.scales[1].weight = 1e30;
    cfg.checkpoint_every = 1;
    cfg.keep_last = 100;
    cfg.clip_grad = None;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let err = pretrain(&cfg, images(24, 5), &run, &opts(true, None), &mut Silent).unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::NonFiniteState { step, tensor, .. } => {
            assert_eq!(*step, 1, "{msg}");
            assert!(tensor.starts_with("exp_avg_sq."), "{msg}");
        }
        Error::NonFiniteGradient { step, .. } => assert_eq!(*step, 1, "{msg}"),
        e => panic!("expected a non-finite state or gradient, got {e}"),
    }
    assert!(msg.contains("last good checkpoint is none"), "{msg}");
    for (_, p) in run.step_checkpoints() {
        all_finite(&p).unwrap();
    }
    assert!(run.step_checkpoints().is_empty());
    assert!(!dir.path().join("model.safetensors").exists());
}

/// One process whose "all-reduce" returns an infinite gradient at one step (what an
/// overflowed reduction or a faulty peer hands back).
struct PoisonAt {
    step: u64,
    calls: std::sync::atomic::AtomicU64,
}

impl AllReduce for PoisonAt {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&self, grads: &mut Grads) -> miram_core::Result<()> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.step {
            for (name, g) in grads.iter_mut() {
                if name == "blocks.0.mlp.fc1.weight" {
                    *g = (g.ones_like()? * f64::INFINITY)?;
                }
            }
        }
        Ok(())
    }
    fn mean_scalar(&self, value: f64) -> miram_core::Result<f64> {
        Ok(value)
    }
}

#[test]
fn a_non_finite_gradient_is_never_applied() {
    let mut cfg = config(3);
    cfg.checkpoint_every = 1;
    cfg.keep_last = 100;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let o = RunOptions {
        all_reduce: Arc::new(PoisonAt {
            step: 3,
            calls: Default::default(),
        }),
        ..opts(true, None)
    };
    let err = pretrain(&cfg, images(24, 6), &run, &o, &mut Silent).unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::NonFiniteGradient {
            step,
            parameter,
            last_checkpoint,
        } => {
            assert_eq!(*step, 3, "{msg}");
            assert_eq!(parameter, "blocks.0.mlp.fc1.weight", "{msg}");
            assert_eq!(
                last_checkpoint,
                &run.step_checkpoint(2).display().to_string()
            );
        }
        e => panic!("expected a non-finite gradient, got {e}"),
    }
    assert!(msg.contains("not applied"), "{msg}");
    assert_eq!(checkpoint_steps(&run), [1, 2]);
    for (_, p) in run.step_checkpoints() {
        all_finite(&p).unwrap();
    }
    // The run resumes from its last good checkpoint once the fault is gone.
    let out = pretrain(&cfg, images(24, 6), &run, &opts(true, None), &mut Silent).unwrap();
    assert_eq!(out.steps, 9);
}

#[test]
fn gradients_and_optimiser_state_name_the_first_non_finite_tensor() {
    use miram_core::optim::{AdamW, AdamWConfig, Grads};
    let dev = Device::Cpu;
    let a = candle_core::Var::new(&[1f32, 2.0], &dev).unwrap();
    let b = candle_core::Var::new(&[3f32, 4.0], &dev).unwrap();
    let mut g = Grads::new();
    g.insert("a", Tensor::new(&[0.5f32, 0.5], &dev).unwrap());
    g.insert("b", Tensor::new(&[0.5f32, f32::INFINITY], &dev).unwrap());
    assert_eq!(g.first_non_finite().unwrap().as_deref(), Some("b"));
    let mut opt = AdamW::new(
        vec![("a".into(), a), ("b".into(), b)],
        AdamWConfig::mae_pretrain(0.1),
    )
    .unwrap();
    let mut big = Grads::new();
    big.insert("a", Tensor::new(&[1e20f32, 1.0], &dev).unwrap());
    assert_eq!(big.first_non_finite().unwrap(), None);
    opt.step(&big).unwrap();
    assert_eq!(
        opt.first_non_finite().unwrap().as_deref(),
        Some("exp_avg_sq.a")
    );
    // The in-place scan (contiguous f32 on the CPU) and the reduction (any other tensor:
    // f64, a strided view) name the same tensors.
    let f32_nan = Tensor::new(&[[1f32, f32::NAN], [2.0, 3.0]], &dev).unwrap();
    let cases = [
        ("f32", f32_nan.clone()),
        ("f64", f32_nan.to_dtype(candle_core::DType::F64).unwrap()),
        ("strided", f32_nan.t().unwrap()),
    ];
    for (what, bad) in cases {
        let finite = Tensor::ones_like(&bad).unwrap();
        let tensors = [("ok".to_string(), finite), ("bad".to_string(), bad)];
        let found = miram_core::checkpoint::first_non_finite(tensors.iter().map(|(k, t)| (k, t)));
        assert_eq!(found.unwrap().as_deref(), Some("bad"), "{what}");
        let found =
            miram_core::checkpoint::first_non_finite(tensors[..1].iter().map(|(k, t)| (k, t)));
        assert_eq!(found.unwrap(), None, "{what}");
    }
}

#[test]
fn init_weights_holding_nan_are_refused_naming_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.safetensors");
    let m = Miram::init(&tiny_model(), 0, &Device::Cpu).unwrap();
    let mut t = m.state_dict();
    let w = t["blocks.0.mlp.fc1.weight"].clone();
    let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
    t.insert("blocks.0.mlp.fc1.weight".into(), nan);
    write_safetensors(&path, &t, &BTreeMap::new()).unwrap();
    let cfg = ClassifierConfig {
        encoder: tiny_model().encoder(),
        num_classes: 2,
        drop_path: 0.0,
    };
    let err = match build_classifier(&cfg, Some(&path), FinetuneMode::Full, 0, &Device::Cpu) {
        Ok(_) => panic!("weights holding NaN were loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&path.display().to_string()) && err.contains("blocks.0.mlp.fc1.weight"),
        "{err}"
    );
}

/// A setting changed, and what the error must say.
type Case<T> = (&'static str, Box<dyn Fn(&mut T)>);

#[test]
fn nonsensical_settings_are_refused_with_their_key_and_range() {
    let base = config(3);
    let cases: Vec<Case<PretrainConfig>> = vec![
        ("blr = -1: must be > 0", Box::new(|c| c.blr = -1.0)),
        ("lr = NaN: must be > 0", Box::new(|c| c.lr = Some(f64::NAN))),
        (
            "betas.0 = 1: must be in [0, 1)",
            Box::new(|c| c.betas.0 = 1.0),
        ),
        (
            "betas.1 = -0.1: must be in [0, 1)",
            Box::new(|c| c.betas.1 = -0.1),
        ),
        (
            "weight_decay = -0.05: must be in [0, 1]",
            Box::new(|c| c.weight_decay = -0.05),
        ),
        (
            "min_lr = 1: must be <= the peak learning rate",
            Box::new(|c| c.min_lr = 1.0),
        ),
        (
            "model.mask_ratio = 0: must be in (0, 1)",
            Box::new(|c| c.model.mask_ratio = 0.0),
        ),
        (
            "model.mask_ratio = 1: must be in (0, 1)",
            Box::new(|c| c.model.mask_ratio = 1.0),
        ),
        (
            "model.mask_ratio = 0.99: keeps 0 of 16",
            Box::new(|c| c.model.mask_ratio = 0.99),
        ),
        (
            "model.scales[1].weight = -1: must be >= 0",
            Box::new(|c| c.model.scales[1].weight = -1.0),
        ),
        (
            "batch_size = 0: must be in [1, ",
            Box::new(|c| c.batch_size = 0),
        ),
        ("epochs = 0: must be in [1, ", Box::new(|c| c.epochs = 0)),
        (
            "accum_iter = 0: must be in [1, ",
            Box::new(|c| c.accum_iter = 0),
        ),
        (
            "warmup_epochs = inf: must be in [0, 3]",
            Box::new(|c| c.warmup_epochs = f64::INFINITY),
        ),
        (
            "clip_grad = 0: must be > 0",
            Box::new(|c| c.clip_grad = Some(0.0)),
        ),
        (
            "checkpoint_every = 0: must be at least 1",
            Box::new(|c| c.checkpoint_every = 0),
        ),
        (
            "keep_last = 0: must be in [1, ",
            Box::new(|c| c.keep_last = 0),
        ),
        (
            "workers = 100000: must be in [0, 256]",
            Box::new(|c| c.workers = 100_000),
        ),
        (
            "performer_redraw_interval = 0: must be at least 1",
            Box::new(|c| c.performer_redraw_interval = Some(0)),
        ),
    ];
    for (want, change) in &cases {
        let mut c = base.clone();
        change(&mut c);
        let err = c.validate().expect_err(want);
        assert!(matches!(err, Error::InvalidSettings { .. }), "{err}");
        assert!(err.to_string().contains(want), "`{want}` not in: {err}");
        // The engine refuses before any work.
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        assert!(pretrain(&c, images(24, 7), &run, &opts(true, None), &mut Silent).is_err());
        assert!(run.step_checkpoints().is_empty());
    }
    // Stopping after no step at all is no run.
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let err = pretrain(
        &base,
        images(24, 7),
        &run,
        &opts(true, Some(0)),
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stop_after = 0: must be at least 1"), "{err}");
    // Every key at fault, under the prefix the command line gives.
    let mut c = base.clone();
    c.blr = -1.0;
    c.betas = (2.0, 0.95);
    let err = c.validate().unwrap_err().under("pretrain").to_string();
    assert!(
        err.contains("pretrain.blr = -1: must be > 0")
            && err.contains("pretrain.betas.0 = 2: must be in [0, 1)"),
        "{err}"
    );

    let ft = FinetuneConfig::paper(
        tiny_model().encoder(),
        miram_core::cbis_ddsm::tasks::Task::PathologyBinary,
    );
    ft.validate().unwrap();
    let cases: Vec<Case<FinetuneConfig>> = vec![
        (
            "lr = -0.00001: must be > 0",
            Box::new(|c| c.lr = Some(-1e-5)),
        ),
        (
            "drop_path = 1: must be in [0, 1)",
            Box::new(|c| c.drop_path = 1.0),
        ),
        (
            "layer_decay = 0: must be in (0, 1]",
            Box::new(|c| c.layer_decay = Some(0.0)),
        ),
        (
            "weight_decay = NaN: must be in [0, 1]",
            Box::new(|c| c.weight_decay = f64::NAN),
        ),
        (
            "min_lr = 0.001: must be <= the peak learning rate",
            Box::new(|c| c.min_lr = 1e-3),
        ),
        (
            "bootstrap_resamples = 1000000000: must be in [0, 1000000]",
            Box::new(|c| c.bootstrap_resamples = 1_000_000_000),
        ),
        (
            "split.val_fraction = 1: must be in [0, 1)",
            Box::new(|c| c.split.val_fraction = 1.0),
        ),
        ("epochs = 0: must be in [1, ", Box::new(|c| c.epochs = 0)),
    ];
    for (want, change) in &cases {
        let mut c = ft.clone();
        change(&mut c);
        let err = c.validate().expect_err(want).to_string();
        assert!(err.contains(want), "`{want}` not in: {err}");
    }

    let mut d = DataConfig::new("/data");
    d.validate().unwrap();
    d.background_per_image = 1_000_000;
    d.crop_margin = -1.0;
    let err = d.validate().unwrap_err().to_string();
    assert!(
        err.contains("background_per_image = 1000000: must be in [0, 64]")
            && err.contains("crop_margin = -1: must be in [0, 4]"),
        "{err}"
    );
}

#[test]
fn a_new_run_without_a_checkpoint_sets_the_earlier_outputs_aside() {
    // A run killed before its first checkpoint left logged steps; another run's final model
    // is there too (its checkpoints deleted).
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let old_log = "{\"event\":\"step\",\"step\":1}\n{\"event\":\"step\",\"step\":2}\n";
    std::fs::write(dir.path().join("log.jsonl"), old_log).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), "old model").unwrap();
    let mut events = Vec::new();
    let mut cfg = config(1);
    cfg.checkpoint_every = 1;
    pretrain(
        &cfg,
        images(24, 9),
        &run,
        &opts(true, Some(1)),
        &mut |e: &Event| events.push(e.clone()),
    )
    .unwrap();
    assert_eq!(logged_steps(dir.path()), [1]);
    let w = warnings(&events);
    let prev: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("previous-")
        })
        .collect();
    assert_eq!(prev.len(), 1, "{w:?}");
    assert_eq!(
        std::fs::read_to_string(prev[0].join("log.jsonl")).unwrap(),
        old_log
    );
    assert_eq!(
        std::fs::read_to_string(prev[0].join("model.safetensors")).unwrap(),
        "old model"
    );
    assert!(
        w.iter().any(|m| m.contains(&prev[0].display().to_string())),
        "{w:?}"
    );
}

#[test]
fn temporary_files_of_a_killed_write_are_removed_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoints");
    std::fs::create_dir_all(&ck).unwrap();
    let stale = [
        ck.join(".step-00000002.safetensors.tmp-4242"),
        dir.path().join(".config.json.tmp-17"),
    ];
    let kept = [
        dir.path().join(".hidden"),
        dir.path().join("notes.tmp-1"),
        ck.join(".x.tmp-abc"),
    ];
    for p in stale.iter().chain(&kept) {
        std::fs::write(p, "partial").unwrap();
    }
    let run = RunDir::create(dir.path()).unwrap();
    for p in &stale {
        assert!(!p.exists(), "{} left", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} removed", p.display());
    }
    assert_eq!(run.removed_temp_files().len(), 2);
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    let data = images(24, 8);
    let cfg = config(3);
    let straight = tempfile::tempdir().unwrap();
    let mut a = Vec::new();
    pretrain(
        &cfg,
        data.clone(),
        &RunDir::create(straight.path()).unwrap(),
        &opts(true, None),
        &mut |e: &Event| a.push(e.clone()),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    pretrain(&cfg, data.clone(), &run, &opts(true, Some(4)), &mut Silent).unwrap();
    assert_eq!(checkpoint_steps(&run), [2, 4]);
    let newest = run.step_checkpoint(4);
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    // A kill mid-write also cut the log's last line.
    let mut log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    log.push_str("{\"event\":\"step\",\"phase\":\"pretrain\",\"st");
    std::fs::write(dir.path().join("log.jsonl"), log).unwrap();

    let mut b = Vec::new();
    let out = pretrain(&cfg, data, &run, &opts(true, None), &mut |e: &Event| {
        b.push(e.clone())
    })
    .unwrap();
    assert_eq!(out.steps, 9);
    let w = warnings(&b);
    assert!(
        w.iter()
            .any(|m| m.contains(&newest.display().to_string()) && m.contains("step-00000002")),
        "{w:?}"
    );
    assert!(b
        .iter()
        .any(|e| matches!(e, Event::Start { start_step: 2, .. })));
    // The bad file is kept aside, not deleted.
    assert!(Path::new(&format!("{}.corrupt", newest.display())).exists());
    // Every log line parses; each step once; the losses are the uninterrupted run's.
    assert_eq!(logged_steps(dir.path()), (1..=9).collect::<Vec<_>>());
    let resumed = steps(&b);
    let straight_steps = steps(&a);
    for s in &resumed {
        let t = &straight_steps[(s.step - 1) as usize];
        assert_eq!(s.loss.to_bits(), t.loss.to_bits(), "step {}", s.step);
    }
    // No intact checkpoint at all: refused, naming every file.
    for (_, p) in run.step_checkpoints() {
        std::fs::write(&p, b"not a checkpoint").unwrap();
    }
    let err = pretrain(
        &config(4),
        images(24, 8),
        &run,
        &opts(true, None),
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no intact checkpoint") && err.contains("--restart"),
        "{err}"
    );
}
