//! The cloud port over aws-sdk-ec2. The SDK retries throttling and transient failures with
//! jittered exponential backoff (standard mode); what still fails is classified here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

mod convert;
mod routes;

use super::{
    AddressMove, Allocation, Attachment, Cloud, CloudError, Eni, ErrorKind, Instance, RouteTable,
    Subnet,
};
use crate::metrics::Metrics;
use convert::{
    by_family, classify, to_allocation, to_attachment, to_border_groups, to_eni, to_instance,
    to_subnet,
};

/// Every EC2 action [`Ec2`] calls, for the metrics that show each from the start (a test
/// below checks this list against the calls).
pub const ACTIONS: &[&str] = &[
    "AssignIpv6Addresses",
    "AssignPrivateIpAddresses",
    "AssociateAddress",
    "AttachNetworkInterface",
    "CreateNetworkInterface",
    "CreateRoute",
    "DeleteNetworkInterface",
    "DeleteRoute",
    "DescribeAddresses",
    "DescribeAvailabilityZones",
    "DescribeInstanceTypes",
    "DescribeInstances",
    "DescribeNetworkInterfaces",
    "DescribeRouteTables",
    "DescribeSubnets",
    "DetachNetworkInterface",
    "DisassociateAddress",
    "ModifyNetworkInterfaceAttribute",
    "ReplaceRoute",
    "UnassignIpv6Addresses",
    "UnassignPrivateIpAddresses",
];

/// What EC2 answers DisassociateAddress for an association that no longer exists.
const ASSOCIATION_GONE: &str = "InvalidAssociationID.NotFound";

/// What EC2 answers DescribeInstances for an instance it no longer knows.
const INSTANCE_GONE: &str = "InvalidInstanceID.NotFound";

/// EC2 through the AWS SDK, configured from the environment (region, credentials through IRSA
/// or EKS Pod Identity, and AWS_ENDPOINT_URL for a test endpoint).
#[derive(Clone)]
pub struct Ec2 {
    client: Client,
    metrics: Metrics,
}

impl Ec2 {
    /// `attempts` includes the first try; throttling and 5xx are retried with jittered
    /// exponential backoff starting at `initial_backoff`.
    pub async fn from_env(attempts: u32, initial_backoff: Duration, metrics: Metrics) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(initial_backoff)
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .load()
            .await;
        Self {
            client: Client::new(&config),
            metrics,
        }
    }

    /// Over a client configured elsewhere: the lab's tests point one at their own EC2.
    pub fn with_client(client: Client, metrics: Metrics) -> Self {
        Self { client, metrics }
    }

    async fn call<T, E, F>(&self, action: &'static str, fut: F) -> Result<T, CloudError>
    where
        F: std::future::Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.metrics.ec2_call(action);
        let started = std::time::Instant::now();
        let result = fut.await;
        self.metrics
            .ec2_call_took(action, started.elapsed().as_secs_f64());
        result.map_err(|e| {
            let err = classify(action, &e);
            self.metrics.ec2_error(action, &err);
            tracing::warn!(action, code = %err.code, message = %err.message, "EC2 call failed");
            err
        })
    }

    /// CreateNetworkInterface in `subnet`, with `address` as its primary when given (else EC2
    /// picks one), `tags` and `security_groups`: the floating ENI and Interface mode's ENI.
    async fn create_network_interface(
        &self,
        subnet: &str,
        address: Option<IpAddr>,
        description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Eni, CloudError> {
        let spec = tags.iter().fold(
            TagSpecification::builder().resource_type(ResourceType::NetworkInterface),
            |b, (k, v)| b.tags(Tag::builder().key(k).value(v).build()),
        );
        let out = self
            .call(
                "CreateNetworkInterface",
                self.client
                    .create_network_interface()
                    .subnet_id(subnet)
                    .set_private_ip_address(address.map(|a| a.to_string()))
                    .description(description)
                    .set_groups(Some(security_groups.to_vec()))
                    .tag_specifications(spec.build())
                    .send(),
            )
            .await?;
        out.network_interface()
            .and_then(to_eni)
            .ok_or_else(|| CloudError {
                action: "CreateNetworkInterface",
                code: "EmptyResponse".into(),
                message: "EC2 returned no network interface".into(),
                kind: ErrorKind::Transient,
            })
    }
}

impl Cloud for Ec2 {
    async fn subnet_enis(&self, subnet: &str) -> Result<Vec<Eni>, CloudError> {
        let pages = self
            .client
            .describe_network_interfaces()
            .filters(Filter::builder().name("subnet-id").values(subnet).build())
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let items = self.call("DescribeNetworkInterfaces", pages).await?;
        Ok(items.iter().filter_map(to_eni).collect())
    }

    async fn instance_enis(&self, instances: &[String]) -> Result<Vec<Eni>, CloudError> {
        let mut enis = Vec::new();
        // EC2 takes at most 200 values in one filter.
        for chunk in instances.chunks(200) {
            let filter = Filter::builder()
                .name("attachment.instance-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            let pages = self
                .client
                .describe_network_interfaces()
                .filters(filter)
                .into_paginator()
                .items()
                .send()
                .try_collect();
            let items = self.call("DescribeNetworkInterfaces", pages).await?;
            enis.extend(items.iter().filter_map(to_eni));
        }
        Ok(enis)
    }

    async fn enis(&self, ids: &[String]) -> Result<Vec<Eni>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .call(
                "DescribeNetworkInterfaces",
                self.client
                    .describe_network_interfaces()
                    .set_network_interface_ids(Some(ids.to_vec()))
                    .send(),
            )
            .await?;
        Ok(out.network_interfaces().iter().filter_map(to_eni).collect())
    }

    async fn assign(&self, eni: &str, moves: &[AddressMove]) -> Result<(), CloudError> {
        let v4: Vec<String> = moves
            .iter()
            .filter(|m| m.address.is_ipv4())
            .map(|m| m.address.to_string())
            .collect();
        if !v4.is_empty() {
            self.call(
                "AssignPrivateIpAddresses",
                self.client
                    .assign_private_ip_addresses()
                    .network_interface_id(eni)
                    .set_private_ip_addresses(Some(v4))
                    .allow_reassignment(true)
                    .send(),
            )
            .await?;
        }
        let v6: Vec<&AddressMove> = moves.iter().filter(|m| m.address.is_ipv6()).collect();
        if v6.is_empty() {
            return Ok(());
        }
        // IPv6 cannot be reassigned in place: take each address off its old ENI first.
        let mut by_source: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for m in &v6 {
            if let Some(from) = m.from_eni.as_deref().filter(|f| *f != eni) {
                by_source
                    .entry(from)
                    .or_default()
                    .push(m.address.to_string());
            }
        }
        for (from, addrs) in by_source {
            self.call(
                "UnassignIpv6Addresses",
                self.client
                    .unassign_ipv6_addresses()
                    .network_interface_id(from)
                    .set_ipv6_addresses(Some(addrs))
                    .send(),
            )
            .await?;
        }
        self.call(
            "AssignIpv6Addresses",
            self.client
                .assign_ipv6_addresses()
                .network_interface_id(eni)
                .set_ipv6_addresses(Some(v6.iter().map(|m| m.address.to_string()).collect()))
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn unassign(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        // EC2 refuses to unassign what the ENI does not have; ask first, so an address already
        // gone is not an error.
        let current = self.enis(&[eni.to_string()]).await?;
        let held: Vec<IpAddr> = match current.first() {
            Some(e) => addresses.iter().copied().filter(|a| e.holds(*a)).collect(),
            None => return Ok(()),
        };
        let (v4, v6) = by_family(&held);
        if !v4.is_empty() {
            self.call(
                "UnassignPrivateIpAddresses",
                self.client
                    .unassign_private_ip_addresses()
                    .network_interface_id(eni)
                    .set_private_ip_addresses(Some(v4))
                    .send(),
            )
            .await?;
        }
        if !v6.is_empty() {
            self.call(
                "UnassignIpv6Addresses",
                self.client
                    .unassign_ipv6_addresses()
                    .network_interface_id(eni)
                    .set_ipv6_addresses(Some(v6))
                    .send(),
            )
            .await?;
        }
        Ok(())
    }

    async fn assign_unused(&self, eni: &str, addresses: &[IpAddr]) -> Result<(), CloudError> {
        let (v4, v6) = by_family(addresses);
        if !v4.is_empty() {
            self.call(
                "AssignPrivateIpAddresses",
                self.client
                    .assign_private_ip_addresses()
                    .network_interface_id(eni)
                    .set_private_ip_addresses(Some(v4))
                    .allow_reassignment(false)
                    .send(),
            )
            .await?;
        }
        if !v6.is_empty() {
            self.call(
                "AssignIpv6Addresses",
                self.client
                    .assign_ipv6_addresses()
                    .network_interface_id(eni)
                    .set_ipv6_addresses(Some(v6))
                    .send(),
            )
            .await?;
        }
        Ok(())
    }

    async fn cluster_enis(&self, cluster: &str) -> Result<Vec<Eni>, CloudError> {
        let pages = self
            .client
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", super::TAG_CLUSTER))
                    .values(cluster)
                    .build(),
            )
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let items = self.call("DescribeNetworkInterfaces", pages).await?;
        Ok(items.iter().filter_map(to_eni).collect())
    }

    async fn instance(&self, id: &str) -> Result<Instance, CloudError> {
        let out = self
            .call(
                "DescribeInstances",
                self.client.describe_instances().instance_ids(id).send(),
            )
            .await?;
        let found = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id));
        let Some(i) = found else {
            return Err(CloudError {
                action: "DescribeInstances",
                code: "InvalidInstanceID.NotFound".into(),
                message: format!("instance {id} does not exist"),
                kind: ErrorKind::Permanent,
            });
        };
        Ok(to_instance(id, i))
    }

    async fn max_interfaces(&self, instance_type: &str) -> Result<Option<u32>, CloudError> {
        let out = self
            .call(
                "DescribeInstanceTypes",
                self.client
                    .describe_instance_types()
                    .instance_types(instance_type.into())
                    .send(),
            )
            .await?;
        Ok(out
            .instance_types()
            .first()
            .and_then(|t| t.network_info())
            .and_then(|n| n.maximum_network_interfaces())
            .and_then(|n| u32::try_from(n).ok()))
    }

    async fn subnet(&self, id: &str) -> Result<Subnet, CloudError> {
        let out = self
            .call(
                "DescribeSubnets",
                self.client.describe_subnets().subnet_ids(id).send(),
            )
            .await?;
        let s = out.subnets().first().ok_or_else(|| CloudError {
            action: "DescribeSubnets",
            code: "InvalidSubnetID.NotFound".into(),
            message: format!("subnet {id} does not exist"),
            kind: ErrorKind::Permanent,
        })?;
        Ok(to_subnet(id, s))
    }

    async fn create_eni(
        &self,
        subnet: &str,
        description: &str,
        security_groups: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Eni, CloudError> {
        self.create_network_interface(subnet, None, description, security_groups, tags)
            .await
    }

    async fn set_security_groups(
        &self,
        eni: &str,
        security_groups: &[String],
    ) -> Result<(), CloudError> {
        self.call(
            "ModifyNetworkInterfaceAttribute",
            self.client
                .modify_network_interface_attribute()
                .network_interface_id(eni)
                .set_groups(Some(security_groups.to_vec()))
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn attach_eni(
        &self,
        eni: &str,
        instance: &str,
        device_index: i32,
    ) -> Result<(), CloudError> {
        self.call(
            "AttachNetworkInterface",
            self.client
                .attach_network_interface()
                .network_interface_id(eni)
                .instance_id(instance)
                .device_index(device_index)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn delete_eni(&self, eni: &str) -> Result<(), CloudError> {
        self.call(
            "DeleteNetworkInterface",
            self.client
                .delete_network_interface()
                .network_interface_id(eni)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn allocations(&self, ids: &[String]) -> Result<Vec<Allocation>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A filter, not AllocationIds: EC2 fails the whole call when one of those is missing.
        let ids = Filter::builder()
            .name("allocation-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let out = self
            .call(
                "DescribeAddresses",
                self.client.describe_addresses().filters(ids).send(),
            )
            .await?;
        Ok(out.addresses().iter().filter_map(to_allocation).collect())
    }

    async fn associate(
        &self,
        allocation_id: &str,
        eni: &str,
        private_ip: IpAddr,
        allow_reassociation: bool,
    ) -> Result<(), CloudError> {
        self.call(
            "AssociateAddress",
            self.client
                .associate_address()
                .allocation_id(allocation_id)
                .network_interface_id(eni)
                .private_ip_address(private_ip.to_string())
                .allow_reassociation(allow_reassociation)
                .send(),
        )
        .await?;
        Ok(())
    }

    async fn disassociate(&self, association_id: &str) -> Result<(), CloudError> {
        let call = self
            .client
            .disassociate_address()
            .association_id(association_id)
            .send();
        match self.call("DisassociateAddress", call).await {
            Err(e) if e.code == ASSOCIATION_GONE => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn border_groups(&self) -> Result<BTreeMap<String, String>, CloudError> {
        let out = self
            .call(
                "DescribeAvailabilityZones",
                self.client
                    .describe_availability_zones()
                    .all_availability_zones(true)
                    .send(),
            )
            .await?;
        Ok(to_border_groups(out.availability_zones()))
    }

    async fn route_tables(&self, ids: &[String]) -> Result<Vec<RouteTable>, CloudError> {
        self.read_route_tables(ids).await
    }

    async fn route_to(&self, table: &str, address: IpAddr, eni: &str) -> Result<(), CloudError> {
        self.replace_or_create_route(table, address, eni).await
    }

    async fn delete_route(&self, table: &str, address: IpAddr) -> Result<(), CloudError> {
        self.remove_route(table, address).await
    }

    async fn source_dest_check_off(&self, eni: &str) -> Result<bool, CloudError> {
        self.turn_source_dest_check_off(eni).await
    }

    async fn attachment(&self, eni: &str) -> Result<Option<Attachment>, CloudError> {
        let out = self
            .call(
                "DescribeNetworkInterfaces",
                self.client
                    .describe_network_interfaces()
                    .network_interface_ids(eni)
                    .send(),
            )
            .await?;
        let found = (out.network_interfaces().iter())
            .find(|n| n.network_interface_id() == Some(eni))
            .ok_or_else(|| CloudError {
                action: "DescribeNetworkInterfaces",
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: format!("network interface {eni} does not exist"),
                kind: ErrorKind::Permanent,
            })?;
        Ok(found.attachment().and_then(to_attachment))
    }

    async fn detach_eni(&self, attachment_id: &str, force: bool) -> Result<(), CloudError> {
        self.call(
            "DetachNetworkInterface",
            self.client
                .detach_network_interface()
                .attachment_id(attachment_id)
                .force(force)
                .send(),
        )
        .await?;
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
        self.create_network_interface(subnet, Some(address), description, security_groups, tags)
            .await
    }

    async fn instance_state(&self, id: &str) -> Result<Option<String>, CloudError> {
        let call = self.client.describe_instances().instance_ids(id).send();
        let out = match self.call("DescribeInstances", call).await {
            Err(e) if e.code == INSTANCE_GONE => return Ok(None),
            other => other?,
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .and_then(|i| i.state()?.name())
            .map(|n| n.as_str().to_string()))
    }
}

#[cfg(test)]
mod tests {
    /// The action of every call through `Ec2::call` in this file and in routes.rs (before
    /// their tests).
    fn called_actions() -> std::collections::BTreeSet<String> {
        let code = [include_str!("mod.rs"), include_str!("routes.rs")]
            .map(|source| &source[..source.find("#[cfg(test)]").unwrap_or(source.len())])
            .join("\n");
        code.split(".call(")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start().strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_string())
            })
            .collect()
    }

    #[test]
    fn every_action_called_is_listed_for_the_metrics() {
        let called = called_actions();
        assert!(called.len() > 10, "the scan finds the calls: {called:?}");
        let listed: std::collections::BTreeSet<String> =
            super::ACTIONS.iter().map(|a| a.to_string()).collect();
        assert_eq!(called, listed);
    }
}
