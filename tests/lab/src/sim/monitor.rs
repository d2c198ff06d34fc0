//! Where the address is configured: `ip monitor address` in every node namespace, so every add
//! and delete is seen as it happens (not sampled), and the check that the address is never on
//! two live nodes for longer than a bound.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// The address appeared on (true) or left (false) node `node` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at: SystemTime,
    pub node: usize,
    pub present: bool,
}

pub type Changes = Arc<Mutex<Vec<Change>>>;

/// Watches one namespace for `address`; stops on drop.
pub struct Monitor {
    child: Child,
}

impl Monitor {
    pub fn start(ns: &str, node: usize, address: &str, changes: Changes) -> Result<Self> {
        let mut child = Command::new("ip")
            .args(["-n", ns, "monitor", "address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("ip monitor address")?;
        let stdout = child.stdout.take().context("stdout")?;
        let family = if address.contains(':') {
            "inet6"
        } else {
            "inet"
        };
        let needle = format!(" {family} {address}/");
        // What is there already (the monitor only reports changes).
        let now = super::net::run("ip", &["-n", ns, "-o", "addr", "show"])?;
        if now.contains(&needle) {
            changes.lock().unwrap().push(Change {
                at: SystemTime::now(),
                node,
                present: true,
            });
        }
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(&needle) {
                    let present = !line.starts_with("Deleted");
                    changes.lock().unwrap().push(Change {
                        at: SystemTime::now(),
                        node,
                        present,
                    });
                }
            }
        });
        Ok(Self { child })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a node could not answer for anything: from its death (links down) to its revival
/// (None while it is still down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down {
    pub node: usize,
    pub from: SystemTime,
    pub to: Option<SystemTime>,
}

/// The longest time the address was on two or more live nodes at once, with when that began.
/// A node does not count while it is down: with its links down it cannot answer for the
/// address, whatever its interfaces still carry.
pub fn longest_overlap(
    changes: &[Change],
    downs: &[Down],
    until: SystemTime,
) -> Option<(SystemTime, Duration)> {
    enum Ev {
        Present(bool),
        Down(bool),
    }
    let mut events: Vec<(SystemTime, usize, Ev)> = changes
        .iter()
        .map(|c| (c.at, c.node, Ev::Present(c.present)))
        .collect();
    for d in downs {
        events.push((d.from, d.node, Ev::Down(true)));
        if let Some(to) = d.to {
            events.push((to, d.node, Ev::Down(false)));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut present: BTreeMap<usize, bool> = BTreeMap::new();
    let mut down: BTreeMap<usize, bool> = BTreeMap::new();
    let mut started: Option<SystemTime> = None;
    let mut best: Option<(SystemTime, Duration)> = None;
    let close = |from: SystemTime, to: SystemTime, best: &mut Option<(SystemTime, Duration)>| {
        let d = to.duration_since(from).unwrap_or_default();
        if best.is_none_or(|(_, b)| d > b) {
            *best = Some((from, d));
        }
    };
    for (at, node, ev) in events {
        match ev {
            Ev::Present(p) => present.insert(node, p),
            Ev::Down(d) => down.insert(node, d),
        };
        let live = present
            .iter()
            .filter(|(n, &p)| p && !down.get(n).copied().unwrap_or(false))
            .count();
        match (live >= 2, started) {
            (true, None) => started = Some(at),
            (false, Some(s)) => {
                close(s, at, &mut best);
                started = None;
            }
            _ => {}
        }
    }
    if let Some(s) = started {
        close(s, until, &mut best);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn c(ms: u64, node: usize, present: bool) -> Change {
        Change {
            at: t(ms),
            node,
            present,
        }
    }

    #[test]
    fn a_make_before_break_move_overlaps_for_the_release_delay() {
        let changes = [c(0, 1, true), c(1000, 2, true), c(3000, 1, false)];
        let got = longest_overlap(&changes, &[], t(10_000));
        assert_eq!(got, Some((t(1000), Duration::from_millis(2000))));
    }

    #[test]
    fn a_node_does_not_count_while_it_is_down() {
        let changes = [c(0, 1, true), c(5000, 2, true)];
        let down = |from, to: Option<u64>| Down {
            node: 1,
            from: t(from),
            to: to.map(t),
        };
        assert_eq!(
            longest_overlap(&changes, &[down(4000, None)], t(10_000)),
            None
        );
        // Down after the overlap began: it counts until then.
        assert_eq!(
            longest_overlap(&changes, &[down(5500, None)], t(10_000)),
            Some((t(5000), Duration::from_millis(500)))
        );
        // Back up still holding the address: it counts again until it lets go.
        let changes = [c(0, 1, true), c(5000, 2, true), c(9000, 1, false)];
        assert_eq!(
            longest_overlap(&changes, &[down(4000, Some(8000))], t(10_000)),
            Some((t(8000), Duration::from_millis(1000)))
        );
    }

    #[test]
    fn an_overlap_still_open_runs_to_the_end() {
        let changes = [c(0, 1, true), c(100, 3, true)];
        assert_eq!(
            longest_overlap(&changes, &[], t(400)),
            Some((t(100), Duration::from_millis(300)))
        );
    }
}
