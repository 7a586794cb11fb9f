//! The command-line tool: argument parsing ([`args`]), data and layer lists ([`data`]), the
//! training job with live progress ([`train`]), its output files ([`report`]) and the model
//! commands `eval`, `predict` and `inspect` ([`commands`]).

pub mod args;
pub mod commands;
pub mod data;
pub mod report;
pub mod train;

use std::fmt;

/// Any error of the tool; `main` prints it and its causes, one line each.
pub type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// An error the tool itself finds (the libraries' errors pass through as they are).
#[derive(Debug)]
pub struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A boxed [`Failure`] with this message.
pub fn fail(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Failure(message.into()))
}

/// An error with a message naming what was being done, keeping `cause` as its source so that
/// `main` prints it as a `caused by:` line.
#[derive(Debug)]
pub struct Context {
    message: String,
    cause: Box<dyn std::error::Error>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// Wraps `cause` in a [`Context`].
pub fn context(
    message: impl Into<String>,
    cause: impl Into<Box<dyn std::error::Error>>,
) -> Box<dyn std::error::Error> {
    Box::new(Context {
        message: message.into(),
        cause: cause.into(),
    })
}
