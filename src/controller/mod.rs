//! The controller: one pass over every FloatingIP whenever something changes, planned as pure
//! data (plan.rs), carried out with every write gated on the leader Lease (pass.rs).

pub mod backoff;
pub mod doubt;
pub mod events;
pub mod pass;
pub mod plan;
pub mod run;

pub use run::{run, ControllerArgs};
