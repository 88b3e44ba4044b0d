//! End to end on a generated CBIS-DDSM-shaped dataset at the `micro` preset: generate,
//! index, crop, pre-train a few steps, fine-tune from the pre-trained encoder, evaluate on the
//! official test cases; the report has every figure and the predictions file one row per
//! test case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use candle_core::Device;
use miram_core::cbis_ddsm::augment::AugmentConfig;
use miram_core::cbis_ddsm::loader::CropDataset;
use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::synth::{synthesize, SynthConfig, SynthProgress};
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::train::{
    compare, finetune, prepare_data, pretrain, DataConfig, Event, FinetuneConfig, PretrainConfig,
    RunDir, RunOptions,
};
use miram_core::MiramConfig;

#[test]
fn generate_pretrain_finetune_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("CBIS-DDSM");
    let synth = SynthConfig {
        patients: 24,
        ..SynthConfig::small().with_seed(3)
    };
    synthesize(&root, &synth, &|_: SynthProgress| {}).unwrap();

    let model = MiramConfig::micro();
    let mut progress = Vec::new();
    let data = prepare_data(
        &DataConfig::new(&root),
        model.img_size as u32,
        Some(2),
        0,
        &mut |e: &Event| progress.push(e.clone()),
    )
    .unwrap();
    assert!(progress.iter().any(|e| matches!(e, Event::Progress { .. })));
    assert!(!data.index.entries.is_empty());

    // Pre-train a few steps with real 2x crops as the 2x target.
    let pcfg = PretrainConfig {
        epochs: 1,
        warmup_epochs: 0.5,
        batch_size: 8,
        accum_iter: 1,
        native_hires_targets: true,
        workers: 2,
        checkpoint_every: 100,
        ..PretrainConfig::paper(model.clone())
    };
    // Pre-training sees the official training images only (lesions and background).
    let pre_set = data.pretraining_set();
    assert!(pre_set.len() > 0);
    for i in 0..pre_set.len() {
        let folder = pre_set.get(i).unwrap().meta.image_folder;
        assert!(folder.contains("-Training_"), "{folder}");
    }
    let pre_run = RunDir::create(dir.path().join("pretrain")).unwrap();
    let pre = pretrain(
        &pcfg,
        std::sync::Arc::new(data.pretraining_set()),
        &pre_run,
        &RunOptions::new(Device::Cpu),
        &mut miram_core::train::Silent,
    )
    .unwrap();
    assert!(pre.steps > 0 && pre.final_loss.is_finite());
    let encoder_ckpt = pre.model_path.expect("model.safetensors");

    // Fine-tune for pathology from the pre-trained encoder, and from scratch.
    let task = data
        .task(&Task::PathologyBinary, &SplitConfig::default())
        .unwrap();
    let patients = |idx: &[usize]| -> BTreeSet<String> {
        idx.iter()
            .map(|&i| data.records[task.labels.items[i].record].patient_id.clone())
            .collect()
    };
    assert!(patients(&task.split.train).is_disjoint(&patients(&task.split.validation)));
    let fcfg = FinetuneConfig {
        init: Some(encoder_ckpt),
        epochs: 2,
        warmup_epochs: 0.5,
        batch_size: 8,
        lr: Some(1e-4),
        augment: AugmentConfig::finetune(),
        bootstrap_resamples: 200,
        workers: 2,
        ..FinetuneConfig::paper(model.encoder(), Task::PathologyBinary)
    };
    let run_a = RunDir::create(dir.path().join("ft-miram")).unwrap();
    let a = finetune(
        &fcfg,
        &task,
        &run_a,
        &RunOptions::new(Device::Cpu),
        &mut miram_core::train::Silent,
    )
    .unwrap();
    let run_b = RunDir::create(dir.path().join("ft-random")).unwrap();
    let b = finetune(
        &FinetuneConfig {
            init: None,
            ..fcfg.clone()
        },
        &task,
        &run_b,
        &RunOptions::new(Device::Cpu),
        &mut miram_core::train::Silent,
    )
    .unwrap();

    // Every figure is there.
    let m = &a.test_metrics;
    assert_eq!(m.n_cases, task.test.len());
    assert!(m.auc.is_some_and(|v| (0.0..=1.0).contains(&v)), "{m:?}");
    assert!(m.ap.is_some_and(|v| (0.0..=1.0).contains(&v)));
    let ci = m.auc_ci.expect("AUC interval");
    assert!(ci.lower <= ci.upper);
    assert!(m.ap_ci.is_some());
    assert!(m.accuracy.is_some());
    assert_eq!(
        m.confusion_matrix
            .as_ref()
            .map(|c| c.iter().flatten().sum::<u64>()),
        Some(task.test.len() as u64)
    );
    assert!(!m.roc_curves.is_empty() && !m.pr_curves.is_empty());
    assert!(m.report.is_some(), "{:?}", m.notes);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_a.path().join("metrics.json")).unwrap())
            .unwrap();
    for key in [
        "auc",
        "auc_ci",
        "ap",
        "ap_ci",
        "accuracy",
        "confusion_matrix",
        "roc_curves",
        "pr_curves",
        "report",
    ] {
        assert!(!metrics[key].is_null(), "metrics.json lacks {key}");
    }
    // One prediction row per test case (plus the header).
    let csv = std::fs::read_to_string(run_a.path().join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), task.test.len() + 1);
    assert!(csv.starts_with("patient_id,image_folder,abnormality_id,label,target_BENIGN,target_MALIGNANT,score_BENIGN,score_MALIGNANT"), "{}", csv.lines().next().unwrap_or(""));
    // The two runs can be compared with DeLong's test.
    let c = compare(&a.test_predictions, &b.test_predictions).unwrap();
    // With a handful of test cases the two rankings can coincide, which leaves DeLong's
    // statistic undefined: then the comparison says so instead of giving a number.
    match c.p_value {
        Some(p) => assert!((0.0..=1.0).contains(&p)),
        None => assert!(!c.notes.is_empty(), "{c:?}"),
    }
}
