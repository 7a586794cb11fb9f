//! The crate's error type: model-building mistakes (unknown activation, bad layer spec, missing
//! partner), bad data for a model, and errors from the crates underneath.

use std::fmt;

/// Result alias for `nets`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, training or using a model.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// A layer, activation, loss or regularizer specification that cannot be built.
    Config {
        /// What is being configured, e.g. "layer `hid1`" or "activation `rleu`".
        what: String,
        /// What is wrong and what would be valid.
        problem: String,
    },
    /// Data that does not fit the model: wrong width, rank, labels out of range, NaN.
    Data {
        /// The layer or input concerned.
        what: String,
        /// What is wrong, with the shapes involved.
        problem: String,
    },
    /// Nothing by that name (a layer, a parameter, an output).
    NotFound {
        /// What was looked for.
        what: String,
        /// What exists instead.
        available: String,
    },
    /// An error from the training crate.
    Optim(optim::Error),
    /// An error from the graph engine.
    Tape(tape::Error),
    /// A model or parameter file that cannot be written or read: I/O failure, another format or
    /// a newer version, damaged contents, or a model that does not match the file.
    File {
        /// The file concerned.
        path: std::path::PathBuf,
        /// What is wrong with it, e.g. "theanets-rs model version 2 is newer than this build
        /// reads (versions 1 to 1)".
        problem: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { what, problem } => write!(f, "{what}: {problem}"),
            Error::Data { what, problem } => write!(f, "{what}: {problem}"),
            Error::NotFound { what, available } => write!(f, "no {what}; available: {available}"),
            Error::Optim(e) => e.fmt(f),
            Error::Tape(e) => e.fmt(f),
            Error::File { path, problem } => write!(f, "file {}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Optim(e) => Some(e),
            Error::Tape(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tape::Error> for Error {
    fn from(e: tape::Error) -> Self {
        Error::Tape(e)
    }
}

impl From<optim::Error> for Error {
    fn from(e: optim::Error) -> Self {
        match e {
            optim::Error::Tape(t) => Error::Tape(t),
            other => Error::Optim(other),
        }
    }
}

/// A configuration error.
pub(crate) fn config(what: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::Config {
        what: what.into(),
        problem: problem.into(),
    }
}

/// The error for an unknown option key, suggesting the closest valid one.
pub(crate) fn unknown_key(key: &str, valid: &[&str]) -> Error {
    config(
        format!("option `{key}`"),
        optim::options::unknown_key_problem(key, valid),
    )
}
