//! `tsunagu-bench-sdk`: in-process figures of the softphone SDK's media
//! engine (tsunagu-media), for bench/sdk/run, which prints them next to
//! real baresip and tsunagu-phone processes.
//!
//! Subcommands (each prints one `key=value ...` line on stdout):
//!
//! * `cpu` — one call, both ends in this thread on virtual time: two
//!   engines exchange `--seconds` of 20 ms frames through a simulated
//!   network (fixed delay plus jitter, no loss), each end encoding its
//!   capture, taking the other's packets into its jitter buffer and
//!   decoding its playout, as the SDK's per-call task does every 20 ms.
//!   `--engine session` runs two `MediaSession`s (the SDK's whole engine:
//!   framing, encoder, RTP, optional SRTP, jitter buffer, decoder and
//!   concealment, RTCP); `--engine parts` chains the same parts by hand
//!   (Encoder -> RTP -> JitterBuffer -> Decoder), which is the only way to
//!   run Opus at a chosen bitrate: `MediaSession` has no bitrate setting.
//!   CPU is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID) around the
//!   loop, per repetition; the report gives the median and the minimum.
//! * `mem` — `--calls` sessions (in pairs, each pair one call seen from
//!   both ends) made and run for `--seconds`; live heap bytes per session
//!   from a counting global allocator (Rust allocations only), total malloc
//!   in use per session from glibc's mallinfo2 (also libopus's C state),
//!   and the growth of this process's RSS per session.
//! * `wav` — writes a WAV of `--seconds` looped from `--from` (8 kHz mono
//!   16-bit), or a synthetic voice-like signal when `--from` is absent.
//!
//! The loop of `cpu` is in [`measured_call`], which is never inlined, so
//! that `valgrind --tool=callgrind --toggle-collect='*measured_call*'`
//! counts the instructions of the call alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tsunagu_media::codec::{Codec, Decoder, Encoder, FRAME_SAMPLES};
use tsunagu_media::jitter::{JitterBuffer, JitterConfig, Playout};
use tsunagu_media::pipeline::LegMedia;
use tsunagu_media::rtp::RtpPacket;
use tsunagu_media::srtp::{MasterKey, SrtpSuite};
use tsunagu_media::transcode::write_rtp;
use tsunagu_media::{read_wav_pcm16, write_wav_pcm16, MediaSession, SessionConfig};

// ---------------------------------------------------------------------------
// Counting allocator: live bytes and allocation calls of Rust code.

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_heap() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Bytes of malloc'd memory in use (all arenas, mmapped chunks included):
/// Rust's allocations (System is malloc) and C libraries' (libopus) alike.
fn malloc_in_use() -> isize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as isize
}

fn rss_bytes() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as isize
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------
// Arguments

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        }
    }
}

fn codec_arg(a: &Args) -> Result<(Codec, u8), String> {
    match a.value("--codec").unwrap_or("pcmu") {
        "pcmu" => Ok((Codec::Pcmu, 0)),
        "pcma" => Ok((Codec::Pcma, 8)),
        "opus" => Ok((Codec::Opus, 111)),
        other => Err(format!("--codec {other}: pcmu, pcma or opus")),
    }
}

/// The capture audio: `--wav` looped (8 kHz mono), or the synthetic signal.
fn source_audio(a: &Args) -> Result<Vec<i16>, String> {
    match a.value("--wav") {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("--wav {p}: {e}"))?;
            let (rate, pcm) = read_wav_pcm16(&bytes).map_err(|e| format!("--wav {p}: {e}"))?;
            if rate != 8000 || pcm.len() < 8000 {
                return Err(format!("--wav {p}: need 8 kHz mono, at least 1 s (got {rate} Hz, {} samples)", pcm.len()));
            }
            Ok(pcm)
        }
        None => Ok(synthetic_voice(20 * 8000)),
    }
}

/// A deterministic voice-like signal: a 110-220 Hz harmonic series with
/// moving formant-ish weights, syllable-rate amplitude modulation, a little
/// noise, and pauses (so an encoder sees talkspurts and near-silence).
fn synthetic_voice(samples: usize) -> Vec<i16> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut phase = 0.0f64;
    (0..samples)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let f0 = 150.0 + 50.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / 8000.0;
            let mut v = 0.0;
            for h in 1..=12 {
                let hf = f0 * h as f64;
                let w = (-((hf - 500.0 - 200.0 * (1.3 * t).sin()).powi(2)) / 80_000.0).exp()
                    + 0.6 * (-((hf - 1500.0 - 300.0 * (0.9 * t).cos()).powi(2)) / 150_000.0).exp()
                    + 0.05;
                v += w * (phase * h as f64).sin();
            }
            let syllable = (2.0 * std::f64::consts::PI * 4.0 * t).sin().max(0.0);
            let talking = if (t % 4.0) < 3.0 { 1.0 } else { 0.02 };
            let noise = (rng.next() % 2001) as f64 / 1000.0 - 1.0;
            ((v * 2500.0 * syllable + noise * 150.0) * talking).clamp(-32000.0, 32000.0) as i16
        })
        .collect()
}

/// `n` samples of `src` looped from `offset`.
fn looped(src: &[i16], offset: usize, n: usize) -> Vec<i16> {
    (0..n).map(|i| src[(offset + i) % src.len()]).collect()
}

/// xorshift64*: the network's jitter, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

// ---------------------------------------------------------------------------
// The simulated network: per direction, delay + uniform jitter, no loss.

const NET_DELAY_MS: u64 = 20;
const NET_JITTER_MS: u64 = 30;

struct Link {
    rng: Rng,
    /// (arrival in ms since the start, send order, datagram), kept sorted.
    queue: VecDeque<(u64, u64, Vec<u8>)>,
    order: u64,
}

impl Link {
    fn new(seed: u64) -> Self {
        Link { rng: Rng(seed), queue: VecDeque::with_capacity(16), order: 0 }
    }

    fn send(&mut self, now_ms: u64, bytes: Vec<u8>) {
        let at = now_ms + NET_DELAY_MS + self.rng.next() % (NET_JITTER_MS + 1);
        self.order += 1;
        let key = (at, self.order);
        let pos = self.queue.partition_point(|(a, o, _)| (*a, *o) <= key);
        self.queue.insert(pos, (at, self.order, bytes));
    }

    /// The next datagram that has arrived by `now_ms`, with its arrival time.
    fn next_arrived(&mut self, now_ms: u64) -> Option<(u64, Vec<u8>)> {
        if self.queue.front().is_some_and(|(at, _, _)| *at <= now_ms) {
            self.queue.pop_front().map(|(at, _, b)| (at, b))
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------
// One end of a call, as the SDK's per-call task drives it.

trait End {
    fn datagram(&mut self, now: Instant, bytes: &[u8]);
    fn capture(&mut self, now: Instant, pcm: &[i16]);
    fn playout(&mut self, now: Instant, out: &mut Vec<i16>);
    fn timers(&mut self, now: Instant);
    fn transmit(&mut self) -> Option<Vec<u8>>;
    /// (RTP packets sent, RTP payload bytes sent, packets received, frames concealed)
    fn counts(&self) -> (u64, u64, u64, u64);
}

/// The SDK's engine: one `MediaSession`.
struct SessionEnd {
    s: MediaSession,
    /// SRTP authentication tag bytes per packet (0 without SRTP).
    tag: u64,
}

impl End for SessionEnd {
    fn datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.s.handle_datagram(now, bytes);
    }
    fn capture(&mut self, now: Instant, pcm: &[i16]) {
        self.s.push_capture(now, pcm);
    }
    fn playout(&mut self, now: Instant, out: &mut Vec<i16>) {
        self.s.pull_playout(now, out, FRAME_SAMPLES);
    }
    fn timers(&mut self, now: Instant) {
        if self.s.poll_timeout().is_some_and(|t| t <= now) {
            self.s.handle_timeout(now);
        }
        while self.s.poll_event().is_some() {}
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.s.poll_transmit().map(|t| t.bytes)
    }
    fn counts(&self) -> (u64, u64, u64, u64) {
        let st = self.s.stats();
        // bytes_sent counts the RTP header (12) and the SRTP tag.
        (st.packets_sent, st.bytes_sent.saturating_sub(st.packets_sent * (12 + self.tag)), st.packets_received, st.concealed_frames)
    }
}

fn key(suite: SrtpSuite, b: u8) -> MasterKey {
    MasterKey::from_slice(&vec![b; suite.master_len()]).expect("key length of its suite")
}

fn session_pair(codec: Codec, pt: u8, srtp: Option<SrtpSuite>, seed: u64, now: Instant) -> (SessionEnd, SessionEnd) {
    let leg = |ours: u8, theirs: u8, port: u16| LegMedia {
        rtp_addr: Some(format!("127.0.0.1:{port}").parse().expect("address")),
        codec: Some((codec, pt)),
        telephone_event: Some(101),
        srtp_send: srtp.map(|s| (s, key(s, ours))),
        srtp_recv: srtp.map(|s| (s, key(s, theirs))),
        ..Default::default()
    };
    let a = MediaSession::new(&leg(1, 2, 40000), SessionConfig::new("a@bench", seed), now).expect("session A");
    let b = MediaSession::new(&leg(2, 1, 40002), SessionConfig::new("b@bench", seed ^ 0x5555), now).expect("session B");
    let tag = match srtp {
        None => 0,
        Some(SrtpSuite::AesCm128HmacSha1_80) => 10,
        Some(SrtpSuite::AesCm128HmacSha1_32) => 4,
        Some(SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm) => 16,
    };
    (SessionEnd { s: a, tag }, SessionEnd { s: b, tag })
}

/// The same parts chained by hand: Encoder (Opus bitrate settable) -> RTP ->
/// JitterBuffer -> Decoder with concealment. No SRTP, no RTCP.
struct PartsEnd {
    enc: Encoder,
    dec: Decoder,
    jb: JitterBuffer,
    codec: Codec,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: Vec<u8>,
    out: VecDeque<Vec<u8>>,
    playout: Vec<i16>,
    sent: u64,
    payload_bytes: u64,
    received: u64,
    concealed: u64,
}

impl PartsEnd {
    fn new(codec: Codec, pt: u8, opus_bitrate: Option<i32>, ssrc: u32) -> Self {
        let mut enc = Encoder::new(codec).expect("encoder");
        if let Some(b) = opus_bitrate {
            enc.set_opus_bitrate(b).expect("Opus bitrate");
        }
        PartsEnd {
            enc,
            dec: Decoder::new(codec).expect("decoder"),
            jb: JitterBuffer::new(JitterConfig::for_codec(codec)),
            codec,
            pt,
            seq: (ssrc >> 3) as u16,
            ts: ssrc.rotate_left(7),
            ssrc,
            marker: true,
            payload: Vec::with_capacity(4000),
            out: VecDeque::new(),
            playout: Vec::with_capacity(4 * FRAME_SAMPLES),
            sent: 0,
            payload_bytes: 0,
            received: 0,
            concealed: 0,
        }
    }

    fn samples_in(d: Duration) -> usize {
        ((d.as_micros() * 8 + 500) / 1000) as usize
    }
}

impl End for PartsEnd {
    fn datagram(&mut self, now: Instant, bytes: &[u8]) {
        if let Ok(p) = RtpPacket::parse(bytes) {
            self.received += 1;
            self.jb.push_packet(now, &p);
        }
    }
    fn capture(&mut self, _now: Instant, pcm: &[i16]) {
        self.payload.clear();
        if self.enc.encode(pcm, &mut self.payload).is_ok() {
            let rtp = write_rtp(std::mem::take(&mut self.marker), self.pt, self.seq, self.ts, self.ssrc, &self.payload);
            self.sent += 1;
            self.payload_bytes += self.payload.len() as u64;
            self.out.push_back(rtp);
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.samples_to_timestamp(pcm.len()));
    }
    fn playout(&mut self, now: Instant, out: &mut Vec<i16>) {
        while self.playout.len() < FRAME_SAMPLES {
            let before = self.playout.len();
            match self.jb.pop(now) {
                Playout::Frame { payload, duration, .. } => {
                    let span = Self::samples_in(duration);
                    match self.dec.decode(&payload, &mut self.playout) {
                        Ok(n) if n < span => {
                            let _ = self.dec.conceal(span - n, None, &mut self.playout);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            let _ = self.dec.conceal(span, None, &mut self.playout);
                        }
                    }
                }
                Playout::Lost { next, duration } => {
                    self.concealed += 1;
                    let _ = self.dec.conceal(Self::samples_in(duration), next.as_deref(), &mut self.playout);
                }
                Playout::Empty { duration } => self.playout.resize(self.playout.len() + Self::samples_in(duration), 0),
            }
            if self.playout.len() == before {
                self.playout.resize(FRAME_SAMPLES, 0);
            }
        }
        out.extend(self.playout.drain(..FRAME_SAMPLES));
    }
    fn timers(&mut self, _now: Instant) {}
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
    fn counts(&self) -> (u64, u64, u64, u64) {
        (self.sent, self.payload_bytes, self.received, self.concealed)
    }
}

/// What one run of [`measured_call`] saw.
#[derive(Default)]
struct CallOutcome {
    /// Non-zero samples each end played (audio really went through).
    audible: [u64; 2],
}

/// Runs one call of `frames` 20 ms frames between `a` and `b`: every 20 ms
/// each end takes the datagrams that arrived (at their arrival times),
/// captures one frame, plays one frame, runs its timers and sends what it
/// has.
#[inline(never)]
fn measured_call<E: End>(a: &mut E, b: &mut E, cap_a: &[i16], cap_b: &[i16], frames: usize, origin: Instant) -> CallOutcome {
    let mut ab = Link::new(0x1234_5678);
    let mut ba = Link::new(0x8765_4321);
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    let mut outcome = CallOutcome::default();
    for f in 0..frames {
        let now_ms = (f as u64 + 1) * 20;
        while let Some((at, p)) = ab.next_arrived(now_ms) {
            b.datagram(origin + Duration::from_millis(at), &p);
        }
        while let Some((at, p)) = ba.next_arrived(now_ms) {
            a.datagram(origin + Duration::from_millis(at), &p);
        }
        let now = origin + Duration::from_millis(now_ms);
        let frame = f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES;
        a.capture(now, &cap_a[frame.clone()]);
        b.capture(now, &cap_b[frame]);
        for (i, end) in [&mut *a, &mut *b].into_iter().enumerate() {
            out.clear();
            end.playout(now, &mut out);
            outcome.audible[i] += out.iter().filter(|&&s| s != 0).count() as u64;
            end.timers(now);
        }
        while let Some(p) = a.transmit() {
            ab.send(now_ms, p);
        }
        while let Some(p) = b.transmit() {
            ba.send(now_ms, p);
        }
    }
    outcome
}

// ---------------------------------------------------------------------------
// Subcommands

fn cpu(a: &Args) -> Result<(), String> {
    let (codec, pt) = codec_arg(a)?;
    let engine = a.value("--engine").unwrap_or("session");
    let srtp = match a.value("--srtp").unwrap_or("none") {
        "none" => None,
        "aes-cm" => Some(SrtpSuite::AesCm128HmacSha1_80),
        "aes-gcm" => Some(SrtpSuite::AeadAes128Gcm),
        other => return Err(format!("--srtp {other}: none, aes-cm or aes-gcm")),
    };
    let seconds: f64 = a.num("--seconds", 60.0)?;
    let reps: usize = a.num("--reps", 5)?;
    let bitrate: Option<i32> = a.value("--opus-bitrate").map(|v| v.parse().map_err(|_| format!("--opus-bitrate {v}"))).transpose()?;
    if !(1.0..=600.0).contains(&seconds) || !(1..=50).contains(&reps) {
        return Err("--seconds 1..600, --reps 1..50".into());
    }
    if engine == "session" && bitrate.is_some() {
        return Err("MediaSession encodes Opus at SessionConfig::opus_bitrate (24 kbit/s): use --engine parts for another --opus-bitrate".into());
    }
    if engine == "parts" && srtp.is_some() {
        return Err("--engine parts has no SRTP".into());
    }
    let frames = (seconds * 50.0).round() as usize;
    let src = source_audio(a)?;
    let cap_a = looped(&src, 0, frames * FRAME_SAMPLES);
    let cap_b = looped(&src, src.len() / 2, frames * FRAME_SAMPLES);

    let mut cpu_ns = Vec::new();
    let mut wall_ns = Vec::new();
    let mut last = (0, 0, 0, 0, 0);
    for rep in 0..reps {
        // Virtual time; only offsets from this instant matter.
        let origin = Instant::now();
        let seed = 0x7a5u64 + rep as u64;
        let (c0, w0, outcome, counts) = match engine {
            "session" => {
                let (mut x, mut y) = session_pair(codec, pt, srtp, seed, origin);
                let (c0, w0) = (thread_cpu(), Instant::now());
                let o = measured_call(&mut x, &mut y, &cap_a, &cap_b, frames, origin);
                (c0, w0, o, [x.counts(), y.counts()])
            }
            "parts" => {
                let mut x = PartsEnd::new(codec, pt, bitrate, 0x1111_2222 ^ seed as u32);
                let mut y = PartsEnd::new(codec, pt, bitrate, 0x3333_4444 ^ seed as u32);
                let (c0, w0) = (thread_cpu(), Instant::now());
                let o = measured_call(&mut x, &mut y, &cap_a, &cap_b, frames, origin);
                (c0, w0, o, [x.counts(), y.counts()])
            }
            other => return Err(format!("--engine {other}: session or parts")),
        };
        let c = thread_cpu().saturating_sub(c0);
        let w = w0.elapsed();
        cpu_ns.push(c.as_nanos() as f64);
        wall_ns.push(w.as_nanos() as f64);
        let sent = counts[0].0 + counts[1].0;
        let payload = counts[0].1 + counts[1].1;
        let received = counts[0].2 + counts[1].2;
        let concealed = counts[0].3 + counts[1].3;
        last = (sent, payload, received, concealed, outcome.audible[0].min(outcome.audible[1]));
    }
    cpu_ns.sort_by(f64::total_cmp);
    wall_ns.sort_by(f64::total_cmp);
    let med = cpu_ns[cpu_ns.len() / 2];
    let min = cpu_ns[0];
    // One call = one end: CPU per end per 20 ms frame (one frame sent and
    // one played).
    let per_frame = |ns: f64| ns / 2.0 / frames as f64 / 1000.0;
    let (sent, payload, received, concealed, audible) = last;
    let kbps = if sent > 0 { payload as f64 * 8.0 / (sent as f64 * 0.02) / 1000.0 } else { 0.0 };
    println!(
        "engine={engine} codec={} srtp={} opus_bitrate={} frames={frames} reps={reps} \
         us_per_frame_med={:.2} us_per_frame_min={:.2} core_pct_med={:.4} wall_us_per_frame_med={:.2} \
         packets_sent={sent} packets_received={received} concealed={concealed} payload_kbps={kbps:.1} audible_min={audible}",
        codec.encoding_name(),
        srtp.map(|s| s.name()).unwrap_or("none"),
        bitrate.map(|b| b.to_string()).unwrap_or_else(|| "default".into()),
        per_frame(med),
        per_frame(min),
        per_frame(med) / 20_000.0 * 100.0,
        per_frame(wall_ns[wall_ns.len() / 2]),
    );
    if received < sent * 95 / 100 || audible == 0 {
        return Err(format!("the call did not carry audio: sent {sent}, received {received}, audible samples {audible}"));
    }
    Ok(())
}

fn mem(a: &Args) -> Result<(), String> {
    let (codec, pt) = codec_arg(a)?;
    let calls: usize = a.num("--calls", 100)?;
    let seconds: f64 = a.num("--seconds", 5.0)?;
    if !(2..=10_000).contains(&calls) || calls % 2 != 0 || !(0.0..=60.0).contains(&seconds) {
        return Err("--calls: even, 2..10000; --seconds 0..60".into());
    }
    let frames = (seconds * 50.0).round() as usize;
    let src = source_audio(a)?;
    let cap_a = looped(&src, 0, frames.max(1) * FRAME_SAMPLES);
    let cap_b = looped(&src, src.len() / 2, frames.max(1) * FRAME_SAMPLES);
    let origin = Instant::now();

    let (h0, m0, r0, n0) = (live_heap(), malloc_in_use(), rss_bytes(), ALLOCS.load(Ordering::Relaxed));
    let mut pairs: Vec<(SessionEnd, SessionEnd)> = Vec::with_capacity(calls / 2);
    for i in 0..calls / 2 {
        pairs.push(session_pair(codec, pt, None, 1000 + i as u64, origin));
    }
    let (h1, m1, r1, n1) = (live_heap(), malloc_in_use(), rss_bytes(), ALLOCS.load(Ordering::Relaxed));
    // Every pair talks for `seconds` (one pair after another: the live set
    // is all sessions either way), then the packets still in flight are
    // delivered, so what is measured is held by the sessions alone.
    let mut audible = u64::MAX;
    for (x, y) in pairs.iter_mut() {
        let o = measured_call(x, y, &cap_a, &cap_b, frames, origin);
        audible = audible.min(o.audible[0].min(o.audible[1]));
        // measured_call's links are dropped on return; what they held in
        // flight is lost, as on a network.
    }
    let (h2, m2, r2) = (live_heap(), malloc_in_use(), rss_bytes());
    let per = |a: isize, b: isize| (b - a) as f64 / calls as f64;
    println!(
        "codec={} calls={calls} seconds={seconds} heap_new={:.0} heap_live={:.0} malloc_new={:.0} malloc_live={:.0} \
         rss_new={:.0} rss_live={:.0} allocs_new={:.1} audible_min={audible}",
        codec.encoding_name(),
        per(h0, h1),
        per(h0, h2),
        per(m0, m1),
        per(m0, m2),
        per(r0, r1),
        per(r0, r2),
        (n1 - n0) as f64 / calls as f64,
    );
    drop(pairs);
    Ok(())
}

fn wav(a: &Args) -> Result<(), String> {
    let seconds: f64 = a.num("--seconds", 120.0)?;
    let out = a.value("--out").ok_or("--out FILE")?;
    if !(1.0..=3600.0).contains(&seconds) {
        return Err("--seconds 1..3600".into());
    }
    let n = (seconds * 8000.0) as usize;
    let pcm = match a.value("--from") {
        Some(_) => {
            let args = Args(vec!["--wav".into(), a.value("--from").unwrap_or_default().into()]);
            looped(&source_audio(&args)?, 0, n)
        }
        None => synthetic_voice(n),
    };
    std::fs::write(out, write_wav_pcm16(8000, &pcm)).map_err(|e| format!("{out}: {e}"))?;
    println!("wrote {out}: {seconds} s, 8000 Hz mono");
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: tsunagu-bench-sdk cpu|mem|wav [options]  (see the source's head)");
        return ExitCode::from(2);
    };
    let args = Args(argv[1..].to_vec());
    if args.flag("--help") {
        eprintln!("see bench/sdk/README.md and the head of bench/sdk/src/main.rs");
        return ExitCode::SUCCESS;
    }
    let r = match cmd.as_str() {
        "cpu" => cpu(&args),
        "mem" => mem(&args),
        "wav" => wav(&args),
        other => Err(format!("unknown subcommand {other}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tsunagu-bench-sdk: {e}");
            ExitCode::FAILURE
        }
    }
}
