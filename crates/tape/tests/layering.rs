//! The module graph of `tape` is layered like a staged compiler: data types below the passes
//! that use them. This test reads every module's source, collects the `crate::module` paths it
//! mentions, and checks that the only cycle is the one a graph needs (`op` ↔ `expr` ↔ `custom`
//! ↔ `scan_body`: an expression holds an op, an op may hold a parameter, a user's op or a scan's
//! step body, a user's op builds expressions for its gradient, and a step body is expressions).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file below `dir`, concatenated.
fn read_tree(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text += &read_tree(&path);
        } else if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).unwrap();
        }
    }
    text
}

/// Module name → the crate modules its source mentions (`kernels/*` count as `kernels`).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    files.push(("kernels".into(), read_tree(&src.join("kernels"))));
    let names: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let mut graph = BTreeMap::new();
    for (name, text) in &files {
        if name == "lib" {
            continue;
        }
        // Test modules may use anything; only the code itself is layered.
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut targets = vec![target];
            // `use crate::{a, b::C}` names several modules.
            if rest.starts_with('{') {
                let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
                targets = group
                    .split(',')
                    .map(|t| t.trim().split("::").next().unwrap().to_string())
                    .collect();
            }
            for t in targets {
                if names.contains(&t) && t != *name && t != "lib" {
                    deps.insert(t);
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn the_only_module_cycle_is_op_expr_custom() {
    let graph = module_graph();
    let expected: BTreeSet<String> = ["op", "expr", "custom", "scan_body"]
        .map(String::from)
        .into();
    assert_eq!(cycles(&graph), vec![expected], "module graph: {graph:#?}");
}

#[test]
fn compiler_stages_do_not_reach_up_to_the_public_function() {
    let graph = module_graph();
    for stage in ["ir", "instr", "plan", "exec", "rewrite", "print"] {
        assert!(
            !graph[stage].contains("function"),
            "{stage} depends on function: {:?}",
            graph[stage]
        );
    }
    // The instruction set is plain data below planning and execution.
    for above in ["plan", "exec", "ir", "rewrite", "function"] {
        assert!(!graph["instr"].contains(above), "instr uses {above}");
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut graph = module_graph();
    graph.get_mut("ir").unwrap().insert("function".into());
    assert!(cycles(&graph)
        .iter()
        .any(|c| c.contains("ir") && c.contains("function")));
}
