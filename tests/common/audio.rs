//! Audio for the call tests: make tone WAV files for the peers to play, read
//! the WAV files they record, and tell which tone a party really heard.
//!
//! WAV files are written and read here in plain Rust (no sox needed). The
//! reader is tolerant of what the peers write while a call is still running:
//! baresip's `sndfile` module (libsndfile) writes its 44-byte header with data
//! size 0 at the start and fixes it only when the call ends, linphonec fixes
//! its header when the recording stops (until then its first 44 bytes are
//! zeros: see [`pending_wav_data_len`]). A data size of 0 (or one past the end
//! of the file) therefore means "up to the end of the file", cut to whole
//! frames.
//!
//! What the peers write (seen with baresip 1.0.0 and linphonec 5.1.65):
//! baresip `*-dec.wav`/`*-enc.wav` are 16-bit PCM in the codec's format
//! (8 kHz mono for G.711, 48 kHz *stereo* for opus); linphonec's `record`
//! file is 16-bit PCM mono at the codec's rate (8 kHz for G.711, 48 kHz for
//! opus). Multi-channel files are mixed down to mono when read.
//!
//! Tone detection uses the Goertzel algorithm on 100 ms blocks; only "voiced"
//! blocks (RMS above [`VOICE_RMS`]) count, so leading silence, jitter-buffer
//! gaps and the tail after a hang-up do not dilute the result.

use std::fs;
use std::path::Path;

/// A 100 ms block whose RMS is below this (in 16-bit sample units, about
/// -44 dBFS) counts as silence. Decoded G.711 silence is a few units; a test
/// tone written by [`make_tone_wav`] has an RMS of about 11,600.
pub const VOICE_RMS: f64 = 200.0;

/// A winning tone must have at least this many times the power of every other
/// candidate (10 dB).
pub const DOMINANCE: f64 = 10.0;

/// A winning tone must carry at least this share of the voiced signal's power
/// (so that noise or speech never passes as a tone).
pub const MIN_TONE_SHARE: f64 = 0.3;

/// [`dominant_tone`] wants at least this much voiced audio.
pub const MIN_VOICED_SECS: f64 = 0.2;

/// [`assert_hears`] skips this much at the start of a recording (ringing,
/// jitter buffer fill, codec start-up).
pub const SKIP_SECS: f64 = 0.5;

/// [`assert_hears`] wants at least this much voiced audio after the skip.
pub const ASSERT_MIN_VOICED_SECS: f64 = 0.5;

const BLOCK_SECS: f64 = 0.1;

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Write 16-bit PCM `samples` (interleaved when `channels` > 1) as a WAV file.
pub fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVE");
    b.extend_from_slice(b"fmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, b).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Write a mono 16-bit WAV of a sine tone at half of full scale (like
/// `sox -n -r RATE -c 1 -b 16 out.wav synth SECS sine FREQ vol 0.5`), with
/// 10 ms fade-in and fade-out.
///
/// Make it longer than the call that plays it: baresip's `aufile` source
/// hangs the call up when the file ends ("audio error (0,end of file)").
pub fn make_tone_wav(path: &Path, freq_hz: f32, secs: f32, rate: u32) {
    let n = (secs as f64 * rate as f64).round() as usize;
    let fade = (rate as usize / 100).max(1);
    let w = 2.0 * std::f64::consts::PI * freq_hz as f64 / rate as f64;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let env = (i.min(n - 1 - i) as f64 / fade as f64).min(1.0);
            (0.5 * 32767.0 * env * (w * i as f64).sin()).round() as i16
        })
        .collect();
    write_wav(path, rate, 1, &samples);
}

/// Write a mono 16-bit WAV of digital silence.
pub fn make_silence_wav(path: &Path, secs: f32, rate: u32) {
    let n = (secs as f64 * rate as f64).round() as usize;
    write_wav(path, rate, 1, &vec![0i16; n]);
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// Format of a WAV file, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub rate: u32,
    pub channels: u16,
    pub bits: u16,
    /// 1 = integer PCM, 3 = IEEE float.
    pub format: u16,
    /// Byte offset of the sample data.
    pub data_offset: usize,
    /// Length of the sample data in bytes (whole frames; taken from the
    /// file's length when the header does not tell yet).
    pub data_len: usize,
}

impl WavFormat {
    pub fn frame_bytes(&self) -> usize {
        (self.bits as usize / 8) * self.channels as usize
    }
    pub fn frames(&self) -> usize {
        self.data_len / self.frame_bytes().max(1)
    }
    pub fn secs(&self) -> f64 {
        self.frames() as f64 / self.rate.max(1) as f64
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parse a WAV header from the bytes of a (possibly still growing) file.
pub fn parse_wav_header(b: &[u8]) -> Result<WavFormat, String> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(format!("not a RIFF/WAVE file ({} bytes)", b.len()));
    }
    let mut i = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32_at(b, i + 4) as usize;
        let body = i + 8;
        if id == b"fmt " {
            if body + 16 > b.len() {
                return Err("truncated fmt chunk".into());
            }
            let mut format = u16_at(b, body);
            let channels = u16_at(b, body + 2);
            let rate = u32_at(b, body + 4);
            let bits = u16_at(b, body + 14);
            if format == 0xFFFE && size >= 40 && body + 26 <= b.len() {
                // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag.
                format = u16_at(b, body + 24);
            }
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.ok_or_else(|| "data chunk before fmt chunk".to_string())?;
            if channels == 0 || rate == 0 {
                return Err(format!("bad format: {channels} channels, {rate} Hz"));
            }
            let ok = matches!((format, bits), (1, 8) | (1, 16) | (1, 24) | (1, 32) | (3, 32));
            if !ok {
                return Err(format!("unsupported sample format {format} with {bits} bits"));
            }
            let avail = b.len() - body;
            // 0: header not written yet (libsndfile while recording);
            // 0xFFFFFFFF or past the end: still growing.
            let len = if size == 0 || size > avail { avail } else { size };
            let mut f = WavFormat {
                rate,
                channels,
                bits,
                format,
                data_offset: body,
                data_len: 0,
            };
            f.data_len = len - len % f.frame_bytes();
            return Ok(f);
        }
        i = body + size + (size & 1);
    }
    match fmt {
        Some(_) => Err("no data chunk yet".into()),
        None => Err("no fmt chunk".into()),
    }
}

/// Format of the WAV file at `path`.
pub fn wav_format(path: &Path) -> Result<WavFormat, String> {
    let b = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    parse_wav_header(&b).map_err(|e| format!("{}: {e}", path.display()))
}

/// Seconds of audio in the WAV file at `path` (0 when it is missing or has no
/// complete header yet): for waiting until a peer has recorded enough.
pub fn wav_secs(path: &Path) -> f64 {
    wav_format(path).map(|f| f.secs()).unwrap_or(0.0)
}

/// Bytes of sample data in a WAV file whose header is not written yet:
/// mediastreamer's recorder (linphonec's `record`) writes 44 zero bytes first
/// and the real header only when the recording stops. None when the file is
/// missing or has a header already.
pub fn pending_wav_data_len(path: &Path) -> Option<usize> {
    let b = fs::read(path).ok()?;
    (b.len() >= 44 && b[..4] == [0, 0, 0, 0]).then(|| b.len() - 44)
}

/// Decode WAV bytes to (sample rate, mono 16-bit samples).
pub fn decode_wav(b: &[u8]) -> Result<(u32, Vec<i16>), String> {
    let f = parse_wav_header(b)?;
    let data = &b[f.data_offset..f.data_offset + f.data_len];
    let bps = f.bits as usize / 8;
    let ch = f.channels as usize;
    let sample = |s: &[u8]| -> f64 {
        match (f.format, f.bits) {
            (1, 8) => (s[0] as f64 - 128.0) * 256.0,
            (1, 16) => i16::from_le_bytes([s[0], s[1]]) as f64,
            (1, 24) => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f64 / 256.0,
            (1, 32) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64 / 65536.0,
            _ => f32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64 * 32767.0,
        }
    };
    let out = data
        .chunks_exact(bps * ch)
        .map(|frame| {
            let sum: f64 = frame.chunks_exact(bps).map(sample).sum();
            (sum / ch as f64).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    Ok((f.rate, out))
}

/// Read a WAV file as (sample rate, mono 16-bit samples); panics with the
/// reason when it cannot. Tolerates files still being written.
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let b = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    decode_wav(&b).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

/// Power of the `freq` component of `samples` (Goertzel), scaled so that a
/// pure sine of amplitude A gives A²/2, i.e. its mean square: comparable with
/// [`mean_square`] of the same samples.
pub fn tone_power(samples: &[i16], rate: u32, freq: f32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq as f64 / rate as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = x as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let mag2 = (s1 * s1 + s2 * s2 - c * s1 * s2).max(0.0);
    let n = samples.len() as f64;
    2.0 * mag2 / (n * n)
}

/// Mean of the squared samples.
pub fn mean_square(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / samples.len() as f64
}

/// What an analysis of some audio found.
#[derive(Debug, Clone)]
pub struct ToneAnalysis {
    pub rate: u32,
    /// Length of what was analysed (after any skip).
    pub secs: f64,
    /// Length of the voiced 100 ms blocks among it.
    pub voiced_secs: f64,
    /// RMS over the voiced blocks.
    pub rms: f64,
    /// (frequency, mean power over the voiced blocks) for each candidate.
    pub powers: Vec<(f32, f64)>,
}

impl ToneAnalysis {
    /// Power of candidate `freq` (0 when it was not a candidate).
    pub fn power(&self, freq: f32) -> f64 {
        self.powers
            .iter()
            .find(|(f, _)| *f == freq)
            .map(|(_, p)| *p)
            .unwrap_or(0.0)
    }

    /// The candidate that dominates, under the rules of [`dominant_tone`].
    pub fn dominant(&self) -> Option<f32> {
        if self.voiced_secs < MIN_VOICED_SECS || self.rms < VOICE_RMS {
            return None;
        }
        let total = self.rms * self.rms;
        let (best, p) = self
            .powers
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if p < MIN_TONE_SHARE * total {
            return None;
        }
        let beaten = self
            .powers
            .iter()
            .filter(|(f, _)| *f != best)
            .all(|(_, q)| p >= DOMINANCE * q);
        beaten.then_some(best)
    }
}

impl std::fmt::Display for ToneAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = (self.rms * self.rms).max(1e-9);
        write!(
            f,
            "{} Hz, {:.2} s analysed, {:.2} s voiced, RMS {:.0}; tone powers:",
            self.rate, self.secs, self.voiced_secs, self.rms
        )?;
        for (fr, p) in &self.powers {
            write!(f, " {fr} Hz = {p:.3e} ({:.1}% of power)", 100.0 * p / total)?;
        }
        Ok(())
    }
}

/// Analyse `samples` in 100 ms blocks: keep the voiced ones, measure each
/// candidate tone over them.
pub fn analyze(samples: &[i16], rate: u32, candidates: &[f32]) -> ToneAnalysis {
    let block = ((rate as f64 * BLOCK_SECS) as usize).max(1);
    let mut voiced = 0usize;
    let mut energy = 0.0f64;
    let mut powers = vec![0.0f64; candidates.len()];
    for b in samples.chunks(block) {
        if b.len() < block / 2 {
            continue;
        }
        let ms = mean_square(b);
        if ms.sqrt() < VOICE_RMS {
            continue;
        }
        voiced += b.len();
        energy += ms * b.len() as f64;
        for (i, &f) in candidates.iter().enumerate() {
            powers[i] += tone_power(b, rate, f) * b.len() as f64;
        }
    }
    let norm = voiced.max(1) as f64;
    ToneAnalysis {
        rate,
        secs: samples.len() as f64 / rate.max(1) as f64,
        voiced_secs: voiced as f64 / rate.max(1) as f64,
        rms: (energy / norm).sqrt(),
        powers: candidates
            .iter()
            .zip(powers)
            .map(|(&f, p)| (f, p / norm))
            .collect(),
    }
}

/// Which of `candidates` is the tone in `samples`: `None` when the audio is
/// (nearly) silent (less than 0.2 s voiced), when no candidate carries at
/// least 30 % of the voiced power, or when the strongest one is not at least
/// 10 times (10 dB) stronger than every other candidate.
pub fn dominant_tone(samples: &[i16], rate: u32, candidates: &[f32]) -> Option<f32> {
    analyze(samples, rate, candidates).dominant()
}

/// Analyse the WAV file at `path` after skipping its first `skip_secs`.
pub fn analyze_wav(path: &Path, skip_secs: f64, candidates: &[f32]) -> ToneAnalysis {
    let (rate, samples) = read_wav(path);
    let skip = ((skip_secs * rate as f64) as usize).min(samples.len());
    analyze(&samples[skip..], rate, candidates)
}

/// Panic unless the recording at `path` is clearly `expected_hz` and none of
/// `other_hz`: skips the first 0.5 s, wants 0.5 s of voiced audio after it,
/// and the rules of [`dominant_tone`]. The message tells the powers and
/// lengths found.
pub fn assert_hears(path: &Path, expected_hz: f32, other_hz: &[f32]) {
    let mut cands = vec![expected_hz];
    cands.extend(other_hz.iter().copied().filter(|f| *f != expected_hz));
    let a = analyze_wav(path, SKIP_SECS, &cands);
    let fmt = wav_format(path)
        .map(|f| format!("{} Hz, {} ch, {} bit, {:.2} s", f.rate, f.channels, f.bits, f.secs()))
        .unwrap_or_else(|e| e);
    if a.voiced_secs < ASSERT_MIN_VOICED_SECS {
        panic!(
            "{} should hold a {expected_hz} Hz tone but is (nearly) silent: \
             only {:.2} s voiced after skipping {SKIP_SECS} s (want {ASSERT_MIN_VOICED_SECS} s). \
             File: {fmt}. Analysis: {a}",
            path.display(),
            a.voiced_secs
        );
    }
    match a.dominant() {
        Some(f) if f == expected_hz => {}
        Some(f) => panic!(
            "{} holds a {f} Hz tone, not the expected {expected_hz} Hz. File: {fmt}. Analysis: {a}",
            path.display()
        ),
        None => panic!(
            "{} has no clear {expected_hz} Hz tone (want it to carry >= {:.0}% of the power \
             and beat {other_hz:?} Hz by {DOMINANCE}x). File: {fmt}. Analysis: {a}",
            path.display(),
            MIN_TONE_SHARE * 100.0
        ),
    }
}
