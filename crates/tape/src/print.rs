//! Text dumps of graphs and plans, one node or instruction per line (in the spirit of Theano's
//! `debugprint`), for error messages, tests and documentation.

use crate::expr::Expr;
use crate::graph::{key, positions, topo};
use crate::instr::{Call, Plan, Src};
use crate::ir::Program;
use crate::op::Op;
use std::fmt::Write;

impl Expr {
    /// A readable listing of the graph below this node, one node per line in evaluation order
    /// (in the spirit of Theano's `debugprint`).
    pub fn debug_print(&self) -> String {
        graph(std::slice::from_ref(self))
    }
}

/// Lists the graph below `roots`: `%i = op(%a, %b) : [dims]  @ file:line`.
pub(crate) fn graph(roots: &[Expr]) -> String {
    let order = match topo(roots) {
        Ok(o) => o,
        Err(e) => return format!("graph in error: {e}\n"),
    };
    let pos = positions(&order);
    let mut s = String::new();
    for (i, e) in order.iter().enumerate() {
        let args: Vec<String> = e
            .inputs()
            .iter()
            .map(|x| format!("%{}", pos[&key(x)]))
            .collect();
        let ty = e.ty().map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "%{i} = {}({}) : {ty}  @ {}",
            e.op().name(),
            args.join(", "),
            e.location()
        );
        if let Op::Scan(body) = e.op() {
            s += &indent(&graph(&body.roots));
        }
    }
    s
}

/// A nested listing (a scan's body), indented under its scan's line.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    │ {l}\n")).collect()
}

/// Lists a compiled function's rewritten graph, marking its outputs; each scan's body follows
/// its line, indented.
pub(crate) fn ir(program: &Program) -> String {
    let outputs = &program.outputs;
    let mut s = String::new();
    for (i, n) in program.nodes.iter().enumerate() {
        let args: Vec<String> = n.inputs.iter().map(|j| format!("%{j}")).collect();
        let mark = outputs
            .iter()
            .position(|&o| o == i)
            .map(|k| format!("  -> output {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "%{i} = {}({}) : {}{mark}",
            n.op.name(),
            args.join(", "),
            n.ty
        );
        if let Op::Scan(_) = n.op {
            s += &indent(&ir(program.body(i)));
        }
    }
    s
}

/// An operand by name: `arg:x`, `param:hid1.w`, `const0`, `buf3`.
fn src(f: &Program, s: &Src) -> String {
    match s {
        Src::Arg(i) => format!("arg:{}", f.inputs[*i].0),
        Src::Param(i) => format!("param:{}", f.params[*i].name()),
        Src::Const(i) => format!("const{i}"),
        Src::Work(b) => format!("buf{b}"),
        Src::Part { buf, offset, len } => format!("buf{buf}[{offset}..{}]", offset + len),
    }
}

/// Lists a plan: `buf3 <- gemm 32x64x100 (arg:x, param:w) + bias param:b   # %5 matmul`. A
/// step body's plan lists its hoisted instructions under `once per scan run:`, the others under
/// `every step:`.
pub(crate) fn plan(f: &Program, p: &Plan) -> String {
    let mut s = String::new();
    for (k, (ins, &node)) in p.instrs.iter().zip(&p.nodes).enumerate() {
        // A step body's hoisted instructions come first, under their own heading.
        if p.hoisted > 0 && k == 0 {
            s += "once per scan run:\n";
        }
        if p.hoisted > 0 && k == p.hoisted {
            s += "every step:\n";
        }
        let what = ins.render(&|x| src(f, x));
        let _ = writeln!(s, "{what}   # %{node} {}", f.nodes[node].op.name());
        if let Call::Scan(c) = &ins.call {
            s += &indent(&plan(f.body(c.node), &p.nested[c.nested].plan));
        }
    }
    let sizes = p.workspace_sizes();
    let _ = writeln!(
        s,
        "workspace: {} buffers, {} floats",
        sizes.len(),
        sizes.iter().sum::<usize>()
    );
    s
}
