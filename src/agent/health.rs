//! What the agent's /readyz and /livez say. The controller's `--require-agent` places addresses
//! only on nodes whose agent pod is Ready, so Ready must mean the agent can configure the node:
//! its FloatingIP watch has synced and its last reconcile of the node succeeded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::admin::{Checks, Exposition};
use crate::metrics::AgentMetrics;

/// How the last reconcile of the node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// None has finished yet.
    NotYet,
    Ok,
    /// It failed, or left an address it holds unconfigured; why, in one line.
    Failed(String),
}

/// Ready or why not.
///
/// | watch synced | last reconcile | ready |
/// |---|---|---|
/// | no | any | no: the agent would not see a move to this node |
/// | yes | none yet | no |
/// | yes | failed | no, with the failure |
/// | yes | succeeded | yes |
pub fn readiness(synced: bool, last: &Reconciled) -> Result<(), String> {
    if !synced {
        return Err("the FloatingIP watch has not synced yet".into());
    }
    match last {
        Reconciled::NotYet => Err("the node has not been reconciled yet".into()),
        Reconciled::Failed(why) => Err(format!("the last reconcile of the node failed: {why}")),
        Reconciled::Ok => Ok(()),
    }
}

/// Live or which loop stalled. `last_round` is when the reconcile loop last finished a round,
/// None before it started: until then the agent waits for its first FloatingIP list, which
/// depends on the API server, and a restart would not bring that any sooner.
///
/// | loop started | last round | live |
/// |---|---|---|
/// | no | | yes |
/// | yes | within `stall_after` | yes |
/// | yes | longer ago | no |
pub fn liveness(
    last_round: Option<Instant>,
    now: Instant,
    stall_after: Duration,
) -> Result<(), String> {
    match last_round {
        Some(at) if now.saturating_duration_since(at) > stall_after => Err(format!(
            "the reconcile loop has not finished a round for {:.0?} (bound {stall_after:?}); \
             it is stuck, probably in a netlink call",
            now.saturating_duration_since(at)
        )),
        _ => Ok(()),
    }
}

/// The stall bound for a `--resync` period: the loop goes round at least once per resync, so
/// three missed rounds are not one slow one. Never under 30 s, so a short resync (tests,
/// tuning) does not turn a busy node into a restart.
pub fn stall_bound(resync: Duration) -> Duration {
    resync.saturating_mul(3).max(Duration::from_secs(30))
}

#[derive(Debug)]
struct State {
    synced: bool,
    last: Reconciled,
    last_round: Option<Instant>,
}

/// The agent's health, written by its loop and read by the admin server.
#[derive(Debug)]
pub struct AgentHealth {
    state: Mutex<State>,
    stall_after: Duration,
}

impl AgentHealth {
    pub fn new(stall_after: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                synced: false,
                last: Reconciled::NotYet,
                last_round: None,
            }),
            stall_after,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is three plain fields, whole after any panic: keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The FloatingIP watch has listed everything once.
    pub fn synced(&self) {
        self.state().synced = true;
    }

    /// A reconcile round finished with `outcome`.
    pub fn reconciled(&self, outcome: Reconciled) {
        let mut s = self.state();
        s.last = outcome;
        s.last_round = Some(Instant::now());
    }
}

impl Checks for AgentHealth {
    fn ready(&self) -> Result<(), String> {
        let s = self.state();
        readiness(s.synced, &s.last)
    }

    fn live(&self) -> Result<(), String> {
        liveness(self.state().last_round, Instant::now(), self.stall_after)
    }
}

/// The agent's /metrics: its metrics, with floatip_agent_ready read from the same checks
/// /readyz answers from, at each scrape.
pub struct Scrape {
    pub metrics: AgentMetrics,
    pub health: std::sync::Arc<AgentHealth>,
}

impl Exposition for Scrape {
    fn encode(&self) -> String {
        self.metrics.set_ready(self.health.ready().is_ok());
        self.metrics.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_and_the_last_reconcile_succeeded() {
        assert!(readiness(false, &Reconciled::Ok)
            .unwrap_err()
            .contains("watch has not synced"));
        assert!(readiness(true, &Reconciled::NotYet)
            .unwrap_err()
            .contains("not been reconciled"));
        let why = readiness(
            true,
            &Reconciled::Failed("no interface has MAC 02:aa:00:00:00:01".into()),
        )
        .unwrap_err();
        assert!(why.contains("failed: no interface has MAC 02:aa"), "{why}");
        assert_eq!(readiness(true, &Reconciled::Ok), Ok(()));
    }

    #[test]
    fn live_until_the_loop_stalls_past_the_bound() {
        let t0 = Instant::now();
        let bound = Duration::from_secs(30);
        assert_eq!(
            liveness(None, t0 + Duration::from_secs(3600), bound),
            Ok(())
        );
        assert_eq!(liveness(Some(t0), t0 + bound, bound), Ok(()));
        let why = liveness(Some(t0), t0 + bound + Duration::from_secs(1), bound).unwrap_err();
        assert!(why.contains("not finished a round for 31s"), "{why}");
        // A clock read before the round was recorded is not a stall.
        assert_eq!(liveness(Some(t0 + bound), t0, bound), Ok(()));
    }

    #[test]
    fn stall_bound_is_three_resyncs_and_at_least_thirty_seconds() {
        assert_eq!(
            stall_bound(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        assert_eq!(stall_bound(Duration::from_secs(1)), Duration::from_secs(30));
        assert_eq!(
            stall_bound(Duration::from_secs(60)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn the_checks_follow_what_the_loop_records() {
        let h = AgentHealth::new(Duration::from_secs(30));
        assert!(h.ready().is_err());
        assert_eq!(h.live(), Ok(()), "live while waiting for the first list");
        h.synced();
        assert!(h.ready().unwrap_err().contains("not been reconciled"));
        h.reconciled(Reconciled::Ok);
        assert_eq!(h.ready(), Ok(()));
        h.reconciled(Reconciled::Failed("eth1 is gone".into()));
        assert!(h.ready().unwrap_err().contains("eth1 is gone"));
        assert_eq!(h.live(), Ok(()));
        h.reconciled(Reconciled::Ok);
        assert_eq!(h.ready(), Ok(()), "ready again once a reconcile succeeds");
    }

    #[test]
    fn the_ready_metric_says_what_readyz_says_at_each_scrape() {
        let health = std::sync::Arc::new(AgentHealth::new(Duration::from_secs(30)));
        let scrape = Scrape {
            metrics: AgentMetrics::new(),
            health: health.clone(),
        };
        let ready = |text: String| {
            (text.lines())
                .find(|l| l.starts_with("floatip_agent_ready "))
                .map(str::to_string)
        };
        assert_eq!(
            ready(scrape.encode()).as_deref(),
            Some("floatip_agent_ready 0")
        );
        health.synced();
        health.reconciled(Reconciled::Ok);
        assert_eq!(
            ready(scrape.encode()).as_deref(),
            Some("floatip_agent_ready 1")
        );
        health.reconciled(Reconciled::Failed("eth1 is gone".into()));
        assert_eq!(
            ready(scrape.encode()).as_deref(),
            Some("floatip_agent_ready 0")
        );
    }
}
