//! Size and depth limits on caller input.
//!
//! Every recursive algorithm the registry runs over caller JSON (hashing,
//! schema validation, serde) is only safe when the nesting depth is bounded,
//! so depth is measured first, iteratively, and oversized input is refused
//! with [`RegistryError::LimitExceeded`] before anything recursive sees it.
//! Refused deep values are also *dropped* iteratively ([`dismantle`]):
//! serde_json's drop glue recurses, and a 100,000-level value would overflow
//! a worker's stack while being freed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RegistryError;
use crate::events::{CANCELLED, CANCEL_REQUESTED, COMPLETED, FAILED, RESUMED, WAITING};

/// Bytes a registry-derived replay key adds to a process id, at most.
const DERIVED_KEY_ROOM: usize = 256;

/// Configurable bounds on caller input, with generous defaults. A field
/// missing from serialized limits takes its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Longest process id, owner id, replay key or event type name, in bytes.
    pub max_id_bytes: usize,
    /// Largest payload (canonical JSON bytes) of one event.
    pub max_payload_bytes: usize,
    /// Deepest nesting of any JSON value a caller passes in.
    pub max_json_depth: usize,
    /// Most event types one process may declare (core types included).
    pub max_event_types: usize,
    /// Largest registration: bytes of its canonical JSON as stored, core
    /// event types included. Checked while that JSON is hashed, which
    /// stops at the limit (an oversized registration costs at most the
    /// limit's worth of work), before any schema is compiled.
    pub max_registration_bytes: usize,
    /// Most bytes the selector templates of one event may render, all of
    /// them together (await output, wake input and dedupe key), each
    /// substitution counting one byte more than it renders. A template can
    /// substitute a large payload many times over, or nest templates that
    /// substitute each other: without this bound a small payload could
    /// render gigabytes, or run for ever rendering nothing.
    pub max_template_bytes: usize,
    /// Most distinct compiled schemas, and most distinct declaration lists,
    /// the registry's shared schema cache keeps (each counted apart).
    /// Registrations beyond it still work, with schemas compiled for them
    /// alone; 0 turns the cache off.
    pub max_cached_schemas: usize,
    /// Most requests one batch append may carry (each is still bounded by
    /// the limits above).
    pub max_batch_events: usize,
    /// Most payload bytes (canonical JSON, as `max_payload_bytes` counts
    /// them) one batch append may carry, all its requests together: a
    /// batch is one commit, written in one transaction or statement, and
    /// validated in one turn of its process's actor.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_bytes: 1024,
            max_payload_bytes: 4 * 1024 * 1024,
            max_json_depth: 128,
            max_event_types: 256,
            max_registration_bytes: 4 * 1024 * 1024,
            max_template_bytes: 4 * 1024 * 1024,
            max_cached_schemas: 1024,
            max_batch_events: 10_000,
            max_batch_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The core event types' names: every registration declares them, so the
/// id limit must admit the longest.
const CORE_EVENT_TYPE_NAMES: [&str; 6] = [CANCEL_REQUESTED, WAITING, RESUMED, COMPLETED, FAILED, CANCELLED];

/// How deep the core event types' payload schemas nest (`{"type": "object"}`).
const CORE_SCHEMA_DEPTH: usize = 2;

impl Limits {
    /// Why these limits make no sense, if they do not: a byte limit of 0,
    /// or a limit below what the core event types every registration
    /// declares need (id bytes below their longest name, 24; JSON depth
    /// below their schemas', 2; event types below their number, 6), under
    /// which every registration would be refused, a batch bound of 0, or a
    /// batch byte bound below the payload bound.
    /// (`max_cached_schemas` may be 0: no cache.)
    pub fn validate(&self) -> Result<(), String> {
        let longest_core_name = CORE_EVENT_TYPE_NAMES.iter().map(|name| name.len()).max().unwrap_or_default();
        if self.max_id_bytes < longest_core_name {
            return Err(format!(
                "limits.max_id_bytes is {}, below the {longest_core_name} bytes of the core event type names",
                self.max_id_bytes
            ));
        }
        for (name, bytes) in [
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_registration_bytes", self.max_registration_bytes),
            ("max_template_bytes", self.max_template_bytes),
            ("max_batch_events", self.max_batch_events),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if bytes == 0 {
                return Err(format!("limits.{name} is 0: nothing would fit"));
            }
        }
        if self.max_batch_bytes < self.max_payload_bytes {
            return Err(format!(
                "limits.max_batch_bytes is {}, below max_payload_bytes ({}): a batch of one could not carry what \
                 one append can",
                self.max_batch_bytes, self.max_payload_bytes
            ));
        }
        if self.max_json_depth < CORE_SCHEMA_DEPTH {
            return Err(format!(
                "limits.max_json_depth is {}, below the depth {CORE_SCHEMA_DEPTH} of the core event types' schemas",
                self.max_json_depth
            ));
        }
        if self.max_event_types < CORE_EVENT_TYPE_NAMES.len() {
            return Err(format!(
                "limits.max_event_types is {}, below the {} core event types",
                self.max_event_types,
                CORE_EVENT_TYPE_NAMES.len()
            ));
        }
        Ok(())
    }

    /// Refuses an id-like string longer than `max_id_bytes`.
    pub fn check_id(&self, process_id: &str, what: &str, value: &str) -> Result<(), RegistryError> {
        if value.len() > self.max_id_bytes {
            return Err(limit_exceeded(process_id, what, self.max_id_bytes));
        }
        Ok(())
    }

    /// Refuses a replay key longer than `max_id_bytes` plus room for the
    /// keys the registry derives from a process id itself
    /// (`process:{id}:terminal:{type}`, `process:{id}:cancel_requested:{sha256}`),
    /// so a process whose id is at the limit can still be completed.
    pub fn check_replay_key(&self, process_id: &str, key: &str) -> Result<(), RegistryError> {
        let limit = self.max_id_bytes.saturating_add(DERIVED_KEY_ROOM);
        if key.len() > limit {
            return Err(limit_exceeded(process_id, "replay key bytes", limit));
        }
        refuse_nul(process_id, "replay key", key)
    }

    /// Passes `value` through when its depth is within `max_json_depth`;
    /// otherwise drops it without recursion and refuses it.
    pub fn bounded(&self, process_id: &str, what: &str, value: Value) -> Result<Value, RegistryError> {
        match self.check_depth(process_id, what, &value) {
            Ok(()) => Ok(value),
            Err(err) => {
                dismantle(value);
                Err(err)
            }
        }
    }

    /// Refuses a JSON value nested deeper than `max_json_depth`.
    pub fn check_depth(&self, process_id: &str, what: &str, value: &Value) -> Result<(), RegistryError> {
        if exceeds_depth(value, self.max_json_depth) {
            return Err(limit_exceeded(process_id, what, self.max_json_depth));
        }
        Ok(())
    }

    /// Refuses a payload whose canonical form exceeds `max_payload_bytes`.
    pub fn check_payload_bytes(&self, process_id: &str, bytes: usize) -> Result<(), RegistryError> {
        if bytes > self.max_payload_bytes {
            return Err(limit_exceeded(process_id, "payload bytes", self.max_payload_bytes));
        }
        Ok(())
    }

    /// Refuses a batch whose payloads add up to more than `max_batch_bytes`.
    pub fn check_batch_bytes(&self, process_id: &str, bytes: usize) -> Result<(), RegistryError> {
        if bytes > self.max_batch_bytes {
            return Err(limit_exceeded(process_id, "payload bytes in one batch", self.max_batch_bytes));
        }
        Ok(())
    }
}

/// Refuses an id or key with a NUL character (see
/// [`RegistryError::ContainsNul`]). Checked where a value is first stored
/// (a registration's id and event type names, replay keys, session and
/// frame ids, lease owners), not where an existing one is named: a file
/// written before this rule keeps working.
pub(crate) fn refuse_nul(process_id: &str, what: &str, value: &str) -> Result<(), RegistryError> {
    if value.contains('\0') {
        return Err(RegistryError::ContainsNul { process_id: truncated(process_id), what: what.to_owned() });
    }
    Ok(())
}

pub(crate) fn limit_exceeded(process_id: &str, what: &str, limit: usize) -> RegistryError {
    RegistryError::LimitExceeded {
        process_id: truncated(process_id),
        what: what.to_owned(),
        limit: u64::try_from(limit).unwrap_or(u64::MAX),
    }
}

/// Error messages name the process, but a refused megabyte-long id would
/// make a megabyte-long message: keep its first 128 bytes.
pub(crate) fn truncated(process_id: &str) -> String {
    const KEEP: usize = 128;
    if process_id.len() <= KEEP {
        return process_id.to_owned();
    }
    let mut end = KEEP;
    while !process_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &process_id[..end])
}

/// True when `value` nests deeper than `max_depth` (a scalar has depth 1).
/// Iterative: safe on any input.
pub fn exceeds_depth(value: &Value, max_depth: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((item, depth)) = stack.pop() {
        if depth > max_depth {
            return true;
        }
        match item {
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    false
}

/// Drops `value` without recursion, however deep it is.
pub fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(item) = stack.pop() {
        match item {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, child)| child)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut value = json!(0);
        for _ in 1..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn depth_counts_scalars_as_one() {
        assert!(!exceeds_depth(&json!(1), 1));
        assert!(exceeds_depth(&json!([1]), 1));
        assert!(!exceeds_depth(&json!({"a": [1]}), 3));
        assert!(exceeds_depth(&json!({"a": [1]}), 2));
    }

    #[test]
    fn a_hundred_thousand_levels_are_measured_and_dropped_without_overflow() {
        let deep = nested(100_000);
        assert!(exceeds_depth(&deep, 128));
        dismantle(deep);
    }

    #[test]
    fn limits_produce_typed_errors_naming_the_process() {
        let limits = Limits { max_id_bytes: 4, ..Limits::default() };
        let err = limits.check_id("p", "process id", "too long").unwrap_err();
        assert!(matches!(err, RegistryError::LimitExceeded { limit: 4, .. }));
        assert!(err.to_string().contains("`p`"));
    }

    #[test]
    fn derived_replay_keys_of_an_id_at_the_limit_fit() {
        let limits = Limits::default();
        let id = "p".repeat(limits.max_id_bytes);
        let derived = format!("process:{id}:cancel_requested:{}", "f".repeat(64));
        assert!(limits.check_replay_key(&id, &derived).is_ok());
        assert!(limits.check_replay_key(&id, &"k".repeat(limits.max_id_bytes + 257)).is_err());
    }

    #[test]
    fn bounded_refuses_and_drops_deep_values() {
        let mut deep = json!(0);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(Limits::default().bounded("p", "value depth", deep).is_err());
        assert_eq!(Limits::default().bounded("p", "value depth", json!([1])).unwrap(), json!([1]));
    }

    #[test]
    fn limits_below_what_the_core_event_types_need_are_invalid() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let smallest = Limits {
            max_id_bytes: 24,
            max_payload_bytes: 1,
            max_json_depth: 2,
            max_event_types: 6,
            max_registration_bytes: 1,
            max_template_bytes: 1,
            max_cached_schemas: 0,
            max_batch_events: 1,
            max_batch_bytes: 1,
        };
        assert_eq!(smallest.validate(), Ok(()));
        for invalid in [
            Limits { max_id_bytes: 23, ..smallest.clone() },
            Limits { max_payload_bytes: 0, ..smallest.clone() },
            Limits { max_batch_events: 0, ..smallest.clone() },
            Limits { max_batch_bytes: 0, ..smallest.clone() },
            Limits { max_payload_bytes: 2, ..smallest.clone() },
            Limits { max_json_depth: 1, ..smallest.clone() },
            Limits { max_event_types: 5, ..smallest.clone() },
            Limits { max_registration_bytes: 0, ..smallest.clone() },
            Limits { max_template_bytes: 0, ..smallest.clone() },
        ] {
            assert!(invalid.validate().is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn truncated_ids_stay_on_char_boundaries() {
        let id = "é".repeat(100);
        let short = truncated(&id);
        assert!(short.ends_with("..."));
        assert!(short.len() <= 131);
    }
}
