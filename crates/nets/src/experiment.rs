//! [`Experiment`]: a model and its training state, trained by repeated calls that each continue
//! from the current parameters, with automatic, resumable snapshots (theanets' `Experiment`).
//!
//! ```
//! use nets::experiment::{Experiment, SaveEvery};
//! use nets::Regressor;
//! use tape::Tensor;
//!
//! let x = Tensor::new(&[8, 2], (0..16).map(|i| i as f32 / 16.0).collect())?;
//! let y = Tensor::new(&[8, 1], (0..8).map(|i| i as f32 / 8.0).collect())?;
//! let mut exp = Experiment::new(Regressor::new(&[2, 3, 1])?);
//! // Options as theanets' keyword arguments, or typed (see `TrainOptions`).
//! let (train, valid) = exp.train(
//!     vec![x.clone(), y.clone()],
//!     Data::None,
//!     "nag",
//!     &["learning_rate=0.01", "momentum=0.9", "max_updates=5", "batch_size=4"],
//! )?;
//! assert!(train.loss().is_finite() && valid.loss().is_finite());
//! // Each call continues from the current parameters; "sgd nag" runs both, in turn.
//! for step in exp.itertrain(vec![x, y], Data::None, "sgd nag", &["max_updates=2"])? {
//!     let (train, valid) = step?;
//!     assert!(train.get("err").is_some() && valid.get("loss").is_some());
//! }
//! # use nets::experiment::Data;
//! # Ok::<(), nets::Error>(())
//! ```

use crate::error::{config, unknown_key, Error, Result};
use crate::file::{file_error, Registry};
use crate::network::{Autoencoder, Classifier, Kind, Network, Regressor};
use crate::regularizers::Regularizers;
use crate::snapshot::{read_snapshot, write_snapshot, RunState};
use optim::{Algorithm, Dataset, DatasetOptions, LoopOptions, Monitors, RuleOptions, Trainer};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tape::Tensor;

/// A model an [`Experiment`] can own: one of the three kinds (feedforward or
/// [recurrent](crate::recurrent)), or a bare [`Network`]. (Generic code that predicts and
/// scores any kind uses [`crate::Model`] instead.)
pub trait Owned: Sized {
    /// The network inside.
    fn network(&self) -> &Network;
    /// The kind a snapshot must hold to become this model (`None`: any).
    fn expected_kind() -> Option<Kind>;
    /// Whether a snapshot must hold a recurrent model (`Some(true)`), a feedforward one
    /// (`Some(false)`), or either (`None`, the default).
    fn expects_recurrent() -> Option<bool> {
        None
    }
    /// Wraps a network of [`Owned::expected_kind`].
    fn wrap(net: Network) -> Self;
}

impl Owned for Network {
    fn network(&self) -> &Network {
        self
    }
    fn expected_kind() -> Option<Kind> {
        None
    }
    fn wrap(net: Network) -> Self {
        net
    }
}

macro_rules! model_kind {
    ($name:ident, $kind:expr) => {
        impl Owned for $name {
            fn network(&self) -> &Network {
                &self.0
            }
            fn expected_kind() -> Option<Kind> {
                Some($kind)
            }
            fn expects_recurrent() -> Option<bool> {
                Some(false)
            }
            fn wrap(net: Network) -> Self {
                $name(net)
            }
        }
    };
}

model_kind!(Regressor, Kind::Regressor);
model_kind!(Classifier, Kind::Classifier);
model_kind!(Autoencoder, Kind::Autoencoder);

/// Training or validation data for one call: arrays in training order (`[x, y]`, `[x, labels]`,
/// `[x]` for an autoencoder, a weights array last for weighted models), cut into batches by the
/// call's `batch_size` and `iteration_size`; or a ready [`Dataset`] (arrays with options of its
/// own, or a batch-making function from [`Dataset::from_fn`]).
pub enum Data {
    /// Arrays in training order.
    Arrays(Vec<Tensor>),
    /// A dataset used as it is.
    Dataset(Box<Dataset>),
    /// No data: as the validation set, validate on the training set (as theanets does).
    None,
}

impl From<Vec<Tensor>> for Data {
    fn from(arrays: Vec<Tensor>) -> Data {
        Data::Arrays(arrays)
    }
}

impl From<&[Tensor]> for Data {
    fn from(arrays: &[Tensor]) -> Data {
        Data::Arrays(arrays.to_vec())
    }
}

impl From<&Vec<Tensor>> for Data {
    fn from(arrays: &Vec<Tensor>) -> Data {
        Data::Arrays(arrays.clone())
    }
}

impl From<Dataset> for Data {
    fn from(d: Dataset) -> Data {
        Data::Dataset(Box::new(d))
    }
}

/// How often an experiment writes its snapshot: every so many iterations, or once so much time
/// has passed since the last one (checked after each iteration).
///
/// From text, the guide's convention: a positive whole number counts iterations, a negative
/// number is minutes. Iterations are counted from 1 within each algorithm's run, so
/// `Iterations(3)` saves after the 3rd, 6th, … iteration (theanets tested the 0-based index, one
/// iteration later).
///
/// ```
/// use nets::experiment::SaveEvery;
/// use std::time::Duration;
/// assert_eq!("10".parse::<SaveEvery>()?, SaveEvery::Iterations(10));
/// assert_eq!("-1.5".parse::<SaveEvery>()?, SaveEvery::Time(Duration::from_secs(90)));
/// assert!("0".parse::<SaveEvery>().is_err());
/// # Ok::<(), nets::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SaveEvery {
    /// After every this many iterations of a run (iteration counts that are multiples of it).
    Iterations(usize),
    /// After the first iteration that ends at least this long after the last snapshot (or the
    /// start of the call).
    Time(Duration),
}

impl From<Duration> for SaveEvery {
    fn from(d: Duration) -> SaveEvery {
        SaveEvery::Time(d)
    }
}

impl SaveEvery {
    /// The guide's number convention: `n > 0` iterations (a whole number), `n < 0` minutes.
    pub fn from_number(n: f64) -> Result<SaveEvery> {
        let bad = |why: &str| config(format!("save_every {n}"), why.to_string());
        if !n.is_finite() || n == 0.0 {
            return Err(bad(
                "expected a positive whole number of iterations or a negative number of minutes",
            ));
        }
        if n > 0.0 {
            if n.fract() != 0.0 || n > usize::MAX as f64 {
                return Err(bad("a positive value counts iterations, so must be whole"));
            }
            return Ok(SaveEvery::Iterations(n as usize));
        }
        Duration::try_from_secs_f64(-n * 60.0)
            .map(SaveEvery::Time)
            .map_err(|_| bad("is too many minutes"))
    }

    fn due(self, iteration: usize, since: Instant) -> bool {
        match self {
            SaveEvery::Iterations(k) => iteration > 0 && iteration.is_multiple_of(k),
            SaveEvery::Time(d) => since.elapsed() >= d,
        }
    }
}

impl FromStr for SaveEvery {
    type Err = Error;
    fn from_str(s: &str) -> Result<SaveEvery> {
        let n: f64 = s.trim().parse().map_err(|_| {
            config(
                format!("save_every `{s}`"),
                "is not a number (positive: iterations, negative: minutes)",
            )
        })?;
        SaveEvery::from_number(n)
    }
}

/// Every option of one training call, typed. Text options (`key=value`) become one of these;
/// see [`Settings`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// The update rule's options. Its `algorithm` is replaced by each algorithm the call names;
    /// when that differs from the one given here, `nesterov` becomes that algorithm's default.
    pub rule: RuleOptions,
    /// Validation, patience, `max_updates` and the loop's seed.
    pub loop_options: LoopOptions,
    /// Regularizers: decay, sparsity, noise and dropout.
    pub regularizers: Regularizers,
    /// Rows per batch for array data (default 32; 0 means all rows in one batch).
    pub batch_size: usize,
    /// Batches per iteration for array data (default one pass).
    pub iteration_size: Option<usize>,
    /// Shuffle the order of array data's batches every pass (default true). A model with
    /// stateful recurrent layers trains on consecutive chunks and needs `false` (text
    /// `shuffle_batches=false`); see [`crate::recurrent`].
    pub shuffle_batches: bool,
    /// Where to write snapshots during this call (overrides [`Experiment::save_progress`]'s
    /// file; every iteration unless `save_every` says otherwise). Only
    /// [`Experiment::save_progress`] resumes from an existing file.
    pub save_progress: Option<PathBuf>,
    /// How often (overrides [`Experiment::save_progress`]'s interval).
    pub save_every: Option<SaveEvery>,
}

impl TrainOptions {
    /// Defaults for `algorithm`: downhill's rule defaults, the loop's defaults with the given
    /// `seed`, no regularizers, batches of 32.
    pub fn new(algorithm: Algorithm, seed: u64) -> TrainOptions {
        TrainOptions {
            rule: RuleOptions::new(algorithm),
            loop_options: LoopOptions {
                seed,
                ..Default::default()
            },
            regularizers: Regularizers::default(),
            batch_size: 32,
            iteration_size: None,
            shuffle_batches: true,
            save_progress: None,
            save_every: None,
        }
    }

    /// Every key text options accept: the rule's, the loop's, the regularizers' and the call's
    /// own (`batch_size`, `iteration_size`, `shuffle_batches`, `save_progress`, `save_every`).
    pub fn keys() -> Vec<&'static str> {
        RuleOptions::keys()
            .chain(LoopOptions::keys())
            .chain(Regularizers::KEYS.iter().copied())
            .chain(CALL_KEYS.iter().copied())
            .collect()
    }

    /// Options for `algorithm` from `key=value` pairs, starting from [`TrainOptions::new`].
    /// An unknown key is an [`Error::Config`] naming the closest valid one.
    pub fn parse(algorithm: Algorithm, seed: u64, pairs: &[&str]) -> Result<TrainOptions> {
        let mut o = TrainOptions::new(algorithm, seed);
        for pair in pairs {
            let (k, v) = optim::options::split_pair(pair)?;
            o.set(k, v)?;
        }
        Ok(o)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let whole = |v: &str| -> Result<usize> {
            v.parse().map_err(|_| {
                config(
                    format!("option `{key}`"),
                    format!("`{v}` is not a whole number"),
                )
            })
        };
        match key {
            "batch_size" => self.batch_size = whole(value)?,
            "iteration_size" => {
                self.iteration_size = match value.to_ascii_lowercase().as_str() {
                    "none" => None,
                    v => Some(whole(v)?),
                }
            }
            "shuffle_batches" => {
                self.shuffle_batches = match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    v => {
                        return Err(config(
                            "option `shuffle_batches`",
                            format!("`{v}` is not true or false"),
                        ))
                    }
                }
            }
            "save_progress" => self.save_progress = Some(PathBuf::from(value)),
            "save_every" => self.save_every = Some(value.parse()?),
            k if Regularizers::KEYS.contains(&k) => self.regularizers.set(k, value)?,
            k if RuleOptions::keys().any(|r| r == k) => self.rule.set(k, value)?,
            k if LoopOptions::keys().any(|r| r == k) => self.loop_options.set(k, value)?,
            k => return Err(unknown_key(k, &TrainOptions::keys())),
        }
        Ok(())
    }

    /// These options with the rule set to `algorithm`.
    fn for_algorithm(&self, algorithm: Algorithm) -> TrainOptions {
        let mut o = self.clone();
        if o.rule.algorithm != algorithm {
            o.rule.algorithm = algorithm;
            o.rule.nesterov = RuleOptions::new(algorithm).nesterov;
        }
        o
    }
}

/// The keys a training call reads itself rather than passing on.
const CALL_KEYS: [&str; 5] = [
    "batch_size",
    "iteration_size",
    "shuffle_batches",
    "save_progress",
    "save_every",
];

/// Options for a training call, given either as `key=value` text (`&["learning_rate=0.01"]`,
/// theanets' keyword arguments) or typed ([`TrainOptions`]).
pub trait Settings {
    /// The options for one algorithm of the call; `seed` is the model's, the default seed of
    /// text options.
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions>;

    /// The options as `key=value` text, if they were given that way (the network-aware trainers
    /// take them so; typed options give `None`).
    fn text(&self) -> Option<Vec<String>> {
        None
    }
}

impl Settings for [&str] {
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions> {
        TrainOptions::parse(algorithm, seed, self)
    }
    fn text(&self) -> Option<Vec<String>> {
        Some(self.iter().map(|s| s.to_string()).collect())
    }
}

impl<const N: usize> Settings for [&str; N] {
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions> {
        TrainOptions::parse(algorithm, seed, self)
    }
    fn text(&self) -> Option<Vec<String>> {
        Some(self.iter().map(|s| s.to_string()).collect())
    }
}

impl Settings for Vec<&str> {
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions> {
        TrainOptions::parse(algorithm, seed, self)
    }
    fn text(&self) -> Option<Vec<String>> {
        Some(self.iter().map(|s| s.to_string()).collect())
    }
}

impl Settings for [String] {
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions> {
        let pairs: Vec<&str> = self.iter().map(String::as_str).collect();
        TrainOptions::parse(algorithm, seed, &pairs)
    }
    fn text(&self) -> Option<Vec<String>> {
        Some(self.to_vec())
    }
}

impl Settings for Vec<String> {
    fn resolve(&self, algorithm: Algorithm, seed: u64) -> Result<TrainOptions> {
        self.as_slice().resolve(algorithm, seed)
    }
    fn text(&self) -> Option<Vec<String>> {
        Some(self.clone())
    }
}

impl Settings for TrainOptions {
    fn resolve(&self, algorithm: Algorithm, _seed: u64) -> Result<TrainOptions> {
        Ok(self.for_algorithm(algorithm))
    }
}

/// One algorithm of a training call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// An update rule run by the early-stopping loop.
    Rule(Algorithm),
}

/// A network-aware trainer named in a call, with the update rule its stages run.
#[derive(Clone, Debug, PartialEq)]
enum Aware {
    Sample,
    Layerwise(String),
    Pretrain(String),
}

/// The network-aware trainer a name stands for, if any: `sample`, `layer*` / `sup*`,
/// `pre*` / `unsup*`, optionally with the stages' rule after a colon (`layerwise:nag`; default
/// RMSProp, as theanets).
fn aware(name: &str) -> Option<Aware> {
    let lower = name.to_ascii_lowercase();
    let (head, rule) = match lower.split_once(':') {
        Some((h, r)) => (h.to_string(), r.to_string()),
        None => (
            lower.clone(),
            crate::trainers::DEFAULT_ALGORITHM.to_string(),
        ),
    };
    match head.as_str() {
        "sample" => Some(Aware::Sample),
        n if n.starts_with("layer") || n.starts_with("sup") => Some(Aware::Layerwise(rule)),
        n if n.starts_with("pre") || n.starts_with("unsup") => Some(Aware::Pretrain(rule)),
        _ => None,
    }
}

/// The stage an algorithm name stands for: an update rule run by the early-stopping loop. The
/// network-aware trainers are run by [`Experiment::train`] on their own and cannot be part of a
/// sequence or an iteration.
fn stage(name: &str) -> Result<Stage> {
    if aware(name).is_some() {
        return Err(config(
            format!("algorithm `{name}`"),
            "the network-aware trainers (sample, layerwise, pretrain) run stage by stage: give \
             one alone to Experiment::train (not in a sequence, not to itertrain)",
        ));
    }
    Ok(Stage::Rule(name.parse::<Algorithm>()?))
}

/// The run state read from a snapshot, waiting for the call that continues it.
struct Pending {
    path: PathBuf,
    run: RunState,
}

/// A model and its training state: repeated [`train`](Experiment::train) calls continue from the
/// current parameters, and with [`save_progress`](Experiment::save_progress) the run is
/// snapshotted and resumes after a crash.
pub struct Experiment<M: Owned> {
    model: M,
    registry: Registry,
    progress: Option<(PathBuf, SaveEvery)>,
    pending: Option<Pending>,
}

impl<M: Owned> Experiment<M> {
    /// An experiment training `model`.
    pub fn new(model: M) -> Experiment<M> {
        Experiment {
            model,
            registry: Registry::new(),
            progress: None,
            pending: None,
        }
    }

    /// The constructors of the model's custom layers, needed to resume from a snapshot of a
    /// model that has some. Call before [`Experiment::save_progress`].
    pub fn with_registry(mut self, registry: Registry) -> Experiment<M> {
        self.registry = registry;
        self
    }

    /// Snapshots training to `path` every `every` (iterations, or a time: see [`SaveEvery`]).
    /// If `path` exists, the experiment resumes from it: its model replaces this one, and the
    /// next training call naming the same algorithms continues the interrupted run exactly where
    /// the snapshot was taken (another call starts afresh from the snapshot's parameters).
    ///
    /// Errors: an unreadable or damaged snapshot, one of another kind of model, or a custom
    /// layer missing from [`Experiment::with_registry`] (all [`Error::File`] naming the file).
    pub fn save_progress(
        mut self,
        path: impl AsRef<Path>,
        every: impl Into<SaveEvery>,
    ) -> Result<Experiment<M>> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            let (net, run) = read_snapshot(&path, &self.registry, M::expected_kind())?;
            if let Some(want) = M::expects_recurrent() {
                if net.sequence.is_some() != want {
                    let (found, wanted) = match want {
                        true => ("feedforward", "recurrent"),
                        false => ("recurrent", "feedforward"),
                    };
                    return Err(crate::file::file_error(
                        &path,
                        format!("holds a {found} model, but this experiment trains a {wanted} one"),
                    ));
                }
            }
            self.model = M::wrap(net);
            self.pending = run.map(|run| Pending {
                path: path.clone(),
                run,
            });
        }
        self.progress = Some((path, every.into()));
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The network inside the model.
    pub fn network(&self) -> &Network {
        self.model.network()
    }

    /// The model, ending the experiment.
    pub fn into_model(self) -> M {
        self.model
    }

    /// Writes a snapshot of the model now (with the state of an interrupted run, if one read
    /// from a snapshot is still waiting to be continued). Refused, leaving the file as it was,
    /// if a parameter is not finite.
    pub fn save_snapshot(&self, path: impl AsRef<Path>) -> Result<()> {
        let run = self.pending.as_ref().map(|p| &p.run);
        write_snapshot(path.as_ref(), self.network(), run)
    }

    /// Trains until every algorithm of the call has ended and returns the `(train, valid)`
    /// monitors of the last algorithm's best validation (whose parameters are then the model's).
    /// See [`Experiment::itertrain`] for the arguments.
    pub fn train<S: Settings + ?Sized>(
        &mut self,
        train: impl Into<Data>,
        valid: impl Into<Data>,
        algorithm: &str,
        options: &S,
    ) -> Result<(Monitors, Monitors)> {
        if let Some(trainer) = aware(algorithm.trim()) {
            return self.train_aware(trainer, train.into(), valid.into(), algorithm, options);
        }
        let mut it = self.itertrain(train, valid, algorithm, options)?;
        for step in &mut it {
            step?;
        }
        Ok(it.best.take().unwrap_or_default())
    }

    /// Training as an iterator of `(train, valid)` monitors, one item per iteration: `loss`,
    /// `err`, `acc` for classifiers and the model's own monitors; `valid` is the most recent
    /// validation. `algorithm` names an update rule (`"nag"`, `"rmsprop"`, …) or several
    /// separated by whitespace (`"sgd nag"`), run in turn, each continuing from the parameters
    /// the previous one left (its best). `valid` may be [`Data::None`]: validate on `train`.
    ///
    /// Setting up is checked before the first item: unknown algorithms or option keys (the
    /// closest valid one suggested), invalid values, and data that does not fit the model.
    /// Dropping the iterator early leaves the best parameters of the algorithm running.
    pub fn itertrain<S: Settings + ?Sized>(
        &mut self,
        train: impl Into<Data>,
        valid: impl Into<Data>,
        algorithm: &str,
        options: &S,
    ) -> Result<Itertrain<'_, M>> {
        let names: Vec<String> = algorithm
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        if names.is_empty() {
            return Err(config("algorithm", "no algorithm named"));
        }
        let seed = self.network().options.seed;
        let stages = names
            .iter()
            .map(|n| {
                let s = stage(n)?;
                let Stage::Rule(alg) = s;
                let opts = options.resolve(alg, seed)?;
                opts.rule.validate()?;
                opts.loop_options.validate()?;
                Ok((s, opts))
            })
            .collect::<Result<Vec<_>>>()?;
        let first = &stages[0].1;
        let dataset_options = DatasetOptions {
            batch_size: first.batch_size,
            iteration_size: first.iteration_size,
            shuffle_batches: first.shuffle_batches,
            seed,
            ..Default::default()
        };
        let train = self.dataset("train", train.into(), &dataset_options)?;
        let valid = match valid.into() {
            Data::None => None,
            v => Some(self.dataset("valid", v, &dataset_options)?),
        };
        let save = match (&first.save_progress, &self.progress) {
            (Some(p), _) => Some((
                p.clone(),
                first.save_every.unwrap_or(SaveEvery::Iterations(1)),
            )),
            (None, Some((p, every))) => Some((p.clone(), first.save_every.unwrap_or(*every))),
            (None, None) => None,
        };
        // A run read from a snapshot continues only in a call of the same algorithms.
        let resume = self.pending.take().filter(|p| p.run.algorithms == names);
        let mut it = Itertrain {
            exp: self,
            names,
            stages,
            stage: 0,
            trainer: None,
            train,
            valid,
            save,
            last_save: Instant::now(),
            best: None,
            failed: false,
        };
        if let Some(p) = resume {
            it.resume_datasets(&p)?;
            it.stage = p.run.stage;
            it.start_stage(Some(p))?;
        }
        Ok(it)
    }

    /// Runs a network-aware trainer ([`crate::trainers`]) on arrays with `key=value` settings;
    /// returns the last stage's best monitors (`sample`: its monitors on the training data).
    fn train_aware<S: Settings + ?Sized>(
        &mut self,
        trainer: Aware,
        train: Data,
        valid: Data,
        algorithm: &str,
        options: &S,
    ) -> Result<(Monitors, Monitors)> {
        let what = format!("algorithm `{algorithm}`");
        let arrays = |d: Data, name: &str| -> Result<Option<Vec<Tensor>>> {
            match d {
                Data::Arrays(a) => Ok(Some(a)),
                Data::None => Ok(None),
                Data::Dataset(_) => Err(config(
                    what.clone(),
                    format!(
                        "the network-aware trainers take arrays, not a Dataset, as {name} data"
                    ),
                )),
            }
        };
        let train = arrays(train, "training")?
            .ok_or_else(|| config(what.clone(), "needs training data"))?;
        let valid = arrays(valid, "validation")?;
        let text = options.text().ok_or_else(|| {
            config(
                what.clone(),
                "the network-aware trainers take their settings as key=value text",
            )
        })?;
        let settings: Vec<&str> = text.iter().map(String::as_str).collect();
        let net = self.model.network();
        let stages = match trainer {
            Aware::Sample => {
                if !settings.is_empty() {
                    return Err(config(what, "sample takes no settings"));
                }
                let m = crate::trainers::sample(net, &train, net.options.seed)?;
                return Ok((m.clone(), m));
            }
            Aware::Layerwise(rule) => {
                crate::trainers::layerwise(net, &train, valid.as_deref(), &rule, &settings)?
            }
            Aware::Pretrain(rule) => {
                crate::trainers::pretrain(net, &train, valid.as_deref(), &rule, &settings)?
            }
        };
        Ok(stages
            .last()
            .map(|s| (s.train.clone(), s.valid.clone()))
            .unwrap_or_default())
    }

    fn dataset(&self, name: &str, data: Data, options: &DatasetOptions) -> Result<Dataset> {
        match data {
            Data::Arrays(arrays) => {
                self.network()
                    .check_data(&arrays)
                    .map_err(|e| e.context(format!("{name} data")))?;
                Ok(Dataset::new(name, arrays, options.clone())?)
            }
            Data::Dataset(d) => Ok(*d),
            Data::None => Err(Error::Data {
                what: format!("{name} data"),
                problem: "none given".into(),
            }),
        }
    }
}

/// A training call in progress; see [`Experiment::itertrain`].
pub struct Itertrain<'e, M: Owned> {
    exp: &'e mut Experiment<M>,
    names: Vec<String>,
    stages: Vec<(Stage, TrainOptions)>,
    stage: usize,
    trainer: Option<Trainer>,
    train: Dataset,
    valid: Option<Dataset>,
    save: Option<(PathBuf, SaveEvery)>,
    last_save: Instant,
    best: Option<(Monitors, Monitors)>,
    failed: bool,
}

impl<M: Owned> Itertrain<'_, M> {
    /// The `(train, valid)` monitors of the best validation of the algorithm that ended last
    /// (its parameters are then the model's); `None` until one has ended.
    pub fn best(&self) -> Option<&(Monitors, Monitors)> {
        self.best.as_ref()
    }

    /// The iteration the running algorithm has reached (counted from 1, continuing across a
    /// resumed snapshot); `None` between algorithms.
    pub fn iteration(&self) -> Option<usize> {
        self.trainer.as_ref().map(Trainer::iteration)
    }

    /// Puts the datasets where the snapshot's were.
    fn resume_datasets(&mut self, p: &Pending) -> Result<()> {
        let misfit = |e: Error| {
            file_error(
                &p.path,
                format!("the snapshot's run does not fit this call: {e}"),
            )
        };
        self.train
            .set_state(p.run.train.clone())
            .map_err(|e| misfit(e.into()))?;
        match (&mut self.valid, &p.run.valid) {
            (Some(v), Some(s)) => v.set_state(s.clone()).map_err(|e| misfit(e.into())),
            (None, None) => Ok(()),
            _ => Err(misfit(config(
                "validation data",
                "given to one of the snapshot's call and this call but not the other",
            ))),
        }
    }

    /// Builds the trainer of the current stage, continuing the snapshot's run if given.
    fn start_stage(&mut self, resume: Option<Pending>) -> Result<()> {
        let (Stage::Rule(_), opts) = &self.stages[self.stage];
        let net = self.exp.model.network();
        let mut trainer = net.trainer_with(
            opts.rule.clone(),
            opts.loop_options.clone(),
            &opts.regularizers,
        )?;
        match resume {
            None => trainer.begin(),
            Some(p) => {
                let misfit = |e: optim::Error| {
                    file_error(
                        &p.path,
                        format!("the snapshot's run does not fit this call: {e}"),
                    )
                };
                trainer.set_rule_state(p.run.rule).map_err(misfit)?;
                trainer.set_rng_states(&p.run.rngs).map_err(misfit)?;
                trainer.set_loop_state(p.run.loop_state).map_err(misfit)?;
            }
        }
        self.trainer = Some(trainer);
        Ok(())
    }

    /// Writes the snapshot if one is due after this iteration.
    fn maybe_save(&mut self) -> Result<()> {
        let (Some((path, every)), Some(trainer)) = (&self.save, &self.trainer) else {
            return Ok(());
        };
        if !every.due(trainer.iteration(), self.last_save) {
            return Ok(());
        }
        let run = RunState {
            algorithms: self.names.clone(),
            stage: self.stage,
            rule: trainer.rule_state().clone(),
            loop_state: trainer.loop_state(),
            rngs: trainer.rng_states(),
            train: self.train.state(),
            valid: self.valid.as_ref().map(Dataset::state),
        };
        write_snapshot(path, self.exp.model.network(), Some(&run))?;
        self.last_save = Instant::now();
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Option<Result<(Monitors, Monitors)>> {
        self.failed = true;
        if let Some(t) = &mut self.trainer {
            t.abandon();
        }
        Some(Err(e))
    }
}

impl<M: Owned> Iterator for Itertrain<'_, M> {
    type Item = Result<(Monitors, Monitors)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed || self.stage >= self.stages.len() {
                return None;
            }
            if self.trainer.is_none() {
                if let Err(e) = self.start_stage(None) {
                    return self.fail(e);
                }
            }
            let trainer = self.trainer.as_mut()?;
            match trainer.advance(&mut self.train, self.valid.as_mut()) {
                Some(Ok(item)) => {
                    if let Err(e) = self.maybe_save() {
                        return self.fail(e);
                    }
                    return Some(Ok(item));
                }
                Some(Err(e)) => return self.fail(e.into()),
                None => {
                    self.best = trainer.best().map(|b| (b.train.clone(), b.valid.clone()));
                    self.trainer = None;
                    self.stage += 1;
                }
            }
        }
    }
}

impl<M: Owned> Drop for Itertrain<'_, M> {
    fn drop(&mut self) {
        if let Some(t) = &mut self.trainer {
            t.abandon();
        }
    }
}
