//! The three model kinds as wrappers around a [`Network`], with what each predicts and how each
//! is scored.

use crate::error::{Error, Result};
use crate::layers::LayerSpec;
use crate::network::{Kind, ModelOptions, Network};
use crate::regularizers::Regularizers;
use tape::Tensor;

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
