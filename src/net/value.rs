//! Rhai values on the wire: a tagged encoding of plain data. Only plain data
//! travels between nodes; anything else is refused with its type named.

use rhai::{Dynamic, ImmutableString};
use serde::{Deserialize, Serialize};

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
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Blob(Vec<u8>),
}

/// A value that cannot leave its process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a value of type `{0}` cannot be sent to another node: only plain data (numbers, strings, arrays, maps, ...) travels")]
pub struct NotPlainData(pub String);

impl Value {
    pub fn from_dynamic(v: &Dynamic) -> Result<Value, NotPlainData> {
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
        if let Some(a) = v.read_lock::<rhai::Array>() {
            return a.iter().map(Value::from_dynamic).collect::<Result<_, _>>().map(Value::Array);
        }
        if let Some(m) = v.read_lock::<rhai::Map>() {
            return m.iter().map(|(k, v)| Ok((k.to_string(), Value::from_dynamic(v)?))).collect::<Result<_, _>>().map(Value::Map);
        }
        if let Some(b) = v.read_lock::<rhai::Blob>() {
            return Ok(Value::Blob(b.clone()));
        }
        Err(NotPlainData(v.type_name().to_string()))
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

    #[test]
    fn functions_do_not_travel() {
        let f = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        assert!(Value::from_dynamic(&f).unwrap_err().to_string().contains("Fn"));
    }
}
