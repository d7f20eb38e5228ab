//! Cutting a TCP/TLS byte stream into SIP messages by Content-Length
//! (RFC 3261 §18.3), and spotting RFC 5626 keep-alives.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::message::find_head_end;
use bytes::{Buf, Bytes, BytesMut};

/// One thing found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (head and exactly Content-Length octets of body).
    Message(Bytes),
    /// A CRLFCRLF "ping" (RFC 5626 §3.5.1): answer with one CRLF.
    Ping,
    /// A lone CRLF "pong".
    Pong,
}

/// Accumulates stream bytes and yields frames. After an error the stream is
/// unusable (framing is lost) and the connection must be closed.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    failed: bool,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        Self { buf: BytesMut::new(), limits, failed: false }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Octets buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.failed {
            return Err(ParseError::framing("stream framing was lost earlier"));
        }
        let r = self.next_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.advance(4);
            return Ok(Some(Frame::Ping));
        }
        if self.buf.starts_with(b"\r\n") {
            if self.buf.len() < 3 || (self.buf.len() == 3 && self.buf[2] == b'\r') {
                return Ok(None); // might still become a ping
            }
            self.buf.advance(2);
            return Ok(Some(Frame::Pong));
        }
        let Some(head_end) = find_head_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message_size {
                return Err(ParseError::too_large(self.buf.len()));
            }
            return Ok(None);
        };
        let term = if self.buf[head_end] == b'\r' { 2 } else { 1 };
        let body_len = stream_content_length(&self.buf[..head_end])?;
        let total = head_end + term + body_len;
        if total > self.limits.max_message_size {
            return Err(ParseError::too_large(total));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// Content-Length from a raw header section: exactly one non-negative
/// decimal value. A missing value counts as 0, as most stacks do.
fn stream_content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue; // continuation line
        }
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = trim(&line[colon + 1..]);
        if found.is_some() || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::framing("Content-Length is missing a single non-negative value"));
        }
        let v = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| ParseError::framing("Content-Length overflows"))?;
        found = Some(v);
    }
    Ok(found.unwrap_or(0))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn frames_byte_by_byte() {
        let mut f = StreamFramer::default();
        for (i, b) in MSG.iter().enumerate() {
            f.push(&[*b]);
            let r = f.next_frame().unwrap();
            if i + 1 < MSG.len() {
                assert_eq!(r, None, "at {i}");
            } else {
                assert_eq!(r, Some(Frame::Message(Bytes::from_static(MSG))));
            }
        }
    }

    #[test]
    fn two_messages_and_keepalive_in_one_read() {
        let mut f = StreamFramer::default();
        f.push(b"\r\n\r\n");
        f.push(MSG);
        f.push(MSG);
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
        assert_eq!(f.next_frame().unwrap(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn compact_and_spaced_content_length() {
        let mut f = StreamFramer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl  :  2\r\n\r\nxyEXTRA");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Message(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nl  :  2\r\n\r\nxy"))));
    }

    #[test]
    fn negative_or_double_content_length_loses_framing() {
        for bad in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n",
        ] {
            let mut f = StreamFramer::default();
            f.push(bad);
            assert!(f.next_frame().is_err());
            f.push(MSG);
            assert!(f.next_frame().is_err(), "stays failed");
        }
    }

    #[test]
    fn oversized_head_is_rejected_without_waiting_forever() {
        let mut f = StreamFramer::new(Limits { max_message_size: 100, ..Limits::default() });
        f.push(&[b'a'; 101]);
        assert!(f.next_frame().is_err());
        let mut f = StreamFramer::new(Limits { max_message_size: 100, ..Limits::default() });
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(f.next_frame().is_err());
    }
}
