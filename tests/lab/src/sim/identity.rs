//! Who each floatip process is, as the Helm chart deploys it: the ServiceAccount its pod runs as
//! (a kubeconfig whose bearer token names it, which the lab's API server records as the user)
//! and its IAM role (its AWS access key ID, which the EC2 lab records as the caller).
//! tests/lab/tests/permissions.rs checks what each identity called against the chart's RBAC and
//! the IAM policies in deploy/.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// The chart's ServiceAccounts for the release name `floatip`.
pub const CONTROLLER_SA: &str = "floatip-controller";
pub const AGENT_SA: &str = "floatip-agent";

/// The ServiceAccount a subcommand runs as: `attach` is the agent pod's init container.
pub fn service_account(subcommand: &str) -> &'static str {
    match subcommand {
        "controller" => CONTROLLER_SA,
        _ => AGENT_SA,
    }
}

/// The user the API server sees for a ServiceAccount.
pub fn user(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

pub fn kubeconfig(dir: &Path, service_account: &str) -> PathBuf {
    dir.join(format!("kubeconfig-{service_account}"))
}

/// Writes one kubeconfig per ServiceAccount into `dir`, for the API server at `url`.
pub fn write_kubeconfigs(dir: &Path, url: &str, namespace: &str) -> Result<()> {
    for sa in [CONTROLLER_SA, AGENT_SA] {
        crate::kube::write_kubeconfig_as(&kubeconfig(dir, sa), url, Some(&user(namespace, sa)))?;
    }
    Ok(())
}
