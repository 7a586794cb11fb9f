//! Support code shared by the command-line tool, the examples, the integration tests and the
//! benchmarks of this workspace.

pub mod digits;
pub mod memory;
pub mod mnist;

/// The training guide (`docs/guide.md`), included so that its code blocks run as doctests.
#[doc = include_str!("../docs/guide.md")]
#[cfg(doctest)]
pub struct Guide;

/// The README, included so that its Rust quick start runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct Readme;
