//! `--save-dtype`: `pretrain` stores its final model.safetensors in bf16 and `finetune` its
//! best.safetensors in f16 (safetensors dtype tags BF16 / F16, the metadata kept), while the
//! resume checkpoints stay f32; every reader takes the half files (`finetune --init`, `probe`,
//! `reconstruct`, `evaluate`); an unknown type is refused naming the known ones.

use std::path::Path;

mod support;
use support::*;

/// The `format` metadata of model files.
const MODEL: &str = "miram-checkpoint-v1";

/// The safetensors dtype tags of the file's tensors, and its `format` metadata.
fn dtype_tags(path: &Path) -> (Vec<safetensors::Dtype>, Option<String>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let format = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    (
        st.tensors().into_iter().map(|(_, v)| v.dtype()).collect(),
        format,
    )
}

/// Every tag is `want` (and there are tensors), and the `format` metadata is `format_want`.
fn assert_all(path: &Path, want: safetensors::Dtype, format_want: &str) {
    let (tags, format) = dtype_tags(path);
    assert!(!tags.is_empty(), "{}: no tensors", path.display());
    assert!(
        tags.iter().all(|&t| t == want),
        "{}: {tags:?}",
        path.display()
    );
    assert_eq!(format.as_deref(), Some(format_want), "{}", path.display());
}

#[test]
fn final_models_save_in_bf16_and_f16_and_every_reader_takes_them() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    let cfg = root.join("synth.toml");
    std::fs::write(
        &cfg,
        "patients = 20\nimage_width = 256\nimage_height = 416\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let data = root.join("data");
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "synth", "--out", &s(&data), "--config", &s(&cfg), "--seed", "3"]));
    let (pre, ft) = (root.join("pre"), root.join("ft"));
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "pretrain", "--data", &s(&data), "--preset", "micro", "--epochs", "1",
        "--batch-size", "8", "--accum-iter", "1", "--save-dtype", "bf16", "--out", &s(&pre)]));
    assert_all(
        &pre.join("model.safetensors"),
        safetensors::Dtype::BF16,
        MODEL,
    );
    let steps: Vec<_> = std::fs::read_dir(pre.join("checkpoints"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    assert!(!steps.is_empty(), "no resume checkpoint");
    for p in &steps {
        assert_all(p, safetensors::Dtype::F32, "miram-train-state-v1");
    }

    // A fine-tuning from the bf16 model, saved in f16.
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "finetune", "--data", &s(&data), "--init", &s(&pre),
        "--task", "pathology", "--epochs", "1", "--batch-size", "8", "--bootstrap", "0",
        "--save-dtype", "f16", "--out", &s(&ft)]));
    assert_all(
        &ft.join("checkpoints").join("best.safetensors"),
        safetensors::Dtype::F16,
        MODEL,
    );

    // The other readers of model files.
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "reconstruct", "--model", &s(&pre), "--data", &s(&data),
        "--count", "1", "--out", &s(&root.join("recon"))]));
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "probe", "--model", &s(&pre), "--data", &s(&data), "--task",
        "pathology", "--k", "3", "--bootstrap", "0", "--out", &s(&root.join("probe"))]));
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "evaluate", &s(&ft), "--out", &s(&root.join("eval"))]));

    // An unknown type names the known ones (clap's error).
    let out = miram(&["pretrain", "--save-dtype", "f8", "--data", &s(&data)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("f8") && err.contains("f32, f16, bf16"),
        "{err}"
    );
}
