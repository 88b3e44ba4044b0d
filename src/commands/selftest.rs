//! `miram selftest`: the check of a device in one command (written for a GPU machine that
//! has a built binary and the repository's fixtures, and nothing else).
//!
//! On the chosen device it runs, in order:
//! 1. **parity**: every model fixture (forward, every gradient, one AdamW step) and every
//!    fine-tuning fixture (logits, loss, every gradient) against PyTorch's values
//!    ([`miram_core::parity`], the checks of the parity tests); on a GPU also in bf16 mixed
//!    precision against the f32 references;
//! 2. **masking**: the random masking on the device against the CPU's, exactly;
//! 3. **pretrain step** and **finetune step** (drop path, class weights, AdamW) on the device
//!    against the same step on the CPU (same weights, batch and random numbers);
//! 4. **nccl** (a build with the `nccl` feature, on a GPU): one rank's all-reduce of
//!    gradients (`f32`, `bf16`, a bucket beyond 25 MiB), mean and barrier through NCCL;
//! 5. **resume**: `miram pretrain` of `micro` on a generated dataset, straight through and
//!    stopped then resumed from its checkpoint, as child processes of this binary: the two
//!    final models must agree;
//! 6. **timing**: training steps of the given presets, pre-training and fine-tuning, in f32
//!    and (on a GPU) bf16, with the achieved TFLOP/s ([`miram_core::flops`]).
//!
//! It prints one line per check and a table, writes everything to `selftest.json` in
//! `--out`, and fails when any check fails. On the CPU, `--composed` runs the composed
//! candle kernels that every other device runs, so the GPU's path is checked here too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use miram_core::bench::{BenchMode, BenchSpec};
use miram_core::checkpoint::read_checkpoint;
use miram_core::encoder::{ClassifierConfig, VitClassifier};
use miram_core::nn::ParamStore;
use miram_core::optim::{AdamW, AdamWConfig, Grads};
use miram_core::parity::{self, CheckKind, ParityReport};
use miram_core::rand::Rng;
use miram_core::{Miram, MiramConfig, Precision};
use serde::Serialize;
use serde_json::json;

use crate::commands::device;
use crate::ui::Ui;
use crate::GlobalArgs;

/// Arguments of `miram selftest`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Checks, in order:
  parity   every fixture of FIXTURES/model and FIXTURES/finetune against PyTorch, in f32
           (the fixtures' tolerances); on a GPU or with --bf16 also in bf16 mixed precision
           against the f32 references (losses within 1e-2 relative, gradient cosines
           >= 0.995)
  device   the masking, a pre-training step and a fine-tuning step on the device against
           the CPU
  resume   `miram pretrain` of micro straight, and stopped + resumed (child processes of
           this binary, in OUT/resume): the final models must agree
  timing   a training step of each --time-presets preset (pretrain and finetune, at each
           precision) with its TFLOP/s (model FLOPs: matrix products, forward + backward)
Every line is also in OUT/selftest.json. It exits non-zero when a check fails.

Examples:
  miram selftest --device cuda:0 --fixtures fixtures --out selftest-out
  miram selftest --composed --time-presets micro --time-batch 4   # the GPU's path, on the CPU")]
pub struct SelftestArgs {
    /// The golden fixtures: a folder with `model/` and `finetune/` (the repository's
    /// `fixtures/`).
    #[arg(long, value_name = "DIR", default_value = "fixtures")]
    pub fixtures: PathBuf,
    /// Where the resume runs and `selftest.json` go.
    #[arg(long, value_name = "DIR", default_value = "selftest-out")]
    pub out: PathBuf,
    /// On the CPU, use the composed candle kernels (the path of every other device) instead
    /// of the fused CPU kernels.
    #[arg(long)]
    pub composed: bool,
    /// Presets whose training step is timed, comma-separated (`none` for no timing).
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "tiny,small,paper"
    )]
    pub time_presets: Vec<String>,
    /// Images per timed step.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub time_batch: usize,
    /// Timed steps per preset (after two warm-up steps).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub time_steps: usize,
    /// Skip the resume check (it runs this binary as child processes).
    #[arg(long)]
    pub no_resume: bool,
    /// On the CPU, also check and time bf16 mixed precision (always done on a GPU; on the
    /// CPU it runs through the library's slow composed path).
    #[arg(long)]
    pub bf16: bool,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
struct Check {
    section: &'static str,
    name: String,
    passed: bool,
    detail: String,
}

impl Check {
    /// A check that could not run: failed, with the error's chain.
    fn error(section: &'static str, name: &str, e: &anyhow::Error) -> Self {
        Self {
            section,
            name: name.to_string(),
            passed: false,
            detail: format!("{e:#}"),
        }
    }
}

/// The checks so far, each printed as it comes.
struct Checks<'a> {
    ui: &'a Ui,
    all: Vec<Check>,
}

impl<'a> Checks<'a> {
    fn new(ui: &'a Ui) -> Self {
        Self {
            ui,
            all: Vec::new(),
        }
    }

    /// Prints `c` (one line; a `check` event for scripts) and keeps it.
    fn say(&mut self, c: Check) {
        let mark = if c.passed { "ok  " } else { "FAIL" };
        self.ui.result_text(format!(
            "{mark} {:<9} {}: {}\n",
            c.section, c.name, c.detail
        ));
        self.ui
            .event("check", serde_json::to_value(&c).unwrap_or_default());
        self.all.push(c);
    }
}

/// One timed preset.
#[derive(Debug, Clone, Serialize)]
struct Timing {
    preset: String,
    mode: String,
    precision: String,
    batch: usize,
    step_ms: f64,
    tflop_per_step: f64,
    tflops: f64,
}

/// Runs every check on `--device` and reports.
pub fn run(a: &SelftestArgs, g: &GlobalArgs, ui: &Ui) -> anyhow::Result<()> {
    let dev = device::parse(g.device.as_deref().unwrap_or("cpu"))?;
    if a.composed {
        anyhow::ensure!(
            dev.is_cpu(),
            "--composed is for the CPU: other devices always run the composed kernels"
        );
        miram_core::nn::ops::set_fused_cpu_kernels(false);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let started = Instant::now();
    let device_name = describe(&dev, a.composed);
    ui.info(format!("selftest on {device_name}"));
    let mut checks = Checks::new(ui);
    // bf16 runs on the CPU only through the library's composed path, slowly: the CLI keeps it
    // for GPUs, and so does the selftest unless asked.
    let precisions = precisions(a, &dev);
    for c in parity_checks(&a.fixtures, &dev, &precisions)? {
        checks.say(c);
    }
    // From here on a failure is a failed check, and the report is still written.
    match device_checks(&dev) {
        Ok(cs) => cs.into_iter().for_each(|c| checks.say(c)),
        Err(e) => checks.say(Check::error("device", "steps against the CPU", &e)),
    }
    #[cfg(feature = "nccl")]
    if dev.is_cuda() {
        checks.say(
            match miram_core::train::distributed::nccl_single_rank_check(&dev) {
                Ok(detail) => Check {
                    section: "nccl",
                    name: "one rank".into(),
                    passed: true,
                    detail,
                },
                Err(e) => Check::error("nccl", "one rank", &e.into()),
            },
        );
    }
    if !a.no_resume {
        let resume = resume_check(&a.out.join("resume"), g, ui);
        checks.say(resume.unwrap_or_else(|e| Check::error("resume", "micro pretrain", &e)));
    }
    let timings = timing(a, &dev, &precisions, &mut checks)?;
    if !timings.is_empty() {
        ui.result_text(timing_table(&timings));
    }
    let checks = checks.all;
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
    let report = json!({
        "device": device_name,
        "version": env!("CARGO_PKG_VERSION"),
        "seconds": started.elapsed().as_secs_f64(),
        "passed": failed.is_empty(),
        "checks": checks,
        "timings": timings,
    });
    let path = a.out.join("selftest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    ui.event("result", report);
    ui.result_text(format!(
        "{} of {} checks passed in {:.0} s; {}\n",
        checks.len() - failed.len(),
        checks.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    ));
    if !failed.is_empty() {
        let names: Vec<String> = failed
            .iter()
            .map(|c| format!("{} {}", c.section, c.name))
            .collect();
        bail!("{} checks failed: {}", failed.len(), names.join(", "));
    }
    Ok(())
}

fn describe(dev: &Device, composed: bool) -> String {
    match dev.location() {
        candle_core::DeviceLocation::Cpu => format!(
            "cpu ({} threads, {} kernels)",
            rayon::current_num_threads(),
            if composed { "composed" } else { "fused" }
        ),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Every model and fine-tuning fixture, in f32 (the fixtures' tolerances) and, on a GPU,
/// in bf16 mixed precision (the bounds of [`parity::BF16_RTOL`] and
/// [`parity::BF16_GRAD_COSINE`]).
fn parity_checks(
    fixtures: &Path,
    dev: &Device,
    precisions: &[Precision],
) -> anyhow::Result<Vec<Check>> {
    let mut out = Vec::new();
    type CheckFn = fn(&Path, &Device, Precision) -> miram_core::Result<ParityReport>;
    let kinds: [(&str, CheckFn); 2] = [
        ("model", parity::check_model_fixture_at),
        ("finetune", parity::check_finetune_fixture_at),
    ];
    for &precision in precisions {
        for (sub, check) in kinds {
            let dir = fixtures.join(sub);
            let files = parity::fixture_files(&dir, "safetensors")
                .with_context(|| format!("the fixtures (--fixtures {})", fixtures.display()))?;
            anyhow::ensure!(
                !files.is_empty(),
                "no *.safetensors fixture in {}",
                dir.display()
            );
            for f in files {
                let r = check(&f, dev, precision)
                    .with_context(|| format!("fixture {}", f.display()))?;
                out.push(Check {
                    section: if precision == Precision::F32 {
                        "parity"
                    } else {
                        "bf16"
                    },
                    name: format!(
                        "{sub}/{}",
                        f.file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default()
                    ),
                    passed: r.passed(),
                    detail: parity_detail(&r),
                });
            }
        }
    }
    Ok(out)
}

fn parity_detail(r: &ParityReport) -> String {
    let mut parts: Vec<String> = [CheckKind::Output, CheckKind::Gradient, CheckKind::AdamW]
        .into_iter()
        .filter_map(|k| {
            r.worst(k)
                .map(|(_, used)| format!("{} {used:.3}", k.name()))
        })
        .collect();
    parts.insert(0, "worst share of tolerance:".into());
    let mut s = parts.join(" ");
    for f in r.failures() {
        s.push_str("; ");
        s.push_str(&f);
    }
    s
}

/// The masking, a pre-training step and a fine-tuning step on `dev` against the CPU.
fn device_checks(dev: &Device) -> anyhow::Result<Vec<Check>> {
    let cpu = Device::Cpu;
    let mut out = vec![masking_check(dev, &cpu)?];
    out.push(pretrain_step_check(dev, &cpu)?);
    out.push(finetune_step_check(dev, &cpu)?);
    Ok(out)
}

/// Runs `f` with the fused CPU kernels on: the reference of a device step is the CPU's
/// default path, also when `--composed` runs the checked step through the composed one.
fn on_fused_kernels<T>(f: impl FnOnce() -> T) -> T {
    let was = miram_core::nn::ops::fused_cpu_kernels();
    miram_core::nn::ops::set_fused_cpu_kernels(true);
    let out = f();
    miram_core::nn::ops::set_fused_cpu_kernels(was);
    out
}

fn host(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// `max |a - b| / max |b|`.
fn rel_max(a: &Tensor, b: &Tensor) -> anyhow::Result<f64> {
    let (a, b) = (host(a)?, host(b)?);
    anyhow::ensure!(a.len() == b.len(), "{} values against {}", a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    });
    Ok(f64::from(diff / scale))
}

fn masking_check(dev: &Device, cpu: &Device) -> anyhow::Result<Check> {
    let (n, l) = (16, 196);
    let keep = miram_core::masking::num_keep(l, 0.75);
    let noise = miram_core::masking::random_noise(n, l, &mut Rng::new(5), cpu)?;
    let here = miram_core::masking::masking_from_noise(&noise.to_device(dev)?, keep)?;
    let there = on_fused_kernels(|| miram_core::masking::masking_from_noise(&noise, keep))?;
    let ids = |t: &Tensor| -> anyhow::Result<Vec<u32>> {
        Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<u32>()?)
    };
    let same = ids(&here.ids_restore)? == ids(&there.ids_restore)?
        && ids(&here.ids_keep)? == ids(&there.ids_keep)?
        && host(&here.mask)? == host(&there.mask)?;
    Ok(Check {
        section: "device",
        name: "masking".into(),
        passed: same,
        detail: format!(
            "{n} x {l} tokens, keep {keep}: ids_keep, ids_restore and mask {}",
            if same {
                "identical to the CPU's"
            } else {
                "differ from the CPU's"
            }
        ),
    })
}

/// What one training step computed.
struct StepResult {
    loss: Tensor,
    grads: Grads,
    params: Vec<(String, candle_core::Var)>,
    /// The largest change AdamW made to a weight (0 when no step was taken).
    moved: f64,
}

/// Loss and every gradient of `got` within the fixtures' tolerances of `want` (the CPU's).
fn compare_step(name: &str, got: &StepResult, want: &StepResult) -> anyhow::Result<Check> {
    let dl = rel_max(&got.loss, &want.loss)?;
    let mut worst = (0f64, String::new());
    for (p, _) in &got.params {
        let (Some(a), Some(b)) = (got.grads.get(p), want.grads.get(p)) else {
            bail!("{name}: no gradient of {p}");
        };
        let r = rel_max(a, b)?;
        if r >= worst.0 || r.is_nan() {
            worst = (r, p.clone());
        }
    }
    let passed =
        dl <= 2.0 * f64::from(parity::OUTPUT_RTOL) && worst.0 <= f64::from(parity::GRAD_TOL);
    Ok(Check {
        section: "device",
        name: name.into(),
        passed,
        detail: format!(
            "loss rel. deviation {dl:.2e} (bound {:.0e}); worst gradient {:.2e} ({}) (bound {:.0e})",
            2.0 * parity::OUTPUT_RTOL,
            worst.0,
            worst.1,
            parity::GRAD_TOL
        ),
    })
}

fn pretrain_step_check(dev: &Device, cpu: &Device) -> anyhow::Result<Check> {
    let cfg = MiramConfig::micro();
    let n = 8;
    let mut rng = Rng::new(11);
    let s = cfg.img_size;
    let imgs = Tensor::from_vec(
        rng.normal_vec(n * cfg.in_chans * s * s, 0.0, 1.0),
        (n, cfg.in_chans, s, s),
        cpu,
    )?;
    let noise = miram_core::masking::random_noise(n, cfg.num_patches(), &mut rng, cpu)?;
    let step = |d: &Device| -> anyhow::Result<StepResult> {
        let model = Miram::init(&cfg, 3, d)?;
        let out = model.forward(&imgs.to_device(d)?, &noise.to_device(d)?)?;
        let params = model.store().trainable();
        let grads = Grads::from_backward(&out.loss.backward()?, &params);
        Ok(StepResult {
            loss: out.loss,
            grads,
            params,
            moved: 0.0,
        })
    };
    let got = step(dev)?;
    let want = on_fused_kernels(|| step(cpu))?;
    compare_step("pretrain step (micro, 8 images)", &got, &want)
}

fn finetune_step_check(dev: &Device, cpu: &Device) -> anyhow::Result<Check> {
    let cfg = ClassifierConfig {
        encoder: MiramConfig::micro().encoder(),
        num_classes: 3,
        drop_path: 0.1,
    };
    let n = 8;
    let mut rng = Rng::new(12);
    let s = cfg.encoder.img_size;
    let imgs = Tensor::from_vec(rng.normal_vec(n * s * s, 0.0, 1.0), (n, 1, s, s), cpu)?;
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let weights = [1.0f32, 2.0, 0.5];
    let step = |d: &Device| -> anyhow::Result<StepResult> {
        let store = ParamStore::new(4, DType::F32, d);
        let model = VitClassifier::new(&cfg, store.root())?;
        let logits = model.forward_train(&imgs.to_device(d)?, &mut Rng::new(13))?;
        let y = Tensor::from_vec(labels.clone(), n, d)?;
        let loss = miram_core::losses::cross_entropy(&logits, &y, Some(&weights))?;
        let params = store.trainable();
        let grads = Grads::from_backward(&loss.backward()?, &params);
        let before: std::collections::BTreeMap<String, Tensor> = params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect::<anyhow::Result<_>>()?;
        let mut opt = AdamW::new(params.clone(), AdamWConfig::mae_finetune(1e-3, 0.05))?;
        opt.step(&grads)?;
        // The step moved the weights, and left them finite.
        let mut moved = 0f64;
        for (name, var) in &params {
            let b = &before[name];
            let d = host(&(var.as_tensor() - b)?)?;
            anyhow::ensure!(
                d.iter().all(|v| v.is_finite()),
                "AdamW left {name} non-finite"
            );
            moved = moved.max(d.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))));
        }
        Ok(StepResult {
            loss,
            grads,
            params,
            moved,
        })
    };
    let got = step(dev)?;
    let want = on_fused_kernels(|| step(cpu))?;
    let mut c = compare_step(
        "finetune step (micro encoder, drop path 0.1, class weights, AdamW)",
        &got,
        &want,
    )?;
    let moved = got.moved;
    c.passed &= moved > 0.0;
    c.detail
        .push_str(&format!("; AdamW moved the weights by up to {moved:.2e}"));
    Ok(c)
}

/// `miram pretrain` of `micro` straight through, and stopped and resumed, in child
/// processes of this binary on the same device: the final models must agree.
fn resume_check(dir: &Path, g: &GlobalArgs, ui: &Ui) -> anyhow::Result<Check> {
    let exe = std::env::current_exe().context("the path of this binary")?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let data = dir.join("data");
    let device = g.device.clone().unwrap_or_else(|| "cpu".into());
    let child = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = Command::new(&exe);
        cmd.args(["--quiet", "--seed", "1", "--device", &device])
            .args(args);
        let out = cmd
            .output()
            .with_context(|| format!("starting {}", exe.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "`miram {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    };
    ui.info("resume: generating a dataset and running `miram pretrain` three times");
    let d = data.to_string_lossy().into_owned();
    child(&["synth", "--out", &d, "--patients", "12"])?;
    let run = |name: &str, extra: &[&str]| -> anyhow::Result<PathBuf> {
        let out = dir.join(name);
        let o = out.to_string_lossy().into_owned();
        let mut args = vec!["pretrain", "--data", &d, "--preset", "micro", "--out", &o];
        args.extend([
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
            "--batch-size",
            "8",
            "--accum-iter",
            "1",
            "--workers",
            "1",
        ]);
        args.extend(extra);
        child(&args)?;
        Ok(out)
    };
    let straight = run("straight", &[])?;
    let resumed = run("resumed", &["--stop-after", "3"])?;
    run("resumed", &[])?;
    let cpu = Device::Cpu;
    let a = read_checkpoint(&straight.join("model.safetensors"), &cpu)?;
    let b = read_checkpoint(&resumed.join("model.safetensors"), &cpu)?;
    anyhow::ensure!(
        a.tensors.len() == b.tensors.len(),
        "the two models hold {} and {} tensors",
        a.tensors.len(),
        b.tensors.len()
    );
    let mut worst = (0f64, String::new());
    for (name, t) in &a.tensors {
        let other = b
            .tensors
            .get(name)
            .with_context(|| format!("{name} missing from the resumed model"))?;
        let r = rel_max(other, t)?;
        if r >= worst.0 || r.is_nan() {
            worst = (r, name.clone());
        }
    }
    Ok(Check {
        section: "resume",
        name: "micro pretrain stopped after 3 steps and resumed".into(),
        passed: worst.0 <= 1e-5,
        detail: if worst.0 == 0.0 {
            format!(
                "{} tensors bit-identical to the straight run",
                a.tensors.len()
            )
        } else {
            format!(
                "worst rel. deviation {:.2e} ({}) against the straight run (bound 1e-5)",
                worst.0, worst.1
            )
        },
    })
}

/// The precisions checked and timed: f32, and bf16 on a GPU or with `--bf16` on the CPU.
fn precisions(a: &SelftestArgs, dev: &Device) -> Vec<Precision> {
    if dev.is_cpu() && !a.bf16 {
        vec![Precision::F32]
    } else {
        vec![Precision::F32, Precision::Bf16]
    }
}

/// A timed training step of each `--time-presets` preset at each precision.
/// A preset that cannot be timed (out of memory, say) is a failed check; the others are
/// still timed.
fn timing(
    a: &SelftestArgs,
    dev: &Device,
    precisions: &[Precision],
    checks: &mut Checks<'_>,
) -> anyhow::Result<Vec<Timing>> {
    let ui = checks.ui;
    let mut out = Vec::new();
    for preset in a
        .time_presets
        .iter()
        .filter(|p| p.as_str() != "none" && !p.is_empty())
    {
        let cfg = MiramConfig::preset(preset)?;
        for (mode, &precision) in [BenchMode::Pretrain, BenchMode::Finetune]
            .into_iter()
            .flat_map(|m| precisions.iter().map(move |p| (m, p)))
        {
            ui.info(format!(
                "timing {preset} {mode} {precision} at {} images",
                a.time_batch
            ));
            let spec = BenchSpec {
                precision,
                ..BenchSpec::new(preset, &cfg, a.time_batch, a.time_steps)
            };
            let r = match miram_core::bench::bench_step(&spec, mode, dev) {
                Ok(r) => r,
                Err(e) => {
                    let name = format!("{preset} {mode} {precision} at {} images", a.time_batch);
                    checks.say(Check::error("timing", &name, &e.into()));
                    continue;
                }
            };
            let flop = miram_core::flops::step_flops(&cfg, mode, a.time_batch).training_step();
            let t = Timing {
                preset: preset.clone(),
                mode: mode.name().into(),
                precision: precision.name().into(),
                batch: a.time_batch,
                step_ms: r.step_ms_median,
                tflop_per_step: flop * 1e-12,
                tflops: flop / (r.step_ms_median * 1e-3) * 1e-12,
            };
            ui.event("timing", serde_json::to_value(&t)?);
            out.push(t);
        }
    }
    Ok(out)
}

fn timing_table(t: &[Timing]) -> String {
    let mut s = format!(
        "{:<10} {:<10} {:<9} {:>6} {:>10} {:>12} {:>8}\n",
        "preset", "mode", "precision", "batch", "step ms", "TFLOP/step", "TFLOP/s"
    );
    for r in t {
        s.push_str(&format!(
            "{:<10} {:<10} {:<9} {:>6} {:>10.2} {:>12.4} {:>8.2}\n",
            r.preset, r.mode, r.precision, r.batch, r.step_ms, r.tflop_per_step, r.tflops
        ));
    }
    s
}
