//! theanets' `mnist-classifier.py`, made bigger: a 784-512-512-10 ReLU classifier trained on
//! MNIST with Adam (learning rate 1e-3, then 1e-4 for a few passes), batches of 128 and dropout
//! (20% of the inputs, 30% of the hidden units), validated on the last 10,000 training images and
//! scored on the 10,000 test images. It reaches about 98.6% test accuracy in some twenty passes
//! of a second or two each on two cores (see `docs/benchmarks.md` for the measured run).
//!
//! Run with `cargo run --release --example mnist_classifier [MNIST_DIR] [EPOCHS]`. The directory
//! defaults to the workspace's shared copy and must hold MNIST's four IDX files (gzipped or not).

use nets::{Classifier, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use std::path::Path;
use std::time::Instant;

/// Training images kept for training; the rest of the 60,000 validate (early stopping).
const TRAIN_ROWS: usize = 50_000;

/// Passes at the smaller learning rate that ends training.
const FINE_EPOCHS: usize = 5;

/// What the run measured.
#[derive(Debug)]
pub struct Summary {
    /// Passes over the 50,000 training images, both learning rates together.
    pub epochs: usize,
    /// Fraction of the 10,000 test images classified correctly.
    pub test_accuracy: f32,
    /// Wall-clock seconds per pass (training and its validation), averaged over the passes.
    pub seconds_per_epoch: f64,
}

/// Trains the classifier for at most `epochs` passes on the MNIST files in `dir` (at least one
/// at each learning rate, so two when `epochs` is 1).
pub fn run(dir: &Path, epochs: usize) -> nets::Result<Summary> {
    let mnist = nets::data::read_mnist(dir)?;
    let options = DatasetOptions {
        batch_size: 128,
        // Each pass groups different images together (the default only reorders fixed batches).
        shuffle_samples: true,
        seed: 7,
        ..Default::default()
    };
    let n = mnist.train_x.shape()[0];
    let mut train = Dataset::new(
        "train",
        vec![
            mnist.train_x.rows(0, TRAIN_ROWS)?,
            mnist.train_y.rows(0, TRAIN_ROWS)?,
        ],
        options.clone(),
    )?;
    let mut valid = Dataset::new(
        "valid",
        vec![
            mnist.train_x.rows(TRAIN_ROWS, n)?,
            mnist.train_y.rows(TRAIN_ROWS, n)?,
        ],
        DatasetOptions {
            batch_size: 1000,
            ..options
        },
    )?;
    let net = Classifier::build(
        vec![
            LayerSpec::input(784),
            LayerSpec::dense(512),
            LayerSpec::dense(512),
            LayerSpec::classifier(10),
        ],
        ModelOptions::default(),
    )?;
    // Adam at 1e-3 until the validation loss stops improving, then a few passes at 1e-4 from
    // the best parameters: the smaller steps settle into the minimum the large ones bounce around.
    let fine = FINE_EPOCHS.min(epochs / 2).max(1);
    let epochs_first = format!("max_updates={}", epochs.saturating_sub(fine).max(1));
    let epochs_fine = format!("max_updates={fine}");
    let start = Instant::now();
    let mut done = 0;
    for (lr, patience, max_updates) in [
        ("learning_rate=0.001", "patience=5", &epochs_first),
        ("learning_rate=0.0001", "patience=2", &epochs_fine),
    ] {
        let settings = [
            lr,
            patience,
            max_updates,
            "input_dropout=0.2",
            "hidden_dropout=0.3",
            "validate_every=1",
        ];
        let mut trainer = net.trainer("adam", &settings)?;
        println!("adam {lr} {patience} {max_updates}");
        for step in trainer.iterate(&mut train, Some(&mut valid)) {
            let (t, v) = step?;
            done += 1;
            println!(
                "epoch {done:>3}  train loss {:.4}  valid loss {:.4}  valid acc {:.4}  {:.1} s",
                t.loss(),
                v.loss(),
                v.get("acc").unwrap_or(f32::NAN),
                start.elapsed().as_secs_f64()
            );
        }
    }
    let seconds_per_epoch = start.elapsed().as_secs_f64() / done.max(1) as f64;
    let test_accuracy = net.score(&mnist.test_x, &mnist.test_y, None)?;
    Ok(Summary {
        epochs: done,
        test_accuracy,
        seconds_per_epoch,
    })
}

fn main() {
    let (dir, epochs) = theanets_rs::mnist::args(30);
    match run(&dir, epochs) {
        Ok(s) => println!(
            "test accuracy {:.4} after {} epochs, {:.1} s/epoch",
            s.test_accuracy, s.epochs, s.seconds_per_epoch
        ),
        Err(e) => theanets_rs::mnist::exit_with(e),
    }
}
