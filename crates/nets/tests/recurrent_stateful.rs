//! Stateful training (issue th#132): a long sequence cut into consecutive chunks, trained batch
//! by batch with the final state of each chunk carried into the next, against a plain f64
//! reference of the same truncated backpropagation through time; shuffled data and a batch of
//! another size are refused with errors that say why.

use nets::optim::Algorithm;
use nets::optim::{Dataset, DatasetOptions, LoopOptions, RuleOptions};
use nets::recurrent::{Regressor, SequenceOptions};
use nets::{LayerSpec, ModelOptions, Regularizers};
use tape::{Rng, Tensor};

const BATCH: usize = 2;
const NIN: usize = 2;
const HID: usize = 3;
const CHUNK: usize = 2;
const CHUNKS: usize = 3;
const LR: f64 = 0.1;

fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    Tensor::new(shape, v).unwrap()
}

fn model(stateful: bool) -> Regressor {
    let rnn = LayerSpec::rnn(HID).activation("tanh");
    let rnn = if stateful { rnn.stateful(BATCH) } else { rnn };
    Regressor::build(
        vec![
            LayerSpec::input(NIN),
            rnn,
            LayerSpec::dense(1).activation("linear"),
        ],
        ModelOptions::default(),
        SequenceOptions::default(),
    )
    .unwrap()
}

/// The model's parameters as f64: `[xh, hh, b, out.w, out.b]`.
fn weights(net: &Regressor) -> Vec<Vec<f64>> {
    [
        ("hid1", "xh"),
        ("hid1", "hh"),
        ("hid1", "b"),
        ("out", "w"),
        ("out", "b"),
    ]
    .iter()
    .map(|(l, p)| {
        let t = net.find(l, p).unwrap().value();
        t.data().iter().map(|&v| f64::from(v)).collect()
    })
    .collect()
}

/// One chunk `(BATCH, CHUNK, NIN)` of the reference: forward from `h0`, the mean squared
/// error, gradients by backpropagation through this chunk only (the carried state is a
/// constant), returning (loss, gradients like `w`, final state).
fn chunk_step(w: &[Vec<f64>], x: &[f64], y: &[f64], h0: &[f64]) -> (f64, Vec<Vec<f64>>, Vec<f64>) {
    let (wx, wh, b, wo, bo) = (&w[0], &w[1], &w[2], &w[3], w[4][0]);
    let n = (BATCH * CHUNK) as f64;
    let mut g: Vec<Vec<f64>> = w.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut loss = 0.0;
    let mut finals = Vec::new();
    for s in 0..BATCH {
        // hs[t] is the state after step t − 1; hs[0] the carried one.
        let mut hs = vec![h0[s * HID..(s + 1) * HID].to_vec()];
        let mut dys = Vec::new();
        for t in 0..CHUNK {
            let xt = &x[(s * CHUNK + t) * NIN..(s * CHUNK + t + 1) * NIN];
            let prev = &hs[t];
            let h: Vec<f64> = (0..HID)
                .map(|j| {
                    let a = b[j]
                        + (0..NIN).map(|i| xt[i] * wx[i * HID + j]).sum::<f64>()
                        + (0..HID).map(|i| prev[i] * wh[i * HID + j]).sum::<f64>();
                    a.tanh()
                })
                .collect();
            let out = bo + (0..HID).map(|j| h[j] * wo[j]).sum::<f64>();
            let err = out - y[s * CHUNK + t];
            loss += err * err / n;
            dys.push(2.0 * err / n);
            hs.push(h);
        }
        let mut dh_next = vec![0.0; HID];
        for t in (0..CHUNK).rev() {
            let xt = &x[(s * CHUNK + t) * NIN..(s * CHUNK + t + 1) * NIN];
            let (h, prev) = (&hs[t + 1], &hs[t]);
            let dy = dys[t];
            g[4][0] += dy;
            let da: Vec<f64> = (0..HID)
                .map(|j| {
                    g[3][j] += h[j] * dy;
                    (dy * wo[j] + dh_next[j]) * (1.0 - h[j] * h[j])
                })
                .collect();
            for j in 0..HID {
                g[2][j] += da[j];
                for i in 0..NIN {
                    g[0][i * HID + j] += xt[i] * da[j];
                }
                for i in 0..HID {
                    g[1][i * HID + j] += prev[i] * da[j];
                }
            }
            dh_next = (0..HID)
                .map(|i| (0..HID).map(|j| wh[i * HID + j] * da[j]).sum())
                .collect();
        }
        finals.extend_from_slice(&hs[CHUNK]);
    }
    (loss, g, finals)
}

/// The reference's losses over `passes` passes of SGD, batch by batch in order; with `carry`
/// each chunk starts from the previous chunk's final state (zeros at each pass's start).
fn reference(w0: &[Vec<f64>], x: &Tensor, y: &Tensor, passes: usize, carry: bool) -> Vec<f64> {
    let mut w = w0.to_vec();
    let xs: Vec<f64> = x.data().iter().map(|&v| f64::from(v)).collect();
    let ys: Vec<f64> = y.data().iter().map(|&v| f64::from(v)).collect();
    let (xl, yl) = (BATCH * CHUNK * NIN, BATCH * CHUNK);
    let mut losses = Vec::new();
    for _ in 0..passes {
        let mut h = vec![0.0; BATCH * HID];
        for c in 0..CHUNKS {
            let (loss, g, finals) =
                chunk_step(&w, &xs[c * xl..(c + 1) * xl], &ys[c * yl..(c + 1) * yl], &h);
            for (p, gp) in w.iter_mut().zip(&g) {
                p.iter_mut().zip(gp).for_each(|(v, d)| *v -= LR * d);
            }
            losses.push(loss);
            if carry {
                h = finals;
            }
        }
    }
    losses
}

/// Chunk-major data: rows `[chunk 0 of each sequence…, chunk 1 of each sequence…, …]`, so that
/// batch `c` of `BATCH` rows holds chunk `c` of every sequence.
fn chunked_data() -> (Tensor, Tensor) {
    let x = uniform(&[CHUNKS * BATCH, CHUNK, NIN], 5);
    let y = uniform(&[CHUNKS * BATCH, CHUNK, 1], 6);
    (x, y)
}

fn in_order(batch_size: usize) -> DatasetOptions {
    DatasetOptions {
        batch_size,
        iteration_size: Some(1),
        shuffle_batches: false,
        ..Default::default()
    }
}

fn sgd() -> RuleOptions {
    let mut rule = RuleOptions::new(Algorithm::Sgd);
    rule.learning_rate = LR as f32;
    rule.momentum = 0.0;
    rule
}

/// The trainer's loss at every batch of two passes (one batch per iteration, validating
/// between every two batches) equals the f64 reference carrying the state chunk to chunk and
/// resetting it between passes; the same model without state gives other losses.
#[test]
fn stateful_training_carries_state_across_consecutive_batches() {
    let net = model(true);
    let (x, y) = chunked_data();
    let w0 = weights(&net);
    let passes = 2;
    let carried = reference(&w0, &x, &y, passes, true);
    let fresh = reference(&w0, &x, &y, passes, false);
    let lp = LoopOptions {
        validate_every: 1,
        patience: 100,
        max_updates: Some(passes * CHUNKS),
        ..Default::default()
    };
    let mut trainer = net
        .trainer_with(sgd(), lp, &Regularizers::default())
        .unwrap();
    let mut data = Dataset::new("train", vec![x, y], in_order(BATCH)).unwrap();
    let losses: Vec<f64> = trainer
        .iterate(&mut data, None)
        .map(|step| f64::from(step.unwrap().0.loss()))
        .collect();
    assert_eq!(losses.len(), passes * CHUNKS);
    for (k, (got, want)) in losses.iter().zip(&carried).enumerate() {
        assert!((got - want).abs() < 1e-5, "batch {k}: {got} vs {want}");
    }
    // The first chunk of each pass starts from zeros either way; the others must differ.
    let differ = (0..losses.len())
        .filter(|k| k % CHUNKS != 0)
        .all(|k| (carried[k] - fresh[k]).abs() > 1e-4 && (losses[k] - fresh[k]).abs() > 1e-4);
    assert!(differ, "{losses:?} vs stateless {fresh:?}");
}

/// Shuffled training data is refused, naming the data set and the carried state.
#[test]
fn stateful_training_refuses_shuffled_batches() {
    let net = model(true);
    let (x, y) = chunked_data();
    let lp = LoopOptions {
        max_updates: Some(1),
        ..Default::default()
    };
    let mut trainer = net
        .trainer_with(sgd(), lp, &Regularizers::default())
        .unwrap();
    let options = DatasetOptions {
        batch_size: BATCH,
        ..Default::default()
    };
    let mut data = Dataset::new("train", vec![x, y], options).unwrap();
    let e = trainer.train(&mut data, None).unwrap_err();
    let text = format!("{e} {:?}", e);
    assert!(
        text.contains("training data `train`")
            && text.contains("hid1.state_h")
            && text.contains("shuffle_batches"),
        "{text}"
    );
}

/// A short last batch is refused with the carried state's name, its batch size and the
/// batch's, both in training and in validation.
#[test]
fn stateful_training_names_a_batch_of_another_size() {
    let net = model(true);
    let x = uniform(&[BATCH + 1, CHUNK, NIN], 7);
    let y = uniform(&[BATCH + 1, CHUNK, 1], 8);
    let lp = LoopOptions {
        max_updates: Some(2),
        ..Default::default()
    };
    let mut trainer = net
        .trainer_with(sgd(), lp, &Regularizers::default())
        .unwrap();
    let mut data = Dataset::new("train", vec![x.clone(), y.clone()], in_order(BATCH)).unwrap();
    // Validation (before the first step) meets the short batch first.
    let e = trainer.train(&mut data, None).unwrap_err();
    let text = format!("{e} {:?}", e);
    assert!(
        text.contains("carried state `hid1.state_h`")
            && text.contains("batches of 2 sequences, got a batch of 1"),
        "{text}"
    );
    // Stepping directly on a batch of three sequences.
    let (xv, yv) = (x.view(), y.view());
    let e = trainer.step(&[xv, yv]).unwrap_err().to_string();
    assert!(
        e.contains("batches of 2 sequences, got a batch of 3"),
        "{e}"
    );
}

/// An Experiment trains a stateful model on chunk-major data with `shuffle_batches=false`
/// (its data check asks for whole batches, not one batch), and refuses data that does not cut
/// into whole batches of the stateful size, naming the layer.
#[test]
fn experiments_train_stateful_models_on_whole_batches() {
    let (x, y) = chunked_data();
    let mut exp = nets::Experiment::new(model(true));
    let opts = ["shuffle_batches=false", "batch_size=2", "max_updates=2"];
    exp.train(vec![x, y], nets::Data::None, "sgd", &opts)
        .unwrap();
    let odd = vec![
        uniform(&[BATCH + 1, CHUNK, NIN], 7),
        uniform(&[BATCH + 1, CHUNK, 1], 8),
    ];
    let e = exp.train(odd, nets::Data::None, "sgd", &opts).unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("stateful layer `hid1`") && text.contains("not a multiple of 2"),
        "{text}"
    );
}

fn lstm_model(stateful: bool) -> Regressor {
    let lstm = LayerSpec::lstm(HID);
    let lstm = if stateful { lstm.stateful(BATCH) } else { lstm };
    Regressor::build(
        vec![
            LayerSpec::input(NIN),
            lstm,
            LayerSpec::dense(1).activation("linear"),
        ],
        ModelOptions::default(),
        SequenceOptions::default(),
    )
    .unwrap()
}

/// Chunk `c` (steps `c·CHUNK..(c+1)·CHUNK`) of every sequence of `long`, chunk-major.
fn chunk_major(long: &Tensor) -> Tensor {
    let (n, t, d) = (long.shape()[0], long.shape()[1], long.shape()[2]);
    let mut v = Vec::new();
    for c in 0..t / CHUNK {
        for s in 0..n {
            let from = (s * t + c * CHUNK) * d;
            v.extend_from_slice(&long.data()[from..from + CHUNK * d]);
        }
    }
    Tensor::new(&[n * t / CHUNK, CHUNK, d], v).unwrap()
}

/// A validation pass carries an LSTM's hidden state and cell from chunk to chunk: its loss
/// over the chunks equals the loss of the same (stateless) model on the whole sequences; a
/// stateless model on the chunks gives another loss, and validating leaves the carried state
/// as it was.
#[test]
fn validation_carries_an_lstm_state_through_the_chunks() {
    let long_x = uniform(&[BATCH, CHUNKS * CHUNK, NIN], 31);
    let long_y = uniform(&[BATCH, CHUNKS * CHUNK, 1], 32);
    let whole = lstm_model(false)
        .loss_on(&[long_x.clone(), long_y.clone()])
        .unwrap();
    let stateful = lstm_model(true);
    let chunks = vec![chunk_major(&long_x), chunk_major(&long_y)];
    let marker = Tensor::full(&[BATCH, HID], 0.25);
    let state_c = stateful.layer("hid1").unwrap().carried_states()[1]
        .0
        .clone();
    assert_eq!(state_c.name(), "hid1.state_c");
    state_c.set(marker.clone()).unwrap();
    let lp = LoopOptions::default();
    let mut trainer = stateful
        .trainer_with(sgd(), lp.clone(), &Regularizers::default())
        .unwrap();
    let mut data = Dataset::new("valid", chunks.clone(), in_order(BATCH)).unwrap();
    let carried = f64::from(trainer.evaluate(&mut data).unwrap().loss());
    assert!(
        (carried - f64::from(whole)).abs() < 1e-5,
        "{carried} vs {whole}"
    );
    assert_eq!(state_c.value().data(), marker.data());
    let mut plain = lstm_model(false)
        .trainer_with(sgd(), lp, &Regularizers::default())
        .unwrap();
    let mut data = Dataset::new("valid", chunks, in_order(BATCH)).unwrap();
    let fresh = f64::from(plain.evaluate(&mut data).unwrap().loss());
    assert!((fresh - carried).abs() > 1e-4, "{fresh} vs {carried}");
}
