//! The recording path without a relay: taps fed with synthetic RTP, the
//! writer thread, the files it leaves, the uploader, the sweep and purge.

use super::tap::{Batch, Control};
use super::writer::{parse_header, spawn, wav_header, WriterEvent, HEADER_LEN};
use super::*;
use object_store::ObjectStoreExt;
use std::sync::mpsc::{channel, sync_channel};
use std::time::{Duration, Instant};
use tsunagu_media::codec::{alaw_encode, ulaw_decode, ulaw_encode, Codec, Encoder};

const A: f32 = 440.0;
const B: f32 = 1000.0;

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// `n` samples of a tone starting at sample `from` (a phase offset so no
/// sample is exactly zero, which µ-law writes as the silence byte).
fn tone(freq: f32, from: usize, n: usize) -> Vec<i16> {
    (from..from + n).map(|i| ((i as f32 * freq * std::f32::consts::TAU / 8000.0 + 0.3).sin() * 8000.0) as i16).collect()
}

/// Goertzel power of `freq` in `x`, per sample.
fn power(x: &[i16], freq: f32) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * f64::from(freq) / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / x.len().max(1) as f64
}

struct Rig {
    data: std::sync::mpsc::SyncSender<Batch>,
    control: std::sync::mpsc::Sender<Control>,
    events: tokio::sync::mpsc::UnboundedReceiver<WriterEvent>,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let (data, data_rx) = sync_channel(64);
    let (control, control_rx) = channel();
    let (ev_tx, events) = tokio::sync::mpsc::unbounded_channel();
    spawn(data_rx, control_rx, ev_tx).unwrap();
    Rig { data, control, events, dir: tempfile::tempdir().unwrap() }
}

impl Rig {
    fn tap(&self, key: u64, path: std::path::PathBuf) -> Tap {
        let (free_tx, free_rx) = channel();
        let id = format!("{key:016x}");
        self.control.send(Control::Open { key, id: id.clone(), spool: path, free: free_tx.clone() }).unwrap();
        Tap::new(key, id, self.data.clone(), self.control.clone(), &free_tx, free_rx)
    }

    fn event(&mut self) -> WriterEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(e) = self.events.try_recv() {
                return e;
            }
            assert!(Instant::now() < deadline, "the writer said nothing in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Run `feed` on a fresh tap, finish it, and return the file's two
    /// channels as µ-law bytes.
    fn record(&mut self, feed: impl FnOnce(&mut Tap, Instant)) -> (Vec<u8>, Vec<u8>) {
        let path = self.dir.path().join("call.wav");
        let mut tap = self.tap(1, path.clone());
        let t0 = tap.started();
        feed(&mut tap, t0);
        tap.finish();
        match self.event() {
            WriterEvent::Closed { path: p, frames, .. } => {
                assert_eq!(p, path);
                let bytes = std::fs::read(&path).unwrap();
                let (channels, tag, off, len) = parse_header(&bytes).expect("a valid header");
                assert_eq!((channels, tag, off as u64), (2, 7, HEADER_LEN));
                assert_eq!(len as u64, frames * 2);
                assert_eq!(bytes.len(), off + len, "the header says the file's length");
                let data = &bytes[off..];
                (data.iter().step_by(2).copied().collect(), data.iter().skip(1).step_by(2).copied().collect())
            }
            e => panic!("not closed: {e:?}"),
        }
    }
}

fn pcm(u: &[u8]) -> Vec<i16> {
    u.iter().map(|&b| ulaw_decode(b)).collect()
}

fn silent(u: &[u8]) -> bool {
    u.iter().all(|&b| b == 0xFF)
}

fn ulaw(x: &[i16]) -> Vec<u8> {
    x.iter().map(|&s| ulaw_encode(s)).collect()
}

#[test]
fn two_interleaved_tones_land_left_and_right_at_their_offsets() {
    let mut rig = rig();
    let (left, right) = rig.record(|tap, t0| {
        // Caller: tone A from 0 to 1 s; callee: tone B from 0.5 s to 1.5 s.
        for step in 0..75u32 {
            let at = t0 + Duration::from_millis(u64::from(step) * 20);
            if step < 50 {
                let p = ulaw(&tone(A, step as usize * 160, 160));
                tap.packet(Channel::Caller, at, Codec::Pcmu, 0, &rtp(0, step as u16, 12_345 + step * 160, 0xA, &p));
            }
            if step >= 25 {
                let n = step - 25;
                let p = ulaw(&tone(B, n as usize * 160, 160));
                tap.packet(Channel::Callee, at, Codec::Pcmu, 0, &rtp(0, n as u16, 999 + n * 160, 0xB, &p));
                // A keyed digit: not audio, not recorded.
                tap.packet(Channel::Callee, at, Codec::Pcmu, 0, &rtp(101, n as u16, 999 + n * 160, 0xB, &[1, 0x0a, 0, 160]));
            }
            if step % 50 == 49 {
                tap.tick();
            }
        }
    });
    assert_eq!(left.len(), 12_000, "1.5 s");
    let l = pcm(&left[800..7200]);
    assert!(power(&l, A) > 100.0 * power(&l, B), "tone A on the left");
    assert!(silent(&left[8000..]), "the caller stopped at 1 s");
    assert!(silent(&right[..4000]), "the callee started at 0.5 s");
    let r = pcm(&right[4800..11_200]);
    assert!(power(&r, B) > 100.0 * power(&r, A), "tone B on the right");
    // Exact placement: the first callee sample at 0.5 s.
    assert_eq!(right[4000], ulaw(&tone(B, 0, 1))[0]);
    assert_eq!(&left[..160], &ulaw(&tone(A, 0, 160))[..]);
}

#[test]
fn a_gap_is_silence_of_its_length() {
    let mut rig = rig();
    let (left, _) = rig.record(|tap, t0| {
        for step in (0..50u32).filter(|s| !(10..20).contains(s)) {
            let p = ulaw(&tone(A, step as usize * 160, 160));
            tap.packet(Channel::Caller, t0 + Duration::from_millis(u64::from(step) * 20), Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 7, &p));
        }
    });
    assert_eq!(left.len(), 8000);
    assert!(silent(&left[1600..3200]), "200 ms lost: 200 ms of silence");
    assert_eq!(&left[3200..3360], &ulaw(&tone(A, 3200, 160))[..], "audio after the gap in its place");
    assert!(left[..1600].iter().filter(|&&b| b == 0xFF).count() < 16);
}

#[test]
fn a_new_ssrc_or_a_hold_anchors_again_at_arrival_time() {
    let mut rig = rig();
    let (left, right) = rig.record(|tap, t0| {
        for step in 0..25u32 {
            let p = ulaw(&tone(A, 0, 160));
            tap.packet(Channel::Caller, t0 + Duration::from_millis(u64::from(step) * 20), Codec::Pcmu, 0, &rtp(0, step as u16, 1000 + step * 160, 1, &p));
            // The callee's timestamps run on through a hold of 1 s.
            tap.packet(Channel::Callee, t0 + Duration::from_millis(u64::from(step) * 20), Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 3, &p));
        }
        for step in 0..25u32 {
            let at = t0 + Duration::from_millis(1000 + u64::from(step) * 20);
            let p = ulaw(&tone(B, 0, 160));
            // A new SSRC whose timestamps start anywhere.
            tap.packet(Channel::Caller, at, Codec::Pcmu, 0, &rtp(0, step as u16, 7_777_777 + step * 160, 2, &p));
            let at = t0 + Duration::from_millis(1500 + u64::from(step) * 20);
            tap.packet(Channel::Callee, at, Codec::Pcmu, 0, &rtp(0, 25 + step as u16, (25 + step) * 160, 3, &p));
        }
    });
    assert!(silent(&left[4000..8000]));
    assert_eq!(&left[8000..8160], &ulaw(&tone(B, 0, 160))[..], "the new stream at its arrival (1 s)");
    assert!(silent(&right[4000..12_000]), "the hold is silence");
    assert_eq!(&right[12_000..12_160], &ulaw(&tone(B, 0, 160))[..], "after the hold at arrival (1.5 s), not where the timestamps say");
}

#[test]
fn pcma_and_opus_are_turned_into_mu_law() {
    let mut rig = rig();
    let mut enc = Encoder::new(Codec::Opus).unwrap();
    let (left, right) = rig.record(|tap, t0| {
        for step in 0..50u32 {
            let at = t0 + Duration::from_millis(u64::from(step) * 20);
            let a: Vec<u8> = tone(A, step as usize * 160, 160).iter().map(|&s| alaw_encode(s)).collect();
            tap.packet(Channel::Caller, at, Codec::Pcma, 8, &rtp(8, step as u16, step * 160, 1, &a));
            let mut o = Vec::new();
            enc.encode(&tone(B, step as usize * 160, 160), &mut o).unwrap();
            tap.packet(Channel::Callee, at, Codec::Opus, 111, &rtp(111, step as u16, 5000 + step * 960, 2, &o));
        }
    });
    let l = pcm(&left[..8000]);
    let reference = tone(A, 0, 8000);
    let err: f64 = l.iter().zip(&reference).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    let sig: f64 = reference.iter().map(|&y| f64::from(y).powi(2)).sum();
    assert!(sig / err > 300.0, "A-law to µ-law keeps the audio (SNR {:.1})", sig / err);
    let r = pcm(&right[1600..8000]);
    assert!(power(&r, B) > 50.0 * power(&r, A), "Opus decoded on the right");
    assert!(power(&r, B) > 1e6, "and loud enough");
}

#[test]
fn the_header_is_valid_for_sox() {
    let mut rig = rig();
    rig.record(|tap, t0| {
        for step in 0..10u32 {
            tap.packet(Channel::Caller, t0 + Duration::from_millis(u64::from(step) * 20), Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 1, &ulaw(&tone(A, 0, 160))));
        }
    });
    let path = rig.dir.path().join("call.wav");
    // sox is installed by scripts/setup.sh; without it only our own parse checks.
    let Ok(out) = std::process::Command::new("sox").arg("--i").arg(&path).output() else { return };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "sox --i: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Channels       : 2") && text.contains("8000") && text.to_lowercase().contains("u-law"), "{text}");
}

#[test]
fn a_full_disk_fails_the_recording_and_nothing_else() {
    let mut rig = rig();
    let path = rig.dir.path().join("full.wav");
    // Every write to /dev/full fails with ENOSPC; through a link, so the
    // failed file's removal removes the link only.
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let mut tap = rig.tap(5, path.clone());
    let t0 = tap.started();
    for step in 0..400u32 {
        tap.packet(Channel::Caller, t0 + Duration::from_millis(u64::from(step) * 20), Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 1, &[0x55; 160]));
        if step % 50 == 0 {
            tap.tick();
        }
    }
    match rig.event() {
        WriterEvent::Failed { reason, .. } => assert!(reason.contains("disk is full"), "{reason}"),
        e => panic!("{e:?}"),
    }
    assert!(std::fs::symlink_metadata(&path).is_err(), "the partial file is removed");
    // The tap goes on taking packets until the call ends.
    tap.packet(Channel::Caller, Instant::now(), Codec::Pcmu, 0, &rtp(0, 1, 1, 1, &[0x55; 160]));
    drop(tap);
    // A second recording alongside is unaffected.
    let (left, _) = rig.record(|tap, t0| tap.packet(Channel::Caller, t0, Codec::Pcmu, 0, &rtp(0, 1, 1, 1, &[0x55; 160])));
    assert_eq!(left, vec![0x55; 160]);
}

async fn store() -> (tempfile::TempDir, Arc<SqliteStore>, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open(dir.path(), "r").await.unwrap());
    let o = storage::open(None, dir.path()).unwrap();
    (dir, s, o)
}

async fn row(s: &SqliteStore, id: &str, state: &str, started: i64, bytes: i64, objects: &dyn ObjectStore) {
    let key = object_key(id, started);
    sqlx::query("INSERT INTO recordings (id, call_id, started_at, object_key, state, bytes, sha256) VALUES (?, 'c', ?, ?, ?, ?, 'x')")
        .bind(id)
        .bind(started)
        .bind(&key)
        .bind(state)
        .bind(bytes)
        .execute(s.pool())
        .await
        .unwrap();
    objects.put(&object_store::path::Path::from(key.as_str()), b"RIFF".to_vec().into()).await.unwrap();
}

#[tokio::test]
async fn purge_by_age_then_by_quota_oldest_first() {
    let (_dir, s, o) = store().await;
    let now = crate::store::unix_ms();
    let day = 86_400_000;
    row(&s, "000000000000000a", "stored", now - 400 * day, 100, o.as_ref()).await;
    row(&s, "000000000000000b", "stored", now - 3 * day, 600 << 10, o.as_ref()).await;
    row(&s, "000000000000000c", "interrupted", now - 2 * day, 300 << 10, o.as_ref()).await;
    row(&s, "000000000000000d", "stored", now - day, 600 << 10, o.as_ref()).await;
    row(&s, "000000000000000e", "recording", now - 500 * day, 0, o.as_ref()).await;
    let r = purge::purge(&s, o.as_ref(), now, "system").await.unwrap();
    assert_eq!((r.by_age, r.by_quota), (1, 0), "365 days by default, no quota");
    s.set_setting(crate::store::SETTING_RECORDING_QUOTA_MB, "1").await.unwrap();
    let r = purge::purge(&s, o.as_ref(), now, "system").await.unwrap();
    assert_eq!((r.by_age, r.by_quota, r.errors), (0, 1, 0));
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM recordings ORDER BY id").fetch_all(s.pool()).await.unwrap();
    assert_eq!(left, ["000000000000000c", "000000000000000d", "000000000000000e"], "the oldest beyond 1 MB went; one still recording stays");
    for (id, started) in [("000000000000000a", now - 400 * day), ("000000000000000b", now - 3 * day)] {
        let key = object_store::path::Path::from(object_key(id, started).as_str());
        assert!(matches!(o.head(&key).await, Err(object_store::Error::NotFound { .. })), "{id}'s audio deleted");
    }
    let audit: Vec<String> = sqlx::query_scalar("SELECT target FROM audit_log WHERE action = 'recording_purged' ORDER BY id").fetch_all(s.pool()).await.unwrap();
    assert_eq!(audit, ["000000000000000a", "000000000000000b"]);
}

#[tokio::test]
async fn the_spool_sweep_stores_what_a_stopped_server_left() {
    let (dir, s, o) = store().await;
    let spool = spool_dir(dir.path());
    std::fs::create_dir_all(&spool).unwrap();
    let now = crate::store::unix_ms();
    for id in ["00000000000000a1", "00000000000000a2"] {
        sqlx::query("INSERT INTO recordings (id, call_id, started_at, object_key) VALUES (?, 'c', ?, ?)").bind(id).bind(now).bind(object_key(id, now)).execute(s.pool()).await.unwrap();
    }
    // a1's file: the header as written at the start, then 1001 bytes.
    let path = spool.join("00000000000000a1.wav");
    let mut bytes = wav_header(0).to_vec();
    bytes.extend(std::iter::repeat_n(0x55u8, 1001));
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(spool.join("not-a-recording.tmp"), b"x").unwrap();
    let left = upload::sweep_spool(&s, &spool).await.unwrap();
    assert_eq!(left, vec![("00000000000000a1".to_string(), path.clone(), 500)]);
    let fixed = std::fs::read(&path).unwrap();
    assert_eq!(parse_header(&fixed), Some((2, 7, 58, 1000)));
    let states: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM recordings ORDER BY id").fetch_all(s.pool()).await.unwrap();
    assert_eq!(states, [("00000000000000a1".into(), "interrupted".into()), ("00000000000000a2".into(), "failed".into())]);
    upload::Uploads::new(s.clone(), o.clone()).upload_until_done("00000000000000a1", &path, 500, "interrupted").await;
    assert!(!path.exists(), "the spool file goes once stored");
    let (state, n, sha, ms): (String, i64, String, i64) = sqlx::query_as("SELECT state, bytes, sha256, duration_ms FROM recordings WHERE id = '00000000000000a1'").fetch_one(s.pool()).await.unwrap();
    use sha2::Digest;
    assert_eq!((state.as_str(), n, ms), ("interrupted", 1058, 62));
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&fixed)));
    let stored = o.get(&object_store::path::Path::from(object_key("00000000000000a1", now).as_str())).await.unwrap().bytes().await.unwrap();
    assert_eq!(&stored[..], &fixed[..]);
}

#[tokio::test]
async fn a_recorder_takes_a_call_to_stored() {
    let (dir, s, o) = store().await;
    let rec = Recorder::start(s.clone(), dir.path(), o.clone()).await.unwrap();
    let mut tap = rec.begin("0123456789abcdef", "1001", "1002", "1001").await.unwrap();
    let id = tap.recording_id().to_string();
    let t0 = tap.started();
    for step in 0..50u32 {
        let at = t0 + Duration::from_millis(u64::from(step) * 20);
        tap.packet(Channel::Caller, at, Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 1, &ulaw(&tone(A, step as usize * 160, 160))));
        tap.packet(Channel::Callee, at, Codec::Pcmu, 0, &rtp(0, step as u16, step * 160, 2, &ulaw(&tone(B, step as usize * 160, 160))));
    }
    tap.finish();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, bytes): (String, i64) = sqlx::query_as("SELECT state, bytes FROM recordings WHERE id = ?").bind(&id).fetch_one(s.pool()).await.unwrap();
        if state == "stored" {
            assert_eq!(bytes, 58 + 16_000);
            break;
        }
        assert!(Instant::now() < deadline, "still {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (caller, callee, format, channels): (String, String, String, String) = sqlx::query_as("SELECT caller, callee, format, channels FROM recordings WHERE id = ?").bind(&id).fetch_one(s.pool()).await.unwrap();
    assert_eq!((caller.as_str(), callee.as_str(), format.as_str(), channels.as_str()), ("1001", "1002", FORMAT, CHANNELS));
    assert!(std::fs::read_dir(spool_dir(dir.path())).unwrap().next().is_none(), "the spool is empty");
}
