//! Each update rule against its formula on small hand-computed cases: a scalar f64 reference
//! written straight from the formulas (downhill's, with Adam's bias correction as in the paper and
//! ESGD's running mean corrected the same way), plus literal numbers for momentum and clipping.

use optim::{Algorithm, Rule, RuleOptions};
use tape::testing::close;

const GRADS: [[f32; 2]; 3] = [[0.5, -1.0], [0.25, 0.5], [-0.5, 0.5]];
const HVS: [[f32; 2]; 3] = [[1.0, -2.0], [0.5, 0.25], [2.0, 1.0]];
const START: [f32; 2] = [1.0, -2.0];

fn run(opts: RuleOptions, steps: usize) -> Vec<[f32; 2]> {
    let mut rule = Rule::new(opts, &[2]).unwrap();
    let mut p = START;
    let mut out = Vec::new();
    for t in 0..steps {
        rule.begin_step();
        rule.apply(0, &mut p, &GRADS[t], Some(&HVS[t]))
            .expect("sizes fit");
        out.push(p);
    }
    out
}

fn opts(alg: Algorithm, lr: f32) -> RuleOptions {
    let mut o = RuleOptions::new(alg);
    o.learning_rate = lr;
    o
}

#[track_caller]
fn check(got: &[[f32; 2]], want: &[[f64; 2]]) {
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        for i in 0..2 {
            assert!(
                close(g[i], w[i], 1e-5, 1e-5),
                "step {} element {i}: got {} want {}",
                t + 1,
                g[i],
                w[i]
            );
        }
    }
}

fn decay(h: f64) -> f64 {
    (-(2f64.ln()) / h).exp()
}

/// Runs a per-element reference `delta(t, i, g, hv, state) -> Δ` with `p -= Δ`.
fn reference(mut delta: impl FnMut(usize, usize, f64, f64) -> f64) -> Vec<[f64; 2]> {
    let mut p = [f64::from(START[0]), f64::from(START[1])];
    let mut out = Vec::new();
    for t in 0..3 {
        for i in 0..2 {
            p[i] -= delta(t, i, f64::from(GRADS[t][i]), f64::from(HVS[t][i]));
        }
        out.push(p);
    }
    out
}

#[test]
fn sgd() {
    check(
        &run(opts(Algorithm::Sgd, 0.1), 3),
        &reference(|_, _, g, _| 0.1 * g),
    );
}

#[test]
fn sgd_with_momentum_literal_values() {
    let mut o = opts(Algorithm::Sgd, 0.1);
    o.momentum = 0.5;
    let mut rule = Rule::new(o, &[1]).unwrap();
    let mut p = [1.0f32];
    let mut seen = Vec::new();
    for _ in 0..3 {
        rule.begin_step();
        rule.apply(0, &mut p, &[1.0], None).expect("sizes fit");
        seen.push(p[0]);
    }
    // v1 = -0.1, p = 0.9; v2 = 0.5·(-0.1) - 0.1 = -0.15, p = 0.75; v3 = -0.175, p = 0.575
    check(
        &seen.iter().map(|&v| [v, 0.0]).collect::<Vec<_>>(),
        &[[0.9, 0.0], [0.75, 0.0], [0.575, 0.0]],
    );
}

#[test]
fn nag_uses_nesterov_momentum_literal_values() {
    let mut o = opts(Algorithm::Nag, 0.1);
    o.momentum = 0.5;
    assert!(o.nesterov);
    let mut rule = Rule::new(o, &[1]).unwrap();
    let mut p = [1.0f32];
    let mut seen = Vec::new();
    for _ in 0..3 {
        rule.begin_step();
        rule.apply(0, &mut p, &[1.0], None).expect("sizes fit");
        seen.push(p[0]);
    }
    // p += μ²·v_prev − (1+μ)·Δ with v = μ·v_prev − Δ, Δ = 0.1:
    // 1 − 0.15 = 0.85 (v = −0.1); 0.85 − 0.025 − 0.15 = 0.675 (v = −0.15); 0.675 − 0.0375 − 0.15 = 0.4875
    check(
        &seen.iter().map(|&v| [v, 0.0]).collect::<Vec<_>>(),
        &[[0.85, 0.0], [0.675, 0.0], [0.4875, 0.0]],
    );
}

#[test]
fn clipping_per_element_and_per_tensor_norm() {
    let mut o = opts(Algorithm::Sgd, 1.0);
    o.max_gradient_elem = 0.3;
    let mut rule = Rule::new(o, &[2]).unwrap();
    let mut p = [0.0f32, 0.0];
    rule.begin_step();
    rule.apply(0, &mut p, &[0.5, -1.0], None)
        .expect("sizes fit");
    assert_eq!(p, [-0.3, 0.3]);

    let mut o = opts(Algorithm::Sgd, 1.0);
    o.max_gradient_norm = 1.0;
    let mut rule = Rule::new(o, &[2, 2]).unwrap();
    let (mut a, mut b) = ([0.0f32, 0.0], [0.0f32, 0.0]);
    rule.begin_step();
    rule.apply(0, &mut a, &[3.0, 4.0], None).expect("sizes fit"); // norm 5 → scaled to norm 1
    rule.apply(1, &mut b, &[0.3, 0.4], None).expect("sizes fit"); // norm 0.5: untouched (per tensor, not global)
    check(&[a, b], &[[-0.6, -0.8], [-0.3, -0.4]]);
}

#[test]
fn rprop_irprop_minus() {
    let mut o = opts(Algorithm::Rprop, 0.1);
    o.rprop_increase = 1.2;
    o.rprop_decrease = 0.5;
    let (mut prev, mut step) = ([0.0f64; 2], [0.1f64; 2]);
    let want = reference(|_, i, g, _| {
        let s = g * prev[i];
        step[i] *= if s > 0.0 {
            1.2
        } else if s < 0.0 {
            0.5
        } else {
            1.0
        };
        let g = if s < 0.0 { 0.0 } else { g };
        prev[i] = g;
        g.signum() * step[i] * if g == 0.0 { 0.0 } else { 1.0 }
    });
    check(&run(o, 3), &want);
    // Literally: element 0 sees +, +, −: steps 0.1, 0.12, then a sign change: no move, step 0.06.
    assert!((want[2][0] - (1.0 - 0.1 - 0.12)).abs() < 1e-12);
}

#[test]
fn rmsprop_graves() {
    let gamma = decay(14.0);
    let (mut f, mut m) = ([0.0f64; 2], [0.0f64; 2]);
    let want = reference(|_, i, g, _| {
        f[i] = gamma * f[i] + (1.0 - gamma) * g;
        m[i] = gamma * m[i] + (1.0 - gamma) * g * g;
        0.01 * g / ((m[i] - f[i] * f[i]).max(0.0) + 1e-8).sqrt()
    });
    check(&run(opts(Algorithm::RmsProp, 0.01), 3), &want);
}

#[test]
fn adagrad() {
    let mut sum = [0.0f64; 2];
    let want = reference(|_, i, g, _| {
        sum[i] += g * g;
        0.1 * g / (sum[i] + 1e-8).sqrt()
    });
    check(&run(opts(Algorithm::AdaGrad, 0.1), 3), &want);
    // First step of ADAGRAD moves every element by exactly α·sign(g).
    assert!((want[0][0] - 0.9).abs() < 1e-6 && (want[0][1] + 1.9).abs() < 1e-6);
}

#[test]
fn adadelta_ignores_the_learning_rate() {
    let gamma = decay(14.0);
    let (mut m, mut x) = ([0.0f64; 2], [0.0f64; 2]);
    let want = reference(|_, i, g, _| {
        m[i] = gamma * m[i] + (1.0 - gamma) * g * g;
        let d = g * (x[i] + 1e-8).sqrt() / (m[i] + 1e-8).sqrt();
        x[i] = gamma * x[i] + (1.0 - gamma) * d * d;
        d
    });
    check(&run(opts(Algorithm::AdaDelta, 123.0), 3), &want);
}

#[test]
fn esgd_with_bias_corrected_equilibration() {
    let gamma = decay(14.0);
    let mut d = [0.0f64; 2];
    let want = reference(|t, i, g, hv| {
        d[i] = gamma * d[i] + (1.0 - gamma) * hv * hv;
        let corrected = d[i] / (1.0 - gamma.powi(t as i32 + 1));
        0.1 * g / (corrected.sqrt() + 1e-8)
    });
    check(&run(opts(Algorithm::Esgd, 0.1), 3), &want);
    // First step: the corrected mean is hv² itself, so Δ = α·g/|hv|.
    assert!((want[0][0] - (1.0 - 0.1 * 0.5 / 1.0)).abs() < 1e-6);
}

#[test]
fn adam_with_the_papers_bias_correction() {
    let (b1, b2) = (decay(7.0), decay(69.0));
    let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
    let want = reference(|t, i, g, _| {
        let t = t as i32 + 1;
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        0.01 * (m[i] / (1.0 - b1.powi(t))) / ((v[i] / (1.0 - b2.powi(t))).sqrt() + 1e-8)
    });
    check(&run(opts(Algorithm::Adam, 0.01), 3), &want);
    // With the paper's correction the first step is α·sign(g) (up to ε).
    assert!((want[0][0] - 0.99).abs() < 1e-6);
}

#[test]
fn every_rule_composes_with_momentum_the_same_way() {
    for alg in Algorithm::ALL {
        for nesterov in [false, true] {
            if alg == Algorithm::Nag && !nesterov {
                continue;
            }
            // Reference: the plain rule's Δ sequence, then momentum applied on top.
            let plain = run(opts(alg, 0.05), 3);
            let mut deltas = Vec::new();
            let mut prev = START;
            for p in &plain {
                deltas.push([f64::from(prev[0] - p[0]), f64::from(prev[1] - p[1])]);
                prev = *p;
            }
            let mu = 0.8f64;
            let mut v = [0.0f64; 2];
            let mut p = [f64::from(START[0]), f64::from(START[1])];
            let mut want = Vec::new();
            for d in &deltas {
                for i in 0..2 {
                    let before = v[i];
                    v[i] = mu * before - d[i];
                    p[i] += if nesterov {
                        mu * mu * before - (1.0 + mu) * d[i]
                    } else {
                        v[i]
                    };
                }
                want.push(p);
            }
            let mut o = opts(alg, 0.05);
            o.momentum = 0.8;
            o.nesterov = nesterov;
            let got = run(o, 3);
            for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                for i in 0..2 {
                    assert!(
                        close(g[i], w[i], 1e-4, 1e-4),
                        "{alg} nesterov={nesterov} step {t}"
                    );
                }
            }
        }
    }
}

#[test]
fn state_round_trips_through_msgpack_and_resumes_exactly() {
    for alg in Algorithm::ALL {
        let mut o = opts(alg, 0.05);
        o.momentum = 0.5;
        let mut a = Rule::new(o.clone(), &[2]).unwrap();
        let mut pa = START;
        a.begin_step();
        a.apply(0, &mut pa, &GRADS[0], Some(&HVS[0]))
            .expect("sizes fit");
        let bytes = rmp_serde::to_vec(a.state()).unwrap();
        let mut b = Rule::new(o, &[2]).unwrap();
        b.set_state(rmp_serde::from_slice(&bytes).unwrap()).unwrap();
        let mut pb = pa;
        for t in 1..3 {
            a.begin_step();
            a.apply(0, &mut pa, &GRADS[t], Some(&HVS[t]))
                .expect("sizes fit");
            b.begin_step();
            b.apply(0, &mut pb, &GRADS[t], Some(&HVS[t]))
                .expect("sizes fit");
        }
        assert_eq!(pa, pb, "{alg}");
        let other = Rule::new(opts(Algorithm::Sgd, 0.1), &[3]).unwrap();
        if alg != Algorithm::Sgd {
            assert!(b.set_state(other.state().clone()).is_err());
        }
    }
}

#[test]
fn rmsprop_stays_finite_under_a_steady_gradient() {
    // With a constant gradient the centred variance m − f² is zero in exact arithmetic and may
    // round below zero; the rule must not take the root of a negative number.
    let n = 1000;
    let grads: Vec<f32> = (0..n).map(|i| 0.01 + i as f32 * 0.01).collect();
    let mut rule = Rule::new(opts(Algorithm::RmsProp, 1e-3), &[n]).unwrap();
    let mut p = vec![0.0f32; n];
    for _ in 0..600 {
        rule.begin_step();
        rule.apply(0, &mut p, &grads, None).expect("sizes fit");
    }
    assert!(
        p.iter().all(|v| v.is_finite()),
        "{} NaN parameters",
        p.iter().filter(|v| !v.is_finite()).count()
    );
}

/// Issue 12 item 9: an index past the rule's parameters, ESGD without a Hessian-vector product
/// and arrays of the wrong length used to panic or be silently truncated; each is now an error
/// and leaves the parameter as it was.
#[test]
fn apply_rejects_arrays_that_do_not_fit_the_rule() {
    let mut sgd = Rule::new(RuleOptions::new(Algorithm::Sgd), &[2]).expect("valid options");
    sgd.begin_step();
    let mut p = [1.0f32, 2.0];
    let past = sgd.apply(1, &mut p, &[1.0, 1.0], None).unwrap_err();
    assert!(past.to_string().contains("parameter 1"), "{past}");
    let short = sgd.apply(0, &mut p, &[1.0], None).unwrap_err();
    assert!(
        short
            .to_string()
            .contains("gradient has 1 values, expected 2"),
        "{short}"
    );
    let mut long = [1.0f32, 2.0, 3.0];
    let err = sgd.apply(0, &mut long, &[1.0, 1.0], None).unwrap_err();
    assert!(err.to_string().contains("parameter has 3 values"), "{err}");
    assert_eq!(p, [1.0, 2.0]);
    assert_eq!(long, [1.0, 2.0, 3.0]);

    let mut esgd = Rule::new(RuleOptions::new(Algorithm::Esgd), &[2]).expect("valid options");
    esgd.begin_step();
    let no_hv = esgd.apply(0, &mut p, &[1.0, 1.0], None).unwrap_err();
    assert!(no_hv.to_string().contains("Hessian-vector"), "{no_hv}");
    let short_hv = esgd
        .apply(0, &mut p, &[1.0, 1.0], Some(&[1.0]))
        .unwrap_err();
    assert!(short_hv.to_string().contains("has 1 values"), "{short_hv}");
    assert_eq!(p, [1.0, 2.0]);
}
