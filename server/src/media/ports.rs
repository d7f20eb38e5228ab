//! RTP port allocation: each leg takes an even RTP port and the odd port
//! above it for RTCP (RFC 3550 §11), from the configured range. Ports are
//! found by binding, so another program's ports are skipped, and a port is
//! free again as soon as its socket is dropped.

use super::{LegPorts, LegSockets};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::UdpSocket;

pub struct PortPool {
    address: IpAddr,
    min: u16,
    max: u16,
    next: AtomicU32,
}

impl PortPool {
    pub fn new(address: IpAddr, min: u16, max: u16) -> Self {
        let min = min.max(1024) & !1;
        let max = max.max(min + 3);
        // Start somewhere in the range so restarts do not reuse the ports of
        // calls that were just cut (late packets would arrive at new calls).
        let span = u32::from((max - min) / 2).max(1);
        let start = rand::random::<u32>() % span;
        Self { address, min, max, next: AtomicU32::new(start) }
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The pairs in the range.
    fn pairs(&self) -> u32 {
        u32::from((self.max - self.min) / 2).max(1)
    }

    pub(super) async fn bind_pair(&self) -> std::io::Result<(LegPorts, LegSockets)> {
        let pairs = self.pairs();
        for _ in 0..pairs.min(4096) {
            let n = self.next.fetch_add(1, Ordering::Relaxed) % pairs;
            let rtp_port = self.min + (n as u16) * 2;
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(self.address, rtp_port)).await else { continue };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.address, rtp_port + 1)).await else { continue };
            return Ok((LegPorts { rtp: rtp_port, rtcp: rtp_port + 1 }, LegSockets { rtp, rtcp }));
        }
        metrics::counter!("tsunagu_media_port_exhausted_total").increment(1);
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port pair in the media port range"))
    }
}
