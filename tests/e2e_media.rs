//! Media follows a phone that changes its source address mid-call (NAT
//! rebinding, Wi-Fi ⇄ LTE): the caller here is a raw SIP/RTP client in the
//! test, the callee a real baresip that echoes what it hears. Half-way the
//! caller moves its RTP to a new socket (new port, same SSRC) without any
//! signalling; the echo must come back to the new address at once, carrying
//! the tone the caller sends from there.

mod common;

use common::baresip::{Account, AnswerMode, AudioSource, Baresip};
use common::raw::{digest, RawCaller};
use common::{unique, wait_for, Sandbox, Server};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tsunagu_media::codec::{ulaw_decode, ulaw_encode};

const PASSWORD: &str = "secret-pass-1";

/// 20 ms of a tone as one PCMU RTP packet.
fn rtp(seq: u16, ts: u32, ssrc: u32, freq: f32, sample0: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for n in 0..160 {
        let t = (sample0 + n) as f32 / 8000.0;
        p.push(ulaw_encode(((t * freq * 2.0 * std::f32::consts::PI).sin() * 8000.0) as i16));
    }
    p
}

fn tone_power(samples: &[i16], freq: f32) -> f64 {
    common::audio::tone_power(samples, 8000, freq)
}

#[test]
fn media_follows_a_caller_that_moves_to_a_new_address() {
    let sb = Sandbox::new("media-move");
    let s = Server::start(&sb);
    for ext in ["1001", "1002"] {
        s.cli(&["user", "add", ext, "--password", PASSWORD]);
    }
    let mut echo = Baresip::builder(&sb, "echo")
        .account(Account::new("1002", PASSWORD, s.sip_addr()))
        .answer(AnswerMode::Auto)
        .codecs(&["PCMU"])
        .source(AudioSource::Echo)
        .start();
    echo.registered(Duration::from_secs(10));

    let rtp_old = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_new = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut caller = RawCaller {
        sip: UdpSocket::bind("127.0.0.1:0").unwrap(),
        server: s.sip_addr(),
        call_id: unique("move-"),
        from_tag: unique("ft"),
        to_tag: None,
        cseq: 0,
    };
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        rtp_old.local_addr().unwrap().port()
    );
    caller.invite("1002", &sdp, None);
    let challenge = caller.final_response(Duration::from_secs(5));
    assert_eq!(challenge.status(), Some(407), "{}", challenge.text());
    caller.in_dialog_ack_for_failure(&challenge);
    let auth = digest(challenge.header("proxy-authenticate").unwrap(), &format!("sip:1002@{}", s.sip_addr()), PASSWORD);
    caller.invite("1002", &sdp, Some(auth));
    let ok = caller.final_response(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    caller.to_tag = ok.header("to").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap().to_string());
    caller.in_dialog("ACK", caller.cseq, "1002");
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    let port: u16 = answer.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|l| l.split(' ').next()).unwrap().parse().unwrap();
    let relay: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Stream a 500 Hz tone from the old socket, then (same SSRC, sequence
    // and timestamps going on) an 800 Hz tone from the new one, and collect
    // the echo on each socket.
    let ssrc = 0x5eed_1234;
    let mut received_old: Vec<i16> = Vec::new();
    let mut received_new: Vec<i16> = Vec::new();
    let mut first_new_echo: Option<Duration> = None;
    rtp_old.set_nonblocking(true).unwrap();
    rtp_new.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut moved_at = None;
    let mut buf = [0u8; 2048];
    for i in 0..150u32 {
        let moved = i >= 75;
        let (sock, freq) = if moved { (&rtp_new, 800.0) } else { (&rtp_old, 500.0) };
        if moved && moved_at.is_none() {
            moved_at = Some(Instant::now());
        }
        sock.send_to(&rtp(i as u16, i * 160, ssrc, freq, i as usize * 160), relay).unwrap();
        // Pace at 20 ms, reading whatever echo arrived meanwhile.
        let due = start + Duration::from_millis(20 * (i as u64 + 1));
        while Instant::now() < due {
            for (sock, into, is_new) in [(&rtp_old, &mut received_old, false), (&rtp_new, &mut received_new, true)] {
                while let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if n > 12 {
                        into.extend(buf[12..n].iter().map(|b| ulaw_decode(*b)));
                        if is_new && first_new_echo.is_none() {
                            first_new_echo = moved_at.map(|m| m.elapsed());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    caller.cseq += 1;
    caller.in_dialog("BYE", caller.cseq, "1002");
    let bye_ok = caller.final_response(Duration::from_secs(5));
    assert_eq!(bye_ok.status(), Some(200));

    // Before the move the echo came to the old address and held 500 Hz.
    assert!(received_old.len() > 8000 / 2, "echo before the move: {} samples", received_old.len());
    assert!(tone_power(&received_old, 500.0) > 10.0 * tone_power(&received_old, 800.0), "old address heard the 500 Hz echo");
    // After it, the echo came to the new address at once and held 800 Hz.
    let delay = first_new_echo.expect("no echo at the new address after the move");
    assert!(delay < Duration::from_millis(500), "media took {delay:?} to follow the move");
    assert!(received_new.len() > 8000, "echo after the move: {} samples", received_new.len());
    let tail = &received_new[received_new.len() / 2..];
    assert!(tone_power(tail, 800.0) > 10.0 * tone_power(tail, 500.0), "new address hears the 800 Hz sent from there");
    let _ = wait_for("the call record", Duration::from_secs(5), || {
        let out = s.cli(&["calls", "--csv"]);
        String::from_utf8_lossy(&out.stdout).lines().nth(1).filter(|l| l.contains(",answered,")).map(str::to_string)
    });
    let m = s.metrics();
    assert!(m.contains("tsunagu_media_packets_relayed_total"), "relay metrics present");
}

