//! The interpreter: runs a [`Plan`] of a [`Program`] on borrowed arguments, one kernel call per
//! instruction, then applies the parameter updates.

use crate::error::{Error, Result};
use crate::instr::{Call, Failure, Nested, Plan, Src};
use crate::ir::Program;
use crate::kernels::{pack_b, GemmCall, KeptUse};
use crate::rng::Rng;
use crate::scan_exec::{gather_step, scatter_step, zero_step, ScanCall};
use crate::staged::Hook;
use crate::tensor::{Tensor, TensorView};
use smallvec::SmallVec;
use std::sync::RwLockReadGuard;

/// Runs every instruction of `plan` (made for `program` and these arguments' shapes), then
/// writes the updates into the parameters. All updates see the parameters' values from before
/// the call.
pub(crate) fn run(
    program: &Program,
    plan: &mut Plan,
    rngs: &mut [Rng],
    args: &[TensorView<'_>],
) -> Result<()> {
    run_with(program, plan, rngs, args, None)
}

/// [`run`], calling `hook`'s groups back as they become ready (see `staged`).
pub(crate) fn run_with(
    program: &Program,
    plan: &mut Plan,
    rngs: &mut [Rng],
    args: &[TensorView<'_>],
    hook: Option<&mut Hook<'_>>,
) -> Result<()> {
    let _flush = crate::fpenv::FlushDenormals::new();
    run_instrs(program, plan, rngs, args, 0, hook)?;
    for &(slot, src, n, swap) in &plan.updates {
        match src {
            // A buffer that holds nothing but this update is swapped into the parameter.
            Src::Work(b) => program.params[slot].take_from(&mut plan.workspace[b], swap),
            Src::Arg(a) => program.params[slot].update(|d| d.copy_from_slice(&args[a].data()[..n])),
            Src::Const(c) => {
                program.params[slot].update(|d| d.copy_from_slice(&program.consts[c].data()[..n]))
            }
            Src::Part { buf, offset, len } => program.params[slot]
                .update(|d| d.copy_from_slice(&plan.workspace[buf][offset..offset + len])),
            Src::Param(_) => {
                unreachable!("parameter-sourced updates are copied into the workspace")
            }
        }
    }
    Ok(())
}

/// Runs the instructions of `plan` from the `from`-th on (a scan's steps after its first start
/// past the hoisted ones, whose results are still in the workspace), handing `hook`'s groups
/// over as they become ready (only a top-level run has a hook).
fn run_instrs(
    program: &Program,
    plan: &mut Plan,
    rngs: &mut [Rng],
    args: &[TensorView<'_>],
    from: usize,
    mut hook: Option<&mut Hook<'_>>,
) -> Result<()> {
    {
        // A guard is dropped once a group that overwrites its parameter is ready; no later
        // instruction reads that parameter (the schedule made sure of it).
        let mut guards: SmallVec<[Option<RwLockReadGuard<'_, Tensor>>; 16]> =
            program.params.iter().map(|p| Some(p.read())).collect();
        let consts = &program.consts;
        let Plan {
            instrs,
            nodes,
            workspace,
            nested,
            outputs,
            ..
        } = &mut *plan;
        if from == 0 {
            if let Some(h) = hook.as_deref_mut() {
                call_ready(h, 0, &mut guards, outputs, workspace);
            }
        }
        for (j, (ins, &node)) in instrs.iter_mut().zip(nodes.iter()).enumerate().skip(from) {
            // A product that keeps its parameter B packed: pack it now if it just settled.
            let mut kept_buf = None;
            let kept = match &mut ins.call {
                Call::Gemm(g) => g.kept.as_mut().map(|kept| {
                    // The parameter's read guard is held, so its version is that of the value.
                    let how = kept.next(program.params[kept.slot].version());
                    (how, kept.slot, kept.buf, g.k, g.n, g.tb)
                }),
                _ => None,
            };
            if let Some((how, slot, buf, k, n, tb)) = kept {
                if how == KeptUse::PackFirst {
                    let b = guards[slot]
                        .as_ref()
                        .expect("a released parameter is read by no later instruction")
                        .data();
                    let dst = &mut workspace[buf];
                    crate::profile::timed(&ins.call, || pack_b(k, n, b, tb, dst));
                }
                if how != KeptUse::Unpacked {
                    kept_buf = Some(buf);
                }
            }
            let params = &guards;
            // The output buffer is taken out of the workspace for the call, so the other buffers
            // can be read freely; an in-place call reads its operand from it.
            let mut out = std::mem::take(&mut workspace[ins.out]);
            let ws = &*workspace;
            let get = |s: &Src| -> &[f32] {
                match *s {
                    Src::Arg(i) => args[i].data(),
                    Src::Param(i) => params[i]
                        .as_ref()
                        .expect("a released parameter is read by no later instruction")
                        .data(),
                    Src::Const(i) => consts[i].data(),
                    Src::Work(i) => &ws[i],
                    Src::Part { buf, offset, len } => &ws[buf][offset..offset + len],
                }
            };
            let r = match &ins.call {
                Call::Scan(c) => {
                    let r = crate::profile::timed(&ins.call, || {
                        run_scan(program, c, &mut nested[c.nested], get, &mut out)
                    });
                    workspace[ins.out] = out;
                    r?;
                    if let Some(h) = hook.as_deref_mut() {
                        call_ready(h, j + 1, &mut guards, outputs, workspace);
                    }
                    continue;
                }
                Call::Gemm(g) if kept_buf.is_some() => {
                    let packed = GemmCall {
                        b: Src::Work(kept_buf.unwrap_or_default()),
                        packed_b: true,
                        kept: None,
                        ..*g
                    };
                    crate::profile::timed(&ins.call, || packed.run(get, &mut out));
                    Ok(())
                }
                call => crate::profile::timed(call, || call.run(get, rngs, &mut out)),
            };
            workspace[ins.out] = out;
            if let Err(failure) = r {
                let n = &program.nodes[node];
                return Err(match failure {
                    Failure::Label {
                        row,
                        value,
                        classes,
                    } => Error::Label {
                        op: n.op.name(),
                        row,
                        value,
                        classes,
                        at: n.at,
                    },
                    Failure::Op(message) => Error::Op {
                        op: n.op.name(),
                        message,
                        at: n.at,
                    },
                });
            }
            if let Some(h) = hook.as_deref_mut() {
                call_ready(h, j + 1, &mut guards, outputs, workspace);
            }
        }
    }
    Ok(())
}

/// Calls back the groups of `hook` ready at position `at`, each after dropping the read guard
/// of the parameter it will overwrite.
fn call_ready<'g>(
    hook: &mut Hook<'_>,
    at: usize,
    guards: &mut [Option<RwLockReadGuard<'g, Tensor>>],
    outputs: &[(usize, crate::kernels::Shape)],
    workspace: &[Vec<f32>],
) {
    for g in 0..hook.at.len() {
        if hook.at[g] != at {
            continue;
        }
        if let Some(slot) = hook.release[g] {
            guards[slot] = None;
        }
        let views: SmallVec<[TensorView<'_>; 4]> = hook.stages[g]
            .outputs
            .iter()
            .map(|&o| {
                let (buf, shape) = &outputs[o];
                let n: usize = shape.iter().product();
                TensorView::new(shape, &workspace[*buf][..n])
                    .expect("plan output sizes are consistent")
            })
            .collect();
        (hook.ready)(g, &views);
    }
}

/// Runs a scan's loop: per step, the sequences' slices and the carried states go into the
/// nested plan's step buffers, the body runs, the new states are carried over and the outputs
/// stacked into `out`. The body's hoisted instructions run with the first step only (their
/// operands are the non-sequences, the same at every step). Nothing is allocated: every buffer
/// was sized when the plan was made.
fn run_scan<'a>(
    program: &Program,
    c: &ScanCall<Src>,
    nested: &mut Nested,
    get: impl Fn(&Src) -> &'a [f32],
    out: &mut [f32],
) -> Result<()> {
    let body = program.body(c.node);
    let Nested {
        plan,
        rngs,
        bufs,
        shapes,
    } = nested;
    let (s, h) = (c.n_seqs, c.n_states);
    let (seq_bufs, state_bufs) = bufs.split_at_mut(s);
    for (j, buf) in state_bufs.iter_mut().enumerate() {
        let n = buf.len();
        buf.copy_from_slice(&get(&c.operands[s + j])[..n]);
    }
    for step in 0..c.time {
        let t = if c.reverse { c.time - 1 - step } else { step };
        if step >= c.steps {
            for &(at, row) in c.entering.iter().flatten().chain(&c.outputs) {
                zero_step(&mut out[at..], row, c.batch, c.time, t);
            }
            continue;
        }
        for ((i, buf), _) in seq_bufs
            .iter_mut()
            .enumerate()
            .zip(&c.read)
            .filter(|p| *p.1)
        {
            gather_step(get(&c.operands[i]), buf, c.batch, c.time, t);
        }
        for (buf, entering) in state_bufs.iter().zip(&c.entering) {
            if let Some((at, _)) = entering {
                scatter_step(buf, &mut out[*at..], c.batch, c.time, t);
            }
        }
        {
            // Bodies with more inputs than this spill to the heap; the ones built from
            // recurrent layers and their gradients stay well below.
            let mut args: SmallVec<[TensorView<'_>; 32]> = SmallVec::new();
            for (buf, shape) in seq_bufs.iter().chain(state_bufs.iter()).zip(shapes.iter()) {
                args.push(TensorView::new(shape, buf)?);
            }
            for (src, shape) in c.operands[s + h..].iter().zip(&shapes[s + h..]) {
                let n = shape.iter().product();
                args.push(TensorView::new(shape, &get(src)[..n])?);
            }
            let from = if step == 0 { 0 } else { plan.hoisted };
            run_instrs(body, plan, rngs, &args, from, None)?;
        }
        for (j, buf) in state_bufs.iter_mut().enumerate() {
            buf.copy_from_slice(plan.output(j).data());
        }
        for (l, &(at, _)) in c.outputs.iter().enumerate() {
            scatter_step(
                plan.output(h + l).data(),
                &mut out[at..],
                c.batch,
                c.time,
                t,
            );
        }
    }
    let truncated = c.steps < c.time;
    for ((buf, &at), &cut) in state_bufs.iter().zip(&c.finals).zip(&c.cut) {
        let dst = &mut out[at..at + buf.len()];
        if truncated && cut {
            dst.fill(0.0);
        } else {
            dst.copy_from_slice(buf);
        }
    }
    Ok(())
}
