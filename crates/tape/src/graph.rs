//! Walking expression graphs: the topological order of the nodes below some roots (the "tape"),
//! with every read of one `Param` counted as the same node.

use crate::error::Result;
use crate::expr::Expr;
use crate::op::Op;
use std::collections::HashMap;

/// Identity of a node for graph purposes: a parameter's id for parameter leaves (so all its
/// `expr()` handles are one variable), the node's id otherwise. Both come from one counter.
pub(crate) fn key(e: &Expr) -> usize {
    match e.op() {
        Op::Param(p) => p.id(),
        _ => e.id(),
    }
}

/// The nodes reachable from `roots`, each once, every node after its inputs. Fails with the
/// first build error met (errors propagate to dependants, so this is the root cause).
pub(crate) fn topo(roots: &[Expr]) -> Result<Vec<Expr>> {
    let mut order = Vec::new();
    let mut seen: HashMap<usize, ()> = HashMap::new();
    // Iterative depth-first search: long chains must not overflow the stack.
    let mut stack: Vec<(Expr, usize)> = Vec::new();
    for root in roots {
        if seen.contains_key(&key(root)) {
            continue;
        }
        seen.insert(key(root), ());
        stack.push((root.clone(), 0));
        while let Some((node, next)) = stack.pop() {
            if let Some(child) = node.inputs().get(next).cloned() {
                stack.push((node, next + 1));
                if seen.insert(key(&child), ()).is_none() {
                    stack.push((child, 0));
                }
            } else {
                order.push(node);
            }
        }
    }
    for e in &order {
        e.ty()?;
    }
    Ok(order)
}

/// Position of each node of `order` by key.
pub(crate) fn positions(order: &[Expr]) -> HashMap<usize, usize> {
    order.iter().enumerate().map(|(i, e)| (key(e), i)).collect()
}
