//! IVR menus through the admin API and the command line against a running
//! PBX: two menus made, read back as they were sent; a loop of sub-menus
//! refused with 422 and the loop named, with nothing changed; a menu in use
//! not removed; the audit log and the live change events; read-only
//! admins read but do not write.

mod common;
#[path = "common/api.rs"]
mod api;

use api::{Admin, Events};
use common::{cli, cli_unchecked, Sandbox, Server};
use serde_json::{json, Value};
use std::time::Duration;

const NEW_PW: &str = "a-long-new-password-1";

fn admin_cli(s: &Server, name: &str, role: &str) -> Admin {
    let out = cli(&s.data, &["admin", "add", name, "--role", role, "--rights", ""]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pw = text.lines().find_map(|l| l.strip_prefix("one-time password: ")).unwrap_or_else(|| panic!("no password in {text:?}")).trim().to_string();
    let mut a = Admin::new(s.http_addr(), name, &pw);
    a.sign_in(NEW_PW);
    a
}

/// The menu a GET answers for what was PUT: the same fields and the name.
fn with_name(body: &Value, name: &str) -> Value {
    let mut v = body.clone();
    v["name"] = json!(name);
    v
}

#[test]
fn ivr_menus_are_edited_checked_and_read_back() {
    let sb = Sandbox::new("ivr-admin");
    let s = Server::start(&sb);
    let sys = admin_cli(&s, "root", "system");
    let mut events = Events::open(&sys).expect("event socket");

    let sub = json!({
        "label": "住民票・証明書", "greeting": null, "prompt": "ivr-sub-choices",
        "invalid_prompt": "ivr-invalid", "timeout_prompt": "ivr-timeout",
        "first_digit_ms": 4000, "inter_digit_ms": 1500, "max_repeats": 2,
        "on_failure": "back", "direct_dial": false,
        "options": { "1": "user:1001", "2": "group:3000", "0": "repeat", "9": "back" },
    });
    let r = sys.call("PUT", "/api/v1/ivr/sub", Some(&sub));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["missing_announcements"].as_array().unwrap().iter().any(|a| a == "ivr-sub-choices"), "a prompt not recorded yet is named: {}", r.text());
    events.wait("the IVR change", Duration::from_secs(10), |e| e["type"] == "change" && e["resource"] == "ivr" && e["key"] == "sub");

    let main = json!({
        "label": "代表", "greeting": "ivr-welcome", "prompt": "ivr-main-choices",
        "invalid_prompt": "ivr-invalid", "timeout_prompt": "ivr-timeout",
        "first_digit_ms": 5000, "inter_digit_ms": 2000, "max_repeats": 3,
        "on_failure": "group:3000", "direct_dial": true,
        "options": { "1": "ivr:sub", "2": "schedule:main", "3": "announcement:hours", "#": "hangup" },
    });
    let r = sys.call("PUT", "/api/v1/ivr/main", Some(&main));
    assert_eq!(r.status, 200, "{}", r.text());

    // Read back as sent.
    assert_eq!(sys.get("/api/v1/ivr/main").json(), with_name(&main, "main"));
    assert_eq!(sys.get("/api/v1/ivr/sub").json(), with_name(&sub, "sub"));
    let all = sys.get("/api/v1/ivr").json();
    assert_eq!(all, json!([with_name(&main, "main"), with_name(&sub, "sub")]));
    // Defaults for what is left out.
    let r = sys.call("PUT", "/api/v1/ivr/small", Some(&json!({ "prompt": "ivr-small", "options": { "1": "user:1001" } })));
    assert_eq!(r.status, 200, "{}", r.text());
    let small = sys.get("/api/v1/ivr/small").json();
    assert_eq!(
        (small["first_digit_ms"].clone(), small["inter_digit_ms"].clone(), small["max_repeats"].clone(), small["on_failure"].clone(), small["invalid_prompt"].clone()),
        (json!(5000), json!(2000), json!(3), json!("hangup"), json!("ivr-invalid"))
    );

    // A loop: sub → main → sub. 422, the loop named, nothing changed.
    let mut looping = sub.clone();
    looping["options"]["3"] = json!("ivr:main");
    let r = sys.call("PUT", "/api/v1/ivr/sub", Some(&looping));
    assert_eq!((r.status, r.json()["code"].clone()), (422, json!("loop")), "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("sub → main → sub") && msg.contains("back"), "{msg}");
    // The menu that loops to itself.
    let mut selfish = main.clone();
    selfish["options"]["5"] = json!("ivr:main");
    let r = sys.call("PUT", "/api/v1/ivr/main", Some(&selfish));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("repeat"), "{}", r.text());
    // Other bad input: 400, named.
    let bad = |body: Value, needle: &str| {
        let r = sys.call("PUT", "/api/v1/ivr/other", Some(&body));
        assert_eq!(r.status, 400, "{}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
    };
    bad(json!({ "prompt": "p", "options": { "1": "ivr:nowhere" } }), "no IVR menu nowhere");
    bad(json!({ "prompt": "p", "options": { "12345": "user:1001" } }), "12345");
    bad(json!({ "prompt": "p", "options": { "1": "mars:1" } }), "option 1");
    bad(json!({ "prompt": "p", "options": { "1": "user:1001" }, "max_repeats": 0 }), "max_repeats");
    bad(json!({ "prompt": "p", "options": { "1": "user:1001" }, "on_failure": "repeat" }), "on_failure");
    bad(json!({ "prompt": "Bad Name", "options": { "1": "user:1001" } }), "prompt");
    bad(json!({ "prompt": "p" }), "no options");
    assert_eq!(sys.get("/api/v1/ivr/sub").json(), with_name(&sub, "sub"), "the refused saves changed nothing");
    assert_eq!(sys.get("/api/v1/ivr/main").json(), with_name(&main, "main"));
    assert_eq!(sys.get("/api/v1/ivr/other").status, 404);

    // A menu in use is not removed; the answer names what uses it.
    let r = sys.call("DELETE", "/api/v1/ivr/sub", None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("IVR menu main (option 1)"), "{}", r.text());
    let r = sys.call("PUT", "/api/v1/dids/0312345678", Some(&json!({ "dest": "ivr:main" })));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = sys.call("DELETE", "/api/v1/ivr/main", None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("number 0312345678"), "{}", r.text());

    // The command line sees the same menus, and refuses the same things.
    let out = cli(&s.data, &["ivr", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("main\t代表") && text.contains("1=ivr:sub"), "{text}");
    let out = cli(&s.data, &["ivr", "show", "sub"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("option 9: back"));
    let out = cli_unchecked(&s.data, &["ivr", "add", "sub", "--prompt", "p", "--option", "1=ivr:main"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sub → main → sub"), "{}", String::from_utf8_lossy(&out.stderr));
    cli(&s.data, &["ivr", "add", "fromcli", "--prompt", "p", "--option", "1=user:1001", "--option", "9=back", "--on-failure", "user:1002", "--max-repeats", "2"]);
    let made = sys.get("/api/v1/ivr/fromcli").json();
    assert_eq!((made["options"].clone(), made["on_failure"].clone(), made["max_repeats"].clone()), (json!({ "1": "user:1001", "9": "back" }), json!("user:1002"), json!(2)));

    // The audit log has each change with its before and after.
    let log = sys.get("/api/v1/audit?limit=50").json();
    let entries = log.as_array().unwrap();
    let added = entries.iter().find(|e| e["action"] == "ivr_added" && e["target"] == "main").expect("ivr_added main");
    assert_eq!(added["after"], with_name(&main, "main"));
    assert!(entries.iter().any(|e| e["action"] == "ivr_added" && e["target"] == "fromcli" && e["actor"] == "(command line)"));

    // Read-only admins read, and do not write.
    let ro = admin_cli(&s, "reader", "readonly");
    assert_eq!(ro.get("/api/v1/ivr").status, 200);
    assert_eq!(ro.call("PUT", "/api/v1/ivr/sub", Some(&sub)).status, 403);
    assert_eq!(ro.call("DELETE", "/api/v1/ivr/small", None).status, 403);

    // Removed once unused; the options go with the menu.
    assert_eq!(sys.call("DELETE", "/api/v1/dids/0312345678", None).status, 204);
    assert_eq!(sys.call("DELETE", "/api/v1/ivr/main", None).status, 204);
    assert_eq!(sys.call("DELETE", "/api/v1/ivr/sub", None).status, 204);
    assert_eq!(sys.get("/api/v1/ivr/sub").status, 404);
    assert_eq!(sys.call("DELETE", "/api/v1/ivr/sub", None).status, 404);
    let names: Vec<Value> = sys.get("/api/v1/ivr").json().as_array().unwrap().iter().map(|m| m["name"].clone()).collect();
    assert_eq!(names, vec![json!("fromcli"), json!("small")]);
}
