//! Compiled functions: a graph rewritten once (common subexpressions merged, constants folded,
//! stable forms substituted, bias-adds fused into the matrix product), then, for each distinct set
//! of argument shapes, turned into a flat [`Plan`]: a list of kernel instructions over numbered
//! buffers whose shapes, broadcast layouts and buffer reuse were all resolved in advance. A call on
//! shapes seen before allocates nothing.

use crate::error::{fmt_dims, Error, Loc, Result};
use crate::expr::{Expr, Param};
use crate::graph::{key, topo};
use crate::kernels::{self, Binary, Layout, Shape, Unary};
use crate::op::{DType, Op, ReduceKind, SoftmaxKind, Type};
use crate::rng::Rng;
use crate::tensor::{Tensor, TensorView};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, RwLockReadGuard};

/// One node of the compiler's flat graph.
#[derive(Clone)]
pub(crate) struct INode {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<usize>,
    pub(crate) ty: Type,
    pub(crate) at: Loc,
}

/// Where an instruction reads a value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// The n-th argument of the call.
    Arg(usize),
    /// The n-th parameter of the function.
    Param(usize),
    /// The n-th constant.
    Const(usize),
    /// Workspace buffer n.
    Work(usize),
}

/// Which operand an in-place binary instruction overwrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Lhs,
    Rhs,
}

/// One step of a plan, with everything it needs resolved.
#[derive(Clone, Debug)]
pub(crate) enum Instr {
    Gemm {
        m: usize,
        k: usize,
        n: usize,
        a: Src,
        ta: bool,
        b: Src,
        tb: bool,
        bias: Option<Src>,
        out: usize,
    },
    Unary {
        op: Unary,
        x: Src,
        n: usize,
        inplace: bool,
        out: usize,
    },
    Binary {
        op: Binary,
        shape: Shape,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        inplace: Option<Side>,
        out: usize,
    },
    Axpy {
        alpha: f32,
        shape: Shape,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        inplace: Option<Side>,
        out: usize,
    },
    Select {
        shape: Shape,
        c: Src,
        lc: Layout,
        a: Src,
        la: Layout,
        b: Src,
        lb: Layout,
        out: usize,
    },
    Clip {
        lo: f32,
        hi: f32,
        x: Src,
        n: usize,
        inplace: bool,
        out: usize,
    },
    Copy {
        x: Src,
        n: usize,
        out: usize,
    },
    Transpose {
        rows: usize,
        cols: usize,
        x: Src,
        out: usize,
    },
    Reduce {
        kind: ReduceKind,
        outer: usize,
        len: usize,
        inner: usize,
        x: Src,
        out: usize,
    },
    MaxMask {
        outer: usize,
        len: usize,
        inner: usize,
        x: Src,
        out: usize,
    },
    Broadcast {
        x: Src,
        layout: Layout,
        shape: Shape,
        scale: Option<f32>,
        out: usize,
    },
    SumTo {
        g: Src,
        layout: Layout,
        shape: Shape,
        n: usize,
        scale: Option<f32>,
        out: usize,
    },
    Softmax {
        kind: SoftmaxKind,
        rows: usize,
        cols: usize,
        x: Src,
        inplace: bool,
        out: usize,
    },
    Argmax {
        rows: usize,
        cols: usize,
        x: Src,
        out: usize,
    },
    Concat {
        parts: Vec<(Src, usize)>,
        outer: usize,
        row: usize,
        out: usize,
    },
    Slice {
        x: Src,
        outer: usize,
        row: usize,
        offset: usize,
        width: usize,
        out: usize,
    },
    SliceGrad {
        g: Src,
        outer: usize,
        row: usize,
        offset: usize,
        width: usize,
        n: usize,
        out: usize,
    },
    Pick {
        x: Src,
        labels: Src,
        rows: usize,
        cols: usize,
        node: usize,
        out: usize,
    },
    Scatter {
        g: Src,
        labels: Src,
        rows: usize,
        cols: usize,
        node: usize,
        out: usize,
    },
    OneHot {
        labels: Src,
        rows: usize,
        classes: usize,
        node: usize,
        out: usize,
    },
    Dropout {
        rng: usize,
        p: f32,
        n: usize,
        out: usize,
    },
    Noise {
        rng: usize,
        std: f32,
        n: usize,
        out: usize,
    },
    Custom {
        node: usize,
        args: Vec<(Src, Shape)>,
        n: usize,
        out: usize,
    },
}

impl Plan {
    pub(crate) fn workspace_sizes(&self) -> Vec<usize> {
        self.workspace.iter().map(Vec::len).collect()
    }
}

impl Instr {
    pub(crate) fn out(&self) -> usize {
        match self {
            Instr::Gemm { out, .. }
            | Instr::Unary { out, .. }
            | Instr::Binary { out, .. }
            | Instr::Select { out, .. }
            | Instr::Axpy { out, .. }
            | Instr::Clip { out, .. }
            | Instr::Copy { out, .. }
            | Instr::Transpose { out, .. }
            | Instr::Reduce { out, .. }
            | Instr::MaxMask { out, .. }
            | Instr::Broadcast { out, .. }
            | Instr::SumTo { out, .. }
            | Instr::Softmax { out, .. }
            | Instr::Argmax { out, .. }
            | Instr::Concat { out, .. }
            | Instr::Slice { out, .. }
            | Instr::SliceGrad { out, .. }
            | Instr::Pick { out, .. }
            | Instr::Scatter { out, .. }
            | Instr::OneHot { out, .. }
            | Instr::Dropout { out, .. }
            | Instr::Noise { out, .. }
            | Instr::Custom { out, .. } => *out,
        }
    }
}

/// The program for one set of argument shapes: instructions, the workspace they run in, and
/// where the outputs and parameter updates end up.
#[derive(Clone)]
pub(crate) struct Plan {
    key: Vec<Shape>,
    pub(crate) instrs: Vec<Instr>,
    /// For each instruction, the graph node it computes (for dumps and errors).
    pub(crate) nodes: Vec<usize>,
    workspace: Vec<Vec<f32>>,
    outputs: Vec<(usize, Shape)>,
    /// Per update: parameter slot, source, length, and whether the source buffer may be swapped in.
    updates: Vec<(usize, Src, usize, bool)>,
}

/// A compiled function of some input expressions to some output expressions, optionally updating
/// parameters in place after each call (like `theano.function(inputs, outputs, updates=...)`).
///
/// ```
/// use tape::{Expr, Function, Param, Tensor};
/// // One step of gradient descent on f(w) = Σ (w - x)², written as an update.
/// let x = Expr::input("x", 1);
/// let w = Param::new("w", Tensor::zeros(&[2]));
/// let diff = &w.expr() - &x;
/// let loss = (&diff * &diff).sum();
/// let g = tape::grad(&loss, &[w.expr()])?.remove(0);
/// let step = &w.expr() - &(&g * 0.25);
/// let mut f = Function::compile_with_updates(&[x], &[loss], &[(w.clone(), step)])?;
/// let target = Tensor::vector(&[2.0, -4.0]);
/// let before = f.call(&[&target])?[0].item().unwrap();
/// assert_eq!(before, 20.0);
/// assert_eq!(w.value().data(), &[1.0, -2.0]); // moved half-way
/// # Ok::<(), tape::Error>(())
/// ```
#[derive(Clone)]
pub struct Function {
    pub(crate) inputs: Vec<(String, Type)>,
    pub(crate) ir: Vec<INode>,
    outputs: Vec<usize>,
    updates: Vec<(usize, usize)>,
    pub(crate) params: Vec<Param>,
    consts: Vec<Arc<Tensor>>,
    /// Per graph node: its argument, parameter or constant slot (leaves only).
    leaf_slot: Vec<usize>,
    /// Per graph node: its random stream (random nodes only).
    rng_slot: Vec<usize>,
    rngs: Vec<Rng>,
    pub(crate) plans: Vec<Plan>,
    last: Option<usize>,
    check_finite: bool,
}

impl Function {
    /// Compiles a function from `inputs` (each made by [`Expr::input`] or [`Expr::labels`]) to
    /// `outputs`.
    pub fn compile(inputs: &[Expr], outputs: &[Expr]) -> Result<Function> {
        Function::compile_with_updates(inputs, outputs, &[])
    }

    /// Compiles a function that also replaces each listed parameter by the value of its
    /// expression after every call. All updates see the parameters' values from before the call.
    pub fn compile_with_updates(
        inputs: &[Expr],
        outputs: &[Expr],
        updates: &[(Param, Expr)],
    ) -> Result<Function> {
        let mut roots: Vec<Expr> = outputs.to_vec();
        roots.extend(updates.iter().map(|(_, e)| e.clone()));
        for r in &roots {
            r.ty()?;
        }
        let order = topo(&roots)?;
        let mut input_index: HashMap<usize, usize> = HashMap::new();
        let mut input_specs = Vec::new();
        for (i, e) in inputs.iter().enumerate() {
            let Op::Input(name) = e.op() else {
                return Err(Error::Input {
                    input: e.op().name(),
                    expected: "a graph input made by Expr::input or Expr::labels".into(),
                    found: format!("a {} node", e.op().name()),
                });
            };
            if input_index.insert(e.id(), i).is_some()
                || input_specs.iter().any(|(n, _): &(String, Type)| n == name)
            {
                return Err(Error::Input {
                    input: name.clone(),
                    expected: "inputs with distinct names, each listed once".into(),
                    found: "the name twice".into(),
                });
            }
            input_specs.push((name.clone(), e.ty()?.clone()));
        }

        // Flatten the graph.
        let mut index: HashMap<usize, usize> = HashMap::new();
        let mut ir: Vec<INode> = Vec::with_capacity(order.len());
        for e in &order {
            if let Op::Input(name) = e.op() {
                if !input_index.contains_key(&e.id()) {
                    return Err(Error::Input {
                        input: name.clone(),
                        expected: format!(
                            "to be among the function's inputs (built at {})",
                            e.location()
                        ),
                        found: "it missing".into(),
                    });
                }
            }
            let node = INode {
                op: e.op().clone(),
                inputs: e.inputs().iter().map(|x| index[&key(x)]).collect(),
                ty: e.ty()?.clone(),
                at: e.location(),
            };
            index.insert(key(e), ir.len());
            ir.push(node);
        }
        let root_ids: Vec<usize> = roots.iter().map(|r| index[&key(r)]).collect();
        let (ir, root_ids) = crate::rewrite::optimize(ir, root_ids)?;
        let (out_ids, update_ids) = root_ids.split_at(outputs.len());
        let updates: Vec<(Param, usize)> = updates
            .iter()
            .map(|(p, _)| p.clone())
            .zip(update_ids.iter().copied())
            .collect();
        Function::assemble(input_specs, ir, out_ids.to_vec(), &updates)
    }

    /// Builds a function around an already rewritten flat graph.
    pub(crate) fn assemble(
        inputs: Vec<(String, Type)>,
        ir: Vec<INode>,
        outputs: Vec<usize>,
        updates: &[(Param, usize)],
    ) -> Result<Function> {
        let mut f = Function {
            inputs,
            outputs,
            updates: Vec::new(),
            params: Vec::new(),
            consts: Vec::new(),
            leaf_slot: vec![usize::MAX; ir.len()],
            rng_slot: vec![usize::MAX; ir.len()],
            rngs: Vec::new(),
            plans: Vec::new(),
            last: None,
            check_finite: true,
            ir,
        };
        let mut param_slot: HashMap<usize, usize> = HashMap::new();
        for i in 0..f.ir.len() {
            match &f.ir[i].op {
                Op::Input(name) => {
                    f.leaf_slot[i] = f
                        .inputs
                        .iter()
                        .position(|(n, _)| n == name)
                        .unwrap_or(usize::MAX);
                }
                Op::Param(p) => {
                    let next = f.params.len();
                    let slot = *param_slot.entry(p.id()).or_insert(next);
                    if slot == next {
                        f.params.push(p.clone());
                    }
                    f.leaf_slot[i] = slot;
                }
                Op::Constant(t) => {
                    f.leaf_slot[i] = f.consts.len();
                    f.consts.push(t.clone());
                }
                Op::Dropout { seed, .. } | Op::Noise { seed, .. } => {
                    f.rng_slot[i] = f.rngs.len();
                    f.rngs.push(Rng::new(*seed));
                }
                _ => {}
            }
        }
        for (p, node) in updates {
            if let Some(dims) = f.ir[*node].ty.concrete() {
                if dims.as_slice() != p.shape().as_slice() {
                    return Err(Error::Input {
                        input: p.name().to_string(),
                        expected: format!("an update of shape {}", fmt_dims(&p.shape())),
                        found: format!("shape {}", fmt_dims(&dims)),
                    });
                }
            }
            let next = f.params.len();
            let slot = *param_slot.entry(p.id()).or_insert(next);
            if slot == next {
                f.params.push(p.clone());
            }
            if f.updates.iter().any(|&(s, _)| s == slot) {
                return Err(Error::Input {
                    input: p.name().to_string(),
                    expected: "at most one update per parameter".into(),
                    found: "two".into(),
                });
            }
            f.updates.push((slot, *node));
        }
        Ok(f)
    }

    /// Turns the check that float arguments are finite on or off (on by default).
    pub fn set_check_finite(&mut self, on: bool) {
        self.check_finite = on;
    }

    /// The inputs' names, in call order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The parameters the function reads or updates.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Runs the function on borrowed arguments. Outputs stay in the function's workspace, read
    /// them with [`Function::output`]. On shapes seen before this allocates nothing.
    pub fn run(&mut self, args: &[TensorView<'_>]) -> Result<()> {
        self.check_args(args)?;
        let p = match self.plans.iter().position(|p| {
            p.key.len() == args.len()
                && p.key
                    .iter()
                    .zip(args)
                    .all(|(k, a)| k.as_slice() == a.shape())
        }) {
            Some(p) => p,
            None => {
                let shapes: Vec<Shape> =
                    args.iter().map(|a| Shape::from_slice(a.shape())).collect();
                let plan = crate::plan::build(self, shapes)?;
                self.plans.push(plan);
                self.plans.len() - 1
            }
        };
        self.last = None;
        self.execute(p, args)?;
        self.last = Some(p);
        Ok(())
    }

    /// Runs the function and returns copies of its outputs.
    pub fn call(&mut self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        let views: Vec<TensorView<'_>> = args.iter().map(|t| t.view()).collect();
        self.run(&views)?;
        Ok((0..self.outputs.len())
            .map(|i| self.output(i).to_tensor())
            .collect())
    }

    /// The `i`-th output of the last successful [`Function::run`]. Panics if there has been none
    /// or `i` is out of range (both are programming errors, not data errors).
    pub fn output(&self, i: usize) -> TensorView<'_> {
        let plan = &self.plans[self.last.expect("Function::output before a successful run")];
        let (buf, shape) = &plan.outputs[i];
        let n: usize = shape.iter().product();
        TensorView::new(shape, &plan.workspace[*buf][..n])
            .expect("plan output sizes are consistent")
    }

    /// The number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// The states of the function's random streams (dropout, noise), in graph order.
    pub fn rng_states(&self) -> Vec<[u64; 4]> {
        self.rngs.iter().map(Rng::state).collect()
    }

    /// Restores states saved by [`Function::rng_states`].
    pub fn set_rng_states(&mut self, states: &[[u64; 4]]) -> Result<()> {
        if states.len() != self.rngs.len() {
            return Err(Error::Input {
                input: "rng states".into(),
                expected: format!("{} states", self.rngs.len()),
                found: format!("{}", states.len()),
            });
        }
        self.rngs = states.iter().map(|s| Rng::from_state(*s)).collect();
        Ok(())
    }

    /// A listing of the rewritten graph, one node per line.
    pub fn debug_graph(&self) -> String {
        crate::print::ir(&self.ir, &self.outputs)
    }

    /// A listing of the most recently used plan (or the first), one instruction per line with the
    /// buffers it reads and writes; empty before the first call.
    pub fn debug_plan(&self) -> String {
        match self
            .last
            .or(if self.plans.is_empty() { None } else { Some(0) })
        {
            Some(p) => crate::print::plan(self, &self.plans[p]),
            None => String::new(),
        }
    }

    fn check_args(&self, args: &[TensorView<'_>]) -> Result<()> {
        if args.len() != self.inputs.len() {
            let names: Vec<&str> = self.input_names();
            return Err(Error::Input {
                input: "arguments".into(),
                expected: format!("{} ({})", self.inputs.len(), names.join(", ")),
                found: format!("{}", args.len()),
            });
        }
        for ((name, ty), a) in self.inputs.iter().zip(args) {
            let fits = a.shape().len() == ty.rank()
                && ty
                    .dims
                    .iter()
                    .zip(a.shape())
                    .all(|(d, &s)| d.is_none_or(|d| d == s));
            if !fits {
                return Err(Error::Input {
                    input: name.clone(),
                    expected: format!("shape {ty}"),
                    found: format!("shape {}", fmt_dims(a.shape())),
                });
            }
            if self.check_finite && ty.dtype == DType::Float {
                if let Some((index, value)) = a.first_non_finite() {
                    return Err(Error::NonFinite {
                        input: name.clone(),
                        index,
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    fn execute(&mut self, p: usize, args: &[TensorView<'_>]) -> Result<()> {
        let _flush = crate::fpenv::FlushDenormals::new();
        let plan = &mut self.plans[p];
        {
            let guards: SmallVec<[RwLockReadGuard<'_, Tensor>; 16]> =
                self.params.iter().map(|p| p.read()).collect();
            let params: SmallVec<[&[f32]; 16]> = guards.iter().map(|g| g.data()).collect();
            let ctx = Ctx {
                args,
                params: &params,
                consts: &self.consts,
                ir: &self.ir,
            };
            for ins in &plan.instrs {
                let o = ins.out();
                let mut buf = std::mem::take(&mut plan.workspace[o]);
                let r = exec(ins, &mut buf, &plan.workspace, &ctx, &mut self.rngs);
                plan.workspace[o] = buf;
                r?;
            }
        }
        for &(slot, src, n, swap) in &plan.updates {
            match src {
                // A buffer that holds nothing but this update is swapped into the parameter.
                Src::Work(b) => self.params[slot].take_from(&mut plan.workspace[b], swap),
                Src::Arg(a) => {
                    self.params[slot].update(|d| d.copy_from_slice(&args[a].data()[..n]))
                }
                Src::Const(c) => {
                    self.params[slot].update(|d| d.copy_from_slice(&self.consts[c].data()[..n]))
                }
                Src::Param(_) => {
                    unreachable!("parameter-sourced updates are copied into the workspace")
                }
            }
        }
        Ok(())
    }

    pub(crate) fn leaf_slot(&self, node: usize) -> usize {
        self.leaf_slot[node]
    }
    pub(crate) fn rng_slot(&self, node: usize) -> usize {
        self.rng_slot[node]
    }
    pub(crate) fn outputs_ids(&self) -> &[usize] {
        &self.outputs
    }
    pub(crate) fn update_ids(&self) -> &[(usize, usize)] {
        &self.updates
    }
    pub(crate) fn new_plan(
        key: Vec<Shape>,
        instrs: Vec<Instr>,
        nodes: Vec<usize>,
        workspace: Vec<Vec<f32>>,
        outputs: Vec<(usize, Shape)>,
        updates: Vec<(usize, Src, usize, bool)>,
    ) -> Plan {
        Plan {
            key,
            instrs,
            nodes,
            workspace,
            outputs,
            updates,
        }
    }
}

struct Ctx<'a> {
    args: &'a [TensorView<'a>],
    params: &'a [&'a [f32]],
    consts: &'a [Arc<Tensor>],
    ir: &'a [INode],
}

impl<'a> Ctx<'a> {
    #[inline]
    fn get<'b>(&'b self, ws: &'b [Vec<f32>], s: Src) -> &'b [f32] {
        match s {
            Src::Arg(i) => self.args[i].data(),
            Src::Param(i) => self.params[i],
            Src::Const(i) => self.consts[i].data(),
            Src::Work(i) => &ws[i],
        }
    }
}

/// The first `rows` labels, checked to be integers in `0..classes`; the error names the node's
/// op, its source line and the first bad row.
fn checked_labels<'a>(
    ctx: &Ctx<'_>,
    labels: &'a [f32],
    rows: usize,
    classes: usize,
    node: usize,
) -> Result<&'a [f32]> {
    let l = &labels[..rows];
    kernels::check_labels(l, classes).map_err(|(row, value)| {
        let n = &ctx.ir[node];
        Error::Label {
            op: n.op.name(),
            row,
            value,
            classes,
            at: n.at,
        }
    })?;
    Ok(l)
}

/// Runs one instruction, writing into `out` (taken out of the workspace for the duration, so the
/// other buffers can be read freely; an in-place instruction reads its operand from `out`).
fn exec(
    ins: &Instr,
    out: &mut [f32],
    ws: &[Vec<f32>],
    ctx: &Ctx<'_>,
    rngs: &mut [Rng],
) -> Result<()> {
    let get = |s: Src| ctx.get(ws, s);
    match ins {
        Instr::Gemm {
            m,
            k,
            n,
            a,
            ta,
            b,
            tb,
            bias,
            ..
        } => {
            let c = &mut out[..m * n];
            let beta = match bias {
                Some(bias) => {
                    let row = &get(*bias)[..*n];
                    for r in c.chunks_exact_mut((*n).max(1)) {
                        r.copy_from_slice(row);
                    }
                    1.0
                }
                None => 0.0,
            };
            kernels::gemm(*m, *k, *n, 1.0, get(*a), *ta, get(*b), *tb, beta, c);
        }
        Instr::Unary {
            op, x, n, inplace, ..
        } => {
            if *inplace {
                kernels::unary_inplace(*op, &mut out[..*n]);
            } else {
                kernels::unary(*op, &get(*x)[..*n], &mut out[..*n]);
            }
        }
        Instr::Binary {
            op,
            shape,
            a,
            la,
            b,
            lb,
            inplace,
            ..
        } => {
            let n: usize = shape.iter().product();
            match inplace {
                Some(Side::Lhs) => {
                    kernels::binary_inplace_lhs(*op, shape, &mut out[..n], get(*b), lb)
                }
                Some(Side::Rhs) => {
                    kernels::binary_inplace_rhs(*op, shape, get(*a), la, &mut out[..n])
                }
                None => kernels::binary(*op, shape, get(*a), la, get(*b), lb, &mut out[..n]),
            }
        }
        Instr::Axpy {
            alpha,
            shape,
            a,
            la,
            b,
            lb,
            inplace,
            ..
        } => {
            let n: usize = shape.iter().product();
            match inplace {
                // The plan only writes in place when both operands have the output's shape.
                Some(Side::Lhs) => kernels::axpy_inplace_lhs(&mut out[..n], *alpha, &get(*b)[..n]),
                Some(Side::Rhs) => kernels::axpy_inplace_rhs(&get(*a)[..n], *alpha, &mut out[..n]),
                None if *la == Layout::Full && *lb == Layout::Full => {
                    kernels::axpy(&get(*a)[..n], *alpha, &get(*b)[..n], &mut out[..n])
                }
                None => {
                    // Broadcast operands: scale b into the output, then add a, in two passes.
                    let (o, scale) = (&mut out[..n], [*alpha]);
                    kernels::binary(Binary::Mul, shape, get(*b), lb, &scale, &Layout::Scalar, o);
                    kernels::binary_inplace_rhs(Binary::Add, shape, get(*a), la, o);
                }
            }
        }
        Instr::Select {
            shape,
            c,
            lc,
            a,
            la,
            b,
            lb,
            ..
        } => {
            let n: usize = shape.iter().product();
            kernels::select(shape, get(*c), lc, get(*a), la, get(*b), lb, &mut out[..n]);
        }
        Instr::Clip {
            lo,
            hi,
            x,
            n,
            inplace,
            ..
        } => {
            if *inplace {
                kernels::clip_inplace(&mut out[..*n], *lo, *hi);
            } else {
                kernels::clip(&get(*x)[..*n], *lo, *hi, &mut out[..*n]);
            }
        }
        Instr::Copy { x, n, .. } => out[..*n].copy_from_slice(&get(*x)[..*n]),
        Instr::Transpose { rows, cols, x, .. } => {
            let n = rows * cols;
            kernels::transpose(&get(*x)[..n], *rows, *cols, &mut out[..n]);
        }
        Instr::Reduce {
            kind,
            outer,
            len,
            inner,
            x,
            ..
        } => {
            let (src, dst) = (&get(*x)[..outer * len * inner], &mut out[..outer * inner]);
            match kind {
                ReduceKind::Sum => kernels::reduce_sum(src, *outer, *len, *inner, dst),
                ReduceKind::Mean => kernels::reduce_mean(src, *outer, *len, *inner, dst),
                ReduceKind::Max => kernels::reduce_max(src, *outer, *len, *inner, dst),
            }
        }
        Instr::MaxMask {
            outer,
            len,
            inner,
            x,
            ..
        } => {
            let n = outer * len * inner;
            kernels::max_mask(&get(*x)[..n], *outer, *len, *inner, &mut out[..n]);
        }
        Instr::Broadcast {
            x,
            layout,
            shape,
            scale,
            ..
        } => {
            let n: usize = shape.iter().product();
            kernels::broadcast_to(get(*x), layout, shape, &mut out[..n]);
            if let Some(s) = scale {
                kernels::scale_inplace(&mut out[..n], *s);
            }
        }
        Instr::SumTo {
            g,
            layout,
            shape,
            n,
            scale,
            ..
        } => {
            let total: usize = shape.iter().product();
            let dst = &mut out[..*n];
            dst.fill(0.0);
            kernels::sum_to(&get(*g)[..total], shape, layout, dst);
            if let Some(s) = scale {
                kernels::scale_inplace(dst, *s);
            }
        }
        Instr::Softmax {
            kind,
            rows,
            cols,
            x,
            inplace,
            ..
        } => {
            let n = rows * cols;
            match (kind, inplace) {
                (SoftmaxKind::Softmax, true) => {
                    kernels::softmax_inplace(&mut out[..n], *rows, *cols)
                }
                (SoftmaxKind::LogSoftmax, true) => {
                    kernels::log_softmax_inplace(&mut out[..n], *rows, *cols)
                }
                (SoftmaxKind::Softmax, false) => {
                    kernels::softmax(&get(*x)[..n], *rows, *cols, &mut out[..n])
                }
                (SoftmaxKind::LogSoftmax, false) => {
                    kernels::log_softmax(&get(*x)[..n], *rows, *cols, &mut out[..n])
                }
                (SoftmaxKind::LogSumExp, _) => {
                    kernels::logsumexp(&get(*x)[..n], *rows, *cols, &mut out[..*rows])
                }
            }
        }
        Instr::Argmax { rows, cols, x, .. } => {
            kernels::argmax_rows(&get(*x)[..rows * cols], *rows, *cols, &mut out[..*rows])
        }
        Instr::Concat {
            parts, outer, row, ..
        } => {
            let mut offset = 0;
            for &(p, width) in parts {
                kernels::copy_rows(get(p), width, 0, out, *row, offset, *outer, width);
                offset += width;
            }
        }
        Instr::Slice {
            x,
            outer,
            row,
            offset,
            width,
            ..
        } => {
            kernels::copy_rows(get(*x), *row, *offset, out, *width, 0, *outer, *width);
        }
        Instr::SliceGrad {
            g,
            outer,
            row,
            offset,
            width,
            n,
            ..
        } => {
            out[..*n].fill(0.0);
            kernels::copy_rows(get(*g), *width, 0, out, *row, *offset, *outer, *width);
        }
        Instr::Pick {
            x,
            labels,
            rows,
            cols,
            node,
            ..
        } => {
            let l = checked_labels(ctx, get(*labels), *rows, *cols, *node)?;
            kernels::pick(&get(*x)[..rows * cols], *rows, *cols, l, &mut out[..*rows]);
        }
        Instr::Scatter {
            g,
            labels,
            rows,
            cols,
            node,
            ..
        } => {
            let l = checked_labels(ctx, get(*labels), *rows, *cols, *node)?;
            kernels::scatter(&get(*g)[..*rows], *rows, *cols, l, &mut out[..rows * cols]);
        }
        Instr::OneHot {
            labels,
            rows,
            classes,
            node,
            ..
        } => {
            let l = checked_labels(ctx, get(*labels), *rows, *classes, *node)?;
            kernels::one_hot(l, *rows, *classes, &mut out[..rows * classes]);
        }
        Instr::Dropout { rng, p, n, .. } => {
            rngs[*rng].fill_bernoulli(&mut out[..*n], *p, 1.0 / (1.0 - p))
        }
        Instr::Noise { rng, std, n, .. } => rngs[*rng].fill_normal(&mut out[..*n], 0.0, *std),
        Instr::Custom { node, args, n, .. } => {
            let Op::Custom(c) = &ctx.ir[*node].op else {
                unreachable!("custom instruction on a custom node")
            };
            let mut views: SmallVec<[TensorView<'_>; 4]> = SmallVec::new();
            for (s, shape) in args {
                let len: usize = shape.iter().product();
                views.push(
                    TensorView::new(shape, &get(*s)[..len]).expect("plan sizes are consistent"),
                );
            }
            c.forward(&views, &mut out[..*n])
                .map_err(|message| Error::Op {
                    op: c.name().to_string(),
                    message,
                    at: ctx.ir[*node].at,
                })?;
        }
    }
    Ok(())
}
