//! What happens to a packet between two legs, per direction: SRTP
//! decryption with the sending leg's key, payload-type rewriting or
//! transcoding (G.711 <-> Opus) when the legs agreed on different codecs,
//! RFC 4733 digits turned into SIP INFO for a leg that has no
//! telephone-event, and SRTP encryption with our key for the receiving leg.
//! When none of that is needed the packet is passed through untouched.
//!
//! Sans-IO like the rest of the crate: the relay around it (the PBX's relay
//! threads, later the phone SDK) owns sockets and time, and passes in the
//! random seed for the SSRCs, sequence numbers and timestamps of streams
//! the pipeline originates (transcoded audio, injected digits).

use crate::codec::Codec;
use crate::dtmf::{DtmfDetector, DtmfGenerator};
use crate::error::MediaError;
use crate::seeds::Seeds;
use crate::srtp::{MasterKey, SrtpContext, SrtpSuite};
use crate::transcode::Transcoder;
use std::net::SocketAddr;

/// One leg's media as its SDP (and ours to it) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegMedia {
    /// Where the leg's SDP says to send RTP (None for 0.0.0.0 / unknown).
    pub rtp_addr: Option<SocketAddr>,
    /// `a=rtcp` port, when not RTP port + 1.
    pub rtcp_port: Option<u16>,
    /// The codec this leg sends and receives, with its payload type.
    pub codec: Option<(Codec, u8)>,
    /// telephone-event payload type on this leg (RFC 4733), if negotiated.
    pub telephone_event: Option<u8>,
    /// SDES: the key this leg encrypts with (its a=crypto), which we decrypt with.
    pub srtp_recv: Option<(SrtpSuite, MasterKey)>,
    /// SDES: our key for this leg (our a=crypto to it), which we encrypt with.
    pub srtp_send: Option<(SrtpSuite, MasterKey)>,
}

impl LegMedia {
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr?;
        let port = self.rtcp_port.unwrap_or(rtp.port().checked_add(1)?);
        Some(SocketAddr::new(rtp.ip(), port))
    }

    /// Whether two descriptions need the same packet processing (only the
    /// addresses differ). SRTP contexts are then kept, rollover counters
    /// and all, across a re-INVITE that only moves the address.
    pub fn same_processing(&self, other: &LegMedia) -> bool {
        self.codec == other.codec && self.telephone_event == other.telephone_event && self.srtp_recv == other.srtp_recv && self.srtp_send == other.srtp_send
    }
}

/// One direction: packets from leg `from` to leg `to`.
#[derive(Default)]
pub struct Pipeline {
    srtp_in: Option<SrtpContext>,
    srtp_in_rtcp: Option<SrtpContext>,
    srtp_out: Option<SrtpContext>,
    srtp_out_rtcp: Option<SrtpContext>,
    /// The keys those contexts were made from, to keep them (rollover
    /// counters, replay windows) when the pipeline is rebuilt.
    in_key: Option<(SrtpSuite, MasterKey)>,
    out_key: Option<(SrtpSuite, MasterKey)>,
    transcoder: Option<Transcoder>,
    /// Same codec, different payload type numbers: rewrite the PT byte.
    pt_map: Vec<(u8, u8)>,
    /// Digits are taken out of the stream and reported for SIP INFO.
    detector: Option<(u8, DtmfDetector)>,
    /// For digits injected towards `to` (it sent INFO on the other side).
    inject: Option<Inject>,
    /// Why the legs' codecs could not be transcoded (packets then pass
    /// through as they are).
    setup_error: Option<MediaError>,
    /// Packets the transcoder could not take (malformed payloads).
    transcode_errors: u64,
}

struct Inject {
    pt: u8,
    clock: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Pipeline {
    /// The processing for packets from `from` to `to`. `seed` should be
    /// random: it picks the SSRC, first sequence number and timestamp of
    /// the streams this pipeline originates (RFC 3550 §5.1).
    pub fn new(from: &LegMedia, to: &LegMedia, seed: u64) -> Pipeline {
        let mut seeds = Seeds(seed);
        let mut p = Pipeline {
            srtp_in: from.srtp_recv.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_in_rtcp: from.srtp_recv.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_out: to.srtp_send.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_out_rtcp: to.srtp_send.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            in_key: from.srtp_recv.clone(),
            out_key: to.srtp_send.clone(),
            ..Default::default()
        };
        if let (Some((fc, fpt)), Some((tc, tpt))) = (from.codec, to.codec) {
            if fc != tc {
                match Transcoder::new(fc, fpt, tc, tpt, seeds.u32()) {
                    Ok(t) => p.transcoder = Some(t.with_initial(seeds.u16(), seeds.u32()).with_telephone_event(from.telephone_event, to.telephone_event)),
                    Err(e) => p.setup_error = Some(e),
                }
            } else if fpt != tpt {
                p.pt_map.push((fpt, tpt));
            }
        }
        match (from.telephone_event, to.telephone_event) {
            (Some(f), Some(t)) if f != t && p.transcoder.is_none() => p.pt_map.push((f, t)),
            (Some(f), None) => p.detector = Some((f, DtmfDetector::new(f))),
            _ => {}
        }
        if let Some(pt) = to.telephone_event {
            let clock = to.codec.map(|(c, _)| if c == Codec::Opus { 48000 } else { 8000 }).unwrap_or(8000);
            p.inject = Some(Inject { pt, clock, ssrc: seeds.u32(), seq: seeds.u16(), ts: seeds.u32() });
        }
        p
    }

    /// Like [`Pipeline::new`] for a re-INVITE or UPDATE that changed one
    /// leg: SRTP contexts whose key did not change are carried over, so
    /// their rollover counters and replay windows go on. A fresh context
    /// would restart at ROC 0 and fail to authenticate a phone whose stream
    /// had already wrapped (which, from a random first sequence number,
    /// can happen within seconds).
    pub fn rebuilt(mut old: Pipeline, from: &LegMedia, to: &LegMedia, seed: u64) -> Pipeline {
        let mut p = Pipeline::new(from, to, seed);
        if p.in_key.is_some() && p.in_key == old.in_key {
            p.srtp_in = old.srtp_in.take();
            p.srtp_in_rtcp = old.srtp_in_rtcp.take();
        }
        if p.out_key.is_some() && p.out_key == old.out_key {
            p.srtp_out = old.srtp_out.take();
            p.srtp_out_rtcp = old.srtp_out_rtcp.take();
        }
        p
    }

    /// Why transcoding could not be set up, if it could not.
    pub fn setup_error(&self) -> Option<&MediaError> {
        self.setup_error.as_ref()
    }

    /// Packets the transcoder dropped (payloads it could not decode).
    pub fn transcode_errors(&self) -> u64 {
        self.transcode_errors
    }

    /// Nothing to do but copy bytes.
    pub fn is_passthrough(&self) -> bool {
        self.srtp_in.is_none() && self.srtp_out.is_none() && self.transcoder.is_none() && self.pt_map.is_empty() && self.detector.is_none()
    }

    /// Decrypt (and authenticate) an RTP packet from the sending leg.
    pub fn open(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        match &mut self.srtp_in {
            Some(ctx) => ctx.unprotect_rtp(packet).ok(),
            None => Some(packet.to_vec()),
        }
    }

    /// Turn one plain RTP packet into what the receiving leg gets (in
    /// `out`, encrypted if it uses SRTP). Returns a digit that was taken
    /// out of the stream for SIP INFO.
    pub fn process(&mut self, plain: &[u8], out: &mut Vec<Vec<u8>>) -> Option<(char, u32)> {
        self.process_with(plain, out, |_| {})
    }

    /// Like [`Pipeline::process`], with `edit` applied to each plain packet
    /// before it is encrypted (a B2BUA keeping one SSRC towards a phone).
    pub fn process_with(&mut self, plain: &[u8], out: &mut Vec<Vec<u8>>, mut edit: impl FnMut(&mut Vec<u8>)) -> Option<(char, u32)> {
        let pt = plain.get(1).map(|b| b & 0x7f)?;
        if let Some((dpt, det)) = &mut self.detector {
            if pt == *dpt {
                return det.push(plain);
            }
        }
        let mut produced = Vec::new();
        match &mut self.transcoder {
            Some(t) => {
                if t.push(plain, &mut produced).is_err() {
                    self.transcode_errors += 1;
                }
            }
            None => {
                let mut p = plain.to_vec();
                if let Some((_, to)) = self.pt_map.iter().find(|(f, _)| *f == pt) {
                    p[1] = (p[1] & 0x80) | (to & 0x7f);
                }
                produced.push(p);
            }
        }
        for mut p in produced {
            edit(&mut p);
            match &mut self.srtp_out {
                Some(ctx) => {
                    if let Ok(s) = ctx.protect_rtp(&p) {
                        out.push(s);
                    }
                }
                None => out.push(p),
            }
        }
        None
    }

    /// Encrypt a packet that the application made itself for the receiving
    /// leg (a PBX prompt), with the same context as relayed packets: one
    /// context per key, so the rollover counter goes on and no keystream is
    /// used twice.
    pub fn seal(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        match &mut self.srtp_out {
            Some(ctx) => ctx.protect_rtp(plain).ok(),
            None => Some(plain.to_vec()),
        }
    }

    pub fn open_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        match &mut self.srtp_in_rtcp {
            Some(ctx) => ctx.unprotect_rtcp(packet).ok(),
            None => Some(packet.to_vec()),
        }
    }

    pub fn seal_rtcp(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        match &mut self.srtp_out_rtcp {
            Some(ctx) => ctx.protect_rtcp(plain).ok(),
            None => Some(plain.to_vec()),
        }
    }

    /// RFC 4733 packets for one digit towards the receiving leg, in a
    /// stream of their own (SSRC of ours), encrypted if needed, each with
    /// the delay after the first at which it is due (50 ms apart).
    pub fn dtmf_packets(&mut self, digit: char, duration_ms: u32) -> Vec<(u64, Vec<u8>)> {
        let Some(inj) = &mut self.inject else { return Vec::new() };
        let duration_ms = duration_ms.clamp(40, 1000);
        let generator = DtmfGenerator::new(inj.pt, inj.clock, inj.ssrc);
        let Ok(packets) = generator.packets(digit, duration_ms, inj.seq, inj.ts) else { return Vec::new() };
        inj.seq = inj.seq.wrapping_add(packets.len() as u16);
        inj.ts = inj.ts.wrapping_add(inj.clock / 1000 * (duration_ms + 100));
        let mut out = Vec::with_capacity(packets.len());
        for p in packets {
            let bytes = match &mut self.srtp_out {
                Some(ctx) => match ctx.protect_rtp(&p.rtp) {
                    Ok(s) => s,
                    Err(_) => continue,
                },
                None => p.rtp,
            };
            out.push((u64::from(p.send_after_ms), bytes));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn leg(codec: Codec, pt: u8, te: Option<u8>) -> LegMedia {
        LegMedia { rtp_addr: Some("127.0.0.1:4000".parse().unwrap()), codec: Some((codec, pt)), telephone_event: te, ..Default::default() }
    }

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes(&[b; 30])
    }

    #[test]
    fn same_codec_same_numbers_is_a_plain_copy() {
        let a = leg(Codec::Pcmu, 0, Some(101));
        let p = Pipeline::new(&a, &a.clone(), 1);
        assert!(p.is_passthrough());
        assert!(p.setup_error().is_none());
    }

    #[test]
    fn different_payload_type_numbers_are_rewritten() {
        let mut p = Pipeline::new(&leg(Codec::Pcmu, 0, Some(101)), &leg(Codec::Pcmu, 0, Some(96)), 1);
        assert!(!p.is_passthrough());
        let mut out = Vec::new();
        let digit = rtp(101 | 0x80, 7, &[5, 0x0a, 0, 160]);
        assert_eq!(p.process(&digit, &mut out), None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][1], 96 | 0x80, "PT 101 -> 96, marker kept");
        assert_eq!(&out[0][2..], &digit[2..], "nothing else changes");
    }

    #[test]
    fn srtp_is_opened_with_the_senders_key_and_sealed_with_ours() {
        let mut from = leg(Codec::Pcmu, 0, None);
        from.srtp_recv = Some((SrtpSuite::AesCm128HmacSha1_80, key(1)));
        let mut to = leg(Codec::Pcmu, 0, None);
        to.srtp_send = Some((SrtpSuite::AesCm128HmacSha1_80, key(2)));
        let mut p = Pipeline::new(&from, &to, 1);
        let plain = rtp(0, 1, &[0xff; 160]);
        let sent = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(1)).protect_rtp(&plain).unwrap();
        let opened = p.open(&sent).expect("authenticated with the sender's key");
        assert_eq!(opened, plain);
        let mut out = Vec::new();
        p.process(&opened, &mut out);
        assert_eq!(out.len(), 1);
        assert_ne!(out[0], sent, "re-encrypted, not copied");
        let received = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(2)).unprotect_rtp(&out[0]).unwrap();
        assert_eq!(received, plain);
        // A packet under any other key fails authentication.
        let forged = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(3)).protect_rtp(&rtp(0, 2, &[0; 160])).unwrap();
        assert!(p.open(&forged).is_none());
    }

    #[test]
    fn a_rebuild_keeps_the_srtp_state_of_an_unchanged_key() {
        let mut from = leg(Codec::Pcmu, 0, None);
        from.srtp_recv = Some((SrtpSuite::AesCm128HmacSha1_80, key(1)));
        let to = leg(Codec::Pcmu, 0, None);
        let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(1));
        let mut p = Pipeline::new(&from, &to, 1);
        // The phone's stream wraps its sequence number (ROC 0 -> 1).
        for seq in [65534u16, 65535, 0, 1] {
            let sent = sender.protect_rtp(&rtp(0, seq, &[1; 160])).unwrap();
            assert!(p.open(&sent).is_some(), "seq {seq}");
        }
        // A re-INVITE moves the other leg to Opus: the pipeline is rebuilt.
        let p2 = Pipeline::rebuilt(p, &from, &leg(Codec::Opus, 111, None), 2);
        let mut p2 = p2;
        let sent = sender.protect_rtp(&rtp(0, 2, &[1; 160])).unwrap();
        assert!(p2.open(&sent).is_some(), "still authenticated after the wrap");
        // A new key gets a new context.
        let mut changed = from.clone();
        changed.srtp_recv = Some((SrtpSuite::AesCm128HmacSha1_80, key(5)));
        let mut p3 = Pipeline::rebuilt(p2, &changed, &to, 3);
        assert!(p3.open(&sent).is_none(), "the old key's packets no longer open");
    }

    #[test]
    fn g711_is_transcoded_to_opus_with_the_opus_payload_type() {
        let mut p = Pipeline::new(&leg(Codec::Pcmu, 0, None), &leg(Codec::Opus, 111, None), 1);
        assert!(p.setup_error().is_none());
        let mut out = Vec::new();
        for seq in 0..5 {
            p.process(&rtp(0, seq, &[0xff; 160]), &mut out);
        }
        assert!(!out.is_empty());
        assert!(out.iter().all(|o| o[1] & 0x7f == 111), "Opus payload type");
    }

    #[test]
    fn injected_digits_are_seeded_by_the_caller() {
        let to = leg(Codec::Pcmu, 0, Some(101));
        let from = leg(Codec::Pcmu, 0, None);
        let a = Pipeline::new(&from, &to, 42).dtmf_packets('5', 100);
        let b = Pipeline::new(&from, &to, 42).dtmf_packets('5', 100);
        let c = Pipeline::new(&from, &to, 43).dtmf_packets('5', 100);
        assert!(!a.is_empty());
        assert_eq!(a, b, "same seed, same stream");
        assert_ne!(a[0].1[8..12], c[0].1[8..12], "another seed, another SSRC");
        assert!(a.iter().all(|(_, p)| p[1] & 0x7f == 101));
    }
}
