//! Finite-difference gradient checking, for the test suite and for users' own ops and layers.
//!
//! [`gradient`] compares the symbolic gradient of a scalar expression with central differences,
//! element by element. The graph runs in `f32`; the check does its own arithmetic in `f64`.
//!
//! # How an element is judged
//!
//! For the element `x` it takes `h = step · max(1, |x|)` and evaluates the cost at `x ± h` and at
//! `x ± h/2`. The numeric derivative is `n = (f(x+h) − f(x−h)) / w`, the difference taken in
//! `f64` and `w` the distance between the two perturbed points *as stored in f32* (not `2h`), so
//! the rounding of `x ± h` costs nothing. The element passes when
//!
//! ```text
//! |a − n| ≤ atol + rtol · max(|a|, |n|) + scale_tol · G + roundoff · F / h + |n − n½| + |Δ⁴f| / h
//! ```
//!
//! where `a` is the symbolic gradient, `G` the largest `max(|a|, |n|)` over the elements checked in
//! the same tensor, `F` the largest `|f|` seen at the five points `x`, `x ± h/2`, `x ± h`, `n½` the
//! central difference with step `h/2`, and `Δ⁴f = f(x−h) − 4f(x−h/2) + 6f(x) − 4f(x+h/2) + f(x+h)`.
//! Each term answers one source of error:
//!
//! - `rtol · max(|a|, |n|)` (default 1e-2): the truncation error of a central difference, about
//!   `h²·f‴/6`, which for smooth functions at scale 1 is a small fraction of the derivative itself.
//! - `scale_tol · G` (default 1e-3): errors small beside the tensor's largest gradient, where a
//!   finite difference in f32 is no longer meaningful. Unlike a fixed absolute tolerance (this
//!   check used `atol = 1e-3` before), it shrinks with the gradient: a cost of `1e-4 · Σx²` is
//!   judged as strictly as `Σx²`.
//! - `roundoff · F / h` (default `roundoff = 32 · f32::EPSILON ≈ 3.8e-6`): the f32 round-off of
//!   the cost. Two costs each off by `roundoff · F`, divided by `2h`, give at most this much error
//!   in `n`; no finite difference of an f32 graph can resolve less.
//! - `|Δ⁴f| / h`: the same round-off, *measured*. A fourth difference cancels every cubic, so what
//!   is left is `(h/2)⁴ f⁗` (negligible) plus round-off, about 8 times its typical size. It covers
//!   costs whose terms cancel (`|f|` small, round-off set by terms of order 1), which the previous
//!   term underestimates.
//! - `|n − n½|`: how much the derivative moves when the step is halved. It is large near a kink
//!   (relu at 0, ties of max) or where round-off dominates, and tiny elsewhere.
//! - `atol` (default 0): an absolute floor, for users who want one.
//!
//! The last three terms are computed from cost values alone, so a wrong symbolic gradient cannot
//! widen its own tolerance through them.
//!
//! # What it catches and what it cannot
//!
//! With the defaults, an error of the symbolic gradient of an element is caught when it exceeds
//! about 1% of that element, plus 0.1% of the largest gradient element checked in the same tensor,
//! plus the round-off of the cost relative to the step (`3.8e-4 · |cost|` with `step = 1e-2`, or
//! more where the cost's terms cancel). In particular a gradient off by 20% is caught on every
//! element at least 0.7% of the tensor's largest (`G` includes the wrong value, hence not 0.5%),
//! at any overall scale (tested from `1e-8 · Σx²` to `1e4 · Σx²`, and for an element at 1.5% of
//! the largest), as long as the round-off terms stay below the error.
//!
//! It cannot catch:
//! - errors below the f32 round-off of the cost relative to `h`: a term of `1e-6 · Σx²` added to a
//!   cost of order 10 has gradients (~1e-6) far below `3.8e-3`, so even a wrong sign there passes.
//!   Check small terms, such as penalties, on a cost of their own rather than added to a loss;
//! - errors below 1% of the element, or below 0.1% of the tensor's largest element;
//! - elements not sampled: at most `max_elements` per tensor are checked (spread evenly);
//! - anything near a kink, where `|n − n½|` grows and the element is in effect not judged. Keep
//!   test points further than `h` from kinks (relu at 0, abs at 0, ties of max).
//!
//! Each evaluation costs one call of the compiled cost; the check makes four per element.
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

/// Step and tolerances of a check; see the [module docs](self) for how they combine.
#[derive(Clone, Debug)]
pub struct Options {
    /// Relative finite-difference step: `h = step · max(1, |x|)`.
    pub step: f32,
    /// Tolerance relative to the element's own gradient.
    pub rtol: f32,
    /// Absolute tolerance, a floor under the others (0 by default: the other terms scale).
    pub atol: f32,
    /// Tolerance relative to the largest gradient element checked in the same tensor.
    pub scale_tol: f32,
    /// Assumed relative round-off of one evaluation of the cost in f32.
    pub roundoff: f32,
    /// At most this many elements are checked per tensor (spread evenly over it).
    pub max_elements: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step: 1e-2,
            rtol: 1e-2,
            atol: 0.0,
            scale_tol: 1e-3,
            // A few ulps per op on the way to the cost, with margin: no false alarm was seen in
            // the workspace's property tests at this value (see the module docs for its effect).
            roundoff: 32.0 * f32::EPSILON,
            max_elements: 64,
        }
    }
}

impl Options {
    /// Rejects a step or tolerance that would make the check meaningless.
    fn validate(&self) -> Result<()> {
        let bad = |field: &str, expected: &str, value: f32| Error::Input {
            input: format!("check::Options::{field}"),
            expected: expected.into(),
            found: value.to_string(),
        };
        if !(self.step.is_finite() && self.step > 0.0) {
            return Err(bad("step", "a finite step > 0", self.step));
        }
        for (field, value) in [
            ("rtol", self.rtol),
            ("atol", self.atol),
            ("scale_tol", self.scale_tol),
            ("roundoff", self.roundoff),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(bad(field, "a finite tolerance >= 0", value));
            }
        }
        Ok(())
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
    /// The largest difference that would have passed at this element.
    pub tolerance: f32,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Elements compared.
    pub checked: usize,
    /// Largest absolute difference seen.
    pub max_abs_err: f32,
    /// Largest ratio of an element's difference to its tolerance: above 1 is a mismatch, and
    /// how far below 1 it stays tells how much margin a passing check had.
    pub max_ratio: f32,
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
            "{} elements checked, max abs error {:.3e}, max error/tolerance {:.3}",
            self.checked, self.max_abs_err, self.max_ratio
        )?;
        for m in self.mismatches.iter().take(8) {
            write!(
                f,
                "\n  {}[{}]: analytic {} vs numeric {} (tolerance {:.3e})",
                m.wrt, m.index, m.analytic, m.numeric, m.tolerance
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
///
/// Errors when an option is out of range, `cost` is not a scalar, a `wrt` is neither a parameter
/// nor one of `inputs`, or the graph fails to compile or run.
pub fn gradient(
    cost: &Expr,
    inputs: &[(Expr, Tensor)],
    wrt: &[Expr],
    opts: &Options,
) -> Result<Report> {
    opts.validate()?;
    let in_exprs: Vec<Expr> = inputs.iter().map(|(e, _)| e.clone()).collect();
    let values: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    let grads = grad(cost, wrt)?;
    let mut f_grad = Function::compile(&in_exprs, &grads)?;
    let analytic = f_grad.call(&values.iter().collect::<Vec<_>>())?;
    let mut cost_at = CostAt {
        f: Function::compile(&in_exprs, std::slice::from_ref(cost))?,
        values,
    };
    cost_at.base()?;

    let mut report = Report::default();
    for (w, a) in wrt.iter().zip(&analytic) {
        let (name, target) = target_of(w, &in_exprs)?;
        let samples = cost_at.sample_tensor(&target, a.data(), opts)?;
        judge(&name, &samples, opts, &mut report);
    }
    Ok(report)
}

/// What a `wrt` expression perturbs.
enum Target {
    Param(crate::Param),
    Input(usize),
}

fn target_of(w: &Expr, in_exprs: &[Expr]) -> Result<(String, Target)> {
    match w.op() {
        Op::Param(p) => Ok((p.name().to_string(), Target::Param(p.clone()))),
        Op::Input(name) => match in_exprs.iter().position(|e| e.id() == w.id()) {
            Some(i) => Ok((name.clone(), Target::Input(i))),
            None => Err(Error::Input {
                input: name.clone(),
                expected: "a value among the check's inputs".into(),
                found: "none".into(),
            }),
        },
        other => Err(Error::Input {
            input: other.name(),
            expected: "an input or a parameter to check against".into(),
            found: "an inner node".into(),
        }),
    }
}

/// One checked element: its symbolic gradient and what the finite differences say about it.
struct Sample {
    index: usize,
    analytic: f32,
    /// Central difference with the full step.
    numeric: f64,
    /// The check's own estimate of the error of `numeric` (see [`Differences`]).
    uncertainty: f64,
    /// Largest `|cost|` seen around the element, divided by the step: round-off scale of `numeric`.
    cost_over_h: f64,
}

/// What the cost around one element says about its derivative.
struct Differences {
    /// Central difference with the full step.
    numeric: f64,
    /// `|numeric − the same with half the step|`: large near kinks and where round-off dominates.
    spread: f64,
    /// The cost's fourth difference over the step: its round-off, measured, even when `|cost|`
    /// is small because its terms cancel.
    wobble: f64,
    /// The largest `|cost|` seen.
    largest: f64,
}

/// The compiled cost and the point it is evaluated at.
struct CostAt {
    f: Function,
    values: Vec<Tensor>,
}

impl CostAt {
    /// The cost at the unperturbed point; errors unless it is a scalar.
    fn base(&mut self) -> Result<f32> {
        let out = self.f.call(&self.values.iter().collect::<Vec<_>>())?;
        match out[0].data() {
            [v] => Ok(*v),
            _ => Err(Error::Input {
                input: "cost".into(),
                expected: "a scalar (one element) to differentiate".into(),
                found: format!("shape {:?}", out[0].shape()),
            }),
        }
    }

    /// The cost with element `index` of `target` set to `v` (left set: the caller restores it).
    fn at(&mut self, target: &Target, index: usize, v: f32) -> Result<f32> {
        match target {
            Target::Param(p) => p.update(|d| d[index] = v),
            Target::Input(i) => self.values[*i].data_mut()[index] = v,
        }
        self.base()
    }

    /// Central differences with steps `h` and `h/2` around element `index` (value `x`, cost
    /// `base` there); the element is restored before any error is returned.
    fn differences(
        &mut self,
        target: &Target,
        index: usize,
        x: f32,
        h: f32,
        base: f32,
    ) -> Result<Differences> {
        let points = [x + h, x - h, x + h / 2.0, x - h / 2.0];
        let costs: Vec<Result<f32>> = points.iter().map(|&v| self.at(target, index, v)).collect();
        match target {
            Target::Param(p) => p.update(|d| d[index] = x),
            Target::Input(i) => self.values[*i].data_mut()[index] = x,
        }
        let mut f = [0.0f64; 4];
        for (slot, c) in f.iter_mut().zip(costs) {
            *slot = f64::from(c?);
        }
        let f0 = f64::from(base);
        // The distance actually stepped, as stored in f32, not the 2h asked for.
        let slope =
            |fp: f64, fm: f64, xp: f32, xm: f32| (fp - fm) / (f64::from(xp) - f64::from(xm));
        let full = slope(f[0], f[1], points[0], points[1]);
        let half = slope(f[2], f[3], points[2], points[3]);
        // The fourth difference over the five points cancels every polynomial up to degree 3, so
        // what is left is (h/2)⁴·f⁗ (tiny) plus the cost's round-off: about 8.4 times its size.
        let fourth = f[1] - 4.0 * f[3] + 6.0 * f0 - 4.0 * f[2] + f[0];
        Ok(Differences {
            numeric: full,
            spread: (full - half).abs(),
            wobble: fourth.abs() / f64::from(h),
            largest: f.iter().fold(f0.abs(), |m, v| m.max(v.abs())),
        })
    }

    /// Samples up to `opts.max_elements` elements of `target`, spread evenly.
    fn sample_tensor(
        &mut self,
        target: &Target,
        analytic: &[f32],
        opts: &Options,
    ) -> Result<Vec<Sample>> {
        let original = match target {
            Target::Param(p) => p.value(),
            Target::Input(i) => self.values[*i].clone(),
        };
        let base = self.base()?;
        let n = original.len();
        let count = n.min(opts.max_elements.max(1));
        let mut samples = Vec::with_capacity(count);
        for c in 0..count {
            let index = if count == n { c } else { c * n / count };
            let x = original.data()[index];
            let h = opts.step * x.abs().max(1.0);
            let d = self.differences(target, index, x, h, base)?;
            samples.push(Sample {
                index,
                analytic: analytic[index],
                numeric: d.numeric,
                uncertainty: d.spread + d.wobble,
                cost_over_h: d.largest / f64::from(h),
            });
        }
        Ok(samples)
    }
}

/// Compares each sample with its tolerance (module docs) and records the outcome in `report`.
fn judge(name: &str, samples: &[Sample], opts: &Options, report: &mut Report) {
    let magnitude = |s: &Sample| f64::from(s.analytic.abs()).max(s.numeric.abs());
    let largest = samples.iter().map(magnitude).fold(0.0f64, f64::max);
    for s in samples {
        let err = (f64::from(s.analytic) - s.numeric).abs();
        let tolerance = f64::from(opts.atol)
            + f64::from(opts.rtol) * magnitude(s)
            + f64::from(opts.scale_tol) * largest
            + f64::from(opts.roundoff) * s.cost_over_h
            + s.uncertainty;
        report.checked += 1;
        let err32 = err as f32;
        if err32.is_nan() || err32 > report.max_abs_err {
            report.max_abs_err = err32;
        }
        // An exact match is ratio 0 even where the tolerance is 0 (a zero gradient of a constant).
        let ratio = if err == 0.0 {
            0.0
        } else {
            (err / tolerance) as f32
        };
        if ratio.is_nan() || ratio > report.max_ratio {
            report.max_ratio = ratio;
        }
        // A NaN error or tolerance counts as a mismatch.
        let within = err <= tolerance;
        if !within {
            report.mismatches.push(Mismatch {
                wrt: name.to_string(),
                index: s.index,
                analytic: s.analytic,
                numeric: s.numeric as f32,
                tolerance: tolerance as f32,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custom::CustomOp;
    use crate::tensor::TensorView;
    use std::sync::Arc;

    /// `scale · x²` elementwise, whose symbolic gradient is multiplied by `factor`: 1 is right,
    /// anything else a deliberate bug of known size.
    struct ScaledSquare {
        scale: f32,
        factor: f32,
    }

    impl CustomOp for ScaledSquare {
        fn name(&self) -> &str {
            "scaled_square"
        }
        fn forward(
            &self,
            inputs: &[TensorView],
            out: &mut [f32],
        ) -> std::result::Result<(), String> {
            for (o, &x) in out.iter_mut().zip(inputs[0].data()) {
                *o = self.scale * x * x;
            }
            Ok(())
        }
        fn grad(&self, inputs: &[Expr], _output: &Expr, g: &Expr) -> Result<Vec<Option<Expr>>> {
            Ok(vec![Some(
                g * &(&inputs[0] * (2.0 * self.scale * self.factor)),
            )])
        }
    }

    /// Values of both signs and several magnitudes, none near 0 (where a relative error of the
    /// gradient `2·scale·x` vanishes with it).
    const POINT: [f32; 6] = [0.3, -1.7, 0.9, 2.4, -0.6, 1.1];

    fn check_scaled_square(scale: f32, factor: f32) -> Report {
        let x = Expr::input("x", 1);
        let op = Arc::new(ScaledSquare { scale, factor });
        let cost = Expr::custom(op, std::slice::from_ref(&x)).sum();
        let inputs = [(x.clone(), Tensor::vector(&POINT))];
        gradient(&cost, &inputs, &[x], &Options::default()).unwrap()
    }

    #[test]
    fn a_twenty_percent_error_in_a_small_gradient_is_caught() {
        // Gradients 2e-4·x and 2e-5·x, the size a weight_l2 of 1e-4 produces: all below the old
        // absolute tolerance of 1e-3, so the old check passed them whatever their error.
        for scale in [1e-4, 1e-5] {
            let report = check_scaled_square(scale, 1.2);
            assert_eq!(
                report.mismatches.len(),
                POINT.len(),
                "scale {scale}: {report}"
            );
        }
    }

    #[test]
    fn a_twenty_percent_error_is_caught_at_every_scale() {
        for scale in [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4] {
            for factor in [1.2, 0.8] {
                let report = check_scaled_square(scale, factor);
                assert_eq!(
                    report.mismatches.len(),
                    POINT.len(),
                    "scale {scale}, factor {factor}: {report}"
                );
            }
        }
    }

    #[test]
    fn a_right_gradient_passes_at_every_scale() {
        for scale in [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4] {
            let report = check_scaled_square(scale, 1.0);
            assert!(report.ok(), "scale {scale}: {report}");
            assert_eq!(report.checked, POINT.len());
        }
    }

    #[test]
    fn a_small_wrong_element_is_caught_beside_large_ones() {
        // The gradient 2x at 0.015 is 1.5% of the largest (at 1.0): the old fixed atol of 1e-3
        // let its 20% error (6e-3) pass only because 1e-3 < 6e-3; at 1e-2 · Σx² it hid it.
        let point = [1.0, 0.015, -0.5, 0.3];
        for scale in [1.0, 1e-2] {
            let x = Expr::input("x", 1);
            let op = Arc::new(ScaledSquare { scale, factor: 1.2 });
            let cost = Expr::custom(op, std::slice::from_ref(&x)).sum();
            let inputs = [(x.clone(), Tensor::vector(&point))];
            let report = gradient(&cost, &inputs, &[x], &Options::default()).unwrap();
            let flagged: Vec<usize> = report.mismatches.iter().map(|m| m.index).collect();
            assert_eq!(flagged, [0, 1, 2, 3], "scale {scale}: {report}");
        }
    }

    #[test]
    fn a_small_term_is_judged_on_its_own_cost_but_not_beside_a_large_one() {
        // 1e-6 · Σx² with the sign of its gradient flipped: an error of 200%.
        let x = Expr::input("x", 1);
        let y = Expr::input("y", 1);
        let op = Arc::new(ScaledSquare {
            scale: 1e-6,
            factor: -1.0,
        });
        let small = Expr::custom(op, std::slice::from_ref(&x)).sum();
        let inputs = [
            (x.clone(), Tensor::vector(&POINT)),
            (y.clone(), Tensor::vector(&[3.0, -2.0, 1.5])),
        ];
        let alone = gradient(
            &small,
            &inputs,
            std::slice::from_ref(&x),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(alone.mismatches.len(), POINT.len(), "{alone}");
        // Beside Σy² = 15.25, whose f32 spacing (~1e-6) is coarser than the small term's change
        // over a step (~5e-8): the documented limit of any finite difference of an f32 graph.
        let beside = y.square().sum() + small;
        let report = gradient(&beside, &inputs, &[x], &Options::default()).unwrap();
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn a_parameter_is_checked_and_restored_bit_for_bit() {
        let w = crate::Param::new("w", Tensor::vector(&POINT));
        let op = Arc::new(ScaledSquare {
            scale: 1e-5,
            factor: 1.2,
        });
        let cost = Expr::custom(op, &[w.expr()]).sum();
        let report = gradient(&cost, &[], &[w.expr()], &Options::default()).unwrap();
        assert_eq!(report.mismatches.len(), POINT.len(), "{report}");
        assert!(report.mismatches.iter().all(|m| m.wrt == "w"));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(w.value().data()), bits(&POINT));
    }

    #[test]
    fn the_report_says_how_close_each_element_came() {
        let right = check_scaled_square(1.0, 1.0);
        assert!(right.max_ratio < 0.5, "{right}");
        let wrong = check_scaled_square(1.0, 1.2);
        assert!(wrong.max_ratio > 1.0, "{wrong}");
        for m in &wrong.mismatches {
            // The numeric side is 2x to within round-off; the analytic side is 1.2 times that.
            let x = POINT[m.index];
            assert!((m.numeric - 2.0 * x).abs() < 1e-3 * x.abs(), "{m:?}");
            assert!((m.analytic - m.numeric).abs() > m.tolerance, "{m:?}");
            assert!(m.tolerance < 0.1 * m.numeric.abs(), "{m:?}");
        }
    }

    #[test]
    fn bad_options_and_a_non_scalar_cost_are_errors() {
        let x = Expr::input("x", 1);
        let inputs = [(x.clone(), Tensor::vector(&POINT))];
        let wrt = std::slice::from_ref(&x);
        let cases = [
            (
                "check::Options::step",
                Options {
                    step: 0.0,
                    ..Options::default()
                },
            ),
            (
                "check::Options::step",
                Options {
                    step: f32::INFINITY,
                    ..Options::default()
                },
            ),
            (
                "check::Options::rtol",
                Options {
                    rtol: -1e-2,
                    ..Options::default()
                },
            ),
            (
                "check::Options::scale_tol",
                Options {
                    scale_tol: f32::NAN,
                    ..Options::default()
                },
            ),
        ];
        for (field, opts) in cases {
            let e = gradient(&x.sum(), &inputs, wrt, &opts).unwrap_err();
            assert!(
                matches!(&e, Error::Input { input, .. } if input == field),
                "{e:?}"
            );
        }
        let e = gradient(&x.square(), &inputs, wrt, &Options::default()).unwrap_err();
        // Rejected by `grad` before the check evaluates anything.
        assert!(
            matches!(&e, Error::Grad { reason, .. } if reason.contains("scalar")),
            "{e:?}"
        );
    }
}
