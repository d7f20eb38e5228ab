//! SDES-SRTP: the SDP `a=crypto` attribute (RFC 4568) and SRTP/SRTCP packet
//! protection (RFC 3711) for the two suites every SIP phone speaks,
//! AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32. Sans-IO like the rest
//! of the crate: no sockets, no clock, no randomness; the caller generates
//! master keys from its own random source ([`MasterKey::from_bytes`]) and
//! passes datagrams through an [`SrtpContext`], one per direction.
//!
//! Session keys are derived once with key derivation rate 0 (RFC 3711 §4.3).
//! The packet index of SRTP is guessed from the sequence number and the
//! per-SSRC rollover counter (§3.3.1), which is advanced only after the
//! authentication tag checks out, so forged packets cannot move it; a
//! 64-packet replay window per SSRC drops duplicates and stale packets.
//! Only the payload is encrypted: the fixed header, the CSRC list and the
//! header extension stay in the clear, as the relay's latching needs them.

use std::collections::HashMap;
use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::MediaError;
use crate::rtp::RtpHeader;

type HmacSha1 = Hmac<Sha1>;

/// Bytes in an AES-128 master or session key.
pub const KEY_LEN: usize = 16;
/// Bytes in a master or session salt (112 bits, RFC 3711 §8.2).
pub const SALT_LEN: usize = 14;
/// Bytes in the session authentication key (160 bits, RFC 3711 §8.2).
pub const AUTH_KEY_LEN: usize = 20;
/// Bytes of the SRTCP authentication tag, for both suites: RFC 4568 §6.2.1
/// keeps the 80-bit tag for SRTCP even under AES_CM_128_HMAC_SHA1_32.
pub const SRTCP_TAG_LEN: usize = 10;
/// Packets the replay window covers behind the highest index seen
/// (RFC 3711 §3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 64;
/// The most SSRCs a context keeps state for, per table. State is created
/// only for packets that authenticated (receive) or that the caller chose to
/// send, so only a key holder can fill it; the cap keeps memory bounded even
/// then. A new SSRC beyond it is refused rather than evicting an old one,
/// because forgetting an SSRC would let its old packets be replayed.
pub const MAX_SSRCS: usize = 1024;
/// Longest MKI RFC 4568 allows (`mki-length` is 1..=128 bytes).
pub const MAX_MKI_LEN: usize = 128;

const RTP_HEADER_LEN: usize = 12;
const RTCP_HEADER_LEN: usize = 8;
/// The E flag and 31-bit index that SRTCP appends (RFC 3711 §3.4).
const SRTCP_INDEX_LEN: usize = 4;
const SRTCP_E_FLAG: u32 = 0x8000_0000;
const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;
const MAX_SRTCP_INDEX: u64 = (1 << 31) - 1;

/// The SRTP crypto suites of RFC 4568 §6.2 this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag on SRTP (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Every suite, in our order of preference for an offer.
    pub const ALL: [SrtpSuite; 2] = [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AesCm128HmacSha1_32];

    /// The suite name as written in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite for an `a=crypto` name. Names are case-sensitive tokens in
    /// the RFC 4568 grammar, so only the exact spelling matches.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|suite| suite.name() == s)
    }

    /// Bytes of the authentication tag on SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
        }
    }

    /// Bytes of the authentication tag on SRTCP packets: 10 for both suites.
    pub fn rtcp_tag_len(self) -> usize {
        SRTCP_TAG_LEN
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An SRTP master key and master salt (30 bytes together). `Debug` shows no
/// key bytes, so the key cannot leak into logs through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub key: [u8; KEY_LEN],
    pub salt: [u8; SALT_LEN],
}

impl MasterKey {
    /// Splits 30 bytes into key (first 16) and salt (last 14), the order of
    /// the `inline:` key. The caller fills them from a cryptographic RNG.
    pub fn from_bytes(b: &[u8; KEY_LEN + SALT_LEN]) -> Self {
        let mut key = [0u8; KEY_LEN];
        let mut salt = [0u8; SALT_LEN];
        let (k, s) = b.split_at(KEY_LEN);
        key.copy_from_slice(k);
        salt.copy_from_slice(s);
        Self { key, salt }
    }

    /// Key followed by salt.
    pub fn to_bytes(&self) -> [u8; KEY_LEN + SALT_LEN] {
        let mut b = [0u8; KEY_LEN + SALT_LEN];
        let (k, s) = b.split_at_mut(KEY_LEN);
        k.copy_from_slice(&self.key);
        s.copy_from_slice(&self.salt);
        b
    }

    /// The base64 text after `inline:` (40 characters, no padding needed).
    pub fn to_inline(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    /// Reads the base64 text after `inline:`; it must decode to exactly 30 bytes.
    pub fn from_inline(s: &str) -> Result<Self, MediaError> {
        // 30 bytes are 40 base64 characters; anything much longer is not a
        // key for these suites, and bounding it first bounds the decode.
        if s.len() > 64 {
            return Err(MediaError::BadCryptoAttr("inline key too long"));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| MediaError::BadCryptoAttr("inline key is not base64"))?;
        let bytes: &[u8; KEY_LEN + SALT_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| MediaError::BadCryptoAttr("inline key is not 30 bytes (16 key + 14 salt)"))?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The six session keys derived from a master key (RFC 3711 §4.3, key
/// derivation rate 0, so derived once). Public for the RFC test vectors and
/// for diagnostics; `Debug` shows no key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub rtp_key: [u8; KEY_LEN],
    pub rtp_auth: [u8; AUTH_KEY_LEN],
    pub rtp_salt: [u8; SALT_LEN],
    pub rtcp_key: [u8; KEY_LEN],
    pub rtcp_auth: [u8; AUTH_KEY_LEN],
    pub rtcp_salt: [u8; SALT_LEN],
}

impl SessionKeys {
    /// Derives the SRTP and SRTCP encryption keys, authentication keys and
    /// salts with the AES-CM PRF, labels 0 to 5.
    pub fn derive(master: &MasterKey) -> Self {
        let cipher = Aes128::new(&master.key.into());
        let mut keys = Self {
            rtp_key: [0; KEY_LEN],
            rtp_auth: [0; AUTH_KEY_LEN],
            rtp_salt: [0; SALT_LEN],
            rtcp_key: [0; KEY_LEN],
            rtcp_auth: [0; AUTH_KEY_LEN],
            rtcp_salt: [0; SALT_LEN],
        };
        prf(&cipher, &master.salt, 0x00, &mut keys.rtp_key);
        prf(&cipher, &master.salt, 0x01, &mut keys.rtp_auth);
        prf(&cipher, &master.salt, 0x02, &mut keys.rtp_salt);
        prf(&cipher, &master.salt, 0x03, &mut keys.rtcp_key);
        prf(&cipher, &master.salt, 0x04, &mut keys.rtcp_auth);
        prf(&cipher, &master.salt, 0x05, &mut keys.rtcp_salt);
        keys
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// The key derivation PRF with kdr = 0: r = 0, so key_id is the label in
/// byte 7 of the 14-byte salt, x = key_id XOR master salt, and the output is
/// the AES-CM keystream from IV = x * 2^16.
fn prf(master: &Aes128, master_salt: &[u8; SALT_LEN], label: u8, out: &mut [u8]) {
    let mut x = *master_salt;
    x[7] ^= label;
    let mut iv = [0u8; 16];
    iv[..SALT_LEN].copy_from_slice(&x);
    out.fill(0);
    aes_cm_xor(master, &iv, out);
}

/// The AES-CM initial counter for one packet (RFC 3711 §4.1.1):
/// (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16). `index` is the 48-bit
/// SRTP packet index or the 31-bit SRTCP index.
pub fn aes_cm_iv(salt: &[u8; SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..SALT_LEN].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    // The low 48 bits of the index land in bytes 8..14.
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= *s;
    }
    iv
}

/// XORs `data` with the AES-CM keystream of `key` starting at counter `iv`.
/// Applying it twice restores the data. Public for the RFC 3711 B.2 vector.
pub fn aes_cm_apply(key: &[u8; KEY_LEN], iv: &[u8; 16], data: &mut [u8]) {
    aes_cm_xor(&Aes128::new(&(*key).into()), iv, data);
}

/// AES in counter mode over a 128-bit big-endian counter. Written out rather
/// than through `ctr` because it cannot fail: the counter wraps like
/// `Ctr128BE` and no packet comes near the 2^16 blocks after which the
/// counter would carry into the index bits. Blocks are encrypted eight at a
/// time so AES-NI can pipeline them.
fn aes_cm_xor(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    const BATCH: usize = 8;
    let mut counter = u128::from_be_bytes(*iv);
    for chunk in data.chunks_mut(16 * BATCH) {
        let mut blocks = [aes::Block::default(); BATCH];
        let n = chunk.len().div_ceil(16);
        for block in blocks.iter_mut().take(n) {
            *block = counter.to_be_bytes().into();
            counter = counter.wrapping_add(1);
        }
        let used = blocks.get_mut(..n).unwrap_or_default();
        cipher.encrypt_blocks(used);
        for (d, k) in chunk.iter_mut().zip(used.iter().flat_map(|b| b.iter())) {
            *d ^= *k;
        }
    }
}

/// An HMAC-SHA1 keyed with a 160-bit session auth key. HMAC zero-pads keys
/// shorter than the 64-byte SHA-1 block, so padding here is the same MAC and
/// lets us use the infallible constructor instead of `new_from_slice`.
fn hmac_sha1(key: &[u8; AUTH_KEY_LEN]) -> HmacSha1 {
    let mut padded = [0u8; 64];
    padded[..AUTH_KEY_LEN].copy_from_slice(key);
    <HmacSha1 as Mac>::new(&padded.into())
}

/// One RFC 4568 `a=crypto` attribute value, e.g.
/// `1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4`.
///
/// Only one key per attribute is accepted (RFC 4568 allows several, each
/// with its own MKI, which no phone we know sends). `lifetime` and `mki` are
/// kept as written and validated; [`CryptoAttr::lifetime_packets`] and
/// [`CryptoAttr::mki_bytes`] read them. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    pub tag: u32,
    pub suite: SrtpSuite,
    pub key: MasterKey,
    /// `2^N` or a decimal packet count.
    pub lifetime: Option<String>,
    /// `value:length`, the MKI carried in every packet.
    pub mki: Option<String>,
    /// Session parameters (KDR=, UNENCRYPTED_SRTP, WSH=, ...) as written.
    pub session_params: Vec<String>,
}

impl CryptoAttr {
    /// Parses the value after `a=crypto:`. Never panics; any syntax error,
    /// unknown suite, non-base64 or wrong-length key gives
    /// [`MediaError::BadCryptoAttr`]. Session parameters are kept but not
    /// judged here: call [`CryptoAttr::check_supported`] before using the key.
    pub fn parse(value: &str) -> Result<Self, MediaError> {
        let bad = MediaError::BadCryptoAttr;
        // An SDP line is at most a few hundred bytes; refusing huge values
        // bounds the work and the session_params vector.
        if value.len() > 4096 {
            return Err(bad("attribute too long"));
        }
        let mut fields = value.split_ascii_whitespace();
        let tag_s = fields.next().ok_or(bad("empty"))?;
        if tag_s.is_empty() || tag_s.len() > 9 || !tag_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("tag is not 1 to 9 digits"));
        }
        let tag: u32 = tag_s.parse().map_err(|_| bad("tag is not 1 to 9 digits"))?;
        let suite = SrtpSuite::from_name(fields.next().ok_or(bad("missing crypto suite"))?)
            .ok_or(bad("unknown crypto suite"))?;
        let key_params = fields.next().ok_or(bad("missing key parameters"))?;
        if key_params.contains(';') {
            return Err(bad("more than one key is not supported"));
        }
        let info = key_params.strip_prefix("inline:").ok_or(bad("key method is not inline"))?;
        let mut parts = info.split('|');
        let key = MasterKey::from_inline(parts.next().unwrap_or_default())?;
        let (mut lifetime, mut mki) = (None, None);
        for part in parts {
            // The grammar orders lifetime before MKI; only an MKI has a colon.
            if part.contains(':') {
                if mki.is_some() {
                    return Err(bad("more than one MKI"));
                }
                mki_value(part)?;
                mki = Some(part.to_owned());
            } else {
                if lifetime.is_some() || mki.is_some() {
                    return Err(bad("lifetime repeated or after the MKI"));
                }
                lifetime_value(part)?;
                lifetime = Some(part.to_owned());
            }
        }
        let session_params: Vec<String> = fields.map(str::to_owned).collect();
        Ok(Self { tag, suite, key, lifetime, mki, session_params })
    }

    /// The attribute value, as `parse` reads it back.
    pub fn to_value(&self) -> String {
        let mut s = format!("{} {} inline:{}", self.tag, self.suite.name(), self.key.to_inline());
        if let Some(l) = &self.lifetime {
            s.push('|');
            s.push_str(l);
        }
        if let Some(m) = &self.mki {
            s.push('|');
            s.push_str(m);
        }
        for p in &self.session_params {
            s.push(' ');
            s.push_str(p);
        }
        s
    }

    /// The key lifetime as a packet count, if one was given.
    pub fn lifetime_packets(&self) -> Result<Option<u64>, MediaError> {
        self.lifetime.as_deref().map(lifetime_value).transpose()
    }

    /// The MKI as the bytes every packet carries (the decimal value written
    /// big-endian into `length` bytes), if one was given.
    pub fn mki_bytes(&self) -> Result<Option<Vec<u8>>, MediaError> {
        self.mki.as_deref().map(mki_value).transpose()
    }

    /// Refuses the attribute when its session parameters ask for something
    /// [`SrtpContext`] does not do: a key derivation rate (`KDR=`, any value,
    /// since KDR=0 means re-derive every packet), unencrypted or
    /// unauthenticated SRTP/SRTCP, or an unknown mandatory parameter. Forward
    /// error correction parameters and the window size hint are harmless to
    /// ignore; a parameter starting with `-` is optional by RFC 4568 §6.3.
    pub fn check_supported(&self) -> Result<(), MediaError> {
        for p in &self.session_params {
            let name = p.split('=').next().unwrap_or_default();
            match name {
                "KDR" => return Err(MediaError::BadCryptoAttr("key derivation rate (KDR) not supported")),
                "UNENCRYPTED_SRTP" | "UNENCRYPTED_SRTCP" | "UNAUTHENTICATED_SRTP" => {
                    return Err(MediaError::BadCryptoAttr("unencrypted or unauthenticated SRTP not supported"))
                }
                "FEC_ORDER" | "FEC_KEY" | "WSH" => {}
                _ if name.starts_with('-') => {}
                _ => return Err(MediaError::BadCryptoAttr("unknown session parameter")),
            }
        }
        self.lifetime_packets()?;
        self.mki_bytes()?;
        Ok(())
    }
}

/// `["2^"] 1*DIGIT`, at most 2^48 packets (RFC 4568 §6.2: the SRTP maximum).
fn lifetime_value(s: &str) -> Result<u64, MediaError> {
    let bad = MediaError::BadCryptoAttr("bad key lifetime");
    let (digits, power) = match s.strip_prefix("2^") {
        Some(d) => (d, true),
        None => (s, false),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let n: u64 = digits.parse().map_err(|_| bad)?;
    let packets = if power {
        if n > 48 {
            return Err(bad);
        }
        1u64 << n
    } else {
        n
    };
    if packets == 0 || packets > 1 << 48 {
        return Err(bad);
    }
    Ok(packets)
}

/// `mki-value ":" mki-length`, length 1..=128 bytes, value fitting in it.
fn mki_value(s: &str) -> Result<Vec<u8>, MediaError> {
    let bad = MediaError::BadCryptoAttr("bad MKI");
    let (value, len) = s.split_once(':').ok_or(bad)?;
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(value) || !all_digits(len) || len.len() > 3 || value.len() > 20 {
        return Err(bad);
    }
    let value: u64 = value.parse().map_err(|_| bad)?;
    let len: usize = len.parse().map_err(|_| bad)?;
    if len == 0 || len > MAX_MKI_LEN {
        return Err(bad);
    }
    let be = value.to_be_bytes();
    // The value must fit in `len` bytes: every byte of it above them is zero.
    let significant = be.iter().skip_while(|b| **b == 0).count();
    if significant > len {
        return Err(bad);
    }
    let mut out = vec![0u8; len];
    for (o, b) in out.iter_mut().rev().zip(be.iter().rev()) {
        *o = *b;
    }
    Ok(out)
}

/// Highest index seen for one SSRC and a bitmap of the 64 indices at and
/// below it (bit n = highest - n was accepted).
#[derive(Debug, Clone, Copy)]
struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    fn new(index: u64) -> Self {
        Self { highest: index, seen: 1 }
    }

    fn check(&self, index: u64) -> Result<(), MediaError> {
        if index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= REPLAY_WINDOW || (self.seen >> behind) & 1 == 1 {
            return Err(MediaError::SrtpReplay { index });
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.highest = index;
        } else {
            let behind = self.highest - index;
            if behind < REPLAY_WINDOW {
                self.seen |= 1 << behind;
            }
        }
    }
}

/// The SRTP packet index for `seq` given the highest index so far
/// (RFC 3711 §3.3.1 and Appendix A): the ROC guess v is ROC-1, ROC or ROC+1,
/// whichever puts the packet nearest s_l. Returns (index, v).
fn estimate_index(highest: u64, seq: u16) -> Result<(u64, u32), MediaError> {
    let roc = (highest >> 16) as i64;
    let s_l = (highest & 0xffff) as i64;
    let seq_i = i64::from(seq);
    let v = if s_l < 32768 {
        if seq_i - s_l > 32768 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 32768 > seq_i {
        roc + 1
    } else {
        roc
    };
    if v < 0 {
        // Before the first packet of the stream: older than anything we
        // would accept.
        return Err(MediaError::SrtpReplay { index: u64::from(seq) });
    }
    let v = u32::try_from(v).map_err(|_| MediaError::SrtpKeyExhausted)?;
    Ok(((u64::from(v) << 16) | u64::from(seq), v))
}

/// Inserts a new per-SSRC entry unless the table is full.
fn insert_bounded<V>(map: &mut HashMap<u32, V>, ssrc: u32, v: V) -> Result<(), MediaError> {
    if map.len() >= MAX_SSRCS && !map.contains_key(&ssrc) {
        return Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS });
    }
    map.insert(ssrc, v);
    Ok(())
}

/// One direction of one SRTP session (RFC 3711): the session keys, the
/// per-SSRC rollover counter and SRTCP index of what we send, and the
/// per-SSRC rollover counter and 64-packet replay windows of what we receive.
///
/// Use one context per direction and per key: protect with the context built
/// from our key, unprotect with the one built from the peer's key. Send and
/// receive state are kept apart, so a loopback test may use one context for
/// both.
///
/// State is keyed by SSRC, never by address: when a phone moves from Wi-Fi
/// to LTE and its packets arrive from a new source address, keep feeding the
/// same context and the rollover counter and replay window carry on (design
/// principle 4). Re-create the context only when the key changes.
///
/// The index of each SSRC is estimated from the sequence number on both the
/// send and the receive side, so reordered packets handed to
/// [`SrtpContext::protect_rtp`] are fine; a sequence number that jumps by
/// more than 2^15 on one SSRC is read as old, as every RFC 3711 receiver
/// would. A relay that switches sources under one SSRC must renumber.
pub struct SrtpContext {
    suite: SrtpSuite,
    mki: Vec<u8>,
    rtp_cipher: Aes128,
    rtp_salt: [u8; SALT_LEN],
    rtp_mac: HmacSha1,
    rtcp_cipher: Aes128,
    rtcp_salt: [u8; SALT_LEN],
    rtcp_mac: HmacSha1,
    /// Per sending SSRC: highest index sent and which recent ones were.
    rtp_tx: HashMap<u32, ReplayWindow>,
    /// Per receiving SSRC: highest authenticated index and the replay window.
    rtp_rx: HashMap<u32, ReplayWindow>,
    /// Per sending SSRC: the next SRTCP index.
    rtcp_tx: HashMap<u32, u64>,
    /// Per receiving SSRC: the SRTCP replay window.
    rtcp_rx: HashMap<u32, ReplayWindow>,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("mki_len", &self.mki.len())
            .field("rtp_tx_ssrcs", &self.rtp_tx.len())
            .field("rtp_rx_ssrcs", &self.rtp_rx.len())
            .field("rtcp_tx_ssrcs", &self.rtcp_tx.len())
            .field("rtcp_rx_ssrcs", &self.rtcp_rx.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// A context for `suite` under `key`, with no MKI in packets.
    pub fn new(suite: SrtpSuite, key: &MasterKey) -> Self {
        let keys = SessionKeys::derive(key);
        Self {
            suite,
            mki: Vec::new(),
            rtp_cipher: Aes128::new(&keys.rtp_key.into()),
            rtp_salt: keys.rtp_salt,
            rtp_mac: hmac_sha1(&keys.rtp_auth),
            rtcp_cipher: Aes128::new(&keys.rtcp_key.into()),
            rtcp_salt: keys.rtcp_salt,
            rtcp_mac: hmac_sha1(&keys.rtcp_auth),
            rtp_tx: HashMap::new(),
            rtp_rx: HashMap::new(),
            rtcp_tx: HashMap::new(),
            rtcp_rx: HashMap::new(),
        }
    }

    /// A context whose packets carry `mki` (1 to 128 bytes) between the
    /// encrypted part and the tag; received packets must carry the same.
    pub fn with_mki(suite: SrtpSuite, key: &MasterKey, mki: &[u8]) -> Result<Self, MediaError> {
        if mki.is_empty() || mki.len() > MAX_MKI_LEN {
            return Err(MediaError::BadCryptoAttr("MKI must be 1 to 128 bytes"));
        }
        let mut ctx = Self::new(suite, key);
        ctx.mki = mki.to_vec();
        Ok(ctx)
    }

    /// A context for the key, suite and MKI of an `a=crypto` attribute,
    /// after [`CryptoAttr::check_supported`]. Use this for the peer's
    /// attribute: its MKI says what the peer's packets carry.
    pub fn from_crypto(attr: &CryptoAttr) -> Result<Self, MediaError> {
        attr.check_supported()?;
        match attr.mki_bytes()? {
            Some(mki) => Self::with_mki(attr.suite, &attr.key, &mki),
            None => Ok(Self::new(attr.suite, &attr.key)),
        }
    }

    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The rollover counter of what we send on `ssrc`, once we have sent.
    pub fn send_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_tx.get(&ssrc).map(|w| (w.highest >> 16) as u32)
    }

    /// The rollover counter of what we receive on `ssrc`, once a packet
    /// authenticated.
    pub fn recv_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_rx.get(&ssrc).map(|w| (w.highest >> 16) as u32)
    }

    fn rtp_auth(&self, authed: &[u8], roc: u32) -> HmacSha1 {
        let mut mac = self.rtp_mac.clone();
        mac.update(authed);
        mac.update(&roc.to_be_bytes());
        mac
    }

    /// Encrypts the payload of an RTP packet and appends MKI and tag.
    /// Err for a packet that is not RTP, for an index already sent on that
    /// SSRC (sending two payloads under one index would reuse keystream),
    /// or when the key is used up.
    pub fn protect_rtp(&mut self, rtp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let hdr = RtpHeader::parse(rtp)?;
        let (index, roc) = match self.rtp_tx.get(&hdr.ssrc) {
            Some(w) => {
                let (index, roc) = estimate_index(w.highest, hdr.sequence)?;
                w.check(index)?;
                (index, roc)
            }
            None => (u64::from(hdr.sequence), 0),
        };
        if index > MAX_SRTP_INDEX {
            return Err(MediaError::SrtpKeyExhausted);
        }
        if !self.rtp_tx.contains_key(&hdr.ssrc) {
            insert_bounded(&mut self.rtp_tx, hdr.ssrc, ReplayWindow::new(index))?;
        }

        let tag_len = self.suite.rtp_tag_len();
        let mut out = Vec::with_capacity(rtp.len() + self.mki.len() + tag_len);
        out.extend_from_slice(rtp);
        let iv = aes_cm_iv(&self.rtp_salt, hdr.ssrc, index);
        if let Some(payload) = out.get_mut(hdr.payload_offset..) {
            aes_cm_xor(&self.rtp_cipher, &iv, payload);
        }
        let tag = self.rtp_auth(&out, roc).finalize().into_bytes();
        out.extend_from_slice(&self.mki);
        out.extend_from_slice(tag.get(..tag_len).unwrap_or_default());
        if let Some(w) = self.rtp_tx.get_mut(&hdr.ssrc) {
            w.accept(index);
        }
        Ok(out)
    }

    /// Checks MKI, replay window and tag of an SRTP packet, then decrypts it.
    /// The rollover counter and the window move only when the tag is good.
    /// The result is the plain RTP packet, padding included.
    pub fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let trailer = self.mki.len() + self.suite.rtp_tag_len();
        let have = srtp.len();
        let need = RTP_HEADER_LEN + trailer;
        let body_len = have.checked_sub(trailer).filter(|n| *n >= RTP_HEADER_LEN);
        let (authed, rest) = body_len
            .and_then(|n| srtp.split_at_checked(n))
            .ok_or(MediaError::TooShort { need, have })?;
        let (mki, tag) = rest.split_at_checked(self.mki.len()).ok_or(MediaError::TooShort { need, have })?;
        let hdr = RtpHeader::parse(authed)?;
        if mki != self.mki.as_slice() {
            return Err(MediaError::SrtpUnknownMki);
        }

        let known = self.rtp_rx.get(&hdr.ssrc).copied();
        let (index, roc) = match known {
            Some(w) => {
                let (index, roc) = estimate_index(w.highest, hdr.sequence)?;
                w.check(index)?;
                (index, roc)
            }
            // RFC 3711 §3.3.1: a new stream starts with ROC 0 and s_l = SEQ.
            None => {
                if self.rtp_rx.len() >= MAX_SSRCS {
                    return Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS });
                }
                (u64::from(hdr.sequence), 0)
            }
        };
        self.rtp_auth(authed, roc).verify_truncated_left(tag).map_err(|_| MediaError::SrtpAuthFailed)?;

        let mut out = authed.to_vec();
        let iv = aes_cm_iv(&self.rtp_salt, hdr.ssrc, index);
        if let Some(payload) = out.get_mut(hdr.payload_offset..) {
            aes_cm_xor(&self.rtp_cipher, &iv, payload);
        }
        match self.rtp_rx.get_mut(&hdr.ssrc) {
            Some(w) => w.accept(index),
            None => insert_bounded(&mut self.rtp_rx, hdr.ssrc, ReplayWindow::new(index))?,
        }
        Ok(out)
    }

    /// Encrypts an RTCP compound packet after its first 8 bytes, appends the
    /// E flag and SRTCP index, the MKI and an 80-bit tag. The SRTCP index
    /// counts from 0 per sender SSRC (RFC 3711 §3.4).
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let ssrc = rtcp_sender_ssrc(rtcp)?;
        let index = self.rtcp_tx.get(&ssrc).copied().unwrap_or(0);
        if index > MAX_SRTCP_INDEX {
            return Err(MediaError::SrtpKeyExhausted);
        }
        insert_bounded(&mut self.rtcp_tx, ssrc, index + 1)?;

        let mut out = Vec::with_capacity(rtcp.len() + SRTCP_INDEX_LEN + self.mki.len() + SRTCP_TAG_LEN);
        out.extend_from_slice(rtcp);
        let iv = aes_cm_iv(&self.rtcp_salt, ssrc, index);
        if let Some(body) = out.get_mut(RTCP_HEADER_LEN..) {
            aes_cm_xor(&self.rtcp_cipher, &iv, body);
        }
        // index <= 2^31 - 1, so it fits the 31 bits beside the E flag.
        let e_index = SRTCP_E_FLAG | (index as u32);
        out.extend_from_slice(&e_index.to_be_bytes());
        let mut mac = self.rtcp_mac.clone();
        mac.update(&out);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(&self.mki);
        out.extend_from_slice(tag.get(..SRTCP_TAG_LEN).unwrap_or_default());
        Ok(out)
    }

    /// Checks MKI, tag and replay window of an SRTCP packet, then decrypts it
    /// if its E flag is set. The result is the plain RTCP compound packet.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let trailer = SRTCP_INDEX_LEN + self.mki.len() + SRTCP_TAG_LEN;
        let have = srtcp.len();
        let need = RTCP_HEADER_LEN + trailer;
        let authed_len = have
            .checked_sub(self.mki.len() + SRTCP_TAG_LEN)
            .filter(|n| *n >= RTCP_HEADER_LEN + SRTCP_INDEX_LEN);
        let (authed, rest) = authed_len
            .and_then(|n| srtcp.split_at_checked(n))
            .ok_or(MediaError::TooShort { need, have })?;
        let (mki, tag) = rest.split_at_checked(self.mki.len()).ok_or(MediaError::TooShort { need, have })?;
        let (body, e_index) = authed
            .len()
            .checked_sub(SRTCP_INDEX_LEN)
            .and_then(|n| authed.split_at_checked(n))
            .ok_or(MediaError::TooShort { need, have })?;
        let ssrc = rtcp_sender_ssrc(body)?;
        if mki != self.mki.as_slice() {
            return Err(MediaError::SrtpUnknownMki);
        }
        let e_index: [u8; SRTCP_INDEX_LEN] =
            e_index.try_into().map_err(|_| MediaError::TooShort { need, have })?;
        let e_index = u32::from_be_bytes(e_index);
        let encrypted = e_index & SRTCP_E_FLAG != 0;
        let index = u64::from(e_index & !SRTCP_E_FLAG);

        let known = self.rtcp_rx.get(&ssrc).copied();
        match known {
            Some(w) => w.check(index)?,
            None if self.rtcp_rx.len() >= MAX_SSRCS => {
                return Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS })
            }
            None => {}
        }
        let mut mac = self.rtcp_mac.clone();
        mac.update(authed);
        mac.verify_truncated_left(tag).map_err(|_| MediaError::SrtpAuthFailed)?;

        let mut out = body.to_vec();
        if encrypted {
            let iv = aes_cm_iv(&self.rtcp_salt, ssrc, index);
            if let Some(rest) = out.get_mut(RTCP_HEADER_LEN..) {
                aes_cm_xor(&self.rtcp_cipher, &iv, rest);
            }
        }
        match self.rtcp_rx.get_mut(&ssrc) {
            Some(w) => w.accept(index),
            None => insert_bounded(&mut self.rtcp_rx, ssrc, ReplayWindow::new(index))?,
        }
        Ok(out)
    }
}

/// The sender SSRC of an RTCP compound packet: bytes 4..8 of its first
/// packet, which SRTCP leaves in the clear with the rest of the first 8 bytes.
fn rtcp_sender_ssrc(rtcp: &[u8]) -> Result<u32, MediaError> {
    let have = rtcp.len();
    let head: &[u8; RTCP_HEADER_LEN] = rtcp
        .get(..RTCP_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(MediaError::TooShort { need: RTCP_HEADER_LEN, have })?;
    let version = head[0] >> 6;
    if version != 2 {
        return Err(MediaError::BadVersion(version));
    }
    if !(192..=223).contains(&head[1]) {
        return Err(MediaError::NotRtcp(head[1]));
    }
    Ok(u32::from_be_bytes([head[4], head[5], head[6], head[7]]))
}
