//! The subcommands: `train` (a CSV file or an MNIST directory), `eval`, `predict` and
//! `inspect` on a saved model, and the default digits run.

use super::args::{EvalArgs, InspectArgs, KindArg, PredictArgs, TrainArgs};
use super::data::{load, parse_layers};
use super::train::{self, as_model, print_metrics, Job};
use super::{context, fail, CliResult};
use nets::data::rows;
use nets::experiment::SaveEvery;
use nets::{Kind, LayerSpec, Network};
use std::io::Write;
use std::path::{Path, PathBuf};
use tape::Tensor;

/// The default recipe's layers, algorithm and settings (see the README for how it was chosen).
const DIGITS_HIDDEN: usize = 256;
const DIGITS_ALGORITHM: &str = "adam";
const DIGITS_SETTINGS: [&str; 6] = [
    "learning_rate=0.001",
    "hidden_dropout=0.4",
    "input_noise=0.05",
    "validate_every=5",
    "patience=8",
    "max_updates=400",
];

/// The default run: the digits classifier, 15% of the training rows (stratified) held out.
pub fn digits(seed: u64, out_dir: Option<PathBuf>, out: &mut dyn Write) -> CliResult<()> {
    let all = theanets_rs::digits::train();
    let test = theanets_rs::digits::test();
    let parts = rows::split(&[all.x, all.y], 0.15, Some(1), seed)?;
    let (n_train, n_valid) = (parts.first[0].shape()[0], parts.second[0].shape()[0]);
    let job = Job {
        title: format!(
            "digits: {n_train} training, {n_valid} validation, {} test rows; classifier 64-{DIGITS_HIDDEN}-10",
            test.y.len()
        ),
        kind: Kind::Classifier,
        specs: vec![
            LayerSpec::input(64),
            LayerSpec::dense(DIGITS_HIDDEN).activation("relu"),
            LayerSpec::classifier(10),
        ],
        seed,
        algorithm: DIGITS_ALGORITHM.into(),
        settings: DIGITS_SETTINGS.iter().map(|s| s.to_string()).collect(),
        train: parts.first,
        valid: parts.second,
        test: Some(vec![test.x, test.y]),
        out: out_dir.unwrap_or_else(|| PathBuf::from(format!("runs/digits-seed{seed}"))),
        classes: Vec::new(),
        progress: None,
    };
    train::run(job, out)
}

fn kind_of(k: KindArg) -> Kind {
    match k {
        KindArg::Classifier => Kind::Classifier,
        KindArg::Regressor => Kind::Regressor,
        KindArg::Autoencoder => Kind::Autoencoder,
    }
}

/// `train`.
pub fn train(args: TrainArgs, out: &mut dyn Write) -> CliResult<()> {
    let kind = kind_of(args.kind);
    let specs = parse_layers(&args.layers, kind)?;
    for pair in args.set.iter().chain(&args.settings) {
        if !pair.contains('=') {
            return Err(fail(format!("`{pair}` is not a key=value training option")));
        }
    }
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(fail("--threads must be at least 1"));
        }
        tape::kernels::set_num_threads(n);
    }
    let out_dir = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .data
            .data
            .file_stem()
            .map_or("data".into(), |s| s.to_string_lossy());
        PathBuf::from(format!("runs/{stem}-seed{}", args.seed))
    });
    // The output folder is checked before the (possibly long) data loading and training.
    train::prepare_out(&out_dir)?;
    let progress = match &args.save_progress {
        Some(p) => Some((p.clone(), SaveEvery::from_number(args.save_every)?)),
        None => None,
    };
    let data = load(&args.data, kind)?;
    let stratify = (kind == Kind::Classifier).then_some(1);
    let parts = rows::split(&data.arrays, args.valid_fraction, stratify, args.seed)?;
    let title = format!(
        "{}: {} training, {} validation rows; {:?} {}",
        args.data.data.display(),
        parts.first[0].shape()[0],
        parts.second[0].shape()[0],
        kind,
        args.layers
    );
    let job = Job {
        title,
        kind,
        specs,
        seed: args.seed,
        algorithm: args.algorithm,
        settings: args.set.into_iter().chain(args.settings).collect(),
        train: parts.first,
        valid: parts.second,
        test: data.test,
        out: out_dir,
        progress,
        classes: data.classes,
    };
    train::run(job, out)
}

fn load_model(path: &Path) -> CliResult<Network> {
    Ok(Network::load(path)?)
}

/// The arrays to evaluate or predict on (MNIST's test set, else the whole file), with string
/// labels numbered as the model's classes.
fn eval_arrays(mut data: super::data::Loaded, net: &Network) -> CliResult<Vec<Tensor>> {
    data.align_classes(&net.options().classes)?;
    Ok(data.test.unwrap_or(data.arrays))
}

/// `eval`.
pub fn eval(args: EvalArgs, out: &mut dyn Write) -> CliResult<()> {
    let net = load_model(&args.model)?;
    let kind = net.kind();
    let arrays = eval_arrays(load(&args.data, kind)?, &net)?;
    let rows = arrays[0].shape()[0];
    let model = as_model(net);
    let what = format!("{} ({rows} rows)", args.data.data.display());
    print_metrics(model.as_ref(), &arrays, &what, out).map_err(|e| {
        context(
            format!(
                "evaluating {} on {}",
                args.model.display(),
                args.data.data.display()
            ),
            e,
        )
    })
}

/// `predict`: one CSV row per data row; `label` for a classifier, `y0, y1, …` otherwise.
pub fn predict(args: PredictArgs, out: &mut dyn Write) -> CliResult<()> {
    let net = load_model(&args.model)?;
    let kind = net.kind();
    // Target columns, if named, are read as such and left out of the features.
    let load_kind = if args.data.target.is_empty() {
        Kind::Autoencoder
    } else {
        kind.min_targets()
    };
    let arrays = eval_arrays(load(&args.data, load_kind)?, &net)?;
    let classes = net.options().classes.clone();
    let model = as_model(net);
    let y = model.predict(&arrays[0])?;
    let cols = if y.rank() == 1 { 1 } else { y.shape()[1] };
    let mut text = if kind == Kind::Classifier {
        String::from("label\n")
    } else {
        (0..cols)
            .map(|c| format!("y{c}"))
            .collect::<Vec<_>>()
            .join(",")
            + "\n"
    };
    for row in y.data().chunks(cols) {
        // A classifier trained on named classes writes the names.
        let fields: Vec<String> = row
            .iter()
            .map(|v| match classes.get(*v as usize) {
                Some(name) if kind == Kind::Classifier => name.clone(),
                _ => v.to_string(),
            })
            .collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    match &args.output {
        Some(path) => {
            nets::file::write_atomic(path, text.as_bytes())?;
            writeln!(
                out,
                "wrote {} predictions to {}",
                y.shape()[0],
                path.display()
            )?;
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// The kind to read a data file's named target columns as, for a model of this kind.
trait TargetsKind {
    fn min_targets(self) -> Kind;
}

impl TargetsKind for Kind {
    fn min_targets(self) -> Kind {
        match self {
            Kind::Classifier => Kind::Classifier,
            _ => Kind::Regressor,
        }
    }
}

/// `inspect`.
pub fn inspect(args: InspectArgs, out: &mut dyn Write) -> CliResult<()> {
    let net = load_model(&args.model)?;
    writeln!(out, "{}: {:?}", args.model.display(), net.kind())?;
    writeln!(out, "\nlayers")?;
    for layer in net.layers() {
        writeln!(out, "  {}", layer.describe())?;
        for p in layer.params() {
            let shape = p.shape();
            let count: usize = shape.iter().product();
            writeln!(out, "    {:<20} {:?} {count}", p.name(), shape.as_slice())?;
        }
    }
    writeln!(out, "\nparameters {}", net.num_params())?;
    let o = net.options();
    writeln!(out, "\noptions")?;
    writeln!(out, "  seed {}", o.seed)?;
    let losses: Vec<String> = net
        .losses()
        .iter()
        .map(|l| format!("{:?} (weight {})", l.kind, l.weight))
        .collect();
    writeln!(out, "  losses {}", losses.join(", "))?;
    writeln!(out, "  weighted {}", o.weighted)?;
    if !o.monitors.is_empty() {
        writeln!(out, "  monitors {:?}", o.monitors)?;
    }
    if !o.classes.is_empty() {
        writeln!(out, "  classes {}", o.classes.join(", "))?;
    }
    Ok(())
}
