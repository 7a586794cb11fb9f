//! Every built-in op's gradient against central finite differences, by property tests over random
//! shapes and values (kept away from kinks), and its second derivative the same way: the gradient
//! of `Σ ∂cost/∂x · v` for a fixed random `v`.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tape::check::{self, Options};
use tape::kernels::Unary;
use tape::testing::{matrix, matrix_off_zero, same_shape_pair, weights};
use tape::{grad, Expr, Function, Tensor};

/// Builds `op(inputs)`, weights its output into a scalar, and checks first and second derivatives
/// with respect to every input.
fn check_op(build: impl Fn(&[Expr]) -> Expr, values: Vec<Tensor>) -> Result<(), TestCaseError> {
    check_op_dims(build, values, false)
}

/// As [`check_op`]; with `known`, the inputs' dims are fixed when the graph is built (ops such as
/// concat need that for their gradient), otherwise only their ranks.
fn check_op_dims(
    build: impl Fn(&[Expr]) -> Expr,
    values: Vec<Tensor>,
    known: bool,
) -> Result<(), TestCaseError> {
    let xs: Vec<Expr> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = format!("x{i}");
            if known {
                Expr::input_with_dims(
                    &name,
                    &v.shape().iter().map(|&d| Some(d)).collect::<Vec<_>>(),
                )
            } else {
                Expr::input(&name, v.rank())
            }
        })
        .collect();
    let y = build(&xs);
    let refs: Vec<&Tensor> = values.iter().collect();
    let out = Function::compile(&xs, std::slice::from_ref(&y))
        .unwrap()
        .call(&refs)
        .unwrap()
        .remove(0);
    let cost = (&y * &Expr::constant(weights(out.shape(), 0.3))).sum();
    let inputs: Vec<(Expr, Tensor)> = xs.iter().cloned().zip(values.iter().cloned()).collect();
    let first = check::gradient(&cost, &inputs, &xs, &Options::default()).unwrap();
    prop_assert!(
        first.ok(),
        "first derivative of\n{}{first}",
        y.debug_print()
    );

    let grads = grad(&cost, &xs).unwrap();
    let mut second = Expr::scalar(0.0);
    for (g, v) in grads.iter().zip(&values) {
        second = second + (g * &Expr::constant(weights(v.shape(), 1.1))).sum();
    }
    let report = check::gradient(&second, &inputs, &xs, &Options::default()).unwrap();
    prop_assert!(
        report.ok(),
        "second derivative of\n{}{report}",
        y.debug_print()
    );
    Ok(())
}

/// A test point for a unary op from one drawn off zero: positive for the ops defined there only,
/// as drawn otherwise (away from zero, where some ops have a kink or a pole). A new op lands in
/// the default arm and is tested with no edit here.
fn in_domain(op: Unary, x: &Tensor) -> Tensor {
    match op {
        Unary::Log | Unary::Sqrt => {
            Tensor::new(x.shape(), x.data().iter().map(|v| v.abs()).collect()).unwrap()
        }
        _ => x.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every unary op, first and second derivatives, from `Unary::ALL`: adding an op to the
    /// kernels adds it here.
    #[test]
    fn every_unary_op(x in matrix_off_zero(0.3, 2.0)) {
        for op in Unary::ALL {
            check_op(move |x| x[0].unary(op), vec![in_domain(op, &x)])?;
        }
    }

    #[test]
    fn smooth_unary_ops(x in matrix(-2.0, 2.0)) {
        check_op(|x| x[0].neg(), vec![x.clone()])?;
        check_op(|x| x[0].exp(), vec![x.clone()])?;
        check_op(|x| x[0].square(), vec![x.clone()])?;
        check_op(|x| x[0].sigmoid(), vec![x.clone()])?;
        check_op(|x| x[0].tanh(), vec![x.clone()])?;
        check_op(|x| x[0].softplus(), vec![x])?;
    }

    #[test]
    fn positive_domain_unary_ops(x in matrix(0.3, 3.0)) {
        check_op(|x| x[0].log(), vec![x.clone()])?;
        check_op(|x| x[0].sqrt(), vec![x.clone()])?;
        check_op(|x| x[0].powf(1.7), vec![x])?;
    }

    #[test]
    fn kinked_unary_ops_away_from_kinks(x in matrix_off_zero(0.1, 2.0), y in matrix_off_zero(0.5, 2.0)) {
        check_op(|x| x[0].abs(), vec![x.clone()])?;
        check_op(|x| x[0].relu(), vec![x.clone()])?;
        check_op(|x| x[0].recip(), vec![y])?;
        check_op(|x| &x[0] * &x[0].sign(), vec![x.clone()])?;
        check_op(|x| (&x[0] * 3.0).clip(-0.2, 0.2), vec![x])?;
    }

    #[test]
    fn binary_ops_same_shape((a, b) in same_shape_pair(0.5, 2.0)) {
        check_op(|x| &x[0] + &x[1], vec![a.clone(), b.clone()])?;
        check_op(|x| &x[0] - &x[1], vec![a.clone(), b.clone()])?;
        check_op(|x| &x[0] * &x[1], vec![a.clone(), b.clone()])?;
        check_op(|x| &x[0] / &x[1], vec![a.clone(), b.clone()])?;
        check_op(|x| x[0].pow(&x[1]), vec![a, b])?;
    }

    #[test]
    fn maximum_minimum_and_select((a, b) in same_shape_pair(-2.0, 2.0)) {
        // Move ties apart: the derivative of max is undefined where the operands meet.
        let b = Tensor::new(b.shape(), b.data().iter().zip(a.data()).map(|(&v, &u)| if (v - u).abs() < 0.1 { u + 0.3 } else { v }).collect()).unwrap();
        check_op(|x| x[0].maximum(&x[1]), vec![a.clone(), b.clone()])?;
        check_op(|x| x[0].minimum(&x[1]), vec![a.clone(), b.clone()])?;
        check_op(|x| x[0].gt(&x[1]).select(&x[0].exp(), &x[1].square()), vec![a, b])?;
    }

    #[test]
    fn broadcasting_binary_ops(m in matrix(0.5, 2.0), s in 0.5f32..2.0) {
        let cols = m.shape()[1];
        let rows = m.shape()[0];
        let row = weights(&[cols], 0.1).data().iter().map(|v| v.abs() + 0.5).collect::<Vec<_>>();
        let row = Tensor::vector(&row);
        let col = Tensor::new(&[rows, 1], weights(&[rows], 0.9).data().iter().map(|v| v.abs() + 0.5).collect()).unwrap();
        check_op(|x| &x[0] + &x[1], vec![m.clone(), row.clone()])?;
        check_op(|x| &x[0] * &x[1], vec![m.clone(), row.clone()])?;
        check_op(|x| &x[1] / &x[0], vec![m.clone(), row])?;
        check_op(|x| &x[0] - &x[1], vec![m.clone(), col.clone()])?;
        check_op(|x| &x[0] * &x[1], vec![m.clone(), col])?;
        check_op(|x| &x[0] * &x[1], vec![m, Tensor::scalar(s)])?;
    }

    #[test]
    fn matmul_in_every_transpose(a in matrix(-1.0, 1.0), n in 1usize..5) {
        let (r, c) = (a.shape()[0], a.shape()[1]);
        let b = weights(&[c, n], 0.2);
        let bt = weights(&[n, c], 0.4);
        let ar = weights(&[r, n], 0.6);
        check_op(|x| x[0].matmul(&x[1]), vec![a.clone(), b])?;
        check_op(|x| x[0].matmul(&x[1].t()), vec![a.clone(), bt])?;
        check_op(|x| x[0].t().matmul(&x[1]), vec![a.clone(), ar.clone()])?;
        check_op(|x| x[0].t().matmul(&x[1].t()), vec![a, ar.t_tensor()])?;
    }

    #[test]
    fn shape_ops(a in matrix(-2.0, 2.0)) {
        let (r, c) = (a.shape()[0], a.shape()[1]);
        check_op(|x| x[0].t(), vec![a.clone()])?;
        check_op(|x| x[0].reshape(&[-1]).exp(), vec![a.clone()])?;
        check_op(|x| x[0].reshape(&[c as isize, r as isize]), vec![a.clone()])?;
        check_op(|x| x[0].unsqueeze(1).tanh(), vec![a.clone()])?;
        check_op(|x| x[0].sum_axis(0, false).broadcast_like(&x[0]) * &x[0], vec![a.clone()])?;
        check_op(|x| x[0].sum_like(&Expr::constant(Tensor::zeros(&[1, c]))), vec![a.clone()])?;
        check_op_dims(|x| Expr::concat(&[x[0].clone(), x[0].square()], 1), vec![a.clone()], true)?;
        check_op_dims(|x| Expr::concat(&[x[0].exp(), x[0].clone()], 0), vec![a.clone()], true)?;
        if c > 1 {
            check_op(|x| x[0].slice(1, 1, c - 1), vec![a.clone()])?;
            check_op(|x| { let p = x[0].split(1, &[1, c - 1]); &p[0].sum() * &p[1].sum() }, vec![a])?;
        }
    }

    #[test]
    fn reductions(a in matrix(-2.0, 2.0)) {
        check_op(|x| x[0].sum(), vec![a.clone()])?;
        check_op(|x| x[0].mean(), vec![a.clone()])?;
        check_op(|x| x[0].sum_axis(0, false), vec![a.clone()])?;
        check_op(|x| x[0].sum_axis(1, true), vec![a.clone()])?;
        check_op(|x| x[0].mean_axis(-1, false), vec![a.clone()])?;
        check_op(|x| x[0].mean_axis(0, true).square(), vec![a.clone()])?;
    }

    #[test]
    fn maxima_with_distinct_values(a in matrix(-2.0, 2.0)) {
        // Spread values so that the maximum is unique and h-perturbations keep it in place.
        let spread = Tensor::new(a.shape(), a.data().iter().enumerate().map(|(i, v)| v * 0.05 + i as f32 * 0.37).collect()).unwrap();
        check_op(|x| x[0].max(), vec![spread.clone()])?;
        check_op(|x| x[0].max_axis(1, false), vec![spread.clone()])?;
        check_op(|x| x[0].max_axis(0, true), vec![spread])?;
    }

    #[test]
    fn softmax_family(a in matrix(-3.0, 3.0)) {
        check_op(|x| x[0].softmax(), vec![a.clone()])?;
        check_op(|x| x[0].log_softmax(), vec![a.clone()])?;
        check_op(|x| x[0].logsumexp(), vec![a.clone()])?;
        check_op(|x| x[0].softmax().log(), vec![a])?;
    }

    #[test]
    fn cross_entropy_gather(a in matrix(-3.0, 3.0), seed in 0usize..1000) {
        let (rows, cols) = (a.shape()[0], a.shape()[1]);
        let labels: Vec<f32> = (0..rows).map(|i| ((seed + 7 * i) % cols) as f32).collect();
        let x = Expr::input("x", 2);
        let y = Expr::labels("y");
        let cost = -x.log_softmax().pick(&y).mean();
        let inputs = vec![(x.clone(), a.clone()), (y.clone(), Tensor::vector(&labels))];
        let report = check::gradient(&cost, &inputs, std::slice::from_ref(&x), &Options::default()).unwrap();
        prop_assert!(report.ok(), "{report}");
        let g = grad(&cost, std::slice::from_ref(&x)).unwrap().remove(0);
        let second = (&g * &Expr::constant(weights(&[rows, cols], 0.5))).sum();
        let report = check::gradient(&second, &inputs, &[x], &Options::default()).unwrap();
        prop_assert!(report.ok(), "{report}");
    }
}

trait TransposeTensor {
    fn t_tensor(&self) -> Tensor;
}

impl TransposeTensor for Tensor {
    fn t_tensor(&self) -> Tensor {
        let (r, c) = (self.shape()[0], self.shape()[1]);
        Tensor::from_fn(&[c, r], |i| self.data()[i[1] * c + i[0]])
    }
}

#[test]
fn dropout_and_noise_pass_gradient_through_the_drawn_mask() {
    let x = Expr::input("x", 2);
    let mask = x.dropout_mask(0.5, 42);
    let y = (&x * &mask).sum() + x.add_noise(0.1, 7).sum();
    let g = grad(&y, std::slice::from_ref(&x)).unwrap().remove(0);
    let mut f = Function::compile(&[x], &[mask, g]).unwrap();
    let out = f.call(&[&Tensor::ones(&[4, 5])]).unwrap();
    for (m, g) in out[0].data().iter().zip(out[1].data()) {
        assert!(*m == 0.0 || *m == 2.0, "mask values are 0 or 1/(1-p)");
        assert_eq!(*g, m + 1.0);
    }
}

#[test]
fn comparisons_sign_and_argmax_pass_no_gradient() {
    let x = Expr::input("x", 2);
    let y = (x.gt(&Expr::scalar(0.0)) + x.sign() + x.argmax().sum()).sum();
    let g = grad(&y, std::slice::from_ref(&x)).unwrap().remove(0);
    let out = Function::compile(&[x], &[g])
        .unwrap()
        .call(&[&Tensor::ones(&[2, 3])])
        .unwrap();
    assert_eq!(out[0].data(), &[0.0; 6]);
}
