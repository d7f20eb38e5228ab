//! A leg the PBX answers itself: what it plays (announcements, hold music,
//! IVR prompts) and the digits it hears, as one sans-IO value (ADR 0005,
//! step 1, the engine part; the relay thread will drive it on a 20 ms
//! clock and the call task will choose what it plays).
//!
//! It wraps the softphone SDK's `MediaSession`, which already keeps one
//! continuous SSRC, sequence and timestamp line, sends RTCP and detects
//! RFC 4733 digits; this module adds the audio source: a queue of prompts,
//! silences and loops, framed at 20 ms, with a "played" event per queue.
//! SRTP is not done here: the relay's per-leg pipelines open and seal the
//! packets, so each key has exactly one context.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_media::codec::FRAME_SAMPLES;
use tsunagu_media::{LegMedia, MediaError, MediaSession, SessionConfig, SessionEvent, SessionTransmit};

/// One frame of audio: 160 samples at 8 kHz.
pub const FRAME: Duration = Duration::from_millis(20);
/// A wake-up later than this does not send the frames it missed at once
/// (a burst the far jitter buffer would drop); the stream jumps ahead
/// instead, which the session marks as a new talkspurt.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);

/// Something to play, at 8 kHz mono.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayItem {
    Prompt(Arc<[i16]>),
    Silence(Duration),
    /// Played until the queue is replaced (hold music, ringback).
    Loop(Arc<[i16]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A key pressed by the far end (RFC 4733), once per press.
    Digit { digit: char, duration_ms: u32 },
    /// Everything queued with this cookie has been sent.
    Played { cookie: u32 },
}

pub struct Endpoint {
    session: MediaSession,
    queue: VecDeque<PlayItem>,
    /// Samples of the queue's front item already sent.
    offset: usize,
    /// The cookie of the queue, reported once it has drained.
    cookie: Option<u32>,
    next_frame: Instant,
    events: VecDeque<EndpointEvent>,
}

impl Endpoint {
    /// An endpoint for a leg with this media description (its SRTP keys
    /// are ignored: see the module comment). `seed` picks the stream's
    /// SSRC, first sequence number and timestamp.
    pub fn new(media: &LegMedia, seed: u64, now: Instant) -> Result<Self, MediaError> {
        let plain = LegMedia { srtp_recv: None, srtp_send: None, ..media.clone() };
        let mut config = SessionConfig::new("tsunagu-pbx", seed);
        // The call task decides when a silent caller is gone (the relay's
        // silence timer), not the engine.
        config.stream_timeout = None;
        let session = MediaSession::new(&plain, config, now)?;
        Ok(Self { session, queue: VecDeque::new(), offset: 0, cookie: None, next_frame: now, events: VecDeque::new() })
    }

    /// Play `items` from the next frame on, instead of whatever was
    /// queued (an IVR replaces its prompt when a key is pressed).
    pub fn play(&mut self, items: Vec<PlayItem>, cookie: u32) {
        self.queue = items.into();
        self.offset = 0;
        self.cookie = Some(cookie);
    }

    /// A new media description for the leg (a re-INVITE).
    pub fn update(&mut self, now: Instant, media: &LegMedia) -> Result<(), MediaError> {
        let plain = LegMedia { srtp_recv: None, srtp_send: None, ..media.clone() };
        self.session.update(now, &plain)
    }

    pub fn ssrc(&self) -> u32 {
        self.session.ssrc()
    }

    /// A datagram from the leg (already opened, when the leg uses SRTP).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.session.handle_datagram(now, bytes);
        self.drain_session_events();
    }

    /// Send every frame that is due, and the session's own timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now.saturating_duration_since(self.next_frame) > MAX_CATCH_UP {
            self.next_frame = now;
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        while self.next_frame <= now {
            self.fill(&mut frame);
            self.session.push_capture(self.next_frame, &frame);
            self.next_frame += FRAME;
        }
        self.session.handle_timeout(now);
        self.drain_session_events();
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        self.session.poll_timeout().map_or(self.next_frame, |t| t.min(self.next_frame))
    }

    pub fn poll_transmit(&mut self) -> Option<SessionTransmit> {
        self.session.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The next frame's samples from the queue; silence once it is empty
    /// (a stream that stops would trip the far end's RTP timeout).
    fn fill(&mut self, frame: &mut [i16; FRAME_SAMPLES]) {
        let mut at = 0;
        while at < FRAME_SAMPLES {
            let Some(item) = self.queue.front() else {
                frame[at..].fill(0);
                if let Some(cookie) = self.cookie.take() {
                    self.events.push_back(EndpointEvent::Played { cookie });
                }
                return;
            };
            let want = FRAME_SAMPLES - at;
            let (taken, done) = match item {
                PlayItem::Prompt(pcm) => {
                    let n = want.min(pcm.len() - self.offset.min(pcm.len()));
                    frame[at..at + n].copy_from_slice(&pcm[self.offset..self.offset + n]);
                    (n, self.offset + n >= pcm.len())
                }
                PlayItem::Silence(d) => {
                    let total = (d.as_millis() as usize).saturating_mul(FRAME_SAMPLES) / FRAME.as_millis() as usize;
                    let n = want.min(total.saturating_sub(self.offset));
                    frame[at..at + n].fill(0);
                    (n, self.offset + n >= total)
                }
                PlayItem::Loop(pcm) if pcm.is_empty() => {
                    frame[at..].fill(0);
                    return;
                }
                PlayItem::Loop(pcm) => {
                    let start = self.offset % pcm.len();
                    let n = want.min(pcm.len() - start);
                    frame[at..at + n].copy_from_slice(&pcm[start..start + n]);
                    (n, false)
                }
            };
            at += taken;
            self.offset += taken;
            if done {
                self.queue.pop_front();
                self.offset = 0;
            }
        }
    }

    fn drain_session_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            if let SessionEvent::DtmfReceived { digit, duration_ms } = e {
                self.events.push_back(EndpointEvent::Digit { digit, duration_ms });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagu_media::{Codec, Decoder};

    fn pcmu_leg() -> LegMedia {
        LegMedia {
            rtp_addr: Some("127.0.0.1:40000".parse().unwrap()),
            rtcp_port: None,
            codec: Some((Codec::Pcmu, 0)),
            telephone_event: Some(101),
            srtp_recv: None,
            srtp_send: None,
        }
    }

    /// (sequence, timestamp, marker, payload) of each RTP datagram sent.
    fn rtp_sent(e: &mut Endpoint) -> Vec<(u16, u32, bool, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = e.poll_transmit() {
            if t.kind == tsunagu_media::TransmitKind::Rtp && t.bytes.len() >= 12 && t.bytes[1] & 0x7f == 0 {
                let b = &t.bytes;
                out.push((u16::from_be_bytes([b[2], b[3]]), u32::from_be_bytes([b[4], b[5], b[6], b[7]]), b[1] & 0x80 != 0, b[12..].to_vec()));
            }
        }
        out
    }

    fn tone(samples: usize, level: i16) -> Arc<[i16]> {
        (0..samples).map(|i| if i % 2 == 0 { level } else { -level }).collect::<Vec<_>>().into()
    }

    fn loudness(payload: &[u8]) -> i64 {
        let mut pcm = Vec::new();
        let mut d = Decoder::new(Codec::Pcmu).unwrap();
        d.decode(payload, &mut pcm).unwrap();
        pcm.iter().map(|s| i64::from(s.unsigned_abs())).max().unwrap_or(0)
    }

    #[test]
    fn two_prompts_then_silence_in_one_unbroken_stream() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(&pcmu_leg(), 7, t0).unwrap();
        // 30 ms of one prompt and 50 ms of another: they share frames.
        e.play(vec![PlayItem::Prompt(tone(240, 8000)), PlayItem::Silence(Duration::from_millis(20)), PlayItem::Prompt(tone(400, 4000))], 1);
        let mut sent = Vec::new();
        let mut now = t0;
        let mut played_at = None;
        for _ in 0..10 {
            e.handle_timeout(now);
            sent.extend(rtp_sent(&mut e));
            while let Some(ev) = e.poll_event() {
                assert_eq!(ev, EndpointEvent::Played { cookie: 1 });
                assert!(played_at.replace(sent.len()).is_none(), "played once");
            }
            now += FRAME;
        }
        assert_eq!(sent.len(), 10, "one packet per 20 ms");
        for w in sent.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence numbers without a gap");
            assert_eq!(w[1].1, w[0].1.wrapping_add(160), "timestamps 160 apart");
        }
        // 240 + 160 (silence) + 400 samples = 800 = 5 frames of sound, then silence.
        let levels: Vec<i64> = sent.iter().map(|p| loudness(&p.3)).collect();
        assert!(levels[0] > 7000 && levels[1] > 3000, "{levels:?}");
        assert!(levels[5..].iter().all(|l| *l < 10), "{levels:?}");
        assert_eq!(played_at, Some(6), "reported when the first frame after the queue went out");
    }

    #[test]
    fn a_late_wake_up_catches_up_and_a_very_late_one_jumps() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(&pcmu_leg(), 9, t0).unwrap();
        e.play(vec![PlayItem::Loop(tone(100, 1000))], 2);
        e.handle_timeout(t0);
        let first = rtp_sent(&mut e);
        // 100 ms late: the 5 frames due go out at once, still continuous.
        e.handle_timeout(t0 + Duration::from_millis(100));
        let burst = rtp_sent(&mut e);
        assert_eq!(burst.len(), 5);
        assert_eq!(burst[0].0, first[0].0.wrapping_add(1));
        assert_eq!(burst[4].1, first[0].1.wrapping_add(5 * 160));
        assert!(burst.iter().all(|p| !p.2), "no marker: nothing was skipped");
        // 1 s late: one frame, a timestamp jump, and the marker.
        e.handle_timeout(t0 + Duration::from_millis(1100));
        let jump = rtp_sent(&mut e);
        assert_eq!(jump.len(), 1);
        assert_eq!(jump[0].0, burst[4].0.wrapping_add(1));
        assert!(jump[0].1.wrapping_sub(burst[4].1) > 160 * 40, "the timestamp follows the clock");
        assert!(jump[0].2, "a new talkspurt");
        // A loop never reports itself played.
        assert_eq!(e.poll_event(), None);
    }

    #[test]
    fn digits_from_the_far_end_arrive_once() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(&pcmu_leg(), 11, t0).unwrap();
        let mut phone = MediaSession::new(&pcmu_leg(), SessionConfig::new("phone", 5), t0).unwrap();
        phone.send_dtmf(t0, '5', 120).unwrap();
        let mut now = t0;
        let mut digits = Vec::new();
        for _ in 0..30 {
            phone.push_capture(now, &[0; FRAME_SAMPLES]);
            phone.handle_timeout(now);
            while let Some(t) = phone.poll_transmit() {
                e.handle_datagram(now, &t.bytes);
            }
            e.handle_timeout(now);
            while let Some(ev) = e.poll_event() {
                digits.push(ev);
            }
            now += FRAME;
        }
        assert_eq!(digits, vec![EndpointEvent::Digit { digit: '5', duration_ms: 120 }]);
    }
}
