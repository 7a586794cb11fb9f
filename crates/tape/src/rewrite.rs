//! Graph rewrites run once at compile time, on the flat graph: stable forms
//! (`log(softmax(x))` → `log_softmax(x)`), transposes folded into matrix products, trivial
//! arithmetic and double transposes removed, constants folded, common subexpressions merged, bias-adds fused into the
//! matrix product that feeds them, and dead nodes dropped. Random nodes are never merged or folded.

use crate::error::Result;
use crate::ir::{INode, Program};
use crate::kernels::{Binary, Unary};
use crate::op::{CseKey, Op, SoftmaxKind, Type};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Rewrites `ir` (in topological order) and returns it with the roots' new positions.
pub(crate) fn optimize(ir: Vec<INode>, roots: Vec<usize>) -> Result<(Vec<INode>, Vec<usize>)> {
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
    fuse_bias(&mut out, &roots);
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
                ir[i].op = Op::GemmBias { ta, tb };
                ir[i].inputs = vec![a, b, bias];
                break;
            }
        }
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
