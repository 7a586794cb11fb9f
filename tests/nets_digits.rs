//! The models learn the embedded digits data: a classifier reaches 97% test accuracy, an
//! autoencoder reconstructs the test set with R² ≥ 0.7, and each of the guide's seven
//! regularizers, switched on alone, still trains the classifier to 93%.

use nets::{Autoencoder, Classifier, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use tape::Tensor;
use theanets_rs::digits;

fn datasets(arrays: &[&Tensor]) -> (Dataset, Dataset) {
    let options = DatasetOptions {
        batch_size: 32,
        seed: 5,
        ..Default::default()
    };
    let train = Dataset::new(
        "train",
        arrays.iter().map(|a| a.rows(0, 1200).unwrap()).collect(),
        options.clone(),
    )
    .unwrap();
    let valid = Dataset::new(
        "valid",
        arrays.iter().map(|a| a.rows(1200, 1437).unwrap()).collect(),
        options,
    )
    .unwrap();
    (train, valid)
}

fn classifier_accuracy(algorithm: &str, settings: &[&str]) -> f32 {
    let data = digits::train();
    let test = digits::test();
    let (mut train, mut valid) = datasets(&[&data.x, &data.y]);
    let specs = vec![
        LayerSpec::input(64),
        LayerSpec::dense(100),
        LayerSpec::classifier(10),
    ];
    let net = Classifier::build(specs, ModelOptions::default()).unwrap();
    let mut all = vec!["validate_every=5", "max_updates=300"];
    all.extend_from_slice(settings);
    net.trainer(algorithm, &all)
        .unwrap()
        .train(&mut train, Some(&mut valid))
        .unwrap();
    net.score(&test.x, &test.y, None).unwrap()
}

#[test]
fn classifier_reaches_97_percent() {
    // Adam reaches 97.8% on this split for every seed tried (1, 2, 3, 13); NAG 96.9–97.8%.
    let acc = classifier_accuracy("adam", &["learning_rate=0.001", "patience=10"]);
    println!("classifier test accuracy {acc}");
    assert!(acc >= 0.97, "test accuracy {acc}");
}

#[test]
fn autoencoder_reconstructs_with_r2_above_0_7() {
    let data = digits::train();
    let test = digits::test();
    let (mut train, mut valid) = datasets(&[&data.x]);
    let net = Autoencoder::build(
        vec![
            LayerSpec::input(64),
            LayerSpec::dense(32),
            LayerSpec::dense(64),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    let settings = [
        "learning_rate=0.003",
        "validate_every=5",
        "patience=6",
        "max_updates=200",
    ];
    net.trainer("adam", &settings)
        .unwrap()
        .train(&mut train, Some(&mut valid))
        .unwrap();
    let r2 = net.score(&test.x, None).unwrap();
    println!("autoencoder test R² {r2}");
    assert!(r2 >= 0.7, "R² {r2}");
}

#[test]
fn each_guide_regularizer_alone_still_trains_to_93_percent() {
    let mut report = Vec::new();
    for reg in [
        "weight_l2=0.0001",
        "weight_l1=0.0001",
        "hidden_l1=0.01",
        "input_noise=0.1",
        "hidden_noise=0.1",
        "input_dropout=0.2",
        "hidden_dropout=0.3",
    ] {
        let acc = classifier_accuracy(
            "nag",
            &["learning_rate=0.01", "momentum=0.9", "patience=6", reg],
        );
        report.push(format!("{reg}: {acc:.3}"));
        assert!(acc >= 0.93, "{}", report.join(", "));
    }
    println!("{}", report.join(", "));
}
