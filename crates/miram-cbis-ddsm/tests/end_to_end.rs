//! End to end on generated data: write a small dataset in each layout, index it with the
//! crate's resolver, build the crop cache, read crops for every task through the loader, and
//! check counts, labels, boxes and shapes against what the generator wrote (its manifest).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use candle_core::Device;
use miram_cbis_ddsm::augment::AugmentConfig;
use miram_cbis_ddsm::crop::{
    square_box, BBox, BackgroundConfig, CacheConfig, CacheEntryKind, CropCache, CropConfig,
};
use miram_cbis_ddsm::index::{build_index, no_progress, IndexOptions};
use miram_cbis_ddsm::loader::{BatchTargets, CachedCrops, CropDataset, Loader, LoaderConfig};
use miram_cbis_ddsm::split::{split, SplitConfig};
use miram_cbis_ddsm::synth::{
    synthesize, SynthAbnormality, SynthConfig, SynthLayout, SynthManifest,
};
use miram_cbis_ddsm::tasks::{Target, Task};
use miram_cbis_ddsm::{
    read_gray, AbnormalityType, CaseRecord, DecodeLimits, Layout, OfficialSplit, MASS_MARGINS,
};

const SIZE: u32 = 32;

fn config(layout: SynthLayout) -> SynthConfig {
    SynthConfig {
        patients: 12,
        image_width: 320,
        image_height: 520,
        ..SynthConfig::small()
    }
    .with_seed(21)
    .with_layout(layout)
}

/// The manifest entry of a record: by CSV file name and row.
fn truth<'a>(m: &'a SynthManifest, r: &CaseRecord) -> &'a SynthAbnormality {
    let name = r
        .source
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    m.abnormalities
        .iter()
        .find(|a| a.csv_file == name && a.csv_row == r.source.row)
        .unwrap_or_else(|| panic!("no manifest entry for {}", r.source))
}

/// The expected target of a task from the generator's labels (`None`: left out).
fn expected_target(task: &Task, a: &SynthAbnormality) -> Option<Target> {
    let malignant = a.pathology.is_malignant();
    match task {
        Task::PathologyBinary => Some(Target::Class(malignant as u32)),
        Task::Pathology4 => Some(Target::Class(
            match a.abnormality_type {
                AbnormalityType::Mass => 0,
                AbnormalityType::Calcification => 2,
            } + malignant as u32,
        )),
        Task::MassMargins => {
            let parts = a.categories.get("mass margins").filter(|p| !p.is_empty())?;
            Some(Target::MultiHot(
                MASS_MARGINS
                    .iter()
                    .map(|m| parts.iter().any(|p| p == m) as u8 as f32)
                    .collect(),
            ))
        }
        Task::Categorical { column } => {
            let parts = a.categories.get(column).filter(|p| !p.is_empty())?;
            let vocab = miram_cbis_ddsm::records::category_vocabulary(column)?;
            Some(Target::MultiHot(
                vocab
                    .iter()
                    .map(|m| parts.iter().any(|p| p == m) as u8 as f32)
                    .collect(),
            ))
        }
    }
}

fn run(layout: SynthLayout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    let m = synthesize(&root, &config(layout), &|_| {}).expect("synthesize");
    let real_root = root.canonicalize().expect("canonical root");

    // Index: every row resolved, to the generator's files (crop and mask by content).
    let index = build_index(&root, &IndexOptions::default(), &no_progress).expect("index");
    assert_eq!(
        index.layout,
        match layout {
            SynthLayout::Literal => Layout::Literal,
            SynthLayout::Tcia => Layout::Tcia,
        }
    );
    assert!(index.unresolved.is_empty(), "{:?}", index.unresolved);
    assert_eq!(index.entries.len(), m.abnormalities.len());
    for e in &index.entries {
        let a = truth(&m, &e.record);
        assert_eq!(e.full_image, real_root.join(&a.full_image));
        assert_eq!(e.crop, real_root.join(&a.crop), "{}", e.record.source);
        assert_eq!(
            e.roi_mask,
            real_root.join(&a.roi_mask),
            "{}",
            e.record.source
        );
    }
    let records: Vec<CaseRecord> = index.entries.iter().map(|e| e.record.clone()).collect();

    // The crop cache: one entry per row with the manifest's ROI box, plus background patches.
    let crop = CropConfig {
        size: SIZE,
        ..CropConfig::multiscale(2)
    };
    let bg = BackgroundConfig {
        per_image: 1,
        side_fraction: 0.1,
        ..BackgroundConfig::default()
    };
    let cfg = CacheConfig::new(dir.path().join("cache"))
        .with_crop(crop)
        .with_background(bg);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let cache = CropCache::for_index(&index, &cfg, &|p| {
        done.fetch_max(p.done, std::sync::atomic::Ordering::SeqCst);
        assert!(p.done <= p.total);
    })
    .expect("cache");
    assert_eq!(done.into_inner(), m.images.len());
    assert!(cache.skipped().is_empty(), "{:?}", cache.skipped());
    for (i, e) in index.entries.iter().enumerate() {
        let a = truth(&m, &e.record);
        let entry = &cache.entries()[cache.lesion_entry(i).expect("cropped")];
        let [x0, y0, x1, y1] = a.roi_bbox;
        let bbox = BBox { x0, y0, x1, y1 };
        assert_eq!(entry.bbox, Some(bbox));
        assert_eq!(entry.square, square_box(&bbox, 0.0));
        assert_eq!(
            cache
                .pixels(cache.lesion_entry(i).expect("entry"), true)
                .expect("hires")
                .len(),
            64 * 64
        );
    }
    // Reopening finds the same file and does not rebuild it.
    let modified = std::fs::metadata(cache.path())
        .and_then(|m| m.modified())
        .expect("mtime");
    let again = CropCache::for_index(&index, &cfg, &|_| panic!("rebuilt")).expect("reopen");
    assert_eq!(again.path(), cache.path());
    assert_eq!(
        std::fs::metadata(again.path())
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified
    );
    let cache = Arc::new(cache);

    // Background patches: inside their image, no lesion pixel of that image.
    let limits = DecodeLimits::default();
    let backgrounds: Vec<_> = cache
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, CacheEntryKind::Background { .. }))
        .collect();
    assert!(
        backgrounds.len() >= m.images.len() / 2,
        "{} patches for {} images",
        backgrounds.len(),
        m.images.len()
    );
    for b in &backgrounds {
        let image = &cache.images()[b.image];
        let rel = image.strip_prefix(&real_root).expect("inside root");
        let lesions: Vec<&SynthAbnormality> = m
            .abnormalities
            .iter()
            .filter(|a| a.full_image == rel)
            .collect();
        assert!(!lesions.is_empty());
        let s = b.square;
        assert!(s.x0 >= 0 && s.y0 >= 0);
        assert!(
            s.x0 as u32 + s.side <= lesions[0].image_width
                && s.y0 as u32 + s.side <= lesions[0].image_height
        );
        for a in lesions {
            let mask = read_gray(&real_root.join(&a.roi_mask), &limits).expect("mask");
            for y in s.y0 as u32..s.y0 as u32 + s.side {
                for x in s.x0 as u32..s.x0 as u32 + s.side {
                    assert_eq!(
                        mask.get(x, y),
                        Some(0),
                        "background patch {s:?} touches {}",
                        a.abnormality_folder
                    );
                }
            }
        }
    }

    // Every task: counts and labels from the manifest, a patient-grouped split, batches.
    let tasks = [
        Task::PathologyBinary,
        Task::Pathology4,
        Task::MassMargins,
        Task::Categorical {
            column: "calc type".into(),
        },
    ];
    for task in &tasks {
        let labels = task.label(&records).expect("labels");
        let expected: Vec<(usize, Target)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| expected_target(task, truth(&m, r)).map(|t| (i, t)))
            .collect();
        assert_eq!(labels.items.len(), expected.len(), "{}", task.name());
        for (item, (i, t)) in labels.items.iter().zip(&expected) {
            assert_eq!((item.record, &item.target), (*i, t), "{}", task.name());
        }
        assert!(!labels.items.is_empty(), "{}: no items", task.name());

        let s = split(&records, &labels, &SplitConfig::default()).expect("split");
        let patients = |idx: &[usize]| -> HashSet<String> {
            idx.iter()
                .map(|&i| records[labels.items[i].record].patient_id.clone())
                .collect()
        };
        assert!(
            patients(&s.train).is_disjoint(&patients(&s.validation)),
            "{}",
            task.name()
        );
        let n_test = labels
            .items
            .iter()
            .filter(|it| records[it.record].split == OfficialSplit::Test)
            .count();
        assert_eq!(s.test.len(), n_test);
        assert_eq!(
            s.train.len() + s.validation.len() + s.test.len(),
            labels.items.len()
        );

        let data =
            CachedCrops::for_task(cache.clone(), &index, &labels, Some(&s.train)).expect("dataset");
        assert_eq!(data.len(), s.train.len());
        let cfg = LoaderConfig {
            workers: 2,
            channels: 3,
            drop_last: false,
            seed: 4,
            ..LoaderConfig::train(4)
        };
        let loader = Loader::new(Arc::new(data), AugmentConfig::finetune(), cfg, Device::Cpu)
            .expect("loader");
        let k = labels.num_outputs();
        let mut seen = 0;
        for batch in loader.epoch(0) {
            let b = batch.expect("batch");
            let n = b.items.len();
            seen += n;
            assert_eq!(b.images.dims(), [n, 3, SIZE as usize, SIZE as usize]);
            assert_eq!(
                b.hires.as_ref().map(|h| h.dims().to_vec()),
                Some(vec![n, 3, 64, 64])
            );
            match (&b.targets, task) {
                (BatchTargets::Classes(t), Task::PathologyBinary | Task::Pathology4) => {
                    assert_eq!(t.dims(), [n]);
                    let v = t.to_vec1::<u32>().expect("classes");
                    for (c, meta) in v.iter().zip(&b.items) {
                        assert_eq!(&labels.class_names[*c as usize], &meta.label);
                    }
                }
                (BatchTargets::MultiHot(t), Task::MassMargins | Task::Categorical { .. }) => {
                    assert_eq!(t.dims(), [n, k]);
                }
                (other, _) => panic!("{}: unexpected targets {other:?}", task.name()),
            }
            let values = b
                .images
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values");
            assert!(values.iter().all(|v| v.is_finite()));
        }
        assert_eq!(seen, s.train.len(), "{}", task.name());
    }

    // Pre-training: every lesion and background patch, no targets.
    let pre = CachedCrops::pretraining(cache.clone(), &index, None, true);
    assert_eq!(pre.len(), cache.len());
    let loader = Loader::new(
        Arc::new(pre),
        AugmentConfig::pretrain(),
        LoaderConfig::train(8),
        Device::Cpu,
    )
    .expect("loader");
    let b = loader.epoch(0).next().expect("a batch").expect("ok");
    assert!(matches!(b.targets, BatchTargets::None));
    assert_eq!(b.images.dims(), [8, 1, SIZE as usize, SIZE as usize]);

    // The summary the generator promises: both types and both splits.
    let kinds: BTreeMap<(AbnormalityType, OfficialSplit), usize> =
        m.abnormalities.iter().fold(BTreeMap::new(), |mut acc, a| {
            *acc.entry((a.abnormality_type, a.split)).or_insert(0) += 1;
            acc
        });
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

#[test]
fn literal_layout_end_to_end() {
    run(SynthLayout::Literal);
}

#[test]
fn tcia_layout_end_to_end() {
    run(SynthLayout::Tcia);
}
