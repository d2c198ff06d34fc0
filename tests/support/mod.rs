//! Helpers shared by the main crate's integration tests.

// Each test crate compiles this module and uses its own share of it.
#![allow(dead_code)]

pub mod cluster;
pub mod lab;
pub mod vpc;
