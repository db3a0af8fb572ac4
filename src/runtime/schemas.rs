//! The schema cache: compiled schemas interned across processes, bounded.
//!
//! Most processes of one runtime declare the same few event types, so each
//! distinct schema is compiled once and shared ([`SchemaCache`]): a second
//! registration with the same declarations costs a hash lookup, not a
//! compile, and every process shares one validator in memory.
//!
//! Whole declaration lists are interned too: the records of processes that
//! declare the same event types share one `Arc<Vec<ProcessEventType>>`,
//! which is most of a record's size, and an actor activated for such a
//! process finds its compiled schemas by that `Arc`'s address without
//! hashing anything. One cache lives in the registry's shared state;
//! callers preparing registrations and the supervisor activating actors
//! read and fill it concurrently.
//!
//! # Bounds
//!
//! Caller input must not grow the cache without limit, so:
//!
//! - **Only accepted registrations are interned.** Preparing a
//!   registration ([`SchemaSource::declare`]) looks entries up but inserts
//!   none; the registration's declarations are interned when it is
//!   accepted as a new process ([`SchemaSource::accepted`]). A refused
//!   registration (invalid, conflicting, lost to a racing one) leaves
//!   nothing behind.
//! - **At most `max_cached_schemas` entries** of each kind (compiled
//!   schemas; declaration lists), counted as they are reserved. Past the
//!   cap nothing more is interned: a later registration keeps declarations
//!   compiled for it alone, and its actor compiles them again on each
//!   activation (found by address or not, the schemas are always right).
//! - **Nothing is ever evicted.** Records are never removed, so an
//!   interned list stays referenced anyway, and an entry that stays keeps
//!   its `Arc` (and so its address, the key of `by_address`) alive and
//!   unique: an address can never come to mean another list's schemas.
//!   Eviction would buy nothing that the cap does not, at that risk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde_json::Value;

use crate::events::ProcessEventType;
use crate::rules::hashing::sha256_hex_of_json;
use crate::rules::schema::{self, CompiledSchema, CompiledSchemas, Declarations, SchemaSource};

/// Interns compiled schemas by the hash of their canonical JSON, and whole
/// declaration lists by theirs, up to `capacity` of each.
#[derive(Default)]
pub(crate) struct SchemaCache {
    capacity: usize,
    compiled: DashMap<String, CompiledSchema>,
    compiled_count: AtomicUsize,
    declarations: DashMap<String, Declarations>,
    declarations_count: AtomicUsize,
    by_address: DashMap<usize, CompiledSchemas>,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache")
            .field("capacity", &self.capacity)
            .field("schemas", &self.compiled.len())
            .field("declarations", &self.declarations.len())
            .finish()
    }
}

/// Takes one of `capacity` slots counted by `count`; false when none is left.
fn reserve(count: &AtomicUsize, capacity: usize) -> bool {
    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| (taken < capacity).then_some(taken + 1)).is_ok()
}

impl SchemaCache {
    /// An empty cache that keeps at most `capacity` compiled schemas and
    /// `capacity` declaration lists.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, ..Self::default() }
    }

    /// Compiles `schema`, or returns the interned validator. The error is
    /// the reason the schema is not a valid JSON Schema. With `keep`, a
    /// new validator is interned while there is room.
    fn compile(&self, schema: &Value, keep: bool) -> Result<CompiledSchema, String> {
        let key = sha256_hex_of_json(schema);
        if let Some(found) = self.compiled.get(&key) {
            return Ok(Arc::clone(found.value()));
        }
        let validator = schema::compile(schema)?;
        if keep {
            return Ok(self.keep_compiled(key, validator));
        }
        Ok(validator)
    }

    /// Interns `validator` under `key` while there is room; returns the
    /// interned one (which may be another thread's) or `validator`.
    fn keep_compiled(&self, key: String, validator: CompiledSchema) -> CompiledSchema {
        match self.compiled.entry(key) {
            Entry::Occupied(found) => Arc::clone(found.get()),
            Entry::Vacant(slot) if reserve(&self.compiled_count, self.capacity) => {
                Arc::clone(slot.insert(validator).value())
            }
            Entry::Vacant(_) => validator,
        }
    }

    /// The compiled schemas of a record's event types: found by address
    /// when they were interned here, else compiled (and interned while
    /// there is room: they belong to an accepted process).
    pub(crate) fn schemas_for(
        &self,
        event_types: &Arc<Vec<ProcessEventType>>,
    ) -> Result<CompiledSchemas, (String, String)> {
        if let Some(found) = self.by_address.get(&(Arc::as_ptr(event_types) as usize)) {
            return Ok(Arc::clone(found.value()));
        }
        schema::compile_all(event_types, |schema| self.compile(schema, true))
    }

    /// Number of distinct schemas and of declaration lists interned.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.compiled.len(), self.declarations.len())
    }
}

impl SchemaSource for SchemaCache {
    /// The interned declarations for `event_types`, whose canonical JSON
    /// hashes to `hash`, or declarations compiled from the interned
    /// schemas where there are some: nothing is interned yet.
    fn declare(&self, event_types: &[ProcessEventType], hash: &str) -> Result<Declarations, (String, String)> {
        if let Some(found) = self.declarations.get(hash) {
            return Ok(found.value().clone());
        }
        let schemas = schema::compile_all(event_types, |schema| self.compile(schema, false))?;
        Ok(Declarations { event_types: Arc::new(event_types.to_vec()), schemas })
    }

    /// Interns the declarations of an accepted process while there is
    /// room, with each of their schemas; returns the interned (perhaps
    /// equal, earlier) ones, or `declarations` past the cap.
    fn accepted(&self, hash: &str, declarations: Declarations) -> Declarations {
        match self.declarations.entry(hash.to_owned()) {
            Entry::Occupied(found) => found.get().clone(),
            Entry::Vacant(slot) if reserve(&self.declarations_count, self.capacity) => {
                for declared in declarations.event_types.iter() {
                    if let Some(validator) = declarations.schemas.get(&declared.name) {
                        self.keep_compiled(sha256_hex_of_json(&declared.payload_schema), Arc::clone(validator));
                    }
                }
                let interned = slot.insert(declarations).value().clone();
                // The entry keeps the list alive, so its address stays its own.
                self.by_address.insert(Arc::as_ptr(&interned.event_types) as usize, Arc::clone(&interned.schemas));
                interned
            }
            Entry::Vacant(_) => declarations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(schema: Value) -> Vec<ProcessEventType> {
        vec![ProcessEventType::new("a", schema)]
    }

    #[test]
    fn equal_schemas_are_compiled_once() {
        let cache = SchemaCache::new(8);
        let first = cache.compile(&json!({"type": "object", "required": ["a"]}), true).unwrap();
        let second = cache.compile(&json!({"required": ["a"], "type": "object"}), true).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), (1, 0));
    }

    #[test]
    fn accepted_declarations_share_one_list_and_find_their_schemas_by_address() {
        let cache = SchemaCache::new(8);
        let declared = types(json!({"type": "object"}));
        let first = cache.accepted("h", cache.declare(&declared, "h").unwrap());
        let second = cache.declare(&declared, "h").unwrap();
        assert!(Arc::ptr_eq(&first.event_types, &second.event_types));
        assert!(Arc::ptr_eq(&cache.schemas_for(&first.event_types).unwrap(), &first.schemas));
        let foreign = Arc::new(declared);
        assert!(!Arc::ptr_eq(&cache.schemas_for(&foreign).unwrap(), &first.schemas));
        assert_eq!(cache.len(), (1, 1));
    }

    #[test]
    fn declarations_of_registrations_never_accepted_are_not_kept() {
        let cache = SchemaCache::new(8);
        for index in 0..20 {
            let declared = types(json!({"type": "object", "required": [format!("f{index}")]}));
            let declarations = cache.declare(&declared, &format!("h{index}")).unwrap();
            assert!(schema::validate(&declarations.schemas["a"], &json!({})).is_err(), "compiled all the same");
        }
        assert!(cache.declare(&types(json!({"type": 17})), "bad").is_err());
        assert_eq!(cache.len(), (0, 0), "preparing interns nothing");
    }

    #[test]
    fn interning_stops_at_the_cap_and_uncached_declarations_still_validate() {
        let cache = SchemaCache::new(2);
        let mut kept = Vec::new();
        for index in 0..10 {
            let declared = types(json!({"type": "object", "required": [format!("f{index}")]}));
            let hash = format!("h{index}");
            kept.push(cache.accepted(&hash, cache.declare(&declared, &hash).unwrap()));
        }
        assert_eq!(cache.len(), (2, 2), "at most the cap of each kind");
        for (index, declarations) in kept.iter().enumerate() {
            let schemas = cache.schemas_for(&declarations.event_types).unwrap();
            let field = format!("f{index}");
            assert!(schema::validate(&schemas["a"], &json!({ field: 1 })).is_ok(), "{index}");
            assert!(schema::validate(&schemas["a"], &json!({})).is_err(), "{index}");
        }
        assert_eq!(cache.len(), (2, 2), "activating uncached processes interns nothing past the cap");
        let off = SchemaCache::new(0);
        let declared = types(json!({"type": "object"}));
        let declarations = off.accepted("h", off.declare(&declared, "h").unwrap());
        assert!(off.schemas_for(&declarations.event_types).is_ok());
        assert_eq!(off.len(), (0, 0));
    }

    #[test]
    fn invalid_schemas_are_refused() {
        let cache = SchemaCache::new(8);
        assert!(cache.compile(&json!({"type": "no-such-type"}), true).is_err());
        assert!(cache.compile(&json!({"minimum": "ten"}), true).is_err());
        assert_eq!(cache.len(), (0, 0));
    }
}
