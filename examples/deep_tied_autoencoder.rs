//! theanets' `mnist-deep-autoencoder.py` on the embedded digits data: a deep autoencoder whose
//! decoders share (transposed) the weights of the encoders, 64-48-24-12 then tied layers back up
//! to 64, trained layer by layer first (`nets::trainers::layerwise`: the outer encoder and its
//! decoder alone, then one pair deeper at a time, the last stage being the whole model) and then
//! fine-tuned as a whole. Prints the test R² after each stage and after fine-tuning.
//!
//! Run with `cargo run --release --example deep_tied_autoencoder`.

use nets::{trainers, Autoencoder, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use theanets_rs::digits;

/// Rows of the training split that train; the rest validate.
const TRAIN_ROWS: usize = 1200;

/// Settings of each pre-training stage and of the fine-tuning.
const SETTINGS: &[&str] = &[
    "learning_rate=0.003",
    "validate_every=5",
    "patience=5",
    "max_updates=150",
];

/// What the run measured.
#[derive(Debug)]
pub struct Summary {
    /// For each layer-wise stage, the model layers it trained.
    pub stages: Vec<Vec<String>>,
    /// Test R² once the layer-wise stages have run.
    pub r2_pretrained: f32,
    /// Test R² after fine-tuning the whole model.
    pub r2_finetuned: f32,
}

/// Pre-trains layer by layer, fine-tunes, and scores on the digits test split.
pub fn run(seed: u64) -> nets::Result<Summary> {
    let data = digits::train();
    let test = digits::test();
    let n = data.x.shape()[0];
    let train_x = data.x.rows(0, TRAIN_ROWS)?;
    let valid_x = data.x.rows(TRAIN_ROWS, n)?;
    let net = Autoencoder::build(
        vec![
            LayerSpec::input(64),
            LayerSpec::dense(48),
            LayerSpec::dense(24),
            LayerSpec::dense(12),
            LayerSpec::tied(),
            LayerSpec::tied(),
            // The output reconstructs pixel values: no rectifier on the way out.
            LayerSpec::tied().activation("linear"),
        ],
        ModelOptions {
            seed,
            ..Default::default()
        },
    )?;
    let stages = trainers::layerwise(
        &net,
        std::slice::from_ref(&train_x),
        Some(std::slice::from_ref(&valid_x)),
        "adam",
        SETTINGS,
    )?;
    let r2_pretrained = net.score(&test.x, None)?;
    let options = DatasetOptions {
        batch_size: 32,
        seed,
        ..Default::default()
    };
    let mut train = Dataset::new("train", vec![train_x], options.clone())?;
    let mut valid = Dataset::new("valid", vec![valid_x], options)?;
    net.trainer("adam", SETTINGS)?
        .train(&mut train, Some(&mut valid))?;
    Ok(Summary {
        stages: stages.into_iter().map(|s| s.layers).collect(),
        r2_pretrained,
        r2_finetuned: net.score(&test.x, None)?,
    })
}

fn main() -> nets::Result<()> {
    let s = run(13)?;
    for (i, layers) in s.stages.iter().enumerate() {
        println!("stage {}: trained {}", i + 1, layers.join(", "));
    }
    println!(
        "test R² after layer-wise pre-training {:.4}",
        s.r2_pretrained
    );
    println!(
        "test R² after fine-tuning             {:.4}",
        s.r2_finetuned
    );
    Ok(())
}
