//! SIP transports: UDP, TCP and TLS sockets. Each turns bytes into parsed
//! messages for the endpoint, answers what cannot be parsed (statelessly),
//! and sends what the endpoint gives it back on the same flow.

use super::endpoint::Endpoint;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::net::UdpSocket;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tsunagu_sip::{parse_message, Frame, Framing, Limits, ParseError, ParseErrorKind, Peer, StreamFramer, TransportKind};

/// Idle connections are closed after this long without any bytes; phones
/// keep them open with CRLF pings (RFC 5626) well within it.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Sending side of all transports, shared by the endpoint.
pub struct Transports {
    udp: Arc<UdpSocket>,
    flows: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    /// Connections we opened (to carrier trunks), by address and transport.
    outbound: Mutex<HashMap<(SocketAddr, TransportKind), u64>>,
    next_flow: AtomicU64,
    limits: Limits,
    /// For serving connections we open; set once the endpoint exists.
    endpoint: std::sync::OnceLock<std::sync::Weak<Endpoint>>,
    tls_connector: std::sync::OnceLock<tokio_rustls::TlsConnector>,
}

impl Transports {
    pub fn new(udp: Arc<UdpSocket>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            udp,
            flows: Mutex::new(HashMap::new()),
            outbound: Mutex::new(HashMap::new()),
            next_flow: AtomicU64::new(1),
            limits,
            endpoint: std::sync::OnceLock::new(),
            tls_connector: std::sync::OnceLock::new(),
        })
    }

    /// Needed before the server opens connections of its own.
    pub fn set_endpoint(&self, endpoint: &Arc<Endpoint>, tls: Option<tokio_rustls::TlsConnector>) {
        let _ = self.endpoint.set(Arc::downgrade(endpoint));
        if let Some(t) = tls {
            let _ = self.tls_connector.set(t);
        }
    }

    /// Send over a connection we open ourselves (flow 0: "to this address"),
    /// reusing the open one; the first message waits for the connection.
    fn send_outbound(self: &Arc<Self>, peer: Peer, bytes: Bytes) {
        let existing = self.outbound.lock().ok().and_then(|o| o.get(&(peer.addr, peer.transport)).copied());
        if let Some(flow) = existing {
            let tx = self.flows.lock().ok().and_then(|f| f.get(&flow).cloned());
            if let Some(tx) = tx {
                if tx.try_send(bytes.clone()).is_ok() {
                    return;
                }
            }
            if let Ok(mut o) = self.outbound.lock() {
                o.remove(&(peer.addr, peer.transport));
            }
        }
        let Some(endpoint) = self.endpoint.get().and_then(|w| w.upgrade()) else { return };
        let this = self.clone();
        let (flow, outgoing) = self.open_flow();
        if let Ok(mut o) = self.outbound.lock() {
            o.insert((peer.addr, peer.transport), flow);
        }
        // Queue the first message; the writer starts once connected.
        if let Some(tx) = self.flows.lock().ok().and_then(|f| f.get(&flow).cloned()) {
            let _ = tx.try_send(bytes);
        }
        tokio::spawn(async move {
            let connect = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(peer.addr)).await;
            let stream = match connect {
                Ok(Ok(s)) => s,
                other => {
                    let error = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out after 5 s".to_string(),
                    };
                    tracing::warn!(to = %peer.addr, transport = peer.transport.via_name(), %error, "cannot connect");
                    this.close_flow(flow);
                    if let Ok(mut o) = this.outbound.lock() {
                        o.remove(&(peer.addr, peer.transport));
                    }
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let mut p = peer;
            p.flow = flow;
            if peer.transport == TransportKind::Tls {
                let Some(connector) = this.tls_connector.get().cloned() else {
                    tracing::warn!(to = %peer.addr, "no TLS client configuration");
                    this.close_flow(flow);
                    return;
                };
                let name = rustls::pki_types::ServerName::IpAddress(peer.addr.ip().into());
                match tokio::time::timeout(std::time::Duration::from_secs(10), connector.connect(name, stream)).await {
                    Ok(Ok(tls)) => run_connection(tls, p, outgoing, this.clone(), endpoint).await,
                    _ => {
                        tracing::warn!(to = %peer.addr, "TLS handshake with the carrier failed");
                        this.close_flow(flow);
                    }
                }
            } else {
                run_connection(stream, p, outgoing, this.clone(), endpoint).await;
            }
            if let Ok(mut o) = this.outbound.lock() {
                if o.get(&(peer.addr, peer.transport)) == Some(&flow) {
                    o.remove(&(peer.addr, peer.transport));
                }
            }
        });
    }

    /// Send to `peer` without waiting: UDP straight from this thread, TCP
    /// and TLS into the flow's write queue. A flow that is gone is only
    /// logged (the device must reconnect; it registered there).
    pub fn send_now(self: &Arc<Self>, peer: Peer, bytes: Bytes) {
        if peer.transport.is_reliable() && peer.flow == 0 {
            return self.send_outbound(peer, bytes);
        }
        match peer.transport {
            TransportKind::Udp => {
                // A blocking socket: a full send buffer waits here briefly
                // rather than dropping the datagram.
                if let Err(e) = self.udp.send_to(&bytes, peer.addr) {
                    tracing::debug!(to = %peer.addr, error = %e, "udp send failed");
                }
            }
            _ => {
                let tx = self.flows.lock().ok().and_then(|f| f.get(&peer.flow).cloned());
                match tx {
                    Some(tx) => {
                        if tx.try_send(bytes).is_err() {
                            tracing::warn!(to = %peer.addr, flow = peer.flow, "connection write queue full or closed");
                        }
                    }
                    None => tracing::debug!(to = %peer.addr, flow = peer.flow, "no such connection any more"),
                }
            }
        }
    }

    fn open_flow(&self) -> (u64, mpsc::Receiver<Bytes>) {
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        if let Ok(mut f) = self.flows.lock() {
            f.insert(id, tx);
        }
        (id, rx)
    }

    fn close_flow(&self, id: u64) {
        if let Ok(mut f) = self.flows.lock() {
            f.remove(&id);
        }
    }
}

/// Log a message that could not be parsed, and answer it when it was a
/// request with enough headers to answer along.
fn reject(err: &ParseError, peer: Peer) -> Option<Bytes> {
    metrics::counter!("tsunagu_sip_parse_errors_total", "transport" => peer.transport.via_name()).increment(1);
    tracing::warn!(source = %peer.addr, transport = peer.transport.via_name(), error = %err, "malformed SIP message");
    err.stateless_response()
}

/// Start `count` receiver threads on the UDP socket. Each blocks in
/// recvfrom and handles its datagram start to finish (parse, transaction,
/// registrar, answer): no hand-off between threads per message, the way a
/// multi-process SIP server works. They run inside the tokio runtime's
/// context so handlers can spawn async work (database look-ups).
pub fn spawn_udp_receivers(transports: Arc<Transports>, endpoint: Arc<Endpoint>, count: usize) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    for i in 0..count {
        let (transports, endpoint, runtime) = (transports.clone(), endpoint.clone(), runtime.clone());
        std::thread::Builder::new().name(format!("sip-udp-{i}")).spawn(move || {
            let _guard = runtime.enter();
            udp_receive_loop(&transports, &endpoint);
        })?;
    }
    Ok(())
}

fn udp_receive_loop(transports: &Transports, endpoint: &Arc<Endpoint>) {
    let socket = &transports.udp;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let data = &buf[..n];
        if data.iter().all(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
            continue; // keep-alive noise
        }
        let peer = Peer { addr: from, transport: TransportKind::Udp, flow: 0 };
        match parse_message(data, Framing::Datagram, &transports.limits) {
            Ok(msg) => endpoint.receive(msg, peer),
            Err(e) => {
                if let Some(resp) = reject(&e, peer) {
                    let _ = socket.send_to(&resp, from);
                }
            }
        }
    }
}

pub async fn run_tcp(listener: TcpListener, transports: Arc<Transports>, endpoint: Arc<Endpoint>, tls: Option<TlsAcceptor>) {
    let kind = if tls.is_some() { TransportKind::Tls } else { TransportKind::Tcp };
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let transports = transports.clone();
        let endpoint = endpoint.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, from, kind, transports, endpoint).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(s)) => serve_connection(s, from, kind, transports, endpoint).await,
                        Ok(Err(e)) => tracing::info!(source = %from, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(source = %from, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, from: SocketAddr, kind: TransportKind, transports: Arc<Transports>, endpoint: Arc<Endpoint>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (flow, outgoing) = transports.open_flow();
    let peer = Peer { addr: from, transport: kind, flow };
    run_connection(stream, peer, outgoing, transports, endpoint).await;
}

/// Read and write one connection until it closes; `peer.flow` names it.
async fn run_connection<S>(stream: S, peer: Peer, mut outgoing: mpsc::Receiver<Bytes>, transports: Arc<Transports>, endpoint: Arc<Endpoint>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (from, kind, flow) = (peer.addr, peer.transport, peer.flow);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = StreamFramer::new(transports.limits.clone());
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => transports.send_now(peer, Bytes::from_static(b"\r\n")),
                Ok(Some(Frame::Pong)) => {}
                Ok(Some(Frame::Message(bytes))) => match parse_message(&bytes, Framing::Stream, &transports.limits) {
                    Ok(msg) => {
                        endpoint.receive(msg, peer);
                    }
                    Err(e) => {
                        if let Some(resp) = reject(&e, peer) {
                            transports.send_now(peer, resp);
                        }
                        if matches!(e.kind, ParseErrorKind::Framing | ParseErrorKind::TooLarge | ParseErrorKind::NotSip) {
                            break 'conn;
                        }
                    }
                },
                Err(e) => {
                    // Framing is lost: nothing after this can be trusted.
                    tracing::warn!(source = %from, transport = kind.via_name(), error = %e, "stream framing lost, closing connection");
                    metrics::counter!("tsunagu_sip_parse_errors_total", "transport" => kind.via_name()).increment(1);
                    break 'conn;
                }
            }
        }
    }
    transports.close_flow(flow);
    // Let queued responses (a 400 before closing) drain, then stop.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer_task).await;
}
