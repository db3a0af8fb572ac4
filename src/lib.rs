//! placeholder
pub mod clock;
pub mod error;
pub mod events;
pub mod model;
pub mod registry;
pub mod rules;
pub mod runtime;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{PluginError, RegistryError};
pub use events::*;
pub use model::*;
pub use registry::ProcessRegistry;
pub use rules::limits::Limits;
pub use runtime::{ActorProcessRegistry, RegistryConfig, RegistryStats};
pub use store::{MemoryStore, ProcessStore};
