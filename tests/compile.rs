//! What compilation does to a graph, seen through its dumps and results: rewrites, buffer reuse,
//! plan caching, random streams and the semantics of updates. Dumps are compared with inline
//! snapshots (`expect-test`): `UPDATE_EXPECT=1 cargo test --test compile` rewrites them, and a
//! reviewer reads the change of the dump in the diff.

use expect_test::{expect, Expect};
use tape::{grad, Expr, Function, Param, Tensor};

/// The rewritten graph of `f`.
#[track_caller]
fn check_graph(f: &Function, expect: Expect) {
    expect.assert_eq(&f.debug_graph());
}

/// The plan of `f`'s last call.
#[track_caller]
fn check_plan(f: &Function, expect: Expect) {
    expect.assert_eq(&f.debug_plan());
}

/// `debug_print` ends each line with the source location; keep the file, drop line and column so
/// the snapshot survives edits above the test.
fn without_lines(dump: &str) -> String {
    dump.lines()
        .map(|l| match l.split_once("  @ ") {
            Some((node, at)) => format!("{node}  @ {}\n", at.split(':').next().unwrap_or(at)),
            None => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn debug_print_lists_one_node_per_line_with_shapes_and_source() {
    let x = Expr::input_with_dims("x", &[None, Some(3)]);
    let w = Param::new("w", Tensor::zeros(&[3, 2]));
    let y = x.matmul(&w.expr()).tanh();
    expect![[r#"
        %0 = input `x`() : [?, 3]  @ tests/compile.rs
        %1 = param `w`() : [3, 2]  @ tests/compile.rs
        %2 = matmul(%0, %1) : [?, 2]  @ tests/compile.rs
        %3 = tanh(%2) : [?, 2]  @ tests/compile.rs
    "#]]
    .assert_eq(&without_lines(&y.debug_print()));
}

#[test]
fn common_subexpressions_are_computed_once() {
    let x = Expr::input("x", 1);
    let a = (&x * 2.0).exp();
    let b = (&x * 2.0).exp();
    let f = Function::compile(std::slice::from_ref(&x), &[&a + &b]).unwrap();
    check_graph(
        &f,
        expect![[r#"
        %0 = input `x`() : [?]
        %1 = const 2() : []
        %2 = mul(%0, %1) : [?]
        %3 = exp(%2) : [?]
        %4 = add(%3, %3) : [?]  -> output 0
    "#]],
    );
}

#[test]
fn ops_that_differ_in_a_property_are_not_merged() {
    let x = Expr::input_with_dims("x", &[Some(2), Some(3)]);
    let sums = &x.sum_axis(0, true).sum() + &x.sum_axis(1, true).sum();
    let slices = &x.slice(1, 0, 1).sum() + &x.slice(1, 1, 1).sum();
    let clips = &x.clip(0.0, 1.0).sum() + &x.clip(0.0, 2.0).sum();
    let f = Function::compile(std::slice::from_ref(&x), &[sums, slices, clips]).unwrap();
    check_graph(
        &f,
        expect![[r#"
        %0 = input `x`() : [2, 3]
        %1 = sum(axis=0, keepdims)(%0) : [1, 3]
        %2 = sum(%1) : []
        %3 = sum(axis=1, keepdims)(%0) : [2, 1]
        %4 = sum(%3) : []
        %5 = add(%2, %4) : []  -> output 0
        %6 = slice(axis=1, 0..1)(%0) : [2, 1]
        %7 = sum(%6) : []
        %8 = slice(axis=1, 1..2)(%0) : [2, 1]
        %9 = sum(%8) : []
        %10 = add(%7, %9) : []  -> output 1
        %11 = clip(0, 1)(%0) : [2, 3]
        %12 = sum(%11) : []
        %13 = clip(0, 2)(%0) : [2, 3]
        %14 = sum(%13) : []
        %15 = add(%12, %14) : []  -> output 2
    "#]],
    );
}

#[test]
fn constants_are_folded_and_neutral_arithmetic_removed() {
    let x = Expr::input("x", 1);
    let c = Expr::constant(Tensor::vector(&[1.0, 2.0])) * 3.0 + 1.0;
    let y = (&x + &c) * 1.0;
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    check_graph(
        &f,
        expect![[r#"
        %0 = input `x`() : [?]
        %1 = const[2]() : [2]
        %2 = add(%0, %1) : [2]  -> output 0
    "#]],
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
    check_graph(
        &f,
        expect![[r#"
        %0 = input `x`() : [?, ?]
        %1 = log_softmax(%0) : [?, ?]  -> output 0
    "#]],
    );
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
    check_plan(
        &f,
        expect![[r#"
        buf0 <- gemm 2x4x3 (arg:x, param:w) + bias param:b   # %3 gemm_bias
        workspace: 1 buffers, 6 floats
    "#]],
    );
}

#[test]
fn elementwise_chains_reuse_buffers_in_place() {
    let x = Expr::input("x", 1);
    let mut y = x.exp();
    for _ in 0..3 {
        y = (y.tanh() * 0.5 + 0.25).sigmoid();
    }
    let mut f = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&y)).unwrap();
    f.call(&[&Tensor::vector(&[0.1; 1000])]).unwrap();
    check_plan(
        &f,
        expect![[r#"
        buf0 <- exp arg:x [1000]   # %1 exp
        buf0 <- tanh buf0 [1000] in place   # %2 tanh
        buf0 <- mul buf0, const0 (scalar) [1000] in place over lhs   # %4 mul
        buf0 <- add buf0, const1 (scalar) [1000] in place over lhs   # %6 add
        buf0 <- sigmoid buf0 [1000] in place   # %7 sigmoid
        buf0 <- tanh buf0 [1000] in place   # %8 tanh
        buf0 <- mul buf0, const0 (scalar) [1000] in place over lhs   # %9 mul
        buf0 <- add buf0, const1 (scalar) [1000] in place over lhs   # %10 add
        buf0 <- sigmoid buf0 [1000] in place   # %11 sigmoid
        buf0 <- tanh buf0 [1000] in place   # %12 tanh
        buf0 <- mul buf0, const0 (scalar) [1000] in place over lhs   # %13 mul
        buf0 <- add buf0, const1 (scalar) [1000] in place over lhs   # %14 add
        buf0 <- sigmoid buf0 [1000] in place   # %15 sigmoid
        workspace: 1 buffers, 1000 floats
    "#]],
    );
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
    check_plan(
        &f,
        expect![[r#"
        buf0 <- sum arg:x over the middle of [2×3×1]   # %1 sum(axis=1)
        workspace: 1 buffers, 2 floats
    "#]],
    );
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
    check_graph(
        &twins,
        expect![[r#"
        %0 = input `x`() : [?]
        %1 = dropout_mask(p=0.5)(%0) : [?]
        %2 = dropout_mask(p=0.5)(%0) : [?]
        %3 = add(%1, %2) : [?]  -> output 0
    "#]],
    );
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
    check_plan(
        &step,
        expect![[r#"
        buf0 <- axpy param:p + -0.5·arg:g [2×3]   # %2 axpy(-0.5)
        workspace: 1 buffers, 6 floats
    "#]],
    );
    assert_eq!(p.value().data(), &[0.0, -1.0, -2.0, 1.0, 2.0, 0.5]);
    step.call(&[&grad]).unwrap();
    assert_eq!(p.value().data(), &[-1.0, -3.0, -5.0, 1.0, 3.0, 0.0]);
}

/// The digits network's SGD training step (64-100-10, batch 32; loss, gradients and the four
/// updates `p − 0.1·g`), as `docs/architecture.md` shows it.
pub fn digits_sgd_step() -> Function {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let w1 = Param::new("hid1.w", Tensor::full(&[64, 100], 0.01));
    let b1 = Param::new("hid1.b", Tensor::zeros(&[100]));
    let w2 = Param::new("out.w", Tensor::full(&[100, 10], 0.01));
    let b2 = Param::new("out.b", Tensor::zeros(&[10]));
    let logits = (x.matmul(&w1.expr()) + b1.expr()).relu().matmul(&w2.expr()) + b2.expr();
    let loss = -logits.log_softmax().pick(&y).mean();
    let params = [w1, b1, w2, b2];
    let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
    let grads = grad(&loss, &exprs).unwrap();
    let updates: Vec<(Param, Expr)> = params
        .iter()
        .zip(&exprs)
        .zip(&grads)
        .map(|((p, e), g)| (p.clone(), e - &(g * 0.1)))
        .collect();
    let mut f = Function::compile_with_updates(&[x, y], &[loss], &updates).unwrap();
    let labels = Tensor::vector(&(0..32).map(|i| (i % 10) as f32).collect::<Vec<_>>());
    f.call(&[&Tensor::full(&[32, 64], 0.5), &labels]).unwrap();
    f
}

#[test]
fn the_digits_training_step_plan() {
    let plan = digits_sgd_step().debug_plan();
    in_the_architecture_doc("the_digits_training_step_plan", &plan);
    expect![[r#"
        buf0 <- gemm 32x64x100 (arg:x, param:hid1.w) + bias param:hid1.b, relu   # %3 gemm_bias_relu
        buf1 <- gemm 32x100x10 (buf0, param:out.w) + bias param:out.b   # %6 gemm_bias
        buf1 <- log_softmax buf1 [32×10] in place   # %7 log_softmax
        buf2 <- pick buf1 [32×10] at arg:y   # %9 pick
        buf3 <- mean buf2 over the middle of [1×32×1]   # %10 mean
        buf3 <- neg buf3 [1] in place   # %11 neg
        buf4 <- broadcast const0 (scalar) to [32] ×0.03125   # %13 broadcast_mean_like
        buf1 <- exp buf1 [320] in place   # %14 exp
        buf2 <- softmax_xent_grad buf1 [32×10] by buf4 at arg:y   # %15 softmax_xent_grad
        buf1 <- gemm 32x10x100 (buf2, param:out.wᵀ)   # %16 matmul(Bᵀ)
        buf1 <- relu_grad buf1 where buf0 > 0 [32, 100] (in place over g)   # %17 relu_grad
        buf4 <- gemm 64x32x100 (arg:xᵀ, buf1)   # %18 matmul(Aᵀ)
        buf4 <- axpy param:hid1.w + -0.1·buf4 [64×100] in place over rhs   # %19 axpy(-0.1)
        buf5 <- sum_to buf1 [32×100] down to [100] (row of 100)   # %20 sum_like
        buf5 <- axpy param:hid1.b + -0.1·buf5 [100] in place over rhs   # %21 axpy(-0.1)
        buf1 <- gemm 100x32x10 (buf0ᵀ, buf2)   # %22 matmul(Aᵀ)
        buf1 <- axpy param:out.w + -0.1·buf1 [100×10] in place over rhs   # %23 axpy(-0.1)
        buf0 <- sum_to buf2 [32×10] down to [10] (row of 10)   # %24 sum_like
        buf0 <- axpy param:out.b + -0.1·buf0 [10] in place over rhs   # %25 axpy(-0.1)
        workspace: 6 buffers, 13221 floats
    "#]]
    .assert_eq(&plan);
}

/// `docs/architecture.md` shows `dump` in the code block after `<!-- plan: {name} -->`;
/// `UPDATE_DOCS=1` writes it there.
fn in_the_architecture_doc(name: &str, dump: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let marker = format!("<!-- plan: {name} -->\n```\n");
    let start = doc
        .find(&marker)
        .expect("the marker is in docs/architecture.md")
        + marker.len();
    let end = start + doc[start..].find("```\n").expect("the code block ends");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{dump}{}", &doc[..start], &doc[end..])).unwrap();
        return;
    }
    assert!(
        doc[start..end] == *dump,
        "docs/architecture.md shows another plan; run `UPDATE_DOCS=1 cargo test --test compile`"
    );
}
