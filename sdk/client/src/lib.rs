//! tsunagu-client is the softphone SDK the city's smartphone app and PC
//! seats run. It owns the phone's side of SIP: an account's registration
//! with the PBX (digest, RFC 5626 outbound flows, RFC 8599 push
//! parameters), and the tokio driver that gives those sans-IO engines a
//! socket and a clock. It shares tsunagu-sip with the PBX.
//!
//! Built so far: [`registration`] (the engine), [`keepalive`] (RFC 5626
//! CRLF pings) and [`account`] (their driver, over UDP, TCP or TLS), and
//! the sans-IO [`call`] engine (outgoing and incoming calls on a shared
//! `tsunagu_sip` dialog), not yet driven by the account. Calls, media (on tsunagu-media), handover on a network change
//! and the uniffi-shaped `Phone` façade come next (issue 4).

pub mod account;
pub mod audio;
pub mod call;
pub mod keepalive;
pub mod media;
pub mod registration;
mod seed;

pub use account::{Account, AccountEvent, StartError, Transport};
pub use audio::{
    pump_port, AudioBridge, AudioError, AudioFormat, AudioPort, AudioStats, BridgeConfig, Driver, NullPort, PortClock,
    SplitPort, ToneSource, WavSink, WavSource,
};
pub use call::{Call, CallEvent, CallOutput, CallState, Credentials, PhoneAddress};
pub use registration::{Flow, PushParams, RegEvent, RegState, Registration, RegistrationConfig};
