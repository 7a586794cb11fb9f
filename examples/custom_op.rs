//! A user-defined differentiable op: softsign(x) = x / (1 + |x|), with its forward kernel and its
//! symbolic gradient; used in a small graph, compiled, and gradient-checked with `tape::check`.
//!
//! Run with `cargo run --release --example custom_op`.

use std::sync::Arc;
use tape::check::{self, Options};
use tape::{CustomOp, Expr, Function, Param, Tensor, TensorView};

/// softsign(x) = x / (1 + |x|), elementwise.
pub struct Softsign;

impl CustomOp for Softsign {
    fn name(&self) -> &str {
        "softsign"
    }

    fn forward(&self, inputs: &[TensorView], out: &mut [f32]) -> Result<(), String> {
        for (o, &x) in out.iter_mut().zip(inputs[0].data()) {
            *o = x / (1.0 + x.abs());
        }
        Ok(())
    }

    fn grad(&self, inputs: &[Expr], _output: &Expr, g: &Expr) -> tape::Result<Vec<Option<Expr>>> {
        // d/dx softsign(x) = 1 / (1 + |x|)², itself built from differentiable ops.
        let d = (inputs[0].abs() + 1.0).square().recip();
        Ok(vec![Some(g * &d)])
    }
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x = Expr::input("x", 2);
    let w = Param::new(
        "w",
        Tensor::new(&[3, 2], vec![0.5, -1.0, 1.5, 0.25, -0.75, 2.0])?,
    );
    let h = Expr::custom(Arc::new(Softsign), &[x.matmul(&w.expr())]);
    let cost = h.square().sum();
    println!("graph:\n{}", cost.debug_print());

    let xs = Tensor::new(&[2, 3], vec![0.3, -1.2, 0.8, 1.1, 0.4, -0.6])?;
    let mut f = Function::compile(std::slice::from_ref(&x), &[h, cost.clone()])?;
    let out = f.call(&[&xs])?;
    println!("softsign(x·w) = {:?}\ncost = {}", out[0], out[1].data()[0]);

    let report = check::gradient(
        &cost,
        &[(x.clone(), xs)],
        &[x, w.expr()],
        &Options::default(),
    )?;
    println!("gradient check: {report}");
    if !report.ok() {
        return Err("the gradient of softsign disagrees with finite differences".into());
    }
    Ok(())
}
