//! The adaptive jitter buffer of a softphone's receive path: RTP audio packets
//! (RFC 3550) go in as the network delivers them, late, early, reordered or
//! twice, and the audio shell takes out one frame at a time, in order, at the
//! pace its sound device plays them.
//!
//! It owns the playout timeline of one incoming audio stream, because that is
//! where every decision about time has to be made together: when a packet is
//! given up as lost (and the decoder conceals it, with Opus FEC from the next
//! packet when that one is already here), when a straggler is too late to be
//! played, how much delay to hold against network jitter, and how to follow a
//! sender whose clock runs faster or slower than ours. Like the rest of the
//! crate it is sans-IO: the caller passes the time of every call as an
//! `Instant`; there are no threads, no clock reads, no randomness, and no
//! packet can make it panic or grow its memory without bound.
//!
//! The model, and why:
//! - **Pull playout.** [`JitterBuffer::pop`] is called each time the shell
//!   needs the next piece of audio (when it has played what the previous call
//!   returned), and returns exactly one [`Playout`]: a payload to decode, a
//!   [`Playout::Lost`] to conceal, or [`Playout::Empty`] silence, each with its
//!   duration. The pops are the playout clock, so the sound device's clock,
//!   not the sender's, sets the pace, which is what makes drift visible.
//! - **Delay estimate.** Each packet's transit (arrival time minus its RTP
//!   timestamp, in RTP clock units) is compared with a baseline, the transit
//!   of the fastest path through the network: it drops with any faster
//!   packet and otherwise rises by at most 2 % of the elapsed time, which
//!   follows a drifting sender clock but not a delay spike. The playout
//!   delay is how long a packet on that path waits between arriving and
//!   being played; a packet's transit above the baseline is its lateness,
//!   and the peak lateness over the last 2 s is the jitter to absorb.
//! - **Target delay** is that peak plus a 10 ms margin, kept between the
//!   configured minimum and maximum. It grows at once when a packet arrives
//!   later than the target allows (a late packet is precisely one whose
//!   lateness exceeds the delay held), and shrinks only slowly, exponentially
//!   with an 8 s time constant, once the window has been calm for 2 s. The
//!   RFC 3550 interarrival jitter is kept too, for the statistics (and RTCP).
//! - **Adjusting the delay** costs audio, so it is done where it costs least:
//!   in silence (a timestamp gap between consecutive packets, i.e. DTX or VAD,
//!   or before a packet with the marker bit, i.e. a talkspurt start) the
//!   silence is shortened or lengthened freely; during speech a packet is
//!   skipped or a frame concealed, at most one every few frames and only when
//!   the delay is well outside a band of 1.5 frames above the target. Clock
//!   drift of a percent therefore costs about a percent of frames (one frame
//!   every 2 s at 20 ms), counted in [`JitterStats`].
//! - **Starvation.** When nothing is buffered at all, the buffer cannot tell
//!   loss from a network stall from the sender going silent. It conceals for
//!   up to 100 ms and then plays silence, and meanwhile holds its playout
//!   position (up to the maximum delay), so a stalled burst that then arrives
//!   is still played instead of dropped as late; if instead the next packet
//!   turns up further along the timeline (loss or silence), the filler already
//!   played is counted against that gap, so the delay does not grow.
//! - **Resync.** A new SSRC starts the stream afresh (packets of the previous
//!   SSRC still in flight for a second are dropped). A sequence number jump
//!   beyond RFC 3550 A.1's window, or a timestamp that does not fit arrival
//!   times within the maximum delay plus 500 ms, is taken as a restart when a
//!   second packet confirms it (so one corrupt packet cannot flush the buffer),
//!   and 25 late packets in a row also restart the timeline. Sequence numbers
//!   wrap at 2^16 and timestamps at 2^32 as in RFC 3550; both are extended to
//!   64 bits internally.
//!
//! One stream of one payload format: the shell demultiplexes RFC 4733
//! telephone events and comfort noise before pushing, as those share
//! timestamps or carry no audio frame.

use crate::codec::Codec;
use crate::rtp::RtpPacket;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// RFC 3550 A.1: a sequence number at most this far ahead of the highest seen
/// is a gap in the same stream; further is a jump.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a sequence number at most this far behind the highest seen
/// is a reordered or duplicated packet; further is a jump.
const MAX_MISORDER: u16 = 100;
/// How far back in arrival time lateness peaks are remembered.
const TRANSIT_WINDOW: Duration = Duration::from_secs(2);
/// How fast the transit baseline may rise, in parts per million of elapsed
/// time: above the clock drift to follow (up to 2 %, where real senders are
/// within 1 %), far below the slope of a delay spike.
const BASELINE_CREEP_PPM: i64 = 20_000;
/// Fixed-point fraction bits of the baseline.
const BASE_SHIFT: u32 = 10;
/// Bound on the transit window, whatever the packet rate.
const TRANSIT_WINDOW_CAP: usize = 1024;
/// Time constant of the target's decay toward a lower need.
const SHRINK_TIME_CONSTANT: Duration = Duration::from_secs(8);
/// Added to the measured jitter: the audio callback's own timing wobble.
const SAFETY_MARGIN: Duration = Duration::from_millis(10);
/// Longest run of concealment before a gap turns to silence: beyond this PLC
/// only sounds robotic.
const MAX_CONCEALMENT: Duration = Duration::from_millis(100);
/// Frame duration assumed until two consecutive packets show the real one.
const DEFAULT_FRAME: Duration = Duration::from_millis(20);
/// Shortest Opus frame (RFC 6716): deltas below are not frame durations.
const MIN_FRAME: Duration = Duration::from_micros(2500);
/// Longest Opus packet (RFC 6716): deltas above are silence, not one frame.
const MAX_FRAME: Duration = Duration::from_millis(120);
/// A timestamp this much beyond what arrival times allow, on top of the
/// maximum delay, is a new timeline, not jitter.
const RESYNC_SLACK: Duration = Duration::from_millis(500);
/// This many late packets in a row mean the timeline is wrong: restart it.
const LATE_RESYNC: u32 = 25;
/// Pops between two audible delay adjustments during speech.
const ADJUST_COOLDOWN: u32 = 4;
/// After an SSRC change, packets of the old SSRC for this long are stragglers.
const STALE_SSRC: Duration = Duration::from_secs(1);
/// Bounds on the configuration, so that every product below fits an i64.
const MAX_CLOCK_RATE: u32 = 1_000_000;
const MAX_CONFIG_DELAY: Duration = Duration::from_secs(10);
/// The delay average is a 1/8 exponential moving average.
const EMA_SHIFT: u32 = 3;
/// Fixed-point fraction bits of the target, so that its slow decay does not
/// round away to nothing on 20 ms steps.
const TARGET_SHIFT: u32 = 16;

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream in Hz: 8000 for G.711, 48000 for Opus
    /// (RFC 7587). Clamped to 1..=1,000,000.
    pub clock_rate: u32,
    /// The target delay never goes below this. Default 20 ms.
    pub min_delay: Duration,
    /// The target delay never goes above this; packets later than this are
    /// lost. Default 500 ms. Delays are clamped to 10 s.
    pub max_delay: Duration,
    /// The target before any jitter has been measured. Default 40 ms.
    pub initial_delay: Duration,
    /// Most packets held; past this the oldest is dropped. Default 256 (over
    /// 2.5 s of 10 ms packets, far beyond the maximum delay).
    pub max_packets: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self::new(8000)
    }
}

impl JitterConfig {
    /// Default delays for a stream with this RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            initial_delay: Duration::from_millis(40),
            max_packets: 256,
        }
    }

    /// Default delays for a stream of `codec`, at its RTP clock rate.
    pub fn for_codec(codec: Codec) -> Self {
        Self::new(codec.clock_rate())
    }
}

/// What the shell plays next; see [`JitterBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// A packet to decode and play. `duration` is how much of the timeline it
    /// covers (from its timestamp to the next packet's, or the usual frame
    /// duration when that is unknown).
    Frame { payload: Bytes, seq: u16, timestamp: u32, marker: bool, duration: Duration },
    /// No packet for this stretch: conceal `duration` of audio
    /// ([`crate::Decoder::conceal`]). `next` is the payload right after the
    /// gap when it is already here, for Opus in-band FEC; it is still
    /// returned as a `Frame` afterwards. Also returned, with `next: None`,
    /// when the buffer stretches speech to grow its delay.
    Lost { next: Option<Bytes>, duration: Duration },
    /// Nothing to play: before the stream starts or has buffered enough, in
    /// the sender's silence (DTX), or after a long starvation. Play silence or
    /// comfort noise for `duration`.
    Empty { duration: Duration },
}

impl Playout {
    /// How much audio this stands for.
    pub fn duration(&self) -> Duration {
        match self {
            Playout::Frame { duration, .. } | Playout::Lost { duration, .. } | Playout::Empty { duration } => *duration,
        }
    }

    /// [`Self::duration`] in samples at `rate` Hz (160 for 20 ms at 8 kHz),
    /// rounded to the nearest sample.
    pub fn samples(&self, rate: u32) -> usize {
        let n = (self.duration().as_nanos() * u128::from(rate) + 500_000_000) / 1_000_000_000;
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for playout.
    Buffered,
    /// Queued as the first packet of a new timeline: a new SSRC, a confirmed
    /// jump, or a run of late packets. Whatever was buffered was dropped.
    Resynced,
    /// Already received; dropped.
    Duplicate,
    /// Its playout time has passed; dropped.
    Late,
    /// Does not fit the timeline; kept aside until the next packet shows
    /// whether the stream restarted (then both are played) or it was a stray
    /// (then it is dropped).
    Held,
    /// From the SSRC the stream just moved away from; dropped.
    Stale,
}

/// Counters and gauges of a [`JitterBuffer`]. Counters are cumulative over
/// resyncs; gauges are the current values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Frames returned as [`Playout::Frame`].
    pub played: u64,
    /// Sequence numbers whose playout time passed without the packet (RFC
    /// 3550 loss as the listener hears it).
    pub lost: u64,
    /// Frames returned as [`Playout::Lost`], for any reason.
    pub concealed: u64,
    /// Packets dropped for arriving after their playout time.
    pub late: u64,
    /// Packets dropped as already received.
    pub duplicates: u64,
    /// Packets dropped because the buffer held `max_packets`.
    pub overflow: u64,
    /// Packets dropped as not of the stream: from the previous SSRC, an
    /// unconfirmed jump, or still buffered when the stream resynced.
    pub discarded: u64,
    /// Frames of silence or concealment inserted to grow the delay.
    pub stretched: u64,
    /// Times silence was shortened to cut the delay (no audio lost).
    pub silence_cut: u64,
    /// Packets skipped unplayed to cut the delay (audio lost).
    pub skipped: u64,
    /// Times the timeline restarted.
    pub resyncs: u64,
    /// The delay the buffer aims for.
    pub target_delay_ms: u32,
    /// The playout delay it holds now (smoothed): how long a packet on the
    /// fastest network path waits before it is played. 0 while not playing.
    pub delay_ms: u32,
    /// Audio buffered ahead of the playout position, up to the end of the
    /// newest packet.
    pub buffered_ms: u32,
    /// RFC 3550 A.8 interarrival jitter.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No stream yet.
    Idle,
    /// Packets are coming in; playout has not started.
    Buffering,
    Playing,
}

/// A packet as pushed.
#[derive(Debug, Clone)]
struct Incoming {
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    payload: Bytes,
}

/// A buffered packet; `ts` is the extended timestamp.
#[derive(Debug, Clone)]
struct Entry {
    ts: i64,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

/// A packet that looked like a restart, waiting for a second one to agree.
#[derive(Debug, Clone)]
struct Candidate {
    arrival: i64,
    packet: Incoming,
}

/// The transit baseline and the jitter around it.
///
/// The baseline is the transit of the fastest network path: it follows any
/// packet faster than it at once, and otherwise rises by at most
/// [`BASELINE_CREEP_PPM`] of the elapsed time, so that it tracks a sender
/// whose clock is slower than ours (transit then grows by the drift) without
/// being pulled up by the late packets of a burst. Each packet's transit
/// above the baseline is its lateness; the peak lateness over a 2 s window
/// is the jitter the buffer must absorb. Measured against a drifting
/// baseline, neither the delay nor the jitter is inflated by drift.
#[derive(Debug, Default)]
struct TransitWindow {
    /// Baseline transit, in 1/1024 RTP units (the creep per packet is a
    /// fraction of a unit at 8 kHz).
    base_q: Option<i64>,
    last_arrival: i64,
    /// (arrival, lateness), lateness decreasing: the front is the peak.
    peaks: VecDeque<(i64, i64)>,
}

impl TransitWindow {
    fn clear(&mut self) {
        self.base_q = None;
        self.peaks.clear();
    }

    /// Adds a packet; arrivals must not go backwards (the buffer's clock never
    /// does). The newest packet always stays in the window, so that it still
    /// says something after a long silence.
    fn push(&mut self, arrival: i64, transit: i64, span: i64) {
        let transit_q = transit.saturating_mul(1 << BASE_SHIFT);
        let base_q = match self.base_q {
            None => transit_q,
            Some(b) => {
                let dt = i128::from(arrival.saturating_sub(self.last_arrival).max(0));
                let creep = dt * (1 << BASE_SHIFT) * i128::from(BASELINE_CREEP_PPM) / 1_000_000;
                let allowed = b.saturating_add(i64::try_from(creep).unwrap_or(i64::MAX));
                transit_q.min(allowed)
            }
        };
        self.base_q = Some(base_q);
        self.last_arrival = arrival;
        let lateness = transit.saturating_sub(base_q >> BASE_SHIFT).max(0);
        while self.peaks.back().is_some_and(|&(_, l)| l <= lateness) {
            self.peaks.pop_back();
        }
        self.peaks.push_back((arrival, lateness));
        let horizon = arrival.saturating_sub(span);
        while self.peaks.len() > 1
            && (self.peaks.len() > TRANSIT_WINDOW_CAP || self.peaks.front().is_some_and(|&(a, _)| a < horizon))
        {
            self.peaks.pop_front();
        }
    }

    /// The baseline transit, once a packet has been seen.
    fn base(&self) -> Option<i64> {
        self.base_q.map(|b| b >> BASE_SHIFT)
    }

    /// The peak lateness over the window.
    fn spread(&self) -> i64 {
        self.peaks.front().map_or(0, |&(_, l)| l)
    }
}

/// Duration to RTP clock units, saturating.
fn dur_to_ts(d: Duration, clock: i64) -> i64 {
    let units = d.as_nanos().saturating_mul(u128::try_from(clock).unwrap_or(0)) / 1_000_000_000;
    i64::try_from(units).unwrap_or(i64::MAX)
}

/// RTP clock units (negative counts as zero) to a Duration.
fn ts_to_dur(ts: i64, clock: i64) -> Duration {
    let units = u128::try_from(ts.max(0)).unwrap_or(0);
    let nanos = units * 1_000_000_000 / u128::try_from(clock.max(1)).unwrap_or(1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// RTP clock units to whole milliseconds for the stats gauges.
fn ts_to_ms(ts: i64, clock: i64) -> u32 {
    u32::try_from(ts_to_dur(ts, clock).as_millis()).unwrap_or(u32::MAX)
}

/// The signed distance from `from` to `to` on the 2^32 timestamp circle.
fn ts_delta(to: u32, from: u32) -> i64 {
    // Reinterpreting as i32 is the RFC 3550 wrap-around comparison.
    i64::from(to.wrapping_sub(from) as i32)
}

/// The adaptive jitter buffer of one incoming audio stream. See the module
/// notes for the model.
#[derive(Debug)]
pub struct JitterBuffer {
    // Settings, in RTP clock units.
    clock: i64,
    min_target: i64,
    max_target: i64,
    safety: i64,
    frame_min: i64,
    frame_max: i64,
    max_conceal: i64,
    resync_jump: i64,
    window_span: i64,
    shrink_tau: i64,
    stale_time: i64,
    max_packets: usize,

    // The buffer's clock: RTP units since the first call, never going back.
    epoch: Option<Instant>,
    now: i64,

    // Adaptation; survives resyncs, as the network usually does.
    target_q: i64,
    target_at: i64,
    frame: i64,
    /// Whether `frame` was measured rather than assumed.
    frame_known: bool,

    // The stream.
    phase: Phase,
    ssrc: Option<u32>,
    /// The SSRC the stream moved away from, and when.
    stale: Option<(u32, i64)>,
    /// Highest extended sequence number received, its extended and wire
    /// timestamps: the reference for extending the next packet's numbers.
    highest: u64,
    highest_ts: i64,
    highest_ts32: u32,
    /// Bit i: sequence number `highest - i` received.
    seen: u128,
    buffer: BTreeMap<u64, Entry>,
    window: TransitWindow,
    last_transit: Option<i64>,
    /// RFC 3550 A.8 jitter times 16, in RTP units.
    jitter_q4: i64,
    candidate: Option<Candidate>,
    late_run: u32,

    // Playout.
    /// Extended timestamp of the next audio to play.
    cursor: i64,
    /// Extended sequence number of the next packet to play.
    next_seq: u64,
    /// Filler played while starved without moving the cursor.
    owed: i64,
    /// Length of the current run of filler (concealment or starvation).
    filler: i64,
    /// Playout delay, times 8, averaged over pops.
    ema8: i64,
    cooldown: u32,
    /// The marker-bit packet whose talkspurt boundary was already handled.
    marker_done: Option<u64>,
    last_played: Option<(u64, i64)>,

    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        let clock = i64::from(config.clock_rate.clamp(1, MAX_CLOCK_RATE));
        let to_ts = |d: Duration| dur_to_ts(d.min(MAX_CONFIG_DELAY), clock);
        let min_target = to_ts(config.min_delay);
        let max_target = to_ts(config.max_delay).max(min_target);
        let initial = to_ts(config.initial_delay).clamp(min_target, max_target);
        let frame_min = dur_to_ts(MIN_FRAME, clock).max(1);
        Self {
            clock,
            min_target,
            max_target,
            safety: dur_to_ts(SAFETY_MARGIN, clock),
            frame_min,
            frame_max: dur_to_ts(MAX_FRAME, clock).max(frame_min),
            max_conceal: dur_to_ts(MAX_CONCEALMENT, clock),
            resync_jump: max_target.saturating_add(dur_to_ts(RESYNC_SLACK, clock)),
            window_span: dur_to_ts(TRANSIT_WINDOW, clock),
            shrink_tau: dur_to_ts(SHRINK_TIME_CONSTANT, clock).max(1),
            stale_time: dur_to_ts(STALE_SSRC, clock),
            max_packets: config.max_packets.max(1),
            epoch: None,
            now: 0,
            target_q: initial << TARGET_SHIFT,
            target_at: 0,
            frame: dur_to_ts(DEFAULT_FRAME, clock).max(1),
            frame_known: false,
            phase: Phase::Idle,
            ssrc: None,
            stale: None,
            highest: 0,
            highest_ts: 0,
            highest_ts32: 0,
            seen: 0,
            buffer: BTreeMap::new(),
            window: TransitWindow::default(),
            last_transit: None,
            jitter_q4: 0,
            candidate: None,
            late_run: 0,
            cursor: 0,
            next_seq: 0,
            owed: 0,
            filler: 0,
            ema8: 0,
            cooldown: 0,
            marker_done: None,
            last_played: None,
            stats: JitterStats::default(),
        }
    }

    /// The SSRC of the stream being played, once a packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Packets buffered.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The delay the buffer currently aims for.
    pub fn target_delay(&self) -> Duration {
        ts_to_dur(self.target(), self.clock)
    }

    /// Counters and current gauges.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.target_delay_ms = ts_to_ms(self.target(), self.clock);
        s.delay_ms = if self.phase == Phase::Playing { ts_to_ms(self.ema8 >> EMA_SHIFT, self.clock) } else { 0 };
        s.buffered_ms = ts_to_ms(self.buffered(), self.clock);
        let jitter = self.jitter_q4 >> 4;
        // Lossless enough: jitter is far below 2^53 units.
        s.jitter_ms = jitter as f64 * 1000.0 / self.clock as f64;
        s
    }

    /// Forgets the stream (e.g. when the call is put on hold), keeping the
    /// counters and the learned delay; the next packet starts a new one.
    pub fn reset(&mut self) {
        self.stats.discarded += self.buffer.len() as u64;
        self.buffer.clear();
        self.window.clear();
        self.phase = Phase::Idle;
        self.ssrc = None;
        self.stale = None;
        self.candidate = None;
        self.last_transit = None;
        self.jitter_q4 = 0;
    }

    /// Takes a parsed (and, for SRTP, already decrypted) RTP packet; see
    /// [`Self::push`]. The payload is copied.
    pub fn push_packet(&mut self, now: Instant, packet: &RtpPacket<'_>) -> PushOutcome {
        let h = packet.header();
        self.push(now, h.sequence, h.timestamp, h.ssrc, h.marker, Bytes::copy_from_slice(packet.payload()))
    }

    /// Takes a packet that arrived at `now`.
    pub fn push(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        marker: bool,
        payload: impl Into<Bytes>,
    ) -> PushOutcome {
        let now = self.advance_clock(now);
        self.stats.received += 1;
        let packet = Incoming { seq, timestamp, ssrc, marker, payload: payload.into() };
        match self.ssrc {
            None => {
                self.begin(now, packet);
                PushOutcome::Buffered
            }
            Some(current) if current != ssrc => {
                if self.stale.is_some_and(|(old, left)| old == ssrc && now.saturating_sub(left) < self.stale_time) {
                    self.stats.discarded += 1;
                    return PushOutcome::Stale;
                }
                self.stale = Some((current, now));
                self.stats.resyncs += 1;
                self.begin(now, packet);
                PushOutcome::Resynced
            }
            Some(_) => self.push_same(now, packet, true),
        }
    }

    /// The next piece of audio to play, at `now`. Call it when the audio from
    /// the previous call has been (or is about to be) played: one call per
    /// frame, each result covering its `duration`.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let now = self.advance_clock(now);
        self.adapt_target(now);
        self.cooldown = self.cooldown.saturating_sub(1);
        let started = match self.phase {
            Phase::Idle => false,
            Phase::Buffering => self.try_start(now),
            Phase::Playing => true,
        };
        if !started {
            return self.silence(self.frame);
        }
        self.play(now)
    }

    // -----------------------------------------------------------------------
    // Time and adaptation

    fn advance_clock(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        let t = dur_to_ts(now.saturating_duration_since(epoch), self.clock);
        self.now = self.now.max(t);
        self.now
    }

    fn target(&self) -> i64 {
        self.target_q >> TARGET_SHIFT
    }

    /// Moves the target toward what the transit window needs: up at once,
    /// down with a time constant.
    fn adapt_target(&mut self, now: i64) {
        let want = self.window.spread().saturating_add(self.safety).clamp(self.min_target, self.max_target);
        let want_q = want << TARGET_SHIFT;
        if want_q >= self.target_q {
            self.target_q = want_q;
        } else {
            let dt = now.saturating_sub(self.target_at).clamp(0, self.shrink_tau);
            let excess = self.target_q - want_q;
            // At most `excess`, as dt <= tau.
            let step = i128::from(excess) * i128::from(dt) / i128::from(self.shrink_tau);
            self.target_q -= i64::try_from(step).unwrap_or(excess);
        }
        self.target_at = now;
    }

    /// Records a packet's transit: the window, RFC 3550 jitter, the target.
    fn observe(&mut self, now: i64, transit: i64) {
        if let Some(prev) = self.last_transit {
            // RFC 3550 A.8: J += (|D| - J) / 16, kept times 16.
            let d = transit.saturating_sub(prev).saturating_abs();
            self.jitter_q4 = self.jitter_q4.saturating_add(d.saturating_sub((self.jitter_q4.saturating_add(8)) >> 4));
        }
        self.last_transit = Some(transit);
        self.window.push(now, transit, self.window_span);
        self.adapt_target(now);
    }

    /// Playout delay at `now`: how long ago a packet on the fastest path
    /// would have arrived for the audio at the cursor.
    fn delay(&self, now: i64) -> i64 {
        let base = self.window.base().unwrap_or_else(|| now.saturating_sub(self.cursor));
        now.saturating_sub(self.cursor).saturating_sub(base)
    }

    fn ema(&self) -> i64 {
        self.ema8 >> EMA_SHIFT
    }

    fn shift_ema(&mut self, by: i64) {
        self.ema8 = self.ema8.saturating_add(by.saturating_mul(1 << EMA_SHIFT));
    }

    fn buffered(&self) -> i64 {
        let (Some((_, first)), Some((_, last))) = (self.buffer.first_key_value(), self.buffer.last_key_value()) else {
            return 0;
        };
        let start = if self.phase == Phase::Playing { self.cursor } else { first.ts };
        last.ts.saturating_add(self.frame).saturating_sub(start).max(0)
    }

    // -----------------------------------------------------------------------
    // Input

    /// Starts a timeline with `packet`, dropping whatever was buffered.
    fn begin(&mut self, now: i64, packet: Incoming) {
        self.stats.discarded += self.buffer.len() as u64;
        self.buffer.clear();
        self.window.clear();
        self.last_transit = None;
        self.jitter_q4 = 0;
        self.candidate = None;
        self.late_run = 0;
        self.phase = Phase::Buffering;
        self.ssrc = Some(packet.ssrc);
        // Start one wrap up, so that reordered packets from before the first
        // one extend without going below zero.
        self.highest = (1 << 16) + u64::from(packet.seq);
        self.highest_ts = i64::from(packet.timestamp);
        self.highest_ts32 = packet.timestamp;
        self.seen = 1;
        self.cursor = self.highest_ts;
        self.next_seq = self.highest;
        self.owed = 0;
        self.filler = 0;
        self.cooldown = 0;
        self.marker_done = None;
        self.last_played = None;
        let ts = self.highest_ts;
        self.observe(now, now.saturating_sub(ts));
        self.insert(self.highest, ts, packet);
    }

    /// A packet of the current SSRC. `may_hold`: whether a packet off the
    /// timeline may become a restart candidate.
    fn push_same(&mut self, now: i64, packet: Incoming, may_hold: bool) -> PushOutcome {
        let high16 = (self.highest & 0xffff) as u16;
        let d = packet.seq.wrapping_sub(high16);
        let ext = if d <= MAX_DROPOUT {
            self.highest.checked_add(u64::from(d))
        } else if d >= MAX_MISORDER.wrapping_neg() {
            self.highest.checked_sub(u64::from(d.wrapping_neg()))
        } else {
            None
        };
        let ext_ts = self.highest_ts.saturating_add(ts_delta(packet.timestamp, self.highest_ts32));
        let transit = now.saturating_sub(ext_ts);
        let off_timeline =
            self.window.base().is_some_and(|b| transit.saturating_sub(b).saturating_abs() > self.resync_jump);
        let Some(ext) = ext else {
            return self.hold(now, packet, may_hold);
        };
        if self.was_seen(ext) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        if self.phase == Phase::Playing && ext < self.next_seq {
            self.mark_seen(ext, ext_ts, packet.timestamp);
            if !off_timeline {
                // Lateness is exactly what the target must grow for.
                self.observe(now, transit);
            }
            self.stats.late += 1;
            self.late_run += 1;
            if self.late_run >= LATE_RESYNC {
                self.stats.resyncs += 1;
                self.begin(now, packet);
                return PushOutcome::Resynced;
            }
            return PushOutcome::Late;
        }
        if off_timeline {
            return self.hold(now, packet, may_hold);
        }
        if self.candidate.take().is_some() {
            self.stats.discarded += 1;
        }
        self.late_run = 0;
        self.mark_seen(ext, ext_ts, packet.timestamp);
        self.observe(now, transit);
        self.learn_frame(ext, ext_ts, packet.marker);
        self.insert(ext, ext_ts, packet);
        PushOutcome::Buffered
    }

    /// A packet off the timeline: a restart if the previous such packet
    /// agrees with it, otherwise kept to be compared with the next one.
    fn hold(&mut self, now: i64, packet: Incoming, may_hold: bool) -> PushOutcome {
        if !may_hold {
            self.stats.discarded += 1;
            return PushOutcome::Held;
        }
        if let Some(c) = self.candidate.take() {
            let ds = packet.seq.wrapping_sub(c.packet.seq);
            let dts = ts_delta(packet.timestamp, c.packet.timestamp);
            let darr = now.saturating_sub(c.arrival);
            if (1..=MAX_MISORDER).contains(&ds)
                && dts >= 0
                && darr.saturating_sub(dts).saturating_abs() <= self.resync_jump
            {
                self.stats.resyncs += 1;
                self.begin(c.arrival, c.packet);
                // Fits the new timeline by the checks above; never held again.
                self.push_same(now, packet, false);
                return PushOutcome::Resynced;
            }
            self.stats.discarded += 1;
        }
        self.candidate = Some(Candidate { arrival: now, packet });
        PushOutcome::Held
    }

    fn was_seen(&self, ext: u64) -> bool {
        match self.highest.checked_sub(ext) {
            Some(back) if back < 128 => (self.seen >> back) & 1 == 1,
            // Beyond the bitmap (cannot happen within MAX_MISORDER): drop it.
            Some(_) => true,
            None => false,
        }
    }

    fn mark_seen(&mut self, ext: u64, ext_ts: i64, ts32: u32) {
        if ext > self.highest {
            let shift = ext - self.highest;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = ext;
            self.highest_ts = ext_ts;
            self.highest_ts32 = ts32;
        } else if let Some(back) = self.highest.checked_sub(ext).filter(|&b| b < 128) {
            self.seen |= 1u128 << back;
        }
    }

    /// Learns the frame duration from a packet and its neighbours in sequence.
    /// A marker bit means silence came before the packet, so the delta to
    /// its predecessor is not a frame.
    fn learn_frame(&mut self, ext: u64, ts: i64, marker: bool) {
        let prev = ext.checked_sub(1).and_then(|p| {
            self.buffer.get(&p).map(|e| e.ts).or_else(|| self.last_played.filter(|lp| lp.0 == p).map(|lp| lp.1))
        });
        if let Some(p) = prev.filter(|_| !marker) {
            self.consider_frame(ts.saturating_sub(p));
        }
        if let Some(n) = ext.checked_add(1).and_then(|n| self.buffer.get(&n)).filter(|n| !n.marker) {
            self.consider_frame(n.ts.saturating_sub(ts));
        }
    }

    fn consider_frame(&mut self, delta: i64) {
        if (self.frame_min..=self.frame_max).contains(&delta) {
            self.frame = delta;
            self.frame_known = true;
        }
    }

    fn insert(&mut self, ext: u64, ts: i64, p: Incoming) {
        let entry = Entry { ts, seq: p.seq, timestamp: p.timestamp, marker: p.marker, payload: p.payload };
        self.buffer.insert(ext, entry);
        while self.buffer.len() > self.max_packets {
            let Some((seq, e)) = self.buffer.pop_first() else { break };
            self.stats.overflow += 1;
            if self.phase == Phase::Playing && seq >= self.next_seq {
                // The playout position moves past it, as if it were played.
                self.stats.lost += seq - self.next_seq;
                self.next_seq = seq.saturating_add(1);
                self.cursor = self.cursor.max(e.ts.saturating_add(self.frame));
                self.last_played = Some((seq, e.ts));
            }
        }
    }

    // -----------------------------------------------------------------------
    // Output

    fn silence(&self, ts: i64) -> Playout {
        Playout::Empty { duration: ts_to_dur(ts.max(1), self.clock) }
    }

    fn lost(&mut self, next: Option<Bytes>, ts: i64) -> Playout {
        self.stats.concealed += 1;
        Playout::Lost { next, duration: ts_to_dur(ts.max(1), self.clock) }
    }

    /// Starts playout once the head has waited the target delay (or the
    /// buffer is half full, whatever the estimate says).
    fn try_start(&mut self, now: i64) -> bool {
        let Some((&seq, head)) = self.buffer.first_key_value() else { return false };
        let base = self.window.base().unwrap_or_else(|| now.saturating_sub(head.ts));
        let delay = now.saturating_sub(head.ts).saturating_sub(base);
        // Until two consecutive packets have shown the frame duration, wait
        // (up to the longest frame more): playing the first packet as a
        // guessed 20 ms when it holds 60 would open a gap right away.
        let wait = if self.frame_known { self.target() } else { self.target().saturating_add(self.frame_max) };
        if delay < wait && self.buffer.len() < self.max_packets.div_ceil(2) {
            return false;
        }
        self.phase = Phase::Playing;
        self.cursor = head.ts;
        self.next_seq = seq;
        self.ema8 = delay.saturating_mul(1 << EMA_SHIFT);
        self.owed = 0;
        self.filler = 0;
        true
    }

    /// How much of the timeline the packet `seq` at `ts` covers: up to the
    /// next packet when that one is here and directly follows it, else the
    /// usual frame.
    fn duration_of(&self, seq: u64, ts: i64) -> i64 {
        seq.checked_add(1)
            .and_then(|n| self.buffer.get(&n))
            .filter(|n| !n.marker)
            .map(|n| n.ts.saturating_sub(ts))
            .filter(|d| (self.frame_min..=self.frame_max).contains(d))
            .unwrap_or(self.frame)
    }

    fn play(&mut self, now: i64) -> Playout {
        let delay = self.delay(now);
        self.ema8 = self.ema8.saturating_add(delay.saturating_sub(self.ema()));
        let frame = self.frame;
        let target = self.target();
        // Far behind (the shell stopped pulling, or a stall longer than the
        // maximum delay): jump to the target at once rather than skipping a
        // frame at a time.
        if delay > self.max_target.saturating_add(frame.saturating_mul(2)) {
            self.catch_up(self.cursor.saturating_add(delay.saturating_sub(target)));
        }
        // Every turn that does not return removes a packet or moves the
        // cursor or next_seq forward; the bound is only a backstop.
        for _ in 0..self.max_packets.saturating_add(8) {
            let Some((&seq, head)) = self.buffer.first_key_value() else { return self.starved(now) };
            let (head_ts, head_marker) = (head.ts, head.marker);
            if self.owed > 0 {
                // Filler already played while starved stands for the start
                // of the gap before this packet, if there is one.
                let skip = head_ts.saturating_sub(self.cursor).clamp(0, self.owed);
                self.cursor = self.cursor.saturating_add(skip);
                self.owed = 0;
                // The average lagged behind the hold; start it afresh.
                self.ema8 = self.delay(now).saturating_mul(1 << EMA_SHIFT);
            }
            if seq < self.next_seq {
                // Never inserted so; defensive.
                self.buffer.remove(&seq);
                self.stats.discarded += 1;
                continue;
            }
            let gap = head_ts.saturating_sub(self.cursor);
            if seq > self.next_seq {
                // Packets next_seq..seq are missing.
                if gap <= frame / 2 {
                    // Their time is already covered: give them up.
                    self.stats.lost += seq - self.next_seq;
                    self.next_seq = seq;
                    continue;
                }
                let d = gap.min(frame);
                self.cursor = self.cursor.saturating_add(d);
                self.stats.lost += 1;
                self.next_seq += 1;
                let last = d == gap;
                let next = if last {
                    self.stats.lost += seq - self.next_seq;
                    self.next_seq = seq;
                    self.buffer.get(&seq).map(|e| e.payload.clone())
                } else {
                    None
                };
                self.filler = self.filler.saturating_add(d);
                if self.filler > self.max_conceal && next.is_none() {
                    return self.silence(d);
                }
                return self.lost(next, d);
            }
            // seq == next_seq: the packet due next.
            let boundary = gap > frame / 2 || (head_marker && self.marker_done != Some(seq));
            if boundary {
                // Silence before it (DTX, or a talkspurt start): set the
                // delay here for free, to the middle of the speech band
                // (target .. target + 1.5 frames) so that drift has the most
                // room before speech must be cut or stretched. The raw delay
                // is exact here, no average needed.
                let err = self.delay(now).saturating_sub(target.saturating_add(frame * 3 / 4));
                let tolerance = frame / 4;
                if gap > 0 && err > tolerance {
                    let skip = err.min(gap);
                    self.cursor = self.cursor.saturating_add(skip);
                    self.shift_ema(-skip);
                    self.stats.silence_cut += 1;
                    continue;
                }
                if err < -tolerance {
                    let d = err.saturating_neg().min(frame);
                    self.shift_ema(d);
                    self.stats.stretched += 1;
                    return self.silence(d);
                }
                if gap > frame / 2 {
                    let d = gap.min(frame);
                    self.cursor = self.cursor.saturating_add(d);
                    return self.silence(d);
                }
                self.marker_done = Some(seq);
            }
            let dur = self.duration_of(seq, head_ts);
            if self.cooldown == 0 {
                let delay = self.delay(now);
                let high = target.saturating_add(frame).saturating_add(frame / 2);
                let has_next = seq.checked_add(1).is_some_and(|n| self.buffer.contains_key(&n));
                if self.ema() > high && delay > high && has_next {
                    // Too much delay in speech: skip this packet. Only when
                    // the next one is here, or the skip would become a gap.
                    self.buffer.remove(&seq);
                    self.stats.skipped += 1;
                    self.cursor = head_ts.saturating_add(dur);
                    self.next_seq = seq + 1;
                    self.last_played = Some((seq, head_ts));
                    self.shift_ema(-dur);
                    self.cooldown = ADJUST_COOLDOWN;
                    continue;
                }
                if self.ema() < target && delay < target {
                    // Too little: conceal one frame in front of it. The
                    // packet's FEC is for the frame before it, already
                    // played, so `next` stays empty.
                    self.shift_ema(frame);
                    self.stats.stretched += 1;
                    self.cooldown = ADJUST_COOLDOWN;
                    return self.lost(None, frame);
                }
            }
            let Some(e) = self.buffer.remove(&seq) else { continue };
            // The packet sets the position, even backwards, so that the
            // cursor never runs ahead of the stream it plays.
            self.cursor = e.ts.saturating_add(dur);
            self.next_seq = seq + 1;
            self.filler = 0;
            self.last_played = Some((seq, e.ts));
            self.stats.played += 1;
            return Playout::Frame {
                payload: e.payload,
                seq: e.seq,
                timestamp: e.timestamp,
                marker: e.marker,
                duration: ts_to_dur(dur, self.clock),
            };
        }
        self.silence(frame)
    }

    /// Nothing buffered: conceal briefly, then silence. The cursor is held
    /// while the delay stays within the maximum, so that a stalled burst is
    /// still played; the filler is owed to whatever gap comes next.
    fn starved(&mut self, now: i64) -> Playout {
        let frame = self.frame;
        if self.delay(now).saturating_add(frame) <= self.max_target {
            self.owed = self.owed.saturating_add(frame);
        } else {
            self.cursor = self.cursor.saturating_add(frame);
        }
        self.filler = self.filler.saturating_add(frame);
        if self.filler > self.max_conceal {
            self.silence(frame)
        } else {
            self.lost(None, frame)
        }
    }

    /// Moves the playout position forward to `goal`, dropping the packets
    /// that start before it.
    fn catch_up(&mut self, goal: i64) {
        if goal <= self.cursor {
            return;
        }
        while let Some(entry) = self.buffer.first_entry() {
            if entry.get().ts >= goal {
                break;
            }
            let seq = *entry.key();
            let e = entry.remove();
            self.stats.skipped += 1;
            self.stats.lost += seq.saturating_sub(self.next_seq);
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            self.last_played = Some((seq, e.ts));
        }
        self.shift_ema(-(goal - self.cursor));
        self.cursor = goal;
        self.owed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::TestRng as Rng;

    const SSRC: u32 = 0x5eed_0001;


    /// A packet on the wire: when it arrives and what it carries.
    #[derive(Debug, Clone)]
    struct Pkt {
        arrive_us: u64,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: Bytes,
    }

    /// A payload that says which packet it is.
    fn payload(ssrc: u32, n: u64) -> Bytes {
        let mut p = ssrc.to_be_bytes().to_vec();
        p.extend_from_slice(&n.to_be_bytes());
        p.resize(40, 0xd5);
        Bytes::from(p)
    }

    fn id(p: &Bytes) -> (u32, u64) {
        let s = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&p[4..12]);
        (s, u64::from_be_bytes(n))
    }

    /// A sender of `n` packets of `frame_ts` units at `clock` Hz, starting at
    /// `seq0`/`ts0`, whose clock runs at `rate_ppm` parts per million of ours
    /// (1_000_000 = exact), each delayed by `net(i)` microseconds.
    struct Sender {
        clock: u64,
        frame_ts: u32,
        seq0: u16,
        ts0: u32,
        ssrc: u32,
        rate_ppm: u64,
        start_us: u64,
    }

    impl Sender {
        fn new(clock: u64, frame_ms: u64) -> Self {
            Sender {
                clock,
                frame_ts: (clock * frame_ms / 1000) as u32,
                seq0: 1000,
                ts0: 123_456,
                ssrc: SSRC,
                rate_ppm: 1_000_000,
                start_us: 0,
            }
        }

        fn frame_us(&self) -> u64 {
            u64::from(self.frame_ts) * 1_000_000 / self.clock
        }

        /// Packet `i` of the stream (sent at `i` frames of the sender's time).
        fn packet(&self, i: u64, net_us: u64) -> Pkt {
            let send = self.start_us + i * self.frame_us() * 1_000_000 / self.rate_ppm;
            Pkt {
                arrive_us: send + net_us,
                seq: self.seq0.wrapping_add(i as u16),
                ts: self.ts0.wrapping_add((i as u32).wrapping_mul(self.frame_ts)),
                ssrc: self.ssrc,
                marker: i == 0,
                payload: payload(self.ssrc, i),
            }
        }

        fn stream(&self, n: u64, mut net: impl FnMut(u64) -> u64) -> Vec<Pkt> {
            (0..n).map(|i| self.packet(i, net(i))).collect()
        }
    }

    /// What a pop returned and when.
    #[derive(Debug, Clone)]
    struct Out {
        at_us: u64,
        playout: Playout,
        /// stats().delay_ms / buffered_ms right after the pop.
        delay_ms: u32,
        buffered_ms: u32,
        target_ms: u32,
    }

    /// Runs the receive side on virtual time: pushes every packet at its
    /// arrival, pops from `first_pop_us` on, each pop after the audio of the
    /// previous one, until `end_us` or until every packet was pushed and
    /// nothing is left.
    fn run(jb: &mut JitterBuffer, base: Instant, mut wire: Vec<Pkt>, first_pop_us: u64, end_us: u64) -> Vec<Out> {
        wire.sort_by_key(|p| p.arrive_us);
        let mut outs = Vec::new();
        let mut i = 0;
        let mut t = first_pop_us;
        while t <= end_us {
            while let Some(p) = wire.get(i).filter(|p| p.arrive_us <= t) {
                jb.push(base + Duration::from_micros(p.arrive_us), p.seq, p.ts, p.ssrc, p.marker, p.payload.clone());
                i += 1;
            }
            let playout = jb.pop(base + Duration::from_micros(t));
            let d = playout.duration().as_micros() as u64;
            assert!(d > 0, "every playout covers some time: {playout:?}");
            let s = jb.stats();
            outs.push(Out {
                at_us: t,
                playout,
                delay_ms: s.delay_ms,
                buffered_ms: s.buffered_ms,
                target_ms: s.target_delay_ms,
            });
            t += d;
            if i == wire.len() && jb.is_empty() {
                // All played: stop before the end of the stream reads as
                // starvation.
                break;
            }
        }
        outs
    }

    /// The packet numbers played, in order.
    fn played(outs: &[Out]) -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match &o.playout {
                Playout::Frame { payload, .. } => Some(id(payload).1),
                _ => None,
            })
            .collect()
    }

    fn lost_frames(outs: &[Out]) -> Vec<&Playout> {
        outs.iter().map(|o| &o.playout).filter(|p| matches!(p, Playout::Lost { .. })).collect()
    }

    fn cfg(clock: u32, delay_ms: u64) -> JitterConfig {
        JitterConfig {
            min_delay: Duration::from_millis(delay_ms),
            initial_delay: Duration::from_millis(delay_ms),
            ..JitterConfig::new(clock)
        }
    }

    #[test]
    fn in_order_stream_plays_every_packet_once_with_constant_delay() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let sender = Sender::new(8000, 20);
        let wire = sender.stream(500, |_| 30_000);
        let outs = run(&mut jb, base, wire.clone(), 7_000, 10_500_000);
        assert_eq!(played(&outs), (0..500).collect::<Vec<_>>());
        // Between the first and the last frame, nothing but frames, each
        // played the same time after it arrived.
        let first = outs.iter().position(|o| matches!(o.playout, Playout::Frame { .. })).unwrap();
        let frames: Vec<&Out> = outs[first..first + 500].iter().collect();
        let waits: Vec<u64> = frames
            .iter()
            .map(|o| match &o.playout {
                Playout::Frame { payload, duration, .. } => {
                    assert_eq!(*duration, Duration::from_millis(20));
                    o.at_us - wire[id(payload).1 as usize].arrive_us
                }
                other => panic!("gap in an in-order stream: {other:?}"),
            })
            .collect();
        assert!(waits.iter().all(|&w| w == waits[0]), "constant delay: {waits:?}");
        assert!((40_000..60_000).contains(&waits[0]), "waits the target, rounded up to a pop: {}", waits[0]);
        let s = jb.stats();
        assert_eq!((s.received, s.played, s.lost, s.concealed, s.late, s.duplicates), (500, 500, 0, 0, 0, 0));
        assert_eq!((s.skipped, s.stretched, s.silence_cut, s.overflow, s.resyncs), (0, 0, 0, 0, 0));
        assert_eq!(s.target_delay_ms, 40);
        assert!(s.jitter_ms < 0.01);
    }

    #[test]
    fn default_config_on_a_clean_network_settles_to_the_minimum() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let sender = Sender::new(8000, 20);
        let outs = run(&mut jb, base, sender.stream(3000, |_| 30_000), 3_000, 60_500_000);
        let p = played(&outs);
        let s = jb.stats();
        // Starting at 40 ms, the delay comes down toward 20 ms by skipping
        // at most a frame or two.
        assert!(s.skipped <= 2, "{s:?}");
        assert_eq!(p.len() as u64 + s.skipped, 3000);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.target_delay_ms, 20);
        assert_eq!((s.lost, s.late), (0, 0));
    }

    #[test]
    fn reordered_packets_within_the_delay_play_in_order_without_loss() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 60));
        let sender = Sender::new(8000, 20);
        // Every even packet overtaken by the odd one after it.
        let wire = sender.stream(400, |i| if i % 2 == 0 { 55_000 } else { 30_000 });
        assert!(wire[0].arrive_us > wire[1].arrive_us);
        let outs = run(&mut jb, base, wire, 1_000, 8_500_000);
        assert_eq!(played(&outs), (0..400).collect::<Vec<_>>());
        assert!(lost_frames(&outs).is_empty());
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.concealed, s.skipped), (0, 0, 0, 0));
        // RFC 3550 A.8 jitter: consecutive transits differ by 25 ms.
        assert!((23.0..=25.0).contains(&s.jitter_ms), "{s:?}");
    }

    #[test]
    fn a_lost_packet_is_one_lost_frame_carrying_the_next_payload_for_fec() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let sender = Sender::new(8000, 20);
        let mut wire = sender.stream(200, |_| 30_000);
        wire.retain(|p| id(&p.payload).1 != 50);
        let outs = run(&mut jb, base, wire, 5_000, 4_500_000);
        let lost = lost_frames(&outs);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            lost[0],
            &Playout::Lost { next: Some(payload(SSRC, 51)), duration: Duration::from_millis(20) },
            "FEC of packet 51 covers 50"
        );
        let order: Vec<u64> = played(&outs);
        assert_eq!(order, (0..200).filter(|&i| i != 50).collect::<Vec<_>>());
        // The Lost sits exactly where 50 would have played.
        let pos = outs.iter().position(|o| matches!(o.playout, Playout::Lost { .. })).unwrap();
        assert!(matches!(&outs[pos - 1].playout, Playout::Frame { payload, .. } if id(payload).1 == 49));
        assert!(matches!(&outs[pos + 1].playout, Playout::Frame { payload, .. } if id(payload).1 == 51));
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.late, s.played), (1, 1, 0, 199));
    }

    #[test]
    fn of_two_lost_packets_only_the_second_gets_the_next_payload() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let sender = Sender::new(8000, 20);
        let mut wire = sender.stream(100, |_| 30_000);
        wire.retain(|p| !matches!(id(&p.payload).1, 50 | 51));
        let outs = run(&mut jb, base, wire, 5_000, 2_500_000);
        let lost = lost_frames(&outs);
        assert_eq!(lost.len(), 2);
        assert!(matches!(lost[0], Playout::Lost { next: None, .. }));
        assert!(matches!(lost[1], Playout::Lost { next: Some(p), .. } if id(p).1 == 52));
        assert_eq!(jb.stats().lost, 2);
    }

    #[test]
    fn a_late_packet_is_dropped_counted_and_grows_the_target() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let sender = Sender::new(8000, 20);
        let wire = sender.stream(300, |i| if i == 50 { 230_000 } else { 30_000 });
        let outs = run(&mut jb, base, wire, 5_000, 6_500_000);
        let p = played(&outs);
        assert!(!p.contains(&50), "played after its time");
        assert!(p.windows(2).all(|w| w[0] < w[1]), "in order");
        let first_lost = lost_frames(&outs)[0].clone();
        assert!(matches!(first_lost, Playout::Lost { next: Some(ref n), .. } if id(n).1 == 51));
        let s = jb.stats();
        assert_eq!((s.late, s.lost), (1, 1));
        let peak = outs.iter().map(|o| o.target_ms).max().unwrap();
        assert!(peak >= 200, "grew for a 200 ms straggler: {peak} {s:?}");
        // ...and the delay followed by stretching, not by losing packets;
        // later, calm again, it came down by skipping.
        assert!(s.stretched > 0);
        assert_eq!(p.len() as u64 + s.skipped, 299);
    }

    #[test]
    fn the_target_jumps_as_soon_as_a_late_packet_arrives() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let at = |ms: u64| base + Duration::from_millis(ms);
        for i in 0..10u16 {
            jb.push(at(u64::from(i) * 20 + 30), i, u32::from(i) * 160, SSRC, false, vec![0u8; 160]);
            jb.pop(at(u64::from(i) * 20 + 31));
        }
        assert_eq!(jb.target_delay(), Duration::from_millis(40));
        jb.push(at(10 * 20 + 150), 10, 1600, SSRC, false, vec![0u8; 160]);
        assert!(jb.target_delay() >= Duration::from_millis(120), "{:?}", jb.target_delay());
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let sender = Sender::new(8000, 20);
        let mut wire = sender.stream(200, |_| 30_000);
        let copies: Vec<Pkt> = wire.iter().map(|p| Pkt { arrive_us: p.arrive_us + 3_000, ..p.clone() }).collect();
        wire.extend(copies);
        // And one copy long after its original was played.
        let mut old = wire[20].clone();
        old.arrive_us = 2_000_000;
        wire.push(old);
        let outs = run(&mut jb, base, wire, 5_000, 4_500_000);
        assert_eq!(played(&outs), (0..200).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.lost), (201, 0, 0));
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.push(base, 7, 0, SSRC, false, vec![1]), PushOutcome::Buffered);
        assert_eq!(jb.push(base, 7, 0, SSRC, false, vec![1]), PushOutcome::Duplicate);
    }

    #[test]
    fn sequence_and_timestamp_wrap_are_seamless() {
        for (clock, frame_ms) in [(8000u64, 20u64), (48000, 20), (48000, 60)] {
            let base = crate::test_support::origin();
            let mut jb = JitterBuffer::new(cfg(clock as u32, 60));
            let mut sender = Sender::new(clock, frame_ms);
            sender.seq0 = 65_500;
            sender.ts0 = u32::MAX - 40 * sender.frame_ts + 7;
            let mut rng = Rng(clock + frame_ms);
            // Every other packet 25 ms slower: at 20 ms, reordered across the
            // wrap too.
            let wire = sender.stream(150, |i| 30_000 + rng.below(3_000) + if i % 2 == 0 { 25_000 } else { 0 });
            let end = 150 * frame_ms * 1000 + 500_000;
            let outs = run(&mut jb, base, wire, 2_000, end);
            assert_eq!(played(&outs), (0..150).collect::<Vec<_>>(), "clock {clock} frame {frame_ms}");
            let s = jb.stats();
            assert_eq!((s.lost, s.late, s.concealed, s.resyncs), (0, 0, 0, 0), "{s:?}");
            // Seq and timestamps on the frames really did wrap.
            let seqs: Vec<u16> = outs
                .iter()
                .filter_map(|o| match o.playout {
                    Playout::Frame { seq, .. } => Some(seq),
                    _ => None,
                })
                .collect();
            assert!(seqs.contains(&65_535) && seqs.contains(&0));
            assert!(outs.iter().all(|o| match &o.playout {
                Playout::Frame { duration, .. } => *duration == Duration::from_millis(frame_ms),
                _ => true,
            }));
        }
    }

    #[test]
    fn a_new_ssrc_resyncs_within_a_bounded_number_of_frames() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let a = Sender::new(8000, 20);
        let mut wire = a.stream(250, |_| 30_000);
        // The phone restarts its stream (new SSRC, seq and timestamp base)
        // right after packet 249 was sent.
        let b = Sender { ssrc: 0xb0b, seq0: 7, ts0: 3_000_000_000, start_us: 250 * 20_000, ..Sender::new(8000, 20) };
        wire.extend(b.stream(250, |_| 45_000));
        // A straggler of the old stream arrives after the switch.
        let mut straggler = a.packet(249, 0);
        straggler.arrive_us = 250 * 20_000 + 80_000;
        straggler.seq = a.seq0.wrapping_add(260);
        wire.push(straggler);
        let outs = run(&mut jb, base, wire, 3_000, 10_600_000);
        let ids: Vec<(u32, u64)> = outs
            .iter()
            .filter_map(|o| match &o.playout {
                Playout::Frame { payload, .. } => Some(id(payload)),
                _ => None,
            })
            .collect();
        let switch = ids.iter().position(|&(s, _)| s == 0xb0b).unwrap();
        assert!(ids[switch..].iter().all(|&(s, _)| s == 0xb0b), "nothing of the old stream after the switch");
        assert!(ids[..switch].windows(2).all(|w| w[0].1 < w[1].1));
        let new: Vec<u64> = ids[switch..].iter().map(|x| x.1).collect();
        assert_eq!(new, (0..250).collect::<Vec<_>>());
        // The first new frame plays within a few frames of arriving.
        let first_new = outs
            .iter()
            .find(|o| matches!(&o.playout, Playout::Frame { payload, .. } if id(payload).0 == 0xb0b))
            .unwrap();
        let arrived = 250 * 20_000 + 45_000;
        assert!(first_new.at_us - arrived <= 100_000, "resynced after {} us", first_new.at_us - arrived);
        // The old stream played up to the switch; what it still had buffered
        // then (at most the target delay) was dropped, and so was the
        // straggler.
        assert!(switch >= 247, "{switch}");
        let s = jb.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.discarded, 250 - switch as u64 + 1, "{s:?}");
        assert_eq!(jb.ssrc(), Some(0xb0b));
    }

    #[test]
    fn a_big_jump_in_the_same_ssrc_resyncs_after_a_second_packet() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let a = Sender::new(8000, 20);
        let mut wire = a.stream(100, |_| 30_000);
        // After a hold, the same SSRC comes back with numbering far away.
        let b = Sender { seq0: 40_000, ts0: 99, start_us: 100 * 20_000 + 3_000_000, ..Sender::new(8000, 20) };
        let resumed = b.stream(100, |_| 30_000);
        wire.extend(resumed);
        // A lone corrupt packet, before that, must not resync anything.
        wire.push(Pkt {
            arrive_us: 1_000_000,
            seq: 9,
            ts: 77,
            ssrc: SSRC,
            marker: false,
            payload: payload(SSRC, 9999),
        });
        let outs = run(&mut jb, base, wire, 3_000, 7_500_000);
        let p = played(&outs);
        assert_eq!(p, (0..100).chain(0..100).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.discarded, 1, "the corrupt packet");
        // The resumed stream started within a few frames of arriving.
        let first = outs.iter().filter(|o| matches!(o.playout, Playout::Frame { .. })).nth(100).unwrap();
        assert!(first.at_us - (b.start_us + 30_000) <= 100_000);
    }

    #[test]
    fn a_timestamp_jump_with_continuous_sequence_numbers_resyncs() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let a = Sender::new(8000, 20);
        let mut wire = a.stream(200, |_| 30_000);
        for p in wire.iter_mut().skip(100) {
            // The sender's timestamps jump back by an hour of audio.
            p.ts = p.ts.wrapping_sub(8000 * 3600);
        }
        let outs = run(&mut jb, base, wire, 3_000, 4_500_000);
        let p = played(&outs);
        // Both sides of the jump play; only what was buffered when the second
        // packet confirmed it (at most the target delay) is dropped.
        let s = jb.stats();
        assert_eq!(s.resyncs, 1);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!((100..200).all(|i| p.contains(&i)), "{p:?}");
        assert_eq!(p.len() as u64 + s.discarded, 200, "{s:?}");
        assert!(s.discarded <= 3);
    }

    #[test]
    fn jitter_spikes_grow_the_target_and_a_calm_period_shrinks_it() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let sender = Sender::new(8000, 20);
        let mut rng = Rng(7);
        // 10 s calm, a 240 ms stall (everything sent in it arrives at its
        // end, at 10.27 s), then 60 s calm again.
        let stall = 500u64..512;
        let wire = sender.stream(3500, |i| {
            let jitter = rng.below(3_000);
            if stall.contains(&i) {
                (stall.end - i) * 20_000 + 30_000 + jitter
            } else {
                30_000 + jitter
            }
        });
        let outs = run(&mut jb, base, wire, 1_000, 80_000_000);
        let target_at = |us: u64| outs.iter().find(|o| o.at_us >= us).unwrap().target_ms;
        let trace: Vec<(u64, u32)> = (0..70).map(|sec| (sec, target_at(sec * 1_000_000))).collect();
        assert!(target_at(9_900_000) <= 30, "calm: {trace:?}");
        assert!(target_at(10_300_000) >= 230, "grew at once for the stall: {trace:?}");
        assert!(target_at(12_000_000) >= 230, "held while the spike is in the window: {trace:?}");
        assert!(target_at(20_000_000) < target_at(13_000_000), "shrinking: {trace:?}");
        assert!(target_at(20_000_000) > 40, "slowly: {trace:?}");
        assert!(target_at(69_000_000) <= 25, "back near the minimum: {trace:?}");
        assert!(outs.iter().all(|o| (20..=500).contains(&o.target_ms)));
        // The stall itself was absorbed: the burst was played, not dropped.
        let s = jb.stats();
        assert_eq!((s.late, s.lost), (0, 0), "{s:?}");
        assert_eq!(played(&outs).len() as u64 + s.skipped, 3500);
        let before = outs.iter().filter(|o| o.at_us > 1_000_000 && o.at_us < 9_900_000).map(|o| o.delay_ms).max();
        assert!(before.unwrap() <= 70, "{before:?}");
        let after = outs.iter().filter(|o| o.at_us > 68_000_000).map(|o| o.delay_ms).max();
        assert!(after.unwrap() <= 60, "delay came back down: {after:?}");
    }

    /// Ten minutes of a sender whose clock runs at `rate_ppm` of ours, with
    /// 0-15 ms of jitter; with `vad`, 1 s talkspurts and 1 s silences (no
    /// packets; timestamps go on, sequence numbers do not skip, marker on
    /// each talkspurt start). Returns the stats, the playout, the packets
    /// sent and the single concealed frames between two played ones (speech
    /// stretched).
    fn drift(rate_ppm: u64, vad: bool) -> (JitterStats, Vec<Out>, u64, u64) {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sender = Sender::new(8000, 20);
        sender.rate_ppm = rate_ppm;
        let mut rng = Rng(rate_ppm);
        let mut wire = sender.stream(30_000, |_| 30_000 + rng.below(15_000));
        if vad {
            wire.retain(|p| id(&p.payload).1 % 100 < 50);
            for p in wire.iter_mut() {
                let i = id(&p.payload).1;
                let (cycle, in_cycle) = (i / 100, i % 100);
                p.seq = sender.seq0.wrapping_add((cycle * 50 + in_cycle) as u16);
                p.marker = in_cycle == 0;
            }
        }
        let sent = wire.len() as u64;
        let outs = run(&mut jb, base, wire, 1_000, 700_000_000);
        let speech_stretches = outs
            .windows(3)
            .filter(|w| {
                matches!(w[0].playout, Playout::Frame { .. })
                    && matches!(w[1].playout, Playout::Lost { next: None, .. })
                    && matches!(w[2].playout, Playout::Frame { .. })
            })
            .count() as u64;
        (jb.stats(), outs, sent, speech_stretches)
    }

    #[test]
    fn sender_clock_drift_keeps_the_delay_bounded() {
        for rate in [990_000u64, 1_010_000] {
            let (s, outs, sent, _) = drift(rate, false);
            let p = played(&outs);
            assert!(p.windows(2).all(|w| w[0] < w[1]));
            // Bounded: after the first seconds the delay never leaves a band
            // around the target, and the buffer never holds more than that.
            let settled: Vec<&Out> = outs.iter().filter(|o| o.at_us > 5_000_000 && o.at_us < 599_000_000).collect();
            let max_delay = settled.iter().map(|o| o.delay_ms).max().unwrap();
            let min_delay = settled.iter().map(|o| o.delay_ms).min().unwrap();
            let max_buffered = settled.iter().map(|o| o.buffered_ms).max().unwrap();
            assert!(max_delay <= 120 && min_delay >= 20, "rate {rate}: delay {min_delay}..{max_delay} ms; {s:?}");
            assert!(max_buffered <= 140, "rate {rate}: buffered up to {max_buffered} ms");
            assert!(s.target_delay_ms <= 60, "{s:?}");
            // rate < 1e6: the sender's clock is slow, packets come too
            // rarely, so the buffer stretches; fast: it skips. Either way
            // about the drift (1 % of frames), counted.
            let corrections = if rate < 1_000_000 { s.stretched } else { s.skipped };
            assert!(corrections >= sent / 200 && corrections <= sent / 50, "rate {rate}: {s:?}");
            assert!(s.late <= sent / 1000, "rate {rate}: {s:?}");
            assert_eq!(p.len() as u64 + s.skipped + s.late + s.lost, sent, "rate {rate}: every packet accounted for");
            assert!(p.len() as u64 >= sent * 98 / 100);
        }
    }

    #[test]
    fn drift_is_corrected_in_the_silences_when_there_are_some() {
        for rate in [990_000u64, 1_010_000] {
            let (s, outs, sent, speech_stretches) = drift(rate, true);
            let (c, _, _, continuous_stretches) = drift(rate, false);
            eprintln!(
                "rate {rate}: vad {s:?} speech stretches {speech_stretches}; continuous {c:?} {continuous_stretches}"
            );
            let p = played(&outs);
            assert!(s.silence_cut + s.stretched >= 100, "rate {rate}: {s:?}");
            // Speech is cut or stretched far less often than without
            // silences, where it is the only way.
            if rate < 1_000_000 {
                assert!(speech_stretches * 5 <= continuous_stretches, "rate {rate}: {speech_stretches} {s:?}");
            } else {
                assert!(s.skipped * 5 <= c.skipped, "rate {rate}: {s:?} vs {c:?}");
            }
            assert_eq!(p.len() as u64 + s.skipped + s.late + s.lost, sent, "rate {rate}: {s:?}");
            assert!(s.late <= sent / 1000, "rate {rate}: {s:?}");
            // While the sender is silent the held position makes the delay
            // look long; what counts is the delay audio is played with.
            let settled = outs
                .iter()
                .filter(|o| o.at_us > 5_000_000 && o.at_us < 599_000_000 && matches!(o.playout, Playout::Frame { .. }));
            let max_delay = settled.map(|o| o.delay_ms).max().unwrap();
            assert!(max_delay <= 150, "rate {rate}: {max_delay}");
        }
    }

    #[test]
    fn packets_of_10_to_60_ms_play_with_their_durations() {
        for frame_ms in [10u64, 20, 30, 40, 60] {
            let base = crate::test_support::origin();
            let mut jb = JitterBuffer::new(JitterConfig::for_codec(Codec::Opus));
            let sender = Sender::new(48000, frame_ms);
            let n = 6000 / frame_ms;
            let mut rng = Rng(frame_ms);
            let outs = run(
                &mut jb,
                base,
                sender.stream(n, |_| 20_000 + rng.below(10_000)),
                500,
                n * frame_ms * 1000 + 500_000,
            );
            let p = played(&outs);
            let s = jb.stats();
            assert_eq!(p.len() as u64 + s.skipped, n, "frame {frame_ms}: {s:?}");
            assert_eq!((s.lost, s.late), (0, 0), "frame {frame_ms}: {s:?}");
            for o in &outs {
                if let Playout::Frame { .. } = o.playout {
                    assert_eq!(o.playout.samples(8000) as u64, frame_ms * 8);
                }
            }
        }
    }

    #[test]
    fn memory_is_bounded_when_nobody_pops() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(JitterConfig { max_packets: 64, ..JitterConfig::default() });
        for i in 0..1000u32 {
            jb.push(base + Duration::from_millis(u64::from(i) * 20), i as u16, i * 160, SSRC, false, vec![0u8; 160]);
            assert!(jb.len() <= 64);
        }
        assert_eq!(jb.stats().overflow, 1000 - 64);
        // Playout then starts from what is left, in order, and catches up.
        let mut t = 20_000;
        let mut last = None;
        for _ in 0..100 {
            if let Playout::Frame { seq, .. } = jb.pop(base + Duration::from_millis(t)) {
                assert!(last.is_none_or(|l: u16| seq > l));
                last = Some(seq);
            }
            t += 20;
        }
        assert!(last.is_some());
        assert!(jb.stats().buffered_ms <= 600);
    }

    #[test]
    fn starvation_conceals_briefly_then_plays_silence_and_recovers() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 40));
        let a = Sender::new(8000, 20);
        let mut wire = a.stream(100, |_| 30_000);
        // The sender goes quiet for 3 s and comes back on the same timeline.
        let b =
            Sender { seq0: a.seq0.wrapping_add(100), ts0: a.ts0.wrapping_add(250 * 160), start_us: 250 * 20_000, ..a };
        let mut back = b.stream(100, |_| 30_000);
        back[0].marker = true;
        for p in back.iter_mut() {
            p.payload = payload(SSRC, 100 + id(&p.payload).1);
        }
        wire.extend(back);
        let outs = run(&mut jb, base, wire, 3_000, 7_500_000);
        assert_eq!(played(&outs), (0..200).collect::<Vec<_>>());
        let is_frame = |o: &Out, n: u64| matches!(&o.playout, Playout::Frame { payload, .. } if id(payload).1 == n);
        let end = outs.iter().position(|o| is_frame(o, 99)).unwrap();
        let resume = outs.iter().position(|o| is_frame(o, 100)).unwrap();
        let gap = &outs[end + 1..resume];
        let conceal = gap.iter().take_while(|o| matches!(o.playout, Playout::Lost { next: None, .. })).count();
        assert!((1..=5).contains(&conceal), "concealed {conceal} frames");
        assert!(gap[conceal..].iter().all(|o| matches!(o.playout, Playout::Empty { .. })));
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.skipped, s.resyncs), (0, 0, 0, 0));
        // Back at the same delay as before the silence.
        let after = outs.iter().filter(|o| o.at_us > 6_000_000 && o.at_us < 7_000_000).map(|o| o.delay_ms).max();
        assert!(after.unwrap() <= 70, "{after:?}");
    }

    #[test]
    fn push_packet_reads_a_parsed_rtp_packet() {
        let base = crate::test_support::origin();
        let mut jb = JitterBuffer::new(cfg(8000, 20));
        let mut raw = vec![0x80, 0x80, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef];
        raw.extend_from_slice(&[0xd5; 160]);
        let packet = RtpPacket::parse(&raw).unwrap();
        assert_eq!(jb.push_packet(base, &packet), PushOutcome::Buffered);
        assert_eq!(jb.ssrc(), Some(0xdead_beef));
        // One packet: the frame duration is unknown, so playout waits up to a
        // longest frame more before taking the usual 20 ms.
        let out =
            (0..20).map(|i| jb.pop(base + Duration::from_millis(20 * i))).find(|p| matches!(p, Playout::Frame { .. }));
        assert_eq!(
            out,
            Some(Playout::Frame {
                payload: Bytes::from(vec![0xd5; 160]),
                seq: 0x1234,
                timestamp: 320,
                marker: true,
                duration: Duration::from_millis(20),
            })
        );
    }

    #[test]
    fn zero_length_payloads_and_huge_jumps_are_handled() {
        let base = crate::test_support::origin();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(at(0), 0, 0, SSRC, false, Bytes::new());
        jb.push(at(20), 1, 160, SSRC, false, Bytes::new());
        let frames: Vec<Playout> = (0..10).map(|i| jb.pop(at(20 * i))).collect();
        assert!(frames.iter().any(|p| matches!(p, Playout::Frame { payload, .. } if payload.is_empty())));
        for (i, ts) in [u32::MAX, 0, 1 << 31, (1 << 31) + 1, 5, u32::MAX - 1].into_iter().enumerate() {
            jb.push(at(300 + i as u64), 2 + i as u16, ts, SSRC, true, vec![1]);
            jb.pop(at(300 + i as u64));
        }
        jb.push(at(400), 30_000, 0, SSRC, false, vec![]);
        jb.push(at(400), 30_001, u32::MAX, SSRC, false, vec![]);
        jb.push(at(400), 60_000, 1 << 31, SSRC, false, vec![]);
        // Time that does not move, or moves back, is taken as standing still.
        jb.pop(at(400));
        jb.pop(base);
        jb.pop(at(100_000_000));
        let s = jb.stats();
        assert!(s.target_delay_ms <= 500 && s.buffered_ms <= 100_000);
        // Degenerate configurations still work.
        for config in [
            JitterConfig { clock_rate: 0, max_packets: 0, ..JitterConfig::default() },
            JitterConfig {
                clock_rate: u32::MAX,
                min_delay: Duration::MAX,
                max_delay: Duration::ZERO,
                initial_delay: Duration::MAX,
                max_packets: 1,
            },
        ] {
            let mut jb = JitterBuffer::new(config);
            for i in 0..50u16 {
                jb.push(at(u64::from(i)), i, u32::from(i) * 160, SSRC, false, vec![0]);
                assert!(jb.pop(at(u64::from(i))).duration() > Duration::ZERO);
            }
        }
    }

    #[test]
    fn hostile_input_never_panics_and_stays_bounded() {
        let base = crate::test_support::origin();
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut jb = JitterBuffer::new(JitterConfig {
                max_packets: 32,
                ..JitterConfig::new(if seed % 2 == 0 { 48000 } else { 8000 })
            });
            let mut t_us = 0u64;
            let (mut seq, mut ts) = (rng.next() as u16, rng.next() as u32);
            for _ in 0..20_000 {
                t_us += rng.below(30_000);
                // Mostly a plausible stream, with every field sometimes garbage.
                let r = rng.below(100);
                if r < 60 {
                    seq = seq.wrapping_add(1 + (rng.below(3) == 0) as u16);
                    ts = ts.wrapping_add(160 * (1 + rng.below(4) as u32));
                } else if r < 70 {
                    seq = rng.next() as u16;
                } else if r < 80 {
                    ts = rng.next() as u32;
                } else if r < 85 {
                    seq = seq.wrapping_sub(rng.below(200) as u16);
                }
                let ssrc = if rng.below(50) == 0 { rng.next() as u32 } else { SSRC + (rng.below(40) == 0) as u32 };
                let len = rng.below(5) as usize * rng.below(400) as usize;
                let now = if rng.below(100) == 0 { base } else { base + Duration::from_micros(t_us) };
                jb.push(now, seq, ts, ssrc, rng.below(8) == 0, vec![0x55; len]);
                for _ in 0..rng.below(3) {
                    let p = jb.pop(base + Duration::from_micros(t_us + rng.below(40_000)));
                    assert!(p.duration() > Duration::ZERO && p.duration() <= Duration::from_secs(1));
                }
                assert!(jb.len() <= 32);
                let s = jb.stats();
                assert!((20..=500).contains(&s.target_delay_ms), "{s:?}");
            }
        }
    }
}
