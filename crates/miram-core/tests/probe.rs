//! The feature evaluations on a generated CBIS-DDSM-shaped dataset at the `micro` preset:
//! the probes score what `miram_metrics` computes from the same features; kNN tracking
//! during pre-training logs the validation figures at step 0, every k steps and the last
//! step, and changes nothing of the training itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::Device;
use miram_core::cbis_ddsm::loader::CropDataset;
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::synth::{synthesize, SynthConfig, SynthProgress};
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::metrics::{knn_predict_proba, roc_auc, KnnConfig, KnnMetric, ProbeLabels};
use miram_core::train::probe::{extract_features, probe_task, FeatureSource, ProbeConfig};
use miram_core::train::{
    prepare_data, pretrain, DataConfig, Event, PreparedData, PretrainConfig, ProbeTracking, RunDir,
    RunOptions, Silent, TaskData,
};
use miram_core::{Miram, MiramConfig};

fn data(dir: &std::path::Path) -> (PreparedData, TaskData) {
    let root = dir.join("CBIS-DDSM");
    let synth = SynthConfig {
        patients: 30,
        image_width: 256,
        image_height: 416,
        ..SynthConfig::small().with_seed(5)
    };
    synthesize(&root, &synth, &|_: SynthProgress| {}).unwrap();
    let data = prepare_data(&DataConfig::new(&root), 64, None, 0, &mut |_: &Event| {}).unwrap();
    let task = data
        .task(&Task::PathologyBinary, &SplitConfig::default())
        .unwrap();
    (data, task)
}

fn probe_config(k: usize) -> ProbeConfig {
    ProbeConfig {
        knn: KnnConfig {
            k,
            metric: KnnMetric::Cosine,
        },
        bootstrap_resamples: 0,
        ..ProbeConfig::default()
    }
}

#[test]
fn probes_score_the_features_the_encoder_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (_, task) = data(dir.path());
    let model = Miram::init(&MiramConfig::micro(), 3, &Device::Cpu).unwrap();
    let source = FeatureSource::Encoder(model.encoder());
    let cfg = probe_config(5);
    let out = probe_task(source, &task, &cfg, &Device::Cpu).unwrap();

    // The kNN test AUC is the AUC of miram_metrics' kNN on the same features.
    let f = |d: &Arc<_>| extract_features(source, Arc::clone(d), 7, &Device::Cpu).unwrap();
    let (train, test) = (f(&task.train), f(&task.test));
    assert_eq!(train.dim, 128);
    assert_eq!(out.rows, (train.len(), task.validation.len(), test.len()));
    let y: Vec<usize> = train
        .targets
        .iter()
        .map(|t| usize::from(t[1] > 0.5))
        .collect();
    let p = knn_predict_proba(
        &train.values,
        train.dim,
        ProbeLabels::Classes {
            y: &y,
            n_classes: 2,
        },
        &test.values,
        &cfg.knn,
    )
    .unwrap();
    let y_test: Vec<u8> = test.targets.iter().map(|t| u8::from(t[1] > 0.5)).collect();
    let s: Vec<f64> = p.chunks(2).map(|r| r[1]).collect();
    let want = roc_auc(&y_test, &s).unwrap();
    assert!((out.knn.test.auc.unwrap() - want).abs() < 1e-12);
    assert_eq!(out.knn.test_predictions.len(), test.len());

    // The kept C is the one with the best validation AUC among those tried.
    let tried = &out.linear.validation_auc_by_c;
    assert_eq!(tried.len(), cfg.c_grid.len());
    let best = tried
        .iter()
        .filter_map(|(_, a)| *a)
        .fold(f64::NEG_INFINITY, f64::max);
    let kept = tried.iter().find(|(c, _)| *c == out.linear.c).unwrap().1;
    assert_eq!(kept, Some(best));
    assert_eq!(out.linear.evaluation.validation.auc, Some(best));

    // Features of a batch do not depend on the batch size they were computed in.
    let again = extract_features(source, Arc::clone(&task.test), 64, &Device::Cpu).unwrap();
    let diff = again
        .values
        .iter()
        .zip(&test.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn tracking_logs_knn_figures_and_changes_nothing_of_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let (data, task) = data(dir.path());
    let cfg = PretrainConfig {
        epochs: 1,
        warmup_epochs: 0.5,
        batch_size: 16,
        accum_iter: 1,
        workers: 1,
        checkpoint_every: 100,
        ..PretrainConfig::paper(MiramConfig::micro().single_scale())
    };
    let set = Arc::new(data.pretraining_set());
    let run = |name: &str, probe: Option<ProbeTracking>| {
        let dir = RunDir::create(dir.path().join(name)).unwrap();
        let opts = RunOptions {
            probe,
            ..RunOptions::new(Device::Cpu)
        };
        let mut events = Vec::new();
        let out = pretrain(&cfg, Arc::clone(&set), &dir, &opts, &mut |e: &Event| {
            events.push(e.clone())
        })
        .unwrap();
        (out, events)
    };
    let (plain, plain_events) = run("plain", None);
    let tracking = ProbeTracking {
        data: task,
        every_steps: 2,
        config: probe_config(20),
    };
    let (tracked, events) = run("tracked", Some(tracking));
    let losses = |ev: &[Event]| -> Vec<f64> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Step(s) => Some(s.loss),
                _ => None,
            })
            .collect()
    };
    assert_eq!(losses(&plain_events), losses(&events));
    assert_eq!(plain.final_loss, tracked.final_loss);

    let total = tracked.steps;
    let mut want: Vec<u64> = (0..=total).filter(|s| s % 2 == 0).collect();
    if total % 2 != 0 {
        want.push(total);
    }
    let evals: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(v) => Some((v.step, v.metrics["knn_roc_auc"])),
            _ => None,
        })
        .collect();
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), want);
    assert!(evals.iter().all(|e| (0.0..=1.0).contains(&e.1)));
    // The same figures are in the run's log.
    let log = std::fs::read_to_string(dir.path().join("tracked").join("log.jsonl")).unwrap();
    let logged = log
        .lines()
        .filter(|l| l.contains("\"knn_roc_auc\""))
        .count();
    assert_eq!(logged, want.len());

    // A tracking interval of 0 is refused before anything runs.
    let bad = ProbeTracking {
        data: data
            .task(&Task::PathologyBinary, &SplitConfig::default())
            .unwrap(),
        every_steps: 0,
        config: probe_config(20),
    };
    let e = pretrain(
        &cfg,
        Arc::clone(&set),
        &RunDir::create(dir.path().join("bad")).unwrap(),
        &RunOptions {
            probe: Some(bad),
            ..RunOptions::new(Device::Cpu)
        },
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("every_steps"), "{e}");
}
