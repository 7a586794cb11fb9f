//! The data of a scan: its step body (an ordinary expression graph over placeholder inputs) and
//! the shape rule of the [`Op::Scan`] node that runs it and of the [`Op::ScanPart`] nodes that
//! read its results. This module sits in the `op` ↔ `expr` cycle for the same reason `custom`
//! does: an op holds a body, and a body is made of expressions.
//!
//! A scan node computes one packed vector holding all its results one after the other, in the
//! order of [`ScanBody::part`]: the final value of every state, the values every recorded state
//! had *entering* each step (what the gradient needs), and every per-step output stacked along
//! the time axis. Each result is read out by its own `ScanPart` node.

use crate::dims::Dims;
use crate::expr::Expr;
use crate::op::{Op, Type};
use std::collections::HashMap;

/// A scan's step body and how its results are laid out. Built by `tape::scan` (and by
/// the gradient of a scan); opaque to users, who see it only inside [`Op::Scan`].
pub struct ScanBody {
    /// The placeholders the body reads, in order: one per sequence (a time step's slice), one
    /// per state (its value entering the step), one per non-sequence. A parameter the body reads
    /// directly is its own placeholder (its `Param` expression).
    pub(crate) inputs: Vec<Expr>,
    /// What the body computes: the new value of each state, then each per-step output.
    pub(crate) roots: Vec<Expr>,
    /// Every node below `roots`, each after its inputs: the shape rule walks it.
    pub(crate) order: Vec<Expr>,
    pub(crate) n_seqs: usize,
    pub(crate) n_states: usize,
    pub(crate) n_nonseqs: usize,
    /// Per state: whether the values it has entering each step are recorded (a part of their
    /// own). States without a batch axis (the gradient's accumulators) are not.
    pub(crate) recorded: Vec<bool>,
    /// Run the steps from the last time index to the first.
    pub(crate) reverse: bool,
    /// Run only this many steps (the first ones in running order); the others' stacked outputs
    /// are zero. Used by the truncated backward pass.
    pub(crate) limit: Option<usize>,
    /// Per state: whether its final value is zeroed when `limit` left steps out (the gradient
    /// that would flow past the truncation is cut).
    pub(crate) cut: Vec<bool>,
    /// How many steps this scan's own gradient runs back (`None`: all).
    pub(crate) bptt_limit: Option<usize>,
    /// Whether the body draws random numbers (it then has no gradient and is never merged).
    pub(crate) random: bool,
    /// The scan this one extends with values kept for its gradient (`scan_save`): the same
    /// body and operands, more per-step outputs after the base's. The compiler runs the two as one.
    pub(crate) base: Option<std::sync::Arc<ScanBody>>,
}

/// What one result of a scan holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// A state's value after the last step.
    Final(usize),
    /// A recorded state's value entering each step, `(batch, time, …)`.
    Entering(usize),
    /// A per-step output stacked along time, `(batch, time, …)`.
    Output(usize),
}

impl ScanBody {
    /// The number of per-step outputs.
    pub(crate) fn n_outputs(&self) -> usize {
        self.roots.len() - self.n_states
    }

    /// The number of operands of the scan node: sequences, initial states, non-sequences.
    pub(crate) fn n_operands(&self) -> usize {
        self.n_seqs + self.n_states + self.n_nonseqs
    }

    /// The number of results (parts).
    pub(crate) fn n_parts(&self) -> usize {
        self.n_states + self.recorded_states().count() + self.n_outputs()
    }

    /// The recorded states, in order.
    pub(crate) fn recorded_states(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.n_states).filter(|&j| self.recorded[j])
    }

    /// What part `k` holds.
    pub(crate) fn part(&self, k: usize) -> Part {
        let h = self.n_states;
        let recorded: Vec<usize> = self.recorded_states().collect();
        if k < h {
            Part::Final(k)
        } else if k < h + recorded.len() {
            Part::Entering(recorded[k - h])
        } else {
            Part::Output(k - h - recorded.len())
        }
    }

    /// The index of a part.
    pub(crate) fn part_index(&self, part: Part) -> usize {
        let h = self.n_states;
        match part {
            Part::Final(j) => j,
            Part::Entering(j) => h + self.recorded_states().take_while(|&r| r < j).count(),
            Part::Output(l) => h + self.recorded_states().count() + l,
        }
    }

    /// The scan node's name: `scan(seqs=2, states=1, non_seqs=3, outputs=1, reverse)`.
    pub(crate) fn name(&self) -> String {
        let mut s = format!(
            "scan(seqs={}, states={}, non_seqs={}, outputs={}",
            self.n_seqs,
            self.n_states,
            self.n_nonseqs,
            self.n_outputs()
        );
        if self.reverse {
            s += ", reverse";
        }
        if let Some(k) = self.limit {
            s += &format!(", last {k} steps");
        }
        if let Some(base) = &self.base {
            s += &format!(
                ", {} kept for the gradient",
                self.roots.len() - base.roots.len()
            );
        }
        s + ")"
    }

    /// A part node's name: `scan_part(final state 0)`.
    pub(crate) fn part_name(&self, k: usize) -> String {
        match self.part(k) {
            Part::Final(j) => format!("scan_part(final state {j})"),
            Part::Entering(j) => format!("scan_part(state {j} entering each step)"),
            Part::Output(l) => format!("scan_part(output {l})"),
        }
    }

    /// The type of every part for operands of these types, or what the scan expected. The same
    /// rule serves build time (dims may be unknown) and plan time (all known).
    pub(crate) fn part_types(&self, operands: &[&Type]) -> Result<Vec<Type>, String> {
        if operands.len() != self.n_operands() {
            return Err(format!(
                "{} operands ({} sequences, {} states, {} non-sequences), got {}",
                self.n_operands(),
                self.n_seqs,
                self.n_states,
                self.n_nonseqs,
                operands.len()
            ));
        }
        let (batch, time) = self.batch_and_time(operands)?;
        let step: Vec<Type> = operands
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i < self.n_seqs {
                    without_time(t)
                } else {
                    (*t).clone()
                }
            })
            .collect();
        let out = self.body_types(&step)?;
        let h = self.n_states;
        let mut finals = Vec::with_capacity(h);
        for j in 0..h {
            let (into, outof) = (&step[self.n_seqs + j], &out[j]);
            let dims = merge(&into.dims, &outof.dims).ok_or_else(|| {
                format!(
                    "state {j} to keep its shape through a step, but it goes in as {} and comes out as {}",
                    into.dims, outof.dims
                )
            })?;
            if self.recorded[j] && !batch_first(&dims, batch) {
                return Err(format!(
                    "state {j} to have the batch ({}) as its first axis, not {dims}",
                    show(batch)
                ));
            }
            finals.push(Type {
                dims,
                dtype: into.dtype,
            });
        }
        let mut parts = finals.clone();
        for j in self.recorded_states() {
            parts.push(stacked(&finals[j], batch, time));
        }
        for (l, t) in out[h..].iter().enumerate() {
            if !batch_first(&t.dims, batch) {
                return Err(format!(
                    "output {l} of the step to have the batch ({}) as its first axis, not {}",
                    show(batch),
                    t.dims
                ));
            }
            parts.push(stacked(t, batch, time));
        }
        Ok(parts)
    }

    /// The packed vector's type: one axis holding every part's elements, known when they all are.
    pub(crate) fn packed_type(&self, operands: &[&Type]) -> Result<Type, String> {
        let too_big = || "results whose sizes fit in memory".to_string();
        let mut total = Some(0usize);
        for t in self.part_types(operands)? {
            let n = match t.concrete() {
                Some(d) => Some(crate::tensor::checked_numel(&d).ok_or_else(too_big)?),
                None => None,
            };
            total = match (total, n) {
                (Some(a), Some(b)) => Some(a.checked_add(b).ok_or_else(too_big)?),
                _ => None,
            };
        }
        Ok(Type {
            dims: Dims::from([total]),
            dtype: crate::op::DType::Float,
        })
    }

    /// The batch and time sizes the sequences agree on (rank 2 or more: `(batch, time, …)`).
    fn batch_and_time(&self, operands: &[&Type]) -> Result<(Option<usize>, Option<usize>), String> {
        let (mut batch, mut time) = (None, None);
        for (i, t) in operands[..self.n_seqs].iter().enumerate() {
            if t.rank() < 2 {
                return Err(format!(
                    "sequence {i} to be (batch, time, …), but it has rank {}",
                    t.rank()
                ));
            }
            let agree = |a: Option<usize>, b: Option<usize>| match (a, b) {
                (Some(x), Some(y)) if x != y => None,
                _ => Some(a.or(b)),
            };
            match (agree(batch, t.dims[0]), agree(time, t.dims[1])) {
                (Some(b), Some(tt)) => (batch, time) = (b, tt),
                _ => {
                    return Err(format!(
                    "sequences that agree on batch and time; sequence {i} is {}, the ones before \
                         it are ({}, {}, …)",
                    t.dims,
                    show(batch),
                    show(time)
                ))
                }
            }
        }
        Ok((batch, time))
    }

    /// The types of the body's roots when its placeholders have the types `step`.
    fn body_types(&self, step: &[Type]) -> Result<Vec<Type>, String> {
        let slot: HashMap<usize, usize> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, e)| (graph_key(e), i))
            .collect();
        let mut types: HashMap<usize, Type> = HashMap::with_capacity(self.order.len());
        for e in &self.order {
            let ty = if let Some(&i) = slot.get(&graph_key(e)) {
                step[i].clone()
            } else {
                match e.op() {
                    Op::Input(_) | Op::Param(_) | Op::Constant(_) => {
                        e.ty().map_err(|err| err.to_string())?.clone()
                    }
                    op => {
                        let ins: Vec<&Type> =
                            e.inputs().iter().map(|x| &types[&graph_key(x)]).collect();
                        op.infer(&ins).map_err(|expected| {
                            let shapes: Vec<String> =
                                ins.iter().map(|t| t.dims.to_string()).collect();
                            format!(
                                "a step body that accepts these shapes, but its {} at {} got {} and expected {expected}",
                                op.name(),
                                e.location(),
                                shapes.join(", ")
                            )
                        })?
                    }
                }
            };
            types.insert(graph_key(e), ty);
        }
        Ok(self
            .roots
            .iter()
            .map(|r| types[&graph_key(r)].clone())
            .collect())
    }
}

/// A node's identity in a graph: all reads of one parameter are one node (as in `graph::key`,
/// repeated here so that this module stays below `graph`).
pub(crate) fn graph_key(e: &Expr) -> usize {
    match e.op() {
        Op::Param(p) => p.id(),
        _ => e.id(),
    }
}

/// A sequence's type with its time axis (axis 1) removed: one step's slice.
pub(crate) fn without_time(t: &Type) -> Type {
    let mut dims = t.dims.clone();
    if dims.len() >= 2 {
        dims.remove(1);
    }
    Type {
        dims,
        dtype: t.dtype,
    }
}

/// A per-step type stacked along a time axis inserted after the batch.
fn stacked(step: &Type, batch: Option<usize>, time: Option<usize>) -> Type {
    let mut dims = Dims::from([step.dims[0].or(batch), time]);
    dims.extend(step.dims.iter().skip(1).copied());
    Type {
        dims,
        dtype: step.dtype,
    }
}

fn batch_first(dims: &Dims, batch: Option<usize>) -> bool {
    !dims.is_empty()
        && match (dims[0], batch) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// Two types of one value (dims may be unknown): their common dims, or `None` if they differ.
fn merge(a: &Dims, b: &Dims) -> Option<Dims> {
    if a.len() != b.len() {
        return None;
    }
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| match (x, y) {
            (Some(p), Some(q)) if p != q => None,
            _ => Some(x.or(*y)),
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().collect())
}

fn show(d: Option<usize>) -> String {
    d.map_or_else(|| "?".to_string(), |d| d.to_string())
}
