//! CpalPort against a real ALSA device that needs no hardware: ALSA's
//! configuration is pointed (ALSA_CONFIG_PATH) at a file of the test's own
//! whose default PCM is a `file` plugin over `null`. Playback is written to
//! a raw file the test reads back; capture comes from a raw file the test
//! wrote (a tone). The `plug` layer in front lets cpal pick any format and
//! converts it to the files' 16-bit mono (8 kHz out, 48 kHz in), so the
//! test knows what the files hold whatever cpal chose.
//!
//! ALSA's null device is not paced by a clock: the streams run as fast as
//! the callbacks go. The test therefore asserts that audio flows both ways
//! and arrives intact, not that it keeps time, and every wait is bounded.
#![cfg(all(feature = "cpal", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tsunagu_client::audio::{AudioBridge, AudioError, AudioPort, BridgeConfig, Driver, PortClock};
use tsunagu_client::cpal_port::{CpalError, CpalPort, Direction};

/// ALSA's configuration is process-wide: one test at a time changes it.
static ALSA: Mutex<()> = Mutex::new(());

struct AlsaConfig {
    dir: tempfile::TempDir,
    _guard: MutexGuard<'static, ()>,
}

impl AlsaConfig {
    /// Points ALSA at `text` (with `{dir}` replaced by a fresh temp dir).
    fn new(text: &str) -> Self {
        let guard = ALSA.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("asound.conf");
        std::fs::write(&conf, text.replace("{dir}", &dir.path().display().to_string())).unwrap();
        // Read by alsa-lib each time it (re)loads its configuration, which
        // cpal has it do when the first host of the process is made and
        // again after the last one is gone.
        std::env::set_var("ALSA_CONFIG_PATH", &conf);
        AlsaConfig { dir, _guard: guard }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

const FILE_DEVICE: &str = r#"
pcm.!default {
    type asym
    playback.pcm {
        type plug
        slave {
            pcm { type file slave.pcm { type null } file "{dir}/out.raw" format "raw" }
            format S16_LE
            rate 8000
            channels 1
        }
    }
    capture.pcm {
        type plug
        slave {
            pcm { type file slave.pcm { type null } file "/dev/null" infile "{dir}/in.raw" format "raw" }
            format S16_LE
            rate 48000
            channels 1
        }
    }
}
"#;

fn tone(hz: f64, rate: f64, amplitude: f64, n: usize) -> Vec<i16> {
    (0..n).map(|i| (amplitude * (std::f64::consts::TAU * hz * i as f64 / rate).sin()) as i16).collect()
}

fn read_s16(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

#[test]
fn frames_flow_both_ways_through_an_alsa_device() {
    let alsa = AlsaConfig::new(FILE_DEVICE);
    // Two seconds of a 440 Hz tone as the microphone.
    let mic = tone(440.0, 48_000.0, 8_000.0, 96_000);
    let bytes: Vec<u8> = mic.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(alsa.path("in.raw"), bytes).unwrap();

    let port = Arc::new(CpalPort::open().expect("the file-backed ALSA device opens"));
    let format = port.format();
    assert!((4_000..=192_000).contains(&format.sample_rate), "{format:?}");
    assert!(port.input_info().channels >= 1 && port.output_info().channels >= 1);
    eprintln!("input {}, output {}", port.input_info(), port.output_info());

    // The engine side by hand rather than through a `Driver`: a driver
    // runs the engine for as long as capture keeps arriving, which on an
    // unpaced device is forever. Here each round takes at most three
    // frames. A small bridge, because each read resamples all that the
    // unpaced device crammed into the ring, and tsunagu-media is not
    // optimised in test builds.
    let bridge = AudioBridge::new(format, BridgeConfig { capacity_ms: 40, prefill_ms: 0 }).unwrap();
    assert_eq!(port.start(bridge.clone()).expect("streams start"), PortClock::Own, "the device's callbacks drive the port");
    assert!(port.is_running());

    // Note the loudest capture sample; answer with a 1 kHz tone at 8 kHz.
    let playout = tone(1000.0, 8000.0, 10_000.0, 160);
    let mut capture = [0i16; 160];
    let mut loudest = 0i32;
    let (mut read, mut written) = (0usize, 0usize);
    // Short: the unpaced device writes playout as fast as it can.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..3 {
            if !bridge.read_capture(&mut capture) {
                break;
            }
            read += 1;
            loudest = loudest.max(capture.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0));
        }
        if written < 25 {
            bridge.write_playout(&playout);
            written += 1;
        }
        if read >= 25 && written >= 25 && port.played_frames() >= 48_000 {
            break;
        }
        if Instant::now() > deadline {
            port.stop();
            panic!(
                "no flow within 10 s: {read} frames read, {written} written, loudest capture {loudest}, {} frames played, {} captured, errors {:?}",
                port.played_frames(),
                port.captured_frames(),
                port.stream_errors()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    port.stop();
    assert!(!port.is_running());
    assert!(port.captured_frames() > 0);
    // The tone was 8000 at 48 kHz; through the bridge's resampler to 8 kHz
    // it stays near that (more where the overrunning ring spliced it).
    assert!(loudest > 6_000 && loudest < 12_000, "captured tone peak {loudest}");

    // The playout file (8 kHz, converted by ALSA's plug) holds what the
    // engine played: the 1 kHz tone between stretches of silence where the
    // unpaced device outran the engine.
    let played = read_s16(&alsa.path("out.raw"));
    assert!(!played.is_empty(), "the device wrote playout");
    let peak = played.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0);
    assert!(peak > 8_000 && peak < 12_000, "played peak {peak} over {} samples", played.len());
    let loud = played.iter().filter(|&&s| s.abs() > 5_000).count();
    assert!(loud >= 1_000, "{loud} loud samples: the tone is there, not a click");
    assert_eq!(port.stream_errors().0, 0, "{:?}", port.stream_errors());

    // The port starts again for a second call (through a driver, as the
    // SDK does), and stops when the driver goes.
    let driver = Driver::start(port.clone(), BridgeConfig::default(), Instant::now()).expect("restart");
    assert_eq!(driver.clock(), PortClock::Own);
    assert!(port.is_running());
    drop(driver);
    assert!(!port.is_running());
}

#[test]
fn a_missing_sound_card_is_a_typed_error() {
    // A default device on a card that does not exist.
    let _alsa = AlsaConfig::new("pcm.!default { type hw card 37 device 0 }\n");
    let err = CpalPort::open().expect_err("no card 37");
    assert!(
        matches!(err, CpalError::Query { direction: Direction::Output, .. } | CpalError::NoUsableFormat(Direction::Output)),
        "{err:?}"
    );
    let audio: AudioError = err.clone().into();
    assert!(audio.to_string().contains("output device"), "{audio}");
}

#[test]
fn a_broken_alsa_configuration_is_a_typed_error() {
    let _alsa = AlsaConfig::new("pcm.!default { type ");
    let err = CpalPort::open().expect_err("unparsable configuration");
    assert!(matches!(err, CpalError::NoHost(_) | CpalError::Query { .. }), "{err:?}");
}

#[test]
fn an_input_only_failure_is_reported_as_input() {
    // Playback works, capture is on a card that does not exist.
    let _alsa = AlsaConfig::new(
        r#"
pcm.!default {
    type asym
    playback.pcm { type null }
    capture.pcm { type hw card 37 device 0 }
}
"#,
    );
    let err = CpalPort::open().expect_err("no capture device");
    assert!(matches!(err, CpalError::Query { direction: Direction::Input, .. } | CpalError::NoUsableFormat(Direction::Input)), "{err:?}");
}
