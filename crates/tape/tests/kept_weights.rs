//! A product whose B is a parameter keeps it packed between calls once it has stayed the same
//! over two calls (a prediction), packs it again exactly when it changed (through
//! `Param::set`, `Param::update` or another function's update), and never packs it separately
//! when it changes at every call (a training step). One test in its own binary, because it
//! counts instructions with the process-wide `tape::profile`.

use tape::kernels::gemm;
use tape::{profile, Expr, Function, Param, Rng, Tensor};

fn filled(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

/// The bits of `x·w` from the plain product (which packs its own B on each call).
fn product(x: &Tensor, w: &Tensor) -> Vec<u32> {
    let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[1]);
    let mut c = vec![f32::NAN; m * n];
    gemm(m, k, n, 1.0, x.data(), false, w.data(), false, 0.0, &mut c);
    c.iter().map(|v| v.to_bits()).collect()
}

/// Runs `f` on `x` with the profile on; returns output 0's bits and how many GEMM-kind
/// instructions (products and separate packs) ran.
fn run(f: &mut Function, x: &Tensor) -> (Vec<u32>, u64) {
    profile::reset();
    profile::set_enabled(true);
    f.run(&[x.view()]).expect("run");
    profile::set_enabled(false);
    let calls = profile::take()
        .iter()
        .find(|e| e.kind == "gemm")
        .map_or(0, |e| e.calls);
    let out = f.output(0).expect("output");
    (out.data().iter().map(|v| v.to_bits()).collect(), calls)
}

/// Three calls with unchanged weights: the product unpacked, then pack + product, then the
/// product from the kept panels; all with the bits of the plain product.
fn settles(f: &mut Function, x: &Tensor, w: &Param, when: &str) {
    let want = product(x, &w.value());
    for (call, packs) in [(1, 0), (2, 1), (3, 0)] {
        let (out, calls) = run(f, x);
        assert!(out == want, "{when}, call {call}: the plain product's bits");
        assert_eq!(calls, 1 + packs, "{when}, call {call}");
    }
}

#[test]
fn kept_packed_weights_follow_every_change_of_the_weights() {
    let mut rng = Rng::new(21);
    // Large enough to split across threads (by rows: a tall batch), deeper than one depth block.
    let (m, k, n) = (1000, 300, 64);
    let x = Expr::input("x", 2);
    let w = Param::new("w", filled(&mut rng, &[k, n]));
    let mut f = Function::compile(std::slice::from_ref(&x), &[x.matmul(&w.expr())]).expect("f");
    let xv = filled(&mut rng, &[m, k]);
    settles(&mut f, &xv, &w, "new");
    assert!(
        f.debug_plan().contains("B kept packed"),
        "{}",
        f.debug_plan()
    );

    // Each way of changing the weights is seen by the next call.
    w.set(filled(&mut rng, &[k, n])).expect("set");
    settles(&mut f, &xv, &w, "after set");
    w.update(|d| d.iter_mut().for_each(|v| *v = -*v));
    settles(&mut f, &xv, &w, "after update");
    // Another function's update (swapped into the parameter).
    let mut double =
        Function::compile_with_updates(&[], &[], &[(w.clone(), w.expr() * 2.0)]).expect("double");
    double.run(&[]).expect("double");
    settles(&mut f, &xv, &w, "after another function's update");

    // A training step changes w at every call: it never packs separately.
    let mut train = Function::compile_with_updates(
        std::slice::from_ref(&x),
        &[x.matmul(&w.expr())],
        &[(w.clone(), w.expr() * 0.5)],
    )
    .expect("train");
    for call in 0..4 {
        let before = w.value();
        let (out, calls) = run(&mut train, &xv);
        assert!(out == product(&xv, &before), "training call {call}");
        assert_eq!(calls, 1, "training call {call}");
    }
    // And f sees the trained weights.
    settles(&mut f, &xv, &w, "after training");
}
