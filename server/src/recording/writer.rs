//! The writer thread, `media-recorder`: one OS thread turns the relay
//! threads' batches into one spool file per call,
//! `DATA/recordings/spool/ID.wav`: **stereo** µ-law WAV (WAVE format 7,
//! 8 kHz, 8 bits a sample, 16 kB/s), the caller's voice on the left and the
//! other party's on the right.
//!
//! PCMU payloads are copied as they are, PCMA goes through linear to µ-law
//! (a 256-entry table), Opus is decoded and µ-law encoded. Each channel is
//! placed by its RTP timestamps, anchored to arrival time at its first
//! packet and anchored again (silence inserted, or audio overwritten) when
//! it strays more than 100 ms from arrival time: a new SSRC, a hold, a
//! sender's drifting clock. Lost packets are silence. Audio is kept in
//! memory for 300 ms behind the newest arrival (late packets still find
//! their place) and written out behind that.
//!
//! A write error (a full disk) fails only that recording: its file is
//! removed and the reason reported; the call, the relay and every other
//! recording go on.

use super::tap::{records, Batch, Control, Record};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tsunagu_media::codec::{alaw_decode, ulaw_encode, Codec, Decoder};

/// Bytes before the audio: RIFF, fmt (18 bytes, as non-PCM formats
/// have), fact, data headers.
pub const HEADER_LEN: u64 = 58;
/// µ-law's zero.
const SILENCE: u8 = 0xFF;
/// 100 ms at 8 kHz: how far a channel may stray from arrival time.
const REANCHOR_FRAMES: i64 = 800;
/// 300 ms: audio younger than this (behind the newest arrival) stays in
/// memory, where late packets can still land.
const SETTLE_FRAMES: i64 = 2400;
/// The RIFF sizes are 32-bit: a recording stops growing at this (37 hours).
const MAX_DATA: u64 = u32::MAX as u64 - HEADER_LEN;

/// What the writer tells the uploader.
#[derive(Debug)]
pub enum WriterEvent {
    /// The file is complete (header sizes written).
    Closed { id: String, path: PathBuf, frames: u64 },
    /// Nothing was kept; the file is gone.
    Failed { id: String, reason: String },
}

/// The 58-byte header of a stereo µ-law WAV with `data_len` bytes of audio.
pub fn wav_header(data_len: u64) -> [u8; HEADER_LEN as usize] {
    let data = u32::try_from(data_len.min(MAX_DATA)).unwrap_or(u32::MAX);
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data + 50).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&18u32.to_le_bytes());
    h[20..22].copy_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // stereo
    h[24..28].copy_from_slice(&8000u32.to_le_bytes());
    h[28..32].copy_from_slice(&16000u32.to_le_bytes()); // bytes per second
    h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&8u16.to_le_bytes()); // bits per sample
    h[36..38].copy_from_slice(&0u16.to_le_bytes()); // cbSize
    h[38..42].copy_from_slice(b"fact");
    h[42..46].copy_from_slice(&4u32.to_le_bytes());
    h[46..50].copy_from_slice(&(data / 2).to_le_bytes()); // frames
    h[50..54].copy_from_slice(b"data");
    h[54..58].copy_from_slice(&data.to_le_bytes());
    h
}

/// (channels, format tag, data offset, data length) of a WAV header, for
/// the files this module writes (and any plain RIFF/WAVE).
pub fn parse_header(b: &[u8]) -> Option<(u16, u16, usize, usize)> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    let mut fmt = None;
    while let Some(id) = b.get(at..at + 4) {
        let size = u32::from_le_bytes(b.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let f = b.get(body..body + 4)?;
            fmt = Some((u16::from_le_bytes([f[2], f[3]]), u16::from_le_bytes([f[0], f[1]])));
        } else if id == b"data" {
            let (channels, tag) = fmt?;
            return Some((channels, tag, body, size));
        }
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// Write the header sizes of a spool file from its length (a file the
/// server left mid-call); an odd trailing byte is cut. Returns the frames.
pub fn fix_header(path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len < HEADER_LEN {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "shorter than a WAV header"));
    }
    let data = ((len - HEADER_LEN) & !1).min(MAX_DATA & !1);
    f.set_len(HEADER_LEN + data)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&wav_header(data))?;
    f.sync_all()?;
    Ok(data / 2)
}

fn describe(e: &std::io::Error, path: &Path) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        format!("the disk is full (ENOSPC) writing {}", path.display())
    } else {
        format!("writing {}: {e}", path.display())
    }
}

struct Anchor {
    ssrc: u32,
    ts: u32,
    pos: i64,
    codec: Codec,
}

#[derive(Default)]
struct Chan {
    anchor: Option<Anchor>,
    opus: Option<Decoder>,
}

struct CallFile {
    id: String,
    path: PathBuf,
    out: Option<BufWriter<File>>,
    free: Sender<Vec<u8>>,
    chans: [Chan; 2],
    /// The frame `pending[0]` is.
    base: i64,
    pending: VecDeque<[u8; 2]>,
    data_bytes: u64,
}

impl CallFile {
    fn create(id: String, path: PathBuf, free: Sender<Vec<u8>>) -> Result<CallFile, String> {
        let file = File::create(&path).map_err(|e| describe(&e, &path))?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(&wav_header(0)).map_err(|e| describe(&e, &path))?;
        Ok(CallFile { id, path, out: Some(out), free, chans: Default::default(), base: 0, pending: VecDeque::new(), data_bytes: 0 })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_data(&mut self.out, &mut self.data_bytes, bytes)
    }

    /// Write out every frame before `frame`.
    fn flush_until(&mut self, frame: i64) -> std::io::Result<()> {
        if frame <= self.base {
            return Ok(());
        }
        let n = ((frame - self.base) as usize).min(self.pending.len());
        if n > 0 {
            let (a, b) = self.pending.as_slices();
            let (a, b) = (&a[..n.min(a.len())], &b[..n.saturating_sub(a.len())]);
            write_data(&mut self.out, &mut self.data_bytes, a.as_flattened())?;
            write_data(&mut self.out, &mut self.data_bytes, b.as_flattened())?;
            self.pending.drain(..n);
            self.base += n as i64;
        }
        // Nobody spoke in between (a hold, a one-way stretch): silence,
        // streamed rather than held in memory.
        static QUIET: [u8; 4096] = [SILENCE; 4096];
        while self.base < frame {
            let frames = ((frame - self.base) as usize).min(QUIET.len() / 2);
            self.write(&QUIET[..frames * 2])?;
            self.base += frames as i64;
        }
        Ok(())
    }

    fn place(&mut self, rec: &Record<'_>, samples: &[u8]) -> std::io::Result<()> {
        let arrival = i64::from(rec.ms) * 8;
        self.flush_until(arrival - SETTLE_FRAMES)?;
        let ch = &mut self.chans[rec.channel];
        let per_sample = i64::from(rec.codec.timestamp_units_per_sample().max(1));
        let pos = match &ch.anchor {
            Some(a) if a.ssrc == rec.ssrc && a.codec == rec.codec => Some(a.pos + i64::from(rec.ts.wrapping_sub(a.ts) as i32) / per_sample),
            _ => None,
        };
        let pos = match pos {
            Some(p) if (p - arrival).abs() <= REANCHOR_FRAMES => p,
            _ => {
                ch.anchor = Some(Anchor { ssrc: rec.ssrc, ts: rec.ts, pos: arrival, codec: rec.codec });
                arrival
            }
        };
        let skip = (self.base - pos).max(0) as usize;
        if skip >= samples.len() {
            return Ok(()); // too late: that stretch is written already
        }
        let first = (pos + skip as i64 - self.base) as usize;
        let end = first + samples.len() - skip;
        if self.pending.len() < end {
            self.pending.resize(end, [SILENCE; 2]);
        }
        for (slot, s) in self.pending.range_mut(first..end).zip(&samples[skip..]) {
            slot[rec.channel] = *s;
        }
        Ok(())
    }

    /// Write what is left and the header's sizes.
    fn close(&mut self) -> std::io::Result<u64> {
        self.flush_until(self.base + self.pending.len() as i64)?;
        let Some(out) = self.out.take() else { return Ok(0) };
        let mut f = out.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&wav_header(self.data_bytes))?;
        f.flush()?;
        Ok(self.data_bytes / 2)
    }
}

/// Append audio, up to what the 32-bit RIFF sizes can say.
fn write_data(out: &mut Option<BufWriter<File>>, data_bytes: &mut u64, bytes: &[u8]) -> std::io::Result<()> {
    let room = MAX_DATA.saturating_sub(*data_bytes) as usize;
    let bytes = &bytes[..bytes.len().min(room) & !1];
    if let Some(out) = out.as_mut() {
        out.write_all(bytes)?;
    }
    *data_bytes += bytes.len() as u64;
    Ok(())
}

struct Writer {
    calls: HashMap<u64, CallFile>,
    /// Keys of recordings that failed: their batches are thrown away.
    failed: HashMap<u64, Sender<Vec<u8>>>,
    ends: Vec<u64>,
    events: UnboundedSender<WriterEvent>,
    a2u: [u8; 256],
    pcm: Vec<i16>,
    ulaw: Vec<u8>,
}

impl Writer {
    fn control(&mut self, c: Control) {
        match c {
            Control::Open { key, id, spool, free } => match CallFile::create(id.clone(), spool, free.clone()) {
                Ok(f) => {
                    self.calls.insert(key, f);
                }
                Err(reason) => {
                    tracing::error!(recording = %id, %reason, "cannot start a recording; the call goes on unrecorded");
                    self.failed.insert(key, free);
                    let _ = self.events.send(WriterEvent::Failed { id, reason });
                }
            },
            Control::End { key } => self.ends.push(key),
        }
    }

    fn batch(&mut self, b: Batch, control: &Receiver<Control>) {
        if !self.calls.contains_key(&b.key) && !self.failed.contains_key(&b.key) {
            // Its Open was sent before the tap existed: it is waiting.
            while let Ok(c) = control.try_recv() {
                self.control(c);
            }
        }
        let Batch { key, mut buf } = b;
        if let Some(f) = self.calls.get_mut(&key) {
            let mut error = None;
            for rec in records(&buf) {
                self.ulaw.clear();
                match rec.codec {
                    Codec::Pcmu => self.ulaw.extend_from_slice(rec.payload),
                    Codec::Pcma => self.ulaw.extend(rec.payload.iter().map(|&b| self.a2u[b as usize])),
                    Codec::Opus => {
                        let ch = &mut f.chans[rec.channel];
                        if ch.opus.is_none() {
                            ch.opus = Decoder::new(Codec::Opus).ok();
                        }
                        let Some(dec) = ch.opus.as_mut() else { continue };
                        self.pcm.clear();
                        if dec.decode(rec.payload, &mut self.pcm).is_err() {
                            continue; // a damaged packet: silence there
                        }
                        self.ulaw.extend(self.pcm.iter().map(|&s| ulaw_encode(s)));
                    }
                }
                if let Err(e) = f.place(&rec, &self.ulaw) {
                    error = Some(describe(&e, &f.path));
                    break;
                }
            }
            if let Some(reason) = error {
                self.fail(key, reason);
            }
        }
        buf.clear();
        let free = self.calls.get(&key).map(|f| &f.free).or_else(|| self.failed.get(&key));
        if let Some(free) = free {
            let _ = free.send(buf);
        }
    }

    fn fail(&mut self, key: u64, reason: String) {
        let Some(mut f) = self.calls.remove(&key) else { return };
        f.out = None;
        let _ = std::fs::remove_file(&f.path);
        tracing::error!(recording = %f.id, %reason, "recording failed; the call goes on unrecorded");
        metrics::counter!("tsunagu_recording_failed_total").increment(1);
        self.failed.insert(key, f.free.clone());
        let _ = self.events.send(WriterEvent::Failed { id: f.id, reason });
    }

    fn end(&mut self, key: u64) {
        if self.failed.remove(&key).is_some() {
            return;
        }
        let Some(mut f) = self.calls.remove(&key) else { return };
        match f.close() {
            Ok(frames) => {
                let _ = self.events.send(WriterEvent::Closed { id: f.id, path: f.path, frames });
            }
            Err(e) => {
                let reason = describe(&e, &f.path);
                self.calls.insert(key, f);
                self.fail(key, reason);
                self.failed.remove(&key);
            }
        }
    }
}

/// Start the writer thread.
pub(crate) fn spawn(data: Receiver<Batch>, control: Receiver<Control>, events: UnboundedSender<WriterEvent>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut a2u = [0u8; 256];
    for (i, v) in a2u.iter_mut().enumerate() {
        *v = ulaw_encode(alaw_decode(i as u8));
    }
    let mut w = Writer { calls: HashMap::new(), failed: HashMap::new(), ends: Vec::new(), events, a2u, pcm: Vec::with_capacity(960), ulaw: Vec::with_capacity(960) };
    std::thread::Builder::new().name("media-recorder".into()).spawn(move || {
        let mut control_open = true;
        loop {
            while let Ok(c) = control.try_recv() {
                w.control(c);
            }
            if !w.ends.is_empty() {
                // Every batch a tap sent before its end is in the channel
                // by now: take them all before closing.
                while let Ok(b) = data.try_recv() {
                    w.batch(b, &control);
                }
                for key in std::mem::take(&mut w.ends) {
                    w.end(key);
                }
            }
            match data.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => w.batch(b, &control),
                Err(RecvTimeoutError::Timeout) => {
                    if !control_open && w.calls.is_empty() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if !control_open {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            match control.try_recv() {
                Ok(c) => w.control(c),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => control_open = false,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }
    })
}
