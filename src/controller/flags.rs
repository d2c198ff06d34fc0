//! `floatip controller` flags; each can also be set through its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::parse_duration;

/// `floatip controller` flags; each can also be set through its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Name of the EKS cluster; floating ENIs are recognised by their floatip.io/cluster tag.
    #[arg(long, env = "FLOATIP_CLUSTER_NAME")]
    pub cluster_name: String,
    /// Namespace of the leader Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "floatip-system")]
    pub namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,
    /// Name of the leader Lease.
    #[arg(long, env = "FLOATIP_LEASE_NAME", default_value = "floatip-controller")]
    pub lease_name: String,
    /// How long a leader's Lease stays valid without renewal: the worst-case takeover time.
    #[arg(long, env = "FLOATIP_LEASE_DURATION", default_value = "4s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing. Shorter than the lease.
    #[arg(long, env = "FLOATIP_RENEW_DEADLINE", default_value = "3s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or retried.
    #[arg(long, env = "FLOATIP_RETRY_PERIOD", default_value = "500ms", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// How often EC2 is read again in full: every subnet's ENIs, orphaned floating ENIs.
    #[arg(long, env = "FLOATIP_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// How often the ENIs holding addresses are read back, to notice within seconds an
    /// address changed outside floatip (one DescribeNetworkInterfaces per 200 holding ENIs).
    #[arg(long, env = "FLOATIP_HOLDER_CHECK", default_value = "2s", value_parser = parse_duration)]
    pub holder_check: Duration,
    /// Namespace of the agent pods.
    #[arg(
        long,
        env = "FLOATIP_AGENT_NAMESPACE",
        default_value = "floatip-system"
    )]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(
        long,
        env = "FLOATIP_AGENT_SELECTOR",
        default_value = "app.kubernetes.io/name=floatip,app.kubernetes.io/component=agent"
    )]
    pub agent_selector: String,
    /// Only nodes with a ready agent pod may hold an address. Turn off only where the address
    /// is configured on the node by other means.
    #[arg(long, env = "FLOATIP_REQUIRE_AGENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_agent: bool,
    /// Attempts per EC2 call, the first included; throttling and 5xx are retried with
    /// jittered exponential backoff.
    #[arg(long, env = "FLOATIP_EC2_ATTEMPTS", default_value_t = 4)]
    pub ec2_attempts: u32,
    /// First backoff between EC2 attempts.
    #[arg(long, env = "FLOATIP_EC2_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub ec2_backoff: Duration,
    /// Health checks in flight at once, over all targets.
    #[arg(long, env = "FLOATIP_PROBE_CONCURRENCY", default_value_t = 256)]
    pub probe_concurrency: usize,
    /// Address of the admin server (/metrics, /livez, /readyz).
    #[arg(long, env = "FLOATIP_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
}
