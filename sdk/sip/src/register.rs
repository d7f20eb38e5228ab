//! What a REGISTER asks for (RFC 3261 §10.3): the contacts to bind or
//! remove, their expiry, RFC 5626 instance ids and RFC 8599 push parameters.

use crate::error::Rejection;
use crate::message::{parse_list, Request};
use ezk_sip_types::header::typed::Contact;
use ezk_sip_types::print::AppendCtx;
use crate::headers::Name;

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactBinding {
    /// The contact URI as it will be returned and used (without <>).
    pub uri: String,
    /// The `expires` parameter, when given.
    pub expires: Option<u32>,
    /// `+sip.instance` (RFC 5626), quotes removed.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// RFC 8599 push parameters (URI parameters of the contact).
    pub pn_provider: Option<String>,
    pub pn_prid: Option<String>,
    pub pn_param: Option<String>,
    /// Header parameters other than expires, kept to echo back (`;q=..`).
    pub q: Option<String>,
}

impl ContactBinding {
    /// What identifies "the same device" for replacing a binding: the
    /// instance id (and reg-id) when present, otherwise the URI.
    pub fn device_key(&self) -> String {
        match (&self.instance, self.reg_id) {
            (Some(i), Some(r)) => format!("instance:{i};reg-id={r}"),
            (Some(i), None) => format!("instance:{i}"),
            _ => format!("uri:{}", self.uri),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRequest {
    /// No Contact: a query for the current bindings.
    Query,
    /// `Contact: *` with `Expires: 0`: remove all.
    RemoveAll,
    Bindings(Vec<ContactBinding>),
}

/// Parse the Contacts and Expires of a REGISTER. Errors carry the 400 to send.
pub fn parse_register(req: &Request) -> Result<(ContactRequest, Option<u32>), Rejection> {
    // The address-of-record must be a SIP URI (RFC 4475 §3.3.4).
    if !req.core.to.is_sip() {
        return Err(Rejection::new(400, "Bad Request (To is not a SIP URI)"));
    }
    let expires = match req.headers.get_raw(&Name::EXPIRES).next() {
        None => None,
        Some(v) => Some(parse_delta(v).ok_or_else(|| Rejection::new(400, "Bad Request (Expires)"))?),
    };
    let raws: Vec<_> = req.headers.get_raw(&Name::CONTACT).collect();
    if raws.is_empty() {
        return Ok((ContactRequest::Query, expires));
    }
    if raws.iter().any(|r| r.trim() == "*") {
        if raws.len() != 1 || expires != Some(0) {
            return Err(Rejection::new(400, "Bad Request (Contact: * needs Expires: 0 and no other contact)"));
        }
        return Ok((ContactRequest::RemoveAll, expires));
    }
    let mut out = Vec::new();
    for raw in raws {
        let contacts = parse_list::<Contact>(raw).map_err(|_| Rejection::new(400, "Bad Request (Contact)"))?;
        for c in contacts {
            out.push(binding_from(&c)?);
        }
    }
    Ok((ContactRequest::Bindings(out), expires))
}

fn binding_from(c: &Contact) -> Result<ContactBinding, Rejection> {
    let uri = &c.uri.uri;
    let get_uri_param = |n: &str| uri.uri_params.get_val(n).map(|v| v.to_string());
    let expires = match c.params.get_val("expires") {
        None => None,
        Some(v) => Some(parse_delta(v).ok_or_else(|| Rejection::new(400, "Bad Request (Contact expires)"))?),
    };
    let reg_id = match c.params.get_val("reg-id") {
        None => None,
        Some(v) => Some(v.trim().parse().map_err(|_| Rejection::new(400, "Bad Request (reg-id)"))?),
    };
    Ok(ContactBinding {
        uri: uri.default_print_ctx().to_string(),
        expires,
        instance: c.params.get_val("+sip.instance").map(|v| v.trim_matches('"').to_string()),
        reg_id,
        pn_provider: get_uri_param("pn-provider"),
        pn_prid: get_uri_param("pn-prid"),
        pn_param: get_uri_param("pn-param"),
        q: c.params.get_val("q").map(|v| v.to_string()),
    })
}

/// delta-seconds; values beyond 32 bits are taken as the largest (RFC 3261
/// §20.19 says such values mean "very long"; the registrar caps them).
fn parse_delta(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().map(|n| n.min(u32::MAX as u64) as u32).unwrap_or(u32::MAX))
}
