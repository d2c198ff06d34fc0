//! One probe of one target: a TCP connect or a UDP exchange, bounded by the timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UdpSocket};

use crate::api::Protocol;

/// Why a probe failed. The labels are stable: they name metric series and status messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No answer within the timeout (TCP: the handshake did not complete).
    Timeout,
    /// TCP reset, or ICMP port unreachable for UDP: the host is there, the service is not.
    Refused,
    /// ICMP host or network unreachable: no route to the target.
    Unreachable,
    /// UDP with a reply required: the datagram went out, nothing came back in time.
    NoReply,
    /// Anything else (local socket errors); logged at debug level with the OS error.
    Error,
}

impl Failure {
    /// Every reason, for the metrics that show each from the start.
    pub const ALL: [Failure; 5] = [
        Failure::Timeout,
        Failure::Refused,
        Failure::Unreachable,
        Failure::NoReply,
        Failure::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Refused => "refused",
            Failure::Unreachable => "unreachable",
            Failure::NoReply => "no_reply",
            Failure::Error => "error",
        }
    }

    fn from_io(addr: SocketAddr, err: &io::Error) -> Self {
        let failure = match err.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                Failure::Unreachable
            }
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Error,
        };
        if failure == Failure::Error {
            tracing::debug!(%addr, error = %err, "probe failed with a local error");
        }
        failure
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A passing probe: the round trip, when there was one (a UDP probe that needs no reply and
/// got none passes without one).
pub type Pass = Option<Duration>;

/// Probes `addr` once with the given protocol.
pub async fn probe(
    protocol: Protocol,
    addr: SocketAddr,
    timeout: Duration,
    udp_payload: &[u8],
    reply_required: bool,
) -> Result<Pass, Failure> {
    match protocol {
        Protocol::TCP => tcp(addr, timeout).await,
        Protocol::UDP => udp(addr, timeout, udp_payload, reply_required).await,
    }
}

/// Passes when the TCP handshake completes within `timeout`.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<Pass, Failure> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) => Err(Failure::from_io(addr, &e)),
        Ok(Ok(stream)) => {
            let rtt = started.elapsed();
            // Close with a reset, as HAProxy's checks do: a FIN would leave a TIME_WAIT socket
            // per probe on this side, thousands a second at scale.
            let _ = stream.set_zero_linger();
            drop(stream);
            Ok(Some(rtt))
        }
    }
}

/// Sends `payload` from a connected UDP socket. An ICMP port unreachable (reported on the
/// connected socket as ECONNREFUSED) fails; silence fails only when `reply_required`.
pub async fn udp(
    addr: SocketAddr,
    timeout: Duration,
    payload: &[u8],
    reply_required: bool,
) -> Result<Pass, Failure> {
    let started = Instant::now();
    let exchange = async {
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        socket.send(payload).await?;
        // Only the arrival matters; a longer datagram is truncated, which is fine.
        let mut buf = [0u8; 64];
        socket.recv(&mut buf).await?;
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(())) => Ok(Some(started.elapsed())),
        Ok(Err(e)) => Err(Failure::from_io(addr, &e)),
        Err(_) if reply_required => Err(Failure::NoReply),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    const T: Duration = Duration::from_millis(300);

    /// The metrics show every reason from the start from `Failure::ALL`: the match stops
    /// compiling when a reason is added, and ALL must then name as many as it has arms.
    #[test]
    fn every_failure_reason_is_listed() {
        let _every_variant = |f: Failure| match f {
            Failure::Timeout
            | Failure::Refused
            | Failure::Unreachable
            | Failure::NoReply
            | Failure::Error => (),
        };
        let distinct: std::collections::BTreeSet<&str> =
            Failure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(distinct.len(), 5, "one per variant in the match");
    }

    async fn udp_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                sock.send_to(&buf[..n], from).await.unwrap();
            }
        });
        (addr, task)
    }

    /// A port nothing listens on. Bound and dropped: the kernel will not hand it out again
    /// for a while, since ephemeral ports cycle through the whole range.
    async fn closed_udp_port() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.local_addr().unwrap()
    }

    #[tokio::test]
    async fn tcp_open_port_passes_with_a_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rtt = tcp(addr, T).await.expect("open port passes");
        assert!(rtt.is_some_and(|d| d < T), "{rtt:?}");
    }

    #[tokio::test]
    async fn tcp_on_ipv6_loopback_passes() {
        let listener = TcpListener::bind("[::1]:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(tcp(addr, T).await.is_ok());
    }

    #[tokio::test]
    async fn tcp_closed_port_is_refused() {
        // Bound but not listening: the port stays ours and a SYN gets a reset.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        assert_eq!(tcp(addr, T).await, Err(Failure::Refused));
    }

    #[tokio::test]
    async fn tcp_blackholed_port_times_out() {
        // A listener that never accepts, backlog 1: once its accept queue is full the kernel
        // drops further SYNs, so a connect hears nothing, as with a powered-off node.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        let mut full = false;
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => panic!("filler connect failed: {e}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(
            full,
            "accept queue never filled ({} fillers)",
            fillers.len()
        );
        let started = Instant::now();
        assert_eq!(tcp(addr, T).await, Err(Failure::Timeout));
        assert!(started.elapsed() >= T, "gave up before the timeout");
    }

    #[tokio::test]
    async fn udp_echo_passes_with_a_reply_required() {
        let (addr, _echo) = udp_echo().await;
        let rtt = udp(addr, T, b"ping", true).await.expect("echo answers");
        assert!(rtt.is_some());
    }

    #[tokio::test]
    async fn udp_silence_passes_without_a_reply_required_and_delivers_the_payload() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let short = Duration::from_millis(100);
        assert_eq!(udp(addr, short, b"hello", false).await, Ok(None));
        let mut buf = [0u8; 16];
        let (n, _) = silent.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[tokio::test]
    async fn udp_silence_fails_when_a_reply_is_required() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let short = Duration::from_millis(100);
        assert_eq!(
            udp(addr, short, b"hello", true).await,
            Err(Failure::NoReply)
        );
    }

    #[tokio::test]
    async fn udp_port_unreachable_fails_with_or_without_a_reply_required() {
        let addr = closed_udp_port().await;
        assert_eq!(udp(addr, T, b"x", true).await, Err(Failure::Refused));
        assert_eq!(udp(addr, T, b"x", false).await, Err(Failure::Refused));
    }

    #[tokio::test]
    async fn udp_echo_answers_an_empty_payload() {
        let (addr, _echo) = udp_echo().await;
        assert!(udp(addr, T, b"", true).await.is_ok_and(|r| r.is_some()));
    }

    #[test]
    fn failure_labels_are_stable() {
        let labels: Vec<&str> = [
            Failure::Timeout,
            Failure::Refused,
            Failure::Unreachable,
            Failure::NoReply,
            Failure::Error,
        ]
        .iter()
        .map(|f| f.as_str())
        .collect();
        assert_eq!(
            labels,
            ["timeout", "refused", "unreachable", "no_reply", "error"]
        );
    }
}
