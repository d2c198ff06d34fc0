//! The client's own view: a thread in the client namespace that starts a TCP request and a UDP
//! request every few milliseconds (each on its own, with its own timeout, so a slow one never
//! delays the next) and records when each was sent, what came back and when.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::net::runtime_in;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub proto: Proto,
    pub to: SocketAddr,
    pub sent: SystemTime,
    pub took: Duration,
    /// When the request was on its way to a node: the TCP connection established, the UDP
    /// datagram sent.
    pub connected: Option<SystemTime>,
    /// The answer (the node that served it), or why there was none.
    pub result: Result<String, String>,
}

pub type Attempts = Arc<Mutex<Vec<Attempt>>>;

pub struct Traffic {
    pub attempts: Attempts,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// TCP and UDP requests to `to` from the namespace at `ns` every `every`, each given
    /// `timeout`.
    pub fn start(ns: PathBuf, to: SocketAddr, every: Duration, timeout: Duration) -> Self {
        Self::start_to_all(ns, vec![to], &[Proto::Tcp, Proto::Udp], every, timeout)
    }

    /// Requests of each of `protos` to each of `targets` every `every`, the targets' turns
    /// spread evenly over the period (so many targets do not all open connections at once).
    pub fn start_to_all(
        ns: PathBuf,
        targets: Vec<SocketAddr>,
        protos: &[Proto],
        every: Duration,
        timeout: Duration,
    ) -> Self {
        let protos = protos.to_vec();
        let attempts: Attempts = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let out = attempts.clone();
        let thread = std::thread::spawn(move || {
            let rt = match runtime_in(&ns) {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("traffic: {e:#}");
                    return;
                }
            };
            rt.block_on(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut tasks = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tick.tick() => {
                            let turns = targets.iter().enumerate().flat_map(|(i, to)| {
                                let wait = every.mul_f64(i as f64 / targets.len() as f64);
                                protos.iter().map(move |proto| (wait, *to, *proto))
                            });
                            for (wait, to, proto) in turns {
                                let out = out.clone();
                                tasks.spawn(async move {
                                    tokio::time::sleep(wait).await;
                                    let sent = SystemTime::now();
                                    let started = std::time::Instant::now();
                                    let connected = OnceLock::new();
                                    let result = tokio::time::timeout(timeout, request(proto, to, &connected))
                                        .await
                                        .unwrap_or_else(|_| Err("timed out".into()));
                                    let connected = connected.get().copied();
                                    out.lock().unwrap().push(Attempt { proto, to, sent, took: started.elapsed(), connected, result });
                                });
                            }
                            while tasks.try_join_next().is_some() {}
                        }
                    }
                }
                // Let the requests in flight finish (each is bounded by its timeout).
                while tasks.join_next().await.is_some() {}
            });
        });
        Self {
            attempts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A copy of the requests so far (those still in flight are not in it).
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// Stops sending, waits for the requests in flight, and returns them all, by send time.
    pub fn stop(mut self) -> Vec<Attempt> {
        self.halt();
        let mut all = self.attempts.lock().unwrap().clone();
        all.sort_by_key(|a| a.sent);
        all
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One TCP request to `to` from the namespace at `ns`, on a thread of its own.
pub async fn request_once(
    ns: PathBuf,
    to: SocketAddr,
    timeout: Duration,
) -> Result<String, String> {
    request_once_with(ns, to, Proto::Tcp, timeout).await
}

/// One request of `proto` to `to` from the namespace at `ns`, on a thread of its own.
pub async fn request_once_with(
    ns: PathBuf,
    to: SocketAddr,
    proto: Proto,
    timeout: Duration,
) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let answer = match runtime_in(&ns) {
            Ok(rt) => rt.block_on(async {
                tokio::time::timeout(timeout, request(proto, to, &OnceLock::new()))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            }),
            Err(e) => Err(format!("{e:#}")),
        };
        let _ = tx.send(answer);
    });
    rx.await
        .unwrap_or_else(|_| Err("the request thread died".into()))
}

/// One request; sets `connected` once it is on its way (see [`Attempt::connected`]).
async fn request(
    proto: Proto,
    to: SocketAddr,
    connected: &OnceLock<SystemTime>,
) -> Result<String, String> {
    match proto {
        Proto::Tcp => {
            let mut s = tokio::net::TcpStream::connect(to)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = connected.set(SystemTime::now());
            let mut out = String::new();
            s.read_to_string(&mut out)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if out.is_empty() {
                return Err("empty answer".into());
            }
            Ok(out.trim().to_string())
        }
        Proto::Udp => {
            let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = tokio::net::UdpSocket::bind(any)
                .await
                .map_err(|e| format!("bind: {e}"))?;
            s.connect(to).await.map_err(|e| format!("connect: {e}"))?;
            s.send(b"ping").await.map_err(|e| format!("send: {e}"))?;
            let _ = connected.set(SystemTime::now());
            let mut buf = [0u8; 512];
            let n = s.recv(&mut buf).await.map_err(|e| format!("recv: {e}"))?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
        }
    }
}

/// Whether `a` is a request that failed because the VPC switched the address while it was
/// under way: its connection was established (its datagram sent) before one of `switches` and
/// it failed after it. The VPC then sends the address's packets to the new holder, which
/// knows nothing of the connection, and drops the old holder's replies from an address it no
/// longer owns: AWS cuts such a request too, whatever the nodes do.
pub fn cut_by_a_switch(a: &Attempt, switches: &[SystemTime]) -> bool {
    let (Err(_), Some(connected)) = (&a.result, a.connected) else {
        return false;
    };
    let ended = a.sent + a.took;
    switches.iter().any(|s| connected <= *s && *s <= ended)
}

/// The failed requests the VPC's switches do not account for ([`cut_by_a_switch`]), and how
/// many they do.
pub fn failed_beside_switches<'a>(
    attempts: &'a [Attempt],
    switches: &[SystemTime],
) -> (Vec<&'a Attempt>, usize) {
    let failed = attempts.iter().filter(|a| a.result.is_err());
    let (cut, other): (Vec<&Attempt>, Vec<&Attempt>) =
        failed.partition(|a| cut_by_a_switch(a, switches));
    (other, cut.len())
}

/// What the client saw of one protocol over a stretch of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outage {
    pub requests: usize,
    pub failed: usize,
    /// From the first failed request's send to the send of the first request that succeeded
    /// after the last failure: how long new requests could not get through.
    pub duration: Duration,
    pub first_failed: Option<SystemTime>,
    /// When the first request after the outage was answered.
    pub recovered: Option<SystemTime>,
    /// The last failed request: when it was sent, and why it failed.
    pub last_failure: Option<(SystemTime, String)>,
}

/// The outage `proto` requests sent at or after `from` saw.
pub fn outage(attempts: &[Attempt], proto: Proto, from: SystemTime) -> Outage {
    let mut list: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.proto == proto && a.sent >= from)
        .collect();
    list.sort_by_key(|a| a.sent);
    let mut out = Outage {
        requests: list.len(),
        failed: list.iter().filter(|a| a.result.is_err()).count(),
        ..Outage::default()
    };
    let Some(first) = list.iter().position(|a| a.result.is_err()) else {
        return out;
    };
    let last = list
        .iter()
        .rposition(|a| a.result.is_err())
        .unwrap_or(first);
    out.first_failed = Some(list[first].sent);
    out.last_failure = (list[last].result.as_ref().err()).map(|e| (list[last].sent, e.clone()));
    if let Some(ok) = list[last + 1..].iter().find(|a| a.result.is_ok()) {
        out.duration = ok.sent.duration_since(list[first].sent).unwrap_or_default();
        out.recovered = Some(ok.sent + ok.took);
    }
    out
}

/// An [`Outage`] as `floatip-lab ctl traffic` prints it: times in RFC 3339 (UTC, to the
/// millisecond), the outage in milliseconds; `recovered` and `outage_ms` are null while it lasts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutageReport {
    pub requests: usize,
    pub failed: usize,
    pub first_failed: Option<String>,
    pub recovered: Option<String>,
    pub outage_ms: Option<u128>,
}

impl Outage {
    pub fn report(&self) -> OutageReport {
        let outage_ms = match (self.first_failed, self.recovered) {
            (None, _) => Some(0),
            (Some(_), Some(_)) => Some(self.duration.as_millis()),
            (Some(_), None) => None,
        };
        OutageReport {
            requests: self.requests,
            failed: self.failed,
            first_failed: self.first_failed.map(rfc3339),
            recovered: self.recovered.map(rfc3339),
            outage_ms,
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .and_then(|t| t.round(jiff::Unit::Millisecond))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// How many requests each node answered (the answer names the node that served it).
pub fn answered_by(attempts: &[Attempt]) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for name in attempts.iter().filter_map(|a| a.result.as_ref().ok()) {
        *by.entry(name.clone()).or_insert(0) += 1;
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, ok: bool) -> Attempt {
        Attempt {
            proto: Proto::Tcp,
            to: "10.99.8.100:30080".parse().unwrap(),
            sent: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            took: Duration::from_millis(1),
            connected: None,
            result: if ok {
                Ok("node-1".into())
            } else {
                Err("refused".into())
            },
        }
    }

    #[test]
    fn only_a_connection_open_across_a_switch_is_the_switchs_doing() {
        let t = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let attempt = |sent, connected: Option<u64>, took, ok: bool| Attempt {
            took: Duration::from_millis(took),
            connected: connected.map(t),
            ..at(sent, ok)
        };
        let switches = [t(1000)];
        // Established before the switch, failed after it: cut.
        assert!(cut_by_a_switch(
            &attempt(990, Some(992), 1000, false),
            &switches
        ));
        // Never connected (SYN lost): not the switch's doing.
        assert!(!cut_by_a_switch(
            &attempt(990, None, 1000, false),
            &switches
        ));
        // Connected after the switch, or over before it.
        assert!(!cut_by_a_switch(
            &attempt(1001, Some(1002), 1000, false),
            &switches
        ));
        assert!(!cut_by_a_switch(
            &attempt(900, Some(901), 50, false),
            &switches
        ));
        // Answered: nothing to account for.
        assert!(!cut_by_a_switch(
            &attempt(990, Some(992), 20, true),
            &switches
        ));
        let all = [
            attempt(990, Some(992), 1000, false),
            attempt(1500, None, 1000, false),
            attempt(1600, Some(1601), 2, true),
        ];
        let (other, cut) = failed_beside_switches(&all, &switches);
        assert_eq!(cut, 1);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].sent, t(1500));
    }

    #[test]
    fn outage_runs_from_first_failure_to_first_success_after_the_last() {
        let a = [
            at(0, true),
            at(10, false),
            at(20, true),
            at(30, false),
            at(40, true),
            at(50, true),
        ];
        let o = outage(&a, Proto::Tcp, SystemTime::UNIX_EPOCH);
        assert_eq!(o.requests, 6);
        assert_eq!(o.failed, 2);
        assert_eq!(o.duration, Duration::from_millis(30));
        assert_eq!(
            o.recovered,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(41))
        );
    }

    #[test]
    fn no_failure_is_no_outage_and_other_protocols_do_not_count() {
        let mut udp = at(5, false);
        udp.proto = Proto::Udp;
        let a = [at(0, true), udp, at(10, true)];
        let o = outage(&a, Proto::Tcp, SystemTime::UNIX_EPOCH);
        assert_eq!((o.failed, o.duration), (0, Duration::ZERO));
        assert_eq!(outage(&a, Proto::Udp, SystemTime::UNIX_EPOCH).failed, 1);
    }

    #[test]
    fn an_outage_not_yet_over_has_no_recovery() {
        let a = [at(0, true), at(10, false), at(20, false)];
        let o = outage(&a, Proto::Tcp, SystemTime::UNIX_EPOCH);
        assert_eq!(o.recovered, None);
        assert_eq!(
            o.first_failed,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(10))
        );
    }

    #[test]
    fn outage_report_has_times_to_the_millisecond_and_null_while_it_lasts() {
        let a = [at(0, true), at(10, false), at(20, false), at(30, true)];
        let report = outage(&a, Proto::Tcp, SystemTime::UNIX_EPOCH).report();
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"requests":4,"failed":2,"first_failed":"1970-01-01T00:00:00.01Z","recovered":"1970-01-01T00:00:00.031Z","outage_ms":20}"#
        );
        let lasting = outage(&a[..3], Proto::Tcp, SystemTime::UNIX_EPOCH).report();
        assert_eq!((lasting.recovered, lasting.outage_ms), (None, None));
        let none = outage(&a[..1], Proto::Tcp, SystemTime::UNIX_EPOCH).report();
        assert_eq!((none.first_failed, none.outage_ms), (None, Some(0)));
    }

    #[test]
    fn answers_are_counted_per_node() {
        let mut b = at(20, true);
        b.result = Ok("node-2".into());
        let by = answered_by(&[at(0, true), at(10, false), b, at(30, true)]);
        assert_eq!(
            by,
            [("node-1".to_string(), 2), ("node-2".to_string(), 1)].into()
        );
    }
}
