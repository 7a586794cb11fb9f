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

    /// Every rule option: key, meaning, default and parser (the one list that parsing, the
    /// "did you mean" message and the reference in `docs/options.md` all come from).
    pub const TABLE: &'static [OptionSpec<RuleOptions>] = &[
        OptionSpec {
            key: "learning_rate",
            get: |o| o.learning_rate.to_string(),
            doc: "step size α (Rprop: its first step; not used by ADADELTA)",
            default: "1e-4",
            set: |o, v| set_f32(&mut o.learning_rate, v, nonneg),
        },
        OptionSpec {
            key: "momentum",
            get: |o| o.momentum.to_string(),
            doc: "momentum μ, applied to every rule's step",
            default: "0",
            set: |o, v| set_f32(&mut o.momentum, v, unit_interval),
        },
        OptionSpec {
            key: "nesterov",
            get: |o| o.nesterov.to_string(),
            doc: "Nesterov's form of momentum (nag: always true)",
            default: "false",
            set: |o, v| set_bool(&mut o.nesterov, v),
        },
        OptionSpec {
            key: "max_gradient_elem",
            get: |o| o.max_gradient_elem.to_string(),
            doc: "clip each gradient element to [−c, c] (0: off)",
            default: "0",
            set: |o, v| set_f32(&mut o.max_gradient_elem, v, nonneg),
        },
        OptionSpec {
            key: "max_gradient_norm",
            get: |o| o.max_gradient_norm.to_string(),
            doc: "rescale each parameter's gradient to at most this L2 norm (0: off)",
            default: "0",
            set: |o, v| set_f32(&mut o.max_gradient_norm, v, nonneg),
        },
        OptionSpec {
            key: "rms_halflife",
            get: |o| o.rms_halflife.to_string(),
            doc: "half-life in steps of the running averages of rmsprop, adadelta and esgd",
            default: "14",
            set: |o, v| set_f32(&mut o.rms_halflife, v, positive),
        },
        OptionSpec {
            key: "rms_regularizer",
            get: |o| o.rms_regularizer.to_string(),
            doc: "ε added to denominators",
            default: "1e-8",
            set: |o, v| set_f32(&mut o.rms_regularizer, v, positive),
        },
        OptionSpec {
            key: "beta1_halflife",
            get: |o| o.beta1_halflife.to_string(),
            doc: "half-life of Adam's first-moment average (β1 ≈ 0.906)",
            default: "7",
            set: |o, v| set_f32(&mut o.beta1_halflife, v, positive),
        },
        OptionSpec {
            key: "beta2_halflife",
            get: |o| o.beta2_halflife.to_string(),
            doc: "half-life of Adam's second-moment average (β2 ≈ 0.990)",
            default: "69",
            set: |o, v| set_f32(&mut o.beta2_halflife, v, positive),
        },
        OptionSpec {
            key: "rprop_increase",
            get: |o| o.rprop_increase.to_string(),
            doc: "Rprop's step growth factor",
            default: "1.01",
            set: |o, v| set_f32(&mut o.rprop_increase, v, at_least_one),
        },
        OptionSpec {
            key: "rprop_decrease",
            get: |o| o.rprop_decrease.to_string(),
            doc: "Rprop's step shrink factor",
            default: "0.99",
            set: |o, v| set_f32(&mut o.rprop_decrease, v, shrink_factor),
        },
        OptionSpec {
            key: "rprop_min_step",
            get: |o| o.rprop_min_step.to_string(),
            doc: "Rprop's smallest step",
            default: "0",
            set: |o, v| set_f32(&mut o.rprop_min_step, v, nonneg),
        },
        OptionSpec {
            key: "rprop_max_step",
            get: |o| o.rprop_max_step.to_string(),
            doc: "Rprop's largest step (≥ rprop_min_step)",
            default: "100",
            set: |o, v| set_f32(&mut o.rprop_max_step, v, nonneg),
        },
    ];

    /// The keys of [`RuleOptions::TABLE`], in order.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        Self::TABLE.iter().map(|o| o.key)
    }

    /// Sets one option from text, e.g. `set("momentum", "0.9")`, checking the value and the
    /// options as a whole (e.g. `rprop_max_step ≥ rprop_min_step`). On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        set_from_table(Self::TABLE, &mut next, key, value)?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// Sets several options from `key=value` pairs.
    pub fn set_all<'a>(&mut self, pairs: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for pair in pairs {
            let (k, v) = split_pair(pair)?;
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Checks every value is in its valid range, and the options together.
    pub fn validate(&self) -> Result<()> {
        if self.algorithm == Algorithm::Nag && !self.nesterov {
            return Err(Error::Config {
                what: "option `nesterov`".into(),
                problem: "NAG always uses Nesterov momentum".into(),
            });
        }
        check_with_table(Self::TABLE, self)?;
        if self.rprop_max_step < self.rprop_min_step {
            return Err(Error::Config {
                what: "option `rprop_max_step`".into(),
                problem: format!(
                    "{} is invalid: it must be ≥ rprop_min_step ({})",
                    self.rprop_max_step, self.rprop_min_step
                ),
            });
        }
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

/// Splits `key=value` (both sides trimmed).
pub fn split_pair(pair: &str) -> Result<(&str, &str)> {
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
    Error::Config {
        what: format!("option `{key}`"),
        problem: unknown_key_problem(key, valid),
    }
}

/// What is wrong with an unknown key, in words: the closest valid key and the valid ones.
pub fn unknown_key_problem(key: &str, valid: &[&str]) -> String {
    format!(
        "unknown option; did you mean `{}`? Valid options: {}",
        closest(key, valid),
        valid.join(", ")
    )
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
    /// Every loop option: key, meaning, default and parser.
    pub const TABLE: &'static [OptionSpec<LoopOptions>] = &[
        OptionSpec {
            key: "validate_every",
            get: |o| o.validate_every.to_string(),
            doc: "validate every this many iterations (and before the first)",
            default: "10",
            set: |o, v| set_usize(&mut o.validate_every, v, 1),
        },
        OptionSpec {
            key: "patience",
            get: |o| o.patience.to_string(),
            doc: "stop after this many validations without improvement",
            default: "5",
            set: |o, v| set_usize(&mut o.patience, v, 0),
        },
        OptionSpec {
            key: "min_improvement",
            get: |o| o.min_improvement.to_string(),
            doc: "relative improvement of the validation loss that counts as one",
            default: "0",
            set: |o, v| set_f32(&mut o.min_improvement, v, nonneg),
        },
        OptionSpec {
            key: "max_updates",
            get: |o| o.max_updates.map_or("none".into(), |m| m.to_string()),
            doc: "stop after this many iterations; `none` for no limit (0 is refused: downhill read it as no limit)",
            default: "none",
            set: |o, v| {
                o.max_updates = match v.to_ascii_lowercase().as_str() {
                    "none" | "unlimited" => None,
                    "0" => {
                        return Err("is ambiguous (downhill read 0 as no limit): write \
                                    max_updates=none for no limit, or a number ≥ 1"
                            .into())
                    }
                    _ => {
                        // Zero written another way (`00`, `+0`) is as ambiguous as `0`.
                        let n: usize = v
                            .parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or("is not a whole number ≥ 1 or `none` (no limit)")?;
                        Some(n)
                    }
                };
                Ok(())
            },
        },
        OptionSpec {
            key: "monitor_gradients",
            get: |o| o.monitor_gradients.to_string(),
            doc: "add `grad(name)` monitors: each parameter's squared gradient norm",
            default: "false",
            set: |o, v| set_bool(&mut o.monitor_gradients, v),
        },
        OptionSpec {
            key: "seed",
            get: |o| o.seed.to_string(),
            doc: "seed of the loop's own random stream (ESGD's probe vectors, stream `optim.esgd`)",
            default: "0",
            set: |o, v| set_u64(&mut o.seed, v),
        },
    ];

    /// The keys of [`LoopOptions::TABLE`], in order.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        Self::TABLE.iter().map(|o| o.key)
    }

    /// Sets one option from text. On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        set_from_table(Self::TABLE, &mut next, key, value)?;
        *self = next;
        Ok(())
    }

    /// Checks every value is in its valid range (the same rules as for text).
    pub fn validate(&self) -> Result<()> {
        check_with_table(Self::TABLE, self)
    }
}

/// One option of a table: its key, what it means, its default as text, and how to set it from
/// text (the parser checks the value's range and says what is wrong in words).
pub struct OptionSpec<T: 'static> {
    /// The key in `key=value`.
    pub key: &'static str,
    /// What the option means, for the reference.
    pub doc: &'static str,
    /// The default, as text.
    pub default: &'static str,
    /// The current value, as text that `set` accepts.
    pub get: fn(&T) -> String,
    /// Parses and checks a value into the options; the error completes "`value` …".
    pub set: fn(&mut T, &str) -> std::result::Result<(), String>,
}

/// Checks every option's current value with the table's own parser and range check, so typed
/// fields and text go through the same rules.
fn check_with_table<T: Clone>(table: &[OptionSpec<T>], options: &T) -> Result<()> {
    let mut scratch = options.clone();
    for spec in table {
        let text = (spec.get)(options);
        (spec.set)(&mut scratch, &text).map_err(|problem| Error::Config {
            what: format!("option `{}`", spec.key),
            problem: format!("{text} {problem}"),
        })?;
    }
    Ok(())
}

/// Looks `key` up in `table` and sets it on `target` from `value` (trimmed).
fn set_from_table<T>(
    table: &[OptionSpec<T>],
    target: &mut T,
    key: &str,
    value: &str,
) -> Result<()> {
    let keys: Vec<&str> = table.iter().map(|o| o.key).collect();
    let spec = table
        .iter()
        .find(|o| o.key == key)
        .ok_or_else(|| unknown_key(key, &keys))?;
    (spec.set)(target, value.trim()).map_err(|problem| Error::Config {
        what: format!("option `{key}`"),
        problem: format!("`{value}` {problem}"),
    })
}

fn set_f32(
    slot: &mut f32,
    v: &str,
    check: fn(f32) -> std::result::Result<(), &'static str>,
) -> std::result::Result<(), String> {
    let x: f32 = v.parse().map_err(|_| "is not a number")?;
    check(x).map_err(|need| format!("is invalid: it must be {need}"))?;
    *slot = x;
    Ok(())
}

fn set_usize(slot: &mut usize, v: &str, min: usize) -> std::result::Result<(), String> {
    let x: usize = v.parse().map_err(|_| "is not a whole number")?;
    if x < min {
        return Err(format!("is invalid: it must be at least {min}"));
    }
    *slot = x;
    Ok(())
}

fn set_u64(slot: &mut u64, v: &str) -> std::result::Result<(), String> {
    *slot = v.parse().map_err(|_| "is not a whole number")?;
    Ok(())
}

fn set_bool(slot: &mut bool, v: &str) -> std::result::Result<(), String> {
    *slot = parse_bool(v).ok_or("is not a boolean (true/false, 1/0, yes/no, on/off)")?;
    Ok(())
}

fn nonneg(x: f32) -> std::result::Result<(), &'static str> {
    (x.is_finite() && x >= 0.0)
        .then_some(())
        .ok_or("a finite number ≥ 0")
}
fn positive(x: f32) -> std::result::Result<(), &'static str> {
    (x.is_finite() && x > 0.0)
        .then_some(())
        .ok_or("a finite number > 0")
}
fn unit_interval(x: f32) -> std::result::Result<(), &'static str> {
    (0.0..1.0).contains(&x).then_some(()).ok_or("in [0, 1)")
}
fn at_least_one(x: f32) -> std::result::Result<(), &'static str> {
    (x.is_finite() && x >= 1.0)
        .then_some(())
        .ok_or("a finite number ≥ 1")
}
fn shrink_factor(x: f32) -> std::result::Result<(), &'static str> {
    (x > 0.0 && x <= 1.0).then_some(()).ok_or("in (0, 1]")
}

/// The options reference (a Markdown table per group), generated from the tables; it is what
/// `docs/options.md` holds, and a test keeps the two equal.
pub fn reference() -> String {
    fn table<T>(out: &mut String, title: &str, specs: &[OptionSpec<T>]) {
        out.push_str(&format!(
            "## {title}\n\n| key | default | meaning |\n|---|---|---|\n"
        ));
        for s in specs {
            out.push_str(&format!("| `{}` | {} | {} |\n", s.key, s.default, s.doc));
        }
        out.push('\n');
    }
    let mut out = String::from(
        "# Training options\n\nGenerated from the option tables in `crates/optim/src/options.rs` \
         (`optim::options::reference()`); a test keeps this file equal to it. Every option is \
         given as `key=value`; booleans read true/false, 1/0, yes/no or on/off in any case.\n\n",
    );
    table(&mut out, "Update rules (`RuleOptions`)", RuleOptions::TABLE);
    table(&mut out, "The loop (`LoopOptions`)", LoopOptions::TABLE);
    out
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
        if RuleOptions::keys().any(|key| key == k) {
            rule.set(k, v)?;
        } else if LoopOptions::keys().any(|key| key == k) {
            lp.set(k, v)?;
        } else {
            let all: Vec<&str> = RuleOptions::keys().chain(LoopOptions::keys()).collect();
            return Err(unknown_key(k, &all));
        }
    }
    Ok(())
}
