//! The command line, declared with `clap`'s derive API: the default digits run and the four
//! subcommands with their `--help` texts.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Train, evaluate, predict with and inspect feedforward networks (theanets in Rust).
///
/// Without a subcommand it trains the default digits classifier (64-256-10, Adam, dropout and
/// input noise, early stopping), prints the test accuracy and the confusion matrix, and writes
/// the model, a CSV of the monitors and an SVG of the training curves to an output folder.
#[derive(Parser, Debug)]
#[command(name = "theanets-rs", version, about, long_about)]
pub struct Cli {
    /// What to do (default: the digits demo).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Master seed of the digits demo (split, initialisation, batches, dropout and noise).
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
    /// Output folder of the digits demo (default `runs/digits-seed<SEED>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model on a CSV file or an MNIST directory and write model, monitors and curves.
    Train(TrainArgs),
    /// Evaluate a saved model on a data set (accuracy, loss and confusion matrix for
    /// classifiers; R², MSE, MAE and loss otherwise).
    Eval(EvalArgs),
    /// Write a saved model's predictions for a data set as CSV.
    Predict(PredictArgs),
    /// Show a model file's kind, layers, parameter shapes and counts, and stored options.
    Inspect(InspectArgs),
}

/// What the model learns.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// Class labels (softmax output, cross-entropy).
    Classifier,
    /// Real-valued targets (linear output, mean squared error).
    Regressor,
    /// Reconstructs its input (no target column).
    Autoencoder,
}

/// Whether a CSV file's first line is a header.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderArg {
    /// A header if the first line has a field that is not a number.
    Auto,
    /// The first line is a header.
    Yes,
    /// Every line is data.
    No,
}

/// How a data set is read.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// A CSV file, or a directory holding MNIST's four IDX files (gzipped or not).
    #[arg(value_name = "DATA")]
    pub data: PathBuf,
    /// The target column of a CSV file, by header name or 0-based index: the class label of a
    /// classifier, or a target value of a regressor (repeat for several).
    #[arg(long, short = 't', value_name = "COLUMN")]
    pub target: Vec<String>,
    /// Whether the CSV file's first line is a header.
    #[arg(long, value_enum, default_value_t = HeaderArg::Auto)]
    pub header: HeaderArg,
    /// The CSV field separator.
    #[arg(long, default_value_t = ',')]
    pub delimiter: char,
}

/// `train`'s arguments.
#[derive(Args, Debug)]
#[command(
    after_help = "Options go to the trainer as key=value, either with --set or after \
the other arguments: learning_rate=0.001 patience=8 max_updates=400 batch_size=32; \
regularizers the same way: weight_l2=1e-4 hidden_dropout=0.4 input_noise=0.05.\n\n\
Example: theanets-rs train iris.csv --target species --layers 4,16:relu,3 \
--algorithm adam learning_rate=0.01 --out runs/iris"
)]
pub struct TrainArgs {
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// Layer sizes, input first, each with an optional activation: `784,512:relu,512:relu,10`.
    #[arg(long, short = 'l', value_name = "SIZES")]
    pub layers: String,
    /// The kind of model.
    #[arg(long, short = 'k', value_enum, default_value_t = KindArg::Classifier)]
    pub kind: KindArg,
    /// The update rule (sgd, nag, rmsprop, adadelta, adam, esgd, rprop, …), or several
    /// separated by spaces, run in turn.
    #[arg(long, short = 'a', default_value = "adam")]
    pub algorithm: String,
    /// A training option or regularizer as key=value (repeatable).
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// More training options as key=value.
    #[arg(value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// The share of the rows held out for validation (stratified by class for classifiers).
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f32,
    /// Master seed (split, initialisation, batches, dropout and noise).
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
    /// Snapshot file: written during training, and resumed from if it exists.
    #[arg(long, value_name = "FILE")]
    pub save_progress: Option<PathBuf>,
    /// Snapshot every N iterations (a negative number: every -N minutes).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub save_every: f64,
    /// Threads for the matrix products (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Output folder for model, monitors and curves (default `runs/<data>-seed<SEED>`).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `eval`'s arguments.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model file written by `train`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The data (an MNIST directory is evaluated on its test set).
    #[command(flatten)]
    pub data: DataArgs,
}

/// `predict`'s arguments.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model file written by `train`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The data; `--target` columns, if named, are left out of the features (an MNIST
    /// directory is predicted on its test set).
    #[command(flatten)]
    pub data: DataArgs,
    /// The CSV file to write (default: standard output).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `inspect`'s arguments.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A model file written by `train`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
}
