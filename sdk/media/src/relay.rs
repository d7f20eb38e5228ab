//! The anchored-media relay of a B2BUA: two call legs, each with a media port
//! on the server, and packets copied from one leg to the other.
//!
//! It is symmetric and latching: a leg is sent to where its packets really
//! come from, not (only) to the address its SDP named, because phones behind
//! NAT name an address nobody can reach, and because a phone that moves from
//! Wi-Fi to LTE keeps its stream but changes address long before signalling
//! catches up (design principle 4). The rules, per leg:
//!
//! 1. Before anything is latched, the first valid packet from the SDP address
//!    latches it; with [`RelayLeg::with_latch_any_source`] (NAT'd phones) the
//!    first valid packet from anywhere does. If the leg was told an expected
//!    SSRC, the packet must carry it.
//! 2. Once latched, the leg follows its stream, identified by the SSRC: the
//!    first valid packet with the same SSRC from a new address moves the latch
//!    there at once, and the other direction follows with the very next packet.
//!    A packet of the stream that is not newer than what was already seen (a
//!    straggler still arriving over the old path) is forwarded but does not
//!    move the latch back.
//! 3. From the latched address, a new SSRC is accepted (a phone restarting its
//!    stream) and becomes the stream followed.
//! 4. Anything else is dropped and counted: a packet from another address with
//!    another SSRC (blind RTP injection or hijack), from a non-SDP address
//!    before latching on a strict leg, malformed or of the wrong kind.
//!
//! The SSRC check stops blind injection only; an on-path attacker who can
//! read the SSRC needs SRTP authentication to be stopped: the PBX's media
//! shell authenticates SRTP packets (crate::srtp) before they reach the
//! relay, so only authenticated packets can move a latch. Parsing here reads
//! only the clear RTP/RTCP header, so SRTP and SRTCP can also be relayed
//! untouched.
//!
//! A [`Relay`] serves one port pair: one for RTP (optionally with RTCP
//! multiplexed, RFC 5761) and, when RTCP has its own ports, another
//! [`Relay`] with [`StreamKind::Rtcp`]. Multiplexed RTCP never moves a latch;
//! it is forwarded only from the latched address (or, before latching, the
//! SDP address).

use crate::error::MediaError;
use crate::rtcp::RtcpHeader;
use crate::rtp::{classify, PacketClass, RtpHeader};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Which of the two legs of a [`Relay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegSide {
    A,
    B,
}

impl LegSide {
    /// The leg packets from this one are sent to.
    pub fn other(self) -> Self {
        match self {
            LegSide::A => LegSide::B,
            LegSide::B => LegSide::A,
        }
    }

    fn idx(self) -> usize {
        match self {
            LegSide::A => 0,
            LegSide::B => 1,
        }
    }
}

/// What a relay's ports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// RTP; with `rtcp_mux`, RTCP on the same ports too (RFC 5761).
    Rtp { rtcp_mux: bool },
    /// RTCP on its own ports; the latch follows the sender SSRC.
    Rtcp,
}

/// Settings of one [`Relay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    pub kind: StreamKind,
    /// Datagrams longer than this are dropped. Default 1500: RTP that does
    /// not fit an Ethernet MTU is fragmented and suspect.
    pub max_packet_len: usize,
    /// Events kept for [`Relay::poll_event`]; beyond that the oldest are
    /// dropped (and counted), so a shell that never polls cannot grow memory.
    pub max_events: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { kind: StreamKind::Rtp { rtcp_mux: true }, max_packet_len: 1500, max_events: 64 }
    }
}

impl RelayConfig {
    /// RTP, with or without multiplexed RTCP; other settings default.
    pub fn rtp(rtcp_mux: bool) -> Self {
        Self { kind: StreamKind::Rtp { rtcp_mux }, ..Self::default() }
    }

    /// RTCP on its own ports; other settings default.
    pub fn rtcp() -> Self {
        Self { kind: StreamKind::Rtcp, ..Self::default() }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Bytes,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not parseable as the RTP or RTCP this relay carries (includes
    /// [`MediaError::TooLarge`]).
    Malformed(MediaError),
    /// Something else on the port: STUN, DTLS, RTCP without mux, RTP on an
    /// RTCP relay, another version ([`PacketClass::Unknown`]).
    WrongKind(PacketClass),
    /// Before latching, from an address the leg does not accept.
    UnknownSource,
    /// From an address other than the latched one with an SSRC that is not
    /// the leg's stream; or, before latching, not the expected SSRC.
    ForeignSsrc { ssrc: u32 },
    /// The other leg has neither a latched nor an SDP address yet.
    NoDestination,
}

/// Dropped packets of one leg, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    pub malformed: u64,
    pub too_large: u64,
    pub wrong_kind: u64,
    pub unknown_source: u64,
    pub foreign_ssrc: u64,
    pub no_destination: u64,
}

impl DropStats {
    pub fn total(&self) -> u64 {
        self.malformed + self.too_large + self.wrong_kind + self.unknown_source + self.foreign_ssrc + self.no_destination
    }
}

/// Counters of one leg. "In" counts packets received from the leg and
/// forwarded; "out" counts packets sent to the leg; every received packet is
/// either in `packets_in` or in `dropped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Forwarded stream packets from a non-latched address that did not move
    /// the latch (stragglers from an old path); also counted in `packets_in`.
    pub stale_forwarded: u64,
    pub dropped: DropStats,
}

/// What happened to a latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// The leg's first latch.
    Latched { side: LegSide, addr: SocketAddr, ssrc: u32 },
    /// The leg's stream now comes from a new address (e.g. Wi-Fi to LTE).
    Relatched { side: LegSide, from: SocketAddr, to: SocketAddr, ssrc: u32 },
    /// The latched address started a new stream.
    SsrcChanged { side: LegSide, addr: SocketAddr, old: u32, new: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latch {
    addr: SocketAddr,
    ssrc: u32,
    /// Highest RTP sequence number seen from the stream (RTP relays only).
    highest_seq: Option<u16>,
}

/// One call leg as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLeg {
    sdp_addr: Option<SocketAddr>,
    latch_any_source: bool,
    expected_ssrc: Option<u32>,
    latch: Option<Latch>,
    stats: LegStats,
    last_received: Option<Instant>,
}

impl RelayLeg {
    /// A leg whose signalling named `sdp_addr` (None while unknown, or for
    /// `c=0.0.0.0`). Strict by default: only the SDP address can latch.
    pub fn new(sdp_addr: Option<SocketAddr>) -> Self {
        Self {
            sdp_addr,
            latch_any_source: false,
            expected_ssrc: None,
            latch: None,
            stats: LegStats::default(),
            last_received: None,
        }
    }

    /// Latch onto the first valid packet from any address (phones behind NAT).
    pub fn with_latch_any_source(mut self, yes: bool) -> Self {
        self.latch_any_source = yes;
        self
    }

    /// Only latch onto this SSRC (e.g. from SDP `a=ssrc`).
    pub fn with_expected_ssrc(mut self, ssrc: Option<u32>) -> Self {
        self.expected_ssrc = ssrc;
        self
    }

    pub fn sdp_addr(&self) -> Option<SocketAddr> {
        self.sdp_addr
    }

    pub fn latch_any_source(&self) -> bool {
        self.latch_any_source
    }

    pub fn expected_ssrc(&self) -> Option<u32> {
        self.expected_ssrc
    }

    pub fn latched_addr(&self) -> Option<SocketAddr> {
        self.latch.map(|l| l.addr)
    }

    /// The SSRC of the stream the latch follows.
    pub fn latched_ssrc(&self) -> Option<u32> {
        self.latch.map(|l| l.ssrc)
    }

    /// Where packets for this leg go: the latched address, else the SDP one.
    pub fn target(&self) -> Option<SocketAddr> {
        self.latched_addr().or(self.sdp_addr)
    }

    pub fn stats(&self) -> &LegStats {
        &self.stats
    }

    /// When the last packet from this leg was accepted.
    pub fn last_received(&self) -> Option<Instant> {
        self.last_received
    }

    fn count_drop(&mut self, reason: DropReason) {
        let d = &mut self.stats.dropped;
        match reason {
            DropReason::Malformed(MediaError::TooLarge { .. }) => d.too_large += 1,
            DropReason::Malformed(_) => d.malformed += 1,
            DropReason::WrongKind(_) => d.wrong_kind += 1,
            DropReason::UnknownSource => d.unknown_source += 1,
            DropReason::ForeignSsrc { .. } => d.foreign_ssrc += 1,
            DropReason::NoDestination => d.no_destination += 1,
        }
    }
}

/// What the relay read from a packet.
enum Ident {
    /// A packet of a stream that may latch: RTP, or RTCP on an RTCP relay.
    Stream { ssrc: u32, seq: Option<u16> },
    /// RTCP multiplexed on an RTP relay: forwarded, never latches.
    MuxRtcp,
}

/// RFC 3550 A.1's misorder window: a packet at most this far behind the
/// highest sequence number seen is a straggler, not a new path.
const MAX_MISORDER: u16 = 100;

/// Two legs and the packets between them. See the module notes for the rules.
#[derive(Debug, Clone)]
pub struct Relay {
    config: RelayConfig,
    legs: [RelayLeg; 2],
    events: VecDeque<RelayEvent>,
    events_dropped: u64,
    created: Instant,
}

impl Relay {
    pub fn new(now: Instant, config: RelayConfig, a: RelayLeg, b: RelayLeg) -> Self {
        Self { config, legs: [a, b], events: VecDeque::new(), events_dropped: 0, created: now }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    pub fn leg(&self, side: LegSide) -> &RelayLeg {
        &self.legs[side.idx()]
    }

    /// New SDP address for a leg (re-INVITE, UPDATE). The latch is kept: a
    /// phone that moved has usually been followed already; call
    /// [`Relay::unlatch`] when the far end is a different device (transfer).
    pub fn set_sdp_addr(&mut self, side: LegSide, addr: Option<SocketAddr>) {
        self.legs[side.idx()].sdp_addr = addr;
    }

    /// The SSRC a not-yet-latched leg must carry to latch.
    pub fn set_expected_ssrc(&mut self, side: LegSide, ssrc: Option<u32>) {
        self.legs[side.idx()].expected_ssrc = ssrc;
    }

    pub fn set_latch_any_source(&mut self, side: LegSide, yes: bool) {
        self.legs[side.idx()].latch_any_source = yes;
    }

    /// Forget the latch: the leg sends to its SDP address again and latches
    /// anew by the rules for a fresh leg.
    pub fn unlatch(&mut self, side: LegSide) {
        self.legs[side.idx()].latch = None;
    }

    /// A datagram arrived on `side`'s port from `from`. Returns what to send,
    /// or None when it is dropped (see [`Relay::route`] for why).
    pub fn handle_packet(&mut self, now: Instant, side: LegSide, from: SocketAddr, packet: &[u8]) -> Option<Transmit> {
        let to = self.route(now, side, from, packet).ok()?;
        Some(Transmit { to, bytes: Bytes::copy_from_slice(packet) })
    }

    /// Like [`Relay::handle_packet`] but without copying: updates latches and
    /// counters and says where to send the same bytes, or why not.
    pub fn route(&mut self, now: Instant, side: LegSide, from: SocketAddr, packet: &[u8]) -> Result<SocketAddr, DropReason> {
        match self.accept(now, side, from, packet) {
            Ok(()) => {}
            Err(reason) => {
                self.legs[side.idx()].count_drop(reason);
                return Err(reason);
            }
        }
        let len = packet.len() as u64;
        let Some(to) = self.legs[side.other().idx()].target() else {
            self.legs[side.idx()].count_drop(DropReason::NoDestination);
            return Err(DropReason::NoDestination);
        };
        let src = &mut self.legs[side.idx()].stats;
        src.packets_in += 1;
        src.bytes_in += len;
        let dst = &mut self.legs[side.other().idx()].stats;
        dst.packets_out += 1;
        dst.bytes_out += len;
        Ok(to)
    }

    /// Validates a packet and applies the latching rules; on success the
    /// packet came from the leg and is to be forwarded. Public for a leg
    /// the application answers itself (a PBX playing a prompt): its packets
    /// go nowhere, but the latch must still follow the phone.
    pub fn accept(&mut self, now: Instant, side: LegSide, from: SocketAddr, packet: &[u8]) -> Result<(), DropReason> {
        if packet.len() > self.config.max_packet_len {
            return Err(DropReason::Malformed(MediaError::TooLarge {
                len: packet.len(),
                max: self.config.max_packet_len,
            }));
        }
        let ident = self.identify(packet)?;
        let leg = &mut self.legs[side.idx()];
        match ident {
            Ident::MuxRtcp => {
                let allowed = match leg.latch {
                    Some(l) => l.addr == from,
                    None => leg.sdp_addr == Some(from),
                };
                if !allowed {
                    return Err(DropReason::UnknownSource);
                }
            }
            Ident::Stream { ssrc, seq } => match leg.latch.as_mut() {
                None => {
                    if !leg.latch_any_source && leg.sdp_addr != Some(from) {
                        return Err(DropReason::UnknownSource);
                    }
                    if leg.expected_ssrc.is_some_and(|e| e != ssrc) {
                        return Err(DropReason::ForeignSsrc { ssrc });
                    }
                    leg.latch = Some(Latch { addr: from, ssrc, highest_seq: seq });
                    push_event(&mut self.events, &mut self.events_dropped, self.config.max_events, RelayEvent::Latched {
                        side,
                        addr: from,
                        ssrc,
                    });
                }
                Some(l) if l.addr == from => {
                    if l.ssrc != ssrc {
                        let old = l.ssrc;
                        l.ssrc = ssrc;
                        l.highest_seq = seq;
                        push_event(&mut self.events, &mut self.events_dropped, self.config.max_events, RelayEvent::SsrcChanged {
                            side,
                            addr: from,
                            old,
                            new: ssrc,
                        });
                    } else {
                        advance(&mut l.highest_seq, seq);
                    }
                }
                Some(l) => {
                    if l.ssrc != ssrc {
                        return Err(DropReason::ForeignSsrc { ssrc });
                    }
                    if is_straggler(l.highest_seq, seq) {
                        leg.stats.stale_forwarded += 1;
                    } else {
                        let old = l.addr;
                        l.addr = from;
                        l.highest_seq = seq.or(l.highest_seq);
                        push_event(&mut self.events, &mut self.events_dropped, self.config.max_events, RelayEvent::Relatched {
                            side,
                            from: old,
                            to: from,
                            ssrc,
                        });
                    }
                }
            },
        }
        leg.last_received = Some(now);
        Ok(())
    }

    fn identify(&self, packet: &[u8]) -> Result<Ident, DropReason> {
        let class = classify(packet);
        match (self.config.kind, class) {
            (StreamKind::Rtp { .. }, PacketClass::Rtp) => {
                let h = RtpHeader::parse(packet).map_err(DropReason::Malformed)?;
                Ok(Ident::Stream { ssrc: h.ssrc, seq: Some(h.sequence) })
            }
            (StreamKind::Rtp { rtcp_mux: true }, PacketClass::Rtcp) => {
                RtcpHeader::parse(packet).map_err(DropReason::Malformed)?;
                Ok(Ident::MuxRtcp)
            }
            (StreamKind::Rtcp, PacketClass::Rtcp) => {
                let h = RtcpHeader::parse(packet).map_err(DropReason::Malformed)?;
                let ssrc = h.ssrc.ok_or(DropReason::Malformed(MediaError::RtcpNoSsrc))?;
                Ok(Ident::Stream { ssrc, seq: None })
            }
            (_, class) => Err(DropReason::WrongKind(class)),
        }
    }

    /// The next latch event, oldest first.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// Events discarded because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// When a packet was last accepted from either leg, or when the relay was
    /// created if none has been.
    pub fn last_activity(&self) -> Instant {
        self.legs.iter().filter_map(|l| l.last_received).max().unwrap_or(self.created).max(self.created)
    }

    /// How long the relay has been idle at `now`: a shell ends calls whose
    /// media has been silent too long.
    pub fn idle_since(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_activity())
    }
}

fn push_event(events: &mut VecDeque<RelayEvent>, dropped: &mut u64, max: usize, ev: RelayEvent) {
    if max == 0 {
        *dropped += 1;
        return;
    }
    while events.len() >= max {
        events.pop_front();
        *dropped += 1;
    }
    events.push_back(ev);
}

/// Moves the highest sequence number forward when `seq` is newer (mod 2^16).
fn advance(highest: &mut Option<u16>, seq: Option<u16>) {
    if let Some(s) = seq {
        match highest {
            Some(h) if (s.wrapping_sub(*h) as i16) <= 0 => {}
            _ => *highest = Some(s),
        }
    }
}

/// A packet of the latched stream from another address is a straggler of the
/// old path when it is a duplicate or at most [`MAX_MISORDER`] behind the
/// highest sequence number seen. RTCP (no sequence number) never is.
fn is_straggler(highest: Option<u16>, seq: Option<u16>) -> bool {
    match (highest, seq) {
        (Some(h), Some(s)) => h.wrapping_sub(s) <= MAX_MISORDER,
        _ => false,
    }
}
