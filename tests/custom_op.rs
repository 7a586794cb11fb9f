//! A user-defined op (softsign, from `examples/custom_op.rs`) works in graphs, gradients (first
//! and second order) and compiled functions like a built-in; a custom op's own failure is
//! reported like a built-in's too (its snapshot is in `tests/errors.rs`).

#[path = "../examples/custom_op.rs"]
#[allow(dead_code)]
mod example;

use example::Softsign;
use proptest::prelude::*;
use std::sync::Arc;
use tape::check::{self, Options};
use tape::testing::off_zero;
use tape::{grad, Expr, Tensor};

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
