//! Gradients are expressions, so they can be differentiated again: the Hessian-vector product of a
//! 2-layer MLP's cross-entropy loss, `grad(dot(grad(loss, w), v), w)`, matches central finite
//! differences of the gradient along `v`.

use tape::testing::normal_from;
use tape::{grad, Expr, Function, Param, Rng, Tensor};

#[test]
fn hessian_vector_product_of_an_mlp_matches_finite_differences() {
    let mut rng = Rng::new(3);
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let w1 = Param::new("hid1.w", normal_from(&mut rng, &[6, 5], 0.5));
    let b1 = Param::new("hid1.b", normal_from(&mut rng, &[5], 0.1));
    let w2 = Param::new("out.w", normal_from(&mut rng, &[5, 3], 0.5));
    let logits = (x.matmul(&w1.expr()) + b1.expr()).tanh().matmul(&w2.expr());
    let loss = -logits.log_softmax().pick(&y).mean();

    let params = [&w1, &b1, &w2];
    let exprs: Vec<Expr> = params.iter().map(|p| p.expr()).collect();
    let vs: Vec<Tensor> = params
        .iter()
        .map(|p| normal_from(&mut rng, &p.shape(), 1.0))
        .collect();
    let v_inputs: Vec<Expr> = (0..3)
        .map(|i| Expr::input(&format!("v{i}"), params[i].shape().len()))
        .collect();
    let g = grad(&loss, &exprs).unwrap();
    let gv = g
        .iter()
        .zip(&v_inputs)
        .map(|(g, v)| g.dot(v))
        .reduce(|a, b| a + b)
        .unwrap();
    let hv = grad(&gv, &exprs).unwrap();

    let mut args = vec![x.clone(), y.clone()];
    args.extend(v_inputs.iter().cloned());
    let mut f_hv = Function::compile(&args, &hv).unwrap();
    let mut f_g = Function::compile(&[x, y], &g).unwrap();
    let xs = normal_from(&mut rng, &[8, 6], 1.0);
    let ys = Tensor::vector(&[0., 1., 2., 0., 1., 2., 2., 1.]);
    let mut call_args = vec![&xs, &ys];
    call_args.extend(vs.iter());
    let analytic = f_hv.call(&call_args).unwrap();

    // (g(w + h v) - g(w - h v)) / 2h, in f64 for the difference.
    let h = 1e-2f32;
    let originals: Vec<Tensor> = params.iter().map(|p| p.value()).collect();
    let mut shifted = |sign: f32| {
        for ((p, w), v) in params.iter().zip(&originals).zip(&vs) {
            p.update(|d| {
                for ((d, &w), &v) in d.iter_mut().zip(w.data()).zip(v.data()) {
                    *d = w + sign * h * v;
                }
            });
        }
        f_g.call(&[&xs, &ys]).unwrap()
    };
    let plus = shifted(1.0);
    let minus = shifted(-1.0);
    for (p, w) in params.iter().zip(&originals) {
        p.set(w.clone()).unwrap();
    }
    let mut worst = 0.0f32;
    for k in 0..3 {
        for i in 0..analytic[k].len() {
            let numeric = (plus[k].data()[i] - minus[k].data()[i]) / (2.0 * h);
            let a = analytic[k].data()[i];
            let err = (a - numeric).abs() / (1e-2 + a.abs().max(numeric.abs()));
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{}[{i}]: Hv {a} vs finite differences {numeric}",
                params[k].name()
            );
        }
    }
    assert!(worst > 0.0, "the comparison must have compared something");
}
