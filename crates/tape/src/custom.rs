//! The extension point: user-defined ops that take part in graphs, gradients and compiled
//! functions like the built-in ones.
//!
//! A custom op says what it is called, what type it produces, how to compute its output into a
//! buffer the compiled function owns, and how its gradient is expressed with other expressions
//! (so it can be differentiated twice when its gradient is itself differentiable).
//!
//! ```
//! use std::sync::Arc;
//! use tape::{CustomOp, Expr, Function, Tensor, TensorView};
//!
//! /// softsign(x) = x / (1 + |x|), elementwise.
//! struct Softsign;
//!
//! impl CustomOp for Softsign {
//!     fn name(&self) -> &str { "softsign" }
//!     fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> Result<(), String> {
//!         for (o, &x) in out.iter_mut().zip(inputs[0].data()) {
//!             *o = x / (1.0 + x.abs());
//!         }
//!         Ok(())
//!     }
//!     fn grad(&self, inputs: &[Expr], _output: &Expr, g: &Expr) -> tape::Result<Vec<Option<Expr>>> {
//!         // d/dx softsign = 1 / (1 + |x|)²
//!         let d = (inputs[0].abs() + 1.0).square().recip();
//!         Ok(vec![Some(g * &d)])
//!     }
//! }
//!
//! let x = Expr::input("x", 1);
//! let y = Expr::custom(Arc::new(Softsign), &[x.clone()]);
//! let mut f = Function::compile(&[x], &[y])?;
//! assert_eq!(f.call(&[&Tensor::vector(&[1.0, -3.0])])?[0].data(), &[0.5, -0.75]);
//! # Ok::<(), tape::Error>(())
//! ```

use crate::error::Result;
use crate::expr::Expr;
use crate::op::{Op, Type};
use crate::tensor::TensorView;
use std::sync::Arc;

/// A user-defined primitive op.
pub trait CustomOp: Send + Sync {
    /// The name shown in graph dumps and errors.
    fn name(&self) -> &str;

    /// The output's type from the inputs' types (dims may be unknown at build time; at run time
    /// they are all known and the result must be too). By default: the first input's type, as for
    /// an elementwise op. Return a sentence saying what was expected when the inputs do not fit.
    fn output_type(&self, inputs: &[Type]) -> std::result::Result<Type, String> {
        inputs
            .first()
            .cloned()
            .ok_or_else(|| "at least one operand".to_string())
    }

    /// Computes the output into `out` (row-major, already sized by [`CustomOp::output_type`]).
    /// Called once per function call; it should not allocate if it can help it.
    fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> std::result::Result<(), String>;

    /// The gradient with respect to each input, given the inputs, this op's output node and the
    /// gradient `g` of the cost with respect to that output; `None` for inputs without one.
    fn grad(&self, inputs: &[Expr], output: &Expr, g: &Expr) -> Result<Vec<Option<Expr>>>;
}

impl Expr {
    /// Applies a custom op to `inputs`.
    #[track_caller]
    pub fn custom(op: Arc<dyn CustomOp>, inputs: &[Expr]) -> Expr {
        Expr::apply(Op::Custom(op), inputs)
    }
}

/// A planned call of a user's op on operands of known shapes, writing `n` values.
#[derive(Clone)]
pub(crate) struct CustomCall<S> {
    pub(crate) op: Arc<dyn CustomOp>,
    pub(crate) args: Vec<(S, crate::kernels::Shape)>,
    pub(crate) n: usize,
}

impl<S> CustomCall<S> {
    /// Runs the op; its own failure comes back as its message.
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&S) -> &'a [f32],
        out: &mut [f32],
    ) -> std::result::Result<(), String> {
        let mut views: smallvec::SmallVec<[TensorView<'_>; 4]> = smallvec::SmallVec::new();
        for (s, shape) in &self.args {
            let len: usize = shape.iter().product();
            views.push(TensorView::new(shape, &get(s)[..len]).expect("plan sizes are consistent"));
        }
        self.op.forward(&views, &mut out[..self.n])
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(s, shape)| format!("{} {}", name(s), crate::kernels::describe_dims(shape)))
            .collect();
        format!(
            "custom {} ({}) [{}]",
            self.op.name(),
            args.join(", "),
            self.n
        )
    }
}
