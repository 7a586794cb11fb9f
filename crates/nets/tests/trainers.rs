//! The network-aware trainers against what theanets' `sample`, `layerwise` and `pretrain` do
//! (behaviour §6), with its bugs fixed: weights are compared with values computed here by hand
//! from the data and the parameters, and each pre-training stage is checked to train exactly
//! the layers it should and to leave them in the model.

use nets::trainers::{self, Stage};
use nets::Regressor;
use nets::{Autoencoder, Classifier, Error, LayerSpec, Loss, LossKind, ModelOptions, Network};
use tape::testing::{labels, normal};
use tape::Tensor;

const N: usize = 64;
const INPUTS: usize = 7;

fn x() -> Tensor {
    normal(&[N, INPUTS], 1)
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter().map(|a| a / n).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| (p - q).abs() <= tol)
}

fn row(t: &Tensor, r: usize) -> Vec<f32> {
    let w = t.shape()[1];
    t.data()[r * w..(r + 1) * w].to_vec()
}

fn column(t: &Tensor, c: usize) -> Vec<f32> {
    let w = t.shape()[1];
    t.data().iter().skip(c).step_by(w).copied().collect()
}

/// `act(x·W + b)` for one row, computed here.
fn layer(x: &[f32], w: &Tensor, b: &Tensor, act: fn(f32) -> f32) -> Vec<f32> {
    let (nin, nout) = (w.shape()[0], w.shape()[1]);
    (0..nout)
        .map(|j| act((0..nin).map(|i| x[i] * w.data()[i * nout + j]).sum::<f32>() + b.data()[j]))
        .collect()
}

/// `act(h·Wᵀ + c)` for one row: a tied decoder, computed here.
fn tied(h: &[f32], w: &Tensor, c: &[f32], act: fn(f32) -> f32) -> Vec<f32> {
    let (nin, nout) = (w.shape()[0], w.shape()[1]);
    (0..nin)
        .map(|i| {
            act((0..nout)
                .map(|j| h[j] * w.data()[i * nout + j])
                .sum::<f32>()
                + c[i])
        })
        .collect()
}

fn param(net: &Network, layer: &str, p: &str) -> Tensor {
    net.find(layer, p).unwrap().value()
}

/// The training row that column `j` of `w` is, scaled to unit length.
fn source_row(x: &Tensor, w: &Tensor, j: usize) -> usize {
    let col = column(w, j);
    (0..x.shape()[0])
        .find(|&r| close(&unit(&row(x, r)), &col, 1e-5))
        .unwrap_or_else(|| panic!("column {j} is no unit-length training row"))
}

fn tanh_net(kind: &str, sizes: &[usize]) -> Network {
    let last = sizes.len() - 1;
    let specs: Vec<LayerSpec> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            if i == 0 || i == last {
                LayerSpec::from(s)
            } else {
                LayerSpec::dense(s).activation("tanh")
            }
        })
        .collect();
    let o = ModelOptions::default();
    match kind {
        "regressor" => Regressor::build(specs, o).unwrap().0,
        "classifier" => Classifier::build(specs, o).unwrap().0,
        _ => Autoencoder::build(specs, o).unwrap().0,
    }
}

#[test]
fn sample_sets_columns_from_rows_then_their_hidden_images_and_output_rows_from_their_targets() {
    let net = tanh_net("regressor", &[INPUTS, 5, 4, 3]);
    let (x, y) = (x(), normal(&[N, 3], 2));
    let biases: Vec<Tensor> = ["hid1", "hid2", "out"]
        .iter()
        .map(|l| param(&net, l, "b"))
        .collect();
    let monitors = trainers::sample(&net, &[x.clone(), y.clone()], 3).unwrap();
    assert!(monitors.loss().is_finite());
    let (w1, b1) = (param(&net, "hid1", "w"), param(&net, "hid1", "b"));
    let (w2, w3) = (param(&net, "hid2", "w"), param(&net, "out", "w"));
    let sources: Vec<usize> = (0..5).map(|j| source_row(&x, &w1, j)).collect();
    let mut distinct = sources.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        5,
        "rows drawn without replacement: {sources:?}"
    );
    for (j, &source) in sources.iter().enumerate().take(4) {
        // hid2's column j: the hidden image of the row behind hid1's column j, through the
        // hid1 weights just set (theanets never got this far).
        let image = layer(&row(&x, source), &w1, &b1, f32::tanh);
        assert!(
            close(&column(&w2, j), &unit(&image), 1e-5),
            "hid2 column {j}"
        );
        // The output's row j: the target of that same row.
        assert!(
            close(&row(&w3, j), &unit(&row(&y, source)), 1e-6),
            "out row {j}"
        );
    }
    for (l, b) in ["hid1", "hid2", "out"].iter().zip(&biases) {
        assert_eq!(&param(&net, l, "b"), b, "{l}.b is not a weight matrix");
    }
}

#[test]
fn sample_sets_a_classifier_output_from_one_hot_labels() {
    let net = tanh_net("classifier", &[INPUTS, 5, 5]);
    let (x, y) = (x(), labels(N, 5));
    trainers::sample(&net, &[x.clone(), y.clone()], 3).unwrap();
    let (w1, w2) = (param(&net, "hid1", "w"), param(&net, "out", "w"));
    for j in 0..5 {
        let r = source_row(&x, &w1, j);
        let mut one_hot = vec![0.0; 5];
        one_hot[y.data()[r] as usize] = 1.0;
        assert_eq!(row(&w2, j), one_hot, "out row {j}");
    }
}

#[test]
fn sample_pads_with_noisy_copies_when_units_outnumber_rows() {
    let net = tanh_net("autoencoder", &[INPUTS, 10, INPUTS]);
    let x = normal(&[4, INPUTS], 5);
    trainers::sample(&net, std::slice::from_ref(&x), 1).unwrap();
    let w1 = param(&net, "hid1", "w");
    let mut real: Vec<usize> = (0..4).map(|j| source_row(&x, &w1, j)).collect();
    real.sort();
    assert_eq!(real, [0, 1, 2, 3], "every row is used before any copy");
    for j in 4..10 {
        let col = column(&w1, j);
        let norm = col.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "column {j} has length {norm}");
        assert!(
            (0..4).all(|r| !close(&unit(&row(&x, r)), &col, 1e-3)),
            "column {j} is noisy, not a plain row"
        );
    }
}

#[test]
fn sample_rejects_data_that_does_not_fit() {
    let net = tanh_net("regressor", &[INPUTS, 5, 3]);
    let err = trainers::sample(&net, &[normal(&[8, 6], 1), normal(&[8, 3], 2)], 1).unwrap_err();
    assert!(matches!(err, Error::Data { .. }), "{err}");
    assert!(err.to_string().contains("[rows, 7]"), "{err}");
}

/// Every parameter's value, by name.
fn snapshot(net: &Network) -> Vec<(String, Tensor)> {
    net.params()
        .iter()
        .map(|p| (p.name().to_string(), p.value()))
        .collect()
}

/// The parameters whose values differ between two snapshots.
fn changed(before: &[(String, Tensor)], net: &Network) -> Vec<String> {
    before
        .iter()
        .filter(|(n, v)| {
            net.params()
                .iter()
                .any(|p| p.name() == n && &p.value() != v)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

const QUICK: &[&str] = &["max_updates=10", "batch_size=16", "learning_rate=0.01"];

#[test]
fn layerwise_trains_one_more_hidden_layer_per_stage_then_the_whole_model() {
    let net = tanh_net("regressor", &[INPUTS, 6, 5, 3]);
    let data = [x(), normal(&[N, 3], 2)];
    let mut stages = trainers::layerwise_stages(&net, &data, None, "rmsprop", QUICK).unwrap();
    assert_eq!(stages.total(), 2);
    let before = snapshot(&net);
    let first: Stage = stages.next().unwrap().unwrap();
    assert_eq!(first.layers, ["hid1"]);
    // Only hid1 lands in the model; the temporary output layer `lwout` is dropped.
    assert_eq!(changed(&before, &net), ["hid1.w", "hid1.b"]);
    assert!(net.layer("lwout").is_err());
    let before = snapshot(&net);
    let last = stages.next().unwrap().unwrap();
    assert_eq!(last.layers, ["hid1", "hid2", "out"]);
    assert_eq!(
        changed(&before, &net),
        ["hid1.w", "hid1.b", "hid2.w", "hid2.b", "out.w", "out.b"]
    );
    assert!(stages.next().is_none());
    // The last stage is the model's own run: its best validation is the model's loss now.
    let loss = net.loss(&data, &Default::default()).unwrap();
    assert!((last.valid.loss() - loss).abs() <= 1e-5 * loss.max(1.0));
}

#[test]
fn layerwise_reads_the_temporary_output_when_the_loss_names_the_output_layer() {
    // theanets' issue #92: a loss naming the output layer looked for it in the shadow network.
    let mut loss = Loss::new(LossKind::Mae);
    loss.output = Some("out:out".into());
    let options = ModelOptions {
        losses: vec![loss],
        ..Default::default()
    };
    let specs = vec![
        INPUTS.into(),
        LayerSpec::dense(6),
        LayerSpec::dense(5),
        3.into(),
    ];
    let net = Regressor::build(specs, options).unwrap();
    let stages =
        trainers::layerwise(&net, &[x(), normal(&[N, 3], 2)], None, "adam", QUICK).unwrap();
    assert_eq!(stages.len(), 2);
}

#[test]
fn layerwise_shortens_a_tied_autoencoder_from_the_middle() {
    let specs = vec![
        INPUTS.into(),
        LayerSpec::dense(5).activation("tanh"),
        LayerSpec::dense(3).activation("tanh"),
        LayerSpec::tied().activation("tanh"),
        LayerSpec::tied(),
    ];
    let net = Autoencoder::build(specs, ModelOptions::default())
        .unwrap()
        .0;
    let data = [x()];
    let mut stages = trainers::layerwise_stages(&net, &data, None, "rmsprop", QUICK).unwrap();
    assert_eq!(stages.total(), 2);
    let before = snapshot(&net);
    let first = stages.next().unwrap().unwrap();
    // in → hid1 → out (tied to hid1): the outer pair, decoder bias included.
    assert_eq!(first.layers, ["hid1", "out"]);
    assert_eq!(changed(&before, &net), ["hid1.w", "hid1.b", "out.b"]);
    let last = stages.next().unwrap().unwrap();
    assert_eq!(last.layers, ["hid1", "hid2", "hid3", "out"]);
}

#[test]
fn layerwise_without_hidden_layers_still_trains_the_model() {
    let net = tanh_net("regressor", &[INPUTS, 3]);
    let before = snapshot(&net);
    let stages = trainers::layerwise(&net, &[x(), normal(&[N, 3], 2)], None, "sgd", QUICK).unwrap();
    assert_eq!(stages.len(), 1);
    assert_eq!(changed(&before, &net), ["out.w", "out.b"]);
}

/// Mean squared reconstruction error of the rows of `x` by `decode`, computed here.
fn mse(x: &Tensor, decode: impl Fn(&[f32]) -> Vec<f32>) -> f32 {
    let mut sum = 0.0f64;
    for r in 0..x.shape()[0] {
        let xr = row(x, r);
        for (a, b) in decode(&xr).iter().zip(&xr) {
            sum += f64::from(a - b).powi(2);
        }
    }
    (sum / x.len() as f64) as f32
}

#[test]
fn pretrain_stages_are_tied_autoencoders_with_a_linear_outer_decoder() {
    let net = tanh_net("classifier", &[INPUTS, 6, 4, 5]);
    let x = x();
    let (w1, b1) = (param(&net, "hid1", "w"), param(&net, "hid1", "b"));
    let (w2, b2) = (param(&net, "hid2", "w"), param(&net, "hid2", "b"));
    // No step improves the loss by half, so every stage keeps its starting parameters and its
    // best validation is the loss of its shadow autoencoder as built (decoder biases start at 0).
    let settings = ["max_updates=2", "validate_every=1", "min_improvement=0.5"];
    let stages =
        trainers::pretrain(&net, std::slice::from_ref(&x), None, "sgd", &settings).unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!((stages[0].iteration, stages[1].iteration), (0, 0));
    let zero = |n: usize| vec![0.0; n];
    let one = mse(&x, |r| {
        let h1 = layer(r, &w1, &b1, f32::tanh);
        tied(&h1, &w1, &zero(INPUTS), |v| v)
    });
    let two = mse(&x, |r| {
        let h2 = layer(&layer(r, &w1, &b1, f32::tanh), &w2, &b2, f32::tanh);
        let d2 = tied(&h2, &w2, &zero(6), f32::tanh);
        tied(&d2, &w1, &zero(INPUTS), |v| v)
    });
    assert!(
        (stages[0].valid.loss() - one).abs() < 1e-5 * one,
        "{stages:?} {one}"
    );
    assert!(
        (stages[1].valid.loss() - two).abs() < 1e-5 * two,
        "{stages:?} {two}"
    );
}

#[test]
fn pretrain_lands_encoder_weights_and_leaves_the_output_layer() {
    let net = tanh_net("classifier", &[INPUTS, 6, 4, 5]);
    let train = [x(), labels(N, 5)];
    let mut stages = trainers::pretrain_stages(&net, &train, None, "rmsprop", QUICK).unwrap();
    let before = snapshot(&net);
    let first = stages.next().unwrap().unwrap();
    assert_eq!(first.layers, ["hid1"]);
    assert_eq!(changed(&before, &net), ["hid1.w", "hid1.b"]);
    let before = snapshot(&net);
    let second = stages.next().unwrap().unwrap();
    assert_eq!(second.layers, ["hid1", "hid2"]);
    assert_eq!(
        changed(&before, &net),
        ["hid1.w", "hid1.b", "hid2.w", "hid2.b"]
    );
    assert!(stages.next().is_none());
    // The reconstruction improved on the stage's first validation.
    assert!(second.iteration > 0);
}

#[test]
fn pretrain_refuses_tied_hidden_layers() {
    let specs = vec![
        INPUTS.into(),
        LayerSpec::dense(5),
        LayerSpec::tied(),
        LayerSpec::dense(INPUTS),
    ];
    let net = Autoencoder::build(specs, ModelOptions::default()).unwrap();
    let err = trainers::pretrain(&net, &[x()], None, "rmsprop", QUICK).unwrap_err();
    assert!(
        err.to_string().contains("hidden layer `hid2` is tied"),
        "{err}"
    );
}

#[test]
fn settings_are_checked_before_any_stage_runs() {
    let net = tanh_net("regressor", &[INPUTS, 6, 5, 3]);
    let data = [x(), normal(&[N, 3], 2)];
    let before = snapshot(&net);
    let typo = trainers::layerwise(&net, &data, None, "rmsprop", &["learning_rat=0.1"]);
    assert!(typo.unwrap_err().to_string().contains("learning_rate"));
    let batch = trainers::layerwise(&net, &data, None, "rmsprop", &["batch_size=many"]);
    assert!(batch.unwrap_err().to_string().contains("batch_size"));
    let alg = trainers::pretrain(&net, &data, None, "rmsprob", &[]);
    assert!(alg.unwrap_err().to_string().contains("rmsprop"));
    assert!(changed(&before, &net).is_empty());
}
