//! Pre-train MIRAM on a dataset folder with the library (`miram_core::train`): index the
//! folder, cache the lesion crops and background patches, and run the pre-training loop in a
//! resumable run folder.
//!
//! ```sh
//! cargo run --release --example pretrain_folder              # a tiny generated dataset
//! cargo run --release --example pretrain_folder -- ~/CBIS-DDSM
//! ```
//!
//! Prints one line per step and then (about 4 s on 2 cores):
//! `pre-trained 5 steps: loss 2.3267 (1x 1.1682, 2x 1.1585); model in /tmp/.../model.safetensors`.

use std::path::PathBuf;
use std::sync::Arc;

use miram_core::cbis_ddsm::synth::{synthesize, SynthConfig};
use miram_core::train::{
    prepare_data, pretrain, DataConfig, Event, PretrainConfig, RunDir, RunOptions,
};
use miram_core::{Device, MiramConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let root = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Eight patients of small images: seconds to write.
            let cfg = SynthConfig {
                patients: 8,
                image_width: 256,
                image_height: 416,
                ..SynthConfig::small()
            };
            synthesize(&tmp.path().join("data"), &cfg, &|_| {})?;
            tmp.path().join("data")
        }
    };
    let model = MiramConfig::micro();
    let data = DataConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..DataConfig::new(&root)
    };
    let prepared = prepare_data(&data, model.img_size as u32, None, 0, &mut |_: &Event| {})?;
    let crops = Arc::new(prepared.pretraining_set());

    // The authors' recipe, shortened: one epoch of batches of 8.
    let mut cfg = PretrainConfig::paper(model);
    cfg.epochs = 1;
    cfg.warmup_epochs = 0.0;
    cfg.batch_size = 8;
    cfg.accum_iter = 1;
    cfg.lr = Some(1e-3);
    cfg.workers = 1;
    let run = RunDir::create(tmp.path().join("run"))?;
    let out = pretrain(
        &cfg,
        crops,
        &run,
        &RunOptions::new(Device::Cpu),
        &mut |e: &Event| {
            if let Event::Step(s) = e {
                println!(
                    "step {}/{}: loss {:.4} per scale {:?}",
                    s.step, s.total_steps, s.loss, s.losses
                );
            }
        },
    )?;
    let last = std::fs::read_to_string(run.log_path())?;
    let losses = last
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter_map(|e| {
            if let Event::Step(s) = e {
                Some(s.losses)
            } else {
                None
            }
        })
        .next_back()
        .unwrap_or_default();
    println!(
        "pre-trained {} steps: loss {:.4} (1x {:.4}, 2x {:.4}); model in {}",
        out.steps,
        out.final_loss,
        losses.first().copied().unwrap_or(f64::NAN),
        losses.get(1).copied().unwrap_or(f64::NAN),
        out.model_path
            .map_or("(not written)".into(), |p| p.display().to_string())
    );
    Ok(())
}
