//! Keys of keyed operators: a stable hash of a Rhai value (the same on every
//! process and every run, so that key groups mean the same thing everywhere),
//! and the equality that keyed state uses.

use std::hash::{BuildHasherDefault, Hash, Hasher};

use rhai::{Dynamic, ImmutableString};

/// Key groups per keyed operator. Groups, not keys, are assigned to instances,
/// so that the assignment is a small table that every process agrees on.
pub const KEY_GROUPS: u64 = 256;

/// A fixed seed: key hashes must not change between processes or releases of
/// the same protocol version.
const SEED: u64 = 0x5c17_7e12_9e37_79b9;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(MULTIPLIER)
}

#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("chunk of 8")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(buf));
    }
    mix(h, bytes.len() as u64)
}

fn hash_into(h: u64, value: &Dynamic) -> u64 {
    if let Some(s) = value.read_lock::<ImmutableString>() {
        return hash_bytes(mix(h, 1), s.as_bytes());
    }
    if let Ok(i) = value.as_int() {
        return mix(mix(h, 2), i as u64);
    }
    if let Ok(b) = value.as_bool() {
        return mix(mix(h, 3), b as u64);
    }
    if let Ok(c) = value.as_char() {
        return mix(mix(h, 4), c as u64);
    }
    if let Ok(f) = value.as_float() {
        return mix(mix(h, 5), f.to_bits());
    }
    if value.is_unit() {
        return mix(h, 6);
    }
    if let Some(arr) = value.read_lock::<rhai::Array>() {
        let h = arr.iter().fold(mix(h, 7), hash_into);
        return mix(h, arr.len() as u64);
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        // BTreeMap: iteration order is the key order, hence stable.
        let h = map.iter().fold(mix(h, 8), |h, (k, v)| hash_into(hash_bytes(h, k.as_bytes()), v));
        return mix(h, map.len() as u64);
    }
    hash_bytes(mix(h, 9), format!("{}:{value:?}", value.type_name()).as_bytes())
}

/// The stable hash of a value.
pub fn stable_hash(value: &Dynamic) -> u64 {
    finish(hash_into(SEED, value))
}

/// Structural equality of two values, as keys compare.
pub fn same_value(a: &Dynamic, b: &Dynamic) -> bool {
    if let (Some(x), Some(y)) = (a.read_lock::<ImmutableString>(), b.read_lock::<ImmutableString>()) {
        return *x == *y;
    }
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return x == y;
    }
    if a.type_id() != b.type_id() {
        return false;
    }
    if let (Some(x), Some(y)) = (a.read_lock::<rhai::Array>(), b.read_lock::<rhai::Array>()) {
        return x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q));
    }
    if let (Some(x), Some(y)) = (a.read_lock::<rhai::Map>(), b.read_lock::<rhai::Map>()) {
        return x.len() == y.len() && x.iter().zip(y.iter()).all(|((k1, v1), (k2, v2))| k1 == k2 && same_value(v1, v2));
    }
    if let (Ok(x), Ok(y)) = (a.as_float(), b.as_float()) {
        return x.to_bits() == y.to_bits();
    }
    format!("{a:?}") == format!("{b:?}")
}

/// A record's key with its hash computed once.
#[derive(Clone, Debug)]
pub struct Key {
    pub hash: u64,
    pub value: Dynamic,
}

impl Key {
    pub fn new(value: Dynamic) -> Self {
        Key { hash: stable_hash(&value), value }
    }

    /// The key group this key belongs to.
    pub fn group(&self) -> u64 {
        self.hash % KEY_GROUPS
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && same_value(&self.value, &other.value)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A hasher that passes a key's precomputed hash through.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type KeyMap<V> = std::collections::HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_across_runs() {
        // Pinned values: a change here breaks key placement between versions.
        assert_eq!(stable_hash(&Dynamic::from("skitter")), stable_hash(&Dynamic::from("skitter".to_string())));
        assert_ne!(stable_hash(&Dynamic::from("a")), stable_hash(&Dynamic::from("b")));
        assert_ne!(stable_hash(&Dynamic::from(1_i64)), stable_hash(&Dynamic::from("1")));
        assert_eq!(stable_hash(&Dynamic::from("word")), 0x21ab_758c_20e7_d38b);
        assert_eq!(stable_hash(&Dynamic::from(42_i64)), 0x4b19_9719_222f_dcf4);
    }

    #[test]
    fn equal_values_make_equal_keys() {
        let a: Dynamic = vec![Dynamic::from("x"), Dynamic::from(1_i64)].into();
        let b: Dynamic = vec![Dynamic::from("x"), Dynamic::from(1_i64)].into();
        assert_eq!(Key::new(a), Key::new(b));
        assert_ne!(Key::new(Dynamic::from(1_i64)), Key::new(Dynamic::from(2_i64)));
    }

    #[test]
    fn groups_are_in_range() {
        for i in 0..1000_i64 {
            assert!(Key::new(Dynamic::from(i)).group() < KEY_GROUPS);
        }
    }
}
