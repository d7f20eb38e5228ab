//! `tsunagu serve`: open the store, bind every socket, start the tasks, and
//! stop cleanly on SIGTERM / Ctrl-C (bindings flushed to the store).

use crate::calls::dialog::LocalAddrs;
use crate::calls::Services;
use crate::config::Config;
use crate::media::{PortPool, Relays};
use crate::trunk::run_trunks;
use crate::http::{router, HttpState};
use crate::registrar::{run_persister, Registrar};
use crate::sip::core::Core;
use crate::sip::endpoint::{run_timers, Endpoint};
use crate::sip::transport::{run_tcp, spawn_udp_receivers, Transports};
use crate::sip::tls;
use crate::store::{SqliteStore, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::net::UdpSocket;
use tokio::net::TcpListener;
use tsunagu_sip::validate::UasPolicy;
use tsunagu_sip::{Limits, TimerConfig};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn bind_error(what: &str, addr: std::net::SocketAddr, e: std::io::Error) -> BoxError {
    format!("cannot listen for {what} on {addr}: {e}").into()
}

pub async fn serve(cfg: Config) -> Result<(), BoxError> {
    cfg.validate()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let sqlite = Arc::new(SqliteStore::open(&cfg.data, &cfg.sip.realm).await?);
    let store: Arc<dyn Store> = sqlite.clone();
    let interrupted = sqlite.close_interrupted_calls().await?;
    if interrupted > 0 {
        tracing::warn!(calls = interrupted, "calls left open by the last run were closed as interrupted");
    }
    // Built-in prompts and hold music, made once (espeak-ng takes a few
    // seconds): in the background, so start-up never waits or fails on it.
    {
        let (sqlite, data) = (sqlite.clone(), cfg.data.clone());
        tokio::spawn(async move {
            let s = crate::announce::ensure_builtins(&sqlite, &data, false).await;
            if !s.created.is_empty() {
                tracing::info!(created = ?s.created, "built-in announcements made");
            }
        });
    }
    let realm = store.realm().await?;
    if realm != cfg.sip.realm {
        tracing::warn!(stored = %realm, configured = %cfg.sip.realm, "the realm is fixed when the data directory is made; keeping the stored one");
    }
    let (registrar, persist_rx) = Registrar::new(cfg.sip.clone(), cfg.security.clone(), realm.clone(), store.clone()).await?;

    let limits = Limits { max_message_size: cfg.sip.max_message_size, ..Limits::default() };
    let udp = Arc::new(bind_udp(cfg.sip.listen).map_err(|e| bind_error("SIP/UDP", cfg.sip.listen, e))?);
    let tcp = TcpListener::bind(cfg.sip.listen).await.map_err(|e| bind_error("SIP/TCP", cfg.sip.listen, e))?;
    let tls_addr = cfg.tls_listen();
    let tls_listener = TcpListener::bind(tls_addr).await.map_err(|e| bind_error("SIP/TLS", tls_addr, e))?;
    let (cert, key) = tls::ensure_certificate(&cfg)?;
    let acceptor = tls::acceptor(&cert, &key)?;
    let http = TcpListener::bind(cfg.http.listen).await.map_err(|e| bind_error("HTTP", cfg.http.listen, e))?;

    let transports = Transports::new(udp, limits);
    let endpoint = Endpoint::new(transports.clone(), TimerConfig::default());
    transports.set_endpoint(&endpoint, Some(tls::connector(cfg.tls.trunk_ca.as_deref(), &cert)?));
    let core = Arc::new(Core { registrar: registrar.clone(), policy: uas_policy(), in_dialog_policy: in_dialog_policy(), services: std::sync::OnceLock::new() });
    endpoint.set_handler(core.clone());
    let (records_tx, records_rx) = tokio::sync::mpsc::unbounded_channel();
    let (record_events_tx, record_events) = tokio::sync::mpsc::unbounded_channel();
    let record_writer = tokio::spawn(crate::calls::records::run_record_writer(sqlite.clone(), records_rx, Some(record_events_tx)));
    let objects = crate::recording::storage::open(cfg.storage.url.as_deref(), &cfg.data)?;
    let recorder = crate::recording::Recorder::start(sqlite.clone(), &cfg.data, objects.clone()).await?;
    let services = Arc::new(Services {
        endpoint: endpoint.clone(),
        registrar: registrar.clone(),
        store: sqlite.clone(),
        ports: Arc::new(PortPool::new(cfg.media_address(), cfg.media.port_min, cfg.media.port_max)),
        relays: Relays::start(cfg.media.relay_threads)?,
        local: LocalAddrs { sip: advertised(cfg.sip.listen, cfg.media_address()), tls: advertised(tls_addr, cfg.media_address()) },
        presence: Default::default(),
        calls: Default::default(),
        trunks: Default::default(),
        config: cfg.clone(),
        records: records_tx,
        prompts: crate::media::prompts::Prompts::new(&cfg.data),
        recorder,
    });
    let _ = core.services.set(services.clone());
    tokio::spawn(run_trunks(services.clone()));
    tokio::spawn(run_timers(endpoint.clone()));
    // One receiver per core on the one UDP socket: each handles its
    // datagrams start to finish.
    let receivers = match cfg.sip.udp_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 16),
        n => n,
    };
    spawn_udp_receivers(transports.clone(), endpoint.clone(), receivers)?;
    tokio::spawn(run_tcp(tcp, transports.clone(), endpoint.clone(), None));
    tokio::spawn(run_tcp(tls_listener, transports.clone(), endpoint.clone(), Some(acceptor)));
    let events = crate::api::events::EventBus::default();
    let persister = tokio::spawn(run_persister(store.clone(), persist_rx, Some(events.clone())));
    tokio::spawn(watch_users(registrar.clone(), store.clone()));
    tokio::spawn(sweep(registrar.clone()));

    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(crate::api::events::forward_call_records(record_events, events.clone()));
    let api = crate::api::ApiState {
        store: sqlite.clone(),
        registrar: Some(registrar.clone()),
        events,
        phonebook: Arc::new(crate::phonebook::Phonebook::new(sqlite.pool().clone())),
        settings: Arc::new(crate::api::ApiSettings {
            idle_secs: (cfg.http.idle_minutes.max(1) * 60) as i64,
            web_dir: cfg.web_dir(),
            sip_domain: realm.clone(),
            sip_server: advertised(cfg.sip.listen, cfg.media_address()).to_string(),
            data_dir: cfg.data.clone(),
            ..Default::default()
        }),
        objects: Some(objects),
    };
    let router = router(HttpState { metrics, ready: ready.clone() }, api);
    if let Some(addr) = cfg.http.tls_listen {
        let tcp = TcpListener::bind(addr).await.map_err(|e| bind_error("HTTPS", addr, e))?;
        use axum::serve::ListenerExt;
        // tap_io: axum hands the peer address to handlers (ConnectInfo) for
        // tapped listeners of any kind.
        let https = crate::http::TlsListener::new(tcp, tls::acceptor(&cert, &key)?)?.tap_io(|_| {});
        let app = router.clone().into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(https, app).await {
                tracing::error!(error = %e, "HTTPS server stopped");
            }
        });
        tracing::info!(https = %addr, "HTTPS listening");
    }
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    ready.store(true, Ordering::Release);
    tracing::info!(sip = %cfg.sip.listen, tls = %tls_addr, http = %cfg.http.listen, data = %cfg.data.display(), "tsunagu is ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    // Write every current binding once more, whatever the batch writer
    // still had queued.
    if let Err(e) = registrar.persist_all().await {
        tracing::error!(error = %e, "could not save bindings at shutdown");
    }
    persister.abort();
    crate::calls::records::flush(&services.records).await;
    record_writer.abort();
    Ok(())
}

/// The checks every request passes; "timer" (RFC 4028) and "100rel"
/// (RFC 3262) are understood.
fn uas_policy() -> UasPolicy {
    let mut p = UasPolicy::default();
    p.supported_extensions.push("timer".into());
    p.supported_extensions.push("100rel".into());
    p
}

/// In-dialog requests passed across the B2BUA may carry these bodies.
fn in_dialog_policy() -> UasPolicy {
    let mut p = uas_policy();
    p.accepted_body_types.extend(
        [
            "application/dtmf-relay",
            "application/dtmf",
            "text/plain",
            "message/sipfrag",
            "application/json",
            "application/xml",
            "application/pidf+xml",
            "application/media_control+xml",
            "application/simple-message-summary",
        ]
        .map(String::from),
    );
    p
}

/// The address peers reach us at, for Via and Contact: the listen address,
/// or the media address when listening on all interfaces.
fn advertised(listen: std::net::SocketAddr, fallback: std::net::IpAddr) -> std::net::SocketAddr {
    if listen.ip().is_unspecified() {
        std::net::SocketAddr::new(fallback, listen.port())
    } else {
        listen
    }
}

/// The SIP UDP socket, with receive and send buffers large enough to ride
/// out bursts (a registration storm after a power cut) without drops that
/// would turn into retransmission storms. The kernel caps them at
/// net.core.rmem_max / wmem_max.
fn bind_udp(addr: std::net::SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Pick up user changes made by other processes (the CLI, later the web
/// app on another node) within a fraction of a second.
async fn watch_users(registrar: Arc<Registrar>, store: Arc<dyn Store>) {
    let mut seen = store.users_version().await.unwrap_or(-1);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        match store.users_version().await {
            Ok(v) if v != seen => {
                if registrar.refresh_users().await.is_ok() {
                    tracing::info!(version = v, "users changed; reloaded");
                    seen = v;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read users version"),
        }
    }
}

async fn sweep(registrar: Arc<Registrar>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        registrar.sweep();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
