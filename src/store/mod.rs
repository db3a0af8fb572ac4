//! Storage: the one seam between committed state and where it is kept.
//!
//! A process actor commits each change in two steps: first the store
//! records it ([`ProcessStore::commit_process`]), then the actor applies the
//! same [`ProcessChange`] to its own working state. A change the store
//! refused is not applied, so the actor never holds state the store lacks,
//! and a restarted actor rebuilds exactly the committed state from
//! [`ProcessStore::load_process`]. The supervisor commits grant changes the
//! same way ([`ProcessStore::commit_grant`]) before it updates its index.
//!
//! - [`committed`]: what a store keeps of one process and the changes that move it.
//! - [`memory`]: the default in-memory store ([`DurabilityTier::Inline`]).

pub mod committed;
pub mod memory;

use async_trait::async_trait;

use crate::error::RegistryError;
use crate::model::{DurabilityTier, ProcessHandleDescriptor, SessionScope};

pub use crate::rules::append::ReplayEntry;
pub use crate::rules::lease::LeaseState;
pub use committed::{ProcessChange, StoredProcess};
pub use memory::MemoryStore;

/// A change to the session-grant index, for stores that persist grants.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GrantChange {
    /// A grant was added or its descriptor replaced.
    Granted {
        /// The scope holding the grant.
        scope: SessionScope,
        /// The granted process.
        process_id: String,
        /// Its descriptor.
        descriptor: ProcessHandleDescriptor,
    },
    /// A grant was removed.
    Revoked {
        /// The scope that held it.
        scope_id: String,
        /// The process it was for.
        process_id: String,
    },
}

/// Everything a store holds, as handed to a registry that opens it.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Every committed process.
    pub processes: Vec<StoredProcess>,
    /// Every grant, in commit order.
    pub grants: Vec<GrantChange>,
}

/// Where committed state is kept.
///
/// Implementations must make a change visible to [`Self::load_process`] (and,
/// for [`DurabilityTier::Durable`], durable) before `commit_*` returns, and
/// must leave nothing behind when they return an error.
#[async_trait]
pub trait ProcessStore: Send + Sync + std::fmt::Debug + 'static {
    /// What this store guarantees.
    fn durability_tier(&self) -> DurabilityTier;

    /// Everything the store holds, read once when a registry starts (by the
    /// supervisor, before it answers any call).
    async fn recover(&self) -> Result<Recovered, RegistryError>;

    /// The committed state of one process, for starting its actor. Called by
    /// the supervisor on activation and restart; it answers no other call
    /// until this returns, so it should cost O(the process's state).
    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError>;

    /// Records one committed change of one process. Called by that
    /// process's actor, which applies the change only after this returns
    /// `Ok`; later calls on the process wait behind it, calls on other
    /// processes do not. An error must leave nothing recorded.
    async fn commit_process(&self, process_id: &str, change: &ProcessChange) -> Result<(), RegistryError>;

    /// Records one change of the grant index. Called by the supervisor,
    /// which updates its index only after this returns `Ok`.
    async fn commit_grant(&self, change: &GrantChange) -> Result<(), RegistryError>;
}
