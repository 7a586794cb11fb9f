//! The command-line tool's main job: trains a classifier (64-256-10, ReLU hidden layer with
//! dropout, Gaussian noise on the input, softmax output) on the embedded digits data with Adam
//! and early stopping on a stratified validation split, printing one line per validation, then
//! the test accuracy and the confusion matrix. `--seed N` changes the master seed (default 13).

use nets::data::rows;
use nets::{Classifier, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use std::io::Write;
use std::time::Instant;
use theanets_rs::digits;

/// The default recipe: layers, algorithm and settings (see the README for how it was chosen).
const HIDDEN: usize = 256;
const ALGORITHM: &str = "adam";
const SETTINGS: [&str; 6] = [
    "learning_rate=0.001",
    "hidden_dropout=0.4",
    "input_noise=0.05",
    "validate_every=5",
    "patience=8",
    "max_updates=400",
];

fn seed_from_args() -> Result<u64, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(13),
        [flag, n] if flag == "--seed" => n
            .parse()
            .map_err(|_| format!("--seed takes a whole number, got `{n}`")),
        _ => Err(format!(
            "usage: theanets-rs [--seed N]   (got `{}`)",
            args.join(" ")
        )),
    }
}

fn main() {
    if let Err(e) = run() {
        // Output piped into a program that stopped reading (`| head`) is not an error.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return;
            }
        }
        eprintln!("error: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            eprintln!("  caused by: {c}");
            cause = c.source();
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    let seed = seed_from_args()?;
    let all = digits::train();
    let test = digits::test();
    // 15% of the training rows, the same share of each class, are held out for early stopping.
    let parts = rows::split(&[all.x, all.y], 0.15, Some(1), seed)?;
    let (n_train, n_valid) = (parts.first[0].shape()[0], parts.second[0].shape()[0]);
    let options = DatasetOptions {
        batch_size: 32,
        seed,
        ..Default::default()
    };
    let mut train = Dataset::new("train", parts.first, options.clone())?;
    let mut valid = Dataset::new("valid", parts.second, options)?;

    let specs = vec![
        LayerSpec::input(64),
        LayerSpec::dense(HIDDEN).activation("relu"),
        LayerSpec::classifier(10),
    ];
    let net = Classifier::build(
        specs,
        ModelOptions {
            seed,
            ..Default::default()
        },
    )?;
    writeln!(
        out,
        "digits: {n_train} training, {n_valid} validation, {} test rows; classifier 64-{HIDDEN}-10 ({} parameters), seed {seed}",
        test.y.len(),
        net.num_params()
    )?;
    writeln!(out, "training with {ALGORITHM} {}", SETTINGS.join(" "))?;
    let mut trainer = net.trainer(ALGORITHM, &SETTINGS)?;
    let mut best = f32::INFINITY;
    let mut last_valid = f32::NAN;
    for (i, step) in trainer.iterate(&mut train, Some(&mut valid)).enumerate() {
        let (t, v) = step?;
        if i % 5 == 0 || v.loss() != last_valid {
            let improved = v.loss() < best;
            best = best.min(v.loss());
            writeln!(
                out,
                "iteration {:4}  train loss {:.4} acc {:.3}  valid loss {:.4} acc {:.3}{}",
                i + 1,
                t.loss(),
                t.get("acc").unwrap_or(f32::NAN),
                v.loss(),
                v.get("acc").unwrap_or(f32::NAN),
                if improved { "  *" } else { "" }
            )?;
            last_valid = v.loss();
        }
    }
    if let Some(b) = trainer.best() {
        writeln!(
            out,
            "best validation after iteration {}: loss {:.4} acc {:.3} (those parameters are kept)",
            b.iteration,
            b.valid.loss(),
            b.valid.get("acc").unwrap_or(f32::NAN)
        )?;
    }
    let accuracy = net.score(&test.x, &test.y, None)?;
    writeln!(
        out,
        "\ntest accuracy {:.2}% ({} rows)",
        100.0 * accuracy,
        test.y.len()
    )?;
    writeln!(
        out,
        "\nconfusion matrix (rows: true class, columns: predicted)"
    )?;
    write!(out, "     ")?;
    for c in 0..10 {
        write!(out, "{c:>4}")?;
    }
    writeln!(out)?;
    for (t, row) in net.confusion(&test.x, &test.y)?.iter().enumerate() {
        write!(out, "{t:>4} ")?;
        for v in row {
            write!(out, "{v:>4}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "\ndone in {:.1} s", start.elapsed().as_secs_f32())?;
    Ok(())
}
