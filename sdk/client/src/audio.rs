//! The audio boundary of the SDK: where a call's media engine, which works
//! on 8 kHz mono `i16` PCM in 20 ms frames of 160 samples (the codec side,
//! tsunagu-media), meets a sound device that runs at its own rate and frame
//! size and, on a phone, on its own real-time thread.
//!
//! It owns three things:
//! - [`AudioPort`], what a device implements. Phone shells implement it on
//!   the platform's voice path (iOS AVAudioEngine with voice-processing I/O,
//!   Android AAudio/Oboe with the voice-communication preset) so the OS's
//!   echo canceller and gain control do their work; desktops will use cpal
//!   behind a feature. The trait is object-safe, `Send + Sync`, takes `&self`
//!   and only owned, FFI-plain types (`u32`, `Vec<i16>`, `Arc<AudioBridge>`)
//!   so that it maps onto a uniffi callback interface as it stands.
//! - [`AudioBridge`], the SDK's side, shared between the device thread and
//!   the engine: two bounded single-producer single-consumer rings of
//!   samples at the device's rate, and the [`Resampler`]s to and from
//!   8 kHz. All resampling happens on the engine's side, so the device's
//!   audio callback does nothing but copy samples into or out of a ring.
//! - Ports without a device, for tests and tools ([`NullPort`],
//!   [`ToneSource`], [`WavSource`], [`WavSink`], [`SplitPort`]), and the
//!   [`Driver`] that gives them a clock, so a call can run with no sound
//!   card at all (tests, the desktop phone on a headless box, rendering a
//!   call to a file faster than real time).
//!
//! # Who drives the clock
//!
//! Exactly one clock paces a call's audio: the device's. A port with its
//! own clock ([`PortClock::Own`], every real device) keeps the bridge it is
//! given in [`AudioPort::start`] and, from its audio callback, calls
//! [`AudioBridge::push_capture`] with what the microphone took and
//! [`AudioBridge::pull_playout`] for what the speaker needs. A port without
//! one ([`PortClock::Driven`]) is called by the [`Driver`], which moves one
//! port frame per frame period of the caller's clock (`tick(now)`) or on
//! demand (`step`). In both cases the engine runs once per 160 samples of
//! capture that have arrived (`Driver::tick`, or its own loop over
//! [`AudioBridge::read_capture`]), and writes one frame of playout each
//! time, so the engine neither drifts against the device nor needs a timer
//! of its own.
//!
//! # Threading contract
//!
//! - `push_capture` and `pull_playout` are the device side: call them from
//!   one thread at a time (the audio callback). They never block, never
//!   allocate, take no lock: a ring is lock-free, and each of its ends is
//!   guarded by a flag that is tried, not waited on. A second thread that
//!   enters an end already in use (a contract violation) is turned away at
//!   once and counted as `contended` rather than made to wait.
//! - `read_capture` and `write_playout` are the engine side; they resample,
//!   allocate only while their buffers first grow, and take a mutex that
//!   only the engine side uses, so the device thread never waits on them.
//! - The rings are bounded ([`BridgeConfig::capacity_ms`]). A full ring
//!   drops what does not fit (an overrun); a playout ring that runs dry is
//!   made up with silence (an underrun). Both are counted in
//!   [`AudioStats`], never waited out: on a real-time thread a late sample
//!   is worse than a lost one.
//!
//! Like the rest of the crate, nothing here panics on any input: bad rates,
//! odd frame sizes, malformed WAV files and foreign ports that return the
//! wrong number of samples are typed errors or counted, not crashes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tsunagu_media::{read_wav_pcm16, write_wav_pcm16, MediaError, Resampler};

/// The rate of the engine side: every codec takes and gives 8 kHz PCM.
pub const ENGINE_RATE: u32 = 8000;
/// One engine frame: 20 ms at [`ENGINE_RATE`].
pub const ENGINE_FRAME_SAMPLES: usize = 160;
/// The engine's frame period.
pub const ENGINE_FRAME: Duration = Duration::from_millis(20);

/// The resampler's range; a port outside it cannot be bridged.
const MIN_RATE: u32 = 4_000;
const MAX_RATE: u32 = 192_000;
/// Rings hold at least one engine frame and at most this much audio, so a
/// bad config cannot ask for gigabytes.
const MAX_CAPACITY_MS: u32 = 5_000;
/// The largest WAV file [`WavSource`] loads: an hour of 48 kHz audio. It is
/// read whole, so a path to something huge must not take the phone's memory.
const MAX_WAV_BYTES: u64 = 400 << 20;
/// The most port frames one `Driver::tick` moves to catch up after the
/// caller was late (a suspended process); the rest of the gap is skipped.
const MAX_CATCH_UP: u64 = 10;
/// Engine-side reads from a ring are done in pieces of this size.
const SCRATCH: usize = 1024;

/// Why audio could not be set up. Running audio never fails: overruns and
/// underruns are counted in [`AudioStats`] instead.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A sample rate, frame size or tone the bridge cannot work with.
    #[error("unsupported audio format: {0}")]
    Format(&'static str),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not 16-bit mono PCM WAV, or is cut short.
    #[error("{}: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: MediaError,
    },
    #[error("{}: {bytes} bytes is more than a WAV source loads", path.display())]
    TooLarge { path: PathBuf, bytes: u64 },
    /// A platform port could not open its device (no microphone
    /// permission, device busy, ...); the text is the platform's.
    #[error("audio device: {0}")]
    Device(String),
}

/// What a port's device runs at. Fixed for the port's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// Samples per second, mono.
    pub sample_rate: u32,
    /// Samples per device callback (or per driven frame). Callbacks of
    /// other sizes are fine; this paces a [`Driver`] and sizes its buffers.
    pub frame_samples: u32,
}

impl AudioFormat {
    /// The engine's own format: 8 kHz, 20 ms frames.
    pub const ENGINE: AudioFormat = AudioFormat { sample_rate: ENGINE_RATE, frame_samples: ENGINE_FRAME_SAMPLES as u32 };

    /// A checked format.
    pub fn new(sample_rate: u32, frame_samples: u32) -> Result<Self, AudioError> {
        let format = AudioFormat { sample_rate, frame_samples };
        format.validate()?;
        Ok(format)
    }

    /// `sample_rate` with 20 ms frames (rounded down to whole samples for
    /// rates that are not a multiple of 50 Hz).
    pub fn with_20ms_frames(sample_rate: u32) -> Result<Self, AudioError> {
        Self::new(sample_rate, sample_rate / 50)
    }

    /// Checks the rate against the resampler's range and the frame size
    /// against the rate (1 sample to 1 second).
    pub fn validate(&self) -> Result<(), AudioError> {
        if !(MIN_RATE..=MAX_RATE).contains(&self.sample_rate) {
            return Err(AudioError::Format("sample rate outside 4000..=192000 Hz"));
        }
        if self.frame_samples == 0 || self.frame_samples > self.sample_rate {
            return Err(AudioError::Format("frame size must be 1 sample to 1 second"));
        }
        Ok(())
    }

    /// How long one frame lasts (to the nanosecond, rounded down).
    pub fn frame_duration(&self) -> Duration {
        duration_of(u64::from(self.frame_samples), self.sample_rate)
    }
}

/// The length of a frame asked for through the FFI-shaped calls, capped at
/// one second at the highest rate: a foreign caller's absurd count must not
/// become a multi-gigabyte allocation.
fn frame_len(samples: u32) -> usize {
    samples.min(MAX_RATE) as usize
}

/// `samples` at `rate`, as a duration (0 for a zero rate).
fn duration_of(samples: u64, rate: u32) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Who paces a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortClock {
    /// The port's device calls the bridge from its own audio callback.
    Own,
    /// The port has no clock: a [`Driver`] calls [`AudioPort::capture`] and
    /// [`AudioPort::playout`] once per frame.
    Driven,
}

/// A sound device, or something that stands in for one.
///
/// Implemented by the platform (through a uniffi callback interface) or by
/// the ports in this module. Every method takes `&self` and may be called
/// from any thread; an implementation keeps its state behind its own
/// synchronisation.
pub trait AudioPort: Send + Sync {
    /// The rate and frame size of the device. Must not change while the
    /// port is started.
    fn format(&self) -> AudioFormat;

    /// Opens the device. A port with its own clock keeps `bridge` and from
    /// now on calls [`AudioBridge::push_capture`] and
    /// [`AudioBridge::pull_playout`] from its audio callback, and returns
    /// [`PortClock::Own`]. A port without one ignores `bridge` and returns
    /// [`PortClock::Driven`] (the default).
    fn start(&self, bridge: Arc<AudioBridge>) -> Result<PortClock, AudioError> {
        let _ = bridge;
        Ok(PortClock::Driven)
    }

    /// Closes the device; afterwards the port no longer calls the bridge.
    /// Called once per successful `start`. Nothing to do by default.
    fn stop(&self) {}

    /// Driven ports: the next `samples` of capture (never more than a
    /// frame). Returning fewer or more is tolerated (the shortfall shows up as missing audio). Ports with
    /// their own clock are never asked and may return an empty vector.
    fn capture(&self, samples: u32) -> Vec<i16>;

    /// Driven ports: the next frame of playout. Ports with their own clock
    /// are never given any and may ignore it.
    fn playout(&self, pcm: Vec<i16>);
}

// ---------------------------------------------------------------------------
// Ring

/// A bounded, lock-free single-producer single-consumer ring of samples.
///
/// Safe Rust throughout: each slot is an atomic, the producer publishes
/// slots with a release store of `written`, the consumer frees them with a
/// release store of `read`. Both counters wrap; the capacity is a power of
/// two so that wrapping keeps `index & mask` continuous. Each end carries a
/// busy flag that is tried, never waited on, so two threads wrongly using
/// the same end get `None` instead of corrupting the ring or blocking.
struct SampleRing {
    slots: Box<[AtomicI16]>,
    mask: usize,
    /// Samples ever written and read, modulo the word size; their
    /// difference is the fill level.
    written: AtomicUsize,
    read: AtomicUsize,
    producing: AtomicBool,
    consuming: AtomicBool,
}

impl SampleRing {
    /// A ring of at least `min_capacity` samples (rounded up to a power of
    /// two).
    fn new(min_capacity: usize) -> Self {
        let capacity = min_capacity.max(2).checked_next_power_of_two().unwrap_or(1 << 24).min(1 << 24);
        SampleRing {
            slots: (0..capacity).map(|_| AtomicI16::new(0)).collect(),
            mask: capacity - 1,
            written: AtomicUsize::new(0),
            read: AtomicUsize::new(0),
            producing: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
        }
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn len(&self) -> usize {
        let read = self.read.load(Ordering::Acquire);
        self.written.load(Ordering::Acquire).wrapping_sub(read).min(self.capacity())
    }

    /// Appends as much of `pcm` as fits; returns how much that was, or
    /// `None` if another thread is producing right now.
    fn push(&self, pcm: &[i16]) -> Option<usize> {
        if self.producing.swap(true, Ordering::Acquire) {
            return None;
        }
        let written = self.written.load(Ordering::Relaxed);
        let read = self.read.load(Ordering::Acquire);
        let free = self.capacity().saturating_sub(written.wrapping_sub(read));
        let n = free.min(pcm.len());
        for (i, &s) in pcm.iter().take(n).enumerate() {
            if let Some(slot) = self.slots.get(written.wrapping_add(i) & self.mask) {
                slot.store(s, Ordering::Relaxed);
            }
        }
        self.written.store(written.wrapping_add(n), Ordering::Release);
        self.producing.store(false, Ordering::Release);
        Some(n)
    }

    /// Takes up to `out.len()` samples into the front of `out`; returns how
    /// many, or `None` if another thread is consuming right now.
    fn pop(&self, out: &mut [i16]) -> Option<usize> {
        if self.consuming.swap(true, Ordering::Acquire) {
            return None;
        }
        let read = self.read.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Acquire);
        let n = written.wrapping_sub(read).min(self.capacity()).min(out.len());
        for (i, o) in out.iter_mut().take(n).enumerate() {
            if let Some(slot) = self.slots.get(read.wrapping_add(i) & self.mask) {
                *o = slot.load(Ordering::Relaxed);
            }
        }
        self.read.store(read.wrapping_add(n), Ordering::Release);
        self.consuming.store(false, Ordering::Release);
        Some(n)
    }
}

// ---------------------------------------------------------------------------
// Bridge

/// How much the bridge buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Most audio each direction holds before it drops (20..=5000 ms).
    /// Larger absorbs a late engine at the cost of latency when it is late.
    pub capacity_ms: u32,
    /// Silence queued for playout at the start, so a device callback that
    /// pulls before the engine has answered its first capture does not run
    /// dry. 0 when the driver runs port and engine in step.
    pub prefill_ms: u32,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig { capacity_ms: 200, prefill_ms: 0 }
    }
}

/// A snapshot of a bridge's counters, all since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AudioStats {
    /// Device pushes that found the capture ring full (the engine is not
    /// reading), and the device-rate samples dropped by them.
    pub capture_overruns: u64,
    pub capture_dropped: u64,
    /// Engine writes that found the playout ring full (the device is not
    /// pulling), and the device-rate samples dropped.
    pub playout_overruns: u64,
    pub playout_dropped: u64,
    /// Device pulls that found less than asked, and the samples of silence
    /// put in their place.
    pub playout_underruns: u64,
    pub playout_silence: u64,
    /// Calls turned away because another thread was in the same end of a
    /// ring at the same moment (a broken threading contract).
    pub contended: u64,
}

#[derive(Default)]
struct Counters {
    capture_overruns: AtomicU64,
    capture_dropped: AtomicU64,
    playout_overruns: AtomicU64,
    playout_dropped: AtomicU64,
    playout_underruns: AtomicU64,
    playout_silence: AtomicU64,
    contended: AtomicU64,
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(u64::try_from(by).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// State only the engine side touches.
struct EngineSide {
    /// Device rate to 8 kHz, and back.
    down: Resampler,
    up: Resampler,
    /// Device-rate capture taken from the ring.
    scratch: Vec<i16>,
    /// Resampler output.
    resampled: Vec<i16>,
    /// 8 kHz capture not yet read as a frame.
    pending: VecDeque<i16>,
    /// Bound of `pending`: the ring's capacity at 8 kHz plus a frame.
    pending_max: usize,
}

/// The SDK's side of an [`AudioPort`]: what the device pushes capture into
/// and pulls playout from, and what the engine reads 8 kHz frames from and
/// writes them to. See the module documentation for the threading contract.
pub struct AudioBridge {
    format: AudioFormat,
    /// Device-rate samples, device to engine.
    capture: SampleRing,
    /// Device-rate samples, engine to device.
    playout: SampleRing,
    engine: Mutex<EngineSide>,
    counters: Counters,
}

impl std::fmt::Debug for AudioBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioBridge").field("format", &self.format).field("stats", &self.stats()).finish()
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// state is samples and counters, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AudioBridge {
    /// A bridge between a device of `format` and the 8 kHz engine.
    pub fn new(format: AudioFormat, config: BridgeConfig) -> Result<Arc<Self>, AudioError> {
        format.validate()?;
        if !(20..=MAX_CAPACITY_MS).contains(&config.capacity_ms) {
            return Err(AudioError::Format("bridge capacity must be 20..=5000 ms"));
        }
        if config.prefill_ms >= config.capacity_ms {
            return Err(AudioError::Format("playout prefill must be less than the capacity"));
        }
        let resampler = |from, to| {
            Resampler::new(from, to).map_err(|_| AudioError::Format("no resampler between this rate and 8 kHz"))
        };
        let down = resampler(format.sample_rate, ENGINE_RATE)?;
        let up = resampler(ENGINE_RATE, format.sample_rate)?;
        let samples_in = |ms: u32, rate: u32| (u64::from(ms) * u64::from(rate) / 1000) as usize;
        // A ring must hold at least a device frame and an engine frame's
        // worth at the device rate, or the driver could never move one.
        let engine_frame_at_port = (ENGINE_FRAME_SAMPLES * format.sample_rate as usize).div_ceil(ENGINE_RATE as usize);
        let capacity = samples_in(config.capacity_ms, format.sample_rate)
            .max(format.frame_samples as usize)
            .max(engine_frame_at_port + 1);
        let bridge = AudioBridge {
            format,
            capture: SampleRing::new(capacity),
            playout: SampleRing::new(capacity),
            engine: Mutex::new(EngineSide {
                down,
                up,
                scratch: vec![0; SCRATCH],
                resampled: Vec::new(),
                pending: VecDeque::new(),
                pending_max: samples_in(config.capacity_ms, ENGINE_RATE) + ENGINE_FRAME_SAMPLES,
            }),
            counters: Counters::default(),
        };
        let prefill = vec![0i16; samples_in(config.prefill_ms, format.sample_rate)];
        bridge.playout.push(&prefill);
        Ok(Arc::new(bridge))
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    // -- device side: never blocks, never allocates --------------------------

    /// The device captured `pcm` (at the port's rate). What does not fit in
    /// the ring is dropped and counted.
    pub fn push_capture(&self, pcm: &[i16]) {
        match self.capture.push(pcm) {
            Some(n) if n < pcm.len() => {
                bump(&self.counters.capture_overruns, 1);
                bump(&self.counters.capture_dropped, pcm.len() - n);
            }
            Some(_) => {}
            None => {
                bump(&self.counters.contended, 1);
                bump(&self.counters.capture_dropped, pcm.len());
            }
        }
    }

    /// [`push_capture`](Self::push_capture) for callers across an FFI that
    /// hand over an owned vector.
    pub fn push_capture_vec(&self, pcm: Vec<i16>) {
        self.push_capture(&pcm);
    }

    /// Fills `out` with the next playout (at the port's rate); what the ring
    /// cannot supply is silence, counted as an underrun.
    pub fn pull_playout(&self, out: &mut [i16]) {
        let n = match self.playout.pop(out) {
            Some(n) => n,
            None => {
                bump(&self.counters.contended, 1);
                0
            }
        };
        if let Some(rest) = out.get_mut(n..) {
            if !rest.is_empty() {
                rest.fill(0);
                bump(&self.counters.playout_underruns, 1);
                bump(&self.counters.playout_silence, rest.len());
            }
        }
    }

    /// [`pull_playout`](Self::pull_playout) returning an owned vector, for
    /// callers across an FFI (it allocates; native code should prefer the
    /// slice form). At most 192000 samples are returned at once.
    pub fn pull_playout_vec(&self, samples: u32) -> Vec<i16> {
        let mut out = vec![0; frame_len(samples)];
        self.pull_playout(&mut out);
        out
    }

    // -- engine side ----------------------------------------------------------

    /// Fills `out` with the next `out.len()` samples of 8 kHz capture if that
    /// much has arrived, and returns true; otherwise leaves `out` alone and
    /// returns false. The engine reads [`ENGINE_FRAME_SAMPLES`] at a time, in
    /// a loop until false.
    pub fn read_capture(&self, out: &mut [i16]) -> bool {
        let mut guard = lock(&self.engine);
        let e = &mut *guard;
        // Drain the ring through the resampler. The ring is bounded, so a
        // bounded number of turns empties it even while the device pushes.
        let turns = self.capture.capacity() / SCRATCH + 2;
        for _ in 0..turns {
            let n = match self.capture.pop(&mut e.scratch) {
                Some(n) => n,
                None => {
                    bump(&self.counters.contended, 1);
                    break;
                }
            };
            if n == 0 {
                break;
            }
            e.resampled.clear();
            e.down.process(e.scratch.get(..n).unwrap_or(&[]), &mut e.resampled);
            e.pending.extend(e.resampled.iter().copied());
        }
        // An engine that stopped reading: keep the newest audio, count the
        // rest as dropped (converted back to device-rate samples).
        if e.pending.len() > e.pending_max {
            let excess = e.pending.len() - e.pending_max;
            e.pending.drain(..excess);
            bump(&self.counters.capture_overruns, 1);
            let at_port = (excess as u64 * u64::from(self.format.sample_rate)).div_ceil(u64::from(ENGINE_RATE));
            bump(&self.counters.capture_dropped, usize::try_from(at_port).unwrap_or(usize::MAX));
        }
        if e.pending.len() < out.len() {
            return false;
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(e.pending.drain(..n)) {
            *o = s;
        }
        true
    }

    /// Queues 8 kHz playout. What does not fit in the ring (after
    /// resampling) is dropped and counted.
    pub fn write_playout(&self, pcm: &[i16]) {
        let mut guard = lock(&self.engine);
        let e = &mut *guard;
        e.resampled.clear();
        e.up.process(pcm, &mut e.resampled);
        match self.playout.push(&e.resampled) {
            Some(n) if n < e.resampled.len() => {
                bump(&self.counters.playout_overruns, 1);
                bump(&self.counters.playout_dropped, e.resampled.len() - n);
            }
            Some(_) => {}
            None => {
                bump(&self.counters.contended, 1);
                bump(&self.counters.playout_dropped, e.resampled.len());
            }
        }
    }

    /// Device-rate samples waiting in the playout ring: the latency the
    /// bridge adds on the way out.
    pub fn playout_queued(&self) -> usize {
        self.playout.len()
    }

    pub fn stats(&self) -> AudioStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AudioStats {
            capture_overruns: get(&c.capture_overruns),
            capture_dropped: get(&c.capture_dropped),
            playout_overruns: get(&c.playout_overruns),
            playout_dropped: get(&c.playout_dropped),
            playout_underruns: get(&c.playout_underruns),
            playout_silence: get(&c.playout_silence),
            contended: get(&c.contended),
        }
    }
}

// ---------------------------------------------------------------------------
// Driver

/// Moves one frame between a driven port and a bridge: the port's capture
/// into the bridge, then a frame of playout out of it into the port.
/// `between` runs in the middle, so an engine answering this frame's
/// capture is heard in this frame's playout.
pub fn pump_port(port: &dyn AudioPort, bridge: &AudioBridge, between: impl FnOnce()) {
    let n = bridge.format().frame_samples;
    bridge.push_capture(&port.capture(n));
    between();
    port.playout(bridge.pull_playout_vec(n));
}

/// Runs a port and an engine together without a sound card's callback: the
/// clock for [`PortClock::Driven`] ports, and the engine loop for both.
///
/// The engine is a closure given one 8 kHz frame of capture and a zeroed
/// frame to fill with playout; it runs once per [`ENGINE_FRAME_SAMPLES`] of
/// capture that arrived.
pub struct Driver {
    port: Arc<dyn AudioPort>,
    bridge: Arc<AudioBridge>,
    clock: PortClock,
    /// Frame `k` is due at `epoch + k * period`, computed exactly from the
    /// sample counts, so the schedule does not drift.
    epoch: Instant,
    period_samples: u64,
    period_rate: u32,
    /// Periods done since `epoch` (moved or skipped).
    periods: u64,
    skipped: u64,
    engine_frames: u64,
    capture: [i16; ENGINE_FRAME_SAMPLES],
    playout: [i16; ENGINE_FRAME_SAMPLES],
    stopped: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("clock", &self.clock)
            .field("periods", &self.periods)
            .field("engine_frames", &self.engine_frames)
            .finish()
    }
}

impl Driver {
    /// Makes the port's bridge and starts the port. `now` is the start of
    /// the first frame period.
    pub fn start(port: Arc<dyn AudioPort>, config: BridgeConfig, now: Instant) -> Result<Self, AudioError> {
        let format = port.format();
        let bridge = AudioBridge::new(format, config)?;
        let clock = port.start(Arc::clone(&bridge))?;
        // A driven port is paced by its frames; for a port with its own
        // clock, the engine is polled every engine frame.
        let (period_samples, period_rate) = match clock {
            PortClock::Driven => (u64::from(format.frame_samples), format.sample_rate),
            PortClock::Own => (ENGINE_FRAME_SAMPLES as u64, ENGINE_RATE),
        };
        Ok(Driver {
            port,
            bridge,
            clock,
            epoch: now,
            period_samples,
            period_rate,
            periods: 0,
            skipped: 0,
            engine_frames: 0,
            capture: [0; ENGINE_FRAME_SAMPLES],
            playout: [0; ENGINE_FRAME_SAMPLES],
            stopped: false,
        })
    }

    pub fn bridge(&self) -> &Arc<AudioBridge> {
        &self.bridge
    }

    pub fn clock(&self) -> PortClock {
        self.clock
    }

    /// Engine frames run so far.
    pub fn engine_frames(&self) -> u64 {
        self.engine_frames
    }

    /// Port frames skipped because `tick` was called too late to catch up.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    /// When the next period ends: call `tick` then.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.periods.saturating_add(1)).unwrap_or(self.epoch)
    }

    fn deadline(&self, period: u64) -> Option<Instant> {
        let samples = period.checked_mul(self.period_samples)?;
        self.epoch.checked_add(duration_of(samples, self.period_rate))
    }

    /// Periods whose end is at or before `now`.
    fn periods_due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        let per = u128::from(self.period_samples) * 1_000_000_000;
        if per == 0 {
            return 0;
        }
        u64::try_from(elapsed * u128::from(self.period_rate) / per).unwrap_or(u64::MAX)
    }

    /// Does what is due by `now`: for a driven port, moves each port frame
    /// whose period has ended (at most a few; after a longer gap the rest is
    /// skipped rather than rushed through), then runs the engine on every
    /// frame of capture that has arrived. Returns the engine frames run.
    pub fn tick(&mut self, now: Instant, engine: &mut dyn FnMut(&[i16], &mut [i16])) -> usize {
        let due = self.periods_due(now);
        let mut ran = 0;
        match self.clock {
            PortClock::Driven => {
                let mut moved = 0;
                while self.periods < due {
                    if moved == MAX_CATCH_UP {
                        self.skipped += due - self.periods;
                        self.periods = due;
                        break;
                    }
                    ran += self.step(engine);
                    moved += 1;
                }
            }
            PortClock::Own => {
                self.periods = self.periods.max(due);
                ran += self.run_engine(engine);
            }
        }
        ran
    }

    /// One period now, whatever the time: for a driven port one port frame
    /// in and out with the engine in between, for a port with its own clock
    /// just the engine. Tests and faster-than-real-time tools call this in a
    /// loop. Returns the engine frames run.
    pub fn step(&mut self, engine: &mut dyn FnMut(&[i16], &mut [i16])) -> usize {
        self.periods = self.periods.saturating_add(1);
        if self.clock == PortClock::Own || self.stopped {
            return self.run_engine(engine);
        }
        let port = Arc::clone(&self.port);
        let bridge = Arc::clone(&self.bridge);
        let mut ran = 0;
        pump_port(port.as_ref(), &bridge, || ran = self.run_engine(engine));
        ran
    }

    fn run_engine(&mut self, engine: &mut dyn FnMut(&[i16], &mut [i16])) -> usize {
        let mut ran = 0;
        // Bounded: a device that is not paced by a clock (ALSA's `null`,
        // a file) can fill the ring as fast as we drain it; the rest waits
        // for the next tick (or overruns the ring, which is counted)
        // instead of holding the call's task forever.
        while ran < MAX_ENGINE_FRAMES_PER_TICK && self.bridge.read_capture(&mut self.capture) {
            self.playout.fill(0);
            engine(&self.capture, &mut self.playout);
            self.bridge.write_playout(&self.playout);
            ran += 1;
        }
        self.engine_frames += ran as u64;
        ran
    }

    /// Stops the port (also done on drop).
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.port.stop();
        }
    }
}

/// Engine frames one [`Driver`] tick runs at most (half a second of audio).
const MAX_ENGINE_FRAMES_PER_TICK: usize = 25;

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Ports without a device

/// Silence in, playout discarded.
#[derive(Debug, Clone, Copy)]
pub struct NullPort {
    format: AudioFormat,
}

impl NullPort {
    pub fn new(format: AudioFormat) -> Result<Self, AudioError> {
        format.validate()?;
        Ok(NullPort { format })
    }
}

impl Default for NullPort {
    fn default() -> Self {
        NullPort { format: AudioFormat::ENGINE }
    }
}

impl AudioPort for NullPort {
    fn format(&self) -> AudioFormat {
        self.format
    }
    fn capture(&self, samples: u32) -> Vec<i16> {
        vec![0; frame_len(samples)]
    }
    fn playout(&self, _: Vec<i16>) {}
}

/// A sine as capture (playout discarded): give each end of a test call its
/// own frequency and check which one arrives where.
#[derive(Debug)]
pub struct ToneSource {
    format: AudioFormat,
    /// Cycles per sample.
    step: f64,
    amplitude: f64,
    /// Position in the cycle, `0..1`; carried across frames so frame borders
    /// do not click.
    phase: Mutex<f64>,
}

impl ToneSource {
    /// A tone of `hz` (below half the rate) and peak `amplitude`.
    pub fn new(format: AudioFormat, hz: f64, amplitude: i16) -> Result<Self, AudioError> {
        format.validate()?;
        if !hz.is_finite() || hz < 0.0 || hz >= f64::from(format.sample_rate) / 2.0 {
            return Err(AudioError::Format("tone frequency must be 0 to half the sample rate"));
        }
        Ok(ToneSource {
            format,
            step: hz / f64::from(format.sample_rate),
            amplitude: f64::from(amplitude).abs(),
            phase: Mutex::new(0.0),
        })
    }
}

impl AudioPort for ToneSource {
    fn format(&self) -> AudioFormat {
        self.format
    }
    fn capture(&self, samples: u32) -> Vec<i16> {
        let mut phase = lock(&self.phase);
        (0..frame_len(samples))
            .map(|_| {
                let s = (self.amplitude * (std::f64::consts::TAU * *phase).sin()).round() as i16;
                *phase = (*phase + self.step).fract();
                s
            })
            .collect()
    }
    fn playout(&self, _: Vec<i16>) {}
}

/// A WAV file (16-bit mono PCM, any rate the bridge takes) played as
/// capture, in 20 ms frames at the file's rate: once and then silence, or
/// looped. Playout is discarded.
#[derive(Debug)]
pub struct WavSource {
    format: AudioFormat,
    samples: Vec<i16>,
    looping: bool,
    /// Index of the next sample.
    position: Mutex<usize>,
}

impl WavSource {
    /// Loads `path`.
    pub fn open(path: impl AsRef<Path>, looping: bool) -> Result<Self, AudioError> {
        let path = path.as_ref();
        let io = |source| AudioError::Io { path: path.to_path_buf(), source };
        let bytes = File::open(path).map_err(io)?.metadata().map_err(io)?.len();
        if bytes > MAX_WAV_BYTES {
            return Err(AudioError::TooLarge { path: path.to_path_buf(), bytes });
        }
        let data = std::fs::read(path).map_err(io)?;
        let (rate, samples) =
            read_wav_pcm16(&data).map_err(|source| AudioError::Wav { path: path.to_path_buf(), source })?;
        Self::from_samples(rate, samples, looping)
    }

    /// Plays `samples` at `rate`.
    pub fn from_samples(rate: u32, samples: Vec<i16>, looping: bool) -> Result<Self, AudioError> {
        let format = AudioFormat::with_20ms_frames(rate)?;
        Ok(WavSource { format, samples, looping, position: Mutex::new(0) })
    }

    /// True once a source that does not loop has played everything.
    pub fn finished(&self) -> bool {
        !self.looping && *lock(&self.position) >= self.samples.len()
    }
}

impl AudioPort for WavSource {
    fn format(&self) -> AudioFormat {
        self.format
    }
    fn capture(&self, samples: u32) -> Vec<i16> {
        let want = frame_len(samples);
        let mut out = Vec::with_capacity(want);
        let mut position = lock(&self.position);
        while out.len() < want {
            if *position >= self.samples.len() {
                // An empty file loops into silence, not into a busy loop.
                if self.looping && !self.samples.is_empty() {
                    *position = 0;
                } else {
                    out.resize(want, 0);
                    break;
                }
            }
            let rest = self.samples.get(*position..).unwrap_or(&[]);
            let take = rest.len().min(want - out.len());
            out.extend_from_slice(rest.get(..take).unwrap_or(&[]));
            *position += take;
        }
        out
    }
    fn playout(&self, _: Vec<i16>) {}
}

/// Records playout to a WAV file as it comes (capture is silence). The file
/// has a valid header from the start; its lengths are written when the sink
/// is closed or dropped. A call longer than a WAV file can say (2 GiB of
/// audio) is cut there.
#[derive(Debug)]
pub struct WavSink {
    format: AudioFormat,
    path: PathBuf,
    state: Mutex<SinkState>,
}

#[derive(Debug)]
struct SinkState {
    /// `None` once closed.
    file: Option<BufWriter<File>>,
    data_bytes: u32,
    /// The first write error; later playout is dropped, `close` reports it.
    error: Option<std::io::Error>,
}

/// Largest data chunk: the RIFF size field is `36 + data` in 32 bits; kept
/// even so a sample is never split.
const MAX_WAV_DATA: u32 = (u32::MAX - 36) & !1;

impl WavSink {
    /// Creates (or truncates) `path` for audio at `rate`, taken in 20 ms
    /// frames.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, AudioError> {
        let path = path.as_ref().to_path_buf();
        let format = AudioFormat::with_20ms_frames(rate)?;
        let io = |source| AudioError::Io { path: path.clone(), source };
        let mut file = BufWriter::new(File::create(&path).map_err(io)?);
        // The canonical 44-byte header tsunagu-media writes, for no samples
        // yet; the two lengths in it are patched on close.
        file.write_all(&write_wav_pcm16(rate, &[])).map_err(io)?;
        Ok(WavSink { format, path: path.clone(), state: Mutex::new(SinkState { file: Some(file), data_bytes: 0, error: None }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples recorded so far.
    pub fn samples(&self) -> u64 {
        u64::from(lock(&self.state).data_bytes / 2)
    }

    /// Writes the header's lengths and closes the file. Returns the samples
    /// recorded, or the first error met while recording. Closing again is a
    /// no-op that returns the count.
    pub fn close(&self) -> Result<u64, AudioError> {
        let mut state = lock(&self.state);
        let finished = Self::finish(&mut state);
        let samples = u64::from(state.data_bytes / 2);
        match state.error.take().map_or(finished, Err) {
            Ok(()) => Ok(samples),
            Err(source) => Err(AudioError::Io { path: self.path.clone(), source }),
        }
    }

    fn finish(state: &mut SinkState) -> std::io::Result<()> {
        let Some(mut file) = state.file.take() else {
            return Ok(());
        };
        let data = state.data_bytes;
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&(36 + data).to_le_bytes())?;
        file.seek(SeekFrom::Start(40))?;
        file.write_all(&data.to_le_bytes())?;
        file.flush()
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = Self::finish(state);
    }
}

impl AudioPort for WavSink {
    fn format(&self) -> AudioFormat {
        self.format
    }
    fn capture(&self, samples: u32) -> Vec<i16> {
        vec![0; frame_len(samples)]
    }
    fn playout(&self, pcm: Vec<i16>) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(file) = state.file.as_mut() else {
            return;
        };
        if state.error.is_some() {
            return;
        }
        let room = ((MAX_WAV_DATA - state.data_bytes) / 2) as usize;
        let bytes: Vec<u8> = pcm.iter().take(room).flat_map(|s| s.to_le_bytes()).collect();
        match file.write_all(&bytes) {
            // At most MAX_WAV_DATA - data_bytes, so this stays in range.
            Ok(()) => state.data_bytes += bytes.len() as u32,
            Err(e) => state.error = Some(e),
        }
    }
}

/// Which side of a [`file_port`] failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum FilePortError {
    #[error("play {}: {source}", path.display())]
    Play { path: PathBuf, source: AudioError },
    #[error("record {}: {source}", path.display())]
    Record { path: PathBuf, source: AudioError },
    #[error("{0}")]
    Port(AudioError),
}

/// A call's audio from files, as scripts and tests want it: `play` looped
/// as the microphone (silence without it), what is heard recorded to
/// `record` (dropped without it), at the engine's format.
pub fn file_port(play: Option<&Path>, record: Option<&Path>) -> Result<Arc<dyn AudioPort>, FilePortError> {
    let capture: Arc<dyn AudioPort> = match play {
        Some(p) => Arc::new(WavSource::open(p, true).map_err(|source| FilePortError::Play { path: p.to_path_buf(), source })?),
        None => Arc::new(NullPort::new(AudioFormat::ENGINE).map_err(FilePortError::Port)?),
    };
    let playout: Arc<dyn AudioPort> = match record {
        Some(p) => Arc::new(WavSink::create(p, AudioFormat::ENGINE.sample_rate).map_err(|source| FilePortError::Record { path: p.to_path_buf(), source })?),
        None => Arc::new(NullPort::new(AudioFormat::ENGINE).map_err(FilePortError::Port)?),
    };
    Ok(Arc::new(SplitPort::new(capture, playout).map_err(FilePortError::Port)?))
}

/// Capture from one driven port and playout to another of the same format:
/// a [`WavSource`] as the microphone and a [`WavSink`] as the speaker.
pub struct SplitPort {
    capture: Arc<dyn AudioPort>,
    playout: Arc<dyn AudioPort>,
}

impl std::fmt::Debug for SplitPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitPort").field("format", &self.capture.format()).finish()
    }
}

impl SplitPort {
    pub fn new(capture: Arc<dyn AudioPort>, playout: Arc<dyn AudioPort>) -> Result<Self, AudioError> {
        if capture.format() != playout.format() {
            return Err(AudioError::Format("split port halves differ in rate or frame size"));
        }
        Ok(SplitPort { capture, playout })
    }
}

impl AudioPort for SplitPort {
    fn format(&self) -> AudioFormat {
        self.capture.format()
    }
    fn start(&self, bridge: Arc<AudioBridge>) -> Result<PortClock, AudioError> {
        // Two device callbacks on one bridge would be two producers; only
        // clockless halves can be joined.
        let first = self.capture.start(Arc::clone(&bridge))?;
        let second = match self.playout.start(bridge) {
            Ok(clock) => clock,
            Err(e) => {
                self.capture.stop();
                return Err(e);
            }
        };
        if first != PortClock::Driven || second != PortClock::Driven {
            self.capture.stop();
            self.playout.stop();
            return Err(AudioError::Format("a split port joins driven ports only"));
        }
        Ok(PortClock::Driven)
    }
    fn stop(&self) {
        self.capture.stop();
        self.playout.stop();
    }
    fn capture(&self, samples: u32) -> Vec<i16> {
        self.capture.capture(samples)
    }
    fn playout(&self, pcm: Vec<i16>) {
        self.playout.playout(pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    // Checked at compile time: ports are usable as shared trait objects.
    const _: fn() = || {
        fn shared<T: Send + Sync + ?Sized>() {}
        shared::<dyn AudioPort>();
        shared::<AudioBridge>();
        shared::<Arc<dyn AudioPort>>();
    };

    /// A unique path under the temp dir, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            TempPath(std::env::temp_dir().join(format!("tsunagu-audio-{}-{nanos}-{n}-{tag}.wav", std::process::id())))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Records what a driven port is given; capture comes from `source`.
    struct Recorder {
        format: AudioFormat,
        source: Option<ToneSource>,
        played: Mutex<Vec<i16>>,
    }

    impl AudioPort for Recorder {
        fn format(&self) -> AudioFormat {
            self.format
        }
        fn capture(&self, samples: u32) -> Vec<i16> {
            self.source.as_ref().map_or_else(|| vec![0; samples as usize], |s| s.capture(samples))
        }
        fn playout(&self, pcm: Vec<i16>) {
            lock(&self.played).extend(pcm);
        }
    }

    /// Power of the `freq` component (Goertzel), normalised so a sine of
    /// amplitude A reads A.
    fn goertzel(samples: &[i16], freq: f64, rate: u32) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.max(0.0).sqrt() / samples.len() as f64
    }

    fn tone(freq: f64, amplitude: f64, rate: u32, len: usize) -> Vec<i16> {
        (0..len).map(|n| (amplitude * (std::f64::consts::TAU * freq * n as f64 / f64::from(rate)).sin()).round() as i16).collect()
    }

    /// 440 Hz dominates: within 1 dB of `amplitude`, and every other probe
    /// more than 30 dB below.
    fn assert_440(samples: &[i16], rate: u32, amplitude: f64, what: &str) {
        let a = goertzel(samples, 440.0, rate);
        assert!((20.0 * (a / amplitude).log10()).abs() < 1.0, "{what}: 440 Hz at {a}, want {amplitude}");
        for other in [300.0, 400.0, 480.0, 880.0, 1000.0, 2000.0, 3000.0] {
            let o = goertzel(samples, other, rate);
            assert!(o < a / 31.6, "{what}: {other} Hz at {o} against {a}");
        }
    }

    #[test]
    fn ring_counts_overruns_and_underruns_without_blocking() {
        let bridge = AudioBridge::new(AudioFormat::ENGINE, BridgeConfig { capacity_ms: 20, prefill_ms: 0 }).unwrap();
        let capacity = bridge.playout.capacity();
        assert!(capacity >= 161 && capacity.is_power_of_two());

        // Playout: more than fits is dropped and counted.
        let frames = capacity / ENGINE_FRAME_SAMPLES + 2;
        for i in 0..frames {
            bridge.write_playout(&[i as i16 + 1; ENGINE_FRAME_SAMPLES]);
        }
        let s = bridge.stats();
        assert!(s.playout_overruns >= 1);
        assert_eq!(s.playout_dropped as usize, frames * ENGINE_FRAME_SAMPLES - capacity);
        assert_eq!(bridge.playout_queued(), capacity);
        // Pulling more than is queued gives what there is, in order, then
        // silence, counted.
        let mut out = vec![7i16; capacity + 100];
        bridge.pull_playout(&mut out);
        assert_eq!(out[0], 1);
        assert_eq!(out[ENGINE_FRAME_SAMPLES], 2);
        assert!(out[capacity..].iter().all(|&s| s == 0));
        let s = bridge.stats();
        assert_eq!((s.playout_underruns, s.playout_silence), (1, 100));

        // Capture: a device pushing while nobody reads.
        let push = vec![5i16; capacity / 2 + 1];
        bridge.push_capture(&push);
        bridge.push_capture(&push);
        let s = bridge.stats();
        assert_eq!((s.capture_overruns, s.capture_dropped), (1, (push.len() * 2 - capacity) as u64));
        let mut frame = [0i16; ENGINE_FRAME_SAMPLES];
        let mut read = 0;
        while bridge.read_capture(&mut frame) {
            assert!(frame.iter().all(|&s| s == 5));
            read += 1;
        }
        assert_eq!(read, capacity / ENGINE_FRAME_SAMPLES);
        assert!(!bridge.read_capture(&mut frame), "empty stays empty");

        // An end in use by another thread turns the caller away at once.
        bridge.playout.consuming.store(true, Ordering::Release);
        let mut out = [1i16; 10];
        bridge.pull_playout(&mut out);
        assert_eq!(out, [0; 10]);
        bridge.capture.producing.store(true, Ordering::Release);
        bridge.push_capture(&[1; 10]);
        assert_eq!(bridge.stats().contended, 2);
        bridge.playout.consuming.store(false, Ordering::Release);
        bridge.capture.producing.store(false, Ordering::Release);
    }

    #[test]
    fn ring_is_a_lossless_fifo_across_threads() {
        let ring = Arc::new(SampleRing::new(64));
        let total: usize = 200_000;
        let producer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut next = 0usize;
                while next < total {
                    let chunk: Vec<i16> = (next..(next + 37).min(total)).map(|i| i as i16).collect();
                    let n = ring.push(&chunk).unwrap();
                    next += n;
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut expect = 0usize;
        let mut buf = [0i16; 50];
        while expect < total {
            let n = ring.pop(&mut buf).unwrap();
            for &s in &buf[..n] {
                assert_eq!(s, expect as i16);
                expect += 1;
            }
            if n == 0 {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn ring_counters_wrap() {
        let ring = SampleRing::new(8);
        ring.written.store(usize::MAX - 3, Ordering::Relaxed);
        ring.read.store(usize::MAX - 3, Ordering::Relaxed);
        assert_eq!(ring.push(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), Some(8));
        let mut out = [0; 9];
        assert_eq!(ring.pop(&mut out), Some(8));
        assert_eq!(&out[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    /// 48 kHz tone in, through the bridge to the 8 kHz engine, looped back
    /// to 48 kHz playout: the tone survives both ways and no sample is
    /// gained or lost.
    fn loopback(rate: u32, frame: u32, steps: usize) -> (Vec<i16>, Vec<i16>, AudioStats) {
        let format = AudioFormat::new(rate, frame).unwrap();
        let port = Arc::new(Recorder {
            format,
            source: Some(ToneSource::new(format, 440.0, 10000).unwrap()),
            played: Mutex::new(Vec::new()),
        });
        let mut driver = Driver::start(port.clone(), BridgeConfig::default(), Instant::now()).unwrap();
        assert_eq!(driver.clock(), PortClock::Driven);
        let mut engine_in = Vec::new();
        let mut echo = |capture: &[i16], playout: &mut [i16]| {
            engine_in.extend_from_slice(capture);
            playout.copy_from_slice(capture);
        };
        for _ in 0..steps {
            driver.step(&mut echo);
        }
        let stats = driver.bridge().stats();
        let played = std::mem::take(&mut *lock(&port.played));
        (engine_in, played, stats)
    }

    #[test]
    fn bridge_at_48k_keeps_the_tone_and_the_sample_count() {
        let steps = 250; // 5 s
        let (engine_in, played, stats) = loopback(48000, 960, steps);
        assert_eq!(engine_in.len(), steps * ENGINE_FRAME_SAMPLES);
        assert_eq!(played.len(), steps * 960);
        assert_eq!(stats, AudioStats::default(), "in step: no overrun, no underrun");
        // Past the start-up (filter delays), the tone is there at both rates.
        assert_440(&engine_in[800..], 8000, 10000.0, "8 kHz engine side");
        assert_440(&played[9600..], 48000, 10000.0, "48 kHz playout");
    }

    #[test]
    fn bridge_with_10ms_and_44k1_callbacks_keeps_counts() {
        // 10 ms callbacks: the engine runs every other one; the first pull
        // comes before the engine's first frame and is silence.
        let (engine_in, played, stats) = loopback(48000, 480, 400);
        assert_eq!(engine_in.len(), 200 * ENGINE_FRAME_SAMPLES);
        assert_eq!(played.len(), 400 * 480);
        assert_eq!((stats.playout_underruns, stats.playout_silence), (1, 480));
        assert_eq!((stats.capture_overruns, stats.playout_overruns), (0, 0));
        assert_440(&played[9600..], 48000, 10000.0, "48 kHz, 10 ms");

        let (engine_in, played, stats) = loopback(44100, 882, 200);
        assert_eq!(engine_in.len(), 200 * ENGINE_FRAME_SAMPLES);
        assert_eq!(played.len(), 200 * 882);
        assert_eq!(stats, AudioStats::default());
        assert_440(&engine_in[800..], 8000, 10000.0, "8 kHz from 44.1 kHz");
        assert_440(&played[8820..], 44100, 10000.0, "44.1 kHz playout");
    }

    #[test]
    fn bridge_with_a_device_callback_and_engine_ticks() {
        // A port with its own clock: the "callback" is this test pushing and
        // pulling 48 kHz blocks of odd sizes; the driver only runs the engine.
        struct Device(Mutex<Option<Arc<AudioBridge>>>);
        impl AudioPort for Device {
            fn format(&self) -> AudioFormat {
                AudioFormat::new(48000, 480).unwrap()
            }
            fn start(&self, bridge: Arc<AudioBridge>) -> Result<PortClock, AudioError> {
                *lock(&self.0) = Some(bridge);
                Ok(PortClock::Own)
            }
            fn stop(&self) {
                *lock(&self.0) = None;
            }
            fn capture(&self, _: u32) -> Vec<i16> {
                Vec::new()
            }
            fn playout(&self, _: Vec<i16>) {}
        }
        let device = Arc::new(Device(Mutex::new(None)));
        let t0 = Instant::now();
        let config = BridgeConfig { capacity_ms: 200, prefill_ms: 20 };
        let mut driver = Driver::start(device.clone(), config, t0).unwrap();
        assert_eq!(driver.clock(), PortClock::Own);
        let bridge = lock(&device.0).clone().unwrap();
        let input = tone(440.0, 8000.0, 48000, 48000 * 2);
        let mut played = Vec::new();
        let mut engine = |c: &[i16], p: &mut [i16]| p.copy_from_slice(c);
        let mut at = 0;
        let mut now = t0;
        for size in [441usize, 512, 480, 1024, 256].iter().cycle() {
            if at + size > input.len() {
                break;
            }
            bridge.push_capture(&input[at..at + size]);
            at += size;
            let mut out = vec![0; *size];
            bridge.pull_playout(&mut out);
            played.extend(out);
            // The engine polls roughly every 10 ms.
            now += Duration::from_millis(10);
            driver.tick(now, &mut engine);
        }
        driver.stop();
        assert!(lock(&device.0).is_none(), "stopped");
        assert_eq!(played.len(), at);
        let engine_frames = driver.engine_frames() as usize;
        assert_eq!(engine_frames, at / 6 / ENGINE_FRAME_SAMPLES);
        let stats = bridge.stats();
        assert_eq!((stats.capture_overruns, stats.playout_overruns, stats.contended), (0, 0, 0));
        assert_440(&played[48000..], 48000, 8000.0, "callback-driven playout");
    }

    #[test]
    fn driver_tick_follows_the_clock_and_skips_long_gaps() {
        let port = Arc::new(NullPort::new(AudioFormat::new(16000, 320).unwrap()).unwrap());
        let t0 = Instant::now();
        let mut driver = Driver::start(port, BridgeConfig::default(), t0).unwrap();
        let mut frames = 0;
        let mut silent = true;
        let mut engine = |c: &[i16], _: &mut [i16]| {
            frames += 1;
            silent &= c.iter().all(|&s| s == 0);
        };
        assert_eq!(driver.next_deadline(), t0 + ENGINE_FRAME);
        assert_eq!(driver.tick(t0 + Duration::from_millis(19), &mut engine), 0);
        assert_eq!(driver.tick(t0 + Duration::from_millis(20), &mut engine), 1);
        assert_eq!(driver.tick(t0 + Duration::from_millis(61), &mut engine), 2);
        assert_eq!(driver.next_deadline(), t0 + Duration::from_millis(80));
        // A ten-second gap: ten frames moved, the rest skipped.
        assert_eq!(driver.tick(t0 + Duration::from_millis(10_060), &mut engine), 10);
        assert_eq!(driver.skipped_frames(), 503 - 3 - 10);
        assert_eq!(driver.next_deadline(), t0 + Duration::from_millis(10_080));
        // A clock that goes backwards does nothing.
        assert_eq!(driver.tick(t0, &mut engine), 0);
        assert_eq!(frames, 13);
        assert!(silent);
    }

    #[test]
    fn null_port_is_silence_and_a_sink_for_anything() {
        let port = NullPort::default();
        assert_eq!(port.format(), AudioFormat::ENGINE);
        assert_eq!(port.capture(160), vec![0; 160]);
        assert_eq!(port.capture(0), Vec::<i16>::new());
        port.playout(vec![1; 1000]);
        assert_eq!(port.capture(u32::MAX).len(), 192_000, "an absurd request is capped, not obeyed");
        let mut driver = Driver::start(Arc::new(port), BridgeConfig::default(), Instant::now()).unwrap();
        for _ in 0..50 {
            assert_eq!(driver.step(&mut |c, p| {
                assert!(c.iter().all(|&s| s == 0));
                p.fill(i16::MAX);
            }), 1);
        }
        assert_eq!(driver.bridge().stats(), AudioStats::default());
        assert!(NullPort::new(AudioFormat { sample_rate: 100, frame_samples: 2 }).is_err());
    }

    #[test]
    fn wav_sink_records_what_was_played() {
        let tmp = TempPath::new("sink");
        let sink = WavSink::create(&tmp.0, 8000).unwrap();
        let played = tone(1000.0, 12000.0, 8000, 8000 + 37);
        for chunk in played.chunks(160) {
            sink.playout(chunk.to_vec());
        }
        assert_eq!(sink.samples(), played.len() as u64);
        assert_eq!(sink.close().unwrap(), played.len() as u64);
        assert_eq!(sink.close().unwrap(), played.len() as u64, "closing twice is harmless");
        sink.playout(vec![1; 10]); // after close: ignored
        let bytes = std::fs::read(&tmp.0).unwrap();
        assert_eq!(bytes.len(), 44 + 2 * played.len());
        assert_eq!(bytes, write_wav_pcm16(8000, &played), "byte for byte the canonical file");
        assert_eq!(read_wav_pcm16(&bytes).unwrap(), (8000, played));
    }

    #[test]
    fn wav_sink_is_finalised_on_drop_and_through_a_call() {
        let tmp = TempPath::new("drop");
        {
            // A call: tone as the microphone, echoed by the engine into the
            // sink, at 16 kHz.
            let format = AudioFormat::with_20ms_frames(16000).unwrap();
            let sink = Arc::new(WavSink::create(&tmp.0, 16000).unwrap());
            let port = SplitPort::new(Arc::new(ToneSource::new(format, 440.0, 9000).unwrap()), sink.clone()).unwrap();
            let mut driver = Driver::start(Arc::new(port), BridgeConfig::default(), Instant::now()).unwrap();
            for _ in 0..100 {
                driver.step(&mut |c, p| p.copy_from_slice(c));
            }
        }
        let (rate, samples) = read_wav_pcm16(&std::fs::read(&tmp.0).unwrap()).unwrap();
        assert_eq!(rate, 16000);
        assert_eq!(samples.len(), 100 * 320);
        assert_440(&samples[3200..], 16000, 9000.0, "recorded call");
    }

    #[test]
    fn wav_source_plays_once_then_silence_or_loops() {
        let tmp = TempPath::new("source");
        let clip: Vec<i16> = (1..=100).collect();
        std::fs::write(&tmp.0, write_wav_pcm16(8000, &clip)).unwrap();

        let once = WavSource::open(&tmp.0, false).unwrap();
        assert_eq!(once.format(), AudioFormat::ENGINE);
        let got = once.capture(160);
        assert_eq!(&got[..100], &clip[..]);
        assert!(got[100..].iter().all(|&s| s == 0));
        assert!(once.finished());
        assert_eq!(once.capture(160), vec![0; 160]);

        let looped = WavSource::open(&tmp.0, true).unwrap();
        let got: Vec<i16> = (0..3).flat_map(|_| looped.capture(160)).collect();
        assert_eq!(got.len(), 480);
        for (i, &s) in got.iter().enumerate() {
            assert_eq!(s, clip[i % 100], "sample {i}");
        }
        assert!(!looped.finished());

        // Empty files: silence, looping or not, without spinning.
        for looping in [false, true] {
            let empty = WavSource::from_samples(8000, Vec::new(), looping).unwrap();
            assert_eq!(empty.capture(160), vec![0; 160]);
        }
    }

    #[test]
    fn malformed_wav_is_a_typed_error() {
        let tmp = TempPath::new("bad");
        let good = write_wav_pcm16(8000, &[1, 2, 3]);
        let mut stereo = good.clone();
        stereo[22] = 2;
        let mut odd_rate = good.clone();
        odd_rate[24..28].copy_from_slice(&1000u32.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("garbage", b"this is not a wave file at all, no".to_vec()),
            ("cut header", good[..20].to_vec()),
            ("no data", good[..36].to_vec()),
            ("stereo", stereo),
        ];
        for (what, bytes) in cases {
            std::fs::write(&tmp.0, &bytes).unwrap();
            let err = WavSource::open(&tmp.0, false).unwrap_err();
            assert!(matches!(err, AudioError::Wav { .. }), "{what}: {err:?}");
            assert!(err.to_string().contains("bad WAV"), "{what}: {err}");
        }
        // A valid file at a rate the bridge cannot take.
        std::fs::write(&tmp.0, &odd_rate).unwrap();
        assert!(matches!(WavSource::open(&tmp.0, false), Err(AudioError::Format(_))));
        // And a file that is not there.
        let missing = TempPath::new("missing");
        assert!(matches!(WavSource::open(&missing.0, false), Err(AudioError::Io { .. })));
        // Every prefix of a good file: a typed answer each time, no panic.
        for len in 0..good.len() {
            std::fs::write(&tmp.0, &good[..len]).unwrap();
            assert!(WavSource::open(&tmp.0, false).is_err() || len >= 44, "prefix {len}");
        }
    }

    #[test]
    fn bad_formats_and_tones_are_refused() {
        for (rate, frame) in [(0, 160), (3999, 160), (192_001, 160), (8000, 0), (8000, 8001), (7999, 160)] {
            let f = AudioFormat { sample_rate: rate, frame_samples: frame };
            assert!(AudioBridge::new(f, BridgeConfig::default()).is_err(), "{rate}/{frame}");
        }
        for config in [BridgeConfig { capacity_ms: 0, prefill_ms: 0 }, BridgeConfig { capacity_ms: 100, prefill_ms: 100 }, BridgeConfig { capacity_ms: 60_000, prefill_ms: 0 }] {
            assert!(AudioBridge::new(AudioFormat::ENGINE, config).is_err(), "{config:?}");
        }
        for hz in [-1.0, 4000.0, f64::NAN, f64::INFINITY] {
            assert!(ToneSource::new(AudioFormat::ENGINE, hz, 1000).is_err(), "{hz}");
        }
        // Halves of different formats do not make a split port.
        let a: Arc<dyn AudioPort> = Arc::new(NullPort::default());
        let b: Arc<dyn AudioPort> = Arc::new(NullPort::new(AudioFormat::with_20ms_frames(48000).unwrap()).unwrap());
        assert!(SplitPort::new(a, b).is_err());
        // A foreign port returning the wrong amount of capture is tolerated.
        struct Short;
        impl AudioPort for Short {
            fn format(&self) -> AudioFormat {
                AudioFormat::ENGINE
            }
            fn capture(&self, samples: u32) -> Vec<i16> {
                vec![3; samples as usize / 2 + 1]
            }
            fn playout(&self, pcm: Vec<i16>) {
                assert_eq!(pcm.len(), 160);
            }
        }
        let mut driver = Driver::start(Arc::new(Short), BridgeConfig::default(), Instant::now()).unwrap();
        let ran: usize = (0..10).map(|_| driver.step(&mut |_, _| {})).sum();
        assert_eq!(ran, 810 / 160);
    }
}
