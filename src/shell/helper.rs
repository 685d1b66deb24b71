//! The rustyline helper: completion and signature hints, asked of the
//! backend (the local session, or the remote node).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use colored::Colorize;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::Context;

use super::Backend;

pub struct ShellHelper {
    pub backend: Rc<RefCell<dyn Backend>>,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier ending at `pos` and whether it follows a `.`.
fn word_at(line: &str, pos: usize) -> (usize, &str, bool) {
    let before = &line[..pos];
    let start = before.char_indices().rev().take_while(|(_, c)| is_ident(*c)).last().map(|(i, _)| i).unwrap_or(pos);
    let method = before[..start].ends_with('.');
    (start, &before[start..], method)
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, word, method) = word_at(line, pos);
        if word.is_empty() && !method {
            return Ok((pos, Vec::new()));
        }
        let names = self.backend.borrow().complete(word, method);
        Ok((start, names.into_iter().map(|n| Pair { display: n.clone(), replacement: n }).collect()))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;

    /// After `name(`, the rest of `name`'s signature.
    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos != line.len() || !line.ends_with('(') {
            return None;
        }
        let (_, name, _) = word_at(line, pos - 1);
        if name.is_empty() {
            return None;
        }
        let signature = self.backend.borrow().signature(name)?;
        signature.split_once('(').map(|(_, rest)| rest.to_string())
    }
}

impl Highlighter for ShellHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(hint.dimmed().to_string())
    }
}

impl Validator for ShellHelper {}

impl rustyline::Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::word_at;

    #[test]
    fn words_and_methods() {
        assert_eq!(word_at("let r = dep", 11), (8, "dep", false));
        assert_eq!(word_at("wf.ma", 5), (3, "ma", true));
        assert_eq!(word_at("x + ", 4), (4, "", false));
    }
}
