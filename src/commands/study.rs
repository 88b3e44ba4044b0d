//! `miram study`: the quick start's comparison, powered: several seeds (each its own
//! generated dataset, weights, masks and order) on a larger generated dataset, reporting
//! per task and starting point the mean and spread of the test AUC over seeds, DeLong's
//! paired test per seed, a combined test across seeds (Stouffer's sum of the per-seed
//! DeLong z, the seeds' test sets being independent), the probes of the frozen encoders,
//! and the kNN AUC of the validation split against pre-training steps as PNG curves.
//!
//! The budget is explicit (`plan.pretrain_epochs`, `plan.finetune_epochs`) or a number of
//! minutes (`--minutes`): the study then times a few steps of each model on this machine
//! and sets the pre-training epochs so that the whole study fits, and records the epochs it
//! chose, so that `--pretrain-epochs N` repeats it exactly (the same seeds give the same
//! runs; only the timing depends on the machine).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use miram_core::bench::BenchSpec;
use miram_core::cbis_ddsm::synth::{SynthConfig, SynthManifest};
use miram_core::metrics::two_sided_p_value;
use miram_core::train::{compare, DataConfig, PreparedData, RunOptions};
use miram_core::MiramConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config;
use crate::plan::{self, PlanConfig, PlanOutcome, Start};
use crate::plot::save_panels;
use crate::report::{Figure, Report};
use crate::study;
use crate::ui::Ui;
use crate::GlobalArgs;

/// The resolved configuration of `miram study`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// Where the data, the runs and the report go.
    pub out: PathBuf,
    /// The seeds: each one generates its own dataset and draws its own weights, masks and
    /// order.
    pub seeds: Vec<u64>,
    /// The generated dataset of each seed (its `seed` is replaced by the study's seed).
    pub synth: SynthConfig,
    /// The comparison run for every seed.
    pub plan: PlanConfig,
    /// A wall-clock budget in minutes: when set, the pre-training epochs are chosen from
    /// step times measured on this machine so that the study fits (and recorded).
    pub minutes: Option<f64>,
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("study-out"),
            seeds: vec![0, 1, 2],
            synth: SynthConfig {
                patients: 300,
                ..SynthConfig::small()
            },
            plan: study_plan(),
            minutes: None,
        }
    }
}

/// The study's comparison: every starting point, the quick start's recipes (see
/// `docs/study.md` for how each was chosen): 24 pre-training epochs unless `--minutes` or
/// `--pretrain-epochs` says otherwise; over a dataset about twice the quick start's, that
/// is about 1,130 steps per starting point (the quick start's 40 epochs are 840).
pub fn study_plan() -> PlanConfig {
    PlanConfig {
        starts: Start::ALL.to_vec(),
        pretrain_epochs: 24,
        // About the quick start's 84 warm-up steps on a dataset twice its size.
        pretrain_warmup_epochs: 2.0,
        ..crate::commands::quickstart::quickstart_plan()
    }
}

/// Arguments of `miram study`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
For every seed: generates a CBIS-DDSM-shaped dataset (data/seed-<s>), pre-trains each
starting point (MAE, MIRAM with the 2x target upsampled from the input, MIRAM with the real
2x crop as target), recording the kNN AUC of the validation split during pre-training,
fine-tunes every starting point and a randomly initialised encoder on every task, and probes
every frozen encoder. Then writes report.md and report.json (mean and spread of the test
AUC over seeds, per-seed DeLong tests, a combined test across seeds), probe_curves.png and
a report per seed under seed-<s>/. Running it again resumes or reuses finished runs.

The configuration file (TOML or JSON) may set any key of the resolved configuration printed
at the start (out, seeds, minutes, [synth], [plan], [plan.probe]).

Examples:
  miram study --minutes 60
  miram study --seeds 0,1,2,3,4 --patients 600 --pretrain-epochs 30 --finetune-epochs 40")]
pub struct StudyArgs {
    /// The output folder [default: study-out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The seeds, comma-separated [default: 0,1,2].
    #[arg(long, value_name = "S,S,...", value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Patients of each generated dataset [default: 300].
    #[arg(long, value_name = "N")]
    pub patients: Option<usize>,
    /// A wall-clock budget: pre-training epochs are chosen to fit it.
    #[arg(long, value_name = "M", conflicts_with = "pretrain_epochs")]
    pub minutes: Option<f64>,
    /// Pre-training epochs of every starting point.
    #[arg(long, value_name = "N")]
    pub pretrain_epochs: Option<usize>,
    /// Fine-tuning epochs of every run.
    #[arg(long, value_name = "N")]
    pub finetune_epochs: Option<usize>,
    /// The starting points, comma-separated: random, mae, miram, miram-native.
    #[arg(long, value_name = "S,S,...", value_delimiter = ',')]
    pub starts: Option<Vec<String>>,
    /// The tasks, comma-separated [default: pathology,margins].
    #[arg(long, value_name = "T,T,...", value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Configuration file (.toml or .json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The test AUC of one run per seed, with its summary.
#[derive(Debug, Clone, Serialize)]
pub struct StartSummary {
    /// The starting point.
    pub start: Start,
    /// Test AUC per seed (`None`: undefined for that seed's test set).
    pub auc: Vec<Option<f64>>,
    /// Test AP per seed.
    pub ap: Vec<Option<f64>>,
    /// Mean AUC over the seeds where it is defined.
    pub auc_mean: Option<f64>,
    /// Sample standard deviation of the AUC over seeds.
    pub auc_sd: Option<f64>,
    /// Mean AP.
    pub ap_mean: Option<f64>,
    /// Sample standard deviation of the AP.
    pub ap_sd: Option<f64>,
    /// Mean kNN test AUC of the frozen encoder.
    pub knn_auc_mean: Option<f64>,
    /// Mean linear-probe test AUC of the frozen encoder.
    pub linear_auc_mean: Option<f64>,
}

/// DeLong's paired test of two starting points, per seed and combined.
#[derive(Debug, Clone, Serialize)]
pub struct PairTest {
    /// The first run.
    pub a: Start,
    /// The second run.
    pub b: Start,
    /// Per seed: the headline DeLong p-value (binary: the class's; several classes: the
    /// smallest Holm-adjusted), `None` where untestable.
    pub p_per_seed: Vec<Option<f64>>,
    /// Seeds where `a`'s AUC is above `b`'s.
    pub a_wins: usize,
    /// Per class: Stouffer's combined z over the seeds (`sum z / sqrt(k)`) and its
    /// two-sided p-value.
    pub combined: Vec<(String, f64, f64)>,
    /// The combined headline p-value (binary: the class's; several: min Holm-adjusted).
    pub combined_p: Option<f64>,
}

/// One task across seeds.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    /// The task.
    pub task: String,
    /// Test cases per seed.
    pub cases: Vec<usize>,
    /// Per starting point.
    pub starts: Vec<StartSummary>,
    /// Every pair of starting points.
    pub pairs: Vec<PairTest>,
}

fn mean_sd(v: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let x: Vec<f64> = v.iter().flatten().copied().collect();
    if x.is_empty() {
        return (None, None);
    }
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let sd = (x.len() > 1)
        .then(|| (x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt());
    (Some(m), sd)
}

/// Summarises the outcomes of every seed (same plan, same order of runs).
pub fn summarise(plan: &PlanConfig, outcomes: &[PlanOutcome]) -> Result<Vec<TaskSummary>> {
    let Some(first) = outcomes.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (ti, t) in first.tasks.iter().enumerate() {
        let run_of = |o: &PlanOutcome, s: Start| {
            o.tasks
                .get(ti)
                .and_then(|t| t.runs.iter().find(|r| r.run == s.name()).cloned())
        };
        let mut starts = Vec::new();
        for &s in &plan.starts {
            let auc: Vec<Option<f64>> = outcomes
                .iter()
                .map(|o| run_of(o, s).and_then(|r| r.metrics.auc))
                .collect();
            let ap: Vec<Option<f64>> = outcomes
                .iter()
                .map(|o| run_of(o, s).and_then(|r| r.metrics.ap))
                .collect();
            let probe = |f: fn(&plan::ProbeRow) -> Option<f64>| {
                mean_sd(
                    &outcomes
                        .iter()
                        .map(|o| {
                            o.probes
                                .iter()
                                .find(|p| p.start == s && p.task == t.task)
                                .and_then(f)
                        })
                        .collect::<Vec<_>>(),
                )
                .0
            };
            let (auc_mean, auc_sd) = mean_sd(&auc);
            let (ap_mean, ap_sd) = mean_sd(&ap);
            starts.push(StartSummary {
                start: s,
                auc_mean,
                auc_sd,
                ap_mean,
                ap_sd,
                knn_auc_mean: probe(|p| p.knn_auc),
                linear_auc_mean: probe(|p| p.linear_auc),
                auc,
                ap,
            });
        }
        let mut pairs = Vec::new();
        for (i, &a) in plan.starts.iter().enumerate() {
            for &b in &plan.starts[i + 1..] {
                let mut p_per_seed = Vec::new();
                let mut a_wins = 0;
                let mut z: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                for o in outcomes {
                    let (Some(ra), Some(rb)) = (run_of(o, a), run_of(o, b)) else {
                        p_per_seed.push(None);
                        continue;
                    };
                    if let (Some(x), Some(y)) = (ra.metrics.auc, rb.metrics.auc) {
                        a_wins += usize::from(x > y);
                    }
                    match (&ra.predictions, &rb.predictions) {
                        (Some(pa), Some(pb)) => {
                            let c = compare(pa, pb)?;
                            p_per_seed.push(c.p_value);
                            for k in c.per_class {
                                z.entry(k.class).or_default().push(k.z);
                            }
                        }
                        _ => p_per_seed.push(None),
                    }
                }
                let combined: Vec<(String, f64, f64)> = z
                    .into_iter()
                    .map(|(class, zs)| {
                        let zc = zs.iter().sum::<f64>() / (zs.len() as f64).sqrt();
                        (class, zc, two_sided_p_value(zc))
                    })
                    .collect();
                let mut ps: Vec<f64> = combined.iter().map(|c| c.2).collect();
                ps.sort_by(f64::total_cmp);
                let combined_p = ps.first().map(|p| (p * ps.len() as f64).min(1.0));
                pairs.push(PairTest {
                    a,
                    b,
                    p_per_seed,
                    a_wins,
                    combined,
                    combined_p,
                });
            }
        }
        out.push(TaskSummary {
            task: t.task.clone(),
            cases: outcomes
                .iter()
                .map(|o| {
                    o.tasks
                        .get(ti)
                        .and_then(|t| t.runs.first())
                        .map_or(0, |r| r.metrics.n_cases)
                })
                .collect(),
            starts,
            pairs,
        });
    }
    Ok(out)
}

fn f3(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.3}"))
}

fn p3(x: Option<f64>) -> String {
    crate::report::p_value(x)
}

/// The study's tables in Markdown.
pub fn summary_markdown(summaries: &[TaskSummary], seeds: &[u64]) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    for t in summaries {
        let _ = writeln!(
            md,
            "### {}\n\nTest cases per seed: {:?}.\n\n| start | test AUC mean ± sd | per seed | test AP mean ± sd | kNN AUC (frozen) | linear AUC (frozen) |\n|---|---|---|---|---|---|",
            t.task, t.cases
        );
        for s in &t.starts {
            let _ = writeln!(
                md,
                "| {} | {} ± {} | {} | {} ± {} | {} | {} |",
                s.start.name(),
                f3(s.auc_mean),
                f3(s.auc_sd),
                s.auc.iter().map(|a| f3(*a)).collect::<Vec<_>>().join(", "),
                f3(s.ap_mean),
                f3(s.ap_sd),
                f3(s.knn_auc_mean),
                f3(s.linear_auc_mean)
            );
        }
        let _ = writeln!(
            md,
            "\n| pair (A vs B) | A above B in | DeLong p per seed | combined z (Stouffer) | combined p |\n|---|---|---|---|---|"
        );
        for p in &t.pairs {
            let z: Vec<String> = p
                .combined
                .iter()
                .map(|(c, z, _)| {
                    if p.combined.len() == 1 {
                        format!("{z:.2}")
                    } else {
                        format!("{c} {z:.2}")
                    }
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} vs {} | {} of {} seeds | {} | {} | {} |",
                p.a.name(),
                p.b.name(),
                p.a_wins,
                seeds.len(),
                p.p_per_seed
                    .iter()
                    .map(|x| p3(*x))
                    .collect::<Vec<_>>()
                    .join(", "),
                z.join("; "),
                p3(p.combined_p)
            );
        }
        md.push('\n');
    }
    md
}

fn parse_start(s: &str) -> Result<Start> {
    Ok(match s {
        "random" => Start::Random,
        "mae" => Start::Mae,
        "miram" => Start::Miram,
        "miram-native" => Start::MiramNative,
        _ => bail!("unknown start `{s}`; use random, mae, miram or miram-native"),
    })
}

/// Pre-training epochs that fit `minutes` (from `started`), from step times measured now.
fn epochs_for_budget(
    ui: &Ui,
    cfg: &StudyConfig,
    data: &PreparedData,
    minutes: f64,
    started: Instant,
    device: &miram_core::Device,
) -> Result<usize> {
    let p = &cfg.plan;
    let model = MiramConfig::preset(&p.preset)?;
    let time = |f: &dyn Fn() -> miram_core::Result<miram_core::bench::BenchReport>| -> Result<f64> {
        Ok(f()?.step_ms_median / 1000.0)
    };
    let mut pre_step = 0.0;
    for &s in &p.starts {
        if let Some(m) = s.model(&model) {
            pre_step += time(&|| {
                miram_core::bench::pretrain_step(
                    &BenchSpec::new(&p.preset, &m, p.pretrain_batch, 3),
                    device,
                )
            })?;
        }
    }
    let ft_step = time(&|| {
        miram_core::bench::finetune_step(
            &BenchSpec::new(&p.preset, &model, p.finetune_batch, 3),
            2,
            device,
        )
    })?;
    let pre_steps_per_epoch =
        miram_core::cbis_ddsm::loader::CropDataset::len(&data.pretraining_set())
            .div_ceil(p.pretrain_batch);
    let mut ft_steps_per_epoch = 0;
    for t in &p.tasks {
        let td = data.task(&study::parse_task(t)?, &Default::default())?;
        // Training steps and the validation pass (a forward is about a third of a step).
        ft_steps_per_epoch += (miram_core::cbis_ddsm::loader::CropDataset::len(td.train.as_ref())
            + miram_core::cbis_ddsm::loader::CropDataset::len(td.validation.as_ref()) / 3)
            .div_ceil(p.finetune_batch);
    }
    let seeds = cfg.seeds.len() as f64;
    let ft_secs =
        seeds * (p.starts.len() * p.finetune_epochs * ft_steps_per_epoch) as f64 * ft_step;
    // A tenth of the budget is kept for data, probes, evaluation and reports.
    let left = minutes * 60.0 * 0.9 - started.elapsed().as_secs_f64() - ft_secs;
    let per_epoch = seeds * pre_steps_per_epoch as f64 * pre_step;
    if left <= per_epoch {
        bail!(
            "--minutes {minutes}: fine-tuning alone needs about {:.0} minutes on this machine ({} epochs); give more minutes, fewer seeds or fewer fine-tuning epochs",
            ft_secs / 60.0,
            p.finetune_epochs
        );
    }
    let epochs = (left / per_epoch).floor() as usize;
    ui.info(format!(
        "{:>12} measured {:.0} ms per pre-training step of all starts, {:.0} ms per fine-tuning step: {epochs} pre-training epochs fit {minutes} minutes (rerun with --pretrain-epochs {epochs} to repeat it)",
        "budget",
        pre_step * 1000.0,
        ft_step * 1000.0
    ));
    Ok(epochs)
}

/// The study's configuration: defaults, then the file, then the flags; checked.
fn resolve_config(a: &StudyArgs) -> Result<StudyConfig> {
    let mut base = StudyConfig::default();
    if let Some(s) = &a.starts {
        base.plan.starts = s.iter().map(|x| parse_start(x)).collect::<Result<_>>()?;
        if !base.plan.starts.contains(&base.plan.baseline) {
            base.plan.baseline = base.plan.starts[0];
        }
    }
    let mut cfg: StudyConfig = config::resolve(
        &base,
        a.config.as_deref(),
        &[
            ("out", config::flag(&a.out)),
            ("seeds", config::flag(&a.seeds)),
            ("synth.patients", config::flag(&a.patients)),
            ("minutes", config::flag(&a.minutes)),
            ("plan.pretrain_epochs", config::flag(&a.pretrain_epochs)),
            ("plan.finetune_epochs", config::flag(&a.finetune_epochs)),
            ("plan.tasks", config::flag(&a.tasks)),
        ],
    )?;
    if a.pretrain_epochs.is_some() {
        cfg.minutes = None;
    }
    if cfg.seeds.is_empty() {
        bail!("seeds is empty: give at least one seed (--seeds 0,1,2)");
    }
    let mut unique = cfg.seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != cfg.seeds.len() {
        bail!(
            "seeds {:?} repeat a seed; each seed must appear once",
            cfg.seeds
        );
    }
    if let Some(m) = cfg.minutes {
        if !(m.is_finite() && m > 0.0) {
            bail!("--minutes {m}: give a positive number of minutes");
        }
    }
    cfg.synth.validate()?;
    cfg.plan.validate()?;
    Ok(cfg)
}

/// One seed's generated data, ready to train on.
struct SeedData {
    seed: u64,
    manifest: SynthManifest,
    data_cfg: DataConfig,
    data: PreparedData,
}

/// Every seed's data, generated (or reused) and prepared.
fn prepare_seeds(cfg: &StudyConfig, img_size: usize, ui: &Ui) -> Result<Vec<SeedData>> {
    let hires = cfg.plan.needs_hires().then_some(2);
    let mut prepared = Vec::new();
    for &seed in &cfg.seeds {
        let dir = cfg.out.join("data").join(format!("seed-{seed}"));
        let synth = SynthConfig {
            seed,
            ..cfg.synth.clone()
        };
        let manifest = study::generated_dataset(&synth, &dir, ui)?;
        let data_cfg = DataConfig {
            cache_dir: Some(cfg.out.join("cache").join(format!("seed-{seed}"))),
            ..DataConfig::new(&dir)
        };
        let data = study::prepare(ui, &data_cfg, img_size, hires, seed)?;
        prepared.push(SeedData {
            seed,
            manifest,
            data_cfg,
            data,
        });
    }
    Ok(prepared)
}

/// Runs the plan on one seed's data and writes that seed's report; returns the outcome and
/// the report's path.
fn run_seed(
    cfg: &StudyConfig,
    s: &SeedData,
    opts: &RunOptions,
    ui: &Ui,
) -> Result<(PlanOutcome, PathBuf)> {
    let t = Instant::now();
    let seed = s.seed;
    let dir = cfg.out.join(format!("seed-{seed}"));
    ui.info(format!("{:>12} seed {seed}", "study"));
    let o = plan::run_plan(
        ui,
        &cfg.plan,
        seed,
        &s.data,
        &s.data_cfg,
        &dir.join("runs"),
        opts,
    )?;
    let (_, summary) = crate::commands::synth::summary(&s.manifest);
    let report = Report {
        title: format!("MIRAM study, seed {seed}"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        version: env!("CARGO_PKG_VERSION").into(),
        config: serde_json::to_value(&cfg.plan)?,
        dataset: json!({ "root": s.data_cfg.root, "generated": summary, "crops": s.data.cache.len() }),
        pretraining: o.pretraining.iter().map(|(_, r)| r.clone()).collect(),
        tasks: o.tasks.clone(),
        probes: o.probes.clone(),
        figures: Vec::new(),
        notes: Vec::new(),
        seconds: t.elapsed().as_secs_f64(),
    };
    let (_, md) = report.write(&dir)?;
    Ok((o, md))
}

/// The learning curves: one panel per pre-trained starting point, a line per seed, saved
/// as `probe_curves.png`.
fn curve_figure(
    cfg: &StudyConfig,
    model: &MiramConfig,
    outcomes: &[PlanOutcome],
) -> Result<Figure> {
    let tracked = cfg.plan.tasks[0].clone();
    let charts: Vec<_> = cfg
        .plan
        .starts
        .iter()
        .filter(|s| s.model(model).is_some())
        .map(|&s| {
            let runs: Vec<(String, Vec<(u64, f64)>)> = cfg
                .seeds
                .iter()
                .zip(outcomes)
                .filter_map(|(seed, o)| {
                    o.curves
                        .iter()
                        .find(|(x, _)| *x == s)
                        .map(|(_, c)| (format!("seed {seed}"), c.clone()))
                })
                .collect();
            plan::curve_chart(s.name(), &tracked, &runs)
        })
        .collect();
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("{}", cfg.out.display()))?;
    save_panels(&cfg.out.join("probe_curves.png"), &charts, 640, 480)?;
    Ok(Figure {
        title: format!("kNN AUC of the validation split ({tracked}) against pre-training steps"),
        path: "probe_curves.png".into(),
    })
}

/// The study's `report.md`: what was run, the summary tables, the figures, the configuration.
fn study_markdown(
    cfg: &StudyConfig,
    summaries: &[TaskSummary],
    figures: &[Figure],
    seed_reports: &[PathBuf],
    command: &str,
    seconds: f64,
) -> Result<String> {
    let mut md = format!(
        "# MIRAM study: {} seeds of generated CBIS-DDSM-shaped data\n\nMade by `{command}` (miram {}) in {:.0} min. Per seed: {} patients, preset {}, {} pre-training epochs at batch {}, {} fine-tuning epochs at batch {}. Reports per seed: {}.\n\n",
        cfg.seeds.len(),
        env!("CARGO_PKG_VERSION"),
        seconds / 60.0,
        cfg.synth.patients,
        cfg.plan.preset,
        cfg.plan.pretrain_epochs,
        cfg.plan.pretrain_batch,
        cfg.plan.finetune_epochs,
        cfg.plan.finetune_batch,
        seed_reports
            .iter()
            .map(|p| format!("`{}`", p.strip_prefix(&cfg.out).unwrap_or(p).display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    md.push_str(&summary_markdown(summaries, &cfg.seeds));
    for f in figures {
        md.push_str(&format!(
            "### {}\n\n![{}]({})\n\n",
            f.title,
            f.title,
            f.path.display()
        ));
    }
    md.push_str(&format!(
        "## Configuration\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(cfg)?
    ));
    Ok(md)
}

/// Runs `miram study`.
pub fn run(a: &StudyArgs, g: &GlobalArgs, ui: &Ui) -> Result<()> {
    let started = Instant::now();
    let mut cfg = resolve_config(a)?;
    let model = MiramConfig::preset(&cfg.plan.preset)?;
    let mut opts = RunOptions::new(study::device(g.device.as_deref())?);
    opts.resume = true;

    // Every seed's data first, so that the budget is measured on real sizes.
    let prepared = prepare_seeds(&cfg, model.img_size, ui)?;
    if let Some(m) = cfg.minutes {
        cfg.plan.pretrain_epochs =
            epochs_for_budget(ui, &cfg, &prepared[0].data, m, started, &opts.device)?;
    }
    ui.config("study", &cfg);
    let mut outcomes = Vec::new();
    let mut seed_reports = Vec::new();
    for s in &prepared {
        let (o, md) = run_seed(&cfg, s, &opts, ui)?;
        seed_reports.push(md);
        outcomes.push(o);
    }

    let summaries = summarise(&cfg.plan, &outcomes)?;
    let figures = [curve_figure(&cfg, &model, &outcomes)?];
    let seconds = started.elapsed().as_secs_f64();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let md = study_markdown(&cfg, &summaries, &figures, &seed_reports, &command, seconds)?;
    let md_path = cfg.out.join("report.md");
    std::fs::write(&md_path, &md).with_context(|| format!("{}", md_path.display()))?;
    let js = json!({ "command": command, "config": cfg, "seconds": seconds,
                     "tasks": summaries, "figures": figures });
    let js_path = cfg.out.join("report.json");
    std::fs::write(&js_path, serde_json::to_string_pretty(&js)?)
        .with_context(|| format!("{}", js_path.display()))?;
    ui.result_text(format!(
        "\n{}\nreport: {} (figures beside it), {}\ntime: {}\n",
        summary_markdown(&summaries, &cfg.seeds),
        md_path.display(),
        js_path.display(),
        crate::ui::fmt_duration(started.elapsed())
    ));
    ui.event("result", js);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_sample_standard_deviation_over_defined_seeds() {
        let (m, sd) = mean_sd(&[Some(0.6), None, Some(0.8)]);
        assert!((m.unwrap_or(0.0) - 0.7).abs() < 1e-12);
        assert!((sd.unwrap_or(0.0) - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[Some(0.5)]), (Some(0.5), None));
        assert_eq!(mean_sd(&[None]), (None, None));
    }

    #[test]
    fn starts_parse_by_slug_and_unknown_ones_name_the_choices() {
        for s in Start::ALL {
            assert_eq!(parse_start(s.slug()).ok(), Some(s));
        }
        let e = parse_start("beit").unwrap_err().to_string();
        assert!(e.contains("beit") && e.contains("miram-native"), "{e}");
    }
}
