//! AdamW with parameter groups as PyTorch's `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments), global-norm gradient clipping as `clip_grad_norm_`, and state
//! that can be saved and restored exactly. candle-nn has neither groups, clipping nor state
//! saving.
//!
//! MAE's rule (`timm.optim.optim_factory.param_groups_weight_decay`): weight decay applies to
//! parameters with two or more dimensions whose name does not end in `.bias`.

use std::collections::{BTreeMap, HashMap};

use candle_core::{backprop::GradStore, DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyper-parameters of AdamW.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Learning rate (the schedule changes it with [`AdamW::set_lr`]).
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay of the decayed group.
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// MAE pre-training: betas (0.9, 0.95), eps 1e-8, weight decay 0.05.
    pub fn mae_pretrain(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }

    /// MAE fine-tuning: betas (0.9, 0.999), eps 1e-8, weight decay as given.
    pub fn mae_finetune(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
}

/// MAE's weight-decay rule: decay parameters of rank >= 2 that are not biases.
pub fn decays(name: &str, rank: usize) -> bool {
    rank >= 2 && !name.ends_with(".bias")
}

/// Gradients by parameter name: what backward produced, possibly accumulated over several
/// micro-batches and all-reduced across processes before the optimiser step.
#[derive(Debug, Clone, Default)]
pub struct Grads {
    map: BTreeMap<String, Tensor>,
}

impl Grads {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gradients of `params` found in a backward pass (parameters without one are absent).
    pub fn from_backward(store: &GradStore, params: &[(String, Var)]) -> Self {
        let map = params
            .iter()
            .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
            .collect();
        Self { map }
    }

    /// Inserts (or replaces) a gradient.
    pub fn insert(&mut self, name: impl Into<String>, grad: Tensor) {
        self.map.insert(name.into(), grad);
    }

    /// The gradient of `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// Gradients by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Mutable gradients by name (an all-reduce rewrites them in place).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Tensor)> {
        self.map.iter_mut()
    }

    /// Number of gradients.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds `other` into `self` (gradient accumulation).
    pub fn accumulate(&mut self, other: &Grads) -> Result<()> {
        for (k, g) in &other.map {
            let v = match self.map.remove(k) {
                Some(a) => (a + g)?,
                None => g.clone(),
            };
            self.map.insert(k.clone(), v);
        }
        Ok(())
    }

    /// Multiplies every gradient by `s` (the mean over accumulated micro-batches).
    pub fn scale(&mut self, s: f64) -> Result<()> {
        for g in self.map.values_mut() {
            *g = (&*g * s)?;
        }
        Ok(())
    }

    /// The global L2 norm over every gradient.
    pub fn global_norm(&self) -> Result<f64> {
        let mut total = 0f64;
        for g in self.map.values() {
            total += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(total.sqrt())
    }

    /// PyTorch's `clip_grad_norm_`: scales every gradient by `max_norm / (norm + 1e-6)` when the
    /// global norm exceeds `max_norm`; returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            self.scale(coef)?;
        }
        Ok(norm)
    }

    /// The first parameter (by name) whose gradient holds a NaN or infinite value, or none.
    pub fn first_non_finite(&self) -> Result<Option<String>> {
        crate::checkpoint::first_non_finite(self.map.iter())
    }

    /// True when every gradient is finite.
    pub fn all_finite(&self) -> Result<bool> {
        for g in self.map.values() {
            let s = g
                .to_dtype(DType::F64)?
                .abs()?
                .sum_all()?
                .to_scalar::<f64>()?;
            if !s.is_finite() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    weight_decay: f64,
    lr_scale: f64,
}

/// A parameter with its group settings.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// State-dict name.
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Decoupled weight decay of this parameter.
    pub weight_decay: f64,
    /// Multiplier of the learning rate (layer-wise decay; 1 otherwise).
    pub lr_scale: f64,
}

/// PyTorch-exact AdamW over named parameters.
#[derive(Debug, Clone)]
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl AdamW {
    /// AdamW with MAE's two groups: `cfg.weight_decay` on [`decays`] parameters, 0 on the rest.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let specs = params
            .into_iter()
            .map(|(name, var)| {
                let wd = if decays(&name, var.rank()) {
                    cfg.weight_decay
                } else {
                    0.0
                };
                ParamSpec {
                    name,
                    var,
                    weight_decay: wd,
                    lr_scale: 1.0,
                }
            })
            .collect();
        Self::with_params(specs, cfg)
    }

    /// AdamW with explicit per-parameter settings.
    pub fn with_params(params: Vec<ParamSpec>, cfg: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|p| {
                Ok(Slot {
                    m: p.var.zeros_like()?,
                    v: p.var.zeros_like()?,
                    name: p.name,
                    var: p.var,
                    weight_decay: p.weight_decay,
                    lr_scale: p.lr_scale,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            slots,
            step: 0,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// The current base learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    /// Sets the base learning rate (schedules call this every step).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The names of the optimised parameters, in order.
    pub fn names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// One AdamW step with `grads` (parameters without a gradient are left untouched, as
    /// PyTorch skips parameters whose `.grad` is `None`).
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        for name in grads.map.keys() {
            if !self.slots.iter().any(|s| &s.name == name) {
                return Err(Error::Optimizer(format!(
                    "gradient for unknown parameter {name}"
                )));
            }
        }
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        for s in &mut self.slots {
            let Some(g) = grads.map.get(&s.name) else {
                continue;
            };
            if g.dims() != s.var.dims() {
                return Err(Error::Optimizer(format!(
                    "{}: gradient {:?} for a parameter {:?}",
                    s.name,
                    g.dims(),
                    s.var.dims()
                )));
            }
            let lr = self.cfg.lr * s.lr_scale;
            let g = g.to_dtype(s.var.dtype())?;
            // m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
            s.m = ((&s.m * b1)? + (&g * (1.0 - b1))?)?;
            s.v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let p = s.var.as_tensor().detach();
            let p = if s.weight_decay != 0.0 {
                (p * (1.0 - lr * s.weight_decay))?
            } else {
                p
            };
            let denom = ((s.v.sqrt()? / bc2_sqrt)? + self.cfg.eps)?;
            let upd = (s.m.div(&denom)? * (lr / bc1))?;
            s.var.set(&(p - upd)?)?;
        }
        Ok(())
    }

    /// The first parameter or moment (`exp_avg.{name}`, `exp_avg_sq.{name}`) holding a NaN or
    /// infinite value, or none: what is checked after a step, before the state may be saved.
    pub fn first_non_finite(&self) -> Result<Option<String>> {
        let mut named: Vec<(String, Tensor)> = Vec::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            named.push((s.name.clone(), s.var.as_tensor().clone()));
            named.push((format!("exp_avg.{}", s.name), s.m.clone()));
            named.push((format!("exp_avg_sq.{}", s.name), s.v.clone()));
        }
        crate::checkpoint::first_non_finite(named.iter().map(|(k, t)| (k, t)))
    }

    /// The state as tensors (`exp_avg.{name}`, `exp_avg_sq.{name}`) and metadata (`step`,
    /// the hyper-parameters), for checkpoints.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
        let mut t = BTreeMap::new();
        for s in &self.slots {
            t.insert(format!("exp_avg.{}", s.name), s.m.clone());
            t.insert(format!("exp_avg_sq.{}", s.name), s.v.clone());
        }
        let mut m = BTreeMap::new();
        m.insert("optimizer.step".to_string(), self.step.to_string());
        m.insert(
            "optimizer.config".to_string(),
            serde_json::to_string(&self.cfg).unwrap_or_default(),
        );
        (t, m)
    }

    /// Restores a state written by [`AdamW::state`]; every moment must be present with the
    /// parameter's shape.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let step = metadata
            .get("optimizer.step")
            .ok_or_else(|| Error::Optimizer("the state has no optimizer.step".into()))?;
        let step: u64 = step
            .parse()
            .map_err(|_| Error::Optimizer(format!("optimizer.step is not a number: {step}")))?;
        if let Some(c) = metadata.get("optimizer.config") {
            self.cfg = serde_json::from_str(c)
                .map_err(|e| Error::Optimizer(format!("optimizer.config: {e}")))?;
        }
        let mut problems = Vec::new();
        let mut loaded = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut get = |k: String| -> Option<Tensor> {
                match tensors.get(&k) {
                    Some(t) if t.dims() == s.var.dims() => Some(t.clone()),
                    Some(t) => {
                        problems.push(format!("{k} {:?} (parameter {:?})", t.dims(), s.var.dims()));
                        None
                    }
                    None => None,
                }
            };
            let m = get(format!("exp_avg.{}", s.name));
            let v = get(format!("exp_avg_sq.{}", s.name));
            loaded.push((m, v));
        }
        for (s, (m, v)) in self.slots.iter().zip(&loaded) {
            if m.is_none() || v.is_none() {
                problems.push(format!("moments of {} missing", s.name));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Optimizer(format!(
                "cannot restore the state: {}",
                problems.join(", ")
            )));
        }
        for (s, (m, v)) in self.slots.iter_mut().zip(loaded) {
            if let (Some(m), Some(v)) = (m, v) {
                s.m = m.to_dtype(s.var.dtype())?.to_device(s.var.device())?;
                s.v = v.to_dtype(s.var.dtype())?.to_device(s.var.device())?;
            }
        }
        self.step = step;
        Ok(())
    }
}
