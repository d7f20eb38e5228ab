//! Dialog upkeep on the caller's leg, with a raw SIP caller whose every
//! header the test controls and a real baresip as the callee:
//! reliable provisional responses (RFC 3262: 180 with RSeq, retransmitted
//! until PRACK) and session timers (RFC 4028: a caller that stops
//! refreshing is hung up, and so is the callee).

mod common;

use common::baresip::{Account, AnswerMode, AudioSource, Baresip};
use common::raw::{digest, RawCaller};
use common::{unique, wait_for, Sandbox, Server, SipMsg};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const PASSWORD: &str = "secret-pass-1";

fn tag_of(m: &SipMsg) -> Option<String> {
    m.header("to").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap_or("").to_string())
}

#[test]
fn reliable_ringing_then_session_timer_expiry_ends_both_legs() {
    let sb = Sandbox::new("sessions");
    // Short session intervals so the test takes seconds, not minutes.
    let s = Server::start_with_env(&sb, &[("TSUNAGU_CALLS_MIN_SESSION_EXPIRES_SECS", "2"), ("TSUNAGU_CALLS_SESSION_EXPIRES_SECS", "4")]);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let mut callee = Baresip::builder(&sb, "callee")
        .account(Account::new("1002", PASSWORD, s.sip_addr()))
        .answer(AnswerMode::Manual)
        .codecs(&["PCMU"])
        .source(AudioSource::Echo)
        .start();
    callee.registered(Duration::from_secs(10));

    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = RawCaller { sip: UdpSocket::bind("127.0.0.1:0").unwrap(), server: s.sip_addr(), call_id: unique("sess-"), from_tag: unique("ft"), to_tag: None, cseq: 0 };
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    let extra = "Supported: 100rel, timer\r\nSession-Expires: 3\r\n";
    caller.invite_with("1002", &sdp, None, extra);
    let challenge = caller.final_response(Duration::from_secs(5));
    assert_eq!(challenge.status(), Some(407));
    caller.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    caller.invite_with("1002", &sdp, Some(auth), extra);
    let invite_cseq = caller.cseq;

    // The 180 is reliable: Require 100rel, an RSeq, and repeated until PRACKed.
    callee.wait_event("CALL_INCOMING", Duration::from_secs(10));
    let mut ringing = Vec::new();
    let until = Instant::now() + Duration::from_millis(1300);
    while Instant::now() < until {
        let m = caller.recv(Duration::from_secs(5));
        if m.status() == Some(180) {
            ringing.push(m);
        }
    }
    assert!(ringing.len() >= 2, "a reliable 180 is retransmitted until PRACK (got {})", ringing.len());
    let r = &ringing[0];
    assert!(r.header("require").is_some_and(|v| v.contains("100rel")), "{}", r.text());
    let rseq: u32 = r.header("rseq").expect("RSeq").trim().parse().unwrap();
    assert!(ringing.iter().all(|m| m.header("rseq").map(str::trim) == Some(rseq.to_string().as_str())), "the same RSeq each time");
    caller.to_tag = tag_of(r);
    caller.cseq += 1;
    let prack_cseq = caller.cseq;
    caller.in_dialog_with("PRACK", prack_cseq, "1002", &format!("RAck: {rseq} {invite_cseq} INVITE\r\n"));
    let prack_ok = wait_for("200 for PRACK", Duration::from_secs(5), || {
        let m = caller.recv(Duration::from_secs(5));
        (m.cseq_method() == Some("PRACK")).then_some(m)
    });
    assert_eq!(prack_ok.status(), Some(200), "{}", prack_ok.text());

    // Answer; the 200 makes the caller the refresher of a 3 s session.
    callee.accept();
    let ok = wait_for("200 for INVITE", Duration::from_secs(10), || {
        let m = caller.recv(Duration::from_secs(10));
        (m.status() == Some(200) && m.cseq_method() == Some("INVITE")).then_some(m)
    });
    let se = ok.header("session-expires").unwrap_or_else(|| panic!("no Session-Expires in {}", ok.text()));
    assert!(se.starts_with('3') && se.contains("refresher=uac"), "{se}");
    assert!(ok.header("require").is_some_and(|v| v.contains("timer")), "{}", ok.text());
    caller.in_dialog("ACK", invite_cseq, "1002");
    callee.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let answered = Instant::now();

    // The caller never refreshes: the server hangs up both legs when the
    // session interval has passed.
    let bye = wait_for("BYE from the server", Duration::from_secs(10), || {
        let m = caller.recv(Duration::from_secs(10));
        (m.start_line.starts_with("BYE ")).then_some(m)
    });
    caller.respond_200(&bye);
    let after = answered.elapsed();
    assert!(after >= Duration::from_millis(2500) && after < Duration::from_secs(6), "BYE came {after:?} after the answer; the session was 3 s");
    callee.wait_event("CALL_CLOSED", Duration::from_secs(10));
    wait_for("the record to say session-expired", Duration::from_secs(5), || {
        let out = s.cli(&["calls", "--csv"]);
        String::from_utf8_lossy(&out.stdout).lines().nth(1).filter(|l| l.contains(",session-expired,")).map(str::to_string)
    });
}

/// A caller without telephone-event (it only does SIP INFO) and a baresip
/// that only does RFC 4733: digits cross both ways, translated.
#[test]
fn dtmf_is_translated_between_sip_info_and_rfc4733() {
    let sb = Sandbox::new("dtmf-info");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let mut callee = Baresip::builder(&sb, "callee")
        .account(Account::new("1002", PASSWORD, s.sip_addr()))
        .answer(AnswerMode::Auto)
        .codecs(&["PCMU"])
        .source(AudioSource::Echo)
        .start();
    callee.registered(Duration::from_secs(10));
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = RawCaller { sip: UdpSocket::bind("127.0.0.1:0").unwrap(), server: s.sip_addr(), call_id: unique("dtmf-"), from_tag: unique("ft"), to_tag: None, cseq: 0 };
    // PCMU only: no telephone-event, so this leg gets digits as SIP INFO.
    let sdp = format!("v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n", rtp.local_addr().unwrap().port());
    caller.invite("1002", &sdp, None);
    let challenge = caller.final_response(Duration::from_secs(5));
    caller.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    caller.invite("1002", &sdp, Some(auth));
    let ok = caller.final_response(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert!(!String::from_utf8_lossy(&ok.body).contains("telephone-event"), "the caller did not offer telephone-event");
    caller.to_tag = tag_of(&ok);
    let invite_cseq = caller.cseq;
    caller.in_dialog("ACK", invite_cseq, "1002");
    callee.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));

    // INFO from the caller: answered by the PBX, played to baresip as RFC 4733.
    caller.cseq += 1;
    let info_cseq = caller.cseq;
    caller.in_dialog_body("INFO", info_cseq, "1002", "application/dtmf-relay", "Signal=7\r\nDuration=160\r\n");
    let info_ok = wait_for("200 for INFO", Duration::from_secs(5), || {
        let m = caller.recv(Duration::from_secs(5));
        (m.cseq_method() == Some("INFO")).then_some(m)
    });
    assert_eq!(info_ok.status(), Some(200));
    let d = callee.wait_event("CALL_DTMF_START", Duration::from_secs(5));
    assert_eq!(d.param, "7", "{d}");

    // RFC 4733 from baresip: the caller gets it as SIP INFO.
    callee.send_dtmf("9");
    let info = wait_for("INFO from the PBX", Duration::from_secs(5), || {
        let m = caller.recv(Duration::from_secs(5));
        m.start_line.starts_with("INFO ").then_some(m)
    });
    caller.respond_200(&info);
    let body = String::from_utf8_lossy(&info.body).into_owned();
    assert!(info.header("content-type").is_some_and(|c| c.contains("dtmf-relay")), "{}", info.text());
    assert!(body.contains("Signal=9"), "{body}");
    caller.cseq += 1;
    caller.in_dialog("BYE", caller.cseq, "1002");
    callee.wait_event("CALL_CLOSED", Duration::from_secs(10));
}

/// RFC 4028 §9: an INVITE asking for a session interval below the PBX's
/// minimum is refused with 422 and the PBX's Min-SE, so the caller can
/// retry with a larger one; a malformed Session-Expires gets 400.
#[test]
fn a_session_interval_below_min_se_gets_422_with_min_se() {
    let sb = Sandbox::new("sessions-422");
    let s = Server::start_with_env(&sb, &[("TSUNAGU_CALLS_MIN_SESSION_EXPIRES_SECS", "90")]);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    for (se, want) in [("30;refresher=uac", 422), ("soon", 400)] {
        let mut caller = RawCaller { sip: UdpSocket::bind("127.0.0.1:0").unwrap(), server: s.sip_addr(), call_id: unique("se-"), from_tag: unique("ft"), to_tag: None, cseq: 0 };
        let extra = format!("Supported: timer\r\nSession-Expires: {se}\r\n");
        caller.invite_with("1002", &sdp, None, &extra);
        let challenge = caller.final_response(Duration::from_secs(5));
        assert_eq!(challenge.status(), Some(407));
        caller.in_dialog_ack_for_failure(&challenge);
        let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
        caller.invite_with("1002", &sdp, Some(auth), &extra);
        let r = caller.final_response(Duration::from_secs(5));
        assert_eq!(r.status(), Some(want), "Session-Expires: {se}: {}", r.text());
        if want == 422 {
            assert_eq!(r.header("min-se").map(str::trim), Some("90"), "{}", r.text());
        }
        caller.in_dialog_ack_for_failure(&r);
    }
}

/// A CANCEL belongs to the INVITE with its branch (RFC 3261 §9.2): one with
/// another branch gets 481 and the call goes on ringing; the right one gets
/// 200, the INVITE 487, and the callee stops ringing.
#[test]
fn a_cancel_for_no_invite_of_ours_gets_481_and_the_call_rings_on() {
    let sb = Sandbox::new("cancel-branch");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let mut callee = Baresip::builder(&sb, "callee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).codecs(&["PCMU"]).start();
    callee.registered(Duration::from_secs(10));
    let mut caller = RawCaller { sip: UdpSocket::bind("127.0.0.1:0").unwrap(), server: s.sip_addr(), call_id: unique("cxl-"), from_tag: unique("ft"), to_tag: None, cseq: 0 };
    let sdp = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    caller.invite("1002", sdp, None);
    let challenge = caller.final_response(Duration::from_secs(5));
    caller.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    caller.invite("1002", sdp, Some(auth));
    callee.wait_event("CALL_INCOMING", Duration::from_secs(10));
    // Our INVITE's Via (with its branch), as the responses echo it.
    let via = wait_for("180 Ringing", Duration::from_secs(5), || {
        let m = caller.recv(Duration::from_secs(5));
        (m.status() == Some(180)).then(|| m.header("via").unwrap().to_string())
    });
    let cancel = |via: &str| {
        format!(
            "CANCEL sip:1002@{srv} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@{srv}>;tag={ft}\r\nTo: <sip:1002@{srv}>\r\nCall-ID: {cid}\r\nCSeq: {c} CANCEL\r\nContent-Length: 0\r\n\r\n",
            srv = s.sip_addr(),
            ft = caller.from_tag,
            cid = caller.call_id,
            c = caller.cseq
        )
    };
    let branch = via.split("branch=").nth(1).unwrap().split(';').next().unwrap().to_string();
    let stray = cancel(&via.replace(&branch, "z9hG4bKnotourinvite"));
    caller.sip.send_to(stray.as_bytes(), s.sip_addr()).unwrap();
    let answer = wait_for("the answer to the stray CANCEL", Duration::from_secs(5), || {
        let m = caller.recv(Duration::from_secs(5));
        (m.cseq_method() == Some("CANCEL")).then_some(m)
    });
    assert_eq!(answer.status(), Some(481), "{}", answer.text());
    // Still ringing: the real CANCEL ends it.
    caller.sip.send_to(cancel(&via).as_bytes(), s.sip_addr()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(got.contains(&(200, "CANCEL".to_string())) && got.contains(&(487, "INVITE".to_string()))) {
        assert!(Instant::now() < deadline, "no 200 for the CANCEL and 487 for the INVITE: {got:?}");
        let m = caller.recv(Duration::from_secs(5));
        if let (Some(code), Some(method)) = (m.status(), m.cseq_method()) {
            if code >= 200 {
                got.push((code, method.to_string()));
            }
        }
    }
    callee.wait_event("CALL_CLOSED", Duration::from_secs(10));
}
