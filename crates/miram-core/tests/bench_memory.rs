//! `miram bench` estimates the memory of a step from the configuration's shapes and refuses a
//! batch that does not fit before allocating anything (a batch of 100000 used to abort the
//! process on an allocation failure).

use miram_core::bench::{available_memory, check_step_memory, step_memory, BenchMode};
use miram_core::{Error, MiramConfig};

#[test]
fn the_estimate_grows_with_the_batch_and_the_decoder_scales() {
    let tiny = MiramConfig::preset("tiny").unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (step_memory(&tiny, 8), step_memory(&tiny, 16));
    assert_eq!(a.parameters, b.parameters);
    assert_eq!(b.inputs, 2 * a.inputs);
    assert_eq!(b.activations, 2 * a.activations);
    assert!(a.total > a.parameters + a.inputs + a.activations);
    // The inputs are exactly the f32 images.
    assert_eq!(a.inputs, 8 * tiny.in_chans as u64 * 112 * 112 * 4);
    // A 4x decoder adds (4 x 4) times the tokens of the 1x one.
    let two = step_memory(
        &MiramConfig::preset("paper").unwrap_or_else(|e| panic!("{e}")),
        8,
    );
    let three = step_memory(
        &MiramConfig::preset("paper-3scale").unwrap_or_else(|e| panic!("{e}")),
        8,
    );
    assert!(three.activations > 2 * two.activations);
    // A batch far beyond any machine saturates instead of wrapping around.
    assert!(step_memory(&tiny, usize::MAX).total >= step_memory(&tiny, 1 << 40).total);
}

#[test]
fn a_batch_over_the_available_memory_is_refused_with_both_figures() {
    let cfg = MiramConfig::preset("tiny").unwrap_or_else(|e| panic!("{e}"));
    let avail = 512u64 << 20;
    let e = check_step_memory("tiny", &cfg, BenchMode::Pretrain, 100_000, avail).unwrap_err();
    let Error::InsufficientMemory {
        needed, available, ..
    } = &e
    else {
        panic!("expected InsufficientMemory, got {e}");
    };
    assert_eq!(*available, avail);
    assert_eq!(*needed, step_memory(&cfg, 100_000).total);
    let msg = e.to_string();
    assert!(
        msg.contains("batch 100000") && msg.contains("0.50 GiB is available"),
        "{msg}"
    );
    // The batch it proposes fits, and one more does not.
    let fits: usize = msg
        .split("a batch of at most ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch proposed: {msg}"));
    assert!(check_step_memory("tiny", &cfg, BenchMode::Pretrain, fits, avail).is_ok());
    assert!(check_step_memory("tiny", &cfg, BenchMode::Pretrain, fits + 1, avail).is_err());
}

#[cfg(target_os = "linux")]
#[test]
fn linux_reports_the_available_memory() {
    let m = available_memory().unwrap_or_else(|| panic!("no MemAvailable in /proc/meminfo"));
    assert!(m > 0);
}

#[test]
fn each_mode_estimates_its_own_model_and_names_itself_when_refused() {
    let tiny = MiramConfig::preset("tiny").unwrap_or_else(|e| panic!("{e}"));
    let pre = BenchMode::Pretrain.step_memory(&tiny, 8);
    let single = BenchMode::SingleScale.step_memory(&tiny, 8);
    let fine = BenchMode::Finetune.step_memory(&tiny, 8);
    assert_eq!(pre, step_memory(&tiny, 8));
    assert_eq!(single, step_memory(&tiny.single_scale(), 8));
    // The same images; the 2x decoder's weights and activations are gone in single-scale
    // mode, every decoder in finetune mode.
    assert_eq!(pre.inputs, fine.inputs);
    assert!(pre.parameters > single.parameters && single.parameters > fine.parameters);
    assert!(pre.activations > single.activations);
    // The classifier's encoder sees every patch: more encoder activations than the masked
    // encoder of the single-scale step, whose decoder sees every patch at a smaller width.
    let enc_only = step_memory(
        &MiramConfig {
            decoder_depth: 0,
            ..tiny.single_scale()
        },
        8,
    );
    assert!(fine.activations > 3 * enc_only.activations);
    // Refusals name the mode, and the batch they propose fits in that mode.
    for mode in BenchMode::ALL {
        let avail = 256u64 << 20;
        let e = check_step_memory("tiny", &tiny, mode, 100_000, avail).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("one {mode} step of preset tiny")),
            "{msg}"
        );
        let fits: usize = msg
            .split("a batch of at most ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no batch proposed: {msg}"));
        assert!(check_step_memory("tiny", &tiny, mode, fits, avail).is_ok());
        assert!(check_step_memory("tiny", &tiny, mode, fits + 1, avail).is_err());
    }
}
