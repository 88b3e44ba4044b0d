//! Value parsers of arguments several subcommands share: `--preset` (`pretrain`, `finetune`,
//! `bench`), whose possible values (the `--help` text) are `miram_core::PRESETS`, the one
//! table of presets.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
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
