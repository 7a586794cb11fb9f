//! Finite-difference gradient checking, for the test suite and for users' own ops and layers.
//!
//! [`gradient`] compares the symbolic gradient of a scalar expression with central differences
//! `(f(x + h) − f(x − h)) / 2h`, element by element, with `h = step · max(1, |x|)`. Everything runs
//! in `f32`, so the defaults are tuned for it: `step = 1e-2`, and an element passes when
//! `|analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|)` with `atol = 1e-3`,
//! `rtol = 1e-2`. Keep test points away from kinks (relu at 0, abs at 0, ties of max), where the
//! two sides of a central difference see different slopes.
//!
//! In a property test over shapes and values:
//!
//! ```
//! use proptest::prelude::*;
//! use tape::{check, Expr, Tensor};
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(16))]
//!     // In a test file, put #[test] here.
//!     fn tanh_of_square_has_the_right_gradient(v in prop::collection::vec(-2.0f32..2.0, 1..8)) {
//!         let x = Expr::input("x", 1);
//!         let cost = (&x * &x).tanh().sum();
//!         let report = check::gradient(&cost, &[(x.clone(), Tensor::vector(&v))], &[x], &check::Options::default())?;
//!         prop_assert!(report.ok(), "{report}");
//!     }
//! }
//! # fn main() { tanh_of_square_has_the_right_gradient(); }
//! ```

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::function::Function;
use crate::grad::grad;
use crate::op::Op;
use crate::tensor::Tensor;
use std::fmt;

/// Step and tolerances of a check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Relative finite-difference step: `h = step · max(1, |x|)`.
    pub step: f32,
    /// Relative tolerance.
    pub rtol: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// At most this many elements are checked per tensor (spread evenly over it).
    pub max_elements: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step: 1e-2,
            rtol: 1e-2,
            atol: 1e-3,
            max_elements: 64,
        }
    }
}

/// One element where the gradients disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The input or parameter.
    pub wrt: String,
    /// Flat index of the element.
    pub index: usize,
    /// Symbolic gradient.
    pub analytic: f32,
    /// Central difference.
    pub numeric: f32,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Elements compared.
    pub checked: usize,
    /// Largest absolute difference seen.
    pub max_abs_err: f32,
    /// Every element outside the tolerance.
    pub mismatches: Vec<Mismatch>,
}

impl Report {
    /// Whether every compared element was within tolerance.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} elements checked, max abs error {:.3e}",
            self.checked, self.max_abs_err
        )?;
        for m in self.mismatches.iter().take(8) {
            write!(
                f,
                "\n  {}[{}]: analytic {} vs numeric {}",
                m.wrt, m.index, m.analytic, m.numeric
            )?;
        }
        if self.mismatches.len() > 8 {
            write!(f, "\n  ... {} more", self.mismatches.len() - 8)?;
        }
        Ok(())
    }
}

/// Checks the gradient of the scalar `cost` with respect to each of `wrt` (inputs listed in
/// `inputs`, or parameters' expressions) at the point given by `inputs`' values. Parameters are
/// perturbed in place and restored exactly before returning.
pub fn gradient(
    cost: &Expr,
    inputs: &[(Expr, Tensor)],
    wrt: &[Expr],
    opts: &Options,
) -> Result<Report> {
    let in_exprs: Vec<Expr> = inputs.iter().map(|(e, _)| e.clone()).collect();
    let mut values: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    let grads = grad(cost, wrt)?;
    let mut f_cost = Function::compile(&in_exprs, std::slice::from_ref(cost))?;
    let mut f_grad = Function::compile(&in_exprs, &grads)?;
    let refs: Vec<&Tensor> = values.iter().collect();
    let analytic = f_grad.call(&refs)?;

    let mut report = Report::default();
    for (k, w) in wrt.iter().enumerate() {
        let (name, target) = match w.op() {
            Op::Param(p) => (p.name().to_string(), Target::Param(p.clone())),
            Op::Input(name) => match in_exprs.iter().position(|e| e.id() == w.id()) {
                Some(i) => (name.clone(), Target::Input(i)),
                None => {
                    return Err(Error::Input {
                        input: name.clone(),
                        expected: "a value among the check's inputs".into(),
                        found: "none".into(),
                    })
                }
            },
            other => {
                return Err(Error::Input {
                    input: other.name(),
                    expected: "an input or a parameter to check against".into(),
                    found: "an inner node".into(),
                })
            }
        };
        let original = match &target {
            Target::Param(p) => p.value(),
            Target::Input(i) => values[*i].clone(),
        };
        let n = original.len();
        let count = n.min(opts.max_elements.max(1));
        for c in 0..count {
            let index = if count == n { c } else { c * n / count };
            let x = original.data()[index];
            let h = opts.step * x.abs().max(1.0);
            let mut eval = |v: f32, values: &mut Vec<Tensor>| -> Result<f32> {
                match &target {
                    Target::Param(p) => p.update(|d| d[index] = v),
                    Target::Input(i) => values[*i].data_mut()[index] = v,
                }
                let refs: Vec<&Tensor> = values.iter().collect();
                let out = f_cost.call(&refs)?;
                Ok(out[0].data()[0])
            };
            let plus = eval(x + h, &mut values);
            let minus = eval(x - h, &mut values);
            match &target {
                Target::Param(p) => p.update(|d| d.copy_from_slice(original.data())),
                Target::Input(i) => values[*i].data_mut()[index] = x,
            }
            let numeric = (plus? - minus?) / (2.0 * h);
            let a = analytic[k].data()[index];
            let err = (a - numeric).abs();
            report.checked += 1;
            if err.is_nan() || err > report.max_abs_err {
                report.max_abs_err = err;
            }
            // Written so that a NaN error counts as a mismatch.
            let within = err <= opts.atol + opts.rtol * a.abs().max(numeric.abs());
            if !within {
                report.mismatches.push(Mismatch {
                    wrt: name.clone(),
                    index,
                    analytic: a,
                    numeric,
                });
            }
        }
    }
    Ok(report)
}

enum Target {
    Param(crate::Param),
    Input(usize),
}
