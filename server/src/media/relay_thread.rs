//! The relay threads: each owns a level-triggered epoll set with the
//! sockets of many calls and moves every packet itself, from `recvfrom`
//! through the call's [`Pipeline`] to `sendto`, with no task switch, no
//! wake-up of another thread and no allocation on the plain path.
//!
//! Why not one tokio task per call (the first design): every packet then
//! cost an epoll event in the runtime, a task wake-up, a poll of the
//! call's four receive futures and an extra `recvfrom` that found the
//! socket empty; at 1,000 calls (100,000 packets/s) that filled a core and
//! the p99 added latency grew to tens of milliseconds. Here one wait
//! returns every ready socket of every call, and each is read once.
//!
//! Call tasks talk to a thread by [`Command`]s over a channel plus an
//! eventfd wake-up; the thread reports [`MediaEvent`]s on each call's own
//! unbounded channel. Timers (DTMF pacing, the once-a-second counters and
//! silence check) are kept by the thread too.

use super::epoll::{EventFd, Epoll};
use super::ports::LegSockets;
use super::MediaEvent;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tsunagu_media::pipeline::{LegMedia, Pipeline};
use tsunagu_media::{LegSide, Relay, RelayConfig, RelayEvent, RelayLeg};

/// Token of the thread's own eventfd; call sockets use `id << 2 | socket`.
const WAKE: u64 = u64::MAX;
/// Events taken per wait.
const BATCH: usize = 512;
/// Counters, relay events and the silence check run this often.
const TICK: Duration = Duration::from_secs(1);

pub(super) enum Command {
    Add { id: u64, session: Box<Session> },
    SetLeg { id: u64, side: LegSide, media: LegMedia },
    /// Play a DTMF digit as RFC 4733 events into `to`'s stream.
    Dtmf { id: u64, to: LegSide, digit: char, duration_ms: u32 },
    Remove { id: u64 },
}

/// The sending half of one relay thread, and what it says of its load.
pub(super) struct RelayThread {
    commands: std::sync::Mutex<std_mpsc::Sender<Command>>,
    wake: EventFd,
    /// Share of the last second (per mille) the thread spent not waiting in
    /// epoll_wait: working, or ready to work but not given a CPU. Near
    /// 1000 it is falling behind and packets queue up in the sockets.
    busy_permille: AtomicU32,
    sessions: AtomicUsize,
}

impl RelayThread {
    pub fn spawn(name: String) -> std::io::Result<std::sync::Arc<RelayThread>> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new()?;
        epoll.add(wake.raw(), WAKE)?;
        let (tx, rx) = std_mpsc::channel();
        let thread = std::sync::Arc::new(RelayThread { commands: std::sync::Mutex::new(tx), wake, busy_permille: AtomicU32::new(0), sessions: AtomicUsize::new(0) });
        let me = thread.clone();
        std::thread::Builder::new().name(name).spawn(move || run(epoll, rx, me))?;
        Ok(thread)
    }

    pub fn busy_permille(&self) -> u32 {
        self.busy_permille.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    pub fn send(&self, cmd: Command) {
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(cmd);
        }
        self.wake.notify();
    }
}

/// One call's media, owned by its relay thread.
pub(super) struct Session {
    a: LegSockets,
    b: LegSockets,
    rtp: Relay,
    rtcp: Relay,
    /// [A->B, B->A]
    pipes: [Pipeline; 2],
    media: [LegMedia; 2],
    /// Digits to play into a leg, paced 50 ms apart as RFC 4733 expects.
    dtmf: VecDeque<(Instant, LegSide, Vec<u8>)>,
    last_packet: Instant,
    silence_limit: Duration,
    events: mpsc::UnboundedSender<MediaEvent>,
    /// Relay counters already added to the metrics.
    published: (u64, u64),
}

impl Session {
    pub fn new(a: LegSockets, b: LegSockets, silence_limit: Duration, events: mpsc::UnboundedSender<MediaEvent>) -> Self {
        let now = Instant::now();
        // Phones behind NAT name addresses nobody can reach: latch onto the
        // first valid packet from anywhere, then follow its SSRC.
        let leg = || RelayLeg::new(None).with_latch_any_source(true);
        Session {
            a,
            b,
            rtp: Relay::new(now, RelayConfig::rtp(false), leg(), leg()),
            rtcp: Relay::new(now, RelayConfig::rtcp(), leg(), leg()),
            pipes: [Pipeline::default(), Pipeline::default()],
            media: [LegMedia::default(), LegMedia::default()],
            dtmf: VecDeque::new(),
            last_packet: now,
            silence_limit,
            events,
            published: (0, 0),
        }
    }

    fn sockets(&self) -> [&UdpSocket; 4] {
        [&self.a.rtp, &self.a.rtcp, &self.b.rtp, &self.b.rtcp]
    }

    fn set_leg(&mut self, side: LegSide, m: LegMedia) {
        let i = idx(side);
        self.rtp.set_sdp_addr(side, m.rtp_addr);
        self.rtcp.set_sdp_addr(side, m.rtcp_addr());
        let changed = !self.media[i].same_processing(&m);
        self.media[i] = m;
        // Both directions depend on both legs' parameters. SRTP contexts
        // are kept when only an address moved, and carried over into the
        // rebuilt pipelines when their key did not change.
        if changed {
            let [ab, ba] = std::mem::take(&mut self.pipes);
            self.pipes = [Pipeline::rebuilt(ab, &self.media[0], &self.media[1], rand::random()), Pipeline::rebuilt(ba, &self.media[1], &self.media[0], rand::random())];
            for p in &self.pipes {
                if let Some(e) = p.setup_error() {
                    tracing::warn!(error = %e, "cannot transcode between the legs' codecs; passing packets through");
                }
            }
        }
    }

    /// Queue a digit's packets; returns when the first is due.
    fn queue_dtmf(&mut self, now: Instant, to: LegSide, digit: char, duration_ms: u32) -> Option<Instant> {
        // The pipeline towards `to` numbers and encrypts them.
        let dir = 1 - idx(to);
        let start = now.max(self.dtmf.back().map(|(at, _, _)| *at + Duration::from_millis(60)).unwrap_or(now));
        for (after, pkt) in self.pipes[dir].dtmf_packets(digit, duration_ms) {
            self.dtmf.push_back((start + Duration::from_millis(after), to, pkt));
        }
        self.dtmf.front().map(|(at, _, _)| *at)
    }

    /// Send the digits' packets that are due; returns when the next is.
    fn send_due_dtmf(&mut self, now: Instant) -> Option<Instant> {
        while self.dtmf.front().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, to, pkt)) = self.dtmf.pop_front() else { break };
            if let Some(target) = self.rtp.leg(to).target() {
                let sock = if to == LegSide::A { &self.a.rtp } else { &self.b.rtp };
                send(sock, &pkt, target);
            }
        }
        self.dtmf.front().map(|(at, _, _)| *at)
    }

    /// One datagram waits on socket `which` (0 A-RTP, 1 A-RTCP, 2 B-RTP,
    /// 3 B-RTCP): take it and pass it on.
    fn on_readable(&mut self, which: u64, now: Instant, buf: &mut [u8], out: &mut Vec<Vec<u8>>) {
        let (side, rtcp) = match which {
            0 => (LegSide::A, false),
            1 => (LegSide::A, true),
            2 => (LegSide::B, false),
            _ => (LegSide::B, true),
        };
        let sock = self.sockets()[which as usize];
        let (n, from) = match sock.recv_from(buf) {
            Ok(r) => r,
            // Spurious readiness, or an ICMP error surfacing: nothing to relay.
            Err(_) => return,
        };
        self.last_packet = now;
        let packet = &buf[..n];
        if rtcp {
            self.forward_rtcp(side, from, packet, now);
        } else {
            self.forward_rtp(side, from, packet, now, out);
        }
    }

    fn forward_rtp(&mut self, side: LegSide, from: SocketAddr, packet: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        let out_sock = if side == LegSide::A { &self.b.rtp } else { &self.a.rtp };
        let pipe = &mut self.pipes[idx(side)];
        if pipe.is_passthrough() {
            match self.rtp.route(now, side, from, packet) {
                Ok(to) => send(out_sock, packet, to),
                Err(reason) => tracing::trace!(leg = ?side, ?reason, "media packet dropped"),
            }
        } else {
            // Decrypt first: only an authenticated packet may move a latch.
            let Some(plain) = pipe.open(packet) else {
                tracing::trace!(leg = ?side, "SRTP packet failed authentication; dropped");
                return;
            };
            let to = match self.rtp.route(now, side, from, &plain) {
                Ok(to) => to,
                Err(reason) => {
                    tracing::trace!(leg = ?side, ?reason, "media packet dropped");
                    return;
                }
            };
            out.clear();
            if let Some((digit, ms)) = pipe.process(&plain, out) {
                let _ = self.events.send(MediaEvent::Dtmf { from: side, digit, duration_ms: ms });
            }
            for p in out.iter() {
                send(out_sock, p, to);
            }
        }
        while let Some(ev) = self.rtp.poll_event() {
            report(&ev, &self.events);
        }
    }

    fn forward_rtcp(&mut self, side: LegSide, from: SocketAddr, packet: &[u8], now: Instant) {
        let out_sock = if side == LegSide::A { &self.b.rtcp } else { &self.a.rtcp };
        let pipe = &mut self.pipes[idx(side)];
        if pipe.is_passthrough() {
            if let Ok(to) = self.rtcp.route(now, side, from, packet) {
                send(out_sock, packet, to);
            }
        } else if let Some(plain) = pipe.open_rtcp(packet) {
            if let Ok(to) = self.rtcp.route(now, side, from, &plain) {
                if let Some(sealed) = pipe.seal_rtcp(&plain) {
                    send(out_sock, &sealed, to);
                }
            }
        }
        // RTCP latches are not reported: RTP's say the same, sooner.
        while self.rtcp.poll_event().is_some() {}
    }

    /// Once a second: counters to the metrics, the silence check.
    fn tick(&mut self, now: Instant) {
        let (mut relayed, mut dropped) = (0, 0);
        for side in [LegSide::A, LegSide::B] {
            for relay in [&self.rtp, &self.rtcp] {
                let st = relay.leg(side).stats();
                relayed += st.packets_in;
                dropped += st.dropped.total();
            }
        }
        metrics::counter!("tsunagu_media_packets_relayed_total").increment(relayed.saturating_sub(self.published.0));
        metrics::counter!("tsunagu_media_packets_dropped_total").increment(dropped.saturating_sub(self.published.1));
        self.published = (relayed, dropped);
        let silent = now.saturating_duration_since(self.last_packet);
        if silent >= self.silence_limit {
            let _ = self.events.send(MediaEvent::Silent { secs: silent.as_secs() });
            self.last_packet = now;
        }
    }
}

fn run(epoll: Epoll, commands: std_mpsc::Receiver<Command>, me: std::sync::Arc<RelayThread>) {
    let mut sessions: HashMap<u64, Session> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    let mut buf = vec![0u8; 2048];
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(4);
    // (due, session id) of queued DTMF packets; stale entries are harmless.
    let mut dtmf_due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next_tick = Instant::now() + TICK;
    let (mut window_start, mut busy) = (Instant::now(), Duration::ZERO);
    let mut woke_at = Instant::now();
    loop {
        let now = Instant::now();
        busy += now.saturating_duration_since(woke_at);
        let until = dtmf_due.peek().map(|Reverse((at, _))| *at).unwrap_or(next_tick).min(next_tick);
        let timeout_ms = until.saturating_duration_since(now).as_micros().div_ceil(1000).min(1000) as i32;
        let n = match epoll.wait(&mut events, timeout_ms) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "relay thread: epoll_wait failed");
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        let now = Instant::now();
        woke_at = now;
        // Commands first: a call's SDP (where to send) sent before its first
        // packets arrived must apply to them, even within one wake-up.
        if events[..n].iter().any(|ev| {
            let token = ev.u64;
            token == WAKE
        }) {
            me.wake.clear();
            // Drain after clearing: a command sent in between wakes us again.
            while let Ok(cmd) = commands.try_recv() {
                match cmd {
                    Command::Add { id, session } => {
                        for (i, sock) in session.sockets().iter().enumerate() {
                            if let Err(e) = epoll.add(sock.as_raw_fd(), id << 2 | i as u64) {
                                tracing::error!(error = %e, "relay thread: cannot watch a media socket");
                            }
                        }
                        metrics::gauge!("tsunagu_media_sessions").increment(1.0);
                        sessions.insert(id, *session);
                        me.sessions.store(sessions.len(), Ordering::Relaxed);
                    }
                    Command::SetLeg { id, side, media } => {
                        if let Some(s) = sessions.get_mut(&id) {
                            s.set_leg(side, media);
                        }
                    }
                    Command::Dtmf { id, to, digit, duration_ms } => {
                        if let Some(due) = sessions.get_mut(&id).and_then(|s| s.queue_dtmf(now, to, digit, duration_ms)) {
                            dtmf_due.push(Reverse((due, id)));
                        }
                    }
                    Command::Remove { id } => {
                        if let Some(mut s) = sessions.remove(&id) {
                            s.tick(now);
                            for sock in s.sockets() {
                                epoll.remove(sock.as_raw_fd());
                            }
                            metrics::gauge!("tsunagu_media_sessions").decrement(1.0);
                            me.sessions.store(sessions.len(), Ordering::Relaxed);
                            // Dropping `s` closes the sockets and frees the ports.
                        }
                    }
                }
            }
        }
        for ev in &events[..n] {
            let token = ev.u64;
            if token == WAKE {
                continue;
            }
            if let Some(s) = sessions.get_mut(&(token >> 2)) {
                s.on_readable(token & 3, now, &mut buf, &mut out);
            }
        }
        while dtmf_due.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, id))) = dtmf_due.pop() else { break };
            if let Some(next) = sessions.get_mut(&id).and_then(|s| s.send_due_dtmf(now)) {
                dtmf_due.push(Reverse((next, id)));
            }
        }
        if now >= next_tick {
            for s in sessions.values_mut() {
                s.tick(now);
            }
            next_tick = now + TICK;
            let window = now.saturating_duration_since(window_start).max(Duration::from_millis(1));
            let permille = (busy.as_micros() * 1000 / window.as_micros()).min(1000) as u32;
            me.busy_permille.store(permille, Ordering::Relaxed);
            metrics::gauge!("tsunagu_media_relay_busy_ratio", "thread" => thread_name()).set(f64::from(permille) / 1000.0);
            (window_start, busy) = (now, Duration::ZERO);
        }
    }
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("media-relay").to_string()
}

/// Send without waiting: a UDP send on a full socket buffer would block for
/// a moment; dropping that one packet (counted) is what a media relay
/// should do rather than delay every later one.
fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(bytes, to) {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            metrics::counter!("tsunagu_media_send_dropped_total").increment(1);
        }
    }
}

fn idx(side: LegSide) -> usize {
    match side {
        LegSide::A => 0,
        LegSide::B => 1,
    }
}

fn report(ev: &RelayEvent, events: &mpsc::UnboundedSender<MediaEvent>) {
    match ev {
        RelayEvent::Latched { side, addr, .. } => {
            let _ = events.send(MediaEvent::Latched { side: *side, addr: *addr });
        }
        RelayEvent::Relatched { side, from, to, ssrc } => {
            tracing::info!(leg = ?side, %from, %to, ssrc, "media source moved; following it");
            let _ = events.send(MediaEvent::Latched { side: *side, addr: *to });
        }
        RelayEvent::SsrcChanged { .. } => {}
    }
}
