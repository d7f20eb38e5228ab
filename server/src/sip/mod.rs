//! SIP in the server: transports (UDP, TCP, TLS), the endpoint task that
//! drives tsunagu-sip's transaction layer, and the core request router.

pub mod core;
pub mod endpoint;
pub mod tls;
pub mod transport;
