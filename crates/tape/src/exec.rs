//! The interpreter: runs a [`Plan`] of a [`Program`] on borrowed arguments, one kernel call per
//! instruction, then applies the parameter updates.

use crate::error::{Error, Result};
use crate::instr::{Failure, Plan, Src};
use crate::ir::Program;
use crate::rng::Rng;
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
    let _flush = crate::fpenv::FlushDenormals::new();
    {
        let guards: SmallVec<[RwLockReadGuard<'_, Tensor>; 16]> =
            program.params.iter().map(|p| p.read()).collect();
        let params: SmallVec<[&[f32]; 16]> = guards.iter().map(|g| g.data()).collect();
        let consts = &program.consts;
        for (ins, &node) in plan.instrs.iter().zip(&plan.nodes) {
            // The output buffer is taken out of the workspace for the call, so the other buffers
            // can be read freely; an in-place call reads its operand from it.
            let mut out = std::mem::take(&mut plan.workspace[ins.out]);
            let ws = &plan.workspace;
            let get = |s: &Src| -> &[f32] {
                match *s {
                    Src::Arg(i) => args[i].data(),
                    Src::Param(i) => params[i],
                    Src::Const(i) => consts[i].data(),
                    Src::Work(i) => &ws[i],
                }
            };
            let r = ins.call.run(get, rngs, &mut out);
            plan.workspace[ins.out] = out;
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
