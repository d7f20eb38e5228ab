//! tsunagu-media owns media on the wire, shared by the PBX and the phone SDK.
//! It is sans-IO like tsunagu-sip: no sockets, no clock, no runtime; callers
//! pass in datagrams and the time (`std::time::Instant`), and take out
//! datagrams to send and events. It holds bounded, panic-free RTP and RTCP
//! header parsing with RTP/RTCP multiplexing classification (RFC 3550,
//! RFC 5761, RFC 7983), the symmetric, latching relay engine the B2BUA uses
//! to anchor media (design principle 4: media follows the phone), SDES-SRTP
//! (RFC 3711, RFC 4568), the G.711 and Opus codecs with an RTP transcoder
//! between them, RFC 4733 DTMF and SIP INFO DTMF bodies, WAV I/O, the
//! per-direction [`Pipeline`] that chains them between two call legs
//! (decrypt, transcode or rewrite, detect or inject digits, encrypt), and
//! the receive side of a phone: an adaptive [`JitterBuffer`], G.711 loss
//! concealment ([`G711Plc`]; Opus conceals in libopus), a [`Resampler`]
//! to the sound card's rate, and RTCP sender/receiver reports with loss,
//! jitter and round-trip figures ([`stats`]), and the phone's per-call
//! [`MediaSession`] that ties them together (capture -> encode -> SRTP ->
//! RTP out; RTP in -> SRTP -> jitter buffer -> decode/conceal -> playout;
//! RTCP reports; RFC 4733 digits). Mixing comes with conferences.

pub mod codec;
pub mod dtmf;
pub mod error;
pub mod jitter;
pub mod pipeline;
pub mod plc;
pub mod relay;
pub mod resample;
pub mod rtcp;
pub mod rtp;
mod seeds;
pub mod session;
pub mod srtp;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod transcode;

pub use error::MediaError;
pub use relay::{
    DropReason, DropStats, LegSide, LegStats, Relay, RelayConfig, RelayEvent, RelayLeg, StreamKind, Transmit,
};
pub use rtcp::{rtcp_compound, RtcpCompoundIter, RtcpHeader};
pub use rtp::{classify, is_rtcp, PacketClass, RtpHeader, RtpPacket};
pub use session::{MediaSession, SessionConfig, SessionEvent, SessionStats, Transmit as SessionTransmit, TransmitKind};
pub use srtp::{CryptoAttr, MasterKey, SrtpContext, SrtpSuite};
pub use codec::{read_wav_pcm16, write_wav_pcm16, Codec, Decoder, Encoder};
pub use dtmf::{DtmfDetector, DtmfEvent, DtmfGenerator};
pub use pipeline::{LegMedia, Pipeline};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
pub use plc::G711Plc;
pub use resample::Resampler;
pub use stats::{ReceiverStats, ReportBlock, RtcpError, RtcpPacket, SenderStats};
pub use transcode::Transcoder;
