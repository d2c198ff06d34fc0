//! Graceful handover on SIGTERM (drain, rollout): ask for the addresses to be moved away, keep
//! serving them until the controller has moved them (or the grace period ends), then clean up.

use std::time::Duration;

use tokio::time::Instant;

use super::Agent;
use crate::api::{HANDOVER_ANNOTATION, HANDOVER_REQUESTED};

/// Annotates the agent's own Pod so the controller moves this node's addresses proactively.
pub async fn request(client: &kube::Client, namespace: &str, pod: &str) -> Result<(), kube::Error> {
    super::pod::annotate(
        client,
        namespace,
        pod,
        HANDOVER_ANNOTATION,
        HANDOVER_REQUESTED,
    )
    .await
}

/// Runs the handover to the end: returns once nothing is held here any more (and the release
/// delay has passed) or `grace` is over, with floatip's addresses and routing removed.
pub async fn run(agent: &mut Agent, grace: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + grace;
    match (&agent.args.pod_namespace, &agent.args.pod_name) {
        (Some(ns), Some(pod)) => match request(&agent.client, ns, pod).await {
            Ok(()) => tracing::info!(
                pod,
                "SIGTERM: asked the controller to move this node's addresses away"
            ),
            Err(e) => {
                tracing::warn!(pod, error = %e, "SIGTERM: could not annotate the pod; the controller notices the terminating pod instead")
            }
        },
        _ => tracing::warn!("SIGTERM: POD_NAME/POD_NAMESPACE unknown, cannot annotate the pod"),
    }
    loop {
        let holding = agent.reconcile().await;
        if !holding {
            tracing::info!("handover done: no address is held or kept here");
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                ?grace,
                "grace period over while still holding addresses; removing them"
            );
            break;
        }
        let wake = agent
            .departing
            .next_wake()
            .map(tokio::time::Instant::from_std)
            .map_or(deadline, |w| w.min(deadline));
        tokio::select! {
            _ = agent.changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let report = agent.host.apply(Vec::new()).await?;
    tracing::info!(removed = ?report.removed, "removed floatip's addresses and routing; exiting");
    Ok(())
}
