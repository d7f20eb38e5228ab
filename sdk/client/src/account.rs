//! The driver of one account: a flow to the PBX (UDP, TCP or TLS), the
//! RFC 3261 transaction layer (retransmissions, timeouts), the
//! [`Registration`] engine and the account's [`Call`] engines, in one
//! tokio task. The app talks to it through [`Account`] (register, dial,
//! answer, reject, hang up, close) and hears from it on an event channel.
//! A call either carries audio through an [`AudioPort`] (the SDK makes the
//! SDP and runs the media, see [`crate::media`]; over TLS its offers are
//! SDES-SRTP, and an encrypted offer is always answered encrypted) or SDP
//! the app supplies.
//!
//! UDP uses a connected socket on purpose: the kernel then picks the source
//! address the route to the PBX takes, which is what Via and Contact must
//! name. TCP and TLS flows are kept alive with RFC 5626 CRLF pings; a flow
//! that breaks or stops answering is replaced and the account registers
//! over the new one at once. [`Account::network_changed`] does the same
//! when the app learns the device changed networks (Wi-Fi -> LTE).

use crate::call::{Call, CallEvent, CallOutput, Credentials, PhoneAddress};
use crate::audio::AudioPort;
use crate::keepalive::{KeepAlive, KeepAliveAction};
use crate::media::{self, CallMedia, MediaSockets};
use bytes::Bytes;
use std::collections::HashMap;
use crate::registration::{Flow, RegEvent, RegOutput, RegState, Registration, RegistrationConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tsunagu_sip::{
    parse_message, response_to, Frame, Framing, Input, Limits, Message, Output, Peer, StreamFramer, TimerConfig, TransactionLayer, TransportKind, TxEvent,
};

/// How the account reaches the PBX.
#[derive(Debug, Clone)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS, trusting the certificates in `ca` (PEM): the PBX's CA, or its
    /// own certificate for a development server. The server is named by
    /// its IP address.
    Tls { ca: PathBuf },
}

impl Transport {
    fn kind(&self) -> TransportKind {
        match self {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
            Transport::Tls { .. } => TransportKind::Tls,
        }
    }
}

/// What the app hears from an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Registration(RegEvent),
    /// A request from the PBX this version does not handle (answered 501).
    Unhandled { method: String },
    /// The flow to the PBX broke (closed, or no pong); a new one is opened.
    FlowLost { reason: String },
    /// A call is coming in: answer or reject it by its Call-ID.
    IncomingCall { call_id: String, from: String, offer: Bytes },
    /// Something happened in a call.
    Call { call_id: String, event: CallEvent },
    /// A call's media could not start (no common codec, no ports); the call
    /// is hung up or rejected.
    MediaFailed { call_id: String, reason: String },
}

enum Command {
    NetworkChanged,
    Close(oneshot::Sender<()>),
    Dial { target: String, sdp: Bytes, reply: oneshot::Sender<Result<String, String>> },
    DialWithAudio { target: String, port: Arc<dyn AudioPort>, reply: oneshot::Sender<Result<String, String>> },
    Answer { call_id: String, sdp: Bytes },
    AnswerWithAudio { call_id: String, port: Arc<dyn AudioPort> },
    Reject { call_id: String, code: u16 },
    Hangup { call_id: String },
    Dtmf { call_id: String, digits: String },
    AnswerOffer { call_id: String, sdp: Option<Bytes> },
    Hold { call_id: String, on: bool },
    Mute { call_id: String, muted: bool },
}

/// One account registered with one PBX. Cheap to clone; `close` ends it.
#[derive(Clone)]
pub struct Account {
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<Mutex<RegState>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad account settings: {0}")]
    Config(#[from] crate::registration::ConfigError),
    #[error("cannot reach the PBX: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// Keep-alive of TCP and TLS flows (RFC 5626 §4.4.1 recommends 95–120 s).
const PING_INTERVAL: Duration = Duration::from_secs(110);
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

impl Account {
    /// Register over UDP. Events arrive on the returned receiver.
    pub async fn start(server: SocketAddr, config: RegistrationConfig) -> Result<(Account, mpsc::UnboundedReceiver<AccountEvent>), StartError> {
        Self::start_with(server, Transport::Udp, config).await
    }

    /// Open a flow of `transport` to `server` and register over it.
    pub async fn start_with(
        server: SocketAddr,
        transport: Transport,
        config: RegistrationConfig,
    ) -> Result<(Account, mpsc::UnboundedReceiver<AccountEvent>), StartError> {
        let registration = Registration::new(config.clone(), rand::random())?;
        let tls = match &transport {
            Transport::Tls { ca } => Some(tls_connector(ca)?),
            _ => None,
        };
        let dialer = Dialer { server, transport, tls };
        let conn = dialer.connect().await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(RegState::Idle));
        tokio::spawn(run(dialer, conn, registration, config, rx, events, state.clone()));
        Ok((Account { commands, state }, events_rx))
    }

    pub fn state(&self) -> RegState {
        self.state.lock().map(|s| s.clone()).unwrap_or(RegState::Idle)
    }

    /// The device's network changed: register over a new flow now.
    pub fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged);
    }

    /// Call `target` (an extension or a number as dialled), offering `sdp`.
    /// Returns the call's id (its Call-ID); its progress arrives as
    /// [`AccountEvent::Call`].
    pub async fn dial(&self, target: &str, sdp: Bytes) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Dial { target: target.to_string(), sdp, reply }).map_err(|_| "the account is closed".to_string())?;
        rx.await.map_err(|_| "the account is closed".to_string())?
    }

    /// Call `target` with audio: RTP on this device, the audio going to and
    /// from `port` (a sound device, or a file or tone for tests and tools).
    pub async fn dial_with_audio(&self, target: &str, port: Arc<dyn AudioPort>) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::DialWithAudio { target: target.to_string(), port, reply }).map_err(|_| "the account is closed".to_string())?;
        rx.await.map_err(|_| "the account is closed".to_string())?
    }

    /// Answer an incoming call with audio through `port`. An offer with no
    /// codec we do is rejected with 488.
    pub fn answer_with_audio(&self, call_id: &str, port: Arc<dyn AudioPort>) {
        let _ = self.commands.send(Command::AnswerWithAudio { call_id: call_id.to_string(), port });
    }

    /// Answer with SDP the app made itself (no media in the SDK).
    pub fn answer(&self, call_id: &str, sdp: Bytes) {
        let _ = self.commands.send(Command::Answer { call_id: call_id.to_string(), sdp });
    }

    pub fn reject(&self, call_id: &str, code: u16) {
        let _ = self.commands.send(Command::Reject { call_id: call_id.to_string(), code });
    }

    /// Put the far end of a call with audio on hold (`true`: a re-INVITE
    /// offering sendonly, RFC 3264 §8.4) or resume it (sendrecv). The
    /// answer arrives as [`CallEvent::OfferAnswered`]; a call that is not
    /// connected yet, or has an offer under way, gets
    /// [`CallEvent::OfferRefused`] with 491.
    pub fn hold(&self, call_id: &str, on: bool) {
        let _ = self.commands.send(Command::Hold { call_id: call_id.to_string(), on });
    }

    /// Answer a new offer in a call without SDK media (see
    /// [`CallEvent::RemoteOffer`]); `None` refuses it with 488.
    pub fn answer_offer(&self, call_id: &str, sdp: Option<Bytes>) {
        let _ = self.commands.send(Command::AnswerOffer { call_id: call_id.to_string(), sdp });
    }

    /// Send key presses in a call with audio (RFC 4733 events, in order).
    pub fn send_dtmf(&self, call_id: &str, digits: &str) {
        let _ = self.commands.send(Command::Dtmf { call_id: call_id.to_string(), digits: digits.to_string() });
    }

    /// Mute or unmute our side of a call with audio.
    pub fn mute(&self, call_id: &str, muted: bool) {
        let _ = self.commands.send(Command::Mute { call_id: call_id.to_string(), muted });
    }

    pub fn hangup(&self, call_id: &str) {
        let _ = self.commands.send(Command::Hangup { call_id: call_id.to_string() });
    }

    /// Unregister (waiting at most `timeout` for the PBX) and stop.
    pub async fn close(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, StartError> {
    let pem = std::fs::read(ca).map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
        roots.add(cert).map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(StartError::Tls(format!("{}: no certificate in the file", ca.display())));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens flows to the PBX.
struct Dialer {
    server: SocketAddr,
    transport: Transport,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// One flow.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamFramer),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, StreamFramer),
}

/// What a read from a flow gave.
enum Incoming {
    Messages(Vec<Message>),
    Pong,
    Closed(String),
}

impl Dialer {
    async fn connect(&self) -> std::io::Result<Conn> {
        let limits = Limits::default();
        let connect_tcp = || async {
            let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(self.server))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out"))??;
            let _ = s.set_nodelay(true);
            Ok::<_, std::io::Error>(s)
        };
        match &self.transport {
            Transport::Udp => {
                let bind: SocketAddr = if self.server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let s = UdpSocket::bind(bind).await?;
                s.connect(self.server).await?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp => Ok(Conn::Tcp(connect_tcp().await?, StreamFramer::new(limits))),
            Transport::Tls { .. } => {
                let tcp = connect_tcp().await?;
                let connector = self.tls.clone().ok_or_else(|| std::io::Error::other("no TLS settings"))?;
                let name = rustls::pki_types::ServerName::IpAddress(self.server.ip().into());
                let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                Ok(Conn::Tls(Box::new(tls), StreamFramer::new(limits)))
            }
        }
    }
}

impl Conn {
    fn local(&self) -> std::io::Result<SocketAddr> {
        match self {
            Conn::Udp(s) => s.local_addr(),
            Conn::Tcp(s, _) => s.local_addr(),
            Conn::Tls(s, _) => s.get_ref().0.local_addr(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).await.map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(bytes).await,
            Conn::Tls(s, _) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Incoming {
        let limits = Limits::default();
        let (n, framer) = match self {
            Conn::Udp(s) => {
                return match s.recv(buf).await {
                    // Garbage from the network is dropped.
                    Ok(n) => Incoming::Messages(parse_message(&buf[..n], Framing::Datagram, &limits).into_iter().collect()),
                    // ICMP port unreachable on a connected socket: the
                    // transaction's timeout reports the missing PBX.
                    Err(_) => Incoming::Messages(Vec::new()),
                };
            }
            Conn::Tcp(s, f) => (s.read(buf).await, f),
            Conn::Tls(s, f) => (s.read(buf).await, f),
        };
        match n {
            Ok(0) => Incoming::Closed("the PBX closed the connection".into()),
            Err(e) => Incoming::Closed(e.to_string()),
            Ok(n) => {
                framer.push(&buf[..n]);
                let mut out = Vec::new();
                let mut pong = false;
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            if let Ok(m) = parse_message(&bytes, Framing::Stream, &limits) {
                                out.push(m);
                            }
                        }
                        Ok(Some(Frame::Pong)) => pong = true,
                        // The PBX does not ping us; nothing to answer.
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(e) => return Incoming::Closed(format!("framing lost: {e}")),
                    }
                }
                if out.is_empty() && pong {
                    Incoming::Pong
                } else {
                    Incoming::Messages(out)
                }
            }
        }
    }
}

async fn run(
    dialer: Dialer,
    conn: Conn,
    mut reg: Registration,
    config: RegistrationConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<AccountEvent>,
    state: Arc<Mutex<RegState>>,
) {
    let kind = dialer.transport.kind();
    let mut flow_id: u64 = 1;
    let mut conn = Some(conn);
    let mut tx = TransactionLayer::new(TimerConfig::default());
    let mut buf = vec![0u8; 65536];
    let mut closing: Option<oneshot::Sender<()>> = None;
    let new_keepalive = |now| (kind != TransportKind::Udp).then(|| KeepAlive::new(now, PING_INTERVAL, PONG_TIMEOUT, rand::random()));
    let mut keepalive = new_keepalive(Instant::now());
    if let Some(c) = &conn {
        register_over(&mut reg, c, kind);
    }
    let mut calls = Calls::default();
    let creds = Credentials { user: config.user.clone(), password: config.password.clone() };
    loop {
        // Drain the engines: registration -> transactions -> flow.
        loop {
            let mut progressed = false;
            while let Some(out) = reg.poll_output() {
                progressed = true;
                match out {
                    RegOutput::Send(request) => {
                        if conn.is_none() {
                            // A retry is due but the flow is gone: open one.
                            match dialer.connect().await {
                                Ok(c) => {
                                    conn = Some(c);
                                    flow_id += 1;
                                    keepalive = new_keepalive(Instant::now());
                                }
                                Err(e) => {
                                    reg.flow_failed(Instant::now(), &format!("cannot reach the PBX: {e}"));
                                    continue;
                                }
                            }
                        }
                        let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                        tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
                    }
                    RegOutput::Event(ev) => {
                        let done = matches!(ev, RegEvent::Unregistered);
                        let _ = events.send(AccountEvent::Registration(ev));
                        if done {
                            if let Ok(mut s) = state.lock() {
                                *s = reg.state().clone();
                            }
                            if let Some(c) = closing.take() {
                                let _ = c.send(());
                                return;
                            }
                        }
                    }
                }
            }
            for (call_id, out) in calls.drain_outputs() {
                progressed = true;
                match out {
                    CallOutput::Request(request) => {
                        if let Some(b) = request.core.top_branch() {
                            calls.by_branch.insert(b.to_string(), call_id.clone());
                        }
                        let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                        tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
                    }
                    CallOutput::Response { key, response } => tx.handle_input(Instant::now(), Input::SendResponse { key, response: *response }),
                    CallOutput::Raw(bytes) => {
                        if let Some(c) = conn.as_mut() {
                            let _ = c.send(&bytes).await;
                        }
                    }
                    CallOutput::Event(event) => {
                        if let CallEvent::Connected { sdp: Some(answer) } = &event {
                            // Our offer was answered: start the media.
                            if let Some((sockets, port)) = calls.pending_media.remove(&call_id) {
                                match sockets.take_answer(answer).and_then(|m| CallMedia::start(sockets, m, port)) {
                                    Ok(m) => {
                                        calls.media.insert(call_id.clone(), m);
                                    }
                                    Err(e) => {
                                        let _ = events.send(AccountEvent::MediaFailed { call_id: call_id.clone(), reason: e.to_string() });
                                        if let Some(call) = calls.map.get_mut(&call_id) {
                                            call.hangup();
                                        }
                                    }
                                }
                            }
                        }
                        if let CallEvent::OfferAnswered { sdp } = &event {
                            if let Some(m) = calls.media.get_mut(&call_id) {
                                if let Err(e) = m.take_answer(sdp) {
                                    let _ = events.send(AccountEvent::MediaFailed { call_id: call_id.clone(), reason: e.to_string() });
                                }
                            }
                        }
                        if let CallEvent::RemoteOffer { sdp } = &event {
                            // Calls with audio in the SDK answer new offers
                            // themselves; others leave it to the app
                            // (`Account::answer_offer`).
                            if let Some(m) = calls.media.get_mut(&call_id) {
                                let answer = m.answer_reoffer(sdp).ok();
                                if let Some(call) = calls.map.get_mut(&call_id) {
                                    call.answer_offer(Instant::now(), answer);
                                }
                            }
                        }
                        let ended = matches!(event, CallEvent::Ended { .. });
                        let _ = events.send(AccountEvent::Call { call_id: call_id.clone(), event });
                        if ended {
                            calls.remove(&call_id);
                        }
                    }
                }
            }
            while let Some(out) = tx.poll_output() {
                progressed = true;
                match out {
                    Output::Transmit { bytes, peer } => {
                        if peer.flow != flow_id {
                            continue; // for a flow that was replaced
                        }
                        let failed = match conn.as_mut() {
                            Some(c) => c.send(&bytes).await.err().map(|e| e.to_string()),
                            None => Some("no flow".to_string()),
                        };
                        if let Some(why) = failed {
                            if kind != TransportKind::Udp {
                                conn = None;
                                let _ = events.send(AccountEvent::FlowLost { reason: why.clone() });
                            }
                            reg.flow_failed(Instant::now(), &why);
                        }
                    }
                    Output::Event(TxEvent::Response { response, .. }) => {
                        if response.core.cseq.method == "REGISTER" {
                            reg.handle_response(Instant::now(), &response);
                        } else if let Some(call) = calls.map.get_mut(&response.core.call_id) {
                            call.handle_response(&response);
                        }
                    }
                    Output::Event(TxEvent::Timeout { key }) => match calls.by_branch.remove(&key.branch) {
                        Some(call_id) => {
                            if let Some(call) = calls.map.get_mut(&call_id) {
                                call.handle_failure();
                            }
                        }
                        None => reg.handle_failure(Instant::now(), "no answer from the PBX"),
                    },
                    Output::Event(TxEvent::Request { key, request, peer }) => {
                        if let Some(call) = calls.map.get_mut(&request.core.call_id) {
                            call.handle_request(Instant::now(), &request, key);
                            continue;
                        }
                        let code = match request.method.as_str() {
                            // Keep-alive OPTIONS from the PBX.
                            "OPTIONS" => 200,
                            "ACK" => continue,
                            "INVITE" if request.core.to.tag.is_none() => {
                                let Some(flow) = current_flow(&conn, kind) else { continue };
                                let local = PhoneAddress { user: config.user.clone(), flow };
                                let call_id = request.core.call_id.clone();
                                let from = request.core.from.user().unwrap_or_default();
                                let call = Call::incoming(local, request, key, peer, rand::random());
                                let offer = call.remote_offer().clone();
                                calls.map.insert(call_id.clone(), call);
                                let _ = events.send(AccountEvent::IncomingCall { call_id, from, offer });
                                continue;
                            }
                            "INVITE" | "BYE" | "CANCEL" => 481,
                            m => {
                                let _ = events.send(AccountEvent::Unhandled { method: m.to_string() });
                                501
                            }
                        };
                        let resp = response_to(&request, code, Some("sdk"));
                        tx.handle_input(Instant::now(), Input::SendResponse { key, response: resp });
                    }
                    Output::Event(_) => {}
                }
            }
            if !progressed {
                break;
            }
        }
        if let Ok(mut s) = state.lock() {
            *s = reg.state().clone();
        }
        let wake = [reg.poll_timeout(), tx.poll_timeout(), keepalive.as_ref().filter(|_| conn.is_some()).map(|k| k.next_wake()), calls.next_timeout()].into_iter().flatten().min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            match conn.as_mut() {
                Some(c) => c.recv(&mut buf).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = read => match incoming {
                Incoming::Messages(msgs) => {
                    let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                    for m in msgs {
                        match m {
                            Message::Response(response) => tx.handle_input(Instant::now(), Input::Response { response, peer }),
                            Message::Request(request) => tx.handle_input(Instant::now(), Input::Request { request, peer }),
                        }
                    }
                }
                Incoming::Pong => {
                    if let Some(k) = keepalive.as_mut() {
                        k.pong();
                    }
                }
                Incoming::Closed(why) => {
                    let _ = events.send(AccountEvent::FlowLost { reason: why.clone() });
                    conn = None;
                    replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, &why).await;
                    keepalive = new_keepalive(Instant::now());
                }
            },
            _ = sleep => {
                let now = Instant::now();
                tx.handle_input(now, Input::Timeout);
                reg.handle_timeout(now);
                for call in calls.map.values_mut() {
                    call.handle_timeout(now);
                }
                match keepalive.as_mut().and_then(|k| k.poll(now)) {
                    Some(KeepAliveAction::SendPing) => {
                        if let Some(c) = conn.as_mut() {
                            if c.send(b"\r\n\r\n").await.is_err() {
                                conn = None;
                            }
                        }
                    }
                    Some(KeepAliveAction::Failed) => {
                        let why = "no keep-alive pong from the PBX";
                        let _ = events.send(AccountEvent::FlowLost { reason: why.into() });
                        conn = None;
                        replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, why).await;
                        keepalive = new_keepalive(now);
                    }
                    None => {}
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Command::NetworkChanged) => {
                    conn = None;
                    replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, "network changed").await;
                    keepalive = new_keepalive(Instant::now());
                }
                Some(Command::Close(done)) => {
                    closing = Some(done);
                    for call in calls.map.values_mut() {
                        call.hangup();
                    }
                    reg.unregister(Instant::now());
                }
                Some(Command::Dial { target, sdp, reply }) => match current_flow(&conn, kind) {
                    Some(flow) => {
                        let local = PhoneAddress { user: config.user.clone(), flow };
                        let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                        let call = Call::dial(local, peer, &config.domain, &target, sdp, Some(creds.clone()), rand::random());
                        let call_id = call.call_id().to_string();
                        calls.map.insert(call_id.clone(), call);
                        let _ = reply.send(Ok(call_id));
                    }
                    None => {
                        let _ = reply.send(Err("not connected to the PBX".to_string()));
                    }
                },
                Some(Command::DialWithAudio { target, port, reply }) => match current_flow(&conn, kind) {
                    Some(flow) => match MediaSockets::bind(flow.local.ip()).await {
                        Ok(sockets) => {
                            // SDES keys travel in the SDP: encrypt the media
                            // when the signalling is encrypted (TLS).
                            let sockets = if kind == TransportKind::Tls { sockets.with_srtp() } else { sockets };
                            let sdp = sockets.offer(rand::random::<u32>() as u64);
                            let local = PhoneAddress { user: config.user.clone(), flow };
                            let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                            let call = Call::dial(local, peer, &config.domain, &target, sdp, Some(creds.clone()), rand::random());
                            let call_id = call.call_id().to_string();
                            calls.map.insert(call_id.clone(), call);
                            calls.pending_media.insert(call_id.clone(), (sockets, port));
                            let _ = reply.send(Ok(call_id));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(format!("no RTP ports: {e}")));
                        }
                    },
                    None => {
                        let _ = reply.send(Err("not connected to the PBX".to_string()));
                    }
                },
                Some(Command::AnswerWithAudio { call_id, port }) => {
                    let ip = current_flow(&conn, kind).map(|f| f.local.ip());
                    if let (Some(call), Some(ip)) = (calls.map.get_mut(&call_id), ip) {
                        let started = match MediaSockets::bind(ip).await {
                            Ok(sockets) => sockets.answer(call.remote_offer(), rand::random::<u32>() as u64).and_then(|(sdp, m)| CallMedia::start(sockets, m, port).map(|cm| (sdp, cm))),
                            Err(e) => Err(media::MediaSetupError::Start(e.to_string())),
                        };
                        match started {
                            Ok((sdp, cm)) => {
                                calls.media.insert(call_id.clone(), cm);
                                call.answer(Instant::now(), sdp);
                            }
                            Err(e) => {
                                let _ = events.send(AccountEvent::MediaFailed { call_id: call_id.clone(), reason: e.to_string() });
                                call.reject(488);
                            }
                        }
                    }
                }
                Some(Command::Answer { call_id, sdp }) => {
                    if let Some(call) = calls.map.get_mut(&call_id) {
                        call.answer(Instant::now(), sdp);
                    }
                }
                Some(Command::Reject { call_id, code }) => {
                    if let Some(call) = calls.map.get_mut(&call_id) {
                        call.reject(code);
                    }
                }
                Some(Command::Hold { call_id, on }) => {
                    let sent = match (calls.media.get_mut(&call_id), calls.map.get_mut(&call_id)) {
                        (Some(m), Some(call)) => call.reinvite(m.offer(if on { tsunagu_sip::sdp::Direction::SendOnly } else { tsunagu_sip::sdp::Direction::SendRecv })),
                        _ => false,
                    };
                    if !sent {
                        // Not connected (with SDK audio) yet, or an offer is
                        // under way: refused like a glare, try again later.
                        let _ = events.send(AccountEvent::Call { call_id: call_id.clone(), event: CallEvent::OfferRefused { code: 491 } });
                    }
                }
                Some(Command::AnswerOffer { call_id, sdp }) => {
                    if let Some(call) = calls.map.get_mut(&call_id) {
                        call.answer_offer(Instant::now(), sdp);
                    }
                }
                Some(Command::Dtmf { call_id, digits }) => {
                    if let Some(m) = calls.media.get(&call_id) {
                        digits.chars().for_each(|d| m.send_dtmf(d));
                    }
                }
                Some(Command::Mute { call_id, muted }) => {
                    if let Some(m) = calls.media.get(&call_id) {
                        m.mute(muted);
                    }
                }
                Some(Command::Hangup { call_id }) => {
                    if let Some(call) = calls.map.get_mut(&call_id) {
                        call.hangup();
                    }
                }
                None => return,
            },
        }
    }
}

/// The account's calls, by Call-ID, and which call each client
/// transaction (by branch) belongs to, for timeouts.
#[derive(Default)]
struct Calls {
    map: HashMap<String, Call>,
    by_branch: HashMap<String, String>,
    /// Our offer's RTP sockets and the audio port, until the answer comes.
    pending_media: HashMap<String, (MediaSockets, Arc<dyn AudioPort>)>,
    /// Running media, stopped when dropped.
    media: HashMap<String, CallMedia>,
}

impl Calls {
    fn drain_outputs(&mut self) -> Vec<(String, CallOutput)> {
        let mut out = Vec::new();
        for (id, call) in self.map.iter_mut() {
            while let Some(o) = call.poll_output() {
                out.push((id.clone(), o));
            }
        }
        out
    }

    fn remove(&mut self, call_id: &str) {
        self.map.remove(call_id);
        self.pending_media.remove(call_id);
        self.media.remove(call_id);
        self.by_branch.retain(|_, c| c != call_id);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.map.values().filter_map(|c| c.poll_timeout()).min()
    }
}

fn current_flow(conn: &Option<Conn>, kind: TransportKind) -> Option<Flow> {
    conn.as_ref().and_then(|c| c.local().ok()).map(|local| Flow { transport: kind, local })
}

fn register_over(reg: &mut Registration, conn: &Conn, kind: TransportKind) {
    match conn.local() {
        Ok(local) => reg.register(Instant::now(), Flow { transport: kind, local }),
        Err(e) => reg.handle_failure(Instant::now(), &e.to_string()),
    }
}

/// Open a new flow and register over it at once; if the PBX cannot be
/// reached, the registration's retry (with backoff) tries again later.
async fn replace_flow(dialer: &Dialer, conn: &mut Option<Conn>, flow_id: &mut u64, reg: &mut Registration, kind: TransportKind, why: &str) {
    match dialer.connect().await {
        Ok(c) => {
            *flow_id += 1;
            register_over(reg, &c, kind);
            *conn = Some(c);
        }
        Err(e) => {
            reg.flow_failed(Instant::now(), &format!("{why}; cannot reach the PBX: {e}"));
        }
    }
}
