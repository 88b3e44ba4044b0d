//! Where a ViT looks: attention rollout over the encoder's blocks and the last block's
//! cls-token attention per head, for a pre-trained [`VitEncoder`] or a fine-tuned
//! [`VitClassifier`] (see `docs/explain.md`).
//!
//! Definitions, with `P_l` the softmax attention probabilities of block `l` (`[heads, T, T]`,
//! `T = 1 + L` tokens, token 0 the cls token, row `i` the attention of query `i`):
//!
//! - **Rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers",
//!   ACL, arXiv 2005.00928, eq. of section 3; as `vit-explain`'s `rollout` with
//!   `head_fusion="mean"`, `discard_ratio=0`): per block the heads are averaged, the
//!   identity is added for the residual connection and the rows are renormalised,
//!   `A_l = (mean_h P_l + I) / 2` (every row of `mean_h P_l` sums to 1, so dividing by the
//!   row sum is dividing by 2); the blocks are multiplied from the first to the last,
//!   `R = A_depth ... A_2 A_1`. Rows of `R` are distributions over the input tokens. The map
//!   is the cls row over the patch tokens, `R[0, 1..]`, reshaped to the patch grid (not
//!   renormalised: its sum is `1 - R[0, 0]`).
//! - **Last block per head**: `P_depth[h, 0, 1..]`, the cls token's attention to each patch
//!   in the last block, per head, reshaped to the grid.
//!
//! For the classifier, the cls token is not what the head reads (it pools the patch
//! tokens), but it is the token every patch can attend through; the maps are the same
//! definitions on the same encoder. The maps are computed in `f32` whatever the model's
//! training precision.

use candle_core::{DType, Tensor};

use crate::classifier::VitClassifier;
use crate::encoder::VitEncoder;
use crate::{Error, Result};

/// A model with a ViT encoder whose attention can be mapped.
pub trait AttentionSource {
    /// The encoder whose blocks are mapped.
    fn attention_encoder(&self) -> &VitEncoder;
}

impl AttentionSource for VitEncoder {
    fn attention_encoder(&self) -> &VitEncoder {
        self
    }
}

impl AttentionSource for VitClassifier {
    fn attention_encoder(&self) -> &VitEncoder {
        self.encoder()
    }
}

/// The attention maps of a batch of images (module documentation: the definitions).
#[derive(Debug, Clone)]
pub struct AttentionMaps {
    /// Attention rollout, the cls row over the patches: `[N, grid, grid]`.
    pub rollout: Tensor,
    /// The last block's cls-token attention to the patches per head: `[N, heads, grid, grid]`.
    pub last_block_heads: Tensor,
}

/// The rollout matrices `R = A_depth ... A_1`, `A_l = (mean_h P_l + I) / 2` with rows
/// renormalised, of one `[N, heads, T, T]` probability tensor per block.
///
/// # Shapes
/// - `probs`: `depth` tensors `[N, heads, T, T]`; returns `[N, T, T]`
pub fn attention_rollout(probs: &[Tensor]) -> Result<Tensor> {
    let Some(first) = probs.first() else {
        return Err(Error::invalid_config(
            "blocks of the rollout",
            0,
            "at least 1",
        ));
    };
    let (n, _, t, t2) = first.dims4()?;
    if t != t2 {
        return Err(Error::shape_mismatch(
            "attention probabilities (square per head)",
            &[n, first.dim(1)?, t, t],
            first.dims(),
        ));
    }
    let eye = Tensor::eye(t, DType::F32, first.device())?.unsqueeze(0)?; // [1, T, T]
    let mut rollout: Option<Tensor> = None;
    for p in probs {
        if p.dims() != first.dims() {
            return Err(Error::shape_mismatch(
                "attention probabilities (the same for every block)",
                first.dims(),
                p.dims(),
            ));
        }
        let a = p.to_dtype(DType::F32)?.mean(1)?.broadcast_add(&eye)?; // [N, T, T]
        let a = a.broadcast_div(&a.sum_keepdim(2)?)?;
        rollout = Some(match rollout {
            None => a,
            Some(r) => a.matmul(&r)?,
        });
    }
    rollout.ok_or_else(|| Error::invalid_config("blocks of the rollout", 0, "at least 1"))
}

/// Row 0 (the cls token) over the patch tokens, as a grid.
///
/// # Shapes
/// - `m`: `[N, T, T]` with `T = 1 + grid^2`; returns `[N, grid, grid]`
fn cls_row_grid(m: &Tensor, grid: usize) -> Result<Tensor> {
    let (n, t, _) = m.dims3()?;
    Ok(m.narrow(1, 0, 1)?
        .narrow(2, 1, t - 1)?
        .reshape((n, grid, grid))?)
}

/// The attention maps of `images` for `model` (module documentation: the definitions).
///
/// # Shapes
/// - `images`: `[N, C, H, W]` (the encoder's size and channels); returns rollout
///   `[N, grid, grid]` and the last block's heads `[N, heads, grid, grid]`
pub fn attention_maps<M: AttentionSource + ?Sized>(
    model: &M,
    images: &Tensor,
) -> Result<AttentionMaps> {
    let enc = model.attention_encoder();
    let cfg = enc.config();
    let (g, heads) = (cfg.grid(), cfg.num_heads);
    let n = images.dim(0)?;
    let want = [n, cfg.in_chans, cfg.img_size, cfg.img_size];
    if images.dims() != want {
        return Err(Error::shape_mismatch(
            "images of the attention maps (the encoder's channels and size)",
            &want,
            images.dims(),
        ));
    }
    let (_, probs) = enc.forward_with_attention(&images.to_dtype(DType::F32)?)?;
    let rollout = cls_row_grid(&attention_rollout(&probs)?, g)?;
    let last = probs
        .last()
        .ok_or_else(|| Error::invalid_config("encoder depth", 0, "at least 1"))?
        .to_dtype(DType::F32)?;
    let (n, _, t, _) = last.dims4()?;
    let last_block_heads = last
        .narrow(2, 0, 1)?
        .narrow(3, 1, t - 1)?
        .reshape((n, heads, g, g))?;
    Ok(AttentionMaps {
        rollout,
        last_block_heads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncoderConfig;
    use candle_core::Device;
    use miram_nn::ParamStore;

    fn vec2(t: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(t.to_vec2::<f32>()?)
    }

    #[test]
    fn rollout_is_the_product_of_the_residual_averaged_blocks() -> Result<()> {
        // Two tokens, two heads, two blocks; by hand:
        // block 1: mean of [[1,0],[.5,.5]] and [[0,1],[.5,.5]] = all 0.5, A1 = [[.75,.25],[.25,.75]]
        // block 2: both heads [[0,1],[0,1]], A2 = [[.5,.5],[0,1]]
        // R = A2 A1 = [[.5,.5],[.25,.75]] (A1 A2 would be [[.375,.625],[.125,.875]]).
        let dev = Device::Cpu;
        let p1 = Tensor::from_vec(
            vec![1f32, 0., 0.5, 0.5, 0., 1., 0.5, 0.5],
            (1, 2, 2, 2),
            &dev,
        )?;
        let p2 = Tensor::from_vec(vec![0f32, 1., 0., 1., 0., 1., 0., 1.], (1, 2, 2, 2), &dev)?;
        let r = attention_rollout(&[p1.clone(), p2])?;
        assert_eq!(
            vec2(&r.squeeze(0)?)?,
            vec![vec![0.5, 0.5], vec![0.25, 0.75]]
        );
        let r1 = attention_rollout(&[p1])?;
        assert_eq!(
            vec2(&r1.squeeze(0)?)?,
            vec![vec![0.75, 0.25], vec![0.25, 0.75]]
        );
        assert!(attention_rollout(&[]).is_err());
        Ok(())
    }

    fn small(depth: usize) -> EncoderConfig {
        EncoderConfig {
            img_size: 32,
            patch_size: 8,
            in_chans: 1,
            embed_dim: 16,
            depth,
            num_heads: 2,
            mlp_ratio: 2.0,
        }
    }

    #[test]
    fn rollout_rows_are_distributions_for_a_random_model() -> Result<()> {
        let dev = Device::Cpu;
        let store = ParamStore::new(7, DType::F32, &dev);
        let enc = VitEncoder::new(&small(3), store.root())?;
        let mut rng = miram_rand::Rng::new(2);
        let imgs = Tensor::from_vec(rng.normal_vec(3 * 32 * 32, 0.0, 1.0), (3, 1, 32, 32), &dev)?;
        let (tokens, probs) = enc.forward_with_attention(&imgs)?;
        assert_eq!(probs.len(), 3);
        assert_eq!(probs[0].dims(), &[3, 2, 17, 17]);
        // The composed blocks give the tokens of the normal (fused) forward.
        let d = (&tokens - enc.forward_features(&imgs)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        let r = attention_rollout(&probs)?; // [3, 17, 17]
        let sums = r.sum(2)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let all = r.flatten_all()?.to_vec1::<f32>()?;
        assert!(all.iter().all(|&v| v >= 0.0));
        // The map is the cls row over the patches: its sum is 1 - R[0, 0].
        let maps = attention_maps(&enc, &imgs)?;
        assert_eq!(maps.rollout.dims(), &[3, 4, 4]);
        assert_eq!(maps.last_block_heads.dims(), &[3, 2, 4, 4]);
        for i in 0..3 {
            let total = maps.rollout.get(i)?.sum_all()?.to_scalar::<f32>()?;
            let r00 = r.get(i)?.get(0)?.get(0)?.to_scalar::<f32>()?;
            assert!((total + r00 - 1.0).abs() < 1e-5, "{total} + {r00}");
            // Each head's cls row over the patches sums to 1 minus its self-attention.
            let heads = maps
                .last_block_heads
                .get(i)?
                .sum((1, 2))?
                .to_vec1::<f32>()?;
            assert!(
                heads.iter().all(|&h| h > 0.0 && h <= 1.0 + 1e-6),
                "{heads:?}"
            );
        }
        let wrong = Tensor::zeros((1, 1, 16, 16), DType::F32, &dev)?;
        assert!(attention_maps(&enc, &wrong).is_err());
        Ok(())
    }

    /// Sets a parameter from values.
    fn set(store: &ParamStore, name: &str, shape: &[usize], v: Vec<f32>) -> Result<()> {
        store.set(name, &Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    /// An encoder whose every query looks for bright patches: the patch embedding puts 100
    /// x the patch's mean brightness into channel 0, the keys of both heads read channel 0
    /// (after norm1), the queries are a constant bias on those key channels, and the
    /// projections and MLPs add nothing (so each block sees the same tokens).
    fn bright_seeking_encoder(store: &ParamStore, depth: usize) -> Result<VitEncoder> {
        let cfg = small(depth);
        let enc = VitEncoder::new(&cfg, store.root())?;
        let (d, p) = (cfg.embed_dim, cfg.patch_size);
        let dh = d / cfg.num_heads;
        let mut w = vec![0f32; d * p * p];
        w[..p * p]
            .iter_mut()
            .for_each(|x| *x = 100.0 / (p * p) as f32);
        set(store, "patch_embed.proj.weight", &[d, 1, p, p], w)?;
        set(store, "patch_embed.proj.bias", &[d], vec![0.0; d])?;
        set(store, "cls_token", &[1, 1, d], vec![0.0; d])?;
        for b in 0..depth {
            let name = |s: &str| format!("blocks.{b}.{s}");
            let mut qkv = vec![0f32; 3 * d * d];
            let mut bias = vec![0f32; 3 * d];
            for h in 0..cfg.num_heads {
                qkv[(d + h * dh) * d] = 1.0; // key channel h*dh of head h reads channel 0
                bias[h * dh] = 20.0; // every query asks for that key channel
            }
            set(store, &name("attn.qkv.weight"), &[3 * d, d], qkv)?;
            set(store, &name("attn.qkv.bias"), &[3 * d], bias)?;
            set(store, &name("attn.proj.weight"), &[d, d], vec![0.0; d * d])?;
            set(store, &name("attn.proj.bias"), &[d], vec![0.0; d])?;
            let hidden = store
                .var(&name("mlp.fc2.weight"))
                .map_or(0, |v| v.dims()[1]);
            set(
                store,
                &name("mlp.fc2.weight"),
                &[d, hidden],
                vec![0.0; d * hidden],
            )?;
            set(store, &name("mlp.fc2.bias"), &[d], vec![0.0; d])?;
        }
        Ok(enc)
    }

    /// The argmax of a flat map as (row, column) of a `g`-wide grid.
    fn peak(map: &[f32], g: usize) -> (usize, usize) {
        let i = map
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
            .0;
        (i / g, i % g)
    }

    #[test]
    fn a_model_built_to_look_at_a_bright_square_maps_it() -> Result<()> {
        let dev = Device::Cpu;
        // Two black images, each with one bright 8 x 8 square on a patch: (2, 1) and (0, 3).
        let squares = [(2usize, 1usize), (0, 3)];
        let mut px = vec![0f32; 2 * 32 * 32];
        for (i, &(gy, gx)) in squares.iter().enumerate() {
            for y in gy * 8..gy * 8 + 8 {
                for x in gx * 8..gx * 8 + 8 {
                    px[i * 1024 + y * 32 + x] = 1.0;
                }
            }
        }
        let imgs = Tensor::from_vec(px, (2, 1, 32, 32), &dev)?;
        for depth in [1, 2] {
            let store = ParamStore::new(3, DType::F32, &dev);
            let enc = bright_seeking_encoder(&store, depth)?;
            let maps = attention_maps(&enc, &imgs)?;
            for (i, &sq) in squares.iter().enumerate() {
                let roll = maps.rollout.get(i)?.flatten_all()?.to_vec1::<f32>()?;
                assert_eq!(peak(&roll, 4), sq, "depth {depth}, image {i}: {roll:?}");
                // The peak holds nearly all the map's mass: half of each block's attention
                // row goes to the residual (the cls token itself), the rest to the square.
                let at = roll[sq.0 * 4 + sq.1];
                let rest: f32 = roll.iter().sum::<f32>() - at;
                assert!(at > 0.4 && rest < 1e-3, "depth {depth}: {at}, rest {rest}");
                for h in 0..2 {
                    let m = maps.last_block_heads.get(i)?.get(h)?.flatten_all()?;
                    let m = m.to_vec1::<f32>()?;
                    assert_eq!(peak(&m, 4), sq, "depth {depth}, image {i}, head {h}");
                    assert!(m[sq.0 * 4 + sq.1] > 0.99, "{m:?}");
                }
            }
        }
        // The same model through a classifier maps alike.
        let ccfg = crate::ClassifierConfig {
            encoder: small(2),
            num_classes: 2,
            drop_path: 0.0,
        };
        let store = ParamStore::new(3, DType::F32, &dev);
        let clf = VitClassifier::new(&ccfg, store.root())?;
        let _ = bright_seeking_encoder(&store, 2)?;
        let maps = attention_maps(&clf, &imgs)?;
        let roll = maps.rollout.get(1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(peak(&roll, 4), squares[1]);
        Ok(())
    }
}
