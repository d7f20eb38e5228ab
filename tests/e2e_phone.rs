//! `tsunagu-phone`, the desktop phone on the SDK, as a real process against
//! the PBX and a real phone (baresip): register (and a wrong password's
//! exit status), place a call that plays a WAV, records the far end and
//! sends DTMF, and answer a call; each side's recording must hold the
//! other's tone.
//!
//! The binary is built next to `tsunagu` by `cargo test --workspace
//! --no-run` (scripts/test.sh), for phone/tests.

mod common;

use common::audio::{assert_hears, make_tone_wav};
use common::baresip::{Account, AnswerMode, Baresip};
use common::{Sandbox, Server};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PW: &str = "secret-pass-1";

fn phone_bin() -> PathBuf {
    let p = std::path::Path::new(common::TSUNAGU).with_file_name("tsunagu-phone");
    assert!(p.exists(), "{} is missing: build it first with `cargo test --workspace --no-run` (scripts/test.sh does; phone/tests makes cargo build the binary)", p.display());
    p
}

/// Kills the process if the test ends first (a failed assertion included).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(s: &Server, user: &str, password: &str, args: &[&str], log: &std::path::Path) -> Running {
    let server = s.sip_addr().to_string();
    spawn_phone(&[&["--server", &server, "--user", user, "--password", password], args].concat(), &[], log)
}

/// `tsunagu-phone ARGS` with extra environment, its output into `log`.
fn spawn_phone(args: &[&str], env: &[(&str, &std::path::Path)], log: &std::path::Path) -> Running {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(phone_bin()).args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap();
    Running(child)
}

fn wait_exit(p: &mut Running, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "tsunagu-phone did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn server(sb: &Sandbox) -> Server {
    let s = Server::start(sb);
    for e in ["1001", "1002"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    s
}

#[test]
fn tsunagu_phone_registers_and_says_so_by_its_exit_status() {
    let sb = Sandbox::new("phone-register");
    let s = server(&sb);
    let log = sb.file("ok.log");
    let mut ok = start(&s, "1001", PW, &["register"], &log);
    let st = wait_exit(&mut ok, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("registered as 1001"));
    let log = sb.file("bad.log");
    let mut bad = start(&s, "1001", "wrong", &["register"], &log);
    let st = wait_exit(&mut bad, Duration::from_secs(20));
    assert_eq!(st.code(), Some(2), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    // Bad arguments: a WAV that is not there.
    let log = sb.file("args.log");
    let mut args = start(&s, "1001", PW, &["call", "1002", "--play", "/nonexistent/x.wav"], &log);
    assert_eq!(wait_exit(&mut args, Duration::from_secs(20)).code(), Some(1), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    // No --play/--record means the sound card; with none (ALSA given an
    // empty configuration), the phone says so before any SIP: status 4.
    let empty = sb.file("empty-alsa.conf");
    std::fs::write(&empty, "# no devices\n").unwrap();
    let log = sb.file("nosound.log");
    let server = s.sip_addr().to_string();
    let mut nosound = spawn_phone(&["--server", &server, "--user", "1001", "--password", PW, "call", "1002"], &[("ALSA_CONFIG_PATH", empty.as_path())], &log);
    let st = wait_exit(&mut nosound, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st.code(), Some(4), "{text}");
    assert!(text.contains("sound card"), "{text}");
}

#[test]
fn tsunagu_phone_calls_and_answers_baresip_with_audio_and_dtmf() {
    let sb = Sandbox::new("phone-call");
    let s = server(&sb);
    let tone = sb.file("440.wav");
    make_tone_wav(&tone, 440.0, 2.0, 8000);
    let mut b = Baresip::builder(&sb, "p1002").account(Account::new("1002", PW, s.sip_addr())).answer(AnswerMode::Auto).tone(1000.0).codecs(&["PCMU"]).start();
    b.registered(Duration::from_secs(10));

    // Out: play 440 Hz, record, press 5.
    let rec = sb.file("out.wav");
    let log = sb.file("call.log");
    let mut p = start(&s, "1001", PW, &["call", "1002", "--play", tone.to_str().unwrap(), "--record", rec.to_str().unwrap(), "--duration", "3", "--dtmf", "5"], &log);
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let heard = b.wait_heard(2.0, Duration::from_secs(15));
    let d = b.wait_event("CALL_DTMF_START", Duration::from_secs(10));
    assert_eq!(d.param, "5");
    let st = wait_exit(&mut p, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "{text}");
    assert!(text.contains("connected") && text.contains("hung up"), "{text}");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert_hears(&heard, 440.0, &[1000.0]);
    assert_hears(&rec, 1000.0, &[440.0]);

    // In: baresip calls 1001, the phone answers by itself; baresip hangs up.
    let rec = sb.file("in.wav");
    let log = sb.file("answer.log");
    let mut p = start(&s, "1001", PW, &["answer", "--auto", "--play", tone.to_str().unwrap(), "--record", rec.to_str().unwrap()], &log);
    common::wait_for("tsunagu-phone registered", Duration::from_secs(15), || std::fs::read_to_string(&log).unwrap_or_default().contains("registered").then_some(()));
    b.dial(&format!("sip:1001@{}", s.sip_addr()));
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let heard = b.wait_heard(2.0, Duration::from_secs(15));
    b.hangup();
    let st = wait_exit(&mut p, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "{text}");
    assert!(text.contains("incoming call from 1002") && text.contains("the far end hung up"), "{text}");
    assert_hears(&heard, 440.0, &[1000.0]);
    assert_hears(&rec, 1000.0, &[440.0]);
}

/// tsunagu-phone calls baresip directly, with no PBX in between (`--direct`:
/// no registration, the INVITE goes to baresip itself): each side hears
/// the other's tone, and baresip gets the digit.
#[test]
fn tsunagu_phone_calls_baresip_directly_without_a_pbx() {
    let sb = Sandbox::new("phone-direct");
    let tone = sb.file("440.wav");
    make_tone_wav(&tone, 440.0, 2.0, 8000);
    // baresip's account names a registrar nobody runs; it never registers.
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut b = Baresip::builder(&sb, "d1002").account(Account::new("1002", PW, nowhere)).account_param("regint=0").answer(AnswerMode::Auto).tone(1000.0).codecs(&["PCMU"]).start();
    let rec = sb.file("direct.wav");
    let log = sb.file("direct.log");
    let server = format!("127.0.0.1:{}", b.sip_port);
    let args = ["--server", &server, "--user", "1001", "--password", "x", "--direct", "call", "1002", "--play", tone.to_str().unwrap(), "--record", rec.to_str().unwrap(), "--duration", "3", "--dtmf", "8"];
    let mut p = spawn_phone(&args, &[], &log);
    b.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    let heard = b.wait_heard(2.0, Duration::from_secs(15));
    let d = b.wait_event("CALL_DTMF_START", Duration::from_secs(10));
    assert_eq!(d.param, "8");
    let st = wait_exit(&mut p, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "{text}");
    assert!(text.contains("direct to") && text.contains("connected") && text.contains("hung up"), "{text}");
    b.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert_hears(&heard, 440.0, &[1000.0]);
    assert_hears(&rec, 1000.0, &[440.0]);
}
