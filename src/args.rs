//! Value parsers of arguments several subcommands share: `--preset` (`pretrain`, `finetune`,
//! `bench`), whose possible values (the `--help` text) are `miram_core::PRESETS`, the one
//! table of presets, `--save-dtype` (`pretrain`, `finetune`), whose values are
//! `miram_core::checkpoint::SaveDtype`'s, and `--precision` (`pretrain`, `finetune`), whose
//! values are `miram_core::Precision`'s.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, PossibleValuesParser, StringValueParser, TypedValueParser};
use miram_core::checkpoint::SaveDtype;
use miram_core::{Device, Precision, PRESETS};

/// Reads `--preset` as a name and lists the table's names with their descriptions in
/// `--help`. It does not refuse an unknown name itself: the configuration does when it
/// resolves (`MiramConfig::preset`), with the same one-line error, naming the known presets,
/// as for a `preset` key of a configuration file.
#[derive(Debug, Clone, Copy)]
pub struct PresetParser;

impl TypedValueParser for PresetParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            PRESETS
                .iter()
                .map(|p| PossibleValue::new(p.name).help(p.description)),
        ))
    }
}

/// `--save-dtype`: one of [`SaveDtype::ALL`] by name, each listed with its description in
/// `--help`; any other value is refused by clap, naming the possible ones.
pub fn save_dtype_parser() -> impl TypedValueParser<Value = SaveDtype> {
    PossibleValuesParser::new(
        SaveDtype::ALL.map(|d| PossibleValue::new(d.name()).help(d.description())),
    )
    .try_map(|s| s.parse::<SaveDtype>())
}

/// `--precision`: one of [`Precision::ALL`] by name, each listed with its description in
/// `--help`; any other value is refused by clap, naming the possible ones.
pub fn precision_parser() -> impl TypedValueParser<Value = Precision> {
    PossibleValuesParser::new(
        Precision::ALL.map(|p| PossibleValue::new(p.name()).help(p.description())),
    )
    .try_map(|s| s.parse::<Precision>())
}

/// Refuses a training precision the device has no fast path for: bf16 on the CPU (the
/// library runs it there, through candle's composed ops, slower than the fused f32 kernels).
pub fn check_precision(precision: Precision, device: &Device) -> anyhow::Result<()> {
    if precision == Precision::Bf16 && device.is_cpu() {
        anyhow::bail!(
            "--precision bf16 needs a GPU (--device cuda); on the CPU the fused f32 kernels are the fast path, and bf16 runs there only through the library"
        );
    }
    Ok(())
}
