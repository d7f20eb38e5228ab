//! SIP messages: parsing from bytes (datagram or stream frame), the core
//! headers every element needs, and printing back to bytes.
//!
//! Line splitting, header-name folding and compact forms come from
//! ezk-sip-types; the request line, From/To, CSeq, Content-Length and
//! Max-Forwards are parsed here because their error cases decide which
//! response a malformed request gets (RFC 3261 §8.2, RFC 4475).

use crate::error::{ParseError, Rejection};
use crate::limits::Limits;
use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_types::header::typed::Via;
use ezk_sip_types::header::HeaderParse;
use ezk_sip_types::msg::PullParser;
use crate::headers::{Headers, Name};
use std::fmt::Write as _;

/// How the bytes of a message were delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram: a missing Content-Length means "the rest"; bytes past
    /// the body are ignored (RFC 3261 §18.3).
    Datagram,
    /// One frame cut from a TCP/TLS stream by [`crate::StreamFramer`]: the
    /// body is exactly Content-Length octets.
    Stream,
}

/// The methods this stack knows by name. Anything else is kept verbatim and
/// answered 501 by a UAS.
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
];

/// The scheme of a Request-URI. Only `sip` and `sips` are routed; `tel` is
/// recognised so a later dial plan can take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriScheme {
    Sip,
    Sips,
    Tel,
    Other(String),
}

/// A Request-URI: the raw text (printed back unchanged when forwarded) and
/// the parsed SIP URI when the scheme is sip/sips.
#[derive(Debug, Clone)]
pub struct RequestUri {
    pub raw: String,
    pub scheme: UriScheme,
    /// User part after %-unescaping (`None` when there is none).
    pub user: Option<String>,
    /// Host (and port) text as written.
    pub host: String,
}

/// A From or To header value: `[display] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddrHeader {
    pub display: Option<String>,
    /// URI text without the angle brackets.
    pub uri: String,
    pub tag: Option<String>,
    /// The header value as received, for copying into responses.
    pub raw: String,
}

impl NameAddrHeader {
    /// The user part of a sip/sips URI, %-unescaped.
    pub fn user(&self) -> Option<String> {
        uri_user(&self.uri)
    }
    pub fn is_sip(&self) -> bool {
        let lower = self.uri.to_ascii_lowercase();
        lower.starts_with("sip:") || lower.starts_with("sips:")
    }
}

/// CSeq: number and method text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: String,
}

/// The headers a transaction layer and a registrar always need, parsed and
/// checked once.
#[derive(Debug, Clone)]
pub struct CoreHeaders {
    pub vias: Vec<Via>,
    pub from: NameAddrHeader,
    pub to: NameAddrHeader,
    pub call_id: String,
    pub cseq: CSeq,
    pub max_forwards: Option<u32>,
}

impl CoreHeaders {
    /// The branch of the top Via, if any.
    pub fn top_branch(&self) -> Option<&str> {
        self.vias
            .first()
            .and_then(|v| v.params.get_val("branch"))
            .map(|b| b.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: RequestUri,
    pub headers: Headers,
    pub body: Bytes,
    pub core: CoreHeaders,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
    pub core: CoreHeaders,
}

#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// The start line, kept apart so parsing can fail after it with a useful
/// error.
enum StartLine {
    Request { method: String, uri: RequestUri },
    Response { code: u16, reason: String },
}

/// Parse one message from `buf`. For [`Framing::Datagram`] the buffer is the
/// whole datagram; for [`Framing::Stream`] it is one frame.
pub fn parse_message(buf: &[u8], framing: Framing, limits: &Limits) -> Result<Message, ParseError> {
    if buf.len() > limits.max_message_size {
        return Err(ParseError::too_large(buf.len()));
    }
    // The head must be text; a body may be anything (RFC 4475 §3.1.1.11).
    // A datagram that ends without the empty line is read as all head, so
    // its request still gets a 400 (RFC 4475 §3.1.2.15's archive copy).
    let padded;
    let buf = match (find_head_end(buf), framing) {
        (Some(_), _) => buf,
        (None, Framing::Datagram) => {
            let mut v = buf.to_vec();
            v.extend_from_slice(if buf.ends_with(b"\r\n") { b"\r\n" } else { b"\r\n\r\n" });
            padded = v;
            &padded[..]
        }
        (None, Framing::Stream) => return Err(ParseError::malformed("no empty line ends the header section")),
    };
    let head_end = find_head_end(buf).ok_or_else(|| ParseError::malformed("no empty line ends the header section"))?;
    let body_start = head_end + head_terminator_len(&buf[head_end..]);
    // PullParser needs the empty line to see where the head ends.
    let head = std::str::from_utf8(&buf[..body_start])
        .map_err(|_| ParseError::not_sip("header section is not UTF-8"))?;
    let src = Bytes::copy_from_slice(head.as_bytes());
    let mut lines = PullParser::new(&src, 0);

    let first = match lines.next() {
        Some(Ok(l)) => l,
        _ => return Err(ParseError::not_sip("no start line")),
    };
    if first.len() > limits.max_line_length {
        return Err(ParseError::malformed("start line too long"));
    }
    // PullParser returns sub-slices of `src`, so they are valid UTF-8.
    let first = std::str::from_utf8(first).map_err(|_| ParseError::malformed("start line"))?;
    // A bad request line is only reported once the headers are read, so the
    // error can carry what a stateless response needs (e.g. 505).
    let start = parse_start_line(first);
    let is_request = !first.starts_with("SIP/");

    let mut headers = Headers::with_capacity(16);
    let mut count = 0usize;
    for line in lines.by_ref() {
        let line = line.map_err(|_| ParseError::malformed("header section is incomplete"))?;
        count += 1;
        if count > limits.max_headers {
            return Err(ParseError::malformed("too many header lines"));
        }
        if line.len() > limits.max_line_length {
            return Err(ParseError::malformed("header line too long"));
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::malformed("header"))?;
        // header = name *WSP ":" value (RFC 3261 §7.3.1)
        let (name, value) = text.split_once(':').ok_or_else(|| ParseError::malformed("header line without a colon"))?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::malformed("header line without a valid name"));
        }
        // Unfold continuation lines (RFC 3261 §7.3.1): any CRLF followed by
        // whitespace is one space.
        let value = unfold(value.trim_start_matches([' ', '\t']));
        headers.insert(Name::parse(name), value);
    }

    let attach = |e: ParseError| if is_request { e.with_request_headers(&headers) } else { e };
    let start = start.map_err(attach)?;
    let available = &buf[body_start.min(buf.len())..];
    let content_length = content_length(&headers).map_err(attach)?;
    let body = match (content_length, framing) {
        (Some(n), _) if n > available.len() => {
            return Err(attach(ParseError::rejected(
                Rejection::new(400, "Content-Length larger than message"),
                "Content-Length larger than the message",
            )))
        }
        (Some(n), _) => Bytes::copy_from_slice(&available[..n]),
        (None, Framing::Datagram) => Bytes::copy_from_slice(available),
        (None, Framing::Stream) => Bytes::new(),
    };

    match start {
        StartLine::Request { method, uri } => {
            let core = parse_core(&headers).map_err(attach)?;
            let req = Request { method, uri, headers, body, core };
            Ok(Message::Request(req))
        }
        StartLine::Response { code, reason } => {
            let core = parse_core(&headers)?;
            Ok(Message::Response(Response { code, reason, headers, body, core }))
        }
    }
}

/// Index of the end of the header section (the position of the empty line's
/// first octet), accepting CRLFCRLF or LFLF.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 1);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

fn head_terminator_len(rest: &[u8]) -> usize {
    match rest {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => 0,
    }
}

fn unfold(value: &str) -> BytesStr {
    if !value.contains(['\r', '\n']) {
        return BytesStr::from(value.trim_end());
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            while matches!(chars.peek(), Some(' ' | '\t' | '\r' | '\n')) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    BytesStr::from(out.trim_end())
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = rest.split_once(' ').ok_or_else(|| ParseError::malformed("status line"))?;
        if version != "2.0" {
            return Err(ParseError::malformed("response with an unknown SIP version"));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::malformed("status code is not three digits"));
        }
        let code: u16 = code.parse().map_err(|_| ParseError::malformed("status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::malformed("status code out of range"));
        }
        return Ok(StartLine::Response { code, reason: reason.to_string() });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP
    // each (RFC 4475 §3.1.2.8–10: we take the strict choice and answer 400).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::not_sip("request line must be 'METHOD SP URI SP SIP/2.0'"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::not_sip("method is not a token"));
    }
    if !version.starts_with("SIP/") {
        return Err(ParseError::not_sip("no SIP version"));
    }
    if version != "SIP/2.0" {
        return Err(ParseError::rejected(Rejection::new(505, "Version Not Supported"), "unsupported SIP version"));
    }
    let uri = parse_request_uri(uri)?;
    Ok(StartLine::Request { method: method.to_string(), uri })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_request_uri(raw: &str) -> Result<RequestUri, ParseError> {
    if raw.starts_with('<') {
        return Err(ParseError::bad_request_line("Request-URI enclosed in <>"));
    }
    let (scheme, rest) = raw.split_once(':').ok_or_else(|| ParseError::bad_request_line("Request-URI has no scheme"))?;
    if scheme.is_empty()
        || !scheme.as_bytes()[0].is_ascii_alphabetic()
        || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(ParseError::bad_request_line("Request-URI scheme"));
    }
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "sip" => UriScheme::Sip,
        "sips" => UriScheme::Sips,
        "tel" => UriScheme::Tel,
        other => UriScheme::Other(other.to_string()),
    };
    let (user, host) = match scheme {
        UriScheme::Sip | UriScheme::Sips => {
            let (user, hostpart) = match rest.rfind('@') {
                Some(at) => (Some(percent_decode(&rest[..at])), &rest[at + 1..]),
                None => (None, rest),
            };
            if hostpart.contains('?') {
                // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5).
                return Err(ParseError::bad_request_line("Request-URI carries headers"));
            }
            let host = hostpart.split(';').next().unwrap_or("").to_string();
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) {
                return Err(ParseError::bad_request_line("Request-URI host"));
            }
            (user, host)
        }
        _ => (None, String::new()),
    };
    Ok(RequestUri { raw: raw.to_string(), scheme, user, host })
}

/// %-decode; invalid escapes are kept literally. NUL octets survive as U+0000
/// (RFC 4475 §3.1.1.4: they must not truncate).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The user part of a `sip:`/`sips:` URI text, %-unescaped.
pub fn uri_user(uri: &str) -> Option<String> {
    let lower = uri.get(..5).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let rest = if lower.starts_with("sips:") {
        &uri[5..]
    } else if lower.starts_with("sip:") {
        &uri[4..]
    } else {
        return None;
    };
    let rest = rest.split(['?', '>']).next().unwrap_or("");
    rest.rfind('@').map(|at| percent_decode(&rest[..at]))
}

fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut values = headers.get_raw(&Name::CONTENT_LENGTH);
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() || first.contains(',') {
        return Err(ParseError::framing("more than one Content-Length"));
    }
    let v = first.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::framing("Content-Length is not a non-negative number"));
    }
    v.parse::<usize>().map(Some).map_err(|_| ParseError::framing("Content-Length overflows"))
}

/// The one value of a header that may appear once (RFC 4475 §3.3.8).
fn single<'h>(headers: &'h Headers, name: &'h Name, what: &'static str) -> Result<Option<&'h BytesStr>, ParseError> {
    let mut it = headers.get_raw(name);
    let first = it.next();
    if it.next().is_some() {
        return Err(ParseError::bad_header(what, "appears more than once"));
    }
    Ok(first)
}

fn parse_core(headers: &Headers) -> Result<CoreHeaders, ParseError> {
    let mut vias = Vec::new();
    for raw in headers.get_raw(&Name::VIA) {
        vias.extend(parse_list::<Via>(raw).map_err(|_| ParseError::bad_header("Via", "malformed"))?);
    }
    if vias.is_empty() {
        return Err(ParseError::bad_header("Via", "missing"));
    }
    let from = single(headers, &Name::FROM, "From")?.ok_or_else(|| ParseError::bad_header("From", "missing"))?;
    let to = single(headers, &Name::TO, "To")?.ok_or_else(|| ParseError::bad_header("To", "missing"))?;
    let call_id = single(headers, &Name::CALL_ID, "Call-ID")?.ok_or_else(|| ParseError::bad_header("Call-ID", "missing"))?;
    let cseq = single(headers, &Name::CSEQ, "CSeq")?.ok_or_else(|| ParseError::bad_header("CSeq", "missing"))?;
    let max_forwards = single(headers, &Name::MAX_FORWARDS, "Max-Forwards")?;
    // Contact may list several values, but only in one header line or in
    // several lines of a REGISTER; a second Contact line elsewhere would be
    // ambiguous. The registrar checks Contact itself.
    let call_id = call_id.trim();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::bad_header("Call-ID", "malformed"));
    }
    Ok(CoreHeaders {
        vias,
        from: parse_name_addr(from).map_err(|why| ParseError::bad_header("From", why))?,
        to: parse_name_addr(to).map_err(|why| ParseError::bad_header("To", why))?,
        call_id: call_id.to_string(),
        cseq: parse_cseq(cseq)?,
        max_forwards: match max_forwards {
            None => None,
            Some(v) => Some(parse_max_forwards(v)?),
        },
    })
}

fn parse_cseq(raw: &str) -> Result<CSeq, ParseError> {
    let raw = raw.trim();
    let (num, method) = raw
        .split_once(|c: char| c == ' ' || c == '\t')
        .ok_or_else(|| ParseError::bad_header("CSeq", "malformed"))?;
    let method = method.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::bad_header("CSeq", "malformed"));
    }
    // Must be below 2^31 by RFC 3261 §8.1.1.5, and fit 32 bits at the least.
    let seq: u32 = num.parse().map_err(|_| ParseError::bad_header("CSeq", "number out of range"))?;
    Ok(CSeq { seq, method: method.to_string() })
}

fn parse_max_forwards(raw: &str) -> Result<u32, ParseError> {
    let v = raw.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::bad_header("Max-Forwards", "malformed"));
    }
    // Values above 255 are tolerated as 255 (RFC 4475 §3.1.2.4).
    Ok(v.parse::<u32>().unwrap_or(u32::MAX).min(255))
}

/// Parse a comma-separated header value list with an ezk parser, demanding
/// that every octet is consumed (ezk's own list decoder stops silently).
pub fn parse_list<H: HeaderParse>(raw: &BytesStr) -> Result<Vec<H>, ()> {
    let src: &Bytes = raw.as_ref();
    let mut items = Vec::new();
    let mut i = raw.as_str().trim();
    loop {
        let (rest, item) = H::parse(src, i).map_err(|_| ())?;
        items.push(item);
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(items);
        }
        let Some(next) = rest.strip_prefix(',') else { return Err(()) };
        i = next.trim_start();
        if i.is_empty() {
            return Err(());
        }
    }
}

/// A strict name-addr / addr-spec parser for From and To, tolerant of any URI
/// scheme (carriers send tel: URIs).
pub fn parse_name_addr(raw: &str) -> Result<NameAddrHeader, &'static str> {
    let s = raw.trim();
    let (display, uri, params) = if let Some(rest) = s.strip_prefix('"') {
        let end = closing_quote(rest).ok_or("unterminated quoted display name")?;
        let display = &rest[..end];
        let after = rest[end + 1..].trim_start();
        let (uri, params) = bracketed(after)?;
        (Some(display.to_string()), uri, params)
    } else if let Some(lt) = s.find('<') {
        let display = s[..lt].trim();
        if !display.is_empty() && !display.split([' ', '\t']).filter(|w| !w.is_empty()).all(|w| w.bytes().all(is_token_byte)) {
            return Err("display name must be tokens or a quoted string");
        }
        let (uri, params) = bracketed(&s[lt..])?;
        (if display.is_empty() { None } else { Some(display.to_string()) }, uri, params)
    } else {
        // addr-spec without brackets: parameters belong to the header, and
        // the URI cannot contain ';', ',' or '?' (RFC 3261 §20.10).
        let (uri, params) = s.split_once(';').map(|(u, p)| (u.trim_end(), Some(p))).unwrap_or((s, None));
        if uri.contains(['?', ',', ' ', '"']) {
            return Err("URI with reserved characters must be enclosed in <>");
        }
        (None, uri.to_string(), params.map(|p| format!(";{p}")).unwrap_or_default())
    };
    if !uri.contains(':') || uri.contains([' ', '\t']) {
        return Err("malformed URI");
    }
    let mut tag = None;
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = p.split_once('=').map(|(n, v)| (n.trim(), Some(v.trim()))).unwrap_or((p, None));
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err("malformed parameter");
        }
        if name.eq_ignore_ascii_case("tag") {
            match value {
                Some(v) if !v.is_empty() && v.bytes().all(is_token_byte) => tag = Some(v.to_string()),
                _ => return Err("malformed tag"),
            }
        }
    }
    Ok(NameAddrHeader { display, uri, tag, raw: s.to_string() })
}

fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `<uri>params` → (uri, params text)
fn bracketed(s: &str) -> Result<(String, String), &'static str> {
    let rest = s.strip_prefix('<').ok_or("expected <")?;
    let end = rest.find('>').ok_or("missing >")?;
    let uri = &rest[..end];
    if uri.contains([' ', '\t']) {
        return Err("whitespace inside <>");
    }
    let params = rest[end + 1..].trim();
    if !params.is_empty() && !params.starts_with(';') {
        return Err("junk after >");
    }
    Ok((uri.to_string(), params.to_string()))
}

// ---------------------------------------------------------------------------
// Printing

impl Request {
    /// Print the request; Content-Length is always written from the body.
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(256 + self.headers.printed_len());
        let _ = write!(s, "{} {} SIP/2.0\r\n", self.method, self.uri.raw);
        finish(s, &self.headers, &self.body)
    }
}

impl Response {
    pub fn to_bytes(&self) -> Bytes {
        let mut s = String::with_capacity(256 + self.headers.printed_len());
        let _ = write!(s, "SIP/2.0 {} {}\r\n", self.code, self.reason);
        finish(s, &self.headers, &self.body)
    }
}

fn finish(mut s: String, headers: &Headers, body: &Bytes) -> Bytes {
    for (name, value) in headers.iter() {
        if *name == Name::CONTENT_LENGTH {
            continue;
        }
        let _ = write!(s, "{}: {}\r\n", name.as_print_str(), value);
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

/// Build a response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and
/// CSeq copied; a To tag added to non-100 responses when the request had
/// none.
pub fn response_to(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::with_capacity(8);
    for v in req.headers.get_raw(&Name::VIA) {
        headers.insert(Name::VIA, v.clone());
    }
    headers.insert(Name::FROM, req.core.from.raw.clone());
    let to = match (&req.core.to.tag, to_tag) {
        (None, Some(tag)) if code > 100 => format!("{};tag={}", req.core.to.raw, tag),
        _ => req.core.to.raw.clone(),
    };
    headers.insert(Name::TO, to);
    headers.insert(Name::CALL_ID, req.core.call_id.clone());
    headers.insert(Name::CSEQ, format!("{} {}", req.core.cseq.seq, req.core.cseq.method));
    let mut core = req.core.clone();
    if core.to.tag.is_none() && code > 100 {
        core.to.tag = to_tag.map(str::to_string);
    }
    Response { code, reason: reason_phrase(code).to_string(), headers, body: Bytes::new(), core }
}
