//! Header storage: names canonicalised once at parse time (compact forms
//! expanded), values kept as received, in order. Lookups compare the
//! canonical text, which is what makes them cheap on the hot path: each
//! REGISTER is looked into a few dozen times.

use bytesstr::BytesStr;
use std::borrow::Cow;
use std::fmt;

/// A header name in its canonical spelling ("Via", "Call-ID"); unknown
/// names keep the spelling they arrived with and compare ignoring case.
#[derive(Debug, Clone)]
pub struct Name(Cow<'static, str>);

macro_rules! names {
    ($($konst:ident = $canon:literal $(| $compact:literal)?;)+) => {
        impl Name {
            $(pub const $konst: Name = Name(Cow::Borrowed($canon));)+

            /// The canonical name for `text` (case-insensitive, compact
            /// forms of RFC 3261 §7.3.3 and RFC 3515/3841 expanded).
            pub fn parse(text: &str) -> Name {
                $(
                    if text.eq_ignore_ascii_case($canon) $(|| text.eq_ignore_ascii_case($compact))? {
                        return Name::$konst;
                    }
                )+
                Name(Cow::Owned(text.to_string()))
            }
        }
    };
}

names! {
    ACCEPT = "Accept";
    ACCEPT_CONTACT = "Accept-Contact" | "a";
    ALERT_INFO = "Alert-Info";
    ALLOW = "Allow";
    ALLOW_EVENTS = "Allow-Events" | "u";
    AUTHORIZATION = "Authorization";
    CALL_ID = "Call-ID" | "i";
    CONTACT = "Contact" | "m";
    CONTENT_DISPOSITION = "Content-Disposition";
    CONTENT_ENCODING = "Content-Encoding" | "e";
    CONTENT_LENGTH = "Content-Length" | "l";
    CONTENT_TYPE = "Content-Type" | "c";
    CSEQ = "CSeq";
    DATE = "Date";
    EVENT = "Event" | "o";
    EXPIRES = "Expires";
    FROM = "From" | "f";
    MAX_FORWARDS = "Max-Forwards";
    MIN_EXPIRES = "Min-Expires";
    P_ASSERTED_IDENTITY = "P-Asserted-Identity";
    PATH = "Path";
    PRIVACY = "Privacy";
    PROXY_AUTHENTICATE = "Proxy-Authenticate";
    PROXY_AUTHORIZATION = "Proxy-Authorization";
    PROXY_REQUIRE = "Proxy-Require";
    RACK = "RAck";
    RECORD_ROUTE = "Record-Route";
    REFER_TO = "Refer-To" | "r";
    REFERRED_BY = "Referred-By" | "b";
    REJECT_CONTACT = "Reject-Contact" | "j";
    REPLACES = "Replaces";
    REQUEST_DISPOSITION = "Request-Disposition" | "d";
    REQUIRE = "Require";
    RETRY_AFTER = "Retry-After";
    ROUTE = "Route";
    RSEQ = "RSeq";
    SERVER = "Server";
    SESSION_EXPIRES = "Session-Expires" | "x";
    SUBJECT = "Subject" | "s";
    SUPPORTED = "Supported" | "k";
    TO = "To" | "t";
    UNSUPPORTED = "Unsupported";
    USER_AGENT = "User-Agent";
    VIA = "Via" | "v";
    WARNING = "Warning";
    WWW_AUTHENTICATE = "WWW-Authenticate";
}

impl Name {
    pub fn as_print_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        // Canonical names are spelled identically; only unknown names can
        // differ in case. Length first: most mismatches end there.
        self.0.len() == other.0.len() && self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Name {}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name::parse(&s)
    }
}
impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::parse(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The headers of one message, one entry per value line (or per value
/// inserted), in order.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    entries: Vec<(Name, BytesStr)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n) }
    }

    /// Add a value after the existing ones (of any name).
    pub fn insert(&mut self, name: Name, value: impl Into<BytesStr>) {
        self.entries.push((name, value.into()));
    }

    /// The values of `name`, in order.
    pub fn get_raw<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a BytesStr> + 'a {
        self.entries.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &Name) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// Remove every value of `name`; what was there.
    pub fn remove(&mut self, name: &Name) -> Vec<BytesStr> {
        let mut removed = Vec::new();
        self.entries.retain(|(n, v)| {
            if n == name {
                removed.push(v.clone());
                false
            } else {
                true
            }
        });
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Name, &BytesStr)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Octets these headers take when printed.
    pub fn printed_len(&self) -> usize {
        self.entries.iter().map(|(n, v)| n.0.len() + v.len() + 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_variants_are_one_name() {
        assert_eq!(Name::parse("v"), Name::VIA);
        assert_eq!(Name::parse("VIA"), Name::VIA);
        assert_eq!(Name::parse("l").as_print_str(), "Content-Length");
        assert_eq!(Name::parse("X-Custom"), Name::parse("x-custom"));
        assert_ne!(Name::parse("C%6Fntact"), Name::CONTACT);
    }

    #[test]
    fn values_keep_their_order_per_name() {
        let mut h = Headers::new();
        h.insert(Name::VIA, "a");
        h.insert(Name::TO, "t");
        h.insert(Name::parse("v"), "b");
        assert_eq!(h.get_raw(&Name::VIA).map(|v| v.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.remove(&Name::VIA).len(), 2);
        assert!(!h.contains(&Name::VIA) && h.contains(&Name::TO));
    }
}
