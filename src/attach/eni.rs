//! The ENIs that take this node's addresses: a floating ENI per subnet (found or created,
//! its security groups corrected, attached at a free device index, its interface up and
//! addressed), or the instance's primary ENI for FloatingIPs that use it.
//!
//! EC2 gives a new ENI a free address of its subnet as its primary, and a FloatingIP's address
//! is free until a node holds it: when nodes attach at once, every floating ENI is created
//! before any claim. A floating ENI whose primary is a FloatingIP's address is never kept, as a
//! primary address never moves and the FloatingIP could never be held.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::agent::host::Host;
use crate::api::{FloatingIP, InterfaceChoice, Mode};
use crate::cloud::{floating_tags, same_security_groups, Cloud, CloudError, Eni, Instance};
use crate::retry;

use super::outcome::about_the_subnet;
use super::{dedicated, AttachArgs, AttachError, Summary};

/// The ENI that takes each subnet's addresses on this node.
pub(super) type EniBySubnet = HashMap<(String, InterfaceChoice), Eni>;

/// Prepares this node's floating ENI in each subnet a dedicated-interface FloatingIP of
/// `mine` names; none keeps an address of `floating` (every FloatingIP's) as its primary. A
/// subnet EC2 refuses for good is skipped (in `summary.skipped`); any other error fails attach.
pub(super) async fn prepare_dedicated<C: Cloud>(
    cloud: &C,
    host: &Host,
    args: &AttachArgs,
    instance_id: &str,
    mine: &[&FloatingIP],
    floating: &BTreeSet<IpAddr>,
    summary: &mut Summary,
) -> Result<EniBySubnet, AttachError> {
    let mut by_subnet = EniBySubnet::new();
    let mut subnets: BTreeSet<String> = mine
        .iter()
        .filter(|f| dedicated(f))
        .filter_map(|f| f.spec.subnet_id.clone())
        .collect();
    let routed = mine.iter().any(|f| routed(f));
    // A routed address may sit on any floating ENI of the node: one in the subnet of its
    // primary ENI (the node's own zone) when no other FloatingIP gives it one.
    if routed && subnets.is_empty() {
        subnets.extend(primary_subnet(cloud, instance_id).await?);
    }
    if subnets.is_empty() {
        return Ok(by_subnet);
    }
    let mut preparer = Preparer::new(cloud, args, instance_id, floating).await?;
    for subnet in subnets {
        match preparer.prepare(host, &subnet, summary).await {
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
    if routed {
        // Route tables lead the address to the ENI, whose source/dest check would drop it.
        for eni in by_subnet.values() {
            if cloud.source_dest_check_off(&eni.id).await? {
                tracing::info!(eni = %eni.id, "turned the floating ENI's source/dest check off for routed addresses");
            }
        }
    }
    Ok(by_subnet)
}

/// A RouteTable FloatingIP: its address reaches the node's floating ENI through route tables.
fn routed(f: &FloatingIP) -> bool {
    f.spec.mode == Mode::RouteTable
}

/// The subnet of the instance's primary ENI (device index 0).
async fn primary_subnet<C: Cloud>(
    cloud: &C,
    instance_id: &str,
) -> Result<Option<String>, AttachError> {
    let enis = cloud.instance_enis(&[instance_id.to_string()]).await?;
    Ok((enis.into_iter())
        .find(|e| e.instance_id.as_deref() == Some(instance_id) && e.device_index == Some(0))
        .map(|e| e.subnet_id))
}

/// Adds the instance's primary ENI in the subnet of each FloatingIP of `mine` that puts its
/// address on the primary interface.
pub(super) async fn add_primary_enis<C: Cloud>(
    cloud: &C,
    instance_id: &str,
    mine: &[&FloatingIP],
    by_subnet: &mut EniBySubnet,
) -> Result<(), AttachError> {
    for f in mine.iter().filter(|f| !dedicated(f)) {
        let Some(subnet) = f.spec.subnet_id.clone() else {
            continue;
        };
        let key = (subnet.clone(), InterfaceChoice::Primary);
        if by_subnet.contains_key(&key) {
            continue;
        }
        let primary =
            cloud.subnet_enis(&subnet).await?.into_iter().find(|e| {
                e.instance_id.as_deref() == Some(instance_id) && e.device_index == Some(0)
            });
        if let Some(eni) = primary {
            by_subnet.insert(key, eni);
        }
    }
    Ok(())
}

/// What preparing floating ENIs needs to know about this node, read from EC2 once.
struct Preparer<'a, C> {
    cloud: &'a C,
    args: &'a AttachArgs,
    /// Every FloatingIP's address: never a floating ENI's primary.
    floating: &'a BTreeSet<IpAddr>,
    instance: Instance,
    /// The security groups every floating ENI of this node gets.
    groups: Vec<String>,
    /// This node's floating ENIs of this cluster, in any subnet.
    tagged: Vec<Eni>,
}

impl<'a, C: Cloud> Preparer<'a, C> {
    async fn new(
        cloud: &'a C,
        args: &'a AttachArgs,
        instance_id: &str,
        floating: &'a BTreeSet<IpAddr>,
    ) -> Result<Self, AttachError> {
        let instance = cloud.instance(instance_id).await?;
        let groups = wanted_groups(&args.security_group_ids, &instance)?;
        let (cluster, me) = (&args.cluster_name, args.node_name.as_str());
        let tagged: Vec<Eni> = cloud
            .cluster_enis(cluster)
            .await?
            .into_iter()
            .filter(|e| e.is_floating_for(cluster) && e.node_tag() == Some(me))
            .collect();
        Ok(Self {
            cloud,
            args,
            floating,
            instance,
            groups,
            tagged,
        })
    }

    /// The subnet's floating ENI, attached, and the name of its interface, which is up and
    /// carries the ENI's own primary address.
    async fn prepare(
        &mut self,
        host: &Host,
        subnet: &str,
        summary: &mut Summary,
    ) -> Result<(Eni, String), AttachError> {
        let eni = self.ensure_eni(subnet, summary).await?;
        let cidr = self.cloud.subnet(subnet).await?.cidr_v4;
        let address = match (eni.primary_ip, cidr.as_deref().and_then(prefix_of)) {
            (Some(IpAddr::V4(ip)), Some(prefix)) => Some((ip, prefix)),
            (Some(IpAddr::V4(ip)), None) => Some((ip, 32)),
            _ => None,
        };
        let mac = eni.mac.clone().unwrap_or_default();
        let link = host
            .prepare(&mac, address, self.args.timeout)
            .await
            .map_err(|error| AttachError::Interface {
                eni: eni.id.clone(),
                error,
            })?;
        Ok((eni, link.name))
    }

    /// This node's floating ENI in `subnet`: the one it already has (attached, or detached
    /// and attached again), its groups corrected if they drifted, else a new one, tagged and
    /// attached at the lowest free device index.
    async fn ensure_eni(
        &mut self,
        subnet: &str,
        summary: &mut Summary,
    ) -> Result<Eni, AttachError> {
        self.forget_spoiled(subnet).await;
        let in_subnet: Vec<&Eni> = self
            .tagged
            .iter()
            .filter(|e| e.subnet_id == subnet)
            .collect();
        let attached_here = |e: &&Eni| e.instance_id.as_deref() == Some(self.instance.id.as_str());
        let found = (in_subnet.iter().copied().find(attached_here))
            .or_else(|| in_subnet.iter().copied().find(|e| e.instance_id.is_none()));
        let eni = match (found, in_subnet.first()) {
            (Some(e), _) => {
                let mut eni = e.clone();
                correct_groups(self.cloud, &self.args.cluster_name, &mut eni, &self.groups).await?;
                if eni.instance_id.is_some() {
                    return Ok(eni);
                }
                eni
            }
            (None, Some(e)) => {
                return Err(AttachError::AttachedElsewhere {
                    eni: e.id.clone(),
                    node: self.args.node_name.clone(),
                    other: e.instance_id.clone().unwrap_or_default(),
                    instance: self.instance.id.clone(),
                })
            }
            (None, None) => self.create_eni(subnet, summary).await?,
        };
        self.attach_at_free_slot(eni).await
    }

    /// Deletes this node's detached floating ENIs in `subnet` whose primary is a FloatingIP's
    /// address, rather than use them: left by a run that stopped before it could delete them
    /// ([`Self::create_eni`]).
    async fn forget_spoiled(&mut self, subnet: &str) {
        let spoiled: Vec<String> = (self.tagged.iter())
            .filter(|e| e.subnet_id == subnet && e.instance_id.is_none())
            .filter(|e| self.takes_floating(e).is_some())
            .map(|e| e.id.clone())
            .collect();
        self.tagged.retain(|e| !spoiled.contains(&e.id));
        self.delete_spoiled(&spoiled).await;
    }

    /// A new floating ENI in `subnet`. One that EC2 gave a FloatingIP's address as its primary
    /// is kept while another is created, so that EC2 cannot give it that address again, and
    /// then deleted. Each one kept holds another floating address, so one of at most
    /// `floating.len() + 1` ENIs has an address of its own (or EC2 says the subnet is full).
    async fn create_eni(&self, subnet: &str, summary: &mut Summary) -> Result<Eni, AttachError> {
        let mut spoiled = Vec::new();
        let created = loop {
            let e = match self.create_one(subnet).await {
                Ok(e) => e,
                Err(error) => break Err(error),
            };
            let Some(address) = self.takes_floating(&e) else {
                break Ok(e);
            };
            tracing::warn!(eni = %e.id, %address, "EC2 gave the new floating ENI a FloatingIP's address as its primary; creating another, then deleting this one");
            spoiled.push(e.id);
            if spoiled.len() > self.floating.len() {
                let subnet = subnet.to_string();
                let tries = spoiled.len();
                break Err(AttachError::FloatingPrimary { subnet, tries });
            }
        };
        self.delete_spoiled(&spoiled).await;
        let e = created?;
        tracing::info!(eni = %e.id, subnet, security_groups = %self.groups.join(","), "created the floating ENI");
        summary.created.push(e.id.clone());
        Ok(e)
    }

    async fn create_one(&self, subnet: &str) -> Result<Eni, AttachError> {
        let (cluster, node) = (&self.args.cluster_name, &self.args.node_name);
        let description = format!("floatip floating ENI of node {node} (cluster {cluster})");
        let tags = floating_tags(cluster, node);
        let created = (self.cloud)
            .create_eni(subnet, &description, &self.groups, &tags)
            .await;
        Ok(created?)
    }

    /// The FloatingIP's address that is `eni`'s primary, if any.
    fn takes_floating(&self, eni: &Eni) -> Option<IpAddr> {
        eni.primary_ip.filter(|a| self.floating.contains(a))
    }

    /// Deletes this node's detached floating ENIs whose primary is a FloatingIP's address. Best
    /// effort: one left is deleted by the next attach on this node, or by the controller once
    /// the node is gone.
    async fn delete_spoiled(&self, enis: &[String]) {
        for eni in enis {
            match self.cloud.delete_eni(eni).await {
                Ok(()) => {
                    tracing::info!(%eni, "deleted the floating ENI that had a FloatingIP's address as its primary")
                }
                Err(error) => {
                    tracing::warn!(%eni, %error, "could not delete the floating ENI that has a FloatingIP's address as its primary; the next attach on this node tries again")
                }
            }
        }
    }

    /// Attaches `eni` at the lowest free device index and waits until EC2 shows it attached.
    async fn attach_at_free_slot(&mut self, eni: Eni) -> Result<Eni, AttachError> {
        let instance = &mut self.instance;
        let index = (1..)
            .find(|i| !instance.device_indexes.contains(i))
            .expect("some index is free");
        let max = match self.cloud.max_interfaces(&instance.instance_type).await {
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
        self.cloud.attach_eni(&eni.id, &instance.id, index).await?;
        instance.device_indexes.push(index);
        tracing::info!(eni = %eni.id, index, "attaching the floating ENI");
        let timeout = self.args.timeout;
        let (cloud, id, here) = (self.cloud, &eni.id, instance.id.as_str());
        let deadline = Instant::now() + timeout;
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
            timeout,
        })
    }
}

fn prefix_of(cidr: &str) -> Option<u8> {
    cidr.split_once('/')?.1.parse().ok()
}

/// Makes the ENI of each Interface-mode FloatingIP of `fips` that selects this node, names no
/// ENI and has none yet ([`crate::mode::interface::ensure_eni`]), with the node's floating
/// ENI's security groups. A FloatingIP EC2 refuses for good is logged and left to the
/// controller, which says what it lacks; any other error fails attach, to be retried.
pub(super) async fn make_interface_enis<C: Cloud>(
    cloud: &C,
    args: &AttachArgs,
    instance_id: &str,
    fips: &[&FloatingIP],
) -> Result<Vec<String>, AttachError> {
    use crate::mode::interface::{ensure_eni, Ensured};
    let wanted: Vec<&&FloatingIP> = (fips.iter())
        .filter(|f| f.spec.network_interface_id.is_none())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let instance = cloud.instance(instance_id).await?;
    let groups = wanted_groups(&args.security_group_ids, &instance)?;
    let mut made = Vec::new();
    for f in wanted {
        let name = f.metadata.name.as_deref().unwrap_or_default();
        match ensure_eni(cloud, &f.spec, name, &args.cluster_name, &groups).await {
            Ok(Ensured::Made(eni)) => {
                tracing::info!(floatingip = name, %eni, "created the FloatingIP's ENI (Interface mode)");
                made.push(eni);
            }
            Ok(_) => {}
            Err(e) if !e.retryable() => {
                tracing::warn!(floatingip = name, error = %e, "cannot create the FloatingIP's ENI; the controller reports what it lacks");
            }
            Err(e) => return Err(AttachError::Cloud(e)),
        }
    }
    Ok(made)
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

#[cfg(test)]
mod tests {
    use super::*;

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

    const SUBNET: &str = "subnet-0a1b2c3d";
    const HERE: &str = "i-0123456789abcdef0";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn args() -> AttachArgs {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "floatip",
            "attach",
            "--node-name",
            "n1",
            "--cluster-name",
            "lab",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Attach(args) => *args,
            other => panic!("not attach: {other:?}"),
        }
    }

    /// A cloud with this node's instance, handing out `primaries` to new ENIs in order.
    fn cloud_giving(primaries: &[&str]) -> crate::cloud::fake::FakeCloud {
        let cloud = crate::cloud::fake::FakeCloud::default();
        *cloud.instances.lock().unwrap() = vec![instance(&["sg-0node"])];
        *cloud.primaries.lock().unwrap() = primaries.iter().map(|p| ip(p)).collect();
        cloud
    }

    fn calls(cloud: &crate::cloud::fake::FakeCloud) -> Vec<(&'static str, String)> {
        cloud.calls.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_new_eni_given_a_floating_address_is_deleted_once_another_is_made() {
        let cloud = cloud_giving(&["10.0.8.100", "10.0.8.50"]);
        let (args, floating) = (args(), BTreeSet::from([ip("10.0.8.100")]));
        let mut p = Preparer::new(&cloud, &args, HERE, &floating).await.unwrap();
        let mut summary = Summary::default();
        let eni = p.ensure_eni(SUBNET, &mut summary).await.unwrap();
        assert_eq!(eni.primary_ip, Some(ip("10.0.8.50")));
        assert_eq!(eni.instance_id.as_deref(), Some(HERE));
        assert_eq!(
            calls(&cloud),
            [
                ("CreateNetworkInterface", "eni-fake0".to_string()),
                // Kept until then, so that EC2 cannot give the address again.
                ("CreateNetworkInterface", "eni-fake1".to_string()),
                ("DeleteNetworkInterface", "eni-fake0".to_string()),
                ("AttachNetworkInterface", "eni-fake1".to_string()),
            ]
        );
        assert_eq!(summary.created, ["eni-fake1"]);
    }

    #[tokio::test]
    async fn attach_gives_up_after_one_new_eni_more_than_there_are_floating_addresses() {
        let cloud = cloud_giving(&["10.0.8.100", "10.0.8.100"]);
        let (args, floating) = (args(), BTreeSet::from([ip("10.0.8.100")]));
        let mut p = Preparer::new(&cloud, &args, HERE, &floating).await.unwrap();
        let mut summary = Summary::default();
        let err = p.ensure_eni(SUBNET, &mut summary).await.unwrap_err();
        assert!(
            matches!(&err, AttachError::FloatingPrimary { tries: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("subnet CIDR reservation"), "{err}");
        let deleted: Vec<String> = (calls(&cloud).into_iter())
            .filter(|(action, _)| *action == "DeleteNetworkInterface")
            .map(|(_, eni)| eni)
            .collect();
        assert_eq!(deleted, ["eni-fake0", "eni-fake1"]);
        assert!(cloud.enis.lock().unwrap().is_empty());
        assert!(summary.created.is_empty());
    }

    #[tokio::test]
    async fn a_detached_floating_eni_with_a_floating_address_is_deleted_not_reused() {
        let cloud = cloud_giving(&["10.0.8.50"]);
        let mut left = floating("eni-left", "lab", &["sg-0node"]);
        (left.instance_id, left.device_index) = (None, None);
        left.primary_ip = Some(ip("10.0.8.100"));
        *cloud.enis.lock().unwrap() = vec![left];
        let (args, floating) = (args(), BTreeSet::from([ip("10.0.8.100")]));
        let mut p = Preparer::new(&cloud, &args, HERE, &floating).await.unwrap();
        let mut summary = Summary::default();
        let eni = p.ensure_eni(SUBNET, &mut summary).await.unwrap();
        assert_eq!(eni.primary_ip, Some(ip("10.0.8.50")));
        assert_eq!(
            calls(&cloud),
            [
                ("DeleteNetworkInterface", "eni-left".to_string()),
                ("CreateNetworkInterface", "eni-fake0".to_string()),
                ("AttachNetworkInterface", "eni-fake0".to_string()),
            ]
        );
    }
}
