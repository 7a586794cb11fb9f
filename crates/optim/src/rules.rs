//! The update rules: tight native loops over a parameter's values, its gradient (as the compiled
//! function wrote it) and the rule's state, with gradient clipping and (Nesterov) momentum fused in.
//! Formulas follow downhill, with the corrections listed on each rule.

use crate::error::{Error, Result};
use crate::options::{decay, Algorithm, RuleOptions};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

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
        // The norm covers the whole gradient, so it is taken before the work is split.
        let (scale, c) = if o.max_gradient_elem > 0.0 {
            (1.0, o.max_gradient_elem)
        } else if o.max_gradient_norm > 0.0 {
            let norm = g.iter().map(|&v| v * v).sum::<f32>().sqrt();
            ((o.max_gradient_norm / norm).min(1.0), f32::INFINITY)
        } else {
            (1.0, f32::INFINITY)
        };
        let momentum = match (o.momentum > 0.0, o.nesterov) {
            (false, _) => Momentum::None,
            (true, false) => Momentum::Classic(o.momentum),
            (true, true) => Momentum::Nesterov(o.momentum),
        };
        let coefs = Coefs {
            scale,
            c,
            momentum,
            alpha: o.learning_rate,
            eps: o.rms_regularizer,
            step: step_kind(o, self.state.step.max(1) as i32),
        };
        let (s0, s1) = match &mut self.state.slots[index][..] {
            [] => (&mut [][..], &mut [][..]),
            [a] => (&mut a[..n], &mut [][..]),
            [a, b, ..] => (&mut a[..n], &mut b[..n]),
        };
        let velocity = &mut self.state.velocity[index];
        let piece = Piece {
            p,
            g,
            // Present with length n for ESGD: checked in `check_apply`.
            hv: hv.map_or(&[][..], |h| &h[..n]),
            v: if velocity.is_empty() {
                &mut [][..]
            } else {
                &mut velocity[..n]
            },
            s0,
            s1,
        };
        run_pieces(&coefs, piece);
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

/// Parameters with at least this many elements are updated by all GEMM threads together: below
/// it, waking a helper (microseconds) costs more than it saves on a memory-bound loop.
const PARALLEL_MIN: usize = 1 << 16;

/// Parts are multiples of this many elements (a 64-byte cache line), so threads never share one.
const PART_ALIGN: usize = 16;

/// Updates `piece`, split across the GEMM threads when it is large. Every element gets the same
/// arithmetic whichever thread runs it, so results do not depend on the thread count.
fn run_pieces(coefs: &Coefs, piece: Piece<'_>) {
    let n = piece.p.len();
    let threads = tape::kernels::num_threads();
    if n < PARALLEL_MIN || threads < 2 {
        let mut piece = piece;
        update_piece(coefs, &mut piece);
        return;
    }
    let width = n.div_ceil(threads).div_ceil(PART_ALIGN) * PART_ALIGN;
    let mut parts: SmallVec<[Piece<'_>; 4]> = SmallVec::new();
    let mut rest = piece;
    while rest.p.len() > width {
        let (head, tail) = rest.split_at(width);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    tape::kernels::for_each_part(&mut parts, &|piece: &mut Piece<'_>| {
        update_piece(coefs, piece)
    });
}

/// Momentum as the loops apply it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Momentum {
    None,
    Classic(f32),
    Nesterov(f32),
}

/// Each algorithm's per-step constants.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StepKind {
    Sgd,
    Rprop {
        inc: f32,
        dec: f32,
        lo: f32,
        hi: f32,
    },
    RmsProp {
        gamma: f32,
    },
    AdaGrad,
    AdaDelta {
        gamma: f32,
    },
    Esgd {
        gamma: f32,
        inv_correction: f32,
    },
    Adam {
        b1: f32,
        b2: f32,
        inv_c1: f32,
        inv_c2: f32,
    },
}

/// The constants of one [`Rule::apply`] call, shared by all its pieces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coefs {
    scale: f32,
    c: f32,
    momentum: Momentum,
    alpha: f32,
    eps: f32,
    step: StepKind,
}

/// The constants of the algorithm at step `t` (1-based).
fn step_kind(o: &RuleOptions, t: i32) -> StepKind {
    match o.algorithm {
        Algorithm::Sgd | Algorithm::Nag => StepKind::Sgd,
        Algorithm::Rprop => StepKind::Rprop {
            inc: o.rprop_increase,
            dec: o.rprop_decrease,
            lo: o.rprop_min_step,
            hi: o.rprop_max_step,
        },
        Algorithm::RmsProp => StepKind::RmsProp {
            gamma: decay(o.rms_halflife),
        },
        Algorithm::AdaGrad => StepKind::AdaGrad,
        Algorithm::AdaDelta => StepKind::AdaDelta {
            gamma: decay(o.rms_halflife),
        },
        Algorithm::Esgd => {
            let gamma = decay(o.rms_halflife);
            // The running mean starts at zero: divide by (1 − γᵗ) so the first steps are not huge.
            StepKind::Esgd {
                gamma,
                inv_correction: 1.0 / (1.0 - gamma.powi(t)),
            }
        }
        Algorithm::Adam => {
            let (b1, b2) = (decay(o.beta1_halflife), decay(o.beta2_halflife));
            // The paper's bias correction (downhill 0.3 used 1 − β2 without the power).
            StepKind::Adam {
                b1,
                b2,
                inv_c1: 1.0 / (1.0 - b1.powi(t)),
                inv_c2: 1.0 / (1.0 - b2.powi(t)),
            }
        }
    }
}

/// One contiguous range of a parameter's update: the parameter, its gradient, the Hessian-vector
/// product (empty unless ESGD), the velocity (empty without momentum) and the algorithm's first
/// and second buffers (empty when it has fewer), all over the same elements.
pub(crate) struct Piece<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    hv: &'a [f32],
    v: &'a mut [f32],
    s0: &'a mut [f32],
    s1: &'a mut [f32],
}

/// Splits a buffer that is either empty or as long as the parameter.
fn split_mut(x: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
    if x.is_empty() {
        (&mut [], &mut [])
    } else {
        x.split_at_mut(mid)
    }
}

impl<'a> Piece<'a> {
    /// Elements `..mid` and `mid..` (`mid` ≤ the length).
    fn split_at(self, mid: usize) -> (Piece<'a>, Piece<'a>) {
        let (p0, p1) = self.p.split_at_mut(mid);
        let (g0, g1) = self.g.split_at(mid);
        let (h0, h1) = if self.hv.is_empty() {
            (self.hv, self.hv)
        } else {
            self.hv.split_at(mid)
        };
        let (v0, v1) = split_mut(self.v, mid);
        let (a0, a1) = split_mut(self.s0, mid);
        let (b0, b1) = split_mut(self.s1, mid);
        let head = Piece {
            p: p0,
            g: g0,
            hv: h0,
            v: v0,
            s0: a0,
            s1: b0,
        };
        let tail = Piece {
            p: p1,
            g: g1,
            hv: h1,
            v: v1,
            s0: a1,
            s1: b1,
        };
        (head, tail)
    }
}

tape::multiversion! {
    /// The update loop over one piece, compiled for each instruction set (see
    /// `tape::kernels::SimdLevel`): the formulas are plain Rust, so every level rounds alike.
    fn update_piece / update_piece_at(k: &Coefs, piece: &mut Piece<'_>) {
        let n = piece.p.len();
        let (p, g) = (&mut piece.p[..n], &piece.g[..n]);
        let (scale, c, alpha, eps) = (k.scale, k.c, k.alpha, k.eps);

        macro_rules! each {
            (|$i:ident, $g:ident| $delta:expr) => {
                match k.momentum {
                    Momentum::None => {
                        for $i in 0..n {
                            let $g = (g[$i] * scale).clamp(-c, c);
                            let d = $delta;
                            p[$i] -= d;
                        }
                    }
                    Momentum::Classic(mu) => {
                        let v = &mut piece.v[..n];
                        for $i in 0..n {
                            let $g = (g[$i] * scale).clamp(-c, c);
                            let d = $delta;
                            v[$i] = flush(mu * v[$i] - d);
                            p[$i] += v[$i];
                        }
                    }
                    Momentum::Nesterov(mu) => {
                        let v = &mut piece.v[..n];
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

        match k.step {
            StepKind::Sgd => each!(|i, gi| alpha * gi),
            StepKind::Rprop { inc, dec, lo, hi } => {
                let (prev, step) = (&mut piece.s0[..n], &mut piece.s1[..n]);
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
            StepKind::RmsProp { gamma } => {
                let (f, m) = (&mut piece.s0[..n], &mut piece.s1[..n]);
                each!(|i, gi| {
                    f[i] = flush(gamma * f[i] + (1.0 - gamma) * gi);
                    m[i] = flush(gamma * m[i] + (1.0 - gamma) * gi * gi);
                    // m − f² is a variance, ≥ 0 in exact arithmetic; rounding can push it below
                    // zero for a steady gradient, which would make the root NaN.
                    alpha * gi / ((m[i] - f[i] * f[i]).max(0.0) + eps).sqrt()
                })
            }
            StepKind::AdaGrad => {
                let sum = &mut piece.s0[..n];
                each!(|i, gi| {
                    sum[i] += gi * gi;
                    alpha * gi / (sum[i] + eps).sqrt()
                })
            }
            StepKind::AdaDelta { gamma } => {
                let (m, x) = (&mut piece.s0[..n], &mut piece.s1[..n]);
                each!(|i, gi| {
                    m[i] = flush(gamma * m[i] + (1.0 - gamma) * gi * gi);
                    let d = gi * (x[i] + eps).sqrt() / (m[i] + eps).sqrt();
                    x[i] = flush(gamma * x[i] + (1.0 - gamma) * d * d);
                    d
                })
            }
            StepKind::Esgd {
                gamma,
                inv_correction,
            } => {
                let (dsq, hv) = (&mut piece.s0[..n], &piece.hv[..n]);
                each!(|i, gi| {
                    dsq[i] = flush(gamma * dsq[i] + (1.0 - gamma) * hv[i] * hv[i]);
                    alpha * gi / ((dsq[i] * inv_correction).sqrt() + eps)
                })
            }
            StepKind::Adam {
                b1,
                b2,
                inv_c1,
                inv_c2,
            } => {
                let (m, v) = (&mut piece.s0[..n], &mut piece.s1[..n]);
                each!(|i, gi| {
                    m[i] = flush(b1 * m[i] + (1.0 - b1) * gi);
                    v[i] = flush(b2 * v[i] + (1.0 - b2) * gi * gi);
                    alpha * (m[i] * inv_c1) / ((v[i] * inv_c2).sqrt() + eps)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tape::kernels::{supported_simd_levels, SimdLevel};
    use tape::Rng;

    const SPECIAL: [f32; 10] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1.0e-40,
        -3.0e-42,
        f32::MIN_POSITIVE,
        1.0e30,
        -1.0,
    ];

    /// Random values of varied magnitude, about one in eight special.
    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut v = vec![0.0; n];
        rng.fill_normal(&mut v, 0.0, 1.0);
        for x in &mut v {
            if rng.below(8) == 0 {
                *x = SPECIAL[rng.below(SPECIAL.len())];
            } else {
                *x *= 10f32.powi(rng.below(7) as i32 - 3);
            }
        }
        v
    }

    /// The arrays a piece borrows: parameter, gradient, hv, velocity, two slots.
    fn arrays(n: usize, seed: u64) -> [Vec<f32>; 6] {
        let mut s1 = data(n, seed + 5);
        // Second-moment-like buffers are non-negative in training; keep some negatives anyway.
        s1.iter_mut().step_by(2).for_each(|v| *v = v.abs());
        [
            data(n, seed),
            data(n, seed + 1),
            data(n, seed + 2),
            data(n, seed + 3),
            data(n, seed + 4),
            s1,
        ]
    }

    fn run(level: SimdLevel, coefs: &Coefs, a: &[Vec<f32>; 6]) -> [Vec<f32>; 6] {
        let mut out = a.clone();
        let [p, g, hv, v, s0, s1] = &mut out;
        let mut piece = Piece {
            p,
            g,
            hv,
            v,
            s0,
            s1,
        };
        update_piece_at(level, coefs, &mut piece);
        out
    }

    #[test]
    fn every_simd_level_updates_bit_identically() {
        for alg in Algorithm::ALL {
            for (mi, momentum) in [
                Momentum::None,
                Momentum::Classic(0.9),
                Momentum::Nesterov(0.9),
            ]
            .into_iter()
            .enumerate()
            {
                for (n, clip) in [
                    (1, f32::INFINITY),
                    (17, 0.5),
                    (33, f32::INFINITY),
                    (1001, 2.0),
                ] {
                    let opts = RuleOptions::new(alg);
                    let coefs = Coefs {
                        scale: if clip.is_finite() { 1.0 } else { 0.75 },
                        c: clip,
                        momentum,
                        alpha: 0.01,
                        eps: 1e-6,
                        step: step_kind(&opts, 3),
                    };
                    let a = arrays(n, (n * 10 + mi) as u64);
                    let base = run(SimdLevel::Baseline, &coefs, &a);
                    for level in supported_simd_levels() {
                        let got = run(level, &coefs, &a);
                        for (k, (x, y)) in got.iter().zip(&base).enumerate() {
                            for (i, (u, w)) in x.iter().zip(y).enumerate() {
                                // NaN bits are unspecified (see tape's `multiversion!`).
                                assert!(
                                    u.to_bits() == w.to_bits() || (u.is_nan() && w.is_nan()),
                                    "{alg:?} {momentum:?} n={n} at {level:?}: array {k} \
                                     element {i} is {u:e}, baseline {w:e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adam's first step written out: from zero moments, m = (1−β1)·g, v = (1−β2)·g², and
    /// p −= α·(m/(1−β1))/(√(v/(1−β2)) + ε), with the moments flushed below the normal range.
    fn adam_first_step(p: f32, g: f32, o: &RuleOptions) -> f32 {
        let (b1, b2) = (decay(o.beta1_halflife), decay(o.beta2_halflife));
        let ftz = |x: f32| if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x };
        let m = ftz(b1 * 0.0 + (1.0 - b1) * g);
        let v = ftz(b2 * 0.0 + (1.0 - b2) * g * g);
        let (c1, c2) = (1.0 / (1.0 - b1), 1.0 / (1.0 - b2));
        p - o.learning_rate * (m * c1) / ((v * c2).sqrt() + o.rms_regularizer)
    }

    #[test]
    fn large_parameters_are_split_across_threads_with_the_same_result() {
        // Several parts of odd total length, so the last part is short and unaligned.
        let n = 3 * PARALLEL_MIN + 5;
        let p0 = data(n, 1);
        let g = data(n, 2);
        let opts = RuleOptions::new(Algorithm::Adam);
        let expected: Vec<f32> = p0
            .iter()
            .zip(&g)
            .map(|(&p, &g)| adam_first_step(p, g, &opts))
            .collect();
        let before = tape::kernels::num_threads();
        for threads in [1, 2, 3] {
            tape::kernels::set_num_threads(threads);
            let mut rule = Rule::new(opts.clone(), &[n]).unwrap();
            let mut p = p0.clone();
            rule.begin_step();
            rule.apply(0, &mut p, &g, None).unwrap();
            for (i, (a, b)) in p.iter().zip(&expected).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{threads} thread(s): element {i} is {a:e}, the formula gives {b:e}"
                );
            }
        }
        tape::kernels::set_num_threads(before);
    }

    #[test]
    fn pieces_split_every_array_at_the_same_place() {
        let a = arrays(10, 3);
        let mut b = a.clone();
        let [p, g, hv, v, s0, s1] = &mut b;
        let piece = Piece {
            p,
            g,
            hv: &hv[..0],
            v,
            s0,
            s1: &mut s1[..0],
        };
        let (head, tail) = piece.split_at(4);
        assert_eq!(
            (head.p.len(), head.g.len(), head.v.len(), head.s0.len()),
            (4, 4, 4, 4)
        );
        assert_eq!(
            (tail.p.len(), tail.g.len(), tail.v.len(), tail.s0.len()),
            (6, 6, 6, 6)
        );
        assert!(
            head.hv.is_empty() && tail.hv.is_empty() && head.s1.is_empty() && tail.s1.is_empty()
        );
        assert_eq!(tail.g[0].to_bits(), a[1][4].to_bits());
        assert_eq!(tail.s0[0].to_bits(), a[4][4].to_bits());
    }
}
