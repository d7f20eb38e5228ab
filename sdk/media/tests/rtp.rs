//! RTP/RTCP parsing: hand-built packets, and random bytes through every parser.

use tsunagu_media::rtcp::{rtcp_compound, RtcpHeader, RTCP_RR, RTCP_SDES, RTCP_SR};
use tsunagu_media::rtp::{classify, is_rtcp, PacketClass, RtpHeader, RtpPacket};
use tsunagu_media::{MediaError, Relay, RelayConfig, RelayLeg, LegSide};

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn parses_fixed_header() {
    let p = rtp(0, true, 0xfffe, 160, 0xdeadbeef, &[1, 2, 3]);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.version, 2);
    assert!(h.marker && !h.padding && !h.extension);
    assert_eq!((h.payload_type, h.sequence, h.timestamp, h.ssrc), (0, 0xfffe, 160, 0xdeadbeef));
    assert_eq!(h.payload_offset, 12);
    let pkt = RtpPacket::parse(&p).unwrap();
    assert_eq!(pkt.payload(), &[1, 2, 3]);
    assert_eq!(pkt.csrcs().count(), 0);
    assert_eq!(pkt.extension(), None);
}

#[test]
fn parses_csrcs_extension_and_padding() {
    let mut p = rtp(111, false, 7, 960, 42, &[]);
    p[0] = 0x80 | 0x20 | 0x10 | 2; // P, X, CC=2
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one word of extension
    p.extend_from_slice(&[9, 9, 9]); // payload
    p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
    let pkt = RtpPacket::parse(&p).unwrap();
    let h = pkt.header();
    assert_eq!(h.csrc_count, 2);
    assert_eq!(h.payload_offset, 12 + 8 + 8);
    assert_eq!(pkt.csrcs().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(pkt.extension(), Some((0xbede, &[0x10, 0xaa, 0, 0][..])));
    assert_eq!(pkt.payload(), &[9, 9, 9]);
    assert_eq!(pkt.padding_len(), 3);
}

#[test]
fn typed_errors() {
    assert_eq!(RtpHeader::parse(&[0x80; 5]), Err(MediaError::TooShort { need: 12, have: 5 }));
    let mut v1 = rtp(0, false, 1, 1, 1, &[0; 4]);
    v1[0] = 0x40;
    assert_eq!(RtpHeader::parse(&v1), Err(MediaError::BadVersion(1)));
    let mut cc = rtp(0, false, 1, 1, 1, &[0; 4]);
    cc[0] |= 0x0f;
    assert_eq!(RtpHeader::parse(&cc), Err(MediaError::CsrcOverrun { count: 15 }));
    let mut x = rtp(0, false, 1, 1, 1, &[0xbe, 0xde, 0xff, 0xff]);
    x[0] |= 0x10;
    assert_eq!(RtpHeader::parse(&x), Err(MediaError::ExtensionOverrun { words: 0xffff }));
    let mut x2 = rtp(0, false, 1, 1, 1, &[0xbe]);
    x2[0] |= 0x10;
    assert_eq!(RtpHeader::parse(&x2), Err(MediaError::TooShort { need: 16, have: 13 }));
    let mut pad = rtp(0, false, 1, 1, 1, &[1, 2, 0]);
    pad[0] |= 0x20;
    assert_eq!(RtpPacket::parse(&pad), Err(MediaError::BadPadding { count: 0, available: 3 }));
    let mut pad2 = rtp(0, false, 1, 1, 1, &[1, 2, 4]);
    pad2[0] |= 0x20;
    assert_eq!(RtpPacket::parse(&pad2), Err(MediaError::BadPadding { count: 4, available: 3 }));
    // Header-only parsing ignores padding (SRTP: the last byte is the auth tag).
    assert!(RtpHeader::parse(&pad2).is_ok());
    let rtcp_like = rtp(72, true, 1, 1, 1, &[]);
    assert_eq!(RtpHeader::parse(&rtcp_like), Err(MediaError::IsRtcp(200)));
}

fn rtcp(pt: u8, count: u8, ssrc: u32, body_words: u16) -> Vec<u8> {
    let mut p = vec![0x80 | count, pt];
    p.extend_from_slice(&(body_words + 1).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(p.len() + 4 * usize::from(body_words), 0);
    p
}

#[test]
fn rtcp_classification() {
    // RFC 5761 §4: second byte 192..=223 is RTCP, i.e. RTP PT 64..95 with the marker.
    for pt in 200..=204u8 {
        assert!(is_rtcp(&rtcp(pt, 0, 1, 0)), "{pt}");
        // The same byte as RTP: PT 72..=76 with the marker bit.
        assert!(is_rtcp(&rtp(pt - 128, true, 1, 1, 1, &[])));
    }
    assert!(is_rtcp(&[0x80, 192]) && is_rtcp(&[0x80, 223]));
    assert!(!is_rtcp(&[0x80, 191]) && !is_rtcp(&[0x80, 224]));
    // PT 72 without the marker is (discouraged but) RTP.
    assert!(!is_rtcp(&rtp(72, false, 1, 1, 1, &[])));
    assert!(!is_rtcp(&rtp(0, true, 1, 1, 1, &[])));
    assert!(!is_rtcp(&[]) && !is_rtcp(&[0x80]));
    // Version 1 is neither.
    assert!(!is_rtcp(&[0x40, 200, 0, 1]));
    assert_eq!(classify(&[0x00, 0x01]), PacketClass::Stun);
    assert_eq!(classify(&[22, 0xfe]), PacketClass::Dtls);
    assert_eq!(classify(&rtp(0, false, 1, 1, 1, &[])), PacketClass::Rtp);
    assert_eq!(classify(&[0xc0, 0]), PacketClass::Unknown);
}

#[test]
fn rtcp_header_and_compound() {
    let sr = rtcp(RTCP_SR, 0, 0x1234, 5);
    let h = RtcpHeader::parse(&sr).unwrap();
    assert_eq!((h.version, h.packet_type, h.length_words, h.ssrc), (2, RTCP_SR, 6, Some(0x1234)));
    assert_eq!(h.packet_len(), 28);
    let mut compound = rtcp(RTCP_RR, 0, 7, 0);
    compound.extend_from_slice(&rtcp(RTCP_SDES, 1, 7, 1));
    let parts: Vec<_> = rtcp_compound(&compound).map(|r| r.unwrap().0.packet_type).collect();
    assert_eq!(parts, vec![RTCP_RR, RTCP_SDES]);
    // Empty BYE: header only, no SSRC.
    assert_eq!(RtcpHeader::parse(&[0x80, 203, 0, 0]).unwrap().ssrc, None);
    // Errors.
    assert_eq!(RtcpHeader::parse(&[0x80, 200]), Err(MediaError::TooShort { need: 4, have: 2 }));
    assert_eq!(RtcpHeader::parse(&[0x80, 100, 0, 0]), Err(MediaError::NotRtcp(100)));
    assert_eq!(RtcpHeader::parse(&[0x40, 200, 0, 0]), Err(MediaError::BadVersion(1)));
    assert_eq!(RtcpHeader::parse(&sr[..20]), Err(MediaError::RtcpLengthOverrun { words: 6, have: 20 }));
    let mut trailing = rtcp(RTCP_RR, 0, 7, 0);
    trailing.extend_from_slice(&[0x80, 201, 0, 9]);
    let r: Vec<_> = rtcp_compound(&trailing).collect();
    assert_eq!(r.len(), 2);
    assert!(r[1].is_err());
}

/// Deterministic xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let a: std::net::SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let b: std::net::SocketAddr = "192.0.2.2:4000".parse().unwrap();
    let base = std::time::Instant::now();
    let mut relays = [RelayConfig::rtp(true), RelayConfig::rtp(false), RelayConfig::rtcp()].map(|c| {
        Relay::new(base, c, RelayLeg::new(Some(a)), RelayLeg::new(Some(b)).with_latch_any_source(true))
    });
    let mut accepted = 0u32;
    for i in 0..200_000u32 {
        let mut buf: Vec<u8> = if i % 4 == 3 {
            // Mutate a valid packet with CSRCs, extension and padding: flip a
            // few bytes and cut it somewhere, to reach the overrun checks.
            let mut p = rtp(111, false, i as u16, i, 42, &[]);
            p[0] = 0x80 | 0x20 | 0x10 | 2;
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0, 9, 9, 0, 2]);
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() as usize) % p.len();
                p[at] ^= rng.next() as u8;
            }
            let cut = (rng.next() as usize) % (p.len() + 1);
            p.truncate(cut);
            p
        } else {
            let len = (rng.next() % 80) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        };
        // Bias half the inputs towards version 2 so the deeper paths run.
        if i % 2 == 0 {
            if let Some(b0) = buf.first_mut() {
                *b0 = 0x80 | (*b0 & 0x3f);
            }
        }
        let _ = classify(&buf);
        let _ = is_rtcp(&buf);
        if let Ok(h) = RtpHeader::parse(&buf) {
            assert!(h.payload_offset <= buf.len());
        }
        if let Ok(p) = RtpPacket::parse(&buf) {
            accepted += 1;
            let _ = (p.payload(), p.csrcs().count(), p.extension());
        }
        if let Ok(h) = RtcpHeader::parse(&buf) {
            assert!(h.packet_len() <= buf.len());
        }
        for r in rtcp_compound(&buf).take(100) {
            let _ = r;
        }
        let from = if rng.next() & 1 == 0 { a } else { b };
        let side = if rng.next() & 1 == 0 { LegSide::A } else { LegSide::B };
        let now = base + std::time::Duration::from_micros(u64::from(i) * 20);
        for r in relays.iter_mut() {
            let _ = r.handle_packet(now, side, from, &buf);
            while r.poll_event().is_some() {}
        }
    }
    assert!(accepted > 0, "the biased half must reach the valid paths");
    for r in &relays {
        for side in [LegSide::A, LegSide::B] {
            let s = r.leg(side).stats();
            assert!(s.packets_in + s.dropped.total() > 0);
        }
    }
}
