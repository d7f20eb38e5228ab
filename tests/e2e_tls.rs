//! End-to-end tests of SIP over TLS against the `tsunagu` binary.
//!
//! The server listens for TLS on its SIP port + 1 with a self-signed
//! development certificate it writes to `DATA/tls/dev-cert.pem` on first
//! start. These tests check that:
//!
//! * baresip (Debian's 1.0.0) registers over TLS and the binding shows up in
//!   `tsunagu user list` with `transport=tls`;
//! * a raw TLS client that *verifies* the development certificate for the
//!   name 127.0.0.1 (baresip 1.0.0 does not verify at all, see below) gets
//!   OPTIONS and digest REGISTER answered over TLS;
//! * plaintext SIP sent to the TLS port is refused (the connection is closed
//!   within a bounded time, no SIP answer, no binding), while TLS keeps working
//!   on an existing connection, on new connections, and for baresip.
//!
//! baresip 1.0.0 / libre 1.1.0 facts found on this machine: the account line
//! `<sip:EXT@127.0.0.1:TLSPORT;transport=tls>;auth_pass=PW;regint=600` is
//! enough (no `outbound`, no `sip_trans_def`); the config key `sip_cafile` is
//! accepted ("ua: adding SIP CA: ...") but libre does not verify the server
//! certificate: it registers with a wrong CA or none. `sip_verify_server`
//! does not exist in 1.0.0. baresip also listens for TLS on its own SIP port
//! + 1 and puts that port into its Contact.
//!
//! Needs `baresip` on PATH; the tests fail with a clear message when it is
//! missing.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::*;

/// How long baresip gets to show up in `tsunagu user list`.
const BARESIP_DEADLINE: Duration = Duration::from_secs(20);
/// How long the TLS port may keep a plaintext connection open.
const PLAINTEXT_CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// The server's SIP/TLS address: SIP port + 1 (the default of `tls_listen`).
fn tls_addr(server: &Server) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        server.sip_port.checked_add(1).expect("SIP port + 1"),
    )
}

/// The development certificate the server made on first start.
fn dev_cert(server: &Server) -> PathBuf {
    let p = server.data.join("tls").join("dev-cert.pem");
    assert!(
        p.is_file(),
        "the server is ready but did not write its development certificate {}",
        p.display()
    );
    let key = server.data.join("tls").join("dev-key.pem");
    assert!(
        key.is_file(),
        "no development key {} next to the certificate",
        key.display()
    );
    p
}

// ---------------------------------------------------------------------------
// baresip over TLS
// ---------------------------------------------------------------------------

/// True when a `user list` contact line is a live TLS binding.
fn is_tls_binding(c: &ContactLine) -> bool {
    c.line.split_whitespace().any(|f| f == "transport=tls") && c.expires.unwrap_or(0) > 0
}

/// Poll `tsunagu user list` until `ext` has a live binding with
/// `transport=tls` whose URI satisfies `uri_ok`; panics with the baresip and
/// server logs otherwise.
fn wait_baresip_tls_binding(
    server: &Server,
    bs: &mut ChildGuard,
    log: &Path,
    ext: &str,
    uri_ok: impl Fn(&str) -> bool,
) -> ContactLine {
    let deadline = Instant::now() + BARESIP_DEADLINE;
    loop {
        if let Some(st) = bs.exited() {
            panic!(
                "baresip exited ({st}) before registering {ext} over TLS; baresip log:\n{}",
                tail(log, 40)
            );
        }
        let list = server.user_list();
        let u = find_user(&list, ext)
            .unwrap_or_else(|| panic!("{ext} missing from `tsunagu user list`"));
        if let Some(c) = u
            .contacts
            .iter()
            .find(|c| is_tls_binding(c) && uri_ok(&c.uri))
        {
            return c.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "no live `transport=tls` binding of {ext} from baresip within {BARESIP_DEADLINE:?}; \
                 bindings seen: {:#?}\nbaresip log:\n{}\nserver log:\n{}",
                u.contacts,
                tail(log, 40),
                tail(&server.log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// baresip registers `ext` over TLS; returns the guard (keep it alive) and
/// the binding.
fn baresip_registers_tls(
    sb: &Sandbox,
    server: &Server,
    ext: &str,
    password: &str,
) -> (ChildGuard, ContactLine) {
    let cert = dev_cert(server);
    let (mut bs, port, log) = start_baresip_with(
        sb,
        tls_addr(server),
        ext,
        password,
        SipTransport::Tls,
        Some(&cert),
    );
    // baresip's contact over TLS is its own TLS listener: SIP port + 1.
    let want = format!("@127.0.0.1:{}", port + 1);
    let b = wait_baresip_tls_binding(server, &mut bs, &log, ext, |uri| uri.contains(&want));
    // baresip's own words: a 200 on the TLS transport ("EXT@HOST: {0/TLS/v4}
    // 200 OK ..."). Polled: the log is written independently of the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let blog = fs::read_to_string(&log).unwrap_or_default();
        if blog
            .lines()
            .any(|l| l.contains(&format!("{ext}@")) && l.contains("/TLS/") && l.contains(" 200 "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the binding is there but baresip did not log a 200 over TLS within 5 s; \
             baresip log:\n{}",
            tail(&log, 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("[e2e] baresip bound {ext} over TLS: {}", b.line);
    (bs, b)
}

// ---------------------------------------------------------------------------
// A raw SIP client over TLS (rustls, verifying the development certificate)
// ---------------------------------------------------------------------------

/// Client config trusting exactly the server's development certificate.
fn client_config(cert: &Path) -> Arc<ClientConfig> {
    let pem = fs::read(cert).unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{} is not PEM: {e}", cert.display()));
    assert!(!certs.is_empty(), "no certificate in {}", cert.display());
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .unwrap_or_else(|e| panic!("{} unusable as a trust anchor: {e}", cert.display()));
    }
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(cfg)
}

/// One TLS connection to the server's TLS port, speaking raw SIP.
struct TlsClient {
    tls: StreamOwned<ClientConnection, TcpStream>,
    server: SocketAddr,
    local: SocketAddr,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connect and complete the handshake (bounded), verifying the server's
    /// certificate for the name 127.0.0.1.
    fn connect(server: SocketAddr, cfg: Arc<ClientConfig>) -> Result<Self, String> {
        let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .map_err(|e| format!("TCP connect to {server}: {e}"))?;
        tcp.set_nodelay(true).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let local = tcp.local_addr().unwrap();
        let name = ServerName::IpAddress(server.ip().into());
        let conn = ClientConnection::new(cfg, name).map_err(|e| format!("TLS client: {e}"))?;
        let mut tls = StreamOwned::new(conn, tcp);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tls.conn.is_handshaking() {
            if Instant::now() >= deadline {
                return Err(format!("TLS handshake with {server} not done within 10 s"));
            }
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake with {server}: {e}"))?;
        }
        Ok(TlsClient {
            tls,
            server,
            local,
            buf: Vec::new(),
        })
    }

    /// Request parameters; Via says TLS.
    fn params(&self) -> ReqParams {
        ReqParams::new(Transport::Tcp, self.local, self.server)
    }

    fn send(&mut self, req: &str) -> Result<(), String> {
        // The harness writes `SIP/2.0/TCP` in Via; this is a TLS flow.
        let req = req.replacen("SIP/2.0/TCP ", "SIP/2.0/TLS ", 1);
        self.tls
            .write_all(req.as_bytes())
            .and_then(|_| self.tls.flush())
            .map_err(|e| format!("TLS write: {e}"))
    }

    fn read_msg(&mut self, timeout: Duration) -> Result<SipMsg, String> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some((m, used)) = SipMsg::parse(&self.buf) {
                self.buf.drain(..used);
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no complete SIP message within {timeout:?} (have {:?})",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            self.tls.sock.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 16384];
            match self.tls.read(&mut tmp) {
                Ok(0) => return Err("TLS connection closed by the server".into()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("TLS read: {e}")),
            }
        }
    }

    /// Send a request; return its final response (matched by Call-ID).
    fn transact(&mut self, req: &str, timeout: Duration) -> Result<SipMsg, String> {
        let (m, _) = SipMsg::parse(req.as_bytes()).expect("our own request parses");
        let cid = m.call_id().unwrap().to_string();
        let deadline = Instant::now() + timeout;
        self.send(req)?;
        loop {
            let r = self.read_msg(deadline.saturating_duration_since(Instant::now()))?;
            if r.status().map(|c| c >= 200).unwrap_or(false) && r.call_id() == Some(&cid) {
                return Ok(r);
            }
        }
    }

    fn options(&mut self) -> Result<SipMsg, String> {
        let req = options_request(&self.params());
        self.transact(&req, SIP_DEADLINE)
    }

    /// REGISTER with digest auth on this connection; the final response.
    fn register(&mut self, ext: &str, password: &str, contact: &str) -> Result<SipMsg, String> {
        let mut p = self.params();
        let r1 = self.transact(
            &register_request(&p, ext, Some(contact), Some(600), None),
            SIP_DEADLINE,
        )?;
        if r1.status() != Some(401) {
            return Ok(r1);
        }
        let ch = md5_challenge(&r1);
        let auth = digest_authorization(
            &ch,
            ext,
            password,
            "REGISTER",
            &format!("sip:{}", self.server),
        );
        p.next();
        self.transact(
            &register_request(&p, ext, Some(contact), Some(600), Some(&auth)),
            SIP_DEADLINE,
        )
    }
}

/// Contact URI for a raw TLS client.
fn tls_contact(ext: &str, c: &TlsClient) -> String {
    format!("sip:{ext}@{};transport=tls", c.local)
}

// ---------------------------------------------------------------------------
// Plaintext on the TLS port
// ---------------------------------------------------------------------------

/// Send `bytes` in plaintext to the TLS port; the connection must be closed
/// within PLAINTEXT_CLOSE_DEADLINE and nothing SIP may come back. Returns a
/// failure description, or None.
fn plaintext_refused(server: &mut Server, what: &str, bytes: &[u8]) -> Option<String> {
    let addr = tls_addr(server);
    let mut c = TcpClient::connect(addr);
    let sent_at = Instant::now();
    if let Err(e) = c.send(bytes) {
        // A reset while writing is a refusal too.
        eprintln!("[e2e] plaintext {what}: write failed ({e}): refused");
        server.assert_running(&format!("after plaintext {what} on the TLS port"));
        return None;
    }
    let res = c.wait_closed(PLAINTEXT_CLOSE_DEADLINE);
    let took = sent_at.elapsed();
    server.assert_running(&format!("after plaintext {what} on the TLS port"));
    let sent_line = String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    match res {
        Err(got) => Some(format!(
            "plaintext {what} ({sent_line:?}) to the TLS port {addr}: connection still open \
             {PLAINTEXT_CLOSE_DEADLINE:?} later; got meanwhile {:?}",
            String::from_utf8_lossy(&got)
        )),
        Ok(got) => {
            eprintln!(
                "[e2e] plaintext {what} to the TLS port: closed after {took:?}; got {} byte(s) \
                 before the close: {:02x?}",
                got.len(),
                &got[..got.len().min(16)]
            );
            let text = String::from_utf8_lossy(&got);
            if text.contains("SIP/2.0") {
                Some(format!(
                    "plaintext {what} ({sent_line:?}) to the TLS port {addr} got a plaintext SIP \
                     answer before the close:\n{text}"
                ))
            } else if !got.is_empty() && got[0] != 0x15 {
                Some(format!(
                    "plaintext {what} to the TLS port {addr}: the bytes before the close are \
                     neither empty nor a TLS alert record: {:02x?}",
                    &got[..got.len().min(32)]
                ))
            } else {
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Test 1: baresip registers over TLS to `tsunagu serve` and `tsunagu user
/// list` shows the binding with `transport=tls`.
#[test]
fn baresip_registers_over_tls() {
    require_tool("baresip", "baresip");
    let sb = Sandbox::new("tls-baresip");
    let server = Server::start(&sb);
    server.cli(&["user", "add", "7001", "--password", "Tls-7001-pw"]);
    server.cli(&["user", "add", "7002", "--password", "Tls-7002-pw"]);

    let (bs, b) = baresip_registers_tls(&sb, &server, "7001", "Tls-7001-pw");
    assert!(
        b.uri.contains("transport=tls"),
        "baresip's TLS contact has no transport=tls URI parameter: {}",
        b.line
    );

    // Exactly that binding, nothing for the other user.
    let list = server.user_list();
    let u = find_user(&list, "7001").unwrap();
    assert_eq!(u.contacts.len(), 1, "7001 bindings: {:#?}", u.contacts);
    assert!(
        find_user(&list, "7002").unwrap().contacts.is_empty(),
        "7002 got a binding: {:#?}",
        find_user(&list, "7002").unwrap().contacts
    );
    drop(bs);
}

/// Test 2: plaintext SIP on the TLS port is refused (closed within a bounded
/// time, no SIP answer, no binding); TLS keeps working on a connection opened
/// before, on new connections, and for baresip.
#[test]
fn tls_port_rejects_plaintext_and_tls_keeps_working() {
    require_tool("baresip", "baresip");
    let sb = Sandbox::new("tls-plaintext");
    let mut server = Server::start(&sb);
    server.cli(&["user", "add", "7101", "--password", "Tls-7101-pw"]);
    server.cli(&["user", "add", "7102", "--password", "Tls-7102-pw"]);
    server.cli(&["user", "add", "7103", "--password", "Tls-7103-pw"]);
    server.cli(&["user", "add", "7104", "--password", "Tls-7104-pw"]);
    let tls = tls_addr(&server);
    let cfg = client_config(&dev_cert(&server));

    // A TLS connection opened before the plaintext probes; the development
    // certificate verifies for 127.0.0.1.
    let mut before = TlsClient::connect(tls, cfg.clone()).unwrap_or_else(|e| {
        panic!("TLS client verifying DATA/tls/dev-cert.pem for 127.0.0.1: {e}")
    });
    let r = before
        .options()
        .unwrap_or_else(|e| panic!("OPTIONS over TLS: {e}"));
    assert_eq!(r.status(), Some(200), "OPTIONS over TLS:\n{}", r.text());

    // The plaintext probes. One is a REGISTER carrying valid credentials
    // (challenge fetched on the plain TCP port for the TLS request URI).
    let probe_params = ReqParams::new(Transport::Tcp, "127.0.0.1:5".parse().unwrap(), tls);
    let authed_register = {
        let mut tcp = TcpClient::connect(server.sip_addr());
        let p = ReqParams::new(Transport::Tcp, tcp.local, tls);
        let contact = format!("sip:7104@{}", tcp.local);
        let r1 = tcp
            .transact(
                &register_request(&p, "7104", Some(&contact), Some(600), None),
                SIP_DEADLINE,
            )
            .unwrap_or_else(|e| panic!("REGISTER 7104 on plain TCP: {e}"));
        assert_eq!(r1.status(), Some(401), "{}", r1.text());
        let auth = digest_authorization(
            &md5_challenge(&r1),
            "7104",
            "Tls-7104-pw",
            "REGISTER",
            &format!("sip:{tls}"),
        );
        let mut p2 = p.clone();
        p2.next();
        register_request(&p2, "7104", Some(&contact), Some(600), Some(&auth))
    };
    let probes: Vec<(&str, Vec<u8>)> = vec![
        ("OPTIONS", options_request(&probe_params).into_bytes()),
        (
            "REGISTER without credentials",
            register_request(
                &probe_params,
                "7104",
                Some("sip:7104@127.0.0.1:5"),
                Some(600),
                None,
            )
            .into_bytes(),
        ),
        (
            "REGISTER with valid credentials",
            authed_register.into_bytes(),
        ),
        ("CRLFCRLF keep-alive", b"\r\n\r\n".to_vec()),
    ];
    let mut failures: Vec<String> = probes
        .iter()
        .filter_map(|(what, bytes)| plaintext_refused(&mut server, what, bytes))
        .collect();

    // Nothing bound by plaintext.
    let list = server.user_list();
    let u = find_user(&list, "7104").expect("7104 in user list");
    if !u.contacts.is_empty() {
        failures.push(format!(
            "a plaintext REGISTER to the TLS port created a binding: {:#?}",
            u.contacts
        ));
    }
    // Reported at the end, after the TLS checks; shown now in case those panic.
    for f in &failures {
        eprintln!("[e2e] FAILURE (plaintext on the TLS port): {f}");
    }

    // The connection opened before still works, and registers.
    let r = before
        .options()
        .unwrap_or_else(|e| panic!("OPTIONS on the earlier TLS connection after the probes: {e}"));
    assert_eq!(r.status(), Some(200), "{}", r.text());
    let contact = tls_contact("7101", &before);
    let r = before
        .register("7101", "Tls-7101-pw", &contact)
        .unwrap_or_else(|e| panic!("REGISTER 7101 over TLS: {e}"));
    assert_eq!(
        r.status(),
        Some(200),
        "REGISTER 7101 over TLS:\n{}",
        r.text()
    );
    let u = wait_binding(&server.data, "7101", Duration::from_secs(10), |c| {
        c.uri == contact && is_tls_binding(c)
    });
    eprintln!("[e2e] raw TLS binding: {:?}", u.contacts);

    // A new TLS connection after the probes.
    let mut fresh = TlsClient::connect(tls, cfg)
        .unwrap_or_else(|e| panic!("new TLS connection after the plaintext probes: {e}"));
    let contact = tls_contact("7102", &fresh);
    let r = fresh
        .register("7102", "Tls-7102-pw", &contact)
        .unwrap_or_else(|e| panic!("REGISTER 7102 over a new TLS connection: {e}"));
    assert_eq!(
        r.status(),
        Some(200),
        "REGISTER 7102 over TLS:\n{}",
        r.text()
    );
    wait_binding(&server.data, "7102", Duration::from_secs(10), |c| {
        c.uri == contact && is_tls_binding(c)
    });

    // baresip too.
    let (bs, _) = baresip_registers_tls(&sb, &server, "7103", "Tls-7103-pw");

    // The plain TCP port is unaffected.
    let mut tcp = TcpClient::connect(server.sip_addr());
    let r = tcp.options().expect("OPTIONS on the plain TCP port");
    assert_eq!(r.status(), Some(200), "{}", r.text());
    server.assert_running("at the end");
    drop(bs);

    assert!(
        failures.is_empty(),
        "plaintext on the TLS port was not refused:\n{}",
        failures.join("\n")
    );
}
