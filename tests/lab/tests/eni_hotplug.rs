//! The simulated VPC hot-plugs an ENI as EC2 attaches it (issue 18): the interface appears in
//! the node's namespace once EC2 shows the attachment `attached`, not at the call, and leaves
//! once the detach is done, not while it is `detaching`. Root only; skipped with a message
//! otherwise.

use std::time::{Duration, Instant};

use floatip_lab::cluster::vpc::{self, Vpc};
use floatip_lab::cluster::{Cluster, Layout};
use floatip_lab::ec2::EniDelays;
use floatip_lab::sim::net;

const DELAY: Duration = Duration::from_millis(1000);
/// How long past the delay the node may take to show the change.
const SLACK: Duration = Duration::from_secs(5);

/// The MAC of node `i`'s `eth1`, None while it has none.
fn eth1(net: &Vpc, i: usize) -> Option<String> {
    let out = net.node(i).ip("-o link show eth1").ok()?;
    let mac = out.split("link/ether ").nth(1)?.split_whitespace().next()?;
    Some(mac.to_string())
}

/// Waits until node `i`'s eth1 is `want`; how long after `since` that was.
fn until_eth1(net: &Vpc, i: usize, want: Option<&str>, since: Instant) -> Duration {
    loop {
        let now = eth1(net, i);
        if now.as_deref() == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DELAY + SLACK,
            "node {i}: eth1 is {now:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eni_appears_on_a_node_once_attached_and_leaves_once_detached() {
    let test = "an_eni_appears_on_a_node_once_attached_and_leaves_once_detached";
    if !net::can_netns(test) {
        return;
    }
    let ms = DELAY.as_millis() as u64;
    let layout = Layout {
        eni_delays: EniDelays {
            attach_ms: ms,
            detach_ms: ms,
        },
        ..vpc::layout()
    };
    let c = Cluster::with_layout(2, layout).await;
    let net = Vpc::start(&c, Duration::from_millis(100));
    for i in 1..=2 {
        net.wait_link(i, "eth0", Duration::from_secs(10));
    }
    let created = c
        .aws
        .create_network_interface()
        .subnet_id(&c.subnet)
        .send()
        .await
        .unwrap();
    let created = created.network_interface().unwrap();
    let eni = created.network_interface_id().unwrap().to_string();
    let mac = created.mac_address().unwrap().to_string();
    let attach = |node: usize| {
        c.aws
            .attach_network_interface()
            .network_interface_id(&eni)
            .instance_id(&c.nodes[node - 1].instance)
            .device_index(1)
            .send()
    };

    let called = Instant::now();
    let first = attach(1).await.unwrap();
    assert_eq!(eth1(&net, 1), None, "plugged in while attaching");
    let took = until_eth1(&net, 1, Some(&mac), called);
    assert!(took >= DELAY, "plugged in after {took:?}, before the delay");

    let called = Instant::now();
    c.aws
        .detach_network_interface()
        .attachment_id(first.attachment_id().unwrap())
        .send()
        .await
        .unwrap();
    std::thread::sleep(DELAY / 2);
    assert_eq!(
        eth1(&net, 1).as_deref(),
        Some(&*mac),
        "unplugged while detaching"
    );
    let took = until_eth1(&net, 1, None, called);
    assert!(took >= DELAY, "unplugged after {took:?}, before the delay");

    let called = Instant::now();
    attach(2).await.unwrap();
    assert_eq!(eth1(&net, 2), None, "plugged in while attaching");
    let took = until_eth1(&net, 2, Some(&mac), called);
    assert!(took >= DELAY, "plugged in after {took:?}, before the delay");
    assert_eq!(eth1(&net, 1), None, "left behind on node 1");
}
