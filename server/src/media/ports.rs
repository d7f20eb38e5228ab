//! RTP port allocation: each leg takes an even RTP port and the odd port
//! above it for RTCP (RFC 3550 §11), from the configured range.
//!
//! The pool keeps the pairs it does not hand out in a queue, oldest freed
//! first, so a pair is reused as late as possible (late packets of an
//! ended call should not reach a new one) and taking one costs one pop and
//! two binds. A pair another program holds fails to bind; it goes to the
//! back of the queue and the next one is tried, a bounded number of times.
//! When the range is used up a call is refused at once (503) instead of
//! scanning the range: the earlier scan-by-binding made every new call
//! try thousands of sockets when the range ran short, and that is what
//! turned an overload into a livelock.

use super::LegPorts;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// Pairs tried per leg before giving up (each failure is a pair some other
/// program holds).
const BIND_ATTEMPTS: usize = 16;

pub struct PortPool {
    address: IpAddr,
    free: Mutex<VecDeque<u16>>,
    total: usize,
}

/// A leg's two sockets, non-blocking; dropping it gives the pair back.
pub struct LegSockets {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    lease: PairLease,
}

impl LegSockets {
    pub fn ports(&self) -> LegPorts {
        LegPorts { rtp: self.lease.rtp_port, rtcp: self.lease.rtp_port + 1 }
    }
}

/// Returns its pair to the pool when dropped. Declared after the sockets
/// in [`LegSockets`], so they are closed before the pair can be reused.
struct PairLease {
    pool: Arc<PortPool>,
    rtp_port: u16,
}

impl Drop for PairLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.push_back(self.rtp_port);
        }
    }
}

impl PortPool {
    pub fn new(address: IpAddr, min: u16, max: u16) -> Self {
        let min = min.max(1024) & !1;
        let max = max.max(min + 3);
        let mut free: VecDeque<u16> = (min..max).step_by(2).filter(|p| *p < u16::MAX).collect();
        // Start somewhere in the range so a restart does not reuse the
        // ports of calls that were just cut.
        if !free.is_empty() {
            let start = rand::random::<usize>() % free.len();
            free.rotate_left(start);
        }
        let total = free.len();
        Self { address, free: Mutex::new(free), total }
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Pairs in the range.
    pub fn total_pairs(&self) -> usize {
        self.total
    }

    /// Pairs not handed out (some may be held by other programs).
    pub fn free_pairs(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn bind_pair(self: &Arc<Self>) -> std::io::Result<LegSockets> {
        for _ in 0..BIND_ATTEMPTS {
            let Some(port) = self.free.lock().ok().and_then(|mut f| f.pop_front()) else { break };
            // From here the pair is leased: a failed bind drops the lease,
            // which puts the pair at the back of the queue.
            let lease = PairLease { pool: self.clone(), rtp_port: port };
            let Ok(rtp) = bind(SocketAddr::new(self.address, port)) else { continue };
            let Ok(rtcp) = bind(SocketAddr::new(self.address, port + 1)) else { continue };
            return Ok(LegSockets { rtp, rtcp, lease });
        }
        metrics::counter!("tsunagu_media_port_exhausted_total").increment(1);
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port pair in the media port range"))
    }
}

/// Receive buffer asked for each media socket (Linux doubles it for its
/// own accounting: about 40 packets of G.711). A relay that falls behind
/// should lose the oldest audio, not deliver all of it seconds late: the
/// default 208 KiB would hold five seconds of a call.
const RECV_BUFFER: usize = 16 * 1024;

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    socket2::SockRef::from(&s).set_recv_buffer_size(RECV_BUFFER)?;
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn pool(min: u16, max: u16) -> Arc<PortPool> {
        Arc::new(PortPool::new("127.0.0.1".parse().unwrap(), min, max))
    }

    /// The start of `n` consecutive free ports (even), below both the
    /// default media range and the kernel's ephemeral ports.
    pub(crate) fn free_run(n: u16) -> u16 {
        for _ in 0..500 {
            let start = 12000 + (rand::random::<u16>() % 3900) * 2;
            let held: Vec<_> = (start..start + n).filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
            if held.len() == n as usize {
                return start;
            }
        }
        panic!("no {n} consecutive free UDP ports");
    }

    #[test]
    fn pairs_are_even_odd_and_come_back_when_dropped() {
        let base = free_run(8);
        let p = pool(base, base + 7);
        assert_eq!(p.total_pairs(), 4);
        let a = p.bind_pair().unwrap();
        let b = p.bind_pair().unwrap();
        for s in [&a, &b] {
            let ports = s.ports();
            assert_eq!(ports.rtp % 2, 0);
            assert_eq!(ports.rtcp, ports.rtp + 1);
            assert_eq!(s.rtp.local_addr().unwrap().port(), ports.rtp);
            assert_eq!(s.rtcp.local_addr().unwrap().port(), ports.rtcp);
        }
        assert_ne!(a.ports(), b.ports());
        assert_eq!(p.free_pairs(), 2);
        let freed = a.ports();
        drop(a);
        assert_eq!(p.free_pairs(), 3);
        // The freed pair is taken last.
        let c = p.bind_pair().unwrap();
        let d = p.bind_pair().unwrap();
        assert_ne!(c.ports(), freed);
        assert_ne!(d.ports(), freed);
        let e = p.bind_pair().unwrap();
        assert_eq!(e.ports(), freed);
    }

    #[test]
    fn an_exhausted_range_fails_at_once_and_a_foreign_port_is_skipped() {
        let base = free_run(6);
        let p = pool(base, base + 5);
        assert_eq!(p.total_pairs(), 3);
        // Another program holds one RTCP port of the range.
        let foreign = UdpSocket::bind(("127.0.0.1", base + 3)).unwrap();
        let x = p.bind_pair().unwrap();
        let y = p.bind_pair().unwrap();
        for s in [&x, &y] {
            assert_ne!(s.ports().rtp, base + 2);
        }
        let err = p.bind_pair().err().expect("only the foreign pair is left");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // The foreign pair is still in the pool and works once it is free.
        drop(foreign);
        assert_eq!(p.bind_pair().unwrap().ports().rtp, base + 2);
        drop((x, y));
        assert_eq!(p.free_pairs(), 3);
    }
}
