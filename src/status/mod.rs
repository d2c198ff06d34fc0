//! A FloatingIP's status as both writers build it: the controller after a move, `floatip
//! attach` after a first claim. Shared here so that neither reaches into the other.

mod arrival;
pub mod conditions;
mod next;

pub use arrival::{record_arrival, Arrival, Attaching};
pub use next::{held_by, next, HeldBack, Observed, Steady};

/// Where an address sits, or would sit: a node, its instance and the ENI there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub node: String,
    pub instance_id: String,
    pub eni: String,
    pub mac: Option<String>,
    /// ElasticIP mode: the ENI's own private address the Elastic IP is associated with.
    pub private_ip: Option<std::net::IpAddr>,
}
