//! Feeds arbitrary bytes to every parser entry point: datagram parsing,
//! stream framing, the UAS checks, REGISTER contacts and digest headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagu_sip::{parse_message, Framing, Limits, Message, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Message::Request(req)) = parse_message(data, Framing::Datagram, &limits) {
        let _ = tsunagu_sip::validate::check_request(&req, &Default::default());
        let _ = tsunagu_sip::register::parse_register(&req);
        for v in req.headers.get_raw(&tsunagu_sip::Name::AUTHORIZATION) {
            let _ = tsunagu_sip::digest::parse_authorization(v);
        }
    }
    if let Err(e) = parse_message(data, Framing::Datagram, &limits) {
        let _ = e.stateless_response();
    }
    let mut framer = StreamFramer::new(limits.clone());
    for chunk in data.chunks(7) {
        framer.push(chunk);
        while let Ok(Some(tsunagu_sip::Frame::Message(m))) = framer.next_frame() {
            let _ = parse_message(&m, Framing::Stream, &limits);
        }
    }
});
