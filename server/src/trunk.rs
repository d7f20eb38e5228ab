//! Carrier trunks at run time: reload the trunk list from the store every
//! second (so an added or changed trunk is used by the next call), register
//! the trunks that authenticate by credentials (REGISTER with digest,
//! refreshed before expiry), ping the IP-authenticated ones with OPTIONS,
//! and publish each trunk's state in the store (`tsunagu trunk status`)
//! and in /metrics (`tsunagu_trunk_up`).

use crate::calls::dialog::{self, new_branch, Dialog, DialogExt, LocalAddress};
use crate::calls::{Services, SipEvent};
use crate::store::{Trunk, TrunkTransport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tsunagu_sip::digest::{answer_challenge, parse_challenge};
use tsunagu_sip::{Name, Peer, TransportKind};

const REGISTER_EXPIRES: u64 = 300;
const PING_INTERVAL: Duration = Duration::from_secs(30);
const RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// A ping or registration with no final answer this long counts as failed
/// (the transaction itself would wait 32 s, timer F).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

struct TrunkRun {
    trunk: Trunk,
    dialog: Dialog,
    next_at: Instant,
    branch: Option<String>,
    method: &'static str,
    auth_tried: bool,
    state: String,
    sent_at: Instant,
}

pub fn peer_of(t: &Trunk) -> Peer {
    let transport = match t.transport {
        TrunkTransport::Udp => TransportKind::Udp,
        TrunkTransport::Tcp => TransportKind::Tcp,
        TrunkTransport::Tls => TransportKind::Tls,
    };
    Peer { addr: t.host, transport, flow: 0 }
}

pub async fn run_trunks(svc: Arc<Services>) {
    let token: u64 = rand::random::<u64>() >> 4;
    let (tx, mut rx) = mpsc::unbounded_channel();
    svc.calls.register_token(token, tx);
    let mut runs: HashMap<String, TrunkRun> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                reload(&svc, &mut runs).await;
                let now = Instant::now();
                for run in runs.values_mut() {
                    if run.branch.is_some() && now >= run.sent_at + ANSWER_TIMEOUT {
                        // Forget that transaction; a late answer is ignored.
                        run.branch = None;
                        run.auth_tried = false;
                        run.next_at = now + RETRY_INTERVAL;
                        set_state(&svc, run, "failed", "no answer").await;
                    }
                    if now >= run.next_at && run.branch.is_none() {
                        send(&svc, token, run, None);
                    }
                }
            }
            Some(ev) = rx.recv() => match ev {
                SipEvent::Response { key, resp } => {
                    let Some(run) = runs.values_mut().find(|r| r.branch.as_deref() == Some(key.branch.as_str())) else { continue };
                    if resp.code < 200 {
                        continue;
                    }
                    run.branch = None;
                    let (state, detail) = match (run.method, resp.code) {
                        ("REGISTER", 200..=299) => {
                            run.auth_tried = false;
                            run.next_at = Instant::now() + Duration::from_secs(REGISTER_EXPIRES * 2 / 3);
                            ("registered", String::new())
                        }
                        ("REGISTER", 401 | 407) if !run.auth_tried => {
                            run.auth_tried = true;
                            let name = if resp.code == 407 { Name::PROXY_AUTHENTICATE } else { Name::WWW_AUTHENTICATE };
                            let ch = resp.headers.get_raw(&name).find_map(|v| parse_challenge(v));
                            if let Some(ch) = ch {
                                send(&svc, token, run, Some((resp.code, ch)));
                                continue;
                            }
                            ("failed", format!("{} without a usable challenge", resp.code))
                        }
                        ("REGISTER", code) => {
                            run.auth_tried = false;
                            run.next_at = Instant::now() + RETRY_INTERVAL;
                            ("failed", format!("REGISTER answered {code}"))
                        }
                        // Any answer to OPTIONS shows the carrier is there.
                        (_, code) if code < 500 || code == 501 => {
                            run.next_at = Instant::now() + PING_INTERVAL;
                            ("up", String::new())
                        }
                        (_, code) => {
                            run.next_at = Instant::now() + RETRY_INTERVAL;
                            ("failed", format!("OPTIONS answered {code}"))
                        }
                    };
                    set_state(&svc, run, state, &detail).await;
                }
                SipEvent::Timeout { key } => {
                    let Some(run) = runs.values_mut().find(|r| r.branch.as_deref() == Some(key.branch.as_str())) else { continue };
                    run.branch = None;
                    run.auth_tried = false;
                    run.next_at = Instant::now() + RETRY_INTERVAL;
                    set_state(&svc, run, "failed", "no answer (timeout)").await;
                }
                SipEvent::Request { .. } | SipEvent::Pickup { .. } | SipEvent::TakeLeg { .. } => {}
            }
        }
    }
}

async fn reload(svc: &Arc<Services>, runs: &mut HashMap<String, TrunkRun>) {
    let trunks = match svc.store.list_trunks().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read trunks");
            return;
        }
    };
    runs.retain(|name, _| trunks.iter().any(|t| &t.name == name));
    for t in &trunks {
        let changed = runs.get(&t.name).is_none_or(|r| r.trunk.host != t.host || r.trunk.transport != t.transport || r.trunk.username != t.username || r.trunk.password != t.password || r.trunk.register != t.register);
        if changed {
            let user = t.username.clone().unwrap_or_else(|| "tsunagu".into());
            let aor = format!("<sip:{user}@{}>", t.host);
            let dialog = dialog::outgoing(aor.clone(), aor, format!("sip:{}", t.host), peer_of(t));
            runs.insert(
                t.name.clone(),
                TrunkRun { trunk: t.clone(), dialog, next_at: Instant::now(), branch: None, method: if t.register { "REGISTER" } else { "OPTIONS" }, auth_tried: false, state: t.state.clone(), sent_at: Instant::now() },
            );
        } else if let Some(r) = runs.get_mut(&t.name) {
            r.trunk.priority = t.priority;
        }
    }
    let list: Vec<Trunk> = trunks
        .into_iter()
        .map(|mut t| {
            if let Some(r) = runs.get(&t.name) {
                t.state = r.state.clone();
            }
            t
        })
        .collect();
    if let Ok(mut w) = svc.trunks.write() {
        *w = list;
    }
}

fn send(svc: &Arc<Services>, token: u64, run: &mut TrunkRun, challenge: Option<(u16, tsunagu_sip::digest::Challenge)>) {
    let branch = new_branch(token);
    run.dialog.local_cseq += 1;
    let mut extra: Vec<(&str, String)> = Vec::new();
    if run.method == "REGISTER" {
        extra.push(("Contact", svc.local.contact(run.dialog.peer.transport)));
        extra.push(("Expires", REGISTER_EXPIRES.to_string()));
        if let (Some((code, ch)), Some(user), Some(pass)) = (challenge, run.trunk.username.as_deref(), run.trunk.password.as_deref()) {
            let cnonce = format!("{:016x}", rand::random::<u64>());
            if let Some(v) = answer_challenge(&ch, "REGISTER", &run.dialog.remote_target, user, pass, &cnonce, 1) {
                extra.push((if code == 407 { "Proxy-Authorization" } else { "Authorization" }, v));
            }
        }
    }
    let Some(req) = run.dialog.build_or_log(&svc.local, &branch, run.method, run.dialog.local_cseq, &extra, None) else { return };
    run.branch = Some(branch);
    run.sent_at = Instant::now();
    run.next_at = Instant::now() + RETRY_INTERVAL;
    svc.endpoint.send_request(req, run.dialog.peer);
}

async fn set_state(svc: &Arc<Services>, run: &mut TrunkRun, state: &str, detail: &str) {
    let up = matches!(state, "registered" | "up");
    metrics::gauge!("tsunagu_trunk_up", "trunk" => run.trunk.name.clone()).set(if up { 1.0 } else { 0.0 });
    if run.state != state || !detail.is_empty() {
        if run.state != state {
            tracing::info!(trunk = %run.trunk.name, state, detail, "trunk state");
        }
        run.state = state.to_string();
        if let Err(e) = svc.store.set_trunk_state(&run.trunk.name, state, detail).await {
            tracing::warn!(error = %e, "cannot save trunk state");
        }
    }
}
