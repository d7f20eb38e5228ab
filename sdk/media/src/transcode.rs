//! The RTP transcoder: rewrites one direction of a call from one codec to
//! another (G.711 µ-law, A-law, Opus, in any pair), in 20 ms frames, when the
//! two legs of a B2BUA call share no codec.
//!
//! The transcoder is the sending RTP source of the output leg (RFC 3550 §7.1
//! "translator" that re-encodes, so it owns the SSRC, sequence numbers and
//! timestamps): it decodes each input packet to 8 kHz PCM, keeps a PCM queue,
//! and encodes whole 20 ms frames out of it. The output timeline follows the
//! input's: a loss (a gap in the input sequence numbers) is filled with
//! concealment (Opus PLC/FEC, G.711 pitch repetition in plc.rs) so that output timestamps
//! and sequence numbers stay continuous; a pause in the input timestamps
//! without a loss (silence suppression, DTX, comfort noise) becomes the same
//! pause in the output timestamps. RFC 4733 telephone-events are passed
//! through with their payload type changed and their timestamp and duration
//! rescaled between clock rates.
//!
//! It does no reordering: a packet older than one already processed is
//! dropped. A jitter buffer, where one is wanted, sits in front of it. Like
//! the rest of the crate it is sans-IO (no socket, clock or thread) and never
//! panics on input bytes.

use crate::codec::{Codec, Decoder, Encoder, FRAME_SAMPLES, PCM_RATE};
use crate::error::MediaError;
use crate::rtp::{RtpPacket, RTP_FIXED_HEADER_LEN, RTP_VERSION};

/// Writes a plain RTP packet with the fixed header only (no CSRC, extension
/// or padding).
pub fn write_rtp(marker: bool, payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RTP_FIXED_HEADER_LEN + payload.len());
    out.push(RTP_VERSION << 6);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The longest input loss filled with concealment (200 ms). Beyond it,
/// extrapolated audio is worse than silence; the rest of the gap becomes a
/// pause in the output timestamps.
pub const MAX_CONCEAL_SAMPLES: usize = 1600;
/// How far behind the expected sequence number a packet is taken as late
/// (and dropped); further behind, as a restart of the sender's numbering.
const MAX_MISORDER: u16 = 100;
/// When a sender's timestamps do not show a loss, at most this many lost
/// packets are assumed, so one bad sequence number cannot fake a long pause.
const MAX_ASSUMED_LOST: u16 = 10;
/// A jump in input timestamps larger than this (10 s) is a restart, not a
/// pause.
const MAX_TIME_JUMP_SAMPLES: i64 = 10 * PCM_RATE as i64;

/// What the transcoder knows of the input stream.
#[derive(Debug, Clone, Copy)]
struct InputState {
    ssrc: u32,
    /// The sequence number expected next.
    next_seq: u16,
    /// The input timestamp of the next audio sample expected, once audio has
    /// been seen.
    next_ts: Option<u32>,
}

/// Rewrites one direction of a call between two codecs, 20 ms frames.
pub struct Transcoder {
    from: Codec,
    from_pt: u8,
    to: Codec,
    to_pt: u8,
    out_ssrc: u32,
    decoder: Decoder,
    encoder: Encoder,
    te_from: Option<u8>,
    te_to: Option<u8>,
    input: Option<InputState>,
    /// Decoded samples not yet encoded; always fewer than a frame between
    /// calls.
    pcm: Vec<i16>,
    /// Sequence number and timestamp of the next output packet (the
    /// timestamp is that of `pcm[0]`).
    out_seq: u16,
    out_ts: u32,
    /// Set by an input marker (start of a talkspurt) or a pause; goes on the
    /// next audio packet out.
    marker: bool,
    /// The input timestamp of the telephone-event in progress and the output
    /// timestamp it was mapped to, so all its packets keep one timestamp.
    event_ts: Option<(u32, u32, u32)>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("from", &self.from)
            .field("from_pt", &self.from_pt)
            .field("to", &self.to)
            .field("to_pt", &self.to_pt)
            .field("out_ssrc", &self.out_ssrc)
            .field("te", &(self.te_from, self.te_to))
            .field("out_seq", &self.out_seq)
            .field("out_ts", &self.out_ts)
            .finish()
    }
}

impl Transcoder {
    /// A transcoder from `from` (payload type `from_pt` on the input leg) to
    /// `to` (payload type `to_pt` on the output leg), sending as `out_ssrc`.
    /// The output starts at sequence number 0 and timestamp 0; RFC 3550 wants
    /// random starting values, which the caller injects with
    /// [`Transcoder::with_initial`].
    pub fn new(from: Codec, from_pt: u8, to: Codec, to_pt: u8, out_ssrc: u32) -> Result<Self, MediaError> {
        Ok(Self {
            from,
            from_pt: from_pt & 0x7f,
            to,
            to_pt: to_pt & 0x7f,
            out_ssrc,
            decoder: Decoder::new(from)?,
            encoder: Encoder::new(to)?,
            te_from: None,
            te_to: None,
            input: None,
            pcm: Vec::with_capacity(4 * FRAME_SAMPLES),
            out_seq: 0,
            out_ts: 0,
            marker: false,
            event_ts: None,
            scratch: Vec::with_capacity(256),
        })
    }

    /// Sets the first output sequence number and timestamp (RFC 3550 §5.1:
    /// random, chosen by the caller).
    pub fn with_initial(mut self, sequence: u16, timestamp: u32) -> Self {
        self.out_seq = sequence;
        self.out_ts = timestamp;
        self
    }

    /// Map telephone-event payload types (RFC 4733) between legs: events pass
    /// through with the PT changed and the timestamp/duration rescaled between
    /// clock rates (8000 <-> 48000). The events' clock is taken to be that of
    /// the leg's codec, as SDP offers telephone-event/48000 beside Opus and
    /// telephone-event/8000 beside G.711. With either side `None`, events are
    /// dropped (the caller can still watch the input with a
    /// [`crate::dtmf::DtmfDetector`] and relay digits by SIP INFO).
    pub fn with_telephone_event(mut self, from_pt: Option<u8>, to_pt: Option<u8>) -> Self {
        self.te_from = from_pt.map(|p| p & 0x7f);
        self.te_to = to_pt.map(|p| p & 0x7f);
        self
    }

    /// The sequence number the next output packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.out_seq
    }

    /// The timestamp the next output audio packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.out_ts
    }

    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// One plain RTP packet from the source leg -> zero or more RTP packets
    /// for the other leg (own seq/timestamp/SSRC numbering, marker kept, gaps
    /// in source seq produce concealment on Opus decode). Packets of other
    /// PTs are dropped (Ok with nothing out). Malformed -> Err: a packet
    /// that fails RTP parsing or the payload check (Opus TOC, event length)
    /// changes nothing; should libopus still reject it while decoding, the
    /// concealment before it is kept and the packet counts as lost.
    ///
    /// Packets are appended to `out`, which is not cleared.
    pub fn push(&mut self, packet: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), MediaError> {
        let pkt = RtpPacket::parse(packet)?;
        let h = *pkt.header();
        let payload = pkt.payload();

        let is_audio = h.payload_type == self.from_pt;
        let is_event = self.te_from == Some(h.payload_type) && !is_audio;

        // Validate before any state changes, so a malformed packet is a pure
        // Err.
        let event_len_ok = payload.len() >= 4;
        if is_audio {
            self.decoder.payload_samples(payload)?;
        } else if is_event && !event_len_ok {
            return Err(MediaError::TooShort { need: 4, have: payload.len() });
        }

        // Sequence tracking covers every payload type of the stream, since
        // audio, events and comfort noise share one sequence space.
        let (lost, fresh) = match self.input {
            Some(s) if s.ssrc == h.ssrc => {
                let delta = h.sequence.wrapping_sub(s.next_seq);
                if delta >= 0x8000 && delta.wrapping_neg() > MAX_MISORDER {
                    // Far behind: the sender restarted its numbering (RFC
                    // 3550 A.1 resyncs the same way); take it as a new source
                    // rather than drop it, and everything after it, as late.
                    (0, true)
                } else if delta >= 0x8000 {
                    // Older than what was processed: a duplicate or a late
                    // packet. Events are idempotent (the receiver dedups by
                    // timestamp), so they still go through.
                    if is_event {
                        return self.push_event(&h, payload, out);
                    }
                    return Ok(());
                } else {
                    // However many were lost, the timestamps say how long the
                    // outage was (a Wi-Fi to LTE handover can take seconds).
                    (delta, false)
                }
            }
            _ => (0, true),
        };
        if fresh {
            // A new source (new SSRC, first packet, restarted numbering):
            // audio continues on the output timeline, flagged as a new
            // talkspurt.
            self.input = Some(InputState { ssrc: h.ssrc, next_seq: h.sequence, next_ts: None });
            self.marker = true;
            self.event_ts = None;
        }
        if let Some(s) = self.input.as_mut() {
            s.next_seq = h.sequence.wrapping_add(1);
        }

        if is_event {
            return self.push_event(&h, payload, out);
        }
        if !is_audio {
            return Ok(());
        }
        self.push_audio(&h, payload, lost, out)
    }

    fn push_audio(
        &mut self,
        h: &crate::rtp::RtpHeader,
        payload: &[u8],
        lost: u16,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), MediaError> {
        let in_units = i64::from(self.from.timestamp_units_per_sample());
        // How much input time lies between the audio we have and this packet.
        let gap = self.input.and_then(|s| s.next_ts).map(|next_ts| {
            let units = i64::from(h.timestamp.wrapping_sub(next_ts) as i32);
            units / in_units
        });
        let (conceal, pause) = match gap {
            // First audio of this source: nothing to fill.
            None => (0, 0),
            Some(gap) => self.plan_gap(gap, lost),
        };

        if conceal > 0 {
            // FEC from this packet only rebuilds the audio just before it,
            // so only when the whole gap is concealed.
            let next = if pause == 0 { Some(payload) } else { None };
            self.decoder.conceal(conceal, next, &mut self.pcm)?;
        }
        if pause > 0 {
            self.insert_pause(pause, out)?;
        }
        let decoded = match self.decoder.decode(payload, &mut self.pcm) {
            Ok(n) => n,
            Err(e) => {
                // The concealment above stays; this packet will count as lost
                // when the next one arrives, as next_ts was not moved.
                self.emit_frames(out)?;
                return Err(e);
            }
        };
        if h.marker {
            self.marker = true;
        }
        if let Some(s) = self.input.as_mut() {
            s.next_ts = Some(h.timestamp.wrapping_add(self.from.samples_to_timestamp(decoded)));
        }
        self.emit_frames(out)
    }

    /// Splits the input time between the audio we have and a new packet
    /// (`gap` 8 kHz samples, `lost` packets missing) into concealment and
    /// pause, in samples.
    fn plan_gap(&mut self, gap: i64, lost: u16) -> (usize, usize) {
        if !(0..=MAX_TIME_JUMP_SAMPLES).contains(&gap) {
            // Time went backwards or leapt: a restart. Treat as contiguous;
            // a few samples of overlap from a sloppy sender is not worth a
            // marker.
            if gap > MAX_TIME_JUMP_SAMPLES || gap < -(FRAME_SAMPLES as i64) {
                self.marker = true;
            }
            (0, 0)
        } else if lost > 0 {
            // Lost packets: the timestamps tell how much audio; without a
            // timestamp gap (a broken sender) assume packets like the last.
            let gap = gap as usize;
            let missing = if gap > 0 {
                gap
            } else {
                usize::from(lost.min(MAX_ASSUMED_LOST)) * self.decoder.last_payload_samples()
            };
            let conceal = missing.min(MAX_CONCEAL_SAMPLES);
            (conceal, missing - conceal)
        } else {
            // No loss but time moved on: silence suppression or DTX.
            (0, gap as usize)
        }
    }

    /// Moves the output timeline on by `samples` of silence: the partial
    /// frame in the queue is completed with zeros and sent, and the rest of
    /// the pause is a timestamp jump with no packets, as the sender did.
    fn insert_pause(&mut self, samples: usize, out: &mut Vec<Vec<u8>>) -> Result<(), MediaError> {
        // Whatever is queued (concealment included) plays before the pause.
        self.emit_frames(out)?;
        let partial = self.pcm.len() % FRAME_SAMPLES;
        let mut rest = samples;
        if partial > 0 {
            let fill = (FRAME_SAMPLES - partial).min(rest);
            self.pcm.resize(self.pcm.len() + fill, 0);
            rest -= fill;
            self.emit_frames(out)?;
        }
        if rest > 0 {
            self.out_ts = self.out_ts.wrapping_add(self.to.samples_to_timestamp(rest));
            self.marker = true;
        }
        Ok(())
    }

    /// Encodes and sends every whole frame in the queue.
    fn emit_frames(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), MediaError> {
        let frames = self.pcm.len() / FRAME_SAMPLES;
        let mut result = Ok(());
        for i in 0..frames {
            let frame = &self.pcm[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
            self.scratch.clear();
            match self.encoder.encode(frame, &mut self.scratch) {
                Ok(()) => {
                    let marker = std::mem::take(&mut self.marker);
                    out.push(write_rtp(marker, self.to_pt, self.out_seq, self.out_ts, self.out_ssrc, &self.scratch));
                    self.out_seq = self.out_seq.wrapping_add(1);
                }
                // The frame's time still passes, so the output timeline
                // stays in step with the input.
                Err(e) => result = Err(e),
            }
            self.out_ts = self.out_ts.wrapping_add(self.to.samples_to_timestamp(FRAME_SAMPLES));
        }
        self.pcm.drain(..frames * FRAME_SAMPLES);
        result
    }

    /// Passes one telephone-event packet through: payload type swapped,
    /// timestamp mapped onto the output timeline, durations rescaled.
    fn push_event(
        &mut self,
        h: &crate::rtp::RtpHeader,
        payload: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), MediaError> {
        let Some(to_pt) = self.te_to else { return Ok(()) };
        let (from_clock, to_clock) = (u64::from(self.from.clock_rate()), u64::from(self.to.clock_rate()));
        let out_ts = match self.event_ts {
            Some((ssrc, in_ts, out_ts)) if ssrc == h.ssrc && in_ts == h.timestamp => out_ts,
            _ => {
                let out_ts = self.map_timestamp(h.timestamp);
                self.event_ts = Some((h.ssrc, h.timestamp, out_ts));
                out_ts
            }
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        // Every whole 4-byte block is an event (RFC 4733 §2.3); rescale each
        // duration, saturating at the field's 16 bits.
        for block in self.scratch.chunks_exact_mut(4) {
            let d = u64::from(u16::from_be_bytes([block[2], block[3]]));
            let scaled = u16::try_from(d * to_clock / from_clock).unwrap_or(u16::MAX);
            block[2..4].copy_from_slice(&scaled.to_be_bytes());
        }
        out.push(write_rtp(h.marker, to_pt, self.out_seq, out_ts, self.out_ssrc, &self.scratch));
        self.out_seq = self.out_seq.wrapping_add(1);
        Ok(())
    }

    /// The output timestamp of the instant an input timestamp stands for,
    /// from where the audio queue stands now.
    fn map_timestamp(&self, in_ts: u32) -> u32 {
        let queued = self.to.samples_to_timestamp(self.pcm.len());
        let here = self.out_ts.wrapping_add(queued);
        let Some(next_ts) = self.input.and_then(|s| s.next_ts) else { return here };
        let delta_in = i64::from(in_ts.wrapping_sub(next_ts) as i32);
        let delta_out = delta_in * i64::from(self.to.clock_rate()) / i64::from(self.from.clock_rate());
        // Truncation is the RTP wrap-around.
        here.wrapping_add(delta_out as u32)
    }
}
