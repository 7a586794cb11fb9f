//! theanets' `mnist-autoencoder.py`, deeper: a 784-256-64-256-784 ReLU autoencoder trained on the
//! MNIST images with Adam, validated on the last 10,000 training images; reports the R² of its
//! reconstruction of the 10,000 test images, about 0.91 after 20 passes of about a second each
//! on two cores (see `docs/benchmarks.md` for the measured run).
//!
//! Run with `cargo run --release --example mnist_autoencoder [MNIST_DIR] [EPOCHS]`. The directory
//! defaults to the workspace's shared copy and must hold MNIST's four IDX files (gzipped or not).

use nets::{Autoencoder, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use std::path::Path;
use std::time::Instant;

/// Training images kept for training; the rest of the 60,000 validate (early stopping).
const TRAIN_ROWS: usize = 50_000;

/// What the run measured.
#[derive(Debug)]
pub struct Summary {
    /// Passes over the 50,000 training images.
    pub epochs: usize,
    /// R² of the reconstruction of the 10,000 test images.
    pub test_r2: f32,
    /// Wall-clock seconds per pass (training and its validation), averaged over the passes.
    pub seconds_per_epoch: f64,
}

/// Trains the autoencoder for at most `epochs` passes on the MNIST images in `dir`.
pub fn run(dir: &Path, epochs: usize) -> nets::Result<Summary> {
    let mnist = nets::data::read_mnist(dir)?;
    let options = DatasetOptions {
        batch_size: 128,
        shuffle_samples: true,
        seed: 7,
        ..Default::default()
    };
    let n = mnist.train_x.shape()[0];
    let mut train = Dataset::new(
        "train",
        vec![mnist.train_x.rows(0, TRAIN_ROWS)?],
        options.clone(),
    )?;
    let mut valid = Dataset::new(
        "valid",
        vec![mnist.train_x.rows(TRAIN_ROWS, n)?],
        DatasetOptions {
            batch_size: 1000,
            ..options
        },
    )?;
    let net = Autoencoder::build(
        vec![
            LayerSpec::input(784),
            LayerSpec::dense(256),
            LayerSpec::dense(64),
            LayerSpec::dense(256),
            LayerSpec::dense(784),
        ],
        ModelOptions::default(),
    )?;
    let max_updates = format!("max_updates={epochs}");
    let mut trainer = net.trainer(
        "adam",
        &[
            "learning_rate=0.001",
            "validate_every=1",
            "patience=3",
            &max_updates,
        ],
    )?;
    let start = Instant::now();
    let mut done = 0;
    for step in trainer.iterate(&mut train, Some(&mut valid)) {
        let (t, v) = step?;
        done += 1;
        println!(
            "epoch {done:>3}  train loss {:.5}  valid loss {:.5}  {:.1} s",
            t.loss(),
            v.loss(),
            start.elapsed().as_secs_f64()
        );
    }
    let seconds_per_epoch = start.elapsed().as_secs_f64() / done.max(1) as f64;
    Ok(Summary {
        epochs: done,
        test_r2: net.score(&mnist.test_x, None)?,
        seconds_per_epoch,
    })
}

fn main() {
    let (dir, epochs) = theanets_rs::mnist::args(20);
    match run(&dir, epochs) {
        Ok(s) => println!(
            "test R² {:.4} after {} epochs, {:.1} s/epoch",
            s.test_r2, s.epochs, s.seconds_per_epoch
        ),
        Err(e) => theanets_rs::mnist::exit_with(e),
    }
}
