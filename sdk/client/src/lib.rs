//! tsunagu-client is the softphone SDK the city's smartphone app and PC
//! seats run. It owns the phone's side of SIP and media: an account's
//! registration with the PBX (digest, RFC 5626 outbound flows, RFC 8599
//! push parameters), its calls (make, answer, reject, hang up, hold,
//! mute, DTMF by RFC 4733 or SIP INFO, blind and attended transfer by
//! REFER/Replaces, call waiting), each call's media on tsunagu-media with
//! the platform's audio behind the [`AudioPort`] trait, the handover of
//! calls when the device changes networks, and the call history. It shares
//! tsunagu-sip with the PBX.
//!
//! The engines are sans-IO: [`registration`], [`keepalive`], [`call`] and
//! [`history`]'s recorder. [`account`] is their tokio driver (one task per
//! account: the flow to the PBX over UDP, TCP or TLS, the transaction
//! layer, the calls), [`media`] runs each call's RTP, [`netwatch`] learns
//! of network changes on a desktop, [`audio`] holds the ports (WAV, tone,
//! null, and with the `cpal` feature the sound card in [`cpal_port`]).
//! The uniffi façade for the app shells is the `tsunagu-ffi` crate
//! (bindings/ffi).

pub mod account;
pub mod audio;
pub mod call;
#[cfg(feature = "cpal")]
pub mod cpal_port;
pub mod history;
pub mod keepalive;
pub mod media;
pub mod netwatch;
pub mod registration;
mod seed;

pub use account::{Account, AccountEvent, StartError, Transport};
pub use audio::{
    pump_port, AudioBridge, AudioError, AudioFormat, AudioPort, AudioStats, BridgeConfig, Driver, NullPort, PortClock,
    SplitPort, ToneSource, WavSink, WavSource,
};
pub use call::{Call, CallEvent, CallOutput, CallState, Credentials, PhoneAddress};
pub use registration::{Flow, PushParams, RegEvent, RegState, Registration, RegistrationConfig};
