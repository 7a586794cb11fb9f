//! What compilation does to a graph, seen through its dumps and results: rewrites, buffer reuse,
//! plan caching, random streams and the semantics of updates.

use tape::{Expr, Function, Param, Tensor};

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn debug_print_lists_one_node_per_line_with_shapes_and_source() {
    let x = Expr::input_with_dims("x", &[None, Some(3)]);
    let w = Param::new("w", Tensor::zeros(&[3, 2]));
    let y = x.matmul(&w.expr()).tanh();
    let dump = y.debug_print();
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 4, "{dump}");
    assert!(
        lines[0].starts_with("%0 = input `x`() : [?, 3]  @ tests/compile.rs:"),
        "{dump}"
    );
    assert!(
        lines[2].starts_with("%2 = matmul(%0, %1) : [?, 2]"),
        "{dump}"
    );
    assert!(lines[3].starts_with("%3 = tanh(%2) : [?, 2]"), "{dump}");
}

#[test]
fn common_subexpressions_are_computed_once() {
    let x = Expr::input("x", 1);
    let a = (&x * 2.0).exp();
    let b = (&x * 2.0).exp();
    let f = Function::compile(std::slice::from_ref(&x), &[&a + &b]).unwrap();
    assert_eq!(count(&f.debug_graph(), "exp("), 1, "{}", f.debug_graph());
}

#[test]
fn constants_are_folded_and_neutral_arithmetic_removed() {
    let x = Expr::input("x", 1);
    let c = Expr::constant(Tensor::vector(&[1.0, 2.0])) * 3.0 + 1.0;
    let y = (&x + &c) * 1.0;
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    let g = f.debug_graph();
    assert_eq!(
        g.lines().count(),
        3,
        "input, folded constant, one add:\n{g}"
    );
    assert_eq!(
        f.call(&[&Tensor::vector(&[0.5, 0.5])]).unwrap()[0].data(),
        &[4.5, 7.5]
    );
}

#[test]
fn log_of_softmax_becomes_the_stable_log_softmax() {
    let x = Expr::input("x", 2);
    let y = x.softmax().log();
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    let g = f.debug_graph();
    assert!(g.contains("log_softmax(") && !g.contains("= log("), "{g}");
    let out = f
        .call(&[&Tensor::new(&[1, 2], vec![0.0, 200.0]).unwrap()])
        .unwrap();
    assert_eq!(out[0].data(), &[-200.0, 0.0]); // the naive form would give -inf
}

#[test]
fn transposes_and_bias_adds_fold_into_the_gemm() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::ones(&[4, 3]));
    let b = Param::new("b", Tensor::vector(&[1.0, 2.0, 3.0]));
    let y = x.matmul(&w.expr().t().t()) + b.expr();
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    let out = f.call(&[&Tensor::ones(&[2, 4])]).unwrap();
    assert_eq!(out[0].data(), &[5., 6., 7., 5., 6., 7.]);
    let plan = f.debug_plan();
    assert!(
        plan.contains("gemm 2x4x3 (arg:x, param:w) + bias param:b"),
        "{plan}"
    );
    assert_eq!(
        plan.lines().count(),
        2,
        "one instruction plus the workspace line:\n{plan}"
    );
}

#[test]
fn elementwise_chains_reuse_buffers_in_place() {
    let x = Expr::input("x", 1);
    let mut y = x.exp();
    for _ in 0..20 {
        y = (y.tanh() * 0.5 + 0.25).sigmoid();
    }
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    f.call(&[&Tensor::vector(&[0.1; 1000])]).unwrap();
    let plan = f.debug_plan();
    assert!(plan.contains("workspace: 1 buffers, 1000 floats"), "{plan}");
}

#[test]
fn plans_are_cached_per_input_shapes() {
    let x = Expr::input("x", 2);
    let y = x.sum_axis(1, false);
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    let a = f.call(&[&Tensor::ones(&[2, 3])]).unwrap();
    let b = f.call(&[&Tensor::ones(&[4, 5])]).unwrap();
    let c = f.call(&[&Tensor::ones(&[2, 3])]).unwrap();
    assert_eq!(a[0].data(), &[3.0, 3.0]);
    assert_eq!(b[0].data(), &[5.0; 4]);
    assert_eq!(a, c);
}

#[test]
fn random_streams_are_seeded_saveable_and_never_merged() {
    let x = Expr::input("x", 1);
    let build = || {
        let a = x.dropout_mask(0.5, 9);
        let b = x.dropout_mask(0.5, 10);
        Function::compile(std::slice::from_ref(&x), &[a, b]).unwrap()
    };
    let ones = Tensor::ones(&[64]);
    let (mut f, mut g) = (build(), build());
    let saved = f.rng_states();
    let first = f.call(&[&ones]).unwrap();
    assert_eq!(first, g.call(&[&ones]).unwrap(), "same seeds, same bits");
    assert_ne!(first[0], first[1], "different streams differ");
    let second = f.call(&[&ones]).unwrap();
    assert_ne!(first[0], second[0], "each call draws a fresh mask");
    f.set_rng_states(&saved).unwrap();
    assert_eq!(
        f.call(&[&ones]).unwrap(),
        first,
        "restored state replays the stream"
    );
    // Two masks from the same seed are still two random nodes, not one merged by CSE.
    let twins = Function::compile(
        std::slice::from_ref(&x),
        &[&x.dropout_mask(0.5, 1) + &x.dropout_mask(0.5, 1)],
    )
    .unwrap();
    assert_eq!(count(&twins.debug_graph(), "dropout_mask"), 2);
}

#[test]
fn updates_all_read_the_values_from_before_the_call() {
    let p = Param::new("p", Tensor::vector(&[1.0]));
    let q = Param::new("q", Tensor::vector(&[2.0]));
    let mut swap =
        Function::compile_with_updates(&[], &[], &[(p.clone(), q.expr()), (q.clone(), p.expr())])
            .unwrap();
    swap.run(&[]).unwrap();
    assert_eq!((p.value().data()[0], q.value().data()[0]), (2.0, 1.0));
}

#[test]
fn parameter_updates_fuse_into_one_axpy_pass_and_apply_every_call() {
    let g = Expr::input_with_dims("g", &[Some(2), Some(3)]);
    let p = Param::new("p", Tensor::ones(&[2, 3]));
    let mut step = Function::compile_with_updates(
        std::slice::from_ref(&g),
        &[],
        &[(p.clone(), &p.expr() - &(&g * 0.5))],
    )
    .unwrap();
    let grad = Tensor::new(&[2, 3], vec![2.0, 4.0, 6.0, 0.0, -2.0, 1.0]).unwrap();
    step.call(&[&grad]).unwrap();
    let plan = step.debug_plan();
    assert!(
        plan.contains("Axpy { alpha: -0.5") && plan.lines().count() == 2,
        "{plan}"
    );
    assert_eq!(p.value().data(), &[0.0, -1.0, -2.0, 1.0, 2.0, 0.5]);
    step.call(&[&grad]).unwrap();
    assert_eq!(p.value().data(), &[-1.0, -3.0, -5.0, 1.0, 3.0, 0.0]);
}
