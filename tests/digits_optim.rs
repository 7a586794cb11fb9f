//! The digits MLP 64-100-10 trained through `optim`'s loop with each of the seven algorithms the
//! training guide lists; each must reach 90% test accuracy.

use optim::{Algorithm, Dataset, DatasetOptions, LoopOptions, RuleOptions, Trainer};
use tape::testing::glorot;
use tape::{Expr, Function, Param, Rng, Tensor};
use theanets_rs::digits;

fn train_with(alg: Algorithm, settings: &[&str]) -> f32 {
    let data = digits::train();
    let test = digits::test();
    let mut rng = Rng::from_name(3, "digits.init");
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let params = [
        Param::new("hid1.w", glorot(&mut rng, 64, 100)),
        Param::new("hid1.b", Tensor::zeros(&[100])),
        Param::new("out.w", glorot(&mut rng, 100, 10)),
        Param::new("out.b", Tensor::zeros(&[10])),
    ];
    let logits = (x.matmul(&params[0].expr()) + params[1].expr())
        .relu()
        .matmul(&params[2].expr())
        + params[3].expr();
    let loss = -logits.log_softmax().pick(&y).mean();
    let acc = logits.argmax().eq(&y).mean();

    let options = DatasetOptions {
        batch_size: 32,
        seed: 3,
        ..Default::default()
    };
    let mut train = Dataset::new(
        "train",
        vec![data.x.rows(0, 1200).unwrap(), data.y.rows(0, 1200).unwrap()],
        options.clone(),
    )
    .unwrap();
    let mut valid = Dataset::new(
        "valid",
        vec![
            data.x.rows(1200, 1437).unwrap(),
            data.y.rows(1200, 1437).unwrap(),
        ],
        options,
    )
    .unwrap();
    let mut rule = RuleOptions::new(alg);
    let mut lp = LoopOptions {
        validate_every: 2,
        patience: 5,
        max_updates: Some(60),
        ..Default::default()
    };
    optim::options::configure(&mut rule, &mut lp, settings.iter().copied()).unwrap();
    let mut trainer = Trainer::new(
        &loss,
        &params,
        &[x.clone(), y.clone()],
        &[("acc".into(), acc.clone())],
        rule,
        lp,
    )
    .unwrap();
    trainer.train(&mut train, Some(&mut valid)).unwrap();
    let mut evaluate = Function::compile(&[x, y], &[acc]).unwrap();
    evaluate.call(&[&test.x, &test.y]).unwrap()[0].data()[0]
}

#[test]
fn each_guide_algorithm_trains_the_digits_mlp_to_90_percent() {
    let cases: [(Algorithm, &[&str]); 7] = [
        (Algorithm::Sgd, &["learning_rate=0.1"]),
        (Algorithm::Nag, &["learning_rate=0.01", "momentum=0.9"]),
        (Algorithm::Rprop, &["learning_rate=0.001"]),
        (Algorithm::RmsProp, &["learning_rate=0.001"]),
        (Algorithm::AdaDelta, &["rms_regularizer=0.0001"]),
        (Algorithm::Esgd, &["learning_rate=0.01"]),
        (Algorithm::Adam, &["learning_rate=0.001"]),
    ];
    let mut report = Vec::new();
    for (alg, settings) in cases {
        let acc = train_with(alg, settings);
        report.push(format!("{alg}: {acc:.3}"));
        assert!(
            acc >= 0.90,
            "{alg} reached only {acc} test accuracy ({})",
            report.join(", ")
        );
    }
    println!("test accuracy by algorithm: {}", report.join(", "));
}
