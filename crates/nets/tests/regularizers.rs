//! Every regularizer makes training progress (theanets' regularizer tests: a regressor
//! 7-20-3 trained with SGD until patience runs out reaches a best validation loss below its first),
//! penalties have the documented values, and noise/dropout are off at prediction unless asked for.

use nets::{LayerSpec, ModelOptions, Regressor, Regularizers};
use optim::{Dataset, DatasetOptions};
use tape::testing::{close, normal};
use tape::{Function, Tensor};

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
        let g = net.graph(&Regularizers::default()).unwrap();
        let mut f = Function::compile(&g.inputs, &[g.loss]).unwrap();
        f.call(&[&x, &Tensor::zeros(&[5, 3])]).unwrap()[0].data()[0]
    };
    let with = |key: &str| {
        let mut r = Regularizers::default();
        r.set(key, "2").unwrap();
        let g = net.graph(&r).unwrap();
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

/// The named output for `x` with and without the regularizers `key=value` (rewrites active).
fn clean_and_corrupted(
    net: &Regressor,
    x: &Tensor,
    out: &str,
    key: &str,
    value: &str,
) -> (Tensor, Tensor) {
    let mut r = Regularizers::default();
    r.set(key, value).unwrap();
    let clean = net.output(x, out, &Regularizers::default()).unwrap();
    let corrupted = net.output(x, out, &r).unwrap();
    (clean, corrupted)
}

#[test]
fn noise_has_the_asked_standard_deviation() {
    let net = net();
    let x = normal(&[400, 7], 7);
    for (key, value, out, sigma) in [
        ("input_noise", "0.3", "in:out", 0.3),
        ("noise", "in:out=0.3", "in:out", 0.3),
        ("hidden_noise", "0.2", "hid1:out", 0.2),
        ("noise", "hid*:out=0.2", "hid1:out", 0.2),
    ] {
        let (clean, noisy) = clean_and_corrupted(&net, &x, out, key, value);
        let d: Vec<f64> = noisy
            .data()
            .iter()
            .zip(clean.data())
            .map(|(a, b)| f64::from(a - b))
            .collect();
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let std = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        // Standard errors: σ/√n for the mean, σ/√(2n) (under 1.4%) for the std.
        assert!(
            mean.abs() < 4.0 * sigma / n.sqrt(),
            "{key}={value}: mean {mean}"
        );
        assert!(
            (std / sigma - 1.0).abs() < 0.06,
            "{key}={value}: std {std}, wanted {sigma}"
        );
    }
}

#[test]
fn dropout_drops_the_asked_fraction_and_rescales_the_rest() {
    let net = net();
    let x = normal(&[400, 7], 8);
    for (key, value, out, p) in [
        ("input_dropout", "0.25", "in:out", 0.25),
        ("dropout", "in:out=0.25", "in:out", 0.25),
        ("hidden_dropout", "0.4", "hid1:out", 0.4),
        ("dropout", "hid1:out=0.4", "hid1:out", 0.4),
    ] {
        let (clean, dropped) = clean_and_corrupted(&net, &x, out, key, value);
        // Only entries that were nonzero before tell a drop from a relu zero.
        let (mut live, mut zeroed) = (0usize, 0usize);
        for (d, c) in dropped.data().iter().zip(clean.data()) {
            if *c == 0.0 {
                assert_eq!(*d, 0.0);
                continue;
            }
            live += 1;
            if *d == 0.0 {
                zeroed += 1;
            } else {
                let want = f64::from(*c) / (1.0 - p);
                assert!(
                    close(*d, want, 1e-5, 1e-5),
                    "{key}={value}: kept {d}, wanted {c}/(1−{p}) = {want}"
                );
            }
        }
        assert!(live > 2000, "{live} live values");
        let rate = zeroed as f64 / live as f64;
        // Binomial standard error √(p(1−p)/n) is under 1.1% here.
        assert!(
            (rate - p).abs() < 0.04,
            "{key}={value}: dropped {rate}, wanted {p}"
        );
    }
}

/// The training data of the progress test: 64 normal rows and a fixed linear map of them.
fn regression_data() -> (Tensor, Tensor) {
    let x = normal(&[64, 7], 1);
    let w = normal(&[7, 3], 2);
    let y = Function::compile(
        &[],
        &[tape::Expr::constant(x.clone()).matmul(&tape::Expr::constant(w))],
    )
    .unwrap()
    .call(&[])
    .unwrap()
    .remove(0);
    (x, y)
}

/// The progress net after 200 full-batch SGD steps with `settings` (the same seed, data and
/// steps for every call, so two calls differ only by their regularizers).
fn trained(settings: &[&str]) -> Regressor {
    let net = net();
    let (x, y) = regression_data();
    let mut all = vec!["learning_rate=0.05"];
    all.extend_from_slice(settings);
    let mut trainer = net.trainer("sgd", &all).unwrap();
    for _ in 0..200 {
        let loss = trainer.step(&[x.view(), y.view()]).unwrap();
        assert!(loss.is_finite(), "{settings:?}: loss {loss}");
    }
    net
}

fn weight_sum(net: &Regressor, f: fn(f32) -> f64) -> f64 {
    ["hid1", "out"]
        .iter()
        .flat_map(|l| net.find(l, "w").unwrap().value().data().to_vec())
        .map(f)
        .sum()
}

fn mean_abs_hidden(net: &Regressor) -> f64 {
    let h = net
        .output(&regression_data().0, "hid1", &Regularizers::default())
        .unwrap();
    h.data().iter().map(|&v| f64::from(v.abs())).sum::<f64>() / h.len() as f64
}

/// Mean over the training rows of ‖∂h/∂x‖²_F for the relu layer hid1, by hand:
/// Σ_j 1[pre_j > 0]·‖W[:, j]‖².
fn jacobian_norm(net: &Regressor) -> f64 {
    let x = regression_data().0;
    let pre = net
        .output(&x, "hid1:pre", &Regularizers::default())
        .unwrap();
    let w = net.find("hid1", "w").unwrap().value();
    let col: Vec<f64> = (0..20)
        .map(|j| {
            (0..7)
                .map(|i| f64::from(w.data()[i * 20 + j]).powi(2))
                .sum()
        })
        .collect();
    let rows = x.shape()[0];
    let mut total = 0.0;
    for r in 0..rows {
        for (j, c) in col.iter().enumerate() {
            if pre.data()[r * 20 + j] > 0.0 {
                total += c;
            }
        }
    }
    total / rows as f64
}

#[test]
fn penalties_shrink_what_they_penalize() {
    let plain = trained(&[]);
    let square = |v: f32| f64::from(v) * f64::from(v);
    let abs = |v: f32| f64::from(v.abs());
    let l2 = trained(&["weight_l2=10"]);
    let (with, without) = (weight_sum(&l2, square), weight_sum(&plain, square));
    assert!(
        with < 0.8 * without,
        "Σ W²: {with} with weight_l2, {without} without"
    );
    let l1 = trained(&["weight_l1=10"]);
    let (with, without) = (weight_sum(&l1, abs), weight_sum(&plain, abs));
    assert!(
        with < 0.8 * without,
        "Σ |W|: {with} with weight_l1, {without} without"
    );
    let h1 = trained(&["hidden_l1=1"]);
    let (with, without) = (mean_abs_hidden(&h1), mean_abs_hidden(&plain));
    assert!(
        with < 0.8 * without,
        "mean |h|: {with} with hidden_l1, {without} without"
    );
    let c = trained(&["contractive=1"]);
    let (with, without) = (jacobian_norm(&c), jacobian_norm(&plain));
    assert!(
        with < 0.8 * without,
        "‖J‖²: {with} with contractive, {without} without"
    );
}

#[test]
fn training_rewrites_change_what_is_learned() {
    // With a rewrite ignored by training, the run would repeat the plain one bit for bit.
    let plain = trained(&[]);
    for reg in [
        "input_noise=0.1",
        "hidden_noise=0.1",
        "input_dropout=0.2",
        "hidden_dropout=0.2",
        "noise=hid1:out=0.1",
        "dropout=in:out=0.2",
    ] {
        let net = trained(&[reg]);
        let moved = net
            .params()
            .iter()
            .zip(plain.params())
            .map(|(a, b)| {
                a.value()
                    .data()
                    .iter()
                    .zip(b.value().data())
                    .map(|(u, v)| f64::from(u - v).abs())
                    .sum::<f64>()
            })
            .sum::<f64>();
        assert!(
            moved > 1e-3,
            "{reg}: parameters moved {moved} from the plain run"
        );
    }
}
