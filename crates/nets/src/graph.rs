//! The expression graph of a network for a set of regularizers: every named output, the loss
//! (weighted loss terms plus penalties) and the monitors.

use crate::error::{config, Error, Result};
use crate::layers::Layer;
use crate::losses::{Loss, LossKind};
use crate::network::{Kind, Network};
use crate::regularizers::{glob, Elementwise, Hidden, Regularizers, Role};
use tape::{Expr, Param};

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

/// The names of named expressions (outputs, monitors), comma-separated, for an error listing
/// what exists.
pub(crate) fn names(named: &[(String, Expr)]) -> String {
    named
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The named outputs of a connected network, looked up by full name (`"hid1:out"`) or by
/// layer name (`"hid1"` meaning its `out`).
struct Outputs<'a>(&'a [(String, Expr)]);

impl Outputs<'_> {
    fn get(&self, full: &str) -> Option<Expr> {
        self.0
            .iter()
            .find(|(n, _)| n == full)
            .map(|(_, e)| e.clone())
    }

    /// The output `name` refers to, or an error naming `what` asked for it.
    fn named(&self, name: &str, what: &str) -> Result<Expr> {
        let full = if name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:out")
        };
        self.get(&full).ok_or_else(|| Error::NotFound {
            what: format!("{what} `{name}`"),
            available: names(self.0),
        })
    }
}

impl Network {
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
    pub fn graph(&self, regs: &Regularizers) -> Result<Graph> {
        if self.sequence.is_some() {
            return crate::recurrent::graph::build(self, regs);
        }
        let input = &self.layers[0];
        let x = Expr::input_with_dims(input.name(), &[None, Some(input.size())]);
        let outputs = self.connect(&x, &[], regs)?;
        let defaults: Vec<String> = self
            .layers
            .iter()
            .map(|l| format!("{}:out", l.name()))
            .collect();
        regs.check_patterns(&defaults)?;
        let outs = Outputs(&outputs);
        // `connect` checked that every layer returned its `out`, so this finds it.
        let last = &defaults[defaults.len() - 1];
        let out = outs.get(last).ok_or_else(|| Error::NotFound {
            what: format!("output `{last}`"),
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
        let terms = self.loss_terms(&outs, &out, &t, weights.as_ref(), regs)?;
        let err = terms[0].0.clone();
        let mut loss = terms
            .iter()
            .map(|(e, w)| e * *w)
            .reduce(|a, b| a + b)
            .expect("a network has at least one loss");
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
        monitors.extend(self.user_monitors(outs.0, None)?);
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

    /// Each loss's term with its weight: the loss applied to its output (the network's output
    /// unless it names another, or the logits for a softmax classifier's label losses) and the
    /// target `t`.
    fn loss_terms(
        &self,
        outs: &Outputs<'_>,
        out: &Expr,
        t: &Expr,
        weights: Option<&Expr>,
        regs: &Regularizers,
    ) -> Result<Vec<(Expr, f32)>> {
        let named = |name: &Option<String>, what: &str| -> Result<Expr> {
            match name {
                None => Ok(out.clone()),
                Some(n) => outs.named(n, what),
            }
        };
        let mut terms = Vec::with_capacity(self.losses.len());
        for loss in &self.losses {
            let y = named(&loss.output, "loss output")?;
            let logits = self.loss_logits(loss, regs, &|n: &str| outs.get(n))?;
            let term = match (&loss.kind, &logits) {
                (LossKind::CrossEntropy, Some(pre)) => {
                    Loss::cross_entropy_from_logits(pre, t, weights)?
                }
                (LossKind::Hinge, Some(pre)) => loss.build(pre, t, weights, None)?,
                (LossKind::Gll, _) => {
                    if loss.covar.is_none() {
                        return Err(config(
                            "loss gll",
                            "needs `covar` naming the output that holds the covariance",
                        ));
                    }
                    let covar = named(&loss.covar, "gll covariance output")?;
                    loss.build(&y, t, weights, Some(&covar))?
                }
                _ => loss.build(&y, t, weights, None)?,
            };
            terms.push((term, loss.weight));
        }
        Ok(terms)
    }

    /// The model's own monitors: for each glob over output and parameter names and each
    /// threshold, the fraction of values below it (`"hid1:out<0.1"`). For a `(batch, time, k)`
    /// output of a masked recurrent model the fraction is over the real steps only (padding
    /// outputs are zeros and would count as small values). A glob that matches nothing is an
    /// error.
    pub(crate) fn user_monitors(
        &self,
        outputs: &[(String, Expr)],
        mask: Option<&Expr>,
    ) -> Result<Vec<(String, Expr)>> {
        let params = self.params();
        let mut monitors = Vec::new();
        for (pattern, levels) in &self.options.monitors {
            let candidates = outputs
                .iter()
                .map(|(n, e)| (n.clone(), e.clone()))
                .chain(params.iter().map(|p| (p.name().to_string(), p.expr())));
            let mut matched = false;
            for (name, e) in candidates.filter(|(n, _)| glob(pattern, n)) {
                matched = true;
                for level in levels {
                    let below = e.lt(&Expr::scalar(*level));
                    monitors.push((format!("{name}<{level}"), fraction(&below, mask)));
                }
            }
            if !matched {
                return Err(Error::NotFound {
                    what: format!("output or parameter matching monitor pattern `{pattern}`"),
                    available: names(outputs),
                });
            }
        }
        Ok(monitors)
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
    pub(crate) fn connect(
        &self,
        x: &Expr,
        feeds: &[(String, Expr)],
        regs: &Regularizers,
    ) -> Result<Vec<(String, Expr)>> {
        self.connect_masked(x, feeds, regs, None)
    }

    /// [`Network::connect`] with a `(batch, time)` mask passed to every layer (recurrent layers
    /// give it to their scan).
    pub(crate) fn connect_masked(
        &self,
        x: &Expr,
        feeds: &[(String, Expr)],
        regs: &Regularizers,
        mask: Option<&Expr>,
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
            let connected = connect_layer(layer.as_ref(), &args, mask)?;
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
}

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

/// Connects one layer and checks its graph, so that a shape error inside it is reported under
/// the layer's name (the node's location alone points into the layer's code, not at the model).
/// Its inputs were checked when the earlier layers were connected, so an error here is its own.
fn connect_layer(
    layer: &dyn Layer,
    args: &[Expr],
    mask: Option<&Expr>,
) -> Result<Vec<(String, Expr)>> {
    let context = || format!("layer `{}`: building its graph", layer.name());
    let connected = layer.connect_masked(args, mask).map_err(|e| match e {
        // The layer's own configuration errors already name it.
        Error::Tape(_) | Error::Optim(_) => e.context(context()),
        e => e,
    })?;
    check_contract(layer, &connected)?;
    for (_, e) in &connected {
        e.ty().map_err(|e| Error::from(e).context(context()))?;
    }
    Ok(connected)
}

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

/// The mean of `below` (ones and zeros), over the real steps when `below` is a `(batch, time,
/// k)` sequence and there is a mask: `Σ below·mask / (k·Σ mask)`, as the ratio of two means
/// over the `batch·time` rows.
fn fraction(below: &Expr, mask: Option<&Expr>) -> Expr {
    match (mask, below.rank(), below.dims().last().copied().flatten()) {
        (Some(m), 3, Some(k)) => {
            let rows = below.reshape(&[-1, k as isize]);
            let m = m.reshape(&[-1, 1]);
            (rows * &m).mean() / m.mean()
        }
        _ => below.mean(),
    }
}
