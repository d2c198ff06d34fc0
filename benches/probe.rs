//! Probe engine benchmark: `cargo bench --bench probe`. Prints figures; asserts no timings.
//!
//! 1. Throughput: 1,000 TCP targets at 5 probes per second each (interval 200 ms) for 10 s:
//!    probes per second achieved, CPU time (getrusage user+sys) and peak RSS (VmHWM). The
//!    listeners live in a child process (this binary again), so the figures are the prober's.
//! 2. Detection latency with the default health check (interval 500 ms, timeout 250 ms,
//!    failure threshold 3): from a listener going away to the engine's Down transition plus
//!    the failover decision (`placement::decide`), over 50 runs each of a listener closing
//!    (connects refused) and a listener going silent (SYNs dropped, as for a dead node).
//!
//! Every address is on 127.0.0.1. `PROBE_BENCH_SECONDS` and `PROBE_BENCH_RUNS` shorten it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floatip::api::{Failback, HealthCheck, Protocol, DEFAULT_FAILURE_THRESHOLD};
use floatip::metrics::Metrics;
use floatip::placement::{self, Candidate, Decision, Incumbent, Input};
use floatip::probe::{Health, ProbeEngine, ProbeSpec, Target};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

const CHILD_ENV: &str = "FLOATIP_PROBE_BENCH_LISTENERS";
const TARGETS: usize = 1_000;
const INTERVAL: Duration = Duration::from_millis(200);
const MAX_CONCURRENCY: usize = 256;

fn main() {
    if let Ok(n) = std::env::var(CHILD_ENV) {
        listeners_child(n.parse().expect("listener count"));
        return;
    }
    let seconds = env_or("PROBE_BENCH_SECONDS", 10);
    let runs = env_or("PROBE_BENCH_RUNS", 50) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        throughput(Duration::from_secs(seconds)).await;
        detection(runs).await;
    });
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- throughput

async fn throughput(measure: Duration) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    println!("== throughput: {TARGETS} TCP targets, interval {INTERVAL:?}, max concurrency {MAX_CONCURRENCY}");
    let hwm_before = vm_kib("VmHWM");
    let (mut child, ports) = spawn_listeners(TARGETS);
    let targets: HashMap<Target, ProbeSpec> = ports
        .iter()
        .map(|port| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            let spec = ProbeSpec {
                interval: INTERVAL,
                timeout: INTERVAL,
                failure_threshold: 3,
                success_threshold: 2,
                udp_payload: Default::default(),
                reply_required: false,
                linked: Vec::new(),
            };
            (Target::new(Protocol::TCP, addr), spec)
        })
        .collect();
    let metrics = Metrics::new();
    let (engine, mut rx) = ProbeEngine::new(MAX_CONCURRENCY, metrics.clone());
    let transitions = tokio::spawn(async move {
        let mut ups = 0usize;
        let mut other = 0usize;
        while let Some(t) = rx.recv().await {
            if t.to == Health::Up {
                ups += 1;
            } else {
                other += 1;
            }
        }
        (ups, other)
    });
    engine.set_targets(targets);
    // Every chain starts within one interval; let them settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (cpu0, probes0, fails0) = (
        cpu_seconds(),
        counter(&metrics, "pass"),
        counter(&metrics, "fail"),
    );
    let wall0 = Instant::now();
    tokio::time::sleep(measure).await;
    let wall = wall0.elapsed().as_secs_f64();
    let (user1, sys1) = cpu_seconds();
    let (user, sys) = (user1 - cpu0.0, sys1 - cpu0.1);
    let cpu = user + sys;
    let passes = counter(&metrics, "pass") - probes0;
    let fails = counter(&metrics, "fail") - fails0;
    let overruns = metric_value(&metrics.encode(), "floatip_probe_overruns_total ");
    let hwm_after = vm_kib("VmHWM");
    let text = metrics.encode();
    let rtt_mean = metric_value(&text, "floatip_probe_rtt_seconds_sum{protocol=\"TCP\"} ")
        / metric_value(&text, "floatip_probe_rtt_seconds_count{protocol=\"TCP\"} ").max(1.0);
    let up = engine
        .snapshot()
        .values()
        .filter(|s| s.state == Health::Up)
        .count();
    drop(engine);
    let (ups, other) = transitions.await.expect("transition counter");
    let _ = child.kill();
    let _ = child.wait();

    let probes = passes + fails;
    let rate = probes / wall;
    let wanted = TARGETS as f64 / INTERVAL.as_secs_f64();
    println!("measured over            {wall:.2} s");
    println!("probes                   {probes:.0} ({passes:.0} passed, {fails:.0} failed, {overruns:.0} overruns)");
    println!(
        "probes per second        {rate:.0} (wanted {wanted:.0}; ratio {:.3})",
        rate / wanted
    );
    println!("mean connect round trip  {:.0} us", rtt_mean * 1e6);
    println!("targets Up at the end    {up}/{TARGETS} (transitions: {ups} to Up, {other} other)");
    println!(
        "CPU (user+sys)           {cpu:.3} s ({user:.3} + {sys:.3}) = {:.1}% of one core; {:.1} us per probe",
        100.0 * cpu / wall,
        1e6 * cpu / probes.max(1.0)
    );
    println!(
        "peak RSS (VmHWM)         {:.1} MiB (before the engine {:.1} MiB; engine and probes add {:.1} MiB)",
        hwm_after as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        (hwm_after - hwm_before) as f64 / 1024.0
    );
}

/// Runs this binary again as a process that listens on `n` ports of 127.0.0.1, accepting and
/// dropping connections until its stdin closes.
fn spawn_listeners(n: usize) -> (std::process::Child, Vec<u16>) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("listener process");
    let stdout = child.stdout.take().expect("piped");
    let mut ports = Vec::with_capacity(n);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("listener output");
        if line == "ready" {
            break;
        }
        ports.push(line.parse().expect("a port"));
    }
    assert_eq!(ports.len(), n, "listener process stopped early");
    (child, ports)
}

fn listeners_child(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut out = std::io::stdout().lock();
        for _ in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            writeln!(out, "{}", listener.local_addr().expect("addr").port()).expect("stdout");
            tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
            });
        }
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        drop(out);
        // The parent holds our stdin; EOF means it is done (or gone).
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await
        .expect("stdin watcher");
    });
}

fn counter(metrics: &Metrics, result: &str) -> f64 {
    metric_value(
        &metrics.encode(),
        &format!("floatip_probes_total{{protocol=\"TCP\",result=\"{result}\"}} "),
    )
}

fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// (user, system) CPU seconds of this process so far.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// A `kB` line of /proc/self/status, e.g. VmHWM (peak RSS).
fn vm_kib(field: &str) -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc/self/status")
}

// ---------------------------------------------------------------- detection

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Outage {
    /// The listener closes: connects are refused at once (the service died, the node lives).
    Closed,
    /// The listener stops answering: SYNs are dropped (the node died or lost its network).
    Silent,
}

async fn detection(runs: usize) {
    let check = HealthCheck {
        protocol: Protocol::TCP,
        port: 1,
        interval_ms: floatip::api::DEFAULT_INTERVAL_MS,
        timeout_ms: None,
        idle_interval_ms: None,
        failure_threshold: DEFAULT_FAILURE_THRESHOLD,
        success_threshold: floatip::api::DEFAULT_SUCCESS_THRESHOLD,
        udp: None,
    };
    let spec = ProbeSpec::from_health_check(&check).expect("default health check");
    println!();
    println!(
        "== detection: default health check (interval {:?}, timeout {:?}, failure threshold {}), {runs} runs per outage",
        spec.interval, spec.timeout, spec.failure_threshold
    );

    let mut controls = HashMap::new();
    let mut outage_of = HashMap::new();
    let mut targets = HashMap::new();
    for outage in [Outage::Closed, Outage::Silent] {
        for _ in 0..runs {
            let (addr, control) = controlled_listener().await;
            let target = Target::new(Protocol::TCP, addr);
            targets.insert(target, spec.clone());
            controls.insert(target, control);
            outage_of.insert(target, outage);
        }
    }
    let (engine, mut rx) = ProbeEngine::new(MAX_CONCURRENCY, Metrics::new());
    engine.set_targets(targets.clone());
    let mut up = 0;
    while up < targets.len() {
        let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every target comes up")
            .expect("engine alive");
        assert_eq!(t.to, Health::Up, "{t:?}");
        up += 1;
    }

    // Each outage starts at a random moment within two intervals, so the runs sample every
    // phase of the probe schedule.
    let started: Arc<Mutex<HashMap<Target, Instant>>> = Arc::default();
    for (target, control) in &controls {
        let (target, control) = (*target, control.clone());
        let outage = outage_of[&target];
        let started = started.clone();
        let delay = Duration::from_millis(fastrand::u64(0..1_000));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let (tx, rx) = oneshot::channel();
            control.send((outage, tx)).await.expect("listener task");
            let at = rx.await.expect("outage started");
            started.lock().unwrap().insert(target, at);
        });
    }

    let mut latency: HashMap<Outage, Vec<f64>> = HashMap::new();
    let mut detect: HashMap<Outage, Vec<f64>> = HashMap::new();
    let mut decide_ns = Vec::new();
    let mut reasons: HashMap<(Outage, String), usize> = HashMap::new();
    for _ in 0..targets.len() {
        let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every target goes down")
            .expect("engine alive");
        assert_eq!((t.from, t.to), (Health::Up, Health::Down), "{t:?}");
        let d0 = Instant::now();
        let decision = decide_for(t.to);
        let decided = Instant::now();
        assert!(
            matches!(&decision, Decision::Move { to, .. } if to == "node-b"),
            "{decision:?}"
        );
        let outage = outage_of[&t.target];
        let began = started.lock().unwrap()[&t.target];
        latency
            .entry(outage)
            .or_default()
            .push((decided - began).as_secs_f64());
        detect
            .entry(outage)
            .or_default()
            .push((t.at - t.first_failure_at.expect("run start")).as_secs_f64());
        decide_ns.push((decided - d0).as_nanos() as f64);
        *reasons
            .entry((outage, t.reason.unwrap_or_default()))
            .or_default() += 1;
    }
    drop(engine);
    // Silent listeners hold their full queues until their control goes away.
    drop(controls);

    let interval = spec.interval.as_secs_f64();
    let timeout = spec.timeout.as_secs_f64();
    let k = f64::from(spec.failure_threshold - 1);
    for outage in [Outage::Closed, Outage::Silent] {
        // The outage lands uniformly within an interval; the failing run then takes
        // (threshold - 1) intervals, plus the timeout when nothing answers.
        let extra = if outage == Outage::Silent {
            timeout
        } else {
            0.0
        };
        let (lo, hi) = (k * interval + extra, (k + 1.0) * interval + extra);
        let mean = (lo + hi) / 2.0;
        let l = stats(latency.get_mut(&outage).expect("samples"));
        let d = stats(detect.get_mut(&outage).expect("samples"));
        let why: Vec<String> = reasons
            .iter()
            .filter(|((o, _), _)| *o == outage)
            .map(|((_, r), n)| format!("{r} x{n}"))
            .collect();
        println!("-- listener {:?} ({})", outage, why.join(", "));
        println!(
            "outage -> Down -> decision  p50 {:.3} s  p99 {:.3} s  (min {:.3}, max {:.3}; expected {lo:.2}-{hi:.2} s, mean {mean:.3}; p50/expected mean {:.3})",
            l.p50, l.p99, l.min, l.max, l.p50 / mean
        );
        println!(
            "first failed probe -> Down  p50 {:.3} s  p99 {:.3} s  (expected {:.3} s)",
            d.p50,
            d.p99,
            k * interval + extra
        );
    }
    let n = stats(&mut decide_ns);
    println!(
        "placement::decide           p50 {:.0} ns  p99 {:.0} ns",
        n.p50, n.p99
    );
}

fn decide_for(holder_health: Health) -> Decision {
    let now = jiff::Timestamp::now();
    let candidates = [Candidate {
        node: "node-b".into(),
        load: 0,
        health: Health::Up,
    }];
    placement::decide(&Input {
        holder: Some(Incumbent {
            node: "node-a".into(),
            since: now
                .checked_sub(jiff::SignedDuration::from_hours(1))
                .expect("an hour ago"),
            fit: Ok(()),
            // The listener stands for the holder's service: the address and the node's own
            // check fail together.
            health: holder_health,
            vip: holder_health,
            vip_failing_for: Duration::from_secs(1),
            suspect: false,
        }),
        candidates: &candidates,
        no_fit_node: "no node is fit to hold the address",
        preferred: &[],
        failback: Failback::Never,
        min_hold: Duration::from_secs(floatip::api::DEFAULT_MIN_HOLD_SECONDS as u64),
        now,
        health_checked: true,
        reensured: None,
        reensure_grace: Duration::from_secs(2),
        settle: Duration::from_secs(5),
        holder_check_wait: Duration::from_millis(500),
    })
}

type Control = mpsc::Sender<(Outage, oneshot::Sender<Instant>)>;

/// A listener on 127.0.0.1 with backlog 1 that accepts until told to close or go silent; it
/// answers with the instant the outage began.
async fn controlled_listener() -> (SocketAddr, Control) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::channel::<(Outage, oneshot::Sender<Instant>)>(1);
    tokio::spawn(async move {
        let (outage, reply) = loop {
            tokio::select! {
                cmd = rx.recv() => break cmd.expect("controller"),
                accepted = listener.accept() => drop(accepted),
            }
        };
        match outage {
            Outage::Closed => {
                drop(listener);
                let _ = reply.send(Instant::now());
            }
            Outage::Silent => {
                // Stop accepting and fill the accept queue: from the first connect that
                // hears nothing, the kernel drops every SYN.
                let mut held = Vec::new();
                let began = loop {
                    let attempt = Instant::now();
                    match tokio::time::timeout(Duration::from_millis(50), TcpStream::connect(addr))
                        .await
                    {
                        Ok(Ok(stream)) => held.push(stream),
                        Ok(Err(e)) => panic!("filler connect: {e}"),
                        Err(_) => break attempt,
                    }
                };
                let _ = reply.send(began);
                // Hold the queue full until the benchmark ends.
                let _ = rx.recv().await;
                drop((listener, held));
            }
        }
    });
    (addr, tx)
}

struct Stats {
    min: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles.
fn stats(samples: &mut [f64]) -> Stats {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Stats {
        min: samples[0],
        p50: rank(0.50),
        p99: rank(0.99),
        max: samples[samples.len() - 1],
    }
}
