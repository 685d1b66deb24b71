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
                    map.entry(name.to_string()).or_insert(sig);
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
