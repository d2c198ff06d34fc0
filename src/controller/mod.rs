pub mod conditions;
pub mod plan;
