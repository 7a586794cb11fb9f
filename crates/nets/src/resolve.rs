//! From layer specs to layers: default names, inputs and activations, and the partner of a tied
//! layer, resolved in order against the layers before each one.

use crate::error::{config, Result};
use crate::layers::{Combine, Feedforward, Form, Input, Layer, LayerContext, LayerSpec, Tied};
use crate::network::Kind;
use std::sync::Mutex;
use tape::Rng;

/// Turns the spec at position `i` (of `0..=last`) into a layer, given the layers before it.
pub(crate) fn resolve(
    i: usize,
    last: usize,
    spec: LayerSpec,
    before: &[Box<dyn Layer>],
    kind: Kind,
    seed: u64,
    sequence: bool,
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
        // A recurrent model's later input layers feed initial states (theanets' `h_0`).
        return match (sequence, spec.size) {
            (true, Some(size)) if i < last => Ok(Box::new(Input::new(&name, size))),
            (true, _) if i < last => Err(config(what, "the input layer needs a size")),
            _ => Err(config(what, "only the first layer can be an input layer")),
        };
    }
    if !matches!(spec.form, Form::Recurrent(_))
        && spec.recurrent != crate::recurrent::RecurrentOptions::default()
    {
        return Err(config(
            what,
            "direction, bptt_limit, h_0, c_0, stateful and forget_bias apply to recurrent layers \
             (rnn, lstm, gru) only",
        ));
    }
    let inputs: Vec<(String, usize)> = if spec.inputs.is_empty() {
        // The previous layer that is not an input of initial states.
        let prev = before[..i]
            .iter()
            .rev()
            .find(|l| !is_state_input(l.as_ref(), before))
            .unwrap_or(&before[0]);
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
    let default_activation = match spec.form {
        // theanets' relu default makes an rnn's state grow without bound.
        Form::Recurrent(_) if spec.activation.is_none() => "tanh",
        _ => default_activation,
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
                // A classifier layer is a softmax layer; another activation would be dropped.
                match spec.activation.as_deref() {
                    None | Some("softmax") => "softmax".to_string(),
                    Some(a) => {
                        return Err(config(
                            what,
                            format!(
                                "a classifier layer always applies softmax, but `{a}` was \
                                 given; use a dense layer for another activation"
                            ),
                        ))
                    }
                }
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
        Form::Recurrent(cell) => {
            let size = spec
                .size
                .ok_or_else(|| config(what.clone(), "needs a size"))?;
            if !sequence {
                return Err(config(
                    what,
                    "a recurrent layer needs a recurrent model (nets::recurrent::Regressor, \
                     Classifier or Autoencoder), whose inputs are (batch, time, dim) sequences",
                ));
            }
            let mut inputs = inputs;
            for state in [&spec.recurrent.h_0, &spec.recurrent.c_0]
                .into_iter()
                .flatten()
            {
                let (name, width) = resolve_input(state, before, &what)?;
                let is_input = before
                    .iter()
                    .position(|l| format!("{}:out", l.name()) == name)
                    .is_some_and(|j| {
                        j > 0 && before[j].params().is_empty() && before[j].inputs().is_empty()
                    });
                if !is_input {
                    return Err(config(
                        what,
                        format!(
                            "its initial state `{state}` must name an input layer after the first"
                        ),
                    ));
                }
                inputs.push((name, width));
            }
            Ok(Box::new(crate::recurrent::Recurrent::new(
                &name,
                size,
                *cell,
                &inputs,
                &activation,
                &spec.weights,
                &spec.bias,
                spec.recurrent.clone(),
                seed,
            )?))
        }
        form => {
            let size = spec
                .size
                .ok_or_else(|| config(what.clone(), "needs a size"))?;
            // These layers only move or combine values (as in theanets): an activation given
            // to one would be dropped without a word, so it is refused.
            if let Some(a) = &spec.activation {
                return Err(config(
                    what,
                    format!(
                        "a {form:?} layer applies no activation, but `{a}` was given; put it on \
                         a dense layer"
                    ),
                ));
            }
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

/// Whether `layer` is an input layer after the first (a recurrent model's initial-state input),
/// which the next layer does not read by default.
fn is_state_input(layer: &dyn Layer, before: &[Box<dyn Layer>]) -> bool {
    layer.inputs().is_empty()
        && layer.params().is_empty()
        && before
            .first()
            .is_some_and(|first| first.name() != layer.name())
}
