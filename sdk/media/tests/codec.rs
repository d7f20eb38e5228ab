//! Codec behaviour: G.711 against the ITU-T G.711/G.191 reference values and
//! error bounds over every 16-bit sample, Opus at 8 kHz (encode, decode,
//! concealment, garbage), and the WAV reader/writer, including garbage input.

use tsunagu_media::codec::*;
use tsunagu_media::MediaError;

/// A deterministic xorshift, so garbage tests are reproducible without a
/// dev-dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn sine(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    (0..samples).map(|n| (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()) as i16).collect()
}

/// Goertzel power at one frequency: enough to compare bins without an FFT.
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

#[test]
fn rtpmap_names_rates_and_payload_types() {
    assert_eq!(Codec::from_rtpmap("PCMU", 8000), Some(Codec::Pcmu));
    assert_eq!(Codec::from_rtpmap("pcmu", 8000), Some(Codec::Pcmu));
    assert_eq!(Codec::from_rtpmap("PcMa", 8000), Some(Codec::Pcma));
    assert_eq!(Codec::from_rtpmap("opus", 48000), Some(Codec::Opus));
    assert_eq!(Codec::from_rtpmap("OPUS", 48000), Some(Codec::Opus));
    assert_eq!(Codec::from_rtpmap("opus", 8000), None);
    assert_eq!(Codec::from_rtpmap("PCMU", 16000), None);
    assert_eq!(Codec::from_rtpmap("G722", 8000), None);
    assert_eq!(Codec::from_rtpmap("", 0), None);
    assert_eq!(Codec::Pcmu.clock_rate(), 8000);
    assert_eq!(Codec::Pcma.clock_rate(), 8000);
    assert_eq!(Codec::Opus.clock_rate(), 48000);
    assert_eq!(Codec::Pcmu.static_payload_type(), Some(0));
    assert_eq!(Codec::Pcma.static_payload_type(), Some(8));
    assert_eq!(Codec::Opus.static_payload_type(), None);
    for c in [Codec::Pcmu, Codec::Pcma, Codec::Opus] {
        assert_eq!(Codec::from_rtpmap(c.encoding_name(), c.clock_rate()), Some(c));
    }
    assert_eq!(Codec::Opus.rtpmap_channels(), Some(2));
    assert_eq!(Codec::Opus.samples_to_timestamp(160), 960);
    assert_eq!(Codec::Pcmu.samples_to_timestamp(160), 160);
}

#[test]
fn ulaw_published_values() {
    // ITU-T G.711 Table 2a / G.191 reference: zero is 0xFF (positive) and
    // 0x7F (negative), full scale 0x80 / 0x00 decoding to +-32124.
    assert_eq!(ulaw_encode(0), 0xFF);
    assert_eq!(ulaw_encode(-1), 0x7F);
    assert_eq!(ulaw_encode(32767), 0x80);
    assert_eq!(ulaw_encode(-32768), 0x00);
    assert_eq!(ulaw_encode(100), 0xF2);
    assert_eq!(ulaw_encode(-100), 0x73);
    assert_eq!(ulaw_encode(1000), 0xCE);
    assert_eq!(ulaw_decode(0xFF), 0);
    assert_eq!(ulaw_decode(0x7F), 0);
    assert_eq!(ulaw_decode(0x80), 32124);
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(ulaw_decode(0xFE), 8);
    assert_eq!(ulaw_decode(0xF0), 120);
    assert_eq!(ulaw_decode(0xEF), 132);
    assert_eq!(ulaw_decode(0x10), -15996);
}

#[test]
fn alaw_published_values() {
    // A-law has no zero code: 0 encodes to 0xD5 (decoding to +8), -1 to 0x55,
    // full scale 0xAA / 0x2A decoding to +-32256.
    assert_eq!(alaw_encode(0), 0xD5);
    assert_eq!(alaw_encode(-1), 0x55);
    assert_eq!(alaw_encode(32767), 0xAA);
    assert_eq!(alaw_encode(-32768), 0x2A);
    assert_eq!(alaw_encode(100), 0xD3);
    assert_eq!(alaw_encode(1000), 0xFA);
    assert_eq!(alaw_decode(0xD5), 8);
    assert_eq!(alaw_decode(0x55), -8);
    assert_eq!(alaw_decode(0xAA), 32256);
    assert_eq!(alaw_decode(0x2A), -32256);
    assert_eq!(alaw_decode(0xFA), 1008);
}

/// The quantisation step of the segment a µ-law code lies in.
fn ulaw_step(code: u8) -> i32 {
    8 << ((!code >> 4) & 7)
}

/// The quantisation step of the segment an A-law code lies in.
fn alaw_step(code: u8) -> i32 {
    let seg = ((code ^ 0x55) & 0x7f) >> 4;
    if seg <= 1 {
        16
    } else {
        16 << (seg - 1)
    }
}

#[test]
fn ulaw_round_trip_error_within_half_step_for_every_sample() {
    let mut prev = i16::MIN;
    for x in i16::MIN..=i16::MAX {
        let code = ulaw_encode(x);
        let y = ulaw_decode(code);
        // Half a step inside the range; beyond +-32124 the codec clips.
        let clip = (i32::from(x).abs() - 32124).max(0);
        let err = (i32::from(y) - i32::from(x)).abs();
        assert!(err <= ulaw_step(code) / 2 + clip, "x={x} code={code:#04x} y={y} err={err}");
        assert!(y.signum() * x.signum() >= 0, "sign flip at {x}");
        // Quantisation never reorders samples.
        assert!(y >= prev, "not monotonic at {x}");
        prev = y;
    }
}

#[test]
fn alaw_round_trip_error_within_half_step_for_every_sample() {
    let mut prev = i16::MIN;
    for x in i16::MIN..=i16::MAX {
        let code = alaw_encode(x);
        let y = alaw_decode(code);
        let clip = (i32::from(x).abs() - 32256).max(0);
        let err = (i32::from(y) - i32::from(x)).abs();
        assert!(err <= alaw_step(code) / 2 + clip, "x={x} code={code:#04x} y={y} err={err}");
        assert!(y >= prev, "not monotonic at {x}");
        prev = y;
    }
}

#[test]
fn every_code_survives_decode_then_encode() {
    for c in 0..=255u8 {
        // µ-law has two zeros; the negative one re-encodes as the positive.
        let expect = if c == 0x7F { 0xFF } else { c };
        assert_eq!(ulaw_encode(ulaw_decode(c)), expect, "ulaw {c:#04x}");
        assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#04x}");
    }
}

#[test]
fn g711_encoder_and_decoder_work_sample_by_sample() {
    let pcm = sine(1000.0, 10000.0, 160);
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let mut enc = Encoder::new(codec).unwrap();
        let mut payload = Vec::new();
        enc.encode(&pcm, &mut payload).unwrap();
        assert_eq!(payload.len(), 160);
        let mut dec = Decoder::new(codec).unwrap();
        let mut out = Vec::new();
        assert_eq!(dec.decode(&payload, &mut out).unwrap(), 160);
        for (a, b) in pcm.iter().zip(&out) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 512);
        }
        // With under 35 ms of history (one 20 ms frame here) the G.711 PLC
        // has no pitch to repeat: concealment is silence of the requested
        // length (plc.rs tests the concealment of longer histories).
        let mut conceal = Vec::new();
        assert_eq!(dec.conceal(160, None, &mut conceal).unwrap(), 160);
        assert!(conceal.iter().all(|&s| s == 0));
    }
}

#[test]
fn opus_at_8khz_keeps_a_tone() {
    let pcm = sine(1000.0, 8000.0, 8000);
    let mut enc = Encoder::new(Codec::Opus).unwrap();
    let mut dec = Decoder::new(Codec::Opus).unwrap();
    let mut out = Vec::new();
    for frame in pcm.chunks_exact(FRAME_SAMPLES) {
        let mut payload = Vec::new();
        enc.encode(frame, &mut payload).unwrap();
        assert!(!payload.is_empty() && payload.len() < 400);
        assert_eq!(dec.payload_samples(&payload).unwrap(), FRAME_SAMPLES);
        assert_eq!(dec.decode(&payload, &mut out).unwrap(), FRAME_SAMPLES);
    }
    assert_eq!(out.len(), pcm.len());
    let tail = &out[800..];
    let p1000 = goertzel(tail, 1000.0);
    assert!(p1000 > 100.0 * goertzel(tail, 400.0));
    assert!(p1000 > 100.0 * goertzel(tail, 2000.0));
}

#[test]
fn opus_encoder_takes_only_opus_frame_sizes() {
    let mut enc = Encoder::new(Codec::Opus).unwrap();
    let mut out = Vec::new();
    for n in [20, 40, 80, 160, 320, 480] {
        out.clear();
        enc.encode(&vec![0; n], &mut out).unwrap();
        assert!(!out.is_empty());
    }
    for n in [0, 1, 159, 161, 240, 960] {
        out.clear();
        assert_eq!(enc.encode(&vec![0; n], &mut out), Err(MediaError::BadFrameSize { samples: n }));
        assert!(out.is_empty());
    }
    enc.set_opus_bitrate(16000).unwrap();
}

#[test]
fn opus_concealment_fills_exactly_the_gap() {
    let pcm = sine(440.0, 8000.0, 1600);
    let mut enc = Encoder::new(Codec::Opus).unwrap();
    let mut dec = Decoder::new(Codec::Opus).unwrap();
    let mut payloads = Vec::new();
    for frame in pcm.chunks_exact(FRAME_SAMPLES) {
        let mut p = Vec::new();
        enc.encode(frame, &mut p).unwrap();
        payloads.push(p);
    }
    let mut out = Vec::new();
    dec.decode(&payloads[0], &mut out).unwrap();
    // PLC alone, FEC from the next packet, and an odd length (not a
    // multiple of 2.5 ms) all produce exactly what was asked.
    assert_eq!(dec.conceal(320, None, &mut out).unwrap(), 320);
    assert_eq!(dec.conceal(160, Some(&payloads[4]), &mut out).unwrap(), 160);
    dec.decode(&payloads[4], &mut out).unwrap();
    assert_eq!(dec.conceal(165, Some(&[0xff]), &mut out).unwrap(), 165);
    assert_eq!(out.len(), 160 + 320 + 160 + 160 + 165);
}

#[test]
fn opus_decoder_rejects_garbage_without_panicking() {
    let mut dec = Decoder::new(Codec::Opus).unwrap();
    let mut out = Vec::new();
    assert!(dec.decode(&[], &mut out).is_err());
    assert!(out.is_empty());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for i in 0..3000 {
        let len = (rng.next() % 300) as usize;
        let bytes = rng.bytes(len);
        let before = out.len();
        match dec.decode(&bytes, &mut out) {
            Ok(n) => assert!(n <= MAX_OPUS_PACKET_SAMPLES && out.len() == before + n),
            Err(_) => assert_eq!(out.len(), before, "case {i}"),
        }
        let _ = dec.conceal((rng.next() % 2000) as usize, Some(&bytes), &mut out);
        out.clear();
    }
}

#[test]
fn wav_round_trip() {
    let pcm = sine(1000.0, 12000.0, 8000);
    let wav = write_wav_pcm16(8000, &pcm);
    assert_eq!(wav.len(), 44 + 16000);
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(read_wav_pcm16(&wav).unwrap(), (8000, pcm));
    assert_eq!(read_wav_pcm16(&write_wav_pcm16(16000, &[])).unwrap(), (16000, vec![]));
}

/// Builds a WAV by hand: fmt body, extra chunks, data.
fn wav_with(fmt: &[u8], extra: &[(&[u8; 4], &[u8])], data: &[u8], data_len: u32) -> Vec<u8> {
    let mut w = b"RIFF\0\0\0\0WAVE".to_vec();
    w.extend_from_slice(b"fmt ");
    w.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    w.extend_from_slice(fmt);
    for (id, body) in extra {
        w.extend_from_slice(*id);
        w.extend_from_slice(&(body.len() as u32).to_le_bytes());
        w.extend_from_slice(body);
        if body.len() % 2 == 1 {
            w.push(0);
        }
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.extend_from_slice(data);
    w
}

fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(channels) * u32::from(bits) / 8).to_le_bytes());
    f.extend_from_slice(&(channels * bits / 8).to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

#[test]
fn wav_reader_skips_chunks_and_accepts_extensible_and_streaming_lengths() {
    let data = [1u8, 0, 2, 0, 0xff, 0xff];
    let fmt = fmt_body(1, 1, 8000, 16);
    // An odd-sized LIST chunk (padded) before data.
    let w = wav_with(&fmt, &[(b"LIST", b"abc"), (b"fact", &[0; 4])], &data, 6);
    assert_eq!(read_wav_pcm16(&w).unwrap(), (8000, vec![1, 2, -1]));
    // Streaming writers leave 0xFFFFFFFF as the data length.
    let w = wav_with(&fmt, &[], &data, u32::MAX);
    assert_eq!(read_wav_pcm16(&w).unwrap(), (8000, vec![1, 2, -1]));
    // WAVE_FORMAT_EXTENSIBLE with the PCM sub-format.
    let mut ext = fmt_body(0xFFFE, 1, 8000, 16);
    ext.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    ext.extend_from_slice(&16u16.to_le_bytes()); // valid bits
    ext.extend_from_slice(&4u32.to_le_bytes()); // channel mask
    ext.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
    let w = wav_with(&ext, &[], &data, 6);
    assert_eq!(read_wav_pcm16(&w).unwrap(), (8000, vec![1, 2, -1]));
}

#[test]
fn wav_reader_refuses_what_it_cannot_play() {
    let data = [0u8; 4];
    let bad = |w: Vec<u8>| matches!(read_wav_pcm16(&w), Err(MediaError::BadWav(_)));
    assert!(bad(wav_with(&fmt_body(1, 2, 8000, 16), &[], &data, 4)), "stereo");
    assert!(bad(wav_with(&fmt_body(1, 1, 8000, 8), &[], &data, 4)), "8-bit");
    assert!(bad(wav_with(&fmt_body(6, 1, 8000, 8), &[], &data, 4)), "A-law WAV");
    assert!(bad(wav_with(&fmt_body(1, 1, 0, 16), &[], &data, 4)), "rate 0");
    assert!(bad(wav_with(&fmt_body(1, 1, 8000, 16)[..10], &[], &data, 4)), "short fmt");
    assert!(bad(b"RIFF\0\0\0\0WAVE".to_vec()), "no chunks");
    assert!(bad(b"RIFX\0\0\0\0WAVE".to_vec()), "big-endian RIFX");
    assert!(bad(vec![]), "empty");
    // data before fmt
    let mut w = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\x01\x00".to_vec();
    assert!(bad(w.clone()));
    w.truncate(3);
    assert!(bad(w));
}

#[test]
fn wav_reader_survives_truncation_and_garbage() {
    let wav = write_wav_pcm16(8000, &sine(300.0, 5000.0, 400));
    for n in 0..wav.len() {
        // Cut inside the data chunk: fewer samples; before it: an error.
        match read_wav_pcm16(&wav[..n]) {
            Ok((rate, s)) => {
                assert!(n >= 44);
                assert_eq!(rate, 8000);
                assert_eq!(s.len(), (n - 44) / 2);
            }
            Err(e) => assert!(n < 44, "cut at {n}: {e}"),
        }
    }
    let mut rng = Rng(42);
    for _ in 0..5000 {
        let len = (rng.next() % 128) as usize;
        let mut bytes = rng.bytes(len);
        if len >= 12 && rng.next() & 1 == 0 {
            bytes[..4].copy_from_slice(b"RIFF");
            bytes[8..12].copy_from_slice(b"WAVE");
        }
        let _ = read_wav_pcm16(&bytes);
    }
    // Chunk sizes near u32::MAX must not overflow the walk.
    let mut w = b"RIFF\0\0\0\0WAVELIST\xff\xff\xff\xffxx".to_vec();
    assert!(read_wav_pcm16(&w).is_err());
    w.extend_from_slice(&[0; 64]);
    assert!(read_wav_pcm16(&w).is_err());
}
