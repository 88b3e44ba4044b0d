//! `--precision`: on the CPU `bf16` is refused (flag or configuration file, `pretrain` and
//! `finetune`) with one line saying it needs a GPU, before any work; `f32` is accepted and
//! recorded in the run's configuration; an unknown value is refused naming the known ones.

mod support;
use support::*;

const REFUSAL: [&str; 3] = ["--precision bf16 needs a GPU", "--device cuda", "fused f32"];

#[test]
fn bf16_is_refused_on_the_cpu_and_f32_trains() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path();
    let data = synth_small(root);
    let pre = root.join("pre");

    // bf16 on the CPU: refused before the run folder is made.
    #[rustfmt::skip]
    let out = miram(&["pretrain", "--data", &s(&data), "--preset", "micro", "--precision", "bf16",
        "--out", &s(&pre)]);
    assert_one_line_error(&out, &REFUSAL);
    assert!(!pre.exists(), "the refused run made its folder");
    let file = root.join("bf16.toml");
    std::fs::write(&file, "[pretrain]\nprecision = \"bf16\"\n").unwrap_or_else(|e| panic!("{e}"));
    #[rustfmt::skip]
    let out = miram(&["pretrain", "--data", &s(&data), "--preset", "micro", "--config", &s(&file),
        "--out", &s(&pre)]);
    assert_one_line_error(&out, &REFUSAL);
    #[rustfmt::skip]
    let out = miram(&["finetune", "--data", &s(&data), "--preset", "micro", "--task", "pathology",
        "--precision", "bf16", "--out", &s(&root.join("ft"))]);
    assert_one_line_error(&out, &REFUSAL);

    // An unknown precision: clap names the possible values.
    #[rustfmt::skip]
    let out = miram(&["pretrain", "--data", &s(&data), "--preset", "micro", "--precision", "fp16"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("fp16") && err.contains("f32") && err.contains("bf16"),
        "{err}"
    );

    // f32 trains, and the run records it.
    #[rustfmt::skip]
    ok(&miram(&["--quiet", "pretrain", "--data", &s(&data), "--preset", "micro", "--epochs", "1",
        "--batch-size", "4", "--accum-iter", "1", "--stop-after", "1", "--precision", "f32",
        "--out", &s(&pre)]));
    let written =
        std::fs::read_to_string(pre.join("config.json")).unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value = serde_json::from_str(&written).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["precision"], "f32", "{written}");
}
