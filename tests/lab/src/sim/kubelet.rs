//! A kubelet stand-in for agent pods: the lab has no kubelet, so nothing else would turn an
//! agent's /readyz into its pod's Ready condition, which the controller's `--require-agent`
//! trusts. For each running agent it probes /readyz as the chart's readinessProbe does (every
//! period, with a timeout, Ready after `success_threshold` passes in a row and not Ready after
//! `failure_threshold` failures in a row) and writes the pod's Ready condition through the
//! status subresource whenever it changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// An HTTP readiness probe's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// The agent container's readinessProbe in charts/floatip/templates/agent.yaml (the chart
/// tests check the two agree).
pub const AGENT_READINESS: Probe = Probe {
    period: Duration::from_secs(2),
    timeout: Duration::from_secs(1),
    success_threshold: 1,
    failure_threshold: 2,
};

/// The kubelet's counting of probe results for one container. A container starts not ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub ready: bool,
    /// Results in a row that disagree with `ready`.
    against: u32,
}

impl ProbeState {
    /// Counts one result; returns whether the container is ready now.
    ///
    /// | ready | result | results in a row against `ready` | ready after |
    /// |---|---|---|---|
    /// | no | pass | `success_threshold` | yes |
    /// | yes | fail | `failure_threshold` | no |
    /// | any | agrees with `ready` | (reset to 0) | unchanged |
    pub fn observe(&mut self, passed: bool, probe: &Probe) -> bool {
        if passed == self.ready {
            self.against = 0;
            return self.ready;
        }
        self.against += 1;
        let needed = if passed {
            probe.success_threshold
        } else {
            probe.failure_threshold
        };
        if self.against >= needed.max(1) {
            self.ready = passed;
            self.against = 0;
        }
        self.ready
    }
}

/// Probes agent pods in `namespace` and writes their Ready condition. Dropping it stops every
/// probe and leaves the conditions as they were last written.
pub struct Kubelet {
    pods: Api<Pod>,
    probe: Probe,
    probing: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Kubelet {
    pub fn new(client: kube::Client, namespace: &str, probe: Probe) -> Self {
        Self {
            pods: Api::namespaced(client, namespace),
            probe,
            probing: Mutex::default(),
        }
    }

    /// `pod`'s container (re)started and serves its probes on `admin`: it is not ready until its
    /// first passing probe, then follows the probes. Replaces earlier probing of the pod. Needs
    /// a Tokio runtime.
    pub fn container_started(&self, pod: &str, admin: SocketAddr) {
        let task = tokio::spawn(probe_loop(
            self.pods.clone(),
            pod.to_string(),
            admin,
            self.probe,
        ));
        if let Some(old) = self.lock().insert(pod.to_string(), task) {
            old.abort();
        }
    }

    /// `pod`'s node died with its kubelet: nobody probes it or writes its status any more, so
    /// its Ready condition stays as it was (Kubernetes' node lifecycle controller would change
    /// it after minutes; the controller acts on the node's failed health checks first).
    pub fn node_died(&self, pod: &str) {
        self.container_stopped(pod);
    }

    /// `pod`'s container stopped (its pod is being replaced): its probes stop, so none of them
    /// writes to the pod that replaces it under the same name.
    pub fn container_stopped(&self, pod: &str) {
        if let Some(task) = self.lock().remove(pod) {
            task.abort();
        }
    }

    /// Waits until every pod in `pods` is Ready, as the API server has it.
    pub async fn wait_ready(&self, pods: &[String], timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for pod in pods {
            loop {
                let ready = self.pods.get_status(pod).await.is_ok_and(|p| {
                    p.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if ready {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{pod} was not Ready within {timeout:?}: its agent's /readyz kept failing (see its log)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.probing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for (_, task) in self.lock().drain() {
            task.abort();
        }
    }
}

async fn probe_loop(pods: Api<Pod>, pod: String, admin: SocketAddr, probe: Probe) {
    let mut state = ProbeState::default();
    // A new container is not ready until a probe passes, whatever its pod said before.
    let mut written = write_ready(&pods, &pod, false).await.ok().map(|()| false);
    let mut every = tokio::time::interval(probe.period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let passed = matches!(
            http_get(admin, "/readyz", probe.timeout).await,
            Ok((200..=399, _))
        );
        let ready = state.observe(passed, &probe);
        if written == Some(ready) {
            continue;
        }
        // A failed write is tried again at the next probe, as the kubelet's status manager does.
        match write_ready(&pods, &pod, ready).await {
            Ok(()) => written = Some(ready),
            Err(e) => tracing::warn!(pod, error = %e, "kubelet stand-in: writing Ready failed"),
        }
    }
}

/// Sets the pod's Ready condition (the only condition the lab's agent pods carry).
async fn write_ready(pods: &Api<Pod>, pod: &str, ready: bool) -> kube::Result<()> {
    let mut condition = json!({
        "type": "Ready",
        "status": if ready { "True" } else { "False" },
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    });
    if !ready {
        condition["reason"] = json!("ContainersNotReady");
        condition["message"] = json!("containers with unready status: [agent]");
    }
    let patch = json!({"status": {"conditions": [condition]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

/// One HTTP/1.1 GET, as the kubelet's httpGet probe sends it: the status code and body, or an
/// error when nothing answered within `timeout`.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    tokio::time::timeout(timeout, async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/lab\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP response")?;
        let Some(code) = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
        else {
            bail!("no status code in {:?}", head.lines().next());
        };
        Ok((code, body.to_string()))
    })
    .await
    .with_context(|| format!("GET {path} on {addr}: no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Probe = Probe {
        period: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        success_threshold: 2,
        failure_threshold: 3,
    };

    fn run(results: &[bool]) -> Vec<bool> {
        let mut s = ProbeState::default();
        results.iter().map(|&r| s.observe(r, &P)).collect()
    }

    #[test]
    fn a_container_starts_not_ready_and_needs_the_success_threshold() {
        assert_eq!(run(&[false, true, true]), [false, false, true]);
        // A failure between passes starts the count again.
        assert_eq!(run(&[true, false, true, true]), [false, false, false, true]);
    }

    #[test]
    fn a_ready_container_needs_the_failure_threshold_in_a_row() {
        let up = [true, true];
        let mut results = up.to_vec();
        results.extend([false, false, true, false, false, false]);
        assert_eq!(
            run(&results),
            [false, true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn an_agent_is_ready_after_one_pass_and_out_after_two_failures() {
        let mut s = ProbeState::default();
        assert!(s.observe(true, &AGENT_READINESS));
        assert!(s.observe(false, &AGENT_READINESS));
        assert!(!s.observe(false, &AGENT_READINESS));
    }

    #[tokio::test]
    async fn http_get_reads_the_status_and_body_and_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\nnot yet\n")
                .await
                .unwrap();
            // Connection: close, as the admin server honours it.
            drop(s);
            // The next connection is accepted and never answered.
            let (_silent, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let (code, body) = http_get(addr, "/readyz", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (503, "not yet\n"));
        let err = http_get(addr, "/readyz", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    }
}
