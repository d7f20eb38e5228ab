//! Transfers, call waiting, digits and a push wake-up with the SDK against
//! real phones (baresip, and linphonec for one call) through the PBX.
//!
//! With `transfer_mode = phones` the PBX passes REFER and NOTIFY between
//! the legs of a call, so these are transfers the phones carry out: the
//! transferee calls the target through the PBX and reports by NOTIFY.
//! (Blind transfers the PBX performs itself, with recall, are in
//! e2e_pbx_media; the attended transfer the PBX performs is here, with
//! `transfer_mode = pbx`.)

mod common;

use common::audio::{assert_hears, read_wav, tone_power};
use common::baresip::{Account as BaresipAccount, AnswerMode, Baresip};
use common::{Sandbox, Server};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tsunagu_client::audio::{AudioFormat, NullPort, SplitPort, ToneSource, WavSink};
use tsunagu_client::{Account, AccountEvent, AudioPort, CallEvent, RegEvent, RegistrationConfig};

const PW: &str = "secret-pass-1";
const EVENT_DEADLINE: Duration = Duration::from_secs(15);

struct Rig {
    _sb: Sandbox,
    s: Server,
    rt: tokio::runtime::Runtime,
    account: Account,
    events: UnboundedReceiver<AccountEvent>,
}

/// The PBX with 1001–1003, the SDK registered as 1001.
fn rig(name: &str) -> Rig {
    let sb = Sandbox::new(name);
    let s = Server::start(&sb);
    for e in ["1001", "1002", "1003"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    // These are the phones' own transfers: the PBX passes REFER across
    // (its own transfers, with recall, are tested in e2e_pbx_media).
    s.cli(&["setting", "set", "transfer_mode", "phones"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut config = RegistrationConfig::new("1001", PW, &s.sip_addr().to_string());
    config.expires = 300;
    let (account, mut events) = rt.block_on(Account::start(s.sip_addr(), config)).unwrap();
    registered(&rt, &mut events);
    Rig { _sb: sb, s, rt, account, events }
}

fn baresip(r: &Rig, user: &str, hz: f32) -> Baresip {
    let mut b = Baresip::builder(&r._sb, &format!("p{user}")).account(BaresipAccount::new(user, PW, r.s.sip_addr())).answer(AnswerMode::Auto).tone(hz).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    b
}

fn tone_port(hz: f32) -> Arc<dyn AudioPort> {
    Arc::new(SplitPort::new(Arc::new(ToneSource::new(AudioFormat::ENGINE, hz.into(), 8000).unwrap()), Arc::new(NullPort::default())).unwrap())
}

/// A tone of `hz` to send, and what is heard written to `path` (WAV).
fn recording_port(hz: f32, path: &std::path::Path) -> Arc<dyn AudioPort> {
    Arc::new(SplitPort::new(Arc::new(ToneSource::new(AudioFormat::ENGINE, hz.into(), 8000).unwrap()), Arc::new(WavSink::create(path, 8000).unwrap())).unwrap())
}

/// Another SDK phone, registered as `ext`.
fn sdk_phone(r: &Rig, ext: &str) -> (Account, UnboundedReceiver<AccountEvent>) {
    let mut config = RegistrationConfig::new(ext, PW, &r.s.sip_addr().to_string());
    config.expires = 300;
    let (account, mut events) = r.rt.block_on(Account::start(r.s.sip_addr(), config)).unwrap();
    registered(&r.rt, &mut events);
    (account, events)
}

/// The first event on `events` that `pick` takes (returns `Some` for);
/// the others are skipped. Fails after [`EVENT_DEADLINE`].
fn next_event<T>(rt: &tokio::runtime::Runtime, events: &mut UnboundedReceiver<AccountEvent>, what: &str, mut pick: impl FnMut(AccountEvent) -> Option<T>) -> T {
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => {
                    if let Some(t) = pick(ev) {
                        return t;
                    }
                }
                other => panic!("no {what}: {other:?}"),
            }
        }
    })
}

/// The next event of call `id` matching `want`, failing on the call's end
/// (unless that is what is wanted) or after the deadline.
fn wait_call(r: &mut Rig, id: &str, what: &str, want: impl Fn(&CallEvent) -> bool) -> CallEvent {
    next_event(&r.rt, &mut r.events, &format!("{what} on call {id}"), |ev| match ev {
        AccountEvent::Call { call_id, event } if call_id == id => {
            if let (false, CallEvent::Ended { code, reason }) = (want(&event), &event) {
                panic!("call {id} ended ({code} {reason}) while waiting for {what}");
            }
            want(&event).then_some(event)
        }
        _ => None,
    })
}

/// Wait until every call of `ids` has ended, in any order.
fn wait_all_ended(r: &mut Rig, ids: &[&str]) {
    let mut left: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    while !left.is_empty() {
        let ended = next_event(&r.rt, &mut r.events, &format!("end of {left:?}"), |ev| match ev {
            AccountEvent::Call { call_id, event: CallEvent::Ended { .. } } => Some(call_id),
            _ => None,
        });
        left.retain(|id| *id != ended);
    }
}

/// The Call-ID of the next incoming call.
fn incoming_call(rt: &tokio::runtime::Runtime, events: &mut UnboundedReceiver<AccountEvent>) -> String {
    next_event(rt, events, "incoming call", |ev| match ev {
        AccountEvent::IncomingCall { call_id, .. } => Some(call_id),
        _ => None,
    })
}

/// The next registration event must be a success.
fn registered(rt: &tokio::runtime::Runtime, events: &mut UnboundedReceiver<AccountEvent>) {
    next_event(rt, events, "registration", |ev| match ev {
        AccountEvent::Registration(RegEvent::Registered { .. }) => Some(()),
        AccountEvent::Registration(other) => panic!("registration: {other:?}"),
        _ => None,
    })
}

fn dial(r: &mut Rig, target: &str, hz: f32) -> String {
    let id = r.rt.block_on(r.account.dial_with_audio(target, tone_port(hz))).unwrap();
    wait_call(r, &id, "the answer", |e| matches!(e, CallEvent::Connected { .. }));
    id
}

/// Blind transfer from the SDK: 1001 talks to 1002, hands it over to 1003;
/// 1002 calls 1003 itself, the SDK hears the progress and hangs up.
#[test]
fn sdk_blind_transfer_hands_the_far_end_to_the_target() {
    let mut r = rig("xfer-blind");
    let mut b = baresip(&r, "1002", 1000.0);
    let mut c = baresip(&r, "1003", 1500.0);
    let a = dial(&mut r, "1002", 440.0);
    b.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    // Bad requests are refused at once, and the call goes on.
    r.account.transfer(&a, " ");
    assert_eq!(wait_call(&mut r, &a, "the refusal of an empty target", |e| matches!(e, CallEvent::TransferProgress { .. })), CallEvent::TransferProgress { code: 400, done: true });
    r.account.transfer("no-such-call", "1003");
    assert_eq!(wait_call(&mut r, "no-such-call", "the refusal of an unknown call", |e| matches!(e, CallEvent::TransferProgress { .. })), CallEvent::TransferProgress { code: 481, done: true });
    r.account.transfer(&a, "1003");
    // 202, then NOTIFYs ending with the target's 200.
    wait_call(&mut r, &a, "the transfer's success", |e| matches!(e, CallEvent::TransferProgress { code: 200..=299, done: true }));
    wait_call(&mut r, &a, "the end of the transferred call", |e| matches!(e, CallEvent::Ended { .. }));
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    // 1003 now hears 1002 (1000 Hz), not the SDK (440 Hz).
    let heard = c.wait_heard(2.0, EVENT_DEADLINE);
    assert_hears(&heard, 1000.0, &[440.0]);
    b.hangup();
    c.wait_event("CALL_CLOSED", EVENT_DEADLINE);
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// The far end transfers the SDK (baresip's REFER): the SDK calls the
/// target with the same audio, reports by NOTIFY, and the old call ends.
#[test]
fn sdk_carries_out_a_transfer_the_far_end_asks_for() {
    let mut r = rig("xfer-asked");
    let mut b = baresip(&r, "1002", 1000.0);
    let mut c = baresip(&r, "1003", 1500.0);
    let a = dial(&mut r, "1002", 440.0);
    b.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    b.command("transfer", &format!("sip:1003@{}", r.s.sip_addr())).expect("baresip transfer");
    let asked = wait_call(&mut r, &a, "the transfer request", |e| matches!(e, CallEvent::TransferRequested { .. }));
    assert!(matches!(&asked, CallEvent::TransferRequested { target } if target.contains("1003")), "{asked:?}");
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    // The target hears the SDK's tone: the audio moved to the new call.
    let heard = c.wait_heard(2.0, EVENT_DEADLINE);
    assert_hears(&heard, 440.0, &[1000.0]);
    // The old call is over (we hang it up after reporting success).
    wait_call(&mut r, &a, "the end of the old call", |e| matches!(e, CallEvent::Ended { .. }));
    c.hangup();
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// Attended transfer between two SDK phones and a real one: 1001 (SDK)
/// talks to 1002 (SDK), holds it, calls 1003 (baresip) and joins them:
/// REFER with Replaces to 1002, which calls 1003 carrying the Replaces
/// header and reports by NOTIFY; 1001's two calls end and 1002 talks to
/// 1003. (baresip 1.0 cannot be the transferee here: it puts the Refer-To's
/// URI headers into its Request-URI, which a PBX must refuse.)
#[test]
fn sdk_attended_transfer_joins_its_two_far_ends() {
    let mut r = rig("xfer-attended");
    let mut c = baresip(&r, "1003", 1500.0);
    let (other, mut other_events) = sdk_phone(&r, "1002");
    // 1001 calls 1002 (the other SDK phone, which answers with 1000 Hz).
    let dialled = r.rt.block_on(r.account.dial_with_audio("1002", tone_port(440.0))).unwrap();
    let incoming = incoming_call(&r.rt, &mut other_events);
    other.answer_with_audio(&incoming, tone_port(1000.0));
    wait_call(&mut r, &dialled, "the answer", |e| matches!(e, CallEvent::Connected { .. }));
    r.account.hold(&dialled, true);
    wait_call(&mut r, &dialled, "the hold", |e| matches!(e, CallEvent::OfferAnswered { .. }));
    let second = dial(&mut r, "1003", 440.0);
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    r.account.transfer_attended(&dialled, &second);
    // 1002 is asked to call 1003 in place of 1001's second call.
    let asked = next_event(&r.rt, &mut other_events, "the transfer request at 1002", |ev| match ev {
        AccountEvent::Call { event: CallEvent::TransferRequested { target }, .. } => Some(target),
        _ => None,
    });
    assert!(asked.contains("1003") && asked.contains("Replaces="), "{asked}");
    let (_, replaces) = tsunagu_client::call::split_refer_uri(&asked);
    assert!(replaces.is_some_and(|r| r.contains(";to-tag=") && r.contains(";from-tag=")), "{asked}");
    wait_call(&mut r, &dialled, "the transfer's success", |e| matches!(e, CallEvent::TransferProgress { code: 200..=299, done: true }));
    wait_all_ended(&mut r, &[&dialled, &second]);
    // 1003's call from 1002 is up, and it hears 1002's tone.
    let est = c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    assert!(est.peeruri.contains("1002"), "1003 should now talk to 1002: {est:?}");
    let heard = c.wait_heard(2.0, EVENT_DEADLINE);
    assert_hears(&heard, 1000.0, &[440.0]);
    c.hangup();
    r.rt.block_on(other.close(Duration::from_secs(5)));
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// An attended transfer of `first` to `second` succeeded and both calls
/// ended. The PBX ends the second call at once, maybe before its NOTIFY
/// on the first arrives: the events are taken in any order.
fn wait_transfer_and_ends(r: &mut Rig, first: &str, second: &str) {
    let (mut success, mut ended) = (false, Vec::new());
    while !(success && ended.len() == 2) {
        let (id, ev) = next_event(&r.rt, &mut r.events, "the transfer's success and both calls' ends", |ev| match ev {
            AccountEvent::Call { call_id, event } => Some((call_id, event)),
            _ => None,
        });
        match ev {
            CallEvent::TransferProgress { code, done: true } if id == first => {
                assert!((200..300).contains(&code), "the transfer failed: {code}");
                success = true;
            }
            CallEvent::Ended { .. } if id == first || id == second => ended.push(id),
            _ => {}
        }
    }
}

/// The dominant tone among `candidates` in the 1.5 s of `samples` that
/// end `skip_end` seconds before their end.
fn tone_before_end(samples: &[i16], rate: u32, skip_end: f32, candidates: &[f32]) -> Option<f32> {
    let end = samples.len().saturating_sub((rate as f32 * skip_end) as usize);
    common::audio::dominant_tone(&samples[end.saturating_sub(rate as usize * 3 / 2)..end], rate, candidates)
}

/// The same with a hold first, as a receptionist does: 1001 (SDK) holds
/// 1002 (a second SDK phone, which hears the PBX's hold music), calls 1003
/// (baresip) and joins them. The PBX takes 1002 off hold with its own
/// re-INVITE once 1003's media is moved, and 1002 hears 1003; baresip
/// keeps its one call and is asked for no transfer.
#[test]
fn pbx_attended_transfer_after_a_hold_takes_the_held_party_off_hold() {
    let mut r = rig("xfer-attended-held");
    r.s.cli(&["setting", "set", "transfer_mode", "pbx"]);
    let mut c = baresip(&r, "1003", 1500.0);
    let (held, mut held_events) = sdk_phone(&r, "1002");
    let first = r.rt.block_on(r.account.dial_with_audio("1002", tone_port(440.0))).unwrap();
    let at_held = incoming_call(&r.rt, &mut held_events);
    let rec = r._sb.file("heard-by-1002.wav");
    let port = recording_port(1000.0, &rec);
    held.answer_with_audio(&at_held, port);
    wait_call(&mut r, &first, "the answer", |e| matches!(e, CallEvent::Connected { .. }));
    r.account.hold(&first, true);
    wait_call(&mut r, &first, "the hold", |e| matches!(e, CallEvent::OfferAnswered { .. }));
    let second = dial(&mut r, "1003", 440.0);
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    r.account.transfer_attended(&first, &second);
    wait_transfer_and_ends(&mut r, &first, &second);
    // The PBX's re-INVITE takes 1002 off hold (an offer that sends both ways).
    next_event(&r.rt, &mut held_events, "1002 taken off hold", |ev| match ev {
        AccountEvent::Call { call_id, event: CallEvent::RemoteOffer { sdp } } if call_id == at_held && !["a=sendonly", "a=inactive", "a=recvonly"].iter().any(|d| String::from_utf8_lossy(&sdp).contains(d)) => Some(()),
        AccountEvent::Call { call_id, event: CallEvent::Ended { code, reason } } if call_id == at_held => panic!("1002's call ended ({code} {reason})"),
        _ => None,
    });
    // Then 2 s of talk (16,000 bytes a second of 8 kHz 16-bit audio in
    // 1002's recording) before 1003 hangs up.
    let size = || std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0);
    let resumed_at = size();
    common::wait_for("2 s more of 1002's recording", EVENT_DEADLINE, || (size() >= resumed_at + 32_000).then_some(()));
    let events = c.events();
    assert!(!events.iter().any(|e| e.kind.contains("TRANSFER")), "1003 was asked for no transfer: {events:?}");
    assert_eq!(events.iter().filter(|e| e.kind == "CALL_ESTABLISHED").count(), 1, "1003 kept its one call: {events:?}");
    c.hangup();
    next_event(&r.rt, &mut held_events, "the end of 1002's call", |ev| match ev {
        AccountEvent::IncomingCall { call_id, .. } => panic!("1002 got a new call ({call_id})"),
        AccountEvent::Call { call_id, event: CallEvent::Ended { .. } } if call_id == at_held => Some(()),
        _ => None,
    });
    r.rt.block_on(held.close(Duration::from_secs(5)));
    let (rate, samples) = read_wav(&rec);
    assert_eq!(tone_before_end(&samples, rate, 0.5, &[440.0, 1000.0, 1500.0]), Some(1500.0), "1002, off hold, hears 1003 at the end");
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// Attended transfer carried out by the PBX (`transfer_mode = pbx`, the
/// default): 1001 (SDK) talks to 1002 (baresip), calls 1003 (a second SDK
/// phone) and joins them. The PBX takes the REFER with Replaces itself:
/// 1002 is asked for nothing (so baresip, which cannot be the transferee
/// of a phones' attended transfer, is fine here), 1003's call from 1001
/// goes on as the same call, moved to 1002 by the PBX's re-INVITE, both
/// of 1001's calls end, and 1002 and 1003 hear each other. (1003 is the
/// SDK because baresip's recording of what it hears stops at a
/// re-INVITE; 1001 does not hold 1002 first for the same reason: holding
/// and resuming are tested with a raw client in e2e_pbx_media.)
#[test]
fn pbx_attended_transfer_joins_the_far_ends_without_asking_them() {
    let mut r = rig("xfer-attended-pbx");
    r.s.cli(&["setting", "set", "transfer_mode", "pbx"]);
    let mut b = baresip(&r, "1002", 1000.0);
    let (target, mut target_events) = sdk_phone(&r, "1003");
    let first = dial(&mut r, "1002", 440.0);
    b.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    let second = r.rt.block_on(r.account.dial_with_audio("1003", tone_port(440.0))).unwrap();
    let at_target = incoming_call(&r.rt, &mut target_events);
    let rec = r._sb.file("heard-by-1003.wav");
    let port = recording_port(1500.0, &rec);
    target.answer_with_audio(&at_target, port);
    wait_call(&mut r, &second, "the answer", |e| matches!(e, CallEvent::Connected { .. }));

    r.account.transfer_attended(&first, &second);
    wait_transfer_and_ends(&mut r, &first, &second);
    // 1002 hears 1003 (1,500 Hz), on the call it always had.
    let heard = b.wait_heard_more(2.0, EVENT_DEADLINE);
    let (rate, samples) = read_wav(&heard);
    assert_eq!(tone_before_end(&samples, rate, 0.0, &[440.0, 1000.0, 1500.0]), Some(1500.0), "1002 hears 1003");
    let events = b.events();
    assert!(!events.iter().any(|e| e.kind.contains("TRANSFER")), "1002 was asked for no transfer: {events:?}");
    assert_eq!(events.iter().filter(|e| e.kind == "CALL_ESTABLISHED").count(), 1, "1002 kept its one call: {events:?}");
    assert!(!events.iter().any(|e| e.kind == "CALL_CLOSED"), "1002's call is still up: {events:?}");
    // 1002 hangs up: 1003's call, the same one it answered, ends with it.
    b.hangup();
    next_event(&r.rt, &mut target_events, "the end of 1003's call", |ev| match ev {
        AccountEvent::IncomingCall { call_id, .. } => panic!("1003 got a new call ({call_id}): the PBX should have moved the old one"),
        AccountEvent::Call { call_id, event: CallEvent::Ended { .. } } if call_id == at_target => Some(()),
        _ => None,
    });
    r.rt.block_on(target.close(Duration::from_secs(5)));
    // Before the end, 1003 heard 1002 (1,000 Hz), not 1001 (440 Hz).
    let (rate, samples) = read_wav(&rec);
    assert_eq!(tone_before_end(&samples, rate, 0.5, &[440.0, 1000.0, 1500.0]), Some(1000.0), "1003 hears 1002 at the end");
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// A transfer from the app, carried out by the PBX with recall
/// (`transfer_mode = pbx`): 1001 (SDK) talks to 1002 (baresip) and
/// transfers it to 1003 (baresip, not answering). The app's call ends at
/// once, 1003 rings for 1002 (which hears the PBX's ringback), and after
/// `transfer_recall_secs` the app is rung back, answers, and 1002 hears it
/// again.
#[test]
fn pbx_blind_transfer_from_the_app_comes_back_to_the_app() {
    let mut r = rig("xfer-app-recall");
    r.s.cli(&["setting", "set", "transfer_mode", "pbx"]);
    r.s.cli(&["setting", "set", "transfer_recall_secs", "5"]);
    let mut b = baresip(&r, "1002", 1000.0);
    let mut c = Baresip::builder(&r._sb, "p1003").account(BaresipAccount::new("1003", PW, r.s.sip_addr())).answer(AnswerMode::Manual).tone(1500.0).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));
    let first = dial(&mut r, "1002", 440.0);
    b.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    r.account.transfer(&first, "1003");
    let (mut success, mut ended) = (false, false);
    while !(success && ended) {
        match wait_call(&mut r, &first, "the transfer's success and the call's end", |e| matches!(e, CallEvent::TransferProgress { done: true, .. } | CallEvent::Ended { .. })) {
            CallEvent::TransferProgress { code, .. } => {
                assert!((200..300).contains(&code), "the transfer failed: {code}");
                success = true;
            }
            _ => ended = true,
        }
    }
    let ringing = c.wait_event("CALL_INCOMING", EVENT_DEADLINE);
    assert!(ringing.to_string().contains("1002"), "1003 rings for 1002: {ringing}");
    // Nobody answers: the app is rung back, and answers.
    let recall = incoming_call(&r.rt, &mut r.events);
    c.wait_event("CALL_CLOSED", EVENT_DEADLINE);
    r.account.answer_with_audio(&recall, tone_port(440.0));
    wait_call(&mut r, &recall, "the recall's answer", |e| matches!(e, CallEvent::Connected { .. }));
    let heard = b.wait_heard_more(2.0, EVENT_DEADLINE);
    let (rate, samples) = read_wav(&heard);
    let candidates = [400.0, 440.0, 1000.0, 1500.0];
    assert_eq!(tone_before_end(&samples, rate, 0.0, &candidates), Some(440.0), "1002 hears the app again after the recall");
    let ringback = samples.chunks(rate as usize / 4).any(|block| common::audio::dominant_tone(block, rate, &candidates) == Some(400.0));
    assert!(ringback, "1002 heard the PBX's ringback (400 Hz) meanwhile");
    b.hangup();
    wait_call(&mut r, &recall, "the end", |e| matches!(e, CallEvent::Ended { .. }));
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// Call waiting: a second call arrives during a call; the SDK holds the
/// first, takes the second (and its digits), hangs it up and resumes.
#[test]
fn sdk_takes_a_waiting_call_holds_the_first_and_hears_digits() {
    let mut r = rig("call-waiting");
    let mut b = baresip(&r, "1002", 1000.0);
    let mut c = baresip(&r, "1003", 1500.0);
    let first = dial(&mut r, "1002", 440.0);
    b.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    c.dial(&format!("sip:1001@{}", r.s.sip_addr()));
    let second = incoming_call(&r.rt, &mut r.events);
    assert_ne!(first, second);
    r.account.hold(&first, true);
    wait_call(&mut r, &first, "the hold", |e| matches!(e, CallEvent::OfferAnswered { .. }));
    let rec = r._sb.file("waiting.wav");
    let port = recording_port(700.0, &rec);
    r.account.answer_with_audio(&second, port);
    wait_call(&mut r, &second, "the answer", |e| matches!(e, CallEvent::Connected { .. }));
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    // RFC 4733 digits from the far end reach the app.
    c.command("sndcode", "7").expect("sndcode");
    let d = wait_call(&mut r, &second, "a digit", |e| matches!(e, CallEvent::Dtmf { .. }));
    assert_eq!(d, CallEvent::Dtmf { digit: '7' });
    let heard = c.wait_heard(2.0, EVENT_DEADLINE);
    assert_hears(&heard, 700.0, &[440.0]);
    r.account.hangup(&second);
    wait_call(&mut r, &second, "the end of the second call", |e| matches!(e, CallEvent::Ended { .. }));
    c.wait_event("CALL_CLOSED", EVENT_DEADLINE);
    // The recording of the second call holds 1003's tone.
    let (rate, samples) = read_wav(&rec);
    assert!(tone_power(&samples, rate, 1500.0) > 10.0 * tone_power(&samples, rate, 1000.0), "the waiting call's audio should be 1003's");
    r.account.hold(&first, false);
    wait_call(&mut r, &first, "the resume", |e| matches!(e, CallEvent::OfferAnswered { .. }));
    r.account.hangup(&first);
    wait_call(&mut r, &first, "the end of the first call", |e| matches!(e, CallEvent::Ended { .. }));
    b.wait_event("CALL_CLOSED", EVENT_DEADLINE);
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// A push wakes the app: the SDK registers again at once over a fresh flow
/// (the PBX sees a new binding, with the RFC 8599 push parameters kept)
/// and the waiting call comes in.
#[test]
fn sdk_handle_push_registers_at_once_and_takes_the_waiting_call() {
    let sb = Sandbox::new("push-wake");
    let s = Server::start(&sb);
    for e in ["1001", "1003"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut config = RegistrationConfig::new("1001", PW, &s.sip_addr().to_string());
    config.expires = 300;
    config.instance_id = Some("urn:uuid:6f1c2a3e-0000-4000-8000-0000000000b7".into());
    config.reg_id = Some(1);
    config.push = Some(tsunagu_client::PushParams { provider: "apns".into(), prid: "00fc13adff78512".into(), param: Some("ABCD1234.jp.lg.city.phone.voip".into()) });
    let (account, mut events) = rt.block_on(Account::start(s.sip_addr(), config)).unwrap();
    registered(&rt, &mut events);
    // Bindings reach the store in batches, a moment later.
    let before = common::wait_for("the binding in the store", Duration::from_secs(10), || {
        let b = bindings_of(&s, "1001");
        (b.len() == 1).then(|| b[0].clone())
    });
    account.handle_push(r#"{"aps":{"alert":"call"},"call-id":"x"}"#);
    registered(&rt, &mut events);
    let after = common::wait_for("one binding, on the new flow", Duration::from_secs(10), || {
        let b = bindings_of(&s, "1001");
        (b.len() == 1 && b[0] != before).then(|| b[0].clone())
    });
    assert!(after.contains("pn-prid=00fc13adff78512"), "{after}");
    let mut c = Baresip::builder(&sb, "p1003").account(BaresipAccount::new("1003", PW, s.sip_addr())).answer(AnswerMode::Auto).tone(1500.0).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));
    c.dial(&format!("sip:1001@{}", s.sip_addr()));
    let incoming = incoming_call(&rt, &mut events);
    account.answer_with_audio(&incoming, tone_port(440.0));
    c.wait_event("CALL_ESTABLISHED", EVENT_DEADLINE);
    c.hangup();
    rt.block_on(account.close(Duration::from_secs(5)));
}

/// The contacts `tsunagu user list` shows under `user`.
fn bindings_of(s: &Server, user: &str) -> Vec<String> {
    let out = s.cli(&["user", "list"]);
    String::from_utf8_lossy(&out.stdout).lines().skip_while(|l| !l.starts_with(user)).skip(1).take_while(|l| l.starts_with("  <")).map(str::to_string).collect()
}

/// linphonec (liblinphone 5.1) as the SDK's far end: it answers, each side
/// hears the other's tone, and digits go both ways (RFC 4733).
#[test]
fn sdk_talks_to_linphonec_with_audio_and_digits_both_ways() {
    use common::linphone::{LinphoneAccount, Linphonec};
    let mut r = rig("sdk-linphone");
    let mut l = Linphonec::builder(&r._sb, "lin").account(LinphoneAccount::new("1002", PW, r.s.sip_addr())).tone(1000.0).codecs(&["PCMU"]).auto_answer(true).start();
    l.registered(Duration::from_secs(15));
    let rec = r._sb.file("sdk-heard.wav");
    let port = recording_port(440.0, &rec);
    let id = r.rt.block_on(r.account.dial_with_audio("1002", port)).unwrap();
    wait_call(&mut r, &id, "the answer", |e| matches!(e, CallEvent::Connected { .. }));
    l.wait_connected(EVENT_DEADLINE);
    r.account.send_dtmf(&id, "9");
    l.wait_dtmf('9', EVENT_DEADLINE);
    l.send_dtmf("3");
    assert_eq!(wait_call(&mut r, &id, "a digit", |e| matches!(e, CallEvent::Dtmf { .. })), CallEvent::Dtmf { digit: '3' });
    let heard = l.wait_heard(2.0, EVENT_DEADLINE);
    r.account.hangup(&id);
    wait_call(&mut r, &id, "the end", |e| matches!(e, CallEvent::Ended { .. }));
    l.wait_ended(EVENT_DEADLINE);
    assert_hears(&heard, 440.0, &[1000.0]);
    assert_hears(&rec, 1000.0, &[440.0]);
    r.rt.block_on(r.account.close(Duration::from_secs(5)));
}

/// A scripted far phone on a UDP socket, for what no real peer here sends:
/// an INVITE with Replaces (baresip 1.0 cannot, and the PBX, a B2BUA,
/// does not pass the header on).
struct ScriptedPeer {
    sock: std::net::UdpSocket,
    /// The RTP sockets of its first and second call.
    rtp: std::net::UdpSocket,
    rtp_b: std::net::UdpSocket,
}

impl ScriptedPeer {
    fn recv(&self, what: &str, pred: impl Fn(&common::SipMsg) -> bool) -> (common::SipMsg, std::net::SocketAddr) {
        let deadline = std::time::Instant::now() + EVENT_DEADLINE;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "the scripted peer got no {what}");
            self.sock.set_read_timeout(Some(left)).unwrap();
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if let Some((m, _)) = common::SipMsg::parse(&buf[..n]) {
                    if pred(&m) {
                        return (m, from);
                    }
                }
            }
        }
    }

    fn sdp(&self, rtp: &std::net::UdpSocket) -> String {
        let port = rtp.local_addr().unwrap().port();
        format!("v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    }

    /// A response to `req` (its Via, From, Call-ID, CSeq), with our tag.
    fn respond(&self, req: &common::SipMsg, to: std::net::SocketAddr, code: u16, tag: &str, sdp: Option<&str>) {
        let mut m = format!("SIP/2.0 {code} X\r\n");
        for name in ["via", "from", "call-id", "cseq"] {
            for v in req.headers_named(name) {
                m.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        let to_header = req.header("to").unwrap();
        let to_header = if to_header.contains("tag=") { to_header.to_string() } else { format!("{to_header};tag={tag}") };
        m.push_str(&format!("To: {to_header}\r\nContact: <sip:2000@{}>\r\n", self.sock.local_addr().unwrap()));
        match sdp {
            Some(b) => m.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.sock.send_to(m.as_bytes(), to).unwrap();
    }
}

fn tag_param(header: &str) -> String {
    header.split(";tag=").nth(1).unwrap_or("").split(';').next().unwrap_or("").trim().to_string()
}

/// The SDK as the target of someone else's attended transfer (RFC 3891):
/// an INVITE whose Replaces names one of its calls is answered at once
/// with that call's audio, and the replaced call is hung up; one that names
/// no call of ours gets 481.
#[test]
fn sdk_takes_an_invite_with_replaces_in_place_of_its_call() {
    let bind = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = ScriptedPeer { sock: bind(), rtp: bind(), rtp_b: bind() };
    let peer_addr = peer.sock.local_addr().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut config = RegistrationConfig::new("1001", PW, &peer_addr.to_string());
    config.register = false;
    let (account, mut events) = rt.block_on(Account::start(peer_addr, config)).unwrap();
    // Call A: the SDK calls the peer, which answers.
    let a = rt.block_on(account.dial_with_audio("2000", tone_port(440.0))).unwrap();
    let (invite, sdk_addr) = peer.recv("the INVITE", |m| m.cseq_method() == Some("INVITE"));
    peer.respond(&invite, sdk_addr, 200, "peertag", Some(&peer.sdp(&peer.rtp)));
    peer.recv("the ACK", |m| m.cseq_method() == Some("ACK"));
    let sdk_tag = tag_param(invite.header("from").unwrap());
    let connected = next_event(&rt, &mut events, "call A connected", |ev| match ev {
        AccountEvent::Call { call_id, event: CallEvent::Connected { .. } } => Some(call_id),
        _ => None,
    });
    assert_eq!(connected, a);
    let invite_with = |call_id: &str, replaces: &str| {
        let sdp = peer.sdp(&peer.rtp_b);
        let m = format!(
            "INVITE sip:1001@{sdk_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {peer_addr};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:3000@{peer_addr}>;tag=b-{call_id}\r\nTo: <sip:1001@{sdk_addr}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:3000@{peer_addr}>\r\nReplaces: {replaces}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        peer.sock.send_to(m.as_bytes(), sdk_addr).unwrap();
    };
    // Naming no call of ours: 481.
    invite_with("stray-1", &format!("nosuchcall;to-tag={sdk_tag};from-tag=peertag"));
    let (resp, _) = peer.recv("the answer to the stray INVITE", |m| m.call_id() == Some("stray-1") && m.status().is_some_and(|c| c >= 200));
    assert_eq!(resp.status(), Some(481), "{}", resp.text());
    // Naming call A (to-tag: the SDK's, from-tag: ours): answered at once,
    // and call A is hung up.
    invite_with("b-1", &format!("{a};to-tag={sdk_tag};from-tag=peertag"));
    let (ok, _) = peer.recv("the 200 for the replacing INVITE", |m| m.call_id() == Some("b-1") && m.status().is_some_and(|c| c >= 200));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio"), "{}", ok.text());
    let (bye, _) = peer.recv("the BYE of call A", |m| m.cseq_method() == Some("BYE") && m.status().is_none());
    assert_eq!(bye.call_id(), Some(a.as_str()));
    peer.respond(&bye, sdk_addr, 200, "peertag", None);
    let ack = format!(
        "ACK sip:1001@{sdk_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {peer_addr};branch=z9hG4bKack-b1\r\nMax-Forwards: 70\r\nFrom: <sip:3000@{peer_addr}>;tag=b-b-1\r\nTo: {}\r\nCall-ID: b-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        ok.header("to").unwrap()
    );
    peer.sock.send_to(ack.as_bytes(), sdk_addr).unwrap();
    // The app heard of the new call, saw it connect, and saw A end.
    let (mut incoming, mut b_connected, mut a_ended) = (false, false, false);
    while !(incoming && b_connected && a_ended) {
        match next_event(&rt, &mut events, "the replacing call's events", Some) {
            AccountEvent::IncomingCall { call_id, .. } if call_id == "b-1" => incoming = true,
            AccountEvent::Call { call_id, event: CallEvent::Connected { .. } } if call_id == "b-1" => b_connected = true,
            AccountEvent::Call { call_id, event: CallEvent::Ended { .. } } if call_id == a => a_ended = true,
            _ => {}
        }
    }
    // The replacing call carries the audio: RTP arrives from the SDK at
    // the address its SDP gave (call A's went elsewhere).
    let mut buf = [0u8; 2048];
    peer.rtp_b.set_read_timeout(Some(EVENT_DEADLINE)).unwrap();
    let (n, _) = peer.rtp_b.recv_from(&mut buf).expect("RTP on the replacing call");
    assert!(n > 12 && buf[0] >> 6 == 2, "an RTP packet");
    rt.block_on(account.close(Duration::from_secs(5)));
}
