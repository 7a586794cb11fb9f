//! Networks: the model kinds, their options, and [`Network`], the layers resolved from their specs
//! with the accessors and the data checks every entry point shares. The rest of a network's
//! behaviour lives by concern: `resolve.rs` (specs → layers), `graph.rs` (the expression graph of
//! outputs, loss and monitors), `predict.rs` (compiled, cached prediction, decoding and
//! evaluation), `train.rs` (trainers) and `models.rs` (the three model wrappers and scoring).

use crate::error::{config, Error, Result};
use crate::layers::{Layer, LayerSpec};
use crate::losses::{Loss, LossKind};
use crate::pool::Pool;
use tape::{Function, Param, Tensor};

pub use crate::graph::Graph;
pub use crate::models::{Autoencoder, Classifier, Model, Regressor};
pub use crate::pool::POOL_SIZE;
pub(crate) use crate::predict::Evaluator;
pub use crate::predict::EVALUATE_BATCH;

/// What a network is trained to do; decides the default loss, the output activation and what
/// `predict` and `score` mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Real-valued targets shaped like the output; mean squared error; R² score.
    Regressor,
    /// Integer class labels; softmax output and cross-entropy; accuracy score. Cross-entropy and
    /// hinge losses read the softmax layer's logits (`out:pre`), so noise or dropout on its
    /// output (`out:out`) is refused when the graph is built.
    Classifier,
    /// Reconstructs its input; mean squared error against the input; R² score.
    Autoencoder,
}

/// Options of a model beyond its layers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    /// Master seed: every layer's initialisation stream and every dropout/noise stream derive
    /// from it and a stable name.
    pub seed: u64,
    /// The losses, summed with their weights (default: cross-entropy for classifiers, mean
    /// squared error otherwise). The first is also reported as the `err` monitor.
    pub losses: Vec<Loss>,
    /// Whether training data carries per-sample weights (`[x, y, w]`, or `[x, w]` for
    /// autoencoders).
    pub weighted: bool,
    /// Monitors by glob over output and parameter names with thresholds: `("hid1:out", [0.1])`
    /// reports `hid1:out<0.1`, the fraction of values below 0.1.
    pub monitors: Vec<(String, Vec<f32>)>,
    /// For a classifier trained on named classes (say, string labels in a CSV file): the name of
    /// each class, label `k` being `classes[k]`. Empty when classes are plain numbers. Kept in
    /// model files, so predictions can be written and data read back by name.
    pub classes: Vec<String>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            seed: 13,
            losses: Vec::new(),
            weighted: false,
            monitors: Vec::new(),
            classes: Vec::new(),
        }
    }
}

/// Refuses a layer with a parameter named like a different parameter (its own or an earlier
/// layer's): training state and model files find parameters by name. One parameter shared by
/// two layers (the same `Param`) is fine.
fn check_param_names(before: &[Box<dyn Layer>], layer: &dyn Layer) -> Result<()> {
    let mine = layer.params();
    for (i, p) in mine.iter().enumerate() {
        let earlier = before
            .iter()
            .flat_map(|l| l.params())
            .chain(mine[..i].iter().cloned());
        if earlier.into_iter().any(|q| q.name() == p.name() && q != *p) {
            return Err(config(
                format!("layer `{}`", layer.name()),
                format!(
                    "its parameter `{}` has the name of another parameter",
                    p.name()
                ),
            ));
        }
    }
    Ok(())
}

/// A feedforward network of layers; [`Regressor`], [`Classifier`] and [`Autoencoder`] wrap one.
///
/// # Threads
///
/// `Network` (and each model wrapping it) is `Send` and `Sync`. Everything that predicts or
/// evaluates takes `&self`, so a model shared by reference (or in an `Arc`) serves several threads
/// at once: each call runs on a compiled instance of its own, leased from a pool of at most
/// [`POOL_SIZE`] per kind of request, and gives the same bits as the same call on one thread.
/// Requests with dropout or noise (an [`Network::output`] with such regularizers, an
/// [`Network::evaluate`] with them) keep one instance, so their random stream stays one
/// sequence; concurrent calls of those take turns, and which call gets which draws depends on
/// the order they run in. Prediction never touches a trainer's random streams.
///
/// Parameters are shared, not copied: training on one thread while another predicts is safe
/// (each parameter is read or replaced whole, under its lock) but a prediction made during a
/// step may mix parameters from before and after it.
pub struct Network {
    pub(crate) kind: Kind,
    pub(crate) layers: Vec<Box<dyn Layer>>,
    pub(crate) losses: Vec<Loss>,
    pub(crate) options: ModelOptions,
    /// The specs the layers were built from, kept so that a model file can rebuild them.
    pub(crate) specs: Vec<LayerSpec>,
    /// Compiled prediction and decoding functions, by what they compute (see `predict.rs`),
    /// pooled so that threads sharing the network predict at once.
    pub(crate) compiled: Pool<Function>,
    /// Compiled loss-and-monitor functions for `evaluate`, per set of regularizers.
    pub(crate) evaluators: Pool<Evaluator>,
    /// Set for the recurrent models: inputs are `(batch, time, dim)` sequences.
    pub(crate) sequence: Option<crate::recurrent::SequenceOptions>,
}

impl Network {
    /// Builds a network of the given kind from layer specs (at least an input and an output).
    pub fn new(kind: Kind, specs: Vec<LayerSpec>, options: ModelOptions) -> Result<Network> {
        Network::with_sequence(kind, specs, options, None)
    }

    /// [`Network::new`], or with `sequence` a recurrent network over `(batch, time, dim)`
    /// sequences (see [`crate::recurrent`]).
    pub(crate) fn with_sequence(
        kind: Kind,
        specs: Vec<LayerSpec>,
        options: ModelOptions,
        sequence: Option<crate::recurrent::SequenceOptions>,
    ) -> Result<Network> {
        if specs.len() < 2 {
            return Err(config(
                "model",
                format!(
                    "needs at least an input and an output layer, got {} layer(s)",
                    specs.len()
                ),
            ));
        }
        let mut losses = options.losses.clone();
        if losses.is_empty() {
            losses.push(Loss::new(if kind == Kind::Classifier {
                LossKind::CrossEntropy
            } else {
                LossKind::Mse
            }));
        }
        // A mask enters the loss as weights.
        let masked = sequence.is_some_and(|s| s.masked);
        for loss in &mut losses {
            loss.weighted = options.weighted || masked;
        }
        let kept_specs = specs.clone();
        let mut layers: Vec<Box<dyn Layer>> = Vec::with_capacity(specs.len());
        let last = specs.len() - 1;
        for (i, spec) in specs.into_iter().enumerate() {
            let layer = crate::resolve::resolve(
                i,
                last,
                spec,
                &layers,
                kind,
                options.seed,
                sequence.is_some(),
            )?;
            if layers.iter().any(|l| l.name() == layer.name()) {
                return Err(config(
                    format!("layer `{}`", layer.name()),
                    "a layer of that name already exists",
                ));
            }
            check_param_names(&layers, layer.as_ref())?;
            layers.push(layer);
        }
        if kind == Kind::Autoencoder && layers[last].size() != layers[0].size() {
            return Err(config(
                "autoencoder",
                format!(
                    "the output layer has {} values but the input has {}",
                    layers[last].size(),
                    layers[0].size()
                ),
            ));
        }
        let classes = &options.classes;
        if !classes.is_empty() && (kind != Kind::Classifier || classes.len() != layers[last].size())
        {
            return Err(config(
                "model option `classes`",
                format!(
                    "{} class names for a {kind:?} with {} outputs: names are for a classifier, one \
                     per output",
                    classes.len(),
                    layers[last].size()
                ),
            ));
        }
        for loss in &losses {
            check_loss_weight(loss)?;
            if loss.takes_labels() != (kind == Kind::Classifier) {
                return Err(config(
                    format!("loss {}", loss.kind),
                    format!("does not fit a {kind:?}"),
                ));
            }
        }
        let net = Network {
            kind,
            layers,
            losses,
            options,
            specs: kept_specs,
            compiled: Pool::new(),
            evaluators: Pool::new(),
            sequence,
        };
        net.check_connects()?;
        Ok(net)
    }

    /// Connects every layer once, so that what only shows in the graph (a flatten or reshape
    /// whose size does not fit its input, a layer given fewer inputs than it has weights) is an
    /// error when the model is built rather than a wrong batch size at prediction time.
    fn check_connects(&self) -> Result<()> {
        if self.sequence.is_some() {
            return self
                .graph(&crate::regularizers::Regularizers::default())
                .map(|_| ());
        }
        let input = &self.layers[0];
        let x = tape::Expr::input_with_dims(input.name(), &[None, Some(input.size())]);
        self.connect(&x, &[], &crate::regularizers::Regularizers::default())?;
        Ok(())
    }

    /// The kind of model.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The options the network was built with (seed, losses, weights, monitors).
    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The losses.
    pub fn losses(&self) -> &[Loss] {
        &self.losses
    }

    /// Every parameter, layer by layer.
    pub fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// The number of trainable values.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.read().len()).sum()
    }

    /// A layer by name, or by index with 0 the input layer.
    pub fn layer(&self, layer: &str) -> Result<&dyn Layer> {
        match layer.parse::<usize>() {
            Ok(i) => self.layers.get(i),
            Err(_) => self.layers.iter().find(|l| l.name() == layer),
        }
        .map(|l| l.as_ref())
        .ok_or_else(|| Error::NotFound {
            what: format!("layer `{layer}`"),
            available: self
                .layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// A parameter by layer (name, or index with 0 the input layer) and parameter (short name
    /// like `"w"`, or index within the layer).
    pub fn find(&self, layer: &str, param: &str) -> Result<Param> {
        let l = self.layer(layer)?;
        let params = l.params();
        let found = match param.parse::<usize>() {
            Ok(i) => params.get(i).cloned(),
            Err(_) => params
                .iter()
                .find(|p| p.name() == format!("{}.{param}", l.name()))
                .cloned(),
        };
        found.ok_or_else(|| Error::NotFound {
            what: format!("parameter `{param}` in layer `{}`", l.name()),
            available: params
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Width of the input.
    pub fn input_size(&self) -> usize {
        self.layers[0].size()
    }

    /// Width of the output.
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].size()
    }

    /// Checks a data matrix fits the input layer.
    pub fn check_x(&self, x: &Tensor) -> Result<()> {
        if self.sequence.is_some() {
            // The matrix entry points do not fit a model over sequences.
            return Err(Error::Data {
                what: format!("input layer `{}`", self.layers[0].name()),
                problem: "this is a recurrent model over (batch, time, dim) sequences; use the \
                          methods of nets::recurrent::{Regressor, Classifier, Autoencoder} \
                          (predict_with, loss_on, check_data)"
                    .into(),
            });
        }
        let n = self.input_size();
        if x.rank() != 2 || x.shape()[1] != n {
            return Err(Error::Data {
                what: format!("input layer `{}`", self.layers[0].name()),
                problem: format!(
                    "expects a matrix of shape [rows, {n}], got shape {:?}",
                    x.shape()
                ),
            });
        }
        if x.shape()[0] == 0 {
            return Err(Error::Data {
                what: format!("input layer `{}`", self.layers[0].name()),
                problem: "no rows".into(),
            });
        }
        Ok(())
    }

    /// Checks class labels: one per row of `x`, integers in `0..classes`.
    pub fn check_labels(&self, x: &Tensor, y: &Tensor) -> Result<()> {
        // The labels are counted against x's rows, so x must be a fitting matrix first (a
        // rank-0 x used to be indexed out of bounds).
        self.check_x(x)?;
        let classes = self.output_size();
        if y.rank() != 1 || y.len() != x.shape()[0] {
            return Err(Error::Data {
                what: format!(
                    "labels for layer `{}`",
                    self.layers[self.layers.len() - 1].name()
                ),
                problem: format!(
                    "expected one label per row ({} rows), got shape {:?}",
                    x.shape()[0],
                    y.shape()
                ),
            });
        }
        if let Err((row, value)) = tape::kernels::check_labels(y.data(), classes) {
            return Err(Error::Data {
                what: format!(
                    "labels for layer `{}`",
                    self.layers[self.layers.len() - 1].name()
                ),
                problem: format!("label {value} in row {row} is not a class in 0..{classes}"),
            });
        }
        Ok(())
    }

    /// Checks training-ordered arrays: how many, the input's width, one row count for all, and
    /// the labels of a classifier.
    /// A recurrent network checks its own data order (see [`crate::recurrent`]).
    pub(crate) fn check_data(&self, data: &[Tensor]) -> Result<()> {
        if self.sequence.is_some() {
            return crate::recurrent::graph::check_dataset(self, data);
        }
        let expected =
            1 + usize::from(self.kind != Kind::Autoencoder) + usize::from(self.options.weighted);
        let order = match (self.kind, self.options.weighted) {
            (Kind::Autoencoder, false) => "[x]",
            (Kind::Autoencoder, true) => "[x, weights]",
            (Kind::Classifier, false) => "[x, labels]",
            (Kind::Classifier, true) => "[x, labels, weights]",
            (Kind::Regressor, false) => "[x, targets]",
            (Kind::Regressor, true) => "[x, targets, weights]",
        };
        if data.len() != expected {
            return Err(Error::Data {
                what: "data".into(),
                problem: format!(
                    "this model takes {expected} arrays, {order}, but {} were given",
                    data.len()
                ),
            });
        }
        self.check_x(&data[0])?;
        let rows = data[0].shape()[0];
        if let Some(k) = data
            .iter()
            .position(|t| t.rank() == 0 || t.shape()[0] != rows)
        {
            return Err(Error::Data {
                what: "data".into(),
                problem: format!(
                    "array {k} of {order} has shape {:?}, but x has {rows} rows",
                    data[k].shape()
                ),
            });
        }
        match self.kind {
            Kind::Classifier => self.check_labels(&data[0], &data[1])?,
            Kind::Regressor => check_finite("targets", &data[1])?,
            Kind::Autoencoder => {}
        }
        if self.options.weighted {
            check_sample_weights(&data[data.len() - 1])?;
        }
        Ok(())
    }
}

/// The row of element `i` of an array whose first axis counts rows.
fn row_of(t: &Tensor, i: usize) -> usize {
    let per_row = t.len() / t.shape().first().copied().unwrap_or(1).max(1);
    i / per_row.max(1)
}

/// Checks every value of a data array is finite: a NaN target used to turn a score into
/// `Ok(NaN)` and training into "diverged" without saying which row was at fault.
pub(crate) fn check_finite(what: &str, t: &Tensor) -> Result<()> {
    match t.data().iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::Data {
            what: what.into(),
            problem: format!(
                "value {} in row {} is not finite",
                t.data()[i],
                row_of(t, i)
            ),
        }),
        None => Ok(()),
    }
}

/// Checks per-sample weights: finite, not negative, not all zero (a weighted mean over zero
/// total weight is NaN, and a negative weight rewards error).
pub(crate) fn check_sample_weights(w: &Tensor) -> Result<()> {
    check_finite("weights", w)?;
    let bad = |problem: String| Error::Data {
        what: "weights".into(),
        problem,
    };
    if let Some(i) = w.data().iter().position(|&v| v < 0.0) {
        return Err(bad(format!(
            "weight {} in row {} is negative; weights must be ≥ 0",
            w.data()[i],
            row_of(w, i)
        )));
    }
    if w.data().iter().all(|&v| v == 0.0) {
        return Err(bad(
            "all weights are zero; at least one must be positive".into()
        ));
    }
    Ok(())
}

/// Checks a loss's weight is finite and not negative, naming the loss: a NaN weight used to
/// surface only as "training diverged".
fn check_loss_weight(loss: &Loss) -> Result<()> {
    if loss.weight.is_finite() && loss.weight >= 0.0 {
        return Ok(());
    }
    Err(config(
        format!("loss {} option `weight`", loss.kind),
        format!("weight {} must be a finite number ≥ 0", loss.weight),
    ))
}
