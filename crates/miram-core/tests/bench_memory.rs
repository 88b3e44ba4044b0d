//! `miram bench` estimates the memory of a step from the configuration's shapes and refuses a
//! batch that does not fit before allocating anything (a batch of 100000 used to abort the
//! process on an allocation failure).

use miram_core::bench::{available_memory, check_step_memory, step_memory};
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
    let e = check_step_memory("tiny", &cfg, 100_000, avail).unwrap_err();
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
    assert!(check_step_memory("tiny", &cfg, fits, avail).is_ok());
    assert!(check_step_memory("tiny", &cfg, fits + 1, avail).is_err());
}

#[cfg(target_os = "linux")]
#[test]
fn linux_reports_the_available_memory() {
    let m = available_memory().unwrap_or_else(|| panic!("no MemAvailable in /proc/meminfo"));
    assert!(m > 0);
}
