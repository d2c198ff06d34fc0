//! An in-memory cloud for unit tests: ENIs in a map, every call recorded.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use super::{
    AddressMove, Allocation, Association, Attachment, AttachmentStatus, Cloud, CloudError, Eni,
    ErrorKind, Instance, Route, RouteTable, RouteTarget, Subnet,
};

#[derive(Default)]
pub struct FakeCloud {
    pub enis: Mutex<Vec<Eni>>,
    /// The primary addresses EC2 gives the next ENIs created, in order; none once used up.
    pub primaries: Mutex<VecDeque<IpAddr>>,
    /// (action, ENI) for every mutating call.
    pub calls: Mutex<Vec<(&'static str, String)>>,
    /// When set, every mutating call fails with it.
    pub fail_with: Mutex<Option<CloudError>>,
    /// (ENI, address): reads show the address on that ENI too, as EC2 can right after a
    /// move (its reads are eventually consistent).
    pub also_shows: Mutex<Option<(String, IpAddr)>>,
    /// Reads of ENIs by id (the read-back of a move).
    pub enis_read: std::sync::atomic::AtomicUsize,
    pub instances: Mutex<Vec<Instance>>,
    pub subnets: Mutex<Vec<Subnet>>,
    /// Interface limits by instance type.
    pub max_interfaces: Mutex<BTreeMap<String, u32>>,
    /// Elastic IPs. An association follows its private address when `assign` moves it and
    /// ends when `unassign` takes the address off, as on AWS.
    pub allocations: Mutex<Vec<Allocation>>,
    /// Zone -> network border group. `associate` refuses an ENI whose subnet's zone is in
    /// another group than the allocation's; a subnet without a zone here is not checked.
    pub border_groups: Mutex<BTreeMap<String, String>>,
    /// Route tables. `route_to` refuses an ENI of another VPC than the table's, as EC2 does
    /// (an ENI's VPC is `vpc_of_subnet` of its subnet; unknown subnets are not checked).
    pub route_tables: Mutex<Vec<RouteTable>>,
    /// Subnet -> VPC, for the route checks.
    pub vpc_of_subnet: Mutex<BTreeMap<String, String>>,
    /// ENIs whose source/dest check is off.
    pub source_dest_off: Mutex<std::collections::BTreeSet<String>>,
    /// Instance state names by instance; an instance of `instances` missing here is running.
    pub instance_states: Mutex<BTreeMap<String, String>>,
    /// The Force flag of every DetachNetworkInterface, in order.
    pub detach_forced: Mutex<Vec<bool>>,
}

/// The attachment ID the fake gives `eni`'s attachment.
fn attachment_id(eni: &str) -> String {
    format!("eni-attach-{}", eni.trim_start_matches("eni-"))
}

fn not_found(action: &'static str, code: &str, what: &str) -> CloudError {
    CloudError {
        action,
        code: code.into(),
        message: format!("{what} does not exist"),
        kind: ErrorKind::Permanent,
    }
}

/// AssociateAddress refusing for good.
fn refused(code: &str, message: String) -> CloudError {
    CloudError {
        action: "AssociateAddress",
        code: code.into(),
        message,
        kind: ErrorKind::Permanent,
    }
}

impl FakeCloud {
    /// The ENI an association names, which must exist and have the private address.
    fn association_target(&self, eni: &str, private_ip: IpAddr) -> Result<Eni, CloudError> {
        let target = (self.enis.lock().unwrap().iter())
            .find(|e| e.id == eni)
            .cloned()
            .ok_or_else(|| {
                not_found(
                    "AssociateAddress",
                    "InvalidNetworkInterfaceID.NotFound",
                    eni,
                )
            })?;
        if target.primary_ip != Some(private_ip) && !target.holds(private_ip) {
            let message = format!("{private_ip} is not an address of {eni}");
            return Err(refused("InvalidParameterValue", message));
        }
        Ok(target)
    }

    pub fn holder_of(&self, address: IpAddr) -> Vec<String> {
        self.enis
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.holds(address))
            .map(|e| e.id.clone())
            .collect()
    }

    /// The association bound to `private_ip` on `eni`, wherever it is in `allocations`.
    fn bound_to<'a>(
        allocations: &'a mut [Allocation],
        eni: &'a str,
        private_ip: IpAddr,
    ) -> impl Iterator<Item = &'a mut Association> + 'a {
        allocations
            .iter_mut()
            .filter_map(|a| a.association.as_mut())
            .filter(move |b| b.eni.as_deref() == Some(eni) && b.private_ip == Some(private_ip))
    }

    /// The network border group of the zone `eni`'s subnet is in, when the fake knows it.
    fn border_group_of(&self, eni: &Eni) -> Option<String> {
        let subnets = self.subnets.lock().unwrap();
        let zone = subnets
            .iter()
            .find(|s| s.id == eni.subnet_id)?
            .zone
            .clone()?;
        self.border_groups.lock().unwrap().get(&zone).cloned()
    }

    fn mutate(&self, action: &'static str, eni: &str) -> Result<(), CloudError> {
        self.calls.lock().unwrap().push((action, eni.to_string()));
        match self.fail_with.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Cloud for FakeCloud {
    async fn subnet_enis(&self, subnet: &str) -> Result<Vec<Eni>, CloudError> {
        let enis = self.enis.lock().unwrap();
        Ok(enis
            .iter()
            .filter(|e| e.subnet_id == subnet)
            .cloned()
            .collect())
    }

    async fn enis(&self, ids: &[String]) -> Result<Vec<Eni>, CloudError> {
        (self.enis_read).fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut enis: Vec<Eni> = self.enis.lock().unwrap().clone();
        if let Some((id, address)) = self.also_shows.lock().unwrap().clone() {
            let shown = enis.iter_mut().filter(|e| e.id == id);
            shown.for_each(|e| e.secondary.push(address));
        }
        Ok(enis.into_iter().filter(|e| ids.contains(&e.id)).collect())
    }

    async fn assign(&self, eni: &str, moves: &[AddressMove]) -> Result<(), CloudError> {
        self.mutate("Assign", eni)?;
        let mut enis = self.enis.lock().unwrap();
        // (ENI, address) pairs that lose an address: whatever EC2 holds, not what the caller
        // believed in `from_eni`.
        let mut taken = Vec::new();
        for m in moves {
            for e in enis
                .iter_mut()
                .filter(|e| e.id != eni && e.holds(m.address))
            {
                e.secondary.retain(|a| *a != m.address);
                taken.push((e.id.clone(), m.address));
            }
        }
        let Some(target) = enis.iter_mut().find(|e| e.id == eni) else {
            return Ok(());
        };
        let new = moves
            .iter()
            .map(|m| m.address)
            .filter(|a| !target.holds(*a));
        target.secondary.extend(new.collect::<Vec<_>>());
        // An Elastic IP bound to a moved secondary address moves along with it.
        let instance = target.instance_id.clone();
        let mut allocations = self.allocations.lock().unwrap();
        for (from, address) in &taken {
            for b in Self::bound_to(&mut allocations, from, *address) {
                b.eni = Some(eni.to_string());
                b.instance_id = instance.clone();
            }
        }
        Ok(())
    }

    async fn unassign(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        self.mutate("Unassign", eni)?;
        let mut enis = self.enis.lock().unwrap();
        if let Some(e) = enis.iter_mut().find(|e| e.id == eni) {
            e.secondary.retain(|a| !addresses.contains(a));
        }
        // An address taken off its ENI loses its Elastic IP.
        for a in self.allocations.lock().unwrap().iter_mut() {
            let bound = a.association.as_ref().is_some_and(|b| {
                b.eni.as_deref() == Some(eni)
                    && b.private_ip.is_some_and(|p| addresses.contains(&p))
            });
            if bound {
                a.association = None;
            }
        }
        Ok(())
    }

    async fn assign_unused(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        self.mutate("AssignUnused", eni)?;
        let mut enis = self.enis.lock().unwrap();
        if let Some(a) = addresses.iter().find(|a| enis.iter().any(|e| e.holds(**a))) {
            return Err(CloudError {
                action: "AssignPrivateIpAddresses",
                code: "PrivateIpAddressInUse".into(),
                message: format!("{a} is in use"),
                kind: ErrorKind::Permanent,
            });
        }
        let target = enis.iter_mut().find(|e| e.id == eni).ok_or_else(|| {
            not_found(
                "AssignPrivateIpAddresses",
                "InvalidNetworkInterfaceID.NotFound",
                eni,
            )
        })?;
        target.secondary.extend_from_slice(addresses);
        Ok(())
    }

    async fn instance_enis(&self, instances: &[String]) -> Result<Vec<Eni>, CloudError> {
        let enis = self.enis.lock().unwrap();
        Ok(enis
            .iter()
            .filter(|e| {
                e.instance_id
                    .as_ref()
                    .is_some_and(|i| instances.contains(i))
            })
            .cloned()
            .collect())
    }

    async fn cluster_enis(&self, cluster: &str) -> Result<Vec<Eni>, CloudError> {
        let enis = self.enis.lock().unwrap();
        Ok(enis
            .iter()
            .filter(|e| e.tags.get(super::TAG_CLUSTER).map(String::as_str) == Some(cluster))
            .cloned()
            .collect())
    }

    async fn instance(&self, id: &str) -> Result<Instance, CloudError> {
        self.instances
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| not_found("DescribeInstances", "InvalidInstanceID.NotFound", id))
    }

    async fn max_interfaces(&self, instance_type: &str) -> Result<Option<u32>, CloudError> {
        Ok(self
            .max_interfaces
            .lock()
            .unwrap()
            .get(instance_type)
            .copied())
    }

    async fn subnet(&self, id: &str) -> Result<Subnet, CloudError> {
        self.subnets
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| not_found("DescribeSubnets", "InvalidSubnetID.NotFound", id))
    }

    async fn create_eni(
        &self,
        subnet: &str,
        _description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Eni, CloudError> {
        let mut enis = self.enis.lock().unwrap();
        let id = format!("eni-fake{}", enis.len());
        self.mutate("CreateNetworkInterface", &id)?;
        let eni = Eni {
            id,
            subnet_id: subnet.into(),
            instance_id: None,
            device_index: None,
            mac: Some(format!("02:00:00:00:00:{:02x}", enis.len())),
            primary_ip: self.primaries.lock().unwrap().pop_front(),
            secondary: Vec::new(),
            tags: tags.clone(),
            security_groups: security_groups.to_vec(),
        };
        enis.push(eni.clone());
        Ok(eni)
    }

    async fn set_security_groups(
        &self,
        eni: &str,
        security_groups: &[String],
    ) -> Result<(), CloudError> {
        self.mutate("ModifyNetworkInterfaceAttribute", eni)?;
        let mut enis = self.enis.lock().unwrap();
        let e = enis.iter_mut().find(|e| e.id == eni).ok_or_else(|| {
            not_found(
                "ModifyNetworkInterfaceAttribute",
                "InvalidNetworkInterfaceID.NotFound",
                eni,
            )
        })?;
        e.security_groups = security_groups.to_vec();
        Ok(())
    }

    async fn attach_eni(
        &self,
        eni: &str,
        instance: &str,
        device_index: i32,
    ) -> Result<(), CloudError> {
        self.mutate("AttachNetworkInterface", eni)?;
        let mut enis = self.enis.lock().unwrap();
        let e = enis.iter_mut().find(|e| e.id == eni).ok_or_else(|| {
            not_found(
                "AttachNetworkInterface",
                "InvalidNetworkInterfaceID.NotFound",
                eni,
            )
        })?;
        e.instance_id = Some(instance.into());
        e.device_index = Some(device_index);
        if let Some(i) = self
            .instances
            .lock()
            .unwrap()
            .iter_mut()
            .find(|i| i.id == instance)
        {
            i.device_indexes.push(device_index);
        }
        Ok(())
    }

    async fn attachment(&self, eni: &str) -> Result<Option<Attachment>, CloudError> {
        let enis = self.enis.lock().unwrap();
        let e = (enis.iter().find(|e| e.id == eni)).ok_or_else(|| {
            not_found(
                "DescribeNetworkInterfaces",
                "InvalidNetworkInterfaceID.NotFound",
                eni,
            )
        })?;
        Ok(e.instance_id.as_ref().map(|i| Attachment {
            id: attachment_id(eni),
            instance_id: i.clone(),
            device_index: e.device_index,
            status: AttachmentStatus::Attached,
        }))
    }

    async fn detach_eni(&self, attachment: &str, force: bool) -> Result<(), CloudError> {
        let eni = (self.enis.lock().unwrap().iter())
            .find(|e| e.instance_id.is_some() && attachment_id(&e.id) == attachment)
            .map(|e| e.id.clone())
            .ok_or_else(|| {
                let code = "InvalidAttachmentID.NotFound";
                not_found("DetachNetworkInterface", code, attachment)
            })?;
        self.mutate("DetachNetworkInterface", &eni)?;
        self.detach_forced.lock().unwrap().push(force);
        let mut enis = self.enis.lock().unwrap();
        let e = enis.iter_mut().find(|e| e.id == eni).expect("found above");
        let (instance, index) = (e.instance_id.take(), e.device_index.take());
        let mut instances = self.instances.lock().unwrap();
        if let Some(i) = instances
            .iter_mut()
            .find(|i| Some(&i.id) == instance.as_ref())
        {
            i.device_indexes.retain(|d| Some(*d) != index);
        }
        Ok(())
    }

    async fn create_address_eni(
        &self,
        subnet: &str,
        address: IpAddr,
        description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Eni, CloudError> {
        let taken = (self.enis.lock().unwrap().iter())
            .any(|e| e.primary_ip == Some(address) || e.holds(address));
        if taken {
            return Err(CloudError {
                action: "CreateNetworkInterface",
                code: "InvalidIPAddress.InUse".into(),
                message: format!("{address} is in use"),
                kind: ErrorKind::Permanent,
            });
        }
        let eni = self
            .create_eni(subnet, description, security_groups, tags)
            .await?;
        let mut enis = self.enis.lock().unwrap();
        let e = enis.iter_mut().find(|e| e.id == eni.id).expect("just made");
        e.primary_ip = Some(address);
        Ok(e.clone())
    }

    async fn instance_state(&self, id: &str) -> Result<Option<String>, CloudError> {
        if let Some(state) = self.instance_states.lock().unwrap().get(id) {
            return Ok(Some(state.clone()));
        }
        let known = self.instances.lock().unwrap().iter().any(|i| i.id == id);
        Ok(known.then(|| "running".to_string()))
    }

    async fn delete_eni(&self, eni: &str) -> Result<(), CloudError> {
        self.mutate("DeleteNetworkInterface", eni)?;
        self.enis.lock().unwrap().retain(|e| e.id != eni);
        Ok(())
    }

    async fn allocations(&self, ids: &[String]) -> Result<Vec<Allocation>, CloudError> {
        let allocations = self.allocations.lock().unwrap();
        Ok(allocations
            .iter()
            .filter(|a| ids.contains(&a.allocation_id))
            .cloned()
            .collect())
    }

    async fn associate(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: IpAddr,
        allow_reassociation: bool,
    ) -> Result<(), CloudError> {
        self.mutate("AssociateAddress", eni)?;
        let target = self.association_target(eni, private_ip)?;
        let eni_group = self.border_group_of(&target);
        let mut allocations = self.allocations.lock().unwrap();
        let index = allocations
            .iter()
            .position(|a| a.allocation_id == allocation_id)
            .ok_or_else(|| {
                not_found(
                    "AssociateAddress",
                    "InvalidAllocationID.NotFound",
                    allocation_id,
                )
            })?;
        let wanted = &allocations[index];
        if let (Some(theirs), Some(ours)) = (&wanted.network_border_group, &eni_group) {
            if theirs != ours {
                let message = format!("{allocation_id} is in {theirs}, {eni} in {ours}");
                return Err(refused("InvalidParameterCombination", message));
            }
        }
        // Bound elsewhere, or another allocation bound here: both need reassociation.
        let elsewhere = wanted.association.is_some() && !wanted.is_bound_to(eni, private_ip);
        let occupied = allocations
            .iter()
            .any(|a| a.allocation_id != allocation_id && a.is_bound_to(eni, private_ip));
        if (elsewhere || occupied) && !allow_reassociation {
            let message = format!("{allocation_id} or {eni}/{private_ip} is already associated");
            return Err(refused("Resource.AlreadyAssociated", message));
        }
        for other in allocations.iter_mut() {
            if other.allocation_id != allocation_id && other.is_bound_to(eni, private_ip) {
                other.association = None;
            }
        }
        let calls = self.calls.lock().unwrap().len();
        allocations[index].association = Some(Association {
            id: format!("eipassoc-fake{calls}"),
            eni: Some(eni.to_string()),
            private_ip: Some(private_ip),
            instance_id: target.instance_id,
        });
        Ok(())
    }

    async fn disassociate(&self, association_id: &str) -> Result<(), CloudError> {
        self.mutate("DisassociateAddress", association_id)?;
        for a in self.allocations.lock().unwrap().iter_mut() {
            if a.association
                .as_ref()
                .is_some_and(|b| b.id == association_id)
            {
                a.association = None;
            }
        }
        Ok(())
    }

    async fn border_groups(&self) -> Result<BTreeMap<String, String>, CloudError> {
        Ok(self.border_groups.lock().unwrap().clone())
    }

    async fn route_tables(&self, ids: &[String]) -> Result<Vec<RouteTable>, CloudError> {
        let tables = self.route_tables.lock().unwrap();
        Ok((tables.iter())
            .filter(|t| ids.contains(&t.id))
            .cloned()
            .collect())
    }

    async fn route_to(&self, table: &str, address: IpAddr, eni: &str) -> Result<(), CloudError> {
        self.mutate("ReplaceRoute", table)?;
        let subnet = (self.enis.lock().unwrap().iter())
            .find(|e| e.id == eni)
            .map(|e| e.subnet_id.clone());
        let eni_vpc = subnet.and_then(|s| self.vpc_of_subnet.lock().unwrap().get(&s).cloned());
        let mut tables = self.route_tables.lock().unwrap();
        let t = (tables.iter_mut().find(|t| t.id == table))
            .ok_or_else(|| not_found("ReplaceRoute", "InvalidRouteTableID.NotFound", table))?;
        if eni_vpc.is_some_and(|v| v != t.vpc_id) {
            return Err(CloudError {
                action: "ReplaceRoute",
                code: "InvalidParameterValue".into(),
                message: format!(
                    "Route table {table} and network interface {eni} belong to different networks."
                ),
                kind: ErrorKind::Permanent,
            });
        }
        let destination = super::host_route(address);
        t.routes.retain(|r| r.destination != destination);
        t.routes.push(Route {
            destination,
            target: RouteTarget::Eni(eni.to_string()),
            blackhole: false,
        });
        Ok(())
    }

    async fn delete_route(&self, table: &str, address: IpAddr) -> Result<(), CloudError> {
        self.mutate("DeleteRoute", table)?;
        let destination = super::host_route(address);
        for t in self.route_tables.lock().unwrap().iter_mut() {
            if t.id == table {
                t.routes.retain(|r| r.destination != destination);
            }
        }
        Ok(())
    }

    async fn source_dest_check_off(&self, eni: &str) -> Result<bool, CloudError> {
        if self.source_dest_off.lock().unwrap().contains(eni) {
            return Ok(false);
        }
        self.mutate("ModifyNetworkInterfaceAttribute", eni)?;
        Ok(self.source_dest_off.lock().unwrap().insert(eni.to_string()))
    }
}

#[path = "fake_tests.rs"]
mod tests;
