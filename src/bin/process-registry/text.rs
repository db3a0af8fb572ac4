//! The text output, for people at a terminal. Strings from the file are
//! printed through [`clean`], so an id cannot move the cursor or change
//! colours; long payloads are cut (`--json` prints them whole).

use std::fmt::Write;

use process_registry::store::sqlite::StoredStatus;
use process_registry::{ProcessLease, ProcessStatus};

use super::json::token_prefix;
use super::time::{expiry, rfc3339};
use super::{InspectReport, ShowReport};

/// The most characters of a payload a text line shows.
const PAYLOAD_WIDTH: usize = 160;

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...), and the
/// invisible characters that reorder or hide text on a terminal (bidi
/// embeddings, overrides and isolates, marks, zero-width joiners).
pub(crate) fn clean(text: &str) -> String {
    if !text.chars().any(hidden) {
        return text.to_owned();
    }
    text.chars().map(|c| if hidden(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Control and format characters a terminal does not show as themselves.
pub(crate) fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// At most `width` characters of `text`, with `…` when cut.
fn cut(text: &str, width: usize) -> String {
    match text.char_indices().nth(width) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or(text)),
        None => text.to_owned(),
    }
}

/// Compact JSON, cleaned: serde_json escapes C0 controls in strings but
/// not DEL or the C1 range (U+0080..U+009F, where a terminal reads CSI).
fn compact(value: &impl serde::Serialize) -> String {
    clean(&serde_json::to_string(value).unwrap_or_default())
}

/// Left-aligned columns, two spaces apart, the last one unpadded.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(column).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        let _ = writeln!(out, "  {}", line.trim_end());
    }
}

fn lease_cell(lease: Option<&ProcessLease>, now_ms: u64) -> String {
    match lease {
        Some(lease) => format!(
            "{} until {} ({})",
            clean(&lease.owner_id),
            rfc3339(lease.expires_at_epoch_ms),
            expiry(lease.expires_at_epoch_ms, now_ms)
        ),
        None => "-".to_owned(),
    }
}

pub(crate) fn inspect(report: &InspectReport, now_ms: u64) -> String {
    let mut out = String::new();
    let counts = &report.counts;
    let _ = writeln!(out, "store {} (schema version {})", clean(&report.path), report.schema_version);
    let _ = writeln!(
        out,
        "processes: {} (running {}, completed {}, failed {}, cancelled {})",
        counts.total(),
        counts.running,
        counts.completed,
        counts.failed,
        counts.cancelled
    );
    let _ = writeln!(out);
    let status = report.status.name();
    if report.processes.is_empty() {
        let _ = writeln!(out, "no {status} processes listed");
        return out;
    }
    let mut rows = vec![vec![
        "ID".to_owned(),
        "STATUS".to_owned(),
        "LAST SEQ".to_owned(),
        "UPDATED".to_owned(),
        "LEASE".to_owned(),
    ]];
    for process in &report.processes {
        rows.push(vec![
            clean(&process.id),
            process.status.to_string(),
            process.last_sequence.to_string(),
            rfc3339(process.updated_at_ms),
            lease_cell(process.lease.as_ref(), now_ms),
        ]);
    }
    table(&mut out, &rows);
    if report.more {
        let _ = writeln!(out, "  ... more {status} processes: --limit N or --all lists them");
    }
    out
}

pub(crate) fn show(report: &ShowReport, last_events: Option<u64>, now_ms: u64) -> String {
    let mut out = String::new();
    let detail = &report.detail;
    let record = &detail.record;
    let _ = writeln!(out, "process {}", clean(&record.id));
    let mut fields = vec![
        vec!["store".to_owned(), format!("{} (schema version {})", clean(&report.path), report.schema_version)],
        vec!["status".to_owned(), StoredStatus::from(&record.status).to_string()],
    ];
    match &record.status {
        ProcessStatus::Running => {}
        ProcessStatus::Completed { await_output }
        | ProcessStatus::Failed { await_output }
        | ProcessStatus::Cancelled { await_output } => {
            fields.push(vec!["outcome".to_owned(), cut(&compact(await_output), PAYLOAD_WIDTH)]);
        }
    }
    fields.push(vec!["input".to_owned(), cut(&compact(&record.input), PAYLOAD_WIDTH)]);
    fields.push(vec!["provenance".to_owned(), cut(&compact(&record.provenance), PAYLOAD_WIDTH)]);
    fields.push(vec!["created".to_owned(), rfc3339(record.created_at_ms)]);
    fields.push(vec!["updated".to_owned(), rfc3339(record.updated_at_ms)]);
    fields.push(vec!["last sequence".to_owned(), detail.last_sequence.to_string()]);
    if let Some(wait) = &record.wait {
        fields.push(vec!["wait".to_owned(), cut(&compact(wait), PAYLOAD_WIDTH)]);
    }
    if let Some(external_ref) = &record.external_ref {
        fields.push(vec!["external ref".to_owned(), cut(&compact(external_ref), PAYLOAD_WIDTH)]);
    }
    if let Some(wake_target) = &record.wake_target {
        fields.push(vec!["wake target".to_owned(), clean(wake_target.id().as_str())]);
    }
    let types: Vec<String> = record.event_types.iter().map(|declared| clean(&declared.name)).collect();
    fields.push(vec!["event types".to_owned(), types.join(", ")]);
    fields.push(vec!["registration".to_owned(), clean(&record.registration_hash)]);
    table(&mut out, &fields);

    let _ = writeln!(out);
    match detail.lease.current.as_deref() {
        Some(lease) => {
            let _ = writeln!(out, "lease");
            table(
                &mut out,
                &[
                    vec!["owner".to_owned(), clean(&lease.owner_id)],
                    vec!["token".to_owned(), format!("{}…", clean(&token_prefix(lease)))],
                    vec![
                        "fencing token".to_owned(),
                        format!("{} (last handed out {})", lease.fencing_token, detail.lease.last_fencing_token),
                    ],
                    vec!["claimed".to_owned(), rfc3339(lease.claimed_at_epoch_ms)],
                    vec![
                        "expires".to_owned(),
                        format!(
                            "{} ({})",
                            rfc3339(lease.expires_at_epoch_ms),
                            expiry(lease.expires_at_epoch_ms, now_ms)
                        ),
                    ],
                ],
            );
        }
        None => {
            let _ = writeln!(out, "lease: none (last fencing token {})", detail.lease.last_fencing_token);
        }
    }

    let _ = writeln!(out);
    if detail.grants.is_empty() {
        let _ = writeln!(out, "grants: none");
    } else {
        let _ = writeln!(out, "grants ({})", detail.grants.len());
        let rows: Vec<Vec<String>> = detail
            .grants
            .iter()
            .map(|grant| vec![clean(grant.scope_id().as_str()), compact(&grant.descriptor)])
            .collect();
        table(&mut out, &rows);
    }

    let _ = writeln!(out);
    let shown = detail.events.len();
    match last_events {
        Some(_) => {
            let _ = writeln!(out, "events (last {shown} of {})", detail.last_sequence);
        }
        None => {
            let _ = writeln!(out, "events ({shown})");
        }
    }
    if shown > 0 {
        let mut rows = vec![vec!["SEQ".to_owned(), "TYPE".to_owned(), "OCCURRED AT".to_owned(), "PAYLOAD".to_owned()]];
        for event in &detail.events {
            rows.push(vec![
                event.sequence.to_string(),
                clean(&event.event_type),
                rfc3339(event.occurred_at_ms),
                cut(&compact(&event.payload), PAYLOAD_WIDTH),
            ]);
        }
        table(&mut out, &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("job-1"), "job-1");
        assert_eq!(clean("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn characters_that_reorder_or_hide_text_are_escaped() {
        // An id shown as `job-1` that is really `job-\u{202e}1-boj`.
        assert_eq!(clean("job-\u{202e}1"), "job-\\u{202e}1");
        assert_eq!(clean("a\u{200b}b\u{2066}c\u{feff}"), "a\\u{200b}b\\u{2066}c\\u{feff}");
        assert_eq!(clean("émoji ✓"), "émoji ✓");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("ééééé", 2), "éé…");
    }

    #[test]
    fn columns_line_up() {
        let mut out = String::new();
        table(&mut out, &[vec!["a".into(), "bb".into(), "c".into()], vec!["dddd".into(), "e".into(), "f".into()]]);
        assert_eq!(out, "  a     bb  c\n  dddd  e   f\n");
    }
}
