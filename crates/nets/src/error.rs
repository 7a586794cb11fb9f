//! The crate's error type: model-building mistakes (unknown activation, bad layer spec, missing
//! partner), bad data for a model, and errors from the crates underneath.
//!
//! Each cause is shown once in a chain: [`Error::Optim`] and [`Error::Tape`] are transparent
//! (they display the inner error and report that error's own source), and [`Error::Context`]
//! displays only its context line (which layer, which phase) and reports the error it wraps as
//! its source.

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
    /// An error from the training crate, shown as it is.
    Optim(optim::Error),
    /// An error from the graph engine, shown as it is.
    Tape(tape::Error),
    /// An error with a line saying what was being done when it happened (which layer's graph,
    /// which phase); the error itself is the [`source`](std::error::Error::source).
    Context {
        /// What was being done, e.g. "layer `hid1`: building its graph".
        context: String,
        /// The error that happened meanwhile.
        source: Box<Error>,
    },
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
            Error::Context { context, .. } => f.write_str(context),
            Error::File { path, problem } => write!(f, "file {}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the inner error was displayed in our place, so its cause comes next.
            Error::Optim(e) => e.source(),
            Error::Tape(e) => e.source(),
            Error::Context { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// This error under a line of context saying what was being done.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every message in the chain of `e`, outermost first.
    fn chain(e: &Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            out.push(c.to_string());
            cause = c.source();
        }
        out
    }

    #[test]
    fn wrapped_optim_and_tape_errors_show_each_cause_once() {
        let t = tape::Error::Input {
            input: "x".into(),
            expected: "shape [?, 2]".into(),
            found: "shape [1, 3]".into(),
        };
        let trained = optim::Error::from(t.clone()).context("training: iteration 1, batch 1 of 1");
        let e = Error::from(trained).context("model `m`");
        assert_eq!(
            chain(&e),
            [
                "model `m`",
                "training: iteration 1, batch 1 of 1",
                "input `x`: expected shape [?, 2], found shape [1, 3]",
            ]
        );
        assert_eq!(chain(&Error::from(t)).len(), 1);
    }
}
