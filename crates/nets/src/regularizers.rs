//! Regularizers: penalties added to the loss (`weight_l2`, `weight_l1`, `hidden_l1`,
//! `contractive`) and graph rewrites that corrupt outputs during training (`input_noise`,
//! `hidden_noise`, `input_dropout`, `hidden_dropout`, and noise or dropout on any outputs matched
//! by a glob pattern). Rewrites are applied only when a graph is built for training, unless a
//! prediction explicitly asks for them.

use crate::error::{config, Error, Result};
use tape::Expr;

/// The regularizers of one training run (all off by default).
///
/// ```
/// use nets::Regularizers;
/// let mut r = Regularizers::default();
/// r.set("weight_l2", "1e-4")?;
/// r.set("dropout", "hid*:out=0.3")?;
/// assert_eq!(r.weight_l2, 1e-4);
/// assert!(r.set("wieght_l2", "1").unwrap_err().to_string().contains("weight_l2"));
/// # Ok::<(), nets::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Regularizers {
    /// `λ · mean over weight matrices of mean(W²)` (biases excluded).
    pub weight_l2: f32,
    /// `λ · mean over weight matrices of mean(|W|)`.
    pub weight_l1: f32,
    /// `λ · mean over hidden outputs of mean(|h|)`.
    pub hidden_l1: f32,
    /// `λ · mean over hidden outputs of the mean over samples of ‖∂h/∂x‖²_F`, the true
    /// Jacobian of each hidden output with respect to the network input `x` (for deeper layers,
    /// through every layer in between). theanets 0.7.3 instead penalises the squared gradient of
    /// the batch-mean activation, `mean((∂ mean(h)/∂x)²)`, which is not a Jacobian norm.
    /// A layer reading the input directly through an elementwise activation (dense or tied)
    /// uses a closed form costing two backward passes; other layers one backward pass per unit.
    /// Noise and dropout, when set, are part of the differentiated graph.
    pub contractive: f32,
    /// Standard deviation of Gaussian noise added to the input.
    pub input_noise: f32,
    /// Standard deviation of Gaussian noise added to each hidden layer's output.
    pub hidden_noise: f32,
    /// Fraction of input values dropped (the rest scaled by `1/(1−p)`).
    pub input_dropout: f32,
    /// Fraction of each hidden layer's output values dropped.
    pub hidden_dropout: f32,
    /// Gaussian noise by glob over layers' default output names, e.g. `("hid*:out", 0.1)`.
    /// A pattern that matches none of them makes building the graph an error.
    pub noise: Vec<(String, f32)>,
    /// Dropout by glob over layers' default output names (unmatched patterns are errors, as
    /// for `noise`).
    pub dropout: Vec<(String, f32)>,
    /// Validate on the corrupted graph, as theanets does, instead of on the clean one. Off by
    /// default: with noise or dropout on, early stopping then reads the model as it will
    /// predict (as PyTorch's `eval()` mode does), not one random corruption of it.
    pub noisy_validation: bool,
}

impl Regularizers {
    /// The keys [`Regularizers::set`] accepts.
    pub const KEYS: [&'static str; 11] = [
        "weight_l2",
        "weight_l1",
        "hidden_l1",
        "contractive",
        "input_noise",
        "hidden_noise",
        "input_dropout",
        "hidden_dropout",
        "noise",
        "dropout",
        "noisy_validation",
    ];

    /// Sets one regularizer from text; `noise` and `dropout` take `pattern=value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let what = format!("regularizer `{key}`");
        let number = |v: &str| -> Result<f32> {
            let x: f32 = v
                .trim()
                .parse()
                .map_err(|_| config(what.clone(), format!("`{v}` is not a number")))?;
            if !(x.is_finite() && x >= 0.0) {
                return Err(config(
                    what.clone(),
                    format!("{x} must be a finite number ≥ 0"),
                ));
            }
            Ok(x)
        };
        let fraction = |v: &str| -> Result<f32> {
            let p = number(v)?;
            if p >= 1.0 {
                return Err(config(
                    what.clone(),
                    format!("{p} must be a fraction below 1"),
                ));
            }
            Ok(p)
        };
        match key {
            "weight_l2" => self.weight_l2 = number(value)?,
            "weight_l1" => self.weight_l1 = number(value)?,
            "hidden_l1" => self.hidden_l1 = number(value)?,
            "contractive" => self.contractive = number(value)?,
            "input_noise" => self.input_noise = number(value)?,
            "hidden_noise" => self.hidden_noise = number(value)?,
            "input_dropout" => self.input_dropout = fraction(value)?,
            "hidden_dropout" => self.hidden_dropout = fraction(value)?,
            "noisy_validation" => {
                self.noisy_validation = optim::options::parse_bool(value).ok_or_else(|| {
                    config(
                        what.clone(),
                        format!("`{value}` is not a boolean (true/false, 1/0, yes/no, on/off)"),
                    )
                })?
            }
            "noise" | "dropout" => {
                let (pattern, v) = value.rsplit_once('=').ok_or_else(|| {
                    config(
                        what.clone(),
                        format!("expected pattern=value, got `{value}`"),
                    )
                })?;
                if key == "noise" {
                    self.noise.push((pattern.trim().to_string(), number(v)?));
                } else {
                    self.dropout
                        .push((pattern.trim().to_string(), fraction(v)?));
                }
            }
            _ => return Err(crate::error::unknown_key(key, &Self::KEYS)),
        }
        Ok(())
    }

    /// Whether any graph rewrite (noise or dropout) is on.
    pub fn rewrites(&self) -> bool {
        self.input_noise > 0.0
            || self.hidden_noise > 0.0
            || self.input_dropout > 0.0
            || self.hidden_dropout > 0.0
            || !self.noise.is_empty()
            || !self.dropout.is_empty()
    }

    /// The same regularizers with every rewrite (noise, dropout) off: the penalties only.
    pub fn without_rewrites(&self) -> Regularizers {
        Regularizers {
            weight_l2: self.weight_l2,
            weight_l1: self.weight_l1,
            hidden_l1: self.hidden_l1,
            contractive: self.contractive,
            ..Regularizers::default()
        }
    }

    /// Applies dropout then noise to the output `name` (`"hid1:out"`), given whether it is the
    /// input layer's or a hidden layer's default output. `seed` is the model's master seed.
    pub(crate) fn corrupt(&self, name: &str, x: Expr, role: Role, seed: u64) -> Expr {
        let mut p = match role {
            Role::Input => self.input_dropout,
            Role::Hidden => self.hidden_dropout,
            Role::Other => 0.0,
        };
        for (pattern, q) in &self.dropout {
            if glob(pattern, name) {
                p = *q;
            }
        }
        let mut std = match role {
            Role::Input => self.input_noise,
            Role::Hidden => self.hidden_noise,
            Role::Other => 0.0,
        };
        for (pattern, s) in &self.noise {
            if glob(pattern, name) {
                std = *s;
            }
        }
        let mut out = x;
        if p > 0.0 {
            out = out.dropout(p, tape::rng::stream_seed(seed, &format!("dropout.{name}")));
        }
        if std > 0.0 {
            out = out.add_noise(std, tape::rng::stream_seed(seed, &format!("noise.{name}")));
        }
        out
    }

    /// Checks that every `noise` and `dropout` pattern matches at least one of `outputs`, the
    /// layers' default outputs (the only ones corrupted): a pattern that matches nothing would
    /// silently do nothing, as a mistyped monitor pattern would.
    pub(crate) fn check_patterns(&self, outputs: &[String]) -> Result<()> {
        let globs = self.noise.iter().map(|(p, _)| ("noise", p));
        for (key, pattern) in globs.chain(self.dropout.iter().map(|(p, _)| ("dropout", p))) {
            if !outputs.iter().any(|name| glob(pattern, name)) {
                return Err(Error::NotFound {
                    what: format!(
                        "layer output matching {key} pattern `{pattern}` (patterns match \
                         layers' default outputs)"
                    ),
                    available: outputs.join(", "),
                });
            }
        }
        Ok(())
    }

    /// The penalty terms (already weighted), given the weight matrices, the hidden outputs and the
    /// input expression.
    pub(crate) fn penalty(
        &self,
        weights: &[Expr],
        hidden: &[Hidden],
        input: &Expr,
    ) -> Result<Option<Expr>> {
        let mut terms: Vec<Expr> = Vec::new();
        let mean_of = |xs: Vec<Expr>| -> Option<Expr> {
            let n = xs.len() as f32;
            xs.into_iter().reduce(|a, b| a + b).map(|s| s * (1.0 / n))
        };
        if self.weight_l2 > 0.0 {
            if let Some(t) = mean_of(weights.iter().map(|w| w.square().mean()).collect()) {
                terms.push(t * self.weight_l2);
            }
        }
        if self.weight_l1 > 0.0 {
            if let Some(t) = mean_of(weights.iter().map(|w| w.abs().mean()).collect()) {
                terms.push(t * self.weight_l1);
            }
        }
        if self.hidden_l1 > 0.0 {
            if let Some(t) = mean_of(hidden.iter().map(|h| h.out.abs().mean()).collect()) {
                terms.push(t * self.hidden_l1);
            }
        }
        if self.contractive > 0.0 {
            let mut norms = Vec::new();
            for h in hidden {
                norms.push(match &h.closed_form {
                    Some(c) => jacobian_norm_closed(&h.out, c, input)?,
                    None => jacobian_norm(&h.out, input)?,
                });
            }
            if let Some(t) = mean_of(norms) {
                terms.push(t * self.contractive);
            }
        }
        Ok(terms.into_iter().reduce(|a, b| a + b))
    }
}

/// A hidden layer's default output, as the penalties see it (after its dropout and noise).
pub(crate) struct Hidden {
    /// The output.
    pub(crate) out: Expr,
    /// What the contractive penalty's closed form needs, when it applies.
    pub(crate) closed_form: Option<Elementwise>,
}

/// A hidden output `h = f(pre)` with `pre = u·W + b`, `f` acting on each unit alone (dropout and
/// noise on `h` included) and `u` the input layer's output, itself `x` or an elementwise
/// corruption of it (dropout, noise).
pub(crate) struct Elementwise {
    /// `pre`, the expression `f` is applied to.
    pub(crate) pre: Expr,
    /// `W`, input width × units.
    pub(crate) weights: Expr,
    /// `u`, the layer's input.
    pub(crate) input: Expr,
}

/// The mean over samples of ‖∂h/∂x‖²_F in closed form. The Jacobian of one sample is
/// `diag(f′(pre))·Wᵀ·diag(u′(x))`, so its squared Frobenius norm is
/// `Σ_j f′_j² Σ_i W_ij² u′_i²`. Both diagonals come from one backward pass each: since `h` is
/// elementwise in `pre`, the gradient of `Σ h` with respect to `pre` is exactly `f′(pre)`, and
/// likewise for `u` and `x`. Two backward passes, whatever the width.
fn jacobian_norm_closed(h: &Expr, c: &Elementwise, x: &Expr) -> Result<Expr> {
    let dh = tape::grad(&h.sum(), std::slice::from_ref(&c.pre))?.remove(0);
    let w2 = c.weights.square();
    let per_unit = if c.input.id() == x.id() {
        // An uncorrupted input: u′ = 1, so each unit's factor is its column norm ‖W[:, j]‖².
        dh.square() * w2.sum_axis(0, false)
    } else {
        let du = tape::grad(&c.input.sum(), std::slice::from_ref(x))?.remove(0);
        dh.square() * du.square().matmul(&w2)
    };
    Ok(per_unit.sum_axis(-1, false).mean())
}

/// The mean over samples of ‖∂h/∂x‖²_F, exactly: for each unit j, the gradient of the batch sum
/// of h[:, j] with respect to x holds ∂h_bj/∂x_b in row b (samples do not interact), so summing
/// the squares of those gradients over units gives every sample's squared Frobenius norm. It costs
/// one backward pass per unit of h.
fn jacobian_norm(h: &Expr, x: &Expr) -> Result<Expr> {
    let width = h.dims().last().copied().flatten().ok_or_else(|| {
        config(
            "regularizer `contractive`",
            "needs hidden layers whose width is known when the graph is built",
        )
    })?;
    let mut total: Option<Expr> = None;
    for j in 0..width {
        let unit = h.slice(h.rank() - 1, j, 1).sum();
        let g = tape::grad(&unit, std::slice::from_ref(x))?.remove(0);
        let sq = g.square().sum_axis(-1, false);
        total = Some(match total {
            Some(t) => t + sq,
            None => sq,
        });
    }
    Ok(total.map(|t| t.mean()).unwrap_or_else(|| Expr::scalar(0.0)))
}

/// Which part of the network an output belongs to, for `input_*` and `hidden_*` rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Input,
    Hidden,
    Other,
}

/// Shell-style glob: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::{glob, jacobian_norm, jacobian_norm_closed, Elementwise};
    use crate::activations::Activation;
    use tape::testing::normal;
    use tape::{Expr, Function, Param};

    /// Both computations in one function, so dropout masks and noise are shared: with the input
    /// and the hidden output corrupted, the closed form (input factor from its own backward pass)
    /// must still equal the per-unit general path.
    #[test]
    fn closed_form_equals_general_path_through_dropout_and_noise() {
        let x = Expr::input_with_dims("x", &[None, Some(5)]);
        let w = Param::new("w", normal(&[5, 4], 1));
        let b = Param::new("b", normal(&[4], 2));
        for (activation, corrupt_input) in [
            ("tanh", true),
            ("relu", true),
            ("softplus", false),
            ("maxout:2", true),
        ] {
            let act = Activation::build(activation, "h", 4).unwrap();
            let u = if corrupt_input {
                x.dropout(0.3, 3).add_noise(0.1, 4)
            } else {
                x.clone()
            };
            let pre = u.matmul(&w.expr()) + b.expr();
            let h = act.apply(&pre).dropout(0.25, 5).add_noise(0.2, 6);
            let c = Elementwise {
                pre,
                weights: w.expr(),
                input: u,
            };
            let closed = jacobian_norm_closed(&h, &c, &x).unwrap();
            let general = jacobian_norm(&h, &x).unwrap();
            let mut f = Function::compile(std::slice::from_ref(&x), &[closed, general]).unwrap();
            for seed in 10..13 {
                let out = f.call(&[&normal(&[7, 5], seed)]).unwrap();
                let (a, g) = (out[0].data()[0], out[1].data()[0]);
                assert!(g > 1e-2, "{activation}: general {g}");
                assert!(
                    (a - g).abs() < 1e-5 * g.max(1.0),
                    "{activation}: closed {a} vs general {g}"
                );
            }
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("*", "hid1:out"));
        assert!(glob("hid*:out", "hid12:out"));
        assert!(glob("*.w", "out.w"));
        assert!(glob("o*.?", "out.b"));
        assert!(!glob("*.w", "out.b"));
        assert!(!glob("hid?:out", "hid12:out"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
    }
}
