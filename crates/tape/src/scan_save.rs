//! Values a scan keeps for its gradient. The backward step of a scan is the vector-Jacobian
//! product of the forward step, an expression graph that reads some of the forward step's own
//! nodes (a sigmoid's output, a gate, the new cell). Left as they are, those nodes would be
//! computed again at every backward step, matrix products and nonlinearities included. Instead:
//!
//! * [`keep_for_gradient`] finds the forward nodes the backward step reads whose computation
//!   involves an expensive op (a product, a transcendental function, a reduction, a nested
//!   scan…) and replaces them in the backward step by placeholders, to be fed as sequences;
//!   cheap elementwise or shape-only recomputations (a mask's broadcast) stay as they are.
//! * [`extended`] makes the forward scan that also stacks those values: the same body with
//!   extra per-step outputs, remembering the scan it extends (`ScanBody::base`).
//! * [`merge_extended`] runs at compile time, on the flat graph: a scan and its extensions over
//!   the same operands become one scan node (the most extended one), so the forward loop runs
//!   once and records what the gradient needs. The extra outputs come after the original ones,
//!   so every part index of the original is still valid in the extension.
//!
//! The forward scan thus keeps exactly what the requested gradient reads, and only when a
//! gradient is taken; a function that does not compute the gradient never sees the extension.

use crate::error::{Loc, Result};
use crate::expr::Expr;
use crate::graph::{key, topo};
use crate::ir::INode;
use crate::kernels::{Binary, Unary};
use crate::op::Op;
use crate::scan_body::ScanBody;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A backward step rewritten to read saved forward values.
pub(crate) struct Kept {
    /// The backward step's roots, reading `placeholders` instead of the forward nodes.
    pub(crate) roots: Vec<Expr>,
    /// The forward step's nodes to stack over time, in the order of `placeholders`.
    pub(crate) values: Vec<Expr>,
    /// One per value: what the backward step reads in its place (a sequence's slice).
    pub(crate) placeholders: Vec<Expr>,
}

/// Rewrites the backward step `roots` (built over `body`'s nodes) so that it reads every
/// expensive forward value it needs from a placeholder instead of computing it again. A value
/// read only for its shape (the `like` of a `sum_like`) is not kept: another value of the same
/// shape stands in for it.
pub(crate) fn keep_for_gradient(body: &ScanBody, roots: &[Expr], at: Loc) -> Result<Kept> {
    let costly = costly_nodes(body);
    // The forward nodes the backward step reads directly (its frontier into the forward graph),
    // split by whether their values or only their shapes are read.
    let mut values: Vec<Expr> = Vec::new();
    let mut shapes: Vec<Expr> = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut reads = |x: &Expr, value: bool, values: &mut Vec<Expr>, shapes: &mut Vec<Expr>| {
        if costly.get(&key(x)) != Some(&true) {
            return;
        }
        if value && seen.insert(key(x)) {
            values.push(x.clone());
        } else if !value && !shapes.iter().any(|s| key(s) == key(x)) {
            shapes.push(x.clone());
        }
    };
    for e in topo(roots)? {
        if costly.contains_key(&key(&e)) {
            continue;
        }
        for (p, x) in e.inputs().iter().enumerate() {
            reads(x, !shape_only(e.op(), p), &mut values, &mut shapes);
        }
    }
    for r in roots {
        reads(r, true, &mut values, &mut shapes);
    }
    shapes.retain(|x| !seen.contains(&key(x)));
    let rows = batch_rows(body);
    let mut stand_in: Vec<(Expr, Expr)> = Vec::new();
    for x in shapes {
        let pool = body.inputs.iter().chain(&values);
        match pool.into_iter().find(|y| same_shape(&x, y, &rows)) {
            Some(y) => stand_in.push((x, y.clone())),
            None => values.push(x),
        }
    }

    let mut placeholders = Vec::with_capacity(values.len());
    let mut swap: HashMap<usize, Expr> = HashMap::with_capacity(values.len());
    for (k, v) in values.iter().enumerate() {
        let p = Expr::placeholder(&format!("scan.saved{k}"), v.ty()?.clone(), at);
        swap.insert(key(v), p.clone());
        placeholders.push(p);
    }
    for (x, y) in stand_in {
        let y = swap.get(&key(&y)).cloned().unwrap_or(y);
        swap.insert(key(&x), y);
    }
    Ok(Kept {
        roots: substitute(roots, &swap)?,
        values,
        placeholders,
    })
}

/// Per forward node (placeholders excluded): whether computing it involves an expensive op.
fn costly_nodes(body: &ScanBody) -> HashMap<usize, bool> {
    let inputs: HashSet<usize> = body.inputs.iter().map(key).collect();
    let mut costly: HashMap<usize, bool> = HashMap::with_capacity(body.order.len());
    for e in &body.order {
        if inputs.contains(&key(e)) {
            continue;
        }
        let above = e
            .inputs()
            .iter()
            .any(|x| costly.get(&key(x)).copied().unwrap_or(false));
        costly.insert(key(e), above || !is_cheap(e.op()));
    }
    costly
}

/// Whether operand `p` of `op` is read for its shape only.
fn shape_only(op: &Op, p: usize) -> bool {
    p == 1
        && matches!(
            op,
            Op::SumLike { .. } | Op::BroadcastLike { .. } | Op::ReshapeLike | Op::SliceGrad { .. }
        )
}

/// The body's nodes whose first axis is the batch and whose other sizes are known: a sequence's
/// slice or a state with that type, and what elementwise ops, slices of other axes and products
/// make of them. Two such nodes with the same static dims have the same shape at every step.
fn batch_rows(body: &ScanBody) -> HashSet<usize> {
    let per_step: HashSet<usize> = body.inputs[..body.n_seqs + body.n_states]
        .iter()
        .map(key)
        .collect();
    let placeholders: HashSet<usize> = body.inputs.iter().map(key).collect();
    let rows_known = |d: &crate::dims::Dims| {
        !d.is_empty() && d[0].is_none() && d.iter().skip(1).all(|x| x.is_some())
    };
    let mut out = HashSet::new();
    for e in &body.order {
        let Ok(t) = e.ty() else { continue };
        if !rows_known(&t.dims) {
            continue;
        }
        let ok = if placeholders.contains(&key(e)) {
            per_step.contains(&key(e))
        } else {
            keeps_rows(e.op())
                && e.inputs().iter().all(|x| match x.ty() {
                    Ok(xt) if xt.rank() == t.rank() && xt.dims[0].is_none() => {
                        out.contains(&key(x))
                    }
                    Ok(xt) => xt.concrete().is_some(),
                    Err(_) => false,
                })
        };
        if ok {
            out.insert(key(e));
        }
    }
    out
}

/// Ops whose result's first axis is their operands' first axis.
fn keeps_rows(op: &Op) -> bool {
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Clip { .. } | Op::Softmax(_) => true,
        Op::Slice { axis, .. } | Op::SliceGrad { axis, .. } => *axis != 0,
        Op::MatMul { ta, .. } | Op::GemmBias { ta, .. } => !ta,
        _ => false,
    }
}

/// Whether `x` and `y` have the same shape at every step: known and equal, or both made of
/// batch rows (`rows`) of the same known width.
fn same_shape(x: &Expr, y: &Expr, rows: &HashSet<usize>) -> bool {
    match (x.ty(), y.ty()) {
        (Ok(a), Ok(b)) if a.dims == b.dims && a.dtype == b.dtype => {
            a.concrete().is_some() || (rows.contains(&key(x)) && rows.contains(&key(y)))
        }
        _ => false,
    }
}

/// Whether recomputing an op in the backward step costs about as much as reading its saved
/// value: elementwise arithmetic without transcendental functions, and shape changes.
fn is_cheap(op: &Op) -> bool {
    match op {
        Op::Input(_) | Op::Constant(_) | Op::Param(_) => true,
        Op::Unary(u) => matches!(
            u,
            Unary::Neg | Unary::Abs | Unary::Sign | Unary::Square | Unary::Recip | Unary::Relu
        ),
        Op::Binary(b) => !matches!(b, Binary::Pow),
        Op::Select
        | Op::Clip { .. }
        | Op::Transpose
        | Op::Reshape(_)
        | Op::ReshapeLike
        | Op::Unsqueeze(_)
        | Op::BroadcastLike { .. }
        | Op::Concat(_)
        | Op::Slice { .. }
        | Op::SliceGrad { .. }
        | Op::OneHot(_) => true,
        _ => false,
    }
}

/// The graph below `roots` with the nodes keyed in `swap` replaced; unchanged nodes are kept
/// as they are (a parameter keeps its identity).
fn substitute(roots: &[Expr], swap: &HashMap<usize, Expr>) -> Result<Vec<Expr>> {
    if swap.is_empty() {
        return Ok(roots.to_vec());
    }
    let mut new: HashMap<usize, Expr> = HashMap::new();
    for e in topo(roots)? {
        let k = key(&e);
        let made = if let Some(p) = swap.get(&k) {
            p.clone()
        } else {
            let ins: Vec<Expr> = e.inputs().iter().map(|x| new[&key(x)].clone()).collect();
            if ins.iter().zip(e.inputs()).all(|(a, b)| a.id() == b.id()) {
                e.clone()
            } else {
                Expr::make(e.op().clone(), ins, e.location())
            }
        };
        new.insert(k, made);
    }
    Ok(roots.iter().map(|r| new[&key(r)].clone()).collect())
}

/// The scan `node` (running `body`) extended to also stack `values`, forward-step nodes, as
/// per-step outputs after its own. Unmasked: they are recorded as computed, padding included.
pub(crate) fn extended(
    node: &Expr,
    body: &Arc<ScanBody>,
    values: &[Expr],
    at: Loc,
) -> Result<Expr> {
    if values.is_empty() {
        return Ok(node.clone());
    }
    let body = Arc::new(ScanBody {
        inputs: body.inputs.clone(),
        roots: [&body.roots[..], values].concat(),
        order: body.order.clone(),
        n_seqs: body.n_seqs,
        n_states: body.n_states,
        n_nonseqs: body.n_nonseqs,
        recorded: body.recorded.clone(),
        reverse: body.reverse,
        limit: body.limit,
        cut: body.cut.clone(),
        bptt_limit: body.bptt_limit,
        random: body.random,
        base: Some(body.clone()),
    });
    let scan = Expr::make(Op::Scan(body), node.inputs().to_vec(), at);
    scan.ty()?;
    Ok(scan)
}

/// The bodies `body` extends, nearest first, then itself: its lineage back to the scan the user
/// built.
fn lineage(body: &Arc<ScanBody>) -> Vec<*const ScanBody> {
    let mut out = vec![Arc::as_ptr(body)];
    let mut b = body;
    while let Some(base) = &b.base {
        out.push(Arc::as_ptr(base));
        b = base;
    }
    out
}

/// Merges every scan node of the flat graph `nodes` into the most extended scan of its lineage
/// over the same operands, when that one extends it: the merged node takes the earliest
/// position among them (their operands are the same, so that order is still topological) and
/// all their parts read from it. The scans left without readers are dropped later as dead code.
/// Sibling extensions (two gradients taken apart) that do not extend one another stay apart.
pub(crate) fn merge_extended(nodes: &mut [INode]) {
    let scans: Vec<(usize, Arc<ScanBody>)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Scan(b) if !b.random => Some((i, b.clone())),
            _ => None,
        })
        .collect();
    if !scans.iter().any(|(_, b)| b.base.is_some()) {
        return;
    }
    // Groups: same original scan, same operands.
    let mut groups: HashMap<(*const ScanBody, Vec<usize>), Vec<usize>> = HashMap::new();
    for (s, (i, b)) in scans.iter().enumerate() {
        let origin = *lineage(b).last().expect("a lineage holds the body itself");
        groups
            .entry((origin, nodes[*i].inputs.clone()))
            .or_default()
            .push(s);
    }
    let mut redirect: HashMap<usize, (usize, Arc<ScanBody>)> = HashMap::new();
    for members in groups.values().filter(|m| m.len() > 1) {
        let &top = members
            .iter()
            .max_by_key(|&&s| (scans[s].1.roots.len(), std::cmp::Reverse(scans[s].0)))
            .expect("a group has members");
        let (_, body) = &scans[top];
        let line = lineage(body);
        let merged: Vec<usize> = members
            .iter()
            .filter(|&&s| line.contains(&Arc::as_ptr(&scans[s].1)))
            .map(|&s| scans[s].0)
            .collect();
        let at = *merged
            .iter()
            .min()
            .expect("the top scan is in its own lineage");
        nodes[at].op = Op::Scan(body.clone());
        nodes[at].ty = nodes[scans[top].0].ty.clone();
        for i in merged {
            redirect.insert(i, (at, body.clone()));
        }
    }
    for n in nodes.iter_mut() {
        if let Op::ScanPart { part, .. } = n.op {
            if let Some((at, body)) = redirect.get(&n.inputs[0]) {
                n.inputs[0] = *at;
                n.op = Op::ScanPart {
                    body: body.clone(),
                    part,
                };
            }
        }
    }
}
