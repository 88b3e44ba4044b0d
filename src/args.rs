//! Value parsers of arguments several subcommands share: `--preset` (`pretrain`, `finetune`,
//! `bench`), whose possible values (the `--help` text) are `miram_core::PRESETS`, the one
//! table of presets, and `--save-dtype` (`pretrain`, `finetune`), whose values are
//! `miram_core::checkpoint::SaveDtype`'s.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, PossibleValuesParser, StringValueParser, TypedValueParser};
use miram_core::checkpoint::SaveDtype;
use miram_core::PRESETS;

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
