//! The update rules: tight native loops over a parameter's values, its gradient (as the compiled
//! function wrote it) and the rule's state, with gradient clipping and (Nesterov) momentum fused in.
//! Formulas follow downhill, with the corrections listed on each rule.

use crate::error::{Error, Result};
use crate::options::{decay, Algorithm, RuleOptions};
use serde::{Deserialize, Serialize};

/// Everything an update rule remembers between steps, as plain arrays: it serializes, and a rule
/// restored from it continues exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The algorithm's name (checked on restore).
    pub algorithm: String,
    /// Steps taken so far (Adam's and ESGD's bias corrections use it).
    pub step: u64,
    /// Per parameter, the rule's buffers (see [`Rule::slot_names`]).
    pub slots: Vec<Vec<Vec<f32>>>,
    /// Per parameter, the momentum velocity (empty without momentum).
    pub velocity: Vec<Vec<f32>>,
}

/// An update rule with its options and state for a fixed list of parameter sizes.
///
/// ```
/// use optim::{Algorithm, Rule, RuleOptions};
/// let mut opts = RuleOptions::new(Algorithm::Sgd);
/// opts.learning_rate = 0.5;
/// let mut rule = Rule::new(opts, &[2])?;
/// let mut p = [1.0f32, 2.0];
/// rule.begin_step();
/// rule.apply(0, &mut p, &[2.0, -2.0], None)?;
/// assert_eq!(p, [0.0, 3.0]);
/// # Ok::<(), optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Rule {
    opts: RuleOptions,
    state: RuleState,
    sizes: Vec<usize>,
}

impl Rule {
    /// A rule for parameters of the given sizes (number of elements each), with fresh state.
    pub fn new(opts: RuleOptions, sizes: &[usize]) -> Result<Rule> {
        opts.validate()?;
        let init = |alg: Algorithm, slot: usize| -> f32 {
            // Rprop's per-element step starts at the learning rate.
            if alg == Algorithm::Rprop && slot == 1 {
                opts.learning_rate
            } else {
                0.0
            }
        };
        let nslots = Rule::slot_names(opts.algorithm).len();
        let slots = sizes
            .iter()
            .map(|&n| {
                (0..nslots)
                    .map(|s| vec![init(opts.algorithm, s); n])
                    .collect()
            })
            .collect();
        let velocity = sizes
            .iter()
            .map(|&n| {
                if opts.momentum > 0.0 {
                    vec![0.0; n]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let state = RuleState {
            algorithm: opts.algorithm.name().to_string(),
            step: 0,
            slots,
            velocity,
        };
        Ok(Rule {
            opts,
            state,
            sizes: sizes.to_vec(),
        })
    }

    /// The names of the buffers each algorithm keeps per parameter.
    pub fn slot_names(algorithm: Algorithm) -> &'static [&'static str] {
        match algorithm {
            Algorithm::Sgd | Algorithm::Nag => &[],
            Algorithm::Rprop => &["previous_gradient", "step"],
            Algorithm::RmsProp => &["mean_gradient", "mean_square"],
            Algorithm::AdaGrad => &["sum_square"],
            Algorithm::AdaDelta => &["mean_square", "mean_square_delta"],
            Algorithm::Esgd => &["mean_square_hv"],
            Algorithm::Adam => &["first_moment", "second_moment"],
        }
    }

    /// The options.
    pub fn options(&self) -> &RuleOptions {
        &self.opts
    }

    /// Whether the rule needs Hessian-vector products (ESGD).
    pub fn needs_hv(&self) -> bool {
        self.opts.algorithm == Algorithm::Esgd
    }

    /// The state, for saving.
    pub fn state(&self) -> &RuleState {
        &self.state
    }

    /// Restores a saved state; it must come from the same algorithm and parameter sizes.
    pub fn set_state(&mut self, state: RuleState) -> Result<()> {
        let fits = state.algorithm == self.state.algorithm
            && state.slots.len() == self.sizes.len()
            && state.velocity.len() == self.sizes.len()
            && state
                .slots
                .iter()
                .zip(&self.sizes)
                .all(|(s, &n)| s.iter().all(|b| b.len() == n))
            && state
                .slots
                .iter()
                .zip(&self.state.slots)
                .all(|(a, b)| a.len() == b.len())
            && state
                .velocity
                .iter()
                .zip(&self.state.velocity)
                .all(|(a, b)| a.len() == b.len());
        if !fits {
            return Err(Error::Config {
                what: format!("{} state", self.state.algorithm),
                problem: format!(
                    "a saved state of `{}` does not fit these parameters",
                    state.algorithm
                ),
            });
        }
        self.state = state;
        Ok(())
    }

    /// Starts a new step (counts it, for bias corrections). Call once per minibatch before the
    /// [`Rule::apply`] calls of that minibatch.
    pub fn begin_step(&mut self) {
        self.state.step += 1;
    }

    /// Updates parameter `index` in place from its gradient (and, for ESGD, its Hessian-vector
    /// product with the step's probe vector).
    ///
    /// Errors (leaving `p` and the state untouched) when `index` is not one of the parameters
    /// the rule was made for, when `p`, `g` or `hv` do not have that parameter's length, or when
    /// ESGD is given no Hessian-vector product.
    pub fn apply(
        &mut self,
        index: usize,
        p: &mut [f32],
        g: &[f32],
        hv: Option<&[f32]>,
    ) -> Result<()> {
        let n = self.check_apply(index, p.len(), g.len(), hv.map(<[f32]>::len))?;
        let o = &self.opts;
        let (p, g) = (&mut p[..n], &g[..n]);
        // Clipping as downhill: per element if asked, else rescaling the whole tensor's norm.
        let (scale, c) = if o.max_gradient_elem > 0.0 {
            (1.0, o.max_gradient_elem)
        } else if o.max_gradient_norm > 0.0 {
            let norm = g.iter().map(|&v| v * v).sum::<f32>().sqrt();
            ((o.max_gradient_norm / norm).min(1.0), f32::INFINITY)
        } else {
            (1.0, f32::INFINITY)
        };
        let momentum = if o.momentum > 0.0 {
            let v = &mut self.state.velocity[index][..n];
            if o.nesterov {
                Momentum::Nesterov(o.momentum, v)
            } else {
                Momentum::Classic(o.momentum, v)
            }
        } else {
            Momentum::None
        };
        let alpha = o.learning_rate;
        let eps = o.rms_regularizer;
        let t = self.state.step.max(1) as i32;
        let slots = &mut self.state.slots[index];

        macro_rules! each {
            (|$i:ident, $g:ident| $delta:expr) => {
                match momentum {
                    Momentum::None => {
                        for $i in 0..n {
                            let $g = (g[$i] * scale).clamp(-c, c);
                            let d = $delta;
                            p[$i] -= d;
                        }
                    }
                    Momentum::Classic(mu, v) => {
                        for $i in 0..n {
                            let $g = (g[$i] * scale).clamp(-c, c);
                            let d = $delta;
                            v[$i] = flush(mu * v[$i] - d);
                            p[$i] += v[$i];
                        }
                    }
                    Momentum::Nesterov(mu, v) => {
                        for $i in 0..n {
                            let $g = (g[$i] * scale).clamp(-c, c);
                            let d = $delta;
                            let before = v[$i];
                            v[$i] = flush(mu * before - d);
                            p[$i] += mu * mu * before - (1.0 + mu) * d;
                        }
                    }
                }
            };
        }

        match o.algorithm {
            Algorithm::Sgd | Algorithm::Nag => each!(|i, gi| alpha * gi),
            Algorithm::Rprop => {
                let [prev, step] = &mut slots[..] else {
                    unreachable!("rprop has two slots")
                };
                let (prev, step) = (&mut prev[..n], &mut step[..n]);
                let (inc, dec, lo, hi) = (
                    o.rprop_increase,
                    o.rprop_decrease,
                    o.rprop_min_step,
                    o.rprop_max_step,
                );
                each!(|i, gi| {
                    let s = gi * prev[i];
                    let factor = if s > 0.0 {
                        inc
                    } else if s < 0.0 {
                        dec
                    } else {
                        1.0
                    };
                    step[i] = (step[i] * factor).clamp(lo, hi);
                    // iRprop−: after a sign change, forget the gradient (no step this time).
                    let gk = if s < 0.0 { 0.0 } else { gi };
                    prev[i] = gk;
                    let sign = if gk > 0.0 {
                        1.0
                    } else if gk < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    sign * step[i]
                })
            }
            Algorithm::RmsProp => {
                let gamma = decay(o.rms_halflife);
                let [f, m] = &mut slots[..] else {
                    unreachable!("rmsprop has two slots")
                };
                let (f, m) = (&mut f[..n], &mut m[..n]);
                each!(|i, gi| {
                    f[i] = flush(gamma * f[i] + (1.0 - gamma) * gi);
                    m[i] = flush(gamma * m[i] + (1.0 - gamma) * gi * gi);
                    // m − f² is a variance, ≥ 0 in exact arithmetic; rounding can push it below
                    // zero for a steady gradient, which would make the root NaN.
                    alpha * gi / ((m[i] - f[i] * f[i]).max(0.0) + eps).sqrt()
                })
            }
            Algorithm::AdaGrad => {
                let [sum] = &mut slots[..] else {
                    unreachable!("adagrad has one slot")
                };
                let sum = &mut sum[..n];
                each!(|i, gi| {
                    sum[i] += gi * gi;
                    alpha * gi / (sum[i] + eps).sqrt()
                })
            }
            Algorithm::AdaDelta => {
                let gamma = decay(o.rms_halflife);
                let [m, x] = &mut slots[..] else {
                    unreachable!("adadelta has two slots")
                };
                let (m, x) = (&mut m[..n], &mut x[..n]);
                each!(|i, gi| {
                    m[i] = flush(gamma * m[i] + (1.0 - gamma) * gi * gi);
                    let d = gi * (x[i] + eps).sqrt() / (m[i] + eps).sqrt();
                    x[i] = flush(gamma * x[i] + (1.0 - gamma) * d * d);
                    d
                })
            }
            Algorithm::Esgd => {
                let gamma = decay(o.rms_halflife);
                // The running mean starts at zero: divide by (1 − γᵗ) so the first steps are not huge.
                let inv_correction = 1.0 / (1.0 - gamma.powi(t));
                let [dsq] = &mut slots[..] else {
                    unreachable!("esgd has one slot")
                };
                let dsq = &mut dsq[..n];
                // Present with length n: checked in `check_apply`.
                let hv = &hv.unwrap_or_default()[..n];
                each!(|i, gi| {
                    dsq[i] = flush(gamma * dsq[i] + (1.0 - gamma) * hv[i] * hv[i]);
                    alpha * gi / ((dsq[i] * inv_correction).sqrt() + eps)
                })
            }
            Algorithm::Adam => {
                let (b1, b2) = (decay(o.beta1_halflife), decay(o.beta2_halflife));
                // The paper's bias correction (downhill 0.3 used 1 − β2 without the power).
                let (inv_c1, inv_c2) = (1.0 / (1.0 - b1.powi(t)), 1.0 / (1.0 - b2.powi(t)));
                let [m, v] = &mut slots[..] else {
                    unreachable!("adam has two slots")
                };
                let (m, v) = (&mut m[..n], &mut v[..n]);
                each!(|i, gi| {
                    m[i] = flush(b1 * m[i] + (1.0 - b1) * gi);
                    v[i] = flush(b2 * v[i] + (1.0 - b2) * gi * gi);
                    alpha * (m[i] * inv_c1) / ((v[i] * inv_c2).sqrt() + eps)
                })
            }
        }
        Ok(())
    }

    /// The length every array given to [`Rule::apply`] for parameter `index` must have, or an
    /// error saying which array does not fit (a shorter gradient used to be silently truncated).
    fn check_apply(&self, index: usize, p: usize, g: usize, hv: Option<usize>) -> Result<usize> {
        let what = format!("{} update of parameter {index}", self.state.algorithm);
        let bad = |problem: String| Error::Config {
            what: what.clone(),
            problem,
        };
        let n = *self.sizes.get(index).ok_or_else(|| {
            bad(format!(
                "the rule was made for {} parameter(s), so the index must be below that",
                self.sizes.len()
            ))
        })?;
        let mut arrays = vec![("parameter", p), ("gradient", g)];
        if self.needs_hv() {
            let hv = hv.ok_or_else(|| bad("ESGD needs a Hessian-vector product".into()))?;
            arrays.push(("Hessian-vector product", hv));
        }
        match arrays.into_iter().find(|&(_, len)| len != n) {
            Some((name, len)) => Err(bad(format!("the {name} has {len} values, expected {n}"))),
            None => Ok(n),
        }
    }
}

/// Subnormal values become zero. Running averages of a parameter whose gradient stays zero (a dead
/// unit) decay geometrically into the subnormal range, where x86 arithmetic is around a hundred
/// times slower; a value that small has no effect on any update, so it is dropped. The test is a
/// compare and a select, which vectorises, and is exact and deterministic.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

enum Momentum<'a> {
    None,
    Classic(f32, &'a mut [f32]),
    Nesterov(f32, &'a mut [f32]),
}
