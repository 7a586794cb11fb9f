//! Typed configuration: algorithm names, each rule's options with downhill's defaults, and
//! `key=value` parsing that refuses unknown keys (suggesting the closest valid one) and invalid
//! values.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The update rules, by the names users know.
///
/// ```
/// use optim::Algorithm;
/// assert_eq!("NAG".parse::<Algorithm>()?, Algorithm::Nag);
/// let err = "adamw".parse::<Algorithm>().unwrap_err();
/// assert!(err.to_string().contains("adam"));
/// # Ok::<(), optim::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Stochastic gradient descent.
    Sgd,
    /// SGD with Nesterov momentum.
    Nag,
    /// Resilient backpropagation (iRprop−).
    Rprop,
    /// RMSProp in Graves' (2013) centred form.
    RmsProp,
    /// ADAGRAD.
    AdaGrad,
    /// ADADELTA.
    AdaDelta,
    /// Equilibrated SGD, with exact Hessian-vector products.
    Esgd,
    /// Adam, with the paper's bias correction.
    Adam,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 8] = [
        Algorithm::Sgd,
        Algorithm::Nag,
        Algorithm::Rprop,
        Algorithm::RmsProp,
        Algorithm::AdaGrad,
        Algorithm::AdaDelta,
        Algorithm::Esgd,
        Algorithm::Adam,
    ];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sgd => "sgd",
            Algorithm::Nag => "nag",
            Algorithm::Rprop => "rprop",
            Algorithm::RmsProp => "rmsprop",
            Algorithm::AdaGrad => "adagrad",
            Algorithm::AdaDelta => "adadelta",
            Algorithm::Esgd => "esgd",
            Algorithm::Adam => "adam",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Algorithm> {
        let lower = s.trim().to_lowercase();
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                Error::Config {
                    what: format!("algorithm `{s}`"),
                    problem: format!("unknown; valid algorithms are {}", names.join(", ")),
                }
            })
    }
}

/// The options of an update rule. Defaults are downhill's (v0.3.2): NAG turns on Nesterov
/// momentum, as there. Where the rules themselves differ from downhill's (Adam's and ESGD's bias
/// corrections, ESGD's exact Hessian-vector products, RMSProp's clamp) is listed in the crate
/// documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleOptions {
    /// Which rule.
    pub algorithm: Algorithm,
    /// Step size α (not used by ADADELTA; Rprop's initial step). Default 1e-4.
    pub learning_rate: f32,
    /// Momentum μ in `[0, 1)`, applied to every rule's step. Default 0.
    pub momentum: f32,
    /// Nesterov's form of momentum. Default false (true for NAG).
    pub nesterov: bool,
    /// Clip each gradient element to `[−c, c]` (0: off). Default 0.
    pub max_gradient_elem: f32,
    /// Rescale each parameter's gradient to at most this L2 norm (0: off). Default 0.
    pub max_gradient_norm: f32,
    /// Half-life, in steps, of the running averages of RMSProp, ADADELTA and ESGD. Default 14.
    pub rms_halflife: f32,
    /// ε added to denominators. Default 1e-8.
    pub rms_regularizer: f32,
    /// Half-life of Adam's first-moment average (β1 ≈ 0.906). Default 7.
    pub beta1_halflife: f32,
    /// Half-life of Adam's second-moment average (β2 ≈ 0.990). Default 69.
    pub beta2_halflife: f32,
    /// Rprop's step growth factor. Default 1.01.
    pub rprop_increase: f32,
    /// Rprop's step shrink factor. Default 0.99.
    pub rprop_decrease: f32,
    /// Rprop's smallest step. Default 0.
    pub rprop_min_step: f32,
    /// Rprop's largest step. Default 100.
    pub rprop_max_step: f32,
}

/// The decay factor of a running average with the given half-life: `exp(−ln 2 / h)`.
pub fn decay(halflife: f32) -> f32 {
    (-std::f32::consts::LN_2 / halflife).exp()
}

impl RuleOptions {
    /// Downhill's defaults for `algorithm`.
    pub fn new(algorithm: Algorithm) -> RuleOptions {
        RuleOptions {
            algorithm,
            learning_rate: 1e-4,
            momentum: 0.0,
            nesterov: algorithm == Algorithm::Nag,
            max_gradient_elem: 0.0,
            max_gradient_norm: 0.0,
            rms_halflife: 14.0,
            rms_regularizer: 1e-8,
            beta1_halflife: 7.0,
            beta2_halflife: 69.0,
            rprop_increase: 1.01,
            rprop_decrease: 0.99,
            rprop_min_step: 0.0,
            rprop_max_step: 100.0,
        }
    }

    /// The option keys every rule accepts.
    pub const KEYS: [&'static str; 13] = [
        "learning_rate",
        "momentum",
        "nesterov",
        "max_gradient_elem",
        "max_gradient_norm",
        "rms_halflife",
        "rms_regularizer",
        "beta1_halflife",
        "beta2_halflife",
        "rprop_increase",
        "rprop_decrease",
        "rprop_min_step",
        "rprop_max_step",
    ];

    /// Sets one option from text, e.g. `set("momentum", "0.9")`. On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        next.assign(key, value)?;
        *self = next;
        Ok(())
    }

    fn assign(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |problem: String| Error::Config {
            what: format!("option `{key}`"),
            problem,
        };
        if key == "nesterov" {
            self.nesterov = parse_bool(value).ok_or_else(|| bad(not_a_bool(value)))?;
            if self.algorithm == Algorithm::Nag && !self.nesterov {
                return Err(bad("NAG always uses Nesterov momentum".into()));
            }
            return Ok(());
        }
        let slot = match key {
            "learning_rate" => &mut self.learning_rate,
            "momentum" => &mut self.momentum,
            "max_gradient_elem" => &mut self.max_gradient_elem,
            "max_gradient_norm" => &mut self.max_gradient_norm,
            "rms_halflife" => &mut self.rms_halflife,
            "rms_regularizer" => &mut self.rms_regularizer,
            "beta1_halflife" => &mut self.beta1_halflife,
            "beta2_halflife" => &mut self.beta2_halflife,
            "rprop_increase" => &mut self.rprop_increase,
            "rprop_decrease" => &mut self.rprop_decrease,
            "rprop_min_step" => &mut self.rprop_min_step,
            "rprop_max_step" => &mut self.rprop_max_step,
            _ => return Err(unknown_key(key, &Self::KEYS)),
        };
        *slot = value
            .trim()
            .parse::<f32>()
            .map_err(|_| bad(format!("`{value}` is not a number")))?;
        self.validate()
    }

    /// Sets several options from `key=value` pairs.
    pub fn set_all<'a>(&mut self, pairs: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for pair in pairs {
            let (k, v) = split_pair(pair)?;
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Checks every value is in its valid range.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, key: &str, v: f32, need: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config {
                    what: format!("option `{key}`"),
                    problem: format!("{v} is invalid: it must be {need}"),
                })
            }
        };
        let finite_pos = |v: f32| v.is_finite() && v > 0.0;
        let finite_nonneg = |v: f32| v.is_finite() && v >= 0.0;
        check(
            finite_nonneg(self.learning_rate),
            "learning_rate",
            self.learning_rate,
            "a finite number ≥ 0",
        )?;
        check(
            (0.0..1.0).contains(&self.momentum),
            "momentum",
            self.momentum,
            "in [0, 1)",
        )?;
        check(
            finite_nonneg(self.max_gradient_elem),
            "max_gradient_elem",
            self.max_gradient_elem,
            "≥ 0",
        )?;
        check(
            finite_nonneg(self.max_gradient_norm),
            "max_gradient_norm",
            self.max_gradient_norm,
            "≥ 0",
        )?;
        check(
            finite_pos(self.rms_halflife),
            "rms_halflife",
            self.rms_halflife,
            "> 0",
        )?;
        check(
            finite_pos(self.rms_regularizer),
            "rms_regularizer",
            self.rms_regularizer,
            "> 0",
        )?;
        check(
            finite_pos(self.beta1_halflife),
            "beta1_halflife",
            self.beta1_halflife,
            "> 0",
        )?;
        check(
            finite_pos(self.beta2_halflife),
            "beta2_halflife",
            self.beta2_halflife,
            "> 0",
        )?;
        check(
            self.rprop_increase >= 1.0 && self.rprop_increase.is_finite(),
            "rprop_increase",
            self.rprop_increase,
            "≥ 1",
        )?;
        check(
            self.rprop_decrease > 0.0 && self.rprop_decrease <= 1.0,
            "rprop_decrease",
            self.rprop_decrease,
            "in (0, 1]",
        )?;
        check(
            finite_nonneg(self.rprop_min_step),
            "rprop_min_step",
            self.rprop_min_step,
            "≥ 0",
        )?;
        check(
            self.rprop_max_step >= self.rprop_min_step,
            "rprop_max_step",
            self.rprop_max_step,
            "≥ rprop_min_step",
        )?;
        Ok(())
    }
}

/// Reads a boolean option the one way every option does: `true`/`false`, `1`/`0`, `yes`/`no` or
/// `on`/`off`, in any case, surrounding spaces ignored. Anything else is `None`.
///
/// ```
/// use optim::options::parse_bool;
/// assert_eq!(parse_bool(" On "), Some(true));
/// assert_eq!(parse_bool("FALSE"), Some(false));
/// assert_eq!(parse_bool("enabled"), None);
/// ```
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The complaint about a value that [`parse_bool`] refused.
pub(crate) fn not_a_bool(value: &str) -> String {
    format!("`{value}` is not a boolean (true/false, 1/0, yes/no, on/off)")
}

/// Splits `key=value`.
pub(crate) fn split_pair(pair: &str) -> Result<(&str, &str)> {
    pair.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| Error::Config {
            what: format!("option `{pair}`"),
            problem: "expected key=value".into(),
        })
}

/// The valid key closest to a misspelt one (by edit distance), for "did you mean" messages.
pub fn closest<'a>(key: &str, valid: &[&'a str]) -> &'a str {
    valid
        .iter()
        .min_by_key(|v| edit_distance(key, v))
        .copied()
        .unwrap_or("")
}

/// The error for an unknown key, suggesting the closest valid one.
pub(crate) fn unknown_key(key: &str, valid: &[&str]) -> Error {
    let closest = closest(key, valid);
    Error::Config {
        what: format!("option `{key}`"),
        problem: format!(
            "unknown option; did you mean `{closest}`? Valid options: {}",
            valid.join(", ")
        ),
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Options of the training loop (downhill's `iterate` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct LoopOptions {
    /// Validate every this many iterations (and before the first). Default 10.
    pub validate_every: usize,
    /// Stop after this many validations without improvement. Default 5.
    pub patience: usize,
    /// Relative improvement of the validation loss that counts as one. Default 0.
    pub min_improvement: f32,
    /// Stop after this many iterations (None: no limit). Default None. As text: a whole number
    /// ≥ 1, or `none` / `unlimited` for no limit; `0` is refused because downhill read it as
    /// "no limit" while the number says "no updates".
    pub max_updates: Option<usize>,
    /// Add `grad(name)` monitors: the squared norm of each parameter's raw gradient. Default false.
    pub monitor_gradients: bool,
    /// Seed of the loop's own random stream (ESGD's probe vectors). Default 0.
    pub seed: u64,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            validate_every: 10,
            patience: 5,
            min_improvement: 0.0,
            max_updates: None,
            monitor_gradients: false,
            seed: 0,
        }
    }
}

impl LoopOptions {
    /// The option keys.
    pub const KEYS: [&'static str; 6] = [
        "validate_every",
        "patience",
        "min_improvement",
        "max_updates",
        "monitor_gradients",
        "seed",
    ];

    /// Sets one option from text. On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        next.assign(key, value)?;
        *self = next;
        Ok(())
    }

    fn assign(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |problem: &str| Error::Config {
            what: format!("option `{key}`"),
            problem: format!("`{value}` {problem}"),
        };
        let v = value.trim();
        match key {
            "validate_every" => {
                self.validate_every = v.parse().map_err(|_| bad("is not a whole number"))?;
                if self.validate_every == 0 {
                    return Err(bad("must be at least 1"));
                }
            }
            "patience" => self.patience = v.parse().map_err(|_| bad("is not a whole number"))?,
            "min_improvement" => {
                self.min_improvement = v.parse().map_err(|_| bad("is not a number"))?;
                if !(self.min_improvement.is_finite() && self.min_improvement >= 0.0) {
                    return Err(bad("must be ≥ 0"));
                }
            }
            "max_updates" => {
                self.max_updates = match v.to_ascii_lowercase().as_str() {
                    "none" | "unlimited" => None,
                    "0" => {
                        return Err(bad(
                            "is ambiguous (downhill read 0 as no limit): write max_updates=none \
                             for no limit, or a number ≥ 1",
                        ))
                    }
                    _ => Some(
                        v.parse()
                            .map_err(|_| bad("is not a whole number ≥ 1 or `none` (no limit)"))?,
                    ),
                }
            }
            "monitor_gradients" => {
                self.monitor_gradients = parse_bool(v).ok_or_else(|| Error::Config {
                    what: format!("option `{key}`"),
                    problem: not_a_bool(value),
                })?
            }
            "seed" => self.seed = v.parse().map_err(|_| bad("is not a whole number"))?,
            _ => return Err(unknown_key(key, &Self::KEYS)),
        }
        Ok(())
    }
}

/// Applies `key=value` pairs to rule and loop options together (one namespace, as in downhill),
/// refusing keys that neither knows.
///
/// ```
/// use optim::{options::configure, Algorithm, LoopOptions, RuleOptions};
/// let mut rule = RuleOptions::new(Algorithm::Nag);
/// let mut lp = LoopOptions::default();
/// configure(&mut rule, &mut lp, ["learning_rate=0.01", "momentum=0.9", "patience=3"])?;
/// assert_eq!((rule.momentum, lp.patience), (0.9, 3));
/// let err = configure(&mut rule, &mut lp, ["min_improvment=0.1"]).unwrap_err();
/// assert!(err.to_string().contains("did you mean `min_improvement`"));
/// # Ok::<(), optim::Error>(())
/// ```
pub fn configure<'a>(
    rule: &mut RuleOptions,
    lp: &mut LoopOptions,
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    for pair in pairs {
        let (k, v) = split_pair(pair)?;
        if RuleOptions::KEYS.contains(&k) {
            rule.set(k, v)?;
        } else if LoopOptions::KEYS.contains(&k) {
            lp.set(k, v)?;
        } else {
            let all: Vec<&str> = RuleOptions::KEYS
                .iter()
                .chain(LoopOptions::KEYS.iter())
                .copied()
                .collect();
            return Err(unknown_key(k, &all));
        }
    }
    Ok(())
}
