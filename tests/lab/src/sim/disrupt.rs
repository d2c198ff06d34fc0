//! What a person (through `floatip-lab ctl`) or a test does to a running lab besides killing
//! nodes ([`Sim::kill_node`]): restart floatip's processes as Kubernetes would, and cut the
//! controllers off from every node.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use super::procs::Proc;
use super::{create_agent_pod, http, infra_routes, net, wait_until, Sim, NAMESPACE};

/// The chart's terminationGracePeriodSeconds for the controller: the kubelet's SIGKILL after it.
const CONTROLLER_GRACE: Duration = Duration::from_secs(10);
/// The chart's terminationGracePeriodSeconds for the agent (its handover fits in it).
const AGENT_GRACE: Duration = Duration::from_secs(30);
/// How long a restarted controller may take to answer /readyz.
const READY_WITHIN: Duration = Duration::from_secs(30);

impl Sim {
    /// Restarts the controllers one at a time, as a rollout of their Deployment does: SIGTERM
    /// (the leader releases its Lease), a new process once it exited, ready before the next
    /// one stops. Each keeps its pod name and admin address, so what `up` wrote down stays
    /// true. Returns their names.
    pub async fn restart_controllers(&mut self) -> Result<Vec<String>> {
        let mut restarted = Vec::new();
        for i in 0..self.controllers.len() {
            let Some(mut old) = self.controllers[i].take() else {
                continue;
            };
            stop(&mut old.proc, CONTROLLER_GRACE).await;
            let new = self.spawn_controller(&old.identity, old.admin)?;
            let admin = new.admin.to_string();
            self.controllers[i] = Some(new);
            wait_until(READY_WITHIN, &format!("{}'s /readyz", old.identity), || {
                http(&admin, "GET", "/readyz", "").is_ok()
            })
            .await?;
            restarted.push(old.identity);
        }
        Ok(restarted)
    }

    /// Replaces node `name`'s agent pod, as a DaemonSet rollout does: SIGTERM (the agent hands
    /// its addresses over), a new pod once it exited (without the old one's handover
    /// annotation, not ready until the kubelet stand-in sees the new agent's /readyz pass),
    /// `floatip attach` as its init container, then the new agent.
    pub async fn restart_agent(&mut self, name: &str) -> Result<()> {
        if self.is_down(name)? {
            bail!("{name} is dead: revive it instead");
        }
        let node = self.node_mut(name)?;
        if let Some(mut agent) = node.agent.take() {
            stop(&mut agent, AGENT_GRACE).await;
        }
        let pod = format!("floatip-agent-{name}");
        self.kubelet.container_stopped(&pod);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        pods.delete(&pod, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {pod}"))?;
        create_agent_pod(&self.client, name).await?;
        self.attach(name)?;
        self.start_agent(name)
    }

    /// Cuts the controllers off from every node: the infra namespace, where they run, loses
    /// its link to the VPC (their view of the nodes goes; the API server and EC2 on its
    /// loopback stay, and nodes and clients reach each other as before). Healed when the
    /// returned [`Cut`] is healed or dropped.
    pub fn cut_controllers(&self) -> Result<Cut> {
        let cut = Cut {
            infra: self.infra_name().to_string(),
            healed: false,
        };
        cut.ip("link set vpc0 down")?;
        Ok(cut)
    }
}

/// The controllers cut off from the nodes, until [`Cut::heal`] or drop.
pub struct Cut {
    infra: String,
    healed: bool,
}

impl Cut {
    /// Link up again, and the route into the VPC the link took with it when it went down.
    pub fn heal(mut self) -> Result<()> {
        self.healed = true;
        self.restore()
    }

    fn restore(&self) -> Result<()> {
        self.ip("link set vpc0 up")?;
        infra_routes().iter().try_for_each(|route| self.ip(route))
    }

    fn ip(&self, args: &str) -> Result<()> {
        let mut all = vec!["-n", &self.infra];
        all.extend(args.split_whitespace());
        net::run("ip", &all).map(drop)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if !self.healed {
            let _ = self.restore();
        }
    }
}

/// SIGTERM, then SIGKILL once `grace` is over, as the kubelet stops a container.
async fn stop(proc: &mut Proc, grace: Duration) {
    proc.signal("TERM");
    let name = proc.name.clone();
    let _ = wait_until(grace, &name, || !proc.running()).await;
    proc.kill9();
}
