//! The transcoder as the B2BUA drives it: random initial output numbering,
//! a real stream in each direction between Opus and PCMU.

use std::time::Instant;
use tsunagu_media::codec::{Codec, Encoder};
use tsunagu_media::transcode::{write_rtp, Transcoder};

fn stream(codec: Codec, pt: u8, frames: usize) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(codec).unwrap();
    let step = codec.samples_to_timestamp(160);
    (0..frames)
        .map(|i| {
            let pcm: Vec<i16> = (0..160).map(|n| ((((i * 160 + n) as f32) * 440.0 * 2.0 * std::f32::consts::PI / 8000.0).sin() * 8000.0) as i16).collect();
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            write_rtp(i == 0, pt, 40000u16.wrapping_add(i as u16), 123_456u32.wrapping_add(step * i as u32), 0xabcdef, &payload)
        })
        .collect()
}

#[test]
fn both_directions_with_random_initial_numbers_are_fast() {
    for (from, fpt, to, tpt) in [(Codec::Opus, 96, Codec::Pcmu, 0), (Codec::Pcmu, 0, Codec::Opus, 96)] {
        let mut t = Transcoder::new(from, fpt, to, tpt, 7).unwrap().with_initial(65530, u32::MAX - 100).with_telephone_event(Some(101), Some(101));
        let start = Instant::now();
        let mut out = Vec::new();
        for p in stream(from, fpt, 100) {
            t.push(&p, &mut out).unwrap();
        }
        assert!(out.len() >= 95, "{from:?}->{to:?}: {} packets out", out.len());
        assert!(start.elapsed().as_secs() < 5, "{from:?}->{to:?} took {:?}", start.elapsed());
    }
}
