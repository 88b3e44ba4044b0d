//! Checkpoints: safetensors files with the reference's names and the configuration in the
//! metadata, written atomically; official MAE `.pth` files and timm safetensors read without
//! renaming by hand. Renames happen here, in [`to_reference_names`], and nowhere else.
//!
//! - MAE's single decoder (`decoder_blocks.{j}`, `decoder_norm`, `decoder_pred`,
//!   `decoder_pos_embed`) maps onto `decoders.0.*`.
//! - Sin-cos tables (`pos_embed`, `decoders.{i}.pos_embed`) are dropped on load: the model
//!   computes them for its own grid. They are written on save so that the reference
//!   (PyTorch, `load_state_dict(strict=True)`) loads our files.
//! - A 3-channel patch embedding loads into a 1-channel model by summing over the input
//!   channels, and a 1-channel one into a 3-channel model by repetition scaled by 1/3
//!   (timm's `adapt_input_conv`).
//! - A final model can be stored in f16 or bf16 ([`SaveDtype`], [`resave_as`]: rounded to
//!   nearest, ties to even, by `half`); every reader ([`read_checkpoint`]) widens f16 and
//!   bf16 tensors to f32. Train states (resume checkpoints) stay f32.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use miram_nn::LoadReport;

use crate::{Error, Result};

/// The `format` metadata value of MIRAM checkpoints.
pub const FORMAT: &str = "miram-checkpoint-v1";

/// The tensors and metadata of a checkpoint file.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// Tensors by name, as stored (no renaming).
    pub tensors: HashMap<String, Tensor>,
    /// String metadata (safetensors header; empty for `.pth`).
    pub metadata: BTreeMap<String, String>,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The floating-point type the tensors of a saved model are stored in (`--save-dtype`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaveDtype {
    /// IEEE single precision: the weights exactly as trained.
    #[default]
    F32,
    /// IEEE half precision (`half::f16`): 10-bit mantissa, largest finite 65504.
    F16,
    /// bfloat16 (`half::bf16`): f32's exponent range, 7-bit mantissa.
    Bf16,
}

impl SaveDtype {
    /// Every save type, f32 first.
    pub const ALL: [Self; 3] = [Self::F32, Self::F16, Self::Bf16];

    /// The name, as `--save-dtype` spells it (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// What the type keeps, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Self::F32 => "the weights exactly as trained (4 bytes a value)",
            Self::F16 => "IEEE half precision, rounded to nearest even (2 bytes a value)",
            Self::Bf16 => "bfloat16, rounded to nearest even (2 bytes a value)",
        }
    }

    /// The candle type of the stored tensors.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

impl fmt::Display for SaveDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaveDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown save dtype `{s}`; known: {}",
                    Self::ALL.map(Self::name).join(", ")
                ))
            })
    }
}

/// `t` (f32) rounded to `dtype` through `half` (`f16::from_f32` / `bf16::from_f32`: to
/// nearest, ties to even), on the CPU; an f32 `dtype` copies it to the CPU unchanged.
///
/// # Shapes
/// - `t`: any, returns the same shape
pub fn round_f32_to(t: &Tensor, dtype: SaveDtype) -> Result<Tensor> {
    let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let cpu = &Device::Cpu;
    Ok(match dtype {
        SaveDtype::F32 => Tensor::from_vec(v, t.shape(), cpu)?,
        SaveDtype::F16 => {
            let h: Vec<half::f16> = v.into_iter().map(half::f16::from_f32).collect();
            Tensor::from_vec(h, t.shape(), cpu)?
        }
        SaveDtype::Bf16 => {
            let h: Vec<half::bf16> = v.into_iter().map(half::bf16::from_f32).collect();
            Tensor::from_vec(h, t.shape(), cpu)?
        }
    })
}

/// Rewrites the model file `path` (a safetensors file written by [`write_safetensors`]) with
/// its floating-point tensors (f32, or f16 / bf16 widened first) stored as `dtype`
/// ([`round_f32_to`]) and its metadata unchanged, atomically; other tensors are kept as they
/// are. For [`SaveDtype::F32`] the file is left untouched (the writers write f32).
///
/// This is how `miram pretrain` and `miram finetune` store their final model in f16 or
/// bf16 while their resume checkpoints stay f32.
pub fn resave_as(path: &Path, dtype: SaveDtype) -> Result<()> {
    if dtype == SaveDtype::F32 {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let ck = read_safetensors_bytes(path, &bytes, &Device::Cpu)?;
    write_safetensors(path, &stored_as(ck.tensors, dtype)?, &ck.metadata)
}

/// `tensors` with their floating-point values (f32, f16 or bf16) stored as `dtype`
/// ([`round_f32_to`]), on the CPU; other tensors as they are. What `resave_as` and `miram
/// export` write.
pub fn stored_as(
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    dtype: SaveDtype,
) -> Result<BTreeMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype().is_float() {
                round_f32_to(&t, dtype)?
            } else {
                t
            };
            Ok((k, t))
        })
        .collect()
}

/// f16 and bf16 tensors widened (exactly) to f32; others unchanged.
fn widen_half(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, t)| {
            let t = match t.dtype() {
                DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
                _ => t,
            };
            Ok((k, t))
        })
        .collect()
}

/// Reads a checkpoint: safetensors, or a PyTorch `.pth` zip (a state dict, or a dict whose
/// `model` or `state_dict` entry is one, as MAE's released checkpoints are). f16 and bf16
/// tensors are widened to f32.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK") {
        return read_pth(path, device);
    }
    let mut ck = read_safetensors_bytes(path, &bytes, device)?;
    ck.tensors = widen_half(ck.tensors)?;
    Ok(ck)
}

/// The tensors (as stored) and metadata of the safetensors file `bytes` read from `path`.
fn read_safetensors_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<Checkpoint> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ckpt_err(path, format!("not a safetensors or .pth file ({e})")))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| ckpt_err(path, format!("unreadable tensors ({e})")))?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
        metadata,
    })
}

fn read_pth(path: &Path, device: &Device) -> Result<Checkpoint> {
    let mut last_err = None;
    for key in [Some("model"), Some("state_dict"), None] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(list) if !list.is_empty() => {
                let mut tensors = HashMap::new();
                for (name, t) in list {
                    tensors.insert(name, t.to_device(device)?);
                }
                return Ok(Checkpoint {
                    path: path.to_path_buf(),
                    tensors: widen_half(tensors)?,
                    metadata: BTreeMap::new(),
                });
            }
            Ok(_) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    Err(ckpt_err(
        path,
        format!(
            "no state dict found in the .pth file ({})",
            last_err.unwrap_or_else(|| "empty".into())
        ),
    ))
}

/// The name of the first tensor holding a NaN or infinite value (floating-point tensors
/// only), or none. `f32` tensors on the CPU (the training step's weights, gradients and
/// moments) are scanned in place, without a copy; the others take one reduction over all of
/// them, then a search only when one is found.
pub fn first_non_finite<'a, K: AsRef<str> + 'a>(
    tensors: impl IntoIterator<Item = (&'a K, &'a Tensor)>,
) -> Result<Option<String>> {
    let mut rest: Vec<(&str, &Tensor)> = Vec::new();
    for (k, t) in tensors {
        if !t.dtype().is_float() {
            continue;
        }
        match cpu_f32_all_finite(t) {
            Some(true) => {}
            Some(false) => return Ok(Some(k.as_ref().to_string())),
            None => rest.push((k.as_ref(), t)),
        }
    }
    // 0 x is 0 for a finite x and NaN otherwise, so the sum cannot overflow.
    let zero =
        |t: &Tensor| -> Result<Tensor> { Ok(t.affine(0.0, 0.0)?.sum_all()?.to_dtype(DType::F32)?) };
    let mut acc: Option<Tensor> = None;
    for (_, t) in &rest {
        let z = zero(t)?;
        acc = Some(match acc {
            None => z,
            Some(a) => {
                let z = z.to_device(a.device())?;
                (a + z)?
            }
        });
    }
    let total = match acc {
        Some(a) => a.to_scalar::<f32>()?,
        None => 0.0,
    };
    if total == 0.0 {
        return Ok(None);
    }
    for (k, t) in rest {
        if zero(t)?.to_scalar::<f32>()? != 0.0 {
            return Ok(Some(k.to_string()));
        }
    }
    Ok(None)
}

/// Whether a contiguous `f32` CPU tensor is all finite, read in place; none for any other
/// tensor.
fn cpu_f32_all_finite(t: &Tensor) -> Option<bool> {
    crate::optim::cpu::read_f32(t, |v| v.iter().all(|x| x.is_finite()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// then fsync of the folder. A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Persist the rename; not every platform can sync a folder, so failure is ignored.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises tensors and metadata to safetensors bytes.
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::tensor::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), Some(meta)).map_err(
        |e| Error::Checkpoint {
            path: PathBuf::new(),
            message: format!("serialisation failed: {e}"),
        },
    )
}

/// Writes a safetensors checkpoint atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = safetensors_bytes(tensors, metadata).map_err(|e| match e {
        Error::Checkpoint { message, .. } => ckpt_err(path, message),
        e => e,
    })?;
    write_atomic(path, &bytes)
}

/// The names of MAE's single decoder in official MAE checkpoints and in this model (its 1x
/// decoder), as `(MAE, ours)` pairs; a pair ending in `.` maps a prefix, the others a whole
/// name. Every other name is the same in both.
pub const MAE_DECODER_NAMES: [(&str, &str); 4] = [
    ("decoder_blocks.", "decoders.0.blocks."),
    ("decoder_norm.", "decoders.0.norm."),
    ("decoder_pred.", "decoders.0.pred."),
    ("decoder_pos_embed", "decoders.0.pos_embed"),
];

/// Renames `name` by the first `(from, to)` pair whose `from` matches it: a `from` ending
/// in `.` as a prefix, any other as the whole name.
fn rename<'a>(name: &str, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    for (from, to) in pairs {
        if from.ends_with('.') {
            if let Some(rest) = name.strip_prefix(from) {
                return format!("{to}{rest}");
            }
        } else if name == from {
            return to.to_string();
        }
    }
    name.to_string()
}

/// This model's name of a tensor of an official MAE checkpoint (`decoder_blocks.{j}` ->
/// `decoders.0.blocks.{j}`, ...; see [`MAE_DECODER_NAMES`]).
pub fn reference_name(mae_name: &str) -> String {
    rename(mae_name, MAE_DECODER_NAMES.into_iter())
}

/// The official MAE name of a tensor of this model (`decoders.0.blocks.{j}` ->
/// `decoder_blocks.{j}`, ...; the inverse of [`reference_name`]).
pub fn mae_name(name: &str) -> String {
    rename(
        name,
        MAE_DECODER_NAMES.into_iter().map(|(mae, ours)| (ours, mae)),
    )
}

/// Maps the names of official MAE checkpoints onto the reference's ([`reference_name`]).
pub fn to_reference_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .map(|(k, v)| (reference_name(&k), v))
        .collect()
}

/// True for the fixed sin-cos tables, which the model computes itself.
pub fn is_computed_table(name: &str) -> bool {
    name == "pos_embed" || (name.starts_with("decoders.") && name.ends_with(".pos_embed"))
}

/// Prepares loaded tensors for a model with `in_chans` input channels: reference names,
/// computed tables and optimiser state (`optimizer.*` of train states) dropped, the patch
/// embedding adapted to the channel count.
pub fn prepare_for_model(
    tensors: HashMap<String, Tensor>,
    in_chans: usize,
) -> Result<HashMap<String, Tensor>> {
    let mut out: HashMap<String, Tensor> = to_reference_names(tensors)
        .into_iter()
        .filter(|(k, _)| !is_computed_table(k) && !k.starts_with("optimizer."))
        .collect();
    let key = "patch_embed.proj.weight";
    if let Some(w) = out.get(key) {
        if w.rank() == 4 {
            let c = w.dim(1)?;
            if c != in_chans {
                let adapted = adapt_input_conv(w, in_chans)?;
                out.insert(key.to_string(), adapted);
            }
        }
    }
    Ok(out)
}

/// timm's `adapt_input_conv`: a convolution weight `[D, C, p, p]` for another channel count
/// (3 -> 1 sums the channels; otherwise the channels repeat, scaled by `C / in_chans`).
pub fn adapt_input_conv(w: &Tensor, in_chans: usize) -> Result<Tensor> {
    let (_d, c, _, _) = w.dims4()?;
    if c == in_chans {
        return Ok(w.clone());
    }
    if in_chans == 1 {
        return Ok(w.sum_keepdim(1)?);
    }
    let repeat = in_chans.div_ceil(c);
    let r = w.repeat((1, repeat, 1, 1))?.narrow(1, 0, in_chans)?;
    Ok((r * (c as f64 / in_chans as f64))?)
}

/// Turns a load report into an error unless it is exact once `allowed_missing` names are
/// ignored (e.g. a new head, or a decoder scale absent from an MAE checkpoint).
pub fn ensure_loaded(
    report: &LoadReport,
    path: &Path,
    allowed_missing: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let mut r = report.clone();
    r.missing.retain(|(n, _)| !allowed_missing(n));
    if r.is_exact() {
        Ok(())
    } else {
        Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            details: r.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(t: &Tensor) -> Vec<u16> {
        match t.dtype() {
            DType::BF16 => t
                .to_vec1::<half::bf16>()
                .map(|v| v.into_iter().map(half::bf16::to_bits).collect()),
            DType::F16 => t
                .to_vec1::<half::f16>()
                .map(|v| v.into_iter().map(half::f16::to_bits).collect()),
            other => panic!("not a half type: {other:?}"),
        }
        .expect("half values")
    }

    #[test]
    fn rounding_is_to_nearest_with_ties_to_even() -> Result<()> {
        // bf16 keeps 7 mantissa bits: around 1 its step is 2^-7 (1.0 = 0x3F80).
        let x = Tensor::new(
            &[
                1.0f32 + 2f32.powi(-8),               // halfway 0x3F80 / 0x3F81: even 0x3F80
                1.0 + 3.0 * 2f32.powi(-8),            // halfway 0x3F81 / 0x3F82: even 0x3F82
                1.0 + 2f32.powi(-8) + 2f32.powi(-20), // above halfway: 0x3F81
                -2.0,                                 // exact: 0xC000
            ],
            &Device::Cpu,
        )?;
        let b = round_f32_to(&x, SaveDtype::Bf16)?;
        assert_eq!(b.dtype(), DType::BF16);
        assert_eq!(bits(&b), vec![0x3F80, 0x3F82, 0x3F81, 0xC000]);
        // f16 keeps 10: around 1 its step is 2^-10 (1.0 = 0x3C00); 65520 is halfway between
        // the largest finite 65504 (0x7BFF) and 65536, which rounds to even: infinity.
        let x = Tensor::new(
            &[
                1.0f32 + 2f32.powi(-11),
                1.0 + 3.0 * 2f32.powi(-11),
                65504.0,
                65520.0,
            ],
            &Device::Cpu,
        )?;
        let h = round_f32_to(&x, SaveDtype::F16)?;
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(bits(&h), vec![0x3C00, 0x3C02, 0x7BFF, 0x7C00]);
        // f32 is kept as it is.
        let f = round_f32_to(&x, SaveDtype::F32)?;
        assert_eq!(f.to_vec1::<f32>()?, x.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn save_dtype_names_round_trip_and_unknown_ones_are_listed() {
        for d in SaveDtype::ALL {
            assert_eq!(d.name().parse::<SaveDtype>().expect("known"), d);
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(SaveDtype::default(), SaveDtype::F32);
        let e = "f8".parse::<SaveDtype>().unwrap_err().to_string();
        assert!(e.contains("`f8`") && e.contains("f32, f16, bf16"), "{e}");
    }

    #[test]
    fn mae_names_map_both_ways() {
        for (mae, ours) in [
            (
                "decoder_blocks.3.attn.qkv.weight",
                "decoders.0.blocks.3.attn.qkv.weight",
            ),
            ("decoder_norm.bias", "decoders.0.norm.bias"),
            ("decoder_pred.weight", "decoders.0.pred.weight"),
            ("decoder_pos_embed", "decoders.0.pos_embed"),
            ("blocks.0.norm1.weight", "blocks.0.norm1.weight"),
            ("decoder_embed.weight", "decoder_embed.weight"),
        ] {
            assert_eq!(reference_name(mae), ours);
            assert_eq!(mae_name(ours), mae);
        }
        // The 2x decoder has no MAE name; a name that only starts like a whole-name pair
        // is left alone.
        assert_eq!(mae_name("decoders.1.pred.weight"), "decoders.1.pred.weight");
        assert_eq!(reference_name("decoder_pos_embed2"), "decoder_pos_embed2");
    }
}
