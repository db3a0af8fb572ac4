//! JSON Schema compilation, interned across processes.
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
//! `Arc` without hashing anything.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use jsonschema::Validator;
use serde_json::Value;

use crate::events::ProcessEventType;
use crate::rules::hashing::sha256_hex_of_json;

/// A compiled payload schema.
pub type CompiledSchema = Arc<Validator>;

/// Compiled schemas of one process, by event type name.
pub type CompiledSchemas = Arc<HashMap<String, CompiledSchema>>;

/// One interned declaration list and its compiled schemas.
#[derive(Clone, Debug)]
pub struct Declarations {
    /// The shared event types.
    pub event_types: Arc<Vec<ProcessEventType>>,
    /// Their compiled schemas.
    pub schemas: CompiledSchemas,
}

/// Interns compiled schemas by the hash of their canonical JSON, and whole
/// declaration lists by theirs.
///
/// Entries are never evicted: a runtime declares a bounded set of event
/// types, and a held entry keeps every interned `Arc` (and so its address,
/// the key of `by_address`) alive and unique.
#[derive(Default)]
pub struct SchemaCache {
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `schema` (or returns the interned validator). The error is
    /// the reason the schema is not a valid JSON Schema.
    pub fn compile(&self, schema: &Value) -> Result<CompiledSchema, String> {
        let key = sha256_hex_of_json(schema);
        if let Some(found) = self.compiled.get(&key) {
            return Ok(Arc::clone(found.value()));
        }
        let validator = Arc::new(jsonschema::validator_for(schema).map_err(|err| err.to_string())?);
        Ok(Arc::clone(self.compiled.entry(key).or_insert(validator).value()))
    }

    /// Compiles every declared schema; the error names the failing type.
    pub fn compile_all(&self, event_types: &[ProcessEventType]) -> Result<CompiledSchemas, (String, String)> {
        let mut schemas = HashMap::with_capacity(event_types.len());
        for declared in event_types {
            let validator = self.compile(&declared.payload_schema).map_err(|reason| (declared.name.clone(), reason))?;
            schemas.insert(declared.name.clone(), validator);
        }
        Ok(Arc::new(schemas))
    }

    /// The interned declarations for `event_types`, whose canonical JSON
    /// hashes to `hash`; compiled on first sight.
    pub fn declare(&self, event_types: &[ProcessEventType], hash: String) -> Result<Declarations, (String, String)> {
        if let Some(found) = self.declarations.get(&hash) {
            return Ok(found.value().clone());
        }
        let schemas = self.compile_all(event_types)?;
        let declarations = Declarations { event_types: Arc::new(event_types.to_vec()), schemas };
        let interned = self.declarations.entry(hash).or_insert(declarations).value().clone();
        self.by_address.insert(Arc::as_ptr(&interned.event_types) as usize, Arc::clone(&interned.schemas));
        Ok(interned)
    }

    /// The compiled schemas of a record's event types: found by address
    /// when they were interned here, else compiled.
    pub fn schemas_for(&self, event_types: &Arc<Vec<ProcessEventType>>) -> Result<CompiledSchemas, (String, String)> {
        if let Some(found) = self.by_address.get(&(Arc::as_ptr(event_types) as usize)) {
            return Ok(Arc::clone(found.value()));
        }
        self.compile_all(event_types)
    }

    /// Number of distinct schemas compiled so far.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    /// True when nothing was compiled yet.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }
}

/// Validates `payload`; on failure returns `(json_pointer, message)` of the
/// first violation.
pub fn validate(schema: &Validator, payload: &Value) -> Result<(), (String, String)> {
    schema.validate(payload).map_err(|err| (err.instance_path().to_string(), err.to_string()))
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
        assert!(cache.is_empty());
    }

    #[test]
    fn validation_reports_the_failing_path() {
        let cache = SchemaCache::new();
        let schema = cache
            .compile(&json!({
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"type": "integer"}}}
            }))
            .unwrap();
        assert!(validate(&schema, &json!({"items": [1, 2]})).is_ok());
        let (path, _) = validate(&schema, &json!({"items": [1, "two"]})).unwrap_err();
        assert_eq!(path, "/items/1");
    }

    #[test]
    fn recursive_refs_compile_and_validate_finite_payloads() {
        let cache = SchemaCache::new();
        let schema = cache
            .compile(&json!({
                "type": "object",
                "properties": {"child": {"$ref": "#"}}
            }))
            .unwrap();
        assert!(validate(&schema, &json!({"child": {"child": {}}})).is_ok());
        assert!(validate(&schema, &json!({"child": {"child": 3}})).is_err());
    }
}
