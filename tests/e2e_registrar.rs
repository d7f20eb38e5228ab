//! End-to-end tests of the registrar with real SIP peers (SIPp, baresip) and
//! raw SIP over UDP/TCP, against the `tsunagu` binary.
//!
//! Needs `sipp` (Debian `sip-tester`) and `baresip` on PATH; the tests fail
//! with a clear message when they are missing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Passwords for the bulk users: no ';', ']' or spaces (SIPp CSV).
fn bulk_password(ext: u32) -> String {
    format!("Pw{ext}x{:05}", (ext * 7919) % 10007)
}

/// SIPp registers `n` distinct extensions with digest auth; all must get 200
/// and then show up in `tsunagu user list` with SIPp's contact.
fn sipp_bulk_register(name: &str, transport: &str) {
    let n: u32 = 1000;
    let first: u32 = 2000;
    let sb = Sandbox::new(name);
    let server = Server::start(&sb);

    let exts: Vec<u32> = (first..first + n).collect();
    import_users(&sb, exts.iter().copied(), bulk_password);
    let before = server.user_list();
    assert_eq!(
        before
            .iter()
            .filter(|u| u
                .ext
                .parse::<u32>()
                .map(|e| e >= first && e < first + n)
                .unwrap_or(false))
            .count(),
        n as usize,
        "user import did not create the {n} users"
    );

    let users: Vec<(String, String)> = exts
        .iter()
        .map(|e| (e.to_string(), bulk_password(*e)))
        .collect();
    let inf = sb.file("sipp-users.csv");
    write_sipp_auth_csv(&inf, &users);

    let r = run_sipp(
        sb.path(),
        server.sip_addr(),
        &sipp_file("register_auth.xml"),
        &inf,
        transport,
        n,
        200,
    );
    assert!(
        r.status.success() && r.successful == n as u64 && r.failed == 0,
        "SIPp ({transport}): {} successful, {} failed, {} retransmissions, exit {}\n{}",
        r.successful,
        r.failed,
        r.retransmissions,
        r.status,
        r.report
    );
    eprintln!(
        "[e2e] SIPp {transport}: {} REGISTER flows OK, {} retransmissions",
        r.successful, r.retransmissions
    );

    // The server writes bindings to the store in batches, a moment after
    // each 200: poll `user list` until all are there (bounded).
    let missing_in = |list: &[UserEntry]| -> Vec<String> {
        let mut missing = Vec::new();
        for e in &exts {
            let ext = e.to_string();
            let u = find_user(list, &ext).unwrap_or_else(|| panic!("{ext} missing from user list"));
            let ok = u.contacts.iter().any(|c| {
                c.uri.starts_with(&format!("sip:{ext}@127.0.0.1:"))
                    && c.expires.map(|x| x > 0).unwrap_or(false)
            });
            if !ok {
                missing.push(format!("{ext}: {:?}", u.contacts));
            }
        }
        missing
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (list, missing) = loop {
        let list = server.user_list();
        let missing = missing_in(&list);
        if missing.is_empty() || Instant::now() >= deadline {
            break (list, missing);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        missing.is_empty(),
        "{} of {n} extensions have no binding after SIPp ({transport}); first: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Each AOR was registered once with one contact.
    let extra: Vec<_> = exts
        .iter()
        .filter_map(|e| find_user(&list, &e.to_string()).filter(|u| u.contacts.len() != 1))
        .map(|u| format!("{}: {:?}", u.ext, u.contacts))
        .collect();
    assert!(
        extra.is_empty(),
        "extensions with more than one binding: {:?}",
        &extra[..extra.len().min(5)]
    );
}

/// Test 1: SIPp, UDP: 1,000 extensions register with digest auth.
#[test]
fn sipp_registers_1000_extensions_udp() {
    sipp_bulk_register("sipp-udp", "u1");
}

/// Test 2: SIPp, TCP (one connection): 1,000 extensions register with digest auth.
#[test]
fn sipp_registers_1000_extensions_tcp() {
    sipp_bulk_register("sipp-tcp", "t1");
}

/// Normalise a response for comparison: header names lower-cased (long
/// form), values with the per-request parts (extension, Call-ID, branch, tags,
/// nonce, opaque) replaced by placeholders. Sorted: the set matters, not the
/// order.
fn normalised(resp: &SipMsg, p: &ReqParams, ext: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|(n, val)| {
            let name = n.to_ascii_lowercase();
            if name == "date" || name == "timestamp" {
                return (name, "*".to_string());
            }
            let mut val = val
                .replace(&p.call_id, "<call-id>")
                .replace(&p.branch, "<branch>")
                .replace(&p.from_tag, "<from-tag>");
            val = val
                .replace(&format!("sip:{ext}@"), "sip:<ext>@")
                .replace(&format!("\"{ext}\""), "\"<ext>\"");
            val = mask_param(&val, "tag=");
            val = mask_param(&val, "nonce=");
            val = mask_param(&val, "opaque=");
            // CSeq numbers are the same in both flows; keep them.
            (name, val)
        })
        .collect();
    v.sort();
    v
}

/// Replace the value after `key` (quoted or token) with `*`.
fn mask_param(s: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').map(|e| e + 2).unwrap_or(rest.len());
            rest = &rest[end..];
        } else {
            let end = rest.find([';', ',', ' ', '>']).unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.push('*');
    }
    out.push_str(rest);
    out
}

/// Run REGISTER (no auth) -> 401 -> REGISTER with a digest for `password`.
/// Returns (params, 401, final answer).
fn register_with(
    c: &UdpClient,
    ext: &str,
    password: &str,
    contact: &str,
) -> (ReqParams, SipMsg, ReqParams, SipMsg) {
    let p1 = c.params();
    let r1 = c
        .transact(
            &register_request(&p1, ext, Some(contact), Some(3600), None),
            SIP_DEADLINE,
        )
        .unwrap_or_else(|e| panic!("REGISTER {ext}: {e}"));
    assert_eq!(
        r1.status(),
        Some(401),
        "REGISTER {ext} without credentials:\n{}",
        r1.text()
    );
    let ch = md5_challenge(&r1);
    let auth = digest_authorization(&ch, ext, password, "REGISTER", &format!("sip:{}", c.server));
    let mut p2 = p1.clone();
    p2.next();
    let r2 = c
        .transact(
            &register_request(&p2, ext, Some(contact), Some(3600), Some(&auth)),
            SIP_DEADLINE,
        )
        .unwrap_or_else(|e| panic!("REGISTER {ext} with credentials: {e}"));
    (p1, r1, p2, r2)
}

/// Test 3: A wrong password gets 401/403 and binds nothing; an unknown extension
/// gets exactly the same answers as a known one with a wrong password.
#[test]
fn wrong_password_and_unknown_extension_are_indistinguishable() {
    let sb = Sandbox::new("wrongpw");
    let server = Server::start(&sb);
    server.cli(&[
        "user",
        "add",
        "3001",
        "--password",
        "Right-3001-pw",
        "--name",
        "Known User",
    ]);

    let c = UdpClient::new(server.sip_addr());
    let contact = format!("sip:3001@{}", c.local);

    // The challenge: MD5 first (SIPp, older desk phones), then SHA-256.
    let (kp1, k401, kp2, kwrong) = register_with(&c, "3001", "not-the-password", &contact);
    let algs: Vec<String> = challenges(&k401).iter().map(|c| c.algorithm()).collect();
    assert_eq!(
        algs.first().map(String::as_str),
        Some("MD5"),
        "first challenge must be MD5:\n{}",
        k401.text()
    );
    assert!(
        algs.iter().any(|a| a == "SHA-256"),
        "no SHA-256 challenge offered:\n{}",
        k401.text()
    );
    for ch in challenges(&k401) {
        assert_eq!(ch.param("realm"), Some("tsunagu"), "realm of {:?}", ch);
    }

    let code = kwrong.status().unwrap();
    assert!(
        code == 401 || code == 403,
        "wrong password answered {code}:\n{}",
        kwrong.text()
    );
    if code != 403 {
        eprintln!("[e2e] note: wrong password answered {code}; the CLI contract says 403");
    }

    let list = server.user_list();
    let u = find_user(&list, "3001").expect("3001 in user list");
    assert!(
        u.contacts.is_empty(),
        "a wrong password created a binding: {:?}",
        u.contacts
    );

    // Unknown extension, same flow from the same socket.
    let ucontact = format!("sip:3999@{}", c.local);
    let (up1, u401, up2, uwrong) = register_with(&c, "3999", "not-the-password", &ucontact);

    assert_eq!(
        k401.start_line, u401.start_line,
        "401 status lines differ (known vs unknown extension)"
    );
    assert_eq!(
        normalised(&k401, &kp1, "3001"),
        normalised(&u401, &up1, "3999"),
        "the 401 challenge tells a known extension from an unknown one:\n--- known ---\n{}\n--- unknown ---\n{}",
        k401.text(),
        u401.text()
    );
    assert_eq!(
        kwrong.start_line.as_bytes(),
        uwrong.start_line.as_bytes(),
        "status lines differ: wrong password {:?} vs unknown extension {:?}",
        kwrong.start_line,
        uwrong.start_line
    );
    assert_eq!(
        normalised(&kwrong, &kp2, "3001"),
        normalised(&uwrong, &up2, "3999"),
        "wrong password and unknown extension answers differ:\n--- wrong password ---\n{}\n--- unknown extension ---\n{}",
        kwrong.text(),
        uwrong.text()
    );
    assert_eq!(kwrong.body, uwrong.body, "bodies differ");

    let list = server.user_list();
    assert!(
        find_user(&list, "3999").is_none(),
        "unknown extension 3999 appeared in user list"
    );
    assert!(
        find_user(&list, "3001").unwrap().contacts.is_empty(),
        "3001 got a binding"
    );

    // Control: the right password works with the same client code, so the
    // 403s above are about the password, not about our digest.
    let (_, _, _, ok) = register_with(&c, "3001", "Right-3001-pw", &contact);
    assert_eq!(ok.status(), Some(200), "right password:\n{}", ok.text());
    let u = wait_binding(&server.data, "3001", Duration::from_secs(5), |ct| {
        ct.uri.starts_with(&contact)
    });
    assert_eq!(u.contacts.len(), 1, "{:?}", u.contacts);
}

/// baresip registers to `tsunagu demo` with one of the printed passwords and
/// shows up in `tsunagu user list`.
fn baresip_demo(name: &str, env: &[(&str, &str)]) {
    require_tool("baresip", "baresip");
    let sb = Sandbox::new(name);
    let (server, creds) = Server::start_demo_with_env(&sb, env);
    let exts: Vec<&str> = creds.iter().map(|(e, _)| e.as_str()).collect();
    let want: Vec<String> = (1001..=1010).map(|e: u32| e.to_string()).collect();
    assert_eq!(
        exts,
        want.iter().map(String::as_str).collect::<Vec<_>>(),
        "demo extensions"
    );
    let list = server.user_list();
    for e in &want {
        assert!(
            find_user(&list, e).is_some(),
            "demo extension {e} not in user list"
        );
    }

    let (ext, pw) = &creds[0];
    let (mut bs, port, log) = start_baresip(&sb, server.sip_addr(), ext, pw);
    let deadline = Instant::now() + Duration::from_secs(20);
    let want_host = format!("@127.0.0.1:{port}");
    let u = loop {
        if let Some(st) = bs.exited() {
            panic!(
                "baresip exited ({st}) before registering; log:\n{}",
                tail(&log, 40)
            );
        }
        let list = server.user_list();
        if let Some(u) =
            find_user(&list, ext).filter(|u| u.contacts.iter().any(|c| c.uri.contains(&want_host)))
        {
            break u.clone();
        }
        if Instant::now() >= deadline {
            let blog = tail(&log, 40);
            let hint = if blog.contains("Function not implemented") {
                "\nHINT: baresip 1.0.0 (libre) gives up with ENOSYS when any WWW-Authenticate \
                 challenge uses an algorithm other than MD5: the server's SHA-256 challenge \
                 next to the MD5 one makes the whole registration fail."
            } else {
                ""
            };
            panic!("baresip's binding for {ext} did not appear within 20 s; baresip log:\n{blog}{hint}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("[e2e] baresip bound: {:?}", u.contacts);
    // Nothing else got registered.
    let list = server.user_list();
    for e in want.iter().skip(1) {
        assert!(
            find_user(&list, e).unwrap().contacts.is_empty(),
            "{e} has a binding"
        );
    }
    drop(bs);
}

/// Test 4: baresip (Debian's 1.0.0) registers to `tsunagu demo`, default config.
#[test]
fn baresip_registers_to_demo() {
    baresip_demo("baresip", &[]);
}

/// Test 4b: The same with only MD5 offered (TSUNAGU_SIP_DIGEST_ALGORITHMS=MD5):
/// tells a digest-algorithm problem from any other registration problem.
#[test]
fn baresip_registers_to_demo_md5_only() {
    baresip_demo("baresip-md5", &[("TSUNAGU_SIP_DIGEST_ALGORITHMS", "MD5")]);
}

/// Test 5: A registration survives a restart of the server.
#[test]
fn registration_survives_restart() {
    let sb = Sandbox::new("restart");
    let mut server = Server::start(&sb);
    server.cli(&["user", "add", "5001", "--password", "Restart-5001"]);

    let c = UdpClient::new(server.sip_addr());
    let contact = format!("sip:5001@{};transport=udp", c.local);
    let r = udp_register(&c, "5001", "Restart-5001", Some(&contact), Some(3600));
    assert_eq!(r.status(), Some(200), "REGISTER:\n{}", r.text());
    let needle = format!("sip:5001@{}", c.local);
    wait_binding(&server.data, "5001", Duration::from_secs(5), |ct| {
        ct.uri.starts_with(&needle)
    });

    let st = server.stop();
    eprintln!("[e2e] server stopped with {st}");

    // Offline: the CLI still sees the binding in the database.
    let list = user_list(&sb.data());
    let u = find_user(&list, "5001").expect("5001 after stop");
    assert!(
        u.contacts.iter().any(|ct| ct.uri.starts_with(&needle)),
        "binding lost at stop: {:?}",
        u.contacts
    );

    let mut server2 = Server::start(&sb);
    let list = server2.user_list();
    let u = find_user(&list, "5001").expect("5001 after restart");
    let b = u
        .contacts
        .iter()
        .find(|ct| ct.uri.starts_with(&needle))
        .unwrap_or_else(|| panic!("binding lost across restart: {:?}", u.contacts));
    assert!(
        b.expires.map(|e| e > 0 && e <= 3600).unwrap_or(false),
        "expires after restart: {}",
        b.line
    );

    let c2 = UdpClient::new(server2.sip_addr());
    let o = c2.options().expect("OPTIONS after restart");
    assert_eq!(
        o.status(),
        Some(200),
        "OPTIONS after restart:\n{}",
        o.text()
    );

    // Lookup: a REGISTER without Contact (a query) lists the current bindings.
    let q = udp_register(&c2, "5001", "Restart-5001", None, None);
    assert_eq!(
        q.status(),
        Some(200),
        "REGISTER query after restart:\n{}",
        q.text()
    );
    let contacts = q.headers_named("contact").join(", ");
    assert!(
        contacts.contains(&needle),
        "the 200 to a REGISTER query after restart does not list the binding {needle}:\n{}",
        q.text()
    );
    server2.assert_running("after the restart checks");
}

/// Test 6: Every RFC 4475 torture message over UDP leaves the server up and
/// answering OPTIONS.
#[test]
fn rfc4475_torture_messages_over_udp() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rfc4475");
    let index = fs::read_to_string(dir.join("INDEX.tsv")).expect("tests/rfc4475/INDEX.tsv");
    let sb = Sandbox::new("rfc4475");
    let mut server = Server::start(&sb);
    let torture = UdpClient::new(server.sip_addr());
    let probe = UdpClient::new(server.sip_addr());

    let mut n = 0;
    let mut answers: BTreeMap<String, String> = BTreeMap::new();
    for row in index.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, section, bytes) = (cols[0], cols[1], cols[5]);
        let data = fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            data.len().to_string(),
            bytes,
            "{file} is not byte-exact (size)"
        );

        torture.send(&data);
        let o = probe.options().unwrap_or_else(|e| {
            panic!("after {file} (RFC 4475 {section}) the server does not answer OPTIONS: {e}")
        });
        assert_eq!(o.status(), Some(200), "OPTIONS after {file}:\n{}", o.text());
        server.assert_running(&format!("after {file} (RFC 4475 {section})"));

        // Record whatever came back to the torture socket (most answers go to
        // the Via of the message, not to us).
        torture
            .sock
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut buf = [0u8; 65536];
        while let Ok((k, _)) = torture.sock.recv_from(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..k])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            answers.insert(file.to_string(), line);
        }
        n += 1;
    }
    assert_eq!(n, 49, "INDEX.tsv lists {n} messages, expected 49");
    if !answers.is_empty() {
        eprintln!("[e2e] answers seen on the sending socket: {answers:#?}");
    }
}

/// A request with a given Content-Length line, for framing tests.
fn options_with_content_length(p: &ReqParams, cl: &str) -> String {
    options_request(p).replace(
        "Content-Length: 0\r\n",
        &format!("Content-Length: {cl}\r\n"),
    ) + "abcdef"
}

/// Test 7: A TCP connection with a broken frame is closed; another connection
/// opened before it keeps working.
#[test]
fn tcp_broken_frame_closes_only_that_connection() {
    let sb = Sandbox::new("tcpframe");
    let mut server = Server::start(&sb);

    let mut good = TcpClient::connect(server.sip_addr());
    let r = good.options().expect("OPTIONS on the good connection");
    assert_eq!(r.status(), Some(200), "{}", r.text());

    let cases: Vec<(&str, Vec<u8>)> = {
        let probe = TcpClient::connect(server.sip_addr());
        let p = probe.params();
        drop(probe);
        vec![
            (
                "negative Content-Length",
                options_with_content_length(&p, "-5").into_bytes(),
            ),
            (
                "non-numeric Content-Length",
                options_with_content_length(&p, "abc").into_bytes(),
            ),
            ("RFC 4475 ncl.dat (Content-Length: -999)", {
                fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rfc4475/ncl.dat"))
                    .unwrap()
            }),
            (
                "ASCII garbage instead of a request line",
                b"this is not a sip request line\r\n\r\n".to_vec(),
            ),
            (
                "binary garbage instead of a request line",
                b"\x16\x03\x01\x00\xa5garbage\xff\xfe\x00 not sip\r\n\r\n".to_vec(),
            ),
        ]
    };

    let mut failures = Vec::new();
    for (what, bytes) in cases {
        let mut bad = TcpClient::connect(server.sip_addr());
        bad.send(&bytes).expect("write broken frame");
        match bad.wait_closed(Duration::from_secs(5)) {
            Ok(before) => eprintln!(
                "[e2e] {what}: closed; got before close: {:?}",
                String::from_utf8_lossy(&before)
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            Err(got) => failures.push(format!(
                "{what}: connection still open 5 s after the broken frame (got {:?})",
                String::from_utf8_lossy(&got)
            )),
        }
        server.assert_running(&format!("after {what}"));
        let r = good
            .options()
            .unwrap_or_else(|e| panic!("good connection after {what}: {e}"));
        assert_eq!(
            r.status(),
            Some(200),
            "good connection after {what}:\n{}",
            r.text()
        );
    }

    // New connections are still accepted.
    let mut fresh = TcpClient::connect(server.sip_addr());
    let r = fresh.options().expect("OPTIONS on a fresh connection");
    assert_eq!(r.status(), Some(200), "{}", r.text());

    assert!(
        failures.is_empty(),
        "broken frames that did not close the connection:\n{}",
        failures.join("\n")
    );
}

/// CRLFCRLF keep-alive ping on TCP gets a CRLF pong (RFC 5626 §3.5.1), and
/// the connection keeps working.
#[test]
fn tcp_crlf_keepalive_is_answered() {
    let sb = Sandbox::new("keepalive");
    let server = Server::start(&sb);
    let mut c = TcpClient::connect(server.sip_addr());
    c.send(b"\r\n\r\n").unwrap();
    let got = c.read_raw(2, Duration::from_secs(5)).expect("pong");
    assert_eq!(got, b"\r\n", "answer to CRLFCRLF ping");
    let r = c.options().expect("OPTIONS after ping");
    assert_eq!(r.status(), Some(200), "{}", r.text());
}

/// OPTIONS over UDP and TCP, and the /metrics endpoint, on a fresh server.
#[test]
fn options_and_metrics_basic() {
    let sb = Sandbox::new("options");
    let server = Server::start(&sb);
    let u = UdpClient::new(server.sip_addr());
    let r = u.options().expect("OPTIONS over UDP");
    assert_eq!(r.status(), Some(200), "{}", r.text());
    let mut t = TcpClient::connect(server.sip_addr());
    let r = t.options().expect("OPTIONS over TCP");
    assert_eq!(r.status(), Some(200), "{}", r.text());
    let m = server.metrics();
    assert!(
        m.lines()
            .any(|l| !l.starts_with('#') && !l.trim().is_empty()),
        "/metrics is empty"
    );
}
