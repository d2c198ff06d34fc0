//! Interface mode's calls through floatip's adapter (issue 18): an ENI made with the address
//! as its primary, moved whole between instances through the lab's attach and detach delays,
//! attached to at most one instance throughout; and a full target refused with no mutating
//! call.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use floatip::cloud::aws::Ec2;
use floatip::cloud::{AttachmentStatus, Cloud, TAG_CLUSTER};
use floatip::metrics::Metrics;
use floatip::mode::interface::{move_eni, verify, TAG_FLOATINGIP};
use floatip_lab::process::Ec2Lab;

use super::{world, VIP};

const DELAY_MS: &str = "400";

fn lab() -> Ec2Lab {
    Ec2Lab::start_with(&["--eni-attach-ms", DELAY_MS, "--eni-detach-ms", DELAY_MS])
}

fn within(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// The instances DescribeNetworkInterfaces shows the ENI bound to (attaching, attached or
/// detaching): never more than one.
async fn bound_to(ec2: &Ec2, eni: &str) -> Vec<String> {
    let a = ec2.attachment(eni).await.unwrap();
    a.filter(|a| a.status.bound())
        .map(|a| a.instance_id)
        .into_iter()
        .collect()
}

/// A security group of the world's VPC, for the ENIs the tests make.
async fn group(client: &Client, vpc: &str) -> Vec<String> {
    let out = client
        .create_security_group()
        .group_name("floatip-test")
        .description("floatip test")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap();
    vec![out.group_id().unwrap().to_owned()]
}

async fn vip_eni(ec2: &Ec2, subnet: &str, sg: &[String]) -> String {
    let tags = [(TAG_CLUSTER, "lab"), (TAG_FLOATINGIP, "web")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let vip: IpAddr = VIP.parse().unwrap();
    let eni = (ec2
        .create_address_eni(subnet, vip, "floatip web", sg, &tags)
        .await)
        .unwrap();
    assert_eq!(eni.primary_ip, Some(vip));
    assert_eq!(eni.tags, tags);
    assert_eq!(eni.instance_id, None);
    eni.id
}

#[tokio::test]
async fn an_eni_moves_whole_and_is_bound_to_one_instance_at_most_throughout() {
    let lab = lab();
    let w = world(&lab.client()).await;
    let ec2 = Ec2::with_client(lab.client(), Metrics::new());
    let sg = group(&lab.client(), &w.vpc).await;
    let eni = vip_eni(&ec2, &w.subnet, &sg).await;
    let (a, b) = (&w.instances[0], &w.instances[1]);
    // A second ENI with the same address (another node's attach racing) is refused.
    let tags = Default::default();
    let again = ec2.create_address_eni(&w.subnet, VIP.parse().unwrap(), "again", &sg, &tags);
    assert_eq!(again.await.unwrap_err().code, "InvalidIPAddress.InUse");

    move_eni(&ec2, &eni, a, within(30)).await.unwrap();
    let first = ec2.attachment(&eni).await.unwrap().unwrap();
    assert_eq!(first.instance_id, *a);
    assert_eq!(first.device_index, Some(1));
    // EC2 answered at once; the lab shows it attaching for its delay.
    assert_eq!(first.status, AttachmentStatus::Attaching);
    verify(&ec2, &eni, a, within(30)).await.unwrap();

    // Move it while a watcher reads EC2 as fast as it answers.
    let watch = async {
        let mut seen = Vec::new();
        loop {
            let on = bound_to(&ec2, &eni).await;
            assert!(on.len() <= 1, "{eni} bound to {on:?}");
            if seen.last() != Some(&on) {
                seen.push(on.clone());
            }
            if on == [b.clone()] {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (moved, seen) = tokio::join!(move_eni(&ec2, &eni, b, within(30)), watch);
    moved.unwrap();
    // From a to b (free in between, unless the watcher read past that moment).
    assert_eq!(seen.first(), Some(&vec![a.clone()]), "{seen:?}");
    assert_eq!(seen.last(), Some(&vec![b.clone()]), "{seen:?}");
    verify(&ec2, &eni, b, within(30)).await.unwrap();
    let now = ec2.attachment(&eni).await.unwrap().unwrap();
    assert_eq!(now.status, AttachmentStatus::Attached);
    assert_ne!(now.id, first.id, "a new attachment");
}

#[tokio::test]
async fn a_target_with_every_interface_slot_taken_is_refused_with_no_mutating_call() {
    let lab = lab();
    let client: Client = lab.client();
    let w = world(&client).await;
    let ec2 = Ec2::with_client(lab.client(), Metrics::new());
    let sg = group(&client, &w.vpc).await;
    let eni = vip_eni(&ec2, &w.subnet, &sg).await;
    let (a, b) = (&w.instances[0], &w.instances[1]);
    move_eni(&ec2, &eni, a, within(30)).await.unwrap();
    verify(&ec2, &eni, a, within(30)).await.unwrap();
    // m5.large takes 3 network interfaces: fill b's two free slots.
    for index in [1, 2] {
        let other = ec2
            .create_eni(&w.subnet, "filler", &sg, &Default::default())
            .await
            .unwrap();
        ec2.attach_eni(&other.id, b, index).await.unwrap();
    }
    let before = ec2.attachment(&eni).await.unwrap().unwrap();
    lab.reset_calls();

    let e = move_eni(&ec2, &eni, b, within(30)).await.unwrap_err();
    assert_eq!(e.code, "NoFreeDeviceIndex");
    assert!(!e.retryable());
    assert_eq!(lab.calls()["mutating"], 0, "{}", lab.calls());
    assert_eq!(ec2.attachment(&eni).await.unwrap(), Some(before));
}

#[tokio::test]
async fn instance_state_says_whether_a_plain_detach_is_answered() {
    let lab = lab();
    let client = lab.client();
    let w = world(&client).await;
    let ec2 = Ec2::with_client(lab.client(), Metrics::new());
    let a = &w.instances[0];
    assert_eq!(
        ec2.instance_state(a).await.unwrap().as_deref(),
        Some("running")
    );
    client
        .stop_instances()
        .instance_ids(a)
        .send()
        .await
        .unwrap();
    let stopped = ec2.instance_state(a).await.unwrap();
    assert!(
        matches!(stopped.as_deref(), Some("stopping" | "stopped")),
        "{stopped:?}"
    );
    let gone = ec2.instance_state("i-0123456789abcdef0").await.unwrap();
    assert_eq!(gone, None);
}
