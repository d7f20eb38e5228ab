//! A small HTTP/1.1 client for the admin API: a session cookie, the CSRF
//! header, JSON and CSV bodies, the whole sign-in (password, TOTP
//! enrolment or code, new password), and a WebSocket reader for live
//! events. Plain std sockets with deadlines: nothing here can hang a test.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect to the HTTP port");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer before it has taken the whole body (413 for a
    // body over its limit, from the Content-Length alone) and close: the
    // rest of our write then fails (broken pipe, reset), but its answer
    // is already here to be read. Only no answer at all is a failure.
    let sent = s.write_all(body);
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    if buf.is_empty() {
        panic!("{method} {path}: no answer (sending the body: {sent:?}; reading: {read:?})");
    }
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: no HTTP head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = buf[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Answer { status, headers, body }
}

/// A signed-in (or signing-in) admin.
pub struct Admin {
    pub addr: SocketAddr,
    pub name: String,
    pub cookie: Option<String>,
    pub csrf: String,
    pub totp_secret: Option<String>,
    /// The last TOTP step used (a code works once).
    pub last_step: u64,
    pub password: String,
    /// Recovery codes from enrolment (each works once).
    pub recovery_codes: Vec<String>,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl Admin {
    pub fn new(addr: SocketAddr, name: &str, password: &str) -> Admin {
        Admin { addr, name: name.into(), cookie: None, csrf: String::new(), totp_secret: None, last_step: 0, password: password.into(), recovery_codes: Vec::new() }
    }

    /// A request with this admin's cookie and CSRF token.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let cookie = self.cookie.as_ref().map(|c| format!("tsunagu_session={c}")).unwrap_or_default();
        let mut h = vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", self.csrf.as_str())];
        if body.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        request(self.addr, method, path, &h, text.as_bytes())
    }

    pub fn csv(&self, path: &str, bytes: &[u8]) -> Answer {
        let cookie = self.cookie.as_ref().map(|c| format!("tsunagu_session={c}")).unwrap_or_default();
        request(self.addr, "POST", path, &[("Cookie", &cookie), ("X-CSRF-Token", &self.csrf), ("Content-Type", "text/csv")], bytes)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    /// A TOTP code not used before (a later step within the allowed skew
    /// when this one was used).
    /// None when both codes the server would take now (this step and
    /// the next) were used already.
    pub fn next_code(&mut self) -> Option<String> {
        let secret = self.totp_secret.clone().expect("enrolled");
        let now = unix_now();
        let step = (now / 30).max(self.last_step + 1);
        if step > now / 30 + 1 {
            return None;
        }
        self.last_step = step;
        tsunagu_server::api::accounts::totp_code(&secret, step * 30)
    }

    /// POST /session; answers the JSON and keeps the cookie.
    pub fn password_step(&mut self, password: &str) -> Answer {
        let body = serde_json::json!({ "name": self.name, "password": password });
        let a = request(self.addr, "POST", "/api/v1/session", &[("Content-Type", "application/json")], body.to_string().as_bytes());
        if a.status == 200 {
            let set = a.header("set-cookie").expect("a session cookie").to_string();
            self.cookie = Some(set.split(';').next().unwrap().trim_start_matches("tsunagu_session=").to_string());
            self.csrf = a.json()["csrf"].as_str().unwrap().to_string();
        }
        a
    }

    /// Every step of signing in, from a one-time password or a known one,
    /// enrolling TOTP when asked and choosing `new_password` when asked.
    pub fn sign_in(&mut self, new_password: &str) {
        let password = self.password.clone();
        let a = self.password_step(&password);
        assert_eq!(a.status, 200, "sign-in of {}: {}", self.name, a.text());
        let mut state = a.json()["state"].as_str().unwrap().to_string();
        for _ in 0..4 {
            let a = match state.as_str() {
                "ok" => return,
                "enrol" => {
                    let e = self.call("POST", "/api/v1/me/totp", None);
                    assert_eq!(e.status, 200, "{}", e.text());
                    self.totp_secret = Some(e.json()["secret"].as_str().unwrap().to_string());
                    let code = self.next_code().expect("a fresh secret has unused codes");
                    let c = self.call("POST", "/api/v1/me/totp/confirm", Some(&serde_json::json!({ "code": code })));
                    assert_eq!(c.json()["recovery_codes"].as_array().map(Vec::len), Some(10), "{}", c.text());
                    self.recovery_codes = c.json()["recovery_codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                    c
                }
                "mfa" => {
                    // Both current codes used: a recovery code instead.
                    let code = self.next_code().unwrap_or_else(|| self.recovery_codes.pop().expect("a recovery code left"));
                    self.call("POST", "/api/v1/session/totp", Some(&serde_json::json!({ "code": code })))
                }
                "password" => {
                    let c = self.call("POST", "/api/v1/me/password", Some(&serde_json::json!({ "current": self.password, "new": new_password })));
                    self.password = new_password.to_string();
                    c
                }
                other => panic!("unexpected sign-in state {other}"),
            };
            assert_eq!(a.status, 200, "sign-in step {state} of {}: {}", self.name, a.text());
            state = a.json()["state"].as_str().unwrap().to_string();
        }
        assert_eq!(state, "ok", "sign-in of {} did not finish", self.name);
    }
}

/// A WebSocket reading the live events as JSON.
pub struct Events {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Events {
    pub fn open(admin: &Admin) -> Result<Events, String> {
        let mut s = TcpStream::connect_timeout(&admin.addr, DEADLINE).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let cookie = admin.cookie.clone().unwrap_or_default();
        write!(
            s,
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: tsunagu_session={cookie}\r\n\r\n",
            admin.addr
        )
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let start = Instant::now();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if start.elapsed() > DEADLINE {
                return Err("no handshake answer".into());
            }
            let mut chunk = [0u8; 1024];
            match s.read(&mut chunk) {
                Ok(0) => return Err(format!("closed: {}", String::from_utf8_lossy(&buf))),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        Ok(Events { s, buf: buf[split + 4..].to_vec() })
    }

    /// The next text frame that satisfies `pred`, within `timeout`.
    pub fn wait(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            while let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                if let Some(text) = frame {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if pred(&v) {
                        return v;
                    }
                    seen.push(text);
                }
            }
            assert!(start.elapsed() < timeout, "no event {what} within {timeout:?}; saw {seen:?}");
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("the event socket closed while waiting for {what}; saw {seen:?}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }
}

impl Events {
    /// Wait until the server closes the socket (a close frame or EOF).
    pub fn wait_closed(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            while self.buf.len() >= 2 {
                if self.buf[0] & 0x0f == 8 {
                    return;
                }
                match parse_frame(&self.buf) {
                    Some((_, used)) => {
                        self.buf.drain(..used);
                    }
                    None => break,
                }
            }
            assert!(start.elapsed() < timeout, "the event socket stayed open for {timeout:?}");
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }
}

/// One server frame (unmasked): Some(text) for a text frame, None for
/// others, and the bytes it took.
fn parse_frame(b: &[u8]) -> Option<(Option<String>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if b[1] & 0x80 != 0 {
        at += 4;
    }
    if b.len() < at + len {
        return None;
    }
    let payload = &b[at..at + len];
    Some(((opcode == 1).then(|| String::from_utf8_lossy(payload).into_owned()), at + len))
}
