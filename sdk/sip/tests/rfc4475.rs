//! The 49 RFC 4475 torture messages (copied byte-exact into tests/rfc4475 of
//! the repository), each checked for the handling INDEX.tsv describes. Where
//! the RFC allows a lenient or a strict answer we take the strict one and
//! answer 400 (lwsstart, trws, badaspec, baddn, lwsruri, badbranch).

use tsunagu_sip::message::UriScheme;
use tsunagu_sip::register::{parse_register, ContactRequest};
use tsunagu_sip::validate::{check_request, UasPolicy};
use tsunagu_sip::{parse_message, Framing, Limits, Message};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A request processed normally (no rejection by parse or UAS checks).
    Accepted,
    /// A request answered with this status (by the parser or the UAS checks).
    Rejected(u16),
    /// A response that parses.
    Response(u16),
    /// A response that does not parse: dropped, never answered.
    Discarded,
}
use Outcome::*;

const EXPECTED: &[(&str, Outcome)] = &[
    ("wsinv.dat", Accepted),
    ("intmeth.dat", Rejected(501)),
    ("esc01.dat", Accepted),
    ("escnull.dat", Accepted),
    ("esc02.dat", Rejected(501)),
    ("lwsdisp.dat", Accepted),
    ("longreq.dat", Accepted),
    ("dblreq.dat", Accepted),
    ("semiuri.dat", Accepted),
    ("transports.dat", Accepted),
    ("mpart01.dat", Accepted),
    ("unreason.dat", Response(200)),
    ("noreason.dat", Response(100)),
    ("badinv01.dat", Rejected(400)),
    ("clerr.dat", Rejected(400)),
    ("ncl.dat", Rejected(400)),
    ("scalar02.dat", Rejected(400)),
    ("scalarlg.dat", Discarded),
    ("quotbal.dat", Rejected(400)),
    ("ltgtruri.dat", Rejected(400)),
    ("lwsruri.dat", Rejected(400)),
    ("lwsstart.dat", Rejected(400)),
    ("trws.dat", Rejected(400)),
    ("escruri.dat", Rejected(400)),
    ("baddate.dat", Accepted),
    ("regbadct.dat", Rejected(400)),
    ("badaspec.dat", Rejected(400)),
    ("baddn.dat", Rejected(400)),
    ("badvers.dat", Rejected(505)),
    ("mismatch01.dat", Rejected(400)),
    ("mismatch02.dat", Rejected(501)),
    ("bigcode.dat", Discarded),
    ("badbranch.dat", Rejected(400)),
    ("insuf.dat", Rejected(400)),
    ("unkscm.dat", Rejected(416)),
    ("novelsc.dat", Rejected(416)),
    ("unksm2.dat", Rejected(400)),
    ("bext01.dat", Rejected(420)),
    ("invut.dat", Rejected(415)),
    ("regaut01.dat", Accepted),
    ("multi01.dat", Rejected(400)),
    ("mcl01.dat", Rejected(400)),
    ("bcast.dat", Response(200)),
    ("zeromf.dat", Accepted),
    ("cparam01.dat", Accepted),
    ("cparam02.dat", Accepted),
    ("regescrt.dat", Accepted),
    ("sdp01.dat", Rejected(406)),
    ("inv2543.dat", Accepted),
];

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn outcome(bytes: &[u8]) -> Outcome {
    match parse_message(bytes, Framing::Datagram, &Limits::default()) {
        Err(e) => match e.stateless_response() {
            Some(resp) => {
                let text = String::from_utf8_lossy(&resp);
                Rejected(text[8..11].parse().expect("status code"))
            }
            None => Discarded,
        },
        Ok(Message::Response(r)) => Response(r.code),
        Ok(Message::Request(req)) => {
            if let Err(rej) = check_request(&req, &UasPolicy::default()) {
                return Rejected(rej.code);
            }
            if req.method == "REGISTER" {
                if let Err(rej) = parse_register(&req) {
                    return Rejected(rej.code);
                }
            }
            Accepted
        }
    }
}

#[test]
fn index_lists_all_49_and_hashes_match() {
    let index = std::fs::read_to_string(corpus_dir().join("INDEX.tsv")).unwrap();
    let rows: Vec<&str> = index.lines().skip(1).collect();
    assert_eq!(rows.len(), 49);
    for row in rows {
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(EXPECTED.iter().any(|(f, _)| *f == cols[0]), "{} has no expectation", cols[0]);
        let bytes = load(cols[0]);
        assert_eq!(bytes.len().to_string(), cols[5], "{} size (line endings rewritten?)", cols[0]);
    }
}

#[test]
fn every_message_gets_its_handling() {
    let mut wrong = Vec::new();
    for (file, expected) in EXPECTED {
        let got = outcome(&load(file));
        if got != *expected {
            wrong.push(format!("{file}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn request(file: &str) -> tsunagu_sip::Request {
    match parse_message(&load(file), Framing::Datagram, &Limits::default()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{file} is a response"),
    }
}

#[test]
fn valid_messages_keep_their_details() {
    let wsinv = request("wsinv.dat");
    assert_eq!(wsinv.body.len(), 150);
    assert_eq!(wsinv.core.vias.len(), 3);
    assert_eq!(wsinv.core.to.user().as_deref(), Some("vivekg"));

    let longreq = request("longreq.dat");
    assert_eq!(longreq.core.vias.len(), 34);

    let semi = request("semiuri.dat");
    assert_eq!(semi.uri.user.as_deref(), Some("user;par=u@example.net"));

    let esc01 = request("esc01.dat");
    assert_eq!(esc01.uri.user.as_deref(), Some("sips:user@example.com"));
    assert_eq!(esc01.core.to.user().as_deref(), Some("user"));

    let mpart = request("mpart01.dat");
    assert_eq!(mpart.body.len(), 553);

    let dbl = request("dblreq.dat");
    assert_eq!(dbl.method, "REGISTER");
    assert!(dbl.body.is_empty());

    let inv = request("inv2543.dat");
    assert!(inv.core.top_branch().is_none());
    assert!(inv.core.from.tag.is_none());
    assert!(!inv.body.is_empty(), "no Content-Length over UDP: the body is the rest");

    let zero = request("zeromf.dat");
    assert_eq!(zero.core.max_forwards, Some(0));

    let unk = match parse_message(&load("unkscm.dat"), Framing::Datagram, &Limits::default()).unwrap() {
        Message::Request(r) => r,
        _ => unreachable!(),
    };
    assert!(matches!(unk.uri.scheme, UriScheme::Other(_)));
}

#[test]
fn escaped_nulls_make_two_distinct_bindings() {
    let req = request("escnull.dat");
    let (ContactRequest::Bindings(b), _) = parse_register(&req).unwrap() else { panic!("bindings") };
    assert_eq!(b.len(), 2);
    assert_ne!(b[0].device_key(), b[1].device_key());
}

#[test]
fn contact_parameters_land_where_the_brackets_say() {
    let (ContactRequest::Bindings(b), _) = parse_register(&request("cparam01.dat")).unwrap() else { panic!() };
    assert_eq!(b[0].uri, "sip:+19725552222@gw1.example.net");
    let (ContactRequest::Bindings(b), _) = parse_register(&request("cparam02.dat")).unwrap() else { panic!() };
    assert!(b[0].uri.contains("unknownparam"), "{}", b[0].uri);
    let (ContactRequest::Bindings(b), _) = parse_register(&request("regescrt.dat")).unwrap() else { panic!() };
    assert!(b[0].uri.contains("?Route="), "{}", b[0].uri);
}

#[test]
fn rejections_carry_their_extra_headers() {
    let bext = request("bext01.dat");
    let rej = check_request(&bext, &UasPolicy::default()).unwrap_err();
    let unsupported = &rej.headers.iter().find(|(n, _)| n == "Unsupported").unwrap().1;
    assert!(unsupported.contains("nothingSupportsThis") && unsupported.contains("nothingSupportsThisEither"), "{unsupported}");
    let invut = request("invut.dat");
    let rej = check_request(&invut, &UasPolicy::default()).unwrap_err();
    assert!(rej.headers.iter().any(|(n, _)| n == "Accept"));
}

#[test]
fn unknown_authorization_scheme_is_no_credentials() {
    let req = request("regaut01.dat");
    let auth = req.headers.get_raw(&tsunagu_sip::Name::AUTHORIZATION).next().unwrap();
    assert!(tsunagu_sip::digest::parse_authorization(auth).is_none());
}

#[test]
fn every_message_survives_stream_framing_too() {
    // On a stream the same bytes either frame and parse or lose framing;
    // nothing panics and nothing waits for ever on a complete buffer.
    for (file, _) in EXPECTED {
        let mut f = tsunagu_sip::StreamFramer::default();
        f.push(&load(file));
        while let Ok(Some(tsunagu_sip::Frame::Message(m))) = f.next_frame() {
            let _ = parse_message(&m, Framing::Stream, &Limits::default());
        }
    }
}
