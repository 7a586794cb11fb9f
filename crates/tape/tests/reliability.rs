//! Issue 12 regressions in the tape crate: element counts that overflow, `Function::output`
//! before or after failed runs, dropping long chains, custom gradients of the wrong shape, and
//! the bounded plan cache.

use std::sync::Arc;
use tape::{CustomOp, Error, Expr, Function, Tensor, TensorView};

const HUGE: usize = 1 << 32;

#[test]
fn overflowing_shapes_are_errors() {
    let err = Tensor::try_zeros(&[HUGE, HUGE]).unwrap_err();
    assert!(
        err.to_string()
            .contains("more elements than a tensor can hold"),
        "{err}"
    );
    assert!(Tensor::try_full(&[HUGE, HUGE, 2], 1.0).is_err());
    assert!(Tensor::new(&[HUGE, HUGE], Vec::new()).is_err());
    assert!(TensorView::new(&[HUGE, HUGE], &[]).is_err());
    // A reshape to an overflowing shape must not be accepted either.
    assert!(Tensor::vector(&[]).reshape(&[HUGE, HUGE]).is_err());
    // Shapes that fit still work, including empty ones.
    assert_eq!(Tensor::try_zeros(&[0, HUGE]).unwrap().len(), 0);
    assert_eq!(Tensor::try_full(&[2, 3], 1.5).unwrap().data(), &[1.5; 6]);
}

#[test]
fn output_is_an_error_before_any_run_and_out_of_range() {
    let x = Expr::input("x", 1);
    let mut f = Function::compile(std::slice::from_ref(&x), &[&x * 2.0]).unwrap();
    assert!(f.output(0).is_err());
    f.call(&[&Tensor::vector(&[1.0, 2.0])]).unwrap();
    assert_eq!(f.output(0).unwrap().data(), &[2.0, 4.0]);
    assert!(f.output(1).is_err());
}

#[test]
fn output_is_an_error_after_a_failed_argument_check() {
    let x = Expr::input("x", 1);
    let mut f = Function::compile(std::slice::from_ref(&x), &[&x * 2.0]).unwrap();
    f.call(&[&Tensor::vector(&[1.0, 2.0])]).unwrap();
    // A NaN argument is refused before running; the earlier run's values must not be returned.
    assert!(f.call(&[&Tensor::vector(&[f32::NAN])]).is_err());
    assert!(f.output(0).is_err());
    // A successful run makes outputs available again.
    f.call(&[&Tensor::vector(&[3.0])]).unwrap();
    assert_eq!(f.output(0).unwrap().data(), &[6.0]);
}

/// An op whose forward always fails, to fail a run during execution.
struct Failing;

impl CustomOp for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn forward(&self, _: &[TensorView], _: &mut [f32]) -> Result<(), String> {
        Err("always fails".into())
    }
    fn grad(&self, _: &[Expr], _: &Expr, _: &Expr) -> tape::Result<Vec<Option<Expr>>> {
        Ok(vec![None])
    }
}

#[test]
fn output_is_an_error_after_a_failure_during_execution() {
    let x = Expr::input("x", 1);
    let y = Expr::custom(Arc::new(Failing), std::slice::from_ref(&x));
    let mut f = Function::compile(&[x], &[y]).unwrap();
    assert!(matches!(
        f.call(&[&Tensor::vector(&[1.0])]),
        Err(Error::Op { .. })
    ));
    assert!(f.output(0).is_err());
}

#[test]
fn dropping_a_long_chain_does_not_overflow_the_stack() {
    // A small stack makes the recursive drop fail long before 50,000 nodes.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let mut e = Expr::input("x", 1);
            for _ in 0..50_000 {
                e = e + 1.0;
            }
            drop(e);
        })
        .unwrap();
    assert!(handle.join().is_ok());
}

#[test]
fn dropping_a_shared_chain_keeps_the_shared_part() {
    let x = Expr::input("x", 1);
    let shared = &x * 3.0;
    {
        let _long = {
            let mut e = shared.clone();
            for _ in 0..10 {
                e = e + 1.0;
            }
            e
        };
    }
    // The node still referenced elsewhere survives and still computes 3x.
    let mut f = Function::compile(&[x], &[shared]).unwrap();
    assert_eq!(
        f.call(&[&Tensor::vector(&[2.0])]).unwrap()[0].data(),
        &[6.0]
    );
}

/// Returns a gradient of shape `[3]` whatever its input's shape.
struct BadGrad;

impl CustomOp for BadGrad {
    fn name(&self) -> &str {
        "badgrad"
    }
    fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> Result<(), String> {
        out.copy_from_slice(inputs[0].data());
        Ok(())
    }
    fn grad(&self, _: &[Expr], _: &Expr, _: &Expr) -> tape::Result<Vec<Option<Expr>>> {
        Ok(vec![Some(Expr::constant(Tensor::vector(&[1.0, 2.0, 3.0])))])
    }
}

#[test]
fn custom_gradient_of_the_wrong_shape_is_an_error_naming_the_op() {
    let w = tape::Param::new("w", Tensor::zeros(&[2, 3]));
    let y = Expr::custom(Arc::new(BadGrad), &[w.expr()]).sum();
    match tape::grad(&y, &[w.expr()]) {
        Err(Error::Op { op, message, .. }) => {
            assert_eq!(op, "badgrad");
            assert!(message.contains("input 0"), "{message}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a [3] gradient for a [2, 3] input was accepted"),
    }
}

#[test]
fn plan_cache_is_bounded_and_results_unchanged() {
    let x = Expr::input("x", 2);
    let mut f = Function::compile(std::slice::from_ref(&x), &[(&x * 2.0).sum()]).unwrap();
    for rows in 1..=100usize {
        let t = Tensor::full(&[rows, 3], 1.0);
        let got = f.call(&[&t]).unwrap()[0].item().unwrap();
        // 2 · (rows · 3 ones), computed by hand.
        assert_eq!(got, (6 * rows) as f32);
        assert!(f.cached_plans() <= Function::PLAN_CACHE_SIZE);
    }
    assert_eq!(f.cached_plans(), Function::PLAN_CACHE_SIZE);
    // A shape evicted long ago is rebuilt and still gives the right value.
    assert_eq!(
        f.call(&[&Tensor::full(&[1, 3], 1.0)]).unwrap()[0].item(),
        Some(6.0)
    );
}

#[test]
fn overflowing_intermediate_shapes_are_errors_when_planned() {
    // [2^32, 0] · [0, 2^32] holds no data but multiplies out to 2^64 elements.
    let a = Expr::input("a", 2);
    let b = Expr::input("b", 2);
    let mut f = Function::compile(&[a.clone(), b.clone()], &[a.matmul(&b)]).unwrap();
    let x = TensorView::new(&[HUGE, 0], &[]).unwrap();
    let y = TensorView::new(&[0, HUGE], &[]).unwrap();
    match f.run(&[x, y]) {
        Err(Error::Shape { op, .. }) => assert_eq!(op, "matmul"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(f.output(0).is_err());
}
