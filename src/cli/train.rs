//! A training run: checks the output folder first, trains through an [`Experiment`] (resuming
//! from `--save-progress` when the snapshot exists), shows a progress bar per validation period
//! on a terminal's stderr and one line per validation on stdout, then evaluates on the test set
//! and writes `model.theanets`, `monitors.csv` and `curves.svg`.

use super::report::{self, Record};
use super::{context, fail, CliResult};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nets::experiment::{Data, SaveEvery, TrainOptions};
use nets::{Classifier, Experiment, Kind, LayerSpec, Model, ModelOptions, Network};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tape::Tensor;

/// Everything a training run needs.
pub struct Job {
    /// A one-line description printed first (data, sizes).
    pub title: String,
    /// The model kind.
    pub kind: Kind,
    /// Layer specs, input first.
    pub specs: Vec<LayerSpec>,
    /// Master seed.
    pub seed: u64,
    /// Update rule(s).
    pub algorithm: String,
    /// `key=value` training options and regularizers.
    pub settings: Vec<String>,
    /// Training arrays.
    pub train: Vec<Tensor>,
    /// Validation arrays.
    pub valid: Vec<Tensor>,
    /// Test arrays, if any.
    pub test: Option<Vec<Tensor>>,
    /// The output folder.
    pub out: PathBuf,
    /// Snapshot file and interval.
    pub progress: Option<(PathBuf, SaveEvery)>,
    /// Class names of string labels (empty for numbered classes), kept in the model file.
    pub classes: Vec<String>,
}

/// Creates the output folder if needed and checks that a file can be written in it, so that a
/// bad folder fails before training rather than after it.
pub fn prepare_out(dir: &Path) -> CliResult<()> {
    let what = || format!("output folder {}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| context(format!("{}: cannot create", what()), e))?;
    let probe = dir.join(format!(".theanets-rs-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| context(format!("{}: cannot write in it", what()), e))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// The model as the common [`Model`] trait, by its kind.
pub fn as_model(net: Network) -> Box<dyn Model> {
    match net.kind() {
        Kind::Classifier => Box::new(Classifier(net)),
        Kind::Regressor => Box::new(nets::Regressor(net)),
        Kind::Autoencoder => Box::new(nets::Autoencoder(net)),
    }
}

/// Patience bookkeeping as the trainer does it: a validation improves when the loss drops by
/// more than `min_improvement` relative to the best.
struct Patience {
    best: f32,
    best_iteration: usize,
    left: usize,
    patience: usize,
    min_improvement: f32,
}

impl Patience {
    fn observe(&mut self, loss: f32, iteration: usize) -> bool {
        let improved =
            !self.best.is_finite() || self.best - loss > self.min_improvement * self.best.abs();
        if improved {
            (self.best, self.best_iteration, self.left) = (loss, iteration, self.patience);
        } else {
            self.left = self.left.saturating_sub(1);
        }
        improved
    }
}

fn progress_bar(period: usize) -> ProgressBar {
    // Only a terminal gets the bar: pipes, files and tests see the plain lines alone.
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(period as u64), target);
    if let Ok(style) = ProgressStyle::with_template("  [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn acc(m: &optim::Monitors) -> String {
    m.get("acc")
        .map_or(String::new(), |a| format!(" acc {a:.3}"))
}

/// Runs the job, printing to `out`.
pub fn run(job: Job, out: &mut dyn Write) -> CliResult<()> {
    let start = Instant::now();
    prepare_out(&job.out)?;
    let first = job.algorithm.split_whitespace().next().unwrap_or("");
    let algorithm = first
        .parse()
        .map_err(|e| context(format!("algorithm `{}`", job.algorithm), Box::new(e)))?;
    let settings: Vec<&str> = job.settings.iter().map(String::as_str).collect();
    let options = TrainOptions::parse(algorithm, job.seed, &settings)?;
    let model_options = ModelOptions {
        seed: job.seed,
        classes: job.classes.clone(),
        ..Default::default()
    };
    let net = Network::new(job.kind, job.specs.clone(), model_options)?;
    writeln!(
        out,
        "{} ({} parameters), seed {}",
        job.title,
        net.num_params(),
        job.seed
    )?;
    writeln!(
        out,
        "training with {} {}",
        job.algorithm,
        job.settings.join(" ")
    )?;
    let mut exp = Experiment::new(net);
    if let Some((path, every)) = &job.progress {
        if path.exists() {
            writeln!(out, "resuming from snapshot {}", path.display())?;
        }
        exp = exp.save_progress(path, *every)?;
    }
    let records = train_loop(&mut exp, &job, &settings, &options, out)?;
    let model = as_model(exp.into_model());
    finish(model.as_ref(), &job, &records, out)?;
    writeln!(out, "\ndone in {:.1} s", start.elapsed().as_secs_f32())?;
    Ok(())
}

fn train_loop(
    exp: &mut Experiment<Network>,
    job: &Job,
    settings: &[&str],
    options: &TrainOptions,
    out: &mut dyn Write,
) -> CliResult<Vec<Record>> {
    let period = options.loop_options.validate_every.max(1);
    let mut patience = Patience {
        best: f32::INFINITY,
        best_iteration: 0,
        left: options.loop_options.patience,
        patience: options.loop_options.patience,
        min_improvement: options.loop_options.min_improvement,
    };
    let bar = progress_bar(period);
    let mut records = Vec::new();
    let mut last_valid: Option<optim::Monitors> = None;
    let mut it = exp.itertrain(
        Data::Arrays(job.train.clone()),
        Data::Arrays(job.valid.clone()),
        &job.algorithm,
        &settings.to_vec(),
    )?;
    while let Some(step) = it.next() {
        let (t, v) = step?;
        let iteration = it.iteration().unwrap_or(records.len() + 1);
        bar.set_position((iteration.saturating_sub(1) % period + 1) as u64);
        bar.set_message(format!("iteration {iteration} loss {:.4}", t.loss()));
        // A validation happened when the validation monitors changed.
        if last_valid.as_ref().is_none_or(|l| l.loss() != v.loss()) {
            let improved = patience.observe(v.loss(), iteration);
            let line = format!(
                "iteration {iteration:4}  train loss {:.4}{}  valid loss {:.4}{}  best {:.4} (it. {}){}  patience left {}",
                t.loss(),
                acc(&t),
                v.loss(),
                acc(&v),
                patience.best,
                patience.best_iteration,
                if improved { " *" } else { "  " },
                patience.left
            );
            bar.suspend(|| writeln!(out, "{line}"))?;
            last_valid = Some(v.clone());
        }
        records.push(Record {
            iteration,
            train: t,
            valid: v,
        });
    }
    bar.finish_and_clear();
    if let Some((_, v)) = it.best() {
        writeln!(
            out,
            "best validation: loss {:.4}{} (those parameters are kept)",
            v.loss(),
            acc(v)
        )?;
    }
    Ok(records)
}

/// Test metrics, confusion matrix and the output files.
fn finish(model: &dyn Model, job: &Job, records: &[Record], out: &mut dyn Write) -> CliResult<()> {
    if let Some(test) = &job.test {
        let rows = test[0].shape()[0];
        writeln!(out)?;
        print_metrics(model, test, &format!("test ({rows} rows)"), out)?;
    }
    let dir = &job.out;
    let model_path = dir.join("model.theanets");
    model.network().save(&model_path)?;
    report::write_monitors(&dir.join("monitors.csv"), records)?;
    report::write_curves(&dir.join("curves.svg"), records)?;
    writeln!(
        out,
        "\nwrote {}, {} and {}",
        model_path.display(),
        dir.join("monitors.csv").display(),
        dir.join("curves.svg").display()
    )?;
    Ok(())
}

/// Prints the model's metrics on `data` (and a classifier's confusion matrix).
pub fn print_metrics(
    model: &dyn Model,
    data: &[Tensor],
    what: &str,
    out: &mut dyn Write,
) -> CliResult<()> {
    for (name, value) in model.metrics(data)? {
        if name == "accuracy" {
            writeln!(out, "{what} accuracy {:.2}%", 100.0 * value)?;
        } else {
            writeln!(out, "{what} {name} {value:.4}")?;
        }
    }
    if model.network().kind() == Kind::Classifier {
        writeln!(out)?;
        report::print_confusion(out, &confusion(model, &data[0], &data[1])?)?;
    }
    Ok(())
}

/// Entry `[true][predicted]` counts rows (labels were checked by `metrics`).
fn confusion(model: &dyn Model, x: &Tensor, y: &Tensor) -> CliResult<Vec<Vec<usize>>> {
    let k = model.network().output_size();
    let predicted = model.predict(x)?;
    let mut m = vec![vec![0usize; k]; k];
    for (&t, &p) in y.data().iter().zip(predicted.data()) {
        let (t, p) = (t as usize, p as usize);
        if t >= k || p >= k {
            return Err(fail(format!(
                "label {t} or prediction {p} is not a class in 0..{k}"
            )));
        }
        m[t][p] += 1;
    }
    Ok(m)
}
