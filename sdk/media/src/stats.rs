//! RTCP reporting for one RTP audio session (RFC 3550 §6): the statistics a
//! participant keeps about what it receives and sends, the SR, RR, SDES and
//! BYE packets that carry them, the round-trip time they yield, and when to
//! send the next report. The softphone SDK and the PBX's own media endpoints
//! (IVR, voicemail, conferences) use it; the relay does not, because it
//! forwards the endpoints' RTCP untouched.
//!
//! Four parts, each usable on its own:
//! - [`ReceiverStats`], one per remote source: the sequence tracking of
//!   RFC 3550 A.1 (probation, cycles, restart on a large jump), loss as in
//!   A.3 and interarrival jitter as in A.8, turned into a [`ReportBlock`].
//! - [`SenderStats`]: what an SR says about our own stream, and the SRs we
//!   sent, so a report block that echoes one gives the round-trip time
//!   (§6.4.1).
//! - [`RtcpPacket`], [`parse_compound`] and [`build_compound`]: the wire
//!   format, with the compound rules of §6.1 and the validity checks of A.2.
//! - [`ReportTimer`]: the §6.3 interval, simplified for a two-party call.
//!
//! Sans-IO like the rest of the crate: local time comes in as `Instant`,
//! wall-clock time as a 64-bit NTP timestamp where the wire needs it, and the
//! interval's randomisation as a caller-supplied number in [0, 1]. Nothing
//! here reads a clock or draws a random number, so everything is
//! deterministic under test.

use std::time::{Duration, Instant};

use crate::error::MediaError;
use crate::rtcp::{rtcp_compound, RtcpHeader, RTCP_BYE, RTCP_RR, RTCP_SDES, RTCP_SR};
use crate::rtp::RTP_VERSION;

/// Most report blocks, SDES chunks or BYE sources one packet can count: the
/// count field has 5 bits.
pub const MAX_REPORT_BLOCKS: usize = 31;
/// Size of one reception report block on the wire.
pub const REPORT_BLOCK_LEN: usize = 24;
/// SDES item type of the canonical name (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;
/// The RFC 3550 §6.2 minimum, used as the nominal interval: two-party audio
/// never has enough RTCP bandwidth to need more.
pub const NOMINAL_INTERVAL: Duration = Duration::from_secs(5);

/// A.1: a jump forward of fewer packets than this is a gap, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// A.1: a packet up to this many behind the highest is late, not a restart.
const MAX_MISORDER: u16 = 100;
/// A.1: a new source is believed after this many packets in sequence.
const MIN_SEQUENTIAL: u8 = 2;
/// The 24-bit signed range of the cumulative-lost field.
const LOST_MIN: i64 = -0x80_0000;
const LOST_MAX: i64 = 0x7F_FFFF;
/// Largest RTCP packet the 16-bit length field can describe.
const MAX_PACKET_LEN: usize = 4 * 65536;
/// SRs remembered for the RTT: at one SR per 5 s, 40 s of them, so a report
/// that echoes an SR older than the last one (ours was lost or crossed it)
/// still yields an RTT.
const SR_HISTORY: usize = 8;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why an RTCP packet could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// The header or the compound framing is wrong (version, type, length
    /// or padding); the crate's own parse error says which.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// No bytes, or no packets to build.
    #[error("empty RTCP compound")]
    Empty,
    /// RFC 3550 §6.1: a compound starts with an SR or an RR.
    #[error("compound RTCP starts with packet type {0}, not SR or RR")]
    FirstNotReport(u8),
    /// RFC 3550 A.2: only the last packet of a compound may be padded.
    #[error("padding on an RTCP packet that is not the last of the compound")]
    PaddingNotLast,
    /// RFC 3550 §6.1: a compound carries an SDES CNAME.
    #[error("compound RTCP carries no SDES CNAME")]
    NoCname,
    /// The packet is shorter than its count and fields need.
    #[error("RTCP packet type {packet_type} needs {need} bytes, has {have}")]
    Truncated { packet_type: u8, need: usize, have: usize },
    /// More than 31 report blocks, SDES chunks or BYE sources.
    #[error("{count} entries in RTCP packet type {packet_type}; at most 31 fit")]
    TooManyEntries { packet_type: u8, count: usize },
    /// An SDES item or BYE reason longer than its 8-bit length allows.
    #[error("RTCP text of {len} bytes; at most 255 fit")]
    TextTooLong { len: usize },
    /// SDES item type 0 ends an item list, so it cannot be an item.
    #[error("SDES item type 0 is the end marker, not an item")]
    SdesItemZero,
    /// The packet would be larger than the 16-bit length field describes.
    #[error("RTCP packet of {len} bytes is too long")]
    PacketTooLong { len: usize },
    /// An [`RtcpPacket::Other`] that is not exactly one RTCP packet.
    #[error("raw RTCP packet is not exactly one valid packet")]
    BadRawPacket,
}

// ---------------------------------------------------------------------------
// Time conversions
// ---------------------------------------------------------------------------

/// The middle 32 bits of a 64-bit NTP timestamp (16.16 fixed-point seconds):
/// the form of LSR, and of the arrival time in the RTT formula.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A 64-bit NTP timestamp from the time since the Unix epoch, as the
/// caller read it from its wall clock (this crate reads no clock). Seconds
/// wrap modulo 2^32 as NTP's do (era 1 starts in 2036).
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xFFFF_FFFF;
    // subsec_nanos < 10^9, so the fraction is < 2^32.
    let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A duration in 1/65536 s units (DLSR), saturating at the field's maximum.
fn duration_to_q16(d: Duration) -> u32 {
    let units = d.as_nanos().saturating_mul(65536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// 1/65536 s units back to a duration.
fn q16_to_duration(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65536)
}

/// A duration in RTP timestamp units at `clock_rate`, modulo 2^32: RTP
/// timestamps wrap, and only differences of them are ever used.
fn duration_to_rtp(d: Duration, clock_rate: u32) -> u32 {
    // as_nanos() < 2^95 and the rate < 2^32: the product fits a u128.
    (d.as_nanos().saturating_mul(u128::from(clock_rate)) / 1_000_000_000) as u32
}

/// The round-trip time from a report block received when the wall clock
/// read `arrival_ntp` (RFC 3550 §6.4.1: A - LSR - DLSR). `None` when the
/// block echoes no SR (LSR 0) or the result would be negative, which a step
/// of either side's wall clock can cause. [`SenderStats::on_report_block`]
/// does the same on the monotonic clock and is preferred.
pub fn rtt_from_lsr(arrival_ntp: u64, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let elapsed = ntp_middle(arrival_ntp).wrapping_sub(last_sr);
    // More than half the 18-hour range "elapsed" means the arrival is before
    // the SR: a clock step, not a round trip.
    if elapsed > u32::MAX / 2 {
        return None;
    }
    elapsed.checked_sub(delay_since_last_sr).map(q16_to_duration)
}

// ---------------------------------------------------------------------------
// Receiver statistics (RFC 3550 A.1, A.3, A.8)
// ---------------------------------------------------------------------------

/// What [`ReceiverStats::on_rtp`] made of a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// The next packet, or one after a gap (possibly wrapping to 0); also
    /// the packet that ends a new source's probation.
    InOrder,
    /// Behind the highest sequence number, seen for the first time.
    Late,
    /// Seen already (within the last 128 sequence numbers).
    Duplicate,
    /// The source is not yet believed (A.1 probation); not counted.
    Probation,
    /// A jump too large to be a gap; not counted. If the next packet follows
    /// it, the source is taken as restarted.
    Jump,
    /// The source restarted after a [`SeqOutcome::Jump`]: counting begins
    /// again from the jump.
    Restarted,
}

impl SeqOutcome {
    /// True when the packet counts as received in the statistics (RFC 3550
    /// counts duplicates too; they are what makes the cumulative loss
    /// negative). A caller following A.1 drops packets for which this is
    /// false.
    pub fn is_counted(self) -> bool {
        !matches!(self, SeqOutcome::Probation | SeqOutcome::Jump)
    }
}

/// Reception statistics for one remote source. Feed every RTP packet of the
/// source to [`on_rtp`](Self::on_rtp) and every SR from it to
/// [`on_sender_report`](Self::on_sender_report); take a
/// [`report_block`](Self::report_block) for each SR or RR sent.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    started: bool,
    probation: u8,
    max_seq: u16,
    /// Wraps of the sequence number since the base (A.1 keeps them shifted
    /// by 16; a count is clearer and cannot overflow in practice).
    cycles: u32,
    /// The first counted sequence number, extended. Signed because the
    /// probation packets before it may lie before a wrap.
    base_seq: i64,
    /// A.1's bad_seq: the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    /// Bit i set: max_seq - i was received. Covers MAX_MISORDER with room,
    /// which is all A.1 accepts behind the highest.
    seen: u128,
    duplicates: u64,
    late: u64,
    /// Zero point of the arrival clock in RTP units.
    epoch: Option<Instant>,
    /// A.8's transit of the previous packet, in RTP units modulo 2^32.
    transit: Option<u32>,
    /// A.8's J, in RTP units. Floating point rather than the integer form
    /// scaled by 16, because that form settles one unit below the true
    /// value and the figure is shown to people.
    jitter: f64,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Statistics for a source whose RTP clock runs at `clock_rate` Hz (8000
    /// for G.711, 48000 for Opus). With a rate of 0 no jitter is computed.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            started: false,
            probation: MIN_SEQUENTIAL,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            seen: 0,
            duplicates: 0,
            late: 0,
            epoch: None,
            transit: None,
            jitter: 0.0,
            last_sr: None,
        }
    }

    /// Records an RTP packet that arrived at `now` with sequence number
    /// `seq` and timestamp `rtp_ts`.
    pub fn on_rtp(&mut self, now: Instant, seq: u16, rtp_ts: u32) -> SeqOutcome {
        if !self.started {
            // A.1: a new source starts on probation, as if the packet before
            // this one had been seen.
            self.started = true;
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let outcome = self.update_seq(seq);
        // A.8 takes packets in arrival order, so late ones count (their delay
        // is jitter); a duplicate's arrival says nothing about the path of
        // the original, and uncounted packets are not believed at all.
        if matches!(outcome, SeqOutcome::InOrder | SeqOutcome::Late | SeqOutcome::Restarted) {
            self.update_jitter(now, rtp_ts);
        }
        outcome
    }

    /// A.1's update_seq, plus the duplicate window.
    fn update_seq(&mut self, seq: u16) -> SeqOutcome {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    return SeqOutcome::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Probation;
        }
        let outcome = if udelta < MAX_DROPOUT {
            if udelta == 0 {
                self.duplicates += 1;
                SeqOutcome::Duplicate
            } else {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1);
                }
                self.seen = if u32::from(udelta) >= u128::BITS { 0 } else { self.seen << udelta };
                self.seen |= 1;
                self.max_seq = seq;
                SeqOutcome::InOrder
            }
        } else if u32::from(udelta) <= (1 << 16) - u32::from(MAX_MISORDER) {
            if Some(seq) == self.bad_seq {
                // Two packets in sequence after the jump: the source
                // restarted (A.1), e.g. the far end reset its stream.
                self.init_seq(seq);
                return SeqOutcome::Restarted;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return SeqOutcome::Jump;
        } else {
            // Behind by 1..MAX_MISORDER, so the shift stays inside the u128.
            let bit = 1u128 << self.max_seq.wrapping_sub(seq);
            if self.seen & bit != 0 {
                self.duplicates += 1;
                SeqOutcome::Duplicate
            } else {
                self.seen |= bit;
                self.late += 1;
                SeqOutcome::Late
            }
        };
        self.received += 1;
        outcome
    }

    /// A.1's init_seq, called when a source is believed. Unlike A.1, the
    /// packets that proved it (all in sequence, ending at `seq`) are counted:
    /// they were received, and leaving them out would make "sent 500,
    /// received 499, lost 0" the figure for a clean call.
    fn init_seq(&mut self, seq: u16) {
        let proving = MIN_SEQUENTIAL - 1;
        self.base_seq = i64::from(seq) - i64::from(proving);
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = u64::from(MIN_SEQUENTIAL);
        self.expected_prior = 0;
        self.received_prior = 0;
        self.seen = (1u128 << MIN_SEQUENTIAL) - 1;
        self.duplicates = 0;
        self.late = 0;
        // A restarted source has a new timestamp base: its transit is not
        // comparable with the old one.
        self.transit = None;
    }

    /// A.8: J += (|D| - J) / 16, with the arrival time in RTP units.
    fn update_jitter(&mut self, now: Instant, rtp_ts: u32) {
        if self.clock_rate == 0 {
            return;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = duration_to_rtp(now.saturating_duration_since(epoch), self.clock_rate);
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            // Wrapping difference read as signed: right across timestamp and
            // arrival-clock wraps alike.
            let d = transit.wrapping_sub(prev) as i32;
            self.jitter += (f64::from(d.unsigned_abs()) - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Records an SR from this source, received at `now`, so the next report
    /// block echoes it (LSR) with the delay since (DLSR).
    pub fn on_sender_report(&mut self, now: Instant, ntp_timestamp: u64) {
        self.last_sr = Some((ntp_middle(ntp_timestamp), now));
    }

    /// The report block about this source, whose SSRC is `ssrc`, for a report
    /// sent at `now`. Starts a new interval for the fraction lost, so take
    /// exactly one per report sent. `None` while the source is on probation.
    pub fn report_block(&mut self, now: Instant, ssrc: u32) -> Option<ReportBlock> {
        if !self.is_valid() {
            return None;
        }
        let expected = self.expected();
        let received = i64::try_from(self.received).unwrap_or(i64::MAX);
        let lost = expected.saturating_sub(received);

        // A.3: the fraction over the interval since the last report.
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = i64::try_from(self.received.saturating_sub(self.received_prior)).unwrap_or(i64::MAX);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so this is <= 256; 256
            // (everything lost) does not fit 8 bits and is sent as 255.
            u8::try_from(lost_interval.saturating_mul(256) / expected_interval).unwrap_or(u8::MAX)
        };

        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (lsr, duration_to_q16(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(LOST_MIN, LOST_MAX) as i32,
            extended_highest_seq: self.extended_highest_seq(),
            // f64 to u32 saturates, so no value of J can misbehave here.
            jitter: self.jitter.round() as u32,
            last_sr,
            delay_since_last_sr,
        })
    }

    /// True once the source is past probation (or restarted).
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// The RTP clock rate given at creation.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The highest sequence number received, with the wrap count in the
    /// upper 16 bits (as the report block carries it).
    pub fn extended_highest_seq(&self) -> u32 {
        (self.cycles << 16) | u32::from(self.max_seq)
    }

    /// Packets expected since the source was believed: the extended highest
    /// sequence number minus the base, plus one. 0 while on probation.
    pub fn expected(&self) -> i64 {
        if !self.is_valid() {
            return 0;
        }
        let extended_max = i64::from(self.cycles) * 65536 + i64::from(self.max_seq);
        extended_max - self.base_seq + 1
    }

    /// Packets counted as received, duplicates and late ones included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Expected minus received: negative when duplicates outnumber losses
    /// (RFC 3550 §6.4.1). Not clamped; the report block clamps it to 24 bits.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected().saturating_sub(i64::try_from(self.received).unwrap_or(i64::MAX))
    }

    /// Duplicates seen (within the last 128 sequence numbers).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived behind a higher sequence number, first copies only.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        if self.clock_rate == 0 {
            return 0.0;
        }
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// Cumulative loss as a percentage of the packets expected, 0 when
    /// duplicates make the loss negative.
    pub fn loss_percent(&self) -> f64 {
        let expected = self.expected();
        if expected <= 0 {
            return 0.0;
        }
        self.cumulative_lost().max(0) as f64 * 100.0 / expected as f64
    }
}

// ---------------------------------------------------------------------------
// Sender statistics and RTT
// ---------------------------------------------------------------------------

/// What we send: the counts and timestamp mapping an SR carries, and the SRs
/// sent, for the round-trip time.
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate: u32,
    packets: u32,
    octets: u32,
    /// The last RTP timestamp sent and the local time it stands for.
    last_rtp: Option<(u32, Instant)>,
    /// Ring of (LSR value, when sent) for the SRs sent.
    sent_srs: [Option<(u32, Instant)>; SR_HISTORY],
    next_slot: usize,
    rtt: Option<Duration>,
}

impl SenderStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            packets: 0,
            octets: 0,
            last_rtp: None,
            sent_srs: [None; SR_HISTORY],
            next_slot: 0,
            rtt: None,
        }
    }

    /// Records an RTP packet sent with timestamp `rtp_ts`, standing for the
    /// local time `now` (its sampling or send time), carrying `payload_len`
    /// payload octets (§6.4.1: header and padding not included). The counts
    /// wrap at 2^32 as the SR fields do.
    pub fn on_rtp_sent(&mut self, now: Instant, rtp_ts: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_rtp = Some((rtp_ts, now));
    }

    /// Packets sent, modulo 2^32.
    pub fn packet_count(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent, modulo 2^32.
    pub fn octet_count(&self) -> u32 {
        self.octets
    }

    /// The RTP timestamp that corresponds to `now`, extrapolated from the
    /// last packet sent with the clock rate (the SR's RTP timestamp must
    /// match its NTP time, not the last packet's, §6.4.1). `None` before the
    /// first packet.
    pub fn rtp_timestamp_at(&self, now: Instant) -> Option<u32> {
        let (ts, at) = self.last_rtp?;
        Some(if now >= at {
            ts.wrapping_add(duration_to_rtp(now.duration_since(at), self.clock_rate))
        } else {
            ts.wrapping_sub(duration_to_rtp(at.duration_since(now), self.clock_rate))
        })
    }

    /// The sender info of an SR sent at local time `now`, wall-clock time
    /// `ntp_timestamp`, and remembers the SR so that a report block echoing
    /// it gives the RTT. `None` before the first packet: without a timestamp
    /// to extrapolate from we send an RR instead.
    pub fn sender_info(&mut self, now: Instant, ntp_timestamp: u64) -> Option<SenderInfo> {
        let rtp_timestamp = self.rtp_timestamp_at(now)?;
        let slot = self.next_slot % SR_HISTORY;
        if let Some(entry) = self.sent_srs.get_mut(slot) {
            *entry = Some((ntp_middle(ntp_timestamp), now));
        }
        self.next_slot = (slot + 1) % SR_HISTORY;
        Some(SenderInfo { ntp_timestamp, rtp_timestamp, packet_count: self.packets, octet_count: self.octets })
    }

    /// Takes a report block about our stream (the caller checks its SSRC is
    /// ours), received at `now`, and returns the RTT it gives: time since we
    /// sent the SR it echoes minus the time the peer held it (§6.4.1), on
    /// the monotonic clock, so wall-clock steps do not disturb it. `None`
    /// when it echoes no SR we remember.
    pub fn on_report_block(&mut self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.last_sr == 0 {
            return None;
        }
        // Newest first: should an LSR value ever repeat, the newest SR is the
        // one a report can echo.
        let sent_at = (1..=SR_HISTORY).find_map(|back| {
            let slot = (self.next_slot + SR_HISTORY - back) % SR_HISTORY;
            match self.sent_srs.get(slot) {
                Some(Some((lsr, at))) if *lsr == block.last_sr => Some(*at),
                _ => None,
            }
        })?;
        let rtt = now.checked_duration_since(sent_at)?.checked_sub(q16_to_duration(block.delay_since_last_sr))?;
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// The last RTT measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The last RTT measured, in milliseconds.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt.map(|d| d.as_secs_f64() * 1000.0)
    }
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed on the wire (clamped there).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// LSR: middle 32 bits of the NTP time of the last SR from the source.
    pub last_sr: u32,
    /// DLSR: time since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// The fraction lost as a percentage.
    pub fn fraction_lost_percent(&self) -> f64 {
        f64::from(self.fraction_lost) * 100.0 / 256.0
    }

    /// The jitter in milliseconds for a source clocked at `clock_rate` Hz.
    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        if clock_rate == 0 {
            return 0.0;
        }
        f64::from(self.jitter) * 1000.0 / f64::from(clock_rate)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let lost = (i64::from(self.cumulative_lost).clamp(LOST_MIN, LOST_MAX) as u32 & 0xFF_FFFF).to_be_bytes();
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[self.fraction_lost, lost[1], lost[2], lost[3]]);
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; REPORT_BLOCK_LEN] = b.get(..REPORT_BLOCK_LEN)?.try_into().ok()?;
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            ssrc: word(0),
            fraction_lost: b[4],
            // Sign-extend the 24-bit field.
            cumulative_lost: (u32::from_be_bytes([b[5], b[6], b[7], 0]) as i32) >> 8,
            extended_highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        })
    }
}

/// The sender info of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time of the report, 64-bit NTP format.
    pub ntp_timestamp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// A sender report (PT 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub info: SenderInfo,
    /// At most [`MAX_REPORT_BLOCKS`].
    pub reports: Vec<ReportBlock>,
}

/// A receiver report (PT 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: u32,
    /// At most [`MAX_REPORT_BLOCKS`].
    pub reports: Vec<ReportBlock>,
}

/// One SDES item: its type (1 CNAME, 2 NAME, ... 8 PRIV) and up to 255
/// bytes of text, kept as bytes because peers do not all send valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// A chunk with just the CNAME, what every compound we send carries.
    pub fn with_cname(ssrc: u32, cname: &str) -> Self {
        Self { ssrc, items: vec![SdesItem { kind: SDES_CNAME, value: cname.as_bytes().to_vec() }] }
    }

    /// The CNAME, when present and UTF-8.
    pub fn cname(&self) -> Option<&str> {
        let item = self.items.iter().find(|i| i.kind == SDES_CNAME)?;
        std::str::from_utf8(&item.value).ok()
    }

    fn has_cname(&self) -> bool {
        self.items.iter().any(|i| i.kind == SDES_CNAME)
    }
}

/// A goodbye (PT 203).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    /// At most [`MAX_REPORT_BLOCKS`].
    pub sources: Vec<u32>,
    /// Up to 255 bytes of reason text.
    pub reason: Option<Vec<u8>>,
}

/// One RTCP packet of a compound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    /// SDES (PT 202): at most 31 chunks.
    SourceDescription(Vec<SdesChunk>),
    Bye(Bye),
    /// Any other type (APP, feedback, XR), kept whole, header included, so
    /// it can be passed on or written back unchanged.
    Other(Vec<u8>),
}

impl RtcpPacket {
    /// The report a participant sends: an SR when it has sender info (it has
    /// sent RTP), else an RR.
    pub fn report(ssrc: u32, info: Option<SenderInfo>, reports: Vec<ReportBlock>) -> Self {
        match info {
            Some(info) => RtcpPacket::SenderReport(SenderReport { ssrc, info, reports }),
            None => RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }),
        }
    }

    /// The packet type this packet is written with.
    pub fn packet_type(&self) -> u8 {
        match self {
            RtcpPacket::SenderReport(_) => RTCP_SR,
            RtcpPacket::ReceiverReport(_) => RTCP_RR,
            RtcpPacket::SourceDescription(_) => RTCP_SDES,
            RtcpPacket::Bye(_) => RTCP_BYE,
            RtcpPacket::Other(raw) => raw.get(1).copied().unwrap_or(0),
        }
    }

    fn has_cname(&self) -> bool {
        matches!(self, RtcpPacket::SourceDescription(chunks) if chunks.iter().any(SdesChunk::has_cname))
    }

    /// Appends the packet to `out`. On error `out` is left as it was.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let start = out.len();
        let result = self.write_unchecked(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_unchecked(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let start = out.len();
        let count = match self {
            RtcpPacket::SenderReport(sr) => {
                let count = entry_count(RTCP_SR, sr.reports.len())?;
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.info.ntp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.info.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.info.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.info.octet_count.to_be_bytes());
                sr.reports.iter().for_each(|b| b.write(out));
                count
            }
            RtcpPacket::ReceiverReport(rr) => {
                let count = entry_count(RTCP_RR, rr.reports.len())?;
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                rr.reports.iter().for_each(|b| b.write(out));
                count
            }
            RtcpPacket::SourceDescription(chunks) => {
                let count = entry_count(RTCP_SDES, chunks.len())?;
                out.extend_from_slice(&[0; 4]);
                for chunk in chunks {
                    let chunk_start = out.len();
                    out.extend_from_slice(&chunk.ssrc.to_be_bytes());
                    for item in &chunk.items {
                        if item.kind == 0 {
                            return Err(RtcpError::SdesItemZero);
                        }
                        out.push(item.kind);
                        out.push(text_len(&item.value)?);
                        out.extend_from_slice(&item.value);
                    }
                    // The end marker, then nulls to the next 32-bit boundary
                    // (§6.5): 1 to 4 zero bytes in all.
                    let used = out.len() - chunk_start;
                    out.resize(out.len() + 4 - used % 4, 0);
                }
                count
            }
            RtcpPacket::Bye(bye) => {
                let count = entry_count(RTCP_BYE, bye.sources.len())?;
                out.extend_from_slice(&[0; 4]);
                bye.sources.iter().for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
                if let Some(reason) = &bye.reason {
                    out.push(text_len(reason)?);
                    out.extend_from_slice(reason);
                    let used = out.len() - start;
                    out.resize(out.len() + (4 - used % 4) % 4, 0);
                }
                count
            }
            RtcpPacket::Other(raw) => {
                let header = RtcpHeader::parse(raw).map_err(|_| RtcpError::BadRawPacket)?;
                if header.packet_len() != raw.len() {
                    return Err(RtcpError::BadRawPacket);
                }
                out.extend_from_slice(raw);
                return Ok(());
            }
        };
        let len = out.len() - start;
        if len > MAX_PACKET_LEN {
            return Err(RtcpError::PacketTooLong { len });
        }
        // len is a multiple of 4 and at most 4 * 65536.
        let words = ((len / 4) - 1) as u16;
        let header = [(RTP_VERSION << 6) | count, self.packet_type(), (words >> 8) as u8, words as u8];
        if let Some(slot) = out.get_mut(start..start + 4) {
            slot.copy_from_slice(&header);
        }
        Ok(())
    }

    /// Reads one packet from its header and bytes, as [`rtcp_compound`]
    /// yields them (length and padding count already checked).
    fn parse(h: &RtcpHeader, packet: &[u8]) -> Result<Self, RtcpError> {
        let pt = h.packet_type;
        let pad = if h.padding { usize::from(packet.last().copied().unwrap_or(0)) } else { 0 };
        let body = packet.get(4..packet.len().saturating_sub(pad)).unwrap_or(&[]);
        let have = body.len() + 4;
        let count = usize::from(h.count);
        let truncated = |need: usize| RtcpError::Truncated { packet_type: pt, need, have };
        let word = |at: usize| -> Result<u32, RtcpError> {
            let b = body.get(at..at + 4).ok_or(truncated(at + 8))?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let blocks = |from: usize| -> Result<Vec<ReportBlock>, RtcpError> {
            let need = from + count * REPORT_BLOCK_LEN;
            let bytes = body.get(from..need).ok_or(truncated(need + 4))?;
            // The remaining bytes, if any, are a profile-specific extension
            // (§6.4.1), which no audio profile defines: skipped.
            Ok(bytes.chunks_exact(REPORT_BLOCK_LEN).filter_map(ReportBlock::parse).collect())
        };
        match pt {
            RTCP_SR => {
                let info = SenderInfo {
                    ntp_timestamp: (u64::from(word(4)?) << 32) | u64::from(word(8)?),
                    rtp_timestamp: word(12)?,
                    packet_count: word(16)?,
                    octet_count: word(20)?,
                };
                Ok(RtcpPacket::SenderReport(SenderReport { ssrc: word(0)?, info, reports: blocks(24)? }))
            }
            RTCP_RR => Ok(RtcpPacket::ReceiverReport(ReceiverReport { ssrc: word(0)?, reports: blocks(4)? })),
            RTCP_SDES => {
                let mut chunks = Vec::with_capacity(count);
                let mut pos = 0;
                for _ in 0..count {
                    let ssrc = word(pos)?;
                    pos += 4;
                    let mut items = Vec::new();
                    loop {
                        let kind = *body.get(pos).ok_or(truncated(pos + 5))?;
                        if kind == 0 {
                            // The end marker and the nulls up to the next
                            // 32-bit boundary.
                            let end = (pos + 4) & !3;
                            if end > body.len() {
                                return Err(truncated(end + 4));
                            }
                            pos = end;
                            break;
                        }
                        let len = usize::from(*body.get(pos + 1).ok_or(truncated(pos + 6))?);
                        let value = body.get(pos + 2..pos + 2 + len).ok_or(truncated(pos + 6 + len))?;
                        items.push(SdesItem { kind, value: value.to_vec() });
                        pos += 2 + len;
                    }
                    chunks.push(SdesChunk { ssrc, items });
                }
                Ok(RtcpPacket::SourceDescription(chunks))
            }
            RTCP_BYE => {
                let list = count * 4;
                let sources = body.get(..list).ok_or(truncated(list + 4))?;
                let sources = sources.chunks_exact(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).collect();
                let reason = match body.get(list) {
                    None => None,
                    Some(&len) => {
                        let end = list + 1 + usize::from(len);
                        Some(body.get(list + 1..end).ok_or(truncated(end + 4))?.to_vec())
                    }
                };
                Ok(RtcpPacket::Bye(Bye { sources, reason }))
            }
            _ => Ok(RtcpPacket::Other(packet.to_vec())),
        }
    }
}

/// The 5-bit count of a packet with `n` entries.
fn entry_count(packet_type: u8, n: usize) -> Result<u8, RtcpError> {
    if n > MAX_REPORT_BLOCKS {
        return Err(RtcpError::TooManyEntries { packet_type, count: n });
    }
    Ok(n as u8)
}

/// The 8-bit length of an SDES item or BYE reason.
fn text_len(text: &[u8]) -> Result<u8, RtcpError> {
    u8::try_from(text.len()).map_err(|_| RtcpError::TextTooLong { len: text.len() })
}

/// Reads every packet of a plain (decrypted) RTCP datagram, with the A.2
/// framing checks (version, lengths adding up to the datagram, padding only
/// on the last packet) but not the §6.1 compound rules; use it for
/// reduced-size RTCP (RFC 5506). Bounded by the datagram; never panics.
pub fn parse_packets(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut consumed = 0;
    for item in rtcp_compound(buf) {
        let (header, packet) = item?;
        consumed += packet.len();
        if header.padding && consumed != buf.len() {
            return Err(RtcpError::PaddingNotLast);
        }
        packets.push(RtcpPacket::parse(&header, packet)?);
    }
    Ok(packets)
}

/// Reads a compound RTCP datagram: [`parse_packets`] plus the RFC 3550 §6.1
/// rules, first packet an SR or RR and an SDES CNAME somewhere.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let packets = parse_packets(buf)?;
    check_compound(&packets)?;
    Ok(packets)
}

/// Writes a compound RTCP datagram, refusing one that breaks the §6.1 rules
/// [`parse_compound`] checks.
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    check_compound(packets)?;
    let mut out = Vec::new();
    for packet in packets {
        packet.write(&mut out)?;
    }
    Ok(out)
}

fn check_compound(packets: &[RtcpPacket]) -> Result<(), RtcpError> {
    let first = packets.first().ok_or(RtcpError::Empty)?;
    if !matches!(first, RtcpPacket::SenderReport(_) | RtcpPacket::ReceiverReport(_)) {
        return Err(RtcpError::FirstNotReport(first.packet_type()));
    }
    if !packets.iter().any(RtcpPacket::has_cname) {
        return Err(RtcpError::NoCname);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Transmission interval (RFC 3550 §6.3, A.7)
// ---------------------------------------------------------------------------

/// Longest nominal interval accepted, so that adding 1.5 times it to an
/// `Instant` cannot overflow.
const MAX_NOMINAL: Duration = Duration::from_secs(86_400);

/// The interval to the next report: `nominal` times a factor drawn
/// uniformly from [0.5, 1.5] (§6.3.1), the draw being `random` in [0, 1]
/// from the caller. Out-of-range values are clamped, NaN counts as 0.5.
///
/// The rest of A.7 is left out on purpose: with two members and audio
/// bandwidth the bandwidth-derived interval is far below the 5 s minimum,
/// so the minimum is the interval; and without timer reconsideration the
/// e - 3/2 compensation does not apply.
pub fn report_interval(nominal: Duration, random: f64) -> Duration {
    let r = if random.is_nan() { 0.5 } else { random.clamp(0.0, 1.0) };
    let nominal = nominal.min(MAX_NOMINAL);
    Duration::try_from_secs_f64(nominal.as_secs_f64() * (0.5 + r)).unwrap_or(nominal)
}

/// When to send the next report.
#[derive(Debug, Clone)]
pub struct ReportTimer {
    nominal: Duration,
    next: Option<Instant>,
}

impl Default for ReportTimer {
    fn default() -> Self {
        Self::new(NOMINAL_INTERVAL)
    }
}

impl ReportTimer {
    /// A timer around `nominal` (capped at a day); [`NOMINAL_INTERVAL`] is
    /// the RFC's choice.
    pub fn new(nominal: Duration) -> Self {
        Self { nominal: nominal.min(MAX_NOMINAL), next: None }
    }

    pub fn nominal(&self) -> Duration {
        self.nominal
    }

    /// Schedules the first report of a session started at `now`, after half
    /// the usual interval (§6.2 allows it, so a call's first report, and
    /// with it the first RTT, comes sooner). Returns when it is due.
    pub fn start(&mut self, now: Instant, random: f64) -> Instant {
        self.schedule(now, report_interval(self.nominal / 2, random))
    }

    /// Schedules the report after one sent at `now`; returns when it is due.
    pub fn next_report_at(&mut self, now: Instant, random: f64) -> Instant {
        self.schedule(now, report_interval(self.nominal, random))
    }

    fn schedule(&mut self, now: Instant, interval: Duration) -> Instant {
        let at = now.checked_add(interval).unwrap_or(now);
        self.next = Some(at);
        at
    }

    /// When the next report is due, once scheduled.
    pub fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// True when a scheduled report is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestRng as Rng;

    const RATE: u32 = 8000;
    /// 20 ms of G.711.
    const FRAME: u32 = 160;
    const PTIME: Duration = Duration::from_millis(20);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds packets `seqs` (indices from `first_seq`, wrapping) sent every
    /// 20 ms and arriving with no delay.
    fn feed(rx: &mut ReceiverStats, t0: Instant, first_seq: u16, indices: impl IntoIterator<Item = u32>) {
        for i in indices {
            let seq = first_seq.wrapping_add(i as u16);
            rx.on_rtp(t0 + PTIME * i, seq, 1000u32.wrapping_add(i * FRAME));
        }
    }

    #[test]
    fn in_order_stream_has_no_loss_and_no_jitter() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        assert!(rx.report_block(t0, 1).is_none(), "nothing to report before any packet");
        // The timestamps `feed` uses: 1000 + 160 per packet.
        assert_eq!(rx.on_rtp(t0, 100, 1000), SeqOutcome::Probation);
        assert_eq!(rx.on_rtp(t0 + PTIME, 101, 1000 + FRAME), SeqOutcome::InOrder);
        feed(&mut rx, t0, 100, 2..500);
        let block = rx.report_block(t0 + ms(10_000), 0xAABB).unwrap();
        assert_eq!(rx.expected(), 500);
        assert_eq!(rx.received(), 500);
        assert_eq!(block.ssrc, 0xAABB);
        assert_eq!(block.cumulative_lost, 0);
        assert_eq!(block.fraction_lost, 0);
        assert_eq!(block.extended_highest_seq, 599);
        assert_eq!(block.jitter, 0);
        assert_eq!(rx.jitter(), 0.0);
        assert_eq!(rx.loss_percent(), 0.0);
        assert_eq!((block.last_sr, block.delay_since_last_sr), (0, 0));
    }

    #[test]
    fn one_percent_loss() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        // Every 100th packet lost (never the probation ones), 10,000 sent,
        // a report every 1,000.
        for report in 0..10u32 {
            feed(&mut rx, t0, 0, (report * 1000..(report + 1) * 1000).filter(|i| i % 100 != 50));
            let block = rx.report_block(t0 + PTIME * (report + 1) * 1000, 7).unwrap();
            // 10 lost of 1,000: 2.56/256, truncated as A.3 does.
            assert_eq!(block.fraction_lost, 2, "report {report}");
            assert_eq!(block.cumulative_lost, 10 * (report as i32 + 1));
        }
        assert_eq!(rx.expected(), 10_000);
        assert_eq!(rx.received(), 9_900);
        assert_eq!(rx.cumulative_lost(), 100);
        assert!((rx.loss_percent() - 1.0).abs() < 1e-12);

        // Over 256 packets the field is exact: 3 lost of 768 is 1/256.
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 0, (0..768).filter(|i| *i != 300 && *i != 400 && *i != 500));
        let block = rx.report_block(t0, 7).unwrap();
        assert_eq!(block.fraction_lost, 1);
        assert!((block.fraction_lost_percent() - 100.0 / 256.0).abs() < 1e-12);
        // The next interval starts afresh: no new loss, fraction 0.
        feed(&mut rx, t0, 0, 768..1000);
        let block = rx.report_block(t0, 7).unwrap();
        assert_eq!((block.fraction_lost, block.cumulative_lost), (0, 3));
    }

    #[test]
    fn jitter_converges_for_alternating_delay() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        // Odd packets arrive 10 ms (80 units) late: every |D| is 80, so A.8
        // gives J_k = 80 * (1 - (15/16)^k) after k differences.
        let delay = |i: u32| if i % 2 == 1 { ms(10) } else { Duration::ZERO };
        let mut expected = 0.0f64;
        for i in 0..300u32 {
            rx.on_rtp(t0 + PTIME * i + delay(i), i as u16, i * FRAME);
            // Transit is tracked from the packet that ends probation (i = 1).
            if i >= 2 {
                expected += (80.0 - expected) / 16.0;
                let closed_form = 80.0 * (1.0 - (15.0f64 / 16.0).powi(i as i32 - 1));
                assert!((rx.jitter() - expected).abs() < 1e-9, "packet {i}");
                assert!((rx.jitter() - closed_form).abs() < 1e-9, "packet {i}");
            }
        }
        let block = rx.report_block(t0 + ms(6000), 1).unwrap();
        assert_eq!(block.jitter, 80);
        assert!((rx.jitter_ms() - 10.0).abs() < 1e-6);
        assert!((block.jitter_ms(RATE) - 10.0).abs() < 1e-12);
        assert_eq!(block.cumulative_lost, 0);
    }

    #[test]
    fn jitter_survives_timestamp_wrap() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        for i in 0..100u32 {
            rx.on_rtp(t0 + PTIME * i, i as u16, (u32::MAX - 5000).wrapping_add(i * FRAME));
        }
        assert_eq!(rx.jitter(), 0.0);
    }

    #[test]
    fn sequence_wrap_is_a_cycle_not_loss() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 65_000, 0..2000);
        let block = rx.report_block(t0, 1).unwrap();
        assert_eq!(block.cumulative_lost, 0);
        assert_eq!(block.fraction_lost, 0);
        // 65,000 + 1,999 = 66,999 = one cycle + 1,463.
        assert_eq!(block.extended_highest_seq, 66_999);
        assert_eq!(block.extended_highest_seq >> 16, 1);
        assert_eq!(rx.expected(), 2000);

        // Probation itself straddling the wrap.
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 65_535, 0..10);
        assert_eq!((rx.expected(), rx.received(), rx.cumulative_lost()), (10, 10, 0));
        assert_eq!(rx.extended_highest_seq(), 8);
    }

    #[test]
    fn duplicates_and_reordering_are_not_loss() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 0, 0..10);
        // 11 before 10, 13 before 12.
        feed(&mut rx, t0, 0, [11, 10, 13, 12, 14]);
        assert_eq!(rx.late(), 2);
        assert_eq!(rx.cumulative_lost(), 0);
        // Duplicates: of the highest, of an older one, of a late one.
        assert_eq!(rx.on_rtp(t0, 14, 0), SeqOutcome::Duplicate);
        assert_eq!(rx.on_rtp(t0, 5, 0), SeqOutcome::Duplicate);
        assert_eq!(rx.on_rtp(t0, 10, 0), SeqOutcome::Duplicate);
        assert_eq!(rx.duplicates(), 3);
        feed(&mut rx, t0, 0, 15..100);
        let block = rx.report_block(t0 + ms(2000), 1).unwrap();
        // RFC 3550 counts duplicates as received: the loss goes negative,
        // the fraction stays 0 and no percentage shows.
        assert_eq!(block.cumulative_lost, -3);
        assert_eq!(block.fraction_lost, 0);
        assert_eq!(rx.loss_percent(), 0.0);
        assert_eq!(block.extended_highest_seq, 99);
        // A gap later filled late is not loss either.
        feed(&mut rx, t0, 0, [100, 102, 103, 101]);
        assert_eq!(rx.cumulative_lost(), -3);
        // The wire field keeps the sign.
        let mut out = Vec::new();
        RtcpPacket::ReceiverReport(ReceiverReport { ssrc: 9, reports: vec![block] }).write(&mut out).unwrap();
        assert_eq!(&out[12..16], &[0, 0xFF, 0xFF, 0xFD]);
        match &parse_packets(&out).unwrap()[0] {
            RtcpPacket::ReceiverReport(rr) => assert_eq!(rr.reports[0].cumulative_lost, -3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn big_jump_restarts_the_source() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 0, 0..100);
        // A lone stray packet far away is not believed and not counted.
        assert_eq!(rx.on_rtp(t0, 30_000, 0), SeqOutcome::Jump);
        assert_eq!(rx.on_rtp(t0, 100, 0), SeqOutcome::InOrder);
        assert_eq!((rx.expected(), rx.received()), (101, 101));
        // Two in sequence after a jump: the source restarted.
        assert_eq!(rx.on_rtp(t0, 40_000, 0), SeqOutcome::Jump);
        assert_eq!(rx.on_rtp(t0, 40_001, FRAME), SeqOutcome::Restarted);
        assert!(SeqOutcome::Restarted.is_counted() && !SeqOutcome::Jump.is_counted());
        for seq in 40_002..40_050u16 {
            assert_eq!(rx.on_rtp(t0, seq, 0), SeqOutcome::InOrder);
        }
        let block = rx.report_block(t0, 1).unwrap();
        assert_eq!(block.extended_highest_seq, 40_049);
        assert_eq!((rx.expected(), rx.received()), (50, 50));
        assert_eq!((block.cumulative_lost, block.fraction_lost), (0, 0));
        // A jump backwards beyond the misorder window is a jump too.
        assert_eq!(rx.on_rtp(t0, 39_000, 0), SeqOutcome::Jump);
        assert_eq!(rx.received(), 50);
    }

    #[test]
    fn probation_resets_on_a_break() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        assert_eq!(rx.on_rtp(t0, 10, 0), SeqOutcome::Probation);
        assert_eq!(rx.on_rtp(t0, 50, 0), SeqOutcome::Probation);
        assert!(!rx.is_valid());
        assert_eq!(rx.on_rtp(t0, 51, 0), SeqOutcome::InOrder);
        assert_eq!((rx.expected(), rx.received()), (2, 2));
    }

    #[test]
    fn huge_loss_gap_and_saturation() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 0, 0..2);
        // Forward jumps just under MAX_DROPOUT are gaps.
        let mut seq = 1u16;
        for _ in 0..3000 {
            seq = seq.wrapping_add(2999);
            assert_eq!(rx.on_rtp(t0, seq, 0), SeqOutcome::InOrder);
        }
        let block = rx.report_block(t0, 1).unwrap();
        // 3000 * 2998 lost: beyond 24 bits, clamped.
        assert_eq!(block.cumulative_lost, 0x7F_FFFF);
        assert_eq!(rx.cumulative_lost(), 3000 * 2998);
        assert_eq!(block.fraction_lost, 255);
    }

    #[test]
    fn report_echoes_the_last_sr() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(RATE);
        feed(&mut rx, t0, 0, 0..5);
        rx.on_sender_report(t0, 0x1234_5678_9ABC_DEF0);
        let block = rx.report_block(t0 + ms(1500), 1).unwrap();
        assert_eq!(block.last_sr, 0x5678_9ABC);
        assert_eq!(block.delay_since_last_sr, 98_304); // 1.5 * 65536
    }

    #[test]
    fn sender_extrapolates_the_rtp_timestamp() {
        let t0 = crate::test_support::origin();
        let mut tx = SenderStats::new(RATE);
        assert_eq!(tx.rtp_timestamp_at(t0), None);
        assert_eq!(tx.sender_info(t0, 1), None);
        for i in 0..50u32 {
            tx.on_rtp_sent(t0 + PTIME * i, (u32::MAX - 1000).wrapping_add(i * FRAME), 160);
        }
        assert_eq!((tx.packet_count(), tx.octet_count()), (50, 8000));
        let last_at = t0 + PTIME * 49;
        let last_ts = (u32::MAX - 1000).wrapping_add(49 * FRAME);
        // 1 s after the last packet: 8000 units on, across the wrap.
        assert_eq!(tx.rtp_timestamp_at(last_at + ms(1000)), Some(last_ts.wrapping_add(8000)));
        assert_eq!(tx.rtp_timestamp_at(last_at - ms(5)), Some(last_ts.wrapping_sub(40)));
        let info = tx.sender_info(last_at + ms(7), 0xDEAD_BEEF_0000_0001).unwrap();
        assert_eq!(
            info,
            SenderInfo {
                ntp_timestamp: 0xDEAD_BEEF_0000_0001,
                rtp_timestamp: last_ts.wrapping_add(56),
                packet_count: 50,
                octet_count: 8000,
            }
        );
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        let t0 = crate::test_support::origin();
        let ntp0 = ntp_from_unix(Duration::from_secs(1_700_000_000));
        let mut tx = SenderStats::new(RATE);
        tx.on_rtp_sent(t0, 0, 160);
        // We send an SR at t0; it takes 60 ms to the peer, which holds it 3 s
        // and sends an RR that takes 63 ms back: RTT 123 ms.
        let info = tx.sender_info(t0, ntp0).unwrap();
        let mut peer = ReceiverStats::new(RATE);
        feed(&mut peer, t0, 0, 0..3);
        peer.on_sender_report(t0 + ms(60), info.ntp_timestamp);
        let block = peer.report_block(t0 + ms(3060), 0x1111).unwrap();
        assert_eq!(block.last_sr, ntp_middle(ntp0));
        assert_eq!(block.delay_since_last_sr, 3 * 65536);
        let rtt = tx.on_report_block(t0 + ms(3123), &block).unwrap();
        assert_eq!(rtt, ms(123));
        assert!((tx.rtt_ms().unwrap() - 123.0).abs() < 1e-9);

        // The same from the wall clock, to 1/65536 s.
        let arrival = ntp_from_unix(Duration::from_secs(1_700_000_000) + ms(3123));
        let rtt = rtt_from_lsr(arrival, block.last_sr, block.delay_since_last_sr).unwrap();
        assert!(rtt.abs_diff(ms(123)) < Duration::from_micros(31), "{rtt:?}");

        // An older SR is still recognised after newer ones were sent.
        let ntp1 = ntp0 + (10u64 << 32);
        tx.sender_info(t0 + ms(10_000), ntp1).unwrap();
        tx.sender_info(t0 + ms(15_000), ntp1 + (5u64 << 32)).unwrap();
        let echo = ReportBlock { last_sr: ntp_middle(ntp1), delay_since_last_sr: 65536 / 2, ..block };
        assert_eq!(tx.on_report_block(t0 + ms(10_600), &echo), Some(ms(100)));
        // No SR echoed, an unknown one, a DLSR longer than the wait.
        assert_eq!(tx.on_report_block(t0, &ReportBlock { last_sr: 0, ..block }), None);
        assert_eq!(tx.on_report_block(t0, &ReportBlock { last_sr: 42, ..block }), None);
        assert_eq!(tx.on_report_block(t0 + ms(10_100), &echo), None);
        assert_eq!(tx.rtt(), Some(ms(100)));
        assert_eq!(rtt_from_lsr(arrival, 0, 0), None);
        assert_eq!(rtt_from_lsr(ntp0, ntp_middle(arrival), 0), None);
    }

    #[test]
    fn ntp_conversion() {
        // 1970-01-01 is NTP 2,208,988,800; half a second is 2^31.
        assert_eq!(ntp_from_unix(ms(500)), (2_208_988_800u64 << 32) | 0x8000_0000);
        assert_eq!(ntp_middle(0x0001_0002_0003_0004), 0x0002_0003);
    }

    fn sample_block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x0A0B_0C0D,
            fraction_lost: 2,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 80,
            last_sr: 0x2B3C_8000,
            delay_since_last_sr: 0x0003_0000,
        }
    }

    fn sample_sr() -> RtcpPacket {
        RtcpPacket::SenderReport(SenderReport {
            ssrc: 0x0102_0304,
            info: SenderInfo {
                ntp_timestamp: 0xE8A1_2B3C_8000_0000,
                rtp_timestamp: 0xA0B0,
                packet_count: 100,
                octet_count: 16_000,
            },
            reports: vec![sample_block()],
        })
    }

    fn sample_compound() -> Vec<RtcpPacket> {
        vec![
            sample_sr(),
            RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(0x0102_0304, "ab@c")]),
            RtcpPacket::Bye(Bye { sources: vec![0x0102_0304], reason: Some(b"bye".to_vec()) }),
        ]
    }

    #[test]
    fn sr_sdes_bye_byte_exact() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // SR: V=2, RC=1, PT=200, length 12.
            0x81, 0xC8, 0x00, 0x0C,
            0x01, 0x02, 0x03, 0x04, // SSRC
            0xE8, 0xA1, 0x2B, 0x3C, 0x80, 0x00, 0x00, 0x00, // NTP
            0x00, 0x00, 0xA0, 0xB0, // RTP timestamp
            0x00, 0x00, 0x00, 0x64, // packets
            0x00, 0x00, 0x3E, 0x80, // octets
            0x0A, 0x0B, 0x0C, 0x0D, // report block: SSRC
            0x02, 0xFF, 0xFF, 0xFD, // fraction 2, lost -3
            0x00, 0x01, 0x00, 0x05, // extended highest seq
            0x00, 0x00, 0x00, 0x50, // jitter 80
            0x2B, 0x3C, 0x80, 0x00, // LSR
            0x00, 0x03, 0x00, 0x00, // DLSR
            // SDES: SC=1, length 3; CNAME "ab@c", end marker + one pad.
            0x81, 0xCA, 0x00, 0x03,
            0x01, 0x02, 0x03, 0x04,
            0x01, 0x04, b'a', b'b', b'@', b'c', 0x00, 0x00,
            // BYE: SC=1, length 2, reason "bye".
            0x81, 0xCB, 0x00, 0x02,
            0x01, 0x02, 0x03, 0x04,
            0x03, b'b', b'y', b'e',
        ];
        let packets = sample_compound();
        assert_eq!(build_compound(&packets).unwrap(), expected);
        assert_eq!(parse_compound(expected).unwrap(), packets);
    }

    #[test]
    fn round_trips() {
        let block = |n: u32| ReportBlock {
            ssrc: n,
            fraction_lost: n as u8,
            cumulative_lost: (n as i32 - 15) * 100_000,
            extended_highest_seq: n << 17,
            jitter: n * 3,
            last_sr: n ^ 0xFFFF,
            delay_since_last_sr: n * 65536,
        };
        let full: Vec<ReportBlock> = (0..31).map(block).collect();
        let compounds = vec![
            vec![
                RtcpPacket::report(5, None, vec![]),
                RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(5, "alice@example.com")]),
            ],
            vec![
                RtcpPacket::report(5, None, full.clone()),
                RtcpPacket::SourceDescription(vec![
                    SdesChunk { ssrc: 5, items: vec![] },
                    SdesChunk {
                        ssrc: 6,
                        items: vec![
                            SdesItem { kind: 2, value: "日本語".as_bytes().to_vec() },
                            SdesItem { kind: SDES_CNAME, value: vec![b'x'; 255] },
                            SdesItem { kind: 7, value: vec![] },
                        ],
                    },
                ]),
                RtcpPacket::Bye(Bye { sources: vec![], reason: None }),
            ],
            vec![
                RtcpPacket::report(
                    5,
                    Some(SenderInfo { ntp_timestamp: u64::MAX, rtp_timestamp: 1, packet_count: 2, octet_count: 3 }),
                    full,
                ),
                RtcpPacket::Other(vec![0x80, 204, 0x00, 0x02, 0, 0, 0, 5, b'n', b'a', b'm', b'e']),
                RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(5, "c")]),
                RtcpPacket::Bye(Bye { sources: (0..31).collect(), reason: Some(vec![]) }),
                RtcpPacket::Bye(Bye { sources: vec![5], reason: Some(vec![b'r'; 255]) }),
            ],
        ];
        for packets in compounds {
            let bytes = build_compound(&packets).unwrap();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(parse_compound(&bytes).unwrap(), packets);
        }
        // Clamped: the wire cannot carry more than 24 bits.
        let mut out = Vec::new();
        let wide = ReportBlock { cumulative_lost: i32::MIN, ..sample_block() };
        RtcpPacket::report(1, None, vec![wide]).write(&mut out).unwrap();
        match &parse_packets(&out).unwrap()[0] {
            RtcpPacket::ReceiverReport(rr) => assert_eq!(rr.reports[0].cumulative_lost, -0x80_0000),
            other => panic!("{other:?}"),
        }
        match &parse_compound(&build_compound(&sample_compound()).unwrap()).unwrap()[1] {
            RtcpPacket::SourceDescription(c) => assert_eq!(c[0].cname(), Some("ab@c")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builder_refuses_what_the_wire_cannot_carry() {
        let cname = RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(1, "a@b")]);
        let rr = RtcpPacket::report(1, None, vec![]);
        assert_eq!(build_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(build_compound(&[cname.clone(), rr.clone()]), Err(RtcpError::FirstNotReport(RTCP_SDES)));
        assert_eq!(build_compound(std::slice::from_ref(&rr)), Err(RtcpError::NoCname));
        let too_many = RtcpPacket::report(1, None, vec![sample_block(); 32]);
        assert_eq!(
            build_compound(&[too_many, cname.clone()]),
            Err(RtcpError::TooManyEntries { packet_type: RTCP_RR, count: 32 })
        );
        let long = RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(1, &"x".repeat(256))]);
        assert_eq!(build_compound(&[rr.clone(), long]), Err(RtcpError::TextTooLong { len: 256 }));
        let zero = RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: 1,
            items: vec![SdesItem { kind: 0, value: vec![] }],
        }]);
        assert_eq!(build_compound(&[rr.clone(), cname.clone(), zero]), Err(RtcpError::SdesItemZero));
        assert_eq!(
            build_compound(&[rr.clone(), cname.clone(), RtcpPacket::Other(vec![0x80, 204, 0, 5])]),
            Err(RtcpError::BadRawPacket)
        );
        // 31 chunks of 40 items of 255 bytes: over 256 KiB.
        let big_chunk = SdesChunk { ssrc: 1, items: vec![SdesItem { kind: 8, value: vec![1; 255] }; 40] };
        let huge = RtcpPacket::SourceDescription(vec![big_chunk; 31]);
        let mut out = vec![9];
        assert!(matches!(huge.write(&mut out), Err(RtcpError::PacketTooLong { .. })));
        assert_eq!(out, [9], "a failed write leaves the buffer as it was");
    }

    #[test]
    fn parser_checks_compound_rules() {
        let bytes = build_compound(&sample_compound()).unwrap();
        let sr_len = 52;
        // SDES first.
        let mut swapped = bytes[sr_len..sr_len + 16].to_vec();
        swapped.extend_from_slice(&bytes[..sr_len]);
        assert_eq!(parse_compound(&swapped), Err(RtcpError::FirstNotReport(RTCP_SDES)));
        assert_eq!(parse_packets(&swapped).unwrap().len(), 2, "reduced-size parsing takes it");
        // No CNAME.
        assert_eq!(parse_compound(&bytes[..sr_len]), Err(RtcpError::NoCname));
        // Padding on a packet that is not the last.
        let mut padded = bytes.clone();
        padded[0] |= 0x20;
        padded[sr_len - 1] = 4; // the DLSR's last byte doubles as a count
        assert_eq!(parse_compound(&padded), Err(RtcpError::PaddingNotLast));
        // Padding on the last packet is fine, and excluded from the reason.
        let mut tail = bytes.clone();
        let bye_at = sr_len + 16;
        tail[bye_at] |= 0x20;
        tail[bye_at + 3] += 1;
        tail.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(parse_compound(&tail).unwrap(), sample_compound());
        // Report count larger than the length.
        let mut short = bytes.clone();
        short[0] = 0x82;
        assert_eq!(parse_compound(&short), Err(RtcpError::Truncated { packet_type: RTCP_SR, need: 76, have: 52 }));
        // Version 1.
        let mut v1 = bytes;
        v1[0] = 0x41;
        assert_eq!(parse_compound(&v1), Err(RtcpError::Media(MediaError::BadVersion(1))));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_whole_prefix() {
        let packets = sample_compound();
        let bytes = build_compound(&packets).unwrap();
        let boundaries = [52usize, 68];
        for len in 0..bytes.len() {
            let result = parse_compound(&bytes[..len]);
            match boundaries.iter().position(|&b| b == len) {
                // Whole packets: the SR alone lacks the CNAME; SR + SDES is
                // a valid compound in its own right.
                Some(0) => assert_eq!(result, Err(RtcpError::NoCname)),
                Some(_) => assert_eq!(result.unwrap().as_slice(), &packets[..2]),
                None => assert!(result.is_err(), "length {len} parsed"),
            }
        }
        // Each packet cut short with its length field fixed up, so the
        // inner parsers (not the framing) see the short bodies.
        for packet in &packets {
            let mut whole = Vec::new();
            packet.write(&mut whole).unwrap();
            for words in 0..(whole.len() / 4 - 1) {
                let mut b = whole[..(words + 1) * 4].to_vec();
                b[2..4].copy_from_slice(&(words as u16).to_be_bytes());
                match parse_packets(&b) {
                    Err(RtcpError::Truncated { packet_type, have, .. }) => {
                        assert_eq!((packet_type, have), (packet.packet_type(), b.len()));
                    }
                    // A BYE cut to its source list is a BYE without a reason.
                    Ok(p) if words == 1 && packet.packet_type() == RTCP_BYE => {
                        assert_eq!(p, [RtcpPacket::Bye(Bye { sources: vec![0x0102_0304], reason: None })]);
                    }
                    other => panic!("{words} words of type {}: {other:?}", packet.packet_type()),
                }
            }
        }
    }

    /// Whatever parses must build and parse back to the same packets.
    fn check_stable(bytes: &[u8]) {
        if let Ok(packets) = parse_compound(bytes) {
            let rebuilt = build_compound(&packets).expect("a parsed compound builds");
            assert_eq!(parse_compound(&rebuilt).expect("rebuilt compound parses"), packets);
        }
        if let Ok(packets) = parse_packets(bytes) {
            let mut out = Vec::new();
            for p in &packets {
                p.write(&mut out).expect("a parsed packet writes");
            }
            assert_eq!(parse_packets(&out).expect("rewritten packets parse"), packets);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        // Random bytes, with the first byte biased to version 2 and the
        // second to SR..BYE so some get past the header.
        for _ in 0..4000 {
            let len = (rng.next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = b.first_mut() {
                if rng.next() & 1 == 0 {
                    *first = 0x80 | (*first & 0x3F);
                }
            }
            if let Some(second) = b.get_mut(1) {
                if rng.next() & 1 == 0 {
                    *second = 200 + (*second % 4);
                }
            }
            if parse_packets(&b).is_ok() {
                parsed += 1;
            }
            check_stable(&b);
        }
        // Mutations of a valid compound reach the inner parsers.
        let valid = build_compound(&sample_compound()).unwrap();
        for _ in 0..4000 {
            let mut b = valid.clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            if rng.next() & 3 == 0 {
                b.truncate((rng.next() as usize) % (b.len() + 1));
            }
            if parse_compound(&b).is_ok() {
                parsed += 1;
            }
            check_stable(&b);
        }
        assert!(parsed > 100, "only {parsed} inputs got through; the fuzz is not reaching the parsers");
    }

    #[test]
    fn interval_bounds() {
        assert_eq!(report_interval(NOMINAL_INTERVAL, 0.0), ms(2500));
        assert_eq!(report_interval(NOMINAL_INTERVAL, 1.0), ms(7500));
        assert_eq!(report_interval(NOMINAL_INTERVAL, 0.5), ms(5000));
        assert_eq!(report_interval(NOMINAL_INTERVAL, -3.0), ms(2500));
        assert_eq!(report_interval(NOMINAL_INTERVAL, 7.0), ms(7500));
        assert_eq!(report_interval(NOMINAL_INTERVAL, f64::NAN), ms(5000));
        assert_eq!(report_interval(Duration::MAX, 1.0), MAX_NOMINAL * 3 / 2);
        for i in 0..=1000 {
            let d = report_interval(NOMINAL_INTERVAL, f64::from(i) / 1000.0);
            assert!((ms(2500)..=ms(7500)).contains(&d), "{d:?}");
        }

        let t0 = crate::test_support::origin();
        let mut timer = ReportTimer::default();
        assert!(!timer.is_due(t0));
        let first = timer.start(t0, 1.0);
        assert_eq!(first, t0 + ms(3750), "first report after half the interval");
        assert!(!timer.is_due(t0 + ms(3749)));
        assert!(timer.is_due(first));
        let next = timer.next_report_at(first, 0.0);
        assert_eq!(next, first + ms(2500));
        assert_eq!(timer.deadline(), Some(next));
        assert_eq!(timer.next_report_at(next, 0.999_999), next + report_interval(NOMINAL_INTERVAL, 0.999_999));
    }

    #[test]
    fn zero_clock_rate_is_harmless() {
        let t0 = crate::test_support::origin();
        let mut rx = ReceiverStats::new(0);
        feed(&mut rx, t0, 0, 0..10);
        assert_eq!((rx.jitter(), rx.jitter_ms()), (0.0, 0.0));
        assert_eq!(rx.report_block(t0, 1).unwrap().jitter_ms(0), 0.0);
        let mut tx = SenderStats::new(0);
        tx.on_rtp_sent(t0, 5, 1);
        assert_eq!(tx.rtp_timestamp_at(t0 + ms(100)), Some(5));
    }
}
