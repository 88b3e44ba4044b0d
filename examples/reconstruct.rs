//! Reconstruct a masked image at every scale with the library: the MIRAM forward pass, the
//! per-scale losses and predictions, and the predictions turned back into images
//! (`unpatchify`, after undoing the per-patch normalisation of `norm_pix_loss`).
//!
//! ```sh
//! cargo run --release --example reconstruct                       # an untrained micro model
//! cargo run --release --example reconstruct -- run/model.safetensors
//! ```
//!
//! Prints (untrained model):
//! `scale 1x: loss 1.3950, prediction [1, 64, 64] -> image [1, 1, 64, 64]`
//! `scale 2x: loss 1.4955, prediction [1, 256, 64] -> image [1, 1, 128, 128]`.

use miram_core::candle_core::D;
use miram_core::losses::reconstruction_target;
use miram_core::nn::unpatchify;
use miram_core::rand::Rng;
use miram_core::{Device, Miram, MiramConfig, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let model = match std::env::args().nth(1) {
        Some(path) => Miram::load(std::path::Path::new(&path), &dev)?,
        None => Miram::init(&MiramConfig::micro(), 0, &dev)?,
    };
    let cfg = model.config().clone();
    let (side, p, c) = (cfg.img_size, cfg.patch_size, cfg.in_chans);
    // A bright disc with radial spicules on a dim background: a mass-like test image.
    let mut img = vec![0.1f32; c * side * side];
    let mid = side as f32 / 2.0;
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f32 - mid, y as f32 - mid);
            let (r, a) = ((dx * dx + dy * dy).sqrt(), dy.atan2(dx));
            let v = if r < side as f32 / 5.0 {
                0.8
            } else if (a * 12.0).sin() > 0.95 && r < side as f32 / 2.5 {
                0.6
            } else {
                0.1
            };
            for ch in 0..c {
                img[ch * side * side + y * side + x] = v;
            }
        }
    }
    let x = Tensor::from_vec(img, (1, c, side, side), &dev)?;
    let noise = model.random_noise(1, &mut Rng::new(0))?;
    let out = model.forward(&x, &noise)?;
    println!(
        "masked {} of {} patches",
        out.masking.mask.sum_all()?.to_scalar::<f32>()?,
        cfg.num_patches()
    );
    let g = cfg.grid();
    for (k, sc) in cfg.scales.iter().enumerate() {
        let pred = &out.preds[k]; // [1, L s^2, p p C]
        let target = reconstruction_target(&x, None, p, sc.scale, false)?;
        let pred_px = if cfg.norm_pix_loss {
            // Undo the per-patch normalisation with the target patches' mean and variance.
            let d = target.dim(D::Minus1)?;
            let mean = target.mean_keepdim(D::Minus1)?;
            let var =
                (target.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (d - 1) as f64)?;
            pred.broadcast_mul(&(var + 1e-6)?.sqrt()?)?
                .broadcast_add(&mean)?
        } else {
            pred.clone()
        };
        let image = unpatchify(&pred_px, p, c, g * sc.scale, g * sc.scale)?;
        println!(
            "scale {}x: loss {:.4}, prediction {:?} -> image {:?}",
            sc.scale,
            out.losses[k].to_scalar::<f32>()?,
            pred.dims(),
            image.dims()
        );
    }
    Ok(())
}
