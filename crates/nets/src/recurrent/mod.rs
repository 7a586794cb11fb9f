//! Recurrent networks over `(batch, time, dim)` sequences: the layers `rnn`, `lstm` and `gru`
//! ([`LayerSpec::rnn`], [`LayerSpec::lstm`], [`LayerSpec::gru`]) and the models [`Regressor`],
//! [`Classifier`] and [`Autoencoder`], theanets' `theanets.recurrent` classes.
//!
//! Dense layers (and the softmax output) act on the last axis of a sequence, step by step. A
//! model's data, in training order, is:
//!
//! `[x, extra inputs…, targets, weights, mask]`
//!
//! - `x`: `(batch, time, input size)`;
//! - extra inputs: every input layer after the first, in layer order, `(batch, size)` each, read
//!   by recurrent layers as initial states ([`LayerSpec::h_0`], [`LayerSpec::c_0`]);
//! - targets: `(batch, time, output size)` for a regressor, integer labels `(batch, time)` for a
//!   classifier, none for an autoencoder (its target is `x`);
//! - weights `(batch, time)` when the model is built `weighted`;
//! - mask `(batch, time)` (1 at real steps, 0 at padding) when built [`SequenceOptions::masked`],
//!   as [`crate::data::sequences::pad`] makes it. Every recurrent layer's scan carries its state
//!   through padding and outputs zero there, and the mask multiplies the loss weights, so losses
//!   and monitors (`err`, `acc`) are means over real steps only.
//!
//! The models are [`crate::Model`]s (scores and metrics over real steps) and
//! [`crate::Experiment`] models (training, snapshots, resuming); [`Network::evaluate`] and
//! [`Network::loss`] take their data in the order above.
//!
//! Losses are means over all `batch × time` steps (weighted means when weights or a mask are
//! given), not sums over time as theanets' cross-entropy was (th#56).
//!
//! **Stateful layers** ([`LayerSpec::stateful`], issue th#132) hold their state in non-trained
//! `(batch, size)` tensors (`{layer}.state_h`, and an LSTM's `{layer}.state_c`), the initial
//! state of every call, which each prediction call ([`Regressor::predict_with`] and the like)
//! replaces with the final state of the batch it ran, until [`Regressor::reset_state`] sets
//! them back to zero. The batch size is fixed when the layer is built: a batch of another size
//! is an error naming the layer (nothing is reset).
//!
//! Training carries the state too ([`optim::Trainer::with_carried`], which
//! [`Network::trainer_with`] uses for a model with stateful layers), for truncated
//! backpropagation through time over long sequences cut into consecutive chunks: row `i` of
//! batch `k + 1` must continue row `i` of batch `k`, so the data is laid out chunk-major (all
//! sequences' first chunks, then all second chunks, …) with `batch_size` the stateful batch
//! size and `shuffle_batches` off (shuffled training data is refused). Gradients stop at the
//! chunk boundary (the carried state is a constant of the batch). The state is set to zeros
//! when a training run starts and at the start of every pass over the data; validation is a
//! pass of its own from zeros and puts the training state back afterwards. A batch of another
//! size (a short last batch: make the number of sequences a multiple of the batch size) is an
//! error naming the carried state `{layer}.state_h`, the expected and the given batch size.

pub(crate) mod graph;
mod layers;
mod metrics;

pub use layers::{project, Cell, Recurrent, RecurrentOptions};

use crate::error::{Error, Result};
use crate::layers::{Form, LayerSpec};
use crate::network::{check_finite, check_sample_weights, Kind, ModelOptions, Network};
use std::sync::Mutex;
use tape::{Function, Tensor};

/// The options of a recurrent model beyond [`ModelOptions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceOptions {
    /// Whether the data ends with a `(batch, time)` mask (1 at real steps, 0 at padding).
    pub masked: bool,
}

/// The pieces shared by the three recurrent models: the network and its compiled predictor.
struct Inner {
    net: Network,
    /// The prediction function (inputs `[x, extra inputs…, mask]`, output the last layer's
    /// `out`), compiled on first use, with the stateful layers' state updates.
    predictor: Mutex<Option<Function>>,
}

macro_rules! model {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(Inner);

        impl $name {
            /// A model from layer specs: the first is the sequence input, `(batch, time, size)`.
            pub fn build(
                specs: Vec<LayerSpec>,
                options: ModelOptions,
                sequence: SequenceOptions,
            ) -> Result<$name> {
                let net = Network::with_sequence($kind, specs, options, Some(sequence))?;
                Ok($name(Inner {
                    net,
                    predictor: Mutex::new(None),
                }))
            }

            /// A model from layer specs with default options and no mask.
            pub fn new(specs: Vec<LayerSpec>) -> Result<$name> {
                $name::build(specs, ModelOptions::default(), SequenceOptions::default())
            }

            /// The model's last layer's output for `inputs` = `[x, extra inputs…, mask]` (the
            /// mask only when the model is masked). Stateful layers then carry this batch's
            /// final states into the next call.
            pub fn predict_with(&self, inputs: &[&Tensor]) -> Result<Tensor> {
                self.0.run(inputs)
            }

            /// Loads a recurrent model of this kind saved with [`Network::save`]. A file holding
            /// a feedforward model or another kind is an [`Error::File`] saying so.
            pub fn load(path: impl AsRef<std::path::Path>) -> Result<$name> {
                let path = path.as_ref();
                let net = Network::load(path)?;
                if net.kind() != $kind || net.sequence.is_none() {
                    let found = if net.sequence.is_some() {
                        "recurrent"
                    } else {
                        "feedforward"
                    };
                    return Err(crate::file::file_error(
                        path,
                        format!(
                            "holds a {found} {:?} model, not a recurrent {:?}",
                            net.kind(),
                            $kind
                        ),
                    ));
                }
                Ok($name(Inner {
                    net,
                    predictor: Mutex::new(None),
                }))
            }

            /// Sets every stateful layer's carried state back to zeros.
            pub fn reset_state(&self) -> Result<()> {
                self.0.reset_state()
            }

            /// Checks data in training order (see the [module docs](self)): how many arrays,
            /// ranks and widths, one batch and time length for all, labels in range (naming the
            /// output layer, the sequence and the step), finite targets, valid weights and a
            /// 0/1 mask.
            pub fn check_data(&self, data: &[Tensor]) -> Result<()> {
                graph::check_data(&self.0.net, data)
            }

            /// The loss (without regularizers) on data in training order.
            pub fn loss_on(&self, data: &[Tensor]) -> Result<f32> {
                self.check_data(data)?;
                graph::loss(&self.0.net, data)
            }
        }

        impl std::ops::Deref for $name {
            type Target = Network;
            fn deref(&self) -> &Network {
                &self.0.net
            }
        }

        impl crate::experiment::Owned for $name {
            fn network(&self) -> &Network {
                &self.0.net
            }
            fn expected_kind() -> Option<Kind> {
                Some($kind)
            }
            fn expects_recurrent() -> Option<bool> {
                Some(true)
            }
            fn wrap(net: Network) -> Self {
                $name(Inner {
                    net,
                    predictor: Mutex::new(None),
                })
            }
        }
    };
}

model!(
    Regressor,
    Kind::Regressor,
    "A recurrent network predicting `(batch, time, k)` real values (mean squared error)."
);
model!(
    Classifier,
    Kind::Classifier,
    "A recurrent network predicting a class at every step (softmax over the last axis, \
     cross-entropy against `(batch, time)` labels)."
);
model!(
    Autoencoder,
    Kind::Autoencoder,
    "A recurrent network reconstructing its input sequences (mean squared error)."
);

impl Regressor {
    /// Predictions `(batch, time, k)` for `x` (a model without extra inputs or mask).
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_with(&[x])
    }
}

impl Autoencoder {
    /// Reconstructions of `x` (a model without extra inputs or mask).
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_with(&[x])
    }
}

impl Classifier {
    /// Class probabilities `(batch, time, classes)` for `x` (a model without extra inputs or
    /// mask).
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_with(&[x])
    }

    /// The most probable class at every step, `(batch, time)`, for `inputs` as in
    /// [`Classifier::predict_with`]. A NaN probability is an error naming the output layer, the
    /// sequence and the step (it would otherwise come out as class 0).
    pub fn predict_classes(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let p = self.predict_with(inputs)?;
        let k = self.output_size().max(1);
        let shape = p.shape();
        let time = shape[1].max(1);
        let out = self.layers()[self.layers().len() - 1].name().to_string();
        let labels = p
            .data()
            .chunks(k)
            .enumerate()
            .map(|(i, row)| {
                if row.iter().any(|v| v.is_nan()) {
                    return Err(Error::Data {
                        what: format!("output layer `{out}`"),
                        problem: format!(
                            "the class probabilities of sequence {}, step {} are NaN",
                            i / time,
                            i % time
                        ),
                    });
                }
                let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                Ok(best as f32)
            })
            .collect::<Result<Vec<f32>>>()?;
        Ok(Tensor::new(&shape[..shape.len() - 1], labels)?)
    }

    /// Accuracy over real steps on data in training order (masked and weighted as the model
    /// is built).
    pub fn accuracy(&self, data: &[Tensor]) -> Result<f32> {
        self.check_data(data)?;
        graph::monitor(&self.0.net, data, "acc")
    }
}

impl Inner {
    fn run(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        graph::check_inputs(&self.net, inputs)?;
        let mut slot = self
            .predictor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(graph::predictor(&self.net)?);
        }
        let f = slot.as_mut().expect("compiled just above");
        let out = f.call(inputs).map_err(Error::from)?;
        out.into_iter().next().ok_or_else(|| Error::Data {
            what: "prediction".into(),
            problem: "the compiled predictor returned no output".into(),
        })
    }

    fn reset_state(&self) -> Result<()> {
        for layer in self.net.layers() {
            for (p, _) in layer.carried_states() {
                p.set(Tensor::zeros(&p.shape()))?;
            }
        }
        Ok(())
    }
}

/// Whether spec `i` of a recurrent model is an input layer (the first always is).
pub(crate) fn is_input(spec: &LayerSpec, i: usize) -> bool {
    i == 0 || spec.form == Form::Input
}

/// Checks weights and mask arrays `(batch, time)`.
fn check_steps(what: &str, t: &Tensor, batch: usize, time: usize) -> Result<()> {
    if t.shape() != [batch, time] {
        return Err(Error::Data {
            what: what.into(),
            problem: format!(
                "expected shape [{batch}, {time}] (batch, time), got {:?}",
                t.shape()
            ),
        });
    }
    Ok(())
}

/// Checks a mask: (batch, time), each value 0 or 1, at least one real step.
fn check_mask(t: &Tensor, batch: usize, time: usize) -> Result<()> {
    check_steps("mask", t, batch, time)?;
    if let Some(i) = t.data().iter().position(|&v| v != 0.0 && v != 1.0) {
        return Err(Error::Data {
            what: "mask".into(),
            problem: format!(
                "value {} at sequence {}, step {} is not 0 or 1",
                t.data()[i],
                i / time.max(1),
                i % time.max(1)
            ),
        });
    }
    check_sample_weights(t).map_err(|_| Error::Data {
        what: "mask".into(),
        problem: "every step is masked out; at least one must be 1".into(),
    })
}

/// Checks targets `(batch, time, k)` are finite.
fn check_targets(t: &Tensor) -> Result<()> {
    check_finite("targets", t)
}
