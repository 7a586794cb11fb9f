//! A user-defined op (softsign, from `examples/custom_op.rs`) works in graphs, gradients (first
//! and second order), compiled functions and error reporting like a built-in.

#[path = "../examples/custom_op.rs"]
#[allow(dead_code)]
mod example;

use example::Softsign;
use proptest::prelude::*;
use std::sync::Arc;
use tape::check::{self, Options};
use tape::testing::off_zero;
use tape::{grad, CustomOp, Error, Expr, Function, Tensor, TensorView};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn softsign_gradients_match_finite_differences(v in off_zero(0.1..3.0, 1..12)) {
        let x = Expr::input("x", 1);
        let cost = (Expr::custom(Arc::new(Softsign), std::slice::from_ref(&x)) * &Expr::scalar(1.5)).exp().sum();
        let inputs = [(x.clone(), Tensor::vector(&v))];
        let first = check::gradient(&cost, &inputs, std::slice::from_ref(&x), &Options::default()).unwrap();
        prop_assert!(first.ok(), "{first}");
        let g = grad(&cost, std::slice::from_ref(&x)).unwrap().remove(0);
        let second = check::gradient(&g.sum(), &inputs, &[x], &Options::default()).unwrap();
        prop_assert!(second.ok(), "{second}");
    }
}

#[test]
fn the_example_runs() {
    example::main().unwrap();
}

struct Failing;

impl CustomOp for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn forward(&self, _inputs: &[TensorView], _out: &mut [f32]) -> Result<(), String> {
        Err("refuses to compute".into())
    }
    fn grad(&self, _: &[Expr], _: &Expr, _: &Expr) -> tape::Result<Vec<Option<Expr>>> {
        Ok(vec![None])
    }
}

#[test]
fn a_custom_ops_own_failure_is_reported_with_its_name_and_line() {
    let x = Expr::input("x", 1);
    let y = Expr::custom(Arc::new(Failing), std::slice::from_ref(&x));
    let mut f = Function::compile(&[x], &[y]).unwrap();
    let e = f.call(&[&Tensor::vector(&[1.0])]).unwrap_err();
    assert!(
        matches!(&e, Error::Op { op, .. } if op == "failing"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("refuses to compute")
            && e.to_string().contains("tests/custom_op.rs"),
        "{e}"
    );
}
