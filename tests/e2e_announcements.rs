//! Announcements through the admin API and the command line against a
//! running PBX: a WAV upload comes back as 8 kHz mono, an unreadable upload
//! is refused with 422 and the old audio is still served, text is spoken
//! by espeak-ng, an announcement in use cannot be removed, hold music and
//! greetings are set per number, and every change is in the audit log.

mod common;
#[path = "common/api.rs"]
mod api;

use api::{request, Admin, Answer};
use common::{cli, cli_unchecked, Sandbox, Server};
use serde_json::json;

const NEW_PW: &str = "a-long-new-password-1";

fn root(s: &Server) -> Admin {
    let out = cli(&s.data, &["admin", "add", "root", "--role", "system", "--rights", ""]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pw = text.lines().find_map(|l| l.strip_prefix("one-time password: ")).unwrap_or_else(|| panic!("no password in {text:?}")).trim().to_string();
    let mut a = Admin::new(s.http_addr(), "root", &pw);
    a.sign_in(NEW_PW);
    a
}

fn upload(a: &Admin, path: &str, bytes: &[u8]) -> Answer {
    let cookie = format!("tsunagu_session={}", a.cookie.clone().unwrap());
    request(a.addr, "POST", path, &[("Cookie", &cookie), ("X-CSRF-Token", &a.csrf), ("Content-Type", "application/octet-stream")], bytes)
}

/// 1 s of a 440 Hz tone at 16 kHz, 16-bit mono, between 0.3 s of silence.
fn tone_wav() -> Vec<u8> {
    let rate = 16000u32;
    let samples: Vec<i16> = (0..rate as usize * 16 / 10)
        .map(|n| if (4800..20800).contains(&n) { ((2.0 * std::f64::consts::PI * 440.0 * n as f64 / f64::from(rate)).sin() * 8000.0) as i16 } else { 0 })
        .collect();
    tsunagu_media::codec::write_wav_pcm16(rate, &samples)
}

#[test]
fn announcements_upload_speak_use_and_remove() {
    let sb = Sandbox::new("announcements");
    let s = Server::start(&sb);
    let sys = root(&s);

    // A WAV upload is stored as 8 kHz mono 16-bit, silence trimmed.
    let r = upload(&sys, "/api/v1/announcements/welcome/audio?label=%E6%A1%88%E5%86%85", &tone_wav());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["name"].as_str(), v["source"].as_str(), v["label"].as_str()), (Some("welcome"), Some("upload"), Some("案内")));
    assert!((v["seconds"].as_f64().unwrap() - 1.1).abs() < 0.05, "{v}");
    let audio = sys.get("/api/v1/announcements/welcome/audio");
    assert_eq!(audio.status, 200);
    assert_eq!(audio.header("content-type"), Some("audio/wav"));
    let (rate, samples) = tsunagu_media::codec::read_wav_pcm16(&audio.body).expect("a 16-bit mono WAV");
    assert_eq!(rate, 8000);
    assert!((samples.len() as i64 - 8800).abs() < 40, "{} samples", samples.len());
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((23000..=23400).contains(&peak), "peak {peak} (about -3 dBFS)");

    // Garbage: 422 naming the problem; the stored audio is untouched.
    let r = upload(&sys, "/api/v1/announcements/welcome/audio", b"this is not audio at all");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"], "not a WAV, MP3 or Ogg Opus file");
    let r = upload(&sys, "/api/v1/announcements/welcome/audio", &tone_wav()[..30]);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().starts_with("WAV: "), "{}", r.text());
    assert_eq!(sys.get("/api/v1/announcements/welcome/audio").body, audio.body, "the old audio is still served");
    let r = upload(&sys, "/api/v1/announcements/Bad%20Name/audio", &tone_wav());
    assert_eq!(r.status, 400, "{}", r.text());

    // Spoken by espeak-ng (installed by scripts/setup.sh).
    let r = sys.call("PUT", "/api/v1/announcements/notice", Some(&json!({ "label": "録音", "text": "このつうわは、ろくおんされます。", "voice": "ja" })));
    if r.status == 503 {
        eprintln!("espeak-ng is missing, the spoken part is skipped: {}", r.text());
    } else {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["source"], "tts");
        assert!(r.json()["seconds"].as_f64().unwrap() > 1.0, "{}", r.text());
        let r = sys.call("PUT", "/api/v1/announcements/notice", Some(&json!({ "text": "", "voice": "ja" })));
        assert_eq!(r.status, 400, "{}", r.text());
        // espeak-ng cannot read kanji: refused with the way out.
        let r = sys.call("PUT", "/api/v1/announcements/notice", Some(&json!({ "text": "この通話は録音されます。" })));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("hiragana"), "{}", r.text());
    }

    // In use by a number (destination and hold music): not removable.
    let r = sys.call("PUT", "/api/v1/dids/0312345678", Some(&json!({ "dest": "announcement:welcome", "moh": "welcome" })));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["moh"], "welcome");
    let r = sys.call("PUT", "/api/v1/dids/0312345679", Some(&json!({ "dest": "user:1001", "greeting": "nothing-here" })));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no announcement named nothing-here"));
    // The web app's body (no media fields) keeps them.
    assert_eq!(sys.call("PUT", "/api/v1/dids/0312345678", Some(&json!({ "dest": "announcement:welcome", "label": "代表" }))).status, 200);
    let dids = sys.get("/api/v1/dids").json();
    assert_eq!(dids[0]["moh"], "welcome", "{dids}");
    let r = sys.call("DELETE", "/api/v1/announcements/welcome", None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("DID 0312345678 (destination)") && r.text().contains("DID 0312345678 (hold music)"), "{}", r.text());

    // The setting music_on_hold names an existing announcement.
    assert_eq!(sys.call("PUT", "/api/v1/settings/music_on_hold", Some(&json!({ "value": "nothing-here" }))).status, 400);
    assert_eq!(sys.call("PUT", "/api/v1/settings/music_on_hold", Some(&json!({ "value": "welcome" }))).status, 200);
    let settings = sys.get("/api/v1/settings").json();
    let moh = settings.as_array().unwrap().iter().find(|s| s["key"] == "music_on_hold").expect("listed");
    assert_eq!((moh["value"].as_str(), moh["default"].as_str()), (Some("welcome"), Some("hold-music")));

    // The list says who uses what; the command line sees the same.
    let list = sys.get("/api/v1/announcements").json();
    let welcome = list.as_array().unwrap().iter().find(|a| a["name"] == "welcome").expect("listed");
    assert!(welcome["used_by"].as_array().unwrap().iter().any(|u| u == "setting music_on_hold"), "{welcome}");
    let out = String::from_utf8_lossy(&cli(&s.data, &["announcement", "list"]).stdout).into_owned();
    assert!(out.lines().any(|l| l.starts_with("welcome\tupload\t1.1s\t案内")), "{out}");
    let exported = sb.file("welcome-out.wav");
    cli(&s.data, &["announcement", "export", "welcome", exported.to_str().unwrap()]);
    assert_eq!(std::fs::read(&exported).unwrap(), audio.body);
    // A bad file from the command line: an error naming it, nothing changed.
    let junk = sb.file("junk.mp3");
    std::fs::write(&junk, b"ID3\x04\0\0\0\0\0\x01garbage").unwrap();
    let out = cli_unchecked(&s.data, &["announcement", "add", "welcome", "--file", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MP3"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sys.get("/api/v1/announcements/welcome/audio").body, audio.body);

    // Once unused it goes, file and all.
    assert_eq!(sys.call("PUT", "/api/v1/settings/music_on_hold", Some(&json!({ "value": "hold-music" }))).status, 200);
    assert_eq!(sys.call("DELETE", "/api/v1/dids/0312345678", None).status, 204);
    assert_eq!(sys.call("DELETE", "/api/v1/announcements/welcome", None).status, 204);
    assert_eq!(sys.get("/api/v1/announcements/welcome/audio").status, 404);
    assert!(!s.data.join("announcements/welcome.wav").exists());

    // Every change is audited.
    let log = sys.get("/api/v1/audit?limit=50").json();
    let actions: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"announcement_added") && actions.contains(&"announcement_removed"), "{actions:?}");

    // A reader lists but does not change.
    let r = sys.call("POST", "/api/v1/admins", Some(&json!({ "name": "ro", "role": "readonly" })));
    assert_eq!(r.status, 201, "{}", r.text());
    let mut ro = Admin::new(sys.addr, "ro", r.json()["one_time_password"].as_str().unwrap());
    ro.sign_in(NEW_PW);
    assert_eq!(ro.get("/api/v1/announcements").status, 200);
    assert_eq!(upload(&ro, "/api/v1/announcements/x/audio", &tone_wav()).status, 403);
}
