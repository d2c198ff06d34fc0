//! Table output for printer columns (placeholder until written).
