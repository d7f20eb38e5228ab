//! Random-looking values from a caller-supplied seed (SplitMix64): SSRCs,
//! first sequence numbers and timestamps (RFC 3550 §5.1 wants them
//! random) and report-interval jitter. The crate has no random source of
//! its own, so its engines stay deterministic under test.

#[derive(Debug, Clone)]
pub(crate) struct Seeds(pub(crate) u64);

impl Seeds {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.next() as u32
    }

    pub(crate) fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
