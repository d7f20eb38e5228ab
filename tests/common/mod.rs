//! Harness for the end-to-end tests: start `tsunagu` on loopback in a temporary
//! data directory, drive its CLI, run third-party SIP peers (SIPp, baresip,
//! linphonec) and talk raw SIP over UDP and TCP.
//!
//! Submodules: `audio` (tone WAV files, reading what peers recorded, tone
//! detection), `baresip` (a headless baresip phone driven over ctrl_tcp),
//! `linphone` (a headless linphonec driven on stdin/stdout).
//!
//! Rules kept here: every wait is bounded (poll with a deadline, never a fixed
//! sleep), every port is picked free at run time, every child process is killed
//! in a Drop guard, and nothing but 127.0.0.1 is ever a traffic target.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

pub mod audio;
pub mod baresip;
pub mod linphone;
pub mod phone;
pub mod raw;
pub mod sipp;

/// The server binary under test.
pub const TSUNAGU: &str = env!("CARGO_BIN_EXE_tsunagu");

/// Loopback: the only address the tests ever send to.
pub const LOCALHOST: &str = "127.0.0.1";

/// How long a server gets to answer `GET /healthz` with 200 after start.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long a CLI command (`tsunagu user ...`) may run.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);
/// How long a raw SIP transaction waits for its final response.
pub const SIP_DEADLINE: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// A string unique in this machine for the life of the test run (Call-IDs,
/// tags, branches).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}{:x}{n:x}",
        std::process::id(),
        t & 0xffff_ffff_ffff
    )
}

/// Lower-case hex of the MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Fail with a clear message when a peer program is not installed.
pub fn require_tool(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed (needed by this end-to-end test). \
         Install it with: apt-get install -y {package}"
    );
}

/// Last `n` lines of a text file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Send SIGTERM (or another signal) to a process we started.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait for a child to exit, at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run a command to completion with a deadline, capturing its output (read
/// on threads, so a large output never blocks the child on a full pipe).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
    }
}

/// Kills (SIGKILL) and reaps the child when dropped: for SIPp, baresip, ...
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
}

impl ChildGuard {
    pub fn new(name: &str, child: Child) -> Self {
        ChildGuard {
            name: name.to_string(),
            child,
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Ports and temporary directories
// ---------------------------------------------------------------------------

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static S: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port P on 127.0.0.1 where UDP P, TCP P and TCP P+1 (TLS) are free right
/// now, and that no other test of this process was given. Another process can
/// still take it before we use it: callers retry on failure.
pub fn free_sip_port() -> u16 {
    for _ in 0..200 {
        let Ok(u) = UdpSocket::bind((LOCALHOST, 0)) else {
            continue;
        };
        let p = u.local_addr().unwrap().port();
        if p >= 65534 {
            continue;
        }
        let t0 = TcpListener::bind((LOCALHOST, p));
        let t1 = TcpListener::bind((LOCALHOST, p + 1));
        let u1 = UdpSocket::bind((LOCALHOST, p + 1));
        if t0.is_ok() && t1.is_ok() && u1.is_ok() {
            let mut set = handed_out().lock().unwrap();
            if set.insert(p) && set.insert(p + 1) {
                return p;
            }
        }
    }
    panic!("could not find a free SIP port on 127.0.0.1");
}

/// A free TCP port on 127.0.0.1 (for HTTP, control sockets).
pub fn free_tcp_port() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        if handed_out().lock().unwrap().insert(p) {
            return p;
        }
    }
    panic!("could not find a free TCP port on 127.0.0.1");
}

/// A temporary directory for one test: the server's data dir, logs, peer
/// configs. Kept (and its path printed) when the test fails.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tsunagu-e2e-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let path = dir.path().to_path_buf();
        fs::create_dir_all(path.join("data")).unwrap();
        Sandbox {
            dir: Some(dir),
            path,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The server's `--data` directory.
    pub fn data(&self) -> PathBuf {
        self.path.join("data")
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(d) = self.dir.take() {
                let p = d.keep();
                eprintln!("[e2e] test failed; its files are kept in {}", p.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

pub enum Mode {
    Serve,
    Demo,
}

pub struct Server {
    child: Option<Child>,
    pub sip_port: u16,
    pub http_port: u16,
    /// The address SIP (and so media) listens on; HTTP stays on loopback.
    pub sip_ip: String,
    pub data: PathBuf,
    pub log: PathBuf,
    stdout_lines: Option<Receiver<String>>,
}

static SERVER_N: AtomicU64 = AtomicU64::new(0);

impl Server {
    /// `tsunagu serve --data <sandbox>/data` on free loopback ports, ready
    /// (healthz 200) when this returns.
    pub fn start(sb: &Sandbox) -> Server {
        Self::launch(sb, Mode::Serve, &[], LOCALHOST)
    }

    /// Like `start`, with extra environment variables (e.g. `TSUNAGU_*`
    /// configuration overrides).
    pub fn start_with_env(sb: &Sandbox, env: &[(&str, &str)]) -> Server {
        Self::launch(sb, Mode::Serve, env, LOCALHOST)
    }

    /// `tsunagu demo`: returns the server and the seeded `(extension,
    /// password)` pairs it printed.
    pub fn start_demo(sb: &Sandbox) -> (Server, Vec<(String, String)>) {
        Self::start_demo_with_env(sb, &[])
    }

    pub fn start_demo_with_env(
        sb: &Sandbox,
        env: &[(&str, &str)],
    ) -> (Server, Vec<(String, String)>) {
        Self::start_demo_at(sb, env, LOCALHOST)
    }

    /// `tsunagu demo` with SIP and media on `sip_ip` (an address of a test
    /// network namespace the calling thread is in).
    pub fn start_demo_at(
        sb: &Sandbox,
        env: &[(&str, &str)],
        sip_ip: &str,
    ) -> (Server, Vec<(String, String)>) {
        let mut s = Self::launch(sb, Mode::Demo, env, sip_ip);
        let rx = s.stdout_lines.take().unwrap();
        let mut creds = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The lines were printed before the server became ready; drain what is there.
        while creds.len() < 10 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let f: Vec<&str> = line.trim_end().split('\t').collect();
                    if f.len() == 2
                        && !f[0].is_empty()
                        && f[0].bytes().all(|b| b.is_ascii_digit())
                        && !f[1].is_empty()
                    {
                        creds.push((f[0].to_string(), f[1].to_string()));
                    }
                }
                Err(_) => break,
            }
        }
        assert!(
            creds.len() == 10,
            "`tsunagu demo` printed {} `EXT<TAB>PASSWORD` lines instead of 10; log:\n{}",
            creds.len(),
            tail(&s.log, 40)
        );
        (s, creds)
    }

    fn launch(sb: &Sandbox, mode: Mode, env: &[(&str, &str)], sip_ip: &str) -> Server {
        let data = sb.data();
        let mut last_err = String::new();
        for attempt in 0..5 {
            let sip_port = free_sip_port();
            let http_port = free_tcp_port();
            let n = SERVER_N.fetch_add(1, Ordering::Relaxed);
            let log = sb.file(&format!("server-{n}.log"));
            let logf = File::create(&log).unwrap();
            let sub = match mode {
                Mode::Serve => "serve",
                Mode::Demo => "demo",
            };
            let mut child = Command::new(TSUNAGU)
                .arg(sub)
                .arg("--data")
                .arg(&data)
                .arg("--sip")
                .arg(format!("{sip_ip}:{sip_port}"))
                .arg("--http")
                .arg(format!("{LOCALHOST}:{http_port}"))
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(logf.try_clone().unwrap()))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {TSUNAGU}: {e}"));
            // Copy stdout into the log and hand its lines to whoever wants them.
            let out = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            let mut logw = OpenOptions::new().append(true).open(&log).unwrap();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(logw, "{line}");
                    let _ = tx.send(line);
                }
            });
            let mut s = Server {
                child: Some(child),
                sip_port,
                http_port,
                sip_ip: sip_ip.to_string(),
                data: data.clone(),
                log: log.clone(),
                stdout_lines: Some(rx),
            };
            match s.wait_ready(STARTUP_DEADLINE) {
                Ok(()) => return s,
                Err(e) => {
                    last_err = format!(
                        "attempt {attempt}: {e}; log {}:\n{}",
                        log.display(),
                        tail(&log, 40)
                    );
                    eprintln!("[e2e] server did not start, retrying: {last_err}");
                    s.kill();
                }
            }
        }
        panic!("tsunagu {:?} did not become ready: {last_err}", TSUNAGU);
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("server exited early with {st}"));
            }
            let last = match http_get(self.http_addr(), "/healthz", Duration::from_secs(2)) {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("healthz answered {code}: {body}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?} ({last})"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        format!("{}:{}", self.sip_ip, self.sip_port).parse().unwrap()
    }
    pub fn http_addr(&self) -> SocketAddr {
        format!("{LOCALHOST}:{}", self.http_port).parse().unwrap()
    }
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server stopped").id()
    }

    /// Panics (with the log) if the server process has exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "server died ({st}) {context}; log {}:\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }

    /// SIGTERM, then wait (bounded) for the exit. Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        signal(child.id(), "TERM");
        match wait_child(&mut child, Duration::from_secs(15)) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within 15 s of SIGTERM; log:\n{}",
                    tail(&self.log, 40)
                );
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run `tsunagu <args> --data <this server's data dir>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.data, args)
    }

    pub fn user_list(&self) -> Vec<UserEntry> {
        user_list(&self.data)
    }

    pub fn metrics(&self) -> String {
        let (code, body) =
            http_get(self.http_addr(), "/metrics", Duration::from_secs(5)).expect("GET /metrics");
        assert_eq!(code, 200, "GET /metrics answered {code}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill();
        if running && thread::panicking() {
            eprintln!(
                "[e2e] server log {} (last lines):\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

/// Minimal HTTP/1.1 GET over a plain TcpStream: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((code, body))
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// `tsunagu <args[0]> <args[1]> --data DATA <args[2..]>`; panics when the
/// command fails.
pub fn cli(data: &Path, args: &[&str]) -> Output {
    let out = cli_unchecked(data, args);
    assert!(
        out.status.success(),
        "tsunagu {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn cli_unchecked(data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(TSUNAGU);
    let split = args.len().min(2);
    cmd.args(&args[..split])
        .arg("--data")
        .arg(data)
        .args(&args[split..]);
    run_bounded(&mut cmd, CLI_DEADLINE)
}

/// Create users `exts` with `password(ext)` through `tsunagu user import`.
pub fn import_users(
    sb: &Sandbox,
    exts: impl IntoIterator<Item = u32>,
    password: impl Fn(u32) -> String,
) {
    let csv = sb.file(&unique("users-").replace('-', "_"));
    let mut s = String::from("extension,password,name\n");
    for e in exts {
        s.push_str(&format!("{e},{},E2E User {e}\n", password(e)));
    }
    fs::write(&csv, s).unwrap();
    cli(&sb.data(), &["user", "import", csv.to_str().unwrap()]);
}

#[derive(Debug, Clone)]
pub struct ContactLine {
    /// The URI without the angle brackets.
    pub uri: String,
    pub expires: Option<u64>,
    /// The whole line as printed, trimmed.
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct UserEntry {
    pub ext: String,
    pub name: String,
    /// The `N` of `N contact(s)`.
    pub count: usize,
    pub contacts: Vec<ContactLine>,
}

/// Parse `tsunagu user list` output (format in the CLI contract).
pub fn parse_user_list(text: &str) -> Vec<UserEntry> {
    let mut out: Vec<UserEntry> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("  ") {
            let rest = rest.trim();
            let entry = out
                .last_mut()
                .unwrap_or_else(|| panic!("contact line before any user line: {line:?}"));
            assert!(
                rest.starts_with('<'),
                "contact line without <uri>: {line:?}"
            );
            let end = rest
                .find('>')
                .unwrap_or_else(|| panic!("unclosed <uri>: {line:?}"));
            let uri = rest[1..end].to_string();
            let expires = rest[end + 1..]
                .split_whitespace()
                .find_map(|f| f.strip_prefix("expires="))
                .and_then(|v| v.parse().ok());
            entry.contacts.push(ContactLine {
                uri,
                expires,
                line: rest.to_string(),
            });
        } else {
            let f: Vec<&str> = line.split('\t').collect();
            assert!(
                f.len() >= 3,
                "user line is not EXT<TAB>NAME<TAB>N contact(s): {line:?}"
            );
            let count = f[2]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no contact count in user line: {line:?}"));
            out.push(UserEntry {
                ext: f[0].to_string(),
                name: f[1].to_string(),
                count,
                contacts: Vec::new(),
            });
        }
    }
    out
}

pub fn user_list(data: &Path) -> Vec<UserEntry> {
    let out = cli(data, &["user", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let list = parse_user_list(&text);
    for u in &list {
        assert_eq!(
            u.count,
            u.contacts.len(),
            "user list says {} contact(s) for {} but prints {}:\n{text}",
            u.count,
            u.ext,
            u.contacts.len()
        );
    }
    list
}

pub fn find_user<'a>(list: &'a [UserEntry], ext: &str) -> Option<&'a UserEntry> {
    list.iter().find(|u| u.ext == ext)
}

/// Poll `tsunagu user list` until `ext` has a contact matching `pred`.
pub fn wait_binding(
    data: &Path,
    ext: &str,
    timeout: Duration,
    pred: impl Fn(&ContactLine) -> bool,
) -> UserEntry {
    wait_for(
        &format!("a binding of {ext} in `tsunagu user list`"),
        timeout,
        || {
            let list = user_list(data);
            find_user(&list, ext)
                .filter(|u| u.contacts.iter().any(&pred))
                .cloned()
        },
    )
}

// ---------------------------------------------------------------------------
// Raw SIP: messages
// ---------------------------------------------------------------------------

/// A parsed SIP message (just enough for the tests).
#[derive(Debug, Clone)]
pub struct SipMsg {
    pub start_line: String,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

fn long_name(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    let long = match n.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "e" => "content-encoding",
        "s" => "subject",
        "o" => "event",
        "u" => "allow-events",
        _ => return n,
    };
    long.to_string()
}

/// Position just after the CRLFCRLF ending the header section.
fn header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

impl SipMsg {
    /// Parse one message from the start of `b`; returns it and the bytes it
    /// used (None when the message is not complete yet).
    pub fn parse(b: &[u8]) -> Option<(SipMsg, usize)> {
        let hend = header_end(b)?;
        let head = String::from_utf8_lossy(&b[..hend - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let start_line = lines.next()?.to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if (l.starts_with(' ') || l.starts_with('\t')) && !headers.is_empty() {
                let last = headers.last_mut().unwrap();
                last.1.push(' ');
                last.1.push_str(l.trim());
                continue;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut m = SipMsg {
            start_line,
            headers,
            body: Vec::new(),
            raw: Vec::new(),
        };
        let clen: usize = m
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if b.len() < hend + clen {
            return None;
        }
        m.body = b[hend..hend + clen].to_vec();
        m.raw = b[..hend + clen].to_vec();
        Some((m, hend + clen))
    }

    /// Status code, for a response.
    pub fn status(&self) -> Option<u16> {
        let mut it = self.start_line.splitn(3, ' ');
        if it.next()? != "SIP/2.0" {
            return None;
        }
        it.next()?.parse().ok()
    }

    /// First value of a header (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .find(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// The CSeq method.
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("cseq")
            .and_then(|v| v.split_whitespace().nth(1))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Transport of a raw client, as written in Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// What one request needs to be written.
#[derive(Clone, Debug)]
pub struct ReqParams {
    pub transport: Transport,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    pub from_tag: String,
    pub branch: String,
}

impl ReqParams {
    pub fn new(transport: Transport, local: SocketAddr, server: SocketAddr) -> Self {
        ReqParams {
            transport,
            local,
            server,
            call_id: unique("cid-"),
            cseq: 1,
            from_tag: unique("ft"),
            branch: format!("z9hG4bK{}", unique("b")),
        }
    }
    /// Next request of the same dialog-less series: same Call-ID, CSeq+1,
    /// new branch.
    pub fn next(&mut self) {
        self.cseq += 1;
        self.branch = format!("z9hG4bK{}", unique("b"));
    }
}

/// A REGISTER for `ext` at the server's address. `contact`: a URI to bind
/// (None: a query). `authorization`: a full header value.
pub fn register_request(
    p: &ReqParams,
    ext: &str,
    contact: Option<&str>,
    expires: Option<u32>,
    authorization: Option<&str>,
) -> String {
    let host = p.server.ip();
    let mut s = format!(
        "REGISTER sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{tr} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{ext}@{host}>;tag={tag}\r\n\
         To: <sip:{ext}@{host}>\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} REGISTER\r\n",
        server = p.server,
        tr = p.transport.via(),
        local = p.local,
        branch = p.branch,
        tag = p.from_tag,
        cid = p.call_id,
        cseq = p.cseq,
    );
    if let Some(c) = contact {
        s.push_str(&format!("Contact: <{c}>\r\n"));
    }
    if let Some(e) = expires {
        s.push_str(&format!("Expires: {e}\r\n"));
    }
    if let Some(a) = authorization {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("User-Agent: tsunagu-e2e\r\nContent-Length: 0\r\n\r\n");
    s
}

pub fn options_request(p: &ReqParams) -> String {
    let host = p.server.ip();
    format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{tr} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:e2e@{host}>;tag={tag}\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         User-Agent: tsunagu-e2e\r\n\
         Content-Length: 0\r\n\r\n",
        server = p.server,
        tr = p.transport.via(),
        local = p.local,
        branch = p.branch,
        tag = p.from_tag,
        cid = p.call_id,
        cseq = p.cseq,
    )
}

// ---------------------------------------------------------------------------
// Raw SIP: digest
// ---------------------------------------------------------------------------

/// One `WWW-Authenticate: Digest ...` challenge.
#[derive(Debug, Clone, Default)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Algorithm, upper-cased; MD5 when absent.
    pub fn algorithm(&self) -> String {
        self.param("algorithm")
            .unwrap_or("MD5")
            .to_ascii_uppercase()
    }
}

/// Parse `Digest k=v, k="v", ...`.
pub fn parse_challenge(value: &str) -> Challenge {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let mut params = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_string();
        if i >= b.len() || b[i] == b',' {
            if !key.is_empty() {
                params.push((key, String::new()));
            }
            continue;
        }
        i += 1; // '='
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let val = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                v.push(b[i] as char);
                i += 1;
            }
            i += 1;
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            rest[vs..i].trim().to_string()
        };
        params.push((key, val));
    }
    Challenge {
        scheme: scheme.to_string(),
        params,
    }
}

/// All challenges of a 401, in order.
pub fn challenges(resp: &SipMsg) -> Vec<Challenge> {
    resp.headers_named("www-authenticate")
        .into_iter()
        .map(parse_challenge)
        .collect()
}

/// The first MD5 challenge of a 401 (what SIPp and old phones take).
pub fn md5_challenge(resp: &SipMsg) -> Challenge {
    challenges(resp)
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("digest") && c.algorithm() == "MD5")
        .unwrap_or_else(|| panic!("no Digest MD5 challenge in:\n{}", resp.text()))
}

/// An `Authorization` header value answering `ch` (MD5; qop=auth if offered).
pub fn digest_authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let realm = ch.param("realm").unwrap_or("");
    let nonce = ch.param("nonce").unwrap_or("");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let qop_auth = ch
        .param("qop")
        .map(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")))
        .unwrap_or(false);
    let mut h = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
    );
    if qop_auth {
        let cnonce = unique("cn");
        let nc = "00000001";
        let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        h.push_str(&format!(
            ", response=\"{resp}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        ));
    } else {
        let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        h.push_str(&format!(", response=\"{resp}\""));
    }
    if let Some(o) = ch.param("opaque") {
        h.push_str(&format!(", opaque=\"{o}\""));
    }
    h
}

// ---------------------------------------------------------------------------
// Raw SIP: clients
// ---------------------------------------------------------------------------

/// A raw SIP client over UDP on 127.0.0.1.
pub struct UdpClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl UdpClient {
    pub fn new(server: SocketAddr) -> Self {
        let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let local = sock.local_addr().unwrap();
        UdpClient {
            sock,
            server,
            local,
        }
    }

    pub fn params(&self) -> ReqParams {
        ReqParams::new(Transport::Udp, self.local, self.server)
    }

    pub fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).expect("send UDP");
    }

    /// Send a request and wait for its final response (matched by Call-ID and
    /// CSeq method), retransmitting like timer A (0.5 s, 1 s, 2 s, ...).
    pub fn transact(&self, req: &str, timeout: Duration) -> Result<SipMsg, String> {
        let (m, _) = SipMsg::parse(req.as_bytes()).expect("our own request parses");
        let cid = m.call_id().unwrap().to_string();
        let method = m.cseq_method().unwrap().to_string();
        let deadline = Instant::now() + timeout;
        let mut interval = Duration::from_millis(500);
        let mut next_send = Instant::now();
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no final response to {method} (Call-ID {cid}) within {timeout:?}; other datagrams: {seen:?}"
                ));
            }
            if now >= next_send {
                self.send(req.as_bytes());
                next_send = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            let wait = next_send
                .min(deadline)
                .saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, _from)) => {
                    let Some((r, _)) = SipMsg::parse(&buf[..n]) else {
                        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                        continue;
                    };
                    match r.status() {
                        Some(code)
                            if code >= 200
                                && r.call_id() == Some(&cid)
                                && r.cseq_method() == Some(&method) =>
                        {
                            return Ok(r);
                        }
                        _ => {}
                    }
                }
                Err(ref e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
    }

    pub fn options(&self) -> Result<SipMsg, String> {
        self.transact(&options_request(&self.params()), SIP_DEADLINE)
    }
}

/// A raw SIP client over one TCP connection to 127.0.0.1.
pub struct TcpClient {
    pub stream: TcpStream,
    pub server: SocketAddr,
    pub local: SocketAddr,
    buf: Vec<u8>,
}

impl TcpClient {
    pub fn connect(server: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("TCP connect to {server}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let local = stream.local_addr().unwrap();
        TcpClient {
            stream,
            server,
            local,
            buf: Vec::new(),
        }
    }

    pub fn params(&self) -> ReqParams {
        ReqParams::new(Transport::Tcp, self.local, self.server)
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read more bytes into the buffer; Ok(0) at EOF.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "deadline",
            ));
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut tmp = [0u8; 16384];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Next SIP message on the connection (CRLF keep-alives skipped).
    pub fn read_msg(&mut self, timeout: Duration) -> Result<SipMsg, String> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some((m, used)) = SipMsg::parse(&self.buf) {
                self.buf.drain(..used);
                return Ok(m);
            }
            match self.fill(deadline) {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Raw bytes available within `timeout` (at least one read's worth).
    pub fn read_raw(&mut self, min: usize, timeout: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < min {
            match self.fill(deadline) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "read: {e} (got {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Send a request, return its final response.
    pub fn transact(&mut self, req: &str, timeout: Duration) -> Result<SipMsg, String> {
        let (m, _) = SipMsg::parse(req.as_bytes()).expect("our own request parses");
        let cid = m.call_id().unwrap().to_string();
        let deadline = Instant::now() + timeout;
        self.send(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.read_msg(left)?;
            if r.status().map(|c| c >= 200).unwrap_or(false) && r.call_id() == Some(&cid) {
                return Ok(r);
            }
        }
    }

    pub fn options(&mut self) -> Result<SipMsg, String> {
        let req = options_request(&self.params());
        self.transact(&req, SIP_DEADLINE)
    }

    /// Wait until the server closes the connection (read gives 0 or an error
    /// such as a reset). Returns what was read before the close; Err if the
    /// connection is still open after `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(std::mem::take(&mut self.buf));
                }
                Err(_) => return Ok(std::mem::take(&mut self.buf)), // reset etc.
            }
        }
    }
}

/// Register `ext` with digest auth over UDP: REGISTER, 401, REGISTER with
/// Authorization. Returns the final response.
pub fn udp_register(
    c: &UdpClient,
    ext: &str,
    password: &str,
    contact: Option<&str>,
    expires: Option<u32>,
) -> SipMsg {
    let mut p = c.params();
    let r1 = c
        .transact(
            &register_request(&p, ext, contact, expires, None),
            SIP_DEADLINE,
        )
        .unwrap_or_else(|e| panic!("REGISTER {ext}: {e}"));
    if r1.status() != Some(401) {
        return r1;
    }
    let ch = md5_challenge(&r1);
    let uri = format!("sip:{}", c.server);
    let auth = digest_authorization(&ch, ext, password, "REGISTER", &uri);
    p.next();
    c.transact(
        &register_request(&p, ext, contact, expires, Some(&auth)),
        SIP_DEADLINE,
    )
    .unwrap_or_else(|e| panic!("authenticated REGISTER {ext}: {e}"))
}

// ---------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------

/// Path of a file in tests/sipp.
pub fn sipp_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sipp")
        .join(name)
}

/// Write a SIPp injection file for digest REGISTERs:
/// `ext;password;[authentication username=ext password=password];`
pub fn write_sipp_auth_csv(path: &Path, users: &[(String, String)]) {
    let mut s = String::from("SEQUENTIAL\n");
    for (e, p) in users {
        assert!(
            !p.contains(';') && !p.contains(']') && !p.contains(' '),
            "password unusable in SIPp CSV: {p:?}"
        );
        s.push_str(&format!(
            "{e};{p};[authentication username={e} password={p}];\n"
        ));
    }
    fs::write(path, s).unwrap();
}

#[derive(Debug)]
pub struct SippResult {
    pub status: ExitStatus,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub stat_header: Vec<String>,
    pub stat_last: Vec<String>,
    pub report: String,
}

/// Run SIPp as a client against `target`. `transport`: "u1" or "t1".
/// Files (stats, errors, screen, messages) go to `workdir`.
pub fn run_sipp(
    workdir: &Path,
    target: SocketAddr,
    scenario: &Path,
    inf: &Path,
    transport: &str,
    calls: u32,
    rate: u32,
) -> SippResult {
    let bin = require_tool("sipp", "sip-tester");
    let local_port = free_sip_port();
    let stat = workdir.join("sipp-stat.csv");
    let err = workdir.join("sipp-errors.log");
    let screen = workdir.join("sipp-screen.log");
    let msgs = workdir.join("sipp-messages.log");
    let out = File::create(workdir.join("sipp-stdout.log")).unwrap();
    let child = Command::new(bin)
        .current_dir(workdir)
        .arg(target.to_string())
        .arg("-sf")
        .arg(scenario)
        .arg("-inf")
        .arg(inf)
        .args(["-t", transport, "-i", LOCALHOST, "-p"])
        .arg(local_port.to_string())
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
        .args(["-max_retrans", "7"])
        .arg("-trace_stat")
        .arg("-stf")
        .arg(&stat)
        .args(["-fd", "1"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&err)
        .arg("-trace_screen")
        .arg("-screen_file")
        .arg(&screen)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start sipp");
    let _ = msgs;
    let mut g = ChildGuard::new("sipp", child);
    let status = match wait_child(&mut g.child, Duration::from_secs(120)) {
        Some(st) => st,
        None => panic!("sipp still running after 120 s (it was given -timeout 60s)"),
    };
    let text = fs::read_to_string(&stat).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let header: Vec<String> = lines
        .first()
        .map(|l| l.split(';').map(str::to_string).collect())
        .unwrap_or_default();
    let last: Vec<String> = lines
        .last()
        .map(|l| l.split(';').map(str::to_string).collect())
        .unwrap_or_default();
    let col = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let report = format!(
        "sipp exit: {status}\n--- screen ---\n{}\n--- errors (tail) ---\n{}\n--- stdout (tail) ---\n{}",
        tail(&screen, 40),
        tail(&err, 40),
        tail(&workdir.join("sipp-stdout.log"), 20)
    );
    SippResult {
        status,
        successful: col("SuccessfulCall(C)"),
        failed: col("FailedCall(C)"),
        retransmissions: col("Retransmissions(C)"),
        stat_header: header,
        stat_last: last,
        report,
    }
}

// ---------------------------------------------------------------------------
// baresip (moved to baresip.rs; re-exported for the existing tests)
// ---------------------------------------------------------------------------

#[allow(unused_imports)]
pub use baresip::{start_baresip, start_baresip_with, SipTransport};
