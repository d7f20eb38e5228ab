//! Self-test of the call-test harness (tests/common/{audio,baresip,linphone}.rs),
//! without the PBX: real peers call each other directly on 127.0.0.1 and the
//! tone each one plays must be what the other one heard.
//!
//! * `audio_helpers`: WAV writing/reading (also a header still being written,
//!   stereo 48 kHz), Goertzel tone detection and its negative controls.
//! * `baresip_calls_baresip_pcmu`: A (440 Hz) calls B (1000 Hz, auto answer)
//!   with PCMU only; DTMF both ways; each heard the other's tone; a wrong
//!   tone and silence fail the check.
//! * `baresip_calls_baresip_srtp_opus`: the same with opus and mandatory
//!   SDES-SRTP, B answering on command.
//! * `linphonec_and_baresip_both_ways`: linphonec calls baresip (PCMU) and
//!   baresip calls linphonec (opus, 48 kHz; answered on command), DTMF both
//!   ways, tones checked.
//! * `peers_register_to_a_fake_registrar`: baresip and linphonec register
//!   with digest MD5 to a tiny registrar in this test (UDP).
//!
//! Needs `baresip` and `linphonec` (Debian `baresip`, `linphone-cli`); the
//! tests fail with a clear message when one is missing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::audio::{self, assert_hears, dominant_tone, read_wav};
use common::baresip::{Account, AnswerMode, Baresip};
use common::linphone::{LinphoneAccount, Linphonec};
use common::*;

const A_HZ: f32 = 440.0;
const B_HZ: f32 = 1000.0;
const L_HZ: f32 = 697.0;
const EVENT: Duration = Duration::from_secs(10);
/// Audio each side must have received before the call is hung up.
const HEARD_SECS: f64 = 1.5;

thread_local! {
    static EXPECTING_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`, which must panic (a negative control); returns the message. The
/// expected panic is not printed (other threads' panics still are).
fn expect_panic(what: &str, f: impl FnOnce()) -> String {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTING_PANIC.with(|e| e.get()) {
                prev(info)
            }
        }));
    });
    EXPECTING_PANIC.with(|e| e.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    EXPECTING_PANIC.with(|e| e.set(false));
    match r {
        Ok(()) => panic!("negative control failed: {what} passed"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

/// Run negative controls on a real recording of the tone `heard_hz`
/// (`other_hz` is the tone of the other party).
fn negative_controls(sb: &Sandbox, heard: &std::path::Path, heard_hz: f32, other_hz: f32) {
    let (rate, s) = read_wav(heard);
    let skip = (rate as usize / 2).min(s.len());
    assert_eq!(
        dominant_tone(&s[skip..], rate, &[other_hz, heard_hz]),
        Some(heard_hz),
        "dominant_tone on {}",
        heard.display()
    );
    let msg = expect_panic("assert_hears with the wrong tone", || {
        assert_hears(heard, other_hz, &[heard_hz])
    });
    assert!(msg.contains("not the expected"), "unexpected message: {msg}");
    // Silence of the same format.
    let silent = sb.file(&format!("silence-{rate}.wav"));
    audio::make_silence_wav(&silent, 3.0, rate);
    let (r2, s2) = read_wav(&silent);
    assert_eq!(dominant_tone(&s2, r2, &[heard_hz, other_hz]), None);
    let msg = expect_panic("assert_hears on silence", || {
        assert_hears(&silent, heard_hz, &[other_hz])
    });
    assert!(msg.contains("silent"), "unexpected message: {msg}");
}

#[test]
fn audio_helpers() {
    let sb = Sandbox::new("harness-audio");
    // A tone round-trips.
    let p = sb.file("t.wav");
    audio::make_tone_wav(&p, 440.0, 2.0, 8000);
    let (rate, s) = read_wav(&p);
    assert_eq!((rate, s.len()), (8000, 16000));
    assert_eq!(dominant_tone(&s, rate, &[440.0, 1000.0]), Some(440.0));
    assert_hears(&p, 440.0, &[1000.0]);
    let a = audio::analyze(&s, rate, &[440.0, 1000.0]);
    assert!(a.power(440.0) > 0.9 * a.rms * a.rms, "{a}");

    // A header still being written (libsndfile: RIFF and data sizes 0).
    let mut b = std::fs::read(&p).unwrap();
    b[4..8].copy_from_slice(&0u32.to_le_bytes());
    b[40..44].copy_from_slice(&0u32.to_le_bytes());
    b.truncate(44 + 8001); // an odd byte: half a sample
    let (r, s) = audio::decode_wav(&b).unwrap();
    assert_eq!((r, s.len()), (8000, 4000));

    // Stereo 48 kHz (baresip's opus dumps) mixes down to mono.
    let n = 48000;
    let w = 2.0 * std::f64::consts::PI * 1000.0 / 48000.0;
    let mut st = Vec::with_capacity(2 * n);
    for i in 0..n {
        let v = (12000.0 * (w * i as f64).sin()) as i16;
        st.push(v);
        st.push(v);
    }
    let p2 = sb.file("st.wav");
    audio::write_wav(&p2, 48000, 2, &st);
    let (r, m) = read_wav(&p2);
    assert_eq!((r, m.len()), (48000, n));
    assert_eq!(dominant_tone(&m, r, &[440.0, 1000.0]), Some(1000.0));
    assert!((audio::wav_secs(&p2) - 1.0).abs() < 1e-9);

    // Negative controls: silence, two equal tones, noise.
    let z = vec![0i16; 16000];
    assert_eq!(dominant_tone(&z, 8000, &[440.0, 1000.0]), None);
    let two: Vec<i16> = (0..16000)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect();
    assert_eq!(dominant_tone(&two, 8000, &[440.0, 1000.0]), None);
    let mut x: u32 = 12345;
    let noise: Vec<i16> = (0..16000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i16) / 4
        })
        .collect();
    assert_eq!(dominant_tone(&noise, 8000, &[440.0, 1000.0]), None);
    let quiet = sb.file("quiet.wav");
    audio::write_wav(&quiet, 8000, 1, &two.iter().map(|v| v / 100).collect::<Vec<_>>());
    expect_panic("assert_hears on a quiet file", || assert_hears(&quiet, 440.0, &[1000.0]));
}

/// A calls B directly; both must hear the other's tone. B answers by itself
/// (`auto`) or is told to accept when it rings.
fn baresip_pair(
    name: &str,
    codecs: &[&str],
    mediaenc: Option<&str>,
    auto: bool,
    want_decoder: &str,
) {
    require_tool("baresip", "baresip");
    let sb = Sandbox::new(name);
    let t0 = Instant::now();
    let mut ab = Baresip::builder(&sb, "alice").tone(A_HZ).codecs(codecs);
    let mut bb = Baresip::builder(&sb, "bob")
        .tone(B_HZ)
        .codecs(codecs)
        .answer(if auto { AnswerMode::Auto } else { AnswerMode::Manual });
    if let Some(m) = mediaenc {
        ab = ab.mediaenc(m);
        bb = bb.mediaenc(m);
    }
    let mut a = ab.start();
    let mut b = bb.start();
    let t_up = t0.elapsed();

    a.dial(&b.uri());
    if !auto {
        let inc = b.wait_event("CALL_INCOMING", EVENT);
        assert!(inc.peeruri.contains("alice@"), "{inc}");
        a.wait_event("CALL_RINGING", EVENT);
        b.accept();
    }
    a.wait_event("CALL_ESTABLISHED", EVENT);
    b.wait_event("CALL_ESTABLISHED", EVENT);
    let t_est = t0.elapsed();

    // DTMF both ways (RFC 4733).
    a.send_dtmf("15#");
    for d in ["1", "5", "#"] {
        b.try_wait_event_where(EVENT, |e| e.kind == "CALL_DTMF_START" && e.param == d)
            .unwrap_or_else(|| panic!("bob did not get DTMF {d}: {:?}", b.events()));
    }
    b.send_dtmf("*9");
    for d in ["*", "9"] {
        a.try_wait_event_where(EVENT, |e| e.kind == "CALL_DTMF_START" && e.param == d)
            .unwrap_or_else(|| panic!("alice did not get DTMF {d}: {:?}", a.events()));
    }

    let a_heard = a.wait_heard(HEARD_SECS, EVENT);
    let b_heard = b.wait_heard(HEARD_SECS, EVENT);
    let t_heard = t0.elapsed();
    a.hangup();
    a.wait_event("CALL_CLOSED", EVENT);
    b.wait_event("CALL_CLOSED", EVENT);
    let t_closed = t0.elapsed();

    for (who, p) in [("alice", &a), ("bob", &b)] {
        let dec = p.audio_decoder().unwrap_or_default();
        assert!(
            dec.starts_with(want_decoder),
            "{who} decoded with {dec:?}, want {want_decoder}"
        );
    }
    if mediaenc.is_some() {
        for (who, p) in [("alice", &a), ("bob", &b)] {
            assert!(
                p.srtp_enabled(),
                "{who} did not log \"SRTP is Enabled\":\n{}",
                p.log_tail(40)
            );
        }
    } else {
        assert!(!a.srtp_enabled() && !b.srtp_enabled(), "SRTP without mediaenc?");
    }
    let fa = audio::wav_format(&a_heard).unwrap();
    eprintln!(
        "[e2e] {name}: alice heard {} ({} Hz, {} ch, {:.2} s): {}",
        a_heard.display(),
        fa.rate,
        fa.channels,
        fa.secs(),
        audio::analyze_wav(&a_heard, audio::SKIP_SECS, &[B_HZ, A_HZ])
    );
    assert_hears(&a_heard, B_HZ, &[A_HZ]);
    assert_hears(&b_heard, A_HZ, &[B_HZ]);
    // What each one sent is its own tone.
    assert_hears(&a.enc_wav(), A_HZ, &[B_HZ]);
    negative_controls(&sb, &b_heard, A_HZ, B_HZ);
    eprintln!(
        "[e2e] {name} timings: started {t_up:?}, established {t_est:?}, \
         {HEARD_SECS} s heard {t_heard:?}, closed {t_closed:?}, total {:?}",
        t0.elapsed()
    );
}

#[test]
fn baresip_calls_baresip_pcmu() {
    baresip_pair("harness-bb-pcmu", &["PCMU"], None, true, "PCMU 8000Hz 1ch");
}

#[test]
fn baresip_calls_baresip_srtp_opus() {
    baresip_pair(
        "harness-bb-srtp-opus",
        &["opus"],
        Some("srtp-mand"),
        false,
        "opus 48000Hz 2ch",
    );
}

#[test]
fn linphonec_and_baresip_both_ways() {
    require_tool("baresip", "baresip");
    require_tool("linphonec", "linphone-cli");
    let sb = Sandbox::new("harness-linphonec");
    let t0 = Instant::now();
    let mut l = Linphonec::builder(&sb, "lin")
        .tone(L_HZ)
        .auto_answer(true)
        .start();
    // Two baresips: one PCMU only (answers), one opus only (calls).
    let mut bp = Baresip::builder(&sb, "bpcmu")
        .tone(A_HZ)
        .codecs(&["PCMU"])
        .answer(AnswerMode::Auto)
        .start();
    let mut bo = Baresip::builder(&sb, "bopus").tone(B_HZ).codecs(&["opus"]).start();
    let t_up = t0.elapsed();
    // linphonec answers OPTIONS on its SIP port.
    let c = UdpClient::new(format!("127.0.0.1:{}", l.sip_port).parse().unwrap());
    let r = c.options().expect("OPTIONS to linphonec");
    assert!(r.status().is_some(), "{}", r.text());

    // 1. linphonec calls baresip (PCMU).
    let t1 = Instant::now();
    let id = l.call(&bp.uri());
    bp.wait_event("CALL_ESTABLISHED", EVENT);
    assert_eq!(l.wait_connected(EVENT), id);
    l.send_dtmf("42");
    for d in ["4", "2"] {
        bp.try_wait_event_where(EVENT, |e| e.kind == "CALL_DTMF_START" && e.param == d)
            .unwrap_or_else(|| panic!("baresip did not get DTMF {d} from linphonec: {:?}", bp.events()));
    }
    bp.send_dtmf("7#");
    l.wait_dtmf('7', EVENT);
    l.wait_dtmf('#', EVENT);
    let l_heard = l.wait_heard(HEARD_SECS, EVENT);
    let bp_heard = bp.wait_heard(HEARD_SECS, EVENT);
    l.terminate();
    l.wait_ended(EVENT);
    bp.wait_event("CALL_CLOSED", EVENT);
    let d1 = t1.elapsed();
    assert!(bp.audio_decoder().unwrap_or_default().starts_with("PCMU"));
    let f = audio::wav_format(&l_heard).unwrap();
    eprintln!(
        "[e2e] linphonec -> baresip: linphonec recorded {} ({} Hz, {} ch, {:.2} s)",
        l_heard.display(),
        f.rate,
        f.channels,
        f.secs()
    );
    assert_eq!(f.rate, 8000, "PCMU call recorded at {} Hz", f.rate);
    assert_hears(&l_heard, A_HZ, &[L_HZ]);
    assert_hears(&bp_heard, L_HZ, &[A_HZ]);

    // 2. baresip calls linphonec (opus); linphonec answers by command.
    let t2 = Instant::now();
    l.set_auto_answer(false);
    let rec2 = l.record_next();
    bo.dial(&l.uri());
    let id2 = l.wait_incoming(EVENT);
    bo.wait_event("CALL_RINGING", EVENT);
    l.answer();
    assert_eq!(l.wait_connected(EVENT), id2);
    bo.wait_event("CALL_ESTABLISHED", EVENT);
    let l_heard2 = l.wait_heard(HEARD_SECS, EVENT);
    assert_eq!(l_heard2, rec2);
    let bo_heard = bo.wait_heard(HEARD_SECS, EVENT);
    bo.hangup();
    bo.wait_event("CALL_CLOSED", EVENT);
    l.wait_ended(EVENT);
    let d2 = t2.elapsed();
    assert!(
        bo.audio_decoder().unwrap_or_default().starts_with("opus"),
        "{:?}",
        bo.audio_decoder()
    );
    let f = audio::wav_format(&l_heard2).unwrap();
    let fb = audio::wav_format(&bo_heard).unwrap();
    eprintln!(
        "[e2e] baresip -> linphonec: linphonec recorded {} ({} Hz, {} ch, {:.2} s); \
         baresip {} ({} Hz, {} ch)",
        l_heard2.display(),
        f.rate,
        f.channels,
        f.secs(),
        bo_heard.display(),
        fb.rate,
        fb.channels
    );
    assert_hears(&l_heard2, B_HZ, &[L_HZ]);
    assert_hears(&bo_heard, L_HZ, &[B_HZ]);
    negative_controls(&sb, &l_heard2, B_HZ, L_HZ);
    eprintln!(
        "[e2e] linphonec timings: peers up {t_up:?}, call 1 {d1:?}, call 2 {d2:?}, total {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------
// A tiny registrar (UDP, digest MD5 with qop=auth), to test `registered()`
// ---------------------------------------------------------------------------

struct FakeRegistrar {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// (user, Contact) of every accepted REGISTER.
    bindings: Arc<Mutex<Vec<(String, String)>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl FakeRegistrar {
    const REALM: &'static str = "fake";

    fn start(users: &[(&str, &str)]) -> FakeRegistrar {
        let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let bindings = Arc::new(Mutex::new(Vec::new()));
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        let (st, bd) = (stop.clone(), bindings.clone());
        let handle = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some((m, _)) = SipMsg::parse(&buf[..len]) else {
                    continue;
                };
                if m.status().is_some() {
                    continue;
                }
                let method = m.start_line.split(' ').next().unwrap_or("").to_string();
                let reply = |code: &str, extra: &str| -> String {
                    let mut r = format!("SIP/2.0 {code}\r\n");
                    for v in m.headers_named("via") {
                        r.push_str(&format!("Via: {v}\r\n"));
                    }
                    let to = m.header("to").unwrap_or("");
                    let to = if to.contains("tag=") {
                        to.to_string()
                    } else {
                        format!("{to};tag=fake1")
                    };
                    r.push_str(&format!(
                        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
                        m.header("from").unwrap_or(""),
                        m.call_id().unwrap_or(""),
                        m.header("cseq").unwrap_or("")
                    ));
                    r
                };
                let resp = if method != "REGISTER" {
                    reply("200 OK", "")
                } else {
                    match m.header("authorization").map(parse_challenge) {
                        None => {
                            n += 1;
                            reply(
                                "401 Unauthorized",
                                &format!(
                                    "WWW-Authenticate: Digest realm=\"{}\", nonce=\"n{n:x}\", algorithm=MD5, qop=\"auth\"\r\n",
                                    Self::REALM
                                ),
                            )
                        }
                        Some(ch) => {
                            let user = ch.param("username").unwrap_or("").to_string();
                            let ok = users.iter().find(|(u, _)| *u == user).is_some_and(|(_, pw)| {
                                let p = |k: &str| ch.param(k).unwrap_or("").to_string();
                                let ha1 = md5_hex(&format!("{user}:{}:{pw}", Self::REALM));
                                let ha2 = md5_hex(&format!("REGISTER:{}", p("uri")));
                                let want = if ch.param("qop").is_some() {
                                    md5_hex(&format!(
                                        "{ha1}:{}:{}:{}:{}:{ha2}",
                                        p("nonce"),
                                        p("nc"),
                                        p("cnonce"),
                                        p("qop")
                                    ))
                                } else {
                                    md5_hex(&format!("{ha1}:{}:{ha2}", p("nonce")))
                                };
                                want == p("response")
                            });
                            if ok {
                                let contact = m.header("contact").unwrap_or("").to_string();
                                bd.lock().unwrap().push((user, contact.clone()));
                                let c = if contact.contains("expires=") {
                                    contact
                                } else {
                                    format!("{contact};expires=600")
                                };
                                reply("200 OK", &format!("Contact: {c}\r\n"))
                            } else {
                                reply("403 Forbidden", "")
                            }
                        }
                    }
                };
                let _ = sock.send_to(resp.as_bytes(), from);
            }
        });
        FakeRegistrar {
            addr,
            stop,
            bindings,
            handle: Some(handle),
        }
    }

    fn bound(&self, user: &str) -> Vec<String> {
        self.bindings
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

impl Drop for FakeRegistrar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn peers_register_to_a_fake_registrar() {
    require_tool("baresip", "baresip");
    require_tool("linphonec", "linphone-cli");
    let sb = Sandbox::new("harness-register");
    let reg = FakeRegistrar::start(&[("2001", "pw-2001"), ("2002", "pw-2002")]);
    let t0 = Instant::now();
    let mut b = Baresip::builder(&sb, "breg")
        .account(Account::new("2001", "pw-2001", reg.addr))
        .start();
    let mut l = Linphonec::builder(&sb, "lreg")
        .account(LinphoneAccount::new("2002", "pw-2002", reg.addr))
        .start();
    b.registered(EVENT);
    l.registered(EVENT);
    eprintln!("[e2e] both registered after {:?}", t0.elapsed());
    let bb = reg.bound("2001");
    let lb = reg.bound("2002");
    assert!(
        bb.iter().any(|c| c.contains(&format!("127.0.0.1:{}", b.sip_port))),
        "baresip's contacts: {bb:?}"
    );
    assert!(
        lb.iter().any(|c| c.contains(&format!("127.0.0.1:{}", l.sip_port))),
        "linphonec's contacts: {lb:?}"
    );
    assert_eq!(l.aor.as_deref(), Some(format!("sip:2002@{}", reg.addr).as_str()));

    // A wrong password never registers (the helper would time out).
    let mut bad = Baresip::builder(&sb, "bbad")
        .account(Account::new("2001", "wrong", reg.addr))
        .start();
    let msg = expect_panic("registered() with a wrong password", || {
        bad.registered(Duration::from_secs(3))
    });
    assert!(
        msg.contains("failed") || msg.contains("not registered"),
        "unexpected message: {msg}"
    );
}
