//! ENI attachments take EC2's time (issue 18): `attaching` / `detaching` for the configured
//! delay, then `attached` / gone; and EC2's refusals, which moto does not make.

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{AttachmentStatus, NetworkInterfaceStatus};
use aws_sdk_ec2::Client;
use floatip_lab::process::Ec2Lab;

use super::world;

/// Long enough that a Describe right after the call comes before it ends on a busy machine.
const DELAY: Duration = Duration::from_millis(1000);
/// How long past the delay a transition may take to show as done.
const SLACK: Duration = Duration::from_secs(3);

fn lab() -> Ec2Lab {
    let ms = DELAY.as_millis().to_string();
    Ec2Lab::start_with(&["--eni-attach-ms", &ms, "--eni-detach-ms", &ms])
}

/// The ENI's status and its attachment's (id, instance, status), as DescribeNetworkInterfaces
/// shows them.
async fn state(
    ec2: &Client,
    eni: &str,
) -> (
    Option<NetworkInterfaceStatus>,
    Option<(String, String, AttachmentStatus)>,
) {
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    let ni = &out.network_interfaces()[0];
    let att = ni.attachment().map(|a| {
        (
            a.attachment_id().unwrap().to_owned(),
            a.instance_id().unwrap().to_owned(),
            a.status().unwrap().clone(),
        )
    });
    (ni.status().cloned(), att)
}

/// The status DescribeInstances shows for `eni`'s attachment on `instance`.
async fn instance_view(ec2: &Client, instance: &str, eni: &str) -> Option<AttachmentStatus> {
    let out = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    let nis = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.network_interfaces());
    nis.filter(|n| n.network_interface_id() == Some(eni))
        .find_map(|n| n.attachment()?.status().cloned())
}

/// Waits for `done` to hold of the ENI's state; how long after `since` it first did.
async fn until<F>(ec2: &Client, eni: &str, since: Instant, done: F) -> Duration
where
    F: Fn(
        &(
            Option<NetworkInterfaceStatus>,
            Option<(String, String, AttachmentStatus)>,
        ),
    ) -> bool,
{
    loop {
        let s = state(ec2, eni).await;
        if done(&s) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DELAY + SLACK,
            "{eni} did not finish its transition: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn new_eni(ec2: &Client, subnet: &str) -> String {
    let out = ec2
        .create_network_interface()
        .subnet_id(subnet)
        .send()
        .await
        .unwrap();
    out.network_interface()
        .and_then(|e| e.network_interface_id())
        .unwrap()
        .to_owned()
}

async fn attach(ec2: &Client, eni: &str, instance: &str, device: i32) -> Result<String, String> {
    let out = ec2
        .attach_network_interface()
        .network_interface_id(eni)
        .instance_id(instance)
        .device_index(device)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.attachment_id().unwrap().to_owned()),
        Err(err) => Err(err.code().unwrap_or("(no code)").to_owned()),
    }
}

#[tokio::test]
async fn an_eni_moves_between_instances_through_attaching_and_detaching() {
    let lab = lab();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let (one, two) = (&w.instances[0], &w.instances[1]);
    let eni = new_eni(&ec2, &w.subnet).await;

    let called = Instant::now();
    let first = attach(&ec2, &eni, one, 1).await.unwrap();
    let (status, att) = state(&ec2, &eni).await;
    assert_eq!(status, Some(NetworkInterfaceStatus::InUse));
    assert_eq!(
        att,
        Some((first.clone(), one.clone(), AttachmentStatus::Attaching))
    );
    assert_eq!(
        instance_view(&ec2, one, &eni).await,
        Some(AttachmentStatus::Attaching)
    );
    let pending = lab.control_json("GET", "/_lab/attachments", "");
    assert_eq!(pending["attaching"], serde_json::json!([first]));
    assert_eq!(pending["attaching_enis"], serde_json::json!([eni]));
    // Attaching is in use: neither another attach nor a delete is taken.
    assert_eq!(
        attach(&ec2, &eni, two, 1).await.unwrap_err(),
        "InvalidNetworkInterface.InUse"
    );
    let took = until(&ec2, &eni, called, |(_, a)| {
        a.as_ref()
            .is_some_and(|a| a.2 == AttachmentStatus::Attached)
    })
    .await;
    assert!(took >= DELAY, "attached after {took:?}, before the delay");
    assert_eq!(
        instance_view(&ec2, one, &eni).await,
        Some(AttachmentStatus::Attached)
    );

    let called = Instant::now();
    ec2.detach_network_interface()
        .attachment_id(&first)
        .force(true)
        .send()
        .await
        .unwrap();
    let (status, att) = state(&ec2, &eni).await;
    assert_eq!(status, Some(NetworkInterfaceStatus::InUse));
    assert_eq!(
        att,
        Some((first.clone(), one.clone(), AttachmentStatus::Detaching))
    );
    assert_eq!(
        attach(&ec2, &eni, two, 1).await.unwrap_err(),
        "InvalidNetworkInterface.InUse"
    );
    let delete = ec2
        .delete_network_interface()
        .network_interface_id(&eni)
        .send()
        .await;
    assert_eq!(
        delete.unwrap_err().code(),
        Some("InvalidNetworkInterface.InUse")
    );
    let took = until(&ec2, &eni, called, |(s, a)| {
        a.is_none() && *s == Some(NetworkInterfaceStatus::Available)
    })
    .await;
    assert!(took >= DELAY, "detached after {took:?}, before the delay");
    assert_eq!(instance_view(&ec2, one, &eni).await, None);

    let called = Instant::now();
    let second = attach(&ec2, &eni, two, 1).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        state(&ec2, &eni).await.1,
        Some((second.clone(), two.clone(), AttachmentStatus::Attaching))
    );
    let took = until(&ec2, &eni, called, |(_, a)| {
        a.as_ref()
            .is_some_and(|a| a.2 == AttachmentStatus::Attached)
    })
    .await;
    assert!(took >= DELAY, "attached after {took:?}, before the delay");
    assert_eq!(
        lab.control_json("GET", "/_lab/attachments", "")["attaching"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn attaches_ec2_refuses_are_refused_and_change_nothing() {
    let lab = lab();
    let ec2 = lab.client();
    let w = world(&ec2).await;
    let one = &w.instances[0];
    let enis = [
        new_eni(&ec2, &w.subnet).await,
        new_eni(&ec2, &w.subnet).await,
        new_eni(&ec2, &w.subnet).await,
    ];

    // Device 0 is the primary ENI's.
    assert_eq!(
        attach(&ec2, &enis[0], one, 0).await.unwrap_err(),
        "InvalidParameterValue"
    );
    assert_eq!(state(&ec2, &enis[0]).await.1, None);
    attach(&ec2, &enis[0], one, 1).await.unwrap();
    // An attachment still attaching holds its device index and its slot.
    assert_eq!(
        attach(&ec2, &enis[1], one, 1).await.unwrap_err(),
        "InvalidParameterValue"
    );
    attach(&ec2, &enis[1], one, 2).await.unwrap();
    // m5.large takes 3 network interfaces (DescribeInstanceTypes).
    assert_eq!(
        attach(&ec2, &enis[2], one, 3).await.unwrap_err(),
        "AttachmentLimitExceeded"
    );
    assert_eq!(state(&ec2, &enis[2]).await.1, None);
    let on_one = ec2
        .describe_network_interfaces()
        .filters(super::filter("attachment.instance-id", one))
        .send()
        .await
        .unwrap();
    assert_eq!(on_one.network_interfaces().len(), 3);

    // An attachment EC2 does not know is moto's to refuse, at once.
    let unknown = ec2
        .detach_network_interface()
        .attachment_id("eni-attach-0123456789abcdef0")
        .send()
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
}
