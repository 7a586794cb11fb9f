//! Support code shared by the command-line tool, the examples, the integration tests and the
//! benchmarks of this workspace.

pub mod digits;
