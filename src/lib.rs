//! The library target of the `miram` package holds nothing but the README's Rust examples,
//! so that `cargo test` compiles and runs them as doc tests and the README stays true. The
//! command line is the `miram` binary (`src/main.rs`); the libraries are the `miram-*`
//! crates, `miram-core` first.

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
