//! Registration preparation: every registration is either prepared, with
//! the invariants below, or refused with a typed error; never a panic.

#![no_main]

use std::collections::HashSet;

use arbitrary::Unstructured;
use fuzz_inputs::{is_sha256_hex, limits, registration};
use libfuzzer_sys::fuzz_target;
use process_registry::events::core_event_types;
use process_registry::rules::registration::prepare_registration;
use process_registry::rules::schema::CompileEach;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(limits), Ok(registration)) = (limits(&mut u), registration(&mut u)) else {
        return;
    };
    match prepare_registration(registration.clone(), &limits, &CompileEach) {
        Ok(prepared) => {
            assert!(is_sha256_hex(&prepared.hash), "{}", prepared.hash);
            assert!(is_sha256_hex(&prepared.declarations_hash), "{}", prepared.declarations_hash);
            let declared = &prepared.registration.event_types;
            assert!(declared.len() <= limits.max_event_types);
            let names: HashSet<&str> = declared.iter().map(|ty| ty.name.as_str()).collect();
            assert_eq!(names.len(), declared.len(), "names are unique");
            for core in core_event_types() {
                assert!(names.contains(core.name.as_str()), "core type {} is declared", core.name);
            }
            for ty in declared.iter() {
                assert!(!ty.name.trim().is_empty());
                assert!(prepared.schemas.contains_key(&ty.name), "{} has a compiled schema", ty.name);
            }
            assert_eq!(prepared.event_types.as_slice(), declared.as_slice());
            // Preparing is deterministic, and preparing its own output again
            // changes nothing: the hash identifies the registration.
            let again = prepare_registration(registration, &limits, &CompileEach).expect("prepares again");
            assert_eq!(again.hash, prepared.hash);
            let twice = prepare_registration(prepared.registration.clone(), &limits, &CompileEach)
                .expect("a prepared registration prepares");
            assert_eq!(twice.hash, prepared.hash);
            assert_eq!(twice.registration, prepared.registration);
            let record = prepared.new_record(7);
            assert!(!record.is_terminal());
            assert_eq!(record.registration_hash, prepared.hash);
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            assert!(err.process_id().len() <= 131, "error ids are truncated: {}", err.process_id().len());
        }
    }
});
