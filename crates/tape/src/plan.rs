//! Making a plan: for one set of argument shapes, resolve every node's shape, decide which values
//! are views of others, give each remaining value a workspace buffer (reusing buffers whose values
//! are dead, and writing elementwise results over an operand that dies there), and emit one
//! resolved kernel instruction per node.

use crate::custom::CustomCall;
use crate::dims::Dims;
use crate::error::{Error, Result, ValueRole, ValueShape};
use crate::instr::{Call, Instr, Nested, Plan, Src};
use crate::ir::Program;
use crate::kernels::{
    packed_b_len, ArgmaxCall, AxpyCall, BinaryCall, BroadcastCall, ClipCall, ConcatCall, CopyCall,
    GemmCall, KeptB, MaxMaskCall, OneHotCall, PackBCall, PickCall, ReduceCall, ReluGradCall,
    ScatterCall, SelectCall, Side, SliceCall, SliceGradCall, SoftmaxCall, SumToCall, TransposeCall,
    UnaryCall, XentGradCall,
};
use crate::kernels::{Layout, Shape};
use crate::op::{Op, SoftmaxKind, Type};
use crate::rng::{DropoutCall, NoiseCall};
use crate::scan_body::{Part, ScanBody};
use crate::scan_exec::ScanCall;
use std::collections::HashMap;

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn layout(from: &[usize], to: &[usize]) -> Layout {
    Layout::new(from, to).expect("shape inference checked broadcasting")
}

/// Splits a shape around `axis` into (outer, len, inner) sizes.
fn around(s: &[usize], axis: usize) -> (usize, usize, usize) {
    (numel(&s[..axis]), s[axis], numel(&s[axis + 1..]))
}

struct Pool {
    sizes: Vec<usize>,
    free: Vec<usize>,
}

impl Pool {
    /// The free buffer that fits best (smallest that is large enough, else the largest, grown).
    fn take(&mut self, need: usize) -> usize {
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &b)| self.sizes[b] >= need)
            .min_by_key(|(_, &b)| self.sizes[b])
            .map(|(i, _)| i);
        let pick = fit.or_else(|| {
            self.free
                .iter()
                .enumerate()
                .max_by_key(|(_, &b)| self.sizes[b])
                .map(|(i, _)| i)
        });
        match pick {
            Some(i) => {
                let b = self.free.swap_remove(i);
                self.sizes[b] = self.sizes[b].max(need);
                b
            }
            None => {
                self.sizes.push(need);
                self.sizes.len() - 1
            }
        }
    }
}

/// The fewest values of a parameter B (k·n) that a product keeps packed between calls.
const KEEP_MIN: usize = 4096;

/// Builds the plan of `f` for arguments of the given shapes.
pub(crate) fn build(f: &Program, arg_shapes: Vec<Shape>) -> Result<Plan> {
    build_with(f, arg_shapes, None)
}

/// Builds the plan of a scan's step body for one step's shapes. Its first `varying` arguments
/// (the sequences' slices and the states) change at every step; the others (the non-sequences)
/// are the same for the whole scan, so instructions reading nothing else are hoisted: they run
/// once per scan run, before the first step (see [`Plan::hoisted`]).
pub(crate) fn build_body(f: &Program, arg_shapes: Vec<Shape>, varying: usize) -> Result<Plan> {
    build_with(f, arg_shapes, Some(varying))
}

/// Which nodes of a step body compute the same value at every step: leaves other than the
/// first `varying` arguments, and deterministic ops all of whose operands are such nodes.
fn loop_invariant(f: &Program, varying: usize) -> Vec<bool> {
    let mut inv = vec![false; f.nodes.len()];
    for (i, node) in f.nodes.iter().enumerate() {
        inv[i] = match &node.op {
            Op::Input(_) => f.leaf_slot[i] >= varying,
            Op::Param(_) | Op::Constant(_) => true,
            op => hoistable(op) && !node.inputs.is_empty() && node.inputs.iter().all(|&j| inv[j]),
        };
    }
    inv
}

/// Whether an op with loop-invariant operands may run once for all steps: not when it draws
/// random numbers (each step draws anew), runs a nested loop, or is a user's op (which tape
/// cannot vouch is a pure function of its operands).
fn hoistable(op: &Op) -> bool {
    match op {
        Op::Dropout { .. }
        | Op::Noise { .. }
        | Op::Custom(_)
        | Op::Scan(_)
        | Op::ScanPart { .. } => false,
        // Listed one by one so that a new op has to say whether it may be hoisted.
        Op::Input(_)
        | Op::Constant(_)
        | Op::Param(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::ReluGrad
        | Op::Clip { .. }
        | Op::MatMul { .. }
        | Op::GemmBias { .. }
        | Op::Axpy { .. }
        | Op::Transpose
        | Op::Reshape(_)
        | Op::ReshapeLike
        | Op::Unsqueeze(_)
        | Op::Reduce { .. }
        | Op::BroadcastLike { .. }
        | Op::SumLike { .. }
        | Op::MaxMask(_)
        | Op::Softmax(_)
        | Op::Argmax
        | Op::Concat(_)
        | Op::Slice { .. }
        | Op::SliceGrad { .. }
        | Op::Pick
        | Op::Scatter
        | Op::SoftmaxXentGrad
        | Op::OneHot(_) => true,
    }
}

/// The concrete shape of every node for these argument shapes, checked by the same rules as
/// at build time.
fn node_shapes(f: &Program, arg_shapes: &[Shape]) -> Result<Vec<Shape>> {
    let ir = &f.nodes;
    let n = ir.len();
    let mut shape: Vec<Shape> = Vec::with_capacity(n);
    for (i, node) in ir.iter().enumerate() {
        let s: Shape = match &node.op {
            Op::Input(_) => arg_shapes[f.leaf_slot[i]].clone(),
            Op::Param(_) => f.params[f.leaf_slot[i]].shape(),
            Op::Constant(t) => Shape::from_slice(t.shape()),
            op => {
                let tys: Vec<Type> = node
                    .inputs
                    .iter()
                    .map(|&j| Type::known(&shape[j]))
                    .collect();
                let refs: Vec<&Type> = tys.iter().collect();
                let fail = |expected: String| Error::Shape {
                    op: op.name(),
                    shapes: node
                        .inputs
                        .iter()
                        .map(|&j| Dims::known(&shape[j]))
                        .collect(),
                    expected,
                    at: node.at,
                };
                let ty = op.infer(&refs).map_err(fail)?;
                let s = ty.concrete().ok_or_else(|| {
                    fail("dims known at run time (an op left a dim unknown)".into())
                })?;
                // Every size below is a product of these dims: refuse shapes whose product
                // overflows rather than let it wrap into a short buffer.
                if crate::tensor::checked_numel(&s).is_none() {
                    return Err(fail(format!(
                        "an output of at most {} elements, not {}",
                        isize::MAX as usize / std::mem::size_of::<f32>(),
                        crate::error::fmt_dims(&s)
                    )));
                }
                s
            }
        };
        shape.push(s);
    }
    Ok(shape)
}

fn build_with(f: &Program, arg_shapes: Vec<Shape>, varying: Option<usize>) -> Result<Plan> {
    let ir = &f.nodes;
    let n = ir.len();
    let shape = node_shapes(f, &arg_shapes)?;

    // Loop-invariant nodes of a body are planned first, in their own order (their operands are
    // invariant too, so this is still a topological order): their instructions form the
    // hoisted prefix, and every later instruction may reuse their buffers once they are dead.
    let invariant = match varying {
        Some(v) => loop_invariant(f, v),
        None => vec![false; n],
    };
    let order: Vec<usize> = (0..n)
        .filter(|&i| invariant[i])
        .chain((0..n).filter(|&i| !invariant[i]))
        .collect();
    let mut pos = vec![0usize; n];
    for (p, &i) in order.iter().enumerate() {
        pos[i] = p;
    }

    // 2. Liveness: the position (in `order`) of the last node that reads each value; roots
    //    live to the end, and so do invariant values read by the steps (computed once, read by
    //    every step).
    let mut last_use = vec![0usize; n];
    for (i, node) in ir.iter().enumerate() {
        for &j in &node.inputs {
            last_use[j] = if invariant[j] && !invariant[i] {
                usize::MAX
            } else {
                last_use[j].max(pos[i])
            };
        }
    }
    for &o in &f.outputs {
        last_use[o] = usize::MAX;
    }
    for &(_, u) in &f.updates {
        last_use[u] = usize::MAX;
    }

    // 3. Views share their operand's storage; a buffer lives as long as any value stored in it.
    let mut owner: Vec<usize> = (0..n).collect();
    for (i, node) in ir.iter().enumerate() {
        if is_alias(&node.op, &node.inputs, &shape, i) {
            owner[i] = owner[node.inputs[0]];
        }
    }
    let mut owner_last = vec![0usize; n];
    for i in 0..n {
        owner_last[owner[i]] = owner_last[owner[i]].max(last_use[i]);
    }

    // 4. Buffers and instructions.
    let mut pool = Pool {
        sizes: Vec::new(),
        free: Vec::new(),
    };
    let mut src: Vec<Src> = vec![Src::Work(usize::MAX); n];
    let mut freed = vec![false; n];
    let mut instrs = Vec::new();
    let mut nodes = Vec::new();
    let mut nested = Vec::new();
    // The number of instructions before the first one of a varying node.
    let mut hoisted = None;
    // Per product of the steps whose B is loop-invariant: the buffer holding B packed.
    let mut packed = HashMap::new();
    for (p, &i) in order.iter().enumerate() {
        let node = &ir[i];
        if !invariant[i] && hoisted.is_none() {
            let made = (&mut pool, &mut instrs, &mut nodes);
            packed = pack_invariant_b(f, &invariant, &shape, &src, made);
            hoisted = Some(instrs.len());
        }
        match &node.op {
            Op::Input(_) => {
                src[i] = Src::Arg(f.leaf_slot[i]);
                continue;
            }
            Op::Param(_) => {
                src[i] = Src::Param(f.leaf_slot[i]);
                continue;
            }
            Op::Constant(_) => {
                src[i] = Src::Const(f.leaf_slot[i]);
                continue;
            }
            _ => {}
        }
        if owner[i] != i {
            src[i] = match &node.op {
                // A result of a scan is read in place from the scan's packed output.
                Op::ScanPart { body, part } => {
                    let Src::Work(buf) = src[node.inputs[0]] else {
                        unreachable!("a scan writes a workspace buffer")
                    };
                    let shp: Vec<&[usize]> = node.inputs[1..]
                        .iter()
                        .map(|&j| shape[j].as_slice())
                        .collect();
                    let (offsets, sizes) = part_layout(body, &shp)?;
                    Src::Part {
                        buf,
                        offset: offsets[*part],
                        len: sizes[*part],
                    }
                }
                _ => src[node.inputs[0]],
            };
            continue;
        }
        let out_shape = &shape[i];
        // An elementwise op may overwrite an operand of its own shape that dies here, if no
        // other operand lives in the same buffer.
        let mut inplace = None;
        let same_shapes = node.inputs.iter().all(|&x| shape[x] == *out_shape);
        let candidates = match node.op {
            Op::Axpy { .. } | Op::ReluGrad if !same_shapes => &[][..],
            _ => inplace_candidates(&node.op),
        };
        for &k in candidates {
            let j = node.inputs[k];
            let Src::Work(b) = src[j] else { continue };
            let others_share = node.inputs.iter().enumerate().any(|(m, &x)| {
                m != k && matches!(src[x], Src::Work(o) | Src::Part { buf: o, .. } if o == b)
            });
            if owner_last[owner[j]] == p && shape[j] == *out_shape && !others_share {
                inplace = Some((k, b));
                break;
            }
        }
        let out = match inplace {
            Some((_, b)) => b,
            None => pool.take(numel(out_shape)),
        };
        src[i] = Src::Work(out);
        let ins: Vec<Src> = node.inputs.iter().map(|&j| src[j]).collect();
        let shp: Vec<&[usize]> = node.inputs.iter().map(|&j| shape[j].as_slice()).collect();
        let call = match &node.op {
            Op::Scan(body) => scan_call(f, i, body, &ins, &shp, &mut nested)?,
            op => emit(f, i, op, &ins, &shp, out_shape, inplace.map(|(k, _)| k)),
        };
        let call = match (call, packed.get(&i)) {
            (Call::Gemm(g), Some(&b)) => Call::Gemm(GemmCall {
                b: Src::Work(b),
                packed_b: true,
                ..g
            }),
            // At the top level a parameter B may be kept packed between calls, in a buffer of
            // its own (allocated zeroed and untouched until the first pack, so a training step,
            // which never packs, does not make it resident); not when this function itself
            // updates the parameter, as it then changes at every call, and not for a B so small
            // that packing it costs less than a microsecond.
            (Call::Gemm(g), None) if varying.is_none() && g.k * g.n >= KEEP_MIN => match g.b {
                Src::Param(slot) if f.updates.iter().all(|&(s, _)| s != slot) => {
                    let buf = pool.sizes.len();
                    pool.sizes.push(packed_b_len(g.k, g.n));
                    let kept = KeptB {
                        buf,
                        slot,
                        packed_at: None,
                        seen: None,
                    };
                    Call::Gemm(GemmCall {
                        kept: Some(kept),
                        ..g
                    })
                }
                _ => Call::Gemm(g),
            },
            (call, _) => call,
        };
        instrs.push(Instr { call, out });
        nodes.push(i);
        for &j in &node.inputs {
            let o = owner[j];
            if owner_last[o] == p && !freed[o] {
                freed[o] = true;
                if let Src::Work(b) = src[o] {
                    if b != out {
                        pool.free.push(b);
                    }
                }
            }
        }
    }

    let hoisted = hoisted.unwrap_or(instrs.len());

    // 5. Outputs must live in the workspace; parameter-sourced updates are copied there first so
    //    that every update reads values from before the call.
    let mut copy_to_work = |x: Src,
                            s: &Shape,
                            instrs: &mut Vec<Instr>,
                            nodes: &mut Vec<usize>,
                            node: usize|
     -> usize {
        let out = pool.sizes.len();
        pool.sizes.push(numel(s));
        instrs.push(Instr {
            call: Call::Copy(CopyCall { x, n: numel(s) }),
            out,
        });
        nodes.push(node);
        out
    };
    let mut outputs = Vec::new();
    for &o in &f.outputs {
        let b = match src[o] {
            Src::Work(b) => b,
            other => copy_to_work(other, &shape[o], &mut instrs, &mut nodes, o),
        };
        outputs.push((b, shape[o].clone()));
    }
    let mut updates = Vec::new();
    for &(slot, u) in &f.updates {
        let want = f.params[slot].shape();
        if shape[u] != want {
            return Err(ValueShape::error(
                f.params[slot].name(),
                ValueRole::Update,
                Dims::known(&want),
                &shape[u],
            ));
        }
        let s = match src[u] {
            Src::Param(_) => Src::Work(copy_to_work(src[u], &shape[u], &mut instrs, &mut nodes, u)),
            other => other,
        };
        updates.push((slot, s, numel(&shape[u]), false));
    }
    // An update may take its buffer by swapping when the buffer is exactly the parameter's size
    // and holds no output and no other update (the workspace then keeps the old values, which
    // the next call overwrites).
    for i in 0..updates.len() {
        let (_, s, n, _) = updates[i];
        if let Src::Work(b) = s {
            let shared = outputs.iter().any(|&(o, _)| o == b)
                || updates.iter().enumerate().any(|(j, u)| j != i && u.1 == s);
            updates[i].3 = !shared && pool.sizes[b] == n;
        }
    }
    let workspace = pool.sizes.iter().map(|&s| vec![0.0f32; s]).collect();
    Ok(Plan {
        key: arg_shapes,
        instrs,
        nodes,
        hoisted,
        workspace,
        outputs,
        updates,
        nested,
        schedule: None,
    })
}

/// Hoisted instructions packing the loop-invariant B of every product a step runs (once per
/// distinct operand, transpose and shape), each into a buffer of its own that no other
/// instruction writes. Returns, per product node, the buffer of its packed B.
fn pack_invariant_b(
    f: &Program,
    invariant: &[bool],
    shape: &[Shape],
    src: &[Src],
    (pool, instrs, nodes): (&mut Pool, &mut Vec<Instr>, &mut Vec<usize>),
) -> HashMap<usize, usize> {
    let mut packed = HashMap::new();
    let mut made: HashMap<(usize, bool, usize, usize), usize> = HashMap::new();
    for (i, node) in f.nodes.iter().enumerate() {
        let (Op::MatMul { ta, tb } | Op::GemmBias { ta, tb, .. }) = node.op else {
            continue;
        };
        let (a, b) = (node.inputs[0], node.inputs[1]);
        if invariant[i] || !invariant[b] {
            continue;
        }
        let k = shape[a][if ta { 0 } else { 1 }];
        let n = shape[i][1];
        let buf = *made.entry((b, tb, k, n)).or_insert_with(|| {
            let out = pool.take(packed_b_len(k, n));
            let call = Call::PackB(PackBCall {
                k,
                n,
                b: src[b],
                tb,
            });
            instrs.push(Instr { call, out });
            nodes.push(i);
            out
        });
        packed.insert(i, buf);
    }
    packed
}

/// Where each result of a scan with operands of these shapes lies in its packed output:
/// offsets and sizes, in part order.
#[track_caller]
fn part_layout(body: &ScanBody, operands: &[&[usize]]) -> Result<(Vec<usize>, Vec<usize>)> {
    let types: Vec<Type> = operands.iter().map(|s| Type::known(s)).collect();
    let refs: Vec<&Type> = types.iter().collect();
    // The node's shape rule accepted these operands moments ago, so this does not fail.
    let parts = body.part_types(&refs).map_err(|expected| Error::Shape {
        op: body.name(),
        shapes: types.iter().map(|t| t.dims.clone()).collect(),
        expected,
        at: std::panic::Location::caller(),
    })?;
    let sizes: Vec<usize> = parts
        .iter()
        .map(|t| t.dims.iter().map(|d| d.unwrap_or(0)).product())
        .collect();
    let offsets = sizes
        .iter()
        .scan(0, |acc, &n| {
            let at = *acc;
            *acc += n;
            Some(at)
        })
        .collect();
    Ok((offsets, sizes))
}

/// Plans a scan: its body for one step's shapes (a nested plan with its step buffers, pushed
/// onto `nested`) and the loop's call.
fn scan_call(
    f: &Program,
    node: usize,
    body: &ScanBody,
    ins: &[Src],
    shp: &[&[usize]],
    nested: &mut Vec<Nested>,
) -> Result<Call> {
    let (s, h) = (body.n_seqs, body.n_states);
    let (offsets, sizes) = part_layout(body, shp)?;
    let step_shapes: Vec<Shape> = shp
        .iter()
        .enumerate()
        .map(|(i, sh)| {
            let mut sh = Shape::from_slice(sh);
            if i < s {
                sh.remove(1);
            }
            sh
        })
        .collect();
    let program = f.body(node);
    let plan = build_body(program, step_shapes.clone(), s + h)?;
    let read = sequences_read(&plan, s);
    nested.push(Nested {
        plan,
        rngs: program.new_rngs(),
        bufs: step_shapes[..s + h]
            .iter()
            .map(|sh| vec![0.0; numel(sh)])
            .collect(),
        shapes: step_shapes,
    });
    let (batch, time) = (shp[0][0], shp[0][1]);
    // Elements per batch row and step of a part stacked as (batch, time, …).
    let row = |k: usize| {
        if batch == 0 || time == 0 {
            0
        } else {
            sizes[k] / (batch * time)
        }
    };
    let entering = (0..h)
        .map(|j| {
            body.recorded[j].then(|| {
                let k = body.part_index(Part::Entering(j));
                (offsets[k], row(k))
            })
        })
        .collect();
    let outputs = (0..body.n_outputs())
        .map(|l| {
            let k = body.part_index(Part::Output(l));
            (offsets[k], row(k))
        })
        .collect();
    Ok(Call::Scan(ScanCall {
        node,
        nested: nested.len() - 1,
        operands: ins.to_vec(),
        n_seqs: s,
        read,
        n_states: h,
        batch,
        time,
        reverse: body.reverse,
        steps: body.limit.map_or(time, |k| k.min(time)),
        cut: body.cut.clone(),
        entering,
        outputs,
        finals: offsets[..h].to_vec(),
        total: sizes.iter().sum(),
    }))
}

/// Per sequence of a step body's plan (its first `n_seqs` arguments): whether an instruction
/// reads it. Views and shape-only operands (a `sum_like`'s target) read no values, so a
/// sequence a step body uses only so is never read.
fn sequences_read(plan: &Plan, n_seqs: usize) -> Vec<bool> {
    let mut read = vec![false; n_seqs];
    for ins in &plan.instrs {
        for src in crate::staged::operands(&ins.call) {
            if let Src::Arg(a) = src {
                if a < n_seqs {
                    read[a] = true;
                }
            }
        }
    }
    read
}

/// Whether node `i` is stored in its first operand's buffer, read with another shape.
fn is_alias(op: &Op, inputs: &[usize], shape: &[Shape], i: usize) -> bool {
    match op {
        // A scan's result is a range of its packed output (`Src::Part`).
        Op::Reshape(_) | Op::ReshapeLike | Op::Unsqueeze(_) | Op::ScanPart { .. } => true,
        Op::BroadcastLike { .. } | Op::SumLike { .. } => shape[inputs[0]] == shape[i],
        // Listed one by one so that a new op has to say whether it is a view.
        Op::Input(_)
        | Op::Constant(_)
        | Op::Param(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::ReluGrad
        | Op::Clip { .. }
        | Op::MatMul { .. }
        | Op::GemmBias { .. }
        | Op::Axpy { .. }
        | Op::Transpose
        | Op::Reduce { .. }
        | Op::MaxMask(_)
        | Op::Softmax(_)
        | Op::Argmax
        | Op::Concat(_)
        | Op::Slice { .. }
        | Op::SliceGrad { .. }
        | Op::Pick
        | Op::Scatter
        | Op::SoftmaxXentGrad
        | Op::OneHot(_)
        | Op::Dropout { .. }
        | Op::Noise { .. }
        | Op::Custom(_)
        | Op::Scan(_) => false,
    }
}

/// Operand positions an op may overwrite with its result.
fn inplace_candidates(op: &Op) -> &'static [usize] {
    match op {
        Op::Unary(_) | Op::Clip { .. } => &[0],
        Op::Softmax(SoftmaxKind::Softmax | SoftmaxKind::LogSoftmax) => &[0],
        Op::Binary(_) | Op::Axpy { .. } | Op::ReluGrad => &[0, 1],
        // Listed one by one so that a new op has to say whether it may write over an operand.
        Op::Softmax(SoftmaxKind::LogSumExp)
        | Op::Input(_)
        | Op::Constant(_)
        | Op::Param(_)
        | Op::Select
        | Op::MatMul { .. }
        | Op::GemmBias { .. }
        | Op::Transpose
        | Op::Reshape(_)
        | Op::ReshapeLike
        | Op::Unsqueeze(_)
        | Op::Reduce { .. }
        | Op::BroadcastLike { .. }
        | Op::SumLike { .. }
        | Op::MaxMask(_)
        | Op::Argmax
        | Op::Concat(_)
        | Op::Slice { .. }
        | Op::SliceGrad { .. }
        | Op::Pick
        | Op::Scatter
        | Op::SoftmaxXentGrad
        | Op::OneHot(_)
        | Op::Dropout { .. }
        | Op::Noise { .. }
        | Op::Custom(_)
        | Op::Scan(_)
        | Op::ScanPart { .. } => &[],
    }
}

#[allow(clippy::too_many_arguments)]
fn emit(
    f: &Program,
    node: usize,
    op: &Op,
    ins: &[Src],
    shp: &[&[usize]],
    out_shape: &Shape,
    inplace: Option<usize>,
) -> Call {
    let len = numel(out_shape);
    match op {
        Op::Input(_) | Op::Param(_) | Op::Constant(_) => unreachable!("leaves emit no instruction"),
        Op::Reshape(_) | Op::ReshapeLike | Op::Unsqueeze(_) => {
            unreachable!("views emit no instruction")
        }
        Op::Unary(u) => Call::Unary(UnaryCall {
            op: *u,
            x: ins[0],
            n: len,
            inplace: inplace.is_some(),
        }),
        Op::Clip { lo, hi } => Call::Clip(ClipCall {
            lo: *lo,
            hi: *hi,
            x: ins[0],
            n: len,
            inplace: inplace.is_some(),
        }),
        Op::Binary(b) => Call::Binary(BinaryCall {
            op: *b,
            shape: out_shape.clone(),
            a: ins[0],
            la: layout(shp[0], out_shape),
            b: ins[1],
            lb: layout(shp[1], out_shape),
            inplace: inplace.map(|k| if k == 0 { Side::Lhs } else { Side::Rhs }),
        }),
        Op::Axpy { alpha } => Call::Axpy(AxpyCall {
            alpha: *alpha,
            shape: out_shape.clone(),
            a: ins[0],
            la: layout(shp[0], out_shape),
            b: ins[1],
            lb: layout(shp[1], out_shape),
            inplace: inplace.map(|k| if k == 0 { Side::Lhs } else { Side::Rhs }),
        }),
        Op::ReluGrad => Call::ReluGrad(ReluGradCall {
            shape: out_shape.clone(),
            g: ins[0],
            lg: layout(shp[0], out_shape),
            x: ins[1],
            lx: layout(shp[1], out_shape),
            inplace: inplace.map(|k| if k == 0 { Side::Lhs } else { Side::Rhs }),
        }),
        Op::Select => Call::Select(SelectCall {
            shape: out_shape.clone(),
            c: ins[0],
            lc: layout(shp[0], out_shape),
            a: ins[1],
            la: layout(shp[1], out_shape),
            b: ins[2],
            lb: layout(shp[2], out_shape),
        }),
        Op::MatMul { ta, tb } | Op::GemmBias { ta, tb, .. } => {
            let (m, k) = if *ta {
                (shp[0][1], shp[0][0])
            } else {
                (shp[0][0], shp[0][1])
            };
            let n = out_shape[1];
            let bias = matches!(op, Op::GemmBias { .. }).then(|| ins[2]);
            Call::Gemm(GemmCall {
                m,
                k,
                n,
                a: ins[0],
                ta: *ta,
                b: ins[1],
                tb: *tb,
                bias,
                packed_b: false,
                relu: matches!(op, Op::GemmBias { relu: true, .. }),
                kept: None,
            })
        }
        Op::Transpose => Call::Transpose(TransposeCall {
            rows: shp[0][0],
            cols: shp[0][1],
            x: ins[0],
        }),
        Op::Reduce { kind, axis, .. } => {
            let (outer, l, inner) = match axis {
                Some(a) => around(shp[0], *a),
                None => (1, numel(shp[0]), 1),
            };
            Call::Reduce(ReduceCall {
                kind: *kind,
                outer,
                len: l,
                inner,
                x: ins[0],
            })
        }
        Op::MaxMask(axis) => {
            let (outer, l, inner) = around(shp[0], *axis);
            Call::MaxMask(MaxMaskCall {
                outer,
                len: l,
                inner,
                x: ins[0],
            })
        }
        Op::BroadcastLike { mean } => {
            let scale = mean.then(|| numel(shp[0]) as f32 / len.max(1) as f32);
            Call::Broadcast(BroadcastCall {
                x: ins[0],
                layout: layout(shp[0], out_shape),
                shape: out_shape.clone(),
                scale,
            })
        }
        Op::SumLike { mean } => {
            let scale = mean.then(|| len as f32 / numel(shp[0]).max(1) as f32);
            Call::SumTo(SumToCall {
                g: ins[0],
                layout: layout(out_shape, shp[0]),
                shape: Shape::from_slice(shp[0]),
                n: len,
                scale,
            })
        }
        Op::Softmax(kind) => {
            let cols = *shp[0].last().expect("softmax operands have an axis");
            let rows = numel(&shp[0][..shp[0].len() - 1]);
            Call::Softmax(SoftmaxCall {
                kind: *kind,
                rows,
                cols,
                x: ins[0],
                inplace: inplace.is_some(),
            })
        }
        Op::Argmax => {
            let cols = *shp[0].last().expect("argmax operands have an axis");
            Call::Argmax(ArgmaxCall {
                rows: numel(&shp[0][..shp[0].len() - 1]),
                cols,
                x: ins[0],
            })
        }
        Op::Concat(axis) => {
            let outer = numel(&out_shape[..*axis]);
            let inner = numel(&out_shape[axis + 1..]);
            let parts = ins
                .iter()
                .zip(shp)
                .map(|(&s, sh)| (s, sh[*axis] * inner))
                .collect();
            Call::Concat(ConcatCall {
                parts,
                outer,
                row: out_shape[*axis] * inner,
            })
        }
        Op::Slice {
            axis,
            start,
            len: l,
        } => {
            let (outer, size, inner) = around(shp[0], *axis);
            Call::Slice(SliceCall {
                x: ins[0],
                outer,
                row: size * inner,
                offset: start * inner,
                width: l * inner,
            })
        }
        Op::SliceGrad { axis, start } => {
            let (outer, size, inner) = around(out_shape, *axis);
            Call::SliceGrad(SliceGradCall {
                g: ins[0],
                outer,
                row: size * inner,
                offset: start * inner,
                width: shp[0][*axis] * inner,
                n: len,
            })
        }
        Op::Pick => Call::Pick(PickCall {
            x: ins[0],
            labels: ins[1],
            rows: shp[0][0],
            cols: shp[0][1],
        }),
        Op::Scatter => Call::Scatter(ScatterCall {
            g: ins[0],
            labels: ins[1],
            rows: shp[2][0],
            cols: shp[2][1],
        }),
        Op::SoftmaxXentGrad => Call::XentGrad(XentGradCall {
            p: ins[0],
            g: ins[1],
            labels: ins[2],
            rows: shp[0][0],
            cols: shp[0][1],
        }),
        Op::OneHot(k) => Call::OneHot(OneHotCall {
            labels: ins[0],
            rows: shp[0][0],
            classes: *k,
        }),
        Op::Dropout { p, .. } => Call::Dropout(DropoutCall {
            rng: f.rng_slot[node],
            p: *p,
            n: len,
        }),
        Op::Noise { std, .. } => Call::Noise(NoiseCall {
            rng: f.rng_slot[node],
            std: *std,
            n: len,
        }),
        Op::Scan(_) | Op::ScanPart { .. } => unreachable!("scans are planned by scan_call"),
        Op::Custom(op) => Call::Custom(CustomCall {
            op: op.clone(),
            args: ins
                .iter()
                .zip(shp)
                .map(|(&s, sh)| (s, Shape::from_slice(sh)))
                .collect(),
            n: len,
        }),
    }
}
