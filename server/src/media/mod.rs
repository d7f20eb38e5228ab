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
    /// Media from a leg latched onto a (new) source address, with the
    /// SSRC of the stream it follows.
    Latched { side: LegSide, addr: SocketAddr, ssrc: u32 },
    /// No packet from either leg for this long (far ends gone).
    Silent { secs: u64 },
    /// A key pressed on a leg the PBX answers (RFC 4733), once per press.
    Digit { side: LegSide, digit: char, duration_ms: u32 },
    /// A local leg has played everything queued with this cookie.
    Played { side: LegSide, cookie: u32 },
    /// The PBX could not answer the leg itself (a codec it cannot make).
    LocalFailed { side: LegSide, error: String },
    /// A key pressed on a bridged leg (RFC 4733) and relayed to the other
    /// as it is; the call watches these for in-call feature codes.
    KeyRelayed { from: LegSide, digit: char, duration_ms: u32 },
}

impl MediaEvent {
    /// The same event with its leg named the other way round (see
    /// [`MediaSession::swap_sides`]).
    fn flipped(self) -> Self {
        match self {
            MediaEvent::Dtmf { from, digit, duration_ms } => MediaEvent::Dtmf { from: from.other(), digit, duration_ms },
            MediaEvent::Latched { side, addr, ssrc } => MediaEvent::Latched { side: side.other(), addr, ssrc },
            MediaEvent::Silent { secs } => MediaEvent::Silent { secs },
            MediaEvent::Digit { side, digit, duration_ms } => MediaEvent::Digit { side: side.other(), digit, duration_ms },
            MediaEvent::Played { side, cookie } => MediaEvent::Played { side: side.other(), cookie },
            MediaEvent::LocalFailed { side, error } => MediaEvent::LocalFailed { side: side.other(), error },
            MediaEvent::KeyRelayed { from, digit, duration_ms } => MediaEvent::KeyRelayed { from: from.other(), digit, duration_ms },
        }
    }
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
    /// The call calls the relay's leg A "B" and the other way round (a
    /// transfer by the caller's side made the callee's leg the call's A).
    swapped: bool,
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
        Ok(MediaSession { address: pool.address(), a: a_ports, b: b_ports, id, thread, swapped: false })
    }

    /// From now on, the call's A is the relay's B and the other way round:
    /// the call moved the parties between its leg slots (a transfer asked
    /// for by the caller's side), while each phone keeps sending to the
    /// ports it was given. Ports, commands and events follow the call's
    /// naming; a recording keeps its channels (left: the leg the call came
    /// in on).
    pub fn swap_sides(&mut self) {
        std::mem::swap(&mut self.a, &mut self.b);
        self.swapped = !self.swapped;
    }

    /// The relay's name for the call's `side`.
    fn relay_side(&self, side: LegSide) -> LegSide {
        if self.swapped {
            side.other()
        } else {
            side
        }
    }

    /// An event from the relay, with its leg named as the call names it.
    pub fn for_call(&self, ev: MediaEvent) -> MediaEvent {
        if self.swapped {
            ev.flipped()
        } else {
            ev
        }
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
        let side = self.relay_side(side);
        self.thread.send(Command::SetLeg { id: self.id, side, media });
    }

    /// Answer `side` ourselves (`on`), using the media description sent
    /// with [`Self::set_leg`] before, or relay it again (`!on`). Same
    /// ports, same SRTP contexts: the phone sees only a new SSRC.
    pub fn set_local(&self, side: LegSide, on: bool) {
        let side = self.relay_side(side);
        self.thread.send(Command::SetLocal { id: self.id, side, on });
    }

    /// Play `items` to a local leg, replacing what it plays;
    /// [`MediaEvent::Played`] with `cookie` follows when all were sent.
    pub fn play(&self, side: LegSide, items: Vec<endpoint::PlayItem>, cookie: u32) {
        let side = self.relay_side(side);
        self.thread.send(Command::Play { id: self.id, side, items, cookie });
    }

    /// Another phone takes over `side` (a transfer, a pick-up): the latch
    /// onto the old phone's media is dropped, so the new one's is taken.
    pub fn unlatch(&self, side: LegSide) {
        let side = self.relay_side(side);
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
        let to = self.relay_side(to);
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

    /// An RFC 4733 packet (PT 101) for `event`, with the end bit when `end`.
    fn key_packet(ssrc: u32, seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut p = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[event, if end { 0x80 | 10 } else { 10 }]);
        p.extend_from_slice(&duration.to_be_bytes());
        p
    }

    fn next_key(events: &mut mpsc::UnboundedReceiver<MediaEvent>, session: &MediaSession) -> (LegSide, char) {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(5), "a relayed key is reported within 5 s");
            match events.try_recv() {
                Ok(ev) => {
                    if let MediaEvent::KeyRelayed { from, digit, .. } = session.for_call(ev) {
                        return (from, digit);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Keys relayed between two legs that both take RFC 4733 pass across
    /// unchanged and are reported once each (for in-call feature codes);
    /// after `swap_sides` the call's names for ports and events follow.
    #[test]
    fn relayed_keys_are_reported_and_swapped_sides_keep_their_sockets() {
        let relays = Relays::start(1).unwrap();
        let base = ports::tests::free_run(20);
        let pool = Arc::new(PortPool::new("127.0.0.1".parse().unwrap(), base, base + 19));
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut session = MediaSession::start(&relays, &pool, Duration::from_secs(60), tx).unwrap();
        let phone_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let with_keys = |addr| LegMedia { telephone_event: Some(101), ..leg(addr) };
        session.set_leg(LegSide::A, with_keys(phone_a.local_addr().unwrap()));
        session.set_leg(LegSide::B, with_keys(phone_b.local_addr().unwrap()));
        let (a_ports, b_ports) = (session.a, session.b);
        let a_port = SocketAddr::new(session.address, a_ports.rtp);
        let b_port = SocketAddr::new(session.address, b_ports.rtp);

        // Voice, then key 5 (event 5): start, two updates, end sent 3 times.
        phone_a.send_to(&rtp(1, 1), a_port).unwrap();
        assert_eq!(recv(&phone_b), rtp(1, 1));
        let mut seq = 2;
        for (end, dur) in [(false, 160), (false, 320), (false, 480), (true, 640), (true, 640), (true, 640)] {
            let p = key_packet(1, seq, 160, 5, end, dur);
            phone_a.send_to(&p, a_port).unwrap();
            assert_eq!(recv(&phone_b), p, "the key's packets pass across as they are");
            seq += 1;
        }
        assert_eq!(next_key(&mut events, &session), (LegSide::A, '5'));

        // The call trades the parties' places: its A is the phone that was
        // on B, still sending to the same ports.
        session.swap_sides();
        assert_eq!((session.a, session.b), (b_ports, a_ports));
        assert_eq!(session.ports(LegSide::A), b_ports);
        phone_b.send_to(&rtp(2, 1), b_port).unwrap();
        assert_eq!(recv(&phone_a), rtp(2, 1));
        for (end, dur) in [(false, 160), (true, 400), (true, 400), (true, 400)] {
            phone_b.send_to(&key_packet(2, seq, 480, 11, end, dur), b_port).unwrap();
            recv(&phone_a);
            seq += 1;
        }
        assert_eq!(next_key(&mut events, &session), (LegSide::A, '#'), "a key from the phone now in the call's slot A");
        // Only once: the repeated end packets report nothing more.
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(ev) = events.try_recv() {
            assert!(!matches!(ev, MediaEvent::KeyRelayed { .. }), "{ev:?}");
        }
    }

    /// A phone whose party hears the PBX (hold music) is not relayed, but
    /// the keys it presses are still reported (a transfer code keyed while
    /// holding); keys from a source the leg does not follow are not.
    #[test]
    fn keys_from_a_holding_phone_are_reported_and_foreign_ones_are_not() {
        let relays = Relays::start(1).unwrap();
        let base = ports::tests::free_run(20);
        let pool = Arc::new(PortPool::new("127.0.0.1".parse().unwrap(), base, base + 19));
        let (tx, mut events) = mpsc::unbounded_channel();
        let session = MediaSession::start(&relays, &pool, Duration::from_secs(60), tx).unwrap();
        let phone_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let with_keys = |addr| LegMedia { telephone_event: Some(101), ..leg(addr) };
        session.set_leg(LegSide::A, with_keys(phone_a.local_addr().unwrap()));
        session.set_leg(LegSide::B, with_keys(phone_b.local_addr().unwrap()));
        let a_port = SocketAddr::new(session.address, session.a.rtp);
        phone_a.send_to(&rtp(1, 1), a_port).unwrap();
        assert_eq!(recv(&phone_b), rtp(1, 1));
        // B is held: it hears the PBX, and A's packets go nowhere.
        session.set_local(LegSide::B, true);
        session.play(LegSide::B, vec![endpoint::PlayItem::Silence(Duration::from_secs(10))], 1);
        // The PBX's own stream reaching B says the hold is in place.
        let from_pbx = recv(&phone_b);
        assert_ne!(from_pbx[8..12], 1u32.to_be_bytes(), "B hears the PBX, not A");
        // A stranger's key first: dropped by the latch, never reported.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (seq, end) in [(2, false), (3, true), (4, true)] {
            stranger.send_to(&key_packet(99, seq, 320, 3, end, 400), a_port).unwrap();
        }
        for (seq, (end, dur)) in (2..).zip([(false, 160), (true, 400), (true, 400), (true, 400)]) {
            phone_a.send_to(&key_packet(1, seq, 640, 9, end, dur), a_port).unwrap();
        }
        assert_eq!(next_key(&mut events, &session), (LegSide::A, '9'), "the holding phone's key, and not the stranger's 3");
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
            if let MediaEvent::Latched { side, addr, .. } = ev {
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
