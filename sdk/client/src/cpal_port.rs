//! The desktop sound card as an [`AudioPort`], through cpal (ALSA on
//! Linux, CoreAudio on macOS, WASAPI on Windows).
//!
//! [`CpalPort::open`] finds the default input and output devices and picks
//! a stream format for each; it fails with a [`CpalError`] when there is no
//! usable device, so an app can say so before it places a call.
//! [`AudioPort::start`] opens the two streams; from then on cpal's own
//! audio threads call the [`AudioBridge`]: the input callback mixes the
//! device's channels down to mono `i16` and pushes it, the output callback
//! pulls mono `i16` and copies it to every channel. The bridge's lock-free
//! rings are the only thing between those threads and the SDK, and the
//! bridge resamples to and from the engine's 8 kHz on the engine's side,
//! so a callback never waits, and never allocates once running.
//!
//! One port has one rate (its [`AudioFormat`]): the output device's. When
//! the input device cannot run at that rate too (two different sound
//! cards, a USB headset with a fixed-rate microphone), the input callback
//! converts its audio to the port's rate with tsunagu-media's
//! [`Resampler`] before pushing it.
//!
//! cpal's streams are not `Send` on every platform, and an [`AudioPort`]
//! must be; so the streams live on a thread of their own, which builds
//! them, reports whether that worked, and drops them when the port is
//! stopped.

use crate::audio::{AudioBridge, AudioError, AudioFormat, AudioPort, PortClock};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, FromSample, SampleFormat, SizedSample, StreamConfig, SupportedBufferSize, SupportedStreamConfigRange};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tsunagu_media::Resampler;

/// Rates tried for a device after its own default, best first: the rates
/// sound cards run at natively, so no conversion happens in the OS either.
const PREFERRED_RATES: [u32; 8] = [48_000, 44_100, 16_000, 32_000, 8_000, 96_000, 24_000, 22_050];
/// The range the bridge's resampler takes.
const MIN_RATE: u32 = 4_000;
const MAX_RATE: u32 = 192_000;
/// Device frames converted at a time in a callback, on the stack.
const CHUNK: usize = 480;
/// How long `start` waits for the audio thread to open the streams.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the sound card could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpalError {
    /// No audio system at all (on Linux: ALSA could not load its
    /// configuration).
    #[error("no audio system is available: {0}")]
    NoHost(String),
    /// The system has no default device of this direction.
    #[error("there is no {0} device (no sound card, or this user may not use it)")]
    NoDevice(Direction),
    /// The device is there but cannot be asked what it does (busy, gone,
    /// misconfigured).
    #[error("the {direction} device cannot be used: {reason}")]
    Query { direction: Direction, reason: String },
    /// Nothing the device offers is PCM this port can convert, at a rate
    /// between 4 and 192 kHz.
    #[error("the {0} device offers no PCM format at 4-192 kHz")]
    NoUsableFormat(Direction),
    /// Building or starting a stream failed.
    #[error("the {direction} stream cannot be started: {reason}")]
    Stream { direction: Direction, reason: String },
}

impl From<CpalError> for AudioError {
    fn from(e: CpalError) -> Self {
        AudioError::Device(e.to_string())
    }
}

/// Which side of the sound card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Input,
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// What one side of the port runs at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The device's name as the system gives it.
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// cpal's name of the sample format ("i16", "f32", ...).
    pub sample_format: String,
    /// True when this side runs at another rate than the port and is
    /// converted in its callback (input only).
    pub resampled: bool,
}

impl fmt::Display for StreamInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} Hz, {} ch, {}", self.device, self.sample_rate, self.channels, self.sample_format)?;
        if self.resampled {
            f.write_str(", resampled")?;
        }
        f.write_str(")")
    }
}

/// The format chosen for one stream.
#[derive(Debug, Clone, Copy)]
struct Choice {
    config: StreamConfig,
    format: SampleFormat,
}

/// Counters the audio callbacks keep (relaxed atomics: they never wait).
#[derive(Debug, Default)]
struct Counters {
    captured: AtomicU64,
    played: AtomicU64,
    errors: AtomicU64,
    /// Only written from cpal's error callback, which is not the audio
    /// path, so a mutex is fine here.
    last_error: Mutex<Option<String>>,
}

struct Running {
    /// Dropping it tells the audio thread to close the streams.
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// The default sound card of this machine.
pub struct CpalPort {
    format: AudioFormat,
    host: cpal::HostId,
    input: Choice,
    output: Choice,
    input_info: StreamInfo,
    output_info: StreamInfo,
    counters: Arc<Counters>,
    running: Mutex<Option<Running>>,
}

impl fmt::Debug for CpalPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpalPort")
            .field("format", &self.format)
            .field("input", &self.input_info)
            .field("output", &self.output_info)
            .finish()
    }
}

/// A poisoned lock only means a thread panicked while holding it; what it
/// guards (a thread handle, an error text) is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The audio system: the platform's default, falling back to any other
/// that works. (`cpal::default_host` panics when ALSA cannot load its
/// configuration; a phone must say so instead.)
fn host() -> Result<cpal::Host, CpalError> {
    let mut last = String::from("no audio host is compiled in");
    for id in cpal::available_hosts() {
        match cpal::host_from_id(id) {
            Ok(h) => return Ok(h),
            Err(e) => last = e.to_string(),
        }
    }
    Err(CpalError::NoHost(last))
}

fn default_device(host: &cpal::Host, direction: Direction) -> Result<cpal::Device, CpalError> {
    let device = match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    };
    device.ok_or(CpalError::NoDevice(direction))
}

impl CpalPort {
    /// Finds the default input and output devices and chooses their
    /// formats. The devices are opened only by [`AudioPort::start`].
    pub fn open() -> Result<Self, CpalError> {
        let host = host()?;
        let out_dev = default_device(&host, Direction::Output)?;
        let in_dev = default_device(&host, Direction::Input)?;
        let query = |direction| move |e: cpal::Error| CpalError::Query { direction, reason: e.to_string() };
        let out_ranges: Vec<_> = out_dev.supported_output_configs().map_err(query(Direction::Output))?.collect();
        let in_ranges: Vec<_> = in_dev.supported_input_configs().map_err(query(Direction::Input))?.collect();
        let out_rates = rates(out_dev.default_output_config().ok().map(|c| c.sample_rate()));
        let in_rates = rates(in_dev.default_input_config().ok().map(|c| c.sample_rate()));

        // Best: one rate both sides run at natively. Otherwise the output
        // sets the rate and the input is converted to it.
        let common = out_rates.iter().find_map(|&r| Some((choose(&out_ranges, r)?, choose(&in_ranges, r)?)));
        let (output, input) = match common {
            Some(pair) => pair,
            None => {
                let output = out_rates.iter().find_map(|&r| choose(&out_ranges, r)).ok_or(CpalError::NoUsableFormat(Direction::Output))?;
                let input = in_rates.iter().find_map(|&r| choose(&in_ranges, r)).ok_or(CpalError::NoUsableFormat(Direction::Input))?;
                (output, input)
            }
        };
        let rate = output.config.sample_rate;
        let format = AudioFormat::with_20ms_frames(rate).map_err(|_| CpalError::NoUsableFormat(Direction::Output))?;
        let info = |dev: &cpal::Device, c: &Choice| StreamInfo {
            device: dev.description().map(|d| d.name().to_string()).unwrap_or_else(|_| "default".to_string()),
            sample_rate: c.config.sample_rate,
            channels: c.config.channels,
            sample_format: c.format.to_string(),
            resampled: c.config.sample_rate != rate,
        };
        Ok(CpalPort {
            format,
            host: host.id(),
            input_info: info(&in_dev, &input),
            output_info: info(&out_dev, &output),
            input,
            output,
            counters: Arc::default(),
            running: Mutex::new(None),
        })
    }

    /// The capture side, as chosen.
    pub fn input_info(&self) -> &StreamInfo {
        &self.input_info
    }

    /// The playout side, as chosen.
    pub fn output_info(&self) -> &StreamInfo {
        &self.output_info
    }

    /// Device frames (one sample per channel) captured so far.
    pub fn captured_frames(&self) -> u64 {
        self.counters.captured.load(Ordering::Relaxed)
    }

    /// Device frames handed to the output so far.
    pub fn played_frames(&self) -> u64 {
        self.counters.played.load(Ordering::Relaxed)
    }

    /// Errors the streams reported while running (a device unplugged, an
    /// xrun on some platforms), and the last one.
    pub fn stream_errors(&self) -> (u64, Option<String>) {
        (self.counters.errors.load(Ordering::Relaxed), lock(&self.counters.last_error).clone())
    }

    /// True while the streams are open.
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }
}

/// The device's default rate first, then the usual ones; only rates the
/// bridge can take.
fn rates(default: Option<u32>) -> Vec<u32> {
    let mut out: Vec<u32> = default.into_iter().chain(PREFERRED_RATES).filter(|r| (MIN_RATE..=MAX_RATE).contains(r)).collect();
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|r| {
        let new = !seen.contains(r);
        seen.push(*r);
        new
    });
    out
}

/// The best of `ranges` at `rate`: 16-bit over float over the rest (no
/// conversion at all for the common case), then mono over stereo over
/// more channels (less to mix down or fan out).
fn choose(ranges: &[SupportedStreamConfigRange], rate: u32) -> Option<Choice> {
    let format_rank = |f: SampleFormat| match f {
        SampleFormat::I16 => 3,
        SampleFormat::F32 => 2,
        _ => 1,
    };
    ranges
        .iter()
        .filter(|r| r.channels() > 0 && r.contains_rate(rate) && supported(r.sample_format()))
        .max_by_key(|r| (format_rank(r.sample_format()), std::cmp::Reverse(r.channels())))
        .map(|r| Choice {
            config: StreamConfig { channels: r.channels(), sample_rate: rate, buffer_size: buffer_size(r.buffer_size(), rate) },
            format: r.sample_format(),
        })
}

/// 10 ms device buffers where the device says what it can do: a phone call
/// wants little latency, and the bridge absorbs the jitter. Otherwise the
/// device's own default.
fn buffer_size(range: &SupportedBufferSize, rate: u32) -> BufferSize {
    match *range {
        SupportedBufferSize::Range { min, max } if min <= max && max > 0 => BufferSize::Fixed((rate / 100).clamp(min.max(1), max)),
        _ => BufferSize::Default,
    }
}

/// The sample formats the callbacks convert (all PCM; not DSD).
fn supported(f: SampleFormat) -> bool {
    matches!(
        f,
        SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I24
            | SampleFormat::I32
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::F32
            | SampleFormat::F64
    )
}

/// Calls `$f::<T>(args)` with `T` the Rust type of the sample format.
macro_rules! with_sample_type {
    ($format:expr, $direction:expr, $f:ident ( $($arg:expr),* )) => {
        match $format {
            SampleFormat::I8 => $f::<i8>($($arg),*),
            SampleFormat::I16 => $f::<i16>($($arg),*),
            SampleFormat::I24 => $f::<cpal::I24>($($arg),*),
            SampleFormat::I32 => $f::<i32>($($arg),*),
            SampleFormat::U8 => $f::<u8>($($arg),*),
            SampleFormat::U16 => $f::<u16>($($arg),*),
            SampleFormat::F32 => $f::<f32>($($arg),*),
            SampleFormat::F64 => $f::<f64>($($arg),*),
            _ => Err(CpalError::NoUsableFormat($direction)),
        }
    };
}

fn error_callback(counters: &Arc<Counters>) -> impl FnMut(cpal::Error) + Send + 'static {
    let counters = Arc::clone(counters);
    move |e| {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&counters.last_error) = Some(e.to_string());
    }
}

/// Builds a stream with the chosen buffer size, and if the device refuses
/// that, with its default one.
fn build_with_fallback(
    config: StreamConfig,
    mut build: impl FnMut(StreamConfig) -> Result<cpal::Stream, cpal::Error>,
) -> Result<cpal::Stream, cpal::Error> {
    match build(config) {
        Ok(s) => Ok(s),
        Err(_) if config.buffer_size != BufferSize::Default => build(StreamConfig { buffer_size: BufferSize::Default, ..config }),
        Err(e) => Err(e),
    }
}

fn input_stream<T>(device: &cpal::Device, choice: Choice, port_rate: u32, bridge: Arc<AudioBridge>, counters: &Arc<Counters>) -> Result<cpal::Stream, CpalError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
    i16: FromSample<T>,
{
    let channels = usize::from(choice.config.channels.max(1));
    let device_rate = choice.config.sample_rate;
    let stream_err = |reason: String| CpalError::Stream { direction: Direction::Input, reason };
    // Converting here keeps one rate per port; the buffer is reserved for
    // the largest chunk so the callback does not allocate.
    let resampler = if device_rate == port_rate {
        None
    } else {
        let r = Resampler::new(device_rate, port_rate).map_err(|e| stream_err(e.to_string()))?;
        let most = (CHUNK * port_rate as usize).div_ceil(device_rate.max(1) as usize) + 64;
        Some((r, Vec::<i16>::with_capacity(most)))
    };
    let counted = Arc::clone(counters);
    let build = |config: StreamConfig| {
        let bridge = Arc::clone(&bridge);
        let counted = Arc::clone(&counted);
        // A fresh copy per attempt: a failed first build must not take
        // the converter away from the second.
        let mut resampler = resampler.clone();
        device.build_input_stream::<T, _, _>(
            config,
            move |data: &[T], _: &cpal::InputCallbackInfo| {
                let mut mono = [0i16; CHUNK];
                for frames in data.chunks(CHUNK * channels) {
                    let n = frames.len() / channels;
                    for (out, frame) in mono.iter_mut().zip(frames.chunks_exact(channels)) {
                        *out = if channels == 1 {
                            frame.first().map_or(0, |&s| <i16 as FromSample<T>>::from_sample_(s))
                        } else {
                            let sum: f32 = frame.iter().map(|&s| <f32 as FromSample<T>>::from_sample_(s)).sum();
                            <i16 as FromSample<f32>>::from_sample_(sum / channels as f32)
                        };
                    }
                    let mono = mono.get(..n).unwrap_or(&[]);
                    match resampler.as_mut() {
                        Some((r, buf)) => {
                            buf.clear();
                            r.process(mono, buf);
                            bridge.push_capture(buf);
                        }
                        None => bridge.push_capture(mono),
                    }
                    counted.captured.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
            error_callback(counters),
            None,
        )
    };
    let stream = build_with_fallback(choice.config, build).map_err(|e| stream_err(e.to_string()))?;
    stream.play().map_err(|e| stream_err(e.to_string()))?;
    Ok(stream)
}

fn output_stream<T>(device: &cpal::Device, choice: Choice, bridge: Arc<AudioBridge>, counters: &Arc<Counters>) -> Result<cpal::Stream, CpalError>
where
    T: SizedSample + FromSample<i16> + Send + 'static,
{
    let channels = usize::from(choice.config.channels.max(1));
    let stream_err = |reason: String| CpalError::Stream { direction: Direction::Output, reason };
    let counted = Arc::clone(counters);
    let build = |config: StreamConfig| {
        let bridge = Arc::clone(&bridge);
        let counted = Arc::clone(&counted);
        device.build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
                let mut mono = [0i16; CHUNK];
                for frames in data.chunks_mut(CHUNK * channels) {
                    let n = frames.len().div_ceil(channels);
                    let mono = mono.get_mut(..n).unwrap_or(&mut []);
                    bridge.pull_playout(mono);
                    for (frame, &s) in frames.chunks_mut(channels).zip(mono.iter()) {
                        frame.fill(<T as FromSample<i16>>::from_sample_(s));
                    }
                    counted.played.fetch_add(n as u64, Ordering::Relaxed);
                }
            },
            error_callback(counters),
            None,
        )
    };
    let stream = build_with_fallback(choice.config, build).map_err(|e| stream_err(e.to_string()))?;
    stream.play().map_err(|e| stream_err(e.to_string()))?;
    Ok(stream)
}

/// Opens both streams on the calling thread (the port's audio thread).
fn open_streams(
    host_id: cpal::HostId,
    input: Choice,
    output: Choice,
    port_rate: u32,
    bridge: Arc<AudioBridge>,
    counters: &Arc<Counters>,
) -> Result<(cpal::Stream, cpal::Stream), CpalError> {
    let host = cpal::host_from_id(host_id).map_err(|e| CpalError::NoHost(e.to_string()))?;
    let out_dev = default_device(&host, Direction::Output)?;
    let in_dev = default_device(&host, Direction::Input)?;
    // Output first: it is what the engine's pace is heard through; if it
    // fails there is no point in taking the microphone.
    let out = with_sample_type!(output.format, Direction::Output, output_stream(&out_dev, output, Arc::clone(&bridge), counters))?;
    let inp = with_sample_type!(input.format, Direction::Input, input_stream(&in_dev, input, port_rate, bridge, counters))?;
    Ok((inp, out))
}

impl AudioPort for CpalPort {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn start(&self, bridge: Arc<AudioBridge>) -> Result<PortClock, AudioError> {
        // A second start (a new call) replaces the streams of the first.
        self.stop();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), CpalError>>(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (host, input, output, rate) = (self.host, self.input, self.output, self.format.sample_rate);
        let counters = Arc::clone(&self.counters);
        let thread = std::thread::Builder::new()
            .name("tsunagu-cpal".into())
            .spawn(move || match open_streams(host, input, output, rate, bridge, &counters) {
                Ok(streams) => {
                    let _ = ready_tx.send(Ok(()));
                    // Until `stop`, or until the port is gone (the sender
                    // dropped): either way the streams close here.
                    let _ = stop_rx.recv();
                    drop(streams);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| AudioError::Device(format!("cannot start the audio thread: {e}")))?;
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(())) => {
                *lock(&self.running) = Some(Running { stop: stop_tx, thread });
                Ok(PortClock::Own)
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.into())
            }
            // A driver that hangs: give up on it. `stop_tx` is dropped here,
            // so if the streams do open later they are closed at once.
            Err(_) => Err(AudioError::Device(format!("the sound card did not open within {} s", OPEN_TIMEOUT.as_secs()))),
        }
    }

    fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(Running { stop, thread }) = running {
            drop(stop);
            let _ = thread.join();
        }
    }

    fn capture(&self, _: u32) -> Vec<i16> {
        // The device's own clock drives this port; the driver never asks.
        Vec::new()
    }

    fn playout(&self, _: Vec<i16>) {}
}

impl Drop for CpalPort {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(channels: u16, min: u32, max: u32, format: SampleFormat) -> SupportedStreamConfigRange {
        SupportedStreamConfigRange::new(channels, min, max, SupportedBufferSize::Range { min: 64, max: 8192 }, format)
    }

    #[test]
    fn prefers_16_bit_mono_at_the_rate() {
        let ranges = [
            range(2, 8_000, 48_000, SampleFormat::F32),
            range(1, 8_000, 48_000, SampleFormat::I16),
            range(2, 8_000, 48_000, SampleFormat::I16),
            range(1, 8_000, 192_000, SampleFormat::DsdU8),
        ];
        let c = choose(&ranges, 48_000).unwrap();
        assert_eq!((c.format, c.config.channels, c.config.sample_rate), (SampleFormat::I16, 1, 48_000));
        assert_eq!(c.config.buffer_size, BufferSize::Fixed(480), "10 ms");
        assert!(choose(&ranges, 96_000).is_none(), "only DSD goes that high");
        assert!(choose(&[], 48_000).is_none());
        let float_only = [range(6, 44_100, 44_100, SampleFormat::F32), range(2, 44_100, 44_100, SampleFormat::F32)];
        let c = choose(&float_only, 44_100).unwrap();
        assert_eq!((c.format, c.config.channels), (SampleFormat::F32, 2));
        let zero = [range(0, 8_000, 48_000, SampleFormat::I16)];
        assert!(choose(&zero, 8_000).is_none(), "a device with no channels is no device");
    }

    #[test]
    fn rates_start_with_the_default_and_stay_in_range() {
        assert_eq!(rates(Some(44_100))[..3], [44_100, 48_000, 16_000]);
        assert_eq!(rates(Some(48_000)).iter().filter(|&&r| r == 48_000).count(), 1);
        assert_eq!(rates(Some(384_000))[0], 48_000, "out of the bridge's range");
        assert_eq!(rates(None)[0], 48_000);
        assert_eq!(rates(Some(0))[0], 48_000);
    }

    #[test]
    fn buffer_sizes_follow_what_the_device_allows() {
        assert_eq!(buffer_size(&SupportedBufferSize::Range { min: 64, max: 4096 }, 48_000), BufferSize::Fixed(480));
        assert_eq!(buffer_size(&SupportedBufferSize::Range { min: 1024, max: 4096 }, 48_000), BufferSize::Fixed(1024));
        assert_eq!(buffer_size(&SupportedBufferSize::Range { min: 16, max: 32 }, 48_000), BufferSize::Fixed(32));
        assert_eq!(buffer_size(&SupportedBufferSize::Range { min: 0, max: 0 }, 48_000), BufferSize::Default);
        assert_eq!(buffer_size(&SupportedBufferSize::Range { min: 100, max: 10 }, 48_000), BufferSize::Default);
        assert_eq!(buffer_size(&SupportedBufferSize::Unknown, 48_000), BufferSize::Default);
    }

    #[test]
    fn errors_read_well_and_become_audio_errors() {
        let e = CpalError::NoDevice(Direction::Input);
        assert_eq!(e.to_string(), "there is no input device (no sound card, or this user may not use it)");
        let a: AudioError = e.into();
        assert!(matches!(a, AudioError::Device(ref s) if s.contains("no input device")), "{a}");
    }
}
