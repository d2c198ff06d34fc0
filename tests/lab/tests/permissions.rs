//! The permissions the chart and deploy/'s IAM policies grant are the ones the binaries use.
//!
//! The simulated VPC runs the real binaries, each as the identity the chart gives it: a
//! kubeconfig whose bearer token names its ServiceAccount (`floatip attach` and `floatip agent`
//! run as the agent's, in the same pod) and an AWS access key ID naming its IAM role. The lab's
//! API server records every request with its user (`/_lab/audit`), the EC2 lab every Action
//! with its caller (`/_lab/calls`). The run goes through first attach, an attach correcting a
//! floating ENI's drifted security groups, a failover by handover, an attach whose claim EC2
//! refuses, the clean-up of a deleted node's floating ENI after a leader change, and the
//! deletion of FloatingIPs. Then every recorded request must be allowed
//! by the Roles and ClusterRoles the chart renders, every EC2 Action by that role's policy; and
//! every granted verb and Action must have been needed, except the few named below with the
//! reason.
//!
//! Root only (network namespaces); skipped with a message otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use aws_sdk_ec2::types::Filter;
use floatip::api::FloatingIP;
use floatip_lab::chart::iam::Policy;
use floatip_lab::chart::rbac::{self, Rbac};
use floatip_lab::chart::{self, Request};
use floatip_lab::repo_root;
use floatip_lab::sim::flavor::Flavor;
use floatip_lab::sim::{http, identity, isolated, net, Binaries, Options, Sim, NAMESPACE};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use serde_json::{json, Value};

fn binaries() -> Binaries {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_floatip-lab"));
    Binaries::beside(lab.clone(), false)
        .or_else(|_| Binaries::beside(lab, true))
        .expect("the floatip binary")
}

/// What the run recorded.
struct Recorded {
    kube: Vec<rbac::Request>,
    /// caller (access key ID) -> EC2 Action -> calls
    ec2: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The security groups of `node`'s floating ENI, sorted, and the ENI's ID and VPC.
async fn floating_groups(sim: &Sim, node: &str) -> anyhow::Result<(String, String, Vec<String>)> {
    let out = sim
        .direct
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("tag:floatip.io/node")
                .values(node)
                .build(),
        )
        .send()
        .await?;
    let eni = out
        .network_interfaces()
        .first()
        .with_context(|| format!("{node}'s floating ENI"))?;
    let mut groups: Vec<String> = eni
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(String::from))
        .collect();
    groups.sort();
    Ok((
        eni.network_interface_id().unwrap_or_default().to_string(),
        eni.vpc_id().unwrap_or_default().to_string(),
        groups,
    ))
}

/// Someone puts the VPC's default group on `node`'s floating ENI; attach puts its groups back.
async fn drift_and_correct(sim: &Sim, node: &str) -> anyhow::Result<()> {
    let (eni, vpc, wanted) = floating_groups(sim, node).await?;
    let default = sim
        .direct
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await?;
    let default = default
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .context("the VPC's default group")?
        .to_string();
    anyhow::ensure!(
        !wanted.contains(&default),
        "{node}'s floating ENI {eni} has the VPC's default group: {wanted:?}"
    );
    sim.direct
        .modify_network_interface_attribute()
        .network_interface_id(&eni)
        .groups(&default)
        .send()
        .await?;
    sim.attach(node)?;
    let (_, _, now) = floating_groups(sim, node).await?;
    anyhow::ensure!(
        now == wanted,
        "attach left {eni} with {now:?}, not {wanted:?}"
    );
    Ok(())
}

/// Drives the binaries through their paths; returns what the labs recorded.
async fn drive(mut sim: Sim) -> anyhow::Result<Recorded> {
    let from = sim.settle(Duration::from_secs(30)).await?;
    // The controller places the other kinds (and associates their Elastic IPs) before any
    // attach below could claim them.
    for kind in [
        Flavor::SecondaryIpElastic,
        Flavor::ElasticIp,
        Flavor::Ipv6,
        Flavor::RouteTable,
        Flavor::Interface,
    ] {
        sim.settle_flavor(kind, Duration::from_secs(30)).await?;
    }
    let other = sim
        .nodes
        .iter()
        .find(|n| n.name != from)
        .context("a second node")?
        .name
        .clone();
    drift_and_correct(&sim, &other).await?;

    // Handover: the holder's agent gets SIGTERM, annotates its pod, the controller moves the
    // address, the agent cleans up and exits.
    let agent = sim
        .nodes
        .iter()
        .find(|n| n.name == from)
        .and_then(|n| n.agent.as_ref())
        .context("the holder's agent")?;
    agent.signal("TERM");
    let moved = sim
        .wait_fip("the handover", Duration::from_secs(20), |f| {
            f.status
                .as_ref()
                .and_then(|s| s.holder.as_ref())
                .is_some_and(|h| h.node != from)
        })
        .await?;
    let reason = moved.status.and_then(|s| s.last_move).map(|m| m.reason);
    anyhow::ensure!(
        reason.as_ref().map(|r| r.as_str()) == Some("Handover"),
        "moved for {reason:?}, not Handover"
    );
    let node = sim.nodes.iter_mut().find(|n| n.name == from).unwrap();
    let exit = node.agent.as_mut().unwrap().wait(Duration::from_secs(25));
    anyhow::ensure!(exit == Some(0), "the agent exited with {exit:?}");

    // A claim whose EC2 call fails: attach on the handed-over node claims a FloatingIP only
    // that node may hold (the controller leaves it alone: the node's agent is leaving), EC2
    // refuses the assignment, and attach reads the FloatingIP back to drop its claim.
    let claimable = format!(
        "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata:\n  name: web2\nspec:\n  address: 10.99.8.199\n  subnetId: {}\n  nodeSelector:\n    matchLabels:\n      kubernetes.io/hostname: {from}\n",
        sim.subnet
    );
    let out = sim.kubectl(&["apply", "-f", "-"], Some(&claimable))?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fips: Api<FloatingIP> = Api::all(sim.client.clone());
    let settled = |f: &FloatingIP| {
        f.finalizers().iter().any(|x| x == "floatip.io/release")
            && f.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "NoCandidates" && c.status == "True")
            })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let web2 = fips.get("web2").await?;
        if settled(&web2) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the controller did not find web2 without candidates: {:?}",
            web2.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.ec2_fault(
        json!({"kind": "unauthorized", "count": 1, "action": "AssignPrivateIpAddresses"}),
    )?;
    let refused = sim.attach(&from);
    sim.ec2_clear_faults()?;
    match refused {
        Err(e) if format!("{e:#}").contains("UnauthorizedOperation") => {}
        other => anyhow::bail!("attach with EC2 refusing the claim: {other:?}"),
    }
    let web2 = fips.get("web2").await?;
    anyhow::ensure!(
        web2.status.and_then(|s| s.pending_move).is_none(),
        "attach left its failed claim on web2"
    );

    // The node goes away for good: its Node is deleted and EC2 detaches its floating ENI, which
    // the next leader's first full pass deletes.
    Api::<Node>::all(sim.client.clone())
        .delete(&from, &DeleteParams::default())
        .await?;
    let enis = sim
        .direct
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("tag:floatip.io/node")
                .values(&from)
                .build(),
        )
        .send()
        .await?;
    let eni = enis
        .network_interfaces()
        .first()
        .context("the node's floating ENI")?;
    let eni_id = eni.network_interface_id().unwrap_or_default().to_string();
    let attachment = eni
        .attachment()
        .and_then(|a| a.attachment_id())
        .context("the floating ENI is attached")?;
    sim.direct
        .detach_network_interface()
        .attachment_id(attachment)
        .force(true)
        .send()
        .await?;
    sim.kill9_leader()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let gone = sim
            .direct
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(&eni_id)
                    .build(),
            )
            .send()
            .await?
            .network_interfaces()
            .is_empty();
        if gone {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the new leader did not delete {eni_id}, the floating ENI of deleted node {from}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleting the FloatingIPs: the controller takes each address off its ENI (the Elastic
    // IP of web-public off its holder), then releases the finalizer; kubectl waits for the
    // objects to go.
    let all = [
        "web",
        "web2",
        "web-eip",
        "web-public",
        "web6",
        "web-routed",
        "web-eni",
    ];
    let out = sim.kubectl(
        &[&["delete", "fip"][..], &all, &["--timeout=30s"]].concat(),
        None,
    )?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl delete fip {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        Flavor::SecondaryIpElastic,
        Flavor::ElasticIp,
        Flavor::Ipv6,
        Flavor::RouteTable,
        Flavor::Interface,
    ] {
        let left = sim.ec2_holders_for(kind).await?;
        anyhow::ensure!(left.is_empty(), "{} is still held by {left:?}", kind.name());
    }
    anyhow::ensure!(
        sim.ec2_holders().await?.is_empty(),
        "the address is still assigned"
    );
    // Let the agents see the deletion.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let audit: Value = serde_json::from_str(&http(&sim.kube_addr, "GET", "/_lab/audit", "")?)?;
    let kube = serde_json::from_value(audit["requests"].clone())?;
    let calls = sim.ec2_calls()?;
    let ec2 = serde_json::from_value(calls["callers"].clone())?;
    Ok(Recorded { kube, ec2 })
}

fn render_chart() -> chart::Rendered {
    let mut req = Request::new(repo_root().join("charts/floatip"));
    req.set = vec![
        ("clusterName".into(), json!("lab")),
        ("aws.region".into(), json!("us-west-2")),
    ];
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("lab-venv");
    let python = std::env::var_os("LAB_PYTHON").unwrap_or_else(|| "python3".into());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(chart::render(&root, Path::new(&python), &req))
        .expect("the chart renders")
}

/// `(role, rule index, verb)` as `Role resources verb`, for messages.
fn describe(objects: &[Value], grant: &(String, usize, String)) -> String {
    let (role, index, verb) = grant;
    let rule = objects
        .iter()
        .find(|o| {
            let kind = o["kind"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            match o["metadata"]["namespace"].as_str() {
                Some(ns) => role == &format!("{kind}/{ns}/{name}"),
                None => role == &format!("{kind}/{name}"),
            }
        })
        .map(|o| o["rules"][*index]["resources"].clone())
        .unwrap_or_default();
    let resources: Vec<&str> = rule
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!("{role} {} {verb}", resources.join(","))
}

#[test]
fn binaries_use_exactly_what_the_chart_and_iam_policies_grant() {
    if let Some(why) = net::unavailable() {
        eprintln!("SKIP binaries_use_exactly_what_the_chart_and_iam_policies_grant: the simulated VPC {why}");
        return;
    }
    let rendered = render_chart();
    let objects = rendered.objects();
    for sa in [identity::CONTROLLER_SA, identity::AGENT_SA] {
        assert!(
            rendered.find("ServiceAccount", sa).is_some_and(|o| o["metadata"]["namespace"] == NAMESPACE),
            "the simulation runs as ServiceAccount {NAMESPACE}/{sa}, which the chart does not render"
        );
    }

    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("permissions");
    let _ = std::fs::remove_dir_all(&logs);
    // Every address kind, so that the Elastic IP and IPv6 calls are made and checked too.
    let opts = Options {
        log_dir: Some(logs.clone()),
        // Interface too, with short attachment delays: its moves need the controller's
        // AttachNetworkInterface and DetachNetworkInterface.
        flavors: [&Flavor::ALL[..], &[Flavor::Interface]].concat(),
        eni_delays: floatip_lab::ec2::EniDelays {
            attach_ms: 300,
            detach_ms: 500,
        },
        ..Options::default()
    };
    let bins = binaries();
    let recorded = isolated(move |infra| async move {
        let sim = Sim::start(&infra, bins, opts).await?;
        drive(sim).await
    })
    .unwrap_or_else(|e| panic!("{e:#} (logs in {})", logs.display()));

    // Kubernetes: every request of a floatip ServiceAccount is granted by the chart's RBAC.
    let ours: Vec<rbac::Request> = recorded
        .kube
        .into_iter()
        .filter(|r| r.user.starts_with("system:serviceaccount:"))
        .collect();
    for sa in [identity::CONTROLLER_SA, identity::AGENT_SA] {
        let user = identity::user(NAMESPACE, sa);
        let made: BTreeSet<String> = ours
            .iter()
            .filter(|r| r.user == user)
            .map(|r| {
                let res = match &r.subresource {
                    Some(s) => format!("{}/{s}", r.resource),
                    None => r.resource.clone(),
                };
                format!("{} {res}", r.verb)
            })
            .collect();
        assert!(!made.is_empty(), "no request recorded for {user}");
        println!("{sa}: {}", made.into_iter().collect::<Vec<_>>().join(", "));
    }
    let rbac = Rbac::from_objects(&objects).expect("the chart's RBAC");
    let report = rbac.check(&ours);
    let denied: Vec<String> = report.denied.iter().map(|r| format!("  {r}")).collect();
    assert!(
        denied.is_empty(),
        "the chart's RBAC does not grant these requests the binaries made (charts/floatip/templates/rbac.yaml):\n{}",
        denied.join("\n")
    );
    // Every granted verb was needed, save one.
    let unused: Vec<String> = rbac
        .granted()
        .difference(&report.used)
        .map(|g| describe(&objects, g))
        .collect();
    assert_eq!(
        unused,
        // Only API servers enforcing finalizer permissions (OwnerReferencesPermissionEnforcement,
        // as OpenShift does) check it; kube-apiserver's defaults and the lab do not.
        ["ClusterRole/floatip-controller floatingips/finalizers update"],
        "granted but never needed: narrow charts/floatip/templates/rbac.yaml"
    );
    // Each needed grant is the only one covering its requests: taking it out is caught.
    for grant in &report.used {
        let cut = rbac::without(&objects, &grant.0, grant.1, &grant.2);
        let denied = Rbac::from_objects(&cut).unwrap().check(&ours).denied;
        assert!(
            !denied.is_empty(),
            "without {} nothing is denied",
            describe(&objects, grant)
        );
        println!(
            "without {}: denied {}",
            describe(&objects, grant),
            denied[0]
        );
    }

    // EC2: each caller's Actions are allowed by its role's policy, and each allowed Action
    // was needed, save two of the agent's that this run may not need: its IPv6 claim
    // (`floatip attach` claims an IPv6 address only when it is created before the node
    // starts, which this run does not do), and deleting a new floating ENI that EC2 gave a
    // FloatingIP's address as its primary (moto picks a new ENI's address at random).
    for (sa, file, maybe_unneeded) in [
        (
            identity::CONTROLLER_SA,
            "deploy/iam-policy-controller.json",
            &[][..],
        ),
        (
            identity::AGENT_SA,
            "deploy/iam-policy-agent.json",
            &["ec2:AssignIpv6Addresses", "ec2:DeleteNetworkInterface"][..],
        ),
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
        let policy = Policy::parse(&text).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let called: BTreeSet<String> = recorded
            .ec2
            .get(sa)
            .unwrap_or_else(|| panic!("no EC2 call recorded for {sa}"))
            .keys()
            .map(|a| format!("ec2:{a}"))
            .collect();
        println!(
            "{sa} called {}",
            called.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let refused: Vec<&String> = called
            .iter()
            .filter(|a| policy.allows(a).is_none())
            .collect();
        assert!(
            refused.is_empty(),
            "{file} does not allow {refused:?}, which {sa} called"
        );
        let unused: Vec<String> = policy
            .allowed_actions()
            .difference(&called)
            .cloned()
            .collect();
        let unneeded: Vec<&String> = (unused.iter())
            .filter(|a| !maybe_unneeded.contains(&a.as_str()))
            .collect();
        assert!(
            unneeded.is_empty(),
            "{file} allows actions {sa} never needed: {unneeded:?}"
        );
        for action in &called {
            assert!(
                policy.without(action).allows(action).is_none(),
                "{file}: taking {action} out still allows it"
            );
        }
    }
}
