//! Network namespaces for data-plane tests: nodes, a VPC router that enforces the source/dest
//! check, a client, pods. Everything lives in 10.99.0.0/16 inside namespaces the test creates;
//! nothing is sent from the host's namespace. Every namespace is deleted on drop.
//!
//! Test plumbing shells out to `ip` and `nft` (iproute2, nftables); floatip itself does not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Root, with network namespaces available. Tests print why they skip otherwise.
pub fn can_netns(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("SKIP {test}: needs root for network namespaces");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("SKIP {test}: `ip` (iproute2) is not installed");
        return false;
    }
    true
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("fip{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip("link set lo up");
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0");
        }
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n <ns> <args>`; panics on failure.
    pub fn ip(&self, args: &str) -> String {
        self.try_ip(args)
            .unwrap_or_else(|e| panic!("ip -n {} {args}: {e}", self.name))
    }

    pub fn try_ip(&self, args: &str) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        try_run("ip", &all)
    }

    /// A command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(cmd);
        try_run("ip", &all)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .unwrap_or_else(|e| panic!("sysctl {key} in {}: {e}", self.name));
    }

    /// Runs `f` on a thread that entered this namespace; sockets it opens stay in it.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in namespace")
    }

    /// The namespace's addresses on `dev`, as `ip -o addr` prints them.
    pub fn addresses(&self, dev: &str) -> String {
        self.try_ip(&format!("-o addr show dev {dev}"))
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn enter(path: &std::path::Path) {
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: setns(2) on an open namespace file; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {}", path.display());
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    try_run(cmd, args).unwrap_or_else(|e| panic!("{cmd} {}: {e}", args.join(" ")))
}

pub fn try_run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A veth pair: `a_name` in `a` (with `a_mac` if given), `b_name` in `b`; both up.
pub fn veth(a: &Netns, a_name: &str, a_mac: Option<&str>, b: &Netns, b_name: &str) {
    let mut args = format!("link add {a_name} ");
    if let Some(mac) = a_mac {
        args.push_str(&format!("address {mac} "));
    }
    args.push_str(&format!("type veth peer name {b_name} netns {}", b.name));
    a.ip(&args);
    a.ip(&format!("link set {a_name} up"));
    b.ip(&format!("link set {b_name} up"));
}

/// A TCP server that answers every connection with `reply` and closes; stops on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    pub served: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Netns, addr: SocketAddr, reply: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n, reply) = (stop.clone(), served.clone(), reply.to_string());
        let path = ns.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let l = TcpListener::bind(addr).expect("bind test server");
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(reply.as_bytes());
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv().expect("server started");
        Self {
            stop,
            served,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request from inside `ns`: connect, read the whole answer.
pub fn request(ns: &Netns, to: SocketAddr, timeout: Duration) -> Result<String, String> {
    ns.run_in(move || request_here(to, timeout))
}

/// One request from the calling thread's namespace.
pub fn request_here(to: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

/// How long one request took and what it got.
pub type Outcome = (Duration, Result<String, String>);

/// A thread in `ns` that sends requests back to back until stopped, recording each outcome.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Outcome>>>,
}

impl Traffic {
    pub fn start(ns: &Netns, to: SocketAddr, every: Duration, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let path = ns.path();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let start = std::time::Instant::now();
            let mut out = Vec::new();
            // Bounded: at most 10,000 requests or 120 s, whichever comes first.
            while !s.load(Ordering::Relaxed)
                && out.len() < 10_000
                && start.elapsed() < Duration::from_secs(120)
            {
                let t = std::time::Instant::now();
                let r = request_here(to, timeout);
                out.push((t.elapsed(), r));
                std::thread::sleep(every);
            }
            out
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("traffic thread")
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
