//! The SDK's account against the real PBX (`tsunagu serve`): it registers
//! with digest, RFC 5626 instance id and RFC 8599 push parameters (the
//! binding the PBX stores says so), a wrong password is reported as such,
//! a network change re-registers over a new flow that replaces the old
//! binding, calls go out and come in through the PBX over the registered
//! flow (signalling; media comes with the media session), and closing
//! removes the binding; the same over TCP and TLS, and a TLS account
//! refuses a PBX certificate it was not told to trust.

mod common;

use common::phone::{Behaviour, Phone};
use common::{wait_for, Sandbox, Server};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tsunagu_client::{Account, AccountEvent, PushParams, RegEvent, RegistrationConfig, Transport};

const PW: &str = "secret-pass-1";
const INSTANCE: &str = "urn:uuid:6f1c2a3e-0000-4000-8000-00000000c1e7";

fn config(user: &str, password: &str, s: &Server) -> RegistrationConfig {
    let mut c = RegistrationConfig::new(user, password, &s.sip_addr().to_string());
    c.expires = 300;
    c.instance_id = Some(INSTANCE.into());
    c.reg_id = Some(1);
    c.push = Some(PushParams { provider: "apns".into(), prid: "devicetoken0123".into(), param: Some("TEAMID.jp.example.city.voip".into()) });
    c
}

async fn next_registration(events: &mut UnboundedReceiver<AccountEvent>) -> RegEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(AccountEvent::Registration(ev))) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the account stopped"),
            Err(_) => panic!("no registration event within 10 s"),
        }
    }
}

async fn next_call_event(events: &mut UnboundedReceiver<AccountEvent>, id: &str) -> tsunagu_client::CallEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(AccountEvent::Call { call_id, event })) if call_id == id => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the account stopped"),
            Err(_) => panic!("no event for call {id} within 10 s"),
        }
    }
}

/// `tsunagu user list` lines of 1001's current bindings.
fn bindings(s: &Server) -> Vec<String> {
    let out = s.cli(&["user", "list"]);
    String::from_utf8_lossy(&out.stdout).lines().skip_while(|l| !l.starts_with("1001")).skip(1).take_while(|l| l.starts_with("  <")).map(str::to_string).collect()
}

#[test]
fn sdk_account_registers_with_push_moves_flows_calls_and_unregisters() {
    let sb = Sandbox::new("client");
    let s = Server::start(&sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // A wrong password is reported as an authentication failure.
        let (bad, mut bad_events) = Account::start(s.sip_addr(), config("1001", "not-the-password", &s)).await.unwrap();
        match next_registration(&mut bad_events).await {
            RegEvent::Failed { code, .. } => assert_eq!(code, 403),
            other => panic!("expected a failure, got {other:?}"),
        }
        bad.close(Duration::from_secs(2)).await;

        let (account, mut events) = Account::start(s.sip_addr(), config("1001", PW, &s)).await.unwrap();
        assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 });
        // The PBX stored one binding with the instance id and push provider
        // (bindings reach the store in batches, a moment later).
        let first = wait_for("the binding in the store", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 1 && b[0].contains(INSTANCE) && b[0].contains("pn-provider=apns")).then(|| b[0].clone())
        });
        assert!(first.contains("pn-prid=devicetoken0123"), "{first}");

        // Wi-Fi -> LTE: a new flow (new source port) replaces the binding.
        account.network_changed();
        assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 });
        let moved = wait_for("the binding on the new flow", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 1 && b[0] != first).then(|| b[0].clone())
        });
        assert!(moved.contains(INSTANCE), "{moved}");

        // Calls through the PBX. Out: the SDK calls 1002 (a scripted phone
        // that answers), the call connects, and the SDK's hangup reaches
        // 1002 as a BYE.
        let sdp = bytes::Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n");
        let addr = s.sip_addr();
        let callee = tokio::task::spawn_blocking(move || Phone::register(addr, "1002", PW, Behaviour::AnswerAfter(Duration::from_millis(50)))).await.unwrap();
        let call_id = account.dial("1002", sdp.clone()).await.unwrap();
        assert_eq!(next_call_event(&mut events, &call_id).await, tsunagu_client::CallEvent::Ringing);
        let connected = next_call_event(&mut events, &call_id).await;
        let tsunagu_client::CallEvent::Connected { sdp: Some(answer) } = connected else { panic!("expected Connected, got {connected:?}") };
        assert!(String::from_utf8_lossy(&answer).contains("m=audio"), "the PBX's SDP answer");
        account.hangup(&call_id);
        assert!(matches!(next_call_event(&mut events, &call_id).await, tsunagu_client::CallEvent::Ended { .. }));
        let leg = callee.invites().pop().expect("1002 was rung");
        let leg_id = leg.call_id().to_string();
        tokio::task::spawn_blocking(move || {
            callee.wait_request_in("BYE", &leg_id, Duration::from_secs(5));
        })
        .await
        .unwrap();

        // In: a caller dials 1001; the PBX reaches the SDK over its flow, the
        // app answers, the caller gets 200, and the caller's hangup ends the
        // call in the SDK.
        let caller = tokio::task::spawn_blocking(move || {
            let p = Phone::register(addr, "1002", PW, Behaviour::Busy);
            let c = p.dial("1001", Duration::from_secs(10));
            (p, c)
        });
        let incoming = loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(AccountEvent::IncomingCall { call_id, from, offer })) => break (call_id, from, offer),
                Ok(Some(_)) => continue,
                other => panic!("no incoming call: {other:?}"),
            }
        };
        assert_eq!(incoming.1, "1002");
        assert!(String::from_utf8_lossy(&incoming.2).contains("m=audio"));
        account.answer(&incoming.0, sdp.clone());
        let (p, c) = caller.await.unwrap();
        assert_eq!(c.status(), 200, "the caller was answered by the SDK");
        assert_eq!(next_call_event(&mut events, &incoming.0).await, tsunagu_client::CallEvent::Connected { sdp: None });
        tokio::task::spawn_blocking(move || {
            p.hangup(&c);
        })
        .await
        .unwrap();
        assert!(matches!(next_call_event(&mut events, &incoming.0).await, tsunagu_client::CallEvent::Ended { code: 200, .. }));

        // Closing removes the binding.
        account.close(Duration::from_secs(5)).await;
        assert_eq!(account.state(), tsunagu_client::RegState::Unregistered);
        wait_for("the binding removed", Duration::from_secs(10), || bindings(&s).is_empty().then_some(()));
    });
}

/// The account over TCP and over TLS (trusting the PBX's development
/// certificate): both register, each binding records its transport, a
/// network change opens a new connection that replaces the binding, and
/// closing removes them.
#[test]
fn sdk_account_registers_over_tcp_and_tls() {
    let sb = Sandbox::new("client-tcp-tls");
    let s = Server::start(&sb);
    s.cli(&["user", "add", "1001", "--password", PW]);
    let tls_addr = std::net::SocketAddr::new(s.sip_addr().ip(), s.sip_addr().port() + 1);
    let ca = sb.data().join("tls").join("dev-cert.pem");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut tcp_cfg = config("1001", PW, &s);
        tcp_cfg.instance_id = Some("urn:uuid:6f1c2a3e-0000-4000-8000-0000000000cc".into());
        let (tcp, mut tcp_events) = Account::start_with(s.sip_addr(), Transport::Tcp, tcp_cfg).await.unwrap();
        assert_eq!(next_registration(&mut tcp_events).await, RegEvent::Registered { expires: 300 });
        let tls_cfg = config("1001", PW, &s);
        let (tls, mut tls_events) = Account::start_with(tls_addr, Transport::Tls { ca }, tls_cfg).await.unwrap();
        assert_eq!(next_registration(&mut tls_events).await, RegEvent::Registered { expires: 300 });
        let both = wait_for("a TCP and a TLS binding", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 2 && b.iter().any(|l| l.contains("transport=tcp")) && b.iter().any(|l| l.contains("transport=tls"))).then_some(b)
        });
        let old_tls = both.iter().find(|l| l.contains("transport=tls")).cloned().unwrap_or_default();

        // A network change: a new TLS connection (new source port) replaces
        // the binding of that device.
        tls.network_changed();
        assert_eq!(next_registration(&mut tls_events).await, RegEvent::Registered { expires: 300 });
        wait_for("the TLS binding on the new connection", Duration::from_secs(10), || {
            let b = bindings(&s);
            (b.len() == 2 && b.iter().any(|l| l.contains("transport=tls") && *l != old_tls)).then_some(())
        });

        tcp.close(Duration::from_secs(5)).await;
        tls.close(Duration::from_secs(5)).await;
        wait_for("both bindings removed", Duration::from_secs(10), || bindings(&s).is_empty().then_some(()));
    });
}

/// A TLS account that does not trust the PBX's certificate does not
/// connect: the error says so, and nothing is registered.
#[test]
fn sdk_account_refuses_an_untrusted_pbx_certificate() {
    let sb = Sandbox::new("client-tls-bad");
    let s = Server::start(&sb);
    s.cli(&["user", "add", "1001", "--password", PW]);
    let tls_addr = std::net::SocketAddr::new(s.sip_addr().ip(), s.sip_addr().port() + 1);
    // Some other certificate, not the PBX's.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca = sb.file("other-ca.pem");
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = Account::start_with(tls_addr, Transport::Tls { ca }, config("1001", PW, &s)).await;
        let err = r.err().expect("the handshake fails");
        assert!(err.to_string().contains("cannot reach the PBX"), "{err}");
    });
    assert!(bindings(&s).is_empty());
}

/// Two-way audio between the SDK and a real phone (baresip) through the
/// PBX, both directions of call set-up, in Opus end to end: the SDK plays 440 Hz and records
/// what it hears, baresip plays 1000 Hz and records; each recording must
/// hold the other side's tone (frequency check).
#[test]
fn sdk_calls_and_answers_baresip_with_two_way_audio_through_the_pbx() {
    use common::audio::assert_hears;
    use common::baresip::{Account as BaresipAccount, AnswerMode, Baresip};
    use std::sync::Arc;
    use tsunagu_client::audio::{AudioFormat, AudioPort, SplitPort, ToneSource, WavSink};

    let sb = Sandbox::new("client-audio");
    let s = Server::start(&sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    // baresip speaks Opus only: the PBX keeps Opus on both legs (no
    // transcoding), so the SDK's own Opus encoder and decoder face a real
    // peer's.
    let mut phone = Baresip::builder(&sb, "p1002").account(BaresipAccount::new("1002", PW, s.sip_addr())).answer(AnswerMode::Auto).tone(1000.0).codecs(&["opus"]).start();
    phone.registered(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (account, mut events) = rt.block_on(Account::start(s.sip_addr(), config("1001", PW, &s))).unwrap();
    rt.block_on(async {
        assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 });
    });
    // 440 Hz out, what comes in recorded to `wav`; the test keeps the sink
    // to close it when the call is over.
    let port = |wav: &std::path::Path| -> (Arc<dyn AudioPort>, Arc<WavSink>) {
        let tone = Arc::new(ToneSource::new(AudioFormat::ENGINE, 440.0, 8000).unwrap());
        let sink = Arc::new(WavSink::create(wav, 8000).unwrap());
        (Arc::new(SplitPort::new(tone, sink.clone()).unwrap()), sink)
    };

    // The SDK calls baresip.
    let out_wav = sb.file("sdk-out.wav");
    let (out_port, out_sink) = port(&out_wav);
    let call_id = rt.block_on(account.dial_with_audio("1002", out_port)).unwrap();
    let answer = rt.block_on(async {
        loop {
            match next_call_event(&mut events, &call_id).await {
                tsunagu_client::CallEvent::Connected { sdp } => break sdp.unwrap_or_default(),
                tsunagu_client::CallEvent::Ringing => continue,
                other => panic!("{other:?}"),
            }
        }
    });
    // The SDK offered Opus first; the PBX answered it in Opus.
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.contains("opus/48000"), "{answer}");
    phone.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = phone.wait_heard(2.0, Duration::from_secs(15));
    account.hangup(&call_id);
    rt.block_on(async { assert!(matches!(next_call_event(&mut events, &call_id).await, tsunagu_client::CallEvent::Ended { .. })) });
    phone.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert_hears(&heard, 440.0, &[1000.0]);
    assert!(out_sink.close().unwrap() > 8000, "the SDK recorded more than a second");
    assert_hears(&out_wav, 1000.0, &[440.0]);

    // baresip calls the SDK, which answers with audio.
    let in_wav = sb.file("sdk-in.wav");
    phone.dial(&format!("sip:1001@{}", s.sip_addr()));
    let incoming = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(AccountEvent::IncomingCall { call_id, .. })) => break call_id,
                Ok(Some(_)) => continue,
                other => panic!("no incoming call: {other:?}"),
            }
        }
    });
    let (in_port, in_sink) = port(&in_wav);
    account.answer_with_audio(&incoming, in_port);
    phone.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = phone.wait_heard(2.0, Duration::from_secs(15));
    phone.hangup();
    rt.block_on(async {
        loop {
            match next_call_event(&mut events, &incoming).await {
                tsunagu_client::CallEvent::Ended { .. } => break,
                _ => continue,
            }
        }
    });
    assert_hears(&heard, 440.0, &[1000.0]);
    let n = in_sink.close().unwrap();
    assert!(n > 8000, "the SDK recorded more than a second, not {n} samples");
    assert_hears(&in_wav, 1000.0, &[440.0]);
    rt.block_on(account.close(Duration::from_secs(5)));
}

/// Over TLS the SDK encrypts its media (SDES-SRTP, RTP/SAVP offer); the
/// PBX keeps SRTP on the SDK's leg and plain RTP towards a phone without
/// it, and both hear each other.
#[test]
fn sdk_over_tls_encrypts_its_media_and_talks_to_a_plain_phone() {
    use common::audio::assert_hears;
    use common::baresip::{Account as BaresipAccount, AnswerMode, Baresip};
    use std::sync::Arc;
    use tsunagu_client::audio::{AudioFormat, SplitPort, ToneSource, WavSink};

    let sb = Sandbox::new("client-srtp");
    let s = Server::start(&sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let mut phone = Baresip::builder(&sb, "p1002").account(BaresipAccount::new("1002", PW, s.sip_addr())).answer(AnswerMode::Auto).tone(1000.0).codecs(&["PCMU"]).start();
    phone.registered(Duration::from_secs(10));
    let tls_addr = std::net::SocketAddr::new(s.sip_addr().ip(), s.sip_addr().port() + 1);
    let ca = sb.data().join("tls").join("dev-cert.pem");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (account, mut events) = rt.block_on(Account::start_with(tls_addr, Transport::Tls { ca }, config("1001", PW, &s))).unwrap();
    rt.block_on(async { assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 }) });
    let rec = sb.file("srtp.wav");
    let sink = Arc::new(WavSink::create(&rec, 8000).unwrap());
    let port = Arc::new(SplitPort::new(Arc::new(ToneSource::new(AudioFormat::ENGINE, 440.0, 8000).unwrap()), sink.clone()).unwrap());
    let call_id = rt.block_on(account.dial_with_audio("1002", port)).unwrap();
    let answer = rt.block_on(async {
        loop {
            match next_call_event(&mut events, &call_id).await {
                tsunagu_client::CallEvent::Connected { sdp } => break String::from_utf8_lossy(&sdp.unwrap_or_default()).into_owned(),
                tsunagu_client::CallEvent::Ringing => continue,
                other => panic!("{other:?}"),
            }
        }
    });
    assert!(answer.contains("RTP/SAVP") && answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"), "the PBX answered SRTP: {answer}");
    phone.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = phone.wait_heard(2.0, Duration::from_secs(15));
    account.hangup(&call_id);
    rt.block_on(async { assert!(matches!(next_call_event(&mut events, &call_id).await, tsunagu_client::CallEvent::Ended { .. })) });
    assert_hears(&heard, 440.0, &[1000.0]);
    assert!(sink.close().unwrap() > 8000);
    assert_hears(&rec, 1000.0, &[440.0]);
    rt.block_on(account.close(Duration::from_secs(5)));
}

/// The PBX relays 150 more packets (1.5 s of two-way audio) within 10 s:
/// baresip's recorder does not follow a re-INVITE, so the relay's counter
/// is the evidence that media flows after a resume.
fn media_flows_again(s: &Server) {
    let relayed = || s.metrics().lines().filter(|l| l.starts_with("tsunagu_media_packets_relayed_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>();
    let before = relayed();
    wait_for("two-way media after resume", Duration::from_secs(10), || (relayed() >= before + 150.0).then_some(()));
}

/// A call from the SDK (1001, 440 Hz, playout discarded) to baresip (1002,
/// PCMU, answering by itself) through a fresh PBX, connected on both sides.
struct ConnectedCall {
    sb: Sandbox,
    s: Server,
    phone: common::baresip::Baresip,
    rt: tokio::runtime::Runtime,
    account: Account,
    events: UnboundedReceiver<AccountEvent>,
    call_id: String,
}

fn connected_to_baresip(name: &str) -> ConnectedCall {
    use common::baresip::{Account as BaresipAccount, AnswerMode, Baresip};
    use std::sync::Arc;
    use tsunagu_client::audio::{AudioFormat, NullPort, SplitPort, ToneSource};

    let sb = Sandbox::new(name);
    let s = Server::start(&sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let mut phone = Baresip::builder(&sb, "p1002").account(BaresipAccount::new("1002", PW, s.sip_addr())).answer(AnswerMode::Auto).tone(1000.0).codecs(&["PCMU"]).start();
    phone.registered(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (account, mut events) = rt.block_on(Account::start(s.sip_addr(), config("1001", PW, &s))).unwrap();
    rt.block_on(async { assert_eq!(next_registration(&mut events).await, RegEvent::Registered { expires: 300 }) });
    let port = Arc::new(SplitPort::new(Arc::new(ToneSource::new(AudioFormat::ENGINE, 440.0, 8000).unwrap()), Arc::new(NullPort::default())).unwrap());
    let call_id = rt.block_on(account.dial_with_audio("1002", port)).unwrap();
    phone.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    rt.block_on(async {
        loop {
            if let tsunagu_client::CallEvent::Connected { .. } = next_call_event(&mut events, &call_id).await {
                break;
            }
        }
    });
    ConnectedCall { sb, s, phone, rt, account, events, call_id }
}

/// The far end holds and resumes (re-INVITEs that the PBX passes to the
/// SDK as new offers): the SDK answers each with the mirrored direction,
/// the call goes on, and media flows again after the resume.
#[test]
fn sdk_answers_hold_and_resume_from_the_far_end() {
    let ConnectedCall { sb: _sb, s, mut phone, rt, account, mut events, call_id } = connected_to_baresip("client-hold");
    let offers = |events: &mut UnboundedReceiver<AccountEvent>, rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            loop {
                match next_call_event(events, &call_id).await {
                    tsunagu_client::CallEvent::RemoteOffer { sdp } => break String::from_utf8_lossy(&sdp).into_owned(),
                    tsunagu_client::CallEvent::Ended { code, reason } => panic!("the call ended: {code} {reason}"),
                    _ => continue,
                }
            }
        })
    };
    phone.command("hold", "").expect("hold");
    let offer = offers(&mut events, &rt);
    assert!(offer.contains("a=sendonly"), "{offer}");
    phone.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    phone.command("resume", "").expect("resume");
    let offer = offers(&mut events, &rt);
    assert!(offer.contains("a=sendrecv") || !offer.contains("a=sendonly"), "{offer}");
    phone.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    media_flows_again(&s);
    account.hangup(&call_id);
    phone.wait_event("CALL_CLOSED", Duration::from_secs(10));
    rt.block_on(account.close(Duration::from_secs(5)));
}

/// The SDK puts the far end on hold and resumes (its own re-INVITEs through
/// the PBX): each is answered (recvonly for the hold), baresip sees the
/// new offers, and media flows again after the resume.
#[test]
fn sdk_puts_the_far_end_on_hold_and_resumes() {
    let ConnectedCall { sb: _sb, s, mut phone, rt, account, mut events, call_id } = connected_to_baresip("client-sdk-hold");
    let answered = |events: &mut UnboundedReceiver<AccountEvent>| {
        rt.block_on(async {
            loop {
                match next_call_event(events, &call_id).await {
                    tsunagu_client::CallEvent::OfferAnswered { sdp } => break String::from_utf8_lossy(&sdp).into_owned(),
                    tsunagu_client::CallEvent::OfferRefused { code } => panic!("the hold was refused: {code}"),
                    tsunagu_client::CallEvent::Ended { code, reason } => panic!("the call ended: {code} {reason}"),
                    _ => continue,
                }
            }
        })
    };
    account.hold(&call_id, true);
    let ev = phone.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    assert_eq!(ev.param, "offer", "{ev}");
    let answer = answered(&mut events);
    assert!(answer.contains("a=recvonly") || answer.contains("a=inactive"), "{answer}");
    account.hold(&call_id, false);
    phone.wait_event("CALL_REMOTE_SDP", Duration::from_secs(10));
    let answer = answered(&mut events);
    assert!(!answer.contains("a=recvonly") && !answer.contains("a=inactive"), "{answer}");
    media_flows_again(&s);
    account.hangup(&call_id);
    phone.wait_event("CALL_CLOSED", Duration::from_secs(10));
    rt.block_on(account.close(Duration::from_secs(5)));
}
