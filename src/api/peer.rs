//! What an agent publishes on its pod of the holders it probes from its own node: the second
//! vantage point the controller asks before moving an address it doubts it sees correctly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Annotation on an agent pod carrying its [`PeerView`] as JSON.
pub const PEER_VIEW_ANNOTATION: &str = "floatip.io/peer-view";

/// One agent's view of the holders, as of `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub at: jiff::Timestamp,
    pub nodes: BTreeMap<String, PeerHealth>,
}

/// What the agent's probes say of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerHealth {
    Up,
    Down,
    Unknown,
}

impl PeerView {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}
