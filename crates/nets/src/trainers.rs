//! The network-aware trainers of theanets (behaviour §6): `sample`, which sets weights from
//! training samples, and the greedy layer-wise pre-trainers `layerwise` (supervised) and
//! `pretrain` (unsupervised, through a tied shadow autoencoder).
//!
//! The pre-trainers build a *shadow* network per stage from the model's own layer specs (the
//! layer names kept), copy the model's current parameters into it by name, train it with an
//! ordinary early-stopped [`optim::Trainer`] run, and copy the trained parameters of the model's
//! layers back. theanets shared the layer objects between the model and its shadows instead;
//! copying by name has the same effect and leaves the model untouched if a stage fails to build.
//!
//! Where this differs from theanets 0.7.3, on purpose:
//! - `sample` propagates the samples through the layers already set, so each layer's weight
//!   columns are the hidden images of training rows (theanets meant to, but referenced an
//!   undefined variable and set only the layers reading the input). The output layer's rows are
//!   the targets of the same rows that fill the last hidden layer's columns (theanets drew them
//!   from an independent sample, so hidden unit `j` and output row `j` were unrelated), and a
//!   classifier's targets are its one-hot labels (theanets compared the label vector's length
//!   with the output width and so never set a classifier's output layer).
//! - `layerwise` on a network without hidden layers still trains it once (theanets ran no stage),
//!   and the temporary output layer `lwout` is what the model's losses read during a stage
//!   (theanets' output-name bookkeeping failed, issue #92).
//! - Each trainer reports every stage's best monitors instead of yielding `loss = 0`.

use crate::error::{config, Error, Result};
use crate::layers::LayerSpec;
use crate::losses::Loss;
use crate::network::{Kind, ModelOptions, Network};
use crate::regularizers::Regularizers;
use optim::{Dataset, DatasetOptions, Monitors};
use tape::{Param, Rng, Tensor};

/// The update rule each pre-training stage uses unless told otherwise, as in theanets.
pub const DEFAULT_ALGORITHM: &str = "rmsprop";

/// The name of the temporary output layer of a supervised pre-training stage.
pub const LAYERWISE_OUTPUT: &str = "lwout";

/// What one pre-training stage did: which of the model's layers it trained and the monitors of
/// its best validation (whose parameters it left in the model).
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The model's layers the stage trained, input side first. Layers made for the stage only
    /// (the `lwout` output layer, the shadow autoencoder's decoders) are not listed.
    pub layers: Vec<String>,
    /// Iterations completed when the best validation ran (0: before any update).
    pub iteration: usize,
    /// Training monitors of the iteration that ended at `iteration`.
    pub train: Monitors,
    /// Monitors of the best validation.
    pub valid: Monitors,
}

/// Sets every weight matrix from training samples, layer after layer (theanets' `sample`
/// trainer, with its propagation bug fixed): the columns of a layer's weight matrix `W`
/// (`inputs × units`) are the layer's input values for distinct training rows of `data[0]`,
/// each scaled to unit length, computed through the layers set before it. The output layer's
/// rows are instead the unit-length targets (one-hot labels for a classifier, the input for an
/// autoencoder) of the rows that fill the last hidden layer's columns, so hidden unit `j` feeds
/// the target of the sample it was made from. Biases, tied layers and layers whose weights do
/// not match their inputs one to one are left as they are, as is a column whose sample has
/// length zero (a unit that sample leaves silent).
///
/// Rows are drawn without replacement by a stream named `trainer.sample` under `seed`; when a
/// layer has more units than there are rows, the extra samples are drawn rows plus Gaussian
/// noise with each feature's standard deviation over the drawn rows (as theanets pads its
/// reservoir). Returns the loss and monitors of the model on `data` afterwards.
///
/// `data` is in training order (`[x]`, `[x, y]`, `[x, y, w]` by model kind).
///
/// ```
/// use nets::{trainers, Regressor};
/// use tape::Tensor;
/// let net = Regressor::new(&[2, 3, 1])?;
/// let x = Tensor::new(&[4, 2], vec![3., 4., 0., 2., -1., 0., 1., 1.])?;
/// let y = Tensor::new(&[4, 1], vec![1., -2., 0.5, 3.])?;
/// trainers::sample(&net, &[x.clone(), y], 7)?;
/// // Every column of hid1.w is one of the rows of x, scaled to unit length.
/// let w = net.find("hid1", "w")?.value();
/// for j in 0..3 {
///     let col = [w.data()[j], w.data()[3 + j]];
///     assert!(x.data().chunks(2).any(|r| {
///         let n = (r[0] * r[0] + r[1] * r[1]).sqrt();
///         (r[0] / n - col[0]).abs() < 1e-6 && (r[1] / n - col[1]).abs() < 1e-6
///     }));
/// }
/// # Ok::<(), nets::Error>(())
/// ```
pub fn sample(net: &Network, data: &[Tensor], seed: u64) -> Result<Monitors> {
    net.check_data(data)?;
    let needed = net.layers[1..]
        .iter()
        .map(|l| l.size().max(l.inputs().first().map_or(0, |i| i.1)))
        .max()
        .unwrap_or(0);
    let mut rng = Rng::from_name(seed, "trainer.sample");
    let (pool, picked) = sample_pool(&data[0], needed, &mut rng);
    let targets = sample_targets(net, data, &picked)?;
    let last = net.layers.len() - 1;
    for i in 1..=last {
        let layer = net.layers[i].as_ref();
        let weights = matched_weights(layer);
        if weights.is_empty() {
            continue;
        }
        if i == last && weights.len() == 1 {
            if let Some(t) = &targets {
                if weights[0].shape()[1] == t.shape()[1] {
                    set_rows(&weights[0], t)?;
                    continue;
                }
            }
        }
        let outputs = net.feed_forward(&pool)?;
        for (w, (input, _)) in weights.iter().zip(layer.inputs()) {
            let images = outputs
                .iter()
                .find(|(n, _)| n == input)
                .map(|(_, t)| t)
                .ok_or_else(|| {
                    config(
                        format!("sample: layer `{}`", layer.name()),
                        format!("its input `{input}` is not an output of the network"),
                    )
                })?;
            set_columns(w, images)?;
        }
    }
    net.evaluate(data, &Regularizers::default())
}

/// A layer's weight matrices when they pair one to one with its inputs, each shaped
/// `[input width, layer size]` (what a feedforward layer has); otherwise none.
fn matched_weights(layer: &dyn crate::layers::Layer) -> Vec<Param> {
    let mats: Vec<Param> = layer
        .params()
        .into_iter()
        .filter(|p| p.shape().len() == 2)
        .collect();
    let fits = mats.len() == layer.inputs().len()
        && mats
            .iter()
            .zip(layer.inputs())
            .all(|(p, (_, width))| p.shape().as_slice() == [*width, layer.size()]);
    if fits {
        mats
    } else {
        Vec::new()
    }
}

/// `n` rows of `x`: distinct rows in random order while they last, then drawn rows plus noise
/// with each feature's standard deviation over the drawn rows. Also returns the source row of
/// each pool row.
fn sample_pool(x: &Tensor, n: usize, rng: &mut Rng) -> (Tensor, Vec<usize>) {
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let mut order: Vec<usize> = (0..rows).collect();
    rng.shuffle(&mut order);
    let real = rows.min(n);
    let mut picked: Vec<usize> = order[..real].to_vec();
    let mut data: Vec<f32> = Vec::with_capacity(n * cols);
    for &r in &picked {
        data.extend_from_slice(&x.data()[r * cols..(r + 1) * cols]);
    }
    let std = column_std(&data, cols);
    let mut noise = vec![0.0f32; cols];
    for _ in real..n {
        let r = picked[rng.below(real)];
        rng.fill_normal(&mut noise, 0.0, 1.0);
        let row = &x.data()[r * cols..(r + 1) * cols];
        data.extend(
            row.iter()
                .zip(&noise)
                .zip(&std)
                .map(|((v, z), s)| v + s * z),
        );
        picked.push(r);
    }
    // Rows and width come from `x` itself, so the length always matches.
    let pool = Tensor::new(&[n, cols], data).unwrap_or_else(|_| Tensor::zeros(&[n, cols]));
    (pool, picked)
}

/// Each column's (population) standard deviation over the rows of a row-major matrix.
fn column_std(data: &[f32], cols: usize) -> Vec<f32> {
    let rows = (data.len() / cols.max(1)).max(1) as f64;
    (0..cols)
        .map(|c| {
            let vals = data
                .iter()
                .skip(c)
                .step_by(cols.max(1))
                .map(|&v| f64::from(v));
            let mean = vals.clone().sum::<f64>() / rows;
            (vals.map(|v| (v - mean).powi(2)).sum::<f64>() / rows).sqrt() as f32
        })
        .collect()
}

/// The targets of the picked rows, one row each: the regression targets, one-hot labels, or the
/// input for an autoencoder. `None` when the targets are not one row of values per sample.
fn sample_targets(net: &Network, data: &[Tensor], picked: &[usize]) -> Result<Option<Tensor>> {
    let source = match net.kind {
        Kind::Autoencoder => &data[0],
        _ => &data[1],
    };
    let (rows, width) = match (net.kind, source.shape()) {
        (Kind::Classifier, _) => (picked.len(), net.output_size()),
        (_, [_, w]) => (picked.len(), *w),
        _ => return Ok(None),
    };
    let mut out = vec![0.0f32; rows * width];
    for (k, &r) in picked.iter().enumerate() {
        let row = &mut out[k * width..(k + 1) * width];
        if net.kind == Kind::Classifier {
            // Labels were checked to be classes in 0..width.
            row[source.data()[r] as usize] = 1.0;
        } else {
            row.copy_from_slice(&source.data()[r * width..(r + 1) * width]);
        }
    }
    Ok(Some(Tensor::new(&[rows, width], out)?))
}

/// Sets column `j` of `w` (`nin × units`) to row `j` of `images` scaled to unit length.
fn set_columns(w: &Param, images: &Tensor) -> Result<()> {
    let mut value = w.value();
    let (nin, units) = (value.shape()[0], value.shape()[1]);
    check_width(w, images, nin)?;
    for j in 0..units {
        let row = &images.data()[j * nin..(j + 1) * nin];
        if let Some(scale) = inverse_norm(row) {
            for (i, v) in row.iter().enumerate() {
                value.data_mut()[i * units + j] = v * scale;
            }
        }
    }
    Ok(w.set(value)?)
}

/// Sets row `j` of `w` (`units × outputs`) to row `j` of `targets` scaled to unit length.
fn set_rows(w: &Param, targets: &Tensor) -> Result<()> {
    let mut value = w.value();
    let (rows, cols) = (value.shape()[0], value.shape()[1]);
    check_width(w, targets, cols)?;
    for j in 0..rows {
        let row = &targets.data()[j * cols..(j + 1) * cols];
        if let Some(scale) = inverse_norm(row) {
            for (k, v) in row.iter().enumerate() {
                value.data_mut()[j * cols + k] = v * scale;
            }
        }
    }
    Ok(w.set(value)?)
}

fn check_width(w: &Param, samples: &Tensor, width: usize) -> Result<()> {
    if samples.rank() != 2 || samples.shape()[1] != width {
        return Err(Error::Data {
            what: format!("sample: parameter `{}`", w.name()),
            problem: format!(
                "needs samples of width {width}, got shape {:?}",
                samples.shape()
            ),
        });
    }
    Ok(())
}

/// `1/‖v‖`, or `None` for a vector too short to scale (its column is left alone).
fn inverse_norm(v: &[f32]) -> Option<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (norm > 1e-12 && norm.is_finite()).then(|| (1.0 / norm) as f32)
}

/// Greedy supervised layer-wise pre-training (theanets' `layerwise`), then training of the whole
/// model: see [`layerwise_stages`], whose stages this runs to the end.
///
/// ```
/// use nets::{trainers, LayerSpec, ModelOptions, Regressor};
/// use tape::{Rng, Tensor};
/// let net = Regressor::build(
///     vec![3.into(), LayerSpec::dense(4).activation("tanh"), LayerSpec::dense(4).activation("tanh"), 1.into()],
///     ModelOptions::default(),
/// )?;
/// let mut x = Tensor::zeros(&[32, 3]);
/// Rng::new(1).fill_normal(x.data_mut(), 0.0, 1.0);
/// let y = Tensor::from_fn(&[32, 1], |i| x.data()[i[0] * 3] - x.data()[i[0] * 3 + 2]);
/// let stages = trainers::layerwise(&net, &[x, y], None, "rmsprop", &["max_updates=5", "batch_size=8"])?;
/// // One stage per hidden layer, the last training the whole model.
/// assert_eq!(stages.len(), 2);
/// assert_eq!(stages[0].layers, ["hid1"]);
/// assert_eq!(stages[1].layers, ["hid1", "hid2", "out"]);
/// # Ok::<(), nets::Error>(())
/// ```
pub fn layerwise(
    net: &Network,
    train: &[Tensor],
    valid: Option<&[Tensor]>,
    algorithm: &str,
    settings: &[&str],
) -> Result<Vec<Stage>> {
    layerwise_stages(net, train, valid, algorithm, settings)?.collect()
}

/// Greedy unsupervised pre-training (theanets' `pretrain`): see [`pretrain_stages`], whose
/// stages this runs to the end. The model's output layer is not trained.
///
/// ```
/// use nets::{trainers, Classifier, LayerSpec, ModelOptions};
/// use tape::{Rng, Tensor};
/// let net = Classifier::build(
///     vec![3.into(), LayerSpec::dense(4).activation("tanh"), LayerSpec::dense(2).activation("tanh"), 2.into()],
///     ModelOptions::default(),
/// )?;
/// let mut x = Tensor::zeros(&[32, 3]);
/// Rng::new(1).fill_normal(x.data_mut(), 0.0, 1.0);
/// let before = net.find("out", "w")?.value();
/// let stages = trainers::pretrain(&net, &[x], None, "rmsprop", &["max_updates=5"])?;
/// assert_eq!(stages.len(), 2);
/// assert_eq!(stages[1].layers, ["hid1", "hid2"]);
/// assert_eq!(net.find("out", "w")?.value(), before);
/// # Ok::<(), nets::Error>(())
/// ```
pub fn pretrain(
    net: &Network,
    train: &[Tensor],
    valid: Option<&[Tensor]>,
    algorithm: &str,
    settings: &[&str],
) -> Result<Vec<Stage>> {
    pretrain_stages(net, train, valid, algorithm, settings)?.collect()
}

/// The stages of greedy supervised layer-wise pre-training, run one per call to `next`.
///
/// Stage `i` (for each hidden layer `hid_i`) trains a shadow network made of the input, the
/// hidden layers up to `hid_i` and a fresh output layer [`LAYERWISE_OUTPUT`] like the model's
/// (size, form, activation) reading `hid_i`; the model's losses read that layer. The last stage
/// trains the model itself. A model with tied layers (a mirrored autoencoder) is shortened from
/// the middle instead: stage `i` keeps the outer `i` encoder layers and their `i` decoders, and
/// the decoders' biases are trained too. Each stage starts from the model's current parameters
/// and leaves its best ones in the model. The model's own monitors are reported by the last
/// stage only: a shadow network may lack the layers they name.
///
/// Every stage is a full early-stopped run of `algorithm` (theanets' default:
/// [`DEFAULT_ALGORITHM`]) with `settings`: `batch_size=` and `iteration_size=` cut the datasets
/// (default 32 rows per batch, one pass per iteration; the batch order is seeded by the model's
/// seed), everything else goes to [`Network::trainer`] (update rule, loop and regularizer
/// options) and applies to each stage, `max_updates` included. `train` and `valid` are in
/// training order for the model; without `valid` the training data validates.
pub fn layerwise_stages<'a>(
    net: &'a Network,
    train: &'a [Tensor],
    valid: Option<&'a [Tensor]>,
    algorithm: &str,
    settings: &[&str],
) -> Result<Stages<'a>> {
    net.check_data(train)?;
    if let Some(v) = valid {
        net.check_data(v)?;
    }
    let plans = layerwise_plans(net)?;
    Stages::new(net, train, valid, algorithm, settings, plans)
}

/// The stages of greedy unsupervised pre-training, run one per call to `next`.
///
/// For each hidden layer `hid_i` a shadow autoencoder is trained on the inputs alone: the input,
/// the hidden layers up to `hid_i`, then tied decoders for `hid_i` down to `hid2` (each with its
/// partner's activation) and finally one tied to `hid1` with a linear activation, reconstructing
/// the input with mean squared error. The encoder weights are the model's and land in it; the
/// decoders' biases carry over from stage to stage and are then dropped. The model's output
/// layer is left as it is: train the whole model afterwards.
///
/// Only `train[0]` and `valid[0]` (the inputs) are used; the settings are read as for
/// [`layerwise_stages`]. The hidden layers must not be tied themselves, and a model without
/// hidden layers has no stages.
pub fn pretrain_stages<'a>(
    net: &'a Network,
    train: &'a [Tensor],
    valid: Option<&'a [Tensor]>,
    algorithm: &str,
    settings: &[&str],
) -> Result<Stages<'a>> {
    let inputs = |data: &'a [Tensor]| -> Result<&'a [Tensor]> {
        let x = data.get(..1).ok_or_else(|| Error::Data {
            what: "pretrain".into(),
            problem: "no data arrays given; expected the inputs first".into(),
        })?;
        net.check_x(&x[0])?;
        Ok(x)
    };
    let train = inputs(train)?;
    let valid = valid.map(inputs).transpose()?;
    let plans = pretrain_plans(net)?;
    Stages::new(net, train, valid, algorithm, settings, plans)
}

/// One stage: a shadow network to build and train, or the model itself.
enum Plan {
    Shadow {
        kind: Kind,
        specs: Vec<LayerSpec>,
        losses: Vec<Loss>,
        weighted: bool,
        /// Layers made for this stage alone, whose parameters are neither kept nor carried.
        fresh: Vec<String>,
    },
    Whole,
}

/// The model's spec at `i` with its resolved name, so that it keeps that name at any position.
fn named_spec(net: &Network, i: usize) -> LayerSpec {
    net.specs[i].clone().name(net.layers[i].name())
}

fn layerwise_plans(net: &Network) -> Result<Vec<Plan>> {
    let n = net.layers.len();
    let tied = net.layers.iter().any(|l| l.is_tied());
    let stages = if tied { 1 + n / 2 } else { n - 1 };
    let mut plans = Vec::new();
    for i in 1..stages.saturating_sub(1) {
        let mut specs: Vec<LayerSpec> = (0..=i).map(|k| named_spec(net, k)).collect();
        let (losses, fresh) = if tied {
            for k in n - i..n {
                let mut s = named_spec(net, k);
                // Decoders read the layer before them in the shortened network.
                s.inputs.clear();
                specs.push(s);
            }
            (net.losses.clone(), Vec::new())
        } else {
            let mut out = named_spec(net, n - 1).name(LAYERWISE_OUTPUT);
            out.inputs = vec![net.layers[i].name().to_string()];
            specs.push(out);
            let last = net.layers[n - 1].name();
            let losses = net
                .losses
                .iter()
                .map(|l| redirect_loss(l, last, LAYERWISE_OUTPUT))
                .collect();
            (losses, vec![LAYERWISE_OUTPUT.to_string()])
        };
        plans.push(Plan::Shadow {
            kind: net.kind,
            specs,
            losses,
            weighted: net.options.weighted,
            fresh,
        });
    }
    plans.push(Plan::Whole);
    Ok(plans)
}

/// `loss` reading `to` wherever it read the layer `from` (by name, with or without an output).
fn redirect_loss(loss: &Loss, from: &str, to: &str) -> Loss {
    let swap = |name: &Option<String>| {
        name.as_ref().map(|n| match n.split_once(':') {
            Some((layer, output)) if layer == from => format!("{to}:{output}"),
            None if n == from => to.to_string(),
            _ => n.clone(),
        })
    };
    let mut l = loss.clone();
    l.output = swap(&loss.output);
    l.covar = swap(&loss.covar);
    l
}

fn pretrain_plans(net: &Network) -> Result<Vec<Plan>> {
    let n = net.layers.len();
    let hidden = &net.layers[1..n - 1];
    if let Some(l) = hidden.iter().find(|l| l.is_tied()) {
        return Err(config(
            "pretrain",
            format!(
                "hidden layer `{}` is tied; pretrain builds its own tied decoders, so the \
                 model's hidden layers must have weights of their own (use layerwise)",
                l.name()
            ),
        ));
    }
    let mut plans = Vec::new();
    for i in 1..=hidden.len() {
        let mut specs: Vec<LayerSpec> = (0..=i).map(|k| named_spec(net, k)).collect();
        for k in (1..=i).rev() {
            let partner = net.layers[k].name();
            let activation = if k == 1 {
                "linear"
            } else {
                net.layers[k].activation().unwrap_or("relu")
            };
            specs.push(
                LayerSpec::tied()
                    .partner(partner)
                    .activation(activation)
                    .name(&format!("tied-{partner}")),
            );
        }
        plans.push(Plan::Shadow {
            kind: Kind::Autoencoder,
            specs,
            losses: Vec::new(),
            weighted: false,
            fresh: Vec::new(),
        });
    }
    Ok(plans)
}

/// The stages of a pre-training run, as an iterator: each `next` builds and trains one stage and
/// returns what it did. A failed stage ends the run (later calls return `None`).
pub struct Stages<'a> {
    net: &'a Network,
    train: &'a [Tensor],
    valid: Option<&'a [Tensor]>,
    algorithm: String,
    settings: Vec<String>,
    datasets: DatasetOptions,
    plans: std::vec::IntoIter<Plan>,
    /// Parameters of the shadows' own layers (the pretrain decoders' biases), by name, carried
    /// from one stage to the next as theanets' shared layer objects carried them.
    carried: Vec<(String, Tensor)>,
    stage: usize,
    total: usize,
    failed: bool,
}

impl std::fmt::Debug for Stages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stages")
            .field("algorithm", &self.algorithm)
            .field("settings", &self.settings)
            .field("stage", &self.stage)
            .field("total", &self.total)
            .finish()
    }
}

impl<'a> Stages<'a> {
    fn new(
        net: &'a Network,
        train: &'a [Tensor],
        valid: Option<&'a [Tensor]>,
        algorithm: &str,
        settings: &[&str],
        plans: Vec<Plan>,
    ) -> Result<Stages<'a>> {
        let (datasets, rest) = dataset_settings(settings, net.options.seed)?;
        // Check the algorithm and the trainer's settings now, not at the first stage.
        let regs_and_loop: Vec<&str> = rest.iter().map(String::as_str).collect();
        net.trainer(algorithm, &regs_and_loop)?;
        Ok(Stages {
            net,
            train,
            valid,
            algorithm: algorithm.to_string(),
            settings: rest,
            datasets,
            total: plans.len(),
            plans: plans.into_iter(),
            carried: Vec::new(),
            stage: 0,
            failed: false,
        })
    }

    /// The number of stages in the run.
    pub fn total(&self) -> usize {
        self.total
    }

    fn run(&mut self, plan: Plan) -> Result<Stage> {
        let settings: Vec<&str> = self.settings.iter().map(String::as_str).collect();
        let (shadow, fresh) = match plan {
            Plan::Whole => return self.run_whole(&settings),
            Plan::Shadow {
                kind,
                specs,
                losses,
                weighted,
                fresh,
            } => {
                let options = ModelOptions {
                    seed: self.net.options.seed,
                    losses,
                    weighted,
                    monitors: Vec::new(),
                    classes: Vec::new(),
                };
                (Network::new(kind, specs, options)?, fresh)
            }
        };
        let model = self.net.params();
        let by_name = |name: &str| model.iter().find(|p| p.name() == name);
        for p in shadow.params() {
            if let Some(m) = by_name(p.name()) {
                p.set(m.value())?;
            } else if let Some((_, v)) = self.carried.iter().find(|(n, _)| n == p.name()) {
                p.set(v.clone())?;
            }
        }
        let mut trainer = shadow.trainer(&self.algorithm, &settings)?;
        let best = self.train_with(&mut trainer)?;
        let mut layers = Vec::new();
        for l in shadow.layers() {
            if fresh.iter().any(|f| f == l.name()) {
                continue;
            }
            for p in l.params() {
                match by_name(p.name()) {
                    Some(m) => m.set(p.value())?,
                    None => carry(&mut self.carried, &p),
                }
            }
            if self.net.layer(l.name()).is_ok() && !l.params().is_empty() {
                layers.push(l.name().to_string());
            }
        }
        Ok(Stage { layers, ..best })
    }

    fn run_whole(&self, settings: &[&str]) -> Result<Stage> {
        let mut trainer = self.net.trainer(&self.algorithm, settings)?;
        let best = self.train_with(&mut trainer)?;
        let layers = self
            .net
            .layers()
            .iter()
            .filter(|l| !l.params().is_empty())
            .map(|l| l.name().to_string())
            .collect();
        Ok(Stage { layers, ..best })
    }

    /// One early-stopped run on fresh datasets; its best monitors (layers left to the caller).
    fn train_with(&self, trainer: &mut optim::Trainer) -> Result<Stage> {
        let mut train = Dataset::new("train", self.train.to_vec(), self.datasets.clone())?;
        let mut valid = self
            .valid
            .map(|v| Dataset::new("valid", v.to_vec(), self.datasets.clone()))
            .transpose()?;
        trainer.train(&mut train, valid.as_mut())?;
        let best = trainer.best().cloned().unwrap_or_default();
        Ok(Stage {
            layers: Vec::new(),
            iteration: best.iteration,
            train: best.train,
            valid: best.valid,
        })
    }
}

fn carry(carried: &mut Vec<(String, Tensor)>, p: &Param) {
    match carried.iter_mut().find(|(n, _)| n == p.name()) {
        Some(slot) => slot.1 = p.value(),
        None => carried.push((p.name().to_string(), p.value())),
    }
}

impl Iterator for Stages<'_> {
    type Item = Result<Stage>;

    fn next(&mut self) -> Option<Result<Stage>> {
        if self.failed {
            return None;
        }
        let plan = self.plans.next()?;
        self.stage += 1;
        let (stage, total) = (self.stage, self.total);
        let result = self
            .run(plan)
            .map_err(|e| e.context(format!("pre-training stage {stage} of {total}")));
        self.failed = result.is_err();
        Some(result)
    }
}

/// The dataset options among `settings` (`batch_size`, `iteration_size`) and the rest, in order.
fn dataset_settings(settings: &[&str], seed: u64) -> Result<(DatasetOptions, Vec<String>)> {
    let mut options = DatasetOptions {
        seed,
        ..Default::default()
    };
    let mut rest = Vec::new();
    for pair in settings {
        let (key, value) = optim::options::split_pair(pair)?;
        let whole = |v: &str| -> Result<usize> {
            v.trim().parse().map_err(|_| {
                config(
                    format!("option `{key}`"),
                    format!("`{v}` is not a whole number"),
                )
            })
        };
        match key {
            "batch_size" => options.batch_size = whole(value)?,
            "iteration_size" => {
                options.iteration_size = match value.trim().to_ascii_lowercase().as_str() {
                    "none" => None,
                    v => Some(whole(v)?).filter(|&n| n > 0).map_or_else(
                        || {
                            Err(config(
                                "option `iteration_size`",
                                "must be at least 1 (or `none` for one pass)",
                            ))
                        },
                        |n| Ok(Some(n)),
                    )?,
                }
            }
            _ => rest.push(pair.to_string()),
        }
    }
    Ok((options, rest))
}
