//! Checks a UAS (the PBX, a phone) makes on a well-formed request before it
//! acts on it (RFC 3261 §8.2), each mapped to the response it deserves.

use crate::error::Rejection;
use crate::message::{Request, UriScheme, KNOWN_METHODS};
use crate::headers::Name;

/// What this UAS understands.
#[derive(Debug, Clone)]
pub struct UasPolicy {
    /// Option tags accepted in Require / Proxy-Require.
    pub supported_extensions: Vec<String>,
    /// Body types it can read (Content-Type), lower case.
    pub accepted_body_types: Vec<String>,
    /// Body types it can answer in, for INVITE's Accept check.
    pub answer_types: Vec<String>,
}

impl Default for UasPolicy {
    fn default() -> Self {
        Self {
            // Only what is implemented: a Require for anything else gets 420.
            supported_extensions: vec!["outbound".to_string()],
            accepted_body_types: ["application/sdp", "multipart/mixed"].map(String::from).to_vec(),
            answer_types: ["application/sdp"].map(String::from).to_vec(),
        }
    }
}

pub fn is_known_method(method: &str) -> bool {
    KNOWN_METHODS.contains(&method)
}

/// The RFC 3261 §8.2 checks, in the order the RFC gives them.
pub fn check_request(req: &Request, policy: &UasPolicy) -> Result<(), Rejection> {
    let method = req.method.as_str();
    // §8.2.1: an unknown method gets 501, even when its CSeq disagrees
    // (RFC 4475 §3.1.2.18 prefers 501).
    if !is_known_method(method) {
        return Err(Rejection::new(501, "Not Implemented").with_header("Allow", KNOWN_METHODS.join(", ")));
    }
    if req.core.cseq.method != method {
        return Err(Rejection::new(400, "Bad Request (CSeq method does not match the request)"));
    }
    if req.core.top_branch() == Some("z9hG4bK") {
        return Err(Rejection::new(400, "Bad Request (Via branch has no transaction id)"));
    }
    // §8.2.2.1
    if let UriScheme::Other(_) = req.uri.scheme {
        return Err(Rejection::new(416, "Unsupported URI Scheme"));
    }
    // §8.2.2.3: ACK and CANCEL never carry Require checks.
    if method != "ACK" && method != "CANCEL" {
        let unsupported: Vec<String> = [Name::REQUIRE, Name::PROXY_REQUIRE]
            .iter()
            .flat_map(|n| req.headers.get_raw(n))
            .flat_map(|v| v.split(','))
            .map(|t| t.trim())
            .filter(|t| !t.is_empty() && !policy.supported_extensions.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .map(str::to_string)
            .collect();
        if !unsupported.is_empty() {
            return Err(Rejection::new(420, "Bad Extension").with_header("Unsupported", unsupported.join(", ")));
        }
    }
    // §8.2.3
    if !req.body.is_empty() {
        let ctype = req
            .headers
            .get_raw(&Name::CONTENT_TYPE)
            .next()
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        match ctype {
            Some(t) if policy.accepted_body_types.iter().any(|a| *a == t) => {}
            _ => {
                return Err(Rejection::new(415, "Unsupported Media Type")
                    .with_header("Accept", policy.accepted_body_types.join(", ")))
            }
        }
    }
    if method == "INVITE" && req.headers.contains(&Name::ACCEPT) {
        let accepts = req
            .headers
            .get_raw(&Name::ACCEPT)
            .flat_map(|v| v.split(','))
            .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .any(|t| t == "*/*" || t == "application/*" || policy.answer_types.contains(&t));
        if !accepts {
            return Err(Rejection::new(406, "Not Acceptable").with_header("Accept", policy.answer_types.join(", ")));
        }
    }
    Ok(())
}
