//! Helpers shared by the tests of the MIRAM workspace: where the fixture folders are (with
//! the environment variable each test reads to point elsewhere), the sorted list of a
//! folder's fixture files, whether the CPU has AVX2 and FMA, and, with the `candle` feature,
//! tensor comparisons.
//!
//! A dev-dependency only (`publish = false`). The helpers panic with a message naming the
//! path or value at fault: they are assertions of the tests that call them.
//!
//! ```
//! use miram_test_support::{fixture_dir, workspace_root};
//!
//! // Without the variable set, `<workspace>/fixtures/<default>`.
//! let dir = fixture_dir("MIRAM_TEST_SUPPORT_UNSET_EXAMPLE", "model");
//! assert_eq!(dir, workspace_root().join("fixtures").join("model"));
//! ```
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// The workspace's root folder (the one holding `fixtures/`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")); // <root>/crates/miram-test-support
    here.ancestors()
        .nth(2)
        .unwrap_or_else(|| panic!("{} is not two folders deep", here.display()))
        .to_path_buf()
}

/// The fixture folder named by the environment variable `var`, or `<workspace>/fixtures/`
/// followed by `default` when the variable is not set.
pub fn fixture_dir(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("fixtures").join(default),
    }
}

/// The files of `dir` whose extension is `ext` (without the dot), sorted by path.
///
/// # Panics
/// When `dir` cannot be read or holds no such file.
pub fn fixture_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the fixture folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} fixture in {}", dir.display());
    files
}

#[cfg(feature = "candle")]
mod tensors;
#[cfg(feature = "candle")]
pub use tensors::{f32s, max_abs_diff};

/// Whether this CPU has AVX2 and FMA, detected here independently of the code under test:
/// where the project's own matrix-product kernel and its FMA peak probe can run.
pub fn cpu_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_files_are_sorted_and_filtered() {
        let dir = workspace_root().join("fixtures").join("metrics");
        let files = fixture_files(&dir, "json");
        assert!(files.windows(2).all(|w| w[0] < w[1]), "{files:?}");
        assert!(files
            .iter()
            .all(|f| f.extension().is_some_and(|x| x == "json")));
    }

    #[test]
    #[should_panic(expected = "no *.nothing fixture in")]
    fn an_empty_selection_panics() {
        fixture_files(&workspace_root().join("fixtures"), "nothing");
    }
}
