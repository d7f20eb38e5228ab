//! DTMF behaviour: RFC 4733 event blocks, the generated packet train, the
//! detector reporting each digit exactly once (end packets repeated,
//! retransmissions, lost ends), SIP INFO bodies, and garbage input.

use tsunagu_media::dtmf::*;
use tsunagu_media::transcode::write_rtp;
use tsunagu_media::{MediaError, RtpPacket};

const DIGITS: &str = "0123456789*#ABCD";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn event_block_round_trip() {
    let ev = DtmfEvent { event: 11, end: true, volume: 10, duration: 1200 };
    let b = event_payload(&ev);
    assert_eq!(b, [11, 0x80 | 10, 0x04, 0xB0]);
    assert_eq!(parse_event(&b).unwrap(), ev);
    // The R bit is ignored; extra bytes after the block are ignored.
    assert_eq!(
        parse_event(&[5, 0x40 | 0x3f, 0, 160, 9, 9]).unwrap(),
        DtmfEvent { event: 5, end: false, volume: 63, duration: 160 }
    );
    assert_eq!(parse_event(&[1, 2, 3]), Err(MediaError::TooShort { need: 4, have: 3 }));
    assert!(parse_event(&[]).is_err());
    // Volume is masked to 6 bits on write.
    assert_eq!(event_payload(&DtmfEvent { event: 0, end: false, volume: 0xff, duration: 0 })[1], 0x3f);
}

#[test]
fn digits_map_to_rfc4733_codes() {
    for (code, c) in DIGITS.chars().enumerate() {
        assert_eq!(char_to_event(c), Some(code as u8));
        assert_eq!(event_to_char(code as u8), Some(c));
    }
    assert_eq!(char_to_event('a'), Some(12));
    assert_eq!(char_to_event('d'), Some(15));
    assert_eq!(char_to_event('E'), None);
    assert_eq!(char_to_event(' '), None);
    assert_eq!(event_to_char(16), None); // flash
    assert_eq!(event_to_char(255), None);
}

#[test]
fn generator_builds_the_rfc4733_train() {
    let gen = DtmfGenerator::new(101, 8000, 0xABCD);
    let train = gen.packets('7', 200, 65534, 1000).unwrap();
    // Updates at 0, 50, 100, 150 ms (durations 50..200 ms minus the last),
    // then three end packets 50 ms apart.
    let parsed: Vec<_> = train
        .iter()
        .map(|p| {
            let pkt = RtpPacket::parse(&p.rtp).unwrap();
            (p.send_after_ms, *pkt.header(), parse_event(pkt.payload()).unwrap())
        })
        .collect();
    assert_eq!(parsed.len(), 6);
    let at: Vec<u32> = parsed.iter().map(|p| p.0).collect();
    assert_eq!(at, [0, 50, 100, 150, 200, 250]);
    let durations: Vec<u16> = parsed.iter().map(|p| p.2.duration).collect();
    assert_eq!(durations, [400, 800, 1200, 1600, 1600, 1600]);
    let ends: Vec<bool> = parsed.iter().map(|p| p.2.end).collect();
    assert_eq!(ends, [false, false, false, true, true, true]);
    for (i, (_, h, ev)) in parsed.iter().enumerate() {
        assert_eq!(h.payload_type, 101);
        assert_eq!(h.ssrc, 0xABCD);
        assert_eq!(h.timestamp, 1000, "all packets carry the event start");
        assert_eq!(h.sequence, 65534u16.wrapping_add(i as u16));
        assert_eq!(h.marker, i == 0);
        assert_eq!(ev.event, 7);
        assert_eq!(ev.volume, DEFAULT_VOLUME);
    }
    let bare = dtmf_packets('7', 200, 101, 8000, 0xABCD, 65534, 1000).unwrap();
    assert_eq!(bare, train.into_iter().map(|p| p.rtp).collect::<Vec<_>>());
}

#[test]
fn short_digit_is_three_end_packets_with_the_marker_on_the_first() {
    let train = dtmf_packets('#', 40, 96, 48000, 1, 0, 0).unwrap();
    assert_eq!(train.len(), 3);
    for (i, p) in train.iter().enumerate() {
        let pkt = RtpPacket::parse(p).unwrap();
        assert_eq!(pkt.header().marker, i == 0);
        assert_eq!(parse_event(pkt.payload()).unwrap(), DtmfEvent { event: 11, end: true, volume: 10, duration: 1920 });
    }
}

#[test]
fn generator_refuses_what_rfc4733_cannot_carry() {
    assert!(matches!(dtmf_packets('x', 100, 101, 8000, 1, 0, 0), Err(MediaError::BadDtmf(_))));
    assert!(matches!(dtmf_packets('1', 0, 101, 8000, 1, 0, 0), Err(MediaError::BadDtmf(_))));
    assert!(matches!(dtmf_packets('1', 100, 101, 0, 1, 0, 0), Err(MediaError::BadDtmf(_))));
    // 16-bit duration field: 1365 ms is the most at 48 kHz, 8191 ms at 8 kHz.
    assert!(dtmf_packets('1', 1365, 101, 48000, 1, 0, 0).is_ok());
    assert!(matches!(dtmf_packets('1', 1366, 101, 48000, 1, 0, 0), Err(MediaError::BadDtmf(_))));
    assert!(dtmf_packets('1', 8191, 101, 8000, 1, 0, 0).is_ok());
    assert!(dtmf_packets('1', 8192, 101, 8000, 1, 0, 0).is_err());
}

#[test]
fn every_digit_round_trips_once_through_generator_and_detector() {
    let mut det = DtmfDetector::new(101);
    let mut seq = 0u16;
    let mut ts = 5000u32;
    let mut heard = Vec::new();
    for c in DIGITS.chars() {
        let train = dtmf_packets(c, 160, 101, 8000, 42, seq, ts).unwrap();
        seq = seq.wrapping_add(train.len() as u16);
        // Retransmit the first update and the last end packet on top of the
        // three end packets.
        let mut sent = train.clone();
        sent.insert(1, train[0].clone());
        sent.push(train[train.len() - 1].clone());
        let reports: Vec<_> = sent.iter().filter_map(|p| det.push(p)).collect();
        assert_eq!(reports, [(c, 160)], "digit {c}");
        heard.push(c);
        ts += 8000;
    }
    assert_eq!(heard.iter().collect::<String>(), DIGITS);
    assert_eq!(det.poll(), None);
}

#[test]
fn detector_at_48khz_reports_milliseconds() {
    let mut det = DtmfDetector::with_clock_rate(96, 48000);
    let reports: Vec<_> =
        dtmf_packets('9', 250, 96, 48000, 1, 0, 0).unwrap().iter().filter_map(|p| det.push(p)).collect();
    assert_eq!(reports, [('9', 250)]);
}

#[test]
fn digit_whose_end_packets_were_all_lost_is_reported_when_the_next_begins() {
    let mut det = DtmfDetector::new(101);
    let one = dtmf_packets('1', 200, 101, 8000, 1, 0, 0).unwrap();
    let two = dtmf_packets('2', 120, 101, 8000, 1, 10, 4000).unwrap();
    for p in &one[..3] {
        assert_eq!(det.push(p), None);
    }
    // '1' never ended; the first packet of '2' closes it with the last
    // duration seen (150 ms).
    assert_eq!(det.push(&two[0]), Some(('1', 150)));
    let rest: Vec<_> = two[1..].iter().filter_map(|p| det.push(p)).collect();
    assert_eq!(rest, [('2', 120)]);
    // A late end packet of '1' is not reported again.
    assert_eq!(det.push(&one[5]), None);
}

#[test]
fn two_digits_completing_in_one_packet_are_both_reported() {
    let mut det = DtmfDetector::new(101);
    let one = dtmf_packets('1', 200, 101, 8000, 1, 0, 0).unwrap();
    let two = dtmf_packets('2', 40, 101, 8000, 1, 10, 4000).unwrap();
    det.push(&one[0]);
    // '2' is short: its first packet is already an end packet.
    assert_eq!(det.push(&two[0]), Some(('1', 50)));
    assert_eq!(det.poll(), Some(('2', 40)));
    assert_eq!(det.poll(), None);
    assert_eq!(det.push(&two[1]), None);
}

#[test]
fn detector_ignores_other_streams_and_non_digits() {
    let mut det = DtmfDetector::new(101);
    // Audio, another PT.
    assert_eq!(det.push(&write_rtp(false, 0, 1, 0, 1, &[0xff; 160])), None);
    // Flash (event 16) ends but is not a digit.
    let flash = DtmfEvent { event: 16, end: true, volume: 10, duration: 800 };
    assert_eq!(det.push(&write_rtp(true, 101, 2, 0, 1, &event_payload(&flash))), None);
    // Too-short payload, RTCP, nothing.
    assert_eq!(det.push(&write_rtp(true, 101, 3, 160, 1, &[1, 2])), None);
    assert_eq!(det.push(&[0x80, 200, 0, 1]), None);
    assert_eq!(det.push(&[]), None);
    // Same timestamp from another SSRC is another event.
    let end = DtmfEvent { event: 4, end: true, volume: 10, duration: 800 };
    assert_eq!(det.push(&write_rtp(true, 101, 4, 0, 1, &event_payload(&end))), None, "same key as the flash");
    assert_eq!(det.push(&write_rtp(true, 101, 4, 0, 2, &event_payload(&end))), Some(('4', 100)));
}

#[test]
fn info_dtmf_relay_bodies() {
    let relay = "application/dtmf-relay";
    assert_eq!(parse_info(relay, b"Signal=5\r\nDuration=160\r\n"), Some(('5', 160)));
    assert_eq!(parse_info(relay, b"Signal= *\nDuration= 250\n"), Some(('*', 250)));
    assert_eq!(parse_info("Application/DTMF-Relay; charset=utf-8", b"signal=#\r\nduration=100"), Some(('#', 100)));
    assert_eq!(parse_info(relay, b"Signal=a\r\n"), Some(('A', DEFAULT_INFO_DURATION_MS)));
    // Numeric event codes for * and #.
    assert_eq!(parse_info(relay, b"Signal=10\r\nDuration=80\r\n"), Some(('*', 80)));
    assert_eq!(parse_info(relay, b"Signal=11\r\n"), Some(('#', DEFAULT_INFO_DURATION_MS)));
    // Garbage.
    assert_eq!(parse_info(relay, b""), None);
    assert_eq!(parse_info(relay, b"Duration=160\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=X\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=16\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=55\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=5\r\nDuration=-3\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=5\r\nDuration=99999999999\r\n"), None);
    assert_eq!(parse_info(relay, b"Signal=\xff\r\n"), None);
    assert_eq!(parse_info(relay, &[b'x'; 5000]), None);
    assert_eq!(parse_info("application/sdp", b"Signal=5\r\n"), None);
    assert_eq!(parse_info("", b"5"), None);
}

#[test]
fn info_dtmf_bodies() {
    assert_eq!(parse_info("application/dtmf", b"5"), Some(('5', DEFAULT_INFO_DURATION_MS)));
    assert_eq!(parse_info("application/dtmf", b" # \r\n"), Some(('#', DEFAULT_INFO_DURATION_MS)));
    assert_eq!(parse_info("application/dtmf", b"d"), Some(('D', DEFAULT_INFO_DURATION_MS)));
    assert_eq!(parse_info("application/dtmf", b"10"), Some(('*', DEFAULT_INFO_DURATION_MS)));
    assert_eq!(parse_info("application/dtmf", b"55"), None);
    assert_eq!(parse_info("application/dtmf", b""), None);
    assert_eq!(parse_info("application/dtmf", b"\xc3"), None);
}

#[test]
fn info_body_round_trips_every_digit() {
    for c in DIGITS.chars() {
        let (ct, body) = info_body(c, 160);
        assert_eq!(ct, "application/dtmf-relay");
        assert_eq!(body, format!("Signal={c}\r\nDuration=160\r\n"));
        assert_eq!(parse_info(ct, body.as_bytes()), Some((c, 160)));
    }
    assert_eq!(info_body('b', 100).1, "Signal=B\r\nDuration=100\r\n");
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(7);
    let mut det = DtmfDetector::new(101);
    let train = dtmf_packets('5', 300, 101, 8000, 3, 0, 0).unwrap();
    for i in 0..20000 {
        let mut p = train[i % train.len()].clone();
        match rng.next() % 4 {
            0 => p.truncate(rng.next() as usize % (p.len() + 1)),
            1 => {
                let k = rng.next() as usize % p.len();
                p[k] = rng.next() as u8;
            }
            2 => p = (0..rng.next() % 40).map(|_| rng.next() as u8).collect(),
            _ => {}
        }
        let _ = det.push(&p);
        let _ = det.poll();
        let _ = parse_event(&p);
        let ct = if rng.next() & 1 == 0 { "application/dtmf-relay" } else { "application/dtmf" };
        let _ = parse_info(ct, &p);
    }
}
