//! The route-table calls of the cloud port (RouteTable mode), and EC2's routes into the port's.

use std::net::IpAddr;

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, RouteState};

use super::Ec2;
use crate::cloud::{host_route, CloudError, Route, RouteTable, RouteTarget};

/// The destination parameter of a route call for `address`'s host route.
fn destination(address: IpAddr) -> (Option<String>, Option<String>) {
    match address {
        IpAddr::V4(_) => (Some(host_route(address)), None),
        IpAddr::V6(_) => (None, Some(host_route(address))),
    }
}

impl Ec2 {
    pub(super) async fn read_route_tables(
        &self,
        ids: &[String],
    ) -> Result<Vec<RouteTable>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A filter, not RouteTableIds: EC2 fails the whole call when one of those is missing.
        let filter = Filter::builder()
            .name("route-table-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let pages = self
            .client
            .describe_route_tables()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let items = self.call("DescribeRouteTables", pages).await?;
        Ok(items.iter().filter_map(to_route_table).collect())
    }

    pub(super) async fn replace_or_create_route(
        &self,
        table: &str,
        address: IpAddr,
        eni: &str,
    ) -> Result<(), CloudError> {
        let (v4, v6) = destination(address);
        let replace = self
            .client
            .replace_route()
            .route_table_id(table)
            .set_destination_cidr_block(v4.clone())
            .set_destination_ipv6_cidr_block(v6.clone())
            .network_interface_id(eni)
            .send();
        let Err(replace_failed) = self.call("ReplaceRoute", replace).await else {
            return Ok(());
        };
        // EC2 names no route missing by a code of its own (InvalidParameterValue covers that
        // and an ENI of another VPC alike): the table is read to tell them apart.
        let tables = self.read_route_tables(&[table.to_string()]).await?;
        let missing = tables
            .first()
            .is_some_and(|t| t.host_route_of(address).is_none());
        if !missing {
            return Err(replace_failed);
        }
        let create = self
            .client
            .create_route()
            .route_table_id(table)
            .set_destination_cidr_block(v4)
            .set_destination_ipv6_cidr_block(v6)
            .network_interface_id(eni)
            .send();
        self.call("CreateRoute", create).await.map(|_| ())
    }

    pub(super) async fn remove_route(
        &self,
        table: &str,
        address: IpAddr,
    ) -> Result<(), CloudError> {
        let tables = self.read_route_tables(&[table.to_string()]).await?;
        if tables
            .first()
            .is_none_or(|t| t.host_route_of(address).is_none())
        {
            return Ok(());
        }
        let (v4, v6) = destination(address);
        let delete = self
            .client
            .delete_route()
            .route_table_id(table)
            .set_destination_cidr_block(v4)
            .set_destination_ipv6_cidr_block(v6)
            .send();
        self.call("DeleteRoute", delete).await.map(|_| ())
    }

    pub(super) async fn turn_source_dest_check_off(&self, eni: &str) -> Result<bool, CloudError> {
        let read = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send();
        let out = self.call("DescribeNetworkInterfaces", read).await?;
        let on = (out.network_interfaces().first()).and_then(|n| n.source_dest_check());
        if on == Some(false) {
            return Ok(false);
        }
        let modify = self
            .client
            .modify_network_interface_attribute()
            .network_interface_id(eni)
            .source_dest_check(AttributeBooleanValue::builder().value(false).build())
            .send();
        self.call("ModifyNetworkInterfaceAttribute", modify).await?;
        Ok(true)
    }
}

fn to_route_table(t: &aws_sdk_ec2::types::RouteTable) -> Option<RouteTable> {
    Some(RouteTable {
        id: t.route_table_id()?.to_string(),
        vpc_id: t.vpc_id().unwrap_or_default().to_string(),
        routes: t.routes().iter().filter_map(to_route).collect(),
    })
}

fn to_route(r: &aws_sdk_ec2::types::Route) -> Option<Route> {
    let destination = r
        .destination_cidr_block()
        .or(r.destination_ipv6_cidr_block())?
        .to_string();
    let target = if r.gateway_id() == Some("local") {
        RouteTarget::Local
    } else if let Some(eni) = r.network_interface_id() {
        RouteTarget::Eni(eni.to_string())
    } else {
        let other = [
            r.gateway_id(),
            r.nat_gateway_id(),
            r.transit_gateway_id(),
            r.vpc_peering_connection_id(),
            r.egress_only_internet_gateway_id(),
            r.local_gateway_id(),
            r.carrier_gateway_id(),
            r.instance_id(),
            r.core_network_arn(),
        ];
        let id = other.into_iter().flatten().next().unwrap_or("unknown");
        RouteTarget::Other(id.to_string())
    };
    Some(Route {
        destination,
        target,
        blackhole: r.state() == Some(&RouteState::Blackhole),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::Route as Ec2Route;

    #[test]
    fn routes_are_read_by_their_target() {
        let table = aws_sdk_ec2::types::RouteTable::builder()
            .route_table_id("rtb-0a")
            .vpc_id("vpc-0a")
            .routes(
                Ec2Route::builder()
                    .destination_cidr_block("10.0.0.0/16")
                    .gateway_id("local")
                    .build(),
            )
            .routes(
                Ec2Route::builder()
                    .destination_ipv6_cidr_block("fd00::10/128")
                    .network_interface_id("eni-1")
                    .instance_id("i-1")
                    .state(RouteState::Blackhole)
                    .build(),
            )
            .routes(
                Ec2Route::builder()
                    .destination_cidr_block("0.0.0.0/0")
                    .nat_gateway_id("nat-0a")
                    .build(),
            )
            .routes(
                Ec2Route::builder()
                    .destination_prefix_list_id("pl-0a")
                    .gateway_id("vpce-0a")
                    .build(),
            )
            .build();
        let t = to_route_table(&table).unwrap();
        assert_eq!((t.id.as_str(), t.vpc_id.as_str()), ("rtb-0a", "vpc-0a"));
        let got: Vec<(&str, &RouteTarget, bool)> = (t.routes.iter())
            .map(|r| (r.destination.as_str(), &r.target, r.blackhole))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.0/16", &RouteTarget::Local, false),
                ("fd00::10/128", &RouteTarget::Eni("eni-1".into()), true),
                ("0.0.0.0/0", &RouteTarget::Other("nat-0a".into()), false),
            ]
        );
    }
}
