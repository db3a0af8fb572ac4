//! placeholder
pub mod clock;
pub mod error;
pub mod events;
pub mod model;
pub mod registry;
pub mod rules;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{PluginError, RegistryError};
pub use events::*;
pub use model::*;
pub use registry::ProcessRegistry;
