//! Audio codecs for the PBX and the phone SDK: G.711 µ-law and A-law (ITU-T
//! G.711, bit-exact with the ITU-T G.191 reference implementation) and Opus
//! (RFC 6716 through libopus, RTP payload per RFC 7587), plus a small WAV
//! reader/writer for prompts and tests.
//!
//! Everything here works on 8 kHz mono `i16` PCM, the rate of the telephone
//! network. The Opus encoder and decoder are created at 8000 Hz (libopus
//! resamples internally), so no resampler is needed anywhere in the crate;
//! only the RTP timestamps of Opus run at 48 kHz (RFC 7587 §4.1), which
//! [`Codec::samples_to_timestamp`] accounts for. Like the rest of the crate,
//! nothing here touches sockets, clocks or threads, and no input bytes can
//! make it panic.

use crate::error::MediaError;
use crate::plc::G711Plc;

/// The PCM sample rate every encoder takes and every decoder produces.
pub const PCM_RATE: u32 = 8000;
/// One 20 ms frame at [`PCM_RATE`]: the packetisation the transcoder uses.
pub const FRAME_SAMPLES: usize = 160;
/// The longest audio one Opus packet can carry (120 ms) at [`PCM_RATE`]; a
/// decode buffer of this size never fails with "buffer too small".
pub const MAX_OPUS_PACKET_SAMPLES: usize = 960;
/// The largest Opus payload the encoder writes; libopus recommends 4000 bytes
/// as a safe upper bound, far above anything 8 kHz speech produces.
const MAX_OPUS_PAYLOAD: usize = 4000;

/// A codec the B2BUA can negotiate and transcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// Opus, dynamic payload type, RTP clock 48 kHz whatever the audio rate.
    Opus,
}

impl Codec {
    /// Maps an SDP `a=rtpmap` encoding name and clock rate to a codec. The
    /// name is case-insensitive (RFC 4855 §3); the clock rate must be the one
    /// the payload format fixes, since a PCMU/16000 is not something we can
    /// decode.
    pub fn from_rtpmap(encoding: &str, clock_rate: u32) -> Option<Self> {
        let codec = if encoding.eq_ignore_ascii_case("PCMU") {
            Codec::Pcmu
        } else if encoding.eq_ignore_ascii_case("PCMA") {
            Codec::Pcma
        } else if encoding.eq_ignore_ascii_case("opus") {
            Codec::Opus
        } else {
            return None;
        };
        (codec.clock_rate() == clock_rate).then_some(codec)
    }

    /// The RTP clock rate: 8000 for G.711, 48000 for Opus (RFC 7587 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48000,
        }
    }

    /// The encoding name as it is written in an `a=rtpmap` line.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// The static payload type of RFC 3551 §6, or `None` for Opus, which
    /// always uses a dynamic one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus => None,
        }
    }

    /// The number of channels to put in an rtpmap line: RFC 7587 §7 requires
    /// "opus/48000/2" even for mono streams.
    pub fn rtpmap_channels(self) -> Option<u8> {
        match self {
            Codec::Opus => Some(2),
            Codec::Pcmu | Codec::Pcma => None,
        }
    }

    /// RTP timestamp units per 8 kHz PCM sample: 1 for G.711, 6 for Opus.
    pub fn timestamp_units_per_sample(self) -> u32 {
        self.clock_rate() / PCM_RATE
    }

    /// How far the RTP timestamp advances for `samples` 8 kHz samples
    /// (modulo 2^32, as RTP timestamps wrap).
    pub fn samples_to_timestamp(self, samples: usize) -> u32 {
        // Truncation to u32 is the RTP wrap-around we want.
        (samples as u64).wrapping_mul(u64::from(self.timestamp_units_per_sample())) as u32
    }
}

// ---------------------------------------------------------------------------
// G.711, transcribed from the ITU-T G.191 Software Tool Library (g711.c),
// which is the normative bit-exact reference: µ-law uses the 14 most
// significant bits of the sample, A-law the 13 most significant, and negative
// values are taken as one's complement so that -1 encodes like -0.

/// Encodes one 16-bit sample to µ-law (ITU-T G.711, G.191 `ulaw_compress`).
pub fn ulaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    // One's complement for negatives: -1..-4 land on the same step as 0..3.
    let mut absno = if x < 0 { ((!x) >> 2) + 33 } else { (x >> 2) + 33 };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high_nibble = 0x0008 - segno;
    let low_nibble = 0x000F - ((absno >> segno) & 0x000F);
    let mut code = (high_nibble << 4) | low_nibble;
    if x >= 0 {
        code |= 0x0080;
    }
    // Always 0..=255 by construction.
    code as u8
}

/// Decodes one µ-law byte to a 16-bit sample (G.191 `ulaw_expand`).
pub fn ulaw_decode(b: u8) -> i16 {
    let sign: i32 = if b < 0x80 { -1 } else { 1 };
    let mantissa = !i32::from(b);
    let exponent = (mantissa >> 4) & 0x0007;
    let segment = exponent + 1;
    let mantissa = mantissa & 0x000F;
    let step = 4 << segment;
    // Magnitude is at most 32124: fits i16.
    (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// Encodes one 16-bit sample to A-law (ITU-T G.711, G.191 `alaw_compress`).
pub fn alaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    // 12-bit magnitude; one's complement for negatives as in G.191.
    let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if x >= 0 {
        ix |= 0x0080;
    }
    // Even bits inverted (the 0x55 mask) per G.711 §3.
    ((ix ^ 0x0055) & 0xFF) as u8
}

/// Decodes one A-law byte to a 16-bit sample (G.191 `alaw_expand`).
pub fn alaw_decode(b: u8) -> i16 {
    let ix = (i32::from(b) ^ 0x0055) & 0x007F;
    let iexp = ix >> 4;
    let mut mant = ix & 0x000F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x0008;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    // Magnitude is at most 32256: fits i16.
    if b > 127 {
        mant as i16
    } else {
        -mant as i16
    }
}

// ---------------------------------------------------------------------------
// Decoder / Encoder

/// libopus errors carry a `'static` description; keep only that, so
/// `MediaError` stays `Copy`.
fn opus_err(e: opus::Error) -> MediaError {
    MediaError::Codec(e.description())
}

/// Turns one RTP payload of a given codec into 8 kHz PCM.
///
/// The Opus variant holds libopus state (the decoder needs the previous
/// frames for its prediction and its loss concealment), and the G.711 ones
/// the recent audio their loss concealment replays, so one `Decoder` belongs
/// to one incoming stream.
pub struct Decoder {
    codec: Codec,
    opus: Option<opus::Decoder>,
    /// G.711 Appendix I-style concealment; `None` for Opus, which has its own.
    plc: Option<Box<G711Plc>>,
    /// Samples in the last decoded payload; the size of a concealment frame
    /// when the caller does not know how much audio went missing.
    last_samples: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("codec", &self.codec).field("last_samples", &self.last_samples).finish()
    }
}

impl Decoder {
    /// A decoder for `codec`, producing 8 kHz mono PCM.
    pub fn new(codec: Codec) -> Result<Self, MediaError> {
        let (opus, plc) = match codec {
            Codec::Opus => (Some(opus::Decoder::new(PCM_RATE, opus::Channels::Mono).map_err(opus_err)?), None),
            // Boxed: the history is most of a kilobyte, and decoders move.
            Codec::Pcmu | Codec::Pcma => (None, Some(Box::default())),
        };
        Ok(Self { codec, opus, plc, last_samples: FRAME_SAMPLES })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// How many 8 kHz samples `payload` decodes to, without decoding it. For
    /// Opus this reads the TOC byte and frame count (RFC 6716 §3.1) and is how
    /// malformed packets are rejected before they touch the decoder state.
    pub fn payload_samples(&self, payload: &[u8]) -> Result<usize, MediaError> {
        match self.codec {
            Codec::Pcmu | Codec::Pcma => Ok(payload.len()),
            Codec::Opus => {
                if payload.is_empty() {
                    // libopus reads an empty packet as "lost"; a real RTP
                    // packet with no Opus data is malformed (RFC 7587 §4.2).
                    return Err(MediaError::Codec("empty Opus packet"));
                }
                let n = opus::packet::get_nb_samples(payload, PCM_RATE).map_err(opus_err)?;
                if n == 0 || n > MAX_OPUS_PACKET_SAMPLES {
                    return Err(MediaError::Codec("Opus packet duration out of range"));
                }
                Ok(n)
            }
        }
    }

    /// Decodes one RTP payload, appending the PCM to `out`; returns the number
    /// of samples appended. On error nothing is appended.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        let start = out.len();
        let n = match self.codec {
            Codec::Pcmu => {
                out.extend(payload.iter().map(|&b| ulaw_decode(b)));
                payload.len()
            }
            Codec::Pcma => {
                out.extend(payload.iter().map(|&b| alaw_decode(b)));
                payload.len()
            }
            Codec::Opus => {
                self.payload_samples(payload)?;
                let dec = self.opus.as_mut().ok_or(MediaError::Codec("no Opus decoder"))?;
                let mut buf = [0i16; MAX_OPUS_PACKET_SAMPLES];
                let n = dec.decode(payload, &mut buf, false).map_err(opus_err)?;
                let n = n.min(buf.len());
                out.extend_from_slice(&buf[..n]);
                n
            }
        };
        if let (Some(plc), Some(pcm)) = (self.plc.as_mut(), out.get_mut(start..)) {
            // G.711 audio is the concealment's history, and right after a
            // loss its start is cross-faded from the concealment.
            plc.good_frame(pcm);
        }
        if n > 0 {
            self.last_samples = n;
        }
        Ok(n)
    }

    /// Samples in the last payload decoded: a good guess of how much audio
    /// one lost packet held.
    pub fn last_payload_samples(&self) -> usize {
        self.last_samples
    }

    /// Produces `samples` samples standing in for lost audio, appended to
    /// `out`; returns the number appended (always `samples` on success).
    ///
    /// Opus uses libopus packet-loss concealment, and when `next` (the payload
    /// that arrived right after the gap) is given, its in-band FEC data
    /// (RFC 6716 §2.1.7) for the last frame of the gap. G.711 has no state of
    /// its own to extrapolate from, so it uses [`G711Plc`] (after G.711
    /// Appendix I): the last pitch periods decoded are replayed, fading to
    /// silence over 60 ms, and the next decoded payload is cross-faded in;
    /// `next` is not used. With less than 35 ms decoded so far there is no
    /// pitch to replay, and the concealment is silence.
    pub fn conceal(&mut self, samples: usize, next: Option<&[u8]>, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        if let Some(plc) = self.plc.as_mut() {
            plc.conceal(out, samples);
            return Ok(samples);
        }
        let Some(dec) = self.opus.as_mut() else {
            out.resize(out.len() + samples, 0);
            return Ok(samples);
        };
        // libopus conceals in multiples of 2.5 ms (20 samples at 8 kHz);
        // whatever is left over is filled with silence.
        const QUANTUM: usize = 20;
        let plc_total = samples - samples % QUANTUM;
        // FEC rebuilds exactly one frame of the next packet's frame size, and
        // only the frame right before it, so it covers the tail of the gap.
        let fec_len = next
            .filter(|p| !p.is_empty())
            .and_then(|p| opus::packet::get_samples_per_frame(p, PCM_RATE).ok())
            .filter(|&f| f > 0 && f % QUANTUM == 0 && f <= plc_total && f <= MAX_OPUS_PACKET_SAMPLES)
            .unwrap_or(0);
        let mut buf = [0i16; MAX_OPUS_PACKET_SAMPLES];
        let mut remaining = plc_total - fec_len;
        while remaining > 0 {
            let chunk = remaining.min(FRAME_SAMPLES);
            let n = dec.decode(&[], &mut buf[..chunk], false).map_err(opus_err)?.min(chunk);
            out.extend_from_slice(&buf[..n]);
            // Should libopus return fewer samples, keep the timeline exact.
            out.resize(out.len() + (chunk - n), 0);
            remaining -= chunk;
        }
        if fec_len > 0 {
            let payload = next.unwrap_or(&[]);
            let n = match dec.decode(payload, &mut buf[..fec_len], true) {
                Ok(n) => n.min(fec_len),
                // A next packet that turns out to be unusable for FEC: plain PLC.
                Err(_) => dec.decode(&[], &mut buf[..fec_len], false).map_err(opus_err)?.min(fec_len),
            };
            out.extend_from_slice(&buf[..n]);
            out.resize(out.len() + (fec_len - n), 0);
        }
        out.resize(out.len() + (samples - plc_total), 0);
        Ok(samples)
    }
}

/// Turns 8 kHz PCM frames into RTP payloads of one codec.
pub struct Encoder {
    codec: Codec,
    opus: Option<opus::Encoder>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("codec", &self.codec).finish()
    }
}

impl Encoder {
    /// An encoder for `codec` taking 8 kHz mono PCM. Opus is set up for VoIP
    /// with in-band FEC on (tuned for 5% loss), so that a receiver using
    /// [`Decoder::conceal`] can rebuild a single lost packet.
    pub fn new(codec: Codec) -> Result<Self, MediaError> {
        let opus = match codec {
            Codec::Opus => {
                let mut enc =
                    opus::Encoder::new(PCM_RATE, opus::Channels::Mono, opus::Application::Voip).map_err(opus_err)?;
                enc.set_inband_fec(true).map_err(opus_err)?;
                enc.set_packet_loss_perc(5).map_err(opus_err)?;
                Some(enc)
            }
            Codec::Pcmu | Codec::Pcma => None,
        };
        Ok(Self { codec, opus })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Sets the Opus target bitrate in bits per second (libopus clamps it to
    /// 500..=512000); no effect on G.711.
    pub fn set_opus_bitrate(&mut self, bits_per_second: i32) -> Result<(), MediaError> {
        match self.opus.as_mut() {
            Some(enc) => enc.set_bitrate(opus::Bitrate::Bits(bits_per_second)).map_err(opus_err),
            None => Ok(()),
        }
    }

    /// Encodes one frame, appending the RTP payload to `out`. G.711 takes any
    /// length; Opus takes 2.5, 5, 10, 20, 40 or 60 ms (20, 40, 80, 160, 320 or
    /// 480 samples). On error nothing is appended.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MediaError> {
        match self.codec {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| ulaw_encode(s))),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| alaw_encode(s))),
            Codec::Opus => {
                if !matches!(pcm.len(), 20 | 40 | 80 | 160 | 320 | 480) {
                    return Err(MediaError::BadFrameSize { samples: pcm.len() });
                }
                let enc = self.opus.as_mut().ok_or(MediaError::Codec("no Opus encoder"))?;
                let mut buf = [0u8; MAX_OPUS_PAYLOAD];
                let n = enc.encode(pcm, &mut buf).map_err(opus_err)?.min(buf.len());
                out.extend_from_slice(&buf[..n]);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// WAV

/// Reads a RIFF/WAVE file of 16-bit mono PCM (format tag 1, or
/// WAVE_FORMAT_EXTENSIBLE with the PCM sub-format) and returns its sample
/// rate and samples. Unknown chunks (LIST, fact, ...) are skipped. A data
/// chunk whose declared length runs past the end of the file, as streaming
/// writers leave it, is read up to the end of the file.
pub fn read_wav_pcm16(bytes: &[u8]) -> Result<(u32, Vec<i16>), MediaError> {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if bytes.len() < 12 {
        return Err(MediaError::BadWav("shorter than the RIFF header"));
    }
    if &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(MediaError::BadWav("not RIFF/WAVE"));
    }
    let mut rate = None;
    let mut offset = 12usize;
    // Each chunk is at least 8 bytes, so this loop ends within len/8 turns.
    while let (Some(id), Some(size)) = (bytes.get(offset..offset + 4), u32_at(offset + 4)) {
        let body = offset + 8;
        let size = size as usize;
        match id {
            b"fmt " => {
                if size < 16 {
                    return Err(MediaError::BadWav("fmt chunk too short"));
                }
                let (Some(tag), Some(channels), Some(r), Some(bits)) =
                    (u16_at(body), u16_at(body + 2), u32_at(body + 4), u16_at(body + 14))
                else {
                    return Err(MediaError::BadWav("fmt chunk cut short"));
                };
                let pcm = match tag {
                    1 => true,
                    // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the real tag.
                    0xFFFE => size >= 40 && u16_at(body + 24) == Some(1),
                    _ => false,
                };
                if !pcm {
                    return Err(MediaError::BadWav("not PCM"));
                }
                if channels != 1 {
                    return Err(MediaError::BadWav("not mono"));
                }
                if bits != 16 {
                    return Err(MediaError::BadWav("not 16-bit"));
                }
                if r == 0 {
                    return Err(MediaError::BadWav("sample rate 0"));
                }
                rate = Some(r);
            }
            b"data" => {
                let rate = rate.ok_or(MediaError::BadWav("data before fmt"))?;
                let data = bytes.get(body..).unwrap_or(&[]);
                let data = &data[..size.min(data.len())];
                let samples = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                return Ok((rate, samples));
            }
            _ => {}
        }
        // Chunks are padded to an even length (RIFF). saturating: a huge size
        // just ends the walk.
        offset = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(MediaError::BadWav("no data chunk"))
}

/// Writes 16-bit mono PCM as a canonical 44-byte-header WAV file. Sizes that
/// would overflow the 32-bit RIFF fields (over 2 GiB of audio) are clamped,
/// as no prompt comes near that.
pub fn write_wav_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len().saturating_mul(2)).unwrap_or(u32::MAX - 36);
    let data_len = data_len.min(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.wrapping_mul(2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples.iter().take(data_len as usize / 2) {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}
