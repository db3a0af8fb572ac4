//! Structured inputs for the fuzz targets, built from the fuzzer's bytes.
//!
//! Raw bytes rarely parse as a registration, so each target draws its input
//! with [`arbitrary::Unstructured`]: JSON values, JSON Schemas, selectors,
//! registrations, append requests and limits, each from pools of the
//! strings that matter to the rules (core event type names, the scope
//! separator, template braces, pointer escapes) mixed with arbitrary ones.
//! Values stay shallow (the depth limits are exercised with small limits,
//! not deep values, which the hostile-input tests cover).

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use process_registry::{
    Limits, ProcessEventAppendRequest, ProcessEventSemanticsSpec, ProcessEventType, ProcessInput, ProcessProvenance,
    ProcessRegistration, ProcessTerminalSpec, ProcessTerminalState, ProcessValueSelector, ProcessWakeDedupeKey,
    ProcessWakeSpec, SessionScope,
};
use serde_json::{Map, Number, Value};

/// How deep generated JSON nests at most.
const MAX_DEPTH: usize = 5;

/// Strings the rules treat specially, and a few plain ones.
const STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "b",
    "note",
    "{a}",
    "{b}-{a}",
    "{",
    "}",
    "{}",
    "/",
    "~0",
    "~1",
    "/frame:",
    "a/frame:b",
    "frame:",
    "process.completed",
    "process.failed",
    "process.cancelled",
    "process.cancel_requested",
    "process.waiting",
    "process.resumed",
    "await_output",
    "kind",
    "success",
    "failure",
    "cancelled",
    "value",
    "code",
    "message",
    "raw",
    "\u{0}",
    "é",
    "😀",
    "\n\"\\",
];

/// Pointers into generated payloads (and some that match nothing).
const POINTERS: &[&str] = &["", "/", "/a", "/b", "/a/b", "/a/0", "/0", "/await_output", "/~1", "/~0", "/a~1b", "x"];

/// Event type names: the core ones, duplicates of a few, and oddities.
const NAMES: &[&str] = &[
    "note",
    "tick",
    "done",
    "process.completed",
    "process.failed",
    "process.cancelled",
    "process.cancel_requested",
    "process.waiting",
    "",
    " ",
    "t{a}",
];

/// A string from the pool, or an arbitrary short one.
pub fn string(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok((*u.choose(STRINGS)?).to_owned())
    } else {
        let text: String = u.arbitrary()?;
        Ok(text.chars().take(24).collect())
    }
}

/// A JSON value nesting at most `depth` levels (a scalar is one).
pub fn json(u: &mut Unstructured, depth: usize) -> Result<Value> {
    let nested = depth > 1;
    Ok(match u.int_in_range(0..=if nested { 7 } else { 5 })? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
        3 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 | 5 => Value::String(string(u)?),
        6 => Value::Array((0..u.int_in_range(0..=3)?).map(|_| json(u, depth - 1)).collect::<Result<Vec<_>>>()?),
        _ => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                map.insert(string(u)?, json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// A payload: usually an object with keys `a`/`b`, sometimes anything.
pub fn payload(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1, 4)? {
        return json(u, MAX_DEPTH);
    }
    let mut map = Map::new();
    for key in ["a", "b", "await_output"] {
        if u.arbitrary()? {
            map.insert(key.to_owned(), json(u, MAX_DEPTH - 1)?);
        }
    }
    Ok(Value::Object(map))
}

/// A JSON Schema from the keywords the rules meet most, or (a fifth of the
/// time) any JSON value, which is usually not a valid schema.
pub fn schema(u: &mut Unstructured, depth: usize) -> Result<Value> {
    if depth <= 1 || u.ratio(1, 5)? {
        return json(u, depth.max(1));
    }
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let sub = |u: &mut Unstructured| schema(u, depth - 1);
        let (key, value) = match u.int_in_range(0..=15)? {
            0 => {
                let ty = *u.choose(&["object", "array", "string", "integer", "number", "boolean", "null", "nope"])?;
                ("type", Value::String(ty.to_owned()))
            }
            1 => ("required", Value::Array(vec![Value::String(string(u)?), Value::String(string(u)?)])),
            2 => ("properties", Value::Object(Map::from_iter([(string(u)?, sub(u)?), (string(u)?, sub(u)?)]))),
            3 => ("items", sub(u)?),
            4 => ("minimum", Value::Number(Number::from(u.int_in_range(-3..=3)?))),
            5 => ("maxLength", Value::Number(Number::from(u.int_in_range(0..=4)?))),
            6 => (
                "pattern",
                Value::String((*u.choose(&["^a", "b$", "[a-z]+", "(", "\\d", "a{2,}", "(?=a)"])?).to_owned()),
            ),
            7 => ("enum", Value::Array(vec![json(u, 2)?, json(u, 2)?])),
            8 => ("const", json(u, 2)?),
            9 => (*u.choose(&["anyOf", "oneOf", "allOf"])?, Value::Array(vec![sub(u)?, sub(u)?])),
            10 => ("not", sub(u)?),
            11 => (
                "$ref",
                Value::String((*u.choose(&["#", "#/properties/a", "#/$defs/x", "#/nope", "x.json"])?).to_owned()),
            ),
            12 => ("$defs", Value::Object(Map::from_iter([("x".to_owned(), sub(u)?)]))),
            13 => ("additionalProperties", if u.arbitrary()? { Value::Bool(u.arbitrary()?) } else { sub(u)? }),
            14 => ("propertyNames", sub(u)?),
            _ => ("format", Value::String((*u.choose(&["email", "date", "uri", "ipv4", "nope"])?).to_owned())),
        };
        map.insert(key.to_owned(), value);
    }
    Ok(Value::Object(map))
}

/// A selector nesting at most `depth` levels of templates.
pub fn selector(u: &mut Unstructured, depth: usize) -> Result<ProcessValueSelector> {
    Ok(match u.int_in_range(0..=if depth > 1 { 5 } else { 3 })? {
        0 => ProcessValueSelector::Payload,
        1 => ProcessValueSelector::Pointer((*u.choose(POINTERS)?).to_owned()),
        2 => ProcessValueSelector::Present((*u.choose(POINTERS)?).to_owned()),
        3 => ProcessValueSelector::Const(json(u, 3)?),
        _ => {
            let mut template = String::new();
            for _ in 0..u.int_in_range(0..=6)? {
                template.push_str(u.choose(&["{a}", "{b}", "{", "}", "x", "{c}", "{}", "{a}{a}"])?);
            }
            let mut fields = BTreeMap::new();
            for name in ["a", "b"] {
                if u.arbitrary()? {
                    fields.insert(name.to_owned(), selector(u, depth - 1)?);
                }
            }
            ProcessValueSelector::Template { template, fields }
        }
    })
}

/// Terminal and wake semantics, each present or not.
pub fn semantics(u: &mut Unstructured) -> Result<ProcessEventSemanticsSpec> {
    let terminal = if u.ratio(1, 3)? {
        let state = *u.choose(&[
            ProcessTerminalState::Completed,
            ProcessTerminalState::Failed,
            ProcessTerminalState::Cancelled,
        ])?;
        let await_output = if u.arbitrary()? { Some(selector(u, 3)?) } else { None };
        Some(ProcessTerminalSpec { state, await_output })
    } else {
        None
    };
    let wake = if u.ratio(1, 2)? {
        let when = if u.arbitrary()? { Some(selector(u, 2)?) } else { None };
        let dedupe_key = match u.int_in_range(0..=2)? {
            0 => ProcessWakeDedupeKey::EventIdentity,
            1 => ProcessWakeDedupeKey::Selector(selector(u, 2)?),
            _ => ProcessWakeDedupeKey::Const(string(u)?),
        };
        Some(ProcessWakeSpec { when, input: selector(u, 3)?, dedupe_key })
    } else {
        None
    };
    Ok(ProcessEventSemanticsSpec { terminal, wake })
}

/// A scope, often one the registry refuses.
pub fn scope(u: &mut Unstructured) -> Result<SessionScope> {
    let session = string(u)?;
    Ok(if u.arbitrary()? { SessionScope::with_frame(session, string(u)?) } else { SessionScope::new(session) })
}

/// A registration: usually one that prepares, sometimes one broken in any
/// of the ways the rules refuse.
pub fn registration(u: &mut Unstructured) -> Result<ProcessRegistration> {
    let id = if u.ratio(7, 8)? { format!("p{}", u.int_in_range(0..=3)?) } else { string(u)? };
    let input = if u.arbitrary()? {
        ProcessInput::external(json(u, MAX_DEPTH)?)
    } else {
        let mut args = Map::new();
        for _ in 0..u.int_in_range(0..=2)? {
            args.insert(string(u)?, json(u, MAX_DEPTH - 1)?);
        }
        ProcessInput::definition(string(u)?, args)
    };
    let mut event_types = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let name = if u.ratio(3, 4)? { (*u.choose(NAMES)?).to_owned() } else { string(u)? };
        let schema = if u.ratio(1, 2)? { Value::Object(Map::new()) } else { schema(u, 4)? };
        event_types.push(ProcessEventType { name, payload_schema: schema, semantics: semantics(u)? });
    }
    let mut registration = if u.arbitrary()? {
        ProcessRegistration::new(id, input).with_extra_event_types(event_types)
    } else {
        ProcessRegistration::new(id, input).with_event_types(event_types)
    };
    if u.ratio(1, 8)? {
        registration = registration.with_process_provenance(ProcessProvenance::host(string(u)?));
    }
    if u.arbitrary()? {
        registration = registration.with_wake_target(scope(u)?);
    }
    if u.ratio(1, 4)? {
        registration = registration.with_env_ref(string(u)?);
    }
    Ok(registration)
}

/// An append request of one of `declared` (or another) type.
pub fn request(u: &mut Unstructured, declared: &[String]) -> Result<ProcessEventAppendRequest> {
    let event_type = match declared {
        [] => string(u)?,
        _ if u.ratio(1, 8)? => string(u)?,
        _ => u.choose(declared)?.clone(),
    };
    let mut request = ProcessEventAppendRequest::new(event_type, payload(u)?);
    if u.arbitrary()? {
        request = request.with_replay_key((*u.choose(&["", "k1", "k2", "k3"])?).to_owned());
    }
    if u.ratio(1, 4)? {
        request = request.with_wake_target_scope(scope(u)?);
    }
    Ok(request)
}

/// Limits that pass [`Limits::validate`]: half the time the defaults, else
/// small enough for generated input to reach them.
pub fn limits(u: &mut Unstructured) -> Result<Limits> {
    if u.arbitrary()? {
        return Ok(Limits::default());
    }
    let limits = Limits {
        max_id_bytes: u.int_in_range(24..=64)?,
        max_payload_bytes: u.int_in_range(1..=4096)?,
        max_json_depth: u.int_in_range(2..=8)?,
        max_event_types: u.int_in_range(6..=12)?,
        max_registration_bytes: u.int_in_range(1..=16 * 1024)?,
        max_template_bytes: u.int_in_range(1..=4096)?,
        max_cached_schemas: u.int_in_range(0..=4)?,
    };
    assert_eq!(limits.validate(), Ok(()), "generated limits must be valid");
    Ok(limits)
}

/// True when `text` is 64 lowercase hex digits (a SHA-256).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}
