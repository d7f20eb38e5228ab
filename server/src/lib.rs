//! tsunagu-server is the PBX: it owns the sockets (SIP over UDP, TCP and
//! TLS; HTTP; RTP), the registrar and location service, calls (the B2BUA
//! with anchored media, the dial plan, ring groups, forwarding, carrier
//! trunks, call records), the store, the admin API and web app, and the command line. Protocol logic lives in tsunagu-sip; this crate holds the
//! policy and the I/O around it.

pub mod announce;
pub mod api;
pub mod calendar;
pub mod calls;
pub mod cli;
pub mod config;
pub mod csv;
pub mod holidays;
pub mod http;
pub mod ivr;
pub mod media;
pub mod phonebook;
pub mod recording;
pub mod registrar;
pub mod routing;
pub mod schedule;
pub mod server;
pub mod sip;
pub mod store;
pub mod trunk;
