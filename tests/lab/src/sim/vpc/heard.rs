//! Word from the EC2 lab that EC2 changed: its proxy counts the mutating calls moto carried out
//! (`GET /_lab/generation`, [`crate::ec2`]), so the router reads EC2 as soon as that count
//! moves instead of reading it over and over; and which attachments are still attaching.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Asks the EC2 lab at one address, over one kept-alive connection.
pub struct Generation {
    lab: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Generation {
    /// `endpoint`: the EC2 lab's AWS_ENDPOINT_URL (`http://ADDR`) or its address.
    pub fn new(endpoint: &str) -> Self {
        Self {
            lab: endpoint.trim_start_matches("http://").to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The count of changes once it exceeds `after`, or when `wait` has passed (at once
    /// without `after`); None when the lab does not answer.
    pub async fn after(&self, after: Option<u64>, wait: Duration) -> Option<u64> {
        let query = match after {
            Some(n) => format!("?after={n}&waitMs={}", wait.as_millis()),
            None => String::new(),
        };
        let uri = format!("http://{}/_lab/generation{query}", self.lab)
            .parse()
            .ok()?;
        let answer = async {
            let reply = self.client.get(uri).await.ok()?;
            let body = reply.into_body().collect().await.ok()?.to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
            value["generation"].as_u64()
        };
        // Bounded, so a lab that hangs cannot stop the router.
        tokio::time::timeout(wait + Duration::from_secs(1), answer)
            .await
            .ok()
            .flatten()
    }

    /// The ENIs EC2 shows `attaching`, or whose attach is on its way through moto
    /// (`GET /_lab/attachments`); moto, which the router reads, shows them attached. None when
    /// the lab does not answer.
    pub async fn attaching(&self) -> Option<BTreeSet<String>> {
        let uri = format!("http://{}/_lab/attachments", self.lab)
            .parse()
            .ok()?;
        let answer = async {
            let reply = self.client.get(uri).await.ok()?;
            let body = reply.into_body().collect().await.ok()?.to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let ids = value["attaching_enis"].as_array()?.iter();
            Some(
                ids.filter_map(|id| Some(id.as_str()?.to_string()))
                    .collect(),
            )
        };
        tokio::time::timeout(Duration::from_secs(1), answer)
            .await
            .ok()
            .flatten()
    }
}
