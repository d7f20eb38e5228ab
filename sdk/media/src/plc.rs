//! Packet loss concealment for G.711 (8 kHz mono `i16`), after the idea of
//! ITU-T G.711 Appendix I: G.711 carries no state a decoder could
//! extrapolate from, so the concealment keeps its own history of the audio
//! that was played and, when packets go missing, replays the last pitch
//! period(s) of it. Voiced speech is close to periodic over a few tens of
//! milliseconds, so a replayed period sounds like the talker holding the
//! sound, where silence would be heard as a hole and a click.
//!
//! On a loss the pitch period is estimated by normalised autocorrelation
//! over the last 20 ms of history (lags of 5 to 15 ms; higher voices are
//! matched by a multiple of their period). The first 10 ms repeat the last
//! period; then two and three periods are cycled, so that longer losses do
//! not turn into a buzz; every join is cross-faded over a quarter period.
//! After the first 10 ms the output is attenuated by 20 % per 10 ms, so it
//! is silent from 60 ms on: beyond that, extrapolated speech is worse than
//! silence. When audio resumes, its start is cross-faded with the
//! continuation of the concealment (a quarter period, plus 4 ms per 10 ms of
//! loss, at most 10 ms), so there is no click at either end of a gap.
//!
//! Unlike Appendix I this adds no delay: the start of a loss cannot
//! cross-fade into audio already handed out, so the first quarter period of
//! concealment instead carries a fading correction of the step between the
//! last real sample and the replayed waveform. Like the rest of the crate it
//! is sans-IO and panic-free on any samples.

/// Samples of played audio kept: the pitch window plus the longest lag, and
/// three of the longest periods plus the quarter period before them.
const HISTORY_LEN: usize = 400;
/// Shortest pitch period searched (5 ms, 200 Hz).
const MIN_PITCH: usize = 40;
/// Longest pitch period searched (15 ms, 66.7 Hz).
const MAX_PITCH: usize = 120;
/// The stretch of recent audio the pitch search correlates (20 ms).
const PITCH_WINDOW: usize = 160;
/// Audio needed before a pitch can be estimated; with less (a loss right at
/// the start of a stream) the concealment is silence.
const MIN_HISTORY: usize = PITCH_WINDOW + MAX_PITCH;
/// The most pitch periods cycled in a long loss.
const MAX_PERIODS: usize = 3;
/// 10 ms: the step of the schedule (one more period, 20 % less gain).
const STEP: usize = 80;
/// From this many concealed samples (60 ms) the output is silence.
const SILENT_AFTER: usize = 6 * STEP;
/// The longest resume cross-fade (10 ms).
const MAX_RESUME_FADE: usize = STEP;
/// What each further 10 ms of loss adds to the resume cross-fade (4 ms): the
/// longer the loss, the further the resumed audio is from the replay.
const RESUME_FADE_PER_STEP: usize = 32;

/// Concealment for one G.711 stream: feed every decoded frame through
/// [`G711Plc::good_frame`] and ask [`G711Plc::conceal`] for whatever is lost.
#[derive(Clone)]
pub struct G711Plc {
    /// The last [`HISTORY_LEN`] samples handed out (real or concealed),
    /// oldest first; zeros before the stream started.
    history: [i16; HISTORY_LEN],
    /// How much of `history` is stream audio rather than the initial zeros.
    filled: usize,
    /// The last sample handed out.
    last_out: i16,
    /// The loss being concealed, kept until the resume cross-fade is done.
    erasure: Option<Erasure>,
}

impl std::fmt::Debug for G711Plc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G711Plc").field("filled", &self.filled).field("concealing", &self.erasure.is_some()).finish()
    }
}

impl Default for G711Plc {
    fn default() -> Self {
        Self::new()
    }
}

impl G711Plc {
    pub fn new() -> Self {
        Self { history: [0; HISTORY_LEN], filled: 0, last_out: 0, erasure: None }
    }

    /// Forgets the history, as for a new stream.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether a loss is being concealed or its resume cross-fade is still
    /// running.
    pub fn is_concealing(&self) -> bool {
        self.erasure.is_some()
    }

    /// Takes one frame of received audio (any length). Right after a loss,
    /// its start is cross-faded in place from the concealment into the real
    /// audio (over up to 10 ms, continued into the next frames if this one is
    /// shorter). The frame then becomes history for the next loss.
    pub fn good_frame(&mut self, pcm: &mut [i16]) {
        if let Some(mut e) = self.erasure.take() {
            let (done, total) = *e.fade.get_or_insert_with(|| {
                let extra = e.elapsed.saturating_sub(1) / STEP;
                let total = e.ola.saturating_add(extra.saturating_mul(RESUME_FADE_PER_STEP));
                (0, total.clamp(1, MAX_RESUME_FADE))
            });
            let mut done = done;
            for s in pcm.iter_mut() {
                if done >= total {
                    break;
                }
                let synth = e.next_sample();
                // Weight of the real audio rises from 1/(total+1) to
                // total/(total+1): neither end is a step.
                let w = (done + 1) as f32 / (total + 1) as f32;
                *s = to_i16(w * f32::from(*s) + (1.0 - w) * synth);
                done += 1;
            }
            if done < total {
                e.fade = Some((done, total));
                self.erasure = Some(e);
            }
        }
        self.remember(pcm);
    }

    /// Appends `samples` samples of concealment to `out`: the replayed pitch
    /// periods, fading to silence from 10 ms to 60 ms into the loss. Calls
    /// for consecutive pieces of one loss continue where the last left off.
    pub fn conceal(&mut self, out: &mut Vec<i16>, samples: usize) {
        if samples == 0 {
            // Nothing lost: no loss begins, so the next frame is not faded.
            return;
        }
        let start = out.len();
        let mut e = match self.erasure.take() {
            // Consecutive pieces of one loss.
            Some(e) if e.fade.is_none() => e,
            // Lost again during the resume cross-fade: carry on with the same
            // replay (whose clock ran on under the fade), bridging the step
            // from the faded audio back to it.
            Some(mut e) => {
                e.fade = None;
                e.set_correction(f32::from(self.last_out) - e.last_synth);
                e
            }
            None => self.start_erasure(),
        };
        out.reserve(samples);
        let mut left = samples;
        while left > 0 {
            if e.is_silent() {
                // Nothing but zeros from here: skip the per-sample work, so a
                // long gap costs a memset.
                out.resize(out.len() + left, 0);
                e.elapsed = e.elapsed.saturating_add(left);
                e.last_synth = 0.0;
                break;
            }
            out.push(to_i16(e.next_sample()));
            left -= 1;
        }
        self.erasure = Some(e);
        if let Some(new) = out.get(start..) {
            // The concealment is history too: a second loss soon after this
            // one then finds a continuous waveform to analyse.
            self.remember(new);
        }
    }

    /// Sets up the replay for a loss that starts now.
    fn start_erasure(&mut self) -> Erasure {
        if self.filled < MIN_HISTORY {
            // Too little audio for a pitch: silence, as without concealment.
            return Erasure::silent();
        }
        let pitch = self.estimate_pitch();
        let ola = pitch / 4;
        // Each extra period also needs the quarter period before it.
        let max_periods = (self.filled.saturating_sub(ola) / pitch).clamp(1, MAX_PERIODS);
        let mut e = Erasure {
            template: self.history,
            voiced: true,
            pitch,
            ola,
            periods: 1,
            max_periods,
            pos: 0,
            switch: None,
            elapsed: 0,
            correction: 0.0,
            correction_left: 0,
            last_synth: 0.0,
            fade: None,
        };
        // The replay starts one period back; the sample before that start
        // is what the replay "thinks" was played last.
        let predecessor = e.at(HISTORY_LEN - pitch - 1);
        e.set_correction(f32::from(self.last_out) - predecessor);
        e
    }

    /// The lag in `MIN_PITCH..=MAX_PITCH` at which the last `PITCH_WINDOW`
    /// samples best match the audio before them (normalised
    /// cross-correlation, so a loud older stretch does not win on energy).
    fn estimate_pitch(&self) -> usize {
        let recent = &self.history[HISTORY_LEN - PITCH_WINDOW..];
        let mut best = (MAX_PITCH, 0.0f64);
        for lag in MIN_PITCH..=MAX_PITCH {
            let start = HISTORY_LEN - PITCH_WINDOW - lag;
            let earlier = &self.history[start..start + PITCH_WINDOW];
            let (mut corr, mut energy) = (0.0f64, 0.0f64);
            for (&a, &b) in recent.iter().zip(earlier) {
                let (a, b) = (f64::from(a), f64::from(b));
                corr += a * b;
                energy += b * b;
            }
            if corr > 0.0 && energy > 0.0 {
                let score = corr / energy.sqrt();
                if score > best.1 {
                    best = (lag, score);
                }
            }
        }
        // No positive match (silence, noise): the longest period buzzes least.
        best.0
    }

    /// Appends handed-out samples to the history.
    fn remember(&mut self, pcm: &[i16]) {
        let n = pcm.len();
        if n >= HISTORY_LEN {
            self.history.copy_from_slice(&pcm[n - HISTORY_LEN..]);
        } else {
            self.history.copy_within(n.., 0);
            self.history[HISTORY_LEN - n..].copy_from_slice(pcm);
        }
        self.filled = self.filled.saturating_add(n).min(HISTORY_LEN);
        if let Some(&last) = pcm.last() {
            self.last_out = last;
        }
    }
}

/// The replay of one loss.
#[derive(Clone)]
struct Erasure {
    /// The history as it was when the loss began.
    template: [i16; HISTORY_LEN],
    /// False when there was too little history: the replay is silence.
    voiced: bool,
    pitch: usize,
    /// Overlap-add length at joins: a quarter period.
    ola: usize,
    /// Pitch periods being cycled (1..=`max_periods`).
    periods: usize,
    max_periods: usize,
    /// Read position in the cycled periods, 0..`periods * pitch`.
    pos: usize,
    /// A cross-fade from fewer periods to more, while it runs.
    switch: Option<Switch>,
    /// Samples synthesised so far in this loss (the resume fade included).
    elapsed: usize,
    /// Step between the audio handed out and the replay, faded out over
    /// `ola` samples.
    correction: f32,
    correction_left: usize,
    /// The replay's value (gain applied, correction not) at the last sample
    /// handed out.
    last_synth: f32,
    /// Resume cross-fade progress (samples done, total), once audio is back.
    fade: Option<(usize, usize)>,
}

#[derive(Clone, Copy)]
struct Switch {
    periods: usize,
    pos: usize,
    left: usize,
}

impl Erasure {
    fn silent() -> Self {
        Self {
            template: [0; HISTORY_LEN],
            voiced: false,
            pitch: MAX_PITCH,
            ola: MAX_PITCH / 4,
            periods: 1,
            max_periods: 1,
            pos: 0,
            switch: None,
            elapsed: 0,
            correction: 0.0,
            correction_left: 0,
            last_synth: 0.0,
            fade: None,
        }
    }

    fn set_correction(&mut self, step: f32) {
        self.correction = step;
        self.correction_left = if step == 0.0 { 0 } else { self.ola.max(1) };
    }

    /// Whether every further sample is zero.
    fn is_silent(&self) -> bool {
        (!self.voiced || self.elapsed >= SILENT_AFTER) && self.correction_left == 0
    }

    fn at(&self, i: usize) -> f32 {
        self.template.get(i).map_or(0.0, |&s| f32::from(s))
    }

    /// Sample `pos` of the last `periods` pitch periods played cyclically.
    /// The last quarter period is cross-faded into the quarter period that
    /// precedes the cycle in the history, so the wrap back to the start of
    /// the cycle continues the waveform instead of jumping.
    fn cycle(&self, periods: usize, pos: usize) -> f32 {
        let len = periods * self.pitch;
        let base = HISTORY_LEN - len;
        let a = self.at(base + pos);
        let tail_start = len - self.ola;
        if pos < tail_start {
            return a;
        }
        let j = pos - tail_start;
        let w = (self.ola - j) as f32 / (self.ola + 1) as f32;
        // base + pos - len = HISTORY_LEN - len - ola + j >= 0: the history
        // holds three longest periods plus a quarter period.
        let b = self.at((base + pos).saturating_sub(len));
        w * a + (1.0 - w) * b
    }

    /// The next sample of concealment, before rounding.
    fn next_sample(&mut self) -> f32 {
        let n = self.elapsed;
        self.elapsed = n.saturating_add(1);
        let mut v = if self.voiced && n < SILENT_AFTER { self.replay(n) } else { 0.0 };
        // 20 % per 10 ms after the first 10 ms, per sample so it is smooth.
        if n >= STEP {
            let gain = 1.0 - (n - STEP) as f32 / (SILENT_AFTER - STEP) as f32;
            v *= gain.max(0.0);
        }
        self.last_synth = v;
        if self.correction_left > 0 {
            v += self.correction * self.correction_left as f32 / (self.ola.max(1) + 1) as f32;
            self.correction_left -= 1;
        }
        v
    }

    /// The replayed waveform at concealed sample `n`, at full gain.
    fn replay(&mut self, n: usize) -> f32 {
        let wanted = (1 + n / STEP).min(self.max_periods);
        if wanted > self.periods && self.switch.is_none() {
            // Same phase, but in the oldest period: the replay moves further
            // back in time, which is what keeps longer losses from buzzing.
            self.switch = Some(Switch { periods: self.periods, pos: self.pos, left: self.ola });
            self.periods = wanted;
            self.pos %= self.pitch;
        }
        let mut v = self.cycle(self.periods, self.pos);
        self.pos = (self.pos + 1) % (self.periods * self.pitch);
        if let Some(mut s) = self.switch {
            if s.left > 0 {
                let old = self.cycle(s.periods, s.pos);
                s.pos = (s.pos + 1) % (s.periods * self.pitch);
                let w = s.left as f32 / (self.ola + 1) as f32;
                v = w * old + (1.0 - w) * v;
                s.left -= 1;
            }
            self.switch = if s.left > 0 { Some(s) } else { None };
        }
        v
    }
}

fn to_i16(v: f32) -> i16 {
    // `as` saturates (and maps NaN to 0), so no input can overflow here.
    v.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amplitude: f64, from: usize, len: usize) -> Vec<i16> {
        (from..from + len)
            .map(|n| (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()).round() as i16)
            .collect()
    }

    /// Power at `freq` (Goertzel).
    fn power(samples: &[i16], freq: f64) -> f64 {
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

    /// The strongest frequency between 100 and 3900 Hz, in 5 Hz steps.
    fn dominant(samples: &[i16]) -> f64 {
        (20..=780)
            .map(|i| f64::from(i) * 5.0)
            .fold((0.0, 0.0), |best, f| {
                let p = power(samples, f);
                if p > best.1 {
                    (f, p)
                } else {
                    best
                }
            })
            .0
    }

    fn energy(samples: &[i16]) -> f64 {
        samples.iter().map(|&s| f64::from(s).powi(2)).sum()
    }

    fn max_jump(samples: &[i16]) -> i32 {
        samples.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max().unwrap_or(0)
    }

    /// A PLC that has played 100 ms of `history`, in 20 ms frames.
    fn primed(history: &[i16]) -> G711Plc {
        let mut plc = G711Plc::new();
        for frame in history.chunks(160) {
            let mut f = frame.to_vec();
            plc.good_frame(&mut f);
            assert_eq!(f, frame, "no loss yet: frames pass unchanged");
        }
        plc
    }

    #[test]
    fn tone_is_continued_at_its_frequency_then_fades_out() {
        let mut plc = primed(&tone(440.0, 10000.0, 0, 800));
        let mut out = Vec::new();
        plc.conceal(&mut out, 640);
        assert_eq!(out.len(), 640);
        let first = &out[..160];
        let f = dominant(first);
        assert!((f - 440.0).abs() <= 15.0, "dominant {f} Hz");
        // Still a clean tone: 440 Hz dominates its octave and the noise.
        assert!(power(first, 440.0) > 30.0 * power(first, 880.0));
        assert!(power(first, 440.0) > 30.0 * power(first, 300.0));
        // Full level for 10 ms, then decaying, silent from 60 ms.
        let e10 = energy(&out[..80]);
        assert!(e10 > 0.8 * energy(&tone(440.0, 10000.0, 0, 80)));
        let per_10ms: Vec<f64> = out.chunks(80).map(energy).collect();
        for w in per_10ms[1..6].windows(2) {
            assert!(w[1] < w[0], "decays: {per_10ms:?}");
        }
        assert!(per_10ms[5] < 0.05 * e10, "{per_10ms:?}");
        assert!(out[480..].iter().all(|&s| s == 0));
    }

    #[test]
    fn longer_loss_still_keeps_the_frequency() {
        // Two and three periods cycled from 10 and 20 ms on, cross-faded:
        // the 20..40 ms stretch is still the same tone.
        let mut plc = primed(&tone(440.0, 10000.0, 0, 800));
        let mut out = Vec::new();
        plc.conceal(&mut out, 480);
        let f = dominant(&out[160..320]);
        assert!((f - 440.0).abs() <= 15.0, "dominant {f} Hz");
    }

    #[test]
    fn no_click_where_the_loss_starts_or_ends() {
        let history = tone(440.0, 10000.0, 0, 800);
        let own = max_jump(&history);
        for lost in [1, 37, 80, 160, 240, 400, 800] {
            // Resume with the tone half a period out of phase with the
            // replay: the worst case for a hard switch (a jump of up to 2x
            // the amplitude).
            for phase in [0.0, 0.5] {
                let mut plc = primed(&history);
                let mut stream = history.clone();
                plc.conceal(&mut stream, lost);
                let shift = (phase * 8000.0 / 440.0) as usize;
                let mut next = tone(440.0, 10000.0, 800 + lost + shift, 320);
                for frame in next.chunks_mut(160) {
                    plc.good_frame(frame);
                }
                stream.extend_from_slice(&next);
                let join = max_jump(&stream[700..]);
                assert!(
                    f64::from(join) <= 1.3 * f64::from(own),
                    "lost {lost}, phase {phase}: jump {join} vs the tone's own {own}"
                );
            }
        }
    }

    #[test]
    fn resume_fade_spans_short_frames() {
        let history = tone(440.0, 10000.0, 0, 800);
        let own = max_jump(&history);
        let mut plc = primed(&history);
        let mut stream = history.clone();
        plc.conceal(&mut stream, 320);
        let mut next = tone(440.0, 10000.0, 1200, 200);
        for frame in next.chunks_mut(3) {
            plc.good_frame(frame);
        }
        assert!(!plc.is_concealing(), "the fade ended within 10 ms");
        stream.extend_from_slice(&next);
        assert!(f64::from(max_jump(&stream[700..])) <= 1.3 * f64::from(own));
        // After the fade the audio passes unchanged.
        let mut more = tone(440.0, 10000.0, 1400, 160);
        let copy = more.clone();
        plc.good_frame(&mut more);
        assert_eq!(more, copy);
    }

    #[test]
    fn second_loss_during_the_resume_fade_has_no_click() {
        let history = tone(440.0, 10000.0, 0, 800);
        let own = max_jump(&history);
        let mut plc = primed(&history);
        let mut stream = history.clone();
        plc.conceal(&mut stream, 160);
        let mut next = tone(440.0, 10000.0, 970, 10);
        plc.good_frame(&mut next);
        assert!(plc.is_concealing());
        stream.extend_from_slice(&next);
        plc.conceal(&mut stream, 160);
        let mut after = tone(440.0, 10000.0, 1300, 160);
        plc.good_frame(&mut after);
        stream.extend_from_slice(&after);
        assert!(f64::from(max_jump(&stream[700..])) <= 1.3 * f64::from(own));
    }

    #[test]
    fn concealing_nothing_changes_nothing() {
        let history = tone(440.0, 10000.0, 0, 800);
        let mut plc = primed(&history);
        let mut out = Vec::new();
        plc.conceal(&mut out, 0);
        assert!(out.is_empty() && !plc.is_concealing());
        let mut next = tone(440.0, 10000.0, 800, 160);
        let copy = next.clone();
        plc.good_frame(&mut next);
        assert_eq!(next, copy);
    }

    #[test]
    fn silence_conceals_to_silence() {
        let mut plc = primed(&[0; 800]);
        let mut out = Vec::new();
        plc.conceal(&mut out, 400);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn loss_at_stream_start_is_silence() {
        for history in [&[][..], &tone(440.0, 10000.0, 0, 160)[..]] {
            let mut plc = primed(history);
            let mut out = Vec::new();
            plc.conceal(&mut out, 160);
            assert_eq!(out, vec![0; 160]);
        }
    }

    #[test]
    fn conceals_exactly_the_requested_length() {
        for n in [0, 1, 7, 160, 481, 8000] {
            for history in [vec![], tone(440.0, 10000.0, 0, 800)] {
                let mut plc = primed(&history);
                let mut out = vec![5; 3];
                plc.conceal(&mut out, n);
                assert_eq!(out.len(), 3 + n);
                assert_eq!(&out[..3], &[5, 5, 5], "appends");
            }
        }
        // Many small pieces of one loss add up the same.
        let mut plc = primed(&tone(440.0, 10000.0, 0, 800));
        let mut out = Vec::new();
        for n in [1, 7, 160, 481] {
            plc.conceal(&mut out, n);
        }
        assert_eq!(out.len(), 649);
    }

    #[test]
    fn pieces_of_one_loss_equal_one_piece() {
        let history = tone(440.0, 10000.0, 0, 800);
        let mut whole = Vec::new();
        primed(&history).conceal(&mut whole, 600);
        let mut plc = primed(&history);
        let mut pieces = Vec::new();
        for n in [1, 7, 72, 160, 199, 161] {
            plc.conceal(&mut pieces, n);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn extreme_input_never_panics() {
        let square: Vec<i16> = (0..2000).map(|n| if (n / 20) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        let histories = [square, vec![i16::MIN; 2000], vec![i16::MAX; 2000], tone(3999.0, 32767.0, 0, 2000)];
        for history in histories {
            let mut plc = primed(&history);
            let mut out = Vec::new();
            for n in [1, 7, 160, 481, 8000] {
                plc.conceal(&mut out, n);
                let mut back = history[..n.min(history.len())].to_vec();
                plc.good_frame(&mut back);
                let mut back = vec![i16::MIN; 3];
                plc.good_frame(&mut back);
            }
            plc.good_frame(&mut []);
        }
    }

    #[test]
    fn g711_decoder_conceals_with_the_plc() {
        use crate::codec::{Codec, Decoder, Encoder};
        let pcm = tone(440.0, 10000.0, 0, 1120);
        let own = max_jump(&pcm);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut enc = Encoder::new(codec).unwrap();
            let mut dec = Decoder::new(codec).unwrap();
            let mut out = Vec::new();
            for (i, frame) in pcm.chunks(160).enumerate() {
                if i == 5 {
                    // Packet 5 is lost.
                    assert_eq!(dec.conceal(160, None, &mut out).unwrap(), 160);
                    continue;
                }
                let mut payload = Vec::new();
                enc.encode(frame, &mut payload).unwrap();
                assert_eq!(dec.decode(&payload, &mut out).unwrap(), 160);
            }
            assert_eq!(out.len(), pcm.len());
            let gap = &out[800..960];
            assert!((dominant(gap) - 440.0).abs() <= 15.0);
            assert!(energy(gap) > 0.5 * energy(&pcm[800..960]), "not silence");
            assert!(f64::from(max_jump(&out)) <= 1.3 * f64::from(own));
        }
    }

    #[test]
    fn reset_forgets_the_history() {
        let mut plc = primed(&tone(440.0, 10000.0, 0, 800));
        plc.reset();
        let mut out = Vec::new();
        plc.conceal(&mut out, 160);
        assert!(out.iter().all(|&s| s == 0));
    }
}
