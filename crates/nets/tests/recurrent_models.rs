//! The recurrent models: losses and accuracy over real steps only (against hand computations
//! from the model's own predictions), data checks, model files, and two behaviours: an LSTM
//! learns the adding problem, and a masked classifier beats an unmasked one on padded
//! variable-length sequences.

mod common;

use nets::data::sequences::{pad, Padded};
use nets::optim::{Dataset, DatasetOptions};
use nets::recurrent::{Autoencoder, Classifier, Regressor, SequenceOptions};
use nets::{LayerSpec, ModelOptions};
use tape::{Rng, Tensor};

fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    Tensor::new(shape, v).unwrap()
}

fn masked() -> SequenceOptions {
    SequenceOptions { masked: true }
}

fn classifier(sequence: SequenceOptions) -> Classifier {
    Classifier::build(
        vec![LayerSpec::input(2), LayerSpec::gru(4), LayerSpec::dense(3)],
        ModelOptions::default(),
        sequence,
    )
    .unwrap()
}

/// Cross-entropy and accuracy are means over the unmasked steps: computed by hand from the
/// predicted probabilities, they match the model's loss and accuracy.
#[test]
fn classifier_loss_and_accuracy_count_real_steps_only() {
    let net = classifier(masked());
    let x = uniform(&[2, 3, 2], 1);
    let labels = Tensor::new(&[2, 3], vec![0., 2., 1., 1., 1., 0.]).unwrap();
    let mask = Tensor::new(&[2, 3], vec![1., 1., 0., 1., 0., 0.]).unwrap();
    let p = net.predict_with(&[&x, &mask]).unwrap();
    assert_eq!(p.shape(), &[2, 3, 3]);
    let (mut nll, mut right, mut count) = (0.0f64, 0.0, 0.0);
    for s in 0..6 {
        let row = &p.data()[s * 3..s * 3 + 3];
        let sum: f32 = row.iter().sum();
        if mask.data()[s] == 0.0 {
            // Padding: the recurrent layer outputs zero there, so the softmax is uniform.
            assert!((row[0] - 1.0 / 3.0).abs() < 1e-6);
            continue;
        }
        assert!((sum - 1.0).abs() < 1e-5);
        let label = labels.data()[s] as usize;
        nll -= f64::from(row[label]).ln();
        let best = (0..3).fold(0, |b, k| if row[k] > row[b] { k } else { b });
        right += f64::from(u8::from(best == label));
        count += 1.0;
    }
    let data = [x.clone(), labels.clone(), mask.clone()];
    let loss = net.loss_on(&data).unwrap();
    assert!(
        (f64::from(loss) - nll / count).abs() < 1e-5,
        "{loss} vs {}",
        nll / count
    );
    let acc = net.accuracy(&data).unwrap();
    assert!((f64::from(acc) - right / count).abs() < 1e-6);
    let classes = net.predict_classes(&[&x, &mask]).unwrap();
    assert_eq!(classes.shape(), &[2, 3]);
    for s in 0..6 {
        let row = &p.data()[s * 3..s * 3 + 3];
        let c = classes.data()[s] as usize;
        assert!(row.iter().all(|&v| v <= row[c]), "step {s}");
    }
    net.find("hid1", "xh").unwrap().update(|v| v[0] = f32::NAN);
    let e = net.predict_classes(&[&x, &mask]).unwrap_err().to_string();
    assert!(
        e.contains("layer `out`") && e.contains("sequence 0, step 0"),
        "{e}"
    );
}

/// A weighted, masked regressor's loss is `Σ w·m·(y − ŷ)² / (k·Σ w·m)`.
#[test]
fn regressor_loss_weighs_steps_by_weights_and_mask() {
    let net = Regressor::build(
        vec![LayerSpec::input(2), LayerSpec::rnn(3), LayerSpec::dense(2)],
        ModelOptions {
            weighted: true,
            ..Default::default()
        },
        masked(),
    )
    .unwrap();
    let x = uniform(&[2, 3, 2], 2);
    let y = uniform(&[2, 3, 2], 3);
    let w = Tensor::new(&[2, 3], vec![1., 2., 3., 0.5, 1., 1.]).unwrap();
    let mask = Tensor::new(&[2, 3], vec![1., 1., 0., 1., 1., 1.]).unwrap();
    let yhat = net.predict_with(&[&x, &mask]).unwrap();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for s in 0..6 {
        let wm = f64::from(w.data()[s] * mask.data()[s]);
        for j in 0..2 {
            let d = f64::from(y.data()[s * 2 + j] - yhat.data()[s * 2 + j]);
            num += wm * d * d;
        }
        den += wm * 2.0;
    }
    let loss = net.loss_on(&[x, y, w, mask]).unwrap();
    assert!((f64::from(loss) - num / den).abs() < 1e-5);
}

/// An autoencoder's loss is the mean squared error of its reconstruction against its own
/// input, over real steps; its data is `[x, mask]`.
#[test]
fn autoencoder_reconstructs_its_input() {
    let net = Autoencoder::build(
        vec![LayerSpec::input(3), LayerSpec::lstm(2), LayerSpec::dense(3)],
        ModelOptions::default(),
        masked(),
    )
    .unwrap();
    let x = uniform(&[2, 4, 3], 6);
    let mask = Tensor::new(&[2, 4], vec![1., 1., 1., 1., 1., 1., 0., 0.]).unwrap();
    let xhat = net.predict_with(&[&x, &mask]).unwrap();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for s in 0..8 {
        let m = f64::from(mask.data()[s]);
        for j in 0..3 {
            let d = f64::from(x.data()[s * 3 + j] - xhat.data()[s * 3 + j]);
            num += m * d * d;
        }
        den += m * 3.0;
    }
    let loss = net.loss_on(&[x.clone(), mask]).unwrap();
    assert!((f64::from(loss) - num / den).abs() < 1e-5);
    let e = net.loss_on(&[x]).unwrap_err().to_string();
    assert!(e.contains("[x, mask]"), "{e}");
}

/// Monitors by glob work on sequence outputs; the matrix entry points of `Network` refuse a
/// recurrent model with a pointer to its own methods.
#[test]
fn monitors_and_matrix_entry_points() {
    let net = Regressor::build(
        vec![LayerSpec::input(2), LayerSpec::rnn(3), LayerSpec::dense(1)],
        ModelOptions {
            monitors: vec![("hid1:out".into(), vec![0.0, 2.0])],
            ..Default::default()
        },
        SequenceOptions::default(),
    )
    .unwrap();
    let g = net.graph(&Default::default()).unwrap();
    let names: Vec<&str> = g.monitors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["err", "hid1:out<0", "hid1:out<2"]);
    let e = net
        .predict_raw(&uniform(&[2, 3, 2], 1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("recurrent model") && e.contains("predict_with"),
        "{e}"
    );
}

/// A target that only the initial state carries is learned through `h_0`, batched from the
/// data like `x`: data `[x, h0, targets]`.
#[test]
fn initial_states_are_trained_from_the_data() {
    let net = Regressor::new(vec![
        LayerSpec::input(1),
        LayerSpec::input(4).name("h0"),
        LayerSpec::rnn(4).h_0("h0"),
        LayerSpec::dense(1),
    ])
    .unwrap();
    let n = 64;
    let h0 = uniform(&[n, 4], 8);
    // The target at each of 3 steps is the first value of the sequence's initial state.
    let y: Vec<f32> = h0.data().chunks(4).flat_map(|r| [r[0]; 3]).collect();
    let data = vec![
        Tensor::zeros(&[n, 3, 1]),
        h0,
        Tensor::new(&[n, 3, 1], y).unwrap(),
    ];
    let before = net.loss_on(&data).unwrap();
    let mut ds = Dataset::new(
        "train",
        data.clone(),
        DatasetOptions {
            batch_size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    net.trainer(
        "adam",
        &["learning_rate=0.02", "max_updates=40", "patience=1000"],
    )
    .unwrap()
    .train(&mut ds, None)
    .unwrap();
    let after = net.loss_on(&data).unwrap();
    assert!(after < 0.1 * before, "loss {before} → {after}");
}

/// Bad data is refused with the array, the layer and the position named.
#[test]
fn data_checks_name_what_is_wrong() {
    let net = classifier(masked());
    let x = uniform(&[2, 3, 2], 1);
    let labels = Tensor::new(&[2, 3], vec![0., 2., 1., 1., 3., 0.]).unwrap();
    let mask = Tensor::ones(&[2, 3]);
    let e = net
        .check_data(&[x.clone(), labels, mask.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layer `out`") && e.contains("sequence 1, step 1") && e.contains("0..3"),
        "{e}"
    );
    let good = Tensor::zeros(&[2, 3]);
    let e = net
        .check_data(&[uniform(&[2, 3], 1), good.clone(), mask.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input layer `in`") && e.contains("[batch, time, 2]"),
        "{e}"
    );
    let e = net
        .check_data(&[x.clone(), good.clone(), Tensor::ones(&[2, 4])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask") && e.contains("[2, 3]"), "{e}");
    let half = Tensor::full(&[2, 3], 0.5);
    let e = net
        .check_data(&[x.clone(), good.clone(), half])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask") && e.contains("not 0 or 1"), "{e}");
    let e = net.check_data(&[x.clone(), good]).unwrap_err().to_string();
    assert!(e.contains("[x, labels, mask]"), "{e}");
    let e = net.predict_with(&[&x]).unwrap_err().to_string();
    assert!(e.contains("[x, mask]"), "{e}");
}

/// A recurrent layer in a feedforward model, and recurrent options on a dense layer, are
/// configuration errors naming the layer.
#[test]
fn recurrent_layers_need_a_recurrent_model() {
    let e = nets::Regressor::build(
        vec![LayerSpec::input(2), LayerSpec::lstm(3), LayerSpec::dense(1)],
        ModelOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("layer `hid1`") && e.contains("recurrent model"),
        "{e}"
    );
    let e = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::dense(3).backward(),
        LayerSpec::dense(1),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("layer `hid1`") && e.contains("recurrent layers"),
        "{e}"
    );
    let e = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::input(3).name("c"),
        LayerSpec::gru(3).c_0("c"),
        LayerSpec::dense(1),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("layer `hid2`") && e.contains("lstm"), "{e}");
    let e = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::rnn(3).h_0("in"),
        LayerSpec::dense(1),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("input layer after the first"), "{e}");
}

/// A saved recurrent model loads with the same parameters, options and predictions; loading it
/// as a feedforward model's counterpart of another kind is an error.
#[test]
fn recurrent_models_round_trip_through_files() {
    let dir = common::scratch("recurrent", "files");
    let path = dir.join("m.nets");
    let net = Regressor::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::lstm(3).backward().forget_bias(1.0).bptt_limit(4),
            LayerSpec::gru(2),
            LayerSpec::dense(1),
        ],
        ModelOptions::default(),
        masked(),
    )
    .unwrap();
    net.save(&path).unwrap();
    let back = Regressor::load(&path).unwrap();
    let x = uniform(&[2, 4, 2], 5);
    let mask = Tensor::new(&[2, 4], vec![1., 1., 1., 1., 1., 1., 0., 0.]).unwrap();
    assert_eq!(
        net.predict_with(&[&x, &mask]).unwrap().data(),
        back.predict_with(&[&x, &mask]).unwrap().data()
    );
    assert_eq!(net.layers()[1].describe(), back.layers()[1].describe());
    let e = Classifier::load(&path).err().unwrap().to_string();
    assert!(e.contains("not a recurrent Classifier"), "{e}");
    let e = Autoencoder::load(&path).err().unwrap().to_string();
    assert!(e.contains("Regressor"), "{e}");
}

/// The LSTM's bias: theanets' N(2, 1) by default, or 0 with the forget gate at `forget_bias`.
#[test]
fn lstm_bias_defaults() {
    let net = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::lstm(50),
        LayerSpec::lstm(3).forget_bias(1.0),
        LayerSpec::dense(1),
    ])
    .unwrap();
    let b = net.find("hid1", "b").unwrap().value();
    let mean = b.data().iter().sum::<f32>() / b.len() as f32;
    let var = b.data().iter().map(|v| (v - mean).powi(2)).sum::<f32>() / b.len() as f32;
    assert!(
        (mean - 2.0).abs() < 0.2 && (var.sqrt() - 1.0).abs() < 0.2,
        "{mean} {var}"
    );
    let b = net.find("hid2", "b").unwrap().value();
    assert_eq!(b.data(), &[0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0.]);
}

/// The adding problem (Hochreiter & Schmidhuber): each step holds a value in [0, 1) and a marker;
/// the target, at the last step, is the sum of the two marked values. Returns `[x, y, w]` with
/// weight 1 on the last step only.
pub fn adding_problem(n: usize, time: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let mut x = vec![0.0f32; n * time * 2];
    let mut y = vec![0.0f32; n * time];
    let mut w = vec![0.0f32; n * time];
    for i in 0..n {
        let a = (rng.uniform() * (time / 2) as f32) as usize;
        let b = time / 2 + (rng.uniform() * (time - time / 2) as f32) as usize;
        let mut sum = 0.0;
        for t in 0..time {
            let v = rng.uniform();
            x[(i * time + t) * 2] = v;
            if t == a || t == b {
                x[(i * time + t) * 2 + 1] = 1.0;
                sum += v;
            }
        }
        y[i * time + time - 1] = sum;
        w[i * time + time - 1] = 1.0;
    }
    vec![
        Tensor::new(&[n, time, 2], x).unwrap(),
        Tensor::new(&[n, time, 1], y).unwrap(),
        Tensor::new(&[n, time], w).unwrap(),
    ]
}

/// Trains an LSTM on the adding problem with `time` steps; returns the test MSE at the last
/// step.
fn train_adding(time: usize, iterations: usize) -> f32 {
    let net = Regressor::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::lstm(16),
            LayerSpec::dense(1),
        ],
        ModelOptions {
            weighted: true,
            ..Default::default()
        },
        SequenceOptions::default(),
    )
    .unwrap();
    let train = adding_problem(1024, time, 1);
    let mut ds = Dataset::new(
        "train",
        train,
        DatasetOptions {
            batch_size: 32,
            iteration_size: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    let settings = [
        "learning_rate=0.01".to_string(),
        format!("max_updates={iterations}"),
        "patience=1000".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut trainer = net.trainer("adam", &settings).unwrap();
    for step in trainer.iterate(&mut ds, None) {
        step.unwrap();
    }
    let test = adding_problem(256, time, 2);
    net.loss_on(&test).unwrap()
}

/// Baseline: always answering 1 (the mean) scores the variance of the sum, 1/6 ≈ 0.167.
#[test]
fn lstm_learns_the_adding_problem() {
    let started = std::time::Instant::now();
    let mse = train_adding(50, 60);
    eprintln!(
        "adding problem T=50: test MSE {mse} in {:?}",
        started.elapsed()
    );
    assert!(mse < 0.01, "test MSE {mse}");
}

/// Sequences of 2 to 8 steps whose class is the sign of the first feature at their last real
/// step, padded with noise to 8 steps. Returns `[x, labels, weights, mask]`: the class at every
/// step, read at the first step only (weight 1 there, 0 elsewhere).
fn last_step_data(n: usize, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let mut seqs = Vec::new();
    let mut classes = Vec::new();
    for i in 0..n {
        // The first sequence is full length, so the padded batch has 8 steps.
        let len = if i == 0 {
            8
        } else {
            2 + (rng.uniform() * 7.0) as usize
        };
        let v: Vec<f32> = (0..len * 2).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        classes.push(if v[(len - 1) * 2] > 0.0 { 1.0 } else { 0.0 });
        seqs.push(Tensor::new(&[len, 2], v).unwrap());
    }
    let Padded {
        values: mut x,
        mask,
        ..
    } = pad(&seqs, 0.0).unwrap();
    // Noise in the padding: what an unmasked model reads past the end of a sequence.
    for (v, m) in x.data_mut().chunks_mut(2).zip(mask.data().iter().copied()) {
        if m == 0.0 {
            v.iter_mut().for_each(|e| *e = rng.uniform() * 2.0 - 1.0);
        }
    }
    let labels: Vec<f32> = classes.iter().flat_map(|&c| [c; 8]).collect();
    let first: Vec<f32> = (0..n)
        .flat_map(|_| [1., 0., 0., 0., 0., 0., 0., 0.])
        .collect();
    let labels = Tensor::new(&[n, 8], labels).unwrap();
    let first = Tensor::new(&[n, 8], first).unwrap();
    vec![x, labels, first, mask]
}

/// A classifier answering at the first step with a backward GRU, which has then read the whole
/// sequence from its end: with the mask the scan starts at the last real step; without it, the
/// noise after that step looks like data and the model cannot tell where the sequence ends.
fn last_step_accuracy(use_mask: bool) -> f32 {
    let net = Classifier::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::gru(8).backward(),
            LayerSpec::dense(2),
        ],
        ModelOptions {
            weighted: true,
            ..Default::default()
        },
        SequenceOptions { masked: use_mask },
    )
    .unwrap();
    let keep = |d: Vec<Tensor>| if use_mask { d } else { d[..3].to_vec() };
    let train = keep(last_step_data(512, 3));
    let mut ds = Dataset::new(
        "train",
        train,
        DatasetOptions {
            batch_size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let mut trainer = net
        .trainer(
            "adam",
            &["learning_rate=0.02", "max_updates=15", "patience=1000"],
        )
        .unwrap();
    for step in trainer.iterate(&mut ds, None) {
        step.unwrap();
    }
    net.accuracy(&keep(last_step_data(256, 4))).unwrap()
}

#[test]
fn masked_classifier_beats_unmasked_on_padded_sequences() {
    let with = last_step_accuracy(true);
    let without = last_step_accuracy(false);
    eprintln!("last-step accuracy: masked {with}, unmasked {without}");
    assert!(with > 0.9, "masked accuracy {with}");
    assert!(with > without + 0.1, "masked {with} vs unmasked {without}");
}
