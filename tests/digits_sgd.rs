//! Trains a 64-100-10 MLP on the embedded digits data with plain SGD written as compiled-function
//! parameter updates (the Theano way), and checks that it learned.

use tape::testing::glorot;
use tape::{grad, Expr, Function, Param, Rng, Tensor, TensorView};
use theanets_rs::digits;

#[test]
fn sgd_updates_train_the_digits_mlp_to_over_90_percent() {
    let train = digits::train();
    let test = digits::test();
    let mut rng = Rng::from_name(1, "digits.init");
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let w1 = Param::new("hid1.w", glorot(&mut rng, 64, 100));
    let b1 = Param::new("hid1.b", Tensor::zeros(&[100]));
    let w2 = Param::new("out.w", glorot(&mut rng, 100, 10));
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
    let mut step =
        Function::compile_with_updates(&[x.clone(), y.clone()], &[loss], &updates).unwrap();
    let accuracy = logits.argmax().eq(&y).mean();
    let mut evaluate = Function::compile(&[x, y], &[accuracy]).unwrap();

    let batch = 32;
    let rows = train.y.len();
    let mut order: Vec<usize> = (0..rows / batch).collect();
    let mut first_loss = None;
    let mut last_loss = 0.0;
    let (xshape, yshape) = ([batch, 64], [batch]);
    for _epoch in 0..30 {
        rng.shuffle(&mut order);
        for &b in &order {
            let xs = &train.x.data()[b * batch * 64..(b + 1) * batch * 64];
            let ys = &train.y.data()[b * batch..(b + 1) * batch];
            let xv = TensorView::new(&xshape, xs).unwrap();
            let yv = TensorView::new(&yshape, ys).unwrap();
            step.run(&[xv, yv]).unwrap();
            last_loss = step.output(0).unwrap().data()[0];
            first_loss.get_or_insert(last_loss);
        }
    }
    let acc = evaluate.call(&[&test.x, &test.y]).unwrap()[0].data()[0];
    assert!(
        last_loss < first_loss.unwrap() / 5.0,
        "loss {first_loss:?} -> {last_loss}"
    );
    assert!(acc >= 0.90, "test accuracy {acc}");
}
