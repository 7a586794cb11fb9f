//! theanets' `weighted-classification.py`: with imbalanced classes (here 95% against 5%) a
//! classifier trained on the plain loss mostly predicts the majority class; giving each sample a
//! weight (the minority's 10× the majority's, `ModelOptions { weighted: true, .. }` and a third
//! data array) trades a little majority accuracy for a much better recall of the minority.
//!
//! The two classes are overlapping Gaussian clouds in two dimensions, so no classifier gets
//! everything right and the weights decide where the boundary goes.
//!
//! Run with `cargo run --release --example weighted_classification`.

use nets::{Classifier, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use tape::{Rng, Tensor};

/// Fraction of the samples in the minority class (1).
const MINORITY: f32 = 0.05;
/// Weight of a minority sample; majority samples weigh 1.
const MINORITY_WEIGHT: f32 = 10.0;

/// What the two runs measured on the same test set.
#[derive(Debug)]
pub struct Summary {
    /// Fraction of the minority's test samples found by the model trained without weights.
    pub recall_unweighted: f32,
    /// The same with per-sample weights.
    pub recall_weighted: f32,
    /// Overall test accuracy without weights.
    pub accuracy_unweighted: f32,
    /// Overall test accuracy with weights.
    pub accuracy_weighted: f32,
    /// Test confusion matrices `[true][predicted]`: without, then with weights.
    pub confusion: [Vec<Vec<usize>>; 2],
}

/// `n` samples: class 1 with probability [`MINORITY`], centred at (1.5, 1.5), class 0 at the
/// origin, both with unit variance. Returns inputs, labels and the per-sample weights.
fn samples(n: usize, rng: &mut Rng) -> nets::Result<[Tensor; 3]> {
    let mut x = vec![0.0; n * 2];
    rng.fill_normal(&mut x, 0.0, 1.0);
    let mut y = vec![0.0; n];
    let mut w = vec![1.0; n];
    for i in 0..n {
        if rng.uniform() < MINORITY {
            y[i] = 1.0;
            w[i] = MINORITY_WEIGHT;
            x[2 * i] += 1.5;
            x[2 * i + 1] += 1.5;
        }
    }
    Ok([
        Tensor::new(&[n, 2], x)?,
        Tensor::vector(&y),
        Tensor::vector(&w),
    ])
}

/// Trains a 2-16-2 classifier, with the weights when `weighted`, and returns it.
fn trained(train: &[Tensor; 3], valid: &[Tensor; 3], weighted: bool) -> nets::Result<Classifier> {
    let net = Classifier::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::dense(16),
            LayerSpec::classifier(2),
        ],
        ModelOptions {
            weighted,
            ..Default::default()
        },
    )?;
    // A model built `weighted` reads `[x, y, w]`; the other one `[x, y]`.
    let arrays = |d: &[Tensor; 3]| d[..if weighted { 3 } else { 2 }].to_vec();
    let options = DatasetOptions {
        batch_size: 64,
        seed: 3,
        ..Default::default()
    };
    let mut train = Dataset::new("train", arrays(train), options.clone())?;
    let mut valid = Dataset::new("valid", arrays(valid), options)?;
    net.trainer(
        "adam",
        &[
            "learning_rate=0.01",
            "validate_every=2",
            "patience=5",
            "max_updates=60",
        ],
    )?
    .train(&mut train, Some(&mut valid))?;
    Ok(net)
}

/// Recall of class 1 from a confusion matrix.
fn minority_recall(confusion: &[Vec<usize>]) -> f32 {
    let found = confusion[1][1] as f32;
    found / (confusion[1][0] + confusion[1][1]).max(1) as f32
}

/// Trains the classifier without and with weights on the same data and compares them.
pub fn run(seed: u64) -> nets::Result<Summary> {
    let mut rng = Rng::new(seed);
    let train = samples(4000, &mut rng)?;
    let valid = samples(1000, &mut rng)?;
    let test = samples(4000, &mut rng)?;
    let plain = trained(&train, &valid, false)?;
    let weighted = trained(&train, &valid, true)?;
    let c0 = plain.confusion(&test[0], &test[1])?;
    let c1 = weighted.confusion(&test[0], &test[1])?;
    Ok(Summary {
        recall_unweighted: minority_recall(&c0),
        recall_weighted: minority_recall(&c1),
        accuracy_unweighted: plain.score(&test[0], &test[1], None)?,
        accuracy_weighted: weighted.score(&test[0], &test[1], None)?,
        confusion: [c0, c1],
    })
}

fn main() -> nets::Result<()> {
    let s = run(13)?;
    for (name, recall, acc, c) in [
        (
            "without weights",
            s.recall_unweighted,
            s.accuracy_unweighted,
            &s.confusion[0],
        ),
        (
            "with weights",
            s.recall_weighted,
            s.accuracy_weighted,
            &s.confusion[1],
        ),
    ] {
        println!("{name}: minority recall {recall:.3}, accuracy {acc:.3}, confusion {c:?}");
    }
    Ok(())
}
