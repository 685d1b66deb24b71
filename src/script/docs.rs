//! Documentation of the functions scripts can call, read from the engine's
//! own metadata: the doc comments of the packages. The shell's `h()` and the
//! tests that run every example read the same text.

use rhai::Engine;
use serde::Deserialize;

/// One function's documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnDoc {
    pub name: String,
    /// `name(param: Type, ...) -> Type`
    pub signature: String,
    /// The doc comment without its `///` markers.
    pub doc: String,
}

impl FnDoc {
    /// The first paragraph of the doc: what the function does, in short.
    pub fn summary(&self) -> String {
        self.doc.split("\n\n").next().unwrap_or_default().replace('\n', " ")
    }

    /// The ```rhai blocks of the doc.
    pub fn examples(&self) -> Vec<String> {
        rhai_blocks(&self.doc)
    }
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<FnMeta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FnMeta {
    name: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

/// Every documented function registered on `engine` (Rhai's standard library
/// left out), sorted by name; overloads each have their own entry.
pub fn function_docs(engine: &Engine) -> Vec<FnDoc> {
    let Ok(json) = engine.gen_fn_metadata_to_json(false) else { return Vec::new() };
    let Ok(meta) = serde_json::from_str::<Metadata>(&json) else { return Vec::new() };
    let mut docs: Vec<FnDoc> = meta
        .functions
        .into_iter()
        .filter(|f| !f.doc_comments.is_empty())
        .map(|f| FnDoc { doc: strip_markers(&f.doc_comments), name: f.name, signature: clean_signature(&f.signature) })
        .collect();
    docs.sort_by(|a, b| a.name.cmp(&b.name).then(a.signature.cmp(&b.signature)));
    docs.dedup();
    docs
}

/// Shows a fallible function's return type as scripts see it: `-> Workflow`,
/// not the Rust `-> RhaiResult<Workflow>` it is declared with.
fn clean_signature(signature: &str) -> String {
    match signature.split_once("-> RhaiResult<") {
        Some((head, ret)) if ret.ends_with('>') => format!("{head}-> {}", &ret[..ret.len() - 1]),
        _ => signature.to_string(),
    }
}

/// Removes `///` from doc comment lines.
fn strip_markers(comments: &[String]) -> String {
    comments
        .iter()
        .flat_map(|c| c.lines())
        .map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("///").unwrap_or(l);
            l.strip_prefix(' ').unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The contents of every ```rhai fenced block in a Markdown text.
pub fn rhai_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed.starts_with("```rhai") => current = Some(String::new()),
            Some(_) if trimmed == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rhai_blocks_only() {
        let md = "text\n```rhai\nlet a = 1;\n```\n```sh\nls\n```\n```rhai\n2\n```\n";
        assert_eq!(rhai_blocks(md), vec!["let a = 1;\n".to_string(), "2\n".to_string()]);
    }

    #[test]
    fn the_workflow_package_is_documented_with_examples() {
        let engine = crate::script::new_engine(&crate::script::EngineEnv::new(None, crate::script::engine::stdout_output()));
        let docs = function_docs(&engine);
        for name in [
            "workflow",
            "map",
            "flat_map",
            "filter",
            "keyed_reduce",
            "count",
            "inspect",
            "read_lines",
            "stream_source",
            "link",
            "node",
            "to_dot",
            "priv_path",
            "words",
        ] {
            let doc = docs.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name} is not documented"));
            assert!(!doc.examples().is_empty(), "{name} has no example");
        }
    }
}
