//! Completion and signature hints for a session: what the shell offers on
//! Tab, locally or (through a console) on a remote node.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::session::Session;

/// Rhai's keywords, for completion.
pub const KEYWORDS: &[&str] = &[
    "let",
    "const",
    "fn",
    "if",
    "else",
    "switch",
    "while",
    "loop",
    "do",
    "until",
    "for",
    "in",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "true",
    "false",
    "this",
    "private",
    "import",
    "export",
    "as",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
    "is_def_fn",
    "is_def_var",
];

/// Signatures of the engine's functions by name, built on first use (not at
/// start-up: it walks every function of the standard library).
#[derive(Default)]
pub struct Completer {
    signatures: RefCell<Option<BTreeMap<String, String>>>,
}

impl Completer {
    fn with_signatures<T>(&self, session: &Session, f: impl FnOnce(&BTreeMap<String, String>) -> T) -> T {
        let mut cache = self.signatures.borrow_mut();
        let map = cache.get_or_insert_with(|| {
            let mut map = BTreeMap::new();
            for sig in session.engine().gen_fn_signatures(true) {
                let Some((name, _)) = sig.split_once('(') else { continue };
                let usable = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_');
                if usable {
                    map.entry(name.to_string()).or_insert_with(|| readable(&sig));
                }
            }
            map
        });
        f(map)
    }

    /// Names that complete `word`: methods after a `.`, else functions,
    /// variables and keywords.
    pub fn complete(&self, session: &Session, word: &str, method: bool) -> Vec<String> {
        let mut names: Vec<String> = self.with_signatures(session, |sigs| sigs.keys().filter(|n| n.starts_with(word)).cloned().collect());
        names.extend(session.script_functions().into_iter().map(|(n, _)| n).filter(|n| n.starts_with(word)));
        if !method {
            names.extend(session.variables().into_iter().filter(|n| n.starts_with(word)));
            names.extend(KEYWORDS.iter().filter(|k| k.starts_with(word)).map(|k| k.to_string()));
        }
        names.sort();
        names.dedup();
        names
    }

    /// A function's signature, for hints.
    pub fn signature(&self, session: &Session, name: &str) -> Option<String> {
        if let Some((n, params)) = session.script_functions().into_iter().find(|(n, _)| n == name) {
            return Some(format!("{n}({})", params.join(", ")));
        }
        self.with_signatures(session, |sigs| sigs.get(name).cloned())
    }
}

/// A signature as a script writer reads it: Rhai's type names, no Rust
/// paths, results or references (`map(wf: Workflow, f: Fn) -> Workflow`,
/// not `... f: Dynamic) -> RhaiResult<Workflow>`).
pub fn readable(sig: &str) -> String {
    let mut sig = sig.to_string();
    for wrapper in ["RhaiResult<", "RhaiResultOf<"] {
        if let Some(i) = sig.find(&format!("-> {wrapper}")) {
            let inner = &sig[i + 3 + wrapper.len()..];
            let inner = inner.strip_suffix('>').unwrap_or(inner).to_string();
            sig = format!("{}-> {inner}", &sig[..i]);
        }
    }
    if let Some(i) = sig.find("-> Result<") {
        let inner = &sig[i + "-> Result<".len()..];
        let inner = inner.split_once(", Box<").map_or(inner, |(ok, _)| ok).to_string();
        sig = format!("{}-> {inner}", &sig[..i]);
    }
    let mut out = String::with_capacity(sig.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let name = word.rsplit("::").next().unwrap_or(word);
        out.push_str(match name {
            "Dynamic" => "any",
            "i64" | "INT" | "i32" | "u64" | "usize" => "int",
            "f64" | "FLOAT" => "float",
            "String" | "ImmutableString" | "str" => "string",
            "Array" => "array",
            "Map" => "map",
            "FnPtr" => "Fn",
            other => other,
        });
        word.clear();
    };
    for c in sig.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.replace("&mut ", "").replace('&', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_read_as_rhai_not_as_rust() {
        assert_eq!(readable("map(wf: Workflow, f: Dynamic) -> RhaiResult<Workflow>"), "map(wf: Workflow, f: any) -> Workflow");
        assert_eq!(
            readable("on(op: crate::workflow::Operator, port: string, f: Dynamic) -> RhaiResult<crate::workflow::Operator>"),
            "on(op: Operator, port: string, f: any) -> Operator"
        );
        assert_eq!(
            readable("split(string: &mut string, delimiter: char, segments: i64) -> Array"),
            "split(string: string, delimiter: char, segments: int) -> array"
        );
        assert_eq!(readable("f(x: &str) -> Result<Map, Box<EvalAltResult>>"), "f(x: string) -> map");
        // Every signature the shell can hint reads so.
        let env = crate::script::EngineEnv::new(None, std::sync::Arc::new(|_: &str| {}));
        let session = Session::new(env, None, None, None).unwrap();
        Completer::default().with_signatures(&session, |sigs| {
            for sig in sigs.values() {
                for rust in ["RhaiResult", "Dynamic", "::", "&mut", "ImmutableString", "i64"] {
                    assert!(!sig.contains(rust), "{sig}");
                }
            }
        });
    }
}
