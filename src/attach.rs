//! `floatip attach`: the agent pod's init container. Prepares the node (its floating ENI found
//! or created, attached, up, addressed), claims the addresses nobody holds yet that select this
//! node, and configures every address the node holds, so a rebooted node serves before the
//! agent starts. One clear line and a non-zero exit when something is missing.

use crate::api::condition as cond;
use crate::status::conditions::{self, Desired};
use crate::status::Seat;
use crate::status::{record_arrival, Arrival};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;

use crate::agent::host::Host;
use crate::agent::want::held_by;
use crate::agent::HostArgs;
use crate::api::{validate_spec, FloatingIP, InterfaceChoice, Mode, MoveReason, PendingMove};
use crate::cli::parse_duration;
use crate::cloud::aws::Ec2;
use crate::cloud::{
    floating_tags, parse_security_group_id, same_security_groups, Cloud, CloudError, Eni, Instance,
};
use crate::nodes::{node_fitness, NodeView, Unfit};
use crate::retry;

/// `floatip attach` flags; each can also be set through its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// This node's name (downward API spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Name of the EKS cluster: floating ENIs carry it in their floatip.io/cluster tag.
    #[arg(long, env = "FLOATIP_CLUSTER_NAME")]
    pub cluster_name: String,
    /// How long to wait for EC2 to attach the floating ENI and for its interface to appear.
    #[arg(long, env = "FLOATIP_ATTACH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Attempts per EC2 call, the first included.
    #[arg(long, env = "FLOATIP_EC2_ATTEMPTS", default_value_t = 4)]
    pub ec2_attempts: u32,
    /// First backoff between EC2 attempts.
    #[arg(long, env = "FLOATIP_EC2_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub ec2_backoff: Duration,
    /// Security groups of the floating ENIs, comma-separated IDs (sg-...). Default: the groups
    /// of the node's primary ENI, so that the rules admitting clients to the node's NodePorts
    /// admit them to the floating addresses. A floating ENI whose groups differ is corrected.
    #[arg(long, env = "FLOATIP_SECURITY_GROUP_IDS", value_delimiter = ',', value_parser = parse_security_group_id)]
    pub security_group_ids: Vec<String>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Why attach failed, each naming what to check.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("Kubernetes API: {0}; check the agent's RBAC (get nodes, list FloatingIPs, update floatingips/status)")]
    Kube(#[from] kube::Error),
    #[error("node {0} has no aws:/// spec.providerID; floatip attach runs only on EC2 nodes")]
    NoInstance(String),
    #[error("{0}; {hint}", hint = hint(.0))]
    Cloud(#[from] CloudError),
    #[error("no free ENI slot on {instance} ({instance_type} allows {max} network interfaces, all in use); use a larger instance type or free a device index")]
    NoFreeSlot {
        instance: String,
        instance_type: String,
        max: u32,
    },
    #[error("floating ENI {eni} of node {node} is attached to {other}, not to this node's {instance}; delete or detach it")]
    AttachedElsewhere {
        eni: String,
        node: String,
        other: String,
        instance: String,
    },
    #[error("the primary ENI of {instance} has no security groups for its floating ENI to copy; set --security-group-ids (chart value agent.securityGroupIds)")]
    NoSecurityGroups { instance: String },
    #[error("floating ENI {eni} was not attached within {timeout:?}; check its attachment in EC2")]
    NotAttached { eni: String, timeout: Duration },
    #[error("floating ENI {eni}: {error}; check that the instance hot-plugs ENIs and the pod has hostNetwork")]
    Interface { eni: String, error: std::io::Error },
    #[error("configuring the node's network: {0} (needs hostNetwork and CAP_NET_ADMIN)")]
    Network(#[from] std::io::Error),
    #[error("the node holds addresses it cannot configure: {0}")]
    Unconfigured(String),
}

fn hint(e: &CloudError) -> String {
    if e.code.contains("Unauthorized") || e.code.contains("AccessDenied") {
        format!("allow ec2:{} to the agent's IAM role", e.action)
    } else if e.code.starts_with("InvalidSubnetID") {
        "check spec.subnetId of the FloatingIPs".into()
    } else if e.code.starts_with("InvalidGroup") || e.code.starts_with("InvalidSecurityGroup") {
        "check --security-group-ids (chart value agent.securityGroupIds): each group must exist in the VPC of the FloatingIPs' subnet".into()
    } else if e.code == "AttachmentLimitExceeded" {
        "no free ENI slot on the instance: use a larger instance type or free a device index".into()
    } else if e.retryable() {
        "EC2 is throttling or unavailable; the init container is retried".into()
    } else {
        "see the AWS error code".into()
    }
}

/// What attach did, printed as its last line.
#[derive(Debug, Default)]
pub struct Summary {
    /// (subnet, ENI, interface name)
    pub enis: Vec<(String, String, String)>,
    pub created: Vec<String>,
    pub claimed: Vec<String>,
    pub configured: Vec<IpAddr>,
    /// Subnets it could not prepare, with why: their FloatingIPs were skipped.
    pub skipped: Vec<(String, CloudError)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enis: Vec<String> = self
            .enis
            .iter()
            .map(|(s, e, i)| format!("{e} ({i}, {s})"))
            .collect();
        write!(
            f,
            "floating ENIs: [{}]; created: [{}]; claimed: [{}]; configured: [{}]",
            enis.join(", "),
            self.created.join(", "),
            self.claimed.join(", "),
            self.configured
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        for (subnet, e) in &self.skipped {
            write!(f, "; skipped subnet {subnet}: {e}")?;
        }
        Ok(())
    }
}

pub async fn run(args: AttachArgs) -> anyhow::Result<()> {
    let host = Host::spawn(args.host.config())
        .map_err(|e| anyhow::anyhow!("{}", AttachError::Network(e)))?;
    let client = kube::Client::try_default().await?;
    let cloud = Ec2::from_env(
        args.ec2_attempts,
        args.ec2_backoff,
        crate::metrics::Metrics::new(),
    )
    .await;
    // The error's own line says what to check; its sources are already in it.
    let summary = attach(&client, &cloud, &host, &args)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("floatip attach: node {}: {summary}", args.node_name);
    Ok(())
}

/// Whether attach handles this FloatingIP's claim: SecondaryIP only, the mode whose first
/// assignment is one EC2 call onto the node's own ENI.
fn claimable_mode(f: &FloatingIP) -> bool {
    f.spec.mode == Mode::SecondaryIP
}

fn dedicated(f: &FloatingIP) -> bool {
    f.spec.interface.unwrap_or_default() == InterfaceChoice::Dedicated
}

fn held_here(f: &FloatingIP, node: &str) -> bool {
    f.status
        .as_ref()
        .and_then(|s| s.holder.as_ref())
        .is_some_and(|h| h.node == node)
}

/// The FloatingIP's nodeSelector selects this node: it may hold the address some day, so it
/// needs a floating ENI in that subnet, Ready or not, cordoned or not.
fn selected(view: &NodeView, f: &FloatingIP) -> bool {
    !matches!(
        node_fitness(view, &f.spec),
        Err(Unfit::NotSelected | Unfit::Deleting | Unfit::NoInstance)
    )
}

fn unclaimed(f: &FloatingIP) -> bool {
    f.status
        .as_ref()
        .is_none_or(|s| s.holder.is_none() && s.pending_move.is_none())
}

pub async fn attach<C: Cloud>(
    client: &kube::Client,
    cloud: &C,
    host: &Host,
    args: &AttachArgs,
) -> Result<Summary, AttachError> {
    let me = args.node_name.as_str();
    let node = Api::<Node>::all(client.clone()).get(me).await?;
    let view = NodeView::from_node(&node);
    let instance_id = view
        .instance_id
        .clone()
        .ok_or_else(|| AttachError::NoInstance(me.to_string()))?;
    let fips_api: Api<FloatingIP> = Api::all(client.clone());
    let fips = fips_api.list(&ListParams::default()).await?.items;
    let mine: Vec<&FloatingIP> = fips
        .iter()
        .filter(|f| f.metadata.deletion_timestamp.is_none() && validate_spec(&f.spec).is_ok())
        .filter(|f| claimable_mode(f))
        .filter(|f| held_here(f, me) || selected(&view, f))
        .collect();

    let mut summary = Summary::default();
    // The ENI that takes each subnet's addresses on this node.
    let mut by_subnet: HashMap<(String, InterfaceChoice), Eni> = HashMap::new();
    let dedicated_subnets: BTreeSet<String> = mine
        .iter()
        .filter(|f| dedicated(f))
        .filter_map(|f| f.spec.subnet_id.clone())
        .collect();
    if !dedicated_subnets.is_empty() {
        let mut instance = cloud.instance(&instance_id).await?;
        let groups = wanted_groups(&args.security_group_ids, &instance)?;
        let tagged: Vec<Eni> = cloud
            .cluster_enis(&args.cluster_name)
            .await?
            .into_iter()
            .filter(|e| e.is_floating_for(&args.cluster_name) && e.node_tag() == Some(me))
            .collect();
        for subnet in dedicated_subnets {
            let prepared = async {
                let eni = ensure_eni(
                    cloud,
                    args,
                    &mut instance,
                    &tagged,
                    &subnet,
                    &groups,
                    &mut summary,
                )
                .await?;
                let cidr = cloud.subnet(&subnet).await?.cidr_v4;
                let address = match (eni.primary_ip, cidr.as_deref().and_then(prefix_of)) {
                    (Some(IpAddr::V4(ip)), Some(prefix)) => Some((ip, prefix)),
                    (Some(IpAddr::V4(ip)), None) => Some((ip, 32)),
                    _ => None,
                };
                let mac = eni.mac.clone().unwrap_or_default();
                let link = host
                    .prepare(&mac, address, args.timeout)
                    .await
                    .map_err(|error| AttachError::Interface {
                        eni: eni.id.clone(),
                        error,
                    })?;
                Ok::<_, AttachError>((eni, link.name))
            }
            .await;
            match prepared {
                Ok((eni, link)) => {
                    summary.enis.push((subnet.clone(), eni.id.clone(), link));
                    by_subnet.insert((subnet, InterfaceChoice::Dedicated), eni);
                }
                // One FloatingIP's unusable subnet (it does not exist, EC2 refuses an ENI in
                // it) must not keep this node from every other address: skip it, say so on
                // those FloatingIPs, and do the rest. Transient errors still fail the init
                // container, which is retried.
                Err(AttachError::Cloud(e)) if about_the_subnet(&e) => {
                    tracing::warn!(subnet, error = %e, "cannot prepare this subnet; skipping its FloatingIPs");
                    summary.skipped.push((subnet, e));
                }
                Err(e) => return Err(e),
            }
        }
    }
    report_subnets(&fips_api, &mine, me, &summary).await;
    // Every subnet refused: nothing on this node works, so fail as before (with the
    // FloatingIPs told why) rather than start an agent that can hold nothing.
    let prepared = by_subnet
        .keys()
        .any(|(_, i)| *i == InterfaceChoice::Dedicated);
    if let (false, Some((_, e))) = (prepared, summary.skipped.first()) {
        return Err(AttachError::Cloud(e.clone()));
    }
    for f in mine.iter().filter(|f| !dedicated(f)) {
        let Some(subnet) = f.spec.subnet_id.clone() else {
            continue;
        };
        let key = (subnet.clone(), InterfaceChoice::Primary);
        if by_subnet.contains_key(&key) {
            continue;
        }
        let primary = cloud.subnet_enis(&subnet).await?.into_iter().find(|e| {
            e.instance_id.as_deref() == Some(instance_id.as_str()) && e.device_index == Some(0)
        });
        if let Some(eni) = primary {
            by_subnet.insert(key, eni);
        }
    }

    // Only a node fit to hold an address claims one; the ENI above is prepared whenever the
    // node is selected, since an init container often runs before the node is Ready.
    for f in mine
        .iter()
        .filter(|f| unclaimed(f) && node_fitness(&view, &f.spec).is_ok())
    {
        let key = (
            f.spec.subnet_id.clone().unwrap_or_default(),
            f.spec.interface.unwrap_or_default(),
        );
        let Some(eni) = by_subnet.get(&key) else {
            tracing::warn!(floatingip = %f.name_any(), "no ENI of this node in the FloatingIP's subnet; not claiming");
            continue;
        };
        if claim(&fips_api, cloud, f, me, &instance_id, eni).await? {
            summary.claimed.push(f.name_any());
        }
    }

    let fips = fips_api.list(&ListParams::default()).await?.items;
    let vips = held_by(&fips, me);
    let report = host.apply(vips.clone()).await?;
    if !report.problems.is_empty() {
        return Err(AttachError::Unconfigured(report.problems.join("; ")));
    }
    summary.configured = vips.iter().map(|v| v.address).collect();
    Ok(summary)
}

/// Whether EC2 refused something about one subnet for good (it does not exist, has no free
/// address, IAM does not allow it there), so that only that subnet's FloatingIPs are skipped.
/// Throttling and outages are retried by failing the init container; security groups come
/// from the node's flags and concern every subnet.
fn about_the_subnet(e: &CloudError) -> bool {
    !e.retryable()
        && !e.code.starts_with("InvalidGroup")
        && !e.code.starts_with("InvalidSecurityGroup")
}

/// Says on each FloatingIP whose subnet this node could not prepare why (condition
/// AttachFailed, naming the node), and clears that condition from those whose subnet it did
/// prepare. Best effort: a failed write is logged, and the next attach tries again.
async fn report_subnets(api: &Api<FloatingIP>, mine: &[&FloatingIP], me: &str, summary: &Summary) {
    let now = Time(jiff::Timestamp::now());
    for f in mine.iter().filter(|f| dedicated(f)) {
        let subnet = f.spec.subnet_id.as_deref().unwrap_or_default();
        let failed = summary.skipped.iter().find(|(s, _)| s == subnet);
        let mut obj = (*f).clone();
        let status = obj.status.get_or_insert_with(Default::default);
        let g = f.metadata.generation;
        let changed = match failed {
            Some((_, e)) => {
                let msg = format!(
                    "floatip attach on {me} could not prepare subnet {subnet}: {e}; {}",
                    hint(e)
                );
                let d = Desired::new(cond::ATTACH_FAILED, true, &e.code_reason(), msg);
                conditions::set(&mut status.conditions, &d, g, &now)
            }
            None => conditions::remove(&mut status.conditions, cond::ATTACH_FAILED),
        };
        if changed {
            if let Err(e) = api
                .replace_status(&f.name_any(), &PostParams::default(), &obj)
                .await
            {
                tracing::warn!(floatingip = %f.name_any(), error = %e, "could not report the subnet on the FloatingIP");
            }
        }
    }
}

fn prefix_of(cidr: &str) -> Option<u8> {
    cidr.split_once('/')?.1.parse().ok()
}

/// The security groups of this node's floating ENIs: `--security-group-ids` when given, else
/// those of the node's primary ENI, so that the rules admitting clients to its NodePorts admit
/// them to the floating addresses. (Without groups EC2 would pick the VPC's default group,
/// which normally admits only its own members: the address would be unreachable.)
fn wanted_groups(flag: &[String], instance: &Instance) -> Result<Vec<String>, AttachError> {
    let from = if flag.is_empty() {
        &instance.primary_security_groups
    } else {
        flag
    };
    let mut groups: Vec<String> = Vec::new();
    for g in from {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    if groups.is_empty() {
        return Err(AttachError::NoSecurityGroups {
            instance: instance.id.clone(),
        });
    }
    Ok(groups)
}

/// This node's floating ENI in `subnet`, filtered by `groups`: the one it already has
/// (attached, or detached and attached again), its groups corrected if they drifted, else a
/// new one, tagged and attached at the lowest free device index.
async fn ensure_eni<C: Cloud>(
    cloud: &C,
    args: &AttachArgs,
    instance: &mut Instance,
    tagged: &[Eni],
    subnet: &str,
    groups: &[String],
    summary: &mut Summary,
) -> Result<Eni, AttachError> {
    let in_subnet: Vec<&Eni> = tagged.iter().filter(|e| e.subnet_id == subnet).collect();
    let attached_here = |e: &&Eni| e.instance_id.as_deref() == Some(instance.id.as_str());
    let found = (in_subnet.iter().copied().find(attached_here))
        .or_else(|| in_subnet.iter().copied().find(|e| e.instance_id.is_none()));
    let eni = match found {
        Some(e) => {
            let mut eni = e.clone();
            correct_groups(cloud, &args.cluster_name, &mut eni, groups).await?;
            if eni.instance_id.is_some() {
                return Ok(eni);
            }
            eni
        }
        None => {
            if let Some(e) = in_subnet.first() {
                return Err(AttachError::AttachedElsewhere {
                    eni: e.id.clone(),
                    node: args.node_name.clone(),
                    other: e.instance_id.clone().unwrap_or_default(),
                    instance: instance.id.clone(),
                });
            }
            let description = format!(
                "floatip floating ENI of node {} (cluster {})",
                args.node_name, args.cluster_name
            );
            let tags = floating_tags(&args.cluster_name, &args.node_name);
            let e = cloud
                .create_eni(subnet, &description, groups, &tags)
                .await?;
            tracing::info!(eni = %e.id, subnet, security_groups = %groups.join(","), "created the floating ENI");
            summary.created.push(e.id.clone());
            e
        }
    };
    attach_at_free_slot(cloud, args, instance, eni).await
}

/// Puts `wanted` on a floating ENI whose security groups drifted from it (changed by hand, a
/// changed flag, or made before floatip chose groups), and logs the change. Only an ENI floatip
/// tagged for this cluster is ever modified.
async fn correct_groups<C: Cloud>(
    cloud: &C,
    cluster: &str,
    eni: &mut Eni,
    wanted: &[String],
) -> Result<(), AttachError> {
    if !eni.is_floating_for(cluster) || same_security_groups(&eni.security_groups, wanted) {
        return Ok(());
    }
    cloud.set_security_groups(&eni.id, wanted).await?;
    tracing::info!(
        eni = %eni.id,
        old = %eni.security_groups.join(","),
        new = %wanted.join(","),
        "corrected the floating ENI's security groups"
    );
    eni.security_groups = wanted.to_vec();
    Ok(())
}

/// Attaches `eni` at the lowest free device index and waits until EC2 shows it attached.
async fn attach_at_free_slot<C: Cloud>(
    cloud: &C,
    args: &AttachArgs,
    instance: &mut Instance,
    eni: Eni,
) -> Result<Eni, AttachError> {
    let index = (1..)
        .find(|i| !instance.device_indexes.contains(i))
        .expect("some index is free");
    let max = match cloud.max_interfaces(&instance.instance_type).await {
        Ok(max) => max,
        Err(e) => {
            // Without ec2:DescribeInstanceTypes, EC2 itself refuses a slot too many.
            tracing::warn!(error = %e, "could not read the instance type's ENI limit");
            None
        }
    };
    if let Some(max) = max.filter(|m| index as u32 >= *m) {
        return Err(AttachError::NoFreeSlot {
            instance: instance.id.clone(),
            instance_type: instance.instance_type.clone(),
            max,
        });
    }
    cloud.attach_eni(&eni.id, &instance.id, index).await?;
    instance.device_indexes.push(index);
    tracing::info!(eni = %eni.id, index, "attaching the floating ENI");
    let deadline = Instant::now() + args.timeout;
    let (id, here) = (&eni.id, instance.id.as_str());
    let attached = retry::poll(retry::ATTACHMENT_POLL, Some(deadline), move || async move {
        let found = cloud.enis(std::slice::from_ref(id)).await?;
        Ok::<_, CloudError>(
            found
                .into_iter()
                .next()
                .filter(|e| e.instance_id.as_deref() == Some(here)),
        )
    })
    .await?;
    attached.ok_or(AttachError::NotAttached {
        eni: eni.id,
        timeout: args.timeout,
    })
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Claims an address nobody holds: a resourceVersion-checked write of pendingMove, then one
/// AssignPrivateIpAddresses without reassignment, then the holder. Returns false when another
/// node or the controller got there first.
async fn claim<C: Cloud>(
    api: &Api<FloatingIP>,
    cloud: &C,
    fip: &FloatingIP,
    me: &str,
    instance: &str,
    eni: &Eni,
) -> Result<bool, AttachError> {
    let name = fip.name_any();
    let Some(address) = crate::api::parse_address(&fip.spec.address) else {
        return Ok(false);
    };
    let started = Instant::now();
    let mut obj = fip.clone();
    obj.status.get_or_insert_with(Default::default).pending_move = Some(PendingMove {
        from: None,
        to: me.to_string(),
        reason: MoveReason::Initial,
        since: Time(jiff::Timestamp::now()),
    });
    let claimed = match api
        .replace_status(&name, &PostParams::default(), &obj)
        .await
    {
        Ok(c) => c,
        Err(e) if is_conflict(&e) => {
            tracing::info!(floatingip = %name, "someone else claimed it first");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = cloud.assign_unused(&eni.id, &[address]).await {
        drop_claim(api, &name, me).await;
        if e.code == "PrivateIpAddressInUse" || e.code.starts_with("InvalidParameterValue") {
            tracing::warn!(floatingip = %name, error = %e, "the address is in use elsewhere; leaving it to the controller");
            return Ok(false);
        }
        return Err(e.into());
    }
    // EC2's reads can lag its writes by a moment: read back a few times before giving up.
    let verified = retry::poll(retry::READ_BACK, None, move || async move {
        let found = cloud.enis(std::slice::from_ref(&eni.id)).await?;
        Ok::<_, CloudError>(found.iter().any(|e| e.holds(address)).then_some(()))
    })
    .await?;
    if verified.is_none() {
        drop_claim(api, &name, me).await;
        tracing::warn!(floatingip = %name, "EC2 does not show the address on this node's ENI after assigning it; leaving it to the controller");
        return Ok(false);
    }
    let mut current = claimed;
    loop {
        let g = current.metadata.generation;
        let now = Time(jiff::Timestamp::now());
        let ours = current
            .status
            .as_ref()
            .and_then(|s| s.pending_move.as_ref())
            .is_some_and(|p| p.to == me && p.reason == MoveReason::Initial);
        if !ours {
            tracing::warn!(floatingip = %name, "the claim was replaced before the holder was written");
            return Ok(false);
        }
        let placed = Seat {
            node: me.to_string(),
            instance_id: instance.to_string(),
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
        };
        let arrival = Arrival {
            address: &address.to_string(),
            from: None,
            to: &placed,
            reason: MoveReason::Initial,
            took: started.elapsed(),
        };
        record_arrival(
            current.status.get_or_insert_with(Default::default),
            &arrival,
            g,
            &now,
        );
        match api
            .replace_status(&name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => {
                tracing::info!(floatingip = %name, %address, eni = %eni.id, "claimed");
                return Ok(true);
            }
            Err(e) if is_conflict(&e) => current = api.get(&name).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes back a claim whose EC2 call failed, if it is still ours.
async fn drop_claim(api: &Api<FloatingIP>, name: &str, me: &str) {
    for _ in 0..3 {
        let Ok(mut f) = api.get(name).await else {
            return;
        };
        let s = f.status.get_or_insert_with(Default::default);
        if s.pending_move.as_ref().is_none_or(|p| p.to != me) {
            return;
        }
        s.pending_move = None;
        match api.replace_status(name, &PostParams::default(), &f).await {
            Err(e) if is_conflict(&e) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(ready: &str, labels: serde_json::Value) -> NodeView {
        NodeView::from_node(
            &serde_json::from_value(json!({
                "metadata": {"name": "n1", "labels": labels},
                "spec": {"providerID": "aws:///us-west-2a/i-0123456789abcdef0"},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}
            }))
            .unwrap(),
        )
    }

    fn fip(extra: serde_json::Value) -> FloatingIP {
        let mut spec = json!({"address": "10.99.8.100", "subnetId": "subnet-0a1b2c3d"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
            "metadata": {"name": "web"}, "spec": spec,
        }))
        .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn instance(primary_groups: &[&str]) -> Instance {
        Instance {
            id: "i-0123456789abcdef0".into(),
            instance_type: "t3.medium".into(),
            device_indexes: vec![0],
            primary_security_groups: strings(primary_groups),
        }
    }

    #[test]
    fn floating_enis_get_the_primary_enis_groups_unless_the_flag_names_others() {
        let node = instance(&["sg-0node", "sg-0ssh"]);
        assert_eq!(wanted_groups(&[], &node).unwrap(), ["sg-0node", "sg-0ssh"]);
        assert_eq!(
            wanted_groups(&strings(&["sg-0vip", "sg-0vip", "sg-0ssh"]), &node).unwrap(),
            ["sg-0vip", "sg-0ssh"],
            "the flag wins, each group once"
        );
        let err = wanted_groups(&[], &instance(&[])).unwrap_err().to_string();
        assert!(err.contains("set --security-group-ids"), "{err}");
    }

    fn floating(id: &str, cluster: &str, groups: &[&str]) -> Eni {
        Eni {
            id: id.into(),
            subnet_id: "subnet-0a1b2c3d".into(),
            instance_id: Some("i-0123456789abcdef0".into()),
            device_index: Some(1),
            mac: None,
            primary_ip: None,
            secondary: Vec::new(),
            tags: floating_tags(cluster, "n1"),
            security_groups: strings(groups),
        }
    }

    #[tokio::test]
    async fn drifted_groups_are_corrected_only_on_this_clusters_floating_enis() {
        let cloud = crate::cloud::fake::FakeCloud::default();
        let wanted = strings(&["sg-0node", "sg-0ssh"]);
        let mut untagged = floating("eni-primary", "lab", &["sg-0default"]);
        untagged.tags.clear();
        *cloud.enis.lock().unwrap() = vec![
            floating("eni-drifted", "lab", &["sg-0default"]),
            floating("eni-same", "lab", &["sg-0ssh", "sg-0node"]),
            floating("eni-other-cluster", "other", &["sg-0default"]),
            untagged,
        ];
        let snapshot = cloud.enis.lock().unwrap().clone();
        for mut eni in snapshot {
            correct_groups(&cloud, "lab", &mut eni, &wanted)
                .await
                .unwrap();
        }
        let calls = cloud.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [("ModifyNetworkInterfaceAttribute", "eni-drifted".to_string())]
        );
        let groups = |id: &str| {
            let enis = cloud.enis.lock().unwrap();
            enis.iter()
                .find(|e| e.id == id)
                .unwrap()
                .security_groups
                .clone()
        };
        assert_eq!(groups("eni-drifted"), wanted);
        assert_eq!(groups("eni-other-cluster"), ["sg-0default"]);
        assert_eq!(groups("eni-primary"), ["sg-0default"]);
    }

    #[test]
    fn a_selected_node_gets_its_eni_before_it_is_ready_but_claims_only_when_fit() {
        let edge = json!({"nodeSelector": {"matchLabels": {"edge": "true"}}});
        let booting = view("False", json!({"edge": "true"}));
        assert!(selected(&booting, &fip(edge.clone())));
        assert!(node_fitness(&booting, &fip(edge.clone()).spec).is_err());
        assert!(!selected(&view("True", json!({})), &fip(edge)));
        assert!(selected(&view("True", json!({})), &fip(json!({}))));
    }

    #[test]
    fn only_floatingips_without_holder_and_pending_move_are_claimed() {
        let mut f = fip(json!({}));
        assert!(unclaimed(&f));
        f.status = Some(serde_json::from_value(json!({"pendingMove": {"to": "n2", "reason": "Initial", "since": "2026-01-01T00:00:00Z"}})).unwrap());
        assert!(!unclaimed(&f));
        f.status = Some(serde_json::from_value(json!({"holder": {"node": "n2", "instanceId": "i-2", "since": "2026-01-01T00:00:00Z"}})).unwrap());
        assert!(!unclaimed(&f));
        assert!(held_here(&f, "n2") && !held_here(&f, "n1"));
    }
}
