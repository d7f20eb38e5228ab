//! SDES-SRTP: the SDP `a=crypto` attribute (RFC 4568) and SRTP/SRTCP packet
//! protection for the suites SIP phones speak: AES_CM_128_HMAC_SHA1_80 and
//! AES_CM_128_HMAC_SHA1_32 (RFC 3711), which every phone has and which we
//! offer, and AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714), which we
//! accept from a phone that offers them. Sans-IO like the rest of the crate:
//! no sockets, no clock, no randomness; the caller generates master keys
//! from its own random source ([`MasterKey::from_bytes`],
//! [`MasterKey::from_slice`]) and passes datagrams through an
//! [`SrtpContext`], one per direction.
//!
//! Session keys are derived once with key derivation rate 0 (RFC 3711 §4.3;
//! the AEAD suites use the same AES-CM PRF, RFC 7714 §11).
//! The packet index of SRTP is guessed from the sequence number and the
//! per-SSRC rollover counter (§3.3.1), which is advanced only after the
//! authentication tag checks out, so forged packets cannot move it; a
//! 64-packet replay window per SSRC drops duplicates and stale packets.
//! Only the payload is encrypted: the fixed header, the CSRC list and the
//! header extension stay in the clear, as the relay's latching needs them
//! (the AEAD suites authenticate them as associated data, RFC 7714 §8).

use std::collections::HashMap;
use std::fmt;

use aes::cipher::consts::{U12, U16};
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit};
use aes::{Aes128, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::MediaError;
use crate::rtp::RtpHeader;

type HmacSha1 = Hmac<Sha1>;

/// Bytes in an AES-128 master or session key.
pub const KEY_LEN: usize = 16;
/// Bytes in an AES-256 master or session key (AEAD_AES_256_GCM).
pub const KEY_256_LEN: usize = 32;
/// Bytes in a master or session salt of the AES-CM suites (112 bits,
/// RFC 3711 §8.2).
pub const SALT_LEN: usize = 14;
/// Bytes in a master or session salt of the AEAD suites (96 bits, RFC 7714).
pub const AEAD_SALT_LEN: usize = 12;
/// Bytes in the session authentication key (160 bits, RFC 3711 §8.2).
pub const AUTH_KEY_LEN: usize = 20;
/// Bytes of the SRTCP authentication tag of the AES-CM suites: RFC 4568
/// §6.2.1 keeps the 80-bit tag for SRTCP even under AES_CM_128_HMAC_SHA1_32.
pub const SRTCP_TAG_LEN: usize = 10;
/// Bytes of the AES-GCM authentication tag, on SRTP and SRTCP alike
/// (RFC 7714 defines the SDES suites with the full 128-bit tag only).
pub const AEAD_TAG_LEN: usize = 16;
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
/// The longest master key and salt of any suite (AEAD_AES_256_GCM's).
const MAX_MASTER_LEN: usize = KEY_256_LEN + AEAD_SALT_LEN;
/// Bytes in the AES-GCM nonce (RFC 7714 §8.1, §9.1).
const AEAD_IV_LEN: usize = 12;
/// The most plaintext one AES-GCM operation takes (2^36 - 32 bytes, NIST
/// SP 800-38D), or all a 32-bit address space holds.
const GCM_MAX_LEN: usize = if usize::BITS >= 64 { ((1u64 << 36) - 32) as usize } else { usize::MAX };
/// Why a context whose master key does not fit its suite refuses packets.
const KEY_MISMATCH: MediaError = MediaError::BadCryptoAttr("master key length does not match the crypto suite");

/// The `inline:` key encoding: standard base64, written with padding. Read
/// with or without it, because RFC 4568's grammar is only `1*(base64)` and
/// the AEAD suites' 28- and 44-byte keys are the first whose encoding needs
/// padding at all (30 bytes encode to exactly 40 characters).
const INLINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The SRTP crypto suites of RFC 4568 §6.2 and RFC 7714 §14.1 this module
/// implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag on SRTP (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
    /// AES-128 in Galois/Counter Mode, 128-bit tag (RFC 7714).
    AeadAes128Gcm,
    /// AES-256 in Galois/Counter Mode, 128-bit tag (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpSuite {
    /// The suites we offer, in our order of preference: the AES-CM suites,
    /// which every SDES phone has. The AEAD suites are accepted from a peer
    /// that offers them ([`SrtpSuite::SUPPORTED`]) but not offered; adding
    /// them here would change every offer the PBX makes.
    pub const ALL: [SrtpSuite; 2] = [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AesCm128HmacSha1_32];

    /// Every suite implemented here, so every suite we accept in an offer or
    /// answer we receive ([`SrtpSuite::from_name`]).
    pub const SUPPORTED: [SrtpSuite; 4] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AeadAes256Gcm,
    ];

    /// The suite name as written in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The suite for an `a=crypto` name, among all [`SrtpSuite::SUPPORTED`].
    /// Names are case-sensitive tokens in the RFC 4568 grammar, so only the
    /// exact spelling matches.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::SUPPORTED.into_iter().find(|suite| suite.name() == s)
    }

    /// AES-GCM (RFC 7714): one AEAD operation encrypts and authenticates.
    pub fn is_aead(self) -> bool {
        matches!(self, SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm)
    }

    /// Bytes of the authentication tag on SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => AEAD_TAG_LEN,
        }
    }

    /// Bytes of the authentication tag on SRTCP packets: 10 for both AES-CM
    /// suites, 16 for AES-GCM.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() {
            AEAD_TAG_LEN
        } else {
            SRTCP_TAG_LEN
        }
    }

    /// Bytes of the master key (and of the session encryption keys).
    pub fn master_key_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes256Gcm => KEY_256_LEN,
            _ => KEY_LEN,
        }
    }

    /// Bytes of the master salt (and of the session salts).
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() {
            AEAD_SALT_LEN
        } else {
            SALT_LEN
        }
    }

    /// Bytes of master key and salt together, as the `inline:` key holds
    /// them: 30 for AES-CM, 28 for AEAD_AES_128_GCM, 44 for AEAD_AES_256_GCM.
    pub fn master_len(self) -> usize {
        self.master_key_len() + self.master_salt_len()
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many of `len` bytes of master key and salt are key: the suites' three
/// lengths differ, so the length alone says where the salt starts.
fn master_key_split(len: usize) -> Option<usize> {
    SrtpSuite::SUPPORTED.into_iter().find(|s| s.master_len() == len).map(SrtpSuite::master_key_len)
}

/// An SRTP master key and master salt, in the order of the `inline:` key:
/// 16 + 14 bytes for the AES-CM suites, 16 + 12 for AEAD_AES_128_GCM,
/// 32 + 12 for AEAD_AES_256_GCM ([`SrtpSuite::master_len`]). `Debug` shows
/// no key bytes, so the key cannot leak into logs through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// Key then salt; the bytes past `len` stay zero, so the derived
    /// equality compares the key material only.
    bytes: [u8; MAX_MASTER_LEN],
    len: usize,
    key_len: usize,
}

impl MasterKey {
    /// Splits 30 bytes into key (first 16) and salt (last 14), for the
    /// AES-CM suites. The caller fills them from a cryptographic RNG.
    pub fn from_bytes(b: &[u8; KEY_LEN + SALT_LEN]) -> Self {
        let mut bytes = [0u8; MAX_MASTER_LEN];
        for (d, s) in bytes.iter_mut().zip(b) {
            *d = *s;
        }
        Self { bytes, len: KEY_LEN + SALT_LEN, key_len: KEY_LEN }
    }

    /// Key followed by salt for any suite: 30, 28 or 44 bytes (see
    /// [`SrtpSuite::master_len`]); the length says where the salt starts.
    /// The caller fills them from a cryptographic RNG.
    pub fn from_slice(b: &[u8]) -> Result<Self, MediaError> {
        let bad = MediaError::BadCryptoAttr("master key and salt are not 28, 30 or 44 bytes");
        let key_len = master_key_split(b.len()).ok_or(bad)?;
        let mut bytes = [0u8; MAX_MASTER_LEN];
        bytes.get_mut(..b.len()).ok_or(bad)?.copy_from_slice(b);
        Ok(Self { bytes, len: b.len(), key_len })
    }

    /// A new key for `suite`, its [`SrtpSuite::master_len`] bytes filled by
    /// `fill`, which the caller backs with a cryptographic RNG (this crate
    /// has no random source). Infallible, so a key for our side of an
    /// answer always has the length its suite's `a=crypto` line needs.
    pub fn generate(suite: SrtpSuite, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut bytes = [0u8; MAX_MASTER_LEN];
        let len = suite.master_len();
        if let Some(b) = bytes.get_mut(..len) {
            fill(b);
        }
        Self { bytes, len, key_len: suite.master_key_len() }
    }

    /// Key and salt given apart: 16 + 14, 16 + 12 or 32 + 12 bytes.
    pub fn from_parts(key: &[u8], salt: &[u8]) -> Result<Self, MediaError> {
        let joined: Vec<u8> = key.iter().chain(salt).copied().collect();
        let master = Self::from_slice(&joined)?;
        if master.key_len != key.len() {
            return Err(MediaError::BadCryptoAttr("master key and salt lengths belong to no crypto suite"));
        }
        Ok(master)
    }

    /// The master key: 16 or 32 bytes.
    pub fn key(&self) -> &[u8] {
        self.bytes.get(..self.key_len).unwrap_or_default()
    }

    /// The master salt: 14 or 12 bytes.
    pub fn salt(&self) -> &[u8] {
        self.bytes.get(self.key_len..self.len).unwrap_or_default()
    }

    /// Key followed by salt.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// Key followed by salt, owned.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Whether this key has the lengths `suite` takes.
    pub fn fits(&self, suite: SrtpSuite) -> bool {
        self.len == suite.master_len()
    }

    /// The base64 text after `inline:` (40 characters for the AES-CM suites,
    /// padded like any base64 for the AEAD ones).
    pub fn to_inline(&self) -> String {
        INLINE.encode(self.as_bytes())
    }

    /// Reads the base64 text after `inline:`, with or without padding; it
    /// must decode to 30, 28 or 44 bytes. Whether that fits the suite is
    /// [`MasterKey::fits`]; [`CryptoAttr::parse`] checks it.
    pub fn from_inline(s: &str) -> Result<Self, MediaError> {
        // 44 bytes are 60 base64 characters; anything much longer is not a
        // key for these suites, and bounding it first bounds the decode.
        if s.len() > 64 {
            return Err(MediaError::BadCryptoAttr("inline key too long"));
        }
        let raw = INLINE.decode(s).map_err(|_| MediaError::BadCryptoAttr("inline key is not base64"))?;
        Self::from_slice(&raw).map_err(|_| MediaError::BadCryptoAttr("inline key is not 28, 30 or 44 bytes"))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The six session keys of the AES-CM suites, derived from a master key
/// (RFC 3711 §4.3, key derivation rate 0, so derived once). Public for the
/// RFC test vectors and for diagnostics; `Debug` shows no key bytes. The
/// AEAD suites take keys and salts of other lengths from the same PRF;
/// [`SrtpContext`] derives those itself.
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
        let mut keys = Self {
            rtp_key: [0; KEY_LEN],
            rtp_auth: [0; AUTH_KEY_LEN],
            rtp_salt: [0; SALT_LEN],
            rtcp_key: [0; KEY_LEN],
            rtcp_auth: [0; AUTH_KEY_LEN],
            rtcp_salt: [0; SALT_LEN],
        };
        let (key, salt) = (master.key(), master.salt());
        prf(key, salt, 0x00, &mut keys.rtp_key);
        prf(key, salt, 0x01, &mut keys.rtp_auth);
        prf(key, salt, 0x02, &mut keys.rtp_salt);
        prf(key, salt, 0x03, &mut keys.rtcp_key);
        prf(key, salt, 0x04, &mut keys.rtcp_auth);
        prf(key, salt, 0x05, &mut keys.rtcp_salt);
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
/// the AES-CM keystream from IV = x * 2^16, under AES-128 or, for a 32-byte
/// master key, AES-256 (RFC 7714 §11, as RFC 6188 does for AES-256-CM).
/// The AEAD suites' 12-byte master salt stands where RFC 3711's 14-byte one
/// does, with two zero bytes after it: the label stays in byte 7, as libsrtp
/// has it (its known answer is among the tests). `out` is filled with zeros
/// for a key of any other length, which a [`MasterKey`] cannot have.
fn prf(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    for (b, s) in iv.iter_mut().zip(master_salt.iter().take(SALT_LEN)) {
        *b = *s;
    }
    iv[7] ^= label;
    out.fill(0);
    if let Ok(k) = <[u8; KEY_256_LEN]>::try_from(master_key) {
        aes_cm_xor(&Aes256::new(&k.into()), &iv, out);
    } else if let Ok(k) = <[u8; KEY_LEN]>::try_from(master_key) {
        aes_cm_xor(&Aes128::new(&k.into()), &iv, out);
    }
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
/// time so AES-NI can pipeline them. Generic over the key size for the
/// AES-256 PRF of AEAD_AES_256_GCM.
fn aes_cm_xor<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>>(cipher: &C, iv: &[u8; 16], data: &mut [u8]) {
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

/// The SRTP tag input of the AES-CM suites: the authenticated portion, then
/// the rollover counter (RFC 3711 §4.2).
fn rtp_mac(mac: &HmacSha1, authed: &[u8], roc: u32) -> HmacSha1 {
    let mut mac = mac.clone();
    mac.update(authed);
    mac.update(&roc.to_be_bytes());
    mac
}

/// An AES-GCM session key of either size. Boxed: the expanded keys and
/// GHASH tables take up to a kilobyte, allocated once per context.
enum Gcm {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Gcm {
    fn new(key: &[u8]) -> Option<Self> {
        if let Ok(k) = <[u8; KEY_256_LEN]>::try_from(key) {
            Some(Gcm::Aes256(Box::new(Aes256Gcm::new(&k.into()))))
        } else if let Ok(k) = <[u8; KEY_LEN]>::try_from(key) {
            Some(Gcm::Aes128(Box::new(Aes128Gcm::new(&k.into()))))
        } else {
            None
        }
    }

    /// Encrypts `data` in place and returns the tag over `aad` and the
    /// ciphertext.
    fn seal(&self, iv: &[u8; AEAD_IV_LEN], aad: &[u8], data: &mut [u8]) -> Result<[u8; AEAD_TAG_LEN], MediaError> {
        let nonce = aes_gcm::Nonce::<U12>::from(*iv);
        let tag = match self {
            Gcm::Aes128(c) => c.encrypt_in_place_detached(&nonce, aad, data),
            Gcm::Aes256(c) => c.encrypt_in_place_detached(&nonce, aad, data),
        };
        // GCM refuses only inputs longer than GCM_MAX_LEN, which no
        // datagram comes near.
        tag.map(Into::into).map_err(|_| MediaError::TooLarge { len: data.len(), max: GCM_MAX_LEN })
    }

    /// Checks `tag` over `aad` and the ciphertext `data`, then decrypts
    /// `data` in place. Any mismatch is [`MediaError::SrtpAuthFailed`].
    fn open(&self, iv: &[u8; AEAD_IV_LEN], aad: &[u8], data: &mut [u8], tag: &[u8]) -> Result<(), MediaError> {
        let tag: [u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| MediaError::SrtpAuthFailed)?;
        let tag = aes_gcm::Tag::<U16>::from(tag);
        let nonce = aes_gcm::Nonce::<U12>::from(*iv);
        match self {
            Gcm::Aes128(c) => c.decrypt_in_place_detached(&nonce, aad, data, &tag),
            Gcm::Aes256(c) => c.decrypt_in_place_detached(&nonce, aad, data, &tag),
        }
        .map_err(|_| MediaError::SrtpAuthFailed)
    }
}

/// The AES-GCM nonce of an SRTP packet (RFC 7714 §8.1): the salt XOR
/// 00 00 || SSRC || ROC || SEQ, where ROC || SEQ is the 48-bit packet index.
fn gcm_rtp_iv(salt: &[u8; AEAD_SALT_LEN], ssrc: u32, index: u64) -> [u8; AEAD_IV_LEN] {
    let mut iv = *salt;
    for (b, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[6..12].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= *s;
    }
    iv
}

/// The AES-GCM nonce of an SRTCP packet (RFC 7714 §9.1): the salt XOR
/// 00 00 || SSRC || 00 00 || 0 || the 31-bit SRTCP index.
fn gcm_rtcp_iv(salt: &[u8; AEAD_SALT_LEN], ssrc: u32, index: u64) -> [u8; AEAD_IV_LEN] {
    let mut iv = *salt;
    for (b, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..12].iter_mut().zip(&index.to_be_bytes()[4..]) {
        *b ^= *s;
    }
    iv
}

/// The session keys of one of SRTP and SRTCP, in the form its suite uses.
// Two per context, made once and never moved per packet: boxing the AES-CM
// keys to even out the variants would only add an indirection.
#[allow(clippy::large_enum_variant)]
enum Protection {
    /// AES-CM encryption and an HMAC-SHA1 tag (RFC 3711).
    AesCm { cipher: Aes128, salt: [u8; SALT_LEN], mac: HmacSha1 },
    /// AES-GCM (RFC 7714).
    Gcm { aead: Gcm, salt: [u8; AEAD_SALT_LEN] },
}

/// What a context protects SRTP and SRTCP with.
struct Keys {
    rtp: Protection,
    rtcp: Protection,
}

impl Keys {
    /// The session keys of `suite` under `master`; Err when the key's
    /// lengths are another suite's.
    fn derive(suite: SrtpSuite, master: &MasterKey) -> Result<Self, MediaError> {
        if !master.fits(suite) {
            return Err(KEY_MISMATCH);
        }
        if !suite.is_aead() {
            let k = SessionKeys::derive(master);
            let aes_cm = |key: &[u8; KEY_LEN], salt, auth| Protection::AesCm {
                cipher: Aes128::new(&(*key).into()),
                salt,
                mac: hmac_sha1(auth),
            };
            return Ok(Self {
                rtp: aes_cm(&k.rtp_key, k.rtp_salt, &k.rtp_auth),
                rtcp: aes_cm(&k.rtcp_key, k.rtcp_salt, &k.rtcp_auth),
            });
        }
        // RFC 7714 §11: the encryption keys (labels 0 and 3) are as long as
        // the master key, the salts (labels 2 and 5) 12 bytes; the
        // authentication key labels go unused, GCM needing no separate key.
        let (key, salt) = (master.key(), master.salt());
        let gcm = |key_label: u8, salt_label: u8| -> Result<Protection, MediaError> {
            let mut session_key = [0u8; KEY_256_LEN];
            let session_key = session_key.get_mut(..key.len()).ok_or(KEY_MISMATCH)?;
            prf(key, salt, key_label, session_key);
            let mut session_salt = [0u8; AEAD_SALT_LEN];
            prf(key, salt, salt_label, &mut session_salt);
            Ok(Protection::Gcm { aead: Gcm::new(session_key).ok_or(KEY_MISMATCH)?, salt: session_salt })
        };
        Ok(Self { rtp: gcm(0x00, 0x02)?, rtcp: gcm(0x03, 0x05)? })
    }
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
    /// The first of a media section's `a=crypto` values that we can use
    /// as it is: it parses, has no MKI, and no session parameter we do not
    /// support (RFC 4568 §6.1: the answerer picks one the offerer listed).
    pub fn first_usable<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<CryptoAttr> {
        values.into_iter().filter_map(|v| CryptoAttr::parse(v).ok()).find(|c| c.mki.is_none() && c.check_supported().is_ok())
    }

    /// Parses the value after `a=crypto:`. Never panics; any syntax error,
    /// unknown suite, non-base64 key or key of another suite's length gives
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
        if !key.fits(suite) {
            return Err(bad("inline key length does not match the crypto suite"));
        }
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
/// below it (bit n = highest - n was accepted). An empty bitmap marks a
/// stream whose rollover counter was set before its first packet
/// ([`SrtpContext::set_recv_roc`]): `highest` then holds only that ROC,
/// and every index from it on is new.
#[derive(Debug, Clone, Copy)]
struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    fn new(index: u64) -> Self {
        Self { highest: index, seen: 1 }
    }

    /// A stream not yet seen that starts at rollover counter `roc`.
    fn starting_at(roc: u32) -> Self {
        Self { highest: u64::from(roc) << 16, seen: 0 }
    }

    fn is_started(&self) -> bool {
        // Every accepted index sets bit 0 (the highest is always accepted),
        // so only a window made by `starting_at` has none set.
        self.seen != 0
    }

    /// The packet index and rollover counter of `seq` on this stream.
    fn estimate(&self, seq: u16) -> Result<(u64, u32), MediaError> {
        if !self.is_started() {
            // RFC 3711 §3.3.1: the first packet is taken at the given ROC
            // with its own SEQ as s_l, however far from 0 that SEQ is.
            let roc = (self.highest >> 16) as u32;
            return Ok(((u64::from(roc) << 16) | u64::from(seq), roc));
        }
        estimate_index(self.highest, seq)
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

/// Starts `ssrc` in `map` at rollover counter `roc`, unless it has started.
fn start_at_roc(map: &mut HashMap<u32, ReplayWindow>, ssrc: u32, roc: u32) -> Result<(), MediaError> {
    if map.get(&ssrc).is_some_and(ReplayWindow::is_started) {
        return Err(MediaError::BadCryptoAttr("the stream already has a rollover counter from its packets"));
    }
    insert_bounded(map, ssrc, ReplayWindow::starting_at(roc))
}

/// How many SSRCs of `theirs` `mine` has no entry for.
fn missing<V, W>(mine: &HashMap<u32, V>, theirs: &HashMap<u32, W>) -> usize {
    theirs.keys().filter(|ssrc| !mine.contains_key(ssrc)).count()
}

/// `s` split `n` bytes before its end.
fn split_tail(s: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    s.len().checked_sub(n).and_then(|at| s.split_at_checked(at))
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
/// principle 4). Re-create the context only when the key changes, and then
/// decide whether the peer keeps counting ([`SrtpContext::continue_from`])
/// or starts over (a fresh context, every SSRC at ROC 0).
///
/// The index of each SSRC is estimated from the sequence number on both the
/// send and the receive side, so reordered packets handed to
/// [`SrtpContext::protect_rtp`] are fine; a sequence number that jumps by
/// more than 2^15 on one SSRC is read as old, as every RFC 3711 receiver
/// would. A relay that switches sources under one SSRC must renumber.
pub struct SrtpContext {
    suite: SrtpSuite,
    mki: Vec<u8>,
    /// None when the master key has another suite's lengths: every packet
    /// is then refused with [`KEY_MISMATCH`].
    keys: Option<Keys>,
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
            .field("key_fits_suite", &self.keys.is_some())
            .field("mki_len", &self.mki.len())
            .field("rtp_tx_ssrcs", &self.rtp_tx.len())
            .field("rtp_rx_ssrcs", &self.rtp_rx.len())
            .field("rtcp_tx_ssrcs", &self.rtcp_tx.len())
            .field("rtcp_rx_ssrcs", &self.rtcp_rx.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    fn with_keys(suite: SrtpSuite, keys: Option<Keys>) -> Self {
        Self {
            suite,
            mki: Vec::new(),
            keys,
            rtp_tx: HashMap::new(),
            rtp_rx: HashMap::new(),
            rtcp_tx: HashMap::new(),
            rtcp_rx: HashMap::new(),
        }
    }

    /// A context for `suite` under `key`, with no MKI in packets. Never
    /// fails, for callers that hold a key checked against its suite (as
    /// [`CryptoAttr::parse`] does); a key of another suite's length gives a
    /// context that refuses every packet with [`MediaError::BadCryptoAttr`].
    /// [`SrtpContext::try_new`] says so at once instead.
    pub fn new(suite: SrtpSuite, key: &MasterKey) -> Self {
        Self::with_keys(suite, Keys::derive(suite, key).ok())
    }

    /// [`SrtpContext::new`], or Err when `key` does not fit `suite`
    /// ([`MasterKey::fits`]).
    pub fn try_new(suite: SrtpSuite, key: &MasterKey) -> Result<Self, MediaError> {
        Keys::derive(suite, key).map(|keys| Self::with_keys(suite, Some(keys)))
    }

    /// A context whose packets carry `mki` (1 to 128 bytes) between the
    /// encrypted part and the tag (after the tag for the AEAD suites,
    /// RFC 7714 §8); received packets must carry the same. Err for a key
    /// that does not fit the suite.
    pub fn with_mki(suite: SrtpSuite, key: &MasterKey, mki: &[u8]) -> Result<Self, MediaError> {
        if mki.is_empty() || mki.len() > MAX_MKI_LEN {
            return Err(MediaError::BadCryptoAttr("MKI must be 1 to 128 bytes"));
        }
        let mut ctx = Self::try_new(suite, key)?;
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
            None => Self::try_new(attr.suite, &attr.key),
        }
    }

    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The rollover counter of what we send on `ssrc`, once we have sent
    /// (or once [`SrtpContext::set_send_roc`] set it).
    pub fn send_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_tx.get(&ssrc).map(|w| (w.highest >> 16) as u32)
    }

    /// The rollover counter of what we receive on `ssrc`, once a packet
    /// authenticated (or once [`SrtpContext::set_recv_roc`] set it).
    pub fn recv_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_rx.get(&ssrc).map(|w| (w.highest >> 16) as u32)
    }

    /// Starts what we send on `ssrc` at rollover counter `roc` instead of 0,
    /// for a stream this context takes over part-way whose receiver counts
    /// on: the first packet gets index `roc` * 2^16 + SEQ (RFC 3711 §3.3.1)
    /// and later ones follow from it. Err once a packet was sent on `ssrc`
    /// (its counter then comes from the packets; moving it could send two
    /// payloads under one index) or when the table is full.
    pub fn set_send_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), MediaError> {
        start_at_roc(&mut self.rtp_tx, ssrc, roc)
    }

    /// Starts what we receive on `ssrc` at rollover counter `roc` instead of
    /// 0: for a receiver joining a stream whose sender has wrapped its
    /// sequence number, which RFC 3711 §3.3.1 has learn the ROC out of band.
    /// Err once a packet on `ssrc` authenticated, or when the table is full.
    pub fn set_recv_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), MediaError> {
        start_at_roc(&mut self.rtp_rx, ssrc, roc)
    }

    /// Carries on from `old`, the context of the previous key, for a re-key
    /// (a changed `a=crypto` in a new SDP) after which the peer keeps
    /// counting: per SSRC, the SRTP rollover counter, highest index and
    /// replay window of what was sent and received, and the SRTCP index and
    /// replay window. Because the receive side continues from the highest
    /// index, not from a bare ROC, it follows a sender that wrapped while
    /// the re-key was under way. SSRCs this context already has state for
    /// keep their own. Err, changing nothing, when a table would outgrow
    /// [`MAX_SSRCS`]. When the peer starts over at ROC 0 instead, use the
    /// new context as it is.
    pub fn continue_from(&mut self, old: &SrtpContext) -> Result<(), MediaError> {
        let grows = [
            self.rtp_tx.len() + missing(&self.rtp_tx, &old.rtp_tx),
            self.rtp_rx.len() + missing(&self.rtp_rx, &old.rtp_rx),
            self.rtcp_tx.len() + missing(&self.rtcp_tx, &old.rtcp_tx),
            self.rtcp_rx.len() + missing(&self.rtcp_rx, &old.rtcp_rx),
        ];
        if grows.iter().any(|n| *n > MAX_SSRCS) {
            return Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS });
        }
        for (ssrc, w) in &old.rtp_tx {
            self.rtp_tx.entry(*ssrc).or_insert(*w);
        }
        for (ssrc, w) in &old.rtp_rx {
            self.rtp_rx.entry(*ssrc).or_insert(*w);
        }
        for (ssrc, next) in &old.rtcp_tx {
            self.rtcp_tx.entry(*ssrc).or_insert(*next);
        }
        for (ssrc, w) in &old.rtcp_rx {
            self.rtcp_rx.entry(*ssrc).or_insert(*w);
        }
        Ok(())
    }

    /// Encrypts the payload of an RTP packet and appends MKI and tag.
    /// Err for a packet that is not RTP, for an index already sent on that
    /// SSRC (sending two payloads under one index would reuse keystream, and
    /// with AES-GCM also give away the authentication key), or when the key
    /// is used up.
    pub fn protect_rtp(&mut self, rtp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let keys = self.keys.as_ref().ok_or(KEY_MISMATCH)?;
        let hdr = RtpHeader::parse(rtp)?;
        let (index, roc) = match self.rtp_tx.get(&hdr.ssrc) {
            Some(w) => {
                let (index, roc) = w.estimate(hdr.sequence)?;
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
        match &keys.rtp {
            Protection::AesCm { cipher, salt, mac } => {
                let iv = aes_cm_iv(salt, hdr.ssrc, index);
                if let Some(payload) = out.get_mut(hdr.payload_offset..) {
                    aes_cm_xor(cipher, &iv, payload);
                }
                let tag = rtp_mac(mac, &out, roc).finalize().into_bytes();
                out.extend_from_slice(&self.mki);
                out.extend_from_slice(tag.get(..tag_len).unwrap_or_default());
            }
            Protection::Gcm { aead, salt } => {
                // The header with its CSRCs and extension is the associated
                // data, the payload the plaintext; the ROC is in the nonce.
                let iv = gcm_rtp_iv(salt, hdr.ssrc, index);
                let need = hdr.payload_offset;
                let (header, payload) = out
                    .split_at_mut_checked(hdr.payload_offset)
                    .ok_or(MediaError::TooShort { need, have: rtp.len() })?;
                let tag = aead.seal(&iv, header, payload)?;
                out.extend_from_slice(&tag);
                out.extend_from_slice(&self.mki);
            }
        }
        if let Some(w) = self.rtp_tx.get_mut(&hdr.ssrc) {
            w.accept(index);
        }
        Ok(out)
    }

    /// Checks MKI, replay window and tag of an SRTP packet, then decrypts it.
    /// The rollover counter and the window move only when the tag is good.
    /// The result is the plain RTP packet, padding included.
    pub fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let keys = self.keys.as_ref().ok_or(KEY_MISMATCH)?;
        let tag_len = self.suite.rtp_tag_len();
        let trailer = self.mki.len() + tag_len;
        let have = srtp.len();
        let too_short = MediaError::TooShort { need: RTP_HEADER_LEN + trailer, have };
        let (body, rest) = split_tail(srtp, trailer)
            .filter(|(body, _)| body.len() >= RTP_HEADER_LEN)
            .ok_or(too_short)?;
        // RFC 3711 puts the MKI before the tag; RFC 7714 §8 puts it after
        // the AEAD output, whose last bytes are the tag.
        let (mki, tag) = match keys.rtp {
            Protection::AesCm { .. } => rest.split_at_checked(self.mki.len()),
            Protection::Gcm { .. } => rest.split_at_checked(tag_len).map(|(tag, mki)| (mki, tag)),
        }
        .ok_or(too_short)?;
        let hdr = RtpHeader::parse(body)?;
        if mki != self.mki.as_slice() {
            return Err(MediaError::SrtpUnknownMki);
        }

        let known = self.rtp_rx.get(&hdr.ssrc).copied();
        let (index, roc) = match known {
            Some(w) => {
                let (index, roc) = w.estimate(hdr.sequence)?;
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

        let mut out = body.to_vec();
        match &keys.rtp {
            Protection::AesCm { cipher, salt, mac } => {
                rtp_mac(mac, body, roc).verify_truncated_left(tag).map_err(|_| MediaError::SrtpAuthFailed)?;
                let iv = aes_cm_iv(salt, hdr.ssrc, index);
                if let Some(payload) = out.get_mut(hdr.payload_offset..) {
                    aes_cm_xor(cipher, &iv, payload);
                }
            }
            Protection::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, hdr.ssrc, index);
                let (header, payload) = out.split_at_mut_checked(hdr.payload_offset).ok_or(too_short)?;
                aead.open(&iv, header, payload, tag)?;
            }
        }
        match self.rtp_rx.get_mut(&hdr.ssrc) {
            Some(w) => w.accept(index),
            None => insert_bounded(&mut self.rtp_rx, hdr.ssrc, ReplayWindow::new(index))?,
        }
        Ok(out)
    }

    /// Encrypts an RTCP compound packet after its first 8 bytes, appends the
    /// E flag and SRTCP index, the MKI and the tag (for the AEAD suites the
    /// tag comes first and the E flag and index are associated data,
    /// RFC 7714 §9). The SRTCP index counts from 0 per sender SSRC
    /// (RFC 3711 §3.4).
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let keys = self.keys.as_ref().ok_or(KEY_MISMATCH)?;
        let ssrc = rtcp_sender_ssrc(rtcp)?;
        let index = self.rtcp_tx.get(&ssrc).copied().unwrap_or(0);
        if index > MAX_SRTCP_INDEX {
            return Err(MediaError::SrtpKeyExhausted);
        }
        insert_bounded(&mut self.rtcp_tx, ssrc, index + 1)?;

        let tag_len = self.suite.rtcp_tag_len();
        let mut out = Vec::with_capacity(rtcp.len() + SRTCP_INDEX_LEN + self.mki.len() + tag_len);
        out.extend_from_slice(rtcp);
        // index <= 2^31 - 1, so it fits the 31 bits beside the E flag.
        let e_index = (SRTCP_E_FLAG | (index as u32)).to_be_bytes();
        match &keys.rtcp {
            Protection::AesCm { cipher, salt, mac } => {
                let iv = aes_cm_iv(salt, ssrc, index);
                if let Some(body) = out.get_mut(RTCP_HEADER_LEN..) {
                    aes_cm_xor(cipher, &iv, body);
                }
                out.extend_from_slice(&e_index);
                let mut mac = mac.clone();
                mac.update(&out);
                let tag = mac.finalize().into_bytes();
                out.extend_from_slice(&self.mki);
                out.extend_from_slice(tag.get(..tag_len).unwrap_or_default());
            }
            Protection::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let too_short = MediaError::TooShort { need: RTCP_HEADER_LEN, have: rtcp.len() };
                let (head, body) = out.split_at_mut_checked(RTCP_HEADER_LEN).ok_or(too_short)?;
                let aad = rtcp_aad(head, &e_index);
                let tag = aead.seal(&iv, &aad, body)?;
                out.extend_from_slice(&tag);
                out.extend_from_slice(&e_index);
                out.extend_from_slice(&self.mki);
            }
        }
        Ok(out)
    }

    /// Checks MKI, tag and replay window of an SRTCP packet, then decrypts it
    /// if its E flag is set. The result is the plain RTCP compound packet.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let keys = self.keys.as_ref().ok_or(KEY_MISMATCH)?;
        let tag_len = self.suite.rtcp_tag_len();
        let mki_len = self.mki.len();
        let have = srtcp.len();
        let too_short = MediaError::TooShort { need: RTCP_HEADER_LEN + SRTCP_INDEX_LEN + mki_len + tag_len, have };
        if have < RTCP_HEADER_LEN + SRTCP_INDEX_LEN + mki_len + tag_len {
            return Err(too_short);
        }
        // RFC 3711 §3.4: header, body, E flag and index, MKI, tag.
        // RFC 7714 §9: header, body, tag, E flag and index, MKI.
        let (body, tag, e_index, mki) = match keys.rtcp {
            Protection::AesCm { .. } => {
                let (authed, mki_tag) = split_tail(srtcp, mki_len + tag_len).ok_or(too_short)?;
                let (body, e_index) = split_tail(authed, SRTCP_INDEX_LEN).ok_or(too_short)?;
                let (mki, tag) = mki_tag.split_at_checked(mki_len).ok_or(too_short)?;
                (body, tag, e_index, mki)
            }
            Protection::Gcm { .. } => {
                let (sealed, e_index_mki) = split_tail(srtcp, SRTCP_INDEX_LEN + mki_len).ok_or(too_short)?;
                let (body, tag) = split_tail(sealed, tag_len).ok_or(too_short)?;
                let (e_index, mki) = e_index_mki.split_at_checked(SRTCP_INDEX_LEN).ok_or(too_short)?;
                (body, tag, e_index, mki)
            }
        };
        let ssrc = rtcp_sender_ssrc(body)?;
        if mki != self.mki.as_slice() {
            return Err(MediaError::SrtpUnknownMki);
        }
        let e_index: [u8; SRTCP_INDEX_LEN] = e_index.try_into().map_err(|_| too_short)?;
        let encrypted = u32::from_be_bytes(e_index) & SRTCP_E_FLAG != 0;
        let index = u64::from(u32::from_be_bytes(e_index) & !SRTCP_E_FLAG);

        let known = self.rtcp_rx.get(&ssrc).copied();
        match known {
            Some(w) => w.check(index)?,
            None if self.rtcp_rx.len() >= MAX_SSRCS => {
                return Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS })
            }
            None => {}
        }

        let mut out = body.to_vec();
        match &keys.rtcp {
            Protection::AesCm { cipher, salt, mac } => {
                let mut mac = mac.clone();
                mac.update(body);
                mac.update(&e_index);
                mac.verify_truncated_left(tag).map_err(|_| MediaError::SrtpAuthFailed)?;
                if encrypted {
                    let iv = aes_cm_iv(salt, ssrc, index);
                    if let Some(rest) = out.get_mut(RTCP_HEADER_LEN..) {
                        aes_cm_xor(cipher, &iv, rest);
                    }
                }
            }
            Protection::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                if encrypted {
                    let (head, rest) = out.split_at_mut_checked(RTCP_HEADER_LEN).ok_or(too_short)?;
                    aead.open(&iv, &rtcp_aad(head, &e_index), rest, tag)?;
                } else {
                    // RFC 7714 §9.2 (E = 0): the whole packet and the E flag
                    // and index are associated data, the plaintext empty.
                    let aad: Vec<u8> = body.iter().chain(&e_index).copied().collect();
                    aead.open(&iv, &aad, &mut [], tag)?;
                }
            }
        }
        match self.rtcp_rx.get_mut(&ssrc) {
            Some(w) => w.accept(index),
            None => insert_bounded(&mut self.rtcp_rx, ssrc, ReplayWindow::new(index))?,
        }
        Ok(out)
    }
}

/// The associated data of an encrypted AEAD SRTCP packet (RFC 7714 §9.2):
/// the 8 clear bytes of the RTCP header, then the E flag and SRTCP index.
fn rtcp_aad(head: &[u8], e_index: &[u8; SRTCP_INDEX_LEN]) -> [u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN] {
    let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
    for (a, b) in aad.iter_mut().zip(head.iter().take(RTCP_HEADER_LEN).chain(e_index)) {
        *a = *b;
    }
    aad
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

#[cfg(test)]
mod tests {
    //! The AEAD suites against RFC 7714's vectors and libsrtp's known answer,
    //! and the packet index for every suite: rollover, reordering and loss
    //! around the wrap, receivers joining mid-stream, re-keying, the replay
    //! window. tests/srtp.rs holds the AES-CM vectors, the a=crypto grammar
    //! and the hostile-input runs for AES-CM.
    use super::*;

    const SSRC: u32 = 0x0bad_cafe;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().unwrap()
    }

    /// A master key of the lengths `suite` takes, different per seed.
    fn key_for(suite: SrtpSuite, seed: u8) -> MasterKey {
        let b: Vec<u8> =
            (0..suite.master_len()).map(|i| seed.wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(7))).collect();
        MasterKey::from_slice(&b).unwrap()
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
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        p
    }

    /// A 20 ms G.711 packet on `ssrc` whose payload depends on `seq`.
    fn pkt(seq: u16, ssrc: u32) -> Vec<u8> {
        let payload: Vec<u8> = (0..160u16).map(|i| (i ^ seq) as u8).collect();
        rtp(seq, ssrc, &[], None, &payload)
    }

    fn pair(suite: SrtpSuite) -> (SrtpContext, SrtpContext) {
        let k = key_for(suite, 1);
        (SrtpContext::new(suite, &k), SrtpContext::new(suite, &k))
    }

    fn rtcp_rr(ssrc: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(fill, 24));
        p.extend_from_slice(&[0x81, 202, 0, 1]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    /// Sends `seqs` on `tx`, keeping (seq, packet).
    fn send(tx: &mut SrtpContext, seqs: impl IntoIterator<Item = u16>) -> Vec<(u16, Vec<u8>)> {
        seqs.into_iter().map(|s| (s, tx.protect_rtp(&pkt(s, SSRC)).unwrap())).collect()
    }

    /// Hands `packets` to `rx`, each of which must come out as sent.
    fn deliver(rx: &mut SrtpContext, packets: &[(u16, Vec<u8>)], what: &str) {
        for (s, p) in packets {
            assert_eq!(rx.unprotect_rtp(p).as_ref(), Ok(&pkt(*s, SSRC)), "{what}: seq {s}");
        }
    }

    /// Whether a receiver that knows only that `ssrc` is at `roc` takes
    /// `packet`: says which rollover counter a packet was protected under.
    fn protected_under(suite: SrtpSuite, key: &MasterKey, packet: &[u8], roc: u32) -> bool {
        let mut probe = SrtpContext::new(suite, key);
        probe.set_recv_roc(SSRC, roc).unwrap();
        probe.unprotect_rtp(packet).is_ok()
    }

    // ---- RFC 7714 §16 and §17 ----
    // Session key and salt as the RFC gives them ("Quid pro quo"), SSRC
    // 5501a0b2, ROC 0, SEQ f17b, "Gallia est omnis divisa in partes tres";
    // SRTCP: sender report from SSRC 4d617273 ("Mars") with index 5d4.

    const RFC7714_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
    const RFC7714_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const RFC7714_SALT: &str = "517569642070726f2071756f";
    const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2
        47616c6c 69612065 7374206f 6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573";
    const RFC7714_SRTP_128: &str = "8040f17b 8041f8d3 5501a0b2
        f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833
        899d7f27 beb16a91 52cf765e e4390cce";
    const RFC7714_SRTP_256: &str = "8040f17b 8041f8d3 5501a0b2
        32b1de78 a822fe12 ef9f78fa 332e33aa b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b
        7aa3db36 dfffd6b0 f9bb7878 d7a76c13";
    const RFC7714_RTCP: &str = "81c8000d 4d617273
        4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
    const RFC7714_SRTCP_128: &str = "81c8000d 4d617273
        63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b
        c84aa458 96cf4d2f c5abf872 45d9eade 800005d4";
    const RFC7714_SRTCP_256: &str = "81c8000d 4d617273
        d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad
        1d1eb30c 4446839f 57ff6f6c b26ac3be 800005d4";
    /// §17.3 and §17.4: E = 0, the packet tagged but not encrypted.
    const RFC7714_SRTCP_TAG_ONLY_128: &str = "81c8000d 4d617273
        4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
        841dd968 3dd78ec9 2ae58790 125f62b3 000005d4";
    const RFC7714_SRTCP_TAG_ONLY_256: &str = "81c8000d 4d617273
        4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
        91db4afb feee5a97 8fab4393 ed2615fe 000005d4";
    const RFC7714_RTCP_SSRC: u32 = 0x4d61_7273;
    const RFC7714_RTCP_INDEX: u64 = 0x5d4;

    /// A context keyed with session key and salt directly, as the RFC
    /// vectors give them (they start after key derivation).
    fn rfc7714_context(suite: SrtpSuite) -> SrtpContext {
        let key = hex(if suite == SrtpSuite::AeadAes256Gcm { RFC7714_KEY_256 } else { RFC7714_KEY_128 });
        let protection = || Protection::Gcm { aead: Gcm::new(&key).unwrap(), salt: arr(RFC7714_SALT) };
        SrtpContext::with_keys(suite, Some(Keys { rtp: protection(), rtcp: protection() }))
    }

    #[test]
    fn rfc7714_nonces() {
        let salt = arr(RFC7714_SALT);
        assert_eq!(gcm_rtp_iv(&salt, 0x5501_a0b2, 0xf17b), arr::<12>("51753c6580c2726f20718414"));
        assert_eq!(
            gcm_rtcp_iv(&salt, RFC7714_RTCP_SSRC, RFC7714_RTCP_INDEX),
            arr::<12>("517524055203726f207170bb")
        );
        // The ROC lands in bytes 6..10, the SRTCP index in bytes 8..12.
        assert_eq!(gcm_rtp_iv(&[0; 12], 0, 0xffff_ffff_ffff), arr::<12>("000000000000ffffffffffff"));
        assert_eq!(gcm_rtcp_iv(&[0; 12], 0, MAX_SRTCP_INDEX), arr::<12>("00000000000000007fffffff"));
    }

    #[test]
    fn rfc7714_16_srtp_encryption_and_decryption() {
        for (suite, protected) in
            [(SrtpSuite::AeadAes128Gcm, RFC7714_SRTP_128), (SrtpSuite::AeadAes256Gcm, RFC7714_SRTP_256)]
        {
            let mut tx = rfc7714_context(suite);
            assert_eq!(tx.protect_rtp(&hex(RFC7714_RTP)).unwrap(), hex(protected), "{suite}");
            let mut rx = rfc7714_context(suite);
            assert_eq!(rx.unprotect_rtp(&hex(protected)).unwrap(), hex(RFC7714_RTP), "{suite}");
            assert_eq!(rx.recv_roc(0x5501_a0b2), Some(0));
            assert_eq!(rx.unprotect_rtp(&hex(protected)), Err(MediaError::SrtpReplay { index: 0xf17b }));
        }
    }

    #[test]
    fn rfc7714_17_srtcp_encryption_and_decryption() {
        for (suite, protected) in
            [(SrtpSuite::AeadAes128Gcm, RFC7714_SRTCP_128), (SrtpSuite::AeadAes256Gcm, RFC7714_SRTCP_256)]
        {
            let mut tx = rfc7714_context(suite);
            tx.rtcp_tx.insert(RFC7714_RTCP_SSRC, RFC7714_RTCP_INDEX);
            assert_eq!(tx.protect_rtcp(&hex(RFC7714_RTCP)).unwrap(), hex(protected), "{suite}");
            let mut rx = rfc7714_context(suite);
            assert_eq!(rx.unprotect_rtcp(&hex(protected)).unwrap(), hex(RFC7714_RTCP), "{suite}");
            assert_eq!(
                rx.unprotect_rtcp(&hex(protected)),
                Err(MediaError::SrtpReplay { index: RFC7714_RTCP_INDEX })
            );
        }
    }

    #[test]
    fn rfc7714_17_srtcp_tag_only_verification() {
        for (suite, protected) in [
            (SrtpSuite::AeadAes128Gcm, RFC7714_SRTCP_TAG_ONLY_128),
            (SrtpSuite::AeadAes256Gcm, RFC7714_SRTCP_TAG_ONLY_256),
        ] {
            let mut rx = rfc7714_context(suite);
            assert_eq!(rx.unprotect_rtcp(&hex(protected)).unwrap(), hex(RFC7714_RTCP), "{suite}");
            // The body is associated data: a flipped bit in it is caught.
            let mut bad = hex(protected);
            bad[20] ^= 0x01;
            assert_eq!(rfc7714_context(suite).unprotect_rtcp(&bad), Err(MediaError::SrtpAuthFailed));
        }
    }

    // ---- Key derivation ----

    #[test]
    fn rfc3711_b3_key_derivation_through_from_parts() {
        let master =
            MasterKey::from_parts(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"), &hex("0EC675AD498AFEEBB6960B3AABE6"))
                .unwrap();
        let keys = SessionKeys::derive(&master);
        assert_eq!(keys.rtp_key, arr::<16>("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(keys.rtp_salt, arr::<14>("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(keys.rtp_auth, arr::<20>("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    #[test]
    fn rfc6188_aes_256_prf() {
        // RFC 6188 §7.2: the AES-256 PRF that AEAD_AES_256_GCM derives with.
        let key = hex("F0F04914B513F2763A1B1FA130F10E2998F6F6E43E4309D1E622A0E332B9F1B6");
        let salt = hex("3B04803DE51EE7C96423AB5B78D2");
        let mut cipher_key = [0u8; 32];
        prf(&key, &salt, 0x00, &mut cipher_key);
        assert_eq!(cipher_key, arr::<32>("5BA1064E30EC51613CAD926C5A28EF731EC7FB397F70A960653CAF06554CD8C4"));
        let mut cipher_salt = [0u8; 14];
        prf(&key, &salt, 0x02, &mut cipher_salt);
        assert_eq!(cipher_salt, arr::<14>("FA31791685CA444A9E07C6C64E93"));
    }

    // libSRTP's srtp_validate_gcm() known answer: master key 00..0f, master
    // salt a0..ab, through key derivation with the 12-byte salt. libSRTP
    // numbers its first SRTCP packet 1; we start at 0 (RFC 3711 §3.4).
    const LIBSRTP_GCM_KEY: &str = "000102030405060708090a0b0c0d0e0f a0a1a2a3a4a5a6a7a8a9aaab";
    const LIBSRTP_RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
    const LIBSRTP_SRTP_GCM: &str =
        "800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e d2976826f796b201df3131a127e8a392";
    const LIBSRTP_RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";
    const LIBSRTP_SRTCP_GCM_INDEX1: &str =
        "81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025 c52c6fbea2b3b446ea31123ba88ce61e 80000001";

    #[test]
    fn libsrtp_aead_aes_128_gcm_known_answer() {
        let suite = SrtpSuite::AeadAes128Gcm;
        let master = MasterKey::from_slice(&hex(LIBSRTP_GCM_KEY)).unwrap();
        let mut tx = SrtpContext::try_new(suite, &master).unwrap();
        assert_eq!(tx.protect_rtp(&hex(LIBSRTP_RTP_PLAIN)).unwrap(), hex(LIBSRTP_SRTP_GCM));
        let mut rx = SrtpContext::try_new(suite, &master).unwrap();
        assert_eq!(rx.unprotect_rtp(&hex(LIBSRTP_SRTP_GCM)).unwrap(), hex(LIBSRTP_RTP_PLAIN));

        let first = tx.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap();
        assert_eq!(first[first.len() - 4..], [0x80, 0, 0, 0]);
        assert_eq!(tx.protect_rtcp(&hex(LIBSRTP_RTCP_PLAIN)).unwrap(), hex(LIBSRTP_SRTCP_GCM_INDEX1));
        assert_eq!(rx.unprotect_rtcp(&hex(LIBSRTP_SRTCP_GCM_INDEX1)).unwrap(), hex(LIBSRTP_RTCP_PLAIN));
    }

    // ---- AEAD round trips, layout, tampering ----

    const AEAD: [SrtpSuite; 2] = [SrtpSuite::AeadAes128Gcm, SrtpSuite::AeadAes256Gcm];

    #[test]
    fn aead_round_trip_with_csrcs_and_extension() {
        let ext = [0x10u8, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0];
        type Shape<'a> = (&'a [u32], Option<(u16, &'a [u8])>);
        let shapes: [Shape; 4] =
            [(&[], None), (&[1, 2], None), (&[], Some((0xbede, &ext))), (&[3], Some((0x1000, &ext)))];
        for suite in AEAD {
            let (mut tx, mut rx) = pair(suite);
            for (i, (csrcs, ext)) in shapes.into_iter().enumerate() {
                let seq = 100 + i as u16;
                let plain = rtp(seq, SSRC, csrcs, ext, b"Gallia est omnis divisa in partes tres");
                let header_len = plain.len() - 38;
                let srtp = tx.protect_rtp(&plain).unwrap();
                assert_eq!(srtp.len(), plain.len() + 16);
                assert_eq!(srtp[..header_len], plain[..header_len], "{suite} shape {i}: header in the clear");
                assert_ne!(srtp[header_len..plain.len()], plain[header_len..], "{suite} shape {i}");
                assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain, "{suite} shape {i}");

                // Every byte of header, CSRCs and extension is authenticated.
                for byte in [1, 3, 7, 11, header_len - 1] {
                    let mut bad = srtp.clone();
                    bad[byte] ^= 0x40;
                    let mut fresh = SrtpContext::new(suite, &key_for(suite, 1));
                    assert!(fresh.unprotect_rtp(&bad).is_err(), "{suite} shape {i} byte {byte}");
                }
            }
            // An empty payload is still tagged.
            let empty = rtp(200, SSRC, &[], None, &[]);
            let srtp = tx.protect_rtp(&empty).unwrap();
            assert_eq!(srtp.len(), 12 + 16);
            assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), empty);
        }
    }

    #[test]
    fn aead_tampering_is_rejected_and_changes_nothing() {
        for suite in AEAD {
            let (mut tx, mut rx) = pair(suite);
            let plain = rtp(10, SSRC, &[5], None, &[7; 80]);
            let srtp = tx.protect_rtp(&plain).unwrap();
            for byte in [3, 12, 16, 40, srtp.len() - 16, srtp.len() - 1] {
                let mut bad = srtp.clone();
                bad[byte] ^= 0x01;
                assert_eq!(rx.unprotect_rtp(&bad), Err(MediaError::SrtpAuthFailed), "{suite} byte {byte}");
            }
            let mut short_tag = srtp.clone();
            short_tag.pop();
            assert!(rx.unprotect_rtp(&short_tag).is_err());
            assert_eq!(rx.recv_roc(SSRC), None, "{suite}: forgeries left no state");
            assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain);
            assert_eq!(rx.unprotect_rtp(&srtp), Err(MediaError::SrtpReplay { index: 10 }));

            // The other GCM key size fails.
            let other = AEAD.into_iter().find(|s| *s != suite).unwrap();
            let mut wrong = SrtpContext::new(other, &key_for(other, 1));
            assert_eq!(wrong.unprotect_rtp(&srtp), Err(MediaError::SrtpAuthFailed));
        }
    }

    #[test]
    fn forged_aead_packet_does_not_move_the_rollover_counter() {
        for suite in AEAD {
            let (mut tx, mut rx) = pair(suite);
            deliver(&mut rx, &send(&mut tx, 60000..60010), "before");
            // Seq 10 would mean ROC 1 if it were believed.
            let mut forged = pkt(10, SSRC);
            forged.extend_from_slice(&[0u8; 16]);
            assert_eq!(rx.unprotect_rtp(&forged), Err(MediaError::SrtpAuthFailed));
            assert_eq!(rx.recv_roc(SSRC), Some(0));
            deliver(&mut rx, &send(&mut tx, 60010..60020), "after");
        }
    }

    #[test]
    fn mki_goes_before_the_tag_for_aes_cm_and_after_it_for_aead() {
        for suite in SrtpSuite::SUPPORTED {
            let key = key_for(suite, 4);
            let attr = CryptoAttr::parse(&format!("1 {suite} inline:{}|2^20|258:4", key.to_inline())).unwrap();
            let mut tx = SrtpContext::from_crypto(&attr).unwrap();
            let mut rx = SrtpContext::from_crypto(&attr).unwrap();
            let plain = pkt(1, SSRC);
            let srtp = tx.protect_rtp(&plain).unwrap();
            let tag = suite.rtp_tag_len();
            assert_eq!(srtp.len(), plain.len() + 4 + tag);
            let mki_at = if suite.is_aead() { plain.len() + tag } else { plain.len() };
            assert_eq!(srtp[mki_at..mki_at + 4], [0, 0, 1, 2], "{suite}");
            assert_eq!(rx.unprotect_rtp(&srtp).unwrap(), plain);

            let rtcp = rtcp_rr(SSRC, 1);
            let srtcp = tx.protect_rtcp(&rtcp).unwrap();
            assert_eq!(srtcp.len(), rtcp.len() + 4 + 4 + suite.rtcp_tag_len());
            let mki_at = if suite.is_aead() { srtcp.len() - 4 } else { srtcp.len() - 4 - suite.rtcp_tag_len() };
            assert_eq!(srtcp[mki_at..mki_at + 4], [0, 0, 1, 2], "{suite}");
            assert_eq!(rx.unprotect_rtcp(&srtcp).unwrap(), rtcp);

            let mut other_mki = SrtpContext::with_mki(suite, &key, &[0, 0, 1, 3]).unwrap();
            assert_eq!(other_mki.unprotect_rtp(&srtp), Err(MediaError::SrtpUnknownMki));
            assert_eq!(other_mki.unprotect_rtcp(&srtcp), Err(MediaError::SrtpUnknownMki));
        }
    }

    #[test]
    fn aead_srtcp_layout_tamper_and_replay() {
        for suite in AEAD {
            let (mut tx, mut rx) = pair(suite);
            let mut protected = Vec::new();
            for i in 0..5u8 {
                let plain = rtcp_rr(0x5555, i);
                let srtcp = tx.protect_rtcp(&plain).unwrap();
                // Header, encrypted body, tag, then E flag and index.
                assert_eq!(srtcp.len(), plain.len() + 16 + 4);
                assert_eq!(srtcp[..8], plain[..8]);
                assert_ne!(srtcp[8..plain.len()], plain[8..]);
                assert_eq!(srtcp[srtcp.len() - 4..], [0x80, 0, 0, i]);
                protected.push((plain, srtcp));
            }
            for i in [1usize, 0, 2, 4, 3] {
                let (plain, srtcp) = &protected[i];
                assert_eq!(&rx.unprotect_rtcp(srtcp).unwrap(), plain);
            }
            assert_eq!(rx.unprotect_rtcp(&protected[4].1), Err(MediaError::SrtpReplay { index: 4 }));

            let fresh = tx.protect_rtcp(&rtcp_rr(0x5555, 9)).unwrap();
            let n = fresh.len();
            // Body, tag, index, clear header and SSRC.
            for byte in [12, n - 5, n - 1, 1, 5] {
                let mut bad = fresh.clone();
                bad[byte] ^= 0x01;
                assert!(rx.unprotect_rtcp(&bad).is_err(), "{suite} byte {byte}");
            }
            let mut no_e = fresh.clone();
            no_e[n - 4] &= 0x7f;
            assert_eq!(rx.unprotect_rtcp(&no_e), Err(MediaError::SrtpAuthFailed));
            assert_eq!(rx.unprotect_rtcp(&fresh).unwrap(), rtcp_rr(0x5555, 9));
        }
    }

    #[test]
    fn aead_garbage_and_truncations_never_panic() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for suite in AEAD {
            let (mut tx, _) = pair(suite);
            let good_rtp = tx.protect_rtp(&rtp(3, 4, &[1, 2], Some((0xbede, &[1, 2, 3, 4])), &[9; 50])).unwrap();
            let good_rtcp = tx.protect_rtcp(&rtcp_rr(4, 2)).unwrap();
            let mut rxs = [
                SrtpContext::new(suite, &key_for(suite, 1)),
                SrtpContext::with_mki(suite, &key_for(suite, 1), &[1, 2, 3, 4]).unwrap(),
            ];
            for rx in rxs.iter_mut() {
                for n in 0..good_rtp.len() {
                    assert!(rx.unprotect_rtp(&good_rtp[..n]).is_err(), "{suite} rtp len {n}");
                }
                for n in 0..good_rtcp.len() {
                    assert!(rx.unprotect_rtcp(&good_rtcp[..n]).is_err(), "{suite} rtcp len {n}");
                }
                for i in 0..5_000 {
                    let len = (next() % 100) as usize;
                    let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    if i % 2 == 0 && !p.is_empty() {
                        p[0] = 0x80 | (p[0] & 0x3f);
                    }
                    let _ = rx.unprotect_rtp(&p);
                    let _ = rx.unprotect_rtcp(&p);
                    let _ = tx.protect_rtp(&p);
                    let _ = tx.protect_rtcp(&p);
                }
            }
        }
    }

    // ---- Keys and a=crypto for the AEAD suites ----

    #[test]
    fn suite_lists_names_and_lengths() {
        // What the PBX offers stays the AES-CM suites, in this order.
        assert_eq!(SrtpSuite::ALL, [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AesCm128HmacSha1_32]);
        for suite in SrtpSuite::SUPPORTED {
            assert_eq!(SrtpSuite::from_name(suite.name()), Some(suite));
        }
        assert_eq!(SrtpSuite::from_name("AEAD_AES_128_GCM"), Some(SrtpSuite::AeadAes128Gcm));
        assert_eq!(SrtpSuite::from_name("AEAD_AES_256_GCM"), Some(SrtpSuite::AeadAes256Gcm));
        assert_eq!(SrtpSuite::from_name("aead_aes_128_gcm"), None);
        assert_eq!(SrtpSuite::from_name("AEAD_AES_128_GCM_8"), None);
        let lens: Vec<_> = SrtpSuite::SUPPORTED
            .into_iter()
            .map(|s| (s.master_key_len(), s.master_salt_len(), s.rtp_tag_len(), s.rtcp_tag_len()))
            .collect();
        assert_eq!(lens, [(16, 14, 10, 10), (16, 14, 4, 10), (16, 12, 16, 16), (32, 12, 16, 16)]);
    }

    #[test]
    fn master_key_lengths_and_backward_compatible_constructors() {
        // The AES-CM callers: 30 bytes in, the same 40 characters out.
        let aes_cm = CryptoAttr::parse("1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")
            .unwrap()
            .key;
        assert_eq!(aes_cm.key(), b"YS___semctl () {");
        assert_eq!(aes_cm.salt().len(), 14);
        let raw: [u8; 30] = aes_cm.as_bytes().try_into().unwrap();
        assert_eq!(MasterKey::from_bytes(&raw), aes_cm);
        assert_eq!(aes_cm.to_inline(), "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz");
        assert_eq!(MasterKey::from_inline(&aes_cm.to_inline()).unwrap(), aes_cm);
        assert!(aes_cm.fits(SrtpSuite::AesCm128HmacSha1_32) && !aes_cm.fits(SrtpSuite::AeadAes128Gcm));

        for (len, key_len) in [(28, 16), (30, 16), (44, 32)] {
            let b: Vec<u8> = (0..len as u8).collect();
            let k = MasterKey::from_slice(&b).unwrap();
            assert_eq!((k.key(), k.salt()), (&b[..key_len], &b[key_len..]));
            assert_eq!(k.to_bytes(), b);
            assert_eq!(MasterKey::from_parts(k.key(), k.salt()).unwrap(), k);
            assert_eq!(MasterKey::from_inline(&k.to_inline()).unwrap(), k);
            // RFC 4568 does not require the padding; some write none.
            let unpadded = k.to_inline().trim_end_matches('=').to_owned();
            assert_eq!(MasterKey::from_inline(&unpadded).unwrap(), k);
        }
        for len in [0, 16, 27, 29, 31, 32, 43, 45, 46] {
            assert!(MasterKey::from_slice(&vec![1; len]).is_err(), "{len}");
        }
        assert!(MasterKey::from_parts(&[1; 14], &[2; 16]).is_err());
        assert!(MasterKey::from_parts(&[1; 32], &[2; 14]).is_err());

        // A key made for a suite fits it and uses every byte the RNG gave.
        for suite in SrtpSuite::SUPPORTED {
            let mut counter = 0u8;
            let k = MasterKey::generate(suite, |b| {
                for x in b.iter_mut() {
                    counter += 1;
                    *x = counter;
                }
            });
            assert!(k.fits(suite), "{suite}");
            assert_eq!(usize::from(counter), suite.master_len());
            assert_eq!(k.as_bytes(), (1..=counter).collect::<Vec<u8>>());
            assert_eq!(k.key().len(), suite.master_key_len());
            SrtpContext::try_new(suite, &k).unwrap();
        }
    }

    #[test]
    fn aead_crypto_lines_parse_print_and_run() {
        for suite in AEAD {
            let key = key_for(suite, 9);
            let line = format!("7 {suite} inline:{}", key.to_inline());
            let attr = CryptoAttr::parse(&line).unwrap();
            assert_eq!((attr.tag, attr.suite, &attr.key), (7, suite, &key));
            assert_eq!(attr.to_value(), line);
            let mut tx = SrtpContext::from_crypto(&attr).unwrap();
            let mut rx = SrtpContext::new(suite, &key);
            assert_eq!(rx.unprotect_rtp(&tx.protect_rtp(&pkt(1, SSRC)).unwrap()).unwrap(), pkt(1, SSRC));
        }
        // A key of another suite's length is refused under each name.
        for suite in SrtpSuite::SUPPORTED {
            for other in SrtpSuite::SUPPORTED.into_iter().filter(|o| o.master_len() != suite.master_len()) {
                let line = format!("1 {suite} inline:{}", key_for(other, 1).to_inline());
                assert_eq!(
                    CryptoAttr::parse(&line),
                    Err(MediaError::BadCryptoAttr("inline key length does not match the crypto suite")),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn answering_a_phones_aead_offer() {
        // The B2BUA's steps: read the phone's line, make our key for its
        // suite, answer with our line; each side decrypts the other.
        for suite in AEAD {
            let phone_key = key_for(suite, 3);
            let offer = CryptoAttr::parse(&format!("2 {suite} inline:{}", phone_key.to_inline())).unwrap();
            offer.check_supported().unwrap();
            let our_key = MasterKey::generate(offer.suite, |b| b.fill(0x5a));
            let answer = CryptoAttr {
                tag: offer.tag,
                suite: offer.suite,
                key: our_key.clone(),
                lifetime: None,
                mki: None,
                session_params: Vec::new(),
            }
            .to_value();
            let phone_view = CryptoAttr::parse(&answer).unwrap();
            assert_eq!(phone_view.key, our_key);

            let mut from_phone = SrtpContext::new(offer.suite, &offer.key);
            let mut phone_tx = SrtpContext::new(suite, &phone_key);
            let srtp = phone_tx.protect_rtp(&pkt(9, SSRC)).unwrap();
            assert_eq!(from_phone.unprotect_rtp(&srtp).unwrap(), pkt(9, SSRC));
            let mut to_phone = SrtpContext::new(offer.suite, &our_key);
            let mut phone_rx = SrtpContext::from_crypto(&phone_view).unwrap();
            let srtp = to_phone.protect_rtp(&pkt(4, SSRC)).unwrap();
            assert_eq!(phone_rx.unprotect_rtp(&srtp).unwrap(), pkt(4, SSRC));
        }
    }

    #[test]
    fn a_key_that_does_not_fit_the_suite_is_refused_without_panicking() {
        let aes_cm_key = key_for(SrtpSuite::AesCm128HmacSha1_80, 1);
        for suite in AEAD {
            assert_eq!(SrtpContext::try_new(suite, &aes_cm_key).err(), Some(KEY_MISMATCH));
            assert_eq!(SrtpContext::with_mki(suite, &aes_cm_key, &[1]).err(), Some(KEY_MISMATCH));
            let mut ctx = SrtpContext::new(suite, &aes_cm_key);
            assert_eq!(ctx.protect_rtp(&pkt(1, SSRC)), Err(KEY_MISMATCH));
            assert_eq!(ctx.unprotect_rtp(&pkt(1, SSRC)), Err(KEY_MISMATCH));
            assert_eq!(ctx.protect_rtcp(&rtcp_rr(1, 1)), Err(KEY_MISMATCH));
            assert_eq!(ctx.unprotect_rtcp(&rtcp_rr(1, 1)), Err(KEY_MISMATCH));
            assert!(format!("{ctx:?}").contains("key_fits_suite: false"));
            // A hand-built attribute with a mismatched key is refused too.
            let attr = CryptoAttr {
                tag: 1,
                suite,
                key: aes_cm_key.clone(),
                lifetime: None,
                mki: None,
                session_params: vec![],
            };
            assert!(SrtpContext::from_crypto(&attr).is_err());
        }
        let gcm_key = key_for(SrtpSuite::AeadAes256Gcm, 1);
        assert_eq!(SrtpContext::try_new(SrtpSuite::AesCm128HmacSha1_80, &gcm_key).err(), Some(KEY_MISMATCH));
    }

    #[test]
    fn aead_keys_never_show_in_debug_output() {
        for suite in AEAD {
            let k = key_for(suite, 6);
            let ctx = SrtpContext::new(suite, &k);
            let attr =
                CryptoAttr { tag: 1, suite, key: k.clone(), lifetime: None, mki: None, session_params: vec![] };
            for text in [format!("{k:?}"), format!("{ctx:?}"), format!("{attr:?}")] {
                assert!(!text.contains(&k.to_inline()), "{text}");
                assert!(!text.contains(&format!("{:?}", k.key())), "{text}");
            }
        }
    }

    // ---- Rollover counter, every suite ----

    #[test]
    fn rollover_with_reordering_around_the_wrap() {
        for suite in SrtpSuite::SUPPORTED {
            let key = key_for(suite, 1);
            let (mut tx, mut rx) = pair(suite);
            let sent = send(&mut tx, (65500..=65535).chain(0..40));
            assert_eq!(tx.send_roc(SSRC), Some(1), "{suite}");
            // 65535 is sent under ROC 0, 0 under ROC 1.
            assert!(protected_under(suite, &key, &sent[35].1, 0) && !protected_under(suite, &key, &sent[35].1, 1));
            assert!(protected_under(suite, &key, &sent[36].1, 1) && !protected_under(suite, &key, &sent[36].1, 0));

            // In order up to 65529, then the wrap shuffled: packets from
            // before it arriving after packets from after it.
            let at = |s: u16| sent.iter().position(|(q, _)| *q == s).unwrap();
            let mut order: Vec<usize> = (0..30).collect();
            for s in [0u16, 65533, 2, 65535, 1, 65530, 65534, 3, 65532, 65531, 5, 4] {
                order.push(at(s));
            }
            order.extend(at(6)..sent.len());
            assert_eq!(order.len(), sent.len());
            for i in order {
                let (s, p) = &sent[i];
                assert_eq!(rx.unprotect_rtp(p).as_ref(), Ok(&pkt(*s, SSRC)), "{suite} seq {s}");
                assert_eq!(rx.recv_roc(SSRC), Some(u32::from(i >= 30)), "{suite} seq {s}");
            }
        }
    }

    #[test]
    fn sender_fed_out_of_order_across_the_wrap_keeps_each_packets_index() {
        // A relay re-protecting a reordered stream: 65535 comes after 0.
        for suite in SrtpSuite::SUPPORTED {
            let key = key_for(suite, 1);
            let (mut tx, mut rx) = pair(suite);
            let sent = send(&mut tx, [65533, 65534, 0, 65535, 1, 2]);
            assert!(protected_under(suite, &key, &sent[3].1, 0), "{suite}: late 65535 keeps ROC 0");
            assert!(protected_under(suite, &key, &sent[2].1, 1), "{suite}");
            deliver(&mut rx, &sent, suite.name());
            assert_eq!(rx.recv_roc(SSRC), Some(1));
            // Sending one of them again would reuse its index.
            assert_eq!(tx.protect_rtp(&pkt(65535, SSRC)), Err(MediaError::SrtpReplay { index: 65535 }));
            assert_eq!(tx.protect_rtp(&pkt(1, SSRC)), Err(MediaError::SrtpReplay { index: 0x1_0001 }));
        }
    }

    #[test]
    fn receiver_joining_mid_stream() {
        for suite in SrtpSuite::SUPPORTED {
            let key = key_for(suite, 1);
            // Before the sender's first wrap, a new receiver needs nothing:
            // it takes ROC 0 and follows the wrap.
            let (mut tx, _) = pair(suite);
            let sent = send(&mut tx, (62000..=65535).chain(0..200));
            let mut late = SrtpContext::new(suite, &key);
            deliver(&mut late, &sent[2000..], "joined at 64000");
            assert_eq!(late.recv_roc(SSRC), Some(1));

            // After it, the receiver must be told the ROC (RFC 3711 §3.3.1):
            // one that assumes 0 rejects everything and learns nothing.
            let mut naive = SrtpContext::new(suite, &key);
            assert_eq!(naive.unprotect_rtp(&sent[3600].1), Err(MediaError::SrtpAuthFailed));
            assert_eq!(naive.recv_roc(SSRC), None);
            let mut told = SrtpContext::new(suite, &key);
            told.set_recv_roc(SSRC, 1).unwrap();
            assert_eq!(told.recv_roc(SSRC), Some(1));
            deliver(&mut told, &sent[3600..], "joined at ROC 1, seq 64");
            assert_eq!(told.recv_roc(SSRC), Some(1));
            // A packet from before the join and the wrap is too old for it.
            assert!(told.unprotect_rtp(&sent[3000].1).is_err());
            // Once packets flowed, the counter is theirs.
            assert!(told.set_recv_roc(SSRC, 5).is_err());

            // A joiner told ROC 7 follows a sender there through its next wrap.
            let (mut tx, _) = pair(suite);
            tx.set_send_roc(SSRC, 7).unwrap();
            let sent = send(&mut tx, (65400..=65535).chain(0..100));
            assert_eq!(tx.send_roc(SSRC), Some(8));
            let mut rx = SrtpContext::new(suite, &key);
            rx.set_recv_roc(SSRC, 7).unwrap();
            deliver(&mut rx, &sent[50..], "joined at ROC 7");
            assert_eq!(rx.recv_roc(SSRC), Some(8));
            assert!(tx.set_send_roc(SSRC, 9).is_err(), "moving a running sender could reuse indices");
        }
    }

    #[test]
    fn losses_of_thousands_of_packets_across_the_wrap() {
        for suite in SrtpSuite::SUPPORTED {
            let key = key_for(suite, 1);
            for lost in [1u16, 100, 1000, 3000, 5000, 20_000, 32_766] {
                let (mut tx, mut rx) = pair(suite);
                let before = 65535 - lost / 2;
                let after = before.wrapping_add(lost + 1);
                // The sender sends every packet; only the ends get through.
                let mut sent = send(&mut tx, before - 10..=before);
                let gap = send(&mut tx, (1..=lost).map(|i| before.wrapping_add(i)));
                sent.extend(send(&mut tx, (0..10).map(|i| after.wrapping_add(i))));
                deliver(&mut rx, &sent, &format!("{suite} losing {lost}"));
                assert_eq!(rx.recv_roc(SSRC), Some(1), "{suite} losing {lost}");
                // A lost packet that turns up late is taken if still in the window.
                let (s, p) = gap.last().unwrap();
                assert_eq!(rx.unprotect_rtp(p).as_ref(), Ok(&pkt(*s, SSRC)));
                // The first lost one is too old by now (or, 2^15 behind,
                // taken for a packet from the next cycle, which fails its tag).
                if lost > 100 {
                    assert!(rx.unprotect_rtp(&gap[0].1).is_err());
                    assert_eq!(rx.recv_roc(SSRC), Some(1));
                }
            }

            // A jump of 2^15 or more is ambiguous by design (RFC 3711
            // Appendix A): read as old, refused, and it moves nothing.
            let (mut tx, mut rx) = pair(suite);
            deliver(&mut rx, &send(&mut tx, [60000]), "start");
            let mut far_tx = SrtpContext::new(suite, &key);
            far_tx.set_send_roc(SSRC, 1).unwrap();
            let far = far_tx.protect_rtp(&pkt(60000u16.wrapping_add(40_000), SSRC)).unwrap();
            assert!(rx.unprotect_rtp(&far).is_err());
            assert_eq!(rx.recv_roc(SSRC), Some(0));
            deliver(&mut rx, &send(&mut tx, [60001]), "still on track");
        }
    }

    #[test]
    fn rekey_with_fresh_contexts_while_the_sequence_continues() {
        // The SDP changes the key; both ends make new contexts (ROC 0) and
        // the sender's sequence numbers run on, through a wrap.
        for old_suite in SrtpSuite::SUPPORTED {
            for new_suite in [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AeadAes256Gcm] {
                let what = format!("{old_suite} -> {new_suite}");
                let (old_key, new_key) = (key_for(old_suite, 1), key_for(new_suite, 2));
                let mut old_tx = SrtpContext::new(old_suite, &old_key);
                let mut old_rx = SrtpContext::new(old_suite, &old_key);
                deliver(&mut old_rx, &send(&mut old_tx, 64000..65000), &what);

                let mut tx = SrtpContext::new(new_suite, &new_key);
                let mut rx = SrtpContext::new(new_suite, &new_key);
                let sent = send(&mut tx, (65000..=65535).chain(0..300));
                assert!(old_rx.unprotect_rtp(&sent[0].1).is_err(), "{what}: the old key is gone");
                deliver(&mut rx, &sent, &what);
                assert_eq!((tx.send_roc(SSRC), rx.recv_roc(SSRC)), (Some(1), Some(1)), "{what}");
            }
        }
    }

    #[test]
    fn rekey_continuing_the_packet_index() {
        // The peer keeps counting across the re-key: the new contexts carry
        // on from the old ones, here at ROC 2 and with the sender's wrap to
        // ROC 3 under way while the SDP changes.
        for suite in SrtpSuite::SUPPORTED {
            let (old_key, new_key) = (key_for(suite, 1), key_for(suite, 2));
            let mut old_tx = SrtpContext::new(suite, &old_key);
            let mut old_rx = SrtpContext::new(suite, &old_key);
            old_tx.set_send_roc(SSRC, 2).unwrap();
            old_rx.set_recv_roc(SSRC, 2).unwrap();
            let old_sent = send(&mut old_tx, (65000..=65535).chain(0..5));
            deliver(&mut old_rx, &old_sent[..520], suite.name()); // up to 65519
            old_rx.unprotect_rtcp(&old_tx.protect_rtcp(&rtcp_rr(SSRC, 0)).unwrap()).unwrap();
            old_rx.unprotect_rtcp(&old_tx.protect_rtcp(&rtcp_rr(SSRC, 1)).unwrap()).unwrap();

            let mut tx = SrtpContext::new(suite, &new_key);
            tx.continue_from(&old_tx).unwrap();
            let mut rx = SrtpContext::new(suite, &new_key);
            rx.continue_from(&old_rx).unwrap();
            assert_eq!((tx.send_roc(SSRC), rx.recv_roc(SSRC)), (Some(3), Some(2)));
            // Indices used under the old key are not sent again.
            assert_eq!(tx.protect_rtp(&pkt(4, SSRC)), Err(MediaError::SrtpReplay { index: (3 << 16) | 4 }));

            let sent = send(&mut tx, 5..3000);
            // Seq 5 at ROC 3 after 65519 at ROC 2: the receiver follows.
            deliver(&mut rx, &sent, suite.name());
            assert_eq!(rx.recv_roc(SSRC), Some(3));
            assert!(protected_under(suite, &new_key, &sent[0].1, 3));
            // Starting over at ROC 0 instead would not have matched this peer.
            let mut fresh = SrtpContext::new(suite, &new_key);
            assert_eq!(fresh.unprotect_rtp(&sent[10].1), Err(MediaError::SrtpAuthFailed));

            // SRTCP goes on at index 2 and its window carries over.
            let srtcp = tx.protect_rtcp(&rtcp_rr(SSRC, 2)).unwrap();
            let n = srtcp.len();
            let e_index = if suite.is_aead() { &srtcp[n - 4..] } else { &srtcp[n - 14..n - 10] };
            assert_eq!(e_index, [0x80, 0, 0, 2]);
            assert_eq!(rx.unprotect_rtcp(&srtcp).unwrap(), rtcp_rr(SSRC, 2));
        }
    }

    #[test]
    fn rekey_to_another_suite_continuing_and_state_already_there() {
        let (old_suite, new_suite) = (SrtpSuite::AesCm128HmacSha1_32, SrtpSuite::AeadAes128Gcm);
        let mut old_tx = SrtpContext::new(old_suite, &key_for(old_suite, 1));
        send(&mut old_tx, 65530..=65535);
        let mut tx = SrtpContext::new(new_suite, &key_for(new_suite, 2));
        let mut rx = SrtpContext::new(new_suite, &key_for(new_suite, 2));
        tx.continue_from(&old_tx).unwrap();
        // This receiver has no old context; it learnt the ROC otherwise.
        rx.set_recv_roc(SSRC, 1).unwrap();
        deliver(&mut rx, &send(&mut tx, 0..10), "after the suite change");
        assert_eq!(rx.recv_roc(SSRC), Some(1));

        // State the new context already has is its own; the old one's is
        // taken only for SSRCs it lacks.
        let mut other_tx = SrtpContext::new(old_suite, &key_for(old_suite, 1));
        other_tx.set_send_roc(SSRC, 40).unwrap();
        other_tx.set_send_roc(7, 9).unwrap();
        tx.continue_from(&other_tx).unwrap();
        assert_eq!((tx.send_roc(SSRC), tx.send_roc(7)), (Some(1), Some(9)));

        // Carrying over is all or nothing when the tables would overflow.
        let mut full = SrtpContext::new(new_suite, &key_for(new_suite, 2));
        for ssrc in 0..MAX_SSRCS as u32 {
            full.set_send_roc(ssrc + 1000, 0).unwrap();
        }
        assert_eq!(tx.continue_from(&full), Err(MediaError::SrtpTooManySsrcs { max: MAX_SSRCS }));
        assert_eq!(tx.rtp_tx.len(), 2);
    }

    // ---- Replay window, every suite ----

    #[test]
    fn replay_window_rejects_duplicates_and_stale_packets_and_takes_reordering() {
        for suite in SrtpSuite::SUPPORTED {
            let (mut tx, mut rx) = pair(suite);
            let sent = send(&mut tx, 0..200);
            deliver(&mut rx, &sent[..100], suite.name());
            assert_eq!(rx.unprotect_rtp(&sent[99].1), Err(MediaError::SrtpReplay { index: 99 }));
            assert_eq!(rx.unprotect_rtp(&sent[60].1), Err(MediaError::SrtpReplay { index: 60 }));

            deliver(&mut rx, &sent[110..111], suite.name());
            let mut reordered: Vec<_> = sent[101..110].to_vec();
            reordered.reverse();
            deliver(&mut rx, &reordered, suite.name());
            assert_eq!(rx.unprotect_rtp(&sent[105].1), Err(MediaError::SrtpReplay { index: 105 }));
            deliver(&mut rx, &sent[100..101], "10 behind, never seen");

            deliver(&mut rx, &sent[190..191], suite.name());
            assert_eq!(rx.unprotect_rtp(&sent[126].1), Err(MediaError::SrtpReplay { index: 126 }), "64 behind");
            deliver(&mut rx, &sent[127..128], "63 behind, never seen");
            assert_eq!(rx.unprotect_rtp(&sent[127].1), Err(MediaError::SrtpReplay { index: 127 }));
            // The refusals changed nothing.
            deliver(&mut rx, &sent[191..], suite.name());
        }
    }

    #[test]
    fn replay_window_spans_the_wrap() {
        for suite in SrtpSuite::SUPPORTED {
            let (mut tx, mut rx) = pair(suite);
            let sent = send(&mut tx, (65440..=65535).chain(0..=30));
            let at = |s: u16| sent.iter().position(|(q, _)| *q == s).unwrap();
            deliver(&mut rx, &sent[..at(65470) + 1], suite.name());
            deliver(&mut rx, &sent[at(0)..], suite.name());
            assert_eq!(rx.recv_roc(SSRC), Some(1));
            // (1, 30) is the highest: 65471 is 95 behind, 65502 64 behind.
            assert_eq!(rx.unprotect_rtp(&sent[at(65471)].1), Err(MediaError::SrtpReplay { index: 65471 }));
            assert_eq!(rx.unprotect_rtp(&sent[at(65502)].1), Err(MediaError::SrtpReplay { index: 65502 }));
            for s in [65503u16, 65535, 65520] {
                let (_, p) = &sent[at(s)];
                assert_eq!(rx.unprotect_rtp(p).as_ref(), Ok(&pkt(s, SSRC)), "{suite} late {s}");
                assert_eq!(rx.unprotect_rtp(p), Err(MediaError::SrtpReplay { index: u64::from(s) }));
            }
            assert_eq!(rx.unprotect_rtp(&sent[at(5)].1), Err(MediaError::SrtpReplay { index: 0x1_0005 }));
            assert_eq!(rx.recv_roc(SSRC), Some(1));
        }
    }

    #[test]
    fn srtcp_replay_window() {
        for suite in SrtpSuite::SUPPORTED {
            let (mut tx, mut rx) = pair(suite);
            let sent: Vec<Vec<u8>> = (0..100u8).map(|i| tx.protect_rtcp(&rtcp_rr(SSRC, i)).unwrap()).collect();
            for i in (0..30).chain([99]) {
                assert_eq!(rx.unprotect_rtcp(&sent[i]).unwrap(), rtcp_rr(SSRC, i as u8));
            }
            assert_eq!(rx.unprotect_rtcp(&sent[99]), Err(MediaError::SrtpReplay { index: 99 }));
            assert_eq!(rx.unprotect_rtcp(&sent[35]), Err(MediaError::SrtpReplay { index: 35 }), "64 behind");
            assert_eq!(rx.unprotect_rtcp(&sent[36]).unwrap(), rtcp_rr(SSRC, 36), "63 behind");
            assert_eq!(rx.unprotect_rtcp(&sent[70]).unwrap(), rtcp_rr(SSRC, 70));
            assert_eq!(rx.unprotect_rtcp(&sent[70]), Err(MediaError::SrtpReplay { index: 70 }));
        }
    }
}
