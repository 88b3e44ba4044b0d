//! A generator of CBIS-DDSM-shaped data: the four case-description CSVs with the real
//! columns, and 16-bit MONOCHROME2 DICOM files (full mammogram, lesion crop and ROI mask per
//! abnormality) laid out as the CSV paths say or as a TCIA download writes them.
//!
//! The real images are a 163 GB download (TCIA, DOI 10.7937/K9/TCIA.2016.7O02S9CY); the
//! generator lets the same loading code run in tests and in the quick start. Its images look
//! like mammograms (breast outline, power-law tissue texture whose density follows BI-RADS
//! density 1-4, pectoral muscle in MLO views, ducts and vessels), its lesions are drawn as
//! their labels say (mass shape and margins, calcification type and distribution), the
//! labels follow the joint frequencies of the real CSVs ([`tables`]), and malignancy is
//! decided by fine detail at the lesion border, so that multi-scale reconstruction has
//! something to find.
//!
//! Everything is seeded: planning draws from `Rng::keyed(seed, ..)` and every image from its
//! own keyed stream, so the same configuration writes byte-identical files whatever the
//! number of threads.

pub mod anatomy;
pub mod calc;
pub mod canvas;
pub mod labels;
pub mod mass;
pub mod render;
pub mod tables;
pub mod texture;
pub mod write;

use std::collections::BTreeMap;

use miram_rand::Rng;
use serde::{Deserialize, Serialize};

pub use labels::LesionLabels;
pub use render::{render, ImageSpec, LesionSpec, RenderedImage};
pub use write::{synthesize, SynthAbnormality, SynthImage, SynthManifest, SynthProgress};

use crate::error::{DdsmError, Result};
use crate::records::{AbnormalityType, OfficialSplit, Pathology, Side, View};

/// How the generated files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SynthLayout {
    /// Files exactly where the CSV paths say:
    /// `<root>/<case folder>/<StudyInstanceUID>/<SeriesInstanceUID>/00000N.dcm`.
    Literal,
    /// As the NBIA Data Retriever writes a TCIA download:
    /// `<root>/CBIS-DDSM/<case folder>/<MM-DD-YYYY>-DDSM-NA-<5 digits>/1.000000-<series
    /// description>-<5 digits>/1-N.dcm`, the CSV paths then not matching the files.
    Tcia,
}

/// The configuration of the generator, with presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// The seed of everything drawn.
    pub seed: u64,
    /// The number of patients.
    pub patients: usize,
    /// Fraction of patients with masses (the others have calcifications).
    pub mass_fraction: f64,
    /// Fraction of the patients of each abnormality type in the official test set.
    pub test_fraction: f64,
    /// Nominal full-image width in pixels.
    pub image_width: u32,
    /// Nominal full-image height in pixels.
    pub image_height: u32,
    /// Relative jitter of each image's size (real scans vary).
    pub size_jitter: f64,
    /// The physical width of the nominal image in millimetres (sets pixels per millimetre,
    /// hence the size of every anatomical structure in pixels).
    pub field_width_mm: f32,
    /// Probability that a breast with findings has both views (CC and MLO).
    pub both_views: f64,
    /// Probability that a patient has findings in both breasts.
    pub both_breasts: f64,
    /// The most abnormalities drawn on one image.
    pub max_abnormalities_per_image: u32,
    /// Spectral exponent of the tissue texture (about 3 for mammograms).
    pub texture_beta: f32,
    /// Where the files go.
    pub layout: SynthLayout,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl SynthConfig {
    /// For tests and the quick start: 30 patients, both abnormality types and both official
    /// splits, full images about 512 x 832 pixels (a few seconds to write).
    pub fn small() -> Self {
        Self {
            seed: 0,
            patients: 30,
            mass_fraction: 0.5,
            test_fraction: 0.2,
            image_width: 512,
            image_height: 832,
            size_jitter: 0.05,
            field_width_mm: 160.0,
            both_views: 0.85,
            both_breasts: 0.08,
            max_abnormalities_per_image: 3,
            texture_beta: 3.0,
            layout: SynthLayout::Literal,
        }
    }

    /// Full images of realistic size (3000 x 5000 pixels, about 53 micrometres per pixel, as
    /// the real scans), 12 patients: for benchmarks of decoding and cropping.
    pub fn medium() -> Self {
        Self {
            patients: 12,
            image_width: 3000,
            image_height: 5000,
            max_abnormalities_per_image: 5,
            ..Self::small()
        }
    }

    /// The size of the real collection (1566 patients at 3000 x 5000 pixels; about 100 GB
    /// written).
    pub fn full() -> Self {
        Self {
            patients: 1566,
            max_abnormalities_per_image: 7,
            ..Self::medium()
        }
    }

    /// The same configuration with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same configuration with another layout.
    pub fn with_layout(mut self, layout: SynthLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Checks the values, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| {
            Err(DdsmError::Invalid {
                what: format!("SynthConfig.{what}"),
                message,
            })
        };
        if self.patients == 0 {
            return bad("patients", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.mass_fraction) {
            return bad(
                "mass_fraction",
                format!("{} is not in [0, 1]", self.mass_fraction),
            );
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return bad(
                "test_fraction",
                format!("{} is not in [0, 1)", self.test_fraction),
            );
        }
        if self.image_width < 128 || self.image_height < 128 {
            return bad(
                "image_width/image_height",
                format!(
                    "{} x {} is below 128 x 128",
                    self.image_width, self.image_height
                ),
            );
        }
        if (self.image_width as u64) * (self.image_height as u64) > 40_000_000 {
            return bad(
                "image_width/image_height",
                format!(
                    "{} x {} is over 40 million pixels",
                    self.image_width, self.image_height
                ),
            );
        }
        if !(0.0..0.5).contains(&self.size_jitter) {
            return bad(
                "size_jitter",
                format!("{} is not in [0, 0.5)", self.size_jitter),
            );
        }
        if self.field_width_mm.is_nan() || self.field_width_mm <= 10.0 {
            return bad(
                "field_width_mm",
                format!("{} is not above 10", self.field_width_mm),
            );
        }
        if !(0.0..=1.0).contains(&self.both_views) || !(0.0..=1.0).contains(&self.both_breasts) {
            return bad(
                "both_views/both_breasts",
                format!(
                    "{} and {} must be in [0, 1]",
                    self.both_views, self.both_breasts
                ),
            );
        }
        if self.max_abnormalities_per_image == 0 {
            return bad("max_abnormalities_per_image", "must be at least 1".into());
        }
        if !(1.0..=4.0).contains(&self.texture_beta) {
            return bad(
                "texture_beta",
                format!("{} is not in [1, 4]", self.texture_beta),
            );
        }
        Ok(())
    }
}

/// The DICOM identifiers of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUids {
    /// StudyInstanceUID.
    pub study: String,
    /// SeriesInstanceUID.
    pub series: String,
    /// SOPInstanceUID.
    pub sop: String,
}

/// One planned abnormality.
#[derive(Debug, Clone)]
pub struct PlannedLesion {
    /// The abnormality id within its image (1-based).
    pub abnormality_id: u32,
    /// Its labels.
    pub labels: LesionLabels,
    /// The seed of its own stream (shared by its views).
    pub seed: u64,
    /// The folder of its crop and mask, e.g. `Mass-Training_P_00001_LEFT_CC_1`.
    pub folder: String,
    /// Study and series of the crop and mask (they share a series, as in the real CSVs).
    pub study_uid: String,
    /// The series.
    pub series_uid: String,
    /// SOPInstanceUID of the crop.
    pub crop_sop: String,
    /// SOPInstanceUID of the mask.
    pub mask_sop: String,
    /// The study date (MM-DD-YYYY) used in TCIA folder names.
    pub date: String,
    /// In the TCIA layout: crop and mask in one series folder (`1-1.dcm`, `1-2.dcm`) rather
    /// than one folder each.
    pub tcia_shared_folder: bool,
}

/// One planned full image and its abnormalities.
#[derive(Debug, Clone)]
pub struct PlannedImage {
    /// Index of the image (its random stream key).
    pub index: usize,
    /// The patient, e.g. `P_00001`.
    pub patient_id: String,
    /// The official split.
    pub split: OfficialSplit,
    /// Mass or calcification.
    pub kind: AbnormalityType,
    /// The breast.
    pub side: Side,
    /// The view.
    pub view: View,
    /// BI-RADS density.
    pub density: u8,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The case folder, e.g. `Mass-Training_P_00001_LEFT_CC`.
    pub folder: String,
    /// The full image's identifiers.
    pub uids: FileUids,
    /// The study date (MM-DD-YYYY).
    pub date: String,
    /// The abnormalities, by id.
    pub lesions: Vec<PlannedLesion>,
}

/// A DICOM UID under the `2.25` root (a UUID-derived UID, ISO/IEC 9834-8), 38 or 39
/// digits after the root.
fn uid(rng: &mut Rng) -> String {
    let v = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) | (1u128 << 126);
    format!("2.25.{v}")
}

fn date(rng: &mut Rng, years: &[u32]) -> String {
    let y = years[rng.index(years.len())];
    format!("{:02}-{:02}-{}", 1 + rng.index(12), 1 + rng.index(28), y)
}

/// Key of the planning stream (distinct from the per-image keys `[index]`).
const PLAN_KEY: [u64; 2] = [0x706c_616e, 0];

/// Plans the dataset: patients, their images and abnormalities with labels and UIDs. Cheap
/// and sequential; rendering happens per image afterwards.
pub fn plan(cfg: &SynthConfig) -> Result<Vec<PlannedImage>> {
    cfg.validate()?;
    let mut rng = Rng::keyed(cfg.seed, &PLAN_KEY);
    let n = cfg.patients;
    let (kind, split) = types_and_splits(cfg, &mut rng);
    let mut images = Vec::new();
    let mut patient_number = 0u32;
    for p in 0..n {
        patient_number += 1 + rng.below(4) as u32;
        let patient_id = format!("P_{patient_number:05}");
        let (kind, split) = (kind[p], split[p]);
        let mut density = None;
        for side in draw_sides(cfg, &mut rng) {
            let count = labels::draw_count(kind, cfg.max_abnormalities_per_image, &mut rng);
            let lesion_labels: Vec<LesionLabels> = (0..count)
                .map(|_| labels::draw_labels(kind, &mut rng))
                .collect();
            let density = *density.get_or_insert_with(|| {
                labels::draw_density(kind, lesion_labels[0].pathology, &mut rng)
            });
            let lesion_seeds: Vec<u64> = (0..count).map(|_| rng.next_u64()).collect();
            let breast = PlannedBreast {
                patient_id: &patient_id,
                kind,
                split,
                side,
                density,
                lesion_labels: &lesion_labels,
                lesion_seeds: &lesion_seeds,
            };
            for view in draw_views(cfg, &mut rng) {
                let image = plan_view(cfg, &mut rng, &breast, view, images.len());
                images.push(image);
            }
        }
    }
    Ok(images)
}

/// The abnormality type and official split of each patient, by a seeded permutation, so
/// that every preset has both types and both splits whenever there are patients enough.
fn types_and_splits(
    cfg: &SynthConfig,
    rng: &mut Rng,
) -> (Vec<AbnormalityType>, Vec<OfficialSplit>) {
    let n = cfg.patients;
    let order = rng.permutation(n);
    let n_mass = ((n as f64) * cfg.mass_fraction).round() as usize;
    let mut kind = vec![AbnormalityType::Mass; n];
    for &p in &order[n_mass.min(n)..] {
        kind[p] = AbnormalityType::Calcification;
    }
    let mut split = vec![OfficialSplit::Train; n];
    for k in [AbnormalityType::Mass, AbnormalityType::Calcification] {
        let members: Vec<usize> = order.iter().copied().filter(|&p| kind[p] == k).collect();
        let mut n_test = ((members.len() as f64) * cfg.test_fraction).round() as usize;
        if cfg.test_fraction > 0.0 && members.len() >= 2 {
            n_test = n_test.max(1);
        }
        for &p in members.iter().take(n_test) {
            split[p] = OfficialSplit::Test;
        }
    }
    (kind, split)
}

/// The breasts imaged for one patient, in order: one side drawn, the other with probability
/// `cfg.both_breasts`.
fn draw_sides(cfg: &SynthConfig, rng: &mut Rng) -> Vec<Side> {
    let first_side = if rng.bernoulli(0.5) {
        Side::Left
    } else {
        Side::Right
    };
    let mut sides = vec![first_side];
    if rng.bernoulli(cfg.both_breasts) {
        sides.push(match first_side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        });
    }
    sides.sort();
    sides
}

/// The views of one breast: both with probability `cfg.both_views`, else CC or MLO.
fn draw_views(cfg: &SynthConfig, rng: &mut Rng) -> Vec<View> {
    if rng.bernoulli(cfg.both_views) {
        vec![View::Cc, View::Mlo]
    } else if rng.bernoulli(0.5) {
        vec![View::Cc]
    } else {
        vec![View::Mlo]
    }
}

/// What every view of one breast shares: the patient, type, split, side, density and the
/// lesions' labels and seeds.
struct PlannedBreast<'a> {
    patient_id: &'a str,
    kind: AbnormalityType,
    split: OfficialSplit,
    side: Side,
    density: u8,
    lesion_labels: &'a [LesionLabels],
    lesion_seeds: &'a [u64],
}

/// Plans one view of a breast (image `index` of the dataset): its folder, size, UIDs,
/// date and lesions.
fn plan_view(
    cfg: &SynthConfig,
    rng: &mut Rng,
    breast: &PlannedBreast<'_>,
    view: View,
    index: usize,
) -> PlannedImage {
    let folder = format!(
        "{}-{}_{}_{}_{}",
        breast.kind.folder_prefix(),
        breast.split.folder_word(),
        breast.patient_id,
        breast.side.as_csv(),
        view.as_csv()
    );
    let jitter = |rng: &mut Rng| 1.0 + rng.uniform_range(-cfg.size_jitter, cfg.size_jitter);
    let width = (cfg.image_width as f64 * jitter(rng)).round().max(128.0) as u32;
    let height = (cfg.image_height as f64 * jitter(rng)).round().max(128.0) as u32;
    let uids = FileUids {
        study: uid(rng),
        series: uid(rng),
        sop: uid(rng),
    };
    let image_date = date(rng, &[2016, 2017]);
    let lesions = breast
        .lesion_labels
        .iter()
        .zip(breast.lesion_seeds)
        .enumerate()
        .map(|(i, (l, &seed))| PlannedLesion {
            abnormality_id: i as u32 + 1,
            labels: l.clone(),
            seed,
            folder: format!("{folder}_{}", i + 1),
            study_uid: uid(rng),
            series_uid: uid(rng),
            crop_sop: uid(rng),
            mask_sop: uid(rng),
            date: date(rng, &[2017]),
            tcia_shared_folder: rng.bernoulli(0.7),
        })
        .collect();
    PlannedImage {
        index,
        patient_id: breast.patient_id.to_string(),
        split: breast.split,
        kind: breast.kind,
        side: breast.side,
        view,
        density: breast.density,
        width,
        height,
        folder,
        uids,
        date: image_date,
        lesions,
    }
}

impl PlannedImage {
    /// What to render for this image under `cfg`.
    pub fn image_spec(&self, cfg: &SynthConfig) -> ImageSpec {
        let px_per_mm = cfg.image_width as f32 / cfg.field_width_mm;
        ImageSpec {
            width: self.width,
            height: self.height,
            px_per_mm,
            side: self.side,
            view: self.view,
            density: self.density,
            beta: cfg.texture_beta,
            lesions: self
                .lesions
                .iter()
                .map(|l| labels::lesion_spec(&l.labels, l.seed, &mut Rng::keyed(l.seed, &[1])))
                .collect(),
            seed: cfg.seed,
            key: self.index as u64,
        }
    }
}

/// The labels of the planned abnormalities by pathology, for summaries.
pub fn pathology_counts(
    images: &[PlannedImage],
) -> BTreeMap<(AbnormalityType, OfficialSplit, Pathology), usize> {
    let mut out = BTreeMap::new();
    for im in images {
        for l in &im.lesions {
            *out.entry((im.kind, im.split, l.labels.pathology))
                .or_insert(0) += 1;
        }
    }
    out
}
