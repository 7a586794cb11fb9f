//! The one error type of the crate: every variant keeps the op or input it is about, the shapes
//! involved and, where a graph node is to blame, the user's source line that built it.

use crate::dims::Dims;
use std::fmt;
use std::panic::Location;

/// Where a graph node was built: the caller's file, line and column (from `#[track_caller]`).
pub type Loc = &'static Location<'static>;

/// Result alias used throughout `tape`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when building tensors, differentiating or running a graph.
///
/// Shapes are rendered the numpy way (`[32, 784]`); a dimension unknown at build time shows as `?`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// A tensor's data does not fit the shape it was given.
    Data {
        /// What was being built, e.g. `Tensor::new`.
        what: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The number of values supplied.
        len: usize,
    },
    /// An op got operands whose shapes (or ranks) it cannot combine.
    Shape {
        /// The op's name, e.g. `matmul`.
        op: String,
        /// The operands' shapes, as known where the error was found (build time may not know
        /// every dim; run time does).
        shapes: Vec<Dims>,
        /// What the op needed.
        expected: String,
        /// The user's line that built the node.
        at: Loc,
    },
    /// A compiled function was called with arguments that do not match its inputs.
    Input {
        /// The input's name (or `arguments` when their number is wrong).
        input: String,
        /// What the function expected.
        expected: String,
        /// What it got.
        found: String,
    },
    /// A value whose shape does not fit where it goes: a function's argument, a parameter's
    /// update or its new value. Boxed: its two shapes would double the size of every `Result`.
    ValueShape(Box<ValueShape>),
    /// A data value is NaN or infinite where finite values are required.
    NonFinite {
        /// The input or op that saw it.
        input: String,
        /// Flat index of the first bad value.
        index: usize,
        /// The value itself.
        value: f32,
    },
    /// A class label is not an integer in `0..classes`.
    Label {
        /// The op that consumed the labels.
        op: String,
        /// Row of the first bad label.
        row: usize,
        /// The bad value.
        value: f32,
        /// Number of classes the op expected.
        classes: usize,
        /// The user's line that built the node.
        at: Loc,
    },
    /// Differentiation was asked for something that has no gradient.
    Grad {
        /// What went wrong, in words.
        reason: String,
        /// The user's line that built the offending node.
        at: Loc,
    },
    /// An op (typically a user's custom op) reported a failure of its own.
    Op {
        /// The op's name.
        op: String,
        /// Its message.
        message: String,
        /// The user's line that built the node.
        at: Loc,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Multiplied with checks: the error may be about a shape whose count overflows.
            Error::Data { what, shape, len } => {
                match shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
                    Some(n) => write!(
                        f,
                        "{what}: shape {} needs {n} values, got {len}",
                        fmt_dims(shape)
                    ),
                    None => write!(
                    f,
                    "{what}: shape {} has more elements than a tensor can hold, got {len} values",
                    fmt_dims(shape)
                ),
                }
            }
            Error::Shape {
                op,
                shapes,
                expected,
                at,
            } if shapes.is_empty() => write!(f, "{op} at {at}: no operands but {expected}"),
            Error::Shape {
                op,
                shapes,
                expected,
                at,
            } => write!(
                f,
                "{op} at {at}: operands of shapes {} but {expected}",
                Joined(shapes)
            ),
            Error::Input {
                input,
                expected,
                found,
            } => {
                write!(f, "input `{input}`: expected {expected}, found {found}")
            }
            Error::ValueShape(v) => {
                let ValueShape {
                    input,
                    role,
                    expected,
                    found,
                } = v.as_ref();
                let what = match role {
                    ValueRole::Argument => "shape",
                    ValueRole::Update => "an update of shape",
                    ValueRole::NewValue => "a value of shape",
                };
                write!(
                    f,
                    "input `{input}`: expected {what} {expected}, found shape {}",
                    fmt_dims(found)
                )
            }
            Error::NonFinite {
                input,
                index,
                value,
            } => {
                write!(
                    f,
                    "input `{input}`: value {value} at flat index {index} is not finite"
                )
            }
            Error::Label {
                op,
                row,
                value,
                classes,
                at,
            } => write!(
                f,
                "{op} at {at}: label {value} in row {row} is not an integer in 0..{classes}"
            ),
            Error::Grad { reason, at } => write!(f, "grad (node built at {at}): {reason}"),
            Error::Op { op, message, at } => write!(f, "{op} at {at}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The details of an [`Error::ValueShape`].
#[derive(Clone, Debug, PartialEq)]
pub struct ValueShape {
    /// The argument's or parameter's name.
    pub input: String,
    /// What the value was given as.
    pub role: ValueRole,
    /// The shape it needed (`None` where any size fits).
    pub expected: Dims,
    /// The shape it had (a value's shape is always fully known).
    pub found: Vec<usize>,
}

impl ValueShape {
    /// The error for a value of shape `found` given as `role` where `expected` was needed.
    pub fn error(
        input: impl Into<String>,
        role: ValueRole,
        expected: Dims,
        found: &[usize],
    ) -> Error {
        Error::ValueShape(Box::new(ValueShape {
            input: input.into(),
            role,
            expected,
            found: found.to_vec(),
        }))
    }
}

/// What a value of the wrong shape ([`Error::ValueShape`]) was given as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRole {
    /// An argument of a compiled function.
    Argument,
    /// The update of a parameter, computed by a compiled function.
    Update,
    /// A parameter's new value, set directly.
    NewValue,
}

/// Renders a concrete shape as `[2, 3]`.
pub fn fmt_dims(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Shapes rendered in a row, `[?, 3], [4, 2]`, without building a string per shape.
struct Joined<'a>(&'a [Dims]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
