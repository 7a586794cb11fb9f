//! The three model kinds as wrappers around a [`Network`], with what each predicts and how each
//! is scored.

use crate::error::{Error, Result};
use crate::layers::LayerSpec;
use crate::network::{check_finite, check_sample_weights, Kind, ModelOptions, Network};
use crate::regularizers::Regularizers;
use tape::Tensor;

macro_rules! model {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `Send` and `Sync`: predict, score and evaluate from several threads on one shared
        /// model; see [`Network`]'s notes on threads.
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
pub(crate) fn r_squared(y: &[f32], yhat: &[f32], w: Option<&[f32]>) -> f32 {
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

/// Checks optional weights: the expected shape, then finite, ≥ 0 and not all zero.
fn check_weights(w: Option<&Tensor>, want: &[usize]) -> Result<()> {
    match w {
        Some(w) if w.shape() != want => Err(Error::Data {
            what: "weights".into(),
            problem: format!("expected shape {want:?}, got {:?}", w.shape()),
        }),
        Some(w) => check_sample_weights(w),
        None => Ok(()),
    }
}

/// The index of the largest value of each row of `p` (`k` values per row): the predicted class.
/// A NaN anywhere in a row is an error naming the output layer and the row, because comparing
/// with NaN is always false and the row would silently come out as class 0.
fn argmax_rows(p: &[f32], k: usize, layer: &str) -> Result<Vec<f32>> {
    if k == 0 {
        return Err(Error::Data {
            what: format!("output layer `{layer}`"),
            problem: "has width 0, so there is no class to predict".into(),
        });
    }
    p.chunks(k)
        .enumerate()
        .map(|(row, values)| {
            if values.iter().any(|v| v.is_nan()) {
                return Err(Error::Data {
                    what: format!("output layer `{layer}`"),
                    problem: format!(
                        "row {row} of the class probabilities is NaN (are the parameters NaN?)"
                    ),
                });
            }
            let best = values
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            Ok(best.0 as f32)
        })
        .collect()
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
        check_finite("targets", y)?;
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
    ///
    /// Errors when a row's probabilities hold a NaN (NaN parameters, say), naming the output
    /// layer and the row, rather than returning class 0; and when the output has width 0.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.predict_proba(x)?;
        let out = self.layers()[self.layers().len() - 1].name();
        let labels = argmax_rows(p.data(), self.output_size(), out)?;
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

/// What generic code needs from any model kind: its network, predictions, its score and loss on
/// a data set, and a report of its metrics. A data set is arrays in training order: `[x]` or
/// `[x, w]` for an autoencoder, `[x, y]` or `[x, y, w]` otherwise (weights only for a model built
/// `weighted`); for the recurrent models, the order of [`crate::recurrent`], scored over real
/// steps.
///
/// ```
/// use nets::{Classifier, Model, Regressor};
/// use nets::tape::Tensor;
/// fn report(model: &dyn Model, data: &[Tensor]) -> nets::Result<String> {
///     let metrics = model.metrics(data)?;
///     Ok(metrics.iter().map(|(k, v)| format!("{k}={v:.3}")).collect::<Vec<_>>().join(" "))
/// }
/// let x = Tensor::new(&[2, 2], vec![0.0, 1.0, 1.0, 0.0])?;
/// let line = report(&Classifier::new(&[2, 3, 2])?, &[x.clone(), Tensor::vector(&[0.0, 1.0])])?;
/// assert!(line.starts_with("accuracy="));
/// let line = report(&Regressor::new(&[2, 3, 1])?, &[x, Tensor::new(&[2, 1], vec![0.5, -0.5])?])?;
/// assert!(line.contains("mse=") && line.contains("mae="));
/// # Ok::<(), nets::Error>(())
/// ```
pub trait Model {
    /// The network underneath.
    fn network(&self) -> &Network;

    /// Predictions for `x`: labels for a classifier, values otherwise.
    fn predict(&self, x: &Tensor) -> Result<Tensor>;

    /// The model's score on a data set: accuracy for a classifier, R² otherwise (weighted when
    /// the data carries weights). Named `score_on` so that it does not hide the kinds' own
    /// `score(x, y, w)`.
    fn score_on(&self, data: &[Tensor]) -> Result<f32>;

    /// The loss (without regularizers) on a data set; see [`Network::loss`], which it does not
    /// hide.
    fn loss_on(&self, data: &[Tensor]) -> Result<f32> {
        self.network().loss(data, &Regularizers::default())
    }

    /// Named metrics on a data set: `accuracy` and `loss` for a classifier; `r2`, `mse`, `mae`
    /// and `loss` otherwise (each weighted when the data carries weights).
    fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>>;
}

/// `x`, the targets (`x` itself for an autoencoder) and the weights of a checked data set.
fn parts<'a>(
    net: &Network,
    data: &'a [Tensor],
) -> Result<(&'a Tensor, &'a Tensor, Option<&'a Tensor>)> {
    net.check_data(data)?;
    // An autoencoder's targets are its input; weights, when the model takes them, come last.
    let targets = usize::from(net.kind() != Kind::Autoencoder);
    let weights = net.options.weighted.then(|| &data[data.len() - 1]);
    Ok((&data[0], &data[targets], weights))
}

/// Weighted mean squared and mean absolute errors, in f64.
pub(crate) fn mse_mae(y: &[f32], yhat: &[f32], w: Option<&[f32]>) -> (f32, f32) {
    let (mut sq, mut ab, mut total) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..y.len() {
        let wi = w.map_or(1.0, |w| f64::from(w[i]));
        let d = f64::from(y[i]) - f64::from(yhat[i]);
        sq += wi * d * d;
        ab += wi * d.abs();
        total += wi;
    }
    ((sq / total) as f32, (ab / total) as f32)
}

/// R², MSE, MAE and loss of a model that predicts values.
fn value_metrics(net: &Network, data: &[Tensor], score: f32) -> Result<Vec<(&'static str, f32)>> {
    let (x, y, w) = parts(net, data)?;
    let yhat = net.predict_raw(x)?;
    let (mse, mae) = mse_mae(y.data(), yhat.data(), w.map(Tensor::data));
    let loss = net.loss(data, &Regularizers::default())?;
    Ok(vec![
        ("r2", score),
        ("mse", mse),
        ("mae", mae),
        ("loss", loss),
    ])
}

impl Model for Regressor {
    fn network(&self) -> &Network {
        &self.0
    }
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        Regressor::predict(self, x)
    }
    fn score_on(&self, data: &[Tensor]) -> Result<f32> {
        let (x, y, w) = parts(self, data)?;
        Regressor::score(self, x, y, w)
    }
    fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>> {
        value_metrics(self, data, self.score_on(data)?)
    }
}

impl Model for Autoencoder {
    fn network(&self) -> &Network {
        &self.0
    }
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        Autoencoder::predict(self, x)
    }
    fn score_on(&self, data: &[Tensor]) -> Result<f32> {
        let (x, _, w) = parts(self, data)?;
        Autoencoder::score(self, x, w)
    }
    fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>> {
        value_metrics(self, data, self.score_on(data)?)
    }
}

impl Model for Classifier {
    fn network(&self) -> &Network {
        &self.0
    }
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        Classifier::predict(self, x)
    }
    fn score_on(&self, data: &[Tensor]) -> Result<f32> {
        let (x, y, w) = parts(self, data)?;
        Classifier::score(self, x, y, w)
    }
    fn metrics(&self, data: &[Tensor]) -> Result<Vec<(&'static str, f32)>> {
        let accuracy = self.score_on(data)?;
        Ok(vec![("accuracy", accuracy), ("loss", self.loss_on(data)?)])
    }
}
