//! What an agent sees of the other nodes from its own node's network: published on its Pod as
//! the [`PEER_VIEW_ANNOTATION`] annotation, read by the controller as a second vantage
//! point when its own probes fail together (its own network is then the likelier fault).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::probe::Health;

/// Annotation an agent keeps on its own Pod: its [`PeerView`] as JSON.
pub const PEER_VIEW_ANNOTATION: &str = "floatip.io/peer-view";

/// One agent's view of the nodes holding addresses, as of `at`. The agent writes it when a
/// node's health changes and at least every `--peer-view-interval`, so an `at` older than a
/// few intervals means the agent (or its way to the API server) is gone: trust it no more.
///
/// On the Pod: `{"at":"2026-01-01T00:00:00.123Z","nodes":{"node-1":"Up","node-3":"Down"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// When the probe results the view was made from were read (UTC).
    pub at: jiff::Timestamp,
    /// Each node holding a health-checked address, other than the agent's own.
    pub nodes: BTreeMap<String, Health>,
}

/// A [`PEER_VIEW_ANNOTATION`] value that is not a peer view.
#[derive(Debug, thiserror::Error)]
#[error(
    "the floatip.io/peer-view annotation is not a peer view ({0}); expected \
     {{\"at\":\"<RFC 3339 time>\",\"nodes\":{{\"<node>\":\"Up|Down|Unknown\"}}}}: \
     the agent writing it is older or newer than this controller"
)]
pub struct PeerViewError(#[from] serde_json::Error);

impl PeerView {
    /// Reads the annotation's value.
    pub fn parse(value: &str) -> Result<Self, PeerViewError> {
        Ok(serde_json::from_str(value)?)
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a peer view always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_annotation_in_the_agreed_format() {
        let view = PeerView {
            at: "2026-01-01T00:00:00.123Z".parse().unwrap(),
            nodes: BTreeMap::from([
                ("node-1".to_string(), Health::Up),
                ("node-3".to_string(), Health::Down),
                ("node-4".to_string(), Health::Unknown),
            ]),
        };
        let text = view.to_annotation();
        assert_eq!(
            text,
            r#"{"at":"2026-01-01T00:00:00.123Z","nodes":{"node-1":"Up","node-3":"Down","node-4":"Unknown"}}"#
        );
        assert_eq!(PeerView::parse(&text).unwrap(), view);
    }

    #[test]
    fn a_value_that_is_not_a_view_says_what_was_expected() {
        for bad in [
            r#"{"at":"yesterday","nodes":{}}"#,
            r#"{"at":"2026-01-01T00:00:00Z","nodes":{"node-1":"Sideways"}}"#,
            r#"{"nodes":{}}"#,
            "requested",
        ] {
            let err = PeerView::parse(bad).unwrap_err().to_string();
            assert!(err.contains("expected {\"at\""), "{bad}: {err}");
        }
    }
}
