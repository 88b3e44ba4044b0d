//! The MIRAM model: one encoder, the shared decoder head, one decoder per scale and the
//! multi-scale loss (the PyTorch form of the same model is `benches/torch/miram_torch.py`).
//! The model carries its [`Precision`]: at bf16 the images are cast in for the encoder and
//! the decoders, and every output is cast back to the images' dtype before the loss, whose
//! targets come from the `f32` images.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use miram_decoder::MultiScaleDecoder;
use miram_encoder::VitEncoder;
use miram_losses::MultiScaleLoss;
use miram_masking::{random_noise, Masking};
use miram_nn::{ParamStore, Precision, VarBuilder};
use miram_rand::Rng;

use crate::checkpoint::{self, ensure_loaded, prepare_for_model, read_checkpoint};
use crate::config::MiramConfig;
use crate::{Error, Result};

/// Everything one pre-training forward produces.
#[derive(Debug, Clone)]
pub struct MiramOutput {
    /// The weighted total loss (scalar).
    pub loss: Tensor,
    /// Each scale's loss (scalars), in the order of the configuration.
    pub losses: Vec<Tensor>,
    /// Each scale's prediction, `[N, L s^2, p * p * C]` (in the images' dtype).
    pub preds: Vec<Tensor>,
    /// The encoder's output, `[N, 1 + keep, D]` (in the images' dtype).
    pub latent: Tensor,
    /// The masking (`mask` `[N, L]`, 1 = removed; `ids_restore` `[N, L]`).
    pub masking: Masking,
}

/// The MIRAM masked autoencoder.
///
/// Weights use the reference's names: the encoder's (`patch_embed.proj.*`, `cls_token`,
/// `blocks.{i}.*`, `norm.*`), `decoder_embed.*`, `mask_token`, and `decoders.{i}.*` per scale.
#[derive(Debug, Clone)]
pub struct Miram {
    cfg: MiramConfig,
    store: ParamStore,
    encoder: VitEncoder,
    decoder: MultiScaleDecoder,
    loss: MultiScaleLoss,
    precision: Precision,
}

impl Miram {
    /// Builds the model from `vb` (fresh or loaded parameters, see [`ParamStore`]), at
    /// [`Precision::F32`].
    pub fn new(cfg: &MiramConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let encoder = VitEncoder::new(&cfg.encoder(), vb.clone())?;
        let decoder = MultiScaleDecoder::new(&cfg.decoder(), vb.clone())?;
        let loss = MultiScaleLoss::new(cfg.patch_size, cfg.norm_pix_loss, cfg.losses());
        Ok(Self {
            cfg: cfg.clone(),
            store: vb.store().clone(),
            encoder,
            decoder,
            loss,
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

    /// A freshly initialised model (MAE's initialisation, keyed by `seed`).
    pub fn init(cfg: &MiramConfig, seed: u64, device: &Device) -> Result<Self> {
        let store = ParamStore::new(seed, DType::F32, device);
        Self::new(cfg, store.root())
    }

    /// The configuration.
    pub fn config(&self) -> &MiramConfig {
        &self.cfg
    }

    /// The parameter store (trainable parameters and buffers by name).
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The encoder.
    pub fn encoder(&self) -> &VitEncoder {
        &self.encoder
    }

    /// The decoders.
    pub fn decoder(&self) -> &MultiScaleDecoder {
        &self.decoder
    }

    /// The loss.
    pub fn loss(&self) -> &MultiScaleLoss {
        &self.loss
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// Masking noise for a batch of `n` images from the project's generator.
    ///
    /// # Shapes
    /// - returns `[n, L]`
    pub fn random_noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(random_noise(n, self.cfg.num_patches(), rng, self.device())?)
    }

    /// The rows `rows` of [`Self::random_noise`]`(total, rng)`: the masking noise of the
    /// samples at those positions of a batch of `total` (a process's share of a global
    /// batch; see `train::distributed::global_positions`).
    pub fn random_noise_rows(&self, rows: &[usize], total: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(miram_masking::random_noise_rows(
            rows,
            total,
            self.cfg.num_patches(),
            rng,
            self.device(),
        )?)
    }

    /// The pre-training forward with nearest-upsampled targets.
    ///
    /// # Shapes
    /// - `imgs`: `[N, C, H, W]`, `noise`: `[N, L]`
    pub fn forward(&self, imgs: &Tensor, noise: &Tensor) -> Result<MiramOutput> {
        self.forward_with_targets(imgs, noise, None)
    }

    /// The pre-training forward; `hires[i]`, when given, is the real target image of scale
    /// `i` (`[N, C, H s, W s]`) instead of the upsampled input.
    pub fn forward_with_targets(
        &self,
        imgs: &Tensor,
        noise: &Tensor,
        hires: Option<&[Option<Tensor>]>,
    ) -> Result<MiramOutput> {
        let x = self.precision.autocast(imgs)?;
        let (latent, masking) = self
            .encoder
            .forward_masked(&x, noise, self.cfg.mask_ratio)?;
        let preds = self.decoder.forward(&latent, &masking.ids_restore)?;
        // Back to the images' dtype (no cast at f32): the loss is computed in f32.
        let dt = imgs.dtype();
        let preds = preds
            .iter()
            .map(|p| p.to_dtype(dt))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let latent = latent.to_dtype(dt)?;
        let (loss, losses) = self.loss.compute(imgs, &preds, &masking.mask, hires)?;
        Ok(MiramOutput {
            loss,
            losses,
            preds,
            latent,
            masking,
        })
    }

    /// Redraws Performer random features (no-op without Performer decoders).
    pub fn redraw_features(&self, rng: &mut Rng) -> Result<()> {
        Ok(self.decoder.redraw_features(rng)?)
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.store.trainable_count()
    }

    /// Every tensor of a checkpoint: parameters, buffers and the computed sin-cos tables
    /// (written so that the PyTorch reference loads the file with `strict=True`).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let mut sd = self.store.state_dict();
        sd.insert("pos_embed".to_string(), self.encoder.pos_embed().clone());
        for (i, d) in self.decoder.decoders().iter().enumerate() {
            sd.insert(format!("decoders.{i}.pos_embed"), d.pos_embed().clone());
        }
        sd
    }

    /// Writes the weights as safetensors (atomically) with `format` and `config` metadata,
    /// plus `extra` entries.
    pub fn save(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut meta = extra.clone();
        meta.insert("format".to_string(), checkpoint::FORMAT.to_string());
        meta.insert("config".to_string(), self.cfg.to_json());
        checkpoint::write_safetensors(path, &self.state_dict(), &meta)
    }

    /// Loads a MIRAM checkpoint written by [`Miram::save`] (the configuration comes from its
    /// metadata); every tensor must match.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let ck = read_checkpoint(path, device)?;
        let cfg =
            match ck.metadata.get("config") {
                Some(c) => MiramConfig::from_json(c)?,
                None => return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    message:
                        "no `config` in the metadata; pass a configuration (Miram::from_checkpoint)"
                            .into(),
                }),
            };
        let (model, _) = Self::from_checkpoint(path, &cfg, 0, device, &|_| false)?;
        Ok(model)
    }

    /// Builds `cfg` from any checkpoint (MIRAM safetensors, official MAE `.pth`, timm
    /// safetensors), renaming MAE's decoder, recomputing the sin-cos tables and adapting the
    /// patch embedding to `cfg.in_chans`. Names for which `allow_missing` is true may be
    /// absent (they are initialised from `seed`); any other difference is an error listing
    /// every name and shape. Returns the report of what was found.
    pub fn from_checkpoint(
        path: &Path,
        cfg: &MiramConfig,
        seed: u64,
        device: &Device,
        allow_missing: &dyn Fn(&str) -> bool,
    ) -> Result<(Self, miram_nn::LoadReport)> {
        let ck = read_checkpoint(path, device)?;
        let tensors = prepare_for_model(ck.tensors, cfg.in_chans)?;
        let store = ParamStore::from_tensors(tensors, seed, DType::F32, device);
        let model = Self::new(cfg, store.root())?;
        let report = store.load_report();
        ensure_loaded(&report, path, allow_missing)?;
        Ok((model, report))
    }
}
