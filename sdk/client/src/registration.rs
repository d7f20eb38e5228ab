//! One account's registration with its PBX (RFC 3261 §10.2), as a sans-IO
//! engine: the driver passes in responses, transport failures and the
//! time; it takes out REGISTER requests to send, events for the app and
//! when to wake up.
//!
//! What a phone on a mobile network needs from it:
//! - One Call-ID and From tag for the account's life and a CSeq that
//!   rises, so every REGISTER replaces the same binding (§10.2.4), also
//!   after a network change; with an RFC 5626 instance id and reg-id the
//!   registrar knows the new flow is the same device.
//! - RFC 8599 push parameters in the Contact, so a sleeping app can be
//!   woken for a call.
//! - Digest answers (RFC 2617/8760, MD5 or SHA-256), re-used for refreshes
//!   with a rising nonce count, so a refresh costs one round trip.
//! - 423 Interval Too Brief honoured; refreshes before expiry; after a
//!   failure a retry that backs off (doubling, with jitter, RFC 5626 §4.5)
//!   instead of hammering a registrar that is down.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tsunagu_sip::digest::{answer_challenge, parse_challenge, Challenge};
use tsunagu_sip::{parse_message, Framing, Limits, Message, Name, Request, Response, TransportKind};

/// What an account registers as.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The extension (user part of the address of record).
    pub user: String,
    pub password: String,
    /// The registrar's domain as written in the address of record and the
    /// Request-URI: `host` or `host:port`.
    pub domain: String,
    /// Registration lifetime asked for, seconds.
    pub expires: u32,
    /// RFC 5626 `+sip.instance`, e.g. `urn:uuid:…`; stable per installed app.
    pub instance_id: Option<String>,
    /// RFC 5626 `reg-id` of this flow (with an instance id).
    pub reg_id: Option<u32>,
    /// RFC 8599 push parameters, for an app that may sleep.
    pub push: Option<PushParams>,
    pub user_agent: String,
    /// First wait after a failure; doubled per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Register at all. False: talk to the server as a peer without a
    /// registrar (a desk-to-desk call without a PBX, or a test); calls
    /// still work, incoming ones only from that peer.
    pub register: bool,
}

impl RegistrationConfig {
    pub fn new(user: &str, password: &str, domain: &str) -> Self {
        RegistrationConfig {
            user: user.to_string(),
            password: password.to_string(),
            domain: domain.to_string(),
            expires: 600,
            instance_id: None,
            reg_id: None,
            push: None,
            user_agent: concat!("Tsunagu-SDK/", env!("CARGO_PKG_VERSION")).to_string(),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
            register: true,
        }
    }
}

/// RFC 8599 §4.1 Contact URI parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushParams {
    /// `apns`, `fcm`, …
    pub provider: String,
    /// The device's push token (pn-prid).
    pub prid: String,
    /// Provider-specific (for APNs: team id and topic).
    pub param: Option<String>,
}

/// The local end of the flow the REGISTER goes over: its transport and the
/// address written into Via and Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub transport: TransportKind,
    pub local: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    Idle,
    Registering,
    Registered { expires: u32 },
    /// The last attempt failed; another is scheduled.
    Failed { code: u16, reason: String },
    Unregistering,
    Unregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    Registered { expires: u32 },
    /// `code` 408 when nothing answered (or the flow broke).
    Failed { code: u16, reason: String, retry_in: Duration },
    Unregistered,
}

#[derive(Debug, Clone)]
pub enum RegOutput {
    /// Send this REGISTER over the current flow (as a client transaction).
    Send(Box<Request>),
    Event(RegEvent),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} contains characters not allowed there")]
    BadChars(&'static str),
    #[error("expires must be at least 1 second")]
    Expires,
}

/// A REGISTER in flight.
#[derive(Debug, Clone)]
struct Pending {
    branch: String,
    cseq: u32,
    unregister: bool,
    /// Challenges answered for this registration attempt.
    auth_rounds: u8,
}

/// The last challenge, answered again on refreshes with a rising count.
#[derive(Debug, Clone)]
struct Auth {
    challenge: Challenge,
    proxy: bool,
    nc: u32,
}

pub struct Registration {
    config: RegistrationConfig,
    flow: Option<Flow>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    rng: u64,
    state: RegState,
    pending: Option<Pending>,
    auth: Option<Auth>,
    /// Refresh or retry due.
    wake: Option<Instant>,
    /// Raised by 423 Interval Too Brief.
    expires: u32,
    failures: u32,
    out: VecDeque<RegOutput>,
}

impl Registration {
    /// `seed` should be random: Call-ID, tags, branches and cnonces come
    /// from it.
    pub fn new(config: RegistrationConfig, seed: u64) -> Result<Self, ConfigError> {
        check_token("user", &config.user)?;
        check_token("domain", &config.domain)?;
        if config.password.contains(['\r', '\n']) {
            return Err(ConfigError::BadChars("password"));
        }
        if config.expires == 0 {
            return Err(ConfigError::Expires);
        }
        if let Some(i) = &config.instance_id {
            check_token("instance_id", i)?;
        }
        if let Some(p) = &config.push {
            check_token("push provider", &p.provider)?;
            check_token("push prid", &p.prid)?;
            if let Some(v) = &p.param {
                check_token("push param", v)?;
            }
        }
        if config.user_agent.contains(['\r', '\n']) {
            return Err(ConfigError::BadChars("user_agent"));
        }
        let mut r = Registration {
            expires: config.expires,
            config,
            flow: None,
            call_id: String::new(),
            from_tag: String::new(),
            cseq: 0,
            rng: seed,
            state: RegState::Idle,
            pending: None,
            auth: None,
            wake: None,
            failures: 0,
            out: VecDeque::new(),
        };
        r.call_id = format!("{:016x}{:016x}", r.random(), r.random());
        r.from_tag = format!("{:012x}", r.random() >> 16);
        Ok(r)
    }

    pub fn config(&self) -> &RegistrationConfig {
        &self.config
    }

    pub fn state(&self) -> &RegState {
        &self.state
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Register now over `flow`: at start, and again at once when the
    /// network changed (the new flow replaces the old binding).
    pub fn register(&mut self, now: Instant, flow: Flow) {
        self.flow = Some(flow);
        self.state = RegState::Registering;
        self.send(now, false, 0);
    }

    /// Remove the binding (app closing, user signing out).
    pub fn unregister(&mut self, now: Instant) {
        if self.flow.is_none() {
            self.state = RegState::Unregistered;
            self.out.push_back(RegOutput::Event(RegEvent::Unregistered));
            return;
        }
        self.state = RegState::Unregistering;
        self.wake = None;
        self.send(now, true, 0);
    }

    /// A response to a request this engine sent (others are ignored).
    pub fn handle_response(&mut self, now: Instant, resp: &Response) {
        let Some(p) = self.pending.clone() else { return };
        if resp.core.top_branch() != Some(p.branch.as_str()) || resp.core.cseq.seq != p.cseq || resp.code < 200 {
            return;
        }
        self.pending = None;
        match resp.code {
            200..=299 if p.unregister => {
                self.state = RegState::Unregistered;
                self.wake = None;
                self.out.push_back(RegOutput::Event(RegEvent::Unregistered));
            }
            200..=299 => {
                let expires = self.granted_expires(resp).unwrap_or(self.expires).max(1);
                self.failures = 0;
                self.state = RegState::Registered { expires };
                self.wake = Some(now + refresh_after(expires));
                self.out.push_back(RegOutput::Event(RegEvent::Registered { expires }));
            }
            401 | 407 => {
                let name = if resp.code == 401 { Name::WWW_AUTHENTICATE } else { Name::PROXY_AUTHENTICATE };
                let challenges: Vec<Challenge> = resp.headers.get_raw(&name).filter_map(|v| parse_challenge(v)).collect();
                // The strongest algorithm offered that we know.
                let chosen = challenges
                    .iter()
                    .find(|c| c.algorithm.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("SHA-256")))
                    .or_else(|| challenges.iter().find(|c| c.algorithm.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("MD5"))))
                    .cloned();
                let stale = chosen.as_ref().is_some_and(|c| c.stale);
                match chosen {
                    // A second challenge for the same attempt that is not
                    // "stale" means the password was refused.
                    Some(c) if p.auth_rounds == 0 || stale => {
                        self.auth = Some(Auth { challenge: c, proxy: resp.code == 407, nc: 0 });
                        self.send(now, p.unregister, p.auth_rounds + 1);
                    }
                    Some(_) => self.fail(now, 403, "authentication failed (wrong user or password)"),
                    None => self.fail(now, resp.code, "no digest challenge we can answer"),
                }
            }
            423 => {
                let min = resp.headers.get_raw(&Name::MIN_EXPIRES).next().and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.expires && m <= 86_400 => {
                        self.expires = m;
                        self.send(now, p.unregister, p.auth_rounds);
                    }
                    _ => self.fail(now, 423, "interval too brief and no usable Min-Expires"),
                }
            }
            code => {
                let reason = resp.reason.clone();
                if p.unregister {
                    // Nothing more to do for a binding we are dropping.
                    self.state = RegState::Unregistered;
                    self.out.push_back(RegOutput::Event(RegEvent::Unregistered));
                } else {
                    self.fail(now, code, &reason);
                }
            }
        }
    }

    /// The REGISTER in flight got no answer (transaction timeout) or its
    /// flow broke: fail it and schedule a retry.
    pub fn handle_failure(&mut self, now: Instant, why: &str) {
        let Some(p) = self.pending.take() else { return };
        if p.unregister {
            self.state = RegState::Unregistered;
            self.out.push_back(RegOutput::Event(RegEvent::Unregistered));
        } else {
            self.fail(now, 408, why);
        }
    }

    /// The flow broke or a new one could not be opened, whether or not a
    /// REGISTER was in flight: try again after the backoff.
    pub fn flow_failed(&mut self, now: Instant, why: &str) {
        match self.pending.take() {
            Some(p) if p.unregister => {
                self.state = RegState::Unregistered;
                self.out.push_back(RegOutput::Event(RegEvent::Unregistered));
            }
            _ if matches!(self.state, RegState::Unregistered | RegState::Unregistering | RegState::Idle) => {}
            _ => self.fail(now, 408, why),
        }
    }

    /// The time given by [`Registration::poll_timeout`] came.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.wake.is_some_and(|w| w <= now) && self.pending.is_none() {
            self.wake = None;
            if matches!(self.state, RegState::Registered { .. } | RegState::Failed { .. }) && self.flow.is_some() {
                if matches!(self.state, RegState::Failed { .. }) {
                    self.state = RegState::Registering;
                }
                self.send(now, false, 0);
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<RegOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }

    fn fail(&mut self, now: Instant, code: u16, reason: &str) {
        self.failures = self.failures.saturating_add(1);
        let doubled = self.config.retry_base.saturating_mul(1u32 << self.failures.saturating_sub(1).min(16));
        let cap = doubled.min(self.config.retry_max);
        // 50–100 % of the wait, so phones that lost the registrar at the same
        // moment do not all come back at the same moment.
        let frac = 0.5 + (self.random() % 1000) as f64 / 2000.0;
        let retry_in = cap.mul_f64(frac).max(Duration::from_millis(100));
        self.state = RegState::Failed { code, reason: reason.to_string() };
        self.wake = Some(now + retry_in);
        self.out.push_back(RegOutput::Event(RegEvent::Failed { code, reason: reason.to_string(), retry_in }));
    }

    /// Lifetime the registrar granted our contact: its `expires` parameter
    /// in the 200's Contact list, else the Expires header.
    fn granted_expires(&self, resp: &Response) -> Option<u32> {
        let flow = self.flow?;
        let ours = |c: &str| match &self.config.instance_id {
            Some(i) => c.contains(i.as_str()),
            None => c.contains(&format!("@{}", flow.local)),
        };
        for raw in resp.headers.get_raw(&Name::CONTACT) {
            for c in split_contacts(raw) {
                if ours(c) {
                    if let Some(e) = param(c, "expires").and_then(|v| v.parse::<u32>().ok()) {
                        return Some(e);
                    }
                }
            }
        }
        resp.headers.get_raw(&Name::EXPIRES).next().and_then(|v| v.trim().parse().ok())
    }

    fn send(&mut self, now: Instant, unregister: bool, auth_rounds: u8) {
        let Some(flow) = self.flow else { return };
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let branch = format!("z9hG4bK{:016x}", self.random());
        let c = &self.config;
        let transport = flow.transport.via_name();
        let uri_transport = match flow.transport {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
            TransportKind::Tls => ";transport=tls",
            TransportKind::Ws => ";transport=ws",
        };
        let push = c
            .push
            .as_ref()
            .map(|p| format!(";pn-provider={};pn-prid={}{}", p.provider, p.prid, p.param.as_ref().map(|v| format!(";pn-param={v}")).unwrap_or_default()))
            .unwrap_or_default();
        let mut contact = format!("<sip:{}@{}{uri_transport}{push}>", c.user, flow.local);
        if let Some(i) = &c.instance_id {
            contact.push_str(&format!(";+sip.instance=\"<{i}>\""));
            if let Some(r) = c.reg_id {
                contact.push_str(&format!(";reg-id={r}"));
            }
        }
        let expires = if unregister { 0 } else { self.expires };
        let uri = format!("sip:{}", c.domain);
        let mut text = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{}@{}>;tag={}\r\nTo: <sip:{}@{}>\r\nCall-ID: {}\r\nCSeq: {} REGISTER\r\n\
             Contact: {contact};expires={expires}\r\nExpires: {expires}\r\nUser-Agent: {}\r\n",
            flow.local, c.user, c.domain, self.from_tag, c.user, c.domain, self.call_id, self.cseq, c.user_agent
        );
        if c.instance_id.is_some() && c.reg_id.is_some() {
            text.push_str("Supported: outbound, path\r\n");
        }
        let cnonce = format!("{:016x}", self.random());
        let c = &self.config;
        if let Some(a) = &mut self.auth {
            a.nc = a.nc.wrapping_add(1);
            if let Some(v) = answer_challenge(&a.challenge, "REGISTER", &uri, &c.user, &c.password, &cnonce, a.nc) {
                let name = if a.proxy { "Proxy-Authorization" } else { "Authorization" };
                text.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        // Every value was checked in `new`, so the request parses; should it
        // not, nothing is sent and the attempt fails like a lost one.
        match parse_message(text.as_bytes(), Framing::Datagram, &Limits::default()) {
            Ok(Message::Request(req)) => {
                self.pending = Some(Pending { branch, cseq: self.cseq, unregister, auth_rounds });
                self.out.push_back(RegOutput::Send(Box::new(req)));
            }
            _ => {
                self.pending = None;
                self.fail(now, 500, "could not build the REGISTER");
            }
        }
    }

    fn random(&mut self) -> u64 {
        crate::seed::splitmix64(&mut self.rng)
    }
}

/// When to refresh a binding that lasts `expires` seconds: a minute early
/// for long ones, halfway for short ones.
fn refresh_after(expires: u32) -> Duration {
    let secs = if expires > 120 { expires - 60 } else { expires / 2 };
    Duration::from_secs(u64::from(secs.max(1)))
}

/// Values go into header fields as they are: no separators, quotes,
/// whitespace or line breaks.
fn check_token(what: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() {
        return Err(ConfigError::Empty(what));
    }
    if v.chars().any(|ch| ch.is_whitespace() || ch.is_control() || matches!(ch, '<' | '>' | '"' | ';' | ',' | '\\')) {
        return Err(ConfigError::BadChars(what));
    }
    Ok(())
}

/// Contacts of one header value, split at commas outside <> and quotes.
fn split_contacts(v: &str) -> Vec<&str> {
    let (mut parts, mut start, mut angle, mut quote) = (Vec::new(), 0, false, false);
    for (i, ch) in v.char_indices() {
        match ch {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                parts.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(v[start..].trim());
    parts
}

/// A header parameter (after the `>` of the URI).
fn param<'a>(contact: &'a str, name: &str) -> Option<&'a str> {
    let params = contact.rsplit_once('>').map(|(_, p)| p).unwrap_or(contact);
    params.split(';').filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagu_sip::digest::{Algorithm, DigestVerifier, StoredCredentials, Verdict};
    use tsunagu_sip::response_to;

    fn flow(port: u16) -> Flow {
        Flow { transport: TransportKind::Udp, local: SocketAddr::from(([192, 0, 2, 10], port)) }
    }

    fn config() -> RegistrationConfig {
        let mut c = RegistrationConfig::new("1001", "pw-1001", "pbx.example.jp");
        c.expires = 300;
        c.instance_id = Some("urn:uuid:00000000-0000-4000-8000-000000000001".into());
        c.reg_id = Some(1);
        c.push = Some(PushParams { provider: "apns".into(), prid: "token123".into(), param: Some("TEAM.jp.city.phone.voip".into()) });
        c.retry_base = Duration::from_secs(10);
        c.retry_max = Duration::from_secs(60);
        c
    }

    fn sent(r: &mut Registration) -> Request {
        let mut req = None;
        while let Some(o) = r.poll_output() {
            if let RegOutput::Send(q) = o {
                req = Some(*q);
            }
        }
        req.expect("a REGISTER was sent")
    }

    fn events(r: &mut Registration) -> Vec<RegEvent> {
        let mut v = Vec::new();
        while let Some(o) = r.poll_output() {
            if let RegOutput::Event(e) = o {
                v.push(e);
            }
        }
        v
    }

    fn header(req: &Request, name: Name) -> String {
        req.headers.get_raw(&name).next().map(|v| v.to_string()).unwrap_or_default()
    }

    /// A registrar that challenges, then accepts and grants `grant` seconds.
    struct Registrar {
        verifier: DigestVerifier,
        stored: StoredCredentials,
        now: u64,
        grant: u32,
    }

    impl Registrar {
        fn new(password: &str) -> Self {
            Registrar {
                verifier: DigestVerifier::new("tsunagu", [9; 32], 300, vec![Algorithm::Md5, Algorithm::Sha256]),
                stored: StoredCredentials::from_password("1001", "tsunagu", password),
                now: 1_000_000,
                grant: 120,
            }
        }

        fn answer(&mut self, req: &Request) -> Response {
            let creds = req.headers.get_raw(&Name::AUTHORIZATION).filter_map(|v| tsunagu_sip::digest::parse_authorization(v)).next();
            let ok = creds.map(|c| self.verifier.verify(self.now, "REGISTER", &c, Some(&self.stored)));
            match ok {
                Some(Verdict::Ok) => {
                    let mut resp = response_to(req, 200, Some("reg"));
                    let contact = header(req, Name::CONTACT);
                    let contact = contact.rsplit_once(";expires=").map(|(c, _)| c.to_string()).unwrap_or(contact);
                    resp.headers.insert(Name::CONTACT, format!("<sip:other@198.51.100.1>;expires=3600, {contact};expires={}", self.grant));
                    resp
                }
                Some(Verdict::Stale) | None | Some(Verdict::Failed(_)) => {
                    let stale = matches!(ok, Some(Verdict::Stale));
                    let mut resp = response_to(req, 401, Some("reg"));
                    for c in self.verifier.challenges(self.now, [3; 16], stale) {
                        resp.headers.insert(Name::WWW_AUTHENTICATE, c);
                    }
                    resp
                }
            }
        }
    }

    #[test]
    fn registers_with_digest_push_and_outbound_then_refreshes_with_one_round_trip() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 7).unwrap();
        let mut reg = Registrar::new("pw-1001");
        r.register(t0, flow(5060));
        let first = sent(&mut r);
        let contact = header(&first, Name::CONTACT);
        assert!(contact.contains("pn-provider=apns;pn-prid=token123;pn-param=TEAM.jp.city.phone.voip"), "{contact}");
        assert!(contact.contains("+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\";reg-id=1"), "{contact}");
        assert!(contact.ends_with(";expires=300"), "{contact}");
        assert_eq!(header(&first, Name::SUPPORTED), "outbound, path");
        assert_eq!(first.uri.raw, "sip:pbx.example.jp");

        let challenge = reg.answer(&first);
        assert_eq!(challenge.code, 401);
        r.handle_response(t0, &challenge);
        let second = sent(&mut r);
        assert!(header(&second, Name::AUTHORIZATION).contains("algorithm=SHA-256"), "the stronger algorithm is chosen");
        assert_eq!(second.core.call_id, first.core.call_id);
        assert_eq!(second.core.cseq.seq, first.core.cseq.seq + 1);
        assert_ne!(second.core.top_branch(), first.core.top_branch());
        r.handle_response(t0, &reg.answer(&second));
        assert_eq!(events(&mut r), vec![RegEvent::Registered { expires: 120 }], "our contact's expires, not the other's");
        assert_eq!(r.state(), &RegState::Registered { expires: 120 });
        // Refresh halfway through a short binding, answered at once with the
        // same nonce and a higher nonce count.
        let due = r.poll_timeout().unwrap();
        assert_eq!(due - t0, Duration::from_secs(60));
        r.handle_timeout(due);
        let refresh = sent(&mut r);
        let auth = header(&refresh, Name::AUTHORIZATION);
        assert!(auth.contains("nc=00000002"), "{auth}");
        r.handle_response(due, &reg.answer(&refresh));
        assert_eq!(events(&mut r), vec![RegEvent::Registered { expires: 120 }]);
    }

    #[test]
    fn a_wrong_password_fails_and_retries_later_with_backoff() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 1).unwrap();
        let mut reg = Registrar::new("another-password");
        r.register(t0, flow(5060));
        let req = sent(&mut r);
        r.handle_response(t0, &reg.answer(&req));
        let req = sent(&mut r);
        r.handle_response(t0, &reg.answer(&req));
        let ev = events(&mut r);
        let RegEvent::Failed { code, retry_in, .. } = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(*code, 403);
        assert!(*retry_in >= Duration::from_secs(5) && *retry_in <= Duration::from_secs(10), "{retry_in:?}");
        // Nothing is sent until the retry is due; then once more.
        assert!(r.poll_output().is_none());
        let mut waits = vec![*retry_in];
        for _ in 0..5 {
            let at = r.poll_timeout().unwrap();
            r.handle_timeout(at);
            let req = sent(&mut r);
            r.handle_response(at, &reg.answer(&req));
            let req = sent(&mut r);
            r.handle_response(at, &reg.answer(&req));
            let Some(RegEvent::Failed { retry_in, .. }) = events(&mut r).pop() else { panic!() };
            waits.push(retry_in);
        }
        assert!(waits[1] > waits[0] / 2 && waits.iter().all(|w| *w <= Duration::from_secs(60)), "doubling up to the cap: {waits:?}");
    }

    #[test]
    fn no_answer_fails_with_408_and_a_network_change_registers_the_new_flow_at_once() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 2).unwrap();
        r.register(t0, flow(5060));
        let _ = sent(&mut r);
        r.handle_failure(t0 + Duration::from_secs(32), "timeout");
        assert!(matches!(events(&mut r)[..], [RegEvent::Failed { code: 408, .. }]));
        // Wi-Fi -> LTE: register over the new flow now, not at the retry time.
        r.register(t0 + Duration::from_secs(33), flow(40000));
        let req = sent(&mut r);
        assert!(header(&req, Name::CONTACT).contains("@192.0.2.10:40000"));
        assert!(header(&req, Name::VIA).contains("192.0.2.10:40000"));
    }

    #[test]
    fn a_lost_flow_while_registered_schedules_a_retry() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 5).unwrap();
        let mut reg = Registrar::new("pw-1001");
        r.register(t0, flow(5060));
        let req = sent(&mut r);
        r.handle_response(t0, &reg.answer(&req));
        let req = sent(&mut r);
        r.handle_response(t0, &reg.answer(&req));
        events(&mut r);
        r.flow_failed(t0 + Duration::from_secs(5), "connection closed");
        let ev = events(&mut r);
        assert!(matches!(ev[..], [RegEvent::Failed { code: 408, .. }]), "{ev:?}");
        let retry = r.poll_timeout().unwrap();
        assert!(retry > t0 + Duration::from_secs(5) && retry <= t0 + Duration::from_secs(15));
        r.handle_timeout(retry);
        let _ = sent(&mut r);
    }

    #[test]
    fn interval_too_brief_is_retried_with_min_expires() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 3).unwrap();
        r.register(t0, flow(5060));
        let req = sent(&mut r);
        let mut resp = response_to(&req, 423, Some("x"));
        resp.headers.insert(Name::MIN_EXPIRES, "900".to_string());
        r.handle_response(t0, &resp);
        let again = sent(&mut r);
        assert_eq!(header(&again, Name::EXPIRES), "900");
    }

    #[test]
    fn unregister_sends_expires_zero_and_stray_responses_are_ignored() {
        let t0 = Instant::now();
        let mut r = Registration::new(config(), 4).unwrap();
        let mut reg = Registrar::new("pw-1001");
        r.register(t0, flow(5060));
        let req = sent(&mut r);
        // A response to some other request changes nothing.
        let mut other = response_to(&req, 200, Some("x"));
        other.core.cseq.seq += 7;
        r.handle_response(t0, &other);
        assert!(r.poll_output().is_none());
        r.handle_response(t0, &reg.answer(&req));
        let req = sent(&mut r);
        r.handle_response(t0, &reg.answer(&req));
        events(&mut r);
        r.unregister(t0);
        let bye = sent(&mut r);
        assert_eq!(header(&bye, Name::EXPIRES), "0");
        assert!(header(&bye, Name::CONTACT).ends_with(";expires=0"));
        r.handle_response(t0, &reg.answer(&bye));
        assert_eq!(events(&mut r), vec![RegEvent::Unregistered]);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn values_that_would_break_the_header_are_refused() {
        let mut c = config();
        c.user = "10 01".into();
        assert_eq!(Registration::new(c, 0).err(), Some(ConfigError::BadChars("user")));
        let mut c = config();
        c.push = Some(PushParams { provider: "apns".into(), prid: "tok\r\nVia: x".into(), param: None });
        assert_eq!(Registration::new(c, 0).err(), Some(ConfigError::BadChars("push prid")));
        let mut c = config();
        c.domain = String::new();
        assert_eq!(Registration::new(c, 0).err(), Some(ConfigError::Empty("domain")));
    }
}
