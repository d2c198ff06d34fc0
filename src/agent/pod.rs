//! The agent's own Pod (`POD_NAME`, `POD_NAMESPACE`): where it tells the controller what only
//! it knows, as annotations (a handover request, its peer view).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Sets one annotation on the Pod, leaving the others alone (a merge patch: no read first, no
/// conflict with the kubelet's status writes).
pub async fn annotate(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    key: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    pods.patch(pod, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}
