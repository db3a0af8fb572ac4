//! Preparing a registration: core event types, validation, hashing.
//!
//! [`prepare_registration`] turns a caller's [`ProcessRegistration`] into the
//! exact registration that is stored and hashed: core event types appended
//! when missing, every rule checked, every schema compiled. Two registrations
//! are "the same" exactly when their prepared forms hash equal.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::error::RegistryError;
use crate::events::{core_event_types, ProcessEventType, ProcessTerminalState, CORE_EVENT_TYPE_NAMES};
use crate::model::{ProcessInput, ProcessRecord, ProcessRegistration, ProcessStatus};
use crate::rules::canonical::CanonicalError;
use crate::rules::hashing::sha256_hex_of_serialized;
use crate::rules::limits::{dismantle, limit_exceeded, refuse_nul, truncated, Limits};
use crate::rules::schema::{CompiledSchemas, Declarations, SchemaSource};
use crate::rules::scope::check_scope;

/// A validated registration, its hash and its compiled schemas.
#[derive(Clone, Debug)]
pub struct PreparedRegistration {
    /// The registration as stored (core event types included).
    pub registration: ProcessRegistration,
    /// SHA-256 hex of its canonical JSON.
    pub hash: String,
    /// The declared event types, interned: shared by every record that
    /// declares the same ones.
    pub event_types: Arc<Vec<ProcessEventType>>,
    /// SHA-256 hex of the canonical JSON of the event types alone: the key
    /// their compiled declarations are interned under once the
    /// registration is accepted ([`PreparedRegistration::accepted`]).
    pub declarations_hash: String,
    /// Compiled payload schemas by event type name. (The baseline reads
    /// them; process actors find theirs by the interned list's address.)
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub schemas: CompiledSchemas,
}

impl PreparedRegistration {
    /// The registration once it is accepted as a new process: its
    /// declarations are interned by `schemas` (when it caches), so the new
    /// record shares them. Preparing interns nothing, so a refused
    /// registration leaves no trace in a cache.
    #[must_use]
    pub fn accepted(mut self, schemas: &impl SchemaSource) -> Self {
        let declarations = Declarations { event_types: self.event_types, schemas: self.schemas };
        let kept = schemas.accepted(&self.declarations_hash, declarations);
        self.event_types = kept.event_types;
        self.schemas = kept.schemas;
        self
    }

    /// The record of a newly registered process.
    pub fn new_record(&self, now_ms: u64) -> ProcessRecord {
        let registration = &self.registration;
        ProcessRecord {
            id: registration.id.clone(),
            registration_hash: self.hash.clone(),
            input: registration.input.clone(),
            event_types: Arc::clone(&self.event_types),
            provenance: registration.provenance.clone(),
            env_ref: registration.env_ref.clone(),
            wake_target: registration.wake_target.clone(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            external_ref: None,
            wait: None,
            status: ProcessStatus::Running,
        }
    }
}

/// The existing record when `hash` matches its registration (the call is
/// a repeat), else a [`RegistryError::RegistrationConflict`].
pub fn same_registration(existing: &ProcessRecord, hash: &str) -> Result<ProcessRecord, RegistryError> {
    if existing.registration_hash == hash {
        Ok(existing.clone())
    } else {
        Err(RegistryError::RegistrationConflict {
            process_id: existing.id.clone(),
            existing_hash: existing.registration_hash.clone(),
            requested_hash: hash.to_owned(),
        })
    }
}

/// Adds every core event type the registration does not declare by name.
/// Registrations built with [`ProcessRegistration::new`] declare them all
/// already, so the common case copies nothing: O(core types x declared)
/// name comparisons.
pub fn ensure_core_event_types(event_types: &mut Vec<ProcessEventType>) {
    let declared = |name: &str| event_types.iter().any(|ty| ty.name == name);
    if CORE_EVENT_TYPE_NAMES.iter().all(|name| declared(name)) {
        return;
    }
    let missing: Vec<_> = core_event_types().into_iter().filter(|core| !declared(&core.name)).collect();
    event_types.extend(missing);
}

/// Validates, completes and hashes a registration.
///
/// Errors: [`RegistryError::InvalidRegistration`] for a broken rule (empty
/// id or host profile, empty or duplicate event type names, a non-`Completed`
/// terminal type without an await selector, an invalid JSON Schema),
/// [`RegistryError::InvalidScope`] for a wake target whose scope id could be
/// another scope's, and [`RegistryError::LimitExceeded`] for oversized input
/// (ids, JSON depth, event types, registration bytes).
///
/// A refused registration is dropped without recursion
/// ([`dismantle_registration`]), whichever check refused it: it may carry
/// JSON nested arbitrarily deep, which the checks before the depth check
/// have not measured, and serde_json's drop glue recurses.
pub fn prepare_registration(
    mut registration: ProcessRegistration,
    limits: &Limits,
    schemas: &impl SchemaSource,
) -> Result<PreparedRegistration, RegistryError> {
    match check_and_complete(&mut registration, limits, schemas) {
        Ok(checked) => Ok(PreparedRegistration {
            registration,
            hash: checked.hash,
            declarations_hash: checked.declarations_hash,
            event_types: checked.declarations.event_types,
            schemas: checked.declarations.schemas,
        }),
        Err(err) => {
            dismantle_registration(registration);
            Err(err)
        }
    }
}

/// What [`check_and_complete`] finds out about a registration.
struct Checked {
    hash: String,
    declarations_hash: String,
    declarations: Declarations,
}

/// Every rule of [`prepare_registration`], in place: adds the core event
/// types and returns the hashes and the compiled declarations.
fn check_and_complete(
    registration: &mut ProcessRegistration,
    limits: &Limits,
    schemas: &impl SchemaSource,
) -> Result<Checked, RegistryError> {
    let id = registration.id.clone();
    limits.check_id(&id, "process id bytes", &id)?;
    refuse_nul(&id, "process id", &id)?;
    let invalid = |reason: String| RegistryError::InvalidRegistration { process_id: truncated(&id), reason };
    if id.trim().is_empty() {
        return Err(invalid("process id must be non-empty".to_owned()));
    }
    if registration.provenance.host_profile_id.trim().is_empty() {
        return Err(invalid("host profile id must be non-empty".to_owned()));
    }
    if let Some(target) = &registration.wake_target {
        check_scope(limits, &id, target)?;
    }
    check_values_depth(registration, limits)?;
    ensure_core_event_types(&mut registration.event_types);
    if registration.event_types.len() > limits.max_event_types {
        return Err(RegistryError::LimitExceeded {
            process_id: truncated(&id),
            what: "event types".to_owned(),
            limit: u64::try_from(limits.max_event_types).unwrap_or(u64::MAX),
        });
    }
    let mut names = HashSet::new();
    for declared in &registration.event_types {
        limits.check_id(&id, "event type name bytes", &declared.name)?;
        refuse_nul(&id, "event type name", &declared.name)?;
        if declared.name.trim().is_empty() {
            return Err(invalid("event type names must be non-empty".to_owned()));
        }
        if !names.insert(declared.name.as_str()) {
            return Err(invalid(format!("event type `{}` is declared twice", declared.name)));
        }
        if let Some(terminal) = &declared.semantics.terminal {
            if terminal.state != ProcessTerminalState::Completed && terminal.await_output.is_none() {
                return Err(invalid(format!(
                    "terminal event type `{}` must declare an await output selector",
                    declared.name
                )));
            }
        }
    }
    // Depth is bounded from here on: serializing and hashing recurse safely.
    // One pass writes the canonical JSON into both hashes and stops at the
    // byte limit.
    let limit = limits.max_registration_bytes;
    let (hash, declarations_hash) =
        sha256_hex_of_serialized(&*registration, "event_types", limit).map_err(|err| match err {
            CanonicalError::TooLarge => limit_exceeded(&id, "registration bytes", limit),
            CanonicalError::Unrepresentable(reason) => {
                invalid(format!("registration is not representable as JSON: {reason}"))
            }
        })?;
    let declarations_hash = declarations_hash.unwrap_or_default();
    let declarations = schemas
        .declare(&registration.event_types, &declarations_hash)
        .map_err(|(name, reason)| invalid(format!("event type `{name}` has an invalid payload schema: {reason}")))?;
    Ok(Checked { hash, declarations_hash, declarations })
}

/// Bounds the depth of every caller-supplied JSON value in the registration
/// before anything recursive (serde, hashing, schema compilation) runs.
fn check_values_depth(registration: &ProcessRegistration, limits: &Limits) -> Result<(), RegistryError> {
    let id = &registration.id;
    match &registration.input {
        ProcessInput::External { metadata } => limits.check_depth(id, "input metadata depth", metadata)?,
        ProcessInput::Definition { args, .. } => {
            for value in args.values() {
                limits.check_depth(id, "input args depth", value)?;
            }
        }
    }
    for declared in &registration.event_types {
        limits.check_depth(id, "payload schema depth", &declared.payload_schema)?;
        let semantics = &declared.semantics;
        let selectors = semantics.terminal.iter().filter_map(|terminal| terminal.await_output.as_ref()).chain(
            semantics.wake.iter().flat_map(|wake| {
                let dedupe = match &wake.dedupe_key {
                    crate::events::ProcessWakeDedupeKey::Selector(selector) => Some(selector),
                    _ => None,
                };
                wake.when.iter().chain(std::iter::once(&wake.input)).chain(dedupe)
            }),
        );
        for selector in selectors {
            if selector_exceeds_depth(selector, limits.max_json_depth) {
                return Err(RegistryError::LimitExceeded {
                    process_id: truncated(id),
                    what: "selector template depth".to_owned(),
                    limit: u64::try_from(limits.max_json_depth).unwrap_or(u64::MAX),
                });
            }
        }
        for selector_value in selector_constants(declared) {
            limits.check_depth(id, "selector constant depth", selector_value)?;
        }
    }
    Ok(())
}

/// Drops a registration without recursing into its JSON values or its
/// selector trees, however deep they are.
pub fn dismantle_registration(registration: ProcessRegistration) {
    match registration.input {
        ProcessInput::External { metadata } => dismantle(metadata),
        ProcessInput::Definition { args, .. } => dismantle(Value::Object(args)),
    }
    for declared in registration.event_types {
        dismantle(declared.payload_schema);
        for selector in selectors_of(declared.semantics) {
            dismantle_selector(selector);
        }
    }
}

fn selectors_of(semantics: crate::events::ProcessEventSemanticsSpec) -> Vec<crate::events::ProcessValueSelector> {
    let mut selectors = Vec::new();
    if let Some(terminal) = semantics.terminal {
        selectors.extend(terminal.await_output);
    }
    if let Some(wake) = semantics.wake {
        selectors.extend(wake.when);
        selectors.push(wake.input);
        if let crate::events::ProcessWakeDedupeKey::Selector(selector) = wake.dedupe_key {
            selectors.push(selector);
        }
    }
    selectors
}

fn dismantle_selector(selector: crate::events::ProcessValueSelector) {
    use crate::events::ProcessValueSelector as S;
    let mut stack = vec![selector];
    while let Some(selector) = stack.pop() {
        match selector {
            S::Const(value) => dismantle(value),
            S::Template { fields, .. } => stack.extend(fields.into_values()),
            S::Payload | S::Pointer(_) | S::Present(_) => {}
        }
    }
}

/// True when templates nest deeper than `max_depth`. Iterative.
fn selector_exceeds_depth(selector: &crate::events::ProcessValueSelector, max_depth: usize) -> bool {
    use crate::events::ProcessValueSelector as S;
    let mut stack = vec![(selector, 1usize)];
    while let Some((selector, depth)) = stack.pop() {
        if depth > max_depth {
            return true;
        }
        if let S::Template { fields, .. } = selector {
            stack.extend(fields.values().map(|field| (field, depth + 1)));
        }
    }
    false
}

fn selector_constants(declared: &ProcessEventType) -> Vec<&Value> {
    use crate::events::{ProcessValueSelector as S, ProcessWakeDedupeKey as D};
    fn walk<'a>(selector: &'a S, out: &mut Vec<&'a Value>) {
        match selector {
            S::Const(value) => out.push(value),
            S::Template { fields, .. } => fields.values().for_each(|field| walk(field, out)),
            S::Payload | S::Pointer(_) | S::Present(_) => {}
        }
    }
    let mut out = Vec::new();
    if let Some(terminal) = &declared.semantics.terminal {
        if let Some(selector) = &terminal.await_output {
            walk(selector, &mut out);
        }
    }
    if let Some(wake) = &declared.semantics.wake {
        if let Some(when) = &wake.when {
            walk(when, &mut out);
        }
        walk(&wake.input, &mut out);
        if let D::Selector(selector) = &wake.dedupe_key {
            walk(selector, &mut out);
        }
    }
    out
}

/// An empty argument map, for [`ProcessInput::Definition`] without arguments.
#[cfg(any(test, feature = "testing"))]
pub fn no_args() -> serde_json::Map<String, Value> {
    serde_json::Map::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{
        ProcessTerminalSpec, ProcessValueSelector, CANCELLED, CANCEL_REQUESTED, COMPLETED, FAILED, RESUMED, WAITING,
    };
    use crate::rules::schema::CompileEach;
    use serde_json::json;

    fn registration(id: &str) -> ProcessRegistration {
        ProcessRegistration::new(id, ProcessInput::definition("job", no_args()))
    }

    fn prepare(registration: ProcessRegistration) -> Result<PreparedRegistration, RegistryError> {
        prepare_registration(registration, &Limits::default(), &CompileEach)
    }

    #[test]
    fn core_event_types_are_added_once() {
        let bare = registration("p").with_event_types(Vec::new());
        let prepared = prepare(bare).unwrap();
        let full = prepare(registration("p")).unwrap();
        assert_eq!(prepared.registration.event_types.len(), 6);
        assert_eq!(prepared.hash, full.hash, "adding core types is part of preparation");
    }

    #[test]
    fn the_core_names_are_the_core_types_in_order() {
        let names: Vec<_> = core_event_types().into_iter().map(|ty| ty.name).collect();
        assert_eq!(names, CORE_EVENT_TYPE_NAMES);
    }

    #[test]
    fn a_registration_missing_some_core_types_gets_just_those() {
        let mut declared = vec![ProcessEventType::new(WAITING, json!({})), ProcessEventType::new("x", json!({}))];
        ensure_core_event_types(&mut declared);
        let names: Vec<_> = declared.iter().map(|ty| ty.name.as_str()).collect();
        assert_eq!(names, [WAITING, "x", CANCEL_REQUESTED, RESUMED, COMPLETED, FAILED, CANCELLED]);
        assert_eq!(declared[0].payload_schema, json!({}), "the declared one is kept");
    }

    #[test]
    fn a_declared_core_type_is_kept_as_declared() {
        let custom = ProcessEventType::new(COMPLETED, json!({}));
        let prepared = prepare(registration("p").with_event_types(vec![custom.clone()])).unwrap();
        assert_eq!(prepared.registration.event_types[0], custom);
        assert_eq!(prepared.registration.event_types.len(), 6);
    }

    #[test]
    fn the_byte_limit_is_the_canonical_length_of_the_prepared_registration() {
        let prepared = prepare(registration("p")).unwrap().registration;
        let len = serde_json::to_string(&prepared).unwrap().len();
        let at = |max_registration_bytes| Limits { max_registration_bytes, ..Limits::default() };
        assert!(prepare_registration(registration("p"), &at(len), &CompileEach).is_ok());
        let refused = prepare_registration(registration("p"), &at(len - 1), &CompileEach).unwrap_err();
        assert!(
            matches!(&refused, RegistryError::LimitExceeded { what, limit, .. } if what == "registration bytes" && *limit == (len - 1) as u64),
            "{refused}"
        );
    }

    /// Hashes are stored (SQLite, PostgreSQL) and compared with later
    /// registrations of the same id, so they must not change between
    /// versions: these are the values the `Value`-based hashing computed
    /// before `rules::canonical` replaced it.
    #[test]
    fn hashes_are_those_stored_by_earlier_versions() {
        let prepared = prepare(registration("p").with_env_ref("env")).unwrap();
        assert_eq!(prepared.hash, "2b90c9eb8c43dd47de57735b60dd140ef2fd9b8ca082a8292a2a37b1717259fd");
        assert_eq!(prepared.declarations_hash, "da308bb5d8deb79a2e3213fd293849d9c09c1024f106ba50b6131d505c63dd35");
    }

    #[test]
    fn hash_changes_with_any_field() {
        let base = prepare(registration("p")).unwrap().hash;
        let other = prepare(registration("p").with_env_ref("env")).unwrap().hash;
        assert_ne!(base, other);
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn empty_id_and_host_profile_are_refused() {
        assert!(matches!(prepare(registration("  ")), Err(RegistryError::InvalidRegistration { .. })));
        let no_profile = registration("p").with_host_profile_id("");
        assert!(matches!(prepare(no_profile), Err(RegistryError::InvalidRegistration { .. })));
    }

    #[test]
    fn empty_and_duplicate_names_are_refused() {
        let empty = registration("p").with_extra_event_types(vec![ProcessEventType::new("", json!({}))]);
        assert!(matches!(prepare(empty), Err(RegistryError::InvalidRegistration { .. })));
        let twice = registration("p")
            .with_extra_event_types(vec![ProcessEventType::new("x", json!({})), ProcessEventType::new("x", json!({}))]);
        let err = prepare(twice).unwrap_err();
        assert!(err.to_string().contains("declared twice"), "{err}");
    }

    #[test]
    fn non_completed_terminal_types_need_a_selector() {
        let failing = ProcessEventType::new("boom", json!({}))
            .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Failed, await_output: None });
        assert!(prepare(registration("p").with_extra_event_types(vec![failing])).is_err());
        let done = ProcessEventType::new("done", json!({}))
            .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None });
        assert!(prepare(registration("p").with_extra_event_types(vec![done])).is_ok());
        let failing_with = ProcessEventType::new("boom", json!({})).with_terminal(ProcessTerminalSpec {
            state: ProcessTerminalState::Failed,
            await_output: Some(ProcessValueSelector::Payload),
        });
        assert!(prepare(registration("p").with_extra_event_types(vec![failing_with])).is_ok());
    }

    #[test]
    fn invalid_schemas_are_refused_at_registration() {
        let bad = ProcessEventType::new("x", json!({"type": 17}));
        let err = prepare(registration("p").with_extra_event_types(vec![bad])).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidRegistration { .. }));
        assert!(err.to_string().contains("`x`"));
    }

    #[test]
    fn too_many_event_types_are_refused() {
        let many = (0..300).map(|i| ProcessEventType::new(format!("t{i}"), json!({})));
        let err = prepare(registration("p").with_extra_event_types(many)).unwrap_err();
        assert!(matches!(err, RegistryError::LimitExceeded { .. }));
    }

    #[test]
    fn deep_values_and_deep_templates_are_refused_and_dropped_safely() {
        let mut deep = json!(0);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        let external = ProcessRegistration::new("p", ProcessInput::external(deep));
        assert!(matches!(prepare(external), Err(RegistryError::LimitExceeded { .. })));
        let mut selector = ProcessValueSelector::Payload;
        for _ in 0..10_000 {
            selector = ProcessValueSelector::Template {
                template: "{x}".into(),
                fields: std::collections::BTreeMap::from([("x".to_owned(), selector)]),
            };
        }
        let wake = ProcessEventType::new("w", json!({})).with_wake(crate::events::ProcessWakeSpec::new(selector));
        let err = prepare(registration("p").with_extra_event_types(vec![wake])).unwrap_err();
        assert!(matches!(err, RegistryError::LimitExceeded { .. }), "{err}");
    }

    #[test]
    fn registrations_larger_than_the_byte_limit_are_refused() {
        let size = |registration: ProcessRegistration| {
            let prepared = prepare(registration).unwrap();
            crate::rules::hashing::canonical_json(&serde_json::to_value(&prepared.registration).unwrap()).len()
        };
        let blob = |bytes: usize| ProcessRegistration::new("p", ProcessInput::external(json!("b".repeat(bytes))));
        let exact = size(blob(1000));
        let limits = Limits { max_registration_bytes: exact, ..Limits::default() };
        assert!(prepare_registration(blob(1000), &limits, &CompileEach).is_ok(), "at the limit");
        let err = prepare_registration(blob(1001), &limits, &CompileEach).unwrap_err();
        assert!(matches!(err, RegistryError::LimitExceeded { ref what, .. } if what == "registration bytes"), "{err}");
    }

    #[test]
    fn new_records_are_running_with_both_timestamps() {
        let record = prepare(registration("p")).unwrap().new_record(42);
        assert_eq!(record.status, ProcessStatus::Running);
        assert_eq!((record.created_at_ms, record.updated_at_ms), (42, 42));
        assert!(!record.is_terminal());
    }
}
