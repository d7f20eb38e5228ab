//! DTMF in the two forms a PBX meets: RFC 4733 telephone-events inside the RTP
//! stream, and SIP INFO bodies (`application/dtmf-relay`, the de-facto Cisco
//! format, and `application/dtmf`). The IVR, voicemail and the B2BUA's
//! in-band/out-of-band interworking all go through these helpers.
//!
//! RFC 4733 sends one event as a train: a first packet with the marker bit,
//! updates carrying the growing duration, then the end packet three times
//! (§2.5.1.4), all with the timestamp of the event's start. The detector
//! therefore keys an event on (SSRC, timestamp) and reports it exactly once;
//! the generator produces the whole train at once with the send offset of
//! each packet, so the caller paces them from its own timer (sans-IO: this
//! module owns no clock).

use std::collections::VecDeque;

use crate::error::MediaError;
use crate::rtp::RtpPacket;
use crate::transcode::write_rtp;

/// The update interval of generated event trains (RFC 4733 §2.5.1.2 suggests
/// 50 ms).
pub const UPDATE_INTERVAL_MS: u32 = 50;
/// Volume written in generated events, in -dBm0 (RFC 4733 §2.3.4): -10 dBm0
/// is the usual DTMF level.
pub const DEFAULT_VOLUME: u8 = 10;
/// The duration assumed when an INFO body carries none: 250 ms, a common
/// default of desk phones, well above any receiver's minimum.
pub const DEFAULT_INFO_DURATION_MS: u32 = 250;
/// INFO bodies larger than this are not DTMF; refusing them bounds the work.
const MAX_INFO_BODY: usize = 1024;

/// One RFC 4733 §2.3 event block: event code, end bit, volume (-dBm0, 0..=63)
/// and duration in RTP timestamp units since the event's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

/// Reads the first 4-byte event block of a telephone-event payload. The R bit
/// is ignored (§2.3.3: receivers must ignore it); event codes other than the
/// DTMF 0..=15 are returned as they are, for the caller to ignore.
pub fn parse_event(payload: &[u8]) -> Result<DtmfEvent, MediaError> {
    let b: &[u8; 4] = payload
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(MediaError::TooShort { need: 4, have: payload.len() })?;
    Ok(DtmfEvent {
        event: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3f,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// Writes an event block. The volume is masked to its 6 bits.
pub fn event_payload(ev: &DtmfEvent) -> [u8; 4] {
    let d = ev.duration.to_be_bytes();
    [ev.event, (u8::from(ev.end) << 7) | (ev.volume & 0x3f), d[0], d[1]]
}

/// The character of a DTMF event code (RFC 4733 §3.2): 0-9, * (10), # (11),
/// A-D (12-15).
pub fn event_to_char(ev: u8) -> Option<char> {
    match ev {
        0..=9 => Some(char::from(b'0' + ev)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + ev - 12)),
        _ => None,
    }
}

/// The event code of a DTMF character; `a`-`d` are accepted as `A`-`D`.
pub fn char_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// How many recently reported events the detector remembers, so that a late
/// retransmission of an older event is not reported twice.
const DETECTOR_HISTORY: usize = 8;
/// Completed digits held for [`DtmfDetector::poll`] at most.
const MAX_QUEUED: usize = 4;

/// Sees the RFC 4733 packets of one stream and reports each digit once.
///
/// A digit is reported at its first end packet; the other end packets and
/// any retransmission with the same (SSRC, timestamp) are ignored. Should all
/// end packets of a digit be lost, the digit is still reported, with the last
/// duration seen, when the next event begins; if that next packet is itself
/// an end packet its digit is queued and returned by [`DtmfDetector::poll`]
/// (or the next `push`).
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    pt: u8,
    clock_rate: u32,
    /// The event in progress, not yet reported: (ssrc, timestamp, event, duration).
    open: Option<(u32, u32, u8, u16)>,
    /// (ssrc, timestamp) of recently reported or abandoned events.
    done: [Option<(u32, u32)>; DETECTOR_HISTORY],
    done_next: usize,
    queued: VecDeque<(char, u32)>,
}

impl DtmfDetector {
    /// A detector for telephone-event payload type `pt` at the usual 8000 Hz
    /// clock.
    pub fn new(pt: u8) -> Self {
        Self::with_clock_rate(pt, 8000)
    }

    /// A detector for a telephone-event stream with another clock rate (an
    /// Opus call negotiates telephone-event/48000); durations are converted to
    /// milliseconds with it.
    pub fn with_clock_rate(pt: u8, clock_rate: u32) -> Self {
        Self {
            pt,
            clock_rate: clock_rate.max(1),
            open: None,
            done: [None; DETECTOR_HISTORY],
            done_next: 0,
            queued: VecDeque::new(),
        }
    }

    /// The telephone-event payload type this detector looks at.
    pub fn payload_type(&self) -> u8 {
        self.pt
    }

    fn millis(&self, duration: u16) -> u32 {
        // u16 * 1000 fits in u32.
        u32::from(duration) * 1000 / self.clock_rate
    }

    fn is_done(&self, key: (u32, u32)) -> bool {
        self.done.contains(&Some(key))
    }

    fn mark_done(&mut self, key: (u32, u32)) {
        self.done[self.done_next] = Some(key);
        self.done_next = (self.done_next + 1) % DETECTOR_HISTORY;
    }

    /// Feeds one RTP packet (any payload type; only `pt` is looked at, and
    /// malformed packets are ignored). Returns a digit and its duration in
    /// milliseconds when one completes.
    pub fn push(&mut self, rtp: &[u8]) -> Option<(char, u32)> {
        self.push_inner(rtp);
        self.queued.pop_front()
    }

    /// Returns a digit that completed in an earlier `push` but could not be
    /// returned then (two digits completing in one packet).
    pub fn poll(&mut self) -> Option<(char, u32)> {
        self.queued.pop_front()
    }

    /// Queues a completed digit. A packet completes at most two (an
    /// abandoned one and itself), and one is taken per push, so the queue
    /// stays tiny; the cap only guards against a caller that never polls.
    fn report(&mut self, digit: Option<(char, u32)>) {
        if let Some(d) = digit {
            if self.queued.len() >= MAX_QUEUED {
                self.queued.pop_front();
            }
            self.queued.push_back(d);
        }
    }

    fn push_inner(&mut self, rtp: &[u8]) {
        let Ok(pkt) = RtpPacket::parse(rtp) else { return };
        let h = pkt.header();
        if h.payload_type != self.pt {
            return;
        }
        let Ok(ev) = parse_event(pkt.payload()) else { return };
        let key = (h.ssrc, h.timestamp);
        if self.is_done(key) {
            return;
        }
        if let Some((ssrc, ts, event, duration)) = self.open {
            if (ssrc, ts) != key {
                // A new event began before the previous one ended: its end
                // packets were lost. Report it now rather than never.
                self.open = None;
                self.mark_done((ssrc, ts));
                let abandoned = event_to_char(event).map(|c| (c, self.millis(duration)));
                self.report(abandoned);
            }
        }
        if ev.end {
            self.open = None;
            self.mark_done(key);
            let digit = event_to_char(ev.event).map(|c| (c, self.millis(ev.duration)));
            self.report(digit);
        } else {
            // Keep the largest duration seen: updates may arrive reordered.
            let duration = match self.open {
                Some((_, _, _, d)) => d.max(ev.duration),
                None => ev.duration,
            };
            self.open = Some((key.0, key.1, ev.event, duration));
        }
    }
}

/// One packet of a generated event train and when to send it, counted from
/// the first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfPacket {
    pub send_after_ms: u32,
    pub rtp: Vec<u8>,
}

/// Generates RFC 4733 packet trains for one outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfGenerator {
    pub pt: u8,
    pub clock_rate: u32,
    pub ssrc: u32,
    pub volume: u8,
}

impl DtmfGenerator {
    pub fn new(pt: u8, clock_rate: u32, ssrc: u32) -> Self {
        Self { pt, clock_rate, ssrc, volume: DEFAULT_VOLUME }
    }

    /// The packet train for one digit: the first packet carries the marker,
    /// an update follows every 50 ms with the duration so far, and the end
    /// packet is sent three times, 50 ms apart. Every packet has the event's
    /// start `timestamp` and its own sequence number, from `first_seq` up;
    /// the caller's next packet uses `first_seq + len` and, for audio, a
    /// timestamp at least `timestamp + duration`.
    ///
    /// Errors on an unknown digit, a zero duration, or one too long for the
    /// 16-bit duration field (over 8.19 s at 8 kHz, 1.36 s at 48 kHz; longer
    /// tones would need RFC 4733 §2.5.1.3 segments, which DTMF never needs).
    pub fn packets(
        &self,
        digit: char,
        duration_ms: u32,
        first_seq: u16,
        timestamp: u32,
    ) -> Result<Vec<DtmfPacket>, MediaError> {
        let event = char_to_event(digit).ok_or(MediaError::BadDtmf("not a DTMF digit"))?;
        if duration_ms == 0 {
            return Err(MediaError::BadDtmf("zero duration"));
        }
        if self.clock_rate == 0 {
            return Err(MediaError::BadDtmf("zero clock rate"));
        }
        let units = |ms: u32| u64::from(ms) * u64::from(self.clock_rate) / 1000;
        let total = u16::try_from(units(duration_ms)).map_err(|_| MediaError::BadDtmf("duration too long"))?;
        if total == 0 {
            return Err(MediaError::BadDtmf("duration shorter than one clock tick"));
        }
        let mut out = Vec::new();
        let mut seq = first_seq;
        let mut push = |at: u32, end: bool, duration: u16, marker: bool| {
            let ev = DtmfEvent { event, end, volume: self.volume, duration };
            let rtp = write_rtp(marker, self.pt, seq, timestamp, self.ssrc, &event_payload(&ev));
            out.push(DtmfPacket { send_after_ms: at, rtp });
            seq = seq.wrapping_add(1);
        };
        // Updates at 50, 100, ... ms while the tone is still on; the first
        // packet (with the marker) is sent at once with one interval of
        // duration, as phones do.
        let mut at = 0;
        let mut elapsed = UPDATE_INTERVAL_MS;
        while elapsed < duration_ms {
            // elapsed < duration_ms, so this fits the u16 total.
            push(at, false, units(elapsed) as u16, at == 0);
            at += UPDATE_INTERVAL_MS;
            elapsed += UPDATE_INTERVAL_MS;
        }
        for i in 0..3 {
            push(at, true, total, at == 0 && i == 0);
            at += UPDATE_INTERVAL_MS;
        }
        Ok(out)
    }
}

/// The RFC 4733 packet train for one digit as bare datagrams; see
/// [`DtmfGenerator::packets`] for the layout. Send them 50 ms apart.
pub fn dtmf_packets(
    digit: char,
    duration_ms: u32,
    pt: u8,
    clock_rate: u32,
    ssrc: u32,
    first_seq: u16,
    timestamp: u32,
) -> Result<Vec<Vec<u8>>, MediaError> {
    let gen = DtmfGenerator::new(pt, clock_rate, ssrc);
    Ok(gen.packets(digit, duration_ms, first_seq, timestamp)?.into_iter().map(|p| p.rtp).collect())
}

/// The digit of an INFO value: one DTMF character, or the numeric event code
/// 0..=15 (some gateways send `Signal=10` for `*` and `Signal=11` for `#`).
fn info_digit(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => char_to_event(c).and_then(event_to_char),
        _ => value.parse::<u8>().ok().and_then(event_to_char),
    }
}

/// Reads a SIP INFO body carrying one digit. `application/dtmf-relay` is
/// `Signal=5` and optionally `Duration=160` (milliseconds) on separate lines,
/// keys case-insensitive; `application/dtmf` is the digit alone. Parameters
/// on the content type are ignored. Returns the digit (upper-case) and the
/// duration, [`DEFAULT_INFO_DURATION_MS`] when absent; anything else is
/// `None`.
pub fn parse_info(content_type: &str, body: &[u8]) -> Option<(char, u32)> {
    if body.len() > MAX_INFO_BODY {
        return None;
    }
    let body = std::str::from_utf8(body).ok()?;
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = None;
        for line in body.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let key = key.trim();
            if key.eq_ignore_ascii_case("Signal") {
                digit = Some(info_digit(value)?);
            } else if key.eq_ignore_ascii_case("Duration") {
                duration = Some(value.trim().parse::<u32>().ok()?);
            }
        }
        Some((digit?, duration.filter(|&d| d > 0).unwrap_or(DEFAULT_INFO_DURATION_MS)))
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        Some((info_digit(body)?, DEFAULT_INFO_DURATION_MS))
    } else {
        None
    }
}

/// The INFO body for one digit, in the `application/dtmf-relay` form that
/// nearly every phone and gateway accepts. Lower-case `a`-`d` are written
/// upper-case; the caller checks the digit with [`char_to_event`] first, as
/// anything else is written as given.
pub fn info_body(digit: char, duration_ms: u32) -> (&'static str, String) {
    let digit = digit.to_ascii_uppercase();
    ("application/dtmf-relay", format!("Signal={digit}\r\nDuration={duration_ms}\r\n"))
}
