//! The recurrent layers against hand-unrolled f64 references (random shapes, both directions,
//! masks, initial states from inputs), their gradients against finite differences, dense layers
//! on sequences, and stateful prediction.

use nets::init::{BiasInit, WeightInit};
use nets::recurrent::{Cell, Recurrent, RecurrentOptions, Regressor, SequenceOptions};
use nets::{Layer, LayerSpec, ModelOptions};
use proptest::prelude::*;
use std::collections::HashMap;
use tape::{Expr, Function, Rng, Tensor};

fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    Tensor::new(shape, v).unwrap()
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `v · W` for `W` of `cols` columns, row-major.
fn vecmat(v: &[f64], w: &[f64], cols: usize) -> Vec<f64> {
    let mut y = vec![0.0; cols];
    for (i, vi) in v.iter().enumerate() {
        for j in 0..cols {
            y[j] += vi * w[i * cols + j];
        }
    }
    y
}

/// One sequence's problem for the reference.
struct Case<'a> {
    cell: Cell,
    p: &'a HashMap<String, Vec<f64>>,
    n: usize,
    nin: usize,
    backward: bool,
}

/// The reference: outputs `out` per step `(time, n)` (zero where masked) and the final state,
/// stepping one sequence `x` `(time, nin)` with plain loops.
fn reference(
    c: &Case,
    x: &[f64],
    mask: &[f64],
    h0: &[f64],
    c0: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, nin) = (c.n, c.nin);
    let time = x.len() / nin;
    let p = |k: &str| &c.p[k];
    let mut h = h0.to_vec();
    let mut cell = c0.to_vec();
    let mut out = vec![0.0; time * n];
    let order: Vec<usize> = if c.backward {
        (0..time).rev().collect()
    } else {
        (0..time).collect()
    };
    for t in order {
        if mask[t] == 0.0 {
            continue;
        }
        let xt = &x[t * nin..(t + 1) * nin];
        match c.cell {
            Cell::Rnn => {
                let a = vecmat(xt, p("xh"), n);
                let r = vecmat(&h, p("hh"), n);
                h = (0..n).map(|j| (a[j] + r[j] + p("b")[j]).tanh()).collect();
            }
            Cell::Lstm => {
                let a = vecmat(xt, p("xh"), 4 * n);
                let r = vecmat(&h, p("hh"), 4 * n);
                let z: Vec<f64> = (0..4 * n).map(|j| a[j] + r[j] + p("b")[j]).collect();
                let mut new_c = vec![0.0; n];
                let mut new_h = vec![0.0; n];
                for j in 0..n {
                    let i = sigmoid(z[j] + cell[j] * p("ci")[j]);
                    let f = sigmoid(z[n + j] + cell[j] * p("cf")[j]);
                    new_c[j] = f * cell[j] + i * z[2 * n + j].tanh();
                    let o = sigmoid(z[3 * n + j] + new_c[j] * p("co")[j]);
                    new_h[j] = o * new_c[j].tanh();
                }
                h = new_h;
                cell = new_c;
            }
            Cell::Gru => {
                let hr = vecmat(&h, p("hr"), n);
                let hz = vecmat(&h, p("hz"), n);
                let xr = vecmat(xt, p("xr"), n);
                let xz = vecmat(xt, p("xz"), n);
                let xh = vecmat(xt, p("xh"), n);
                let r: Vec<f64> = (0..n)
                    .map(|j| sigmoid(xr[j] + p("br")[j] + hr[j]))
                    .collect();
                let z: Vec<f64> = (0..n)
                    .map(|j| sigmoid(xz[j] + p("bz")[j] + hz[j]))
                    .collect();
                let rh: Vec<f64> = (0..n).map(|j| r[j] * h[j]).collect();
                let hh = vecmat(&rh, p("hh"), n);
                h = (0..n)
                    .map(|j| {
                        let hid = (xh[j] + p("bh")[j] + hh[j]).tanh();
                        (1.0 - z[j]) * h[j] + z[j] * hid
                    })
                    .collect();
            }
        }
        out[t * n..(t + 1) * n].copy_from_slice(&h);
    }
    (out, h, cell)
}

fn layer(cell: Cell, nin: usize, n: usize, options: RecurrentOptions, seed: u64) -> Recurrent {
    let mut inputs = vec![("x:out".to_string(), nin)];
    if options.h_0.is_some() {
        inputs.push(("h0:out".to_string(), n));
    }
    if options.c_0.is_some() {
        inputs.push(("c0:out".to_string(), n));
    }
    Recurrent::new(
        "r",
        n,
        cell,
        &inputs,
        "tanh",
        &WeightInit {
            std: Some(0.6),
            ..Default::default()
        },
        &BiasInit {
            mean: 0.0,
            std: 0.5,
        },
        options,
        seed,
    )
    .unwrap()
}

fn param_map(l: &Recurrent) -> HashMap<String, Vec<f64>> {
    l.params()
        .iter()
        .map(|p| {
            let short = p.name().trim_start_matches("r.").to_string();
            (
                short,
                p.read().data().iter().map(|&v| f64::from(v)).collect(),
            )
        })
        .collect()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data().iter().map(|&v| f64::from(v)).collect()
}

/// Runs the layer on `x` (with a mask and initial states when given) and compares `out` and
/// `final` (and an LSTM's `final_cell`) with the reference, sequence by sequence.
#[allow(clippy::too_many_arguments)]
fn compare(
    cell: Cell,
    (batch, time, nin, n): (usize, usize, usize, usize),
    backward: bool,
    mask: Option<Tensor>,
    with_h0: bool,
    seed: u64,
) {
    let options = RecurrentOptions {
        backward,
        h_0: with_h0.then(|| "h0".to_string()),
        c_0: (with_h0 && cell == Cell::Lstm).then(|| "c0".to_string()),
        ..Default::default()
    };
    let l = layer(cell, nin, n, options, seed);
    let x = Expr::input_with_dims("x", &[None, None, Some(nin)]);
    let m = Expr::input_with_dims("mask", &[None, None]);
    let h0 = Expr::input_with_dims("h0", &[None, Some(n)]);
    let c0 = Expr::input_with_dims("c0", &[None, Some(n)]);
    let mut ins = vec![x.clone()];
    if with_h0 {
        ins.push(h0.clone());
        if cell == Cell::Lstm {
            ins.push(c0.clone());
        }
    }
    let outs = l.connect_masked(&ins, mask.as_ref().map(|_| &m)).unwrap();
    let get = |k: &str| outs.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let mut wanted = vec![get("out"), get("final")];
    if cell == Cell::Lstm {
        wanted.push(get("final_cell"));
    }
    let mut args = ins.clone();
    if mask.is_some() {
        args.push(m.clone());
    }
    let mut f = Function::compile(&args, &wanted).unwrap();
    let xv = uniform(&[batch, time, nin], seed + 1);
    let h0v = uniform(&[batch, n], seed + 2);
    let c0v = uniform(&[batch, n], seed + 3);
    let mut vals = vec![&xv];
    if with_h0 {
        vals.push(&h0v);
        if cell == Cell::Lstm {
            vals.push(&c0v);
        }
    }
    if let Some(mv) = &mask {
        vals.push(mv);
    }
    let got = f.call(&vals).unwrap();
    let p = param_map(&l);
    let case = Case {
        cell,
        p: &p,
        n,
        nin,
        backward,
    };
    let ones = vec![1.0; time];
    for b in 0..batch {
        let xs = &f64s(&xv)[b * time * nin..(b + 1) * time * nin];
        let ms = mask
            .as_ref()
            .map_or(ones.clone(), |m| f64s(m)[b * time..(b + 1) * time].to_vec());
        let zero = vec![0.0; n];
        let (h0s, c0s) = if with_h0 {
            (
                f64s(&h0v)[b * n..(b + 1) * n].to_vec(),
                if cell == Cell::Lstm {
                    f64s(&c0v)[b * n..(b + 1) * n].to_vec()
                } else {
                    zero.clone()
                },
            )
        } else {
            (zero.clone(), zero.clone())
        };
        let (out, fin, fin_c) = reference(&case, xs, &ms, &h0s, &c0s);
        let close = |a: &[f32], e: &[f64], what: &str| {
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                assert!(
                    (f64::from(*a) - e).abs() < 1e-4,
                    "{cell:?} {what} seq {b} elem {i}: got {a}, expected {e}"
                );
            }
        };
        close(
            &got[0].data()[b * time * n..(b + 1) * time * n],
            &out,
            "out",
        );
        close(&got[1].data()[b * n..(b + 1) * n], &fin, "final");
        if cell == Cell::Lstm {
            close(&got[2].data()[b * n..(b + 1) * n], &fin_c, "final_cell");
        }
    }
}

fn cell_of(i: u8) -> Cell {
    [Cell::Rnn, Cell::Lstm, Cell::Gru][usize::from(i % 3)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn layers_equal_unrolled_references(
        c in 0u8..3,
        batch in 1usize..4,
        time in 1usize..6,
        nin in 1usize..4,
        n in 1usize..4,
        backward in any::<bool>(),
        masked in any::<bool>(),
        with_h0 in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let mask = masked.then(|| {
            let mut rng = Rng::new(seed + 7);
            let v = (0..batch * time).map(|_| if rng.uniform() < 0.3 { 0.0 } else { 1.0 }).collect();
            Tensor::new(&[batch, time], v).unwrap()
        });
        compare(cell_of(c), (batch, time, nin, n), backward, mask, with_h0, seed);
    }
}

/// Padding at the end: the state is carried through it (`final` is the state at the last real
/// step) and the outputs there are zero.
#[test]
fn masked_padding_carries_state_and_zeroes_outputs() {
    for c in 0..3 {
        let mask = Tensor::new(&[2, 4], vec![1., 1., 0., 0., 1., 1., 1., 0.]).unwrap();
        compare(cell_of(c), (2, 4, 2, 3), false, Some(mask), false, 5);
    }
}

/// The gradients of every parameter and of the input, through a masked scan in both
/// directions, match central differences.
#[test]
fn gradients_match_finite_differences() {
    for c in 0..3 {
        for backward in [false, true] {
            let cell = cell_of(c);
            let options = RecurrentOptions {
                backward,
                ..Default::default()
            };
            let l = layer(cell, 2, 3, options, 11 + c as u64);
            let x = Expr::input_with_dims("x", &[None, None, Some(2)]);
            let m = Expr::input_with_dims("mask", &[None, None]);
            let outs = l
                .connect_masked(std::slice::from_ref(&x), Some(&m))
                .unwrap();
            let out = &outs[0].1;
            let fin = &outs.iter().find(|(n, _)| n == "final").unwrap().1;
            let probe = Expr::constant(uniform(&[2, 4, 3], 3));
            let cost = (out * &probe).sum() + fin.square().sum();
            let mask = Tensor::new(&[2, 4], vec![1., 1., 1., 0., 1., 0., 1., 1.]).unwrap();
            let mut wrt: Vec<Expr> = l.params().iter().map(|p| p.expr()).collect();
            wrt.push(x.clone());
            let report = tape::check::gradient(
                &cost,
                &[(x.clone(), uniform(&[2, 4, 2], 9)), (m.clone(), mask)],
                &wrt,
                &Default::default(),
            )
            .unwrap();
            assert!(report.ok(), "{cell:?} backward={backward}: {report}");
            assert!(report.checked > 20);
        }
    }
}

/// With `bptt_limit = 1` the gradient reaches the recurrent matrix only through the last step,
/// so it differs from the full gradient, which has more terms.
#[test]
fn bptt_limit_truncates_the_gradient() {
    let grads = |limit: Option<usize>| {
        let options = RecurrentOptions {
            bptt_limit: limit,
            ..Default::default()
        };
        let l = layer(Cell::Rnn, 2, 3, options, 4);
        let x = Expr::input_with_dims("x", &[None, None, Some(2)]);
        let outs = l.connect(std::slice::from_ref(&x)).unwrap();
        let fin = &outs.iter().find(|(n, _)| n == "final").unwrap().1;
        let hh = l.params()[1].expr();
        let g = tape::grad(&fin.sum(), std::slice::from_ref(&hh)).unwrap();
        let mut f = Function::compile(&[x], &g).unwrap();
        f.call(&[&uniform(&[2, 5, 2], 1)]).unwrap()[0].clone()
    };
    let full = grads(None);
    let cut = grads(Some(1));
    let diff: f32 = full
        .data()
        .iter()
        .zip(cut.data())
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-3, "truncation changed nothing: {diff}");
}

/// A dense layer on `(batch, time, dim)` acts on the last axis: `x_t·W + b` at every step.
#[test]
fn dense_layers_act_on_each_step() {
    let net = Regressor::new(vec![
        LayerSpec::input(3),
        LayerSpec::dense(2).bias(0.0, 1.0).name("out"),
    ])
    .unwrap();
    let x = uniform(&[2, 3, 3], 8);
    let y = net.predict(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3, 2]);
    let w = f64s(&net.find("out", "w").unwrap().value());
    let b = f64s(&net.find("out", "b").unwrap().value());
    for row in 0..6 {
        let xr = &f64s(&x)[row * 3..row * 3 + 3];
        let e = vecmat(xr, &w, 2);
        for j in 0..2 {
            let got = f64::from(y.data()[row * 2 + j]);
            assert!((got - e[j] - b[j]).abs() < 1e-5, "row {row} unit {j}");
        }
    }
}

/// A tied layer on sequences: `h_t·Wᵀ + b` at every step, `W` its partner's matrix.
#[test]
fn tied_layers_act_on_each_step() {
    let net = nets::recurrent::Autoencoder::new(vec![
        LayerSpec::input(3),
        LayerSpec::dense(2).activation("linear").name("code"),
        LayerSpec::tied().bias(0.0, 1.0).name("out"),
    ])
    .unwrap();
    let x = uniform(&[2, 2, 3], 12);
    let y = net.predict(&x).unwrap();
    assert_eq!(y.shape(), &[2, 2, 3]);
    let w = f64s(&net.find("code", "w").unwrap().value());
    let b1 = f64s(&net.find("code", "b").unwrap().value());
    let b2 = f64s(&net.find("out", "b").unwrap().value());
    for row in 0..4 {
        let code: Vec<f64> = vecmat(&f64s(&x)[row * 3..row * 3 + 3], &w, 2)
            .iter()
            .zip(&b1)
            .map(|(a, b)| a + b)
            .collect();
        for i in 0..3 {
            let e = code[0] * w[i * 2] + code[1] * w[i * 2 + 1] + b2[i];
            let got = f64::from(y.data()[row * 3 + i]);
            assert!((got - e).abs() < 1e-5, "row {row} unit {i}: {got} vs {e}");
        }
    }
}

fn stateful_model(batch: usize) -> Regressor {
    Regressor::build(
        vec![
            LayerSpec::input(2),
            LayerSpec::lstm(3).stateful(batch),
            LayerSpec::dense(1),
        ],
        ModelOptions::default(),
        SequenceOptions::default(),
    )
    .unwrap()
}

fn time_slice(x: &Tensor, from: usize, len: usize) -> Tensor {
    let (b, t, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let mut v = Vec::new();
    for i in 0..b {
        v.extend_from_slice(&x.data()[(i * t + from) * d..(i * t + from + len) * d]);
    }
    Tensor::new(&[b, len, d], v).unwrap()
}

/// Two half-sequences through a stateful model give the outputs of the whole sequence; a reset
/// brings back the zero state; another batch size is an error naming the layer.
#[test]
fn stateful_halves_equal_the_whole_sequence() {
    let net = stateful_model(2);
    let x = uniform(&[2, 6, 2], 21);
    let whole = net.predict(&x).unwrap();
    net.reset_state().unwrap();
    let first = net.predict(&time_slice(&x, 0, 3)).unwrap();
    let second = net.predict(&time_slice(&x, 3, 3)).unwrap();
    assert_eq!(time_slice(&whole, 0, 3).data(), first.data());
    let expect = time_slice(&whole, 3, 3);
    for (a, b) in expect.data().iter().zip(second.data()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // Without a reset the state carries on, so the first half now gives other outputs.
    let again = net.predict(&time_slice(&x, 0, 3)).unwrap();
    assert_ne!(again.data(), first.data());
    net.reset_state().unwrap();
    let fresh = net.predict(&time_slice(&x, 0, 3)).unwrap();
    assert_eq!(fresh.data(), first.data());
    let e = net
        .predict(&uniform(&[3, 3, 2], 1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("stateful layer `hid1`") && e.contains("batches of 2"),
        "{e}"
    );
}

/// `h_0` from a named input layer: with zero initial states the model equals the same model
/// without `h_0`, and other initial states change its outputs.
#[test]
fn initial_state_from_a_named_input() {
    let with = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::input(3).name("h0"),
        LayerSpec::rnn(3).h_0("h0").name("r"),
        LayerSpec::dense(1).name("out"),
    ])
    .unwrap();
    let without = Regressor::new(vec![
        LayerSpec::input(2),
        LayerSpec::rnn(3).name("r"),
        LayerSpec::dense(1).name("out"),
    ])
    .unwrap();
    let x = uniform(&[2, 4, 2], 3);
    let zeros = Tensor::zeros(&[2, 3]);
    let a = with.predict_with(&[&x, &zeros]).unwrap();
    let b = without.predict(&x).unwrap();
    assert_eq!(a.data(), b.data());
    let c = with.predict_with(&[&x, &uniform(&[2, 3], 4)]).unwrap();
    assert_ne!(a.data(), c.data());
    let e = with.predict(&x).unwrap_err().to_string();
    assert!(e.contains("[x, h0]"), "{e}");
}
