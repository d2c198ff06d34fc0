//! `floatip attach`: the agent pod's init container. Prepares the node (its floating ENI found
//! or created, attached, up, addressed), claims the addresses nobody holds yet that select this
//! node, and configures every address the node holds, so a rebooted node serves before the
//! agent starts. One clear line and a non-zero exit when something is missing.
//!
//! - [`eni`]: the ENI of each subnet (floating ENIs prepared, or the primary ENI).
//! - [`claim`]: race-free claims of unheld addresses.
//! - [`report`]: the AttachFailed condition on FloatingIPs whose subnet could not be prepared.
//! - [`outcome`]: the error and the summary line.

mod claim;
mod eni;
mod outcome;
mod report;

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::agent::host::Host;
use crate::agent::want::held_by;
use crate::agent::HostArgs;
use crate::api::{validate_spec, FloatingIP, InterfaceChoice, Mode};
use crate::cli::parse_duration;
use crate::cloud::aws::Ec2;
use crate::cloud::{parse_security_group_id, Cloud};
use crate::nodes::{node_fitness, NodeView, Unfit};

pub use outcome::{AttachError, Summary};

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

/// Whether attach prepares this node's ENI for the FloatingIP: SecondaryIP, ElasticIP in
/// a subnet (whose floating ENI's primary address the Elastic IP is associated with; the
/// controller makes the first association), and RouteTable when this version carries it out
/// (a floating ENI with its source/dest check off; the controller makes the first routes).
fn prepared_mode(f: &FloatingIP) -> bool {
    claimable_mode(f)
        || (f.spec.mode == Mode::ElasticIP && f.spec.subnet_id.is_some())
        || (f.spec.mode == Mode::RouteTable && crate::mode::port(f.spec.mode).is_some())
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

/// Prepares this node and claims and configures its addresses; see the module doc.
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
    let mine = mine(&fips, &view, me);
    // A FloatingIP in Conflict is left alone, as the controller leaves it.
    let owners = crate::api::address_owners(&fips);
    let claimable: Vec<&FloatingIP> = mine
        .iter()
        .copied()
        .filter(|f| crate::api::owns_its_address(&owners, f))
        .collect();

    let floating = fips
        .iter()
        .filter_map(|f| crate::api::parse_address(&f.spec.address))
        .collect();

    let mut summary = Summary::default();
    let mut by_subnet = eni::prepare_dedicated(
        cloud,
        host,
        args,
        &instance_id,
        &mine,
        &floating,
        &mut summary,
    )
    .await?;
    report::report_subnets(&fips_api, &mine, me, &summary).await;
    // Every subnet refused: nothing on this node works, so fail as before (with the
    // FloatingIPs told why) rather than start an agent that can hold nothing.
    let prepared = by_subnet
        .keys()
        .any(|(_, i)| *i == InterfaceChoice::Dedicated);
    if let (false, Some((_, e))) = (prepared, summary.skipped.first()) {
        return Err(AttachError::Cloud(e.clone()));
    }
    eni::add_primary_enis(cloud, &instance_id, &mine, &mut by_subnet).await?;
    // Interface mode: the FloatingIP's own ENI, which the controller then attaches.
    let whole: Vec<&FloatingIP> = (fips.iter())
        .filter(|f| f.spec.mode == Mode::Interface && f.metadata.deletion_timestamp.is_none())
        .filter(|f| validate_spec(&f.spec).is_ok() && selected(&view, f))
        .filter(|f| crate::api::owns_its_address(&owners, f))
        .collect();
    eni::make_interface_enis(cloud, args, &instance_id, &whole).await?;
    summary.claimed = claim::claim_unheld(
        &fips_api,
        cloud,
        &view,
        &instance_id,
        &claimable,
        &by_subnet,
    )
    .await?;
    summary.configured = configure_held(&fips_api, host, me).await?;
    Ok(summary)
}

/// The FloatingIPs attach handles on this node: live, valid, of a mode it claims, and held
/// here or selecting this node.
fn mine<'a>(fips: &'a [FloatingIP], view: &NodeView, me: &str) -> Vec<&'a FloatingIP> {
    fips.iter()
        .filter(|f| f.metadata.deletion_timestamp.is_none() && validate_spec(&f.spec).is_ok())
        .filter(|f| prepared_mode(f))
        .filter(|f| held_here(f, me) || selected(view, f))
        .collect()
}

/// Puts every address this node holds now (claims included) on its interface; fails when
/// one cannot be configured.
async fn configure_held(
    api: &Api<FloatingIP>,
    host: &Host,
    me: &str,
) -> Result<Vec<IpAddr>, AttachError> {
    let fips = api.list(&ListParams::default()).await?.items;
    let vips = held_by(&fips, me);
    let report = host.apply(vips.clone()).await?;
    if !report.problems.is_empty() {
        return Err(AttachError::Unconfigured(report.problems.join("; ")));
    }
    Ok(vips.iter().map(|v| v.address).collect())
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
