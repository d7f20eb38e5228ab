//! RTP header parsing (RFC 3550 §5.1) and demultiplexing of what may arrive on
//! one media port: RTP, RTCP (RFC 5761 §4), STUN, DTLS (RFC 7983).
//!
//! Two levels, on purpose:
//! - [`RtpHeader::parse`] reads the fixed header, the CSRC list and the header
//!   extension, and stops there. It never looks at the padding, because in
//!   SRTP (RFC 3711) the last byte of the datagram is part of the
//!   authentication tag, not a padding count. The relay uses this level, so it
//!   forwards SRTP untouched.
//! - [`RtpPacket::parse`] also validates the padding and so exposes the exact
//!   payload; use it on plain (or already decrypted) RTP.
//!
//! Both are O(1), bounded by the slice and panic-free on any input.

use crate::error::MediaError;

/// The only RTP/RTCP version in use.
pub const RTP_VERSION: u8 = 2;
/// The fixed RTP header, without CSRCs or extension.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// What a datagram on a media port is, from its first two bytes
/// (RFC 7983 §7 for the first byte, RFC 5761 §4 for RTP versus RTCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// First byte 0..=3.
    Stun,
    /// First byte 16..=19.
    Zrtp,
    /// First byte 20..=63.
    Dtls,
    /// First byte 64..=79 (TURN ChannelData).
    TurnChannel,
    /// Version 2, second byte outside 192..=223.
    Rtp,
    /// Version 2, second byte (marker bit + payload type) in 192..=223.
    Rtcp,
    /// Empty, or anything else.
    Unknown,
}

/// Classifies a datagram without validating it further. RTP and RTCP need at
/// least the two bytes the decision is made on; a parser still has to accept
/// the rest.
pub fn classify(packet: &[u8]) -> PacketClass {
    let Some(&b0) = packet.first() else { return PacketClass::Unknown };
    match b0 {
        0..=3 => PacketClass::Stun,
        16..=19 => PacketClass::Zrtp,
        20..=63 => PacketClass::Dtls,
        64..=79 => PacketClass::TurnChannel,
        128..=191 => match packet.get(1) {
            Some(192..=223) => PacketClass::Rtcp,
            Some(_) => PacketClass::Rtp,
            None => PacketClass::Unknown,
        },
        _ => PacketClass::Unknown,
    }
}

/// True when a datagram on an RTP/RTCP-multiplexed port is RTCP: version 2
/// and the second byte in 192..=223 (RFC 5761 §4: RTCP packet types 192..223
/// collide with RTP payload types 64..95 with the marker bit set, so those
/// payload types are never used for RTP).
pub fn is_rtcp(packet: &[u8]) -> bool {
    classify(packet) == PacketClass::Rtcp
}

/// The RTP header, read from a datagram. Offsets index into that datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub version: u8,
    pub padding: bool,
    pub extension: bool,
    pub csrc_count: u8,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The header extension profile (the "defined by profile" field), when
    /// the X bit is set: 0xBEDE for RFC 8285 one-byte, 0x100x for two-byte.
    pub extension_profile: Option<u16>,
    /// Offset of the extension data (after its 4-byte header), when present.
    pub extension_offset: usize,
    /// Length in bytes of the extension data.
    pub extension_len: usize,
    /// Offset of the first payload byte: fixed header + CSRCs + extension.
    pub payload_offset: usize,
}

impl RtpHeader {
    /// Reads the fixed header, CSRC list and extension. Rejects version != 2
    /// and second bytes in the RTCP range; does not look at the padding (see
    /// the module notes on SRTP).
    pub fn parse(packet: &[u8]) -> Result<Self, MediaError> {
        let have = packet.len();
        let fixed: &[u8; RTP_FIXED_HEADER_LEN] = packet
            .get(..RTP_FIXED_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(MediaError::TooShort { need: RTP_FIXED_HEADER_LEN, have })?;
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(MediaError::BadVersion(version));
        }
        if (192..=223).contains(&fixed[1]) {
            return Err(MediaError::IsRtcp(fixed[1]));
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0f;
        let marker = fixed[1] & 0x80 != 0;
        let payload_type = fixed[1] & 0x7f;
        let sequence = u16::from_be_bytes([fixed[2], fixed[3]]);
        let timestamp = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let ssrc = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);

        // At most 12 + 15*4 = 72: no overflow possible.
        let mut offset = RTP_FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if offset > have {
            return Err(MediaError::CsrcOverrun { count: csrc_count });
        }
        let (mut extension_profile, mut extension_offset, mut extension_len) = (None, 0, 0);
        if extension {
            let ext = packet.get(offset..offset + 4).ok_or(MediaError::TooShort { need: offset + 4, have })?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = u16::from_be_bytes([ext[2], ext[3]]);
            // At most 72 + 4 + 65535*4: fits any usize >= 32 bits.
            let end = offset + 4 + 4 * usize::from(words);
            if end > have {
                return Err(MediaError::ExtensionOverrun { words });
            }
            extension_profile = Some(profile);
            extension_offset = offset + 4;
            extension_len = 4 * usize::from(words);
            offset = end;
        }
        Ok(Self {
            version,
            padding,
            extension,
            csrc_count,
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            extension_profile,
            extension_offset,
            extension_len,
            payload_offset: offset,
        })
    }
}

/// A plain RTP packet: header plus a validated payload and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    header: RtpHeader,
    padding_len: usize,
}

impl<'a> RtpPacket<'a> {
    /// Parses the header and checks the padding: when the P bit is set, the
    /// last byte counts the padding bytes (itself included), which must be at
    /// least 1 and fit after the header.
    pub fn parse(buf: &'a [u8]) -> Result<Self, MediaError> {
        let header = RtpHeader::parse(buf)?;
        let available = buf.len() - header.payload_offset;
        let padding_len = if header.padding {
            let count = *buf.last().ok_or(MediaError::TooShort { need: 1, have: 0 })?;
            if count == 0 || usize::from(count) > available {
                return Err(MediaError::BadPadding { count, available });
            }
            usize::from(count)
        } else {
            0
        };
        Ok(Self { buf, header, padding_len })
    }

    pub fn header(&self) -> &RtpHeader {
        &self.header
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.buf.len() - self.padding_len;
        self.buf.get(self.header.payload_offset..end).unwrap_or(&[])
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.padding_len
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = RTP_FIXED_HEADER_LEN + 4 * usize::from(self.header.csrc_count);
        self.buf
            .get(RTP_FIXED_HEADER_LEN..end)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header extension: profile and data (a multiple of 4 bytes).
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        let profile = self.header.extension_profile?;
        let start = self.header.extension_offset;
        self.buf.get(start..start + self.header.extension_len).map(|d| (profile, d))
    }
}
