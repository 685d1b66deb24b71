//! Deciding whether an entry is complete, with Rhai's own parser: input that
//! ends inside a block, list, map, string, call or comment goes on.

use rhai::{Engine, LexError, ParseErrorType};

/// A line of its own that abandons a multi-line entry, like iex's `#iex:break`.
pub const BREAK: &str = "#break";

/// Whether `text` is a whole entry (valid, or wrong in a way more lines cannot fix).
pub fn is_complete(engine: &Engine, text: &str) -> bool {
    if text.trim().is_empty() {
        return true;
    }
    if in_block_comment(text) {
        return false;
    }
    match engine.compile(text) {
        Ok(_) => true,
        Err(e) => !ends_early(e.err_type(), e.position(), text),
    }
}

fn ends_early(err: &ParseErrorType, pos: rhai::Position, text: &str) -> bool {
    match err {
        ParseErrorType::UnexpectedEOF => true,
        ParseErrorType::BadInput(LexError::UnterminatedString) => true,
        // Any other error found where the input ends: more input may fix it.
        _ => at_end(pos, text),
    }
}

/// Whether `text` ends inside a (nestable) block comment, which Rhai's
/// parser accepts as the end of the script.
fn in_block_comment(text: &str) -> bool {
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => {
                    chars.next();
                }
                c if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('*')) => {
                chars.next();
                depth += 1;
            }
            ('*', Some('/')) if depth > 0 => {
                chars.next();
                depth -= 1;
            }
            ('/', Some('/')) if depth == 0 => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ('"' | '`', _) if depth == 0 => quote = Some(c),
            _ => {}
        }
    }
    depth > 0
}

/// Whether `pos` is at (or past) the end of `text`: the parser ran out of input.
fn at_end(pos: rhai::Position, text: &str) -> bool {
    let Some(line) = pos.line() else { return true };
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.len().max(1);
    if line > last {
        return true;
    }
    if line < last {
        // Only trailing blank lines or comments after the position.
        return lines[line..].iter().all(|l| l.trim().is_empty() || l.trim_start().starts_with("//"));
    }
    let col = pos.position().unwrap_or(0);
    col > lines[last - 1].trim_end().chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(text: &str) -> bool {
        is_complete(&Engine::new(), text)
    }

    #[test]
    fn open_constructs_continue() {
        assert!(!complete("fn f(x) {"));
        assert!(!complete("let a = [1,"));
        assert!(!complete("let m = #{ a: 1,"));
        assert!(!complete("let s = \"abc"));
        assert!(!complete("foo(1,"));
        assert!(!complete("/* comment"));
        assert!(!complete("fn f(x) {\n  x +"));
        assert!(!complete("let wf = workflow().\n"));
        assert!(!complete("let wf = workflow().\n    map(|x| x)."));
    }

    #[test]
    fn whole_or_hopeless_entries_end() {
        assert!(complete("1 + 1"));
        assert!(complete("fn f(x) {\n x\n}"));
        assert!(complete("let = 5"));
        assert!(complete("1 +* 2"));
        assert!(complete(""));
    }
}
