pub mod conditions;
pub mod pass;
pub mod plan;
