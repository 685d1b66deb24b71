//! How values are shown to users (the shell, remote consoles, `rpc`).

use std::fmt::Write as _;

use rhai::{Array, Dynamic, Map};

/// A value as the shell prints it: strings quoted, like iex; skitter's own
/// types by what they are, also inside arrays and maps (Rhai's own display
/// of them would be their Rust type's path).
pub fn value(v: &Dynamic) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Dynamic) {
    if let Some(r) = v.read_lock::<super::WorkflowRef>() {
        out.push_str(&r.to_string());
    } else if let Some(wf) = v.read_lock::<crate::workflow::Workflow>() {
        out.push_str(&wf.to_string());
    } else if let Some(op) = v.read_lock::<crate::workflow::Operator>() {
        let _ = write!(out, "#Operator<{}>", *op);
    } else if let Some(s) = v.read_lock::<super::user_operator_api::StrategyValue>() {
        let _ = write!(out, "#Strategy<{}>", s.kind.name());
    } else if let Some(items) = v.read_lock::<Array>() {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_value(out, item);
        }
        out.push(']');
    } else if let Some(map) = v.read_lock::<Map>() {
        out.push_str("#{");
        for (i, (key, item)) in map.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{:?}: ", key.as_str());
            write_value(out, item);
        }
        out.push('}');
    } else {
        let _ = write!(out, "{v:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skitters_types_show_by_what_they_are_inside_arrays_and_maps() {
        let mut m = Map::new();
        m.insert("ref".into(), Dynamic::from(super::super::WorkflowRef { id: 3 }));
        m.insert("status".into(), Dynamic::from("finished"));
        let v = Dynamic::from_array(vec![Dynamic::from_map(m), Dynamic::from_int(1), Dynamic::from_array(vec![])]);
        assert_eq!(value(&v), r#"[#{"ref": #WorkflowRef<3>, "status": "finished"}, 1, []]"#);
        // Plain values as Rhai shows them.
        let mut plain = Map::new();
        plain.insert("a b".into(), Dynamic::from_array(vec![Dynamic::from("x"), Dynamic::from_char('c'), Dynamic::from_float(1.5)]));
        let plain = Dynamic::from_map(plain);
        assert_eq!(value(&plain), format!("{plain:?}"));
    }
}
