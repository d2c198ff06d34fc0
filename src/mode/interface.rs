//! Interface: the address is the primary private address of one ENI in `spec.subnetId`, kept
//! for this FloatingIP alone (named by `spec.networkInterfaceId`, or one of floatip's own,
//! tagged with the cluster and the FloatingIP), and the whole ENI moves: DetachNetworkInterface
//! from the old instance, then AttachNetworkInterface to the target at a free device index. The
//! ENI keeps its MAC and its address; it is attached to at most one instance at any time, since
//! EC2 refuses to attach an ENI still bound elsewhere and the attach waits for the detach.
//!
//! Slow by nature: EC2 answers both calls at once but shows the attachment `detaching` and
//! `attaching` for seconds after, and the node sees the interface only once it is attached.
//!
//! Refused before any mutating call: a target instance with every network interface slot taken
//! (DescribeInstanceTypes' maximum; [`Carrier::precheck`], before the move is claimed), and
//! (through [`AddressMode::usable`]) a named ENI of another subnet or VPC, with another primary
//! address, without the cluster's tag, or attached to an instance that is no node, and an ENI
//! floatip did not make that has the address.
//!
//! The ENI is made by `floatip attach` ([`ensure_eni`]) when the spec names none, and deleted
//! with its FloatingIP ([`Carrier::release`]); a named one is only detached.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{usable, AddressMode, Carrier, Held, Moved, Snapshot, Unusable};
use crate::api::FloatingIPSpec;
use crate::cloud::attachment::answers_detach;
use crate::cloud::{AddressMove, Attachment, AttachmentStatus, Cloud, CloudError, Eni, ErrorKind};
use crate::cloud::{TAG_CLUSTER, TAG_NODE};
use crate::nodes::{NodeView, Unfit};
use crate::status::Seat;

/// Tag on an ENI floatip made for one FloatingIP, naming it.
pub const TAG_FLOATINGIP: &str = "floatip.io/floatingip";

/// How long a move waits for EC2 to show the old attachment gone, and a read-back for the new
/// one `attached`. Generous: EC2 publishes no figure, and reports of whole-ENI failover run
/// from 20 s to over a minute.
pub const DETACH_WAIT: Duration = Duration::from_secs(120);
pub const ATTACH_WAIT: Duration = Duration::from_secs(120);

/// The Interface mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Interface;

fn subnet(spec: &FloatingIPSpec) -> &str {
    spec.subnet_id.as_deref().unwrap_or_default()
}

fn enis<'e>(spec: &FloatingIPSpec, ec2: &Snapshot<'e>) -> &'e [Eni] {
    ec2.enis
        .get(subnet(spec))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// One of floatip's own ENIs for a FloatingIP of `cluster` (not a node's floating ENI).
fn made_by_floatip(eni: &Eni, cluster: &str) -> bool {
    eni.tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
        && eni.tags.contains_key(TAG_FLOATINGIP)
        && !eni.tags.contains_key(TAG_NODE)
}

/// The FloatingIP's ENI as EC2 last described it: the named one, else the subnet's ENI whose
/// primary address is the address. None when the subnet has none.
fn own_eni<'e>(spec: &FloatingIPSpec, address: IpAddr, ec2: &Snapshot<'e>) -> Option<&'e Eni> {
    let enis = enis(spec, ec2);
    match &spec.network_interface_id {
        Some(id) => enis.iter().find(|e| &e.id == id),
        None => enis.iter().find(|e| e.primary_ip == Some(address)),
    }
}

/// Whether floatip may move the ENI: the one the spec names, or one it made.
fn manages(eni: &Eni, spec: &FloatingIPSpec, cluster: &str) -> bool {
    spec.network_interface_id.as_ref() == Some(&eni.id) || made_by_floatip(eni, cluster)
}

impl AddressMode for Interface {
    fn subnets(&self, spec: &FloatingIPSpec) -> Vec<String> {
        spec.subnet_id.iter().cloned().collect()
    }

    fn usable(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'_>,
    ) -> Result<(), Unusable> {
        let own = own_eni(spec, address, ec2);
        if let Some(id) = &spec.network_interface_id {
            let eni = own.ok_or_else(|| Unusable::InterfaceNotInSubnet {
                eni: id.clone(),
                subnet: subnet(spec).to_string(),
            })?;
            if eni.primary_ip != Some(address) {
                return Err(Unusable::InterfaceAddressMismatch {
                    eni: id.clone(),
                    has: eni.primary_ip.map_or("none".into(), |a| a.to_string()),
                    address,
                });
            }
            if eni.tags.get(TAG_CLUSTER).map(String::as_str) != Some(ec2.cluster) {
                return Err(Unusable::InterfaceUntagged {
                    eni: id.clone(),
                    cluster: ec2.cluster.to_string(),
                });
            }
        }
        if let Some(eni) = own {
            if !manages(eni, spec, ec2.cluster) {
                return Err(Unusable::InterfaceNotOurs {
                    address,
                    eni: eni.id.clone(),
                    owner: (eni.instance_id.as_ref())
                        .map(|i| format!(", attached to {i}"))
                        .unwrap_or_default(),
                });
            }
            // floatip's own ENI follows its node even once the node is gone; a named one on
            // an instance that is no node may be serving something else.
            let foreign = (eni.instance_id.as_ref()).filter(|i| !ec2.node_instances.contains(*i));
            if let (Some(instance), false) = (foreign, made_by_floatip(eni, ec2.cluster)) {
                return Err(Unusable::InterfaceOnForeignInstance {
                    eni: eni.id.clone(),
                    instance: instance.clone(),
                });
            }
        }
        // The address checks of every mode, but the FloatingIP's own ENI: its primary address
        // is the point here.
        if let Some(s) = ec2.subnets.get(subnet(spec)) {
            let others: Vec<Eni> = (enis(spec, ec2).iter())
                .filter(|e| Some(&e.id) != own.map(|o| &o.id))
                .cloned()
                .collect();
            usable::check(address, s, &others)?;
        }
        Ok(())
    }

    fn holding<'e>(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'e>,
    ) -> Vec<Held<'e>> {
        own_eni(spec, address, ec2)
            .filter(|e| e.instance_id.is_some())
            .map(|eni| Held {
                eni: Cow::Borrowed(eni),
                managed: manages(eni, spec, ec2.cluster),
                private_ip: None,
            })
            .into_iter()
            .collect()
    }

    fn seat(
        &self,
        spec: &FloatingIPSpec,
        node: &NodeView,
        ec2: &Snapshot<'_>,
    ) -> Result<Seat, Unfit> {
        let instance = node.instance_id.clone().ok_or(Unfit::NoInstance)?;
        let address = crate::api::parse_address(&spec.address).expect("validated");
        let eni = own_eni(spec, address, ec2).ok_or_else(|| {
            Unfit::NoInterface(format!(
                "EC2 shows no ENI in {} with primary address {address}: name one in spec.networkInterfaceId",
                subnet(spec)
            ))
        })?;
        Ok(Seat {
            node: node.name.clone(),
            instance_id: instance,
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
            private_ip: None,
        })
    }
}

impl<C: Cloud> Carrier<C> for Interface {
    fn move_to<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        _moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        Box::pin(move_eni(
            cloud,
            &to.eni,
            &to.instance_id,
            Instant::now() + DETACH_WAIT,
        ))
    }

    fn move_gated<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        _moves: &'a [AddressMove],
        leading: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        let by = Instant::now() + DETACH_WAIT;
        Box::pin(move_eni_gated(cloud, &to.eni, &to.instance_id, by, leading))
    }

    fn precheck<'a>(&'a self, cloud: &'a C, to: &'a Seat) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move { free_device_index(cloud, &to.instance_id).await.map(drop) })
    }

    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        _moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(verify(
            cloud,
            &to.eni,
            &to.instance_id,
            Instant::now() + ATTACH_WAIT,
        ))
    }

    fn release<'a>(
        &'a self,
        cloud: &'a C,
        spec: &'a FloatingIPSpec,
        eni: &'a str,
        _address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(release(cloud, spec, eni, Instant::now() + DETACH_WAIT))
    }
}

/// The tags of the ENI floatip makes for FloatingIP `name` of `cluster`.
pub fn tags(cluster: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    [(TAG_CLUSTER, cluster), (TAG_FLOATINGIP, name)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What [`ensure_eni`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// floatip's ENI with the address exists (or another node made it a moment ago).
    Exists,
    /// Made now.
    Made(String),
    /// The spec names its ENI, or an ENI floatip did not make has the address (the
    /// controller says so on the FloatingIP): nothing to make.
    NotOurs,
}

/// Makes FloatingIP `name`'s ENI when its spec names none and no ENI in its subnet has the
/// address: CreateNetworkInterface with the address as primary, tagged with the cluster and
/// the FloatingIP, filtered by `security_groups`. Several nodes may try at once: EC2 gives an
/// address to one ENI only, so all but one are refused (`InvalidIPAddress.InUse`), which is
/// read as made.
pub async fn ensure_eni<C: Cloud>(
    cloud: &C,
    spec: &FloatingIPSpec,
    name: &str,
    cluster: &str,
    security_groups: &[String],
) -> Result<Ensured, CloudError> {
    let address = crate::api::parse_address(&spec.address).expect("validated");
    if spec.network_interface_id.is_some() {
        return Ok(Ensured::NotOurs);
    }
    let enis = cloud.subnet_enis(subnet(spec)).await?;
    if let Some(e) = enis.iter().find(|e| e.primary_ip == Some(address)) {
        return Ok(match made_by_floatip(e, cluster) {
            true => Ensured::Exists,
            false => Ensured::NotOurs,
        });
    }
    let description = format!("floatip {cluster}: FloatingIP {name} (Interface mode)");
    let tags = tags(cluster, name);
    let made =
        cloud.create_address_eni(subnet(spec), address, &description, security_groups, &tags);
    match made.await {
        Ok(e) => Ok(Ensured::Made(e.id)),
        Err(e) if e.code == "InvalidIPAddress.InUse" => Ok(Ensured::Exists),
        Err(e) => Err(e),
    }
}

/// The FloatingIP is going: its ENI is detached and waited for until EC2 shows it free (the
/// finalizer goes only once the address is off every instance); one floatip made is then
/// deleted, one the spec names is left. An ENI already gone is no error.
async fn release<C: Cloud>(
    cloud: &C,
    spec: &FloatingIPSpec,
    eni: &str,
    by: Instant,
) -> Result<(), CloudError> {
    let gone = |e: &CloudError| e.code == "InvalidNetworkInterfaceID.NotFound";
    let now = match cloud.attachment(eni).await {
        Err(e) if gone(&e) => return Ok(()),
        other => other?,
    };
    if let Some(a) = now.filter(|a| a.status.bound()) {
        if a.status != AttachmentStatus::Detaching {
            detach(cloud, &a).await?;
        }
        let free = crate::retry::poll(crate::retry::ATTACHMENT_POLL, Some(by), || async {
            let a = cloud.attachment(eni).await?;
            Ok::<_, CloudError>(a.is_none_or(|a| !a.status.bound()).then_some(()))
        });
        if free.await?.is_none() {
            return Err(CloudError {
                action: "DetachNetworkInterface",
                code: "DetachNotDone".into(),
                message: format!(
                    "{eni} is still attached to {}; released once it is free",
                    a.instance_id
                ),
                kind: ErrorKind::Transient,
            });
        }
    }
    if spec.network_interface_id.as_deref() == Some(eni) {
        return Ok(());
    }
    let made = (cloud.enis(&[eni.to_string()]).await?.iter())
        .any(|e| e.id == eni && e.tags.contains_key(TAG_FLOATINGIP));
    if !made {
        return Ok(());
    }
    match cloud.delete_eni(eni).await {
        Err(e) if gone(&e) => Ok(()),
        other => other,
    }
}

/// DetachNetworkInterface, forced when the instance no longer answers one.
async fn detach<C: Cloud>(cloud: &C, a: &Attachment) -> Result<(), CloudError> {
    let state = cloud.instance_state(&a.instance_id).await?;
    cloud
        .detach_eni(&a.id, !answers_detach(state.as_deref()))
        .await
}

/// The lowest device index free on `instance` (network card 0; 0 is the primary ENI's), or a
/// refusal when the instance type's every interface slot is taken. Reads only.
pub async fn free_device_index<C: Cloud>(cloud: &C, instance: &str) -> Result<i32, CloudError> {
    let i = cloud.instance(instance).await?;
    let max = cloud.max_interfaces(&i.instance_type).await?;
    pick_device_index(&i.device_indexes, max).ok_or_else(|| CloudError {
        action: "AttachNetworkInterface",
        code: "NoFreeDeviceIndex".into(),
        message: format!(
            "instance {instance} ({}) has all {} of its network interfaces attached; floatip made no call: free one, or keep the FloatingIP off that node with spec.nodeSelector",
            i.instance_type,
            max.unwrap_or_default()
        ),
        kind: ErrorKind::Permanent,
    })
}

/// The lowest free index from 1, when fewer than `max` interfaces are attached (EC2 counts
/// interfaces, not indexes). Without a known maximum, EC2 is left to refuse.
pub fn pick_device_index(used: &[i32], max: Option<u32>) -> Option<i32> {
    if max.is_some_and(|m| used.len() >= m as usize) {
        return None;
    }
    (1..).find(|i| !used.contains(i))
}

/// Moves `eni` onto `instance`: nothing when it is there already; else the target's free
/// device index is found (refusing before any call when there is none), the ENI detached from
/// where it is and waited for until EC2 shows it free, then attached. Reports how long the
/// detach took and when the attach was answered.
pub async fn move_eni<C: Cloud>(
    cloud: &C,
    eni: &str,
    instance: &str,
    detach_by: Instant,
) -> Result<Moved, CloudError> {
    move_eni_gated(cloud, eni, instance, detach_by, &|| true).await
}

/// [`move_eni`], asking `leading` again before the attach: the detach takes seconds, and a
/// replica that lost its lease meanwhile must not attach (the next leader finishes the move
/// from the claim in status and the ENI EC2 shows free).
pub async fn move_eni_gated<C: Cloud>(
    cloud: &C,
    eni: &str,
    instance: &str,
    detach_by: Instant,
    leading: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Moved, CloudError> {
    let now = cloud.attachment(eni).await?;
    let staying = |a: &Attachment| a.on(instance) && a.status != AttachmentStatus::Detaching;
    if now.as_ref().is_some_and(staying) {
        return Ok(Moved::default());
    }
    let index = free_device_index(cloud, instance).await?;
    let mut moved = Moved::default();
    if let Some(a) = now.filter(|a| a.status.bound()) {
        let detaching = Instant::now();
        if a.status != AttachmentStatus::Detaching {
            detach(cloud, &a).await?;
        }
        let free = crate::retry::poll(crate::retry::ATTACHMENT_POLL, Some(detach_by), || async {
            let a = cloud.attachment(eni).await?;
            Ok::<_, CloudError>(a.is_none_or(|a| !a.status.bound()).then_some(()))
        });
        if free.await?.is_none() {
            return Err(CloudError {
                action: "DetachNetworkInterface",
                code: "DetachNotDone".into(),
                message: format!(
                    "{eni} is still bound to {} after {} s; not attaching it to {instance} before it is free",
                    a.instance_id,
                    DETACH_WAIT.as_secs()
                ),
                kind: ErrorKind::Transient,
            });
        }
        moved.detach_took = Some(detaching.elapsed());
    }
    if !leading() {
        return Err(CloudError {
            action: "AttachNetworkInterface",
            code: "NotLeading".into(),
            message: format!(
                "this replica stopped leading while {eni} was detached; it does not attach it to {instance}, the next leader does"
            ),
            kind: ErrorKind::Transient,
        });
    }
    cloud.attach_eni(eni, instance, index).await?;
    moved.attach_sent = Some(Instant::now());
    Ok(moved)
}

/// Reads the ENI back until EC2 shows it attached to `instance` (attaching counts as not yet).
pub async fn verify<C: Cloud>(
    cloud: &C,
    eni: &str,
    instance: &str,
    by: Instant,
) -> Result<(), CloudError> {
    let last = std::sync::Mutex::new(None);
    let found = crate::retry::poll(crate::retry::ATTACHMENT_POLL, Some(by), || async {
        let a = cloud.attachment(eni).await?;
        let done =
            (a.as_ref()).is_some_and(|a| a.on(instance) && a.status == AttachmentStatus::Attached);
        *last.lock().expect("not poisoned") = a;
        Ok::<_, CloudError>(done.then_some(()))
    })
    .await?;
    let last = last.into_inner().expect("not poisoned");
    found.ok_or_else(|| CloudError {
        action: "DescribeNetworkInterfaces",
        code: "MoveNotVisible".into(),
        message: format!(
            "after attaching {eni} to {instance}, EC2 shows {}",
            match &last {
                Some(a) => format!("it {:?} on {}", a.status, a.instance_id),
                None => "it detached".into(),
            }
        ),
        kind: ErrorKind::Transient,
    })
}

#[cfg(test)]
#[path = "interface_tests.rs"]
mod tests;
