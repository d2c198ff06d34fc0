//! The controller: one pass over every FloatingIP whenever something changes, planned as pure
//! data (plan.rs), carried out with every write gated on the leader Lease (execute/).

pub mod backoff;
pub mod doubt;
pub mod events;
pub mod execute;
mod flags;
mod observe;
pub mod plan;
pub mod run;

pub use flags::ControllerArgs;
pub use run::run;

/// The old path of `ready_condition`, for plan_tests.rs until the plan split moves it (that
/// file belongs to the plan-side work); remove at merge.
#[cfg(test)]
pub(crate) mod pass {
    pub(crate) use super::execute::ready_condition;
}
