//! Using a fine-tuned classifier on new inputs (`miram predict`): the run's recorded
//! preprocessing ([`PREPROCESSING_FILE`]), model inputs made from crop files or from a full
//! mammogram with its ROI mask or a lesion box by the very functions that made the training
//! crops (`miram_cbis_ddsm::crop`), and their scores in batches.
//!
//! A crop file is taken as the lesion's box: the training rule (a square of side `max(w, h)`
//! centred on the box, enlarged by the run's margin, zero-padded) applied to the whole
//! file, then the same resize and normalisation. It equals the training crop exactly when
//! the file holds the square training cropped (a square box and no margin); CBIS-DDSM's own
//! cropped images are the lesion's tight box, so where that box is not square the scores
//! differ a little from the folder's, whose square holds the mammogram around the box.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::crop::{
    crop_file_at, crop_file_with_mask, lesion_crop_at, normalize, BBox, CropConfig, LesionCrop,
};
use miram_cbis_ddsm::dicom::{read_header, DecodeLimits};
use miram_cbis_ddsm::index::{image_kind_of, is_png, read_image, ImageKind};
use miram_cbis_ddsm::loader::{Batch, CropDataset, InMemoryCrops, Loader, LoaderConfig};
use miram_cbis_ddsm::tasks::{TargetKind, Task};
use miram_cbis_ddsm::DdsmError;
use miram_encoder::{ClassifierConfig, VitClassifier};

use crate::train::evaluate::probabilities;
use crate::train::finetune::load_classifier;
use crate::{Error, Result};

/// The run folder's file recording how the model's inputs were made (a [`CropConfig`]),
/// written by `finetune` when a run starts.
pub const PREPROCESSING_FILE: &str = "preprocessing.json";

/// The preprocessing recorded in the run folder `run` ([`PREPROCESSING_FILE`]); `None` for
/// a run written before it was recorded.
pub fn read_preprocessing(run: &Path) -> Result<Option<CropConfig>> {
    let p = run.join(PREPROCESSING_FILE);
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config(format!("{}: {e}", p.display())))
}

/// A fine-tuned classifier with what it needs to score new inputs.
#[derive(Debug)]
pub struct TrainedClassifier {
    /// The model.
    pub model: VitClassifier,
    /// Its configuration.
    pub config: ClassifierConfig,
    /// The class names, in the order of the scores.
    pub class_names: Vec<String>,
    /// The task it was trained for (a softmax over classes or a sigmoid per label).
    pub task: Task,
    /// How its inputs are made.
    pub preprocessing: CropConfig,
}

impl TrainedClassifier {
    /// Loads the classifier of `checkpoint` (a `best.safetensors` of `finetune`) for `task`
    /// with the inputs `preprocessing` makes; their size must be the encoder's.
    pub fn load(
        checkpoint: &Path,
        task: Task,
        preprocessing: CropConfig,
        device: &Device,
    ) -> Result<Self> {
        let (model, config, class_names) = load_classifier(checkpoint, device)?;
        if preprocessing.size as usize != config.encoder.img_size {
            return Err(Error::Config(format!(
                "the recorded preprocessing makes {} px crops, but the model of {} takes {} px",
                preprocessing.size,
                checkpoint.display(),
                config.encoder.img_size
            )));
        }
        let preprocessing = CropConfig {
            hires_scale: None,
            ..preprocessing
        };
        Ok(Self {
            model,
            config,
            class_names,
            task,
            preprocessing,
        })
    }

    /// Whether the scores are one sigmoid per label (else a softmax over the classes).
    pub fn multilabel(&self) -> bool {
        matches!(
            self.task.kind(self.config.num_classes),
            TargetKind::MultiHot(_)
        )
    }

    /// The scores of `n` normalised inputs (made by [`input_pixels`]), `batch_size` at a
    /// time on the model's device; `progress` is told how many are done after each batch.
    ///
    /// # Shapes
    /// `pixels` is `[n, size, size]`, row-major; returns `n` rows of `num_classes` scores.
    pub fn score(
        &self,
        pixels: Vec<f32>,
        batch_size: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f64>>> {
        let size = self.preprocessing.size as usize;
        let data = Arc::new(InMemoryCrops::from_arrays(pixels, size)?);
        let mut scores = Vec::with_capacity(data.len());
        let multilabel = self.multilabel();
        for_each_batch_as(
            &self.model,
            data,
            batch_size,
            multilabel,
            device,
            &mut |_, probs| {
                scores.extend(probs);
                progress(scores.len());
                Ok(())
            },
        )?;
        Ok(scores)
    }
}

/// Runs `model` over every sample of `dataset` in order (no augmentation) on `device`,
/// handing each batch and its scores ([`probabilities`]) to `f`.
pub fn for_each_batch<D: CropDataset + 'static>(
    model: &VitClassifier,
    dataset: Arc<D>,
    batch_size: usize,
    device: &Device,
    mut f: impl FnMut(Batch, Vec<Vec<f64>>) -> Result<()>,
) -> Result<()> {
    let multilabel = matches!(dataset.target_kind(), TargetKind::MultiHot(_));
    for_each_batch_as(model, dataset, batch_size, multilabel, device, &mut f)
}

/// [`for_each_batch`] with the kind of scores given (a dataset without targets does not say).
fn for_each_batch_as<D: CropDataset + 'static>(
    model: &VitClassifier,
    dataset: Arc<D>,
    batch_size: usize,
    multilabel: bool,
    device: &Device,
    f: &mut dyn FnMut(Batch, Vec<Vec<f64>>) -> Result<()>,
) -> Result<()> {
    let mut lc = LoaderConfig::eval(batch_size);
    lc.channels = model.config().encoder.in_chans;
    lc.workers = 1;
    let loader = Loader::new(dataset, AugmentConfig::none(), lc, device.clone())?;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let probs = probabilities(model, &batch.images, multilabel)?;
        f(batch, probs)?;
    }
    Ok(())
}

/// Where the lesion of a full mammogram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LesionRegion {
    /// An ROI mask file (DICOM, PNG or JPEG) of the mammogram's size, or a scaled copy of it
    /// (the same aspect ratio), as training's masks are read.
    Mask(PathBuf),
    /// A box in the mammogram's pixel coordinates.
    Box(BBox),
}

/// One input of `miram predict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A lesion crop file (DICOM, 8- or 16-bit PNG, JPEG).
    Crop(PathBuf),
    /// A full mammogram and where its lesion is.
    FullImage {
        /// The mammogram (DICOM, PNG or JPEG).
        image: PathBuf,
        /// The lesion.
        region: LesionRegion,
    },
}

impl Input {
    /// The file the scores are of.
    pub fn file(&self) -> &Path {
        match self {
            Input::Crop(p) => p,
            Input::FullImage { image, .. } => image,
        }
    }
}

/// The normalised model input of `input`, made as training made its crops: the lesion box
/// (the crop file's extent, the ROI mask's bounding box, or the given box) through
/// [`lesion_crop_at`] / [`crop_file_at`] with `pre`'s margin, size and filter, then
/// `pre`'s normalisation.
///
/// # Shapes
/// Returns `[size, size]`, row-major.
pub fn input_pixels(input: &Input, pre: &CropConfig, limits: &DecodeLimits) -> Result<Vec<f32>> {
    let resizer = &mut miram_cbis_ddsm::crop::CropResizer::new();
    let crop: LesionCrop = match input {
        Input::Crop(path) => {
            let img = read_image(path, limits)?;
            let (w, h) = (img.width(), img.height());
            let whole = BBox {
                x0: 0,
                y0: 0,
                x1: w,
                y1: h,
            };
            lesion_crop_at(&img, whole, (w, h), pre, resizer)?
        }
        Input::FullImage { image, region } => {
            let (iw, ih) = image_size(image, limits)?;
            match region {
                LesionRegion::Mask(mask_path) => {
                    let mask = read_image(mask_path, limits)?;
                    check_mask_size(mask_path, (mask.width(), mask.height()), (iw, ih))?;
                    crop_file_with_mask(image, &mask, pre, limits, resizer)
                        .map_err(|e| with_file(e, mask_path))?
                }
                LesionRegion::Box(b) => {
                    check_box(image, b, (iw, ih))?;
                    crop_file_at(image, *b, (iw, ih), pre, limits, resizer)?
                }
            }
        }
    };
    let mut out = vec![0f32; crop.image.len()];
    let px: Vec<u16> = crop.image.iter().copied().collect();
    normalize(&px, crop.max_value, &pre.normalization, &mut out);
    Ok(out)
}

/// An error about an ROI mask without its file named (an empty mask) names it.
fn with_file(e: DdsmError, mask: &Path) -> Error {
    match e {
        DdsmError::Invalid { what, message } if what == "ROI mask" => DdsmError::Invalid {
            what: format!("ROI mask {}", mask.display()),
            message,
        }
        .into(),
        e => e.into(),
    }
}

/// The width and height of an image: from the header of a DICOM file, else by decoding it.
fn image_size(path: &Path, limits: &DecodeLimits) -> Result<(u32, u32)> {
    if !is_png(path)? && image_kind_of(path)? == ImageKind::Dicom {
        let h = read_header(path)?;
        return Ok((h.columns, h.rows));
    }
    let img = read_image(path, limits)?;
    Ok((img.width(), img.height()))
}

/// The largest difference between the two scale factors of a mask and its image (width and
/// height) for the mask to count as a scaled copy.
const MASK_SCALE_TOLERANCE: f64 = 0.01;

/// Refuses a mask that is neither the image's size nor a scaled copy of it (the scale
/// factors of width and height within 1% of each other).
fn check_mask_size(mask: &Path, (mw, mh): (u32, u32), (iw, ih): (u32, u32)) -> Result<()> {
    if (mw, mh) == (iw, ih) {
        return Ok(());
    }
    let (sx, sy) = (mw as f64 / iw.max(1) as f64, mh as f64 / ih.max(1) as f64);
    if (sx - sy).abs() <= MASK_SCALE_TOLERANCE * sx.max(sy) {
        return Ok(());
    }
    Err(DdsmError::Invalid {
        what: format!("ROI mask {}", mask.display()),
        message: format!(
            "it is {mw} x {mh} pixels, the image {iw} x {ih}: a mask must have the image's size (or be a scaled copy of it)"
        ),
    }
    .into())
}

/// Refuses an empty box or one that leaves the image.
fn check_box(image: &Path, b: &BBox, (iw, ih): (u32, u32)) -> Result<()> {
    if b.width() == 0 || b.height() == 0 || b.x1 > iw || b.y1 > ih {
        return Err(DdsmError::Invalid {
            what: format!("--box {},{},{},{}", b.x0, b.y0, b.width(), b.height()),
            message: format!(
                "x,y,w,h must give a non-empty box inside the {iw} x {ih} image {}",
                image.display()
            ),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use miram_cbis_ddsm::crop::{extract_square, resize_square, square_box, Normalization};
    use miram_cbis_ddsm::dicom::GrayImage;

    fn ramp(w: u32, h: u32) -> GrayImage {
        let px: Vec<u16> = (0..w * h).map(|i| (i * 37 % 65521) as u16).collect();
        GrayImage::from_vec(w, h, px, u16::MAX).expect("w x h")
    }

    fn write_png16(path: &Path, img: &GrayImage) {
        let f = std::fs::File::create(path).expect("create");
        let mut enc = png::Encoder::new(f, img.width(), img.height());
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Sixteen);
        let mut w = enc.write_header().expect("header");
        let bytes: Vec<u8> = img
            .as_slice()
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        w.write_image_data(&bytes).expect("data");
    }

    #[test]
    fn a_square_crop_file_gives_the_training_crop_and_a_box_the_same() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("tmp"), e))?;
        let full = ramp(40, 30);
        let pre = CropConfig {
            size: 8,
            normalization: Normalization::PerCrop,
            ..CropConfig::paper()
        };
        let mut r = miram_cbis_ddsm::crop::CropResizer::new();
        // The training crop of the box x 5..17, y 4..10 (12 x 6): a 12 px square at y 1.
        let b = BBox {
            x0: 5,
            y0: 4,
            x1: 17,
            y1: 10,
        };
        let sq = square_box(&b, 0.0);
        let patch = extract_square(&full, &sq);
        let want_px = resize_square(patch.view(), 8, pre.filter, &mut r)?;
        let mut want = vec![0f32; 64];
        normalize(
            want_px.as_slice().expect("standard layout"),
            u16::MAX,
            &pre.normalization,
            &mut want,
        );
        // The square as a 16-bit PNG crop file.
        let crop_path = dir.path().join("crop.png");
        write_png16(&crop_path, &GrayImage::new(patch, u16::MAX));
        let got = input_pixels(&Input::Crop(crop_path), &pre, &DecodeLimits::mammogram())?;
        assert_eq!(got, want);
        // The full image as PNG with the box.
        let full_path = dir.path().join("full.png");
        write_png16(&full_path, &full);
        let input = Input::FullImage {
            image: full_path.clone(),
            region: LesionRegion::Box(b),
        };
        let got = input_pixels(&input, &pre, &DecodeLimits::mammogram())?;
        assert_eq!(got, want);
        // A box leaving the image and a mask of another shape are refused by name.
        let outside = Input::FullImage {
            image: full_path.clone(),
            region: LesionRegion::Box(BBox {
                x0: 30,
                y0: 0,
                x1: 41,
                y1: 5,
            }),
        };
        let e = input_pixels(&outside, &pre, &DecodeLimits::mammogram())
            .expect_err("outside")
            .to_string();
        assert!(
            e.contains("--box 30,0,11,5") && e.contains("40 x 30"),
            "{e}"
        );
        let mask_path = dir.path().join("mask.png");
        write_png16(&mask_path, &ramp(10, 10));
        let bad = Input::FullImage {
            image: full_path,
            region: LesionRegion::Mask(mask_path),
        };
        let e = input_pixels(&bad, &pre, &DecodeLimits::mammogram())
            .expect_err("mask size")
            .to_string();
        assert!(e.contains("10 x 10") && e.contains("40 x 30"), "{e}");
        Ok(())
    }

    #[test]
    fn masks_of_the_image_size_or_a_scaled_copy_pass() {
        let p = Path::new("m.png");
        assert!(check_mask_size(p, (40, 30), (40, 30)).is_ok());
        assert!(check_mask_size(p, (20, 15), (40, 30)).is_ok());
        assert!(check_mask_size(p, (20, 20), (40, 30)).is_err());
    }
}
