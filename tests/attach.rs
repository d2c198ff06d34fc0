//! `floatip attach` as real processes against the lab's API server and EC2 endpoint, each
//! configuring a node namespace; the namespaces follow EC2 like hot-plugged ENIs do. Root only.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use floatip_lab::cluster::vpc::{self, Vpc};
use floatip_lab::cluster::{condition, holder_of, is_ready, security_group, Cluster, CLUSTER};
use floatip_lab::sim::net::can_netns;
use serde_json::json;

const VIP: &str = "10.99.8.100";

/// The floating ENIs EC2 has for this cluster: node tag -> (ENI, instance it is attached to).
async fn floating_enis(c: &Cluster) -> Vec<(String, String, Option<String>)> {
    let out = c
        .aws
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("tag:floatip.io/cluster")
                .values(CLUSTER)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    out.network_interfaces()
        .iter()
        .filter(|n| {
            n.tag_set().iter().any(|t| {
                t.key() == Some("node.k8s.amazonaws.com/no_manage") && t.value() == Some("true")
            })
        })
        .map(|n| {
            let node = n
                .tag_set()
                .iter()
                .find(|t| t.key() == Some("floatip.io/node"))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string();
            (
                node,
                n.network_interface_id().unwrap().to_string(),
                n.attachment()
                    .and_then(|a| a.instance_id())
                    .map(String::from),
            )
        })
        .collect()
}

fn has_vip(vpc: &Vpc, i: usize) -> bool {
    vpc.node(i)
        .ip("-o addr show")
        .unwrap_or_default()
        .contains(&format!("{VIP}/32"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_attach_processes_one_eni_each_exactly_one_holder() {
    if !can_netns("three_attach_processes_one_eni_each_exactly_one_holder") {
        return;
    }
    let c = Cluster::with_layout(3, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;

    let runs: Vec<_> = (1..=3)
        .map(|i| {
            let node = format!("node-{i}");
            let ns_path = net.node(i).name.clone();
            (node, ns_path)
        })
        .collect();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .enumerate()
            .map(|(i, (node, _))| {
                let (c, net) = (&c, &net);
                s.spawn(move || vpc::attach(c, node, net.node(i + 1)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (i, (ok, out, err)) in results.iter().enumerate() {
        println!("node-{}: ok={ok} {}", i + 1, out.trim());
        assert!(ok, "attach on node-{} failed: {err}", i + 1);
        assert_eq!(out.lines().count(), 1, "one summary line: {out}");
    }

    let enis = floating_enis(&c).await;
    let mut per_node: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (node, eni, instance) in &enis {
        per_node
            .entry(node.clone())
            .or_default()
            .push((eni.clone(), instance.clone()));
    }
    for n in &c.nodes {
        let mine = &per_node[&n.name];
        assert_eq!(mine.len(), 1, "{}: one floating ENI, got {mine:?}", n.name);
        assert_eq!(
            mine[0].1.as_deref(),
            Some(n.instance.as_str()),
            "attached to its instance"
        );
    }

    let f = c.fips().get("web").await.unwrap();
    let holder = holder_of(&f).expect("a holder");
    let status = f.status.as_ref().unwrap();
    assert!(status.pending_move.is_none(), "claim completed");
    assert!(
        is_ready(&f),
        "Ready like the controller sets it: {status:?}"
    );
    let holder_eni = &per_node[&holder][0].0;
    assert_eq!(
        c.holders(VIP).await,
        std::slice::from_ref(holder_eni),
        "EC2 has it on the holder's ENI only"
    );
    assert_eq!(
        status
            .holder
            .as_ref()
            .unwrap()
            .network_interface_id
            .as_deref(),
        Some(holder_eni.as_str())
    );
    let claimed: Vec<&String> = results
        .iter()
        .filter(|(_, out, _)| out.contains("claimed: [web]"))
        .map(|(_, out, _)| out)
        .collect();
    assert_eq!(claimed.len(), 1, "exactly one claim succeeded: {claimed:?}");
    for i in 1..=3 {
        assert_eq!(
            has_vip(&net, i),
            format!("node-{i}") == holder,
            "node-{i} carries the address only if it holds it"
        );
    }
    println!("holder: {holder} ({holder_eni})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_after_reboot_reuses_the_eni() {
    if !can_netns("attach_after_reboot_reuses_the_eni") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let mut net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;

    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "first attach: {err}");
    println!("first:  {}", out.trim());
    assert!(out.contains("claimed: [web]"), "{out}");
    let first = floating_enis(&c).await;
    assert_eq!(first.len(), 1);
    assert!(has_vip(&net, 1));

    // A reboot: the namespace (the OS's network state) is new, the ENI stays attached.
    net.recreate_node(1);
    net.wait_link(1, "eth1", Duration::from_secs(10));
    assert!(!has_vip(&net, 1));
    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "second attach: {err}");
    println!("second: {}", out.trim());
    assert!(out.contains("created: []"), "no new ENI: {out}");
    assert!(out.contains(&first[0].1), "the same ENI: {out}");
    assert_eq!(floating_enis(&c).await, first);
    assert!(
        has_vip(&net, 1),
        "the held address is configured again before the agent starts"
    );
    let link = net.node(1).ip("-o link show eth1").unwrap();
    assert!(link.contains("UP"), "the floating interface is up: {link}");
}

/// The primary address EC2 gave `eni`.
async fn primary_of(c: &Cluster, eni: &str) -> String {
    let out = c
        .aws
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .expect("describe");
    let primary = out.network_interfaces()[0].private_ip_address();
    primary.unwrap_or_default().to_string()
}

/// EC2 gives a new ENI a free address of its subnet as its primary, and a FloatingIP's address
/// is free until a node holds it. With three nodes attaching at once (every floating ENI created
/// before any claim), EC2 gave node-1's new ENI 10.99.8.100; node-3 won the claim, EC2 refused
/// its assign ("assigned to another interface") and nobody held the address: a primary address
/// never moves. Here node-1 boots first (not Ready yet, so it prepares its ENI and claims
/// nothing) and EC2 picks the floating address for that ENI; then node-2 attaches and claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_floating_eni_never_keeps_a_floating_address_as_its_primary() {
    if !can_netns("a_new_floating_eni_never_keeps_a_floating_address_as_its_primary") {
        return;
    }
    let c = Cluster::with_layout(2, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;
    let not_ready = json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady"});
    c.patch_node_status("node-1", json!({"status": {"conditions": [not_ready]}}))
        .await;
    c.ec2.give_next_eni(VIP);

    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    println!("node-1: {}\n{}", out.trim(), err.trim());
    assert!(ok, "attach on node-1 failed: {err}");
    assert!(out.contains("claimed: []"), "node-1 is not Ready: {out}");
    let (ok, out, err) = vpc::attach(&c, "node-2", net.node(2));
    println!("node-2: {}\n{}", out.trim(), err.trim());
    assert!(ok, "attach on node-2 failed: {err}");
    assert!(
        out.contains("claimed: [web]"),
        "node-2 claims the address nobody holds: {out}{err}"
    );

    let f = c.fips().get("web").await.unwrap();
    assert_eq!(holder_of(&f).as_deref(), Some("node-2"));
    let enis = floating_enis(&c).await;
    let mut nodes: Vec<&str> = enis.iter().map(|(node, _, _)| node.as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node-1", "node-2"],
        "one floating ENI each: {enis:?}"
    );
    for (node, eni, _) in &enis {
        assert_ne!(
            primary_of(&c, eni).await,
            VIP,
            "{node}'s floating ENI {eni}"
        );
    }
    let on_node2 = enis.iter().find(|(node, _, _)| node == "node-2").unwrap();
    assert_eq!(c.holders(VIP).await, std::slice::from_ref(&on_node2.1));
    assert!(has_vip(&net, 2) && !has_vip(&net, 1));
}

/// Two FloatingIPs declaring one address: the controller acts on the older only (the other is
/// in Conflict), and attach must leave the other alone too. It once claimed both, giving the
/// newer one a holder and a move the controller then undid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_claims_no_floatingip_in_conflict() {
    if !can_netns("attach_claims_no_floatingip_in_conflict") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;
    c.create_fip("web-copy", json!({"address": VIP})).await;

    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "attach: {err}");
    println!("{}", out.trim());
    assert!(
        out.contains("claimed: [web]"),
        "only the owner is claimed: {out}"
    );
    let copy = c.fips().get("web-copy").await.unwrap();
    assert_eq!(
        holder_of(&copy),
        None,
        "no holder for the FloatingIP in Conflict"
    );
    assert!(
        copy.status
            .as_ref()
            .is_none_or(|s| s.pending_move.is_none()),
        "no claim either: {:?}",
        copy.status
    );
    assert_eq!(
        holder_of(&c.fips().get("web").await.unwrap()).as_deref(),
        Some("node-1")
    );
}

/// Finding 3 of the isolation issue: one FloatingIP naming a subnet that does not exist made
/// attach exit 1 on every node (every agent pod crash-looping). Now that FloatingIP is skipped
/// and told why, and the node's work for the others is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_attach_cannot_use_fails_only_its_floatingips() {
    if !can_netns("a_subnet_attach_cannot_use_fails_only_its_floatingips") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip(
        "ghost",
        json!({"address": "10.99.12.10", "subnetId": "subnet-0123456789abcdef0"}),
    )
    .await;
    c.create_fip("web", json!({"address": VIP})).await;
    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    println!("{}", out.trim());
    assert!(ok, "attach must do the node's work for web: {err}");
    assert!(out.contains("claimed: [web]"), "{out}");
    assert!(
        out.contains("skipped subnet subnet-0123456789abcdef0: EC2"),
        "{out}"
    );
    assert!(has_vip(&net, 1));
    let ghost = c.fips().get("ghost").await.unwrap();
    let (status, reason, msg) = condition(&ghost, "AttachFailed").expect("AttachFailed on ghost");
    println!("ghost: AttachFailed {reason}: {msg}");
    assert_eq!(status, "True");
    assert!(reason.starts_with("InvalidSubnetID"), "{reason}");
    assert!(
        msg.starts_with(
            "floatip attach on node-1 could not prepare subnet subnet-0123456789abcdef0"
        ) && msg.contains("check spec.subnetId"),
        "{msg}"
    );
    let web = c.fips().get("web").await.unwrap();
    assert!(condition(&web, "AttachFailed").is_none_or(|(s, _, _)| s == "False"));
}

/// EC2 unreachable is no reason to skip anything: attach fails with one line and the init
/// container is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_fails_with_one_clear_line() {
    if !can_netns("attach_fails_with_one_clear_line") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;
    c.ec2.faults(r#"{"kind": "unavailable"}"#);
    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(!ok, "attach must fail: {out}");
    let last = err.lines().last().unwrap_or_default();
    println!("{last}");
    assert!(last.starts_with("floatip: "), "{err}");
    assert!(last.contains("the init container is retried"), "{last}");
}

/// The security groups EC2 lists for `eni`, sorted.
async fn groups_of(c: &Cluster, eni: &str) -> Vec<String> {
    let out = c
        .aws
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .expect("describe");
    let mut groups: Vec<String> = out.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(String::from))
        .collect();
    groups.sort();
    groups
}

async fn set_groups(c: &Cluster, eni: &str, groups: &[&str]) {
    c.aws
        .modify_network_interface_attribute()
        .network_interface_id(eni)
        .set_groups(Some(groups.iter().map(|g| g.to_string()).collect()))
        .send()
        .await
        .expect("modify groups");
}

async fn default_group(c: &Cluster) -> String {
    let out = c
        .aws
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&c.vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .expect("describe groups");
    out.security_groups()[0].group_id().unwrap().to_string()
}

/// The only floating ENI of the cluster (one node).
async fn the_floating_eni(c: &Cluster) -> String {
    let enis = floating_enis(c).await;
    assert_eq!(enis.len(), 1, "{enis:?}");
    enis[0].1.clone()
}

/// Without groups EC2 gives an ENI the VPC's default group, which admits only its own members:
/// clients could not reach the address. The floating ENI gets the node's primary ENI's groups,
/// and gets them back when they drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floating_eni_carries_the_primary_enis_groups_and_drift_is_corrected() {
    if !can_netns("the_floating_eni_carries_the_primary_enis_groups_and_drift_is_corrected") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;
    let node_group = c.node_security_group.clone();
    let default = default_group(&c).await;
    assert_ne!(node_group, default);

    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "attach: {err}");
    println!("{}", out.trim());
    let eni = the_floating_eni(&c).await;
    assert_eq!(groups_of(&c, &eni).await, [node_group.as_str()]);

    // Someone puts the default group on it; the next attach (a reboot, an agent update) puts
    // the node's groups back and says so in one line.
    set_groups(&c, &eni, &[&default]).await;
    let (ok, out, err) = vpc::attach_with(&c, "node-1", net.node(1), &[("NO_COLOR", "1")]);
    assert!(ok, "second attach: {err}");
    assert!(out.contains("created: []"), "the same ENI: {out}");
    assert_eq!(groups_of(&c, &eni).await, [node_group.as_str()]);
    let logged: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("corrected the floating ENI's security groups"))
        .collect();
    println!("{}", logged.join("\n"));
    assert_eq!(logged.len(), 1, "one line for the change: {err}");
    for part in [
        format!("eni={eni}"),
        format!("old={default}"),
        format!("new={node_group}"),
    ] {
        assert!(logged[0].contains(&part), "{part} missing: {}", logged[0]);
    }

    // Nothing drifted: nothing is modified.
    c.ec2.reset_calls();
    let (ok, _, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "third attach: {err}");
    let calls = c.ec2.calls();
    assert!(
        calls["actions"]
            .get("ModifyNetworkInterfaceAttribute")
            .is_none(),
        "no change without drift: {calls}"
    );
}

/// --security-group-ids (the chart's agent.securityGroupIds) wins over the primary ENI's
/// groups; a group EC2 does not know fails attach with one line naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_ids_override_the_primary_enis_groups() {
    if !can_netns("security_group_ids_override_the_primary_enis_groups") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    c.create_fip("web", json!({"address": VIP})).await;
    let vip_a = security_group(&c.aws, &c.vpc, "vip-a").await;
    let vip_b = security_group(&c.aws, &c.vpc, "vip-b").await;

    let missing = [("FLOATIP_SECURITY_GROUP_IDS", "sg-0123456789abcdef0")];
    let (ok, out, err) = vpc::attach_with(&c, "node-1", net.node(1), &missing);
    assert!(!ok, "attach must fail: {out}");
    let last = err.lines().last().unwrap_or_default();
    println!("{last}");
    assert!(last.contains("InvalidGroup.NotFound"), "{last}");
    assert!(last.contains("check --security-group-ids"), "{last}");
    assert!(floating_enis(&c).await.is_empty(), "nothing was created");

    let both = format!("{vip_a},{vip_b}");
    let (ok, out, err) = vpc::attach_with(
        &c,
        "node-1",
        net.node(1),
        &[("FLOATIP_SECURITY_GROUP_IDS", &both)],
    );
    assert!(ok, "attach: {err}");
    println!("{}", out.trim());
    assert!(out.contains("claimed: [web]"), "{out}");
    let eni = the_floating_eni(&c).await;
    let mut want = vec![vip_a.clone(), vip_b.clone()];
    want.sort();
    assert_eq!(groups_of(&c, &eni).await, want);
    assert!(!want.contains(&c.node_security_group));

    // The flag changed (a chart upgrade): the existing floating ENI follows it.
    let (ok, _, err) = vpc::attach_with(
        &c,
        "node-1",
        net.node(1),
        &[("FLOATIP_SECURITY_GROUP_IDS", &vip_b)],
    );
    assert!(ok, "attach with one group: {err}");
    assert_eq!(groups_of(&c, &eni).await, [vip_b]);
}

/// A RouteTable FloatingIP selecting the node: attach gives the node a floating ENI in the
/// subnet of its primary ENI (no FloatingIP names a subnet) with its source/dest check off,
/// and claims nothing (the controller makes the first routes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_address_gets_a_floating_eni_with_its_check_off() {
    if !can_netns("a_routed_address_gets_a_floating_eni_with_its_check_off") {
        return;
    }
    let c = Cluster::with_layout(1, vpc::layout()).await;
    let net = Vpc::start(&c, Duration::ZERO);
    let table = c
        .aws
        .create_route_table()
        .vpc_id(&c.vpc)
        .send()
        .await
        .unwrap();
    let table = table
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_string();
    c.create_fip(
        "overlay",
        json!({"address": "100.64.0.10", "mode": "RouteTable", "subnetId": null, "routeTableIds": [table]}),
    )
    .await;
    let (ok, out, err) = vpc::attach(&c, "node-1", net.node(1));
    assert!(ok, "attach: {err}");
    println!("{}", out.trim());
    assert!(out.contains("claimed: []"), "{out}");
    let eni = the_floating_eni(&c).await;
    let described = c
        .aws
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    let ni = &described.network_interfaces()[0];
    assert_eq!(
        ni.subnet_id(),
        Some(c.subnet.as_str()),
        "the primary ENI's subnet"
    );
    assert_eq!(ni.source_dest_check(), Some(false));
    let link = net.node(1).ip("-o link show eth1").unwrap();
    assert!(link.contains("UP"), "the floating interface is up: {link}");
}
