//! Call recording from the store's side, without SIP: a Recorder and its
//! Tap fed synthetic RTP (tone A from the caller, tone B from the callee)
//! write a recording into a data directory, then the real server on that
//! directory serves it: an auditor downloads the stored stereo file (tone
//! A left, tone B right) and the download is in the access log; a system
//! admin without the recordings right gets 403; an organisation admin with
//! the right plays it (16-bit PCM, with Range) but may not download it.

mod common;
#[path = "common/api.rs"]
mod api;

use api::Admin;
use common::audio::tone_power;
use common::{cli, free_tcp_port, require_tool, wait_for, ChildGuard, Sandbox, Server};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagu_media::codec::{ulaw_decode, ulaw_encode, Codec};
use tsunagu_server::recording::{storage, Channel, Recorder};
use tsunagu_server::store::SqliteStore;

const NEW_PW: &str = "a-long-new-password-1";
const TONE_A: f32 = 440.0;
const TONE_B: f32 = 1300.0;
const CALL: &str = "00c0ffee00c0ffee";

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn tone(freq: f32, from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| ulaw_encode(((i as f32 * freq * std::f32::consts::TAU / 8000.0).sin() * 10_000.0) as i16)).collect()
}

/// Record a 2-second call into `data` (kept in the store `url` names,
/// with `AWS_*` settings from `env`); returns the recording id once the
/// row says `stored`.
fn record_a_call(data: &std::path::Path, url: Option<&str>, env: &[(&str, &str)]) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(data, "tsunagu").await.unwrap());
        sqlx::query("INSERT INTO calls (id, direction, caller, callee, started_at, result) VALUES (?, 'internal', '1001', '1002', ?, 'answered')")
            .bind(CALL)
            .bind(tsunagu_server::store::unix_ms())
            .execute(store.pool())
            .await
            .unwrap();
        let objects = storage::open_with_env(url, data, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let rec = Recorder::start(store.clone(), data, objects).await.unwrap();
        let mut tap = rec.begin(CALL, "1001", "1002", "1001").await.unwrap();
        let id = tap.recording_id().to_string();
        let t0 = tap.started();
        for step in 0..100u32 {
            let at = t0 + Duration::from_millis(u64::from(step) * 20);
            let n = step as usize * 160;
            tap.packet(Channel::Caller, at, Codec::Pcmu, 0, &rtp(step as u16, 4000 + step * 160, 0xAAAA, &tone(TONE_A, n, 160)));
            tap.packet(Channel::Callee, at, Codec::Pcmu, 0, &rtp(step as u16, 9 + step * 160, 0xBBBB, &tone(TONE_B, n, 160)));
            if step % 50 == 49 {
                tap.tick();
            }
        }
        tap.finish();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state: String = sqlx::query_scalar("SELECT state FROM recordings WHERE id = ?").bind(&id).fetch_one(store.pool()).await.unwrap();
            if state == "stored" {
                break;
            }
            assert!(Instant::now() < deadline, "the recording is still {state} after 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.pool().close().await;
        id
    })
}

fn admin(s: &Server, name: &str, role: &str, rights: &str) -> Admin {
    let out = cli(&s.data, &["admin", "add", name, "--role", role, "--rights", rights]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pw = text.lines().find_map(|l| l.strip_prefix("one-time password: ")).unwrap_or_else(|| panic!("no password in {text:?}")).trim().to_string();
    let mut a = Admin::new(s.http_addr(), name, &pw);
    a.sign_in(NEW_PW);
    a
}

/// (left, right) as linear samples of a stereo WAV: µ-law (format 7) or
/// 16-bit PCM.
fn channels(wav: &[u8]) -> (Vec<i16>, Vec<i16>) {
    let (ch, tag, off, len) = tsunagu_server::recording::writer::parse_header(wav).expect("a WAV header");
    assert_eq!(ch, 2, "stereo");
    let data = &wav[off..(off + len).min(wav.len())];
    let frames: Vec<(i16, i16)> = match tag {
        7 => data.chunks_exact(2).map(|f| (ulaw_decode(f[0]), ulaw_decode(f[1]))).collect(),
        1 => data.chunks_exact(4).map(|f| (i16::from_le_bytes([f[0], f[1]]), i16::from_le_bytes([f[2], f[3]]))).collect(),
        t => panic!("format {t}"),
    };
    frames.into_iter().unzip()
}

fn assert_tones(wav: &[u8]) {
    let (l, r) = channels(wav);
    assert_eq!(l.len(), 16_000, "2 s");
    let (l, r) = (&l[800..15_200], &r[800..15_200]);
    assert!(tone_power(l, 8000, TONE_A) > 50.0 * tone_power(l, 8000, TONE_B), "tone A on the left");
    assert!(tone_power(r, 8000, TONE_B) > 50.0 * tone_power(r, 8000, TONE_A), "tone B on the right");
}

#[test]
fn recordings_are_stored_and_only_the_right_people_hear_or_copy_them() {
    let sb = Sandbox::new("recording-store");
    let id = record_a_call(&sb.data(), None, &[]);
    let s = Server::start(&sb);
    let auditor = admin(&s, "auditor", "auditor", "recordings");
    let sys = admin(&s, "root", "system", "");
    let org = admin(&s, "org", "org", "recordings");

    // Listed with the call record's parties and its state.
    let list = auditor.get("/api/v1/recordings");
    assert_eq!(list.status, 200, "{}", list.text());
    let rows = list.json();
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not listed: {rows}"));
    assert_eq!((row["state"].as_str(), row["call_id"].as_str(), row["caller"].as_str(), row["callee"].as_str()), (Some("stored"), Some(CALL), Some("1001"), Some("1002")));
    assert_eq!((row["direction"].as_str(), row["format"].as_str(), row["bytes"].as_i64()), (Some("internal"), Some("wav-ulaw-stereo"), Some(58 + 32_000)));

    // The auditor downloads the file as stored.
    let dl = auditor.get(&format!("/api/v1/recordings/{id}/download"));
    assert_eq!(dl.status, 200, "{}", dl.text());
    assert!(dl.header("content-disposition").unwrap_or("").starts_with("attachment"), "{:?}", dl.headers);
    use sha2::Digest;
    assert_eq!(dl.header("x-content-sha256"), Some(hex::encode(sha2::Sha256::digest(&dl.body)).as_str()));
    assert_tones(&dl.body);
    let log = auditor.get("/api/v1/recordings/access-log").json();
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "download" && e["actor"] == "auditor" && e["recording"] == id.as_str()), "{log}");

    // A system admin without the right: nothing.
    for what in ["audio", "download"] {
        assert_eq!(sys.get(&format!("/api/v1/recordings/{id}/{what}")).status, 403, "{what}");
    }
    assert_eq!(sys.get("/api/v1/recordings").status, 403);

    // An organisation admin with the right plays (16-bit PCM, seekable)
    // but does not take a copy.
    let play = org.get(&format!("/api/v1/recordings/{id}/audio"));
    assert_eq!(play.status, 200, "{}", play.text());
    assert_eq!(play.body.len(), 44 + 64_000);
    assert_tones(&play.body);
    let part = api::request(
        s.http_addr(),
        "GET",
        &format!("/api/v1/recordings/{id}/audio"),
        &[("Cookie", &format!("tsunagu_session={}", org.cookie.clone().unwrap())), ("Range", "bytes=41-1000")],
        b"",
    );
    assert_eq!(part.status, 206, "{}", part.text());
    assert_eq!(part.header("content-range"), Some("bytes 41-1000/64044"));
    assert_eq!(&part.body[..], &play.body[41..=1000], "a range is the same bytes as the whole");
    assert_eq!(org.get(&format!("/api/v1/recordings/{id}/download")).status, 403);
    let log = auditor.get("/api/v1/recordings/access-log").json();
    let plays = log.as_array().unwrap().iter().filter(|e| e["action"] == "play" && e["actor"] == "org").count();
    assert_eq!(plays, 1, "two requests within 10 minutes are one play: {log}");
    assert_eq!(auditor.get("/api/v1/recordings/0000000000000000/audio").status, 404);
}

/// The same through an S3-compatible store: moto's standalone server on
/// loopback (installed by scripts/setup.sh).
#[test]
fn recordings_go_to_an_s3_compatible_store() {
    let moto = require_tool("moto_server", "python3-pip && pip install 'moto[server]'");
    let sb = Sandbox::new("recording-s3");
    let port = free_tcp_port();
    let log = std::fs::File::create(sb.file("moto.log")).unwrap();
    let child = std::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start moto_server");
    let _moto = ChildGuard::new("moto_server", child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("moto_server to listen", Duration::from_secs(30), || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok());
    let made = api::request(addr, "PUT", "/tsunagu", &[], b"");
    assert_eq!(made.status, 200, "create the bucket: {}", made.text());
    let endpoint = format!("http://{addr}");
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let id = record_a_call(&sb.data(), Some("s3://tsunagu/pbx"), &env);
    let listed = api::request(addr, "GET", "/tsunagu?list-type=2&prefix=pbx/recordings/", &[], b"").text();
    assert!(listed.contains(&format!("/{id}.wav</Key>")), "the object is in the bucket: {listed}");
    assert!(!sb.data().join("objects").join("recordings").exists(), "nothing in the local folder");

    let mut server_env = env.to_vec();
    server_env.push(("TSUNAGU_STORAGE_URL", "s3://tsunagu/pbx"));
    let s = Server::start_with_env(&sb, &server_env);
    let auditor = admin(&s, "auditor", "auditor", "recordings");
    let dl = auditor.get(&format!("/api/v1/recordings/{id}/download"));
    assert_eq!(dl.status, 200, "{}", dl.text());
    assert_tones(&dl.body);
    let play = auditor.get(&format!("/api/v1/recordings/{id}/audio"));
    assert_eq!(play.status, 200, "{}", play.text());
    assert_tones(&play.body);
}
