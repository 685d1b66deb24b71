//! Rhai's operators on the values the tree takes, as Rhai computes them
//! (its built-in operators with checked arithmetic, and its string
//! package's `+` that shows a value with `to_string`). `None` means Rhai
//! must decide: an error (overflow, division by zero, a type without the
//! operator) or a value the tree does not take.

use std::cmp::Ordering;

use rhai::{Dynamic, FloatWrapper, ImmutableString, FLOAT, INT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// The operator of Rhai's name for it (`+`, `==`, ...).
    pub fn of(name: &str) -> Option<Op> {
        Some(match name {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Rem,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    pub fn is_comparison(self) -> bool {
        !matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem)
    }
}

/// The kinds of values the tree takes, for choosing an operator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unit,
    Bool,
    Int,
    Float,
    Char,
    Str,
    Array,
    Map,
    Other,
}

fn kind(v: &Dynamic) -> Kind {
    if v.is_unit() {
        Kind::Unit
    } else if v.is_bool() {
        Kind::Bool
    } else if v.is_int() {
        Kind::Int
    } else if v.is_float() {
        Kind::Float
    } else if v.is_char() {
        Kind::Char
    } else if v.is_string() {
        Kind::Str
    } else if v.is_array() {
        Kind::Array
    } else if v.is_map() {
        Kind::Map
    } else {
        Kind::Other
    }
}

/// `a op b` for a comparison, as a `bool` (what `binary` gives, without
/// making a `Dynamic` of it): the numbers and strings first, the rest as
/// `binary` decides.
pub fn test(op: Op, a: &Dynamic, b: &Dynamic) -> Option<bool> {
    debug_assert!(op.is_comparison());
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return compare(op, x.cmp(&y));
    }
    if a.is_shared() || b.is_shared() {
        return binary(op, a, b)?.as_bool().ok();
    }
    match (kind(a), kind(b)) {
        (Kind::Float, Kind::Float) => Some(float_test(op, a.as_float().ok()?, b.as_float().ok()?)),
        (Kind::Float, Kind::Int) => Some(float_test(op, a.as_float().ok()?, b.as_int().ok()? as FLOAT)),
        (Kind::Int, Kind::Float) => Some(float_test(op, a.as_int().ok()? as FLOAT, b.as_float().ok()?)),
        (Kind::Str, Kind::Str) => {
            let (x, y) = (a.read_lock::<ImmutableString>()?, b.read_lock::<ImmutableString>()?);
            compare(op, x.as_str().cmp(y.as_str()))
        }
        _ => binary(op, a, b)?.as_bool().ok(),
    }
}

/// `acc + v` in a chain of `+`, into `text` once the sum is a string.
pub fn add_shown(acc: &mut Dynamic, text: &mut Option<Text>, v: &Dynamic) -> Option<()> {
    match text {
        Some(t) => push_shown(t, v)?,
        None if acc.is_string() => {
            let mut t = Text::new();
            t.push_str(&acc.read_lock::<ImmutableString>()?);
            push_shown(&mut t, v)?;
            *text = Some(t);
        }
        None => *acc = binary(Op::Add, acc, v)?,
    }
    Some(())
}

/// `a op b`.
pub fn binary(op: Op, a: &Dynamic, b: &Dynamic) -> Option<Dynamic> {
    // The commonest first.
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return int(op, x, y);
    }
    // A captured variable is shared: its value is read now.
    if a.is_shared() || b.is_shared() {
        return binary(op, &a.flatten_clone(), &b.flatten_clone());
    }
    use Kind::*;
    Some(match (kind(a), kind(b)) {
        (Int, Int) => int(op, a.as_int().ok()?, b.as_int().ok()?)?,
        (Float, Float) => float(op, a.as_float().ok()?, b.as_float().ok()?)?,
        (Float, Int) => float(op, a.as_float().ok()?, b.as_int().ok()? as FLOAT)?,
        (Int, Float) => float(op, a.as_int().ok()? as FLOAT, b.as_float().ok()?)?,
        (Str, Str) => {
            let (x, y) = (a.read_lock::<ImmutableString>()?, b.read_lock::<ImmutableString>()?);
            match op {
                Op::Add => {
                    let mut s = Text::new();
                    s.push_str(&x);
                    s.push_str(&y);
                    Dynamic::from(ImmutableString::from(s))
                }
                Op::Sub => return None,
                cmp => Dynamic::from_bool(compare(cmp, x.as_str().cmp(y.as_str()))?),
            }
        }
        (Char, Char) => {
            let (x, y) = (a.as_char().ok()?, b.as_char().ok()?);
            match op {
                Op::Add => Dynamic::from(ImmutableString::from(String::from_iter([x, y]))),
                cmp => Dynamic::from_bool(compare(cmp, x.cmp(&y))?),
            }
        }
        (Bool, Bool) => {
            let (x, y) = (a.as_bool().ok()?, b.as_bool().ok()?);
            match op {
                Op::Eq => Dynamic::from_bool(x == y),
                Op::Ne => Dynamic::from_bool(x != y),
                _ => return None,
            }
        }
        (Unit, Unit) => match op {
            Op::Eq => Dynamic::TRUE,
            op if op.is_comparison() => Dynamic::FALSE,
            _ => return None,
        },
        // A string and a value it shows: `+` joins them.
        (Str, Char | Int | Float | Bool | Unit) if op == Op::Add => {
            let x = a.read_lock::<ImmutableString>()?;
            let mut s = Text::new();
            s.push_str(&x);
            push_shown(&mut s, b)?;
            Dynamic::from(ImmutableString::from(s))
        }
        (Char | Int | Float | Bool | Unit, Str) if op == Op::Add => {
            let y = b.read_lock::<ImmutableString>()?;
            let mut s = Text::new();
            push_shown(&mut s, a)?;
            s.push_str(&y);
            Dynamic::from(ImmutableString::from(s))
        }
        // Rhai compares a string and a character by their first two characters.
        (Str, Char) | (Char, Str) => return None,
        // Values of different types are never equal (Rhai's rule for
        // types that are not both numbers).
        (x, y) if x != y && x != Other && y != Other && op.is_comparison() => Dynamic::from_bool(op == Op::Ne),
        _ => return None,
    })
}

/// `a op= b`: as `a = a op b`, but for Rhai's own `char += string`, which
/// keeps the character when the string is empty.
pub fn op_assign(op: Op, a: &Dynamic, b: &Dynamic) -> Option<Dynamic> {
    if op == Op::Add && a.is_char() && b.is_string() && b.read_lock::<ImmutableString>()?.is_empty() {
        return Some(a.clone());
    }
    binary(op, a, b)
}

fn int(op: Op, x: INT, y: INT) -> Option<Dynamic> {
    Some(Dynamic::from_int(match op {
        Op::Add => x.checked_add(y)?,
        Op::Sub => x.checked_sub(y)?,
        Op::Mul => x.checked_mul(y)?,
        Op::Div => x.checked_div(y)?,
        Op::Rem => x.checked_rem(y)?,
        cmp => return Some(Dynamic::from_bool(compare(cmp, x.cmp(&y))?)),
    }))
}

/// Rhai's float operators.
fn float(op: Op, x: FLOAT, y: FLOAT) -> Option<Dynamic> {
    Some(match op {
        Op::Add => Dynamic::from_float(x + y),
        Op::Sub => Dynamic::from_float(x - y),
        Op::Mul => Dynamic::from_float(x * y),
        Op::Div => Dynamic::from_float(x / y),
        Op::Rem => Dynamic::from_float(x % y),
        cmp => Dynamic::from_bool(float_test(cmp, x, y)),
    })
}

/// Rhai's float comparisons: within a relative epsilon.
fn float_test(op: Op, x: FLOAT, y: FLOAT) -> bool {
    let scale = || {
        let max = if x * y == 0.0 { 1.0 } else { x.abs().max(y.abs()) };
        (max != 0.0).then_some(max)
    };
    match op {
        Op::Eq => scale().is_none_or(|m| (x - y).abs() / m <= FLOAT::EPSILON),
        Op::Ne => scale().is_some_and(|m| (x - y).abs() / m > FLOAT::EPSILON),
        Op::Gt => scale().is_some_and(|m| (x - y) / m > FLOAT::EPSILON),
        Op::Ge => scale().is_none_or(|m| (x - y) / m > -FLOAT::EPSILON),
        Op::Lt => scale().is_some_and(|m| (y - x) / m > FLOAT::EPSILON),
        Op::Le => scale().is_none_or(|m| (y - x) / m > -FLOAT::EPSILON),
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => unreachable!("a comparison"),
    }
}

/// A comparison's answer for an ordering; `None` for arithmetic.
fn compare(op: Op, ord: Ordering) -> Option<bool> {
    use Ordering::*;
    Some(match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        _ => return None,
    })
}

/// `-x`.
pub fn negate(v: &Dynamic) -> Option<Dynamic> {
    match kind(v) {
        Kind::Int => Some(Dynamic::from_int(v.as_int().ok()?.checked_neg()?)),
        Kind::Float => Some(Dynamic::from_float(-v.as_float().ok()?)),
        _ => None,
    }
}

/// A string being built: inline up to 23 bytes (most values users format
/// into a line fit), so that making an `ImmutableString` of it allocates
/// once, not twice.
pub type Text = rhai::Identifier;

/// Appends a value as `to_string`, interpolation and `+` show it; `None`
/// for values shown otherwise (arrays, maps).
pub fn push_shown(text: &mut impl std::fmt::Write, v: &Dynamic) -> Option<()> {
    // Writing to a string cannot fail.
    let _ = match kind(v) {
        Kind::Str => text.write_str(&v.read_lock::<ImmutableString>()?),
        Kind::Int => text.write_str(decimal(v.as_int().ok()?, &mut [0; 20])),
        Kind::Float => write!(text, "{}", FloatWrapper::new(v.as_float().ok()?)),
        Kind::Char => text.write_char(v.as_char().ok()?),
        Kind::Bool => text.write_str(if v.as_bool().ok()? { "true" } else { "false" }),
        Kind::Unit => Ok(()),
        _ if v.is_shared() => return push_shown(text, &v.flatten_clone()),
        _ => return None,
    };
    Some(())
}

/// `i` in decimal, as `{}` shows it, written into the end of `buf`
/// (without the formatting machinery: this is on every `+` of a number).
fn decimal(i: INT, buf: &mut [u8; 20]) -> &str {
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    debug_assert!(buf[at..].iter().all(|b| b.is_ascii_digit() || *b == b'-'));
    // SAFETY: `buf[at..]` holds only the ASCII bytes written above (digits
    // and a sign), which are UTF-8. Checking them cost ~1 % of a keyed sum
    // that shows two numbers per record.
    unsafe { std::str::from_utf8_unchecked(&buf[at..]) }
}

/// Whether `a == b` for `contains` on arrays: Rhai's `==`, where defined.
pub fn equals(a: &Dynamic, b: &Dynamic) -> Option<bool> {
    test(Op::Eq, a, b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn integers_are_shown_as_rust_shows_them() {
        for i in [0, 7, -7, 10, -10, 1234567890, rhai::INT::MAX, rhai::INT::MIN, rhai::INT::MIN + 1] {
            assert_eq!(super::decimal(i, &mut [0; 20]), i.to_string());
        }
    }
}
