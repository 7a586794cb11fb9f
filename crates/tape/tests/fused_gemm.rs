//! The bias and the ReLU of a dense layer applied in the GEMM's epilogue (`gemm_bias_relu`):
//! the values are bit for bit those of the separate product, bias-add and relu passes (for any
//! depth, also beyond one depth block of the GEMM, and whatever the thread count), and a training
//! graph using the fused forward still has correct gradients.

use tape::check;
use tape::kernels::gemm;
use tape::testing::count_ops;
use tape::{grad, Expr, Function, Param, Rng, Tensor};

fn filled(rng: &mut Rng, shape: &[usize], std: f32) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, std);
    t
}

/// By hand from the plain product: `v + b[j]`, then `relu` as `v < 0 ? 0 : v` (which keeps NaN).
fn unfused(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Vec<u32> {
    let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[1]);
    let mut c = vec![f32::NAN; m * n];
    gemm(m, k, n, 1.0, x.data(), false, w.data(), false, 0.0, &mut c);
    c.iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = v + b.data()[i % n];
            if relu && s < 0.0 {
                0.0f32.to_bits()
            } else {
                s.to_bits()
            }
        })
        .collect()
}

#[test]
fn a_dense_layer_gives_the_bits_of_the_separate_passes() {
    let mut rng = Rng::new(3);
    // Depths beyond the GEMM's depth block (256) so the bias must come after the whole sum; the
    // larger shapes are split across threads (by columns, and by rows when narrow).
    for &(m, k, n) in &[
        (3, 5, 4),
        (9, 300, 17),
        (40, 600, 33),
        (128, 784, 512),
        (1000, 600, 10),
    ] {
        let x = Expr::input("x", 2);
        let w = Param::new("w", filled(&mut rng, &[k, n], 1.0));
        let b = Param::new("b", filled(&mut rng, &[n], 3.0));
        let pre = x.matmul(&w.expr()) + b.expr();
        let mut f = Function::compile(std::slice::from_ref(&x), &[pre.relu()]).expect("compile");
        let mut g = Function::compile(std::slice::from_ref(&x), &[pre]).expect("compile");
        let xv = filled(&mut rng, &[m, k], 1.0);
        f.run(&[xv.view()]).expect("run");
        g.run(&[xv.view()]).expect("run");
        let plan = f.debug_plan();
        assert_eq!(count_ops(plan.lines(), "gemm_bias_relu"), 1, "{plan}");
        assert_eq!(count_ops(plan.lines(), "relu"), 0, "{plan}");
        let bits = |t: &Function| -> Vec<u32> {
            t.output(0)
                .expect("output")
                .data()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let (wv, bv) = (w.value(), b.value());
        assert_eq!(bits(&f), unfused(&xv, &wv, &bv, true), "relu {m}x{k}x{n}");
        assert_eq!(bits(&g), unfused(&xv, &wv, &bv, false), "bias {m}x{k}x{n}");
    }
}

/// A two-layer classifier's loss and the weights' gradients (what a training step computes).
fn classifier(rng: &mut Rng, k: usize) -> (Expr, Expr, Expr, [Param; 4]) {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let w1 = Param::new("w1", filled(rng, &[k, 8], 0.3));
    let b1 = Param::new("b1", filled(rng, &[8], 0.3));
    let w2 = Param::new("w2", filled(rng, &[8, 3], 0.5));
    let b2 = Param::new("b2", filled(rng, &[3], 0.1));
    let h = (x.matmul(&w1.expr()) + b1.expr()).relu();
    let logits = h.matmul(&w2.expr()) + b2.expr();
    let loss = -logits.log_softmax().pick(&y).mean();
    (x, y, loss, [w1, b1, w2, b2])
}

#[test]
fn a_training_graph_fuses_the_relu_and_its_gradients_pass_the_check() {
    let mut rng = Rng::new(4);
    for k in [5, 300] {
        let (x, y, loss, params) = classifier(&mut rng, k);
        let wrt: Vec<Expr> = params.iter().map(Param::expr).collect();
        let xv = filled(&mut rng, &[6, k], 1.0);
        let yv = Tensor::vector(&[0.0, 1.0, 2.0, 2.0, 1.0, 0.0]);
        // The step's plan: the loss and every gradient, the ReLU's mask read from its output.
        let mut outs = vec![loss.clone()];
        outs.extend(grad(&loss, &wrt).expect("grad"));
        let mut f = Function::compile(&[x.clone(), y.clone()], &outs).expect("compile");
        f.run(&[xv.view(), yv.view()]).expect("run");
        let plan = f.debug_plan();
        assert_eq!(count_ops(plan.lines(), "gemm_bias_relu"), 1, "{plan}");
        assert_eq!(count_ops(plan.lines(), "relu"), 0, "{plan}");
        assert_eq!(count_ops(plan.lines(), "relu_grad"), 1, "{plan}");
        let report = check::gradient(
            &loss,
            &[(x.clone(), xv.clone()), (y.clone(), yv.clone())],
            &wrt,
            &check::Options::default(),
        )
        .expect("check");
        assert!(report.ok(), "k={k}: {report}");
    }
}
