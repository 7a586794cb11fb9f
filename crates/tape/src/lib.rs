//! # tape
//!
//! Tensors, kernels, symbolic expression graphs, reverse-mode gradients and compiled functions:
//! the engine under the `optim` and `nets` crates, built the way Theano is.
//!
//! 1. Build an expression graph with [`Expr`] leaves ([`Expr::input`], [`Expr::constant`],
//!    [`Param`]) and ordinary operators and methods.
//! 2. Differentiate it symbolically with [`grad`]: gradients are expressions too, so they can be
//!    differentiated again.
//! 3. Compile inputs, outputs and optional in-place parameter updates into a [`Function`], which
//!    rewrites the graph once and runs a flat, allocation-free plan per distinct input shapes.
//! 4. Check any gradient against finite differences with [`check`].
//!
//! Loops over time steps (recurrent networks) are graphs too: [`scan()`] runs a step written as
//! an expression graph over the time axis, and its gradient is a scan running backwards.
//!
//! ```
//! use tape::{grad, Expr, Function, Param, Tensor};
//! let x = Expr::input("x", 2);
//! let w = Param::new("w", Tensor::new(&[2, 1], vec![0.5, -1.0])?);
//! let y = x.matmul(&w.expr()).tanh().sum();
//! let dw = grad(&y, &[w.expr()])?.remove(0);
//! let mut f = Function::compile(&[x], &[y, dw])?;
//! let out = f.call(&[&Tensor::new(&[1, 2], vec![1.0, 1.0])?])?;
//! assert!((out[0].item().unwrap() - (-0.5f32).tanh()).abs() < 1e-6);
//! # Ok::<(), tape::Error>(())
//! ```

#![deny(missing_docs)]

pub mod check;
pub mod custom;
mod dims;
pub mod error;
mod exec;
pub mod expr;
pub mod fpenv;
pub mod function;
mod grad;
mod graph;
mod instr;
mod ir;
pub mod kernels;
pub mod op;
mod plan;
mod print;
pub mod profile;
mod rewrite;
pub mod rng;
pub mod scan;
mod scan_body;
mod scan_exec;
mod scan_hoist;
mod scan_save;
mod staged;
pub mod tensor;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use custom::CustomOp;
pub use dims::Dims;
pub use error::{Error, Loc, Result, ValueRole, ValueShape};
pub use expr::{Expr, Param};
pub use function::{Function, Stage};
pub use grad::grad;
pub use op::{DType, Op, Type};
pub use rng::Rng;
pub use scan::{scan, Scan, ScanOutput};
pub use tensor::{Tensor, TensorView};
