//! Internal call routing with scripted phones (tests/common/phone.rs): every
//! device of an extension rings and the first answer wins, busy answers and
//! forwarding on busy, ring groups that skip members already on a call and
//! that rotate (round robin), and the call records of each.

mod common;

use common::phone::{Behaviour, Phone};
use common::{wait_for, Sandbox, Server};
use std::time::Duration;

const PW: &str = "secret-pass-1";

fn pbx(sb: &Sandbox, exts: &[&str]) -> Server {
    let s = Server::start(sb);
    for e in exts {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    s
}

fn phone(s: &Server, ext: &str, b: Behaviour) -> Phone {
    Phone::register(s.sip_addr(), ext, PW, b)
}

/// Call records as (caller, callee, result, answered_by), once `n` have ended.
fn records(s: &Server, n: usize) -> Vec<(String, String, String, String, String)> {
    wait_for("call records", Duration::from_secs(10), || {
        let out = s.cli(&["calls", "--csv"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<Vec<String>> = text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect();
        (rows.len() >= n && rows.iter().all(|r| !r[8].is_empty()))
            .then(|| rows.into_iter().map(|r| (r[2].clone(), r[3].clone(), r[10].clone(), r[11].clone(), r[12].clone())).collect())
    })
}

#[test]
fn every_device_of_an_extension_rings_and_the_first_answer_wins() {
    let sb = Sandbox::new("feat-devices");
    let s = pbx(&sb, &["1001", "1002"]);
    let desk = phone(&s, "1002", Behaviour::Ring);
    let mobile = phone(&s, "1002", Behaviour::AnswerAfter(Duration::from_millis(300)));
    let caller = phone(&s, "1001", Behaviour::Busy);
    let call = caller.dial("1002", Duration::from_secs(10));
    assert_eq!(call.status(), 200);
    let d = desk.wait_invites(1, Duration::from_secs(5));
    let m = mobile.wait_invites(1, Duration::from_secs(5));
    let gap = if d[0].at > m[0].at { d[0].at - m[0].at } else { m[0].at - d[0].at };
    assert!(gap < Duration::from_millis(200), "both devices ring at once ({gap:?} apart)");
    // The device that did not answer is cancelled.
    desk.wait_request_in("CANCEL", d[0].call_id(), Duration::from_secs(5));
    caller.hangup(&call);
    mobile.wait_request_in("BYE", m[0].call_id(), Duration::from_secs(5));
    let r = records(&s, 1);
    assert_eq!((r[0].2.as_str(), r[0].3.as_str()), ("answered", "1002"));
    assert!(!r[0].4.is_empty(), "the record names the device that answered");
}

#[test]
fn busy_callee_gives_486_and_forward_on_busy_takes_the_call() {
    let sb = Sandbox::new("feat-busy");
    let s = pbx(&sb, &["1001", "1002", "1003"]);
    let _busy = phone(&s, "1002", Behaviour::Busy);
    let caller = phone(&s, "1001", Behaviour::Busy);
    assert_eq!(caller.dial("1002", Duration::from_secs(10)).status(), 486);

    // With forwarding on busy to 1003, the same call is answered there.
    s.cli(&["forward", "1002", "--busy", "user:1003"]);
    let fwd = phone(&s, "1003", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let call = caller.dial("1002", Duration::from_secs(10));
    assert_eq!(call.status(), 200);
    assert_eq!(fwd.invites().len(), 1);
    caller.hangup(&call);
    let r = records(&s, 2);
    assert_eq!((r[0].2.as_str(), r[1].2.as_str(), r[1].3.as_str()), ("busy", "answered", "1003"), "{r:?}");
}

#[test]
fn groups_skip_members_on_a_call_and_round_robin_rotates() {
    let sb = Sandbox::new("feat-groups");
    let s = pbx(&sb, &["1001", "1002", "1003", "1004"]);
    let m2 = phone(&s, "1002", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let m3 = phone(&s, "1003", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let caller = phone(&s, "1001", Behaviour::Busy);
    let other = phone(&s, "1004", Behaviour::Busy);

    // Round robin: each call starts one member further.
    s.cli(&["group", "add", "3200", "--members", "1002,1003", "--strategy", "round-robin", "--member-timeout", "3"]);
    for _ in 0..2 {
        let c = caller.dial("3200", Duration::from_secs(10));
        assert_eq!(c.status(), 200);
        caller.hangup(&c);
    }
    assert_eq!((m2.invites().len(), m3.invites().len()), (1, 1), "first call to 1002, second to 1003");

    // 1002 is on a call; a skip-busy group passes it by.
    s.cli(&["group", "add", "3100", "--members", "1002,1003", "--strategy", "sequential", "--skip-busy", "--member-timeout", "3"]);
    let busy_call = other.dial("1002", Duration::from_secs(10));
    assert_eq!(busy_call.status(), 200);
    let before = m2.invites().len();
    let c = caller.dial("3100", Duration::from_secs(10));
    assert_eq!(c.status(), 200);
    assert_eq!(m2.invites().len(), before, "1002, already on a call, was not rung");
    assert_eq!(m3.invites().len(), 2, "1003 took the group call");
    caller.hangup(&c);
    other.hangup(&busy_call);
    let r = records(&s, 4);
    assert_eq!(r.iter().filter(|x| x.2 == "answered").count(), 4, "{r:?}");
}

/// Longest-idle groups ring first the member whose last call ended
/// longest ago (never-called members before anyone).
#[test]
fn longest_idle_group_rings_the_member_idle_longest_first() {
    let sb = Sandbox::new("feat-idle");
    let s = pbx(&sb, &["1001", "1002", "1003"]);
    let m2 = phone(&s, "1002", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let m3 = phone(&s, "1003", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let caller = phone(&s, "1001", Behaviour::Busy);
    s.cli(&["group", "add", "3300", "--members", "1002,1003", "--strategy", "longest-idle", "--member-timeout", "3"]);
    // 1002 has just had a call; 1003 has never had one.
    let direct = caller.dial("1002", Duration::from_secs(10));
    assert_eq!(direct.status(), 200);
    caller.hangup(&direct);
    records(&s, 1);
    let c = caller.dial("3300", Duration::from_secs(10));
    assert_eq!(c.status(), 200);
    assert_eq!((m2.invites().len(), m3.invites().len()), (1, 1), "1003 (never called) was rung, not 1002");
    caller.hangup(&c);
    records(&s, 2);
    // Now 1002's last call ended before 1003's.
    let c = caller.dial("3300", Duration::from_secs(10));
    assert_eq!(c.status(), 200);
    assert_eq!((m2.invites().len(), m3.invites().len()), (2, 1), "1002, idle longer, was rung first");
    caller.hangup(&c);
}

#[test]
fn did_csv_import_is_all_or_nothing_with_line_numbers() {
    let sb = Sandbox::new("feat-dids");
    let s = pbx(&sb, &["1001"]);
    let bad = sb.file("bad.csv");
    std::fs::write(&bad, "number,destination,label\n0312345678,user:1001,Main\n03x,user:1001,\n0312345679,nowhere:1,\n").unwrap();
    let out = common::cli_unchecked(&sb.data(), &["did", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("line 3") && err.contains("line 4") && !err.contains("line 2"), "{err}");
    let listed = String::from_utf8_lossy(&s.cli(&["did", "list"]).stdout).into_owned();
    assert!(listed.trim().is_empty(), "nothing imported from a bad file: {listed}");
    // 185 numbers at once, as the city has.
    let good = sb.file("good.csv");
    let mut text = String::from("number,destination,label\n");
    for n in 0..185 {
        text.push_str(&format!("+8131234{n:04},group:3000,DID {n}\n"));
    }
    std::fs::write(&good, text).unwrap();
    let out = s.cli(&["did", "import", good.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 185"));
    let listed = String::from_utf8_lossy(&s.cli(&["did", "list"]).stdout).into_owned();
    assert_eq!(listed.lines().count(), 185);
    assert!(listed.lines().next().unwrap().starts_with("0312340000\tgroup:3000"), "numbers stored in national form: {listed}");
}

/// Admission control: a server at its call limit refuses the next call at
/// once with 503 and Retry-After (the caller or carrier tries later or
/// elsewhere), and takes calls again when one ends.
#[test]
fn a_server_at_its_call_limit_answers_503_with_retry_after_then_recovers() {
    let sb = Sandbox::new("feat-limit");
    let s = Server::start_with_env(&sb, &[("TSUNAGU_CALLS_MAX_CALLS", "1")]);
    refuses_a_second_call_then_recovers(&s, "too many calls");
}

/// Admission control on media ports: with a range of three port pairs (a
/// call takes two), a second call gets 503 at once instead of the server
/// scanning for ports, and the ports are reusable as soon as the first
/// call ends.
#[test]
fn a_used_up_media_port_range_answers_503_then_recovers() {
    let sb = Sandbox::new("feat-ports");
    let min = free_even_port_run(6);
    let (lo, hi) = (min.to_string(), (min + 5).to_string());
    let s = Server::start_with_env(&sb, &[("TSUNAGU_MEDIA_PORT_MIN", lo.as_str()), ("TSUNAGU_MEDIA_PORT_MAX", hi.as_str())]);
    refuses_a_second_call_then_recovers(&s, "no media ports");
}

/// With room for one call: 1001 calls 1002 (answered); 1003's call is
/// refused with 503, Retry-After and a Warning containing `why`, and never
/// rings 1002; once the first call ends, 1003's next call goes through.
fn refuses_a_second_call_then_recovers(s: &Server, why: &str) {
    for e in ["1001", "1002", "1003"] {
        s.cli(&["user", "add", e, "--password", PW]);
    }
    let callee = phone(s, "1002", Behaviour::AnswerAfter(Duration::from_millis(50)));
    let caller = phone(s, "1001", Behaviour::Busy);
    let other = phone(s, "1003", Behaviour::Busy);
    let first = caller.dial("1002", Duration::from_secs(10));
    assert_eq!(first.status(), 200);
    let refused = other.dial("1002", Duration::from_secs(10));
    assert_eq!(refused.status(), 503, "{:?}", refused.response);
    assert!(refused.response.header("Retry-After").is_some_and(|v| v.trim().parse::<u32>().is_ok()), "{:?}", refused.response);
    assert!(refused.response.header("Warning").is_some_and(|w| w.contains(why)), "{:?}", refused.response);
    assert_eq!(callee.invites().len(), 1, "the refused call never reached the callee");
    caller.hangup(&first);
    // The first call's task ends shortly after its BYE; then calls go through again.
    let again = wait_for("a call after the first ended", Duration::from_secs(10), || {
        let c = other.dial("1002", Duration::from_secs(10));
        (c.status() == 200).then_some(c)
    });
    other.hangup(&again);
}

/// `n` consecutive free UDP ports on 127.0.0.1 starting at an even one.
fn free_even_port_run(n: u16) -> u16 {
    for _ in 0..200 {
        let start = 30000 + (rand_u16() % 5000) * 2;
        let socks: Vec<_> = (start..start + n).filter_map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
        if socks.len() == n as usize {
            return start;
        }
    }
    panic!("no run of {n} free UDP ports");
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id().rotate_left(7)) as u16
}

/// `tsunagu holidays YEAR`: the computed Japanese public holidays that
/// business-hour schedules will use (issue 6), checked against the Cabinet
/// Office's list for 2026; a year outside the formulas' range is refused.
#[test]
fn holidays_command_prints_the_year() {
    let out = common::run_bounded(std::process::Command::new(common::TSUNAGU).args(["holidays", "2026"]), Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let dates: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(
        dates,
        [
            "2026-01-01", "2026-01-12", "2026-02-11", "2026-02-23", "2026-03-20", "2026-04-29", "2026-05-03", "2026-05-04", "2026-05-05",
            "2026-05-06", "2026-07-20", "2026-08-11", "2026-09-21", "2026-09-22", "2026-09-23", "2026-10-12", "2026-11-03", "2026-11-23"
        ],
        "{text}"
    );
    assert!(text.contains("2026-05-06\t振替休日\t"), "{text}");
    let out = common::run_bounded(std::process::Command::new(common::TSUNAGU).args(["holidays", "2100"]), Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1980 to 2099"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A schedule (`schedule:NAME`) sends a call to its open destination in
/// opening hours, to its closed one outside them, and to its disaster
/// destination in disaster mode; each change applies to the next call.
#[test]
fn schedules_route_by_hours_and_disaster_mode() {
    let sb = Sandbox::new("schedules");
    let s = pbx(&sb, &["2000", "2001", "2101", "2102", "2103"]);
    let answer = || Behaviour::AnswerAfter(Duration::from_millis(50));
    let open = phone(&s, "2101", answer());
    let closed = phone(&s, "2102", answer());
    let disaster = phone(&s, "2103", answer());
    let caller = phone(&s, "2001", Behaviour::Ring);
    // 2000 forwards everything to the schedule, as a public number would route to it.
    s.cli(&["forward", "2000", "--always", "schedule:main"]);
    let add = |hours: &str| {
        s.cli(&["schedule", "add", "main", "--hours", hours, "--open", "user:2101", "--closed", "user:2102", "--disaster", "user:2103", "--no-holidays"]);
    };
    let call = |who: &Phone, what: &str| {
        let before = who.invites().len();
        let c = caller.dial("2000", Duration::from_secs(10));
        assert_eq!(c.status(), 200, "{what}: {}", caller.transcript());
        assert_eq!(who.invites().len(), before + 1, "{what}: the wrong phone rang");
        caller.hangup(&c);
    };
    add("sun-sat 00:00-24:00");
    call(&open, "in opening hours");
    add("");
    call(&closed, "outside opening hours");
    s.cli(&["disaster", "on"]);
    call(&disaster, "in disaster mode");
    s.cli(&["disaster", "off"]);
    call(&closed, "after disaster mode");
    assert!(open.invites().len() == 1 && closed.invites().len() == 2 && disaster.invites().len() == 1);
    // A schedule that sends calls to itself is refused.
    let out = common::cli_unchecked(&s.data, &["schedule", "add", "loop", "--hours", "", "--open", "schedule:loop", "--closed", "user:2102"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot send calls to itself"));
}

/// The setting `schedule_clock` makes schedules act as if it were another
/// time, so one running server shows every branch: in hours, after hours,
/// a public holiday (成人の日 2027, computed) and a one-off closed date.
#[test]
fn a_configured_clock_moves_calls_between_hours_holidays_and_one_off_dates() {
    let sb = Sandbox::new("schedule-clock");
    let s = pbx(&sb, &["2000", "2001", "2101", "2102", "2104"]);
    let answer = || Behaviour::AnswerAfter(Duration::from_millis(50));
    let open = phone(&s, "2101", answer());
    let closed = phone(&s, "2102", answer());
    let holiday = phone(&s, "2104", answer());
    let caller = phone(&s, "2001", Behaviour::Ring);
    s.cli(&["forward", "2000", "--always", "schedule:main"]);
    s.cli(&["schedule", "add", "main", "--hours", "mon-fri 08:30-17:15", "--open", "user:2101", "--closed", "user:2102", "--holiday", "user:2104", "--overrides", "2027-01-04 closed"]);
    let call_at = |clock: &str, who: &Phone, what: &str| {
        s.cli(&["setting", "set", "schedule_clock", clock]);
        let before = who.invites().len();
        let c = caller.dial("2000", Duration::from_secs(10));
        assert_eq!(c.status(), 200, "{what}: {}", caller.transcript());
        assert_eq!(who.invites().len(), before + 1, "{what}: the wrong phone rang");
        caller.hangup(&c);
    };
    call_at("2027-01-05T10:00", &open, "Tuesday in hours");
    call_at("2027-01-05T18:00", &closed, "Tuesday after hours");
    call_at("2027-01-11T10:00", &holiday, "成人の日");
    call_at("2027-01-04T10:00", &closed, "a Monday closed for the day");
    assert_eq!((open.invites().len(), closed.invites().len(), holiday.invites().len()), (1, 2, 1));
    // Overlapping hours and a bad clock are refused, naming the problem.
    let out = common::cli_unchecked(&s.data, &["schedule", "add", "bad", "--hours", "mon-fri 08:30-17:15; fri 17:00-20:00", "--open", "user:2101", "--closed", "user:2102"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("overlaps"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = common::cli_unchecked(&s.data, &["setting", "set", "schedule_clock", "tomorrow"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("2027-01-01T10:00"), "{}", String::from_utf8_lossy(&out.stderr));
}
