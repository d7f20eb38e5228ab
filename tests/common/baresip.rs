//! Headless baresip (Debian's 1.0.0) as a SIP phone for the end-to-end tests.
//!
//! Each instance gets its own config directory in the test's sandbox:
//!
//! * SIP on `127.0.0.1:PORT` (`-4 -n 127.0.0.1`); baresip also opens TLS on
//!   PORT + 1, which [`free_sip_port`] checks as well;
//! * the audio it sends comes from a WAV file (`aufile`), or is an echo of
//!   what it receives (`aubridge`); `ausrc_srate`/`ausrc_channels` are set
//!   from the WAV's header so baresip resamples it for any codec (without
//!   them `aufile` insists on the codec's rate and channels, e.g. 48 kHz
//!   stereo for opus);
//! * what it decodes is written by the `sndfile` module into `snd/` as
//!   `dump-YYYY-MM-DD-HH-MM-SS-dec.wav` (and `-enc.wav` for what it sends);
//! * it is driven over `ctrl_tcp` (JSON in netstrings) on a free port: the
//!   commands come from the `menu` module, events arrive on the same socket;
//! * it quits by itself after `-t` seconds, and is killed when dropped.
//!
//! Fiddly facts of baresip 1.0.0 found here: the per-account codec list
//! (`;audio_codecs=`) takes `name/rate/channels` and a bare name means
//! `/8000/1` (so `opus` alone matches nothing and silently allows every
//! codec: use `opus/48000/2`); the `audio_codecs` *config* key does not exist;
//! `aufile` hangs up the call when its file ends; events that happen before
//! the control connection is made (e.g. a quick REGISTER_OK) are not
//! replayed, hence [`Baresip::registered`] also polls `reginfo`; `sndfile`
//! names its files by the second, so two calls of one instance within the
//! same second write the same file; `connect()` to ctrl_tcp succeeds before
//! baresip has accepted the connection, and events before the accept are
//! lost (so `start` waits for one command round trip).
//!
//! `E2E_BARESIP_CTRL_DEBUG=1` prints every control message received.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::audio;
use super::{free_sip_port, free_tcp_port, require_tool, tail, ChildGuard, Sandbox, LOCALHOST};

/// How long a control command may take to be answered.
pub const CMD_DEADLINE: Duration = Duration::from_secs(5);
/// How long baresip gets to open its control socket after start.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// Default `-t`: baresip quits by itself after this many seconds.
pub const DEFAULT_LIFETIME_SECS: u32 = 120;
/// Length of the tone files made for [`AudioSource::Tone`]: longer than any
/// call of a test (aufile hangs up at the end of its file).
pub const TONE_SECS: f32 = 180.0;

/// Directory of baresip's modules.
pub fn module_dir() -> &'static str {
    [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ]
    .into_iter()
    .find(|p| Path::new(p).join("account.so").exists())
    .expect("baresip modules directory (with account.so) not found")
}

// ---------------------------------------------------------------------------
// A tiny JSON reader (baresip's events and responses)
// ---------------------------------------------------------------------------

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = json_value(b, &mut i)?;
        json_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing bytes at {i} in {s:?}"));
        }
        Ok(v)
    }
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
    /// String field `key` of an object ("" when absent).
    pub fn str_of(&self, key: &str) -> String {
        self.get(key)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    }
}

fn json_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn json_value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    json_ws(b, i);
    let c = *b.get(*i).ok_or("unexpected end")?;
    match c {
        b'{' => {
            *i += 1;
            let mut m = BTreeMap::new();
            json_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                json_ws(b, i);
                let k = match json_value(b, i)? {
                    Json::Str(s) => s,
                    other => return Err(format!("object key {other:?} is not a string")),
                };
                json_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("':' expected at {i}"));
                }
                *i += 1;
                let v = json_value(b, i)?;
                m.insert(k, v);
                json_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("',' or '}}' expected at {i}")),
                }
            }
        }
        b'[' => {
            *i += 1;
            let mut v = Vec::new();
            json_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(v));
            }
            loop {
                v.push(json_value(b, i)?);
                json_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(v));
                    }
                    _ => return Err(format!("',' or ']' expected at {i}")),
                }
            }
        }
        b'"' => {
            *i += 1;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let c = *b.get(*i).ok_or("unterminated string")?;
                *i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        let e = *b.get(*i).ok_or("unterminated escape")?;
                        *i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hex = b.get(*i..*i + 4).ok_or("short \\u escape")?;
                                *i += 4;
                                let h = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                                let mut cp =
                                    u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                                // A surrogate pair.
                                if (0xD800..0xDC00).contains(&cp)
                                    && b.get(*i..*i + 2) == Some(b"\\u")
                                {
                                    if let Some(lo) = b
                                        .get(*i + 2..*i + 6)
                                        .and_then(|x| std::str::from_utf8(x).ok())
                                        .and_then(|x| u32::from_str_radix(x, 16).ok())
                                    {
                                        if (0xDC00..0xE000).contains(&lo) {
                                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                            *i += 6;
                                        }
                                    }
                                }
                                char::from_u32(cp).unwrap_or('\u{FFFD}')
                            }
                            other => return Err(format!("bad escape \\{}", other as char)),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => out.push(c),
                }
            }
            Ok(Json::Str(String::from_utf8_lossy(&out).into_owned()))
        }
        b't' if b[*i..].starts_with(b"true") => {
            *i += 4;
            Ok(Json::Bool(true))
        }
        b'f' if b[*i..].starts_with(b"false") => {
            *i += 5;
            Ok(Json::Bool(false))
        }
        b'n' if b[*i..].starts_with(b"null") => {
            *i += 4;
            Ok(Json::Null)
        }
        b'-' | b'0'..=b'9' => {
            let s = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            let t = std::str::from_utf8(&b[s..*i]).unwrap();
            t.parse()
                .map(Json::Num)
                .map_err(|e| format!("bad number {t:?}: {e}"))
        }
        other => Err(format!("unexpected {:?} at {i}", other as char)),
    }
}

/// `s` as a JSON string literal.
pub fn json_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// SIP transport of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    pub fn param(self) -> &'static str {
        match self {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        }
    }
}

/// How an instance answers incoming calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// Rings (`CALL_INCOMING`) until [`Baresip::accept`].
    Manual,
    /// Answers at once; the only event is `CALL_ESTABLISHED`.
    Auto,
}

/// What an instance sends as audio.
#[derive(Clone, Debug)]
pub enum AudioSource {
    /// A sine of this frequency (an 8 kHz mono WAV of [`TONE_SECS`] made in
    /// the instance's directory).
    Tone(f32),
    /// This WAV file (any rate; mono or stereo).
    File(PathBuf),
    /// What it receives (`aubridge` as player and source).
    Echo,
}

/// A registration at a registrar (the PBX).
#[derive(Clone, Debug)]
pub struct Account {
    pub user: String,
    pub password: String,
    /// Where to register: the PBX's SIP address for UDP/TCP, its TLS address
    /// for TLS.
    pub registrar: SocketAddr,
    pub transport: SipTransport,
    /// Registration interval (`regint`), seconds.
    pub regint: u32,
}

impl Account {
    pub fn new(user: &str, password: &str, registrar: SocketAddr) -> Self {
        Account {
            user: user.to_string(),
            password: password.to_string(),
            registrar,
            transport: SipTransport::Udp,
            regint: 600,
        }
    }
    pub fn transport(mut self, t: SipTransport) -> Self {
        self.transport = t;
        self
    }
    /// The address of record, e.g. `sip:1001@127.0.0.1:5060`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.registrar)
    }
}

/// Map short codec names to what baresip's `audio_codecs` wants.
fn codec_spec(c: &str) -> String {
    if c.contains('/') {
        return c.to_string();
    }
    match c.to_ascii_lowercase().as_str() {
        "opus" => "opus/48000/2".into(),
        "g722" => "G722/16000/1".into(),
        "l16" => "L16/48000/2".into(),
        _ => c.to_string(),
    }
}

/// Lines of baresip's `config` file.
struct ConfigText {
    port: u16,
    transport: Option<SipTransport>,
    cafile: Option<PathBuf>,
    modules: Vec<&'static str>,
    apps: Vec<&'static str>,
    extra: Vec<String>,
}

impl ConfigText {
    fn render(&self) -> String {
        let mut s = format!(
            "poll_method\t\tpoll\n\
             sip_listen\t\t{LOCALHOST}:{}\n",
            self.port
        );
        if let Some(t) = self.transport {
            s.push_str(&format!("sip_trans_def\t\t{}\n", t.param()));
        }
        if let Some(ca) = &self.cafile {
            s.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
        }
        s.push_str(&format!("module_path\t\t{}\n", module_dir()));
        for m in &self.modules {
            s.push_str(&format!("module\t\t\t{m}\n"));
        }
        for m in &self.apps {
            s.push_str(&format!("module_app\t\t{m}\n"));
        }
        for l in &self.extra {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// Start a headless baresip registering `ext`/`password` at `registrar`
/// over UDP, with `aubridge` for audio and no control socket. Killed when
/// the guard drops. Returns (guard, its SIP port, its log file).
pub fn start_baresip(
    sb: &Sandbox,
    registrar: SocketAddr,
    ext: &str,
    password: &str,
) -> (ChildGuard, u16, PathBuf) {
    start_baresip_with(sb, registrar, ext, password, SipTransport::Udp, None)
}

/// Like [`start_baresip`] with a transport; for TLS, `registrar` is the
/// server's TLS address and `cafile` the certificate to trust (baresip
/// 1.0.0 accepts `sip_cafile` but does not verify the server). The TLS
/// listener of baresip itself is on its SIP port + 1.
pub fn start_baresip_with(
    sb: &Sandbox,
    registrar: SocketAddr,
    ext: &str,
    password: &str,
    transport: SipTransport,
    cafile: Option<&Path>,
) -> (ChildGuard, u16, PathBuf) {
    let bin = require_tool("baresip", "baresip");
    // free_sip_port checks P and P+1: baresip opens TLS on its SIP port + 1.
    let port = free_sip_port();
    let tag = match transport {
        SipTransport::Udp => String::new(),
        t => format!("{}-", t.param()),
    };
    let dir = sb.file(&format!("baresip-{tag}{ext}"));
    fs::create_dir_all(&dir).unwrap();
    let cfg = ConfigText {
        port,
        transport: (transport != SipTransport::Tls).then_some(transport),
        cafile: cafile.map(Path::to_path_buf),
        modules: vec!["g711.so"],
        apps: vec!["account.so"],
        extra: vec![
            "audio_player\t\taubridge,null".into(),
            "audio_source\t\taubridge,null".into(),
            "audio_alert\t\taubridge,null".into(),
        ],
    };
    fs::write(dir.join("config"), cfg.render()).unwrap();
    fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{ext}@{registrar};transport={}>;auth_pass={password};regint=600\n",
            transport.param()
        ),
    )
    .unwrap();
    let log = sb.file(&format!("baresip-{tag}{ext}.log"));
    let out = File::create(&log).unwrap();
    let child = Command::new(bin)
        .arg("-f")
        .arg(&dir)
        .args(["-4", "-n", LOCALHOST, "-t", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start baresip");
    (ChildGuard::new("baresip", child), port, log)
}

/// Options of a [`Baresip`] instance; `start` it.
pub struct BaresipBuilder<'a> {
    sb: &'a Sandbox,
    name: String,
    account: Option<Account>,
    answer: AnswerMode,
    codecs: Vec<String>,
    mediaenc: Option<String>,
    source: AudioSource,
    cafile: Option<PathBuf>,
    lifetime_secs: u32,
    sip_trace: bool,
    extra_config: Vec<String>,
    extra_account_params: Vec<String>,
}

impl<'a> BaresipBuilder<'a> {
    /// Register at a registrar; without it the instance takes direct calls
    /// at `sip:NAME@127.0.0.1:PORT` (no registration).
    pub fn account(mut self, a: Account) -> Self {
        self.account = Some(a);
        self
    }
    pub fn answer(mut self, m: AnswerMode) -> Self {
        self.answer = m;
        self
    }
    /// Allowed audio codecs in order, e.g. `["PCMU"]` or `["opus"]` (short
    /// names are completed: opus -> opus/48000/2, G722 -> G722/16000/1).
    /// Empty: every codec loaded (opus, G.722, PCMU, PCMA).
    pub fn codecs(mut self, c: &[&str]) -> Self {
        self.codecs = c.iter().map(|s| s.to_string()).collect();
        self
    }
    /// `;mediaenc=` of the account: `srtp` (SDES, best effort), `srtp-mand`
    /// (RTP/SAVP), `srtp-mandf` (RTP/SAVPF).
    pub fn mediaenc(mut self, m: &str) -> Self {
        self.mediaenc = Some(m.to_string());
        self
    }
    pub fn source(mut self, s: AudioSource) -> Self {
        self.source = s;
        self
    }
    /// Shorthand for `source(AudioSource::Tone(hz))`.
    pub fn tone(self, hz: f32) -> Self {
        self.source(AudioSource::Tone(hz))
    }
    pub fn cafile(mut self, p: &Path) -> Self {
        self.cafile = Some(p.to_path_buf());
        self
    }
    /// `-t`: baresip quits by itself after this many seconds.
    pub fn lifetime_secs(mut self, s: u32) -> Self {
        self.lifetime_secs = s;
        self
    }
    /// `-s`: SIP trace into the log.
    pub fn sip_trace(mut self, on: bool) -> Self {
        self.sip_trace = on;
        self
    }
    /// An extra line for the config file.
    pub fn config_line(mut self, l: &str) -> Self {
        self.extra_config.push(l.to_string());
        self
    }
    /// An extra `;param=value` for the account line (without the `;`).
    pub fn account_param(mut self, p: &str) -> Self {
        self.extra_account_params.push(p.to_string());
        self
    }

    pub fn start(self) -> Baresip {
        Baresip::launch(self)
    }
}

// ---------------------------------------------------------------------------
// The running instance
// ---------------------------------------------------------------------------

/// One event of baresip (`{"event":true,"type":...}`).
#[derive(Debug, Clone)]
pub struct Event {
    /// `type`: CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED,
    /// CALL_DTMF_START, CALL_DTMF_END, REGISTER_OK, REGISTER_FAIL, ...
    pub kind: String,
    pub class: String,
    pub param: String,
    pub peeruri: String,
    pub id: String,
    pub direction: String,
    pub accountaor: String,
    pub json: Json,
    pub raw: String,
    /// When it was read (for timings).
    pub at: Instant,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} param={:?} peer={:?}", self.kind, self.param, self.peeruri)
    }
}

enum CtrlMsg {
    Event(Event),
    Response { ok: bool, data: String, token: String },
    Closed(String),
}

/// A running headless baresip with a control connection.
pub struct Baresip {
    pub name: String,
    pub dir: PathBuf,
    /// Where `sndfile` writes `*-dec.wav` / `*-enc.wav`.
    pub snd_dir: PathBuf,
    pub log: PathBuf,
    pub sip_port: u16,
    pub ctrl_port: u16,
    /// The account's address of record.
    pub aor: String,
    /// The WAV it plays (None for an echo).
    pub source_wav: Option<PathBuf>,
    guard: ChildGuard,
    ctrl: TcpStream,
    rx: Receiver<CtrlMsg>,
    /// Every event so far, with a "taken by wait_event" mark.
    events: Vec<(Event, bool)>,
    closed: Option<String>,
    token_n: u64,
}

impl Baresip {
    /// Options for an instance named `name` (its directory, log and, without
    /// an account, the user part of its URI).
    pub fn builder<'a>(sb: &'a Sandbox, name: &str) -> BaresipBuilder<'a> {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "baresip instance name {name:?}: use letters, digits, - and _"
        );
        BaresipBuilder {
            sb,
            name: name.to_string(),
            account: None,
            answer: AnswerMode::Manual,
            codecs: Vec::new(),
            mediaenc: None,
            source: AudioSource::Echo,
            cafile: None,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            sip_trace: false,
            extra_config: Vec::new(),
            extra_account_params: Vec::new(),
        }
    }

    fn launch(o: BaresipBuilder) -> Baresip {
        let bin = require_tool("baresip", "baresip");
        let dir = o.sb.file(&format!("baresip-{}", o.name));
        let snd_dir = dir.join("snd");
        fs::create_dir_all(&snd_dir).unwrap();
        let modules_dir = Path::new(module_dir());
        for m in ["g711", "aufile", "aubridge", "sndfile", "account", "menu", "ctrl_tcp"] {
            assert!(
                modules_dir.join(format!("{m}.so")).exists(),
                "baresip module {m}.so missing in {} (Debian: apt-get install -y baresip)",
                modules_dir.display()
            );
        }
        let mut modules = vec!["g711.so"];
        for m in ["opus.so", "g722.so", "srtp.so"] {
            if modules_dir.join(m).exists() {
                modules.push(m);
            }
        }
        modules.extend(["aufile.so", "aubridge.so", "sndfile.so"]);

        // Audio: the source file (made here for a tone), the device names.
        let source_wav = match &o.source {
            AudioSource::Tone(hz) => {
                let p = dir.join(format!("tone-{hz}.wav"));
                audio::make_tone_wav(&p, *hz, TONE_SECS, 8000);
                Some(p)
            }
            AudioSource::File(p) => Some(p.clone()),
            AudioSource::Echo => None,
        };
        let dev = format!("dev-{}", o.name);
        let mut audio_lines = vec![
            format!("audio_player\t\taubridge,{dev}"),
            format!("audio_alert\t\taubridge,{dev}-alert"),
            format!("snd_path\t\t{}", snd_dir.display()),
        ];
        match &source_wav {
            Some(p) => {
                let f = audio::wav_format(p)
                    .unwrap_or_else(|e| panic!("baresip {}: audio source: {e}", o.name));
                audio_lines.push(format!("audio_source\t\taufile,{}", p.display()));
                audio_lines.push(format!("ausrc_srate\t\t{}", f.rate));
                audio_lines.push(format!("ausrc_channels\t\t{}", f.channels));
            }
            None => audio_lines.push(format!("audio_source\t\taubridge,{dev}")),
        }

        let mut last_err = String::new();
        for attempt in 0..4 {
            let sip_port = free_sip_port();
            let ctrl_port = free_tcp_port();
            let mut extra = audio_lines.clone();
            extra.push(format!("ctrl_tcp_listen\t\t{LOCALHOST}:{ctrl_port}"));
            extra.extend(o.extra_config.iter().cloned());
            let cfg = ConfigText {
                port: sip_port,
                // As the TLS tests found working: no sip_trans_def for TLS.
                transport: Some(o.account.as_ref().map_or(SipTransport::Udp, |a| a.transport))
                    .filter(|t| *t != SipTransport::Tls),
                cafile: o.cafile.clone(),
                modules: modules.clone(),
                apps: vec!["account.so", "menu.so", "ctrl_tcp.so"],
                extra,
            };
            fs::write(dir.join("config"), cfg.render()).unwrap();

            let mut params: Vec<String> = Vec::new();
            let (uri, aor) = match &o.account {
                Some(a) => {
                    params.push(format!("auth_pass={}", a.password));
                    params.push(format!("regint={}", a.regint));
                    (
                        format!("<sip:{}@{};transport={}>", a.user, a.registrar, a.transport.param()),
                        a.aor(),
                    )
                }
                None => {
                    params.push("regint=0".into());
                    (
                        format!("<sip:{}@{LOCALHOST}:{sip_port};transport=udp>", o.name),
                        format!("sip:{}@{LOCALHOST}:{sip_port}", o.name),
                    )
                }
            };
            params.push(format!(
                "answermode={}",
                match o.answer {
                    AnswerMode::Manual => "manual",
                    AnswerMode::Auto => "auto",
                }
            ));
            if !o.codecs.is_empty() {
                let list: Vec<String> = o.codecs.iter().map(|c| codec_spec(c)).collect();
                params.push(format!("audio_codecs={}", list.join(",")));
            }
            if let Some(m) = &o.mediaenc {
                params.push(format!("mediaenc={m}"));
            }
            params.extend(o.extra_account_params.iter().cloned());
            fs::write(dir.join("accounts"), format!("{uri};{}\n", params.join(";"))).unwrap();

            let log = o.sb.file(&format!("baresip-{}.log", o.name));
            let out = File::create(&log).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("-f")
                .arg(&dir)
                .args(["-4", "-n", LOCALHOST, "-t"])
                .arg(o.lifetime_secs.to_string());
            if o.sip_trace {
                cmd.arg("-s");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                .spawn()
                .expect("start baresip");
            let mut guard = ChildGuard::new(&format!("baresip-{}", o.name), child);

            // Connect to ctrl_tcp: it is loaded after the SIP transports are up.
            let deadline = Instant::now() + START_DEADLINE;
            let addr: SocketAddr = format!("{LOCALHOST}:{ctrl_port}").parse().unwrap();
            let stream = loop {
                if let Some(st) = guard.exited() {
                    last_err = format!(
                        "attempt {attempt}: baresip {} exited ({st}) at start; log:\n{}",
                        o.name,
                        log_tail(&log, 30)
                    );
                    break None;
                }
                if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    break Some(s);
                }
                if Instant::now() >= deadline {
                    last_err = format!(
                        "attempt {attempt}: baresip {} did not open its control port {ctrl_port} \
                         within {START_DEADLINE:?}; log:\n{}",
                        o.name,
                        log_tail(&log, 30)
                    );
                    break None;
                }
                thread::sleep(Duration::from_millis(20));
            };
            let Some(stream) = stream else {
                eprintln!("[e2e] {last_err}");
                drop(guard);
                continue;
            };
            stream.set_nodelay(true).unwrap();
            let reader = stream.try_clone().unwrap();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || ctrl_reader(reader, tx));
            let mut b = Baresip {
                name: o.name.clone(),
                dir: dir.clone(),
                snd_dir: snd_dir.clone(),
                log,
                sip_port,
                ctrl_port,
                aor,
                source_wav: source_wav.clone(),
                guard,
                ctrl: stream,
                rx,
                events: Vec::new(),
                closed: None,
                token_n: 0,
            };
            // connect() returns once the kernel has completed the handshake;
            // baresip accepts the connection later in its main loop, and any
            // event before that (e.g. CALL_INCOMING of an early INVITE) is
            // lost. A command round trip proves the connection is accepted.
            match b.command("reginfo", "") {
                Ok(_) => return b,
                Err(e) => {
                    last_err = format!(
                        "attempt {attempt}: baresip {} did not answer on its control port: {e}; log:\n{}",
                        o.name,
                        b.log_tail(30)
                    );
                    eprintln!("[e2e] {last_err}");
                }
            }
        }
        panic!("baresip {} could not be started: {last_err}", o.name);
    }

    /// `sip:NAME@127.0.0.1:PORT`: where to call an instance directly.
    pub fn uri(&self) -> String {
        format!("sip:{}@{LOCALHOST}:{}", self.name, self.sip_port)
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Panics (with the log) if baresip has exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(st) = self.guard.exited() {
            panic!(
                "baresip {} exited ({st}) {context}; log:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
    }

    /// The last `n` lines of its log, without the status-line noise.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// The whole log, with `\r`-separated status lines removed.
    pub fn log_text(&self) -> String {
        clean_log(&fs::read(&self.log).unwrap_or_default())
    }

    /// Take what the reader thread has got: with a `token`, wait (at most
    /// `wait`) for the response carrying it, keeping events on the way; without
    /// one, wait (at most `wait`) for a first message, then take everything
    /// already there.
    fn pump(&mut self, wait: Duration, token: Option<&str>) -> Option<(bool, String)> {
        let deadline = Instant::now() + wait;
        let mut got_one = false;
        loop {
            let left = if got_one && token.is_none() {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let m = if left.is_zero() {
                self.rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                self.rx.recv_timeout(left)
            };
            match m {
                Ok(CtrlMsg::Event(e)) => {
                    self.events.push((e, false));
                    got_one = true;
                }
                Ok(CtrlMsg::Response { ok, data, token: t }) => {
                    got_one = true;
                    if Some(t.as_str()) == token {
                        return Some((ok, data));
                    }
                }
                Ok(CtrlMsg::Closed(why)) => {
                    self.closed = Some(why);
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    if self.closed.is_none() {
                        self.closed = Some("control reader ended".into());
                    }
                    return None;
                }
            }
        }
    }

    /// Send a `menu` command over ctrl_tcp and wait for its answer: Ok(data)
    /// or Err(data) as baresip said; Err too when there is no answer within
    /// [`CMD_DEADLINE`].
    pub fn command(&mut self, cmd: &str, params: &str) -> Result<String, String> {
        self.token_n += 1;
        let token = format!("t{}", self.token_n);
        let body = format!(
            "{{\"command\":{},\"params\":{},\"token\":{}}}",
            json_quote(cmd),
            json_quote(params),
            json_quote(&token)
        );
        let msg = format!("{}:{},", body.len(), body);
        if let Err(e) = self.ctrl.write_all(msg.as_bytes()) {
            return Err(format!("cannot send {cmd:?} to baresip {}: {e}", self.name));
        }
        let deadline = Instant::now() + CMD_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some((ok, data)) = self.pump(left, Some(&token)) {
                return if ok { Ok(data) } else { Err(data) };
            }
            if let Some(why) = &self.closed {
                return Err(format!("control connection closed ({why}) before the answer to {cmd:?}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer to {cmd:?} within {CMD_DEADLINE:?}"));
            }
        }
    }

    fn must(&mut self, cmd: &str, params: &str) -> String {
        match self.command(cmd, params) {
            Ok(d) => d,
            Err(e) => panic!(
                "baresip {}: command {cmd} {params:?} failed: {e}\nlog:\n{}",
                self.name,
                self.log_tail(30)
            ),
        }
    }

    /// Call `uri` (e.g. `sip:1002@127.0.0.1:5060`).
    pub fn dial(&mut self, uri: &str) {
        self.must("dial", uri);
    }
    /// Answer the ringing call.
    pub fn accept(&mut self) {
        self.must("accept", "");
    }
    /// Hang up the current call.
    pub fn hangup(&mut self) {
        self.must("hangup", "");
    }
    /// Send DTMF `digits` (0-9, *, #, A-D) as RFC 4733 events on the current
    /// call.
    pub fn send_dtmf(&mut self, digits: &str) {
        self.must("sndcode", digits);
    }
    /// `reginfo`: the registration state as baresip prints it.
    pub fn reginfo(&mut self) -> String {
        self.must("reginfo", "")
    }
    /// `callstat`: the current call as baresip prints it.
    pub fn callstat(&mut self) -> String {
        self.must("callstat", "")
    }

    /// Every event received so far.
    pub fn events(&mut self) -> Vec<Event> {
        self.pump(Duration::ZERO, None);
        self.events.iter().map(|(e, _)| e.clone()).collect()
    }

    fn events_summary(&self) -> String {
        let v: Vec<String> = self.events.iter().map(|(e, _)| e.to_string()).collect();
        format!("[{}]", v.join(", "))
    }

    /// The first event not yet taken that satisfies `pred`, waiting at most
    /// `timeout`; marks it taken.
    pub fn try_wait_event_where(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((e, taken)) = self.events.iter_mut().find(|(e, t)| !*t && pred(e)) {
                *taken = true;
                return Some(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.closed.is_some() {
                // One last look at what has arrived.
                let before = self.events.len();
                self.pump(Duration::ZERO, None);
                if self.events.len() == before {
                    return None;
                }
                continue;
            }
            self.pump(left.min(Duration::from_millis(200)), None);
        }
    }

    /// The next event of type `kind` (e.g. "CALL_ESTABLISHED") not yet taken
    /// by an earlier wait; panics with the events seen and the log after
    /// `timeout`.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> Event {
        match self.try_wait_event_where(timeout, |e| e.kind == kind) {
            Some(e) => e,
            None => {
                let st = self.guard.exited().map(|s| format!(" (baresip exited: {s})")).unwrap_or_default();
                panic!(
                    "baresip {}: no {kind} event within {timeout:?}{st}; events: {}\nlog:\n{}",
                    self.name,
                    self.events_summary(),
                    self.log_tail(40)
                )
            }
        }
    }

    /// Wait until the account is registered: a REGISTER_OK event, or `OK` in
    /// `reginfo` (the event may come before the control connection is made).
    /// Panics on REGISTER_FAIL or after `timeout`.
    pub fn registered(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.try_wait_event_where(Duration::from_millis(200), |e| {
                e.kind == "REGISTER_OK" || e.kind == "REGISTER_FAIL"
            }) {
                if e.kind == "REGISTER_OK" {
                    return;
                }
                panic!(
                    "baresip {}: registration of {} failed: {}\nlog:\n{}",
                    self.name,
                    self.aor,
                    e.param,
                    self.log_tail(40)
                );
            }
            let info = self.command("reginfo", "").unwrap_or_default();
            if info
                .lines()
                .map(strip_ansi)
                .any(|l| l.contains(&self.aor) && l.split_whitespace().any(|w| w == "OK"))
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "baresip {}: {} not registered within {timeout:?}; reginfo: {info:?}; events: {}\nlog:\n{}",
                    self.name,
                    self.aor,
                    self.events_summary(),
                    self.log_tail(40)
                );
            }
        }
    }

    /// The `*-dec.wav` files (what it heard), oldest first.
    pub fn dec_wavs(&self) -> Vec<PathBuf> {
        snd_files(&self.snd_dir, "-dec.wav")
    }
    /// The `*-enc.wav` files (what it sent), oldest first.
    pub fn enc_wavs(&self) -> Vec<PathBuf> {
        snd_files(&self.snd_dir, "-enc.wav")
    }
    /// The newest `*-dec.wav`: what it heard in its latest call. Panics when
    /// there is none.
    pub fn dec_wav(&self) -> PathBuf {
        self.dec_wavs().pop().unwrap_or_else(|| {
            panic!(
                "baresip {}: no *-dec.wav in {} (did a call get media?); log:\n{}",
                self.name,
                self.snd_dir.display(),
                self.log_tail(30)
            )
        })
    }
    /// The newest `*-enc.wav`.
    pub fn enc_wav(&self) -> PathBuf {
        self.enc_wavs().pop().unwrap_or_else(|| {
            panic!("baresip {}: no *-enc.wav in {}", self.name, self.snd_dir.display())
        })
    }

    /// Wait until the newest `*-dec.wav` holds `more` seconds beyond what
    /// it holds now (what the phone hears from here on); returns its path.
    pub fn wait_heard_more(&mut self, more: f64, timeout: Duration) -> PathBuf {
        let now = audio::wav_secs(&self.dec_wav());
        self.wait_heard(now + more, timeout)
    }

    /// Wait until the newest `*-dec.wav` holds at least `secs` of audio;
    /// returns its path.
    pub fn wait_heard(&mut self, secs: f64, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.dec_wavs().pop() {
                if audio::wav_secs(&p) >= secs {
                    return p;
                }
            }
            if Instant::now() >= deadline {
                let have = self
                    .dec_wavs()
                    .pop()
                    .map(|p| format!("{} has {:.2} s", p.display(), audio::wav_secs(&p)))
                    .unwrap_or_else(|| "no *-dec.wav yet".into());
                panic!(
                    "baresip {}: not {secs} s of received audio within {timeout:?} ({have}); \
                     events: {}\nlog:\n{}",
                    self.name,
                    self.events_summary(),
                    self.log_tail(30)
                );
            }
            // Keep events flowing while polling the file.
            self.pump(Duration::from_millis(50), None);
        }
    }

    /// The decoder in use, from the latest "Set audio decoder: X" log line
    /// (e.g. "PCMU 8000Hz 1ch", "opus 48000Hz 2ch").
    pub fn audio_decoder(&self) -> Option<String> {
        self.log_text()
            .lines()
            .rev()
            .find_map(|l| l.split_once("Set audio decoder: ").map(|x| x.1.trim().to_string()))
    }

    /// Whether a call of it used SRTP (the log says "srtp: audio: SRTP is
    /// Enabled (cryptosuite=...)").
    pub fn srtp_enabled(&self) -> bool {
        self.log_text().contains("SRTP is Enabled")
    }

    /// Ask baresip to quit, wait (bounded) for it to exit.
    pub fn quit(&mut self) {
        let _ = self.command("quit", "");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.guard.exited().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "[e2e] baresip {} log {} (last lines):\n{}",
                self.name,
                self.log.display(),
                self.log_tail(25)
            );
        }
        let _ = self.ctrl.shutdown(std::net::Shutdown::Both);
        // The ChildGuard kills and reaps the process.
    }
}

fn snd_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .map(|n| n.ends_with(suffix))
                        .unwrap_or(false)
                })
                .map(|p| {
                    let t = fs::metadata(&p)
                        .and_then(|m| m.created().or_else(|_| m.modified()))
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (t, p)
                })
                .collect()
        })
        .unwrap_or_default();
    // Names carry the start time to the second; creation time breaks ties.
    v.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(_, p)| p).collect()
}

/// baresip's log with the `\r`-separated status lines ("[0:00:03] audio=...")
/// removed and ANSI colours stripped.
fn clean_log(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in s.split(['\n', '\r']) {
        let l = strip_ansi(line);
        let t = l.trim();
        if t.is_empty() || (t.starts_with('[') && t.contains("] audio=")) {
            continue;
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                while let Some(&d) = it.peek() {
                    it.next();
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = clean_log(&b);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(_) => tail(path, n),
    }
}

/// Read netstrings (`LEN:JSON,`) from the control socket, forward them.
fn ctrl_reader(mut s: TcpStream, tx: mpsc::Sender<CtrlMsg>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        // Take every complete netstring out of the buffer.
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
            else {
                let _ = tx.send(CtrlMsg::Closed(format!(
                    "bad netstring prefix {:?}",
                    String::from_utf8_lossy(&buf[..colon.min(40)])
                )));
                return;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let body = String::from_utf8_lossy(&buf[colon + 1..colon + 1 + len]).into_owned();
            buf.drain(..colon + 1 + len + 1);
            if std::env::var_os("E2E_BARESIP_CTRL_DEBUG").is_some() {
                eprintln!("[e2e] ctrl {:?} <- {body}", s.local_addr().ok());
            }
            let msg = match Json::parse(&body) {
                Ok(j) => {
                    if j.get("event").and_then(Json::as_bool) == Some(true) {
                        CtrlMsg::Event(Event {
                            kind: j.str_of("type"),
                            class: j.str_of("class"),
                            param: j.str_of("param"),
                            peeruri: j.str_of("peeruri"),
                            id: j.str_of("id"),
                            direction: j.str_of("direction"),
                            accountaor: j.str_of("accountaor"),
                            raw: body.clone(),
                            json: j,
                            at: Instant::now(),
                        })
                    } else if j.get("response").and_then(Json::as_bool) == Some(true) {
                        CtrlMsg::Response {
                            ok: j.get("ok").and_then(Json::as_bool).unwrap_or(false),
                            data: j.str_of("data"),
                            token: j.str_of("token"),
                        }
                    } else {
                        continue;
                    }
                }
                Err(e) => {
                    eprintln!("[e2e] baresip control: unparsable message {body:?}: {e}");
                    continue;
                }
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
        match s.read(&mut tmp) {
            Ok(0) => {
                let _ = tx.send(CtrlMsg::Closed("EOF".into()));
                return;
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => {
                let _ = tx.send(CtrlMsg::Closed(e.to_string()));
                return;
            }
        }
    }
}
