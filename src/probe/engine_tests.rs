//! The engine against loopback listeners the tests create. Timing bounds are generous: the
//! tests share two cores with other test processes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use super::*;
use crate::api::Protocol;
use crate::metrics::Metrics;

const PATIENCE: Duration = Duration::from_secs(5);

fn spec(interval_ms: u64, fail: u32, succ: u32) -> ProbeSpec {
    ProbeSpec {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms / 2),
        failure_threshold: fail,
        success_threshold: succ,
        udp_payload: Bytes::new(),
        reply_required: false,
        linked: Vec::new(),
    }
}

/// A TCP listener on 127.0.0.1 that accepts and counts connections until closed.
struct Listener {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn target(&self) -> Target {
        Target::new(Protocol::TCP, self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listening socket: from now on connects are refused.
    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn next(rx: &mut Receiver<Transition>) -> Transition {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a transition in time")
        .expect("engine alive")
}

async fn none_within(rx: &mut Receiver<Transition>, d: Duration) {
    if let Ok(t) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected transition {t:?}");
    }
}

fn one(target: Target, spec: ProbeSpec) -> HashMap<Target, ProbeSpec> {
    HashMap::from([(target, spec)])
}

#[tokio::test]
async fn new_targets_start_unknown_and_come_up_once() {
    let l = Listener::start().await;
    let metrics = Metrics::new();
    let (engine, mut rx) = ProbeEngine::new(8, metrics.clone());
    let before = Instant::now();
    engine.set_targets(one(l.target(), spec(30, 3, 2)));
    let s = engine.state(&l.target()).expect("known at once");
    assert_eq!(s.state, Health::Unknown);
    assert!(s.since >= before);
    assert_eq!(s.last_failure, None);

    let t = next(&mut rx).await;
    assert_eq!(
        (t.target, t.from, t.to),
        (l.target(), Health::Unknown, Health::Up)
    );
    assert_eq!(t.reason, None);
    let text = metrics.encode();
    let passes = text
        .lines()
        .find_map(|l| l.strip_prefix("floatip_probes_total{protocol=\"TCP\",result=\"pass\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(passes >= 2, "Up after {passes} passes");
    let s = engine.state(&l.target()).unwrap();
    assert_eq!((s.state, s.since), (Health::Up, t.at));
    // Ten more passing intervals: no further transition.
    none_within(&mut rx, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_listener_going_away_is_confirmed_down_at_once_not_intervals_later() {
    let interval = Duration::from_millis(1000);
    let l = Listener::start().await;
    let target = l.target();
    let metrics = Metrics::new();
    let (engine, mut rx) = ProbeEngine::new(8, metrics.clone());
    engine.set_targets(one(target, spec(1000, 3, 1)));
    assert_eq!(next(&mut rx).await.to, Health::Up);

    let closed = Instant::now();
    l.close().await;
    let t = next(&mut rx).await;
    assert_eq!((t.from, t.to), (Health::Up, Health::Down));
    assert_eq!(t.reason.as_deref(), Some("refused"));
    let first = t.first_failure_at.expect("first failure recorded");
    assert!(first >= closed, "the run began after the close");
    // Three failed probes: the second and third follow the first at once. Probed only at
    // each tick, the third would start two intervals (2 s) after the first.
    let detection = t.at - first;
    assert!(detection < interval, "{detection:?}");
    let overruns = metrics.encode();
    assert!(
        !overruns.contains("floatip_probe_overruns_total 1"),
        "a confirmation is not an overrun: {overruns}"
    );
    let s = engine.state(&target).unwrap();
    assert_eq!(s.state, Health::Down);
    assert_eq!(s.last_failure.as_deref(), Some("refused"));
    none_within(&mut rx, Duration::from_millis(200)).await;

    let text = metrics.encode();
    assert!(
        text.contains("floatip_probe_detection_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("floatip_probe_failures_total{protocol=\"TCP\",reason=\"refused\"}"));
}

#[tokio::test]
async fn a_failing_target_probes_its_linked_targets_at_once() {
    // Two refused ports: the address, probed every 300 ms, and its holder, probed once an hour
    // (its own first tick falls anywhere in that hour).
    let (a, b) = (Listener::start().await, Listener::start().await);
    let (address, holder) = (a.target(), b.target());
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    let mut fast = spec(300, 2, 1);
    fast.linked = vec![holder];
    let mut slow = spec(3_600_000, 2, 1);
    slow.timeout = Duration::from_millis(500);
    slow.linked = vec![address];
    engine.set_targets(HashMap::from([(address, fast.clone())]));
    assert_eq!(next(&mut rx).await.to, Health::Up);
    engine.set_targets(HashMap::from([(address, fast), (holder, slow)]));
    a.close().await;
    b.close().await;
    let mut down = Vec::new();
    while down.len() < 2 {
        let t = next(&mut rx).await;
        if t.to == Health::Down {
            down.push(t.target);
        }
    }
    down.sort();
    let mut both = vec![address, holder];
    both.sort();
    assert_eq!(
        down, both,
        "the holder went Down with its address, not an hour later"
    );
}

#[tokio::test]
async fn recovery_after_down_is_one_transition_back_up() {
    let target = Target::new(Protocol::UDP, "127.0.0.1:0".parse().unwrap());
    // A UDP echo that can be stopped and restarted on the same port.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let target = Target { addr, ..target };
    drop(sock);
    let mut s = spec(40, 2, 2);
    s.reply_required = true;
    s.udp_payload = Bytes::from_static(b"ping");
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    engine.set_targets(one(target, s));
    let t = next(&mut rx).await;
    assert_eq!((t.from, t.to), (Health::Unknown, Health::Down));
    assert_eq!(t.reason.as_deref(), Some("refused"), "port unreachable");

    let echo = UdpSocket::bind(addr).await.unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let (n, from) = echo.recv_from(&mut buf).await.unwrap();
            echo.send_to(&buf[..n], from).await.unwrap();
        }
    });
    let t = next(&mut rx).await;
    assert_eq!((t.from, t.to), (Health::Down, Health::Up));
    assert_eq!(t.first_failure_at, None);
    none_within(&mut rx, Duration::from_millis(200)).await;
    task.abort();
}

#[tokio::test]
async fn repeated_identical_set_targets_do_not_multiply_probes() {
    let l = Listener::start().await;
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    // Two FloatingIPs name the same target; the controller merges them and re-sends the set
    // on every pass.
    let targets = merge_targets([(l.target(), spec(100, 3, 1)), (l.target(), spec(400, 3, 1))]);
    assert_eq!(targets.len(), 1);
    for _ in 0..5 {
        engine.set_targets(targets.clone());
    }
    assert_eq!(next(&mut rx).await.to, Health::Up);
    let start = l.accepted();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = l.accepted() - start;
    // One chain at 100 ms makes about 10; five chains would make about 50, and the 400 ms spec
    // about 2.5.
    assert!((5..=14).contains(&probes), "{probes} probes in 1 s");
    assert_eq!(engine.snapshot().len(), 1);
}

#[tokio::test]
async fn removed_targets_stop_being_probed_and_are_forgotten() {
    let a = Listener::start().await;
    let b = Listener::start().await;
    let metrics = Metrics::new();
    let (engine, mut rx) = ProbeEngine::new(8, metrics.clone());
    engine.set_targets(HashMap::from([
        (a.target(), spec(30, 3, 1)),
        (b.target(), spec(30, 3, 1)),
    ]));
    let mut up = vec![next(&mut rx).await.target, next(&mut rx).await.target];
    up.sort_by_key(|t| t.addr);
    let mut want = vec![a.target(), b.target()];
    want.sort_by_key(|t| t.addr);
    assert_eq!(up, want);
    assert!(metrics.encode().contains("floatip_probe_targets 2"));

    engine.set_targets(one(a.target(), spec(30, 3, 1)));
    assert_eq!(engine.state(&b.target()), None);
    assert_eq!(
        engine.snapshot().keys().collect::<Vec<_>>(),
        vec![&a.target()]
    );
    assert!(metrics.encode().contains("floatip_probe_targets 1"));
    // Let a probe already under way land, then B must hear nothing more while A goes on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (a0, b0) = (a.accepted(), b.accepted());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.accepted(), b0, "removed target still probed");
    assert!(a.accepted() >= a0 + 5, "remaining target not probed");

    // Added back: a fresh Unknown, and a fresh Up transition.
    engine.set_targets(HashMap::from([
        (a.target(), spec(30, 3, 1)),
        (b.target(), spec(30, 3, 1)),
    ]));
    assert_eq!(engine.state(&b.target()).unwrap().state, Health::Unknown);
    let t = next(&mut rx).await;
    assert_eq!(
        (t.target, t.from, t.to),
        (b.target(), Health::Unknown, Health::Up)
    );
}

#[tokio::test]
async fn a_changed_spec_keeps_the_health_and_applies_its_interval() {
    let l = Listener::start().await;
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    engine.set_targets(one(l.target(), spec(30, 3, 1)));
    assert_eq!(next(&mut rx).await.to, Health::Up);
    let since = engine.state(&l.target()).unwrap().since;

    engine.set_targets(one(l.target(), spec(400, 5, 3)));
    let s = engine.state(&l.target()).unwrap();
    assert_eq!((s.state, s.since), (Health::Up, since));
    let start = l.accepted();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = l.accepted() - start;
    // At 400 ms: 2 or 3 (plus one already under way); at the old 30 ms it would be ~33.
    assert!(probes <= 5, "{probes} probes in 1 s");
    none_within(&mut rx, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn concurrency_stays_within_the_bound() {
    // Ten silent UDP targets that need a reply: each probe holds its slot for the full
    // 100 ms timeout. With 2 slots at most ~20 probes finish per second; unbounded, the
    // 200 ms interval would give 50.
    let received = Arc::new(AtomicUsize::new(0));
    let mut targets = HashMap::new();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut s = spec(200, 3, 1);
        s.timeout = Duration::from_millis(100);
        s.reply_required = true;
        targets.insert(Target::new(Protocol::UDP, sock.local_addr().unwrap()), s);
        let count = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 16];
            while sock.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let metrics = Metrics::new();
    let (engine, _rx) = ProbeEngine::new(2, metrics.clone());
    engine.set_targets(targets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = received.load(Ordering::SeqCst);
    assert!(
        (5..=24).contains(&sent),
        "{sent} probes in 1 s with 2 slots"
    );
    assert!(metrics.encode().contains("floatip_probe_overruns_total"));
    let overruns = metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("floatip_probe_overruns_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(
        overruns > 0,
        "ticks of busy targets are skipped, not stacked"
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn a_slow_receiver_loses_no_transitions() {
    // More targets than the channel holds, each going Down on its first probe; nobody reads
    // until all have.
    let mut held = Vec::new();
    let mut targets = HashMap::new();
    for _ in 0..300 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        targets.insert(
            Target::new(Protocol::TCP, socket.local_addr().unwrap()),
            spec(50, 1, 1),
        );
        held.push(socket);
    }
    let (engine, mut rx) = ProbeEngine::new(32, Metrics::new());
    engine.set_targets(targets.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = HashMap::new();
    while seen.len() < targets.len() {
        let t = next(&mut rx).await;
        assert_eq!((t.from, t.to), (Health::Unknown, Health::Down));
        assert!(seen.insert(t.target, ()).is_none(), "twice: {}", t.target);
    }
    none_within(&mut rx, Duration::from_millis(200)).await;
    assert!(engine.snapshot().values().all(|s| s.state == Health::Down));
}

#[tokio::test]
async fn dropping_the_engine_stops_probing() {
    let l = Listener::start().await;
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    engine.set_targets(one(l.target(), spec(20, 3, 1)));
    assert_eq!(next(&mut rx).await.to, Health::Up);
    drop(engine);
    // The scheduler ends, and with it the sending half.
    assert!(tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap()
        .is_none());
    // Let the listener accept what the last probes connected.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = l.accepted();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(l.accepted(), after);
}

#[tokio::test]
async fn probing_goes_on_without_a_receiver() {
    let l = Listener::start().await;
    let (engine, rx) = ProbeEngine::new(8, Metrics::new());
    drop(rx);
    engine.set_targets(one(l.target(), spec(20, 3, 1)));
    let deadline = Instant::now() + PATIENCE;
    while engine.state(&l.target()).unwrap().state != Health::Up {
        assert!(Instant::now() < deadline, "never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A failover ends at the first passing probe started after the move: the engine answers
/// when that probe finished, and nothing for a time no probe has passed since.
#[tokio::test]
async fn passed_after_names_the_first_pass_started_after_a_moment() {
    let l = Listener::start().await;
    let (engine, mut rx) = ProbeEngine::new(8, Metrics::new());
    let before = Instant::now();
    engine.set_targets(one(l.target(), spec(30, 3, 2)));
    assert_eq!(engine.passed_after(&l.target(), before), None, "none yet");
    assert_eq!(next(&mut rx).await.to, Health::Up);
    let first = engine.passed_after(&l.target(), before).expect("passed");
    assert!(first > before);
    let mark = Instant::now();
    assert_eq!(engine.passed_after(&l.target(), mark), None, "none since");
    let deadline = Instant::now() + PATIENCE;
    let after = loop {
        if let Some(at) = engine.passed_after(&l.target(), mark) {
            break at;
        }
        assert!(Instant::now() < deadline, "no pass after the mark");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(after > mark && after > first);
    // The first such pass, not the latest: asked again later, the answer stays.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.passed_after(&l.target(), mark), Some(after));
    let unknown = Target::new(Protocol::TCP, "127.0.0.1:9".parse().unwrap());
    assert_eq!(engine.passed_after(&unknown, before), None);
}
