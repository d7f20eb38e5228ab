//! Anchored media for the B2BUA: every call leg gets its own RTP and RTCP
//! ports on the server, and relay threads (`relay_thread`) move packets
//! between the legs through tsunagu-media's latching `Relay` (the sans-IO
//! engine; this module is only its shell: sockets, ports, threads and
//! time). Per direction a `tsunagu_media::Pipeline` may decrypt SRTP,
//! transcode and encrypt again.

pub mod endpoint;
mod restamp;
pub mod prompts;
pub mod tones;
mod epoll;
mod ports;
mod relay_thread;

pub use ports::PortPool;

pub use tsunagu_media::pipeline::LegMedia;
use relay_thread::{Command, RelayThread, Session};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tsunagu_media::LegSide;

/// Ports of one leg on the server, as written into that leg's SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

/// What the call learns from its media.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// An RFC 4733 digit from `from` that the other leg cannot take as
    /// RTP (it only does SIP INFO).
    Dtmf { from: LegSide, digit: char, duration_ms: u32 },
    /// Media from a leg latched onto a (new) source address.
    Latched { side: LegSide, addr: SocketAddr },
    /// No packet from either leg for this long (far ends gone).
    Silent { secs: u64 },
    /// A key pressed on a leg the PBX answers (RFC 4733), once per press.
    Digit { side: LegSide, digit: char, duration_ms: u32 },
    /// A local leg has played everything queued with this cookie.
    Played { side: LegSide, cookie: u32 },
    /// The PBX could not answer the leg itself (a codec it cannot make).
    LocalFailed { side: LegSide, error: String },
}

/// Above this share of a second spent working (per mille), a relay thread
/// is behind: packets wait in its sockets and the added latency grows.
pub const OVERLOAD_PERMILLE: u32 = 900;

/// The relay threads of the server; new calls go to them in turn.
pub struct Relays {
    threads: Vec<Arc<RelayThread>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

impl Relays {
    /// `threads` 0: one per CPU (up to 8). A relay thread sleeps in
    /// epoll_wait when there is no media, so idle threads cost nothing, and
    /// under load the kernel shares the cores with the SIP side.
    pub fn start(threads: usize) -> std::io::Result<Relays> {
        let n = match threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8),
            n => n,
        };
        let threads = (0..n).map(|i| RelayThread::spawn(format!("media-relay-{i}"))).collect::<std::io::Result<Vec<_>>>()?;
        Ok(Relays { threads, next: AtomicUsize::new(0), ids: AtomicU64::new(1) })
    }

    /// The thread for a new call: the least busy, fewest calls on a tie
    /// (round robin among equals).
    fn pick(&self) -> Arc<RelayThread> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.threads.len();
        (0..n)
            .map(|k| &self.threads[(start + k) % n])
            .min_by_key(|t| (t.busy_permille() / 100, t.sessions()))
            .unwrap_or(&self.threads[0])
            .clone()
    }

    /// Whether every relay thread is falling behind (busy for more than
    /// [`OVERLOAD_PERMILLE`] of the last second): a new call would only
    /// make every call's audio late, so it is refused (503) instead.
    pub fn overloaded(&self) -> bool {
        self.threads.iter().all(|t| t.busy_permille() > OVERLOAD_PERMILLE)
    }
}

/// A call's media: two legs' sockets, relayed by one of the [`Relays`].
/// Dropping it ends the relaying and frees the ports.
pub struct MediaSession {
    pub address: IpAddr,
    pub a: LegPorts,
    pub b: LegPorts,
    id: u64,
    thread: Arc<RelayThread>,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.thread.send(Command::Remove { id: self.id });
    }
}

impl MediaSession {
    /// Bind two port pairs and start relaying. `events` receives
    /// [`MediaEvent`]s. `silence_limit`: how long both legs may stay silent
    /// before the call is reported dead (on hold, phones still send RTCP,
    /// which counts).
    pub fn start(relays: &Relays, pool: &Arc<PortPool>, silence_limit: Duration, events: mpsc::UnboundedSender<MediaEvent>) -> std::io::Result<MediaSession> {
        let a = pool.bind_pair()?;
        let b = pool.bind_pair()?;
        let (a_ports, b_ports) = (a.ports(), b.ports());
        let id = relays.ids.fetch_add(1, Ordering::Relaxed);
        let thread = relays.pick();
        thread.send(Command::Add { id, session: Box::new(Session::new(a, b, silence_limit, events)) });
        Ok(MediaSession { address: pool.address(), a: a_ports, b: b_ports, id, thread })
    }

    pub fn ports(&self, side: LegSide) -> LegPorts {
        match side {
            LegSide::A => self.a,
            LegSide::B => self.b,
        }
    }

    /// What a leg's SDP says (address, codec, keys); may change at any time
    /// (re-INVITE, UPDATE).
    pub fn set_leg(&self, side: LegSide, media: LegMedia) {
        self.thread.send(Command::SetLeg { id: self.id, side, media });
    }

    /// Answer `side` ourselves (`on`), using the media description sent
    /// with [`Self::set_leg`] before, or relay it again (`!on`). Same
    /// ports, same SRTP contexts: the phone sees only a new SSRC.
    pub fn set_local(&self, side: LegSide, on: bool) {
        self.thread.send(Command::SetLocal { id: self.id, side, on });
    }

    /// Play `items` to a local leg, replacing what it plays;
    /// [`MediaEvent::Played`] with `cookie` follows when all were sent.
    pub fn play(&self, side: LegSide, items: Vec<endpoint::PlayItem>, cookie: u32) {
        self.thread.send(Command::Play { id: self.id, side, items, cookie });
    }

    /// Another phone takes over `side` (a transfer, a pick-up): the latch
    /// onto the old phone's media is dropped, so the new one's is taken.
    pub fn unlatch(&self, side: LegSide) {
        self.thread.send(Command::Unlatch { id: self.id, side });
    }

    /// Record the call from now on through `tap` (the caller's leg on the
    /// left channel), or stop recording with `None`.
    pub fn record(&self, tap: Option<crate::recording::Tap>) {
        self.thread.send(Command::Record { id: self.id, tap: tap.map(Box::new) });
    }

    /// Play a DTMF digit as RFC 4733 events into `to`'s stream (the other
    /// leg sent it as SIP INFO).
    pub fn send_dtmf(&self, to: LegSide, digit: char, duration_ms: u32) {
        self.thread.send(Command::Dtmf { id: self.id, to, digit, duration_ms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    /// A minimal G.711 RTP packet (version 2, PT 0).
    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    fn recv(sock: &UdpSocket) -> Vec<u8> {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).expect("a relayed packet within 5 s");
        buf[..n].to_vec()
    }

    fn leg(addr: SocketAddr) -> LegMedia {
        LegMedia { rtp_addr: Some(addr), codec: Some((tsunagu_media::codec::Codec::Pcmu, 0)), ..Default::default() }
    }

    #[test]
    fn a_session_relays_both_ways_follows_a_moved_source_and_frees_its_ports() {
        let relays = Relays::start(1).unwrap();
        let base = ports::tests::free_run(20);
        let pool = Arc::new(PortPool::new("127.0.0.1".parse().unwrap(), base, base + 19));
        let (tx, mut events) = mpsc::unbounded_channel();
        let session = MediaSession::start(&relays, &pool, Duration::from_secs(60), tx).unwrap();
        assert_eq!(pool.free_pairs(), pool.total_pairs() - 2);
        let phone_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        session.set_leg(LegSide::A, leg(phone_a.local_addr().unwrap()));
        session.set_leg(LegSide::B, leg(phone_b.local_addr().unwrap()));
        let a_port = SocketAddr::new(session.address, session.a.rtp);
        let b_port = SocketAddr::new(session.address, session.b.rtp);

        phone_a.send_to(&rtp(1, 1), a_port).unwrap();
        assert_eq!(recv(&phone_b), rtp(1, 1), "A -> B, unchanged");
        phone_b.send_to(&rtp(2, 1), b_port).unwrap();
        assert_eq!(recv(&phone_a), rtp(2, 1), "B -> A, unchanged");

        // Phone A moves (Wi-Fi -> LTE): the same stream from a new address
        // is followed at its first packet, and B's audio goes there.
        let moved_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        moved_a.send_to(&rtp(1, 2), a_port).unwrap();
        assert_eq!(recv(&phone_b), rtp(1, 2));
        phone_b.send_to(&rtp(2, 2), b_port).unwrap();
        assert_eq!(recv(&moved_a), rtp(2, 2), "B's audio follows A to its new address");
        let mut latched = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let MediaEvent::Latched { side, addr } = ev {
                latched.push((side, addr));
            }
        }
        assert!(latched.contains(&(LegSide::A, moved_a.local_addr().unwrap())), "{latched:?}");
        assert!(!relays.overloaded(), "an idle relay is not overloaded");

        drop(session);
        let start = Instant::now();
        while pool.free_pairs() != pool.total_pairs() {
            assert!(start.elapsed() < Duration::from_secs(5), "ports freed after the session ends");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Closed: nothing answers on the old port any more.
        phone_a.send_to(&rtp(1, 3), a_port).unwrap();
        phone_b.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 64];
        assert!(phone_b.recv_from(&mut buf).is_err());
    }
}
