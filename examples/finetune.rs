//! Fine-tune a MIRAM encoder for pathology with the library (`miram_core::train`): a short
//! pre-training, then fine-tuning with the authors' protocol (shortened) and evaluation of the
//! best epoch on the official test split, with bootstrap intervals.
//!
//! ```sh
//! cargo run --release --example finetune
//! ```
//!
//! Prints `pathology_binary: test AUC 0.571 [0.178, 1.000], AP 0.497 (11 cases)` (about 20 s
//! on 2 cores; the numbers of seconds of training on generated data, not a result).

use std::sync::Arc;

use miram_core::cbis_ddsm::split::SplitConfig;
use miram_core::cbis_ddsm::synth::{synthesize, SynthConfig};
use miram_core::cbis_ddsm::tasks::Task;
use miram_core::train::{
    finetune, prepare_data, pretrain, DataConfig, FinetuneConfig, PretrainConfig, RunDir,
    RunOptions, Silent,
};
use miram_core::{Device, MiramConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("data");
    synthesize(
        &root,
        &SynthConfig {
            patients: 24,
            image_width: 256,
            image_height: 416,
            ..SynthConfig::small()
        },
        &|_| {},
    )?;
    let model = MiramConfig::micro();
    let data = DataConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..DataConfig::new(&root)
    };
    let prepared = prepare_data(&data, model.img_size as u32, None, 0, &mut Silent)?;
    let opts = RunOptions::new(Device::Cpu);

    // A short pre-training gives the encoder to start from.
    let mut pre = PretrainConfig::paper(model.clone());
    (
        pre.epochs,
        pre.warmup_epochs,
        pre.batch_size,
        pre.accum_iter,
        pre.lr,
        pre.workers,
    ) = (1, 0.0, 8, 1, Some(1e-3), 1);
    let pre_run = RunDir::create(tmp.path().join("pretrain"))?;
    let pre_out = pretrain(
        &pre,
        Arc::new(prepared.pretraining_set()),
        &pre_run,
        &opts,
        &mut Silent,
    )?;

    // Fine-tuning: the authors' protocol with 3 epochs and a larger learning rate.
    let task = Task::PathologyBinary;
    let task_data = prepared.task(&task, &SplitConfig::default())?;
    let mut ft = FinetuneConfig::paper(model.encoder(), task);
    ft.init = pre_out.model_path;
    (
        ft.epochs,
        ft.warmup_epochs,
        ft.batch_size,
        ft.lr,
        ft.workers,
        ft.bootstrap_resamples,
    ) = (3, 0.0, 8, Some(5e-4), 1, 200);
    let out = finetune(
        &ft,
        &task_data,
        &RunDir::create(tmp.path().join("finetune"))?,
        &opts,
        &mut Silent,
    )?;
    let m = &out.test_metrics;
    let ci = m.auc_ci.map_or(String::new(), |c| {
        format!(" [{:.3}, {:.3}]", c.lower, c.upper)
    });
    println!(
        "{}: test AUC {}{ci}, AP {} ({} cases)",
        m.task,
        m.auc.map_or("undefined".into(), |v| format!("{v:.3}")),
        m.ap.map_or("undefined".into(), |v| format!("{v:.3}")),
        m.n_cases
    );
    Ok(())
}
