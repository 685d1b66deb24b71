//! How values are shown to users (the shell, remote consoles, `rpc`).

use rhai::Dynamic;

/// A value as the shell prints it: strings quoted, like iex.
pub fn value(v: &Dynamic) -> String {
    if let Some(r) = v.read_lock::<super::WorkflowRef>() {
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
