//! Every regularizer makes training progress (theanets' regularizer tests: a regressor
//! 7-20-3 trained with SGD until patience runs out reaches a best validation loss below its first),
//! penalties have the documented values, and noise/dropout are off at prediction unless asked for.

use nets::{LayerSpec, ModelOptions, Regressor, Regularizers};
use optim::{Dataset, DatasetOptions};
use tape::{Function, Rng, Tensor};

fn normal(shape: &[usize], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::new(seed).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

fn net() -> Regressor {
    let specs = [7, 20, 3].iter().map(|&s| LayerSpec::from(s)).collect();
    Regressor::build(
        specs,
        ModelOptions {
            seed: 131,
            ..Default::default()
        },
    )
    .unwrap()
}

fn best_below_first(reg: &str) {
    let net = net();
    let x = normal(&[64, 7], 1);
    // A learnable target: a fixed linear map of the inputs.
    let w = normal(&[7, 3], 2);
    let y = Function::compile(
        &[],
        &[tape::Expr::constant(x.clone()).matmul(&tape::Expr::constant(w))],
    )
    .unwrap()
    .call(&[])
    .unwrap()
    .remove(0);
    let mut data = Dataset::new(
        "train",
        vec![x, y],
        DatasetOptions {
            batch_size: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let settings = [
        "learning_rate=0.05",
        "patience=2",
        "min_improvement=0.01",
        "max_gradient_norm=1",
        "validate_every=1",
        reg,
    ];
    let mut trainer = net.trainer("sgd", &settings).unwrap();
    let mut first = None;
    let mut best = f32::INFINITY;
    for step in trainer.iterate(&mut data, None) {
        let (_, v) = step.unwrap();
        first.get_or_insert(v.loss());
        best = best.min(v.loss());
    }
    assert!(
        best < first.unwrap(),
        "{reg}: best {best} vs first {first:?}"
    );
}

#[test]
fn every_regularizer_makes_progress() {
    for reg in [
        "input_noise=0.001",
        "input_dropout=0.1",
        "hidden_noise=0.001",
        "hidden_dropout=0.1",
        "noise=*:out=0.001",
        "dropout=*:out=0.1",
        "hidden_l1=0.001",
        "weight_l1=0.001",
        "weight_l2=0.001",
        "contractive=0.001",
    ] {
        best_below_first(reg);
    }
}

#[test]
fn penalties_have_their_documented_values() {
    let net = net();
    let x = normal(&[5, 7], 3);
    let (w1, w2) = (
        net.find("hid1", "w").unwrap().value(),
        net.find("out", "w").unwrap().value(),
    );
    let mean = |t: &Tensor, f: fn(f32) -> f32| {
        t.data().iter().map(|&v| f64::from(f(v))).sum::<f64>() / t.len() as f64
    };
    let base = {
        let g = net.build(&Regularizers::default()).unwrap();
        let mut f = Function::compile(&g.inputs, &[g.loss]).unwrap();
        f.call(&[&x, &Tensor::zeros(&[5, 3])]).unwrap()[0].data()[0]
    };
    let with = |key: &str| {
        let mut r = Regularizers::default();
        r.set(key, "2").unwrap();
        let g = net.build(&r).unwrap();
        let mut f = Function::compile(&g.inputs, &[g.loss]).unwrap();
        f64::from(f.call(&[&x, &Tensor::zeros(&[5, 3])]).unwrap()[0].data()[0] - base)
    };
    let l2 = 2.0 * (mean(&w1, |v| v * v) + mean(&w2, |v| v * v)) / 2.0;
    let l1 = 2.0 * (mean(&w1, f32::abs) + mean(&w2, f32::abs)) / 2.0;
    assert!(
        (with("weight_l2") - l2).abs() < 1e-5 * (1.0 + l2),
        "{} vs {l2}",
        with("weight_l2")
    );
    assert!((with("weight_l1") - l1).abs() < 1e-5 * (1.0 + l1));
    let h = net
        .feed_forward(&x)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "hid1:out")
        .unwrap()
        .1;
    let hl1 = 2.0 * mean(&h, f32::abs);
    assert!((with("hidden_l1") - hl1).abs() < 1e-5 * (1.0 + hl1));
    // Contractive: the true Jacobian norm. For relu(x·W + b), ∂h_j/∂x = 1[pre_j > 0]·W[:, j], so
    // ‖J‖²_F = Σ_j 1[pre_j > 0]·‖W[:, j]‖², averaged over samples.
    let pre = net
        .feed_forward(&x)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "hid1:pre")
        .unwrap()
        .1;
    let col_norm: Vec<f64> = (0..20)
        .map(|j| {
            (0..7)
                .map(|i| f64::from(w1.data()[i * 20 + j]).powi(2))
                .sum()
        })
        .collect();
    let mut jac = 0.0;
    for r in 0..5 {
        for (j, norm) in col_norm.iter().enumerate() {
            if pre.data()[r * 20 + j] > 0.0 {
                jac += norm;
            }
        }
    }
    let contractive = 2.0 * jac / 5.0;
    assert!(
        (with("contractive") - contractive).abs() < 1e-4 * (1.0 + contractive),
        "{} vs {contractive}",
        with("contractive")
    );
}

#[test]
fn noise_and_dropout_only_when_asked() {
    let net = net();
    let x = normal(&[8, 7], 5);
    let clean = net.predict(&x).unwrap();
    assert_eq!(clean, net.predict(&x).unwrap());
    let mut r = Regularizers::default();
    r.set("hidden_dropout", "0.5").unwrap();
    let a = net.output(&x, "out", &r).unwrap();
    let b = net.output(&x, "out", &r).unwrap();
    assert_ne!(
        a, clean,
        "dropout at prediction when asked (Monte-Carlo dropout)"
    );
    assert_ne!(a, b, "a fresh mask per call");
    let e = Regularizers::default()
        .clone()
        .set("hidden_dropout", "1.0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fraction"), "{e}");
    let e = Regularizers::default()
        .set("input_nosie", "0.1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `input_noise`"), "{e}");
}
