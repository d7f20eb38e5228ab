//! tsunagu-ffi is the softphone SDK as the app shells see it: a
//! uniffi-shaped façade (`Phone`, `Account`, `Call`) over
//! `tsunagu_client::Account`, exported to Kotlin, Swift and Python. It owns
//! only glue: the tokio runtime the SDK's drivers run on, turning the SDK's
//! async calls into blocking ones with bounded waits (foreign callers have
//! no tokio), converting `AccountEvent`s into one `PhoneEvent` stream for a
//! single foreign listener, and turning every failure into a `PhoneError`
//! instead of a panic. Protocol and media logic stay in sdk/; nothing here
//! decides anything a SIP phone would.
//!
//! Threads: the SDK's account drivers and media run on the Phone's runtime
//! (2 workers). Events are delivered on one dedicated thread
//! ("tsunagu-events"), in order, never on a runtime worker: a listener may
//! call back into the façade (answer an incoming call, hang up), and such a
//! call blocks until the driver replies; on a worker it would hold up the
//! very tasks it waits for, and a slow listener would stall the media.
//!
//! The call history (`Phone::enable_history`) is recorded here from the
//! same event stream, with the SDK's `history` module, and saved after
//! every finished call.

uniffi::setup_scaffolding!();

use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tsunagu_client::audio::{AudioFormat, AudioPort};
use tsunagu_client::{AccountEvent, CallEvent, PushParams, RegEvent, RegState, RegistrationConfig};

/// Opening a flow is bounded by the SDK (10 s TCP connect + 10 s TLS
/// handshake); this covers both with room to spare.
const START_TIMEOUT: Duration = Duration::from_secs(25);
/// A dial only waits for the driver to create the call and bind RTP
/// sockets, not for the far end.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing waits for the PBX to confirm the unregistration.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the runtime gets to stop its tasks after the accounts closed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Types crossing the boundary
// ---------------------------------------------------------------------------

/// Every failure the façade reports. Field names avoid `message`, which
/// the generated Kotlin exception already has.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum PhoneError {
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    #[error("cannot reach the PBX: {reason}")]
    Unreachable { reason: String },
    #[error("TLS settings: {reason}")]
    Tls { reason: String },
    #[error("audio: {reason}")]
    Audio { reason: String },
    #[error("no such call: {call_id}")]
    NoSuchCall { call_id: String },
    #[error("the call could not be placed: {reason}")]
    CallFailed { reason: String },
    #[error("timed out: {what}")]
    Timeout { what: String },
    #[error("the phone or the account is closed")]
    Closed,
    #[error("internal error: {reason}")]
    Internal { reason: String },
}

fn invalid(reason: impl Into<String>) -> PhoneError {
    PhoneError::InvalidArgument { reason: reason.into() }
}

/// How the account reaches the PBX.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS, trusting the PEM certificate(s) in `ca_path` (the PBX's CA, or
    /// a development server's own certificate).
    Tls { ca_path: String },
}

/// One SIP account on one PBX.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AccountConfig {
    /// The PBX, "HOST:PORT" (for TLS, its TLS port).
    pub server: String,
    pub transport: Transport,
    /// The extension.
    pub user: String,
    pub password: String,
    /// The SIP domain of the address of record; empty means the server as
    /// written in `server`.
    pub domain: String,
    /// RFC 8599 push parameters (`pn-provider`, `pn-prid`, `pn-param`), for
    /// an app the OS may suspend. Provider and prid go together.
    pub pn_provider: Option<String>,
    pub pn_prid: Option<String>,
    pub pn_param: Option<String>,
}

/// Where a call's audio comes from and goes to. Mobile shells will get a
/// port fed by the OS voice-processing path; these two are for tests,
/// tools and headless use.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum AudioSpec {
    /// Send silence, drop what is received.
    Silent,
    /// Play `play_wav` (looped) to the far end and record what it sends to
    /// `record_wav` (8 kHz mono); either may be absent (silence / dropped).
    Files { play_wav: Option<String>, record_wav: Option<String> },
    /// The device's own audio, fed by the app shell (see [`AudioDevice`]):
    /// on a phone, the OS's voice-processing unit (echo cancellation).
    Device { device: Arc<AudioDevice> },
}

/// The device's audio as the app shell feeds it: what the OS captured goes
/// in with `push_capture`, what to play comes out with `pull_playout`, both
/// called from the shell's audio callback at the device's rate and frame
/// size (mono, 16-bit). Never blocks; outside a call capture is dropped and
/// playout is silence. One call uses the device at a time: a call that
/// takes over (a transfer, or resuming after a waiting call) takes it
/// when its media starts.
#[derive(uniffi::Object)]
pub struct AudioDevice {
    format: AudioFormat,
    bridge: Mutex<Option<Arc<tsunagu_client::AudioBridge>>>,
}

impl std::fmt::Debug for AudioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioDevice").field("format", &self.format).field("in_call", &self.in_call()).finish()
    }
}

#[uniffi::export]
impl AudioDevice {
    /// A device running at `sample_rate` (8000 to 48000) with callbacks of
    /// `frame_samples` samples (e.g. 48000 and 480 for 10 ms).
    #[uniffi::constructor]
    pub fn new(sample_rate: u32, frame_samples: u32) -> Result<Arc<Self>, PhoneError> {
        let format = AudioFormat::new(sample_rate, frame_samples).map_err(|e| invalid(format!("audio device: {e}")))?;
        Ok(Arc::new(AudioDevice { format, bridge: Mutex::new(None) }))
    }

    /// Samples the microphone captured (any count; at the device's rate).
    pub fn push_capture(&self, samples: Vec<i16>) {
        if let Some(b) = self.current() {
            b.push_capture_vec(samples);
        }
    }

    /// The next `samples` to play (silence when no call is up or the
    /// network is late).
    pub fn pull_playout(&self, samples: u32) -> Vec<i16> {
        match self.current() {
            Some(b) => b.pull_playout_vec(samples),
            None => vec![0; samples.min(192_000) as usize],
        }
    }

    /// Whether a call's media uses the device now.
    pub fn in_call(&self) -> bool {
        self.current().is_some()
    }
}

impl AudioDevice {
    fn current(&self) -> Option<Arc<tsunagu_client::AudioBridge>> {
        self.bridge.lock().ok().and_then(|b| b.clone())
    }
}

/// The SDK's side of an [`AudioDevice`]: a port with its own clock (the
/// shell's callbacks), so the call's media runs at the device's pace.
struct DevicePort(Arc<AudioDevice>);

impl AudioPort for DevicePort {
    fn format(&self) -> AudioFormat {
        self.0.format
    }
    fn start(&self, bridge: Arc<tsunagu_client::AudioBridge>) -> Result<tsunagu_client::PortClock, tsunagu_client::AudioError> {
        if let Ok(mut b) = self.0.bridge.lock() {
            *b = Some(bridge);
        }
        Ok(tsunagu_client::PortClock::Own)
    }
    fn stop(&self) {
        if let Ok(mut b) = self.0.bridge.lock() {
            *b = None;
        }
    }
    fn capture(&self, _samples: u32) -> Vec<i16> {
        Vec::new()
    }
    fn playout(&self, _pcm: Vec<i16>) {}
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum RegistrationState {
    Idle,
    Registering,
    Registered { expires_secs: u32 },
    /// The last attempt failed (`code` 408: nothing answered, or the flow
    /// broke); the SDK retries by itself, in `retry_in_secs` when known.
    Failed { code: u16, reason: String, retry_in_secs: Option<u64> },
    Unregistering,
    Unregistered,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CallState {
    /// The far end rings (180/183).
    Ringing,
    /// The far end sends audio before answering (183 with SDP).
    EarlyMedia,
    /// Answered (an outgoing call), or our answer was confirmed (an
    /// incoming one); also after a resume from hold was accepted.
    Connected,
    /// Our hold was accepted by the far end.
    Held,
    /// The call is over. `code` is the SIP status that ended it (200 for a
    /// normal hangup by either side, 0 when the media failed).
    Ended { code: u16, reason: String },
}

/// Everything the app hears, on one listener.
#[derive(Clone, uniffi::Enum)]
pub enum PhoneEvent {
    RegistrationChanged { account_id: u64, state: RegistrationState },
    /// A call is coming in: `account.answer(call.id(), …)` or
    /// `call.reject(code)`.
    IncomingCall { account_id: u64, call: Arc<Call>, caller: String },
    CallChanged { account_id: u64, call_id: String, state: CallState },
    /// Our hold or resume was refused (491: another offer under way, try
    /// again; 488 …); the call goes on as it was.
    HoldRefused { account_id: u64, call_id: String, code: u16 },
    /// The far end changed the call (hold, resume, a new address or
    /// codec); the SDK has already answered it.
    RemoteUpdated { account_id: u64, call_id: String },
    /// A call's media could not start or change; the call is hung up or
    /// rejected by the SDK.
    MediaFailed { account_id: u64, call_id: String, reason: String },
    /// The flow to the PBX broke; the SDK opens a new one and registers
    /// over it by itself.
    ConnectionLost { account_id: u64, reason: String },
    /// The far end pressed a key (RFC 4733 or SIP INFO).
    DigitReceived { account_id: u64, call_id: String, digit: String },
    /// The far end asked us to call `target` instead (a transfer); the SDK
    /// does it by itself on the same audio and ends this call when the new
    /// one connects (the new call arrives as `CallChanged` events).
    TransferAsked { account_id: u64, call_id: String, target: String },
    /// How our transfer of `call_id` goes: the SIP status of the far end's
    /// new call (100, 180, 200, or a failure); `done` on the last. On
    /// success the SDK hangs up the transferred call(s).
    TransferProgress { account_id: u64, call_id: String, code: u16, done: bool },
    /// A finished call was added to the history (see `Phone::history`).
    HistoryChanged { missed_unseen: u32 },
}

/// One finished call in the history.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct HistoryEntry {
    pub call_id: String,
    pub incoming: bool,
    /// `answered`, `missed`, `rejected`, `cancelled` or `failed`.
    pub outcome: String,
    /// The SIP status of a failed call (0 otherwise).
    pub failure_code: u16,
    /// What to dial to call them back (empty for an anonymous caller).
    pub number: String,
    pub display_name: Option<String>,
    /// Unix seconds.
    pub started_at: u64,
    pub duration_secs: u64,
    pub seen: bool,
}

/// The app's side of the event stream. Called on one dedicated thread, in
/// order; it may call back into the façade.
#[uniffi::export(callback_interface)]
pub trait PhoneListener: Send + Sync {
    fn on_event(&self, event: PhoneEvent);
}

// ---------------------------------------------------------------------------
// Runtime glue
// ---------------------------------------------------------------------------

/// Runs a future on the Phone's runtime and waits for it on the calling
/// (foreign) thread, bounded. A std channel rather than `block_on`: the
/// wait must not panic whatever thread it is on, and must end when the
/// runtime is shut down (the task, and its sender, are then dropped).
fn run_on<T: Send + 'static>(handle: &Handle, what: &str, limit: Duration, fut: impl Future<Output = T> + Send + 'static) -> Result<T, PhoneError> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(tokio::time::timeout(limit, fut).await);
    });
    match rx.recv_timeout(limit + Duration::from_secs(1)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) | Err(std_mpsc::RecvTimeoutError::Timeout) => Err(PhoneError::Timeout { what: what.to_string() }),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(PhoneError::Closed),
    }
}

type Listener = Arc<Mutex<Option<Arc<dyn PhoneListener>>>>;

/// The dispatcher: hands events to the listener on its own thread. It ends
/// when every sender is gone (the Phone closed and the pumps stopped),
/// after delivering what was queued (the last unregistrations).
fn spawn_dispatcher(listener: Listener) -> std::io::Result<std_mpsc::Sender<PhoneEvent>> {
    let (tx, rx) = std_mpsc::channel::<PhoneEvent>();
    std::thread::Builder::new().name("tsunagu-events".into()).spawn(move || {
        for event in rx {
            let current = listener.lock().ok().and_then(|l| l.clone());
            if let Some(l) = current {
                // A failing listener must not stop later events, nor unwind
                // into the SDK.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.on_event(event)));
            }
        }
    })?;
    Ok(tx)
}

// ---------------------------------------------------------------------------
// Phone
// ---------------------------------------------------------------------------

/// The SDK in an app: its runtime, its accounts and its listener.
#[derive(uniffi::Object)]
pub struct Phone {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    listener: Listener,
    /// Taken (dropped) by `shutdown`, so the dispatcher can end.
    events: Mutex<Option<std_mpsc::Sender<PhoneEvent>>>,
    accounts: Mutex<Vec<Arc<Account>>>,
    next_account_id: AtomicU64,
    history: Arc<Mutex<Option<tsunagu_client::history::History>>>,
}

#[uniffi::export]
impl Phone {
    #[uniffi::constructor]
    pub fn new() -> Result<Arc<Self>, PhoneError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tsunagu-rt")
            .enable_all()
            .build()
            .map_err(|e| PhoneError::Internal { reason: format!("cannot start the runtime: {e}") })?;
        let listener: Listener = Arc::new(Mutex::new(None));
        let events = spawn_dispatcher(listener.clone()).map_err(|e| PhoneError::Internal { reason: format!("cannot start the event thread: {e}") })?;
        Ok(Arc::new(Phone {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            listener,
            events: Mutex::new(Some(events)),
            accounts: Mutex::new(Vec::new()),
            next_account_id: AtomicU64::new(1),
            history: Arc::new(Mutex::new(None)),
        }))
    }

    /// Where every event goes from now on. Set it before adding accounts:
    /// events with no listener are dropped.
    pub fn set_listener(&self, listener: Box<dyn PhoneListener>) {
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(Arc::from(listener));
        }
    }

    /// Open a flow to the PBX and register. Returns once the flow is open;
    /// the registration's outcome arrives as `RegistrationChanged`.
    pub fn add_account(&self, config: AccountConfig) -> Result<Arc<Account>, PhoneError> {
        let events = self.events.lock().ok().and_then(|e| e.clone()).ok_or(PhoneError::Closed)?;
        let (server, transport, reg) = sdk_config(config)?;
        let (inner, rx) = run_on(&self.handle, "opening a flow to the PBX", START_TIMEOUT, tsunagu_client::Account::start_with(server, transport, reg))?.map_err(start_error)?;
        let id = self.next_account_id.fetch_add(1, Ordering::Relaxed);
        let account = Arc::new(Account { id, inner, handle: self.handle.clone(), book: Arc::new(CallBook::default()), closed: AtomicBool::new(false), recorder: Arc::new(Mutex::new(tsunagu_client::history::HistoryRecorder::new())), history: self.history.clone() });
        self.handle.spawn(pump(account.clone(), rx, events));
        if let Ok(mut list) = self.accounts.lock() {
            list.retain(|a| !a.closed.load(Ordering::Relaxed));
            list.push(account.clone());
        }
        Ok(account)
    }

    /// The device changed networks (Wi-Fi <-> cellular): every account
    /// moves its calls' media to the new network, registers over a new
    /// flow at once and tells the far ends the new address.
    pub fn network_changed(&self) {
        for a in self.accounts() {
            a.inner.network_changed();
        }
    }

    /// A push notification woke the app (RFC 8599): every account
    /// registers again at once over a fresh flow, so the PBX can hand over
    /// the waiting call (it then arrives as `IncomingCall`).
    pub fn handle_push(&self, payload: String) {
        for a in self.accounts() {
            a.inner.handle_push(&payload);
        }
    }

    /// Keep the call history in `path` (JSON lines; created when missing,
    /// bad lines skipped): finished calls are added and saved from now on.
    /// Returns how many records were loaded.
    pub fn enable_history(&self, path: String) -> Result<u32, PhoneError> {
        let (history, _report) = tsunagu_client::history::History::open(&path, 1000).map_err(|e| invalid(format!("call history {path}: {e}")))?;
        let n = history.len() as u32;
        *self.history.lock().map_err(|_| PhoneError::Internal { reason: "history lock".into() })? = Some(history);
        Ok(n)
    }

    /// The call history, newest first (empty until `enable_history`).
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history.lock().ok().and_then(|h| h.as_ref().map(|h| h.iter().map(history_entry).collect())).unwrap_or_default()
    }

    /// Mark missed calls as seen (the app showed them); returns how many.
    pub fn mark_history_seen(&self) -> u32 {
        let mut guard = match self.history.lock() {
            Ok(g) => g,
            Err(_) => return 0,
        };
        let Some(h) = guard.as_mut() else { return 0 };
        let n = h.mark_seen() as u32;
        let _ = h.save();
        n
    }

    /// Hang up every call, unregister every account (waiting a few seconds
    /// at most for the PBX) and stop the runtime. The Phone is unusable
    /// afterwards; calling it again does nothing.
    ///
    /// Not named `close`: the generated Kotlin gives every object a
    /// `close()` of its own (AutoCloseable, freeing the handle), which an
    /// exported `close` would clash with. Freeing a Phone that was not shut
    /// down still stops its threads, without unregistering.
    pub fn shutdown(&self) {
        let accounts = std::mem::take(&mut *self.accounts.lock().unwrap_or_else(|p| p.into_inner()));
        if !accounts.is_empty() {
            let closes = async move {
                // All at once: the wait is one timeout, not one per account.
                let tasks: Vec<_> = accounts.iter().map(|a| {
                    a.closed.store(true, Ordering::Relaxed);
                    let inner = a.inner.clone();
                    tokio::spawn(async move { inner.close(CLOSE_TIMEOUT).await })
                }).collect();
                for t in tasks {
                    let _ = t.await;
                }
            };
            let _ = run_on(&self.handle, "closing the accounts", CLOSE_TIMEOUT + Duration::from_secs(1), closes);
        }
        self.stop_runtime();
    }
}

impl Phone {
    fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn stop_runtime(&self) {
        if let Ok(mut e) = self.events.lock() {
            e.take();
        }
        let runtime = self.runtime.lock().ok().and_then(|mut r| r.take());
        if let Some(rt) = runtime {
            // Waiting for the runtime from inside one of its own threads
            // panics in tokio; there, let it stop in the background.
            if Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
        }
    }
}

impl Drop for Phone {
    /// A Phone dropped without `shutdown` still stops its threads; the
    /// accounts are not unregistered (their bindings expire at the PBX).
    fn drop(&mut self) {
        self.stop_runtime();
    }
}

fn sdk_config(c: AccountConfig) -> Result<(SocketAddr, tsunagu_client::Transport, RegistrationConfig), PhoneError> {
    let server = c
        .server
        .to_socket_addrs()
        .map_err(|e| invalid(format!("server {:?}: {e}", c.server)))?
        .next()
        .ok_or_else(|| invalid(format!("server {:?} has no address", c.server)))?;
    let transport = match c.transport {
        Transport::Udp => tsunagu_client::Transport::Udp,
        Transport::Tcp => tsunagu_client::Transport::Tcp,
        Transport::Tls { ca_path } => tsunagu_client::Transport::Tls { ca: PathBuf::from(ca_path) },
    };
    let domain = if c.domain.is_empty() { c.server.as_str() } else { c.domain.as_str() };
    let mut reg = RegistrationConfig::new(&c.user, &c.password, domain);
    reg.push = match (c.pn_provider, c.pn_prid, c.pn_param) {
        (Some(provider), Some(prid), param) => Some(PushParams { provider, prid, param }),
        (None, None, None) => None,
        _ => return Err(invalid("push parameters need both pn_provider and pn_prid")),
    };
    Ok((server, transport, reg))
}

fn start_error(e: tsunagu_client::StartError) -> PhoneError {
    match e {
        tsunagu_client::StartError::Config(e) => invalid(e.to_string()),
        tsunagu_client::StartError::Io(e) => PhoneError::Unreachable { reason: e.to_string() },
        tsunagu_client::StartError::Tls(reason) => PhoneError::Tls { reason },
    }
}

// ---------------------------------------------------------------------------
// Account
// ---------------------------------------------------------------------------

/// What the façade remembers of an account's live calls, beyond the SDK:
/// which incoming calls may still be answered or rejected, and which hold
/// or resume each call asked for (the SDK reports only "our offer was
/// answered", which a handover's offer also is).
#[derive(Default)]
struct CallBook {
    calls: Mutex<HashMap<String, CallInfo>>,
}

#[derive(Default, Clone, Copy)]
struct CallInfo {
    /// Incoming, neither answered nor rejected yet.
    unanswered: bool,
    /// A hold (`true`) or resume (`false`) waiting for the far end.
    hold_asked: Option<bool>,
}

impl CallBook {
    fn with<T>(&self, call_id: &str, f: impl FnOnce(&mut CallInfo) -> T) -> Option<T> {
        self.calls.lock().ok()?.get_mut(call_id).map(f)
    }
    fn insert(&self, call_id: &str, info: CallInfo) {
        if let Ok(mut c) = self.calls.lock() {
            c.insert(call_id.to_string(), info);
        }
    }
    fn remove(&self, call_id: &str) {
        if let Ok(mut c) = self.calls.lock() {
            c.remove(call_id);
        }
    }
}

/// One registered account.
#[derive(uniffi::Object)]
pub struct Account {
    id: u64,
    inner: tsunagu_client::Account,
    handle: Handle,
    book: Arc<CallBook>,
    closed: AtomicBool,
    /// Turns this account's events into history records.
    recorder: Arc<Mutex<tsunagu_client::history::HistoryRecorder>>,
    history: Arc<Mutex<Option<tsunagu_client::history::History>>>,
}

#[uniffi::export]
impl Account {
    /// The id events about this account carry.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn state(&self) -> RegistrationState {
        reg_state(self.inner.state())
    }

    /// Call `target` (an extension, or a number as dialled). Returns once
    /// the INVITE is on its way; progress arrives as `CallChanged`.
    pub fn dial(&self, target: String, audio: AudioSpec) -> Result<Arc<Call>, PhoneError> {
        if target.trim().is_empty() {
            return Err(invalid("the number to call is empty"));
        }
        let port = audio_port(&audio)?;
        let inner = self.inner.clone();
        let dialled = target.clone();
        let call_id = run_on(&self.handle, "placing the call", DIAL_TIMEOUT, async move { inner.dial_with_audio(&target, port).await })?
            .map_err(|reason| PhoneError::CallFailed { reason })?;
        self.book.insert(&call_id, CallInfo::default());
        if let Ok(mut r) = self.recorder.lock() {
            r.observe_dial(&call_id, &dialled, std::time::SystemTime::now());
        }
        Ok(Arc::new(self.call(call_id, false)))
    }

    /// Answer the incoming call `call_id` with audio; a bad file is an
    /// error here, an offer with no common codec ends the call (488) with
    /// a `MediaFailed` event.
    pub fn answer(&self, call_id: String, audio: AudioSpec) -> Result<(), PhoneError> {
        self.take_unanswered(&call_id)?;
        match audio_port(&audio) {
            Ok(port) => {
                self.inner.answer_with_audio(&call_id, port);
                Ok(())
            }
            Err(e) => {
                // Still answerable with other audio.
                self.book.with(&call_id, |c| c.unanswered = true);
                Err(e)
            }
        }
    }

    /// Call back someone from the history: dials the entry's number.
    pub fn redial(&self, history_call_id: String, audio: AudioSpec) -> Result<Arc<Call>, PhoneError> {
        let target = self.history.lock().ok().and_then(|h| h.as_ref().and_then(|h| h.redial_target(&history_call_id).map(str::to_string)));
        match target {
            Some(t) => self.dial(t, audio),
            None => Err(invalid(format!("no number to call back for {history_call_id}"))),
        }
    }

    /// Hang up every call and unregister (waiting a few seconds at most
    /// for the PBX). The account is unusable afterwards. (`shutdown`, not
    /// `close`, for the reason given at [`Phone::shutdown`].)
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let inner = self.inner.clone();
        let _ = run_on(&self.handle, "closing the account", CLOSE_TIMEOUT + Duration::from_secs(1), async move { inner.close(CLOSE_TIMEOUT).await });
    }
}

impl Account {
    fn call(&self, call_id: String, incoming: bool) -> Call {
        Call { id: call_id, incoming, account: self.inner.clone(), book: self.book.clone(), recorder: self.recorder.clone() }
    }

    /// Marks an incoming call as no longer answerable, or says why it
    /// never was.
    fn take_unanswered(&self, call_id: &str) -> Result<(), PhoneError> {
        match self.book.with(call_id, |c| std::mem::replace(&mut c.unanswered, false)) {
            Some(true) => Ok(()),
            Some(false) => Err(invalid(format!("call {call_id} is not an unanswered incoming call"))),
            None => Err(PhoneError::NoSuchCall { call_id: call_id.to_string() }),
        }
    }
}

fn reg_state(s: RegState) -> RegistrationState {
    match s {
        RegState::Idle => RegistrationState::Idle,
        RegState::Registering => RegistrationState::Registering,
        RegState::Registered { expires } => RegistrationState::Registered { expires_secs: expires },
        RegState::Failed { code, reason } => RegistrationState::Failed { code, reason, retry_in_secs: None },
        RegState::Unregistering => RegistrationState::Unregistering,
        RegState::Unregistered => RegistrationState::Unregistered,
    }
}

/// The port for an `AudioSpec`: the same choice `tsunagu-phone` makes from
/// `--play` / `--record` (a looped WAV or silence out, a WAV recording or
/// nothing in).
fn audio_port(spec: &AudioSpec) -> Result<Arc<dyn AudioPort>, PhoneError> {
    use tsunagu_client::audio::{file_port, FilePortError};
    let (play, record) = match spec {
        AudioSpec::Silent => (None, None),
        AudioSpec::Files { play_wav, record_wav } => (play_wav.as_deref().map(Path::new), record_wav.as_deref().map(Path::new)),
        AudioSpec::Device { device } => return Ok(Arc::new(DevicePort(device.clone()))),
    };
    file_port(play, record).map_err(|e| PhoneError::Audio {
        reason: match e {
            FilePortError::Play { path, source } => format!("play_wav {}: {source}", path.display()),
            FilePortError::Record { path, source } => format!("record_wav {}: {source}", path.display()),
            FilePortError::Port(e) => e.to_string(),
        },
    })
}

// ---------------------------------------------------------------------------
// Call
// ---------------------------------------------------------------------------

/// One call of an account. Its methods only send commands to the account's
/// driver (they never wait for the network); what follows arrives as
/// events.
#[derive(uniffi::Object)]
pub struct Call {
    id: String,
    incoming: bool,
    account: tsunagu_client::Account,
    book: Arc<CallBook>,
    /// Told of our own hang-ups and refusals, which are no SDK events.
    recorder: Arc<Mutex<tsunagu_client::history::HistoryRecorder>>,
}

#[uniffi::export]
impl Call {
    /// The call's SIP Call-ID, which its events carry.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    pub fn is_incoming(&self) -> bool {
        self.incoming
    }

    /// End the call: CANCEL while it rings, BYE once connected, 603 for an
    /// incoming call not answered yet.
    pub fn hangup(&self) {
        if let Ok(mut r) = self.recorder.lock() {
            r.observe_hangup(&self.id);
        }
        self.account.hangup(&self.id);
    }

    /// Put the far end on hold (`true`) or take it off (`false`). The
    /// outcome arrives as `CallChanged` (`Held` / `Connected`) or
    /// `HoldRefused`.
    pub fn hold(&self, on: bool) -> Result<(), PhoneError> {
        self.book.with(&self.id, |c| c.hold_asked = Some(on)).ok_or_else(|| PhoneError::NoSuchCall { call_id: self.id.clone() })?;
        self.account.hold(&self.id, on);
        Ok(())
    }

    /// Stop (`true`) or restart sending our audio; the call stays as it is.
    pub fn mute(&self, on: bool) {
        self.account.mute(&self.id, on);
    }

    /// Send key presses (RFC 4733): 0-9, *, #, A-D.
    pub fn send_dtmf(&self, digits: String) -> Result<(), PhoneError> {
        if digits.is_empty() {
            return Err(invalid("no digits to send"));
        }
        if let Some(bad) = digits.chars().find(|&c| tsunagu_media::dtmf::char_to_event(c).is_none()) {
            return Err(invalid(format!("{bad:?} is not a DTMF key (0-9, *, #, A-D)")));
        }
        self.account.send_dtmf(&self.id, &digits);
        Ok(())
    }

    /// Ask the PBX to record this call from now on (`on`), or to stop
    /// (on-demand recording; the PBX's recording policy decides).
    pub fn request_recording(&self, on: bool) -> Result<(), PhoneError> {
        self.book.with(&self.id, |_| ()).ok_or_else(|| PhoneError::NoSuchCall { call_id: self.id.clone() })?;
        self.account.request_recording(&self.id, on);
        Ok(())
    }

    /// Blind transfer: ask the far end to call `target` (an extension or a
    /// SIP URI) instead. Progress arrives as `TransferProgress`.
    pub fn transfer(&self, target: String) -> Result<(), PhoneError> {
        if target.trim().is_empty() {
            return Err(invalid("the transfer target is empty"));
        }
        self.book.with(&self.id, |_| ()).ok_or_else(|| PhoneError::NoSuchCall { call_id: self.id.clone() })?;
        self.account.transfer(&self.id, &target);
        Ok(())
    }

    /// Attended transfer: connect this call's far end with `other`'s (a
    /// consultation call of the same account); both calls end on success.
    pub fn transfer_to(&self, other: Arc<Call>) -> Result<(), PhoneError> {
        if other.id == self.id {
            return Err(invalid("a call cannot be transferred to itself"));
        }
        self.book.with(&other.id, |_| ()).ok_or_else(|| PhoneError::NoSuchCall { call_id: other.id.clone() })?;
        self.account.transfer_attended(&self.id, &other.id);
        Ok(())
    }

    /// Refuse an incoming call not answered yet, with a SIP status 400-699
    /// (486 busy, 603 decline …).
    pub fn reject(&self, code: u16) -> Result<(), PhoneError> {
        if !(400..=699).contains(&code) {
            return Err(invalid(format!("{code} is not a SIP status that refuses a call (400-699)")));
        }
        if !self.incoming {
            return Err(invalid("only an incoming call can be rejected; hang up an outgoing one"));
        }
        match self.book.with(&self.id, |c| std::mem::replace(&mut c.unanswered, false)) {
            Some(true) => {
                if let Ok(mut r) = self.recorder.lock() {
                    r.observe_hangup(&self.id);
                }
                self.account.reject(&self.id, code);
                Ok(())
            }
            Some(false) => Err(invalid("the call was already answered or rejected")),
            None => Err(PhoneError::NoSuchCall { call_id: self.id.clone() }),
        }
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// Moves one account's events from the SDK to the dispatcher until the
/// account stops (its driver drops the sender) or the Phone closes.
async fn pump(account: Arc<Account>, mut rx: tokio::sync::mpsc::UnboundedReceiver<AccountEvent>, out: std_mpsc::Sender<PhoneEvent>) {
    while let Some(ev) = rx.recv().await {
        let record = account.recorder.lock().ok().and_then(|mut r| r.observe(&ev, std::time::SystemTime::now()));
        let history = record.and_then(|rec| record_call(&account.history, rec));
        for event in convert(&account, ev).into_iter().chain(history) {
            if out.send(event).is_err() {
                return;
            }
        }
    }
}

/// Add a finished call to the history (when enabled) and save it; the
/// event tells the app to refresh its list.
fn record_call(history: &Mutex<Option<tsunagu_client::history::History>>, record: tsunagu_client::history::CallRecord) -> Option<PhoneEvent> {
    let mut guard = history.lock().ok()?;
    let h = guard.as_mut()?;
    h.add(record);
    // A failed save keeps the records in memory; the next one retries.
    let _ = h.save();
    Some(PhoneEvent::HistoryChanged { missed_unseen: h.missed_unseen() as u32 })
}

fn history_entry(r: &tsunagu_client::history::CallRecord) -> HistoryEntry {
    use tsunagu_client::history::{Direction, Outcome};
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (outcome, failure_code) = match r.outcome {
        Outcome::Answered => ("answered", 0),
        Outcome::Missed => ("missed", 0),
        Outcome::Rejected => ("rejected", 0),
        Outcome::Cancelled => ("cancelled", 0),
        Outcome::Failed { code } => ("failed", code),
    };
    HistoryEntry {
        call_id: r.id.clone(),
        incoming: r.direction == Direction::Incoming,
        outcome: outcome.to_string(),
        failure_code,
        number: r.redial_target().unwrap_or_default().to_string(),
        display_name: r.remote.display_name.clone(),
        started_at: secs(r.started_at),
        duration_secs: r.duration.as_secs(),
        seen: r.seen,
    }
}

fn convert(account: &Account, ev: AccountEvent) -> Option<PhoneEvent> {
    let account_id = account.id;
    Some(match ev {
        AccountEvent::Registration(r) => PhoneEvent::RegistrationChanged {
            account_id,
            state: match r {
                RegEvent::Registered { expires } => RegistrationState::Registered { expires_secs: expires },
                RegEvent::Failed { code, reason, retry_in } => RegistrationState::Failed { code, reason, retry_in_secs: Some(retry_in.as_secs()) },
                RegEvent::Unregistered => RegistrationState::Unregistered,
            },
        },
        AccountEvent::IncomingCall { call_id, from, .. } => {
            account.book.insert(&call_id, CallInfo { unanswered: true, hold_asked: None });
            PhoneEvent::IncomingCall { account_id, call: Arc::new(account.call(call_id, true)), caller: from }
        }
        AccountEvent::Call { call_id, event } => {
            let state = match event {
                CallEvent::Ringing => CallState::Ringing,
                CallEvent::EarlyMedia { .. } => CallState::EarlyMedia,
                CallEvent::Connected { .. } => CallState::Connected,
                CallEvent::Ended { code, reason } => {
                    account.book.remove(&call_id);
                    CallState::Ended { code, reason }
                }
                CallEvent::RemoteOffer { .. } => return Some(PhoneEvent::RemoteUpdated { account_id, call_id }),
                // Only an answer to our own hold or resume changes what the
                // app shows; a handover's offer being answered does not.
                CallEvent::OfferAnswered { .. } => match account.book.with(&call_id, |c| c.hold_asked.take()).flatten()? {
                    true => CallState::Held,
                    false => CallState::Connected,
                },
                CallEvent::OfferRefused { code } => {
                    let asked = account.book.with(&call_id, |c| c.hold_asked.take()).flatten();
                    return asked.map(|_| PhoneEvent::HoldRefused { account_id, call_id, code });
                }
                CallEvent::Dtmf { digit } => return Some(PhoneEvent::DigitReceived { account_id, call_id, digit: digit.to_string() }),
                CallEvent::TransferRequested { target } => return Some(PhoneEvent::TransferAsked { account_id, call_id, target }),
                CallEvent::TransferProgress { code, done } => return Some(PhoneEvent::TransferProgress { account_id, call_id, code, done }),
            };
            PhoneEvent::CallChanged { account_id, call_id, state }
        }
        AccountEvent::MediaFailed { call_id, reason } => PhoneEvent::MediaFailed { account_id, call_id, reason },
        AccountEvent::FlowLost { reason } => PhoneEvent::ConnectionLost { account_id, reason },
        // The SDK already answered it (501); nothing for the app to do.
        AccountEvent::Unhandled { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    //! The façade's own glue, without a PBX: the "PBX" here is a UDP
    //! socket on loopback that never answers, which is all an account
    //! needs to start. Calls through a real PBX are in
    //! tests/e2e_bindings.rs (Kotlin and Python).

    use super::*;
    use std::net::UdpSocket;
    use std::path::Path;

    fn config(server: &str) -> AccountConfig {
        AccountConfig {
            server: server.to_string(),
            transport: Transport::Udp,
            user: "1001".into(),
            password: "pw".into(),
            domain: String::new(),
            pn_provider: None,
            pn_prid: None,
            pn_param: None,
        }
    }

    /// A Phone with one account on a silent loopback "PBX".
    fn phone_and_account() -> (Arc<Phone>, Arc<Account>, UdpSocket) {
        let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = Phone::new().unwrap();
        let account = phone.add_account(config(&pbx.local_addr().unwrap().to_string())).unwrap();
        (phone, account, pbx)
    }

    struct Collect(Mutex<std_mpsc::Sender<PhoneEvent>>);

    impl PhoneListener for Collect {
        fn on_event(&self, event: PhoneEvent) {
            if matches!(event, PhoneEvent::ConnectionLost { ref reason, .. } if reason == "panic") {
                panic!("a listener that fails");
            }
            let _ = self.0.lock().unwrap().send(event);
        }
    }

    #[test]
    fn an_audio_device_carries_the_shells_audio_to_the_engine_and_back() {
        let device = AudioDevice::new(16_000, 320).unwrap();
        assert!(matches!(AudioDevice::new(7, 0), Err(PhoneError::InvalidArgument { .. })));
        // Outside a call: capture is dropped, playout is silence.
        device.push_capture(vec![1000; 320]);
        assert_eq!(device.pull_playout(320), vec![0; 320]);
        assert!(!device.in_call());
        // A call's media starts the port: the engine gets 8 kHz frames of
        // what the shell pushed, and what it plays comes back out.
        let port: Arc<dyn AudioPort> = audio_port(&AudioSpec::Device { device: device.clone() }).unwrap();
        let mut driver = tsunagu_client::Driver::start(port, tsunagu_client::BridgeConfig::default(), std::time::Instant::now()).unwrap();
        assert!(device.in_call());
        let mut heard = 0usize;
        for _ in 0..10 {
            device.push_capture(vec![8000; 320]);
            driver.step(&mut |capture: &[i16], out: &mut [i16]| {
                heard += capture.iter().filter(|s| **s > 4000).count();
                out.fill(3000);
            });
        }
        assert!(heard > 1000, "the engine saw the pushed capture ({heard} loud samples)");
        let mut played = Vec::new();
        for _ in 0..10 {
            played.extend(device.pull_playout(320));
        }
        assert!(played.iter().filter(|s| **s > 1500).count() > 1000, "what the engine played reaches the shell");
        drop(driver);
        assert!(!device.in_call(), "the call's end releases the device");
    }

    #[test]
    fn account_settings_are_checked_before_anything_is_sent() {
        let (server, transport, reg) = sdk_config(config("127.0.0.1:5060")).unwrap();
        assert_eq!(server, "127.0.0.1:5060".parse::<SocketAddr>().unwrap());
        assert!(matches!(transport, tsunagu_client::Transport::Udp));
        assert_eq!(reg.domain, "127.0.0.1:5060", "an empty domain is the server as written");
        assert!(reg.push.is_none());

        let mut c = config("127.0.0.1:5060");
        c.domain = "city.example".into();
        c.transport = Transport::Tls { ca_path: "/etc/ca.pem".into() };
        c.pn_provider = Some("apns".into());
        c.pn_prid = Some("token".into());
        let (_, transport, reg) = sdk_config(c).unwrap();
        assert_eq!(reg.domain, "city.example");
        assert!(matches!(transport, tsunagu_client::Transport::Tls { ca } if ca == Path::new("/etc/ca.pem")));
        assert_eq!(reg.push, Some(PushParams { provider: "apns".into(), prid: "token".into(), param: None }));

        let mut half_push = config("127.0.0.1:5060");
        half_push.pn_prid = Some("token".into());
        assert!(matches!(sdk_config(half_push), Err(PhoneError::InvalidArgument { .. })));
        assert!(matches!(sdk_config(config("no port")), Err(PhoneError::InvalidArgument { .. })));

        let phone = Phone::new().unwrap();
        let mut empty_user = config("127.0.0.1:5060");
        empty_user.user = String::new();
        let err = phone.add_account(empty_user).err().expect("an empty user is refused");
        assert!(matches!(err, PhoneError::InvalidArgument { .. }), "{err}");
        let mut bad_ca = config("127.0.0.1:5060");
        bad_ca.transport = Transport::Tls { ca_path: "/nonexistent/ca.pem".into() };
        assert!(matches!(phone.add_account(bad_ca), Err(PhoneError::Tls { .. })));
        phone.shutdown();
    }

    #[test]
    fn misuse_is_an_error_not_a_crash() {
        let (phone, account, _pbx) = phone_and_account();
        assert!(matches!(account.dial(" ".into(), AudioSpec::Silent), Err(PhoneError::InvalidArgument { .. })));
        let missing = AudioSpec::Files { play_wav: Some("/nonexistent/in.wav".into()), record_wav: None };
        assert!(matches!(account.dial("1002".into(), missing), Err(PhoneError::Audio { .. })));
        assert!(matches!(account.answer("nope".into(), AudioSpec::Silent), Err(PhoneError::NoSuchCall { .. })));

        // An incoming call as the pump records it: answerable once.
        account.book.insert("in-1", CallInfo { unanswered: true, hold_asked: None });
        let call = account.call("in-1".into(), true);
        assert!(matches!(call.reject(200), Err(PhoneError::InvalidArgument { .. })));
        assert!(matches!(call.send_dtmf("12x".into()), Err(PhoneError::InvalidArgument { .. })));
        assert!(matches!(call.send_dtmf(String::new()), Err(PhoneError::InvalidArgument { .. })));
        call.send_dtmf("0123456789*#ABCDabcd".into()).unwrap();
        account.answer("in-1".into(), AudioSpec::Silent).unwrap();
        assert!(matches!(account.answer("in-1".into(), AudioSpec::Silent), Err(PhoneError::InvalidArgument { .. })));
        assert!(matches!(call.reject(486), Err(PhoneError::InvalidArgument { .. })), "answered already");
        let out = account.call("out-1".into(), false);
        assert!(matches!(out.reject(486), Err(PhoneError::InvalidArgument { .. })), "an outgoing call is hung up");
        assert!(matches!(out.hold(true), Err(PhoneError::NoSuchCall { .. })));

        // After shutdown everything says Closed, quickly; shutdown twice is fine.
        phone.shutdown();
        phone.shutdown();
        let started = std::time::Instant::now();
        assert!(matches!(account.dial("1002".into(), AudioSpec::Silent), Err(PhoneError::Closed)));
        assert!(matches!(phone.add_account(config("127.0.0.1:5060")), Err(PhoneError::Closed)));
        account.shutdown();
        phone.network_changed();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn only_answers_to_our_own_hold_change_the_call_state() {
        let (phone, account, _pbx) = phone_and_account();
        let ev = |event| AccountEvent::Call { call_id: "c1".into(), event };
        let state = |e: Option<PhoneEvent>| match e {
            Some(PhoneEvent::CallChanged { state, .. }) => Some(state),
            _ => None,
        };
        account.book.insert("c1", CallInfo::default());
        assert_eq!(state(convert(&account, ev(CallEvent::Connected { sdp: None }))), Some(CallState::Connected));
        // A handover's offer being answered: nothing for the app.
        assert!(convert(&account, ev(CallEvent::OfferAnswered { sdp: Default::default() })).is_none());
        assert!(convert(&account, ev(CallEvent::OfferRefused { code: 491 })).is_none());

        let call = account.call("c1".into(), false);
        call.hold(true).unwrap();
        assert_eq!(state(convert(&account, ev(CallEvent::OfferAnswered { sdp: Default::default() }))), Some(CallState::Held));
        call.hold(false).unwrap();
        assert_eq!(state(convert(&account, ev(CallEvent::OfferAnswered { sdp: Default::default() }))), Some(CallState::Connected));
        call.hold(true).unwrap();
        assert!(matches!(convert(&account, ev(CallEvent::OfferRefused { code: 491 })), Some(PhoneEvent::HoldRefused { code: 491, .. })));
        assert!(matches!(convert(&account, ev(CallEvent::RemoteOffer { sdp: Default::default() })), Some(PhoneEvent::RemoteUpdated { .. })));

        let ended = convert(&account, ev(CallEvent::Ended { code: 200, reason: "hung up".into() }));
        assert_eq!(state(ended), Some(CallState::Ended { code: 200, reason: "hung up".into() }));
        assert!(matches!(call.hold(true), Err(PhoneError::NoSuchCall { .. })), "forgotten once ended");

        let incoming = convert(&account, AccountEvent::IncomingCall { call_id: "in-2".into(), from: "1002".into(), offer: Default::default() });
        let Some(PhoneEvent::IncomingCall { call, caller, account_id }) = incoming else { panic!("no IncomingCall") };
        assert_eq!((call.id(), call.is_incoming(), caller.as_str(), account_id), ("in-2".to_string(), true, "1002", account.id()));
        call.reject(486).unwrap();
        assert!(convert(&account, AccountEvent::Unhandled { method: "MESSAGE".into() }).is_none());
        phone.shutdown();
    }

    #[test]
    fn events_reach_the_listener_in_order_even_after_it_failed() {
        let listener: Listener = Arc::new(Mutex::new(None));
        let events = spawn_dispatcher(listener.clone()).unwrap();
        let (tx, rx) = std_mpsc::channel();
        *listener.lock().unwrap() = Some(Arc::new(Collect(Mutex::new(tx))));
        let lost = |reason: &str| PhoneEvent::ConnectionLost { account_id: 1, reason: reason.into() };
        for e in [lost("a"), lost("panic"), lost("b")] {
            events.send(e).unwrap();
        }
        // The dispatcher ends with its senders, and the listener (holding
        // `tx`) with the last owner of it.
        drop(events);
        drop(listener);
        let got: Vec<String> = rx
            .iter()
            .map(|e| match e {
                PhoneEvent::ConnectionLost { reason, .. } => reason,
                _ => "?".into(),
            })
            .collect();
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn an_account_registers_through_the_listener_and_shuts_down_in_bounded_time() {
        let (phone, _account, pbx) = phone_and_account();
        let (tx, rx) = std_mpsc::channel();
        phone.set_listener(Box::new(Collect(Mutex::new(tx))));
        // The REGISTER reached the "PBX" (the account started before the
        // listener was set, so its events so far were dropped).
        pbx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = pbx.recv_from(&mut buf).expect("a REGISTER within 5 s");
        assert!(buf[..n].starts_with(b"REGISTER "), "{}", String::from_utf8_lossy(&buf[..n]));
        // Nobody answers the unregistration: shutdown still returns, within
        // its bound, and the event thread ends.
        let started = std::time::Instant::now();
        phone.shutdown();
        assert!(started.elapsed() < CLOSE_TIMEOUT + SHUTDOWN_TIMEOUT + Duration::from_secs(2), "{:?}", started.elapsed());
        // The listener lives as long as the Phone holds it.
        drop(phone);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(_) => continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std_mpsc::RecvTimeoutError::Timeout) => panic!("the event thread still runs after shutdown"),
            }
        }
    }
}
