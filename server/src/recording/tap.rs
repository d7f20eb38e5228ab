//! What the relay thread holds per recorded call: a buffer it appends each
//! audio packet's payload to, with a few header fields, and nothing more.
//! Full buffers (or, once a second, whatever there is) go to the writer
//! thread over a bounded channel without waiting; the writer hands emptied
//! buffers back, so in the steady state nothing is allocated here. When the
//! writer falls behind and the channel is full, that batch is dropped and
//! counted (`tsunagu_recording_dropped_total`): the relay never waits for a
//! disk.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::time::Instant;
use tsunagu_media::codec::Codec;

/// Which side of the stereo file a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The caller's voice: the left channel.
    Caller,
    /// The other party's voice: the right channel.
    Callee,
}

impl Channel {
    pub(crate) fn index(self) -> usize {
        match self {
            Channel::Caller => 0,
            Channel::Callee => 1,
        }
    }
}

/// A batch goes to the writer when it holds this much.
pub const BATCH_BYTES: usize = 32 * 1024;
/// Room for one more packet past the threshold, so a buffer never grows.
pub(crate) const BUF_CAPACITY: usize = BATCH_BYTES + 2048;
/// Buffers made per call at the start: one filling, one with the writer,
/// one spare.
const BUFFERS_PER_CALL: usize = 3;

/// Per packet: channel, codec, ms since start (u32), seq (u16), ts (u32),
/// ssrc (u32), payload length (u16), then the payload.
pub(crate) const RECORD_HEAD: usize = 1 + 1 + 4 + 2 + 4 + 4 + 2;

pub(crate) fn codec_code(c: Codec) -> u8 {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 1,
        Codec::Opus => 2,
    }
}

pub(crate) fn codec_of(b: u8) -> Option<Codec> {
    match b {
        0 => Some(Codec::Pcmu),
        1 => Some(Codec::Pcma),
        2 => Some(Codec::Opus),
        _ => None,
    }
}

/// One packet as the writer reads it back from a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub channel: usize,
    pub codec: Codec,
    pub ms: u32,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Walk the packets of a batch; a malformed tail ends the walk.
pub(crate) fn records(buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = buf.get(at..at + RECORD_HEAD)?;
        let len = u16::from_le_bytes([h[16], h[17]]) as usize;
        let payload = buf.get(at + RECORD_HEAD..at + RECORD_HEAD + len)?;
        at += RECORD_HEAD + len;
        Some(Record {
            channel: usize::from(h[0] & 1),
            codec: codec_of(h[1])?,
            ms: u32::from_le_bytes([h[2], h[3], h[4], h[5]]),
            // h[6..8]: the sequence number, kept for diagnosis; placement
            // goes by timestamp.
            ts: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
            ssrc: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
            payload,
        })
    })
}

/// A full buffer on its way to the writer; `key` names the call.
pub(crate) struct Batch {
    pub key: u64,
    pub buf: Vec<u8>,
}

/// Calls starting and ending (an unbounded channel: two per call, and an
/// end must never be lost to a full data channel).
pub(crate) enum Control {
    Open { key: u64, id: String, spool: PathBuf, free: Sender<Vec<u8>> },
    End { key: u64 },
}

/// A recorded call's tap, owned by the relay thread. See the module notes.
pub struct Tap {
    key: u64,
    id: String,
    started: Instant,
    buf: Vec<u8>,
    data: SyncSender<Batch>,
    control: Sender<Control>,
    free: Receiver<Vec<u8>>,
    finished: bool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("id", &self.id).field("buffered", &self.buf.len()).finish()
    }
}

impl Tap {
    pub(crate) fn new(key: u64, id: String, data: SyncSender<Batch>, control: Sender<Control>, free_tx: &Sender<Vec<u8>>, free: Receiver<Vec<u8>>) -> Tap {
        for _ in 1..BUFFERS_PER_CALL {
            let _ = free_tx.send(Vec::with_capacity(BUF_CAPACITY));
        }
        Tap { key, id, started: Instant::now(), buf: Vec::with_capacity(BUF_CAPACITY), data, control, free, finished: false }
    }

    /// One whole plain RTP packet that went from `dir`'s party to the
    /// other, in `codec` with the audio payload type `pt`. Packets of any
    /// other payload type (RFC 4733 telephone-events: keyed PINs) are not
    /// recorded; neither is anything that does not parse as RTP.
    pub fn packet(&mut self, dir: Channel, arrival: Instant, codec: Codec, pt: u8, rtp: &[u8]) {
        let Some((seq, ts, ssrc, payload)) = parse_rtp(rtp, pt) else { return };
        let need = RECORD_HEAD + payload.len();
        if need > BUF_CAPACITY - BATCH_BYTES {
            // Larger than any voice packet: not audio we can place.
            return;
        }
        if self.buf.len() + need > self.buf.capacity() {
            self.hand_off();
        }
        let ms = u32::try_from(arrival.saturating_duration_since(self.started).as_millis()).unwrap_or(u32::MAX);
        self.buf.push(dir.index() as u8);
        self.buf.push(codec_code(codec));
        self.buf.extend_from_slice(&ms.to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&ts.to_le_bytes());
        self.buf.extend_from_slice(&ssrc.to_le_bytes());
        self.buf.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(payload);
        if self.buf.len() >= BATCH_BYTES {
            self.hand_off();
        }
    }

    /// The recording's id (the `recordings` row).
    pub fn recording_id(&self) -> &str {
        &self.id
    }

    /// When the recording started: packet arrival times count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Once a second: whatever is buffered goes to the writer.
    pub fn tick(&mut self) {
        self.hand_off();
    }

    /// The call's recording ends: the last batch and the end marker go to
    /// the writer, which closes the file and has it uploaded. Dropping the
    /// tap does the same.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.hand_off();
        let _ = self.control.send(Control::End { key: self.key });
    }

    fn hand_off(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let full = std::mem::take(&mut self.buf);
        match self.data.try_send(Batch { key: self.key, buf: full }) {
            Ok(()) => {
                // A buffer the writer gave back; a new one only when it still
                // holds them all (it is behind, or just started).
                self.buf = self.free.try_recv().unwrap_or_else(|_| Vec::with_capacity(BUF_CAPACITY));
            }
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                metrics::counter!("tsunagu_recording_dropped_total").increment(1);
                let mut buf = b.buf;
                buf.clear();
                self.buf = buf;
            }
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.end();
    }
}

/// (seq, timestamp, SSRC, payload) of an RTP packet of payload type `pt`
/// (RFC 3550 §5.1: CSRCs, a header extension and padding skipped).
pub(crate) fn parse_rtp(p: &[u8], pt: u8) -> Option<(u16, u32, u32, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 || p[1] & 0x7f != pt & 0x7f {
        return None;
    }
    let mut start = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    let payload = p.get(start..end)?;
    if payload.is_empty() {
        return None;
    }
    Some((u16::from_be_bytes([p[2], p[3]]), u32::from_be_bytes([p[4], p[5], p[6], p[7]]), u32::from_be_bytes([p[8], p[9], p[10], p[11]]), payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, sync_channel};

    pub(crate) fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parses_rtp_and_skips_other_payload_types() {
        let p = rtp(0, 7, 160, 42, &[1, 2, 3]);
        assert_eq!(parse_rtp(&p, 0), Some((7, 160, 42, &[1u8, 2, 3][..])));
        assert_eq!(parse_rtp(&p, 101), None, "a telephone-event type is not audio");
        // Padding and an extension.
        let mut q = vec![0xb0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 9, 9, 9, 9, 5, 6, 0, 2];
        assert_eq!(parse_rtp(&q, 0), Some((1, 2, 3, &[5u8, 6][..])));
        q.truncate(14);
        assert_eq!(parse_rtp(&q, 0), None);
        assert_eq!(parse_rtp(&[0x80], 0), None);
    }

    #[test]
    fn batches_go_at_the_threshold_and_tick_and_full_channels_drop() {
        let (data_tx, data_rx) = sync_channel(1);
        let (ctl_tx, ctl_rx) = channel();
        let (free_tx, free_rx) = channel();
        let mut tap = Tap::new(9, "0000000000000009".into(), data_tx, ctl_tx, &free_tx, free_rx);
        let now = Instant::now();
        let pkt = rtp(0, 1, 0, 1, &[0x55; 160]);
        tap.packet(Channel::Caller, now, Codec::Pcmu, 0, &pkt);
        tap.packet(Channel::Callee, now, Codec::Pcmu, 0, &rtp(101, 1, 0, 1, &[1, 2, 3, 4]));
        assert!(data_rx.try_recv().is_err(), "nothing sent before the threshold");
        tap.tick();
        let b = data_rx.try_recv().unwrap();
        let recs: Vec<_> = records(&b.buf).collect();
        assert_eq!(recs.len(), 1, "the telephone-event is not recorded");
        assert_eq!((recs[0].channel, recs[0].payload.len()), (0, 160));
        // Fill past the threshold: a batch goes without a tick; the next
        // one finds the channel full and is dropped, not waited for.
        for _ in 0..(BATCH_BYTES / (RECORD_HEAD + 160) + 1) {
            tap.packet(Channel::Callee, now, Codec::Pcmu, 0, &pkt);
        }
        assert!(data_rx.try_recv().is_ok());
        for _ in 0..(2 * BATCH_BYTES / (RECORD_HEAD + 160) + 2) {
            tap.packet(Channel::Callee, now, Codec::Pcmu, 0, &pkt);
        }
        drop(tap);
        assert!(matches!(ctl_rx.try_recv(), Ok(Control::End { key: 9 })), "dropping the tap ends the recording");
    }
}
