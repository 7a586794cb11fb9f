//! The crate's error type: configuration mistakes, bad data, training that diverged, and errors
//! from the engine underneath.

use std::fmt;

/// Result alias for `optim`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring or running training.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// An error from building, differentiating or running a graph.
    Tape(tape::Error),
    /// A dataset that cannot be used, e.g. arrays of different lengths or no rows at all.
    Data {
        /// The dataset's name.
        dataset: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// An unknown algorithm or option, or an invalid value for one.
    Config {
        /// The algorithm or option concerned.
        what: String,
        /// What is wrong and what would be valid.
        problem: String,
    },
    /// The loss became NaN or infinite; the best parameters seen so far have been restored.
    Diverged {
        /// The iteration (counted from 1) whose loss was not finite.
        iteration: usize,
        /// The offending loss value.
        loss: f32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tape(e) => e.fmt(f),
            Error::Data { dataset, problem } => write!(f, "dataset `{dataset}`: {problem}"),
            Error::Config { what, problem } => write!(f, "{what}: {problem}"),
            Error::Diverged { iteration, loss } => write!(
                f,
                "training diverged: the loss was {loss} at iteration {iteration}; the best parameters so far were restored"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
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
