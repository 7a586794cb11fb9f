//! `scan`: a symbolic loop over the time axis of `(batch, time, …)` sequences, like Theano's
//! `scan`. The step is written once, as an ordinary expression graph over placeholders, and the
//! scan node runs it once per time step inside the compiled plan. Its gradient is another scan
//! running backwards over time (backpropagation through time), so it can be differentiated again.
//!
//! ```
//! use tape::scan::{scan, Scan};
//! use tape::{Expr, Function, Param, Tensor};
//! // A plain RNN: h_t = tanh(x_t W + h_{t-1} U + b), over sequences of 3-vectors.
//! let x = Expr::input("x", 3); // (batch, time, 3)
//! let h0 = Expr::input("h0", 2); // (batch, 2)
//! let w = Param::new("w", Tensor::full(&[3, 2], 0.1));
//! let u = Param::new("u", Tensor::full(&[2, 2], -0.2));
//! let b = Param::new("b", Tensor::vector(&[0.0, 0.5]));
//! let out = scan(
//!     Scan {
//!         sequences: &[x.clone()],
//!         states: &[h0.clone()],
//!         non_sequences: &[w.expr(), u.expr(), b.expr()],
//!         ..Scan::default()
//!     },
//!     |step| {
//!         let [x_t, h, w, u, b] = step else { unreachable!("1 + 1 + 3 placeholders") };
//!         Ok(vec![(x_t.matmul(w) + h.matmul(u) + b).tanh()])
//!     },
//! )?;
//! let hs = &out.states[0]; // (batch, time, 2): the state after every step
//! let last = &out.finals[0]; // (batch, 2)
//! let mut f = Function::compile(&[x, h0], &[hs.clone(), last.clone()])?;
//! let xs = Tensor::ones(&[1, 4, 3]);
//! let got = f.call(&[&xs, &Tensor::zeros(&[1, 2])])?;
//! assert_eq!(got[0].shape(), &[1, 4, 2]);
//! let h1 = (0.3f32).tanh(); // the first step by hand: tanh(3 · 0.1 + 0)
//! assert!((got[0].data()[0] - h1).abs() < 1e-6);
//! assert_eq!(&got[0].data()[6..], got[1].data()); // the last step is the final state
//! # Ok::<(), tape::Error>(())
//! ```
//!
//! A mask `(batch, time)` marks padding with 0: there the state is carried through unchanged
//! and the step's outputs (stacked states included) are zero, so variable-length sequences can
//! share a batch. Random ops (dropout, noise) may be used in a step, but such a scan has no
//! gradient (its backward pass would draw new numbers), and the step's streams belong to the
//! plan: they restart with each new plan and are not among [`crate::Function::rng_states`].

use crate::dims::Dims;
use crate::error::{Error, Loc, Result};
use crate::expr::Expr;
use crate::graph::{key, topo};
use crate::op::{Op, Type};
use crate::scan_body::{without_time, ScanBody};
use std::collections::HashSet;
use std::panic::Location;
use std::sync::Arc;

/// What to loop over. Sequences are `(batch, time, …)`; each step sees their slice at one time
/// index, `(batch, …)`. States have the batch as first axis and keep their shape from step to
/// step. Non-sequences (weights) are the same at every step.
#[derive(Clone, Copy, Default)]
pub struct Scan<'a> {
    /// The sequences, at least one (they give the number of steps).
    pub sequences: &'a [Expr],
    /// The initial value of each carried state.
    pub states: &'a [Expr],
    /// Values every step reads unchanged. A parameter read directly inside the step works too.
    pub non_sequences: &'a [Expr],
    /// Run from the last time index to the first. Results are still indexed by time.
    pub reverse: bool,
    /// `(batch, time)`, 0 at padding: the state is carried through and the outputs are zero there.
    pub mask: Option<&'a Expr>,
    /// Backpropagate through the last `k` steps only (truncated BPTT): earlier steps, and the
    /// initial states when steps were left out, get no gradient. `None`: all steps.
    pub bptt_limit: Option<usize>,
}

/// The results of a [`scan`], all indexed by time as the sequences are.
#[derive(Clone, Debug)]
pub struct ScanOutput {
    /// Per state, its value after every step, `(batch, time, …)` (zero at masked steps).
    pub states: Vec<Expr>,
    /// Per extra output of the step, stacked: `(batch, time, …)` (zero at masked steps).
    pub outputs: Vec<Expr>,
    /// Per state, its value after the last step (carried through trailing padding).
    pub finals: Vec<Expr>,
}

/// Runs `step` over the time axis. `step` receives placeholders for, in order, each sequence's
/// slice at one time index, each state's value entering the step, and each non-sequence; it
/// returns the new value of every state, then any extra per-step outputs (each with the batch
/// as first axis). It is called once, to build the step's graph.
///
/// Errors name `scan`: no sequence, a sequence of rank < 2, sequences that disagree on batch or
/// time, a state whose shape the step changes (naming the state and both shapes), a step that
/// returns fewer values than there are states, or a step that reads an outer input directly
/// (pass it as a non-sequence). The step's own errors are returned as they are.
#[track_caller]
pub fn scan(spec: Scan<'_>, step: impl FnOnce(&[Expr]) -> Result<Vec<Expr>>) -> Result<ScanOutput> {
    let at = Location::caller();
    check_spec(&spec, at)?;
    let h = spec.states.len();
    let seq_ph = placeholders("scan.seq", spec.sequences, at, true)?;
    let state_ph = placeholders("scan.state", spec.states, at, false)?;
    let nonseq_ph = placeholders("scan.non_seq", spec.non_sequences, at, false)?;
    let args: Vec<Expr> = [&seq_ph[..], &state_ph, &nonseq_ph].concat();
    let outs = step(&args)?;
    check_step(&state_ph, &outs, at)?;

    let mut seqs = spec.sequences.to_vec();
    let mut seq_ph = seq_ph;
    let (new_states, stacked): (Vec<Expr>, Vec<Expr>) = match spec.mask {
        None => (outs[..h].to_vec(), outs.to_vec()),
        Some(mask) => {
            let m = Expr::placeholder("scan.mask", without_time(mask.ty()?), at);
            seqs.push(mask.clone());
            seq_ph.push(m.clone());
            let zero = Expr::scalar(0.0);
            let carried = outs[..h]
                .iter()
                .zip(&state_ph)
                .map(|(new, old)| keep_where(&m, new).select(new, old))
                .collect();
            let zeroed = outs
                .iter()
                .map(|y| keep_where(&m, y).select(y, &zero))
                .collect();
            (carried, zeroed)
        }
    };
    let raw = RawScan {
        seqs,
        seq_ph,
        inits: spec.states.to_vec(),
        state_ph,
        nonseqs: spec.non_sequences.to_vec(),
        nonseq_ph,
        roots: [new_states, stacked].concat(),
        recorded: vec![true; h],
        reverse: spec.reverse,
        limit: None,
        cut: vec![false; h],
        bptt_limit: spec.bptt_limit,
    };
    let mut parts = build(raw, at)?;
    // Parts: final states, states entering each step (for the gradient), then the stacked
    // outputs, whose first `h` are the states after each step.
    let outputs = parts.split_off(3 * h);
    let states = parts.split_off(2 * h);
    parts.truncate(h);
    Ok(ScanOutput {
        states,
        outputs,
        finals: parts,
    })
}

/// The mask's slice `(batch,)` with size-1 axes appended to broadcast against `like`.
fn keep_where(mask: &Expr, like: &Expr) -> Expr {
    (1..like.rank()).fold(mask.clone(), |m, axis| m.unsqueeze(axis))
}

fn shape_error(expected: String, shapes: Vec<Dims>, at: Loc) -> Error {
    Error::Shape {
        op: "scan".into(),
        shapes,
        expected,
        at,
    }
}

fn check_spec(spec: &Scan<'_>, at: Loc) -> Result<()> {
    let all = spec
        .sequences
        .iter()
        .chain(spec.states)
        .chain(spec.non_sequences)
        .chain(spec.mask);
    for e in all {
        e.ty()?;
    }
    if spec.sequences.is_empty() {
        let expected = "at least one sequence (batch, time, …) to give the number of steps";
        return Err(shape_error(expected.into(), vec![], at));
    }
    for (i, x) in spec.sequences.iter().enumerate() {
        if x.rank() < 2 {
            let expected = format!("sequence {i} to be (batch, time, …)");
            return Err(shape_error(expected, vec![x.dims()], at));
        }
    }
    if let Some(m) = spec.mask {
        if m.rank() != 2 {
            let expected = "a mask of shape (batch, time)".to_string();
            return Err(shape_error(expected, vec![m.dims()], at));
        }
    }
    for (j, s) in spec.states.iter().enumerate() {
        if s.rank() == 0 {
            let expected = format!("state {j} to have the batch as its first axis");
            return Err(shape_error(expected, vec![s.dims()], at));
        }
    }
    if spec.bptt_limit == Some(0) {
        return Err(shape_error(
            "a bptt_limit of at least 1 step".into(),
            vec![],
            at,
        ));
    }
    Ok(())
}

/// The step must return every new state first, each shaped like the state it replaces.
fn check_step(state_ph: &[Expr], outs: &[Expr], at: Loc) -> Result<()> {
    if outs.len() < state_ph.len() {
        let expected = format!(
            "the step to return the {} new states first, but it returned {} values",
            state_ph.len(),
            outs.len()
        );
        return Err(shape_error(expected, vec![], at));
    }
    for o in outs {
        o.ty()?;
    }
    for (j, (old, new)) in state_ph.iter().zip(outs).enumerate() {
        let (a, b) = (old.dims(), new.dims());
        let fits = a.len() == b.len()
            && a.iter().zip(b.iter()).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            });
        if !fits {
            let expected = format!(
                "state {j} to keep its shape through a step (it goes in as the first shape and comes out as the second)"
            );
            return Err(shape_error(expected, vec![a, b], at));
        }
    }
    Ok(())
}

/// One placeholder per value, typed like a step sees it (a sequence loses its time axis).
fn placeholders(prefix: &str, values: &[Expr], at: Loc, per_step: bool) -> Result<Vec<Expr>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty: Type = if per_step {
                without_time(v.ty()?)
            } else {
                v.ty()?.clone()
            };
            Ok(Expr::placeholder(&format!("{prefix}{i}"), ty, at))
        })
        .collect()
}

/// A scan spelled out: operands with the placeholders that stand for them in the body, the
/// body's roots (new states, then per-step outputs) and the loop's settings. The public
/// [`scan`] and the gradient of a scan both build one.
pub(crate) struct RawScan {
    pub(crate) seqs: Vec<Expr>,
    pub(crate) seq_ph: Vec<Expr>,
    pub(crate) inits: Vec<Expr>,
    pub(crate) state_ph: Vec<Expr>,
    pub(crate) nonseqs: Vec<Expr>,
    pub(crate) nonseq_ph: Vec<Expr>,
    pub(crate) roots: Vec<Expr>,
    pub(crate) recorded: Vec<bool>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<usize>,
    pub(crate) cut: Vec<bool>,
    pub(crate) bptt_limit: Option<usize>,
}

/// Makes the scan node and one part node per result, in [`ScanBody::part`] order.
pub(crate) fn build(mut raw: RawScan, at: Loc) -> Result<Vec<Expr>> {
    let order = topo(&raw.roots)?;
    let mut known: HashSet<usize> = raw
        .seq_ph
        .iter()
        .chain(&raw.state_ph)
        .chain(&raw.nonseq_ph)
        .map(key)
        .collect();
    for e in &order {
        match e.op() {
            // A parameter read directly becomes a non-sequence of its own (its own expression
            // as placeholder), so that the gradient reaches it.
            Op::Param(_) if known.insert(key(e)) => {
                raw.nonseqs.push(e.clone());
                raw.nonseq_ph.push(e.clone());
            }
            Op::Input(name) if !known.contains(&key(e)) => {
                return Err(Error::Input {
                    input: name.clone(),
                    expected: "a scan's step to read outer values through its sequences, states \
                               or non-sequences"
                        .into(),
                    found: format!("the step reading it directly (built at {})", e.location()),
                });
            }
            _ => {}
        }
    }
    let body = Arc::new(ScanBody {
        random: order.iter().any(|e| e.op().is_random()),
        n_seqs: raw.seqs.len(),
        n_states: raw.inits.len(),
        n_nonseqs: raw.nonseqs.len(),
        inputs: [raw.seq_ph, raw.state_ph, raw.nonseq_ph].concat(),
        roots: raw.roots,
        order,
        recorded: raw.recorded,
        reverse: raw.reverse,
        limit: raw.limit,
        cut: raw.cut,
        bptt_limit: raw.bptt_limit,
        base: None,
    });
    let operands: Vec<Expr> = [raw.seqs, raw.inits, raw.nonseqs].concat();
    let packed = Expr::make(Op::Scan(body.clone()), operands.clone(), at);
    packed.ty()?;
    let mut with_operands = vec![packed];
    with_operands.extend(operands);
    Ok((0..body.n_parts())
        .map(|part| {
            let op = Op::ScanPart {
                body: body.clone(),
                part,
            };
            Expr::make(op, with_operands.clone(), at)
        })
        .collect())
}
