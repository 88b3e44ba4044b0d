//! The parameter store and the path-based `VarBuilder` of MIRAM.
//!
//! Mirrors PyTorch's `state_dict` semantics: every tensor has a dotted name built from the
//! module path (`decoders.1.blocks.0.attn.qkv.weight`), trainable parameters are candle
//! `Var`s, buffers (Performer's `projection_matrix`) are saved with the weights but never
//! trained. Fresh parameters are initialised from the project's seeded generator, keyed by
//! their name, so the same seed gives the same weights whatever the construction order
//! (candle's own initialisers draw from an unseedable generator). When the store is built
//! from loaded tensors, every request is checked against them and the missing, unexpected
//! and mismatched names are collected into a [`LoadReport`] instead of failing on the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor, Var};
use miram_rand::Rng;

use crate::{Error, Result};

/// How a fresh parameter is initialised (MAE's `_init_weights` and PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Xavier-uniform over the tensor viewed as `[shape[0], prod(shape[1..])]`
    /// (MAE applies it to every Linear and to the patch projection viewed this way).
    XavierUniform,
    /// Normal with the given mean and standard deviation (MAE's tokens: std 0.02).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Uniform in `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Every element equal to the value (LayerNorm weight 1, biases 0).
    Const(f64),
}

impl Init {
    /// PyTorch's default initialisation of a convolution or linear weight
    /// (`kaiming_uniform_(a = sqrt(5))`), which is uniform in `+-1/sqrt(fan_in)`.
    pub fn torch_default(fan_in: usize) -> Self {
        let b = 1.0 / (fan_in.max(1) as f64).sqrt();
        Init::Uniform { lo: -b, hi: b }
    }

    /// Draws `shape`'s elements from this initialiser.
    pub fn sample(&self, shape: &[usize], rng: &mut Rng) -> Vec<f32> {
        let n: usize = shape.iter().product();
        match *self {
            Init::Const(v) => vec![v as f32; n],
            Init::Normal { mean, std } => (0..n)
                .map(|_| (mean + std * rng.normal_f64()) as f32)
                .collect(),
            Init::Uniform { lo, hi } => (0..n).map(|_| rng.uniform_range(lo, hi) as f32).collect(),
            Init::XavierUniform => {
                let fan_out = shape.first().copied().unwrap_or(1);
                let fan_in = if shape.len() > 1 {
                    shape[1..].iter().product()
                } else {
                    1
                };
                let b = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                (0..n).map(|_| rng.uniform_range(-b, b) as f32).collect()
            }
        }
    }
}

/// 64-bit FNV-1a of a name: the key of a parameter's random stream.
pub fn name_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What a model build found in the loaded tensors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Names the model asked for that the loaded tensors lack (initialised fresh), with the
    /// model's shape.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Loaded names the model never asked for, with the file's shape.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Names present with another shape: `(name, model shape, loaded shape)`.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    /// True when every name matched in both directions with the same shape.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// The names of the missing tensors.
    pub fn missing_names(&self) -> Vec<&str> {
        self.missing.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The names of the unexpected tensors.
    pub fn unexpected_names(&self) -> Vec<&str> {
        self.unexpected.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.mismatched.is_empty() {
            let m: Vec<String> = self
                .mismatched
                .iter()
                .map(|(n, want, got)| format!("{n} (model {want:?}, file {got:?})"))
                .collect();
            parts.push(format!("shape mismatch: {}", m.join(", ")));
        }
        let list = |v: &[(String, Vec<usize>)]| -> String {
            v.iter()
                .map(|(n, s)| format!("{n} {s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.missing.is_empty() {
            parts.push(format!("missing: {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected: {}", list(&self.unexpected)));
        }
        if parts.is_empty() {
            write!(f, "all tensors matched")
        } else {
            write!(f, "{}", parts.join("; "))
        }
    }
}

#[derive(Debug)]
struct Inner {
    seed: u64,
    source: HashMap<String, Tensor>,
    has_source: bool,
    used: BTreeSet<String>,
    params: BTreeMap<String, Var>,
    frozen: BTreeMap<String, Tensor>,
    buffers: BTreeMap<String, Var>,
    missing: Vec<(String, Vec<usize>)>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    freeze_prefixes: Vec<String>,
}

/// The tensors of a model under their state-dict names. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    dtype: DType,
    device: Device,
}

impl ParamStore {
    /// A store whose parameters are all initialised fresh from `seed`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        Self::build(seed, HashMap::new(), false, dtype, device)
    }

    /// A store that takes parameters from `tensors` by name (converted to `dtype` and moved
    /// to `device`); names not found are initialised from `seed` and listed as missing.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self::build(seed, tensors, true, dtype, device)
    }

    fn build(
        seed: u64,
        source: HashMap<String, Tensor>,
        has_source: bool,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                seed,
                source,
                has_source,
                used: BTreeSet::new(),
                params: BTreeMap::new(),
                frozen: BTreeMap::new(),
                buffers: BTreeMap::new(),
                missing: Vec::new(),
                mismatched: Vec::new(),
                freeze_prefixes: Vec::new(),
            })),
            dtype,
            device: device.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while building; the maps are
        // still consistent (every insert is a single call), so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parameters whose name starts with one of `prefixes` and that are created after this
    /// call are frozen: plain tensors that receive no gradient (linear probing).
    pub fn freeze_prefixes(&self, prefixes: &[&str]) {
        self.lock()
            .freeze_prefixes
            .extend(prefixes.iter().map(|s| s.to_string()));
    }

    /// The builder at the root of the name space.
    pub fn root(&self) -> VarBuilder {
        VarBuilder {
            store: self.clone(),
            prefix: String::new(),
        }
    }

    /// The data type of the parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The seed of fresh initialisations.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// Trainable parameters, sorted by name.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.lock()
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.lock().params.values().map(|v| v.elem_count()).sum()
    }

    /// Buffers (saved, not trained), sorted by name.
    pub fn buffers(&self) -> Vec<(String, Var)> {
        self.lock()
            .buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every tensor that belongs in a checkpoint (parameters, frozen parameters and
    /// buffers), by name.
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let g = self.lock();
        let mut out = BTreeMap::new();
        for (k, v) in &g.params {
            out.insert(k.clone(), v.as_tensor().detach());
        }
        for (k, v) in &g.frozen {
            out.insert(k.clone(), v.detach());
        }
        for (k, v) in &g.buffers {
            out.insert(k.clone(), v.as_tensor().detach());
        }
        out
    }

    /// The trainable parameter or buffer of that name.
    pub fn var(&self, name: &str) -> Option<Var> {
        let g = self.lock();
        g.params.get(name).or_else(|| g.buffers.get(name)).cloned()
    }

    /// Overwrites the values of an existing parameter or buffer in place (same shape).
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self.var(name).ok_or_else(|| Error::UnknownParameter {
            name: name.to_string(),
        })?;
        if var.dims() != value.dims() {
            return Err(Error::shape_mismatch(
                format!("{name} (value to set)"),
                var.dims(),
                value.dims(),
            ));
        }
        var.set(&value.to_dtype(var.dtype())?.to_device(var.device())?)?;
        Ok(())
    }

    /// What the build found in the loaded tensors (all names fresh when built by [`ParamStore::new`]).
    pub fn load_report(&self) -> LoadReport {
        let g = self.lock();
        let mut unexpected: Vec<(String, Vec<usize>)> = g
            .source
            .iter()
            .filter(|(k, _)| !g.used.contains(*k))
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        unexpected.sort();
        let mut missing = g.missing.clone();
        missing.sort();
        LoadReport {
            missing,
            unexpected,
            mismatched: g.mismatched.clone(),
        }
    }

    fn take_source(&self, g: &mut Inner, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if !g.has_source {
            return Ok(None);
        }
        match g.source.get(name) {
            Some(t) => {
                g.used.insert(name.to_string());
                if t.dims() != shape {
                    g.mismatched
                        .push((name.to_string(), shape.to_vec(), t.dims().to_vec()));
                    Ok(None)
                } else {
                    Ok(Some(t.to_dtype(self.dtype)?.to_device(&self.device)?))
                }
            }
            None => {
                g.missing.push((name.to_string(), shape.to_vec()));
                Ok(None)
            }
        }
    }

    fn fresh(&self, seed: u64, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let mut rng = Rng::keyed(seed, &[name_key(name)]);
        let data = init.sample(shape, &mut rng);
        Ok(Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?)
    }

    fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let mut g = self.lock();
        if let Some(v) = g.params.get(name) {
            return Ok(v.as_tensor().clone());
        }
        if let Some(t) = g.frozen.get(name) {
            return Ok(t.clone());
        }
        let loaded = self.take_source(&mut g, name, shape)?;
        let value = match loaded {
            Some(t) => t,
            None => self.fresh(g.seed, name, shape, init)?,
        };
        if g.freeze_prefixes.iter().any(|p| name.starts_with(p)) {
            let t = value.detach();
            g.frozen.insert(name.to_string(), t.clone());
            return Ok(t);
        }
        let var = Var::from_tensor(&value.copy()?)?;
        let t = var.as_tensor().clone();
        g.params.insert(name.to_string(), var);
        Ok(t)
    }

    fn buffer(
        &self,
        name: &str,
        shape: &[usize],
        make: &mut dyn FnMut(&mut Rng) -> Vec<f32>,
    ) -> Result<Var> {
        let mut g = self.lock();
        if let Some(v) = g.buffers.get(name) {
            return Ok(v.clone());
        }
        let loaded = self.take_source(&mut g, name, shape)?;
        let value = match loaded {
            Some(t) => t,
            None => {
                let mut rng = Rng::keyed(g.seed, &[name_key(name)]);
                let data = make(&mut rng);
                Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?
            }
        };
        let var = Var::from_tensor(&value.copy()?)?;
        g.buffers.insert(name.to_string(), var.clone());
        Ok(var)
    }
}

/// A position in the name space of a [`ParamStore`]; layers take it as their last argument.
#[derive(Debug, Clone)]
pub struct VarBuilder {
    store: ParamStore,
    prefix: String,
}

impl VarBuilder {
    /// A builder for the sub-module `name` (`vb.pp("blocks").pp(3)`).
    pub fn pp<S: std::fmt::Display>(&self, name: S) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.path(&name.to_string()),
        }
    }

    /// The full name of `name` under this builder.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// The prefix of this builder (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A trainable parameter: loaded if the store has it, else initialised with `init`.
    pub fn param(&self, shape: &[usize], name: &str, init: Init) -> Result<Tensor> {
        self.store.param(&self.path(name), shape, init)
    }

    /// A buffer (saved, never trained): loaded if the store has it, else made by `make`
    /// from a generator keyed by its name. The `Var` lets its owner redraw it in place.
    pub fn buffer(
        &self,
        shape: &[usize],
        name: &str,
        mut make: impl FnMut(&mut Rng) -> Vec<f32>,
    ) -> Result<Var> {
        self.store.buffer(&self.path(name), shape, &mut make)
    }

    /// The store behind this builder.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// The data type of the parameters.
    pub fn dtype(&self) -> DType {
        self.store.dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_any_order() -> Result<()> {
        let a = ParamStore::new(3, DType::F32, &Device::Cpu);
        let wa = a
            .root()
            .pp("x")
            .param(&[4, 5], "weight", Init::XavierUniform)?;
        let _ = a.root().param(&[2], "other", Init::Const(0.0))?;
        let b = ParamStore::new(3, DType::F32, &Device::Cpu);
        let _ = b.root().param(&[2], "other", Init::Const(0.0))?;
        let wb = b
            .root()
            .pp("x")
            .param(&[4, 5], "weight", Init::XavierUniform)?;
        assert_eq!(wa.to_vec2::<f32>()?, wb.to_vec2::<f32>()?);
        let bound = (6.0f32 / 9.0).sqrt();
        assert!(wa
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.abs() <= bound));
        Ok(())
    }

    #[test]
    fn load_report_lists_everything() -> Result<()> {
        let mut src = HashMap::new();
        src.insert("a".to_string(), Tensor::zeros(3, DType::F32, &Device::Cpu)?);
        src.insert("b".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu)?);
        src.insert(
            "extra".to_string(),
            Tensor::zeros(1, DType::F32, &Device::Cpu)?,
        );
        let s = ParamStore::from_tensors(src, 0, DType::F32, &Device::Cpu);
        s.root().param(&[3], "a", Init::Const(1.0))?;
        s.root().param(&[4], "b", Init::Const(1.0))?;
        s.root().param(&[1], "c", Init::Const(1.0))?;
        let r = s.load_report();
        assert_eq!(r.missing_names(), vec!["c"]);
        assert_eq!(r.unexpected_names(), vec!["extra"]);
        assert_eq!(r.mismatched, vec![("b".to_string(), vec![4], vec![2])]);
        assert!(r.to_string().contains("b (model [4], file [2])"));
        Ok(())
    }
}
