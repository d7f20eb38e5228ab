//! HTTP digest authentication for SIP (RFC 2617, RFC 8760): both the
//! verifying side (registrar) and the answering side (phones, trunks).
//!
//! Nonces are self-validating (timestamp + random + HMAC over both), so a
//! verifier needs no table to know a nonce is ours and how old it is; a small
//! table of the highest nonce-count seen per nonce stops replays. Time and
//! randomness are passed in.

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }
    pub fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// H(username:realm:password): what is stored instead of the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(&format!("{username}:{realm}:{password}"))
}

/// The stored secrets of one user, one HA1 per algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

impl StoredCredentials {
    pub fn from_password(username: &str, realm: &str, password: &str) -> Self {
        Self {
            ha1_md5: ha1(Algorithm::Md5, username, realm, password),
            ha1_sha256: ha1(Algorithm::Sha256, username, realm, password),
        }
    }
    fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// A parsed `Authorization` / `Proxy-Authorization` Digest header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

/// Parse an Authorization header value. `None` when the scheme is not Digest
/// or a required parameter is missing (treated as "no credentials").
pub fn parse_authorization(value: &str) -> Option<DigestCredentials> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c = DigestCredentials::default();
    for (k, v) in parse_params(rest)? {
        match k.to_ascii_lowercase().as_str() {
            "username" => c.username = v,
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "uri" => c.uri = v,
            "response" => c.response = v,
            "algorithm" => c.algorithm = Some(v),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "opaque" => c.opaque = Some(v),
            _ => {}
        }
    }
    if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() || c.uri.is_empty() {
        return None;
    }
    Some(c)
}

/// `a=b, c="d, e"` → pairs; `None` on broken quoting.
pub fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[start..i].trim().to_string();
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i)? {
                    b'\\' => {
                        v.push(*b.get(i + 1)? as char);
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => {
                        // Quoted text may be UTF-8: copy whole characters.
                        let ch = s[i..].chars().next()?;
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[start..i].trim().to_string()
        };
        out.push((key, value));
    }
    Some(out)
}

/// Outcome of checking credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Correct credentials with a fresh nonce.
    Ok,
    /// Correct response, but the nonce expired: challenge again with
    /// `stale=true` so the phone retries without asking its user.
    Stale,
    /// Wrong response, replayed nonce-count, foreign nonce or realm.
    Failed(&'static str),
}

#[derive(Debug)]
struct NonceUse {
    issued: u64,
    /// Highest nonce-count accepted so far.
    max_nc: u32,
    /// Whether the nonce was used without qop (then it is single-use).
    used_without_qop: bool,
}

/// Issues challenges and checks answers for one realm.
pub struct DigestVerifier {
    realm: String,
    secret: [u8; 32],
    nonce_lifetime_secs: u64,
    algorithms: Vec<Algorithm>,
    /// Keyed by the nonce's MAC (128 bits, unique per nonce we issued):
    /// a registration storm keeps one small entry per nonce in use.
    seen: HashMap<u128, NonceUse>,
    last_prune: u64,
}

type HmacSha256 = Hmac<Sha256>;

impl DigestVerifier {
    /// `algorithms` is the order challenges are offered in: older phones and
    /// SIPp read only the first header, so MD5 first is the compatible
    /// choice; SHA-256 first is the strict one (RFC 8760 §2.4).
    pub fn new(realm: &str, secret: [u8; 32], nonce_lifetime_secs: u64, algorithms: Vec<Algorithm>) -> Self {
        Self { realm: realm.to_string(), secret, nonce_lifetime_secs, algorithms, seen: HashMap::new(), last_prune: 0 }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, body: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A nonce for `now` (unix seconds) and 16 random octets.
    pub fn new_nonce(&self, now: u64, random: [u8; 16]) -> String {
        let body = format!("{now:x}.{}", hex::encode(random));
        let mac = self.mac(&body);
        format!("{body}.{mac}")
    }

    /// When the nonce was issued, if it is ours.
    fn nonce_time(&self, nonce: &str) -> Option<u64> {
        let (body, mac) = nonce.rsplit_once('.')?;
        // Constant-time enough: both are fixed-length hex strings of ours.
        let expect = self.mac(body);
        if expect.len() != mac.len() || !expect.bytes().zip(mac.bytes()).fold(true, |ok, (a, b)| ok & (a == b)) {
            return None;
        }
        u64::from_str_radix(body.split('.').next()?, 16).ok()
    }

    /// The WWW-Authenticate values for a 401, one per algorithm.
    pub fn challenges(&self, now: u64, random: [u8; 16], stale: bool) -> Vec<String> {
        let nonce = self.new_nonce(now, random);
        self.algorithms
            .iter()
            .map(|alg| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"{}",
                    self.realm,
                    nonce,
                    alg.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    /// Check `creds` for a request with `method`. `stored` is `None` for an
    /// unknown user: the work done and the answer are the same as for a
    /// wrong password, so the two cannot be told apart.
    pub fn verify(&mut self, now: u64, method: &str, creds: &DigestCredentials, stored: Option<&StoredCredentials>) -> Verdict {
        let Some(alg) = Algorithm::from_name(creds.algorithm.as_deref().unwrap_or("MD5")) else {
            return Verdict::Failed("unsupported algorithm");
        };
        if !self.algorithms.contains(&alg) {
            return Verdict::Failed("algorithm not offered");
        }
        if creds.realm != self.realm {
            return Verdict::Failed("wrong realm");
        }
        let Some(issued) = self.nonce_time(&creds.nonce) else {
            // Most often a nonce from before a restart (the key is new each
            // start): ask again with a fresh nonce; it proves nothing either
            // way, so it is not a failure.
            return Verdict::Stale;
        };
        let dummy;
        let ha1 = match stored {
            Some(s) => s.ha1(alg),
            None => {
                dummy = alg.hash_hex(&format!("{}:{}:\u{0}", creds.username, self.realm));
                &dummy
            }
        };
        let ha2 = alg.hash_hex(&format!("{method}:{}", creds.uri));
        let (expected, nc) = match creds.qop.as_deref() {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc_s), Some(cnonce)) = (creds.nc.as_deref(), creds.cnonce.as_deref()) else {
                    return Verdict::Failed("qop without nc/cnonce");
                };
                let Ok(nc) = u32::from_str_radix(nc_s, 16) else { return Verdict::Failed("bad nc") };
                (alg.hash_hex(&format!("{ha1}:{}:{nc_s}:{cnonce}:auth:{ha2}", creds.nonce)), Some(nc))
            }
            Some(_) => return Verdict::Failed("unsupported qop"),
            None => (alg.hash_hex(&format!("{ha1}:{}:{ha2}", creds.nonce)), None),
        };
        let matches = expected.len() == creds.response.len()
            && expected.bytes().zip(creds.response.to_ascii_lowercase().bytes()).fold(true, |ok, (a, b)| ok & (a == b));
        if stored.is_none() || !matches {
            return Verdict::Failed("wrong credentials");
        }
        if now.saturating_sub(issued) > self.nonce_lifetime_secs || issued > now + 60 {
            return Verdict::Stale;
        }
        // Replay protection: each nonce-count is accepted once, rising.
        self.prune(now);
        let key = nonce_key(&creds.nonce);
        let entry = self.seen.entry(key).or_insert(NonceUse { issued, max_nc: 0, used_without_qop: false });
        match nc {
            Some(nc) if nc > entry.max_nc => entry.max_nc = nc,
            Some(_) => return Verdict::Failed("nonce-count replayed"),
            None if entry.used_without_qop => return Verdict::Stale,
            None => entry.used_without_qop = true,
        }
        Verdict::Ok
    }

    /// Forget nonces past their lifetime, at most once a second: the table
    /// holds one entry per nonce in use, so a scan per request would cost
    /// O(registrations in flight) each time.
    fn prune(&mut self, now: u64) {
        if now != self.last_prune {
            self.last_prune = now;
            let life = self.nonce_lifetime_secs;
            self.seen.retain(|_, u| now.saturating_sub(u.issued) <= life);
        }
    }

    /// Nonces currently tracked for replay protection.
    pub fn tracked_nonces(&self) -> usize {
        self.seen.len()
    }
}

/// The table key of a nonce we issued (its MAC is 32 hex digits, checked
/// before this is called).
fn nonce_key(nonce: &str) -> u128 {
    nonce.rsplit_once('.').and_then(|(_, mac)| u128::from_str_radix(mac, 16).ok()).unwrap_or(0)
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, Default)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub stale: bool,
}

pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c = Challenge::default();
    for (k, v) in parse_params(rest)? {
        match k.to_ascii_lowercase().as_str() {
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "algorithm" => c.algorithm = Some(v),
            "qop" => c.qop = Some(v),
            "opaque" => c.opaque = Some(v),
            "stale" => c.stale = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    (!c.nonce.is_empty()).then_some(c)
}

/// The client side: the Authorization value answering `challenge`.
/// `cnonce` comes from the caller (randomness is injected); `nc` counts
/// uses of this nonce, from 1.
pub fn answer_challenge(
    challenge: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Option<String> {
    let alg = Algorithm::from_name(challenge.algorithm.as_deref().unwrap_or("MD5"))?;
    let ha1 = ha1(alg, username, &challenge.realm, password);
    let ha2 = alg.hash_hex(&format!("{method}:{uri}"));
    let use_qop = challenge.qop.as_deref().is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    let mut v = format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
        challenge.realm,
        challenge.nonce,
        alg.name()
    );
    if use_qop {
        let nc = format!("{nc:08x}");
        let resp = alg.hash_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", challenge.nonce));
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{resp}\""));
    } else {
        let resp = alg.hash_hex(&format!("{ha1}:{}:{ha2}", challenge.nonce));
        v.push_str(&format!(", response=\"{resp}\""));
    }
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> DigestVerifier {
        DigestVerifier::new("tsunagu", [7; 32], 300, vec![Algorithm::Md5, Algorithm::Sha256])
    }

    fn answer(v: &DigestVerifier, alg: &str, now: u64, password: &str, nc: u32) -> DigestCredentials {
        let challenges = v.challenges(now, [1; 16], false);
        let ch = challenges.iter().map(|c| parse_challenge(c).unwrap()).find(|c| c.algorithm.as_deref() == Some(alg)).unwrap();
        parse_authorization(&answer_challenge(&ch, "REGISTER", "sip:tsunagu", "1001", password, "abc", nc).unwrap()).unwrap()
    }

    #[test]
    fn rfc2617_example_md5() {
        // RFC 2617 §3.5 (HTTP): the published response value.
        let ha1 = ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        let ha2 = Algorithm::Md5.hash_hex("GET:/dir/index.html");
        let r = Algorithm::Md5.hash_hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"));
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_example_sha256() {
        // RFC 7616 §3.9.1: SHA-256 response for the same user.
        let ha1 = ha1(Algorithm::Sha256, "Mufasa", "http-auth@example.org", "Circle of Life");
        let ha2 = Algorithm::Sha256.hash_hex("GET:/dir/index.html");
        let r = Algorithm::Sha256.hash_hex(&format!(
            "{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}"
        ));
        assert_eq!(r, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    #[test]
    fn both_algorithms_verify() {
        let mut v = verifier();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        for (i, alg) in ["MD5", "SHA-256"].into_iter().enumerate() {
            // A fresh challenge (nonce) per algorithm.
            let c = answer(&v, alg, 1000 + i as u64, "pw", 1);
            assert_eq!(v.verify(1001, "REGISTER", &c, Some(&stored)), Verdict::Ok, "{alg}");
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let mut v = verifier();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        let c = answer(&v, "MD5", 1000, "nope", 1);
        assert_eq!(v.verify(1000, "REGISTER", &c, Some(&stored)), Verdict::Failed("wrong credentials"));
        assert_eq!(v.verify(1000, "REGISTER", &c, None), Verdict::Failed("wrong credentials"));
    }

    #[test]
    fn expired_nonce_is_stale_and_replay_is_refused() {
        let mut v = verifier();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        let c = answer(&v, "MD5", 1000, "pw", 1);
        assert_eq!(v.verify(1000 + 301, "REGISTER", &c, Some(&stored)), Verdict::Stale);
        assert_eq!(v.verify(1010, "REGISTER", &c, Some(&stored)), Verdict::Ok);
        assert_eq!(v.verify(1011, "REGISTER", &c, Some(&stored)), Verdict::Failed("nonce-count replayed"));
        let c2 = answer(&v, "MD5", 1000, "pw", 2);
        assert_eq!(v.verify(1012, "REGISTER", &c2, Some(&stored)), Verdict::Ok);
    }

    #[test]
    fn foreign_nonce_is_challenged_again() {
        let mut v = verifier();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        let mut c = answer(&v, "MD5", 1000, "pw", 1);
        c.nonce = c.nonce.replace('a', "b");
        // Not ours (forged, or from before a restart): a fresh challenge,
        // never an Ok.
        assert_eq!(v.verify(1000, "REGISTER", &c, Some(&stored)), Verdict::Stale);
    }

    #[test]
    fn old_nonces_are_forgotten() {
        let mut v = verifier();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        for t in 0..10 {
            let c = answer(&v, "MD5", 1000 + t, "pw", 1);
            assert_eq!(v.verify(1000 + t, "REGISTER", &c, Some(&stored)), Verdict::Ok);
        }
        assert_eq!(v.tracked_nonces(), 10);
        let c = answer(&v, "MD5", 2000, "pw", 1);
        assert_eq!(v.verify(2000, "REGISTER", &c, Some(&stored)), Verdict::Ok);
        assert_eq!(v.tracked_nonces(), 1);
    }

    #[test]
    fn params_parser_handles_quotes_and_garbage() {
        assert_eq!(parse_params(r#"a="x, y", b=z"#).unwrap(), vec![("a".into(), "x, y".into()), ("b".into(), "z".into())]);
        assert!(parse_params(r#"a="unterminated"#).is_none());
        assert!(parse_params("novalue").is_none());
        assert!(parse_authorization("NoOneKnowsThisScheme opaque-data=here").is_none());
    }
}
