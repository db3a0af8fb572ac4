//! Canonical JSON straight from `Serialize`, with no `serde_json::Value`
//! in between.
//!
//! Hashing a registration used to build a `Value` tree of it (one
//! allocation per string and per map), write that tree in canonical form,
//! then drop it, after serializing it once more only to count its bytes.
//! [`CanonicalSerializer`] writes the canonical form as serde hands it the
//! data: scalars and arrays stream through; each object's entries are
//! buffered (one text buffer and one index per object) because struct
//! fields arrive in declaration order and canonical JSON wants them sorted.
//! It counts the bytes it produces, each once, and stops with
//! [`CanonicalError::TooLarge`] as soon as they pass the limit, so an
//! oversized input costs at most the limit's worth of work.
//!
//! The output is byte for byte what [`super::hashing::sha256_hex_of_json`]
//! hashes for `serde_json::to_value(value)`: the same escapes, numbers as
//! `serde_json::Number` displays them, non-finite floats as `null`, the
//! last of duplicate keys. A property test holds the two together.
//! Callers bound the nesting depth first, so the recursion is bounded.

use std::fmt::{self, Display, Write as _};
use std::ops::Range;

use serde::ser::{self, Serialize};

use super::hashing::{write_string, Sink};

/// Why a value has no canonical form within the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    /// More than the limit's bytes.
    TooLarge,
    /// Not representable as JSON (a map key that is not a string or a
    /// number, an integer beyond 64 bits, a custom error).
    Unrepresentable(String),
}

impl Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanonicalError::TooLarge => f.write_str("over the byte limit"),
            CanonicalError::Unrepresentable(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for CanonicalError {}

impl ser::Error for CanonicalError {
    fn custom<T: Display>(msg: T) -> Self {
        CanonicalError::Unrepresentable(msg.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, CanonicalError>;

/// The token serde_json's `arbitrary_precision` feature wraps a number in.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Writes the canonical JSON of `value` into `out`, at most `limit` bytes.
/// With `member` = `Some((name, sink))`, when `value` is an object with a
/// member `name`, that member's value text also goes into `sink`.
pub(super) fn write_canonical_of<T, S, M>(
    value: &T,
    limit: usize,
    out: &mut S,
    member: Option<(&str, &mut M)>,
) -> Result
where
    T: Serialize + ?Sized,
    S: Sink,
    M: Sink,
{
    let mut budget = Budget { left: limit, spare: Vec::new() };
    let mut top = TopLevel { out, member };
    value.serialize(CanonicalSerializer { out: &mut top, budget: &mut budget })
}

/// How many more bytes may be produced, and the buffers of objects that
/// ended, kept for the next ones (objects nest, so a registration needs
/// as many buffers as it has levels, not as it has objects).
struct Budget {
    left: usize,
    spare: Vec<ObjectBuffer>,
}

impl Budget {
    fn spend(&mut self, bytes: usize) -> Result {
        self.left = self.left.checked_sub(bytes).ok_or(CanonicalError::TooLarge)?;
        Ok(())
    }
}

/// Where a serializer writes: the caller's sink at the top, a parent
/// object's buffer below it. `finish_object` writes a finished object's
/// sorted entries; only the top level tees one member out.
trait Output {
    fn put(&mut self, text: &str);
    fn finish_object(&mut self, object: &mut ObjectBuffer);
}

struct TopLevel<'a, S: Sink, M: Sink> {
    out: &'a mut S,
    /// Taken by the first thing written: the member is the top-level
    /// object's only if that object is the first (and only) thing.
    member: Option<(&'a str, &'a mut M)>,
}

impl<S: Sink, M: Sink> Output for TopLevel<'_, S, M> {
    fn put(&mut self, text: &str) {
        self.member = None;
        self.out.put(text);
    }

    fn finish_object(&mut self, object: &mut ObjectBuffer) {
        let member = self.member.take();
        object.write_sorted(&mut *self.out, member);
    }
}

impl Output for ObjectBuffer {
    fn put(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn finish_object(&mut self, object: &mut ObjectBuffer) {
        object.write_sorted(&mut self.text, None::<(&str, &mut String)>);
    }
}

/// Counts what goes through to an output.
struct Counted<'a> {
    out: &'a mut dyn Output,
    bytes: usize,
}

impl Sink for Counted<'_> {
    fn put(&mut self, text: &str) {
        self.bytes += text.len();
        self.out.put(text);
    }
}

impl fmt::Write for Counted<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.put(text);
        Ok(())
    }
}

/// One object's entries as they arrived: key and value texts side by side
/// in one buffer, the raw keys (what the order compares) in another,
/// sorted only when the object ends.
#[derive(Default)]
struct ObjectBuffer {
    text: String,
    raw_keys: String,
    entries: Vec<Entry>,
}

/// Where one entry's parts are in its [`ObjectBuffer`].
struct Entry {
    raw_key: Range<usize>,
    key: Range<usize>,
    value: Range<usize>,
}

impl ObjectBuffer {
    fn slice(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// The raw key of `entry`.
    fn key(&self, entry: &Entry) -> &str {
        self.raw_keys.get(entry.raw_key.clone()).unwrap_or_default()
    }

    /// `{` entries by key, bytewise, the last of equal keys `}`; the value
    /// of `member` also into its sink.
    fn write_sorted<S: Sink + ?Sized, M: Sink>(&mut self, out: &mut S, mut member: Option<(&str, &mut M)>) {
        let Self { raw_keys, entries, .. } = self;
        let key = |entry: &Entry| raw_keys.get(entry.raw_key.clone()).unwrap_or_default();
        // Stable: equal keys keep their arrival order, and the last wins.
        // (A serde_json map arrives sorted already.)
        if !entries.is_sorted_by(|a, b| key(a) <= key(b)) {
            entries.sort_by(|a, b| key(a).cmp(key(b)));
        }
        out.put("{");
        let mut first = true;
        for (at, entry) in self.entries.iter().enumerate() {
            if self.entries.get(at + 1).is_some_and(|next| self.key(next) == self.key(entry)) {
                continue;
            }
            if !first {
                out.put(",");
            }
            first = false;
            out.put(self.slice(&entry.key));
            out.put(":");
            let value = self.slice(&entry.value);
            out.put(value);
            if let Some((name, sink)) = member.as_mut() {
                if self.key(entry) == *name {
                    sink.put(value);
                }
            }
        }
        out.put("}");
    }

    /// Empty again, its room kept.
    fn clear(&mut self) {
        self.text.clear();
        self.raw_keys.clear();
        self.entries.clear();
    }
}

/// The serializer: writes into `out`, spending `budget`.
struct CanonicalSerializer<'a> {
    out: &'a mut dyn Output,
    budget: &'a mut Budget,
}

impl CanonicalSerializer<'_> {
    fn emit(&mut self, text: &str) -> Result {
        self.budget.spend(text.len())?;
        self.out.put(text);
        Ok(())
    }

    /// Writes `value` as it displays (a number), then spends its bytes.
    fn emit_display(&mut self, value: impl Display) -> Result {
        let mut counted = Counted { out: &mut *self.out, bytes: 0 };
        // Writing into an output cannot fail.
        let _ = write!(counted, "{value}");
        let bytes = counted.bytes;
        self.budget.spend(bytes)
    }

    /// Writes `text` quoted and escaped, then spends its bytes (one string
    /// past the limit at most, and that string is the caller's already).
    fn emit_string(&mut self, text: &str) -> Result {
        let mut counted = Counted { out: &mut *self.out, bytes: 0 };
        write_string(text, &mut counted);
        let bytes = counted.bytes;
        self.budget.spend(bytes)
    }
}

impl<'a> CanonicalSerializer<'a> {
    fn object(self) -> ObjectSerializer<'a> {
        let object = self.budget.spare.pop().unwrap_or_default();
        ObjectSerializer { parent: self, object, pending_key: None, variant: false, raw: None }
    }

    fn reborrow(&mut self) -> CanonicalSerializer<'_> {
        CanonicalSerializer { out: &mut *self.out, budget: &mut *self.budget }
    }
}

impl<'a> ser::Serializer for CanonicalSerializer<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = ArraySerializer<'a>;
    type SerializeTuple = ArraySerializer<'a>;
    type SerializeTupleStruct = ArraySerializer<'a>;
    type SerializeTupleVariant = VariantArraySerializer<'a>;
    type SerializeMap = ObjectSerializer<'a>;
    type SerializeStruct = ObjectSerializer<'a>;
    type SerializeStructVariant = ObjectSerializer<'a>;

    fn serialize_bool(mut self, value: bool) -> Result {
        self.emit(if value { "true" } else { "false" })
    }

    fn serialize_i8(self, value: i8) -> Result {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i16(self, value: i16) -> Result {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i32(self, value: i32) -> Result {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i64(mut self, value: i64) -> Result {
        self.emit_display(value)
    }

    fn serialize_i128(self, value: i128) -> Result {
        if let Ok(value) = u64::try_from(value) {
            return self.serialize_u64(value);
        }
        match i64::try_from(value) {
            Ok(value) => self.serialize_i64(value),
            Err(_) => Err(CanonicalError::Unrepresentable("number out of range".to_owned())),
        }
    }

    fn serialize_u8(self, value: u8) -> Result {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u16(self, value: u16) -> Result {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u32(self, value: u32) -> Result {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u64(mut self, value: u64) -> Result {
        self.emit_display(value)
    }

    fn serialize_u128(self, value: u128) -> Result {
        match u64::try_from(value) {
            Ok(value) => self.serialize_u64(value),
            Err(_) => Err(CanonicalError::Unrepresentable("number out of range".to_owned())),
        }
    }

    fn serialize_f32(self, value: f32) -> Result {
        self.serialize_f64(f64::from(value))
    }

    fn serialize_f64(mut self, value: f64) -> Result {
        // As `Value::from(f64)`: non-finite is null; finite as `Number` shows it.
        match serde_json::Number::from_f64(value) {
            Some(number) => self.emit_display(number),
            None => self.emit("null"),
        }
    }

    fn serialize_char(mut self, value: char) -> Result {
        self.emit_string(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(mut self, value: &str) -> Result {
        self.emit_string(value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result {
        use ser::SerializeSeq as _;
        let mut array = self.serialize_seq(Some(value.len()))?;
        for byte in value {
            array.serialize_element(byte)?;
        }
        array.end()
    }

    fn serialize_none(mut self) -> Result {
        self.emit("null")
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_unit(mut self) -> Result {
        self.emit("null")
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        // One key: already in order.
        self.emit("{")?;
        self.emit_string(variant)?;
        self.emit(":")?;
        value.serialize(self.reborrow())?;
        self.emit("}")
    }

    fn serialize_seq(mut self, _len: Option<usize>) -> Result<ArraySerializer<'a>> {
        self.emit("[")?;
        Ok(ArraySerializer { serializer: self, first: true })
    }

    fn serialize_tuple(self, len: usize) -> Result<ArraySerializer<'a>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<ArraySerializer<'a>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantArraySerializer<'a>> {
        self.emit("{")?;
        self.emit_string(variant)?;
        self.emit(":")?;
        Ok(VariantArraySerializer(self.serialize_seq(Some(len))?))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(self.object())
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        let mut object = self.object();
        if name == NUMBER_TOKEN {
            object.raw = Some(String::new());
        }
        Ok(object)
    }

    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.emit("{")?;
        self.emit_string(variant)?;
        self.emit(":")?;
        let mut object = self.object();
        object.variant = true;
        Ok(object)
    }
}

/// An array: elements stream straight through.
pub(super) struct ArraySerializer<'a> {
    serializer: CanonicalSerializer<'a>,
    first: bool,
}

impl ArraySerializer<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if !self.first {
            self.serializer.emit(",")?;
        }
        self.first = false;
        value.serialize(self.serializer.reborrow())
    }

    fn close(mut self) -> Result {
        self.serializer.emit("]")
    }
}

impl ser::SerializeSeq for ArraySerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTuple for ArraySerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTupleStruct for ArraySerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

/// `{"variant":[...]}`.
pub(super) struct VariantArraySerializer<'a>(ArraySerializer<'a>);

impl ser::SerializeTupleVariant for VariantArraySerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.0.element(value)
    }

    fn end(self) -> Result {
        let mut serializer = self.0.serializer;
        serializer.emit("]")?;
        serializer.emit("}")
    }
}

/// An object: entries buffered, written sorted when it ends.
pub(super) struct ObjectSerializer<'a> {
    parent: CanonicalSerializer<'a>,
    object: ObjectBuffer,
    /// The key written, waiting for its value (`serialize_key`).
    pending_key: Option<(Range<usize>, Range<usize>)>,
    /// A struct variant's: one more `}` closes it.
    variant: bool,
    /// Set for serde_json's arbitrary-precision number: its digits.
    raw: Option<String>,
}

impl<'a> ObjectSerializer<'a> {
    /// Writes a key: its raw text and its quoted text.
    fn key_text<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(Range<usize>, Range<usize>)> {
        let (raw, quoted) = (self.object.raw_keys.len(), self.object.text.len());
        key.serialize(KeySerializer { object: &mut self.object, budget: &mut *self.parent.budget })?;
        Ok((raw..self.object.raw_keys.len(), quoted..self.object.text.len()))
    }

    fn value_text<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<Range<usize>> {
        let start = self.object.text.len();
        // The `:` and `,` around it are produced when the object is written.
        self.parent.budget.spend(if self.object.entries.is_empty() { 1 } else { 2 })?;
        value.serialize(CanonicalSerializer { out: &mut self.object, budget: &mut *self.parent.budget })?;
        Ok(start..self.object.text.len())
    }

    fn entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(&mut self, key: &K, value: &V) -> Result {
        let (raw_key, key) = self.key_text(key)?;
        let value = self.value_text(value)?;
        self.object.entries.push(Entry { raw_key, key, value });
        Ok(())
    }

    fn close(mut self) -> Result {
        if let Some(digits) = self.raw.take() {
            return self.parent.emit(&digits);
        }
        self.parent.budget.spend(2)?;
        self.parent.out.finish_object(&mut self.object);
        self.object.clear();
        self.parent.budget.spare.push(std::mem::take(&mut self.object));
        if self.variant {
            self.parent.emit("}")?;
        }
        Ok(())
    }
}

impl ser::SerializeMap for ObjectSerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.pending_key = Some(self.key_text(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        let (raw_key, key) = self
            .pending_key
            .take()
            .ok_or_else(|| CanonicalError::Unrepresentable("a map value without its key".to_owned()))?;
        let value = self.value_text(value)?;
        self.object.entries.push(Entry { raw_key, key, value });
        Ok(())
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(&mut self, key: &K, value: &V) -> Result {
        self.entry(key, value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeStruct for ObjectSerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        if let Some(raw) = self.raw.as_mut() {
            // An arbitrary-precision number: its one field is its digits.
            let digits = serde_json::to_value(value).map_err(|err| CanonicalError::Unrepresentable(err.to_string()))?;
            raw.push_str(digits.as_str().unwrap_or_default());
            return Ok(());
        }
        self.entry(key, value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeStructVariant for ObjectSerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.entry(key, value)
    }

    fn end(self) -> Result {
        self.close()
    }
}

/// A map key: a string, or a number, char or bool written as one (as
/// serde_json's `to_value` accepts them).
struct KeySerializer<'a> {
    object: &'a mut ObjectBuffer,
    budget: &'a mut Budget,
}

impl KeySerializer<'_> {
    fn key(self, text: &str) -> Result {
        let before = self.object.text.len();
        write_string(text, &mut self.object.text);
        self.object.raw_keys.push_str(text);
        self.budget.spend(self.object.text.len() - before)
    }

    fn refused<T>() -> Result<T> {
        Err(CanonicalError::Unrepresentable("key must be a string".to_owned()))
    }
}

/// `serialize_<int>` for each integer type: the number's text is the key.
macro_rules! integer_keys {
    ($($method:ident: $int:ty),*) => {
        $(fn $method(self, value: $int) -> Result {
            self.key(&value.to_string())
        })*
    };
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = ser::Impossible<(), CanonicalError>;
    type SerializeTuple = ser::Impossible<(), CanonicalError>;
    type SerializeTupleStruct = ser::Impossible<(), CanonicalError>;
    type SerializeTupleVariant = ser::Impossible<(), CanonicalError>;
    type SerializeMap = ser::Impossible<(), CanonicalError>;
    type SerializeStruct = ser::Impossible<(), CanonicalError>;
    type SerializeStructVariant = ser::Impossible<(), CanonicalError>;

    fn serialize_bool(self, value: bool) -> Result {
        self.key(if value { "true" } else { "false" })
    }

    integer_keys!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128
    );

    fn serialize_f32(self, _value: f32) -> Result {
        Self::refused()
    }

    fn serialize_f64(self, _value: f64) -> Result {
        Self::refused()
    }

    fn serialize_char(self, value: char) -> Result {
        self.key(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result {
        self.key(value)
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result {
        Self::refused()
    }

    fn serialize_none(self) -> Result {
        Self::refused()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result {
        Self::refused()
    }

    fn serialize_unit(self) -> Result {
        Self::refused()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Self::refused()
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result {
        self.key(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        Self::refused()
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Self::refused()
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Self::refused()
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeTupleStruct> {
        Self::refused()
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Self::refused()
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Self::refused()
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Self::refused()
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Self::refused()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::ser::SerializeMap as _;
    use serde_json::json;

    use super::*;
    use crate::events::{
        ProcessEventType, ProcessTerminalSpec, ProcessTerminalState, ProcessValueSelector, ProcessWakeDedupeKey,
        ProcessWakeSpec,
    };
    use crate::model::{ProcessInput, ProcessRegistration, SessionScope};
    use crate::rules::hashing::sha256_hex_of_json;
    use crate::rules::hashing::sha256_hex_of_serialized;
    use crate::rules::hashing::tests::json_values;

    /// The canonical text of `value` under `limit`.
    fn text<T: Serialize + ?Sized>(value: &T, limit: usize) -> Result<String> {
        let mut out = String::new();
        write_canonical_of(value, limit, &mut out, None::<(&str, &mut String)>)?;
        Ok(out)
    }

    /// What the old path gives: the canonical form of `to_value(value)`.
    fn through_value<T: Serialize + ?Sized>(value: &T) -> Option<String> {
        serde_json::to_value(value).ok().map(|value| {
            let mut out = String::new();
            crate::rules::hashing::write_canonical_for_tests(&value, &mut out);
            out
        })
    }

    fn same_as_through_value<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(text(value, usize::MAX).ok(), through_value(value));
    }

    #[derive(serde::Serialize)]
    struct OutOfOrder {
        zeta: u8,
        alpha: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        middle: (i8, f32),
    }

    #[derive(serde::Serialize)]
    enum Shapes {
        Unit,
        Newtype(Vec<u8>),
        Tuple(u8, String),
        Struct { b: bool, a: () },
    }

    /// A map that serializes one key twice.
    struct Duplicated;

    impl Serialize for Duplicated {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(3))?;
            map.serialize_entry("k", &1)?;
            map.serialize_entry("a", &2)?;
            map.serialize_entry("k", &3)?;
            map.end()
        }
    }

    #[test]
    fn struct_fields_are_sorted_and_skipped_fields_left_out() {
        let value = OutOfOrder { zeta: 1, alpha: None, skipped: None, middle: (-2, 0.5) };
        assert_eq!(text(&value, usize::MAX).unwrap(), r#"{"alpha":null,"middle":[-2,0.5],"zeta":1}"#);
        same_as_through_value(&value);
    }

    #[test]
    fn every_enum_shape_is_written_as_serde_json_writes_it() {
        for shape in [
            Shapes::Unit,
            Shapes::Newtype(vec![1, 2]),
            Shapes::Tuple(7, "x\n".to_owned()),
            Shapes::Struct { b: true, a: () },
        ] {
            same_as_through_value(&shape);
        }
        assert_eq!(text(&Shapes::Struct { b: true, a: () }, usize::MAX).unwrap(), r#"{"Struct":{"a":null,"b":true}}"#);
    }

    #[test]
    fn scalars_match_serde_json() {
        same_as_through_value(&f32::NAN);
        same_as_through_value(&f64::INFINITY);
        same_as_through_value(&1.0e300_f64);
        same_as_through_value(&'é');
        same_as_through_value(&i128::from(i64::MIN));
        same_as_through_value(&u128::from(u64::MAX));
        same_as_through_value(&serde_bytes_like());
        assert!(text(&u128::MAX, usize::MAX).is_err());
        assert!(text(&i128::MIN, usize::MAX).is_err());
        let keyed: BTreeMap<i32, bool> = [(-1, true), (10, false), (2, true)].into_iter().collect();
        same_as_through_value(&keyed);
        assert_eq!(text(&keyed, usize::MAX).unwrap(), r#"{"-1":true,"10":false,"2":true}"#);
    }

    fn serde_bytes_like() -> Vec<Option<u8>> {
        vec![Some(0), None, Some(255)]
    }

    #[test]
    fn the_last_of_duplicate_keys_wins_as_in_a_value() {
        assert_eq!(text(&Duplicated, usize::MAX).unwrap(), r#"{"a":2,"k":3}"#);
        same_as_through_value(&Duplicated);
    }

    #[test]
    fn a_key_that_is_not_a_string_or_number_is_refused() {
        let keyed: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert!(matches!(text(&keyed, usize::MAX), Err(CanonicalError::Unrepresentable(_))));
    }

    #[test]
    fn the_member_is_hashed_only_for_the_top_level_object() {
        let value = json!({"m": {"x": 1}, "n": 2});
        let (whole, member) = sha256_hex_of_serialized(&value, "m", usize::MAX).unwrap();
        assert_eq!(whole, sha256_hex_of_json(&value));
        assert_eq!(member, Some(sha256_hex_of_json(&json!({"x": 1}))));
        let nested = json!([{"m": 1}]);
        assert_eq!(sha256_hex_of_serialized(&nested, "m", usize::MAX).unwrap().1, None);
        assert_eq!(sha256_hex_of_serialized(&json!({"n": 1}), "m", usize::MAX).unwrap().1, None);
    }

    fn selectors() -> impl Strategy<Value = ProcessValueSelector> {
        let leaf = prop_oneof![
            Just(ProcessValueSelector::Payload),
            "/[a-z]{0,4}".prop_map(ProcessValueSelector::Pointer),
            json_values().prop_map(ProcessValueSelector::Const),
            "/[a-z]{0,4}".prop_map(ProcessValueSelector::Present),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            ("[a-z{}]{0,8}", prop::collection::btree_map("[a-z]{1,3}", inner, 0..3))
                .prop_map(|(template, fields)| ProcessValueSelector::Template { template, fields })
        })
    }

    fn event_types() -> impl Strategy<Value = ProcessEventType> {
        let terminal = prop_oneof![
            Just(ProcessTerminalState::Completed),
            Just(ProcessTerminalState::Failed),
            Just(ProcessTerminalState::Cancelled)
        ];
        let dedupe = prop_oneof![
            Just(ProcessWakeDedupeKey::EventIdentity),
            selectors().prop_map(ProcessWakeDedupeKey::Selector),
            "[a-z]{0,4}".prop_map(ProcessWakeDedupeKey::Const),
        ];
        (
            "[a-z.\"\\\\\u{e9}]{1,10}",
            json_values(),
            prop::option::of((terminal, prop::option::of(selectors()))),
            prop::option::of((selectors(), prop::option::of(selectors()), dedupe)),
        )
            .prop_map(|(name, schema, terminal, wake)| {
                let mut declared = ProcessEventType::new(name, schema);
                if let Some((state, await_output)) = terminal {
                    declared = declared.with_terminal(ProcessTerminalSpec { state, await_output });
                }
                if let Some((input, when, dedupe_key)) = wake {
                    let mut spec = ProcessWakeSpec::new(input).with_dedupe_key(dedupe_key);
                    if let Some(when) = when {
                        spec = spec.with_when(when);
                    }
                    declared = declared.with_wake(spec);
                }
                declared
            })
    }

    fn registrations() -> impl Strategy<Value = ProcessRegistration> {
        let input = prop_oneof![
            ("[a-z.]{0,8}", prop::collection::btree_map(any::<String>(), json_values(), 0..4))
                .prop_map(|(name, args)| ProcessInput::definition(name, args.into_iter().collect())),
            json_values().prop_map(ProcessInput::external),
        ];
        (
            any::<String>(),
            input,
            prop::collection::vec(event_types(), 0..4),
            prop::option::of("[a-z]{0,6}"),
            prop::option::of(("[a-z]{1,6}", prop::option::of("[a-z]{0,4}"))),
            "[a-z ]{0,6}",
        )
            .prop_map(|(id, input, extra, env_ref, wake_target, host)| {
                let mut registration =
                    ProcessRegistration::new(id, input).with_extra_event_types(extra).with_host_profile_id(host);
                if let Some(env_ref) = env_ref {
                    registration = registration.with_env_ref(env_ref);
                }
                if let Some((session, frame)) = wake_target {
                    registration = registration.with_wake_target(match frame {
                        Some(frame) => SessionScope::with_frame(session, frame),
                        None => SessionScope::new(session),
                    });
                }
                registration
            })
    }

    proptest! {
        #[test]
        fn values_are_written_as_their_canonical_form(value in json_values()) {
            prop_assert_eq!(text(&value, usize::MAX).ok(), through_value(&value));
        }

        #[test]
        fn registrations_hash_as_their_value_does(registration in registrations()) {
            let as_value = serde_json::to_value(&registration).unwrap();
            let expected = (sha256_hex_of_json(&as_value), as_value.get("event_types").map(sha256_hex_of_json));
            prop_assert_eq!(sha256_hex_of_serialized(&registration, "event_types", usize::MAX).unwrap(), expected);
        }

        #[test]
        fn the_limit_is_the_exact_canonical_length(registration in registrations()) {
            let len = text(&registration, usize::MAX).unwrap().len();
            prop_assert!(text(&registration, len).is_ok());
            prop_assert_eq!(text(&registration, len - 1), Err(CanonicalError::TooLarge));
        }

        #[test]
        fn the_limit_is_exact_for_any_value(value in json_values()) {
            let len = text(&value, usize::MAX).unwrap().len();
            prop_assert!(text(&value, len).is_ok());
            prop_assert_eq!(text(&value, len - 1), Err(CanonicalError::TooLarge));
        }
    }
}
