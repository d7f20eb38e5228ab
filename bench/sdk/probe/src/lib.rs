//! Size probe for bench/sdk/run: the softphone SDK (tsunagu-client) as a
//! C-ABI cdylib, measured only when bindings/ffi (tsunagu-ffi, the real
//! uniffi library) is absent or does not build.
//!
//! A cdylib keeps only what its exported symbols reach; a cdylib of
//! tsunagu-client itself would export nothing and link to almost nothing.
//! These functions reach what an app's binding layer reaches: an account
//! over UDP, TCP or TLS, placing and answering calls with audio from a
//! sound-card-style bridge (the path mobile shells use) or WAV files, DTMF,
//! mute, hold, network changes, hang-up and close. They are never called by
//! the benchmark; only the size of the library is measured. No uniffi
//! scaffolding is in it, so it is a lower bound of what tsunagu-ffi weighs.

use std::ffi::{c_char, c_int, CStr};
use std::sync::Arc;
use std::time::Duration;

use tsunagu_client::{
    Account, AccountEvent, AudioBridge, AudioFormat, AudioPort, BridgeConfig, CallEvent, NullPort, RegistrationConfig, SplitPort, ToneSource, Transport,
    WavSink, WavSource,
};

fn text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller passes NUL-terminated strings.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The audio of a call: WAV files when both are given, else a tone and no
/// playout; plus the PCM bridge a mobile shell feeds from its audio thread.
fn port(play: Option<String>, record: Option<String>) -> Option<(Arc<dyn AudioPort>, Option<Arc<AudioBridge>>)> {
    let bridge = AudioBridge::new(AudioFormat::with_20ms_frames(48_000).ok()?, BridgeConfig::default()).ok();
    match (play, record) {
        (Some(p), Some(r)) => {
            let src: Arc<dyn AudioPort> = Arc::new(WavSource::open(p, true).ok()?);
            let sink: Arc<dyn AudioPort> = Arc::new(WavSink::create(r, AudioFormat::ENGINE.sample_rate).ok()?);
            Some((Arc::new(SplitPort::new(src, sink).ok()?), bridge))
        }
        _ => {
            let src: Arc<dyn AudioPort> = Arc::new(ToneSource::new(AudioFormat::ENGINE, 440.0, 8000).ok()?);
            let sink: Arc<dyn AudioPort> = Arc::new(NullPort::new(AudioFormat::ENGINE).ok()?);
            Some((Arc::new(SplitPort::new(src, sink).ok()?), bridge))
        }
    }
}

/// Registers, then calls `target` (or answers the first call when `target`
/// is NULL) for `seconds`, pressing `digits`, toggling mute and hold once;
/// `transport` 0 UDP, 1 TCP, 2 TLS (trusting the PEM file `ca`). Returns 0
/// when the call connected.
///
/// # Safety
/// Every pointer is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tsunagu_probe_call(
    server: *const c_char,
    user: *const c_char,
    password: *const c_char,
    transport: c_int,
    ca: *const c_char,
    target: *const c_char,
    play: *const c_char,
    record: *const c_char,
    digits: *const c_char,
    seconds: f64,
) -> c_int {
    let (Some(server), Some(user), Some(password)) = (text(server), text(user), text(password)) else { return 1 };
    let Ok(addr) = server.parse() else { return 1 };
    let transport = match (transport, text(ca)) {
        (1, _) => Transport::Tcp,
        (2, Some(ca)) => Transport::Tls { ca: ca.into() },
        _ => Transport::Udp,
    };
    let Some((audio, bridge)) = port(text(play), text(record)) else { return 1 };
    let (target, digits) = (text(target), text(digits));
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else { return 1 };
    rt.block_on(async move {
        let config = RegistrationConfig::new(&user, &password, &server);
        let Ok((account, mut events)) = Account::start_with(addr, transport, config).await else { return 2 };
        account.watch_network();
        let id = match &target {
            Some(t) => match account.dial_with_audio(t, audio).await {
                Ok(id) => id,
                Err(_) => return 3,
            },
            None => loop {
                match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                    Ok(Some(AccountEvent::IncomingCall { call_id, .. })) => {
                        account.answer_with_audio(&call_id, audio.clone());
                        break call_id;
                    }
                    Ok(Some(_)) => continue,
                    _ => return 3,
                }
            },
        };
        let mut status = 3;
        let until = tokio::time::Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0));
        let mut frame = vec![0i16; 960];
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.recv()).await {
            if let Some(b) = &bridge {
                b.push_capture(&frame);
                b.pull_playout(&mut frame);
            }
            match ev {
                AccountEvent::Call { call_id, event: CallEvent::Connected { .. } } if call_id == id => {
                    status = 0;
                    if let Some(d) = &digits {
                        account.send_dtmf(&id, d);
                    }
                    account.mute(&id, true);
                    account.mute(&id, false);
                    account.hold(&id, true);
                    account.hold(&id, false);
                    account.network_changed();
                }
                AccountEvent::Call { call_id, event: CallEvent::Ended { .. } } if call_id == id => break,
                _ => {}
            }
        }
        account.hangup(&id);
        account.close(Duration::from_secs(5)).await;
        status
    })
}
