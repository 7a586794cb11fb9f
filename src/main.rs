//! The command-line tool's main job: trains a classifier (64-100-10, ReLU hidden layer, softmax
//! output) on the embedded digits data with the `optim` loop, printing one line per validation,
//! then the test accuracy and the confusion matrix.

use nets::{Classifier, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use std::time::Instant;
use theanets_rs::digits;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let seed = 13;
    let train_all = digits::train();
    let test = digits::test();
    // The last 237 training rows are held out for validation (early stopping).
    let split = 1200;
    let n = train_all.y.len();
    let options = DatasetOptions {
        batch_size: 32,
        seed,
        ..Default::default()
    };
    let mut train = Dataset::new(
        "train",
        vec![train_all.x.rows(0, split)?, train_all.y.rows(0, split)?],
        options.clone(),
    )?;
    let mut valid = Dataset::new(
        "valid",
        vec![train_all.x.rows(split, n)?, train_all.y.rows(split, n)?],
        options,
    )?;

    let specs = vec![
        LayerSpec::input(64),
        LayerSpec::dense(100).activation("relu"),
        LayerSpec::classifier(10),
    ];
    let net = Classifier::build(
        specs,
        ModelOptions {
            seed,
            ..Default::default()
        },
    )?;
    println!(
        "digits: {split} training, {} validation, {} test rows; classifier 64-100-10 ({} parameters), seed {seed}",
        n - split,
        test.y.len(),
        net.num_params()
    );
    let algorithm = "nag";
    let settings = [
        "learning_rate=0.01",
        "momentum=0.9",
        "validate_every=5",
        "patience=6",
        "max_updates=300",
    ];
    println!("training with {algorithm} {}", settings.join(" "));
    let mut trainer = net.trainer(algorithm, &settings)?;
    let mut best = f32::INFINITY;
    let mut last_valid = f32::NAN;
    for (i, step) in trainer.iterate(&mut train, Some(&mut valid)).enumerate() {
        let (t, v) = step?;
        if i % 5 == 0 || v.loss() != last_valid {
            let improved = v.loss() < best;
            best = best.min(v.loss());
            println!(
                "iteration {:4}  train loss {:.4} acc {:.3}  valid loss {:.4} acc {:.3}{}",
                i + 1,
                t.loss(),
                t.get("acc").unwrap_or(f32::NAN),
                v.loss(),
                v.get("acc").unwrap_or(f32::NAN),
                if improved { "  *" } else { "" }
            );
            last_valid = v.loss();
        }
    }
    let accuracy = net.score(&test.x, &test.y, None)?;
    println!(
        "\ntest accuracy {:.2}% ({} rows)",
        100.0 * accuracy,
        test.y.len()
    );
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    print!("     ");
    for c in 0..10 {
        print!("{c:>4}");
    }
    println!();
    for (t, row) in net.confusion(&test.x, &test.y)?.iter().enumerate() {
        print!("{t:>4} ");
        for v in row {
            print!("{v:>4}");
        }
        println!();
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f32());
    Ok(())
}
