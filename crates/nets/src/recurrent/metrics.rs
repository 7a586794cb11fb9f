//! The recurrent models as [`Model`]s: predictions, scores, losses and metrics over the real
//! (unmasked) steps of data in training order, so that generic code (and [`crate::Experiment`]
//! users) handle them as the feedforward kinds.
//!
//! [`Model::predict`] takes `x` alone, so it serves models without extra inputs or a mask
//! (others get an error listing the arrays they predict from; use `predict_with`). Scores and
//! metrics read everything they need from the data. Each call predicts once, so a stateful
//! model's carried state moves on, as with any prediction.

use super::{graph, Autoencoder, Classifier, Regressor};
use crate::error::Result;
use crate::models::{mse_mae, r_squared};
use crate::network::{Kind, Model, Network};
use tape::Tensor;

/// Checked data in training order, split into what prediction reads (`x`, extra inputs, the
/// mask) and what scoring reads (the targets, the weight of every step).
struct Parts<'a> {
    inputs: Vec<&'a Tensor>,
    targets: Option<&'a Tensor>,
    /// Weights times mask, one per `(sequence, step)`, when either is given.
    steps: Option<Vec<f32>>,
}

fn parts<'a>(net: &Network, data: &'a [Tensor]) -> Result<Parts<'a>> {
    graph::check_data(net, data)?;
    let extras = graph::extra_inputs(net).len();
    let mut next = 1 + extras;
    let targets = (net.kind() != Kind::Autoencoder).then(|| {
        next += 1;
        &data[next - 1]
    });
    let weights = net.options().weighted.then(|| {
        next += 1;
        &data[next - 1]
    });
    let mask = net.sequence.is_some_and(|s| s.masked).then(|| &data[next]);
    let mut inputs: Vec<&Tensor> = data[..1 + extras].iter().collect();
    inputs.extend(mask);
    let steps = match (weights, mask) {
        (None, None) => None,
        (w, m) => {
            let n = data[0].shape()[0] * data[0].shape()[1];
            let at = |t: Option<&Tensor>, i: usize| t.map_or(1.0, |t| t.data()[i]);
            Some((0..n).map(|i| at(w, i) * at(m, i)).collect())
        }
    };
    Ok(Parts {
        inputs,
        targets,
        steps,
    })
}

/// Each step's weight repeated for its `k` values.
fn per_value(steps: &Option<Vec<f32>>, k: usize) -> Option<Vec<f32>> {
    steps
        .as_ref()
        .map(|s| s.iter().flat_map(|&w| std::iter::repeat_n(w, k)).collect())
}

/// R², MSE and MAE of predictions against targets (`x` for an autoencoder) over real steps.
fn value_scores(yhat: &Tensor, y: &Tensor, steps: &Option<Vec<f32>>) -> (f32, f32, f32) {
    let k = y.shape().last().copied().unwrap_or(1);
    let w = per_value(steps, k);
    let r2 = r_squared(y.data(), yhat.data(), w.as_deref());
    let (mse, mae) = mse_mae(y.data(), yhat.data(), w.as_deref());
    (r2, mse, mae)
}

macro_rules! value_model {
    ($name:ident) => {
        impl Model for $name {
            fn network(&self) -> &Network {
                &self.0.net
            }
            fn predict(&self, x: &Tensor) -> Result<Tensor> {
                $name::predict(self, x)
            }
            /// R² over the real steps (weighted by weights and mask).
            fn score_on(&self, data: &[Tensor]) -> Result<f32> {
                Ok(self.metrics(data)?[0].1)
            }
            fn loss_on(&self, data: &[Tensor]) -> Result<f32> {
                $name::loss_on(self, data)
            }
            fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>> {
                let p = parts(&self.0.net, data)?;
                let yhat = self.predict_with(&p.inputs)?;
                let y = p.targets.unwrap_or(&data[0]);
                let (r2, mse, mae) = value_scores(&yhat, y, &p.steps);
                let loss = graph::loss(&self.0.net, data)?;
                Ok(vec![("r2", r2), ("mse", mse), ("mae", mae), ("loss", loss)])
            }
        }
    };
}

value_model!(Regressor);
value_model!(Autoencoder);

impl Model for Classifier {
    fn network(&self) -> &Network {
        &self.0.net
    }
    /// The class of every step, `(batch, time)`.
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predict_classes(&[x])
    }
    /// Accuracy over the real steps (weighted by weights and mask).
    fn score_on(&self, data: &[Tensor]) -> Result<f32> {
        self.accuracy(data)
    }
    fn loss_on(&self, data: &[Tensor]) -> Result<f32> {
        Classifier::loss_on(self, data)
    }
    fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>> {
        let p = parts(&self.0.net, data)?;
        let classes = self.predict_classes(&p.inputs)?;
        let labels = p.targets.unwrap_or(&data[0]);
        let (mut right, mut total) = (0.0f64, 0.0f64);
        for (i, (c, l)) in classes.data().iter().zip(labels.data()).enumerate() {
            let w = p.steps.as_ref().map_or(1.0, |s| f64::from(s[i]));
            total += w;
            if c == l {
                right += w;
            }
        }
        let loss = graph::loss(&self.0.net, data)?;
        Ok(vec![
            ("accuracy", (right / total.max(f64::MIN_POSITIVE)) as f32),
            ("loss", loss),
        ])
    }
}
