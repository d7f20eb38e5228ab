//! One call, as a task: the caller's leg (A, we are its UAS), the forks
//! that ring devices or the carrier (B, we are their UAC), the hunt that
//! decides who rings when, the anchored media, and the call record.
//!
//! Life of a call: route the dialled number to a [`Hunt`]; ring each step's
//! targets at once (every registered device of an extension, or the trunks
//! in priority order for an outside number, failing over on timeout, 408
//! and 5xx); the first 2xx wins and the other forks are cancelled; then
//! pass in-dialog requests across (BYE, re-INVITE/UPDATE with the SDP
//! rewritten for the other leg, INFO) until one side hangs up, a session
//! timer runs out, or the media has been silent for too long.

use super::dialog::{self, contact_uri, new_branch, Dialog, DialogExt, LocalAddress};
use super::negotiate::{audio_direction, is_unchanged, make_answer, make_offer, take_answer, take_offer, LegSdp, NegotiationError};
use super::{Services, SipEvent};
use crate::media::endpoint::PlayItem;
use crate::media::{MediaEvent, MediaSession};
use crate::routing::{national, parse_dialled, resolve, Hunt, Resolution, RingTarget};
use crate::sip::endpoint::Responder;
use crate::store::{unix_ms, CallRecord, CallerIdChoice, Dest, Trunk, SETTING_MAIN_NUMBER};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tsunagu_media::LegSide;
use tsunagu_sip::digest::{answer_challenge, parse_challenge};
use tsunagu_sip::sdp::{Direction, Sdp};
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::{response_to, Name, Peer, Request, Response};

/// Who placed the call.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An extension, authenticated by digest.
    Extension(String),
    /// The carrier, recognised by its address.
    Trunk(Trunk),
}

/// A call rings this long at most when nothing else limits it.
const DEFAULT_RING_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ForkTarget {
    Device { ext: String, device: String },
    Trunk { trunk: Trunk, number: String, rest: Vec<Trunk> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Calling,
    Ringing,
    Answered,
    /// Cancelled by us, waiting for its 487 (or a 2xx that crossed).
    Cancelling,
    Done,
}

struct Fork {
    dialog: Dialog,
    /// Request-URI and CSeq of the INVITE, for CANCEL and ACK.
    invite_uri: String,
    invite_cseq: u32,
    branch: String,
    target: ForkTarget,
    state: ForkState,
    auth_tried: bool,
    sent_at: Instant,
    got_response: bool,
    offer: Vec<u8>,
    /// The INVITE's extra headers, sent again when it is re-sent.
    headers: Vec<(&'static str, String)>,
    /// Our side of this fork's SDP (its key; SRTP or not).
    sdp: LegSdp,
    /// Already offered the other media profile (RTP/AVP vs RTP/SAVP) after
    /// a 488.
    profile_retried: bool,
}

impl Fork {
    /// A party that joins the call already answered, with no INVITE of
    /// ours to follow (a picker's INVITE, a party handed over by another
    /// call): never cancelled, retried or matched to a response.
    fn joined(dialog: Dialog, target: ForkTarget, sdp: LegSdp) -> Fork {
        Fork {
            dialog,
            invite_uri: String::new(),
            // Never the CSeq of a response to a request of ours.
            invite_cseq: 0,
            branch: String::new(),
            target,
            state: ForkState::Answered,
            auth_tried: true,
            sent_at: Instant::now(),
            got_response: true,
            offer: Vec::new(),
            headers: Vec::new(),
            sdp,
            profile_retried: true,
        }
    }
}

/// A request passed to the other leg, waiting for its answer.
struct Pending {
    from: LegSide,
    key: TxKey,
    responder: Responder,
    request: Request,
    method: String,
    /// For INVITE/UPDATE with an offer: the offer (from `from`).
    offer: Option<Sdp>,
    /// This offer puts the other leg on hold music, or takes it off.
    hold: Option<HoldChange>,
}

/// A hold (or its end) that the PBX fills with music: the held leg hears
/// the PBX's endpoint instead of the holder, whatever phone it is.
#[derive(Clone)]
enum HoldChange {
    Start { held: LegSide, holder_offered: Direction, music: Arc<[i16]> },
    End { held: LegSide },
}

/// What the PBX itself is doing with the caller's leg, once it answered
/// it (ADR 0005): the phone hears us, not a callee.
enum Local {
    /// An announcement; the call ends when it has played.
    Announcement,
    /// Prompts before ringing (the recording notice, a greeting); then the
    /// hunt goes on.
    Prelude(Option<Hunt>),
    /// Ringback tone while the hunt rings phones.
    Ringback,
    /// Hold music while the call waits in a parking slot.
    Parked,
    /// In the voice menus: the run, and when it began.
    Ivr(Box<crate::ivr::IvrRun>, Instant),
}

/// A leg's session timer (RFC 4028): who refreshes, and by when.
#[derive(Debug, Clone, Copy, Default)]
enum SessionTimer {
    #[default]
    Off,
    /// The phone refreshes; a leg not refreshed by `deadline` is dead.
    Theirs { secs: u64, deadline: Instant },
    /// We refresh at `at`.
    Ours { secs: u64, at: Instant },
}

impl SessionTimer {
    fn due(&self) -> Option<Instant> {
        match *self {
            SessionTimer::Off => None,
            SessionTimer::Theirs { deadline, .. } => Some(deadline),
            SessionTimer::Ours { at, .. } => Some(at),
        }
    }

    /// The phone refreshed the session (a re-INVITE or UPDATE from it).
    fn refreshed(&mut self, now: Instant) {
        if let SessionTimer::Theirs { secs, deadline } = self {
            *deadline = now + Duration::from_secs(*secs);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Connected,
    Ended,
}

struct Call {
    svc: Arc<Services>,
    token: u64,
    origin: Origin,
    media: MediaSession,
    a: Dialog,
    a_key: TxKey,
    a_responder: Responder,
    a_invite: Request,
    a_offer: Sdp,
    a_sdp: LegSdp,
    b_sdp: LegSdp,
    forks: Vec<Fork>,
    winner: Option<usize>,
    phase: Phase,
    hunt: Option<Hunt>,
    step_deadline: Option<Instant>,
    overall_deadline: Option<Instant>,
    visited: HashSet<String>,
    saw_busy: bool,
    best_code: u16,
    record: CallRecord,
    /// From of the B-leg INVITEs.
    b_from: String,
    /// Identity for the carrier: (number shown, withhold).
    outbound_cid: (String, bool),
    sent_ringing: bool,
    early_answer: Option<Vec<u8>>,
    early_fork: Option<usize>,
    a_200: Option<Retransmit>,
    /// Our 200 to a picker's INVITE (leg B as UAS), until its ACK.
    b_200: Option<Retransmit>,
    /// The caller takes reliable provisional responses (RFC 3262).
    a_100rel: bool,
    a_rseq: u32,
    /// Our reliable provisional, until PRACKed.
    a_rel: Option<Retransmit>,
    pending: HashMap<String, Pending>,
    /// Session timers of leg A (the caller refreshes) and leg B (we do,
    /// unless the callee asked to); a transfer by the caller's side swaps
    /// them with the legs.
    a_timer: SessionTimer,
    b_timer: SessionTimer,
    busy_marks: Vec<String>,
    call_ids: Vec<String>,
    media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    /// Our UPDATEs refreshing leg B's session.
    pending_refresh: HashSet<String>,
    /// This call's inbox, registered for each fork's Call-ID.
    inbox: mpsc::UnboundedSender<SipEvent>,
    /// We answered the caller ourselves (200 sent) before any callee did.
    a_answered: bool,
    /// The caller hung up (so it gets no BYE from us).
    a_gone: bool,
    /// The call is being recorded.
    recording: bool,
    /// The recording notice, still to be played before the call rings.
    notice: Option<Arc<[i16]>>,
    local: Option<Local>,
    /// The leg hearing hold music now.
    held: Option<LegSide>,
    /// Set by `on_offer` for the request `pass_request` sends next.
    next_hold: Option<HoldChange>,
    /// The voice menu's one timer (first key, next key).
    ivr_deadline: Option<Instant>,
    /// The public number's greeting has been played (once per call).
    did_greeted: bool,
    /// A blind transfer by the PBX is ringing its target: where the call
    /// goes back when nobody answers.
    recall_to: Option<Dest>,
    /// The slot the call is parked in, and when the parker is called back.
    parked: Option<u8>,
    park_deadline: Option<Instant>,
    /// Our re-INVITE taking the caller off hold after a transfer.
    a_resume: bool,
    a_resume_branch: Option<String>,
    /// Our re-INVITE moving a party handed over by another call (an
    /// attended transfer) onto this call's media.
    b_move_branch: Option<String>,
    /// What an extension dialled (for a transfer of this call before it
    /// is answered: the other call rings it instead).
    dialled: Option<Dest>,
    /// The leg hearing a short prompt in a connected call ([`Call::tell`]).
    telling: Option<LegSide>,
    /// The group's waiting announcement and how often it plays.
    queue_announcement: Option<(Arc<[i16]>, Duration)>,
    /// When the waiting announcement plays next.
    queue_next: Option<Instant>,
    /// Names the queue of prompts playing now; a Played event with an
    /// older cookie is stale.
    local_cookie: u32,
    /// Where each leg's media comes from (address and SSRC), as the relay
    /// last latched it.
    a_source: Option<(std::net::SocketAddr, u32)>,
    b_source: Option<(std::net::SocketAddr, u32)>,
    /// The stream of a party that left leg B (a transferor): a latch onto
    /// it (its last packets, still on their way) is dropped again, so that
    /// the next party's stream is the one followed.
    stale_b: Option<(std::net::SocketAddr, u32)>,
    /// Each leg's keys, watched for the in-call transfer code.
    a_keys: super::keys::KeyWatch,
    b_keys: super::keys::KeyWatch,
}

/// The announcement a phone hears when the transfer it keyed cannot be
/// made (a built-in, 「おつなぎできませんでした」, replaceable).
const TRANSFER_FAILED: &str = "transfer-failed";

/// A REFER being carried out by the PBX: answered 202, then NOTIFY 200.
type Refer = (Request, TxKey, Responder);

/// A party handed from one call to another (an attended transfer by the
/// PBX): its dialog, our SDP state towards it, its session timer and who
/// it is. Its media still flows to the giving call's ports until the
/// taking call's re-INVITE moves it.
pub struct HandedLeg {
    dialog: Dialog,
    target: ForkTarget,
    sdp: LegSdp,
    timer: SessionTimer,
}

/// What a call gives up for an attended transfer by the PBX.
pub enum Handover {
    /// Its answered party, to be moved into the asking call.
    Answered(Box<HandedLeg>),
    /// Its party still rings (the transferor did not wait for an answer):
    /// this call has ended, and the asking call rings what it dialled,
    /// as a blind transfer with recall.
    Ringing(Dest),
}

/// Where a transfer by the PBX sends the other party.
enum TransferTo {
    Dest(Dest),
    /// A parking slot, `*7N`.
    Park(u8),
}

struct Retransmit {
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// Start a call for a new INVITE (the 100 Trying is already sent).
pub fn start(svc: Arc<Services>, req: Request, key: TxKey, peer: Peer, responder: Responder, origin: Origin) {
    // Counted from here, not from inside the task: the next INVITE's
    // admission check must see this call even if the task has not run yet.
    let running = svc.calls.running();
    tokio::spawn(async move {
        let _running = running;
        let token: u64 = rand::random::<u64>() >> 4;
        let (tx, rx) = mpsc::unbounded_channel();
        svc.calls.register_token(token, tx.clone());
        svc.calls.register_call_id(&req.core.call_id, tx.clone());
        let inbox = tx;
        let call_id = req.core.call_id.clone();
        metrics::counter!("tsunagu_calls_total").increment(1);
        metrics::gauge!("tsunagu_calls_active").increment(1.0);
        let mut call_ids = vec![call_id.clone()];
        let a_key = key.clone();
        // `**EXT` and `*8` pick up a call ringing elsewhere: this INVITE
        // joins that call instead of starting one.
        let (req, key, peer) = match &origin {
            Origin::Extension(picker) => match try_pickup(&svc, req, key, peer, &responder, picker).await {
                Some(back) => back,
                None => {
                    svc.calls.unregister(token, &[call_id]);
                    metrics::gauge!("tsunagu_calls_active").decrement(1.0);
                    return;
                }
            },
            Origin::Trunk(_) => (req, key, peer),
        };
        match setup(svc.clone(), token, inbox, req, key, peer, responder.clone(), origin).await {
            Ok(mut call) => {
                call.run(rx).await;
                call_ids = std::mem::take(&mut call.call_ids);
                call.finish().await;
            }
            Err((req, code, why)) => {
                tracing::info!(call_id = %call_id, code, reason = why, "call refused");
                let mut resp = with_warning(response_to(&req, code, Some(&crate::registrar::new_tag())), why);
                if code == 422 {
                    resp.headers.insert(Name::from("Min-SE".to_string()), svc.config.calls.min_session_expires_secs.to_string());
                }
                responder.respond(a_key, resp);
            }
        }
        svc.calls.unregister(token, &call_ids);
        metrics::gauge!("tsunagu_calls_active").decrement(1.0);
    });
}

type SetupError = (Request, u16, &'static str);

/// The parking slot a dialled code names: `*71` … `*79`.
fn park_slot(dialled: &str) -> Option<u8> {
    let d = dialled.strip_prefix("*7")?;
    (d.len() == 1).then(|| d.as_bytes()[0]).filter(|b| (b'1'..=b'9').contains(b)).map(|b| b - b'0')
}

/// A pick-up code: hand the INVITE to the call ringing the longest at the
/// extension named (`**1002`, directed) or at a member of a ring group
/// the picker belongs to (`*8`). Gives the INVITE back when it is no
/// pick-up code; answers 480 itself when nothing rings there.
async fn try_pickup(svc: &Arc<Services>, req: Request, key: TxKey, peer: Peer, responder: &Responder, picker: &str) -> Option<(Request, TxKey, Peer)> {
    let dialled = req.uri.user.clone().unwrap_or_default();
    // `*7N` takes the call parked in slot N.
    if let Some(slot) = park_slot(&dialled) {
        let parked = svc.calls.parked_call(slot);
        return hand_over(parked, req, key, peer, responder, picker);
    }
    let exts: Vec<String> = if let Some(ext) = dialled.strip_prefix("**").filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())) {
        vec![ext.to_string()]
    } else if dialled == "*8" {
        let groups = svc.store.list_ring_groups().await.unwrap_or_default();
        let number = |d: &Dest| match d {
            Dest::User(n) | Dest::Any(n) => Some(n.clone()),
            _ => None,
        };
        groups
            .iter()
            .filter(|g| g.members.iter().any(|m| number(m).as_deref() == Some(picker)))
            .flat_map(|g| g.members.iter().filter_map(number))
            .filter(|n| n != picker)
            .collect()
    } else {
        return Some((req, key, peer));
    };
    let ringing = svc.calls.longest_ringing(&exts);
    hand_over(ringing, req, key, peer, responder, picker)
}

/// Give a picker's INVITE to the call that is to take it, or answer 480.
fn hand_over(call: Option<super::RingingCall>, req: Request, key: TxKey, peer: Peer, responder: &Responder, picker: &str) -> Option<(Request, TxKey, Peer)> {
    let refused = |req: &Request| with_warning(response_to(req, 480, Some(&crate::registrar::new_tag())), "nothing to pick up");
    let Some((_, tx)) = call else {
        responder.respond(key, refused(&req));
        return None;
    };
    if let Err(e) = tx.send(SipEvent::Pickup { req, key, peer, responder: responder.clone(), picker: picker.to_string() }) {
        if let SipEvent::Pickup { req, key, responder, .. } = e.0 {
            responder.respond(key, refused(&req));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn setup(svc: Arc<Services>, token: u64, inbox: mpsc::UnboundedSender<SipEvent>, req: Request, key: TxKey, peer: Peer, responder: Responder, origin: Origin) -> Result<Call, SetupError> {
    // The offer: we need one (no late-offer INVITEs yet) that parses.
    let ctype = req.headers.get_raw(&Name::CONTENT_TYPE).next().map(|v| v.to_ascii_lowercase()).unwrap_or_default();
    if req.body.is_empty() {
        return Err((req, 488, "an SDP offer in the INVITE is required"));
    }
    if !ctype.starts_with("application/sdp") {
        return Err((req, 415, "only application/sdp bodies are accepted"));
    }
    let a_offer = match Sdp::parse(&req.body) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(call_id = %req.core.call_id, error = %e, "malformed SDP");
            return Err((req, 400, "malformed SDP"));
        }
    };
    let mut a_sdp = LegSdp::new(false);
    match take_offer(&mut a_sdp, &a_offer, &req.body) {
        Ok(_) => {}
        Err(NegotiationError::NoAudio) => return Err((req, 488, "no audio stream offered")),
        Err(_) => return Err((req, 488, "SRTP offered without a usable key")),
    }
    if a_offer.media.get(a_offer.audio_index().unwrap_or(0)).map(|m| m.rtpmaps().is_empty()).unwrap_or(true) {
        return Err((req, 488, "no codec offered that the PBX knows"));
    }
    // RFC 4028 §9: a session interval below our minimum is refused with 422
    // and our Min-SE, and the caller retries with a larger one.
    let asked = req.headers.get_raw(&Name::SESSION_EXPIRES).next().map(|se| se.split(';').next().and_then(|v| v.trim().parse::<u64>().ok()));
    match asked {
        Some(Some(secs)) if secs < svc.config.calls.min_session_expires_secs => return Err((req, 422, "Session-Expires below Min-SE")),
        Some(None) => return Err((req, 400, "malformed Session-Expires")),
        _ => {}
    }

    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let media = match MediaSession::start(&svc.relays, &svc.ports, Duration::from_secs(svc.config.calls.media_timeout_secs), media_tx) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "no media ports");
            return Err((req, 503, "no media ports free"));
        }
    };
    let local_tag = crate::registrar::new_tag();
    let a = dialog::incoming(&req, peer, local_tag);
    let dialled_raw = req.uri.user.clone().or_else(|| req.core.to.user()).unwrap_or_default();
    let now_ms = unix_ms();
    let mut record = CallRecord {
        id: format!("{:016x}", rand::random::<u64>()),
        started_at: now_ms,
        result: "ringing".into(),
        ..Default::default()
    };
    let caller_number = match &origin {
        Origin::Extension(ext) => ext.clone(),
        Origin::Trunk(_) => {
            let pai = req.headers.get_raw(&Name::P_ASSERTED_IDENTITY).next().and_then(|v| tsunagu_sip::message::uri_user(v.split(',').next().unwrap_or("")));
            pai.or_else(|| req.core.from.user()).map(|u| national(&u)).unwrap_or_else(|| "anonymous".into())
        }
    };
    record.caller = caller_number.clone();
    record.callee = dialled_raw.clone();

    let store = &svc.store;
    let mut outbound_cid = (String::new(), false);
    let mut on_demand_recording = false;
    let dest: Dest = match &origin {
        Origin::Trunk(t) => {
            record.direction = "inbound".into();
            record.trunk = Some(t.name.clone());
            let did = national(&dialled_raw);
            record.did = Some(did.clone());
            match store.did(&did).await {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let _ = svc.records.send(super::records::RecordMsg::Put(CallRecord { result: "not-found".into(), ended_at: Some(unix_ms()), ..record.clone() }));
                    return Err((req, 404, "unknown number"));
                }
                Err(e) => {
                    tracing::error!(error = %e, "store");
                    return Err((req, 500, "store unavailable"));
                }
            }
        }
        Origin::Extension(ext) => {
            // The recording prefix (`*5` + number) records this call on
            // demand; the rest is dialled as usual.
            let prefix = store.setting(crate::store::SETTING_RECORDING_PREFIX).await.unwrap_or_default();
            let dialled_raw = match dialled_raw.strip_prefix(prefix.as_str()) {
                Some(rest) if !prefix.is_empty() && !rest.is_empty() => {
                    on_demand_recording = true;
                    rest.to_string()
                }
                _ => dialled_raw.clone(),
            };
            let d = match parse_dialled(store, &svc.registrar, &dialled_raw).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "store");
                    return Err((req, 500, "store unavailable"));
                }
            };
            let Some(dest) = d.dest.clone() else {
                let _ = svc.records.send(super::records::RecordMsg::Put(CallRecord { direction: "internal".into(), result: "not-found".into(), ended_at: Some(unix_ms()), ..record.clone() }));
                return Err((req, 404, "no such number"));
            };
            record.direction = if matches!(dest, Dest::Number(_)) { "outbound".into() } else { "internal".into() };
            if let Dest::Number(n) = &dest {
                record.callee = n.clone();
            }
            // Caller ID for outside calls: the per-call prefix, else the
            // user's setting; own DID falls back to the main number.
            let settings = store.user_settings(ext).await.unwrap_or_else(|_| crate::store::UserSettings::default_for(ext));
            let main = store.setting(SETTING_MAIN_NUMBER).await.unwrap_or_default();
            let choice = d.caller_id.unwrap_or(settings.caller_id);
            let shown = match choice {
                CallerIdChoice::Own => settings.own_did.clone().filter(|s| !s.is_empty()).unwrap_or(main.clone()),
                CallerIdChoice::Main => main.clone(),
            };
            outbound_cid = (shown, d.withhold.unwrap_or(false));
            dest
        }
    };
    if let Origin::Extension(_) = origin {
        if record.direction == "outbound" {
            record.caller_id_shown = Some(if outbound_cid.1 { "anonymous".into() } else { outbound_cid.0.clone() });
        }
    }
    let display = req.core.from.display.clone().filter(|d| !d.is_empty()).unwrap_or(caller_number.clone());
    let b_from = format!("\"{}\" <sip:{}@{}>", display.replace('"', ""), caller_number, svc.local.sip);
    let b_sdp = LegSdp::new(a_sdp.savp);
    let a_100rel = [Name::REQUIRE, Name::SUPPORTED].iter().any(|n| req.headers.get_raw(n).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("100rel"))));

    let mut call = Call {
        svc: svc.clone(),
        token,
        origin,
        media,
        a,
        a_key: key,
        a_responder: responder,
        a_invite: req,
        a_offer,
        a_sdp,
        b_sdp,
        forks: Vec::new(),
        winner: None,
        phase: Phase::Ringing,
        hunt: None,
        step_deadline: None,
        overall_deadline: None,
        visited: HashSet::new(),
        saw_busy: false,
        best_code: 0,
        record,
        b_from,
        outbound_cid,
        sent_ringing: false,
        early_answer: None,
        early_fork: None,
        a_200: None,
        b_200: None,
        a_100rel,
        a_rseq: rand::random::<u16>() as u32,
        a_rel: None,
        pending: HashMap::new(),
        a_timer: SessionTimer::Off,
        b_timer: SessionTimer::Off,
        busy_marks: Vec::new(),
        call_ids: Vec::new(),
        media_events: Some(media_rx),
        pending_refresh: HashSet::new(),
        inbox,
        a_answered: false,
        a_gone: false,
        recording: false,
        notice: None,
        local: None,
        held: None,
        next_hold: None,
        local_cookie: 0,
        ivr_deadline: None,
        did_greeted: false,
        recall_to: None,
        parked: None,
        park_deadline: None,
        a_resume: false,
        a_resume_branch: None,
        b_move_branch: None,
        dialled: None,
        telling: None,
        queue_announcement: None,
        queue_next: None,
        a_keys: Default::default(),
        b_keys: Default::default(),
        a_source: None,
        b_source: None,
        stale_b: None,
    };
    call.call_ids.push(call.a.call_id.clone());
    call.save().await;
    if let Origin::Extension(ext) = &call.origin {
        call.svc.presence.begin(ext);
        call.busy_marks.push(ext.clone());
    }
    // Recording: decided before anything rings, so the notice can come
    // first and the file starts with it.
    let caller_ext = match &call.origin {
        Origin::Extension(e) => Some(e.clone()),
        Origin::Trunk(_) => None,
    };
    // The number dialled may be an extension or a ring group; the policy
    // looks it up as both.
    let dest_number = match &dest {
        Dest::User(n) | Dest::Group(n) | Dest::Any(n) => Some(n.clone()),
        _ => None,
    };
    match svc.store.recording_wanted(caller_ext.as_deref(), dest_number.as_deref(), dest_number.as_deref(), call.record.did.as_deref(), on_demand_recording).await {
        Ok(true) => call.start_recording(true).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(call = %call.record.id, error = %e, "recording policy unreadable; not recording"),
    }
    if matches!(call.origin, Origin::Extension(_)) {
        call.dialled = Some(dest.clone());
    }
    call.route(dest).await;
    Ok(call)
}

impl Call {
    fn trunk_timeout(&self) -> Duration {
        Duration::from_millis(self.svc.config.calls.trunk_response_timeout_ms)
    }
    fn session_expires(&self) -> u64 {
        self.svc.config.calls.session_expires_secs
    }
    fn min_se(&self) -> u64 {
        self.svc.config.calls.min_session_expires_secs
    }

    async fn save(&self) {
        if self.svc.records.send(super::records::RecordMsg::Put(self.record.clone())).is_err() {
            tracing::error!(call = %self.record.id, "call record writer is gone");
        }
    }

    /// Resolve a destination and ring its first step.
    async fn route(&mut self, dest: Dest) {
        match resolve(&self.svc.store, &self.svc.registrar, &self.svc.presence, &dest, &mut self.visited).await {
            Ok(Resolution::Ring(h)) => {
                if self.record.direction != "outbound" && self.hunt.is_none() {
                    self.record.callee = h.label.clone();
                }
                // What the caller hears before anything rings: the
                // recording notice (「この通話は録音されます」), the public
                // number's greeting, the group's greeting.
                let mut prelude = Vec::new();
                if let Some(notice) = self.notice.take() {
                    prelude.extend([PlayItem::Prompt(notice), PlayItem::Silence(Duration::from_millis(300))]);
                }
                if !self.did_greeted {
                    self.did_greeted = true;
                    if let Some(did) = self.record.did.clone() {
                        if let Ok(Some(name)) = self.svc.store.did_greeting(&did).await {
                            prelude.extend(self.prompt(&name).await.map(PlayItem::Prompt));
                        }
                    }
                }
                let group = self.svc.store.group_media(&h.label).await.unwrap_or_default();
                if let Some(name) = &group.greeting {
                    prelude.extend(self.prompt(name).await.map(PlayItem::Prompt));
                }
                self.queue_announcement = None;
                if let Some(name) = &group.queue_announcement {
                    let every = Duration::from_secs(u64::from(group.queue_announcement_secs.unwrap_or(30).max(5)));
                    self.queue_announcement = self.prompt(name).await.map(|pcm| (pcm, every));
                }
                if (!prelude.is_empty() || self.queue_announcement.is_some()) && !self.answer_locally(None).await {
                    return;
                }
                if !prelude.is_empty() {
                    self.play_local(Local::Prelude(Some(h)), prelude);
                    return;
                }
                self.overall_deadline = h.overall.map(|d| Instant::now() + d);
                self.hunt = Some(h);
                self.start_ringback();
                self.next_step().await;
            }
            Ok(Resolution::Local(app)) => self.start_local(app).await,
            Ok(Resolution::Reject(code, why)) => {
                if self.hunt.is_some() || self.best_code != 0 {
                    // A forward target that cannot ring: end as no answer.
                    self.fail(if self.saw_busy { 486 } else { 480 }, why).await;
                } else {
                    self.fail(code, why).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "routing failed");
                self.fail(500, "store unavailable").await;
            }
        }
    }

    /// Record the call from now on; with `notice`, the recording notice
    /// (setting `recording_notice`) is played to the caller before the
    /// call rings. A recording that cannot start never stops the call.
    async fn start_recording(&mut self, notice: bool) {
        if self.recording {
            return;
        }
        let extension = match (&self.origin, &self.record.answered_by) {
            (Origin::Extension(e), _) => e.clone(),
            (_, Some(by)) => by.clone(),
            _ => self.record.callee.clone(),
        };
        match self.svc.recorder.begin(&self.record.id, &self.record.caller, &self.record.callee, &extension).await {
            Ok(tap) => {
                self.media.record(Some(tap));
                self.recording = true;
                tracing::info!(call = %self.record.id, "recording the call");
            }
            Err(e) => {
                tracing::warn!(call = %self.record.id, error = %e, "cannot record this call; it goes on unrecorded");
                return;
            }
        }
        if notice {
            let name = self.svc.store.setting(crate::store::SETTING_RECORDING_NOTICE).await.unwrap_or_default();
            if !name.is_empty() {
                self.notice = self.prompt(&name).await;
            }
        }
    }

    /// The number a REFER asks the PBX to send the other party to, when
    /// the PBX is to carry it out: a parking slot (always), or any number
    /// (`transfer_mode = pbx`). Ok(None) to pass the REFER across instead
    /// (attended transfers with Replaces, and `transfer_mode = phones`).
    async fn refer_target(&self, req: &Request) -> Result<Option<String>, (u16, &'static str)> {
        let Some(refer_to) = req.headers.get_raw(&Name::parse("Refer-To")).next().map(|v| v.to_string()) else {
            return Err((400, "REFER without Refer-To"));
        };
        if refer_to.to_ascii_lowercase().contains("replaces") {
            return Ok(None);
        }
        let Some(user) = tsunagu_sip::message::uri_user(refer_to.trim().trim_start_matches('<')) else {
            return Err((400, "Refer-To names no number"));
        };
        if park_slot(&user).is_none() && self.svc.store.setting(crate::store::SETTING_TRANSFER_MODE).await.unwrap_or_default() != "pbx" {
            return Ok(None);
        }
        Ok(Some(user))
    }

    /// A number to transfer to, as an extension would dial it.
    async fn transfer_target(&self, number: &str) -> Result<TransferTo, (u16, &'static str)> {
        if let Some(slot) = park_slot(number) {
            return Ok(TransferTo::Park(slot));
        }
        match parse_dialled(&self.svc.store, &self.svc.registrar, number).await {
            Ok(d) => d.dest.map(TransferTo::Dest).ok_or((404, "no such number")),
            Err(_) => Err((500, "store unavailable")),
        }
    }

    /// A REFER in a connected call: a blind transfer or a park by the PBX
    /// (see [`Self::refer_target`]), from either side, or passed across
    /// to the other party, which then calls the target through us (its
    /// NOTIFYs come back the same way). A party on the carrier's side may
    /// not move the city's calls (403): that would let an outside caller
    /// dial out at the city's cost.
    async fn on_refer(&mut self, side: LegSide, req: Request, key: TxKey, responder: Responder) {
        let refused = |req: &Request, code: u16, why: &str| with_warning(response_to(req, code, None), why);
        if let Some(replaces) = replaces_call_id(&req).filter(|_| !self.leg_is_trunk(side)) {
            return self.on_attended_refer(side, (req, key, responder), replaces).await;
        }
        let number = match self.refer_target(&req).await {
            Ok(Some(n)) => n,
            Ok(None) => return self.pass_request(side, req, key, responder, None),
            Err((code, why)) => return responder.respond(key, refused(&req, code, why)),
        };
        // Before the number is looked up: an outsider learns nothing of
        // which numbers exist.
        if self.leg_is_trunk(side) {
            return responder.respond(key, refused(&req, 403, "transfers are taken from the city's own phones only"));
        }
        let to = match self.transfer_target(&number).await {
            Ok(to) => to,
            Err((code, why)) => return responder.respond(key, refused(&req, code, why)),
        };
        // The transferor is always leg B: the caller's side trades places.
        if side == LegSide::A && !self.swap_legs() {
            return responder.respond(key, refused(&req, 491, "the call is changing; try again"));
        }
        match to {
            TransferTo::Park(slot) => self.park(Some((req, key, responder)), slot).await,
            TransferTo::Dest(dest) => self.blind_transfer(Some((req, key, responder)), dest).await,
        }
    }

    /// An attended transfer (REFER with Replaces: "join the party here to
    /// the one on that dialog of mine"): with `transfer_mode = pbx` the
    /// PBX joins them itself. The other call hands its far party over
    /// (`SipEvent::TakeLeg`), the transferor is released from both calls,
    /// and our re-INVITE moves that party's media onto this call. The
    /// phones need not support Replaces. When the other call is not ours
    /// or cannot give its party up now, the REFER goes across as before
    /// and the phones do it.
    async fn on_attended_refer(&mut self, side: LegSide, refer: Refer, replaces: String) {
        let pbx_mode = self.svc.store.setting(crate::store::SETTING_TRANSFER_MODE).await.unwrap_or_default() == "pbx";
        let other = self.svc.calls.inbox_of(&replaces).filter(|_| pbx_mode && !self.call_ids.contains(&replaces));
        // The transferor is leg B here too.
        let side = match other {
            Some(_) if side == LegSide::A && self.swap_legs() => LegSide::B,
            _ => side,
        };
        let handover = match other.filter(|_| side == LegSide::B) {
            Some(tx) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if tx.send(SipEvent::TakeLeg { call_id: replaces, reply }).is_ok() {
                    // Bounded: the other task answers at once, unless it is
                    // itself waiting for us (two crossing transfers).
                    tokio::time::timeout(Duration::from_secs(2), answer).await.ok().and_then(Result::ok).flatten()
                } else {
                    None
                }
            }
            None => None,
        };
        match handover {
            None => {
                let (req, key, responder) = refer;
                self.pass_request(side, req, key, responder, None);
            }
            Some(Handover::Answered(leg)) => {
                if self.release_transferor(Some(refer)).is_none() {
                    return;
                }
                tracing::info!(call = %self.record.id, to = ?leg.target, "attended transfer by the PBX");
                self.adopt_leg(*leg);
            }
            Some(Handover::Ringing(dest)) => {
                tracing::info!(call = %self.record.id, to = %dest, "transfer before the target answered: ringing it here, with recall");
                self.blind_transfer(Some(refer), dest).await;
            }
        }
    }

    /// Give up this call's party that is not on dialog `call_id` (the
    /// transferor's leg) to another call: the transferor's leg here ends
    /// (BYE) and so does this call, without a BYE to the party handed over.
    /// A call the transferor placed that still rings ends too (487 to the
    /// transferor, the forks cancelled), and the other call rings what it
    /// dialled.
    async fn give_party(&mut self, call_id: &str) -> Option<Handover> {
        if self.phase == Phase::Ringing && self.a.call_id == call_id && !self.a_answered && self.winner.is_none() {
            let dest = self.dialled.clone()?;
            tracing::info!(call = %self.record.id, "transferred before the answer; the transferor's call ends here");
            self.fail(487, "transferred").await;
            return Some(Handover::Ringing(dest));
        }
        self.give_leg(call_id).map(|leg| Handover::Answered(Box::new(leg)))
    }

    fn give_leg(&mut self, call_id: &str) -> Option<HandedLeg> {
        if self.phase != Phase::Connected {
            return None;
        }
        let transferor_is_b = self.winner.is_some_and(|i| self.forks[i].dialog.call_id == call_id);
        if self.a.call_id != call_id && !transferor_is_b {
            return None;
        }
        if !self.pending.is_empty() || self.a_resume_branch.is_some() || self.b_200.is_some() || self.b_move_branch.is_some() {
            return None;
        }
        // The party handed over is leg B: the transferor trades places.
        if transferor_is_b && !self.swap_legs() {
            return None;
        }
        let i = self.winner.take()?;
        self.forks[i].state = ForkState::Done;
        let leg = HandedLeg { dialog: self.forks[i].dialog.clone(), target: self.forks[i].target.clone(), sdp: std::mem::replace(&mut self.b_sdp, LegSdp::new(false)), timer: std::mem::take(&mut self.b_timer) };
        // Its dialog's requests, and its extension's busy mark, go with it.
        self.call_ids.retain(|c| *c != leg.dialog.call_id);
        if let ForkTarget::Device { ext, .. } = &leg.target {
            if let Some(pos) = self.busy_marks.iter().position(|e| e == ext) {
                self.busy_marks.remove(pos);
            }
        }
        if self.held == Some(LegSide::B) {
            self.held = None;
        }
        tracing::info!(call = %self.record.id, "party handed over to another call (attended transfer); this call ends");
        self.send_in_dialog(LegSide::A, "BYE", None);
        self.phase = Phase::Ended;
        Some(leg)
    }

    /// A party handed over by another call becomes leg B: its dialog is
    /// routed here, and our re-INVITE (with a fresh SRTP key: its old
    /// contexts stay with the other call) moves its media to our ports.
    fn adopt_leg(&mut self, leg: HandedLeg) {
        self.svc.calls.register_call_id(&leg.dialog.call_id, self.inbox.clone());
        self.call_ids.push(leg.dialog.call_id.clone());
        let mut sdp = leg.sdp;
        sdp.our_key = None;
        let ports = self.media.b;
        let offer = make_offer(&self.a_offer, &mut sdp, self.media.address, ports.rtp, ports.rtcp).ok();
        if let ForkTarget::Device { ext, device } = &leg.target {
            self.record.answered_by = Some(ext.clone());
            self.record.answered_device = Some(device.clone()).filter(|d| !d.is_empty());
            self.busy_marks.push(ext.clone());
        }
        self.forks.push(Fork::joined(leg.dialog, leg.target, sdp.clone()));
        self.winner = Some(self.forks.len() - 1);
        self.b_sdp = sdp;
        self.b_timer = leg.timer;
        self.phase = Phase::Connected;
        let token = self.token;
        let local = self.svc.local;
        let sent = offer.and_then(|offer| {
            let i = self.winner?;
            let d = &mut self.forks[i].dialog;
            let req = d.request_for(&local, token, "INVITE", None, &[], Some(("application/sdp", &offer)))?;
            let branch = req.core.top_branch().map(str::to_string);
            self.svc.endpoint.send_request(req, d.peer);
            branch
        });
        if sent.is_none() {
            tracing::warn!(call = %self.record.id, "cannot move the handed-over party's media here; ending the call");
            self.send_in_dialog(LegSide::B, "BYE", None);
            self.send_in_dialog(LegSide::A, "BYE", None);
            self.phase = Phase::Ended;
        }
        self.b_move_branch = sent;
    }

    /// The answer to our re-INVITE moving a handed-over party here: its
    /// media now flows to this call, and the parties hear each other.
    async fn on_moved(&mut self, resp: Response) {
        self.b_move_branch = None;
        if !(200..300).contains(&resp.code) {
            tracing::warn!(call = %self.record.id, code = resp.code, "the handed-over party refused to move; ending the call");
            return self.hangup(None, "failed").await;
        }
        if let Some(i) = self.winner {
            let d = &self.forks[i].dialog;
            if let Some(ack) = d.ack_for(&self.svc.local, self.token, resp.core.cseq.seq, None) {
                self.svc.endpoint.send_raw(d.peer, ack);
            }
        }
        match Sdp::parse(&resp.body) {
            Ok(sdp) if take_answer(&mut self.b_sdp, &sdp, &resp.body).is_ok() => {
                self.push_media();
                // Its media comes from its own address now.
                self.media.unlatch(LegSide::B);
            }
            _ => {
                tracing::warn!(call = %self.record.id, "the handed-over party's answer is unusable; ending the call");
                return self.hangup(None, "failed").await;
            }
        }
        self.media.set_local(LegSide::A, false);
        self.local = None;
        // The transferor had put the party here on hold (music or not):
        // it is taken off now, or it would not hear the new party.
        let a_not_sending = self.a_sdp.last_sent.as_deref().and_then(|s| Sdp::parse(s).ok()).is_some_and(|s| audio_direction(&s) != Direction::SendRecv);
        if std::mem::take(&mut self.a_resume) || a_not_sending {
            self.resume_a();
        }
        self.save().await;
    }

    /// A key pressed on a connected leg (RFC 4733 or SIP INFO): the
    /// transfer code (setting `transfer_code`, `##`), a number and `#`
    /// transfer the other party there, or park it (`*7N`). One that cannot
    /// be made (no such number, a taken slot) is told to the keyer alone
    /// ([`Self::tell`]), and the call goes on.
    async fn on_key(&mut self, side: LegSide, digit: char) {
        if self.phase != Phase::Connected || self.leg_is_trunk(side) {
            return;
        }
        let code = self.svc.store.setting(crate::store::SETTING_TRANSFER_CODE).await.unwrap_or_default();
        let keys = if side == LegSide::A { &mut self.a_keys } else { &mut self.b_keys };
        if let Some(action) = keys.key(&code, digit, Instant::now()) {
            self.on_key_action(side, action).await;
        }
    }

    async fn on_key_action(&mut self, side: LegSide, action: super::keys::KeyAction) {
        let super::keys::KeyAction::Transfer(number) = action;
        let to = match self.transfer_target(&number).await {
            Ok(to) => to,
            Err((code, why)) => {
                tracing::info!(call = %self.record.id, leg = ?side, %number, code, why, "keyed transfer refused; the call goes on");
                self.tell(side, TRANSFER_FAILED).await;
                return;
            }
        };
        tracing::info!(call = %self.record.id, leg = ?side, %number, "transfer keyed on the phone");
        if side == LegSide::A && !self.swap_legs() {
            tracing::info!(call = %self.record.id, "keyed transfer while the call is changing; not made");
            self.tell(side, TRANSFER_FAILED).await;
            return;
        }
        match to {
            TransferTo::Park(slot) => self.park(None, slot).await,
            TransferTo::Dest(dest) => self.blind_transfer(None, dest).await,
        }
    }

    /// A short prompt to one party of a connected call (a keyed transfer
    /// that could not be made): its leg hears the PBX until the prompt has
    /// played, then the other party again. Not while a leg is on hold
    /// music or the PBX is already playing.
    async fn tell(&mut self, side: LegSide, name: &str) {
        if self.phase != Phase::Connected || self.held.is_some() || self.local.is_some() || self.telling.is_some() {
            return;
        }
        let Some(pcm) = self.prompt(name).await else { return };
        self.media.set_local(side, true);
        self.local_cookie = self.local_cookie.wrapping_add(2);
        self.media.play(side, vec![PlayItem::Prompt(pcm), PlayItem::Silence(Duration::from_millis(300))], self.local_cookie);
        self.telling = Some(side);
    }

    /// The prompt of [`Self::tell`] has played (or cannot be): the leg is
    /// bridged again.
    fn told(&mut self) {
        if let Some(side) = self.telling.take() {
            self.media.set_local(side, false);
        }
    }

    /// The party on this leg came in over (or is reached through) a trunk.
    fn leg_is_trunk(&self, side: LegSide) -> bool {
        match side {
            LegSide::A => matches!(self.origin, Origin::Trunk(_)),
            LegSide::B => self.winner.is_some_and(|i| matches!(self.forks[i].target, ForkTarget::Trunk { .. })),
        }
    }

    /// Trade the parties' places: the answered callee moves into the
    /// caller's slot (leg A) and the caller into the answered fork's (leg
    /// B), so that a transfer or park asked for by the caller's side runs
    /// exactly as one asked for by the callee's (the transferor is leg B).
    /// Each phone keeps its dialog, its SDP state, its session timer and
    /// its media ports (the media session swaps its names for the legs,
    /// not its sockets). False, and the legs unchanged, while something is
    /// in flight between them (a request passed across, a 200 not yet
    /// acknowledged, our own re-INVITE, the PBX playing to the caller); a
    /// prompt to one party ([`Self::tell`]) ends either way.
    fn swap_legs(&mut self) -> bool {
        let Some(i) = self.winner else { return false };
        // A prompt to one party (a keyed transfer that failed) ends here.
        self.told();
        if self.phase != Phase::Connected || !self.pending.is_empty() || self.a_200.is_some() || self.b_200.is_some() || self.a_resume_branch.is_some() || self.local.is_some() {
            let in_flight: Vec<&str> = self.pending.values().map(|p| p.method.as_str()).collect();
            tracing::info!(call = %self.record.id, phase = ?self.phase, ?in_flight, unacked = self.a_200.is_some() || self.b_200.is_some(), local = self.local.is_some(), "cannot swap the legs now");
            return false;
        }
        // Calls to the next party are built from the callee's last SDP as
        // they were from the caller's offer (G.711 is added when missing).
        let Some(mut offer) = self.b_sdp.last_received.as_deref().and_then(|raw| Sdp::parse(raw).ok()) else { return false };
        // Its last SDP may be the answer to a hold (recvonly): the next
        // party is offered both ways all the same.
        if let Some(m) = offer.audio_index() {
            offer.media[m].set_direction(Direction::SendRecv);
        }
        let (callee, callee_number) = match &self.forks[i].target {
            ForkTarget::Device { ext, .. } => (Origin::Extension(ext.clone()), ext.clone()),
            ForkTarget::Trunk { trunk, number, .. } => (Origin::Trunk(trunk.clone()), number.clone()),
        };
        let caller = match &self.origin {
            Origin::Extension(ext) => ForkTarget::Device { ext: ext.clone(), device: String::new() },
            Origin::Trunk(trunk) => ForkTarget::Trunk { trunk: trunk.clone(), number: self.record.caller.clone(), rest: Vec::new() },
        };
        std::mem::swap(&mut self.a, &mut self.forks[i].dialog);
        std::mem::swap(&mut self.a_sdp, &mut self.b_sdp);
        std::mem::swap(&mut self.a_timer, &mut self.b_timer);
        std::mem::swap(&mut self.a_keys, &mut self.b_keys);
        std::mem::swap(&mut self.a_source, &mut self.b_source);
        self.stale_b = None;
        self.forks[i].target = caller;
        self.origin = callee;
        self.a_offer = offer;
        self.held = self.held.map(LegSide::other);
        self.media.swap_sides();
        // The next party sees who it is being given.
        self.b_from = format!("\"{n}\" <sip:{n}@{}>", self.svc.local.sip, n = callee_number.replace('"', ""));
        tracing::info!(call = %self.record.id, "legs swapped: the caller's side is transferring");
        true
    }

    /// Blind transfer by the PBX: accept the REFER, release the
    /// transferor (NOTIFY 200, then BYE), give the caller ringback and ring
    /// the target; when it does not answer within `transfer_recall_secs`,
    /// is busy or cannot be reached, the transferor's extension rings again
    /// (recall); when that fails too, the call ends.
    async fn blind_transfer(&mut self, refer: Option<Refer>, target: Dest) {
        let Some(transferor) = self.release_transferor(refer) else { return };
        tracing::info!(call = %self.record.id, transferor = ?transferor, target = %target, "blind transfer by the PBX");
        let recall = self.svc.store.setting(crate::store::SETTING_TRANSFER_RECALL_SECS).await.ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(30);
        self.recall_to = transferor.map(Dest::User);
        Box::pin(self.route(target)).await;
        if self.phase == Phase::Ringing && self.hunt.is_some() {
            let limit = Instant::now() + Duration::from_secs(recall);
            self.overall_deadline = Some(self.overall_deadline.map_or(limit, |d| d.min(limit)));
        }
    }

    /// Park the call (a REFER to `*7N` from the side that received it):
    /// the parker is released as by a transfer, the caller hears hold
    /// music, and whoever dials `*7N` takes the call. Nobody within
    /// `park_recall_secs`: the parker's phone rings again. A taken slot:
    /// 486 to the REFER, and the call goes on.
    async fn park(&mut self, refer: Option<Refer>, slot: u8) {
        if !self.svc.calls.park(slot, self.token, &self.inbox) {
            tracing::info!(call = %self.record.id, slot, "parking slot in use; the call goes on");
            match refer {
                Some((req, key, responder)) => responder.respond(key, response_to(&req, 486, None)),
                // Keyed: the parker (leg B by now) hears that it failed.
                None => self.tell(LegSide::B, TRANSFER_FAILED).await,
            }
            return;
        }
        let Some(parker) = self.release_transferor(refer) else {
            self.svc.calls.unpark(self.token);
            return;
        };
        tracing::info!(call = %self.record.id, slot, parker = ?parker, "parked");
        let music = self.hold_music().await;
        self.play_local(Local::Parked, vec![PlayItem::Loop(music.unwrap_or_else(crate::media::prompts::builtin_hold_music))]);
        let secs = self.svc.store.setting(crate::store::SETTING_PARK_RECALL_SECS).await.ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(120);
        self.parked = Some(slot);
        self.park_deadline = Some(Instant::now() + Duration::from_secs(secs));
        self.recall_to = parker.map(Dest::User);
    }

    /// The transferor (or parker) on leg B is done: 202 to its REFER and
    /// NOTIFY 200 (when it sent one; not for a keyed code), then BYE; leg
    /// A becomes the PBX's (answered by us, local) and leg B is free for
    /// the next party. Its extension, if a phone of ours (None for a trunk
    /// leg); None overall when there is no leg B.
    fn release_transferor(&mut self, refer: Option<Refer>) -> Option<Option<String>> {
        let Some(i) = self.winner else {
            if let Some((req, key, responder)) = refer {
                responder.respond(key, response_to(&req, 481, None));
            }
            return None;
        };
        let transferor = match &self.forks[i].target {
            ForkTarget::Device { ext, .. } => Some(ext.clone()),
            ForkTarget::Trunk { .. } => None,
        };
        // The transferor is done with the call: tell it the transfer is
        // accepted and end its leg (it may hang up first; both are fine).
        let token = self.token;
        let local = self.svc.local;
        let d = &mut self.forks[i].dialog;
        if let Some((req, key, responder)) = refer {
            responder.respond(key, response_to(&req, 202, None));
            let notify_headers = [("Event", "refer".to_string()), ("Subscription-State", "terminated;reason=noresource".to_string())];
            if let Some(n) = d.request_for(&local, token, "NOTIFY", None, &notify_headers, Some(("message/sipfrag;version=2.0", b"SIP/2.0 200 OK"))) {
                self.svc.endpoint.send_request(n, d.peer);
            }
        }
        if let Some(bye) = d.request_for(&local, token, "BYE", None, &[], None) {
            self.svc.endpoint.send_request(bye, d.peer);
        }
        self.forks[i].state = ForkState::Done;
        self.winner = None;
        self.told();
        self.a_keys.reset();
        self.b_keys.reset();
        self.early_fork = None;
        self.early_answer = None;
        self.b_timer = SessionTimer::Off;
        if let Some(ext) = &transferor {
            if let Some(pos) = self.busy_marks.iter().position(|e| e == ext) {
                self.busy_marks.remove(pos);
                self.svc.presence.end(ext);
            }
        }
        // The caller's leg is the PBX's now: ringback until someone answers.
        // A caller the transferor had put on hold is resumed once the next
        // party answers.
        self.a_resume = self.held == Some(LegSide::A);
        self.held = None;
        self.a_answered = true;
        self.phase = Phase::Ringing;
        self.b_sdp = LegSdp::new(self.a_sdp.savp);
        self.media.set_local(LegSide::A, true);
        self.media.unlatch(LegSide::B);
        self.stale_b = self.b_source.take();
        // Neither the target nor the transferor is a loop of this call.
        self.visited.clear();
        self.hunt = None;
        self.saw_busy = false;
        self.best_code = 0;
        Some(transferor)
    }

    /// The PBX answers the call itself: an announcement or a voice menu.
    async fn start_local(&mut self, app: crate::routing::LocalApp) {
        self.cancel_forks().await;
        self.step_deadline = None;
        self.overall_deadline = None;
        self.hunt = None;
        let label = match &app {
            crate::routing::LocalApp::Announcement(n) => format!("announcement:{n}"),
            crate::routing::LocalApp::Ivr(n) => format!("ivr:{n}"),
        };
        if !self.answer_locally(Some(&label)).await {
            return;
        }
        match app {
            crate::routing::LocalApp::Announcement(name) => {
                let Some(pcm) = self.prompt(&name).await else {
                    self.hangup(None, "failed").await;
                    return;
                };
                // A little silence after: the far jitter buffer still holds
                // the end of the prompt when our BYE would cut it.
                self.play_local(Local::Announcement, vec![PlayItem::Prompt(pcm), PlayItem::Silence(Duration::from_millis(600))]);
            }
            crate::routing::LocalApp::Ivr(name) => {
                let menu = match self.svc.store.ivr_menu(&name).await {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        tracing::warn!(call = %self.record.id, menu = %name, "no such voice menu");
                        return self.hangup(None, "failed").await;
                    }
                    Err(e) => {
                        tracing::error!(call = %self.record.id, error = %e, "store");
                        return self.hangup(None, "failed").await;
                    }
                };
                let (run, steps) = crate::ivr::IvrRun::new(menu);
                self.local = Some(Local::Ivr(Box::new(run), Instant::now()));
                self.ivr_steps(steps).await;
            }
        }
    }

    /// Feed the voice menu one input (when the caller is in one).
    async fn ivr_input(&mut self, input: crate::ivr::IvrInput) {
        let Some(Local::Ivr(run, started)) = self.local.as_mut() else { return };
        let steps = run.on(started.elapsed(), input);
        self.ivr_steps(steps).await;
    }

    /// Carry out what the voice menu asks for.
    async fn ivr_steps(&mut self, steps: Vec<crate::ivr::IvrStep>) {
        use crate::ivr::{IvrInput, IvrStep};
        let mut queue: std::collections::VecDeque<IvrStep> = steps.into();
        while let Some(step) = queue.pop_front() {
            let more = match step {
                IvrStep::Play(names) => {
                    let mut items = Vec::new();
                    for n in &names {
                        // A missing prompt is skipped (logged); the menu
                        // still works by its keys.
                        if let Some(pcm) = self.prompt(n).await {
                            items.push(PlayItem::Prompt(pcm));
                        }
                    }
                    self.play_to_caller(items);
                    continue;
                }
                IvrStep::StopPlaying => {
                    // A cookie nobody waits for: its Played is stale.
                    self.media.play(LegSide::A, Vec::new(), self.local_cookie.wrapping_sub(1));
                    continue;
                }
                IvrStep::Arm(d) => {
                    self.ivr_deadline = Some(Instant::now() + d);
                    continue;
                }
                IvrStep::Disarm => {
                    self.ivr_deadline = None;
                    continue;
                }
                IvrStep::Load(name) => match self.svc.store.ivr_menu(&name).await {
                    Ok(Some(m)) => IvrInput::Entered(m),
                    Ok(None) => IvrInput::EnterFailed,
                    Err(e) => {
                        tracing::error!(call = %self.record.id, error = %e, "store");
                        IvrInput::EnterFailed
                    }
                },
                IvrStep::DialExtension(ext) => match self.svc.store.user_exists(&ext).await {
                    Ok(true) => {
                        self.leave_ivr(Dest::User(ext)).await;
                        return;
                    }
                    _ => IvrInput::NoSuchExtension,
                },
                IvrStep::Route(dest) => {
                    self.leave_ivr(dest).await;
                    return;
                }
                IvrStep::Hangup => {
                    self.local = None;
                    self.ivr_deadline = None;
                    self.hangup(None, "answered").await;
                    return;
                }
            };
            let Some(Local::Ivr(run, started)) = self.local.as_mut() else { return };
            queue.extend(run.on(started.elapsed(), more));
        }
    }

    /// The caller chose a destination in the menus: ring it (with our
    /// ringback to the caller).
    async fn leave_ivr(&mut self, dest: Dest) {
        tracing::info!(call = %self.record.id, dest = %dest, "voice menu: routing");
        self.local = None;
        self.ivr_deadline = None;
        Box::pin(self.route(dest)).await;
    }

    /// An announcement's audio, or None (logged) when it cannot be had.
    async fn prompt(&self, name: &str) -> Option<Arc<[i16]>> {
        match self.svc.prompts.get(name).await {
            Ok(pcm) => Some(pcm),
            Err(e) => {
                tracing::warn!(call = %self.record.id, announcement = %name, error = %e, "announcement cannot be played");
                None
            }
        }
    }

    /// Answer the caller with our own media (once): our SDP answer,
    /// preferring G.711 because prompts are 8 kHz PCM and encoding it is
    /// free, and the caller's leg switched to the PBX's endpoint. False
    /// (and the call failed) when its codecs are none we can make.
    async fn answer_locally(&mut self, label: Option<&str>) -> bool {
        if self.a_answered {
            return true;
        }
        if self.phase != Phase::Ringing {
            return false;
        }
        let ports = self.media.a;
        let pcmu = Some((tsunagu_media::Codec::Pcmu, 0));
        let answer = make_answer(&self.a_offer, &mut self.a_sdp, pcmu, Direction::SendRecv, self.media.address, ports.rtp, ports.rtcp);
        let answer = match answer {
            Ok(a) if self.a_sdp.media.codec.is_some() => a,
            _ => {
                self.fail(488, "no codec the PBX can play prompts in").await;
                return false;
            }
        };
        self.media.set_leg(LegSide::A, self.a_sdp.media.clone());
        self.media.set_local(LegSide::A, true);
        self.send_a_200(answer);
        self.a_answered = true;
        if let Some(label) = label {
            self.record.answered_at = Some(unix_ms());
            self.record.result = "answered".into();
            self.record.answered_by = Some(label.to_string());
            self.save().await;
        }
        tracing::info!(call = %self.record.id, by = ?label, "the PBX answered the call itself");
        true
    }

    /// Play to the caller's leg (answered by us), replacing what it plays.
    fn play_local(&mut self, what: Local, items: Vec<PlayItem>) {
        self.play_to_caller(items);
        self.local = Some(what);
    }

    fn play_to_caller(&mut self, items: Vec<PlayItem>) {
        self.local_cookie = self.local_cookie.wrapping_add(2);
        self.media.play(LegSide::A, items, self.local_cookie);
    }

    /// The caller hears our ringback while phones ring, when we answered
    /// it ourselves (its phone plays none once answered), with the group's
    /// waiting announcement every so often.
    fn start_ringback(&mut self) {
        if !self.a_answered {
            return;
        }
        self.play_local(Local::Ringback, vec![PlayItem::Loop(crate::media::tones::japanese_ringback())]);
        self.queue_next = self.queue_announcement.as_ref().map(|(_, every)| Instant::now() + *every);
    }

    /// Everything queued for the caller has played.
    async fn on_played(&mut self) {
        match self.local.take() {
            Some(Local::Announcement) => self.hangup(None, "answered").await,
            ivr @ Some(Local::Ivr(..)) => {
                self.local = ivr;
                self.ivr_input(crate::ivr::IvrInput::Played).await;
            }
            Some(Local::Prelude(hunt)) => {
                if let Some(h) = hunt {
                    self.overall_deadline = h.overall.map(|d| Instant::now() + d);
                    self.hunt = Some(h);
                }
                self.start_ringback();
                self.next_step().await;
            }
            other => self.local = other,
        }
    }

    /// Ring the next step of the hunt, or go to its no-answer / busy
    /// destination when it has none left.
    async fn next_step(&mut self) {
        loop {
            if self.phase != Phase::Ringing {
                return;
            }
            let overall_over = self.overall_deadline.is_some_and(|d| Instant::now() >= d);
            let step = if overall_over { None } else { self.hunt.as_mut().and_then(|h| h.steps.pop_front()) };
            let Some(step) = step else {
                let (busy, no_answer) = self.hunt.as_ref().map(|h| (h.on_busy.clone(), h.on_no_answer.clone())).unwrap_or((None, None));
                let next = if self.saw_busy && busy.is_some() { busy } else { no_answer };
                // A transfer nobody took comes back to whoever transferred it.
                let next = match self.recall_to.take() {
                    Some(transferor) => {
                        tracing::info!(call = %self.record.id, to = %transferor, "transfer not answered: recall");
                        Some(transferor)
                    }
                    None => next,
                };
                self.step_deadline = None;
                self.cancel_forks().await;
                match next {
                    Some(dest) => {
                        tracing::info!(call = %self.record.id, dest = %dest, "no answer: forwarding");
                        self.hunt = None;
                        self.saw_busy = false;
                        Box::pin(self.route(dest)).await;
                    }
                    None => {
                        let code = if self.saw_busy { 486 } else if self.best_code >= 400 && self.best_code != 487 { self.best_code } else { 480 };
                        self.fail(code, "").await;
                    }
                }
                return;
            };
            let skip_busy = self.hunt.as_ref().is_some_and(|h| h.skip_busy);
            let mut started = 0;
            for t in &step.targets {
                started += self.ring(t, skip_busy).await;
            }
            if started > 0 {
                // Nothing rings for ever: without a step or group limit the
                // call gives up after the default (480 to the caller).
                let limit = step.timeout.or(if self.overall_deadline.is_none() { Some(DEFAULT_RING_LIMIT) } else { None });
                self.step_deadline = limit.map(|d| Instant::now() + d);
                return;
            }
        }
    }

    /// Start forks for one ring target; how many started.
    async fn ring(&mut self, target: &RingTarget, skip_busy: bool) -> usize {
        match target {
            RingTarget::Ext(ext) => {
                if skip_busy && self.svc.presence.is_busy(ext) {
                    tracing::debug!(ext, "member busy: skipped");
                    return 0;
                }
                // Calling yourself from the same device is not ringing your
                // other devices; an extension calling itself rings the rest.
                let bindings = self.svc.registrar.bindings(ext);
                let mut n = 0;
                for b in bindings {
                    if b.flow == self.a.peer && b.contact.uri == self.a.remote_target {
                        continue;
                    }
                    let to = format!("<sip:{ext}@{}>", self.svc.local.sip);
                    let dialog = dialog::outgoing(self.b_from.clone(), to, b.contact.uri.clone(), b.flow);
                    if self.send_invite(dialog, ForkTarget::Device { ext: ext.clone(), device: b.device_key.clone() }, &[]).await {
                        n += 1;
                    }
                }
                n
            }
            RingTarget::External(number) => {
                let trunks: Vec<Trunk> = self.svc.trunks.read().map(|t| t.clone()).unwrap_or_default();
                let mut trunks: Vec<Trunk> = trunks.into_iter().filter(|t| t.state != "disabled").collect();
                if trunks.is_empty() {
                    tracing::warn!(number, "no trunk configured for an outside call");
                    self.best_code = self.best_code.max(503);
                    return 0;
                }
                let first = trunks.remove(0);
                usize::from(self.invite_trunk(first, number.clone(), trunks).await)
            }
        }
    }

    async fn invite_trunk(&mut self, trunk: Trunk, number: String, rest: Vec<Trunk>) -> bool {
        let peer = Peer {
            addr: trunk.host,
            transport: match trunk.transport {
                crate::store::TrunkTransport::Udp => tsunagu_sip::TransportKind::Udp,
                crate::store::TrunkTransport::Tcp => tsunagu_sip::TransportKind::Tcp,
                crate::store::TrunkTransport::Tls => tsunagu_sip::TransportKind::Tls,
            },
            flow: 0,
        };
        let (cid, withhold) = self.outbound_cid.clone();
        let from = if withhold || cid.is_empty() {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string()
        } else {
            format!("<sip:{cid}@{}>", self.svc.local.sip)
        };
        let uri = format!("sip:{number}@{}", trunk.host);
        let dialog = dialog::outgoing(from, format!("<{uri}>"), uri, peer);
        let mut extra = Vec::new();
        if !cid.is_empty() {
            extra.push(("P-Asserted-Identity", format!("<sip:{cid}@{}>", self.svc.local.sip)));
        }
        if withhold {
            extra.push(("Privacy", "id".to_string()));
        }
        self.record.trunk = Some(trunk.name.clone());
        self.send_invite(dialog, ForkTarget::Trunk { trunk, number, rest }, &extra).await
    }

    async fn send_invite(&mut self, dialog: Dialog, target: ForkTarget, extra: &[(&'static str, String)]) -> bool {
        // All forks share leg B's ports; devices get SRTP when the caller
        // used it, carriers plain RTP (closed carrier networks rarely do
        // SDES). Only one fork will answer.
        let mut sdp = self.b_sdp.clone();
        if matches!(target, ForkTarget::Trunk { .. }) {
            sdp = LegSdp::new(false);
            sdp.session_id = self.b_sdp.session_id;
        }
        let offer = match make_offer(&self.a_offer, &mut sdp, self.media.address, self.media.b.rtp, self.media.b.rtcp) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot make an offer");
                return false;
            }
        };
        let mut headers: Vec<(&'static str, String)> = vec![
            ("Supported", "100rel, timer".to_string()),
            ("Session-Expires", format!("{};refresher=uac", self.session_expires())),
            ("Min-SE", self.min_se().to_string()),
            ("Allow", crate::sip::core::ALLOW.to_string()),
        ];
        headers.extend(extra.iter().cloned());
        let branch = new_branch(self.token);
        let cseq = dialog.local_cseq;
        let Some(req) = dialog.build_or_log(&self.svc.local, &branch, "INVITE", cseq, &headers, Some(("application/sdp", &offer))) else { return false };
        let invite_uri = dialog.remote_target.clone();
        self.svc.calls.register_call_id(&dialog.call_id, self.inbox.clone());
        self.call_ids.push(dialog.call_id.clone());
        let peer = dialog.peer;
        tracing::debug!(call = %self.record.id, target = ?target, "ringing");
        if let ForkTarget::Device { ext, .. } = &target {
            self.svc.calls.ringing_started(ext, self.token, &self.inbox);
        }
        self.forks.push(Fork {
            dialog,
            invite_uri,
            invite_cseq: cseq,
            branch,
            target,
            state: ForkState::Calling,
            auth_tried: false,
            sent_at: Instant::now(),
            got_response: false,
            offer,
            headers,
            sdp,
            profile_retried: false,
        });
        self.svc.endpoint.send_request(req, peer);
        true
    }

    /// CANCEL every fork still ringing.
    async fn cancel_forks(&mut self) {
        for i in 0..self.forks.len() {
            if matches!(self.forks[i].state, ForkState::Calling | ForkState::Ringing) {
                self.cancel_fork(i);
            }
        }
    }

    fn cancel_fork(&mut self, i: usize) {
        let f = &mut self.forks[i];
        f.state = ForkState::Cancelling;
        let mut d = f.dialog.clone();
        d.remote_tag = None;
        d.remote_target = f.invite_uri.clone();
        d.route_set.clear();
        if let Some(req) = d.build_or_log(&self.svc.local, &f.branch, "CANCEL", f.invite_cseq, &[], None) {
            self.svc.endpoint.send_request(req, f.dialog.peer);
        }
    }

    /// The call failed before anyone answered: tell the caller.
    async fn fail(&mut self, code: u16, why: &str) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.cancel_forks().await;
        if self.a_answered {
            // We answered the caller ourselves: no final response is left
            // to send, so the call ends with a BYE (unless it hung up).
            tracing::info!(call = %self.record.id, code, why, "nobody answered after the PBX did; ending the call");
            if !self.a_gone {
                self.send_in_dialog(LegSide::A, "BYE", None);
            }
            self.phase = Phase::Ended;
            return;
        }
        let resp = with_warning(self.a_response(code), why);
        self.a_responder.respond(self.a_key.clone(), resp);
        self.record.result = match code {
            486 | 600 => "busy",
            487 => "cancelled",
            404 | 484 => "not-found",
            480 | 408 => "no-answer",
            482 => "loop",
            _ => "failed",
        }
        .into();
        self.phase = Phase::Ended;
    }

    fn a_response(&self, code: u16) -> Response {
        let mut r = response_to(&self.a_invite, code, Some(&self.a.local_tag));
        r.headers.insert(Name::SERVER, concat!("Tsunagu/", env!("CARGO_PKG_VERSION")));
        if (101..300).contains(&code) {
            r.headers.insert(Name::CONTACT, self.svc.local.contact(self.a.peer.transport));
            for rr in &self.a.route_set {
                r.headers.insert(Name::RECORD_ROUTE, rr.clone());
            }
        }
        r
    }

    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<SipEvent>) {
        let mut media_rx = self.media_events.take();
        while self.phase != Phase::Ended {
            let deadline = self.next_deadline();
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_sip(ev).await,
                    None => break,
                },
                Some(ev) = async { match media_rx.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => self.on_media(ev).await,
                _ = sleep_until(deadline) => self.on_timer().await,
            }
        }
        // Stop every fork still ringing, then stay until each has a final
        // answer: a phone whose 200 crossed our CANCEL must still get its
        // ACK and BYE (RFC 3261 §9.1), or its leg stays up. Bounded by
        // timer B; requests that still arrive get 481.
        self.cancel_forks().await;
        self.finish().await;
        let ended = Instant::now();
        let give_up = ended + Duration::from_secs(34);
        loop {
            let live = self.forks.iter().any(|f| matches!(f.state, ForkState::Calling | ForkState::Ringing | ForkState::Cancelling));
            // Linger a little in any case, for answers to our BYEs.
            let until = if live { give_up } else { ended + Duration::from_millis(300) };
            if Instant::now() >= until {
                break;
            }
            tokio::select! {
                _ = sleep_until(Some(until)) => break,
                ev = rx.recv() => match ev {
                    Some(SipEvent::Request { req, key, responder, .. }) => {
                        if req.method != "ACK" {
                            responder.respond(key, response_to(&req, 481, Some(&crate::registrar::new_tag())));
                        }
                    }
                    Some(SipEvent::Response { key, resp }) => self.on_response(key, resp).await,
                    Some(SipEvent::Timeout { key }) => self.on_tx_timeout(key).await,
                    Some(SipEvent::Pickup { req, key, responder, .. }) => responder.respond(key, response_to(&req, 480, Some(&crate::registrar::new_tag()))),
                    Some(SipEvent::TakeLeg { reply, .. }) => {
                        let _ = reply.send(None);
                    }
                    None => break,
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Vec<Instant> = Vec::new();
        d.extend(self.step_deadline);
        d.extend(self.overall_deadline.filter(|_| self.phase == Phase::Ringing));
        d.extend(self.a_200.as_ref().map(|r| r.next.min(r.give_up)));
        d.extend(self.b_200.as_ref().map(|r| r.next.min(r.give_up)));
        d.extend(self.a_rel.as_ref().map(|r| r.next.min(r.give_up)));
        d.extend(self.a_timer.due());
        d.extend(self.b_timer.due());
        d.extend(self.ivr_deadline);
        d.extend(self.queue_next);
        d.extend(self.park_deadline);
        d.extend(self.a_keys.deadline());
        d.extend(self.b_keys.deadline());
        if self.phase == Phase::Ringing {
            for f in &self.forks {
                if f.state == ForkState::Calling && !f.got_response && matches!(f.target, ForkTarget::Trunk { .. }) {
                    d.push(f.sent_at + self.trunk_timeout());
                }
            }
        }
        d.into_iter().min()
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.park_deadline.is_some_and(|d| now >= d) {
            // Nobody took the parked call: the parker's phone rings.
            self.park_deadline = None;
            self.parked = None;
            self.svc.calls.unpark(self.token);
            match self.recall_to.take() {
                Some(parker) => {
                    tracing::info!(call = %self.record.id, to = %parker, "parked call not taken: recall");
                    Box::pin(self.route(parker)).await;
                }
                None => self.hangup(None, "answered").await,
            }
            return;
        }
        if self.queue_next.is_some_and(|d| now >= d) {
            self.queue_next = None;
            if let (Some((pcm, every)), Some(Local::Ringback), Phase::Ringing) = (self.queue_announcement.clone(), &self.local, self.phase) {
                let ringback = crate::media::tones::japanese_ringback();
                self.play_local(Local::Ringback, vec![PlayItem::Prompt(pcm.clone()), PlayItem::Loop(ringback)]);
                self.queue_next = Some(now + every + Duration::from_millis(pcm.len() as u64 / 8));
            }
        }
        if self.ivr_deadline.is_some_and(|d| now >= d) {
            self.ivr_deadline = None;
            self.ivr_input(crate::ivr::IvrInput::Timeout).await;
        }
        for side in [LegSide::A, LegSide::B] {
            let keys = if side == LegSide::A { &mut self.a_keys } else { &mut self.b_keys };
            if let Some(action) = keys.on_time(now) {
                if self.phase == Phase::Connected {
                    self.on_key_action(side, action).await;
                }
                return;
            }
        }
        if self.phase == Phase::Ringing {
            // A trunk that said nothing at all: fail over now.
            for i in 0..self.forks.len() {
                let f = &self.forks[i];
                if f.state == ForkState::Calling && !f.got_response && matches!(f.target, ForkTarget::Trunk { .. }) && now >= f.sent_at + self.trunk_timeout() {
                    tracing::warn!(call = %self.record.id, "trunk did not answer in time; trying the next");
                    self.cancel_fork(i);
                    self.forks[i].state = ForkState::Done;
                    self.trunk_failover(i, 408).await;
                }
            }
            if self.overall_deadline.is_some_and(|d| now >= d) || self.step_deadline.is_some_and(|d| now >= d) {
                self.step_deadline = None;
                if self.overall_deadline.is_some_and(|d| now >= d) {
                    if let Some(h) = self.hunt.as_mut() {
                        h.steps.clear();
                    }
                    self.overall_deadline = None;
                }
                self.cancel_forks().await;
                self.next_step().await;
            }
        }
        if let Some(r) = self.a_200.as_mut() {
            if now >= r.give_up {
                tracing::warn!(call = %self.record.id, "caller never acknowledged the answer; ending the call");
                self.a_200 = None;
                self.hangup(None, "no-ack").await;
                return;
            }
            if now >= r.next {
                self.svc.endpoint.send_raw(self.a.peer, r.bytes.clone());
                r.interval = (r.interval * 2).min(Duration::from_secs(4));
                r.next = now + r.interval;
            }
        }
        if let Some(r) = self.b_200.as_mut() {
            if now >= r.give_up {
                self.b_200 = None;
            } else if now >= r.next {
                if let Some(peer) = self.winner.map(|i| self.forks[i].dialog.peer) {
                    self.svc.endpoint.send_raw(peer, r.bytes.clone());
                }
                r.interval = (r.interval * 2).min(Duration::from_secs(4));
                r.next = now + r.interval;
            }
        }
        if let Some(r) = self.a_rel.as_mut() {
            if now >= r.give_up {
                // No PRACK in 64*T1: RFC 3262 §3 says reject the INVITE.
                self.a_rel = None;
                if self.phase == Phase::Ringing {
                    self.fail(504, "no PRACK for a reliable provisional response").await;
                    return;
                }
            } else if now >= r.next {
                self.svc.endpoint.send_raw(self.a.peer, r.bytes.clone());
                r.interval = (r.interval * 2).min(Duration::from_secs(4));
                r.next = now + r.interval;
            }
        }
        for side in [LegSide::A, LegSide::B] {
            match *self.timer(side) {
                SessionTimer::Theirs { deadline, .. } if now >= deadline => {
                    tracing::info!(call = %self.record.id, leg = ?side, "session timer expired (no refresh): ending the call");
                    *self.timer(side) = SessionTimer::Off;
                    self.hangup(None, "session-expired").await;
                    return;
                }
                SessionTimer::Ours { secs, at } if now >= at => self.refresh(side, secs),
                _ => {}
            }
        }
    }

    async fn on_media(&mut self, ev: MediaEvent) {
        match self.media.for_call(ev) {
            MediaEvent::Dtmf { from, digit, duration_ms } => {
                // The other leg has no telephone-event: send it SIP INFO.
                let to = from.other();
                let (ctype, body) = tsunagu_media::dtmf::info_body(digit, duration_ms);
                self.send_in_dialog(to, "INFO", Some((ctype, body.as_bytes())));
                self.on_key(from, digit).await;
            }
            MediaEvent::KeyRelayed { from, digit, .. } => self.on_key(from, digit).await,
            MediaEvent::Latched { side, addr, ssrc } => {
                tracing::debug!(call = %self.record.id, leg = ?side, %addr, ssrc, "media latched");
                if side == LegSide::B && self.stale_b == Some((addr, ssrc)) {
                    tracing::debug!(call = %self.record.id, %addr, "latched onto the party that left; dropping that latch");
                    self.media.unlatch(LegSide::B);
                    return;
                }
                if side == LegSide::B {
                    self.stale_b = None;
                }
                *(if side == LegSide::A { &mut self.a_source } else { &mut self.b_source }) = Some((addr, ssrc));
            }
            MediaEvent::Played { side, cookie } if cookie == self.local_cookie && self.telling == Some(side) => self.told(),
            MediaEvent::Played { side: LegSide::A, cookie } if cookie == self.local_cookie => self.on_played().await,
            MediaEvent::Played { .. } => {}
            MediaEvent::Digit { side, digit, .. } => {
                tracing::debug!(call = %self.record.id, leg = ?side, %digit, "digit from a leg the PBX answers");
                if side == LegSide::A {
                    self.ivr_input(crate::ivr::IvrInput::Digit(digit)).await;
                }
            }
            MediaEvent::LocalFailed { side, error } if self.telling == Some(side) => {
                tracing::warn!(call = %self.record.id, leg = ?side, %error, "no prompt for this codec; the call goes on");
                self.told();
            }
            MediaEvent::LocalFailed { side, error } if self.held == Some(side) => {
                // A codec we cannot make: the held phone hears silence, as
                // it would without a PBX; the call goes on.
                tracing::warn!(call = %self.record.id, leg = ?side, %error, "no hold music for this codec");
            }
            MediaEvent::LocalFailed { side, error } => {
                tracing::warn!(call = %self.record.id, leg = ?side, %error, "the PBX cannot play to this leg; ending the call");
                self.hangup(None, "failed").await;
            }
            MediaEvent::Silent { secs } => {
                if self.phase == Phase::Connected || self.a_answered {
                    tracing::info!(call = %self.record.id, secs, "no media from either side: ending the call");
                    self.hangup(None, "media-timeout").await;
                }
            }
        }
    }

    /// Which leg a message belongs to, by Call-ID: A, or the fork index.
    fn leg_of(&self, call_id: &str) -> Option<Leg> {
        if call_id == self.a.call_id {
            return Some(Leg::A);
        }
        self.forks.iter().position(|f| f.dialog.call_id == call_id).map(Leg::Fork)
    }

    async fn on_sip(&mut self, ev: SipEvent) {
        match ev {
            SipEvent::Request { req, key, peer, responder } => self.on_request(req, key, peer, responder).await,
            SipEvent::Response { key, resp } => self.on_response(key, resp).await,
            SipEvent::Timeout { key } => self.on_tx_timeout(key).await,
            SipEvent::Pickup { req, key, peer, responder, picker } => self.on_pickup(req, key, peer, responder, picker).await,
            SipEvent::TakeLeg { call_id, reply } => {
                let handover = self.give_party(&call_id).await;
                let _ = reply.send(handover);
            }
        }
    }

    /// Another extension picks this call up: its INVITE becomes the
    /// answered leg B (we are its UAS), every fork is cancelled, and the
    /// caller is answered (or switched from our ringback) as if a callee
    /// had answered. Too late (answered, ended, nothing ringing): 480.
    async fn on_pickup(&mut self, req: Request, key: TxKey, peer: Peer, responder: Responder, picker: String) {
        let ringing = self.forks.iter().any(|f| matches!(f.state, ForkState::Calling | ForkState::Ringing)) || self.parked.is_some();
        if self.phase != Phase::Ringing || !ringing || self.winner.is_some() {
            return responder.respond(key, response_to(&req, 480, Some(&crate::registrar::new_tag())));
        }
        let Ok(offer) = Sdp::parse(&req.body) else { return responder.respond(key, response_to(&req, 488, Some(&crate::registrar::new_tag()))) };
        let mut sdp = LegSdp::new(false);
        if take_offer(&mut sdp, &offer, &req.body).is_err() {
            return responder.respond(key, response_to(&req, 488, Some(&crate::registrar::new_tag())));
        }
        // The caller's codec when we already answered it, else G.711.
        let prefer = self.a_sdp.media.codec.filter(|_| self.a_answered).or(Some((tsunagu_media::Codec::Pcmu, 0)));
        let ports = self.media.b;
        let Ok(answer) = make_answer(&offer, &mut sdp, prefer, Direction::SendRecv, self.media.address, ports.rtp, ports.rtcp) else {
            return responder.respond(key, response_to(&req, 488, Some(&crate::registrar::new_tag())));
        };
        tracing::info!(call = %self.record.id, picker = %picker, parked = ?self.parked, "picked up");
        self.parked = None;
        self.park_deadline = None;
        self.svc.calls.unpark(self.token);
        self.cancel_forks().await;
        self.svc.calls.ringing_ended(self.token);
        (self.step_deadline, self.overall_deadline, self.recall_to, self.hunt) = (None, None, None, None);
        let dialog = dialog::incoming(&req, peer, crate::registrar::new_tag());
        self.svc.calls.register_call_id(&dialog.call_id, self.inbox.clone());
        self.call_ids.push(dialog.call_id.clone());
        let mut r = response_to(&req, 200, Some(&dialog.local_tag));
        r.headers.insert(Name::CONTACT, self.svc.local.contact(peer.transport));
        r.headers.insert(Name::ALLOW, crate::sip::core::ALLOW);
        r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(answer);
        if !peer.transport.is_reliable() {
            let now = Instant::now();
            self.b_200 = Some(Retransmit { bytes: r.to_bytes(), next: now + Duration::from_millis(500), interval: Duration::from_millis(500), give_up: now + Duration::from_secs(32) });
        }
        responder.respond(key, r);
        self.forks.push(Fork::joined(dialog, ForkTarget::Device { ext: picker.clone(), device: "pickup".into() }, sdp.clone()));
        self.winner = Some(self.forks.len() - 1);
        self.b_sdp = sdp;
        // An early-media fork may have latched leg B; the picker is another phone.
        self.media.unlatch(LegSide::B);
        if self.a_answered {
            self.media.set_local(LegSide::A, false);
            self.local = None;
            self.queue_next = None;
        } else {
            match self.answer_a(Direction::SendRecv) {
                Ok(a) => self.send_a_200(a),
                Err(_) => {
                    self.fail(488, "no common codec").await;
                    return;
                }
            }
        }
        self.push_media();
        self.phase = Phase::Connected;
        self.record.answered_at = Some(unix_ms());
        self.record.result = "answered".into();
        self.record.answered_by = Some(picker.clone());
        self.record.answered_device = Some("pickup".into());
        self.svc.presence.begin(&picker);
        self.busy_marks.push(picker);
        self.save().await;
    }

    async fn on_request(&mut self, req: Request, key: TxKey, _peer: Peer, responder: Responder) {
        let Some(leg) = self.leg_of(&req.core.call_id) else {
            return responder.respond(key, response_to(&req, 481, None));
        };
        let side = match leg {
            Leg::A => LegSide::A,
            Leg::Fork(i) if Some(i) == self.winner => LegSide::B,
            // A leg that is gone from the call (a transferor we released)
            // may still say goodbye.
            Leg::Fork(_) if req.method == "BYE" => return responder.respond(key, response_to(&req, 200, None)),
            Leg::Fork(_) => {
                if req.method != "ACK" {
                    responder.respond(key, response_to(&req, 481, None));
                }
                return;
            }
        };
        match req.method.as_str() {
            "ACK" => {
                if side == LegSide::B {
                    self.b_200 = None;
                }
                if side == LegSide::A {
                    self.a_200 = None;
                    // An ACK for a re-INVITE we passed to B carries nothing
                    // B needs (we answered A with B's answer already).
                }
            }
            // A CANCEL belongs to the INVITE with its branch (RFC 3261
            // §9.2); one for no INVITE of ours gets 481.
            "CANCEL" if side == LegSide::A && req.core.top_branch() != self.a_invite.core.top_branch() => {
                responder.respond(key, response_to(&req, 481, None));
            }
            "CANCEL" => {
                // The same To tag as the 487 that follows (RFC 3261 §9.2).
                let tag = if side == LegSide::A { Some(self.a.local_tag.clone()) } else { None };
                responder.respond(key, response_to(&req, 200, tag.as_deref()));
                if side == LegSide::A && self.phase == Phase::Ringing && !self.a_answered {
                    tracing::info!(call = %self.record.id, "caller cancelled");
                    self.fail(487, "").await;
                }
            }
            "BYE" => {
                responder.respond(key, response_to(&req, 200, None));
                if side == LegSide::A {
                    self.a_gone = true;
                }
                if self.phase == Phase::Ringing && side == LegSide::A {
                    // A BYE before our final answer: treat like CANCEL.
                    self.fail(487, "").await;
                    return;
                }
                self.hangup(Some(side), "answered").await;
            }
            "INVITE" | "UPDATE" => self.on_offer(side, req, key, responder).await,
            // On-demand recording: `Record: on|off` (desk phones' record
            // keys, and the SDK's `request_recording`), when the policy
            // allows it (`recording_mode` other than none).
            "INFO" if req.headers.get_raw(&Name::parse("Record")).next().is_some() => {
                let value = req.headers.get_raw(&Name::parse("Record")).next().map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
                let on = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return responder.respond(key, with_warning(response_to(&req, 400, None), "Record: on or off")),
                };
                if self.phase != Phase::Connected {
                    return responder.respond(key, response_to(&req, 491, None));
                }
                if !on {
                    if self.recording {
                        self.media.record(None);
                        self.recording = false;
                        tracing::info!(call = %self.record.id, "recording stopped on request");
                    }
                    return responder.respond(key, response_to(&req, 200, None));
                }
                let allowed = self.svc.store.recording_wanted(None, None, None, None, true).await.unwrap_or(false);
                if !allowed {
                    return responder.respond(key, response_to(&req, 403, None));
                }
                self.start_recording(false).await;
                let code = if self.recording { 200 } else { 500 };
                responder.respond(key, response_to(&req, code, None));
            }
            "INFO" => {
                let ctype = req.headers.get_raw(&Name::CONTENT_TYPE).next().map(|v| v.to_string()).unwrap_or_default();
                let to = side.other();
                let to_has_te = self.leg_sdp(to).media.telephone_event.is_some();
                if side == LegSide::A && matches!(self.local, Some(Local::Ivr(..))) {
                    // Keys sent as SIP INFO by a caller in the menus.
                    responder.respond(key, response_to(&req, 200, None));
                    if let Some((digit, _)) = tsunagu_media::dtmf::parse_info(&ctype, &req.body) {
                        self.ivr_input(crate::ivr::IvrInput::Digit(digit)).await;
                    }
                    return;
                }
                let keyed = tsunagu_media::dtmf::parse_info(&ctype, &req.body);
                match keyed {
                    // The other leg takes RFC 4733: play it there.
                    Some((digit, ms)) if to_has_te => {
                        responder.respond(key, response_to(&req, 200, None));
                        self.media.send_dtmf(to, digit, ms);
                    }
                    _ => self.pass_request(side, req, key, responder, None),
                }
                if let Some((digit, _)) = keyed {
                    self.on_key(side, digit).await;
                }
            }
            "OPTIONS" => {
                let mut r = response_to(&req, 200, None);
                r.headers.insert(Name::ALLOW, crate::sip::core::ALLOW);
                responder.respond(key, r);
            }
            "PRACK" => {
                // Only for our reliable provisional of the moment.
                let rack_ok = req.headers.get_raw(&Name::RACK).next().and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u32>().ok())) == Some(self.a_rseq);
                if side == LegSide::A && self.a_100rel && rack_ok {
                    self.a_rel = None;
                    responder.respond(key, response_to(&req, 200, None));
                } else {
                    responder.respond(key, response_to(&req, 481, None));
                }
            }
            "REFER" if self.phase == Phase::Connected => self.on_refer(side, req, key, responder).await,
            "REFER" => self.pass_request(side, req, key, responder, None),
            _ => self.pass_request(side, req, key, responder, None),
        }
    }

    fn leg_sdp(&self, side: LegSide) -> &LegSdp {
        match side {
            LegSide::A => &self.a_sdp,
            LegSide::B => &self.b_sdp,
        }
    }

    /// The dialog of a connected leg.
    fn dialog_mut(&mut self, side: LegSide) -> Option<&mut Dialog> {
        match side {
            LegSide::A => Some(&mut self.a),
            LegSide::B => self.winner.map(|i| &mut self.forks[i].dialog),
        }
    }

    /// A re-INVITE or UPDATE: a session refresh (same SDP version) is
    /// answered here; a new offer (hold, resume, a new address) is passed
    /// to the other leg with the SDP rewritten for it.
    async fn on_offer(&mut self, side: LegSide, req: Request, key: TxKey, responder: Responder) {
        // A new offer (a hold, say) ends a prompt playing to one party.
        self.told();
        if req.method == "INVITE" && self.phase == Phase::Ringing {
            return responder.respond(key, response_to(&req, 491, None));
        }
        self.timer(side).refreshed(Instant::now());
        if let Some(seq) = self.dialog_mut(side).and_then(|d| d.remote_cseq) {
            if req.core.cseq.seq <= seq && req.method == "INVITE" {
                return responder.respond(key, response_to(&req, 500, None));
            }
        }
        if let Some(d) = self.dialog_mut(side) {
            d.remote_cseq = Some(req.core.cseq.seq);
            if let Some(t) = contact_uri(&req.headers) {
                d.remote_target = t;
            }
        }
        let offer = if req.body.is_empty() {
            None
        } else {
            match Sdp::parse(&req.body) {
                Ok(s) => Some(s),
                Err(_) => return responder.respond(key, response_to(&req, 400, None)),
            }
        };
        let unchanged = offer.as_ref().map(|o| is_unchanged(self.leg_sdp(side).last_received.as_deref(), o)).unwrap_or(true);
        if unchanged {
            // Refresh: answer with what we said last.
            let mut r = response_to(&req, 200, None);
            let transport = self.dialog_mut(side).map_or(tsunagu_sip::TransportKind::Udp, |d| d.peer.transport);
            r.headers.insert(Name::CONTACT, self.svc.local.contact(transport));
            // The phone refreshes: it is the UAC of its refreshes.
            if let SessionTimer::Theirs { secs, .. } = *self.timer(side) {
                r.headers.insert(Name::SESSION_EXPIRES, format!("{secs};refresher=uac"));
                r.headers.insert(Name::REQUIRE, "timer");
            }
            if let Some(sdp) = self.leg_sdp(side).last_sent.clone() {
                r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
                r.body = Bytes::from(sdp);
            }
            return responder.respond(key, r);
        }
        let Some(offer) = offer else { return };
        let leg = if side == LegSide::A { &mut self.a_sdp } else { &mut self.b_sdp };
        if take_offer(leg, &offer, &req.body).is_err() {
            return responder.respond(key, response_to(&req, 488, None));
        }
        let to = side.other();
        // Hold music: the held phone is told we send only (so it takes our
        // audio even when the holder said "inactive"), and hears the PBX.
        let mut forwarded = offer.clone();
        let mut hold = None;
        if is_hold(&offer) && self.held.is_none() {
            if let Some(music) = self.hold_music().await {
                if let Some(i) = forwarded.audio_index() {
                    forwarded.media[i].set_direction(Direction::SendOnly);
                }
                hold = Some(HoldChange::Start { held: to, holder_offered: audio_direction(&offer), music });
            }
        } else if !is_hold(&offer) && self.held == Some(to) {
            hold = Some(HoldChange::End { held: to });
        }
        let ports = self.media.ports(to);
        let addr = self.media.address;
        let to_sdp = if to == LegSide::A { &mut self.a_sdp } else { &mut self.b_sdp };
        let Ok(new_offer) = make_offer(&forwarded, to_sdp, addr, ports.rtp, ports.rtcp) else {
            return responder.respond(key, response_to(&req, 488, None));
        };
        self.next_hold = hold;
        self.pass_request(side, req, key, responder, Some((offer, new_offer)));
    }

    /// The hold music for this call, or None when the setting turns it off
    /// (`music_on_hold` empty or `off`: holds pass across as they are).
    async fn hold_music(&self) -> Option<Arc<[i16]>> {
        let name = match self.svc.store.hold_music_for(self.record.did.as_deref(), Some(self.record.callee.as_str())).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(call = %self.record.id, error = %e, "hold music setting unreadable; built-in music plays");
                crate::announce::HOLD_MUSIC.to_string()
            }
        };
        if name.is_empty() || name == "off" {
            return None;
        }
        Some(self.svc.prompts.hold_music(&name).await)
    }

    /// Send `req` (from `side`) on to the other leg; its answer comes back
    /// through `on_response` and is passed back.
    fn pass_request(&mut self, side: LegSide, req: Request, key: TxKey, responder: Responder, offer: Option<(Sdp, Vec<u8>)>) {
        let to = side.other();
        let ctype = req.headers.get_raw(&Name::CONTENT_TYPE).next().map(|v| v.to_string());
        let mut extra: Vec<(&str, String)> = Vec::new();
        for n in ["Event", "Subscription-State", "Info-Package", "Session-Expires", "Min-SE", "Supported", "Refer-To", "Referred-By"] {
            if let Some(v) = req.headers.get_raw(&Name::parse(n)).next() {
                if n == "Session-Expires" || n == "Min-SE" {
                    continue; // session timers are per leg
                }
                extra.push((n, v.to_string()));
            }
        }
        let (body, sdp_offer): (Option<Vec<u8>>, Option<Sdp>) = match offer {
            Some((o, new)) => (Some(new), Some(o)),
            None => ((!req.body.is_empty()).then(|| req.body.to_vec()), None),
        };
        let ctype = if sdp_offer.is_some() { Some("application/sdp".to_string()) } else { ctype };
        let token = self.token;
        let local = self.svc.local;
        let Some(dialog) = self.dialog_mut(to) else {
            return responder.respond(key, response_to(&req, 481, None));
        };
        let body_ref = body.as_deref().zip(ctype.as_deref()).map(|(b, c)| (c, b));
        let Some(out) = dialog.request_for(&local, token, &req.method, None, &extra, body_ref) else {
            return responder.respond(key, response_to(&req, 500, None));
        };
        let peer = dialog.peer;
        let branch = out.core.top_branch().unwrap_or_default().to_string();
        let method = req.method.clone();
        let hold = self.next_hold.take();
        self.pending.insert(branch, Pending { from: side, key, responder, request: req, method, offer: sdp_offer, hold });
        self.svc.endpoint.send_request(out, peer);
    }

    /// Send a request of our own in a connected leg's dialog.
    fn send_in_dialog(&mut self, side: LegSide, method: &str, body: Option<(&str, &[u8])>) {
        let token = self.token;
        let local = self.svc.local;
        let Some(d) = self.dialog_mut(side) else { return };
        if let Some(req) = d.request_for(&local, token, method, None, &[], body) {
            let peer = d.peer;
            self.svc.endpoint.send_request(req, peer);
        }
    }

    /// Take the caller off the hold the transferor had put it on: our own
    /// re-INVITE with its original offer's codecs, sending both ways.
    fn resume_a(&mut self) {
        let ports = self.media.a;
        let mut template = self.a_offer.clone();
        if let Some(m) = template.audio_index() {
            template.media[m].set_direction(Direction::SendRecv);
        }
        let Ok(offer) = make_offer(&template, &mut self.a_sdp, self.media.address, ports.rtp, ports.rtcp) else { return };
        let token = self.token;
        let local = self.svc.local;
        if let Some(req) = self.a.request_for(&local, token, "INVITE", None, &[], Some(("application/sdp", &offer))) {
            self.a_resume_branch = req.core.top_branch().map(str::to_string);
            self.svc.endpoint.send_request(req, self.a.peer);
        }
    }

    /// A leg's session timer.
    fn timer(&mut self, side: LegSide) -> &mut SessionTimer {
        match side {
            LegSide::A => &mut self.a_timer,
            LegSide::B => &mut self.b_timer,
        }
    }

    /// Refresh a leg's session (we are its refresher): an UPDATE with the
    /// same SDP, again at half the interval. A 408 or 481 means the leg's
    /// phone is gone.
    fn refresh(&mut self, side: LegSide, secs: u64) {
        *self.timer(side) = SessionTimer::Ours { secs, at: Instant::now() + Duration::from_secs(secs / 2) };
        let Some(sdp) = self.leg_sdp(side).last_sent.clone() else { return };
        let extra = [("Session-Expires", format!("{secs};refresher=uac")), ("Supported", "timer".to_string())];
        let token = self.token;
        let local = self.svc.local;
        let Some(d) = self.dialog_mut(side) else { return };
        if let Some(req) = d.request_for(&local, token, "UPDATE", None, &extra, Some(("application/sdp", &sdp))) {
            let peer = d.peer;
            let branch = req.core.top_branch().unwrap_or_default().to_string();
            self.pending_refresh.insert(branch);
            self.svc.endpoint.send_request(req, peer);
        }
    }

    async fn on_response(&mut self, key: TxKey, resp: Response) {
        if let Some(p) = self.pending.remove(&key.branch) {
            if resp.code < 200 {
                self.pending.insert(key.branch, p);
                return;
            }
            return self.pass_response(p, resp).await;
        }
        if self.pending_refresh.contains(&key.branch) {
            if resp.code >= 200 {
                self.pending_refresh.remove(&key.branch);
                if matches!(resp.code, 408 | 481) {
                    tracing::info!(call = %self.record.id, code = resp.code, "session refresh failed: the callee is gone");
                    self.hangup(None, "session-expired").await;
                }
            }
            return;
        }
        if self.a_resume_branch.as_deref() == Some(key.branch.as_str()) {
            if resp.code >= 200 {
                self.a_resume_branch = None;
                if (200..300).contains(&resp.code) {
                    if let Some(ack) = self.a.ack_for(&self.svc.local, self.token, resp.core.cseq.seq, None) {
                        self.svc.endpoint.send_raw(self.a.peer, ack);
                    }
                    if let Ok(sdp) = Sdp::parse(&resp.body) {
                        if take_answer(&mut self.a_sdp, &sdp, &resp.body).is_ok() {
                            self.push_media();
                        }
                    }
                }
            }
            return;
        }
        if self.b_move_branch.as_deref() == Some(key.branch.as_str()) {
            if resp.code >= 200 && self.phase == Phase::Connected {
                self.on_moved(resp).await;
            }
            return;
        }
        if key.method != "INVITE" {
            return; // BYE, CANCEL, PRACK, INFO of ours
        }
        let Some(i) = self.forks.iter().position(|f| f.branch == key.branch || (f.dialog.call_id == resp.core.call_id && resp.core.cseq.seq == f.invite_cseq)) else { return };
        self.forks[i].got_response = true;
        match resp.code {
            100 => {}
            101..=199 => self.on_provisional(i, resp).await,
            200..=299 => self.on_answer(i, resp).await,
            _ => self.on_fork_failure(i, resp).await,
        }
    }

    async fn on_provisional(&mut self, i: usize, resp: Response) {
        if self.forks[i].state == ForkState::Calling {
            self.forks[i].state = ForkState::Ringing;
        }
        if resp.core.to.tag.is_some() {
            self.forks[i].dialog.confirm_from_response(&resp);
        }
        // 100rel (RFC 3262): acknowledge a reliable provisional with PRACK.
        let requires_100rel = resp.headers.get_raw(&Name::REQUIRE).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("100rel")));
        if requires_100rel {
            if let Some(rseq) = resp.headers.get_raw(&Name::RSEQ).next().and_then(|v| v.trim().parse::<u32>().ok()) {
                let rack = format!("{rseq} {} INVITE", resp.core.cseq.seq);
                let token = self.token;
                let local = self.svc.local;
                let d = &mut self.forks[i].dialog;
                if let Some(req) = d.request_for(&local, token, "PRACK", None, &[("RAck", rack)], None) {
                    self.svc.endpoint.send_request(req, d.peer);
                }
            }
        }
        if self.phase != Phase::Ringing {
            return;
        }
        let has_sdp = !resp.body.is_empty();
        if self.a_answered {
            // The caller hears our ringback, not the callee's early media;
            // keep the callee's answer for when it answers.
            if has_sdp && self.early_fork.is_none() {
                let mut b_sdp = self.forks[i].sdp.clone();
                if let Ok(sdp) = Sdp::parse(&resp.body) {
                    if take_answer(&mut b_sdp, &sdp, &resp.body).is_ok() {
                        self.b_sdp = b_sdp;
                        self.early_fork = Some(i);
                    }
                }
            }
            return;
        }
        if has_sdp && self.early_answer.is_none() {
            self.b_sdp = self.forks[i].sdp.clone();
            self.early_fork = Some(i);
            // Early media (a carrier's ringback or announcement): connect
            // the media now and give the caller a 183 with our answer.
            if let Ok(sdp) = Sdp::parse(&resp.body) {
                if take_answer(&mut self.b_sdp, &sdp, &resp.body).is_ok() {
                    if let Ok(ans) = self.answer_a(audio_direction(&sdp)) {
                        self.early_answer = Some(ans.clone());
                        self.push_media();
                        let mut r = self.a_response(183);
                        r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
                        r.body = Bytes::from(ans);
                        self.send_provisional(r);
                        self.sent_ringing = true;
                        return;
                    }
                }
            }
        }
        if !self.sent_ringing && resp.code == 180 {
            self.sent_ringing = true;
            let r = self.a_response(180);
            self.send_provisional(r);
        }
    }

    /// A 180/183 to the caller; reliably (RFC 3262) when it supports
    /// 100rel: RSeq, retransmitted until its PRACK.
    fn send_provisional(&mut self, mut r: Response) {
        if self.a_100rel && self.a_rel.is_none() {
            self.a_rseq += 1;
            r.headers.insert(Name::REQUIRE, "100rel");
            r.headers.insert(Name::RSEQ, self.a_rseq.to_string());
            if !self.a.peer.transport.is_reliable() {
                let now = Instant::now();
                self.a_rel = Some(Retransmit { bytes: r.to_bytes(), next: now + Duration::from_millis(500), interval: Duration::from_millis(500), give_up: now + Duration::from_secs(32) });
            }
        }
        self.a_responder.respond(self.a_key.clone(), r);
    }

    fn answer_a(&mut self, direction: Direction) -> Result<Vec<u8>, NegotiationError> {
        let ports = self.media.a;
        make_answer(&self.a_offer, &mut self.a_sdp, self.b_sdp.media.codec, direction, self.media.address, ports.rtp, ports.rtcp)
    }

    fn push_media(&self) {
        self.media.set_leg(LegSide::A, self.a_sdp.media.clone());
        self.media.set_leg(LegSide::B, self.b_sdp.media.clone());
    }

    async fn on_answer(&mut self, i: usize, resp: Response) {
        // ACK every 2xx (retransmissions too), from the dialog it creates.
        let mut d = self.forks[i].dialog.clone();
        d.confirm_from_response(&resp);
        let ack = d.ack_for(&self.svc.local, self.token, resp.core.cseq.seq, None);
        if let Some(ack) = &ack {
            self.svc.endpoint.send_raw(d.peer, ack.clone());
        }
        if self.winner == Some(i) || self.forks[i].state == ForkState::Answered {
            return; // a retransmitted 2xx, ACKed again above
        }
        if self.winner.is_some() || self.phase != Phase::Ringing {
            // Another fork won (or the caller left): hang this one up.
            self.forks[i].dialog = d;
            self.forks[i].state = ForkState::Done;
            let token = self.token;
            let local = self.svc.local;
            if let Some(bye) = self.forks[i].dialog.request_for(&local, token, "BYE", None, &[], None) {
                self.svc.endpoint.send_request(bye, self.forks[i].dialog.peer);
            }
            return;
        }
        self.forks[i].dialog = d;
        self.forks[i].state = ForkState::Answered;
        self.winner = Some(i);
        self.svc.calls.ringing_ended(self.token);
        self.step_deadline = None;
        self.overall_deadline = None;
        // Everyone else stops ringing.
        for j in 0..self.forks.len() {
            if j != i && matches!(self.forks[j].state, ForkState::Calling | ForkState::Ringing) {
                self.cancel_fork(j);
            }
        }
        if self.early_fork != Some(i) {
            // Early media came from another fork (or none did): this one's
            // SDP decides, and its media is to be latched afresh (leg B may
            // still follow another phone: a fork's early media, or the
            // transferor that spoke here before a transfer).
            self.b_sdp = self.forks[i].sdp.clone();
            self.early_answer = None;
            self.media.unlatch(LegSide::B);
        }
        let answer_sdp = match Sdp::parse(&resp.body) {
            // Answered by us already: the caller keeps the answer it has,
            // and the relay transcodes when the callee chose another codec.
            Ok(sdp) if !resp.body.is_empty() && self.a_answered => take_answer(&mut self.b_sdp, &sdp, &resp.body).map(|_| Vec::new()),
            Ok(sdp) if !resp.body.is_empty() => match take_answer(&mut self.b_sdp, &sdp, &resp.body) {
                Ok(()) => self.answer_a(audio_direction(&sdp)),
                Err(e) => Err(e),
            },
            _ if self.a_answered && self.early_fork == Some(i) => Ok(Vec::new()),
            _ => match self.early_answer.clone() {
                Some(a) => Ok(a),
                None => Err(NegotiationError::NoAudio),
            },
        };
        let answer_sdp = match answer_sdp {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(call = %self.record.id, error = %e, "the callee's answer is unusable");
                self.winner = None;
                self.forks[i].state = ForkState::Done;
                let token = self.token;
                let local = self.svc.local;
                if let Some(bye) = self.forks[i].dialog.request_for(&local, token, "BYE", None, &[], None) {
                    self.svc.endpoint.send_request(bye, self.forks[i].dialog.peer);
                }
                self.fail(488, "no common codec").await;
                return;
            }
        };
        self.push_media();
        // Session timer towards B: when B names us the refresher (or says
        // nothing about it), refresh at half the interval.
        let b_se = resp.headers.get_raw(&Name::SESSION_EXPIRES).next().map(|v| v.to_string());
        if let Some(se) = b_se {
            let secs = se.split(';').next().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(self.session_expires()).max(self.min_se());
            let now = Instant::now();
            self.b_timer = if se.contains("refresher=uas") { SessionTimer::Theirs { secs, deadline: now + Duration::from_secs(secs) } } else { SessionTimer::Ours { secs, at: now + Duration::from_secs(secs / 2) } };
        }
        if self.a_answered {
            // From the PBX's own audio to the callee's: same ports, so no
            // re-INVITE to the caller.
            self.media.set_local(LegSide::A, false);
            self.local = None;
            self.queue_next = None;
            self.recall_to = None;
            if std::mem::take(&mut self.a_resume) {
                self.resume_a();
            }
        } else {
            self.send_a_200(answer_sdp);
        }
        self.phase = Phase::Connected;
        self.a_rel = None;
        self.record.answered_at = Some(unix_ms());
        self.record.result = "answered".into();
        match &self.forks[i].target {
            ForkTarget::Device { ext, device } => {
                self.record.answered_by = Some(ext.clone());
                self.record.answered_device = Some(device.clone());
                self.svc.presence.begin(ext);
                self.busy_marks.push(ext.clone());
            }
            ForkTarget::Trunk { trunk, number, .. } => {
                self.record.answered_by = Some(number.clone());
                self.record.trunk = Some(trunk.name.clone());
            }
        }
        tracing::info!(call = %self.record.id, caller = %self.record.caller, answered_by = ?self.record.answered_by, "call answered");
        self.save().await;
        if !self.recording {
            // The callee's own policy ("record this user's calls") is known
            // only now; no notice then, the call is already up.
            let callee = self.record.answered_by.clone();
            if let Ok(true) = self.svc.store.recording_wanted(None, callee.as_deref(), None, None, false).await {
                self.start_recording(false).await;
            }
        }
    }

    /// Our 200 to the caller's INVITE with `answer_sdp`: the session timer
    /// it asked for, and retransmission until its ACK over UDP.
    fn send_a_200(&mut self, answer_sdp: Vec<u8>) {
        let mut r = self.a_response(200);
        r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
        r.headers.insert(Name::ALLOW, crate::sip::core::ALLOW);
        let a_wants_timer = self.a_invite.headers.get_raw(&Name::SESSION_EXPIRES).next().map(|v| v.to_string());
        let a_supports_timer = self.a_invite.headers.get_raw(&Name::SUPPORTED).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("timer")));
        if let Some(se) = a_wants_timer.filter(|_| a_supports_timer) {
            let secs = se.split(';').next().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(self.session_expires()).max(self.min_se());
            r.headers.insert(Name::SESSION_EXPIRES, format!("{secs};refresher=uac"));
            r.headers.insert(Name::REQUIRE, "timer");
            self.a_timer = SessionTimer::Theirs { secs, deadline: Instant::now() + Duration::from_secs(secs) };
        }
        r.body = Bytes::from(answer_sdp);
        let bytes = r.to_bytes();
        self.a_responder.respond(self.a_key.clone(), r);
        if !self.a.peer.transport.is_reliable() {
            let now = Instant::now();
            self.a_200 = Some(Retransmit { bytes, next: now + Duration::from_millis(500), interval: Duration::from_millis(500), give_up: now + Duration::from_secs(32) });
        }
        self.a_rel = None;
    }

    async fn on_fork_failure(&mut self, i: usize, resp: Response) {
        let code = resp.code;
        let prev = self.forks[i].state;
        if prev == ForkState::Done {
            return;
        }
        // A carrier that wants credentials: answer the challenge once.
        if matches!(code, 401 | 407) && !self.forks[i].auth_tried {
            if let ForkTarget::Trunk { trunk, .. } = &self.forks[i].target {
                if let (Some(user), Some(pass)) = (trunk.username.clone(), trunk.password.clone()) {
                    if self.retry_with_auth(i, &resp, &user, &pass) {
                        return;
                    }
                }
            }
        }
        // A phone without SRTP refuses an SRTP offer (an SRTP caller's):
        // offer it plain RTP once; the caller's leg stays encrypted.
        if code == 488 && prev != ForkState::Cancelling && self.phase == Phase::Ringing && self.retry_other_profile(i) {
            return;
        }
        self.forks[i].state = ForkState::Done;
        if prev == ForkState::Cancelling || self.phase != Phase::Ringing {
            return;
        }
        // A failing trunk hands the call to the next one (RFC 3261 §16.7
        // style: 408, 5xx; 503 above all).
        if matches!(code, 408 | 500..=599) {
            if let ForkTarget::Trunk { .. } = self.forks[i].target {
                if self.trunk_failover(i, code).await {
                    return;
                }
            }
        }
        if matches!(code, 486 | 600) {
            self.saw_busy = true;
        }
        if code != 487 {
            self.best_code = if self.best_code == 0 { code } else { self.best_code.min(code) };
        }
        self.after_fork_ended().await;
    }

    /// Try the next trunk for a failed trunk fork; false when none is left.
    async fn trunk_failover(&mut self, i: usize, code: u16) -> bool {
        let ForkTarget::Trunk { trunk, number, rest } = self.forks[i].target.clone() else { return false };
        tracing::warn!(call = %self.record.id, trunk = %trunk.name, code, "trunk failed; failing over");
        metrics::counter!("tsunagu_trunk_failovers_total", "trunk" => trunk.name.clone()).increment(1);
        let mut rest = rest;
        if rest.is_empty() {
            self.best_code = self.best_code.max(503);
            self.after_fork_ended().await;
            return true;
        }
        let next = rest.remove(0);
        if !self.invite_trunk(next, number, rest).await {
            self.after_fork_ended().await;
        }
        true
    }

    fn retry_other_profile(&mut self, i: usize) -> bool {
        if self.forks[i].profile_retried || !self.forks[i].sdp.savp || !matches!(self.forks[i].target, ForkTarget::Device { .. }) {
            return false;
        }
        let mut sdp = LegSdp::new(false);
        sdp.session_id = self.forks[i].sdp.session_id;
        let Ok(offer) = make_offer(&self.a_offer, &mut sdp, self.media.address, self.media.b.rtp, self.media.b.rtcp) else { return false };
        tracing::info!(call = %self.record.id, "SRTP offer refused (488); offering plain RTP");
        let f = &mut self.forks[i];
        f.profile_retried = true;
        f.sdp = sdp;
        f.offer = offer;
        self.resend_invite(i, None)
    }

    fn retry_with_auth(&mut self, i: usize, resp: &Response, user: &str, pass: &str) -> bool {
        let name = if resp.code == 407 { Name::PROXY_AUTHENTICATE } else { Name::WWW_AUTHENTICATE };
        let Some(ch) = resp.headers.get_raw(&name).find_map(|v| parse_challenge(v)) else { return false };
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let Some(auth) = answer_challenge(&ch, "INVITE", &self.forks[i].invite_uri, user, pass, &cnonce, 1) else { return false };
        let hname = if resp.code == 407 { "Proxy-Authorization" } else { "Authorization" };
        self.forks[i].auth_tried = true;
        self.resend_invite(i, Some((hname, auth)))
    }

    /// Send a fork's INVITE again as a new transaction of the same dialog
    /// attempt (next CSeq, new branch), with its headers and current offer,
    /// plus `auth` when answering a challenge.
    fn resend_invite(&mut self, i: usize, auth: Option<(&'static str, String)>) -> bool {
        let token = self.token;
        let f = &mut self.forks[i];
        f.dialog.local_cseq += 1;
        f.invite_cseq = f.dialog.local_cseq;
        f.branch = new_branch(token);
        f.state = ForkState::Calling;
        f.dialog.remote_tag = None;
        f.dialog.remote_target = f.invite_uri.clone();
        let mut headers = f.headers.clone();
        headers.extend(auth);
        let Some(req) = f.dialog.build_or_log(&self.svc.local, &f.branch, "INVITE", f.invite_cseq, &headers, Some(("application/sdp", &f.offer))) else { return false };
        self.svc.endpoint.send_request(req, f.dialog.peer);
        true
    }

    /// When every fork of the step has ended, go on with the hunt.
    async fn after_fork_ended(&mut self) {
        if self.phase != Phase::Ringing {
            return;
        }
        let live = self.forks.iter().any(|f| matches!(f.state, ForkState::Calling | ForkState::Ringing));
        if !live {
            self.step_deadline = None;
            self.next_step().await;
        }
    }

    async fn on_tx_timeout(&mut self, key: TxKey) {
        if let Some(p) = self.pending.remove(&key.branch) {
            p.responder.respond(p.key, response_to(&p.request, 408, None));
            if p.method == "INVITE" || p.method == "UPDATE" {
                // The other side vanished mid-call.
                self.hangup(None, "timeout").await;
            }
            return;
        }
        if self.pending_refresh.remove(&key.branch) {
            self.hangup(None, "session-expired").await;
            return;
        }
        if key.method == "INVITE" {
            if let Some(i) = self.forks.iter().position(|f| f.branch == key.branch) {
                if self.forks[i].state != ForkState::Done {
                    let prev = self.forks[i].state;
                    self.forks[i].state = ForkState::Done;
                    if prev != ForkState::Cancelling {
                        if let ForkTarget::Trunk { .. } = self.forks[i].target {
                            if self.trunk_failover(i, 408).await {
                                return;
                            }
                        }
                        self.best_code = if self.best_code == 0 { 408 } else { self.best_code };
                    }
                    self.after_fork_ended().await;
                }
            }
        }
    }

    /// Pass the final answer to a request we passed on back to its sender.
    async fn pass_response(&mut self, p: Pending, resp: Response) {
        let mut r = response_to(&p.request, resp.code, None);
        r.reason = resp.reason.clone();
        if (200..300).contains(&resp.code) && p.method == "INVITE" {
            // ACK the other leg's 2xx at once (its answer is all we need).
            let to = p.from.other();
            let token = self.token;
            let local = self.svc.local;
            let endpoint = self.svc.endpoint.clone();
            if let Some(d) = self.dialog_mut(to) {
                if let Some(t) = contact_uri(&resp.headers) {
                    d.remote_target = t;
                }
                if let Some(ack) = d.ack_for(&local, token, resp.core.cseq.seq, None) {
                    endpoint.send_raw(d.peer, ack);
                }
            }
        }
        if let (Some(offer), true) = (&p.offer, (200..300).contains(&resp.code)) {
            let to = p.from.other();
            let parsed = Sdp::parse(&resp.body);
            let answered = match parsed {
                Ok(sdp) => {
                    let leg = if to == LegSide::A { &mut self.a_sdp } else { &mut self.b_sdp };
                    take_answer(leg, &sdp, &resp.body).map(|_| audio_direction(&sdp))
                }
                Err(_) => Err(NegotiationError::NoAudio),
            };
            // Our answer to a holder whose offer we rewrote answers what it
            // offered (RFC 3264: inactive is answered inactive).
            let answered = match (&p.hold, answered) {
                (Some(HoldChange::Start { holder_offered, .. }), Ok(_)) => Ok(holder_offered.reversed()),
                (_, a) => a,
            };
            match answered {
                Ok(dir) => {
                    let ports = self.media.ports(p.from);
                    let other = self.leg_sdp(to).media.clone();
                    let from_sdp = if p.from == LegSide::A { &mut self.a_sdp } else { &mut self.b_sdp };
                    match make_answer(offer, from_sdp, other.codec, dir, self.media.address, ports.rtp, ports.rtcp) {
                        Ok(ans) => {
                            r.headers.insert(Name::CONTENT_TYPE, "application/sdp");
                            r.body = Bytes::from(ans);
                            self.push_media();
                            match p.hold.clone() {
                                Some(HoldChange::Start { held, music, .. }) => {
                                    self.media.set_local(held, true);
                                    self.media.play(held, vec![PlayItem::Loop(music)], 0);
                                    self.held = Some(held);
                                    tracing::info!(call = %self.record.id, leg = ?held, "on hold: the PBX plays music");
                                }
                                Some(HoldChange::End { held }) => {
                                    self.media.set_local(held, false);
                                    self.held = None;
                                }
                                None => {}
                            }
                        }
                        Err(_) => {
                            r = response_to(&p.request, 488, None);
                        }
                    }
                }
                Err(_) => r = response_to(&p.request, 488, None),
            }
            let transport = self.dialog_mut(p.from).map(|d| d.peer.transport);
            if let Some(t) = transport {
                r.headers.insert(Name::CONTACT, self.svc.local.contact(t));
            }
        } else if !resp.body.is_empty() {
            if let Some(ct) = resp.headers.get_raw(&Name::CONTENT_TYPE).next() {
                r.headers.insert(Name::CONTENT_TYPE, ct.clone());
                r.body = resp.body.clone();
            }
        }
        p.responder.respond(p.key, r);
    }

    /// End a connected call: BYE to every leg except `from` (which hung up).
    async fn hangup(&mut self, from: Option<LegSide>, result: &str) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.phase == Phase::Ringing {
            self.fail(480, "").await;
            return;
        }
        for side in [LegSide::A, LegSide::B] {
            if Some(side) != from {
                self.send_in_dialog(side, "BYE", None);
            }
        }
        if result != "answered" {
            self.record.result = result.into();
        }
        self.phase = Phase::Ended;
    }

    /// Close the call record (once) and free the people on it.
    async fn finish(&mut self) {
        self.svc.calls.ringing_ended(self.token);
        self.svc.calls.unpark(self.token);
        if self.record.ended_at.is_some() {
            return;
        }
        self.record.ended_at = Some(unix_ms());
        // Free the extensions before the record is written, so whoever sees
        // the ended record also sees them idle.
        for ext in self.busy_marks.drain(..) {
            self.svc.presence.end(&ext);
        }
        self.save().await;
        tracing::info!(call = %self.record.id, result = %self.record.result, secs = self.record.duration_secs(), "call ended");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    A,
    Fork(usize),
}

/// `resp` with a Warning saying why (RFC 3261 §20.43, code 399 for our
/// own text); unchanged when there is nothing to say.
fn with_warning(mut resp: Response, why: &str) -> Response {
    if !why.is_empty() {
        resp.headers.insert(Name::WARNING, format!("399 tsunagu \"{}\"", why.replace('"', "'")));
    }
    resp
}

/// The Call-ID an attended transfer's Refer-To names in its Replaces
/// (`<sip:1003@pbx?Replaces=CALLID%3Bto-tag%3D..%3Bfrom-tag%3D..>`).
fn replaces_call_id(req: &Request) -> Option<String> {
    let v = req.headers.get_raw(&Name::parse("Refer-To")).next()?.to_string();
    let lower = v.to_ascii_lowercase();
    let at = lower.find("replaces=")? + "replaces=".len();
    let raw = v[at..].split(['&', '>']).next()?;
    let decoded = tsunagu_sip::message::percent_decode(raw);
    let call_id = decoded.split(';').next()?.trim();
    (!call_id.is_empty()).then(|| call_id.to_string())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Whether an offer puts its sender's peer on hold (RFC 3264 §8.4:
/// sendonly or inactive; RFC 2543's c=0.0.0.0 from older phones).
fn is_hold(offer: &Sdp) -> bool {
    let Some(i) = offer.audio_index() else { return false };
    let dir = offer.media[i].direction();
    matches!(dir, Direction::SendOnly | Direction::Inactive) || offer.media_addr(i).is_some_and(|a| a.is_unspecified())
}
