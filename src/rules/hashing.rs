//! Canonical JSON and SHA-256.
//!
//! Hashes must not depend on map insertion order or on serde_json's
//! `preserve_order` feature (which any crate in a build can switch on), so the
//! canonical form is written here with object keys sorted byte-wise and no
//! whitespace. Callers bound the nesting depth first (see [`super::limits`]),
//! so the recursion here is bounded.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical::{write_canonical_of, CanonicalError};

/// Where canonical JSON goes: a string, or straight into a hash (no
/// intermediate text, however large the value).
pub(super) trait Sink {
    fn put(&mut self, text: &str);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// SHA-256 of everything put, and how many bytes that was.
struct Hashing {
    hasher: Sha256,
    bytes: usize,
}

impl Hashing {
    fn new() -> Self {
        Self { hasher: Sha256::new(), bytes: 0 }
    }

    fn hex(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl Sink for Hashing {
    fn put(&mut self, text: &str) {
        self.hasher.update(text.as_bytes());
        self.bytes += text.len();
    }
}

/// Lets `write!` render numbers into a sink without allocating.
struct Formatted<'a, S: Sink>(&'a mut S);

impl<S: Sink> fmt::Write for Formatted<'_, S> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.put(text);
        Ok(())
    }
}

/// Writes `value` as canonical JSON: sorted keys, no whitespace.
#[cfg(test)]
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical<S: Sink>(value: &Value, out: &mut S) {
    match value {
        Value::Object(map) => {
            out.put("{");
            // serde_json's map is already sorted unless `preserve_order` is on.
            if map.keys().is_sorted() {
                write_entries(map.iter(), out);
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                write_entries(entries.into_iter(), out);
            }
            out.put("}");
        }
        Value::Array(items) => {
            out.put("[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.put(",");
                }
                write_canonical(item, out);
            }
            out.put("]");
        }
        Value::String(text) => write_string(text, out),
        Value::Number(number) => {
            // Writing into a sink cannot fail.
            let _ = fmt::Write::write_fmt(&mut Formatted(out), format_args!("{number}"));
        }
        Value::Bool(true) => out.put("true"),
        Value::Bool(false) => out.put("false"),
        Value::Null => out.put("null"),
    }
}

fn write_entries<'a, S: Sink>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut S) {
    for (index, (key, item)) in entries.enumerate() {
        if index > 0 {
            out.put(",");
        }
        write_string(key, out);
        out.put(":");
        write_canonical(item, out);
    }
}

/// A JSON string, escaped exactly as serde_json escapes it: `"` and `\`,
/// the short escapes `\b \f \n \r \t`, other control characters as
/// `\u00xx`; everything else (non-ASCII included) as is.
pub(super) fn write_string<S: Sink + ?Sized>(text: &str, out: &mut S) {
    out.put("\"");
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `start` and `index` are char boundaries.
        out.put(text.get(start..index).unwrap_or_default());
        if escape.is_empty() {
            out.put("\\u00");
            out.put(hex_digit(byte >> 4));
            out.put(hex_digit(byte & 0xf));
        } else {
            out.put(escape);
        }
        start = index + 1;
    }
    out.put(text.get(start..).unwrap_or_default());
    out.put("\"");
}

/// The lowercase hex digit of the low four bits of `nibble`.
fn hex_digit(nibble: u8) -> &'static str {
    const DIGITS: &str = "0123456789abcdef";
    let at = usize::from(nibble & 0xf);
    DIGITS.get(at..=at).unwrap_or("0")
}

fn hex(digest: &[u8]) -> String {
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push_str(hex_digit(byte >> 4));
        hex.push_str(hex_digit(*byte));
    }
    hex
}

/// [`write_canonical`] into a string, for tests comparing other writers.
#[cfg(test)]
pub(crate) fn write_canonical_for_tests(value: &Value, out: &mut String) {
    write_canonical(value, out);
}

/// SHA-256 of `bytes` as lowercase hex.
#[cfg(test)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 hex of the canonical JSON of `value`, hashed as it is written.
pub fn sha256_hex_of_json(value: &Value) -> String {
    let mut sink = Hashing::new();
    write_canonical(value, &mut sink);
    sink.hex()
}

/// SHA-256 hex of the canonical JSON of `value`, written straight from its
/// `Serialize` impl (no `Value` in between; see [`super::canonical`]),
/// and of its top-level member `member` alone when it has one, both in
/// one pass; [`CanonicalError::TooLarge`] once the text passes `limit`
/// bytes. Equal to [`sha256_hex_of_json`] of `serde_json::to_value(value)`.
pub fn sha256_hex_of_serialized<T: Serialize + ?Sized>(
    value: &T,
    member: &str,
    limit: usize,
) -> Result<(String, Option<String>), CanonicalError> {
    let (mut whole, mut alone) = (Hashing::new(), Hashing::new());
    write_canonical_of(value, limit, &mut whole, Some((member, &mut alone)))?;
    // A JSON value is never empty text: no bytes, no member.
    let member = (alone.bytes > 0).then(|| alone.hex());
    Ok((whole.hex(), member))
}

/// SHA-256 hex of the canonical JSON of `value`, written straight from its
/// `Serialize` impl: what [`sha256_hex_of_serialized`] does without the
/// member (the loadgen's floor for registration preparation).
#[cfg(feature = "testing")]
pub fn sha256_hex_of_canonical<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    let mut whole = Hashing::new();
    write_canonical_of(value, usize::MAX, &mut whole, None::<(&str, &mut Hashing)>)?;
    Ok(whole.hex())
}

/// The payload hash of an append: SHA-256 of canonical `[event_type, payload]`,
/// and the length of the payload's canonical form in bytes.
pub fn payload_hash(event_type: &str, payload: &Value) -> (String, usize) {
    let mut sink = Hashing::new();
    sink.put("[");
    write_string(event_type, &mut sink);
    sink.put(",");
    let before = sink.bytes;
    write_canonical(payload, &mut sink);
    let payload_bytes = sink.bytes - before;
    sink.put("]");
    (sink.hex(), payload_bytes)
}

/// The wake id of a delivery: `wake:` + SHA-256 hex of `[target_scope_id, dedupe_key]`.
pub fn wake_id(target_scope_id: &str, dedupe_key: &str) -> String {
    let mut sink = Hashing::new();
    sink.put("[");
    write_string(target_scope_id, &mut sink);
    sink.put(",");
    write_string(dedupe_key, &mut sink);
    sink.put("]");
    format!("wake:{}", sink.hex())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
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
        assert_ne!(payload_hash("x", &payload).0, payload_hash("y", &payload).0);
        assert_ne!(payload_hash("x", &payload).0, payload_hash("x", &json!({"a": 2})).0);
        assert_eq!(payload_hash("x", &payload), (sha256_hex_of_json(&json!(["x", {"a": 1}])), 7));
    }

    #[test]
    fn wake_id_is_the_hash_of_scope_and_dedupe_key() {
        let id = wake_id("session:s", "p:1");
        assert_eq!(id, format!("wake:{}", sha256_hex_of_json(&json!(["session:s", "p:1"]))));
        assert_ne!(id, wake_id("session:t", "p:1"));
    }

    pub(crate) fn json_values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/a-z\\u{7f}\\u{e9}\\u{1f600}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_json_is_serde_json_with_sorted_keys(value in json_values()) {
            // serde_json's map iterates in key order here, so its compact
            // output is the canonical form.
            prop_assert_eq!(canonical_json(&value), value.to_string());
            prop_assert_eq!(sha256_hex_of_json(&value), sha256_hex(value.to_string().as_bytes()));
        }
    }
}
