//! Registration preparation on its own, for benchmarks: the rules both
//! registries run on a registration before it reaches their state, and the
//! floor they are measured against.
//!
//! [`Preparation`] owns its own schema cache, as a registry does, so a
//! second registration with the same declarations finds them compiled.

use crate::error::RegistryError;
use crate::model::{ProcessRecord, ProcessRegistration};
use crate::rules::canonical::CanonicalError;
use crate::rules::hashing::sha256_hex_of_canonical;
use crate::rules::limits::Limits;
use crate::rules::registration::prepare_registration;
use crate::runtime::SchemaCache;

/// What a registry does to a registration before it takes a lock or sends
/// a message: validation, core event types, canonical JSON and SHA-256,
/// schema checks (against the cache), interning, and the new record.
#[derive(Debug)]
pub struct Preparation {
    limits: Limits,
    schemas: SchemaCache,
}

impl Preparation {
    /// A preparation under `limits`, with an empty schema cache.
    pub fn new(limits: Limits) -> Self {
        Self { schemas: SchemaCache::new(limits.max_cached_schemas), limits }
    }

    /// Prepares `registration` as a new process created at `now_ms` and
    /// returns its record. Costs what a registry's preparation costs: the
    /// first registration of some declarations compiles their schemas,
    /// later ones find them interned.
    pub fn prepare(&self, registration: ProcessRegistration, now_ms: u64) -> Result<ProcessRecord, RegistryError> {
        let prepared = prepare_registration(registration, &self.limits, &self.schemas)?;
        Ok(prepared.accepted(&self.schemas).new_record(now_ms))
    }
}

/// The floor preparation is measured against: `registration` serialized
/// to canonical JSON and hashed once, nothing else (the fastest way this
/// crate has: straight from `Serialize` into SHA-256, no `Value` between).
pub fn canonical_hash(registration: &ProcessRegistration) -> Result<String, CanonicalError> {
    sha256_hex_of_canonical(registration)
}
