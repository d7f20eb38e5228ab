//! The registrar (RFC 3261 §10.3, RFC 5626, RFC 8599): authenticates
//! REGISTER against the store, keeps one binding per device of each
//! extension, and persists bindings so they survive a restart.

mod guard;
pub mod location;

use crate::config::{SecurityConfig, SipConfig};
use crate::sip::endpoint::Responder;
use crate::store::{BindingChange, Store, User};
use guard::AuthGuard;
use location::{Binding, Location};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;
use tsunagu_sip::digest::{parse_authorization, Algorithm, DigestCredentials, DigestVerifier, Verdict};
use tsunagu_sip::register::{parse_register, ContactRequest};
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::{response_to, Name, Peer, Request, Response};

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub struct Registrar {
    cfg: SipConfig,
    store: Arc<dyn Store>,
    users: RwLock<HashMap<String, User>>,
    location: Mutex<Location>,
    verifier: Mutex<DigestVerifier>,
    guard: Mutex<AuthGuard>,
    ban_secs: u64,
    persist: mpsc::UnboundedSender<BindingChange>,
}

/// How a request that starts a call fared against digest auth.
pub enum CallAuth {
    /// Authenticated as this extension.
    Ok(String),
    /// Send this (407 challenge, 403, 500).
    Respond(Response),
    /// Credentials for a user not in the cache: see
    /// [`Registrar::authenticate_uncached`].
    Uncached(DigestCredentials),
}

impl From<Result<String, Response>> for CallAuth {
    fn from(r: Result<String, Response>) -> Self {
        match r {
            Ok(ext) => CallAuth::Ok(ext),
            Err(resp) => CallAuth::Respond(resp),
        }
    }
}

impl Registrar {
    /// Load users and unexpired bindings from the store. The receiver takes
    /// binding changes for [`run_persister`].
    pub async fn new(
        cfg: SipConfig,
        security: SecurityConfig,
        realm: String,
        store: Arc<dyn Store>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<BindingChange>), crate::store::StoreError> {
        let algorithms = cfg.digest_algorithms.iter().filter_map(|a| Algorithm::from_name(a)).collect();
        let verifier = DigestVerifier::new(&realm, rand::random(), cfg.nonce_lifetime_secs, algorithms);
        let users: HashMap<String, User> = store.list_users().await?.into_iter().map(|u| (u.extension.clone(), u)).collect();
        let mut location = Location::default();
        let now = unix_now();
        for b in store.list_bindings().await? {
            if let Some(binding) = Binding::from_stored(&b).filter(|b| b.expires_at > now) {
                location.upsert(&b.extension, binding);
            }
        }
        tracing::info!(users = users.len(), bindings = location.count(), realm = %realm, "registrar loaded");
        let (persist, rx) = mpsc::unbounded_channel();
        let r = Arc::new(Self {
            cfg,
            store,
            users: RwLock::new(users),
            location: Mutex::new(location),
            verifier: Mutex::new(verifier),
            ban_secs: security.ban_secs,
            guard: Mutex::new(AuthGuard::new(security)),
            persist,
        });
        r.update_gauges();
        Ok((r, rx))
    }

    fn update_gauges(&self) {
        if let Ok(loc) = self.location.lock() {
            metrics::gauge!("tsunagu_registrations").set(loc.count() as f64);
            metrics::gauge!("tsunagu_registered_users").set(loc.users_with_bindings() as f64);
        }
        if let Ok(u) = self.users.read() {
            metrics::gauge!("tsunagu_users").set(u.len() as f64);
        }
    }

    /// The current bindings of an extension.
    pub fn bindings(&self, extension: &str) -> Vec<Binding> {
        self.location.lock().map(|l| l.bindings(extension, unix_now())).unwrap_or_default()
    }

    /// Whether a password check for `ext` from `ip` outside SIP (the desk
    /// phones' phonebook over HTTP Basic) may go ahead: the same
    /// brute-force guard as for REGISTER, so HTTP is no side door for
    /// guessing SIP passwords.
    pub fn password_check_allowed(&self, ip: std::net::IpAddr, ext: &str) -> bool {
        let now = unix_now();
        !self.guard.lock().map(|g| g.source_banned(ip, now) || g.extension_banned(ext, now)).unwrap_or(false)
    }

    /// Count a wrong password given outside SIP (see [`Self::password_check_allowed`]).
    pub fn password_check_failed(&self, ip: std::net::IpAddr, ext: &str) {
        let _ = self.guard.lock().map(|mut g| g.record_failure(ip, ext, unix_now()));
    }

    /// Registered devices and extensions with at least one, right now.
    pub fn counts(&self) -> (usize, usize) {
        self.location.lock().map(|l| (l.count(), l.users_with_bindings())).unwrap_or((0, 0))
    }

    /// Forget one device's registration (an admin removed it); it must
    /// register again to ring.
    pub fn remove_device(&self, extension: &str, device_key: &str) -> bool {
        let change = self.location.lock().ok().and_then(|mut l| l.remove(extension, device_key));
        let removed = change.is_some();
        if let Some(c) = change {
            let _ = self.persist.send(c);
        }
        self.update_gauges();
        removed
    }

    pub fn handle_register(self: &Arc<Self>, req: Request, key: TxKey, peer: Peer, responder: &Responder) {
        let now = unix_now();
        if self.guard.lock().map(|g| g.source_banned(peer.addr.ip(), now)).unwrap_or(false) {
            // Banned sources get silence: no work, nothing to learn.
            metrics::counter!("tsunagu_auth_dropped_total").increment(1);
            return;
        }
        let (contacts, expires) = match parse_register(&req) {
            Ok(r) => r,
            Err(rej) => {
                tracing::warn!(source = %peer.addr, call_id = %req.core.call_id, reason = %rej.reason, "bad REGISTER");
                return responder.respond(key, crate::sip::core::rejection_response(&req, &rej));
            }
        };
        let Some(aor) = req.core.to.user() else {
            return responder.respond(key, self.reply(&req, 404));
        };
        let Some(creds) = self.credentials_for_us(&req) else {
            // Stateless: a retransmission just gets a fresh challenge.
            return responder.respond_stateless(key, self.challenge(&req, false));
        };
        let cached = self.users.read().ok().and_then(|u| u.get(&creds.username).cloned());
        match cached {
            Some(user) => {
                let resp = self.finish(&req, &peer, &aor, &creds, Some(&user), contacts, expires);
                responder.respond(key, resp);
            }
            None => {
                // Not in the cache: maybe added a moment ago by another
                // process. Ask the store without holding up the endpoint.
                let this = self.clone();
                let responder = responder.clone();
                tokio::spawn(async move {
                    let user = match this.store.get_user(&creds.username).await {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::error!(error = %e, "user lookup failed");
                            return responder.respond(key, this.reply(&req, 500));
                        }
                    };
                    if let (Some(u), Ok(mut cache)) = (&user, this.users.write()) {
                        cache.insert(u.extension.clone(), u.clone());
                    }
                    let resp = this.finish(&req, &peer, &aor, &creds, user.as_ref(), contacts, expires);
                    responder.respond(key, resp);
                });
            }
        }
    }

    /// Authenticate a request that starts a call (or any request other than
    /// REGISTER) by digest, as a proxy does (RFC 3261 §22.3: 407 with
    /// Proxy-Authenticate). Users come from the cache (kept current by the
    /// users watcher); one not in it yet (added a moment ago by the CLI or
    /// the admin API) is [`CallAuth::Uncached`], for
    /// [`Registrar::authenticate_uncached`] to look up in the store. The same
    /// brute-force guard as for REGISTER applies.
    pub fn authenticate_request(&self, req: &Request, peer: &Peer) -> CallAuth {
        let realm = self.verifier.lock().map(|v| v.realm().to_string()).unwrap_or_default();
        let creds = req.headers.get_raw(&Name::PROXY_AUTHORIZATION).filter_map(|v| parse_authorization(v)).find(|c| c.realm == realm);
        let Some(creds) = creds else {
            return CallAuth::Respond(self.proxy_challenge(req, false));
        };
        let user = self.users.read().ok().and_then(|u| u.get(&creds.username).cloned());
        match user {
            Some(u) => self.verify_call(req, peer, creds, Some(&u)).into(),
            None => CallAuth::Uncached(creds),
        }
    }

    /// The second half of [`Registrar::authenticate_request`] for a user
    /// not in the cache: ask the store, cache what it says, then verify.
    #[allow(clippy::result_large_err)] // the error is the response to send
    pub async fn authenticate_uncached(&self, req: &Request, peer: &Peer, creds: DigestCredentials) -> Result<String, Response> {
        let user = match self.store.get_user(&creds.username).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                return Err(self.reply(req, 500));
            }
        };
        if let (Some(u), Ok(mut cache)) = (&user, self.users.write()) {
            cache.insert(u.extension.clone(), u.clone());
        }
        self.verify_call(req, peer, creds, user.as_ref())
    }

    #[allow(clippy::result_large_err)] // the error is the response to send
    fn verify_call(&self, req: &Request, peer: &Peer, creds: DigestCredentials, user: Option<&User>) -> Result<String, Response> {
        let now = unix_now();
        if self.guard.lock().map(|g| g.source_banned(peer.addr.ip(), now) || g.extension_banned(&creds.username, now)).unwrap_or(false) {
            return Err(self.reply(req, 403));
        }
        let verdict = match self.verifier.lock() {
            Ok(mut v) => v.verify(now, &req.method, &creds, user.map(|u| &u.credentials)),
            Err(_) => return Err(self.reply(req, 500)),
        };
        match verdict {
            Verdict::Ok => Ok(creds.username),
            Verdict::Stale => Err(self.proxy_challenge(req, true)),
            Verdict::Failed(why) => {
                metrics::counter!("tsunagu_auth_failures_total").increment(1);
                let _ = self.guard.lock().map(|mut g| g.record_failure(peer.addr.ip(), &creds.username, now));
                tracing::warn!(source = %peer.addr, user = %creds.username, method = %req.method, reason = why, "call authentication failed");
                Err(self.reply(req, 403))
            }
        }
    }

    fn proxy_challenge(&self, req: &Request, stale: bool) -> Response {
        let mut resp = self.reply(req, 407);
        let mut values = self.verifier.lock().map(|v| v.challenges(unix_now(), rand::random(), stale)).unwrap_or_default();
        if self.md5_only(req) {
            values.retain(|v| v.contains("algorithm=MD5"));
        }
        // MD5 first: SIPp and older phones read only the first challenge.
        values.sort_by_key(|v| !v.contains("algorithm=MD5"));
        for v in values {
            resp.headers.insert(Name::PROXY_AUTHENTICATE, v);
        }
        resp
    }

    /// Whether a registered device sends from `addr`.
    pub fn is_device_address(&self, addr: std::net::SocketAddr) -> bool {
        self.location.lock().map(|l| l.has_flow_from(addr, unix_now())).unwrap_or(false)
    }

    /// Whether an extension exists (from the cache).
    pub fn has_user(&self, ext: &str) -> bool {
        self.users.read().map(|u| u.contains_key(ext)).unwrap_or(false)
    }

    /// The first Digest Authorization for our realm, if any (others, e.g.
    /// for an unknown scheme, are ignored: RFC 4475 §3.3.7).
    fn credentials_for_us(&self, req: &Request) -> Option<DigestCredentials> {
        let realm = self.verifier.lock().ok()?.realm().to_string();
        req.headers.get_raw(&Name::AUTHORIZATION).filter_map(|v| parse_authorization(v)).find(|c| c.realm == realm)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        req: &Request,
        peer: &Peer,
        aor: &str,
        creds: &DigestCredentials,
        user: Option<&User>,
        contacts: ContactRequest,
        expires: Option<u32>,
    ) -> Response {
        let now = unix_now();
        let ip = peer.addr.ip();
        let banned_ext = self.guard.lock().map(|g| g.extension_banned(aor, now)).unwrap_or(false);
        // Registering someone else's extension is not allowed.
        let user = user.filter(|u| u.extension == aor && creds.username == aor);
        let verdict = if banned_ext {
            Verdict::Failed("extension temporarily locked")
        } else {
            let mut v = match self.verifier.lock() {
                Ok(v) => v,
                Err(_) => return self.reply(req, 500),
            };
            v.verify(now, &req.method, creds, user.map(|u| &u.credentials))
        };
        match verdict {
            Verdict::Ok => self.apply(req, peer, aor, contacts, expires, now),
            Verdict::Stale => self.challenge(req, true),
            Verdict::Failed(why) => {
                metrics::counter!("tsunagu_auth_failures_total").increment(1);
                let bans = self.guard.lock().map(|mut g| g.record_failure(ip, aor, now)).unwrap_or_default();
                tracing::warn!(source = %peer.addr, extension = %aor, reason = why, "REGISTER authentication failed");
                if bans.source {
                    tracing::warn!(source = %ip, secs = self.ban_secs, "too many failed authentications: ignoring this source");
                }
                if bans.extension {
                    tracing::warn!(extension = %aor, secs = self.ban_secs, "too many failed authentications: extension locked");
                }
                // The same answer for an unknown extension, a wrong password
                // and a locked extension: nothing to enumerate.
                self.reply(req, 403)
            }
        }
    }

    fn apply(&self, req: &Request, peer: &Peer, aor: &str, contacts: ContactRequest, expires: Option<u32>, now: u64) -> Response {
        let cfg = &self.cfg;
        let mut changes = Vec::new();
        {
            let Ok(mut loc) = self.location.lock() else { return self.reply(req, 500) };
            match contacts {
                ContactRequest::Query => {}
                ContactRequest::RemoveAll => changes.extend(loc.remove_all(aor)),
                ContactRequest::Bindings(list) => {
                    // Check every contact before changing anything.
                    let wanted: Vec<u32> = list.iter().map(|c| c.expires.or(expires).unwrap_or(cfg.default_expires)).collect();
                    if wanted.iter().any(|e| *e != 0 && *e < cfg.min_expires) {
                        let mut resp = self.reply(req, 423);
                        resp.headers.insert(Name::MIN_EXPIRES, cfg.min_expires.to_string());
                        return resp;
                    }
                    for (contact, wanted) in list.into_iter().zip(wanted) {
                        let device_key = contact.device_key();
                        if let Some(existing) = loc.get(aor, &device_key) {
                            // An older REGISTER arriving late must not undo a newer one.
                            if existing.call_id == req.core.call_id && existing.cseq > req.core.cseq.seq {
                                continue;
                            }
                        }
                        if wanted == 0 {
                            changes.extend(loc.remove(aor, &device_key));
                            continue;
                        }
                        let binding = Binding {
                            contact,
                            device_key,
                            expires_at: now + u64::from(wanted.min(cfg.max_expires)),
                            flow: *peer,
                            call_id: req.core.call_id.clone(),
                            cseq: req.core.cseq.seq,
                            user_agent: req.headers.get_raw(&Name::USER_AGENT).next().map(|v| v.to_string()),
                            updated_at: now,
                        };
                        changes.push(loc.upsert(aor, binding));
                    }
                }
            }
        }
        for c in changes {
            let _ = self.persist.send(c);
        }
        self.update_gauges();
        metrics::counter!("tsunagu_registrations_accepted_total").increment(1);
        let mut resp = self.reply(req, 200);
        let current = self.bindings(aor);
        for b in &current {
            let mut v = format!("<{}>;expires={}", b.contact.uri, b.expires_at.saturating_sub(now));
            if let Some(i) = &b.contact.instance {
                v.push_str(&format!(";+sip.instance=\"{i}\""));
            }
            if let Some(r) = b.contact.reg_id {
                v.push_str(&format!(";reg-id={r}"));
            }
            resp.headers.insert(Name::CONTACT, v);
        }
        let outbound = current.iter().any(|b| b.contact.reg_id.is_some())
            && req.headers.get_raw(&Name::SUPPORTED).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("outbound")));
        if outbound {
            resp.headers.insert(Name::REQUIRE, "outbound");
        }
        resp.headers.insert(Name::SUPPORTED, "outbound");
        resp.headers.insert(Name::DATE, http_date(now));
        resp
    }

    fn reply(&self, req: &Request, code: u16) -> Response {
        let mut r = response_to(req, code, Some(&new_tag()));
        r.headers.insert(Name::SERVER, concat!("Tsunagu/", env!("CARGO_PKG_VERSION")));
        r
    }

    fn challenge(&self, req: &Request, stale: bool) -> Response {
        let mut resp = self.reply(req, 401);
        let mut values = self.verifier.lock().map(|v| v.challenges(unix_now(), rand::random(), stale)).unwrap_or_default();
        if self.md5_only(req) {
            values.retain(|v| v.contains("algorithm=MD5"));
        }
        for v in values {
            resp.headers.insert(Name::WWW_AUTHENTICATE, v);
        }
        resp
    }

    fn md5_only(&self, req: &Request) -> bool {
        let Some(ua) = req.headers.get_raw(&Name::USER_AGENT).next() else { return false };
        let ua = ua.to_ascii_lowercase();
        self.cfg.md5_only_user_agents.iter().any(|q| !q.is_empty() && ua.contains(&q.to_ascii_lowercase()))
    }

    /// Re-read users when another process changed them (CLI, web app), so
    /// edits take effect at once; drop bindings of removed users.
    pub async fn refresh_users(&self) -> Result<(), crate::store::StoreError> {
        let users: HashMap<String, User> = self.store.list_users().await?.into_iter().map(|u| (u.extension.clone(), u)).collect();
        let mut changes = Vec::new();
        if let Ok(mut loc) = self.location.lock() {
            for ext in loc.extensions() {
                if !users.contains_key(&ext) {
                    changes.extend(loc.remove_all(&ext));
                }
            }
        }
        if let Ok(mut cache) = self.users.write() {
            *cache = users;
        }
        for c in changes {
            let _ = self.persist.send(c);
        }
        self.update_gauges();
        Ok(())
    }

    /// Make the store hold exactly the bindings in memory (at shutdown, so
    /// changes still queued for the batch writer are not lost).
    pub async fn persist_all(&self) -> Result<(), crate::store::StoreError> {
        let mut changes = vec![BindingChange::ClearAll];
        match self.location.lock() {
            Ok(loc) => changes.extend(loc.snapshot()),
            Err(_) => return Ok(()),
        };
        self.store.apply_binding_changes(changes).await
    }

    /// Periodic housekeeping: expire bindings, forget old guard entries.
    pub fn sweep(&self) {
        let now = unix_now();
        let changes = self.location.lock().map(|mut l| l.expire(now)).unwrap_or_default();
        if !changes.is_empty() {
            tracing::debug!(expired = changes.len(), "bindings expired");
        }
        for c in changes {
            let _ = self.persist.send(c);
        }
        if let Ok(mut g) = self.guard.lock() {
            g.prune(now);
        }
        self.update_gauges();
    }
}

/// Writes binding changes to the store in batches (one transaction per
/// batch), so a burst of registrations costs few disk syncs.
pub async fn run_persister(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<BindingChange>, events: Option<crate::api::events::EventBus>) {
    while let Some(first) = rx.recv().await {
        // Let a burst gather: one transaction for many registrations.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut batch = vec![first];
        while batch.len() < 20_000 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if let Some(events) = &events {
            for c in &batch {
                if let Some(e) = crate::api::events::Event::of_binding(c) {
                    events.send(e);
                }
            }
        }
        if let Err(e) = store.apply_binding_changes(batch).await {
            tracing::error!(error = %e, "could not persist bindings");
        }
    }
}

/// An RFC 7231 IMF-fixdate, for the Date header of a 200 to REGISTER.
fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix / 86400;
    let secs = unix % 86400;
    let (y, m, d) = crate::calendar::civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_date_matches_known_values() {
        assert_eq!(super::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(super::http_date(1_795_000_000), "Wed, 18 Nov 2026 11:06:40 GMT");
    }
}
