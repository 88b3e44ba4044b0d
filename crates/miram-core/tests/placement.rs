//! The device audit of a training step, with a mocked device lookup (a machine without a
//! GPU has one device, so "another device" is pretended): a pre-training run looks up the
//! batch, every parameter and the loss's autograd graph on its first step, and fails with
//! an error naming the tensor when any of them is elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use candle_core::{Device, DeviceLocation, Tensor};
use miram_core::cbis_ddsm::loader::InMemoryCrops;
use miram_core::rand::Rng;
use miram_core::train::placement::DeviceOf;
use miram_core::train::{pretrain, PretrainConfig, RunDir, RunOptions, Silent};
use miram_core::{Error, MiramConfig};

fn config() -> PretrainConfig {
    let model = MiramConfig {
        img_size: 16,
        patch_size: 4,
        embed_dim: 32,
        depth: 1,
        num_heads: 2,
        decoder_embed_dim: 16,
        decoder_depth: 1,
        decoder_num_heads: 2,
        ..MiramConfig::micro()
    };
    PretrainConfig {
        epochs: 1,
        warmup_epochs: 0.0,
        batch_size: 4,
        accum_iter: 1,
        seed: 3,
        workers: 1,
        ..PretrainConfig::paper(model)
    }
}

/// Records every shape it is asked about; tensors of the shape `elsewhere` are on GPU 7.
struct Mock {
    elsewhere: Option<Vec<usize>>,
    seen: Mutex<Vec<Vec<usize>>>,
}

impl DeviceOf for Mock {
    fn device_of(&self, t: &Tensor) -> DeviceLocation {
        self.seen.lock().unwrap().push(t.dims().to_vec());
        if self.elsewhere.as_deref() == Some(t.dims()) {
            DeviceLocation::Cuda { gpu_id: 7 }
        } else {
            t.device().location()
        }
    }
}

fn run(elsewhere: Option<Vec<usize>>) -> (miram_core::Result<u64>, Vec<Vec<usize>>) {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(Mock {
        elsewhere,
        seen: Mutex::new(Vec::new()),
    });
    let opts = RunOptions {
        device_of: mock.clone(),
        ..RunOptions::new(Device::Cpu)
    };
    let mut rng = Rng::new(1);
    let crops = InMemoryCrops::from_arrays(rng.uniform_vec(8 * 16 * 16, 0.0, 1.0), 16).unwrap();
    let out = pretrain(
        &config(),
        Arc::new(crops),
        &RunDir::create(dir.path()).unwrap(),
        &opts,
        &mut Silent,
    )
    .map(|o| o.steps);
    let seen = mock.seen.lock().unwrap().clone();
    (out, seen)
}

#[test]
fn the_first_step_looks_up_the_batch_the_parameters_and_the_graph() {
    let (out, seen) = run(None);
    assert_eq!(out.unwrap(), 2);
    let params = miram_core::Miram::init(&config().model, 0, &Device::Cpu)
        .unwrap()
        .store()
        .trainable()
        .len();
    // The images, every parameter, the loss and its graph (more nodes than parameters);
    // once per run: the second step is not audited.
    assert_eq!(seen.first().map(Vec::as_slice), Some(&[4, 1, 16, 16][..]));
    assert!(
        seen.len() > 2 * params + 2,
        "{} lookups, {params} parameters",
        seen.len()
    );
    let (_, again) = run(None);
    assert_eq!(again.len(), seen.len(), "the same lookups in a second run");
}

#[test]
fn a_tensor_elsewhere_stops_the_run_naming_it() {
    for (shape, named) in [
        (vec![4, 1, 16, 16], "the batch's images"),
        (vec![32, 1, 4, 4], "parameter patch_embed.proj.weight"),
        // The encoder's tokens: the cls token and the 4 kept of 16 patches.
        (vec![4, 5, 32], "the loss, autograd node"),
    ] {
        match run(Some(shape.clone())).0 {
            Err(Error::WrongDevice {
                what,
                shape: s,
                found,
                ..
            }) => {
                assert!(what.starts_with(named), "{shape:?}: {what}");
                assert_eq!(s, shape);
                assert!(found.contains("gpu_id: 7"), "{found}");
            }
            other => panic!("{shape:?}: expected a wrong-device error, got {other:?}"),
        }
    }
}
