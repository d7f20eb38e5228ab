//! The error type of tsunagu-media.

/// Why bytes could not be read as RTP or RTCP. Every parser in this crate
/// returns this, never panics, and never reads past the slice it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Fewer bytes than the fixed part being read needs.
    #[error("packet too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    /// The version field is not 2.
    #[error("unsupported RTP/RTCP version {0}")]
    BadVersion(u8),
    /// The CSRC list runs past the end of the packet.
    #[error("CSRC list ({count} entries) runs past the end of the packet")]
    CsrcOverrun { count: u8 },
    /// The header extension runs past the end of the packet.
    #[error("header extension ({words} words) runs past the end of the packet")]
    ExtensionOverrun { words: u16 },
    /// The padding count is zero or larger than the payload.
    #[error("bad padding count {count} for a payload of {available} bytes")]
    BadPadding { count: u8, available: usize },
    /// The second byte is in the RTCP range (RFC 5761 §4) where RTP was expected.
    #[error("packet type {0} is RTCP, not RTP")]
    IsRtcp(u8),
    /// The packet type is outside the RTCP range 192..=223.
    #[error("packet type {0} is not RTCP")]
    NotRtcp(u8),
    /// The RTCP length field runs past the end of the datagram.
    #[error("RTCP length {words} words runs past the {have} bytes available")]
    RtcpLengthOverrun { words: u16, have: usize },
    /// The RTCP packet carries no sender SSRC (an empty SDES or BYE).
    #[error("RTCP packet has no sender SSRC")]
    RtcpNoSsrc,
    /// The datagram is larger than the configured limit.
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// libopus refused a packet or a call; the text is libopus's own
    /// description (opus_strerror), kept `'static` so the error stays `Copy`.
    #[error("Opus codec error: {0}")]
    Codec(&'static str),
    /// A PCM frame length the encoder cannot take (Opus accepts 2.5, 5, 10,
    /// 20, 40 or 60 ms).
    #[error("cannot encode a frame of {samples} samples")]
    BadFrameSize { samples: usize },
    /// A WAV file that is not RIFF/WAVE 16-bit mono PCM, or is cut short.
    #[error("bad WAV file: {0}")]
    BadWav(&'static str),
    /// A DTMF request that cannot be expressed in RFC 4733 (unknown digit,
    /// zero or too long a duration).
    #[error("bad DTMF request: {0}")]
    BadDtmf(&'static str),
    /// The SRTP or SRTCP authentication tag does not match: wrong key,
    /// corruption in transit, or a forged packet.
    #[error("SRTP/SRTCP authentication failed")]
    SrtpAuthFailed,
    /// The SRTP or SRTCP packet index was seen before, or is older than the
    /// replay window (RFC 3711 §3.3.2).
    #[error("SRTP/SRTCP index {index} is a replay or older than the replay window")]
    SrtpReplay { index: u64 },
    /// The packet's MKI is not the one the context was set up with.
    #[error("SRTP/SRTCP packet carries an unknown MKI")]
    SrtpUnknownMki,
    /// The master key has protected as many packets as RFC 3711 allows
    /// (2^48 SRTP or 2^31 SRTCP per SSRC): the session must be re-keyed.
    #[error("SRTP master key exhausted; re-key")]
    SrtpKeyExhausted,
    /// The context already tracks the most SSRCs it will hold state for.
    #[error("SRTP context already tracks {max} SSRCs")]
    SrtpTooManySsrcs { max: usize },
    /// An SDP a=crypto value (RFC 4568) is malformed or asks for something
    /// this implementation does not do.
    #[error("bad a=crypto attribute: {0}")]
    BadCryptoAttr(&'static str),

    /// A resampler asked for rates it does not convert between.
    #[error("unsupported sample rate conversion: {0}")]
    BadSampleRate(&'static str),
}
