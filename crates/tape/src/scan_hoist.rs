//! Products hoisted out of a backward scan. The gradient of a weight `W` read in a step as
//! `a_t · W` is `Σ_t a_tᵀ · dz_t`; summed in a carried accumulator, that is one product of inner
//! dimension `batch` per step, the least efficient shape for a matrix product. When `a_t` is a
//! sequence the backward scan reads (a forward sequence, an entering state, a kept value),
//! the backward scan instead stacks `dz_t` as a per-step output, and the sum over steps becomes
//! one product after the scan over the stacks seen as `(batch · time, …)` matrices:
//! `A_flatᵀ · DZ_flat`, whose inner dimension is `batch · time`. Steps that a truncated backward
//! pass leaves out have a zero `dz_t` (their stacked outputs are zero), so they add nothing;
//! masked steps have a zero `dz_t` too (the step's select passes no gradient there).

use crate::error::Loc;
use crate::expr::Expr;
use crate::graph::key;
use crate::kernels::Binary;
use crate::op::Op;

/// One stacked operand of a hoisted product.
#[derive(Clone)]
pub(crate) enum Stacked {
    /// An outer value `(batch, time, …)`: the sequence the backward scan was given.
    Outer(Expr),
    /// The backward scan's per-step output with this index among its outputs.
    Output(usize),
}

/// A backward step's accumulators with their per-step products taken out.
pub(crate) struct Hoisted {
    /// Per accumulator: its new root, `None` when nothing is left to accumulate.
    pub(crate) roots: Vec<Option<Expr>>,
    /// Per accumulator: the products `Σ_t p_tᵀ · q_t` to compute after the scan, with the
    /// width of `p` and of `q`.
    pub(crate) products: Vec<Vec<(Stacked, usize, Stacked, usize)>>,
    /// Per-step values the backward scan must stack in addition to `outputs`.
    pub(crate) new_outputs: Vec<Expr>,
}

/// Takes the per-step products `pᵀ · q` out of each accumulator root `acc + Σ terms` (`acc` the
/// accumulator's placeholder), where `p` or `q` is one of the `seqs`' placeholders and both are
/// `(batch, width)` with known widths. `outputs` are the per-step outputs the scan already
/// stacks: a `q` among them is read from there rather than stacked twice.
pub(crate) fn hoist_products(
    roots: &[Expr],
    acc: &[Expr],
    seqs: &[(Expr, Expr)],
    outputs: &[Expr],
) -> Hoisted {
    let mut out = Hoisted {
        roots: Vec::with_capacity(roots.len()),
        products: Vec::with_capacity(roots.len()),
        new_outputs: Vec::new(),
    };
    for (root, acc) in roots.iter().zip(acc) {
        let sum = match (root.op(), root.inputs()) {
            (Op::Binary(Binary::Add), [a, v]) if key(a) == key(acc) => v.clone(),
            _ => {
                out.roots.push(Some(root.clone()));
                out.products.push(Vec::new());
                continue;
            }
        };
        let mut terms = Vec::new();
        split_sum(&sum, &mut terms);
        let mut rest: Vec<Expr> = Vec::new();
        let mut products = Vec::new();
        for t in terms {
            match hoistable(&t, seqs) {
                Some((p, wp, q, wq)) => {
                    let p = stacked(&p, seqs, outputs, &mut out.new_outputs);
                    let q = stacked(&q, seqs, outputs, &mut out.new_outputs);
                    products.push((p, wp, q, wq));
                }
                None => rest.push(t),
            }
        }
        let at = root.location();
        let left = rest
            .into_iter()
            .reduce(|a, b| Expr::make(Op::Binary(Binary::Add), vec![a, b], at));
        out.roots.push(match (left, products.is_empty()) {
            (_, true) => Some(root.clone()),
            (Some(v), false) => Some(Expr::make(
                Op::Binary(Binary::Add),
                vec![acc.clone(), v],
                at,
            )),
            (None, false) => None,
        });
        out.products.push(products);
    }
    out
}

/// The terms of a sum of same-shaped gradients (as backprop adds contributions).
fn split_sum(e: &Expr, terms: &mut Vec<Expr>) {
    if let (Op::Binary(Binary::Add), [a, b]) = (e.op(), e.inputs()) {
        let same = |x: &Expr| matches!((x.ty(), e.ty()), (Ok(t), Ok(u)) if t.dims == u.dims);
        if same(a) && same(b) {
            split_sum(a, terms);
            split_sum(b, terms);
            return;
        }
    }
    terms.push(e.clone());
}

/// `pᵀ · q` with `p` or `q` a sequence's slice and both `(batch, width)` of known widths:
/// the operands and their widths.
fn hoistable(t: &Expr, seqs: &[(Expr, Expr)]) -> Option<(Expr, usize, Expr, usize)> {
    let (
        Op::MatMul {
            ta: true,
            tb: false,
        },
        [p, q],
    ) = (t.op(), t.inputs())
    else {
        return None;
    };
    let is_seq = |x: &Expr| seqs.iter().any(|(_, ph)| key(ph) == key(x));
    let width = |x: &Expr| match x.ty() {
        Ok(ty) if ty.rank() == 2 => ty.dims[1],
        _ => None,
    };
    if !(is_seq(p) || is_seq(q)) {
        return None;
    }
    Some((p.clone(), width(p)?, q.clone(), width(q)?))
}

/// Where the stacked values of the per-step value `x` are: the outer sequence it is a slice of,
/// or an output of the backward scan (an existing one, else a new one).
fn stacked(x: &Expr, seqs: &[(Expr, Expr)], outputs: &[Expr], new: &mut Vec<Expr>) -> Stacked {
    if let Some((outer, _)) = seqs.iter().find(|(_, ph)| key(ph) == key(x)) {
        return Stacked::Outer(outer.clone());
    }
    let all = outputs.iter().chain(new.iter());
    if let Some(i) = all.into_iter().position(|o| same_value(o, x)) {
        return Stacked::Output(i);
    }
    new.push(x.clone());
    Stacked::Output(outputs.len() + new.len() - 1)
}

/// Whether `a` and `b` are one node, or the same op on the same nodes (two rules that asked
/// for the same `sum_like`): one stacked output then serves both.
fn same_value(a: &Expr, b: &Expr) -> bool {
    if key(a) == key(b) {
        return true;
    }
    let (Some(ka), Some(kb)) = (a.op().cse_key(), b.op().cse_key()) else {
        return false;
    };
    ka == kb
        && a.inputs().len() == b.inputs().len()
        && a.inputs()
            .iter()
            .zip(b.inputs())
            .all(|(x, y)| key(x) == key(y))
}

/// `Σ_t p_tᵀ · q_t` as one product of the stacks `(batch, time, wp)` and `(batch, time, wq)`
/// seen as `(batch · time, w)` matrices.
pub(crate) fn summed_product(p: &Expr, wp: usize, q: &Expr, wq: usize, at: Loc) -> Expr {
    let flat = |x: &Expr, w: usize| {
        Expr::make(
            Op::Reshape([-1, w as isize].as_slice().into()),
            vec![x.clone()],
            at,
        )
    };
    Expr::make(
        Op::MatMul {
            ta: true,
            tb: false,
        },
        vec![flat(p, wp), flat(q, wq)],
        at,
    )
}
