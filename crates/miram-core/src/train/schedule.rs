//! MAE's learning-rate recipe (`util/lr_sched.py` and `main_pretrain.py` of
//! facebookresearch/mae): the absolute rate is `blr * effective_batch / 256`, it rises
//! linearly during the warm-up epochs and then follows a half-cycle cosine down to `min_lr`,
//! evaluated at every optimiser step at the fractional epoch `epoch + batch / batches`.

use serde::{Deserialize, Serialize};

/// The absolute learning rate of a base rate at an effective batch (MAE's linear scaling).
pub fn scaled_lr(blr: f64, effective_batch: usize) -> f64 {
    blr * effective_batch as f64 / 256.0
}

/// Linear warm-up then half-cycle cosine (MAE's `adjust_learning_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The peak (absolute) learning rate.
    pub lr: f64,
    /// The floor of the cosine.
    pub min_lr: f64,
    /// Warm-up length in epochs.
    pub warmup_epochs: f64,
    /// Total length in epochs.
    pub epochs: f64,
}

impl LrSchedule {
    /// The rate at a fractional epoch.
    pub fn lr_at(&self, epoch: f64) -> f64 {
        if epoch < self.warmup_epochs {
            self.lr * epoch / self.warmup_epochs
        } else {
            let span = (self.epochs - self.warmup_epochs).max(f64::MIN_POSITIVE);
            let t = ((epoch - self.warmup_epochs) / span).min(1.0);
            self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }

    /// The rate of optimiser step `step` (0-based) when an epoch has `steps_per_epoch`
    /// optimiser steps of `accum_iter` micro-batches each: MAE sets the rate at the first
    /// micro-batch of each step, at epoch `e + (j * accum_iter) / batches_per_epoch`.
    pub fn lr_at_step(
        &self,
        step: u64,
        steps_per_epoch: u64,
        accum_iter: u64,
        batches_per_epoch: u64,
    ) -> f64 {
        let spe = steps_per_epoch.max(1);
        let epoch = step / spe;
        let j = step % spe;
        self.lr_at(epoch as f64 + (j * accum_iter) as f64 / batches_per_epoch.max(1) as f64)
    }
}
