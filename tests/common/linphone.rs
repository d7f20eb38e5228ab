//! Headless linphonec (liblinphone 5.1, Debian's `linphone-cli`) as a SIP
//! phone for the end-to-end tests, driven on its stdin and read on its stdout.
//!
//! Each instance gets its own HOME (with `.local/share/linphone` created:
//! without it liblinphone 5.1 never opens its SIP socket) and a fresh rc file
//! written per start (linphonec rewrites it). The rc binds SIP and RTP to
//! 127.0.0.1 (`[sip] bind_address`, `[rtp] bind_address`): without them it
//! listens on all addresses and advertises the machine's other (e.g. IPv6)
//! address in its SDP, which baresip refuses ("SDP offer AF not supported").
//! Audio comes from files (`soundcard use files`, `play WAV`) and what it
//! hears goes to a file (`record WAV`: 16-bit mono at the codec's rate; its
//! header is written only when the call ends, 44 zero bytes until then).
//!
//! linphonec never exits at the end of its input (it prints "Terminating..."
//! and hangs): it runs under `timeout` (its own process group), and the
//! whole group is killed when the [`Linphonec`] is dropped.
//!
//! What linphonec 5.1.65 prints (after a `linphonec> ` prompt, often on the
//! same line) and what is waited for here:
//!
//! * `Establishing call id to URI, assigned id N` / `Call N to URI in progress.`
//!   / `Call N to URI ringing.`
//! * `Receiving new incoming call from URI, assigned id N` (then, with `-a`,
//!   `-------auto answering to call-------`)
//! * `Call N with URI connected.` / `Media streams established with URI for
//!   call N (audio).`
//! * `Call N with URI ended (REASON).` / `Call N with URI error.`
//! * `Receiving tone D from URI` (RFC 4733 DTMF received)
//! * `status register` answers `registered, identity=AOR duration=SECS`,
//!   `registered=0` (not registered) or `registered=-1` (no proxy).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::audio;
use super::baresip::SipTransport;
use super::{free_sip_port, require_tool, tail, ChildGuard, Sandbox, LOCALHOST};

/// Default lifetime (`timeout`) of a linphonec process, seconds.
pub const DEFAULT_LIFETIME_SECS: u32 = 180;
/// How long linphonec gets to start and open its SIP socket.
pub const START_DEADLINE: Duration = Duration::from_secs(15);
/// Length of the tone files made for [`Linphonec::builder`]'s `tone`.
pub const TONE_SECS: f32 = 180.0;

/// liblinphone's audio codecs as its rc lists them: (mime, rate, channels,
/// recv_fmtp), in its default order.
const CODECS: &[(&str, u32, u32, &str)] = &[
    ("opus", 48000, 2, "useinbandfec=1"),
    ("speex", 16000, 1, "vbr=on"),
    ("speex", 8000, 1, "vbr=on"),
    ("PCMU", 8000, 1, ""),
    ("PCMA", 8000, 1, ""),
    ("GSM", 8000, 1, ""),
    ("G722", 8000, 1, ""),
    ("G729", 8000, 1, "annexb=yes"),
    ("speex", 32000, 1, "vbr=on"),
    ("G726-16", 8000, 1, ""),
    ("G726-24", 8000, 1, ""),
    ("G726-32", 8000, 1, ""),
    ("G726-40", 8000, 1, ""),
    ("AAL2-G726-16", 8000, 1, ""),
    ("AAL2-G726-24", 8000, 1, ""),
    ("AAL2-G726-32", 8000, 1, ""),
    ("AAL2-G726-40", 8000, 1, ""),
    ("L16", 44100, 2, ""),
    ("L16", 44100, 1, ""),
];

/// A registration at a registrar (the PBX).
#[derive(Clone, Debug)]
pub struct LinphoneAccount {
    pub user: String,
    pub password: String,
    /// The registrar's SIP address (its TLS address for TLS).
    pub registrar: SocketAddr,
    pub transport: SipTransport,
    pub expires: u32,
}

impl LinphoneAccount {
    pub fn new(user: &str, password: &str, registrar: SocketAddr) -> Self {
        LinphoneAccount {
            user: user.to_string(),
            password: password.to_string(),
            registrar,
            transport: SipTransport::Udp,
            expires: 600,
        }
    }
    pub fn transport(mut self, t: SipTransport) -> Self {
        self.transport = t;
        self
    }
    /// The identity, e.g. `sip:1001@127.0.0.1:5060`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.registrar)
    }
}

/// Options of a [`Linphonec`]; `start` it.
pub struct LinphonecBuilder<'a> {
    sb: &'a Sandbox,
    name: String,
    account: Option<LinphoneAccount>,
    auto_answer: bool,
    codecs: Vec<String>,
    media_encryption: Option<(String, bool)>,
    play: Option<PathBuf>,
    tone: Option<f32>,
    cafile: Option<PathBuf>,
    lifetime_secs: u32,
    rc_lines: Vec<(String, String, String)>,
}

impl<'a> LinphonecBuilder<'a> {
    /// Register at a registrar; without it the instance takes direct calls
    /// at `sip:NAME@127.0.0.1:PORT`.
    pub fn account(mut self, a: LinphoneAccount) -> Self {
        self.account = Some(a);
        self
    }
    /// `-a`: answer incoming calls at once.
    pub fn auto_answer(mut self, on: bool) -> Self {
        self.auto_answer = on;
        self
    }
    /// Enabled audio codecs in order of preference, by mime name (`PCMU`,
    /// `PCMA`, `opus`, `G722`, `speex`, `speex/16000`, ...); all others are
    /// disabled. Empty: liblinphone's defaults (opus, speex, PCMU, PCMA, ...).
    pub fn codecs(mut self, c: &[&str]) -> Self {
        self.codecs = c.iter().map(|s| s.to_string()).collect();
        self
    }
    /// `[sip] media_encryption` (`srtp`, `zrtp`, `dtls`) and whether it is
    /// mandatory.
    pub fn media_encryption(mut self, kind: &str, mandatory: bool) -> Self {
        self.media_encryption = Some((kind.to_string(), mandatory));
        self
    }
    /// Play this WAV file in calls (any rate, mono).
    pub fn play(mut self, wav: &Path) -> Self {
        self.play = Some(wav.to_path_buf());
        self
    }
    /// Play a sine of `hz` in calls (an 8 kHz mono WAV made in its HOME).
    pub fn tone(mut self, hz: f32) -> Self {
        self.tone = Some(hz);
        self
    }
    /// Verify the TLS server against this CA (otherwise TLS is not verified).
    pub fn cafile(mut self, p: &Path) -> Self {
        self.cafile = Some(p.to_path_buf());
        self
    }
    /// The process is killed after this many seconds whatever happens.
    pub fn lifetime_secs(mut self, s: u32) -> Self {
        self.lifetime_secs = s;
        self
    }
    /// An extra `key=value` in `[section]` of the rc file.
    pub fn rc_line(mut self, section: &str, key: &str, value: &str) -> Self {
        self.rc_lines
            .push((section.to_string(), key.to_string(), value.to_string()));
        self
    }
    pub fn start(self) -> Linphonec {
        Linphonec::launch(self)
    }
}

/// One line of linphonec's output, prompts removed.
#[derive(Debug, Clone)]
pub struct Line {
    pub text: String,
    pub at: Instant,
}

/// A running linphonec.
pub struct Linphonec {
    pub name: String,
    pub home: PathBuf,
    pub rc: PathBuf,
    /// liblinphone's debug log (`-d 6 -l`).
    pub log: PathBuf,
    /// A copy of what it printed on stdout.
    pub out_log: PathBuf,
    pub sip_port: u16,
    pub rtp_port: u16,
    /// The identity registered (None without an account).
    pub aor: Option<String>,
    /// What it plays, and where it records what it hears.
    pub play_wav: Option<PathBuf>,
    pub record_wav: PathBuf,
    guard: ChildGuard,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    /// Every line so far, with a "taken by a wait" mark.
    lines: Vec<(Line, bool)>,
    eof: bool,
    records: u32,
}

fn strip_prompts(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        match t.strip_prefix("linphonec>") {
            Some(rest) => s = rest,
            None => return t.trim_end(),
        }
    }
}

/// Is UDP `port` on 127.0.0.1 (or any address) bound by some process?
fn udp_port_bound(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        fs::read_to_string(f)
            .map(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .map(|local| local.ends_with(&want))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    })
}

impl Linphonec {
    /// Options for an instance named `name` (its HOME, logs and, without an
    /// account, the user part of its URI).
    pub fn builder<'a>(sb: &'a Sandbox, name: &str) -> LinphonecBuilder<'a> {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "linphonec instance name {name:?}: use letters, digits, - and _"
        );
        LinphonecBuilder {
            sb,
            name: name.to_string(),
            account: None,
            auto_answer: false,
            codecs: Vec::new(),
            media_encryption: None,
            play: None,
            tone: None,
            cafile: None,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            rc_lines: Vec::new(),
        }
    }

    fn rc_text(o: &LinphonecBuilder, sip_port: u16, rtp_port: u16) -> String {
        let t = o.account.as_ref().map(|a| a.transport);
        let tcp = if t == Some(SipTransport::Tcp) { sip_port as i32 } else { 0 };
        let tls = if t == Some(SipTransport::Tls) { sip_port as i32 + 1 } else { 0 };
        let mut sip = vec![
            format!("sip_port={sip_port}"),
            format!("sip_tcp_port={tcp}"),
            format!("sip_tls_port={tls}"),
            "use_ipv6=0".into(),
            format!("bind_address={LOCALHOST}"),
            format!("contact=sip:{}@{LOCALHOST}", o.name),
            "guess_hostname=0".into(),
            // Do not wait for a "network is up" guess (there may be no default
            // route on a test machine).
            "register_only_when_network_is_up=0".into(),
            "auto_net_state_mon=0".into(),
            format!(
                "default_proxy={}",
                if o.account.is_some() { "0" } else { "-1" }
            ),
        ];
        match &o.cafile {
            Some(ca) => {
                sip.push(format!("root_ca={}", ca.display()));
                sip.push("verify_server_certs=1".into());
                sip.push("verify_server_cn=1".into());
            }
            None => {
                sip.push("verify_server_certs=0".into());
                sip.push("verify_server_cn=0".into());
            }
        }
        if let Some((kind, mandatory)) = &o.media_encryption {
            sip.push(format!("media_encryption={kind}"));
            sip.push(format!("media_encryption_mandatory={}", *mandatory as u8));
        }
        let mut sections: Vec<(String, Vec<String>)> = vec![
            ("sip".into(), sip),
            (
                "rtp".into(),
                vec![
                    format!("audio_rtp_port={rtp_port}"),
                    format!("bind_address={LOCALHOST}"),
                ],
            ),
            ("sound".into(), vec!["echocancellation=0".into()]),
            (
                "video".into(),
                vec!["enabled=0".into(), "capture=0".into(), "display=0".into()],
            ),
        ];
        if let Some(a) = &o.account {
            sections.push((
                "proxy_0".into(),
                vec![
                    format!(
                        "reg_proxy=<sip:{};transport={}>",
                        a.registrar,
                        a.transport.param()
                    ),
                    format!("reg_identity={}", a.aor()),
                    format!("reg_expires={}", a.expires),
                    "reg_sendregister=1".into(),
                    "publish=0".into(),
                ],
            ));
            sections.push((
                "auth_info_0".into(),
                vec![
                    format!("username={}", a.user),
                    format!("userid={}", a.user),
                    format!("passwd={}", a.password),
                ],
            ));
        }
        if !o.codecs.is_empty() {
            // Wanted codecs first (enabled), then every other one disabled.
            let mut order: Vec<(usize, bool)> = Vec::new();
            for want in &o.codecs {
                let (name, rate) = match want.split_once('/') {
                    Some((n, r)) => (n, r.parse::<u32>().ok()),
                    None => (want.as_str(), None),
                };
                let i = CODECS
                    .iter()
                    .position(|(m, r, _, _)| m.eq_ignore_ascii_case(name) && rate.is_none_or(|x| x == *r))
                    .unwrap_or_else(|| panic!("linphonec: unknown codec {want:?}"));
                order.push((i, true));
            }
            for i in 0..CODECS.len() {
                if !order.iter().any(|(j, _)| *j == i) {
                    order.push((i, false));
                }
            }
            for (n, (i, on)) in order.into_iter().enumerate() {
                let (mime, rate, ch, fmtp) = CODECS[i];
                let mut v = vec![
                    format!("mime={mime}"),
                    format!("rate={rate}"),
                    format!("channels={ch}"),
                    format!("enabled={}", on as u8),
                ];
                if !fmtp.is_empty() {
                    v.push(format!("recv_fmtp={fmtp}"));
                }
                sections.push((format!("audio_codec_{n}"), v));
            }
        }
        for (sec, k, v) in &o.rc_lines {
            let line = format!("{k}={v}");
            match sections.iter_mut().find(|(s, _)| s == sec) {
                Some((_, lines)) => {
                    lines.retain(|l| !l.starts_with(&format!("{k}=")));
                    lines.push(line);
                }
                None => sections.push((sec.clone(), vec![line])),
            }
        }
        let mut s = String::new();
        for (sec, lines) in sections {
            s.push_str(&format!("[{sec}]\n"));
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
            s.push('\n');
        }
        s
    }

    fn launch(o: LinphonecBuilder) -> Linphonec {
        let bin = require_tool("linphonec", "linphone-cli");
        let timeout_bin = require_tool("timeout", "coreutils");
        let home = o.sb.file(&format!("linphonec-{}", o.name));
        // liblinphone 5.1 does not open its SIP socket without this folder.
        fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
        let play_wav = match (&o.play, o.tone) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(hz)) => {
                let p = home.join(format!("tone-{hz}.wav"));
                audio::make_tone_wav(&p, hz, TONE_SECS, 8000);
                Some(p)
            }
            (None, None) => None,
        };
        let record_wav = home.join("heard-1.wav");
        let mut last_err = String::new();
        for attempt in 0..4 {
            let sip_port = free_sip_port();
            // free_sip_port reserves P and P+1 (UDP and TCP free): RTP and RTCP.
            let rtp_port = free_sip_port();
            let rc = home.join("linphonerc");
            fs::write(&rc, Self::rc_text(&o, sip_port, rtp_port)).unwrap();
            let log = o.sb.file(&format!("linphonec-{}.log", o.name));
            let out_log = o.sb.file(&format!("linphonec-{}.out", o.name));
            let err = File::create(o.sb.file(&format!("linphonec-{}.err", o.name))).unwrap();
            let _ = fs::remove_file(&log);
            let mut cmd = Command::new(&timeout_bin);
            cmd.args(["-k", "5"])
                .arg(o.lifetime_secs.to_string())
                .arg(&bin)
                .arg("-c")
                .arg(&rc)
                .args(["-d", "6", "-l"])
                .arg(&log);
            if o.auto_answer {
                cmd.arg("-a");
            }
            let mut child = cmd
                .env("HOME", &home)
                .current_dir(&home)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start linphonec: {e}"));
            let stdin = child.stdin.take();
            let out = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            let mut outw = File::create(&out_log).unwrap();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(outw, "{line}");
                    let _ = tx.send(line);
                }
            });
            let mut l = Linphonec {
                name: o.name.clone(),
                home: home.clone(),
                rc,
                log,
                out_log,
                sip_port,
                rtp_port,
                aor: o.account.as_ref().map(|a| a.aor()),
                play_wav: play_wav.clone(),
                record_wav: record_wav.clone(),
                guard: ChildGuard::new(&format!("linphonec-{}", o.name), child),
                stdin,
                rx,
                lines: Vec::new(),
                eof: false,
                records: 1,
            };
            match l.setup() {
                Ok(()) => return l,
                Err(e) => {
                    last_err = format!("attempt {attempt}: {e}");
                    eprintln!("[e2e] linphonec {}: {last_err}", o.name);
                }
            }
        }
        panic!("linphonec {} could not be started: {last_err}", o.name);
    }

    /// Files instead of a sound card, the play and record files; then wait
    /// until its SIP socket is bound.
    fn setup(&mut self) -> Result<(), String> {
        self.cmd("soundcard use files");
        self.try_wait_line(START_DEADLINE, |l| {
            l.contains("Using wav files instead of soundcard")
        })
        .ok_or_else(|| {
            format!(
                "no answer to `soundcard use files` within {START_DEADLINE:?}; output:\n{}\nlog:\n{}",
                self.output_tail(20),
                tail(&self.log, 20)
            )
        })?;
        if let Some(p) = self.play_wav.clone() {
            self.cmd(&format!("play {}", p.display()));
        }
        let r = self.record_wav.clone();
        self.cmd(&format!("record {}", r.display()));
        let deadline = Instant::now() + START_DEADLINE;
        while !udp_port_bound(self.sip_port) {
            if let Some(st) = self.guard.exited() {
                return Err(format!("linphonec exited ({st}); output:\n{}", self.output_tail(20)));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "its SIP port {} (UDP) is not open after {START_DEADLINE:?} \
                     (is $HOME/.local/share/linphone there?); log:\n{}",
                    self.sip_port,
                    tail(&self.log, 30)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `sip:NAME@127.0.0.1:PORT`: where to call it directly.
    pub fn uri(&self) -> String {
        format!("sip:{}@{LOCALHOST}:{}", self.name, self.sip_port)
    }

    /// Process id of the `timeout` wrapper (the process group of linphonec).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Send one line on its stdin.
    pub fn cmd(&mut self, line: &str) {
        let name = self.name.clone();
        let stdin = self.stdin.as_mut().expect("linphonec stdin closed");
        if let Err(e) = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
        {
            panic!("linphonec {name}: cannot send {line:?}: {e}");
        }
    }

    fn pump(&mut self, wait: Duration) {
        let first = if wait.is_zero() {
            self.rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else {
            self.rx.recv_timeout(wait)
        };
        let mut m = first;
        loop {
            match m {
                Ok(raw) => {
                    let text = strip_prompts(&raw).to_string();
                    if !text.is_empty() {
                        self.lines.push((Line { text, at: Instant::now() }, false));
                    }
                }
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.eof = true;
                    return;
                }
            }
            m = self.rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            });
        }
    }

    /// Every output line so far.
    pub fn output(&mut self) -> Vec<String> {
        self.pump(Duration::ZERO);
        self.lines.iter().map(|(l, _)| l.text.clone()).collect()
    }

    /// The last `n` output lines read so far.
    pub fn output_tail(&self, n: usize) -> String {
        let v: Vec<&str> = self.lines.iter().map(|(l, _)| l.text.as_str()).collect();
        v[v.len().saturating_sub(n)..].join("\n")
    }

    /// The first line not yet taken that satisfies `pred`, waiting at most
    /// `timeout`; marks it taken.
    pub fn try_wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((l, taken)) = self.lines.iter_mut().find(|(l, t)| !*t && pred(&l.text)) {
                *taken = true;
                return Some(l.text.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.eof {
                let before = self.lines.len();
                self.pump(Duration::ZERO);
                if self.lines.len() == before {
                    return None;
                }
                continue;
            }
            self.pump(left.min(Duration::from_millis(200)));
        }
    }

    /// Like [`try_wait_line`](Self::try_wait_line), panicking with the output
    /// and the log after `timeout`.
    pub fn wait_line(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match self.try_wait_line(timeout, pred) {
            Some(l) => l,
            None => {
                let st = self
                    .guard
                    .exited()
                    .map(|s| format!(" (linphonec exited: {s})"))
                    .unwrap_or_default();
                panic!(
                    "linphonec {}: no {what} within {timeout:?}{st}; output:\n{}\nlog ({}):\n{}",
                    self.name,
                    self.output_tail(30),
                    self.log.display(),
                    tail(&self.log, 40)
                )
            }
        }
    }

    /// `call URI`; returns the call id it assigned.
    pub fn call(&mut self, uri: &str) -> u32 {
        self.cmd(&format!("call {uri}"));
        let l = self.wait_line("`Establishing call id to ...`", Duration::from_secs(5), |l| {
            l.starts_with("Establishing call id to")
                || l.contains("Error from linphone_core_invite")
                || l.contains("An error occured")
        });
        call_id_after(&l, "assigned id ").unwrap_or_else(|| {
            panic!("linphonec {}: `call {uri}` failed: {l}", self.name)
        })
    }

    /// Answer the ringing call (without `-a`).
    pub fn answer(&mut self) {
        self.cmd("answer");
    }

    /// Turn auto-answer on or off (`autoanswer enable|disable`).
    pub fn set_auto_answer(&mut self, on: bool) {
        let (cmd, want) = if on {
            ("autoanswer enable", "Auto answer enabled.")
        } else {
            ("autoanswer disable", "Auto answer disabled.")
        };
        self.cmd(cmd);
        self.wait_line(want, Duration::from_secs(5), |l| l == want);
    }

    /// Hang up the current call.
    pub fn terminate(&mut self) {
        self.cmd("terminate");
    }

    /// Send RFC 4733 DTMF: a line of only digits (0-9, *, #).
    pub fn send_dtmf(&mut self, digits: &str) {
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'),
            "linphonec DTMF {digits:?}: digits, * and # only"
        );
        self.cmd(digits);
    }

    /// Wait for an incoming call; returns its id.
    pub fn wait_incoming(&mut self, timeout: Duration) -> u32 {
        let l = self.wait_line("incoming call", timeout, |l| {
            l.starts_with("Receiving new incoming call from")
        });
        call_id_after(&l, "assigned id ").expect("call id")
    }

    /// Wait until a call is connected (`Call N with URI connected.`); returns
    /// N. Panics at once if a call fails (`error.` / `ended`) first.
    pub fn wait_connected(&mut self, timeout: Duration) -> u32 {
        let l = self.wait_line("connected call", timeout, |l| {
            l.starts_with("Call ")
                && (l.ends_with(" connected.") || l.ends_with(" error.") || l.contains(" ended ("))
        });
        if !l.ends_with(" connected.") {
            panic!(
                "linphonec {}: call failed: {l}\noutput:\n{}\nlog:\n{}",
                self.name,
                self.output_tail(20),
                tail(&self.log, 40)
            );
        }
        call_id_after(&l, "Call ").expect("call id")
    }

    /// Wait until a call has ended (`Call N with URI ended (REASON).` or
    /// `... error.`); returns the line. Then waits (at most 5 s) until the
    /// record file, if any, has its WAV header.
    pub fn wait_ended(&mut self, timeout: Duration) -> String {
        let l = self.wait_line("ended call", timeout, |l| {
            l.starts_with("Call ") && (l.contains(" ended (") || l.ends_with(" error."))
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.record_wav.exists()
            && audio::pending_wav_data_len(&self.record_wav).is_some()
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(20));
        }
        l
    }

    /// Wait until it reports receiving the DTMF `digit`.
    pub fn wait_dtmf(&mut self, digit: char, timeout: Duration) {
        let want = format!("Receiving tone {digit} ");
        self.wait_line(&format!("DTMF {digit:?}"), timeout, |l| l.starts_with(&want));
    }

    /// Wait until `status register` says it is registered.
    pub fn registered(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            self.cmd("status register");
            if let Some(l) = self.try_wait_line(Duration::from_secs(2), |l| l.starts_with("registered")) {
                if l.starts_with("registered, identity=") {
                    return;
                }
                last = l;
            }
            if Instant::now() >= deadline {
                panic!(
                    "linphonec {}: not registered within {timeout:?} (last status: {last:?}); \
                     output:\n{}\nlog:\n{}",
                    self.name,
                    self.output_tail(20),
                    tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(150));
        }
    }

    /// Record the next call into a new file (`heard-N.wav` in its HOME);
    /// returns its path. Do it before the call starts.
    pub fn record_next(&mut self) -> PathBuf {
        self.records += 1;
        self.record_wav = self.home.join(format!("heard-{}.wav", self.records));
        let r = self.record_wav.clone();
        self.cmd(&format!("record {}", r.display()));
        r
    }

    /// Play another WAV file from the next call on.
    pub fn play(&mut self, wav: &Path) {
        self.play_wav = Some(wav.to_path_buf());
        self.cmd(&format!("play {}", wav.display()));
    }

    /// (rate, channels) the recorder of the current record file writes, from
    /// liblinphone's debug log ("configuring X-->MSFileRec... to rate [R]
    /// and ... to channel [C]").
    pub fn record_format(&self) -> Option<(u32, u16)> {
        let log = fs::read_to_string(&self.log).ok()?;
        let start = log.rfind(&format!("MSFileRec: recording into {}", self.record_wav.display()))?;
        let after = |l: &str, key: &str| -> Option<u32> {
            let i = l.find(key)? + key.len();
            l[i..].split(']').next()?.trim().parse().ok()
        };
        log[start..]
            .lines()
            .filter(|l| l.contains("-->MSFileRec") && l.contains(" to rate ["))
            .filter_map(|l| Some((after(l, " to rate [")?, after(l, " to channel [")? as u16)))
            .next_back()
    }

    /// Seconds of audio in the current record file: from its header once
    /// written (the recording stopped), else from its size and
    /// [`record_format`](Self::record_format).
    pub fn recorded_secs(&self) -> f64 {
        match audio::pending_wav_data_len(&self.record_wav) {
            None => audio::wav_secs(&self.record_wav),
            Some(n) => match self.record_format() {
                Some((rate, ch)) => n as f64 / (rate as f64 * ch as f64 * 2.0),
                None => 0.0,
            },
        }
    }

    /// Wait until the record file holds at least `secs` of audio (while the
    /// call goes on); returns its path. Read it only after the call has
    /// ended ([`wait_ended`](Self::wait_ended) waits for its header).
    pub fn wait_heard(&mut self, secs: f64, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            if self.recorded_secs() >= secs {
                return self.record_wav.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "linphonec {}: {} holds {:.2} s of audio (recorder format {:?}), not {secs} s, \
                     after {timeout:?}; output:\n{}",
                    self.name,
                    self.record_wav.display(),
                    self.recorded_secs(),
                    self.record_format(),
                    self.output_tail(20)
                );
            }
            self.pump(Duration::from_millis(50));
        }
    }

    /// `quit`, then wait (bounded) for the exit. Unregisters first.
    pub fn quit(&mut self) {
        if self.stdin.is_some() {
            self.cmd("quit");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.guard.exited().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn call_id_after(line: &str, marker: &str) -> Option<u32> {
    let i = line.find(marker)? + marker.len();
    let digits: String = line[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Drop for Linphonec {
    fn drop(&mut self) {
        if thread::panicking() {
            let out = self.output_tail(25);
            eprintln!(
                "[e2e] linphonec {} output (last lines; debug log {}):\n{out}",
                self.name,
                self.log.display()
            );
        }
        self.stdin = None;
        // `timeout` made its own process group (pgid = its pid): kill the
        // group, i.e. linphonec and the wrapper. The ChildGuard then reaps.
        if self.guard.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.guard.pid())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
