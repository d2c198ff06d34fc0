//! A FloatingIP's status as both writers build it: the controller after a move, `floatip
//! attach` after a first claim. Shared here so that neither reaches into the other.

mod arrival;
pub mod conditions;

pub use arrival::{record_arrival, Arrival};

/// A place an address can sit (or sits): a node, its instance and the ENI there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub node: String,
    pub instance_id: String,
    pub eni: String,
    pub mac: Option<String>,
}
