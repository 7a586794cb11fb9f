//! Networks: layer specs resolved into layers, the expression graph they build, and the three
//! model kinds with their prediction, scoring and training entry points.

use crate::error::{config, Error, Result};
use crate::layers::{Combine, Feedforward, Form, Input, Layer, LayerContext, LayerSpec, Tied};
use crate::losses::{Loss, LossKind};
use crate::regularizers::{glob, Elementwise, Hidden, Regularizers, Role};
use optim::{Algorithm, LoopOptions, Monitors, RuleOptions, Trainer};
use std::sync::Mutex;
use tape::{Expr, Function, Param, Rng, Tensor, TensorView};

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
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            seed: 13,
            losses: Vec::new(),
            weighted: false,
            monitors: Vec::new(),
        }
    }
}

/// The expressions of a network built for some regularizers.
pub struct Graph {
    /// The data inputs, in dataset order: `[x]`, `[x, y]`, `[x, w]` or `[x, y, w]`.
    pub inputs: Vec<Expr>,
    /// Every named output (`"hid1:out"`, `"hid1:pre"`, …) in layer order.
    pub outputs: Vec<(String, Expr)>,
    /// The total loss: the weighted losses plus the regularizers' penalties.
    pub loss: Expr,
    /// `err` (the unregularized loss) and, for classifiers, `acc` (a fraction).
    pub monitors: Vec<(String, Expr)>,
}

impl Graph {
    /// The expression of a named output (`"hid1"` means `"hid1:out"`).
    pub fn output(&self, name: &str) -> Option<&Expr> {
        let full = if name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:out")
        };
        self.outputs
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, e)| e)
    }
}

/// A feedforward network of layers; [`Regressor`], [`Classifier`] and [`Autoencoder`] wrap one.
pub struct Network {
    kind: Kind,
    layers: Vec<Box<dyn Layer>>,
    losses: Vec<Loss>,
    options: ModelOptions,
    compiled: Mutex<Vec<(String, Function)>>,
    evaluators: Mutex<Vec<Evaluator>>,
}

/// A compiled loss-and-monitors function for [`Network::evaluate`], per set of regularizers.
struct Evaluator {
    /// The regularizers it was built for, printed.
    key: String,
    /// `loss`, then the monitors' names, in output order.
    names: Vec<String>,
    f: Function,
}

impl Network {
    /// Builds a network of the given kind from layer specs (at least an input and an output).
    pub fn new(kind: Kind, specs: Vec<LayerSpec>, options: ModelOptions) -> Result<Network> {
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
        for loss in &mut losses {
            loss.weighted = options.weighted;
        }
        let mut layers: Vec<Box<dyn Layer>> = Vec::with_capacity(specs.len());
        let last = specs.len() - 1;
        for (i, spec) in specs.into_iter().enumerate() {
            let layer = resolve(i, last, spec, &layers, kind, options.seed)?;
            if layers.iter().any(|l| l.name() == layer.name()) {
                return Err(config(
                    format!("layer `{}`", layer.name()),
                    "a layer of that name already exists",
                ));
            }
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
        for loss in &losses {
            if loss.takes_labels() != (kind == Kind::Classifier) {
                return Err(config(
                    format!("loss {}", loss.kind),
                    format!("does not fit a {kind:?}"),
                ));
            }
        }
        Ok(Network {
            kind,
            layers,
            losses,
            options,
            compiled: Mutex::new(Vec::new()),
            evaluators: Mutex::new(Vec::new()),
        })
    }

    /// The kind of model.
    pub fn kind(&self) -> Kind {
        self.kind
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

    /// Builds the graph with the given regularizers (noise and dropout included only if set).
    ///
    /// On a softmax classifier, cross-entropy and hinge losses without an explicit `output` read
    /// the logits `out:pre` (cross-entropy for stability, hinge so that its margin can be met);
    /// a `noise` or `dropout` pattern that corrupts `out:out` is then a configuration error
    /// naming the regularizer, since it would change `acc` but not the loss.
    ///
    /// Errors also include a layer whose `connect` breaks the [`Layer`] contract (no outputs, or
    /// a first output not named `out`), and a `noise` or `dropout` pattern that matches no
    /// layer's default output (the message lists them).
    pub fn build(&self, regs: &Regularizers) -> Result<Graph> {
        let input = &self.layers[0];
        let x = Expr::input_with_dims(input.name(), &[None, Some(input.size())]);
        let outputs = self.connect(&x, &[], regs)?;
        let defaults: Vec<String> = self
            .layers
            .iter()
            .map(|l| format!("{}:out", l.name()))
            .collect();
        regs.check_patterns(&defaults)?;
        let find = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, e)| e.clone())
        };
        // `connect` checked that every layer returned its `out`, so this finds it.
        let out = find(&defaults[defaults.len() - 1]).ok_or_else(|| Error::NotFound {
            what: format!("output `{}`", defaults[defaults.len() - 1]),
            available: defaults.join(", "),
        })?;
        let k = self.output_size();
        let target = match self.kind {
            Kind::Classifier => Some(Expr::labels("labels")),
            Kind::Regressor => Some(Expr::input_with_dims("targets", &[None, Some(k)])),
            Kind::Autoencoder => None,
        };
        let weights = self.options.weighted.then(|| match self.kind {
            Kind::Classifier => Expr::input_with_dims("weights", &[None]),
            _ => Expr::input_with_dims("weights", &[None, Some(k)]),
        });
        let t = target.clone().unwrap_or_else(|| x.clone());
        let named = |name: &Option<String>, what: &str| -> Result<Expr> {
            match name {
                None => Ok(out.clone()),
                Some(n) => {
                    let full = if n.contains(':') {
                        n.clone()
                    } else {
                        format!("{n}:out")
                    };
                    find(&full).ok_or_else(|| Error::NotFound {
                        what: format!("{what} `{n}`"),
                        available: outputs
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        };
        let mut terms = Vec::with_capacity(self.losses.len());
        for loss in &self.losses {
            let y = named(&loss.output, "loss output")?;
            let logits = self.loss_logits(loss, regs, &find)?;
            let term = match (&loss.kind, &logits) {
                (LossKind::CrossEntropy, Some(pre)) => {
                    Loss::cross_entropy_from_logits(pre, &t, weights.as_ref())?
                }
                (LossKind::Hinge, Some(pre)) => loss.build(pre, &t, weights.as_ref(), None)?,
                (LossKind::Gll, _) => {
                    let covar = named(&loss.covar, "gll covariance output")?;
                    if loss.covar.is_none() {
                        return Err(config(
                            "loss gll",
                            "needs `covar` naming the output that holds the covariance",
                        ));
                    }
                    loss.build(&y, &t, weights.as_ref(), Some(&covar))?
                }
                _ => loss.build(&y, &t, weights.as_ref(), None)?,
            };
            terms.push((term, loss.weight));
        }
        let err = terms[0].0.clone();
        let mut loss = terms
            .iter()
            .map(|(e, w)| e * *w)
            .reduce(|a, b| a + b)
            .expect("at least one loss");
        let weight_matrices: Vec<Expr> = self
            .params()
            .iter()
            .filter(|p| p.shape().len() > 1)
            .map(Param::expr)
            .collect();
        let hidden = self.hidden_outputs(&outputs);
        if let Some(p) = regs.penalty(&weight_matrices, &hidden, &x)? {
            loss = loss + p;
        }
        let mut monitors = vec![("err".to_string(), err)];
        for (pattern, levels) in &self.options.monitors {
            let params = self.params();
            let candidates = outputs
                .iter()
                .map(|(n, e)| (n.clone(), e.clone()))
                .chain(params.iter().map(|p| (p.name().to_string(), p.expr())));
            let mut matched = false;
            for (name, e) in candidates.filter(|(n, _)| crate::regularizers::glob(pattern, n)) {
                matched = true;
                for level in levels {
                    monitors.push((
                        format!("{name}<{level}"),
                        e.lt(&Expr::scalar(*level)).mean(),
                    ));
                }
            }
            if !matched {
                return Err(Error::NotFound {
                    what: format!("output or parameter matching monitor pattern `{pattern}`"),
                    available: outputs
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if let (Kind::Classifier, Some(labels)) = (self.kind, &target) {
            monitors.push((
                "acc".to_string(),
                Loss::accuracy(&out, labels, weights.as_ref()),
            ));
        }
        let mut inputs = vec![x];
        inputs.extend(target);
        inputs.extend(weights);
        Ok(Graph {
            inputs,
            outputs,
            loss,
            monitors,
        })
    }

    /// The hidden layers' default outputs, each with what the contractive penalty's closed form
    /// needs when the layer offers it and reads the input layer directly (deeper layers' Jacobians
    /// with respect to the input are products, left to the general computation).
    fn hidden_outputs(&self, outputs: &[(String, Expr)]) -> Vec<Hidden> {
        let find = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, e)| e.clone())
        };
        let input_out = format!("{}:out", self.layers[0].name());
        self.layers[1..self.layers.len() - 1]
            .iter()
            .filter_map(|l| {
                let out = find(&format!("{}:out", l.name()))?;
                let reads_input = matches!(l.inputs(), [(name, _)] if *name == input_out);
                let closed_form = match (reads_input, l.elementwise_weights()) {
                    (true, Some(weights)) => find(&format!("{}:pre", l.name())).and_then(|pre| {
                        find(&input_out).map(|input| Elementwise {
                            pre,
                            weights,
                            input,
                        })
                    }),
                    _ => None,
                };
                Some(Hidden { out, closed_form })
            })
            .collect()
    }

    fn is_softmax_output(&self) -> bool {
        self.layers[self.layers.len() - 1].activation() == Some("softmax")
    }

    /// Connects every layer; `feeds` replaces named default outputs (for decoding from a hidden
    /// layer), whose layers are then not computed.
    fn connect(
        &self,
        x: &Expr,
        feeds: &[(String, Expr)],
        regs: &Regularizers,
    ) -> Result<Vec<(String, Expr)>> {
        let mut outputs: Vec<(String, Expr)> = Vec::new();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let out_name = format!("{}:out", layer.name());
            if let Some((_, fed)) = feeds.iter().find(|(n, _)| *n == out_name) {
                outputs.push((out_name, fed.clone()));
                continue;
            }
            let mut args = Vec::with_capacity(layer.inputs().len());
            if i == 0 {
                args.push(x.clone());
            }
            for (name, _) in layer.inputs() {
                let e = outputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, e)| e.clone())
                    .ok_or_else(|| {
                        config(
                            format!("layer `{}`", layer.name()),
                            format!("its input `{name}` is not an earlier output"),
                        )
                    })?;
                args.push(e);
            }
            let role = if i == 0 {
                Role::Input
            } else if i < last {
                Role::Hidden
            } else {
                Role::Other
            };
            let connected = layer.connect(&args)?;
            check_contract(layer.as_ref(), &connected)?;
            for (j, (local, e)) in connected.into_iter().enumerate() {
                let name = format!("{}:{local}", layer.name());
                // Only the default output is corrupted: it is what later layers read.
                let e = if j == 0 {
                    regs.corrupt(&name, e, role, self.options.seed)
                } else {
                    e
                };
                outputs.push((name, e));
            }
        }
        Ok(outputs)
    }

    /// Compiles (once, then from the cache) a function from `x` to the named outputs.
    fn run_outputs(
        &self,
        key: &str,
        x: &Tensor,
        make: impl FnOnce(&Self) -> Result<(Vec<Expr>, Vec<Expr>)>,
    ) -> Result<Vec<Tensor>> {
        self.check_x(x)?;
        self.run_cached(key, &[x.view()], make)
    }

    /// Runs the function cached under `key` (compiled by `make` on first use) on `args`.
    fn run_cached(
        &self,
        key: &str,
        args: &[tape::TensorView<'_>],
        make: impl FnOnce(&Self) -> Result<(Vec<Expr>, Vec<Expr>)>,
    ) -> Result<Vec<Tensor>> {
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let pos = match cache.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                let (inputs, outputs) = make(self)?;
                cache.push((key.to_string(), Function::compile(&inputs, &outputs)?));
                cache.len() - 1
            }
        };
        let f = &mut cache[pos].1;
        f.run(args).map_err(|e| self.data_error(e))?;
        Ok((0..f.num_outputs())
            .map(|i| f.output(i).to_tensor())
            .collect())
    }

    fn data_error(&self, e: tape::Error) -> Error {
        match e {
            tape::Error::NonFinite { index, value, .. } => Error::Data {
                what: format!("input layer `{}`", self.layers[0].name()),
                problem: format!("value {value} at flat index {index} is not finite"),
            },
            other => Error::Tape(other),
        }
    }

    /// Checks a data matrix fits the input layer.
    pub fn check_x(&self, x: &Tensor) -> Result<()> {
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

    /// Every named output for the data `x` (no regularizers).
    pub fn feed_forward(&self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let g = self.build(&Regularizers::default())?;
        let input = g.inputs[0].clone();
        let (names, exprs): (Vec<String>, Vec<Expr>) = g.outputs.into_iter().unzip();
        let values = self.run_outputs("feed_forward", x, move |_| Ok((vec![input], exprs)))?;
        Ok(names.into_iter().zip(values).collect())
    }

    /// The named output (`"hid1"`, `"out:pre"`) for `x`, optionally with regularizer rewrites
    /// active (e.g. dropout at prediction time for Monte-Carlo estimates).
    pub fn output(&self, x: &Tensor, name: &str, regs: &Regularizers) -> Result<Tensor> {
        let key = format!("output {name} {regs:?}");
        let name = name.to_string();
        let regs = regs.clone();
        Ok(self
            .run_outputs(&key, x, move |net| {
                let g = net.build(&regs)?;
                let e = g.output(&name).cloned().ok_or_else(|| Error::NotFound {
                    what: format!("output `{name}`"),
                    available: g
                        .outputs
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                Ok((vec![g.inputs[0].clone()], vec![e]))
            })?
            .remove(0))
    }

    /// The output layer's values for `x`.
    pub fn predict_raw(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.layers[self.layers.len() - 1].name().to_string();
        self.output(x, &last, &Regularizers::default())
    }

    /// The network's values from a hidden layer's output `z` onwards (decoding): `z` replaces
    /// the default output of `layer` (a name, or an index with 0 the input layer).
    ///
    /// This is [`Network::decode_codes`] with one code and no input: when a later layer also
    /// reads an output computed before `layer` (a skip connection), it is an error naming that
    /// output; give its code too, or the input, with `decode_codes`.
    pub fn decode_from(&self, layer: &str, z: &Tensor) -> Result<Tensor> {
        self.decode_codes(&[(layer, z)], None)
    }

    /// The network's values given codes for one or more layers (decoding from several layers):
    /// each `(layer, code)` replaces that layer's default output, and only what the output layer
    /// still needs is computed. When that includes something computed from the network input
    /// (a later layer reads an earlier output no code replaces), `x` must be given and those
    /// values come from it; otherwise `x` is not used. The compiled function is cached per
    /// list of layers (and whether `x` is used), like every prediction.
    ///
    /// Errors: an unknown layer, a layer given twice, a code not shaped `[rows, layer size]`,
    /// codes (and `x`) with different row counts, a later layer reading a non-default output
    /// (such as `pre`) of a replaced layer, or a needed input without `x`.
    pub fn decode_codes(&self, codes: &[(&str, &Tensor)], x: Option<&Tensor>) -> Result<Tensor> {
        if codes.is_empty() {
            return Err(config("decoding", "needs at least one (layer, code) pair"));
        }
        let mut fed: Vec<&dyn Layer> = Vec::with_capacity(codes.len());
        for (layer, z) in codes {
            let l = self.layer(layer)?;
            if fed.iter().any(|f| f.name() == l.name()) {
                return Err(config(
                    format!("decoding from layer `{}`", l.name()),
                    "the layer is given two codes",
                ));
            }
            if z.rank() != 2 || z.shape()[1] != l.size() || z.shape()[0] != codes[0].1.shape()[0] {
                return Err(Error::Data {
                    what: format!("code for layer `{}`", l.name()),
                    problem: format!(
                        "decoding expects a matrix of shape [{}, {}], got shape {:?}",
                        codes[0].1.shape().first().copied().unwrap_or(0),
                        l.size(),
                        z.shape()
                    ),
                });
            }
            fed.push(l);
        }
        let fed: Vec<String> = fed.iter().map(|l| l.name().to_string()).collect();
        let what = || format!("decoding from `{}`", fed.join("`, `"));
        let reads = self.decoder_reads_input(&fed)?;
        let mut args: Vec<tape::TensorView<'_>> = codes.iter().map(|(_, z)| z.view()).collect();
        if !reads.is_empty() {
            let x = x.ok_or_else(|| {
                config(
                    what(),
                    format!(
                        "{}, computed from the network input: give codes for those outputs too, \
                         or the input x",
                        reads.join(", ")
                    ),
                )
            })?;
            self.check_x(x)?;
            if x.shape()[0] != codes[0].1.shape()[0] {
                return Err(Error::Data {
                    what: format!("input layer `{}`", self.layers[0].name()),
                    problem: format!(
                        "decoding needs as many input rows as code rows ({}), got {}",
                        codes[0].1.shape()[0],
                        x.shape()[0]
                    ),
                });
            }
            args.push(x.view());
        }
        let key = format!("decode {} with x: {}", fed.join(","), !reads.is_empty());
        Ok(self
            .run_cached(&key, &args, |net| net.decoder(&fed, !reads.is_empty()))?
            .remove(0))
    }

    /// What makes the decoder read the network input when the layers `fed` get codes: "layer
    /// `a` reads `b:out`" for each read that joins a value computed from a code with one
    /// computed from the input (empty when the codes suffice).
    fn decoder_reads_input(&self, fed: &[String]) -> Result<Vec<String>> {
        let last = self.layers.len() - 1;
        let is_fed = |layer: &str| fed.iter().any(|f| f == layer);
        // Each layer's reads as (index of the layer read, full name, whether a code gives it).
        let mut reads: Vec<Vec<(usize, String, bool)>> = Vec::with_capacity(last + 1);
        for l in &self.layers {
            let mut r = Vec::new();
            for (input, _) in l.inputs() {
                let (layer, output) = input.split_once(':').unwrap_or((input, "out"));
                let Some(j) = self.layers.iter().position(|m| m.name() == layer) else {
                    continue;
                };
                if is_fed(layer) && output != "out" {
                    return Err(config(
                        format!("decoding from `{layer}`"),
                        format!(
                            "layer `{}` reads `{input}`, which a code for `{layer}` (its \
                             default output) does not give",
                            l.name()
                        ),
                    ));
                }
                r.push((j, input.clone(), is_fed(layer)));
            }
            reads.push(r);
        }
        // Layers only read earlier ones: one backward sweep marks every layer still computed.
        let mut needed = vec![false; last + 1];
        needed[last] = !is_fed(self.layers[last].name());
        for i in (1..=last).rev() {
            if needed[i] {
                for (j, _, given) in &reads[i] {
                    needed[*j] |= !*given;
                }
            }
        }
        if !needed[0] {
            return Ok(Vec::new());
        }
        // Forward: which computed layers depend on the input, which on a code.
        let mut from_input = vec![false; last + 1];
        let mut from_code = vec![false; last + 1];
        from_input[0] = true;
        for i in 1..=last {
            if needed[i] {
                from_input[i] = reads[i]
                    .iter()
                    .any(|(j, _, given)| !given && from_input[*j]);
                from_code[i] = reads[i].iter().any(|(j, _, given)| *given || from_code[*j]);
            }
        }
        let mut crossing: Vec<String> = (1..=last)
            .filter(|&i| needed[i] && from_code[i])
            .flat_map(|i| {
                reads[i]
                    .iter()
                    .filter(|(j, _, given)| !given && from_input[*j])
                    .map(move |(_, input, _)| {
                        format!("layer `{}` reads `{input}`", self.layers[i].name())
                    })
            })
            .collect();
        if crossing.is_empty() {
            // The codes do not reach the output at all.
            crossing.push(format!(
                "the output layer `{}` does not depend on the codes",
                self.layers[last].name()
            ));
        }
        Ok(crossing)
    }

    /// The decoder's inputs (the codes in order, then `x` if `with_x`) and its output.
    fn decoder(&self, fed: &[String], with_x: bool) -> Result<(Vec<Expr>, Vec<Expr>)> {
        let feeds: Vec<(String, Expr)> = fed
            .iter()
            .map(|name| {
                let size = self.layer(name).map(|l| l.size())?;
                let full = format!("{name}:out");
                let e = Expr::input_with_dims(&full, &[None, Some(size)]);
                Ok((full, e))
            })
            .collect::<Result<_>>()?;
        let x = Expr::input_with_dims(self.layers[0].name(), &[None, Some(self.input_size())]);
        let outputs = self.connect(&x, &feeds, &Regularizers::default())?;
        let last = format!("{}:out", self.layers[self.layers.len() - 1].name());
        let out = outputs
            .into_iter()
            .find(|(n, _)| *n == last)
            .map(|(_, e)| e)
            .ok_or_else(|| config("decoding", format!("the graph has no `{last}`")))?;
        let mut inputs: Vec<Expr> = feeds.into_iter().map(|(_, e)| e).collect();
        if with_x {
            inputs.push(x);
        }
        Ok((inputs, vec![out]))
    }

    /// How many compiled functions the network keeps (one per distinct prediction, output or
    /// decoding request); repeated requests reuse them.
    pub fn compiled_functions(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// A trainer for this network: `algorithm` by name and `settings` as `key=value` pairs for
    /// the update rule, the loop and the regularizers together (one namespace, as in theanets).
    pub fn trainer(&self, algorithm: &str, settings: &[&str]) -> Result<Trainer> {
        let alg: Algorithm = algorithm.parse()?;
        let mut rule = RuleOptions::new(alg);
        let mut lp = LoopOptions {
            seed: self.options.seed,
            ..Default::default()
        };
        let mut regs = Regularizers::default();
        for pair in settings {
            let (k, v) = optim::options::split_pair(pair)?;
            if Regularizers::KEYS.contains(&k) {
                regs.set(k, v)?;
            } else if RuleOptions::keys()
                .chain(LoopOptions::keys())
                .any(|key| key == k)
            {
                optim::options::configure(&mut rule, &mut lp, [*pair])?;
            } else {
                let all: Vec<&str> = RuleOptions::keys()
                    .chain(LoopOptions::keys())
                    .chain(Regularizers::KEYS.iter().copied())
                    .collect();
                return Err(crate::error::unknown_key(k, &all));
            }
        }
        self.trainer_with(rule, lp, &regs)
    }

    /// A trainer from typed options.
    pub fn trainer_with(
        &self,
        rule: RuleOptions,
        lp: LoopOptions,
        regs: &Regularizers,
    ) -> Result<Trainer> {
        let g = self.build(regs)?;
        let mut trainer = Trainer::new(&g.loss, &self.params(), &g.inputs, &g.monitors, rule, lp)?;
        if regs.rewrites() && !regs.noisy_validation {
            // Validate the model as it will predict: penalties kept, noise and dropout off.
            let clean = self.build(&regs.without_rewrites())?;
            trainer.validate_with(&clean.inputs, &clean.loss, &clean.monitors)?;
        }
        Ok(trainer)
    }

    /// The loss and monitors (`loss`, `err`, `acc` for classifiers, and the model's own
    /// monitors) on a data set given as arrays in training order (`[x]`, `[x, y]`, `[x, w]`
    /// or `[x, y, w]`), without training. `loss` includes the penalties of `regs`; pass
    /// `Regularizers::default()` for the bare loss. Noise and dropout in `regs` are applied, as
    /// they are during training. Values are means over rows, computed in batches of
    /// [`EVALUATE_BATCH`] rows by a function compiled once per set of regularizers.
    ///
    /// ```
    /// use nets::{Classifier, Regularizers};
    /// use nets::tape::Tensor;
    /// let net = Classifier::new(&[2, 3, 2])?;
    /// let x = Tensor::new(&[2, 2], vec![0.0, 1.0, 1.0, 0.0])?;
    /// let y = Tensor::vector(&[0.0, 1.0]);
    /// let m = net.evaluate(&[x, y], &Regularizers::default())?;
    /// assert_eq!(m.loss(), m.get("err").unwrap()); // no penalty asked for
    /// assert!((0.0..=1.0).contains(&m.get("acc").unwrap()));
    /// # Ok::<(), nets::Error>(())
    /// ```
    pub fn evaluate(&self, data: &[Tensor], regs: &Regularizers) -> Result<Monitors> {
        self.check_data(data)?;
        let key = format!("{regs:?}");
        let mut cache = self.evaluators.lock().unwrap_or_else(|e| e.into_inner());
        let pos = match cache.iter().position(|e| e.key == key) {
            Some(p) => p,
            None => {
                let g = self.build(regs)?;
                let mut outputs = vec![g.loss.clone()];
                outputs.extend(g.monitors.iter().map(|(_, e)| e.clone()));
                let names = std::iter::once("loss".to_string())
                    .chain(g.monitors.iter().map(|(n, _)| n.clone()))
                    .collect();
                let f = Function::compile(&g.inputs, &outputs)?;
                cache.push(Evaluator { key, names, f });
                cache.len() - 1
            }
        };
        let Evaluator { names, f, .. } = &mut cache[pos];
        let rows = data[0].shape()[0];
        let mut sums = vec![0.0f64; names.len()];
        let mut start = 0;
        while start < rows {
            let end = rows.min(start + EVALUATE_BATCH);
            let shapes: Vec<Vec<usize>> = data
                .iter()
                .map(|t| {
                    let mut s = t.shape().to_vec();
                    s[0] = end - start;
                    s
                })
                .collect();
            let views = data
                .iter()
                .zip(&shapes)
                .map(|(t, shape)| {
                    let width: usize = t.shape()[1..].iter().product();
                    TensorView::new(shape, &t.data()[start * width..end * width])
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            f.run(&views).map_err(|e| self.data_error(e))?;
            for (k, s) in sums.iter_mut().enumerate() {
                *s += (end - start) as f64 * f64::from(f.output(k).data()[0]);
            }
            start = end;
        }
        Ok(Monitors(
            names
                .iter()
                .cloned()
                .zip(sums.iter().map(|s| (s / rows as f64) as f32))
                .collect(),
        ))
    }

    /// The loss (with the penalties of `regs`) on `data`; see [`Network::evaluate`].
    pub fn loss(&self, data: &[Tensor], regs: &Regularizers) -> Result<f32> {
        Ok(self.evaluate(data, regs)?.loss())
    }

    /// Checks training-ordered arrays: how many, the input's width, one row count for all, and
    /// the labels of a classifier.
    fn check_data(&self, data: &[Tensor]) -> Result<()> {
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
        if self.kind == Kind::Classifier {
            self.check_labels(&data[0], &data[1])?;
        }
        Ok(())
    }
}

/// Rows per batch in [`Network::evaluate`]: large enough to keep the products efficient, small
/// enough that the intermediate values of a wide network stay modest.
pub const EVALUATE_BATCH: usize = 1024;

/// The [`Layer`] contract on what `connect` returned: the default output `out` first (later
/// layers, losses and predictions read it), and no name twice.
fn check_contract(layer: &dyn Layer, outputs: &[(String, Expr)]) -> Result<()> {
    let what = || format!("layer `{}`", layer.name());
    match outputs.first() {
        None => {
            return Err(config(
                what(),
                "connect returned no outputs; a layer must return its default output `out` first",
            ))
        }
        Some((first, _)) if first != "out" => {
            return Err(config(
                what(),
                format!(
                    "connect returned `{first}` first; a layer must return its default output \
                     `out` first (got {})",
                    outputs
                        .iter()
                        .map(|(n, _)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
        _ => {}
    }
    for (i, (name, _)) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|(n, _)| n == name) {
            return Err(config(
                what(),
                format!("connect returned output `{name}` twice"),
            ));
        }
    }
    Ok(())
}

/// Turns the spec at position `i` (of `0..=last`) into a layer, given the layers before it.
fn resolve(
    i: usize,
    last: usize,
    spec: LayerSpec,
    before: &[Box<dyn Layer>],
    kind: Kind,
    seed: u64,
) -> Result<Box<dyn Layer>> {
    let name = spec.name.clone().unwrap_or_else(|| match i {
        0 => "in".to_string(),
        _ if i == last => "out".to_string(),
        _ => format!("hid{i}"),
    });
    let what = format!("layer `{name}`");
    if i == 0 {
        return match spec.form {
            Form::Input | Form::Feedforward if spec.custom.is_none() => {
                let size = spec
                    .size
                    .ok_or_else(|| config(what, "the input layer needs a size"))?;
                Ok(Box::new(Input::new(&name, size)))
            }
            _ => Err(config(what, "the first layer must be an input layer")),
        };
    }
    if spec.form == Form::Input {
        return Err(config(what, "only the first layer can be an input layer"));
    }
    let inputs: Vec<(String, usize)> = if spec.inputs.is_empty() {
        let prev = &before[i - 1];
        vec![(format!("{}:out", prev.name()), prev.size())]
    } else {
        spec.inputs
            .iter()
            .map(|s| resolve_input(s, before, &what))
            .collect::<Result<_>>()?
    };
    let default_activation = if i < last {
        "relu"
    } else if kind == Kind::Classifier {
        "softmax"
    } else {
        "linear"
    };
    let activation = spec
        .activation
        .clone()
        .unwrap_or_else(|| default_activation.to_string());
    if let Some(make) = &spec.custom {
        let size = spec.size.unwrap_or(0);
        let rng = Mutex::new(Rng::from_name(seed, &format!("init.{name}")));
        let ctx = LayerContext {
            name: name.clone(),
            size,
            inputs,
            activation,
            rng,
        };
        return make(&ctx);
    }
    match &spec.form {
        Form::Feedforward | Form::Classifier => {
            let size = spec
                .size
                .ok_or_else(|| config(what.clone(), "needs a size"))?;
            let act = if spec.form == Form::Classifier {
                "softmax".to_string()
            } else {
                activation
            };
            Ok(Box::new(Feedforward::new(
                &name,
                size,
                &inputs,
                &act,
                &spec.weights,
                &spec.bias,
                seed,
            )?))
        }
        Form::Tied => {
            if inputs.len() != 1 {
                return Err(config(what, "a tied layer reads exactly one input"));
            }
            let partner = find_partner(&spec, before, &what)?;
            let w = partner
                .params()
                .into_iter()
                .find(|p| p.shape().len() == 2)
                .ok_or_else(|| {
                    config(
                        what.clone(),
                        format!("its partner `{}` has no weight matrix", partner.name()),
                    )
                })?;
            Ok(Box::new(Tied::new(
                &name,
                inputs[0].clone(),
                &w,
                &activation,
                &spec.bias,
                seed,
            )?))
        }
        form => {
            let size = spec
                .size
                .ok_or_else(|| config(what.clone(), "needs a size"))?;
            Ok(Box::new(Combine::new(&name, size, &inputs, form.clone())?))
        }
    }
}

/// `"hid1"` or `"hid1:out"` (or another output of an earlier layer) → its full name and width.
fn resolve_input(s: &str, before: &[Box<dyn Layer>], what: &str) -> Result<(String, usize)> {
    let (layer, output) = s.split_once(':').unwrap_or((s, "out"));
    before
        .iter()
        .find(|l| l.name() == layer)
        .map(|l| (format!("{layer}:{output}"), l.size()))
        .ok_or_else(|| {
            config(
                what.to_string(),
                format!(
                    "input `{s}` names no earlier layer; earlier layers: {}",
                    before
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

/// The partner of a tied layer: named, or found as theanets does — walking back over the earlier
/// layers counting +1 for each tied layer and −1 for each other, the first to bring the count to
/// zero (this pairs the layers of a mirrored autoencoder from the middle out).
fn find_partner<'a>(
    spec: &LayerSpec,
    before: &'a [Box<dyn Layer>],
    what: &str,
) -> Result<&'a dyn Layer> {
    if let Some(p) = &spec.partner {
        return before
            .iter()
            .find(|l| l.name() == p)
            .map(|l| l.as_ref())
            .ok_or_else(|| {
                config(
                    what.to_string(),
                    format!("its partner `{p}` is not an earlier layer"),
                )
            });
    }
    let mut count = 1i32;
    for l in before.iter().rev() {
        if l.is_tied() {
            count += 1;
        } else {
            count -= 1;
        }
        if count == 0 {
            if l.params().is_empty() {
                break;
            }
            return Ok(l.as_ref());
        }
    }
    Err(config(
        what.to_string(),
        "no earlier layer to tie to; name one with .partner(…)",
    ))
}

macro_rules! model {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(pub Network);

        impl $name {
            /// A model from layer sizes, input first: `[64, 100, 10]`.
            pub fn new(sizes: &[usize]) -> Result<$name> {
                $name::build(
                    sizes.iter().map(|&s| LayerSpec::from(s)).collect(),
                    ModelOptions::default(),
                )
            }

            /// A model from layer specs and options.
            pub fn build(specs: Vec<LayerSpec>, options: ModelOptions) -> Result<$name> {
                Ok($name(Network::new($kind, specs, options)?))
            }
        }

        impl std::ops::Deref for $name {
            type Target = Network;
            fn deref(&self) -> &Network {
                &self.0
            }
        }
    };
}

model!(
    Regressor,
    Kind::Regressor,
    "A network that predicts real-valued targets (mean squared error by default)."
);
model!(
    Classifier,
    Kind::Classifier,
    "A network that predicts class labels (softmax output, cross-entropy by default)."
);
model!(
    Autoencoder,
    Kind::Autoencoder,
    "A network trained to reproduce its input (mean squared error by default)."
);

impl Network {
    /// The logits a label loss reads instead of the output, if it does: with a softmax output
    /// and no explicit `output`, cross-entropy is computed from `out:pre` (stably) and hinge runs
    /// on those scores (on probabilities its margin could never be met). The loss then never
    /// sees noise or dropout on `out:out`, which would still change `acc` and predictions made
    /// with the regularizers, so such a corruption is refused here rather than silently left
    /// out of the loss (corrupted probabilities are not a distribution anyway).
    fn loss_logits(
        &self,
        loss: &Loss,
        regs: &Regularizers,
        find: &dyn Fn(&str) -> Option<Expr>,
    ) -> Result<Option<Expr>> {
        let reads_logits = self.kind == Kind::Classifier
            && loss.output.is_none()
            && loss.takes_labels()
            && self.is_softmax_output();
        if !reads_logits {
            return Ok(None);
        }
        let last = self.layers[self.layers.len() - 1].name();
        let out = format!("{last}:out");
        if let Some((key, pattern)) = corrupting_glob(regs, &out) {
            return Err(config(
                format!("regularizer `{key}` (pattern `{pattern}`)"),
                format!(
                    "it corrupts `{out}`, the softmax output of the classifier, but the `{}` \
                     loss reads the logits `{last}:pre`, so it would change `acc` and not the \
                     loss; use a pattern that leaves the output layer out, e.g. `hid*:out`",
                    loss.kind
                ),
            ));
        }
        Ok(find(&format!("{last}:pre")))
    }
}

/// The dropout or noise setting `(key, pattern)` that corrupts the output `name`, if any: the
/// last matching pattern wins, as when the graph is built, and a value of 0 corrupts nothing.
fn corrupting_glob(regs: &Regularizers, name: &str) -> Option<(&'static str, String)> {
    [("dropout", &regs.dropout), ("noise", &regs.noise)]
        .into_iter()
        .find_map(|(key, list)| {
            list.iter()
                .rev()
                .find(|(pattern, _)| glob(pattern, name))
                .filter(|(_, v)| *v > 0.0)
                .map(|(pattern, _)| (key, pattern.clone()))
        })
}

/// R² = 1 − Σ w(y − ŷ)² / Σ w(y − ȳ)² over all target values pooled (as theanets), with
/// ȳ = Σ w·y / Σ w the weighted mean (theanets uses the plain mean). The weighted mean is the
/// constant that minimises the weighted squared error, so the best constant prediction scores
/// exactly 0 under any weights; it is also what scikit-learn's `r2_score(sample_weight=…)` uses.
/// Unit (or constant) weights give the unweighted value.
fn r_squared(y: &[f32], yhat: &[f32], w: Option<&[f32]>) -> f32 {
    let weight = |i: usize| w.map_or(1.0, |w| f64::from(w[i]));
    let total: f64 = (0..y.len()).map(weight).sum();
    let mean = (0..y.len())
        .map(|i| weight(i) * f64::from(y[i]))
        .sum::<f64>()
        / total;
    let (mut res, mut tot) = (0.0f64, 0.0f64);
    for i in 0..y.len() {
        res += weight(i) * (f64::from(y[i]) - f64::from(yhat[i])).powi(2);
        tot += weight(i) * (f64::from(y[i]) - mean).powi(2);
    }
    (1.0 - res / tot) as f32
}

fn check_weights(w: Option<&Tensor>, want: &[usize]) -> Result<()> {
    match w {
        Some(w) if w.shape() != want => Err(Error::Data {
            what: "weights".into(),
            problem: format!("expected shape {want:?}, got {:?}", w.shape()),
        }),
        _ => Ok(()),
    }
}

impl Regressor {
    /// Predictions for `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_raw(x)
    }

    /// R² of the predictions for `x` against `y`, optionally weighted by `w` (shaped like `y`):
    /// `1 − Σ w(y − ŷ)² / Σ w(y − ȳ)²`, pooled over all values of `y` (theanets' one global mean,
    /// not scikit-learn's per-column average). ȳ is the *weighted* mean `Σ w·y / Σ w`, as in
    /// scikit-learn's `r2_score(sample_weight=…)`, where theanets takes the plain mean: the
    /// weighted mean is the best constant prediction under the weights, so that constant scores
    /// exactly 0 and a model scores above 0 only if it beats it. Without weights (or with
    /// constant ones) both definitions agree.
    pub fn score(&self, x: &Tensor, y: &Tensor, w: Option<&Tensor>) -> Result<f32> {
        let yhat = self.predict(x)?;
        if y.shape() != yhat.shape() {
            return Err(Error::Data {
                what: "targets".into(),
                problem: format!("expected shape {:?}, got {:?}", yhat.shape(), y.shape()),
            });
        }
        check_weights(w, y.shape())?;
        Ok(r_squared(y.data(), yhat.data(), w.map(Tensor::data)))
    }
}

impl Autoencoder {
    /// Reconstructions of `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_raw(x)
    }

    /// R² of the reconstruction of `x`, optionally weighted by `w` (shaped like `x`), defined as
    /// for [`Regressor::score`] (pooled over all values, weighted mean of `x`).
    pub fn score(&self, x: &Tensor, w: Option<&Tensor>) -> Result<f32> {
        let yhat = self.predict(x)?;
        check_weights(w, x.shape())?;
        Ok(r_squared(x.data(), yhat.data(), w.map(Tensor::data)))
    }

    fn middle(&self, layer: Option<&str>) -> String {
        layer
            .map(str::to_string)
            .unwrap_or_else(|| self.layers()[self.layers().len() / 2].name().to_string())
    }

    /// The code for `x`: the output of `layer` (default: the middle layer).
    pub fn encode(&self, x: &Tensor, layer: Option<&str>) -> Result<Tensor> {
        let l = self.middle(layer);
        self.output(x, &l, &Regularizers::default())
    }

    /// Reconstructions from codes `z` of `layer` (default: the middle layer).
    pub fn decode(&self, z: &Tensor, layer: Option<&str>) -> Result<Tensor> {
        let l = self.middle(layer);
        self.decode_from(&l, z)
    }
}

impl Classifier {
    /// The most probable class of each row, as labels.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.predict_proba(x)?;
        let k = p.shape()[1];
        let labels: Vec<f32> = p
            .data()
            .chunks(k)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0 as f32
            })
            .collect();
        Ok(Tensor::vector(&labels))
    }

    /// Class probabilities (the softmax output), one row per sample.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_raw(x)
    }

    /// The output layer's values before its activation (the logits).
    pub fn predict_logit(&self, x: &Tensor) -> Result<Tensor> {
        let last = format!("{}:pre", self.layers()[self.layers().len() - 1].name());
        self.output(x, &last, &Regularizers::default())
    }

    /// Accuracy (a fraction, weighted if `w` is given) of the predictions for `x` against `y`.
    pub fn score(&self, x: &Tensor, y: &Tensor, w: Option<&Tensor>) -> Result<f32> {
        self.check_x(x)?;
        self.check_labels(x, y)?;
        check_weights(w, y.shape())?;
        let p = self.predict(x)?;
        let (mut right, mut total) = (0.0f64, 0.0f64);
        for i in 0..y.len() {
            let wi = w.map_or(1.0, |w| f64::from(w.data()[i]));
            total += wi;
            if p.data()[i] == y.data()[i] {
                right += wi;
            }
        }
        Ok((right / total) as f32)
    }

    /// The confusion matrix of the predictions for `x`: entry `[true][predicted]` counts rows.
    pub fn confusion(&self, x: &Tensor, y: &Tensor) -> Result<Vec<Vec<usize>>> {
        self.check_labels(x, y)?;
        let p = self.predict(x)?;
        let k = self.output_size();
        let mut m = vec![vec![0usize; k]; k];
        for (t, q) in y.data().iter().zip(p.data()) {
            m[*t as usize][*q as usize] += 1;
        }
        Ok(m)
    }
}
