//! `tsunagu-phone`: the desktop phone and scripting tool on the softphone
//! SDK (tsunagu-client). It registers one account with a PBX, then places
//! or answers one call, playing a WAV file and recording what it hears,
//! and says by its exit status how it went, so scripts and tests can use
//! it as a phone.
//!
//! Exit status: 0 the call was connected (or, for `register`, the account
//! registered); 1 bad arguments or files; 2 registration failed; 3 the call
//! failed or was not answered (the SIP code is printed); 4 the call's media
//! could not start.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tsunagu_client::audio::AudioPort;
use tsunagu_client::{Account, AccountEvent, CallEvent, RegEvent, RegistrationConfig, Transport};

#[derive(Parser)]
#[command(name = "tsunagu-phone", version, about = "A SIP phone on the Tsunagu SDK, for the desktop and for scripts")]
struct Cli {
    /// The PBX, HOST:PORT (for TLS, its TLS port).
    #[arg(long)]
    server: String,
    /// Extension to register as.
    #[arg(long)]
    user: String,
    #[arg(long, env = "TSUNAGU_PHONE_PASSWORD")]
    password: String,
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    /// For TLS: the PEM file of the certificate(s) to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Do not register: --server is the far phone itself (a call without a
    /// PBX). Only `call` makes sense then.
    #[arg(long)]
    direct: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

#[derive(Subcommand)]
enum Command {
    /// Register, report the result and unregister.
    Register,
    /// Call TARGET (an extension, or a number as dialled).
    Call {
        target: String,
        #[command(flatten)]
        audio: AudioArgs,
        /// Key presses to send once connected (RFC 4733), e.g. 123#.
        #[arg(long)]
        dtmf: Option<String>,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 60)]
        ring_timeout: u64,
    },
    /// Wait for a call and answer it.
    Answer {
        /// Answer at once (otherwise press Enter to answer).
        #[arg(long)]
        auto: bool,
        #[command(flatten)]
        audio: AudioArgs,
        /// Seconds to wait for a call.
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
}

#[derive(clap::Args)]
struct AudioArgs {
    /// Play this WAV file (looped) to the far end.
    #[arg(long)]
    play: Option<PathBuf>,
    /// Record what the far end sends to this WAV file (8 kHz mono).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Hang up after this many seconds connected (default: wait for the
    /// far end to hang up).
    #[arg(long)]
    duration: Option<f64>,
}

const EXIT_ARGS: u8 = 1;
const EXIT_REGISTER: u8 = 2;
const EXIT_CALL: u8 = 3;
const EXIT_MEDIA: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_ARGS, &format!("cannot start: {e}")),
    };
    rt.block_on(run(cli))
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("tsunagu-phone: {msg}");
    ExitCode::from(code)
}

async fn run(cli: Cli) -> ExitCode {
    let Some(server) = resolve(&cli.server) else { return fail(EXIT_ARGS, &format!("cannot resolve --server {}", cli.server)) };
    let transport = match (cli.transport, &cli.ca) {
        (TransportArg::Udp, _) => Transport::Udp,
        (TransportArg::Tcp, _) => Transport::Tcp,
        (TransportArg::Tls, Some(ca)) => Transport::Tls { ca: ca.clone() },
        (TransportArg::Tls, None) => return fail(EXIT_ARGS, "--transport tls needs --ca FILE"),
    };
    // The audio port first: a bad file is an argument error, before any SIP.
    let port = match &cli.command {
        Command::Register => None,
        Command::Call { audio, .. } | Command::Answer { audio, .. } => match audio_port(audio) {
            Ok(p) => Some(p),
            Err((code, e)) => return fail(code, &e),
        },
    };
    let mut config = RegistrationConfig::new(&cli.user, &cli.password, &cli.server);
    config.expires = 300;
    // One attempt is enough for a tool: do not wait minutes for a retry.
    config.retry_base = Duration::from_secs(3600);
    config.register = !cli.direct;
    if cli.direct && !matches!(cli.command, Command::Call { .. }) {
        return fail(EXIT_ARGS, "--direct works with `call` only");
    }
    let (account, mut events) = match Account::start_with(server, transport, config).await {
        Ok(a) => a,
        Err(e) => return fail(EXIT_REGISTER, &e.to_string()),
    };
    if cli.direct {
        println!("direct to {} (not registering)", cli.server);
    } else {
        match next_registration(&mut events).await {
            Some(RegEvent::Registered { expires }) => println!("registered as {} (expires {expires} s)", cli.user),
            Some(RegEvent::Failed { code, reason, .. }) => return fail(EXIT_REGISTER, &format!("registration failed: {code} {reason}")),
            other => return fail(EXIT_REGISTER, &format!("registration failed: {other:?}")),
        }
    }
    // A desktop has no OS callback for network changes: the SDK watches
    // the route to the PBX itself, and moves calls when it changes.
    account.watch_network();
    let status = match cli.command {
        Command::Register => ExitCode::SUCCESS,
        Command::Call { target, audio, dtmf, ring_timeout } => {
            let Some(port) = port else { return fail(EXIT_ARGS, "no audio") };
            place_call(&account, &mut events, &target, port, audio.duration, dtmf, ring_timeout).await
        }
        Command::Answer { auto, audio, wait } => {
            let Some(port) = port else { return fail(EXIT_ARGS, "no audio") };
            take_call(&account, &mut events, auto, port, audio.duration, wait).await
        }
    };
    account.close(Duration::from_secs(5)).await;
    status
}

fn resolve(s: &str) -> Option<SocketAddr> {
    s.to_socket_addrs().ok()?.next()
}

/// The call's audio: the WAV to play (or silence) and the WAV to record to
/// (or nothing); with neither, the sound card. Errors carry the exit
/// status: a bad file is an argument error, a sound card that cannot be
/// used is a media failure.
fn audio_port(a: &AudioArgs) -> Result<Arc<dyn AudioPort>, (u8, String)> {
    if a.play.is_none() && a.record.is_none() {
        return sound_card();
    }
    use tsunagu_client::audio::FilePortError;
    tsunagu_client::audio::file_port(a.play.as_deref(), a.record.as_deref()).map_err(|e| {
        let why = match e {
            FilePortError::Play { path, source } => format!("--play {}: {source}", path.display()),
            FilePortError::Record { path, source } => format!("--record {}: {source}", path.display()),
            FilePortError::Port(e) => e.to_string(),
        };
        (EXIT_ARGS, why)
    })
}

/// The default microphone and speaker. Checked before any SIP, so a
/// machine without a sound card says so instead of placing a silent call.
#[cfg(feature = "cpal")]
fn sound_card() -> Result<Arc<dyn AudioPort>, (u8, String)> {
    match tsunagu_client::cpal_port::CpalPort::open() {
        Ok(port) => {
            println!("sound card: microphone {}, speaker {}", port.input_info(), port.output_info());
            Ok(Arc::new(port))
        }
        Err(e) => Err((EXIT_MEDIA, format!("sound card: {e} (give --play and/or --record to run without one)"))),
    }
}

#[cfg(not(feature = "cpal"))]
fn sound_card() -> Result<Arc<dyn AudioPort>, (u8, String)> {
    Err((EXIT_ARGS, "this build has no sound-card support (feature `cpal`): give --play and/or --record".into()))
}

async fn next_registration(events: &mut UnboundedReceiver<AccountEvent>) -> Option<RegEvent> {
    loop {
        match tokio::time::timeout(Duration::from_secs(40), events.recv()).await {
            Ok(Some(AccountEvent::Registration(ev))) => return Some(ev),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// The next event of call `id`, or None when `limit` passes first.
async fn call_event(events: &mut UnboundedReceiver<AccountEvent>, id: &str, limit: Duration) -> Option<CallEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(AccountEvent::Call { call_id, event })) if call_id == id => return Some(event),
            Ok(Some(AccountEvent::MediaFailed { call_id, reason })) if call_id == id => {
                eprintln!("tsunagu-phone: media failed: {reason}");
                return Some(CallEvent::Ended { code: 0, reason });
            }
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Connected: stay for `duration` (or until the far end hangs up).
async fn connected(account: &Account, events: &mut UnboundedReceiver<AccountEvent>, id: &str, duration: Option<f64>) -> ExitCode {
    println!("connected");
    let limit = duration.map(Duration::from_secs_f64).unwrap_or(Duration::from_secs(86_400));
    let until = tokio::time::Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match call_event(events, id, left).await {
            Some(CallEvent::Ended { code: 0, .. }) => return ExitCode::from(EXIT_MEDIA),
            Some(CallEvent::Ended { code, reason }) => {
                println!("the far end hung up ({code} {reason})");
                return ExitCode::SUCCESS;
            }
            // Hold, resume, a new address: the SDK answers these itself.
            Some(CallEvent::RemoteOffer { .. }) => println!("the far end changed the call (hold, resume or a new address)"),
            Some(CallEvent::OfferAnswered { .. }) => println!("the far end took our new offer (hold, resume or a new network)"),
            Some(_) => {}
            None => break,
        }
    }
    account.hangup(id);
    let _ = call_event(events, id, Duration::from_secs(5)).await;
    println!("hung up");
    ExitCode::SUCCESS
}

async fn place_call(
    account: &Account,
    events: &mut UnboundedReceiver<AccountEvent>,
    target: &str,
    port: Arc<dyn AudioPort>,
    duration: Option<f64>,
    dtmf: Option<String>,
    ring_timeout: u64,
) -> ExitCode {
    let id = match account.dial_with_audio(target, port).await {
        Ok(id) => id,
        Err(e) => return fail(EXIT_CALL, &e),
    };
    println!("calling {target}");
    let deadline = Duration::from_secs(ring_timeout);
    loop {
        match call_event(events, &id, deadline).await {
            Some(CallEvent::Ringing) => println!("ringing"),
            Some(CallEvent::Connected { .. }) => {
                if let Some(d) = &dtmf {
                    account.send_dtmf(&id, d);
                }
                return connected(account, events, &id, duration).await;
            }
            Some(CallEvent::Ended { code, reason }) => {
                let exit = if code == 0 { EXIT_MEDIA } else { EXIT_CALL };
                return fail(exit, &format!("call failed: {code} {reason}"));
            }
            None => {
                account.hangup(&id);
                let _ = call_event(events, &id, Duration::from_secs(5)).await;
                return fail(EXIT_CALL, "no answer");
            }
            // Early media, offers in the call: the SDK handles them.
            Some(_) => {}
        }
    }
}

async fn take_call(account: &Account, events: &mut UnboundedReceiver<AccountEvent>, auto: bool, port: Arc<dyn AudioPort>, duration: Option<f64>, wait: u64) -> ExitCode {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let (id, from) = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(AccountEvent::IncomingCall { call_id, from, .. })) => break (call_id, from),
            Ok(Some(_)) => continue,
            _ => return fail(EXIT_CALL, "no call came"),
        }
    };
    println!("incoming call from {from}");
    if !auto {
        println!("press Enter to answer");
        let mut line = String::new();
        let read = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            account.reject(&id, 603);
            return fail(EXIT_CALL, "not answered");
        }
    }
    account.answer_with_audio(&id, port);
    loop {
        match call_event(events, &id, Duration::from_secs(40)).await {
            Some(CallEvent::Connected { .. }) => return connected(account, events, &id, duration).await,
            Some(CallEvent::Ended { code, reason }) => {
                let exit = if code == 0 { EXIT_MEDIA } else { EXIT_CALL };
                return fail(exit, &format!("call ended before it connected: {code} {reason}"));
            }
            Some(_) => continue,
            None => return fail(EXIT_CALL, "the caller never confirmed the answer"),
        }
    }
}
