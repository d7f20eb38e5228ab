//! The error type of tsunagu-sip.

use bytes::Bytes;
use crate::headers::{Headers, Name};
use std::fmt::Write as _;

/// What a request that cannot be processed should be answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
    /// Extra headers for the response, e.g. `Unsupported` with a 420.
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into(), headers: Vec::new() }
    }
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Why bytes could not become a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Syntax error; a request still gets a stateless 400 where possible.
    Malformed,
    /// Larger than the configured limit.
    TooLarge,
    /// Content-Length unusable: on a stream the framing is lost.
    Framing,
    /// Well-formed enough to answer, with this response.
    Rejected,
    /// The start line is not SIP at all: on a stream, nothing that follows
    /// can be trusted.
    NotSip,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub detail: String,
    pub rejection: Option<Rejection>,
    /// Raw headers of a request, kept so a stateless response can copy Via,
    /// From, To, Call-ID and CSeq.
    pub request_headers: Option<Headers>,
}

impl ParseError {
    fn new(kind: ParseErrorKind, detail: impl Into<String>, rejection: Option<Rejection>) -> Self {
        Self { kind, detail: detail.into(), rejection, request_headers: None }
    }
    pub fn malformed(detail: &str) -> Self {
        Self::new(ParseErrorKind::Malformed, detail, Some(Rejection::new(400, "Bad Request")))
    }
    pub fn too_large(len: usize) -> Self {
        Self::new(ParseErrorKind::TooLarge, format!("message of {len} octets exceeds the limit"), Some(Rejection::new(513, "Message Too Large")))
    }
    pub fn framing(detail: &str) -> Self {
        Self::new(ParseErrorKind::Framing, detail, Some(Rejection::new(400, format!("Bad Request ({detail})"))))
    }
    pub fn not_sip(detail: &str) -> Self {
        Self::new(ParseErrorKind::NotSip, detail, Some(Rejection::new(400, format!("Bad Request-Line ({detail})"))))
    }
    pub fn bad_request_line(detail: &str) -> Self {
        Self::new(ParseErrorKind::Malformed, detail, Some(Rejection::new(400, format!("Bad Request-Line ({detail})"))))
    }
    pub fn bad_header(header: &str, why: &str) -> Self {
        Self::new(
            ParseErrorKind::Malformed,
            format!("{header}: {why}"),
            Some(Rejection::new(400, format!("Bad {header} header ({why})"))),
        )
    }
    pub fn rejected(rejection: Rejection, detail: &str) -> Self {
        Self::new(ParseErrorKind::Rejected, detail, Some(rejection))
    }
    pub fn with_request_headers(mut self, headers: &Headers) -> Self {
        self.request_headers = Some(headers.clone());
        self
    }

    /// The stateless response this error deserves, when the request carried
    /// at least a Via to answer along (RFC 3261 §8.2.6). Responses that fail
    /// to parse are never answered.
    pub fn stateless_response(&self) -> Option<Bytes> {
        let headers = self.request_headers.as_ref()?;
        let rejection = self.rejection.as_ref()?;
        stateless_response_from_raw(headers, rejection)
    }
}

/// Print a response that copies the raw Via/From/To/Call-ID/CSeq values of a
/// request that could not be fully parsed.
pub fn stateless_response_from_raw(headers: &Headers, rejection: &Rejection) -> Option<Bytes> {
    let mut s = String::with_capacity(256);
    let reason: String = rejection.reason.chars().filter(|c| !c.is_control()).collect();
    let _ = write!(s, "SIP/2.0 {} {}\r\n", rejection.code, reason);
    let mut has_via = false;
    for v in headers.get_raw(&Name::VIA) {
        has_via = true;
        let _ = write!(s, "Via: {v}\r\n");
    }
    if !has_via {
        return None;
    }
    for name in [Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
        if let Some(v) = headers.get_raw(&name).next() {
            let _ = write!(s, "{}: {}\r\n", name.as_print_str(), v);
        }
    }
    for (n, v) in &rejection.headers {
        let _ = write!(s, "{n}: {v}\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Some(Bytes::from(s))
}

/// Errors of the transaction and authentication layers.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("parse error: {0}")]
    Parse(#[from] ParseError),
    #[error("no such transaction")]
    NoTransaction,
    #[error("invalid input for this transaction state: {0}")]
    InvalidState(&'static str),
}
