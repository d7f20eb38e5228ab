//! Offer/answer (RFC 3264) across the B2BUA: each leg sees the server as
//! its peer, with the server's address and that leg's own ports, its own
//! SRTP key (RFC 4568: keys per leg, never passed across), and codecs that
//! either match the other leg (passed through) or that the server
//! transcodes (G.711 <-> Opus).

use tsunagu_media::pipeline::LegMedia;
use std::net::{IpAddr, SocketAddr};
use tsunagu_media::codec::Codec;
use tsunagu_media::srtp::{CryptoAttr, MasterKey, SrtpSuite};
use tsunagu_sip::sdp::{Direction, Media, RtpMap, Sdp};

/// Our side of one leg's SDP exchange.
#[derive(Debug, Clone)]
pub struct LegSdp {
    pub session_id: u64,
    pub version: u64,
    /// The leg uses RTP/SAVP with SDES keys.
    pub savp: bool,
    /// Our key towards this leg, with the crypto tag it goes under.
    pub our_key: Option<(u32, SrtpSuite, MasterKey)>,
    /// What the media task needs about this leg.
    pub media: LegMedia,
    /// The last SDP we sent this leg (answers to a session refresh reuse it).
    pub last_sent: Option<Vec<u8>>,
    /// The last SDP this leg sent us.
    pub last_received: Option<Vec<u8>>,
}

impl LegSdp {
    pub fn new(savp: bool) -> Self {
        let mut s = Self { session_id: rand::random::<u32>() as u64, version: 1, savp, our_key: None, media: LegMedia::default(), last_sent: None, last_received: None };
        if savp {
            s.ensure_key(1, SrtpSuite::AesCm128HmacSha1_80);
        }
        s
    }

    fn ensure_key(&mut self, tag: u32, suite: SrtpSuite) {
        match &mut self.our_key {
            // Same key for the life of the leg (its rollover counter goes on).
            Some((t, s, _)) if *s == suite => *t = tag,
            _ => {
                // As long as the suite's key: 30 bytes for AES-CM, 28 or 44
                // for a phone's AEAD_AES_128_GCM or AEAD_AES_256_GCM offer.
                let key = MasterKey::generate(suite, |raw| raw.iter_mut().for_each(|b| *b = rand::random()));
                self.our_key = Some((tag, suite, key));
            }
        }
        if let Some((_, suite, key)) = &self.our_key {
            self.media.srtp_send = Some((*suite, key.clone()));
        }
    }

    fn crypto_line(&self) -> Option<String> {
        let (tag, suite, key) = self.our_key.as_ref()?;
        Some(CryptoAttr { tag: *tag, suite: *suite, key: key.clone(), lifetime: None, mki: None, session_params: Vec::new() }.to_value())
    }

    fn next_origin(&mut self, sdp: &mut Sdp, addr: IpAddr) {
        self.version += 1;
        sdp.set_origin("tsunagu", self.session_id, self.version, addr);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NegotiationError {
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("no codec in common and none we can transcode")]
    NoCodec,
    #[error("SRTP offered without a usable a=crypto line")]
    NoCrypto,
}

fn is_savp(m: &Media) -> bool {
    m.proto.contains("SAVP")
}

fn known_codec(m: &RtpMap) -> Option<Codec> {
    Codec::from_rtpmap(&m.encoding, m.clock_rate)
}

fn is_te(m: &RtpMap) -> bool {
    m.encoding.eq_ignore_ascii_case("telephone-event")
}

/// The first a=crypto line we support (no MKI, no session parameters we
/// would have to refuse).
fn their_crypto(m: &Media) -> Option<CryptoAttr> {
    CryptoAttr::first_usable(m.attrs("crypto"))
}

fn remote_rtp(sdp: &Sdp, idx: usize) -> Option<SocketAddr> {
    let ip = sdp.media_addr(idx)?;
    let port = sdp.media.get(idx)?.port;
    (!ip.is_unspecified() && port != 0).then_some(SocketAddr::new(ip, port))
}

/// Record what an offer from this leg tells us (where to send, its key).
pub fn take_offer(leg: &mut LegSdp, offer: &Sdp, raw: &[u8]) -> Result<usize, NegotiationError> {
    let idx = offer.audio_index().ok_or(NegotiationError::NoAudio)?;
    let m = &offer.media[idx];
    leg.savp = is_savp(m);
    leg.media.rtp_addr = remote_rtp(offer, idx);
    leg.media.rtcp_port = m.rtcp_port();
    if leg.savp {
        let c = their_crypto(m).ok_or(NegotiationError::NoCrypto)?;
        leg.ensure_key(c.tag, c.suite);
        leg.media.srtp_recv = Some((c.suite, c.key));
    } else {
        leg.media.srtp_recv = None;
        leg.media.srtp_send = None;
        leg.our_key = None;
    }
    leg.last_received = Some(raw.to_vec());
    Ok(idx)
}

/// The offer we send leg `to`, made from the offer leg `from` sent us.
/// Codecs are the caller's; G.711 is added when missing (carriers need it,
/// we transcode), and telephone-event when missing (digits the other side
/// sends as SIP INFO can then reach this leg as RTP events).
pub fn make_offer(from_offer: &Sdp, to: &mut LegSdp, addr: IpAddr, port: u16, rtcp_port: u16) -> Result<Vec<u8>, NegotiationError> {
    let idx = from_offer.audio_index().ok_or(NegotiationError::NoAudio)?;
    let mut sdp = from_offer.clone();
    to.next_origin(&mut sdp, addr);
    sdp.set_connection(addr);
    sdp.session.retain(|(k, v)| !(*k == 'a' && (v.starts_with("ice-") || v.starts_with("fingerprint") || v.starts_with("group:") || v.starts_with("msid-semantic"))));
    for (i, m) in sdp.media.iter_mut().enumerate() {
        if i != idx {
            m.port = 0; // only audio is anchored; other streams are declined
            continue;
        }
        let mut maps = m.rtpmaps();
        let has_g711 = maps.iter().any(|r| matches!(known_codec(r), Some(Codec::Pcmu | Codec::Pcma)));
        if !has_g711 && maps.iter().any(|r| known_codec(r).is_some()) {
            maps.push(RtpMap { pt: 0, encoding: "PCMU".into(), clock_rate: 8000, channels: None, fmtp: None });
            maps.push(RtpMap { pt: 8, encoding: "PCMA".into(), clock_rate: 8000, channels: None, fmtp: None });
        }
        if !maps.iter().any(is_te) {
            let used: Vec<u8> = maps.iter().map(|r| r.pt).collect();
            let pt = (101..=127).find(|p| !used.contains(p)).unwrap_or(101);
            maps.push(RtpMap { pt, encoding: "telephone-event".into(), clock_rate: 8000, channels: None, fmtp: Some("0-16".into()) });
        }
        if maps.is_empty() {
            return Err(NegotiationError::NoCodec);
        }
        // Formats without an rtpmap we understand (dynamic ones we know
        // nothing of) are dropped: we cannot say what they are.
        m.set_formats(&maps);
        m.port = port;
        for a in ["rtcp", "rtcp-mux", "crypto", "candidate", "ice-ufrag", "ice-pwd", "ice-options", "fingerprint", "setup", "mid", "ssrc", "ssrc-group", "msid", "extmap", "rtcp-rsize", "end-of-candidates"] {
            m.remove_attrs(a);
        }
        m.push_attr("rtcp", Some(&rtcp_port.to_string()));
        if to.savp {
            to.ensure_key(1, to.our_key.as_ref().map(|k| k.1).unwrap_or(SrtpSuite::AesCm128HmacSha1_80));
            m.proto = "RTP/SAVP".into();
            if let Some(line) = to.crypto_line() {
                m.push_attr("crypto", Some(&line));
            }
        } else {
            m.proto = "RTP/AVP".into();
        }
    }
    let bytes = sdp.to_bytes();
    to.last_sent = Some(bytes.clone());
    Ok(bytes)
}

/// Record what an answer from this leg tells us: where to send, its key,
/// the codec it chose, its telephone-event type.
pub fn take_answer(leg: &mut LegSdp, answer: &Sdp, raw: &[u8]) -> Result<(), NegotiationError> {
    let idx = answer.audio_index().ok_or(NegotiationError::NoAudio)?;
    let m = &answer.media[idx];
    leg.media.rtp_addr = remote_rtp(answer, idx);
    leg.media.rtcp_port = m.rtcp_port();
    let maps = m.rtpmaps();
    leg.media.codec = maps.iter().find_map(|r| known_codec(r).map(|c| (c, r.pt)));
    leg.media.telephone_event = maps.iter().find(|r| is_te(r)).map(|r| r.pt);
    if leg.savp {
        let c = their_crypto(m).ok_or(NegotiationError::NoCrypto)?;
        leg.media.srtp_recv = Some((c.suite, c.key));
    }
    leg.last_received = Some(raw.to_vec());
    Ok(())
}

/// The answer we send leg `to` for the offer it sent (`offer`), now that
/// the other leg chose `other_codec`. The same codec when `to` offered it
/// (passed through), else the first codec of its offer we can transcode.
#[allow(clippy::too_many_arguments)]
pub fn make_answer(offer: &Sdp, to: &mut LegSdp, other_codec: Option<(Codec, u8)>, direction: Direction, addr: IpAddr, port: u16, rtcp_port: u16) -> Result<Vec<u8>, NegotiationError> {
    let idx = offer.audio_index().ok_or(NegotiationError::NoAudio)?;
    let m = &offer.media[idx];
    let maps = m.rtpmaps();
    let same = other_codec.and_then(|(c, _)| maps.iter().find(|r| known_codec(r) == Some(c)));
    let chosen = same.or_else(|| maps.iter().find(|r| known_codec(r).is_some()));
    let chosen = match (chosen, other_codec) {
        (Some(c), _) => c.clone(),
        // Neither leg has a codec we know: pass the first one through.
        (None, None) => maps.iter().find(|r| !is_te(r)).cloned().ok_or(NegotiationError::NoCodec)?,
        (None, Some(_)) => return Err(NegotiationError::NoCodec),
    };
    let te = maps.iter().find(|r| is_te(r)).cloned();
    to.media.codec = known_codec(&chosen).map(|c| (c, chosen.pt));
    to.media.telephone_event = te.as_ref().map(|t| t.pt);

    use std::fmt::Write as _;
    to.version += 1;
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(400);
    let _ = write!(s, "v=0\r\no=tsunagu {} {} IN {fam} {addr}\r\ns=Tsunagu\r\nc=IN {fam} {addr}\r\nt=0 0\r\n", to.session_id, to.version);
    for (i, om) in offer.media.iter().enumerate() {
        if i != idx {
            let _ = write!(s, "m={} 0 {} {}\r\n", om.kind, om.proto, om.formats.first().map(String::as_str).unwrap_or("0"));
            continue;
        }
        let mut fmts = vec![chosen.clone()];
        fmts.extend(te.clone());
        let pts: Vec<String> = fmts.iter().map(|f| f.pt.to_string()).collect();
        let proto = if to.savp { "RTP/SAVP" } else { "RTP/AVP" };
        let _ = write!(s, "m=audio {port} {proto} {}\r\n", pts.join(" "));
        for f in &fmts {
            let ch = f.channels.map(|c| format!("/{c}")).unwrap_or_default();
            let _ = write!(s, "a=rtpmap:{} {}/{}{}\r\n", f.pt, f.encoding, f.clock_rate, ch);
            if let Some(p) = &f.fmtp {
                let _ = write!(s, "a=fmtp:{} {}\r\n", f.pt, p);
            }
        }
        let _ = write!(s, "a=rtcp:{rtcp_port}\r\na=ptime:20\r\n");
        if to.savp {
            if let Some(line) = to.crypto_line() {
                let _ = write!(s, "a=crypto:{line}\r\n");
            }
        }
        let _ = write!(s, "a={}\r\n", direction.as_str());
    }
    let bytes = s.into_bytes();
    to.last_sent = Some(bytes.clone());
    Ok(bytes)
}

/// The audio direction of an SDP (sendrecv when absent).
pub fn audio_direction(sdp: &Sdp) -> Direction {
    sdp.audio_index().map(|i| sdp.media[i].direction()).unwrap_or(Direction::SendRecv)
}

/// Whether an offer only refreshes the session (same origin version as
/// the last one from that leg): answered locally, not passed on.
pub fn is_unchanged(last: Option<&[u8]>, offer: &Sdp) -> bool {
    let Some(last) = last.and_then(|l| Sdp::parse(l).ok()) else { return false };
    let origin = |s: &Sdp| s.session.iter().find(|(k, _)| *k == 'o').map(|(_, v)| v.clone());
    origin(&last).is_some() && origin(&last) == origin(offer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPUS_SRTP_OFFER: &str = "v=0\r\no=app 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/SAVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:101 telephone-event/48000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=rtcp-mux\r\na=sendrecv\r\n\
m=video 5000 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\n";

    const G711_ANSWER: &str = "v=0\r\no=carrier 9 9 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\nm=video 0 RTP/AVP 96\r\n";

    fn addr() -> IpAddr {
        "198.51.100.1".parse().unwrap()
    }

    #[test]
    fn opus_srtp_caller_to_plain_g711_carrier_is_transcoded_with_keys_per_leg() {
        let offer = Sdp::parse(OPUS_SRTP_OFFER.as_bytes()).unwrap();
        let mut a = LegSdp::new(false);
        take_offer(&mut a, &offer, OPUS_SRTP_OFFER.as_bytes()).unwrap();
        assert!(a.savp);
        assert_eq!(a.media.rtp_addr, Some("10.0.0.5:4000".parse().unwrap()));
        let their_key = a.media.srtp_recv.clone().unwrap().1;

        // The carrier leg is plain RTP: a B leg made without SAVP.
        let mut b = LegSdp::new(false);
        let b_offer = make_offer(&offer, &mut b, addr(), 20000, 20001).unwrap();
        let b_offer_text = String::from_utf8(b_offer).unwrap();
        assert!(b_offer_text.contains("m=audio 20000 RTP/AVP 111 101 0 8\r\n"), "{b_offer_text}");
        assert!(b_offer_text.contains("c=IN IP4 198.51.100.1"));
        assert!(b_offer_text.contains("a=rtcp:20001"));
        assert!(!b_offer_text.contains("rtcp-mux"), "we relay RTCP on its own port");
        assert!(!b_offer_text.contains("crypto"), "keys never cross legs");
        assert!(b_offer_text.contains("m=video 0 "), "video is declined");

        let answer = Sdp::parse(G711_ANSWER.as_bytes()).unwrap();
        take_answer(&mut b, &answer, G711_ANSWER.as_bytes()).unwrap();
        assert_eq!(b.media.codec, Some((Codec::Pcmu, 0)));
        assert_eq!(b.media.telephone_event, Some(101));

        let a_answer = make_answer(&offer, &mut a, b.media.codec, Direction::SendRecv, addr(), 20002, 20003).unwrap();
        let text = String::from_utf8(a_answer).unwrap();
        // The caller keeps Opus (no G.711 offered): the server transcodes.
        assert!(text.contains("m=audio 20002 RTP/SAVP 111 101\r\n"), "{text}");
        assert_eq!(a.media.codec, Some((Codec::Opus, 111)));
        let our = text.lines().find_map(|l| l.strip_prefix("a=crypto:")).unwrap();
        let our = CryptoAttr::parse(our).unwrap();
        assert_eq!(our.tag, 1);
        assert_ne!(our.key, their_key, "our key is our own");
        assert_eq!(a.media.srtp_send.as_ref().map(|k| &k.1), Some(&our.key));
        assert!(text.contains("m=video 0 "), "same number of m= lines as the offer");
        Sdp::parse(text.as_bytes()).unwrap();
    }

    #[test]
    fn common_codec_passes_through() {
        let offer_text = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\na=sendonly\r\n";
        let offer = Sdp::parse(offer_text.as_bytes()).unwrap();
        let mut a = LegSdp::new(false);
        take_offer(&mut a, &offer, offer_text.as_bytes()).unwrap();
        let mut b = LegSdp::new(false);
        let b_offer = String::from_utf8(make_offer(&offer, &mut b, addr(), 20000, 20001).unwrap()).unwrap();
        assert!(b_offer.contains("a=sendonly"), "hold is passed on");
        assert!(b_offer.contains("telephone-event"), "we add telephone-event for DTMF interworking");
        let ans_text = "v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=recvonly\r\n";
        let ans = Sdp::parse(ans_text.as_bytes()).unwrap();
        take_answer(&mut b, &ans, ans_text.as_bytes()).unwrap();
        assert_eq!(audio_direction(&ans), Direction::RecvOnly);
        let a_ans = String::from_utf8(make_answer(&offer, &mut a, b.media.codec, Direction::RecvOnly, addr(), 20002, 20003).unwrap()).unwrap();
        assert!(a_ans.contains("m=audio 20002 RTP/AVP 0\r\n"), "{a_ans}");
        assert!(a_ans.contains("a=recvonly"));
        assert_eq!(a.media.codec, b.media.codec);
    }

    #[test]
    fn unusable_offers_are_refused() {
        let no_audio = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let mut a = LegSdp::new(false);
        assert_eq!(take_offer(&mut a, &Sdp::parse(no_audio.as_bytes()).unwrap(), b""), Err(NegotiationError::NoAudio));
        let savp_without_key = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert_eq!(take_offer(&mut a, &Sdp::parse(savp_without_key.as_bytes()).unwrap(), b""), Err(NegotiationError::NoCrypto));
        let unknown = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 97\r\na=rtpmap:97 SPEEX/8000\r\n";
        let offer = Sdp::parse(unknown.as_bytes()).unwrap();
        let mut b = LegSdp::new(false);
        // Passed through as offered; the answer may still pick it.
        let b_offer = String::from_utf8(make_offer(&offer, &mut b, addr(), 20000, 20001).unwrap()).unwrap();
        assert!(b_offer.contains("SPEEX"));
        assert_eq!(make_answer(&offer, &mut a, Some((Codec::Pcmu, 0)), Direction::SendRecv, addr(), 1, 2), Err(NegotiationError::NoCodec));
    }
}
