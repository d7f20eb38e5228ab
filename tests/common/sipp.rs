//! SIPp as a test peer (the carrier, or a scripted phone): free ports on
//! the loopback addresses it binds, the process with its logs, and its
//! `-trace_msg` message log parsed for assertions.

use super::{require_tool, tail, wait_child, ChildGuard, Sandbox, SipMsg};
use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long one SIPp run may take in all (each is also given -timeout).
pub const SIPP_DEADLINE: Duration = Duration::from_secs(40);

fn taken() -> &'static Mutex<HashSet<(String, u16)>> {
    static S: OnceLock<Mutex<HashSet<(String, u16)>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashSet::new()))
}

/// `count` consecutive UDP ports on `ip`, the first even, free now and not
/// given to another test of this process.
pub fn free_udp_ports_on(ip: &str, count: u16) -> u16 {
    for _ in 0..500 {
        let Ok(s) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let p = s.local_addr().unwrap().port() & !1;
        if !(1024..=65000).contains(&p) {
            continue;
        }
        drop(s);
        let socks: Vec<_> = (0..count).map(|i| UdpSocket::bind((ip, p + i))).collect();
        if socks.iter().all(|s| s.is_ok()) {
            let mut set = taken().lock().unwrap();
            if (0..count).all(|i| !set.contains(&(ip.to_string(), p + i))) {
                for i in 0..count {
                    set.insert((ip.to_string(), p + i));
                }
                return p;
            }
        }
    }
    panic!("no free UDP ports on {ip}");
}

pub fn free_udp_port_on(ip: &str) -> u16 {
    free_udp_ports_on(ip, 1)
}


/// One message in SIPp's message log.
#[derive(Debug, Clone)]
pub struct Logged {
    pub incoming: bool,
    pub msg: SipMsg,
}

/// Parse a `-trace_msg` log: blocks after a line of dashes, each
/// `UDP message received [N] bytes :` or `UDP message sent (N bytes):`,
/// an empty line, then the message.
pub fn parse_sipp_log(text: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    for block in text.split("\n-----------------------------------------------") {
        let mut lines = block.lines();
        // The rest of the separator line (its timestamp).
        let _ = lines.next();
        let Some(kind) = lines.next() else { continue };
        // "Unexpected UDP message received:" repeats a message already
        // logged as received.
        let incoming = kind.contains("received");
        if kind.starts_with("Unexpected") || (!incoming && !kind.contains("sent")) {
            continue;
        }
        let rest: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        let Some(start) = rest.first() else { continue };
        let mut headers = Vec::new();
        let mut i = 1;
        while i < rest.len() && !rest[i].trim().is_empty() {
            if let Some((n, v)) = rest[i].split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
            i += 1;
        }
        let body_lines: Vec<&str> = rest.get(i + 1..).unwrap_or(&[]).to_vec();
        let mut body = body_lines.join("\r\n");
        while body.ends_with("\r\n") {
            body.truncate(body.len() - 2);
        }
        let msg = SipMsg {
            start_line: start.trim().to_string(),
            headers,
            body: body.clone().into_bytes(),
            raw: format!("{}\n{}", start.trim(), rest[1..].join("\n")).into_bytes(),
        };
        out.push(Logged { incoming, msg });
    }
    out
}

pub struct SippRun {
    pub name: String,
    pub status: ExitStatus,
    pub log: Vec<Logged>,
    pub report: String,
}

impl SippRun {
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "SIPp `{}` failed ({}):\n{}\n--- messages ---\n{}",
            self.name,
            self.status,
            self.report,
            self.summary()
        );
    }

    /// Requests SIPp received, by method (retransmissions included).
    pub fn received_requests(&self, method: &str) -> Vec<&SipMsg> {
        self.log
            .iter()
            .filter(|l| l.incoming && l.msg.status().is_none())
            .filter(|l| l.msg.start_line.starts_with(&format!("{method} ")))
            .map(|l| &l.msg)
            .collect()
    }

    /// First transmission of each INVITE SIPp received, in order.
    pub fn received_invites(&self) -> Vec<&SipMsg> {
        let mut seen = HashSet::new();
        self.received_requests("INVITE")
            .into_iter()
            .filter(|m| seen.insert(m.call_id().unwrap_or("").to_string()))
            .collect()
    }

    /// Responses SIPp received to `method` (by CSeq).
    pub fn received_responses(&self, method: &str) -> Vec<&SipMsg> {
        self.log
            .iter()
            .filter(|l| l.incoming && l.msg.status().is_some())
            .filter(|l| l.msg.cseq_method() == Some(method))
            .map(|l| &l.msg)
            .collect()
    }

    /// Final status codes SIPp received for its INVITE (first of each).
    pub fn invite_finals(&self) -> Vec<u16> {
        let mut v: Vec<u16> = Vec::new();
        for m in self.received_responses("INVITE") {
            let c = m.status().unwrap();
            if c >= 200 && !v.contains(&c) {
                v.push(c);
            }
        }
        v
    }

    pub fn summary(&self) -> String {
        self.log
            .iter()
            .map(|l| {
                format!(
                    "  [sipp {}] {} {} | CSeq {}",
                    self.name,
                    if l.incoming { "<-" } else { "->" },
                    l.msg.start_line,
                    l.msg.header("cseq").unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A SIPp process (killed when dropped).
pub struct Sipp {
    pub name: String,
    pub guard: ChildGuard,
    pub dir: PathBuf,
    pub ip: String,
    pub port: u16,
}

impl Sipp {
    /// Start SIPp with the scenario file `scenario` bound to ip:port (its
    /// four media ports found free there); `target` for a client, None for
    /// a server. `calls`: -m. Bounded by -timeout 25s and [`SIPP_DEADLINE`].
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        sb: &Sandbox,
        name: &str,
        scenario: &Path,
        ip: &str,
        port: u16,
        target: Option<SocketAddr>,
        calls: u32,
        extra: &[&str],
    ) -> Sipp {
        let bin = require_tool("sipp", "sip-tester");
        let dir = sb.file(&format!("sipp-{name}"));
        fs::create_dir_all(&dir).unwrap();
        let media = free_udp_ports_on(ip, 4);
        let out = File::create(dir.join("stdout.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.current_dir(&dir);
        if let Some(t) = target {
            cmd.arg(t.to_string());
        }
        cmd.arg("-sf")
            .arg(scenario)
            .args(["-t", "u1", "-i", ip, "-p", &port.to_string()])
            .args(["-mi", ip, "-mp", &media.to_string()])
            .args(["-m", &calls.to_string()])
            .args(["-timeout", "25s", "-timeout_error", "-nostdin"])
            .args(["-max_retrans", "6"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(dir.join("screen.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        let child = cmd.spawn().expect("start sipp");
        Sipp {
            name: name.to_string(),
            guard: ChildGuard::new(&format!("sipp-{name}"), child),
            dir,
            ip: ip.to_string(),
            port,
        }
    }

    /// A carrier UAS: wait until it has bound its SIP port.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.guard.exited() {
                panic!(
                    "SIPp `{}` exited ({st}) before listening:\n{}",
                    self.name,
                    tail(&self.dir.join("stdout.log"), 20)
                );
            }
            if UdpSocket::bind((self.ip.as_str(), self.port)).is_err() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "SIPp `{}` is not listening on {}:{} after 10 s",
                    self.name, self.ip, self.port
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) for SIPp to exit; its message log.
    pub fn finish(mut self) -> SippRun {
        let status = match wait_child(&mut self.guard.child, SIPP_DEADLINE) {
            Some(st) => st,
            None => panic!(
                "SIPp `{}` still running after {SIPP_DEADLINE:?}; messages so far:\n{}",
                self.name,
                tail(&self.dir.join("messages.log"), 80)
            ),
        };
        let text = fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default();
        let report = format!(
            "--- screen ---\n{}\n--- errors ---\n{}\n--- stdout ---\n{}",
            tail(&self.dir.join("screen.log"), 40),
            tail(&self.dir.join("errors.log"), 30),
            tail(&self.dir.join("stdout.log"), 20)
        );
        SippRun {
            name: self.name.clone(),
            status,
            log: parse_sipp_log(&text),
            report,
        }
    }
}
