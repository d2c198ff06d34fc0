//! RouteTable: an overlay address outside every CIDR of the VPC, reached through a host route
//! (/32, /128) in each table of `spec.routeTableIds` that leads to the holder's floating ENI
//! (whose source/dest check must be off). Candidates may be in any subnet and zone of the VPC.
//! A move is ReplaceRoute (CreateRoute where the table has no route yet) in every table: one
//! call per table, as EC2 has no batch call for routes. The agent puts the address on the
//! floating interface, with reply routing, as in SecondaryIP mode.
//!
//! Which ENIs hold the address is what the tables say: one managed ENI when every table
//! leads to it; a route to anything floatip does not manage makes the address foreign; tables
//! that disagree or lack the route hold it for nobody (see [`RouteTableMode::holding`]), so
//! the plan routes it again, in every table, to where status says it should be.

use std::borrow::Cow;
use std::net::IpAddr;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use super::{AddressMode, Carrier, Held, Moved, Snapshot, Unusable};
use crate::api::FloatingIPSpec;
use crate::cloud::{AddressMove, Cloud, CloudError, Eni, ErrorKind, RouteTable, RouteTarget};
use crate::nodes::{NodeView, Unfit};
use crate::status::Seat;

/// The RouteTable mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteTableMode;

/// Route calls in flight at once for one move: the tables of one address are independent, but
/// the account's mutating-call bucket (50 tokens, refilled at 5 a second) is shared with the
/// VPC CNI and autoscalers, so a move of many tables must not empty it in one burst.
const ROUTE_CALLS_IN_FLIGHT: usize = 4;

/// The listed tables EC2 described, in spec order; a missing one is left out.
fn tables<'e>(spec: &FloatingIPSpec, ec2: &Snapshot<'e>) -> Vec<&'e RouteTable> {
    let Some(read) = ec2.route_tables else {
        return Vec::new();
    };
    (spec.route_table_ids.iter())
        .filter_map(|id| read.get(id))
        .collect()
}

/// The cluster's floating ENIs, attached or not.
fn floating<'e>(ec2: &Snapshot<'e>) -> impl Iterator<Item = &'e Eni> + 'e {
    let cluster = ec2.cluster;
    (ec2.cluster_enis.unwrap_or_default().iter()).filter(move |e| e.is_floating_for(cluster))
}

/// An ENI known only by the ID a route names.
fn named(id: &str) -> Eni {
    Eni {
        id: id.to_string(),
        subnet_id: String::new(),
        instance_id: None,
        device_index: None,
        mac: None,
        primary_ip: None,
        secondary: Vec::new(),
        tags: Default::default(),
        security_groups: Vec::new(),
    }
}

impl AddressMode for RouteTableMode {
    fn subnets(&self, _spec: &FloatingIPSpec) -> Vec<String> {
        Vec::new()
    }

    /// Refused before any call: a table that does not exist, an address inside the VPC (the
    /// tables' local routes are the VPC's blocks), a table of another VPC than the nodes'
    /// floating ENIs (EC2 refuses a route to an ENI of another VPC).
    fn usable(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'_>,
    ) -> Result<(), Unusable> {
        let Some(read) = ec2.route_tables else {
            return Ok(());
        };
        let mut listed = Vec::new();
        for id in &spec.route_table_ids {
            let table = read
                .get(id)
                .ok_or_else(|| Unusable::RouteTableNotFound { table: id.clone() })?;
            listed.push(table);
        }
        for t in &listed {
            if let Some(block) = t.local_block_of(address) {
                return Err(Unusable::AddressInsideVpc {
                    address,
                    table: t.id.clone(),
                    block: block.to_string(),
                });
            }
        }
        let nodes_enis = floating(ec2)
            .filter(|e| (e.instance_id.as_ref()).is_some_and(|i| ec2.node_instances.contains(i)));
        for e in nodes_enis {
            let Some(ip) = e.primary_ip else { continue };
            if let Some(t) = listed.iter().find(|t| t.local_block_of(ip).is_none()) {
                return Err(Unusable::RouteTableOtherVpc {
                    table: t.id.clone(),
                    vpc: t.vpc_id.clone(),
                    eni: format!("{} ({ip})", e.id),
                });
            }
        }
        Ok(())
    }

    /// Where the listed tables' host routes of the address lead (a blackholed route leads
    /// nowhere), anything floatip does not manage first:
    /// - every table to one managed ENI: that ENI holds it;
    /// - a route to something else (an ENI not of this cluster's floating ENIs, a gateway):
    ///   that holds it, and floatip never takes it;
    /// - tables that disagree or lack the route: each managed ENI a route leads to is listed
    ///   without its instance, which holds the address for nobody. The plan then moves it
    ///   where status says it belongs (every table routed again), and a FloatingIP being
    ///   deleted still takes each of those routes away.
    fn holding<'e>(
        &self,
        spec: &FloatingIPSpec,
        address: IpAddr,
        ec2: &Snapshot<'e>,
    ) -> Vec<Held<'e>> {
        let listed = tables(spec, ec2);
        let mut targets: Vec<&RouteTarget> = Vec::new();
        let mut complete = listed.len() == spec.route_table_ids.len();
        for t in &listed {
            match t.host_route_of(address).filter(|r| !r.blackhole) {
                Some(r) if !targets.contains(&&r.target) => targets.push(&r.target),
                Some(_) => {}
                None => complete = false,
            }
        }
        complete &= targets.len() == 1;
        let mut held: Vec<Held<'e>> = targets
            .into_iter()
            .map(|target| {
                let (eni, managed) = match target {
                    RouteTarget::Eni(id) => match floating(ec2).find(|e| &e.id == id) {
                        Some(e) => (Cow::Borrowed(e), true),
                        None => (Cow::Owned(named(id)), false),
                    },
                    RouteTarget::Local => (Cow::Owned(named("local")), false),
                    RouteTarget::Other(id) => (Cow::Owned(named(id)), false),
                };
                let eni = match eni {
                    Cow::Borrowed(e) if managed && !complete => Cow::Owned(Eni {
                        instance_id: None,
                        ..e.clone()
                    }),
                    eni => eni,
                };
                Held {
                    eni,
                    managed,
                    private_ip: None,
                }
            })
            .collect();
        held.sort_by_key(|h| h.managed);
        held
    }

    fn seat(
        &self,
        _spec: &FloatingIPSpec,
        node: &NodeView,
        ec2: &Snapshot<'_>,
    ) -> Result<Seat, Unfit> {
        let instance = node.instance_id.clone().ok_or(Unfit::NoInstance)?;
        let eni = floating(ec2)
            .filter(|e| e.instance_id.as_deref() == Some(instance.as_str()))
            .min_by_key(|e| (e.device_index, e.id.clone()))
            .ok_or_else(|| {
                Unfit::NoInterface(format!(
                    "the node has no floating ENI of cluster {} (floatip attach creates it in the subnet of the node's primary ENI)",
                    ec2.cluster
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

impl<C: Cloud> Carrier<C> for RouteTableMode {
    /// The target's source/dest check turned off first (a read, and a call only when it is
    /// on): a route must never lead to an ENI that drops the address's traffic. Then one route
    /// call per table and address, at most [`ROUTE_CALLS_IN_FLIGHT`] at a time. Every table is
    /// tried even when one fails, so the others lead to the target; the first error is
    /// returned.
    fn move_to<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<Moved, CloudError>> {
        Box::pin(async move {
            cloud.source_dest_check_off(&to.eni).await?;
            route_all(cloud, &to.eni, moves).await?;
            Ok(Moved::default())
        })
    }

    fn verify<'a>(
        &'a self,
        cloud: &'a C,
        to: &'a Seat,
        moves: &'a [AddressMove],
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(verify(cloud, to, moves))
    }

    /// Deletes the address's host route in each listed table where it leads to `eni`; a route
    /// that leads elsewhere (moved since) is left.
    fn release<'a>(
        &'a self,
        cloud: &'a C,
        spec: &'a FloatingIPSpec,
        eni: &'a str,
        address: IpAddr,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move {
            let read = cloud.route_tables(&spec.route_table_ids).await?;
            let to_eni = RouteTarget::Eni(eni.to_string());
            for t in read {
                if t.host_route_of(address).is_some_and(|r| r.target == to_eni) {
                    cloud.delete_route(&t.id, address).await?;
                }
            }
            Ok(())
        })
    }
}

/// Routes every address of `moves` to `eni` in each of its tables, at most
/// [`ROUTE_CALLS_IN_FLIGHT`] calls at a time; every call is made, the first error returned.
async fn route_all<C: Cloud>(
    cloud: &C,
    eni: &str,
    moves: &[AddressMove],
) -> Result<(), CloudError> {
    let pairs: Vec<(&str, IpAddr)> = (moves.iter())
        .flat_map(|m| m.route_tables.iter().map(|t| (t.as_str(), m.address)))
        .collect();
    let mut calls = pairs.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut first_error = None;
    loop {
        while in_flight.len() < ROUTE_CALLS_IN_FLIGHT {
            let Some((table, address)) = calls.next() else {
                break;
            };
            in_flight.push(cloud.route_to(table, address, eni));
        }
        match in_flight.next().await {
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Some(Ok(())) => {}
            None => break,
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Reads the tables back: every one exists and its host route of each address leads to the
/// target, not blackholed.
async fn verify<C: Cloud>(cloud: &C, to: &Seat, moves: &[AddressMove]) -> Result<(), CloudError> {
    let mut ids: Vec<String> = moves.iter().flat_map(|m| m.route_tables.clone()).collect();
    ids.sort();
    ids.dedup();
    let read = cloud.route_tables(&ids).await?;
    let want = RouteTarget::Eni(to.eni.clone());
    for m in moves {
        for id in &m.route_tables {
            let route =
                (read.iter().find(|t| &t.id == id)).and_then(|t| t.host_route_of(m.address));
            let there = route.is_some_and(|r| r.target == want && !r.blackhole);
            if !there {
                let shows = match route {
                    None => "no route".to_string(),
                    Some(r) => format!(
                        "{:?}{}",
                        r.target,
                        if r.blackhole { " (blackhole)" } else { "" }
                    ),
                };
                return Err(CloudError {
                    action: "DescribeRouteTables",
                    code: "MoveNotVisible".into(),
                    message: format!(
                        "after routing {} to {} in {id}, EC2 shows {shows} there",
                        m.address, to.eni
                    ),
                    kind: ErrorKind::Transient,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "route_table_tests.rs"]
mod tests;
