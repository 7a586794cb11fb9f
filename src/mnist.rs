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

/// The MNIST examples' arguments, `[DIR] [EPOCHS]`: the data directory (default
/// [`DEFAULT_DIR`], checked with [`require_dir`]) and the number of epochs (default
/// `default_epochs`). A bad epoch count exits with code 2.
pub fn args(default_epochs: usize) -> (PathBuf, usize) {
    let mut args = std::env::args().skip(1);
    let dir = require_dir(Path::new(
        &args.next().unwrap_or_else(|| DEFAULT_DIR.into()),
    ));
    let epochs = match args.next().map(|a| a.parse::<usize>()) {
        None => default_epochs,
        Some(Ok(e)) if e > 0 => e,
        Some(_) => {
            eprintln!("error: EPOCHS must be a whole number ≥ 1");
            std::process::exit(2);
        }
    };
    (dir, epochs)
}

/// Reports an example's failure and exits with code 1; a file problem also says how to get
/// the data.
pub fn exit_with(e: nets::Error) -> ! {
    match e {
        e @ nets::Error::File { .. } => eprintln!("error: {e}\n{HOW_TO_GET}"),
        e => eprintln!("error: {e}"),
    }
    std::process::exit(1)
}
