//! Graph rewrites run once at compile time, on the flat graph: stable forms
//! (`log(softmax(x))` → `log_softmax(x)`), transposes folded into matrix products, trivial
//! arithmetic and double transposes removed, constants folded, common subexpressions merged,
//! bias-adds (and a ReLU after them) fused into the matrix product that feeds them, the softmax
//! cross-entropy gradient made one pass over the forward softmax, a scan merged with its
//! extensions made by its gradient, and dead nodes dropped. Random nodes are never merged or
//! folded.

use crate::error::Result;
use crate::ir::{INode, Program};
use crate::kernels::{Binary, Unary};
use crate::op::{CseKey, Op, SoftmaxKind, Type};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Rewrites `ir` (in topological order) and returns it with the roots' new positions.
pub(crate) fn optimize(mut ir: Vec<INode>, roots: Vec<usize>) -> Result<(Vec<INode>, Vec<usize>)> {
    // A scan and the copy of it that a gradient extended with kept values run as one loop.
    crate::scan_save::merge_extended(&mut ir);
    let mut out: Vec<INode> = Vec::with_capacity(ir.len());
    let mut remap = vec![0usize; ir.len()];
    let mut seen: HashMap<(CseKey, Vec<usize>), usize> = HashMap::new();
    for (i, mut node) in ir.into_iter().enumerate() {
        node.inputs = node.inputs.iter().map(|&j| remap[j]).collect();
        if let Some(existing) = forward_to_input(&node, &out) {
            remap[i] = existing;
            continue;
        }
        rewrite_in_place(&mut node, &out);
        if let Some((g, x)) = relu_grad_parts(&node, &out) {
            node.op = Op::ReluGrad;
            node.inputs = vec![g, x];
        }
        if let Some((z, e, g, labels)) = xent_grad_parts(&node, &out) {
            let p = forward_softmax(z, &seen).unwrap_or(e);
            node.op = Op::SoftmaxXentGrad;
            node.inputs = vec![p, g, labels];
        }
        if foldable(&node, &out) {
            node = fold(node, &out)?;
        }
        if let Some(k) = node.op.cse_key() {
            let key = (k, node.inputs.clone());
            if let Some(&j) = seen.get(&key) {
                remap[i] = j;
                continue;
            }
            seen.insert(key, out.len());
        }
        remap[i] = out.len();
        out.push(node);
    }
    let roots: Vec<usize> = roots.iter().map(|&r| remap[r]).collect();
    // The fusions below count readers, so drop those the rewrites above orphaned first (the
    // `x > 0` mask a `relu_grad` replaced still reads the pre-activation).
    // Before dead code goes, so the partial sums and slice gradients it orphans go too.
    concat_slice_grads(&mut out, &roots);
    let (mut out, roots) = dead_code(out, roots);
    fuse_bias(&mut out, &roots);
    fuse_relu(&mut out, &roots);
    fuse_axpy(&mut out, &roots);
    Ok(dead_code(out, roots))
}

fn scalar_const(node: &INode) -> Option<f32> {
    match &node.op {
        Op::Constant(t) if t.rank() == 0 => t.item(),
        _ => None,
    }
}

fn same_known(a: &Type, b: &Type) -> bool {
    a.concrete().is_some() && a.dims == b.dims
}

/// Nodes that compute exactly one of their inputs: `x * 1`, `x + 0`, `-(-x)`, a reshape to the
/// same known shape.
fn forward_to_input(node: &INode, out: &[INode]) -> Option<usize> {
    let ins = &node.inputs;
    match &node.op {
        Op::Binary(b @ (Binary::Mul | Binary::Add | Binary::Sub | Binary::Div)) => {
            let neutral = if matches!(b, Binary::Mul | Binary::Div) {
                1.0
            } else {
                0.0
            };
            let (x, c) = (ins[0], ins[1]);
            if scalar_const(&out[c]) == Some(neutral) && out[x].ty.dims == node.ty.dims {
                return Some(x);
            }
            if matches!(b, Binary::Mul | Binary::Add)
                && scalar_const(&out[x]) == Some(neutral)
                && out[c].ty.dims == node.ty.dims
            {
                return Some(c);
            }
            None
        }
        Op::Unary(Unary::Neg) => match &out[ins[0]].op {
            Op::Unary(Unary::Neg) => Some(out[ins[0]].inputs[0]),
            _ => None,
        },
        Op::Transpose => match &out[ins[0]].op {
            Op::Transpose => Some(out[ins[0]].inputs[0]),
            _ => None,
        },
        Op::ReshapeLike | Op::Reshape(_) if same_known(&out[ins[0]].ty, &node.ty) => Some(ins[0]),
        _ => None,
    }
}

fn rewrite_in_place(node: &mut INode, out: &[INode]) {
    match &node.op {
        Op::Unary(Unary::Log) => {
            let inner = &out[node.inputs[0]];
            if let Op::Softmax(SoftmaxKind::Softmax) = inner.op {
                node.op = Op::Softmax(SoftmaxKind::LogSoftmax);
                node.inputs = inner.inputs.clone();
            }
        }
        Op::MatMul { ta, tb } => {
            let (mut ta, mut tb) = (*ta, *tb);
            for (k, flag) in [(0, &mut ta), (1, &mut tb)] {
                let inner = &out[node.inputs[k]];
                if let Op::Transpose = inner.op {
                    *flag = !*flag;
                    node.inputs[k] = inner.inputs[0];
                }
            }
            node.op = Op::MatMul { ta, tb };
        }
        _ => {}
    }
}

/// The operands `(g, x)` when `node` is `g · (x > 0)` (the ReLU gradient as differentiation writes
/// it, in either order) with `g`, `x` and the result all of one rank.
fn relu_grad_parts(node: &INode, out: &[INode]) -> Option<(usize, usize)> {
    let Op::Binary(Binary::Mul) = node.op else {
        return None;
    };
    let mask_of = |c: usize| match out[c].op {
        Op::Binary(Binary::Gt) if scalar_const(&out[out[c].inputs[1]]) == Some(0.0) => {
            Some(out[c].inputs[0])
        }
        _ => None,
    };
    let (p, q) = (node.inputs[0], node.inputs[1]);
    let (g, x) = match (mask_of(q), mask_of(p)) {
        (Some(x), _) => (p, x),
        (None, Some(x)) => (q, x),
        (None, None) => return None,
    };
    // Broadcasting is still allowed (the kernel falls back to mask-then-multiply), but only
    // ranks equal to the result's are taken, the shape of every ReLU gradient.
    let rank = node.ty.dims.len();
    (out[g].ty.dims.len() == rank && out[x].ty.dims.len() == rank).then_some((g, x))
}

/// The operands `(logits, exp(log_softmax(logits)), g, labels)` when `node` is the gradient of `pick(log_softmax(z), labels)`
/// as differentiation writes it, `scatter(g) − exp(log_softmax(z)) · sum_last(scatter(g))`.
fn xent_grad_parts(node: &INode, out: &[INode]) -> Option<(usize, usize, usize, usize)> {
    let Op::Binary(Binary::Sub) = node.op else {
        return None;
    };
    let (a, m) = (node.inputs[0], node.inputs[1]);
    let Op::Scatter = out[a].op else { return None };
    let (g, labels, l) = (out[a].inputs[0], out[a].inputs[1], out[a].inputs[2]);
    let Op::Softmax(SoftmaxKind::LogSoftmax) = out[l].op else {
        return None;
    };
    let z = out[l].inputs[0];
    let Op::Binary(Binary::Mul) = out[m].op else {
        return None;
    };
    let is_exp_l = |e: usize| matches!(out[e].op, Op::Unary(Unary::Exp)) && out[e].inputs[0] == l;
    let is_row_sum = |r: usize| {
        matches!(
            out[r].op,
            Op::Reduce {
                kind: crate::kernels::ReduceKind::Sum,
                axis: Some(1),
                keepdims: true
            }
        ) && out[r].inputs[0] == a
    };
    let (e, r) = (out[m].inputs[0], out[m].inputs[1]);
    let e = match (is_exp_l(e) && is_row_sum(r), is_exp_l(r) && is_row_sum(e)) {
        (true, _) => e,
        (_, true) => r,
        _ => return None,
    };
    let shapes = out[z].ty.dims.len() == 2 && node.ty.dims == out[a].ty.dims;
    shapes.then_some((z, e, g, labels))
}

/// The position of a `softmax(z)` the graph already computes (for accuracy or the output), so
/// that the gradient reads it rather than exponentiating the log-softmax again; without one, the
/// gradient keeps its own `exp(log_softmax(z))` and its values stay those of the unfused kernels.
fn forward_softmax(z: usize, seen: &HashMap<(CseKey, Vec<usize>), usize>) -> Option<usize> {
    let key = Op::Softmax(SoftmaxKind::Softmax).cse_key()?;
    seen.get(&(key, vec![z])).copied()
}

fn foldable(node: &INode, out: &[INode]) -> bool {
    !node.inputs.is_empty()
        && !node.op.is_random()
        && !matches!(node.op, Op::Custom(_) | Op::Scan(_) | Op::ScanPart { .. })
        && node
            .inputs
            .iter()
            .all(|&j| matches!(out[j].op, Op::Constant(_)))
}

/// Evaluates a node whose inputs are all constants, by compiling and running it on its own.
fn fold(node: INode, out: &[INode]) -> Result<INode> {
    let mut mini: Vec<INode> = node.inputs.iter().map(|&j| out[j].clone()).collect();
    let k = mini.len();
    mini.push(INode {
        inputs: (0..k).collect(),
        ..node.clone()
    });
    let program = Program::new(Vec::new(), mini, vec![k], &[])?;
    let mut plan = crate::plan::build(&program, Vec::new())?;
    crate::exec::run(&program, &mut plan, &mut program.new_rngs(), &[])?;
    let value: Tensor = plan.output(0).to_tensor();
    Ok(INode {
        ty: Type::known(value.shape()),
        op: Op::Constant(Arc::new(value)),
        inputs: Vec::new(),
        at: node.at,
    })
}

/// `matmul(a, b) + bias` with a bias row → one `gemm_bias` that writes the bias into the output
/// first and accumulates the product onto it, when nothing else needs the bare product.
fn fuse_bias(ir: &mut [INode], roots: &[usize]) {
    let uses = use_counts(ir, roots);
    for i in 0..ir.len() {
        if !matches!(ir[i].op, Op::Binary(Binary::Add)) {
            continue;
        }
        for (mm, bias) in [
            (ir[i].inputs[0], ir[i].inputs[1]),
            (ir[i].inputs[1], ir[i].inputs[0]),
        ] {
            let Op::MatMul { ta, tb } = ir[mm].op else {
                continue;
            };
            let bd = &ir[bias].ty.dims;
            let n = ir[mm].ty.dims[1];
            let row = match bd.len() {
                1 => bd[0].is_some() && bd[0] == n,
                2 => bd[0] == Some(1) && bd[1].is_some() && bd[1] == n,
                _ => false,
            };
            if uses[mm] == 1 && row && ir[i].ty.dims == ir[mm].ty.dims {
                let (a, b) = (ir[mm].inputs[0], ir[mm].inputs[1]);
                ir[i].op = Op::GemmBias {
                    ta,
                    tb,
                    relu: false,
                };
                ir[i].inputs = vec![a, b, bias];
                break;
            }
        }
    }
}

/// `relu(gemm_bias(a, b, bias))` → one `gemm_bias_relu` whose epilogue applies the ReLU, when
/// the only other readers of the pre-activation are ReLU gradients using it as their mask: those
/// read the ReLU's output instead, since `relu(x) > 0` exactly when `x > 0` (NaN included), so a
/// training graph fuses as well as an inference one.
fn fuse_relu(ir: &mut [INode], roots: &[usize]) {
    let uses = use_counts(ir, roots);
    for r in 0..ir.len() {
        if !matches!(ir[r].op, Op::Unary(Unary::Relu)) {
            continue;
        }
        let p = ir[r].inputs[0];
        let Op::GemmBias {
            ta,
            tb,
            relu: false,
        } = ir[p].op
        else {
            continue;
        };
        if roots.contains(&p) || ir[p].ty.dims != ir[r].ty.dims {
            continue;
        }
        // Every reader of p other than r, each of which must be a later ReLU gradient reading p
        // only as its mask.
        let masks: Vec<usize> = (0..ir.len())
            .filter(|&q| q != r && ir[q].inputs.contains(&p))
            .collect();
        let all_masks = masks.iter().all(|&q| {
            q > r
                && matches!(ir[q].op, Op::ReluGrad)
                && ir[q].inputs[0] != p
                && ir[q].inputs[1] == p
        });
        if !all_masks || masks.len() + 1 != uses[p] {
            continue;
        }
        for q in masks {
            ir[q].inputs[1] = r;
        }
        ir[r].op = Op::GemmBias { ta, tb, relu: true };
        ir[r].inputs = ir[p].inputs.clone();
    }
}

/// `a ± b·c` (or `a ± c·b`, or `b·c + a`) with a scalar constant `c` → one `axpy(±c)(a, b)`, when
/// nothing else needs the product.
fn fuse_axpy(ir: &mut [INode], roots: &[usize]) {
    let uses = use_counts(ir, roots);
    for i in 0..ir.len() {
        let sign = match ir[i].op {
            Op::Binary(Binary::Add) => 1.0,
            Op::Binary(Binary::Sub) => -1.0,
            _ => continue,
        };
        let sides: &[(usize, usize)] = if sign > 0.0 {
            &[(0, 1), (1, 0)]
        } else {
            &[(0, 1)]
        };
        for &(ka, km) in sides {
            let (a, m) = (ir[i].inputs[ka], ir[i].inputs[km]);
            if uses[m] != 1 || !matches!(ir[m].op, Op::Binary(Binary::Mul)) {
                continue;
            }
            let (x, y) = (ir[m].inputs[0], ir[m].inputs[1]);
            let (b, c) = match (scalar_const(&ir[x]), scalar_const(&ir[y])) {
                (_, Some(c)) => (x, c),
                (Some(c), None) => (y, c),
                (None, None) => continue,
            };
            // Only where both operands already have the result's shape (parameter updates): a
            // broadcast operand would stop the fused op from running in place.
            if ir[b].ty.dims != ir[m].ty.dims || ir[a].ty.dims != ir[i].ty.dims {
                continue;
            }
            ir[i].op = Op::Axpy { alpha: sign * c };
            ir[i].inputs = vec![a, b];
            break;
        }
    }
}

/// `Σ_k slice_grad(g_k, at = s_k)` whose slices tile their target's axis exactly (the gradient
/// of a value split into pieces, an LSTM's gates) → one `concat(g_k)` in order of `s_k`: one pass
/// writing each element once, instead of zero-filling and adding a full-size buffer per piece.
/// Each element of the sum is its piece's value plus exact zeros, so the values are the same
/// (up to the sign of a zero: `-0 + 0` is `+0`, the concatenation keeps `-0`). The axis' size
/// must be known when the graph is compiled (a scan's step knows it).
fn concat_slice_grads(ir: &mut [INode], roots: &[usize]) {
    let uses = use_counts(ir, roots);
    for i in 0..ir.len() {
        if !matches!(ir[i].op, Op::Binary(Binary::Add)) {
            continue;
        }
        let Some(mut pieces) = slice_grad_terms(ir, &uses, i) else {
            continue;
        };
        let Op::SliceGrad { axis, .. } = ir[pieces[0].1].op else {
            continue;
        };
        let like = ir[pieces[0].1].inputs[1];
        let same_target = pieces.iter().all(|&(_, sg)| {
            matches!(ir[sg].op, Op::SliceGrad { axis: a, .. } if a == axis)
                && ir[ir[sg].inputs[1]].ty.dims == ir[like].ty.dims
        });
        let dims = &ir[i].ty.dims;
        if !same_target || *dims != ir[like].ty.dims || axis >= dims.len() {
            continue;
        }
        let Some(size) = dims[axis] else { continue };
        pieces.sort_by_key(|&(start, _)| start);
        // Tiled: each piece starts where the previous ended, the last ends at the axis' end.
        let mut end = 0;
        let tiled = pieces.iter().all(|&(start, sg)| {
            let g = ir[sg].inputs[0];
            let len = ir[g].ty.dims.get(axis).copied().flatten();
            let ok = start == end && len.is_some();
            end = start + len.unwrap_or(0);
            ok
        });
        if !tiled || end != size {
            continue;
        }
        ir[i].op = Op::Concat(axis);
        ir[i].inputs = pieces.iter().map(|&(_, sg)| ir[sg].inputs[0]).collect();
    }
}

/// The terms of the sum rooted at `i` when every one is a slice gradient: `(start, node)` each.
/// The sum's inner additions must be read by nothing else (the rewrite drops them).
fn slice_grad_terms(ir: &[INode], uses: &[usize], i: usize) -> Option<Vec<(usize, usize)>> {
    let mut terms = Vec::new();
    let mut todo = vec![i];
    while let Some(j) = todo.pop() {
        match ir[j].op {
            Op::Binary(Binary::Add) if j == i || uses[j] == 1 => {
                // Same-shape operands only: a broadcast addition is not a piece of the sum.
                if ir[j].inputs.iter().any(|&x| ir[x].ty.dims != ir[i].ty.dims) {
                    return None;
                }
                todo.extend(ir[j].inputs.iter().copied());
            }
            Op::SliceGrad { start, .. } => terms.push((start, j)),
            _ => return None,
        }
    }
    (terms.len() > 1).then_some(terms)
}

fn use_counts(ir: &[INode], roots: &[usize]) -> Vec<usize> {
    let mut uses = vec![0usize; ir.len()];
    for node in ir {
        for &j in &node.inputs {
            uses[j] += 1;
        }
    }
    for &r in roots {
        uses[r] += 1;
    }
    uses
}

fn dead_code(ir: Vec<INode>, roots: Vec<usize>) -> (Vec<INode>, Vec<usize>) {
    let mut live = vec![false; ir.len()];
    for &r in &roots {
        live[r] = true;
    }
    for i in (0..ir.len()).rev() {
        if live[i] {
            for &j in &ir[i].inputs {
                live[j] = true;
            }
        }
    }
    let mut remap = vec![usize::MAX; ir.len()];
    let mut out = Vec::with_capacity(ir.len());
    for (i, mut node) in ir.into_iter().enumerate() {
        if live[i] {
            node.inputs = node.inputs.iter().map(|&j| remap[j]).collect();
            remap[i] = out.len();
            out.push(node);
        }
    }
    (out, roots.iter().map(|&r| remap[r]).collect())
}

#[cfg(test)]
mod tests {
    use crate::testing::{labels, normal};
    use crate::{grad, Expr, Function, Tensor};

    /// The gradient of mean softmax cross-entropy with respect to the logits, in f64:
    /// `(softmax(z) − onehot(y)) / rows`.
    fn xent_grad_reference(z: &Tensor, y: &Tensor) -> Vec<f64> {
        let (rows, cols) = (z.shape()[0], z.shape()[1]);
        let mut out = Vec::with_capacity(rows * cols);
        for (row, &label) in z.data().chunks_exact(cols).zip(y.data()) {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            for (j, ej) in e.iter().enumerate() {
                let hot = if j == label as usize { 1.0 } else { 0.0 };
                out.push((ej / s - hot) / rows as f64);
            }
        }
        out
    }

    #[test]
    fn softmax_xent_gradient_is_one_instruction_and_matches_the_formula() {
        let z = Expr::input("z", 2);
        let y = Expr::labels("y");
        let loss = -(z.log_softmax().pick(&y)).mean();
        let gz = grad(&loss, std::slice::from_ref(&z)).expect("grad");
        // The softmax is also an output, as a classifier's accuracy and output read it.
        let outs = [loss.clone(), z.softmax(), gz[0].clone()];
        let mut f = Function::compile(&[z.clone(), y.clone()], &outs).expect("compile");
        let (zv, yv) = (normal(&[7, 5], 3), labels(7, 5));
        f.run(&[zv.view(), yv.view()]).expect("run");
        let plan = f.debug_plan();
        assert!(plan.contains("softmax_xent_grad"), "{plan}");
        assert!(
            !plan.contains("scatter") && !plan.contains(" exp "),
            "{plan}"
        );
        let got = f.output(2).expect("gradient").data().to_vec();
        crate::testing::assert_close(&got, &xent_grad_reference(&zv, &yv), 1e-5, 1e-7, "dz");
    }

    #[test]
    fn without_a_softmax_output_the_fused_gradient_keeps_the_unfused_values() {
        let z = Expr::input("z", 2);
        let y = Expr::labels("y");
        let loss = -(z.log_softmax().pick(&y)).mean();
        let gz = grad(&loss, std::slice::from_ref(&z)).expect("grad");
        let mut f = Function::compile(&[z.clone(), y.clone()], &gz).expect("compile");
        let (zv, yv) = (normal(&[6, 9], 4), labels(6, 9));
        f.run(&[zv.view(), yv.view()]).expect("run");
        let plan = f.debug_plan();
        assert!(
            plan.contains("softmax_xent_grad") && plan.contains(" exp "),
            "{plan}"
        );
        // By hand, in f32 with the unfused roundings: e = exp(log_softmax), s − e·g.
        let (rows, cols) = (6, 9);
        let g = -(1.0f32 / rows as f32);
        let mut lsm = vec![0.0f32; rows * cols];
        crate::kernels::log_softmax(zv.data(), rows, cols, &mut lsm);
        let want: Vec<f32> = lsm
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let s = if i % cols == yv.data()[i / cols] as usize {
                    g
                } else {
                    0.0
                };
                s - crate::kernels::unary_scalar(crate::kernels::Unary::Exp, l) * g
            })
            .collect();
        assert_eq!(f.output(0).expect("gradient").data(), &want[..]);
    }

    /// The gradient of `Σ_k c_k Σ p_k²` over the pieces `p_k` of `x` split by columns, in f64:
    /// `2 c_k x` in piece k's columns, 0 in columns no piece covers.
    fn split_squares_grad(x: &Tensor, widths: &[usize], c: &[f64]) -> Vec<f64> {
        let cols = x.shape()[1];
        let piece: Vec<Option<usize>> = (0..cols)
            .map(|j| {
                let mut end = 0;
                widths.iter().position(|&w| {
                    end += w;
                    j < end
                })
            })
            .collect();
        x.data()
            .iter()
            .enumerate()
            .map(|(i, &v)| piece[i % cols].map_or(0.0, |k| 2.0 * c[k] * f64::from(v)))
            .collect()
    }

    #[test]
    fn the_gradient_of_a_split_value_is_one_concatenation() {
        for (widths, tiled) in [(&[2usize, 4, 1][..], true), (&[2, 4][..], false)] {
            // The axis' size must be known when the graph is compiled, to see the tiling.
            let x = Expr::input_with_dims("x", &[None, Some(7)]);
            let c = [1.0, 2.0, 3.0];
            let loss = x
                .split(1, widths)
                .iter()
                .zip(c)
                .map(|(p, ck)| (p * p).sum() * ck as f32)
                .reduce(|a, b| a + b)
                .expect("pieces");
            let gx = grad(&loss, std::slice::from_ref(&x)).expect("grad");
            let mut f = Function::compile(std::slice::from_ref(&x), &gx).expect("compile");
            let xv = normal(&[3, 7], 8);
            f.run(&[xv.view()]).expect("run");
            let plan = f.debug_plan();
            // Pieces covering the whole axis: one concat, no zero-filled slice gradients; a
            // column no piece covers needs the zeros, so the sum stays.
            assert_eq!(plan.contains("slice_grad"), !tiled, "{plan}");
            assert_eq!(plan.contains("concat"), tiled, "{plan}");
            let got = f.output(0).expect("gradient").data().to_vec();
            let want = split_squares_grad(&xv, widths, &c);
            crate::testing::assert_close(&got, &want, 1e-6, 1e-7, "dx");
        }
    }

    /// `g · (x > 0)` by hand: the 0/1 mask multiplied in, as the unfused kernels do.
    fn relu_grad_reference(g: &[f32], x: &[f32]) -> Vec<f32> {
        g.iter()
            .zip(x)
            .map(|(&gv, &xv)| gv * if xv > 0.0 { 1.0 } else { 0.0 })
            .collect()
    }

    #[test]
    fn relu_gradient_is_one_instruction_and_bit_identical() {
        let x = Expr::input("x", 2);
        let w = Expr::input("w", 2);
        let loss = (x.relu() * &w).sum();
        let gx = grad(&loss, std::slice::from_ref(&x)).expect("grad");
        let mut f = Function::compile(&[x.clone(), w.clone()], &gx).expect("compile");
        let mut xv = normal(&[3, 4], 5);
        // Both zeros and negatives where the mask is 0, with a negative g (giving −0).
        xv.data_mut()[..4].copy_from_slice(&[0.0, -0.0, -3.0, -1.0]);
        let mut wv = normal(&[3, 4], 6);
        wv.data_mut()[1] = -2.0;
        f.run(&[xv.view(), wv.view()]).expect("run");
        let plan = f.debug_plan();
        assert!(plan.contains("relu_grad"), "{plan}");
        assert!(!plan.contains(" gt "), "{plan}");
        let got = f.output(0).expect("gradient").data().to_vec();
        let want = relu_grad_reference(wv.data(), xv.data());
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn a_mask_product_with_a_broadcast_operand_keeps_its_values() {
        // `a · (b > 0)` written by a user, with b a row broadcast over a's rows.
        let a = Expr::input("a", 2);
        let b = Expr::input("b", 2);
        let zero = Expr::constant(Tensor::scalar(0.0));
        let out = &a * &b.gt(&zero);
        let mut f = Function::compile(&[a.clone(), b.clone()], &[out]).expect("compile");
        let av = normal(&[3, 4], 7);
        let bv = Tensor::new(&[1, 4], vec![1.0, -1.0, 0.0, 2.0]).expect("row");
        f.run(&[av.view(), bv.view()]).expect("run");
        let got = f.output(0).expect("product").data().to_vec();
        let row = bv.data();
        let want: Vec<f32> = av
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| v * if row[i % 4] > 0.0 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(got, want);
    }
}
