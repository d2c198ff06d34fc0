//! RouteTable mode through a real `floatip controller` against the lab's API server and EC2
//! endpoint (no network: FloatingIPs without a health check, moved by node signals). Overlay
//! addresses are from 100.64.0.0/10, outside the cluster's VPC (10.0.0.0/16).

use std::time::Duration;

use floatip_lab::cluster::{condition, holder_of, is_ready, Cluster};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

async fn route_table(c: &Cluster, vpc: &str) -> String {
    let out = c.aws.create_route_table().vpc_id(vpc).send().await.unwrap();
    out.route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_string()
}

/// Per table, the ENI its route for `address`/32 leads to, straight from moto.
async fn routed_to(c: &Cluster, address: &str, tables: &[String]) -> Vec<Option<String>> {
    let out = c
        .ec2
        .direct_client()
        .describe_route_tables()
        .set_route_table_ids(Some(tables.to_vec()))
        .send()
        .await
        .unwrap();
    let host = format!("{address}/32");
    tables
        .iter()
        .map(|id| {
            let t = (out.route_tables().iter()).find(|t| t.route_table_id() == Some(id.as_str()));
            t.and_then(|t| {
                (t.routes().iter())
                    .find(|r| r.destination_cidr_block() == Some(host.as_str()))
                    .and_then(|r| r.network_interface_id().map(String::from))
            })
        })
        .collect()
}

async fn source_dest_check(c: &Cluster, eni: &str) -> Option<bool> {
    let out = c
        .ec2
        .direct_client()
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    out.network_interfaces()[0].source_dest_check()
}

fn routed(address: &str, tables: &[&str]) -> serde_json::Value {
    json!({"address": address, "mode": "RouteTable", "subnetId": null, "routeTableIds": tables})
}

/// An address inside the VPC, a table of another VPC and a table that does not exist: each a
/// clear condition on its FloatingIP, and not one mutating EC2 call. A local gateway route
/// table (Outposts) is refused by the CRD with a message that says it is not supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_route_table_addresses_make_no_mutating_call() {
    let mut c = Cluster::new(2).await;
    let vpc = c.vpc.clone();
    let table = route_table(&c, &vpc).await;
    let other_vpc = c
        .aws
        .create_vpc()
        .cidr_block("10.50.0.0/16")
        .send()
        .await
        .unwrap();
    let other_vpc = other_vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let other_table = route_table(&c, &other_vpc).await;
    let cases = [
        (
            "inside",
            routed("10.0.200.10", &[&table]),
            "AddressInsideVpc",
            "takes effect only for a whole subnet's CIDR",
        ),
        (
            "other-vpc",
            routed("100.64.0.11", &[&table, &other_table]),
            "RouteTableInOtherVpc",
            &format!("belongs to {other_vpc}"),
        ),
        (
            "missing",
            routed("100.64.0.12", &[&table, "rtb-0123456789abcdef0"]),
            "RouteTableNotFound",
            "rtb-0123456789abcdef0 does not exist",
        ),
    ];
    for (name, spec, ..) in &cases {
        c.create_fip(name, spec.clone()).await;
    }
    let lgw = serde_json::from_value::<floatip::api::FloatingIP>(json!({
        "apiVersion": "floatip.io/v1alpha1", "kind": "FloatingIP",
        "metadata": {"name": "outpost"},
        "spec": routed("100.64.0.13", &["lgw-rtb-0123456789abcdef0"]),
    }))
    .unwrap();
    let err = c
        .fips()
        .create(&kube::api::PostParams::default(), &lgw)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("local gateway route tables"),
        "{err}"
    );
    c.ec2.reset_calls();
    c.start_controller("controller-a");
    for (name, _, reason, says) in &cases {
        let f = c
            .wait_fip(name, "its refusal", T, |f| {
                condition(f, "Ready").is_some_and(|(s, r, _)| s == "False" && r == *reason)
            })
            .await;
        let (status, _, msg) = condition(&f, "InvalidSpec").expect("InvalidSpec");
        assert_eq!(status, "True");
        assert!(msg.contains(says), "{name}: {msg}");
        assert!(holder_of(&f).is_none());
    }
    let calls = c.ec2.calls();
    assert_eq!(calls["mutating"].as_u64(), Some(0), "{calls}");
    assert!(
        calls["actions"]["DescribeRouteTables"]["calls"].as_u64() >= Some(1),
        "{calls}"
    );
}

/// A routed address: every table leads to the holder's floating ENI, whose source/dest check
/// the controller turned off; a cordon moves it and every table follows, one route call per
/// table; deleting the FloatingIP takes its routes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_address_follows_its_holder_in_every_table() {
    let mut c = Cluster::new(2).await;
    let vpc = c.vpc.clone();
    let tables = vec![route_table(&c, &vpc).await, route_table(&c, &vpc).await];
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    c.start_controller("controller-a");
    c.create_fip("overlay", routed("100.64.0.10", &names)).await;
    let f = c
        .wait_fip("overlay", "routed", T, |f| {
            is_ready(f) && holder_of(f).is_some()
        })
        .await;
    let first = holder_of(&f).unwrap();
    let eni = c.node(&first).eni.clone();
    let holder = f.status.as_ref().unwrap().holder.as_ref().unwrap();
    assert_eq!(holder.network_interface_id.as_deref(), Some(eni.as_str()));
    assert_eq!(
        routed_to(&c, "100.64.0.10", &tables).await,
        [Some(eni.clone()), Some(eni.clone())]
    );
    assert_eq!(source_dest_check(&c, &eni).await, Some(false));

    c.ec2.reset_calls();
    c.patch_node(&first, json!({"spec": {"unschedulable": true}}))
        .await;
    let f = c
        .wait_fip("overlay", "the move off the cordoned node", T, |f| {
            is_ready(f) && holder_of(f).is_some_and(|h| h != first)
        })
        .await;
    let second = holder_of(&f).unwrap();
    let eni2 = c.node(&second).eni.clone();
    assert_eq!(
        routed_to(&c, "100.64.0.10", &tables).await,
        [Some(eni2.clone()), Some(eni2.clone())]
    );
    assert_eq!(source_dest_check(&c, &eni2).await, Some(false));
    let calls = c.ec2.calls();
    let n = |a: &str| calls["actions"][a]["calls"].as_u64().unwrap_or(0);
    assert_eq!(n("ReplaceRoute"), 2, "one call per table: {calls}");
    assert_eq!(n("CreateRoute"), 0, "{calls}");

    c.fips()
        .delete("overlay", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    while c.fips().get_opt("overlay").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the finalizer stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(routed_to(&c, "100.64.0.10", &tables).await, [None, None]);
}

/// A route replaced outside floatip (one table now leads to another node's ENI) is routed back
/// to the holder within seconds, not at the next resync: the holder check reads the tables back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_changed_outside_floatip_is_put_back_within_seconds() {
    let mut c = Cluster::new(2).await;
    let vpc = c.vpc.clone();
    let tables = vec![route_table(&c, &vpc).await, route_table(&c, &vpc).await];
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    c.start_controller_with("controller-a", &[("FLOATIP_RESYNC", "120s")]);
    c.create_fip("overlay", routed("100.64.0.10", &names)).await;
    let f = c
        .wait_fip("overlay", "routed", T, |f| {
            is_ready(f) && holder_of(f).is_some()
        })
        .await;
    let holder = holder_of(&f).unwrap();
    let other = ["node-1", "node-2"]
        .into_iter()
        .find(|n| *n != holder)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let changed = std::time::Instant::now();
    c.ec2
        .direct_client()
        .replace_route()
        .route_table_id(&tables[1])
        .destination_cidr_block("100.64.0.10/32")
        .network_interface_id(&c.node(other).eni)
        .send()
        .await
        .unwrap();
    let f = c
        .wait_fip("overlay", "routed back", Duration::from_secs(10), |f| {
            f.status.as_ref().is_some_and(|s| s.move_count == 2)
        })
        .await;
    let last = f.status.as_ref().unwrap().last_move.clone().unwrap();
    assert_eq!(last.reason.as_str(), "Drift");
    assert_eq!(holder_of(&f).as_deref(), Some(holder.as_str()));
    let eni = c.node(&holder).eni.clone();
    assert_eq!(
        routed_to(&c, "100.64.0.10", &tables).await,
        [Some(eni.clone()), Some(eni)]
    );
    println!(
        "a route replaced outside floatip was put back after {} ms (resync 120 s)",
        changed.elapsed().as_millis()
    );
}
