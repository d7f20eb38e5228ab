//! tsunagu-server is the PBX: it owns the sockets (SIP over UDP, TCP and
//! TLS; HTTP), the registrar and location service, the store, and the
//! command line. Protocol logic lives in tsunagu-sip; this crate holds the
//! policy and the I/O around it.

pub mod cli;
pub mod config;
pub mod csv;
pub mod http;
pub mod registrar;
pub mod server;
pub mod sip;
pub mod store;
