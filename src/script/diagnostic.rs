//! Errors shown the way users can act on them: where (file:line:col), the
//! source line, and a caret under the position.

use rhai::{EvalAltResult, ParseError, Position};

/// The line `pos` points at in `source`, with a caret under its column.
pub fn excerpt(source: &str, pos: Position) -> Option<String> {
    let line_no = pos.line()?;
    let line = source.lines().nth(line_no - 1)?;
    let col = pos.position().unwrap_or(1).max(1);
    let gutter = format!("{line_no:>4} | ");
    let pad: String = line.chars().take(col - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    Some(format!("{gutter}{line}\n{:>width$}{pad}^", "| ", width = gutter.len()))
}

fn location(file: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_string(),
    }
}

/// A syntax error in `file`: `file:line:col: syntax error: ...`, the line, a caret.
pub fn parse_error(file: &str, source: &str, err: &ParseError) -> String {
    let mut msg = format!("{}: syntax error: {}", location(file, err.position()), err.err_type());
    if let Some(ex) = excerpt(source, err.position()) {
        msg.push('\n');
        msg.push_str(&ex);
    }
    msg
}

/// The innermost position of an evaluation error: for an error inside a
/// function, where in that function it happened.
pub fn innermost(err: &EvalAltResult) -> (Position, Option<&str>) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, pos) => {
            let (p, s) = innermost(inner);
            if p.is_none() {
                (*pos, (!src.is_empty()).then_some(src.as_str()))
            } else {
                (p, s.or((!src.is_empty()).then_some(src.as_str())))
            }
        }
        other => (other.position(), None),
    }
}

/// The message of the innermost error, without Rhai's nesting of calls.
pub fn root_message(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => root_message(inner),
        EvalAltResult::ErrorRuntime(value, _) => {
            if value.is_string() {
                value.to_string()
            } else {
                format!("{value:?}")
            }
        }
        other => strip_position(&other.to_string()).to_string(),
    }
}

/// Rhai's messages end with ` (line L, position P)`; callers place positions themselves.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" (line ") {
        Some(i) if msg.ends_with(')') => &msg[..i],
        _ => msg,
    }
}
