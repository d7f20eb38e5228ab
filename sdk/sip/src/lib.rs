//! tsunagu-sip owns the SIP protocol, shared by the PBX and the phone SDK:
//! parsing and printing messages (on ezk-sip-types), stream framing, the
//! RFC 3261 §17 transaction layer, digest authentication (RFC 2617/8760),
//! REGISTER contact handling and the UAS request checks. It is sans-IO: no
//! sockets, no clock, no runtime; callers pass in bytes and the time, and
//! take out bytes to send and when to wake up.

pub mod dialog;
pub mod digest;
pub mod error;
pub mod framing;
pub mod headers;
pub mod limits;
pub mod message;
pub mod register;
pub mod sdp;
pub mod transaction;
pub mod validate;
pub mod via;

pub use error::{ParseError, ParseErrorKind, Rejection, SipError};
pub use framing::{Frame, StreamFramer};
pub use limits::Limits;
pub use message::{parse_message, response_to, Framing, Message, Request, Response};
pub use transaction::{Input, Output, Peer, TimerConfig, TransactionLayer, TransportKind, TxEvent, TxKey};

pub use headers::{Headers, Name};
