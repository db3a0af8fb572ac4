//! JSON Schema compilation, interned across processes.
//!
//! Most processes of one runtime declare the same few event types, so each
//! distinct schema is compiled once and shared ([`SchemaCache`]): a second
//! registration with the same declarations costs a hash lookup, not a
//! compile, and every process shares one validator in memory.

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

/// Interns compiled schemas by the hash of their canonical JSON.
#[derive(Default)]
pub struct SchemaCache {
    compiled: DashMap<String, CompiledSchema>,
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
