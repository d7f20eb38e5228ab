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
}
