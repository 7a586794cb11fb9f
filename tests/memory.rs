//! Training does not make the process grow from epoch to epoch (issue 13's memory target: no
//! growth from epoch 2 on). Once the first epoch has sized every buffer (the compiled plans for
//! both batch sizes, the optimizer state, the allocator's pools), the resident set must stay
//! flat. Measured with `VmRSS` (Linux only; elsewhere the test has nothing to read and passes).
//!
//! RSS moves by a few pages for reasons of its own, so the bound is tolerant; to show that it
//! still sees a real leak, the same run is repeated leaking a small buffer per step on purpose
//! and must then exceed it.

use nets::{Classifier, LayerSpec, ModelOptions};
use optim::{Algorithm, Dataset, DatasetOptions, LoopOptions, RuleOptions};
use tape::{Rng, Tensor};
use theanets_rs::memory::status;

const ROWS: usize = 1000;
const FEATURES: usize = 64;
const CLASSES: usize = 10;
const BATCH: usize = 32;
const EPOCHS: usize = 12;
/// The growth allowed from the end of epoch 2 to the end of the last one.
const TOLERANCE: u64 = 512 * 1024;
/// The deliberate leak: one batch of inputs' worth per step (8 KiB; 32 steps an epoch make
/// 256 KiB an epoch, 2.5 MiB over the ten epochs measured).
const LEAK_PER_STEP: usize = BATCH * FEATURES * 4;

/// A learnable synthetic task: labels are the argmax of a fixed random projection of the
/// inputs. `ROWS` is not a multiple of `BATCH`, so a short last batch (a second plan) is used.
fn data() -> (Tensor, Tensor) {
    let mut rng = Rng::new(7);
    let mut x = vec![0.0; ROWS * FEATURES];
    rng.fill_normal(&mut x, 0.0, 1.0);
    let mut w = vec![0.0; FEATURES * CLASSES];
    rng.fill_normal(&mut w, 0.0, 1.0);
    let y = x
        .chunks(FEATURES)
        .map(|row| {
            let score = |c: usize| -> f32 {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| v * w[i * CLASSES + c])
                    .sum()
            };
            (0..CLASSES)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap_or(0) as f32
        })
        .collect();
    (
        Tensor::new(&[ROWS, FEATURES], x).unwrap(),
        Tensor::new(&[ROWS], y).unwrap(),
    )
}

/// Trains a 64-128-128-10 classifier with Adam for `EPOCHS` epochs through `Dataset` and
/// `Trainer::step` (two GEMM threads), evaluating after each epoch, and returns `VmRSS` at the
/// end of each epoch. `leak` bytes are leaked (written, so resident) after every step.
fn rss_per_epoch(leak: usize) -> Vec<u64> {
    let net = Classifier::build(
        vec![
            LayerSpec::input(FEATURES),
            LayerSpec::dense(128),
            LayerSpec::dense(128),
            LayerSpec::classifier(CLASSES),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    let mut trainer = net
        .trainer_with(
            RuleOptions::new(Algorithm::Adam),
            LoopOptions::default(),
            &Default::default(),
        )
        .unwrap();
    let (x, y) = data();
    let options = DatasetOptions {
        batch_size: BATCH,
        ..Default::default()
    };
    let mut train = Dataset::new("train", vec![x.clone(), y.clone()], options.clone()).unwrap();
    let mut valid = Dataset::new("valid", vec![x, y], options).unwrap();
    let steps = train.num_batches().unwrap();
    let mut rss = Vec::new();
    for _ in 0..EPOCHS {
        for _ in 0..steps {
            let batch = train.next_batch().unwrap();
            trainer.step(&batch).unwrap();
            if leak > 0 {
                std::mem::forget(std::hint::black_box(vec![1u8; leak]));
            }
        }
        trainer.evaluate(&mut valid).unwrap();
        rss.push(status().unwrap().rss);
    }
    rss
}

/// Growth from the end of epoch 2 to the end of the last epoch, in bytes (negative: shrank).
fn growth(rss: &[u64]) -> i64 {
    rss[EPOCHS - 1] as i64 - rss[1] as i64
}

#[test]
fn resident_memory_does_not_grow_after_the_second_epoch() {
    if status().is_err() {
        // Not Linux: no /proc/self/status to read.
        return;
    }
    tape::kernels::set_num_threads(2);
    let clean = rss_per_epoch(0);
    eprintln!("clean run: RSS per epoch {clean:?}");
    assert!(
        growth(&clean) <= TOLERANCE as i64,
        "RSS grew by {} bytes from epoch 2 to {EPOCHS} (allowed {TOLERANCE}); per epoch: {clean:?}",
        growth(&clean)
    );
    // The same run leaking one small buffer per step must be caught by the same bound.
    let leaky = rss_per_epoch(LEAK_PER_STEP);
    eprintln!("leaky run: RSS per epoch {leaky:?}");
    assert!(
        growth(&leaky) > TOLERANCE as i64,
        "a leak of {LEAK_PER_STEP} bytes per step went unseen: growth {} bytes; per epoch: {leaky:?}",
        growth(&leaky)
    );
}
