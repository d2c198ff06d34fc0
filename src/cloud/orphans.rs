//! Floating ENIs whose node is gone: found by tag, deleted only when they carry this cluster's
//! tags and are detached (EC2 refuses to delete an ENI in use; a terminated instance releases it).

use std::collections::BTreeSet;

use super::{Cloud, CloudError, Eni};

/// Floating ENIs of `cluster` whose `floatip.io/node` tag names a node not in `nodes`.
/// ENIs without the node tag, of another cluster, or without no_manage=true are never listed.
pub async fn orphaned_floating_enis<C: Cloud>(
    cloud: &C,
    cluster: &str,
    nodes: &BTreeSet<String>,
) -> Result<Vec<Eni>, CloudError> {
    let enis = cloud.cluster_enis(cluster).await?;
    Ok(enis
        .into_iter()
        .filter(|e| e.is_floating_for(cluster))
        .filter(|e| e.node_tag().is_some_and(|n| !nodes.contains(n)))
        .collect())
}

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrphanCleanup {
    /// Deleted ENI IDs.
    pub deleted: Vec<String>,
    /// Orphans still attached (their instance is shutting down): tried again next time.
    pub attached: Vec<String>,
}

/// Deletes the detached orphans of [`orphaned_floating_enis`]. Stops at the first failure
/// (a missing ec2:DeleteNetworkInterface permission fails every call alike).
pub async fn delete_orphaned_floating_enis<C: Cloud>(
    cloud: &C,
    cluster: &str,
    nodes: &BTreeSet<String>,
) -> Result<OrphanCleanup, CloudError> {
    let mut out = OrphanCleanup::default();
    for eni in orphaned_floating_enis(cloud, cluster, nodes).await? {
        if eni.instance_id.is_some() {
            out.attached.push(eni.id);
            continue;
        }
        cloud.delete_eni(&eni.id).await?;
        tracing::info!(eni = %eni.id, node = ?eni.node_tag(), "deleted the floating ENI of a node that no longer exists");
        out.deleted.push(eni.id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::cloud::{floating_tags, TAG_CLUSTER, TAG_NODE};

    fn eni(id: &str, tags: BTreeMap<String, String>, instance: Option<&str>) -> Eni {
        Eni {
            id: id.into(),
            subnet_id: "subnet-1".into(),
            instance_id: instance.map(String::from),
            device_index: instance.map(|_| 1),
            mac: None,
            primary_ip: None,
            secondary: Vec::new(),
            tags,
            security_groups: Vec::new(),
        }
    }

    #[tokio::test]
    async fn deletes_only_detached_tag_scoped_enis_of_missing_nodes() {
        let cloud = FakeCloud::default();
        let no_manage_missing = BTreeMap::from([
            (TAG_CLUSTER.to_string(), "lab".to_string()),
            (TAG_NODE.to_string(), "gone-2".to_string()),
        ]);
        *cloud.enis.lock().unwrap() = vec![
            eni("eni-live", floating_tags("lab", "n1"), Some("i-1")),
            eni("eni-gone", floating_tags("lab", "gone"), None),
            eni(
                "eni-gone-attached",
                floating_tags("lab", "gone-3"),
                Some("i-9"),
            ),
            eni("eni-other-cluster", floating_tags("other", "gone"), None),
            eni("eni-not-floating", no_manage_missing, None),
            eni("eni-untagged", BTreeMap::new(), None),
        ];
        let nodes = BTreeSet::from(["n1".to_string()]);
        let orphans: Vec<String> = orphaned_floating_enis(&cloud, "lab", &nodes)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(orphans, ["eni-gone", "eni-gone-attached"]);

        let done = delete_orphaned_floating_enis(&cloud, "lab", &nodes)
            .await
            .unwrap();
        assert_eq!(done.deleted, ["eni-gone"]);
        assert_eq!(done.attached, ["eni-gone-attached"]);
        let left: Vec<String> = cloud
            .enis
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(
            left,
            [
                "eni-live",
                "eni-gone-attached",
                "eni-other-cluster",
                "eni-not-floating",
                "eni-untagged"
            ]
        );
        assert_eq!(
            *cloud.calls.lock().unwrap(),
            [("DeleteNetworkInterface", "eni-gone".to_string())]
        );
    }
}
