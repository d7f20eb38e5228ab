//! The PBX as an endpoint (ADR 0005): calls it answers itself with its own
//! audio — announcements, voice menus — heard by real phones (baresip),
//! over plain RTP and SRTP, in G.711 and Opus.

mod common;

use common::audio::{assert_hears, make_tone_wav};
use common::baresip::{Account, AnswerMode, Baresip};
use common::sipp::{free_udp_port_on, Sipp};
use common::{Sandbox, Server};
use std::time::Duration;

const PASSWORD: &str = "secret-pass-1";
const PHONE_TONE: f32 = 440.0;
const PROMPT_TONE: f32 = 500.0;

fn phone(sb: &Sandbox, s: &Server, name: &str, ext: &str, codecs: &[&str], mediaenc: Option<&str>) -> Baresip {
    let mut b = Baresip::builder(sb, name).account(Account::new(ext, PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(PHONE_TONE).codecs(codecs);
    if let Some(m) = mediaenc {
        b = b.mediaenc(m);
    }
    let mut p = b.start();
    p.registered(Duration::from_secs(10));
    p
}

/// A server with extensions 1001–1003 (password `PASSWORD`).
fn three_extensions(name: &str) -> (Sandbox, Server) {
    let sb = Sandbox::new(name);
    let s = Server::start(&sb);
    for ext in ["1001", "1002", "1003"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    (sb, s)
}

/// A number forwarded to an announcement: the PBX answers, the caller
/// hears the announcement's audio, and the PBX hangs up when it has played.
/// Once in G.711 over RTP, once in Opus over SRTP (the endpoint's packets
/// are sealed by the leg's own SRTP context).
#[test]
fn an_announcement_answers_plays_and_hangs_up() {
    let sb = Sandbox::new("pbx-announcement");
    let s = Server::start(&sb);
    for ext in ["1001", "1003", "1900"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    // A 16 kHz upload: the PBX stores it at 8 kHz.
    let wav = sb.file("tone500.wav");
    make_tone_wav(&wav, PROMPT_TONE, 3.0, 16000);
    s.cli(&["announcement", "add", "tone500", "--file", wav.to_str().unwrap()]);
    s.cli(&["forward", "1900", "--always", "announcement:tone500"]);

    for (name, ext, codecs, enc) in [("g711", "1001", &["PCMU"][..], None), ("opus-srtp", "1003", &["opus"][..], Some("srtp-mand"))] {
        let mut caller = phone(&sb, &s, name, ext, codecs, enc);
        caller.dial(&format!("sip:1900@{}", s.sip_addr()));
        caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
        let heard = caller.wait_heard(2.0, Duration::from_secs(10));
        // The PBX hangs up by itself after the announcement.
        caller.wait_event("CALL_CLOSED", Duration::from_secs(10));
        assert_hears(&heard, PROMPT_TONE, &[PHONE_TONE]);
        if enc.is_some() {
            assert!(caller.srtp_enabled(), "{name}: the call used SRTP");
            assert!(caller.audio_decoder().is_some_and(|d| d.starts_with("opus")), "{name}: decodes {:?}", caller.audio_decoder());
        }
    }
    let recs = common::wait_for("two closed call records", Duration::from_secs(5), || {
        let out = s.cli(&["calls", "--csv"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.lines().skip(1).filter(|l| l.contains("announcement:tone500")).count() == 2).then_some(text)
    });
    assert!(recs.lines().skip(1).all(|l| l.contains(",answered,")), "{recs}");
}

/// What arrives on `rtp` (PCMU) for `secs`, decoded; SIP requests that
/// come meanwhile on `caller` (none expected) fail the test.
fn listen(rtp: &std::net::UdpSocket, secs: f64) -> Vec<i16> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let end = std::time::Instant::now() + Duration::from_secs_f64(secs);
    rtp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while std::time::Instant::now() < end {
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                out.extend(buf[12..n].iter().map(|b| tsunagu_media::codec::ulaw_decode(*b)));
            }
        }
    }
    out
}

/// B (baresip) holds A twice: each time A hears the PBX's hold music (an
/// uploaded 660 Hz file set as `music_on_hold`) instead of silence, and
/// after each resume hears B's voice (880 Hz) again. A is the test's own
/// SIP/RTP client, so what it hears is read straight off its socket (the
/// phones' own recorders stop at a re-INVITE). The re-INVITE A gets says
/// `sendonly`: the PBX sends, whatever the holder offered.
#[test]
fn a_held_phone_hears_hold_music_until_resumed() {
    use common::raw::{digest, RawCaller};
    const MUSIC: f32 = 660.0;
    const B_TONE: f32 = 880.0;
    let sb = Sandbox::new("pbx-hold-music");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let wav = sb.file("music660.wav");
    make_tone_wav(&wav, MUSIC, 4.0, 44100);
    s.cli(&["announcement", "add", "music660", "--file", wav.to_str().unwrap()]);
    s.cli(&["setting", "set", "music_on_hold", "music660"]);
    let mut b = Baresip::builder(&sb, "holder").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));

    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut a = RawCaller {
        sip: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        server: s.sip_addr(),
        call_id: common::unique("hold-"),
        from_tag: common::unique("ft"),
        to_tag: None,
        cseq: 0,
    };
    let sdp = |dir: &str| {
        format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n",
            rtp.local_addr().unwrap().port()
        )
    };
    a.invite("1002", &sdp("sendrecv"), None);
    let challenge = a.final_response(Duration::from_secs(5));
    a.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    a.invite("1002", &sdp("sendrecv"), Some(auth));
    let ok = a.final_response(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    a.to_tag = ok.header("to").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap().to_string());
    a.in_dialog("ACK", a.cseq, "1002");
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));

    let mut periods = vec![("talk", listen(&rtp, 2.0))];
    for round in 0..2 {
        for (what, cmd, answer_dir) in [("hold", "hold", "recvonly"), (if round == 0 { "talk again" } else { "talk at the end" }, "resume", "sendrecv")] {
            b.command(cmd, "").unwrap_or_else(|e| panic!("{cmd}: {e}"));
            // The PBX's re-INVITE to A.
            let reinvite = common::wait_for(&format!("the re-INVITE after {cmd}"), Duration::from_secs(10), || {
                let m = a.recv(Duration::from_secs(10));
                (m.text().starts_with("INVITE ")).then_some(m)
            });
            let offered = String::from_utf8_lossy(&reinvite.body).into_owned();
            let want = if cmd == "hold" { "a=sendonly" } else { "a=sendrecv" };
            assert!(offered.contains(want), "{cmd}: A is offered {want}:\n{offered}");
            a.respond_200_with_sdp(&reinvite, Some(&sdp(answer_dir)));
            // Give the change a moment (packets in flight), then listen.
            let _ = listen(&rtp, 0.5);
            periods.push((what, listen(&rtp, 2.0)));
        }
    }
    b.hangup();
    let _ = a.recv(Duration::from_secs(10));
    for (what, heard) in periods {
        let want = if what == "hold" { MUSIC } else { B_TONE };
        let got = common::audio::dominant_tone(&heard, 8000, &[MUSIC, B_TONE, PHONE_TONE]);
        assert_eq!(got, Some(want), "{what}: A heard {got:?} ({} samples)", heard.len());
    }
}

/// The channels of a stored recording (stereo µ-law WAV, format 7):
/// (left, right) as 16-bit samples at 8 kHz.
fn read_ulaw_stereo(path: &std::path::Path) -> (Vec<i16>, Vec<i16>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF", "{}", path.display());
    assert_eq!(u16::from_le_bytes([b[20], b[21]]), 7, "µ-law");
    assert_eq!(u16::from_le_bytes([b[22], b[23]]), 2, "stereo");
    assert_eq!(u32::from_le_bytes([b[24], b[25], b[26], b[27]]), 8000);
    let mut at = 12;
    while at + 8 <= b.len() {
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        if &b[at..at + 4] == b"data" {
            let data = &b[at + 8..(at + 8 + len).min(b.len())];
            let left = data.chunks_exact(2).map(|f| tsunagu_media::codec::ulaw_decode(f[0])).collect();
            let right = data.chunks_exact(2).map(|f| tsunagu_media::codec::ulaw_decode(f[1])).collect();
            return (left, right);
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// With `recording_mode = all`, a call between two baresips is recorded:
/// the caller first hears the recording notice (the built-in Japanese
/// prompt, made by espeak-ng), then the call rings and is answered; the
/// stored file is stereo, the caller's leg on the left (the notice, then
/// the caller's 440 Hz) and the callee's 880 Hz on the right.
#[test]
fn a_recorded_call_is_stored_with_both_parties_and_starts_with_the_notice() {
    const B_TONE: f32 = 880.0;
    let sb = Sandbox::new("pbx-recording");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    s.cli(&["setting", "set", "recording_mode", "all"]);
    let mut a = phone(&sb, &s, "caller", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "callee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    // The PBX answers first (the notice), then B rings and answers.
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(20));
    b.wait_heard(3.0, Duration::from_secs(10));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));

    let line = common::wait_for("the recording stored", Duration::from_secs(20), || {
        let out = s.cli(&["recording", "list"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.split('\t').nth(3) == Some("stored")).map(str::to_string)
    });
    let id = line.split('\t').next().unwrap().to_string();
    let file = find_file(&s.data.join("objects"), &format!("{id}.wav")).unwrap_or_else(|| panic!("no {id}.wav under the object store"));
    let (left, right) = read_ulaw_stereo(&file);
    let secs = left.len() as f64 / 8000.0;
    assert!(secs > 4.0, "{secs:.1} s recorded");
    // The notice: speech at the start of the caller's channel, not a tone.
    let head = common::audio::analyze(&left[..(2 * 8000).min(left.len())], 8000, &[PHONE_TONE, B_TONE]);
    assert!(head.voiced_secs > 0.8, "the notice at the start of the left channel: {head:?}");
    assert_eq!(head.dominant(), None, "the notice is speech, not a phone's tone: {head:?}");
    // Then the conversation: the last 2 s, caller left, callee right.
    let tail = |ch: &[i16]| ch[ch.len() - 2 * 8000..ch.len() - 4000].to_vec();
    assert_eq!(common::audio::dominant_tone(&tail(&left), 8000, &[PHONE_TONE, B_TONE]), Some(PHONE_TONE), "left channel: the caller");
    assert_eq!(common::audio::dominant_tone(&tail(&right), 8000, &[PHONE_TONE, B_TONE]), Some(B_TONE), "right channel: the callee");
}

/// Where the IVR test's carrier lives (apart from e2e_trunk's addresses:
/// test binaries run in parallel).
const IVR_CARRIER_IP: &str = "127.0.0.5";
const IVR_DID: &str = "0312340000";

/// A caller from the carrier (SIPp) reaches a voice menu on a public
/// number, keys 2 (RFC 4733, SIPp's own digit captures) to enter the
/// sub-menu, then 1 for ring group 3000; the group's baresip answers
/// (SIPp sends digits only, no audio); the call record says answered by
/// 1002.
#[test]
fn sipp_keys_through_two_menu_levels_to_a_group_that_baresip_answers() {
    let sb = Sandbox::new("pbx-ivr");
    let data = sb.data();
    let sip_port = free_udp_port_on(IVR_CARRIER_IP);
    common::cli(&data, &["trunk", "add", "carrier", "--host", &format!("{IVR_CARRIER_IP}:{sip_port}"), "--transport", "udp"]);
    common::cli(&data, &["user", "add", "1002", "--password", PASSWORD]);
    for (name, hz) in [("menu-main", 600.0), ("menu-sub", 700.0)] {
        let wav = sb.file(&format!("{name}.wav"));
        make_tone_wav(&wav, hz, 4.0, 8000);
        common::cli(&data, &["announcement", "add", name, "--file", wav.to_str().unwrap()]);
    }
    common::cli(&data, &["group", "add", "3000", "--members", "1002"]);
    common::cli(&data, &["ivr", "add", "sub", "--prompt", "menu-sub", "--option", "1=group:3000", "--option", "9=back"]);
    common::cli(&data, &["ivr", "add", "main", "--prompt", "menu-main", "--option", "2=ivr:sub"]);
    common::cli(&data, &["did", "add", IVR_DID, "--to", "ivr:main"]);
    let s = Server::start(&sb);
    let mut member = Baresip::builder(&sb, "member").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(880.0).codecs(&["PCMU"]).start();
    member.registered(Duration::from_secs(10));

    let sipp = Sipp::start(&sb, "ivr", &common::sipp_file("ivr_dtmf.xml"), IVR_CARRIER_IP, sip_port, Some(s.sip_addr()), 1, &["-s", IVR_DID, "-key", "caller", "09011112222", "-d", "6000"]);
    // The group's phone rings only if both keys were understood.
    member.wait_event("CALL_ESTABLISHED", Duration::from_secs(20));
    sipp.finish().assert_success();
    member.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let rec = common::wait_for("the call record", Duration::from_secs(5), || {
        let out = s.cli(&["calls", "--csv"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().nth(1).filter(|l| l.contains(",answered,")).map(str::to_string)
    });
    assert!(rec.contains(",1002,") && rec.contains(IVR_DID), "answered by the group's 1002 after the menus: {rec}");
}

/// `want` appears in `seq` in that order (other tones may come between).
fn in_order(seq: &[f32], want: &[f32]) -> bool {
    let mut it = seq.iter();
    want.iter().all(|w| it.any(|t| t == w))
}

/// What `who` heard (`seq`) holds `want` in that order.
fn assert_in_order(seq: &[f32], want: &[f32], who: &str) {
    assert!(in_order(seq, want), "{who} heard {seq:?}; want {want:?} in that order");
}

/// The dominant tone of each 250 ms block of `path`, consecutive repeats
/// and silent or mixed blocks left out.
fn tone_sequence(path: &std::path::Path, candidates: &[f32]) -> Vec<f32> {
    let (rate, samples) = common::audio::read_wav(path);
    let mut seq: Vec<f32> = Vec::new();
    for block in samples.chunks(rate as usize / 4) {
        if let Some(t) = common::audio::dominant_tone(block, rate, candidates) {
            if seq.last() != Some(&t) {
                seq.push(t);
            }
        }
    }
    seq
}

/// A ring group with a greeting and a waiting announcement: the PBX
/// answers the caller, plays the greeting (500 Hz), then Japanese ringback
/// (400 Hz) while the member's phone rings, with the waiting announcement
/// (700 Hz) after 5 s, until the member answers (880 Hz).
#[test]
fn a_group_greets_and_announces_while_the_caller_waits() {
    const GREETING: f32 = 500.0;
    const RINGBACK: f32 = 400.0;
    const WAITING: f32 = 700.0;
    const MEMBER: f32 = 880.0;
    let sb = Sandbox::new("pbx-queue");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    for (name, hz, secs) in [("greeting", GREETING, 1.5), ("waiting", WAITING, 1.0)] {
        let wav = sb.file(&format!("{name}.wav"));
        make_tone_wav(&wav, hz, secs, 8000);
        s.cli(&["announcement", "add", name, "--file", wav.to_str().unwrap()]);
    }
    s.cli(&["group", "add", "3000", "--members", "1002", "--greeting", "greeting", "--queue-announcement", "waiting", "--queue-announcement-secs", "5"]);
    let mut a = phone(&sb, &s, "caller", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "member").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(MEMBER).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    a.dial(&format!("sip:3000@{}", s.sip_addr()));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    b.wait_event("CALL_INCOMING", Duration::from_secs(15));
    // Past the first waiting announcement (1.5 s greeting + 5 s + 1 s).
    a.wait_heard(8.5, Duration::from_secs(20));
    b.accept();
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = a.wait_heard(11.0, Duration::from_secs(15));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &[GREETING, RINGBACK, WAITING, MEMBER, PHONE_TONE]);
    let want = [GREETING, RINGBACK, WAITING, RINGBACK, MEMBER];
    assert_in_order(&seq, &want, "the caller");
}

/// Blind transfer by the PBX with recall, between baresips: A (440 Hz)
/// calls B (880 Hz), B transfers A to C (660 Hz) with its phone's REFER.
/// C does not answer: after `transfer_recall_secs` B's phone rings again,
/// B answers and A hears B again. B transfers once more; C answers and A
/// hears C. Meanwhile A hears the PBX's ringback (400 Hz).
#[test]
fn a_blind_transfer_nobody_answers_comes_back_then_one_that_is_answered() {
    const B_TONE: f32 = 880.0;
    const C_TONE: f32 = 660.0;
    const RINGBACK: f32 = 400.0;
    let (sb, s) = three_extensions("pbx-transfer");
    s.cli(&["setting", "set", "transfer_recall_secs", "5"]);
    let mut a = phone(&sb, &s, "transferee", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "transferor").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let mut c = Baresip::builder(&sb, "target").account(Account::new("1003", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(C_TONE).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));
    let target = format!("sip:1003@{}", s.sip_addr());

    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_heard(1.5, Duration::from_secs(10));

    // First transfer: C rings but does not answer; the call comes back to B.
    b.command("transfer", &target).expect("transfer");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    a.wait_heard_more(1.5, Duration::from_secs(10));

    // Second transfer: C answers.
    b.command("transfer", &target).expect("transfer");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    c.accept();
    c.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = a.wait_heard_more(2.0, Duration::from_secs(10));
    a.hangup();
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &[B_TONE, C_TONE, RINGBACK, PHONE_TONE]);
    // (C answers at once the second time: there may be no ringback before it.)
    let want = [B_TONE, RINGBACK, B_TONE, C_TONE];
    assert_in_order(&seq, &want, "A");
    assert_eq!(seq.last(), Some(&C_TONE), "A ends up talking to C: {seq:?}");
}

/// Call pick-up between baresips: A calls B, whose phone rings; C dials
/// `**1002` (directed pick-up) and gets the call: A hears C, B stops
/// ringing. Then, with B and C in ring group 3000, A calls B again and C
/// dials `*8` (group pick-up). With nothing ringing, `*8` gets 480.
#[test]
fn directed_and_group_pickup_take_a_ringing_call() {
    const C_TONE: f32 = 660.0;
    let (sb, s) = three_extensions("pbx-pickup");
    s.cli(&["group", "add", "3000", "--members", "1002,1003"]);
    let mut a = phone(&sb, &s, "caller", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "ringing").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(880.0).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let mut c = Baresip::builder(&sb, "picker").account(Account::new("1003", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(C_TONE).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));

    for code in ["**1002", "*8"] {
        a.dial(&format!("sip:1002@{}", s.sip_addr()));
        b.wait_event("CALL_INCOMING", Duration::from_secs(10));
        c.dial(&format!("sip:{code}@{}", s.sip_addr()));
        c.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
        a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
        b.wait_event("CALL_CLOSED", Duration::from_secs(10));
        let heard = a.wait_heard(1.5, Duration::from_secs(10));
        assert_hears(&heard, C_TONE, &[PHONE_TONE, 880.0]);
        a.hangup();
        c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    }
    // Nothing rings: nothing to pick up.
    c.dial(&format!("sip:*8@{}", s.sip_addr()));
    let ev = c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert!(ev.to_string().contains("480"), "{ev}");
}

/// On-demand recording with `recording_mode = selected`: a call dialled
/// with the prefix `*5` is recorded (the notice first); a call that is not
/// is recorded from the moment its phone asks (SIP INFO `Record: on`, what
/// desk phones' record keys and the SDK's `request_recording` send); the
/// same request is refused (403) while `recording_mode` is `none`.
#[test]
fn on_demand_recording_by_prefix_and_by_request() {
    use common::raw::{digest, RawCaller};
    let sb = Sandbox::new("pbx-on-demand");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    s.cli(&["setting", "set", "recording_mode", "selected"]);
    let mut b = Baresip::builder(&sb, "callee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(880.0).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let stored = |n: usize| {
        common::wait_for(&format!("{n} stored recordings"), Duration::from_secs(20), || {
            let out = s.cli(&["recording", "list"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text.lines().filter(|l| l.split('\t').nth(3) == Some("stored")).count() == n).then_some(text)
        })
    };

    // 1. The prefix.
    let mut a = phone(&sb, &s, "caller", "1001", &["PCMU"], None);
    a.dial(&format!("sip:*51002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(20));
    b.wait_heard(1.0, Duration::from_secs(10));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    stored(1);

    // 2. A request during an unrecorded call, from the test's own client.
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut raw = RawCaller {
        sip: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        server: s.sip_addr(),
        call_id: common::unique("rec-"),
        from_tag: common::unique("ft"),
        to_tag: None,
        cseq: 0,
    };
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    raw.invite("1002", &sdp, None);
    let challenge = raw.final_response(Duration::from_secs(5));
    raw.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    raw.invite("1002", &sdp, Some(auth));
    let ok = raw.final_response(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    raw.to_tag = ok.header("to").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap().to_string());
    raw.in_dialog("ACK", raw.cseq, "1002");
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    // A value that is neither on nor off is refused, naming what is wanted.
    raw.cseq += 1;
    raw.in_dialog_with("INFO", raw.cseq, "1002", "Record: maybe\r\nContent-Length: 0\r\n\r\n");
    let bad = raw.final_response(Duration::from_secs(5));
    assert_eq!(bad.status(), Some(400), "{}", bad.text());
    assert!(bad.text().contains("Record: on or off"), "{}", bad.text());
    // Refused while the policy records nothing; allowed with `selected`.
    for (mode, want) in [("none", 403), ("selected", 200)] {
        s.cli(&["setting", "set", "recording_mode", mode]);
        raw.cseq += 1;
        raw.in_dialog_with("INFO", raw.cseq, "1002", "Record: on\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(raw.final_response(Duration::from_secs(5)).status(), Some(want), "Record: on with recording_mode {mode}");
    }
    raw.cseq += 1;
    raw.in_dialog("BYE", raw.cseq, "1002");
    assert_eq!(raw.final_response(Duration::from_secs(5)).status(), Some(200));
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    stored(2);
}

/// Call park with numbered slots: B parks A with its transfer key to `*71`;
/// A hears the hold music (660 Hz); C dials `*71` and takes the call, and
/// A hears C (770 Hz). Parked again in `*72` and not taken, the call rings
/// B again after `park_recall_secs`, and A hears B (880 Hz) once more.
#[test]
fn a_parked_call_is_taken_from_its_slot_or_comes_back() {
    const MUSIC: f32 = 660.0;
    const B_TONE: f32 = 880.0;
    const C_TONE: f32 = 770.0;
    let (sb, s) = three_extensions("pbx-park");
    let wav = sb.file("music660.wav");
    make_tone_wav(&wav, MUSIC, 4.0, 8000);
    s.cli(&["announcement", "add", "music660", "--file", wav.to_str().unwrap()]);
    s.cli(&["setting", "set", "music_on_hold", "music660"]);
    s.cli(&["setting", "set", "park_recall_secs", "5"]);
    let mut a = phone(&sb, &s, "parked", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "parker").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let mut c = Baresip::builder(&sb, "taker").account(Account::new("1003", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(C_TONE).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));
    let candidates = [B_TONE, C_TONE, MUSIC, PHONE_TONE, 400.0];

    // Parked in slot 1 and taken there.
    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_heard(1.5, Duration::from_secs(10));
    b.command("transfer", &format!("sip:*71@{}", s.sip_addr())).expect("park");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    a.wait_heard_more(1.5, Duration::from_secs(10));
    c.dial(&format!("sip:*71@{}", s.sip_addr()));
    c.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = a.wait_heard_more(1.5, Duration::from_secs(10));
    a.hangup();
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &candidates);
    assert_in_order(&seq, &[B_TONE, MUSIC, C_TONE], "A (B, the music, then C)");

    // Parked in slot 2 and not taken: back to B.
    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_heard(1.0, Duration::from_secs(10));
    b.command("transfer", &format!("sip:*72@{}", s.sip_addr())).expect("park");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let heard = a.wait_heard_more(1.5, Duration::from_secs(10));
    a.hangup();
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &candidates);
    assert_in_order(&seq, &[B_TONE, MUSIC, B_TONE], "A (B, the music, then B again)");
    // Nothing parked in slot 3.
    c.dial(&format!("sip:*73@{}", s.sip_addr()));
    let ev = c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert!(ev.to_string().contains("480"), "{ev}");
}

/// The other two ways into a transfer by the PBX, between baresips.
/// The caller's side: A (440 Hz) calls B (880 Hz), and A's phone sends
/// the REFER (to C, 660 Hz). B hears ringback, C does not answer, and
/// after `transfer_recall_secs` A's phone rings again; A answers and B
/// hears A again. Then keyed codes (RFC 4733): `##9999#`, a number that
/// does not exist, and A alone hears the city's "transfer failed"
/// announcement (here a 550 Hz tone) while the call goes on; then
/// `##1003#`: A's phone is released, C answers, and B hears C.
#[test]
fn the_caller_transfers_by_refer_with_recall_then_by_keyed_code() {
    const A_TONE: f32 = 440.0;
    const C_TONE: f32 = 660.0;
    const RINGBACK: f32 = 400.0;
    const B_TONE: f32 = 880.0;
    const FAILED_TONE: f32 = 550.0;
    let (sb, s) = three_extensions("pbx-caller-transfer");
    s.cli(&["setting", "set", "transfer_recall_secs", "5"]);
    let wav = sb.file("failed.wav");
    make_tone_wav(&wav, FAILED_TONE, 1.0, 8000);
    s.cli(&["announcement", "add", "transfer-failed", "--file", wav.to_str().unwrap()]);
    let mut a = phone(&sb, &s, "caller", "1001", &["PCMU"], None);
    let mut b = Baresip::builder(&sb, "callee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let mut c = Baresip::builder(&sb, "target").account(Account::new("1003", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(C_TONE).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));

    a.dial(&format!("sip:1002@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    b.wait_heard(1.5, Duration::from_secs(10));

    // The caller's REFER: C rings, nobody answers, the caller's phone rings again.
    a.command("transfer", &format!("sip:1003@{}", s.sip_addr())).expect("transfer");
    a.wait_event("CALL_CLOSED", Duration::from_secs(10));
    c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    a.wait_event("CALL_INCOMING", Duration::from_secs(15));
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    a.accept();
    a.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    b.wait_heard_more(1.5, Duration::from_secs(10));

    // Keyed: a number that does not exist. Only A hears that it failed.
    a.send_dtmf("##9999#");
    // (The keys take their time: A's audio is read until it shows that.)
    let mut want_secs = common::audio::wav_secs(&a.dec_wav()) + 2.0;
    common::wait_for("A hearing B, the failure announcement, then B again", Duration::from_secs(20), || {
        let heard_by_a = a.wait_heard(want_secs, Duration::from_secs(10));
        want_secs += 0.5;
        let seq = tone_sequence(&heard_by_a, &[A_TONE, C_TONE, RINGBACK, B_TONE, FAILED_TONE]);
        in_order(&seq, &[B_TONE, FAILED_TONE, B_TONE]).then_some(())
    });
    // Keyed on the phone during the call: ##1003#.
    a.send_dtmf("##1003#");
    a.wait_event("CALL_CLOSED", Duration::from_secs(10));
    c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    c.accept();
    c.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = b.wait_heard_more(2.0, Duration::from_secs(10));
    b.hangup();
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &[A_TONE, C_TONE, RINGBACK, B_TONE, FAILED_TONE]);
    assert!(!seq.contains(&FAILED_TONE), "the failure announcement is for A only: B heard {seq:?}");
    let want = [A_TONE, RINGBACK, A_TONE, C_TONE];
    assert_in_order(&seq, &want, "B");
    assert_eq!(seq.last(), Some(&C_TONE), "B ends up talking to C: {seq:?}");
}

/// A caller from the carrier (SIPp) answered by a city phone asks for a
/// transfer to an outside number with a REFER: the PBX refuses it (403;
/// it would dial out at the city's cost), nothing reaches the phone, and
/// the call goes on until the caller hangs up.
#[test]
fn a_carrier_callers_refer_is_refused_and_the_call_goes_on() {
    let sb = Sandbox::new("pbx-trunk-refer");
    let data = sb.data();
    let sip_port = free_udp_port_on(IVR_CARRIER_IP);
    common::cli(&data, &["trunk", "add", "carrier", "--host", &format!("{IVR_CARRIER_IP}:{sip_port}"), "--transport", "udp"]);
    common::cli(&data, &["user", "add", "1002", "--password", PASSWORD]);
    common::cli(&data, &["did", "add", IVR_DID, "--to", "user:1002"]);
    let s = Server::start(&sb);
    let mut member = Baresip::builder(&sb, "callee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(880.0).codecs(&["PCMU"]).start();
    member.registered(Duration::from_secs(10));
    let sipp = Sipp::start(&sb, "refer", &common::sipp_file("trunk_refer.xml"), IVR_CARRIER_IP, sip_port, Some(s.sip_addr()), 1, &["-s", IVR_DID, "-key", "caller", "09011112222", "-key", "target", "0120999999"]);
    member.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    // SIPp's scenario fails unless its REFER gets 403 and the call goes on.
    let run = sipp.finish();
    run.assert_success();
    member.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let events = member.events();
    assert!(!events.iter().any(|e| e.kind.contains("TRANSFER")), "the phone was asked for no transfer: {events:?}");
    let refused = run.received_responses("REFER");
    assert!(
        refused.iter().any(|m| m.status() == Some(403) && m.header("warning").is_some_and(|w| w.contains("transfers are taken from the city's own phones only"))),
        "the 403 says why:\n{}",
        run.summary()
    );
}

/// A transfer before the target answers ("semi-attended", as desk phones
/// do with their transfer key while the second call still rings), from
/// the test's own SIP client as 1001: it talks to B (baresip, 880 Hz),
/// calls C (baresip, 660 Hz, ringing) and sends a REFER with Replaces
/// naming that ringing call. The PBX ends the ringing call (487), rings
/// C again for B as a blind transfer (B hears ringback), C answers, and B
/// hears C.
#[test]
fn a_transfer_while_the_target_still_rings_rings_it_for_the_transferee() {
    use common::raw::{digest, RawCaller};
    const B_TONE: f32 = 880.0;
    const C_TONE: f32 = 660.0;
    const RINGBACK: f32 = 400.0;
    let (sb, s) = three_extensions("pbx-semi-attended");
    let mut b = Baresip::builder(&sb, "transferee").account(Account::new("1002", PASSWORD, s.sip_addr())).answer(AnswerMode::Auto).tone(B_TONE).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));
    let mut c = Baresip::builder(&sb, "target").account(Account::new("1003", PASSWORD, s.sip_addr())).answer(AnswerMode::Manual).tone(C_TONE).codecs(&["PCMU"]).start();
    c.registered(Duration::from_secs(10));
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    let call = |tag: &str, to: &str| {
        let mut raw = RawCaller { sip: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(), server: s.sip_addr(), call_id: common::unique(tag), from_tag: common::unique("ft"), to_tag: None, cseq: 0 };
        raw.invite(to, &sdp, None);
        let challenge = raw.final_response(Duration::from_secs(5));
        raw.in_dialog_ack_for_failure(&challenge);
        let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:{to}@{}", s.sip_addr()), PASSWORD);
        raw.invite(to, &sdp, Some(auth));
        raw
    };
    let to_tag = |m: &common::SipMsg| m.header("to").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap().to_string());

    // 1001 talks to B.
    let mut first = call("semi-1-", "1002");
    let ok = first.final_response(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    first.to_tag = to_tag(&ok);
    first.in_dialog("ACK", first.cseq, "1002");
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    // 1001 calls C, which rings (an early dialog, with the PBX's To tag).
    let second = call("semi-2-", "1003");
    let ringing = common::wait_for("180 Ringing for the second call", Duration::from_secs(10), || {
        let m = second.recv(Duration::from_secs(10));
        (m.status() == Some(180) && to_tag(&m).is_some()).then_some(m)
    });
    c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    // The transfer key: REFER with Replaces naming the ringing call.
    let replaces = format!("{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}", second.call_id, to_tag(&ringing).unwrap(), second.from_tag);
    first.cseq += 1;
    first.in_dialog_with("REFER", first.cseq, "1002", &format!("Refer-To: <sip:1003@{}?Replaces={replaces}>\r\nReferred-By: <sip:1001@{}>\r\n", s.sip_addr(), s.sip_addr()));
    let accepted = first.final_response(Duration::from_secs(5));
    assert_eq!(accepted.status(), Some(202), "{}", accepted.text());
    // The ringing call ends (487), and C rings again, for B.
    let cancelled = second.final_response(Duration::from_secs(10));
    assert_eq!(cancelled.status(), Some(487), "{}", cancelled.text());
    second.in_dialog_ack_for_failure(&cancelled);
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let again = c.wait_event("CALL_INCOMING", Duration::from_secs(10));
    assert!(again.to_string().contains("1002"), "C rings for B: {again}");
    // 1001 is released from the first call: NOTIFY 200, then BYE.
    common::wait_for("the BYE releasing 1001", Duration::from_secs(10), || {
        let m = first.recv(Duration::from_secs(10));
        if m.status().is_none() {
            first.respond_200(&m);
        }
        m.start_line.starts_with("BYE").then_some(())
    });
    b.wait_heard_more(1.5, Duration::from_secs(10));
    c.accept();
    c.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let heard = b.wait_heard_more(2.0, Duration::from_secs(10));
    b.hangup();
    c.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let seq = tone_sequence(&heard, &[B_TONE, C_TONE, RINGBACK, PHONE_TONE]);
    assert_in_order(&seq, &[RINGBACK, C_TONE], "B (ringback, then C)");
    assert_eq!(seq.last(), Some(&C_TONE), "B ends up talking to C: {seq:?}");
}
