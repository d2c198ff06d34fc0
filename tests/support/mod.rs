//! Helpers shared by the main crate's integration tests.

pub mod lab;
