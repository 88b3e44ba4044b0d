//! Load an MAE checkpoint into MIRAM: official MAE `.pth` files (a pickled dict whose
//! `model` entry is the state dict) and timm safetensors load without renaming; MAE's
//! decoder becomes MIRAM's 1x decoder and the 2x decoder starts fresh. Loading is exact:
//! every other missing, unexpected or mis-shaped tensor is an error that lists them.
//!
//! ```sh
//! cargo run --release --example load_mae_checkpoint          # a checkpoint written here
//! cargo run --release --example load_mae_checkpoint -- mae_pretrain_vit_base.pth paper
//! ```
//!
//! Without arguments the example writes a micro MAE under the official names
//! (`decoder_blocks.*`, `decoder_norm`, `decoder_pred`, `decoder_pos_embed`), loads it into
//! a two-scale MIRAM and checks that the encoder gives the same latent. Prints
//! `loaded 2 scales from mae.safetensors: 28 tensors fresh (decoders.1.*)` and
//! `latent identical: true`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use miram_core::checkpoint::{mae_name, write_safetensors};
use miram_core::rand::Rng;
use miram_core::{Device, Miram, MiramConfig, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir()?;
    let mut args = std::env::args().skip(1);
    let (path, preset, reference) = match args.next() {
        Some(p) => (
            PathBuf::from(p),
            args.next().unwrap_or_else(|| "paper".into()),
            None,
        ),
        None => {
            let mae = Miram::init(&MiramConfig::micro().single_scale(), 7, &dev)?;
            let renamed: BTreeMap<String, Tensor> = mae
                .state_dict()
                .into_iter()
                .map(|(k, v)| (mae_name(&k), v))
                .collect();
            let p = tmp.path().join("mae.safetensors");
            write_safetensors(&p, &renamed, &BTreeMap::new())?;
            (p, "micro".to_string(), Some(mae))
        }
    };
    let cfg = MiramConfig::preset(&preset)?;
    // MAE has no 2x decoder: those tensors may be missing (they are initialised from the seed).
    let (model, report) = Miram::from_checkpoint(&path, &cfg, 0, &dev, &|n: &str| {
        n.starts_with("decoders.1.")
    })?;
    println!(
        "loaded {} scales from {}: {} tensors fresh (decoders.1.*)",
        cfg.scales.len(),
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        report.missing.len()
    );
    if let Some(mae) = reference {
        let x = Tensor::from_vec(
            Rng::new(1).normal_vec(64 * 64, 0.0, 1.0),
            (1, 1, 64, 64),
            &dev,
        )?;
        let noise = mae.random_noise(1, &mut Rng::new(2))?;
        let (a, _) = mae.encoder().forward_masked(&x, &noise, cfg.mask_ratio)?;
        let (b, _) = model.encoder().forward_masked(&x, &noise, cfg.mask_ratio)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        println!("latent identical: {}", diff == 0.0);
        assert_eq!(diff, 0.0, "the loaded encoder differs from the saved one");
    }
    Ok(())
}
