//! Canonical JSON and SHA-256.
//!
//! Hashes must not depend on map insertion order or on serde_json's
//! `preserve_order` feature (which any crate in a build can switch on), so the
//! canonical form is written here with object keys sorted byte-wise and no
//! whitespace. Callers bound the nesting depth first (see [`super::limits`]),
//! so the recursion here is bounded.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` as canonical JSON: sorted keys, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        // Null, booleans and numbers have one rendering already.
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_string(text: &str, out: &mut String) {
    // Serializing a str cannot fail: serde_json escapes every char.
    out.push_str(&Value::String(text.to_owned()).to_string());
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

/// SHA-256 hex of the canonical JSON of `value`.
pub fn sha256_hex_of_json(value: &Value) -> String {
    sha256_hex(canonical_json(value).as_bytes())
}

/// SHA-256 hex of the canonical JSON of any serializable value.
///
/// Returns `None` only when `value` cannot be represented as JSON (a map
/// with non-string keys), which no type of this crate has.
pub fn sha256_hex_of<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value).ok().map(|json| sha256_hex_of_json(&json))
}

/// The payload hash of an append: SHA-256 of canonical `[event_type, payload]`.
pub fn payload_hash(event_type: &str, payload: &Value) -> String {
    let mut text = String::from("[");
    write_string(event_type, &mut text);
    text.push(',');
    write_canonical(payload, &mut text);
    text.push(']');
    sha256_hex(text.as_bytes())
}

/// The wake id of a delivery: `wake:` + SHA-256 hex of `[target_scope_id, dedupe_key]`.
pub fn wake_id(target_scope_id: &str, dedupe_key: &str) -> String {
    let mut text = String::from("[");
    write_string(target_scope_id, &mut text);
    text.push(',');
    write_string(dedupe_key, &mut text);
    text.push(']');
    format!("wake:{}", sha256_hex(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": 1, "a": {"d": [true, null], "c": "x"}});
        assert_eq!(canonical_json(&value), r#"{"a":{"c":"x","d":[true,null]},"b":1}"#);
    }

    #[test]
    fn canonical_json_escapes_strings() {
        let value = json!({"k\"ey": "line\nbreak"});
        assert_eq!(canonical_json(&value), r#"{"k\"ey":"line\nbreak"}"#);
    }

    #[test]
    fn equal_values_hash_equal_regardless_of_insertion_order() {
        let mut first = serde_json::Map::new();
        first.insert("x".into(), json!(1));
        first.insert("y".into(), json!(2));
        let mut second = serde_json::Map::new();
        second.insert("y".into(), json!(2));
        second.insert("x".into(), json!(1));
        assert_eq!(sha256_hex_of_json(&Value::Object(first)), sha256_hex_of_json(&Value::Object(second)));
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn payload_hash_depends_on_type_and_payload() {
        let payload = json!({"a": 1});
        assert_ne!(payload_hash("x", &payload), payload_hash("y", &payload));
        assert_ne!(payload_hash("x", &payload), payload_hash("x", &json!({"a": 2})));
        assert_eq!(payload_hash("x", &payload), sha256_hex_of_json(&json!(["x", {"a": 1}])));
    }

    #[test]
    fn wake_id_is_the_hash_of_scope_and_dedupe_key() {
        let id = wake_id("session:s", "p:1");
        assert_eq!(id, format!("wake:{}", sha256_hex_of_json(&json!(["session:s", "p:1"]))));
        assert_ne!(id, wake_id("session:t", "p:1"));
    }
}
