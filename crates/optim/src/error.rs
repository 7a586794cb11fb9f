//! The crate's error type: configuration mistakes, bad data, training that diverged, and errors
//! from the engine underneath.
//!
//! Each cause is shown once in a chain: [`Error::Tape`] is transparent (it displays the engine's
//! error and reports that error's own source), and [`Error::Context`] displays only its context
//! line and reports the error it wraps as its source. A chain printer (`anyhow`'s `{:#}`, or a
//! loop over `source()`) then reads "training: iteration 3, batch 2 of 4" followed by the
//! engine's message, each once.

use std::fmt;

/// Result alias for `optim`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring or running training.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// An error from building, differentiating or running a graph, shown as it is.
    Tape(tape::Error),
    /// An error with a line saying what was being done when it happened (which phase,
    /// iteration and batch); the error itself is the [`source`](std::error::Error::source).
    Context {
        /// What was being done, e.g. `training: iteration 3, batch 2 of 4`.
        context: String,
        /// The error that happened meanwhile.
        source: Box<Error>,
    },
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
            Error::Context { context, .. } => f.write_str(context),
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
            // Transparent: `e` was displayed in our place, so its cause comes next, not itself.
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

    /// The innermost error under any context lines: the cause to match on.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }
}

impl From<tape::Error> for Error {
    fn from(e: tape::Error) -> Self {
        Error::Tape(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn data() -> Error {
        Error::Data {
            dataset: "train".into(),
            problem: "no rows".into(),
        }
    }

    #[test]
    fn context_shows_its_line_and_hands_on_the_cause() {
        let e = data()
            .context("outer")
            .context("training: iteration 2, batch 1 of 3");
        assert_eq!(e.to_string(), "training: iteration 2, batch 1 of 3");
        let inner = e.source().expect("a cause");
        assert_eq!(inner.to_string(), "outer");
        let root = inner.source().expect("a cause");
        assert_eq!(root.to_string(), "dataset `train`: no rows");
        assert!(root.source().is_none());
        assert_eq!(e.root(), &data());
    }

    #[test]
    fn engine_errors_pass_through_without_repeating_themselves() {
        let t = tape::Error::Data {
            what: "Tensor::new",
            shape: vec![2],
            len: 3,
        };
        let e = Error::from(t.clone());
        assert_eq!(e.to_string(), t.to_string());
        assert!(e.source().is_none(), "the engine error was already shown");
    }
}
