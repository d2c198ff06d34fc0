//! An in-memory cloud for unit tests: ENIs in a map, every call recorded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::{AddressMove, Cloud, CloudError, Eni, ErrorKind, Instance, Subnet};

#[derive(Default)]
pub struct FakeCloud {
    pub enis: Mutex<Vec<Eni>>,
    /// (action, ENI) for every mutating call.
    pub calls: Mutex<Vec<(&'static str, String)>>,
    /// When set, every mutating call fails with it.
    pub fail_with: Mutex<Option<CloudError>>,
    /// (ENI, address): reads show the address on that ENI too, as EC2 can right after a
    /// move (its reads are eventually consistent).
    pub also_shows: Mutex<Option<(String, IpAddr)>>,
    pub instances: Mutex<Vec<Instance>>,
    pub subnets: Mutex<Vec<Subnet>>,
    /// Interface limits by instance type.
    pub max_interfaces: Mutex<BTreeMap<String, u32>>,
}

fn not_found(action: &'static str, code: &str, what: &str) -> CloudError {
    CloudError {
        action,
        code: code.into(),
        message: format!("{what} does not exist"),
        kind: ErrorKind::Permanent,
    }
}

impl FakeCloud {
    pub fn holder_of(&self, address: IpAddr) -> Vec<String> {
        self.enis
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.holds(address))
            .map(|e| e.id.clone())
            .collect()
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
        for m in moves {
            for e in enis.iter_mut() {
                e.secondary.retain(|a| *a != m.address);
            }
        }
        if let Some(target) = enis.iter_mut().find(|e| e.id == eni) {
            target.secondary.extend(moves.iter().map(|m| m.address));
        }
        Ok(())
    }

    async fn unassign(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        self.mutate("Unassign", eni)?;
        let mut enis = self.enis.lock().unwrap();
        if let Some(e) = enis.iter_mut().find(|e| e.id == eni) {
            e.secondary.retain(|a| !addresses.contains(a));
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
            primary_ip: None,
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

    async fn delete_eni(&self, eni: &str) -> Result<(), CloudError> {
        self.mutate("DeleteNetworkInterface", eni)?;
        self.enis.lock().unwrap().retain(|e| e.id != eni);
        Ok(())
    }
}
