//! One RTP stream towards a phone whatever feeds it: once the PBX has
//! played to a leg itself (hold music, an IVR, ringback during a
//! transfer), every packet sent to that leg — the PBX's own and those
//! relayed from the other party — goes out with one SSRC and one
//! continuous sequence and timestamp line.
//!
//! Why: RTP allows a new SSRC at any time, but phones' jitter buffers do
//! not all cope. baresip, for one, drops a new stream whose timestamps
//! happen to be lower than the old one's ("timestamp wraps backwards") —
//! with random initial timestamps, half of all switches. Calls the PBX
//! never plays to keep today's zero-copy relaying.

use std::time::Instant;

/// The rewriting state of one leg's outgoing RTP.
#[derive(Debug, Clone)]
pub struct Restamp {
    ssrc: u32,
    /// Samples per millisecond of the leg's RTP clock (8 for G.711, 48 for Opus).
    per_ms: u32,
    /// The input stream being followed, and its offsets onto ours.
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// The newest packet sent: our sequence number and timestamp, and when.
    last: Option<(u16, u32, Instant)>,
}

impl Restamp {
    pub fn new(ssrc: u32, clock_rate: u32) -> Restamp {
        Restamp { ssrc, per_ms: (clock_rate / 1000).max(1), source: None, seq_offset: 0, ts_offset: 0, last: None }
    }

    /// A new RTP clock (the leg's codec changed).
    pub fn set_clock(&mut self, clock_rate: u32) {
        self.per_ms = (clock_rate / 1000).max(1);
    }

    /// Rewrite one plain RTP packet in place. A packet from a new source
    /// continues our line: the next sequence number, and a timestamp
    /// advanced by the time since our last packet (so the far jitter
    /// buffer plays it when it arrives), with the marker bit set.
    pub fn apply(&mut self, packet: &mut [u8], now: Instant) {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let src = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if self.source != Some(src) {
            let (next_seq, next_ts) = match self.last {
                Some((s, t, at)) => {
                    let ms = u32::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u32::MAX / 48);
                    // At least one 20 ms frame on, so the two streams never
                    // share a timestamp.
                    (s.wrapping_add(1), t.wrapping_add((ms.max(20)).saturating_mul(self.per_ms)))
                }
                None => (seq, ts),
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
            self.source = Some(src);
            packet[1] |= 0x80;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        packet[2..4].copy_from_slice(&out_seq.to_be_bytes());
        packet[4..8].copy_from_slice(&out_ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        // Late packets of the same stream keep their place; only a newer
        // one moves "last".
        let newer = self.last.is_none_or(|(s, _, _)| (out_seq.wrapping_sub(s) as i16) > 0);
        if newer {
            self.last = Some((out_seq, out_ts, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rtp(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn fields(p: &[u8]) -> (bool, u16, u32, u32) {
        (p[1] & 0x80 != 0, u16::from_be_bytes([p[2], p[3]]), u32::from_be_bytes([p[4], p[5], p[6], p[7]]), u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
    }

    #[test]
    fn three_sources_become_one_continuous_stream() {
        let t0 = Instant::now();
        let mut r = Restamp::new(0xabcd, 8000);
        let mut out = Vec::new();
        // The callee's stream, then the PBX's (1 s later: ts jumps 8000),
        // then a new callee whose timestamps are far lower.
        for (i, (src, seq, ts, at_ms)) in [(1u32, 100u16, 5_000_000u32, 0u64), (1, 101, 5_000_160, 20), (7, 9, 42, 1020), (7, 10, 202, 1040), (9, 65535, 3, 1060), (9, 0, 163, 1080)].into_iter().enumerate() {
            let mut p = rtp(src, seq, ts);
            r.apply(&mut p, t0 + Duration::from_millis(at_ms));
            out.push((i, fields(&p)));
        }
        let seqs: Vec<u16> = out.iter().map(|(_, f)| f.1).collect();
        assert_eq!(seqs, vec![100, 101, 102, 103, 104, 105], "one sequence line");
        assert!(out.iter().all(|(_, f)| f.3 == 0xabcd), "one SSRC");
        let ts: Vec<u32> = out.iter().map(|(_, f)| f.2).collect();
        assert_eq!(ts[1] - ts[0], 160);
        assert_eq!(ts[2] - ts[1], 8000, "a second later: 8000 samples on");
        assert_eq!(ts[3] - ts[2], 160);
        assert_eq!(ts[4] - ts[3], 160, "the next source continues 20 ms on although its own timestamps are lower");
        assert_eq!(ts[5] - ts[4], 160, "across its sequence wrap");
        let markers: Vec<bool> = out.iter().map(|(_, f)| f.0).collect();
        assert_eq!(markers, vec![true, false, true, false, true, false], "a marker at each new source");
    }

    #[test]
    fn a_late_packet_keeps_its_place_and_opus_counts_48_per_ms() {
        let t0 = Instant::now();
        let mut r = Restamp::new(1, 48000);
        let mut a = rtp(5, 10, 1000);
        r.apply(&mut a, t0);
        let mut c = rtp(5, 12, 1000 + 1920);
        r.apply(&mut c, t0 + Duration::from_millis(40));
        let mut late = rtp(5, 11, 1000 + 960);
        r.apply(&mut late, t0 + Duration::from_millis(45));
        assert_eq!(fields(&late).1, 11);
        let mut next_source = rtp(6, 500, 7);
        r.apply(&mut next_source, t0 + Duration::from_millis(100));
        let (_, seq, ts, _) = fields(&next_source);
        assert_eq!(seq, 13, "after the newest (12), not the late one");
        assert_eq!(ts, 1000 + 1920 + 60 * 48, "60 ms after the newest at 48 per ms");
        // Not RTP: left alone.
        let mut junk = vec![0u8; 8];
        r.apply(&mut junk, t0);
        assert_eq!(junk, vec![0u8; 8]);
    }
}
