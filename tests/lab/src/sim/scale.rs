//! Many addresses on one node (`bench failover --addresses N`): N-1 FloatingIPs ("web-2" to
//! "web-N", the companions) beside "web" on web's holder, all of them (web too) preferring the
//! same nodes in the same order, so that the holder's failure moves them all at once, to one
//! node. What that costs is measured: mutating EC2 calls per failover (a controller that
//! batches makes one AssignPrivateIpAddresses per target ENI) and each address's outage as a
//! client sending to every address sees it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::flavor::{floating_ip_yaml, preferred_nodes};
use super::service::NODE_PORT;
use super::traffic::{outage, Attempt, Proto, Traffic};
use super::{Sim, FIP, VIP};

/// How often the client sends to each companion: TCP only, every address's turn spread over
/// the period, so 50 addresses cost 2,500 connections a second rather than 5,000 at once.
const EVERY: Duration = Duration::from_millis(20);

/// A FloatingIP beside "web" on its node.
#[derive(Debug, Clone)]
pub struct Companion {
    pub name: String,
    pub address: IpAddr,
}

impl Sim {
    /// Gives web's holder `n` more addresses: web and `n` new FloatingIPs all prefer that
    /// node, then the others by name. Returns once every one is held there.
    pub async fn add_companions(&mut self, n: usize) -> Result<()> {
        let holder = self.settle(Duration::from_secs(60)).await?;
        let mut order = vec![holder.clone()];
        order.extend(
            (self.nodes.iter())
                .map(|n| n.name.clone())
                .filter(|n| *n != holder),
        );
        let preferred = preferred_nodes(&order);
        let hold = self.opts.min_hold_seconds;
        let vip: IpAddr = VIP.parse()?;
        let mut manifests = vec![floating_ip_yaml(
            FIP,
            "SecondaryIP",
            vip,
            &self.subnet,
            &preferred,
            hold,
        )];
        for (i, address) in self
            .free_addresses(false, &[], n)
            .await?
            .into_iter()
            .enumerate()
        {
            let name = format!("{FIP}-{}", i + 2);
            let yaml = floating_ip_yaml(
                &name,
                "SecondaryIP",
                address,
                &self.subnet,
                &preferred,
                hold,
            );
            manifests.push(yaml);
            self.companions.push(Companion { name, address });
        }
        let out = self.kubectl(&["apply", "-f", "-"], Some(&manifests.join("---\n")))?;
        if !out.status.success() {
            bail!(
                "kubectl apply of {n} companions: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.settle_companions(&holder, Duration::from_secs(120))
            .await
    }

    /// Waits until every companion is held by `holder` with no move pending, in status and in
    /// EC2 (on the ENI web is on), and answers the client from there.
    pub async fn settle_companions(&self, holder: &str, timeout: Duration) -> Result<()> {
        if self.companions.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.companions_agree(holder).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("the companions did not all settle on {holder} within {timeout:?}: {why}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn companions_agree(&self, holder: &str) -> Result<()> {
        let web_eni = self.ec2_holders().await?;
        let fips = kube::Api::<floatip::api::FloatingIP>::all(self.client.clone())
            .list(&Default::default())
            .await?;
        let interfaces = self.subnet_interfaces().await?;
        for c in &self.companions {
            let fip = (fips.items.iter())
                .find(|f| f.metadata.name.as_deref() == Some(c.name.as_str()))
                .with_context(|| format!("{}: no such FloatingIP", c.name))?;
            let status = fip.status.as_ref();
            let status = status.with_context(|| format!("{}: no status", c.name))?;
            if status.pending_move.is_some() {
                bail!("{}: a move is pending", c.name);
            }
            let held_by = status.holder.as_ref().map(|h| h.node.as_str());
            if held_by != Some(holder) {
                bail!("{}: held by {held_by:?}", c.name);
            }
            let text = c.address.to_string();
            let in_ec2: Vec<&str> = (interfaces.iter())
                .filter(|n| {
                    n.private_ip_addresses()
                        .iter()
                        .any(|a| a.primary() != Some(true) && a.private_ip_address() == Some(&text))
                })
                .filter_map(|n| n.network_interface_id())
                .collect();
            if in_ec2 != web_eni {
                bail!("{} is on {in_ec2:?} in EC2, web on {web_eni:?}", c.address);
            }
        }
        for c in &self.companions {
            let to = SocketAddr::new(c.address, NODE_PORT);
            let answer =
                super::traffic::request_once(self.client_ns.path(), to, Duration::from_millis(500))
                    .await;
            if answer.as_deref() != Ok(holder) {
                bail!("{}: the client got {answer:?}", c.address);
            }
        }
        Ok(())
    }

    /// TCP requests to every companion, each every [`EVERY`]; None without companions.
    pub fn companion_traffic(&self) -> Option<Traffic> {
        if self.companions.is_empty() {
            return None;
        }
        let targets = (self.companions.iter())
            .map(|c| SocketAddr::new(c.address, NODE_PORT))
            .collect();
        Some(Traffic::start_to_all(
            self.client_ns.path(),
            targets,
            &[Proto::Tcp],
            EVERY,
            Duration::from_secs(1),
        ))
    }
}

/// Waits (at most 30 s) until the client has had an answer, sent after `since`, from a node
/// other than `from` at every address it sends to.
pub async fn all_moved(traffic: &Traffic, since: SystemTime, from: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempts = traffic.snapshot();
        let waiting: Vec<SocketAddr> = targets(&attempts)
            .into_iter()
            .filter(|to| {
                !attempts.iter().any(|a| {
                    a.to == *to && a.sent > since && a.result.as_ref().is_ok_and(|n| n != from)
                })
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} addresses got no answer from a node other than {from} within 30 s: {waiting:?}",
                waiting.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every address `attempts` went to.
fn targets(attempts: &[Attempt]) -> Vec<SocketAddr> {
    let mut all: Vec<SocketAddr> = attempts.iter().map(|a| a.to).collect();
    all.sort();
    all.dedup();
    all
}

/// The TCP outage each address saw from `since` on, by address.
pub fn outages(attempts: &[Attempt], since: SystemTime) -> Vec<(SocketAddr, Duration)> {
    targets(attempts)
        .into_iter()
        .map(|to| {
            let mine: Vec<Attempt> = attempts.iter().filter(|a| a.to == to).cloned().collect();
            (to, outage(&mine, Proto::Tcp, since).duration)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(to: &str, ms: u64, answer: Result<&str, &str>) -> Attempt {
        Attempt {
            proto: Proto::Tcp,
            to: to.parse().unwrap(),
            sent: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            took: Duration::from_millis(1),
            connected: None,
            result: answer.map(String::from).map_err(String::from),
        }
    }

    #[test]
    fn each_address_has_its_own_outage() {
        let (a, b) = ("10.99.8.101:30080", "10.99.8.102:30080");
        let attempts = [
            attempt(a, 0, Ok("node-1")),
            attempt(b, 5, Err("timed out")),
            attempt(a, 20, Err("timed out")),
            attempt(b, 25, Err("timed out")),
            attempt(a, 40, Ok("node-2")),
            attempt(b, 85, Ok("node-2")),
        ];
        let got = outages(&attempts, SystemTime::UNIX_EPOCH);
        assert_eq!(
            got,
            [
                (a.parse().unwrap(), Duration::from_millis(20)),
                (b.parse().unwrap(), Duration::from_millis(80)),
            ]
        );
    }
}
