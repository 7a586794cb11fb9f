//! Evaluating a model without training (`Network::evaluate` / `loss`), and what the training
//! loop validates on when noise or dropout is on.

use nets::{Classifier, Regressor, Regularizers};
use optim::{Dataset, DatasetOptions};
use tape::testing::{labels, normal};
use tape::Tensor;

fn one_batch(name: &str, data: Vec<Tensor>) -> Dataset {
    let options = DatasetOptions {
        batch_size: 0,
        ..Default::default()
    };
    Dataset::new(name, data, options).unwrap()
}

#[test]
fn evaluate_matches_a_hand_computed_loss_over_many_batches() {
    // 2500 rows: evaluated in batches of 1024, 1024 and 452, which must count by their rows.
    let net = Regressor::new(&[4, 6, 2]).unwrap();
    let (x, y) = (normal(&[2500, 4], 1), normal(&[2500, 2], 2));
    let yhat = net.predict(&x).unwrap();
    let mse = yhat
        .data()
        .iter()
        .zip(y.data())
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum::<f64>()
        / y.len() as f64;
    let bare = net
        .evaluate(&[x.clone(), y.clone()], &Regularizers::default())
        .unwrap();
    assert!(
        (f64::from(bare.loss()) - mse).abs() < 1e-5 * mse,
        "{bare} vs {mse}"
    );
    assert_eq!(bare.get("err"), Some(bare.loss()));

    // weight_l2 adds λ · the mean over weight matrices of mean(W²).
    let mut regs = Regularizers::default();
    regs.set("weight_l2", "0.1").unwrap();
    let matrices: Vec<f64> = net
        .params()
        .iter()
        .filter(|p| p.shape().len() == 2)
        .map(|p| {
            let v = p.value();
            v.data().iter().map(|&w| f64::from(w).powi(2)).sum::<f64>() / v.len() as f64
        })
        .collect();
    let penalty = 0.1 * matrices.iter().sum::<f64>() / matrices.len() as f64;
    let with = net.loss(&[x, y], &regs).unwrap();
    assert!(
        (f64::from(with) - mse - penalty).abs() < 1e-5,
        "{with} vs {mse} + {penalty}"
    );
}

#[test]
fn evaluate_refuses_data_that_does_not_fit() {
    let net = Classifier::new(&[4, 5, 3]).unwrap();
    let x = normal(&[6, 4], 1);
    let none = Regularizers::default();
    let message = |data: &[Tensor]| net.evaluate(data, &none).unwrap_err().to_string();
    let m = message(std::slice::from_ref(&x));
    assert!(m.contains("takes 2 arrays, [x, labels]"), "{m}");
    let m = message(&[x.clone(), labels(5, 3)]);
    assert!(m.contains("6 rows"), "{m}");
    let m = message(&[x.clone(), Tensor::vector(&[0., 1., 2., 3., 0., 1.])]);
    assert!(m.contains("label 3 in row 3"), "{m}");
    let m = message(&[normal(&[6, 5], 1), labels(6, 3)]);
    assert!(m.contains("[rows, 4]"), "{m}");
    let acc = net
        .evaluate(&[x, labels(6, 3)], &none)
        .unwrap()
        .get("acc")
        .unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

/// The validation monitors the loop reports before its first update.
fn first_validation(net: &Classifier, settings: &[&str], valid: &[Tensor]) -> f32 {
    let mut all = vec!["validate_every=1", "max_updates=1", "learning_rate=0.01"];
    all.extend_from_slice(settings);
    let mut trainer = net.trainer("sgd", &all).unwrap();
    let mut train = one_batch("train", vec![normal(&[32, 8], 5), labels(32, 3)]);
    let mut valid = one_batch("valid", valid.to_vec());
    let (_, v) = trainer
        .iterate(&mut train, Some(&mut valid))
        .next()
        .unwrap()
        .unwrap();
    v.loss()
}

#[test]
fn validation_runs_on_the_clean_graph_unless_asked_otherwise() {
    let net = Classifier::new(&[8, 16, 3]).unwrap();
    let valid = vec![normal(&[40, 8], 7), labels(40, 3)];
    let mut penalties = Regularizers::default();
    penalties.set("weight_l2", "0.01").unwrap();
    let clean = net.loss(&valid, &penalties).unwrap();
    let corrupting = ["input_dropout=0.5", "hidden_noise=1", "weight_l2=0.01"];

    let v = first_validation(&net, &corrupting, &valid);
    assert!(
        (v - clean).abs() <= 1e-5 * clean,
        "validated {v}, clean loss {clean}"
    );

    let mut noisy = corrupting.to_vec();
    noisy.push("noisy_validation=on");
    let v = first_validation(&net, &noisy, &valid);
    assert!(
        (v - clean).abs() > 1e-3,
        "noisy validation {v} equals the clean loss"
    );

    let e = net
        .trainer("sgd", &["noisy_validation=maybe"])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a boolean"), "{e}");
}
