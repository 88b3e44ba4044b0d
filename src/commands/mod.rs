//! The subcommands of `miram`, one module each.

pub mod bench;
pub mod device;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod finetune;
pub mod index;
pub mod inspect;
pub mod metrics;
pub mod predict;
pub mod pretrain;
pub mod probe;
pub mod quickstart;
pub mod reconstruct;
pub mod selftest;
pub mod study;
pub mod synth;
