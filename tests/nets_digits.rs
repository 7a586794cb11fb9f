//! The models learn the embedded digits data: a classifier reaches 97% test accuracy, an
//! autoencoder reconstructs the test set with R² ≥ 0.7, and each of the guide's seven
//! regularizers, switched on alone, still trains the classifier to 93% while changing what it
//! learns.

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

/// The digits classifier 64-100-10 trained with `algorithm` and `settings`, and its test accuracy.
fn trained_classifier(algorithm: &str, settings: &[&str]) -> (Classifier, f32) {
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
    let acc = net.score(&test.x, &test.y, None).unwrap();
    (net, acc)
}

fn classifier_accuracy(algorithm: &str, settings: &[&str]) -> f32 {
    trained_classifier(algorithm, settings).1
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

/// Σ f(w) over the weight matrices.
fn weight_sum(net: &Classifier, f: fn(f32) -> f64) -> f64 {
    ["hid1", "out"]
        .iter()
        .flat_map(|l| net.find(l, "w").unwrap().value().data().to_vec())
        .map(f)
        .sum()
}

/// Mean |h| of the hidden layer on the test set.
fn mean_abs_hidden(net: &Classifier) -> f64 {
    let h = net
        .output(&digits::test().x, "hid1", &nets::Regularizers::default())
        .unwrap();
    h.data().iter().map(|&v| f64::from(v.abs())).sum::<f64>() / h.len() as f64
}

#[test]
fn each_guide_regularizer_alone_still_trains_to_93_percent() {
    // Every run shares the seed, data order and settings, so a regularizer that training
    // ignored would reproduce the plain run exactly: each must move the parameters, and the
    // penalties must shrink what they penalise.
    let base = ["learning_rate=0.01", "momentum=0.9", "patience=6"];
    let (plain, plain_acc) = trained_classifier("nag", &base);
    let square = |v: f32| f64::from(v) * f64::from(v);
    let abs = |v: f32| f64::from(v.abs());
    let mut report = vec![format!("plain: {plain_acc:.3}")];
    for reg in [
        "weight_l2=0.0001",
        "weight_l1=0.0001",
        "hidden_l1=0.01",
        "input_noise=0.1",
        "hidden_noise=0.1",
        "input_dropout=0.2",
        "hidden_dropout=0.3",
    ] {
        let mut settings = base.to_vec();
        settings.push(reg);
        let (net, acc) = trained_classifier("nag", &settings);
        let moved: f64 = net
            .params()
            .iter()
            .zip(plain.params())
            .flat_map(|(a, b)| {
                let (a, b) = (a.value(), b.value());
                a.data()
                    .iter()
                    .zip(b.data())
                    .map(|(u, v)| f64::from(u - v).abs())
                    .collect::<Vec<_>>()
            })
            .sum();
        let effect = match reg.split('=').next().unwrap() {
            "weight_l2" => format!(
                "Σ W² {:.2} vs {:.2}",
                weight_sum(&net, square),
                weight_sum(&plain, square)
            ),
            "weight_l1" => format!(
                "Σ |W| {:.2} vs {:.2}",
                weight_sum(&net, abs),
                weight_sum(&plain, abs)
            ),
            "hidden_l1" => format!(
                "mean |h| {:.4} vs {:.4}",
                mean_abs_hidden(&net),
                mean_abs_hidden(&plain)
            ),
            _ => String::new(),
        };
        report.push(format!("{reg}: {acc:.3}, moved {moved:.3} {effect}"));
        assert!(acc >= 0.93, "{}", report.join(", "));
        assert!(moved > 1e-2, "{}", report.join(", "));
        if reg.starts_with("hidden_l1") {
            // Measured 0.51 against 0.69. (At the guide's 1e-4 the weight penalties change the
            // weight norms by about 1e-5 relative, too little to tell from where early stopping
            // ends; crates/nets/tests/regularizers.rs checks their direction at larger weights.)
            assert!(
                mean_abs_hidden(&net) < 0.9 * mean_abs_hidden(&plain),
                "{}",
                report.join(", ")
            );
        }
    }
    println!("{}", report.join("\n"));
}
