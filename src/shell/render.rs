//! How the shell shows values and errors.

use colored::Colorize;

use crate::script::session::ErrorKind;
use crate::script::ScriptError;

pub use crate::script::render::value;

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
