//! Drawing the labels of synthetic abnormalities from the real joint frequencies, and
//! turning labels into what is drawn.

use std::collections::BTreeMap;

use miram_rand::Rng;

use super::calc::{CalcSpec, Distribution, Morph};
use super::mass::{Body, Margin, MassSpec};
use super::render::LesionSpec;
use super::tables;
use crate::records::{
    AbnormalityType, Pathology, CALC_DISTRIBUTION, CALC_TYPE, MASS_MARGINS_COLUMN, MASS_SHAPE,
};

/// The labels of one abnormality, as its CSV row will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LesionLabels {
    /// Mass or calcification.
    pub kind: AbnormalityType,
    /// The pathology.
    pub pathology: Pathology,
    /// The categorical columns (header names as in the mass files) split into parts; empty
    /// for `NA`.
    pub categories: BTreeMap<String, Vec<String>>,
    /// BI-RADS assessment.
    pub assessment: u8,
    /// Subtlety rating.
    pub subtlety: u8,
}

fn parts(value: &str) -> Vec<String> {
    if value == "NA" {
        Vec::new()
    } else {
        value.split('-').map(str::to_string).collect()
    }
}

fn number(value: &str) -> u8 {
    value.parse().unwrap_or(0)
}

/// Draws the labels of one abnormality of type `kind`: the pathology jointly with the margins
/// (masses) or the calc type (calcifications), everything else given the pathology.
pub fn draw_labels(kind: AbnormalityType, rng: &mut Rng) -> LesionLabels {
    let mut categories = BTreeMap::new();
    let (pathology, assessment, subtlety) = match kind {
        AbnormalityType::Mass => {
            let (margins, p) = tables::sample_joint(tables::MASS_MARGINS, rng);
            let shape = tables::sample_given(tables::MASS_SHAPE, p, rng);
            categories.insert(MASS_SHAPE.to_string(), parts(shape));
            categories.insert(MASS_MARGINS_COLUMN.to_string(), parts(margins));
            (
                p,
                tables::sample_given(tables::MASS_ASSESSMENT, p, rng),
                tables::sample_given(tables::MASS_SUBTLETY, p, rng),
            )
        }
        AbnormalityType::Calcification => {
            let (ty, p) = tables::sample_joint(tables::CALC_TYPE, rng);
            let dist = tables::sample_given(tables::CALC_DISTRIBUTION, p, rng);
            categories.insert(CALC_TYPE.to_string(), parts(ty));
            categories.insert(CALC_DISTRIBUTION.to_string(), parts(dist));
            (
                p,
                tables::sample_given(tables::CALC_ASSESSMENT, p, rng),
                tables::sample_given(tables::CALC_SUBTLETY, p, rng),
            )
        }
    };
    LesionLabels {
        kind,
        pathology,
        categories,
        assessment: number(assessment),
        subtlety: number(subtlety),
    }
}

/// Draws a breast density given the pathology of the image's first abnormality.
pub fn draw_density(kind: AbnormalityType, pathology: Pathology, rng: &mut Rng) -> u8 {
    let table = match kind {
        AbnormalityType::Mass => tables::MASS_DENSITY,
        AbnormalityType::Calcification => tables::CALC_DENSITY,
    };
    number(tables::sample_given(table, pathology, rng))
}

/// Draws the number of abnormalities on an image, at most `max`.
pub fn draw_count(kind: AbnormalityType, max: u32, rng: &mut Rng) -> u32 {
    let table = match kind {
        AbnormalityType::Mass => tables::MASS_ABNORMALITIES_PER_IMAGE,
        AbnormalityType::Calcification => tables::CALC_ABNORMALITIES_PER_IMAGE,
    };
    tables::sample_count(table, rng).clamp(1, max.max(1))
}

/// What to draw for an abnormality with these labels. `seed` keys the lesion's own stream
/// (shared by its views), `rng` draws its size.
pub fn lesion_spec(labels: &LesionLabels, seed: u64, rng: &mut Rng) -> LesionSpec {
    let malignant = labels.pathology.is_malignant();
    // Subtlety 0..=5 (5 = obvious) sets the contrast.
    let subtle = labels.subtlety.min(5) as f32;
    let get = |c: &str| labels.categories.get(c).cloned().unwrap_or_default();
    match labels.kind {
        AbnormalityType::Mass => {
            let shape = get(MASS_SHAPE);
            let has = |s: &str| shape.iter().any(|p| p == s);
            let body = shape
                .iter()
                .find_map(|p| match p.as_str() {
                    "ROUND" => Some(Body::Round),
                    "OVAL" => Some(Body::Oval),
                    "LOBULATED" => Some(Body::Lobulated),
                    "IRREGULAR" => Some(Body::Irregular),
                    "LYMPH_NODE" => Some(Body::LymphNode),
                    _ => None,
                })
                .or_else(|| {
                    shape.iter().find_map(|p| match p.as_str() {
                        "FOCAL_ASYMMETRIC_DENSITY" => Some(Body::FocalAsymmetry),
                        "ASYMMETRIC_BREAST_TISSUE" => Some(Body::AsymmetricTissue),
                        "ARCHITECTURAL_DISTORTION" => Some(Body::Distortion),
                        _ => None,
                    })
                })
                .unwrap_or(Body::Irregular);
            let margins: Vec<Margin> = get(MASS_MARGINS_COLUMN)
                .iter()
                .filter_map(|p| Margin::from_part(p))
                .collect();
            let mut radius_mm = (rng.normal_f64() * 0.3 + 7.0f64.ln())
                .exp()
                .clamp(3.5, 15.0) as f32;
            if body == Body::AsymmetricTissue {
                radius_mm *= 1.8;
            }
            LesionSpec::Mass(MassSpec {
                body,
                distortion: has("ARCHITECTURAL_DISTORTION"),
                margins,
                malignant,
                radius_mm,
                amplitude: 0.05 + 0.025 * subtle,
                seed,
            })
        }
        AbnormalityType::Calcification => {
            let mut morphs: Vec<Morph> = get(CALC_TYPE)
                .iter()
                .filter_map(|p| Morph::from_part(p))
                .collect();
            morphs.dedup();
            let mut distributions: Vec<Distribution> = get(CALC_DISTRIBUTION)
                .iter()
                .filter_map(|p| Distribution::from_part(p))
                .collect();
            distributions.dedup();
            LesionSpec::Calc(CalcSpec {
                morphs,
                distributions,
                malignant,
                amplitude: 0.14 + 0.06 * subtle,
                seed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_consistent_with_the_tables() {
        let mut rng = Rng::new(5);
        for _ in 0..500 {
            let l = draw_labels(AbnormalityType::Mass, &mut rng);
            let key = tables::category_key(&l.categories[MASS_MARGINS_COLUMN]);
            let col = tables::PATHOLOGIES
                .iter()
                .position(|&p| p == l.pathology)
                .unwrap_or(9);
            let count = tables::MASS_MARGINS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, c)| c[col]);
            assert!(count.is_some_and(|c| c > 0), "{key} {:?}", l.pathology);
            assert!(l.assessment <= 5 && l.subtlety <= 5);
            let c = draw_labels(AbnormalityType::Calcification, &mut rng);
            assert!(
                c.categories.contains_key(CALC_TYPE)
                    && c.categories.contains_key(CALC_DISTRIBUTION)
            );
        }
    }
}
