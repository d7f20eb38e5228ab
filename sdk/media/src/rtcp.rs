//! Minimal RTCP header parsing (RFC 3550 §6.4): version, padding, count,
//! packet type, length and the sender SSRC, for the first packet of a
//! datagram and, on plain RTCP, for each packet of a compound.
//!
//! [`RtcpHeader::parse`] reads only the first 8 bytes and checks that the
//! first packet's length fits in the datagram. That is all that is in the
//! clear in SRTCP (RFC 3711 §3.4), so the relay can use it on encrypted RTCP;
//! [`rtcp_compound`] walks a plain compound and requires the lengths to add
//! up to the datagram exactly.

use crate::error::MediaError;
use crate::rtp::RTP_VERSION;

/// Sender report.
pub const RTCP_SR: u8 = 200;
/// Receiver report.
pub const RTCP_RR: u8 = 201;
/// Source description.
pub const RTCP_SDES: u8 = 202;
/// Goodbye.
pub const RTCP_BYE: u8 = 203;
/// Application-defined.
pub const RTCP_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585).
pub const RTCP_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585).
pub const RTCP_PSFB: u8 = 206;
/// Extended report (RFC 3611).
pub const RTCP_XR: u8 = 207;

/// The common header of one RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    pub version: u8,
    pub padding: bool,
    /// Report count, source count or feedback message type (5 bits).
    pub count: u8,
    /// 192..=223.
    pub packet_type: u8,
    /// The length field: 32-bit words minus one.
    pub length_words: u16,
    /// The SSRC in the word after the header: the sender for SR, RR, APP,
    /// feedback and XR; the first chunk or source for SDES and BYE. `None`
    /// only when the packet is just the 4-byte header (empty SDES or BYE).
    pub ssrc: Option<u32>,
}

impl RtcpHeader {
    /// Size of this RTCP packet in bytes, header included.
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length_words) + 1) * 4
    }

    /// Reads the header of the first RTCP packet in `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, MediaError> {
        let have = buf.len();
        let head = buf.get(..4).ok_or(MediaError::TooShort { need: 4, have })?;
        let version = head[0] >> 6;
        if version != RTP_VERSION {
            return Err(MediaError::BadVersion(version));
        }
        let packet_type = head[1];
        if !(192..=223).contains(&packet_type) {
            return Err(MediaError::NotRtcp(packet_type));
        }
        let length_words = u16::from_be_bytes([head[2], head[3]]);
        let header = Self {
            version,
            padding: head[0] & 0x20 != 0,
            count: head[0] & 0x1f,
            packet_type,
            length_words,
            ssrc: None,
        };
        if header.packet_len() > have {
            return Err(MediaError::RtcpLengthOverrun { words: length_words, have });
        }
        let ssrc = if length_words >= 1 {
            buf.get(4..8).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        } else {
            None
        };
        Ok(Self { ssrc, ..header })
    }
}

/// Walks the packets of a plain (not SRTCP) compound RTCP datagram.
pub fn rtcp_compound(buf: &[u8]) -> RtcpCompoundIter<'_> {
    RtcpCompoundIter { rest: buf, failed: false }
}

/// Yields each packet's header and bytes; after the first error, stops.
#[derive(Debug, Clone)]
pub struct RtcpCompoundIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for RtcpCompoundIter<'a> {
    type Item = Result<(RtcpHeader, &'a [u8]), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match RtcpHeader::parse(self.rest) {
            Ok(h) => {
                let (packet, rest) = self.rest.split_at(h.packet_len());
                if h.padding {
                    // The padding count is the packet's last byte, within the
                    // bytes after the 4-byte header.
                    let count = packet.last().copied().unwrap_or(0);
                    if count == 0 || usize::from(count) > packet.len() - 4 {
                        self.failed = true;
                        return Some(Err(MediaError::BadPadding { count, available: packet.len() - 4 }));
                    }
                }
                self.rest = rest;
                Some(Ok((h, packet)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
