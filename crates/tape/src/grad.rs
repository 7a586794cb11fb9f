//! Symbolic reverse-mode differentiation. Each op's gradient rule, in one place, builds new
//! expressions from the op's inputs, its output and the gradient flowing into it; because the
//! result is an ordinary graph, it can be differentiated again (Hessian-vector products).
//!
//! Conventions at kinks: relu′(0) = 0, |x|′(0) = 0, `max` sends its gradient to the first maximum,
//! `maximum`/`minimum` to the first operand on ties, `clip` passes gradient only inside `[lo, hi]`
//! (bounds included). Comparisons, `sign`, `argmax`, masks and random draws pass no gradient.

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::graph::{key, positions, topo};
use crate::kernels::{Binary, Unary};
use crate::op::{DType, Op, ReduceKind, SoftmaxKind, Type};
use crate::scan::{build, RawScan};
use crate::scan_body::{Part, ScanBody};
use crate::scan_hoist::{hoist_products, summed_product, Stacked};
use crate::scan_save::{extended, keep_for_gradient};
use std::collections::HashMap;

/// Gradients of the scalar `cost` with respect to each of `wrt` (parameters' expressions, inputs,
/// or any node of the graph), as new expressions.
///
/// A `wrt` that the cost does not depend on at all, or that holds integer labels, is an error
/// naming it; one reached only through ops without a gradient (comparisons, `sign`) gets zeros.
///
/// ```
/// use tape::{grad, Expr, Function, Tensor};
/// let x = Expr::input("x", 1);
/// let y = (&x * &x).sum();               // y = Σ x²
/// let dx = grad(&y, &[x.clone()])?.remove(0);
/// let mut f = Function::compile(&[x], &[dx])?;
/// let out = f.call(&[&Tensor::vector(&[1.0, -2.0])])?;
/// assert_eq!(out[0].data(), &[2.0, -4.0]);
/// # Ok::<(), tape::Error>(())
/// ```
pub fn grad(cost: &Expr, wrt: &[Expr]) -> Result<Vec<Expr>> {
    let ty = cost.ty()?;
    if ty.rank() != 0 {
        return Err(Error::Grad {
            reason: format!(
                "the cost must be a scalar (rank 0), but `{}` has shape {ty}",
                cost.op().name()
            ),
            at: cost.location(),
        });
    }
    let order = topo(std::slice::from_ref(cost))?;
    let pos = positions(&order);
    for w in wrt {
        if !pos.contains_key(&key(w)) {
            return Err(Error::Grad {
                reason: format!("the cost does not depend on {}", w.op().name()),
                at: w.location(),
            });
        }
        if w.ty()?.dtype == DType::Label {
            return Err(Error::Grad {
                reason: format!(
                    "{} holds integer labels, which have no gradient",
                    w.op().name()
                ),
                at: w.location(),
            });
        }
    }
    let one = Expr::make(
        Op::Constant(std::sync::Arc::new(crate::Tensor::scalar(1.0))),
        vec![],
        cost.location(),
    );
    let grads = backprop(std::slice::from_ref(cost), &[one], wrt)?;
    Ok(grads
        .into_iter()
        .zip(wrt)
        .map(|(g, w)| g.unwrap_or_else(|| zeros_like(w)))
        .collect())
}

fn zeros_like(w: &Expr) -> Expr {
    Expr::make(
        Op::BroadcastLike { mean: false },
        vec![Expr::scalar(0.0), w.clone()],
        w.location(),
    )
}

/// Reverse-mode differentiation of several `roots` at once, each seeded with its incoming
/// gradient (`seeds[k]` has the type of `roots[k]`): the vector-Jacobian product with respect
/// to each of `wrt`, `None` where none flows. A scan's results reach it through its part nodes:
/// their gradients are collected per part and handed to the scan's rule together.
pub(crate) fn backprop(roots: &[Expr], seeds: &[Expr], wrt: &[Expr]) -> Result<Vec<Option<Expr>>> {
    let order = topo(roots)?;
    let pos = positions(&order);
    let targets: Vec<Option<usize>> = wrt.iter().map(|w| pos.get(&key(w)).copied()).collect();

    // Only nodes between a target and the roots need gradients.
    let n = order.len();
    let mut reach = vec![false; n];
    for &i in targets.iter().flatten() {
        reach[i] = true;
    }
    for i in 0..n {
        if !reach[i] {
            reach[i] = order[i].inputs().iter().any(|x| reach[pos[&key(x)]]);
        }
    }

    let mut pending: Vec<Vec<Expr>> = vec![Vec::new(); n];
    for (r, s) in roots.iter().zip(seeds) {
        pending[pos[&key(r)]].push(s.clone());
    }
    let mut parts: HashMap<usize, Vec<Vec<Expr>>> = HashMap::new();
    let mut total: Vec<Option<Expr>> = vec![None; n];
    for i in (0..n).rev() {
        if !reach[i] {
            continue;
        }
        let node = &order[i];
        let at = node.location();
        let needs: Vec<bool> = node
            .inputs()
            .iter()
            .map(|x| {
                reach[pos[&key(x)]] && x.ty().map(|t| t.dtype == DType::Float).unwrap_or(false)
            })
            .collect();
        let grads = if let Op::Scan(body) = node.op() {
            let Some(per_part) = parts.remove(&i) else {
                continue;
            };
            let gparts: Vec<Option<Expr>> = per_part.into_iter().map(|v| sum(v, at)).collect();
            scan_rule(node, body, &gparts, &needs)?
        } else {
            let Some(g) = sum(std::mem::take(&mut pending[i]), at) else {
                continue;
            };
            total[i] = Some(g.clone());
            if let Op::ScanPart { body, part } = node.op() {
                // The part's gradient waits for its scan, which takes all parts' at once.
                let scan = pos[&key(&node.inputs()[0])];
                parts
                    .entry(scan)
                    .or_insert_with(|| vec![Vec::new(); body.n_parts()])[*part]
                    .push(g);
                continue;
            }
            if !needs.iter().any(|&b| b) {
                continue;
            }
            rule(node, &g, &needs)?
        };
        for ((x, gx), need) in node.inputs().iter().zip(grads).zip(&needs) {
            if let (Some(gx), true) = (gx, need) {
                pending[pos[&key(x)]].push(gx);
            }
        }
    }
    Ok(targets
        .iter()
        .map(|t| t.and_then(|i| total[i].clone()))
        .collect())
}

/// The sum of a node's gradient contributions, `None` if it has none.
fn sum(parts: Vec<Expr>, at: crate::Loc) -> Option<Expr> {
    parts
        .into_iter()
        .reduce(|a, b| Expr::make(Op::Binary(Binary::Add), vec![a, b], at))
}

/// The gradient of a scan (backpropagation through time): a scan over the same steps in the
/// other direction, whose step takes the vector-Jacobian product of the forward step from the
/// recorded entering states and the values the forward scan keeps for it (`scan_save`: its
/// products and nonlinearities are read, not computed again). It carries the gradient of each state backwards and sums
/// each non-sequence's gradient over the steps in a state of its own (an accumulator); each
/// sequence's gradient is a stacked output. `bptt_limit` makes it run over the last steps only.
fn scan_rule(
    node: &Expr,
    body: &std::sync::Arc<ScanBody>,
    gparts: &[Option<Expr>],
    needs: &[bool],
) -> Result<Vec<Option<Expr>>> {
    let at = node.location();
    let refuse = |reason: &str| {
        Err(Error::Grad {
            reason: format!("{}: {reason}", body.name()),
            at,
        })
    };
    if body.limit.is_some() {
        return refuse("a truncated backward pass (bptt_limit) cannot be differentiated again");
    }
    if body.random {
        return refuse(
            "a step with random ops (dropout, noise) has no gradient: the backward pass would draw new numbers",
        );
    }
    let (s, h, w) = (body.n_seqs, body.n_states, body.n_nonseqs);
    let ops = node.inputs();
    let (seq_ph, rest) = body.inputs.split_at(s);
    let (state_ph, nonseq_ph) = rest.split_at(h);
    let (new_states, outs) = body.roots.split_at(h);
    let ph = |name: String, like: &Expr| -> Result<Expr> {
        Ok(Expr::placeholder(&name, like.ty()?.clone(), at))
    };
    let add = |a: Expr, b: Option<Expr>| match b {
        Some(b) => Expr::make(Op::Binary(Binary::Add), vec![a, b], at),
        None => a,
    };

    // The backward step's sequences, each with its placeholder: the forward's, its states
    // entering each step, the incoming gradients of the stacked results, and (below) the values
    // the forward step keeps for it.
    let mut seqs: Vec<(Expr, Expr)> = Vec::new();
    for i in 0..s {
        seqs.push((ops[i].clone(), seq_ph[i].clone()));
    }
    let entering: Vec<usize> = body.recorded_states().collect();
    let grad_states: Vec<Expr> = (0..h)
        .map(|j| ph(format!("scan.grad_state{j}"), &state_ph[j]))
        .collect::<Result<_>>()?;
    let mut cot_roots = new_states.to_vec();
    let mut seeds = grad_states.clone();
    let mut grad_seqs: Vec<(Expr, Expr)> = Vec::new();
    for (l, y) in outs.iter().enumerate() {
        if let Some(g) = &gparts[body.part_index(Part::Output(l))] {
            let gy = ph(format!("scan.grad_output{l}"), y)?;
            cot_roots.push(y.clone());
            seeds.push(gy.clone());
            grad_seqs.push((g.clone(), gy));
        }
    }
    let mut grad_entering: Vec<Option<Expr>> = vec![None; h];
    for &j in &entering {
        if let Some(g) = &gparts[body.part_index(Part::Entering(j))] {
            let gh = ph(format!("scan.grad_entering{j}"), &state_ph[j])?;
            grad_seqs.push((g.clone(), gh.clone()));
            grad_entering[j] = Some(gh);
        }
    }

    // One backward step: the vector-Jacobian product of the forward step.
    let v = backprop(&cot_roots, &seeds, &body.inputs)?;
    let (v_seq, rest) = v.split_at(s);
    let (v_state, v_nonseq) = rest.split_at(h);
    let mut roots: Vec<Expr> = (0..h)
        .map(|j| {
            let g = v_state[j]
                .clone()
                .unwrap_or_else(|| zeros_like(&grad_states[j]));
            add(g, grad_entering[j].clone())
        })
        .collect();
    let acc_for: Vec<usize> = (0..w).filter(|&k| needs[s + h + k]).collect();
    let mut acc_ph = Vec::with_capacity(acc_for.len());
    for &k in &acc_for {
        let acc = ph(format!("scan.grad_non_seq{k}"), &nonseq_ph[k])?;
        roots.push(add(acc.clone(), v_nonseq[k].clone()));
        acc_ph.push(acc);
    }
    let dx_for: Vec<usize> = (0..s).filter(|&i| needs[i]).collect();
    for &i in &dx_for {
        roots.push(v_seq[i].clone().unwrap_or_else(|| zeros_like(&seq_ph[i])));
    }
    // The forward scan stacks the expensive values the backward step reads; the backward step
    // reads them rather than computing the forward step again.
    let kept = keep_for_gradient(body, &roots, at)?;
    let roots = kept.roots;
    let forward = extended(node, body, &kept.values, at)?;
    for j in entering {
        seqs.push((part_of(&forward, Part::Entering(j)), state_ph[j].clone()));
    }
    seqs.extend(grad_seqs);
    for (k, p) in kept.placeholders.into_iter().enumerate() {
        seqs.push((part_of(&forward, Part::Output(outs.len() + k)), p));
    }
    // Per-step products into the accumulators become one product after the scan.
    let n_acc = acc_for.len();
    let hoisted = hoist_products(&roots[h..h + n_acc], &acc_ph, &seqs, &roots[h + n_acc..]);
    let still: Vec<usize> = (0..n_acc).filter(|&a| hoisted.roots[a].is_some()).collect();
    let roots: Vec<Expr> = roots[..h]
        .iter()
        .cloned()
        .chain(hoisted.roots.iter().flatten().cloned())
        .chain(roots[h + n_acc..].iter().cloned())
        .chain(hoisted.new_outputs.iter().cloned())
        .collect();
    let acc_ph: Vec<Expr> = still.iter().map(|&a| acc_ph[a].clone()).collect();

    let reads: std::collections::HashSet<usize> = topo(&roots)?.iter().map(key).collect();
    for j in (0..h).filter(|&j| !body.recorded[j]) {
        if reads.contains(&key(&state_ph[j])) {
            return refuse(&format!(
                "its gradient needs the values of state {j} at every step, which are not recorded"
            ));
        }
    }
    // Sequences the backward step does not read are not copied in at every step; one stays to
    // give the number of steps.
    let first = seqs[0].clone();
    seqs.retain(|(_, p)| reads.contains(&key(p)));
    if seqs.is_empty() {
        seqs.push(first);
    }
    let (seqs, seq_ph_b): (Vec<Expr>, Vec<Expr>) = seqs.into_iter().unzip();

    let mut inits: Vec<Expr> = (0..h)
        .map(|j| match &gparts[body.part_index(Part::Final(j))] {
            Some(g) => g.clone(),
            None => zeros_like(&ops[s + j]),
        })
        .collect();
    inits.extend(still.iter().map(|&a| zeros_like(&ops[s + h + acc_for[a]])));
    let n_still = still.len();
    let parts = build(
        RawScan {
            seqs,
            seq_ph: seq_ph_b,
            inits,
            state_ph: [grad_states, acc_ph].concat(),
            nonseqs: ops[s + h..].to_vec(),
            nonseq_ph: nonseq_ph.to_vec(),
            roots,
            recorded: [body.recorded.clone(), vec![false; n_still]].concat(),
            reverse: !body.reverse,
            limit: body.bptt_limit,
            cut: [vec![true; h], vec![false; n_still]].concat(),
            bptt_limit: None,
        },
        at,
    )?;
    // The backward scan's parts: its final states (the initial states' gradients, then the
    // accumulated non-sequences' ones), its recorded entering states, then its outputs (the
    // sequences' gradients, then the values the hoisted products read).
    let first_output = h + n_still + body.recorded_states().count();
    let value = |x: &Stacked| match x {
        Stacked::Outer(e) => e.clone(),
        Stacked::Output(o) => parts[first_output + o].clone(),
    };
    let mut grads = vec![None; ops.len()];
    for j in (0..h).filter(|&j| needs[s + j]) {
        grads[s + j] = Some(parts[j].clone());
    }
    for (a, &k) in acc_for.iter().enumerate() {
        let accumulated = still
            .iter()
            .position(|&b| b == a)
            .map(|i| parts[h + i].clone());
        let products = hoisted.products[a]
            .iter()
            .map(|(p, wp, q, wq)| summed_product(&value(p), *wp, &value(q), *wq, at));
        let total = accumulated
            .into_iter()
            .chain(products)
            .reduce(|x, y| add(x, Some(y)));
        grads[s + h + k] = Some(total.unwrap_or_else(|| zeros_like(&ops[s + h + k])));
    }
    for (a, &i) in dx_for.iter().enumerate() {
        grads[i] = Some(parts[first_output + a].clone());
    }
    Ok(grads)
}

/// The node reading one result of the scan `node`.
fn part_of(node: &Expr, part: Part) -> Expr {
    let Op::Scan(body) = node.op() else {
        unreachable!("part_of reads scan nodes only")
    };
    let mut inputs = vec![node.clone()];
    inputs.extend(node.inputs().iter().cloned());
    let op = Op::ScanPart {
        body: body.clone(),
        part: body.part_index(part),
    };
    Expr::make(op, inputs, node.location())
}

fn known_equal(a: &Expr, b: &Expr) -> bool {
    match (a.ty(), b.ty()) {
        (Ok(x), Ok(y)) => x.concrete().is_some() && x.dims == y.dims,
        _ => false,
    }
}

/// Whether `x` keeps its shape when broadcast against `other` in every case the static types
/// allow: then the gradient needs no `sum_like` (which would also keep the forward value alive and
/// block fusions).
fn never_stretched(x: &Expr, other: &Expr) -> bool {
    let (Ok(x), Ok(o)) = (x.ty(), other.ty()) else {
        return false;
    };
    if o.rank() > x.rank() {
        return false;
    }
    let offset = x.rank() - o.rank();
    o.dims
        .iter()
        .enumerate()
        .all(|(i, &d)| match (x.dims[i + offset], d) {
            (_, Some(1)) => true,
            (Some(k), _) => k != 1,
            (None, _) => false,
        })
}

fn static_len(t: Result<&Type>, axis: usize, at: crate::Loc, what: &str) -> Result<usize> {
    t.ok().and_then(|t| t.dims.get(axis).copied().flatten()).ok_or_else(|| Error::Grad {
        reason: format!("the gradient of {what} needs the size of axis {axis} known when the graph is built"),
        at,
    })
}

/// The gradient rule of `node`'s op: one optional gradient expression per input, computed only
/// where `needs` says so.
fn rule(node: &Expr, g: &Expr, needs: &[bool]) -> Result<Vec<Option<Expr>>> {
    let at = node.location();
    let x = node.inputs();
    let y = node;
    let mk = |op: Op, ins: Vec<Expr>| Expr::make(op, ins, at);
    let un = |u: Unary, a: &Expr| mk(Op::Unary(u), vec![a.clone()]);
    let bin = |b: Binary, a: &Expr, c: &Expr| mk(Op::Binary(b), vec![a.clone(), c.clone()]);
    let mul = |a: &Expr, c: &Expr| bin(Binary::Mul, a, c);
    let scalar = |v: f32| {
        mk(
            Op::Constant(std::sync::Arc::new(crate::Tensor::scalar(v))),
            vec![],
        )
    };
    // The gradient of a broadcast operand is summed back to the operand's own shape.
    let sum_like = |gx: Expr, like: &Expr| {
        if known_equal(&gx, like) {
            gx
        } else {
            mk(Op::SumLike { mean: false }, vec![gx, like.clone()])
        }
    };
    let one = |gx: Expr| vec![Some(gx)];
    Ok(match node.op() {
        Op::Input(_) | Op::Constant(_) | Op::Param(_) => vec![],
        Op::Unary(u) => one(match u {
            Unary::Neg => un(Unary::Neg, g),
            Unary::Exp => mul(g, y),
            Unary::Log => bin(Binary::Div, g, &x[0]),
            Unary::Sqrt => bin(Binary::Div, &mul(g, &scalar(0.5)), y),
            Unary::Abs => mul(g, &un(Unary::Sign, &x[0])),
            Unary::Sign => return Ok(vec![None]),
            Unary::Square => mul(g, &mul(&x[0], &scalar(2.0))),
            Unary::Recip => un(Unary::Neg, &mul(g, &un(Unary::Square, y))),
            Unary::Sigmoid => mul(g, &mul(y, &bin(Binary::Sub, &scalar(1.0), y))),
            Unary::Tanh => mul(g, &bin(Binary::Sub, &scalar(1.0), &un(Unary::Square, y))),
            Unary::Relu => mul(g, &bin(Binary::Gt, &x[0], &scalar(0.0))),
            Unary::Softplus => mul(g, &un(Unary::Sigmoid, &x[0])),
            Unary::Softsign => {
                let denom = bin(Binary::Add, &scalar(1.0), &un(Unary::Abs, &x[0]));
                mul(g, &un(Unary::Square, &un(Unary::Recip, &denom)))
            }
        }),
        Op::Binary(b) => {
            let (a, c) = (&x[0], &x[1]);
            let (ga, gc) = match b {
                Binary::Add => (g.clone(), g.clone()),
                Binary::Sub => (g.clone(), un(Unary::Neg, g)),
                Binary::Mul => (mul(g, c), mul(g, a)),
                Binary::Div => (
                    bin(Binary::Div, g, c),
                    un(Unary::Neg, &bin(Binary::Div, &mul(g, y), c)),
                ),
                Binary::Pow => {
                    let ga = if needs[0] {
                        mul(
                            g,
                            &mul(c, &bin(Binary::Pow, a, &bin(Binary::Sub, c, &scalar(1.0)))),
                        )
                    } else {
                        g.clone()
                    };
                    let gc = if needs[1] {
                        mul(g, &mul(y, &un(Unary::Log, a)))
                    } else {
                        g.clone()
                    };
                    (ga, gc)
                }
                Binary::Maximum => (
                    mul(g, &bin(Binary::Ge, a, c)),
                    mul(g, &bin(Binary::Lt, a, c)),
                ),
                Binary::Minimum => (
                    mul(g, &bin(Binary::Le, a, c)),
                    mul(g, &bin(Binary::Gt, a, c)),
                ),
                Binary::Gt | Binary::Ge | Binary::Lt | Binary::Le | Binary::Eq | Binary::Ne => {
                    return Ok(vec![None, None]);
                }
            };
            let reduce = |gx: Expr, x: &Expr, other: &Expr| {
                if never_stretched(x, other) {
                    gx
                } else {
                    sum_like(gx, x)
                }
            };
            vec![
                needs[0].then(|| reduce(ga, a, c)),
                needs[1].then(|| reduce(gc, c, a)),
            ]
        }
        Op::Select => {
            let zero = scalar(0.0);
            let ga = needs[1].then(|| {
                sum_like(
                    mk(Op::Select, vec![x[0].clone(), g.clone(), zero.clone()]),
                    &x[1],
                )
            });
            let gb = needs[2]
                .then(|| sum_like(mk(Op::Select, vec![x[0].clone(), zero, g.clone()]), &x[2]));
            vec![None, ga, gb]
        }
        Op::Clip { lo, hi } => {
            let inside = mul(
                &bin(Binary::Ge, &x[0], &scalar(*lo)),
                &bin(Binary::Le, &x[0], &scalar(*hi)),
            );
            one(mul(g, &inside))
        }
        Op::MatMul { ta, tb } => {
            let mm = |ta: bool, tb: bool, a: &Expr, b: &Expr| {
                mk(Op::MatMul { ta, tb }, vec![a.clone(), b.clone()])
            };
            let (a, b) = (&x[0], &x[1]);
            let (ga, gb) = match (ta, tb) {
                (false, false) => (mm(false, true, g, b), mm(true, false, a, g)),
                (true, false) => (mm(false, true, b, g), mm(false, false, a, g)),
                (false, true) => (mm(false, false, g, b), mm(true, false, g, a)),
                (true, true) => (mm(true, true, b, g), mm(true, true, g, a)),
            };
            vec![needs[0].then_some(ga), needs[1].then_some(gb)]
        }
        Op::GemmBias { .. } | Op::Axpy { .. } | Op::ReluGrad | Op::SoftmaxXentGrad => {
            return Err(Error::Grad {
                reason: format!(
                    "{} is made by the compiler and has no gradient rule",
                    node.op().name()
                ),
                at,
            });
        }
        Op::Transpose => one(mk(Op::Transpose, vec![g.clone()])),
        Op::Reshape(_) | Op::Unsqueeze(_) => {
            one(mk(Op::ReshapeLike, vec![g.clone(), x[0].clone()]))
        }
        Op::ReshapeLike => vec![
            Some(mk(Op::ReshapeLike, vec![g.clone(), x[0].clone()])),
            None,
        ],
        Op::Reduce {
            kind,
            axis,
            keepdims,
        } => {
            let g = match axis {
                Some(a) if !keepdims => mk(Op::Unsqueeze(*a), vec![g.clone()]),
                _ => g.clone(),
            };
            one(match kind {
                ReduceKind::Sum => mk(Op::BroadcastLike { mean: false }, vec![g, x[0].clone()]),
                ReduceKind::Mean => mk(Op::BroadcastLike { mean: true }, vec![g, x[0].clone()]),
                ReduceKind::Max => {
                    let mask = match axis {
                        Some(a) => mk(Op::MaxMask(*a), vec![x[0].clone()]),
                        None => {
                            let flat = mk(Op::Reshape([-1].as_slice().into()), vec![x[0].clone()]);
                            mk(
                                Op::ReshapeLike,
                                vec![mk(Op::MaxMask(0), vec![flat]), x[0].clone()],
                            )
                        }
                    };
                    mul(&mask, &g)
                }
            })
        }
        Op::BroadcastLike { mean } => vec![
            Some(mk(
                Op::SumLike { mean: *mean },
                vec![g.clone(), x[0].clone()],
            )),
            None,
        ],
        Op::SumLike { mean } => vec![
            Some(mk(
                Op::BroadcastLike { mean: *mean },
                vec![g.clone(), x[0].clone()],
            )),
            None,
        ],
        Op::MaxMask(_) | Op::Argmax | Op::OneHot(_) | Op::Dropout { .. } | Op::Noise { .. } => {
            vec![None; x.len()]
        }
        Op::Softmax(kind) => {
            let sum_last = |e: &Expr| {
                mk(
                    Op::Reduce {
                        kind: ReduceKind::Sum,
                        axis: Some(e.rank() - 1),
                        keepdims: true,
                    },
                    vec![e.clone()],
                )
            };
            one(match kind {
                SoftmaxKind::Softmax => mul(y, &bin(Binary::Sub, g, &sum_last(&mul(g, y)))),
                SoftmaxKind::LogSoftmax => {
                    bin(Binary::Sub, g, &mul(&un(Unary::Exp, y), &sum_last(g)))
                }
                SoftmaxKind::LogSumExp => {
                    let sm = mk(Op::Softmax(SoftmaxKind::Softmax), vec![x[0].clone()]);
                    mul(&sm, &mk(Op::Unsqueeze(g.rank()), vec![g.clone()]))
                }
            })
        }
        Op::Concat(axis) => {
            let mut start = 0;
            let mut out = Vec::with_capacity(x.len());
            for (part, need) in x.iter().zip(needs) {
                let len = static_len(part.ty(), *axis, at, "concat")?;
                out.push(need.then(|| {
                    mk(
                        Op::Slice {
                            axis: *axis,
                            start,
                            len,
                        },
                        vec![g.clone()],
                    )
                }));
                start += len;
            }
            out
        }
        Op::Slice { axis, start, .. } => one(mk(
            Op::SliceGrad {
                axis: *axis,
                start: *start,
            },
            vec![g.clone(), x[0].clone()],
        )),
        Op::SliceGrad { axis, start } => {
            let len = static_len(x[0].ty(), *axis, at, "slice_grad")?;
            vec![
                Some(mk(
                    Op::Slice {
                        axis: *axis,
                        start: *start,
                        len,
                    },
                    vec![g.clone()],
                )),
                None,
            ]
        }
        Op::Pick => vec![
            Some(mk(Op::Scatter, vec![g.clone(), x[1].clone(), x[0].clone()])),
            None,
        ],
        Op::Scatter => vec![
            Some(mk(Op::Pick, vec![g.clone(), x[1].clone()])),
            None,
            None,
        ],
        Op::Scan(_) | Op::ScanPart { .. } => {
            return Err(Error::Grad {
                reason: format!(
                    "{} is differentiated through its parts, together",
                    node.op().name()
                ),
                at,
            });
        }
        Op::Custom(c) => {
            let gs = c.grad(x, y, g)?;
            if gs.len() != x.len() {
                return Err(Error::Op {
                    op: c.name().to_string(),
                    message: format!(
                        "grad returned {} gradients for {} inputs",
                        gs.len(),
                        x.len()
                    ),
                    at,
                });
            }
            check_custom_grads(c.name(), x, &gs, at)?;
            gs
        }
    })
}

/// A custom op's gradient must have its input's type: the same rank and, where both sizes are
/// known before running, the same sizes. Without this check a wrong shape would be broadcast or
/// truncated silently further down the graph.
fn check_custom_grads(name: &str, x: &[Expr], gs: &[Option<Expr>], at: crate::Loc) -> Result<()> {
    for (k, (xi, gi)) in x.iter().zip(gs).enumerate() {
        let Some(gi) = gi else { continue };
        let gt = gi.ty()?;
        let Ok(xt) = xi.ty() else { continue };
        let fits = gt.dtype == DType::Float
            && gt.rank() == xt.rank()
            && gt
                .dims
                .iter()
                .zip(xt.dims.iter())
                .all(|(a, b)| a.zip(*b).is_none_or(|(a, b)| a == b));
        if !fits {
            return Err(Error::Op {
                op: name.to_string(),
                message: format!(
                    "grad returned a gradient of dims {:?} for input {k} of dims {:?}; \
                     it must have the input's shape",
                    gt.dims, xt.dims
                ),
                at,
            });
        }
    }
    Ok(())
}
