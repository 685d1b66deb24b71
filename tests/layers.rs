//! The layers hold (issue 26): every module of `src/` uses only modules of
//! its own layer or of the layers below it, in the order of `src/lib.rs`'s
//! map (DESIGN's layout), and the files import each other in at most two
//! circles, each inside one folder. Read from the source's `crate::` and
//! `super::` paths (test modules left out); a parent module declaring or
//! re-exporting its children is structure, not use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top to bottom: a layer may use itself and the layers after it.
const LAYERS: [&str; 12] =
    ["main", "lib", "cli", "shell", "error", "deploy", "release", "runtime", "net", "script", "workflow", "settings"];

/// The module path of a source file: `runtime/dataflow/sink.rs` -> runtime::dataflow::sink.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests beside the code may use what they like.
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(cut) => text[..cut].to_string(),
                None => text,
            };
            out.insert(rel, text);
        }
    }
}

/// The identifiers of a path starting at `at` in `text`: `a::b::C`.
fn path_at(text: &str, at: usize) -> Vec<String> {
    let rest = &text[at..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
    rest[..end].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Every module path `text` names through `crate::` or `super::` (with
/// `use crate::{a, b::c}` groups opened).
fn references(me: &[String], text: &str) -> Vec<Vec<String>> {
    // `super` of `a/b/c.rs` (module a::b::c) and of `a/b/c/mod.rs` alike is a::b.
    let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix) {
            let at = from + i;
            from = at + prefix.len();
            if at > 0 && text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if text[from..].starts_with('{') {
                let close = text[from..].find('}').map_or(text.len(), |c| from + c);
                for item in text[from + 1..close].split(',') {
                    let item = item.trim().split('{').next().unwrap_or("");
                    let segs: Vec<String> = item.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                    out.push(base.iter().cloned().chain(segs).collect());
                }
            } else {
                out.push(base.iter().cloned().chain(path_at(text, from)).collect());
            }
        }
    }
    out
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let by_module: BTreeMap<Vec<String>, String> = files.keys().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        let me = module_of(file);
        for path in references(&me, text) {
            // The longest prefix of the path that is a file.
            let target = (1..=path.len()).rev().find_map(|n| by_module.get(&path[..n]));
            if let Some(target) = target.filter(|t| *t != file) {
                edges.entry(file.clone()).or_default().insert(target.clone());
            }
        }
    }
    Graph { edges }
}

fn layer(file: &str) -> &str {
    let top = file.split('/').next().unwrap_or(file);
    top.trim_end_matches(".rs")
}

#[test]
fn every_module_uses_only_its_layer_and_the_layers_below() {
    let g = graph();
    let rank = |f: &str| LAYERS.iter().position(|l| *l == layer(f)).unwrap_or_else(|| panic!("{f} is in no layer of {LAYERS:?}"));
    let broken: Vec<String> =
        g.edges.iter().flat_map(|(a, bs)| bs.iter().filter(|b| rank(b) < rank(a)).map(move |b| format!("{a} -> {b}"))).collect();
    assert!(broken.is_empty(), "modules that reach up the layers ({LAYERS:?}):\n  {}", broken.join("\n  "));
}

/// Tarjan's strongly connected components of more than one file.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                t.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                t.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    let nodes: Vec<&str> = g.edges.keys().map(String::as_str).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn files_import_each_other_in_at_most_two_circles_each_inside_one_folder() {
    let found = circles(&graph());
    let shown: Vec<String> = found.iter().map(|c| c.join(" ")).collect();
    assert!(found.len() <= 2, "import circles:\n  {}", shown.join("\n  "));
    for c in &found {
        let folder = |f: &String| f.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        assert!(c.iter().all(|f| folder(f) == folder(&c[0])), "a circle across folders: {}", c.join(" "));
    }
}

#[test]
fn the_reader_sees_paths_and_groups() {
    let me = vec!["runtime".to_string(), "dataflow".to_string(), "sink".to_string()];
    let refs = references(&me, "use crate::{net::Value, script::app::{App, X}};\nlet x = super::deadline::get();");
    assert!(refs.contains(&vec!["net".into(), "Value".into()]), "{refs:?}");
    assert!(refs.contains(&vec!["script".into(), "app".into()]), "{refs:?}");
    assert!(refs.contains(&vec!["runtime".into(), "dataflow".into(), "deadline".into(), "get".into()]), "{refs:?}");
}
