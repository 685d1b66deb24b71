//! How the shell shows values and errors.

use colored::Colorize;
use rhai::Dynamic;

use crate::script::session::ErrorKind;
use crate::script::ScriptError;

/// A value as the shell prints it: strings quoted, like iex.
pub fn value(v: &Dynamic) -> String {
    if let Some(r) = v.read_lock::<crate::script::WorkflowRef>() {
        return r.to_string();
    }
    if let Some(wf) = v.read_lock::<crate::workflow::Workflow>() {
        return wf.to_string();
    }
    if let Some(op) = v.read_lock::<crate::workflow::Operator>() {
        return format!("#Operator<{}>", *op);
    }
    format!("{v:?}")
}

/// An error: the message in red, then the source line with a caret.
pub fn error(e: &ScriptError) -> String {
    let head = match e.kind {
        ErrorKind::Syntax => "** (SyntaxError)",
        ErrorKind::Runtime => "** (RuntimeError)",
        ErrorKind::Interrupted => "** (Interrupted)",
    };
    let mut out = format!("{} {}", head.red().bold(), e.message.red());
    if let Some(ex) = &e.excerpt {
        for line in ex.lines() {
            out.push('\n');
            if line.trim_end().ends_with('^') && line.trim().chars().all(|c| c == '^' || c == '|' || c == ' ') {
                out.push_str(&line.yellow().bold().to_string());
            } else {
                out.push_str(line);
            }
        }
    }
    out
}
