//! Where the MNIST examples find their data, and what they say when it is not there.

use std::path::{Path, PathBuf};

/// The shared copy of MNIST beside the repository (`../shared/data/mnist`).
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist");

/// How to get the data, for error messages.
pub const HOW_TO_GET: &str = "Download MNIST's four IDX files (train-images-idx3-ubyte.gz, \
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the MNIST \
site (https://yann.lecun.com/exdb/mnist/, or a mirror such as \
https://ossci-datasets.s3.amazonaws.com/mnist/) into one directory, gzipped or not, and pass it \
as the first argument.";

/// The data directory, or a message saying how to get the data and exit code 1.
pub fn require_dir(dir: &Path) -> PathBuf {
    if !dir.is_dir() {
        eprintln!(
            "error: MNIST directory {} not found.\n{HOW_TO_GET}",
            dir.display()
        );
        std::process::exit(1);
    }
    dir.to_path_buf()
}
