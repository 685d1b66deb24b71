//! The functions of Rhai's standard packages (and skitter's `words`) that
//! the tree runs itself, on the types Rhai defines them for. A call is
//! `name(receiver, args...)` whether written as a function or a method.
//! `None` means Rhai must decide: an error, or a type the tree does not take.

use rhai::{Array, Dynamic, ImmutableString, Map, FLOAT, INT};

use super::ops::equals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Len,
    IsEmpty,
    Contains,
    StartsWith,
    EndsWith,
    IndexOf,
    SubString,
    ToUpper,
    ToLower,
    Split,
    Words,
    ToString,
    ParseInt,
    ParseFloat,
    ToInt,
    ToFloat,
    Abs,
    Floor,
    Ceiling,
    Round,
    Sqrt,
    Min,
    Max,
    Keys,
    Values,
}

/// The functions the tree runs, by Rhai's name and number of arguments
/// (the receiver counted).
pub const BUILTINS: [(&str, usize, Builtin); 25] = [
    ("len", 1, Builtin::Len),
    ("is_empty", 1, Builtin::IsEmpty),
    ("contains", 2, Builtin::Contains),
    ("starts_with", 2, Builtin::StartsWith),
    ("ends_with", 2, Builtin::EndsWith),
    ("index_of", 2, Builtin::IndexOf),
    ("sub_string", 3, Builtin::SubString),
    ("to_upper", 1, Builtin::ToUpper),
    ("to_lower", 1, Builtin::ToLower),
    ("split", 2, Builtin::Split),
    ("words", 1, Builtin::Words),
    ("to_string", 1, Builtin::ToString),
    ("parse_int", 1, Builtin::ParseInt),
    ("parse_float", 1, Builtin::ParseFloat),
    ("to_int", 1, Builtin::ToInt),
    ("to_float", 1, Builtin::ToFloat),
    ("abs", 1, Builtin::Abs),
    ("floor", 1, Builtin::Floor),
    ("ceiling", 1, Builtin::Ceiling),
    ("round", 1, Builtin::Round),
    ("sqrt", 1, Builtin::Sqrt),
    ("min", 2, Builtin::Min),
    ("max", 2, Builtin::Max),
    ("keys", 1, Builtin::Keys),
    ("values", 1, Builtin::Values),
];

impl Builtin {
    pub fn of(name: &str, arity: usize) -> Option<Builtin> {
        BUILTINS.iter().find(|(n, a, _)| *n == name && *a == arity).map(|(.., b)| *b)
    }

    /// Whether `name` is one of the functions the tree runs (a script that
    /// defines its own keeps Rhai's calls).
    pub fn is_name(name: &str) -> bool {
        BUILTINS.iter().any(|(n, ..)| *n == name)
    }
}

fn string(v: &Dynamic) -> Option<rhai::DynamicReadLock<'_, ImmutableString>> {
    v.read_lock::<ImmutableString>()
}

fn str_of(s: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(s))
}

fn int(i: INT) -> Option<Dynamic> {
    Some(Dynamic::from_int(i))
}

fn float(x: FLOAT) -> Option<Dynamic> {
    Some(Dynamic::from_float(x))
}

/// The number of characters of `s` before byte `at`.
fn char_index(s: &str, at: usize) -> INT {
    INT::try_from(s[..at].chars().count()).unwrap_or(-1)
}

/// `b(text)` for the functions of one string that need no `Dynamic` of it:
/// `Some(value)` (`value` as `call` gives it), or `None` for the others.
pub fn on_text(b: Builtin, text: &str) -> Option<Option<Dynamic>> {
    match b {
        Builtin::ParseInt => Some(parse_int(text)),
        Builtin::ParseFloat => Some(parse_float(text)),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<Dynamic> {
    int(text.trim().parse::<INT>().ok()?)
}

fn parse_float(text: &str) -> Option<Dynamic> {
    float(text.trim().parse::<FLOAT>().ok()?)
}

/// `s.contains(t)`, `s.starts_with(t)`, `s.ends_with(t)` of two strings;
/// `None` for another function.
pub fn text_test(b: Builtin, s: &str, t: &str) -> Option<bool> {
    Some(match b {
        Builtin::Contains => s.contains(t),
        Builtin::StartsWith => s.starts_with(t),
        Builtin::EndsWith => s.ends_with(t),
        _ => return None,
    })
}

/// Appends `s` in upper case (`to_upper`) or lower case (`to_lower`).
pub fn push_cased(text: &mut super::ops::Text, upper: bool, s: &str) {
    // ASCII, the common case, is changed in place after it is appended.
    if !s.is_ascii() {
        text.push_str(&if upper { s.to_uppercase() } else { s.to_lowercase() });
        return;
    }
    let start = text.len();
    text.push_str(s);
    if upper {
        text[start..].make_ascii_uppercase();
    } else {
        text[start..].make_ascii_lowercase();
    }
}

/// `b(recv, args...)`.
pub fn call(b: Builtin, recv: &Dynamic, args: &[&Dynamic]) -> Option<Dynamic> {
    if recv.is_shared() {
        return call(b, &recv.flatten_clone(), args);
    }
    let arg = |i: usize| args.get(i).copied();
    match b {
        Builtin::Len => {
            if let Some(s) = string(recv) {
                int(INT::try_from(s.chars().count()).unwrap_or(INT::MAX))
            } else if let Some(a) = recv.read_lock::<Array>() {
                int(a.len() as INT)
            } else {
                int(recv.read_lock::<Map>()?.len() as INT)
            }
        }
        Builtin::IsEmpty => {
            if let Some(s) = string(recv) {
                Some(Dynamic::from_bool(s.is_empty()))
            } else if let Some(a) = recv.read_lock::<Array>() {
                Some(Dynamic::from_bool(a.is_empty()))
            } else {
                Some(Dynamic::from_bool(recv.read_lock::<Map>()?.is_empty()))
            }
        }
        Builtin::Contains => {
            let x = arg(0)?;
            if let Some(s) = string(recv) {
                if let Some(t) = string(x) {
                    Some(Dynamic::from_bool(text_test(b, &s, &t)?))
                } else {
                    Some(Dynamic::from_bool(s.contains(x.as_char().ok()?)))
                }
            } else if let Some(a) = recv.read_lock::<Array>() {
                for item in a.iter() {
                    if equals(item, x)? {
                        return Some(Dynamic::TRUE);
                    }
                }
                Some(Dynamic::FALSE)
            } else {
                let m = recv.read_lock::<Map>()?;
                Some(Dynamic::from_bool(m.contains_key(string(x)?.as_str())))
            }
        }
        Builtin::StartsWith | Builtin::EndsWith => {
            let s = string(recv)?;
            let x = arg(0)?;
            let starts = b == Builtin::StartsWith;
            Some(Dynamic::from_bool(match string(x) {
                Some(t) => text_test(b, &s, &t)?,
                None if starts => s.starts_with(x.as_char().ok()?),
                None => s.ends_with(x.as_char().ok()?),
            }))
        }
        Builtin::IndexOf => {
            let s = string(recv)?;
            let x = arg(0)?;
            // The argument's type is checked first, even in an empty string.
            let at = match string(x) {
                Some(t) => s.find(t.as_str()),
                None => s.find(x.as_char().ok()?),
            };
            let at = at.filter(|_| !s.is_empty());
            int(at.map_or(-1, |at| char_index(&s, at)))
        }
        Builtin::SubString => {
            let s = string(recv)?;
            let (start, len) = (arg(0)?.as_int().ok()?, arg(1)?.as_int().ok()?);
            if start < 0 {
                return None;
            }
            if len <= 0 {
                return Some(str_of(""));
            }
            let taken: String = s.chars().skip(usize::try_from(start).ok()?).take(usize::try_from(len).ok()?).collect();
            Some(str_of(&taken))
        }
        Builtin::ToUpper | Builtin::ToLower => {
            let mut t = super::ops::Text::new();
            push_cased(&mut t, b == Builtin::ToUpper, &string(recv)?);
            Some(Dynamic::from(ImmutableString::from(t)))
        }
        Builtin::Split => {
            let s = string(recv)?;
            let d = string(arg(0)?)?;
            // As Rhai's `split(string, delimiter)`.
            // The string itself when there is nothing to split; a
            // one-character delimiter is found with `memchr`.
            let parts: Array = if s.is_empty() {
                vec![Dynamic::from(s.clone())]
            } else {
                let mut chars = d.chars();
                let parts: Array = match (chars.next(), chars.next()) {
                    (Some(c), None) => s.split(c).map(str_of).collect(),
                    _ => s.split(d.as_str()).map(str_of).collect(),
                };
                if parts.len() == 1 {
                    vec![Dynamic::from(s.clone())]
                } else {
                    parts
                }
            };
            Some(Dynamic::from_array(parts))
        }
        Builtin::Words => {
            let s = string(recv)?;
            // As skitter's `words(text)`.
            let mut words = Array::with_capacity(8);
            crate::script::workflow_api::for_each_word(&s, |w| words.push(str_of(w)));
            Some(Dynamic::from_array(words))
        }
        Builtin::ToString => {
            if let Some(s) = string(recv) {
                return Some(Dynamic::from(s.clone()));
            }
            let mut text = super::ops::Text::new();
            super::ops::push_shown(&mut text, recv)?;
            Some(Dynamic::from(ImmutableString::from(text)))
        }
        Builtin::ParseInt => parse_int(&string(recv)?),
        Builtin::ParseFloat => parse_float(&string(recv)?),
        Builtin::ToInt => {
            if recv.is_int() {
                return Some(recv.clone());
            }
            let x = recv.as_float().ok()?;
            if x > INT::MAX as FLOAT || x < INT::MIN as FLOAT || x.is_nan() {
                return None;
            }
            int(x.trunc() as INT)
        }
        Builtin::ToFloat => {
            if recv.is_float() {
                return Some(recv.clone());
            }
            float(recv.as_int().ok()? as FLOAT)
        }
        Builtin::Abs => match recv.as_int() {
            Ok(i) => int(i.checked_abs()?),
            Err(_) => float(recv.as_float().ok()?.abs()),
        },
        Builtin::Floor => float(recv.as_float().ok()?.floor()),
        Builtin::Ceiling => float(recv.as_float().ok()?.ceil()),
        Builtin::Round => float(recv.as_float().ok()?.round()),
        Builtin::Sqrt => float(recv.as_float().ok()?.sqrt()),
        Builtin::Min | Builtin::Max => {
            let other = arg(0)?;
            let min = b == Builtin::Min;
            match (recv.as_int(), other.as_int()) {
                (Ok(x), Ok(y)) => int(if (min && x <= y) || (!min && x >= y) { x } else { y }),
                // Rhai's float `min`/`max`, for two floats or a float and an integer.
                _ => {
                    let x = recv.as_float().or_else(|_| recv.as_int().map(|i| i as FLOAT)).ok()?;
                    let y = other.as_float().or_else(|_| other.as_int().map(|i| i as FLOAT)).ok()?;
                    float(if (min && x <= y) || (!min && x >= y) { x } else { y })
                }
            }
        }
        Builtin::Keys => {
            let m = recv.read_lock::<Map>()?;
            Some(Dynamic::from_array(m.keys().map(|k| str_of(k)).collect()))
        }
        Builtin::Values => {
            let m = recv.read_lock::<Map>()?;
            Some(Dynamic::from_array(m.values().cloned().collect()))
        }
    }
}
