//! Helpers shared by the crate's unit tests.

/// xorshift64*: deterministic, dependency-free noise for simulations and
/// fuzz-style tests (the seed must not be 0).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The origin of a test's virtual timeline. The engines never read the
/// clock; tests need one real `Instant` to add `Duration`s to, and this is
/// the only place the crate's tests take it.
pub fn origin() -> std::time::Instant {
    std::time::Instant::now()
}
