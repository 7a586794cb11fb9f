//! The compiler's flat graph: the expression DAG below a function's outputs and updates,
//! flattened into a list of nodes in topological order ([`INode`]), and the [`Program`] that
//! holds it with every leaf resolved to an argument, parameter or constant slot and every random
//! node to a stream. Rewrites, planning, printing and execution all read these types; none of
//! them needs the public `Function`.

use crate::dims::Dims;
use crate::error::{Error, Loc, Result, ValueRole, ValueShape};
use crate::expr::{Expr, Param};
use crate::graph::{key, topo};
use crate::op::{Op, Type};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// One node of the compiler's flat graph.
#[derive(Clone)]
pub(crate) struct INode {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<usize>,
    pub(crate) ty: Type,
    pub(crate) at: Loc,
}

/// A flattened graph with its leaves and random streams resolved: everything about a compiled
/// function that does not depend on the argument shapes.
#[derive(Clone)]
pub(crate) struct Program {
    /// The arguments' names and static types, in call order.
    pub(crate) inputs: Vec<(String, Type)>,
    pub(crate) nodes: Vec<INode>,
    /// The output nodes, in order.
    pub(crate) outputs: Vec<usize>,
    /// `(parameter slot, node)` for each in-place update.
    pub(crate) updates: Vec<(usize, usize)>,
    pub(crate) params: Vec<Param>,
    pub(crate) consts: Vec<Arc<Tensor>>,
    /// Per node: its argument, parameter or constant slot (leaves only).
    pub(crate) leaf_slot: Vec<usize>,
    /// Per node: its random stream (random nodes only).
    pub(crate) rng_slot: Vec<usize>,
    /// The seed of each random stream.
    pub(crate) rng_seeds: Vec<u64>,
    /// `(node, its step body's program)` for every scan node, attached after compiling.
    pub(crate) bodies: Vec<(usize, Program)>,
}

/// Flattens the graph below `roots` (outputs, then updates) into nodes in topological order,
/// checking that every graph input is among `inputs`. Returns the inputs' specs, the nodes and
/// the roots' node indices.
#[allow(clippy::type_complexity)]
pub(crate) fn flatten(
    inputs: &[Expr],
    roots: &[Expr],
) -> Result<(Vec<(String, Type)>, Vec<INode>, Vec<usize>)> {
    for r in roots {
        r.ty()?;
    }
    let order = topo(roots)?;
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
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut nodes: Vec<INode> = Vec::with_capacity(order.len());
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
        index.insert(key(e), nodes.len());
        nodes.push(node);
    }
    let root_ids = roots.iter().map(|r| index[&key(r)]).collect();
    Ok((input_specs, nodes, root_ids))
}

/// Flattens a scan's step body: like [`flatten`], but its inputs are the body's placeholders
/// (inputs, or parameters read directly), named `#0`, `#1`… in order. Any other input is an
/// outer value the body may not read; `tape::scan` refuses those when building.
#[allow(clippy::type_complexity)]
pub(crate) fn flatten_body(
    inputs: &[Expr],
    roots: &[Expr],
) -> Result<(Vec<(String, Type)>, Vec<INode>, Vec<usize>)> {
    let order = topo(roots)?;
    let slot: HashMap<usize, usize> = inputs
        .iter()
        .enumerate()
        .map(|(i, e)| (key(e), i))
        .collect();
    let specs = inputs
        .iter()
        .enumerate()
        .map(|(i, e)| Ok((format!("#{i}"), e.ty()?.clone())))
        .collect::<Result<Vec<_>>>()?;
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut nodes: Vec<INode> = Vec::with_capacity(order.len());
    for e in &order {
        let op = match slot.get(&key(e)) {
            Some(i) => Op::Input(format!("#{i}")),
            None => e.op().clone(),
        };
        nodes.push(INode {
            op,
            inputs: e.inputs().iter().map(|x| index[&key(x)]).collect(),
            ty: e.ty()?.clone(),
            at: e.location(),
        });
        index.insert(key(e), nodes.len() - 1);
    }
    let root_ids = roots.iter().map(|r| index[&key(r)]).collect();
    Ok((specs, nodes, root_ids))
}

impl Program {
    /// The program of the step body of scan node `node`.
    pub(crate) fn body(&self, node: usize) -> &Program {
        &self
            .bodies
            .iter()
            .find(|(n, _)| *n == node)
            .expect("every scan node has its body attached when compiled")
            .1
    }

    /// Resolves the leaves and random nodes of an already rewritten flat graph, and checks the
    /// updates (shapes, at most one per parameter).
    pub(crate) fn new(
        inputs: Vec<(String, Type)>,
        nodes: Vec<INode>,
        outputs: Vec<usize>,
        updates: &[(Param, usize)],
    ) -> Result<Program> {
        let mut p = Program {
            inputs,
            outputs,
            updates: Vec::new(),
            params: Vec::new(),
            consts: Vec::new(),
            leaf_slot: vec![usize::MAX; nodes.len()],
            rng_slot: vec![usize::MAX; nodes.len()],
            rng_seeds: Vec::new(),
            bodies: Vec::new(),
            nodes,
        };
        let mut param_slot: HashMap<usize, usize> = HashMap::new();
        for i in 0..p.nodes.len() {
            match &p.nodes[i].op {
                Op::Input(name) => {
                    p.leaf_slot[i] = p
                        .inputs
                        .iter()
                        .position(|(n, _)| n == name)
                        .unwrap_or(usize::MAX);
                }
                Op::Param(param) => {
                    let next = p.params.len();
                    let slot = *param_slot.entry(param.id()).or_insert(next);
                    if slot == next {
                        p.params.push(param.clone());
                    }
                    p.leaf_slot[i] = slot;
                }
                Op::Constant(t) => {
                    p.leaf_slot[i] = p.consts.len();
                    p.consts.push(t.clone());
                }
                Op::Dropout { seed, .. } | Op::Noise { seed, .. } => {
                    p.rng_slot[i] = p.rng_seeds.len();
                    p.rng_seeds.push(*seed);
                }
                _ => {}
            }
        }
        for (param, node) in updates {
            if let Some(dims) = p.nodes[*node].ty.concrete() {
                if dims.as_slice() != param.shape().as_slice() {
                    return Err(ValueShape::error(
                        param.name(),
                        ValueRole::Update,
                        Dims::known(&param.shape()),
                        &dims,
                    ));
                }
            }
            let next = p.params.len();
            let slot = *param_slot.entry(param.id()).or_insert(next);
            if slot == next {
                p.params.push(param.clone());
            }
            if p.updates.iter().any(|&(s, _)| s == slot) {
                return Err(Error::Input {
                    input: param.name().to_string(),
                    expected: "at most one update per parameter".into(),
                    found: "two".into(),
                });
            }
            p.updates.push((slot, *node));
        }
        Ok(p)
    }

    /// Fresh random streams, one per random node, from their seeds.
    pub(crate) fn new_rngs(&self) -> Vec<Rng> {
        self.rng_seeds.iter().map(|&s| Rng::new(s)).collect()
    }
}
