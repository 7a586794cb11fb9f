//! theanets' `xor-classifier.py`: a tiny regressor learns the exclusive-or of two bits, the
//! classic function no linear model can represent. As in theanets the whole data set (four rows)
//! is one batch and Rprop trains it; the hidden layer is a little wider than theanets' two units
//! so that every seed finds the solution rather than most.
//!
//! Run with `cargo run --release --example xor`.

use nets::{LayerSpec, ModelOptions, Regressor};
use optim::{Dataset, DatasetOptions};
use tape::Tensor;

/// What the run learned.
#[derive(Debug)]
pub struct Summary {
    /// The four inputs, row by row.
    pub inputs: [[f32; 2]; 4],
    /// The model's output for each input.
    pub predictions: [f32; 4],
    /// The exclusive-or of each input.
    pub targets: [f32; 4],
}

/// Trains the xor regressor with the given seed.
pub fn run(seed: u64) -> nets::Result<Summary> {
    let inputs = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let targets = [0.0, 1.0, 1.0, 0.0];
    let x = Tensor::new(&[4, 2], inputs.concat())?;
    let y = Tensor::new(&[4, 1], targets.to_vec())?;
    let net = Regressor::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::dense(4).activation("tanh"),
            LayerSpec::dense(1).activation("linear"),
        ],
        ModelOptions {
            seed,
            ..Default::default()
        },
    )?;
    let options = DatasetOptions {
        batch_size: 4,
        seed,
        ..Default::default()
    };
    let mut train = Dataset::new("train", vec![x.clone(), y], options)?;
    net.trainer(
        "rprop",
        &["patience=10", "validate_every=10", "max_updates=2000"],
    )?
    .train(&mut train, None)?;
    let out = net.predict(&x)?;
    let mut predictions = [0.0; 4];
    predictions.copy_from_slice(out.data());
    Ok(Summary {
        inputs,
        predictions,
        targets,
    })
}

fn main() -> nets::Result<()> {
    let s = run(13)?;
    for ((x, p), t) in s.inputs.iter().zip(s.predictions).zip(s.targets) {
        println!("{} xor {} = {t}   predicted {p:.3}", x[0], x[1]);
    }
    Ok(())
}
