//! The admin API against a running PBX: sign-in with TOTP, lockout and
//! CSRF; every role against every kind of resource; users, departments,
//! CSV import (Shift_JIS, every bad row named) and export; live changes (a
//! user added through the API registers at once); the audit log; the
//! phonebook for apps and desk phones; call logs as CSV; live events.

mod common;
#[path = "common/api.rs"]
mod api;

use api::{request, Admin, Events};
use common::phone::{Behaviour, Phone};
use common::{cli, wait_for, Sandbox, Server};
use serde_json::{json, Value};
use std::time::Duration;

const NEW_PW: &str = "a-long-new-password-1";

/// `tsunagu admin add`: the one-time password it prints.
fn add_admin_cli(s: &Server, name: &str, role: &str, rights: &str) -> String {
    let out = cli(&s.data, &["admin", "add", name, "--role", role, "--rights", rights]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("one-time password: ")).unwrap_or_else(|| panic!("no password in {text:?}")).trim().to_string()
}

fn root(s: &Server) -> Admin {
    let pw = add_admin_cli(s, "root", "system", "");
    let mut a = Admin::new(s.http_addr(), "root", &pw);
    a.sign_in(NEW_PW);
    a
}

/// An admin created through the API by `by`, signed in.
fn admin_via_api(by: &Admin, name: &str, role: &str, rights: &[&str], departments: &[i64], dids: &[&str]) -> Admin {
    let a = by.call("POST", "/api/v1/admins", Some(&json!({ "name": name, "role": role, "rights": rights, "departments": departments, "dids": dids })));
    assert_eq!(a.status, 201, "add admin {name}: {}", a.text());
    let mut admin = Admin::new(by.addr, name, a.json()["one_time_password"].as_str().unwrap());
    admin.sign_in(NEW_PW);
    admin
}

fn department(by: &Admin, name: &str) -> i64 {
    let a = by.call("POST", "/api/v1/departments", Some(&json!({ "name": name })));
    assert_eq!(a.status, 201, "{}", a.text());
    a.json()["id"].as_i64().unwrap()
}

#[test]
fn sign_in_needs_totp_locks_after_failures_and_checks_csrf() {
    let sb = Sandbox::new("admin-signin");
    let s = Server::start(&sb);
    let pw = add_admin_cli(&s, "root", "system", "");
    let mut a = Admin::new(s.http_addr(), "root", &pw);

    // Wrong password: 401 with a message; no cookie.
    let r = a.password_step("wrong password");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "wrong name or password");
    // Unknown admin: the same answer.
    let r = Admin::new(s.http_addr(), "nobody", "x").password_step("whatever-it-is");
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("wrong name or password")));

    // The one-time password: enrol TOTP (mandatory for every role by default), then a new password.
    let r = a.password_step(&pw);
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "cookie {cookie:?} lacks {attr}");
    }
    assert_eq!(r.json()["state"], "enrol");
    // Before the sign-in is finished, the API answers 401.
    assert_eq!(a.get("/api/v1/users").status, 401);
    a.sign_in(NEW_PW);
    assert_eq!(a.get("/api/v1/users").status, 200);
    // A signed-in session cannot replace the enrolled TOTP (a stolen session would keep the account).
    let r = a.call("POST", "/api/v1/me/totp", None);
    assert_eq!(r.status, 409, "{}", r.text());

    // A changing request without the CSRF header is refused.
    let mut no_csrf = Admin::new(a.addr, "root", NEW_PW);
    no_csrf.cookie = a.cookie.clone();
    let r = no_csrf.call("POST", "/api/v1/departments", Some(&json!({ "name": "総務課" })));
    assert_eq!((r.status, r.json()["code"].clone()), (403, json!("csrf")), "{}", r.text());

    // Next sign-in: password, then a TOTP code. A wrong code is 401; the right one works.
    let mut b = Admin::new(a.addr, "root", NEW_PW);
    b.totp_secret = a.totp_secret.clone();
    b.last_step = a.last_step;
    assert_eq!(b.password_step(NEW_PW).json()["state"], "mfa");
    let r = b.call("POST", "/api/v1/session/totp", Some(&json!({ "code": "000000" })));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "wrong code");
    let code = b.next_code().expect("an unused code");
    let r = b.call("POST", "/api/v1/session/totp", Some(&json!({ "code": code })));
    assert_eq!(r.json()["state"], "ok", "{}", r.text());
    // The same code again (replay) is refused.
    let mut c = Admin::new(a.addr, "root", NEW_PW);
    c.password_step(NEW_PW);
    let r = c.call("POST", "/api/v1/session/totp", Some(&json!({ "code": code })));
    assert_eq!(r.status, 401, "a TOTP code works once: {}", r.text());

    // Five failures in a row lock the account (423), even for the right password.
    let mut d = Admin::new(a.addr, "root", NEW_PW);
    let mut last = 0;
    for _ in 0..4 {
        last = d.password_step("not the password").status;
    }
    assert_eq!(last, 423, "after 5 failures (one wrong code above, four passwords)");
    let r = d.password_step(NEW_PW);
    assert_eq!(r.status, 423);
    assert!(r.json()["retry_after_secs"].as_i64().unwrap() > 0);
    // The command line is the way back in: a new one-time password unlocks.
    let out = cli(&s.data, &["admin", "reset-password", "root"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let otp = text.split(": ").nth(1).unwrap().trim().to_string();
    let mut e = Admin::new(a.addr, "root", &otp);
    e.totp_secret = a.totp_secret.clone();
    // The codes of this step and the next were used above: a recovery code signs in.
    e.last_step = u64::MAX / 60;
    e.recovery_codes = a.recovery_codes.clone();
    e.sign_in("another-long-password");
    // ... and works once.
    let used = a.recovery_codes.last().unwrap().clone();
    let mut f = Admin::new(a.addr, "root", "another-long-password");
    assert_eq!(f.password_step("another-long-password").json()["state"], "mfa");
    let r = f.call("POST", "/api/v1/session/totp", Some(&json!({ "code": used })));
    assert_eq!(r.status, 401, "a recovery code works once: {}", r.text());

    // Every sign-in, failure and lock is in the audit log, with its source.
    let log = e.get("/api/v1/audit?limit=100").json();
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|x| x["action"].as_str().unwrap()).collect();
    for want in ["sign_in", "sign_in_failed", "account_locked", "sign_in_refused_locked", "mfa_enrolled", "password_changed", "admin_password_reset"] {
        assert!(actions.contains(&want), "audit lacks {want}: {actions:?}");
    }
    let signin = log.as_array().unwrap().iter().find(|x| x["action"] == "sign_in").unwrap();
    assert_eq!(signin["source"], "127.0.0.1");

    // A session unused for longer than the idle limit (30 min) is over.
    let db = s.data.join("tsunagu.db");
    let py = format!("import sqlite3; c = sqlite3.connect({:?}); c.execute('UPDATE admin_sessions SET last_seen = last_seen - 3600'); c.commit()", db.display().to_string());
    let out = common::run_bounded(std::process::Command::new("python3").args(["-c", &py]), Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = e.get("/api/v1/users");
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("expired"), "{}", r.text());
}

/// What each role may do, written out by hand (not computed from the
/// server's own rules), and checked request by request.
#[test]
fn every_role_against_every_kind_of_resource() {
    let sb = Sandbox::new("admin-roles");
    let s = Server::start(&sb);
    let sys = root(&s);
    let dep_a = department(&sys, "市民課");
    let dep_b = department(&sys, "税務課");
    for (ext, dep) in [("2001", dep_a), ("2002", dep_b)] {
        let r = sys.call("POST", "/api/v1/users", Some(&json!({ "extension": ext, "name": "職員", "department": dep })));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for did in ["0312340001", "0312340002"] {
        assert_eq!(sys.call("PUT", &format!("/api/v1/dids/{did}"), Some(&json!({ "dest": "user:2001" }))).status, 200);
    }

    let org = admin_via_api(&sys, "org1", "org", &[], &[], &[]);
    let group = admin_via_api(&sys, "group1", "group", &[], &[dep_a], &["0312340001"]);
    let auditor = admin_via_api(&sys, "audit1", "auditor", &["recordings"], &[], &[]);
    let supervisor = admin_via_api(&sys, "sv1", "supervisor", &[], &[], &[]);
    let readonly = admin_via_api(&sys, "ro1", "readonly", &[], &[], &[]);
    let devices = admin_via_api(&sys, "dev1", "org", &["devices"], &[], &[]);

    let user_a = |ext: &str| json!({ "extension": ext, "name": "新人", "department": dep_a });
    // (label, method, path, body)
    let reqs: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("dashboard", "GET", "/api/v1/dashboard".into(), None),
        ("list users", "GET", "/api/v1/users".into(), None),
        ("user in A", "GET", "/api/v1/users/2001".into(), None),
        ("user in B", "GET", "/api/v1/users/2002".into(), None),
        ("change user in B", "PUT", "/api/v1/users/2002".into(), Some(json!({ "name": "x" }))),
        ("add user", "POST", "/api/v1/users".into(), Some(user_a("2100"))),
        ("SIP password", "POST", "/api/v1/users/2001/sip-password".into(), None),
        ("groups", "GET", "/api/v1/groups".into(), None),
        ("route own DID", "PUT", "/api/v1/dids/0312340001".into(), Some(json!({ "dest": "user:2001" }))),
        ("route other DID", "PUT", "/api/v1/dids/0312340002".into(), Some(json!({ "dest": "user:2001" }))),
        ("trunks", "GET", "/api/v1/trunks".into(), None),
        ("change trunk", "PUT", "/api/v1/trunks/carrier".into(), Some(json!({ "host": "127.0.0.1:5999" }))),
        ("change setting", "PUT", "/api/v1/settings/main_number".into(), Some(json!({ "value": "0312340000" }))),
        ("phonebook", "GET", "/api/v1/phonebook".into(), None),
        ("edit phonebook", "POST", "/api/v1/phonebook".into(), Some(json!({ "name": "消防本部", "number": "0312349999" }))),
        ("call logs", "GET", "/api/v1/calls".into(), None),
        ("audit", "GET", "/api/v1/audit".into(), None),
        ("admins", "GET", "/api/v1/admins".into(), None),
        ("add group admin", "POST", "/api/v1/admins".into(), Some(json!({ "name": "tmp", "role": "readonly" }))),
        ("recordings", "GET", "/api/v1/recordings".into(), None),
        ("schedules", "GET", "/api/v1/schedules".into(), None),
        ("disaster mode", "PUT", "/api/v1/disaster".into(), Some(json!({ "on": false }))),
    ];
    // y: allowed, n: 403.
    let table: Vec<(&str, &Admin, &str)> = vec![
        //                 dash users A  B  chB add pw grp own oth trk chT set pb  ePb cal aud adm addA rec sch dis
        ("system", &sys, "y y y y y y n y y y y y y y y y y y y n y y"),
        ("org", &org, "y y y y y y n y y y y n n y y y y y y n y y"),
        ("group", &group, "y y y n n y n y y n n n n y n y n n n n y n"),
        ("auditor", &auditor, "n n n n n n n n n n n n n n n n n n n y n n"),
        ("supervisor", &supervisor, "y y y y n n n y n n n n n y n y n n n n y n"),
        ("readonly", &readonly, "y y y y n n n y n n y n n y n y n n n n y n"),
        ("org+devices", &devices, "y y y y y y y y y y y n n y y y y y y n y y"),
    ];
    let mut wrong = Vec::new();
    for (role, who, row) in &table {
        let expect: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(expect.len(), reqs.len(), "table row {role}");
        for ((label, method, path, body), want) in reqs.iter().zip(expect) {
            let mut body = body.clone();
            // Each allowed add needs its own name.
            if let Some(b) = body.as_mut() {
                if let Some(ext) = b.get("extension").and_then(Value::as_str) {
                    b["extension"] = json!(format!("{}{}", &ext[..2], role.len() * 10 + who.name.len()));
                }
                if b.get("role").is_some() {
                    b["name"] = json!(format!("tmp-{}", who.name));
                }
            }
            let r = who.call(method, path, body.as_ref());
            let ok = match want {
                "y" => r.status != 403 && r.status != 401 && r.status < 500,
                _ => r.status == 403 && r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            };
            if !ok {
                wrong.push(format!("{role} {label} ({method} {path}): want {want}, got {} {}", r.status, r.text()));
            }
        }
    }
    assert!(wrong.is_empty(), "role matrix:\n{}", wrong.join("\n"));

    // A group admin sees only the users of its departments and its numbers.
    let users = group.get("/api/v1/users").json();
    let exts: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["extension"].as_str().unwrap()).collect();
    assert!(exts.contains(&"2001") && !exts.contains(&"2002"), "{exts:?}");
    let dids = group.get("/api/v1/dids").json();
    assert_eq!(dids.as_array().unwrap().len(), 1, "{dids}");
    // Its live events say that users changed, not which one in another department.
    let mut group_events = Events::open(&group).expect("event socket");
    assert_eq!(sys.call("PUT", "/api/v1/users/2002", Some(&json!({ "name": "別の課" }))).status, 200);
    let e = group_events.wait("a users change", Duration::from_secs(10), |e| e["type"] == "change" && e["resource"] == "users");
    assert_eq!(e["key"], "", "{e}");
    // Moving its user into a department it was not granted is refused.
    let r = group.call("PUT", "/api/v1/users/2001", Some(&json!({ "department": dep_b })));
    assert_eq!(r.status, 403, "{}", r.text());
    // The device admin cannot hear recordings; the auditor can list them but not devices.
    assert_eq!(devices.get("/api/v1/recordings").status, 403);
    assert_eq!(auditor.call("POST", "/api/v1/users/2001/sip-password", None).status, 403);
    // The auditor's listing is itself in the recordings' access log.
    let log = auditor.get("/api/v1/recordings/access-log").json();
    assert!(log.as_array().unwrap().iter().any(|e| e["actor"] == "audit1" && e["action"] == "list"), "{log}");
    // An org admin cannot create a system admin or grant rights; nobody changes themselves.
    assert_eq!(org.call("POST", "/api/v1/admins", Some(&json!({ "name": "x1", "role": "system" }))).status, 403);
    assert_eq!(org.call("POST", "/api/v1/admins", Some(&json!({ "name": "x2", "role": "auditor", "rights": ["recordings"] }))).status, 403);
    assert_eq!(sys.call("PUT", "/api/v1/admins/root", Some(&json!({ "role": "readonly" }))).status, 403);
    // A trunk's password is never read back.
    let trunks = sys.get("/api/v1/trunks").text();
    assert!(!trunks.contains("password\":\""), "{trunks}");
}

#[test]
fn users_csv_shift_jis_dry_run_live_registration_audit_and_events() {
    let sb = Sandbox::new("admin-users");
    let s = Server::start(&sb);
    let sys = root(&s);
    let dep = department(&sys, "市民課");
    let mut events = Events::open(&sys).expect("event socket");

    // A user made through the API registers at once (the running registrar reloads).
    let r = sys.call("POST", "/api/v1/users", Some(&json!({ "extension": "3001", "name": "山田 太郎", "department": dep, "password": "sip-pass-3001" })));
    assert_eq!(r.status, 201, "{}", r.text());
    // The registrar polls the users version every 250 ms; the first try may come first.
    let sip = s.sip_addr();
    let phone = wait_for("3001 registers", Duration::from_secs(5), || {
        std::panic::catch_unwind(move || Phone::register(sip, "3001", "sip-pass-3001", Behaviour::AnswerAfter(Duration::from_millis(100)))).ok()
    });
    events.wait("3001 registered", Duration::from_secs(10), |e| e["type"] == "registration" && e["extension"] == "3001" && e["registered"] == true);
    let u = sys.get("/api/v1/users/3001").json();
    assert_eq!(u["registered"], true, "{u}");
    // A duplicate is refused by name.
    let r = sys.call("POST", "/api/v1/users", Some(&json!({ "extension": "3001", "name": "x" })));
    assert_eq!((r.status, r.json()["error"].clone()), (409, json!("extension 3001 already exists")));

    // CSV in Shift_JIS (as Excel writes it) with two bad rows: a dry run
    // names both with their row numbers, and nothing is stored.
    let text = "extension,name,department,password\r\n3002,佐藤 花子,市民課,\r\n30x3,鈴木 一郎,市民課,\r\n3004,高橋,市民課,\r\n3005,田中,存在しない課,\r\n";
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!bad);
    let r = sys.csv("/api/v1/users/import?dry_run=true", &sjis);
    assert_eq!(r.status, 422, "{}", r.text());
    let rows: Vec<(i64, String)> = r.json()["rows"].as_array().unwrap().iter().map(|x| (x["row"].as_i64().unwrap(), x["message"].as_str().unwrap().to_string())).collect();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 5], "{rows:?}");
    assert!(rows[0].1.contains("2 to 16 digits"), "{rows:?}");
    assert!(rows[1].1.contains("存在しない課"), "{rows:?}");
    // The same file for real: still all or nothing.
    assert_eq!(sys.csv("/api/v1/users/import", &sjis).status, 422);
    assert_eq!(sys.get("/api/v1/users").json().as_array().unwrap().len(), 1, "nothing half-written");
    // Fixed, with a UTF-8 BOM: a dry run says what would happen, then the import.
    let good = "\u{feff}extension,name,department,password\r\n3002,佐藤 花子,市民課,\r\n3004,高橋,市民課,pass-3004-x\r\n";
    let r = sys.csv("/api/v1/users/import?dry_run=true", good.as_bytes());
    assert_eq!(r.json()["would_import"], 2, "{}", r.text());
    assert_eq!(sys.get("/api/v1/users").json().as_array().unwrap().len(), 1, "a dry run stores nothing");
    let r = sys.csv("/api/v1/users/import", good.as_bytes());
    assert_eq!(r.json()["imported"], 2, "{}", r.text());
    let generated = r.json()["generated"].as_array().unwrap().clone();
    assert_eq!(generated.len(), 1, "a password is generated for the row without one");
    let pw3002 = generated[0]["sip_password"].as_str().unwrap().to_string();
    drop(Phone::register(s.sip_addr(), "3002", &pw3002, Behaviour::Ring));

    // Export: UTF-8 with a BOM, departments by name.
    let r = sys.get("/api/v1/users/export");
    assert!(r.body.starts_with("\u{feff}".as_bytes()));
    let csv = r.text();
    assert!(csv.contains("3002,佐藤 花子,市民課,main,"), "{csv}");
    assert!(r.header("content-disposition").unwrap().contains("users.csv"));

    // A forwarding change and a move between departments, in the audit log with before and after.
    let dep2 = department(&sys, "福祉課");
    assert_eq!(sys.call("PUT", "/api/v1/users/3001", Some(&json!({ "department": dep2 }))).status, 200);
    assert_eq!(sys.call("PUT", "/api/v1/users/3001/forwarding", Some(&json!({ "no_answer": "user:3002", "no_answer_secs": 15 }))).status, 200);
    let bad = sys.call("PUT", "/api/v1/users/3001/forwarding", Some(&json!({ "busy": "somewhere" })));
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().starts_with("busy:"), "{}", bad.text());
    let log = sys.get("/api/v1/audit").json();
    let moved = log.as_array().unwrap().iter().find(|e| e["action"] == "user_changed" && e["target"] == "3001").expect("user_changed in the audit log");
    assert_eq!(moved["before"]["department"], dep);
    assert_eq!(moved["after"]["department"], dep2);
    assert_eq!(moved["actor"], "root");
    let csv = sys.get("/api/v1/audit/export").text();
    assert!(csv.contains("forwarding_changed"), "{csv}");
    events.wait("the change event", Duration::from_secs(5), |e| e["type"] == "change" && e["resource"] == "forwarding");

    // A call between the two shows up live and in the call log, and its CSV.
    let from_ms = api::unix_now() as i64 * 1000 - 1000;
    let p3004 = Phone::register(s.sip_addr(), "3004", "pass-3004-x", Behaviour::Ring);
    let call = p3004.dial("3001", Duration::from_secs(10));
    assert_eq!(call.status(), 200);
    events.wait("call answered", Duration::from_secs(10), |e| e["type"] == "call" && e["state"] == "answered" && e["caller"] == "3004");
    p3004.hangup(&call);
    events.wait("call ended", Duration::from_secs(10), |e| e["type"] == "call" && e["state"] == "ended" && e["caller"] == "3004");
    let calls = wait_for("the call record", Duration::from_secs(10), || {
        let v = sys.get(&format!("/api/v1/calls?user=3001&from={from_ms}")).json();
        (v.as_array().unwrap().iter().any(|c| c["ended_at"].is_i64())).then_some(v)
    });
    assert_eq!(calls[0]["caller"], "3004");
    let csv = sys.get(&format!("/api/v1/calls/export?user=3001&from={from_ms}")).text();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].trim_start_matches('\u{feff}').starts_with("id,direction,caller,callee"));
    assert!(lines[1].contains(",3004,3001,"), "{csv}");
    // A date range before the call has none of it.
    let csv = sys.get(&format!("/api/v1/calls/export?user=3001&to={from_ms}")).text();
    assert_eq!(csv.lines().count(), 1, "{csv}");
    drop(phone);
}

#[test]
fn phonebook_for_apps_and_desk_phones() {
    let sb = Sandbox::new("admin-phonebook");
    let https_port = common::free_tcp_port();
    let https = format!("127.0.0.1:{https_port}");
    let s = Server::start_with_env(&sb, &[("TSUNAGU_HTTP_TLS_LISTEN", https.as_str())]);
    let sys = root(&s);
    let csv = "name,kana,number,department,note\r\n消防本部,ショウボウホンブ,03-1234-0119,防災,\r\n山田 太郎,ヤマダ タロウ,2001,市民課,\r\nA&B <商会>,エービー,0312345678,,\r\n";
    let r = sys.csv("/api/v1/phonebook/import", csv.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v0 = sys.get("/api/v1/phonebook").json()["version"].as_i64().unwrap();
    // Search by hiragana finds the katakana reading.
    let hits = sys.get("/api/v1/phonebook?q=%E3%82%84%E3%81%BE%E3%81%A0").json(); // やまだ
    assert_eq!(hits["entries"][0]["name"], "山田 太郎", "{hits}");
    // A delta since v0 names what changed and what went.
    let id = hits["entries"][0]["id"].as_i64().unwrap();
    assert_eq!(sys.call("DELETE", &format!("/api/v1/phonebook/{id}"), None).status, 204);
    let added = sys.call("POST", "/api/v1/phonebook", Some(&json!({ "name": "水道局", "number": "0312340200" })));
    assert_eq!(added.status, 201, "{}", added.text());
    let d = sys.get(&format!("/api/v1/phonebook?since={v0}")).json();
    assert_eq!(d["deleted"], json!([id]), "{d}");
    assert_eq!(d["entries"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["entries"][0]["name"], "水道局");
    // Bad rows are named; nothing changes.
    let r = sys.csv("/api/v1/phonebook/import", "name,number\r\n,123\r\nok,12x\r\n".as_bytes());
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["rows"].as_array().unwrap().len(), 2);

    // Desk phones: their SIP credentials over HTTP Basic.
    s.cli(&["user", "add", "2001", "--password", "desk-pass-2001"]);
    let none = request(s.http_addr(), "GET", "/phonebook.xml", &[], b"");
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").unwrap().starts_with("Basic"));
    use base64::Engine;
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("2001:nope"));
    assert_eq!(request(s.http_addr(), "GET", "/phonebook.xml", &[("Authorization", &wrong)], b"").status, 401);
    let right = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("2001:desk-pass-2001"));
    let xml = request(s.http_addr(), "GET", "/phonebook.xml", &[("Authorization", &right)], b"");
    assert_eq!(xml.status, 200);
    let text = xml.text();
    assert!(text.contains("<YealinkIPPhoneDirectory>"), "{text}");
    assert!(text.contains("<Name>A&amp;B &lt;商会&gt;</Name>"), "{text}");
    assert!(text.contains("<Telephone>0312340119</Telephone>"), "{text}");
    assert!(!text.contains("山田"), "the removed entry is gone: {text}");

    // The same over HTTPS (the SIP certificate), as desk phones are set up to fetch it.
    let curl = common::require_tool("curl", "curl");
    let cert = s.data.join("tls/dev-cert.pem");
    let url = format!("https://localhost:{https_port}/phonebook.xml?q=%E6%B0%B4%E9%81%93");
    let out = common::run_bounded(
        std::process::Command::new(&curl).args(["-sS", "--cacert"]).arg(&cert).args(["--resolve", &format!("localhost:{https_port}:127.0.0.1"), "-u", "2001:desk-pass-2001", &url]),
        Duration::from_secs(30),
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert!(body.contains("<Name>水道局</Name>") && !body.contains("消防"), "a search over HTTPS: {body}");

    // Guessing SIP passwords here counts towards the registrar's bans (10
    // failures for an extension): then even the right password is refused.
    s.cli(&["user", "add", "2002", "--password", "desk-pass-2002"]);
    let basic = |pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("2002:{pw}")));
    for i in 0..10 {
        assert_eq!(request(s.http_addr(), "GET", "/phonebook.xml", &[("Authorization", &basic(&format!("guess-{i}")))], b"").status, 401);
    }
    assert_eq!(request(s.http_addr(), "GET", "/phonebook.xml", &[("Authorization", &basic("desk-pass-2002"))], b"").status, 401, "2002 is banned now");
    assert_eq!(request(s.http_addr(), "GET", "/phonebook.xml", &[("Authorization", &right)], b"").status, 200, "other extensions are not");
}

#[test]
fn openapi_document_names_only_served_paths() {
    let sb = Sandbox::new("admin-openapi");
    let s = Server::start(&sb);
    let doc = request(s.http_addr(), "GET", "/api/openapi.json", &[], b"").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let sys = root(&s);
    let mut missing = Vec::new();
    for e in tsunagu_server::api::openapi::ENDPOINTS {
        assert!(doc["paths"][e.path][e.method].is_object(), "{} {} not in the document", e.method, e.path);
        if e.path == "/api/v1/session" && e.method == "delete" {
            continue; // would sign the test out
        }
        if e.path == "/api/v1/events" {
            continue; // a WebSocket: tested in the users test
        }
        let path = e.path.replace("{id}", "999999").replace("{ext}", "9999").replace("{number}", "99999").replace("{name}", "nobody").replace("{key}", "no_such_key").replace("{device}", "d").replace("{year}", "2026").replace("{kind}", "user");
        let empty = json!({});
        let r = sys.call(&e.method.to_uppercase(), &path, if e.method == "get" || e.method == "delete" { None } else { Some(&empty) });
        if r.status == 405 || r.text().contains("no such API path") {
            missing.push(format!("{} {path}: {} {}", e.method, r.status, r.text()));
        }
    }
    assert!(missing.is_empty(), "documented but not served:\n{}", missing.join("\n"));
    // Recording policy: which extensions, groups and numbers are recorded
    // with `recording_mode = selected`.
    s.cli(&["user", "add", "4001", "--password", "secret-pass-1"]);
    let r = sys.call("PUT", "/api/v1/recording-policy/user/4001", Some(&json!({ "record": true })));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sys.get("/api/v1/recording-policy").json()["flagged"], json!([{ "kind": "user", "key": "4001" }]));
    assert_eq!(sys.call("PUT", "/api/v1/recording-policy/room/4001", Some(&json!({ "record": true }))).status, 400);
    assert_eq!(sys.call("PUT", "/api/v1/recording-policy/user/4999", Some(&json!({ "record": true }))).status, 404);
    // The holidays the schedules use.
    let h = sys.get("/api/v1/holidays/2026").json();
    assert_eq!(h.as_array().unwrap().len(), 18, "{h}");
    assert_eq!(h[0], json!({ "date": "2026-01-01", "name_ja": "元日", "name_en": "New Year's Day" }));
    assert_eq!(sys.get("/api/v1/holidays/2100").status, 400);
    // API tokens for scripts: made from a session, shown once, used without
    // cookie or CSRF header, in the audit log as the token, revoked at once.
    let r = sys.call("POST", "/api/v1/me/tokens", Some(&json!({ "label": "nightly sync", "days": 30 })));
    assert_eq!(r.status, 201, "{}", r.text());
    let (token, id) = (r.json()["token"].as_str().unwrap().to_string(), r.json()["id"].as_i64().unwrap());
    assert!(token.starts_with("tsu_"));
    let bearer = format!("Bearer {token}");
    let made = request(s.http_addr(), "POST", "/api/v1/departments", &[("Authorization", &bearer), ("Content-Type", "application/json")], br#"{"name":"script dept"}"#);
    assert_eq!(made.status, 201, "{}", made.text());
    let log = sys.get("/api/v1/audit?limit=5").json();
    let entry = log.as_array().unwrap().iter().find(|e| e["action"] == "department_added").unwrap();
    assert_eq!((entry["actor"].as_str(), entry["source"].as_str()), (Some("root"), Some(format!("127.0.0.1 (API token {id})").as_str())));
    let again = request(s.http_addr(), "POST", "/api/v1/me/tokens", &[("Authorization", &bearer), ("Content-Type", "application/json")], b"{}");
    assert_eq!(again.status, 403, "a token makes no tokens: {}", again.text());
    let listed = sys.get("/api/v1/me/tokens").json();
    let mine = listed.as_array().unwrap().iter().find(|t| t["id"] == id).expect("the token is listed");
    assert_eq!(mine["label"], "nightly sync");
    assert!(!listed.to_string().contains(&token), "the token itself is never listed");
    assert_eq!(sys.call("DELETE", &format!("/api/v1/me/tokens/{id}"), None).status, 204);
    assert_eq!(request(s.http_addr(), "GET", "/api/v1/users", &[("Authorization", &bearer)], b"").status, 401);
    assert_eq!(request(s.http_addr(), "GET", "/api/v1/users", &[("Authorization", "Bearer tsu_0000")], b"").status, 401);

    // A live-event socket ends when its session does (signed out here).
    let mut events = Events::open(&sys).expect("event socket");
    assert_eq!(sys.call("DELETE", "/api/v1/session", None).status, 204);
    events.wait_closed(Duration::from_secs(15));

    // An unknown path is a JSON 404.
    let r = sys.get("/api/v1/nothing-here");
    assert_eq!((r.status, r.json()["code"].clone()), (404, json!("not_found")));
}

/// Bad input gets a status and a message naming the problem, in the API's
/// JSON shape, and changes nothing.
#[test]
fn bad_input_is_named_and_changes_nothing() {
    let sb = Sandbox::new("admin-bad-input");
    let s = Server::start(&sb);
    let sys = root(&s);
    let cookie = format!("tsunagu_session={}", sys.cookie.clone().unwrap());
    let raw = |method: &str, path: &str, ctype: &str, body: &[u8]| {
        request(s.http_addr(), method, path, &[("Cookie", &cookie), ("X-CSRF-Token", &sys.csrf), ("Content-Type", ctype)], body)
    };
    let check = |a: api::Answer, status: u16, needle: &str| {
        assert_eq!(a.status, status, "{}", a.text());
        let msg = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
    };
    check(raw("POST", "/api/v1/users", "application/json", b"not json"), 400, "JSON");
    check(raw("POST", "/api/v1/users", "application/json", br#"{"name":"x"}"#), 400, "extension");
    check(sys.call("POST", "/api/v1/users", Some(&json!({ "extension": "12a" }))), 400, "2 to 16 digits");
    check(sys.call("POST", "/api/v1/users", Some(&json!({ "extension": "1001", "password": "short" }))), 400, "8 to 128");
    check(sys.call("POST", "/api/v1/users", Some(&json!({ "extension": "1001", "department": 42 }))), 400, "department");
    check(sys.call("PUT", "/api/v1/groups/3000", Some(&json!({ "strategy": "random", "members": ["user:1001"] }))), 400, "random");
    check(sys.call("PUT", "/api/v1/dids/abc", Some(&json!({ "dest": "user:1001" }))), 400, "2 to 20 digits");
    check(sys.call("PUT", "/api/v1/dids/0312340000", Some(&json!({ "dest": "mars:1" }))), 400, "mars");
    check(sys.call("PUT", "/api/v1/schedules/main", Some(&json!({ "hours": "every day", "open": "user:1001", "closed": "user:1001" }))), 400, "every day");
    check(sys.call("PUT", "/api/v1/settings/disaster_mode", Some(&json!({ "value": "maybe" }))), 400, "on or off");
    check(sys.call("PUT", "/api/v1/settings/no_such", Some(&json!({ "value": "1" }))), 400, "unknown setting");
    check(sys.call("POST", "/api/v1/admins", Some(&json!({ "name": "x y", "role": "system" }))), 400, "admin name");
    check(sys.call("POST", "/api/v1/admins", Some(&json!({ "name": "xy", "role": "emperor" }))), 400, "emperor");
    // Files: not text, not CSV, too large.
    check(raw("POST", "/api/v1/users/import", "text/csv", &[0xff, 0xfe, 0x00, 0x41, 0x00, 0x0a]), 400, "UTF");
    check(raw("POST", "/api/v1/users/import", "text/csv", b""), 400, "empty");
    check(raw("POST", "/api/v1/users/import", "text/csv", b"name,phone\r\nx,1\r\n"), 422, "extension");
    let big = vec![b'a'; 33 << 20];
    check(raw("POST", "/api/v1/phonebook/import", "text/csv", &big), 413, "32 MiB");
    // Nothing of that was stored.
    assert_eq!(sys.get("/api/v1/users").json(), json!([]));
    assert_eq!(sys.get("/api/v1/dids").json(), json!([]));
    assert_eq!(sys.get("/api/v1/schedules").json(), json!([]));
    assert_eq!(sys.get("/api/v1/admins").json().as_array().unwrap().len(), 1);
    // And the server is still there.
    assert_eq!(common::http_get(s.http_addr(), "/healthz", Duration::from_secs(5)).unwrap().0, 200);
}
