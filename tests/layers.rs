//! The crate's layers import downward only, and no module imports another in a cycle.
//!
//! Reads `src/` and collects, per top-level module, every `crate::X` path outside comments; per
//! file, every `super::Y` path naming a sibling file. Fails when a module names one of a higher
//! layer (see the README's "Architecture"), when a model names a backend, or when the top-level
//! modules or the files inside one module form a cycle. (`mod.rs` is its module's facade: it
//! declares and re-exports its children, so its edges to them are not counted.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module: a module may name modules of its own layer or below,
/// never above. Within a layer the module graph must still be acyclic.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("rng", 0),
    ("num", 0),
    ("io", 0),
    ("tasks", 1),
    ("ops", 1),
    ("gpu", 2),
    ("backend", 3),
    ("models", 4),
    ("trainers", 5),
    ("experiment", 6),
    ("drift", 7),
    ("measure", 7),
    ("report", 7),
    ("sweep", 8),
];

/// Pairs `(a, b)` where `a` must not name `b` although `b`'s layer is lower: a model never names
/// a backend (or the GPU under the backends); it sees the ops contracts only.
const FORBIDDEN: &[(&str, &str)] = &[("models", "backend"), ("models", "gpu")];

fn layer(module: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/layers.rs"))
        .1
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (line comments and doc comments).
fn code_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// Every identifier following `prefix` (e.g. `crate::`) in `line`.
fn names_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
    }
    out
}

/// A cycle in `graph`, if any (as the list of its nodes).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = stack.iter().position(|s| s == n).unwrap();
                return Some(stack[i..].to_vec());
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn layers_import_downward_and_nothing_imports_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "bin" || top == "main" {
            continue;
        }
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let dir = f.parent().unwrap().to_path_buf();
        for line in code_lines(f) {
            for other in names_after(&line, "crate::") {
                if other == top || !LAYERS.iter().any(|(m, _)| *m == other) {
                    continue;
                }
                modules
                    .entry(top.clone())
                    .or_default()
                    .insert(other.to_string());
                if layer(other) > layer(&top) || FORBIDDEN.contains(&(top.as_str(), other)) {
                    upward.push(format!("{} names crate::{other}", rel.display()));
                }
            }
            if stem != "mod" {
                for sib in names_after(&line, "super::") {
                    if sib != stem
                        && (dir.join(format!("{sib}.rs")).exists()
                            || dir.join(sib).join("mod.rs").exists())
                    {
                        siblings
                            .entry(dir.clone())
                            .or_default()
                            .entry(stem.clone())
                            .or_default()
                            .insert(sib.to_string());
                    }
                }
            }
        }
    }
    assert!(modules.len() >= 10, "found too few modules: {modules:?}");
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
    assert_eq!(
        find_cycle(&modules),
        None,
        "top-level modules import in a cycle"
    );
    for (dir, g) in &siblings {
        assert_eq!(
            find_cycle(g),
            None,
            "files of {} import each other in a cycle",
            dir.display()
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert!(find_cycle(&g(&[("a", "b"), ("b", "c")])).is_none());
    assert!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])).is_some());
    assert_eq!(
        names_after("use crate::ops::Backend; x::crate::no", "crate::"),
        vec!["ops"]
    );
}
