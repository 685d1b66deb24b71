//! Rhai values on the wire: a tagged encoding of plain data. Only plain data
//! travels between nodes; anything else is refused with its type named.

use std::cell::Cell;

use rhai::{Dynamic, ImmutableString};
use serde::{Deserialize, Serialize};

/// How deeply arrays and maps may nest in a value that travels. Decoding
/// recurses once a level: unbounded, a frame of nested arrays (two bytes a
/// level) overflows the reading thread's stack, which aborts the process.
pub const MAX_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Char(char),
    /// Held as Rhai holds it: a received string becomes a record without
    /// another copy, and a sent one is read in place.
    Str(#[serde(with = "immutable_str")] ImmutableString),
    Array(#[serde(deserialize_with = "nested")] Vec<Value>),
    Map(#[serde(deserialize_with = "nested")] Vec<(String, Value)>),
    Blob(Vec<u8>),
}

/// A value that cannot leave its process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPlainData {
    #[error("a value of type `{0}` cannot be sent to another node: only plain data (numbers, strings, arrays, maps, ...) travels")]
    Type(String),
    #[error("a value with arrays or maps nested more than {MAX_DEPTH} levels deep cannot be sent to another node")]
    TooDeep,
}

thread_local! {
    /// Arrays and maps being decoded on this thread, one inside another.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Whether the last decode on this thread stopped at `MAX_DEPTH` (the
    /// decoder's own error keeps no message).
    static TOO_DEEP: Cell<bool> = const { Cell::new(false) };
}

/// Runs a decode, and names a value nested too deeply as the reason it
/// failed, rather than the decoder's bare "deserialization error".
pub fn decode_bounded<T, E: std::fmt::Display>(decode: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    TOO_DEEP.set(false);
    decode().map_err(|e| if TOO_DEEP.replace(false) { NotPlainData::TooDeep.to_string() } else { e.to_string() })
}

/// Decodes what a recursive type holds (an array's or a map's contents,
/// an operator inside `with`), one level deeper.
pub(crate) fn nested<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(de: D) -> Result<T, D::Error> {
    struct Level(usize);
    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.set(self.0);
        }
    }
    let depth = DEPTH.get();
    if depth >= MAX_DEPTH {
        TOO_DEEP.set(true);
        return Err(serde::de::Error::custom(NotPlainData::TooDeep));
    }
    DEPTH.set(depth + 1);
    let _restore = Level(depth);
    T::deserialize(de)
}

impl Value {
    pub fn from_dynamic(v: &Dynamic) -> Result<Value, NotPlainData> {
        Value::from_dynamic_at(v, 0)
    }

    fn from_dynamic_at(v: &Dynamic, depth: usize) -> Result<Value, NotPlainData> {
        if let Some(s) = v.read_lock::<ImmutableString>() {
            return Ok(Value::Str(s.clone()));
        }
        if let Ok(i) = v.as_int() {
            return Ok(Value::Int(i));
        }
        if let Ok(b) = v.as_bool() {
            return Ok(Value::Bool(b));
        }
        if let Ok(f) = v.as_float() {
            return Ok(Value::Float(f));
        }
        if let Ok(c) = v.as_char() {
            return Ok(Value::Char(c));
        }
        if v.is_unit() {
            return Ok(Value::Unit);
        }
        let inner = depth + 1;
        if inner > MAX_DEPTH && (v.is_array() || v.is_map()) {
            return Err(NotPlainData::TooDeep);
        }
        if let Some(a) = v.read_lock::<rhai::Array>() {
            return a.iter().map(|v| Value::from_dynamic_at(v, inner)).collect::<Result<_, _>>().map(Value::Array);
        }
        if let Some(m) = v.read_lock::<rhai::Map>() {
            return m.iter().map(|(k, v)| Ok((k.to_string(), Value::from_dynamic_at(v, inner)?))).collect::<Result<_, _>>().map(Value::Map);
        }
        if let Some(b) = v.read_lock::<rhai::Blob>() {
            return Ok(Value::Blob(b.clone()));
        }
        Err(NotPlainData::Type(v.type_name().to_string()))
    }

    pub fn into_dynamic(self) -> Dynamic {
        match self {
            Value::Unit => Dynamic::UNIT,
            Value::Bool(b) => Dynamic::from_bool(b),
            Value::Int(i) => Dynamic::from_int(i),
            Value::Float(f) => Dynamic::from_float(f),
            Value::Char(c) => Dynamic::from_char(c),
            Value::Str(s) => Dynamic::from(s),
            Value::Array(a) => Dynamic::from_array(a.into_iter().map(Value::into_dynamic).collect()),
            Value::Map(m) => Dynamic::from_map(m.into_iter().map(|(k, v)| (k.into(), v.into_dynamic())).collect()),
            Value::Blob(b) => Dynamic::from_blob(b),
        }
    }
}

/// Strings on the wire are plain UTF-8 strings, read straight into Rhai's.
mod immutable_str {
    use rhai::ImmutableString;
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &ImmutableString, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<ImmutableString, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ImmutableString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ImmutableString, E> {
                Ok(ImmutableString::from(v))
            }
        }
        de.deserialize_str(Visitor)
    }
}

pub fn to_values(records: &[Dynamic]) -> Result<Vec<Value>, NotPlainData> {
    records.iter().map(Value::from_dynamic).collect()
}

pub fn to_dynamics(values: Vec<Value>) -> Vec<Dynamic> {
    values.into_iter().map(Value::into_dynamic).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_data_round_trips() {
        let mut map = rhai::Map::new();
        map.insert("k".into(), Dynamic::from_array(vec![Dynamic::from(1_i64), Dynamic::from("s"), Dynamic::UNIT]));
        let v = Dynamic::from_map(map);
        let back = Value::from_dynamic(&v).unwrap().into_dynamic();
        assert_eq!(format!("{back:?}"), format!("{v:?}"));
        let bytes = postcard::to_allocvec(&Value::from_dynamic(&v).unwrap()).unwrap();
        let decoded: Value = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, Value::from_dynamic(&v).unwrap());
    }

    fn nest(levels: usize) -> Dynamic {
        (0..levels).fold(Dynamic::from_int(1), |inner, _| Dynamic::from_array(vec![inner]))
    }

    #[test]
    fn values_nest_up_to_the_limit_and_no_deeper() {
        let deepest = Value::from_dynamic(&nest(MAX_DEPTH)).unwrap();
        let bytes = postcard::to_allocvec(&deepest).unwrap();
        assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), deepest);
        let err = Value::from_dynamic(&nest(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err, NotPlainData::TooDeep);
        assert!(err.to_string().contains("nested more than 128 levels"), "{err}");
    }

    #[test]
    fn too_deep_a_value_is_refused_when_decoding_and_the_next_one_decodes() {
        // Hand-made: one array more than any sender makes.
        let mut bytes = Vec::new();
        for _ in 0..=MAX_DEPTH {
            bytes.extend([6u8, 1]);
        }
        bytes.push(0);
        let err = decode_bounded(|| postcard::from_bytes::<Value>(&bytes)).unwrap_err();
        assert!(err.contains("nested more than 128 levels"), "{err}");
        let fine = postcard::to_allocvec(&Value::from_dynamic(&nest(MAX_DEPTH)).unwrap()).unwrap();
        assert!(postcard::from_bytes::<Value>(&fine).is_ok(), "the depth count is back to zero after a refusal");
    }

    #[test]
    fn functions_do_not_travel() {
        let f = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        assert!(Value::from_dynamic(&f).unwrap_err().to_string().contains("Fn"));
    }
}

/// Counts the bytes a value encodes to, without keeping them.
#[derive(Default)]
struct ByteCount(usize);

impl Extend<u8> for ByteCount {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0 += bytes.into_iter().count();
    }
}

/// How many bytes `value` takes on the wire.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::to_extend(value, ByteCount::default()).map(|c| c.0).unwrap_or(0)
}
