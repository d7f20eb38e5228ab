//! What happens to a packet between two legs, per direction: SRTP
//! decryption with the sending leg's key, payload-type rewriting or
//! transcoding (G.711 <-> Opus) when the legs agreed on different codecs,
//! RFC 4733 digits turned into SIP INFO for a leg that has no
//! telephone-event, and SRTP encryption with our key for the receiving leg.
//! When none of that is needed the packet is passed through untouched.

use std::net::SocketAddr;
use tsunagu_media::codec::Codec;
use tsunagu_media::dtmf::{DtmfDetector, DtmfGenerator};
use tsunagu_media::srtp::{MasterKey, SrtpContext, SrtpSuite};
use tsunagu_media::transcode::Transcoder;

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
    transcoder: Option<Transcoder>,
    /// Same codec, different payload type numbers: rewrite the PT byte.
    pt_map: Vec<(u8, u8)>,
    /// Digits are taken out of the stream and reported for SIP INFO.
    detector: Option<(u8, DtmfDetector)>,
    /// For digits injected towards `to` (it sent INFO on the other side).
    inject: Option<Inject>,
}

struct Inject {
    pt: u8,
    clock: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Pipeline {
    pub fn new(from: &LegMedia, to: &LegMedia) -> Pipeline {
        let mut p = Pipeline {
            srtp_in: from.srtp_recv.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_in_rtcp: from.srtp_recv.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_out: to.srtp_send.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            srtp_out_rtcp: to.srtp_send.as_ref().map(|(s, k)| SrtpContext::new(*s, k)),
            ..Default::default()
        };
        if let (Some((fc, fpt)), Some((tc, tpt))) = (from.codec, to.codec) {
            if fc != tc {
                match Transcoder::new(fc, fpt, tc, tpt, rand::random()) {
                    Ok(t) => p.transcoder = Some(t.with_initial(rand::random(), rand::random()).with_telephone_event(from.telephone_event, to.telephone_event)),
                    Err(e) => tracing::warn!(error = %e, from = ?fc, to = ?tc, "cannot transcode; passing packets through"),
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
            p.inject = Some(Inject { pt, clock, ssrc: rand::random(), seq: rand::random(), ts: rand::random() });
        }
        p
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
        let pt = plain.get(1).map(|b| b & 0x7f)?;
        if let Some((dpt, det)) = &mut self.detector {
            if pt == *dpt {
                return det.push(plain);
            }
        }
        let mut produced = Vec::new();
        match &mut self.transcoder {
            Some(t) => {
                if let Err(e) = t.push(plain, &mut produced) {
                    tracing::debug!(error = %e, "transcoder dropped a packet");
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
        for p in produced {
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
