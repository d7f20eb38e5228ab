//! Streaming sample-rate conversion of mono `i16` PCM between the codec rate
//! (8 kHz today, 16 and 48 kHz later) and whatever the sound card runs at
//! (8, 16, 32, 44.1, 48 kHz, ...). The codecs stay at one rate and the
//! softphone converts at the device edge, in one place.
//!
//! The converter is a polyphase windowed-sinc filter: output sample `j` sits
//! at input time `j * from / to`, and the ratio is kept reduced by the gcd
//! of the rates, `up / down`, so that time is an integer input index plus a
//! phase in `0..up`, stepped with integer arithmetic only. Nothing
//! accumulates rounding error, so the output never drifts against the input
//! clock: after `n` input samples exactly `ceil(n * to / from)` samples have
//! come out. One Kaiser-windowed sinc per phase is tabulated at
//! construction. The filter cuts off at 0.475 of the lower rate's sample
//! rate and spans 96 samples of the lower rate, which gives a flat passband
//! (±0.01 dB) up to 0.45 of the lower rate and more than 70 dB of
//! attenuation from its Nyquist frequency on, for both anti-imaging
//! (upsampling) and anti-aliasing (downsampling), at a fixed delay of half
//! the filter: 48 samples of the lower rate (6 ms when one side is 8 kHz).
//!
//! The input history is carried across calls, so frames of any size, even
//! single samples, give exactly the samples one large block would: there is
//! nothing at frame borders to click. Like the rest of the crate it is
//! sans-IO and panic-free on any samples.

use crate::error::MediaError;

/// The lowest sample rate accepted.
pub const MIN_RATE: u32 = 4_000;
/// The highest sample rate accepted.
pub const MAX_RATE: u32 = 192_000;
/// The largest term of the reduced ratio `up / down`: it bounds the table of
/// filter phases (at most about 100 k coefficients, 400 KB). Every pair of
/// the usual rates (8, 11.025, 16, 22.05, 24, 32, 44.1, 48, 96, 192 kHz)
/// is within it; a ratio like 44100:47999 is not.
const MAX_RATIO_TERM: usize = 1024;
/// Filter length in samples of the lower of the two rates.
const TAPS_AT_LOWER_RATE: usize = 96;
/// Kaiser window shape: with 96 taps, > 70 dB stopband, ±0.01 dB passband.
const KAISER_BETA: f64 = 7.5;
/// The cut-off as a fraction of the lower rate: halfway between the passband
/// edge (0.45) and that rate's Nyquist frequency (0.5).
const CUTOFF: f64 = 0.475;
/// Input is taken in pieces of this many samples, so a huge call does not
/// grow the history buffer with it.
const CHUNK: usize = 4096;

/// Converts one mono stream from one sample rate to another, keeping state
/// between calls.
#[derive(Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// The reduced ratio: `up` output samples per `down` input samples.
    up: usize,
    down: usize,
    /// Filter taps per output sample (even).
    taps: usize,
    /// `up` phases of `taps` coefficients; phase `p` weights the window of
    /// inputs ending `taps / 2` samples after an output that lies `p / up`
    /// past an input sample.
    coeffs: Vec<f32>,
    /// Output samples between an input event and its output.
    delay: usize,
    /// `delay * down` split into whole input samples and a phase.
    offset_int: i64,
    offset_frac: usize,
    /// Recent input; `history[0]` is the input with absolute index
    /// `history_start` (negative indices are the zeros before the stream).
    history: Vec<f32>,
    history_start: i64,
    /// Input samples received so far.
    received: i64,
    /// Input time of the next output sample: whole input samples and a
    /// phase in `0..up` (the next output's index is time * up / down).
    time_int: i64,
    time_frac: usize,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("taps", &self.taps)
            .field("delay", &self.delay)
            .finish()
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Zeroth-order modified Bessel function of the first kind, by its power
/// series (converges quickly for the arguments a Kaiser window uses).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..100 {
        term *= q / (f64::from(k) * f64::from(k));
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A converter from `from_hz` to `to_hz`. Rates must lie in
    /// [`MIN_RATE`]..=[`MAX_RATE`], and their ratio reduced by the gcd must
    /// have terms of at most 1024 (true for every usual audio rate).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, MediaError> {
        let range = MIN_RATE..=MAX_RATE;
        if !range.contains(&from_hz) || !range.contains(&to_hz) {
            return Err(MediaError::BadSampleRate("a rate outside 4000..=192000 Hz"));
        }
        let g = gcd(from_hz, to_hz);
        // Rates are within range, so these are at most 48 * 4000 and fit.
        let (up, down) = ((to_hz / g) as usize, (from_hz / g) as usize);
        if up > MAX_RATIO_TERM || down > MAX_RATIO_TERM {
            return Err(MediaError::BadSampleRate("the ratio of the rates has no small fraction"));
        }
        let mut r = Self {
            from: from_hz,
            to: to_hz,
            up,
            down,
            taps: 0,
            coeffs: Vec::new(),
            delay: 0,
            offset_int: 0,
            offset_frac: 0,
            history: Vec::new(),
            history_start: 0,
            received: 0,
            time_int: 0,
            time_frac: 0,
        };
        if up != down {
            r.design();
        }
        r.reset();
        Ok(r)
    }

    /// Tabulates the filter phases and derives the delay.
    fn design(&mut self) {
        let (up, down) = (self.up, self.down);
        // The filter spans TAPS_AT_LOWER_RATE samples of the lower rate; when
        // downsampling that is more input samples by the ratio. Rounded up
        // to even, so the window is centred.
        let taps = (TAPS_AT_LOWER_RATE * down).div_ceil(up).max(TAPS_AT_LOWER_RATE);
        let taps = taps + taps % 2;
        let half = (taps / 2) as f64;
        // Cut-off in cycles per input sample.
        let fc = CUTOFF * (up as f64 / down as f64).min(1.0);
        let norm = bessel_i0(KAISER_BETA);
        let kernel = |tau: f64| -> f64 {
            let r = tau / half;
            if r.abs() >= 1.0 {
                return 0.0;
            }
            let x = std::f64::consts::PI * 2.0 * fc * tau;
            let sinc = if x == 0.0 { 1.0 } else { x.sin() / x };
            // 2 * fc * sinc has unit DC gain summed over the input samples.
            2.0 * fc * sinc * bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
        };
        let mut coeffs = Vec::with_capacity(up * taps);
        for p in 0..up {
            for k in 0..taps {
                let tau = p as f64 / up as f64 + half - 1.0 - k as f64;
                coeffs.push(kernel(tau) as f32);
            }
        }
        self.taps = taps;
        self.coeffs = coeffs;
        // The output lags its input by at least half the filter, so every
        // input an output needs has arrived when the output's own time has;
        // rounded up to whole output samples.
        self.delay = (taps / 2 * up).div_ceil(down);
        let offset = self.delay * down;
        self.offset_int = (offset / up) as i64;
        self.offset_frac = offset % up;
    }

    pub fn from_hz(&self) -> u32 {
        self.from
    }

    pub fn to_hz(&self) -> u32 {
        self.to
    }

    /// The fixed delay, in output samples: an input sample at time `t`
    /// comes out at output time `t + delay`. 0 when the rates are equal.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Back to the state of a new converter: the history is zeros, the next
    /// output is output 0.
    pub fn reset(&mut self) {
        self.received = 0;
        self.time_int = 0;
        self.time_frac = 0;
        self.history.clear();
        if self.up == self.down {
            return;
        }
        // The first output's window reaches back before the stream: those
        // inputs are zeros.
        let start = self.window_end() - self.taps as i64 + 1;
        self.history_start = start.min(0);
        self.history.resize(usize::try_from(-self.history_start).unwrap_or(0), 0.0);
    }

    /// The absolute index of the last input the next output's window uses:
    /// its centre is `time - delay`, floored, plus half the filter.
    fn window_end(&self) -> i64 {
        let borrow = i64::from(self.time_frac < self.offset_frac);
        self.time_int - self.offset_int - borrow + (self.taps / 2) as i64
    }

    /// The filter phase of the next output.
    fn phase(&self) -> usize {
        (self.time_frac + self.up - self.offset_frac) % self.up
    }

    /// Converts `input`, appending to `out` every output sample whose time
    /// has been reached. Over a stream, after `n` input samples exactly
    /// `ceil(n * to / from)` samples have been appended in total, however
    /// the input was split.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.up == self.down {
            out.extend_from_slice(input);
            return;
        }
        for chunk in input.chunks(CHUNK) {
            self.history.extend(chunk.iter().map(|&s| f32::from(s)));
            self.received = self.received.saturating_add(chunk.len() as i64);
            out.reserve((chunk.len() * self.up).div_ceil(self.down) + 1);
            while self.time_int < self.received {
                let end = self.window_end();
                let phase = self.phase();
                let first = end - self.taps as i64 + 1 - self.history_start;
                let window = usize::try_from(first).ok().and_then(|f| self.history.get(f..f + self.taps));
                let coeffs = self.coeffs.get(phase * self.taps..(phase + 1) * self.taps);
                let (Some(window), Some(coeffs)) = (window, coeffs) else {
                    // Cannot happen: the delay keeps the window inside the
                    // history. Stop rather than emit garbage.
                    break;
                };
                // `as` saturates: overshoot of a full-scale input clips.
                out.push(dot(window, coeffs).round() as i16);
                self.time_frac += self.down;
                self.time_int += (self.time_frac / self.up) as i64;
                self.time_frac %= self.up;
            }
            // Inputs before the next window are not needed any more.
            let next_first = self.window_end() - self.taps as i64 + 1;
            let drop = usize::try_from(next_first - self.history_start).unwrap_or(0).min(self.history.len());
            self.history.drain(..drop);
            self.history_start += drop as i64;
        }
    }
}

/// The filter sum, in eight independent lanes so that it vectorises. The
/// order of additions depends only on the tap count, so a given output is
/// bit-identical however the input was split into calls.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (xa, xb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (xa.remainder(), xb.remainder());
    for (x, y) in xa.zip(xb) {
        for ((l, &p), &q) in lanes.iter_mut().zip(x).zip(y) {
            *l += p * q;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (&p, &q) in ra.iter().zip(rb) {
        sum += p * q;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestRng as Rng;

    fn tone(freq: f64, amplitude: f64, rate: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin()).round() as i16
            })
            .collect()
    }

    /// Amplitude of the component at `freq` (Hann-windowed DFT bin, scaled
    /// so a sine of amplitude A reads A).
    fn amplitude(samples: &[i16], freq: f64, rate: u32) -> f64 {
        let n = samples.len() as f64;
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
        let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
        for (i, &x) in samples.iter().enumerate() {
            let win = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos();
            let phase = w * i as f64;
            re += win * f64::from(x) * phase.cos();
            im += win * f64::from(x) * phase.sin();
            wsum += win;
        }
        2.0 * (re * re + im * im).sqrt() / wsum
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.max(1e-12).log10()
    }

    fn run(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        r.process(input, &mut out);
        out
    }

    #[test]
    fn round_trip_8k_48k_8k_keeps_a_1khz_tone() {
        let input = tone(1000.0, 10000.0, 8000, 8000);
        let mut up = Resampler::new(8000, 48000).unwrap();
        let mut down = Resampler::new(48000, 8000).unwrap();
        let wide = run(&mut up, &input);
        assert_eq!(wide.len(), 48000);
        let back = run(&mut down, &wide);
        assert_eq!(back.len(), 8000);
        // Skip the start-up; compare the steady middle.
        let mid = &back[2000..6000];
        assert!(db(amplitude(mid, 1000.0, 8000) / 10000.0).abs() < 1.0);
        assert!(db(rms(mid) / rms(&input[2000..6000])).abs() < 1.0);
        for other in [500.0, 900.0, 1100.0, 2000.0, 3000.0] {
            assert!(amplitude(mid, other, 8000) < 0.01 * 10000.0, "{other} Hz");
        }
        // The two delays add up: the round trip is the input, shifted.
        let shift = up.delay() / 6 + down.delay();
        let diff: f64 =
            (2000..6000).map(|i| (f64::from(back[i]) - f64::from(input[i - shift])).abs()).fold(0.0, f64::max);
        assert!(diff < 40.0, "round trip differs by {diff}");
    }

    #[test]
    fn passband_is_flat_to_045_of_the_lower_rate() {
        for (from, to) in [(8000, 48000), (8000, 44100), (48000, 8000), (44100, 16000), (16000, 8000)] {
            let lower = from.min(to);
            for frac in [0.05, 0.2, 0.35, 0.45] {
                let f = frac * f64::from(lower);
                let input = tone(f, 10000.0, from, from as usize);
                let out = run(&mut Resampler::new(from, to).unwrap(), &input);
                let q = out.len() / 4;
                let a = amplitude(&out[q..3 * q], f, to);
                assert!(db(a / 10000.0).abs() < 0.1, "{from}->{to} at {f} Hz: {} dB", db(a / 10000.0));
            }
        }
    }

    #[test]
    fn upsampling_leaves_no_image_above_the_old_nyquist() {
        let a_in = 16000.0;
        for to in [16000, 32000, 44100, 48000] {
            let input = tone(3900.0, a_in, 8000, 8000);
            let out = run(&mut Resampler::new(8000, to).unwrap(), &input);
            let n = to as usize / 10;
            let steady = &out[to as usize / 2..to as usize / 2 + n];
            let tone_level = amplitude(steady, 3900.0, to);
            // Every 10 Hz from just above 4 kHz to the new Nyquist.
            let worst = (405..to / 20).map(|i| amplitude(steady, f64::from(i) * 10.0, to)).fold(0.0, f64::max);
            assert!(db(worst / a_in) < -50.0, "8k->{to}: image at {} dB of the input", db(worst / a_in));
            // 3.9 kHz is past the 3.6 kHz passband edge, in the transition
            // band; even against the tone as it comes out, the images are
            // more than 50 dB down.
            assert!(db(worst / tone_level) < -50.0, "8k->{to}: image at {} dB of the tone", db(worst / tone_level));
        }
    }

    #[test]
    fn downsampling_removes_what_would_alias() {
        for (from, f) in [(48000, 6000.0), (48000, 4100.0), (48000, 20000.0), (44100, 5000.0), (16000, 4200.0)] {
            let input = tone(f, 20000.0, from, from as usize);
            let out = run(&mut Resampler::new(from, 8000).unwrap(), &input);
            let steady = &out[2000..6000];
            let level = rms(steady) * std::f64::consts::SQRT_2 / 20000.0;
            assert!(db(level) < -50.0, "{from}->8k of {f} Hz: {} dB", db(level));
        }
    }

    #[test]
    fn long_run_output_count_never_drifts() {
        let mut rng = Rng(0x5eed_1234_9876_abcd);
        for (from, to) in [(44100, 48000), (48000, 44100), (8000, 44100), (44100, 8000), (48000, 16000), (11025, 8000)]
        {
            let mut r = Resampler::new(from, to).unwrap();
            let seconds = 5;
            let total = from as usize * seconds;
            let input = tone(440.0, 8000.0, from, total);
            let mut out = Vec::new();
            let mut pushed = 0;
            while pushed < total {
                let n = (rng.next() % 1500) as usize;
                let n = n.min(total - pushed);
                r.process(&input[pushed..pushed + n], &mut out);
                pushed += n;
                // Exactly ceil(n * to / from) at every point of the stream.
                let expect = (pushed as u64 * u64::from(to)).div_ceil(u64::from(from));
                assert_eq!(out.len() as u64, expect, "{from}->{to} after {pushed}");
            }
            let expect = to as usize * seconds;
            assert!(out.len().abs_diff(expect) <= 1, "{from}->{to}: {} vs {expect}", out.len());
        }
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let mut rng = Rng(42);
        for (from, to) in [(8000, 48000), (48000, 8000), (44100, 48000), (48000, 44100), (8000, 44100), (16000, 8000)] {
            let input: Vec<i16> = tone(700.0, 12000.0, from, from as usize / 2)
                .into_iter()
                .map(|s| s.saturating_add((rng.next() % 2001) as i16 - 1000))
                .collect();
            let whole = run(&mut Resampler::new(from, to).unwrap(), &input);
            let mut r = Resampler::new(from, to).unwrap();
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < input.len() {
                // Mostly small pieces, with single samples and empty calls.
                let n = match rng.next() % 4 {
                    0 => 0,
                    1 => 1,
                    2 => (rng.next() % 20) as usize,
                    _ => (rng.next() % 5000) as usize,
                };
                let n = n.min(input.len() - at);
                r.process(&input[at..at + n], &mut pieces);
                at += n;
            }
            assert_eq!(whole, pieces, "{from}->{to}");
        }
    }

    #[test]
    fn delay_is_where_an_impulse_comes_out() {
        for (from, to, at) in [(8000, 48000, 100), (48000, 8000, 600), (44100, 48000, 441), (48000, 44100, 480)] {
            let mut input = vec![0i16; from as usize / 10];
            input[at] = 20000;
            let mut r = Resampler::new(from, to).unwrap();
            let out = run(&mut r, &input);
            let peak = out.iter().enumerate().max_by_key(|(_, &s)| s).map(|(i, _)| i).unwrap();
            let expect = at * to as usize / from as usize + r.delay();
            assert_eq!(peak, expect, "{from}->{to}");
        }
    }

    #[test]
    fn delay_is_half_the_filter() {
        // 48 samples of the lower rate, rounded up to whole output samples.
        for (from, to, expect) in
            [(8000, 48000, 288), (48000, 8000, 48), (8000, 16000, 96), (44100, 48000, 53), (48000, 44100, 49)]
        {
            assert_eq!(Resampler::new(from, to).unwrap().delay(), expect, "{from}->{to}");
        }
        let ms = |from: u32, to: u32| Resampler::new(from, to).unwrap().delay() as f64 * 1000.0 / f64::from(to);
        assert!((ms(8000, 44100) - 6.0).abs() < 0.05);
        assert!((ms(44100, 8000) - 6.0).abs() < 0.2);
    }

    #[test]
    fn equal_rates_copy() {
        let mut r = Resampler::new(8000, 8000).unwrap();
        assert_eq!(r.delay(), 0);
        let input = tone(1000.0, 30000.0, 8000, 333);
        let mut out = vec![7];
        r.process(&input, &mut out);
        assert_eq!(out[0], 7);
        assert_eq!(&out[1..], &input[..]);
    }

    #[test]
    fn reset_starts_over() {
        let input = tone(1000.0, 10000.0, 8000, 1000);
        let mut r = Resampler::new(8000, 44100).unwrap();
        let first = run(&mut r, &input);
        run(&mut r, &input[..123]);
        r.reset();
        assert_eq!(run(&mut r, &input), first);
    }

    #[test]
    fn absurd_rates_are_refused() {
        for (from, to) in
            [(0, 8000), (8000, 0), (0, 0), (1, 8000), (3999, 8000), (8000, 192_001), (u32::MAX, 8000), (44100, 47999)]
        {
            assert!(Resampler::new(from, to).is_err(), "{from}->{to}");
        }
        for (from, to) in [(4000, 192_000), (192_000, 4000), (11025, 48000), (22050, 44100), (96000, 44100)] {
            assert!(Resampler::new(from, to).is_ok(), "{from}->{to}");
        }
    }

    #[test]
    fn empty_huge_and_extreme_input_never_panic() {
        for (from, to) in [(8000, 48000), (48000, 8000), (44100, 48000), (192_000, 4000), (4000, 192_000)] {
            // One call with a second of full-scale square wave (half a
            // million samples at the highest input rate), which overshoots
            // and must clip.
            let len = if from == 192_000 { 500_000 } else { from as usize };
            let square: Vec<i16> = (0..len).map(|n| if (n / 7) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            r.process(&[], &mut out);
            assert!(out.is_empty());
            r.process(&square, &mut out);
            assert!(r.history.len() < r.taps + CHUNK + 64, "history stays bounded");
            let expect = (square.len() as u64 * u64::from(to)).div_ceil(u64::from(from));
            assert_eq!(out.len() as u64, expect);
            r.process(&vec![i16::MIN; 10_000], &mut out);
            r.process(&[], &mut out);
        }
    }
}
