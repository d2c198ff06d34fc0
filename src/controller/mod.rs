//! The controller: one pass over every FloatingIP whenever something changes, planned as pure
//! data (plan/), carried out with every write gated on the leader Lease (execute/).

pub mod backoff;
pub mod doubt;
pub mod events;
pub mod execute;
mod failover;
mod flags;
mod observe;
pub mod plan;
pub mod run;

pub use flags::ControllerArgs;
pub use run::run;
