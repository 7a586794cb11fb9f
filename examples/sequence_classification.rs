//! Classifying sequences of different lengths, with and without a mask.
//!
//! Each sequence has between [`MIN_LEN`] and [`MAX_LEN`] steps of two values in [-1, 1); its
//! class is whether the sum of its first values is positive. The sequences are stacked with
//! [`pad`] into one `(batch, time, 2)` array, and the padding is filled with random values: what
//! a buffer holds past the end of a short sequence, which nothing in the data tells apart from
//! real steps except the mask.
//!
//! The classifier reads each sequence with a backward GRU, so that its output at the first step
//! has seen the whole sequence, and answers there (a weight of 1 at step 0, 0 elsewhere). Built
//! `masked`, the model gets the `(batch, time)` mask from [`pad`] as its last data array: the scan
//! starts each sequence at its last real step and the padding never enters the state. The same
//! model without the mask adds the padding into its sum, and its accuracy drops the more the
//! shorter the sequences are.
//!
//! Run with `cargo run --release --example sequence_classification`.

use nets::data::sequences::{pad, Padded};
use nets::recurrent::{Classifier, SequenceOptions};
use nets::{LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use tape::{Rng, Tensor};

/// The shortest sequence.
pub const MIN_LEN: usize = 2;
/// The longest sequence: the padded time axis.
pub const MAX_LEN: usize = 12;

/// Test accuracies of the two models on the same sequences.
#[derive(Debug)]
pub struct Summary {
    /// Accuracy of the model given the mask.
    pub masked_accuracy: f32,
    /// Accuracy of the same model without it.
    pub unmasked_accuracy: f32,
    /// Fraction of the test sequences in class 1 (what always answering 1 scores).
    pub class_1_share: f32,
}

/// `n` padded sequences as `[x, labels, weights, mask]`: the class at every step, weighted at
/// step 0 only.
fn sequences(n: usize, rng: &mut Rng) -> nets::Result<Vec<Tensor>> {
    let mut seqs = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    for i in 0..n {
        // The first sequence has the full length, so that every batch pads to MAX_LEN steps.
        let len = if i == 0 {
            MAX_LEN
        } else {
            MIN_LEN + rng.below(MAX_LEN - MIN_LEN + 1)
        };
        let v: Vec<f32> = (0..len * 2).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        let sum: f32 = v.iter().step_by(2).sum();
        classes.push(f32::from(sum > 0.0));
        seqs.push(Tensor::new(&[len, 2], v)?);
    }
    let Padded {
        values: mut x,
        mask,
        ..
    } = pad(&seqs, 0.0)?;
    for (step, &m) in x.data_mut().chunks_mut(2).zip(mask.data()) {
        if m == 0.0 {
            step.iter_mut().for_each(|e| *e = rng.uniform() * 2.0 - 1.0);
        }
    }
    let labels: Vec<f32> = classes.iter().flat_map(|&c| [c; MAX_LEN]).collect();
    let weights: Vec<f32> = (0..n * MAX_LEN)
        .map(|i| f32::from(i % MAX_LEN == 0))
        .collect();
    Ok(vec![
        x,
        Tensor::new(&[n, MAX_LEN], labels)?,
        Tensor::new(&[n, MAX_LEN], weights)?,
        mask,
    ])
}

/// Trains the classifier, with the mask when `masked`, and returns its test accuracy.
fn accuracy(
    train: &[Tensor],
    test: &[Tensor],
    masked: bool,
    updates: usize,
    seed: u64,
) -> nets::Result<f32> {
    let net = Classifier::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::gru(16).backward(),
            LayerSpec::dense(2),
        ],
        ModelOptions {
            weighted: true,
            seed,
            ..Default::default()
        },
        SequenceOptions { masked },
    )?;
    // A masked model reads `[x, labels, weights, mask]`, the other one the first three.
    let keep = |d: &[Tensor]| d[..if masked { 4 } else { 3 }].to_vec();
    let mut ds = Dataset::new(
        "train",
        keep(train),
        DatasetOptions {
            batch_size: 32,
            seed,
            ..Default::default()
        },
    )?;
    let settings = [
        "learning_rate=0.02".to_string(),
        format!("max_updates={updates}"),
        "patience=1000".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut trainer = net.trainer("adam", &settings)?;
    for (i, step) in trainer.iterate(&mut ds, None).enumerate() {
        let (tm, _) = step?;
        if i % 5 == 0 {
            println!(
                "{} iteration {i:3}: train loss {:.3}, accuracy {:.3}",
                if masked { "  masked" } else { "unmasked" },
                tm.loss(),
                tm.get("acc").unwrap_or(f32::NAN)
            );
        }
    }
    net.accuracy(&keep(test))
}

/// Trains both models for `updates` iterations (passes over 1024 training sequences) and
/// measures them on 512 test sequences.
pub fn run(seed: u64, updates: usize) -> nets::Result<Summary> {
    let mut rng = Rng::from_name(seed, "sequences");
    let train = sequences(1024, &mut rng)?;
    let test = sequences(512, &mut rng)?;
    let ones = test[1].data().iter().step_by(MAX_LEN).sum::<f32>();
    Ok(Summary {
        masked_accuracy: accuracy(&train, &test, true, updates, seed)?,
        unmasked_accuracy: accuracy(&train, &test, false, updates, seed)?,
        class_1_share: ones / 512.0,
    })
}

fn main() -> nets::Result<()> {
    let s = run(13, 30)?;
    println!(
        "test accuracy: masked {:.3}, unmasked {:.3} (always answering 1: {:.3})",
        s.masked_accuracy, s.unmasked_accuracy, s.class_1_share
    );
    Ok(())
}
