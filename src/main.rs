//! The `miram` command line (filled by its issue).
fn main() {}
