//! The MIRAM configuration (the JSON schema of every model fixture and checkpoint header,
//! `docs/formats.md`) and the named presets.

use miram_decoder::{DecoderConfig, DecoderScale};
use miram_encoder::EncoderConfig;
use miram_losses::{LossOn, ScaleLoss};
use miram_nn::{AttentionConfig, LinformerConfig, NystromConfig, PerformerConfig};
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

/// One named preset of [`PRESETS`]: its name (the `--preset` value), its constructor and a
/// one-line description (the `--help` text and the README's preset table).
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The name, as `--preset` and configuration files spell it.
    pub name: &'static str,
    /// Builds the configuration.
    pub build: fn() -> MiramConfig,
    /// What the preset is, in one line.
    pub description: &'static str,
}

/// The presets, from the largest to the smallest: the one list of their names.
pub const PRESETS: [Preset; 8] = [
    Preset {
        name: "paper",
        build: MiramConfig::paper,
        description:
            "the authors' setting: ViT-B/16 at 112 px, 3 channels, decoders 512 x 8 x 16, \
                      1x softmax (masked) + 2x softmax (all)",
    },
    Preset {
        name: "paper-nystrom",
        build: MiramConfig::paper_nystrom,
        description: "`paper` with a 2x Nystrom decoder (64 landmarks, 6 iterations, conv 33)",
    },
    Preset {
        name: "paper-linformer",
        build: MiramConfig::paper_linformer,
        description: "`paper` with a 2x Linformer decoder (k 128, one shared kv head)",
    },
    Preset {
        name: "paper-performer",
        build: MiramConfig::paper_performer,
        description: "`paper` with a 2x Performer decoder (110 features)",
    },
    Preset {
        name: "paper-3scale",
        build: MiramConfig::paper_3scale,
        description: "`paper` plus a 4x Nystrom decoder",
    },
    Preset {
        name: "small",
        build: MiramConfig::small,
        description: "ViT-S/16 at 112 px, 1 channel, decoders 256 x 4 x 8",
    },
    Preset {
        name: "tiny",
        build: MiramConfig::tiny,
        description: "ViT-Ti/16 at 112 px, 1 channel, decoders 128 x 2 x 4",
    },
    Preset {
        name: "micro",
        build: MiramConfig::micro,
        description:
            "64 px, patch 8, encoder 128 x 4 x 4, decoders 64 x 2 x 4: tests and the quick start",
    },
];

const NYSTROM: AttentionConfig = AttentionConfig::Nystrom(NystromConfig::new(64));
const LINFORMER: AttentionConfig = AttentionConfig::Linformer(LinformerConfig::new(128));
const PERFORMER: AttentionConfig = AttentionConfig::Performer(PerformerConfig {
    nb_features: Some(110),
});

/// The authors' decoders: 1x softmax (masked), 2x of attention `high` (all) and an optional
/// 4x of attention `four` (all), every weight 1.
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
    /// The authors' setting: ViT-B/16 at 112 px, 3 channels, decoders 512 x 8 x 16,
    /// 1x softmax (masked) + 2x softmax (all); MAE's MLP ratio 4, 75 % masking and
    /// normalised pixel targets, which every preset shares.
    pub fn paper() -> Self {
        Self {
            img_size: 112,
            patch_size: 16,
            in_chans: 3,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            decoder_embed_dim: 512,
            decoder_depth: 8,
            decoder_num_heads: 16,
            mask_ratio: 0.75,
            norm_pix_loss: true,
            scales: paper_scales(AttentionConfig::Softmax, None),
        }
    }

    /// `paper` with a 2x Nystrom decoder (64 landmarks, 6 iterations, conv 33).
    pub fn paper_nystrom() -> Self {
        Self {
            scales: paper_scales(NYSTROM, None),
            ..Self::paper()
        }
    }

    /// `paper` with a 2x Linformer decoder (k 128, one shared kv head).
    pub fn paper_linformer() -> Self {
        Self {
            scales: paper_scales(LINFORMER, None),
            ..Self::paper()
        }
    }

    /// `paper` with a 2x Performer decoder (110 features).
    pub fn paper_performer() -> Self {
        Self {
            scales: paper_scales(PERFORMER, None),
            ..Self::paper()
        }
    }

    /// `paper` plus a 4x Nystrom decoder.
    pub fn paper_3scale() -> Self {
        Self {
            scales: paper_scales(AttentionConfig::Softmax, Some(NYSTROM)),
            ..Self::paper()
        }
    }

    /// ViT-S/16 at 112 px, 1 channel, decoders 256 x 4 x 8 (the rest as `paper`).
    pub fn small() -> Self {
        Self {
            img_size: 112,
            patch_size: 16,
            in_chans: 1,
            embed_dim: 384,
            depth: 12,
            num_heads: 6,
            decoder_embed_dim: 256,
            decoder_depth: 4,
            decoder_num_heads: 8,
            ..Self::paper()
        }
    }

    /// ViT-Ti/16 at 112 px, 1 channel, decoders 128 x 2 x 4 (the rest as `paper`).
    pub fn tiny() -> Self {
        Self {
            img_size: 112,
            patch_size: 16,
            in_chans: 1,
            embed_dim: 192,
            depth: 12,
            num_heads: 3,
            decoder_embed_dim: 128,
            decoder_depth: 2,
            decoder_num_heads: 4,
            ..Self::paper()
        }
    }

    /// 64 px, patch 8, encoder 128 x 4 x 4, decoders 64 x 2 x 4 (the rest as `paper`): tests
    /// and the quick start.
    pub fn micro() -> Self {
        Self {
            img_size: 64,
            patch_size: 8,
            in_chans: 1,
            embed_dim: 128,
            depth: 4,
            num_heads: 4,
            decoder_embed_dim: 64,
            decoder_depth: 2,
            decoder_num_heads: 4,
            ..Self::paper()
        }
    }

    /// The preset of that name (see [`PRESETS`]); an unknown name is an error that lists the
    /// known ones.
    pub fn preset(name: &str) -> Result<Self> {
        PRESETS
            .iter()
            .find(|p| p.name == name)
            .map(|p| (p.build)())
            .ok_or_else(|| Error::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.map(|p| p.name).join(", "),
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
        for p in PRESETS {
            let c = MiramConfig::preset(p.name).expect("preset");
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
