//! The training engine's contracts on tiny configurations: the learning-rate schedule is
//! MAE's at every step, a resumed run continues with exactly the losses of an uninterrupted
//! one, a non-finite loss stops the run and leaves the previous checkpoint loadable, and a
//! corrupt or mismatched checkpoint is refused with the names and shapes listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::Device;
use miram_core::cbis_ddsm::augment::AugmentConfig;
use miram_core::cbis_ddsm::loader::InMemoryCrops;
use miram_core::losses::LossOn;
use miram_core::nn::{AttentionConfig, PerformerConfig};
use miram_core::rand::Rng;
use miram_core::train::{pretrain, Event, PretrainConfig, RunDir, RunOptions, StepEvent};
use miram_core::{Error, Miram, MiramConfig, ScaleConfig};

/// A small MIRAM: 16 px, patch 4, with a Performer decoder at 2x (its features are redrawn
/// on a schedule, so resuming must restore them too).
fn tiny_model() -> MiramConfig {
    MiramConfig {
        img_size: 16,
        patch_size: 4,
        in_chans: 1,
        embed_dim: 32,
        depth: 1,
        num_heads: 2,
        mlp_ratio: 2.0,
        decoder_embed_dim: 16,
        decoder_depth: 1,
        decoder_num_heads: 2,
        mask_ratio: 0.75,
        norm_pix_loss: true,
        scales: vec![
            ScaleConfig::softmax(1, LossOn::Masked),
            ScaleConfig {
                scale: 2,
                attention: AttentionConfig::Performer(PerformerConfig {
                    nb_features: Some(8),
                }),
                loss_on: LossOn::All,
                weight: 0.5,
            },
        ],
    }
}

fn config() -> PretrainConfig {
    PretrainConfig {
        epochs: 3,
        warmup_epochs: 1.0,
        batch_size: 4,
        accum_iter: 2,
        min_lr: 1e-6, // below the peak rate (4.7e-6), as validation requires
        clip_grad: Some(1.0),
        performer_redraw_interval: Some(3),
        augment: AugmentConfig::pretrain(),
        seed: 7,
        workers: 2,
        checkpoint_every: 2,
        keep_last: 10,
        ..PretrainConfig::paper(tiny_model())
    }
}

fn images(n: usize, seed: u64, nan_at: Option<usize>) -> Arc<InMemoryCrops> {
    let mut rng = Rng::new(seed);
    let mut v = rng.uniform_vec(n * 16 * 16, 0.0, 1.0);
    if let Some(i) = nan_at {
        v[i * 256..(i + 1) * 256]
            .iter_mut()
            .for_each(|x| *x = f32::NAN);
    }
    Arc::new(InMemoryCrops::from_arrays(v, 16).unwrap())
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

fn opts(resume: bool, stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        resume,
        stop_after,
        ..RunOptions::new(Device::Cpu)
    }
}

#[test]
fn learning_rate_follows_mae_schedule_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let mut events = Vec::new();
    let out = pretrain(
        &cfg,
        images(24, 1, None),
        &RunDir::create(dir.path()).unwrap(),
        &opts(false, None),
        &mut |e: &Event| events.push(e.clone()),
    )
    .unwrap();
    // 24 images / batch 4 = 6 batches per epoch = 3 steps of 2 micro-batches; 3 epochs.
    let s = steps(&events);
    assert_eq!(out.steps, 9);
    assert_eq!(s.len(), 9);
    let lr = 1.5e-4 * (4.0 * 2.0) / 256.0; // blr x effective batch / 256
    for (t, e) in s.iter().enumerate() {
        // MAE: adjust_learning_rate(data_iter_step / len(data_loader) + epoch) at every
        // accumulation boundary, data_iter_step = 2 j, len = 6.
        let epoch = (t / 3) as f64 + (2 * (t % 3)) as f64 / 6.0;
        let want = if epoch < 1.0 {
            lr * epoch / 1.0
        } else {
            1e-6 + (lr - 1e-6) * 0.5 * (1.0 + (std::f64::consts::PI * (epoch - 1.0) / 2.0).cos())
        };
        assert!(
            (e.lr - want).abs() <= 1e-15 * lr.max(1.0),
            "step {t}: {} vs {want}",
            e.lr
        );
        assert!(e.loss.is_finite() && e.losses.len() == 2);
    }
    // The log has every step.
    let log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"step\""))
            .count(),
        9
    );
    assert!(dir.path().join("config.json").exists());
    assert!(dir.path().join("model.safetensors").exists());
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let cfg = config();
    let data = images(24, 2, None);
    let straight = tempfile::tempdir().unwrap();
    let mut a = Vec::new();
    pretrain(
        &cfg,
        data.clone(),
        &RunDir::create(straight.path()).unwrap(),
        &opts(false, None),
        &mut |e: &Event| a.push(e.clone()),
    )
    .unwrap();
    let a = steps(&a);

    // Interrupted after 4 steps (mid-epoch, after a Performer redraw), then resumed.
    let split = tempfile::tempdir().unwrap();
    let run = RunDir::create(split.path()).unwrap();
    let mut b1 = Vec::new();
    pretrain(
        &cfg,
        data.clone(),
        &run,
        &opts(false, Some(4)),
        &mut |e: &Event| b1.push(e.clone()),
    )
    .unwrap();
    let mut b2 = Vec::new();
    pretrain(&cfg, data, &run, &opts(true, None), &mut |e: &Event| {
        b2.push(e.clone())
    })
    .unwrap();
    let b: Vec<StepEvent> = steps(&b1).into_iter().chain(steps(&b2)).collect();
    assert_eq!(b.len(), a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.step, y.step);
        assert!(
            (x.loss - y.loss).abs() <= 1e-6,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
        assert_eq!(x.lr, y.lr);
    }
    // The resumed log holds each step once.
    let log = std::fs::read_to_string(split.path().join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"step\""))
            .count(),
        a.len()
    );
    // The final models are the same.
    let ma = Miram::load(&straight.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let mb = Miram::load(&split.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let sa = ma.store().state_dict();
    let sb = mb.store().state_dict();
    for (k, v) in &sa {
        let d = (v - &sb[k])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d <= 1e-6, "{k}: {d}");
    }
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let mut cfg = config();
    cfg.checkpoint_every = 1;
    cfg.batch_size = 2;
    cfg.accum_iter = 1;
    cfg.augment = AugmentConfig::none();
    // Find a seed whose first epoch meets the poisoned image at its third batch or later.
    let data = images(12, 3, Some(5));
    let seed = (0..200u64)
        .find(|&s| {
            let mut c = cfg.clone();
            c.seed = s;
            let l = miram_core::cbis_ddsm::loader::Loader::new(
                data.clone(),
                AugmentConfig::none(),
                miram_core::cbis_ddsm::loader::LoaderConfig {
                    seed: s,
                    ..miram_core::cbis_ddsm::loader::LoaderConfig::train(2)
                },
                Device::Cpu,
            )
            .unwrap();
            l.epoch_indices(0)
                .iter()
                .position(|&i| i == 5)
                .is_some_and(|p| p >= 4)
        })
        .expect("a seed");
    cfg.seed = seed;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let err = pretrain(
        &cfg,
        data,
        &run,
        &opts(false, None),
        &mut miram_core::train::Silent,
    )
    .unwrap_err();
    let (step, last) = match &err {
        Error::NonFiniteLoss {
            step,
            last_checkpoint,
            ..
        } => (*step, last_checkpoint.clone()),
        e => panic!("expected a non-finite loss, got {e}"),
    };
    assert!(step >= 3, "{err}");
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    let (saved_step, path) = run
        .latest_checkpoint()
        .expect("a checkpoint before the NaN");
    assert_eq!(saved_step, step - 1);
    assert_eq!(last, path.display().to_string());
    // The previous checkpoint still loads as a model.
    let (m, _) = Miram::from_checkpoint(&path, &cfg.model, 0, &Device::Cpu, &|_| false).unwrap();
    assert!(m.num_parameters() > 0);
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_refused() {
    let cfg = config();
    let data = images(24, 4, None);
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    pretrain(
        &cfg,
        data.clone(),
        &run,
        &opts(false, Some(2)),
        &mut miram_core::train::Silent,
    )
    .unwrap();
    let (_, path) = run.latest_checkpoint().unwrap();

    // Another model in the same run folder: the checkpoint does not fit and says why.
    let mut other = cfg.clone();
    other.model.decoder_embed_dim = 8;
    let err = pretrain(
        &other,
        data.clone(),
        &run,
        &opts(true, None),
        &mut miram_core::train::Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("another configuration"), "{err}");
    let err = Miram::from_checkpoint(&path, &other.model, 0, &Device::Cpu, &|_| false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder_embed.weight (model [8, 32], file [16, 32])"),
        "{err}"
    );

    // A truncated checkpoint is refused with its path.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = pretrain(
        &cfg,
        data,
        &run,
        &opts(true, None),
        &mut miram_core::train::Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}
