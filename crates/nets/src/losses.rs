//! Loss terms: mse, mae, cross-entropy, hinge, KL divergence, Gaussian log-likelihood and maximum
//! mean discrepancy, each built as a scalar `tape` expression from a model's output and a target.
//!
//! The values follow theanets' `losses.py`, with its known bugs fixed on purpose:
//!
//! - hinge has a margin (theanets had none; `margin = 0` reproduces it) and reads scores: a softmax
//!   classifier hands it its logits, so a well separated sample costs exactly 0 (theanets ran it on
//!   probabilities, where margin 1 can never be met); PyTorch's `multi_margin_loss` is offered as
//!   [`HingeForm::MultiMargin`];
//! - KL is not wrapped in `abs` (which hid negative terms and changed the value), and is summed over
//!   the class axis as the divergence is defined, then averaged over rows;
//! - the Gaussian log-likelihood is the correct diagonal-Gaussian negative log-likelihood
//!   (theanets' log-determinant and quadratic terms were wrong); PyTorch's `gaussian_nll_loss`
//!   convention is offered as [`GllForm::Torch`].
//!
//! ```
//! use nets::losses::{Loss, LossKind};
//! use tape::{Expr, Function, Tensor};
//! let loss = Loss::new("MSE".parse::<LossKind>()?);
//! let (y, t) = (Expr::input("y", 2), Expr::input("t", 2));
//! let mut f = Function::compile(&[y.clone(), t.clone()], &[loss.build(&y, &t, None, None)?])?;
//! let out = f.call(&[&Tensor::new(&[1, 2], vec![1.0, 2.0])?, &Tensor::new(&[1, 2], vec![0.0, 0.0])?])?;
//! assert_eq!(out[0].item(), Some(2.5));
//! # Ok::<(), nets::Error>(())
//! ```

use crate::error::{config, Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tape::Expr;

/// Lower clip bound for probabilities before a `log`, as in theanets: keeps `log` finite when a
/// probability underflows to 0.
const PROB_EPS: f32 = 1e-8;

/// Subtracted from the target class's score so that it never wins the "best other class" max
/// in the hinge loss; large enough to lose to any sane score, small enough to stay finite in f32.
const HINGE_MASK: f32 = 1e9;

/// Which loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LossKind {
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    Mae,
    /// Cross-entropy of probabilities against integer class labels.
    CrossEntropy,
    /// Multiclass hinge against integer class labels, with a margin, on scores (logits): see
    /// [`HingeForm`] for the two formulas.
    Hinge,
    /// Kullback–Leibler divergence `KL(target ‖ output)` between rows of probabilities.
    Kl,
    /// Negative log-likelihood of the target under a diagonal Gaussian (mean and covariance
    /// outputs): see [`GllForm`] for the two conventions.
    Gll,
    /// Maximum mean discrepancy between the rows of the target and of the output.
    Mmd,
}

/// Every accepted name (lower case) and the kind it denotes, in the order shown in errors.
const NAMES: &[(&str, LossKind)] = &[
    ("mse", LossKind::Mse),
    ("meansquarederror", LossKind::Mse),
    ("mae", LossKind::Mae),
    ("meanabsoluteerror", LossKind::Mae),
    ("xe", LossKind::CrossEntropy),
    ("crossentropy", LossKind::CrossEntropy),
    ("cross-entropy", LossKind::CrossEntropy),
    ("hinge", LossKind::Hinge),
    ("kl", LossKind::Kl),
    ("kld", LossKind::Kl),
    ("kullbackleiblerdivergence", LossKind::Kl),
    ("gll", LossKind::Gll),
    ("gaussianloglikelihood", LossKind::Gll),
    ("mmd", LossKind::Mmd),
    ("maximummeandiscrepancy", LossKind::Mmd),
];

impl LossKind {
    /// Every kind, in declaration order.
    pub const ALL: [LossKind; 7] = [
        LossKind::Mse,
        LossKind::Mae,
        LossKind::CrossEntropy,
        LossKind::Hinge,
        LossKind::Kl,
        LossKind::Gll,
        LossKind::Mmd,
    ];

    /// The short name (`mse`, `mae`, `xe`, `hinge`, `kl`, `gll`, `mmd`), which parses back.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Mse => "mse",
            LossKind::Mae => "mae",
            LossKind::CrossEntropy => "xe",
            LossKind::Hinge => "hinge",
            LossKind::Kl => "kl",
            LossKind::Gll => "gll",
            LossKind::Mmd => "mmd",
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossKind {
    type Err = Error;

    /// Parses a loss name case-insensitively (surrounding spaces ignored); an unknown name is a
    /// configuration error listing the valid ones.
    fn from_str(s: &str) -> Result<LossKind> {
        let key = s.trim().to_lowercase();
        NAMES
            .iter()
            .find(|(name, _)| *name == key)
            .map(|&(_, kind)| kind)
            .ok_or_else(|| {
                let valid: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
                config(
                    format!("loss `{s}`"),
                    format!("unknown loss; valid names are {}", valid.join(", ")),
                )
            })
    }
}

/// Which multiclass hinge formula [`LossKind::Hinge`] computes, for scores `x` (logits, not
/// probabilities), label `y` and [`Loss::margin`] `m`, per sample before the (weighted) mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HingeForm {
    /// Crammer–Singer (default): `max(0, m + max_{j≠y} x_j − x_y)`, the worst other class only.
    /// With `m = 0` this is theanets' hinge.
    #[default]
    BestOther,
    /// PyTorch's `multi_margin_loss` with `p = 1`: `Σ_{j≠y} max(0, m − x_y + x_j) / C` over the `C`
    /// classes (every violating class counts; the true class is left out of the sum but not of
    /// `C`).
    MultiMargin,
}

/// Which Gaussian negative log-likelihood [`LossKind::Gll`] computes, for mean `μ`, covariance
/// output `c` and target `t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum GllForm {
    /// The corrected theanets form (default): `½ Σ_k [log(2πσ²) + (t−μ)²/σ²]` with
    /// `σ² = |c| + covar_eps` ([`Loss::covar_eps`]), summed over the `k` outputs of a row and
    /// averaged over rows: the true diagonal-Gaussian negative log-likelihood per sample.
    #[default]
    Corrected,
    /// PyTorch's `gaussian_nll_loss(full=False, reduction="mean")`: the mean over *all elements*
    /// of `½ [log v + (t−μ)²/v]` with `v = max(|c|, eps)`, no `log 2π` constant. `eps` is the
    /// variance floor (PyTorch's default is 1e-6, see [`GllForm::torch`]) and may be 0, which
    /// lets a zero variance give an infinite loss. [`Loss::covar_eps`] is not used. PyTorch
    /// rejects negative variances; here `|c|` is used as in the corrected form. Below the floor
    /// the gradient with respect to `c` is 0 (PyTorch clamps without tracking the clamp).
    Torch {
        /// The variance floor (finite, ≥ 0).
        eps: f32,
    },
}

impl GllForm {
    /// PyTorch's convention with its default floor, `eps = 1e-6`.
    pub fn torch() -> GllForm {
        GllForm::Torch { eps: 1e-6 }
    }
}

/// A configured loss term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// Which loss.
    pub kind: LossKind,
    /// Factor of this term in the model's total loss (default 1); [`Loss::build`] does not apply it.
    pub weight: f32,
    /// Whether a per-sample weights input is given to [`Loss::build`].
    pub weighted: bool,
    /// Hinge margin (default 1, as PyTorch's `multi_margin_loss`; 0 reproduces theanets'
    /// margin-free hinge).
    pub margin: f32,
    /// The hinge formula (default [`HingeForm::BestOther`]).
    pub hinge: HingeForm,
    /// Added to `|covar|` by the corrected Gaussian log-likelihood so the variance stays positive
    /// (default 1e-3, as in theanets).
    pub covar_eps: f32,
    /// The Gaussian log-likelihood convention (default [`GllForm::Corrected`]).
    pub gll: GllForm,
    /// Bandwidth of the Gaussian kernel `exp(−‖a−b‖²/bandwidth)` of mmd (default 1).
    pub bandwidth: f32,
    /// The model output this loss reads (`"mean"` or `"mean:out"`); default: the output layer.
    pub output: Option<String>,
    /// The output holding gll's covariance (`"covar"`); gll needs it.
    pub covar: Option<String>,
}

impl Loss {
    /// A loss of the given kind with the default options: weight 1, unweighted, margin 1,
    /// best-other hinge, `covar_eps` 1e-3, corrected gll, bandwidth 1.
    pub fn new(kind: LossKind) -> Loss {
        Loss {
            kind,
            weight: 1.0,
            weighted: false,
            margin: 1.0,
            hinge: HingeForm::BestOther,
            covar_eps: 1e-3,
            gll: GllForm::Corrected,
            bandwidth: 1.0,
            output: None,
            covar: None,
        }
    }

    /// Whether the target is integer class labels (cross-entropy, hinge) rather than floats shaped
    /// like the output.
    pub fn takes_labels(&self) -> bool {
        matches!(self.kind, LossKind::CrossEntropy | LossKind::Hinge)
    }

    /// The loss expression (a scalar), not multiplied by [`Loss::weight`] (the caller does that).
    ///
    /// - `output`: the model output `(batch, k)`; for cross-entropy it holds probabilities (a
    ///   softmax output, as in theanets), not logits (see [`Loss::cross_entropy_from_logits`]);
    ///   for hinge it holds scores, which a softmax classifier gives as its logits (`out:pre`).
    /// - `target`: labels `(batch,)` when [`Loss::takes_labels`], else floats shaped like `output`.
    /// - `weights`: per-sample weights, required exactly when [`Loss::weighted`]: `(batch,)` for
    ///   label targets; `(batch, k)` like the target otherwise (`(batch,)` row weights are accepted
    ///   too). Weighted forms are weighted means, so constant weights give the unweighted value.
    ///   mmd ignores them: its terms are means over pairs of rows, with no per-sample term to weight.
    /// - `second`: for gll, the covariance output `(batch, k)` (its absolute value plus
    ///   [`Loss::covar_eps`] is the variance) while `output` is the mean; ignored by other kinds.
    ///
    /// Formulas (`y` output, `t` target, `w` weights; unweighted forms are means):
    ///
    /// - mse `mean((y−t)²)`, weighted `Σ w(y−t)² / Σ w`; mae likewise with `|y−t|`.
    /// - cross-entropy `nll_i = −log clip(y[i, t_i], 1e-8, 1)`, averaged (weighted: `Σ w nll / Σ w`).
    /// - hinge `max(0, margin + max_{k≠t_i} y_ik − y[i, t_i])`, averaged. theanets had no margin
    ///   term; `margin = 0` reproduces it. With [`HingeForm::MultiMargin`]:
    ///   `Σ_{k≠t_i} max(0, margin − y[i, t_i] + y_ik) / k`, averaged (PyTorch's convention).
    /// - kl `Σ_k t' log(t'/y')` with `t'`, `y'` clipped into `[1e-8, 1 − 1e-8]` (in f32 the upper
    ///   bound rounds to 1), averaged over rows. It is ≥ 0 only when the rows are distributions.
    ///   theanets took the mean of the elementwise `abs` of the terms, which is not the divergence.
    /// - gll with `σ² = |covar| + covar_eps`: `½ Σ_k [log(2πσ²) + (t−μ)²/σ²]`, averaged over rows.
    ///   theanets' version was wrong (its log-determinant was `log Σλ` instead of `Σ log λ` and its
    ///   quadratic constant used `μ²λ³`); this is the correct diagonal-Gaussian negative
    ///   log-likelihood. With [`GllForm::Torch`] `{ eps }`: `v = max(|covar|, eps)` and the mean
    ///   over all elements of `½ [log v + (t−μ)²/v]` (weighted: `Σ w·term / Σ w` over elements,
    ///   `(batch,)` weights weighing whole rows).
    /// - mmd `mean K(t,t) − 2 mean K(t,y) + mean K(y,y)` with `K(a,b)_ij = exp(−‖a_i−b_j‖²/bw)`
    ///   (the biased estimator, diagonals included, as in theanets).
    ///
    /// For row losses (kl, gll) with `(batch, k)` weights, the weights multiply the terms before
    /// the sum over `k` and the row's weight in the denominator is the mean of its weights.
    ///
    /// Errors: statically known shapes that do not fit (naming the loss and the shapes), weights
    /// given or missing against [`Loss::weighted`], a missing gll covariance, out-of-range options,
    /// and any error already recorded in the operands' graphs.
    pub fn build(
        &self,
        output: &Expr,
        target: &Expr,
        weights: Option<&Expr>,
        second: Option<&Expr>,
    ) -> Result<Expr> {
        let what = self.what();
        match (self.weighted, weights) {
            (true, None) => {
                return Err(config(
                    what,
                    "weighted, but no weights expression was given",
                ))
            }
            (false, Some(_)) => {
                return Err(config(
                    what,
                    "weights were given, but the loss is not weighted",
                ))
            }
            _ => {}
        }
        self.check_options()?;
        let out_ty = output.ty()?;
        target.ty()?;
        if let Some(w) = weights {
            w.ty()?;
        }
        if out_ty.rank() != 2 {
            return Err(data(
                &what,
                format!("needs an output of rank 2 (batch, k), got {out_ty}"),
            ));
        }
        if self.takes_labels() {
            check_labels(&what, output, target)?;
            if let Some(w) = weights {
                check_fits(&what, "weights", w, "labels", target)?;
            }
        } else {
            check_fits(&what, "target", target, "output", output)?;
            if let Some(w) = weights {
                check_float_weights(&what, w, target)?;
            }
        }
        Ok(match self.kind {
            LossKind::Mse => mean_or_weighted(&(output - target).square(), weights),
            LossKind::Mae => mean_or_weighted(&(output - target).abs(), weights),
            LossKind::CrossEntropy => {
                let nll = -output.pick(target).clip(PROB_EPS, 1.0).log();
                mean_or_weighted(&nll, weights)
            }
            LossKind::Hinge => {
                let mask = class_mask(output, target);
                let truth = output.pick(target);
                let err = match self.hinge {
                    HingeForm::BestOther => {
                        let best_other = (output - &(&mask * HINGE_MASK)).max_axis(-1, false);
                        (best_other - truth + self.margin).relu()
                    }
                    HingeForm::MultiMargin => {
                        let terms = (output - &truth.unsqueeze(1) + self.margin).relu();
                        // The true class's own term is `margin`: drop it from the sum, keep it in C.
                        (&terms - &(&terms * &mask)).mean_axis(-1, false)
                    }
                };
                mean_or_weighted(&err, weights)
            }
            LossKind::Kl => {
                let t = target.clip(PROB_EPS, 1.0 - PROB_EPS);
                let y = output.clip(PROB_EPS, 1.0 - PROB_EPS);
                let terms = &t * &(t.log() - y.log());
                row_mean(&terms, weights)
            }
            LossKind::Gll => {
                let covar = match second {
                    Some(c) => c,
                    None => {
                        return Err(config(
                            what,
                            "needs the covariance output (`second`) next to the mean",
                        ))
                    }
                };
                covar.ty()?;
                check_fits(&what, "covariance", covar, "mean", output)?;
                match self.gll {
                    GllForm::Corrected => {
                        let var = covar.abs() + self.covar_eps;
                        let log_norm = var.log() + (2.0 * std::f32::consts::PI).ln();
                        let terms = (log_norm + (target - output).square() / &var) * 0.5;
                        row_mean(&terms, weights)
                    }
                    GllForm::Torch { eps } => {
                        let var = covar.abs().clip(eps, f32::INFINITY);
                        let terms = (var.log() + (target - output).square() / &var) * 0.5;
                        mean_or_weighted(&terms, weights)
                    }
                }
            }
            LossKind::Mmd => {
                let bw = self.bandwidth;
                let ktt = gaussian_kernel(target, target, bw).mean();
                let kty = gaussian_kernel(target, output, bw).mean();
                let kyy = gaussian_kernel(output, output, bw).mean();
                ktt - kty * 2.0 + kyy
            }
        })
    }

    /// Cross-entropy computed from logits, stably: `−log_softmax(logits)[i, labels_i]`, averaged
    /// (weighted: `Σ w nll / Σ w` with `weights` of shape `(batch,)`). Equals cross-entropy
    /// [`Loss::build`] on `softmax(logits)` wherever the clip at 1e-8 does not bite.
    pub fn cross_entropy_from_logits(
        logits: &Expr,
        labels: &Expr,
        weights: Option<&Expr>,
    ) -> Result<Expr> {
        let what = "loss `xe` (from logits)".to_string();
        let ty = logits.ty()?;
        labels.ty()?;
        if ty.rank() != 2 {
            return Err(data(
                &what,
                format!("needs logits of rank 2 (batch, k), got {ty}"),
            ));
        }
        check_labels(&what, logits, labels)?;
        if let Some(w) = weights {
            w.ty()?;
            check_fits(&what, "weights", w, "labels", labels)?;
        }
        let nll = -logits.log_softmax().pick(labels);
        Ok(mean_or_weighted(&nll, weights))
    }

    /// Accuracy: the fraction of rows whose argmax equals the label (first maximum on ties), or the
    /// weighted fraction `Σ w·correct / Σ w` with `(batch,)` weights. It has no gradient. Shape
    /// errors are recorded in the returned expression, as for any `tape` node.
    pub fn accuracy(output: &Expr, labels: &Expr, weights: Option<&Expr>) -> Expr {
        let correct = output.argmax().eq(labels);
        mean_or_weighted(&correct, weights)
    }

    /// How errors name this loss.
    fn what(&self) -> String {
        format!("loss `{}`", self.kind)
    }

    /// The options this kind reads must be usable numbers (the fields are public, so they are
    /// checked here rather than at construction).
    fn check_options(&self) -> Result<()> {
        let bad = |name: &str, v: f32, need: &str| {
            Err(config(
                self.what(),
                format!("{name} must be {need}, got {v}"),
            ))
        };
        match self.kind {
            LossKind::Hinge if !self.margin.is_finite() => bad("margin", self.margin, "finite"),
            LossKind::Gll => match self.gll {
                GllForm::Corrected if !(self.covar_eps.is_finite() && self.covar_eps > 0.0) => {
                    bad("covar_eps", self.covar_eps, "finite and positive")
                }
                GllForm::Torch { eps } if !(eps.is_finite() && eps >= 0.0) => {
                    bad("the torch form's eps", eps, "finite and ≥ 0")
                }
                _ => Ok(()),
            },
            LossKind::Mmd if !(self.bandwidth.is_finite() && self.bandwidth > 0.0) => {
                bad("bandwidth", self.bandwidth, "finite and positive")
            }
            _ => Ok(()),
        }
    }
}

fn data(what: &str, problem: String) -> Error {
    Error::Data {
        what: what.to_string(),
        problem,
    }
}

/// The static type of `e` for messages (callers have already checked it is not in error).
fn shape(e: &Expr) -> String {
    e.ty().map(|t| t.to_string()).unwrap_or_else(|_| "?".into())
}

/// Whether two static dims can agree at run time (unknown fits anything).
fn compatible(a: Option<usize>, b: Option<usize>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// `a` must have `b`'s rank and no known dim that contradicts `b`'s.
fn check_fits(what: &str, a_name: &str, a: &Expr, b_name: &str, b: &Expr) -> Result<()> {
    let (da, db) = (a.dims(), b.dims());
    if da.len() != db.len() || !da.iter().zip(&db).all(|(&x, &y)| compatible(x, y)) {
        return Err(data(
            what,
            format!(
                "{a_name} of shape {} does not fit {b_name} of shape {}",
                shape(a),
                shape(b)
            ),
        ));
    }
    Ok(())
}

/// Labels must be one per row of the (rank-2) output.
fn check_labels(what: &str, output: &Expr, labels: &Expr) -> Result<()> {
    let (dy, dl) = (output.dims(), labels.dims());
    if dl.len() != 1 || !compatible(dl[0], dy[0]) {
        return Err(data(
            what,
            format!(
                "needs one class label per output row: labels of shape {} against output of shape {}",
                shape(labels),
                shape(output)
            ),
        ));
    }
    Ok(())
}

/// Float-target weights: shaped like the target, or one per row.
fn check_float_weights(what: &str, w: &Expr, target: &Expr) -> Result<()> {
    let (dw, dt) = (w.dims(), target.dims());
    let per_row = dw.len() == 1 && compatible(dw[0], dt[0]);
    if per_row || check_fits(what, "weights", w, "target", target).is_ok() {
        return Ok(());
    }
    Err(data(
        what,
        format!(
            "weights of shape {} fit neither the target's shape {} nor one per row",
            shape(w),
            shape(target)
        ),
    ))
}

/// The plain mean of `err`, or `Σ w·err / Σ w`; `(batch,)` weights against a `(batch, k)` error
/// weigh whole rows (broadcast along the row so the denominator counts every element).
fn mean_or_weighted(err: &Expr, weights: Option<&Expr>) -> Expr {
    match weights {
        None => err.mean(),
        Some(w) => {
            let w = if w.rank() + 1 == err.rank() {
                w.unsqueeze(w.rank()).broadcast_like(err)
            } else {
                w.clone()
            };
            (&w * err).sum() / w.sum()
        }
    }
}

/// Sums `(batch, k)` terms over `k` and averages over rows, or takes the weighted mean of rows:
/// `(batch,)` weights weigh each row's sum; `(batch, k)` weights multiply the terms and a row's
/// weight in the denominator is the mean of its weights, so constant weights change nothing.
fn row_mean(terms: &Expr, weights: Option<&Expr>) -> Expr {
    match weights {
        None => terms.sum_axis(-1, false).mean(),
        Some(w) if w.rank() == 1 => (terms.sum_axis(-1, false) * w).sum() / w.sum(),
        Some(w) => (w * terms).sum() / w.mean_axis(-1, false).sum(),
    }
}

/// 1 at `[i, labels_i]`, 0 elsewhere, shaped like `output`. `one_hot` needs the class count at
/// build time; when the output's width is only known at run time, scatter ones into its shape.
fn class_mask(output: &Expr, labels: &Expr) -> Expr {
    match output.dims().get(1).copied().flatten() {
        Some(k) => labels.one_hot(k),
        None => {
            // `broadcast_like` reads only its second operand's shape, so the labels give the
            // batch size.
            let ones = Expr::scalar(1.0).broadcast_like(labels);
            Expr::apply(tape::Op::Scatter, &[ones, labels.clone(), output.clone()])
        }
    }
}

/// `K_ij = exp(−‖a_i − b_j‖² / bw)`, with the squared distances from matmuls:
/// `‖a_i‖² + ‖b_j‖² − 2 a_i·b_j`. Rounding can make a distance slightly negative (on the diagonal
/// of `K(a, a)` in particular); `relu` clamps it, and the true gradient there is 0 anyway.
fn gaussian_kernel(a: &Expr, b: &Expr, bw: f32) -> Expr {
    let na = a.square().sum_axis(-1, true);
    let nb = b.square().sum_axis(-1, false).unsqueeze(0);
    let d = (na + nb - a.matmul(&b.t()) * 2.0).relu();
    (-(d / bw)).exp()
}
