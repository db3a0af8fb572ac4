//! Bounds on caller input, checked in the caller's task before any message.
//!
//! Values that are serialized or hashed recursively (await outputs,
//! external-ref metadata, payloads) are refused when they nest deeper than
//! the limits, and dropped without recursion, so hostile input can neither
//! overflow the stack nor reach an actor.
//!
//! One check may run in the actor instead: the payload hash of a single
//! append, with the bound on the payload's canonical bytes that hashing
//! measures, when the caller is not a task on the runtime (the body of
//! `block_on` or `#[tokio::main]`). There the microsecond of hashing
//! between two calls is what lets the worker that just answered park in
//! the I/O driver, and the next message pays an eventfd write and an
//! `epoll` wake-up to reach it; done by the actor, on the worker that is
//! awake anyway, it costs the caller nothing. Such a request has passed
//! the depth bound already, so neither thread recurses deeply on it.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{ProcessAwaitOutput, ProcessEventAppendRequest};
use crate::model::ProcessExternalRef;
use crate::rules::append::{check_and_hash_batched, check_and_hash_payload, check_request, hash_checked};
use crate::rules::limits::{dismantle, limit_exceeded, Limits};

/// Refuses an await output whose values nest deeper than the limit (they
/// are serialized recursively), dropping them without recursion.
fn bounded_output(
    limits: &Limits,
    process_id: &str,
    output: ProcessAwaitOutput,
) -> Result<ProcessAwaitOutput, RegistryError> {
    let what = "await output depth";
    Ok(match output {
        ProcessAwaitOutput::Success { value } => {
            ProcessAwaitOutput::Success { value: limits.bounded(process_id, what, value)? }
        }
        ProcessAwaitOutput::Failure { code, message, raw } => ProcessAwaitOutput::Failure {
            code,
            message,
            raw: raw.map(|raw| limits.bounded(process_id, what, raw)).transpose()?,
        },
        ProcessAwaitOutput::Cancelled { message, raw } => ProcessAwaitOutput::Cancelled {
            message,
            raw: raw.map(|raw| limits.bounded(process_id, what, raw)).transpose()?,
        },
    })
}

/// Bounds an append request (step 1 of the spec) and returns it with its
/// payload hash; a refused request is dismantled without recursion.
pub(super) fn checked_append(
    limits: &Limits,
    process_id: &str,
    request: ProcessEventAppendRequest,
) -> Result<(ProcessEventAppendRequest, String), RegistryError> {
    checked_with(request, |request| check_and_hash_payload(limits, process_id, request))
}

/// Step 1's bounds without the hash ([`check_request`]): the request is
/// safe to send and drop; its hash is left to the actor ([`hashed`]). A
/// refused request is dismantled without recursion.
pub(super) fn checked_unhashed(
    limits: &Limits,
    process_id: &str,
    request: ProcessEventAppendRequest,
) -> Result<ProcessEventAppendRequest, RegistryError> {
    checked_with(request, |request| check_request(limits, process_id, request)).map(|(request, ())| request)
}

/// The payload hash of a request [`checked_unhashed`] passed, with the
/// bound on its canonical bytes ([`hash_checked`]); a refused request is
/// dismantled.
pub(super) fn hashed(
    limits: &Limits,
    process_id: &str,
    request: ProcessEventAppendRequest,
) -> Result<(ProcessEventAppendRequest, String), RegistryError> {
    checked_with(request, |request| hash_checked(limits, process_id, request))
}

/// `request` with what `check` found, or `check`'s error with the request
/// dismantled without recursion.
fn checked_with<T>(
    request: ProcessEventAppendRequest,
    check: impl FnOnce(&ProcessEventAppendRequest) -> Result<T, RegistryError>,
) -> Result<(ProcessEventAppendRequest, T), RegistryError> {
    match check(&request) {
        Ok(found) => Ok((request, found)),
        Err(err) => {
            dismantle(request.payload);
            Err(err)
        }
    }
}

/// Bounds and hashes every request of a batch append (their payloads
/// together too, `max_batch_bytes`): all of them, or an error for the
/// first refused (the rest are dropped without recursion).
pub(super) fn checked_batch(
    limits: &Limits,
    process_id: &str,
    requests: Vec<ProcessEventAppendRequest>,
) -> Result<Vec<(ProcessEventAppendRequest, String)>, RegistryError> {
    if requests.len() > limits.max_batch_events {
        for request in requests {
            dismantle(request.payload);
        }
        return Err(limit_exceeded(process_id, "events in one batch", limits.max_batch_events));
    }
    let mut checked = Vec::with_capacity(requests.len());
    let mut batch_bytes = 0;
    let mut requests = requests.into_iter();
    while let Some(request) = requests.next() {
        let hashed =
            checked_with(request, |request| check_and_hash_batched(limits, process_id, request, &mut batch_bytes));
        match hashed {
            Ok(pair) => checked.push(pair),
            Err(error) => {
                for rest in requests {
                    dismantle(rest.payload);
                }
                return Err(error);
            }
        }
    }
    Ok(checked)
}

/// Bounds the metadata of an external reference.
pub(super) fn bounded_external_ref(
    limits: &Limits,
    process_id: &str,
    mut external_ref: ProcessExternalRef,
) -> Result<ProcessExternalRef, RegistryError> {
    if let Some(metadata) = external_ref.metadata.take() {
        external_ref.metadata = Some(limits.bounded(process_id, "metadata depth", metadata)?);
    }
    Ok(external_ref)
}

/// The append that `complete_process` makes: the terminal event type of
/// `output`'s state, payload `{"await_output": output}`, and the replay key
/// `process:{id}:terminal:{event_type}`, so repeating the call is idempotent.
pub(super) fn terminal_request(
    limits: &Limits,
    process_id: &str,
    output: ProcessAwaitOutput,
) -> Result<ProcessEventAppendRequest, RegistryError> {
    let event_type = output.terminal_state().event_type();
    let output = bounded_output(limits, process_id, output)?;
    let output = serde_json::to_value(&output).map_err(|err| RegistryError::InvalidPayload {
        process_id: process_id.to_owned(),
        event_type: event_type.to_owned(),
        path: "/await_output".to_owned(),
        message: err.to_string(),
    })?;
    Ok(ProcessEventAppendRequest::new(event_type, json!({ "await_output": output }))
        .with_replay_key(format!("process:{process_id}:terminal:{event_type}")))
}
