//! The expression graph of a recurrent model (inputs, outputs, the loss over real steps and the
//! monitors), its compiled predictor with the stateful layers' updates, and the checks of its
//! data.

use super::{check_mask, check_steps, check_targets, is_input, SequenceOptions};
use crate::error::{config, Error, Result};
use crate::graph::Graph;
use crate::losses::{Loss, LossKind};
use crate::network::{check_sample_weights, Kind, Network};
use crate::regularizers::{Hidden, Regularizers};
use tape::{Expr, Function, Param, Tensor};

/// The model's input expressions: `x` `(batch, time, n)` first, then each extra input layer
/// `(batch, size)` with the name of its default output (which `connect` is fed).
fn input_exprs(net: &Network) -> (Expr, Vec<(String, Expr)>) {
    let layers = net.layers();
    let x = Expr::input_with_dims(layers[0].name(), &[None, None, Some(layers[0].size())]);
    let extras = layers
        .iter()
        .zip(&net.specs)
        .enumerate()
        .skip(1)
        .filter(|(i, (_, spec))| is_input(spec, *i))
        .map(|(_, (l, _))| {
            let e = Expr::input_with_dims(l.name(), &[None, Some(l.size())]);
            (format!("{}:out", l.name()), e)
        })
        .collect();
    (x, extras)
}

/// The sequence options of a recurrent network.
fn sequence(net: &Network) -> SequenceOptions {
    net.sequence.unwrap_or_default()
}

/// The model's inputs (`x`, extra inputs by output name, the mask) and every named output.
type Connected = (Expr, Vec<(String, Expr)>, Option<Expr>, Vec<(String, Expr)>);

/// Every connected output, with the mask input when the model has one.
fn connect(net: &Network, regs: &Regularizers) -> Result<Connected> {
    let (x, extras) = input_exprs(net);
    let mask = sequence(net)
        .masked
        .then(|| Expr::input_with_dims("mask", &[None, None]));
    let outputs = net.connect_masked(&x, &extras, regs, mask.as_ref())?;
    Ok((x, extras, mask, outputs))
}

/// `e` `(batch, time, k)` as rows `(batch·time, k)`, or an error naming the output.
fn rows(name: &str, e: &Expr) -> Result<Expr> {
    let dims = e.dims();
    match (dims.len(), dims.last().copied().flatten()) {
        (3, Some(k)) => Ok(e.reshape(&[-1, k as isize])),
        _ => Err(config(
            format!("output `{name}`"),
            format!("a recurrent model's outputs are (batch, time, k) sequences, got dims {dims}"),
        )),
    }
}

/// The graph of a recurrent model: outputs, loss averaged over real steps, monitors.
pub(crate) fn build(net: &Network, regs: &Regularizers) -> Result<Graph> {
    let (x, extras, mask, outputs) = connect(net, regs)?;
    let defaults: Vec<String> = net
        .layers()
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
    let last_name = &defaults[defaults.len() - 1];
    let out = find(last_name).ok_or_else(|| Error::NotFound {
        what: format!("output `{last_name}`"),
        available: defaults.join(", "),
    })?;
    let k = net.output_size();
    let target = match net.kind {
        Kind::Classifier => Some(Expr::input_with_dims("labels", &[None, None])),
        Kind::Regressor => Some(Expr::input_with_dims("targets", &[None, None, Some(k)])),
        Kind::Autoencoder => None,
    };
    let weights = net
        .options
        .weighted
        .then(|| Expr::input_with_dims("weights", &[None, None]));
    // The loss weights of every step: the weights times the mask, as one column of rows.
    let step_weights = match (&weights, &mask) {
        (Some(w), Some(m)) => Some(w * m),
        (Some(w), None) => Some(w.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    }
    .map(|w| w.reshape(&[-1]));
    let t = match (&target, net.kind) {
        (Some(l), Kind::Classifier) => l.reshape(&[-1]),
        (Some(y), _) => rows("targets", y)?,
        (None, _) => rows(&defaults[0], &x)?,
    };
    let out_rows = rows(last_name, &out)?;
    let softmax_out = net.layers()[net.layers().len() - 1].activation() == Some("softmax");
    let mut terms = Vec::new();
    for loss in &net.losses {
        let y = match &loss.output {
            None => out_rows.clone(),
            Some(n) => {
                let full = if n.contains(':') {
                    n.clone()
                } else {
                    format!("{n}:out")
                };
                let e = find(&full).ok_or_else(|| Error::NotFound {
                    what: format!("loss output `{n}`"),
                    available: crate::graph::names(&outputs),
                })?;
                rows(&full, &e)?
            }
        };
        let term = match &loss.kind {
            LossKind::Gll | LossKind::Mmd => {
                return Err(config(
                    format!("loss {}", loss.kind),
                    "is not available for recurrent models",
                ))
            }
            LossKind::CrossEntropy if loss.output.is_none() && softmax_out => {
                let pre = find(&last_name.replace(":out", ":pre")).ok_or_else(|| {
                    config("loss xe", "the softmax output layer has no `pre` output")
                })?;
                Loss::cross_entropy_from_logits(&rows(last_name, &pre)?, &t, step_weights.as_ref())?
            }
            _ => loss.build(&y, &t, step_weights.as_ref(), None)?,
        };
        terms.push((term, loss.weight));
    }
    let err = terms[0].0.clone();
    let mut loss = terms
        .iter()
        .map(|(e, w)| e * *w)
        .reduce(|a, b| a + b)
        .ok_or_else(|| config("model", "has no loss"))?;
    let weight_matrices: Vec<Expr> = net
        .params()
        .iter()
        .filter(|p| p.shape().len() > 1)
        .map(Param::expr)
        .collect();
    let hidden: Vec<Hidden> = net.layers()[1..net.layers().len() - 1]
        .iter()
        .filter_map(|l| find(&format!("{}:out", l.name())))
        .map(|out| Hidden {
            out,
            closed_form: None,
        })
        .collect();
    if let Some(p) = regs.penalty(&weight_matrices, &hidden, &x)? {
        loss = loss + p;
    }
    let mut monitors = vec![("err".to_string(), err)];
    monitors.extend(net.user_monitors(&outputs, mask.as_ref())?);
    if let (Kind::Classifier, Some(_)) = (net.kind, &target) {
        monitors.push((
            "acc".to_string(),
            Loss::accuracy(&out_rows, &t, step_weights.as_ref()),
        ));
    }
    let mut inputs = vec![x];
    inputs.extend(extras.into_iter().map(|(_, e)| e));
    inputs.extend(target);
    inputs.extend(weights);
    inputs.extend(mask);
    Ok(Graph {
        inputs,
        outputs,
        loss,
        monitors,
    })
}

/// The prediction function: `[x, extra inputs…, mask]` → the last layer's output, replacing
/// each stateful layer's carried state by its final state after every call.
pub(crate) fn predictor(net: &Network) -> Result<Function> {
    let (x, extras, mask, outputs) = connect(net, &Regularizers::default())?;
    let find = |name: &str| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| Error::NotFound {
                what: format!("output `{name}`"),
                available: crate::graph::names(&outputs),
            })
    };
    let last = net.layers()[net.layers().len() - 1].name();
    let out = find(&format!("{last}:out"))?;
    let mut updates = Vec::new();
    for layer in net.layers() {
        for (param, local) in layer.carried_states() {
            updates.push((param, find(&format!("{}:{local}", layer.name()))?));
        }
    }
    let mut inputs = vec![x];
    inputs.extend(extras.into_iter().map(|(_, e)| e));
    inputs.extend(mask);
    Ok(Function::compile_with_updates(&inputs, &[out], &updates)?)
}

/// The loss without regularizers on checked data.
pub(crate) fn loss(net: &Network, data: &[Tensor]) -> Result<f32> {
    let g = build(net, &Regularizers::default())?;
    evaluate(&g, &g.loss, data)
}

/// A monitor (`err`, `acc`) without regularizers on checked data.
pub(crate) fn monitor(net: &Network, data: &[Tensor], name: &str) -> Result<f32> {
    let g = build(net, &Regularizers::default())?;
    let e = g
        .monitors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| e.clone())
        .ok_or_else(|| Error::NotFound {
            what: format!("monitor `{name}`"),
            available: crate::graph::names(&g.monitors),
        })?;
    evaluate(&g, &e, data)
}

fn evaluate(g: &Graph, e: &Expr, data: &[Tensor]) -> Result<f32> {
    let mut f = Function::compile(&g.inputs, std::slice::from_ref(e))?;
    let args: Vec<&Tensor> = data.iter().collect();
    let out = f.call(&args)?;
    Ok(out[0].data()[0])
}

/// The extra input layers (after `x`): name and width.
pub(crate) fn extra_inputs(net: &Network) -> Vec<(String, usize)> {
    net.layers()
        .iter()
        .zip(&net.specs)
        .enumerate()
        .skip(1)
        .filter(|(i, (_, spec))| is_input(spec, *i))
        .map(|(_, (l, _))| (l.name().to_string(), l.size()))
        .collect()
}

/// Checks `x` and the extra inputs; returns (batch, time). `set`: the arrays are a data set
/// to be cut into batches, so a stateful layer needs a multiple of its batch size rather than
/// exactly it.
fn check_x_and_extras(net: &Network, arrays: &[&Tensor], set: bool) -> Result<(usize, usize)> {
    let input = &net.layers()[0];
    let x = arrays[0];
    let n = input.size();
    if x.rank() != 3 || x.shape()[2] != n || x.shape()[0] == 0 || x.shape()[1] == 0 {
        return Err(Error::Data {
            what: format!("input layer `{}`", input.name()),
            problem: format!(
                "expects sequences of shape [batch, time, {n}] with batch and time at least 1, \
                 got shape {:?}",
                x.shape()
            ),
        });
    }
    let (batch, time) = (x.shape()[0], x.shape()[1]);
    for ((name, size), t) in extra_inputs(net).iter().zip(&arrays[1..]) {
        if t.shape() != [batch, *size] {
            return Err(Error::Data {
                what: format!("input layer `{name}`"),
                problem: format!(
                    "expects an initial state of shape [{batch}, {size}] (batch, size), got {:?}",
                    t.shape()
                ),
            });
        }
        crate::network::check_finite(&format!("input layer `{name}`"), t)?;
    }
    check_stateful_rows(net, batch, set)?;
    Ok((batch, time))
}

/// The stateful batch size of a network with stateful layers (they all share it, or a batch
/// would fit none of them).
pub(crate) fn stateful_batch(net: &Network) -> Option<usize> {
    net.layers()
        .iter()
        .find_map(|l| l.carried_states().first().map(|(p, _)| p.shape()[0]))
}

/// Refuses `batch` sequences for a stateful layer built for another batch size (with `set`,
/// sequences that do not cut into whole batches of it).
fn check_stateful_rows(net: &Network, batch: usize, set: bool) -> Result<()> {
    for layer in net.layers() {
        if let Some((p, _)) = layer.carried_states().first() {
            let want = p.shape()[0];
            if set && !batch.is_multiple_of(want) {
                return Err(Error::Data {
                    what: format!("stateful layer `{}`", layer.name()),
                    problem: format!(
                        "carries state for batches of {want} sequences, but the data holds \
                         {batch}, not a multiple of {want}"
                    ),
                });
            }
            if !set && want != batch {
                return Err(Error::Data {
                    what: format!("stateful layer `{}`", layer.name()),
                    problem: format!(
                        "carries state for batches of {want} sequences, got a batch of {batch}; \
                         a stateful model needs the same batch size every call"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The data order, for messages.
fn order(net: &Network) -> String {
    let mut names = vec!["x".to_string()];
    names.extend(extra_inputs(net).into_iter().map(|(n, _)| n));
    match net.kind {
        Kind::Classifier => names.push("labels".into()),
        Kind::Regressor => names.push("targets".into()),
        Kind::Autoencoder => {}
    }
    if net.options.weighted {
        names.push("weights".into());
    }
    if sequence(net).masked {
        names.push("mask".into());
    }
    format!("[{}]", names.join(", "))
}

fn count_error(net: &Network, expected: usize, got: usize) -> Error {
    Error::Data {
        what: "data".into(),
        problem: format!(
            "this model takes {expected} arrays, {}, but {got} were given",
            order(net)
        ),
    }
}

/// Checks prediction inputs `[x, extra inputs…, mask]`.
pub(crate) fn check_inputs(net: &Network, inputs: &[&Tensor]) -> Result<()> {
    let masked = sequence(net).masked;
    let expected = 1 + extra_inputs(net).len() + usize::from(masked);
    if inputs.len() != expected {
        let mut names = vec!["x".to_string()];
        names.extend(extra_inputs(net).into_iter().map(|(n, _)| n));
        if masked {
            names.push("mask".into());
        }
        return Err(Error::Data {
            what: "prediction inputs".into(),
            problem: format!(
                "this model predicts from {expected} arrays, [{}], but {} were given",
                names.join(", "),
                inputs.len()
            ),
        });
    }
    let (batch, time) = check_x_and_extras(net, inputs, false)?;
    if masked {
        check_mask(inputs[inputs.len() - 1], batch, time)?;
    }
    Ok(())
}

/// Checks data in training order, to be computed with in one batch.
pub(crate) fn check_data(net: &Network, data: &[Tensor]) -> Result<()> {
    check_arrays(net, data, false)
}

/// Checks a data set in training order, to be cut into batches (of the stateful batch size,
/// if the model has stateful layers).
pub(crate) fn check_dataset(net: &Network, data: &[Tensor]) -> Result<()> {
    check_arrays(net, data, true)
}

fn check_arrays(net: &Network, data: &[Tensor], set: bool) -> Result<()> {
    let extras = extra_inputs(net).len();
    let has_target = net.kind != Kind::Autoencoder;
    let weighted = net.options.weighted;
    let masked = sequence(net).masked;
    let expected =
        1 + extras + usize::from(has_target) + usize::from(weighted) + usize::from(masked);
    if data.len() != expected {
        return Err(count_error(net, expected, data.len()));
    }
    if data.is_empty() {
        return Err(count_error(net, expected, 0));
    }
    let refs: Vec<&Tensor> = data.iter().collect();
    let (batch, time) = check_x_and_extras(net, &refs, set)?;
    let mut next = 1 + extras;
    if has_target {
        let y = &data[next];
        next += 1;
        match net.kind {
            Kind::Classifier => check_labels(net, y, batch, time)?,
            _ => {
                let k = net.output_size();
                if y.shape() != [batch, time, k] {
                    return Err(Error::Data {
                        what: "targets".into(),
                        problem: format!(
                            "expected shape [{batch}, {time}, {k}] (batch, time, outputs), got {:?}",
                            y.shape()
                        ),
                    });
                }
                check_targets(y)?;
            }
        }
    }
    if weighted {
        check_steps("weights", &data[next], batch, time)?;
        check_sample_weights(&data[next])?;
        next += 1;
    }
    if masked {
        check_mask(&data[next], batch, time)?;
    }
    Ok(())
}

/// Checks labels `(batch, time)`: integers in `0..classes`, naming the output layer, the
/// sequence and the step of the first bad one.
fn check_labels(net: &Network, y: &Tensor, batch: usize, time: usize) -> Result<()> {
    let out = net.layers()[net.layers().len() - 1].name();
    let what = format!("labels for layer `{out}`");
    if y.shape() != [batch, time] {
        return Err(Error::Data {
            what,
            problem: format!(
                "expected one label per step, shape [{batch}, {time}], got {:?}",
                y.shape()
            ),
        });
    }
    let classes = net.output_size();
    if let Err((i, value)) = tape::kernels::check_labels(y.data(), classes) {
        return Err(Error::Data {
            what,
            problem: format!(
                "label {value} at sequence {}, step {} is not a class in 0..{classes}",
                i / time,
                i % time
            ),
        });
    }
    Ok(())
}
