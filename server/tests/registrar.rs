//! The registrar against a real SQLite store, without sockets: REGISTER
//! requests are built as text, answered through the responder channel.

use std::net::SocketAddr;
use std::sync::Arc;
use tsunagu_server::config::{SecurityConfig, SipConfig};
use tsunagu_server::registrar::Registrar;
use tsunagu_server::sip::endpoint::Responder;
use tsunagu_sip::transaction::TxKey;
use tsunagu_server::store::{SqliteStore, Store, User};
use tsunagu_sip::digest::{answer_challenge, parse_challenge, StoredCredentials};
use tsunagu_sip::transaction::server_key;
use tsunagu_sip::{parse_message, Framing, Limits, Message, Name, Peer, Request, Response, TransportKind};

struct Harness {
    registrar: Arc<Registrar>,
    store: Arc<SqliteStore>,
    responder: Responder,
    rx: tokio::sync::mpsc::UnboundedReceiver<(TxKey, Response)>,
    _dir: tempfile::TempDir,
    cseq: u32,
}

fn peer() -> Peer {
    Peer { addr: "127.0.0.1:40000".parse::<SocketAddr>().unwrap(), transport: TransportKind::Udp, flow: 0 }
}

impl Harness {
    async fn new(security: SecurityConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path(), "tsunagu").await.unwrap());
        for ext in ["1001", "1002"] {
            store
                .add_user(User { extension: ext.into(), name: ext.into(), credentials: StoredCredentials::from_password(ext, "tsunagu", "right-password") })
                .await
                .unwrap();
        }
        let (registrar, _persist) = Registrar::new(SipConfig::default(), security, "tsunagu".into(), store.clone()).await.unwrap();
        let (responder, rx) = Responder::channel();
        Harness { registrar, store, responder, rx, _dir: dir, cseq: 0 }
    }

    fn request(&mut self, ext: &str, extra: &str) -> Request {
        self.cseq += 1;
        let text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{ext}-{c};rport\r\nFrom: <sip:{ext}@127.0.0.1>;tag=f{c}\r\nTo: <sip:{ext}@127.0.0.1>\r\nCall-ID: reg-{ext}\r\nCSeq: {c} REGISTER\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
            c = self.cseq
        );
        match parse_message(text.as_bytes(), Framing::Datagram, &Limits::default()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    async fn send(&mut self, req: Request) -> Option<Response> {
        let key = server_key(&req);
        self.registrar.handle_register(req, key, peer(), &self.responder);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), self.rx.recv()).await;
        match got {
            Ok(Some((_, response))) => Some(response),
            _ => None,
        }
    }

    /// REGISTER, take the 401, answer its first challenge with `password`.
    async fn register(&mut self, ext: &str, password: &str, extra: &str) -> Response {
        let first = self.request(ext, extra);
        let challenge = self.send(first).await.expect("a 401");
        assert_eq!(challenge.code, 401);
        let www = challenge.headers.get_raw(&Name::WWW_AUTHENTICATE).next().unwrap().to_string();
        let ch = parse_challenge(&www).unwrap();
        let auth = answer_challenge(&ch, "REGISTER", "sip:127.0.0.1", ext, password, "cn0nce", 1).unwrap();
        let second = self.request(ext, &format!("{extra}Authorization: {auth}\r\n"));
        self.send(second).await.expect("an answer")
    }
}

fn contacts(r: &Response) -> Vec<String> {
    r.headers.get_raw(&Name::CONTACT).map(|v| v.to_string()).collect()
}

#[tokio::test]
async fn several_devices_per_extension_each_keyed_by_instance() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    let a = "Contact: <sip:1001@10.0.0.1:5060>;+sip.instance=\"<urn:uuid:aaaa>\";reg-id=1\r\nSupported: outbound\r\nExpires: 600\r\n";
    let b = "Contact: <sip:1001@10.0.0.2:5060;pn-provider=apns;pn-prid=tok123;pn-param=ABCD.com.example.voip>;+sip.instance=\"<urn:uuid:bbbb>\";reg-id=1\r\nExpires: 600\r\n";
    let r = h.register("1001", "right-password", a).await;
    assert_eq!(r.code, 200);
    assert!(r.headers.get_raw(&Name::REQUIRE).any(|v| v.contains("outbound")), "outbound flow acknowledged");
    let r = h.register("1001", "right-password", b).await;
    assert_eq!(contacts(&r).len(), 2, "both devices listed: {:?}", contacts(&r));
    // The same device re-registering from a new address replaces its binding.
    let a2 = a.replace("10.0.0.1", "10.0.0.9");
    let r = h.register("1001", "right-password", &a2).await;
    let c = contacts(&r);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().any(|c| c.contains("10.0.0.9")) && !c.iter().any(|c| c.contains("10.0.0.1:")), "{c:?}");
    // Push parameters are kept with the binding.
    let bs = h.registrar.bindings("1001");
    let apns = bs.iter().find(|b| b.contact.pn_provider.as_deref() == Some("apns")).expect("push binding");
    assert_eq!(apns.contact.pn_prid.as_deref(), Some("tok123"));
    assert_eq!(apns.contact.pn_param.as_deref(), Some("ABCD.com.example.voip"));
    // ... and reach the store.
    h.registrar.persist_all().await.unwrap();
    let stored = h.store.list_bindings().await.unwrap();
    assert!(stored.iter().any(|b| b.pn_prid.as_deref() == Some("tok123")));
}

#[tokio::test]
async fn too_brief_interval_gets_423_with_min_expires_and_changes_nothing() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    let r = h.register("1001", "right-password", "Contact: <sip:1001@10.0.0.1>\r\nExpires: 10\r\n").await;
    assert_eq!(r.code, 423);
    assert_eq!(r.headers.get_raw(&Name::MIN_EXPIRES).next().map(|v| v.to_string()).as_deref(), Some("60"));
    assert!(h.registrar.bindings("1001").is_empty());
    // Over the maximum: accepted, capped.
    let r = h.register("1001", "right-password", "Contact: <sip:1001@10.0.0.1>\r\nExpires: 999999\r\n").await;
    assert_eq!(r.code, 200);
    assert!(contacts(&r)[0].ends_with(";expires=7200"), "{:?}", contacts(&r));
}

#[tokio::test]
async fn expires_zero_and_star_remove_bindings() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    h.register("1001", "right-password", "Contact: <sip:1001@10.0.0.1>, <sip:1001@10.0.0.2>\r\n").await;
    assert_eq!(h.registrar.bindings("1001").len(), 2);
    let r = h.register("1001", "right-password", "Contact: <sip:1001@10.0.0.1>;expires=0\r\n").await;
    assert_eq!(contacts(&r).len(), 1);
    let r = h.register("1001", "right-password", "Contact: *\r\nExpires: 0\r\n").await;
    assert_eq!(r.code, 200);
    assert!(contacts(&r).is_empty());
    assert!(h.registrar.bindings("1001").is_empty());
    // '*' without Expires: 0 is refused before any challenge.
    let req = h.request("1001", "Contact: *\r\n");
    assert_eq!(h.send(req).await.unwrap().code, 400);
}

#[tokio::test]
async fn a_query_lists_bindings_without_changing_them() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    h.register("1001", "right-password", "Contact: <sip:1001@10.0.0.1>\r\n").await;
    let r = h.register("1001", "right-password", "").await;
    assert_eq!(r.code, 200);
    assert_eq!(contacts(&r).len(), 1);
}

#[tokio::test]
async fn wrong_password_unknown_user_and_foreign_extension_get_the_same_403() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    let wrong = h.register("1001", "wrong-password", "Contact: <sip:1001@10.0.0.1>\r\n").await;
    let unknown = h.register("1999", "right-password", "Contact: <sip:1999@10.0.0.1>\r\n").await;
    assert_eq!((wrong.code, unknown.code), (403, 403));
    let names = |r: &Response| r.headers.iter().map(|(n, _)| n.as_print_str().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&wrong), names(&unknown));
    assert_eq!(wrong.reason, unknown.reason);
    assert!(h.registrar.bindings("1001").is_empty() && h.registrar.bindings("1999").is_empty());
    // 1002's password cannot register 1001.
    let first = h.request("1001", "Contact: <sip:1001@10.0.0.1>\r\n");
    let ch = h.send(first).await.unwrap();
    let www = ch.headers.get_raw(&Name::WWW_AUTHENTICATE).next().unwrap().to_string();
    let auth = answer_challenge(&parse_challenge(&www).unwrap(), "REGISTER", "sip:127.0.0.1", "1002", "right-password", "c", 1).unwrap();
    let req = h.request("1001", &format!("Contact: <sip:1001@10.0.0.1>\r\nAuthorization: {auth}\r\n"));
    assert_eq!(h.send(req).await.unwrap().code, 403);
}

#[tokio::test]
async fn repeated_failures_ban_the_source_then_silence() {
    let sec = SecurityConfig { max_failures_per_source: 3, max_failures_per_extension: 100, failure_window_secs: 60, ban_secs: 300 };
    let mut h = Harness::new(sec).await;
    for _ in 0..3 {
        assert_eq!(h.register("1001", "wrong-password", "Contact: <sip:1001@10.0.0.1>\r\n").await.code, 403);
    }
    // Banned: even a fresh attempt from this source gets no answer.
    let req = h.request("1001", "Contact: <sip:1001@10.0.0.1>\r\n");
    let key = server_key(&req);
    h.registrar.handle_register(req, key, peer(), &h.responder);
    assert!(h.rx.try_recv().is_err(), "a banned source must get silence");
}

#[tokio::test]
async fn sha256_is_accepted_too() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    let first = h.request("1002", "Contact: <sip:1002@10.0.0.1>\r\n");
    let ch = h.send(first).await.unwrap();
    let sha = ch.headers.get_raw(&Name::WWW_AUTHENTICATE).map(|v| v.to_string()).find(|v| v.contains("SHA-256")).expect("SHA-256 offered");
    let auth = answer_challenge(&parse_challenge(&sha).unwrap(), "REGISTER", "sip:127.0.0.1", "1002", "right-password", "c", 1).unwrap();
    let req = h.request("1002", &format!("Contact: <sip:1002@10.0.0.1>\r\nAuthorization: {auth}\r\n"));
    assert_eq!(h.send(req).await.unwrap().code, 200);
}

#[tokio::test]
async fn a_user_added_after_start_registers_at_once() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    h.store
        .add_user(User { extension: "1003".into(), name: String::new(), credentials: StoredCredentials::from_password("1003", "tsunagu", "new-user-pw") })
        .await
        .unwrap();
    // No refresh: the cache miss goes to the store.
    assert_eq!(h.register("1003", "new-user-pw", "Contact: <sip:1003@10.0.0.3>\r\n").await.code, 200);
    // Removed users lose their bindings on the next refresh.
    h.store.remove_user("1003").await.unwrap();
    h.registrar.refresh_users().await.unwrap();
    assert!(h.registrar.bindings("1003").is_empty());
    assert_eq!(h.register("1003", "new-user-pw", "Contact: <sip:1003@10.0.0.3>\r\n").await.code, 403);
}

#[tokio::test]
async fn listed_user_agents_are_offered_md5_only() {
    let mut h = Harness::new(SecurityConfig::default()).await;
    let req = h.request("1001", "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n");
    let r = h.send(req).await.unwrap();
    let offered: Vec<String> = r.headers.get_raw(&Name::WWW_AUTHENTICATE).map(|v| v.to_string()).collect();
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert!(offered[0].contains("algorithm=MD5"));
    let req = h.request("1001", "User-Agent: Linphone/5.1\r\n");
    assert_eq!(h.send(req).await.unwrap().headers.get_raw(&Name::WWW_AUTHENTICATE).count(), 2);
}
