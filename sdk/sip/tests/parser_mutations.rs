//! A deterministic fuzz smoke test for CI (cargo-fuzz needs nightly): every
//! RFC 4475 message is mutated a few hundred ways and fed to every parser
//! entry point. The test fails if anything panics.

use tsunagu_sip::{parse_message, Frame, Framing, Limits, Message, StreamFramer};

/// xorshift64*: fixed seed, same mutations every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b":", b";", b",", b"\"", b"<", b">", b"@", b"%", b"%0", b"\0", b" ", b"\t", b"99999999999999999999", b"-1", b"\xff\xfe", b"SIP/2.0", b"z9hG4bK", b"Content-Length: 5\r\n", b"\r\n\r\n"];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let pos = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = pos.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(pos),
            2 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(pos..pos, ins.iter().copied());
            }
            3 if pos < v.len() => {
                let end = (pos + rng.below(16)).min(v.len());
                v.drain(pos..end);
            }
            _ => {
                let b = rng.next() as u8;
                v.insert(pos, b);
            }
        }
    }
    v
}

fn exercise(data: &[u8]) {
    let limits = Limits::default();
    match parse_message(data, Framing::Datagram, &limits) {
        Ok(Message::Request(req)) => {
            let _ = tsunagu_sip::validate::check_request(&req, &Default::default());
            let _ = tsunagu_sip::register::parse_register(&req);
            for v in req.headers.get_raw(&tsunagu_sip::Name::AUTHORIZATION) {
                let _ = tsunagu_sip::digest::parse_authorization(v);
            }
            let _ = req.to_bytes();
        }
        Ok(Message::Response(resp)) => {
            let _ = resp.to_bytes();
        }
        Err(e) => {
            let _ = e.stateless_response();
        }
    }
    let mut framer = StreamFramer::new(limits.clone());
    for chunk in data.chunks(11) {
        framer.push(chunk);
        while let Ok(Some(Frame::Message(m))) = framer.next_frame() {
            let _ = parse_message(&m, Framing::Stream, &limits);
        }
    }
}

#[test]
fn mutated_torture_messages_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "dat")).collect();
    files.sort();
    assert_eq!(files.len(), 49);
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut runs = 0;
    for f in &files {
        let seed = std::fs::read(f).unwrap();
        exercise(&seed);
        for _ in 0..300 {
            exercise(&mutate(&mut rng, &seed));
            runs += 1;
        }
    }
    assert_eq!(runs, 49 * 300);
}

#[test]
fn oversized_and_degenerate_inputs_are_refused_quickly() {
    let limits = Limits::default();
    let huge = vec![b'a'; limits.max_message_size + 1];
    assert!(parse_message(&huge, Framing::Datagram, &limits).is_err());
    let many_headers: Vec<u8> = std::iter::once(b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec())
        .chain((0..1000).map(|i| format!("X-H{i}: v\r\n").into_bytes()))
        .chain(std::iter::once(b"\r\n".to_vec()))
        .flatten()
        .collect();
    assert!(parse_message(&many_headers, Framing::Datagram, &limits).is_err());
    for d in [&b""[..], b"\r\n", b"\r\n\r\n", b"SIP/2.0", b"INVITE", b"\0\0\0"] {
        exercise(d);
    }
}
