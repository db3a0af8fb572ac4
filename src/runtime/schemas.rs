//! The schema cache: compiled schemas interned across processes.
//!
//! Most processes of one runtime declare the same few event types, so each
//! distinct schema is compiled once and shared ([`SchemaCache`]): a second
//! registration with the same declarations costs a hash lookup, not a
//! compile, and every process shares one validator in memory.
//!
//! Whole declaration lists are interned too ([`SchemaCache::declare`]): the
//! records of processes that declare the same event types share one
//! `Arc<Vec<ProcessEventType>>`, which is most of a record's size, and an
//! actor activated for such a process finds its compiled schemas by that
//! `Arc` without hashing anything. One cache lives in the registry's shared
//! state; callers preparing registrations and the supervisor activating
//! actors read and fill it concurrently.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use crate::events::ProcessEventType;
use crate::rules::hashing::sha256_hex_of_json;
use crate::rules::schema::{self, CompiledSchema, CompiledSchemas, Declarations, SchemaSource};

/// Interns compiled schemas by the hash of their canonical JSON, and whole
/// declaration lists by theirs.
///
/// Entries are never evicted: a runtime declares a bounded set of event
/// types, and a held entry keeps every interned `Arc` (and so its address,
/// the key of `by_address`) alive and unique.
#[derive(Default)]
pub(crate) struct SchemaCache {
    compiled: DashMap<String, CompiledSchema>,
    declarations: DashMap<String, Declarations>,
    by_address: DashMap<usize, CompiledSchemas>,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache").field("schemas", &self.compiled.len()).finish()
    }
}

impl SchemaCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Compiles `schema` (or returns the interned validator). The error is
    /// the reason the schema is not a valid JSON Schema.
    pub(crate) fn compile(&self, schema: &Value) -> Result<CompiledSchema, String> {
        let key = sha256_hex_of_json(schema);
        if let Some(found) = self.compiled.get(&key) {
            return Ok(Arc::clone(found.value()));
        }
        let validator = schema::compile(schema)?;
        Ok(Arc::clone(self.compiled.entry(key).or_insert(validator).value()))
    }

    /// The compiled schemas of a record's event types: found by address
    /// when they were interned here, else compiled.
    pub(crate) fn schemas_for(
        &self,
        event_types: &Arc<Vec<ProcessEventType>>,
    ) -> Result<CompiledSchemas, (String, String)> {
        if let Some(found) = self.by_address.get(&(Arc::as_ptr(event_types) as usize)) {
            return Ok(Arc::clone(found.value()));
        }
        schema::compile_all(event_types, |schema| self.compile(schema))
    }

    /// Number of distinct schemas compiled so far.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.compiled.len()
    }
}

impl SchemaSource for SchemaCache {
    /// The interned declarations for `event_types`, whose canonical JSON
    /// hashes to `hash`; compiled on first sight.
    fn declare(&self, event_types: &[ProcessEventType], hash: String) -> Result<Declarations, (String, String)> {
        if let Some(found) = self.declarations.get(&hash) {
            return Ok(found.value().clone());
        }
        let schemas = schema::compile_all(event_types, |schema| self.compile(schema))?;
        let declarations = Declarations { event_types: Arc::new(event_types.to_vec()), schemas };
        let interned = self.declarations.entry(hash).or_insert(declarations).value().clone();
        self.by_address.insert(Arc::as_ptr(&interned.event_types) as usize, Arc::clone(&interned.schemas));
        Ok(interned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_schemas_are_compiled_once() {
        let cache = SchemaCache::new();
        let first = cache.compile(&json!({"type": "object", "required": ["a"]})).unwrap();
        let second = cache.compile(&json!({"required": ["a"], "type": "object"})).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn equal_declarations_share_one_list_and_find_their_schemas_by_address() {
        let cache = SchemaCache::new();
        let types = vec![ProcessEventType::new("a", json!({"type": "object"}))];
        let first = cache.declare(&types, "h".into()).unwrap();
        let second = cache.declare(&types, "h".into()).unwrap();
        assert!(Arc::ptr_eq(&first.event_types, &second.event_types));
        assert!(Arc::ptr_eq(&cache.schemas_for(&first.event_types).unwrap(), &first.schemas));
        let foreign = Arc::new(types);
        assert!(!Arc::ptr_eq(&cache.schemas_for(&foreign).unwrap(), &first.schemas));
    }

    #[test]
    fn invalid_schemas_are_refused() {
        let cache = SchemaCache::new();
        assert!(cache.compile(&json!({"type": "no-such-type"})).is_err());
        assert!(cache.compile(&json!({"minimum": "ten"})).is_err());
        assert_eq!(cache.len(), 0);
    }
}
