//! The media engine of one softphone call: [`MediaSession`] turns captured
//! audio into RTP, and received RTP into audio to play, with everything a
//! call needs in between (framing, encoding, SRTP, RFC 4733 digits, the
//! jitter buffer, loss concealment, RTCP reports with loss and round-trip
//! figures, and mid-call renegotiation).
//!
//! It exists so that the SDK's per-call driver only moves bytes and samples:
//! the driver owns the UDP socket and the sound card, and calls in with what
//! they produced and the time; the session hands back datagrams to send
//! ([`MediaSession::poll_transmit`]), events ([`MediaSession::poll_event`])
//! and when it next needs to be woken ([`MediaSession::poll_timeout`]). The
//! pieces it composes live in their own modules and are only wired here;
//! what this module owns is the state that spans them: our outgoing stream's
//! SSRC, sequence number and timestamp (shared by audio and RFC 4733 events,
//! as RFC 4733 §2.1 wants), which remote source is being played, and the
//! timers. Sans-IO like the rest of the crate: no sockets, threads, clock
//! reads or randomness (stream identifiers and report-interval jitter come
//! from the caller's seed), and no datagram can make it panic.
//!
//! Muting sends encoded silence rather than nothing. A silent stream would
//! let the NAT binding toward the peer expire, trip the RTP timeout many
//! PBXs hang up on, and make the far jitter buffer restart on unmute; a
//! silent G.711 frame costs the same bandwidth as speech, an Opus one a few
//! bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::seeds::Seeds;
use crate::codec::{Codec, Decoder, Encoder, FRAME_SAMPLES, MAX_OPUS_PACKET_SAMPLES, PCM_RATE};
use crate::dtmf::{char_to_event, DtmfDetector, DtmfGenerator};
use crate::error::MediaError;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::pipeline::LegMedia;
use crate::rtp::{classify, PacketClass, RtpPacket};
use crate::srtp::{MasterKey, SrtpContext, SrtpSuite};
use crate::stats::{
    build_compound, ntp_from_unix, parse_packets, ReceiverStats, ReportBlock, ReportTimer, RtcpPacket, SdesChunk,
    SenderStats, NOMINAL_INTERVAL,
};
use crate::transcode::write_rtp;

/// A pause in capture longer than this is a silence (the driver stopped the
/// microphone): the timestamp skips the pause and the next packet carries
/// the marker, so the far jitter buffer sees a talkspurt, not a stall.
const CAPTURE_GAP: Duration = Duration::from_millis(200);
/// Datagrams held for a driver that does not poll; past this the oldest go.
const MAX_TRANSMITS: usize = 1024;
/// Events held likewise; hostile input must not grow memory.
const MAX_EVENTS: usize = 64;
/// Decoded audio held ahead of the sound card at most (a peer sending more
/// audio than time passes would otherwise build unbounded latency).
const MAX_PLAYOUT_AHEAD: usize = 4 * MAX_OPUS_PACKET_SAMPLES;
/// Digits waiting behind the one being sent.
const MAX_PENDING_DIGITS: usize = 32;
/// Digit durations are held to what keypads produce (and what fits the
/// 16-bit RFC 4733 duration at 48 kHz).
const DTMF_MIN_MS: u32 = 40;
const DTMF_MAX_MS: u32 = 1000;
/// Default for [`SessionConfig::stream_timeout`].
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a [`MediaSession`] that do not come from the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The SDES CNAME in our RTCP (RFC 7022: unique per endpoint).
    pub cname: String,
    /// Picks our SSRC, first sequence number and timestamp (RFC 3550 §5.1
    /// wants them random) and the report-interval jitter. Give it random bits.
    pub seed: u64,
    /// Wall-clock time since the Unix epoch at the `now` the session is
    /// created with, for the NTP timestamps of SRs. Only the peer's RTT
    /// arithmetic reads them, so an inexact value does no harm.
    pub wall_clock: Duration,
    /// Nominal RTCP report interval (RFC 3550 §6.2: 5 s).
    pub rtcp_interval: Duration,
    /// RTCP goes to the RTP address (RFC 5761) rather than the RTCP port.
    pub rtcp_mux: bool,
    /// Report [`SessionEvent::StreamTimeout`] after this long without RTP.
    pub stream_timeout: Option<Duration>,
    /// Opus encoder bitrate, bit/s (what our SDP's `maxaveragebitrate`
    /// says); `None` leaves libopus's default for the engine's rate.
    pub opus_bitrate: Option<i32>,
}

/// Default for [`SessionConfig::opus_bitrate`]: speech at a rate that
/// suits mobile networks, with room for in-band FEC.
pub const DEFAULT_OPUS_BITRATE: i32 = 24_000;

impl SessionConfig {
    pub fn new(cname: impl Into<String>, seed: u64) -> Self {
        Self {
            cname: cname.into(),
            seed,
            wall_clock: Duration::ZERO,
            rtcp_interval: NOMINAL_INTERVAL,
            rtcp_mux: false,
            stream_timeout: Some(DEFAULT_STREAM_TIMEOUT),
            opus_bitrate: Some(DEFAULT_OPUS_BITRATE),
        }
    }
}

/// Whether a datagram is RTP or RTCP (the driver may send them from
/// different ports when RTCP is not multiplexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    Rtp,
    Rtcp,
}

/// A datagram to send. `to` is the address the SDP gave (RTP address, or
/// RTCP address unless multiplexed); `None` when it gave none, and a driver
/// doing symmetric RTP may send where packets come from instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub kind: TransmitKind,
    pub to: Option<SocketAddr>,
    pub bytes: Vec<u8>,
}

/// Something the driver (and through it the application) should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer pressed a key (RFC 4733), reported once per press.
    DtmfReceived { digit: char, duration_ms: u32 },
    /// The audio being played now comes from another source (the peer
    /// restarted its stream, or a transfer behind a B2BUA).
    RemoteSsrcChanged { old: u32, new: u32 },
    /// No RTP for [`SessionConfig::stream_timeout`]; reported once until
    /// RTP comes again.
    StreamTimeout { silent_for: Duration },
    /// The peer sent an RTCP BYE for its stream.
    RemoteBye { ssrc: u32 },
}

/// Figures for a call-quality display or a log line at hang-up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionStats {
    /// RTP packets sent (audio and digits), and their bytes on the wire
    /// (header and SRTP tag included).
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// RTP packets accepted (authenticated, parsed, of a negotiated payload
    /// type), and their bytes on the wire.
    pub packets_received: u64,
    pub bytes_received: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    /// Cumulative loss of the stream we receive (RFC 3550 A.3), percent.
    pub loss_percent: f64,
    /// Interarrival jitter of the stream we receive (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from the peer's last report that echoed our SR.
    pub rtt_ms: Option<f64>,
    /// Cumulative loss of our stream as the peer's last report says.
    pub remote_loss_percent: Option<f64>,
    /// Jitter of our stream as the peer's last report says.
    pub remote_jitter_ms: Option<f64>,
    /// Frames of audio made up by loss concealment.
    pub concealed_frames: u64,
    /// Received payloads the decoder refused (concealed instead).
    pub decode_errors: u64,
    /// SRTP/SRTCP packets dropped for a bad tag, and as replays (network
    /// duplicates of SRTP land here too).
    pub srtp_auth_failures: u64,
    pub srtp_replays: u64,
    /// Datagrams dropped as unparseable (after SRTP, if keyed).
    pub malformed: u64,
    /// Datagrams dropped as not ours: STUN, DTLS, unknown payload types.
    pub ignored: u64,
    pub dtmf_sent: u64,
    pub dtmf_received: u64,
    /// Datagrams or events dropped because the driver did not poll.
    pub dropped_outputs: u64,
    pub jitter_buffer: JitterStats,
}

/// One digit's RFC 4733 train being paced out.
#[derive(Debug)]
struct DtmfTrain {
    /// Packets (without their sequence number yet) and when each is due.
    packets: VecDeque<(Instant, Vec<u8>)>,
    /// When the tone stops: audio is held back until then, since the event
    /// stands for that stretch of the stream (RFC 4733 §2.5.1.2).
    tone_end: Instant,
    /// Where audio resumes on the timestamp line: the event's start plus
    /// its duration.
    resume_ts: u32,
    /// The event's start, for the SR timestamp mapping.
    started: Instant,
    timestamp: u32,
    audio_resumed: bool,
}

type Key = Option<(SrtpSuite, MasterKey)>;

/// An encoder for `codec`, at `opus_bitrate` when it is Opus.
fn new_encoder(codec: Codec, opus_bitrate: Option<i32>) -> Result<Encoder, MediaError> {
    let mut encoder = Encoder::new(codec)?;
    if let Some(bits) = opus_bitrate {
        encoder.set_opus_bitrate(bits)?;
    }
    Ok(encoder)
}

/// One call's media; see the module notes.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    start: Instant,
    seeds: Seeds,
    remote: LegMedia,
    codec: Codec,
    pt: u8,
    te_pt: Option<u8>,

    // Send side.
    encoder: Encoder,
    ssrc: u32,
    seq: u16,
    ts: u32,
    first_seq: u16,
    capture: Vec<i16>,
    last_capture: Option<Instant>,
    marker_next: bool,
    muted: bool,
    sender: SenderStats,
    sent_since_report: bool,
    srtp_out: Option<SrtpContext>,
    out_key: Key,
    dtmf: Option<DtmfTrain>,
    dtmf_pending: VecDeque<(char, u32)>,

    // Receive side.
    decoder: Decoder,
    jitter: JitterBuffer,
    receiver: ReceiverStats,
    detector: Option<DtmfDetector>,
    remote_ssrc: Option<u32>,
    srtp_in: Option<SrtpContext>,
    in_key: Key,
    /// Decoded audio not yet handed to the sound card.
    playout: Vec<i16>,
    last_rx: Instant,
    timeout_reported: bool,

    // RTCP.
    timer: ReportTimer,
    rtt: Option<Duration>,
    remote_block: Option<ReportBlock>,

    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    /// The session's own counters; the figures of the parts are filled in
    /// by [`Self::stats`].
    counters: SessionStats,
}

fn srtp_context(key: &Key) -> Option<SrtpContext> {
    key.as_ref().map(|(suite, k)| SrtpContext::new(*suite, k))
}

/// 8 kHz samples in a stretch the jitter buffer returned, bounded (its
/// stretches are frames, at most 120 ms).
fn samples_in(d: Duration) -> usize {
    let n = (d.as_nanos().saturating_mul(u128::from(PCM_RATE)) + 500_000_000) / 1_000_000_000;
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_OPUS_PACKET_SAMPLES)
}

fn no_codec() -> MediaError {
    MediaError::Codec("no codec negotiated")
}

impl MediaSession {
    /// A session for the media negotiated with the peer. `media` is the
    /// peer's side as [`LegMedia`] describes it: the codec and payload type
    /// (one payload type, used both ways), the telephone-event payload type,
    /// `srtp_recv` (the peer's a=crypto key, which we decrypt with),
    /// `srtp_send` (ours, which we encrypt with) and the peer's addresses.
    /// Fails without a codec, or when libopus cannot be set up.
    pub fn new(media: &LegMedia, config: SessionConfig, now: Instant) -> Result<Self, MediaError> {
        let (codec, pt) = media.codec.ok_or_else(no_codec)?;
        let mut seeds = Seeds(config.seed);
        let ssrc = seeds.next() as u32;
        let seq = seeds.next() as u16;
        let ts = seeds.next() as u32;
        let mut timer = ReportTimer::new(config.rtcp_interval);
        timer.start(now, seeds.unit());
        Ok(Self {
            start: now,
            remote: media.clone(),
            codec,
            pt: pt & 0x7f,
            te_pt: media.telephone_event.map(|p| p & 0x7f),
            encoder: new_encoder(codec, config.opus_bitrate)?,
            ssrc,
            seq,
            ts,
            first_seq: seq,
            capture: Vec::with_capacity(FRAME_SAMPLES),
            last_capture: None,
            marker_next: true,
            muted: false,
            sender: SenderStats::new(codec.clock_rate()),
            sent_since_report: false,
            srtp_out: srtp_context(&media.srtp_send),
            out_key: media.srtp_send.clone(),
            dtmf: None,
            dtmf_pending: VecDeque::new(),
            decoder: Decoder::new(codec)?,
            jitter: JitterBuffer::new(JitterConfig::for_codec(codec)),
            receiver: ReceiverStats::new(codec.clock_rate()),
            detector: media.telephone_event.map(|p| DtmfDetector::with_clock_rate(p & 0x7f, codec.clock_rate())),
            remote_ssrc: None,
            srtp_in: srtp_context(&media.srtp_recv),
            in_key: media.srtp_recv.clone(),
            playout: Vec::new(),
            last_rx: now,
            timeout_reported: false,
            timer,
            rtt: None,
            remote_block: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: SessionStats::default(),
            seeds,
            config,
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The SSRC of the stream being played, once one has arrived.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    pub fn codec(&self) -> (Codec, u8) {
        (self.codec, self.pt)
    }

    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// Mutes or unmutes the microphone: while muted, captured audio is
    /// replaced by silence (sent, not skipped; see the module notes).
    pub fn mute(&mut self, muted: bool) {
        self.muted = muted;
    }

    // -----------------------------------------------------------------------
    // Renegotiation

    /// Applies a new offer/answer (re-INVITE, UPDATE) mid-call. SRTP
    /// contexts whose key did not change are kept, so their rollover
    /// counters and replay windows carry on (see
    /// [`crate::Pipeline::rebuilt`]). The encoder, decoder and jitter buffer
    /// are replaced only when the codec changes; when its RTP clock rate
    /// changes too, our stream gets a new SSRC (RFC 7160 §4.1 wants one per
    /// clock rate) and a digit being sent is abandoned. On error nothing
    /// changed.
    pub fn update(&mut self, now: Instant, media: &LegMedia) -> Result<(), MediaError> {
        let (codec, pt) = media.codec.ok_or_else(no_codec)?;
        if codec != self.codec {
            // Fallible parts first, so that an error leaves the call as it was.
            let encoder = new_encoder(codec, self.config.opus_bitrate)?;
            let decoder = Decoder::new(codec)?;
            self.encoder = encoder;
            self.decoder = decoder;
            self.jitter = JitterBuffer::new(JitterConfig::for_codec(codec));
            if codec.clock_rate() != self.codec.clock_rate() {
                self.ssrc = self.seeds.next() as u32;
                self.seq = self.seeds.next() as u16;
                self.ts = self.seeds.next() as u32;
                self.first_seq = self.seq;
                self.sender = SenderStats::new(codec.clock_rate());
                self.sent_since_report = false;
                self.receiver = ReceiverStats::new(codec.clock_rate());
                self.remote_block = None;
                self.dtmf = None;
            }
            self.marker_next = true;
        }
        let te_pt = media.telephone_event.map(|p| p & 0x7f);
        if te_pt != self.te_pt || codec.clock_rate() != self.codec.clock_rate() {
            self.detector = te_pt.map(|p| DtmfDetector::with_clock_rate(p, codec.clock_rate()));
        }
        if te_pt.is_none() {
            self.dtmf = None;
            self.dtmf_pending.clear();
        }
        if media.srtp_recv != self.in_key {
            self.srtp_in = srtp_context(&media.srtp_recv);
            self.in_key = media.srtp_recv.clone();
        }
        if media.srtp_send != self.out_key {
            self.srtp_out = srtp_context(&media.srtp_send);
            self.out_key = media.srtp_send.clone();
        }
        self.codec = codec;
        self.pt = pt & 0x7f;
        self.te_pt = te_pt;
        self.remote = media.clone();
        // New media may take a moment to start: the timeout counts afresh.
        self.last_rx = now;
        self.timeout_reported = false;
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Send path

    /// Takes captured 8 kHz mono audio, any amount; every complete 20 ms
    /// frame is encoded and queued as an RTP datagram.
    pub fn push_capture(&mut self, now: Instant, pcm: &[i16]) {
        self.flush_dtmf(now);
        if let Some(last) = self.last_capture {
            let pause = now.saturating_duration_since(last);
            if pause > CAPTURE_GAP {
                let samples = pause.as_millis().saturating_mul(u128::from(PCM_RATE / 1000));
                let samples = usize::try_from(samples).unwrap_or(usize::MAX);
                self.ts = self.ts.wrapping_add(self.codec.samples_to_timestamp(samples));
                self.marker_next = true;
            }
        }
        self.last_capture = Some(now);
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = (FRAME_SAMPLES - self.capture.len()).min(rest.len());
            self.capture.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.capture.len() == FRAME_SAMPLES {
                let frame = std::mem::take(&mut self.capture);
                self.send_frame(now, &frame);
                self.capture = frame;
                self.capture.clear();
            }
        }
    }

    fn send_frame(&mut self, now: Instant, frame: &[i16]) {
        let units = self.codec.samples_to_timestamp(frame.len());
        if let Some(train) = &mut self.dtmf {
            if now < train.tone_end {
                // The event stands for this audio.
                self.ts = self.ts.wrapping_add(units);
                return;
            }
            Self::resume_audio(&mut self.ts, &mut self.marker_next, train);
        }
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(units);
        let mut payload = Vec::with_capacity(FRAME_SAMPLES);
        let result = if self.muted {
            self.encoder.encode(&[0; FRAME_SAMPLES], &mut payload)
        } else {
            self.encoder.encode(frame, &mut payload)
        };
        if result.is_err() {
            return;
        }
        let marker = std::mem::take(&mut self.marker_next);
        let rtp = write_rtp(marker, self.pt, self.seq, ts, self.ssrc, &payload);
        self.sender.on_rtp_sent(now, ts, payload.len());
        self.send_rtp(rtp);
    }

    /// Gives `rtp` the next sequence number, protects and queues it.
    fn send_rtp(&mut self, mut rtp: Vec<u8>) {
        if let Some(seq) = rtp.get_mut(2..4) {
            seq.copy_from_slice(&self.seq.to_be_bytes());
        }
        self.seq = self.seq.wrapping_add(1);
        let bytes = match &mut self.srtp_out {
            Some(ctx) => match ctx.protect_rtp(&rtp) {
                Ok(b) => b,
                // Only a key that does not fit its suite, or one worn out
                // after 2^48 packets: nothing to send.
                Err(_) => return,
            },
            None => rtp,
        };
        self.sent_since_report = true;
        self.counters.packets_sent += 1;
        self.counters.bytes_sent += bytes.len() as u64;
        let to = self.remote.rtp_addr;
        self.queue_transmit(Transmit { kind: TransmitKind::Rtp, to, bytes });
    }

    fn queue_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.transmits.pop_front();
            self.counters.dropped_outputs += 1;
        }
        self.transmits.push_back(t);
    }

    fn queue_event(&mut self, e: SessionEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.counters.dropped_outputs += 1;
        }
        self.events.push_back(e);
    }

    /// Sends a digit as RFC 4733 events in our stream, paced 50 ms apart
    /// from [`Self::handle_timeout`]; a digit asked for while another is
    /// being sent follows it. The duration is held to 40..=1000 ms. Errors
    /// on a character that is no DTMF digit, and when the peer did not
    /// negotiate telephone-event: the caller then sends SIP INFO.
    pub fn send_dtmf(&mut self, now: Instant, digit: char, duration_ms: u32) -> Result<(), MediaError> {
        if self.te_pt.is_none() {
            return Err(MediaError::BadDtmf("telephone-event not negotiated; use SIP INFO"));
        }
        if char_to_event(digit).is_none() {
            return Err(MediaError::BadDtmf("not a DTMF digit"));
        }
        if self.dtmf_pending.len() >= MAX_PENDING_DIGITS {
            return Err(MediaError::BadDtmf("too many digits queued"));
        }
        self.dtmf_pending.push_back((digit, duration_ms.clamp(DTMF_MIN_MS, DTMF_MAX_MS)));
        self.flush_dtmf(now);
        Ok(())
    }

    /// Builds the train of the next queued digit, starting at `at`.
    fn start_digit(&mut self, at: Instant) {
        let Some(pt) = self.te_pt else { return };
        let Some((digit, duration_ms)) = self.dtmf_pending.pop_front() else { return };
        let clock = self.codec.clock_rate();
        // The event starts where the audio stream is now (RFC 4733 §2.3.1).
        let timestamp = self.ts;
        let generator = DtmfGenerator::new(pt, clock, self.ssrc);
        // Sequence numbers are given at send time, interleaved with audio.
        let Ok(packets) = generator.packets(digit, duration_ms, 0, timestamp) else { return };
        let due = |ms: u32| at.checked_add(Duration::from_millis(u64::from(ms))).unwrap_or(at);
        self.dtmf = Some(DtmfTrain {
            packets: packets.into_iter().map(|p| (due(p.send_after_ms), p.rtp)).collect(),
            tone_end: due(duration_ms),
            resume_ts: timestamp.wrapping_add(self.codec.samples_to_timestamp(duration_ms as usize * 8)),
            started: at,
            timestamp,
            audio_resumed: false,
        });
        self.counters.dtmf_sent += 1;
    }

    /// Sends the digit packets due by `now`, and starts queued digits (the
    /// next one right after the last end packet of the previous one, which
    /// leaves the 100 ms of end retransmissions as the inter-digit gap).
    fn flush_dtmf(&mut self, now: Instant) {
        loop {
            if self.dtmf.is_none() {
                if self.dtmf_pending.is_empty() {
                    return;
                }
                // Pops one digit; one that cannot be generated is skipped.
                self.start_digit(now);
                continue;
            }
            let Some(train) = &mut self.dtmf else { return };
            let Some(&(due, _)) = train.packets.front() else {
                self.finish_digit();
                continue;
            };
            if due > now {
                return;
            }
            let (started, timestamp) = (train.started, train.timestamp);
            let Some((_, rtp)) = train.packets.pop_front() else { return };
            // Map the event's timestamp to its start for the SR.
            self.sender.on_rtp_sent(started, timestamp, 4);
            self.send_rtp(rtp);
        }
    }

    /// Where audio resumes after a digit: past the event's stretch of the
    /// timestamp line, as a new talkspurt.
    fn resume_audio(ts: &mut u32, marker: &mut bool, train: &mut DtmfTrain) {
        if !train.audio_resumed {
            train.audio_resumed = true;
            if (train.resume_ts.wrapping_sub(*ts) as i32) > 0 {
                *ts = train.resume_ts;
            }
            *marker = true;
        }
    }

    fn finish_digit(&mut self) {
        if let Some(mut train) = self.dtmf.take() {
            Self::resume_audio(&mut self.ts, &mut self.marker_next, &mut train);
        }
    }

    // -----------------------------------------------------------------------
    // Receive path

    /// Takes a datagram from the media port: RTP or RTCP (plain or SRTP as
    /// negotiated). Anything else, unauthenticated or malformed is counted
    /// and dropped.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        match classify(bytes) {
            PacketClass::Rtp => self.handle_rtp(now, bytes),
            PacketClass::Rtcp => self.handle_rtcp(now, bytes),
            _ => self.counters.ignored += 1,
        }
    }

    fn count_srtp_error(&mut self, e: MediaError) {
        match e {
            MediaError::SrtpAuthFailed => self.counters.srtp_auth_failures += 1,
            MediaError::SrtpReplay { .. } => self.counters.srtp_replays += 1,
            _ => self.counters.malformed += 1,
        }
    }

    fn handle_rtp(&mut self, now: Instant, bytes: &[u8]) {
        let plain = match &mut self.srtp_in {
            Some(ctx) => match ctx.unprotect_rtp(bytes) {
                Ok(p) => p,
                Err(e) => return self.count_srtp_error(e),
            },
            None => bytes.to_vec(),
        };
        let Ok(packet) = RtpPacket::parse(&plain) else {
            self.counters.malformed += 1;
            return;
        };
        let h = *packet.header();
        let is_event = self.te_pt == Some(h.payload_type);
        if h.payload_type != self.pt && !is_event {
            self.counters.ignored += 1;
            return;
        }
        self.counters.packets_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        self.last_rx = now;
        self.timeout_reported = false;
        if is_event {
            // Events share the stream's sequence numbers but carry no frame
            // for the jitter buffer.
            if self.remote_ssrc == Some(h.ssrc) {
                self.receiver.on_rtp(now, h.sequence, h.timestamp);
            }
            if let Some(det) = &mut self.detector {
                let mut digits = Vec::new();
                if let Some(d) = det.push(&plain) {
                    digits.push(d);
                }
                while let Some(d) = det.poll() {
                    digits.push(d);
                }
                for (digit, duration_ms) in digits {
                    self.counters.dtmf_received += 1;
                    self.queue_event(SessionEvent::DtmfReceived { digit, duration_ms });
                }
            }
            return;
        }
        let outcome = self.jitter.push_packet(now, &packet);
        if outcome == PushOutcome::Stale {
            return;
        }
        match self.remote_ssrc {
            Some(old) if old != h.ssrc => {
                self.remote_ssrc = Some(h.ssrc);
                self.receiver = ReceiverStats::new(self.codec.clock_rate());
                self.queue_event(SessionEvent::RemoteSsrcChanged { old, new: h.ssrc });
            }
            None => self.remote_ssrc = Some(h.ssrc),
            Some(_) => {}
        }
        self.receiver.on_rtp(now, h.sequence, h.timestamp);
    }

    fn handle_rtcp(&mut self, now: Instant, bytes: &[u8]) {
        let plain = match &mut self.srtp_in {
            Some(ctx) => match ctx.unprotect_rtcp(bytes) {
                Ok(p) => p,
                Err(e) => return self.count_srtp_error(e),
            },
            None => bytes.to_vec(),
        };
        // Lenient on the compound rules: reduced-size RTCP (RFC 5506) is
        // still worth reading.
        let Ok(packets) = parse_packets(&plain) else {
            self.counters.malformed += 1;
            return;
        };
        self.counters.rtcp_received += 1;
        for packet in packets {
            let blocks = match packet {
                RtcpPacket::SenderReport(sr) => {
                    if self.remote_ssrc.is_none_or(|r| r == sr.ssrc) {
                        self.receiver.on_sender_report(now, sr.info.ntp_timestamp);
                    }
                    sr.reports
                }
                RtcpPacket::ReceiverReport(rr) => rr.reports,
                RtcpPacket::Bye(bye) => {
                    if let Some(&ssrc) = bye.sources.iter().find(|&&s| Some(s) == self.remote_ssrc) {
                        self.queue_event(SessionEvent::RemoteBye { ssrc });
                    }
                    continue;
                }
                _ => continue,
            };
            for block in blocks.iter().filter(|b| b.ssrc == self.ssrc) {
                if let Some(rtt) = self.sender.on_report_block(now, block) {
                    self.rtt = Some(rtt);
                }
                self.remote_block = Some(*block);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Playout

    /// Appends exactly `samples` samples of 8 kHz audio to play to `out`:
    /// decoded frames, concealment where packets were lost, silence where
    /// there is nothing to play. Call it from the sound card's clock.
    pub fn pull_playout(&mut self, now: Instant, out: &mut Vec<i16>, samples: usize) {
        while self.playout.len() < samples {
            let before = self.playout.len();
            match self.jitter.pop(now) {
                Playout::Frame { payload, duration, .. } => {
                    let span = samples_in(duration);
                    match self.decoder.decode(&payload, &mut self.playout) {
                        // The timeline gives the packet more time than its
                        // audio (the sender skipped silence without a
                        // marker): fill the rest as libopus fills DTX.
                        Ok(n) if n < span => self.conceal(span - n, None),
                        Ok(_) => {}
                        Err(_) => {
                            self.counters.decode_errors += 1;
                            self.conceal(span, None);
                        }
                    }
                }
                Playout::Lost { next, duration } => {
                    self.counters.concealed_frames += 1;
                    self.conceal(samples_in(duration), next.as_deref());
                }
                Playout::Empty { duration } => {
                    self.playout.resize(self.playout.len() + samples_in(duration), 0);
                }
            }
            if self.playout.len() == before {
                // Nothing came out (an empty payload): fill the rest with
                // silence rather than loop.
                self.playout.resize(samples, 0);
            }
        }
        if self.playout.len() > samples + MAX_PLAYOUT_AHEAD {
            // Keep the newest audio; what is older would only add delay.
            let excess = self.playout.len() - samples - MAX_PLAYOUT_AHEAD;
            self.playout.drain(..excess);
        }
        out.extend(self.playout.drain(..samples));
    }

    fn conceal(&mut self, n: usize, next: Option<&[u8]>) {
        let start = self.playout.len();
        if self.decoder.conceal(n, next, &mut self.playout).is_err() {
            self.playout.truncate(start);
            self.playout.resize(start + n, 0);
        }
    }

    // -----------------------------------------------------------------------
    // Timers and output

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let digit = self.dtmf.as_ref().and_then(|t| t.packets.front().map(|(at, _)| *at));
        let timeout = match (self.config.stream_timeout, self.timeout_reported) {
            (Some(after), false) => self.last_rx.checked_add(after),
            _ => None,
        };
        [self.timer.deadline(), digit, timeout].into_iter().flatten().min()
    }

    /// Does what is due at `now`: digit packets, RTCP reports, the stream
    /// timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_dtmf(now);
        if self.timer.is_due(now) {
            self.send_report(now);
            let random = self.seeds.unit();
            self.timer.next_report_at(now, random);
        }
        if let (Some(after), false) = (self.config.stream_timeout, self.timeout_reported) {
            let silent_for = now.saturating_duration_since(self.last_rx);
            if silent_for >= after {
                self.timeout_reported = true;
                self.queue_event(SessionEvent::StreamTimeout { silent_for });
            }
        }
    }

    /// Queues an SR (when we sent RTP since the last report) or RR, with a
    /// block about the stream we receive and our CNAME.
    fn send_report(&mut self, now: Instant) {
        let ntp = ntp_from_unix(self.config.wall_clock.saturating_add(now.saturating_duration_since(self.start)));
        let info = if self.sent_since_report { self.sender.sender_info(now, ntp) } else { None };
        self.sent_since_report = false;
        let blocks = self.remote_ssrc.and_then(|r| self.receiver.report_block(now, r)).into_iter().collect();
        // build_compound refuses CNAMEs over 255 bytes: cut one that long.
        let cname = &self.config.cname;
        let mut end = cname.len().min(255);
        while !cname.is_char_boundary(end) {
            end -= 1;
        }
        let packets = [
            RtcpPacket::report(self.ssrc, info, blocks),
            RtcpPacket::SourceDescription(vec![SdesChunk::with_cname(self.ssrc, &cname[..end])]),
        ];
        let Ok(plain) = build_compound(&packets) else { return };
        let bytes = match &mut self.srtp_out {
            Some(ctx) => match ctx.protect_rtcp(&plain) {
                Ok(b) => b,
                Err(_) => return,
            },
            None => plain,
        };
        self.counters.rtcp_sent += 1;
        let to = if self.config.rtcp_mux { self.remote.rtp_addr } else { self.remote.rtcp_addr() };
        self.queue_transmit(Transmit { kind: TransmitKind::Rtcp, to, bytes });
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> SessionStats {
        let remote_loss_percent = self.remote_block.and_then(|b| {
            // Expected as the peer counts it, from our first sequence number
            // to the highest it saw (its cycle count in the upper half).
            let expected = i64::from(b.extended_highest_seq) - i64::from(self.first_seq) + 1;
            (expected > 0).then(|| f64::from(b.cumulative_lost.max(0)) * 100.0 / expected as f64)
        });
        SessionStats {
            loss_percent: self.receiver.loss_percent(),
            jitter_ms: self.receiver.jitter_ms(),
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1000.0),
            remote_loss_percent,
            remote_jitter_ms: self.remote_block.map(|b| b.jitter_ms(self.codec.clock_rate())),
            jitter_buffer: self.jitter.stats(),
            ..self.counters
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestRng;

    const MS: Duration = Duration::from_millis(1);

    /// One direction of the simulated network: fixed delay plus uniform
    /// jitter (which reorders packets sent closer together than the
    /// jitter), loss and duplication in per mille, and optional tampering.
    struct Link {
        delay_ms: u64,
        jitter_ms: u64,
        loss: u64,
        dup: u64,
        rng: TestRng,
        queue: Vec<(Instant, u64, Vec<u8>)>,
        order: u64,
        tamper_every: Option<u64>,
        tampered: u64,
        up: bool,
    }

    impl Link {
        fn new(delay_ms: u64, jitter_ms: u64, loss: u64, dup: u64, seed: u64) -> Self {
            Link { delay_ms, jitter_ms, loss, dup, rng: TestRng(seed), queue: Vec::new(), order: 0, tamper_every: None, tampered: 0, up: true }
        }

        fn send(&mut self, now: Instant, mut bytes: Vec<u8>) {
            if !self.up || self.rng.below(1000) < self.loss {
                return;
            }
            self.order += 1;
            if let Some(n) = self.tamper_every {
                if self.order.is_multiple_of(n) && bytes.len() > 5 {
                    // Inside the authentication tag of SRTP and SRTCP alike.
                    let i = bytes.len() - 5;
                    bytes[i] ^= 0x40;
                    self.tampered += 1;
                }
            }
            let copies = if self.rng.below(1000) < self.dup { 2 } else { 1 };
            for _ in 0..copies {
                let delay = self.delay_ms + self.rng.below(self.jitter_ms + 1);
                self.order += 1;
                self.queue.push((now + Duration::from_millis(delay), self.order, bytes.clone()));
            }
        }

        fn deliver(&mut self, now: Instant) -> Vec<Vec<u8>> {
            self.queue.sort_by_key(|(at, order, _)| (*at, *order));
            let n = self.queue.iter().take_while(|(at, _, _)| *at <= now).count();
            self.queue.drain(..n).map(|(_, _, b)| b).collect()
        }
    }

    fn key(suite: SrtpSuite, b: u8) -> MasterKey {
        MasterKey::from_slice(&vec![b; suite.master_len()]).unwrap()
    }

    /// The peer's media as one side sees it.
    fn leg(codec: Codec, pt: u8, suite: Option<SrtpSuite>, ours: u8, theirs: u8) -> LegMedia {
        LegMedia {
            rtp_addr: Some("192.0.2.1:4000".parse().unwrap()),
            codec: Some((codec, pt)),
            telephone_event: Some(101),
            srtp_send: suite.map(|s| (s, key(s, ours))),
            srtp_recv: suite.map(|s| (s, key(s, theirs))),
            ..Default::default()
        }
    }

    fn tone(freq: f64, start: usize, n: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    /// Goertzel amplitude of `freq` in `x`.
    fn amplitude(x: &[i16], freq: f64) -> f64 {
        let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
        2.0 * power.sqrt() / x.len() as f64
    }

    /// Asserts the last `ms` of `pcm` carry `want` and not `other`. Measured
    /// on 50 ms blocks (both tones fall on a bin), so that the phase jumps
    /// of concealment and delay changes do not cancel out.
    fn assert_hears(pcm: &[i16], ms: usize, want: f64, other: f64, what: &str) {
        let tail = &pcm[pcm.len().saturating_sub(ms * 8)..];
        let blocks: Vec<&[i16]> = tail.chunks_exact(400).collect();
        assert!(!blocks.is_empty(), "{what}: no audio");
        let rms = |f: f64| (blocks.iter().map(|b| amplitude(b, f).powi(2)).sum::<f64>() / blocks.len() as f64).sqrt();
        let (w, o) = (rms(want), rms(other));
        assert!(w > 4000.0 && o < w / 10.0, "{what}: {want} Hz at {w:.0}, {other} Hz at {o:.0}");
    }

    /// A plays 440 Hz, B plays 1000 Hz; capture in 10 ms chunks, playout in
    /// 15 ms pulls, on a 1 ms virtual clock.
    struct Call {
        now: Instant,
        a: MediaSession,
        b: MediaSession,
        ab: Link,
        ba: Link,
        heard_a: Vec<i16>,
        heard_b: Vec<i16>,
        events_a: Vec<SessionEvent>,
        events_b: Vec<SessionEvent>,
        captured: usize,
        tick: u64,
    }

    impl Call {
        fn new(codec: Codec, pt: u8, suite: Option<SrtpSuite>, ab: Link, ba: Link, rtcp: Duration) -> Call {
            Self::with_seed(codec, pt, suite, ab, ba, rtcp, 11)
        }

        fn with_seed(codec: Codec, pt: u8, suite: Option<SrtpSuite>, ab: Link, ba: Link, rtcp: Duration, seed_a: u64) -> Call {
            // Virtual time: only offsets from this instant matter.
            let now = crate::test_support::origin();
            let config = |cname: &str, seed| SessionConfig { rtcp_interval: rtcp, ..SessionConfig::new(cname, seed) };
            let a = MediaSession::new(&leg(codec, pt, suite, 1, 2), config("a@test", seed_a), now).unwrap();
            let b = MediaSession::new(&leg(codec, pt, suite, 2, 1), config("b@test", 22), now).unwrap();
            Call { now, a, b, ab, ba, heard_a: Vec::new(), heard_b: Vec::new(), events_a: Vec::new(), events_b: Vec::new(), captured: 0, tick: 0 }
        }

        fn run(&mut self, ms: u64) {
            for _ in 0..ms {
                self.now += MS;
                self.tick += 1;
                let now = self.now;
                for p in self.ab.deliver(now) {
                    self.b.handle_datagram(now, &p);
                }
                for p in self.ba.deliver(now) {
                    self.a.handle_datagram(now, &p);
                }
                if self.tick.is_multiple_of(10) {
                    self.a.push_capture(now, &tone(440.0, self.captured, 80));
                    self.b.push_capture(now, &tone(1000.0, self.captured, 80));
                    self.captured += 80;
                }
                if self.tick.is_multiple_of(15) {
                    self.a.pull_playout(now, &mut self.heard_a, 120);
                    self.b.pull_playout(now, &mut self.heard_b, 120);
                }
                for s in [&mut self.a, &mut self.b] {
                    if s.poll_timeout().is_some_and(|t| t <= now) {
                        s.handle_timeout(now);
                    }
                }
                while let Some(t) = self.a.poll_transmit() {
                    self.ab.send(now, t.bytes);
                }
                while let Some(t) = self.b.poll_transmit() {
                    self.ba.send(now, t.bytes);
                }
                self.events_a.extend(std::iter::from_fn(|| self.a.poll_event()));
                self.events_b.extend(std::iter::from_fn(|| self.b.poll_event()));
            }
            assert_eq!(self.heard_a.len() as u64, self.tick / 15 * 120, "exact playout sizes");
        }

        fn assert_both_hear(&self, what: &str) {
            assert_hears(&self.heard_b, 1500, 440.0, 1000.0, &format!("{what}: B"));
            assert_hears(&self.heard_a, 1500, 1000.0, 440.0, &format!("{what}: A"));
        }
    }

    fn jittery(seed: u64) -> Link {
        Link::new(30, 25, 0, 20, seed)
    }

    #[test]
    fn both_sides_hear_each_other_for_every_codec_and_srtp_suite() {
        let suites = [None, Some(SrtpSuite::AesCm128HmacSha1_80), Some(SrtpSuite::AeadAes128Gcm)];
        for (codec, pt) in [(Codec::Pcmu, 0), (Codec::Pcma, 8), (Codec::Opus, 111)] {
            for suite in suites {
                let what = format!("{codec:?} {suite:?}");
                let mut call = Call::new(codec, pt, suite, jittery(1), jittery(2), NOMINAL_INTERVAL);
                call.run(4000);
                call.assert_both_hear(&what);
                for s in [call.a.stats(), call.b.stats()] {
                    assert!(s.packets_received > 180, "{what}: {s:?}");
                    assert_eq!(s.srtp_auth_failures + s.malformed + s.decode_errors, 0, "{what}: {s:?}");
                    assert!(s.jitter_ms > 1.0, "{what}: the network jitter shows: {s:?}");
                }
                if suite.is_some() {
                    // Encrypted: the payload is not the plain G.711 of the tone.
                    let sent = call.a.stats().bytes_sent / call.a.stats().packets_sent;
                    assert!(sent > 12 + 1, "{what}");
                }
            }
        }
    }

    #[test]
    fn opus_is_sent_at_the_configured_bitrate() {
        // Noise uses every bit it is given, so the packet sizes show the
        // target. bytes_sent counts the 12-byte RTP header too.
        let payload_bits = |bitrate: Option<i32>| {
            let now = crate::test_support::origin();
            let config = SessionConfig { opus_bitrate: bitrate, ..SessionConfig::new("a@test", 3) };
            let mut a = MediaSession::new(&leg(Codec::Opus, 111, None, 1, 2), config, now).unwrap();
            let mut rng = crate::test_support::TestRng(7);
            for i in 0..100 {
                let t = now + Duration::from_millis(20 * i as u64);
                let noise: Vec<i16> = (0..160).map(|_| (rng.next() >> 50) as i16 - 8192).collect();
                a.push_capture(t, &noise);
                while a.poll_transmit().is_some() {}
            }
            let st = a.stats();
            ((st.bytes_sent - 12 * st.packets_sent) * 8 * 50 / st.packets_sent) as i64
        };
        let high = payload_bits(Some(24_000));
        let low = payload_bits(Some(8_000));
        assert!((16_000..=26_000).contains(&high), "24 kbit/s asked, {high} bit/s sent");
        assert!(low < high * 2 / 3, "8 kbit/s asked, {low} bit/s sent (vs {high})");
        assert_eq!(SessionConfig::new("x", 1).opus_bitrate, Some(DEFAULT_OPUS_BITRATE));
    }

    #[test]
    fn five_percent_loss_is_concealed() {
        for (codec, pt) in [(Codec::Pcmu, 0), (Codec::Opus, 111)] {
            let mut call = Call::new(codec, pt, None, Link::new(30, 10, 50, 0, 3), Link::new(30, 10, 50, 0, 4), NOMINAL_INTERVAL);
            call.run(6000);
            call.assert_both_hear(&format!("{codec:?} with loss"));
            for s in [call.a.stats(), call.b.stats()] {
                assert!(s.concealed_frames > 5, "{codec:?}: {s:?}");
                assert!(s.jitter_buffer.lost > 5, "{codec:?}: {s:?}");
            }
        }
    }

    #[test]
    fn muting_sends_silence() {
        let mut call = Call::new(Codec::Pcmu, 0, None, jittery(5), jittery(6), NOMINAL_INTERVAL);
        call.run(2000);
        call.a.mute(true);
        let before = call.b.stats().packets_received;
        call.run(2000);
        assert!(call.b.stats().packets_received > before + 90, "packets keep flowing");
        let tail = &call.heard_b[call.heard_b.len() - 8000..];
        assert!(amplitude(tail, 440.0) < 100.0, "but carry no tone");
        call.a.mute(false);
        call.run(2000);
        call.assert_both_hear("unmuted");
    }

    #[test]
    fn a_digit_is_reported_once() {
        let mut call = Call::new(Codec::Pcmu, 0, Some(SrtpSuite::AesCm128HmacSha1_80), jittery(7), jittery(8), NOMINAL_INTERVAL);
        call.run(1000);
        call.a.send_dtmf(call.now, '5', 120).unwrap();
        call.run(1500);
        let digits: Vec<_> = call.events_b.iter().filter(|e| matches!(e, SessionEvent::DtmfReceived { .. })).collect();
        assert_eq!(digits, [&SessionEvent::DtmfReceived { digit: '5', duration_ms: 120 }]);
        assert_eq!(call.a.stats().dtmf_sent, 1);
        assert!(call.events_a.is_empty(), "{:?}", call.events_a);
        // Audio resumes after the digit.
        call.run(1500);
        call.assert_both_hear("after the digit");
        assert!(call.a.send_dtmf(call.now, 'x', 100).is_err(), "not a digit");

        // Without telephone-event the caller is told to use SIP INFO.
        let mut media = leg(Codec::Pcmu, 0, None, 1, 2);
        media.telephone_event = None;
        let mut s = MediaSession::new(&media, SessionConfig::new("c", 1), call.now).unwrap();
        assert!(matches!(s.send_dtmf(call.now, '5', 100), Err(MediaError::BadDtmf(_))));
    }

    #[test]
    fn rtcp_gives_loss_and_round_trip_time() {
        let mut call = Call::new(
            Codec::Pcmu,
            0,
            Some(SrtpSuite::AeadAes128Gcm),
            Link::new(40, 0, 50, 0, 9),
            Link::new(40, 0, 50, 0, 10),
            Duration::from_secs(1),
        );
        call.run(20_000);
        let b = call.b.stats();
        assert!(b.rtcp_received > 5 && b.rtcp_sent > 5, "{b:?}");
        assert!((3.0..7.0).contains(&b.loss_percent), "loss B measures: {b:?}");
        let remote = b.remote_loss_percent.expect("A reported on B's stream");
        assert!((3.0..7.0).contains(&remote), "loss A reports: {b:?}");
        let rtt = b.rtt_ms.expect("an RTT");
        assert!((78.0..84.0).contains(&rtt), "RTT {rtt} for 40 ms each way");
        assert!(b.jitter_ms < 1.0, "no network jitter: {b:?}");
        assert!(call.a.stats().rtt_ms.is_some());
    }

    #[test]
    fn tampered_srtp_is_counted_and_dropped() {
        for suite in [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AeadAes128Gcm] {
            let mut ab = Link::new(20, 0, 0, 0, 11);
            ab.tamper_every = Some(7);
            let mut call = Call::new(Codec::Pcma, 8, Some(suite), ab, Link::new(20, 0, 0, 0, 12), Duration::from_secs(1));
            call.run(5000);
            // Let the tampered packets still in flight arrive.
            call.ab.tamper_every = None;
            call.run(100);
            let b = call.b.stats();
            assert!(call.ab.tampered > 30);
            assert_eq!(b.srtp_auth_failures, call.ab.tampered, "{suite:?}: {b:?}");
            assert!(b.concealed_frames > 0, "{suite:?}: {b:?}");
            call.assert_both_hear(&format!("{suite:?} tampered"));
        }
    }

    #[test]
    fn a_mid_call_update_keeps_audio_and_srtp_state() {
        // A seed whose first sequence number wraps within the first two
        // seconds, so the SRTP contexts kept across the first update carry
        // a rollover counter of 1: fresh ones would fail every packet.
        let seed = (1..).find(|&s| {
            let mut seeds = Seeds(s);
            seeds.next();
            (65440..65500).contains(&(seeds.next() as u16))
        });
        let suite = Some(SrtpSuite::AesCm128HmacSha1_80);
        let mut call = Call::with_seed(Codec::Pcmu, 0, suite, jittery(13), jittery(14), NOMINAL_INTERVAL, seed.unwrap());
        call.run(3000);
        call.assert_both_hear("PCMU");
        let ssrc = call.a.ssrc();
        // PCMA: same clock, same stream.
        call.a.update(call.now, &leg(Codec::Pcma, 8, suite, 1, 2)).unwrap();
        call.run(30);
        call.b.update(call.now, &leg(Codec::Pcma, 8, suite, 2, 1)).unwrap();
        call.run(3000);
        call.assert_both_hear("PCMU -> PCMA");
        assert_eq!(call.a.ssrc(), ssrc);
        assert_eq!(call.b.stats().srtp_auth_failures, 0, "rollover counter kept");
        // Opus: another clock rate, a new stream.
        call.a.update(call.now, &leg(Codec::Opus, 111, suite, 1, 2)).unwrap();
        call.run(30);
        call.b.update(call.now, &leg(Codec::Opus, 111, suite, 2, 1)).unwrap();
        call.run(3000);
        call.assert_both_hear("PCMA -> Opus");
        assert_ne!(call.a.ssrc(), ssrc);
        assert_eq!(call.a.codec(), (Codec::Opus, 111));
        assert!(call.events_b.iter().any(|e| matches!(e, SessionEvent::RemoteSsrcChanged { .. })));
        assert_eq!(call.b.stats().srtp_auth_failures, 0);
        // A re-key gets new contexts; no codec is an error that changes nothing.
        let mut none = leg(Codec::Opus, 111, suite, 1, 2);
        none.codec = None;
        assert!(call.a.update(call.now, &none).is_err());
        assert_eq!(call.a.codec(), (Codec::Opus, 111));
    }

    #[test]
    fn the_stream_timeout_is_reported_once() {
        let mut call = Call::new(Codec::Pcmu, 0, None, jittery(15), jittery(16), NOMINAL_INTERVAL);
        call.run(1000);
        call.ab.up = false;
        call.run(31_500);
        let timeouts = call.events_b.iter().filter(|e| matches!(e, SessionEvent::StreamTimeout { .. })).count();
        assert_eq!(timeouts, 1);
        assert!(call.events_a.iter().all(|e| !matches!(e, SessionEvent::StreamTimeout { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = TestRng(0x5eed);
        for suite in [None, Some(SrtpSuite::AesCm128HmacSha1_80)] {
            for (codec, pt) in [(Codec::Pcmu, 0), (Codec::Opus, 111)] {
                let mut call = Call::new(codec, pt, suite, jittery(17), jittery(18), Duration::from_secs(1));
                call.run(500);
                // Real packets to cut and bend.
                let mut real = Vec::new();
                call.a.push_capture(call.now, &tone(440.0, 0, 320));
                call.a.handle_timeout(call.now + Duration::from_secs(2));
                while let Some(t) = call.a.poll_transmit() {
                    real.push(t.bytes);
                }
                let plain = write_rtp(false, pt, 1, 2, 3, &[0xde, 0xad, 0xbe, 0xef, 0x01]);
                real.push(plain);
                let now = call.now;
                for i in 0..3000 {
                    let len = rng.below(if i % 5 == 0 { 1500 } else { 200 }) as usize;
                    let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    match i % 6 {
                        0 => {}
                        1 if len > 1 => p[0] = 0x80 | (p[0] & 0x3f),
                        2 if len > 1 => {
                            p[0] = 0x80;
                            p[1] = 200 + (p[1] % 8);
                        }
                        3 => {
                            let r = &real[i % real.len()];
                            p = r[..(len % (r.len() + 1))].to_vec();
                        }
                        4 => {
                            let mut r = real[i % real.len()].clone();
                            let at = len % r.len();
                            r[at] ^= rng.next() as u8 | 1;
                            p = r;
                        }
                        5 if len > 1 => p[0] = 0xc0 | (p[0] & 0x3f),
                        _ => {}
                    }
                    call.b.handle_datagram(now, &p);
                    if i % 50 == 0 {
                        let mut out = Vec::new();
                        let n = (rng.below(1000)) as usize;
                        call.b.pull_playout(now, &mut out, n);
                        assert_eq!(out.len(), n);
                    }
                }
                let s = call.b.stats();
                assert!(s.malformed + s.ignored + s.srtp_auth_failures > 1000, "{s:?}");
                // And the call goes on.
                call.run(3000);
                call.assert_both_hear(&format!("{codec:?} {suite:?} after garbage"));
            }
        }
    }
}
