//! Progress events of a run: what the command line turns into progress bars and JSON lines,
//! what the run folder's `log.jsonl` records, and what tests observe.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which part of the work an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Preparing data (index, crop cache).
    Data,
    /// Self-supervised pre-training.
    Pretrain,
    /// Supervised fine-tuning.
    Finetune,
    /// Evaluation on a held-out set.
    Evaluate,
}

impl Phase {
    /// The phase's name in events and logs (`pretrain`, ...); for the training phases also
    /// the `kind` of their train states.
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Pretrain => "pretrain",
            Self::Finetune => "finetune",
            Self::Evaluate => "evaluate",
        }
    }
}

/// One optimiser step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// The phase.
    pub phase: Phase,
    /// Steps done (1-based after this step).
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// The epoch of this step (0-based).
    pub epoch: u64,
    /// The loss (the weighted total for pre-training).
    pub loss: f64,
    /// Each scale's loss (pre-training) or empty.
    pub losses: Vec<f64>,
    /// The learning rate of this step.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// Images per second over this step.
    pub images_per_sec: f64,
    /// Estimated seconds to the end of the run.
    pub eta_secs: f64,
}

/// An evaluation during or after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalEvent {
    /// The phase.
    pub phase: Phase,
    /// Steps done when evaluated.
    pub step: u64,
    /// The epoch (0-based).
    pub epoch: u64,
    /// `validation` or `test`.
    pub subset: String,
    /// Metrics by name (`roc_auc`, `average_precision`, `loss`, ...).
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase starts (`start_step` > 0 when resumed).
    Start {
        /// The phase.
        phase: Phase,
        /// Steps of the whole run.
        total_steps: u64,
        /// The step it starts from.
        start_step: u64,
        /// Human-readable description.
        description: String,
    },
    /// Progress of a long preparation (`done` of `total` items).
    Progress {
        /// The phase.
        phase: Phase,
        /// What is being done.
        what: String,
        /// Items done.
        done: u64,
        /// Items in all.
        total: u64,
    },
    /// An optimiser step.
    Step(StepEvent),
    /// An evaluation.
    Eval(EvalEvent),
    /// A checkpoint was written.
    Checkpoint {
        /// The phase.
        phase: Phase,
        /// Steps done.
        step: u64,
        /// The file.
        path: PathBuf,
        /// It is the best so far.
        best: bool,
    },
    /// Something the user should know that does not stop the run (a restart moving the
    /// previous run aside, a corrupt checkpoint skipped, temporary files removed).
    Warning {
        /// The phase.
        phase: Phase,
        /// What happened, naming the files.
        message: String,
    },
    /// A phase ended.
    Done {
        /// The phase.
        phase: Phase,
        /// Steps done.
        step: u64,
        /// Wall-clock seconds of the phase in this process.
        seconds: f64,
    },
}

/// Receives the events of a run (`Send`: data preparation reports from worker threads).
pub trait Observer: Send {
    /// Called for every event, in order.
    fn event(&mut self, event: &Event);
}

impl<F: FnMut(&Event) + Send> Observer for F {
    fn event(&mut self, event: &Event) {
        self(event)
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: &Event) {}
}
