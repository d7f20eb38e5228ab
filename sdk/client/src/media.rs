//! A call's media in the SDK: the SDP the phone offers and answers, and one
//! tokio task per call that owns the RTP and RTCP sockets, tsunagu-media's
//! [`MediaSession`] and the audio [`Driver`] of the call's [`AudioPort`].
//!
//! The task's clock is the audio port's: every 20 ms frame of capture is
//! encoded and sent, and one frame of playout is pulled from the jitter
//! buffer, so playout never runs ahead of or behind the device. Packets are
//! sent to the address the far end's SDP gave (the PBX anchors media, so
//! that is its relay port).

use crate::audio::{AudioPort, BridgeConfig, Driver};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tsunagu_media::codec::Codec;
use tsunagu_media::pipeline::LegMedia;
use tsunagu_media::srtp::{CryptoAttr, MasterKey, SrtpSuite};
use tsunagu_media::{MediaSession, SessionConfig, TransmitKind};
use tsunagu_sip::sdp::{Direction, Sdp};

/// The telephone-event payload type we offer (RFC 4733).
const TELEPHONE_EVENT_PT: u8 = 101;
/// The dynamic payload type we offer Opus under.
const OPUS_PT: u8 = 111;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaSetupError {
    #[error("the SDP does not parse")]
    BadSdp,
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("no codec in common (we do PCMU, PCMA and Opus)")]
    NoCommonCodec,
    #[error("the SDP names no address to send media to")]
    NoAddress,
    #[error("encrypted media (RTP/SAVP) without a key we can use")]
    NoCrypto,
    #[error("cannot start the media: {0}")]
    Start(String),
}

/// The RTP port (even) and the RTCP port above it, bound on the address the
/// SIP flow uses.
pub struct MediaSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ip: IpAddr,
    /// Our SDES key (RFC 4568) when the call is encrypted.
    our_key: Option<(SrtpSuite, MasterKey)>,
}

impl MediaSockets {
    pub async fn bind(ip: IpAddr) -> std::io::Result<MediaSockets> {
        for _ in 0..32 {
            let rtp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            let port = rtp.local_addr()?.port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                return Ok(MediaSockets { rtp, rtcp, ip, our_key: None });
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free even/odd UDP port pair for RTP"))
    }

    /// Encrypt this call's media with SDES-SRTP (AES_CM_128_HMAC_SHA1_80):
    /// offers go out as RTP/SAVP with our key. Only sensible over TLS, where
    /// the key in the SDP is itself protected.
    pub fn with_srtp(mut self) -> Self {
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        self.our_key = Some((suite, MasterKey::generate(suite, |raw| raw.iter_mut().for_each(|b| *b = rand::random()))));
        self
    }

    /// A new pair of sockets on `ip` with the same SRTP key: an offer not
    /// answered yet moves with the device to its new network.
    pub async fn moved_to(&self, ip: IpAddr) -> std::io::Result<MediaSockets> {
        let mut moved = MediaSockets::bind(ip).await?;
        moved.our_key = self.our_key.clone();
        Ok(moved)
    }

    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Our SDP offer: Opus first (better on mobile networks: in-band FEC,
    /// lower rate), then G.711 µ-law and A-law, and RFC 4733 digits.
    pub fn offer(&self, session_id: u64) -> Bytes {
        let crypto = self.our_key.as_ref().map(|(suite, key)| (1, *suite, key.clone()));
        let at = SdpLine { ip: self.ip, port: self.rtp_port(), session_id, version: 1, direction: Direction::SendRecv };
        sdp_text(&at, &[(OPUS_PT, "opus/48000/2"), (0, "PCMU/8000"), (8, "PCMA/8000")], Some(TELEPHONE_EVENT_PT), crypto)
    }

    /// The far end's answer to our offer: its media, with the keys both
    /// ways when we offered SRTP (an answer without a key to an RTP/SAVP
    /// offer is refused).
    pub fn take_answer(&self, answer: &[u8]) -> Result<LegMedia, MediaSetupError> {
        let mut media = negotiated(answer)?;
        if let Some((suite, key)) = &self.our_key {
            let theirs = media.srtp_recv.clone().ok_or(MediaSetupError::NoCrypto)?;
            if theirs.0 != *suite {
                return Err(MediaSetupError::NoCrypto);
            }
            media.srtp_send = Some((*suite, key.clone()));
        } else {
            media.srtp_recv = None;
        }
        Ok(media)
    }

    /// Our answer to `offer`, and the media it agrees on.
    pub fn answer(&self, offer: &[u8], session_id: u64) -> Result<(Bytes, LegMedia), MediaSetupError> {
        let mut media = negotiated(offer)?;
        // An encrypted offer is answered encrypted, with a key of ours in
        // its suite under its tag.
        let crypto = match (&media.srtp_recv, crypto_tag(offer)) {
            (Some((suite, _)), Some(tag)) => {
                let key = MasterKey::generate(*suite, |raw| raw.iter_mut().for_each(|b| *b = rand::random()));
                media.srtp_send = Some((*suite, key.clone()));
                Some((tag, *suite, key))
            }
            _ => None,
        };
        let Some((codec, pt)) = media.codec else { return Err(MediaSetupError::NoCommonCodec) };
        // Digits only when they offered them, under their payload type.
        let at = SdpLine { ip: self.ip, port: self.rtp_port(), session_id, version: 1, direction: offered_direction(offer).reversed() };
        let text = sdp_text(&at, &[(pt, codec_name(codec))], media.telephone_event, crypto);
        Ok((text, media))
    }
}

/// What our SDP says besides the codecs: where, which version of it, in
/// which direction, with which key.
struct SdpLine {
    ip: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
    direction: Direction,
}

fn sdp_text(at: &SdpLine, codecs: &[(u8, &str)], digits: Option<u8>, crypto: Option<(u32, SrtpSuite, MasterKey)>) -> Bytes {
    let SdpLine { ip, port, session_id, version, direction } = at;
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut fmts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    if let Some(te) = digits {
        fmts.push(te.to_string());
    }
    let mut s = format!(
        "v=0\r\no=tsunagu-sdk {session_id} {version} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {} {}\r\n",
        if crypto.is_some() { "RTP/SAVP" } else { "RTP/AVP" },
        fmts.join(" ")
    );
    for (pt, name) in codecs {
        s.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
    }
    if let Some(te) = digits {
        s.push_str(&format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"));
    }
    if codecs.iter().any(|(_, n)| n.starts_with("opus")) {
        // Mono speech at a mobile-friendly rate, with in-band FEC (RFC 7587).
        let pt = codecs.iter().find(|(_, n)| n.starts_with("opus")).map(|(p, _)| *p).unwrap_or(OPUS_PT);
        s.push_str(&format!("a=fmtp:{pt} useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=24000\r\n"));
    }
    if let Some((tag, suite, key)) = crypto {
        s.push_str(&format!("a=crypto:{tag} {} inline:{}\r\n", suite.name(), key.to_inline()));
    }
    s.push_str(&format!("a=ptime:20\r\na={}\r\n", direction.as_str()));
    Bytes::from(s)
}

/// The far end's media from its SDP (an answer to ours, or an offer we
/// answer): its address, the first codec of its list that we do, and its
/// telephone-event type.
pub fn negotiated(sdp: &[u8]) -> Result<LegMedia, MediaSetupError> {
    let parsed = Sdp::parse(sdp).map_err(|_| MediaSetupError::BadSdp)?;
    let idx = parsed.audio_index().ok_or(MediaSetupError::NoAudio)?;
    let m = parsed.media.get(idx).ok_or(MediaSetupError::NoAudio)?;
    let ip = parsed.media_addr(idx).or_else(|| parsed.session_addr()).ok_or(MediaSetupError::NoAddress)?;
    let maps = m.rtpmaps();
    let codec = maps.iter().find_map(|r| Codec::from_rtpmap(&r.encoding, r.clock_rate).map(|c| (c, r.pt))).ok_or(MediaSetupError::NoCommonCodec)?;
    let te = maps.iter().find(|r| r.encoding.eq_ignore_ascii_case("telephone-event")).map(|r| r.pt);
    // Their key, if the stream is RTP/SAVP: the first a=crypto we can use.
    let srtp_recv = if m.proto.eq_ignore_ascii_case("RTP/SAVP") {
        Some(CryptoAttr::first_usable(m.attrs("crypto")).map(|c| (c.suite, c.key)).ok_or(MediaSetupError::NoCrypto)?)
    } else {
        None
    };
    Ok(LegMedia {
        rtp_addr: (m.port != 0).then(|| SocketAddr::new(ip, m.port)),
        rtcp_port: m.rtcp_port(),
        codec: Some(codec),
        telephone_event: te,
        srtp_recv,
        srtp_send: None,
    })
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Pcmu => "PCMU/8000",
        Codec::Pcma => "PCMA/8000",
        Codec::Opus => "opus/48000/2",
    }
}

/// The direction an offer's audio stream asks for (sendrecv when unsaid).
fn offered_direction(sdp: &[u8]) -> Direction {
    Sdp::parse(sdp).ok().and_then(|p| p.audio_index().and_then(|i| p.media.get(i).map(|m| m.direction()))).unwrap_or(Direction::SendRecv)
}

/// The tag of the a=crypto line `negotiated` chose from an offer.
fn crypto_tag(sdp: &[u8]) -> Option<u32> {
    let parsed = Sdp::parse(sdp).ok()?;
    let m = parsed.media.get(parsed.audio_index()?)?;
    let tag = CryptoAttr::first_usable(m.attrs("crypto")).map(|c| c.tag);
    tag
}

/// A running call's media; dropping it stops the task and the audio port.
pub struct CallMedia {
    task: tokio::task::JoinHandle<()>,
    control: tokio::sync::mpsc::UnboundedSender<MediaControl>,
    /// Our side, for answering new offers in the call.
    ip: IpAddr,
    port: u16,
    our_key: Option<(SrtpSuite, MasterKey)>,
    session_id: u64,
    version: u64,
    /// What the call runs on now, for our own new offers.
    codec: Option<(Codec, u8)>,
    telephone_event: Option<u8>,
    /// The direction of our last offer (held or not), kept when a network
    /// change makes us offer again.
    direction: Direction,
}

enum MediaControl {
    Dtmf(char),
    Mute(bool),
    Update(Box<LegMedia>),
    /// New sockets on the device's new network; the session (its SRTP
    /// contexts, sequence numbers and timestamps) carries on unchanged.
    Rebind(Box<MediaSockets>),
    /// Where to report the far end's RFC 4733 digits, as (Call-ID, digit).
    ReportDigits(String, tokio::sync::mpsc::UnboundedSender<(String, char)>),
}

/// How long each digit sounds (RFC 4733 events; the session paces them).
const DTMF_MS: u32 = 120;

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CallMedia {
    pub fn start(sockets: MediaSockets, media: LegMedia, port: Arc<dyn AudioPort>) -> Result<CallMedia, MediaSetupError> {
        let now = Instant::now();
        let mut config = SessionConfig::new(format!("{:016x}@tsunagu-sdk", rand::random::<u64>()), rand::random());
        config.wall_clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let session = MediaSession::new(&media, config, now).map_err(|e| MediaSetupError::Start(e.to_string()))?;
        let driver = Driver::start(port, BridgeConfig::default(), now).map_err(|e| MediaSetupError::Start(e.to_string()))?;
        let (control, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ip, port, our_key) = (sockets.ip, sockets.rtp_port(), media.srtp_send.clone());
        let (codec, telephone_event) = (media.codec, media.telephone_event);
        Ok(CallMedia { task: tokio::spawn(run(sockets, session, driver, rx)), control, ip, port, our_key, session_id: rand::random::<u32>() as u64, version: 1, codec, telephone_event, direction: Direction::SendRecv })
    }

    /// Our own new offer in the call, with the codec it runs on now:
    /// `SendOnly` puts the far end on hold, `SendRecv` resumes.
    pub fn offer(&mut self, direction: Direction) -> Bytes {
        self.version += 1;
        self.direction = direction;
        let at = SdpLine { ip: self.ip, port: self.port, session_id: self.session_id, version: self.version, direction };
        let codecs: Vec<(u8, &str)> = self.codec.map(|(c, pt)| vec![(pt, codec_name(c))]).unwrap_or_default();
        let crypto = self.our_key.as_ref().map(|(suite, key)| (1, *suite, key.clone()));
        sdp_text(&at, &codecs, self.telephone_event, crypto)
    }

    /// Move the call's media to sockets on the device's new network (a
    /// handover): same codec, same keys and SRTP contexts, same hold
    /// state. Packets go out from the new sockets at once (the PBX's relay
    /// latches onto them even before it hears of the move);
    /// [`CallMedia::current_offer`] is the offer that tells the far end.
    pub fn rebind(&mut self, sockets: MediaSockets) {
        self.ip = sockets.ip;
        self.port = sockets.rtp_port();
        let _ = self.control.send(MediaControl::Rebind(Box::new(sockets)));
    }

    /// A new offer of what runs now (address, codec, hold state).
    pub fn current_offer(&mut self) -> Bytes {
        self.offer(self.direction)
    }

    /// Whether the far end takes RFC 4733 digits (else SIP INFO is used).
    pub fn has_rfc4733(&self) -> bool {
        self.telephone_event.is_some()
    }

    /// Report the far end's RFC 4733 digits on `to`, tagged with `call_id`.
    pub fn report_digits_to(&self, call_id: String, to: tokio::sync::mpsc::UnboundedSender<(String, char)>) {
        let _ = self.control.send(MediaControl::ReportDigits(call_id, to));
    }

    /// The address our media is bound to.
    pub fn local_ip(&self) -> IpAddr {
        self.ip
    }

    /// The far end's answer to [`CallMedia::offer`]: the media follows it.
    pub fn take_answer(&mut self, answer: &[u8]) -> Result<(), MediaSetupError> {
        let mut media = negotiated(answer)?;
        if media.srtp_recv.is_some() != self.our_key.is_some() {
            return Err(MediaSetupError::NoCrypto);
        }
        media.srtp_send = self.our_key.clone();
        self.codec = media.codec;
        let _ = self.control.send(MediaControl::Update(Box::new(media)));
        Ok(())
    }

    /// Answer a new offer in the call (hold, resume, a new address or
    /// codec): the media follows it, our answer mirrors its direction.
    /// Encryption cannot be switched on or off mid-call.
    pub fn answer_reoffer(&mut self, offer: &[u8]) -> Result<Bytes, MediaSetupError> {
        let mut media = negotiated(offer)?;
        if media.srtp_recv.is_some() != self.our_key.is_some() {
            return Err(MediaSetupError::NoCrypto);
        }
        media.srtp_send = self.our_key.clone();
        let Some((codec, pt)) = media.codec else { return Err(MediaSetupError::NoCommonCodec) };
        let crypto = match (&self.our_key, crypto_tag(offer)) {
            (Some((suite, key)), Some(tag)) => Some((tag, *suite, key.clone())),
            _ => None,
        };
        self.version += 1;
        let at = SdpLine { ip: self.ip, port: self.port, session_id: self.session_id, version: self.version, direction: offered_direction(offer).reversed() };
        let text = sdp_text(&at, &[(pt, codec_name(codec))], media.telephone_event, crypto);
        self.codec = media.codec;
        self.telephone_event = media.telephone_event;
        let _ = self.control.send(MediaControl::Update(Box::new(media)));
        Ok(text)
    }

    /// Send a key press as RFC 4733 events (in order, paced by the session).
    pub fn send_dtmf(&self, digit: char) {
        let _ = self.control.send(MediaControl::Dtmf(digit));
    }

    pub fn mute(&self, muted: bool) {
        let _ = self.control.send(MediaControl::Mute(muted));
    }
}

async fn run(mut sockets: MediaSockets, mut session: MediaSession, mut driver: Driver, mut control: tokio::sync::mpsc::UnboundedReceiver<MediaControl>) {
    let mut buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 2048];
    let mut playout = Vec::with_capacity(320);
    // Where the far end's packets really come from: used when its SDP gave
    // no address (symmetric RTP).
    let mut rtp_from: Option<SocketAddr> = None;
    let mut digits: Option<(String, tokio::sync::mpsc::UnboundedSender<(String, char)>)> = None;
    loop {
        while let Some(t) = session.poll_transmit() {
            let (sock, to) = match t.kind {
                TransmitKind::Rtp => (&sockets.rtp, t.to.or(rtp_from)),
                TransmitKind::Rtcp => (&sockets.rtcp, t.to),
            };
            if let Some(to) = to {
                let _ = sock.send_to(&t.bytes, to).await;
            }
        }
        while let Some(ev) = session.poll_event() {
            if let (tsunagu_media::SessionEvent::DtmfReceived { digit, .. }, Some((id, tx))) = (ev, &digits) {
                let _ = tx.send((id.clone(), digit));
            }
        }
        let wake = [Some(driver.next_deadline()), session.poll_timeout()].into_iter().flatten().min().unwrap_or_else(|| Instant::now() + Duration::from_millis(20));
        tokio::select! {
            r = sockets.rtp.recv_from(&mut buf) => if let Ok((n, from)) = r {
                rtp_from.get_or_insert(from);
                session.handle_datagram(Instant::now(), &buf[..n]);
            },
            r = sockets.rtcp.recv_from(&mut rtcp_buf) => if let Ok((n, _)) = r {
                session.handle_datagram(Instant::now(), &rtcp_buf[..n]);
            },
            Some(c) = control.recv() => match c {
                // A digit the far end did not negotiate (no telephone-event)
                // is dropped; SIP INFO is not sent from here yet.
                MediaControl::Dtmf(d) => { let _ = session.send_dtmf(Instant::now(), d, DTMF_MS); }
                MediaControl::Mute(m) => session.mute(m),
                MediaControl::Update(m) => { let _ = session.update(Instant::now(), &m); }
                MediaControl::ReportDigits(id, tx) => digits = Some((id, tx)),
                MediaControl::Rebind(s) => {
                    sockets = *s;
                    // The far end's source may differ on the new path.
                    rtp_from = None;
                }
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                driver.tick(now, &mut |capture: &[i16], out: &mut [i16]| {
                    session.push_capture(now, capture);
                    playout.clear();
                    session.pull_playout(now, &mut playout, out.len());
                    let n = out.len().min(playout.len());
                    out[..n].copy_from_slice(&playout[..n]);
                });
                session.handle_timeout(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_and_its_answer_agree_on_g711_and_digits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let b = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            assert_eq!(a.rtp_port() % 2, 0);
            let offer = a.offer(1);
            let (answer, b_view_of_a) = b.answer(&offer, 2).unwrap();
            assert_eq!(b_view_of_a.rtp_addr, Some(SocketAddr::new("127.0.0.1".parse().unwrap(), a.rtp_port())));
            assert_eq!(b_view_of_a.codec, Some((Codec::Opus, OPUS_PT)), "Opus is offered first");
            assert_eq!(b_view_of_a.telephone_event, Some(101));
            let a_view_of_b = negotiated(&answer).unwrap();
            assert_eq!(a_view_of_b.rtp_addr.map(|s| s.port()), Some(b.rtp_port()));
            assert_eq!(a_view_of_b.codec, Some((Codec::Opus, OPUS_PT)));
            // A G.711-only offer is answered in G.711.
            let g711 = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\n";
            let (answer, m) = b.answer(g711, 3).unwrap();
            assert_eq!(m.codec, Some((Codec::Pcma, 8)));
            assert_eq!(m.telephone_event, None);
            assert!(!String::from_utf8_lossy(&answer).contains("telephone-event"));
        });
    }

    #[test]
    fn an_encrypted_offer_is_answered_encrypted_with_keys_both_ways() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap().with_srtp();
            let b = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let offer = a.offer(1);
            let text = String::from_utf8_lossy(&offer).into_owned();
            assert!(text.contains("RTP/SAVP") && text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{text}");
            let (answer, at_b) = b.answer(&offer, 2).unwrap();
            assert!(String::from_utf8_lossy(&answer).contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
            let at_a = a.take_answer(&answer).unwrap();
            // What A sends with, B opens with, and the other way round.
            assert_eq!(at_a.srtp_send, at_b.srtp_recv);
            assert_eq!(at_b.srtp_send, at_a.srtp_recv);
            assert!(at_a.srtp_send.is_some() && at_b.srtp_send.is_some());
            // A plain answer to an encrypted offer is refused.
            let plain = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let plain_answer = plain.offer(3);
            assert_eq!(a.take_answer(&plain_answer).err(), Some(MediaSetupError::NoCrypto));
        });
    }

    #[test]
    fn a_hold_offer_in_the_call_is_answered_recvonly_with_a_new_version() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let b = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let offer = a.offer(1);
            let (_, media) = b.answer(&offer, 2).unwrap();
            let mut running = CallMedia::start(b, media, Arc::new(crate::audio::NullPort::default())).unwrap();
            let hold = String::from_utf8_lossy(&offer).replace("a=sendrecv", "a=sendonly").replace(" 1 1 IN", " 1 2 IN");
            let answer = String::from_utf8_lossy(&running.answer_reoffer(hold.as_bytes()).unwrap()).into_owned();
            assert!(answer.contains("a=recvonly") && answer.contains(" 2 IN IP4"), "{answer}");
            let resume = String::from_utf8_lossy(&offer).replace(" 1 1 IN", " 1 3 IN");
            let answer = String::from_utf8_lossy(&running.answer_reoffer(resume.as_bytes()).unwrap()).into_owned();
            assert!(answer.contains("a=sendrecv") && answer.contains(" 3 IN IP4"), "{answer}");
            // Encryption cannot appear mid-call.
            let encrypted = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap().with_srtp().offer(9);
            assert_eq!(running.answer_reoffer(&encrypted).err(), Some(MediaSetupError::NoCrypto));
        });
    }

    #[test]
    fn an_offer_we_cannot_take_is_a_typed_error() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = MediaSockets::bind("127.0.0.1".parse().unwrap()).await.unwrap();
            let g722 = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
            assert_eq!(s.answer(g722, 1).err(), Some(MediaSetupError::NoCommonCodec));
            assert_eq!(s.answer(b"garbage", 1).err(), Some(MediaSetupError::BadSdp));
            let video = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
            assert_eq!(s.answer(video, 1).err(), Some(MediaSetupError::NoAudio));
        });
    }
}
