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

use super::endpoint::{Endpoint, EndpointEvent, PlayItem};
use super::epoll::{EventFd, Epoll};
use super::ports::LegSockets;
use super::restamp::Restamp;
use super::MediaEvent;
use crate::recording::{Channel, Tap};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tsunagu_media::dtmf::DtmfDetector;
use tsunagu_media::pipeline::{LegMedia, Pipeline};
use tsunagu_media::{LegSide, Relay, RelayConfig, RelayEvent, RelayLeg, TransmitKind};

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
    /// Answer `side` ourselves (prompts, hold music, an IVR) instead of
    /// relaying it, or (`on: false`) relay it again.
    SetLocal { id: u64, side: LegSide, on: bool },
    /// What a local leg plays, replacing what it was playing.
    Play { id: u64, side: LegSide, items: Vec<PlayItem>, cookie: u32 },
    /// A new party on `side` (a transfer, a pick-up): forget where its
    /// media came from, so the new phone's stream latches.
    Unlatch { id: u64, side: LegSide },
    /// Record the call from now on (`Some`), or stop (`None`).
    Record { id: u64, tap: Option<Box<Tap>> },
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
    /// [A, B]: the leg is answered by the PBX itself, through this endpoint.
    local: [Option<Box<Endpoint>>; 2],
    /// The call is being recorded: each leg's audio is copied here.
    tap: Option<Box<Tap>>,
    /// [A, B]: once the PBX has played to a leg, everything sent to it is
    /// put onto one SSRC and timestamp line (see `restamp`).
    restamp: [Option<Restamp>; 2],
    /// [A, B]: keys a leg sends as RFC 4733 events that are relayed as
    /// they are (both legs take them), watched so the call can act on
    /// in-call feature codes. Keys the pipeline turns into SIP INFO are
    /// reported as [`MediaEvent::Dtmf`] instead, so each key is told once.
    key_watch: [Option<DtmfDetector>; 2],
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
            local: [None, None],
            tap: None,
            restamp: [None, None],
            key_watch: [None, None],
        }
    }

    /// Copy one plain RTP packet of `side`'s channel to the recording.
    /// The caller's leg is the left channel, the other the right.
    fn record(&mut self, side: LegSide, now: Instant, plain: &[u8]) {
        let (Some(tap), Some((codec, pt))) = (self.tap.as_mut(), self.media[idx(side)].codec) else { return };
        let channel = if side == LegSide::A { Channel::Caller } else { Channel::Callee };
        tap.packet(channel, now, codec, pt, plain);
    }

    fn set_recording(&mut self, tap: Option<Box<Tap>>) {
        if let Some(old) = std::mem::replace(&mut self.tap, tap) {
            old.finish();
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
        if let Some(e) = self.local[i].as_mut() {
            if let Err(err) = e.update(Instant::now(), &m) {
                tracing::warn!(leg = ?side, error = %err, "the PBX cannot take the leg's new media; it stays silent");
            }
        }
        if let (Some(r), Some((codec, _))) = (self.restamp[i].as_mut(), m.codec) {
            r.set_clock(codec.clock_rate());
        }
        self.media[i] = m;
        for j in 0..2 {
            let (from, to) = (&self.media[j], &self.media[1 - j]);
            self.key_watch[j] = match (from.telephone_event, to.telephone_event) {
                (Some(pt), Some(_)) => {
                    let clock = from.codec.map(|(c, _)| c.clock_rate()).unwrap_or(8000);
                    // An unchanged payload type keeps the detector (and the
                    // key it may be in the middle of).
                    match self.key_watch[j].take() {
                        Some(d) if d.payload_type() == pt => Some(d),
                        _ => Some(DtmfDetector::with_clock_rate(pt, clock)),
                    }
                }
                _ => None,
            };
        }
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

    fn set_local(&mut self, side: LegSide, on: bool, now: Instant) {
        let i = idx(side);
        if !on {
            self.local[i] = None;
            return;
        }
        if self.local[i].is_some() {
            return;
        }
        match Endpoint::new(&self.media[i], rand::random(), now) {
            Ok(e) => {
                self.local[i] = Some(Box::new(e));
                let clock = self.media[i].codec.map_or(8000, |(c, _)| c.clock_rate());
                self.restamp[i].get_or_insert_with(|| Restamp::new(rand::random(), clock));
            }
            Err(e) => {
                tracing::warn!(leg = ?side, error = %e, "the PBX cannot answer this leg itself");
                let _ = self.events.send(MediaEvent::LocalFailed { side, error: e.to_string() });
            }
        }
    }

    fn play(&mut self, side: LegSide, items: Vec<PlayItem>, cookie: u32) {
        match self.local[idx(side)].as_mut() {
            Some(e) => e.play(items, cookie),
            // Not answered by us (it failed to start): nothing will play,
            // so say it has played, or the call task would wait for ever.
            None => {
                let _ = self.events.send(MediaEvent::Played { side, cookie });
            }
        }
    }

    fn has_local(&self) -> bool {
        self.local.iter().any(Option::is_some)
    }

    /// When a local leg next needs a frame or an RTCP report.
    fn local_due(&self) -> Option<Instant> {
        self.local.iter().flatten().map(|e| e.poll_timeout()).min()
    }

    /// Send the frames (and reports) of local legs that are due, and pass
    /// on what they heard.
    fn drive_local(&mut self, now: Instant) {
        for side in [LegSide::A, LegSide::B] {
            let i = idx(side);
            let Some(e) = self.local[i].as_mut() else { continue };
            if e.poll_timeout() <= now {
                e.handle_timeout(now);
            }
            self.flush_local(side);
        }
    }

    /// What a local leg's endpoint sends goes out through the pipeline
    /// towards that leg (its SRTP context), to where the leg's media is
    /// latched (else its SDP address).
    fn flush_local(&mut self, side: LegSide) {
        let i = idx(side);
        let Some(e) = self.local[i].as_mut() else { return };
        let towards = &mut self.pipes[1 - i];
        let (rtp_sock, rtcp_sock) = if side == LegSide::A { (&self.a.rtp, &self.a.rtcp) } else { (&self.b.rtp, &self.b.rtcp) };
        while let Some(t) = e.poll_transmit() {
            match t.kind {
                TransmitKind::Rtp => {
                    // What the PBX plays on a leg (the recording notice, hold
                    // music) is that leg's channel of the recording.
                    if let (Some(tap), Some((codec, pt))) = (self.tap.as_mut(), self.media[i].codec) {
                        tap.packet(if side == LegSide::A { Channel::Caller } else { Channel::Callee }, Instant::now(), codec, pt, &t.bytes);
                    }
                    let mut bytes = t.bytes;
                    if let Some(r) = self.restamp[i].as_mut() {
                        r.apply(&mut bytes, Instant::now());
                    }
                    if let (Some(sealed), Some(to)) = (towards.seal(&bytes), self.rtp.leg(side).target()) {
                        send(rtp_sock, &sealed, to);
                    }
                }
                TransmitKind::Rtcp => {
                    if let (Some(sealed), Some(to)) = (towards.seal_rtcp(&t.bytes), self.rtcp.leg(side).target()) {
                        send(rtcp_sock, &sealed, to);
                    }
                }
            }
        }
        while let Some(ev) = e.poll_event() {
            let _ = self.events.send(match ev {
                EndpointEvent::Digit { digit, duration_ms } => MediaEvent::Digit { side, digit, duration_ms },
                EndpointEvent::Played { cookie } => MediaEvent::Played { side, cookie },
            });
        }
    }

    /// A datagram from a leg the PBX answers: opened (SRTP), checked by the
    /// latch like a relayed one, and given to the endpoint; it goes nowhere
    /// else.
    fn take_local_packet(&mut self, side: LegSide, rtcp: bool, from: SocketAddr, packet: &[u8], now: Instant) {
        let i = idx(side);
        let plain = if rtcp { self.pipes[i].open_rtcp(packet) } else { self.pipes[i].open(packet) };
        let Some(plain) = plain else { return };
        let relay = if rtcp { &mut self.rtcp } else { &mut self.rtp };
        let accepted = relay.accept(now, side, from, &plain).is_ok();
        while let Some(ev) = self.rtp.poll_event() {
            report(&ev, &self.events);
        }
        while self.rtcp.poll_event().is_some() {}
        if !accepted {
            return;
        }
        if let Some(e) = self.local[i].as_mut() {
            e.handle_datagram(now, &plain);
        }
        self.flush_local(side);
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
        if self.local[idx(side)].is_some() {
            self.take_local_packet(side, rtcp, from, packet, now);
            return;
        }
        if self.local[1 - idx(side)].is_some() {
            // The other leg hears the PBX (hold music, a prompt): what this
            // leg sends now would talk over it. It still moves the latch.
            let relay = if rtcp { &mut self.rtcp } else { &mut self.rtp };
            let accepted = relay.accept(now, side, from, packet).is_ok();
            // RTP latches are told even here: after a transfer the call
            // must see a stale latch onto the party that left.
            while let Some(ev) = relay.poll_event() {
                if !rtcp {
                    report(&ev, &self.events);
                }
            }
            // A phone that put the other on hold may key a transfer code
            // (only from the source the leg follows).
            if accepted && !rtcp && self.key_watch[idx(side)].is_some() {
                if let Some(plain) = self.pipes[idx(side)].open(packet) {
                    self.watch_keys(side, &plain);
                }
            }
            return;
        }
        if rtcp {
            self.forward_rtcp(side, from, packet, now);
        } else {
            self.forward_rtp(side, from, packet, now, out);
        }
    }

    fn forward_rtp(&mut self, side: LegSide, from: SocketAddr, packet: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        let out_sock = if side == LegSide::A { &self.b.rtp } else { &self.a.rtp };
        let pipe = &mut self.pipes[idx(side)];
        let restamp = &mut self.restamp[1 - idx(side)];
        if pipe.is_passthrough() {
            match self.rtp.route(now, side, from, packet) {
                Ok(to) => {
                    match restamp {
                        Some(r) => {
                            let mut copy = packet.to_vec();
                            r.apply(&mut copy, now);
                            send(out_sock, &copy, to);
                        }
                        None => send(out_sock, packet, to),
                    }
                    self.watch_keys(side, packet);
                    self.record(side, now, packet);
                }
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
            let digit = match restamp {
                Some(r) => pipe.process_with(&plain, out, |p| r.apply(p, now)),
                None => pipe.process(&plain, out),
            };
            if let Some((digit, ms)) = digit {
                let _ = self.events.send(MediaEvent::Dtmf { from: side, digit, duration_ms: ms });
            }
            for p in out.iter() {
                send(out_sock, p, to);
            }
            if digit.is_none() {
                self.watch_keys(side, &plain);
            }
            self.record(side, now, &plain);
        }
        while let Some(ev) = self.rtp.poll_event() {
            report(&ev, &self.events);
        }
    }

    /// A key relayed from `side` completes: the call hears of it.
    fn watch_keys(&mut self, side: LegSide, plain: &[u8]) {
        let Some(det) = self.key_watch[idx(side)].as_mut() else { return };
        // Only telephone-event packets are parsed; voice costs one compare.
        if plain.get(1).map(|b| b & 0x7f) != Some(det.payload_type()) {
            return;
        }
        if let Some((digit, duration_ms)) = det.push(plain) {
            let _ = self.events.send(MediaEvent::KeyRelayed { from: side, digit, duration_ms });
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
        if let Some(tap) = self.tap.as_mut() {
            tap.tick();
        }
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
    // Sessions with a leg the PBX answers: they need a frame every 20 ms.
    let mut local_ids: HashSet<u64> = HashSet::new();
    loop {
        let now = Instant::now();
        busy += now.saturating_duration_since(woke_at);
        let local_due = local_ids.iter().filter_map(|id| sessions.get(id).and_then(Session::local_due)).min();
        let until = dtmf_due.peek().map(|Reverse((at, _))| *at).unwrap_or(next_tick).min(next_tick).min(local_due.unwrap_or(next_tick));
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
                    Command::SetLocal { id, side, on } => {
                        if let Some(s) = sessions.get_mut(&id) {
                            s.set_local(side, on, now);
                            if s.has_local() {
                                local_ids.insert(id);
                            } else {
                                local_ids.remove(&id);
                            }
                        }
                    }
                    Command::Play { id, side, items, cookie } => {
                        if let Some(s) = sessions.get_mut(&id) {
                            s.play(side, items, cookie);
                        }
                    }
                    Command::Unlatch { id, side } => {
                        if let Some(s) = sessions.get_mut(&id) {
                            s.rtp.unlatch(side);
                            s.rtcp.unlatch(side);
                        }
                    }
                    Command::Record { id, tap } => {
                        if let Some(s) = sessions.get_mut(&id) {
                            s.set_recording(tap);
                        }
                    }
                    Command::Remove { id } => {
                        local_ids.remove(&id);
                        if let Some(mut s) = sessions.remove(&id) {
                            s.tick(now);
                            s.set_recording(None);
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
        for id in &local_ids {
            if let Some(s) = sessions.get_mut(id) {
                if s.local_due().is_some_and(|due| due <= now) {
                    s.drive_local(now);
                }
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
        RelayEvent::Latched { side, addr, ssrc } => {
            let _ = events.send(MediaEvent::Latched { side: *side, addr: *addr, ssrc: *ssrc });
        }
        RelayEvent::Relatched { side, from, to, ssrc } => {
            tracing::info!(leg = ?side, %from, %to, ssrc, "media source moved; following it");
            let _ = events.send(MediaEvent::Latched { side: *side, addr: *to, ssrc: *ssrc });
        }
        RelayEvent::SsrcChanged { .. } => {}
    }
}
