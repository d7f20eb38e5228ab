//! Transcoder behaviour: a 1 kHz tone through PCMU -> Opus -> PCMA keeps its
//! frequency, output RTP numbering is continuous across losses, pauses show
//! as timestamp jumps, telephone-events pass through rescaled, and garbage
//! never panics.

use tsunagu_media::codec::{alaw_decode, ulaw_encode, Codec, Decoder, FRAME_SAMPLES};
use tsunagu_media::dtmf::{event_payload, parse_event, DtmfEvent};
use tsunagu_media::transcode::{write_rtp, Transcoder};
use tsunagu_media::{MediaError, RtpPacket};

const SSRC_IN: u32 = 0x1111_1111;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn sine(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    (0..samples).map(|n| (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()) as i16).collect()
}

fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// PCMU packets of `ptime` samples each, from `seq0`/`ts0`.
fn pcmu_packets(pcm: &[i16], ptime: usize, seq0: u16, ts0: u32) -> Vec<Vec<u8>> {
    pcm.chunks(ptime)
        .enumerate()
        .map(|(i, chunk)| {
            let payload: Vec<u8> = chunk.iter().map(|&s| ulaw_encode(s)).collect();
            write_rtp(i == 0, 0, seq0.wrapping_add(i as u16), ts0.wrapping_add((i * ptime) as u32), SSRC_IN, &payload)
        })
        .collect()
}

fn run(t: &mut Transcoder, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in packets {
        t.push(p, &mut out).unwrap();
    }
    out
}

/// Asserts the packets form one continuous stream: SSRC, PT, sequence +1,
/// timestamp +`ts_step`.
fn assert_continuous(packets: &[Vec<u8>], ssrc: u32, pt: u8, ts_step: u32) {
    let hs: Vec<_> = packets.iter().map(|p| *RtpPacket::parse(p).unwrap().header()).collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(ts_step), "ts {} -> {}", w[0].timestamp, w[1].timestamp);
    }
    for h in &hs {
        assert_eq!(h.ssrc, ssrc);
        assert_eq!(h.payload_type, pt);
    }
}

fn decode_pcma(packets: &[Vec<u8>]) -> Vec<i16> {
    packets
        .iter()
        .flat_map(|p| RtpPacket::parse(p).unwrap().payload().iter().map(|&b| alaw_decode(b)).collect::<Vec<_>>())
        .collect()
}

fn assert_tone_1khz(pcm: &[i16]) {
    let p1000 = goertzel(pcm, 1000.0);
    let p400 = goertzel(pcm, 400.0);
    let p2000 = goertzel(pcm, 2000.0);
    assert!(p1000 > 100.0 * p400, "1 kHz {p1000:e} vs 400 Hz {p400:e}");
    assert!(p1000 > 100.0 * p2000, "1 kHz {p1000:e} vs 2 kHz {p2000:e}");
}

#[test]
fn tone_survives_pcmu_to_opus_to_pcma() {
    let pcm = sine(1000.0, 8000.0, 8000);
    let input = pcmu_packets(&pcm, FRAME_SAMPLES, 65_500, u32::MAX - 2000);
    let mut to_opus =
        Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 0xAAAA).unwrap().with_initial(65_530, 4_294_960_000);
    let opus = run(&mut to_opus, &input);
    assert_eq!(opus.len(), 50);
    assert_continuous(&opus, 0xAAAA, 111, 960);
    let first = RtpPacket::parse(&opus[0]).unwrap();
    assert!(first.header().marker);
    assert_eq!(first.header().sequence, 65_530);
    assert_eq!(first.header().timestamp, 4_294_960_000);
    assert!(opus[1..].iter().all(|p| !RtpPacket::parse(p).unwrap().header().marker));
    assert_eq!(to_opus.next_sequence(), 65_530u16.wrapping_add(50));

    let mut to_pcma = Transcoder::new(Codec::Opus, 111, Codec::Pcma, 8, 0xBBBB).unwrap();
    let pcma = run(&mut to_pcma, &opus);
    assert_eq!(pcma.len(), 50);
    assert_continuous(&pcma, 0xBBBB, 8, 160);
    let out = decode_pcma(&pcma);
    assert_eq!(out.len(), 8000);
    // Skip the codec's start-up (look-ahead and first frames).
    assert_tone_1khz(&out[800..]);
    let rms = (out[800..].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 7200.0).sqrt();
    assert!(rms > 8000.0 / 2f64.sqrt() * 0.5, "level collapsed: rms {rms}");
}

#[test]
fn lost_opus_packet_is_concealed_with_continuous_output() {
    let pcm = sine(1000.0, 8000.0, 8000);
    let mut to_opus = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 1).unwrap();
    let mut opus = run(&mut to_opus, &pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0));
    // Lose one packet in the middle, and two in a row later.
    opus.remove(25);
    opus.drain(35..37);
    let mut to_pcma = Transcoder::new(Codec::Opus, 111, Codec::Pcma, 8, 2).unwrap();
    let pcma = run(&mut to_pcma, &opus);
    assert_eq!(pcma.len(), 50, "every lost frame is concealed");
    assert_continuous(&pcma, 2, 8, 160);
    assert_tone_1khz(&decode_pcma(&pcma)[800..]);
}

#[test]
fn lost_g711_packet_is_filled_with_continuous_output() {
    let pcm = sine(1000.0, 8000.0, 1600);
    let mut input = pcmu_packets(&pcm, FRAME_SAMPLES, 10, 1000);
    input.remove(4);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 96, 3).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 10);
    assert_continuous(&out, 3, 96, 960);
}

#[test]
fn long_loss_is_concealed_up_to_the_cap_then_a_timestamp_jump() {
    let pcm = sine(1000.0, 8000.0, 8000);
    let mut input = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    input.drain(10..30); // 400 ms lost
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 4).unwrap();
    let out = run(&mut t, &input);
    let hs: Vec<_> = out.iter().map(|p| *RtpPacket::parse(p).unwrap().header()).collect();
    // 200 ms (10 frames) concealed, 200 ms skipped: 40 packets, sequence
    // numbers contiguous, one timestamp jump of 1600, marked.
    assert_eq!(hs.len(), 40);
    for w in hs.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
    assert_eq!(hs[20].timestamp - hs[19].timestamp, 160 + 1600);
    assert!(hs[20].marker);
    assert_eq!(hs[39].timestamp, 49 * 160);
}

#[test]
fn seconds_long_outage_keeps_output_time_in_step() {
    // A handover loses 3 s (150 packets): 200 ms concealed, the rest a
    // timestamp jump, so the output clock stays with the input's.
    let pcm = sine(1000.0, 8000.0, 8000 * 4);
    let mut input = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    input.drain(20..170);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 4).unwrap();
    let out = run(&mut t, &input);
    let hs: Vec<_> = out.iter().map(|p| *RtpPacket::parse(p).unwrap().header()).collect();
    assert_eq!(hs.len(), 200 - 150 + 10);
    assert_eq!(hs.last().unwrap().timestamp, 199 * 960);
    for w in hs.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
}

#[test]
fn restarted_sequence_numbers_resynchronise() {
    // The same SSRC jumps 1000 back in sequence (a sender restart): not
    // "late" forever, but a new run continuing the output.
    let pcm = sine(1000.0, 8000.0, 1600);
    let a = pcmu_packets(&pcm, FRAME_SAMPLES, 5000, 0);
    let b = pcmu_packets(&pcm, FRAME_SAMPLES, 4000, 77_777);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 4).unwrap();
    let mut out = run(&mut t, &a[..5]);
    out.extend(run(&mut t, &b[..5]));
    assert_eq!(out.len(), 10);
    assert_continuous(&out, 4, 8, 160);
}

#[test]
fn pause_without_loss_becomes_a_timestamp_jump() {
    // Silence suppression: seq contiguous, timestamp jumps 200 ms, marker.
    let pcm = sine(1000.0, 8000.0, 800);
    let mut input = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    let tail = pcmu_packets(&pcm, FRAME_SAMPLES, 5, 800 + 1600);
    input.extend(tail);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 5).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 10);
    let hs: Vec<_> = out.iter().map(|p| *RtpPacket::parse(p).unwrap().header()).collect();
    assert_eq!(hs[5].timestamp - hs[4].timestamp, 960 + 1600 * 6);
    assert!(hs[5].marker);
    assert_eq!(hs[5].sequence, hs[4].sequence + 1);
}

#[test]
fn other_ptime_is_repacketised_into_20ms() {
    // 30 ms PCMU in, 20 ms PCMA out.
    let pcm = sine(1000.0, 8000.0, 2400);
    let input = pcmu_packets(&pcm, 240, 0, 0);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 6).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 15);
    assert_continuous(&out, 6, 8, 160);
    assert!(out.iter().all(|p| RtpPacket::parse(p).unwrap().payload().len() == 160));
}

fn event(seq: u16, ts: u32, marker: bool, ev: DtmfEvent) -> Vec<u8> {
    write_rtp(marker, 101, seq, ts, SSRC_IN, &event_payload(&ev))
}

#[test]
fn telephone_event_passes_through_rescaled_8k_to_48k() {
    let pcm = sine(1000.0, 8000.0, 1600);
    let audio = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 7).unwrap().with_telephone_event(Some(101), Some(96));
    let mut out = Vec::new();
    // 4 audio packets, then an event starting at ts 640 interleaved with audio.
    let d = |duration, end| DtmfEvent { event: 5, end, volume: 10, duration };
    let mut seq = 4;
    let mut input = audio[..4].to_vec();
    for (i, (dur, end)) in
        [(400, false), (800, false), (1200, true), (1200, true), (1200, true)].into_iter().enumerate()
    {
        input.push(event(seq, 640, i == 0, d(dur, end)));
        seq += 1;
        input.push(write_rtp(
            false,
            0,
            seq,
            640 + 160 * i as u32,
            SSRC_IN,
            RtpPacket::parse(&audio[4 + i]).unwrap().payload(),
        ));
        seq += 1;
    }
    for p in &input {
        t.push(p, &mut out).unwrap();
    }
    assert_eq!(out.len(), 14);
    let hs: Vec<_> = out.iter().map(|p| *RtpPacket::parse(p).unwrap().header()).collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1), "one sequence space for audio and events");
    }
    let events: Vec<_> = out.iter().filter(|p| RtpPacket::parse(p).unwrap().header().payload_type == 96).collect();
    assert_eq!(events.len(), 5);
    let audio_out: Vec<_> = hs.iter().filter(|h| h.payload_type == 111).collect();
    // The event started where the fifth audio frame starts.
    let expected_ts = audio_out[4].timestamp;
    assert_eq!(expected_ts, 4 * 960);
    let durations: Vec<u16> = events
        .iter()
        .map(|p| {
            let pkt = RtpPacket::parse(p).unwrap();
            assert_eq!(pkt.header().timestamp, expected_ts);
            assert_eq!(pkt.header().ssrc, 7);
            parse_event(pkt.payload()).unwrap().duration
        })
        .collect();
    assert_eq!(durations, [2400, 4800, 7200, 7200, 7200]);
    assert!(RtpPacket::parse(events[0]).unwrap().header().marker);
    let ev = parse_event(RtpPacket::parse(events[4]).unwrap().payload()).unwrap();
    assert_eq!((ev.event, ev.end, ev.volume), (5, true, 10));
    // The audio around the events stays continuous.
    for w in audio_out.windows(2) {
        assert_eq!(w[1].timestamp, w[0].timestamp + 960);
    }
}

#[test]
fn telephone_event_passes_through_rescaled_48k_to_8k() {
    let pcm = sine(1000.0, 8000.0, 800);
    let mut to_opus = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 8).unwrap();
    let opus = run(&mut to_opus, &pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0));
    let mut t =
        Transcoder::new(Codec::Opus, 111, Codec::Pcmu, 0, 9).unwrap().with_telephone_event(Some(101), Some(101));
    let mut out = Vec::new();
    for p in &opus[..3] {
        t.push(p, &mut out).unwrap();
    }
    // Opus stream timestamps started at 0: the event starts at 3 * 960.
    let ev = DtmfEvent { event: 11, end: true, volume: 7, duration: 4800 };
    t.push(&write_rtp(true, 101, 3, 3 * 960, 8, &event_payload(&ev)), &mut out).unwrap();
    let pkt = RtpPacket::parse(out.last().unwrap()).unwrap();
    assert_eq!(pkt.header().payload_type, 101);
    assert_eq!(pkt.header().timestamp, 3 * 160);
    assert_eq!(parse_event(pkt.payload()).unwrap(), DtmfEvent { event: 11, end: true, volume: 7, duration: 800 });
    // Without a mapping on the output leg, events are dropped.
    let mut t = Transcoder::new(Codec::Opus, 111, Codec::Pcmu, 0, 9).unwrap().with_telephone_event(Some(101), None);
    let mut out = Vec::new();
    t.push(&write_rtp(true, 101, 3, 3 * 960, 8, &event_payload(&ev)), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn other_payload_types_are_dropped_without_counting_as_loss() {
    let pcm = sine(1000.0, 8000.0, 800);
    let audio = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 10).unwrap();
    let mut out = Vec::new();
    t.push(&audio[0], &mut out).unwrap();
    // Comfort noise (PT 13) and an unmapped event PT take sequence numbers.
    t.push(&write_rtp(false, 13, 1, 160, SSRC_IN, &[40]), &mut out).unwrap();
    t.push(&write_rtp(false, 101, 2, 160, SSRC_IN, &[1, 0, 0, 160]), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    t.push(&write_rtp(false, 0, 3, 160, SSRC_IN, RtpPacket::parse(&audio[1]).unwrap().payload()), &mut out).unwrap();
    assert_eq!(out.len(), 2, "no concealment for packets that were not lost");
    assert_continuous(&out, 10, 8, 160);
}

#[test]
fn duplicates_and_late_packets_are_dropped() {
    let pcm = sine(1000.0, 8000.0, 800);
    let audio = pcmu_packets(&pcm, FRAME_SAMPLES, 100, 0);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 11).unwrap();
    let mut out = Vec::new();
    for p in [&audio[0], &audio[1], &audio[1], &audio[3], &audio[2], &audio[4]] {
        t.push(p, &mut out).unwrap();
    }
    // 0, 1, (dup dropped), concealed 2, 3, (late 2 dropped), 4.
    assert_eq!(out.len(), 5);
    assert_continuous(&out, 11, 8, 160);
}

#[test]
fn new_source_continues_the_output_timeline() {
    let pcm = sine(1000.0, 8000.0, 800);
    let a = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    let mut t = Transcoder::new(Codec::Pcmu, 0, Codec::Pcma, 8, 12).unwrap();
    let mut out = run(&mut t, &a[..3]);
    // Another SSRC with unrelated numbering (a transfer, a re-INVITE).
    let payload = RtpPacket::parse(&a[3]).unwrap().payload().to_vec();
    t.push(&write_rtp(false, 0, 40000, 999_999, 0x2222, &payload), &mut out).unwrap();
    t.push(&write_rtp(false, 0, 40001, 999_999 + 160, 0x2222, &payload), &mut out).unwrap();
    assert_eq!(out.len(), 5);
    assert_continuous(&out, 12, 8, 160);
    assert!(RtpPacket::parse(&out[3]).unwrap().header().marker);
}

#[test]
fn malformed_packets_are_errors() {
    let mut t =
        Transcoder::new(Codec::Opus, 111, Codec::Pcmu, 0, 13).unwrap().with_telephone_event(Some(101), Some(101));
    let mut out = Vec::new();
    assert!(matches!(t.push(&[], &mut out), Err(MediaError::TooShort { .. })));
    assert!(matches!(t.push(&[0x40; 20], &mut out), Err(MediaError::BadVersion(1))));
    assert!(t.push(&write_rtp(false, 111, 0, 0, 1, &[]), &mut out).is_err(), "empty Opus payload");
    // TOC code 3 with no frame count byte.
    assert!(t.push(&write_rtp(false, 111, 1, 0, 1, &[0x03]), &mut out).is_err());
    assert!(t.push(&write_rtp(false, 101, 2, 0, 1, &[1, 2]), &mut out).is_err(), "short event");
    assert!(out.is_empty());
}

#[test]
fn g711_payload_length_is_its_sample_count() {
    let dec = Decoder::new(Codec::Pcma).unwrap();
    assert_eq!(dec.payload_samples(&[0; 240]).unwrap(), 240);
}

#[test]
fn garbage_never_panics() {
    let pcm = sine(700.0, 9000.0, 1600);
    let valid = pcmu_packets(&pcm, FRAME_SAMPLES, 0, 0);
    let mut to_opus = Transcoder::new(Codec::Pcmu, 0, Codec::Opus, 111, 1).unwrap();
    let valid_opus = run(&mut to_opus, &valid);
    let pairs = [
        (Codec::Pcmu, 0, Codec::Opus, 111),
        (Codec::Opus, 111, Codec::Pcma, 8),
        (Codec::Opus, 111, Codec::Opus, 96),
        (Codec::Pcma, 8, Codec::Pcmu, 0),
    ];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for (from, fpt, to, tpt) in pairs {
        let mut t = Transcoder::new(from, fpt, to, tpt, 99).unwrap().with_telephone_event(Some(101), Some(102));
        let mut out = Vec::new();
        for i in 0..4000u32 {
            let base = if from == Codec::Opus { &valid_opus } else { &valid };
            let mut p = base[i as usize % base.len()].clone();
            match rng.next() % 5 {
                // Truncate anywhere.
                0 => p.truncate((rng.next() as usize) % (p.len() + 1)),
                // Flip random bytes (header included).
                1 => {
                    for _ in 0..4 {
                        let k = rng.next() as usize % p.len();
                        p[k] = rng.next() as u8;
                    }
                }
                // Random payload behind a header of our PT or the event PT.
                2 => {
                    let pt = if rng.next() & 1 == 0 { fpt } else { 101 };
                    let len = (rng.next() % 200) as usize;
                    let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    p = write_rtp(rng.next() & 1 == 0, pt, rng.next() as u16, rng.next() as u32, SSRC_IN, &payload);
                }
                // Pure noise.
                3 => p = (0..rng.next() % 64).map(|_| rng.next() as u8).collect(),
                _ => {}
            }
            let _ = t.push(&p, &mut out);
            // Whatever comes out is well-formed RTP of the output leg.
            for o in out.drain(..) {
                let h = *RtpPacket::parse(&o).unwrap().header();
                assert!(h.payload_type == tpt || h.payload_type == 102);
                assert_eq!(h.ssrc, 99);
            }
        }
    }
}

#[test]
fn transcoder_can_move_between_threads() {
    // The B2BUA runs each call in its own task; libopus states are Send.
    fn assert_send<T: Send>() {}
    assert_send::<Transcoder>();
    assert_send::<tsunagu_media::DtmfDetector>();
}
