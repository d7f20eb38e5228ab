//! The latching relay on virtual time: one base Instant, Durations added.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tsunagu_media::relay::{DropReason, LegSide, Relay, RelayConfig, RelayEvent, RelayLeg};
use tsunagu_media::rtp::PacketClass;
use tsunagu_media::MediaError;

const PHONE_SSRC: u32 = 0x1111_1111;
const TRUNK_SSRC: u32 = 0x2222_2222;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

struct Call {
    base: Instant,
    relay: Relay,
    phone_sdp: SocketAddr,
    trunk: SocketAddr,
}

/// Leg A: a NAT'd phone whose SDP names its private address; leg B: a carrier
/// trunk, strict, reachable at its SDP address.
fn call() -> Call {
    let base = Instant::now();
    let phone_sdp = addr("10.0.0.5:40000");
    let trunk = addr("198.51.100.7:20000");
    let relay = Relay::new(
        base,
        RelayConfig::rtp(true),
        RelayLeg::new(Some(phone_sdp)).with_latch_any_source(true),
        RelayLeg::new(Some(trunk)),
    );
    Call { base, relay, phone_sdp, trunk }
}

fn at(c: &Call, ms: u64) -> Instant {
    c.base + Duration::from_millis(ms)
}

#[test]
fn two_way_forwarding() {
    let a = addr("192.0.2.10:5004");
    let b = addr("192.0.2.20:6004");
    let base = Instant::now();
    let mut r = Relay::new(base, RelayConfig::rtp(false), RelayLeg::new(Some(a)), RelayLeg::new(Some(b)));
    for i in 0..10u16 {
        let now = base + Duration::from_millis(20 * u64::from(i));
        let p = rtp(i, PHONE_SSRC);
        let t = r.handle_packet(now, LegSide::A, a, &p).expect("a -> b");
        assert_eq!(t.to, b);
        assert_eq!(&t.bytes[..], &p[..]);
        let q = rtp(1000 + i, TRUNK_SSRC);
        let t = r.handle_packet(now, LegSide::B, b, &q).expect("b -> a");
        assert_eq!(t.to, a);
        assert_eq!(&t.bytes[..], &q[..]);
    }
    let (sa, sb) = (r.leg(LegSide::A).stats(), r.leg(LegSide::B).stats());
    assert_eq!((sa.packets_in, sa.packets_out, sb.packets_in, sb.packets_out), (10, 10, 10, 10));
    assert_eq!(sa.bytes_in, 10 * 172);
    assert_eq!(sb.bytes_out, 10 * 172);
    assert_eq!(sa.dropped.total() + sb.dropped.total(), 0);
    assert_eq!(r.poll_event(), Some(RelayEvent::Latched { side: LegSide::A, addr: a, ssrc: PHONE_SSRC }));
    assert_eq!(r.poll_event(), Some(RelayEvent::Latched { side: LegSide::B, addr: b, ssrc: TRUNK_SSRC }));
    assert_eq!(r.poll_event(), None);
    assert_eq!(r.idle_since(base + Duration::from_millis(5180)), Duration::from_secs(5));
}

#[test]
fn latches_onto_the_real_source_behind_nat() {
    let mut c = call();
    let nat = addr("203.0.113.9:61000");
    // Before the phone speaks, the trunk's audio goes to the SDP address.
    let t = c.relay.handle_packet(at(&c, 0), LegSide::B, c.trunk, &rtp(1, TRUNK_SSRC)).unwrap();
    assert_eq!(t.to, c.phone_sdp);
    // The phone's first packet comes from its NAT binding, not its SDP address.
    let t = c.relay.handle_packet(at(&c, 20), LegSide::A, nat, &rtp(500, PHONE_SSRC)).unwrap();
    assert_eq!(t.to, c.trunk);
    assert_eq!(c.relay.leg(LegSide::A).latched_addr(), Some(nat));
    assert_eq!(c.relay.poll_event(), Some(RelayEvent::Latched { side: LegSide::B, addr: c.trunk, ssrc: TRUNK_SSRC }));
    assert_eq!(c.relay.poll_event(), Some(RelayEvent::Latched { side: LegSide::A, addr: nat, ssrc: PHONE_SSRC }));
    // From now on the trunk's audio goes where the phone really is.
    let t = c.relay.handle_packet(at(&c, 40), LegSide::B, c.trunk, &rtp(2, TRUNK_SSRC)).unwrap();
    assert_eq!(t.to, nat);
}

#[test]
fn strict_leg_only_latches_from_its_sdp_address() {
    let mut c = call();
    let stranger = addr("203.0.113.66:1234");
    assert_eq!(c.relay.route(at(&c, 0), LegSide::B, stranger, &rtp(1, 9)), Err(DropReason::UnknownSource));
    assert_eq!(c.relay.leg(LegSide::B).latched_addr(), None);
    assert_eq!(c.relay.leg(LegSide::B).stats().dropped.unknown_source, 1);
    // An expected SSRC gates the first latch, even from the SDP address.
    c.relay.set_expected_ssrc(LegSide::B, Some(TRUNK_SSRC));
    assert_eq!(c.relay.route(at(&c, 1), LegSide::B, c.trunk, &rtp(1, 9)), Err(DropReason::ForeignSsrc { ssrc: 9 }));
    assert_eq!(c.relay.route(at(&c, 2), LegSide::B, c.trunk, &rtp(1, TRUNK_SSRC)), Ok(c.phone_sdp));
}

#[test]
fn wifi_to_lte_relatches_at_the_first_packet_and_loses_nothing() {
    let mut c = call();
    let wifi = addr("203.0.113.9:61000");
    let lte = addr("100.64.12.34:50123");
    let mut seq = 100u16;
    let mut trunk_seq = 7000u16;
    let mut ms = 0;
    for _ in 0..50 {
        assert_eq!(c.relay.handle_packet(at(&c, ms), LegSide::A, wifi, &rtp(seq, PHONE_SSRC)).unwrap().to, c.trunk);
        assert_eq!(c.relay.handle_packet(at(&c, ms), LegSide::B, c.trunk, &rtp(trunk_seq, TRUNK_SSRC)).unwrap().to, wifi);
        seq += 1;
        trunk_seq += 1;
        ms += 20;
    }
    while c.relay.poll_event().is_some() {}

    // The phone moves: the very next packet of the same stream comes from LTE.
    let t = c.relay.handle_packet(at(&c, ms), LegSide::A, lte, &rtp(seq, PHONE_SSRC)).expect("first LTE packet is forwarded");
    assert_eq!(t.to, c.trunk);
    assert_eq!(
        c.relay.poll_event(),
        Some(RelayEvent::Relatched { side: LegSide::A, from: wifi, to: lte, ssrc: PHONE_SSRC })
    );
    // The other direction follows at once.
    let t = c.relay.handle_packet(at(&c, ms), LegSide::B, c.trunk, &rtp(trunk_seq, TRUNK_SSRC)).unwrap();
    assert_eq!(t.to, lte);

    // Stragglers still arriving over Wi-Fi are forwarded, but do not pull the latch back.
    for late in [seq - 2, seq - 1] {
        assert_eq!(c.relay.handle_packet(at(&c, ms + 5), LegSide::A, wifi, &rtp(late, PHONE_SSRC)).unwrap().to, c.trunk);
    }
    assert_eq!(c.relay.leg(LegSide::A).latched_addr(), Some(lte));
    assert_eq!(c.relay.leg(LegSide::A).stats().stale_forwarded, 2);
    assert_eq!(c.relay.poll_event(), None);

    for _ in 0..50 {
        seq += 1;
        trunk_seq += 1;
        ms += 20;
        assert_eq!(c.relay.handle_packet(at(&c, ms), LegSide::A, lte, &rtp(seq, PHONE_SSRC)).unwrap().to, c.trunk);
        assert_eq!(c.relay.handle_packet(at(&c, ms), LegSide::B, c.trunk, &rtp(trunk_seq, TRUNK_SSRC)).unwrap().to, lte);
    }
    let a = c.relay.leg(LegSide::A).stats();
    let b = c.relay.leg(LegSide::B).stats();
    assert_eq!(a.packets_in, 50 + 1 + 2 + 50);
    assert_eq!(b.packets_in, 50 + 1 + 50);
    assert_eq!(a.dropped.total() + b.dropped.total(), 0, "no packet lost");
}

#[test]
fn injected_packet_from_a_stranger_is_dropped_and_keeps_the_latch() {
    let mut c = call();
    let nat = addr("203.0.113.9:61000");
    let attacker = addr("198.18.0.66:40000");
    c.relay.handle_packet(at(&c, 0), LegSide::A, nat, &rtp(1, PHONE_SSRC)).unwrap();
    c.relay.handle_packet(at(&c, 0), LegSide::B, c.trunk, &rtp(1, TRUNK_SSRC)).unwrap();
    while c.relay.poll_event().is_some() {}
    for (i, side) in [LegSide::A, LegSide::B].into_iter().enumerate() {
        let r = c.relay.route(at(&c, 10 + i as u64), side, attacker, &rtp(2, 0xbad));
        assert_eq!(r, Err(DropReason::ForeignSsrc { ssrc: 0xbad }));
    }
    assert_eq!(c.relay.leg(LegSide::A).latched_addr(), Some(nat));
    assert_eq!(c.relay.leg(LegSide::B).latched_addr(), Some(c.trunk));
    assert_eq!(c.relay.leg(LegSide::A).stats().dropped.foreign_ssrc, 1);
    assert_eq!(c.relay.leg(LegSide::B).stats().dropped.foreign_ssrc, 1);
    assert_eq!(c.relay.poll_event(), None);
    // Media keeps flowing to the real parties.
    assert_eq!(c.relay.handle_packet(at(&c, 20), LegSide::B, c.trunk, &rtp(2, TRUNK_SSRC)).unwrap().to, nat);
    assert_eq!(c.relay.handle_packet(at(&c, 20), LegSide::A, nat, &rtp(2, PHONE_SSRC)).unwrap().to, c.trunk);
    // Dropped packets do not count as activity.
    assert_eq!(c.relay.leg(LegSide::A).last_received(), Some(at(&c, 20)));
}

#[test]
fn ssrc_change_from_the_latched_address_is_accepted() {
    let mut c = call();
    let nat = addr("203.0.113.9:61000");
    c.relay.handle_packet(at(&c, 0), LegSide::A, nat, &rtp(1, PHONE_SSRC)).unwrap();
    let _ = c.relay.poll_event();
    assert!(c.relay.handle_packet(at(&c, 20), LegSide::A, nat, &rtp(9000, 0x3333)).is_some());
    assert_eq!(
        c.relay.poll_event(),
        Some(RelayEvent::SsrcChanged { side: LegSide::A, addr: nat, old: PHONE_SSRC, new: 0x3333 })
    );
    assert_eq!(c.relay.leg(LegSide::A).latched_ssrc(), Some(0x3333));
    // The old SSRC from elsewhere is now a stranger.
    assert!(c.relay.handle_packet(at(&c, 40), LegSide::A, addr("198.18.0.1:1"), &rtp(2, PHONE_SSRC)).is_none());
}

#[test]
fn garbage_is_dropped_without_panic() {
    let mut c = call();
    let nat = addr("203.0.113.9:61000");
    let mut v1 = rtp(1, PHONE_SSRC);
    v1[0] = 0x40;
    let mut bad_cc = rtp(1, PHONE_SSRC)[..14].to_vec();
    bad_cc[0] |= 0x0f;
    let big = {
        let mut p = rtp(1, PHONE_SSRC);
        p.resize(2000, 0);
        p
    };
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::WrongKind(PacketClass::Unknown)),
        (vec![0x80], DropReason::WrongKind(PacketClass::Unknown)),
        (rtp(1, PHONE_SSRC)[..11].to_vec(), DropReason::Malformed(MediaError::TooShort { need: 12, have: 11 })),
        // Version 1: first byte 0x40, which RFC 7983 assigns to TURN channels.
        (v1, DropReason::WrongKind(PacketClass::TurnChannel)),
        (vec![0xc0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], DropReason::WrongKind(PacketClass::Unknown)),
        (bad_cc, DropReason::Malformed(MediaError::CsrcOverrun { count: 15 })),
        (vec![0x00, 0x01, 0x00, 0x00], DropReason::WrongKind(PacketClass::Stun)),
        (vec![22, 0xfe, 0xfd], DropReason::WrongKind(PacketClass::Dtls)),
        (big, DropReason::Malformed(MediaError::TooLarge { len: 2000, max: 1500 })),
        (b"INVITE sip:x SIP/2.0\r\n".to_vec(), DropReason::WrongKind(PacketClass::TurnChannel)),
        (b"SIP/2.0 200 OK\r\n".to_vec(), DropReason::WrongKind(PacketClass::Unknown)),
        (vec![0xff; 40], DropReason::WrongKind(PacketClass::Unknown)),
    ];
    for (i, (p, why)) in cases.iter().enumerate() {
        assert_eq!(c.relay.route(at(&c, i as u64), LegSide::A, nat, p), Err(*why), "case {i}");
    }
    assert_eq!(c.relay.leg(LegSide::A).latched_addr(), None, "garbage never latches");
    let d = c.relay.leg(LegSide::A).stats().dropped;
    assert_eq!((d.malformed, d.too_large, d.wrong_kind), (2, 1, 9));
    assert_eq!(c.relay.leg(LegSide::A).stats().packets_in, 0);
    assert_eq!(c.relay.poll_event(), None);
    assert_eq!(c.relay.idle_since(at(&c, 1000)), Duration::from_secs(1));
}

#[test]
fn muxed_rtcp_is_relayed_but_never_moves_the_latch() {
    let mut c = call();
    let nat = addr("203.0.113.9:61000");
    // Before latching, RTCP from a non-SDP address is not trusted.
    assert_eq!(c.relay.route(at(&c, 0), LegSide::A, nat, &rtcp_rr(PHONE_SSRC)), Err(DropReason::UnknownSource));
    c.relay.handle_packet(at(&c, 0), LegSide::A, nat, &rtp(1, PHONE_SSRC)).unwrap();
    let t = c.relay.handle_packet(at(&c, 5), LegSide::A, nat, &rtcp_rr(PHONE_SSRC)).unwrap();
    assert_eq!(t.to, c.trunk);
    // RTCP with the right SSRC from elsewhere does not relatch.
    let other = addr("100.64.1.1:9");
    assert_eq!(c.relay.route(at(&c, 6), LegSide::A, other, &rtcp_rr(PHONE_SSRC)), Err(DropReason::UnknownSource));
    assert_eq!(c.relay.leg(LegSide::A).latched_addr(), Some(nat));
    // Without mux, RTCP on the RTP port is the wrong kind.
    let mut strict = Relay::new(c.base, RelayConfig::rtp(false), RelayLeg::new(Some(nat)), RelayLeg::new(Some(c.trunk)));
    assert_eq!(strict.route(c.base, LegSide::A, nat, &rtcp_rr(1)), Err(DropReason::WrongKind(PacketClass::Rtcp)));
}

#[test]
fn rtcp_relay_latches_on_the_sender_ssrc() {
    let base = Instant::now();
    let phone_sdp = addr("10.0.0.5:40001");
    let trunk = addr("198.51.100.7:20001");
    let wifi = addr("203.0.113.9:61001");
    let lte = addr("100.64.12.34:50124");
    let mut r = Relay::new(
        base,
        RelayConfig::rtcp(),
        RelayLeg::new(Some(phone_sdp)).with_latch_any_source(true),
        RelayLeg::new(Some(trunk)),
    );
    assert_eq!(r.route(base, LegSide::A, wifi, &rtcp_rr(PHONE_SSRC)), Ok(trunk));
    assert_eq!(r.route(base, LegSide::B, trunk, &rtcp_rr(TRUNK_SSRC)), Ok(wifi));
    assert_eq!(r.route(base, LegSide::A, wifi, &rtp(1, PHONE_SSRC)), Err(DropReason::WrongKind(PacketClass::Rtp)));
    assert_eq!(r.route(base, LegSide::A, wifi, &[0x80, 203, 0, 0]), Err(DropReason::Malformed(MediaError::RtcpNoSsrc)));
    let t5 = base + Duration::from_secs(5);
    assert_eq!(r.route(t5, LegSide::A, lte, &rtcp_rr(0xbad)), Err(DropReason::ForeignSsrc { ssrc: 0xbad }));
    assert_eq!(r.route(t5, LegSide::A, lte, &rtcp_rr(PHONE_SSRC)), Ok(trunk));
    assert_eq!(r.route(t5, LegSide::B, trunk, &rtcp_rr(TRUNK_SSRC)), Ok(lte));
}

#[test]
fn no_destination_until_the_other_leg_is_known() {
    let base = Instant::now();
    let a = addr("192.0.2.10:5004");
    let mut r = Relay::new(base, RelayConfig::default(), RelayLeg::new(Some(a)), RelayLeg::new(None).with_latch_any_source(true));
    assert_eq!(r.route(base, LegSide::A, a, &rtp(1, 1)), Err(DropReason::NoDestination));
    // The source still latched; once B speaks, both directions flow.
    let b = addr("192.0.2.99:7000");
    assert_eq!(r.route(base, LegSide::B, b, &rtp(1, 2)), Ok(a));
    assert_eq!(r.route(base, LegSide::A, a, &rtp(2, 1)), Ok(b));
    assert_eq!(r.leg(LegSide::A).stats().dropped.no_destination, 1);
    // Unlatching sends to the SDP address (none here) until the leg speaks again.
    r.unlatch(LegSide::B);
    assert_eq!(r.route(base, LegSide::A, a, &rtp(3, 1)), Err(DropReason::NoDestination));
}

#[test]
fn event_queue_is_bounded() {
    let base = Instant::now();
    let trunk = addr("198.51.100.7:20000");
    let cfg = RelayConfig { max_events: 4, ..RelayConfig::default() };
    let mut r = Relay::new(base, cfg, RelayLeg::new(None).with_latch_any_source(true), RelayLeg::new(Some(trunk)));
    for i in 0..20u16 {
        let from = SocketAddr::from(([203, 0, 113, 1], 10000 + i));
        r.handle_packet(base, LegSide::A, from, &rtp(i * 200, PHONE_SSRC)).unwrap();
    }
    assert_eq!(r.events_dropped(), 16);
    let mut n = 0;
    while r.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
}
