//! The desktop phone's command line, as a process: bad arguments are
//! refused with status 1 and a message naming the problem, before any SIP.
//! (Calls against real peers are in tests/e2e_phone.rs; building this test
//! also builds the binary they run, with the workspace's features.)

use std::process::{Command, Output};

fn phone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsunagu-phone")).args(args).output().expect("run tsunagu-phone")
}

fn said(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const SERVER: [&str; 6] = ["--server", "127.0.0.1:9", "--user", "1001", "--password", "pw"];

#[test]
fn tls_without_a_certificate_to_trust_is_refused() {
    let o = phone(&[&SERVER[..], &["--transport", "tls", "register"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(said(&o).contains("--ca"), "{}", said(&o));
}

#[test]
fn direct_mode_only_places_calls() {
    let o = phone(&[&SERVER[..], &["--direct", "register"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(said(&o).contains("--direct works with `call` only"), "{}", said(&o));
}

#[test]
fn a_server_that_does_not_resolve_is_refused() {
    let o = phone(&["--server", "no such host:5060", "--user", "1001", "--password", "pw", "register"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(said(&o).contains("cannot resolve --server"), "{}", said(&o));
}

#[test]
fn a_wav_that_cannot_be_read_is_refused_before_any_sip() {
    let o = phone(&[&SERVER[..], &["call", "1002", "--play", "/nonexistent/x.wav"]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(said(&o).contains("--play /nonexistent/x.wav"), "{}", said(&o));
}
