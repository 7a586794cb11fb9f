//! Runs in stages: a caller (the trainer) names groups of outputs, each with at most one
//! parameter it will overwrite, and is called back as soon as a group is final, in the middle of
//! the run, so it can use those outputs (apply a parameter's update) while the rest of the plan
//! has still to run.
//!
//! A group is ready after the last instruction that writes one of its outputs' buffers, after
//! the last instruction that reads its parameter (a backward pass reads a layer's weights to
//! propagate the gradient below it, after the weights' own gradient is final), and after the
//! last instruction that can fail on the data (labels, custom ops, scans): a run that fails
//! must not have let the caller change anything yet.

use crate::expr::Param;
use crate::instr::{Call, Plan, Schedule, Src};
use crate::ir::Program;
use crate::tensor::TensorView;
use std::cell::RefCell;

/// Finds where values stop changing in `plan` of `program`.
pub(crate) fn schedule(program: &Program, plan: &Plan) -> Schedule {
    let mut s = Schedule {
        last_read: vec![0; program.params.len()],
        last_write: vec![0; plan.workspace.len()],
        last_fallible: 0,
    };
    for (j, ins) in plan.instrs.iter().enumerate() {
        let at = j + 1;
        s.last_write[ins.out] = at;
        match &ins.call {
            // A step body reads parameters through its own program, which the operand list
            // does not show: count it as reading all of them.
            Call::Scan(_) => {
                s.last_read.iter_mut().for_each(|r| *r = at);
                s.last_fallible = at;
            }
            call => {
                if fallible(call) {
                    s.last_fallible = at;
                }
                for src in operands(call) {
                    if let Src::Param(p) = src {
                        s.last_read[p] = at;
                    }
                }
            }
        }
    }
    s
}

/// The position after which every buffer of `outputs` is written, `param` (a slot) is read
/// no more and nothing can fail any longer.
pub(crate) fn ready_at(
    s: &Schedule,
    plan: &Plan,
    outputs: &[usize],
    param: Option<usize>,
) -> usize {
    let written = outputs
        .iter()
        .map(|&o| s.last_write[plan.outputs[o].0])
        .max()
        .unwrap_or(0);
    let read = param.map_or(0, |p| s.last_read[p]);
    written.max(read).max(s.last_fallible)
}

/// Whether a call can fail on the values it is given (it checks labels, or runs user code).
fn fallible(call: &Call) -> bool {
    matches!(
        call,
        Call::Pick(_)
            | Call::Scatter(_)
            | Call::XentGrad(_)
            | Call::OneHot(_)
            | Call::Custom(_)
            | Call::Scan(_)
    )
}

/// Every operand a call reads, in the order its description names them. The description is the
/// one place that lists each call's operands, so reading them from it cannot miss one that a
/// new call type (or a new operand of an old one) adds.
pub(crate) fn operands(call: &Call) -> Vec<Src> {
    let seen = RefCell::new(Vec::new());
    call.describe(&|s: &Src| {
        seen.borrow_mut().push(*s);
        String::new()
    });
    seen.into_inner()
}

/// A caller's groups for one run, resolved against the plan: per group, its position, the
/// parameter slot to release and the outputs to hand over.
pub(crate) struct Hook<'h> {
    /// Per group: the position at which it is ready.
    pub(crate) at: &'h [usize],
    /// Per group: the parameter slot whose read guard is dropped before the callback.
    pub(crate) release: &'h [Option<usize>],
    /// The caller's groups: their outputs are given to the callback, in order.
    pub(crate) stages: &'h [Stage],
    /// Called with the group's index and its outputs.
    pub(crate) ready: &'h mut dyn FnMut(usize, &[TensorView<'_>]),
}

/// A group of outputs that `Function::run_staged` hands over as soon as all of them are final,
/// with the parameter (if any) the receiver will overwrite then.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Output indices, as for `Function::output`.
    pub outputs: Vec<usize>,
    /// The parameter the receiver overwrites when the stage is handed over: the stage then also
    /// waits until no remaining instruction reads it.
    pub overwrites: Option<Param>,
}
