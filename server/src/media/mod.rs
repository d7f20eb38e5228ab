//! Anchored media for the B2BUA: every call leg gets its own RTP and RTCP
//! ports on the server, and one task per call moves packets between the
//! legs through tsunagu-media's latching [`Relay`] (the sans-IO engine; this
//! module is only its shell: sockets, ports and time). Per direction a
//! [`pipeline::Pipeline`] may decrypt SRTP, transcode and encrypt again.

pub mod pipeline;
mod ports;

pub use ports::PortPool;

use pipeline::{LegMedia, Pipeline};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tsunagu_media::{LegSide, Relay, RelayConfig, RelayEvent, RelayLeg};

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
}

enum Control {
    SetLeg { side: LegSide, media: LegMedia },
    /// Play a DTMF digit as RFC 4733 events into `to`'s stream (the other
    /// leg sent it as SIP INFO).
    Dtmf { to: LegSide, digit: char, duration_ms: u32 },
}

/// A call's media: two legs' sockets and the task relaying between them.
/// Dropping it stops the task and frees the ports.
pub struct MediaSession {
    pub address: IpAddr,
    pub a: LegPorts,
    pub b: LegPorts,
    control: mpsc::UnboundedSender<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct LegSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl MediaSession {
    /// Bind two port pairs and start relaying. `events` receives
    /// [`MediaEvent`]s.
    pub async fn start(pool: &Arc<PortPool>, silence_limit: Duration, events: mpsc::UnboundedSender<MediaEvent>) -> std::io::Result<MediaSession> {
        let (a_ports, a_socks) = pool.bind_pair().await?;
        let (b_ports, b_socks) = pool.bind_pair().await?;
        let (control, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(a_socks, b_socks, rx, events, silence_limit));
        Ok(MediaSession { address: pool.address(), a: a_ports, b: b_ports, control, task })
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
        let _ = self.control.send(Control::SetLeg { side, media });
    }

    pub fn send_dtmf(&self, to: LegSide, digit: char, duration_ms: u32) {
        let _ = self.control.send(Control::Dtmf { to, digit, duration_ms });
    }
}

/// `silence_limit`: how long both legs may stay silent before the call is
/// reported dead (on hold, phones still send RTCP, which counts).
async fn run(a: LegSockets, b: LegSockets, mut control: mpsc::UnboundedReceiver<Control>, events: mpsc::UnboundedSender<MediaEvent>, silence_limit: Duration) {
    let now = Instant::now();
    // Phones behind NAT name addresses nobody can reach: latch onto the
    // first valid packet from anywhere, then follow its SSRC.
    let leg = || RelayLeg::new(None).with_latch_any_source(true);
    let mut rtp = Relay::new(now, RelayConfig::rtp(false), leg(), leg());
    let mut rtcp = Relay::new(now, RelayConfig::rtcp(), leg(), leg());
    let mut pipes = [Pipeline::default(), Pipeline::default()]; // [A->B, B->A]
    let mut media = [LegMedia::default(), LegMedia::default()];
    let mut buf_a = vec![0u8; 2048];
    let mut buf_b = vec![0u8; 2048];
    let mut buf_ac = vec![0u8; 2048];
    let mut buf_bc = vec![0u8; 2048];
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(4);
    let mut last_packet = Instant::now();
    // Relay counters already added to the metrics (they are published once
    // a second, not per packet).
    let mut published = (0u64, 0u64);
    let _active = ActiveGauge::new();
    let mut check = tokio::time::interval(Duration::from_secs(1).min(silence_limit));
    // Digits to play into a leg, paced 50 ms apart as RFC 4733 expects.
    let mut dtmf_queue: std::collections::VecDeque<(Instant, LegSide, Vec<u8>)> = Default::default();
    loop {
        tokio::select! {
            ctl = control.recv() => match ctl {
                None => return,
                Some(Control::SetLeg { side, media: m }) => {
                    let idx = idx(side);
                    rtp.set_sdp_addr(side, m.rtp_addr);
                    rtcp.set_sdp_addr(side, m.rtcp_addr());
                    let changed = !media[idx].same_processing(&m);
                    media[idx] = m;
                    // Both directions depend on both legs' parameters; SRTP
                    // contexts are kept when only an address moved.
                    if changed {
                        pipes[0] = Pipeline::new(&media[0], &media[1]);
                        pipes[1] = Pipeline::new(&media[1], &media[0]);
                    }
                }
                Some(Control::Dtmf { to, digit, duration_ms }) => {
                    // The pipeline towards `to` numbers and encrypts them.
                    let dir = 1 - idx(to);
                    let start = Instant::now().max(dtmf_queue.back().map(|(at, _, _)| *at + Duration::from_millis(60)).unwrap_or_else(Instant::now));
                    for (after, pkt) in pipes[dir].dtmf_packets(digit, duration_ms) {
                        dtmf_queue.push_back((start + Duration::from_millis(after), to, pkt));
                    }
                }
            },
            r = a.rtp.recv_from(&mut buf_a) => if let Ok((n, from)) = r {
                last_packet = Instant::now();
                forward(&mut rtp, &mut pipes[0], LegSide::A, from, &buf_a[..n], &b.rtp, &mut out, &events);
                // Under load packets queue up: take what is already there
                // before going back to the scheduler (one wake-up, many packets).
                drain(&a, &b, &mut rtp, &mut pipes, &mut buf_a, &mut buf_b, &mut out, &events);
            },
            r = b.rtp.recv_from(&mut buf_b) => if let Ok((n, from)) = r {
                last_packet = Instant::now();
                forward(&mut rtp, &mut pipes[1], LegSide::B, from, &buf_b[..n], &a.rtp, &mut out, &events);
                // Under load packets queue up: take what is already there
                // before going back to the scheduler (one wake-up, many packets).
                drain(&a, &b, &mut rtp, &mut pipes, &mut buf_a, &mut buf_b, &mut out, &events);
            },
            r = a.rtcp.recv_from(&mut buf_ac) => if let Ok((n, from)) = r {
                last_packet = Instant::now();
                forward_rtcp(&mut rtcp, &mut pipes[0], LegSide::A, from, &buf_ac[..n], &b.rtcp);
            },
            r = b.rtcp.recv_from(&mut buf_bc) => if let Ok((n, from)) = r {
                last_packet = Instant::now();
                forward_rtcp(&mut rtcp, &mut pipes[1], LegSide::B, from, &buf_bc[..n], &a.rtcp);
            },
            _ = sleep_until(dtmf_queue.front().map(|(at, _, _)| *at)) => {
                let now = Instant::now();
                while dtmf_queue.front().is_some_and(|(at, _, _)| *at <= now) {
                    let Some((_, to, pkt)) = dtmf_queue.pop_front() else { break };
                    if let Some(target) = rtp.leg(to).target() {
                        let sock = if to == LegSide::A { &a.rtp } else { &b.rtp };
                        let _ = sock.send_to(&pkt, target).await;
                    }
                }
            }
            _ = check.tick() => {
                publish_counts(&rtp, &mut published);
                while let Some(ev) = rtp.poll_event() {
                    report(&ev, &events);
                }
                let silent = last_packet.elapsed();
                if silent >= silence_limit {
                    let _ = events.send(MediaEvent::Silent { secs: silent.as_secs() });
                    last_packet = Instant::now();
                }
            }
        }
    }
}

/// Counts a media session in `tsunagu_media_sessions` while it lives.
struct ActiveGauge;

impl ActiveGauge {
    fn new() -> Self {
        metrics::gauge!("tsunagu_media_sessions").increment(1.0);
        ActiveGauge
    }
}

impl Drop for ActiveGauge {
    fn drop(&mut self) {
        metrics::gauge!("tsunagu_media_sessions").decrement(1.0);
    }
}

fn publish_counts(relay: &Relay, published: &mut (u64, u64)) {
    let (mut relayed, mut dropped) = (0, 0);
    for side in [LegSide::A, LegSide::B] {
        let st = relay.leg(side).stats();
        relayed += st.packets_in;
        dropped += st.dropped.total();
    }
    metrics::counter!("tsunagu_media_packets_relayed_total").increment(relayed.saturating_sub(published.0));
    metrics::counter!("tsunagu_media_packets_dropped_total").increment(dropped.saturating_sub(published.1));
    *published = (relayed, dropped);
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Packets taken per wake-up beyond the first.
const DRAIN: usize = 32;

/// Take the RTP already queued on both legs' sockets, in turns, without
/// going back to the scheduler: under load one wake-up then carries many
/// packets, both directions.
#[allow(clippy::too_many_arguments)]
fn drain(
    a: &LegSockets,
    b: &LegSockets,
    rtp: &mut Relay,
    pipes: &mut [Pipeline; 2],
    buf_a: &mut [u8],
    buf_b: &mut [u8],
    out: &mut Vec<Vec<u8>>,
    events: &mpsc::UnboundedSender<MediaEvent>,
) {
    for _ in 0..DRAIN {
        let mut got = false;
        if let Ok((n, from)) = a.rtp.try_recv_from(buf_a) {
            forward(rtp, &mut pipes[0], LegSide::A, from, &buf_a[..n], &b.rtp, out, events);
            got = true;
        }
        if let Ok((n, from)) = b.rtp.try_recv_from(buf_b) {
            forward(rtp, &mut pipes[1], LegSide::B, from, &buf_b[..n], &a.rtp, out, events);
            got = true;
        }
        if !got {
            break;
        }
    }
}

/// Send without waiting: a UDP send on a full socket buffer would block for
/// a moment; dropping that one packet (counted) is what a media relay
/// should do rather than delay every later one.
fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = sock.try_send_to(bytes, to) {
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

#[allow(clippy::too_many_arguments)]
fn forward(
    relay: &mut Relay,
    pipe: &mut Pipeline,
    side: LegSide,
    from: SocketAddr,
    packet: &[u8],
    out_sock: &UdpSocket,
    out: &mut Vec<Vec<u8>>,
    events: &mpsc::UnboundedSender<MediaEvent>,
) {
    let now = Instant::now();
    if pipe.is_passthrough() {
        match relay.route(now, side, from, packet) {
            Ok(to) => {
                send(out_sock, packet, to);
            }
            Err(reason) => tracing::trace!(leg = ?side, ?reason, "media packet dropped"),
        }
    } else {
        // Decrypt first: only an authenticated packet may move a latch.
        let Some(plain) = pipe.open(packet) else {
            tracing::trace!(leg = ?side, "SRTP packet failed authentication; dropped");
            return;
        };
        let to = match relay.route(now, side, from, &plain) {
            Ok(to) => to,
            Err(reason) => {
                tracing::trace!(leg = ?side, ?reason, "media packet dropped");
                return;
            }
        };
        out.clear();
        if let Some((digit, ms)) = pipe.process(&plain, out) {
            let _ = events.send(MediaEvent::Dtmf { from: side, digit, duration_ms: ms });
        }
        tracing::trace!(leg = ?side, out = out.len(), "media packet processed");
        for p in out.iter() {
            send(out_sock, p, to);
        }
    }
    while let Some(ev) = relay.poll_event() {
        report(&ev, events);
    }
}

fn forward_rtcp(relay: &mut Relay, pipe: &mut Pipeline, side: LegSide, from: SocketAddr, packet: &[u8], out_sock: &UdpSocket) {
    let now = Instant::now();
    if pipe.is_passthrough() {
        if let Ok(to) = relay.route(now, side, from, packet) {
            send(out_sock, packet, to);
        }
        return;
    }
    let Some(plain) = pipe.open_rtcp(packet) else { return };
    if let Ok(to) = relay.route(now, side, from, &plain) {
        if let Some(sealed) = pipe.seal_rtcp(&plain) {
            send(out_sock, &sealed, to);
        }
    }
}
