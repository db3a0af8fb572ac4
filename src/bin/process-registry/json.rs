//! The `--json` shapes, as the help documents them. Built field by field
//! here (not derived from library types) so the shape changes only when
//! this file does; the record and the events are the library's own serde
//! forms.

use process_registry::store::sqlite::{ProcessSummary, StoredGrant};
use process_registry::ProcessLease;
use serde_json::{json, Value};

use super::{InspectReport, ShowReport};

/// How many characters of a lease token are shown: enough to tell leases
/// apart, not enough to present one.
pub(crate) const TOKEN_PREFIX: usize = 8;

/// The first [`TOKEN_PREFIX`] characters of a lease token.
pub(crate) fn token_prefix(lease: &ProcessLease) -> String {
    lease.lease_token.chars().take(TOKEN_PREFIX).collect()
}

/// Pretty JSON and a newline. A `Value` always serializes; an error could
/// only come from a map with non-string keys, which `json!` never builds.
///
/// serde_json escapes the C0 controls inside strings but not DEL, the C1
/// range (where a terminal reads CSI) or the characters that reorder text:
/// those are written as `\uXXXX` escapes, which parse back to the same
/// strings. They can only occur inside strings, and every one of them is
/// in the Basic Multilingual Plane.
pub(crate) fn render(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut rendered = String::with_capacity(pretty.len() + 1);
    for c in pretty.chars() {
        if c != '\n' && super::text::hidden(c) {
            let _ = std::fmt::Write::write_fmt(&mut rendered, format_args!("\\u{:04x}", u32::from(c)));
        } else {
            rendered.push(c);
        }
    }
    rendered.push('\n');
    rendered
}

pub(crate) fn inspect(report: &InspectReport) -> Value {
    let counts = &report.counts;
    json!({
        "store": {"path": report.path, "schema_version": report.schema_version},
        "counts": {
            "running": counts.running,
            "completed": counts.completed,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
            "total": counts.total(),
        },
        "filter": {"status": report.status.name(), "limit": report.limit},
        "processes": report.processes.iter().map(summary).collect::<Vec<_>>(),
        "more": report.more,
    })
}

fn summary(process: &ProcessSummary) -> Value {
    json!({
        "id": process.id,
        "status": process.status.as_str(),
        "last_sequence": process.last_sequence,
        "updated_at_ms": process.updated_at_ms,
        "lease": process.lease.as_ref().map(lease),
        "last_fencing_token": process.last_fencing_token,
    })
}

fn lease(lease: &ProcessLease) -> Value {
    json!({
        "owner_id": lease.owner_id,
        "token_prefix": token_prefix(lease),
        "fencing_token": lease.fencing_token,
        "claimed_at_epoch_ms": lease.claimed_at_epoch_ms,
        "expires_at_epoch_ms": lease.expires_at_epoch_ms,
    })
}

fn grant(grant: &StoredGrant) -> Value {
    json!({
        "scope_id": grant.scope_id().as_str(),
        "scope": grant.scope,
        "descriptor": grant.descriptor,
    })
}

pub(crate) fn show(report: &ShowReport) -> Value {
    let detail = &report.detail;
    json!({
        "store": {"path": report.path, "schema_version": report.schema_version},
        "record": detail.record,
        "status": process_registry::store::sqlite::StoredStatus::from(&detail.record.status).as_str(),
        "last_sequence": detail.last_sequence,
        "events": detail.events,
        "lease": detail.lease.current.as_deref().map(lease),
        "last_fencing_token": detail.lease.last_fencing_token,
        "grants": detail.grants.iter().map(grant).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_a_terminal_would_act_on_are_escaped_and_parse_back() {
        let value = json!({"id": "a\u{9b}[31mb\u{202e}c\u{7f}", "nested": ["\u{2066}"]});
        let rendered = render(&value);
        for escaped in ["\\u009b", "\\u202e", "\\u007f", "\\u2066"] {
            assert!(rendered.contains(escaped), "{escaped} in {rendered}");
        }
        assert!(!rendered.chars().any(|c| c != '\n' && super::super::text::hidden(c)), "{rendered}");
        assert_eq!(serde_json::from_str::<Value>(&rendered).ok(), Some(value), "valid JSON, the same strings");
    }
}
