//! Schema compilation and payload validation: compiling any JSON gives a
//! validator or a reason, and a validator's verdicts agree with each other
//! and point into the payload.

#![no_main]

use arbitrary::Unstructured;
use fuzz_inputs::{json, schema};
use libfuzzer_sys::fuzz_target;
use process_registry::rules::schema::{compile, validate};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(candidate) = schema(&mut u, 5) else {
        return;
    };
    let validator = match compile(&candidate) {
        Ok(validator) => validator,
        Err(reason) => {
            assert!(!reason.is_empty());
            return;
        }
    };
    for _ in 0..4 {
        let Ok(payload) = json(&mut u, 5) else {
            return;
        };
        match validate(&validator, &payload) {
            Ok(()) => assert!(validator.is_valid(&payload)),
            Err((path, message)) => {
                assert!(!validator.is_valid(&payload));
                assert!(!message.is_empty());
                assert!(payload.pointer(&path).is_some(), "the failing path `{path}` is in the payload {payload}");
            }
        }
    }
});
