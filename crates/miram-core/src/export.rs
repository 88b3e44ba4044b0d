//! Exporting trained models for PyTorch (`miram export`): a fine-tuned classifier under the
//! names of timm's `VisionTransformer` (`global_pool='avg'`: `fc_norm` and no final `norm`),
//! a pre-trained model under the names of the official MAE code (the 1x decoder as MAE's
//! `decoder_*`, [`crate::checkpoint::MAE_DECODER_NAMES`]). The weights are stored as f32,
//! f16 or bf16 ([`crate::checkpoint::stored_as`]).
//!
//! The classifier's names are timm's already (MAE's encoder is timm's), except that timm
//! loads the position table `pos_embed` `[1, 1 + L, D]` (the class token's row first, zeros
//! here as in MAE), which this model computes instead of storing: the export writes it.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use miram_encoder::ClassifierConfig;
use miram_nn::mlp_hidden;
use miram_nn::pos_embed::sincos_2d;

use crate::checkpoint::{mae_name, Checkpoint};
use crate::{Error, MiramConfig, Result};

/// The tensors of timm's `VisionTransformer(num_classes=K, global_pool='avg', in_chans=C,
/// img_size=S, patch_size=P, embed_dim=D, depth=N, num_heads=H, mlp_ratio=R)` with their
/// shapes, in the order of its `state_dict()`.
pub fn timm_names(cfg: &ClassifierConfig) -> Vec<(String, Vec<usize>)> {
    let e = &cfg.encoder;
    let (d, p) = (e.embed_dim, e.patch_size);
    let l = (e.img_size / p).pow(2);
    let h = mlp_hidden(d, e.mlp_ratio);
    let mut v: Vec<(String, Vec<usize>)> = vec![
        ("cls_token".into(), vec![1, 1, d]),
        ("pos_embed".into(), vec![1, 1 + l, d]),
        ("patch_embed.proj.weight".into(), vec![d, e.in_chans, p, p]),
        ("patch_embed.proj.bias".into(), vec![d]),
    ];
    for i in 0..e.depth {
        for (name, shape) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.qkv.bias", vec![3 * d]),
            ("attn.proj.weight", vec![d, d]),
            ("attn.proj.bias", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("mlp.fc1.weight", vec![h, d]),
            ("mlp.fc1.bias", vec![h]),
            ("mlp.fc2.weight", vec![d, h]),
            ("mlp.fc2.bias", vec![d]),
        ] {
            v.push((format!("blocks.{i}.{name}"), shape));
        }
    }
    v.extend([
        ("fc_norm.weight".into(), vec![d]),
        ("fc_norm.bias".into(), vec![d]),
        ("head.weight".into(), vec![cfg.num_classes, d]),
        ("head.bias".into(), vec![cfg.num_classes]),
    ]);
    v
}

/// The position table timm loads for `cfg`: the fixed 2-D sin-cos table with the class
/// token's row (zeros), as the encoder computes it.
///
/// # Shapes
/// Returns `[1, 1 + L, D]`.
pub fn timm_pos_embed(cfg: &ClassifierConfig) -> Result<Tensor> {
    let e = &cfg.encoder;
    let g = e.img_size / e.patch_size;
    Ok(sincos_2d(e.embed_dim, g, g, true, &Device::Cpu)?)
}

/// The tensors of the fine-tuned classifier `ck` (configuration `cfg`) under timm's names
/// ([`timm_names`]), `pos_embed` added; an error names a tensor timm would not load (one
/// missing, one too many, or one of another shape).
pub fn timm_tensors(ck: &Checkpoint, cfg: &ClassifierConfig) -> Result<BTreeMap<String, Tensor>> {
    let bad = |m: String| Error::Checkpoint {
        path: ck.path.clone(),
        message: m,
    };
    let names = timm_names(cfg);
    if let Some(extra) = ck
        .tensors
        .keys()
        .filter(|k| !names.iter().any(|(n, _)| n == *k))
        .min()
    {
        return Err(bad(format!(
            "tensor `{extra}` has no place in timm's VisionTransformer (global_pool='avg'); is this a fine-tuned classifier?"
        )));
    }
    let mut out = BTreeMap::new();
    for (name, shape) in names {
        let t = match ck.tensors.get(&name) {
            Some(t) => t.to_device(&Device::Cpu)?,
            None if name == "pos_embed" => timm_pos_embed(cfg)?,
            None => return Err(bad(format!("no tensor `{name}`"))),
        };
        if t.dims() != shape.as_slice() {
            return Err(bad(format!(
                "tensor `{name}` is {:?}; timm's is {shape:?}",
                t.dims()
            )));
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// The tensors of a pre-trained model `ck` (configuration `cfg`) under the official MAE
/// names ([`mae_name`]): the encoder's as they are, the 1x decoder's as MAE's `decoder_*`;
/// the decoders of other scales keep their names (`decoders.{i}.*`, which MAE's code does
/// not have). The fixed sin-cos tables that MAE's `state_dict()` holds and this model
/// computes (`pos_embed` `[1, 1 + L, D]`, `decoder_pos_embed` `[1, 1 + L, D_dec]`, and
/// `decoders.{i}.pos_embed` for the other scales) are written, so that MAE's
/// `MaskedAutoencoderViT` loads the file with every one of its keys present.
pub fn mae_tensors(ck: &Checkpoint, cfg: &MiramConfig) -> Result<BTreeMap<String, Tensor>> {
    let mut out: BTreeMap<String, Tensor> = ck
        .tensors
        .iter()
        .map(|(k, t)| Ok((mae_name(k), t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let g = cfg.img_size / cfg.patch_size;
    let mut tables = vec![("pos_embed".to_string(), cfg.embed_dim)];
    for i in 0..cfg.scales.len() {
        tables.push((
            mae_name(&format!("decoders.{i}.pos_embed")),
            cfg.decoder_embed_dim,
        ));
    }
    for (name, dim) in tables {
        if let std::collections::btree_map::Entry::Vacant(e) = out.entry(name) {
            e.insert(sincos_2d(dim, g, g, true, &Device::Cpu)?);
        }
    }
    Ok(out)
}

/// The keyword arguments of `timm.create_model` for `cfg` (a JSON object; also written in
/// the exported file's metadata as `timm_kwargs`).
pub fn timm_kwargs(cfg: &ClassifierConfig) -> serde_json::Value {
    let e = &cfg.encoder;
    serde_json::json!({
        "num_classes": cfg.num_classes,
        "global_pool": "avg",
        "in_chans": e.in_chans,
        "img_size": e.img_size,
        "patch_size": e.patch_size,
        "embed_dim": e.embed_dim,
        "depth": e.depth,
        "num_heads": e.num_heads,
        "mlp_ratio": e.mlp_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use miram_encoder::EncoderConfig;
    use std::collections::HashMap;

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            encoder: EncoderConfig {
                img_size: 16,
                patch_size: 8,
                in_chans: 1,
                embed_dim: 8,
                depth: 1,
                num_heads: 2,
                mlp_ratio: 2.0,
            },
            num_classes: 3,
            drop_path: 0.0,
        }
    }

    fn checkpoint(names: &[(String, Vec<usize>)]) -> Result<Checkpoint> {
        let mut tensors = HashMap::new();
        for (n, s) in names {
            tensors.insert(
                n.clone(),
                Tensor::ones(s.as_slice(), candle_core::DType::F32, &Device::Cpu)?,
            );
        }
        Ok(Checkpoint {
            path: "best.safetensors".into(),
            tensors,
            metadata: BTreeMap::new(),
        })
    }

    #[test]
    fn timm_names_count_and_pos_embed_is_added_with_a_zero_class_row() -> Result<()> {
        let names = timm_names(&cfg());
        // 4 embedding tensors, 12 per block, 4 of fc_norm and the head.
        assert_eq!(names.len(), 4 + 12 + 4);
        let stored: Vec<_> = names
            .iter()
            .filter(|(n, _)| n != "pos_embed")
            .cloned()
            .collect();
        let t = timm_tensors(&checkpoint(&stored)?, &cfg())?;
        let pe = &t["pos_embed"];
        assert_eq!(pe.dims(), &[1, 5, 8]);
        let rows = pe.squeeze(0)?.to_vec2::<f32>()?;
        assert!(rows[0].iter().all(|&v| v == 0.0));
        // Grid position (0, 0): sin(0) = 0 on the first half of each axis' half, cos(0) = 1.
        assert_eq!(rows[1], vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        Ok(())
    }

    #[test]
    fn a_tensor_timm_lacks_or_of_another_shape_is_named() -> Result<()> {
        let mut names = timm_names(&cfg());
        names.push(("norm.weight".into(), vec![8]));
        let e = timm_tensors(&checkpoint(&names)?, &cfg())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`norm.weight`"), "{e}");
        names.pop();
        names[2].1 = vec![8, 3, 8, 8];
        let e = timm_tensors(&checkpoint(&names)?, &cfg())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`patch_embed.proj.weight` is [8, 3, 8, 8]"),
            "{e}"
        );
        Ok(())
    }
}
