//! The MIRAM configuration (the JSON schema of every model fixture and checkpoint header,
//! `docs/formats.md`) and the named presets.

use miram_decoder::{DecoderConfig, DecoderScale};
use miram_encoder::EncoderConfig;
use miram_losses::{LossOn, ScaleLoss};
use miram_nn::AttentionConfig;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One decoder scale of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Output resolution over the input resolution; the first scale is 1.
    pub scale: usize,
    /// The attention of this decoder's blocks.
    pub attention: AttentionConfig,
    /// `masked` (mean over removed patches) or `all`.
    pub loss_on: LossOn,
    /// Weight of this scale's loss in the total.
    pub weight: f64,
}

impl ScaleConfig {
    /// A softmax decoder at `scale`.
    pub fn softmax(scale: usize, loss_on: LossOn) -> Self {
        Self {
            scale,
            attention: AttentionConfig::Softmax,
            loss_on,
            weight: 1.0,
        }
    }
}

/// A complete MIRAM configuration: the encoder, the decoders, the masking and the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiramConfig {
    /// Square input side in pixels.
    pub img_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Encoder width.
    pub embed_dim: usize,
    /// Encoder blocks.
    pub depth: usize,
    /// Encoder heads.
    pub num_heads: usize,
    /// MLP hidden width over the block width (encoder and decoders).
    pub mlp_ratio: f64,
    /// Decoder width.
    pub decoder_embed_dim: usize,
    /// Blocks per decoder.
    pub decoder_depth: usize,
    /// Heads per decoder block.
    pub decoder_num_heads: usize,
    /// Fraction of patches removed.
    pub mask_ratio: f64,
    /// Normalise every target patch by its mean and variance.
    pub norm_pix_loss: bool,
    /// The decoders, scale 1 first.
    pub scales: Vec<ScaleConfig>,
}

/// The names of the presets, from the largest to the smallest.
pub const PRESETS: [&str; 8] = [
    "paper",
    "paper-nystrom",
    "paper-linformer",
    "paper-performer",
    "paper-3scale",
    "small",
    "tiny",
    "micro",
];

const NYSTROM: AttentionConfig = AttentionConfig::Nystrom {
    landmarks: 64,
    pinv_iterations: 6,
    residual_conv_kernel: 33,
};
const LINFORMER: AttentionConfig = AttentionConfig::Linformer {
    k: 128,
    one_kv_head: true,
    share_kv: true,
};
const PERFORMER: AttentionConfig = AttentionConfig::Performer {
    nb_features: Some(110),
};

fn paper_scales(high: AttentionConfig, four: Option<AttentionConfig>) -> Vec<ScaleConfig> {
    let mut s = vec![
        ScaleConfig::softmax(1, LossOn::Masked),
        ScaleConfig {
            scale: 2,
            attention: high,
            loss_on: LossOn::All,
            weight: 1.0,
        },
    ];
    if let Some(a) = four {
        s.push(ScaleConfig {
            scale: 4,
            attention: a,
            loss_on: LossOn::All,
            weight: 1.0,
        });
    }
    s
}

impl MiramConfig {
    #[allow(clippy::too_many_arguments)]
    fn vit(
        img: usize,
        patch: usize,
        chans: usize,
        d: usize,
        depth: usize,
        heads: usize,
        dd: usize,
        ddepth: usize,
        dheads: usize,
        scales: Vec<ScaleConfig>,
    ) -> Self {
        Self {
            img_size: img,
            patch_size: patch,
            in_chans: chans,
            embed_dim: d,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
            decoder_embed_dim: dd,
            decoder_depth: ddepth,
            decoder_num_heads: dheads,
            mask_ratio: 0.75,
            norm_pix_loss: true,
            scales,
        }
    }

    /// ViT-B/16 at 112 px, 3 channels, decoders 512 x 8 x 16 (the authors' sizes) with the
    /// 2x decoder's attention `high` and an optional 4x decoder.
    fn paper_with(high: AttentionConfig, four: Option<AttentionConfig>) -> Self {
        Self::vit(
            112,
            16,
            3,
            768,
            12,
            12,
            512,
            8,
            16,
            paper_scales(high, four),
        )
    }

    /// The authors' setting: ViT-B/16 at 112 px, 3 channels, decoders 512 x 8 x 16,
    /// 1x softmax (masked) + 2x softmax (all).
    pub fn paper() -> Self {
        Self::paper_with(AttentionConfig::Softmax, None)
    }

    /// `paper` with a 2x Nystrom decoder (64 landmarks, 6 iterations, conv 33).
    pub fn paper_nystrom() -> Self {
        Self::paper_with(NYSTROM, None)
    }

    /// `paper` with a 2x Linformer decoder (k 128, one shared kv head).
    pub fn paper_linformer() -> Self {
        Self::paper_with(LINFORMER, None)
    }

    /// `paper` with a 2x Performer decoder (110 features).
    pub fn paper_performer() -> Self {
        Self::paper_with(PERFORMER, None)
    }

    /// `paper` plus a 4x Nystrom decoder.
    pub fn paper_3scale() -> Self {
        Self::paper_with(AttentionConfig::Softmax, Some(NYSTROM))
    }

    /// ViT-S/16, 1 channel, decoders 256 x 4 x 8.
    pub fn small() -> Self {
        Self::vit(
            112,
            16,
            1,
            384,
            12,
            6,
            256,
            4,
            8,
            paper_scales(AttentionConfig::Softmax, None),
        )
    }

    /// ViT-Ti/16, 1 channel, decoders 128 x 2 x 4.
    pub fn tiny() -> Self {
        Self::vit(
            112,
            16,
            1,
            192,
            12,
            3,
            128,
            2,
            4,
            paper_scales(AttentionConfig::Softmax, None),
        )
    }

    /// 64 px, patch 8, encoder 128 x 4 x 4, decoders 64 x 2 x 4: tests and the quick start.
    pub fn micro() -> Self {
        Self::vit(
            64,
            8,
            1,
            128,
            4,
            4,
            64,
            2,
            4,
            paper_scales(AttentionConfig::Softmax, None),
        )
    }

    /// The preset of that name (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "paper" => Self::paper(),
            "paper-nystrom" => Self::paper_nystrom(),
            "paper-linformer" => Self::paper_linformer(),
            "paper-performer" => Self::paper_performer(),
            "paper-3scale" => Self::paper_3scale(),
            "small" => Self::small(),
            "tiny" => Self::tiny(),
            "micro" => Self::micro(),
            _ => {
                return Err(Error::UnknownPreset {
                    name: name.to_string(),
                    known: PRESETS.join(", "),
                })
            }
        })
    }

    /// This configuration with only its first (1x) scale: a plain MAE, for comparisons.
    pub fn single_scale(&self) -> Self {
        let mut c = self.clone();
        c.scales.truncate(1);
        c
    }

    /// Parses the JSON form; unknown fields are errors that name them.
    pub fn from_json(s: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(s).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, strings and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Patches per side of the input grid.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size.max(1)
    }

    /// Number of patches of the input grid.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// The encoder's part.
    pub fn encoder(&self) -> EncoderConfig {
        EncoderConfig {
            img_size: self.img_size,
            patch_size: self.patch_size,
            in_chans: self.in_chans,
            embed_dim: self.embed_dim,
            depth: self.depth,
            num_heads: self.num_heads,
            mlp_ratio: self.mlp_ratio,
        }
    }

    /// The decoders' part.
    pub fn decoder(&self) -> DecoderConfig {
        DecoderConfig {
            encoder_dim: self.embed_dim,
            decoder_embed_dim: self.decoder_embed_dim,
            decoder_depth: self.decoder_depth,
            decoder_num_heads: self.decoder_num_heads,
            mlp_ratio: self.mlp_ratio,
            grid: self.grid(),
            patch_size: self.patch_size,
            in_chans: self.in_chans,
            scales: self
                .scales
                .iter()
                .map(|s| DecoderScale {
                    scale: s.scale,
                    attention: s.attention.clone(),
                })
                .collect(),
        }
    }

    /// The losses' part.
    pub fn losses(&self) -> Vec<ScaleLoss> {
        self.scales
            .iter()
            .map(|s| ScaleLoss {
                scale: s.scale,
                loss_on: s.loss_on,
                weight: s.weight,
            })
            .collect()
    }

    /// Checks every field; the error names each key at fault with its value and allowed
    /// range ([`Error::InvalidSettings`]).
    pub fn validate(&self) -> Result<()> {
        let mut c = crate::settings::Checks::new();
        c.other("encoder", self.encoder().validate());
        c.other("decoder", self.decoder().validate());
        c.real(
            "mask_ratio",
            self.mask_ratio,
            Some((0.0, false)),
            Some((1.0, false)),
        );
        if self.mask_ratio.is_finite() && self.mask_ratio > 0.0 && self.mask_ratio < 1.0 {
            let l = self.num_patches();
            let keep = miram_masking::num_keep(l, self.mask_ratio);
            if keep == 0 || keep >= l {
                c.fail(
                    "mask_ratio",
                    self.mask_ratio,
                    format!(
                        "keeps {keep} of {l} patches; it must keep at least one and remove at least one"
                    ),
                );
            }
        }
        if self.scales.first().map(|s| s.scale) != Some(1) {
            c.fail(
                "scales[0].scale",
                self.scales
                    .first()
                    .map_or("none".into(), |s| s.scale.to_string()),
                "the first scale must be 1",
            );
        }
        for (i, s) in self.scales.iter().enumerate() {
            c.non_negative(&format!("scales[{i}].weight"), s.weight);
        }
        if !self.scales.is_empty() && self.scales.iter().all(|s| s.weight == 0.0) {
            c.fail(
                "scales.weight",
                0,
                "at least one scale's weight must be > 0",
            );
        }
        if self.norm_pix_loss && self.patch_size * self.patch_size * self.in_chans < 2 {
            c.fail(
                "norm_pix_loss",
                true,
                "needs patches of 2 or more values (patch_size x patch_size x in_chans)",
            );
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() {
        for name in PRESETS {
            let c = MiramConfig::preset(name).expect("preset");
            c.validate().expect("valid");
            assert_eq!(MiramConfig::from_json(&c.to_json()).expect("parse"), c);
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = MiramConfig::preset("huge").unwrap_err().to_string();
        assert!(e.contains("huge") && e.contains("micro"), "{e}");
    }

    #[test]
    fn unknown_field_is_named() {
        let mut v: serde_json::Value =
            serde_json::from_str(&MiramConfig::micro().to_json()).unwrap();
        v["embed_dimm"] = 3.into();
        let e = MiramConfig::from_json(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("embed_dimm"), "{e}");
    }
}
