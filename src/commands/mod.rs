//! The subcommands of `miram`.

pub mod bench;
pub mod device;
