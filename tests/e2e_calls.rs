//! Calls between extensions through the PBX with real phones (baresip):
//! two-way audio checked by frequency, media anchored on the server's relay
//! ports, SRTP and Opus⇄G.711 transcoding, hold/resume by re-INVITE and
//! DTMF, and the call records.

mod common;

use common::audio::assert_hears;
use common::baresip::{Account, AnswerMode, Baresip};
use common::{Sandbox, Server};
use std::time::Duration;

const MEDIA_MIN: u16 = 31000;
const MEDIA_MAX: u16 = 31999;
const TONE_A: f32 = 440.0;
const TONE_B: f32 = 1000.0;

fn server(sb: &Sandbox) -> Server {
    let min = MEDIA_MIN.to_string();
    let max = MEDIA_MAX.to_string();
    let s = Server::start_with_env(sb, &[("TSUNAGU_MEDIA_PORT_MIN", &min), ("TSUNAGU_MEDIA_PORT_MAX", &max)]);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", "secret-pass-1"]);
    }
    s
}

fn phone(sb: &Sandbox, s: &Server, ext: &str, tone: f32, answer: AnswerMode, codecs: &[&str], mediaenc: Option<&str>) -> Baresip {
    let mut b = Baresip::builder(sb, &format!("p{ext}")).account(Account::new(ext, "secret-pass-1", s.sip_addr())).answer(answer).tone(tone).codecs(codecs);
    if let Some(m) = mediaenc {
        b = b.mediaenc(m);
    }
    let mut p = b.start();
    p.registered(Duration::from_secs(10));
    p
}

/// The port a baresip received its RTP from, from its log.
fn rtp_source_port(p: &Baresip) -> Option<u16> {
    p.log_text().lines().rev().find_map(|l| {
        let rest = l.split_once("receiving from ")?.1;
        rest.trim().rsplit_once(':')?.1.trim().parse().ok()
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn call_records(s: &Server) -> Vec<Vec<String>> {
    let out = s.cli(&["calls", "--csv"]);
    String::from_utf8_lossy(&out.stdout).lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// A dials B, both hear each other, A hangs up.
fn talk(a: &mut Baresip, b: &mut Baresip, s: &Server) {
    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard_a = a.wait_heard(2.0, Duration::from_secs(10));
    let heard_b = b.wait_heard(2.0, Duration::from_secs(10));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert_hears(&heard_a, TONE_B, &[TONE_A]);
    assert_hears(&heard_b, TONE_A, &[TONE_B]);
}

#[test]
fn baresip_calls_baresip_with_media_anchored_on_the_server() {
    let sb = Sandbox::new("calls-basic");
    let s = server(&sb);
    let mut a = phone(&sb, &s, "1001", TONE_A, AnswerMode::Manual, &["PCMU"], None);
    let mut b = phone(&sb, &s, "1002", TONE_B, AnswerMode::Auto, &["PCMU"], None);
    talk(&mut a, &mut b, &s);
    // Each phone got its media from a relay port of the server, not from
    // the other phone.
    for p in [&a, &b] {
        let port = rtp_source_port(p).unwrap_or_else(|| panic!("{}: no 'receiving from' in its log", p.name));
        assert!((MEDIA_MIN..=MEDIA_MAX).contains(&port), "{} got RTP from port {port}, outside the server's range", p.name);
    }
    let m = s.metrics();
    assert!(metric(&m, "tsunagu_media_packets_relayed_total") > 100.0, "relay counters:\n{}", m.lines().filter(|l| l.contains("media")).collect::<Vec<_>>().join("\n"));
    // One record: answered by 1002, some talk time.
    let recs = common::wait_for("the call record to close", Duration::from_secs(5), || {
        let r = call_records(&s);
        (r.len() == 1 && !r[0][8].is_empty()).then_some(r)
    });
    let r = &recs[0];
    assert_eq!((r[1].as_str(), r[2].as_str(), r[3].as_str(), r[10].as_str(), r[11].as_str()), ("internal", "1001", "1002", "answered", "1002"), "{r:?}");
    assert!(r[9].parse::<u32>().unwrap() >= 1, "duration {r:?}");
    assert!(r[5].is_empty(), "an internal call never uses a trunk: {r:?}");
}

#[test]
fn srtp_opus_phone_calls_srtp_g711_phone_through_the_transcoder() {
    let sb = Sandbox::new("calls-srtp-opus");
    let s = server(&sb);
    let mut a = phone(&sb, &s, "1001", TONE_A, AnswerMode::Manual, &["opus"], Some("srtp-mand"));
    let mut b = phone(&sb, &s, "1002", TONE_B, AnswerMode::Auto, &["PCMU"], Some("srtp-mand"));
    talk(&mut a, &mut b, &s);
    assert!(a.srtp_enabled() && b.srtp_enabled(), "both legs use SRTP");
    assert!(a.audio_decoder().is_some_and(|d| d.starts_with("opus")), "A decodes {:?}", a.audio_decoder());
    assert!(b.audio_decoder().is_some_and(|d| d.starts_with("PCMU")), "B decodes {:?}", b.audio_decoder());
}

#[test]
fn hold_resume_and_dtmf_cross_the_b2bua() {
    let sb = Sandbox::new("calls-hold");
    let s = server(&sb);
    let mut a = phone(&sb, &s, "1001", TONE_A, AnswerMode::Manual, &["PCMU"], None);
    let mut b = phone(&sb, &s, "1002", TONE_B, AnswerMode::Auto, &["PCMU"], None);
    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_heard(1.0, Duration::from_secs(10));
    // Hold: a re-INVITE from A reaches B as a new offer (sendonly).
    a.command("hold", "").expect("hold");
    let ev = b.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    assert_eq!(ev.param, "offer", "{ev}");
    a.command("resume", "").expect("resume");
    b.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    // RFC 4733 digits pass through.
    a.send_dtmf("5");
    let d = b.wait_event("CALL_DTMF_START", Duration::from_secs(10));
    assert_eq!(d.param, "5", "{d}");
    // Media flows again after resume, both ways (the relay counts 50
    // packets a second per direction; baresip's recorder does not follow a
    // re-INVITE, so the server's counters are the evidence here).
    let relayed = || metric(&s.metrics(), "tsunagu_media_packets_relayed_total");
    let before = relayed();
    common::wait_for("two-way media after resume", Duration::from_secs(10), || (relayed() >= before + 150.0).then_some(()));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
}

#[test]
fn srtp_phone_reaches_a_phone_without_srtp() {
    // The callee refuses RTP/SAVP (488); the PBX offers it plain RTP/AVP
    // instead, while the caller's leg stays encrypted.
    let sb = Sandbox::new("calls-srtp-plain");
    let s = server(&sb);
    let mut a = phone(&sb, &s, "1001", TONE_A, AnswerMode::Manual, &["PCMU"], Some("srtp-mand"));
    let mut b = phone(&sb, &s, "1002", TONE_B, AnswerMode::Auto, &["PCMU"], None);
    talk(&mut a, &mut b, &s);
    assert!(a.srtp_enabled(), "the caller's leg is SRTP");
    assert!(!b.srtp_enabled(), "the callee's leg is plain RTP");
}

#[test]
fn linphonec_and_baresip_call_each_other_through_the_pbx() {
    use common::linphone::{LinphoneAccount, Linphonec};
    let sb = Sandbox::new("calls-linphonec");
    let s = server(&sb);
    let mut l = Linphonec::builder(&sb, "lin").account(LinphoneAccount::new("1001", "secret-pass-1", s.sip_addr())).tone(TONE_A).codecs(&["PCMU"]).auto_answer(false).start();
    l.registered(Duration::from_secs(15));
    let mut b = phone(&sb, &s, "1002", TONE_B, AnswerMode::Auto, &["PCMU"], None);
    // linphonec calls baresip; digits cross; both hear the other; linphonec
    // hangs up (its BYE is routed by its GRUU contact through the PBX).
    l.call(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    l.wait_connected(Duration::from_secs(10));
    l.send_dtmf("4");
    b.try_wait_event_where(Duration::from_secs(10), |e| e.kind == "CALL_DTMF_START" && e.param == "4").expect("baresip got DTMF 4 from linphonec");
    let l_heard = l.wait_heard(2.0, Duration::from_secs(10));
    let b_heard = b.wait_heard(2.0, Duration::from_secs(10));
    l.terminate();
    l.wait_ended(Duration::from_secs(10));
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert_hears(&l_heard, TONE_B, &[TONE_A]);
    assert_hears(&b_heard, TONE_A, &[TONE_B]);

    // baresip calls linphonec, which answers; baresip hangs up.
    let rec = l.record_next();
    b.dial(&format!("sip:1001@{}", s.sip_addr()));
    l.wait_incoming(Duration::from_secs(10));
    l.answer();
    l.wait_connected(Duration::from_secs(10));
    let heard = l.wait_heard(2.0, Duration::from_secs(10));
    assert_eq!(heard, rec);
    b.hangup();
    l.wait_ended(Duration::from_secs(10));
    assert_hears(&heard, TONE_B, &[TONE_A]);
    let out = s.cli(&["calls", "--csv"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().filter(|l| l.contains(",answered,")).count(), 2, "{text}");
}
