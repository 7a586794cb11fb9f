//! `tape::scan` against hand-unrolled graphs built from slices and ordinary ops (values and
//! gradients; masks; both directions; truncated backpropagation), against finite differences
//! (first and second order), and its errors.

use proptest::prelude::*;
use tape::check::{self, Options};
use tape::scan::{scan, Scan, ScanOutput};
use tape::testing::{assert_close_tensor, normal};
use tape::{grad, Error, Expr, Function, Param, Tensor};

/// Sizes of one case: batch, time, input width, state width.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    time: usize,
    dx: usize,
    dh: usize,
}

/// The plain RNN step, written the way a layer would: `tanh(x_t W + h U + b)`.
fn rnn(x_t: &Expr, h: &Expr, w: &Expr, u: &Expr, b: &Expr) -> Expr {
    (x_t.matmul(w) + h.matmul(u) + b).tanh()
}

/// One RNN case: its inputs (`x`, `h0`, optional mask), weights and values.
struct Case {
    d: Dims,
    x: Expr,
    h0: Expr,
    mask: Expr,
    w: Param,
    u: Param,
    b: Param,
    xs: Tensor,
    h0s: Tensor,
    masks: Tensor,
    /// Fixed weights that turn the stacked states and the final state into a scalar loss.
    r_states: Tensor,
    r_final: Tensor,
}

impl Case {
    fn new(d: Dims, seed: u64) -> Case {
        let Dims {
            batch,
            time,
            dx,
            dh,
        } = d;
        let scaled = |t: Tensor, s: f32| {
            let v = t.data().iter().map(|x| x * s).collect();
            Tensor::new(t.shape(), v).unwrap()
        };
        // Some rows padded at the end, some in the middle, never a whole row.
        let masks = Tensor::from_fn(&[batch, time], |i| {
            let (b, t) = (i[0] as u64, i[1] as u64);
            if t == 0 || !(b + t + seed).is_multiple_of(3) {
                1.0
            } else {
                0.0
            }
        });
        Case {
            d,
            x: Expr::input_with_dims("x", &[Some(batch), Some(time), Some(dx)]),
            h0: Expr::input_with_dims("h0", &[Some(batch), Some(dh)]),
            mask: Expr::input_with_dims("mask", &[Some(batch), Some(time)]),
            w: Param::new("w", scaled(normal(&[dx, dh], seed + 1), 0.6)),
            u: Param::new("u", scaled(normal(&[dh, dh], seed + 2), 0.5)),
            b: Param::new("b", scaled(normal(&[dh], seed + 3), 0.3)),
            xs: normal(&[batch, time, dx], seed + 4),
            h0s: scaled(normal(&[batch, dh], seed + 5), 0.5),
            masks,
            r_states: normal(&[batch, time, dh], seed + 6),
            r_final: normal(&[batch, dh], seed + 7),
        }
    }

    fn weights(&self) -> Vec<Expr> {
        vec![self.w.expr(), self.u.expr(), self.b.expr()]
    }

    /// The scan under test.
    fn scanned(&self, masked: bool, reverse: bool, bptt_limit: Option<usize>) -> ScanOutput {
        let weights = self.weights();
        scan(
            Scan {
                sequences: std::slice::from_ref(&self.x),
                states: std::slice::from_ref(&self.h0),
                non_sequences: &weights,
                reverse,
                mask: masked.then_some(&self.mask),
                bptt_limit,
            },
            |s| Ok(vec![rnn(&s[0], &s[1], &s[2], &s[3], &s[4])]),
        )
        .unwrap()
    }

    /// The same loop unrolled by hand: slices of `x` and the mask, ordinary ops, and a
    /// concatenation of the per-step states. At padding the state is carried with arithmetic
    /// (`m·new + (1−m)·old`), not with the `select` the scan uses. Returns the stacked states
    /// and the final state.
    fn unrolled(&self, masked: bool, reverse: bool) -> (Expr, Expr) {
        let Dims {
            batch, time, dx, ..
        } = self.d;
        let [w, u, b] = [self.w.expr(), self.u.expr(), self.b.expr()];
        let mut h = self.h0.clone();
        let mut per_step: Vec<Option<Expr>> = vec![None; time];
        for step in 0..time {
            let t = if reverse { time - 1 - step } else { step };
            let x_t = self
                .x
                .slice(1, t, 1)
                .reshape(&[batch as isize, dx as isize]);
            let new = rnn(&x_t, &h, &w, &u, &b);
            let (h_next, out) = if masked {
                let m = self.mask.slice(1, t, 1); // (batch, 1)
                (&m * &new + (1.0 - &m) * &h, &m * &new)
            } else {
                (new.clone(), new)
            };
            per_step[t] = Some(out.unsqueeze(1));
            h = h_next;
        }
        let steps: Vec<Expr> = per_step.into_iter().map(Option::unwrap).collect();
        (Expr::concat(&steps, 1), h)
    }

    fn loss(&self, states: &Expr, last: &Expr) -> Expr {
        (states * &Expr::constant(self.r_states.clone())).sum()
            + (last * &Expr::constant(self.r_final.clone())).sum()
    }

    fn args(&self, masked: bool) -> Vec<&Tensor> {
        let mut a = vec![&self.xs, &self.h0s];
        if masked {
            a.push(&self.masks);
        }
        a
    }

    fn inputs(&self, masked: bool) -> Vec<Expr> {
        let mut a = vec![self.x.clone(), self.h0.clone()];
        if masked {
            a.push(self.mask.clone());
        }
        a
    }

    /// Loss, stacked states, final state and the gradients with respect to x, h0, w, u, b.
    fn evaluate(&self, states: &Expr, last: &Expr, masked: bool) -> Vec<Tensor> {
        let loss = self.loss(states, last);
        let mut wrt = vec![self.x.clone(), self.h0.clone()];
        wrt.extend(self.weights());
        let mut outs = vec![loss.clone(), states.clone(), last.clone()];
        outs.extend(grad(&loss, &wrt).unwrap());
        let mut f = Function::compile(&self.inputs(masked), &outs).unwrap();
        f.call(&self.args(masked)).unwrap()
    }
}

const NAMES: [&str; 8] = ["loss", "states", "final", "dx", "dh0", "dw", "du", "db"];

fn dims() -> impl Strategy<Value = Dims> {
    (1usize..=3, 1usize..=5, 1usize..=3, 1usize..=3).prop_map(|(batch, time, dx, dh)| Dims {
        batch,
        time,
        dx,
        dh,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn an_rnn_scan_equals_the_unrolled_graph(
        d in dims(),
        seed in 0u64..1000,
        masked in any::<bool>(),
        reverse in any::<bool>(),
    ) {
        let case = Case::new(d, seed);
        let out = case.scanned(masked, reverse, None);
        let got = case.evaluate(&out.states[0], &out.finals[0], masked);
        let (states, last) = case.unrolled(masked, reverse);
        let want = case.evaluate(&states, &last, masked);
        for ((g, w), name) in got.iter().zip(&want).zip(NAMES) {
            assert_close_tensor(g, w, 1e-4, 1e-5, name);
        }
    }
}

#[test]
fn masked_steps_carry_the_state_and_output_zero() {
    // One row, three steps, the middle one padded; x = 0 and W = 0, U = 0, b = 1 make every
    // real step's state tanh(1).
    let x = Expr::input("x", 3);
    let m = Expr::input("m", 2);
    let h0 = Expr::input("h0", 2);
    let b = Param::new("b", Tensor::vector(&[1.0]));
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: &[b.expr()],
            mask: Some(&m),
            ..Scan::default()
        },
        |s| Ok(vec![(&s[0] * 0.0 + &s[1] * 0.5 + &s[2]).tanh()]),
    )
    .unwrap();
    let mut f =
        Function::compile(&[x, m, h0], &[out.states[0].clone(), out.finals[0].clone()]).unwrap();
    let r = f
        .call(&[
            &Tensor::zeros(&[1, 3, 1]),
            &Tensor::new(&[1, 3], vec![1.0, 0.0, 1.0]).unwrap(),
            &Tensor::new(&[1, 1], vec![0.2]).unwrap(),
        ])
        .unwrap();
    let h1 = (0.1f32 + 1.0).tanh();
    let h3 = (0.5 * h1 + 1.0).tanh();
    assert_close_tensor(
        &r[0],
        &Tensor::new(&[1, 3, 1], vec![h1, 0.0, h3]).unwrap(),
        1e-6,
        1e-7,
        "states",
    );
    assert_close_tensor(
        &r[1],
        &Tensor::new(&[1, 1], vec![h3]).unwrap(),
        1e-6,
        1e-7,
        "final",
    );
}

#[test]
fn scan_gradients_match_finite_differences() {
    for (masked, reverse) in [(false, false), (true, false), (true, true)] {
        let case = Case::new(
            Dims {
                batch: 2,
                time: 4,
                dx: 3,
                dh: 2,
            },
            7,
        );
        let out = case.scanned(masked, reverse, None);
        let loss = case.loss(&out.states[0], &out.finals[0]);
        let inputs: Vec<(Expr, Tensor)> = case
            .inputs(masked)
            .into_iter()
            .zip(case.args(masked).into_iter().cloned())
            .collect();
        let mut wrt = vec![case.x.clone(), case.h0.clone()];
        wrt.extend(case.weights());
        let report = check::gradient(&loss, &inputs, &wrt, &Options::default()).unwrap();
        assert!(report.ok(), "masked {masked}, reverse {reverse}: {report}");
    }
}

#[test]
fn the_gradient_of_a_gradient_norm_matches_finite_differences() {
    // Second order: the squared norm of dL/dU is a scan's gradient (itself a scan); its own
    // gradient with respect to W, U, b and x runs a scan of the backward scan.
    let case = Case::new(
        Dims {
            batch: 2,
            time: 3,
            dx: 2,
            dh: 2,
        },
        11,
    );
    let out = case.scanned(true, false, None);
    let loss = case.loss(&out.states[0], &out.finals[0]);
    let g = grad(&loss, &case.weights()).unwrap();
    let cost = g[1].square().sum() + g[0].square().sum();
    let inputs: Vec<(Expr, Tensor)> = case
        .inputs(true)
        .into_iter()
        .zip(case.args(true).into_iter().cloned())
        .collect();
    let mut wrt = case.weights();
    wrt.push(case.x.clone());
    let report = check::gradient(&cost, &inputs, &wrt, &Options::default()).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn bptt_limit_cuts_the_gradient_before_the_last_steps() {
    // Reference: the forward pass as usual, then an unrolled graph of the last k steps
    // starting from an *input* holding the state before them, so nothing flows further back.
    let d = Dims {
        batch: 2,
        time: 5,
        dx: 2,
        dh: 3,
    };
    for (k, reverse) in [
        (1, false),
        (2, false),
        (5, false),
        (7, false),
        (2, true),
        (4, true),
    ] {
        let case = Case::new(d, 3);
        let out = case.scanned(false, reverse, Some(k));
        let got = case.evaluate(&out.states[0], &out.finals[0], false);

        // The window: the last k steps in running order, and the time whose state enters it.
        let n = k.min(d.time);
        let (window, entering): (Vec<usize>, Option<usize>) = if reverse {
            ((0..n).rev().collect(), (n < d.time).then_some(n))
        } else {
            let first = d.time - n;
            ((first..d.time).collect(), first.checked_sub(1))
        };
        let before = match entering {
            None => case.h0s.clone(),
            Some(te) => {
                let states = &got[1];
                let at = |b: usize, j: usize| states.data()[(b * d.time + te) * d.dh + j];
                Tensor::from_fn(&[d.batch, d.dh], |i| at(i[0], i[1]))
            }
        };
        let hcut = Expr::input_with_dims("hcut", &[Some(d.batch), Some(d.dh)]);
        let [w, u, b] = [case.w.expr(), case.u.expr(), case.b.expr()];
        let mut h = hcut.clone();
        let mut loss = Expr::scalar(0.0);
        for &t in &window {
            let x_t = case
                .x
                .slice(1, t, 1)
                .reshape(&[d.batch as isize, d.dx as isize]);
            h = rnn(&x_t, &h, &w, &u, &b);
            let r_t = Expr::constant(case.r_states.clone())
                .slice(1, t, 1)
                .reshape(&[d.batch as isize, d.dh as isize]);
            loss = loss + (&h * &r_t).sum();
        }
        loss = loss + (&h * &Expr::constant(case.r_final.clone())).sum();
        let mut wrt = vec![case.x.clone(), hcut.clone()];
        wrt.extend(case.weights());
        let grads = grad(&loss, &wrt).unwrap();
        let mut f = Function::compile(&[case.x.clone(), hcut], &grads).unwrap();
        let want = f.call(&[&case.xs, &before]).unwrap();

        // dx: zero before the window, the reference's inside it.
        let dx = &got[3];
        for bi in 0..d.batch {
            for t in 0..d.time {
                for j in 0..d.dx {
                    let g = dx.data()[(bi * d.time + t) * d.dx + j];
                    let w = if !window.contains(&t) {
                        0.0
                    } else {
                        want[0].data()[(bi * d.time + t) * d.dx + j]
                    };
                    assert!(
                        (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                        "k {k}, reverse {reverse}: dx[{bi},{t},{j}]: {g} vs {w}"
                    );
                }
            }
        }
        // dh0: the reference's when the window reaches the start, else nothing.
        let dh0 = if entering.is_none() {
            want[1].clone()
        } else {
            Tensor::zeros(&[d.batch, d.dh])
        };
        assert_close_tensor(&got[4], &dh0, 1e-4, 1e-5, "dh0");
        for (i, name) in ["dw", "du", "db"].iter().enumerate() {
            assert_close_tensor(&got[5 + i], &want[2 + i], 1e-4, 1e-5, name);
        }
    }
}

#[test]
fn a_step_that_changes_a_state_shape_is_a_typed_error() {
    let x = Expr::input("x", 3);
    let h0 = Expr::input_with_dims("h0", &[None, Some(3)]);
    let v = Param::new("v", Tensor::zeros(&[3, 4]));
    let err = scan(
        Scan {
            sequences: &[x],
            states: &[h0],
            non_sequences: &[v.expr()],
            ..Scan::default()
        },
        |s| Ok(vec![s[1].matmul(&s[2])]),
    )
    .unwrap_err();
    match &err {
        Error::Shape {
            op,
            shapes,
            expected,
            ..
        } => {
            assert_eq!(op, "scan");
            assert_eq!(shapes[0].to_string(), "[?, 3]");
            assert_eq!(shapes[1].to_string(), "[?, 4]");
            assert!(expected.contains("state 0"), "{expected}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn sequences_that_disagree_on_time_are_refused_when_called() {
    let x = Expr::input("x", 3);
    let y = Expr::input("y", 3);
    let h0 = Expr::input("h0", 2);
    let out = scan(
        Scan {
            sequences: &[x.clone(), y.clone()],
            states: std::slice::from_ref(&h0),
            ..Scan::default()
        },
        |s| Ok(vec![&s[2] + &(&s[0] + &s[1])]),
    )
    .unwrap();
    let mut f = Function::compile(&[x, y, h0], &[out.finals[0].clone()]).unwrap();
    let err = f
        .call(&[
            &Tensor::zeros(&[1, 3, 2]),
            &Tensor::zeros(&[1, 4, 2]),
            &Tensor::zeros(&[1, 2]),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Shape { op, expected, .. }
        if op.starts_with("scan") && expected.contains("agree on batch and time")),
        "{err}"
    );
}

#[test]
fn a_step_reading_an_outer_input_is_refused() {
    let x = Expr::input("x", 3);
    let h0 = Expr::input("h0", 2);
    let outer = Expr::input("outer", 2);
    let err = scan(
        Scan {
            sequences: &[x],
            states: &[h0],
            ..Scan::default()
        },
        |s| Ok(vec![&s[1] + &outer]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Input { input, .. } if input == "outer"),
        "{err}"
    );
}

#[test]
fn a_random_step_runs_but_has_no_gradient() {
    let x = Expr::input("x", 3);
    let h0 = Expr::input("h0", 2);
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            ..Scan::default()
        },
        |s| Ok(vec![(&s[1] + &s[0]).dropout(0.5, 1)]),
    )
    .unwrap();
    let loss = out.finals[0].sum();
    let mut f = Function::compile(&[x.clone(), h0.clone()], std::slice::from_ref(&loss)).unwrap();
    assert!(f
        .call(&[&Tensor::ones(&[2, 3, 2]), &Tensor::zeros(&[2, 2])])
        .is_ok());
    let err = grad(&loss, &[x]).unwrap_err();
    assert!(
        matches!(&err, Error::Grad { reason, .. } if reason.contains("random")),
        "{err}"
    );
}

#[test]
fn parameters_read_directly_in_the_step_get_their_gradient() {
    // Σ_t x_t · w over 3 steps, with w captured by the closure instead of passed in.
    let x = Expr::input("x", 3);
    let h0 = Expr::input("h0", 2);
    let w = Param::new("w", Tensor::new(&[2, 1], vec![2.0, -1.0]).unwrap());
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            ..Scan::default()
        },
        |s| Ok(vec![&s[1] + &s[0].matmul(&w.expr())]),
    )
    .unwrap();
    let loss = out.finals[0].sum();
    let dw = grad(&loss, &[w.expr()]).unwrap().remove(0);
    let mut f = Function::compile(&[x, h0], &[loss, dw]).unwrap();
    let xs = Tensor::new(&[1, 3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    let r = f.call(&[&xs, &Tensor::zeros(&[1, 1])]).unwrap();
    assert_eq!(r[0].item(), Some(2.0 * 9.0 - 12.0));
    assert_eq!(r[1].data(), &[9.0, 12.0]);
}

#[test]
fn dumps_show_the_step_body_indented_under_the_scan() {
    let case = Case::new(
        Dims {
            batch: 1,
            time: 2,
            dx: 1,
            dh: 1,
        },
        1,
    );
    let out = case.scanned(false, false, None);
    let dump = out.finals[0].debug_print();
    assert!(
        dump.contains("scan(seqs=1, states=1, non_seqs=3, outputs=1)"),
        "{dump}"
    );
    assert!(dump.contains("    │ ") && dump.contains("tanh"), "{dump}");
    let mut f = Function::compile(&case.inputs(false), &[out.finals[0].clone()]).unwrap();
    f.call(&case.args(false)).unwrap();
    let graph = f.debug_graph();
    assert!(
        graph.contains("    │ ") && graph.contains("input `#0`"),
        "{graph}"
    );
    let plan = f.debug_plan();
    assert!(plan.contains("scan 2 steps over batch 1"), "{plan}");
    assert!(plan.contains("    │ buf"), "{plan}");
}

#[test]
fn the_rnn_step_reads_like_a_layer() {
    // The comfort check for layers to come: a step is a plain function of its placeholders.
    fn step(s: &[Expr]) -> tape::Result<Vec<Expr>> {
        let [x_t, h, w, u, b] = s else {
            unreachable!("one sequence, one state, three weights")
        };
        let h = rnn(x_t, h, w, u, b);
        Ok(vec![h.clone(), h.relu()])
    }
    let case = Case::new(
        Dims {
            batch: 2,
            time: 3,
            dx: 2,
            dh: 2,
        },
        5,
    );
    let weights = case.weights();
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&case.x),
            states: std::slice::from_ref(&case.h0),
            non_sequences: &weights,
            ..Scan::default()
        },
        step,
    )
    .unwrap();
    let mut f = Function::compile(
        &case.inputs(false),
        &[out.states[0].relu(), out.outputs[0].clone()],
    )
    .unwrap();
    let r = f.call(&case.args(false)).unwrap();
    assert_eq!(r[0].data(), r[1].data());
}

/// A step mixing many kinds of ops (softmax, concat, slices, reductions with kept axes,
/// maximum, clip, log-sum-exp): any graph works as a step.
fn busy_step(x_t: &Expr, h: &Expr, w: &Expr) -> Expr {
    let d = 3;
    let a = (h.matmul(w) + x_t).softmax();
    let c = Expr::concat(&[a, h.maximum(x_t).clip(-0.8, 0.8)], 1);
    let s = c.sum_axis(1, true);
    let l = c.logsumexp().unsqueeze(1);
    c.slice(1, 0, d) * 0.5 + c.slice(1, d, d) * 0.5 + (s - l) * 0.01
}

#[test]
fn a_step_of_many_ops_equals_the_unrolled_graph_in_values_and_gradients() {
    let (batch, time, d) = (2, 4, 3);
    let x = Expr::input_with_dims("x", &[Some(batch), Some(time), Some(d)]);
    let h0 = Expr::input_with_dims("h0", &[Some(batch), Some(d)]);
    let w = Param::new("w", normal(&[d, d], 21));
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: &[w.expr()],
            reverse: true,
            ..Scan::default()
        },
        |s| Ok(vec![busy_step(&s[0], &s[1], &s[2])]),
    )
    .unwrap();
    let mut h = h0.clone();
    for t in (0..time).rev() {
        let x_t = x.slice(1, t, 1).reshape(&[batch as isize, d as isize]);
        h = busy_step(&x_t, &h, &w.expr());
    }
    let r = Expr::constant(normal(&[batch, d], 22));
    let losses = [(&out.finals[0] * &r).sum(), (&h * &r).sum()];
    let xs = normal(&[batch, time, d], 23);
    let hs = normal(&[batch, d], 24);
    let mut results = Vec::new();
    for loss in &losses {
        let mut outs = vec![loss.clone()];
        outs.extend(grad(loss, &[x.clone(), h0.clone(), w.expr()]).unwrap());
        let mut f = Function::compile(&[x.clone(), h0.clone()], &outs).unwrap();
        results.push(f.call(&[&xs, &hs]).unwrap());
    }
    for ((g, want), name) in results[0]
        .iter()
        .zip(&results[1])
        .zip(["loss", "dx", "dh0", "dw"])
    {
        assert_close_tensor(g, want, 1e-4, 1e-5, name);
    }
    let inputs = [(x.clone(), xs), (h0.clone(), hs)];
    let report =
        check::gradient(&losses[0], &inputs, &[x, h0, w.expr()], &Options::default()).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn a_scan_inside_a_step_runs_and_differentiates() {
    // Outer loop over t, inner loop over s of x[:, t, s, :]: the inner scan starts from the
    // outer state and its final state is the outer step's new state.
    let (batch, time, inner, d) = (2, 3, 2, 2);
    let x = Expr::input_with_dims("x", &[Some(batch), Some(time), Some(inner), Some(d)]);
    let h0 = Expr::input_with_dims("h0", &[Some(batch), Some(d)]);
    let w = Param::new("w", normal(&[d, d], 31));
    let u = Param::new("u", normal(&[d, d], 32));
    let cell = |x: &Expr, g: &Expr, w: &Expr, u: &Expr| (x.matmul(w) + g.matmul(u)).tanh();
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: &[w.expr(), u.expr()],
            ..Scan::default()
        },
        |s| {
            let inner = scan(
                Scan {
                    sequences: std::slice::from_ref(&s[0]),
                    states: std::slice::from_ref(&s[1]),
                    non_sequences: &s[2..4],
                    ..Scan::default()
                },
                |q| Ok(vec![cell(&q[0], &q[1], &q[2], &q[3])]),
            )?;
            Ok(inner.finals)
        },
    )
    .unwrap();
    let dump = out.finals[0].debug_print();
    assert!(
        dump.contains("    │     │ "),
        "the inner body is indented twice:\n{dump}"
    );

    let mut h = h0.clone();
    for t in 0..time {
        for s in 0..inner {
            let x_ts = x
                .slice(1, t, 1)
                .slice(2, s, 1)
                .reshape(&[batch as isize, d as isize]);
            h = cell(&x_ts, &h, &w.expr(), &u.expr());
        }
    }
    let r = Expr::constant(normal(&[batch, d], 33));
    let losses = [(&out.finals[0] * &r).sum(), (&h * &r).sum()];
    let xs = normal(&[batch, time, inner, d], 34);
    let hs = normal(&[batch, d], 35);
    let mut results = Vec::new();
    for loss in &losses {
        let mut outs = vec![loss.clone()];
        outs.extend(grad(loss, &[x.clone(), w.expr(), u.expr()]).unwrap());
        let mut f = Function::compile(&[x.clone(), h0.clone()], &outs).unwrap();
        results.push(f.call(&[&xs, &hs]).unwrap());
    }
    for ((g, want), name) in results[0]
        .iter()
        .zip(&results[1])
        .zip(["loss", "dx", "dw", "du"])
    {
        assert_close_tensor(g, want, 1e-4, 1e-5, name);
    }
}

#[test]
fn a_truncated_backward_pass_cannot_be_differentiated_again() {
    let case = Case::new(
        Dims {
            batch: 1,
            time: 3,
            dx: 1,
            dh: 1,
        },
        2,
    );
    let out = case.scanned(false, false, Some(2));
    let loss = case.loss(&out.states[0], &out.finals[0]);
    let g = grad(&loss, &case.weights()).unwrap();
    let err = grad(&g[0].square().sum(), &case.weights()).unwrap_err();
    assert!(
        matches!(&err, Error::Grad { reason, .. } if reason.contains("bptt_limit")),
        "{err}"
    );
}

/// An LSTM step as a layer would write it: two states (h, c) and the output gate as an extra
/// per-step output.
fn lstm(s: &[Expr], dh: usize) -> Vec<Expr> {
    let [x_t, h, c, w, u, b] = s else {
        unreachable!("one sequence, two states, three weights")
    };
    let z = x_t.matmul(w) + h.matmul(u) + b;
    let gates = z.split(1, &[dh; 4]);
    let (i, f, g, o) = (
        gates[0].sigmoid(),
        (&gates[1] + 1.0).sigmoid(),
        gates[2].tanh(),
        gates[3].sigmoid(),
    );
    let c_new = &f * c + &i * &g;
    let h_new = &o * &c_new.tanh();
    vec![h_new, c_new, o]
}

#[test]
fn an_lstm_scan_with_two_states_and_an_output_equals_the_unrolled_graph() {
    let (batch, time, dx, dh) = (2, 4, 3, 2);
    let x = Expr::input_with_dims("x", &[Some(batch), Some(time), Some(dx)]);
    let m = Expr::input_with_dims("m", &[Some(batch), Some(time)]);
    let h0 = Expr::input_with_dims("h0", &[Some(batch), Some(dh)]);
    let c0 = Expr::input_with_dims("c0", &[Some(batch), Some(dh)]);
    let w = Param::new("w", normal(&[dx, 4 * dh], 41));
    let u = Param::new("u", normal(&[dh, 4 * dh], 42));
    let b = Param::new("b", normal(&[4 * dh], 43));
    let weights = [w.expr(), u.expr(), b.expr()];
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: &[h0.clone(), c0.clone()],
            non_sequences: &weights,
            mask: Some(&m),
            ..Scan::default()
        },
        |s| Ok(lstm(s, dh)),
    )
    .unwrap();

    let (mut h, mut c) = (h0.clone(), c0.clone());
    let mut stacked: [Vec<Expr>; 3] = Default::default();
    for t in 0..time {
        let x_t = x.slice(1, t, 1).reshape(&[batch as isize, dx as isize]);
        let m_t = m.slice(1, t, 1);
        let new = lstm(
            &[x_t, h.clone(), c.clone(), w.expr(), u.expr(), b.expr()],
            dh,
        );
        for (k, v) in new.iter().enumerate() {
            stacked[k].push((&m_t * v).unsqueeze(1));
        }
        h = &m_t * &new[0] + (1.0 - &m_t) * &h;
        c = &m_t * &new[1] + (1.0 - &m_t) * &c;
    }
    let [hs, cs, os] = stacked.map(|v| Expr::concat(&v, 1));
    // Σ_k ⟨part_k, R_k⟩ with fixed random R_k: every result reaches the loss.
    let loss = |parts: [&Expr; 5]| {
        let terms = parts.iter().zip(50u64..).map(|(p, seed)| {
            let dims: Vec<usize> = p.dims().iter().map(|d| d.unwrap()).collect();
            (*p * &Expr::constant(normal(&dims, seed))).sum()
        });
        terms.reduce(|a, b| a + b).unwrap()
    };
    let got = loss([
        &out.states[0],
        &out.states[1],
        &out.outputs[0],
        &out.finals[0],
        &out.finals[1],
    ]);
    let want = loss([&hs, &cs, &os, &h, &c]);
    let inputs = [x.clone(), m.clone(), h0.clone(), c0.clone()];
    let values = [
        normal(&[batch, time, dx], 44),
        Tensor::new(&[batch, time], vec![1., 1., 0., 1., 1., 0., 1., 0.]).unwrap(),
        normal(&[batch, dh], 45),
        normal(&[batch, dh], 46),
    ];
    let wrt = [
        x.clone(),
        h0.clone(),
        c0.clone(),
        w.expr(),
        u.expr(),
        b.expr(),
    ];
    let mut results = Vec::new();
    for l in [&got, &want] {
        let mut outs = vec![l.clone()];
        outs.extend(grad(l, &wrt).unwrap());
        let mut f = Function::compile(&inputs, &outs).unwrap();
        results.push(f.call(&values.iter().collect::<Vec<_>>()).unwrap());
    }
    let names = ["loss", "dx", "dh0", "dc0", "dw", "du", "db"];
    for ((g, w), name) in results[0].iter().zip(&results[1]).zip(names) {
        assert_close_tensor(g, w, 1e-4, 1e-5, name);
    }
    let pairs: Vec<(Expr, Tensor)> = inputs.into_iter().zip(values).collect();
    let report = check::gradient(&got, &pairs, &wrt, &Options::default()).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn a_scan_without_states_maps_over_time_and_empty_time_keeps_the_initial_state() {
    // No state: a per-step map, here x_t · 2 stacked back.
    let x = Expr::input("x", 3);
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            ..Scan::default()
        },
        |s| Ok(vec![&s[0] * 2.0]),
    )
    .unwrap();
    let mut f = Function::compile(std::slice::from_ref(&x), &[out.outputs[0].clone()]).unwrap();
    let xs = Tensor::new(&[1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
    assert_eq!(f.call(&[&xs]).unwrap()[0].data(), &[2., 4., 6., 8.]);

    // Zero steps: the final state is the initial one, the stacked states are empty.
    let h0 = Expr::input("h0", 2);
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            ..Scan::default()
        },
        |s| Ok(vec![&s[1] + &s[0]]),
    )
    .unwrap();
    let mut f =
        Function::compile(&[x, h0], &[out.finals[0].clone(), out.states[0].clone()]).unwrap();
    let h0s = Tensor::new(&[1, 2], vec![5., 6.]).unwrap();
    let r = f.call(&[&Tensor::zeros(&[1, 0, 2]), &h0s]).unwrap();
    assert_eq!(r[0].data(), h0s.data());
    assert_eq!(r[1].shape(), &[1, 0, 2]);
}

/// The lines of the step body printed under the first top-level line of `dump` that contains
/// `header` (one nesting level: deeper bodies are left out).
fn body_under(dump: &str, header: &str) -> Vec<String> {
    let mut lines = dump
        .lines()
        .skip_while(|l| !(l.starts_with('%') && l.contains(header)));
    lines.next();
    lines
        .take_while(|l| l.starts_with("    │ "))
        .map(|l| &l["    │ ".len()..])
        .filter(|l| !l.starts_with("    │ "))
        .map(str::to_string)
        .collect()
}

/// How many lines of `lines` apply one of `ops` (`%3 = matmul_nt(%1, %2) : …`).
fn count_ops(lines: &[String], ops: &[&str]) -> usize {
    lines
        .iter()
        .filter(|l| {
            let op = l.split(" = ").nth(1).unwrap_or("");
            ops.iter()
                .any(|o| op.starts_with(&format!("{o}(")) || op.starts_with(&format!("{o}_")))
        })
        .count()
}

/// A masked LSTM scan (the test's `lstm` step) with its loss, inputs and values.
fn small_lstm() -> (Expr, Vec<Expr>, Vec<Tensor>, [Param; 3]) {
    let (batch, time, dx, dh) = (2, 3, 3, 2);
    let x = Expr::input_with_dims("x", &[Some(batch), Some(time), Some(dx)]);
    let m = Expr::input_with_dims("m", &[Some(batch), Some(time)]);
    let h0 = Expr::input_with_dims("h0", &[Some(batch), Some(dh)]);
    let c0 = Expr::input_with_dims("c0", &[Some(batch), Some(dh)]);
    let w = Param::new("w", normal(&[dx, 4 * dh], 61));
    let u = Param::new("u", normal(&[dh, 4 * dh], 62));
    let b = Param::new("b", normal(&[4 * dh], 63));
    let weights = [w.expr(), u.expr(), b.expr()];
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: &[h0.clone(), c0.clone()],
            non_sequences: &weights,
            mask: Some(&m),
            ..Scan::default()
        },
        |s| Ok(lstm(s, dh)),
    )
    .unwrap();
    let r = Expr::constant(normal(&[batch, time, dh], 64));
    let loss = (&out.states[0] * &r).sum() + out.finals[1].sum() + out.outputs[0].sum();
    let values = vec![
        normal(&[batch, time, dx], 65),
        Tensor::new(&[batch, time], vec![1., 1., 0., 1., 0., 0.]).unwrap(),
        normal(&[batch, dh], 66),
        normal(&[batch, dh], 67),
    ];
    (loss, vec![x, m, h0, c0], values, [w, u, b])
}

#[test]
fn the_reverse_step_reads_the_forward_values_instead_of_computing_them_again() {
    let (loss, inputs, values, _) = small_lstm();
    let wrt = [inputs[0].clone(), inputs[2].clone(), inputs[3].clone()];
    let mut outs = vec![loss.clone()];
    outs.extend(grad(&loss, &wrt).unwrap());
    let f = Function::compile(&inputs, &outs).unwrap();
    let dump = f.debug_graph();
    let reverse = body_under(&dump, "reverse");
    assert!(!reverse.is_empty(), "{dump}");
    // The backward step of z = x_t·w + h·u + b needs two products, dz·uᵀ (into dh) and dz·wᵀ
    // (into dx_t); computing the forward step again would add x_t·w and h·u, and its three
    // sigmoids and two tanh.
    assert_eq!(count_ops(&reverse, &["matmul", "gemm_bias"]), 2, "{dump}");
    assert_eq!(count_ops(&reverse, &["sigmoid", "tanh"]), 0, "{dump}");
    // The forward scan runs once: the scan that keeps the values is the one the loss reads.
    let forward_scans = dump
        .lines()
        .filter(|l| l.starts_with('%') && l.contains("= scan(") && !l.contains("reverse"))
        .count();
    assert_eq!(forward_scans, 1, "{dump}");
    let pairs: Vec<(Expr, Tensor)> = inputs.into_iter().zip(values).collect();
    let report = check::gradient(&loss, &pairs, &wrt, &Options::default()).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn weight_gradients_are_one_product_after_the_reverse_scan() {
    let (loss, inputs, values, [w, u, b]) = small_lstm();
    let wrt = [w.expr(), u.expr(), b.expr()];
    let mut outs = vec![loss.clone()];
    outs.extend(grad(&loss, &wrt).unwrap());
    let f = Function::compile(&inputs, &outs).unwrap();
    let dump = f.debug_graph();
    let reverse = body_under(&dump, "reverse");
    assert!(!reverse.is_empty(), "{dump}");
    // Per step, only dz·uᵀ (into dh) remains: x_tᵀ·dz (into dw) and hᵀ·dz (into du) are each
    // summed over the steps by one product after the scan, over (batch · time) rows.
    assert_eq!(count_ops(&reverse, &["matmul", "gemm_bias"]), 1, "{dump}");
    let top: Vec<String> = dump
        .lines()
        .filter(|l| l.starts_with('%'))
        .map(str::to_string)
        .collect();
    let after = top.iter().skip_while(|l| !l.contains("reverse")).cloned();
    let flat_products = after
        .filter(|l| l.contains("= matmul(Aᵀ)("))
        .filter(|l| l.contains(": [3, 8]") || l.contains(": [2, 8]"))
        .count();
    assert_eq!(flat_products, 2, "{dump}");
    // Masked and unmasked steps: against finite differences of the loss.
    let pairs: Vec<(Expr, Tensor)> = inputs.into_iter().zip(values).collect();
    let report = check::gradient(&loss, &pairs, &wrt, &Options::default()).unwrap();
    assert!(report.ok(), "{report}");
}
