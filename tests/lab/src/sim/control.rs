//! The control endpoint of a lab that stays up: HTTP on a Unix socket (its path is in the env
//! file), one route, `POST /actions` with an [`Action`] as JSON. The `up` process owns the
//! simulation (its processes, namespaces and threads), so the actions run here, on the live
//! [`Sim`], with its own methods; `floatip-lab ctl` only sends them. Answers are text (JSON for
//! `traffic`); a failed action answers 4xx/5xx with one line saying why.
//!
//! ```text
//! curl --unix-socket /run/floatip-lab/lab.sock -d '{"kill-node":{"node":1}}' http://lab/actions
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::traffic::{answered_by, outage, OutageReport, Proto};
use super::Sim;

/// The one route.
pub const PATH: &str = "/actions";
/// The longest partition or traffic run an action may ask for.
const MAX_SECONDS: u64 = 3600;

/// One thing to do to the running lab. Nodes are numbered from 1 (node-1, node-2, ...).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Node N dies, as in the demo: its links go down and its agent is killed (SIGKILL).
    KillNode {
        /// The node's number (node-N).
        #[arg(value_name = "N")]
        node: usize,
    },
    /// Node N comes back (a reboot): links up, `floatip attach` (the init container), a new agent.
    ReviveNode {
        /// The node's number (node-N).
        #[arg(value_name = "N")]
        node: usize,
    },
    /// Cut the controllers off from every node for S seconds, then restore their routes; nodes
    /// and clients keep reaching each other. Answers when the routes are back.
    Partition {
        /// Who is cut off from the nodes.
        #[arg(value_enum)]
        who: Partitioned,
        /// How long the partition lasts.
        #[arg(long, value_name = "S", default_value_t = 10)]
        seconds: u64,
    },
    /// Client TCP and UDP requests from the client namespace to ADDRESS:PORT every 10 ms for S
    /// seconds (each with a 1 s timeout); prints the outage it saw as JSON.
    Traffic {
        /// Where the requests go, e.g. the address and the service's NodePort.
        #[arg(value_name = "ADDRESS:PORT")]
        to: SocketAddr,
        /// How long to send requests.
        #[arg(long, value_name = "S", default_value_t = 10)]
        seconds: u64,
    },
    /// Restart the controllers (one at a time, as a rollout does) or node N's agent (a new pod:
    /// SIGTERM and handover, `floatip attach`, a new agent).
    #[command(subcommand)]
    Restart(Restart),
}

/// Who a partition cuts off from the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioned {
    Controllers,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Every controller, one at a time.
    Controllers,
    /// Node N's agent.
    Agent {
        /// The node's number (node-N).
        #[arg(value_name = "N")]
        node: usize,
    },
}

/// The simulation and who may touch it. Long actions (traffic, a partition's wait) do not
/// hold the simulation, so another shell can kill a node while traffic runs.
struct Lab {
    sim: Mutex<Sim>,
    /// Held while the controllers are cut off: partitions do not overlap.
    partition: Mutex<()>,
}

/// Serves actions on `listener` until `until` completes, then ends every connection (an action
/// in flight stops; a partition is healed) and drops the simulation, tearing it down.
pub async fn serve(sim: Sim, listener: UnixListener, until: impl Future<Output = ()>) {
    let lab = Arc::new(Lab {
        sim: Mutex::new(sim),
        partition: Mutex::new(()),
    });
    let mut connections = JoinSet::new();
    let mut until = std::pin::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(lab.clone(), stream));
                }
                Err(e) => tracing::warn!(error = %e, "control socket: accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn connection(lab: Arc<Lab>, stream: UnixStream) {
    let service = hyper::service::service_fn(move |req| {
        let lab = lab.clone();
        async move { Ok::<_, Infallible>(respond(&lab, req).await) }
    });
    // A client that goes away ends only its own connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn respond(lab: &Lab, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, text) = match answer(lab, req).await {
        Ok(text) => (StatusCode::OK, text),
        Err((status, why)) => (status, why),
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", text.trim_end()))));
    *response.status_mut() = status;
    response
}

async fn answer(lab: &Lab, req: Request<Incoming>) -> Result<String, (StatusCode, String)> {
    if req.method() != Method::POST || req.uri().path() != PATH {
        return Err((
            StatusCode::NOT_FOUND,
            format!("POST an action as JSON to {PATH}"),
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the request: {e}")))?
        .to_bytes();
    let action: Action = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("not an action: {e}")))?;
    tracing::info!(?action, "control: action");
    lab.perform(action)
        .await
        .map_err(|e| (StatusCode::CONFLICT, format!("{e:#}")))
}

impl Lab {
    async fn perform(&self, action: Action) -> Result<String> {
        match action {
            Action::KillNode { node } => {
                let mut sim = self.sim.lock().await;
                let name = node_name(&sim, node)?;
                sim.kill_node(&name)?;
                Ok(format!(
                    "{name} is dead: its links are down and its agent was killed"
                ))
            }
            Action::ReviveNode { node } => {
                let mut sim = self.sim.lock().await;
                let name = node_name(&sim, node)?;
                sim.revive_node(&name)?;
                Ok(format!(
                    "{name} is back: links up, floatip attach ran, its agent started"
                ))
            }
            Action::Partition {
                who: Partitioned::Controllers,
                seconds,
            } => self.cut_controllers(duration(seconds)?).await,
            Action::Traffic { to, seconds } => self.traffic(to, duration(seconds)?).await,
            Action::Restart(Restart::Controllers) => {
                let names = self.sim.lock().await.restart_controllers().await?;
                Ok(format!(
                    "restarted {}, each ready before the next stopped",
                    names.join(", ")
                ))
            }
            Action::Restart(Restart::Agent { node }) => {
                let mut sim = self.sim.lock().await;
                let name = node_name(&sim, node)?;
                sim.restart_agent(&name).await?;
                Ok(format!(
                    "{name}'s agent restarted: a new pod, floatip attach, a new agent"
                ))
            }
        }
    }

    async fn cut_controllers(&self, how_long: Duration) -> Result<String> {
        let Ok(_one) = self.partition.try_lock() else {
            bail!("the controllers are cut off already: wait for that partition to end");
        };
        let cut = self.sim.lock().await.cut_controllers()?;
        let from = SystemTime::now();
        tokio::time::sleep(how_long).await;
        cut.heal()?;
        Ok(format!(
            "the controllers were cut off from every node from {} to {}; their routes are back",
            super::timeline::clock(from),
            super::timeline::clock(SystemTime::now())
        ))
    }

    async fn traffic(&self, to: SocketAddr, how_long: Duration) -> Result<String> {
        let from = SystemTime::now();
        let traffic = self.sim.lock().await.traffic_to(to);
        tokio::time::sleep(how_long).await;
        // Stopping waits for the requests in flight (each at most its 1 s timeout).
        let attempts = tokio::task::spawn_blocking(move || traffic.stop()).await?;
        let report = TrafficReport {
            to,
            seconds: how_long.as_secs(),
            tcp: outage(&attempts, Proto::Tcp, from).report(),
            udp: outage(&attempts, Proto::Udp, from).report(),
            answered_by: answered_by(&attempts),
        };
        Ok(serde_json::to_string_pretty(&report)?)
    }
}

/// What `traffic` answers (as JSON, in this order).
#[derive(Debug, Serialize)]
struct TrafficReport {
    to: SocketAddr,
    seconds: u64,
    tcp: OutageReport,
    udp: OutageReport,
    /// Requests each node answered: where the address was.
    answered_by: BTreeMap<String, usize>,
}

/// node-N, if the lab has it.
fn node_name(sim: &Sim, n: usize) -> Result<String> {
    if n == 0 || n > sim.nodes.len() {
        bail!(
            "there is no node {n}: the lab's nodes are 1 to {}",
            sim.nodes.len()
        );
    }
    Ok(sim.nodes[n - 1].name.clone())
}

fn duration(seconds: u64) -> Result<Duration> {
    if !(1..=MAX_SECONDS).contains(&seconds) {
        bail!("--seconds must be 1 to {MAX_SECONDS}, not {seconds}");
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_the_json_the_readme_shows() {
        let kill: Action = serde_json::from_str(r#"{"kill-node":{"node":1}}"#).unwrap();
        assert_eq!(kill, Action::KillNode { node: 1 });
        assert_eq!(
            serde_json::to_string(&Action::Restart(Restart::Agent { node: 2 })).unwrap(),
            r#"{"restart":{"agent":{"node":2}}}"#
        );
        assert_eq!(
            serde_json::to_value(Action::Partition {
                who: Partitioned::Controllers,
                seconds: 3
            })
            .unwrap(),
            serde_json::json!({"partition": {"who": "controllers", "seconds": 3}})
        );
    }

    #[test]
    fn seconds_are_bounded() {
        assert!(duration(0).is_err());
        assert!(duration(MAX_SECONDS + 1).is_err());
        assert_eq!(duration(3).unwrap(), Duration::from_secs(3));
    }
}
