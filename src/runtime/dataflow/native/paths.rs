//! Values along paths (`r.tags[0].name`): read in place, read as a copy,
//! changed, and a change put back. Each either does what Rhai does or
//! answers `None` having changed nothing.

use rhai::{Array, Dynamic, ImmutableString, Map};

use super::ops::{op_assign, Op};
use super::tree::Step;

/// A step along a value: a field, or an index (an integer into an array or
/// a string, a string into a map).
#[derive(Clone)]
pub(super) enum Key {
    Field(ImmutableString),
    Index(Dynamic),
}

/// The `T` that `v` holds, read in place; `None` for another type or a
/// shared value (behind a lock).
pub(super) fn held<T: std::any::Any + Clone>(v: &Dynamic) -> Option<&T> {
    if v.is_shared() {
        return None;
    }
    let guard = v.read_lock::<T>()?;
    // SAFETY: a value that is not shared is read through a plain reference
    // to its own content (`DynamicReadLock` holds no lock then), so what
    // it holds lives as long as `v` is borrowed.
    Some(unsafe { &*(&*guard as *const T) })
}

/// Maps up to this many entries (one leaf of the tree) are searched in
/// order. A record's few field names are short and mostly of different
/// lengths: comparing lengths, then bytes in a loop, calls nothing, where
/// the ordered search calls `memcmp` for each key it passes (6 % of a keyed
/// sum's samples).
const SCANNED: usize = 11;

/// Whether two field names are the same.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// The value of field `name` of `map`, as `get` finds it.
pub(super) fn field<'m>(map: &'m Map, name: &str) -> Option<&'m Dynamic> {
    if map.len() > SCANNED {
        return map.get(name);
    }
    map.iter().find(|(k, _)| same_name(k, name)).map(|(_, v)| v)
}

/// The same, to change.
pub(super) fn field_mut<'m>(map: &'m mut Map, name: &str) -> Option<&'m mut Dynamic> {
    if map.len() > SCANNED {
        return map.get_mut(name);
    }
    map.iter_mut().find(|(k, _)| same_name(k, name)).map(|(_, v)| v)
}

/// `v.a.b = value` or `v.a.b op= value` in place, as `assign` would do it
/// (a missing last field is added by `=`; `op=` needs it); returns what
/// was there. Changes nothing when it returns `None`.
pub(super) fn assign_fields(v: &mut Dynamic, names: &[Step], op: Option<Op>, value: Dynamic) -> Option<Option<Dynamic>> {
    let (Step::Field(name), rest) = names.split_first()? else { return None };
    if v.is_shared() {
        return None;
    }
    let mut map = v.write_lock::<Map>()?;
    if !rest.is_empty() {
        return assign_fields(field_mut(&mut map, name.as_str())?, rest, op, value);
    }
    Some(match (op, field_mut(&mut map, name.as_str())) {
        (None, Some(slot)) => Some(std::mem::replace(slot, value)),
        (None, None) => map.insert(name.as_str().into(), value),
        (Some(op), Some(slot)) => {
            let new = op_assign(op, slot, &value)?;
            Some(std::mem::replace(slot, new))
        }
        (Some(_), None) => return None,
    })
}

/// An array position for index `i` (negative: from the end).
pub(super) fn position(len: usize, i: &Dynamic) -> Option<usize> {
    let i = i.as_int().ok()?;
    let at = if i < 0 { len.checked_sub(usize::try_from(i.unsigned_abs()).ok()?)? } else { usize::try_from(i).ok()? };
    (at < len).then_some(at)
}

/// Runs `f` on the value at `path` in `v`, read in place.
pub(super) fn at<R>(v: &Dynamic, path: &[Key], f: &mut dyn FnMut(&Dynamic) -> Option<R>) -> Option<R> {
    let Some((key, rest)) = path.split_first() else { return f(v) };
    match key {
        Key::Field(name) => at(field(&*v.read_lock::<Map>()?, name.as_str())?, rest, f),
        Key::Index(i) => {
            if let Some(a) = v.read_lock::<Array>() {
                return at(&a[position(a.len(), i)?], rest, f);
            }
            if let Some(m) = v.read_lock::<Map>() {
                return at(field(&m, i.read_lock::<ImmutableString>()?.as_str())?, rest, f);
            }
            // A string's character (by character, negative from the end).
            if !rest.is_empty() {
                return None;
            }
            let s = v.read_lock::<ImmutableString>()?;
            let n = s.chars().count();
            let c = s.chars().nth(position(n, i)?)?;
            f(&Dynamic::from_char(c))
        }
    }
}

/// `v[i]`: an array's element, a map's entry, a string's character.
pub(super) fn element(v: &Dynamic, i: &Dynamic) -> Option<Dynamic> {
    if let Some(a) = v.read_lock::<Array>() {
        return Some(a[position(a.len(), i)?].flatten_clone());
    }
    at(v, &[Key::Index(i.clone())], &mut |x| Some(x.flatten_clone()))
}

/// The value at `path` in `v`.
pub(super) fn read(v: &Dynamic, path: &[Key]) -> Option<Dynamic> {
    at(v, path, &mut |x| Some(x.flatten_clone()))
}

/// Runs `f` on the value at `path` in `v`, to change it.
pub(super) fn at_mut<R>(v: &mut Dynamic, path: &[Key], f: &mut dyn FnMut(&mut Dynamic) -> Option<R>) -> Option<R> {
    let Some((key, rest)) = path.split_first() else { return f(v) };
    if v.is_shared() {
        return None;
    }
    match key {
        Key::Field(name) => at_mut(field_mut(&mut *v.write_lock::<Map>()?, name.as_str())?, rest, f),
        Key::Index(i) => {
            if let Some(mut a) = v.write_lock::<Array>() {
                let at = position(a.len(), i)?;
                return at_mut(&mut a[at], rest, f);
            }
            let mut m = v.write_lock::<Map>()?;
            at_mut(field_mut(&mut m, i.read_lock::<ImmutableString>()?.as_str())?, rest, f)
        }
    }
}

/// Sets the value at `path` in `v` (a map gains a missing key); returns
/// what was there. Changes nothing when it returns `None`.
pub(super) fn assign(v: &mut Dynamic, path: &[Key], value: Dynamic) -> Option<Option<Dynamic>> {
    let Some((last, parent)) = path.split_last() else { return Some(Some(std::mem::replace(v, value))) };
    let mut value = Some(value);
    at_mut(v, parent, &mut |p| {
        if p.is_shared() {
            return None;
        }
        let key: ImmutableString = match last {
            Key::Field(name) => name.clone(),
            Key::Index(i) => {
                if let Some(mut a) = p.write_lock::<Array>() {
                    let at = position(a.len(), i)?;
                    return Some(Some(std::mem::replace(&mut a[at], value.take()?)));
                }
                i.read_lock::<ImmutableString>()?.clone()
            }
        };
        let mut m = p.write_lock::<Map>()?;
        Some(m.insert(key.as_str().into(), value.take()?))
    })
}

/// Puts back the value a change at `path` replaced.
pub(super) fn restore(v: &mut Dynamic, path: &[Key], old: Option<Dynamic>) -> Option<()> {
    match old {
        Some(old) => assign(v, path, old).map(|_| ()),
        None => {
            let (last, parent) = path.split_last()?;
            let name = match last {
                Key::Field(name) => name.clone(),
                Key::Index(i) => i.read_lock::<ImmutableString>()?.clone(),
            };
            at_mut(v, parent, &mut |p| {
                p.write_lock::<Map>()?.remove(name.as_str());
                Some(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_found_as_the_maps_own_search_finds_it_in_small_and_large_maps() {
        let names = ["a", "b", "ab", "ba", "age", "city", "name", "score", "é", "e", "total", "n", "x1", "x2", "long_field_name"];
        for size in 0..=names.len() {
            let mut map = Map::new();
            for (i, name) in names[..size].iter().enumerate() {
                map.insert((*name).into(), Dynamic::from_int(i as rhai::INT));
            }
            for name in names.iter().chain(&["", "c", "ag", "agee", "É"]) {
                let want = map.get(*name).map(|v| v.as_int().unwrap());
                assert_eq!(field(&map, name).map(|v| v.as_int().unwrap()), want, "{name:?} in a map of {size}");
                let mut changed = map.clone();
                if let Some(v) = field_mut(&mut changed, name) {
                    *v = Dynamic::from_int(-1);
                }
                assert_eq!(changed.get(*name).map(|v| v.as_int().unwrap()), want.map(|_| -1), "{name:?} changed in a map of {size}");
            }
        }
    }
}
