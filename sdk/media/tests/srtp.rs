//! SRTP/SRTCP and a=crypto: RFC 3711 test vectors, libSRTP's known answers,
//! an independent Python computation, round trips, tampering, replay,
//! rollover, and garbage input.

use tsunagu_media::srtp::{aes_cm_apply, aes_cm_iv, SessionKeys, SRTCP_TAG_LEN};
use tsunagu_media::{CryptoAttr, MasterKey, MediaError, SrtpContext, SrtpSuite};

const SUITES: [SrtpSuite; 2] = [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AesCm128HmacSha1_32];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

fn key(seed: u8) -> MasterKey {
    let mut b = [0u8; 30];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
    }
    MasterKey::from_bytes(&b)
}

/// A plain RTP packet; `csrcs` and `ext` (profile, words) optional.
fn rtp(seq: u16, ssrc: u32, csrcs: &[u32], ext: Option<(u16, &[u8])>, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80 | csrcs.len() as u8, 0];
    if ext.is_some() {
        p[0] |= 0x10;
    }
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in csrcs {
        p.extend_from_slice(&c.to_be_bytes());
    }
    if let Some((profile, data)) = ext {
        assert_eq!(data.len() % 4, 0);
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(data);
    }
    p.extend_from_slice(payload);
    p
}

fn voice(seq: u16) -> Vec<u8> {
    (0..160u16).map(|i| (i ^ seq) as u8).collect()
}

fn pair(suite: SrtpSuite) -> (SrtpContext, SrtpContext) {
    let k = key(1);
    (SrtpContext::new(suite, &k), SrtpContext::new(suite, &k))
}

// ---- RFC 3711 Appendix B ----

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let session_key: [u8; 16] = arr("2B7E151628AED2A6ABF7158809CF4F3C");
    let session_salt: [u8; 14] = arr("F0F1F2F3F4F5F6F7F8F9FAFBFCFD");
    let iv = aes_cm_iv(&session_salt, 0, 0);
    assert_eq!(iv, arr::<16>("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));

    let mut ks = vec![0u8; 16 * 0xff02];
    aes_cm_apply(&session_key, &iv, &mut ks);
    let block = |n: usize| &ks[16 * n..16 * n + 16];
    assert_eq!(block(0x0000), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(0x0001), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(0x0002), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));

    // Applying the keystream twice gives the data back.
    let mut data = b"counter mode is its own inverse".to_vec();
    aes_cm_apply(&session_key, &iv, &mut data);
    assert_ne!(&data[..], b"counter mode is its own inverse");
    aes_cm_apply(&session_key, &iv, &mut data);
    assert_eq!(&data[..], b"counter mode is its own inverse");
}

#[test]
fn aes_cm_iv_places_ssrc_and_index() {
    // libSRTP's nonce for SSRC 0xcafebabe, index 0x1234 under the B.3 salt.
    let salt: [u8; 14] = arr("30cbbc08863d8c85d49db34a9ae1");
    assert_eq!(aes_cm_iv(&salt, 0xcafebabe, 0x1234), arr::<16>("30cbbc084cc3363bd49db34a88d50000"));
    // The 48-bit index fills bytes 8..14.
    assert_eq!(aes_cm_iv(&[0; 14], 0, 0xffff_ffff_ffff), arr::<16>("0000000000000000ffffffffffff0000"));
}

#[test]
fn rfc3711_b3_key_derivation() {
    let master =
        MasterKey::from_parts(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"), &hex("0EC675AD498AFEEBB6960B3AABE6")).unwrap();
    let keys = SessionKeys::derive(&master);
    assert_eq!(keys.rtp_key, arr::<16>("C61E7A93744F39EE10734AFE3FF7A087"));
    assert_eq!(keys.rtp_salt, arr::<14>("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(keys.rtp_auth, arr::<20>("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    // Labels 3..5 are not in B.3; these were computed independently with
    // Python's `cryptography` AES-CTR using the same PRF definition.
    assert_eq!(keys.rtcp_key, arr::<16>("4c1aa45a81f73d61c800bbb00fbb1eaa"));
    assert_eq!(keys.rtcp_auth, arr::<20>("8d54534feb49ae8e7993a6bd0b844fc323a93dfd"));
    assert_eq!(keys.rtcp_salt, arr::<14>("9581c7ad87b3e530bf3e4454a8b3"));
}

// ---- Interop: libSRTP's srtp_validate() known answers ----

fn libsrtp_key() -> MasterKey {
    MasterKey::from_bytes(&arr("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6"))
}
const LIBSRTP_RTP_PLAIN: &str = "800f1234decafbadcafebabeabababababababababababababababab";
const LIBSRTP_SRTP_80: &str = "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb";
const LIBSRTP_RTCP_PLAIN: &str = "81c8000bcafebabeabababababababababababababababab";
// libSRTP numbers its first SRTCP packet 1; RFC 3711 §3.4 starts at 0.
const LIBSRTP_SRTCP_INDEX1: &str = "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798";

#[test]
fn libsrtp_known_answer_rtp_both_suites() {
    let mut tx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &libsrtp_key());
    assert_eq!(tx.protect_rtp(&hex(LIBSRTP_RTP_PLAIN)).unwrap(), hex(LIBSRTP_SRTP_80));
    let mut rx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &libsrtp_key());
    assert_eq!(rx.unprotect_rtp(&hex(LIBSRTP_SRTP_80)).unwrap(), hex(LIBSRTP_RTP_PLAIN));

    // The 32-bit suite is the same packet with the tag cut to 4 bytes.
    let srtp_32 = hex(LIBSRTP_SRTP_80)[..32].to_vec();
    let mut tx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_32, &libsrtp_key());
    assert_eq!(tx.protect_rtp(&hex(LIBSRTP_RTP_PLAIN)).unwrap(), srtp_32);
    let mut rx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_32, &libsrtp_key());
    assert_eq!(rx.unprotect_rtp(&srtp_32).unwrap(), hex(LIBSRTP_RTP_PLAIN));
}

#[test]
fn libsrtp_known_answer_srtcp() {
    let mut rx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &libsrtp_key());
    assert_eq!(rx.unprotect_rtcp(&hex(LIBSRTP_SRTCP_INDEX1)).unwrap(), hex(LIBSRTP_RTCP_PLAIN));

    // Our first packet carries index 0, the second index 1 = libSRTP's first.
    let mut tx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &libsrtp_key());
    let first = tx.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap();
    assert_eq!(first[first.len() - 14..first.len() - 10], [0x80, 0, 0, 0]);
    assert_eq!(tx.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap(), hex(LIBSRTP_SRTCP_INDEX1));
    // SRTCP keeps the 80-bit tag under the 32-bit suite (RFC 4568 §6.2.1).
    let mut tx32 = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_32, &libsrtp_key());
    tx32.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap();
    assert_eq!(tx32.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap(), hex(LIBSRTP_SRTCP_INDEX1));
}

// ---- Interop: an independent Python (pyca/cryptography + hmac) computation ----
// Master key 01..10, salt 40..4d; RTP with 2 CSRCs and a one-byte-header
// extension, SSRC deadbeef, seq 5 with ROC 1; RR with SRTCP index 0.

fn py_key() -> MasterKey {
    let mut b = [0u8; 30];
    for (i, x) in b.iter_mut().enumerate().take(16) {
        *x = i as u8 + 1;
    }
    for (i, x) in b.iter_mut().skip(16).enumerate() {
        *x = 0x40 + i as u8;
    }
    MasterKey::from_bytes(&b)
}
const PY_RTP_PLAIN: &str = "9280000511223344deadbeef0102030405060708bede000110aa000000070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b5259";
const PY_SRTP_80_ROC1: &str = "9280000511223344deadbeef0102030405060708bede000110aa0000ba39b5d6d1a749ba5aafbfa478c78ac4f3f2508ba2078d6ef53c6943288258973519510e1a4fc2f528907a54f73dadc3b4cf4250f9862645ead327ef801114db625c8516efb2e9862ff09ec9e75a6e0f30d2195e1760460793876e9b4634e1913d5fdb235dd702cfb3a7a655ba87b734933d55c3c20a9185285f2bd08bf3562cbd70af05a22b11c034e9e5c9a309afe36eee5de3875f8b00c9e43da633264d1fd297ccb6acc77b5f5f72";
const PY_RTCP_PLAIN: &str = "81c90007deadbeef000102030405060708090a0b0c0d0e0f1011121314151617";
const PY_SRTCP_0: &str = "81c90007deadbeef160c47cb79f163ed2afa17e54246c79e1fe1b418226bdab68000000012b7c9c5ec1121f687c8";

#[test]
fn python_cross_check_roc1_csrc_extension() {
    let plain = hex(PY_RTP_PLAIN);
    let srtp_80 = hex(PY_SRTP_80_ROC1);
    for suite in SUITES {
        let expected = &srtp_80[..plain.len() + suite.rtp_tag_len()];
        // Take both ends to ROC 0, seq 65535 first; seq 5 then means ROC 1.
        let mut before_wrap = plain.clone();
        before_wrap[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
        let mut tx = SrtpContext::new(suite, &py_key());
        let mut rx = SrtpContext::new(suite, &py_key());
        rx.unprotect_rtp(&tx.protect_rtp(&before_wrap).unwrap()).unwrap();
        assert_eq!(tx.protect_rtp(&plain).unwrap(), expected, "{suite}");
        assert_eq!(tx.send_roc(0xdeadbeef), Some(1));
        assert_eq!(rx.unprotect_rtp(expected).unwrap(), plain, "{suite}");
        assert_eq!(rx.recv_roc(0xdeadbeef), Some(1));

        let mut tx = SrtpContext::new(suite, &py_key());
        assert_eq!(tx.protect_rtcp(&hex(PY_RTCP_PLAIN)).unwrap(), hex(PY_SRTCP_0));
        let mut rx = SrtpContext::new(suite, &py_key());
        assert_eq!(rx.unprotect_rtcp(&hex(PY_SRTCP_0)).unwrap(), hex(PY_RTCP_PLAIN));
    }
}

// ---- Round trips ----

/// CSRCs and an optional (profile, data) header extension.
type Shape<'a> = (&'a [u32], Option<(u16, &'a [u8])>);

#[test]
fn round_trip_both_suites_with_and_without_csrc_and_extension() {
    let ext = [0x10u8, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0];
    for suite in SUITES {
        let (mut tx, mut rx) = pair(suite);
        let shapes: [Shape; 4] = [
            (&[], None),
            (&[0x1111_1111, 0x2222_2222], None),
            (&[], Some((0xbede, &ext))),
            (&[0x3333_3333], Some((0x1000, &ext))),
        ];
        for (i, (csrcs, ext)) in shapes.into_iter().enumerate() {
            let seq = 100 + i as u16;
            let plain = rtp(seq, 0xabcd_0001, csrcs, ext, &voice(seq));
            let header_len = plain.len() - 160;
            let srtp = tx.protect_rtp(&plain).unwrap();
            assert_eq!(srtp.len(), plain.len() + suite.rtp_tag_len());
            // Header, CSRCs and extension stay in the clear; the payload does not.
            assert_eq!(srtp[..header_len], plain[..header_len], "{suite} shape {i}");
            assert_ne!(srtp[header_len..plain.len()], plain[header_len..], "{suite} shape {i}");
            assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain, "{suite} shape {i}");
        }
        // An empty payload is legal RTP and still authenticated.
        let empty = rtp(200, 0xabcd_0001, &[], None, &[]);
        let srtp = tx.protect_rtp(&empty).unwrap();
        assert_eq!(srtp.len(), 12 + suite.rtp_tag_len());
        assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), empty);
    }
}

#[test]
fn one_context_keeps_send_and_receive_state_apart() {
    let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(9));
    let plain = rtp(1, 7, &[], None, &voice(1));
    let srtp = ctx.protect_rtp(&plain).unwrap();
    assert_eq!(ctx.unprotect_rtp(&srtp).unwrap(), plain);
}

#[test]
fn wrong_key_or_wrong_suite_fails_authentication() {
    let plain = rtp(1, 7, &[], None, &voice(1));
    let srtp = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(1)).protect_rtp(&plain).unwrap();
    let mut other_key = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(2));
    assert_eq!(other_key.unprotect_rtp(&srtp), Err(MediaError::SrtpAuthFailed));
    let mut other_suite = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_32, &key(1));
    assert_eq!(other_suite.unprotect_rtp(&srtp), Err(MediaError::SrtpAuthFailed));
}

// ---- Tampering ----

#[test]
fn tampered_payload_header_or_tag_is_rejected_and_changes_nothing() {
    for suite in SUITES {
        let (mut tx, mut rx) = pair(suite);
        let plain = rtp(10, 42, &[5], None, &voice(10));
        let srtp = tx.protect_rtp(&plain).unwrap();
        let payload_bit = 12 + 4 + 3;
        let tag_bit = srtp.len() - 1;
        let header_bit = 3; // the sequence number
        for byte in [payload_bit, tag_bit, header_bit] {
            let mut bad = srtp.clone();
            bad[byte] ^= 0x01;
            assert_eq!(rx.unprotect_rtp(&bad), Err(MediaError::SrtpAuthFailed), "{suite} byte {byte}");
        }
        // Nothing was learnt from the forgeries: no state, and the genuine
        // packet still goes through.
        assert_eq!(rx.recv_roc(42), None);
        assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain);
    }
}

#[test]
fn forged_packet_does_not_move_the_rollover_counter() {
    let (mut tx, mut rx) = pair(SrtpSuite::AesCm128HmacSha1_80);
    for seq in 60000..60010u16 {
        rx.unprotect_rtp(&tx.protect_rtp(&rtp(seq, 1, &[], None, &voice(seq))).unwrap()).unwrap();
    }
    // A forgery with seq 10 would mean ROC 1 if it were believed.
    let mut forged = rtp(10, 1, &[], None, &voice(10));
    forged.extend_from_slice(&[0u8; 10]);
    assert_eq!(rx.unprotect_rtp(&forged), Err(MediaError::SrtpAuthFailed));
    assert_eq!(rx.recv_roc(1), Some(0));
    let next = tx.protect_rtp(&rtp(60010, 1, &[], None, &voice(60010))).unwrap();
    assert!(rx.unprotect_rtp(&next).is_ok());
}

// ---- Replay window ----

#[test]
fn replay_rejected_and_reordering_within_the_window_accepted() {
    for suite in SUITES {
        let (mut tx, mut rx) = pair(suite);
        let packets: Vec<Vec<u8>> =
            (0..200u16).map(|s| tx.protect_rtp(&rtp(s, 9, &[], None, &voice(s))).unwrap()).collect();

        for p in &packets[..100] {
            rx.unprotect_rtp(p).unwrap();
        }
        // An exact replay, of the newest and of an older one.
        assert_eq!(rx.unprotect_rtp(&packets[99]), Err(MediaError::SrtpReplay { index: 99 }));
        assert_eq!(rx.unprotect_rtp(&packets[60]), Err(MediaError::SrtpReplay { index: 60 }));

        // Out of order: 110 arrives before 101..=109, which are still taken.
        rx.unprotect_rtp(&packets[110]).unwrap();
        for p in packets[101..110].iter().rev() {
            rx.unprotect_rtp(p).unwrap();
        }
        assert!(matches!(rx.unprotect_rtp(&packets[105]), Err(MediaError::SrtpReplay { .. })));
        // 100 was skipped and is 10 behind: still inside the window.
        rx.unprotect_rtp(&packets[100]).unwrap();

        // Jump ahead; 64 behind the newest is outside the window.
        rx.unprotect_rtp(&packets[190]).unwrap();
        assert_eq!(rx.unprotect_rtp(&packets[126]), Err(MediaError::SrtpReplay { index: 126 }));
        rx.unprotect_rtp(&packets[127]).unwrap(); // 63 behind, never seen
    }
}

#[test]
fn protecting_the_same_index_twice_is_refused() {
    // Two payloads under one index would reuse keystream.
    let (mut tx, _) = pair(SrtpSuite::AesCm128HmacSha1_80);
    tx.protect_rtp(&rtp(5, 3, &[], None, &voice(5))).unwrap();
    tx.protect_rtp(&rtp(7, 3, &[], None, &voice(7))).unwrap();
    assert_eq!(tx.protect_rtp(&rtp(5, 3, &[], None, b"other")), Err(MediaError::SrtpReplay { index: 5 }));
    // A late packet that was never sent is fine (relayed reordering).
    tx.protect_rtp(&rtp(6, 3, &[], None, &voice(6))).unwrap();
}

// ---- Rollover ----

#[test]
fn rollover_from_65535_to_0_on_both_ends() {
    for suite in SUITES {
        let (mut tx, mut rx) = pair(suite);
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        let mut sent = Vec::new();
        for &s in &seqs {
            sent.push((s, tx.protect_rtp(&rtp(s, 77, &[], None, &voice(s))).unwrap()));
        }
        assert_eq!(tx.send_roc(77), Some(1));

        // The packet after the wrap is encrypted under index 2^16 + 0.
        let keys = SessionKeys::derive(&key(1));
        let (_, after_wrap) = &sent[6];
        let mut payload = after_wrap[12..12 + 160].to_vec();
        aes_cm_apply(&keys.rtp_key, &aes_cm_iv(&keys.rtp_salt, 77, 0x1_0000), &mut payload);
        assert_eq!(payload, voice(0));

        // The receiver follows, even with the packets around the wrap
        // swapped: 0 (ROC 1) before 65535 (ROC 0).
        let order = [0usize, 1, 2, 3, 4, 6, 5, 7, 8, 9, 10, 11];
        for i in order {
            let (s, p) = &sent[i];
            assert_eq!(rx.unprotect_rtp(p).unwrap(), rtp(*s, 77, &[], None, &voice(*s)), "{suite} seq {s}");
        }
        assert_eq!(rx.recv_roc(77), Some(1));
    }
}

#[test]
fn rollover_counter_is_per_ssrc() {
    let (mut tx, mut rx) = pair(SrtpSuite::AesCm128HmacSha1_80);
    for s in [65534u16, 65535, 0, 1] {
        rx.unprotect_rtp(&tx.protect_rtp(&rtp(s, 1, &[], None, &voice(s))).unwrap()).unwrap();
    }
    for s in [1000u16, 1001] {
        rx.unprotect_rtp(&tx.protect_rtp(&rtp(s, 2, &[], None, &voice(s))).unwrap()).unwrap();
    }
    assert_eq!((rx.recv_roc(1), rx.recv_roc(2)), (Some(1), Some(0)));
}

// ---- SRTCP ----

fn rtcp_rr(ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 24));
    // A second packet in the compound: SDES with one empty chunk.
    p.extend_from_slice(&[0x81, 202, 0, 1]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

#[test]
fn srtcp_round_trip_index_tamper_and_replay() {
    for suite in SUITES {
        let (mut tx, mut rx) = pair(suite);
        let mut protected = Vec::new();
        for i in 0..5u8 {
            let plain = rtcp_rr(0x5555, i);
            let srtcp = tx.protect_rtcp(&plain).unwrap();
            assert_eq!(srtcp.len(), plain.len() + 4 + SRTCP_TAG_LEN, "{suite}: 80-bit tag for both suites");
            assert_eq!(srtcp[..8], plain[..8]);
            assert_ne!(srtcp[8..plain.len()], plain[8..]);
            let e_index = &srtcp[plain.len()..plain.len() + 4];
            assert_eq!(e_index, [0x80, 0, 0, i]);
            protected.push((plain, srtcp));
        }
        // Reordered delivery is fine.
        for i in [1usize, 0, 2, 4, 3] {
            let (plain, srtcp) = &protected[i];
            assert_eq!(&rx.unprotect_rtcp(srtcp).unwrap(), plain);
        }
        let (_, last) = &protected[4];
        assert_eq!(rx.unprotect_rtcp(last), Err(MediaError::SrtpReplay { index: 4 }));

        let fresh = tx.protect_rtcp(&rtcp_rr(0x5555, 9)).unwrap();
        let n = fresh.len();
        for byte in [12, n - 1, n - 11, 5] {
            // body, tag, E/index, clear SSRC
            let mut bad = fresh.clone();
            bad[byte] ^= 0x01;
            assert!(rx.unprotect_rtcp(&bad).is_err(), "{suite} byte {byte}");
        }
        // Clearing the E flag is caught by the tag too.
        let mut no_e = fresh.clone();
        no_e[n - 14] &= 0x7f;
        assert_eq!(rx.unprotect_rtcp(&no_e), Err(MediaError::SrtpAuthFailed));
        assert_eq!(rx.unprotect_rtcp(&fresh).unwrap(), rtcp_rr(0x5555, 9));
    }
}

#[test]
fn srtcp_rejects_rtp_and_short_input() {
    let (mut tx, _) = pair(SrtpSuite::AesCm128HmacSha1_80);
    assert_eq!(tx.protect_rtcp(&rtp(1, 1, &[], None, b"x")), Err(MediaError::NotRtcp(0)));
    assert!(matches!(tx.protect_rtcp(&[0x81, 200, 0]), Err(MediaError::TooShort { .. })));
    assert!(matches!(tx.protect_rtp(&rtcp_rr(1, 0)), Err(MediaError::IsRtcp(201))));
}

// ---- MKI ----

#[test]
fn mki_is_carried_and_checked() {
    let attr = CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^20|258:4", key(4).to_inline())).unwrap();
    assert_eq!(attr.mki_bytes().unwrap(), Some(vec![0, 0, 1, 2]));
    let mut tx = SrtpContext::from_crypto(&attr).unwrap();
    let mut rx = SrtpContext::from_crypto(&attr).unwrap();
    let plain = rtp(1, 8, &[], None, &voice(1));
    let srtp = tx.protect_rtp(&plain).unwrap();
    assert_eq!(srtp.len(), plain.len() + 4 + 10);
    assert_eq!(srtp[plain.len()..plain.len() + 4], [0, 0, 1, 2]);
    assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain);

    let rtcp = rtcp_rr(8, 1);
    let srtcp = tx.protect_rtcp(&rtcp).unwrap();
    assert_eq!(srtcp.len(), rtcp.len() + 4 + 4 + 10);
    assert_eq!(rx.unprotect_rtcp(&srtcp).unwrap(), rtcp);

    let mut other_mki = SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key(4), &[0, 0, 1, 3]).unwrap();
    assert_eq!(other_mki.unprotect_rtp(&srtp), Err(MediaError::SrtpUnknownMki));
    // A context without MKI reads the MKI as part of a (wrong) tag.
    let mut no_mki = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key(4));
    assert!(no_mki.unprotect_rtp(&srtp).is_err());
    assert!(SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key(4), &[]).is_err());
    assert!(SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key(4), &[0; 129]).is_err());
}

// ---- a=crypto ----

#[test]
fn crypto_attr_parse_print_round_trip() {
    let line = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4";
    let a = CryptoAttr::parse(line).unwrap();
    assert_eq!(a.tag, 1);
    assert_eq!(a.suite, SrtpSuite::AesCm128HmacSha1_80);
    assert_eq!(a.key.to_inline(), "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz");
    assert_eq!(a.key.key(), b"YS___semctl () {");
    assert_eq!(a.lifetime.as_deref(), Some("2^20"));
    assert_eq!(a.lifetime_packets().unwrap(), Some(1 << 20));
    assert_eq!(a.mki.as_deref(), Some("1:4"));
    assert_eq!(a.mki_bytes().unwrap(), Some(vec![0, 0, 0, 1]));
    assert!(a.session_params.is_empty());
    assert_eq!(a.to_value(), line);
    a.check_supported().unwrap();

    let cases = [
        "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        "3 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1048576",
        "4 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|7:1 WSH=128 FEC_ORDER=FEC_SRTP",
        "5 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^31|1:1 KDR=1",
    ];
    for line in cases {
        let a = CryptoAttr::parse(line).unwrap();
        assert_eq!(a.to_value(), line);
        assert_eq!(CryptoAttr::parse(&a.to_value()).unwrap(), a);
    }
    let a = CryptoAttr::parse(cases[2]).unwrap();
    assert_eq!((a.lifetime.as_deref(), a.mki_bytes().unwrap()), (None, Some(vec![7])));
    assert_eq!(a.session_params, ["WSH=128", "FEC_ORDER=FEC_SRTP"]);
    a.check_supported().unwrap();
    assert_eq!(CryptoAttr::parse(cases[1]).unwrap().lifetime_packets().unwrap(), Some(1 << 20));

    // Built by hand, as the B2BUA does for its own offer.
    let ours = CryptoAttr {
        tag: 1,
        suite: SrtpSuite::AesCm128HmacSha1_32,
        key: key(3),
        lifetime: None,
        mki: None,
        session_params: vec![],
    };
    assert_eq!(CryptoAttr::parse(&ours.to_value()).unwrap(), ours);
    assert_eq!(SrtpSuite::from_name("AES_CM_128_HMAC_SHA1_32"), Some(SrtpSuite::AesCm128HmacSha1_32));
    assert_eq!(SrtpSuite::AesCm128HmacSha1_80.name(), "AES_CM_128_HMAC_SHA1_80");
    assert_eq!((SrtpSuite::AesCm128HmacSha1_80.rtp_tag_len(), SrtpSuite::AesCm128HmacSha1_32.rtp_tag_len()), (10, 4));
}

#[test]
fn crypto_attr_unsupported_session_params() {
    let k = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";
    for params in ["KDR=1", "KDR=0", "UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "FOO=1"] {
        let a = CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k} {params}")).unwrap();
        assert!(matches!(a.check_supported(), Err(MediaError::BadCryptoAttr(_))), "{params}");
        assert!(SrtpContext::from_crypto(&a).is_err(), "{params}");
    }
    let optional = CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k} -FOO=1")).unwrap();
    optional.check_supported().unwrap();
}

#[test]
fn crypto_attr_bad_lines_are_errors() {
    let k = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";
    let long = "9".repeat(5000);
    let bad = [
        String::new(),
        "   ".into(),
        "1".into(),
        "1 AES_CM_128_HMAC_SHA1_80".into(),
        format!("1 AES_CM_256_HMAC_SHA1_80 inline:{k}"),      // unknown suite
        format!("1 aes_cm_128_hmac_sha1_80 inline:{k}"),      // suite names are case-sensitive
        format!("x AES_CM_128_HMAC_SHA1_80 inline:{k}"),      // tag not a number
        format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{k}"), // tag over 9 digits
        format!("1 AES_CM_128_HMAC_SHA1_80 outline:{k}"),     // key method
        "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1".into(), // not base64
        "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdU".into(), // short key
        "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1ZjYWJj".into(), // long key
        "1 AES_CM_128_HMAC_SHA1_80 inline:".into(),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^49"),     // lifetime over 2^48
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|0"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|abc"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:0"),      // MKI length 0
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:129"),    // MKI length over 128
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|256:1"),    // MKI value too big for 1 byte
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|:4"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:4|2^20"), // lifetime after MKI
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:4|2:4"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20|2^20"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|{long}:4"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:4;inline:{k}|2:4"), // two keys
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k} {long}"),    // too long overall
        "1 AES_CM_128_HMAC_SHA1_80 inline:ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ".into(),
    ];
    for line in &bad {
        assert!(
            matches!(CryptoAttr::parse(line), Err(MediaError::BadCryptoAttr(_))),
            "accepted {line:?}"
        );
    }
    assert!(MasterKey::from_inline("AAAA").is_err());
}

#[test]
fn keys_never_show_in_debug_output() {
    let k = key(6);
    let attr = CryptoAttr {
        tag: 1,
        suite: SrtpSuite::AesCm128HmacSha1_80,
        key: k.clone(),
        lifetime: None,
        mki: None,
        session_params: vec![],
    };
    let ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &k);
    let keys = SessionKeys::derive(&k);
    let inline = k.to_inline();
    for text in [
        format!("{k:?}"),
        format!("{k:#?}"),
        format!("{attr:?}"),
        format!("{ctx:?}"),
        format!("{keys:?}"),
    ] {
        assert!(!text.contains(&inline), "{text}");
        assert!(!text.contains(&format!("{:?}", k.key())), "{text}");
        assert!(!text.contains(&format!("{:?}", k.salt())), "{text}");
    }
}

// ---- Hostile input ----

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_and_truncated_packets_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def0);
    for suite in SUITES {
        let (mut tx, _) = pair(suite);
        let mut rxs = [
            SrtpContext::new(suite, &key(1)),
            SrtpContext::with_mki(suite, &key(1), &[1, 2, 3, 4]).unwrap(),
        ];
        let ext = [1u8, 2, 3, 4];
        let good_rtp = tx.protect_rtp(&rtp(3, 4, &[1, 2], Some((0xbede, &ext)), &voice(3))).unwrap();
        let good_rtcp = tx.protect_rtcp(&rtcp_rr(4, 2)).unwrap();

        for rx in rxs.iter_mut() {
            // Every truncation of a genuine packet fails cleanly.
            for n in 0..good_rtp.len() {
                assert!(rx.unprotect_rtp(&good_rtp[..n]).is_err(), "{suite} rtp len {n}");
            }
            for n in 0..good_rtcp.len() {
                assert!(rx.unprotect_rtcp(&good_rtcp[..n]).is_err(), "{suite} rtcp len {n}");
            }
            // Random bytes, with the first byte often a plausible RTP/RTCP start.
            for i in 0..20_000 {
                let len = (rng.next() % 120) as usize;
                let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if i % 2 == 0 && !p.is_empty() {
                    p[0] = 0x80 | (p[0] & 0x3f);
                }
                let _ = rx.unprotect_rtp(&p);
                let _ = rx.unprotect_rtcp(&p);
                let _ = tx.protect_rtcp(&p);
                let _ = tx.protect_rtp(&p);
            }
            // Random bit flips in genuine packets never authenticate.
            for _ in 0..2_000 {
                let mut p = good_rtp.clone();
                let bit = (rng.next() % (p.len() as u64 * 8)) as usize;
                p[bit / 8] ^= 1 << (bit % 8);
                assert!(rx.unprotect_rtp(&p).is_err());
                let mut q = good_rtcp.clone();
                let bit = (rng.next() % (q.len() as u64 * 8)) as usize;
                q[bit / 8] ^= 1 << (bit % 8);
                assert!(rx.unprotect_rtcp(&q).is_err());
            }
        }
    }
}

#[test]
fn extension_and_csrc_lengths_that_overrun_are_rejected() {
    let (mut tx, mut rx) = pair(SrtpSuite::AesCm128HmacSha1_80);
    // CC = 15 with no CSRCs present.
    let mut p = rtp(1, 1, &[], None, &[0; 8]);
    p[0] |= 0x0f;
    assert!(matches!(tx.protect_rtp(&p), Err(MediaError::CsrcOverrun { .. })));
    // X set with an extension length past the end.
    let mut p = rtp(1, 1, &[], None, &[0xbe, 0xde, 0xff, 0xff]);
    p[0] |= 0x10;
    assert!(matches!(tx.protect_rtp(&p), Err(MediaError::ExtensionOverrun { .. })));
    // The same inside an SRTP packet: the tag must not be read as header.
    p.extend_from_slice(&[0; 10]);
    assert!(rx.unprotect_rtp(&p).is_err());
}
