//! SDP (RFC 4566) as the B2BUA and the softphone need it: a bounded,
//! panic-free parser that keeps every line it does not interpret, typed
//! access to what offer/answer touches (connection address, media port and
//! protocol, payload types with their rtpmap/fmtp, direction, rtcp-mux,
//! a=rtcp, a=crypto), and a printer. Lines are kept in order so that an
//! SDP passed through the PBX changes only where the PBX means to change it.
//!
//! Own code rather than ezk-sdp-types: the B2BUA rewrites a handful of
//! fields and must print everything else back byte-for-byte, which a fully
//! typed model does not promise.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Hard bounds: an SDP larger than a SIP message is already refused by the
/// SIP limits; these bound the work per body.
const MAX_LINES: usize = 512;
const MAX_MEDIA: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    #[error("SDP too large")]
    TooLarge,
    #[error("SDP is not UTF-8")]
    NotUtf8,
}

/// A session description: session-level lines, then media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Session-level lines in order as (type char, value), `v=`, `o=`, `s=`,
    /// `c=`, `t=`, `a=` ...
    pub session: Vec<(char, String)>,
    pub media: Vec<Media>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF` ...
    pub proto: String,
    /// Payload types (or other format tokens) in preference order.
    pub formats: Vec<String>,
    /// The section's other lines in order (`c=`, `b=`, `a=` ...).
    pub lines: Vec<(char, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
    /// The direction an answerer mirrors back (RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// One payload type as `a=rtpmap` (or the static table) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    pub fmtp: Option<String>,
}

impl Sdp {
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut session = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            if i >= MAX_LINES {
                return Err(SdpError::TooLarge);
            }
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let mut chars = line.chars();
            let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
                return Err(SdpError::Malformed { line: line_no, what: "expected <type>=<value>" });
            };
            if !kind.is_ascii_lowercase() {
                return Err(SdpError::Malformed { line: line_no, what: "type must be a lower-case letter" });
            }
            let value = &line[2..];
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(SdpError::Malformed { line: line_no, what: "control character" });
            }
            if kind == 'm' {
                if media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooLarge);
                }
                media.push(parse_m_line(value).ok_or(SdpError::Malformed { line: line_no, what: "bad m= line" })?);
            } else if let Some(m) = media.last_mut() {
                m.lines.push((kind, value.to_string()));
            } else {
                if kind == 'v' && value != "0" {
                    return Err(SdpError::Malformed { line: line_no, what: "unsupported SDP version" });
                }
                session.push((kind, value.to_string()));
            }
        }
        if session.first().map(|(k, _)| *k) != Some('v') {
            return Err(SdpError::Malformed { line: 1, what: "SDP must start with v=" });
        }
        let sdp = Sdp { session, media };
        // Every connection address we may need must be readable.
        for (k, v) in sdp.session.iter().chain(sdp.media.iter().flat_map(|m| m.lines.iter())) {
            if *k == 'c' && parse_c_line(v).is_none() {
                return Err(SdpError::Malformed { line: 0, what: "bad c= line" });
            }
        }
        Ok(sdp)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512);
        for (k, v) in &self.session {
            let _ = write!(s, "{k}={v}\r\n");
        }
        for m in &self.media {
            let _ = write!(s, "m={} {} {} {}\r\n", m.kind, m.port, m.proto, m.formats.join(" "));
            for (k, v) in &m.lines {
                let _ = write!(s, "{k}={v}\r\n");
            }
        }
        s.into_bytes()
    }

    /// The session-level connection address.
    pub fn session_addr(&self) -> Option<IpAddr> {
        self.session.iter().find(|(k, _)| *k == 'c').and_then(|(_, v)| parse_c_line(v))
    }

    /// Where a media section's RTP should go: its own `c=` or the session's.
    pub fn media_addr(&self, index: usize) -> Option<IpAddr> {
        let m = self.media.get(index)?;
        m.connection().or_else(|| self.session_addr())
    }

    /// The first audio section, if any.
    pub fn audio_index(&self) -> Option<usize> {
        self.media.iter().position(|m| m.kind == "audio" && m.port != 0)
    }

    /// Set the connection address everywhere (session and media level) and
    /// the origin's address, as a B2BUA anchoring media does.
    pub fn set_connection(&mut self, addr: IpAddr) {
        let c = c_line(addr);
        let mut has_session_c = false;
        for (k, v) in self.session.iter_mut() {
            match k {
                'c' => {
                    *v = c.clone();
                    has_session_c = true;
                }
                'o' => *v = replace_origin_addr(v, addr),
                _ => {}
            }
        }
        if !has_session_c {
            // c= goes after s= (and i=, u=, e=, p=) and before t=.
            let pos = self.session.iter().position(|(k, _)| matches!(k, 'b' | 't' | 'r' | 'z' | 'k' | 'a')).unwrap_or(self.session.len());
            self.session.insert(pos, ('c', c.clone()));
        }
        for m in &mut self.media {
            for (k, v) in m.lines.iter_mut() {
                if *k == 'c' {
                    *v = c.clone();
                }
            }
        }
    }

    /// Bump the origin's session version (RFC 3264 §8: every new offer from
    /// the same side must carry a higher version).
    pub fn set_origin(&mut self, user: &str, session_id: u64, version: u64, addr: IpAddr) {
        let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
        let line = format!("{user} {session_id} {version} IN {fam} {addr}");
        match self.session.iter_mut().find(|(k, _)| *k == 'o') {
            Some((_, v)) => *v = line,
            None => self.session.insert(1.min(self.session.len()), ('o', line)),
        }
    }
}

impl Media {
    pub fn connection(&self) -> Option<IpAddr> {
        self.lines.iter().find(|(k, _)| *k == 'c').and_then(|(_, v)| parse_c_line(v))
    }

    /// Values of `a=NAME:value` / `a=NAME` lines.
    pub fn attrs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines.iter().filter(|(k, _)| *k == 'a').filter_map(move |(_, v)| {
            let (n, val) = v.split_once(':').unwrap_or((v.as_str(), ""));
            (n == name).then_some(val)
        })
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attrs(name).next().is_some()
    }

    pub fn remove_attrs(&mut self, name: &str) {
        self.lines.retain(|(k, v)| !(*k == 'a' && v.split_once(':').map_or(v.as_str(), |(n, _)| n) == name));
    }

    pub fn push_attr(&mut self, name: &str, value: Option<&str>) {
        let line = match value {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        self.lines.push(('a', line));
    }

    pub fn direction(&self) -> Direction {
        self.lines
            .iter()
            .rev()
            .filter(|(k, _)| *k == 'a')
            .find_map(|(_, v)| Direction::parse(v))
            .unwrap_or(Direction::SendRecv)
    }

    pub fn set_direction(&mut self, d: Direction) {
        self.lines.retain(|(k, v)| !(*k == 'a' && Direction::parse(v).is_some()));
        self.lines.push(('a', d.as_str().to_string()));
    }

    pub fn rtcp_mux(&self) -> bool {
        self.has_attr("rtcp-mux")
    }

    /// `a=rtcp:PORT` (RFC 3605), when the RTCP port is not RTP port + 1.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.attrs("rtcp").next().and_then(|v| v.split_whitespace().next()).and_then(|p| p.parse().ok())
    }

    /// The payload types with what they are, in the offer's order. Static
    /// types without an rtpmap get their RFC 3551 meaning.
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        let mut out = Vec::new();
        for f in &self.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            if pt > 127 {
                continue;
            }
            let mapped = self.attrs("rtpmap").find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then_some(rest.trim())
            });
            let (encoding, clock_rate, channels) = match mapped {
                Some(spec) => {
                    let mut parts = spec.split('/');
                    let enc = parts.next().unwrap_or("").to_string();
                    let Some(rate) = parts.next().and_then(|r| r.parse::<u32>().ok()) else { continue };
                    let ch = parts.next().and_then(|c| c.parse::<u8>().ok());
                    (enc, rate, ch)
                }
                None => match pt {
                    0 => ("PCMU".to_string(), 8000, None),
                    8 => ("PCMA".to_string(), 8000, None),
                    9 => ("G722".to_string(), 8000, None),
                    18 => ("G729".to_string(), 8000, None),
                    _ => continue,
                },
            };
            let fmtp = self.attrs("fmtp").find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
            });
            out.push(RtpMap { pt, encoding, clock_rate, channels, fmtp });
        }
        out
    }

    /// Keep only the payload types in `keep` (in the order given), with
    /// their rtpmap/fmtp lines; drop the others' lines.
    pub fn retain_formats(&mut self, keep: &[u8]) {
        self.formats = keep.iter().map(|p| p.to_string()).collect();
        self.lines.retain(|(k, v)| {
            if *k != 'a' {
                return true;
            }
            let Some((name, rest)) = v.split_once(':') else { return true };
            if !matches!(name, "rtpmap" | "fmtp" | "rtcp-fb") {
                return true;
            }
            match rest.split_whitespace().next().and_then(|p| p.parse::<u8>().ok()) {
                Some(pt) => keep.contains(&pt),
                None => true,
            }
        });
    }

    /// Replace every payload type with `maps` (rtpmap and fmtp written for
    /// each).
    pub fn set_formats(&mut self, maps: &[RtpMap]) {
        self.formats = maps.iter().map(|m| m.pt.to_string()).collect();
        self.remove_attrs("rtpmap");
        self.remove_attrs("fmtp");
        self.remove_attrs("rtcp-fb");
        // rtpmap lines go first among the attributes, as most stacks print them.
        let first_a = self.lines.iter().position(|(k, _)| *k == 'a').unwrap_or(self.lines.len());
        let mut new_lines = Vec::new();
        for m in maps {
            let ch = m.channels.map(|c| format!("/{c}")).unwrap_or_default();
            new_lines.push(('a', format!("rtpmap:{} {}/{}{}", m.pt, m.encoding, m.clock_rate, ch)));
            if let Some(f) = &m.fmtp {
                new_lines.push(('a', format!("fmtp:{} {}", m.pt, f)));
            }
        }
        self.lines.splice(first_a..first_a, new_lines);
    }
}

fn parse_m_line(v: &str) -> Option<Media> {
    let mut it = v.split_whitespace();
    let kind = it.next()?.to_string();
    let port_spec = it.next()?;
    // "port/count" (RFC 4566 §5.14): only the base port matters here.
    let port = port_spec.split('/').next()?.parse::<u16>().ok()?;
    let proto = it.next()?.to_string();
    let formats: Vec<String> = it.map(str::to_string).collect();
    if formats.is_empty() || formats.len() > 64 {
        return None;
    }
    Some(Media { kind, port, proto, formats, lines: Vec::new() })
}

fn parse_c_line(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    if it.next()? != "IN" {
        return None;
    }
    let fam = it.next()?;
    // "addr/ttl" for multicast: the address part only.
    let addr = it.next()?.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (fam, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

fn c_line(addr: IpAddr) -> String {
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!("IN {fam} {addr}")
}

fn replace_origin_addr(o: &str, addr: IpAddr) -> String {
    let parts: Vec<&str> = o.split_whitespace().collect();
    if parts.len() != 6 {
        return o.to_string();
    }
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!("{} {} {} IN {} {}", parts[0], parts[1], parts[2], fam, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 96 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\na=rtcp-mux\r\n";

    #[test]
    fn parses_and_prints_back_unchanged() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(sdp.to_bytes()).unwrap(), OFFER);
        assert_eq!(sdp.audio_index(), Some(0));
        assert_eq!(sdp.media_addr(0), Some("10.0.0.1".parse().unwrap()));
        let maps = sdp.media[0].rtpmaps();
        assert_eq!(maps.iter().map(|m| (m.pt, m.encoding.as_str(), m.clock_rate)).collect::<Vec<_>>(), vec![
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (96, "opus", 48000),
            (101, "telephone-event", 8000)
        ]);
        assert_eq!(maps[2].fmtp.as_deref(), Some("useinbandfec=1"));
        assert!(sdp.media[0].rtcp_mux());
        assert_eq!(sdp.media[0].direction(), Direction::SendRecv);
    }

    #[test]
    fn rewrites_address_direction_and_formats() {
        let mut sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        sdp.set_connection("192.0.2.5".parse().unwrap());
        sdp.media[0].port = 30000;
        sdp.media[0].set_direction(Direction::SendOnly);
        sdp.media[0].retain_formats(&[8, 101]);
        let text = String::from_utf8(sdp.to_bytes()).unwrap();
        assert!(text.contains("o=alice 2890844526 2890844526 IN IP4 192.0.2.5\r\n"));
        assert!(text.contains("c=IN IP4 192.0.2.5\r\n"));
        assert!(text.contains("m=audio 30000 RTP/AVP 8 101\r\n"));
        assert!(!text.contains("opus"));
        assert!(text.contains("a=fmtp:101 0-16"));
        assert!(text.contains("a=sendonly\r\n") && !text.contains("sendrecv"));
        let back = Sdp::parse(text.as_bytes()).unwrap();
        assert_eq!(back.media[0].direction(), Direction::SendOnly);
    }

    #[test]
    fn media_level_connection_and_hold_address() {
        let body = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:4005\r\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(sdp.media_addr(0), Some("0.0.0.0".parse().unwrap()));
        assert_eq!(sdp.media[0].rtcp_port(), Some(4005));
        assert_eq!(sdp.media[0].rtpmaps()[0].encoding, "PCMU");
    }

    #[test]
    fn bad_sdp_is_an_error_not_a_panic() {
        for bad in [
            "",
            "x",
            "v=1\r\n",
            "o=a\r\n",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
            "v=0\r\nm=audio 1 RTP/AVP\r\n",
            "v=0\r\nc=IN IP4 notanaddress\r\n",
            "v=0\r\nc=IN IP6 1.2.3.4\r\n",
            "v=0\r\nA=x\r\n",
            "v=0\r\na=\u{1}\r\n",
        ] {
            assert!(Sdp::parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert_eq!(Sdp::parse(&[0xff, 0xfe]), Err(SdpError::NotUtf8));
        let many = format!("v=0\r\n{}", "a=x\r\n".repeat(MAX_LINES + 1));
        assert_eq!(Sdp::parse(many.as_bytes()), Err(SdpError::TooLarge));
        // Truncations of a good SDP never panic.
        for cut in 0..OFFER.len() {
            let _ = Sdp::parse(&OFFER.as_bytes()[..cut]);
        }
    }
}
