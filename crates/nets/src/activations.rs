//! Activation functions by name, as theanets spells them: plain ones (`relu`, `tanh`, `norm:z`,
//! …), parametric ones with their own trainable parameters (`prelu`, `lgrelu`, `maxout:k`), and
//! compositions written `a+b+c`, meaning `c(b(a(x)))`.
//!
//! ```
//! use nets::activations::Activation;
//! use tape::{Expr, Function, Tensor};
//! let act = Activation::build("relu+norm:mean", "hid1", 3)?;
//! assert_eq!(act.name(), "norm:mean(relu)");
//! let x = Expr::input("x", 2);
//! let mut f = Function::compile(&[x.clone()], &[act.apply(&x)])?;
//! let y = f.call(&[&Tensor::new(&[1, 3], vec![-1.0, 2.0, 4.0])?])?;
//! assert_eq!(y[0].data(), &[-2.0, 0.0, 2.0]); // relu gives [0, 2, 4], whose mean is 2
//! # Ok::<(), nets::Error>(())
//! ```

use crate::error::{config, Result};
use tape::{Expr, Param, Tensor};

/// Every activation name [`Activation::build`] accepts, in the order error messages list them.
/// `maxout:K` stands for `maxout:` followed by a positive piece count.
pub const NAMES: &[&str] = &[
    "linear",
    "identity",
    "logistic",
    "sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "relu",
    "rect:max",
    "rect:min",
    "rect:minmax",
    "norm:mean",
    "norm:max",
    "norm:std",
    "norm:z",
    "prelu",
    "leaky-relu",
    "lgrelu",
    "leaky-gain-relu",
    "maxout:K",
];

/// Added to the denominators of the `norm:*` activations, as theanets does, so an all-zero row
/// does not divide by zero.
const NORM_EPS: f32 = 1e-8;

/// Added to the variance under the square root of `norm:std`/`norm:z`. It is far below f32's
/// resolution for any row that is not constant, so values are unchanged, but it keeps the
/// gradient of `sqrt` finite when a row is constant (variance 0), where it would be infinite
/// and turn the whole backward pass into NaN.
const VAR_FLOOR: f32 = 1e-30;

/// More pieces than any maxout unit sensibly uses; the bound keeps a typo such as `maxout:40000000`
/// from trying to allocate gigabytes of parameters.
const MAX_PIECES: usize = 1024;

/// One stage of a (possibly composed) activation.
#[derive(Clone, Debug)]
enum Stage {
    Linear,
    Sigmoid,
    Tanh,
    Softmax,
    Softplus,
    Relu,
    RectMin,
    RectMinMax,
    NormMean,
    NormMax,
    NormStd,
    NormZ,
    Prelu { leak: Param },
    Lgrelu { gain: Param, leak: Param },
    Maxout { slope: Param, intercept: Param },
}

/// A built activation: its display name, its own parameters (for parametric ones) and how to
/// apply it to an expression.
#[derive(Clone, Debug)]
pub struct Activation {
    name: String,
    params: Vec<Param>,
    stages: Vec<Stage>,
}

impl Activation {
    /// Parses `spec` for a layer named `layer` whose output has `size` units.
    ///
    /// Plain names are exact and lower-case (see [`NAMES`]); the parametric ones (`prelu` /
    /// `leaky-relu`, `lgrelu` / `leaky-gain-relu`, `maxout:K`) are case-insensitive. `a+b+c`
    /// applies `a`, then `b`, then `c`, and is named `c(b(a))`; its parameters are those of the
    /// stages, in order.
    ///
    /// Parametric activations create parameters named `{layer}.{param}`, initialised to
    /// constants (no random stream needed):
    /// - `prelu`: `leak` `[size]` = 0.1; output `relu(x) + leak·min(0, x)`;
    /// - `lgrelu`: `gain` `[size]` = 1 and `leak` `[size]` = 0.1; output
    ///   `gain·relu(x) + leak·min(0, x)`;
    /// - `maxout:K`: `slope` and `intercept` `[size, K]`; output `max_m(x·slope[·, m] +
    ///   intercept[·, m])` per unit. theanets sets both to ones, which makes every piece the same
    ///   line, so they stay identical under training. Here piece `m` is instead the tangent of
    ///   `x²/2` at `c_m`, with `c` evenly spaced from 1 down to −1: slope `c_m`, intercept
    ///   `−c_m²/2`. The pieces differ and each one is the maximum on its own interval of
    ///   `[−1, 1]`, so each receives gradient from the start (with all intercepts 0, the middle
    ///   slopes would never win the max and never learn). With `K = 1` the single piece is the
    ///   identity (slope 1, intercept 0).
    ///
    /// Errors ([`crate::Error::Config`]): an unknown or empty name (the message lists every valid
    /// name), `maxout:` without a positive integer `K` (or with more than 1024 pieces), or a
    /// composition that would create two parameters of the same name.
    pub fn build(spec: &str, layer: &str, size: usize) -> Result<Activation> {
        let what = || format!("activation `{spec}` of layer `{layer}`");
        let mut name = String::new();
        let mut params: Vec<Param> = Vec::new();
        let mut stages = Vec::new();
        for part in spec.split('+') {
            let part = part.trim();
            let (stage_name, stage) =
                parse_stage(part, layer, size).map_err(|p| config(what(), p))?;
            for p in stage_params(&stage) {
                if params.iter().any(|q| q.name() == p.name()) {
                    return Err(config(
                        what(),
                        format!(
                            "two stages would both create parameter `{}`; compose each parametric \
                             activation at most once",
                            p.name()
                        ),
                    ));
                }
                params.push(p);
            }
            name = if name.is_empty() {
                stage_name
            } else {
                format!("{stage_name}({name})")
            };
            stages.push(stage);
        }
        Ok(Activation {
            name,
            params,
            stages,
        })
    }

    /// The display name, e.g. `relu`, or `norm:z(relu)` for the composition `relu+norm:z`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The activation's own trainable parameters (empty unless it is parametric).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Whether every output unit depends only on the same unit of the input (true for every
    /// stage but softmax and `norm:*`, which mix a row; maxout's pieces are per unit). The
    /// contractive penalty relies on it for its closed form.
    pub fn is_elementwise(&self) -> bool {
        self.stages.iter().all(|s| {
            !matches!(
                s,
                Stage::Softmax | Stage::NormMean | Stage::NormMax | Stage::NormStd | Stage::NormZ
            )
        })
    }

    /// Applies the activation to `x`, of shape `(batch, size)` or of higher rank: softmax and the
    /// `norm:*` stages work along the last axis, parametric stages broadcast their `[size]` (or
    /// `[size, K]`) parameters over the last axis, and the rest act elementwise. A last axis that
    /// does not match the parameters' size is reported by the graph, when it is differentiated or
    /// compiled.
    #[track_caller]
    pub fn apply(&self, x: &Expr) -> Expr {
        // A loop, not a fold: a closure would hide the caller's location from the new nodes.
        let mut y = x.clone();
        for stage in &self.stages {
            y = apply_stage(stage, &y);
        }
        y
    }
}

fn stage_params(stage: &Stage) -> Vec<Param> {
    match stage {
        Stage::Prelu { leak } => vec![leak.clone()],
        Stage::Lgrelu { gain, leak } => vec![gain.clone(), leak.clone()],
        Stage::Maxout { slope, intercept } => vec![slope.clone(), intercept.clone()],
        _ => Vec::new(),
    }
}

/// One stage's display name and definition, or what is wrong with it.
fn parse_stage(
    part: &str,
    layer: &str,
    size: usize,
) -> std::result::Result<(String, Stage), String> {
    let plain = match part {
        "linear" | "identity" => Some(Stage::Linear),
        "logistic" | "sigmoid" => Some(Stage::Sigmoid),
        "tanh" => Some(Stage::Tanh),
        "softmax" => Some(Stage::Softmax),
        "softplus" => Some(Stage::Softplus),
        "relu" | "rect:max" => Some(Stage::Relu),
        "rect:min" => Some(Stage::RectMin),
        "rect:minmax" => Some(Stage::RectMinMax),
        "norm:mean" => Some(Stage::NormMean),
        "norm:max" => Some(Stage::NormMax),
        "norm:std" => Some(Stage::NormStd),
        "norm:z" => Some(Stage::NormZ),
        _ => None,
    };
    if let Some(stage) = plain {
        return Ok((part.to_string(), stage));
    }

    let lower = part.to_ascii_lowercase();
    let param = |name: &str, shape: &[usize], value: f32| {
        Param::new(&format!("{layer}.{name}"), Tensor::full(shape, value))
    };
    match lower.as_str() {
        "prelu" | "leaky-relu" => {
            let leak = param("leak", &[size], 0.1);
            return Ok((lower, Stage::Prelu { leak }));
        }
        "lgrelu" | "leaky-gain-relu" => {
            let gain = param("gain", &[size], 1.0);
            let leak = param("leak", &[size], 0.1);
            return Ok((lower, Stage::Lgrelu { gain, leak }));
        }
        _ => {}
    }
    if lower == "maxout" || lower.starts_with("maxout:") {
        let k = lower.strip_prefix("maxout:").unwrap_or("");
        let pieces = match k.parse::<usize>() {
            Ok(n) if (1..=MAX_PIECES).contains(&n) => n,
            _ => {
                return Err(format!(
                    "maxout needs a piece count from 1 to {MAX_PIECES} after a colon, e.g. \
                     `maxout:4`; got `{part}`"
                ))
            }
        };
        let (slope, intercept) = maxout_init(size, pieces);
        let slope = Param::new(&format!("{layer}.slope"), slope);
        let intercept = Param::new(&format!("{layer}.intercept"), intercept);
        return Ok((
            format!("maxout:{pieces}"),
            Stage::Maxout { slope, intercept },
        ));
    }

    let mut problem = if part.is_empty() {
        "an empty activation name".to_string()
    } else {
        format!("unknown activation `{part}`")
    };
    if NAMES.contains(&lower.as_str()) {
        problem.push_str(&format!(
            " (plain activation names are lower-case: did you mean `{lower}`?)"
        ));
    }
    problem.push_str(&format!(
        "; valid names: {} (K a positive integer), composed with `+` as in `relu+norm:z`",
        NAMES.join(", ")
    ));
    Err(problem)
}

/// Slopes and intercepts of `maxout:pieces` for `size` units: tangents of `x²/2` at points
/// evenly spaced from 1 down to −1 (see [`Activation::build`]).
fn maxout_init(size: usize, pieces: usize) -> (Tensor, Tensor) {
    let c = |m: usize| {
        if pieces == 1 {
            1.0
        } else {
            1.0 - 2.0 * m as f32 / (pieces - 1) as f32
        }
    };
    let slope = Tensor::from_fn(&[size, pieces], |i| c(i[1]));
    let intercept = Tensor::from_fn(&[size, pieces], |i| {
        if pieces == 1 {
            0.0
        } else {
            -0.5 * c(i[1]) * c(i[1])
        }
    });
    (slope, intercept)
}

/// `sqrt(mean((x − mean)²))` over the last axis, kept as a size-1 axis, and the centred `x`.
#[track_caller]
fn centred_and_std(x: &Expr) -> (Expr, Expr) {
    let centred = x - &x.mean_axis(-1, true);
    let std = (centred.square().mean_axis(-1, true) + VAR_FLOOR).sqrt();
    (centred, std)
}

#[track_caller]
fn apply_stage(stage: &Stage, x: &Expr) -> Expr {
    let zero = || Expr::scalar(0.0);
    match stage {
        Stage::Linear => x.clone(),
        Stage::Sigmoid => x.sigmoid(),
        Stage::Tanh => x.tanh(),
        Stage::Softmax => x.softmax(),
        Stage::Softplus => x.softplus(),
        Stage::Relu => x.relu(),
        Stage::RectMin => x.minimum(&Expr::scalar(1.0)),
        Stage::RectMinMax => x.clip(0.0, 1.0),
        Stage::NormMean => x - &x.mean_axis(-1, true),
        Stage::NormMax => x / &(x.abs().max_axis(-1, true) + NORM_EPS),
        Stage::NormStd => {
            let (_, std) = centred_and_std(x);
            x / &(std + NORM_EPS)
        }
        Stage::NormZ => {
            let (centred, std) = centred_and_std(x);
            centred / (std + NORM_EPS)
        }
        Stage::Prelu { leak } => x.relu() + leak.expr() * x.minimum(&zero()),
        Stage::Lgrelu { gain, leak } => gain.expr() * x.relu() + leak.expr() * x.minimum(&zero()),
        Stage::Maxout { slope, intercept } => {
            // (..., size) → (..., size, 1) → every piece (..., size, K) → best piece (..., size).
            let pieces = x.unsqueeze(x.rank()) * slope.expr() + intercept.expr();
            pieces.max_axis(-1, false)
        }
    }
}
