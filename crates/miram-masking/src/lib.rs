//! MAE random masking for MIRAM (mirrors `random_masking` of facebookresearch/mae's
//! `models_mae.py`, and `Miram.encode_masked` of `benches/torch/miram_torch.py`).
//!
//! Per sample: `ids_shuffle = argsort(noise)` (ascending), `ids_restore = argsort(ids_shuffle)`,
//! the first `keep = floor(L * (1 - mask_ratio))` tokens of the shuffle are kept, and
//! `mask` is 1 for removed patches, 0 for kept ones, in the original order. The mask at
//! scale `s` repeats every grid cell `s x s` times.
//!
//! Two paths compute the indices: a generic one made of candle ops (any device) and a fast
//! CPU one (per-row argsort and inverse permutation over the batch with rayon); tests check
//! that they agree. Token gathers are differentiable and never use candle's `scatter`, whose
//! gradient is wrong in candle 0.11: the CPU kernel has its own backward (a row scatter into
//! zeros), the generic path uses `index_select` over the flattened batch.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use miram_masking::{masking_from_noise, num_keep, random_noise};
//! use miram_rand::Rng;
//!
//! # fn main() -> miram_masking::Result<()> {
//! let mut rng = Rng::new(0);
//! let noise = random_noise(2, 16, &mut rng, &Device::Cpu)?; // [N, L]
//! let m = masking_from_noise(&noise, num_keep(16, 0.75))?;
//! assert_eq!(m.ids_keep.dims(), &[2, 4]);
//! assert_eq!(m.mask.sum_all()?.to_scalar::<f32>()?, 24.0); // 12 removed per sample
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod gather;

pub use gather::{gather_tokens, gather_tokens_generic};

use candle_core::{DType, Device, Tensor};
use miram_rand::Rng;
use rayon::prelude::*;

/// The error type shared by the model crates ([`miram_nn::Error`]), and `Result` with it.
pub use miram_nn::{Error, Result};

/// The number of kept tokens, `int(L * (1 - mask_ratio))` exactly as Python computes it.
pub fn num_keep(num_patches: usize, mask_ratio: f64) -> usize {
    (num_patches as f64 * (1.0 - mask_ratio)) as usize
}

/// The indices and mask of one masking of a batch.
#[derive(Debug, Clone)]
pub struct Masking {
    /// Indices of the kept tokens in shuffle order, `[N, keep]` `u32`.
    pub ids_keep: Tensor,
    /// The inverse permutation, `[N, L]` `u32`: token `i` of the grid sits at position
    /// `ids_restore[i]` of the shuffled sequence.
    pub ids_restore: Tensor,
    /// 1 for removed tokens, 0 for kept ones, in grid order, `[N, L]` `f32`.
    pub mask: Tensor,
    /// Number of kept tokens.
    pub keep: usize,
}

/// Masking noise from the project's generator: a uniformly random order per sample, written
/// as distinct values `(rank + 0.5) / L` so that `argsort` has no ties on any device.
///
/// # Shapes
/// - returns `[n, l]` `f32`
pub fn random_noise(n: usize, l: usize, rng: &mut Rng, device: &Device) -> Result<Tensor> {
    let rows: Vec<usize> = (0..n).collect();
    random_noise_rows(&rows, n, l, rng, device)
}

/// The rows `rows` of [`random_noise`]`(total, l, rng)`: the noise of some samples of a
/// batch of `total`, by their positions in it, so that a process holding part of a batch
/// masks its samples exactly as one process holding the whole batch would. The rows not
/// kept are drawn and dropped (one permutation each), which keeps the stream aligned.
///
/// # Shapes
/// Returns `[rows.len(), l]`.
///
/// # Errors
/// A row at or beyond `total`.
pub fn random_noise_rows(
    rows: &[usize],
    total: usize,
    l: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<Tensor> {
    if let Some(&bad) = rows.iter().find(|&&r| r >= total) {
        return Err(Error::invalid_config(
            "noise row",
            bad,
            "below the number of samples of the whole batch",
        ));
    }
    let drawn: Vec<Vec<f32>> = (0..total)
        .map(|_| {
            let perm = rng.permutation(l);
            perm.iter().map(|&r| (r as f32 + 0.5) / l as f32).collect()
        })
        .collect();
    let mut v = Vec::with_capacity(rows.len() * l);
    for &r in rows {
        v.extend_from_slice(&drawn[r]);
    }
    Ok(Tensor::from_vec(v, (rows.len(), l), device)?)
}

fn check(noise: &Tensor, keep: usize) -> Result<(usize, usize)> {
    let (n, l) = noise.dims2()?;
    if keep > l {
        return Err(Error::TooManyKept { keep, tokens: l });
    }
    Ok((n, l))
}

/// The masking of `noise`; chooses the fast CPU path for `f32` noise on the CPU (unless
/// [`miram_nn::ops::set_fused_cpu_kernels`] turned it off), the generic path elsewhere.
///
/// # Shapes
/// - `noise`: `[N, L]`; see [`Masking`] for the outputs
pub fn masking_from_noise(noise: &Tensor, keep: usize) -> Result<Masking> {
    if miram_nn::ops::fused_cpu_kernels() && noise.device().is_cpu() && noise.dtype() == DType::F32
    {
        masking_cpu(noise, keep)
    } else {
        masking_generic(noise, keep)
    }
}

/// The masking made of candle ops only (any device).
pub fn masking_generic(noise: &Tensor, keep: usize) -> Result<Masking> {
    let (_n, _l) = check(noise, keep)?;
    let ids_shuffle = noise.arg_sort_last_dim(true)?; // [n, l] u32
    let ids_restore = ids_shuffle.arg_sort_last_dim(true)?; // [n, l] u32
    let ids_keep = ids_shuffle.narrow(1, 0, keep)?.contiguous()?; // [n, keep]
                                                                  // A token is removed when its position in the shuffle is at or past `keep`.
    let mask = ids_restore.ge(keep as u32)?.to_dtype(DType::F32)?;
    Ok(Masking {
        ids_keep,
        ids_restore,
        mask,
        keep,
    })
}

/// The masking computed on the CPU: a stable per-row argsort (ties keep index order) and the
/// inverse permutation, in parallel over the batch.
pub fn masking_cpu(noise: &Tensor, keep: usize) -> Result<Masking> {
    let (n, l) = check(noise, keep)?;
    let values = noise
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut shuffle = vec![0u32; n * l];
    let mut restore = vec![0u32; n * l];
    let mut mask = vec![0f32; n * l];
    shuffle
        .par_chunks_mut(l.max(1))
        .zip(restore.par_chunks_mut(l.max(1)))
        .zip(mask.par_chunks_mut(l.max(1)))
        .zip(values.par_chunks(l.max(1)))
        .for_each(|(((sh, re), ma), no)| {
            for (i, s) in sh.iter_mut().enumerate() {
                *s = i as u32;
            }
            sh.sort_by(|&a, &b| no[a as usize].total_cmp(&no[b as usize]));
            for (pos, &id) in sh.iter().enumerate() {
                re[id as usize] = pos as u32;
                ma[id as usize] = if pos < keep { 0.0 } else { 1.0 };
            }
        });
    let ids_keep: Vec<u32> = shuffle
        .chunks(l.max(1))
        .flat_map(|row| row[..keep].iter().copied())
        .collect();
    let dev = noise.device();
    Ok(Masking {
        ids_keep: Tensor::from_vec(ids_keep, (n, keep), dev)?,
        ids_restore: Tensor::from_vec(restore, (n, l), dev)?,
        mask: Tensor::from_vec(mask, (n, l), dev)?,
        keep,
    })
}

/// The mask at scale `s`: every cell of the `grid_h x grid_w` grid repeated `s x s` times,
/// row-major over the `(grid_h s) x (grid_w s)` grid.
///
/// # Shapes
/// - `mask`: `[N, grid_h * grid_w]`, returns `[N, grid_h * s * grid_w * s]`
pub fn scale_mask(mask: &Tensor, grid_h: usize, grid_w: usize, s: usize) -> Result<Tensor> {
    let (n, l) = mask.dims2()?;
    if s == 0 {
        return Err(Error::invalid_config("mask scale", s, "at least 1"));
    }
    if l != grid_h * grid_w {
        return Err(Error::NotAGrid {
            what: "mask",
            tokens: l,
            rows: grid_h,
            cols: grid_w,
        });
    }
    if s == 1 {
        return Ok(mask.clone());
    }
    let m = mask
        .reshape(vec![n, grid_h, 1, grid_w, 1])?
        .broadcast_as(vec![n, grid_h, s, grid_w, s])?; // [n, gh, s, gw, s]
    Ok(m.contiguous()?.reshape((n, grid_h * s * grid_w * s))?)
}

/// The kept tokens of `x` (MAE's `gather(x, 1, ids_keep)`), differentiable.
///
/// # Shapes
/// - `x`: `[N, L, D]`; returns `[N, keep, D]`
pub fn apply(x: &Tensor, masking: &Masking) -> Result<Tensor> {
    gather_tokens(x, &masking.ids_keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_rows_are_the_rows_of_the_whole_batch() -> Result<()> {
        // Two processes of a batch of 6: rank 0 holds rows 0, 2, 4 and rank 1 rows 1, 3, 5.
        let whole = random_noise(6, 9, &mut Rng::new(11), &Device::Cpu)?.to_vec2::<f32>()?;
        for rank in 0..2 {
            let rows: Vec<usize> = (0..3).map(|k| rank + 2 * k).collect();
            let part = random_noise_rows(&rows, 6, 9, &mut Rng::new(11), &Device::Cpu)?;
            let part = part.to_vec2::<f32>()?;
            for (k, &r) in rows.iter().enumerate() {
                assert_eq!(part[k], whole[r], "rank {rank}, row {r}");
            }
        }
        // A row outside the batch is refused, naming it.
        let err = random_noise_rows(&[6], 6, 9, &mut Rng::new(11), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("noise row = 6"), "{err}");
        Ok(())
    }

    #[test]
    fn num_keep_matches_python_int() {
        assert_eq!(num_keep(16, 0.75), 4);
        assert_eq!(num_keep(25, 0.6), 10);
        assert_eq!(num_keep(9, 0.5), 4);
        assert_eq!(num_keep(196, 0.75), 49);
    }

    #[test]
    fn cpu_and_generic_paths_agree() -> Result<()> {
        let mut rng = Rng::new(4);
        for (n, l, keep) in [(3, 16, 4), (2, 25, 10), (5, 49, 12), (1, 9, 0), (2, 4, 4)] {
            // Continuous noise and noise with ties both give the same indices on both paths.
            let noise = Tensor::from_vec(rng.uniform_vec(n * l, 0.0, 1.0), (n, l), &Device::Cpu)?;
            let a = masking_cpu(&noise, keep)?;
            let b = masking_generic(&noise, keep)?;
            assert_eq!(a.ids_keep.to_vec2::<u32>()?, b.ids_keep.to_vec2::<u32>()?);
            assert_eq!(
                a.ids_restore.to_vec2::<u32>()?,
                b.ids_restore.to_vec2::<u32>()?
            );
            assert_eq!(a.mask.to_vec2::<f32>()?, b.mask.to_vec2::<f32>()?);
        }
        Ok(())
    }

    #[test]
    fn restore_inverts_the_shuffle_and_mask_counts() -> Result<()> {
        let mut rng = Rng::new(5);
        let noise = random_noise(4, 36, &mut rng, &Device::Cpu)?;
        let m = masking_from_noise(&noise, 9)?;
        let restore = m.ids_restore.to_vec2::<u32>()?;
        let keep = m.ids_keep.to_vec2::<u32>()?;
        let mask = m.mask.to_vec2::<f32>()?;
        for i in 0..4 {
            for (pos, &id) in keep[i].iter().enumerate() {
                assert_eq!(restore[i][id as usize] as usize, pos);
                assert_eq!(mask[i][id as usize], 0.0);
            }
            assert_eq!(mask[i].iter().sum::<f32>(), 27.0);
        }
        Ok(())
    }

    #[test]
    fn scale_mask_repeats_cells() -> Result<()> {
        let mask = Tensor::from_vec(vec![1f32, 0., 0., 1.], (1, 4), &Device::Cpu)?;
        let m = scale_mask(&mask, 2, 2, 2)?.to_vec2::<f32>()?;
        assert_eq!(
            m[0],
            vec![1., 1., 0., 0., 1., 1., 0., 0., 0., 0., 1., 1., 0., 0., 1., 1.]
        );
        Ok(())
    }

    #[test]
    fn random_noise_is_seeded() -> Result<()> {
        let a = random_noise(2, 10, &mut Rng::new(1), &Device::Cpu)?.to_vec2::<f32>()?;
        let b = random_noise(2, 10, &mut Rng::new(1), &Device::Cpu)?.to_vec2::<f32>()?;
        assert_eq!(a, b);
        Ok(())
    }
}
