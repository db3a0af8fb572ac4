//! JSON Schema compilation and payload validation.
//!
//! A registration's declared payload schemas are compiled once, when it is
//! prepared, and kept with the process as [`CompiledSchemas`]; every append
//! validates its payload against them with [`validate`]. Where compiled
//! declarations come from is a [`SchemaSource`]: [`CompileEach`] compiles
//! every time (pure, for tests and oracles), the runtime's interning cache
//! shares one compiled list among every process that declares the same
//! event types.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;

use crate::events::ProcessEventType;

/// A compiled payload schema.
pub type CompiledSchema = Arc<Validator>;

/// Compiled schemas of one process, by event type name.
pub type CompiledSchemas = Arc<HashMap<String, CompiledSchema>>;

/// One declaration list and its compiled schemas.
#[derive(Clone, Debug)]
pub struct Declarations {
    /// The event types (shared when interned).
    pub event_types: Arc<Vec<ProcessEventType>>,
    /// Their compiled schemas.
    pub schemas: CompiledSchemas,
}

/// Where a registration's declarations are compiled.
pub trait SchemaSource {
    /// The compiled declarations of `event_types`, whose canonical JSON
    /// hashes to `hash`. The error is `(event type name, reason)` of the
    /// first schema that is not a valid JSON Schema. The registration may
    /// still be refused: a caching source keeps nothing new here.
    fn declare(&self, event_types: &[ProcessEventType], hash: &str) -> Result<Declarations, (String, String)>;

    /// The declarations a newly accepted process keeps: a caching source
    /// interns them (or returns the equal ones it holds) so processes with
    /// equal declarations share them. By default, `declarations` as they are.
    fn accepted(&self, hash: &str, declarations: Declarations) -> Declarations {
        let _ = hash;
        declarations
    }
}

/// A [`SchemaSource`] that compiles every declaration list afresh.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileEach;

#[cfg(any(test, feature = "testing"))]
impl SchemaSource for CompileEach {
    fn declare(&self, event_types: &[ProcessEventType], _hash: &str) -> Result<Declarations, (String, String)> {
        Ok(Declarations { event_types: Arc::new(event_types.to_vec()), schemas: compile_all(event_types, compile)? })
    }
}

/// Compiles `schema`; the error is the reason it is not a valid JSON Schema.
pub fn compile(schema: &Value) -> Result<CompiledSchema, String> {
    jsonschema::validator_for(schema).map(Arc::new).map_err(|err| err.to_string())
}

/// Compiles every declared schema with `compile_one`; the error names the
/// failing type.
pub fn compile_all(
    event_types: &[ProcessEventType],
    compile_one: impl Fn(&Value) -> Result<CompiledSchema, String>,
) -> Result<CompiledSchemas, (String, String)> {
    let mut schemas = HashMap::with_capacity(event_types.len());
    for declared in event_types {
        let validator = compile_one(&declared.payload_schema).map_err(|reason| (declared.name.clone(), reason))?;
        schemas.insert(declared.name.clone(), validator);
    }
    Ok(Arc::new(schemas))
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
    fn validation_reports_the_failing_path() {
        let schema = compile(&json!({
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
        let schema = compile(&json!({
            "type": "object",
            "properties": {"child": {"$ref": "#"}}
        }))
        .unwrap();
        assert!(validate(&schema, &json!({"child": {"child": {}}})).is_ok());
        assert!(validate(&schema, &json!({"child": {"child": 3}})).is_err());
    }
}
