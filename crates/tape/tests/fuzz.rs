//! Fuzzing tensor programs: random small DAGs of ops (elementwise with broadcasting, matmul, dot,
//! reductions over axes, reshape, slice, concat, transpose, unsqueeze, softmax and friends, clip,
//! pick/one_hot/argmax with labels, broadcast_like/sum_like) over inputs of random shapes (rank
//! 0..3, dims 0..4, declared with known or unknown dims), often invalid on purpose.
//!
//! Every case runs under `catch_unwind` and must never panic. The test keeps its own model of
//! each op, an f64 interpreter over `Vec<f64>` and a shape, written from the ops' documented
//! rules (numpy's broadcasting, numpy's reshape with one `-1`, ...):
//! - where the model says the program is invalid for the shapes and labels given, building,
//!   compiling or running returns an `Err` (a typed one, with a non-empty message);
//! - where it is valid, all three succeed, each output has exactly the model's shape, and its
//!   values equal the model's within a bound on f32 round-off the interpreter carries along
//!   with every value (so a cancellation or a large intermediate does not need a loose global
//!   tolerance);
//! - fully known shapes are checked at build time too: `Expr::ty` is `Ok` with the model's dims
//!   exactly when the model says valid;
//! - a second call with one argument of another shape (or one argument too few) is refused
//!   with a typed error unless the model says those shapes are valid too;
//! - on small valid cases, the gradient of `sum(output · weights)` passes `tape::check`.
//!
//! Cases: proptest's budget below or `PROPTEST_CASES` for a long campaign
//! (`PROPTEST_CASES=100000 cargo test --release -p tape --test fuzz`).

use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use tape::{check, Error, Expr, Function, Param, Tensor};

/// Outcome counts, printed at the end with `FUZZ_STATS=1` (to see what a campaign exercised):
/// refused at build, at compile, at run; ran and matched; gradient checks passed.
static STATS: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];

fn count_outcome(k: usize) {
    STATS[k].fetch_add(1, Ordering::Relaxed);
}

/// Cases per property when `PROPTEST_CASES` is not set.
const CI_CASES: u32 = 3000;

fn config(ci: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(ci);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// f32 round-off allowed per op, relative (a few ulps, for library exp/tanh).
const EPS: f64 = 2e-6;
/// Absolute round-off floor per op (sigmoid and friends saturate to exactly 0 or 1).
const ABS: f64 = 1e-7;

// ---------------------------------------------------------------------------------------------
// The reference: values in f64 with an error bound per element.

/// A value of the model: its shape, its elements in f64 and a bound on how far an f32
/// computation of the same program may be from them.
#[derive(Clone, Debug)]
struct V {
    shape: Vec<usize>,
    x: Vec<f64>,
    e: Vec<f64>,
    labels: bool,
}

fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The multi-index of flat position `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        idx[a] = i % shape[a];
        i /= shape[a];
    }
    idx
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; r - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (a, b) = (pad(a), pad(b));
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Whether `from` broadcasts to exactly `to`.
fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == 1 || f == t)
}

/// The flat index in `from` (broadcast to `to`) of flat position `i` of `to`.
fn source_index(i: usize, to: &[usize], from: &[usize]) -> usize {
    let idx = unravel(i, to);
    let off = to.len() - from.len();
    let st = strides(from);
    (0..from.len())
        .map(|a| {
            if from[a] == 1 {
                0
            } else {
                idx[a + off] * st[a]
            }
        })
        .sum()
}

fn float(shape: Vec<usize>, x: Vec<f64>, e: Vec<f64>) -> V {
    // Non-finite values count as infinitely large.
    let big = x.iter().fold(0.0, |m: f64, t| {
        if t.is_finite() {
            m.max(t.abs())
        } else {
            f64::INFINITY
        }
    });
    BIG.with(|b| b.set(b.get().max(big)));
    V {
        shape,
        x,
        e,
        labels: false,
    }
}

thread_local! {
    /// The smallest distance to a kink (relu or abs at 0, a clip bound, a tie of max or
    /// maximum) seen while evaluating the model: finite differences across a kink measure a
    /// different slope, so gradients are only checked when every kink is far away.
    static KINK: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::INFINITY) };
}

thread_local! {
    /// The largest magnitude of any value the model computed: gradients are only checked where
    /// every intermediate is moderate (an infinite one, from a clip to [inf, inf] say, turns the
    /// chain rule's 0 · inf into NaN).
    static BIG: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// Records that a kink lies `d` away.
fn kink(d: f64) {
    KINK.with(|k| k.set(k.get().min(d.abs())));
}

fn round(y: f64) -> f64 {
    EPS * y.abs() + ABS
}

/// Applies `f(x) -> (y, derivative bound at x)` elementwise.
fn map(v: &V, f: impl Fn(f64) -> (f64, f64)) -> V {
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for (&xi, &ei) in v.x.iter().zip(&v.e) {
        let (y, d) = f(xi);
        x.push(y);
        e.push(d * ei + round(y));
    }
    float(v.shape.clone(), x, e)
}

/// Elementwise binary op with broadcasting: `f(a, b, ea, eb) -> (y, error from operands)`.
fn zip(a: &V, b: &V, f: impl Fn(f64, f64, f64, f64) -> (f64, f64)) -> Option<V> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for i in 0..count(&shape) {
        let (ia, ib) = (
            source_index(i, &shape, &a.shape),
            source_index(i, &shape, &b.shape),
        );
        let (y, err) = f(a.x[ia], b.x[ib], a.e[ia], b.e[ib]);
        x.push(y);
        e.push(err + round(y));
    }
    Some(float(shape, x, e))
}

/// Gathers elements: output position `i` takes input element `pick(i)`.
fn gather(v: &V, shape: Vec<usize>, pick: impl Fn(usize) -> usize) -> V {
    let n = count(&shape);
    V {
        x: (0..n).map(|i| v.x[pick(i)]).collect(),
        e: (0..n).map(|i| v.e[pick(i)]).collect(),
        shape,
        labels: v.labels,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Red {
    Sum,
    Mean,
    Max,
}

/// Reduces `v` over `axis` (or everything), numpy-style.
fn reduce(v: &V, kind: Red, axis: Option<usize>, keepdims: bool) -> Option<V> {
    let (outer, n, inner, shape) = match axis {
        None => (
            1,
            count(&v.shape),
            1,
            if keepdims {
                vec![1; v.shape.len()]
            } else {
                vec![]
            },
        ),
        Some(a) => {
            let mut s = v.shape.clone();
            if keepdims {
                s[a] = 1;
            } else {
                s.remove(a);
            }
            (
                count(&v.shape[..a]),
                v.shape[a],
                count(&v.shape[a + 1..]),
                s,
            )
        }
    };
    if n == 0 && kind != Red::Sum {
        return None;
    }
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * n * inner + k * inner + i;
            let (y, err) = match kind {
                // With a NaN in the slice the answer is NaN or the max of the rest, depending
                // on the kernel: not judged.
                Red::Max if (0..n).any(|k| v.x[at(k)].is_nan()) => (f64::NAN, f64::INFINITY),
                Red::Max => {
                    let k = (0..n)
                        .max_by(|&p, &q| v.x[at(p)].total_cmp(&v.x[at(q)]))
                        .unwrap();
                    // The gap to the runner-up is the distance to a tie.
                    (0..n)
                        .filter(|&j| j != k)
                        .for_each(|j| kink(v.x[at(k)] - v.x[at(j)]));
                    let emax = (0..n).map(|k| v.e[at(k)]).fold(0.0, f64::max);
                    (v.x[at(k)], emax + round(v.x[at(k)]))
                }
                _ => {
                    let s: f64 = (0..n).map(|k| v.x[at(k)]).sum();
                    let es: f64 = (0..n).map(|k| v.e[at(k)]).sum();
                    let mag: f64 = (0..n).map(|k| v.x[at(k)].abs()).sum();
                    let err = es + EPS * (n as f64 + 1.0) * mag + ABS;
                    if kind == Red::Mean {
                        (s / n as f64, err / n as f64)
                    } else {
                        (s, err)
                    }
                }
            };
            x.push(y);
            e.push(err);
        }
    }
    Some(float(shape, x, e))
}

/// Softmax-family over the last axis: 0 softmax, 1 log-softmax, 2 logsumexp.
fn softmax(v: &V, kind: u8) -> Option<V> {
    let last = *v.shape.last()?;
    let rows = count(&v.shape[..v.shape.len() - 1]);
    let mut shape = v.shape.clone();
    if kind == 2 {
        shape.pop();
    }
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let row = &v.x[r * last..(r + 1) * last];
        let emax = v.e[r * last..(r + 1) * last]
            .iter()
            .fold(0.0, |a: f64, &b| a.max(b));
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let z: f64 = row.iter().map(|&t| (t - m).exp()).sum();
        let lse = m + z.ln();
        let slack = EPS * (last as f64 + 2.0);
        if row.iter().any(|t| t.is_nan()) {
            // NaN in, NaN out; f64::max above would have skipped it.
            let n = if kind == 2 { 1 } else { row.len() };
            x.extend((0..n).map(|_| f64::NAN));
            e.extend((0..n).map(|_| f64::INFINITY));
            continue;
        }
        if m == f64::NEG_INFINITY {
            // A row of -inf (or an empty row): logsumexp is log 0 = -inf exactly; softmax and
            // log-softmax are 0/0, left unchecked (an infinite bound).
            if kind == 2 {
                x.push(f64::NEG_INFINITY);
                e.push(0.0);
            } else {
                x.extend(row.iter().map(|_| f64::NAN));
                e.extend(row.iter().map(|_| f64::INFINITY));
            }
            continue;
        }
        match kind {
            0 => row.iter().for_each(|&t| {
                x.push((t - m).exp() / z);
                e.push(2.0 * emax + slack + ABS);
            }),
            1 => row.iter().for_each(|&t| {
                x.push(t - lse);
                e.push(2.0 * emax + slack * (1.0 + t.abs() + lse.abs()) + ABS);
            }),
            _ => {
                x.push(lse);
                e.push(emax + slack * (1.0 + lse.abs()) + ABS);
            }
        }
    }
    Some(float(shape, x, e))
}

/// Joins values along `axis`: same rank, equal sizes off the axis, at least one part.
fn concat(parts: &[V], axis: usize) -> Option<V> {
    let first = parts.first()?;
    let r = first.shape.len();
    if axis >= r {
        return None;
    }
    for p in parts {
        if p.shape.len() != r || (0..r).any(|i| i != axis && p.shape[i] != first.shape[i]) {
            return None;
        }
    }
    let mut s = first.shape.clone();
    s[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    let (outer, inner) = (count(&s[..axis]), count(&s[axis + 1..]));
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for o in 0..outer {
        for p in parts {
            let n = p.shape[axis];
            let from = o * n * inner..(o + 1) * n * inner;
            x.extend_from_slice(&p.x[from.clone()]);
            e.extend_from_slice(&p.e[from]);
        }
    }
    Some(float(s, x, e))
}

fn matmul(a: &V, b: &V) -> Option<V> {
    if a.shape.len() != 2 || b.shape.len() != 2 || a.shape[1] != b.shape[0] {
        return None;
    }
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let (mut x, mut e) = (Vec::new(), Vec::new());
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut err, mut mag) = (0.0, 0.0, 0.0);
            for p in 0..k {
                let (u, w) = (a.x[i * k + p], b.x[p * n + j]);
                let (eu, ew) = (a.e[i * k + p], b.e[p * n + j]);
                s += u * w;
                mag += (u * w).abs();
                err += u.abs() * ew + w.abs() * eu + eu * ew;
            }
            x.push(s);
            e.push(err + EPS * (k as f64 + 1.0) * mag + ABS);
        }
    }
    Some(float(vec![m, n], x, e))
}

/// Numpy's reshape with at most one `-1`.
fn reshape_shape(from: &[usize], target: &[isize]) -> Option<Vec<usize>> {
    let total = count(from);
    let wild = target.iter().filter(|&&d| d == -1).count();
    if wild > 1 || target.iter().any(|&d| d < -1) {
        return None;
    }
    let known: usize = target
        .iter()
        .filter(|&&d| d >= 0)
        .map(|&d| d as usize)
        .product();
    let mut out: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
    if wild == 0 {
        return (known == total).then_some(out);
    }
    if known == 0 || !total.is_multiple_of(known) {
        return None;
    }
    let i = target.iter().position(|&d| d == -1)?;
    out[i] = total / known;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Programs.

/// One step of a program. Operands are indices taken modulo the nodes built so far; `seed`s
/// choose parameters once the operands' shapes are known (mostly valid ones, sometimes not).
#[derive(Clone, Debug)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    MatMul(usize, usize),
    Transpose(usize),
    Reshape(usize, u64),
    Reduce(u8, usize, Option<i8>, bool),
    Slice(usize, u64),
    /// Two operands, then how many parts (0..=3, cycling through the two) and the axis.
    Concat(usize, usize, u8, u8),
    /// Dropout (kind 0) or noise (kind 1) with a parameter from a list with invalid ones.
    Random(u8, usize, u8),
    Softmax(u8, usize),
    Clip(usize, u8, u8),
    Unsqueeze(usize, u8),
    Pick(usize, usize),
    OneHot(usize, u8),
    Argmax(usize),
    BroadcastLike(usize, usize),
    SumLike(usize, usize),
    Dot(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    let i = || 0usize..64;
    prop_oneof![
        4 => (0u8..15, i()).prop_map(|(u, a)| Step::Unary(u, a)),
        4 => (0u8..6, i(), i()).prop_map(|(b, x, y)| Step::Binary(b, x, y)),
        2 => (i(), i()).prop_map(|(a, b)| Step::MatMul(a, b)),
        1 => i().prop_map(Step::Transpose),
        2 => (i(), any::<u64>()).prop_map(|(a, s)| Step::Reshape(a, s)),
        3 => (0u8..3, i(), prop::option::of(-4i8..4), any::<bool>()).prop_map(|(k, a, ax, kd)| Step::Reduce(k, a, ax, kd)),
        2 => (i(), any::<u64>()).prop_map(|(a, s)| Step::Slice(a, s)),
        2 => (i(), i(), 0u8..4, 0u8..4).prop_map(|(a, b, n, ax)| Step::Concat(a, b, n, ax)),
        1 => (0u8..2, i(), 0u8..5).prop_map(|(k, a, p)| Step::Random(k, a, p)),
        2 => (0u8..3, i()).prop_map(|(k, a)| Step::Softmax(k, a)),
        1 => (i(), 0u8..6, 0u8..6).prop_map(|(a, l, h)| Step::Clip(a, l, h)),
        1 => (i(), 0u8..4).prop_map(|(a, ax)| Step::Unsqueeze(a, ax)),
        2 => (i(), i()).prop_map(|(a, l)| Step::Pick(a, l)),
        1 => (i(), 0u8..5).prop_map(|(l, k)| Step::OneHot(l, k)),
        1 => i().prop_map(Step::Argmax),
        1 => (i(), i()).prop_map(|(a, b)| Step::BroadcastLike(a, b)),
        1 => (i(), i()).prop_map(|(a, b)| Step::SumLike(a, b)),
        1 => (i(), i()).prop_map(|(a, b)| Step::Dot(a, b)),
    ]
}

/// How an input's dims are declared.
#[derive(Clone, Copy, Debug)]
enum Declared {
    Known,
    Unknown,
    BatchUnknown,
}

#[derive(Clone, Debug)]
struct Program {
    /// Float inputs: their run-time shape, how they are declared, and their values.
    inputs: Vec<(Vec<usize>, Declared, Vec<f32>)>,
    /// A constant operand, if any.
    constant: Option<(Vec<usize>, Vec<f32>)>,
    /// The labels argument's values (the labels input is always there).
    labels: Vec<f32>,
    steps: Vec<Step>,
    /// Extra outputs besides the last node (indices modulo the node count).
    extra_outputs: Vec<usize>,
    /// Weights for the gradient check's cost, cycled.
    gradient: bool,
    /// Which argument to call with another shape afterwards, and that shape.
    reshape_arg: (usize, Vec<usize>),
    /// A parameter (shape, values) read as an operand and updated by the function to the value
    /// of a node (an index modulo the op nodes), which may not have its shape.
    param: Option<(Values, usize)>,
}

/// A shape with its values.
type Values = (Vec<usize>, Vec<f32>);

fn shape() -> impl Strategy<Value = Vec<usize>> {
    // Mostly 2s and 3s, so ops often fit; 0 and 1 for the edges.
    prop::collection::vec(prop::sample::select(vec![0usize, 1, 2, 2, 3, 3, 4]), 0..=3)
}

fn values(shape: Vec<usize>) -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    let n = count(&shape);
    (Just(shape), prop::collection::vec(-2.0f32..2.0, n))
}

fn declared() -> impl Strategy<Value = Declared> {
    prop_oneof![
        3 => Just(Declared::Known),
        1 => Just(Declared::Unknown),
        1 => Just(Declared::BatchUnknown),
    ]
}

fn program() -> impl Strategy<Value = Program> {
    let input = (shape().prop_flat_map(values), declared()).prop_map(|((s, v), d)| (s, d, v));
    let label = prop_oneof![
        10 => (0u8..4).prop_map(f32::from),
        1 => prop::sample::select(vec![-1.0f32, 4.0, 0.5, 1e9, f32::NAN]),
    ];
    (
        prop::collection::vec(input, 1..=3),
        prop::option::of(shape().prop_flat_map(values)),
        prop::collection::vec(label, 0..=4usize),
        prop::collection::vec(step(), 1..=7),
        prop::collection::vec(0usize..64, 0..=2),
        prop::bool::weighted(0.3),
        (
            (0usize..4, shape()),
            prop::option::weighted(0.4, (shape().prop_flat_map(values), 0usize..64)),
        ),
    )
        .prop_map(
            |(inputs, constant, labels, steps, extra_outputs, gradient, (reshape_arg, param))| {
                Program {
                    inputs,
                    constant,
                    labels,
                    steps,
                    extra_outputs,
                    gradient,
                    reshape_arg,
                    param,
                }
            },
        )
}

/// A node: the library's expression and the model's value (`None`: invalid for these shapes).
#[derive(Clone)]
struct Node {
    expr: Expr,
    val: Option<V>,
    /// Built from inputs or constants only (no arithmetic), so ties are exact.
    leaf: bool,
    /// Holds labels (the labels input, argmax), whatever the shapes: operands are chosen by
    /// kind, so a program picks the same operands on every shape.
    labels: bool,
}

/// Parameters a step chose from its operand's shape on the first build, reused when the same
/// program is rebuilt for other argument shapes (the library's graph keeps them too).
#[derive(Clone, Debug)]
enum Chosen {
    Reshape(Vec<isize>),
    Slice(usize, usize, usize),
}

fn clip_bound(k: u8) -> f32 {
    [-1.0, 0.0, 0.5, 1.0, f32::NAN, f32::INFINITY][k as usize]
}

/// The float nodes and the label nodes among `nodes`.
fn pick_node(nodes: &[Node], i: usize, labels: bool) -> Option<&Node> {
    let of_kind: Vec<&Node> = nodes.iter().filter(|n| n.labels == labels).collect();
    (!of_kind.is_empty()).then(|| of_kind[i % of_kind.len()])
}

/// Applies `step` to the library and to the model together. `None` when the step has no
/// operand of the kind it needs (it is then skipped).
fn apply(step: &Step, nodes: &[Node], memo: &mut Option<Chosen>) -> Option<Node> {
    let f = |i: usize| pick_node(nodes, i, false);
    let l = |i: usize| pick_node(nodes, i, true);
    let both = |a: &Node, b: &Node| a.val.clone().zip(b.val.clone());
    let node = |expr: Expr, val: Option<V>| Node {
        expr,
        val,
        leaf: false,
        labels: false,
    };
    Some(match *step {
        Step::Unary(u, a) => {
            let a = f(a)?;
            let x = &a.expr;
            let (expr, model): (Expr, fn(&V) -> V) = match u {
                0 => (x.neg(), |v| map(v, |t| (-t, 1.0))),
                1 => (x.abs(), |v| {
                    map(v, |t| {
                        kink(t);
                        (t.abs(), 1.0)
                    })
                }),
                2 => (x.tanh(), |v| map(v, |t| (t.tanh(), 1.0))),
                3 => (x.sigmoid(), |v| {
                    map(v, |t| (1.0 / (1.0 + (-t).exp()), 0.25))
                }),
                4 => (x.relu(), |v| {
                    map(v, |t| {
                        kink(t);
                        // NaN stays NaN (f64::max would drop it).
                        (if t.is_nan() { t } else { t.max(0.0) }, 1.0)
                    })
                }),
                5 => (x.softplus(), |v| {
                    map(v, |t| (t.max(0.0) + (-t.abs()).exp().ln_1p(), 1.0))
                }),
                6 => (x.softsign(), |v| map(v, |t| (t / (1.0 + t.abs()), 1.0))),
                7 => (x.square(), |v| map(v, |t| (t * t, 2.0 * t.abs() + 1e-3))),
                // The functions below only on a domain where they are well conditioned.
                8 => (x.clip(-4.0, 4.0).exp(), |v| {
                    map(v, |t| {
                        kink((t.abs() - 4.0).abs());
                        (t.clamp(-4.0, 4.0).exp(), 4f64.exp())
                    })
                }),
                9 => ((x.square() + 1.0).log(), |v| {
                    map(v, |t| ((t * t).ln_1p(), 1.0 + 2.0 * t.abs()))
                }),
                10 => ((x.square() + 1.0).sqrt(), |v| {
                    map(v, |t| ((t * t + 1.0).sqrt(), 1.0 + 2.0 * t.abs()))
                }),
                11 => ((x.square() + 1.0).recip(), |v| {
                    map(v, |t| (1.0 / (t * t + 1.0), 1.0 + 2.0 * t.abs()))
                }),
                12 => ((x.square() + 1.0).powf(0.5), |v| {
                    map(v, |t| ((t * t + 1.0).sqrt(), 1.0 + 2.0 * t.abs()))
                }),
                13 => ((x.square() + 1.0).powf(-1.5), |v| {
                    map(v, |t| ((t * t + 1.0).powf(-1.5), 3.0 + 3.0 * t.abs()))
                }),
                _ => (x.clip(-3.0, 3.0).powf(2.0), |v| {
                    map(v, |t| {
                        kink((t.abs() - 3.0).abs());
                        (t.clamp(-3.0, 3.0).powi(2), 6.0)
                    })
                }),
            };
            node(expr, a.val.as_ref().map(model))
        }
        Step::Binary(k, a, b) => {
            let (a, b) = (f(a)?, f(b)?);
            let (x, y) = (&a.expr, &b.expr);
            let expr = match k {
                0 => x + y,
                1 => x - y,
                2 => x * y,
                3 => x / (y.square() + 1.0),
                4 => x.maximum(y),
                _ => x.minimum(y),
            };
            let val = both(a, b).and_then(|(va, vb)| {
                zip(&va, &vb, |p, q, ep, eq| match k {
                    0 => (p + q, ep + eq),
                    1 => (p - q, ep + eq),
                    2 => (p * q, p.abs() * eq + q.abs() * ep + ep * eq),
                    3 => {
                        let d = q * q + 1.0;
                        (
                            p / d,
                            ep + p.abs() * (2.0 * q.abs() + eq) * eq + round(d) * p.abs(),
                        )
                    }
                    4 => {
                        kink(p - q);
                        (p.max(q), ep.max(eq))
                    }
                    _ => {
                        kink(p - q);
                        (p.min(q), ep.max(eq))
                    }
                })
            });
            node(expr, val)
        }
        Step::MatMul(a, b) => {
            let (a, b) = (f(a)?, f(b)?);
            node(
                a.expr.matmul(&b.expr),
                both(a, b).and_then(|(p, q)| matmul(&p, &q)),
            )
        }
        Step::Transpose(a) => {
            let a = f(a)?;
            let val = a.val.as_ref().filter(|v| v.shape.len() == 2).map(|v| {
                let (r, c) = (v.shape[0], v.shape[1]);
                gather(v, vec![c, r], |i| (i % r) * c + i / r)
            });
            node(a.expr.t(), val)
        }
        Step::Reshape(a, seed) => {
            let a = f(a)?;
            let n = a.val.as_ref().map_or(0, |v| count(&v.shape));
            let target = match memo {
                Some(Chosen::Reshape(t)) => t.clone(),
                _ => reshape_target(n, seed),
            };
            *memo = Some(Chosen::Reshape(target.clone()));
            let val = a.val.as_ref().and_then(|v| {
                let s = reshape_shape(&v.shape, &target)?;
                Some(V {
                    shape: s,
                    ..v.clone()
                })
            });
            node(a.expr.reshape(&target), val)
        }
        Step::Reduce(k, a, axis, keepdims) => {
            let a = f(a)?;
            let kind = [Red::Sum, Red::Mean, Red::Max][k as usize];
            let expr = match (kind, axis) {
                (Red::Sum, None) => a.expr.sum(),
                (Red::Mean, None) => a.expr.mean(),
                (Red::Max, None) => a.expr.max(),
                (Red::Sum, Some(ax)) => a.expr.sum_axis(ax as isize, keepdims),
                (Red::Mean, Some(ax)) => a.expr.mean_axis(ax as isize, keepdims),
                (Red::Max, Some(ax)) => a.expr.max_axis(ax as isize, keepdims),
            };
            let val = a.val.as_ref().and_then(|v| {
                let r = v.shape.len() as isize;
                match axis {
                    None => reduce(v, kind, None, false),
                    Some(ax) => {
                        let ax = ax as isize;
                        let resolved = if ax < 0 { ax + r } else { ax };
                        if !(0..r).contains(&resolved) {
                            return None;
                        }
                        reduce(v, kind, Some(resolved as usize), keepdims)
                    }
                }
            });
            node(expr, val)
        }
        Step::Slice(a, seed) => {
            let a = f(a)?;
            let shape = a.val.as_ref().map_or(vec![], |v| v.shape.clone());
            let (axis, start, len) = match memo {
                Some(Chosen::Slice(a, s, l)) => (*a, *s, *l),
                _ => slice_args(&shape, seed),
            };
            *memo = Some(Chosen::Slice(axis, start, len));
            let val = a.val.as_ref().and_then(|v| {
                if axis >= v.shape.len() || start.checked_add(len)? > v.shape[axis] {
                    return None;
                }
                let mut s = v.shape.clone();
                s[axis] = len;
                let st = strides(&v.shape);
                let out = s.clone();
                Some(gather(v, s, |i| {
                    let mut idx = unravel(i, &out);
                    idx[axis] += start;
                    idx.iter().zip(&st).map(|(p, q)| p * q).sum()
                }))
            });
            node(a.expr.slice(axis, start, len), val)
        }
        Step::Concat(a, b, n, axis) => {
            let (a, b) = (f(a)?, f(b)?);
            let parts: Vec<&Node> = [a, b, a].into_iter().take(n as usize).collect();
            let axis = axis as usize;
            let vals: Option<Vec<V>> = parts.iter().map(|p| p.val.clone()).collect();
            let val = vals.and_then(|vals| concat(&vals, axis));
            let exprs: Vec<Expr> = parts.iter().map(|p| p.expr.clone()).collect();
            node(Expr::concat(&exprs, axis), val)
        }
        Step::Random(k, a, p) => {
            let a = f(a)?;
            // Only the parameter that changes nothing is valid and predictable; the others are
            // out of range (random draws in range are not fuzzed for values).
            let (param, valid) = [
                (0.0, true),
                (-0.5, false),
                (1.0, k == 1),
                (f32::NAN, false),
                (f32::INFINITY, false),
            ][p as usize];
            let expr = if k == 0 {
                a.expr.dropout(param, 7)
            } else {
                a.expr.add_noise(param, 7)
            };
            // With noise of std 1 the shape is known, the values are not (see `draws`).
            let val = a
                .val
                .as_ref()
                .filter(|_| valid)
                .map(|v| map(v, |t| (t, 1.0)));
            node(expr, val)
        }
        Step::Softmax(k, a) => {
            let a = f(a)?;
            let expr = match k {
                0 => a.expr.softmax(),
                1 => a.expr.log_softmax(),
                _ => a.expr.logsumexp(),
            };
            node(expr, a.val.as_ref().and_then(|v| softmax(v, k)))
        }
        Step::Clip(a, lo, hi) => {
            let a = f(a)?;
            let (lo, hi) = (clip_bound(lo), clip_bound(hi));
            let ok = lo <= hi; // false for NaN bounds
            let val = a.val.as_ref().filter(|_| ok).map(|v| {
                map(v, |t| {
                    kink(t - lo as f64);
                    kink(t - hi as f64);
                    (t.clamp(lo as f64, hi as f64), 1.0)
                })
            });
            node(a.expr.clip(lo, hi), val)
        }
        Step::Unsqueeze(a, axis) => {
            let a = f(a)?;
            let axis = axis as usize;
            let val = a.val.as_ref().filter(|v| axis <= v.shape.len()).map(|v| {
                let mut s = v.shape.clone();
                s.insert(axis, 1);
                V {
                    shape: s,
                    ..v.clone()
                }
            });
            node(a.expr.unsqueeze(axis), val)
        }
        Step::Pick(a, lab) => {
            let (a, lab) = (f(a)?, l(lab)?);
            let val = both(a, lab).and_then(|(x, y)| {
                if x.shape.len() != 2 || y.shape.len() != 1 || x.shape[0] != y.shape[0] {
                    return None;
                }
                let c = x.shape[1];
                let rows = valid_labels(&y.x, c)?;
                Some(gather(&x, vec![rows.len()], |i| i * c + rows[i]))
            });
            node(a.expr.pick(&lab.expr), val)
        }
        Step::OneHot(lab, k) => {
            let lab = l(lab)?;
            let k = k as usize;
            let val = lab
                .val
                .as_ref()
                .filter(|y| y.shape.len() == 1)
                .and_then(|y| {
                    let rows = valid_labels(&y.x, k)?;
                    let x: Vec<f64> = rows
                        .iter()
                        .flat_map(|&r| (0..k).map(move |j| f64::from(u8::from(j == r))))
                        .collect();
                    Some(float(vec![rows.len(), k], x.clone(), vec![0.0; x.len()]))
                });
            node(lab.expr.one_hot(k), val)
        }
        Step::Argmax(a) => {
            // Only on leaves: an argmax of computed values could flip on a round-off tie.
            let leaves: Vec<&Node> = nodes.iter().filter(|n| n.leaf && !n.labels).collect();
            let a = leaves[a % leaves.len()];
            let val = a.val.as_ref().and_then(|v| {
                let last = *v.shape.last()?;
                if last == 0 {
                    return None;
                }
                let rows = count(&v.shape[..v.shape.len() - 1]);
                let x: Vec<f64> = (0..rows)
                    .map(|r| {
                        let row = &v.x[r * last..(r + 1) * last];
                        // The first maximum; labels flip at ties.
                        let top = row.iter().fold(f64::NEG_INFINITY, |p, &q| p.max(q));
                        let second = row
                            .iter()
                            .filter(|&&t| t != top)
                            .fold(f64::NEG_INFINITY, |p, &q| p.max(q));
                        kink(top - second);
                        if row.iter().filter(|&&t| t == top).count() > 1 {
                            kink(0.0);
                        }
                        let m = row.iter().fold(f64::NEG_INFINITY, |p, &q| p.max(q));
                        row.iter().position(|&t| t == m).unwrap() as f64
                    })
                    .collect();
                Some(V {
                    shape: v.shape[..v.shape.len() - 1].to_vec(),
                    e: vec![0.0; x.len()],
                    x,
                    labels: true,
                })
            });
            Node {
                labels: true,
                ..node(a.expr.argmax(), val)
            }
        }
        Step::BroadcastLike(a, b) => {
            let (a, b) = (f(a)?, f(b)?);
            let val = both(a, b).and_then(|(p, q)| {
                broadcasts_to(&p.shape, &q.shape).then(|| {
                    let to = q.shape.clone();
                    gather(&p, to.clone(), |i| source_index(i, &to, &p.shape))
                })
            });
            node(a.expr.broadcast_like(&b.expr), val)
        }
        Step::SumLike(a, b) => {
            let (a, b) = (f(a)?, f(b)?);
            let val = both(a, b).and_then(|(p, q)| {
                if !broadcasts_to(&q.shape, &p.shape) {
                    return None;
                }
                let n = count(&q.shape);
                let (mut x, mut e, mut mag) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                for i in 0..count(&p.shape) {
                    let j = source_index(i, &p.shape, &q.shape);
                    x[j] += p.x[i];
                    e[j] += p.e[i];
                    mag[j] += p.x[i].abs();
                }
                let k = (count(&p.shape) / n.max(1)) as f64 + 1.0;
                let e = e
                    .iter()
                    .zip(&mag)
                    .map(|(e, m)| e + EPS * k * m + ABS)
                    .collect();
                Some(float(q.shape.clone(), x, e))
            });
            node(a.expr.sum_like(&b.expr), val)
        }
        Step::Dot(a, b) => {
            let (a, b) = (f(a)?, f(b)?);
            let val = both(a, b).and_then(|(p, q)| {
                let prod = zip(&p, &q, |s, t, es, et| {
                    (s * t, s.abs() * et + t.abs() * es + es * et)
                })?;
                reduce(&prod, Red::Sum, None, false)
            });
            node(a.expr.dot(&b.expr), val)
        }
    })
}

/// The labels as row indices, if every one is an integer in `0..classes`.
fn valid_labels(values: &[f64], classes: usize) -> Option<Vec<usize>> {
    values
        .iter()
        .map(|&v| (v >= 0.0 && v.fract() == 0.0 && v < classes as f64).then_some(v as usize))
        .collect()
}

/// A reshape target for an operand of `n` elements: mostly a factorization of `n` (with a
/// `-1` sometimes), sometimes arbitrary dims.
fn reshape_target(n: usize, seed: u64) -> Vec<isize> {
    let pick = |k: u64| (seed >> (8 + 4 * k)) as usize;
    if seed.is_multiple_of(4) {
        let rank = pick(0) % 4;
        return (0..rank)
            .map(|k| [-2, -1, 0, 1, 2, 3, 4, 6][pick(k as u64 + 1) % 8])
            .collect();
    }
    let divisors: Vec<usize> = (1..=n.max(1)).filter(|d| n.is_multiple_of(*d)).collect();
    let d = divisors[pick(0) % divisors.len()];
    let mut t = vec![d as isize, (n / d.max(1)) as isize];
    if n == 0 {
        t = vec![0, pick(1) as isize % 3];
    }
    if seed.is_multiple_of(3) {
        t[pick(2) % 2] = -1;
    }
    if seed.is_multiple_of(5) {
        t.insert(0, 1);
    }
    t
}

/// Slice arguments for an operand of `shape`: mostly within bounds, sometimes past them or
/// overflowing.
fn slice_args(shape: &[usize], seed: u64) -> (usize, usize, usize) {
    let pick = |k: u64| (seed >> (8 + 6 * k)) as usize;
    if seed.is_multiple_of(5) {
        let wild = [0, 1, 2, 5, usize::MAX, usize::MAX / 2 + 1];
        return (pick(0) % 4, wild[pick(1) % 6], wild[pick(2) % 6]);
    }
    if shape.is_empty() {
        return (0, 0, pick(1) % 2);
    }
    let axis = pick(0) % shape.len();
    let start = pick(1) % (shape[axis] + 1);
    let len = pick(2) % (shape[axis] - start + 1);
    (axis, start, len)
}

// ---------------------------------------------------------------------------------------------
// Running a program.

/// Everything about one program, built in both worlds.
struct Built {
    inputs: Vec<Expr>,
    args: Vec<Tensor>,
    outputs: Vec<Node>,
    /// The float inputs' declared dims, to judge calls with other shapes.
    declared: Vec<Vec<Option<usize>>>,
    /// The parameter and the node whose value replaces it after each call.
    update: Option<(Param, Node)>,
    /// The model's smallest distance to a kink (see [`KINK`]).
    kink: f64,
    /// The model's largest magnitude (see [`BIG`]).
    big: f64,
}

fn build(p: &Program, memo: &mut Vec<Option<Chosen>>) -> Built {
    KINK.with(|k| k.set(f64::INFINITY));
    BIG.with(|b| b.set(0.0));
    let mut nodes = Vec::new();
    let mut inputs = Vec::new();
    let mut args = Vec::new();
    let mut declared = Vec::new();
    for (k, (shape, decl, vals)) in p.inputs.iter().enumerate() {
        let dims: Vec<Option<usize>> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match decl {
                Declared::Known => Some(d),
                Declared::Unknown => None,
                Declared::BatchUnknown => (i > 0).then_some(d),
            })
            .collect();
        let e = Expr::input_with_dims(&format!("x{k}"), &dims);
        let v: Vec<f64> = vals.iter().map(|&t| f64::from(t)).collect();
        nodes.push(Node {
            expr: e.clone(),
            val: Some(float(shape.clone(), v.clone(), vec![0.0; v.len()])),
            leaf: true,
            labels: false,
        });
        inputs.push(e);
        args.push(Tensor::new(shape, vals.clone()).expect("values fit their shape"));
        declared.push(dims);
    }
    if let Some((shape, vals)) = &p.constant {
        let t = Tensor::new(shape, vals.clone()).expect("values fit their shape");
        let v: Vec<f64> = vals.iter().map(|&t| f64::from(t)).collect();
        nodes.push(Node {
            expr: Expr::constant(t),
            val: Some(float(shape.clone(), v.clone(), vec![0.0; v.len()])),
            leaf: true,
            labels: false,
        });
    }
    let param = p.param.as_ref().map(|((shape, vals), _)| {
        let t = Tensor::new(shape, vals.clone()).expect("values fit their shape");
        let param = Param::new("p", t);
        let v: Vec<f64> = vals.iter().map(|&t| f64::from(t)).collect();
        nodes.push(Node {
            expr: param.expr(),
            val: Some(float(shape.clone(), v.clone(), vec![0.0; v.len()])),
            leaf: true,
            labels: false,
        });
        param
    });
    let labels = Expr::labels("l");
    let lv: Vec<f64> = p.labels.iter().map(|&t| f64::from(t)).collect();
    nodes.push(Node {
        expr: labels.clone(),
        val: Some(V {
            shape: vec![lv.len()],
            e: vec![0.0; lv.len()],
            x: lv,
            labels: true,
        }),
        leaf: true,
        labels: true,
    });
    inputs.push(labels);
    args.push(Tensor::vector(&p.labels));
    declared.push(vec![None]);
    let first_op = nodes.len();
    memo.resize(p.steps.len(), None);
    for (s, m) in p.steps.iter().zip(memo.iter_mut()) {
        if let Some(n) = apply(s, &nodes, m) {
            nodes.push(n);
        }
    }
    // The last node and a few others (never a bare input: a function of inputs only is legal
    // but the labels input would then be an output of label type, which is not what is fuzzed).
    let mut outputs = vec![nodes[nodes.len() - 1].clone()];
    let ops = nodes.len() - first_op;
    if ops > 0 {
        for &k in &p.extra_outputs {
            outputs.push(nodes[first_op + k % ops].clone());
        }
    }
    outputs.retain(|n| !matches!(n.expr.op(), tape::Op::Input(_)));
    let float_ops: Vec<&Node> = nodes[first_op..].iter().filter(|n| !n.labels).collect();
    let update = match (param, &p.param) {
        (Some(param), Some((_, k))) if !float_ops.is_empty() => {
            Some((param, float_ops[k % float_ops.len()].clone()))
        }
        _ => None,
    };
    Built {
        inputs,
        args,
        outputs,
        declared,
        update,
        kink: KINK.with(|k| k.get()),
        big: BIG.with(|b| b.get()),
    }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// A typed error with something to say.
fn check_err(e: &Error, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !e.to_string().trim().is_empty(),
        "{what}: empty message for {e:?}"
    );
    Ok(())
}

/// Compares a library output with the model's value.
fn compare(got: &Tensor, want: &V, random: bool, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), &want.shape[..], "{}: shape", what);
    if random {
        return Ok(());
    }
    for (i, (&g, (&w, &e))) in got
        .data()
        .iter()
        .zip(want.x.iter().zip(&want.e))
        .enumerate()
    {
        let g = f64::from(g);
        let ok = if w.is_infinite() && e.is_finite() {
            g == w
        } else if w.is_nan() || e.is_nan() || e > 1e30 || w.abs() > 1e30 {
            // Undefined in f64 (inf - inf, a softmax over an infinite value, where the f32
            // kernels may return the limit), or past f32's range: not judged.
            true
        } else {
            (g - w).abs() <= 2.0 * e + 1e-30
        };
        prop_assert!(ok, "{what}[{i}]: got {g}, expected {w} ± {}", 2.0 * e);
    }
    Ok(())
}

/// Whether the model accepts the arguments' shapes against the declared dims.
fn args_fit(declared: &[Vec<Option<usize>>], args: &[Tensor]) -> bool {
    declared.len() == args.len()
        && declared.iter().zip(args).all(|(d, a)| {
            d.len() == a.rank()
                && d.iter()
                    .zip(a.shape())
                    .all(|(d, &s)| d.is_none_or(|d| d == s))
        })
}

/// The whole check of one program.
fn run_program(p: &Program) -> Result<(), TestCaseError> {
    let mut memo = Vec::new();
    let b = catch_unwind(AssertUnwindSafe(|| build(p, &mut memo)))
        .map_err(|_| fail("panic while building".into()))?;
    if b.outputs.is_empty() {
        return Ok(());
    }
    let outputs_valid = b.outputs.iter().all(|n| n.val.is_some());
    // The update must have the parameter's shape.
    let valid = outputs_valid && update_fits(&b);
    let all_known = p
        .inputs
        .iter()
        .all(|(_, d, _)| matches!(d, Declared::Known));

    // Build time: with every dim known, the library's verdict and dims are the model's.
    for (k, n) in b.outputs.iter().enumerate() {
        let ty = n.expr.ty();
        if let Err(e) = &ty {
            check_err(e, "build")?;
        }
        // Where the library knows a dim at build time, it is the model's.
        if let (Ok(t), Some(v)) = (&ty, &n.val) {
            prop_assert_eq!(
                t.dims.len(),
                v.shape.len(),
                "output {} rank at build time",
                k
            );
            for (d, &m) in t.dims.iter().zip(&v.shape) {
                prop_assert!(
                    d.is_none_or(|d| d == m),
                    "output {k}: dims {:?} at build time, model {:?}",
                    t.dims,
                    v.shape
                );
            }
        }
        // With every dim known (and no labels, whose length and values only a call gives), the
        // library's verdict at build time is the model's, and it knows every dim.
        if all_known && !reads_labels(&n.expr) {
            match (&ty, &n.val) {
                (Ok(t), Some(_)) => {
                    prop_assert!(t.dims.iter().all(Option::is_some), "{:?}", t.dims)
                }
                (Err(_), None) => {}
                (t, v) => prop_assert!(
                    false,
                    "output {k}: build says {t:?}, model says {:?}",
                    v.as_ref().map(|v| &v.shape)
                ),
            }
        }
    }
    if b.outputs.iter().any(|n| n.expr.ty().is_err()) {
        count_outcome(0);
    }
    let exprs: Vec<Expr> = b.outputs.iter().map(|n| n.expr.clone()).collect();
    let updates: Vec<(Param, Expr)> = b
        .update
        .iter()
        .map(|(p, n)| (p.clone(), n.expr.clone()))
        .collect();
    let compiled = catch_unwind(AssertUnwindSafe(|| {
        Function::compile_with_updates(&b.inputs, &exprs, &updates)
    }))
    .map_err(|_| fail("panic in compile".into()))?;
    let mut f = match compiled {
        Err(e) => {
            check_err(&e, "compile")?;
            count_outcome(1);
            prop_assert!(!valid, "compile refused a valid program: {e}");
            return Ok(());
        }
        Ok(f) => f,
    };
    let arg_refs: Vec<&Tensor> = b.args.iter().collect();
    let before = b.update.as_ref().map(|(p, _)| p.value());
    let ran = catch_unwind(AssertUnwindSafe(|| f.call(&arg_refs)))
        .map_err(|_| fail("panic in call".into()))?;
    match ran {
        Err(e) => {
            check_err(&e, "run")?;
            unchanged(&b, &before)?;
            count_outcome(2);
            prop_assert!(!valid, "run refused a valid program: {e}");
            return Ok(());
        }
        Ok(outs) => {
            prop_assert!(
                valid,
                "an invalid program ran: {:?}",
                outs.iter().map(Tensor::shape).collect::<Vec<_>>()
            );
            for (k, (got, n)) in outs.iter().zip(&b.outputs).enumerate() {
                compare(
                    got,
                    n.val.as_ref().unwrap(),
                    draws(&n.expr),
                    &format!("output {k}"),
                )?;
            }
            check_update(&b, "update")?;
            count_outcome(3);
        }
    }

    // Another call with one argument of another shape, or one argument short.
    let (which, other) = &p.reshape_arg;
    let which = which % b.args.len();
    let mut args2 = b.args.clone();
    args2[which] = Tensor::from_fn(other, |i| (i.iter().sum::<usize>() % 3) as f32);
    let short: Vec<&Tensor> = b.args.iter().skip(1).collect();
    let before = b.update.as_ref().map(|(p, _)| p.value());
    let r = catch_unwind(AssertUnwindSafe(|| f.call(&short)))
        .map_err(|_| fail("panic in call".into()))?;
    unchanged(&b, &before)?;
    let e = r
        .err()
        .ok_or_else(|| fail("a call with an argument missing ran".into()))?;
    prop_assert!(matches!(e, Error::Input { .. }), "{e:?}");
    let refs2: Vec<&Tensor> = args2.iter().collect();
    let r = catch_unwind(AssertUnwindSafe(|| f.call(&refs2)))
        .map_err(|_| fail("panic in call".into()))?;
    if let Err(e) = &r {
        check_err(e, "second run")?;
        unchanged(&b, &before)?;
    }
    if !args_fit(&b.declared, &args2) {
        let e = r.err().ok_or_else(|| {
            fail(format!(
                "argument {which} of shape {other:?} accepted against {:?}",
                b.declared[which]
            ))
        })?;
        prop_assert!(matches!(e, Error::ValueShape(_)), "{e:?}");
    } else if let Ok(outs) = &r {
        // The model, rebuilt on these arguments, must agree the program is valid for them.
        let mut p2 = p.clone();
        match which.cmp(&p.inputs.len()) {
            std::cmp::Ordering::Less => {
                p2.inputs[which].0 = other.clone();
                p2.inputs[which].2 = args2[which].data().to_vec();
            }
            _ => p2.labels = args2[which].data().to_vec(),
        }
        // The parameter as this call found it.
        if let (Some(((_, vals), _)), Some(t)) = (&mut p2.param, &before) {
            *vals = t.data().to_vec();
        }
        let b2 = build(&p2, &mut memo);
        for (k, (got, n)) in outs.iter().zip(&b2.outputs).enumerate() {
            let want = n
                .val
                .as_ref()
                .ok_or_else(|| fail(format!("output {k} ran on shapes the model refuses")))?;
            compare(
                got,
                want,
                draws(&n.expr),
                &format!("second run, output {k}"),
            )?;
        }
        if let (Some((param, _)), Some((_, n))) = (&b.update, &b2.update) {
            let want = n
                .val
                .as_ref()
                .ok_or_else(|| fail("second run: ran an invalid update".to_string()))?;
            compare(&param.value(), want, draws(&n.expr), "second run, update")?;
        }
    }

    if p.gradient && valid && b.kink > 0.05 && b.big < 1e3 && b.update.is_none() {
        gradient_check(&b)?;
    }
    Ok(())
}

/// Whether the node's values depend on random draws (noise of std > 0), so that only its
/// shape can be predicted.
fn draws(e: &Expr) -> bool {
    let mut stack = vec![e.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.id()) {
            continue;
        }
        match n.op() {
            tape::Op::Noise { std, .. } if *std > 0.0 => return true,
            tape::Op::Dropout { p, .. } if *p > 0.0 => return true,
            _ => {}
        }
        stack.extend(n.inputs().iter().cloned());
    }
    false
}

/// Whether the update, if any, has its parameter's shape in the model.
fn update_fits(b: &Built) -> bool {
    b.update.as_ref().is_none_or(|(p, n)| {
        n.val
            .as_ref()
            .is_some_and(|v| v.shape == p.shape().as_slice())
    })
}

/// After a failed call the parameter holds what it held before, bit for bit.
fn unchanged(b: &Built, before: &Option<Tensor>) -> Result<(), TestCaseError> {
    if let (Some((p, _)), Some(t)) = (&b.update, before) {
        let bits = |t: &Tensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(
            bits(&p.value()),
            bits(t),
            "a failed call changed the parameter"
        );
    }
    Ok(())
}

/// After a successful call the parameter holds the model's value of its update.
fn check_update(b: &Built, what: &str) -> Result<(), TestCaseError> {
    if let Some((p, n)) = &b.update {
        let want = n
            .val
            .as_ref()
            .ok_or_else(|| fail(format!("{what}: ran an invalid update")))?;
        compare(&p.value(), want, draws(&n.expr), what)?;
    }
    Ok(())
}

/// Whether the node reads labels (the labels input or an argmax), whose values only a run gives.
fn reads_labels(e: &Expr) -> bool {
    let mut stack = vec![e.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.id()) {
            continue;
        }
        // Labels computed by argmax are as unknown before a run as the labels input.
        if matches!(n.op(), tape::Op::Input(name) if name == "l")
            || matches!(n.op(), tape::Op::Argmax)
        {
            return true;
        }
        stack.extend(n.inputs().iter().cloned());
    }
    false
}

/// `tape::check` on `sum(output · weights)` of the first float output, with respect to every
/// float input, when the case is small and tame.
fn gradient_check(b: &Built) -> Result<(), TestCaseError> {
    let out = &b.outputs[0];
    let v = out.val.as_ref().unwrap();
    let tame = !out.labels
        && !draws(&out.expr)
        && v.x.iter().all(|t| t.abs() < 1e3)
        && b.args.iter().map(Tensor::len).sum::<usize>() <= 48;
    if !tame {
        return Ok(());
    }
    let weights = Tensor::from_fn(&v.shape, |i| {
        0.5 + 0.25 * (i.iter().sum::<usize>() % 3) as f32
    });
    let cost = (&out.expr * &Expr::constant(weights)).sum();
    // An absolute floor: a cost that is constant up to round-off (logsumexp of a log-softmax)
    // has an analytic gradient of pure round-off (1e-8) where the numeric one is exactly 0,
    // which the default, purely relative tolerances call a mismatch.
    // A step of 1e-3 moves every value far less than the 0.05 to the nearest kink.
    let options = check::Options {
        step: 1e-3,
        atol: 1e-5,
        ..check::Options::default()
    };
    let n_float = b.inputs.len() - 1;
    let wrt: Vec<Expr> = b.inputs[..n_float].to_vec();
    let point: Vec<(Expr, Tensor)> = b
        .inputs
        .iter()
        .cloned()
        .zip(b.args.iter().cloned())
        .collect();
    let report = catch_unwind(AssertUnwindSafe(|| {
        check::gradient(&cost, &point, &wrt, &options)
    }))
    .map_err(|_| fail("panic in the gradient check".into()))?;
    match report {
        Ok(r) => {
            prop_assert!(r.ok(), "{r}");
            count_outcome(4);
        }
        // An output with no path to an input has no gradient to check.
        Err(Error::Grad { .. }) => {}
        Err(e) => prop_assert!(false, "gradient check failed to run: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn random_programs_match_the_f64_model(p in program()) {
        run_program(&p)?;
    }
}

/// Prints the outcome counts of the property above (run after it: `--test-threads 1`).
#[test]
fn zz_stats() {
    if std::env::var_os("FUZZ_STATS").is_some() {
        let s: Vec<usize> = STATS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        eprintln!(
            "build refused {}, compile refused {}, run refused {}, ran {}, gradients checked {}",
            s[0], s[1], s[2], s[3], s[4]
        );
    }
}
