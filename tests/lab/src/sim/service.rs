//! A node's service, NodePort style: a "pod" namespace behind the node answers TCP and UDP on
//! port 8080, IPv4 and IPv6, and the node DNATs its port 30080 to it as kube-proxy would (no SNAT, as with
//! externalTrafficPolicy Local). The node also answers on 8080 itself (a host-network listener).
//! Every answer names the node, so the client knows who served it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::net::{runtime_in, veth, Netns};

pub const NODE_PORT: u16 = 30080;
pub const POD_PORT: u16 = 8080;

/// Answers every TCP connection and UDP datagram on `addr` with `reply`, from a thread inside
/// a namespace; stops (closing its sockets, so TCP is refused) on drop.
pub struct Responder {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    pub fn start(ns: PathBuf, addr: SocketAddr, reply: String) -> Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::spawn(move || {
            let rt = match runtime_in(&ns) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let sockets = async {
                    let tcp = tokio::net::TcpListener::bind(addr).await?;
                    let udp = tokio::net::UdpSocket::bind(addr).await?;
                    std::io::Result::Ok((tcp, udp))
                };
                let (tcp, udp) = match sockets.await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send(Err(anyhow::anyhow!("binding {addr}: {e}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut buf = [0u8; 1500];
                let mut stopped = stopped;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        conn = tcp.accept() => if let Ok((mut s, _)) = conn {
                            let reply = reply.clone();
                            tokio::spawn(async move {
                                let _ = s.write_all(reply.as_bytes()).await;
                                let _ = s.shutdown().await;
                            });
                        },
                        got = udp.recv_from(&mut buf) => if let Ok((_, from)) = got {
                            let _ = udp.send_to(reply.as_bytes(), from).await;
                        },
                    }
                }
            });
        });
        is_ready.recv().context("responder thread")??;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pod namespace of node `index` (1-based) and its NodePort rules in the node.
pub struct Service {
    pub pod: Netns,
    reply: String,
    pod_responder: Option<Responder>,
    _host: Responder,
}

impl Service {
    pub fn start(node: &Netns, index: usize, name: &str) -> Result<Self> {
        let pod = Netns::new(&format!("pod{index}"))?;
        let (node_side, pod_addr) = (format!("10.244.{index}.1"), format!("10.244.{index}.2"));
        veth(&pod, "p0", node, "vpod")?;
        pod.ip(&format!("addr add {pod_addr}/24 dev p0"))?;
        pod.ip(&format!("route add default via {node_side}"))?;
        node.ip(&format!("addr add {node_side}/24 dev vpod"))?;
        let (node6, pod6) = (
            format!("fd00:244:{index}::1"),
            format!("fd00:244:{index}::2"),
        );
        pod.ip(&format!("-6 addr add {pod6}/64 dev p0 nodad"))?;
        pod.ip(&format!("-6 route add default via {node6}"))?;
        node.ip(&format!("-6 addr add {node6}/64 dev vpod nodad"))?;
        node.sysctl("net.ipv4.ip_forward", "1")?;
        node.nft(&format!(
            "table ip kubeproxy {{\n\
               chain prerouting {{\n\
                 type nat hook prerouting priority dstnat; policy accept;\n\
                 tcp dport {NODE_PORT} dnat to {pod_addr}:{POD_PORT}\n\
                 udp dport {NODE_PORT} dnat to {pod_addr}:{POD_PORT}\n\
               }}\n\
             }}\n\
             table ip6 kubeproxy6 {{\n\
               chain prerouting {{\n\
                 type nat hook prerouting priority dstnat; policy accept;\n\
                 tcp dport {NODE_PORT} dnat to [{pod6}]:{POD_PORT}\n\
                 udp dport {NODE_PORT} dnat to [{pod6}]:{POD_PORT}\n\
               }}\n\
             }}\n"
        ))?;
        // Dual-stack listeners ([::] takes IPv4 too): the service answers on both families.
        let any: SocketAddr = format!("[::]:{POD_PORT}").parse()?;
        let host = Responder::start(node.path(), any, format!("{name} host\n"))?;
        let mut service = Self {
            pod,
            reply: format!("{name}\n"),
            pod_responder: None,
            _host: host,
        };
        service.set_up(true)?;
        Ok(service)
    }

    /// Starts (true) or stops (false) the pod's listeners; stopped, TCP is refused and UDP
    /// gets port unreachable, as when the pod's process dies.
    pub fn set_up(&mut self, up: bool) -> Result<()> {
        match (up, self.pod_responder.is_some()) {
            (true, false) => {
                let addr: SocketAddr = format!("[::]:{POD_PORT}").parse()?;
                self.pod_responder =
                    Some(Responder::start(self.pod.path(), addr, self.reply.clone())?);
            }
            (false, true) => self.pod_responder = None,
            _ => {}
        }
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        self.pod_responder.is_some()
    }
}
