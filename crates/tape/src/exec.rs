//! The interpreter: runs a [`Plan`] of a [`Program`] on borrowed arguments, one kernel call per
//! instruction, then applies the parameter updates.

use crate::error::{Error, Result};
use crate::instr::{Instr, Plan, Side, Src};
use crate::ir::{INode, Program};
use crate::kernels::{self, Binary, Layout};
use crate::op::{Op, ReduceKind, SoftmaxKind};
use crate::rng::Rng;
use crate::tensor::{Tensor, TensorView};
use smallvec::SmallVec;
use std::sync::{Arc, RwLockReadGuard};

/// Runs every instruction of `plan` (made for `program` and these arguments' shapes), then
/// writes the updates into the parameters. All updates see the parameters' values from before
/// the call.
pub(crate) fn run(
    program: &Program,
    plan: &mut Plan,
    rngs: &mut [Rng],
    args: &[TensorView<'_>],
) -> Result<()> {
    let _flush = crate::fpenv::FlushDenormals::new();
    {
        let guards: SmallVec<[RwLockReadGuard<'_, Tensor>; 16]> =
            program.params.iter().map(|p| p.read()).collect();
        let params: SmallVec<[&[f32]; 16]> = guards.iter().map(|g| g.data()).collect();
        let ctx = Ctx {
            args,
            params: &params,
            consts: &program.consts,
            ir: &program.nodes,
        };
        for ins in &plan.instrs {
            let o = ins.out();
            let mut buf = std::mem::take(&mut plan.workspace[o]);
            let r = exec(ins, &mut buf, &plan.workspace, &ctx, rngs);
            plan.workspace[o] = buf;
            r?;
        }
    }
    for &(slot, src, n, swap) in &plan.updates {
        match src {
            // A buffer that holds nothing but this update is swapped into the parameter.
            Src::Work(b) => program.params[slot].take_from(&mut plan.workspace[b], swap),
            Src::Arg(a) => program.params[slot].update(|d| d.copy_from_slice(&args[a].data()[..n])),
            Src::Const(c) => {
                program.params[slot].update(|d| d.copy_from_slice(&program.consts[c].data()[..n]))
            }
            Src::Param(_) => {
                unreachable!("parameter-sourced updates are copied into the workspace")
            }
        }
    }
    Ok(())
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
