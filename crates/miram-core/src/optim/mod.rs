//! AdamW with parameter groups as PyTorch's `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments), global-norm gradient clipping as `clip_grad_norm_`, and state
//! that can be saved and restored exactly. candle-nn has neither groups, clipping nor state
//! saving.
//!
//! MAE's rule (`timm.optim.optim_factory.param_groups_weight_decay`): weight decay applies to
//! parameters with two or more dimensions whose name does not end in `.bias`.
//!
//! On the CPU with `f32` tensors the AdamW step is one pass over each parameter (parameter and
//! both moments updated in place), and the global norm, the clipping, the scaling and the
//! accumulation allocate no full-size temporaries ([`cpu`]); the result is bit-identical to
//! the composed candle ops, which every other device and dtype uses
//! ([`AdamW::step_composed`]).

pub(crate) mod cpu;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

/// A mark that a tensor's storage was allocated by its holder and is shared with nobody, so
/// that the holder may rewrite it in place. Clones of the holder share the mark: it is
/// exclusive only while no clone is alive (then the holder copies before writing).
#[derive(Debug, Clone, Default)]
struct Own(Arc<()>);

impl Own {
    fn exclusive(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

/// Gradients by parameter name: what backward produced, possibly accumulated over several
/// micro-batches and all-reduced across processes before the optimiser step.
///
/// [`Grads::accumulate`], [`Grads::scale`] and [`Grads::clip_global_norm`] rewrite in place
/// (contiguous `f32` CPU tensors) the gradients this set computed itself (a sum, a scaled
/// copy), never a tensor it was given ([`Grads::from_backward`], [`Grads::insert`],
/// [`Grads::iter_mut`]) nor one a clone of the set still holds. A tensor read with
/// [`Grads::get`] or [`Grads::iter`] and cloned shares storage with the set: copy it
/// (`Tensor::copy`) to keep its value across those calls.
#[derive(Debug, Clone, Default)]
pub struct Grads {
    map: BTreeMap<String, Tensor>,
    /// The gradients this set allocated itself.
    own: BTreeMap<String, Own>,
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
        Self {
            map,
            own: BTreeMap::new(),
        }
    }

    /// Inserts (or replaces) a gradient.
    pub fn insert(&mut self, name: impl Into<String>, grad: Tensor) {
        let name = name.into();
        self.own.remove(&name);
        self.map.insert(name, grad);
    }

    /// The gradient of `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// Gradients by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    /// Mutable gradients by name (an all-reduce rewrites them in place). What is put in is the
    /// caller's: the set no longer rewrites any of them in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Tensor)> {
        self.own.clear();
        self.map.iter_mut()
    }

    /// Whether the gradient of `name` may be rewritten in place.
    fn owns(&self, name: &str) -> bool {
        self.own.get(name).is_some_and(Own::exclusive)
    }

    /// Number of gradients.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds `other` into `self` (gradient accumulation): in place into a sum this set computed
    /// before, one new tensor otherwise (the first addition), a shared clone for a name `self`
    /// does not have yet. Every shape is checked before anything is added.
    pub fn accumulate(&mut self, other: &Grads) -> Result<()> {
        for (k, g) in &other.map {
            if let Some(a) = self.map.get(k) {
                if a.dims() != g.dims() {
                    return Err(Error::GradientShape {
                        parameter: k.clone(),
                        gradient: g.dims().to_vec(),
                        expected: a.dims().to_vec(),
                    });
                }
            }
        }
        for (k, g) in &other.map {
            let Some(a) = self.map.get(k) else {
                self.own.remove(k);
                self.map.insert(k.clone(), g.clone());
                continue;
            };
            if self.owns(k) && cpu::add_in_place(a, g)? {
                continue;
            }
            let sum = (a + g)?;
            self.map.insert(k.clone(), sum);
            self.own.insert(k.clone(), Own::default());
        }
        Ok(())
    }

    /// Multiplies every gradient by `s` (the mean over accumulated micro-batches): in place
    /// where this set computed the gradient, one new tensor otherwise.
    pub fn scale(&mut self, s: f64) -> Result<()> {
        let owned: Vec<bool> = self.map.keys().map(|k| self.owns(k)).collect();
        for ((k, g), owned) in self.map.iter_mut().zip(owned) {
            if owned && cpu::scale_in_place(g, s)? {
                continue;
            }
            *g = (&*g * s)?;
            self.own.insert(k.clone(), Own::default());
        }
        Ok(())
    }

    /// The global L2 norm over every gradient, accumulated in `f64` (contiguous `f32` CPU
    /// gradients are read in place, in fixed chunks: the same value on any number of threads).
    pub fn global_norm(&self) -> Result<f64> {
        let mut total = 0f64;
        for g in self.map.values() {
            total += match cpu::read_f32(g, cpu::sum_squares) {
                Some(s) => s,
                None => g
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?,
            };
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
        Ok(self.first_non_finite()?.is_none())
    }
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    /// Marks `m` and `v` as the optimiser's own (a clone of the optimiser shares the mark, and
    /// the next in-place step copies them first).
    own: Own,
    weight_decay: f64,
    lr_scale: f64,
}

impl Slot {
    /// One AdamW update of this parameter through composed candle ops (new moment tensors).
    fn step_composed(
        &mut self,
        g: &Tensor,
        cfg: &AdamWConfig,
        bc1: f64,
        bc2_sqrt: f64,
    ) -> Result<()> {
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let lr = cfg.lr * self.lr_scale;
        let g = g.to_dtype(self.var.dtype())?;
        // m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
        self.m = ((&self.m * b1)? + (&g * (1.0 - b1))?)?;
        self.v = ((&self.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
        self.own = Own::default();
        let p = self.var.as_tensor().detach();
        let p = if self.weight_decay != 0.0 {
            (p * (1.0 - lr * self.weight_decay))?
        } else {
            p
        };
        let denom = ((self.v.sqrt()? / bc2_sqrt)? + cfg.eps)?;
        let upd = (self.m.div(&denom)? * (lr / bc1))?;
        self.var.set(&(p - upd)?)?;
        Ok(())
    }

    /// The same update as [`Slot::step_composed`] in one in-place pass, for a contiguous `f32`
    /// CPU parameter; false (nothing changed) for any other.
    fn step_in_place(
        &mut self,
        g: &Tensor,
        cfg: &AdamWConfig,
        bc1: f64,
        bc2_sqrt: f64,
    ) -> Result<bool> {
        let p = self.var.as_tensor();
        if !cpu::is_cpu_f32(p) {
            return Ok(false);
        }
        let g = if cpu::is_cpu_f32(g) {
            g.clone()
        } else {
            g.to_dtype(DType::F32)?.contiguous()?
        };
        if !self.own.exclusive() {
            self.m = cpu::fresh_f32(&self.m)?;
            self.v = cpu::fresh_f32(&self.v)?;
            self.own = Own::default();
        }
        let lr = cfg.lr * self.lr_scale;
        let coefs = cpu::AdamWCoefs::new(
            cfg.beta1,
            cfg.beta2,
            cfg.eps,
            lr,
            self.weight_decay,
            bc1,
            bc2_sqrt,
        );
        Ok(cpu::adamw_in_place(p, &g, &self.m, &self.v, coefs)?)
    }
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
                    own: Own::default(),
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
    /// PyTorch skips parameters whose `.grad` is `None`). Every name and shape is checked
    /// before anything changes. A contiguous `f32` CPU parameter is updated in one pass with
    /// its moments, in place (the model sees the new values at its next forward); any other
    /// takes [`AdamW::step_composed`]'s ops, with the same result.
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        self.step_with(grads, true)
    }

    /// The same step through composed candle ops only (new moment tensors every step): what
    /// every device and dtype other than `f32` on the CPU takes, and the reference the CPU
    /// kernel of [`AdamW::step`] is tested and benchmarked against.
    pub fn step_composed(&mut self, grads: &Grads) -> Result<()> {
        self.step_with(grads, false)
    }

    fn step_with(&mut self, grads: &Grads, in_place: bool) -> Result<()> {
        for (name, g) in &grads.map {
            let Some(s) = self.slots.iter().find(|s| &s.name == name) else {
                return Err(Error::Optimizer(format!(
                    "gradient for unknown parameter {name} (not among the {} optimised parameters); nothing was changed",
                    self.slots.len()
                )));
            };
            if g.dims() != s.var.dims() {
                return Err(Error::GradientShape {
                    parameter: name.clone(),
                    gradient: g.dims().to_vec(),
                    expected: s.var.dims().to_vec(),
                });
            }
        }
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.cfg.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.cfg.beta2.powi(t)).sqrt();
        for s in &mut self.slots {
            let Some(g) = grads.map.get(&s.name) else {
                continue;
            };
            if in_place && s.step_in_place(g, &self.cfg, bc1, bc2_sqrt)? {
                continue;
            }
            s.step_composed(g, &self.cfg, bc1, bc2_sqrt)?;
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
    /// the hyper-parameters), for checkpoints. The moments are copies: later steps, which
    /// update the optimiser's own moments in place on the CPU, do not change them.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
        let mut t = BTreeMap::new();
        // On any other device the moments are never written in place: a clone is a snapshot.
        // On the CPU a copy clones the buffer, which cannot fail.
        let snapshot = |m: &Tensor| {
            if m.device().is_cpu() {
                m.copy().unwrap_or_else(|_| m.clone())
            } else {
                m.clone()
            }
        };
        for s in &self.slots {
            t.insert(format!("exp_avg.{}", s.name), snapshot(&s.m));
            t.insert(format!("exp_avg_sq.{}", s.name), snapshot(&s.v));
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
        // The moments get storage of their own (the given tensors may be the caller's, or
        // views into a checkpoint's buffer), since the CPU step writes them in place.
        for (s, (m, v)) in self.slots.iter_mut().zip(loaded) {
            if let (Some(m), Some(v)) = (m, v) {
                s.m = cpu::fresh_f32(&m.to_dtype(s.var.dtype())?.to_device(s.var.device())?)?;
                s.v = cpu::fresh_f32(&v.to_dtype(s.var.dtype())?.to_device(s.var.device())?)?;
                s.own = Own::default();
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// The CPU f32 step really is in place (the moments keep their storage, the fast path
    /// reports itself taken); an f64 parameter takes the composed ops (new moments).
    #[test]
    fn cpu_f32_steps_in_place_and_other_dtypes_compose() {
        for (dtype, in_place) in [(DType::F32, true), (DType::F64, false)] {
            let w = Var::from_tensor(
                &Tensor::new(&[1f32, -2.0, 3.0], &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let mut opt =
                AdamW::new(vec![("w".into(), w)], AdamWConfig::mae_pretrain(0.1)).unwrap();
            let mut g = Grads::new();
            g.insert(
                "w",
                Tensor::new(&[0.5f32, 0.25, -1.0], &Device::Cpu).unwrap(),
            );
            let (m, v) = (opt.slots[0].m.clone(), opt.slots[0].v.clone());
            opt.step(&g).unwrap();
            let s = &opt.slots[0];
            assert_eq!(cpu::same_storage(&m, &s.m), in_place, "{dtype:?}");
            assert_eq!(cpu::same_storage(&v, &s.v), in_place, "{dtype:?}");
            assert!(!cpu::same_storage(&s.m, &s.v));
        }
    }

    /// Accumulation adds in place from the second addition on (the first sum is the set's
    /// own tensor), and scaling an owned sum keeps its storage.
    #[test]
    fn accumulation_writes_in_place_only_into_its_own_sums() {
        let t = |x: f32| Tensor::new(&[x, x], &Device::Cpu).unwrap();
        let micro = |x: f32| {
            let mut g = Grads::new();
            g.insert("a", t(x));
            g
        };
        let (m1, m2, m3) = (micro(1.0), micro(2.0), micro(3.0));
        let mut acc = Grads::new();
        acc.accumulate(&m1).unwrap();
        assert!(cpu::same_storage(
            acc.get("a").unwrap(),
            m1.get("a").unwrap()
        ));
        assert!(!acc.owns("a"));
        acc.accumulate(&m2).unwrap();
        let first_sum = acc.get("a").unwrap().clone();
        assert!(acc.owns("a"));
        acc.accumulate(&m3).unwrap();
        acc.scale(0.5).unwrap();
        assert!(cpu::same_storage(acc.get("a").unwrap(), &first_sum));
        assert_eq!(acc.get("a").unwrap().to_vec1::<f32>().unwrap(), [3.0, 3.0]);
        assert_eq!(m1.get("a").unwrap().to_vec1::<f32>().unwrap(), [1.0, 1.0]);
        // A clone shares the mark: neither side writes in place while both live.
        let c = acc.clone();
        assert!(!acc.owns("a") && !c.owns("a"));
        drop(c);
        assert!(acc.owns("a"));
    }
}
