//! MAE's fine-tuning model (`models_vit.VisionTransformer(global_pool=True)`): the encoder
//! without its final norm, the mean of the patch tokens, `fc_norm`, and a linear `head`;
//! stochastic depth rises linearly over the blocks, as timm's `dpr`. The model carries its
//! [`Precision`]: at bf16 the images are cast in for the encoder and its tokens cast back
//! out, so the pooling, `fc_norm`, the head and the loss compute in `f32`.

use candle_core::Tensor;
use miram_nn::{DropPathMasks, LayerNorm, Linear, Precision, VarBuilder, LN_EPS};
use miram_rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::EncoderConfig;
use crate::encoder::VitEncoder;
use crate::{Error, Result};

/// The fine-tuning model's configuration: the encoder and the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The encoder.
    #[serde(flatten)]
    pub encoder: EncoderConfig,
    /// Outputs of the head (classes, or labels of a multi-label task).
    pub num_classes: usize,
    /// Drop-path rate of the last block (MAE fine-tunes ViT-B with 0.1).
    #[serde(default)]
    pub drop_path: f64,
}

/// The encoder with global pooling and a linear head. Weights: the encoder's names without
/// `norm.*`, then `fc_norm.*` and `head.*`.
#[derive(Debug, Clone)]
pub struct VitClassifier {
    encoder: VitEncoder,
    fc_norm: LayerNorm,
    head: Linear,
    cfg: ClassifierConfig,
    precision: Precision,
}

impl VitClassifier {
    /// Builds the model (at [`Precision::F32`]); `head.weight` is initialised as MAE's
    /// fine-tuning does for a new head (`trunc_normal_(std=2e-5)`, here a normal of that
    /// deviation), `head.bias` 0.
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.num_classes == 0 {
            return Err(Error::invalid_config("num_classes", 0, "at least 1"));
        }
        if !(0.0..1.0).contains(&cfg.drop_path) {
            return Err(Error::invalid_config(
                "drop_path",
                cfg.drop_path,
                "in [0, 1)",
            ));
        }
        let encoder = VitEncoder::without_norm(&cfg.encoder, vb.clone())?;
        let d = cfg.encoder.embed_dim;
        let fc_norm = LayerNorm::new(d, LN_EPS, vb.pp("fc_norm"))?;
        let hv = vb.pp("head");
        let w = hv.param(
            &[cfg.num_classes, d],
            "weight",
            miram_nn::Init::Normal {
                mean: 0.0,
                std: 2e-5,
            },
        )?;
        let b = hv.param(&[cfg.num_classes], "bias", miram_nn::Init::Const(0.0))?;
        let head = Linear::from_weights(w, Some(b));
        Ok(Self {
            encoder,
            fc_norm,
            head,
            cfg: cfg.clone(),
            precision: Precision::F32,
        })
    }

    /// The model computing at `precision` (the parameters stay as they are: `f32` master
    /// weights).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The precision of the forward passes.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// The encoder.
    pub fn encoder(&self) -> &VitEncoder {
        &self.encoder
    }

    /// The pooled, normalised features `fc_norm(mean of patch tokens)`, in the images' dtype:
    /// the encoder runs at the model's precision, the pooling (a mean over every token) and
    /// `fc_norm` in the images' dtype.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns `[N, D]`
    pub fn features(&self, imgs: &Tensor, drop: Option<&[DropPathMasks]>) -> Result<Tensor> {
        let x = self.precision.autocast(imgs)?;
        let x = self.encoder.forward_features_drop(&x, drop)?; // [n, 1 + l, d]
        let x = x.to_dtype(imgs.dtype())?; // no cast at f32
        let l = x.dim(1)? - 1;
        let pooled = x.narrow(1, 1, l)?.mean(1)?; // [n, d]
        self.fc_norm.forward(&pooled)
    }

    /// The logits of images: the features of [`Self::features`], the head in the images'
    /// dtype (`f32` logits for the loss).
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns `[N, num_classes]`
    fn logits(&self, imgs: &Tensor, drop: Option<&[DropPathMasks]>) -> Result<Tensor> {
        self.head.forward(&self.features(imgs, drop)?)
    }

    /// Evaluation forward (no drop path).
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, returns logits `[N, num_classes]`
    pub fn forward(&self, imgs: &Tensor) -> Result<Tensor> {
        self.logits(imgs, None)
    }

    /// Training forward with stochastic depth drawn from `rng` (rate rising linearly from 0
    /// at the first block to `drop_path` at the last).
    pub fn forward_train(&self, imgs: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let rows: Vec<usize> = (0..imgs.dim(0)?).collect();
        self.forward_train_rows(imgs, &rows, rows.len(), rng)
    }

    /// [`Self::forward_train`] for the samples at positions `rows` of a batch of `total`
    /// (a process's share of a global batch): their drop-path masks are those the whole
    /// batch would draw.
    pub fn forward_train_rows(
        &self,
        imgs: &Tensor,
        rows: &[usize],
        total: usize,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let n = imgs.dim(0)?;
        if rows.len() != n {
            return Err(Error::CountMismatch {
                what: "drop-path rows (one per image)",
                expected: n,
                got: rows.len(),
            });
        }
        if self.cfg.drop_path == 0.0 {
            return self.forward(imgs);
        }
        let depth = self.encoder.blocks().len();
        let masks = (0..depth)
            .map(|i| {
                let p = if depth > 1 {
                    self.cfg.drop_path * i as f64 / (depth - 1) as f64
                } else {
                    self.cfg.drop_path
                };
                DropPathMasks::draw_rows(rows, total, p, rng, imgs.device())
            })
            .collect::<Result<Vec<_>>>()?;
        self.logits(imgs, Some(&masks))
    }
}
