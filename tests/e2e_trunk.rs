//! End-to-end tests of calls through carrier trunks, with SIPp as the
//! carrier and fake phones (tests/common/phone.rs) as the extensions,
//! against the `tsunagu` binary.
//!
//! Addresses: the PBX knows its carrier by source IP only, and an INVITE
//! from a trunk's IP needs no digest. The server and the phones use
//! 127.0.0.1; the carrier's SIPp binds 127.0.0.2 (and 127.0.0.3 for a second
//! carrier): all of 127.0.0.0/8 is loopback on Linux, so every packet stays
//! on this machine.
//!
//! SIPp facts used here (see also /work/shared/PEERS.md):
//! * In server mode SIPp makes a "call" of every new Call-ID, so the PBX's
//!   OPTIONS ping of an IP trunk (one at start, then every 30 s) is a call of
//!   its own in the carrier scenarios: they answer it with 200 and `-m` is
//!   the number of INVITEs + 1. The carrier SIPp is started (and listening)
//!   before the server, so the first ping is answered at once.
//! * CANCEL and the ACK of an error response carry the INVITE's branch:
//!   `[branch-N]`, N = distance in scenario messages to the INVITE.
//! * What the PBX sent (Request-URI, From, P-Asserted-Identity, SDP) is read
//!   from SIPp's message log (`-trace_msg`) after SIPp exits.
//!
//! Needs `sipp` (Debian `sip-tester`) on PATH.

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::phone::{audio_formats, Behaviour, Event, Phone};
use common::sipp::*;
use common::*;

/// The carrier's address (trunk host): loopback, but not the PBX's.
const CARRIER_IP: &str = "127.0.0.2";
/// A second carrier (failover).
const CARRIER2_IP: &str = "127.0.0.3";
/// The public number the carrier calls.
const DID: &str = "0312345678";
/// Who calls from outside (P-Asserted-Identity of the carrier's INVITE).
const CALLER: &str = "09011112222";
/// Server environment of every test: debug logs for the report.
const SERVER_ENV: &[(&str, &str)] = &[("TSUNAGU_LOG", "debug,sqlx=warn")];

fn password(ext: &str) -> String {
    format!("Pw-{ext}-e2e-trunk")
}

// ---------------------------------------------------------------------------
// SIPp (common::sipp), with this file's scenarios
// ---------------------------------------------------------------------------

fn trunk_scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp/trunk")
        .join(name)
}

/// SIPp with a scenario of tests/sipp/trunk (see [`Sipp::start`]).
#[allow(clippy::too_many_arguments)]
fn trunk_sipp(sb: &Sandbox, name: &str, scenario: &str, ip: &str, port: u16, target: Option<SocketAddr>, calls: u32, extra: &[&str]) -> Sipp {
    Sipp::start(sb, name, &trunk_scenario(scenario), ip, port, target, calls, extra)
}

/// Run the carrier as a client (one call) from CARRIER_IP:port to the
/// server, to completion.
fn carrier_call(
    sb: &Sandbox,
    name: &str,
    scenario: &str,
    port: u16,
    server: &Server,
    extra: &[&str],
) -> SippRun {
    let mut args: Vec<&str> = vec!["-aa", "-key", "caller", CALLER];
    args.extend_from_slice(extra);
    trunk_sipp(
        sb,
        name,
        scenario,
        CARRIER_IP,
        port,
        Some(server.sip_addr()),
        1,
        &args,
    )
    .finish()
}

// ---------------------------------------------------------------------------
// The PBX's records and state
// ---------------------------------------------------------------------------

type Record = HashMap<String, String>;

/// `tsunagu calls --csv`, one map per call (oldest first).
fn call_records(data: &Path) -> Vec<Record> {
    let out = cli(data, &["calls", "--csv"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

/// Wait until `n` call records exist and all have ended.
fn wait_records_ended(data: &Path, n: usize, timeout: Duration) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    loop {
        let recs = call_records(data);
        if recs.len() >= n && recs.iter().all(|r| !r["end"].is_empty()) {
            return recs;
        }
        if Instant::now() >= deadline {
            panic!("expected {n} ended call record(s) within {timeout:?}, have: {recs:#?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn assert_record(r: &Record, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            r.get(*k).map(String::as_str),
            Some(*v),
            "call record field `{k}`; whole record: {r:#?}"
        );
    }
}

/// The state= of a trunk in `tsunagu trunk status`.
fn trunk_state(data: &Path, name: &str) -> Option<String> {
    let out = cli(data, &["trunk", "status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.split('\t').next() == Some(name))
        .map(|l| {
            let s = l.split("state=").nth(1).unwrap_or("");
            s.split(['\t', ' ']).next().unwrap_or("").to_string()
        })
}

fn trunk_status_text(data: &Path) -> String {
    String::from_utf8_lossy(&cli(data, &["trunk", "status"]).stdout).into_owned()
}

fn wait_trunk_state(data: &Path, name: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if trunk_state(data, name).as_deref() == Some(want) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "trunk {name} not state={want} within {timeout:?}:\n{}",
                trunk_status_text(data)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sum of the samples of a metric (all label sets, or the ones containing
/// `label`), None when absent.
fn metric(server: &Server, name: &str, label: Option<&str>) -> Option<f64> {
    let text = server.metrics();
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, val)) = l.rsplit_once(' ') else {
            continue;
        };
        let base = key.split('{').next().unwrap_or("");
        if base != name || label.is_some_and(|lb| !key.contains(lb)) {
            continue;
        }
        if let Ok(v) = val.trim().parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// No call left in the PBX: tsunagu_calls_active back to 0.
fn wait_no_active_calls(server: &Server, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = metric(server, "tsunagu_calls_active", None).unwrap_or(0.0);
        if v == 0.0 {
            return;
        }
        if Instant::now() >= deadline {
            panic!("tsunagu_calls_active is {v} {timeout:?} after the calls ended");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The c= address and audio port of an SDP body.
fn sdp_addr(body: &[u8]) -> (String, u16) {
    let s = String::from_utf8_lossy(body);
    let c = s
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .unwrap_or("")
        .trim()
        .to_string();
    let port = s
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    (c, port)
}

/// The user part of the URI in a header value (`"x" <sip:USER@host>;tag=`).
fn uri_user(v: &str) -> String {
    let v = v.split('>').next().unwrap_or(v);
    let after = v
        .split_once("sip:")
        .map(|x| x.1)
        .or_else(|| v.split_once("tel:").map(|x| x.1))
        .unwrap_or("");
    after
        .split(['@', ';', '>'])
        .next()
        .unwrap_or("")
        .to_string()
}

/// Request-URI user of a request.
fn ruri_user(m: &SipMsg) -> String {
    uri_user(m.start_line.split(' ').nth(1).unwrap_or(""))
}

fn ms_between(a: &Event, b: &Event) -> i128 {
    if b.at >= a.at {
        b.at.duration_since(a.at).as_millis() as i128
    } else {
        -(a.at.duration_since(b.at).as_millis() as i128)
    }
}

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

/// A PBX with a carrier trunk on CARRIER_IP:port and extensions `exts`
/// (configured before the server starts); returns the trunk port.
fn pbx_with_carrier(sb: &Sandbox, exts: &[&str]) -> u16 {
    let data = sb.data();
    let port = free_udp_port_on(CARRIER_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "carrier",
            "--host",
            &format!("{CARRIER_IP}:{port}"),
            "--transport",
            "udp",
        ],
    );
    for e in exts {
        cli(&data, &["user", "add", e, "--password", &password(e)]);
    }
    port
}

fn phone(server: &Server, ext: &str, b: Behaviour) -> Phone {
    Phone::register(server.sip_addr(), ext, &password(ext), b)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// 1. Inbound DID -> simultaneous group
// ---------------------------------------------------------------------------

/// The carrier calls a DID routed to a simultaneous group of two phones:
/// both ring at once, 1002 answers, 1001 is CANCELled; the carrier gets a
/// 200 with the PBX's own media address and port; the carrier's BYE ends
/// both legs; the call record says inbound, DID, trunk, answered by 1002.
#[test]
fn inbound_did_rings_simultaneous_group() {
    let sb = Sandbox::new("trunk-simul");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001", "1002"]);
    cli(
        &data,
        &[
            "group",
            "add",
            "3000",
            "--members",
            "1001,1002",
            "--strategy",
            "simultaneous",
        ],
    );
    cli(&data, &["did", "add", DID, "--to", "group:3000"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let p2 = phone(&server, "1002", Behaviour::AnswerAfter(ms(500)));

    let run = carrier_call(
        &sb,
        "simul",
        "inbound_call.xml",
        cport,
        &server,
        &["-s", DID, "-d", "1000"],
    );
    run.assert_success();

    // Both rung, at once.
    let i1 = p1.wait_invites(1, ms(100)).remove(0);
    let i2 = p2.wait_invites(1, ms(100)).remove(0);
    let gap = ms_between(&i1, &i2).abs();
    assert!(gap < 300, "simultaneous group: INVITEs {gap} ms apart");
    assert_eq!(
        p1.invites().len(),
        1,
        "1001 rung more than once:\n{}",
        p1.transcript()
    );
    assert_eq!(
        p2.invites().len(),
        1,
        "1002 rung more than once:\n{}",
        p2.transcript()
    );
    // The phones see the outside caller.
    for i in [&i1, &i2] {
        assert_eq!(
            uri_user(i.msg.header("from").unwrap_or("")),
            CALLER,
            "From to the phone:\n{}",
            i.msg.text()
        );
    }

    // 1001 cancelled, answered 487 and got its ACK; 1002 answered, ACKed, BYE.
    let c1 = i1.call_id().to_string();
    let c2 = i2.call_id().to_string();
    p1.wait_request_in("CANCEL", &c1, ms(2000));
    assert_eq!(
        p1.finals_sent(&c1).first(),
        Some(&487),
        "{}",
        p1.transcript()
    );
    p1.wait_request_in("ACK", &c1, ms(2000));
    assert_eq!(
        p2.finals_sent(&c2).first(),
        Some(&200),
        "{}",
        p2.transcript()
    );
    assert!(p2.acked(&c2), "1002's 200 not ACKed:\n{}", p2.transcript());
    p2.wait_request_in("BYE", &c2, ms(3000));
    assert!(
        p1.requests_in("BYE", &c1).is_empty(),
        "cancelled 1001 got a BYE:\n{}",
        p1.transcript()
    );

    // Anchored media: each side sees the PBX's address and its own port.
    let ok = run
        .received_responses("INVITE")
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("SIPp got a 200")
        .clone();
    let (a_addr, a_port) = sdp_addr(&ok.body);
    let (b_addr, b_port) = sdp_addr(&i2.msg.body);
    let carrier_invite = run
        .log
        .iter()
        .find(|l| !l.incoming)
        .expect("SIPp sent its INVITE");
    let (_, carrier_port) = sdp_addr(&carrier_invite.msg.body);
    assert_eq!(
        a_addr,
        "127.0.0.1",
        "c= of the 200 to the carrier:\n{}",
        ok.text()
    );
    assert_eq!(
        b_addr,
        "127.0.0.1",
        "c= of the INVITE to the phone:\n{}",
        i2.msg.text()
    );
    assert!(
        a_port != 0 && b_port != 0 && a_port != b_port,
        "leg ports: carrier side {a_port}, phone side {b_port}"
    );
    assert!(
        a_port != p2.rtp_port && a_port != carrier_port,
        "the carrier was given a peer's port {a_port} (phone {}, carrier {carrier_port})",
        p2.rtp_port
    );
    assert!(
        b_port != carrier_port,
        "the phone was given the carrier's RTP port {b_port}"
    );
    let fmts = audio_formats(&String::from_utf8_lossy(&ok.body));
    assert_eq!(
        fmts.first().map(|f| f.1.as_str()),
        Some("PCMU"),
        "codec answered to the carrier:\n{}",
        ok.text()
    );

    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_record(
        &recs[0],
        &[
            ("direction", "inbound"),
            ("caller", CALLER),
            ("callee", "3000"),
            ("did", DID),
            ("trunk", "carrier"),
            ("result", "answered"),
            ("answered_by", "1002"),
        ],
    );
    assert!(
        p1.open_dialogs().is_empty() && p2.open_dialogs().is_empty(),
        "a leg is still up"
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// 2. Sequential group with member timeout and overflow
// ---------------------------------------------------------------------------

/// Sequential group 1001, 1002 (2 s each) overflowing to 1003: 1001 rings
/// and is cancelled after about 2 s, then 1002 for 2 s, then 1003 answers.
#[test]
fn inbound_sequential_group_overflows() {
    let sb = Sandbox::new("trunk-seq");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001", "1002", "1003"]);
    cli(
        &data,
        &[
            "group",
            "add",
            "3000",
            "--members",
            "1001,1002",
            "--strategy",
            "sequential",
            "--member-timeout",
            "2",
            "--timeout",
            "30",
            "--overflow",
            "user:1003",
        ],
    );
    cli(&data, &["did", "add", DID, "--to", "group:3000"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let p2 = phone(&server, "1002", Behaviour::Ring);
    let p3 = phone(&server, "1003", Behaviour::AnswerAfter(ms(300)));

    let run = carrier_call(
        &sb,
        "seq",
        "inbound_call.xml",
        cport,
        &server,
        &["-s", DID, "-d", "500"],
    );
    run.assert_success();

    let i1 = p1.wait_invites(1, ms(100)).remove(0);
    let i2 = p2.wait_invites(1, ms(100)).remove(0);
    let i3 = p3.wait_invites(1, ms(100)).remove(0);
    let x1 = p1.wait_request_in("CANCEL", i1.call_id(), ms(100));
    let x2 = p2.wait_request_in("CANCEL", i2.call_id(), ms(100));
    let timeline = format!("{}{}{}", p1.transcript(), p2.transcript(), p3.transcript());
    let near = |what: &str, got: i128, want: i128| {
        assert!(
            (got - want).abs() <= 600,
            "{what}: {got} ms, expected about {want} ms\n{timeline}"
        );
    };
    near("1001 rang before its CANCEL", ms_between(&i1, &x1), 2000);
    near("1002 rang after 1001", ms_between(&i1, &i2), 2000);
    assert!(
        ms_between(&x1, &i2) >= -50,
        "1002 rang before 1001 was cancelled\n{timeline}"
    );
    near("1002 rang before its CANCEL", ms_between(&i2, &x2), 2000);
    near(
        "the overflow 1003 rang after 1002",
        ms_between(&i2, &i3),
        2000,
    );
    assert_eq!(p3.finals_sent(i3.call_id()).first(), Some(&200));
    p3.wait_request_in("BYE", i3.call_id(), ms(3000));
    for p in [&p1, &p2, &p3] {
        assert_eq!(
            p.invites().len(),
            1,
            "{} rung more than once:\n{timeline}",
            p.ext
        );
    }

    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(
        &recs[0],
        &[
            ("direction", "inbound"),
            ("did", DID),
            ("trunk", "carrier"),
            ("result", "answered"),
            ("answered_by", "1003"),
        ],
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// 3. Forward on no answer
// ---------------------------------------------------------------------------

/// DID -> 1001, which forwards to 1002 after 2 s without answer: 1001
/// rings, is cancelled, 1002 answers.
#[test]
fn inbound_forward_on_no_answer() {
    let sb = Sandbox::new("trunk-fwd");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001", "1002"]);
    cli(&data, &["did", "add", DID, "--to", "user:1001"]);
    cli(
        &data,
        &[
            "forward",
            "1001",
            "--no-answer",
            "user:1002",
            "--after",
            "2",
        ],
    );
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let p2 = phone(&server, "1002", Behaviour::AnswerAfter(ms(300)));

    let run = carrier_call(
        &sb,
        "fwd",
        "inbound_call.xml",
        cport,
        &server,
        &["-s", DID, "-d", "500"],
    );
    run.assert_success();

    let i1 = p1.wait_invites(1, ms(100)).remove(0);
    let i2 = p2.wait_invites(1, ms(100)).remove(0);
    let x1 = p1.wait_request_in("CANCEL", i1.call_id(), ms(100));
    let timeline = format!("{}{}", p1.transcript(), p2.transcript());
    let rang = ms_between(&i1, &i2);
    assert!(
        (1500..=2700).contains(&rang),
        "1002 rang {rang} ms after 1001, expected about 2000\n{timeline}"
    );
    assert!(
        ms_between(&i1, &x1) >= 1500,
        "1001 cancelled too early\n{timeline}"
    );
    assert_eq!(
        p1.finals_sent(i1.call_id()).first(),
        Some(&487),
        "{timeline}"
    );
    assert_eq!(
        p2.finals_sent(i2.call_id()).first(),
        Some(&200),
        "{timeline}"
    );
    p2.wait_request_in("BYE", i2.call_id(), ms(3000));

    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(
        &recs[0],
        &[
            ("direction", "inbound"),
            ("did", DID),
            ("trunk", "carrier"),
            ("result", "answered"),
            ("answered_by", "1002"),
        ],
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// 4. CANCEL
// ---------------------------------------------------------------------------

/// The carrier CANCELs while a group rings: 200 for the CANCEL, 487 for the
/// INVITE, every phone that rang gets a CANCEL, the record says cancelled.
#[test]
fn inbound_cancel_while_ringing() {
    let sb = Sandbox::new("trunk-cancel");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001", "1002"]);
    cli(&data, &["group", "add", "3000", "--members", "1001,1002"]);
    cli(&data, &["did", "add", DID, "--to", "group:3000"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let p2 = phone(&server, "1002", Behaviour::Ring);

    let run = carrier_call(
        &sb,
        "cancel",
        "inbound_cancel.xml",
        cport,
        &server,
        &["-s", DID, "-d", "500"],
    );
    run.assert_success();
    assert_eq!(run.invite_finals(), vec![487], "{}", run.summary());

    for p in [&p1, &p2] {
        let inv = p.wait_invites(1, ms(100)).remove(0);
        p.wait_request_in("CANCEL", inv.call_id(), ms(2000));
        assert_eq!(
            p.finals_sent(inv.call_id()),
            vec![487],
            "{}",
            p.transcript()
        );
        p.wait_request_in("ACK", inv.call_id(), ms(2000));
        assert!(p.open_dialogs().is_empty());
    }
    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(
        &recs[0],
        &[
            ("direction", "inbound"),
            ("did", DID),
            ("result", "cancelled"),
            ("answered_by", ""),
        ],
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

/// The phone's 200 crosses the PBX's CANCEL (the phone sends 200 for the
/// INVITE before it answers the CANCEL). The carrier still gets its
/// 200/487, and the PBX must not leave the phone's leg up: it ACKs the 200
/// and hangs up with BYE (RFC 3261 §13.2.2.4: every 2xx is ACKed; §15:
/// a session nobody wants is ended with BYE).
#[test]
fn inbound_cancel_crossing_the_answer() {
    let sb = Sandbox::new("trunk-cross");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001", "1002"]);
    cli(&data, &["group", "add", "3000", "--members", "1001,1002"]);
    cli(&data, &["did", "add", DID, "--to", "group:3000"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::AnswerOnCancel);
    let p2 = phone(&server, "1002", Behaviour::Ring);

    let run = carrier_call(
        &sb,
        "cross",
        "inbound_cancel.xml",
        cport,
        &server,
        &["-s", DID, "-d", "500"],
    );
    run.assert_success();
    assert_eq!(run.invite_finals(), vec![487], "{}", run.summary());

    let i1 = p1.wait_invites(1, ms(100)).remove(0);
    let c1 = i1.call_id().to_string();
    p1.wait_request_in("CANCEL", &c1, ms(2000));
    assert_eq!(
        p1.finals_sent(&c1).first(),
        Some(&200),
        "{}",
        p1.transcript()
    );
    // The 2xx that crossed the CANCEL is ACKed and hung up.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !p1.acked_and_hung_up(&c1) {
        thread::sleep(ms(20));
    }
    assert!(
        p1.acked_and_hung_up(&c1),
        "the PBX left 1001's leg up after its 200 crossed the CANCEL (ACK: {}, BYE: {}):\n{}",
        p1.acked(&c1),
        p1.requests_in("BYE", &c1).len(),
        p1.transcript()
    );
    assert!(
        p1.open_dialogs().is_empty(),
        "1001 still in a call:\n{}",
        p1.transcript()
    );
    let i2 = p2.wait_invites(1, ms(100)).remove(0);
    p2.wait_request_in("CANCEL", i2.call_id(), ms(2000));

    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(
        &recs[0],
        &[("direction", "inbound"), ("result", "cancelled")],
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

/// CANCEL at the moment the phone answers: the carrier CANCELs as soon as
/// it gets the 180, and the phone sends its 200 from 0 to 1 ms after its
/// own 180, so the 200 and the CANCEL meet before the PBX, inside it, or on
/// the phone's leg, run by run. Whichever wins, the call must end cleanly:
/// the carrier sees 487, or a 200 it ACKs and hangs up; at the phone, a
/// 487 of its own, or a 200 that is ACKed and then hung up with BYE. The
/// record says cancelled or answered, as the carrier saw it.
#[test]
fn inbound_cancel_racing_the_answer() {
    let sb = Sandbox::new("trunk-race");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001"]);
    cli(&data, &["did", "add", DID, "--to", "user:1001"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::Ring);

    let delays_us: [u64; 16] = [
        0, 100, 200, 300, 400, 500, 700, 1000, 0, 100, 200, 300, 400, 500, 700, 1000,
    ];
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (n, us) in delays_us.into_iter().enumerate() {
        p1.set_behaviour(Behaviour::AnswerAfter(Duration::from_micros(us)));
        let run = carrier_call(
            &sb,
            &format!("race{n}"),
            "inbound_cancel_race.xml",
            cport,
            &server,
            &["-s", DID],
        );
        let finals = run.invite_finals();
        let inv = p1.wait_invites(n + 1, ms(1000)).remove(n);
        let cid = inv.call_id().to_string();
        let phone_final = p1.finals_sent(&cid).first().copied();
        // A 200 at the phone must be ACKed and hung up, whoever won (both
        // take a millisecond or two when they come).
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && phone_final == Some(200) && !p1.acked_and_hung_up(&cid) {
            thread::sleep(ms(10));
        }
        let acked = p1.acked(&cid);
        let byes = p1.requests_in("BYE", &cid).len();
        let carrier = finals.first().copied().unwrap_or(0);
        outcomes.push((us, phone_final.unwrap_or(0), carrier));
        let ok_carrier = run.status.success() && (finals == vec![487] || carrier == 200);
        let ok_phone = match phone_final {
            Some(487) => true,
            Some(200) => acked && byes > 0,
            _ => false,
        };
        if !ok_carrier || !ok_phone {
            failures.push(format!(
                "run {n} (phone answers {us} us after its 180): carrier got {finals:?} (SIPp {}), phone answered {phone_final:?}, ACK {acked}, BYE x{byes}\n{}\n{}",
                run.status,
                run.summary(),
                transcript_of(&p1, &cid)
            ));
        }
    }
    eprintln!("[e2e] race outcomes (answer delay us, phone final, carrier final): {outcomes:?}");
    // Records are written by a batching writer with fsync: under a busy disk
    // (a build next to the tests) that can take seconds.
    let recs = wait_records_ended(&data, outcomes.len(), Duration::from_secs(20));
    for (n, (r, (_, _, carrier))) in recs.iter().zip(&outcomes).enumerate() {
        let want = if *carrier == 200 {
            "answered"
        } else {
            "cancelled"
        };
        if r["result"] != want {
            failures.push(format!(
                "run {n}: the carrier got {carrier} but the record says {}",
                r["result"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} CANCEL/answer races did not end cleanly:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n\n")
    );
    assert!(
        p1.open_dialogs().is_empty(),
        "legs left up at the phone: {:?}",
        p1.open_dialogs()
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

/// The phone's transcript lines of one dialog.
fn transcript_of(p: &Phone, call_id: &str) -> String {
    p.transcript()
        .lines()
        .filter(|l| l.contains(call_id))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// 5. Outbound caller ID
// ---------------------------------------------------------------------------

/// Outside calls from 1001 with each caller-ID choice: the user's setting
/// (main, own), the per-call *81 / *82 overrides, and 184 withholding. The
/// carrier (SIPp UAS) records the INVITEs; each must carry the dialled
/// number in the Request-URI and the chosen number in From and
/// P-Asserted-Identity (withheld: anonymous From, Privacy: id).
#[test]
fn outbound_caller_id_choices() {
    let sb = Sandbox::new("trunk-cid");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001"]);
    let main = "0312340000";
    let own = "0312345001";
    let number = "09012345678";
    cli(&data, &["setting", "set", "main_number", main]);
    cli(
        &data,
        &["caller-id", "1001", "--show", "main", "--did", own],
    );

    // (setting, dialled, shown, withheld)
    let cases: Vec<(&str, String, &str, bool)> = vec![
        ("main", format!("0{number}"), main, false),
        ("own", format!("0{number}"), own, false),
        ("own", format!("*810{number}"), main, false),
        ("main", format!("*820{number}"), own, false),
        ("main", format!("0184{number}"), main, true),
    ];
    let mut carrier = trunk_sipp(
        &sb,
        "cid-carrier",
        "carrier_uas.xml",
        CARRIER_IP,
        cport,
        None,
        cases.len() as u32 + 1,
        &[],
    );
    carrier.wait_listening();
    let server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "up", Duration::from_secs(5));
    let p1 = phone(&server, "1001", Behaviour::Ring);

    for (i, (setting, dialled, _, _)) in cases.iter().enumerate() {
        cli(&data, &["caller-id", "1001", "--show", setting]);
        let call = p1.dial(dialled, Duration::from_secs(10));
        assert_eq!(
            call.status(),
            200,
            "case {i} ({dialled}): {}",
            call.response.text()
        );
        let bye = p1.hangup(&call);
        assert_eq!(
            bye.status(),
            Some(200),
            "case {i}: BYE answered {}",
            bye.text()
        );
        wait_records_ended(&data, i + 1, Duration::from_secs(5));
    }
    let run = carrier.finish();
    run.assert_success();

    let invites = run.received_invites();
    assert_eq!(invites.len(), cases.len(), "{}", run.summary());
    let recs = call_records(&data);
    for (i, ((_, dialled, shown, withheld), inv)) in cases.iter().zip(&invites).enumerate() {
        let what = format!("case {i} (dialled {dialled}):\n{}", inv.text());
        assert_eq!(ruri_user(inv), number, "Request-URI user, {what}");
        assert!(
            inv.start_line.contains(&format!("@{CARRIER_IP}")),
            "Request-URI host, {what}"
        );
        let from = inv.header("from").unwrap_or("");
        let pai = inv.headers_named("p-asserted-identity");
        let privacy = inv.header("privacy").unwrap_or("");
        if *withheld {
            assert_eq!(
                uri_user(from),
                "anonymous",
                "From of a withheld call, {what}"
            );
            assert!(
                !from.contains(main) && !from.contains(own),
                "a withheld From shows a number, {what}"
            );
            assert!(
                privacy
                    .split(';')
                    .any(|p| p.trim().eq_ignore_ascii_case("id")),
                "Privacy: id missing, {what}"
            );
            for p in &pai {
                assert_eq!(
                    uri_user(p),
                    *shown,
                    "P-Asserted-Identity of a withheld call, {what}"
                );
            }
        } else {
            assert_eq!(uri_user(from), *shown, "From user, {what}");
            assert_eq!(pai.len(), 1, "one P-Asserted-Identity, {what}");
            assert_eq!(uri_user(pai[0]), *shown, "P-Asserted-Identity user, {what}");
            assert!(
                privacy.is_empty() || privacy.eq_ignore_ascii_case("none"),
                "Privacy on a presented call, {what}"
            );
        }
        let r = &recs[i];
        assert_record(
            r,
            &[
                ("direction", "outbound"),
                ("caller", "1001"),
                ("callee", number),
                ("trunk", "carrier"),
                ("result", "answered"),
                ("answered_by", number),
                (
                    "caller_id_shown",
                    if *withheld { "anonymous" } else { shown },
                ),
            ],
        );
    }
    wait_no_active_calls(&server, Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// 6. Failover
// ---------------------------------------------------------------------------

/// Two trunks: priority 1 answers every INVITE 503, priority 2 answers 200.
/// The outside call is answered through the second; the record names it;
/// /metrics counts the failover.
#[test]
fn outbound_trunk_failover() {
    let sb = Sandbox::new("trunk-failover");
    let data = sb.data();
    let p_primary = free_udp_port_on(CARRIER_IP);
    let p_backup = free_udp_port_on(CARRIER2_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "primary",
            "--host",
            &format!("{CARRIER_IP}:{p_primary}"),
            "--priority",
            "1",
        ],
    );
    cli(
        &data,
        &[
            "trunk",
            "add",
            "backup",
            "--host",
            &format!("{CARRIER2_IP}:{p_backup}"),
            "--priority",
            "2",
        ],
    );
    cli(
        &data,
        &["user", "add", "1001", "--password", &password("1001")],
    );
    cli(&data, &["setting", "set", "main_number", "0312340000"]);

    let mut primary = trunk_sipp(
        &sb,
        "primary",
        "carrier_uas_503.xml",
        CARRIER_IP,
        p_primary,
        None,
        2,
        &[],
    );
    let mut backup = trunk_sipp(
        &sb,
        "backup",
        "carrier_uas.xml",
        CARRIER2_IP,
        p_backup,
        None,
        2,
        &[],
    );
    primary.wait_listening();
    backup.wait_listening();
    let server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "primary", "up", Duration::from_secs(5));
    wait_trunk_state(&data, "backup", "up", Duration::from_secs(5));
    let p1 = phone(&server, "1001", Behaviour::Ring);

    let call = p1.dial("009012345678", Duration::from_secs(10));
    assert_eq!(call.status(), 200, "{}", call.response.text());
    p1.hangup(&call);
    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));

    let prun = primary.finish();
    let brun = backup.finish();
    prun.assert_success();
    brun.assert_success();
    assert_eq!(
        prun.received_invites().len(),
        1,
        "primary:\n{}",
        prun.summary()
    );
    assert_eq!(
        brun.received_invites().len(),
        1,
        "backup:\n{}",
        brun.summary()
    );
    assert!(
        !prun.received_requests("ACK").is_empty(),
        "503 not ACKed:\n{}",
        prun.summary()
    );
    let binv = brun.received_invites()[0].clone();
    assert_eq!(ruri_user(&binv), "09012345678", "{}", binv.text());
    assert!(
        binv.start_line.contains(&format!("@{CARRIER2_IP}")),
        "{}",
        binv.text()
    );

    assert_record(
        &recs[0],
        &[
            ("direction", "outbound"),
            ("trunk", "backup"),
            ("result", "answered"),
            ("answered_by", "09012345678"),
        ],
    );
    let failovers = metric(
        &server,
        "tsunagu_trunk_failovers_total",
        Some("trunk=\"primary\""),
    );
    assert_eq!(
        failovers,
        Some(1.0),
        "tsunagu_trunk_failovers_total{{trunk=\"primary\"}}:\n{}",
        server.metrics()
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// 7. Bad input from the carrier
// ---------------------------------------------------------------------------

/// Unknown DID: 404; malformed SDP: 400; an offer with only a codec the
/// PBX does not know: 488. Then a good call still works.
///
/// Offers without G.711: the PBX refuses an audio line without any rtpmap
/// it can read (static GSM, payload type 3) itself, before routing. An
/// offer with a named codec it cannot transcode (dynamic AMR, or static
/// G.729) is routed on to the phone (negotiate.rs passes unknown codecs
/// through when both ends share one); the phone refuses it with 488, which
/// reaches the carrier. Either way the carrier must get 488 and no phone
/// may answer.
#[test]
fn inbound_bad_requests_are_refused() {
    let sb = Sandbox::new("trunk-bad");
    let data = sb.data();
    let cport = pbx_with_carrier(&sb, &["1001"]);
    cli(&data, &["did", "add", DID, "--to", "user:1001"]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    let p1 = phone(&server, "1001", Behaviour::AnswerAfter(ms(200)));

    let good_m = "m=audio 4000 RTP/AVP 0";
    // (what, DID, m= line, extra line, expected code, may the phone be offered the call)
    let cases: [(&str, &str, &str, &str, u16, bool); 5] = [
        (
            "unknown DID",
            "0399999999",
            good_m,
            "a=sendrecv",
            404,
            false,
        ),
        (
            "malformed SDP",
            DID,
            "m=audio notaport RTP/AVP 0",
            "a=sendrecv",
            400,
            false,
        ),
        (
            "only GSM (static 3)",
            DID,
            "m=audio 4000 RTP/AVP 3",
            "a=sendrecv",
            488,
            false,
        ),
        (
            "only AMR (dynamic 96)",
            DID,
            "m=audio 4000 RTP/AVP 96",
            "a=rtpmap:96 AMR/8000",
            488,
            true,
        ),
        (
            "only G.729 (static 18)",
            DID,
            "m=audio 4000 RTP/AVP 18",
            "a=sendrecv",
            488,
            true,
        ),
    ];
    let mut failures = Vec::new();
    let mut offered = Vec::new();
    for (n, (what, did, mline, extra, want, may_offer)) in cases.iter().enumerate() {
        let before = p1.invites().len();
        let run = carrier_call(
            &sb,
            &format!("bad{n}"),
            "inbound_reject.xml",
            cport,
            &server,
            &["-s", did, "-key", "mline", mline, "-key", "extra", extra],
        );
        let finals = run.invite_finals();
        let invites = p1.invites();
        let new: Vec<&Event> = invites[before..].iter().collect();
        let answered = new
            .iter()
            .any(|i| p1.finals_sent(i.call_id()).contains(&200));
        if !new.is_empty() {
            offered.push(*what);
        }
        if finals != vec![*want]
            || answered
            || (!may_offer && !new.is_empty())
            || !run.status.success()
        {
            failures.push(format!(
                "{what}: carrier got {finals:?} (want [{want}]), phone offered the call {} time(s), answered: {answered}, SIPp {}\n{}\n{}",
                new.len(),
                run.status,
                run.summary(),
                p1.transcript()
            ));
        }
        server_alive(&server);
    }
    if !offered.is_empty() {
        eprintln!("[e2e] offers routed on to the phone (and refused there): {offered:?}");
    }

    // A good call still works.
    let before = p1.invites().len();
    let run = carrier_call(
        &sb,
        "good",
        "inbound_call.xml",
        cport,
        &server,
        &["-s", DID, "-d", "300"],
    );
    run.assert_success();
    let inv = p1.wait_invites(before + 1, ms(1000)).remove(before);
    p1.wait_request_in("BYE", inv.call_id(), ms(3000));

    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    let nf = recs.iter().find(|r| r["result"] == "not-found");
    assert!(
        nf.is_some_and(|r| r["did"] == "0399999999"),
        "no not-found record for the unknown DID: {recs:#?}"
    );
    assert!(
        recs.iter()
            .any(|r| r["result"] == "answered" && r["answered_by"] == "1001"),
        "{recs:#?}"
    );
    assert!(
        failures.is_empty(),
        "bad INVITEs not refused as they should be:\n{}",
        failures.join("\n\n")
    );
    wait_no_active_calls(&server, Duration::from_secs(3));
}

fn server_alive(server: &Server) {
    let c = UdpClient::new(server.sip_addr());
    let r = c.options().expect("the server answers OPTIONS");
    assert_eq!(r.status(), Some(200));
}

// ---------------------------------------------------------------------------
// 8. Trunk status
// ---------------------------------------------------------------------------

/// A carrier that answers OPTIONS 200: `tsunagu trunk status` says up. A
/// second trunk where nothing listens is not up (it reaches failed only
/// after timer F, 32 s: see `trunk_status_failed_when_nothing_answers`).
#[test]
fn trunk_status_up_when_options_answered() {
    let sb = Sandbox::new("trunk-up");
    let data = sb.data();
    let port = free_udp_port_on(CARRIER_IP);
    let dead = free_udp_port_on(CARRIER2_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "carrier",
            "--host",
            &format!("{CARRIER_IP}:{port}"),
        ],
    );
    cli(
        &data,
        &[
            "trunk",
            "add",
            "silent",
            "--host",
            &format!("{CARRIER2_IP}:{dead}"),
        ],
    );
    let mut sipp = trunk_sipp(
        &sb,
        "options",
        "options_responder.xml",
        CARRIER_IP,
        port,
        None,
        1,
        &[],
    );
    sipp.wait_listening();
    let _server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "up", Duration::from_secs(5));
    let run = sipp.finish();
    run.assert_success();
    let opts = run.received_requests("OPTIONS");
    assert_eq!(opts.len(), 1, "{}", run.summary());
    let st = trunk_state(&data, "silent");
    assert!(
        st.as_deref() != Some("up"),
        "a trunk nobody answers is up:\n{}",
        trunk_status_text(&data)
    );
}

/// A carrier that answers OPTIONS 503: failed at once, with the reason.
#[test]
fn trunk_status_failed_when_options_refused() {
    let sb = Sandbox::new("trunk-503");
    let data = sb.data();
    let port = free_udp_port_on(CARRIER_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "carrier",
            "--host",
            &format!("{CARRIER_IP}:{port}"),
        ],
    );
    let mut sipp = trunk_sipp(
        &sb,
        "options503",
        "options_503.xml",
        CARRIER_IP,
        port,
        None,
        1,
        &[],
    );
    sipp.wait_listening();
    let _server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "failed", Duration::from_secs(5));
    let text = trunk_status_text(&data);
    assert!(text.contains("503"), "the status does not say why:\n{text}");
    sipp.finish().assert_success();
}

/// Nothing answers the OPTIONS at all: failed once the trunk task's own
/// answer timeout (5 s) passes, long before the transaction's timer F.
#[test]
fn trunk_status_failed_when_nothing_answers() {
    let sb = Sandbox::new("trunk-dead");
    let data = sb.data();
    let dead = free_udp_port_on(CARRIER_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "carrier",
            "--host",
            &format!("{CARRIER_IP}:{dead}"),
        ],
    );
    let started = Instant::now();
    let _server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "failed", Duration::from_secs(10));
    eprintln!("[e2e] silent trunk failed after {:?}", started.elapsed());
    assert!(
        trunk_status_text(&data).contains("no answer"),
        "{}",
        trunk_status_text(&data)
    );
}

/// A trunk that registers with credentials: the carrier's 401 is answered
/// with digest, the second REGISTER is accepted, and the state is
/// `registered`.
#[test]
fn trunk_registers_with_credentials() {
    let sb = Sandbox::new("trunk-register");
    let data = sb.data();
    let port = free_udp_port_on(CARRIER_IP);
    cli(
        &data,
        &[
            "trunk",
            "add",
            "carrier",
            "--host",
            &format!("{CARRIER_IP}:{port}"),
            "--username",
            "city-hall",
            "--password",
            "trunk-secret",
            "--register",
        ],
    );
    let mut sipp = trunk_sipp(&sb, "register", "register_challenge.xml", CARRIER_IP, port, None, 1, &[]);
    sipp.wait_listening();
    let _server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "registered", Duration::from_secs(10));
    let run = sipp.finish();
    run.assert_success();
    assert_eq!(run.received_requests("REGISTER").len(), 2, "{}", run.summary());
}

/// An outside call over a TCP trunk: the PBX opens the connection itself,
/// pings and calls over it, and the call is answered.
#[test]
fn outbound_call_over_a_tcp_trunk() {
    let sb = Sandbox::new("trunk-tcp");
    let data = sb.data();
    let port = free_udp_port_on(CARRIER_IP);
    cli(&data, &["trunk", "add", "carrier", "--host", &format!("{CARRIER_IP}:{port}"), "--transport", "tcp"]);
    cli(&data, &["user", "add", "1001", "--password", &password("1001")]);
    cli(&data, &["setting", "set", "main_number", "0312340000"]);
    // The later -t wins: SIPp listens on TCP.
    let carrier = trunk_sipp(&sb, "tcp", "carrier_uas.xml", CARRIER_IP, port, None, 2, &["-t", "t1"]);
    wait_for("SIPp listening on TCP", Duration::from_secs(10), || {
        std::net::TcpListener::bind((CARRIER_IP, port)).is_err().then_some(())
    });
    let server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "up", Duration::from_secs(10));
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let call = p1.dial("009012345678", Duration::from_secs(10));
    assert_eq!(call.status(), 200, "{}", call.response.text());
    p1.hangup(&call);
    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(&recs[0], &[("direction", "outbound"), ("trunk", "carrier"), ("result", "answered")]);
    let run = carrier.finish();
    run.assert_success();
    assert_eq!(run.received_invites().len(), 1, "{}", run.summary());
    let log = fs::read_to_string(sb.file("sipp-tcp").join("messages.log")).unwrap_or_default();
    assert!(log.contains("TCP message received"), "the carrier saw TCP traffic");
}

// ---------------------------------------------------------------------------
// TLS trunk (SIPp has no TLS: a small rustls carrier stands in)
// ---------------------------------------------------------------------------

/// A carrier that speaks SIP over TLS on 127.0.0.2 with a certificate the
/// PBX is told to trust (`tls.trunk_ca`): it answers OPTIONS and BYE with
/// 200 and an INVITE with 100 then 200 (G.711 SDP), and keeps every
/// request it received.
struct TlsCarrier {
    port: u16,
    requests: std::sync::Arc<Mutex<Vec<SipMsg>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for TlsCarrier {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl TlsCarrier {
    /// Writes the carrier's certificate to `ca_file` for the PBX to trust.
    fn start(ca_file: &Path) -> TlsCarrier {
        let generated = rcgen::generate_simple_self_signed(vec![CARRIER_IP.to_string()]).expect("carrier certificate");
        fs::write(ca_file, generated.cert.pem()).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(generated.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind((CARRIER_IP, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, stopping) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, reqs, stopping) = (config.clone(), reqs.clone(), stopping.clone());
                        thread::spawn(move || serve_tls_connection(tcp, config, port, reqs, stopping));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TlsCarrier { port, requests, stop }
    }

    fn requests(&self, method: &str) -> Vec<SipMsg> {
        self.requests.lock().unwrap().iter().filter(|m| m.start_line.starts_with(method)).cloned().collect()
    }
}

fn serve_tls_connection(
    tcp: std::net::TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    port: u16,
    requests: std::sync::Arc<Mutex<Vec<SipMsg>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::{Read, Write};
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match tls.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        // Keep-alive CRLFs between messages (RFC 5626) are skipped.
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        while let Some((msg, used)) = SipMsg::parse(&buf) {
            buf.drain(..used);
            let method = msg.start_line.split(' ').next().unwrap_or("").to_string();
            requests.lock().unwrap().push(msg.clone());
            let reply = |code: &str, to_tag: bool, body: &str| {
                let mut r = format!("SIP/2.0 {code}\r\n");
                for v in msg.headers_named("via") {
                    r.push_str(&format!("Via: {v}\r\n"));
                }
                let to = msg.header("to").unwrap_or("");
                let to = if to_tag && !to.contains(";tag=") { format!("{to};tag=tlscarrier") } else { to.to_string() };
                r.push_str(&format!("From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n", msg.header("from").unwrap_or(""), msg.header("call-id").unwrap_or(""), msg.header("cseq").unwrap_or("")));
                r.push_str(&format!("Contact: <sip:carrier@{CARRIER_IP}:{port};transport=tls>\r\n"));
                if !body.is_empty() {
                    r.push_str("Content-Type: application/sdp\r\n");
                }
                r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
                r
            };
            let out = match method.as_str() {
                "INVITE" => {
                    let sdp = format!("v=0\r\no=carrier 1 1 IN IP4 {CARRIER_IP}\r\ns=-\r\nc=IN IP4 {CARRIER_IP}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n");
                    reply("100 Trying", false, "") + &reply("200 OK", true, &sdp)
                }
                "ACK" => String::new(),
                _ => reply("200 OK", true, ""),
            };
            if !out.is_empty() && tls.write_all(out.as_bytes()).and_then(|_| tls.flush()).is_err() {
                return;
            }
        }
    }
}

/// Outbound over a TLS trunk: the PBX opens TLS to the carrier, checks its
/// certificate against `tls.trunk_ca`, sees the trunk up (OPTIONS), and
/// places the call over that connection: INVITE (with a TLS Via), ACK
/// and BYE all arrive over TLS.
#[test]
fn outbound_call_over_a_tls_trunk() {
    let sb = Sandbox::new("trunk-tls");
    let data = sb.data();
    let ca = sb.file("carrier-ca.pem");
    let carrier = TlsCarrier::start(&ca);
    cli(&data, &["trunk", "add", "carrier", "--host", &format!("{CARRIER_IP}:{}", carrier.port), "--transport", "tls"]);
    cli(&data, &["user", "add", "1001", "--password", &password("1001")]);
    cli(&data, &["setting", "set", "main_number", "0312340000"]);
    let ca_path = ca.to_string_lossy().into_owned();
    let mut env = SERVER_ENV.to_vec();
    env.push(("TSUNAGU_TLS_TRUNK_CA", ca_path.as_str()));
    let server = Server::start_with_env(&sb, &env);
    wait_trunk_state(&data, "carrier", "up", Duration::from_secs(10));
    assert!(!carrier.requests("OPTIONS").is_empty(), "the trunk was checked over TLS");
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let call = p1.dial("009012345678", Duration::from_secs(10));
    assert_eq!(call.status(), 200, "{}", call.response.text());
    let invites = carrier.requests("INVITE");
    assert_eq!(invites.len(), 1);
    assert!(invites[0].start_line.contains("09012345678"), "{}", invites[0].start_line);
    assert!(invites[0].header("via").is_some_and(|v| v.to_ascii_uppercase().starts_with("SIP/2.0/TLS")), "{:?}", invites[0].header("via"));
    p1.hangup(&call);
    wait_for("BYE over TLS", Duration::from_secs(5), || (!carrier.requests("BYE").is_empty()).then_some(()));
    assert_eq!(carrier.requests("ACK").len(), 1);
    let recs = wait_records_ended(&data, 1, Duration::from_secs(15));
    assert_record(&recs[0], &[("direction", "outbound"), ("trunk", "carrier"), ("result", "answered")]);
}

/// A carrier whose certificate the PBX does not trust is not used: the
/// trunk is reported failed and an outbound call is not sent to it.
#[test]
fn a_tls_trunk_with_an_untrusted_certificate_is_not_used() {
    let sb = Sandbox::new("trunk-tls-bad");
    let data = sb.data();
    let carrier = TlsCarrier::start(&sb.file("not-given-to-the-pbx.pem"));
    cli(&data, &["trunk", "add", "carrier", "--host", &format!("{CARRIER_IP}:{}", carrier.port), "--transport", "tls"]);
    cli(&data, &["user", "add", "1001", "--password", &password("1001")]);
    let server = Server::start_with_env(&sb, SERVER_ENV);
    wait_trunk_state(&data, "carrier", "failed", Duration::from_secs(20));
    let p1 = phone(&server, "1001", Behaviour::Ring);
    let call = p1.dial("009012345678", Duration::from_secs(15));
    assert!(call.status() >= 500, "{}", call.response.text());
    assert!(carrier.requests("INVITE").is_empty(), "nothing was sent over an unverified connection");
}
