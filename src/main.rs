//! The command-line tool. Until the `nets` crate can train a classifier on the digits data, it
//! demonstrates the engine: a 2-4-1 network learns XOR by plain gradient descent, written as
//! compiled-function parameter updates, and prints its predictions.

use tape::{grad, Expr, Function, Param, Rng, Tensor};

fn gaussian(rng: &mut Rng, shape: &[usize], std: f32) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, std);
    t
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = 7;
    let mut rng = Rng::from_name(seed, "xor.init");
    let x = Expr::input("x", 2);
    let y = Expr::input("y", 2);
    let w1 = Param::new("hid1.w", gaussian(&mut rng, &[2, 4], 1.0));
    let b1 = Param::new("hid1.b", Tensor::zeros(&[4]));
    let w2 = Param::new("out.w", gaussian(&mut rng, &[4, 1], 1.0));
    let b2 = Param::new("out.b", Tensor::zeros(&[1]));
    let hidden = (x.matmul(&w1.expr()) + b1.expr()).tanh();
    let out = (hidden.matmul(&w2.expr()) + b2.expr()).sigmoid();
    let err = &out - &y;
    let loss = (&err * &err).mean();

    let params = [&w1, &b1, &w2, &b2];
    let exprs: Vec<Expr> = params.iter().map(|p| p.expr()).collect();
    let grads = grad(&loss, &exprs)?;
    let lr = 2.0;
    let updates: Vec<(Param, Expr)> = params
        .iter()
        .zip(&exprs)
        .zip(&grads)
        .map(|((p, e), g)| ((*p).clone(), e - &(g * lr)))
        .collect();
    let mut train = Function::compile_with_updates(
        &[x.clone(), y.clone()],
        std::slice::from_ref(&loss),
        &updates,
    )?;
    let mut predict = Function::compile(&[x], &[out])?;

    let inputs = Tensor::new(&[4, 2], vec![0., 0., 0., 1., 1., 0., 1., 1.])?;
    let targets = Tensor::new(&[4, 1], vec![0., 1., 1., 0.])?;
    println!("training a 2-4-1 tanh network on XOR with gradient descent (learning rate {lr})");
    for step in 0..=2000 {
        train.run(&[inputs.view(), targets.view()])?;
        if step % 250 == 0 {
            println!("step {step:5}  loss {:.5}", train.output(0).data()[0]);
        }
    }
    let p = predict.call(&[&inputs])?.remove(0);
    println!("\n x1 x2 | target | prediction");
    for i in 0..4 {
        let row = &inputs.data()[2 * i..2 * i + 2];
        println!(
            " {:>2} {:>2} | {:>6} | {:.3}",
            row[0],
            row[1],
            targets.data()[i],
            p.data()[i]
        );
    }
    let correct = (0..4)
        .filter(|&i| (p.data()[i] > 0.5) == (targets.data()[i] > 0.5))
        .count();
    println!("\n{correct}/4 correct");
    Ok(())
}
