//! floatip keeps a floating IP address on one healthy EKS node at a time, for AWS Local Zones
//! and Outposts where no load balancer exists.
//!
//! The crate is a library with a thin `floatip` binary: [`cli`] parses the command line and
//! runs one subcommand.

pub mod admin;
pub mod agent;
pub mod api;
pub mod attach;
pub mod causes;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod mode;
pub mod nodes;
pub mod placement;
pub mod probe;
pub mod retry;
pub mod status;
pub mod watch;
