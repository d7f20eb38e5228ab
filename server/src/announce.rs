//! Announcements: recorded prompts and hold music the PBX plays itself
//! (ADR 0005, section 3). Every piece of audio, whether uploaded (WAV, MP3,
//! Ogg Opus) or spoken by espeak-ng, takes one path: decoded, mixed to mono,
//! silence trimmed, level set to -3 dBFS peak, converted to 8 kHz, and kept
//! as `DATA/announcements/NAME.wav` (8 kHz mono 16-bit), so the relay
//! threads only ever copy ready 8 kHz samples.
//!
//! The decoders here face files from anyone with an admin account: every
//! failure is an [`AnnounceError`] naming the problem, never a panic, and
//! decoding stops once the audio is longer than we would keep, so a small
//! compressed upload cannot fill the memory.

use crate::store::{check_media_name, Announcement, AnnouncementSource, SqliteStore, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tsunagu_media::codec::{self, Codec, Decoder};
use tsunagu_media::resample::Resampler;

/// The rate of every stored announcement (what G.711 and the endpoint use).
pub const RATE: u32 = 8000;
/// The longest announcement kept.
pub const MAX_SECS: u64 = 15 * 60;
/// Decoding stops past this much raw audio: a little over the limit, since
/// silence at either end is trimmed afterwards.
const MAX_RAW_SECS: u64 = MAX_SECS + 60;
/// -3 dBFS: loud enough over a phone line, with room for the codecs.
const TARGET_PEAK: f32 = 0.707_946;
/// 20 dB at most: a quiet recording is lifted, a noise floor is not made a roar.
const MAX_GAIN: f32 = 10.0;
/// Below -60 dBFS peak there is nothing to hear.
const SILENT_PEAK: f32 = 0.001;
/// Leading and trailing audio 40 dB under the peak counts as silence.
const TRIM_BELOW_PEAK: f32 = 0.01;
/// Kept before the first and after the last sound, so onsets and decays are not cut.
const TRIM_MARGIN_MS: u32 = 50;
/// espeak-ng's limit per announcement (and the ADR's).
pub const MAX_TEXT_CHARS: usize = 2000;
/// espeak-ng is killed after this long.
const SPEAK_TIMEOUT: Duration = Duration::from_secs(10);
/// The voice of the built-in prompts and the default for spoken ones.
pub const DEFAULT_VOICE: &str = "ja";
/// The built-in hold music's name (the default of the setting `music_on_hold`).
pub const HOLD_MUSIC: &str = "hold-music";

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The audio cannot be used (unreadable, silent, too long): the uploader's to fix.
    #[error("{0}")]
    Audio(String),
    /// Text-to-speech is not installed or failed.
    #[error("{0}")]
    Speech(String),
    /// A name, text, label or voice that is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Still named by a DID, group, schedule, setting or menu.
    #[error("{0}")]
    InUse(String),
    #[error("announcement storage: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn audio_err(m: impl Into<String>) -> AnnounceError {
    AnnounceError::Audio(m.into())
}

// ---- decoding ---------------------------------------------------------

/// Decoded audio, already mixed to mono, in -1..1 (floats may exceed it).
struct Pcm {
    rate: u32,
    mono: Vec<f32>,
}

fn check_rate(what: &str, rate: u32) -> Result<(), AnnounceError> {
    if (8000..=48000).contains(&rate) {
        Ok(())
    } else {
        Err(audio_err(format!("{what}: a sample rate of {rate} Hz is not supported (8000 to 48000 Hz)")))
    }
}

fn too_long(what: &str, frames: u64, rate: u32) -> Result<(), AnnounceError> {
    if frames > MAX_RAW_SECS * u64::from(rate) {
        Err(audio_err(format!("{what}: the audio is longer than {} minutes", MAX_SECS / 60)))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Wav,
    Mp3,
    OggOpus,
}

/// The format by content: file names and MIME types lie.
fn sniff(b: &[u8]) -> Result<Format, AnnounceError> {
    if b.is_empty() {
        return Err(audio_err("the file is empty"));
    }
    if b.starts_with(b"RIFF") {
        return Ok(Format::Wav);
    }
    if b.starts_with(b"OggS") {
        return Ok(Format::OggOpus);
    }
    if b.starts_with(b"ID3") {
        return Ok(Format::Mp3);
    }
    // An MPEG audio frame header: 11 sync bits, a valid version, layer,
    // bitrate and sample-rate index.
    if b.len() >= 4 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 && (b[1] >> 3) & 3 != 1 && (b[1] >> 1) & 3 != 0 && b[2] >> 4 != 0xF && (b[2] >> 2) & 3 != 3 {
        return Ok(Format::Mp3);
    }
    if b.starts_with(b"fLaC") {
        return Err(audio_err("FLAC is not supported: use WAV, MP3 or Ogg Opus"));
    }
    if b.get(4..8) == Some(b"ftyp") {
        return Err(audio_err("MP4/M4A (AAC) is not supported: use WAV, MP3 or Ogg Opus"));
    }
    Err(audio_err("not a WAV, MP3 or Ogg Opus file"))
}

/// Any upload or espeak-ng output, as 8 kHz mono samples ready to play:
/// silence trimmed at both ends, peak at -3 dBFS (gain at most 20 dB).
pub fn normalise(bytes: &[u8]) -> Result<Vec<i16>, AnnounceError> {
    let pcm = match sniff(bytes)? {
        Format::Wav => decode_wav(bytes)?,
        Format::Mp3 => decode_mp3(bytes)?,
        Format::OggOpus => decode_ogg_opus(bytes)?,
    };
    finish(pcm)
}

#[derive(Clone, Copy)]
enum SampleKind {
    Int,
    Float,
    Alaw,
    Ulaw,
}

/// A RIFF/WAVE file: PCM 8/16/24/32-bit, float 32/64-bit, A-law or µ-law
/// (old telephone prompts), mono or stereo, 8 to 48 kHz.
fn decode_wav(b: &[u8]) -> Result<Pcm, AnnounceError> {
    let err = |m: String| audio_err(format!("WAV: {m}"));
    let u16_at = |o: usize| b.get(o..o.saturating_add(2)).map(|x| u16::from_le_bytes([x[0], x[1]]));
    let u32_at = |o: usize| b.get(o..o.saturating_add(4)).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
    if b.len() < 12 || &b[8..12] != b"WAVE" {
        return Err(err("not a RIFF/WAVE file".into()));
    }
    let mut fmt: Option<(SampleKind, usize, u32, usize)> = None;
    let mut offset = 12usize;
    // Every chunk takes at least 8 bytes, so the walk ends.
    while let (Some(id), Some(size)) = (b.get(offset..offset.saturating_add(4)), u32_at(offset.saturating_add(4))) {
        let body = offset + 8;
        let size = size as usize;
        match id {
            b"fmt " => {
                let (Some(tag), Some(channels), Some(rate), Some(bits)) = (u16_at(body), u16_at(body + 2), u32_at(body + 4), u16_at(body + 14)) else {
                    return Err(err("the fmt chunk is cut short".into()));
                };
                // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the real tag.
                let tag = if tag == 0xFFFE { u16_at(body + 24).filter(|_| size >= 40).unwrap_or(0xFFFE) } else { tag };
                let kind = match tag {
                    1 => SampleKind::Int,
                    3 => SampleKind::Float,
                    6 => SampleKind::Alaw,
                    7 => SampleKind::Ulaw,
                    t => return Err(err(format!("format {t:#06x} (a compressed WAV) is not supported: use PCM WAV, MP3 or Ogg Opus"))),
                };
                let bits_ok = match kind {
                    SampleKind::Int => matches!(bits, 8 | 16 | 24 | 32),
                    SampleKind::Float => matches!(bits, 32 | 64),
                    SampleKind::Alaw | SampleKind::Ulaw => bits == 8,
                };
                if !bits_ok {
                    return Err(err(format!("{bits}-bit samples are not supported")));
                }
                if !(1..=2).contains(&channels) {
                    return Err(err(format!("{channels} channels: mono or stereo only")));
                }
                check_rate("WAV", rate)?;
                fmt = Some((kind, usize::from(bits / 8), rate, usize::from(channels)));
            }
            b"data" => {
                let Some((kind, width, rate, channels)) = fmt else { return Err(err("the data chunk comes before the fmt chunk".into())) };
                // A length past the end of the file (streaming writers leave
                // one) reads what is there.
                let data = b.get(body..).unwrap_or(&[]);
                let data = &data[..size.min(data.len())];
                let frame = width * channels;
                too_long("WAV", (data.len() / frame) as u64, rate)?;
                let sample = |s: &[u8]| -> f32 {
                    match (kind, width) {
                        (SampleKind::Int, 1) => (f32::from(s[0]) - 128.0) / 128.0,
                        (SampleKind::Int, 2) => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0,
                        (SampleKind::Int, 3) => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
                        (SampleKind::Int, _) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
                        (SampleKind::Float, 4) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                        (SampleKind::Float, _) => f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as f32,
                        (SampleKind::Alaw, _) => f32::from(codec::alaw_decode(s[0])) / 32768.0,
                        (SampleKind::Ulaw, _) => f32::from(codec::ulaw_decode(s[0])) / 32768.0,
                    }
                };
                let mono = data.chunks_exact(frame).map(|f| f.chunks_exact(width).map(sample).sum::<f32>() / channels as f32).collect();
                return Ok(Pcm { rate, mono });
            }
            _ => {}
        }
        // Chunks are padded to an even length; a huge size just ends the walk.
        offset = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(err(if fmt.is_some() { "no data chunk (is the file cut short?)".into() } else { "no fmt chunk (is the file cut short?)".into() }))
}

/// An MP3 file through symphonia (its MP3 reader and decoder only).
fn decode_mp3(b: &[u8]) -> Result<Pcm, AnnounceError> {
    let owned = b.to_vec();
    // symphonia says some damaged streams may panic: that must not take the
    // request (or the CLI) down with it.
    std::panic::catch_unwind(move || decode_mp3_inner(owned)).unwrap_or_else(|_| Err(audio_err("MP3: the file is damaged (the decoder gave up)")))
}

fn decode_mp3_inner(bytes: Vec<u8>) -> Result<Pcm, AnnounceError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::errors::Error as SymError;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| audio_err(format!("MP3: not readable ({e})")))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or_else(|| audio_err("MP3: no audio in the file"))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| audio_err(format!("MP3: not decodable ({e}); only MPEG layer III is supported")))?;
    let mut rate: Option<u32> = None;
    let mut mono: Vec<f32> = Vec::new();
    let mut bad_frames = 0u32;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            // A damaged tail ends the audio; damage before any audio is an error.
            Err(e) if mono.is_empty() => return Err(audio_err(format!("MP3: not readable ({e})"))),
            Err(_) => break,
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(audio) => {
                let spec = *audio.spec();
                match rate {
                    None => {
                        check_rate("MP3", spec.rate)?;
                        rate = Some(spec.rate);
                    }
                    Some(r) if r != spec.rate => return Err(audio_err("MP3: the sample rate changes within the file")),
                    Some(_) => {}
                }
                let channels = spec.channels.count().max(1);
                // A buffer per frame: the spec may change between frames, and
                // a frame is only 1,152 samples.
                let mut sb = SampleBuffer::<f32>::new(audio.capacity() as u64, spec);
                sb.copy_interleaved_ref(audio);
                mono.extend(sb.samples().chunks(channels).map(|f| f.iter().sum::<f32>() / channels as f32));
                too_long("MP3", mono.len() as u64, spec.rate)?;
            }
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                // A damaged frame is skipped, as players do; many mean a bad file.
                bad_frames += 1;
                if bad_frames > 50 {
                    return Err(audio_err("MP3: too many damaged frames"));
                }
            }
            Err(e) => return Err(audio_err(format!("MP3: not decodable ({e})"))),
        }
    }
    let Some(rate) = rate else { return Err(audio_err("MP3: no audio frames in the file")) };
    Ok(Pcm { rate, mono })
}

/// The packets of the first logical stream of an Ogg file (RFC 3533).
fn ogg_packets(b: &[u8]) -> Result<Vec<Vec<u8>>, AnnounceError> {
    let mut packets = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut serial = None;
    let mut offset = 0usize;
    while offset < b.len() {
        let Some(head) = b.get(offset..offset + 27) else { break };
        if &head[0..4] != b"OggS" || head[4] != 0 {
            if packets.len() >= 3 {
                break; // trailing junk after a usable stream
            }
            return Err(audio_err(format!("Ogg: damaged page at byte {offset}")));
        }
        let continued = head[5] & 1 != 0;
        let page_serial = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
        let segments = usize::from(head[26]);
        let Some(table) = b.get(offset + 27..offset + 27 + segments) else { break };
        let data_start = offset + 27 + segments;
        let data_len: usize = table.iter().map(|&l| usize::from(l)).sum();
        let Some(data) = b.get(data_start..data_start + data_len) else { break }; // cut short: keep what we have
        offset = data_start + data_len;
        if *serial.get_or_insert(page_serial) != page_serial {
            continue; // another stream multiplexed in: not ours
        }
        if !continued {
            partial.clear(); // a packet whose rest was lost
        }
        let mut pos = 0;
        for &lace in table {
            let lace = usize::from(lace);
            partial.extend_from_slice(&data[pos..pos + lace]);
            pos += lace;
            if lace < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
    }
    Ok(packets)
}

/// An Ogg Opus file (RFC 7845): decoded straight to 8 kHz by libopus.
fn decode_ogg_opus(b: &[u8]) -> Result<Pcm, AnnounceError> {
    let packets = ogg_packets(b)?;
    let Some(head) = packets.first() else { return Err(audio_err("Ogg: no packets (is the file cut short?)")) };
    if head.starts_with(b"\x01vorbis") {
        return Err(audio_err("Ogg Vorbis is not supported: use Ogg Opus, MP3 or WAV"));
    }
    if !head.starts_with(b"OpusHead") || head.len() < 19 {
        return Err(audio_err("Ogg: not an Opus stream"));
    }
    let channels = head[9];
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    let mapping = head[18];
    if channels == 0 || (channels > 2 && mapping != 0) {
        return Err(audio_err(format!("Ogg Opus: {channels} channels: mono or stereo only")));
    }
    let mut rest = &packets[1..];
    if rest.first().is_some_and(|p| p.starts_with(b"OpusTags")) {
        rest = &rest[1..];
    }
    // A mono decoder folds stereo packets down itself.
    let mut dec = Decoder::new(Codec::Opus).map_err(|e| audio_err(format!("Ogg Opus: {e}")))?;
    let mut pcm: Vec<i16> = Vec::new();
    let (mut good, mut bad) = (0usize, 0usize);
    for p in rest {
        match dec.decode(p, &mut pcm) {
            Ok(_) => good += 1,
            Err(_) => bad += 1,
        }
        too_long("Ogg Opus", pcm.len() as u64, RATE)?;
    }
    if good == 0 {
        return Err(audio_err(if bad > 0 { "Ogg Opus: no packet could be decoded" } else { "Ogg Opus: no audio in the file" }));
    }
    if bad > good / 10 + 2 {
        return Err(audio_err(format!("Ogg Opus: {bad} damaged packets")));
    }
    // Pre-skip counts 48 kHz samples; the encoder's look-ahead to drop.
    let skip = (pre_skip / 6).min(pcm.len());
    Ok(Pcm { rate: RATE, mono: pcm[skip..].iter().map(|&s| f32::from(s) / 32768.0).collect() })
}

// ---- level, trimming, rate -------------------------------------------

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn finish(pcm: Pcm) -> Result<Vec<i16>, AnnounceError> {
    let Pcm { rate, mut mono } = pcm;
    for x in &mut mono {
        if !x.is_finite() {
            *x = 0.0;
        }
    }
    if mono.is_empty() {
        return Err(audio_err("the audio is empty"));
    }
    let p = peak(&mono);
    if p < SILENT_PEAK {
        return Err(audio_err("the audio is silent"));
    }
    let threshold = p * TRIM_BELOW_PEAK;
    let first = mono.iter().position(|x| x.abs() >= threshold).unwrap_or(0);
    let last = mono.iter().rposition(|x| x.abs() >= threshold).unwrap_or(mono.len() - 1);
    let margin = (rate * TRIM_MARGIN_MS / 1000) as usize;
    let kept = &mono[first.saturating_sub(margin)..(last + 1 + margin).min(mono.len())];
    if kept.len() as u64 > MAX_SECS * u64::from(rate) {
        let secs = kept.len() as u64 / u64::from(rate);
        return Err(audio_err(format!("the audio is {} min {} s long; at most {} minutes", secs / 60, secs % 60, MAX_SECS / 60)));
    }
    // Set the level before converting to 16-bit, so quiet input keeps its bits.
    let gain = (TARGET_PEAK / p).min(MAX_GAIN);
    let pcm16: Vec<i16> = kept.iter().map(|x| (x * gain * 32767.0).round().clamp(-32768.0, 32767.0) as i16).collect();
    let mut out = resample(rate, &pcm16)?;
    // The filter moves peaks a little: correct to the target exactly,
    // within the overall gain limit.
    let p2 = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    if p2 > 0 {
        let g2 = (TARGET_PEAK * 32767.0 / f32::from(p2)).min(MAX_GAIN / gain);
        for s in &mut out {
            *s = (f32::from(*s) * g2).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
    if out.is_empty() {
        return Err(audio_err("the audio is empty"));
    }
    Ok(out)
}

/// To 8 kHz, the whole signal: the filter's delay is flushed with zeros and
/// cut off, so the output is aligned and `ceil(n * 8000 / rate)` long.
fn resample(rate: u32, input: &[i16]) -> Result<Vec<i16>, AnnounceError> {
    if rate == RATE {
        return Ok(input.to_vec());
    }
    let mut r = Resampler::new(rate, RATE).map_err(|_| audio_err(format!("a sample rate of {rate} Hz cannot be converted to 8000 Hz")))?;
    let want = (input.len() as u64 * u64::from(RATE)).div_ceil(u64::from(rate)) as usize;
    let delay = r.delay();
    let mut out = Vec::with_capacity(want + delay + 8);
    r.process(input, &mut out);
    let pad = (delay as u64 * u64::from(rate)).div_ceil(u64::from(RATE)) as usize + 1;
    r.process(&vec![0; pad], &mut out);
    Ok(out.into_iter().skip(delay).take(want).collect())
}

// ---- espeak-ng --------------------------------------------------------

/// Text for espeak-ng: 1 to 2,000 characters, not only spaces.
pub fn check_text(text: &str) -> Result<(), AnnounceError> {
    let n = text.chars().count();
    if text.trim().is_empty() || n > MAX_TEXT_CHARS {
        return Err(AnnounceError::Invalid(format!("the text must have 1 to {MAX_TEXT_CHARS} characters (it has {n})")));
    }
    Ok(())
}

/// An espeak-ng voice name such as `ja`, `en-us` or `mb-jp1`. Never
/// starting with '-', so it cannot be read as an option.
pub fn check_voice(voice: &str) -> Result<(), AnnounceError> {
    let ok = (1..=40).contains(&voice.len())
        && !voice.starts_with('-')
        && voice.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(AnnounceError::Invalid(format!("voice {voice:?}: an espeak-ng voice such as ja or en-us")))
    }
}

/// espeak-ng's Japanese voices have no kanji dictionary: each kanji is read
/// out as "Chinese letter" in English. Refused with a clear message rather
/// than recorded as nonsense.
fn check_kanji(text: &str, voice: &str) -> Result<(), AnnounceError> {
    let japanese = voice.starts_with("ja") || voice.starts_with("mb-jp") || voice.contains("japanese");
    let kanji = |c: char| matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}');
    match text.chars().find(|&c| kanji(c)) {
        Some(c) if japanese => Err(AnnounceError::Invalid(format!(
            "espeak-ng cannot read kanji (such as {c}): write the text in hiragana or katakana, e.g. 「このつうわは、ろくおんされます。」, or upload a recording"
        ))),
        _ => Ok(()),
    }
}

/// Removes a temporary file however the function that made it ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Speak `text` with espeak-ng (`-v VOICE -s 150`, the text on standard
/// input, never through a shell; killed after 10 s), normalised like an
/// upload.
pub async fn speak(text: &str, voice: &str) -> Result<Vec<i16>, AnnounceError> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    check_text(text)?;
    check_voice(voice)?;
    check_kanji(text, voice)?;
    let tmp = TempFile(std::env::temp_dir().join(format!("tsunagu-tts-{}-{:016x}.wav", std::process::id(), rand::random::<u64>())));
    let spawned = tokio::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&tmp.0)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AnnounceError::Speech("espeak-ng is not installed (scripts/setup.sh installs it); upload a recording instead".into()))
        }
        Err(e) => return Err(AnnounceError::Speech(format!("cannot run espeak-ng: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // At most 8 kB, within a pipe's buffer. An error here (espeak-ng
        // gone already) shows in its exit status below.
        let _ = stdin.write_all(text.as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
    // On timeout the child is dropped, and kill_on_drop ends it.
    let out = match tokio::time::timeout(SPEAK_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(AnnounceError::Speech(format!("espeak-ng: {e}"))),
        Err(_) => return Err(AnnounceError::Speech(format!("espeak-ng took longer than {} s and was stopped", SPEAK_TIMEOUT.as_secs()))),
    };
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string() + String::from_utf8_lossy(&out.stdout).trim();
        let said = said.trim_start_matches("Error: ").to_string();
        return Err(AnnounceError::Speech(format!("espeak-ng failed ({}): {said}", out.status)));
    }
    let wav = tokio::fs::read(&tmp.0).await.map_err(|e| AnnounceError::Speech(format!("espeak-ng wrote no audio: {e}")))?;
    tokio::task::spawn_blocking(move || normalise(&wav))
        .await
        .map_err(|e| AnnounceError::Speech(format!("espeak-ng audio: {e}")))?
        .map_err(|e| match e {
            AnnounceError::Audio(m) => AnnounceError::Speech(format!("espeak-ng made no usable audio for this text ({m})")),
            e => e,
        })
}

// ---- built-in audio ---------------------------------------------------

/// The built-in hold music: a music-box melody of pure tones (a sine with
/// two soft overtones per note over a sine bass), made here so there is no
/// licence to ask about. 20 s at 8 kHz, and it loops without a seam: the
/// tails of the last notes ring on into the start.
pub fn builtin_hold_music() -> Vec<i16> {
    const BEAT: usize = 2500; // 0.3125 s
    // MIDI notes per beat, 0 a rest: four phrases of four bars, C major pentatonic.
    const MELODY: [u8; 64] = [
        64, 67, 69, 72, 69, 67, 64, 0, 62, 64, 67, 69, 67, 0, 0, 0, //
        64, 67, 69, 72, 74, 72, 69, 67, 69, 67, 64, 62, 60, 0, 0, 0, //
        69, 72, 74, 76, 74, 72, 69, 0, 67, 69, 72, 74, 72, 0, 0, 0, //
        76, 74, 72, 69, 67, 69, 72, 0, 62, 64, 67, 64, 60, 0, 0, 0,
    ];
    // One bass note per bar.
    const BASS: [u8; 16] = [48, 45, 41, 43, 48, 41, 45, 48, 45, 41, 43, 48, 45, 41, 43, 48];
    let len = MELODY.len() * BEAT;
    let mut buf = vec![0f32; len];
    let freq = |m: u8| 440.0 * 2f32.powf((f32::from(m) - 69.0) / 12.0);
    let mut add = |start: usize, f: f32, amp: f32, decay_s: f32, ring: usize| {
        for i in 0..ring {
            let t = i as f32 / RATE as f32;
            // 8 ms attack against clicks, then an exponential decay.
            let env = (t / 0.008).min(1.0) * (-t / decay_s).exp();
            let w = 2.0 * std::f32::consts::PI * f * t;
            let v = w.sin() + 0.25 * (2.0 * w).sin() + 0.08 * (3.0 * w).sin();
            buf[(start + i) % len] += amp * env * v;
        }
    };
    for (beat, &m) in MELODY.iter().enumerate() {
        if m != 0 {
            add(beat * BEAT, freq(m), 0.5, 0.45, BEAT * 6);
        }
    }
    for (bar, &m) in BASS.iter().enumerate() {
        add(bar * 4 * BEAT, freq(m), 0.3, 0.9, BEAT * 8);
    }
    // Gentler than prompts: -6 dBFS peak.
    let p = peak(&buf).max(1e-6);
    buf.iter().map(|x| (x / p * 0.5 * 32767.0).round() as i16).collect()
}

/// A prompt or music that exists from the start, replaceable by the city.
pub struct Builtin {
    pub name: &'static str,
    pub label: &'static str,
    /// The wording, as a city would write it (documentation and screens).
    pub wording: Option<&'static str>,
    /// The same in kana, which is what espeak-ng is given (it cannot read
    /// kanji); None for the hold music.
    pub text: Option<&'static str>,
}

/// The built-in defaults, in Japanese. The names are what IVR menus and
/// call code ask for.
pub const BUILTINS: &[Builtin] = &[
    Builtin { name: "recording-notice", label: "録音のお知らせ", wording: Some("この通話は録音されます。"), text: Some("このつうわは、ろくおんされます。") },
    Builtin {
        name: "closed",
        label: "時間外のご案内",
        wording: Some("本日の受付は終了いたしました。恐れ入りますが、開庁時間内におかけ直しください。"),
        text: Some("ほんじつの うけつけは しゅうりょう いたしました。おそれいりますが、かいちょう じかんないに おかけなおし ください。"),
    },
    Builtin {
        name: "please-wait",
        label: "混雑時のご案内",
        wording: Some("ただいま電話が混み合っております。このままお待ちください。"),
        text: Some("ただいま でんわが こみあって おります。このまま おまち ください。"),
    },
    Builtin { name: "ivr-invalid", label: "入力誤り", wording: Some("入力が正しくありません。"), text: Some("にゅうりょくが ただしく ありません。") },
    Builtin { name: "ivr-timeout", label: "入力なし", wording: Some("入力が確認できませんでした。"), text: Some("にゅうりょくが かくにん できませんでした。") },
    Builtin { name: "transfer-failed", label: "転送できませんでした", wording: Some("おつなぎできませんでした。"), text: Some("おつなぎ できませんでした。") },
    Builtin { name: HOLD_MUSIC, label: "保留音（内蔵）", wording: None, text: None },
];

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// What [`ensure_builtins`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BuiltinSummary {
    /// Made (or remade) now.
    pub created: Vec<String>,
    /// Already there, or replaced by the city's own (never overwritten).
    pub kept: Vec<String>,
    /// Could not be made, with the reason (espeak-ng missing, say).
    pub skipped: Vec<(String, String)>,
}

/// Make every missing built-in announcement. One the city replaced (source
/// upload or tts) is never touched; with `force`, built-in ones are made
/// again (after an espeak-ng upgrade, say). A built-in whose text changed
/// in this code, or whose file is gone, is remade too. Spoken ones are
/// skipped, with a warning, when espeak-ng is missing.
pub async fn ensure_builtins(store: &SqliteStore, data_dir: &Path, force: bool) -> BuiltinSummary {
    let mut summary = BuiltinSummary::default();
    for b in BUILTINS {
        let name = b.name.to_string();
        match make_builtin(store, data_dir, b, force).await {
            Ok(true) => summary.created.push(name),
            Ok(false) => summary.kept.push(name),
            Err(e) => {
                tracing::warn!(announcement = b.name, error = %e, "built-in announcement not made");
                summary.skipped.push((name, e.to_string()));
            }
        }
    }
    summary
}

/// Make one built-in; false when it was kept as it is.
async fn make_builtin(store: &SqliteStore, data_dir: &Path, b: &Builtin, force: bool) -> Result<bool, AnnounceError> {
    let row = store.announcement(b.name).await?;
    let file_there = audio_path(data_dir, b.name).is_file();
    if let Some(r) = &row {
        if r.source != AnnouncementSource::Builtin {
            if !file_there {
                tracing::warn!(announcement = b.name, "the city's own announcement has no audio file; upload it again");
            }
            return Ok(false);
        }
        if !force && file_there && r.text.as_deref() == b.text {
            return Ok(false);
        }
    }
    let (audio, voice) = match b.text {
        Some(text) => (speak(text, DEFAULT_VOICE).await?, Some(DEFAULT_VOICE.to_string())),
        None => (builtin_hold_music(), None),
    };
    let a = Announcement::new(b.name, b.label, AnnouncementSource::Builtin, b.text.map(str::to_string), voice);
    save(store, data_dir, a, &audio).await?;
    Ok(true)
}

/// Put the built-in default back in place of the city's own version.
pub async fn restore_builtin(store: &SqliteStore, data_dir: &Path, name: &str) -> Result<Announcement, AnnounceError> {
    let b = builtin(name).ok_or_else(|| AnnounceError::Invalid(format!("{name} is not a built-in announcement")))?;
    let (audio, voice) = match b.text {
        Some(text) => (speak(text, DEFAULT_VOICE).await?, Some(DEFAULT_VOICE.to_string())),
        None => (builtin_hold_music(), None),
    };
    let a = Announcement::new(b.name, b.label, AnnouncementSource::Builtin, b.text.map(str::to_string), voice);
    save(store, data_dir, a, &audio).await
}

// ---- storage ----------------------------------------------------------

pub fn announcements_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("announcements")
}

/// `DATA/announcements/NAME.wav` (the name is checked before any path is made).
pub fn audio_path(data_dir: &Path, name: &str) -> PathBuf {
    announcements_dir(data_dir).join(format!("{name}.wav"))
}

/// The label an admin gives: at most 100 characters, no control characters.
pub fn check_label(label: &str) -> Result<(), AnnounceError> {
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(AnnounceError::Invalid("the label has at most 100 characters, no control characters".into()));
    }
    Ok(())
}

/// Store an announcement: the audio goes to a temporary file beside the
/// final one, then, inside the transaction that writes the row, is renamed
/// over it. If anything fails before the rename, the old file and row are
/// untouched and the temporary file is removed.
pub async fn save(store: &SqliteStore, data_dir: &Path, mut a: Announcement, audio: &[i16]) -> Result<Announcement, AnnounceError> {
    check_media_name("announcement", &a.name)?;
    check_label(&a.label)?;
    if audio.is_empty() {
        return Err(audio_err("the audio is empty"));
    }
    let dir = announcements_dir(data_dir);
    let wav = codec::write_wav_pcm16(RATE, audio);
    let tmp_path = dir.join(format!(".{}.{:016x}.tmp", a.name, rand::random::<u64>()));
    let final_path = audio_path(data_dir, &a.name);
    let tmp = TempFile(tmp_path.clone());
    let write = {
        let (dir, tmp_path) = (dir.clone(), tmp_path.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::File::create(&tmp_path)?;
            f.write_all(&wav)?;
            // On disk before the row says it is there.
            f.sync_all()
        })
    };
    write.await.map_err(|e| AnnounceError::Io(e.to_string()))?.map_err(|e| AnnounceError::Io(format!("{}: {e}", tmp_path.display())))?;
    a.samples = audio.len() as i64;
    let stored = store
        .put_announcement_with(&a, || std::fs::rename(&tmp_path, &final_path).map_err(|e| StoreError::Invalid(format!("cannot store the audio file {}: {e}", final_path.display()))))
        .await?;
    drop(tmp); // already renamed: removing it is a no-op
    Ok(stored)
}

/// Remove an announcement nothing refers to: the row first, then the file
/// (a crash in between leaves an unused file, never a row without audio).
/// A built-in one is not removed but put back to its default.
pub async fn remove(store: &SqliteStore, data_dir: &Path, name: &str) -> Result<Option<Announcement>, AnnounceError> {
    check_media_name("announcement", name)?;
    if store.announcement(name).await?.is_none() {
        return Err(StoreError::NotFound(format!("announcement {name}")).into());
    }
    if builtin(name).is_some() {
        return restore_builtin(store, data_dir, name).await.map(Some);
    }
    let users = store.announcement_users(name).await?;
    if !users.is_empty() {
        return Err(AnnounceError::InUse(format!("announcement {name} is still used by {}; change those first", users.join(", "))));
    }
    store.remove_announcement(name).await?;
    if let Err(e) = tokio::fs::remove_file(audio_path(data_dir, name)).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(announcement = name, error = %e, "announcement removed but its file was not");
        }
    }
    Ok(None)
}

/// The stored WAV file of an announcement.
pub async fn read_audio(data_dir: &Path, name: &str) -> Result<Vec<u8>, AnnounceError> {
    check_media_name("announcement", name)?;
    let path = audio_path(data_dir, name);
    tokio::fs::read(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AnnounceError::Store(StoreError::NotFound(format!("announcement {name}"))),
        _ => AnnounceError::Io(format!("{}: {e}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        let align = channels * bits / 8;
        out.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"abc\0"); // odd size, padded
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    /// 1 s of a 440 Hz tone at -12 dBFS with 0.5 s of silence each side,
    /// 44.1 kHz stereo 24-bit.
    fn stereo_24bit_44k() -> Vec<u8> {
        let rate = 44100usize;
        let mut data = Vec::new();
        for n in 0..rate * 2 {
            let on = (rate / 2..rate * 3 / 2).contains(&n);
            let v = if on { 0.25 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / rate as f64).sin() } else { 0.0 };
            let s = (v * 8_388_607.0) as i32;
            for _ in 0..2 {
                data.extend_from_slice(&s.to_le_bytes()[..3]);
            }
        }
        wav_bytes(1, 2, 44100, 24, &data)
    }

    fn peak_dbfs(x: &[i16]) -> f64 {
        let p = x.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        20.0 * (f64::from(p) / 32767.0).log10()
    }

    #[test]
    fn wav_44k_stereo_24bit_becomes_8k_mono_at_minus_3_dbfs() {
        let out = normalise(&stereo_24bit_44k()).unwrap();
        // 1 s of tone plus 50 ms margins each side.
        let want = 8000.0 * 1.1;
        assert!((out.len() as f64 - want).abs() / want < 0.01, "{} samples", out.len());
        assert!((peak_dbfs(&out) + 3.0).abs() < 0.1, "peak {} dBFS", peak_dbfs(&out));
    }

    #[test]
    fn every_wav_sample_format_reads() {
        let tone = |n: usize| (2.0 * std::f64::consts::PI * 300.0 * n as f64 / 8000.0).sin() * 0.5;
        let n = 8000;
        let cases: Vec<(u16, u16, Vec<u8>)> = vec![
            (1, 8, (0..n).map(|i| (tone(i) * 127.0 + 128.0) as u8).collect()),
            (1, 16, (0..n).flat_map(|i| ((tone(i) * 32767.0) as i16).to_le_bytes()).collect()),
            (1, 32, (0..n).flat_map(|i| ((tone(i) * 2_147_483_647.0) as i32).to_le_bytes()).collect()),
            (3, 32, (0..n).flat_map(|i| (tone(i) as f32).to_le_bytes()).collect()),
            (3, 64, (0..n).flat_map(|i| tone(i).to_le_bytes()).collect()),
            (7, 8, (0..n).map(|i| codec::ulaw_encode((tone(i) * 32767.0) as i16)).collect()),
            (6, 8, (0..n).map(|i| codec::alaw_encode((tone(i) * 32767.0) as i16)).collect()),
        ];
        for (tag, bits, data) in cases {
            let out = normalise(&wav_bytes(tag, 1, 8000, bits, &data)).unwrap_or_else(|e| panic!("tag {tag} {bits}-bit: {e}"));
            assert!((out.len() as i64 - 8000).abs() < 100, "tag {tag} {bits}-bit: {} samples", out.len());
            assert!((peak_dbfs(&out) + 3.0).abs() < 0.2, "tag {tag} {bits}-bit: {}", peak_dbfs(&out));
        }
    }

    #[test]
    fn bad_input_is_named() {
        let e = |b: &[u8]| normalise(b).unwrap_err().to_string();
        assert_eq!(e(b""), "the file is empty");
        assert_eq!(e(b"hello world, not audio"), "not a WAV, MP3 or Ogg Opus file");
        assert!(e(&wav_bytes(1, 1, 8000, 12, &[0; 100])).contains("12-bit samples are not supported"));
        assert!(e(&wav_bytes(1, 6, 8000, 16, &[0; 120])).contains("6 channels"));
        assert!(e(&wav_bytes(1, 1, 96000, 16, &[0; 100])).contains("96000 Hz"));
        assert!(e(&wav_bytes(2, 1, 8000, 4, &[0; 100])).contains("compressed WAV"));
        assert_eq!(e(&wav_bytes(1, 1, 8000, 16, &[0; 16000])), "the audio is silent");
        assert_eq!(e(&wav_bytes(1, 1, 8000, 16, &[])), "the audio is empty");
        assert!(e(b"fLaC\0\0\0\x22").contains("FLAC"));
        // Over 15 minutes of (loud) audio.
        let loud: Vec<u8> = (0..8000 * 60 * 17).flat_map(|i| if i % 2 == 0 { 10000i16 } else { -10000 }.to_le_bytes()).collect();
        assert!(e(&wav_bytes(1, 1, 8000, 16, &loud)).contains("15 minutes"));
    }

    #[test]
    fn quiet_input_gets_at_most_20_db() {
        // -50 dBFS: lifted by 20 dB to about -30 dBFS, not to -3.
        let data: Vec<u8> = (0..8000).map(|i| ((2.0 * std::f64::consts::PI * 300.0 * i as f64 / 8000.0).sin() * 103.6) as i16).flat_map(|s| s.to_le_bytes()).collect();
        let out = normalise(&wav_bytes(1, 1, 8000, 16, &data)).unwrap();
        assert!((peak_dbfs(&out) + 30.0).abs() < 1.0, "{}", peak_dbfs(&out));
    }

    /// Every prefix and many corruptions of each format: an error or audio,
    /// never a panic.
    fn never_panics(file: &[u8]) {
        let step = (file.len() / 200).max(1);
        for cut in (0..file.len()).step_by(step) {
            let _ = normalise(&file[..cut]);
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..60 {
            let mut bad = file.to_vec();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % bad.len();
                bad[i] = (x >> 32) as u8;
            }
            let _ = normalise(&bad);
        }
    }

    fn tool(cmd: &str) -> bool {
        std::process::Command::new(cmd).arg("--version").output().is_ok()
    }

    fn made_with(cmds: &[&[&str]], out: &str) -> Option<Vec<u8>> {
        for c in cmds {
            let ok = std::process::Command::new(c[0]).args(&c[1..]).output().map(|o| o.status.success()).unwrap_or(false);
            if !ok {
                eprintln!("skipped: {} failed (scripts/setup.sh installs sox, libsox-fmt-mp3 and opus-tools)", c.join(" "));
                return None;
            }
        }
        std::fs::read(out).ok()
    }

    #[test]
    fn garbage_and_truncated_wav_never_panics() {
        never_panics(&stereo_24bit_44k());
        never_panics(b"RIFF\xff\xff\xff\xffWAVEfmt \x10\0\0\0");
        never_panics(b"OggS\0\x02\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead\x01\x02");
        never_panics(b"ID3\x04\0\0\0\0\0\x0a\xff\xfb\x90\x64");
    }

    #[test]
    fn mp3_from_sox_decodes_and_garbage_never_panics() {
        if !tool("sox") {
            eprintln!("skipped: sox is not installed (scripts/setup.sh installs it)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mp3");
        let p = path.to_str().unwrap();
        let Some(mp3) = made_with(&[&["sox", "-n", "-r", "44100", "-c", "2", p, "synth", "2", "sine", "500", "vol", "0.5"]], p) else { return };
        let out = normalise(&mp3).unwrap();
        assert!((out.len() as f64 - 16_800.0).abs() < 800.0, "{} samples", out.len());
        assert!((peak_dbfs(&out) + 3.0).abs() < 0.2);
        never_panics(&mp3);
    }

    #[test]
    fn ogg_opus_from_opusenc_decodes_and_garbage_never_panics() {
        if !tool("sox") || !tool("opusenc") {
            eprintln!("skipped: sox or opusenc is not installed (scripts/setup.sh installs sox and opus-tools)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (wav, opus) = (dir.path().join("t.wav"), dir.path().join("t.opus"));
        let (w, o) = (wav.to_str().unwrap(), opus.to_str().unwrap());
        let Some(ogg) = made_with(&[&["sox", "-n", "-r", "48000", "-c", "2", "-b", "16", w, "synth", "3", "sine", "400", "vol", "0.5"], &["opusenc", "--quiet", w, o]], o) else {
            return;
        };
        let out = normalise(&ogg).unwrap();
        assert!((out.len() as f64 - 24_800.0).abs() < 1000.0, "{} samples", out.len());
        assert!((peak_dbfs(&out) + 3.0).abs() < 0.2);
        never_panics(&ogg);
    }

    #[test]
    fn hold_music_is_20_s_of_sound() {
        let m = builtin_hold_music();
        assert_eq!(m.len(), 20 * 8000);
        assert!((peak_dbfs(&m) + 6.0).abs() < 0.2);
    }

    #[tokio::test]
    async fn speak_says_the_recording_notice() {
        if !tool("espeak-ng") {
            eprintln!("skipped: espeak-ng is not installed (scripts/setup.sh installs it)");
            return;
        }
        let out = speak("このつうわは、ろくおんされます", "ja").await.unwrap();
        let secs = out.len() as f64 / 8000.0;
        assert!((1.5..4.0).contains(&secs), "{secs} s");
        // Kanji would come out as "Chinese letter": refused, with the way out.
        let e = speak("この通話は録音されます", "ja").await.unwrap_err();
        assert!(matches!(&e, AnnounceError::Invalid(m) if m.contains("hiragana")), "{e}");
        // Every built-in prompt is speakable and of a plausible length.
        for b in BUILTINS.iter().filter(|b| b.text.is_some()) {
            let secs = speak(b.text.unwrap(), "ja").await.unwrap().len() as f64 / 8000.0;
            assert!((0.8..12.0).contains(&secs), "{}: {secs} s", b.name);
        }
        assert!((peak_dbfs(&out) + 3.0).abs() < 0.2);
        assert!(matches!(speak("", "ja").await, Err(AnnounceError::Invalid(_))));
        assert!(matches!(speak("x", "--help").await, Err(AnnounceError::Invalid(_))));
        assert!(matches!(speak("こんにちは", "qqnovoice").await, Err(AnnounceError::Speech(_))));
    }
}
